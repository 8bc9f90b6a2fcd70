//! `--teacher-bundle`: a teacher that was trained elsewhere (PyTorch, TensorFlow, a numpy
//! script …) and handed over as a model bundle. Any bundle the server can load works: its ONNX
//! graph runs in tract, its vocabulary is mapped onto the dataset's items, and its scores for
//! the training histories become the KD targets exactly like those of the built-in teachers.

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;

use super::error::TrainError;
use super::export::time_calls;
use crate::bundle::{Bundle, Manifest};
use crate::data::Interactions;
use crate::engine::ItemMatrix;
use crate::onnx::{element_count, OnnxScorer};

/// Users per tract call when scoring the training histories.
const BATCH: usize = 64;
/// Ids quoted in the error for a vocabulary that lacks dataset items.
const QUOTED: usize = 5;

/// A loaded external teacher, ready to score the dataset's users.
pub struct ExternalTeacher {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Size of `model.onnx`.
    pub onnx_bytes: u64,
    /// Weights counted from the ONNX initializers (and the item matrix of a format-2 bundle):
    /// what the graph really holds, whatever the manifest says.
    pub parameters: u64,
    scoring: Scoring,
    /// Dataset item index → the bundle's vocabulary row.
    rows: Vec<u32>,
}

enum Scoring {
    Full(OnnxScorer),
    TwoTower {
        encoder: OnnxScorer,
        items: ItemMatrix,
    },
}

impl ExternalTeacher {
    /// Reads and checks the bundle (the server's loader: hashes, contract, tract probe) and maps
    /// every dataset item onto its vocabulary; a bundle lacking any dataset item is refused
    /// with the count and the first missing ids. Items only the bundle knows are ignored.
    pub fn load(dir: &Path, data: &Interactions) -> Result<Self, TrainError> {
        let bundle = Bundle::load(dir)?;
        let runtime = |e: crate::onnx::RuntimeError| TrainError::Runtime {
            model: format!("teacher bundle {}", dir.display()),
            message: e.to_string(),
        };
        let n_rows = bundle.manifest.n_rows;
        let mut parameters =
            count_initializers(&bundle.model_bytes).map_err(|message| TrainError::Runtime {
                model: format!("teacher bundle {}", dir.display()),
                message,
            })?;
        let scoring = match bundle.item_matrix {
            None => Scoring::Full(OnnxScorer::load(&bundle.model_bytes, n_rows).map_err(runtime)?),
            Some(items) => {
                parameters += (items.vectors().len() + items.bias().len()) as u64;
                Scoring::TwoTower {
                    encoder: OnnxScorer::load_encoder(&bundle.model_bytes, n_rows, items.dim())
                        .map_err(runtime)?,
                    items,
                }
            }
        };
        let mut rows = Vec::with_capacity(data.n_items());
        let mut missing = Vec::new();
        for id in &data.item_ids {
            match bundle.items.row(id) {
                Some(r) => rows.push(r),
                None => missing.push(id.as_str()),
            }
        }
        if !missing.is_empty() {
            let quoted: Vec<String> = missing
                .iter()
                .take(QUOTED)
                .map(|id| format!("`{id}`"))
                .collect();
            return Err(TrainError::Config(format!(
                "teacher bundle {}: its items.tsv lacks {} of the {} items in {} (first: {}{}); \
                 a teacher must score every item the student is trained on",
                dir.display(),
                missing.len(),
                data.n_items(),
                data.path.display(),
                quoted.join(", "),
                if missing.len() > QUOTED { ", …" } else { "" },
            )));
        }
        Ok(ExternalTeacher {
            dir: dir.to_path_buf(),
            onnx_bytes: bundle.model_bytes.len() as u64,
            manifest: bundle.manifest,
            parameters,
            scoring,
            rows,
        })
    }

    /// Items of the dataset (columns of [`ExternalTeacher::score`]).
    pub fn n_items(&self) -> usize {
        self.rows.len()
    }

    /// Vocabulary rows of the bundle for dataset item indices.
    pub fn rows_of(&self, items: &[u32]) -> Vec<u32> {
        items.iter().map(|&i| self.rows[i as usize]).collect()
    }

