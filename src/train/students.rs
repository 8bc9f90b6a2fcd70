//! The `mean_mlp` trainings of a seed: the MLP teacher and every student without KD (first
//! round), the KD students (second round), the size sweep's twins, and the two-thread schedule
//! they run on. Every training draws from its own seeded generator, so the schedule changes no
//! result.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::config::Config;
use super::error::TrainError;
use super::external::ExternalTeacher;
use super::fit::{fit, projection, TrainOpts};
use super::kd::{self, HiddenKd, KdVariant, LogitKd, Objective, RankKd};
use super::model::{MeanMlp, MlpSpec};
use super::report::{ModelResult, SweepPoint};
use super::teachers::{EXTERNAL, MLP};
use super::trained::{trained_mlp, Trained};
use crate::bundle::Role;
use crate::data::split::Split;

/// What every training of one seed shares.
pub struct SeedCtx<'a> {
    pub config: &'a Config,
    pub split: &'a Split,
    pub n_items: usize,
    pub opts: TrainOpts,
    pub teacher_spec: MlpSpec,
    pub student_spec: MlpSpec,
    /// The MLP teacher's seed; every student uses `seed + 1`.
    pub seed: u64,
    /// Put before progress labels and phase names (`"seed 2021: "` on extra seeds).
    pub prefix: &'a str,
}

impl SeedCtx<'_> {
    fn student_seed(&self) -> u64 {
        self.seed.wrapping_add(1)
    }
}

/// A training that needs no teacher (the first round of a seed).
pub enum Untaught<'a> {
    MlpTeacher,
    Student(&'a MlpSpec, String),
}

/// A KD student to train: its shape, variant and report label.
pub struct Taught<'a> {
    pub spec: &'a MlpSpec,
    pub variant: KdVariant,
    pub label: String,
}

impl<'a> Taught<'a> {
    pub fn new(spec: &'a MlpSpec, variant: KdVariant, label: String) -> Self {
        Taught {
            spec,
            variant,
            label,
        }
    }
}

/// A model trained without KD: the MLP teacher, or the no-KD twin of any student shape (the
/// main one, then the size sweep's). Returns its user representations too (the hidden-KD
/// targets, when it is the teacher).
pub fn train_without_kd(
    ctx: &SeedCtx<'_>,
    job: &Untaught<'_>,
) -> Result<(Trained, Vec<f32>), TrainError> {
    let (spec, seed, label, role, settings) = match job {
        Untaught::MlpTeacher => (
            &ctx.teacher_spec,
            ctx.seed,
            MLP,
            Role::Teacher,
            serde_json::json!({"spec": ctx.teacher_spec, "training": ctx.opts}),
        ),
        Untaught::Student(spec, label) => (
            *spec,
            ctx.student_seed(),
            label.as_str(),
            Role::Student,
            serde_json::json!({"spec": spec, "training": ctx.opts, "kd": null}),
        ),
    };
    let m = MeanMlp::new(ctx.n_items, spec.clone(), &mut StdRng::seed_from_u64(seed))?;
    let f = fit(
        &m,
        ctx.split,
        &Objective::plain(),
        &ctx.opts,
        seed,
        &format!("{}{label}", ctx.prefix),
    )?;
    let (scores, reps) = m.score_histories(&ctx.split.train)?;
    let trained = trained_mlp(label, role, &m, scores, ctx.split, f, settings)?;
    Ok((trained, reps))
}

/// The teacher's KD targets, computed once per seed for the variants that need them.
pub struct KdTargets<'a> {
    /// The teacher's report name.
    pub teacher: &'a str,
    pub external: Option<&'a ExternalTeacher>,
    logit: Option<LogitKd>,
    rank: Option<RankKd>,
    hidden: Option<Tensor>,
}

impl<'a> KdTargets<'a> {
    /// `teacher_scores`: the teacher's `[n_users, n_items]`; `teacher_reps`: the MLP teacher's
    /// final hidden user vectors (the hidden-KD targets, whatever the teacher).
    pub fn new(
        ctx: &SeedCtx<'_>,
        variants: &[KdVariant],
        teacher: &'a str,
        external: Option<&'a ExternalTeacher>,
        teacher_scores: &[f32],
        teacher_reps: &[f32],
    ) -> Result<Self, TrainError> {
        let config = ctx.config;
        let need = |f: fn(KdVariant) -> bool| variants.iter().any(|&v| f(v));
        let logit = if need(KdVariant::uses_logit) {
            Some(kd::logit_targets(
                teacher_scores,
                ctx.n_items,
                config.temperature,
                config.lambda_kd,
            )?)
        } else {
            None
        };
        let rank = if need(KdVariant::uses_rank) {
            Some(kd::rank_targets(
                teacher_scores,
                ctx.n_items,
                &ctx.split.train,
                config.rank_k,
                config.rank_decay,
                config.lambda_rank,
            )?)
        } else {
            None
        };
        let hidden = if need(KdVariant::uses_hidden) {
            let d = ctx.teacher_spec.last_dim();
            Some(Tensor::from_vec(
                teacher_reps.to_vec(),
                (ctx.split.n_users(), d),
                &Device::Cpu,
            )?)
        } else {
            None
        };
        Ok(KdTargets {
            teacher,
            external,
            logit,
            rank,
            hidden,
        })
    }

