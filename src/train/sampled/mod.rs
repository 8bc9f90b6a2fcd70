//! The sampled trainer: distillation at catalogue scale (10^4–10^6 items), where nothing may be
//! O(users × items) or O(items²).
//!
//! - teacher: a wide `mean_mlp` (default d 256 → 512 → 256) trained with a logQ-corrected
//!   sampled softmax over shared popularity-smoothed negatives (`sampler.rs`, `tower.rs`): a
//!   step costs O(batch × (history + targets + negatives) × d);
//! - KD targets: the teacher's top-K unseen items per user (O(users × K)), from one streaming
//!   full-ranking pass through the exact serving engine (`rank.rs`), the same pass that
//!   evaluates it;
//! - students (the size sweep's widths within `--max-param-ratio`), each with a no-KD twin: the
//!   KD students add ranking KD (the top `--rank-k` as rank-weighted positives) and logit KD
//!   over the teacher's top-K ∪ the student's own current top items ∪ random items (teacher
//!   logits computed exactly on that set);
//! - every model is evaluated by streaming full ranking over every item (no sampled metrics);
//! - KD students start from their trained no-KD twin (`--kd-init twin`), so KD refines a model
//!   that already ranks and the twin's validation score is the one to beat;
//! - KD never silently hurts: a KD student below its twin, diverged, not improved on its twin,
//!   or (from scratch) peaking in the first tenth of its epochs is retrained once at half the
//!   learning rate, and flagged in the report and the exit summary if it still is;
//! - export: the smallest KD student keeping `--target-quality` of the teacher's validation
//!   NDCG@10, as a two-tower bundle whose engine is chosen by catalogue size.

pub mod fit;
pub mod linalg;
pub mod rank;
pub mod report;
pub mod sampler;
pub mod tower;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use self::fit::{FitOpts, FitResult, Teacher};
use self::report::{ModelRow, SampledReport};
use self::sampler::Sampler;
use self::tower::{KdWeight, Tower};
use super::config::{Config, KdInit};
use super::error::TrainError;
use super::export::{self, BundleMeta, Exported};
use super::model::MlpSpec;
use super::plan::{self, Plan};
use super::students::two_at_a_time;
use crate::bundle::{item_rows, Role};
use crate::data::split::{random_split, Split};
use crate::data::Interactions;
use crate::engine::{EngineKind, EngineParams};
use crate::eval::{evaluate_lists, Metrics, Stage};
use crate::onnx::{ModelWeights, OnnxScorer, Precision};

/// Above this many items the exported student's manifest asks for the `ann` engine. The exact
/// engine's throughput falls as 1/items (BENCHMARKS.md: ~5,000 req/s open-loop at 100k items,
/// ~400 closed-loop at 1M); at 300k it still serves ~1,600 req/s at exact recall.
pub const ANN_ABOVE_ITEMS: usize = 300_000;

const SPLIT_PROTOCOL: &str = "RecBole default: every interaction positive, per-user random 8:1:1, \
    full ranking over every item excluding train (valid) / train+valid (test) items";

/// Threads of the ranking passes (the machine's cores).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

struct Phases(Vec<(String, f64)>);

impl Phases {
    fn time<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        let t = Instant::now();
        tracing::info!(phase = name, "phase started");
        let out = f()?;
        let s = t.elapsed().as_secs_f64();
        tracing::info!(phase = name, seconds = format!("{s:.1}"), "phase done");
        self.0.push((name.to_string(), s));
        Ok(out)
    }
}

/// A trained tower with its evaluation.
struct Model {
    name: String,
    role: Role,
    tower: Tower,
    fit: FitResult,
    valid: Metrics,
    test: Metrics,
    /// The KD settings it was trained with (None: no KD).
    kd: Option<serde_json::Value>,
    flags: Vec<String>,
}

impl Model {
    fn row(&self) -> ModelRow {
        ModelRow {
            name: self.name.clone(),
            role: self.role,
            spec: Some(self.tower.spec.clone()),
            parameters: self.tower.spec.parameter_count(self.tower.n_items),
            valid: self.valid.0.clone(),
            test: self.test.0.clone(),
            epochs: Some(self.fit.epochs),
            best_epoch: Some(self.fit.best_epoch),
            seconds: self.fit.seconds,
            curve: self.fit.curve.clone(),
            flags: self.flags.clone(),
            kd: self.kd.clone(),
        }
    }
}

