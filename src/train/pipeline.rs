//! The job, phase by phase: data → split → popularity, EASE and MLP teachers → student without
//! KD → KD students → latency, parity and export → extra seeds → report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::deps::data::split::{random_split, Split};
use super::deps::data::{read_interactions, Interactions};
use super::deps::eval::popularity_scores;
use super::deps::onnx::{Activation, MeanMlpWeights, ModelWeights, Precision};
use super::export::{self, BundleMeta, Exported};
use super::external::ExternalTeacher;
use super::fit::{evaluate_both, fit, projection, TrainOpts};
use super::kd::{self, HiddenKd, KdVariant, Objective};
use super::model::{MeanMlp, MlpSpec};
use super::report::{
    self, DatasetSummary, ModelResult, Phase, Ratios, Report, SeedResult, SweepPoint,
};
use super::{ease, engines, plot, quantised, Config, StudentFormat, TeacherChoice, TrainError};
use crate::bundle::{item_rows, Role};
use crate::engine::EngineParams;

const RATIOS: [f64; 3] = [0.8, 0.1, 0.1];
const SPLIT_PROTOCOL: &str = "RecBole default: every interaction positive, per-user random 8:1:1, \
    full ranking excluding train (valid) / train+valid (test) items";

/// A trained model of one seed: its report row, exportable weights (`None` for a
/// `--teacher-bundle` teacher, which is already ONNX) and its scores `[n_users, n_items]` from
/// the training histories (the parity reference).
struct Trained {
    result: ModelResult,
    weights: Option<ModelWeights>,
    scores: Vec<f32>,
}

struct SeedRun {
    split: Split,
    models: Vec<Trained>,
    ratios: Ratios,
    sweep: Vec<SweepPoint>,
    seconds: f64,
}

#[derive(Default)]
struct Phases(Vec<Phase>);

impl Phases {
    fn time<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        let t = Instant::now();
        let out = f()?;
        let seconds = t.elapsed().as_secs_f64();
        tracing::info!(
            phase = name,
            seconds = format!("{seconds:.1}"),
            "phase done"
        );
        self.0.push(Phase {
            name: name.to_string(),
            seconds,
        });
        Ok(out)
    }
}

fn apply_preset(config: &mut Config) {
    if config.quick {
        config.max_epochs = config.max_epochs.min(30);
        config.patience = config.patience.min(8);
        config.ease_lambdas = vec![400.0];
        config.latency_iters = config.latency_iters.min(50);
    }
}

fn validate(config: &Config) -> Result<(), TrainError> {
    let bad = |m: &str| Err(TrainError::Config(m.to_string()));
    if config.kd.is_empty() {
        return bad("--kd needs at least one variant");
    }
    if config.ease_lambdas.is_empty() || config.ease_lambdas.iter().any(|l| *l <= 0.0) {
        return bad("--ease-lambdas must be positive values");
    }
    if !(0.0..1.0).contains(&config.input_dropout) {
        return bad("--input-dropout must be in [0, 1)");
    }
    if config.temperature <= 0.0 || config.rank_decay <= 0.0 {
        return bad("--temperature and --rank-decay must be positive");
    }
    if config.batch_size == 0 || config.max_epochs == 0 || config.patience == 0 {
        return bad("--batch-size, --max-epochs and --patience must be at least 1");
    }
    if config.teacher_dim == 0 || config.student_dim == 0 {
        return bad("embedding widths must be at least 1");
    }
    if config.teacher_hidden.contains(&0) || config.student_hidden.contains(&0) {
        return bad("hidden layer widths must be at least 1");
    }
    if config.latency_iters == 0 || config.parity_users == 0 {
        return bad("--latency-iters and --parity-users must be at least 1");
    }
    if config.sweep_dims.contains(&0) {
        return bad("--sweep-dims must be at least 1");
    }
    if config.teacher == TeacherChoice::External && config.teacher_bundle.is_none() {
        return bad("--teacher external needs --teacher-bundle");
    }
    Ok(())
}

fn specs(config: &Config) -> (MlpSpec, MlpSpec) {
    let activation: Activation = config.activation.into();
    (
        MlpSpec {
            dim: config.teacher_dim,
            hidden: config.teacher_hidden.clone(),
            activation,
        },
        MlpSpec {
            dim: config.student_dim,
            hidden: config.student_hidden.clone(),
            activation,
        },
    )
}

