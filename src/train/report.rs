//! `report.json` and `report.md`: every model's metrics, size, latency and training time side by
//! side, the ratios the acceptance criteria are stated in, and the multi-seed summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::config::Config;
use super::export::Parity;
use crate::bundle::Role;

#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// `popularity`, `teacher-ease`, `teacher-mlp`, `student`, `student-kd-<variant>`.
    pub name: String,
    pub role: Role,
    pub kind: String,
    pub description: String,
    pub parameters: u64,
    pub valid: BTreeMap<String, f64>,
    pub test: BTreeMap<String, f64>,
    pub train_seconds: f64,
    pub epochs: Option<usize>,
    pub best_epoch: Option<usize>,
    /// Validation NDCG@10 per epoch (iterative models only).
    pub curve: Vec<f64>,
    pub onnx_bytes: Option<u64>,
    /// Median µs of one tract call with one user's history.
    pub latency_single_us: Option<f64>,
    /// Median µs of one tract call with 32 users' histories.
    pub latency_batch32_us: Option<f64>,
    pub settings: serde_json::Value,
}

impl ModelResult {
    /// A row with its identity, size and settings; metrics, timings and the ONNX columns empty.
    pub fn new(
        name: &str,
        role: Role,
        kind: &str,
        description: String,
        parameters: u64,
        settings: serde_json::Value,
    ) -> Self {
        ModelResult {
            name: name.to_string(),
            role,
            kind: kind.to_string(),
            description,
            parameters,
            valid: BTreeMap::new(),
            test: BTreeMap::new(),
            train_seconds: 0.0,
            epochs: None,
            best_epoch: None,
            curve: Vec::new(),
            onnx_bytes: None,
            latency_single_us: None,
            latency_batch32_us: None,
            settings,
        }
    }