fn fit_opts(config: &Config, seed: u64) -> FitOpts {
    FitOpts {
        max_epochs: config.sampled_max_epochs,
        patience: config.sampled_patience,
        batch_size: config.sampled_batch_size,
        lr: config.sampled_lr,
        weight_decay: config.sampled_weight_decay,
        input_dropout: config.input_dropout,
        targets_per_user: config.sampled_targets,
        eval_users: config.eval_users,
        threads: 1,
        seed,
        warm_start: false,
    }
}

fn spec(config: &Config, dim: usize, hidden: Vec<usize>) -> MlpSpec {
    MlpSpec {
        dim,
        hidden,
        activation: config.activation.into(),
    }
}

/// Runs the sampled job after the plan accepted it.
pub fn run(
    config: &Config,
    data: &Interactions,
    plan: &Plan,
    run_dir: &Path,
    name: &str,
    read_seconds: f64,
) -> Result<SampledReport, TrainError> {
    let started = Instant::now();
    if config.teacher_bundle.is_some() {
        return Err(TrainError::Config(
            "--teacher-bundle is not supported by the sampled trainer yet (its top-K lists need \
             the teacher's two-tower factors); use --mode dense on a catalogue that fits"
                .into(),
        ));
    }
    let mut phases = Phases(vec![("read data".into(), read_seconds)]);
    let n_items = data.n_items();
    let split = phases.time("split", || {
        Ok(random_split(data, [0.8, 0.1, 0.1], config.seed))
    })?;
    let mut counts = vec![0u32; n_items];
    for h in &split.train {
        for &i in h {
            counts[i as usize] += 1;
        }
    }
    let popularity = phases.time("popularity", || Ok(popularity_row(&split, &counts)))?;
    let sampler = Sampler::new(&counts, config.negatives, config.sampler_alpha);
    let shapes = plan::sampled_shapes(config);
    if shapes.student_dims.is_empty() {
        return Err(TrainError::Config(format!(
            "no width of --sampled-sweep-dims {:?} keeps the student within --max-param-ratio {} \
             of the teacher",
            config.sampled_sweep_dims, config.max_param_ratio
        )));
    }
    let teacher_spec = spec(config, shapes.teacher_dims.0, shapes.teacher_dims.1.clone());
    let student_specs: Vec<MlpSpec> = shapes
        .student_dims
        .iter()
        .map(|(d, h)| spec(config, *d, h.clone()))
        .collect();

    // Round 1: the teacher and every no-KD student, two at a time (the teacher, listed last,
    // starts first).
    enum Job<'a> {
        Teacher,
        Student(&'a MlpSpec),
    }
    let mut jobs: Vec<Job> = student_specs.iter().map(Job::Student).collect();
    jobs.push(Job::Teacher);
    let mut round1 = phases.time("teacher ‖ students without KD (2 threads)", || {
        Ok(two_at_a_time(&jobs, |job| {
            let (s, seed, label, role) = match job {
                Job::Teacher => (
                    &teacher_spec,
                    config.seed,
                    "teacher-mlp".to_string(),
                    Role::Teacher,
                ),
                Job::Student(s) => (
                    *s,
                    config.seed.wrapping_add(1),
                    format!("student-d{}", s.dim),
                    Role::Student,
                ),
            };
            let mut rng = StdRng::seed_from_u64(seed);
            let tower = Tower::new(n_items, s.clone(), &mut rng);
            let mut opts = fit_opts(config, seed);
            if role == Role::Teacher {
                opts.lr = config.sampled_teacher_lr;
            }
            let (tower, fit) = fit::fit(tower, &split, &sampler, &opts, None, &label);
            (label, role, tower, fit)
        }))
    })?;
    let (t_label, _, t_tower, t_fit) = round1.pop().expect("the teacher ran");
    if t_fit.diverged {
        return Err(TrainError::Numeric(
            "the teacher's loss diverged (not finite); lower --sampled-teacher-lr".into(),
        ));
    }
    let bar = super::progress::items_bar(split.n_users() as u64, "teacher: ranking");
    let (t_valid, t_test, t_lists) =
        phases.time("teacher: full ranking (evaluation + top-K lists)", || {
            Ok(rank::evaluate(
                &t_tower,
                &split,
                config.kd_top_k,
                threads(),
                Some(&bar),
            ))
        })?;
    bar.finish_and_clear();
    let top: Vec<Vec<u32>> = t_lists
        .into_iter()
        .map(|mut l| {
            l.truncate(config.kd_top_k);
            l
        })
        .collect();
    let t_users = t_tower.user_vectors(&split.train);
    // A teacher no better than popularity on validation has nothing to teach: said loudly.
    let pop_valid = popularity.valid.get("ndcg@10").copied().unwrap_or(0.0);
    let mut t_flags = Vec::new();
    if t_valid.ndcg10().is_nan() || t_valid.ndcg10() <= pop_valid {
        tracing::warn!(
            teacher = %t_label,
            "the teacher is not better than popularity on validation; try --sampled-teacher-lr"
        );
        t_flags.push(format!(
            "**TEACHER NOT ABOVE POPULARITY**: validation NDCG@10 {:.4} vs {pop_valid:.4} \
             (try a higher --sampled-teacher-lr)",
            t_valid.ndcg10()
        ));
    }
    let teacher = Model {
        name: t_label,
        role: Role::Teacher,
        tower: t_tower,
        fit: t_fit,
        valid: t_valid,
        test: t_test,
        kd: None,
        flags: t_flags,
    };
    let plain: Vec<Model> = phases.time("students without KD: full ranking", || {
        Ok(round1
            .into_iter()
            .map(|(name, role, tower, fit)| {
                let (valid, test, _) = rank::evaluate(&tower, &split, 0, threads(), None);
                Model {
                    name,
                    role,
                    tower,
                    fit,
                    valid,
                    test,
                    kd: None,
                    flags: Vec::new(),
                }
            })
            .collect())
    })?;

    // Round 2: the KD students, two at a time.
    let teacher_signal = Teacher {
        tower: &teacher.tower,
        users: &t_users,
        top: &top,
        kd: KdWeight {
            temperature: config.temperature as f32,
            lambda: config.lambda_kd as f32,
        },
        rank_k: config.rank_k.min(config.kd_top_k),
        rank_decay: config.rank_decay,
        lambda_rank: config.lambda_rank,
        random_items: config.kd_random,
        student_top: config.kd_student_top,
        refresh_epochs: config.kd_refresh_epochs,
    };
    let kd_settings = serde_json::json!({
        "teacher": teacher.name, "kd_top_k": config.kd_top_k, "rank_k": teacher_signal.rank_k,
        "rank_decay": config.rank_decay, "lambda_rank": config.lambda_rank,
        "lambda_kd": config.lambda_kd, "temperature": config.temperature,
        "lambda_ce": 1.0, "kd_random": config.kd_random, "kd_student_top": config.kd_student_top,
        "kd_refresh_epochs": config.kd_refresh_epochs, "kd_init": config.kd_init,
        "logit_kd_set": "teacher top-K ∪ student's current top items ∪ random items",
    });
    let kd_models: Vec<Model> = phases.time("KD students (2 threads)", || {
        Ok(two_at_a_time(
            &student_specs.iter().zip(&plain).collect::<Vec<_>>(),
            |(s, twin)| {
                kd_student(
                    config,
                    &split,
                    &sampler,
                    &teacher_signal,
                    s,
                    twin,
                    &kd_settings,
                )
            },
        ))
    })?;
    let teacher_valid = teacher.valid.ndcg10();
    // The exported student: the smallest KD student keeping --target-quality of the teacher's
    // validation NDCG@10, else the best one on validation.
    let chosen = kd_models
        .iter()
        .position(|m| m.valid.ndcg10() >= config.target_quality * teacher_valid)
        .unwrap_or_else(|| {
            (0..kd_models.len())
                .max_by(|&a, &b| {
                    kd_models[a]
                        .valid
                        .ndcg10()
                        .total_cmp(&kd_models[b].valid.ndcg10())
                })
                .expect("at least one student width")
        });
    // A width where KD hurt or did not help exports its no-KD twin when the twin is at least as
    // good on validation (a KD student no epoch improved is its twin's weights).
    let (student, kd_settings_out) = if kd_models[chosen]
        .flags
        .iter()
        .any(|f| f.contains("KD HURT") || f.contains("KD DID NOT HELP"))
        && plain[chosen].valid.ndcg10() >= kd_models[chosen].valid.ndcg10()
    {
        tracing::warn!(student = %plain[chosen].name, "KD did not help at this width: its no-KD twin is exported");
        (&plain[chosen], None)
    } else {
        (&kd_models[chosen], Some(&kd_settings))
    };
    let parity = phases.time(
        "parity: exported encoder (tract) vs training forward",
        || {
            [&teacher, student]
                .iter()
                .map(|m| parity(m, &split, config))
                .collect::<Result<Vec<_>, _>>()
        },
    )?;
    let bundles = if config.no_export {
        Default::default()
    } else {
        phases.time("export bundles", || {
            export_bundles(
                config,
                data,
                &split,
                name,
                &teacher,
                student,
                kd_settings_out,
            )
        })?
    };

    let mut models = vec![popularity, teacher.row()];
    for (p, k) in plain.iter().zip(&kd_models) {
        models.push(p.row());
        models.push(k.row());
    }
    let report = SampledReport::new(
        data,
        plan,
        config,
        SPLIT_PROTOCOL,
        models,
        &teacher.name,
        &student.name,
        parity,
        bundles,
        phases.0,
        started.elapsed().as_secs_f64() + read_seconds,
    );
    report.write(run_dir)?;
    Ok(report)
}

