//! The one error type of the distill job.

use std::path::PathBuf;

use crate::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Numeric(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error("ONNX runtime ({model}): {message}")]
    Runtime { model: String, message: String },
    #[error(
        "parity check failed for {model}: exported ONNX differs from the training forward by \
         {max_abs_diff:e} (tolerance {tolerance:e})"
    )]
    Parity {
        model: String,
        max_abs_diff: f64,
        tolerance: f64,
    },
    #[error("plot: {0}")]
    Plot(String),
    #[error("the job does not fit: {0}")]
    Plan(String),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
