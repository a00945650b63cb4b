//! A shield tier: two edges as a site's `parents` in front of the origin protect it from every
//! child edge — one origin request per object, both tiers in `Cache-Status`, a dead parent
//! skipped within the request, and its keys back once it returns.

use std::time::Duration;

use crate::cluster::{free_port, members};
use crate::support::http::{Got, get};
use crate::support::origin::Origin;
use crate::support::{Proc, process, until};

fn shield(origin: &Origin, port: u16, name: &str) -> Proc {
    let mut cmd = process::stratus();
    let listen = format!("127.0.0.1:{port}");
    cmd.args(["edge", "--listen", &listen, "--origin", &origin.url, "--admin", "127.0.0.1:0", "--id", name]);
    Proc::start(cmd, &["edge http", "edge admin"])
}

/// A child edge whose one site has the shields as parents.
fn child(origin: &Origin, shields: &[u16], name: &str, dir: &tempfile::TempDir) -> Proc {
    let parents: Vec<String> = shields.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
    let toml = format!(
        "[edge]\nid = \"{name}\"\nlisteners = [{{ listen = \"127.0.0.1:0\" }}]\nadmin = {{ listen = \"127.0.0.1:0\" }}\n\
         [[edge.sites]]\nhosts = [\"*\"]\norigins = [\"{}\"]\nparents = [{}]\n\
         health = {{ max_fails = 1, fail_timeout = \"1s\" }}\n",
        origin.url,
        parents.join(", ")
    );
    let path = process::write_file(dir.path(), &format!("{name}.toml"), &toml);
    let mut cmd = process::stratus();
    cmd.arg("edge").arg("--config").arg(path);
    Proc::start(cmd, &["edge http", "edge admin"])
}

async fn fetch(edge: &Proc, path: &str) -> Got {
    get(&format!("{}{path}", edge.url("edge http")), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_pool_fetches_each_object_once_for_every_child_and_survives_a_dead_parent() {
    let origin = Origin::cacheable().await;
    let ports = [free_port(), free_port()];
    let mut shields = [shield(&origin, ports[0], "shield-0"), shield(&origin, ports[1], "shield-1")];
    let dir = process::tempdir();
    let children = [child(&origin, &ports, "child-0", &dir), child(&origin, &ports, "child-1", &dir)];

    let n = 20;
    let mut parent_of = Vec::new();
    for i in 0..n {
        let path = format!("/s/{i}");
        let mut parent = None;
        for (c, edge) in children.iter().enumerate() {
            let got = fetch(edge, &path).await;
            assert_eq!((got.status, got.text()), (200, format!("{path} v1")));
            let m = members(&got);
            assert_eq!(m.len(), 2, "a shield member and the child's: {}", got.cache());
            assert_eq!(m[1].0, format!("child-{c}"));
            assert!(m[1].1.starts_with("fwd=uri-miss; fwd-status=200; stored"), "{}", got.cache());
            // The first child's request filled the shield, the second one's was a hit there.
            let want = if c == 0 { "fwd=uri-miss" } else { "hit" };
            assert!(m[0].1.starts_with(want), "{}", got.cache());
            assert_eq!(parent.get_or_insert(m[0].0.clone()), &m[0].0, "one parent per key");
        }
        parent_of.push(parent.expect("parent"));
    }
    assert_eq!((0..n).map(|i| origin.hits(&format!("/s/{i}"))).sum::<usize>(), n, "one origin request each");
    assert!(parent_of.iter().any(|p| p == "shield-0") && parent_of.iter().any(|p| p == "shield-1"));

    // A dead parent is skipped within the request: every request answered, still once each.
    shields[1].kill();
    for i in 0..n {
        for edge in &children {
            let got = fetch(edge, &format!("/down/{i}")).await;
            assert_eq!(got.status, 200, "{}", got.cache());
            assert_eq!(members(&got)[0].0, "shield-0", "{}", got.cache());
        }
    }
    assert_eq!((0..n).map(|i| origin.hits(&format!("/down/{i}"))).sum::<usize>(), n);

    // Back on its address: it gets its keys again once the children try it after the cool-down.
    shields[1] = shield(&origin, ports[1], "shield-1");
    let mut k = 0;
    until("shield-1 serves its keys again", Duration::from_secs(20), || {
        k += 1;
        let (path, edge) = (format!("/again/{k}"), &children[0]);
        async move {
            let got = fetch(edge, &path).await;
            assert_eq!(got.status, 200);
            (members(&got)[0].0 == "shield-1").then_some(())
        }
    })
    .await;
}