/// A KD student, retrained once at half the learning rate if KD hurt or the training failed.
fn kd_student(
    config: &Config,
    split: &Split,
    sampler: &Sampler,
    teacher: &Teacher<'_>,
    spec: &MlpSpec,
    twin: &Model,
    settings: &serde_json::Value,
) -> Model {
    let name = format!("student-d{}-kd", spec.dim);
    let seed = config.seed.wrapping_add(1);
    let mut opts = fit_opts(config, seed);
    let warm = config.kd_init == KdInit::Twin;
    opts.warm_start = warm;
    let attempt = |opts: &FitOpts| {
        let tower = if warm {
            twin.tower.clone()
        } else {
            Tower::new(
                twin.tower.n_items,
                spec.clone(),
                &mut StdRng::seed_from_u64(seed),
            )
        };
        let (tower, fit) = fit::fit(tower, split, sampler, opts, Some(teacher), &name);
        let (valid, test, _) = rank::evaluate(&tower, split, 0, threads(), None);
        Model {
            name: name.clone(),
            role: Role::Student,
            tower,
            fit,
            valid,
            test,
            kd: Some(settings.clone()),
            flags: Vec::new(),
        }
    };
    let mut m = attempt(&opts);
    let problems = |m: &Model| kd_problems(m, twin, warm);
    let first = problems(&m);
    if !first.is_empty() {
        tracing::warn!(student = %name, problems = %first.join("; "), "KD student retried at half the learning rate");
        opts.lr *= 0.5;
        let retry = attempt(&opts);
        let keep_retry = retry.valid.ndcg10() > m.valid.ndcg10() || m.fit.diverged;
        let mut chosen = if keep_retry { retry } else { m };
        chosen.flags.push(format!(
            "retried at lr {} after: {}",
            opts.lr,
            first.join("; ")
        ));
        let still = problems(&chosen);
        if !still.is_empty() {
            tracing::warn!(student = %name, problems = %still.join("; "), "KD did not help this student");
            // Warm-started and merely not improved, the student is its twin: KD did not help
            // but did not hurt either.
            let hurt = !warm || chosen.fit.diverged || chosen.valid.ndcg10() < twin.valid.ndcg10();
            let label = if hurt { "KD HURT" } else { "KD DID NOT HELP" };
            chosen
                .flags
                .push(format!("**{label}**: {}", still.join("; ")));
        }
        m = chosen;
    }
    m
}

