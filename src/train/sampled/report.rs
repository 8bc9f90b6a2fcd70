//! The sampled job's report: report.json (everything) and report.md (the tables a reader
//! needs: the plan against what happened, every model's metrics, the size sweep, the export).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::Role;
use crate::data::Interactions;
use crate::train::config::Config;
use crate::train::error::TrainError;
use crate::train::export::Parity;
use crate::train::model::MlpSpec;
use crate::train::plan::{human_bytes, human_seconds, Plan};

#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub role: Role,
    pub spec: Option<MlpSpec>,
    pub parameters: u64,
    pub valid: BTreeMap<String, f64>,
    pub test: BTreeMap<String, f64>,
    pub epochs: Option<usize>,
    pub best_epoch: Option<usize>,
    pub seconds: f64,
    pub curve: Vec<f64>,
    /// Problems worth a reader's attention (KD retried, KD hurt).
    pub flags: Vec<String>,
    /// How a KD student was taught (None: no KD).
    pub kd: Option<serde_json::Value>,
}

impl ModelRow {
    fn test_ndcg(&self) -> f64 {
        self.test.get("ndcg@10").copied().unwrap_or(f64::NAN)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub dim: usize,
    pub parameters: u64,
    pub param_ratio: f64,
    pub student_test_ndcg10: f64,
    pub kd_test_ndcg10: f64,
    pub kd_vs_teacher: f64,
    pub kd_gain: f64,
    pub kd_valid_vs_teacher: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampledReport {
    pub dataset: serde_json::Value,
    pub trainer: &'static str,
    pub plan: Plan,
    pub peak_rss_bytes: Option<u64>,
    pub config: Config,
    pub split_protocol: String,
    pub models: Vec<ModelRow>,
    pub teacher: String,
    pub exported_student: String,
    pub sweep: Vec<SweepRow>,
    pub parity: Vec<Parity>,
    pub bundles: BTreeMap<String, PathBuf>,
    pub phases: Vec<(String, f64)>,
    pub total_seconds: f64,
    /// Flags of every model, for the exit summary.
    pub warnings: Vec<String>,
}

/// Peak resident memory of this process so far (`VmHWM`), if readable.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

impl SampledReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: &Interactions,
        plan: &Plan,
        config: &Config,
        split_protocol: &str,
        models: Vec<ModelRow>,
        teacher: &str,
        exported_student: &str,
        parity: Vec<Parity>,
        bundles: BTreeMap<String, PathBuf>,
        phases: Vec<(String, f64)>,
        total_seconds: f64,
    ) -> Self {
        let t = models
            .iter()
            .find(|m| m.name == teacher)
            .expect("the teacher has a row");
        let t_valid = t.valid.get("ndcg@10").copied().unwrap_or(f64::NAN);
        let sweep = models
            .iter()
            .filter(|m| m.role == Role::Student && !m.name.ends_with("-kd"))
            .filter_map(|plain| {
                let kd = models
                    .iter()
                    .find(|m| m.name == format!("{}-kd", plain.name))?;
                Some(SweepRow {
                    dim: plain.spec.as_ref().map_or(0, |s| s.dim),
                    parameters: kd.parameters,
                    param_ratio: kd.parameters as f64 / t.parameters as f64,
                    student_test_ndcg10: plain.test_ndcg(),
                    kd_test_ndcg10: kd.test_ndcg(),
                    kd_vs_teacher: kd.test_ndcg() / t.test_ndcg(),
                    kd_gain: kd.test_ndcg() / plain.test_ndcg() - 1.0,
                    kd_valid_vs_teacher: kd.valid.get("ndcg@10").copied().unwrap_or(f64::NAN)
                        / t_valid,
                })
            })
            .collect();
        let warnings = models
            .iter()
            .flat_map(|m| m.flags.iter().map(move |f| format!("{}: {f}", m.name)))
            .collect();
        SampledReport {
            dataset: serde_json::json!({
                "name": data.name, "path": data.path, "sha256": data.sha256,
                "n_users": data.n_users(), "n_items": data.n_items(),
                "n_interactions": data.records.len(),
            }),
            trainer: "sampled",
            plan: plan.clone(),
            peak_rss_bytes: peak_rss(),
            config: config.clone(),
            split_protocol: split_protocol.to_string(),
            models,
            teacher: teacher.to_string(),
            exported_student: exported_student.to_string(),
            sweep,
            parity,
            bundles,
            phases,
            total_seconds,
            warnings,
        }
    }

