//! The exported graphs pass the reference ONNX checker and onnxruntime computes the same scores
//! as tract: a second, independent runtime, so a bundle is not "valid" only for tract.
//!
//! Needs a Python with onnx, onnxruntime and numpy in `DISTILREC_PYTHON` (see the header of
//! `scripts/onnx_check.py`); `DISTILREC_SKIP_PYTHON=1` skips it explicitly.

use std::path::Path;
use std::process::Command;

use distilrec::bundle::{Bundle, Role};

mod python_support;
use distilrec::onnx::{
    bundle_scores, write_synthetic_bundle, write_synthetic_two_tower, write_synthetic_two_tower_as,
    Activation, EaseWeights, MeanMlpWeights, ModelWeights, Precision,
};
use python_support::python;

fn check_bundle(python: &Path, dir: &Path, histories: &[Vec<u32>]) {
    let bundle = Bundle::load(dir).expect("synthetic bundle loads");
    let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
    let flat = bundle_scores(&bundle, &refs).expect("tract scores");
    let rows: Vec<&[f32]> = flat.chunks(bundle.manifest.n_rows).collect();
    let expected = serde_json::json!({ "histories": histories, "scores": rows });
    let json_path = dir.with_extension("expected.json");
    std::fs::write(&json_path, serde_json::to_vec(&expected).unwrap()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/onnx_check.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(dir)
        .arg(&json_path)
        .args(["--tol", "1e-4"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "onnx_check.py failed for {}:\n{stdout}\n{stderr}",
        dir.display()
    );
    eprintln!("{}", stdout.trim());
}

fn histories(n_rows: u32) -> Vec<Vec<u32>> {
    vec![
        vec![1],
        vec![],
        vec![2, n_rows - 1, 3, 0, 5],
        vec![0, 0],
        (1..n_rows).step_by(3).collect(),
        vec![n_rows - 1, n_rows - 1],
    ]
}

#[test]
fn onnxruntime_agrees_with_tract_on_both_families() {
    let Some(python) = python(
        "onnx_runtime_parity",
        "scripts/onnx_check.py with onnx + onnxruntime",
    ) else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let mut tanh = MeanMlpWeights::random(57, 6, &[10], 4);
    tanh.activation = Activation::Tanh;
    let models = [
        (
            "mlp",
            ModelWeights::MeanMlp(MeanMlpWeights::random(101, 8, &[16, 12], 1)),
        ),
        ("mlp-tanh", ModelWeights::MeanMlp(tanh)),
        (
            "mlp-linear",
            ModelWeights::MeanMlp(MeanMlpWeights::random(33, 5, &[], 2)),
        ),
        ("ease", ModelWeights::Ease(EaseWeights::random(64, 3))),
    ];
    for (name, weights) in &models {
        let dir = write_synthetic_bundle(repo.path(), name, weights, Role::Student).unwrap();
        check_bundle(&python, &dir, &histories(weights.n_rows() as u32));
    }
}

/// Format 2: onnxruntime runs the user encoder, numpy reads items.f32, and the scores equal
/// tract's encoder + the Rust item matrix.
#[test]
fn onnxruntime_agrees_on_two_tower_bundles() {
    let Some(python) = python(
        "onnx_runtime_parity",
        "scripts/onnx_check.py with onnx + onnxruntime",
    ) else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    for (name, w) in [
        ("tt", MeanMlpWeights::random(101, 8, &[16, 12], 5)),
        ("tt-linear", MeanMlpWeights::random(40, 6, &[], 6)),
    ] {
        let dir = write_synthetic_two_tower(repo.path(), name, &w, Role::Student, None).unwrap();
        check_bundle(&python, &dir, &histories(w.n_rows as u32));
    }
}

/// The int8 export: its encoder gathers int8 embedding rows and dequantises them in the graph,
/// and its item side is `items.i8`; onnxruntime and numpy compute what tract and the server do.
#[test]
fn onnxruntime_agrees_on_int8_two_tower_bundles() {
    let Some(python) = python(
        "onnx_runtime_parity",
        "scripts/onnx_check.py with onnx + onnxruntime",
    ) else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let w = MeanMlpWeights::random(101, 8, &[16, 12], 7);
    let dir = write_synthetic_two_tower_as(
        repo.path(),
        "tt-int8",
        &w,
        Role::Student,
        None,
        Precision::Int8,
    )
    .unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("items.i8"), "{manifest}");
    check_bundle(&python, &dir, &histories(w.n_rows as u32));
}