/// Why a KD student is not acceptable against its no-KD twin (empty: it is).
fn kd_problems(m: &Model, twin: &Model, warm: bool) -> Vec<String> {
    let mut p = Vec::new();
    if m.fit.diverged {
        p.push("the loss diverged".into());
    }
    let (kd, plain) = (m.valid.ndcg10(), twin.valid.ndcg10());
    if kd.is_nan() || kd < plain {
        p.push(format!(
            "validation NDCG@10 {kd:.4} below its no-KD twin's {plain:.4}"
        ));
    } else if warm && m.fit.best_epoch == 0 {
        // Started from the twin and no KD epoch beat the start: the "KD student" is the twin.
        p.push(format!(
            "no KD epoch improved on its no-KD twin (validation NDCG@10 {plain:.4})"
        ));
    }
    // From scratch, a best epoch in the first tenth is a collapse; warm-started, an early best
    // is the twin plus a little KD.
    if !warm && m.fit.epochs >= 10 && m.fit.best_epoch * 10 <= m.fit.epochs {
        p.push(format!(
            "best epoch {} in the first tenth of {}",
            m.fit.best_epoch, m.fit.epochs
        ));
    }
    p
}

/// Popularity (training counts) evaluated under the same protocol.
fn popularity_row(split: &Split, counts: &[u32]) -> ModelRow {
    let mut order: Vec<u32> = (0..counts.len() as u32).collect();
    order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let rank = |excluded: &[u32], k: usize| -> Vec<u32> {
        let mut excluded = excluded.to_vec();
        excluded.sort_unstable();
        order
            .iter()
            .filter(|i| excluded.binary_search(i).is_err())
            .take(k)
            .copied()
            .collect()
    };
    let valid = evaluate_lists(split, counts.len(), Stage::Valid, |_, ex, k| rank(ex, k));
    let test = evaluate_lists(split, counts.len(), Stage::Test, |_, ex, k| rank(ex, k));
    ModelRow {
        name: "popularity".into(),
        role: Role::Baseline,
        spec: None,
        parameters: counts.len() as u64,
        valid: valid.0,
        test: test.0,
        epochs: None,
        best_epoch: None,
        seconds: 0.0,
        curve: Vec::new(),
        flags: Vec::new(),
        kd: None,
    }
}

