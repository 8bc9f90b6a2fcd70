//! The wire types of `POST /recommend` (JSON here, protobuf mapped onto them in `codec.rs`) and
//! the checks a request passes before any model is involved.

use compact_str::{CompactString, ToCompactString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::ApiError;
use axum::http::HeaderName;

const DEFAULT_K: usize = 10;

// Built once: a `&str` header name is parsed and checked on every insert.
pub const X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");
pub const X_QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time");
pub const X_INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time");

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

/// The answer in either format (`codec::encode_response` maps it onto the .proto message).
#[derive(Serialize, ToSchema)]
pub struct RecommendResponse<'a> {
    pub model: &'a str,
    pub version: u64,
    pub items: Vec<Item<'a>>,
    /// History ids not in the model's vocabulary; they were skipped.
    pub unknown_items: Vec<String>,
    pub timing: Timing,
}

/// Where the history comes from.
#[derive(Debug, PartialEq)]
pub enum Source {
    History(Vec<ExternalId>),
    User(ExternalId),
}

/// A request that passed every check that needs no model: `k` resolved and in range, exactly
/// one history source, lists within the limits.
#[derive(Debug)]
pub struct ValidRequest {
    pub source: Source,
    pub k: usize,
    pub exclude: Vec<ExternalId>,
    pub model: Option<String>,
}

impl RecommendRequest {
    /// Checks `k` against `max_k` (default 10, or `max_k` if lower) and the history and
    /// exclusion lists against `max_history`. Failures are 422 `validation` with a message
    /// naming the rule.
    pub fn validate(self, max_k: usize, max_history: usize) -> Result<ValidRequest, ApiError> {
        let k = self.k.unwrap_or(DEFAULT_K.min(max_k));
        if k == 0 || k > max_k {
            return Err(ApiError::Validation(format!(
                "k must be between 1 and {max_k}"
            )));
        }
        let source = match (self.history, self.user_id) {
            (Some(h), None) => Source::History(h),
            (None, Some(u)) => Source::User(u),
            _ => {
                return Err(ApiError::Validation(
                    "send exactly one of `history` and `user_id`".into(),
                ))
            }
        };
        if let Source::History(h) = &source {
            if h.len() > max_history {
                return Err(ApiError::Validation(format!(
                    "history has {} items; the limit is {max_history}",
                    h.len()
                )));
            }
        }
        if self.exclude.len() > max_history {
            return Err(ApiError::Validation(format!(
                "exclude has {} items; the limit is {max_history}",
                self.exclude.len()
            )));
        }
        Ok(ValidRequest {
            source,
            k,
            exclude: self.exclude,
            model: self.model,
        })
    }
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

    fn req(json: &str) -> RecommendRequest {
        serde_json::from_str(json).unwrap()
    }

    fn invalid(json: &str, max_k: usize, max_history: usize) -> String {
        match req(json).validate(max_k, max_history) {
            Err(ApiError::Validation(m)) => m,
            other => panic!("{json}: expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn k_defaults_to_ten_or_the_limit_and_stays_in_range() {
        let v = req(r#"{"history": ["a"]}"#).validate(100, 5).unwrap();
        assert_eq!(v.k, 10);
        let v = req(r#"{"history": ["a"]}"#).validate(3, 5).unwrap();
        assert_eq!(v.k, 3);
        assert_eq!(
            invalid(r#"{"history": ["a"], "k": 0}"#, 100, 5),
            "k must be between 1 and 100"
        );
        assert_eq!(
            invalid(r#"{"history": ["a"], "k": 101}"#, 100, 5),
            "k must be between 1 and 100"
        );
        assert_eq!(
            req(r#"{"history": ["a"], "k": 100}"#)
                .validate(100, 5)
                .unwrap()
                .k,
            100
        );
    }

    #[test]
    fn exactly_one_source() {
        let msg = "send exactly one of `history` and `user_id`";
        assert_eq!(invalid(r#"{}"#, 10, 5), msg);
        assert_eq!(invalid(r#"{"history": [], "user_id": "u"}"#, 10, 5), msg);
        let v = req(r#"{"user_id": 7, "model": "m", "exclude": ["x"]}"#)
            .validate(10, 5)
            .unwrap();
        assert_eq!(v.source, Source::User(ExternalId("7".into())));
        assert_eq!(v.model.as_deref(), Some("m"));
        assert_eq!(v.exclude, vec![ExternalId("x".into())]);
    }

    #[test]
    fn lists_are_capped_by_max_history() {
        assert_eq!(
            invalid(r#"{"history": ["a", "b", "c"]}"#, 10, 2),
            "history has 3 items; the limit is 2"
        );
        assert_eq!(
            invalid(r#"{"user_id": "u", "exclude": ["a", "b", "c"]}"#, 10, 2),
            "exclude has 3 items; the limit is 2"
        );
        assert!(req(r#"{"history": ["a", "b"], "exclude": ["c", "d"]}"#)
            .validate(10, 2)
            .is_ok());
    }
}
