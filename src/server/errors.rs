//! The one error type HTTP handlers return, and its mapping to status codes.
//!
//! Clients get `{"error": "<message>", "error_type": "<stable label>"}`. The labels are part of
//! the API (clients branch on them); messages are for humans. Internal details (paths, runtime
//! errors) are logged here and replaced by a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

/// Every `error_type` label, in the order of the variants: the OpenAPI document's enum. A unit
/// test keeps it equal to what `status_and_type` returns.
pub const ERROR_TYPES: &[&str] = &[
    "validation",
    "malformed_json",
    "malformed_protobuf",
    "unsupported_media_type",
    "payload_too_large",
    "unknown_user",
    "unknown_model",
    "unknown_version",
    "not_ready",
    "overloaded",
    "timeout",
    "unauthorized",
    "load_failed",
    "conflict",
    "not_found",
    "internal",
];

impl ApiError {
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::MalformedProtobuf(_) => (StatusCode::BAD_REQUEST, "malformed_protobuf"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnknownUser(_) => (StatusCode::NOT_FOUND, "unknown_user"),
            ApiError::UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            ApiError::UnknownVersion { .. } => (StatusCode::NOT_FOUND, "unknown_version"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::LoadFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "load_failed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
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
        assert_eq!(labels, ERROR_TYPES);
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
