//! The one error type of reading and writing bundles; its `kind` labels the server's
//! `distilrec_model_load_total{result}` and the admin API's `load_failures`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: sha256 mismatch: manifest says {expected}, file has {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{dir}: {message}")]
    Inconsistent { dir: PathBuf, message: String },
    #[error("{path}: not a regular file (FIFOs, devices and directories are refused)")]
    NotRegularFile { path: PathBuf },
    /// The manifest's `serving` settings are out of range for this bundle.
    #[error("{path}: engine settings: {message}")]
    Engine { path: PathBuf, message: String },
    #[error("{path}: {size} bytes is over the limit of {max} bytes")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    /// A table file under its cap on disk that would take more than the cap once parsed.
    #[error("{path}: decodes to about {size} bytes in memory, over the limit of {max} bytes")]
    DecodedTooLarge { path: PathBuf, size: u64, max: u64 },
}

impl BundleError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BundleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, line: usize, message: String) -> Self {
        BundleError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        }
    }

    /// Short stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::Io { .. } => "io",
            BundleError::Parse { .. } => "parse",
            BundleError::Manifest { .. } => "manifest",
            BundleError::Checksum { .. } => "checksum",
            BundleError::Inconsistent { .. } => "inconsistent",
            BundleError::NotRegularFile { .. } => "not_regular_file",
            BundleError::TooLarge { .. } | BundleError::DecodedTooLarge { .. } => "too_large",
            // The same label as an engine that fails to build: one kind for "the scoring
            // engine cannot serve this", whether found in the manifest or while building.
            BundleError::Engine { .. } => "engine",
        }
    }
}
