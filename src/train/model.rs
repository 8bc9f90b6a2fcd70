//! The `mean_mlp` history encoder in candle: mean of item embeddings → MLP → item scores.
//!
//! Training feeds the history as a row-normalised multi-hot matrix `[B, n_items]` multiplied by
//! the embedding table: the same mean as the ONNX graph's gather/mask/sum/divide, but candle's
//! backward through a gathered masked mean is ~6× slower (NOTES). Parameters are initialised from
//! our own seeded RNG so runs are reproducible.

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::Rng;

use super::error::TrainError;
use crate::onnx::{Activation, Dense, MeanMlpWeights, ModelWeights};

/// Shape of a `mean_mlp` model. The last hidden width (or `dim` without hidden layers) is the
/// width of the item output matrix.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MlpSpec {
    pub dim: usize,
    pub hidden: Vec<usize>,
    #[serde(serialize_with = "ser_activation")]
    pub activation: Activation,
}

fn ser_activation<S: serde::Serializer>(a: &Activation, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(activation_name(*a))
}

pub fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Tanh => "tanh",
    }
}

impl MlpSpec {
    pub fn last_dim(&self) -> usize {
        self.hidden.last().copied().unwrap_or(self.dim)
    }

    /// Parameters of the exported model (including the padding row/column of the contract).
    pub fn parameter_count(&self, n_items: usize) -> u64 {
        let n_rows = n_items + 1;
        let mut n = n_rows * self.dim + self.last_dim() * n_rows + n_rows;
        let mut prev = self.dim;
        for &h in &self.hidden {
            n += prev * h + h;
            prev = h;
        }
        n as u64
    }
}

pub struct MeanMlp {
    pub n_items: usize,
    pub spec: MlpSpec,
    emb: Var,
    layers: Vec<(Var, Var)>,
    item_t: Var,
    bias: Var,
}

/// Xavier/Glorot uniform, drawn from the run's RNG.
pub(crate) fn xavier(rng: &mut StdRng, rows: usize, cols: usize) -> Result<Var, TrainError> {
    let a = (6.0 / (rows + cols) as f64).sqrt() as f32;
    let v: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-a..a)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(
        v,
        (rows, cols),
        &Device::Cpu,
    )?)?)
}

fn zeros(n: usize) -> Result<Var, TrainError> {
    Ok(Var::zeros(n, DType::F32, &Device::Cpu)?)
}

