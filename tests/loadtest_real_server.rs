//! The bundled load harness driven in-process against the real `distilrec` binary: an open-loop
//! run with hot swaps through the admin API on synthetic bundles, and a closed-loop run on the
//! committed default model with real MovieLens histories as bodies.

mod data_support;
mod server_support;

use std::path::Path;

use clap::Parser;
use serde_json::Value;
use server_support::{mlp, publish, Server, N_ROWS, TOKEN};

/// Runs the harness with `args` (plus `--json-out`) and returns its JSON report.
fn harness(dir: &Path, args: &[String]) -> Value {
    let json_path = dir.join("report.json");
    let mut argv = vec!["loadtest".to_string(), "--quiet".into()];
    argv.extend_from_slice(args);
    argv.push(format!("--json-out={}", json_path.display()));
    let cli = loadtest::Cli::try_parse_from(&argv).expect("valid harness flags");
    loadtest::run(cli).expect("the harness runs");
    serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn open_loop_with_hot_swaps_against_the_real_server() {
    let repo = tempfile::tempdir().unwrap();
    assert_eq!(publish(repo.path(), "student", &mlp(1)), 1);
    assert_eq!(publish(repo.path(), "student", &mlp(2)), 2);
    let server = Server::start(
        repo.path(),
        &["--admin-token", TOKEN, "--poll-interval-ms", "0"],
    );
    server.wait_ready();
    let out = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "--mode",
        "open",
        "--rate",
        "200",
        "--connections",
        "8",
        "--warmup",
        "0.3",
        "--duration",
        "2",
        "--model",
        "student",
        "--swap-every",
        "0.5",
        "--swap-versions",
        "1,2",
    ]);
    args.extend([
        format!("--url={}", server.base),
        format!("--admin-token={TOKEN}"),
        format!("--synthetic-items={}", N_ROWS - 1),
    ]);
    let r = harness(out.path(), &args);

    let ok = r["requests"]["ok"].as_u64().unwrap();
    assert!(ok > 100, "{r}");
    assert_eq!(r["requests"]["errors"], 0, "{r}");
    assert_eq!(r["requests"]["total"].as_u64().unwrap(), ok, "{r}");
    let swap = &r["swap"];
    assert!(swap["swaps"].as_array().unwrap().len() >= 2, "{swap}");
    assert_eq!(swap["failed_swaps"], 0, "{swap}");
    // Both versions answered, and every answer is attributed to one of them.
    let versions = &r["server"]["model_versions"];
    let v1 = versions["1"].as_u64().unwrap_or(0);
    let v2 = versions["2"].as_u64().unwrap_or(0);
    assert!(v1 > 0 && v2 > 0, "{versions}");
    assert_eq!(v1 + v2, ok, "{versions}");
    // The server's own timing headers were read: every batch runs the model.
    assert!(
        r["server"]["inference_time_us"]["p50"].as_u64().unwrap() > 0,
        "{r}"
    );
    // Every answer was timed, and the client's latency of a request includes the model call
    // the server reports for it, so each percentile is at least the server's.
    let latency = &r["latency_us"];
    assert_eq!(latency["count"].as_u64(), Some(ok), "{latency}");
    let server_time = &r["server"]["inference_time_us"];
    for p in ["p50", "p99"] {
        let (client, server) = (
            latency[p].as_u64().expect("a client percentile"),
            server_time[p].as_u64().expect("a server percentile"),
        );
        assert!(
            client >= server,
            "{p}: client {client} µs < server {server} µs"
        );
    }
    // The server agrees on how many answers it gave.
    let served = server_support::sample(
        &server.metrics(),
        r#"distilrec_http_requests_total{method="POST",route="/recommend",status="200"}"#,
    );
    assert!(served >= ok as f64, "server counted {served}, harness {ok}");
}

#[test]
fn closed_loop_with_real_histories_on_the_default_model() {
    let Some(data) = data_support::ml100k("the harness on real histories") else {
        return;
    };
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let server = Server::start(&models, &["--poll-interval-ms", "0"]);
    server.wait_ready();
    let out = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "--mode",
        "closed",
        "--concurrency",
        "4",
        "--warmup",
        "0.3",
        "--requests",
        "400",
        "--history-len",
        "50",
    ]);
    args.extend([
        format!("--url={}", server.base),
        format!("--bodies={}", data.display()),
        format!("--md-out={}", out.path().join("summary.md").display()),
    ]);
    let r = harness(out.path(), &args);
    assert_eq!(r["requests"]["ok"], 400, "{r}");
    assert_eq!(r["requests"]["errors"], 0, "{r}");
    assert_eq!(r["mode"], "closed");
    let versions = r["server"]["model_versions"].as_object().unwrap();
    assert_eq!(
        versions.len(),
        1,
        "one version of the default model: {versions:?}"
    );
    let summary = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(summary.contains("closed loop"), "{summary}");
}
