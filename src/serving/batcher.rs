//! Dynamic batching: requests for one model are queued (bounded), collected into batches of up
//! to `max_batch_size` or until the oldest has waited `max_queue_delay` (Triton's dynamic
//! batcher), scored in one model call on a dedicated inference thread, and answered one by one.
//!
//! The batching decision lives in the pure [`State`], which the unit tests drive directly; the
//! thread around it only moves jobs and runs the model.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::sync::oneshot;

use super::model::LoadedModel;
use super::rank::{rank, RankRequest};
use crate::metrics::Metrics;

/// What the batching decision needs to know about a queued entry.
pub trait Pending {
    /// Entries with different keys (model loads) never share a batch.
    fn key(&self) -> u64;
    fn enqueued_at(&self) -> Instant;
    /// The client has gone; the entry is dropped instead of scored.
    fn is_cancelled(&self) -> bool;
}

#[derive(Debug)]
pub enum Next<T> {
    /// Score these now (never empty, one key).
    Run(Vec<T>),
    /// Nothing is due before this instant unless more entries arrive.
    WaitUntil(Instant),
    Empty,
}

/// The queue of one model and the rule for cutting it into batches.
#[derive(Debug)]
pub struct State<T> {
    queue: VecDeque<T>,
    max_batch_size: usize,
    max_delay: Duration,
}

impl<T: Pending> State<T> {
    pub fn new(max_batch_size: usize, max_delay: Duration) -> Self {
        assert!(max_batch_size > 0, "max_batch_size is validated to be >= 1");
        State {
            queue: VecDeque::new(),
            max_batch_size,
            max_delay,
        }
    }

    pub fn push(&mut self, entry: T) {
        self.queue.push_back(entry);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Decides what to do at `now`. Returns the decision and how many cancelled entries were
    /// dropped on the way.
    ///
    /// A batch is the run of leading entries with the front entry's key, at most
    /// `max_batch_size` long. It is due when it is full, when an entry with another key waits
    /// behind it (a swap happened: waiting would only delay both), or when the front entry has
    /// waited `max_delay`.
    pub fn next_batch(&mut self, now: Instant) -> (Next<T>, usize) {
        let mut dropped = 0;
        while self.queue.front().is_some_and(Pending::is_cancelled) {
            self.queue.pop_front();
            dropped += 1;
        }
        let Some(front) = self.queue.front() else {
            return (Next::Empty, dropped);
        };
        let key = front.key();
        let deadline = front.enqueued_at() + self.max_delay;
        let run = self
            .queue
            .iter()
            .take(self.max_batch_size)
            .take_while(|e| e.key() == key)
            .count();
        let other_key_behind = run < self.max_batch_size && run < self.queue.len();
        if run < self.max_batch_size && !other_key_behind && now < deadline {
            return (Next::WaitUntil(deadline), dropped);
        }
        let mut batch = Vec::with_capacity(run);
        for entry in self.queue.drain(..run) {
            if entry.is_cancelled() {
                dropped += 1;
            } else {
                batch.push(entry);
            }
        }
        if batch.is_empty() {
            // Everything in the run was cancelled; decide again on what is left.
            let (next, more) = self.next_batch(now);
            return (next, dropped + more);
        }
        (Next::Run(batch), dropped)
    }
}

/// The answer to one recommend job: best `(row, score)` pairs and where the time went.
#[derive(Debug)]
pub struct Scored {
    pub items: Vec<(u32, f32)>,
    pub queue_time: Duration,
    pub inference_time: Duration,
    pub batch_size: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InferenceError(pub String);

/// One recommend request on its way to the model.
pub struct Job {
    pub model: Arc<LoadedModel>,
    /// Vocabulary rows fed to the model.
    pub history: Vec<u32>,
    /// Rows that must not be returned besides the history (the request's `exclude`).
    pub exclude: Vec<u32>,
    pub k: usize,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Scored, InferenceError>>,
}

impl Pending for Job {
    fn key(&self) -> u64 {
        self.model.load_id
    }
    fn enqueued_at(&self) -> Instant {
        self.enqueued
    }
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    pub max_batch_size: usize,
    pub max_delay: Duration,
    pub queue_capacity: usize,
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full")]
    Full,
    #[error("the batcher has stopped (its inference threads are gone)")]
    Closed,
}

/// Cheap handle to one model's queue. The inference threads stop when the last handle is gone.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    depth: Depth,
    capacity: usize,
}

/// Jobs admitted and not yet taken into a batch, wherever they sit (channel or [`State`]):
/// the admission bound and the `distilrec_queue_depth` gauge.
#[derive(Clone)]
struct Depth {
    count: Arc<AtomicUsize>,
    gauge: IntGauge,
}

impl Depth {
    /// Admits one job unless `capacity` are already waiting.
    fn try_add(&self, capacity: usize) -> bool {
        if self.count.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.gauge.inc();
        true
    }

