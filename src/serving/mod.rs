//! The serving core, without HTTP (no axum, no utoipa): what happens to a request between the
//! handler that validated it and the answer it gets.
//!
//! - [`model`]: loading one bundle version, checking it against its manifest, building its
//!   scoring engine and warming it up (blocking work, run off the async workers).
//! - [`batcher`]: the bounded per-model queue and dynamic batching on dedicated inference
//!   threads; the batching decision is the pure [`batcher::State`].
//! - [`rank`]: history → top-k for a batch, the whole compute of a recommend request.

pub mod batcher;
pub mod model;
pub mod rank;

pub use model::{build_scoring, LoadError, LoadedModel};
pub use rank::{rank, RankRequest, Scoring};
