//! The edge as the control-plane follower sees it ([`FollowTarget`]): purges go through the
//! same code as the admin API, prewarms are GETs through the edge's own pipeline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{Request, header};
use http_body_util::BodyExt;

use crate::Edge;
use crate::error::empty;
use crate::follow::{EdgeStats, FollowTarget};
use crate::purge::{ObjectRef, PurgeRequest};

/// How many prewarm fetches run at once.
const PREWARM_CONCURRENCY: usize = 8;

/// A handle on the running edge for the follower.
#[derive(Debug, Clone)]
pub struct EdgeTarget(pub Arc<Edge>);

impl FollowTarget for EdgeTarget {
    fn purge(&self, purge: &PurgeRequest) -> usize {
        self.0.purge(purge)
    }

    fn clear(&self) {
        let n = self.0.store.purge_all(false);
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
                for (host, path) in o.site_paths(&edge.router) {
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
}

async fn prewarm_one(edge: Arc<Edge>, host: &str, path: &str) {
    let req = Request::get(path).header(header::HOST, host).body(empty());
    let Ok(req) = req else {
        tracing::warn!(host, path, "prewarm: invalid URL");
        return;
    };
    let res = crate::pipeline::handle(edge, req, None).await;
    let status = res.status();
    match res.into_body().collect().await {
        Ok(_) if status.is_success() => tracing::debug!(host, path, "prewarmed"),
        Ok(_) => tracing::warn!(host, path, status = status.as_u16(), "prewarm got an error status"),
        Err(e) => tracing::warn!(host, path, error = %e, "prewarm failed"),
    }
}
