//! Runs the `loadtest` binary against a tiny in-test axum server that answers like distilrec:
//! fixed top-k JSON plus the `x-model-version` / `x-queue-time` / `x-inference-time` headers, and
//! an admin endpoint that switches the reported version.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

const TOKEN: &str = "secret";

/// Every JSON answer of the fake server is held this long, so the harness's measured latency
/// has a floor a test can check (a harness that timed only the send would report less).
const ANSWER_DELAY_US: u64 = 2_000;

async fn recommend(
    State(version): State<Arc<AtomicU64>>,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    // Reject what the real server would reject, so a malformed body shows up as an error.
    let valid = body["history"]
        .as_array()
        .is_some_and(|h| h.iter().all(Value::is_string))
        && body["k"].as_u64().is_some();
    if !valid {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            HeaderMap::new(),
            Json(json!({"error": "bad"})),
        );
    }
    tokio::time::sleep(std::time::Duration::from_micros(ANSWER_DELAY_US)).await;
    let mut headers = HeaderMap::new();
    let v = version.load(Ordering::Relaxed).to_string();
    headers.insert("x-model-version", v.parse().unwrap());
    headers.insert("x-queue-time", "12us".parse().unwrap());
    headers.insert("x-inference-time", "0.000250".parse().unwrap());
    let items: Vec<Value> = (1..=10)
        .map(|i| json!({"item": format!("i{i}"), "score": 1.0 / i as f64}))
        .collect();
    (StatusCode::OK, headers, Json(json!({ "items": items })))
}

/// The server's wire types, as the harness compiles them (`build.rs`).
#[allow(dead_code)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/distilrec.v1.rs"));
}

/// `/recommend` for protobuf bodies: 415 unless both `content-type` and `accept` ask for
/// protobuf, 400 unless the body decodes, 422 without a history or k (as the real server would).
async fn recommend_protobuf(headers: HeaderMap, body: axum::body::Bytes) -> impl IntoResponse {
    use prost::Message;
    let pb_type =
        |h: &str| headers.get(h).and_then(|v| v.to_str().ok()) == Some("application/x-protobuf");
    if !pb_type("content-type") || !pb_type("accept") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HeaderMap::new(),
            Vec::new(),
        );
    }
    let Ok(req) = pb::RecommendRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, HeaderMap::new(), Vec::new());
    };
    if req.history.is_none_or(|h| h.items.is_empty()) || req.k != Some(10) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            HeaderMap::new(),
            Vec::new(),
        );
    }
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/x-protobuf".parse().unwrap());
    headers.insert("x-model-version", "1".parse().unwrap());
    headers.insert("x-queue-time", "12".parse().unwrap());
    headers.insert("x-inference-time", "250".parse().unwrap());
    let answer = pb::RecommendResponse {
        model: "student".into(),
        version: 1,
        ..Default::default()
    };
    (StatusCode::OK, headers, answer.encode_to_vec())
}

async fn load_model(
    State(version): State<Arc<AtomicU64>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    if headers.get("authorization").and_then(|h| h.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED;
    }
    match (name.as_str(), body["version"].as_u64()) {
        ("student", Some(v)) => {
            version.store(v, Ordering::Relaxed);
            StatusCode::OK
        }
        _ => StatusCode::NOT_FOUND,
    }
}

