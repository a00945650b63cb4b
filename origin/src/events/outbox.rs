//! The outbox: one small file per undelivered event under `DATA/.outbox/`, named by its
//! sequence number (`00000001733450000000123.json`, zero-padded so names sort by number).
//!
//! A writer records its event here, fsynced with its directory entry, **before** it makes the
//! object change visible, and the file is removed only after the control plane accepted the
//! event. So a crash at any point leaves the event on disk, and the next start delivers it: at
//! least once. A crash between the event and the change it announces delivers an event for a
//! change that did not happen — a needless purge, which is harmless. A file cut short by a
//! crash while it was written belongs to a write that never committed, and is removed.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::event::Event;

const SUFFIX: &str = ".json";

/// The outbox directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`; returns it and the highest sequence number in it.
    pub async fn open(dir: &Path) -> std::io::Result<(Self, Option<u64>)> {
        tokio::fs::create_dir_all(dir).await?;
        let outbox = Self { dir: dir.to_owned() };
        let last = outbox.seqs().await?.last().copied();
        Ok((outbox, last))
    }

    /// Every sequence number on disk, sorted.
    async fn seqs(&self) -> std::io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if let Some(seq) = entry.file_name().to_str().and_then(seq_of) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Writes event `seq` durably: the file and its directory entry are fsynced.
    pub async fn write(&self, seq: u64, event: &Event) -> std::io::Result<()> {
        let json = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        let (dir, path) = (self.dir.clone(), self.dir.join(file_name(seq)));
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Removes event `seq` at once (from `Drop`, where nothing can be awaited).
    pub fn remove_now(&self, seq: u64) {
        if let Err(e) = std::fs::remove_file(self.dir.join(file_name(seq))) {
            tracing::warn!(seq, error = %e, "cannot remove an abandoned event");
        }
    }

    /// Removes delivered events. A removal lost in a crash only delivers the event again.
    pub async fn remove(&self, seqs: &[u64]) {
        for &seq in seqs {
            match tokio::fs::remove_file(self.dir.join(file_name(seq))).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(seq, error = %e, "cannot remove a delivered event"),
            }
        }
    }

    /// Reads the oldest `limit` events, skipping `pending` ones (being written by a request
    /// whose change is not visible yet); returns them and whether more are on disk. Files that
    /// do not parse (cut short by a crash) are removed.
    pub async fn load(
        &self,
        limit: usize,
        pending: &BTreeSet<u64>,
    ) -> std::io::Result<(Vec<(u64, Event)>, bool)> {
        let seqs: Vec<u64> = self.seqs().await?.into_iter().filter(|s| !pending.contains(s)).collect();
        let mut events = Vec::new();
        for &seq in seqs.iter().take(limit) {
            let path = self.dir.join(file_name(seq));
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match serde_json::from_slice::<Event>(&bytes) {
                Ok(event) => events.push((seq, event)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "removing an event cut short by a crash");
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        Ok((events, seqs.len() > limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::event::Kind;

    #[tokio::test]
    async fn events_survive_reopening_and_torn_files_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (outbox, last) = Outbox::open(dir.path()).await.expect("open");
        assert_eq!(last, None);
        for seq in [5, 3, 9] {
            outbox
                .write(seq, &Event::new(Kind::Put, "b", &format!("k{seq}"), Some("e"), Some(1)))
                .await
                .expect("write");
        }
        std::fs::write(dir.path().join(file_name(7)), b"{\"kind\":\"pu").expect("torn file");
        std::fs::write(dir.path().join("unrelated.txt"), b"x").expect("other file");

        let (outbox, last) = Outbox::open(dir.path()).await.expect("reopen");
        assert_eq!(last, Some(9));
        let (events, more) = outbox.load(1, &BTreeSet::from([3])).await.expect("load");
        assert_eq!(
            events.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [5],
            "oldest first, the pending one skipped"
        );
        assert!(more);
        let (events, more) = outbox.load(3, &BTreeSet::from([3])).await.expect("load");
        let keys: Vec<_> = events.iter().map(|(s, e)| (*s, e.key.as_str())).collect();
        assert_eq!(keys, [(5, "k5"), (9, "k9")], "the torn file is skipped, the pending one too");
        assert!(!more);
        assert!(!dir.path().join(file_name(7)).exists(), "the torn file is removed");

        outbox.remove(&[5, 9]).await;
        outbox.remove_now(3);
        let (events, more) = outbox.load(10, &BTreeSet::new()).await.expect("load");
        assert!(events.is_empty() && !more);
    }

    #[test]
    fn only_our_names_are_events() {
        assert_eq!(seq_of(&file_name(42)), Some(42));
        assert_eq!(seq_of(&file_name(u64::MAX)), Some(u64::MAX));
        for bad in ["42.json", "0000000000000000004x.json", "00000000000000000042.tmp", ""] {
            assert_eq!(seq_of(bad), None, "{bad}");
        }
    }
}
