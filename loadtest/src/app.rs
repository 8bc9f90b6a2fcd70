//! Wires the CLI to runs, sweeps and the output files.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::bodies::{self, BodyOptions};
use crate::cli::{Cli, Mode, SweepOver};
use crate::http::Target;
use crate::plot;
use crate::report::{self, Report};
use crate::run::{self, Client, Load, RunSpec};
use crate::soak::{self, SoakSpec};
use crate::swap::{self, SwapSpec};
use crate::sweep::{StepOutcome, SweepRule};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let target = Target::parse(&cli.url)?;
    let bodies = bodies::load(
        cli.bodies.as_deref(),
        &BodyOptions {
            k: cli.k,
            model: cli.model.as_deref(),
            history_len: cli.history_len,
            synthetic_items: cli.synthetic_items,
            seed: cli.seed,
        },
    )?;
    if let Some(path) = &cli.dump_bodies {
        let mut jsonl = bodies.join(&b'\n');
        jsonl.push(b'\n');
        return write(path, &jsonl);
    }
    eprintln!(
        "loadtest: {} request bodies ({}), POST {}{}",
        bodies.len(),
        if cli.protobuf { "protobuf" } else { "JSON" },
        cli.url.trim_end_matches('/'),
        cli.path
    );
    let requests = if cli.protobuf {
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let pb =
                    bodies::to_protobuf(b).with_context(|| format!("request body {}", i + 1))?;
                Ok(target.post(&cli.path, "application/x-protobuf", &pb, None))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        bodies
            .iter()
            .map(|b| target.post_json(&cli.path, b, None))
            .collect()
    };
    let client = Arc::new(Client { target, requests });
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(interrupt_handler(stop.clone()));
    match cli.mode {
        Mode::Open | Mode::Closed => single(&cli, client, stop).await,
        Mode::Sweep => sweep(&cli, client, stop).await,
    }
}