impl MeanMlp {
    pub fn new(n_items: usize, spec: MlpSpec, rng: &mut StdRng) -> Result<Self, TrainError> {
        let emb = xavier(rng, n_items, spec.dim)?;
        let mut layers = Vec::new();
        let mut prev = spec.dim;
        for &h in &spec.hidden {
            layers.push((xavier(rng, prev, h)?, zeros(h)?));
            prev = h;
        }
        let item_t = xavier(rng, prev, n_items)?;
        let bias = zeros(n_items)?;
        Ok(MeanMlp {
            n_items,
            spec,
            emb,
            layers,
            item_t,
            bias,
        })
    }

    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.emb.clone()];
        for (w, b) in &self.layers {
            v.push(w.clone());
            v.push(b.clone());
        }
        v.push(self.item_t.clone());
        v.push(self.bias.clone());
        v
    }

    /// Final user representation (input of the item matrix) from a row-normalised multi-hot
    /// input `[B, n_items]`.
    pub fn user_vectors(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        let mut u = x.matmul(self.emb.as_tensor())?;
        for (w, b) in &self.layers {
            u = u.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            u = match self.spec.activation {
                Activation::Relu => u.relu()?,
                Activation::Tanh => u.tanh()?,
            };
        }
        Ok(u)
    }

    pub fn logits(&self, u: &Tensor) -> Result<Tensor, TrainError> {
        Ok(u.matmul(self.item_t.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }

    /// Scores `[n_users, n_items]` (row-major, column = item index) for the given histories,
    /// plus the user representations `[n_users, last_dim]`.
    pub fn score_histories(
        &self,
        histories: &[Vec<u32>],
    ) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let mut scores = Vec::with_capacity(histories.len() * self.n_items);
        let mut reps = Vec::with_capacity(histories.len() * self.spec.last_dim());
        for chunk in histories.chunks(512) {
            let x = multi_hot(chunk, self.n_items)?;
            let u = self.user_vectors(&x)?;
            let s = self.logits(&u)?;
            scores.extend(s.flatten_all()?.to_vec1::<f32>()?);
            reps.extend(u.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((scores, reps))
    }

    pub fn snapshot(&self) -> Result<Vec<Vec<f32>>, TrainError> {
        self.vars()
            .iter()
            .map(|v| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?))
            .collect()
    }

    pub fn restore(&self, snapshot: &[Vec<f32>]) -> Result<(), TrainError> {
        for (var, data) in self.vars().iter().zip(snapshot) {
            let t = Tensor::from_vec(data.clone(), var.shape(), &Device::Cpu)?;
            var.set(&t)?;
        }
        Ok(())
    }

    /// The contract's weights: vocabulary row 0 (padding) gets a zero embedding, a zero item
    /// column and a zero bias; row i + 1 is item index i.
    pub fn to_weights(&self) -> Result<ModelWeights, TrainError> {
        let d = self.spec.dim;
        let n_rows = self.n_items + 1;
        let mut embedding = vec![0f32; d];
        embedding.extend(self.emb.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        let mut layers = Vec::new();
        let mut prev = d;
        for (&h, (w, b)) in self.spec.hidden.iter().zip(&self.layers) {
            layers.push(Dense {
                n_in: prev,
                n_out: h,
                w: w.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                b: b.as_tensor().to_vec1::<f32>()?,
            });
            prev = h;
        }
        let it = self.item_t.as_tensor().to_vec2::<f32>()?;
        let mut item_matrix_t = Vec::with_capacity(prev * n_rows);
        for row in it {
            item_matrix_t.push(0.0);
            item_matrix_t.extend(row);
        }
        let mut item_bias = vec![0f32];
        item_bias.extend(self.bias.as_tensor().to_vec1::<f32>()?);
        Ok(ModelWeights::MeanMlp(MeanMlpWeights {
            n_rows,
            dim: d,
            embedding,
            layers,
            activation: self.spec.activation,
            item_matrix_t,
            item_bias,
        }))
    }
}

/// Row-normalised multi-hot `[histories.len(), n_items]`: row u is the mean operator over u's
/// history (duplicates count twice, as in the ONNX mean). An empty history is a zero row,
/// matching the contract's `max(count, 1)` denominator.
pub fn multi_hot(histories: &[Vec<u32>], n_items: usize) -> Result<Tensor, TrainError> {
    let mut x = vec![0f32; histories.len() * n_items];
    for (r, h) in histories.iter().enumerate() {
        let w = 1.0 / h.len().max(1) as f32;
        for &i in h {
            x[r * n_items + i as usize] += w;
        }
    }
    Ok(Tensor::from_vec(
        x,
        (histories.len(), n_items),
        &Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn exported_weights_score_like_candle() {
        let mut rng = StdRng::seed_from_u64(7);
        let spec = MlpSpec {
            dim: 8,
            hidden: vec![6, 5],
            activation: Activation::Tanh,
        };
        let m = MeanMlp::new(13, spec.clone(), &mut rng).unwrap();
        let histories = vec![vec![0, 3, 12], vec![5], vec![]];
        let (scores, _) = m.score_histories(&histories).unwrap();
        let w = m.to_weights().unwrap();
        assert_eq!(w.parameter_count(), spec.parameter_count(13));
        for (u, h) in histories.iter().enumerate() {
            let rows = crate::bundle::item_rows(h);
            let r = w.score_reference(&rows);
            assert_eq!(r.len(), 14);
            for i in 0..13 {
                let (a, b) = (scores[u * 13 + i], r[i + 1]);
                assert!((a - b).abs() < 1e-5, "user {u} item {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn same_seed_same_init() {
        let spec = MlpSpec {
            dim: 4,
            hidden: vec![3],
            activation: Activation::Relu,
        };
        let a = MeanMlp::new(5, spec.clone(), &mut StdRng::seed_from_u64(1)).unwrap();
        let b = MeanMlp::new(5, spec, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
    }
}
