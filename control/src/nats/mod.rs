//! The control plane on a NATS JetStream cluster: the log is a replicated stream, the
//! configuration in force and the edge registry are key-value buckets, so several control
//! replicas serve the API at once, each holding nothing the cluster does not (docs/control.md,
//! "Several replicas on NATS JetStream").
//!
//! - [`log`]: the stream as the control plane's log — appends acknowledged by the stream's
//!   quorum, read back by every replica into an in-memory mirror that subscriptions stream from.
//! - [`edges`]: the registry's records written to and watched from the `stratus_edges` bucket.

pub(crate) mod edges;
pub(crate) mod log;

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use stratus_config::NatsServers;

use crate::error::Error;

/// The stream holding the log.
pub(crate) const STREAM: &str = "STRATUS_LOG";
/// Its one subject.
pub(crate) const SUBJECT: &str = "stratus.log";
/// The bucket holding the configuration in force (key [`CONFIG_KEY`]).
pub(crate) const CONFIG_BUCKET: &str = "stratus_config";
pub(crate) const CONFIG_KEY: &str = "current";
/// The bucket holding one record per edge.
pub(crate) const EDGES_BUCKET: &str = "stratus_edges";

/// How long one JetStream request (publish ack, info, bucket write) may take before it is
/// retried or fails. A leader election after a node dies takes a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the cluster and the stream and buckets the control plane uses.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub js: jetstream::Context,
    pub stream: stream::Stream,
    pub config: kv::Store,
    pub edges: kv::Store,
}

fn nats(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> Error {
    move |e| Error::Nats { what, error: e.to_string() }
}

impl Cluster {
    /// Connects to `servers` (the client fails over between them and to servers it learns of)
    /// and creates the stream and buckets with `replicas` replicas if they are absent.
    pub async fn connect(servers: &NatsServers, replicas: usize, retain: u64) -> Result<Self, Error> {
        let client = async_nats::ConnectOptions::new()
            .name("stratus-control")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(|event| async move {
                tracing::info!(%event, "nats connection");
            })
            .connect(servers.0.clone())
            .await
            .map_err(|e| nats("connect")(&e))?;
        let mut js = jetstream::new(client);
        js.set_timeout(REQUEST_TIMEOUT);
        let stream = stream::Config {
            name: STREAM.to_owned(),
            description: Some("Stratus control log: purges, prewarms, site configurations".to_owned()),
            subjects: vec![SUBJECT.to_owned()],
            max_messages: i64::try_from(retain).unwrap_or(i64::MAX),
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        // Creating may race another replica starting at the same moment: retry while the
        // cluster elects its leaders.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match js.get_or_create_stream(stream.clone()).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for the jetstream cluster");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(nats("create the log stream")(&e)),
            }
        };
        let found = stream.cached_info().config.num_replicas;
        if found != replicas {
            tracing::warn!(
                stream = STREAM,
                found,
                wanted = replicas,
                "the log stream exists with other replicas; kept"
            );
        }
        let bucket = |name: &str, description: &str, history: i64| kv::Config {
            bucket: name.to_owned(),
            description: description.to_owned(),
            history,
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let config =
            Self::bucket(&js, bucket(CONFIG_BUCKET, "Stratus: the site configuration in force", 1)).await?;
        let edges = Self::bucket(&js, bucket(EDGES_BUCKET, "Stratus: edges and their progress", 1)).await?;
        tracing::info!(servers = %servers, replicas, stream = STREAM, "connected to the nats cluster");
        Ok(Self { js, stream, config, edges })
    }

    async fn bucket(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = match js.get_key_value(config.bucket.clone()).await {
                Ok(store) => Ok(store),
                Err(_) => js.create_key_value(config.clone()).await.map_err(|e| e.to_string()),
            };
            match found {
                Ok(store) => return Ok(store),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(bucket = %config.bucket, error = %e, "waiting for the jetstream cluster");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(nats("create a bucket")(&e)),
            }
        }
    }
}
