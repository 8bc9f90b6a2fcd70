//! Real bundles around synthetic weights, for server tests and catalogue-size benchmarks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::export::Precision;
use super::weights::{MeanMlpWeights, ModelWeights};
use crate::bundle::{
    write_bundle, write_bundle_with, BundleError, ItemVocab, Manifest, Role, UserHistories,
    ITEM_MATRIX_INT8_FILE,
};
use crate::engine::{EngineParams, ItemMatrix, DTYPE_INT8};

/// Number of users written by [`write_synthetic_bundle`] (`u1`..`u5`).
pub const SYNTHETIC_USERS: usize = 5;

/// Vocabulary `i1`..`iN` titled `Item 1`..`Item N` for a model of `n_rows` rows.
pub fn synthetic_items(n_rows: usize) -> ItemVocab {
    ItemVocab::new(
        (1..n_rows)
            .map(|i| (format!("i{i}"), Some(format!("Item {i}"))))
            .collect(),
    )
}

/// Users `u1`..`u5` with short deterministic histories; user `uk` has `k` items, all within
/// `1..n_rows` (they may repeat when the catalogue is tiny).
pub fn synthetic_users(n_rows: usize) -> UserHistories {
    let n_items = n_rows.saturating_sub(1).max(1) as u64;
    let map: HashMap<String, Vec<u32>> = (1..=SYNTHETIC_USERS)
        .map(|k| {
            let history = (0..k as u64)
                // A fixed odd stride spreads the histories over the catalogue.
                .map(|j| ((k as u64 * 7919 + j * 104_729) % n_items + 1) as u32)
                .collect();
            (format!("u{k}"), history)
        })
        .collect();
    UserHistories::new(map)
}

/// Writes `weights` as a new version of `repo/<name>/` with the synthetic vocabulary and users,
/// a manifest with role, architecture and parameter count, and returns the version directory.
///
/// # Panics
/// If the weights are internally inconsistent (see [`ModelWeights::to_onnx`]).
pub fn write_synthetic_bundle(
    repo: &Path,
    name: &str,
    weights: &ModelWeights,
    role: Role,
) -> Result<PathBuf, BundleError> {
    let n_rows = weights.n_rows();
    let mut manifest = Manifest::new(name, role, n_rows, weights.architecture());
    manifest.parameters = weights.parameter_count();
    let onnx = weights.to_onnx();
    let users = (n_rows > 1).then(|| synthetic_users(n_rows));
    write_bundle(
        repo,
        manifest,
        &onnx,
        &synthetic_items(n_rows),
        users.as_ref(),
    )
}

/// Writes `weights` as a two-tower (format 2) bundle: the user-encoder ONNX plus `items.f32`,
/// with `serving` as the manifest's engine choice (`None`: the default, exact).
pub fn write_synthetic_two_tower(
    repo: &Path,
    name: &str,
    weights: &MeanMlpWeights,
    role: Role,
    serving: Option<EngineParams>,
) -> Result<PathBuf, BundleError> {
    write_synthetic_two_tower_as(repo, name, weights, role, serving, Precision::F32)
}

/// [`write_synthetic_two_tower`] at either precision: [`Precision::Int8`] writes the encoder
/// with int8 weights and the item side as `items.i8` (what `distill` exports as `<name>-int8`).
pub fn write_synthetic_two_tower_as(
    repo: &Path,
    name: &str,
    weights: &MeanMlpWeights,
    role: Role,
    serving: Option<EngineParams>,
    precision: Precision,
) -> Result<PathBuf, BundleError> {
    let arch = ModelWeights::MeanMlp(weights.clone());
    let mut manifest = Manifest::two_tower(
        name,
        role,
        weights.n_rows,
        weights.d_last(),
        true,
        arch.architecture(),
    );
    manifest.parameters = arch.parameter_count();
    manifest.serving = serving;
    let onnx = match precision {
        Precision::F32 => weights.to_encoder_onnx(),
        Precision::Int8 => {
            if let Some(side) = manifest.item_side.as_mut() {
                side.file = ITEM_MATRIX_INT8_FILE.into();
                side.dtype = DTYPE_INT8.into();
            }
            weights.to_encoder_onnx_int8()
        }
    };
    let users = synthetic_users(weights.n_rows);
    write_bundle_with(
        repo,
        manifest,
        &onnx,
        &synthetic_items(weights.n_rows),
        Some(&users),
        Some(&weights.item_matrix()),
    )
}

