//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json` and committed as
//! `proto/openapi.json` (a test fails when the two differ).
//!
//! Request and response bodies come from the handlers' own types (`ToSchema` derives in
//! `api.rs` and `registry.rs`). Bodies that handlers build with `json!` and the few types
//! with hand-written serde get hand-written schemas here; the end-to-end test validates real
//! responses against the document, so these cannot silently disagree with the server. The
//! operations are described on stubs in this module rather than on the handlers, so the whole
//! contract reads in one place; a unit test checks that every documented route is routed.
//!
//! Limits that are flags (`--max-k`, `--max-history`) appear with their default values.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::api::{ExternalId, RecommendRequest, RecommendResponse};
use super::errors::{error_type_labels, error_types_text};
use super::views::{ModelDetail, ModelSummary};
use crate::bundle::Role;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "distilrec",
        description = "Top-k recommendations from a distilled ONNX model. Every error is \
            `{\"error\": message, \"error_type\": label}`; clients branch on `error_type`."
    ),
    paths(
        recommend,
        healthz,
        readyz,
        list_models,
        model_detail,
        metrics,
        openapi_json,
        admin_detail,
        admin_load,
        admin_rollback,
        admin_unpin
    ),
    components(schemas(ModelSummary)),
    modifiers(&BearerToken),
    tags(
        (name = "recommend", description = "Recommendations"),
        (name = "operations", description = "Health, readiness, models and metrics"),
        (name = "admin", description = "Only when the admin API is enabled (`--admin-token` \
            and/or `--admin-addr`); with `--admin-addr` these routes are served on that address \
            instead. A disabled admin API answers 404 `not_found`.")
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as served and committed: pretty-printed, with a final newline.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi())
            .expect("the OpenAPI document is plain data and always serializes");
        add_request_rules(&mut doc["components"]["schemas"]["RecommendRequest"]);
        add_protobuf_bodies(&mut doc["paths"]["/recommend"]["post"]);
        let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
        text.push('\n');
        text
    });
    DOCUMENT.as_str()
}

/// `POST /recommend` also takes and returns protobuf (`proto/recommend.proto`, see
/// `codec.rs`): every JSON body of the operation gets an `application/x-protobuf` twin naming
/// its message. Patched on the JSON because utoipa's path macro describes one schema per type.
fn add_protobuf_bodies(operation: &mut Value) {
    const PROTOBUF: &str = "application/x-protobuf";
    let binary = |message: &str| {
        json!({"schema": {
            "type": "string",
            "contentMediaType": PROTOBUF,
            "description": format!("`distilrec.v1.{message}` (proto/recommend.proto)"),
        }})
    };
    operation["requestBody"]["content"][PROTOBUF] = binary("RecommendRequest");
    let responses = operation["responses"]
        .as_object_mut()
        .expect("the operation has responses");
    for (status, response) in responses.iter_mut() {
        let message = if status == "200" {
            "RecommendResponse"
        } else {
            "ErrorBody"
        };
        if let Some(content) = response["content"].as_object_mut() {
            content.insert(PROTOBUF.into(), binary(message));
        }
    }
}

/// What the derive cannot say about `RecommendRequest`: exactly one of `history` and `user_id`
/// (null counts as absent), and an example that works on the committed models. Patched on the
/// JSON because utoipa's `Schema` has no room for an object that is also a `oneOf`.
fn add_request_rules(schema: &mut Value) {
    assert!(schema.is_object(), "RecommendRequest is a component");
    schema["oneOf"] = json!([
        {
            "required": ["history"],
            "properties": {"history": {"type": "array"}, "user_id": {"type": "null"}}
        },
        {
            "required": ["user_id"],
            "properties": {"history": {"type": "null"}, "user_id": {"not": {"type": "null"}}}
        }
    ]);
    schema["examples"] = json!([{"history": [242, "302"], "k": 5}, {"user_id": 1}]);
}

