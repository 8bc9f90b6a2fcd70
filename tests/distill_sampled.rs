//! The sampled trainer end to end on a small generated log, and the memory planner refusing a
//! job before it allocates anything.
#![cfg(feature = "train")]

use clap::Parser;
use distilrec::bundle::{list_versions, Bundle, Role};
use distilrec::train::{run, Config, Outcome};

mod train_support;
use train_support::synthetic_inter;

fn args(data: &std::path::Path, root: &std::path::Path, extra: &[&str]) -> Config {
    let mut a: Vec<String> = [
        "distill",
        "--data",
        data.to_str().unwrap(),
        "--models",
        root.join("models").to_str().unwrap(),
        "--run-dir",
        root.join("run").to_str().unwrap(),
        "--name",
        "toy",
        "--mode",
        "sampled",
        "--teacher-dim",
        "32",
        "--sampled-teacher-hidden",
        "32",
        "--sampled-sweep-dims",
        "2,4",
        "--max-param-ratio",
        "0.5",
        "--sampled-max-epochs",
        "6",
        "--sampled-patience",
        "6",
        "--sampled-batch-size",
        "16",
        "--negatives",
        "16",
        "--sampled-lr",
        "0.01",
        "--kd-top-k",
        "10",
        "--parity-users",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    Config::parse_from(a)
}

#[test]
fn the_sampled_trainer_reports_exports_and_its_bundles_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("toy.inter");
    synthetic_inter(&data);
    let outcome = run(args(&data, tmp.path(), &[])).unwrap();
    let Outcome::Sampled(report) = outcome else {
        panic!("--mode sampled ran the dense trainer")
    };
    let names: Vec<&str> = report.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "popularity",
            "teacher-mlp",
            "student-d2",
            "student-d2-kd",
            "student-d4",
            "student-d4-kd"
        ]
    );
    // Every model is evaluated on real metrics; the teacher learns the planted groups.
    let ndcg = |n: &str| report.models.iter().find(|m| m.name == n).unwrap().test["ndcg@10"];
    assert!(ndcg("teacher-mlp") > ndcg("popularity"), "{names:?}");
    for m in &report.models {
        assert!(m.test["ndcg@10"].is_finite() && m.valid["ndcg@10"].is_finite());
    }
    assert_eq!(report.sweep.len(), 2);
    // The exported student's encoder matches the training forward in tract.
    assert_eq!(report.parity.len(), 2);
    assert!(report.parity.iter().all(|p| p.max_abs_diff <= p.tolerance));
    let md = std::fs::read_to_string(tmp.path().join("run/report.md")).unwrap();
    assert!(md.contains("| student-d4-kd |") && md.contains("Plan against what happened"));
    // Both bundles load as the server loads them.
    let models = tmp.path().join("models");
    for (name, role) in [("toy", Role::Student), ("toy-teacher", Role::Teacher)] {
        let v = list_versions(&models, name);
        assert_eq!(v, vec![1], "{name}");
        let b = Bundle::load(&models.join(name).join("1")).unwrap();
        assert_eq!(b.manifest.role, role);
        assert_eq!(b.manifest.n_rows, 41);
    }
}

#[test]
fn a_plan_over_max_memory_is_refused_before_anything_is_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("toy.inter");
    synthetic_inter(&data);
    // The default teacher's dense layers alone (256·512 + 512·256 weights, with Adam moments)
    // are several MB.
    let mut config = args(&data, tmp.path(), &["--max-memory", "1M"]);
    config.teacher_dim = 256;
    config.sampled_teacher_hidden = vec![512, 256];
    let err = run(config).expect_err("over budget").to_string();
    assert!(
        err.contains("does not fit") && err.contains("--max-memory"),
        "{err}"
    );
    assert!(!tmp.path().join("run").exists(), "nothing was written");
    assert!(!tmp.path().join("models").exists(), "nothing was exported");
    // A budget smaller than reading the file stops before the file is read.
    let err = run(args(&data, tmp.path(), &["--max-memory", "1k"]))
        .expect_err("even reading is over budget")
        .to_string();
    assert!(
        err.contains("reading") && err.contains("--max-memory"),
        "{err}"
    );
}

#[test]
fn a_teacher_no_better_than_popularity_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("popular.inter");
    // Every user reads the same 12 items and a few of 28 others: popularity ranks almost
    // perfectly, a teacher left at random weights cannot.
    let mut text = String::from("user_id:token\titem_id:token\trating:float\ttimestamp:float\n");
    for u in 0..60u32 {
        for i in 0..12u32 {
            text.push_str(&format!("u{u}\ti{i}\t4\t{}\n", u * 100 + i));
        }
        for k in 0..3u32 {
            let i = 12 + (u * 7 + k * 11) % 28;
            text.push_str(&format!("u{u}\ti{i}\t4\t{}\n", u * 100 + 50 + k));
        }
    }
    std::fs::write(&data, text).unwrap();
    // A learning rate that leaves the teacher at its random initialisation.
    let outcome = run(args(
        &data,
        tmp.path(),
        &["--sampled-teacher-lr", "1e-12", "--no-export"],
    ))
    .unwrap();
    let Outcome::Sampled(report) = outcome else {
        panic!("--mode sampled ran the dense trainer")
    };
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("teacher-mlp:") && w.contains("NOT ABOVE POPULARITY")),
        "{:?}",
        report.warnings
    );
    let md = std::fs::read_to_string(tmp.path().join("run/report.md")).unwrap();
    assert!(md.contains("TEACHER NOT ABOVE POPULARITY"));
}
