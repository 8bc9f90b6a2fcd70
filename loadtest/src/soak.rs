//! Soak scenario: hostile requests mixed into a run (counted apart from the valid ones), and the
//! server process's RSS and open file descriptors sampled from `/proc` over time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::http::Target;

/// How long a hostile request waits for its answer before it counts as `no_answer`.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    MalformedJson,
    OversizedBody,
    GarbageMethod,
    /// Connects, sends half a request head and never finishes it.
    StalledConnection,
}

const KINDS: [Hostile; 4] = [
    Hostile::MalformedJson,
    Hostile::OversizedBody,
    Hostile::GarbageMethod,
    Hostile::StalledConnection,
];

#[derive(Debug, Clone)]
pub struct SoakSpec {
    pub target: Target,
    pub path: String,
    /// Hostile requests per second (0: none), cycling through the kinds.
    pub hostile_rate: f64,
    /// Bytes of the oversized body (above the server's `--max-body-bytes`).
    pub oversized_bytes: usize,
    /// Stalled connections held open at once at most; past that a stall is skipped.
    pub max_stalled: usize,
    /// How long a stalled connection waits for the server to close it.
    pub stall_for: Duration,
    pub pid: Option<u32>,
    pub sample_every: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kb: u64,
    pub fds: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakSummary {
    pub hostile_sent: u64,
    /// kind → answer (`413`, `closed_by_server`, `no_answer`, ...) → count.
    pub hostile: BTreeMap<String, BTreeMap<String, u64>>,
    pub samples: Vec<Sample>,
    /// The first sample at least 60 s into the run, and the last one.
    pub after_first_minute: Option<Sample>,
    pub end: Option<Sample>,
    pub rss_growth_pct: Option<f64>,
    pub max_fds: Option<u64>,
}

type Counts = Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>;

/// Runs until `stop` turns true, then returns what it saw.
pub async fn run(spec: SoakSpec, mut stop: watch::Receiver<bool>) -> SoakSummary {
    let counts: Counts = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let sampler = spec.pid.map(|pid| {
        let samples = Arc::clone(&samples);
        let every = spec.sample_every;
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                if let Some(s) = sample(pid, t0) {
                    samples.lock().expect("sample lock").push(s);
                }
            }
        })
    });
    if spec.hostile_rate > 0.0 {
        let stalled = Arc::new(Semaphore::new(spec.max_stalled));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / spec.hostile_rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut i = 0usize;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let kind = KINDS[i % KINDS.len()];
            i += 1;
            let (spec, counts, sent) = (spec.clone(), Arc::clone(&counts), Arc::clone(&sent));
            let permit = match kind {
                Hostile::StalledConnection => match Arc::clone(&stalled).try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        count(&counts, kind, "skipped_at_cap");
                        continue;
                    }
                },
                _ => None,
            };
            tokio::spawn(async move {
                sent.fetch_add(1, Ordering::Relaxed);
                let answer = send(&spec, kind, i).await;
                count(&counts, kind, &answer);
                drop(permit);
            });
        }
        // Let the last answers arrive (a stall waits at most `stall_for`).
        tokio::time::sleep(Duration::from_millis(200)).await;
    } else {
        let _ = stop.changed().await;
    }
    if let Some(s) = spec.pid.and_then(|pid| sample(pid, t0)) {
        samples.lock().expect("sample lock").push(s);
    }
    if let Some(task) = sampler {
        task.abort();
    }
    let samples = std::mem::take(&mut *samples.lock().expect("sample lock"));
    let hostile = counts.lock().expect("count lock").clone();
    summarise(sent.load(Ordering::Relaxed), hostile, samples)
}

fn count(counts: &Counts, kind: Hostile, answer: &str) {
    let name = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    *counts
        .lock()
        .expect("count lock")
        .entry(name)
        .or_default()
        .entry(answer.to_string())
        .or_default() += 1;
}

