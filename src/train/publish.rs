//! What leaves the job: every model of the main seed exported to ONNX and checked against its
//! training forward, the student and teacher bundles, the int8 student (published only once it
//! passes its parity check) and the parity sample.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::config::Config;
use super::error::TrainError;
use super::export::{self, BundleMeta, Exported};
use super::external::ExternalTeacher;
use super::quantised::{self, QuantisedExport};
use super::report::{self, ModelResult, SeedResult};
use super::teachers::EXTERNAL;
use super::trained::Trained;
use crate::bundle::{item_rows, Role};
use crate::data::split::Split;
use crate::data::Interactions;
use crate::engine::EngineParams;
use crate::onnx::Precision;

/// A seed's trained models and the rows of its report.
pub struct SeedRun {
    pub split: Split,
    pub models: Vec<Trained>,
    pub ratios: report::Ratios,
    pub sweep: Vec<report::SweepPoint>,
    /// The KD variant chosen on validation (the one extra seeds repeat).
    pub best_variant: super::kd::KdVariant,
    pub seconds: f64,
}

impl SeedRun {
    /// The seed's part of the report.
    pub fn result(&self) -> SeedResult {
        SeedResult {
            seed: self.split.seed,
            ratios: self.ratios.clone(),
            models: self.models.iter().map(|t| t.result.clone()).collect(),
            sweep: self.sweep.clone(),
            seconds: self.seconds,
        }
    }

    /// The trained model named `name`.
    pub fn model(&self, name: &str) -> &Trained {
        self.models
            .iter()
            .find(|m| m.result.name == name)
            .expect("ratios only name models of the same seed")
    }
}

/// The main seed's models in ONNX: their report rows with size and latency, the parity checks,
/// and the exported graphs by model name.
pub struct Measured {
    pub result: SeedResult,
    pub parity: Vec<super::export::Parity>,
    pub exported: BTreeMap<String, Exported>,
}

/// Exports every model of the main seed to ONNX, loads it in tract, checks its scores against
/// the training forward and times it.
pub fn measure(
    config: &Config,
    run: &SeedRun,
    external: Option<&ExternalTeacher>,
) -> Result<Measured, TrainError> {
    let mut result = run.result();
    let mut parity = Vec::new();
    let mut exported = BTreeMap::new();
    for (t, row) in run.models.iter().zip(result.models.iter_mut()) {
        let Some(weights) = &t.weights else {
            // The ensemble has no graph of its own; the external teacher's own graph is timed,
            // with nothing to export or compare it with.
            let Some(ext) = external.filter(|_| t.result.name == EXTERNAL) else {
                continue;
            };
            let (single, batch) = ext.latency(&run.split.train, config.latency_iters)?;
            row.onnx_bytes = Some(ext.onnx_bytes);
            row.latency_single_us = Some(single);
            row.latency_batch32_us = Some(batch);
            continue;
        };
        let e = Exported::new(&t.result.name, weights.clone())?;
        parity.push(e.check_parity(
            &run.split.train,
            &t.scores,
            config.parity_users,
            config.parity_tolerance,
            config.seed,
        )?);
        let (single, batch) = e.latency(&run.split.train, config.latency_iters)?;
        row.onnx_bytes = Some(e.onnx.len() as u64);
        row.latency_single_us = Some(single);
        row.latency_batch32_us = Some(batch);
        exported.insert(t.result.name.clone(), e);
    }
    Ok(Measured {
        result,
        parity,
        exported,
    })
}

/// Where and how the main seed's bundles are written.
pub struct Publish<'a> {
    pub config: &'a Config,
    pub data: &'a Interactions,
    pub run: &'a SeedRun,
    pub measured: &'a Measured,
    pub external: Option<&'a ExternalTeacher>,
    /// `Some` for a two-tower student export (its engine settings).
    pub two_tower: Option<&'a EngineParams>,
    pub split_protocol: &'a str,
    pub run_dir: &'a Path,
}

