//! End-to-end: the real `distill` binary on MovieLens-100K with a small epoch budget.
//! The data file comes from `DISTILREC_ML100K` (see scripts/fetch-ml100k.sh); set
//! `DISTILREC_SKIP_DATA=1` to skip on machines without it.
#![cfg(feature = "train")]

mod data_support;

use std::path::Path;
use std::process::Command;

use distilrec::bundle::{Bundle, Role};
use distilrec::onnx::bundle_scores;
use serde_json::Value;

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("report.json has no number at {path}"))
}

#[test]
fn distill_binary_on_movielens_beats_popularity_and_exports_matching_bundles() {
    let Some(data) = data_support::ml100k("the MovieLens end-to-end run") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let run_dir = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .arg("--data")
        .arg(&data)
        .arg("--models")
        .arg(&models)
        .arg("--run-dir")
        .arg(&run_dir)
        .args([
            "--name",
            "ml-100k",
            "--quick",
            "--max-epochs",
            "12",
            "--kd",
            "logit,rank",
            // The sweep is covered by distill_synthetic; here it would only add CI minutes.
            "--sweep-dims",
        ])
        .env_remove("DISTILREC_EXTRA_SEEDS")
        .output()
        .expect("distill binary runs");
    assert!(
        out.status.success(),
        "distill failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("report.json")).unwrap()).unwrap();
    let kd = f(&report, "/main/ratios/kd_student_test_ndcg10");
    let pop = f(&report, "/main/ratios/popularity_test_ndcg10");
    assert!(
        kd > pop,
        "KD student NDCG@10 {kd} does not beat popularity {pop}"
    );
    assert!(f(&report, "/main/ratios/param_ratio") <= 0.10);
    for p in report["parity"].as_array().unwrap() {
        assert!(f(p, "/max_abs_diff") <= f(p, "/tolerance"), "{p}");
    }
    for file in [
        "report.md",
        "curves.png",
        "split/train.tsv",
        "split/valid.tsv",
        "split/test.tsv",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }

    let student = Bundle::load(Path::new(report["bundles"]["student"].as_str().unwrap())).unwrap();
    let teacher = Bundle::load(Path::new(report["bundles"]["teacher"].as_str().unwrap())).unwrap();
    assert_eq!(student.manifest.role, Role::Student);
    assert_eq!(teacher.manifest.role, Role::Teacher);
    assert_eq!(student.manifest.name, "ml-100k");
    assert_eq!(teacher.manifest.name, "ml-100k-teacher");
    assert!(student.manifest.parameters * 10 <= teacher.manifest.parameters);
    assert!(student.users.as_ref().is_some_and(|u| !u.is_empty()));

    // The bundle on disk, loaded independently, reproduces the training framework's scores
    // that the job recorded for a sample of users.
    let (sample, users) = data_support::parity_sample(&run_dir);
    assert_eq!(sample["model"], "student");
    // The student is exported as a two-tower bundle (user encoder + items.f32) by default.
    assert!(student.manifest.is_two_tower(), "student format");
    assert!(!teacher.manifest.is_two_tower(), "teacher format");
    assert!(!users.is_empty());
    for u in &users {
        let rows: Vec<u32> = u.history_rows.iter().map(|&r| r as u32).collect();
        let want = &u.scores;
        let got = bundle_scores(&student, &[&rows]).unwrap();
        assert_eq!(got.len(), want.len());
        for (row, (g, w)) in got.iter().zip(want).enumerate().skip(1) {
            assert!(
                (*g as f64 - w).abs() <= 1e-4,
                "user {}, row {row}: {g} vs {w}",
                u.user_id
            );
        }
    }
}
