//! Temporary stand-in for `crate::onnx` (being written on other
//! branches), with the agreed signatures. Deleted as soon as the real modules are merged.
#![allow(dead_code)]

pub mod onnx {
    use crate::bundle::Architecture;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Activation {
        Relu,
        Tanh,
    }

    #[derive(Debug, Clone)]
    pub struct Dense {
        pub n_in: usize,
        pub n_out: usize,
        pub w: Vec<f32>,
        pub b: Vec<f32>,
    }

    #[derive(Debug, Clone)]
    pub struct MeanMlpWeights {
        pub n_rows: usize,
        pub dim: usize,
        pub embedding: Vec<f32>,
        pub layers: Vec<Dense>,
        pub activation: Activation,
        pub item_matrix_t: Vec<f32>,
        pub item_bias: Vec<f32>,
    }

    #[derive(Debug, Clone)]
    pub struct EaseWeights {
        pub n_rows: usize,
        pub b: Vec<f32>,
    }

    #[derive(Debug, Clone)]
    pub enum ModelWeights {
        MeanMlp(MeanMlpWeights),
        Ease(EaseWeights),
    }

    impl ModelWeights {
        /// Stand-in: the real encoder lives on the onnx branch; the "model" here is the weights
        /// themselves, bincoded, so sizes are plausible and the scorer can run them.
        pub fn to_onnx(&self) -> Vec<u8> {
            vec![0u8; self.parameter_count() as usize * 4]
        }
        pub fn parameter_count(&self) -> u64 {
            match self {
                ModelWeights::MeanMlp(m) => {
                    (m.embedding.len()
                        + m.layers.iter().map(|l| l.w.len() + l.b.len()).sum::<usize>()
                        + m.item_matrix_t.len()
                        + m.item_bias.len()) as u64
                }
                ModelWeights::Ease(e) => e.b.len() as u64,
            }
        }
        pub fn architecture(&self) -> Architecture {
            match self {
                ModelWeights::MeanMlp(m) => Architecture {
                    kind: "mean_mlp".into(),
                    description: "mean of item embeddings -> MLP -> dot with item matrix + bias".into(),
                    embedding_dim: Some(m.dim),
                    hidden: m.layers.iter().map(|l| l.n_out).collect(),
                    activation: Some(format!("{:?}", m.activation).to_lowercase()),
                },
                ModelWeights::Ease(_) => Architecture {
                    kind: "ease".into(),
                    description: "sum of item-item rows".into(),
                    embedding_dim: None,
                    hidden: vec![],
                    activation: None,
                },
            }
        }
        pub fn n_rows(&self) -> usize {
            match self {
                ModelWeights::MeanMlp(m) => m.n_rows,
                ModelWeights::Ease(e) => e.n_rows,
            }
        }
        pub fn score_reference(&self, history: &[u32]) -> Vec<f32> {
            match self {
                ModelWeights::Ease(e) => {
                    let mut s = vec![0f32; e.n_rows];
                    for &h in history.iter().filter(|&&h| h > 0) {
                        for (j, v) in s.iter_mut().enumerate() {
                            *v += e.b[h as usize * e.n_rows + j];
                        }
                    }
                    s
                }
                ModelWeights::MeanMlp(m) => {
                    let mut u = vec![0f32; m.dim];
                    let mut cnt = 0f32;
                    for &h in history.iter().filter(|&&h| h > 0) {
                        cnt += 1.0;
                        for (k, v) in u.iter_mut().enumerate() {
                            *v += m.embedding[h as usize * m.dim + k];
                        }
                    }
                    for v in u.iter_mut() {
                        *v /= cnt.max(1.0);
                    }
                    for l in &m.layers {
                        let mut o = l.b.clone();
                        for (i, ui) in u.iter().enumerate() {
                            for (j, oj) in o.iter_mut().enumerate() {
                                *oj += ui * l.w[i * l.n_out + j];
                            }
                        }
                        for v in o.iter_mut() {
                            *v = match m.activation {
                                Activation::Relu => v.max(0.0),
                                Activation::Tanh => v.tanh(),
                            };
                        }
                        u = o;
                    }
                    let mut s = m.item_bias.clone();
                    for (k, uk) in u.iter().enumerate() {
                        for (j, sj) in s.iter_mut().enumerate() {
                            *sj += uk * m.item_matrix_t[k * m.n_rows + j];
                        }
                    }
                    s
                }
            }
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct RuntimeError(pub String);

    /// Stand-in scorer: runs the reference forward (the stand-in "ONNX" carries no weights, so it
    /// is built from the weights directly).
    pub struct OnnxScorer {
        weights: ModelWeights,
    }

    impl OnnxScorer {
        pub fn from_weights(weights: &ModelWeights) -> Self {
            OnnxScorer {
                weights: weights.clone(),
            }
        }
        pub fn n_rows(&self) -> usize {
            self.weights.n_rows()
        }
        pub fn score_batch(&self, histories: &[&[u32]]) -> Result<Vec<f32>, RuntimeError> {
            Ok(histories
                .iter()
                .flat_map(|h| self.weights.score_reference(h))
                .collect())
        }
    }
}
