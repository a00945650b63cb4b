//! The hand-off of a large object's body from its fill (a task on the async runtime) to the
//! thread that writes its file (`tier.rs`, `write_large`), bounded in bytes and batched.
//!
//! A chunk-per-message channel costs a wake-up of the writer per origin read (several per MiB)
//! and bounds memory only in chunks, whose size the origin decides. Here the fill appends
//! chunks to a shared queue and the writer is woken only once [`BATCH`] bytes wait (or the
//! body ended), then takes everything queued and writes it (`stream.rs`: 256 KiB per
//! vectored write, straight from the chunks). The fill waits only while more than [`LIMIT`]
//! bytes wait: a slow disk holds the fill (and so the origin) back instead of growing memory. Small chunks (a chunked origin may send them a few
//! bytes at a time) are copied together into one of at least [`SMALL`] bytes first, so the
//! queue's length and the writes' vector stay bounded whatever the origin sends, and tiny
//! slices never keep whole read buffers alive.
//!
//! Either side going away ends the hand-off: the writer learns the body was abandoned, the
//! fill learns the file was given up ([`Sender::push`] returns false).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// The writer is woken once this much waits (or the body ended).
pub const BATCH: u64 = 1 << 20;
/// The fill waits while more than this waits to be written.
pub const LIMIT: u64 = 4 << 20;
/// Chunks smaller than this are copied together before they are queued.
pub const SMALL: usize = 32 << 10;

#[derive(Debug, Default)]
struct Queue {
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    bytes: u64,
    /// The body is complete.
    end: bool,
    /// The sender is gone without ending the body.
    abandoned: bool,
    /// The receiver is gone: nothing more is written.
    closed: bool,
    /// The writer sleeps until it is woken.
    sleeping: bool,
}

#[derive(Debug, Default)]
struct Pipe {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    ready: Condvar,
    /// Wakes the fill when there is room again, or the writer went away.
    room: Notify,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A hand-off of `LIMIT` bytes: the fill's end and the writer's.
pub fn pipe() -> (Sender, Receiver) {
    let pipe = Arc::new(Pipe::default());
    (Sender { pipe: pipe.clone(), small: BytesMut::new() }, Receiver { pipe })
}

/// The fill's end. Dropped before [`Sender::end`], the body is abandoned.
#[derive(Debug)]
pub struct Sender {
    pipe: Arc<Pipe>,
    /// Small chunks being gathered into one.
    small: BytesMut,
}

impl Sender {
    /// Queues `chunk`, then waits while more than [`LIMIT`] bytes wait to be written; false
    /// once the writer is gone.
    pub async fn push(&mut self, chunk: Bytes) -> bool {
        if chunk.len() < SMALL {
            self.small.extend_from_slice(&chunk);
            if self.small.len() < SMALL {
                return !self.pipe.lock().closed;
            }
            let gathered = self.small.split().freeze();
            return self.queue(gathered).await;
        }
        if !self.small.is_empty() {
            let gathered = self.small.split().freeze();
            if !self.enqueue(gathered) {
                return false;
            }
        }
        self.queue(chunk).await
    }

    /// Marks the body complete (whatever is queued is still written).
    pub fn end(&mut self) -> bool {
        if !self.small.is_empty() {
            let gathered = self.small.split().freeze();
            if !self.enqueue(gathered) {
                return false;
            }
        }
        let mut q = self.pipe.lock();
        q.end = true;
        self.pipe.ready.notify_one();
        !q.closed
    }

    async fn queue(&mut self, chunk: Bytes) -> bool {
        if !self.enqueue(chunk) {
            return false;
        }
        loop {
            let room = self.pipe.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let q = self.pipe.lock();
                if q.closed {
                    return false;
                }
                if q.bytes <= LIMIT {
                    return true;
                }
            }
            room.await;
        }
    }

    /// Appends `chunk` and wakes the writer once a batch waits; false once it is gone.
    fn enqueue(&self, chunk: Bytes) -> bool {
        let mut q = self.pipe.lock();
        if q.closed {
            return false;
        }
        q.bytes += chunk.len() as u64;
        q.chunks.push(chunk);
        if q.sleeping && q.bytes >= BATCH {
            q.sleeping = false;
            self.pipe.ready.notify_one();
        }
        true
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut q = self.pipe.lock();
        if !q.end {
            q.abandoned = true;
        }
        self.pipe.ready.notify_one();
    }
}

