//! The whole distillation job on a tiny synthetic dataset (runs everywhere, no download):
//! every model and KD variant is trained, reported, exported and parity-checked.
#![cfg(feature = "train")]

use clap::Parser;
use distilrec::bundle::{list_versions, Bundle, Role};
use distilrec::onnx::OnnxScorer;
use distilrec::train::{run, Config};

mod train_support;
use train_support::synthetic_inter;

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
        "--sweep-dims",
        "2,4",
    ]);
    let report = run(config).unwrap().into_dense();

    let names: Vec<&str> = report.main.models.iter().map(|m| m.name.as_str()).collect();
    for want in [
        "popularity",
        "teacher-ease",
        "teacher-mlp",
        "teacher-ensemble",
        "student",
        "student-kd-logit",
        "student-kd-rank",
        "student-kd-hidden",
        "student-kd-combined",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // The ensemble teacher exists only as KD targets: no ONNX graph, no latency, no parity.
    let has_graph = |name: &str| name != "teacher-ensemble";
    for m in &report.main.models {
        assert!(
            m.test.contains_key("ndcg@10") && m.valid.contains_key("recall@20"),
            "{}",
            m.name
        );
        assert_eq!(
            m.onnx_bytes.is_some_and(|b| b > 0),
            has_graph(&m.name),
            "{}",
            m.name
        );
        assert_eq!(m.latency_single_us.is_some(), has_graph(&m.name));
        if m.kind == "mean_mlp" && m.name != "popularity" {
            assert!(!m.curve.is_empty() && m.curve.len() <= 4, "{}", m.name);
            assert_eq!(m.epochs, Some(m.curve.len()));
        }
    }
    let with_graph = report.main.models.iter().filter(|m| has_graph(&m.name));
    assert_eq!(report.parity.len(), with_graph.count());
    let model = |name: &str| report.main.models.iter().find(|m| m.name == name).unwrap();
    let ens = model("teacher-ensemble");
    assert_eq!(
        ens.parameters,
        model("teacher-ease").parameters + model("teacher-mlp").parameters
    );
    assert!([0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5].contains(&ens.settings["w"].as_f64().unwrap()));
    for p in &report.parity {
        assert!(p.max_abs_diff <= 1e-4, "{p:?}");
    }
    assert_eq!(report.extra.len(), 1);
    assert_eq!(report.extra[0].seed, 7);
    // Size sweep on both seeds; width 4 is the main student, its rows reused.
    for seed in std::iter::once(&report.main).chain(&report.extra) {
        let dims: Vec<usize> = seed.sweep.iter().map(|p| p.dim).collect();
        assert_eq!(dims, [2, 4]);
        let student = seed.models.iter().find(|m| m.name == "student").unwrap();
        let kd = seed
            .models
            .iter()
            .find(|m| m.name == seed.ratios.kd_student)
            .unwrap();
        let d4 = &seed.sweep[1];
        assert_eq!(d4.student_test_ndcg10, student.test["ndcg@10"]);
        assert_eq!(d4.kd_test_ndcg10, kd.test["ndcg@10"]);
        assert_eq!(d4.parameters, kd.parameters);
        assert!(seed.sweep[0].parameters < d4.parameters);
    }
    assert!(run_dir.join("size-sweep.png").exists());

    let student = Bundle::load(&report.bundles["student"]).unwrap();
    assert_eq!(student.manifest.role, Role::Student);
    // The teacher bundle: the distilling teacher, or the best one with a graph when that is
    // the ensemble (KD targets only).
    let teacher = Bundle::load(&report.bundles["teacher"]).unwrap();
    assert_eq!(teacher.manifest.role, Role::Teacher);
    assert_eq!(list_versions(&models, "toy-teacher"), vec![1]);
    let exported = if has_graph(&report.main.ratios.teacher) {
        report.main.ratios.teacher.clone()
    } else {
        let teachers = report
            .main
            .models
            .iter()
            .filter(|m| m.role == distilrec::bundle::Role::Teacher);
        let best = teachers
            .filter(|m| has_graph(&m.name))
            .max_by(|a, b| a.valid["ndcg@10"].total_cmp(&b.valid["ndcg@10"]));
        best.unwrap().name.clone()
    };
    let kind = report
        .main
        .models
        .iter()
        .find(|m| m.name == exported)
        .unwrap();
    assert_eq!(teacher.manifest.architecture.kind, kind.kind);
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
    assert_eq!(student.users.as_ref().unwrap().len(), 60);

    // The int8 export: its own model next to the f32 one, read back and compared by distill,
    // and here again independently: scores through both bundles' encoders in tract.
    let int8 = Bundle::load(&report.bundles["student-int8"]).unwrap();
    assert_eq!(list_versions(&models, "toy-int8"), vec![1]);
    let side = int8.manifest.item_side.as_ref().unwrap();
    assert_eq!(
        (side.dtype.as_str(), side.file.as_str()),
        ("int8_row_scaled", "items.i8")
    );
    let f32_dir = &report.bundles["student"];
    let size = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().len();
    assert!(
        size(report.bundles["student-int8"].join("items.i8")) < size(f32_dir.join("items.f32"))
    );
    // What the runtime holds of each encoder: the int8 one keeps its embedding table as codes.
    // (The ONNX files themselves are about the same size at this toy width: the int8 graph's
    // extra dequantising nodes cost as many bytes as its codes save.)
    let held = |b: &Bundle| {
        let dim = b.manifest.item_side.as_ref().unwrap().dim;
        OnnxScorer::load_encoder(&b.model_bytes, b.manifest.n_rows, dim)
            .unwrap()
            .constant_bytes()
    };
    assert!(
        held(&int8) < held(&student),
        "{} vs {}",
        held(&int8),
        held(&student)
    );
    let q = report.quantised.as_ref().expect("int8 export compared");
    let precisions: Vec<&str> = q.rows.iter().map(|r| r.precision.as_str()).collect();
    assert_eq!(precisions, ["f32", "int8"]);
    assert!(q.max_abs_diff > 0.0 && q.ratio <= q.bound, "{q:?}");
    assert!(q
        .rows
        .iter()
        .all(|r| r.test["ndcg@10"] > 0.0 && r.latency_single_us > 0.0));
    // Published only after the check, from its scratch candidate, with its own measured metrics.
    assert_eq!(q.rows[1].bundle, report.bundles["student-int8"]);
    assert!(!run_dir.join("int8-candidate").exists());
    // (serde_json's default float parsing may differ in the last bit.)
    let published = &int8.manifest.metrics;
    assert!(
        published.len() == q.rows[1].test.len()
            && q.rows[1]
                .test
                .iter()
                .all(|(k, v)| published.get(k).is_some_and(|p| (p - v).abs() < 1e-12)),
        "{published:?} vs {:?}",
        q.rows[1].test
    );
    let scores = |b: &Bundle| -> Vec<f32> {
        let m = b.item_matrix.as_ref().unwrap();
        let enc = OnnxScorer::load_encoder(&b.model_bytes, b.manifest.n_rows, m.dim()).unwrap();
        let hs: Vec<Vec<u32>> = (1..30u32).map(|u| vec![u, u % 7 + 1, 40 - u]).collect();
        let refs: Vec<&[u32]> = hs.iter().map(Vec::as_slice).collect();
        let users = enc.score_batch(&refs).unwrap();
        users
            .chunks_exact(m.dim())
            .flat_map(|u| (1..m.n_rows()).map(move |r| m.score(u, r)))
            .collect()
    };
    let (a, b) = (scores(&student), scores(&int8));
    let mean = a.iter().sum::<f32>() / a.len() as f32;
    let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32).sqrt();
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        (worst as f64) <= q.bound * std as f64,
        "int8 vs f32: max |Δ| {worst}, std {std}"
    );

    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("## Int8 export"));
    assert!(md.contains("Over seeds") && md.contains("student-kd-rank"));
    assert!(md.contains("Serving engines") && md.contains("## Size sweep"));
    assert!(run_dir.join("report.json").is_file() && run_dir.join("curves.png").is_file());
    assert!(run_dir.join("split/train.tsv").is_file());
}
