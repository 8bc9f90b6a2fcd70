//! Scoring engines at catalogue scale, in process (no HTTP): clustered synthetic catalogues of
//! 100k and 1M items (d = 64, the default student's output width), each engine at batch 1 and
//! 32, queries with a 50-row history excluded; and, as the baseline they replace, the format-1
//! path (one tract call scoring every row, then top-k) for the student and the MLP teacher at
//! 100k. Per-request cost = reported time / batch size. Index build times and memory are printed
//! before the timings.
//!
//! `int8-simsimd` is the int8 engine's algorithm (quantised scan of `max(4k, 64)` candidates,
//! exact f32 re-rank) with the scan done row by row by the `simsimd` crate's i8 dot product:
//! the measured alternative to the engine's hand-written kernel (src/engine/int8.rs).
//!
//!     cargo bench --bench engines                       # both sizes, every engine
//!     DISTILREC_BENCH_SIZES=100000 cargo bench --bench engines
//!     DISTILREC_BENCH_ENGINES=exact,int8 cargo bench --bench engines -- engine/
//!
//! `DISTILREC_BENCH_ENGINES` (names of `EngineKind`, `int8-simsimd`, `full_scores`) builds only
//! those: a criterion filter skips timings, not the builds (the ANN graph of 1M items takes
//! minutes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use distilrec::engine::synthetic::{clustered_items, clustered_queries};
use distilrec::engine::{
    self, exclusion_list, quantise_rows, EngineKind, EngineParams, ItemMatrix, Query,
};
use distilrec::onnx::{MeanMlpWeights, ModelWeights, OnnxScorer};
use distilrec::serving::{rank, RankRequest, Scoring};
use distilrec::topk::TopK;
use simsimd::SpatialSimilarity;

const DIM: usize = 64;
const CLUSTERS: usize = 256;
const HISTORY_LEN: usize = 50;
const K: usize = 10;

fn histories(n_rows: usize, batch: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..HISTORY_LEN)
                .map(|j| ((b * 7919 + j * 104_729) % (n_rows - 1) + 1) as u32)
                .collect()
        })
        .collect()
}

fn sizes() -> Vec<usize> {
    std::env::var("DISTILREC_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000])
}

/// Engines to build and time: `DISTILREC_BENCH_ENGINES` (comma-separated), default all.
fn selected(name: &str) -> bool {
    std::env::var("DISTILREC_BENCH_ENGINES")
        .map_or(true, |s| s.split(',').any(|x| x.trim() == name))
}

/// The int8 engine's search with the scan done per row by `simsimd`'s i8 dot product: row-major
/// codes (as `items.i8` stores them), one call per row and query, a streaming top-k of
/// `max(4k, 64)` candidates, then the exact f32 re-rank.
struct SimsimdInt8 {
    items: Arc<ItemMatrix>,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl SimsimdInt8 {
    fn new(items: Arc<ItemMatrix>) -> Self {
        let (codes, scales) = quantise_rows(items.vectors(), items.dim());
        SimsimdInt8 {
            items,
            codes,
            scales,
        }
    }

    fn bytes(&self) -> usize {
        self.codes.len() + 4 * self.scales.len() + self.items.bytes()
    }

    fn search(&self, queries: &[f32], requests: &[Query<'_>]) -> Vec<Vec<(u32, f32)>> {
        let dim = self.items.dim();
        let (qcodes, qscales) = quantise_rows(queries, dim);
        let bias = self.items.bias();
        let mut accs: Vec<TopK> = requests
            .iter()
            .map(|q| TopK::new((4 * q.k).max(64)))
            .collect();
        for (r, c) in self.codes.chunks_exact(dim).enumerate().skip(1) {
            for (qi, acc) in accs.iter_mut().enumerate() {
                let qc = &qcodes[qi * dim..(qi + 1) * dim];
                let dot = i8::dot(c, qc).expect("equal lengths");
                let approx = dot as f32 * (self.scales[r] * qscales[qi]) + bias[r];
                if acc.admits(approx) && !requests[qi].excludes(r as u32) {
                    acc.push(r as u32, approx);
                }
            }
        }
        accs.into_iter()
            .zip(requests)
            .zip(queries.chunks_exact(dim))
            .map(|((acc, q), query)| {
                let mut best = TopK::new(q.k);
                for (row, _) in acc.into_sorted() {
                    best.push(row, self.items.score(query, row as usize));
                }
                best.into_sorted()
            })
            .collect()
    }
}

fn label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1000)
    }
}

