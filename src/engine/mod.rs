//! Scoring engines: maximum-inner-product search of user vectors against an item matrix.
//!
//! A two-tower bundle (format 2, `docs/model-bundle.md`) splits a model into a *user encoder*
//! (ONNX: history → `user_vector [batch, d]`) and the *item side* as data (`items.f32`:
//! `[n_rows, d]` + optional bias). The score of row r for user vector u is `u·v_r + b_r`; an
//! engine returns each query's best k rows, never row 0 (padding) nor an excluded row.
//!
//! Engines (pick per model in the manifest's `serving.engine`, or `--engine`):
//! - [`exact`]: blocked GEMM (the `gemm` crate) fused with a streaming top-k, so the
//!   `[batch, n_rows]` score matrix is never materialised;
//! - [`int8`]: per-row symmetric int8 quantisation of the item matrix scanned with integer dot
//!   products, then an exact f32 re-rank of the best candidates;
//! - [`ann`]: an HNSW graph (built at load, off the request path) over-fetching candidates that
//!   are filtered and re-ranked exactly in f32.
//!
//! No HTTP, no async: the batcher calls [`Engine::search`] on its inference threads.

pub mod ann;
mod contract;
pub mod exact;
pub mod int8;
mod matrix;
pub mod synthetic;

use serde::{Deserialize, Serialize};

pub use ann::spot_check_rows;
pub use ann::{BuildProgress, IndexBytes};
pub use contract::{exclusion_list, Engine, EngineError, EngineKind, Query, MAX_EF};
pub use matrix::{
    dot, quantise_rows, ItemMatrix, MatrixError, QuantisedRows, RowSample, RowSampleError,
    DTYPE_F32, DTYPE_INT8,
};

/// Engine settings as written in a manifest's `serving` section; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EngineParams {
    pub engine: EngineKind,
    pub int8: int8::Int8Params,
    pub ann: ann::AnnParams,
}

impl EngineParams {
    /// Checks every setting against the catalogue it will serve (`n_rows` vocabulary rows),
    /// whichever engine is chosen: a manifest is data, and a setting such as
    /// `rerank_min: 10^11` would otherwise size an allocation on every query.
    pub fn check(&self, n_rows: usize) -> Result<(), EngineError> {
        self.int8.check(n_rows)?;
        self.ann.check(n_rows)
    }
}

/// Builds the engine `kind` over `items` (blocking; the ANN index takes seconds at 10^6 rows).
pub fn build(
    kind: EngineKind,
    items: std::sync::Arc<ItemMatrix>,
    params: &EngineParams,
) -> Result<Box<dyn Engine>, EngineError> {
    build_with(
        kind,
        ItemSource::Matrix(items),
        params,
        None,
        &BuildProgress::default(),
    )
}

/// What an engine is built from: the whole item matrix; or — when a saved graph will serve and
/// holds every vector — only the rows the graph is checked against; or an int8 item file's rows
/// as stored, which the `int8` engine scans and re-scores without an f32 copy.
#[derive(Debug, Clone)]
pub enum ItemSource {
    Matrix(std::sync::Arc<ItemMatrix>),
    Sample(RowSample),
    Quantised(QuantisedRows),
}

impl ItemSource {
    pub fn n_rows(&self) -> usize {
        match self {
            ItemSource::Matrix(m) => m.n_rows(),
            ItemSource::Sample(s) => s.n_rows(),
            ItemSource::Quantised(q) => q.n_rows(),
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            ItemSource::Matrix(m) => m.dim(),
            ItemSource::Sample(s) => s.dim(),
            ItemSource::Quantised(q) => q.dim(),
        }
    }
}

/// Whether the engine `kind` with `params` serves an `n_rows` catalogue from a saved graph
/// when the bundle has one (and so needs only a [`RowSample`] of the item file).
pub fn serves_from_saved_graph(kind: EngineKind, params: &EngineParams, n_rows: usize) -> bool {
    kind == EngineKind::Ann && n_rows.saturating_sub(1) >= params.ann.full_scan_below
}

