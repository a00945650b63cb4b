//! Network plumbing: a TCP forwarder in front of a server that can be taken down.

use std::sync::{Arc, Mutex};

/// A TCP forwarder in front of an origin that can be taken down: its port then refuses
/// connections, as an unreachable origin does.
pub struct Forwarder {
    pub url: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Forwarder {
    /// Forwards a fresh loopback port to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind forwarder");
        let url = format!("http://{}", listener.local_addr().expect("forwarder address"));
        let target = target.trim_start_matches("http://").to_owned();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                t.lock().expect("lock").push(conn);
            }
        });
        tasks.lock().expect("lock").push(accept);
        Self { url, tasks }
    }

    /// Closes the port and every forwarded connection.
    pub fn take_down(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}
