//! distilrec: distil a large recommender into a small ONNX student and serve it.
//!
//! Module map (each owns one thing):
//! - [`bundle`]: the on-disk model bundle format (manifest, vocabulary, atomic writes).
//! - [`onnx`]: building ONNX graphs for the model families and running them with tract.
//! - [`topk`]: partial-sort top-k selection with exclusions.
//! - [`engine`]: maximum-inner-product search of user vectors over an item matrix (exact GEMM,
//!   int8, HNSW) for two-tower bundles.
//! - [`data`]: reading interaction logs and the train/valid/test split.
//! - [`eval`]: ranking metrics under the full-ranking protocol.
//! - [`logging`]: log set-up for the binaries (no colours off a terminal).
//! - [`proto`]: the protobuf wire types of `POST /recommend` (generated from `proto/`).
//! - [`metrics`]: every Prometheus metric the server exports, registered in one place.
//! - [`serving`]: the serving core without HTTP: loading and warming a model version, dynamic
//!   batching on inference threads, history → top-k.
//! - [`server`]: the HTTP server (the only module that knows axum).
//! - `train` (feature `train`): candle training, EASE, distillation, reports.

pub mod bundle;
pub mod data;
pub mod engine;
pub mod eval;
pub mod logging;
pub mod metrics;
pub mod onnx;
mod os;
pub mod proto;
pub mod server;
pub mod serving;
pub mod topk;
#[cfg(feature = "train")]
pub mod train;
