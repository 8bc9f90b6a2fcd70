//! `POST /recommend`: validate, map ids to vocabulary rows, queue for the batcher, answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use compact_str::{CompactString, ToCompactString};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

use super::batcher::{Job, SubmitError};
use super::errors::ApiError;
use super::http::AppState;
use super::model::LoadedModel;
use super::protobuf::{self, Format, RecommendBody};
use crate::bundle::valid_model_name;

const DEFAULT_K: usize = 10;

// Built once: a `&str` header name is parsed and checked on every insert.
pub(super) const X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");
pub(super) const X_QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time");
pub(super) const X_INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time");

/// An item or user id as clients send it: a JSON string or a non-negative integer (MovieLens
/// ids are numbers; the bundle stores them as text). Ids of up to 24 bytes are held inline
/// (`compact_str`): a 50-id history costs no allocation per id, where `String` cost 50 mallocs
/// and frees per request on the async worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(pub CompactString);

impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ExternalId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id (string or non-negative integer)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExternalId, E> {
                Ok(ExternalId(CompactString::from(v)))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ExternalId, E> {
                Ok(ExternalId(CompactString::from(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExternalId, E> {
                Ok(ExternalId(v.to_compact_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Send exactly one of `history` and `user_id`. The limits shown (`k` ≤ 100, 1000 ids) are the
/// defaults of `--max-k` and `--max-history`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// Item ids the user interacted with; unknown ids are skipped and listed in `unknown_items`.
    /// They are never recommended back.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub history: Option<Vec<ExternalId>>,
    /// A user of the model's `users.tsv`: their stored history is used (and not recommended).
    #[serde(default)]
    pub user_id: Option<ExternalId>,
    /// How many items to return (default 10, at most `--max-k`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<usize>,
    /// Item ids never to return; unknown ones are ignored.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub exclude: Vec<ExternalId>,
    /// Model name; the server's default model when absent.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RecommendedItem)]
pub struct Item<'a> {
    pub id: &'a str,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
pub struct Timing {
    /// Microseconds from admission to the start of the batch's model call.
    pub queue_us: u64,
    /// Microseconds of the whole batch's model call and top-k.
    pub inference_us: u64,
    /// Requests in the batch that answered this one.
    pub batch_size: usize,
}

/// The answer in either format (`protobuf::encode_response` maps it onto the .proto message).
#[derive(Serialize, ToSchema)]
pub struct RecommendResponse<'a> {
    pub model: &'a str,
    pub version: u64,
    pub items: Vec<Item<'a>>,
    /// History ids not in the model's vocabulary; they were skipped.
    pub unknown_items: Vec<String>,
    pub timing: Timing,
}

enum Source {
    History(Vec<ExternalId>),
    User(ExternalId),
}

/// Headers `x-queue-time` and `x-inference-time` are integer microseconds (also in the body as
/// `timing.queue_us` / `timing.inference_us`); `x-model-version` is the version that answered.
/// The body is JSON or protobuf (`protobuf.rs` negotiates); both arrive here as one type.
pub async fn recommend(
    State(st): State<AppState>,
    headers: HeaderMap,
    RecommendBody(req): RecommendBody,
) -> Result<Response, ApiError> {
    let limits = &st.config;
    let k = req.k.unwrap_or(DEFAULT_K.min(limits.max_k));
    if k == 0 || k > limits.max_k {
        return Err(ApiError::Validation(format!(
            "k must be between 1 and {}",
            limits.max_k
        )));
    }
    let source = match (req.history, req.user_id) {
        (Some(h), None) => Source::History(h),
        (None, Some(u)) => Source::User(u),
        _ => {
            return Err(ApiError::Validation(
                "send exactly one of `history` and `user_id`".into(),
            ))
        }
    };
    if let Source::History(h) = &source {
        if h.len() > limits.max_history {
            return Err(ApiError::Validation(format!(
                "history has {} items; the limit is {}",
                h.len(),
                limits.max_history
            )));
        }
    }
    if req.exclude.len() > limits.max_history {
        return Err(ApiError::Validation(format!(
            "exclude has {} items; the limit is {}",
            req.exclude.len(),
            limits.max_history
        )));
    }

    let name = match &req.model {
        Some(name) => name.as_str(),
        None => st
            .registry
            .default_name()
            .ok_or_else(|| ApiError::NotReady("default".into()))?,
    };
    let entry = valid_model_name(name)
        .then(|| st.registry.get(name))
        .flatten()
        .ok_or_else(|| match req.model {
            Some(_) => ApiError::UnknownModel(name.to_string()),
            // The configured default has not appeared in the repository (yet).
            None => ApiError::NotReady(name.to_string()),
        })?;
    // Held until the response is built: this request sees one version from start to end.
    let model = entry
        .live()
        .ok_or_else(|| ApiError::NotReady(name.to_string()))?;

    let mut unknown = Vec::new();
    let history: Vec<u32> = match source {
        Source::History(ids) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                match model.items.row(&id.0) {
                    Some(r) => rows.push(r),
                    None => unknown.push(id.0.into_string()),
                }
            }
            rows
        }
        Source::User(user) => model
            .users
            .as_ref()
            .and_then(|u| u.get(&user.0))
            .ok_or_else(|| ApiError::UnknownUser(user.0.into_string()))?
            .to_vec(),
    };
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
    entry
        .batcher
        .submit(Job {
            model: Arc::clone(&model),
            history,
            exclude,
            k,
            enqueued: Instant::now(),
            reply: tx,
        })
        .map_err(|e| match e {
            SubmitError::Full => ApiError::Overloaded,
            SubmitError::Closed => ApiError::Internal(format!("batcher of `{name}` stopped")),
        })?;
    let scored = rx
        .await
        .map_err(|_| ApiError::Internal("the inference thread dropped a job".into()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;

    Ok(respond(
        protobuf::response_format(&headers),
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
        Format::Protobuf => (protobuf::encode_response(&body), protobuf::CONTENT_TYPE),
        Format::Json => match serde_json::to_vec(&body) {
            Ok(b) => (b, "application/json"),
            Err(e) => {
                return ApiError::Internal(format!("serializing a response: {e}")).into_response()
            }
        },
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(X_MODEL_VERSION, HeaderValue::from(model.version));
    h.insert(X_QUEUE_TIME, HeaderValue::from(queue_us));
    h.insert(X_INFERENCE_TIME, HeaderValue::from(inference_us));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_strings_or_integers() {
        let r: RecommendRequest =
            serde_json::from_str(r#"{"history": ["i1", 42], "exclude": [7], "k": 5}"#).unwrap();
        let h = r.history.unwrap();
        assert_eq!(h, vec![ExternalId("i1".into()), ExternalId("42".into())]);
        assert_eq!(r.exclude, vec![ExternalId("7".into())]);
        assert!(serde_json::from_str::<RecommendRequest>(r#"{"history": [-1]}"#).is_err());
        assert!(serde_json::from_str::<RecommendRequest>(r#"{"history": [[1]]}"#).is_err());
        assert!(serde_json::from_str::<RecommendRequest>(r#"{"histroy": []}"#).is_err());
    }
}