    /// The loss of one KD student (`rng` draws the hidden-KD projection).
    fn objective(
        &self,
        ctx: &SeedCtx<'_>,
        spec: &MlpSpec,
        variant: KdVariant,
        rng: &mut StdRng,
    ) -> Result<Objective, TrainError> {
        let config = ctx.config;
        Ok(Objective {
            lambda_ce: config.lambda_ce,
            logit: if variant.uses_logit() {
                self.logit.as_ref().map(|k| LogitKd {
                    teacher_probs: k.teacher_probs.clone(),
                    neg_entropy: k.neg_entropy.clone(),
                    temperature: k.temperature,
                    lambda: k.lambda,
                })
            } else {
                None
            },
            rank: if variant.uses_rank() {
                self.rank.as_ref().map(|r| RankKd {
                    targets: r.targets.clone(),
                    lambda: r.lambda,
                })
            } else {
                None
            },
            hidden: match (&self.hidden, variant.uses_hidden()) {
                (Some(t), true) => Some(HiddenKd {
                    targets: t.clone(),
                    projection: projection(rng, spec.last_dim(), ctx.teacher_spec.last_dim())?,
                    lambda: config.lambda_hidden,
                }),
                _ => None,
            },
        })
    }

    /// The report's record of how a KD student was taught.
    fn settings(&self, ctx: &SeedCtx<'_>, spec: &MlpSpec, variant: KdVariant) -> serde_json::Value {
        let config = ctx.config;
        let teacher = self.teacher;
        serde_json::json!({
            "spec": spec, "training": ctx.opts,
            "kd": {
                "variant": variant,
                "teacher": teacher,
                "teacher_bundle": self.external.filter(|_| teacher == EXTERNAL).map(ExternalTeacher::describe),
                "hidden_teacher": if variant.uses_hidden() { Some(MLP) } else { None },
                "lambda_ce": config.lambda_ce,
                "lambda_kd": if variant.uses_logit() { Some(config.lambda_kd) } else { None },
                "temperature": if variant.uses_logit() { Some(config.temperature) } else { None },
                "teacher_scores": "standardised per user",
                "rank_k": if variant.uses_rank() { Some(config.rank_k) } else { None },
                "rank_decay": if variant.uses_rank() { Some(config.rank_decay) } else { None },
                "lambda_rank": if variant.uses_rank() { Some(config.lambda_rank) } else { None },
                "lambda_hidden": if variant.uses_hidden() { Some(config.lambda_hidden) } else { None },
            }
        })
    }
}

/// One KD student of any shape (the variants, then the size sweep).
pub fn train_kd(
    ctx: &SeedCtx<'_>,
    targets: &KdTargets<'_>,
    job: &Taught<'_>,
) -> Result<Trained, TrainError> {
    let student_seed = ctx.student_seed();
    let mut rng = StdRng::seed_from_u64(student_seed);
    let m = MeanMlp::new(ctx.n_items, job.spec.clone(), &mut rng)?;
    let objective = targets.objective(ctx, job.spec, job.variant, &mut rng)?;
    let f = fit(
        &m,
        ctx.split,
        &objective,
        &ctx.opts,
        student_seed,
        &format!("{}{}", ctx.prefix, job.label),
    )?;
    let (scores, _) = m.score_histories(&ctx.split.train)?;
    let settings = targets.settings(ctx, job.spec, job.variant);
    trained_mlp(
        &job.label,
        Role::Student,
        &m,
        scores,
        ctx.split,
        f,
        settings,
    )
}

/// The KD jobs two at a time, results in the order of `jobs`.
pub fn train_kd_jobs(
    ctx: &SeedCtx<'_>,
    targets: &KdTargets<'_>,
    jobs: &[Taught<'_>],
) -> Result<Vec<Trained>, TrainError> {
    two_at_a_time(jobs, |t| train_kd(ctx, targets, t))
        .into_iter()
        .collect()
}

/// The size sweep's widths (sorted, deduplicated), each with the student's recipe at that
/// width.
pub fn sweep_specs(sweep_dims: &[usize], student_spec: &MlpSpec) -> Vec<(usize, MlpSpec)> {
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
}

/// The size sweep's rows: per width, the no-KD and KD twins (the main student's width reuses
/// the main rows `plain_main` and `kd_main`), against the teacher `t`.
pub fn sweep_points(
    specs: &[(usize, MlpSpec)],
    student_spec: &MlpSpec,
    (plain_main, kd_main): (&ModelResult, &ModelResult),
    sweep_plain: Vec<Trained>,
    sweep_kd: Vec<Trained>,
    t: &ModelResult,
) -> Vec<SweepPoint> {
    let mut sweep_kd = sweep_kd.into_iter();
    let mut sweep_plain = sweep_plain.into_iter();
    let mut sweep = Vec::new();
    for (dim, spec) in specs {
        let (plain, kd) = if spec == student_spec {
            (plain_main.clone(), kd_main.clone())
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
    sweep
}

/// `f` over `jobs` on two threads (this machine's cores; a training uses one), results in the
/// order of `jobs`. Jobs are taken from the back of the list first: `combined`, the last KD
/// variant, trains every KD term and is the longest (it ran to the epoch cap in the committed
/// run), so it starts first and the short ones fill the other thread.
pub fn two_at_a_time<J: Sync, T: Send>(jobs: &[J], f: impl Fn(&J) -> T + Sync) -> Vec<T> {
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
