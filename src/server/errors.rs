//! The one error type HTTP handlers return, and its mapping to status codes.
//!
//! Clients get `{"error": "<message>", "error_type": "<stable label>"}`. The labels are part of
//! the API (clients branch on them); messages are for humans. Internal details (paths, runtime
//! errors) are logged here and replaced by a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::serving::batcher::SubmitError;
use crate::serving::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but breaks a rule (k out of range, history too long, ...).
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    MalformedJson(String),
    /// A `application/x-protobuf` body that does not decode as the request message.
    #[error("{0}")]
    MalformedProtobuf(String),
    /// Names the accepted types, e.g. "`application/json`".
    #[error("unsupported content type; expected {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    #[error("model `{model}` has no version {version}")]
    UnknownVersion { model: String, version: u64 },
    #[error("model `{0}` has no version loaded yet")]
    NotReady(String),
    #[error("the server is overloaded, retry later")]
    Overloaded,
    #[error("the request did not complete in time")]
    Timeout,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A model version could not be loaded through the admin API; the message is the operator's
    /// to read (the admin API is not public).
    #[error("{0}")]
    LoadFailed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no route for this path")]
    NotFound,
    /// Something on our side broke; the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

/// Every `error_type` label with its status, in the order of the variants: the one list. The
/// OpenAPI document's enum and description are generated from it ([`error_types_text`]); unit
/// tests keep it equal to what `status_and_type` returns and check that README.md and
/// proto/recommend.proto name no other label (README.md all of them).
pub const ERROR_TYPES: &[(&str, StatusCode)] = &[
    ("validation", StatusCode::UNPROCESSABLE_ENTITY),
    ("malformed_json", StatusCode::BAD_REQUEST),
    ("malformed_protobuf", StatusCode::BAD_REQUEST),
    ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
    ("unknown_user", StatusCode::NOT_FOUND),
    ("unknown_model", StatusCode::NOT_FOUND),
    ("unknown_version", StatusCode::NOT_FOUND),
    ("not_ready", StatusCode::SERVICE_UNAVAILABLE),
    ("overloaded", StatusCode::SERVICE_UNAVAILABLE),
    ("timeout", StatusCode::SERVICE_UNAVAILABLE),
    ("unauthorized", StatusCode::UNAUTHORIZED),
    ("load_failed", StatusCode::UNPROCESSABLE_ENTITY),
    ("conflict", StatusCode::CONFLICT),
    ("not_found", StatusCode::NOT_FOUND),
    ("internal", StatusCode::INTERNAL_SERVER_ERROR),
];

/// The labels of [`ERROR_TYPES`] alone.
pub fn error_type_labels() -> Vec<&'static str> {
    ERROR_TYPES.iter().map(|(label, _)| *label).collect()
}