/// Runs the whole job; see the module docs of [`crate::train`].
pub fn run(mut config: Config) -> Result<Report, TrainError> {
    let started = Instant::now();
    apply_preset(&mut config);
    validate(&config)?;
    let mut phases = Phases::default();
    let data = phases.time("read data", || {
        Ok(read_interactions(
            &config.data,
            config.format,
            config.min_rating,
        )?)
    })?;
    let name = config.name.clone().unwrap_or_else(|| data.name.clone());
    let teacher_name = format!("{name}-teacher");
    let int8_name = format!("{name}-int8");
    if ![&name, &teacher_name, &int8_name]
        .iter()
        .all(|n| crate::bundle::valid_model_name(n))
    {
        return Err(TrainError::Config(format!(
            "`{name}` is not a valid model name (use --name with letters, digits, '-', '_', '.')"
        )));
    }
    let run_dir = config.run_dir.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("{name}-{now}"))
    });
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    tracing::info!(
        dataset = %data.name, users = data.n_users(), items = data.n_items(),
        interactions = data.records.len(), run_dir = %run_dir.display(), "starting"
    );

    let external = match &config.teacher_bundle {
        Some(dir) => Some(phases.time("teacher bundle", || {
            let t = ExternalTeacher::load(dir, &data)?;
            tracing::info!(bundle = %dir.display(), parameters = t.parameters, "external teacher loaded");
            if t.parameters != t.manifest.parameters {
                tracing::warn!(
                    bundle = %dir.display(),
                    manifest = t.manifest.parameters,
                    counted = t.parameters,
                    "the teacher's manifest declares a different parameter count; using the counted one"
                );
            }
            Ok(t)
        })?),
        None => None,
    };
    let external = external.as_ref();
    let main = run_seed(
        &config,
        &data,
        config.seed,
        SeedPlan {
            variants: &config.kd,
            external,
            sweep_dims: &config.sweep_dims,
        },
        &mut phases,
        "",
    )?;
    let split_dir = run_dir.join("split");
    main.split
        .write_tsv(&split_dir, &data)
        .map_err(|e| TrainError::io(&split_dir, e))?;

    let main_result = phases.time("latency and parity (tract)", || {
        measure(&config, &main, external)
    })?;
    let (mut main_result, parity, exported) = main_result;
    write_parity_sample(
        &run_dir.join("parity-sample.json"),
        &main,
        &data,
        config.seed,
    )?;
    let engine_params = EngineParams {
        engine: config.student_engine,
        ..EngineParams::default()
    };
    // The exported student through every serving engine, next to exact f32.
    let engine_evals = match &exported[&main.ratios.kd_student].weights {
        ModelWeights::MeanMlp(w) => phases.time("serving engines (exported student)", || {
            engines::evaluate(w, &main.split, &engine_params)
        })?,
        ModelWeights::Ease(_) => Vec::new(),
    };
    let mut bundles = BTreeMap::new();
    let meta = |m: &ModelResult, distillation| BundleMeta {
        data: &data,
        split: &main.split,
        split_protocol: SPLIT_PROTOCOL,
        max_history: config.max_history,
        test_metrics: m.test.clone(),
        distillation,
    };
    let student = find(&main_result.models, &main.ratios.kd_student);
    let two_tower = (config.student_format == StudentFormat::TwoTower).then_some(&engine_params);
    if !config.no_export {
        phases.time("export bundles", || {
            let s = export::write(
                &config.models,
                &name,
                Role::Student,
                &exported[&main.ratios.kd_student],
                &meta(student, Some(student.settings.clone())),
                two_tower,
                Precision::F32,
            )?;
            bundles.insert("student".to_string(), s.clone());
            // An external teacher is already a bundle: it is named, not copied. The ensemble
            // exists only as KD targets, so the best teacher with a graph is exported instead.
            let t = match external.filter(|_| main.ratios.teacher == EXTERNAL) {
                Some(ext) => ext.dir.clone(),
                None => {
                    let name = if exported.contains_key(&main.ratios.teacher) {
                        main.ratios.teacher.as_str()
                    } else {
                        best_exported_teacher(&main_result.models, &exported)
                    };
                    export::write(
                        &config.models,
                        &teacher_name,
                        Role::Teacher,
                        &exported[name],
                        &meta(find(&main_result.models, name), None),
                        None,
                        Precision::F32,
                    )?
                }
            };
            tracing::info!(student = %s.display(), teacher = %t.display(), "bundles written");
            bundles.insert("teacher".to_string(), t);
            Ok(())
        })?;
    }
    // The same student with int8 weights, as its own model next to the f32 one. It is written
    // to a scratch repository first and published only once it passes the parity check (a
    // server polling the repository would otherwise take a failing bundle live), with the
    // metrics measured on it in its manifest.
    let quantised = match (bundles.get("student").cloned(), two_tower) {
        (Some(f32_dir), Some(_)) => Some(phases.time(
            "int8 export: candidate vs f32 (bundles read back), then publish",
            || {
                let model = &exported[&main.ratios.kd_student];
                let settings = Some(student.settings.clone());
                let scratch = run_dir.join("int8-candidate");
                let candidate = export::write(
                    &scratch,
                    &int8_name,
                    Role::Student,
                    model,
                    &meta(student, settings.clone()),
                    two_tower,
                    Precision::Int8,
                )?;
                let mut q = quantised::compare(
                    &f32_dir,
                    &candidate,
                    &data,
                    &main.split,
                    config.latency_iters,
                )?;
                let mut m = meta(student, settings);
                m.test_metrics = q.rows[1].test.clone();
                let published = export::write(
                    &config.models,
                    &int8_name,
                    Role::Student,
                    model,
                    &m,
                    two_tower,
                    Precision::Int8,
                )?;
                std::fs::remove_dir_all(&scratch).map_err(|e| TrainError::io(&scratch, e))?;
                q.rows[1].bundle = published.clone();
                bundles.insert("student-int8".to_string(), published);
                Ok(q)
            },
        )?),
        _ => None,
    };
    drop(exported);

    let mut extra = Vec::new();
    if !config.extra_seeds.is_empty() {
        // Extra seeds repeat the comparison, with the KD variant chosen on the main seed only.
        let best = main
            .ratios
            .kd_student
            .trim_start_matches("student-kd-")
            .to_string();
        let variant: Vec<KdVariant> = config
            .kd
            .iter()
            .copied()
            .filter(|v| v.name() == best)
            .collect();
        for &seed in &config.extra_seeds {
            let run = run_seed(
                &config,
                &data,
                seed,
                SeedPlan {
                    variants: &variant,
                    external,
                    sweep_dims: &config.sweep_dims,
                },
                &mut phases,
                &format!("seed {seed}: "),
            )?;
            extra.push(seed_result(seed, &run));
        }
    }
    main_result.seconds = main.seconds;

    let over_seeds = report::summarise(&main_result, &extra);
    let series: Vec<(String, Vec<f64>)> = main_result
        .models
        .iter()
        .filter(|m| !m.curve.is_empty())
        .map(|m| (m.name.clone(), m.curve.clone()))
        .collect();
    let mut report = Report {
        dataset: DatasetSummary {
            name: data.name.clone(),
            path: data.path.clone(),
            sha256: data.sha256.clone(),
            n_users: data.n_users(),
            n_items: data.n_items(),
            n_interactions: data.records.len(),
        },
        config: config.clone(),
        split_protocol: SPLIT_PROTOCOL.to_string(),
        main: main_result,
        engines: engine_evals,
        quantised,
        parity,
        bundles,
        extra,
        over_seeds,
        phases: Vec::new(),
        total_seconds: 0.0,
    };
    phases.time("report", || {
        plot::curves(&run_dir.join("curves.png"), &series)?;
        if !report.main.sweep.is_empty() {
            plot::sweep(&run_dir.join("size-sweep.png"), &sweep_series(&report))?;
        }
        Ok(())
    })?;
    report.phases = phases.0;
    report.total_seconds = started.elapsed().as_secs_f64();
    write_file(&run_dir.join("report.md"), report.to_markdown().as_bytes())?;
    let json = serde_json::to_vec_pretty(&report).expect("report always serializes");
    write_file(&run_dir.join("report.json"), &json)?;
    tracing::info!(
        seconds = format!("{:.1}", report.total_seconds),
        report = %run_dir.join("report.md").display(),
        "done"
    );
    Ok(report)
}

