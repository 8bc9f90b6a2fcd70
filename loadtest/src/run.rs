//! One load run: open loop (paced by `schedule`) or closed loop, one connection per worker task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::bodies;
use crate::http::{ClientError, Conn, Response, Target};
use crate::schedule;
use crate::stats::{micros, record_us, ErrorKind, Live, Record, Stats};
use crate::swap::{self, SwapEvent, SwapSpec};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    Open { rate: f64, connections: usize },
    Closed { concurrency: usize },
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub load: Load,
    pub warmup: Duration,
    pub duration: Duration,
    pub requests: Option<u64>,
    pub timeout: Duration,
    pub seed: u64,
    pub progress: bool,
    pub swap: Option<SwapSpec>,
}

/// The server and the pre-serialised requests, shared by every run of a sweep.
pub struct Client {
    pub target: Target,
    pub requests: Vec<Vec<u8>>,
}

/// One second of the run as the progress line saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    pub second: u64,
    pub measuring: bool,
    pub ok: u64,
    pub errors: u64,
    pub mean_latency_us: u64,
    pub max_latency_us: u64,
}

pub struct RunOutput {
    pub stats: Stats,
    /// From the start of measurement to the last measured completion (at least the duration).
    pub measured: Duration,
    pub timeline: Vec<Tick>,
    pub swaps: Vec<SwapEvent>,
}

struct Ctx {
    client: Arc<Client>,
    spec: RunSpec,
    t0: Instant,
    measure_start: Instant,
    live: Live,
    stop: Arc<AtomicBool>,
    next: AtomicU64,
    measured_next: AtomicU64,
}

impl Ctx {
    /// Sends request `n` on `conn` (connecting first if needed); any failure drops the
    /// connection so the next request starts from a clean one.
    async fn exchange(&self, conn: &mut Option<Conn>, n: u64) -> Result<Response, ErrorKind> {
        let reqs = &self.client.requests;
        let request = &reqs[bodies::pick(self.spec.seed, n, reqs.len())];
        let attempt = async {
            if conn.is_none() {
                let c = Conn::connect(&self.client.target.addr())
                    .await
                    .map_err(|_| ErrorKind::Connect)?;
                *conn = Some(c);
            }
            let c = conn.as_mut().expect("connection was just established");
            c.round_trip(request).await.map_err(|e| match e {
                ClientError::Io(_) => ErrorKind::Io,
                ClientError::Protocol(_) => ErrorKind::Protocol,
            })
        };
        let result = match tokio::time::timeout(self.spec.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ErrorKind::Timeout),
        };
        if !matches!(&result, Ok(r) if !r.close) {
            *conn = None;
        }
        result
    }

    fn offset_us(&self, t: Instant) -> u64 {
        micros(t.saturating_duration_since(self.t0))
    }

    /// Progress counters see every request (so the warm-up shows on the progress line); the
    /// report sees only measured ones.
    fn record(
        &self,
        stats: &mut Stats,
        result: &Result<Response, ErrorKind>,
        measured: bool,
        start: Instant,
        sent: Instant,
        done: Instant,
    ) {
        let latency = done.saturating_duration_since(start);
        if !measured {
            let ok = matches!(result, Ok(r) if (200..300).contains(&r.status));
            self.live.add(ok, micros(latency));
            return;
        }
        let ok = match result {
            Ok(resp) => stats.record_response(resp, latency, done.saturating_duration_since(sent)),
            Err(kind) => {
                stats.record_error(*kind);
                false
            }
        };
        self.live.add(ok, micros(latency));
        if let Some(records) = &mut stats.records {
            records.push(Record {
                start_us: self.offset_us(start),
                end_us: self.offset_us(done),
                ok,
            });
        }
    }
}

async fn open_worker(
    ctx: Arc<Ctx>,
    permits: Arc<Semaphore>,
    rate: f64,
    first_measured: u64,
    total: u64,
) -> (Stats, Instant) {
    let mut stats = Stats::new(ctx.spec.swap.is_some());
    let mut conn = Conn::connect(&ctx.client.target.addr()).await.ok();
    let drain_deadline = ctx.t0 + schedule::intended_offset(total, rate) + ctx.spec.timeout;
    let mut last_done = ctx.measure_start;
    loop {
        match permits.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => break,
        }
        let n = ctx.next.fetch_add(1, Ordering::Relaxed);
        if n >= total || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let intended = ctx.t0 + schedule::intended_offset(n, rate);
        let measured = n >= first_measured;
        let sent = Instant::now();
        if sent > drain_deadline {
            if measured {
                stats.record_error(ErrorKind::NotSent);
                ctx.live.add(false, 0);
            }
            continue;
        }
        let result = ctx.exchange(&mut conn, n).await;
        let done = Instant::now();
        ctx.record(&mut stats, &result, measured, intended, sent, done);
        if measured {
            record_us(
                &mut stats.send_lag,
                micros(sent.saturating_duration_since(intended)),
            );
            last_done = last_done.max(done);
        }
    }
    (stats, last_done)
}