fn summarise(
    sent: u64,
    hostile: BTreeMap<String, BTreeMap<String, u64>>,
    samples: Vec<Sample>,
) -> SoakSummary {
    let after_first_minute = samples.iter().find(|s| s.t_s >= 60.0).cloned();
    let end = samples.last().cloned();
    let rss_growth_pct = match (&after_first_minute, &end) {
        (Some(a), Some(e)) if a.rss_kb > 0 => {
            Some((e.rss_kb as f64 - a.rss_kb as f64) / a.rss_kb as f64 * 100.0)
        }
        _ => None,
    };
    SoakSummary {
        hostile_sent: sent,
        hostile,
        max_fds: samples.iter().map(|s| s.fds).max(),
        after_first_minute,
        end,
        rss_growth_pct,
        samples,
    }
}

/// RSS (`VmRSS`) and open fds of `pid` from `/proc`.
fn sample(pid: u32, t0: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        t_s: t0.elapsed().as_secs_f64(),
        rss_kb,
        fds,
    })
}

/// Sends one hostile request and names what came back.
async fn send(spec: &SoakSpec, kind: Hostile, i: usize) -> String {
    let mut stream = match TcpStream::connect(spec.target.addr()).await {
        Ok(s) => s,
        Err(e) => return format!("connect_error:{:?}", e.kind()),
    };
    let host = spec.target.addr();
    let request = match kind {
        Hostile::MalformedJson => {
            spec.target
                .post_json(&spec.path, b"{\"history\": [\"i1\", ", None)
        }
        Hostile::OversizedBody => {
            let mut body = b"{\"history\": [\"".to_vec();
            body.resize(spec.oversized_bytes, b'x');
            body.extend_from_slice(b"\"]}");
            spec.target.post_json(&spec.path, &body, None)
        }
        Hostile::GarbageMethod => {
            format!("X{i:x}Q /recommend HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                .into_bytes()
        }
        Hostile::StalledConnection => {
            format!("POST {} HTTP/1.1\r\nhost: {host}\r\n", spec.path).into_bytes()
        }
    };
    // The server may answer (413) and close before the whole body is written: keep reading.
    let _ = stream.write_all(&request).await;
    let wait = match kind {
        Hostile::StalledConnection => spec.stall_for,
        _ => ANSWER_TIMEOUT,
    };
    let start = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return "no_answer".into(),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&buf);
    match head.split_whitespace().nth(1) {
        Some(status) if head.starts_with("HTTP/") => status.to_string(),
        _ if kind == Hostile::StalledConnection => "closed_by_server".into(),
        _ => "closed_without_answer".into(),
    }
}

/// Markdown section for the report.
pub fn markdown(s: &SoakSummary) -> String {
    use std::fmt::Write as _;
    let mut md = String::from("\n### Soak: hostile requests and server resources\n\n");
    let _ = writeln!(md, "Hostile requests sent: {}.\n", s.hostile_sent);
    for (kind, answers) in &s.hostile {
        let list: Vec<String> = answers.iter().map(|(a, n)| format!("{a}: {n}")).collect();
        let _ = writeln!(md, "- {kind}: {}", list.join(", "));
    }
    if let (Some(a), Some(e)) = (&s.after_first_minute, &s.end) {
        let _ = writeln!(
            md,
            "\nRSS {} kB at {:.0} s → {} kB at {:.0} s ({:+.2} %); fds {} → {} (max {}).",
            a.rss_kb,
            a.t_s,
            e.rss_kb,
            e.t_s,
            s.rss_growth_pct.unwrap_or(0.0),
            a.fds,
            e.fds,
            s.max_fds.unwrap_or(0)
        );
    } else if let Some(e) = &s.end {
        let _ = writeln!(
            md,
            "\nRSS {} kB, fds {} at {:.0} s (run shorter than a minute).",
            e.rss_kb, e.fds, e.t_s
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_measured_from_the_first_minute() {
        let s = |t_s, rss_kb, fds| Sample { t_s, rss_kb, fds };
        let summary = summarise(
            0,
            BTreeMap::new(),
            vec![s(5.0, 50, 10), s(61.0, 100, 12), s(600.0, 103, 12)],
        );
        assert_eq!(summary.after_first_minute.unwrap().rss_kb, 100);
        assert!((summary.rss_growth_pct.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(summary.max_fds, Some(12));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id(), Instant::now()).unwrap();
        assert!(s.rss_kb > 0 && s.fds > 0);
    }
}
