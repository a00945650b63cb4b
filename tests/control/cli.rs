//! `stratus purge` without `--wait`: it prints each edge's state right after the purge was
//! accepted and exits non-zero only when an edge is `failed` (down since before the purge).
//! The `--wait` form is covered in `tests/control_api.rs`.

use std::time::Duration;

use crate::support::control::{Api, TOKEN, follower, start_control, stratus_purge};
use crate::support::{self, until};

/// Runs `stratus purge --control BASE --tag t` and returns (exit code, stdout, stderr).
async fn purge(base: &str) -> (Option<i32>, String, String) {
    stratus_purge(base, &["--tag", "t"], TOKEN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_without_wait_prints_each_edge_and_fails_only_for_a_failed_edge() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let _a = follower(&api, "a").await;
    let (code, out, err) = purge(&api.base).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("purge p-1 accepted"), "{out}");
    assert!(out.contains("edge a  pending") || out.contains("edge a  applied"), "{out}");

    // An edge that went silent before the purge is `failed`: the command says so and fails.
    let dir = support::tempdir();
    let control = start_control(dir.path(), "edge_timeout = \"200ms\"");
    let api = Api::new(&control);
    api.register("gone").await;
    until("the silent edge counts as down", Duration::from_secs(20), || async {
        let (_, list) = api.get("/v1/edges").await;
        (list["edges"][0]["live"] == false).then_some(())
    })
    .await;
    let (code, out, err) = purge(&api.base).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("edge gone  failed"), "{out}");
    assert!(out.contains("1 edge(s) failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_reads_stratus_control_and_explains_failures() {
    let dir = support::tempdir();
    let control = start_control(dir.path(), "");
    let api = Api::new(&control);
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let mut cmd = support::stratus();
        cmd.arg("purge").args(args).envs(env);
        tokio::task::spawn_blocking(move || {
            let out = cmd.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    // STRATUS_CONTROL stands in for --control.
    let env = vec![("STRATUS_CONTROL", api.base.clone()), ("STRATUS_TOKEN", TOKEN.to_owned())];
    let (code, out, err) = run(vec!["--tag".into(), "t".into()], env).await.unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("purge p-1 accepted"), "{out}");
    // A wrong token is named as such.
    let env = vec![("STRATUS_CONTROL", api.base.clone()), ("STRATUS_TOKEN", "wrong".to_owned())];
    let (code, _, err) = run(vec!["--tag".into(), "t".into()], env).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("401") && err.contains("token was refused"), "{err}");
    // Nothing listening: said in words.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let args = vec!["--control".into(), format!("http://{closed}"), "--tag".into(), "t".into()];
    let (code, _, err) = run(args, vec![]).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("connection was refused") && err.contains("nothing listens"), "{err}");
    // Neither flag nor variable.
    let (code, _, err) = run(vec!["--tag".into(), "t".into()], vec![]).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("STRATUS_CONTROL"), "{err}");
}