/// Times `search` at batch 1 and 32 over the first queries and their exclusions.
fn bench_batches(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    queries: &[f32],
    excluded: &[Vec<u32>],
    search: impl Fn(&[f32], &[Query<'_>]) -> Vec<Vec<(u32, f32)>>,
) {
    for batch in [1usize, 32] {
        let reqs: Vec<Query<'_>> = excluded[..batch]
            .iter()
            .map(|ex| Query { k: K, exclude: ex })
            .collect();
        let q = &queries[..batch * DIM];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new(name, batch), &reqs, |b, reqs| {
            b.iter(|| search(q, reqs))
        });
    }
}

fn bench_engines(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for n_items in sizes() {
        let n_rows = n_items + 1;
        let items = Arc::new(clustered_items(n_rows, DIM, CLUSTERS, 1));
        let queries = clustered_queries(32, DIM, CLUSTERS, 1);
        let hs = histories(n_rows, 32);
        let excluded: Vec<Vec<u32>> = hs
            .iter()
            .map(|h| exclusion_list(h.iter().copied()))
            .collect();
        for kind in EngineKind::ALL {
            if !selected(kind.name()) {
                continue;
            }
            let started = Instant::now();
            let e = engine::build(kind, Arc::clone(&items), &EngineParams::default())
                .expect("engine builds");
            println!(
                "build {kind} {}: {:.2} s, matrix {} MB, engine holds {} MB",
                label(n_items),
                started.elapsed().as_secs_f64(),
                items.bytes() >> 20,
                e.bytes() >> 20
            );
            let name = format!("{kind}/{}", label(n_items));
            bench_batches(&mut group, &name, &queries, &excluded, |q, r| {
                e.search(q, r)
            });
        }
        if selected("int8-simsimd") {
            let started = Instant::now();
            let e = SimsimdInt8::new(Arc::clone(&items));
            println!(
                "build int8-simsimd {}: {:.2} s, engine holds {} MB",
                label(n_items),
                started.elapsed().as_secs_f64(),
                e.bytes() >> 20
            );
            let name = format!("int8-simsimd/{}", label(n_items));
            bench_batches(&mut group, &name, &queries, &excluded, |q, r| {
                e.search(q, r)
            });
        }
    }
    group.finish();
}

/// The format-1 path the engines replace: tract scores every row, then masking + top-k.
fn bench_full_scores(c: &mut Criterion) {
    if !selected("full_scores") {
        return;
    }
    let mut group = c.benchmark_group("full_scores");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    let n_rows = 100_001;
    for (name, dim, hidden) in [
        ("student", 64usize, vec![64usize]),
        ("teacher", 256, vec![512, 256]),
    ] {
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(n_rows, dim, &hidden, 3));
        let scoring =
            Scoring::FullScores(OnnxScorer::load(&w.to_onnx(), n_rows).expect("model loads"));
        drop(w);
        for batch in [1usize, 32] {
            let hs = histories(n_rows, batch);
            let reqs: Vec<RankRequest<'_>> = hs
                .iter()
                .map(|h| RankRequest {
                    history: h,
                    exclude: &[],
                    k: K,
                })
                .collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/100k"), batch),
                &reqs,
                |b, r| b.iter(|| rank(&scoring, r).expect("inference succeeds")),
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_engines, bench_full_scores
}
criterion_main!(benches);
