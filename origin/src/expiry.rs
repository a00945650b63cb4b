//! Deletes incomplete multipart uploads past `multipart_expiry`, as S3's lifecycle rule
//! `AbortIncompleteMultipartUpload` does.
//!
//! An expired upload is gone for clients at once (the store refuses and stops listing it); this
//! task removes its files. It runs at startup and then every tenth of the expiry, between one
//! second and one hour, so parts never outlive their upload by more than that.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the sweeper runs for a given expiry.
pub fn sweep_interval(expiry: Duration) -> Duration {
    (expiry / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Sweeps every bucket now and then every [`sweep_interval`] until `shutdown`.
pub async fn sweep_uploads(store: Arc<Store>, expiry: Duration, shutdown: CancellationToken) {
    let every = sweep_interval(expiry);
    loop {
        for bucket in store.buckets() {
            match bucket.expire_uploads().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(bucket = %bucket.name, uploads = n, "expired incomplete multipart uploads");
                }
                Err(e) => tracing::warn!(bucket = %bucket.name, error = %e, "cannot sweep multipart uploads"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_interval_is_a_tenth_of_the_expiry_within_bounds() {
        assert_eq!(sweep_interval(Duration::from_secs(7 * 86400)), Duration::from_secs(3600));
        assert_eq!(sweep_interval(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(sweep_interval(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
