//! `--http-floor`: the benchmark's HTTP floor. `POST /recommend` goes through the same router,
//! middleware (metrics, timeout, body limit), body extractor and validation-free JSON parse as
//! the real handler, then answers a fixed 10-item body instead of queueing for a model. The
//! throughput of this mode bounds what any model can reach on the machine, so the load suite
//! reports the real server as a fraction of it.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::server::api::{RecommendRequest, X_INFERENCE_TIME, X_MODEL_VERSION, X_QUEUE_TIME};
use crate::server::errors::ApiError;
use crate::server::extract::Json;
use crate::server::state::AppState;

/// Shaped like a real answer of the student (10 items, titles, timing) so the response size and
/// the client's parsing cost match.
const ANSWER: &str = concat!(
    r#"{"model":"floor","version":1,"items":["#,
    r#"{"id":"50","score":9.1,"title":"Star Wars (1977)"},"#,
    r#"{"id":"100","score":8.7,"title":"Fargo (1996)"},"#,
    r#"{"id":"181","score":8.5,"title":"Return of the Jedi (1983)"},"#,
    r#"{"id":"258","score":8.2,"title":"Contact (1997)"},"#,
    r#"{"id":"294","score":8.0,"title":"Liar Liar (1997)"},"#,
    r#"{"id":"286","score":7.9,"title":"English Patient, The (1996)"},"#,
    r#"{"id":"288","score":7.7,"title":"Scream (1996)"},"#,
    r#"{"id":"1","score":7.5,"title":"Toy Story (1995)"},"#,
    r#"{"id":"300","score":7.4,"title":"Air Force One (1997)"},"#,
    r#"{"id":"121","score":7.2,"title":"Independence Day (ID4) (1996)"}"#,
    r#"],"unknown_items":[],"timing":{"queue_us":0,"inference_us":0,"batch_size":1}}"#
);

pub async fn recommend(
    State(_): State<AppState>,
    Json(req): Json<RecommendRequest>,
) -> Result<Response, ApiError> {
    if req.history.is_none() && req.user_id.is_none() {
        return Err(ApiError::Validation(
            "send exactly one of `history` and `user_id`".into(),
        ));
    }
    let mut response = ANSWER.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(X_MODEL_VERSION, HeaderValue::from_static("1"));
    h.insert(X_QUEUE_TIME, HeaderValue::from_static("0"));
    h.insert(X_INFERENCE_TIME, HeaderValue::from_static("0"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_answer_is_a_valid_ten_item_response() {
        let v: serde_json::Value = serde_json::from_str(ANSWER).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 10);
        assert_eq!(v["version"], 1);
    }
}
