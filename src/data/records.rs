//! The types of an interaction log: its records (dense 0-based user and item indices), the
//! line-level record before indexing, and the errors of reading one.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
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
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub rating: f32,
    pub timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct Interactions {
    /// Dataset name: the file stem (`ml-100k` for `ml-100k.inter`, the parent folder for `u.data`).
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub user_ids: Vec<String>,
    pub item_ids: Vec<String>,
    pub item_titles: Vec<Option<String>>,
    pub records: Vec<Interaction>,
}

impl Interactions {
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
}

/// One parsed line before ids are made dense (borrowing the file's text).
pub(crate) struct RawRecord<'a> {
    /// Line (or Parquet row) number, 1-based, for error messages.
    pub line: usize,
    pub user: &'a str,
    pub item: &'a str,
    pub rating: f32,
    pub timestamp: i64,
}
