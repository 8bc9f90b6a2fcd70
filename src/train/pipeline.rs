//! The job, phase by phase: data → split → popularity, EASE and MLP teachers → student without
//! KD → KD students → latency, parity and export → extra seeds → report. This file lists the
//! phases; the models are trained in `teachers.rs` and `students.rs`, and what leaves the job
//! is written by `publish.rs`.

use std::path::PathBuf;
use std::time::Instant;

use super::config::{Config, Mode, StudentFormat, TeacherChoice};
use super::error::TrainError;
use super::external::ExternalTeacher;
use super::fit::TrainOpts;
use super::kd::KdVariant;
use super::model::MlpSpec;
use super::plan;
use super::publish::{self, Publish, SeedRun};
use super::report::{self, DatasetSummary, Phase, Ratios, Report, SweepPoint};
use super::sampled::report::SampledReport;
use super::students::{self, KdTargets, SeedCtx, Taught, Untaught};
use super::teachers;
use super::trained::Trained;
use super::{engines, plot};
use crate::data::split::{random_split, Split};
use crate::data::{read_interactions, Interactions};
use crate::engine::EngineParams;
use crate::onnx::{Activation, ModelWeights};

const RATIOS: [f64; 3] = [0.8, 0.1, 0.1];
const SPLIT_PROTOCOL: &str = "RecBole default: every interaction positive, per-user random 8:1:1, \
    full ranking excluding train (valid) / train+valid (test) items";

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
    if config.negatives == 0
        || config.sampled_batch_size == 0
        || config.sampled_max_epochs == 0
        || config.sampled_patience == 0
        || config.sampled_targets == 0
        || config.eval_users == 0
        || config.kd_refresh_epochs == 0
    {
        return bad(
            "--negatives, --sampled-batch-size, --sampled-max-epochs, --sampled-patience, \
             --sampled-targets, --eval-users and --kd-refresh-epochs must be at least 1",
        );
    }
    if config.sampled_teacher_hidden.contains(&0) || config.sampled_sweep_dims.contains(&0) {
        return bad("--sampled-teacher-hidden and --sampled-sweep-dims must be at least 1");
    }
    if !(config.sampled_lr > 0.0
        && config.sampled_teacher_lr > 0.0
        && config.sampled_weight_decay >= 0.0)
    {
        return bad("--sampled-lr and --sampled-teacher-lr must be positive, --sampled-weight-decay not negative");
    }
    if !(config.target_quality > 0.0 && config.target_quality <= 1.0) {
        return bad("--target-quality must be in (0, 1]");
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

/// What a job produced: the dense trainer's report or the sampled trainer's.
#[derive(Debug)]
pub enum Outcome {
    Dense(Box<Report>),
    Sampled(Box<SampledReport>),
}

impl Outcome {
    /// The dense trainer's report; panics for a sampled job (tests that pin `--mode dense`).
    pub fn into_dense(self) -> Report {
        match self {
            Outcome::Dense(r) => *r,
            Outcome::Sampled(_) => panic!("the job ran the sampled trainer"),
        }
    }

    /// Lines for the end of the job's output: where the report is and what needs attention.
    pub fn summary(&self) -> Vec<String> {
        match self {
            Outcome::Dense(r) => {
                let mut v = vec![format!(
                    "teacher {} test NDCG@10 {:.4}; KD student {} {:.4} ({:.1} % of the teacher)",
                    r.main.ratios.teacher,
                    r.main.ratios.teacher_test_ndcg10,
                    r.main.ratios.kd_student,
                    r.main.ratios.kd_student_test_ndcg10,
                    100.0 * r.main.ratios.ndcg_ratio
                )];
                v.extend(r.kd_warnings().into_iter().map(|w| format!("WARNING {w}")));
                v
            }
            Outcome::Sampled(r) => {
                let mut v: Vec<String> = r
                    .models
                    .iter()
                    .map(|m| {
                        format!(
                            "{:<20} params {:>11}  test NDCG@10 {:.4}",
                            m.name,
                            m.parameters,
                            m.test.get("ndcg@10").copied().unwrap_or(f64::NAN)
                        )
                    })
                    .collect();
                v.push(format!("exported student: {}", r.exported_student));
                v.extend(r.warnings.iter().map(|w| format!("WARNING {w}")));
                v
            }
        }
    }
}

/// Runs the whole job; see the module docs of [`crate::train`].
pub fn run(mut config: Config) -> Result<Outcome, TrainError> {
    let started = Instant::now();
    apply_preset(&mut config);
    validate(&config)?;
    let budget = plan::budget(&config);
    let file_bytes = std::fs::metadata(&config.data)
        .map_err(|e| TrainError::io(&config.data, e))?
        .len();
    if plan::read_bytes(file_bytes) > budget {
        return Err(TrainError::Plan(format!(
            "reading {} ({}) needs about {}, over --max-memory {}",
            config.data.display(),
            plan::human_bytes(file_bytes),
            plan::human_bytes(plan::read_bytes(file_bytes)),
            plan::human_bytes(budget)
        )));
    }
    let mut phases = Phases::default();
    let data = phases.time("read data", || {
        Ok(read_interactions(
            &config.data,
            config.format,
            config.min_rating,
        )?)
    })?;
    let shape = plan::Shape {
        users: data.n_users(),
        items: data.n_items(),
        interactions: data.records.len(),
    };
    let plan = plan::make(&config, shape, budget, plan::gemm_rate());
    eprintln!("{}", plan.to_text());
    plan.check()?;
    let name = config.name.clone().unwrap_or_else(|| data.name.clone());
    let run_dir = prepare_run_dir(&config, &name, &data)?;
    if plan.mode != Mode::Dense {
        let read_seconds = phases.0.iter().map(|p| p.seconds).sum();
        let report = super::sampled::run(&config, &data, &plan, &run_dir, &name, read_seconds)?;
        tracing::info!(
            seconds = format!("{:.1}", report.total_seconds),
            report = %run_dir.join("report.md").display(),
            "done"
        );
        return Ok(Outcome::Sampled(Box::new(report)));
    }
    let external = match &config.teacher_bundle {
        Some(dir) => Some(phases.time("teacher bundle", || load_external(dir, &data))?),
        None => None,
    };
    let job = Job {
        config: &config,
        data: &data,
        name: &name,
        run_dir: &run_dir,
        external: external.as_ref(),
    };
    let main = run_seed(
        &config,
        &data,
        config.seed,
        SeedPlan {
            variants: &config.kd,
            external: job.external,
            sweep_dims: &config.sweep_dims,
        },
        &mut phases,
        "",
    )?;
    let split_dir = run_dir.join("split");
    main.split
        .write_tsv(&split_dir, &data)
        .map_err(|e| TrainError::io(&split_dir, e))?;
    let mut outcome = job.publish_main(&main, &mut phases)?;
    let extra = extra_seeds(&config, &data, &main, job.external, &mut phases)?;
    outcome.result.seconds = main.seconds;
    Ok(Outcome::Dense(Box::new(
        job.finish(outcome, extra, phases, started)?,
    )))
}

/// What every phase after the main seed's training reads.
struct Job<'a> {
    config: &'a Config,
    data: &'a Interactions,
    /// The student's model name (`--name`, else the dataset's).
    name: &'a str,
    run_dir: &'a std::path::Path,
    external: Option<&'a ExternalTeacher>,
}