    /// Scores `[histories.len(), n_items]` in dataset item order (the built-in teachers'
    /// layout). A non-finite score is an error: it would poison the softmax targets.
    pub fn score(&self, histories: &[Vec<u32>]) -> Result<Vec<f32>, TrainError> {
        let n_items = self.rows.len();
        let mut out = Vec::with_capacity(histories.len() * n_items);
        for chunk in histories.chunks(BATCH) {
            let mapped: Vec<Vec<u32>> = chunk.iter().map(|h| self.rows_of(h)).collect();
            let refs: Vec<&[u32]> = mapped.iter().map(Vec::as_slice).collect();
            let full = self.score_rows(&refs)?;
            let width = full.len() / chunk.len().max(1);
            for user in full.chunks_exact(width) {
                out.extend(self.rows.iter().map(|&r| user[r as usize]));
            }
        }
        if let Some(i) = out.iter().position(|s| !s.is_finite()) {
            return Err(TrainError::Runtime {
                model: format!("teacher bundle {}", self.dir.display()),
                message: format!(
                    "non-finite score for user {} item {}",
                    i / n_items.max(1),
                    i % n_items.max(1)
                ),
            });
        }
        Ok(out)
    }

    /// Every vocabulary row's score, `[histories.len(), n_rows]`.
    fn score_rows(&self, histories: &[&[u32]]) -> Result<Vec<f32>, TrainError> {
        let runtime = |e: crate::onnx::RuntimeError| TrainError::Runtime {
            model: format!("teacher bundle {}", self.dir.display()),
            message: e.to_string(),
        };
        match &self.scoring {
            Scoring::Full(scorer) => scorer.score_batch(histories).map_err(runtime),
            Scoring::TwoTower { encoder, items } => {
                let users = encoder.score_batch(histories).map_err(runtime)?;
                Ok(users
                    .chunks_exact(items.dim())
                    .flat_map(|u| (0..items.n_rows()).map(move |r| items.score(u, r)))
                    .collect())
            }
        }
    }

    /// Median µs of one history and of 32 histories through the bundle's graph (the built-in
    /// models' latency columns), over `iters` calls each.
    pub fn latency(&self, histories: &[Vec<u32>], iters: usize) -> Result<(f64, f64), TrainError> {
        let rows: Vec<Vec<u32>> = histories.iter().map(|h| self.rows_of(h)).collect();
        time_calls(&rows, iters, |batch| self.score_rows(batch).map(drop))
    }

    /// What the report and the student's manifest say about where the teacher came from.
    pub fn describe(&self) -> serde_json::Value {
        let m = &self.manifest;
        serde_json::json!({
            "bundle": self.dir.display().to_string(),
            "name": m.name,
            "version": m.version,
            "model_sha256": m.model_sha256,
            "format_version": m.format_version,
            "parameters_counted": self.parameters,
            "parameters_in_manifest": m.parameters,
            "trained_on": m.dataset.as_ref().map(|d| serde_json::json!({
                "dataset": d.name, "sha256": d.sha256,
            })),
            "split": m.split.as_ref().map(|s| serde_json::json!({
                "protocol": s.protocol, "seed": s.seed,
            })),
        })
    }
}