    fn sub(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::AcqRel);
        self.gauge.sub(n as i64);
    }
}

/// Per-model metric handles, resolved once instead of per request.
#[derive(Clone)]
struct BatchMetrics {
    depth: Depth,
    queue: Histogram,
    inference: Histogram,
    batch_size: Histogram,
    cancelled: IntCounter,
    errors: IntCounter,
}

impl Batcher {
    pub fn spawn(model: &str, config: BatcherConfig, metrics: &Metrics) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let m = BatchMetrics {
            depth: Depth {
                count: Arc::new(AtomicUsize::new(0)),
                gauge: metrics.queue_depth.with_label_values(&[model]),
            },
            queue: metrics.queue_duration.with_label_values(&[model]),
            inference: metrics.inference_duration.with_label_values(&[model]),
            batch_size: metrics.batch_size.with_label_values(&[model]),
            cancelled: metrics.cancelled.with_label_values(&[model]),
            errors: metrics.inference_errors.with_label_values(&[model]),
        };
        // One lock around receiver + state: the thread holding it collects the next batch
        // while the others run theirs, so threads pipeline instead of splitting batches.
        let shared = Arc::new(Mutex::new((
            rx,
            State::new(config.max_batch_size, config.max_delay),
        )));
        for i in 0..config.threads {
            let shared = Arc::clone(&shared);
            let m = m.clone();
            std::thread::Builder::new()
                .name(format!("infer-{model}-{i}"))
                .spawn(move || inference_loop(&shared, &m))?;
        }
        Ok(Batcher {
            tx,
            depth: m.depth,
            capacity: config.queue_capacity,
        })
    }

    /// Queues a job without waiting; a full queue is the caller's cue to shed load.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        // Count first: the inference thread may take the job before `try_send` returns.
        if !self.depth.try_add(self.capacity) {
            return Err(SubmitError::Full);
        }
        self.tx.try_send(job).map_err(|e| {
            self.depth.sub(1);
            match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }
        })
    }
}

type Shared = Mutex<(Receiver<Job>, State<Job>)>;

fn inference_loop(shared: &Shared, m: &BatchMetrics) {
    while let Some(batch) = collect(shared, m) {
        run_batch(batch, m);
    }
}