/// The main seed after measuring and publishing.
struct MainOutcome {
    result: report::SeedResult,
    parity: Vec<super::export::Parity>,
    engines: Vec<engines::EngineEval>,
    bundles: std::collections::BTreeMap<String, PathBuf>,
    quantised: Option<super::quantised::QuantisedExport>,
}

impl Job<'_> {
    /// Latency and parity of every exported model, the serving engines on the exported student,
    /// the bundles and the int8 student.
    fn publish_main(&self, main: &SeedRun, phases: &mut Phases) -> Result<MainOutcome, TrainError> {
        let config = self.config;
        let measured = phases.time("latency and parity (tract)", || {
            publish::measure(config, main, self.external)
        })?;
        publish::write_parity_sample(
            &self.run_dir.join("parity-sample.json"),
            main,
            self.data,
            config.seed,
        )?;
        let engine_params = EngineParams {
            engine: config.student_engine,
            ..EngineParams::default()
        };
        // The exported student through every serving engine, next to exact f32.
        let engines = match &measured.exported[&main.ratios.kd_student].weights {
            ModelWeights::MeanMlp(w) => phases
                .time("serving engines (exported student)", || {
                    engines::evaluate(w, &main.split, &engine_params)
                })?,
            ModelWeights::Ease(_) => Vec::new(),
        };
        let out = Publish {
            config,
            data: self.data,
            run: main,
            measured: &measured,
            external: self.external,
            two_tower: (config.student_format == StudentFormat::TwoTower).then_some(&engine_params),
            split_protocol: SPLIT_PROTOCOL,
            run_dir: self.run_dir,
        };
        let mut bundles = if config.no_export {
            Default::default()
        } else {
            phases.time("export bundles", || out.bundles(self.name))?
        };
        let quantised = match (bundles.get("student").cloned(), out.two_tower) {
            (Some(f32_dir), Some(_)) => {
                let q = phases.time(
                    "int8 export: candidate vs f32 (bundles read back), then publish",
                    || out.int8(&f32_dir, &format!("{}-int8", self.name)),
                )?;
                bundles.insert("student-int8".to_string(), q.rows[1].bundle.clone());
                Some(q)
            }
            _ => None,
        };
        Ok(MainOutcome {
            result: measured.result,
            parity: measured.parity,
            engines,
            bundles,
            quantised,
        })
    }

    /// The report: assembled, plotted and written as report.md and report.json.
    fn finish(
        &self,
        main: MainOutcome,
        extra: Vec<report::SeedResult>,
        mut phases: Phases,
        started: Instant,
    ) -> Result<Report, TrainError> {
        let data = self.data;
        let over_seeds = report::summarise(&main.result, &extra);
        let series: Vec<(String, Vec<f64>)> = main
            .result
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
            config: self.config.clone(),
            split_protocol: SPLIT_PROTOCOL.to_string(),
            main: main.result,
            engines: main.engines,
            quantised: main.quantised,
            parity: main.parity,
            bundles: main.bundles,
            extra,
            over_seeds,
            phases: Vec::new(),
            total_seconds: 0.0,
        };
        let run_dir = self.run_dir;
        phases.time("report", || {
            plot::curves(&run_dir.join("curves.png"), &series)?;
            if !report.main.sweep.is_empty() {
                plot::sweep(&run_dir.join("size-sweep.png"), &sweep_series(&report))?;
            }
            Ok(())
        })?;
        report.phases = phases.0;
        report.total_seconds = started.elapsed().as_secs_f64();
        write_report(run_dir, &report)?;
        Ok(report)
    }
}