/// First Ctrl-C: stop sending, finish in-flight requests, write the reports. Second: exit now.
async fn interrupt_handler(stop: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("interrupted: finishing in-flight requests and reporting (Ctrl-C again to quit)");
    stop.store(true, Ordering::Relaxed);
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

fn spec(cli: &Cli, load: Load) -> anyhow::Result<RunSpec> {
    let swap = match cli.swap_every {
        Some(every) => Some(SwapSpec {
            admin: Target::parse(cli.admin_url.as_deref().unwrap_or(&cli.url))?,
            token: cli.admin_token.clone(),
            model: cli
                .swap_model()
                .expect("validate() requires a swap model with --swap-every")
                .to_string(),
            versions: cli.swap_versions.clone(),
            every: Duration::from_secs_f64(every),
            window: Duration::from_secs_f64(cli.swap_window_ms / 1e3),
        }),
        None => None,
    };
    Ok(RunSpec {
        load,
        warmup: cli.warmup(),
        duration: Duration::from_secs_f64(cli.duration),
        requests: cli.requests,
        timeout: cli.timeout(),
        seed: cli.seed,
        progress: !cli.quiet,
        swap,
    })
}

async fn single(cli: &Cli, client: Arc<Client>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let load = match cli.mode {
        Mode::Open => Load::Open {
            rate: cli.rate,
            connections: cli.connections,
        },
        _ => Load::Closed {
            concurrency: cli.concurrency,
        },
    };
    let spec = spec(cli, load)?;
    let window = spec.swap.as_ref().map(|s| s.window);
    let (soak_stop, soak_rx) = tokio::sync::watch::channel(false);
    let soak_task = cli.soak().then(|| {
        let rate = match load {
            Load::Open { rate, .. } => rate * cli.hostile_fraction,
            Load::Closed { .. } => 0.0,
        };
        tokio::spawn(soak::run(
            SoakSpec {
                target: client.target.clone(),
                path: cli.path.clone(),
                hostile_rate: rate,
                oversized_bytes: cli.hostile_body_bytes,
                max_stalled: cli.hostile_max_stalled,
                stall_for: Duration::from_secs_f64(cli.hostile_stall_s),
                pid: cli.server_pid,
                sample_every: Duration::from_secs_f64(cli.sample_every),
            },
            soak_rx,
        ))
    });
    let mut out = run::run(client, spec, stop).await;
    let _ = soak_stop.send(true);
    let soak_summary = match soak_task {
        Some(task) => Some(task.await.context("soak task")?),
        None => None,
    };
    let mut swap_hists = None;
    let swap_summary = match (window, out.stats.records.take()) {
        (Some(window), Some(records)) => {
            let events = std::mem::take(&mut out.swaps);
            let (summary, h_in, h_out) = swap::summarise(&records, events, window);
            swap_hists = Some((h_in, h_out));
            Some(summary)
        }
        _ => None,
    };
    let report = Report::new(cli.label.clone(), load, &out, swap_summary);
    let mut md = report::markdown(&report);
    if let Some(s) = &soak_summary {
        md.push_str(&soak::markdown(s));
        if let Some(path) = &cli.soak_json_out {
            write(path, &serde_json::to_vec_pretty(s)?)?;
        }
    }
    print!("{md}");
    write_outputs(cli, &report, &md)?;
    if let Some(path) = &cli.plot {
        let mut series = vec![(latency_name(load), &out.stats.latency)];
        if matches!(load, Load::Open { .. }) {
            series.push(("service time (from send)".to_string(), &out.stats.service));
        }
        if let Some((h_in, h_out)) = &swap_hists {
            series.push(("inside swap windows".to_string(), h_in));
            series.push(("outside swap windows".to_string(), h_out));
        }
        plot::percentile_plot(path, &title(cli), &series)?;
    }
    Ok(())
}

fn latency_name(load: Load) -> String {
    match load {
        Load::Open { .. } => "latency (from intended send)".to_string(),
        Load::Closed { .. } => "latency".to_string(),
    }
}

fn title(cli: &Cli) -> String {
    cli.label
        .clone()
        .unwrap_or_else(|| format!("loadtest {}", cli.url))
}

fn write_outputs(cli: &Cli, json: &impl Serialize, md: &str) -> anyhow::Result<()> {
    if let Some(path) = &cli.json_out {
        write(path, &serde_json::to_vec_pretty(json)?)?;
    }
    if let Some(path) = &cli.md_out {
        write(path, md.as_bytes())?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[derive(Serialize)]
struct SweepStep {
    value: f64,
    passed: bool,
    report: Report,
}

#[derive(Serialize)]
struct SweepReport {
    label: Option<String>,
    mode: &'static str,
    over: SweepOver,
    p99_bound_ms: f64,
    max_error_rate: f64,
    steps: Vec<SweepStep>,
    /// Index into `steps` of the passing step with the highest throughput.
    best: Option<usize>,
    max_throughput_rps: Option<f64>,
}

async fn sweep(cli: &Cli, client: Arc<Client>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rule = SweepRule {
        over: cli.sweep_over,
        start: match cli.sweep_over {
            SweepOver::Rate => cli.rate,
            SweepOver::Concurrency => cli.concurrency as f64,
        },
        p99_bound_us: (cli.p99_bound_ms * 1e3).round() as u64,
        max_error_rate: cli.max_error_rate,
        growth: cli.sweep_growth,
        precision: cli.sweep_precision,
        max_steps: cli.sweep_max_steps,
    };
    let mut outcomes = Vec::new();
    let mut steps = Vec::new();
    let mut hists = Vec::new();
    while let Some(value) = rule.next_value(&outcomes) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if !steps.is_empty() {
            tokio::time::sleep(Duration::from_secs_f64(cli.sweep_pause)).await;
        }
        let load = match cli.sweep_over {
            SweepOver::Rate => Load::Open {
                rate: value,
                connections: cli.connections,
            },
            SweepOver::Concurrency => Load::Closed {
                concurrency: value as usize,
            },
        };
        eprintln!("sweep step {}: {load:?}", steps.len() + 1);
        let out = run::run(client.clone(), spec(cli, load)?, stop.clone()).await;
        let report = Report::new(cli.label.clone(), load, &out, None);
        let outcome = StepOutcome {
            value,
            throughput: report.throughput_rps,
            p99_us: report.latency_us.p99,
            error_rate: report.error_rate(),
        };
        let passed = rule.passes(&outcome);
        eprintln!(
            "sweep step {}: {:.0} req/s, p99 {:.3} ms, error rate {:.4} → {}",
            steps.len() + 1,
            outcome.throughput,
            outcome.p99_us as f64 / 1e3,
            outcome.error_rate,
            if passed { "pass" } else { "fail" }
        );
        outcomes.push(outcome);
        hists.push((report.load_label(), out.stats.latency));
        steps.push(SweepStep {
            value,
            passed,
            report,
        });
    }
    let best = rule.best(&outcomes);
    let summary = SweepReport {
        label: cli.label.clone(),
        mode: "sweep",
        over: cli.sweep_over,
        p99_bound_ms: cli.p99_bound_ms,
        max_error_rate: cli.max_error_rate,
        max_throughput_rps: best.map(|i| steps[i].report.throughput_rps),
        best,
        steps,
    };
    let md = sweep_markdown(&summary);
    print!("{md}");
    write_outputs(cli, &summary, &md)?;
    if let Some(path) = &cli.plot {
        let series: Vec<_> = hists.iter().map(|(n, h)| (n.clone(), h)).collect();
        plot::percentile_plot(path, &title(cli), &series)?;
    }
    Ok(())
}

fn sweep_markdown(s: &SweepReport) -> String {
    let over = match s.over {
        SweepOver::Rate => "rate",
        SweepOver::Concurrency => "concurrency",
    };
    let mut md = format!(
        "## {} (sweep over {over}, p99 bound {} ms)\n\n",
        s.label.as_deref().unwrap_or("load test"),
        s.p99_bound_ms
    );
    md.push_str(&report::TABLE_HEADER.replacen("|\n|---|", "| within bound |\n|---|---|", 1));
    for (i, step) in s.steps.iter().enumerate() {
        let mut row = report::table_row(&step.report);
        row.truncate(row.trim_end().len());
        let verdict = match (step.passed, s.best == Some(i)) {
            (true, true) => "**best**",
            (true, false) => "yes",
            (false, _) => "no",
        };
        md.push_str(&format!("{row} {verdict} |\n"));
    }
    match s.best {
        Some(i) => md.push_str(&format!(
            "\nMax throughput with p99 ≤ {} ms: **{:.0} req/s** ({}).\n",
            s.p99_bound_ms,
            s.steps[i].report.throughput_rps,
            s.steps[i].report.load_label()
        )),
        None => md.push_str(&format!("\nNo step met p99 ≤ {} ms.\n", s.p99_bound_ms)),
    }
    md
}