/// Blocks until a batch is due; `None` once every sender is gone and the queue is empty.
fn collect(shared: &Shared, m: &BatchMetrics) -> Option<Vec<Job>> {
    // A panic while holding the lock cannot leave the queue inconsistent (jobs are moved whole).
    let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
    let (rx, state) = &mut *guard;
    let mut disconnected = false;
    loop {
        loop {
            match rx.try_recv() {
                Ok(job) => state.push(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        let (next, dropped) = state.next_batch(now);
        if dropped > 0 {
            m.depth.sub(dropped);
            m.cancelled.inc_by(dropped as u64);
        }
        match next {
            Next::Run(batch) => {
                m.depth.sub(batch.len());
                return Some(batch);
            }
            Next::WaitUntil(deadline) if disconnected => {
                std::thread::sleep(deadline.saturating_duration_since(now));
            }
            Next::WaitUntil(deadline) => {
                match rx.recv_timeout(deadline.saturating_duration_since(now)) {
                    Ok(job) => state.push(job),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            Next::Empty if disconnected => return None,
            Next::Empty => match rx.recv() {
                Ok(job) => state.push(job),
                Err(_) => return None,
            },
        }
    }
}

fn run_batch(batch: Vec<Job>, m: &BatchMetrics) {
    let start = Instant::now();
    let model = Arc::clone(&batch[0].model);
    m.batch_size.observe(batch.len() as f64);
    for job in &batch {
        m.queue
            .observe(start.saturating_duration_since(job.enqueued).as_secs_f64());
    }
    let results = score_isolating(&batch, |jobs| score(&model, jobs));
    let inference_time = start.elapsed();
    m.inference.observe(inference_time.as_secs_f64());
    let size = batch.len();
    for (job, result) in batch.into_iter().zip(results) {
        let reply = match result {
            Ok(items) => Ok(Scored {
                items,
                queue_time: start.saturating_duration_since(job.enqueued),
                inference_time,
                batch_size: size,
            }),
            Err(message) => {
                m.errors.inc();
                tracing::error!(model = %model.name, version = model.version, error = %message, "inference failed");
                Err(InferenceError(message))
            }
        };
        let _ = job.reply.send(reply);
    }
}

/// Scores `jobs` in one call; if that call fails or panics, scores them again one by one, so
/// only the request that breaks the model fails and the rest of its batch is answered.
fn score_isolating<T, R>(
    jobs: &[T],
    score: impl Fn(&[T]) -> Result<Vec<R>, String>,
) -> Vec<Result<R, String>> {
    let run = |part: &[T]| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| score(part)))
            .unwrap_or_else(|p| Err(panic_message(p)))
    };
    match run(jobs) {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(_) => jobs
            .chunks(1)
            .map(|one| run(one).and_then(|mut r| r.pop().ok_or_else(|| "no result".into())))
            .collect(),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "inference panicked".into()),
    }
}

fn score(model: &LoadedModel, batch: &[Job]) -> Result<Vec<Vec<(u32, f32)>>, String> {
    let requests: Vec<RankRequest<'_>> = batch
        .iter()
        .map(|j| RankRequest {
            history: &j.history,
            exclude: &j.exclude,
            k: j.k,
        })
        .collect();
    rank(&model.scoring, &requests).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug)]
    struct E {
        id: u32,
        key: u64,
        at: Instant,
        cancelled: Cell<bool>,
    }

    impl Pending for E {
        fn key(&self) -> u64 {
            self.key
        }
        fn enqueued_at(&self) -> Instant {
            self.at
        }
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
    }

    fn e(id: u32, key: u64, at: Instant) -> E {
        E {
            id,
            key,
            at,
            cancelled: Cell::new(false),
        }
    }

    fn ids(next: Next<E>) -> Vec<u32> {
        match next {
            Next::Run(b) => b.into_iter().map(|e| e.id).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    const DELAY: Duration = Duration::from_micros(200);

    #[test]
    fn admission_stops_at_capacity_and_resumes_when_jobs_leave() {
        let d = Depth {
            count: Arc::new(AtomicUsize::new(0)),
            gauge: IntGauge::new("depth", "test").unwrap(),
        };
        assert!(d.try_add(2) && d.try_add(2));
        assert!(!d.try_add(2));
        assert_eq!(d.gauge.get(), 2);
        d.sub(1);
        assert!(d.try_add(2));
        assert_eq!(d.gauge.get(), 2);
    }

    #[test]
    fn a_failing_batch_is_retried_one_by_one() {
        let calls = std::cell::RefCell::new(Vec::new());
        let results = score_isolating(&[1, 2, 3, 4], |part: &[i32]| {
            calls.borrow_mut().push(part.len());
            if part.contains(&3) {
                panic!("row 3 is out of range");
            }
            Ok(part.iter().map(|x| x * 10).collect())
        });
        assert_eq!(results[0], Ok(10));
        assert_eq!(results[1], Ok(20));
        assert!(results[2].as_ref().unwrap_err().contains("row 3"));
        assert_eq!(results[3], Ok(40));
        assert_eq!(*calls.borrow(), vec![4, 1, 1, 1, 1]);
        // A healthy batch is one call.
        calls.borrow_mut().clear();
        let ok = score_isolating(&[1, 2], |p: &[i32]| {
            calls.borrow_mut().push(p.len());
            Ok(p.to_vec())
        });
        assert_eq!(ok, vec![Ok(1), Ok(2)]);
        assert_eq!(*calls.borrow(), vec![2]);
    }

    #[test]
    fn empty_queue_has_nothing_to_do() {
        let mut s = State::<E>::new(4, DELAY);
        assert!(matches!(s.next_batch(Instant::now()), (Next::Empty, 0)));
    }

    #[test]
    fn partial_batch_waits_until_the_oldest_deadline() {
        let t0 = Instant::now();
        let mut s = State::new(4, DELAY);
        s.push(e(1, 7, t0));
        s.push(e(2, 7, t0 + Duration::from_micros(50)));
        match s.next_batch(t0 + Duration::from_micros(100)).0 {
            Next::WaitUntil(d) => assert_eq!(d, t0 + DELAY),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.len(), 2);
        assert_eq!(ids(s.next_batch(t0 + DELAY).0), vec![1, 2]);
        assert!(s.is_empty());
    }

    #[test]
    fn full_batch_runs_at_once_and_the_rest_stays_queued() {
        let t0 = Instant::now();
        let mut s = State::new(3, DELAY);
        for id in 1..=5 {
            s.push(e(id, 1, t0));
        }
        assert_eq!(ids(s.next_batch(t0).0), vec![1, 2, 3]);
        assert_eq!(s.len(), 2);
        assert!(matches!(s.next_batch(t0).0, Next::WaitUntil(_)));
    }

    #[test]
    fn zero_delay_runs_whatever_is_queued() {
        let t0 = Instant::now();
        let mut s = State::new(32, Duration::ZERO);
        s.push(e(1, 1, t0));
        assert_eq!(ids(s.next_batch(t0).0), vec![1]);
    }

    #[test]
    fn a_batch_never_mixes_keys_and_a_swap_does_not_wait() {
        let t0 = Instant::now();
        let mut s = State::new(8, DELAY);
        s.push(e(1, 1, t0));
        s.push(e(2, 1, t0));
        s.push(e(3, 2, t0));
        s.push(e(4, 1, t0));
        // Key 2 behind the key-1 run: the run is cut now, before its deadline.
        assert_eq!(ids(s.next_batch(t0).0), vec![1, 2]);
        assert_eq!(ids(s.next_batch(t0).0), vec![3]);
        // The last entry is alone again and waits for company.
        assert!(matches!(s.next_batch(t0).0, Next::WaitUntil(_)));
        assert_eq!(ids(s.next_batch(t0 + DELAY).0), vec![4]);
    }

    #[test]
    fn cancelled_entries_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut s = State::new(8, DELAY);
        for id in 1..=4 {
            s.push(e(id, 1, t0));
        }
        s.queue[0].cancelled.set(true);
        s.queue[2].cancelled.set(true);
        let (next, dropped) = s.next_batch(t0 + DELAY);
        assert_eq!(dropped, 2);
        assert_eq!(ids(next), vec![2, 4]);
    }

    #[test]
    fn an_all_cancelled_run_moves_on_to_the_next_key() {
        let t0 = Instant::now();
        let mut s = State::new(8, DELAY);
        s.push(e(1, 1, t0));
        s.push(e(2, 1, t0));
        s.push(e(3, 2, t0));
        s.queue[1].cancelled.set(true);
        s.queue[0].cancelled.set(true);
        let (next, dropped) = s.next_batch(t0);
        assert_eq!(dropped, 2);
        // Entry 3 is now alone at the front and waits for its own deadline.
        assert!(matches!(next, Next::WaitUntil(_)));
        assert_eq!(ids(s.next_batch(t0 + DELAY).0), vec![3]);
    }
}
