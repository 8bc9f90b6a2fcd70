//! The serving core, without HTTP (no axum, no utoipa): what happens to a request between the
//! handler that validated it and the answer it gets.
//!
//! - [`model`]: loading one bundle version, checking it against its manifest, building its
//!   scoring engine and warming it up (blocking work, run off the async workers).
//! - [`batcher`]: the bounded per-model queue and dynamic batching on dedicated inference
//!   threads; the batching decision is the pure [`batcher::State`].
//! - [`rank`]: history → top-k for a batch, the whole compute of a recommend request.
//! - [`loader`]: one load off the request path (low-priority thread, deadline, fingerprint of
//!   the files it read); [`control`]: pin / rollback history / remembered failures of one model
//!   as plain data.
//! - [`registry`]: the live version of every model, polling the repository, hot swaps and the
//!   admin operations (load + pin, rollback, unpin); [`retire`]: freeing swapped-out versions
//!   off the request path.

pub mod batcher;
pub mod control;
pub mod loader;
pub mod model;
pub mod rank;
pub mod registry;
pub mod retire;

pub use model::{build_scoring, LoadError, LoadedModel};
pub use rank::{rank, RankRequest, Scoring};