    pub fn to_markdown(&self) -> String {
        let d = &self.dataset;
        let mut s = format!(
            "# Distillation report (sampled trainer)\n\n\
             Dataset `{}`: {} users, {} items, {} interactions. Split: {}.\n\n",
            d["name"].as_str().unwrap_or(""),
            d["n_users"],
            d["n_items"],
            d["n_interactions"],
            self.split_protocol
        );
        if !self.warnings.is_empty() {
            s.push_str("## Warnings\n\n");
            for w in &self.warnings {
                s.push_str(&format!("- {w}\n"));
            }
            s.push('\n');
        }
        s.push_str("## Models (full ranking over every item)\n\n");
        s.push_str(
            "| model | params | test NDCG@10 | test Recall@10 | test HR@10 | test MRR@10 | valid NDCG@10 | epochs (best) | seconds | notes |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for m in &self.models {
            let g = |map: &BTreeMap<String, f64>, k: &str| {
                map.get(k).map_or("–".into(), |v| format!("{v:.4}"))
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
                m.name,
                m.parameters,
                g(&m.test, "ndcg@10"),
                g(&m.test, "recall@10"),
                g(&m.test, "hit@10"),
                g(&m.test, "mrr@10"),
                g(&m.valid, "ndcg@10"),
                match (m.epochs, m.best_epoch) {
                    (Some(e), Some(b)) => format!("{e} ({b})"),
                    _ => "–".into(),
                },
                m.seconds,
                m.flags.join("; ")
            ));
        }
        s.push_str(&format!(
            "\n## Size sweep (teacher `{}`; exported: `{}`, the smallest KD student keeping {:.0} % \
             of the teacher's validation NDCG@10, else the best)\n\n\
             | width | params | share of teacher params | no-KD test NDCG@10 | KD test NDCG@10 | KD / teacher (test) | KD gain over no-KD | KD / teacher (valid) |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.teacher,
            self.exported_student,
            100.0 * self.config.target_quality
        ));
        for r in &self.sweep {
            s.push_str(&format!(
                "| {} | {} | {:.2} % | {:.4} | {:.4} | {:.1} % | {:+.1} % | {:.1} % |\n",
                r.dim,
                r.parameters,
                100.0 * r.param_ratio,
                r.student_test_ndcg10,
                r.kd_test_ndcg10,
                100.0 * r.kd_vs_teacher,
                100.0 * r.kd_gain,
                100.0 * r.kd_valid_vs_teacher
            ));
        }
        s.push_str("\n## Plan against what happened\n\n```\n");
        s.push_str(&self.plan.to_text());
        s.push_str("\n```\n\n| phase | seconds |\n|---|---:|\n");
        for (name, secs) in &self.phases {
            s.push_str(&format!("| {name} | {secs:.1} |\n"));
        }
        s.push_str(&format!(
            "\nTotal {} · peak RSS {} (planned peak {}).\n",
            human_seconds(self.total_seconds),
            self.peak_rss_bytes.map_or("unknown".into(), human_bytes),
            human_bytes(self.plan.peak_bytes())
        ));
        if !self.parity.is_empty() {
            s.push_str(
                "\n## Parity (exported ONNX user encoder in tract vs the training forward)\n\n",
            );
            for p in &self.parity {
                s.push_str(&format!(
                    "- {}: max |difference| {:.2e} over {} users (tolerance {:.0e})\n",
                    p.model, p.max_abs_diff, p.users, p.tolerance
                ));
            }
        }
        if !self.bundles.is_empty() {
            s.push_str("\n## Bundles\n\n");
            for (k, v) in &self.bundles {
                s.push_str(&format!("- {k}: `{}`\n", v.display()));
            }
        }
        s
    }

    pub fn write(&self, run_dir: &Path) -> Result<(), TrainError> {
        let md = run_dir.join("report.md");
        std::fs::write(&md, self.to_markdown()).map_err(|e| TrainError::io(&md, e))?;
        let js = run_dir.join("report.json");
        let json = serde_json::to_vec_pretty(self).expect("the report serializes");
        std::fs::write(&js, json).map_err(|e| TrainError::io(&js, e))?;
        Ok(())
    }
}