/// The exported user encoder (ONNX, run by tract) against the training forward, on a sample of
/// users.
fn parity(m: &Model, split: &Split, config: &Config) -> Result<export::Parity, TrainError> {
    let w = m.tower.to_weights();
    let runtime = |e: &dyn std::fmt::Display| TrainError::Runtime {
        model: m.name.clone(),
        message: e.to_string(),
    };
    let encoder = OnnxScorer::load_encoder(&w.to_encoder_onnx(), w.n_rows, w.d_last())
        .map_err(|e| runtime(&e))?;
    let users: Vec<usize> = (0..split.n_users())
        .filter(|&u| !split.train[u].is_empty())
        .take(config.parity_users)
        .collect();
    let histories: Vec<Vec<u32>> = users.iter().map(|&u| split.train[u].clone()).collect();
    let want = m.tower.user_vectors(&histories);
    let rows: Vec<Vec<u32>> = histories.iter().map(|h| item_rows(h)).collect();
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let got = encoder.score_batch(&refs).map_err(|e| runtime(&e))?;
    let max_abs_diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    if max_abs_diff.is_nan() || max_abs_diff > config.parity_tolerance {
        return Err(TrainError::Parity {
            model: m.name.clone(),
            max_abs_diff,
            tolerance: config.parity_tolerance,
        });
    }
    Ok(export::Parity {
        model: m.name.clone(),
        users: users.len(),
        max_abs_diff,
        tolerance: config.parity_tolerance,
    })
}

/// The student (two-tower, engine by catalogue size) and the teacher (two-tower, exact) bundles.
fn export_bundles(
    config: &Config,
    data: &Interactions,
    split: &Split,
    name: &str,
    teacher: &Model,
    student: &Model,
    kd: Option<&serde_json::Value>,
) -> Result<std::collections::BTreeMap<String, PathBuf>, TrainError> {
    let engine = if data.n_items() > ANN_ABOVE_ITEMS {
        EngineKind::Ann
    } else {
        EngineKind::Exact
    };
    let mut out = std::collections::BTreeMap::new();
    for (m, model_name, params, distillation) in [
        (
            student,
            name.to_string(),
            EngineParams {
                engine,
                ..EngineParams::default()
            },
            kd.cloned(),
        ),
        (
            teacher,
            format!("{name}-teacher"),
            EngineParams::default(),
            None,
        ),
    ] {
        let exported = Exported::new(&m.name, ModelWeights::MeanMlp(m.tower.to_weights()))?;
        let meta = BundleMeta {
            data,
            split,
            split_protocol: SPLIT_PROTOCOL,
            max_history: config.max_history,
            test_metrics: m.test.0.clone(),
            distillation,
        };
        let dir = export::write(
            &config.models,
            &model_name,
            m.role,
            &exported,
            &meta,
            Some(&params),
            Precision::F32,
        )?;
        tracing::info!(bundle = %dir.display(), engine = %params.engine, "bundle written");
        out.insert(
            if m.role == Role::Teacher {
                "teacher".to_string()
            } else {
                "student".to_string()
            },
            dir,
        );
    }
    Ok(out)
}
