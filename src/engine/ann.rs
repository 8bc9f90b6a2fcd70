//! Approximate search with an HNSW graph (the `usearch` crate: the C++ USearch library with
//! runtime-dispatched SIMD distances, through its official Rust binding).
//!
//! The index holds the augmented item vectors `[v, b]` under usearch's native inner-product
//! metric, and queries are `[q, 1]`, so the graph's best match is the best score `q·v + b`.
//! (The classic MIPS → L2 reduction, `[v, b, √(M² − |v|² − b²)]`, was measured first and is
//! not used: on clustered catalogues with varying norms it kept recall@10 below 0.81 at any
//! ef for all three crates compared, `benches/ann-compare/README.md`.) Row 0 (padding) is not
//! indexed.
//!
//! A search walks the graph with a filter that rejects the query's excluded rows, so they are
//! honoured exactly and never take a result slot; the `k + overfetch` candidates found are
//! re-scored exactly in f32 and the best k returned, so returned scores are exact. If the graph
//! yields fewer than k allowed rows (tiny catalogues, almost everything excluded) the query
//! falls back to scoring every allowed row.
//!
//! Small catalogues (fewer items than [`AnnParams::full_scan_below`]) get no graph: every query
//! is answered by the exact engine's blocked scan, which is faster there and exact (Qdrant's
//! `full_scan_threshold` is the same idea). A graph walk under inner product can also miss a
//! top row outright on a tiny, clustered catalogue, which a scan never does.
//!
//! The build runs on a dedicated thread pool at lowered priority; it happens at model load,
//! before the version is swapped in.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::contract::{rerank, Engine, EngineError, EngineKind, Query};
use super::exact::Exact;
use super::matrix::ItemMatrix;

/// Concurrent searchers the index reserves state for (usearch refuses, rather than queues, a
/// search beyond the reserved number): inference threads of one model plus offline callers.
const SEARCH_SLOTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnParams {
    /// Links per node and layer (HNSW's M, usearch's `connectivity`); 4..=64.
    pub m: usize,
    /// Candidate list size while building (`expansion_add`).
    pub ef_construction: usize,
    /// Candidate list size while searching (`expansion_search`; usearch uses
    /// `max(ef_search, k + overfetch)`). 32 halves the search cost of 64 and still gave
    /// recall@10 ≥ 0.99 against exact on the 100k clustered catalogue (test below and
    /// `benches/ann-compare/README.md`); raise it per model in the manifest for harder data.
    pub ef_search: usize,
    /// Candidates fetched beyond k and re-ranked exactly.
    pub overfetch: usize,
    /// Threads for the build (0 = one per core).
    pub build_threads: usize,
    /// Catalogues with fewer items than this are scanned exactly instead of indexed (0 = always
    /// build the graph). The default is where the graph starts to beat the scan at batch 1:
    /// `DISTILREC_BENCH_SIZES=1000,3000,10000 cargo bench --bench engines -- engine/` measured
    /// scan 6.2 / 18.4 / 75 µs against graph 10.8 / 13.0 / 9.3 µs per query (d 64); in batches
    /// of 32 the scan stays ahead per query up to ~6k items.
    pub full_scan_below: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            m: 16,
            ef_construction: 128,
            ef_search: 32,
            overfetch: 10,
            build_threads: 0,
            full_scan_below: FULL_SCAN_BELOW,
        }
    }
}

/// Default of [`AnnParams::full_scan_below`].
pub const FULL_SCAN_BELOW: usize = 2_000;