/// [`build`] with a graph saved at publish time (used by `ann` when the catalogue gets a
/// graph; ignored by the other engines) and a counter of the rows a graph build has added.
/// Engines keep only what they scan: the matrix is freed when `kind` does not need it. A
/// [`ItemSource::Sample`] builds only an `ann` engine from its saved graph.
pub fn build_with(
    kind: EngineKind,
    items: ItemSource,
    params: &EngineParams,
    saved: Option<IndexBytes>,
    progress: &BuildProgress,
) -> Result<Box<dyn Engine>, EngineError> {
    let from_graph = serves_from_saved_graph(kind, params, items.n_rows());
    let matrix = match (items, saved) {
        (items, Some(bytes)) if from_graph => {
            let sample = match items {
                ItemSource::Matrix(m) => RowSample::from_matrix(&m, &spot_check_rows(m.n_rows())),
                ItemSource::Sample(s) => s,
                ItemSource::Quantised(q) => RowSample::from_matrix(
                    &q.dequantise()
                        .map_err(|e| EngineError::Build(e.to_string()))?,
                    &spot_check_rows(q.n_rows()),
                ),
            };
            return Ok(Box::new(ann::Ann::from_bytes(
                bytes,
                &sample,
                params.ann.clone(),
            )?));
        }
        (ItemSource::Quantised(q), _) if kind == EngineKind::Int8 => {
            return Ok(Box::new(int8::Int8::from_quantised(
                &q,
                params.int8.clone(),
            )?));
        }
        (ItemSource::Matrix(m), _) => m,
        (ItemSource::Quantised(q), _) => std::sync::Arc::new(
            q.dequantise()
                .map_err(|e| EngineError::Build(e.to_string()))?,
        ),
        (ItemSource::Sample(_), _) => {
            return Err(EngineError::Build(format!(
                "the {kind} engine needs the whole item matrix, not a sample of its rows"
            )))
        }
    };
    Ok(match kind {
        EngineKind::Exact => Box::new(exact::Exact::new(&matrix)),
        EngineKind::Int8 => Box::new(int8::Int8::new(matrix, params.int8.clone())?),
        EngineKind::Ann => Box::new(ann::Ann::build_watched(
            &matrix,
            params.ann.clone(),
            progress,
        )?),
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared by the engines' tests: random and clustered catalogues, the brute-force reference.
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// Four rows, d 2, where for the query `[1, 0]` row 0 (padding) scores best and row 1
    /// second: with row 1 excluded the only right answer is `[(3, 2.0), (2, 1.0)]`.
    pub fn padding_and_excluded_score_best() -> std::sync::Arc<ItemMatrix> {
        let mut v = vec![0.0f32; 4 * 2];
        v[0] = 100.0; // row 0 would win
        v[2] = 50.0; // row 1 would be second
        v[4] = 1.0;
        v[6] = 2.0;
        std::sync::Arc::new(ItemMatrix::new(4, 2, v, None).unwrap())
    }

    pub fn random_matrix(n_rows: usize, dim: usize, bias: bool, seed: u64) -> ItemMatrix {
        let mut rng = SmallRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n_rows * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let b = bias.then(|| (0..n_rows).map(|_| rng.random_range(-0.5..0.5)).collect());
        ItemMatrix::new(n_rows, dim, v, b).unwrap()
    }

    pub fn random_queries(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// The definition: score every allowed row, full sort, ties by lower row.
    pub fn brute_force(items: &ItemMatrix, query: &[f32], q: &Query<'_>) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = (0..items.n_rows() as u32)
            .filter(|&r| !q.excludes(r))
            .map(|r| (r, items.score(query, r as usize)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(q.k);
        all
    }

    /// Random exclusion lists and k per query.
    pub fn random_requests(n: usize, n_rows: usize, seed: u64) -> (Vec<Vec<u32>>, Vec<usize>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let ex = (0..n)
            .map(|_| {
                let m = rng.random_range(0..60);
                exclusion_list((0..m).map(|_| rng.random_range(0..n_rows as u32)))
            })
            .collect();
        let ks = (0..n).map(|_| rng.random_range(0..30)).collect();
        (ex, ks)
    }

    /// Checks `got` against the definition: same length, scores equal rank by rank (GEMM sums
    /// in another order than `dot`, so only near-ties may swap rows), every row allowed, and
    /// every reported score equal to the row's true score.
    pub fn assert_exact(
        items: &ItemMatrix,
        queries: &[f32],
        reqs: &[Query<'_>],
        got: &[Vec<(u32, f32)>],
    ) {
        let dim = items.dim();
        assert_eq!(got.len(), reqs.len());
        for (i, q) in reqs.iter().enumerate() {
            let query = &queries[i * dim..(i + 1) * dim];
            let want = brute_force(items, query, q);
            assert_eq!(got[i].len(), want.len(), "query {i}");
            let tol = |x: f32| 1e-4 * x.abs().max(1.0);
            for (g, w) in got[i].iter().zip(&want) {
                assert!((g.1 - w.1).abs() <= tol(w.1), "query {i}: {g:?} vs {w:?}");
                assert!(!q.excludes(g.0), "query {i}: excluded row {} returned", g.0);
                let truth = items.score(query, g.0 as usize);
                assert!(
                    (g.1 - truth).abs() <= tol(truth),
                    "query {i}: row {} score",
                    g.0
                );
            }
            let rows: std::collections::HashSet<u32> = got[i].iter().map(|p| p.0).collect();
            assert_eq!(rows.len(), got[i].len(), "query {i}: a row repeats");
        }
    }

    /// Runs `batch` random queries (seeds `seed`, `seed + 1`) with random k and exclusions
    /// through an approximate engine, asserts what every engine guarantees (the right length,
    /// no excluded row, exact scores) and returns the mean recall against brute force.
    pub fn approximate_recall(
        engine: &dyn Engine,
        items: &ItemMatrix,
        batch: usize,
        seed: u64,
    ) -> f64 {
        let dim = items.dim();
        let queries = random_queries(batch, dim, seed);
        let (ex, ks) = random_requests(batch, items.n_rows(), seed + 1);
        let reqs: Vec<Query> = ex
            .iter()
            .zip(&ks)
            .map(|(e, &k)| Query { k, exclude: e })
            .collect();
        let got = engine.search(&queries, &reqs);
        let mut total = 0.0;
        for (i, q) in reqs.iter().enumerate() {
            let query = &queries[i * dim..(i + 1) * dim];
            let want = brute_force(items, query, q);
            assert_eq!(got[i].len(), want.len(), "query {i}");
            for &(row, score) in &got[i] {
                assert!(!q.excludes(row), "query {i}: excluded row {row}");
                assert!((score - items.score(query, row as usize)).abs() < 1e-4);
            }
            total += recall(&got[i], &want);
        }
        total / batch as f64
    }

    pub fn recall(got: &[(u32, f32)], want: &[(u32, f32)]) -> f64 {
        if want.is_empty() {
            return 1.0;
        }
        let w: std::collections::HashSet<u32> = want.iter().map(|p| p.0).collect();
        got.iter().filter(|p| w.contains(&p.0)).count() as f64 / want.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for k in EngineKind::ALL {
            assert_eq!(k.name().parse::<EngineKind>().unwrap(), k);
        }
        assert!("faiss".parse::<EngineKind>().is_err());
        let p: EngineParams = serde_json::from_str(r#"{"engine": "ann"}"#).unwrap();
        assert_eq!(p.engine, EngineKind::Ann);
        assert!(serde_json::from_str::<EngineParams>(r#"{"engin": "ann"}"#).is_err());
    }

    #[test]
    fn settings_beyond_the_catalogue_or_the_caps_are_refused() {
        let ok = EngineParams::default();
        ok.check(10).unwrap();
        ok.check(1_000_000).unwrap();
        let with = |f: &dyn Fn(&mut EngineParams)| {
            let mut p = EngineParams::default();
            f(&mut p);
            p
        };
        let bad = [
            with(&|p| p.int8.rerank_min = 100_000_000_000),
            with(&|p| p.int8.rerank_factor = usize::MAX),
            with(&|p| p.ann.overfetch = 1_000_001),
            with(&|p| p.ann.ef_search = MAX_EF + 1),
            with(&|p| p.ann.ef_construction = MAX_EF + 1),
            with(&|p| p.ann.build_threads = 1 << 20),
            with(&|p| p.ann.m = 65),
        ];
        for p in bad {
            assert!(p.check(1_000_000).is_err(), "{p:?}");
        }
        // Up to the catalogue is fine.
        with(&|p| p.int8.rerank_min = 1_000).check(1_000).unwrap();
        assert!(with(&|p| p.int8.rerank_min = 1_001).check(1_000).is_err());
    }

    #[test]
    fn exclusion_lists_are_sorted_sets() {
        assert_eq!(exclusion_list([5, 1, 5, 3]), vec![1, 3, 5]);
        let q = Query {
            k: 1,
            exclude: &[2, 4],
        };
        assert!(q.excludes(0) && q.excludes(4) && !q.excludes(3));
    }
}
