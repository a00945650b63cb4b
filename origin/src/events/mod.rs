//! Object events posted to the control plane (docs/PROTOCOL.md, "Origin → control"), at least
//! once, even across a crash.
//!
//! A writer calls [`Notifier::prepare`] once it knows the change (key, ETag, size) and before
//! making it visible: the event is written to the outbox (`outbox`) and fsynced. Once the
//! change is visible the writer calls [`Pending::ready`] and the event is queued (`queue`) for
//! the delivery task (`deliver`), which posts batches and removes an event from the outbox only
//! when the receiver accepted it. A write that fails drops its [`Pending`], which removes the
//! event. So the control plane never hears of a change before it is visible (it would purge
//! edges that then refetch the old object), and a change acknowledged to a client is announced
//! even if the origin dies right after: the next start delivers what the outbox holds.
//!
//! Delivery never blocks a write: a receiver that is down or hanging only makes the outbox
//! grow (on disk; memory holds at most 10,000 events). The control plane's purges are
//! idempotent, so an event delivered twice, or for a write that crashed before it committed,
//! does no harm.

mod deliver;
mod event;
mod outbox;
mod queue;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use event::Event;
pub use event::Kind;
use outbox::Outbox;
use queue::Shared;

/// The outbox directory under the data directory (not a valid bucket name).
pub const OUTBOX_DIR: &str = ".outbox";

/// The writers' side: cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    shared: Option<Arc<Shared>>,
}

impl Notifier {
    /// A notifier that drops every event (no receiver configured).
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    /// Opens the outbox under `data` and starts the delivery task posting to `url` with an
    /// optional bearer `token`; events left by an earlier run are delivered first.
    pub async fn start(
        data: &Path,
        url: String,
        token: Option<String>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let (outbox, last) = Outbox::open(&data.join(OUTBOX_DIR)).await?;
        let shared = Arc::new(Shared::new(outbox, last));
        tokio::spawn(deliver::run(shared.clone(), url, token, shutdown));
        Ok(Self { shared: Some(shared) })
    }

    /// Records the event of a change about to be made visible; `etag` without quotes. Fails
    /// only when the outbox cannot be written, and then the change must not be made.
    pub async fn prepare(
        &self,
        kind: Kind,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
        size: Option<u64>,
    ) -> std::io::Result<Pending> {
        let Some(shared) = &self.shared else { return Ok(Pending { slot: None }) };
        let event = Event::new(kind, bucket, key, etag, size);
        let seq = shared.begin();
        if let Err(e) = shared.outbox.write(seq, &event).await {
            shared.abandon(seq);
            shared.outbox.remove_now(seq);
            return Err(e);
        }
        Ok(Pending { slot: Some((shared.clone(), seq, event)) })
    }
}

/// An event in the outbox whose change is not visible yet. Dropping it (the write failed)
/// removes the event.
#[derive(Debug)]
#[must_use = "call ready() once the change is visible"]
pub struct Pending {
    slot: Option<(Arc<Shared>, u64, Event)>,
}

impl Pending {
    /// The change is visible: deliver the event.
    pub fn ready(mut self) {
        if let Some((shared, seq, event)) = self.slot.take() {
            shared.ready(seq, event);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((shared, seq, _)) = self.slot.take() {
            shared.abandon(seq);
            shared.outbox.remove_now(seq);
        }
    }
}
