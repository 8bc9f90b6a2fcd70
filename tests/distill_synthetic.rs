//! The whole distillation job on a tiny synthetic dataset (runs everywhere, no download):
//! every model and KD variant is trained, reported, exported and parity-checked.
#![cfg(feature = "train")]

use std::fmt::Write as _;

use clap::Parser;
use distilrec::bundle::{list_versions, Bundle, Role};
use distilrec::train::{run, Config};

/// 60 users in 3 taste groups over 40 items: each user mostly rates items of its group.
fn synthetic_inter(path: &std::path::Path) {
    let mut s = String::from("user_id:token\titem_id:token\trating:float\ttimestamp:float\n");
    let mut x: u64 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for u in 0..60u64 {
        let group = u % 3;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 15 {
            let item = if next() % 5 == 0 {
                next() % 40
            } else {
                group * 13 + next() % 13
            };
            seen.insert(item);
        }
        for (t, item) in seen.iter().enumerate() {
            let _ = writeln!(
                s,
                "u{u}\ti{item}\t4\t{}",
                1_000_000 + t as u64 * 60 + next() % 50
            );
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn every_model_is_trained_reported_exported_and_parity_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("toy.inter");
    synthetic_inter(&data);
    let models = tmp.path().join("models");
    let run_dir = tmp.path().join("run");
    let config = Config::parse_from([
        "distill",
        "--data",
        data.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--name",
        "toy",
        "--max-epochs",
        "4",
        "--patience",
        "4",
        "--batch-size",
        "16",
        "--teacher-dim",
        "32",
        "--teacher-hidden",
        "32",
        "--student-dim",
        "4",
        "--student-hidden",
        "4",
        "--ease-lambdas",
        "5,50",
        "--max-param-ratio",
        "0.5",
        "--latency-iters",
        "3",
        "--parity-users",
        "20",
        "--extra-seeds",
        "7",
    ]);
    let report = run(config).unwrap();

    let names: Vec<&str> = report.main.models.iter().map(|m| m.name.as_str()).collect();
    for want in [
        "popularity",
        "teacher-ease",
        "teacher-mlp",
        "student",
        "student-kd-logit",
        "student-kd-rank",
        "student-kd-hidden",
        "student-kd-combined",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for m in &report.main.models {
        assert!(
            m.test.contains_key("ndcg@10") && m.valid.contains_key("recall@20"),
            "{}",
            m.name
        );
        assert!(m.onnx_bytes.is_some_and(|b| b > 0), "{}", m.name);
        assert!(m.latency_single_us.is_some() && m.latency_batch32_us.is_some());
        if m.kind == "mean_mlp" && m.name != "popularity" {
            assert!(!m.curve.is_empty() && m.curve.len() <= 4, "{}", m.name);
            assert_eq!(m.epochs, Some(m.curve.len()));
        }
    }
    assert_eq!(report.parity.len(), report.main.models.len());
    for p in &report.parity {
        assert!(p.max_abs_diff <= 1e-4, "{p:?}");
    }
    assert_eq!(report.extra.len(), 1);
    assert_eq!(report.extra[0].seed, 7);

    let student = Bundle::load(&report.bundles["student"]).unwrap();
    let teacher = Bundle::load(&report.bundles["teacher"]).unwrap();
    assert_eq!(student.manifest.role, Role::Student);
    assert_eq!(teacher.manifest.role, Role::Teacher);
    assert_eq!(student.manifest.n_rows, report.dataset.n_items + 1);
    assert!(student.manifest.is_two_tower() && student.item_matrix.is_some());
    // Every engine evaluated on the exported student; exact is the reference.
    let engines: Vec<&str> = report.engines.iter().map(|e| e.engine.as_str()).collect();
    assert_eq!(engines, ["exact", "int8", "ann"]);
    assert!((report.engines[0].ndcg10_vs_exact - 1.0).abs() < 1e-12);
    for e in &report.engines {
        assert!(e.test["ndcg@10"] > 0.0, "{}", e.engine);
    }
    assert!(student.items.row("i1").is_some());
    assert!(student.manifest.metrics.contains_key("ndcg@10"));
    assert_eq!(student.manifest.split.as_ref().unwrap().seed, 2020);
    assert!(student.manifest.distillation.is_some());
    assert_eq!(list_versions(&models, "toy"), vec![1]);
    assert_eq!(list_versions(&models, "toy-teacher"), vec![1]);
    assert_eq!(student.users.as_ref().unwrap().len(), 60);

    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("Over seeds") && md.contains("student-kd-rank"));
    assert!(md.contains("Serving engines"));
    assert!(run_dir.join("report.json").is_file() && run_dir.join("curves.png").is_file());
    assert!(run_dir.join("split/train.tsv").is_file());
}