async fn closed_worker(ctx: Arc<Ctx>, end: Option<Instant>) -> (Stats, Instant) {
    let mut stats = Stats::new(ctx.spec.swap.is_some());
    let mut conn = Conn::connect(&ctx.client.target.addr()).await.ok();
    let mut last_done = ctx.measure_start;
    while !ctx.stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        if end.is_some_and(|end| sent >= end) {
            break;
        }
        let n = ctx.next.fetch_add(1, Ordering::Relaxed);
        let measured = sent >= ctx.measure_start;
        if measured {
            if let Some(limit) = ctx.spec.requests {
                if ctx.measured_next.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
            }
        }
        let result = ctx.exchange(&mut conn, n).await;
        let done = Instant::now();
        ctx.record(&mut stats, &result, measured, sent, sent, done);
        if measured {
            last_done = last_done.max(done);
        }
        if matches!(result, Err(ErrorKind::Connect)) {
            // Without a pause a refused connection turns the loop into a spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    (stats, last_done)
}

/// Prints one line per second to stderr and keeps the same numbers for the report.
async fn progress(ctx: Arc<Ctx>, timeline: Arc<Mutex<Vec<Tick>>>) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(ctx.t0 + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    let (mut last_ok, mut last_err, mut last_sum) = (0, 0, 0);
    for second in 1.. {
        tick.tick().await;
        let ok = ctx.live.ok.load(Ordering::Relaxed);
        let err = ctx.live.errors.load(Ordering::Relaxed);
        let sum = ctx.live.latency_sum_us.load(Ordering::Relaxed);
        let max = ctx.live.latency_max_us.swap(0, Ordering::Relaxed);
        let (d_ok, d_err) = (ok - last_ok, err - last_err);
        let mean = (sum - last_sum).checked_div(d_ok).unwrap_or(0);
        (last_ok, last_err, last_sum) = (ok, err, sum);
        // The line covers (second-1, second]; it is "measuring" once that whole second is.
        let measuring = ctx.t0 + Duration::from_secs(second - 1) >= ctx.measure_start;
        if ctx.spec.progress {
            eprintln!(
                "[{second:>4}s] {:<9} {d_ok:>7} ok/s {d_err:>6} err/s  mean {:>8.3} ms  max {:>8.3} ms",
                if measuring { "measuring" } else { "warm-up" },
                mean as f64 / 1e3,
                max as f64 / 1e3,
            );
        }
        timeline
            .lock()
            .expect("timeline lock is never held across a panic")
            .push(Tick {
                second,
                measuring,
                ok: d_ok,
                errors: d_err,
                mean_latency_us: mean,
                max_latency_us: max,
            });
    }
}

/// `stop` ends the run early (Ctrl-C): in-flight requests finish and are reported.
pub async fn run(client: Arc<Client>, spec: RunSpec, stop: Arc<AtomicBool>) -> RunOutput {
    let t0 = Instant::now();
    let measure_start = t0 + spec.warmup;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        spec: spec.clone(),
        t0,
        measure_start,
        live: Live::default(),
        stop: stop.clone(),
        next: AtomicU64::new(0),
        measured_next: AtomicU64::new(0),
    });
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let progress_task = tokio::spawn(progress(ctx.clone(), timeline.clone()));
    let end = spec
        .requests
        .is_none()
        .then(|| measure_start + spec.duration);
    let (swap_stop, swap_task) = match &spec.swap {
        Some(s) => {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(swap::run_swaps(s.clone(), t0, measure_start, end, rx));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };

    let mut workers = Vec::new();
    let mut pacer = None;
    match spec.load {
        Load::Open { rate, connections } => {
            let (first_measured, total) =
                schedule::plan(rate, spec.warmup, spec.duration, spec.requests);
            let permits = Arc::new(Semaphore::new(0));
            pacer = Some(schedule::spawn_pacer(
                t0,
                rate,
                total,
                connections,
                permits.clone(),
                stop.clone(),
            ));
            for _ in 0..connections {
                workers.push(tokio::spawn(open_worker(
                    ctx.clone(),
                    permits.clone(),
                    rate,
                    first_measured,
                    total,
                )));
            }
        }
        Load::Closed { concurrency } => {
            for _ in 0..concurrency {
                workers.push(tokio::spawn(closed_worker(ctx.clone(), end)));
            }
        }
    }

    let mut stats = Stats::new(spec.swap.is_some());
    let mut last_done = measure_start;
    for w in workers {
        let (s, done) = w.await.expect("load workers do not panic");
        stats.merge(s);
        last_done = last_done.max(done);
    }
    if let Some(p) = pacer {
        p.join().expect("the pacer thread does not panic");
    }
    progress_task.abort();
    let swaps = match (swap_stop, swap_task) {
        (Some(tx), Some(task)) => {
            let _ = tx.send(true);
            task.await.expect("the swap task does not panic")
        }
        _ => Vec::new(),
    };
    let mut measured = last_done.saturating_duration_since(measure_start);
    if end.is_some() && !stop.load(Ordering::Relaxed) {
        measured = measured.max(spec.duration);
    }
    let timeline = std::mem::take(&mut *timeline.lock().expect("timeline lock is not poisoned"));
    RunOutput {
        stats,
        measured,
        timeline,
        swaps,
    }
}