/// The size sweep's chart lines: KD and no-KD test NDCG@10 (main seed) against parameters, and
/// the teacher's level.
fn sweep_series(report: &Report) -> Vec<(String, Vec<(f64, f64)>)> {
    let sweep = &report.main.sweep;
    let k = |p: &SweepPoint| p.parameters as f64 / 1000.0;
    let r = &report.main.ratios;
    let teacher = [sweep.first().map_or(0.0, k), sweep.last().map_or(1.0, k)]
        .map(|x| (x, r.teacher_test_ndcg10));
    vec![
        (
            format!("KD ({})", r.kd_student),
            sweep.iter().map(|p| (k(p), p.kd_test_ndcg10)).collect(),
        ),
        (
            "no KD".to_string(),
            sweep
                .iter()
                .map(|p| (k(p), p.student_test_ndcg10))
                .collect(),
        ),
        (format!("teacher ({})", r.teacher), teacher.to_vec()),
    ]
}

/// A few users' training-framework scores of the exported student, so tests and people can
/// check the bundle on disk against them with any ONNX runtime.
fn write_parity_sample(
    path: &Path,
    run: &SeedRun,
    data: &Interactions,
    seed: u64,
) -> Result<(), TrainError> {
    let student = run
        .models
        .iter()
        .find(|m| m.result.name == run.ratios.kd_student)
        .expect("the KD student was trained");
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

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    std::fs::write(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// The teacher with the best validation NDCG@10 among those exported to ONNX.
fn best_exported_teacher<'a>(
    models: &'a [ModelResult],
    exported: &BTreeMap<String, Exported>,
) -> &'a str {
    models
        .iter()
        .filter(|m| m.role == "teacher" && exported.contains_key(&m.name))
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

fn seed_result(seed: u64, run: &SeedRun) -> SeedResult {
    SeedResult {
        seed,
        ratios: run.ratios.clone(),
        models: run.models.iter().map(|t| t.result.clone()).collect(),
        sweep: run.sweep.clone(),
        seconds: run.seconds,
    }
}

/// Exports every model of the main seed to ONNX, loads it in tract, checks its scores against
/// the training forward and times it.
#[allow(clippy::type_complexity)]
fn measure(
    config: &Config,
    run: &SeedRun,
    external: Option<&ExternalTeacher>,
) -> Result<(SeedResult, Vec<report::Parity>, BTreeMap<String, Exported>), TrainError> {
    let mut result = seed_result(run.split.seed, run);
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
    Ok((result, parity, exported))
}

fn opts(config: &Config) -> TrainOpts {
    TrainOpts {
        max_epochs: config.max_epochs,
        patience: config.patience,
        batch_size: config.batch_size,
        lr: config.lr,
        weight_decay: config.weight_decay,
        input_dropout: config.input_dropout,
    }
}

fn row(
    name: &str,
    role: &str,
    weights: &ModelWeights,
    scores: &[f32],
    split: &Split,
    seconds: f64,
    settings: serde_json::Value,
) -> ModelResult {
    let arch = weights.architecture();
    let row = ModelResult::new(
        name,
        role,
        &arch.kind,
        arch.description,
        weights.parameter_count(),
        settings,
    );
    evaluated(row, scores, weights.n_rows() - 1, split, seconds)
}

/// `row` with its valid/test metrics from `scores` (`[n_users, n_items]`) and its seconds.
fn evaluated(
    mut row: ModelResult,
    scores: &[f32],
    n_items: usize,
    split: &Split,
    seconds: f64,
) -> ModelResult {
    let (valid, test) = evaluate_both(scores, n_items, split);
    (row.valid, row.test) = (valid.0, test.0);
    row.train_seconds = seconds;
    row
}

/// What one seed trains besides the fixed models: the KD variants, the external teacher, and
/// the size sweep's widths.
#[derive(Clone, Copy)]
struct SeedPlan<'a> {
    variants: &'a [KdVariant],
    external: Option<&'a ExternalTeacher>,
    sweep_dims: &'a [usize],
}

