//! Scoring engines at catalogue scale, in process (no HTTP): clustered synthetic catalogues of
//! 100k and 1M items (d = 64, the default student's output width), each engine at batch 1 and
//! 32, queries with a 50-row history excluded; and, as the baseline they replace, the format-1
//! path (one tract call scoring every row, then top-k) for the student and the MLP teacher at
//! 100k. Per-request cost = reported time / batch size. Index build times and memory are printed
//! before the timings.
//!
//!     cargo bench --bench engines                       # both sizes
//!     DISTILREC_BENCH_SIZES=100000 cargo bench --bench engines

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use distilrec::engine::synthetic::{clustered_items, clustered_queries};
use distilrec::engine::{self, exclusion_list, EngineKind, EngineParams, Query};
use distilrec::onnx::{MeanMlpWeights, ModelWeights, OnnxScorer};
use distilrec::serving::{rank, RankRequest, Scoring};

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

fn label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1000)
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
            for batch in [1usize, 32] {
                let reqs: Vec<Query<'_>> = excluded[..batch]
                    .iter()
                    .map(|ex| Query { k: K, exclude: ex })
                    .collect();
                let q = &queries[..batch * DIM];
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_with_input(
                    BenchmarkId::new(format!("{kind}/{}", label(n_items)), batch),
                    &reqs,
                    |b, reqs| b.iter(|| e.search(q, reqs)),
                );
            }
        }
    }
    group.finish();
}

/// The format-1 path the engines replace: tract scores every row, then masking + top-k.
fn bench_full_scores(c: &mut Criterion) {
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
