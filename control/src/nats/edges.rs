//! The registry shared through the `stratus_edges` bucket: one task writes the records of edges
//! that changed here, another watches the bucket and merges what other replicas wrote. A
//! replica that starts reads every record first (the watch begins with the current values), so
//! `GET /v1/edges`, `?wait` and `GET /v1/purge/{id}` answer alike on every replica.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::registry::{self, EdgeRecord, Registry};

/// Shortest interval between two writes of the changed records: changes in between coalesce,
/// so an edge's record is written at most 10 times a second however fast it acks (1000 edges
/// under a purge storm: at most 10 000 small writes a second; idle, their heartbeats: 200).
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A watch that delivered nothing for this long is made again.
const SILENCE: Duration = Duration::from_secs(15);

/// Starts both tasks.
pub(crate) fn share(
    registry: Arc<Registry>,
    bucket: kv::Store,
    replica: String,
    shutdown: CancellationToken,
) {
    tokio::spawn(write(registry.clone(), bucket.clone(), replica.clone(), shutdown.clone()));
    tokio::spawn(watch(registry, bucket, replica, shutdown));
}

/// Writes the record of every edge that changed here, coalescing changes made meanwhile.
async fn write(registry: Arc<Registry>, bucket: kv::Store, replica: String, shutdown: CancellationToken) {
    loop {
        let ids = tokio::select! {
            () = shutdown.cancelled() => return,
            ids = registry.take_dirty() => ids,
        };
        let mut failed = Vec::new();
        for id in ids {
            let Some(record) = registry.record(&id, &replica) else { continue };
            let Ok(value) = serde_json::to_vec(&record) else { continue };
            if let Err(e) = bucket.put(registry::key(&id), value.into()).await {
                tracing::warn!(edge = %id, error = %e, "cannot share an edge's record; retrying");
                failed.push(id);
            }
        }
        let pause = if failed.is_empty() { FLUSH_EVERY } else { Duration::from_millis(500) };
        registry.requeue(failed);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Merges the records other replicas write, re-watching whenever the watch fails.
async fn watch(registry: Arc<Registry>, bucket: kv::Store, replica: String, shutdown: CancellationToken) {
    loop {
        match bucket.watch_all().await {
            Ok(mut entries) => loop {
                // Edges heartbeat every 5 s, so a bucket silent for 15 s most likely lost its
                // watch with a server that died (the client may not notice): watch again,
                // which re-reads every record (merging them again changes nothing).
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = tokio::time::timeout(SILENCE, entries.next()) => next,
                };
                let Ok(next) = next else {
                    tracing::debug!("no edge record for 15 s; watching again");
                    break;
                };
                match next {
                    Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                        match serde_json::from_slice::<EdgeRecord>(&entry.value) {
                            Ok(record) if record.writer != replica => {
                                registry.merge(&registry::id(&entry.key), &record);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(key = %entry.key, error = %e, "an unreadable edge record");
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching edge records failed; watching again");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch edge records; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
