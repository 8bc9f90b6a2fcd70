//! The baseline every serving change must beat (loadtest/bench.sh, `naive` section): the server a
//! competent engineer writes in an afternoon with axum and tract, and nothing more.
//!
//! One v1 bundle directory (`model.onnx` history → scores, `items.tsv`), `POST /recommend` with
//! `{"history": [item ids], "k": 10}` → `{"items": [{"id", "score"}]}`, `GET /readyz`.
//! Per request: parse the JSON, map ids to rows, one tract call on the async worker (no
//! `spawn_blocking`, no batching, a fresh execution state each time), mask row 0 and the history,
//! partial selection of the top k, sort the k. None of distilrec's scorer, batcher or registry is
//! used; only the bundle reader, so it loads the same files.
//!
//!     cargo run --release --no-default-features --example naive_server -- \
//!         --bundle models/ml100k/1 --addr 127.0.0.1:8080

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use distilrec::bundle::{Bundle, ItemVocab};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

#[derive(Parser)]
struct Args {
    /// Bundle version directory holding `model.onnx` and `items.tsv` (e.g. models/ml100k/1).
    #[arg(long, env = "NAIVE_BUNDLE")]
    bundle: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "NAIVE_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

struct Model {
    plan: Arc<TypedSimplePlan>,
    items: ItemVocab,
}

#[derive(Deserialize)]
struct RecommendRequest {
    history: Vec<String>,
    #[serde(default = "default_k")]
    k: usize,
}

fn default_k() -> usize {
    10
}

#[derive(Serialize)]
struct Recommended {
    id: String,
    score: f32,
}

#[derive(Serialize)]
struct RecommendResponse {
    items: Vec<Recommended>,
}

async fn recommend(
    State(model): State<Arc<Model>>,
    Json(req): Json<RecommendRequest>,
) -> Result<Json<RecommendResponse>, (StatusCode, String)> {
    if !(1..=100).contains(&req.k) {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "k must be 1..=100".into()));
    }
    // Unknown ids are skipped; an empty history is the padding row alone.
    let mut history: Vec<i64> = req
        .history
        .iter()
        .filter_map(|id| model.items.row(id))
        .map(i64::from)
        .collect();
    let masked = history.clone();
    if history.is_empty() {
        history.push(0);
    }
    let internal = |e: TractError| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
    let input = Tensor::from_shape(&[1, history.len()], &history).map_err(internal)?;
    let outputs = model
        .plan
        .run(tvec!(input.into_tvalue()))
        .map_err(internal)?;
    let view = outputs[0].try_as_plain_ram().map_err(internal)?;
    let mut scores = view.as_slice::<f32>().map_err(internal)?.to_vec();

    // Row 0 is padding; history rows and NaN scores are never recommended.
    scores[0] = f32::NEG_INFINITY;
    for &row in &masked {
        scores[row as usize] = f32::NEG_INFINITY;
    }
    for s in scores.iter_mut().filter(|s| s.is_nan()) {
        *s = f32::NEG_INFINITY;
    }
    let mut rows: Vec<usize> = (0..scores.len()).collect();
    // Descending score, ties to the lower row (the distilrec server's rule).
    let order = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let k = req.k.min(rows.len());
    rows.select_nth_unstable_by(k - 1, order);
    rows.truncate(k);
    rows.sort_unstable_by(order);

    let items = rows
        .into_iter()
        .filter(|&row| scores[row] > f32::NEG_INFINITY)
        .map(|row| Recommended {
            id: model.items.id(row).to_string(),
            score: scores[row],
        })
        .collect();
    Ok(Json(RecommendResponse { items }))
}

async fn readyz() -> &'static str {
    // The model is loaded before the listener binds, so serving at all means ready.
    "ready"
}

fn load(dir: &std::path::Path) -> anyhow::Result<Model> {
    let bundle = Bundle::load(dir).with_context(|| format!("loading {}", dir.display()))?;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut bundle.model_bytes.as_slice())
        .context("reading model.onnx")?;
    let batch = model.sym("batch");
    let len = model.sym("L");
    model.set_input_fact(
        0,
        InferenceFact::dt_shape(i64::datum_type(), tvec!(TDim::from(batch), TDim::from(len))),
    )?;
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .context("optimizing model.onnx")?;
    Ok(Model {
        plan,
        items: bundle.items,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = Arc::new(load(&args.bundle)?);
    let app = Router::new()
        .route("/recommend", post(recommend))
        .route("/readyz", get(readyz))
        .with_state(model);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    eprintln!("naive_server listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