/// Number of weights stored in the graph: the elements of its floating-point and 8-bit
/// initializers and `Constant` tensors (integer shape and axis constants and single values are
/// not weights).
fn count_initializers(model_bytes: &[u8]) -> Result<u64, String> {
    use pb::tensor_proto::DataType;
    let proto = pb::ModelProto::decode(model_bytes).map_err(|e| e.to_string())?;
    let Some(graph) = proto.graph else {
        return Err("the model has no graph".into());
    };
    let size = |what: String, t: &pb::TensorProto| -> Result<u64, String> {
        let weight = [
            DataType::Float,
            DataType::Float16,
            DataType::Bfloat16,
            DataType::Double,
            DataType::Int8,
            DataType::Uint8,
        ]
        .iter()
        .any(|&d| t.data_type == d as i32);
        // The dims are the file's word, not its data: a product past u64 is refused rather
        // than wrapped (or a debug-build panic).
        let n = element_count(&t.dims)
            .ok_or_else(|| format!("{what} declares dims {:?}: no valid element count", t.dims))?;
        // Single values (an epsilon, a 1.0 for a division) are constants of the graph's
        // arithmetic, not learned weights.
        Ok(if weight && n > 1 { n } else { 0 })
    };
    let initializers = graph
        .initializer
        .iter()
        .map(|t| (format!("initializer `{}`", t.name), t));
    let constants = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .flat_map(|n| n.attribute.iter().map(move |a| (n, a)))
        .filter_map(|(n, a)| Some((format!("`Constant` `{}`", n.name), a.t.as_ref()?)));
    initializers
        .chain(constants)
        .try_fold(0u64, |total, (what, t)| {
            total
                .checked_add(size(what, t)?)
                .ok_or_else(|| "the graph's weights count more than 2^64 elements".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{write_bundle, ItemVocab, Manifest, Role};
    use crate::onnx::{Activation, MeanMlpWeights, ModelWeights};

    /// A dataset whose item ids are a permutation of a bundle's vocabulary (plus items the
    /// bundle has and the data lacks): the teacher's scores must follow the ids, not positions.
    #[test]
    fn scores_follow_item_ids_through_a_permuted_vocabulary() {
        let tmp = tempfile::tempdir().unwrap();
        // Bundle vocabulary: rows 1..=6 are ids a..f; bias = 10 × row, so each id's score is
        // known; history is ignored (zero item matrix).
        let ids = ["a", "b", "c", "d", "e", "f"];
        let n_rows = ids.len() + 1;
        let weights = ModelWeights::MeanMlp(MeanMlpWeights {
            n_rows,
            dim: 1,
            embedding: vec![0.0; n_rows],
            layers: Vec::new(),
            activation: Activation::Relu,
            item_matrix_t: vec![0.0; n_rows],
            item_bias: (0..n_rows).map(|r| 10.0 * r as f32).collect(),
        });
        let vocab = ItemVocab::new(ids.iter().map(|i| (i.to_string(), None)).collect());
        let mut manifest = Manifest::new("ext", Role::Teacher, n_rows, weights.architecture());
        manifest.parameters = weights.parameter_count();
        let dir = write_bundle(tmp.path(), manifest, &weights.to_onnx(), &vocab, None).unwrap();

        let inter = tmp.path().join("d.inter");
        std::fs::write(
            &inter,
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
             u1\te\t1\t1\nu1\tb\t1\t2\nu2\tf\t1\t3\nu2\ta\t1\t4\n",
        )
        .unwrap();
        let data = crate::data::read_interactions(&inter, crate::data::Format::Auto, None).unwrap();
        assert_eq!(data.item_ids, ["e", "b", "f", "a"]);
        let t = ExternalTeacher::load(&dir, &data).unwrap();
        assert_eq!(t.rows_of(&[0, 1, 2, 3]), [5, 2, 6, 1]);
        let scores = t.score(&[vec![0, 1], vec![]]).unwrap();
        assert_eq!(scores, [50.0, 20.0, 60.0, 10.0, 50.0, 20.0, 60.0, 10.0]);
        // Counted from the graph: embedding, item matrix and bias, as the exporter declares.
        assert_eq!(t.parameters, weights.parameter_count());

        // A dataset item the bundle lacks is refused by name.
        std::fs::write(
            &inter,
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
             u1\ta\t1\t1\nu1\tzz\t1\t2\n",
        )
        .unwrap();
        let data = crate::data::read_interactions(&inter, crate::data::Format::Auto, None).unwrap();
        let err = ExternalTeacher::load(&dir, &data)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("lacks 1 of the 2 items") && err.contains("`zz`"),
            "{err}"
        );
    }

    /// A graph whose initializer declares dims multiplying past `u64` is refused with the
    /// tensor named (the count would otherwise panic in a debug build and wrap in release).
    #[test]
    fn an_initializer_whose_element_count_overflows_is_refused() {
        use pb::tensor_proto::DataType;
        let tmp = tempfile::tempdir().unwrap();
        let graph = pb::GraphProto {
            name: "overflow".into(),
            initializer: vec![pb::TensorProto {
                name: "w".into(),
                dims: vec![1 << 40, 1 << 40],
                data_type: DataType::Float as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            graph: Some(graph),
            ..Default::default()
        };
        let vocab = ItemVocab::new(vec![("a".into(), None), ("b".into(), None)]);
        let arch = ModelWeights::MeanMlp(MeanMlpWeights::random(3, 2, &[], 1)).architecture();
        let manifest = Manifest::new("ext", Role::Teacher, 3, arch);
        let dir = write_bundle(tmp.path(), manifest, &model.encode_to_vec(), &vocab, None).unwrap();

        let inter = tmp.path().join("d.inter");
        std::fs::write(
            &inter,
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ta\t1\t1\n",
        )
        .unwrap();
        let data = crate::data::read_interactions(&inter, crate::data::Format::Auto, None).unwrap();
        let err = ExternalTeacher::load(&dir, &data)
            .err()
            .expect("an overflowing initializer is refused")
            .to_string();
        assert!(err.contains("initializer `w`"), "{err}");
    }
}
