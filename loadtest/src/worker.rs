//! The hot path: one task per connection, driving its connection and its worker(s) together
//! (one worker for HTTP/1.1, `--streams` for HTTP/2) so a request never waits for another
//! thread to be scheduled. Workers own their stats; nothing here takes a lock.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};

use crate::connect::{Connector, Driver, Sender};
use crate::plan::{Length, Plan};
use crate::schedule::share;
use crate::stats::{CacheResult, Failure, Seconds, Stats, classify};
use crate::targets::Sampler;

/// Pause after a failed connect in closed-loop mode, so a dead target is not spun on.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// How long before an intended send time the timer hands over to yielding (see `wait_until`).
const SPIN: Duration = Duration::from_millis(1);

/// How often a long wait checks for Ctrl-C.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// What every connection task shares (read-only, or atomics that are touched rarely).
#[derive(Debug)]
pub(crate) struct Shared {
    pub plan: Plan,
    pub connector: Connector,
    /// Requests left in closed-loop phases bounded by a count (`-n`), by phase.
    pub tickets: Vec<AtomicU64>,
    /// Set on Ctrl-C: workers send nothing new, in-flight requests finish, the report is
    /// printed. A plain flag: `CancellationToken::is_cancelled` takes a mutex.
    pub stop: AtomicBool,
}

/// Live counters for the progress line: written by one task, read once a second.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub responses: AtomicU64,
    pub failures: AtomicU64,
}

/// One request slot claimed from the plan.
#[derive(Debug, Clone, Copy)]
struct Slot {
    phase: usize,
    /// When its phase starts: a worker that finished its share of one phase early must not
    /// send the next phase's requests before that phase begins.
    start: Instant,
    /// Intended send time (rate mode).
    intended: Option<Instant>,
}

/// A worker: one request in flight at a time.
#[derive(Debug)]
pub(crate) struct Worker {
    id: u64,
    sampler: Sampler,
    phase: usize,
    /// Scheduled requests this worker sent in the current (rate) phase.
    sent: u64,
    pending: Option<Slot>,
    /// Results by phase.
    pub stats: Vec<Stats>,
    /// Time of the last response by phase.
    pub last: Vec<Option<Instant>>,
    /// Counters by second of the run, for the timeline.
    pub seconds: Seconds,
}

impl Worker {
    /// Worker `id` of the plan's `workers()`.
    pub fn new(plan: &Plan, id: usize) -> Result<Self, crate::error::Error> {
        Ok(Self {
            id: id as u64,
            sampler: Sampler::new(plan.targets.pick, plan.targets.uris.len(), plan.seed, id)?,
            phase: 0,
            sent: 0,
            pending: None,
            stats: plan.phases.iter().map(|_| Stats::default()).collect(),
            last: vec![None; plan.phases.len()],
            seconds: Seconds::default(),
        })
    }

    /// Claims the next request slot, moving through phases as they end; `None` when done.
    fn next_slot(
        &mut self,
        now: Instant,
        shared: &Shared,
        timeline: &[(Instant, Option<Instant>)],
    ) -> Option<Slot> {
        let workers = shared.plan.workers() as u64;
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        loop {
            let phase = shared.plan.phases.get(self.phase)?;
            let (start, end) = timeline[self.phase];
            let over = end.is_some_and(|end| now >= end);
            if let Some(schedule) = phase.rate {
                let total = match phase.length {
                    Length::Count(n) => n,
                    Length::Time(_) => schedule.total().unwrap_or(0),
                };
                let k = self.id + self.sent * workers;
                if k < total && !over {
                    self.sent += 1;
                    let intended = Some(start + schedule.offset(k));
                    return Some(Slot { phase: self.phase, start, intended });
                }
                // Time is up with requests still scheduled: the target could not keep up.
                self.stats[self.phase].unsent += share(total, workers, self.id).saturating_sub(self.sent);
            } else if !over {
                let ticket = match phase.length {
                    Length::Count(_) => shared.tickets[self.phase]
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok(),
                    Length::Time(_) => true,
                };
                if ticket {
                    return Some(Slot { phase: self.phase, start, intended: None });
                }
            }
            self.phase += 1;
            self.sent = 0;
        }
    }

    /// The slot this worker sends next, claimed now if need be; `None` when it is done.
    fn claim(&mut self, shared: &Shared, timeline: &[(Instant, Option<Instant>)]) -> Option<Slot> {
        if self.pending.is_none() {
            self.pending = self.next_slot(Instant::now(), shared, timeline);
        }
        self.pending
    }

