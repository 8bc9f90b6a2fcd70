//! `distill --teacher-bundle`: a teacher written by another tool (numpy + the `onnx` package,
//! scripts/itemknn_teacher.py) is loaded, mapped onto the data's items by id, evaluated next
//! to the built-in models and distilled from; a bundle lacking a data item is refused by name.
#![cfg(feature = "train")]

use std::path::Path;
use std::process::Command;

use clap::Parser;
use distilrec::bundle::Bundle;
use distilrec::train::{run, Config};

mod python_support;
mod train_support;
use python_support::python;
use train_support::synthetic_inter;

fn distill_args(data: &Path, tmp: &Path, teacher: &Path) -> Config {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    Config::parse_from([
        "distill".to_string(),
        "--data".into(),
        s(data),
        "--models".into(),
        s(&tmp.join("models")),
        "--run-dir".into(),
        s(&tmp.join("run")),
        "--name".into(),
        "toy".into(),
        "--teacher-bundle".into(),
        s(teacher),
        "--kd".into(),
        "logit".into(),
        "--max-epochs".into(),
        "4".into(),
        "--patience".into(),
        "4".into(),
        "--batch-size".into(),
        "16".into(),
        "--teacher-dim".into(),
        "16".into(),
        "--teacher-hidden".into(),
        "16".into(),
        "--student-dim".into(),
        "4".into(),
        "--student-hidden".into(),
        "4".into(),
        "--ease-lambdas".into(),
        "50".into(),
        "--max-param-ratio".into(),
        "0.5".into(),
        "--latency-iters".into(),
        "3".into(),
        "--parity-users".into(),
        "20".into(),
        "--sweep-dims".into(),
    ])
}

#[test]
fn a_teacher_written_with_the_onnx_package_is_evaluated_and_distilled_from() {
    let Some(py) = python(
        "distill_external_teacher",
        "scripts/itemknn_teacher.py (numpy + onnx)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("toy.inter");
    synthetic_inter(&data);
    // Vocabulary in reverse id order plus 3 items the data lacks: rows differ from the data's
    // item indices everywhere, so only a mapping by id gives the right scores.
    let teacher = tmp.path().join("itemknn");
    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/itemknn_teacher.py"))
        .args([data.as_os_str(), teacher.as_os_str()])
        .args([
            "--items-order",
            "reversed",
            "--extra-items",
            "3",
            "--neighbours",
            "20",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report = run(distill_args(&data, tmp.path(), &teacher))
        .unwrap()
        .into_dense();
    let row = |name: &str| {
        report
            .main
            .models
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let ext = row("teacher-external");
    let n_rows = report.dataset.n_items + 3 + 1;
    assert_eq!(report.dataset.n_items, 40);
    assert_eq!(
        (ext.role.as_str(), ext.kind.as_str()),
        ("teacher", "itemknn")
    );
    // S [n_rows, n_rows] is the only weight tensor (the int64 axes constant is not a weight).
    assert_eq!(ext.parameters, (n_rows * n_rows) as u64);
    let onnx_len = std::fs::metadata(teacher.join("model.onnx")).unwrap().len();
    assert_eq!(ext.onnx_bytes, Some(onnx_len));
    assert!(ext.latency_single_us.is_some() && ext.latency_batch32_us.is_some());
    // Item-kNN finds the taste groups; popularity cannot.
    let (knn, pop) = (ext.test["ndcg@10"], row("popularity").test["ndcg@10"]);
    assert!(knn > pop + 0.05, "item-kNN {knn} vs popularity {pop}");

    // It is the teacher distilled from, and the student's manifest says which bundle that was.
    assert_eq!(report.main.ratios.teacher, "teacher-external");
    assert_eq!(report.bundles["teacher"], teacher);
    let student = Bundle::load(&report.bundles["student"]).unwrap();
    let kd = &student.manifest.distillation.as_ref().unwrap()["kd"];
    assert_eq!(kd["teacher"], "teacher-external");
    assert_eq!(kd["teacher_bundle"]["name"], "itemknn");
    assert_eq!(kd["teacher_bundle"]["parameters_counted"], n_rows * n_rows);
    // Built-in models are still parity-checked; the external graph has no training forward and
    // the ensemble no graph.
    let checked = report
        .main
        .models
        .iter()
        .filter(|m| !["teacher-external", "teacher-ensemble"].contains(&m.name.as_str()));
    assert_eq!(report.parity.len(), checked.count());

    // A data item the teacher never saw: refused before anything is trained, naming the item.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("u0\tnew-item\t4\t1\n");
    std::fs::write(&data, text).unwrap();
    let err = run(distill_args(&data, tmp.path(), &teacher))
        .expect_err("a teacher lacking an item is refused")
        .to_string();
    assert!(
        err.contains("lacks 1 of the 41 items") && err.contains("`new-item`"),
        "{err}"
    );
}
