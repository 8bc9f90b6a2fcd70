//! The small read-only routes: liveness, readiness, the model list and details, metrics.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::errors::ApiError;
use crate::server::extract::ModelName;
use crate::server::state::AppState;
use crate::server::views::{Audience, ModelDetail, ModelSummary};

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the default model is loaded and warmed up, and no shutdown has started.
pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    if st.config.http_floor {
        return axum::Json(json!({"status": "ready", "mode": "http_floor"})).into_response();
    }
    match st.registry.default_live() {
        Some(m) => axum::Json(json!({"status": "ready", "model": m.name, "version": m.version}))
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "loading", "model": st.registry.default_name()})),
        )
            .into_response(),
    }
}

pub async fn list_models(State(st): State<AppState>) -> Response {
    axum::Json(json!({
        "default_model": st.registry.default_name(),
        "models": st
            .registry
            .snapshots()
            .iter()
            .map(ModelSummary::from)
            .collect::<Vec<_>>(),
    }))
    .into_response()
}

pub async fn model_detail(
    State(st): State<AppState>,
    ModelName(name): ModelName,
) -> Result<Response, ApiError> {
    let detail = st
        .registry
        .snapshot(&name)
        .map(|s| ModelDetail::new(s, Audience::Public))
        .ok_or(ApiError::UnknownModel(name))?;
    Ok(axum::Json(detail).into_response())
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut r = st.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