pub async fn serve() -> Response {
    let mut r = document().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn from_json(v: Value) -> RefOr<Schema> {
    serde_json::from_value(v).expect("hand-written schemas are valid OpenAPI schema objects")
}

/// Implements `ToSchema` from a JSON schema literal, for bodies without a Rust type of their own.
macro_rules! json_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                from_json($schema)
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

json_schema!(
    ExternalId,
    "ExternalId",
    json!({
        "description": "An item or user id: a string, or a non-negative integer that is read as \
            its decimal text (MovieLens ids are numbers).",
        "oneOf": [
            {"type": "string"},
            {"type": "integer", "minimum": 0, "maximum": u64::MAX}
        ]
    })
);

/// The serde names of every `Role`, so the enum follows the type.
fn role_names() -> Vec<Value> {
    let all = [Role::Teacher, Role::Student, Role::Baseline];
    for r in all {
        match r {
            Role::Teacher | Role::Student | Role::Baseline => {}
        }
    }
    all.iter()
        .map(|r| serde_json::to_value(r).expect("a unit variant serializes"))
        .collect()
}

json_schema!(
    Role,
    "Role",
    json!({"type": "string", "enum": role_names()})
);

/// The body of every error (`errors.rs`).
pub struct ErrorBody;
json_schema!(
    ErrorBody,
    "ErrorBody",
    json!({
        "type": "object",
        "required": ["error", "error_type"],
        "properties": {
            "error": {"type": "string", "description": "For humans; may change between versions."},
            "error_type": {
                "type": "string",
                "enum": error_type_labels(),
                "description": format!(
                    "Stable label with its status: {}. A wrong method for a route is \
                     `validation` with 405.",
                    error_types_text()
                )
            }
        }
    })
);

pub struct Readiness;
json_schema!(
    Readiness,
    "Readiness",
    json!({
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "loading", "draining"]},
            "model": {
                "type": ["string", "null"],
                "description": "The default model (absent while draining)."
            },
            "version": {
                "type": "integer",
                "minimum": 0,
                "description": "Its live version (only when ready)."
            }
        }
    })
);

pub struct ModelList;
json_schema!(
    ModelList,
    "ModelList",
    json!({
        "type": "object",
        "required": ["default_model", "models"],
        "properties": {
            "default_model": {"type": ["string", "null"]},
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelSummary"}}
        }
    })
);

pub struct LoadRequest;
json_schema!(
    LoadRequest,
    "LoadRequest",
    json!({
        "type": "object",
        "required": ["version"],
        "additionalProperties": false,
        "properties": {
            "version": {
                "description": "A version on disk, as a positive integer or its decimal text.",
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": u64::MAX},
                    {"type": "string", "pattern": "^0*[1-9][0-9]*$", "maxLength": 19}
                ]
            }
        }
    })
);

pub struct AdminResult;
json_schema!(
    AdminResult,
    "AdminResult",
    json!({
        "type": "object",
        "required": ["model", "version", "pinned"],
        "properties": {
            "model": {"type": "string"},
            "version": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "The live version afterwards (null: none is live)."
            },
            "pinned": {"type": "boolean"}
        }
    })
);

/// Top-k items for a history or a known user.
///
/// Headers `x-queue-time` and `x-inference-time` repeat `timing` (integer microseconds).
/// Bodies are JSON or protobuf (`application/x-protobuf`, `proto/recommend.proto`); the answer
/// is protobuf when `Accept` prefers it or, without a preference, when the request was.
#[utoipa::path(
    post,
    path = "/recommend",
    tag = "recommend",
    request_body(content = RecommendRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The recommendations", body = RecommendResponse,
            headers(
                ("x-model-version" = u64, description = "The version that answered"),
                ("x-queue-time" = u64, description = "Microseconds queued"),
                ("x-inference-time" = u64, description = "Microseconds of the batch's inference")
            )),
        (status = 400, description = "`malformed_json`: not JSON, or `malformed_protobuf`: a \
            protobuf body that does not decode", body = ErrorBody),
        (status = 404, description = "`unknown_user` or `unknown_model`", body = ErrorBody),
        (status = 405, description = "Wrong method", body = ErrorBody),
        (status = 413, description = "`payload_too_large` (`--max-body-bytes`, default 256 KiB)",
            body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation`: a rule or the request shape is broken",
            body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`not_ready`, `overloaded` or `timeout`; retry later",
            body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds")))
    )
)]
#[allow(dead_code)]
fn recommend() {}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn healthz() {}

/// Readiness: the default model is loaded and warmed up, and no shutdown has started.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Loading or draining", body = Readiness)
    )
)]
#[allow(dead_code)]
fn readyz() {}

/// The models in the repository, their live and pinned versions.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "operations",
    responses((status = 200, description = "All models", body = ModelList))
)]
#[allow(dead_code)]
fn list_models() {}

/// One model: live version details, versions on disk, rollback history, failed loads.
#[utoipa::path(
    get,
    path = "/v1/models/{name}",
    tag = "operations",
    params(("name" = String, Path, description = "Model name", example = "ml100k")),
    responses(
        (status = 200, description = "The model", body = ModelDetail),
        (status = 404, description = "`unknown_model`", body = ErrorBody)
    )
)]
#[allow(dead_code)]
fn model_detail() {}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn metrics() {}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object))
)]
#[allow(dead_code)]
fn openapi_json() {}

/// `GET /v1/models/{name}` plus the full error text of each remembered load failure (the
/// public route shows only their kinds).
#[utoipa::path(
    get,
    path = "/admin/models/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Model name", example = "ml100k")),
    responses(
        (status = 200, description = "The model", body = ModelDetail),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_model`, or `not_found` when the admin API is \
            disabled", body = ErrorBody)
    )
)]
#[allow(dead_code)]
fn admin_detail() {}

