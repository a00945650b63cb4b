//! Stratus origin: an S3-compatible bucket server over a local directory.
//!
//! Real S3 clients (aws-cli, boto3, rclone, `object_store`, `aws-sdk-s3`) use it unchanged:
//! s3s parses the protocol (path- and virtual-hosted-style addressing, SigV4 in headers and
//! presigned URLs, aws-chunked streaming uploads, the XML) and this crate supplies storage and
//! semantics behind its `S3` trait.
//!
//! - [`store`]: crash-safe files (temp file, fsync, rename, fsync dir), one file per object
//!   holding body and metadata, keys mapped to SHA-256 file names so no key can escape.
//! - `s3`: the operations — ETags, conditional and range requests, listings, multipart.
//! - `access`: credentials, the public-read policy, virtual-hosted bucket names.
//! - `events`: object events posted to the control plane at least once, across crashes too (an
//!   outbox fsynced before each change is visible), without ever blocking a write.
//! - `expiry`: incomplete multipart uploads deleted after `multipart_expiry`.
//!
//! Decisions where S3 leaves room (see also `docs/origin.md`):
//! - Without configured credentials the origin still starts, logs a warning, and serves only
//!   anonymous reads of public buckets; every signed request is refused (`InvalidAccessKeyId`).
//! - Anonymous clients may GET/HEAD objects and list (ListObjects/V2, HeadBucket) public
//!   buckets: the control plane prewarms edges by listing a public bucket.
//! - A bucket's configured `cache_control` is applied when an object is read, to every object
//!   stored without its own, so changing the setting applies to existing objects.
//! - Buckets named in the configuration are created at startup when missing.
//! - No presigned URL is valid for more than a week: SigV4 as on S3, SigV2 too (`access`).
//! - A listing page holding a name XML 1.0 cannot carry is URL-encoded even when the client did
//!   not ask, and says so with `<EncodingType>url</EncodingType>` (`s3/list.rs`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), stratus_origin::Error> {
//! let config = stratus_config::OriginConfig::new("127.0.0.1:9000".parse().expect("addr"), "data".into());
//! stratus_origin::run(config, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

mod access;
mod events;
mod expiry;
mod metrics;
mod s3;
mod server;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use s3s::service::S3ServiceBuilder;
use stratus_config::OriginConfig;
use tokio_util::sync::CancellationToken;

use crate::s3::{BucketSettings, Origin};
use crate::store::{Store, StoreError};

/// Errors that stop the origin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    /// The data directory could not be opened or a configured bucket created.
    #[error("cannot open the data directory {path}: {source}")]
    Data { path: std::path::PathBuf, source: StoreError },
}

/// Runs the origin until `shutdown` is cancelled.
///
/// Prints `listening origin s3 http://ADDR` on stdout once bound.
pub async fn run(config: OriginConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let data_err = |source| Error::Data { path: config.data.clone(), source };
    let expiry = config.multipart_expiry.get();
    let store = Arc::new(Store::open_with(&config.data, Some(expiry)).await.map_err(data_err)?);
    for b in &config.buckets {
        match store.create_bucket(&b.name).await {
            Ok(()) => tracing::info!(bucket = %b.name, "created configured bucket"),
            Err(StoreError::BucketExists) => {}
            Err(e) => return Err(data_err(e)),
        }
    }
    let settings: HashMap<String, BucketSettings> = config
        .buckets
        .iter()
        .map(|b| (b.name.clone(), BucketSettings { cache_control: b.cache_control.clone() }))
        .collect();
    let public: HashSet<String> =
        config.buckets.iter().filter(|b| b.public).map(|b| b.name.clone()).collect();

    let keys = match (&config.access_key, &config.secret_key) {
        (Some(a), Some(s)) => Some((a.expose().to_owned(), s.expose().to_owned())),
        _ => {
            tracing::warn!(
                "no credentials configured (STRATUS_ACCESS_KEY/STRATUS_SECRET_KEY): only anonymous reads \
                 of public buckets are served and every signed request is refused"
            );
            None
        }
    };

    let notifier = match &config.notify {
        Some(url) => {
            let token = config.token.as_ref().map(|t| t.expose().to_owned());
            tracing::info!(url = %url, "posting object events");
            let outbox = config.data.join(events::OUTBOX_DIR);
            events::Notifier::start(&config.data, url.as_str().to_owned(), token, shutdown.clone())
                .await
                .map_err(|source| Error::Data { path: outbox, source: source.into() })?
        }
        None => events::Notifier::disabled(),
    };

    tokio::spawn(expiry::sweep_uploads(store.clone(), expiry, shutdown.clone()));
    let origin = Origin::new(store, settings, config.region.clone(), notifier);
    let mut builder = S3ServiceBuilder::new(origin);
    builder.set_auth(access::Keys::new(keys));
    builder.set_access(access::Policy::new(public));
    if let Some(domain) = &config.domain {
        builder.set_host(access::Domain::new(domain));
    }
    let service = builder.build();

    let listener = tokio::net::TcpListener::bind(config.listen.0)
        .await
        .map_err(|source| Error::Bind { addr: config.listen.0, source })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen.0, source })?;
    println!("listening origin s3 http://{addr}");
    tracing::info!(%addr, data = %config.data.display(), region = %config.region, "origin listening");
    let metrics = std::sync::Arc::new(metrics::Metrics::new(config.metrics_token.clone()));
    server::serve(listener, service, metrics, shutdown).await;
    tracing::info!("origin stopped");
    Ok(())
}