    /// Charges a failed connect to the slot this worker would have sent; `false` when done.
    fn connect_failed(&mut self, shared: &Shared, timeline: &[(Instant, Option<Instant>)]) -> bool {
        match self.claim(shared, timeline) {
            Some(slot) => {
                self.pending = None;
                self.stats[slot.phase].failure(Failure::Connect);
                true
            }
            None => false,
        }
    }
}

/// Whether a session ended because the work is done or the connection must be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Done,
    Reconnect,
}

/// One connection's task: connect, report ready, wait for the start, then work until done.
pub(crate) async fn connection_task(
    shared: Arc<Shared>,
    mut workers: Vec<Worker>,
    read: Arc<AtomicU64>,
    progress: Arc<Progress>,
    ready: mpsc::Sender<()>,
    mut start: watch::Receiver<Option<Instant>>,
) -> Vec<Worker> {
    // Connect before the clock starts, so the first requests do not pay for the handshake.
    let mut conn = tokio::time::timeout(shared.plan.timeout, shared.connector.connect(read.clone()))
        .await
        .ok()
        .and_then(Result::ok);
    let _ = ready.send(()).await;
    drop(ready);
    let t0 = loop {
        if let Some(t0) = *start.borrow_and_update() {
            break t0;
        }
        if start.changed().await.is_err() {
            return workers;
        }
    };
    let timeline = shared.plan.timeline(t0);
    loop {
        let (sender, driver) = match conn.take() {
            Some(c) => c,
            None => match tokio::time::timeout(shared.plan.timeout, shared.connector.connect(read.clone()))
                .await
            {
                Ok(Ok(c)) => c,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::debug!(%error, "connect failed");
                    for w in &mut workers {
                        if w.connect_failed(&shared, &timeline) {
                            progress.failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Pace the next attempt: a closed loop backs off briefly, rate mode waits
                    // for the next slot's intended time (a dead target is not spun on).
                    let next: Vec<Slot> =
                        workers.iter_mut().filter_map(|w| w.claim(&shared, &timeline)).collect();
                    if next.is_empty() {
                        return workers;
                    }
                    let at = next.iter().map(|s| s.intended.unwrap_or(s.start)).min().unwrap_or(t0);
                    if next.iter().all(|s| s.intended.is_some()) || at > Instant::now() {
                        wait_until(at, &shared.stop).await;
                    } else {
                        tokio::time::sleep(CONNECT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        if session(sender, driver, &mut workers, &shared, &timeline, &progress).await == Flow::Done {
            return workers;
        }
    }
}

/// Runs the workers over one connection until they finish or the connection breaks.
async fn session(
    sender: Sender,
    driver: Driver,
    workers: &mut [Worker],
    shared: &Shared,
    timeline: &[(Instant, Option<Instant>)],
    progress: &Progress,
) -> Flow {
    let mut driver = pin!(driver.run());
    let mut driver_done = false;
    let flow = async {
        match sender {
            Sender::H1(send) => {
                let mut sender = Sender::H1(send);
                match workers.first_mut() {
                    Some(w) => work(&mut sender, w, shared, timeline, progress).await,
                    None => Flow::Done,
                }
            }
            Sender::H2(send) => {
                let flows = join_all(workers.iter_mut().map(|w| {
                    let mut sender = Sender::H2(send.clone());
                    async move { work(&mut sender, w, shared, timeline, progress).await }
                }))
                .await;
                if flows.iter().all(|f| *f == Flow::Done) { Flow::Done } else { Flow::Reconnect }
            }
        }
    };
    let mut flow = pin!(flow);
    // Poll the connection alongside the work; when it closes, in-flight requests fail and the
    // work future notices, so a request is never dropped unrecorded. The connection goes first
    // so a response it just read reaches the worker in the same wake-up.
    loop {
        tokio::select! {
            biased;
            () = &mut driver, if !driver_done => driver_done = true,
            f = &mut flow => return f,
        }
    }
}

/// Sends requests on one connection (or HTTP/2 stream slot) until done or it breaks.
async fn work(
    sender: &mut Sender,
    w: &mut Worker,
    shared: &Shared,
    timeline: &[(Instant, Option<Instant>)],
    progress: &Progress,
) -> Flow {
    // One watchdog timer per worker instead of one timer per request: it is re-armed only when
    // it fires, to the in-flight request's own deadline, so the hot path never touches the
    // timer wheel (a closed loop at 60k req/s would otherwise insert and remove 60k entries/s).
    let mut watchdog = pin!(tokio::time::sleep(shared.plan.timeout));
    let mut now = Instant::now();
    loop {
        // Wait until the connection can take a request before claiming a slot for it.
        if !ready(sender).await {
            return Flow::Reconnect;
        }
        let slot = match w.pending.take() {
            Some(slot) => slot,
            None => match w.next_slot(now, shared, timeline) {
                Some(slot) => slot,
                None => return Flow::Done,
            },
        };
        let at = slot.intended.unwrap_or(slot.start);
        if at > Instant::now() {
            if !wait_until(at, &shared.stop).await {
                return Flow::Done;
            }
            if !ready(sender).await {
                // Closed while idle (keep-alive timeout): send this slot on a new connection.
                w.pending = Some(slot);
                return Flow::Reconnect;
            }
        }
        let req = shared.plan.request(w.sampler.next_index());
        let sent = Instant::now();
        let deadline = sent + shared.plan.timeout;
        let result = {
            let mut exchange = pin!(exchange(sender, req));
            loop {
                tokio::select! {
                    biased;
                    r = &mut exchange => break Some(r),
                    () = &mut watchdog => {
                        if Instant::now() >= deadline {
                            break None;
                        }
                        watchdog.as_mut().reset(deadline.into());
                    }
                }
            }
        };
        if result.is_none() {
            // Timed out: the next request gets a fresh full period.
            watchdog.as_mut().reset((Instant::now() + shared.plan.timeout).into());
        }
        let done = Instant::now();
        now = done;
        let stats = &mut w.stats[slot.phase];
        let failure = match result {
            Some(Ok((status, cache, body))) => {
                let latency = micros(done - slot.intended.unwrap_or(sent));
                let service = slot.intended.map(|_| micros(done - sent));
                stats.response(status, cache, body, latency, service);
                w.last[slot.phase] = Some(done);
                let second = w.seconds.at(second_of(timeline, done));
                second.responses += 1;
                second.latency_sum_us += latency;
                second.latency_max_us = second.latency_max_us.max(latency);
                match cache {
                    CacheResult::Hit => second.hits += 1,
                    CacheResult::Miss => second.misses += 1,
                    CacheResult::Unknown => {}
                }
                progress.responses.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Some(Err(e)) => failure_of(&e),
            None => Failure::Timeout,
        };
        stats.failure(failure);
        w.last[slot.phase] = Some(done);
        w.seconds.at(second_of(timeline, done)).failures += 1;
        progress.failures.fetch_add(1, Ordering::Relaxed);
        // An HTTP/1.1 connection is unusable after a failed exchange (a late response would
        // be read as the next one's); HTTP/2 only lost the stream unless the connection died.
        if matches!(sender, Sender::H1(_)) || !ready(sender).await {
            return Flow::Reconnect;
        }
    }
}

/// Sleeps until `at` with sub-millisecond precision: tokio's timer fires on millisecond ticks
/// (up to 1 ms late), and that lateness would be charged to the server as latency. So sleep
/// until a tick before `at`, then yield to the scheduler until `at` — I/O is still polled
/// between yields, and the spin lasts at most [`SPIN`]. Long waits (a phase that starts later)
/// wake every [`STOP_CHECK`] to notice Ctrl-C; returns `false` when stopped.
async fn wait_until(at: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let Some(early) = at.checked_sub(SPIN).filter(|e| *e > now) else { break };
        tokio::time::sleep_until(early.min(now + STOP_CHECK).into()).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
    true
}

async fn ready(sender: &mut Sender) -> bool {
    match sender {
        Sender::H1(s) => s.ready().await.is_ok(),
        Sender::H2(s) => s.ready().await.is_ok(),
    }
}

/// Sends one request and reads the whole response, counting body bytes.
async fn exchange(
    sender: &mut Sender,
    req: http::Request<crate::connect::Body>,
) -> Result<(u16, CacheResult, u64), hyper::Error> {
    let resp = match sender {
        Sender::H1(s) => s.send_request(req).await?,
        Sender::H2(s) => s.send_request(req).await?,
    };
    let status = resp.status().as_u16();
    let cache = classify(resp.headers());
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    Ok((status, cache, bytes))
}

/// Whole seconds from the start of the run to `at`.
fn second_of(timeline: &[(Instant, Option<Instant>)], at: Instant) -> usize {
    timeline.first().map_or(0, |t| at.saturating_duration_since(t.0).as_secs() as usize)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Maps a hyper error to the kind the report counts.
fn failure_of(e: &hyper::Error) -> Failure {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return Failure::Reset;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if err.is::<std::io::Error>() {
            return Failure::Reset;
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && (h2.is_io() || h2.is_go_away() || h2.is_reset())
        {
            return Failure::Reset;
        }
        source = err.source();
    }
    Failure::Protocol
}
