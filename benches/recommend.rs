//! In-process recommend path (history → one model call → masking + top-k, or for a two-tower
//! bundle user encoder → engine search), exactly the code the server's inference threads run,
//! for the default student and teacher bundles at batch 1, 4 and 32, and a two-tower student's
//! user encoder alone. Per-request cost = reported time / batch size.
//!
//! Bundles: the newest version of `$DISTILREC_BENCH_STUDENT` (default `ml100k`) and
//! `$DISTILREC_BENCH_TEACHER` (default `ml100k-teacher`) under `$DISTILREC_MODELS` (default
//! `models`). When one is missing, a synthetic bundle of the same cost is used instead
//! (MovieLens-100K size: 1,683 rows; student mean-MLP d = 32, hidden [64]; teacher EASE).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use distilrec::bundle::{list_versions, Bundle, Role};
use distilrec::engine::ItemSource;
use distilrec::onnx::{write_synthetic_bundle, EaseWeights, MeanMlpWeights, ModelWeights};
use distilrec::serving::{build_scoring, rank, RankRequest, Scoring};

const ML100K_ROWS: usize = 1683;
const HISTORY_LEN: usize = 50;
const K: usize = 10;

fn load(repo: &Path, name: &str, fallback: impl FnOnce() -> ModelWeights) -> (String, Bundle) {
    if let Some(v) = list_versions(repo, name).last() {
        let dir = repo.join(name).join(v.to_string());
        if let Ok(b) = Bundle::load(&dir) {
            return (format!("{name}/v{v}"), b);
        }
    }
    let scratch = std::env::temp_dir().join(format!("distilrec-bench-{}", std::process::id()));
    let dir: PathBuf = write_synthetic_bundle(&scratch, name, &fallback(), Role::Student)
        .expect("synthetic bundle writes");
    let bundle = Bundle::load(&dir).expect("synthetic bundle loads");
    let _ = std::fs::remove_dir_all(&scratch);
    (format!("{name}-synthetic"), bundle)
}

fn histories(n_rows: usize, batch: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..HISTORY_LEN)
                .map(|j| ((b * 7919 + j * 104_729) % (n_rows - 1) + 1) as u32)
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let repo = PathBuf::from(std::env::var("DISTILREC_MODELS").unwrap_or_else(|_| "models".into()));
    let student = std::env::var("DISTILREC_BENCH_STUDENT").unwrap_or_else(|_| "ml100k".into());
    let teacher =
        std::env::var("DISTILREC_BENCH_TEACHER").unwrap_or_else(|_| "ml100k-teacher".into());
    let bundles = [
        load(&repo, &student, || {
            ModelWeights::MeanMlp(MeanMlpWeights::random(ML100K_ROWS, 32, &[64], 1))
        }),
        load(&repo, &teacher, || {
            ModelWeights::Ease(EaseWeights::random(ML100K_ROWS, 2))
        }),
    ];
    let mut group = c.benchmark_group("recommend");
    for (label, bundle) in &bundles {
        let n_rows = bundle.manifest.n_rows;
        let scorer = build_scoring(
            &bundle.manifest,
            &bundle.model_bytes,
            bundle
                .item_matrix
                .clone()
                .map(|m| ItemSource::Matrix(std::sync::Arc::new(m))),
            None,
            None,
            &Default::default(),
        )
        .expect("bundle model loads");
        for batch in [1usize, 4, 32] {
            let hs = histories(n_rows, batch);
            let requests: Vec<RankRequest<'_>> = hs
                .iter()
                .map(|h| RankRequest {
                    history: h,
                    exclude: &[],
                    k: K,
                })
                .collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(label.as_str(), batch),
                &requests,
                |b, r| b.iter(|| rank(&scorer, r).expect("inference succeeds")),
            );
            // A two-tower model's share of that spent in the ONNX user encoder alone.
            if let Scoring::TwoTower { encoder, .. } = &scorer {
                let refs: Vec<&[u32]> = hs.iter().map(Vec::as_slice).collect();
                group.bench_with_input(
                    BenchmarkId::new(format!("{label}/encoder"), batch),
                    &refs,
                    |b, r| b.iter(|| encoder.score_batch(r).expect("inference succeeds")),
                );
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Plots need system fonts that minimal images lack; the numbers are in the text output.
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);
