//! The model families as plain weights: shapes, checks, parameter counts, seeded random
//! instances for benchmarks, and [`ModelWeights::score_reference`], the contract's computation
//! in plain Rust that tests check every exported graph against.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::bundle::Architecture;
use crate::engine::ItemMatrix;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
        }
    }

    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// One fully connected layer, `y = x·w + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub n_in: usize,
    pub n_out: usize,
    /// `[n_in, n_out]`, row-major.
    pub w: Vec<f32>,
    /// `[n_out]`.
    pub b: Vec<f32>,
}

/// `mean_mlp`: masked mean of history embeddings → MLP → dot with every item.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanMlpWeights {
    pub n_rows: usize,
    pub dim: usize,
    /// `[n_rows, dim]`; row 0 is masked out, so its value does not matter.
    pub embedding: Vec<f32>,
    pub layers: Vec<Dense>,
    pub activation: Activation,
    /// `[d_last, n_rows]`. Stored transposed because tract repacks a transposed right-hand side
    /// on every call for large catalogues (see NOTES).
    pub item_matrix_t: Vec<f32>,
    /// `[n_rows]`.
    pub item_bias: Vec<f32>,
}

/// `ease`: scores = Σ over the history of rows of the item-item matrix `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct EaseWeights {
    pub n_rows: usize,
    /// `[n_rows, n_rows]`, row-major; row 0 and the diagonal are zero.
    pub b: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelWeights {
    MeanMlp(MeanMlpWeights),
    Ease(EaseWeights),
}

/// Weights whose buffers do not match their declared dimensions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inconsistent weights: {0}")]
pub struct ShapeError(pub String);

impl MeanMlpWeights {
    /// Output width of the MLP (the item-matrix dimension).
    pub fn d_last(&self) -> usize {
        self.layers.last().map_or(self.dim, |l| l.n_out)
    }

    /// Seeded random weights with the same shapes (and so the same inference cost) as trained
    /// ones: Glorot-uniform layers, embeddings scaled by 1/√dim so scores stay O(1).
    pub fn random(n_rows: usize, dim: usize, hidden: &[usize], seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(-scale..scale)).collect()
        };
        let emb_scale = 1.0 / (dim.max(1) as f32).sqrt();
        let embedding = uniform(n_rows * dim, emb_scale);
        let mut layers = Vec::with_capacity(hidden.len());
        let mut n_in = dim;
        for &n_out in hidden {
            let scale = (6.0 / (n_in + n_out).max(1) as f32).sqrt();
            layers.push(Dense {
                n_in,
                n_out,
                w: uniform(n_in * n_out, scale),
                b: uniform(n_out, 0.1),
            });
            n_in = n_out;
        }
        let item_scale = 1.0 / (n_in.max(1) as f32).sqrt();
        let item_matrix_t = uniform(n_in * n_rows, item_scale);
        let item_bias = uniform(n_rows, 0.1);
        MeanMlpWeights {
            n_rows,
            dim,
            embedding,
            layers,
            activation: Activation::Relu,
            item_matrix_t,
            item_bias,
        }
    }

    pub fn check_shapes(&self) -> Result<(), ShapeError> {
        let fail = |m: String| Err(ShapeError(m));
        if self.n_rows == 0 || self.dim == 0 {
            return fail(format!(
                "n_rows {} and dim {} must be positive",
                self.n_rows, self.dim
            ));
        }
        if self.embedding.len() != self.n_rows * self.dim {
            return fail(format!(
                "embedding has {} values, expected n_rows·dim = {}",
                self.embedding.len(),
                self.n_rows * self.dim
            ));
        }
        let mut n_in = self.dim;
        for (i, l) in self.layers.iter().enumerate() {
            if l.n_in != n_in
                || l.w.len() != l.n_in * l.n_out
                || l.b.len() != l.n_out
                || l.n_out == 0
            {
                return fail(format!(
                    "layer {i}: n_in {} (expected {n_in}), n_out {}, w {} values, b {} values",
                    l.n_in,
                    l.n_out,
                    l.w.len(),
                    l.b.len()
                ));
            }
            n_in = l.n_out;
        }
        if self.item_matrix_t.len() != n_in * self.n_rows {
            return fail(format!(
                "item_matrix_t has {} values, expected d_last·n_rows = {}",
                self.item_matrix_t.len(),
                n_in * self.n_rows
            ));
        }
        if self.item_bias.len() != self.n_rows {
            return fail(format!(
                "item_bias has {} values, expected n_rows = {}",
                self.item_bias.len(),
                self.n_rows
            ));
        }
        Ok(())
    }

    /// The item side as data: `[n_rows, d_last]` vectors (the transpose of `item_matrix_t`)
    /// and the item bias.
    ///
    /// # Panics
    /// If the weights are inconsistent or not finite.
    pub fn item_matrix(&self) -> ItemMatrix {
        let (d, n) = (self.d_last(), self.n_rows);
        let mut v = vec![0.0f32; n * d];
        for k in 0..d {
            for (r, &x) in self.item_matrix_t[k * n..(k + 1) * n].iter().enumerate() {
                v[r * d + k] = x;
            }
        }
        ItemMatrix::new(n, d, v, Some(self.item_bias.clone()))
            .unwrap_or_else(|e| panic!("item_matrix of inconsistent weights: {e}"))
    }

    /// The user vector before the item dot products (reference forward pass in plain Rust).
    pub fn user_vector(&self, history: &[u32]) -> Vec<f32> {
        let d = self.dim;
        let mut u = vec![0.0f32; d];
        let mut count = 0usize;
        for &h in history.iter().filter(|&&h| h != 0) {
            let row = &self.embedding[h as usize * d..(h as usize + 1) * d];
            u.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            count += 1;
        }
        let denom = count.max(1) as f32;
        u.iter_mut().for_each(|a| *a /= denom);
        for l in &self.layers {
            let mut out = l.b.clone();
            for (i, &x) in u.iter().enumerate() {
                let w = &l.w[i * l.n_out..(i + 1) * l.n_out];
                out.iter_mut().zip(w).for_each(|(o, w)| *o += x * w);
            }
            out.iter_mut().for_each(|o| *o = self.activation.apply(*o));
            u = out;
        }
        u
    }
}