/// Checks the bundle names `name` makes and creates the run directory (`--run-dir`, else
/// `runs/<name>-<unix seconds>`).
fn prepare_run_dir(
    config: &Config,
    name: &str,
    data: &Interactions,
) -> Result<PathBuf, TrainError> {
    let names = [
        name.to_string(),
        format!("{name}-teacher"),
        format!("{name}-int8"),
    ];
    if !names.iter().all(|n| crate::bundle::valid_model_name(n)) {
        return Err(TrainError::Config(format!(
            "`{name}` is not a valid model name (use --name with letters, digits, '-', '_', '.')"
        )));
    }
    let run_dir = config.run_dir.clone().unwrap_or_else(|| {
        let now = crate::os::unix_seconds(std::time::SystemTime::now());
        PathBuf::from("runs").join(format!("{name}-{now}"))
    });
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    tracing::info!(
        dataset = %data.name, users = data.n_users(), items = data.n_items(),
        interactions = data.records.len(), run_dir = %run_dir.display(), "starting"
    );
    Ok(run_dir)
}

fn load_external(
    dir: &std::path::Path,
    data: &Interactions,
) -> Result<ExternalTeacher, TrainError> {
    let t = ExternalTeacher::load(dir, data)?;
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
}

/// Extra seeds repeat the comparison, with the KD variant chosen on the main seed only.
fn extra_seeds(
    config: &Config,
    data: &Interactions,
    main: &SeedRun,
    external: Option<&ExternalTeacher>,
    phases: &mut Phases,
) -> Result<Vec<report::SeedResult>, TrainError> {
    let variant = [main.best_variant];
    let mut extra = Vec::new();
    for &seed in &config.extra_seeds {
        let run = run_seed(
            config,
            data,
            seed,
            SeedPlan {
                variants: &variant,
                external,
                sweep_dims: &config.sweep_dims,
            },
            phases,
            &format!("seed {seed}: "),
        )?;
        extra.push(run.result());
    }
    Ok(extra)
}

