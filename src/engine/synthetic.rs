//! Clustered synthetic catalogues for benchmarks and tests. Real item embeddings are not
//! uniform: they bunch around topics and their norms vary (popular items have larger ones).
//! Uniform random vectors in 64-d are the worst case for graph indexes and would understate
//! what an ANN engine achieves on real data; these are closer to trained embeddings.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::matrix::ItemMatrix;

/// Standard normal via Box–Muller (rand 0.9 without rand_distr).
fn normal(rng: &mut SmallRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn centres(n_clusters: usize, dim: usize, rng: &mut SmallRng) -> Vec<f32> {
    (0..n_clusters * dim).map(|_| normal(rng)).collect()
}

/// `n_rows` item vectors (row 0 included, as padding) around `n_clusters` Gaussian centres, with
/// a log-normal norm scale per item and a small bias; deterministic for a seed.
pub fn clustered_items(n_rows: usize, dim: usize, n_clusters: usize, seed: u64) -> ItemMatrix {
    let mut rng = SmallRng::seed_from_u64(seed);
    let c = centres(n_clusters, dim, &mut rng);
    let inv = 1.0 / (dim as f32).sqrt();
    let mut v = Vec::with_capacity(n_rows * dim);
    let mut bias = Vec::with_capacity(n_rows);
    for _ in 0..n_rows {
        let k = rng.random_range(0..n_clusters);
        let scale = (0.3 * normal(&mut rng)).exp();
        for d in 0..dim {
            v.push(scale * inv * (c[k * dim + d] + 0.5 * normal(&mut rng)));
        }
        bias.push(0.1 * normal(&mut rng));
    }
    ItemMatrix::new(n_rows, dim, v, Some(bias)).expect("generated values are finite")
}

/// `n` query (user) vectors drawn around the same centres as [`clustered_items`] with the same
/// `seed` and `n_clusters` (a user near a topic), row-major `[n, dim]`.
pub fn clustered_queries(n: usize, dim: usize, n_clusters: usize, seed: u64) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let c = centres(n_clusters, dim, &mut rng);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let k = rng.random_range(0..n_clusters);
        for d in 0..dim {
            out.push(c[k * dim + d] + 0.7 * normal(&mut rng));
        }
    }
    out
}
