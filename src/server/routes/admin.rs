//! The admin API: load + pin a version, roll back, unpin. Only routed when enabled
//! (`--admin-token` and/or `--admin-addr`), and guarded by the bearer token when one is set.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::bundle::{parse_version, valid_version};
use crate::server::errors::ApiError;
use crate::server::extract::{Json, ModelName};
use crate::server::state::AppState;
use crate::server::views::{Audience, ModelDetail};
use crate::serving::registry::RegistryError;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/models/{name}", get(detail))
        .route("/admin/models/{name}/load", post(load))
        .route("/admin/models/{name}/rollback", post(rollback))
        .route("/admin/models/{name}/unpin", post(unpin))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(expected) = &st.config.admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 §11.1: `bearer`, `BEARER` are the same scheme); the token is not.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Comparison time does not depend on where the first differing byte is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `{"version": 3}` or `{"version": "3"}`; anything but a positive integer is refused, so a
/// version can never name a path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadRequest {
    version: serde_json::Value,
}

fn version_of(v: &serde_json::Value) -> Result<u64, ApiError> {
    let parsed = match v {
        serde_json::Value::Number(n) => n.as_u64().filter(|v| valid_version(*v)),
        serde_json::Value::String(s) => parse_version(s),
        _ => None,
    };
    parsed.ok_or_else(|| ApiError::Validation("`version` must be a positive integer".into()))
}

/// Runs an admin operation as its own task: a client that disconnects (or the request deadline)
/// must not abort a load between reading the bundle and swapping it in.
async fn detached<T: Send + 'static>(
    op: impl Future<Output = Result<T, RegistryError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(tracing::Instrument::in_current_span(op))
        .await
        .map_err(|e| ApiError::Internal(format!("admin task failed: {e}")))?
        .map_err(ApiError::from)
}

/// `GET /v1/models/{name}` with the full text of every remembered load failure.
async fn detail(
    State(st): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    let detail = st
        .registry
        .snapshot(&name)
        .map(|s| ModelDetail::new(s, Audience::Admin))
        .ok_or(ApiError::UnknownModel(name))?;
    Ok(axum::Json(detail).into_response())
}

#[tracing::instrument(skip_all, fields(model = %name))]
async fn load(
    State(st): State<AppState>,
    ModelName(name): ModelName,
    Json(req): Json<LoadRequest>,
) -> Result<Response, ApiError> {
    let version = version_of(&req.version)?;
    let registry = Arc::clone(&st.registry);
    let model = name.clone();
    let live = detached(async move { registry.load_pinned(&model, version).await }).await?;
    Ok(axum::Json(json!({"model": name, "version": live, "pinned": true})).into_response())
}

#[tracing::instrument(skip_all, fields(model = %name))]
async fn rollback(
    State(st): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    let registry = Arc::clone(&st.registry);
    let model = name.clone();
    let live = detached(async move { registry.rollback(&model).await }).await?;
    Ok(axum::Json(json!({"model": name, "version": live, "pinned": true})).into_response())
}

#[tracing::instrument(skip_all, fields(model = %name))]
async fn unpin(
    State(st): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    let registry = Arc::clone(&st.registry);
    let model = name.clone();
    let live = detached(async move { registry.unpin(&model).await }).await?;
    Ok(axum::Json(json!({"model": name, "version": live, "pinned": false})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_positive_integers_only() {
        assert_eq!(version_of(&json!(3)).unwrap(), 3);
        assert_eq!(version_of(&json!("12")).unwrap(), 12);
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("../1"),
            json!("1/.."),
            json!(null),
        ] {
            assert!(version_of(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer tok", "bearer tok", "BEARER tok", "Bearer  tok"] {
            assert_eq!(bearer_token(v), Some("tok"), "{v}");
        }
        assert_eq!(bearer_token("Basic tok"), None);
        assert_eq!(bearer_token("Bearertok"), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-tokem", b"secret-token"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }
}
