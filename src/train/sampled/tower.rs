//! The `mean_mlp` user tower trained with a sampled softmax, with its gradients written out by
//! hand so that a step touches only the rows it uses.
//!
//! Why not candle here: candle's backward of a gather allocates a dense gradient for the whole
//! embedding table on every step and AdamW then updates every row, so a step costs
//! O(n_items · d) however small the batch — the dense trainer's wall at 10^5 items. Here a step
//! costs O(batch · (history + targets + negatives) · d): the history rows it read, the target
//! and negative item rows it scored, and the dense MLP layers. Embedding tables use lazy Adam
//! (moments of a row move only when the row has a gradient, as TF's LazyAdam); the products go
//! through `gemm` (see `linalg.rs`). `tower::tests` checks every gradient against finite
//! differences and the sampled loss against the full softmax.
//!
//! The model is the serving contract's `mean_mlp`: user = MLP(mean of history embeddings),
//! score(item) = user · items[item] + bias[item]; [`Tower::to_weights`] gives the exportable
//! weights.

use rand::rngs::StdRng;
use rand::Rng;

use super::linalg::{axpy, dot, matmul};
use super::sampler::Negatives;
use crate::onnx::{Activation, Dense, MeanMlpWeights};
use crate::train::model::MlpSpec;

/// One user's training example.
pub struct Example {
    /// Item indices fed to the tower (the history after input dropout).
    pub input: Vec<u32>,
    /// Sampled-softmax targets and their weights (true items, and ranking-KD items).
    pub targets: Vec<(u32, f32)>,
    /// Logit KD: candidate items and the teacher's softened probabilities over them (sum 1).
    pub kd: Vec<(u32, f32)>,
}

/// Logit distillation's temperature T and weight λ: the term is λ·T²·KL(p_teacher ‖ q_student)
/// over each example's `kd` items, student logits divided by T.
#[derive(Debug, Clone, Copy)]
pub struct KdWeight {
    pub temperature: f32,
    pub lambda: f32,
}

impl KdWeight {
    pub const NONE: KdWeight = KdWeight {
        temperature: 1.0,
        lambda: 0.0,
    };
}

/// The loss terms of one step, each averaged over the batch's users.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepLoss {
    pub ce: f64,
    pub kd: f64,
}

#[derive(Clone)]
struct Layer {
    n_in: usize,
    n_out: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Adam moments of one parameter tensor.
#[derive(Clone)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn new(n: usize) -> Self {
        Moments {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
}

/// A row-sparse gradient: a dense buffer with the list of rows written since the last update.
struct RowGrad {
    dim: usize,
    g: Vec<f32>,
    touched: Vec<u32>,
    mark: Vec<bool>,
}

impl RowGrad {
    fn new(rows: usize, dim: usize) -> Self {
        RowGrad {
            dim,
            g: vec![0.0; rows * dim],
            touched: Vec::new(),
            mark: vec![false; rows],
        }
    }

    #[inline]
    fn row(&mut self, r: u32) -> &mut [f32] {
        let ri = r as usize;
        if !self.mark[ri] {
            self.mark[ri] = true;
            self.touched.push(r);
        }
        &mut self.g[ri * self.dim..(ri + 1) * self.dim]
    }
}

/// Adam's hyper-parameters (β₁ 0.9, β₂ 0.999, ε 1e-8), decoupled weight decay (AdamW; on the
/// embedding tables only for the rows a step touches, as the moments) and step count.
#[derive(Clone)]
struct Adam {
    lr: f32,
    weight_decay: f32,
    t: i32,
}

impl Adam {
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    /// Bias-corrected step size of the current step.
    fn rate(&self) -> f32 {
        self.lr * (1.0 - Self::B2.powi(self.t)).sqrt() / (1.0 - Self::B1.powi(self.t))
    }

