//! The offline distillation job behind the `distill` binary: trains the teachers (closed-form
//! EASE and a large `mean_mlp`), a small student with and without knowledge distillation,
//! evaluates everything side by side under the RecBole protocol, writes a report, and exports the
//! student and teacher as model bundles.
//!
//! This is the only module that imports candle, faer, plotters and indicatif (cargo feature
//! `train`), so the server never links the training stack.

mod config;
mod ease;
mod engines;
mod error;
mod export;
mod external;
mod fit;
mod kd;
pub(crate) mod model;
mod pipeline;
pub mod plan;
mod plot;
mod progress;
mod publish;
mod quantised;
mod report;
pub mod sampled;
mod students;
mod teachers;
mod trained;

pub use config::{ActivationArg, Config, Mode, StudentFormat, TeacherChoice};
pub use engines::EngineEval;
pub use error::TrainError;
pub use kd::KdVariant;
pub use pipeline::{run, Outcome};
pub use report::Report;
