//! The edge as the control-plane follower sees it ([`FollowTarget`]): purges go through the
//! same code as the admin API, prewarms are GETs through the edge's own pipeline, and pushed
//! site configurations through [`Edge::apply_fleet`], the reload path SIGHUP uses too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{Request, header};
use http_body_util::BodyExt;
use stratus_config::fleet::FleetConfig;

use crate::body::empty;
use crate::edge::Edge;
use crate::fleet::follow_target::{EdgeStats, FollowTarget};
use crate::fleet::purge::{ObjectRef, PurgeRequest};

/// How many prewarm fetches run at once.
const PREWARM_CONCURRENCY: usize = 8;

/// A handle on the running edge for the follower.
#[derive(Debug, Clone)]
pub struct EdgeTarget(pub Arc<Edge>);

impl FollowTarget for EdgeTarget {
    fn progress(&self, applied: u64, head: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let p = &self.0.progress;
        p.following.store(true, Relaxed);
        p.applied.store(applied, Relaxed);
        p.head.fetch_max(head.max(applied), Relaxed);
    }

    fn set_peers(&self, urls: &[String]) {
        if let Some(cluster) = self.0.cluster.as_ref().filter(|c| c.discovers()) {
            cluster.set_peers(urls);
        }
    }

    fn purge(&self, purge: &PurgeRequest) -> usize {
        self.0.purge(purge)
    }

    fn resume_from(&self) -> Option<u64> {
        self.0.disk.as_ref()?.applied_seq()
    }

    fn persist_applied(&self, seq: u64) {
        if let Some(disk) = &self.0.disk {
            disk.persist_applied_seq(seq);
        }
    }

    fn caught_up(&self) {
        if let Some(disk) = &self.0.disk {
            disk.open_reads();
        }
    }

    fn clear(&self) {
        let n = self.0.store.purge_all(false);
        if let Some(disk) = &self.0.disk {
            disk.clear();
        }
        tracing::info!(removed = n, "cache cleared");
    }

    fn prewarm(
        &self,
        urls: Vec<String>,
        objects: Vec<ObjectRef>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let edge = self.0.clone();
        Box::pin(async move {
            let mut targets: Vec<(String, String)> = Vec::new();
            for url in &urls {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let (host, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
                targets.push((host.to_owned(), path.to_owned()));
            }
            for o in &objects {
                for (host, path) in crate::fleet::purge::site_paths(o, &edge.router()) {
                    targets.push((host.unwrap_or_else(|| edge.default_host.clone()), path));
                }
            }
            futures_util::stream::iter(targets)
                .for_each_concurrent(PREWARM_CONCURRENCY, |(host, path)| {
                    let edge = edge.clone();
                    async move { prewarm_one(edge, &host, &path).await }
                })
                .await;
        })
    }

    fn stats(&self) -> EdgeStats {
        self.0.stats()
    }

    fn configure(&self, seq: u64, config: &FleetConfig) -> Result<(), String> {
        self.0.apply_fleet(seq, config).map_err(|e| e.to_string())
    }

    fn fleet_seq(&self) -> u64 {
        self.0.fleet_seq()
    }
}

async fn prewarm_one(edge: Arc<Edge>, host: &str, path: &str) {
    let req = Request::get(path).header(header::HOST, host).body(empty());
    let Ok(req) = req else {
        tracing::warn!(host, path, "prewarm: invalid URL");
        return;
    };
    let res = crate::proxy::pipeline::handle(edge, req, None).await;
    let status = res.status();
    match res.into_body().collect().await {
        Ok(_) if status.is_success() => tracing::debug!(host, path, "prewarmed"),
        Ok(_) => tracing::warn!(host, path, status = status.as_u16(), "prewarm got an error status"),
        Err(e) => tracing::warn!(host, path, error = %e, "prewarm failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Response;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;

    /// A real origin on loopback answering every path with its own path, counting requests.
    async fn origin(count: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let body = req.uri().path().to_owned();
                        async move {
                            let mut res = Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                            res.headers_mut().insert("cache-control", "max-age=60".parse().expect("value"));
                            res.headers_mut().insert("surrogate-key", "warm".parse().expect("value"));
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn prewarm_purge_stats_and_clear_through_the_follow_target() {
        let count = Arc::new(AtomicUsize::new(0));
        let url = origin(count.clone()).await;
        let mut config = stratus_config::EdgeConfig::simple(
            "127.0.0.1:0".parse().expect("listen"),
            format!("{url}/demo").parse().expect("origin"),
        );
        config.sites[0].hosts = vec!["cdn.example".into()];
        let edge = Edge::new(&config, &Default::default()).expect("edge");
        let target: Arc<dyn FollowTarget> = Arc::new(EdgeTarget(edge.clone()));

        target
            .prewarm(
                vec!["http://cdn.example/x.css".into()],
                vec![ObjectRef { bucket: "demo".into(), key: "a/b.css".into() }],
            )
            .await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(target.stats().cache_entries, 2);
        // Prewarmed objects are hits for clients; the object maps to its site path.
        let req =
            Request::get("/a/b.css").header(header::HOST, "cdn.example").body(empty()).expect("request");
        let res = crate::proxy::pipeline::handle(edge.clone(), req, None).await;
        assert!(res.headers()["cache-status"].to_str().expect("text").contains("hit"));
        assert_eq!(count.load(Ordering::SeqCst), 2);

        let purge = PurgeRequest {
            objects: vec![ObjectRef { bucket: "demo".into(), key: "a/b.css".into() }],
            ..PurgeRequest::default()
        };
        assert_eq!(target.purge(&purge), 1);
        assert_eq!(target.purge(&PurgeRequest { tags: vec!["warm".into()], ..PurgeRequest::default() }), 1);
        target.prewarm(vec!["http://cdn.example/y.css".into()], vec![]).await;
        target.clear();
        assert_eq!(target.stats().cache_entries, 0);
        let stats = target.stats();
        assert_eq!((stats.requests, stats.hits), (4, 1));
    }
}