impl AnnParams {
    /// Every setting within its range: `m` 4..=64, `ef_*` up to [`super::contract::MAX_EF`],
    /// `overfetch` up to the catalogue, `build_threads` up to the CPUs available.
    pub fn check(&self, n_rows: usize) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Params(format!("ann: {m}")));
        if !(4..=64).contains(&self.m) {
            return bad(format!("m {} is outside 4..=64", self.m));
        }
        if self.ef_construction < self.m || self.ef_construction > super::contract::MAX_EF {
            return bad(format!(
                "ef_construction {} is outside m ({})..={}",
                self.ef_construction,
                self.m,
                super::contract::MAX_EF
            ));
        }
        if !(1..=super::contract::MAX_EF).contains(&self.ef_search) {
            return bad(format!(
                "ef_search {} is outside 1..={}",
                self.ef_search,
                super::contract::MAX_EF
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.build_threads > cpus {
            return bad(format!(
                "build_threads {} is more than the {cpus} CPUs available (0 = all of them)",
                self.build_threads
            ));
        }
        super::contract::at_most_rows(
            "ann.overfetch",
            self.overfetch,
            AnnParams::default().overfetch,
            n_rows,
        )
    }
}

pub struct Ann {
    items: Arc<ItemMatrix>,
    search: Search,
    params: AnnParams,
    build_seconds: f64,
}

enum Search {
    Graph(Index),
    /// Below [`AnnParams::full_scan_below`]: the exact blocked scan.
    Scan(Exact),
}

fn usearch_error(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Build(format!("{what}: {e}"))
}

impl Ann {
    pub fn build(items: Arc<ItemMatrix>, params: AnnParams) -> Result<Self, EngineError> {
        params.check(items.n_rows())?;
        let start = Instant::now();
        if items.n_rows() - 1 < params.full_scan_below {
            return Ok(Ann {
                search: Search::Scan(Exact::new(Arc::clone(&items))),
                items,
                params,
                build_seconds: start.elapsed().as_secs_f64(),
            });
        }
        let dim = items.dim();
        let threads = match params.build_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let index = Index::new(&IndexOptions {
            dimensions: dim + 1,
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: params.m,
            expansion_add: params.ef_construction,
            expansion_search: params.ef_search,
            multi: false,
        })
        .map_err(|e| usearch_error("creating the index", e))?;
        index
            .reserve_capacity_and_threads(items.n_rows(), threads.max(SEARCH_SLOTS))
            .map_err(|e| usearch_error("reserving the index", e))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ann-build-{i}"))
            .start_handler(|_| crate::os::lower_this_threads_priority())
            .build()
            .map_err(|e| usearch_error("starting the build threads", e))?;
        let added: Result<(), EngineError> = pool.install(|| {
            use rayon::prelude::*;
            (1..items.n_rows()).into_par_iter().try_for_each_init(
                || Vec::with_capacity(dim + 1),
                |v, row| {
                    v.clear();
                    v.extend_from_slice(items.row(row));
                    v.push(items.bias()[row]);
                    index
                        .add(row as u64, v.as_slice())
                        .map_err(|e| usearch_error("adding a vector", e))
                },
            )
        });
        added?;
        let build_seconds = start.elapsed().as_secs_f64();
        tracing::debug!(rows = items.n_rows() - 1, build_seconds, "ANN index built");
        Ok(Ann {
            items,
            search: Search::Graph(index),
            params,
            build_seconds,
        })
    }

    pub fn build_seconds(&self) -> f64 {
        self.build_seconds
    }

    /// Whether queries walk an HNSW graph (false: the catalogue is scanned exactly).
    pub fn has_graph(&self) -> bool {
        matches!(self.search, Search::Graph(_))
    }

    fn search_one(
        &self,
        index: &Index,
        query: &[f32],
        aug: &mut Vec<f32>,
        q: &Query<'_>,
    ) -> Vec<(u32, f32)> {
        if q.k == 0 {
            return Vec::new();
        }
        aug.clear();
        aug.extend_from_slice(query);
        aug.push(1.0);
        let want =
            q.k.saturating_add(self.params.overfetch)
                .min(self.items.n_rows());
        let found = index.filtered_search(aug.as_slice(), want, |key| !q.excludes(key as u32));
        let best = match found {
            Ok(m) => rerank(&self.items, query, q, m.keys.iter().map(|&k| k as u32)),
            Err(e) => {
                tracing::warn!(error = %e, "ANN search failed; answering exactly");
                Vec::new()
            }
        };
        let allowed = self.items.n_rows() - 1 - q.exclude.iter().filter(|&&r| r != 0).count();
        if best.len() < q.k.min(allowed) {
            // Rare (tiny catalogues, almost everything excluded): score every allowed row
            // rather than keep a second, GEMM-friendly copy of the items as `Exact` does.
            return rerank(&self.items, query, q, 1..self.items.n_rows() as u32);
        }
        best
    }
}

impl Engine for Ann {
    fn kind(&self) -> EngineKind {
        EngineKind::Ann
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        let index = match &self.search {
            Search::Graph(index) => index,
            Search::Scan(exact) => return exact.search(queries, requests),
        };
        let dim = self.items.dim();
        assert_eq!(
            queries.len(),
            requests.len() * dim,
            "one query vector per request"
        );
        let mut aug = Vec::with_capacity(dim + 1);
        queries
            .chunks_exact(dim)
            .zip(requests)
            .map(|(query, q)| self.search_one(index, query, &mut aug, q))
            .collect()
    }

    fn extra_bytes(&self) -> usize {
        match &self.search {
            Search::Graph(index) => index.memory_usage(),
            Search::Scan(exact) => exact.extra_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// The defaults, with a graph at any catalogue size, built on one thread (a parallel build
    /// inserts in a different order each run, so the graph and its recall would vary).
    fn graph() -> AnnParams {
        AnnParams {
            full_scan_below: 0,
            build_threads: 1,
            ..AnnParams::default()
        }
    }

    #[test]
    fn exclusions_are_exact_and_scores_are_exact() {
        let items = Arc::new(random_matrix(3000, 16, true, 21));
        let e = Ann::build(Arc::clone(&items), graph()).unwrap();
        assert!(e.has_graph());
        let mean = approximate_recall(&e, &items, 30, 22);
        assert!(mean >= 0.95, "recall {mean}");
    }

    #[test]
    fn excluding_almost_everything_still_answers_exactly() {
        let items = Arc::new(random_matrix(40, 4, false, 2));
        let e = Ann::build(Arc::clone(&items), graph()).unwrap();
        let ex: Vec<u32> = (1..37).collect();
        let q = Query {
            k: 10,
            exclude: &ex,
        };
        let query = random_queries(1, 4, 3);
        let got = e.search(&query, &[q]);
        assert_eq!(got[0], brute_force(&items, &query, &q));
    }

    #[test]
    fn a_catalogue_below_the_threshold_is_scanned_exactly() {
        let items = Arc::new(random_matrix(200, 8, true, 5));
        let e = Ann::build(Arc::clone(&items), AnnParams::default()).unwrap();
        assert!(!e.has_graph());
        let (ex, ks) = random_requests(40, 200, 6);
        let queries = random_queries(40, 8, 7);
        let reqs: Vec<Query> = ex
            .iter()
            .zip(&ks)
            .map(|(e, &k)| Query { k, exclude: e })
            .collect();
        assert_exact(&items, &queries, &reqs, &e.search(&queries, &reqs));
        let at = AnnParams {
            full_scan_below: 199,
            ..AnnParams::default()
        };
        assert!(
            Ann::build(items, at).unwrap().has_graph(),
            "199 items get a graph at 199"
        );
    }

    /// The acceptance check of issue 13: recall@10 of ANN against exact ≥ 0.95 on a 100k-item
    /// clustered catalogue (d = 64) with history-sized exclusions.
    #[test]
    fn recall_at_10_on_a_100k_clustered_catalogue() {
        use crate::engine::synthetic::{clustered_items, clustered_queries};
        let (n_rows, dim, clusters) = (100_001, 64, 256);
        let items = Arc::new(clustered_items(n_rows, dim, clusters, 1));
        let ann = Ann::build(Arc::clone(&items), AnnParams::default()).unwrap();
        let exact = Exact::new(Arc::clone(&items));
        let n = 200;
        let queries = clustered_queries(n, dim, clusters, 1);
        let (ex, _) = random_requests(n, n_rows, 2);
        let reqs: Vec<Query> = ex.iter().map(|e| Query { k: 10, exclude: e }).collect();
        let want = exact.search(&queries, &reqs);
        let got = ann.search(&queries, &reqs);
        let mean: f64 = got
            .iter()
            .zip(&want)
            .map(|(g, w)| recall(g, w))
            .sum::<f64>()
            / n as f64;
        eprintln!(
            "ANN recall@10 vs exact on 100k clustered items: {mean:.4} (build {:.1} s)",
            ann.build_seconds()
        );
        assert!(mean >= 0.95, "recall@10 {mean}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        let items = Arc::new(random_matrix(10, 2, false, 2));
        for p in [
            AnnParams {
                m: 300,
                ..AnnParams::default()
            },
            AnnParams {
                m: 2,
                ..AnnParams::default()
            },
            AnnParams {
                ef_search: 0,
                ..AnnParams::default()
            },
        ] {
            assert!(Ann::build(Arc::clone(&items), p).is_err());
        }
    }
}
