//! End to end: the real binary on a real bundle — happy paths, score parity with the reference
//! forward pass, every bad input with its status, the read-only routes and the metrics.

mod server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use server_support::*;

fn rows(ids: &[&str]) -> Vec<u32> {
    ids.iter().map(|i| row_of(i)).collect()
}

#[test]
fn history_and_user_requests_match_the_reference_scores() {
    let (_root, repo) = temp_repo();
    let student = mlp(1);
    let teacher = ease(2);
    publish(&repo, "ml100k", &student);
    publish(&repo, "teacher", &teacher);
    let server = Server::start(&repo, &[]);
    server.wait_ready();

    // History request on the default model: history and exclude never come back.
    let history = ["i3", "i17", "i42"];
    let (status, body, headers) = server.recommend(json!({
        "history": history, "k": 10, "exclude": ["i5", "nope"]
    }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "ml100k");
    assert_eq!(body["version"], 1);
    assert_eq!(headers["x-model-version"], "1");
    for h in ["x-queue-time", "x-inference-time"] {
        let v: u64 = headers[h].to_str().unwrap().parse().expect("integer µs");
        assert!(v < 60_000_000, "{h} = {v}");
    }
    assert_eq!(body["unknown_items"], json!([]));
    let mut excluded = rows(&history);
    excluded.push(5);
    assert_matches_reference(&body["items"], &student, &rows(&history), &excluded, 10);

    // Unknown history ids are skipped and reported; numeric ids are accepted as text.
    let (status, body, _) = server.recommend(json!({"history": ["i3", "zzz", 12345], "k": 3}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unknown_items"], json!(["zzz", "12345"]));
    assert_matches_reference(&body["items"], &student, &[3], &[3], 3);

    // An empty history is valid (nothing known about the user).
    let (status, body, _) = server.recommend(json!({"history": [], "k": 4}));
    assert_eq!(status, 200, "{body}");
    assert_matches_reference(&body["items"], &student, &[], &[], 4);

    // User request on the teacher: the stored history is scored and excluded.
    let users = distilrec::onnx::synthetic_users(N_ROWS);
    let u3 = users.get("u3").unwrap().to_vec();
    let (status, body, _) = server.recommend(json!({"user_id": "u3", "k": 7, "model": "teacher"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "teacher");
    assert_matches_reference(&body["items"], &teacher, &u3, &u3, 7);

    // Default k.
    let (status, body, _) = server.recommend(json!({"user_id": "u1"}));
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 10);

    // k larger than the unexcluded catalogue returns what there is.
    let (status, body, _) = server.recommend(json!({"history": ["i1"], "k": 100}));
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 100);

    // The start-up log names model, version and item count.
    let logs = server.logs();
    assert!(logs.contains("model version live"), "{logs}");
    assert!(logs.contains(&format!("n_items={}", N_ROWS - 1)), "{logs}");
}

fn raw(server: &Server, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = server.http.post(server.url("/recommend")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

#[test]
fn every_bad_input_gets_its_status_and_error_type() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    let server = Server::start(
        &repo,
        &[
            "--max-history",
            "20",
            "--max-k",
            "50",
            "--max-body-bytes",
            "2048",
        ],
    );
    server.wait_ready();
    let json = Some("application/json");
    // (what, content type, body, status, error_type)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown user",
            json,
            br#"{"user_id":"u999"}"#.to_vec(),
            404,
            "unknown_user",
        ),
        (
            "unknown model",
            json,
            br#"{"history":["i1"],"model":"nope"}"#.to_vec(),
            404,
            "unknown_model",
        ),
        (
            "traversal model",
            json,
            br#"{"history":["i1"],"model":"../x"}"#.to_vec(),
            404,
            "unknown_model",
        ),
        (
            "k = 0",
            json,
            br#"{"history":["i1"],"k":0}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "k above max",
            json,
            br#"{"history":["i1"],"k":51}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "negative k",
            json,
            br#"{"history":["i1"],"k":-1}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "k not a number",
            json,
            br#"{"history":["i1"],"k":"x"}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "history too long",
            json,
            serde_json::to_vec(&json!({"history": vec!["i1"; 21]})).unwrap(),
            422,
            "validation",
        ),
        (
            "exclude too long",
            json,
            serde_json::to_vec(&json!({"history": ["i1"], "exclude": vec!["i2"; 21]})).unwrap(),
            422,
            "validation",
        ),
        (
            "both history and user",
            json,
            br#"{"history":["i1"],"user_id":"u1"}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "neither history nor user",
            json,
            br#"{"k":3}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "unknown field",
            json,
            br#"{"histroy":["i1"]}"#.to_vec(),
            422,
            "validation",
        ),
        (
            "history not a list",
            json,
            br#"{"history":"i1"}"#.to_vec(),
            422,
            "validation",
        ),
        ("empty body", json, Vec::new(), 400, "malformed_json"),
        (
            "malformed JSON",
            json,
            br#"{"history": ["i1""#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "not JSON at all",
            json,
            b"hello".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            br#"{"history":["i1"]}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            br#"{"history":["i1"]}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            json,
            serde_json::to_vec(&json!({"history": vec!["i100"; 1000]})).unwrap(),
            413,
            "payload_too_large",
        ),
    ];
    for (what, ct, body, status, error_type) in cases {
        let (got, value) = raw(&server, ct, body);
        assert_eq!(got, status, "{what}: {value}");
        assert_eq!(value["error_type"], error_type, "{what}: {value}");
        assert!(
            value["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}"
        );
    }

    let r = server.http.get(server.url("/nope")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error_type"], "not_found");
    assert_eq!(
        server
            .http
            .get(server.url("/recommend"))
            .send()
            .unwrap()
            .status(),
        405
    );
    let r = server
        .http
        .get(server.url("/v1/models/nope"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error_type"], "unknown_model");
    // The admin API is off by default.
    let r = server
        .http
        .post(server.url("/admin/models/ml100k/rollback"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // After all that the server still answers normally.
    let (status, _, _) = server.recommend(json!({"history": ["i1"], "k": 5}));
    assert_eq!(status, 200);
    // Internal paths never leak into error messages.
    assert!(!server.logs().is_empty());
}

#[test]
fn a_stalled_body_times_out_without_blocking_others() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    // Long enough that none of the 20 normal requests meets it on a busy host.
    let server = Server::start(&repo, &["--request-timeout-ms", "3000"]);
    server.wait_ready();
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(
        b"POST /recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"hist",
    )
    .unwrap();
    // Others are served while that body never completes.
    for _ in 0..20 {
        assert_eq!(server.recommend(json!({"history": ["i1"]})).0, 200);
    }
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = slow.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("\"timeout\""), "{head}");
}

#[test]
fn read_only_routes_and_metrics_move() {
    let (_root, repo) = temp_repo();
    publish(&repo, "alpha", &mlp(1));
    publish(&repo, "alpha", &mlp(2));
    publish(&repo, "beta", &ease(3));
    let server = Server::start(&repo, &[]);
    server.wait_ready();

    let health = server.http.get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    let ready = server.get_json("/readyz");
    assert_eq!(
        ready["model"], "alpha",
        "first model by name is the default"
    );
    assert_eq!(ready["version"], 2);

    let models = server.get_json("/v1/models");
    assert_eq!(models["default_model"], "alpha");
    let list = models["models"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["versions"], json!([1, 2]));
    assert_eq!(list[0]["live_version"], 2);
    wait_for("beta to load", || server.live_version("beta") == Some(1));
    let beta = server.get_json("/v1/models/beta");
    assert_eq!(beta["live"]["n_items"], N_ROWS - 1);
    assert_eq!(beta["live"]["architecture"], "ease");
    assert_eq!(beta["load_failures"], json!([]));

    let before = server.metrics();
    let ok = r#"distilrec_http_requests_total{method="POST",route="/recommend",status="200"}"#;
    let bad = r#"distilrec_http_requests_total{method="POST",route="/recommend",status="422"}"#;
    let n = 12;
    for i in 0..n {
        let (s, _, _) = server.recommend(json!({"history": [format!("i{}", i + 1), "x-unknown"]}));
        assert_eq!(s, 200);
    }
    assert_eq!(server.recommend(json!({"history": [], "k": 0})).0, 422);
    let after = server.metrics();
    assert_eq!(sample(&after, ok) - sample(&before, ok), n as f64);
    assert_eq!(sample(&after, bad) - sample(&before, bad), 1.0);
    let unknown = r#"distilrec_unknown_items_total{model="alpha"}"#;
    assert_eq!(sample(&after, unknown) - sample(&before, unknown), n as f64);
    let batched = r#"distilrec_batch_size_sum{model="alpha"}"#;
    assert_eq!(sample(&after, batched) - sample(&before, batched), n as f64);
    let queued = r#"distilrec_queue_duration_seconds_count{model="alpha"}"#;
    assert_eq!(sample(&after, queued) - sample(&before, queued), n as f64);
    assert!(
        sample(
            &after,
            r#"distilrec_inference_duration_seconds_count{model="alpha"}"#
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &after,
            r#"distilrec_model_live_info{model="alpha",version="2"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            r#"distilrec_model_load_total{model="alpha",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&after, r#"distilrec_queue_depth{model="alpha"}"#),
        0.0
    );
    // Route templates, never raw paths.
    assert!(after.contains(r#"route="/v1/models/{name}""#), "{after}");
    assert!(!after.contains("/v1/models/beta"));

    // The exposition passes promtool when it is installed (Debian package `prometheus`).
    if let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(after.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("promtool not installed; skipping `promtool check metrics`");
    }
}

#[test]
fn a_full_queue_answers_503_overloaded_at_once() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    // A long batching window holds the first two requests in the queue.
    let server = Server::start(
        &repo,
        &[
            "--max-batch-size",
            "8",
            "--queue-capacity",
            "2",
            "--max-queue-delay-us",
            "6000000",
            "--request-timeout-ms",
            "20000",
        ],
    );
    server.wait_ready();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/recommend");
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(url)
                    .json(&json!({"history": ["i1"]}))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    wait_for("two queued requests", || {
        sample(
            &server.metrics(),
            r#"distilrec_queue_depth{model="ml100k"}"#,
        ) == 2.0
    });
    let r = server
        .http
        .post(server.url("/recommend"))
        .json(&json!({"history": ["i1"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().unwrap()["error_type"], "overloaded");
    for w in waiting {
        assert_eq!(w.join().unwrap(), 200);
    }
    assert_eq!(server.recommend(json!({"history": ["i1"]})).0, 200);
}
