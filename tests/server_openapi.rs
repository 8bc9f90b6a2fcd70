//! The OpenAPI contract: the committed `proto/openapi.json` is what the code generates, the
//! real server serves exactly that file, and its real answers (successes and every error it
//! can be driven to) validate against the document.
//!
//! After an intended API change: `DISTILREC_BLESS=1 cargo test --test server_openapi`.

mod server_support;

use std::path::PathBuf;

use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};
use server_support::schema::Document;
use server_support::*;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto/openapi.json")
}

fn committed() -> String {
    std::fs::read_to_string(committed_path()).expect("proto/openapi.json exists")
}

fn blessing() -> bool {
    std::env::var_os("DISTILREC_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn committed_document_is_what_the_code_generates() {
    let generated = distilrec::server::openapi_document();
    if blessing() {
        std::fs::write(committed_path(), generated).unwrap();
        return;
    }
    assert!(
        committed() == generated,
        "proto/openapi.json differs from the document the code generates; if the API change is \
         intended, regenerate it with `DISTILREC_BLESS=1 cargo test --test server_openapi` and \
         commit the result"
    );
}

struct Checker<'a> {
    server: &'a Server,
    doc: Document,
    error_types: Vec<String>,
}

impl Checker<'_> {
    /// Sends `req`, validates the answer against the document entry for `method template`, and
    /// returns status and body.
    fn check(&mut self, method: &str, template: &str, req: RequestBuilder) -> (u16, Value) {
        let r = req.send().expect("the server answers");
        let status = r.status().as_u16();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        let text = r.text().unwrap();
        let schema = self.doc.response_schema(method, template, status);
        if schema.is_null() {
            // A text/plain operation.
            let op = &self.doc.0["paths"][template][method];
            assert!(
                op["responses"][status.to_string()]["content"]["text/plain"].is_object(),
                "{method} {template} {status}: no JSON schema and no text/plain content"
            );
            assert!(content_type.starts_with("text/plain"), "{content_type}");
            return (status, Value::Null);
        }
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body: Value = serde_json::from_str(&text).expect("a JSON body");
        self.doc
            .assert_valid(schema, &body, &format!("{method} {template} {status}"));
        if let Some(t) = body["error_type"].as_str() {
            self.error_types.push(t.to_owned());
        }
        (status, body)
    }

    fn post_json(&mut self, template: &str, uri: &str, body: &Value) -> (u16, Value) {
        let req = self
            .server
            .http
            .post(self.server.url(uri))
            .json(body)
            .bearer_auth(TOKEN);
        self.check("post", template, req)
    }
}