/// What [`Receiver::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Chunks to write.
    Data,
    /// The body is complete and every chunk was taken.
    End,
    /// The body was abandoned: the file must not be completed.
    Abandoned,
}

/// The writer's end. Dropped, the fill's next push returns false.
#[derive(Debug)]
pub struct Receiver {
    pipe: Arc<Pipe>,
}

impl Receiver {
    /// Waits (blocking) for a batch and moves it into `into` (`Batch::Data`), or for the end.
    pub fn take(&mut self, into: &mut Vec<Bytes>) -> Batch {
        let mut q = self.pipe.lock();
        loop {
            if q.abandoned {
                return Batch::Abandoned;
            }
            if !q.chunks.is_empty() && (q.bytes >= BATCH || q.end) {
                into.append(&mut q.chunks);
                q.bytes = 0;
                drop(q);
                self.pipe.room.notify_one();
                return Batch::Data;
            }
            if q.end {
                return Batch::End;
            }
            q.sleeping = true;
            q = self.pipe.ready.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            q.sleeping = false;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut q = self.pipe.lock();
        q.closed = true;
        q.chunks = Vec::new();
        q.bytes = 0;
        drop(q);
        self.pipe.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    fn writer(mut rx: Receiver) -> std::thread::JoinHandle<(Vec<u8>, Batch, usize)> {
        std::thread::spawn(move || {
            let (mut got, mut batch, mut batches) = (Vec::new(), Vec::new(), 0);
            loop {
                match rx.take(&mut batch) {
                    Batch::Data => {
                        batches += 1;
                        for c in batch.drain(..) {
                            got.extend_from_slice(&c);
                        }
                    }
                    end => return (got, end, batches),
                }
            }
        })
    }

    /// Every byte arrives in order, small chunks gathered, and the writer is woken about once
    /// per batch, not once per chunk.
    #[tokio::test]
    async fn chunks_arrive_in_order_in_batches() {
        let (mut tx, rx) = pipe();
        let w = writer(rx);
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let len = [1usize, 100, 5000, 70_000][i as usize % 4];
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            want.extend_from_slice(&chunk);
            assert!(tx.push(Bytes::from(chunk)).await);
        }
        assert!(tx.end());
        let (got, end, batches) = w.join().unwrap();
        assert_eq!(end, Batch::End);
        assert!(got == want, "{} bytes of {}", got.len(), want.len());
        let most = want.len() / BATCH as usize + 2;
        assert!(batches <= most, "{batches} batches for {} bytes", want.len());
    }

    /// A sender dropped without `end` abandons the body, even after chunks were queued.
    #[tokio::test]
    async fn a_dropped_sender_abandons_the_body() {
        let (mut tx, rx) = pipe();
        let w = writer(rx);
        assert!(tx.push(Bytes::from(vec![1u8; 100_000])).await);
        drop(tx);
        assert_eq!(w.join().unwrap().1, Batch::Abandoned);
    }

    /// When the writer gives up, a fill waiting for room is released and told so; nothing
    /// more is held.
    #[tokio::test]
    async fn a_gone_writer_releases_a_waiting_fill() {
        let (mut tx, rx) = pipe();
        let big = Bytes::from(vec![0u8; LIMIT as usize + 1]);
        let push = tokio::spawn(async move {
            let ok = tx.push(big).await;
            (ok, tx)
        });
        tokio::task::yield_now().await;
        drop(rx);
        let (ok, mut tx) = push.await.unwrap();
        assert!(!ok);
        assert!(!tx.push(Bytes::from(vec![0u8; SMALL])).await);
        assert!(!tx.end());
    }

    /// The fill waits while more than `LIMIT` bytes are queued and goes on once the writer
    /// took them.
    #[tokio::test]
    async fn a_slow_writer_holds_the_fill_back() {
        let (mut tx, mut rx) = pipe();
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..LIMIT >> 20 {
            assert!(tx.push(chunk.clone()).await);
        }
        let mut push = Box::pin(tx.push(chunk.clone()));
        assert!(push.as_mut().now_or_never().is_none(), "over the limit, the fill waits");
        let taken = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::new();
            let b = rx.take(&mut batch);
            (b, batch.len(), rx)
        })
        .await
        .unwrap();
        assert_eq!((taken.0, taken.1), (Batch::Data, (LIMIT >> 20) as usize + 1));
        assert!(push.await);
    }
}