    pub fn valid_ndcg(&self) -> f64 {
        self.valid.get("ndcg@10").copied().unwrap_or(0.0)
    }
    pub fn test_ndcg(&self) -> f64 {
        self.test.get("ndcg@10").copied().unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

/// The figures the acceptance criteria are stated in, for one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// The teacher the students distil from (logits/ranks).
    pub teacher: String,
    /// The KD student chosen on validation (the exported one).
    pub kd_student: String,
    pub teacher_test_ndcg10: f64,
    pub student_test_ndcg10: f64,
    pub kd_student_test_ndcg10: f64,
    pub popularity_test_ndcg10: f64,
    /// KD-student parameters / teacher parameters.
    pub param_ratio: f64,
    /// KD-student test NDCG@10 / teacher test NDCG@10.
    pub ndcg_ratio: f64,
    /// KD-student test NDCG@10 / no-KD student test NDCG@10 − 1.
    pub kd_gain: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub ratios: Ratios,
    pub models: Vec<ModelResult>,
    /// The student recipe at other widths (`--sweep-dims`), KD and no-KD.
    pub sweep: Vec<SweepPoint>,
    pub seconds: f64,
}

/// One width of the size sweep: the chosen KD variant and its no-KD twin, against the
/// distilling teacher of the same seed.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub dim: usize,
    pub hidden: Vec<usize>,
    pub parameters: u64,
    /// Student parameters / teacher parameters.
    pub param_ratio: f64,
    pub student_test_ndcg10: f64,
    pub kd_test_ndcg10: f64,
    /// KD student test NDCG@10 / teacher test NDCG@10.
    pub kd_vs_teacher: f64,
    /// KD student test NDCG@10 / no-KD twin − 1.
    pub kd_gain: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub n_users: usize,
    pub n_items: usize,
    pub n_interactions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl MeanStd {
    pub fn of(xs: &[f64]) -> Self {
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        MeanStd {
            mean,
            std: var.sqrt(),
            n,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: DatasetSummary,
    pub config: Config,
    pub split_protocol: String,
    /// Main seed: every model, with curves and latency.
    pub main: SeedResult,
    /// The exported KD student served through each scoring engine (test split).
    pub engines: Vec<super::engines::EngineEval>,
    /// The int8 student bundle next to the f32 one (two-tower exports only).
    pub quantised: Option<super::quantised::QuantisedExport>,
    pub parity: Vec<Parity>,
    pub bundles: BTreeMap<String, PathBuf>,
    /// Extra seeds (evaluation only).
    pub extra: Vec<SeedResult>,
    /// Test NDCG@10 per model and the ratios over all seeds.
    pub over_seeds: BTreeMap<String, MeanStd>,
    pub phases: Vec<Phase>,
    pub total_seconds: f64,
}

/// Mean ± std of test NDCG@10 per model name and of the ratios, over main + extra seeds.
pub fn summarise(main: &SeedResult, extra: &[SeedResult]) -> BTreeMap<String, MeanStd> {
    let all: Vec<&SeedResult> = std::iter::once(main).chain(extra).collect();
    let mut out = BTreeMap::new();
    for m in &main.models {
        let xs: Vec<f64> = all
            .iter()
            .filter_map(|s| s.models.iter().find(|x| x.name == m.name))
            .map(ModelResult::test_ndcg)
            .collect();
        out.insert(format!("{} ndcg@10", m.name), MeanStd::of(&xs));
    }
    let ratio =
        |f: fn(&Ratios) -> f64| MeanStd::of(&all.iter().map(|s| f(&s.ratios)).collect::<Vec<_>>());
    out.insert(
        "kd student / teacher ndcg@10".into(),
        ratio(|r| r.ndcg_ratio),
    );
    out.insert("kd gain over no-kd student".into(), ratio(|r| r.kd_gain));
    out.insert(
        "kd student / teacher params".into(),
        ratio(|r| r.param_ratio),
    );
    out
}

/// Budget of the compression target: a student with at most this share of the teacher's
/// parameters …
pub const SWEEP_PARAM_BUDGET: f64 = 0.05;
/// … keeping at least this share of its test NDCG@10 …
pub const SWEEP_KEEP: f64 = 0.97;
/// … and gaining at least this much over its no-KD twin.
pub const SWEEP_GAIN: f64 = 0.10;

impl Report {
    /// `## Size sweep`: per width, seed-`main` figures and mean ± std over every seed.
    fn sweep_markdown(&self, s: &mut String) {
        if self.main.sweep.is_empty() {
            return;
        }
        let seeds: Vec<&SeedResult> = std::iter::once(&self.main).chain(&self.extra).collect();
        let _ = writeln!(
            s,
            "\n## Size sweep (teacher `{}`, KD variant of `{}`; test NDCG@10)\n",
            self.main.ratios.teacher, self.main.ratios.kd_student
        );
        let _ = writeln!(
            s,
            "Each width is trained twice from the same initialisation: with the exported student's \
             KD recipe and without KD. Seed {} figures, then mean ± sample std over {} seed(s). \
             Chart: `size-sweep.png`.\n",
            self.main.seed,
            seeds.len()
        );
        let _ = writeln!(
            s,
            "| width | params | params / teacher | no-KD NDCG@10 | KD NDCG@10 | KD / teacher | KD gain | KD NDCG@10 (all seeds) | KD / teacher (all seeds) | KD gain (all seeds) |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for p in &self.main.sweep {
            let across = |f: fn(&SweepPoint) -> f64| {
                let xs: Vec<f64> = seeds
                    .iter()
                    .filter_map(|r| r.sweep.iter().find(|q| q.dim == p.dim))
                    .map(f)
                    .collect();
                let m = MeanStd::of(&xs);
                (m.mean, m.std)
            };
            let (kd_m, kd_s) = across(|q| q.kd_test_ndcg10);
            let (vt_m, vt_s) = across(|q| q.kd_vs_teacher);
            let (g_m, g_s) = across(|q| q.kd_gain);
            let _ = writeln!(
                s,
                "| {} {:?} | {} | {:.2} % | {:.4} | {:.4} | {:.1} % | {:+.1} % | {kd_m:.4} ± {kd_s:.4} | {:.1} ± {:.1} % | {:+.1} ± {:.1} % |",
                p.dim,
                p.hidden,
                p.parameters,
                100.0 * p.param_ratio,
                p.student_test_ndcg10,
                p.kd_test_ndcg10,
                100.0 * p.kd_vs_teacher,
                100.0 * p.kd_gain,
                100.0 * vt_m,
                100.0 * vt_s,
                100.0 * g_m,
                100.0 * g_s,
            );
        }
        let target = self.main.sweep.iter().find(|p| {
            p.param_ratio <= SWEEP_PARAM_BUDGET
                && p.kd_vs_teacher >= SWEEP_KEEP
                && p.kd_gain >= SWEEP_GAIN
        });
        let _ = writeln!(
            s,
            "\nCompression target (≤ {:.0} % of the teacher's parameters, ≥ {:.0} % of its NDCG@10, \
             ≥ +{:.0} % over the no-KD twin, seed {}): {}",
            100.0 * SWEEP_PARAM_BUDGET,
            100.0 * SWEEP_KEEP,
            100.0 * SWEEP_GAIN,
            self.main.seed,
            match target {
                Some(p) => format!(
                    "**met** by width {} ({} parameters = {:.2} %, {:.1} % of the teacher, {:+.1} %).",
                    p.dim,
                    p.parameters,
                    100.0 * p.param_ratio,
                    100.0 * p.kd_vs_teacher,
                    100.0 * p.kd_gain
                ),
                None => "**not met** by any width above.".to_string(),
            }
        );
        for w in self.kd_warnings() {
            let _ = writeln!(s, "\n**{w}**");
        }
    }

    /// KD rows that ended below their no-KD twin (main seed): a KD student never hurts
    /// silently.
    pub fn kd_warnings(&self) -> Vec<String> {
        let r = &self.main.ratios;
        let mut out = Vec::new();
        if r.kd_gain < 0.0 {
            out.push(format!(
                "KD HURT: `{}` test NDCG@10 {:.4} is {:.1} % below the no-KD student's {:.4}",
                r.kd_student,
                r.kd_student_test_ndcg10,
                -100.0 * r.kd_gain,
                r.student_test_ndcg10
            ));
        }
        for p in self.main.sweep.iter().filter(|p| p.kd_gain < 0.0) {
            out.push(format!(
                "KD HURT at width {}: test NDCG@10 {:.4} is {:.1} % below its no-KD twin's {:.4}",
                p.dim,
                p.kd_test_ndcg10,
                -100.0 * p.kd_gain,
                p.student_test_ndcg10
            ));
        }
        out
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".into())
}

fn optf(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

impl Report {
    /// The whole report as Markdown, section by section.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        self.headline_markdown(&mut s);
        self.models_markdown(&mut s);
        self.seeds_markdown(&mut s);
        self.sweep_markdown(&mut s);
        self.engines_markdown(&mut s);
        self.int8_markdown(&mut s);
        self.export_markdown(&mut s);
        s
    }

    /// Title, dataset and protocol, and the headline ratios.
    fn headline_markdown(&self, s: &mut String) {
        let d = &self.dataset;
        let r = &self.main.ratios;
        let _ = writeln!(s, "# Distillation report: {}\n", d.name);
        let _ = writeln!(
            s,
            "Dataset `{}` ({} users, {} items, {} interactions, sha256 `{}`). Protocol: {}, seed {}. \
             Metrics on the test split unless marked; validation NDCG@10 selects epochs, EASE λ, \
             the teacher and the exported KD variant.\n",
            d.path.display(),
            d.n_users,
            d.n_items,
            d.n_interactions,
            &d.sha256[..d.sha256.len().min(16)],
            self.split_protocol,
            self.main.seed
        );
        let _ = writeln!(s, "## Headline (seed {})\n", self.main.seed);
        let _ = writeln!(s, "| | value |\n|---|---|");
        let _ = writeln!(s, "| distilling teacher | `{}` |", r.teacher);
        let _ = writeln!(s, "| exported KD student | `{}` |", r.kd_student);
        let _ = writeln!(s, "| teacher test NDCG@10 | {:.4} |", r.teacher_test_ndcg10);
        let _ = writeln!(
            s,
            "| KD student test NDCG@10 | {:.4} |",
            r.kd_student_test_ndcg10
        );
        let _ = writeln!(
            s,
            "| no-KD student test NDCG@10 | {:.4} |",
            r.student_test_ndcg10
        );
        let _ = writeln!(
            s,
            "| popularity test NDCG@10 | {:.4} |",
            r.popularity_test_ndcg10
        );
        let _ = writeln!(
            s,
            "| student params / teacher params | {:.2} % |",
            100.0 * r.param_ratio
        );
        let _ = writeln!(
            s,
            "| KD student NDCG / teacher NDCG | {:.1} % |",
            100.0 * r.ndcg_ratio
        );
        let _ = writeln!(
            s,
            "| KD gain over no-KD student (relative NDCG@10) | {:+.1} % |\n",
            100.0 * r.kd_gain
        );
    }

    /// Every model of the main seed, then their settings.
    fn models_markdown(&self, s: &mut String) {
        let _ = writeln!(s, "## Models (seed {})\n", self.main.seed);
        let _ = writeln!(
            s,
            "| model | role | params | valid NDCG@10 | NDCG@10 | Recall@10 | Hit@10 | MRR@10 | NDCG@20 | Recall@20 | ONNX bytes | tract µs (1) | tract µs (32) | train s | epochs (best) |"
        );
        let _ = writeln!(
            s,
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for m in &self.main.models {
            let t = |k: &str| m.test.get(k).map(|v| format!("{v:.4}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {:.4} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                m.name,
                m.role.as_str(),
                m.parameters,
                m.valid_ndcg(),
                t("ndcg@10"),
                t("recall@10"),
                t("hit@10"),
                t("mrr@10"),
                t("ndcg@20"),
                t("recall@20"),
                opt(m.onnx_bytes),
                optf(m.latency_single_us, 0),
                optf(m.latency_batch32_us, 0),
                m.train_seconds,
                match (m.epochs, m.best_epoch) {
                    (Some(e), Some(b)) => format!("{e} ({b})"),
                    _ => "—".into(),
                }
            );
        }
        let _ = writeln!(s, "\nModel settings:\n");
        for m in &self.main.models {
            let _ = writeln!(s, "- `{}`: {} — `{}`", m.name, m.description, m.settings);
        }
    }

    /// Mean ± std over seeds (when there are extra seeds).
    fn seeds_markdown(&self, s: &mut String) {
        if !self.extra.is_empty() {
            let seeds: Vec<String> = std::iter::once(&self.main)
                .chain(&self.extra)
                .map(|x| x.seed.to_string())
                .collect();
            let _ = writeln!(
                s,
                "\n## Over seeds {} (mean ± sample std, test NDCG@10)\n",
                seeds.join(", ")
            );
            let _ = writeln!(s, "| figure | mean | std | seeds |\n|---|--:|--:|--:|");
            for (k, v) in &self.over_seeds {
                let _ = writeln!(s, "| {k} | {:.4} | {:.4} | {} |", v.mean, v.std, v.n);
            }
        }
    }

    /// The exported student through each serving engine.
    fn engines_markdown(&self, s: &mut String) {
        let r = &self.main.ratios;
        if !self.engines.is_empty() {
            let _ = writeln!(
                s,
                "\n## Serving engines (exported KD student `{}`, test split, seed {})\n",
                r.kd_student, self.main.seed
            );
            let _ = writeln!(
                s,
                "User vectors from the exported ONNX user encoder (tract); each engine searches the \
                 item matrix with the protocol's exclusions (train + valid items) and the metrics \
                 are computed from what it returned. `ann` walks its HNSW graph here even though \
                 serving scans catalogues below `full_scan_below` items exactly.\n"
            );
            let _ = writeln!(
                s,
                "| engine | NDCG@10 | Recall@10 | NDCG@10 vs exact | Recall@10 vs exact | build s | µs per user (batch 1) |\n|---|--:|--:|--:|--:|--:|--:|"
            );
            for e in &self.engines {
                let t = |k: &str| e.test.get(k).copied().unwrap_or(f64::NAN);
                let _ = writeln!(
                    s,
                    "| {} | {:.4} | {:.4} | {:.2} % | {:.2} % | {:.3} | {:.1} |",
                    e.engine,
                    t("ndcg@10"),
                    t("recall@10"),
                    100.0 * e.ndcg10_vs_exact,
                    100.0 * e.recall10_vs_exact,
                    e.build_seconds,
                    e.search_us_per_user
                );
            }
        }
    }

    /// The int8 bundle next to the f32 one, and their parity.
    fn int8_markdown(&self, s: &mut String) {
        let r = &self.main.ratios;
        if let Some(q) = &self.quantised {
            let _ = writeln!(
                s,
                "\n## Int8 export (KD student `{}`, both bundles read back from disk, test split)\n",
                r.kd_student
            );
            let _ = writeln!(
                s,
                "The int8 bundle stores the encoder's weight matrices (embedding rows, each layer's \
                 output units) and the item vectors as int8 with one f32 scale per row; biases \
                 stay f32. tract folds the dequantisation into constants at load, so serving \
                 latency is the f32 model's. Latency: the bundle's encoder in tract plus dense \
                 scoring of every item, median µs per call; the bundles are timed in three \
                 alternating rounds and the median round is shown.\n"
            );
            let _ = writeln!(
                s,
                "| precision | bundle | weights on disk (bytes) | NDCG@10 | Recall@10 | µs batch 1 | µs batch 32 |\n|---|---|--:|--:|--:|--:|--:|"
            );
            for b in &q.rows {
                let t = |k: &str| b.test.get(k).copied().unwrap_or(f64::NAN);
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {} | {:.4} | {:.4} | {:.1} | {:.1} |",
                    b.precision,
                    b.bundle.display(),
                    b.weight_bytes,
                    t("ndcg@10"),
                    t("recall@10"),
                    b.latency_single_us,
                    b.latency_batch32_us
                );
            }
            let _ = writeln!(
                s,
                "\nParity over {} users × every item: max |int8 − f32| = {:.4} = {:.3} × the f32 \
                 scores' std ({:.4}); bound {:.2} × std (distill fails above it). Same top-10 set \
                 for {:.1} % of users.",
                q.users,
                q.max_abs_diff,
                q.ratio,
                q.score_std,
                q.bound,
                100.0 * q.same_top10
            );
        }
    }

    /// Bundles written, parity per exported model, phase timings.
    fn export_markdown(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Export and parity\n");
        for (role, p) in &self.bundles {
            let _ = writeln!(s, "- {role} bundle: `{}`", p.display());
        }
        for p in &self.parity {
            let _ = writeln!(
                s,
                "- `{}`: max |ONNX (tract) − training forward| over {} users = {:.2e} (tolerance {:.0e})",
                p.model, p.users, p.max_abs_diff, p.tolerance
            );
        }

        let _ = writeln!(s, "\n## Phase timings\n\n| phase | seconds |\n|---|--:|");
        for p in &self.phases {
            let _ = writeln!(s, "| {} | {:.1} |", p.name, p.seconds);
        }
        let _ = writeln!(s, "| **total** | **{:.1}** |", self.total_seconds);
        let _ = writeln!(
            s,
            "\nValidation curves: `curves.png`. Split used: `split/{{train,valid,test}}.tsv`."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_uses_the_sample_std() {
        let m = MeanStd::of(&[1.0, 2.0, 3.0]);
        assert!((m.mean - 2.0).abs() < 1e-12);
        assert!((m.std - 1.0).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[5.0]).std, 0.0);
    }
}
