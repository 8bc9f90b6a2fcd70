//! `POST /recommend`: validate, map ids to vocabulary rows, queue for the batcher, answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use crate::bundle::valid_model_name;
use crate::server::api::{
    Item, RecommendResponse, Source, Timing, X_INFERENCE_TIME, X_MODEL_VERSION, X_QUEUE_TIME,
};
use crate::server::codec::{self, Format, RecommendBody};
use crate::server::errors::ApiError;
use crate::server::json_body;
use crate::server::state::AppState;
use crate::serving::batcher::Job;
use crate::serving::model::LoadedModel;
use crate::serving::registry::ModelEntry;

/// Headers `x-queue-time` and `x-inference-time` are integer microseconds (also in the body as
/// `timing.queue_us` / `timing.inference_us`); `x-model-version` is the version that answered.
/// The body is JSON or protobuf (`codec.rs` negotiates); both arrive here as one type.
pub async fn recommend(
    State(st): State<AppState>,
    headers: HeaderMap,
    RecommendBody(req): RecommendBody,
) -> Result<Response, ApiError> {
    let req = req.validate(st.config.max_k, st.config.max_history)?;
    let entry = model_entry(&st, req.model.as_deref())?;
    // Held until the response is built: this request sees one version from start to end.
    let model = entry
        .live()
        .ok_or_else(|| ApiError::NotReady(entry.name.clone()))?;
    let (history, unknown) = history_rows(&model, req.source)?;
    if !unknown.is_empty() {
        st.metrics
            .unknown_items
            .with_label_values(&[&model.name])
            .inc_by(unknown.len() as u64);
    }
    let exclude: Vec<u32> = req
        .exclude
        .iter()
        .filter_map(|id| model.items.row(&id.0))
        .collect();

    let (tx, rx) = oneshot::channel();
    entry.batcher.submit(Job {
        model: Arc::clone(&model),
        history,
        exclude,
        k: req.k,
        enqueued: Instant::now(),
        reply: tx,
    })?;
    let scored = rx
        .await
        .map_err(|_| ApiError::Internal("the inference thread dropped a job".into()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;

    Ok(respond(
        codec::response_format(&headers),
        &model,
        &scored.items,
        unknown,
        Timing {
            queue_us: micros(scored.queue_time),
            inference_us: micros(scored.inference_time),
            batch_size: scored.batch_size,
        },
    ))
}

/// The registry entry of the requested model, or of the server's default.
fn model_entry(st: &AppState, requested: Option<&str>) -> Result<Arc<ModelEntry>, ApiError> {
    let name = match requested {
        Some(name) => name,
        None => st
            .registry
            .default_name()
            .ok_or_else(|| ApiError::NotReady("default".into()))?,
    };
    valid_model_name(name)
        .then(|| st.registry.get(name))
        .flatten()
        .ok_or_else(|| match requested {
            Some(_) => ApiError::UnknownModel(name.to_string()),
            // The configured default has not appeared in the repository (yet).
            None => ApiError::NotReady(name.to_string()),
        })
}

/// The history as vocabulary rows, and the history ids the vocabulary does not know.
fn history_rows(model: &LoadedModel, source: Source) -> Result<(Vec<u32>, Vec<String>), ApiError> {
    match source {
        Source::History(ids) => {
            let mut rows = Vec::with_capacity(ids.len());
            let mut unknown = Vec::new();
            for id in ids {
                match model.items.row(&id.0) {
                    Some(r) => rows.push(r),
                    None => unknown.push(id.0.into_string()),
                }
            }
            Ok((rows, unknown))
        }
        Source::User(user) => {
            let rows = model
                .users
                .as_ref()
                .and_then(|u| u.get(&user.0))
                .ok_or_else(|| ApiError::UnknownUser(user.0.into_string()))?;
            Ok((rows.to_vec(), Vec::new()))
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn respond(
    format: Format,
    model: &LoadedModel,
    items: &[(u32, f32)],
    unknown_items: Vec<String>,
    timing: Timing,
) -> Response {
    let (queue_us, inference_us) = (timing.queue_us, timing.inference_us);
    let body = RecommendResponse {
        model: &model.name,
        version: model.version,
        items: items
            .iter()
            .map(|&(row, score)| Item {
                id: model.items.id(row as usize),
                score,
                title: model.items.title(row as usize),
            })
            .collect(),
        unknown_items,
        timing,
    };
    let (bytes, content_type) = match format {
        Format::Protobuf => (codec::encode_response(&body), codec::CONTENT_TYPE),
        Format::Json => (json_body::recommend_response(&body), "application/json"),
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(X_MODEL_VERSION, HeaderValue::from(model.version));
    h.insert(X_QUEUE_TIME, HeaderValue::from(queue_us));
    h.insert(X_INFERENCE_TIME, HeaderValue::from(inference_us));
    response
}