impl MeanMlpWeights {
    /// Replaces the item side (vectors and bias) with `items`, e.g. a clustered catalogue.
    ///
    /// # Panics
    /// If `items` does not have this model's rows and output width.
    pub fn set_item_matrix(&mut self, items: &ItemMatrix) {
        let (d, n) = (self.d_last(), self.n_rows);
        assert!(items.n_rows() == n && items.dim() == d, "item matrix shape");
        for r in 0..n {
            for (k, &x) in items.row(r).iter().enumerate() {
                self.item_matrix_t[k * n + r] = x;
            }
        }
        self.item_bias = items.bias().to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Bundle;
    use crate::onnx::{EaseWeights, MeanMlpWeights, OnnxScorer};

    #[test]
    fn synthetic_bundle_loads_and_serves() {
        let repo = tempfile::tempdir().unwrap();
        let w = ModelWeights::MeanMlp(MeanMlpWeights::random(40, 8, &[16], 5));
        let dir = write_synthetic_bundle(repo.path(), "syn", &w, Role::Student).unwrap();
        let b = Bundle::load(&dir).unwrap();
        assert_eq!(b.manifest.n_rows, 40);
        assert_eq!(b.manifest.parameters, w.parameter_count());
        assert_eq!(b.manifest.architecture.kind, "mean_mlp");
        assert_eq!(b.items.row("i39"), Some(39));
        assert_eq!(b.items.title(39), Some("Item 39"));
        let users = b.users.as_ref().unwrap();
        assert_eq!(users.len(), SYNTHETIC_USERS);
        let h = users.get("u3").unwrap();
        assert_eq!(h.len(), 3);
        let scorer = OnnxScorer::load(&b.model_bytes, b.manifest.n_rows).unwrap();
        let got = scorer.score_batch(&[h]).unwrap();
        let want = w.score_reference(h);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
    }

    #[test]
    fn two_tower_bundle_scores_like_the_full_model() {
        let repo = tempfile::tempdir().unwrap();
        let mut w = MeanMlpWeights::random(300, 8, &[16], 5);
        w.set_item_matrix(&crate::engine::synthetic::clustered_items(300, 16, 4, 1));
        let dir = write_synthetic_two_tower(repo.path(), "tt", &w, Role::Student, None).unwrap();
        let b = Bundle::load(&dir).unwrap();
        assert!(b.manifest.is_two_tower());
        let m = b.item_matrix.as_ref().unwrap();
        assert_eq!((m.n_rows(), m.dim()), (300, 16));
        let enc = OnnxScorer::load_encoder(&b.model_bytes, 300, 16).unwrap();
        let h: &[u32] = &[3, 7, 0, 250];
        let u = enc.score_batch(&[h]).unwrap();
        let full = ModelWeights::MeanMlp(w).score_reference(h);
        for (r, want) in full.iter().enumerate() {
            assert!((m.score(&u, r) - want).abs() < 1e-4, "row {r}");
        }
        // The format-1 loader refuses the encoder: its output is not `scores`.
        assert_eq!(
            OnnxScorer::load(&b.model_bytes, 300).unwrap_err().kind(),
            "contract"
        );
    }

    #[test]
    fn second_write_is_a_new_version() {
        let repo = tempfile::tempdir().unwrap();
        let w = ModelWeights::Ease(EaseWeights::random(3, 0));
        write_synthetic_bundle(repo.path(), "e", &w, Role::Baseline).unwrap();
        let d = write_synthetic_bundle(repo.path(), "e", &w, Role::Baseline).unwrap();
        assert_eq!(Bundle::load(&d).unwrap().manifest.version, 2);
    }
}