#[test]
fn the_server_serves_the_committed_document_and_answers_by_it() {
    let (_root, repo) = temp_repo();
    publish(&repo, "ml100k", &mlp(1));
    let server = Server::start(&repo, &["--admin-token", TOKEN]);
    server.wait_ready();

    let r = server.http.get(server.url("/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.text().unwrap();
    assert!(
        served == distilrec::server::openapi_document(),
        "GET /openapi.json is not the generated document"
    );
    // While blessing, the other test is rewriting the file.
    if !blessing() {
        assert!(
            served == committed(),
            "GET /openapi.json is not proto/openapi.json"
        );
    }

    let mut c = Checker {
        server: &server,
        doc: Document(serde_json::from_str(&served).unwrap()),
        error_types: Vec::new(),
    };
    let http = &server.http;
    let rec = "/recommend";

    // Successes.
    for body in [
        json!({"history": ["i1", 2, "nope"], "k": 3, "exclude": ["i4"]}),
        json!({"user_id": "u1"}),
        json!({"history": [], "k": null, "model": "ml100k"}),
    ] {
        let (status, answer) = c.post_json(rec, rec, &body);
        assert_eq!(status, 200, "{body} → {answer}");
    }
    // Every error /recommend can be driven to without load.
    let expect = [
        (json!({"user_id": "nobody"}), 404, "unknown_user"),
        (
            json!({"history": [], "model": "nope"}),
            404,
            "unknown_model",
        ),
        (json!({"history": [], "k": 0}), 422, "validation"),
        (json!({"histroy": []}), 422, "validation"),
        (
            json!({"history": ["i1"], "user_id": "u1"}),
            422,
            "validation",
        ),
        (json!({"history": [-1]}), 422, "validation"),
    ];
    for (body, status, error_type) in expect {
        let (s, answer) = c.post_json(rec, rec, &body);
        assert_eq!(
            (s, answer["error_type"].as_str()),
            (status, Some(error_type))
        );
    }
    let raw = |ct: &str, body: Vec<u8>| {
        http.post(server.url(rec))
            .header("content-type", ct)
            .body(body)
    };
    assert_eq!(
        c.check("post", rec, raw("application/json", b"{".to_vec()))
            .0,
        400
    );
    assert_eq!(
        c.check("post", rec, raw("text/plain", b"{}".to_vec())).0,
        415
    );
    let big = vec![b' '; 300 * 1024];
    assert_eq!(c.check("post", rec, raw("application/json", big)).0, 413);
    assert_eq!(c.check("post", rec, http.get(server.url(rec))).0, 405);

    // Read-only routes.
    assert_eq!(
        c.check("get", "/healthz", http.get(server.url("/healthz")))
            .0,
        200
    );
    assert_eq!(
        c.check("get", "/metrics", http.get(server.url("/metrics")))
            .0,
        200
    );
    let (_, ready) = c.check("get", "/readyz", http.get(server.url("/readyz")));
    assert_eq!(ready["status"], "ready");
    let (_, models) = c.check("get", "/v1/models", http.get(server.url("/v1/models")));
    assert_eq!(models["default_model"], "ml100k");
    let detail = "/v1/models/{name}";
    let (s, d) = c.check("get", detail, http.get(server.url("/v1/models/ml100k")));
    assert_eq!((s, &d["live"]["version"]), (200, &json!(1)));
    assert_eq!(
        c.check("get", detail, http.get(server.url("/v1/models/nope")))
            .0,
        404
    );

    // Admin routes.
    let load = "/admin/models/{name}/load";
    let (s, _) = c.post_json(load, "/admin/models/ml100k/load", &json!({"version": 1}));
    assert_eq!(s, 200);
    for (version, status) in [(json!("0"), 422), (json!(9), 404), (json!(1.5), 422)] {
        let body = json!({ "version": version });
        let (s, _) = c.post_json(load, "/admin/models/ml100k/load", &body);
        assert_eq!(s, status, "{body}");
    }
    let (s, _) = c.post_json(load, "/admin/models/nope/load", &json!({"version": 1}));
    assert_eq!(s, 404);
    let unauthorized = http
        .post(server.url("/admin/models/ml100k/load"))
        .json(&json!({"version": 1}));
    assert_eq!(c.check("post", load, unauthorized).0, 401);
    let rollback = "/admin/models/{name}/rollback";
    let (s, body) = c.post_json(rollback, "/admin/models/ml100k/rollback", &Value::Null);
    assert_eq!((s, body["error_type"].as_str()), (409, Some("conflict")));
    let unpin = "/admin/models/{name}/unpin";
    let (s, body) = c.post_json(unpin, "/admin/models/ml100k/unpin", &Value::Null);
    assert_eq!((s, &body["pinned"]), (200, &json!(false)));

    // Every label the server produced passed the schema's enum above; these are the ones this
    // test drives the server to (the rest need load, a broken bundle or a disabled route).
    c.error_types.sort();
    c.error_types.dedup();
    let mut reached = vec![
        "conflict",
        "malformed_json",
        "payload_too_large",
        "unauthorized",
        "unknown_model",
        "unknown_user",
        "unknown_version",
        "unsupported_media_type",
        "validation",
    ];
    reached.sort();
    assert_eq!(c.error_types, reached);
}