async fn start_server() -> SocketAddr {
    let app = Router::new()
        .route("/recommend", post(recommend))
        .route("/recommend-protobuf", post(recommend_protobuf))
        .route("/admin/models/{name}/load", post(load_model))
        .with_state(Arc::new(AtomicU64::new(1)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Runs the harness with `args` and returns its JSON report.
async fn harness(dir: &Path, args: Vec<String>) -> Value {
    let json_path = dir.join("report.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    cmd.args(&args)
        .arg("--json-out")
        .arg(&json_path)
        .arg("--quiet");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| load |"),
        "no Markdown summary on stdout: {stdout}"
    );
    serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_against_a_live_server() {
    let addr = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let bodies = dir.path().join("train.tsv");
    std::fs::write(&bodies, "user_id\titem_id\nu1\ti1\nu1\ti2\nu2\ti3\n").unwrap();
    let plot = dir.path().join("latency.png");
    let md = dir.path().join("summary.md");
    let mut a = args(&[
        "--mode",
        "closed",
        "--concurrency",
        "4",
        "--warmup",
        "0.5",
        "--duration",
        "1.5",
    ]);
    a.extend([
        format!("--url=http://{addr}"),
        format!("--bodies={}", bodies.display()),
        format!("--plot={}", plot.display()),
        format!("--md-out={}", md.display()),
    ]);
    let r = harness(dir.path(), a).await;
    assert!(r["requests"]["ok"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["requests"]["errors"], 0, "{r}");
    assert_eq!(r["mode"], "closed");
    assert_eq!(r["server"]["queue_time_us"]["p50"], 12);
    assert_eq!(r["server"]["inference_time_us"]["p50"], 250);
    assert_eq!(r["server"]["model_versions"]["1"], r["requests"]["ok"]);
    // Every answer was timed, and no timing is shorter than the server held the answer.
    let latency = &r["latency_us"];
    assert_eq!(latency["count"], r["requests"]["ok"], "{latency}");
    assert!(
        latency["p50"].as_u64().unwrap() >= ANSWER_DELAY_US,
        "{latency}"
    );
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("closed loop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_with_hot_swaps() {
    let addr = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(&[
        "--mode",
        "open",
        "--rate",
        "300",
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
        "2,3",
        "--swap-window-ms",
        "50",
    ]);
    a.extend([
        format!("--url=http://{addr}"),
        format!("--admin-token={TOKEN}"),
    ]);
    let r = harness(dir.path(), a).await;
    assert!(r["requests"]["ok"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["requests"]["errors"], 0, "{r}");
    assert_eq!(r["offered_rate"], 300.0);
    let swap = &r["swap"];
    let swaps = swap["swaps"].as_array().unwrap();
    assert!(!swaps.is_empty(), "{swap}");
    assert_eq!(swap["failed_swaps"], 0, "{swap}");
    assert_eq!(swaps[0]["version"], 2);
    let counted = swap["inside"]["requests"].as_u64().unwrap()
        + swap["outside"]["requests"].as_u64().unwrap();
    assert_eq!(counted, r["requests"]["total"].as_u64().unwrap());
    assert!(
        r["server"]["model_versions"]["2"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(r["send_lag_us"]["count"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_runs_the_requested_steps() {
    let addr = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(&[
        "--mode",
        "sweep",
        "--rate",
        "100",
        "--warmup",
        "0.2",
        "--duration",
        "0.5",
        "--sweep-max-steps",
        "3",
        "--sweep-pause",
        "0.1",
        "--connections",
        "8",
    ]);
    a.push(format!("--url=http://{addr}"));
    let r = harness(dir.path(), a).await;
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{r}");
    for s in steps {
        assert!(s["report"]["requests"]["ok"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["report"]["requests"]["errors"], 0, "{s}");
    }
    assert_eq!(r["mode"], "sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_are_sent_and_counted() {
    let addr = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(&[
        "--mode",
        "closed",
        "--concurrency",
        "2",
        "--warmup",
        "0",
        "--requests",
        "200",
        "--protobuf",
        "--path",
        "/recommend-protobuf",
    ]);
    a.push(format!("--url=http://{addr}"));
    let r = harness(dir.path(), a).await;
    assert_eq!(r["requests"]["ok"], 200, "{r}");
    assert_eq!(r["requests"]["errors"], 0, "{r}");
    assert_eq!(r["server"]["model_versions"]["1"], 200);
    assert_eq!(r["server"]["inference_time_us"]["p50"], 250);

    // The same bodies as JSON are rejected by that route: the protobuf flag is what made them pass.
    let mut a = args(&[
        "--mode",
        "closed",
        "--concurrency",
        "2",
        "--warmup",
        "0",
        "--requests",
        "20",
        "--path",
        "/recommend-protobuf",
    ]);
    a.push(format!("--url=http://{addr}"));
    let r = harness(dir.path(), a).await;
    assert_eq!(r["requests"]["ok"], 0, "{r}");
    assert_eq!(r["errors"]["by_status"]["415"], 20, "{r}");
}