fn write_report(run_dir: &std::path::Path, report: &Report) -> Result<(), TrainError> {
    publish::write_file(&run_dir.join("report.md"), report.to_markdown().as_bytes())?;
    let json = serde_json::to_vec_pretty(report).expect("report always serializes");
    publish::write_file(&run_dir.join("report.json"), &json)?;
    tracing::info!(
        seconds = format!("{:.1}", report.total_seconds),
        report = %run_dir.join("report.md").display(),
        "done"
    );
    Ok(())
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

fn seed_ctx<'a>(
    config: &'a Config,
    split: &'a Split,
    n_items: usize,
    seed: u64,
    prefix: &'a str,
) -> SeedCtx<'a> {
    let (teacher_spec, student_spec) = specs(config);
    SeedCtx {
        config,
        split,
        n_items,
        opts: opts(config),
        teacher_spec,
        student_spec,
        seed,
        prefix,
    }
}

/// What one seed trains besides the fixed models: the KD variants, the external teacher, and
/// the size sweep's widths.
#[derive(Clone, Copy)]
struct SeedPlan<'a> {
    variants: &'a [KdVariant],
    external: Option<&'a ExternalTeacher>,
    sweep_dims: &'a [usize],
}

/// One seed: split, teachers, students without KD, KD students, the size sweep. The report's
/// model order is popularity, EASE, MLP, external, ensemble, student, KD variants.
fn run_seed(
    config: &Config,
    data: &Interactions,
    seed: u64,
    plan: SeedPlan<'_>,
    phases: &mut Phases,
    prefix: &str,
) -> Result<SeedRun, TrainError> {
    let started = Instant::now();
    let n_items = data.n_items();
    let split = phases.time(&format!("{prefix}split"), || {
        Ok(random_split(data, RATIOS, seed))
    })?;
    let ctx = seed_ctx(config, &split, n_items, seed, prefix);
    let sweep_specs = students::sweep_specs(plan.sweep_dims, &ctx.student_spec);
    // The size sweep's widths other than the main student's (whose rows it reuses).
    let sweep_trained: Vec<&(usize, MlpSpec)> = sweep_specs
        .iter()
        .filter(|(_, spec)| *spec != ctx.student_spec)
        .collect();
    let (mut models, untaught) = teacher_rounds(&ctx, plan.external, &sweep_trained, phases)?;
    let teacher = teachers::choose(config, &models, plan.external.is_some());
    let teacher_idx = position(&models, &teacher);
    teachers::check_size(
        config,
        &models[teacher_idx].result,
        ctx.student_spec.parameter_count(n_items),
    )?;
    let student_idx = models.len();
    models.push(untaught.plain_student);

    // The teacher is fixed: its softened distributions and top-K lists are computed once.
    let targets = KdTargets::new(
        &ctx,
        plan.variants,
        &teacher,
        plan.external,
        &models[teacher_idx].scores,
        &untaught.teacher_reps,
    )?;
    let kd = kd_round(&ctx, &targets, plan.variants, &sweep_trained, phases)?;
    let first_kd = models.len();
    models.extend(kd.variant_rows);
    let (best_kd, best_variant) = chosen_kd(&models, first_kd, plan.variants);
    let ratios = ratios(&models, teacher_idx, student_idx, best_kd);
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
    let sweep_kd = match kd.sweep_kd {
        Some(rows) => rows,
        None => sweep_kd_round(&ctx, &targets, best_variant, &sweep_trained, phases)?,
    };
    let sweep: Vec<SweepPoint> = students::sweep_points(
        &sweep_specs,
        &ctx.student_spec,
        (&models[student_idx].result, &models[best_kd].result),
        untaught.sweep_plain,
        sweep_kd,
        &models[teacher_idx].result,
    );
    Ok(SeedRun {
        split,
        models,
        ratios,
        sweep,
        best_variant,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The models without KD, in the report's order: popularity, EASE, the first round (MLP
/// teacher ‖ students without KD), the external teacher, the ensemble. The no-KD student and
/// the sweep's twins come back in the round, for the caller to place.
fn teacher_rounds(
    ctx: &SeedCtx<'_>,
    external: Option<&ExternalTeacher>,
    sweep_trained: &[&(usize, MlpSpec)],
    phases: &mut Phases,
) -> Result<(Vec<Trained>, UntaughtRound), TrainError> {
    let (config, split, n_items, prefix) = (ctx.config, ctx.split, ctx.n_items, ctx.prefix);
    let popularity = phases.time(&format!("{prefix}popularity"), || {
        Ok(teachers::popularity(split, n_items))
    })?;
    let ease = phases.time(&format!("{prefix}teacher: EASE (λ grid)"), || {
        teachers::ease(config, split, n_items)
    })?;
    let (mlp, untaught) = untaught_round(ctx, sweep_trained, phases)?;
    let mut models = vec![popularity, ease, mlp];
    if let Some(ext) = external {
        models.push(
            phases.time(&format!("{prefix}teacher: external bundle"), || {
                teachers::external(ext, split)
            })?,
        );
    }
    if !config.ensemble_weights.is_empty() {
        let e = phases.time(&format!("{prefix}teacher: ensemble"), || {
            let (ease, mlp) = (
                &models[position(&models, teachers::EASE)],
                &models[position(&models, teachers::MLP)],
            );
            Ok(teachers::ensemble(
                ease,
                mlp,
                &config.ensemble_weights,
                split,
            ))
        })?;
        models.push(e);
    }
    Ok((models, untaught))
}

/// What the first round of a seed trained besides the MLP teacher.
struct UntaughtRound {
    /// The MLP teacher's final hidden user vectors (hidden-KD targets).
    teacher_reps: Vec<f32>,
    plain_student: Trained,
    /// The sweep's no-KD twins, in the order of the widths.
    sweep_plain: Vec<Trained>,
}

/// Nothing without KD needs a teacher: the MLP teacher, the no-KD student and the sweep's
/// no-KD twins train first, two at a time (each training runs candle on its own thread with
/// one matmul thread, so two fill this machine's two cores). The teacher is the longest and
/// is listed last, so it starts first.
fn untaught_round(
    ctx: &SeedCtx<'_>,
    sweep_trained: &[&(usize, MlpSpec)],
    phases: &mut Phases,
) -> Result<(Trained, UntaughtRound), TrainError> {
    let mut jobs: Vec<Untaught<'_>> = sweep_trained
        .iter()
        .map(|(dim, spec)| Untaught::Student(spec, format!("sweep-d{dim}")))
        .collect();
    jobs.push(Untaught::Student(&ctx.student_spec, "student".into()));
    jobs.push(Untaught::MlpTeacher);
    let mut done = phases
        .time(
            &format!(
                "{}teacher: MLP ‖ students without KD (2 threads)",
                ctx.prefix
            ),
            || {
                students::two_at_a_time(&jobs, |j| students::train_without_kd(ctx, j))
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            },
        )?
        .into_iter();
    let (mlp_teacher, teacher_reps) = done.next_back().expect("the teacher job ran");
    let (plain_student, _) = done.next_back().expect("the student job ran");
    Ok((
        mlp_teacher,
        UntaughtRound {
            teacher_reps,
            plain_student,
            sweep_plain: done.map(|(t, _)| t).collect(),
        },
    ))
}

/// What the KD round trained: one row per variant, and the sweep's KD twins when the variant
/// was already known (a single one).
struct KdRound {
    variant_rows: Vec<Trained>,
    sweep_kd: Option<Vec<Trained>>,
}

/// The KD variants train two at a time (one per core), in the given order of the report.
/// With a single variant (every extra seed) the sweep's KD twins use it too and join them.
fn kd_round(
    ctx: &SeedCtx<'_>,
    targets: &KdTargets<'_>,
    variants: &[KdVariant],
    sweep_trained: &[&(usize, MlpSpec)],
    phases: &mut Phases,
) -> Result<KdRound, TrainError> {
    let single = match variants {
        [only] => Some(*only),
        _ => None,
    };
    let mut jobs: Vec<Taught<'_>> = Vec::new();
    if let Some(v) = single {
        jobs.extend(
            sweep_trained
                .iter()
                .map(|(dim, spec)| Taught::new(spec, v, format!("sweep-d{dim}-kd"))),
        );
    }
    jobs.extend(
        variants
            .iter()
            .map(|&v| Taught::new(&ctx.student_spec, v, format!("student-kd-{}", v.name()))),
    );
    let names: Vec<&str> = jobs.iter().map(|t| t.label.as_str()).collect();
    let mut trained = phases.time(
        &format!(
            "{}student KD: {}{}",
            ctx.prefix,
            names.join(", "),
            if names.len() > 1 { " (2 threads)" } else { "" }
        ),
        || students::train_kd_jobs(ctx, targets, &jobs),
    )?;
    let variant_rows = trained.split_off(trained.len() - variants.len());
    Ok(KdRound {
        variant_rows,
        sweep_kd: single.map(|_| trained),
    })
}

/// The sweep's KD twins with the variant chosen on validation (several variants).
fn sweep_kd_round(
    ctx: &SeedCtx<'_>,
    targets: &KdTargets<'_>,
    variant: KdVariant,
    sweep_trained: &[&(usize, MlpSpec)],
    phases: &mut Phases,
) -> Result<Vec<Trained>, TrainError> {
    if sweep_trained.is_empty() {
        return Ok(Vec::new());
    }
    let jobs: Vec<Taught<'_>> = sweep_trained
        .iter()
        .map(|(dim, spec)| Taught::new(spec, variant, format!("sweep-d{dim}-kd")))
        .collect();
    let dims: Vec<String> = sweep_trained.iter().map(|(d, _)| format!("d{d}")).collect();
    phases.time(
        &format!(
            "{}size sweep, KD: {}{}",
            ctx.prefix,
            dims.join(", "),
            if dims.len() > 1 { " (2 threads)" } else { "" }
        ),
        || students::train_kd_jobs(ctx, targets, &jobs),
    )
}

/// The KD student (by index into `models`, whose rows from `first` are `variants` in order)
/// with the best validation NDCG@10, and its variant.
fn chosen_kd(models: &[Trained], first: usize, variants: &[KdVariant]) -> (usize, KdVariant) {
    (first..models.len())
        .zip(variants.iter().copied())
        .max_by(|&(a, _), &(b, _)| {
            models[a]
                .result
                .valid_ndcg()
                .total_cmp(&models[b].result.valid_ndcg())
        })
        .expect("at least one KD variant (validated)")
}

fn position(models: &[Trained], name: &str) -> usize {
    models
        .iter()
        .position(|m| m.result.name == name)
        .expect("only models of this seed are looked up")
}

/// The ratios the acceptance criteria are stated in, from the rows of one seed.
fn ratios(models: &[Trained], teacher: usize, student: usize, best_kd: usize) -> Ratios {
    let (t, s, k, p) = (
        &models[teacher].result,
        &models[student].result,
        &models[best_kd].result,
        &models[position(models, teachers::POPULARITY)].result,
    );
    Ratios {
        teacher: t.name.clone(),
        kd_student: k.name.clone(),
        teacher_test_ndcg10: t.test_ndcg(),
        student_test_ndcg10: s.test_ndcg(),
        kd_student_test_ndcg10: k.test_ndcg(),
        popularity_test_ndcg10: p.test_ndcg(),
        param_ratio: k.parameters as f64 / t.parameters as f64,
        ndcg_ratio: k.test_ndcg() / t.test_ndcg(),
        kd_gain: k.test_ndcg() / s.test_ndcg() - 1.0,
    }
}