impl EaseWeights {
    /// Seeded random item-item matrix with EASE's zero row 0 and zero diagonal. Dense
    /// `n_rows²` floats: meant for small catalogues only (100k rows would be 40 GB).
    pub fn random(n_rows: usize, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let scale = 1.0 / (n_rows.max(1) as f32).sqrt();
        let mut b = vec![0.0f32; n_rows * n_rows];
        for i in 1..n_rows {
            for j in 0..n_rows {
                if i != j {
                    b[i * n_rows + j] = rng.random_range(-scale..scale);
                }
            }
        }
        EaseWeights { n_rows, b }
    }

    pub fn check_shapes(&self) -> Result<(), ShapeError> {
        if self.n_rows == 0 || self.b.len() != self.n_rows * self.n_rows {
            return Err(ShapeError(format!(
                "b has {} values, expected n_rows² = {}",
                self.b.len(),
                self.n_rows * self.n_rows
            )));
        }
        Ok(())
    }
}

impl ModelWeights {
    pub fn check_shapes(&self) -> Result<(), ShapeError> {
        match self {
            ModelWeights::MeanMlp(w) => w.check_shapes(),
            ModelWeights::Ease(w) => w.check_shapes(),
        }
    }

    pub fn parameter_count(&self) -> u64 {
        match self {
            ModelWeights::MeanMlp(w) => {
                let layers: usize = w.layers.iter().map(|l| l.w.len() + l.b.len()).sum();
                (w.embedding.len() + layers + w.item_matrix_t.len() + w.item_bias.len()) as u64
            }
            ModelWeights::Ease(w) => w.b.len() as u64,
        }
    }

    pub fn architecture(&self) -> Architecture {
        match self {
            ModelWeights::MeanMlp(w) => {
                let hidden: Vec<usize> = w.layers.iter().map(|l| l.n_out).collect();
                Architecture {
                    kind: "mean_mlp".into(),
                    description: format!(
                        "masked mean of {}-d history embeddings → MLP {:?} ({}) → dot with a \
                         [{}, {}] item matrix + item bias",
                        w.dim,
                        hidden,
                        w.activation.name(),
                        w.d_last(),
                        w.n_rows
                    ),
                    embedding_dim: Some(w.dim),
                    hidden,
                    activation: Some(w.activation.name().into()),
                }
            }
            ModelWeights::Ease(w) => Architecture {
                kind: "ease".into(),
                description: format!(
                    "sum over the history of rows of a [{0}, {0}] item-item matrix (EASE)",
                    w.n_rows
                ),
                embedding_dim: None,
                hidden: vec![],
                activation: None,
            },
        }
    }

    pub fn n_rows(&self) -> usize {
        match self {
            ModelWeights::MeanMlp(w) => w.n_rows,
            ModelWeights::Ease(w) => w.n_rows,
        }
    }

    /// The contract's forward pass for one history, in plain Rust (slow; for parity tests).
    ///
    /// # Panics
    /// If a history row is `>= n_rows`.
    pub fn score_reference(&self, history: &[u32]) -> Vec<f32> {
        let n = self.n_rows();
        assert!(
            history.iter().all(|&h| (h as usize) < n),
            "history row out of range (n_rows = {n})"
        );
        match self {
            ModelWeights::MeanMlp(w) => {
                let u = w.user_vector(history);
                let mut scores = w.item_bias.clone();
                for (k, &x) in u.iter().enumerate() {
                    let row = &w.item_matrix_t[k * n..(k + 1) * n];
                    scores.iter_mut().zip(row).for_each(|(s, e)| *s += x * e);
                }
                scores
            }
            ModelWeights::Ease(w) => {
                let mut scores = vec![0.0f32; n];
                for &h in history.iter().filter(|&&h| h != 0) {
                    let row = &w.b[h as usize * n..(h as usize + 1) * n];
                    scores.iter_mut().zip(row).for_each(|(s, b)| *s += b);
                }
                scores
            }
        }
    }
}