/// Load a version on disk and pin it (the poller no longer moves this model).
#[utoipa::path(
    post,
    path = "/admin/models/{name}/load",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Model name", example = "ml100k")),
    request_body(content = LoadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Live and pinned", body = AdminResult),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_model`, `unknown_version`, or `not_found` when \
            the admin API is disabled", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation` or `load_failed` (the old version stays live)",
            body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`timeout`", body = ErrorBody)
    )
)]
#[allow(dead_code)]
fn admin_load() {}

/// Go back to the previous live version and pin it.
#[utoipa::path(
    post,
    path = "/admin/models/{name}/rollback",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Model name", example = "ml100k")),
    responses(
        (status = 200, description = "Rolled back and pinned", body = AdminResult),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_model`, `unknown_version`, or `not_found` when \
            the admin API is disabled", body = ErrorBody),
        (status = 409, description = "`conflict`: no previous version", body = ErrorBody),
        (status = 422, description = "`load_failed`", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`timeout`", body = ErrorBody)
    )
)]
#[allow(dead_code)]
fn admin_rollback() {}

/// Let the poller move this model to the newest version again.
#[utoipa::path(
    post,
    path = "/admin/models/{name}/unpin",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "Model name", example = "ml100k")),
    responses(
        (status = 200, description = "Unpinned", body = AdminResult),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_model`, or `not_found` when the admin API is \
            disabled", body = ErrorBody)
    )
)]
#[allow(dead_code)]
fn admin_unpin() {}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use clap::Parser;
    use tower::ServiceExt;

    use crate::server::config::Config;

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap()
    }

    #[test]
    fn the_error_type_description_names_every_label() {
        let d = doc();
        let text = d["components"]["schemas"]["ErrorBody"]["properties"]["error_type"]
            ["description"]
            .as_str()
            .expect("a description");
        for label in error_type_labels() {
            assert!(
                text.contains(&format!("`{label}`")),
                "{label} missing: {text}"
            );
        }
    }

    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let repo = tempfile::tempdir().unwrap();
        let config = Config::try_parse_from([
            "distilrec",
            "--models",
            repo.path().to_str().unwrap(),
            "--admin-token",
            "t",
        ])
        .unwrap();
        let app = super::super::router(super::super::app_state(config));
        let doc = doc();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10, "{:?}", paths.keys());
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                let uri = path.replace("{name}", "m");
                let req = axum::http::Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let r = app.clone().oneshot(req).await.unwrap();
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                let body = String::from_utf8_lossy(&body);
                assert!(
                    status != 405 && !body.contains(r#""error_type":"not_found""#),
                    "{method} {uri} is documented but not routed: {status} {body}"
                );
            }
        }
    }

    #[test]
    fn documented_limits_are_the_flag_defaults() {
        let config = Config::try_parse_from(["distilrec"]).unwrap();
        let doc = doc();
        let req = &doc["components"]["schemas"]["RecommendRequest"]["properties"];
        assert_eq!(req["k"]["maximum"], json!(config.max_k));
        assert_eq!(req["history"]["maxItems"], json!(config.max_history));
        assert_eq!(req["exclude"]["maxItems"], json!(config.max_history));
    }

    #[test]
    fn error_body_lists_every_error_type_and_the_request_refuses_unknown_fields() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorBody"]["properties"]["error_type"]["enum"],
            json!(error_type_labels())
        );
        assert_eq!(
            schemas["RecommendRequest"]["additionalProperties"],
            json!(false)
        );
        assert_eq!(
            schemas["Role"]["enum"],
            json!(["teacher", "student", "baseline"])
        );
    }
}
