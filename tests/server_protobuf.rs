//! End to end: protobuf bodies on `POST /recommend` (`proto/recommend.proto`) against the real
//! binary — round trip with the same scores as JSON, every bad input rejected exactly as the JSON
//! path rejects it, protobuf-only wire errors, content negotiation, and the Python client in
//! `examples/` (needs `DISTILREC_PYTHON` with the `protobuf` package, see scripts/setup.sh;
//! `DISTILREC_SKIP_PYTHON=1` skips that part explicitly).

mod python_support;
mod server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use distilrec::proto::v1;
use prost::Message;
use python_support::python;
use serde_json::{json, Value};
use server_support::*;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

struct Answer {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn response(&self) -> v1::RecommendResponse {
        assert_eq!(self.content_type, PB, "status {}", self.status);
        v1::RecommendResponse::decode(self.body.as_slice()).expect("a RecommendResponse")
    }

    fn error(&self) -> v1::ErrorBody {
        assert_eq!(self.content_type, PB, "status {}", self.status);
        v1::ErrorBody::decode(self.body.as_slice()).expect("an ErrorBody")
    }

    fn json(&self) -> Value {
        assert_eq!(self.content_type, JSON, "status {}", self.status);
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

fn post(
    server: &Server,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = server.http.post(server.url("/recommend")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().expect("the server answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        headers,
        body: r.bytes().unwrap().to_vec(),
    }
}

fn pb(server: &Server, msg: &v1::RecommendRequest) -> Answer {
    post(server, Some(PB), None, msg.encode_to_vec())
}

fn history(ids: &[&str]) -> Option<v1::History> {
    Some(v1::History {
        items: ids.iter().map(|s| s.to_string()).collect(),
    })
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A protobuf answer in the shape of the JSON one, for `assert_matches_reference`.
fn as_json(r: &v1::RecommendResponse) -> Value {
    let items: Vec<Value> = r
        .items
        .iter()
        .map(|i| json!({"id": i.id, "score": i.score, "title": i.title}))
        .collect();
    json!(items)
}

/// Same ids in the same order and bit-identical scores (JSON prints f32 in round-trip form).
fn assert_same_items(proto: &v1::RecommendResponse, json: &Value) {
    let json_items = json["items"].as_array().unwrap();
    assert_eq!(proto.items.len(), json_items.len());
    for (p, j) in proto.items.iter().zip(json_items) {
        assert_eq!(p.id, j["id"].as_str().unwrap());
        assert_eq!(
            p.score,
            j["score"].as_f64().unwrap() as f32,
            "item {}",
            p.id
        );
        assert_eq!(p.title.as_deref(), j["title"].as_str());
    }
}

#[test]
fn protobuf_round_trip_matches_json_and_the_reference() {
    let (_root, repo) = temp_repo();
    let student = mlp(1);
    let teacher = ease(2);
    publish(&repo, "ml100k", &student);
    publish(&repo, "teacher", &teacher);
    let server = Server::start(&repo, &[]);
    server.wait_ready();

    let a = pb(
        &server,
        &v1::RecommendRequest {
            history: history(&["i3", "i17", "i42", "zzz"]),
            k: Some(10),
            exclude: strings(&["i5", "nope"]),
            ..Default::default()
        },
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-model-version"], "1");
    for h in ["x-queue-time", "x-inference-time"] {
        let _: u64 = a.headers[h].to_str().unwrap().parse().expect("integer µs");
    }
    let r = a.response();
    assert_eq!((r.model.as_str(), r.version), ("ml100k", 1));
    assert_eq!(r.unknown_items, strings(&["zzz"]));
    let timing = r.timing.expect("timing is always set");
    assert!(timing.batch_size >= 1);
    assert_matches_reference(&as_json(&r), &student, &[3, 17, 42], &[3, 17, 42, 5], 10);
    let (status, j, _) = server.recommend(json!({
        "history": ["i3", "i17", "i42", "zzz"], "k": 10, "exclude": ["i5", "nope"]
    }));
    assert_eq!(status, 200);
    assert_same_items(&r, &j);

    // User request on another model, default k, `application/protobuf` accepted too.
    let users = distilrec::onnx::synthetic_users(N_ROWS);
    let u3 = users.get("u3").unwrap().to_vec();
    let msg = v1::RecommendRequest {
        user_id: Some("u3".into()),
        model: Some("teacher".into()),
        ..Default::default()
    };
    let a = post(
        &server,
        Some("application/protobuf"),
        None,
        msg.encode_to_vec(),
    );
    assert_eq!(a.status, 200);
    let r = a.response();
    assert_eq!(r.model, "teacher");
    assert_matches_reference(&as_json(&r), &teacher, &u3, &u3, 10);
    let (_, j, _) = server.recommend(json!({"user_id": "u3", "model": "teacher"}));
    assert_same_items(&r, &j);

    // A present-but-empty history is valid, as `"history": []` is.
    let a = pb(
        &server,
        &v1::RecommendRequest {
            history: history(&[]),
            k: Some(4),
            ..Default::default()
        },
    );
    assert_eq!(a.status, 200);
    assert_matches_reference(&as_json(&a.response()), &student, &[], &[], 4);
}

#[test]
fn every_bad_input_is_rejected_as_the_json_path_rejects_it() {
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
    let h1 = || history(&["i1"]);
    let many = |n: usize| vec!["i2".to_string(); n];
    // (what, JSON body, the same request as protobuf, status, error_type)
    let cases: Vec<(&str, Value, v1::RecommendRequest, u16, &str)> = vec![
        (
            "k = 0",
            json!({"history": ["i1"], "k": 0}),
            v1::RecommendRequest {
                history: h1(),
                k: Some(0),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "k above max",
            json!({"history": ["i1"], "k": 51}),
            v1::RecommendRequest {
                history: h1(),
                k: Some(51),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "neither history nor user",
            json!({"k": 3}),
            v1::RecommendRequest {
                k: Some(3),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "both history and user",
            json!({"history": ["i1"], "user_id": "u1"}),
            v1::RecommendRequest {
                history: h1(),
                user_id: Some("u1".into()),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "empty history and user",
            json!({"history": [], "user_id": "u1"}),
            v1::RecommendRequest {
                history: history(&[]),
                user_id: Some("u1".into()),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "history too long",
            json!({"history": many(21)}),
            v1::RecommendRequest {
                history: Some(v1::History { items: many(21) }),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "exclude too long",
            json!({"history": ["i1"], "exclude": many(21)}),
            v1::RecommendRequest {
                history: h1(),
                exclude: many(21),
                ..Default::default()
            },
            422,
            "validation",
        ),
        (
            "unknown user",
            json!({"user_id": "u999"}),
            v1::RecommendRequest {
                user_id: Some("u999".into()),
                ..Default::default()
            },
            404,
            "unknown_user",
        ),
        (
            "unknown model",
            json!({"history": ["i1"], "model": "nope"}),
            v1::RecommendRequest {
                history: h1(),
                model: Some("nope".into()),
                ..Default::default()
            },
            404,
            "unknown_model",
        ),
        (
            "traversal model",
            json!({"history": ["i1"], "model": "../x"}),
            v1::RecommendRequest {
                history: h1(),
                model: Some("../x".into()),
                ..Default::default()
            },
            404,
            "unknown_model",
        ),
        (
            "empty model name",
            json!({"history": ["i1"], "model": ""}),
            v1::RecommendRequest {
                history: h1(),
                model: Some(String::new()),
                ..Default::default()
            },
            404,
            "unknown_model",
        ),
        (
            "oversized body",
            json!({"history": vec!["i100"; 1000]}),
            v1::RecommendRequest {
                history: Some(v1::History {
                    items: vec!["i100".into(); 1000],
                }),
                ..Default::default()
            },
            413,
            "payload_too_large",
        ),
    ];
    for (what, json_body, msg, status, error_type) in cases {
        let j = post(
            &server,
            Some(JSON),
            None,
            serde_json::to_vec(&json_body).unwrap(),
        );
        assert_eq!(j.status, status, "{what} (JSON)");
        let j = j.json();
        assert_eq!(j["error_type"], error_type, "{what}: {j}");
        let p = pb(&server, &msg);
        assert_eq!(p.status, status, "{what} (protobuf)");
        let e = p.error();
        assert_eq!(e.error_type, error_type, "{what}");
        assert_eq!(
            e.error,
            j["error"].as_str().unwrap(),
            "{what}: same message"
        );
    }

    // Wire errors exist only in protobuf: 400 with a clear message.
    let good = v1::RecommendRequest {
        history: h1(),
        k: Some(5),
        model: Some("ml100k".into()),
        ..Default::default()
    }
    .encode_to_vec();
    let wire_errors: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 2].to_vec()),
        ("garbage", vec![0xff; 32]),
        ("text", b"{\"history\": [\"i1\"]}".to_vec()),
        ("k with the wrong wire type", vec![0x1a, 0x01, 0x05]),
        ("user id not UTF-8", vec![0x12, 0x02, 0xc3, 0x28]),
    ];
    for (what, body) in wire_errors {
        let a = post(&server, Some(PB), None, body);
        assert_eq!(a.status, 400, "{what}");
        let e = a.error();
        assert_eq!(e.error_type, "malformed_protobuf", "{what}");
        assert!(e.error.contains("RecommendRequest"), "{what}: {}", e.error);
    }
    // An empty body is the empty message: neither history nor user.
    let a = post(&server, Some(PB), None, Vec::new());
    assert_eq!(
        (a.status, a.error().error_type.as_str()),
        (422, "validation")
    );

    // Unsupported request types are 415 in either format, per `Accept`.
    let a = post(
        &server,
        Some("application/octet-stream"),
        None,
        good.clone(),
    );
    assert_eq!(a.status, 415);
    assert_eq!(a.json()["error_type"], "unsupported_media_type");
    let a = post(&server, None, Some(PB), good.clone());
    assert_eq!(a.status, 415);
    assert_eq!(a.error().error_type, "unsupported_media_type");

    // The error format follows `Accept` like the success format.
    let a = post(&server, Some(PB), Some(JSON), vec![0xff; 4]);
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error_type"], "malformed_protobuf");
    let a = post(&server, Some(JSON), Some(PB), b"{\"history\": [".to_vec());
    assert_eq!(
        (a.status, a.error().error_type.as_str()),
        (400, "malformed_json")
    );

    // Still serving.
    assert_eq!(
        pb(
            &server,
            &v1::RecommendRequest {
                history: h1(),
                ..Default::default()
            }
        )
        .status,
        200
    );
}

#[test]
fn a_stalled_protobuf_body_times_out_with_a_protobuf_error() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    let server = Server::start(&repo, &["--request-timeout-ms", "300"]);
    server.wait_ready();
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(
        b"POST /recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100\r\n\r\n\x0a\x04",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    while raw.len() < split + len {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&buf[..n]);
    }
    let e = v1::ErrorBody::decode(&raw[split..split + len]).unwrap();
    assert_eq!(e.error_type, "timeout");
}

#[test]
fn content_negotiation() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    let server = Server::start(&repo, &[]);
    server.wait_ready();
    let msg = v1::RecommendRequest {
        history: history(&["i1", "i9"]),
        k: Some(5),
        ..Default::default()
    };
    let pb_body = msg.encode_to_vec();
    let json_body = serde_json::to_vec(&json!({"history": ["i1", "i9"], "k": 5})).unwrap();
    let (_, reference, _) = server.recommend(json!({"history": ["i1", "i9"], "k": 5}));

    // (request type, body, Accept, expected answer type)
    let cases: Vec<(&str, &[u8], Option<&str>, &str)> = vec![
        (JSON, &json_body, Some(PB), PB),
        (JSON, &json_body, Some("application/protobuf"), PB),
        (
            JSON,
            &json_body,
            Some("application/json;q=0.5, application/x-protobuf"),
            PB,
        ),
        (JSON, &json_body, Some("*/*"), JSON),
        (JSON, &json_body, None, JSON),
        (PB, &pb_body, Some(JSON), JSON),
        (
            PB,
            &pb_body,
            Some("application/x-protobuf;q=0.1, application/json"),
            JSON,
        ),
        (PB, &pb_body, Some("application/x-protobuf;q=0, */*"), JSON),
        (PB, &pb_body, Some("*/*"), PB),
        (PB, &pb_body, Some("application/*"), PB),
        (PB, &pb_body, None, PB),
        ("application/protobuf", &pb_body, None, PB),
    ];
    for (ct, body, accept, want) in cases {
        let a = post(&server, Some(ct), accept, body.to_vec());
        let what = format!("{ct} with Accept {accept:?}");
        assert_eq!(a.status, 200, "{what}");
        assert_eq!(a.content_type, want, "{what}");
        assert_eq!(a.headers["x-model-version"], "1", "{what}");
        assert!(a.headers.contains_key("x-inference-time"), "{what}");
        if want == PB {
            assert_same_items(&a.response(), &reference);
        } else {
            assert_eq!(a.json()["items"], reference["items"], "{what}");
        }
    }
}

fn run_example(python: &Path, args: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(root.join("examples/python_client.py"))
        .args(args)
        .output()
        .expect("python runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_python_client_and_curl_examples_work() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    let server = Server::start(&repo, &[]);
    server.wait_ready();

    // The shell example runs against whatever server DISTILREC_URL names.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("examples/curl.sh"))
        .env("DISTILREC_URL", &server.base)
        .env("DISTILREC_USER", "u1")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"unknown_user\""), "{stdout}");

    let Some(python) = python(
        "python client test",
        "examples/python_client.py (the `protobuf` package)",
    ) else {
        return;
    };
    let (ok, stdout, stderr) = run_example(
        &python,
        &[
            "--url",
            &server.base,
            "--history",
            "i3",
            "i17",
            "--k",
            "5",
            "--json",
        ],
    );
    assert!(ok, "python client failed:\n{stdout}\n{stderr}");
    let answer: Value = serde_json::from_str(stdout.trim()).expect("the client prints JSON");
    let (_, reference, _) = server.recommend(json!({"history": ["i3", "i17"], "k": 5}));
    assert_eq!(answer["model"], "ml100k");
    let items = answer["items"].as_array().unwrap();
    let want = reference["items"].as_array().unwrap();
    assert_eq!(items.len(), want.len());
    for (got, want) in items.iter().zip(want) {
        assert_eq!(got["id"], want["id"]);
        assert_eq!(got["title"], want["title"]);
        let (g, w) = (
            got["score"].as_f64().unwrap(),
            want["score"].as_f64().unwrap(),
        );
        assert_eq!(g as f32, w as f32, "{}", got["id"]);
    }

    // An error comes back as a decoded ErrorBody and a non-zero exit.
    let (ok, stdout, stderr) = run_example(&python, &["--url", &server.base, "--user", "u999"]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("404") && stderr.contains("unknown_user"),
        "{stderr}"
    );
}
