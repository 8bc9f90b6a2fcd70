//! Fuzz-style end-to-end tests: random bytes, random JSON and random structurally plausible
//! requests POSTed to `/recommend` of the real server. Every answer must be below 500, carry a
//! JSON body that validates against the committed OpenAPI document (an error body or a
//! recommendation), and the server must stay ready. The case counts are fixed so the run is
//! bounded; proptest shrinks a failing input before reporting it.

mod server_support;

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use server_support::schema::Document;
use server_support::*;

/// Content types a client might send; protobuf bodies are not JSON and may get a non-JSON answer.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "application/problem+json",
    "application/x-protobuf",
    "text/plain",
    "",
];

struct Target {
    _root: tempfile::TempDir,
    server: Server,
    doc: Document,
}

fn start() -> Target {
    let (root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    publish(&repo, "teacher", &ease(2));
    let server = Server::start(&repo, &[]);
    server.wait_ready();
    // Readiness covers the default model only; the cases also ask for `teacher`.
    wait_for("teacher live", || server.live_version("teacher").is_some());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/openapi.json");
    let doc = Document(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap());
    Target {
        _root: root,
        server,
        doc,
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // A failure is reported with its shrunk input; nothing is written into the source tree.
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..Config::default()
    })
}

impl Target {
    fn post(&self, content_type: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
        let mut req = self.server.http.post(self.server.url("/recommend"));
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let r = req.body(body).send().expect("the server answers");
        let status = r.status().as_u16();
        let answer_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = r.bytes().unwrap();
        prop_assert!(status < 500, "status {status}: {:?}", bytes);
        if !answer_type.starts_with("application/json") {
            prop_assert!(
                content_type.contains("protobuf"),
                "a JSON request got `{answer_type}`"
            );
            return Ok(());
        }
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("status {status}, body not JSON: {e}")))?;
        let schema = self.doc.response_schema("post", "/recommend", status);
        let errors = self.doc.errors(schema, &body);
        prop_assert!(
            errors.is_empty(),
            "{status} {body} violates the document: {errors:?}"
        );
        Ok(())
    }

    fn post_json(&self, value: &Value) -> Result<(), TestCaseError> {
        self.post("application/json", serde_json::to_vec(value).unwrap())
    }

    /// Still ready, every case reached the route, and none was answered with a 5xx.
    fn assert_healthy(&self, cases: u32) {
        let r = self.server.http.get(self.server.url("/readyz")).send();
        assert_eq!(r.unwrap().status(), 200, "ready after the fuzzing");
        // A labelled counter appears with its first increment, so any 5xx series of the route
        // is a failure (readiness answered 503 while the model loaded: that is not counted).
        let metrics = self.server.metrics();
        let server_errors: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("distilrec_http_requests_total{")
                    && l.contains("route=\"/recommend\"")
                    && l.contains("status=\"5")
            })
            .collect();
        assert!(server_errors.is_empty(), "{server_errors:?}");
        let per_status: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("distilrec_http_requests_total{")
                    && l.contains("route=\"/recommend\"")
            })
            .collect();
        let answered: f64 = per_status
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!("answers by status: {per_status:#?}");
        assert!(answered >= f64::from(cases), "{per_status:?}");
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        ".{0,24}".prop_map(Value::from),
    ]
}

/// Object keys: mostly the request's own field names, so random values land in real fields.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["history", "user_id", "k", "exclude", "model"])
            .prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An id as a client might send one: known and unknown strings, integers of any sign and size.
fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0u32..(N_ROWS as u32 + 20)).prop_map(|n| json!(format!("i{n}"))),
        1 => (0u32..10).prop_map(|n| json!(format!("u{n}"))),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => ".{0,16}".prop_map(Value::from),
        1 => json_leaf(),
    ]
}

/// Mostly valid requests (so the success path is fuzzed too), each field sometimes broken.
fn plausible_request() -> impl Strategy<Value = Value> {
    let ids = |max| prop::collection::vec(id(), 0..max).prop_map(Value::Array);
    let valid_ids = |max| {
        prop::collection::vec(1u32..N_ROWS as u32, 0..max)
            .prop_map(|rows| json!(rows.iter().map(|r| format!("i{r}")).collect::<Vec<_>>()))
    };
    let history = prop_oneof![3 => valid_ids(40), 1 => ids(40), 1 => json_leaf()];
    let user = prop_oneof![3 => (1u32..6).prop_map(|n| json!(format!("u{n}"))), 1 => id()];
    // History only, user only, both, or neither (the last two are refused).
    let source = prop_oneof![
        6 => history.clone().prop_map(|h| (Some(h), None)),
        3 => user.clone().prop_map(|u| (None, Some(u))),
        1 => (history, user).prop_map(|(h, u)| (Some(h), Some(u))),
        1 => Just((None, None)),
    ];
    let k = prop_oneof![
        6 => (1i64..=100).prop_map(Value::from),
        1 => (-5i64..200).prop_map(Value::from),
        1 => json_leaf(),
    ];
    let model = prop_oneof![
        6 => prop::sample::select(vec!["ml100k", "teacher"]).prop_map(Value::from),
        1 => prop::sample::select(vec!["nope", "../ml100k", ""]).prop_map(Value::from),
        1 => json_leaf(),
    ];
    let exclude = prop_oneof![3 => valid_ids(20), 1 => ids(20), 1 => json_leaf()];
    (
        source,
        prop::option::weighted(0.7, k),
        prop::option::weighted(0.5, exclude),
        prop::option::weighted(0.5, model),
        prop::option::weighted(0.1, ("[a-z_]{1,10}", json_leaf())),
    )
        .prop_map(|((history, user_id), k, exclude, model, extra)| {
            let mut m = Map::new();
            let fields = [
                ("history", history),
                ("user_id", user_id),
                ("k", k),
                ("exclude", exclude),
                ("model", model),
            ];
            for (name, v) in fields {
                if let Some(v) = v {
                    m.insert(name.to_owned(), v);
                }
            }
            if let Some((name, v)) = extra {
                m.insert(name, v);
            }
            Value::Object(m)
        })
}

#[test]
fn random_bytes_get_our_errors() {
    let t = start();
    let strategy = (
        prop::sample::select(CONTENT_TYPES),
        prop::collection::vec(any::<u8>(), 0..2048),
    );
    let cases = 300;
    runner(cases)
        .run(&strategy, |(ct, bytes)| t.post(ct, bytes))
        .unwrap();
    t.assert_healthy(cases);
}

#[test]
fn random_json_gets_answers_by_the_document() {
    let t = start();
    let cases = 300;
    runner(cases)
        .run(&json_value(), |v| t.post_json(&v))
        .unwrap();
    t.assert_healthy(cases);
}

#[test]
fn plausible_requests_get_answers_by_the_document() {
    let t = start();
    let cases = 600;
    runner(cases)
        .run(&plausible_request(), |v| t.post_json(&v))
        .unwrap();
    t.assert_healthy(cases);
}