fn run_seed(
    config: &Config,
    data: &Interactions,
    seed: u64,
    plan: SeedPlan<'_>,
    phases: &mut Phases,
    prefix: &str,
) -> Result<SeedRun, TrainError> {
    let SeedPlan {
        variants,
        external,
        sweep_dims,
    } = plan;
    let started = Instant::now();
    let n_items = data.n_items();
    let (teacher_spec, student_spec) = specs(config);
    let opts = opts(config);
    let split = phases.time(&format!("{prefix}split"), || {
        Ok(random_split(data, RATIOS, seed))
    })?;
    let mut models = Vec::new();

    models.push(phases.time(&format!("{prefix}popularity"), || {
        let t = Instant::now();
        let pop = popularity_scores(&split, n_items);
        let scores: Vec<f32> = (0..split.n_users())
            .flat_map(|_| pop.iter().copied())
            .collect();
        let weights = popularity_weights(&pop);
        let r = row(
            "popularity",
            "baseline",
            &weights,
            &scores,
            &split,
            t.elapsed().as_secs_f64(),
            serde_json::json!({
                "scores": "training interaction counts (a bias-only mean_mlp)"
            }),
        );
        Ok(Trained {
            result: r,
            weights: Some(weights),
            scores,
        })
    })?);

    models.push(phases.time(&format!("{prefix}teacher: EASE (λ grid)"), || {
        let t = Instant::now();
        let g = ease::gram(&split.train, n_items);
        let mut grid = Vec::new();
        let mut best: Option<(f64, f64, Vec<f32>, Vec<f32>)> = None;
        for &lambda in &config.ease_lambdas {
            let b = ease::fit(&g, lambda)?;
            let scores = ease::score(&b, n_items, &split.train);
            let (valid, _) = evaluate_both(&scores, n_items, &split);
            let v = valid.ndcg10();
            tracing::info!(lambda, valid_ndcg10 = format!("{v:.4}"), "EASE");
            grid.push(serde_json::json!({"lambda": lambda, "valid_ndcg@10": v}));
            if best.as_ref().is_none_or(|b| v > b.0) {
                best = Some((v, lambda, b, scores));
            }
        }
        let (_, lambda, b, scores) = best.expect("at least one λ (validated)");
        let weights = ease::to_weights(&b, n_items);
        let r = row(
            "teacher-ease",
            "teacher",
            &weights,
            &scores,
            &split,
            t.elapsed().as_secs_f64(),
            serde_json::json!({"lambda": lambda, "grid": grid}),
        );
        Ok(Trained {
            result: r,
            weights: Some(weights),
            scores,
        })
    })?);

    let student_seed = seed.wrapping_add(1);
    // A model trained without KD: the MLP teacher, or the no-KD twin of any student shape (the
    // main one, then the size sweep's). Returns its user representations too (the hidden-KD
    // targets, when it is the teacher).
    let train_without_kd = |job: &Untaught<'_>| -> Result<(Trained, Vec<f32>), TrainError> {
        let (spec, seed, label, role, settings) = match job {
            Untaught::MlpTeacher => (
                &teacher_spec,
                seed,
                "teacher-mlp",
                "teacher",
                serde_json::json!({"spec": teacher_spec, "training": opts}),
            ),
            Untaught::Student(spec, label) => (
                *spec,
                student_seed,
                label.as_str(),
                "student",
                serde_json::json!({"spec": spec, "training": opts, "kd": null}),
            ),
        };
        let m = MeanMlp::new(n_items, spec.clone(), &mut StdRng::seed_from_u64(seed))?;
        let f = fit(
            &m,
            &split,
            &Objective::plain(),
            &opts,
            seed,
            &format!("{prefix}{label}"),
        )?;
        let (scores, reps) = m.score_histories(&split.train)?;
        let trained = trained_mlp(label, role, &m, scores, &split, f, settings)?;
        Ok((trained, reps))
    };
    // The size sweep's widths other than the main student's (whose rows it reuses).
    let sweep_specs: Vec<(usize, MlpSpec)> = {
        let mut dims = sweep_dims.to_vec();
        dims.sort_unstable();
        dims.dedup();
        dims.into_iter()
            .map(|dim| {
                let spec = MlpSpec {
                    dim,
                    hidden: student_spec.hidden.iter().map(|_| dim).collect(),
                    activation: student_spec.activation,
                };
                (dim, spec)
            })
            .collect()
    };
    let sweep_trained: Vec<&(usize, MlpSpec)> = sweep_specs
        .iter()
        .filter(|(_, spec)| *spec != student_spec)
        .collect();

    // Nothing without KD needs a teacher: the MLP teacher, the no-KD student and the sweep's
    // no-KD twins train first, two at a time (each training runs candle on its own thread with
    // one matmul thread, so two fill this machine's two cores). The teacher is the longest and
    // is listed last, so it starts first.
    let mut untaught: Vec<Untaught<'_>> = sweep_trained
        .iter()
        .map(|(dim, spec)| Untaught::Student(spec, format!("sweep-d{dim}")))
        .collect();
    untaught.push(Untaught::Student(&student_spec, "student".into()));
    untaught.push(Untaught::MlpTeacher);
    let mut untaught = phases
        .time(
            &format!("{prefix}teacher: MLP ‖ students without KD (2 threads)"),
            || {
                two_at_a_time(&untaught, train_without_kd)
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            },
        )?
        .into_iter();
    let (mlp_teacher, teacher_reps) = untaught.next_back().expect("the teacher job ran");
    let (plain_student, _) = untaught.next_back().expect("the student job ran");
    let sweep_plain: Vec<Trained> = untaught.map(|(t, _)| t).collect();
    models.push(mlp_teacher);

    if let Some(ext) = external {
        models.push(
            phases.time(&format!("{prefix}teacher: external bundle"), || {
                let t = Instant::now();
                let scores = ext.score(&split.train)?;
                Ok(Trained {
                    result: external_row(ext, &scores, &split, t.elapsed().as_secs_f64()),
                    weights: None,
                    scores,
                })
            })?,
        );
    }

    if !config.ensemble_weights.is_empty() {
        models.push(phases.time(&format!("{prefix}teacher: ensemble"), || {
            Ok(ensemble(
                &models[1],
                &models[2],
                &config.ensemble_weights,
                &split,
            ))
        })?);
    }

    let teacher: String = match config.teacher {
        TeacherChoice::Ease => "teacher-ease".into(),
        TeacherChoice::Mlp => "teacher-mlp".into(),
        TeacherChoice::Ensemble => ENSEMBLE.into(),
        TeacherChoice::External => EXTERNAL.into(),
        TeacherChoice::Auto if external.is_some() => EXTERNAL.into(),
        // Among the teachers with a graph of their own: the one distilled from is the one
        // exported next to the student. The ensemble is distilled from on request only: on
        // ML-100K it beats EASE on validation and test NDCG@10, yet at w = 1.5 its KD student
        // scored 0.3170 against EASE's 0.3248 (report.md of that run).
        TeacherChoice::Auto => models
            .iter()
            .filter(|m| m.result.role == "teacher" && m.weights.is_some())
            // Ties go to the first (simplest) teacher.
            .fold(None::<&Trained>, |best, m| match best {
                Some(b) if b.result.valid_ndcg() >= m.result.valid_ndcg() => Some(b),
                _ => Some(m),
            })
            .map(|m| m.result.name.clone())
            .expect("EASE and the MLP are always trained"),
    };
    let teacher = teacher.as_str();
    let teacher_idx = models
        .iter()
        .position(|m| m.result.name == teacher)
        .expect("teacher trained");
    let teacher_params = models[teacher_idx].result.parameters;
    let student_params = student_spec.parameter_count(n_items);
    let ratio = student_params as f64 / teacher_params as f64;
    if ratio > config.max_param_ratio {
        return Err(TrainError::Config(format!(
            "student has {student_params} parameters, {:.1} % of {teacher} ({teacher_params}); \
             --max-param-ratio allows {:.1} % — shrink --student-dim/--student-hidden",
            100.0 * ratio,
            100.0 * config.max_param_ratio
        )));
    }
    tracing::info!(
        teacher,
        student_params,
        teacher_params,
        ratio = format!("{ratio:.4}"),
        "distilling"
    );

    models.push(plain_student);

    // The teacher is fixed: its softened distributions and top-K lists are computed once.
    let teacher_scores = models[teacher_idx].scores.clone();
    let need = |f: fn(KdVariant) -> bool| variants.iter().any(|&v| f(v));
    let logit_t = if need(KdVariant::uses_logit) {
        Some(kd::logit_targets(
            &teacher_scores,
            n_items,
            config.temperature,
            config.lambda_kd,
        )?)
    } else {
        None
    };
    let rank_t = if need(KdVariant::uses_rank) {
        Some(kd::rank_targets(
            &teacher_scores,
            n_items,
            &split.train,
            config.rank_k,
            config.rank_decay,
            config.lambda_rank,
        )?)
    } else {
        None
    };
    let hidden_t = if need(KdVariant::uses_hidden) {
        let d = teacher_spec.last_dim();
        Some(candle_core::Tensor::from_vec(
            teacher_reps.clone(),
            (split.n_users(), d),
            &candle_core::Device::Cpu,
        )?)
    } else {
        None
    };

    // One KD student of any shape (the variants below, then the size sweep).
    let train_kd = |spec: &MlpSpec,
                    variant: KdVariant,
                    label: &str|
     -> Result<Trained, TrainError> {
        let mut rng = StdRng::seed_from_u64(student_seed);
        let m = MeanMlp::new(n_items, spec.clone(), &mut rng)?;
        let objective = Objective {
            lambda_ce: config.lambda_ce,
            logit: if variant.uses_logit() {
                logit_t.as_ref().map(|k| kd::LogitKd {
                    teacher_probs: k.teacher_probs.clone(),
                    neg_entropy: k.neg_entropy.clone(),
                    temperature: k.temperature,
                    lambda: k.lambda,
                })
            } else {
                None
            },
            rank: if variant.uses_rank() {
                rank_t.as_ref().map(|r| kd::RankKd {
                    targets: r.targets.clone(),
                    lambda: r.lambda,
                })
            } else {
                None
            },
            hidden: match (&hidden_t, variant.uses_hidden()) {
                (Some(t), true) => Some(HiddenKd {
                    targets: t.clone(),
                    projection: projection(&mut rng, spec.last_dim(), teacher_spec.last_dim())?,
                    lambda: config.lambda_hidden,
                }),
                _ => None,
            },
        };
        let f = fit(
            &m,
            &split,
            &objective,
            &opts,
            student_seed,
            &format!("{prefix}{label}"),
        )?;
        let (scores, _) = m.score_histories(&split.train)?;
        let settings = serde_json::json!({
            "spec": spec, "training": opts,
            "kd": {
                "variant": variant,
                "teacher": teacher,
                "teacher_bundle": external.filter(|_| teacher == EXTERNAL).map(ExternalTeacher::describe),
                "hidden_teacher": if variant.uses_hidden() { Some("teacher-mlp") } else { None },
                "lambda_ce": config.lambda_ce,
                "lambda_kd": if variant.uses_logit() { Some(config.lambda_kd) } else { None },
                "temperature": if variant.uses_logit() { Some(config.temperature) } else { None },
                "teacher_scores": "standardised per user",
                "rank_k": if variant.uses_rank() { Some(config.rank_k) } else { None },
                "rank_decay": if variant.uses_rank() { Some(config.rank_decay) } else { None },
                "lambda_rank": if variant.uses_rank() { Some(config.lambda_rank) } else { None },
                "lambda_hidden": if variant.uses_hidden() { Some(config.lambda_hidden) } else { None },
            }
        });
        trained_mlp(label, "student", &m, scores, &split, f, settings)
    };
    // The KD variants train two at a time (one per core), in the given order of the report.
    // With a single variant (every extra seed) the sweep's KD twins use it too and join them.
    let single = match variants {
        [only] => Some(*only),
        _ => None,
    };
    let mut taught: Vec<Taught<'_>> = Vec::new();
    if let Some(v) = single {
        taught.extend(
            sweep_trained
                .iter()
                .map(|(dim, spec)| Taught::new(spec, v, format!("sweep-d{dim}-kd"))),
        );
    }
    taught.extend(
        variants
            .iter()
            .map(|&v| Taught::new(&student_spec, v, format!("student-kd-{}", v.name()))),
    );
    let names: Vec<&str> = taught.iter().map(|t| t.label.as_str()).collect();
    let run_taught = |jobs: &[Taught<'_>]| {
        two_at_a_time(jobs, |t| train_kd(t.spec, t.variant, &t.label))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
    };
    let mut trained = phases.time(
        &format!(
            "{prefix}student KD: {}{}",
            names.join(", "),
            if names.len() > 1 { " (2 threads)" } else { "" }
        ),
        || run_taught(&taught),
    )?;
    let variant_rows = trained.split_off(trained.len() - variants.len());
    let mut sweep_kd = trained;
    let mut kd_rows = Vec::new();
    for (trained, &variant) in variant_rows.into_iter().zip(variants) {
        kd_rows.push((models.len(), variant));
        models.push(trained);
    }

    let (best_kd, best_variant) = kd_rows
        .iter()
        .copied()
        .max_by(|&(a, _), &(b, _)| {
            models[a]
                .result
                .valid_ndcg()
                .total_cmp(&models[b].result.valid_ndcg())
        })
        .expect("at least one KD variant (validated)");
    let find = |n: &str| {
        models
            .iter()
            .find(|m| m.result.name == n)
            .expect("model trained")
    };
    let (t, s, k, p) = (
        &models[teacher_idx].result,
        &find("student").result,
        &models[best_kd].result,
        &find("popularity").result,
    );
    let ratios = Ratios {
        teacher: t.name.clone(),
        kd_student: k.name.clone(),
        teacher_test_ndcg10: t.test_ndcg(),
        student_test_ndcg10: s.test_ndcg(),
        kd_student_test_ndcg10: k.test_ndcg(),
        popularity_test_ndcg10: p.test_ndcg(),
        param_ratio: k.parameters as f64 / t.parameters as f64,
        ndcg_ratio: k.test_ndcg() / t.test_ndcg(),
        kd_gain: k.test_ndcg() / s.test_ndcg() - 1.0,
    };
    tracing::info!(
        seed,
        teacher = %ratios.teacher, teacher_ndcg = format!("{:.4}", ratios.teacher_test_ndcg10),
        student_ndcg = format!("{:.4}", ratios.student_test_ndcg10),
        kd = %ratios.kd_student, kd_ndcg = format!("{:.4}", ratios.kd_student_test_ndcg10),
        "seed done"
    );
    // Size sweep: the same recipe (the chosen KD variant) at other widths, each with its no-KD
    // twin (trained above); the main student's width reuses the rows above. With several
    // variants the chosen one is known only now.
    if single.is_none() && !sweep_trained.is_empty() {
        let jobs: Vec<Taught<'_>> = sweep_trained
            .iter()
            .map(|(dim, spec)| Taught::new(spec, best_variant, format!("sweep-d{dim}-kd")))
            .collect();
        let dims: Vec<String> = sweep_trained.iter().map(|(d, _)| format!("d{d}")).collect();
        sweep_kd = phases.time(
            &format!(
                "{prefix}size sweep, KD: {}{}",
                dims.join(", "),
                if dims.len() > 1 { " (2 threads)" } else { "" }
            ),
            || run_taught(&jobs),
        )?;
    }
    let mut sweep_kd = sweep_kd.into_iter();
    let mut sweep_plain = sweep_plain.into_iter();
    let mut sweep = Vec::new();
    for (dim, spec) in &sweep_specs {
        let (plain, kd) = if *spec == student_spec {
            (
                find("student").result.clone(),
                models[best_kd].result.clone(),
            )
        } else {
            (
                sweep_plain.next().expect("a no-KD twin per width").result,
                sweep_kd.next().expect("a KD twin per width").result,
            )
        };
        sweep.push(SweepPoint {
            dim: *dim,
            hidden: spec.hidden.clone(),
            parameters: kd.parameters,
            param_ratio: kd.parameters as f64 / t.parameters as f64,
            student_test_ndcg10: plain.test_ndcg(),
            kd_test_ndcg10: kd.test_ndcg(),
            kd_vs_teacher: kd.test_ndcg() / t.test_ndcg(),
            kd_gain: kd.test_ndcg() / plain.test_ndcg() - 1.0,
        });
    }
    Ok(SeedRun {
        split,
        models,
        ratios,
        sweep,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A training that needs no teacher (the first round of a seed).
enum Untaught<'a> {
    MlpTeacher,
    Student(&'a MlpSpec, String),
}

/// A KD student to train: its shape, variant and report label.
struct Taught<'a> {
    spec: &'a MlpSpec,
    variant: KdVariant,
    label: String,
}

impl<'a> Taught<'a> {
    fn new(spec: &'a MlpSpec, variant: KdVariant, label: String) -> Self {
        Taught {
            spec,
            variant,
            label,
        }
    }
}

fn trained_mlp(
    name: &str,
    role: &str,
    m: &MeanMlp,
    scores: Vec<f32>,
    split: &Split,
    f: super::fit::FitResult,
    settings: serde_json::Value,
) -> Result<Trained, TrainError> {
    let weights = m.to_weights()?;
    let mut r = row(name, role, &weights, &scores, split, f.seconds, settings);
    r.epochs = Some(f.epochs);
    r.best_epoch = Some(f.best_epoch);
    r.curve = f.curve;
    Ok(Trained {
        result: r,
        weights: Some(weights),
        scores,
    })
}

/// `f` over `jobs` on two threads (this machine's cores; a training uses one), results in the
/// order of `jobs`. Jobs are taken from the back of the list first: `combined`, the last KD
/// variant, trains every KD term and is the longest (it ran to the epoch cap in the committed
/// run), so it starts first and the short ones fill the other thread.
fn two_at_a_time<J: Sync, T: Send>(jobs: &[J], f: impl Fn(&J) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let worker = || loop {
        let taken = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(i) = jobs.len().checked_sub(taken + 1) else {
            break;
        };
        let out = f(&jobs[i]);
        *slots[i].lock().expect("no worker panicked holding a slot") = Some(out);
    };
    std::thread::scope(|s| {
        let other = s.spawn(worker);
        worker();
        other.join().expect("training thread panicked");
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("no worker panicked holding a slot")
                .expect("every job ran")
        })
        .collect()
}

/// Name of the `--teacher-bundle` teacher in reports and manifests.
const EXTERNAL: &str = "teacher-external";
/// Name of the EASE + MLP ensemble teacher.
const ENSEMBLE: &str = "teacher-ensemble";

/// The ensemble teacher (HetComp-style score fusion of heterogeneous teachers): per user, the
/// standardised EASE scores plus w × the standardised MLP scores, w picked on validation
/// NDCG@10 from `weights`. Its size is both members'.
fn ensemble(ease: &Trained, mlp: &Trained, weights: &[f64], split: &Split) -> Trained {
    let t = Instant::now();
    let n_items = ease.scores.len() / split.n_users().max(1);
    let z = |s: &[f32]| -> Vec<f64> { s.chunks(n_items).flat_map(kd::standardise).collect() };
    let (ze, zm) = (z(&ease.scores), z(&mlp.scores));
    let mut grid = Vec::new();
    let mut best: Option<(f64, f64, Vec<f32>)> = None;
    for &w in weights {
        let scores: Vec<f32> = ze
            .iter()
            .zip(&zm)
            .map(|(a, b)| (a + w * b) as f32)
            .collect();
        let (valid, _) = evaluate_both(&scores, n_items, split);
        let v = valid.ndcg10();
        grid.push(serde_json::json!({"w": w, "valid_ndcg@10": v}));
        if best.as_ref().is_none_or(|b| v > b.0) {
            best = Some((v, w, scores));
        }
    }
    let (_, w, scores) = best.expect("--ensemble-weights is not empty here");
    let row = ModelResult::new(
        ENSEMBLE,
        "teacher",
        "ensemble",
        format!(
            "per-user standardised scores: `{}` + {w} × `{}` (KD targets only, no ONNX graph)",
            ease.result.name, mlp.result.name
        ),
        ease.result.parameters + mlp.result.parameters,
        serde_json::json!({"w": w, "grid": grid}),
    );
    let seconds = ease.result.train_seconds + mlp.result.train_seconds + t.elapsed().as_secs_f64();
    let result = evaluated(row, &scores, n_items, split, seconds);
    Trained {
        result,
        weights: None,
        scores,
    }
}

/// The report row of a `--teacher-bundle` teacher: evaluated like every model, described by its
/// manifest, sized by its counted weights; "train seconds" is the time it took to score.
fn external_row(ext: &ExternalTeacher, scores: &[f32], split: &Split, seconds: f64) -> ModelResult {
    let m = &ext.manifest;
    let row = ModelResult::new(
        EXTERNAL,
        "teacher",
        &m.architecture.kind,
        format!(
            "{} (bundle `{}` v{} from {})",
            m.architecture.description,
            m.name,
            m.version,
            ext.dir.display()
        ),
        ext.parameters,
        ext.describe(),
    );
    evaluated(row, scores, ext.n_items(), split, seconds)
}

/// Popularity as a `mean_mlp` with a zero user vector: scores are the item bias, so the
/// baseline runs through the same ONNX contract and latency measurement as the rest.
fn popularity_weights(pop: &[f32]) -> ModelWeights {
    let n_rows = pop.len() + 1;
    let mut item_bias = vec![0f32];
    item_bias.extend_from_slice(pop);
    ModelWeights::MeanMlp(MeanMlpWeights {
        n_rows,
        dim: 1,
        embedding: vec![0f32; n_rows],
        layers: Vec::new(),
        activation: Activation::Relu,
        item_matrix_t: vec![0f32; n_rows],
        item_bias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_at_a_time_runs_every_job_once_and_keeps_their_order() {
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        // The first two jobs taken (the last two of the list) wait for each other: with one
        // thread this would never return, so finishing proves both ran at once.
        let both = std::sync::Barrier::new(2);
        let jobs: Vec<u64> = (0..7).collect();
        let out = two_at_a_time(&jobs, |&j| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            threads.lock().unwrap().insert(std::thread::current().id());
            if j >= 5 {
                both.wait();
            }
            j * 10
        });
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(runs.into_inner(), 7);
        assert_eq!(
            threads.into_inner().unwrap().len(),
            2,
            "both threads took jobs"
        );
        assert!(two_at_a_time(&[] as &[u8], |_| 0).is_empty());
    }
}
