//! What every engine implements and every caller passes: the [`Engine`] trait, the query of
//! one request, the engine kinds and their errors, and the exact re-rank the approximate
//! engines share.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::matrix::ItemMatrix;
use crate::topk::TopK;

/// One query of a batch: how many rows it wants and which it must not get.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub k: usize,
    /// Rows never returned, **sorted ascending and deduplicated** (row 0 is always excluded).
    pub exclude: &'a [u32],
}

impl Query<'_> {
    #[inline]
    pub fn excludes(&self, row: u32) -> bool {
        row == 0 || self.exclude.binary_search(&row).is_ok()
    }
}

/// Sorted, deduplicated exclusion list from any rows (what [`Query::exclude`] expects).
pub fn exclusion_list(rows: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = rows.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Best `(row, score)` pairs of each query, descending; scores are exact f32 `u·v + b`.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;
    /// `queries`: row-major `[queries.len(), dim]` user vectors, one per entry of `requests`.
    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>>;
    /// Bytes of item data this engine holds: its copy of the matrix in the layout it scans,
    /// the graph, the codes (the f32 matrix it was built from is freed unless it keeps it).
    fn bytes(&self) -> usize;
    /// Where the engine's graph came from: `saved` (read from the bundle) or `built` (at
    /// load); `None` for engines without one (and `ann` scanning a small catalogue).
    fn graph(&self) -> Option<&'static str> {
        None
    }
}

/// Which engine serves a two-tower model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    #[default]
    Exact,
    Int8,
    Ann,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Exact, EngineKind::Int8, EngineKind::Ann];

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Exact => "exact",
            EngineKind::Int8 => "int8",
            EngineKind::Ann => "ann",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EngineKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown engine `{s}` (expected exact, int8 or ann)"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine parameters: {0}")]
    Params(String),
    #[error("building the ANN index failed: {0}")]
    Build(String),
}

/// Largest `ef_search` / `ef_construction` a manifest may ask for: hnswlib and USearch users
/// tune them in the tens to hundreds; thousands already cost more than a full scan of most
/// catalogues, and the search list is allocated per query.
pub const MAX_EF: usize = 4096;

/// `value` must not exceed the catalogue (`n_rows`), except that the default is always
/// accepted, so a small catalogue keeps working with default settings.
pub(crate) fn at_most_rows(
    what: &str,
    value: usize,
    default: usize,
    n_rows: usize,
) -> Result<(), EngineError> {
    if value > n_rows.max(default) {
        return Err(EngineError::Params(format!(
            "{what} {value} is larger than the catalogue ({n_rows} rows)"
        )));
    }
    Ok(())
}

/// Exact f32 re-rank of candidate rows: the best `q.k` of `candidates` that `q` allows.
/// Candidates are distinct rows (a TopK's rows, usearch keys of a single-key index, a range).
pub(crate) fn rerank(
    items: &ItemMatrix,
    query: &[f32],
    q: &Query<'_>,
    candidates: impl IntoIterator<Item = u32>,
) -> Vec<(u32, f32)> {
    let mut best = TopK::new(q.k);
    for row in candidates {
        if !q.excludes(row) {
            best.push(row, items.score(query, row as usize));
        }
    }
    best.into_sorted()
}
