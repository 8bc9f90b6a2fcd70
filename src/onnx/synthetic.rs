//! Real bundles around synthetic weights, for server tests and catalogue-size benchmarks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ModelWeights;
use crate::bundle::{write_bundle, BundleError, ItemVocab, Manifest, Role, UserHistories};

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
    fn second_write_is_a_new_version() {
        let repo = tempfile::tempdir().unwrap();
        let w = ModelWeights::Ease(EaseWeights::random(3, 0));
        write_synthetic_bundle(repo.path(), "e", &w, Role::Baseline).unwrap();
        let d = write_synthetic_bundle(repo.path(), "e", &w, Role::Baseline).unwrap();
        assert_eq!(Bundle::load(&d).unwrap().manifest.version, 2);
    }
}