impl Publish<'_> {
    fn meta(&self, m: &ModelResult, distillation: Option<serde_json::Value>) -> BundleMeta<'_> {
        BundleMeta {
            data: self.data,
            split: &self.run.split,
            split_protocol: self.split_protocol,
            max_history: self.config.max_history,
            test_metrics: m.test.clone(),
            distillation,
        }
    }

    fn student(&self) -> (&ModelResult, &Exported) {
        let name = &self.run.ratios.kd_student;
        (
            find(&self.measured.result.models, name),
            &self.measured.exported[name],
        )
    }

    /// The KD student (`<name>`) and the teacher it learnt from (`<name>-teacher`); returns
    /// the bundle directories by role.
    pub fn bundles(&self, name: &str) -> Result<BTreeMap<String, PathBuf>, TrainError> {
        let config = self.config;
        let models = &self.measured.result.models;
        let exported = &self.measured.exported;
        let (student, model) = self.student();
        let s = export::write(
            &config.models,
            name,
            Role::Student,
            model,
            &self.meta(student, Some(student.settings.clone())),
            self.two_tower,
            Precision::F32,
        )?;
        // An external teacher is already a bundle: it is named, not copied. The ensemble
        // exists only as KD targets, so the best teacher with a graph is exported instead.
        let teacher = &self.run.ratios.teacher;
        let t = match self.external.filter(|_| teacher == EXTERNAL) {
            Some(ext) => ext.dir.clone(),
            None => {
                let chosen = if exported.contains_key(teacher) {
                    teacher.as_str()
                } else {
                    best_exported_teacher(models, exported)
                };
                export::write(
                    &config.models,
                    &format!("{name}-teacher"),
                    Role::Teacher,
                    &exported[chosen],
                    &self.meta(find(models, chosen), None),
                    None,
                    Precision::F32,
                )?
            }
        };
        tracing::info!(student = %s.display(), teacher = %t.display(), "bundles written");
        Ok(BTreeMap::from([
            ("student".to_string(), s),
            ("teacher".to_string(), t),
        ]))
    }

    /// The same student with int8 weights, as its own model `int8_name` next to the f32 one at
    /// `f32_dir`. It is written to a scratch repository first and published only once it
    /// passes the parity check (a server polling the repository would otherwise take a failing
    /// bundle live), with the metrics measured on it in its manifest.
    pub fn int8(&self, f32_dir: &Path, int8_name: &str) -> Result<QuantisedExport, TrainError> {
        let config = self.config;
        let (student, model) = self.student();
        let settings = Some(student.settings.clone());
        let scratch = self.run_dir.join("int8-candidate");
        let candidate = export::write(
            &scratch,
            int8_name,
            Role::Student,
            model,
            &self.meta(student, settings.clone()),
            self.two_tower,
            Precision::Int8,
        )?;
        let mut q = quantised::compare(
            f32_dir,
            &candidate,
            self.data,
            &self.run.split,
            config.latency_iters,
        )?;
        let mut m = self.meta(student, settings);
        m.test_metrics = q.rows[1].test.clone();
        let published = export::write(
            &config.models,
            int8_name,
            Role::Student,
            model,
            &m,
            self.two_tower,
            Precision::Int8,
        )?;
        std::fs::remove_dir_all(&scratch).map_err(|e| TrainError::io(&scratch, e))?;
        q.rows[1].bundle = published;
        Ok(q)
    }
}

/// A few users' training-framework scores of the exported student, so tests and people can
/// check the bundle on disk against them with any ONNX runtime.
pub fn write_parity_sample(
    path: &Path,
    run: &SeedRun,
    data: &Interactions,
    seed: u64,
) -> Result<(), TrainError> {
    let student = run.model(&run.ratios.kd_student);
    let n_items = data.n_items();
    let mut rng = StdRng::seed_from_u64(seed);
    let candidates: Vec<usize> = (0..run.split.n_users())
        .filter(|&u| !run.split.train[u].is_empty())
        .collect();
    let picked = rand::seq::index::sample(&mut rng, candidates.len(), candidates.len().min(8));
    let users: Vec<serde_json::Value> = picked
        .iter()
        .map(|k| {
            let u = candidates[k];
            let mut scores = vec![0f32];
            scores.extend_from_slice(&student.scores[u * n_items..(u + 1) * n_items]);
            serde_json::json!({
                "user_id": data.user_ids[u],
                "history_rows": item_rows(&run.split.train[u]),
                "scores": scores,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "model": "student",
        "name": student.result.name,
        "note": "scores[0] is the padding row and is not compared",
        "users": users,
    });
    write_file(
        path,
        &serde_json::to_vec(&doc).expect("json always serializes"),
    )
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    std::fs::write(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// The teacher with the best validation NDCG@10 among those exported to ONNX.
fn best_exported_teacher<'a>(
    models: &'a [ModelResult],
    exported: &BTreeMap<String, Exported>,
) -> &'a str {
    models
        .iter()
        .filter(|m| m.role == Role::Teacher && exported.contains_key(&m.name))
        .max_by(|a, b| a.valid_ndcg().total_cmp(&b.valid_ndcg()))
        .map(|m| m.name.as_str())
        .expect("EASE and the MLP teacher are always exported")
}

fn find<'a>(models: &'a [ModelResult], name: &str) -> &'a ModelResult {
    models
        .iter()
        .find(|m| m.name == name)
        .expect("ratios only name models of the same seed")
}
