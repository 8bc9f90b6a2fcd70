//! A fixed-answer HTTP server for calibrating the harness: axum parses the JSON body of
//! `POST /recommend` and returns a constant 10-item answer with the distilrec timing headers.
//! Whatever throughput the harness reaches against it bounds what it can measure on this machine
//! (compare with `wrk` against the same server). It can also serve as the benchmark's HTTP floor
//! (`FLOOR_CMD` in bench.sh) if the lead does not provide one in the server crate.
//!
//!     cargo run --release -p loadtest --example fixed_server -- 127.0.0.1:18080

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

const ANSWER: &str = r#"{"model":"floor","version":1,"items":[{"id":"i1","score":1.0},{"id":"i2","score":0.9},{"id":"i3","score":0.8},{"id":"i4","score":0.7},{"id":"i5","score":0.6},{"id":"i6","score":0.5},{"id":"i7","score":0.4},{"id":"i8","score":0.3},{"id":"i9","score":0.2},{"id":"i10","score":0.1}],"unknown_items":[],"timing":{"queue_us":0,"inference_us":0,"batch_size":1}}"#;

async fn recommend(Json(body): Json<Value>) -> impl IntoResponse {
    if !body["history"].is_array() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            HeaderMap::new(),
            "{\"error\":\"history\"}",
        );
    }
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-model-version", HeaderValue::from_static("1"));
    h.insert("x-queue-time", HeaderValue::from_static("0"));
    h.insert("x-inference-time", HeaderValue::from_static("0"));
    (StatusCode::OK, h, ANSWER)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let app = Router::new()
        .route("/recommend", post(recommend))
        .route("/readyz", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("fixed_server listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