    /// One AdamW update; `decay` = lr · weight decay.
    #[inline]
    fn update(rate: f32, decay: f32, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for i in 0..p.len() {
            let gi = g[i];
            m[i] = Self::B1 * m[i] + (1.0 - Self::B1) * gi;
            v[i] = Self::B2 * v[i] + (1.0 - Self::B2) * gi * gi;
            p[i] -= rate * m[i] / (v[i].sqrt() + Self::EPS) + decay * p[i];
        }
    }
}

/// The trainable tower. Item index `i` is row `i` of `emb`, `items` and `bias` (the bundle's
/// padding row is added at export).
#[derive(Clone)]
pub struct Tower {
    pub n_items: usize,
    pub spec: MlpSpec,
    emb: Vec<f32>,
    layers: Vec<Layer>,
    items: Vec<f32>,
    bias: Vec<f32>,
}

/// Activations of one forward pass, kept for the backward pass.
pub struct Forward {
    rows: usize,
    /// Input of every layer and, last, the user vectors: `acts[0]` = mean history embedding
    /// `[rows, dim]`, `acts[l + 1]` = output of layer `l`.
    acts: Vec<Vec<f32>>,
}

impl Forward {
    /// The user vectors `[rows, last_dim]`.
    pub fn users(&self) -> &[f32] {
        self.acts.last().expect("at least the input")
    }
}

/// Glorot-uniform values for a `[rows, cols]` matrix.
fn xavier(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<f32> {
    uniform(rng, rows * cols, (6.0 / (rows + cols) as f64).sqrt())
}

fn uniform(rng: &mut StdRng, n: usize, a: f64) -> Vec<f32> {
    let a = a as f32;
    (0..n).map(|_| rng.random_range(-a..a)).collect()
}

impl Tower {
    /// Embedding and item rows start with variance 1/width (rows of norm ≈ 1) whatever the
    /// catalogue size: Glorot's fan-in over n_items would start them near zero at 10^4+ items,
    /// and a score that is the product of two near-zero vectors has near-zero gradients for
    /// both — small students then stayed at popularity for the whole patience window.
    pub fn new(n_items: usize, spec: MlpSpec, rng: &mut StdRng) -> Self {
        let emb = uniform(rng, n_items * spec.dim, (3.0 / spec.dim as f64).sqrt());
        let mut layers = Vec::new();
        let mut prev = spec.dim;
        for &h in &spec.hidden {
            layers.push(Layer {
                n_in: prev,
                n_out: h,
                w: xavier(rng, prev, h),
                b: vec![0.0; h],
            });
            prev = h;
        }
        let items = uniform(rng, n_items * prev, (3.0 / prev as f64).sqrt());
        Tower {
            n_items,
            emb,
            layers,
            items,
            bias: vec![0.0; n_items],
            spec,
        }
    }

    pub fn last_dim(&self) -> usize {
        self.spec.last_dim()
    }

    /// Whether every weight is finite.
    pub fn is_finite(&self) -> bool {
        let all = |v: &[f32]| v.iter().all(|x| x.is_finite());
        all(&self.emb)
            && all(&self.items)
            && all(&self.bias)
            && self.layers.iter().all(|l| all(&l.w) && all(&l.b))
    }

    pub fn item_row(&self, i: u32) -> &[f32] {
        let d = self.last_dim();
        &self.items[i as usize * d..(i as usize + 1) * d]
    }

    pub fn item_bias(&self, i: u32) -> f32 {
        self.bias[i as usize]
    }

    /// Score of item `i` for user vector `z`.
    #[inline]
    pub fn score(&self, z: &[f32], i: u32) -> f32 {
        dot(z, self.item_row(i)) + self.bias[i as usize]
    }

    /// Forward pass over the given inputs (item indices; an empty input is a zero vector, as
    /// the ONNX contract's `max(count, 1)` denominator gives).
    pub fn forward<I: AsRef<[u32]>>(&self, inputs: &[I]) -> Forward {
        let rows = inputs.len();
        let d0 = self.spec.dim;
        let mut h = vec![0f32; rows * d0];
        for (r, input) in inputs.iter().enumerate() {
            let input = input.as_ref();
            if input.is_empty() {
                continue;
            }
            let out = &mut h[r * d0..(r + 1) * d0];
            let w = 1.0 / input.len() as f32;
            for &i in input {
                axpy(out, w, &self.emb[i as usize * d0..(i as usize + 1) * d0]);
            }
        }
        let mut acts = vec![h];
        for layer in &self.layers {
            let x = acts.last().expect("at least the input");
            let mut y = vec![0f32; rows * layer.n_out];
            matmul(
                &mut y,
                x,
                &layer.w,
                (rows, layer.n_in, layer.n_out),
                false,
                false,
                false,
            );
            for row in y.chunks_mut(layer.n_out) {
                for (v, b) in row.iter_mut().zip(&layer.b) {
                    *v = activate(self.spec.activation, *v + b);
                }
            }
            acts.push(y);
        }
        Forward { rows, acts }
    }

    /// User vectors `[histories.len(), last_dim]` (no dropout).
    pub fn user_vectors(&self, histories: &[Vec<u32>]) -> Vec<f32> {
        let mut out = Vec::with_capacity(histories.len() * self.last_dim());
        for chunk in histories.chunks(1024) {
            out.extend_from_slice(self.forward(chunk).users());
        }
        out
    }

    /// The item side as the serving engines' matrix (padding row 0 added), without copying
    /// the embedding table as [`Tower::to_weights`] would.
    pub fn item_matrix(&self) -> crate::engine::ItemMatrix {
        let dl = self.last_dim();
        let mut vectors = Vec::with_capacity((self.n_items + 1) * dl);
        vectors.resize(dl, 0.0);
        vectors.extend_from_slice(&self.items);
        let mut bias = Vec::with_capacity(self.n_items + 1);
        bias.push(0.0);
        bias.extend_from_slice(&self.bias);
        crate::engine::ItemMatrix::new(self.n_items + 1, dl, vectors, Some(bias))
            .expect("a training stops before its weights stop being finite")
    }

    /// The contract's weights (padding row 0 added).
    pub fn to_weights(&self) -> MeanMlpWeights {
        let d = self.spec.dim;
        let dl = self.last_dim();
        let n_rows = self.n_items + 1;
        let mut embedding = vec![0f32; d];
        embedding.extend_from_slice(&self.emb);
        let mut item_matrix_t = vec![0f32; dl * n_rows];
        for i in 0..self.n_items {
            for k in 0..dl {
                item_matrix_t[k * n_rows + i + 1] = self.items[i * dl + k];
            }
        }
        let mut item_bias = vec![0f32];
        item_bias.extend_from_slice(&self.bias);
        MeanMlpWeights {
            n_rows,
            dim: d,
            embedding,
            layers: self
                .layers
                .iter()
                .map(|l| Dense {
                    n_in: l.n_in,
                    n_out: l.n_out,
                    w: l.w.clone(),
                    b: l.b.clone(),
                })
                .collect(),
            activation: self.spec.activation,
            item_matrix_t,
            item_bias,
        }
    }

    /// The loss of a batch and its gradient (`scale` multiplies every loss term). Returns the
    /// loss terms and leaves the gradient in `grads`.
    fn loss_and_grad(
        &self,
        batch: &[Example],
        negs: &Negatives,
        log_q: &dyn Fn(u32) -> f32,
        kd: KdWeight,
        grads: &mut Grads,
    ) -> StepLoss {
        let b = batch.len();
        let dl = self.last_dim();
        let n = negs.items.len();
        let scale = 1.0 / b.max(1) as f32;
        let fwd = self.forward(&batch.iter().map(|e| &e.input[..]).collect::<Vec<_>>());
        let z = fwd.users();

        // Shared negatives: logits [b, n] = z · items[negs]ᵀ + bias − logQ.
        let mut neg_rows = vec![0f32; n * dl];
        for (j, &i) in negs.items.iter().enumerate() {
            neg_rows[j * dl..(j + 1) * dl].copy_from_slice(self.item_row(i));
        }
        let mut logits = vec![0f32; b * n];
        matmul(&mut logits, z, &neg_rows, (b, dl, n), false, true, false);
        // Where each item sits among the negatives (accidental hits of a target are removed).
        let mut positions: std::collections::HashMap<u32, Vec<u32>, foldhash::fast::RandomState> =
            Default::default();
        for (j, &i) in negs.items.iter().enumerate() {
            positions.entry(i).or_default().push(j as u32);
        }

        let mut dz = vec![0f32; b * dl];
        let mut dneg = vec![0f32; b * n];
        let mut loss = StepLoss::default();
        for (u, ex) in batch.iter().enumerate() {
            let zu = &z[u * dl..(u + 1) * dl];
            let row = &mut logits[u * n..(u + 1) * n];
            for (l, (&i, lq)) in row.iter_mut().zip(negs.items.iter().zip(&negs.log_q)) {
                *l += self.bias[i as usize] - lq;
            }
            let dzu = &mut dz[u * dl..(u + 1) * dl];
            if !ex.targets.is_empty() {
                let pos: Vec<f32> = ex
                    .targets
                    .iter()
                    .map(|&(t, _)| self.score(zu, t) - log_q(t))
                    .collect();
                let max = row
                    .iter()
                    .chain(&pos)
                    .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
                let e: Vec<f32> = row.iter().map(|&l| (l - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                // ∂/∂negative j = e_j · (Σ_t w_t / Z_t − Σ_{t = item j} w_t / Z_t).
                let mut coef = 0f32;
                let dn = &mut dneg[u * n..(u + 1) * n];
                for (&(t, w), &s) in ex.targets.iter().zip(&pos) {
                    let hits = positions.get(&t).map_or(&[][..], Vec::as_slice);
                    let dup: f32 = hits.iter().map(|&j| e[j as usize]).sum();
                    let et = (s - max).exp();
                    let zt = (et + sum - dup).max(et);
                    loss.ce += (w * (zt.ln() + max - s)) as f64;
                    let g = w * (et / zt - 1.0) * scale;
                    axpy(dzu, g, self.item_row(t));
                    axpy(grads.items.row(t), g, zu);
                    grads.bias[t as usize] += g;
                    coef += w / zt;
                    for &j in hits {
                        dn[j as usize] -= w / zt * e[j as usize] * scale;
                    }
                }
                for (d, &ej) in dn.iter_mut().zip(&e) {
                    *d += ej * coef * scale;
                }
            }
            if !ex.kd.is_empty() {
                let (t, lambda) = (kd.temperature, kd.lambda);
                let s: Vec<f32> = ex.kd.iter().map(|&(i, _)| self.score(zu, i) / t).collect();
                let max = s.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
                let sum: f32 = s.iter().map(|&x| (x - max).exp()).sum();
                let log_z = sum.ln() + max;
                for (&(i, p), &si) in ex.kd.iter().zip(&s) {
                    let log_q = si - log_z;
                    if p > 0.0 {
                        loss.kd += (lambda * t * t * p * (p.ln() - log_q)) as f64;
                    }
                    // ∂ T²·KL / ∂ logit = T · (q − p).
                    let g = lambda * t * (log_q.exp() - p) * scale;
                    axpy(dzu, g, self.item_row(i));
                    axpy(grads.items.row(i), g, zu);
                    grads.bias[i as usize] += g;
                }
            }
        }
        loss.ce *= scale as f64;
        loss.kd *= scale as f64;

        // Through the shared negatives: dz += dneg · rows, d rows = dnegᵀ · z.
        matmul(&mut dz, &dneg, &neg_rows, (b, n, dl), false, false, true);
        let mut drows = vec![0f32; n * dl];
        matmul(&mut drows, &dneg, z, (n, b, dl), true, false, false);
        for (j, &i) in negs.items.iter().enumerate() {
            axpy(grads.items.row(i), 1.0, &drows[j * dl..(j + 1) * dl]);
            grads.bias[i as usize] += (0..b).map(|u| dneg[u * n + j]).sum::<f32>();
            if !grads.bias_mark[i as usize] {
                grads.bias_mark[i as usize] = true;
                grads.bias_touched.push(i);
            }
        }
        for ex in batch {
            for &(i, _) in ex.targets.iter().chain(&ex.kd) {
                if !grads.bias_mark[i as usize] {
                    grads.bias_mark[i as usize] = true;
                    grads.bias_touched.push(i);
                }
            }
        }
        self.backward(&fwd, dz, batch, grads);
        loss
    }

    /// Back through the MLP layers and the mean of the history embeddings.
    fn backward(&self, fwd: &Forward, mut dy: Vec<f32>, batch: &[Example], grads: &mut Grads) {
        let rows = fwd.rows;
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let (x, y) = (&fwd.acts[l], &fwd.acts[l + 1]);
            for (d, &a) in dy.iter_mut().zip(y) {
                *d *= activation_grad(self.spec.activation, a);
            }
            let gl = &mut grads.layers[l];
            matmul(
                &mut gl.w,
                x,
                &dy,
                (layer.n_in, rows, layer.n_out),
                true,
                false,
                true,
            );
            for row in dy.chunks(layer.n_out) {
                axpy(&mut gl.b, 1.0, row);
            }
            let mut dx = vec![0f32; rows * layer.n_in];
            matmul(
                &mut dx,
                &dy,
                &layer.w,
                (rows, layer.n_out, layer.n_in),
                false,
                true,
                false,
            );
            dy = dx;
        }
        let d0 = self.spec.dim;
        for (u, ex) in batch.iter().enumerate() {
            if ex.input.is_empty() {
                continue;
            }
            let w = 1.0 / ex.input.len() as f32;
            let du = &dy[u * d0..(u + 1) * d0];
            for &i in &ex.input {
                axpy(grads.emb.row(i), w, du);
            }
        }
    }
}

fn activate(a: Activation, x: f32) -> f32 {
    match a {
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
    }
}

/// The activation's derivative from its output.
fn activation_grad(a: Activation, y: f32) -> f32 {
    match a {
        Activation::Relu => {
            if y > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Tanh => 1.0 - y * y,
    }
}

/// Gradient buffers of a [`Tower`].
struct Grads {
    emb: RowGrad,
    items: RowGrad,
    bias: Vec<f32>,
    bias_touched: Vec<u32>,
    bias_mark: Vec<bool>,
    layers: Vec<Layer>,
}

impl Grads {
    fn new(t: &Tower) -> Self {
        Grads {
            emb: RowGrad::new(t.n_items, t.spec.dim),
            items: RowGrad::new(t.n_items, t.last_dim()),
            bias: vec![0.0; t.n_items],
            bias_touched: Vec::new(),
            bias_mark: vec![false; t.n_items],
            layers: t
                .layers
                .iter()
                .map(|l| Layer {
                    n_in: l.n_in,
                    n_out: l.n_out,
                    w: vec![0.0; l.w.len()],
                    b: vec![0.0; l.b.len()],
                })
                .collect(),
        }
    }
}

/// A tower with its optimiser state: what a training thread owns.
pub struct Trainer {
    pub tower: Tower,
    adam: Adam,
    grads: Grads,
    emb_m: Moments,
    items_m: Moments,
    bias_m: Moments,
    layers_m: Vec<(Moments, Moments)>,
}

impl Trainer {
    pub fn new(tower: Tower, lr: f64, weight_decay: f64) -> Self {
        let grads = Grads::new(&tower);
        Trainer {
            adam: Adam {
                lr: lr as f32,
                weight_decay: weight_decay as f32,
                t: 0,
            },
            emb_m: Moments::new(tower.emb.len()),
            items_m: Moments::new(tower.items.len()),
            bias_m: Moments::new(tower.bias.len()),
            layers_m: tower
                .layers
                .iter()
                .map(|l| (Moments::new(l.w.len()), Moments::new(l.b.len())))
                .collect(),
            grads,
            tower,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.adam.lr = lr as f32;
    }

    /// One Adam step on the batch; returns its loss terms.
    pub fn step(
        &mut self,
        batch: &[Example],
        negs: &Negatives,
        log_q: &dyn Fn(u32) -> f32,
        kd: KdWeight,
    ) -> StepLoss {
        let loss = self
            .tower
            .loss_and_grad(batch, negs, log_q, kd, &mut self.grads);
        self.adam.t += 1;
        let rate = self.adam.rate();
        let decay = self.adam.lr * self.adam.weight_decay;
        let t = &mut self.tower;
        let g = &mut self.grads;
        for (l, (layer, (mw, mb))) in t.layers.iter_mut().zip(&mut self.layers_m).enumerate() {
            let gl = &mut g.layers[l];
            Adam::update(rate, decay, &mut layer.w, &gl.w, &mut mw.m, &mut mw.v);
            Adam::update(rate, 0.0, &mut layer.b, &gl.b, &mut mb.m, &mut mb.v);
            gl.w.fill(0.0);
            gl.b.fill(0.0);
        }
        sparse_update(rate, decay, &mut t.emb, &mut g.emb, &mut self.emb_m);
        sparse_update(rate, decay, &mut t.items, &mut g.items, &mut self.items_m);
        for &i in &g.bias_touched {
            let i = i as usize;
            Adam::update(
                rate,
                0.0,
                &mut t.bias[i..i + 1],
                &g.bias[i..i + 1],
                &mut self.bias_m.m[i..i + 1],
                &mut self.bias_m.v[i..i + 1],
            );
            g.bias[i] = 0.0;
            g.bias_mark[i] = false;
        }
        g.bias_touched.clear();
        loss
    }
}

fn sparse_update(rate: f32, decay: f32, p: &mut [f32], g: &mut RowGrad, m: &mut Moments) {
    let d = g.dim;
    for &r in &g.touched {
        let s = r as usize * d..(r as usize + 1) * d;
        Adam::update(
            rate,
            decay,
            &mut p[s.clone()],
            &g.g[s.clone()],
            &mut m.m[s.clone()],
            &mut m.v[s.clone()],
        );
        g.g[s].fill(0.0);
        g.mark[r as usize] = false;
    }
    g.touched.clear();
}

#[cfg(test)]
mod tests {
    use super::super::sampler::Sampler;
    use super::*;
    use rand::SeedableRng;

    const KD: KdWeight = KdWeight {
        temperature: 2.0,
        lambda: 0.7,
    };

    fn tower(n_items: usize, activation: Activation, seed: u64) -> Tower {
        let spec = MlpSpec {
            dim: 5,
            hidden: vec![4, 3],
            activation,
        };
        let mut t = Tower::new(n_items, spec, &mut StdRng::seed_from_u64(seed));
        // Non-zero biases so their gradients matter, and so that no ReLU input sits exactly
        // on the kink (an empty history gives a zero mean; there a finite difference straddles
        // the kink and measures half a slope).
        for (i, b) in t.bias.iter_mut().enumerate() {
            *b = (i as f32 * 0.3).sin() * 0.2;
        }
        for layer in &mut t.layers {
            for (i, b) in layer.b.iter_mut().enumerate() {
                *b = 0.05 + 0.03 * (i as f32 * 1.7).cos();
            }
        }
        t
    }

    fn batch() -> Vec<Example> {
        vec![
            Example {
                input: vec![0, 3, 3, 7],
                targets: vec![(2, 0.5), (5, 0.5)],
                kd: vec![(1, 0.6), (4, 0.3), (6, 0.1)],
            },
            Example {
                input: vec![8],
                targets: vec![(0, 1.0)],
                kd: Vec::new(),
            },
            Example {
                input: Vec::new(),
                targets: vec![(9, 0.25), (1, 0.75)],
                kd: vec![(9, 1.0)],
            },
        ]
    }

    fn total_loss(t: &Tower, negs: &Negatives, log_q: &dyn Fn(u32) -> f32) -> f64 {
        let mut g = Grads::new(t);
        let l = t.loss_and_grad(&batch(), negs, log_q, KD, &mut g);
        l.ce + l.kd
    }

    /// Every parameter's analytic gradient against a central finite difference (f64 sums of
    /// f32 losses, so a loose but discriminating tolerance).
    #[test]
    fn gradients_match_finite_differences() {
        for activation in [Activation::Tanh, Activation::Relu] {
            let t = tower(10, activation, 11);
            // Negatives with a duplicate and an accidental hit of a target (item 2).
            let negs = Negatives {
                items: vec![2, 4, 4, 9, 6],
                log_q: vec![0.1, -0.3, -0.3, 0.4, 0.0],
            };
            let lq = |i: u32| (i as f32 * 0.7).cos() * 0.2;
            let mut g = Grads::new(&t);
            t.loss_and_grad(&batch(), &negs, &lq, KD, &mut g);
            let eps = 1e-3f32;
            let mut checked = 0;
            let mut check = |name: &str, analytic: f32, set: &dyn Fn(&mut Tower, f32)| {
                let mut plus = t.clone();
                set(&mut plus, eps);
                let mut minus = t.clone();
                set(&mut minus, -eps);
                let numeric = (total_loss(&plus, &negs, &lq) - total_loss(&minus, &negs, &lq))
                    / (2.0 * eps as f64);
                let tol = 2e-3 + 2e-2 * numeric.abs();
                assert!(
                    (analytic as f64 - numeric).abs() < tol,
                    "{activation:?} {name}: analytic {analytic} vs numeric {numeric}"
                );
                checked += 1;
            };
            for k in 0..t.emb.len() {
                let a = g.emb.g[k];
                check(&format!("emb[{k}]"), a, &|t, e| t.emb[k] += e);
            }
            for k in 0..t.items.len() {
                let a = g.items.g[k];
                check(&format!("items[{k}]"), a, &|t, e| t.items[k] += e);
            }
            for k in 0..t.bias.len() {
                let a = g.bias[k];
                check(&format!("bias[{k}]"), a, &|t, e| t.bias[k] += e);
            }
            for l in 0..t.layers.len() {
                for k in 0..t.layers[l].w.len() {
                    let a = g.layers[l].w[k];
                    check(&format!("w{l}[{k}]"), a, &|t, e| t.layers[l].w[k] += e);
                }
                for k in 0..t.layers[l].b.len() {
                    let a = g.layers[l].b[k];
                    check(&format!("b{l}[{k}]"), a, &|t, e| t.layers[l].b[k] += e);
                }
            }
            assert!(checked > 100);
        }
    }

    /// With every item sampled, the sampled softmax is the full softmax: same loss and same
    /// gradient as `−Σ w log softmax(all scores)[t]` computed directly.
    #[test]
    fn sampling_every_item_is_the_full_softmax() {
        let n_items = 12;
        let t = tower(n_items, Activation::Tanh, 5);
        let sampler = Sampler::new(&vec![3; n_items], 64, 0.75);
        assert!(sampler.is_full());
        let negs = sampler.draw(&mut StdRng::seed_from_u64(0));
        let ex = vec![Example {
            input: vec![1, 4, 4, 10],
            targets: vec![(2, 0.7), (4, 0.3)],
            kd: Vec::new(),
        }];
        let mut g = Grads::new(&t);
        let loss = t.loss_and_grad(&ex, &negs, &|i| sampler.log_q(i), KdWeight::NONE, &mut g);
        // Reference: full softmax over every item's score.
        let z = t.forward(&[ex[0].input.clone()]).users().to_vec();
        let s: Vec<f64> = (0..n_items as u32).map(|i| t.score(&z, i) as f64).collect();
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = s.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
        let want: f64 = ex[0]
            .targets
            .iter()
            .map(|&(i, w)| w as f64 * (lse - s[i as usize]))
            .sum();
        assert!((loss.ce - want).abs() < 1e-5, "{} vs {want}", loss.ce);
        // ∂L/∂bias_i = Σ_t w_t (softmax_i − [i = t]).
        for (i, &si) in s.iter().enumerate() {
            let p = (si - lse).exp();
            let want: f64 = ex[0]
                .targets
                .iter()
                .map(|&(t, w)| w as f64 * (p - if t as usize == i { 1.0 } else { 0.0 }))
                .sum();
            assert!(
                (g.bias[i] as f64 - want).abs() < 1e-5,
                "bias {i}: {} vs {want}",
                g.bias[i]
            );
        }
    }

    #[test]
    fn training_steps_lower_the_loss() {
        let n_items = 40;
        let spec = MlpSpec {
            dim: 8,
            hidden: vec![8],
            activation: Activation::Tanh,
        };
        let t = Tower::new(n_items, spec, &mut StdRng::seed_from_u64(2));
        let mut tr = Trainer::new(t, 0.05, 0.0);
        let sampler = Sampler::new(&vec![1; n_items], 16, 0.75);
        let mut rng = StdRng::seed_from_u64(9);
        // Users who read item i also read item i + 20.
        let batch: Vec<Example> = (0..20u32)
            .map(|i| Example {
                input: vec![i],
                targets: vec![(i + 20, 1.0)],
                kd: Vec::new(),
            })
            .collect();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..300 {
            let negs = sampler.draw(&mut rng);
            last = tr
                .step(&batch, &negs, &|i| sampler.log_q(i), KdWeight::NONE)
                .ce;
            first.get_or_insert(last);
        }
        assert!(last < 0.3 * first.unwrap(), "{first:?} → {last}");
        let right = (0..20u32)
            .filter(|&i| {
                let z = tr.tower.user_vectors(&[vec![i]]);
                let best = (0..n_items as u32)
                    .max_by(|&a, &b| tr.tower.score(&z, a).total_cmp(&tr.tower.score(&z, b)))
                    .unwrap();
                best == i + 20
            })
            .count();
        assert!(right >= 18, "{right} of 20 users get their item first");
    }
}