/// "`validation` 422, `malformed_json` 400, …": every label with its status, for documents.
pub fn error_types_text() -> String {
    ERROR_TYPES
        .iter()
        .map(|(label, status)| format!("`{label}` {}", status.as_u16()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// The variant's entry of [`ERROR_TYPES`].
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        let i = match self {
            ApiError::Validation(_) => 0,
            ApiError::MalformedJson(_) => 1,
            ApiError::MalformedProtobuf(_) => 2,
            ApiError::UnsupportedMediaType(_) => 3,
            ApiError::PayloadTooLarge => 4,
            ApiError::UnknownUser(_) => 5,
            ApiError::UnknownModel(_) => 6,
            ApiError::UnknownVersion { .. } => 7,
            ApiError::NotReady(_) => 8,
            ApiError::Overloaded => 9,
            ApiError::Timeout => 10,
            ApiError::Unauthorized => 11,
            ApiError::LoadFailed(_) => 12,
            ApiError::Conflict(_) => 13,
            ApiError::NotFound => 14,
            ApiError::Internal(_) => 15,
        };
        let (label, status) = ERROR_TYPES[i];
        (status, label)
    }
}

/// Attached to every error response so a later layer can re-encode the body in the format the
/// client negotiated (`server::protobuf`) without parsing the JSON back.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub message: String,
    pub error_type: &'static str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_type: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.status_and_type();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let message = self.to_string();
        let body = serde_json::to_vec(&ErrorBody {
            error: &message,
            error_type,
        })
        .expect("a struct of two strings always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            ApiError::Overloaded | ApiError::Timeout | ApiError::NotReady(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorInfo {
            message,
            error_type,
        });
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownModel(m) => ApiError::UnknownModel(m),
            RegistryError::UnknownVersion { model, version } => {
                ApiError::UnknownVersion { model, version }
            }
            e @ RegistryError::Load { .. } => ApiError::LoadFailed(e.to_string()),
            e @ RegistryError::NoPrevious(_) => ApiError::Conflict(e.to_string()),
            e @ RegistryError::LoadRunning(_) => ApiError::Conflict(e.to_string()),
            e @ RegistryError::KnownBad { .. } => ApiError::LoadFailed(e.to_string()),
            e @ RegistryError::Spawn(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Full => ApiError::Overloaded,
            e @ SubmitError::Closed => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// One value of each variant; the `match` stops compiling when a variant is added, which is
    /// the reminder to list its label in `ERROR_TYPES` (and so in the OpenAPI document).
    fn every_variant() -> Vec<ApiError> {
        let all = vec![
            ApiError::Validation(String::new()),
            ApiError::MalformedJson(String::new()),
            ApiError::MalformedProtobuf(String::new()),
            ApiError::UnsupportedMediaType(""),
            ApiError::PayloadTooLarge,
            ApiError::UnknownUser(String::new()),
            ApiError::UnknownModel(String::new()),
            ApiError::UnknownVersion {
                model: String::new(),
                version: 1,
            },
            ApiError::NotReady(String::new()),
            ApiError::Overloaded,
            ApiError::Timeout,
            ApiError::Unauthorized,
            ApiError::LoadFailed(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::NotFound,
            ApiError::Internal(String::new()),
        ];
        for e in &all {
            match e {
                ApiError::Validation(_)
                | ApiError::MalformedJson(_)
                | ApiError::MalformedProtobuf(_)
                | ApiError::UnsupportedMediaType(_)
                | ApiError::PayloadTooLarge
                | ApiError::UnknownUser(_)
                | ApiError::UnknownModel(_)
                | ApiError::UnknownVersion { .. }
                | ApiError::NotReady(_)
                | ApiError::Overloaded
                | ApiError::Timeout
                | ApiError::Unauthorized
                | ApiError::LoadFailed(_)
                | ApiError::Conflict(_)
                | ApiError::NotFound
                | ApiError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn error_types_are_exactly_the_variants_labels() {
        let labels: Vec<&str> = every_variant()
            .iter()
            .map(|e| e.status_and_type().1)
            .collect();
        assert_eq!(labels, error_type_labels());
    }

    /// Words that look like labels (`snake_case` with an underscore, or one of the one-word
    /// labels) in a document's error list.
    fn named_labels(text: &str) -> Vec<String> {
        text.split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .filter(|w| error_type_labels().contains(w) || (w.contains('_') && !w.starts_with('_')))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_readme_and_the_proto_name_only_real_labels_and_the_readme_all_of_them() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("Errors are `{\"error\"")
            .expect("README.md describes the error body");
        let end = start + readme[start..].find("\n\n").expect("a paragraph");
        let listed = named_labels(&readme[start..end]);
        for label in error_type_labels() {
            assert!(
                listed.iter().any(|l| l == label),
                "README.md misses `{label}`"
            );
        }
        for l in listed
            .iter()
            .filter(|l| !["error_type", "unknown_items"].contains(&l.as_str()))
        {
            assert!(
                error_type_labels().contains(&l.as_str()),
                "README.md names `{l}`"
            );
        }
        let proto = include_str!("../../proto/recommend.proto");
        let start = proto
            .find("// Stable label")
            .expect("the proto documents error_type");
        let end = start + proto[start..].find("string error_type").unwrap();
        let named = named_labels(&proto[start..end]);
        assert!(named.len() >= 10, "{named:?}");
        for l in &named {
            assert!(
                error_type_labels().contains(&l.as_str()),
                "recommend.proto names `{l}`"
            );
        }
    }

    #[tokio::test]
    async fn internal_details_are_not_sent() {
        let r = ApiError::Internal("/secret/path: tract exploded".into()).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v = body_json(r).await;
        assert_eq!(v["error_type"], "internal");
        assert!(!v["error"].as_str().unwrap().contains("secret"));
    }

    #[tokio::test]
    async fn overload_is_503_with_retry_after() {
        let r = ApiError::Overloaded.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body_json(r).await["error_type"], "overloaded");
    }
}
