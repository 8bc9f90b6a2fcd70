//! Temporary stand-ins for `crate::data`, `crate::eval` and `crate::onnx` (being written on other
//! branches), with the agreed signatures. Deleted as soon as the real modules are merged.
#![allow(dead_code)]

pub mod data {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    pub enum Format {
        Auto,
        MovieLensUData,
        MovieLensRatingsDat,
        Csv,
        RecBoleInter,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct DataError(pub String);

    #[derive(Debug, Clone)]
    pub struct Interaction {
        pub user: u32,
        pub item: u32,
        pub rating: f32,
        pub timestamp: i64,
    }

    #[derive(Debug, Clone)]
    pub struct Interactions {
        pub name: String,
        pub path: PathBuf,
        pub sha256: String,
        pub user_ids: Vec<String>,
        pub item_ids: Vec<String>,
        pub item_titles: Vec<Option<String>>,
        pub records: Vec<Interaction>,
    }

    impl Interactions {
        pub fn n_users(&self) -> usize {
            self.user_ids.len()
        }
        pub fn n_items(&self) -> usize {
            self.item_ids.len()
        }
    }

    pub fn read_interactions(
        path: &Path,
        _format: Format,
        min_rating: Option<f32>,
    ) -> Result<Interactions, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError(format!("{}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        let mut users: HashMap<String, u32> = HashMap::new();
        let mut items: HashMap<String, u32> = HashMap::new();
        let mut user_ids = Vec::new();
        let mut item_ids = Vec::new();
        let mut records = Vec::new();
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split('\t').collect();
            if c.len() < 4 {
                continue;
            }
            let rating: f32 = c[2].parse().unwrap_or(0.0);
            if min_rating.is_some_and(|m| rating < m) {
                continue;
            }
            let u = *users.entry(c[0].to_string()).or_insert_with(|| {
                user_ids.push(c[0].to_string());
                user_ids.len() as u32 - 1
            });
            let i = *items.entry(c[1].to_string()).or_insert_with(|| {
                item_ids.push(c[1].to_string());
                item_ids.len() as u32 - 1
            });
            records.push(Interaction {
                user: u,
                item: i,
                rating,
                timestamp: c[3].parse::<f64>().unwrap_or(0.0) as i64,
            });
        }
        let n = item_ids.len();
        Ok(Interactions {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            sha256: crate::bundle::sha256_hex(&bytes),
            user_ids,
            item_ids,
            item_titles: vec![None; n],
            records,
        })
    }

    pub mod split {
        use super::*;

        #[derive(Debug, Clone)]
        pub struct Split {
            pub seed: u64,
            pub ratios: [f64; 3],
            pub train: Vec<Vec<u32>>,
            pub valid: Vec<Vec<u32>>,
            pub test: Vec<Vec<u32>>,
        }

        impl Split {
            pub fn n_users(&self) -> usize {
                self.train.len()
            }
            pub fn write_tsv(&self, dir: &Path, data: &Interactions) -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                for (name, part) in [("train", &self.train), ("valid", &self.valid), ("test", &self.test)] {
                    let mut out = String::from("user_id\titem_id\n");
                    for (u, items) in part.iter().enumerate() {
                        for &i in items {
                            out.push_str(&format!("{}\t{}\n", data.user_ids[u], data.item_ids[i as usize]));
                        }
                    }
                    std::fs::write(dir.join(format!("{name}.tsv")), out)?;
                }
                Ok(())
            }
        }

        pub fn random_split(data: &Interactions, ratios: [f64; 3], seed: u64) -> Split {
            let mut per_user: Vec<Vec<(i64, u32)>> = vec![Vec::new(); data.n_users()];
            for r in &data.records {
                per_user[r.user as usize].push((r.timestamp, r.item));
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
            for mut list in per_user {
                list.shuffle(&mut rng);
                let n = list.len();
                let n_valid = (n as f64 * ratios[1]) as usize;
                let n_test = (n as f64 * ratios[2]) as usize;
                let n_train = n - n_valid - n_test;
                let mut tr: Vec<(i64, u32)> = list[..n_train].to_vec();
                tr.sort();
                train.push(tr.into_iter().map(|x| x.1).collect());
                valid.push(list[n_train..n_train + n_valid].iter().map(|x| x.1).collect());
                test.push(list[n_train + n_valid..].iter().map(|x| x.1).collect());
            }
            Split {
                seed,
                ratios,
                train,
                valid,
                test,
            }
        }
    }
}

pub mod eval {
    use std::collections::BTreeMap;

    use super::data::split::Split;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Stage {
        Valid,
        Test,
    }

    #[derive(Debug, Clone, Default)]
    pub struct Metrics(pub BTreeMap<String, f64>);

    impl Metrics {
        pub fn ndcg10(&self) -> f64 {
            self.0.get("ndcg@10").copied().unwrap_or(0.0)
        }
    }

    pub fn evaluate(scores: &[f32], n_items: usize, split: &Split, stage: Stage) -> Metrics {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut n = 0usize;
        for u in 0..split.n_users() {
            let targets = match stage {
                Stage::Valid => &split.valid[u],
                Stage::Test => &split.test[u],
            };
            if targets.is_empty() {
                continue;
            }
            n += 1;
            let mut excl: Vec<u32> = split.train[u].clone();
            if stage == Stage::Test {
                excl.extend(&split.valid[u]);
            }
            let row = &scores[u * n_items..(u + 1) * n_items];
            let mut cand: Vec<(f32, u32)> = (0..n_items as u32)
                .filter(|i| !excl.contains(i))
                .map(|i| (row[i as usize], i))
                .collect();
            cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for k in [10usize, 20] {
                let top = &cand[..k.min(cand.len())];
                let mut hits = 0.0;
                let mut dcg = 0.0;
                let mut mrr = 0.0;
                for (r, (_, i)) in top.iter().enumerate() {
                    if targets.contains(i) {
                        hits += 1.0;
                        dcg += 1.0 / ((r + 2) as f64).log2();
                        if mrr == 0.0 {
                            mrr = 1.0 / (r + 1) as f64;
                        }
                    }
                }
                let idcg: f64 = (0..targets.len().min(k)).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
                *sums.entry(format!("ndcg@{k}")).or_default() += dcg / idcg;
                *sums.entry(format!("recall@{k}")).or_default() += hits / targets.len() as f64;
                *sums.entry(format!("hit@{k}")).or_default() += if hits > 0.0 { 1.0 } else { 0.0 };
                *sums.entry(format!("mrr@{k}")).or_default() += mrr;
                *sums.entry(format!("precision@{k}")).or_default() += hits / k as f64;
            }
        }
        Metrics(sums.into_iter().map(|(k, v)| (k, v / n.max(1) as f64)).collect())
    }

    pub fn popularity_scores(split: &Split, n_items: usize) -> Vec<f32> {
        let mut c = vec![0f32; n_items];
        for items in &split.train {
            for &i in items {
                c[i as usize] += 1.0;
            }
        }
        c
    }
}

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
