//! `distill`'s configuration: every flag (and env var) of the job, with its `--help` text.

use std::path::PathBuf;

use crate::data::Format;
use crate::onnx::Activation;

use super::kd::KdVariant;

/// `--student-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudentFormat {
    TwoTower,
    FullScores,
}

/// Which trainer runs.
/// Where the sampled trainer's KD students start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KdInit {
    /// From the trained no-KD twin of the same width.
    Twin,
    /// From a fresh initialisation.
    Scratch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Dense for small catalogues that fit (≤ 4,096 items), sampled otherwise.
    Auto,
    /// Full-softmax training, EASE, dense KD targets: O(users × items) and O(items²) memory.
    Dense,
    /// Sampled softmax, top-K KD targets, streaming evaluation: scales to 10^5–10^6 items.
    Sampled,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Dense => "dense",
            Mode::Sampled => "sampled",
        }
    }
}

/// Which teacher the students distil from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherChoice {
    /// The `--teacher-bundle` when one is given, else the built-in teacher with a graph (EASE
    /// or MLP) with the higher validation NDCG@10.
    Auto,
    Ease,
    Mlp,
    /// The `--teacher-bundle` (required).
    External,
    /// EASE + MLP score ensemble (`--ensemble-weights`); reported either way.
    Ensemble,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationArg {
    Relu,
    Tanh,
}

impl From<ActivationArg> for Activation {
    fn from(a: ActivationArg) -> Self {
        match a {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::Tanh => Activation::Tanh,
        }
    }
}

/// Train a teacher, distil it into a small student, evaluate both side by side and export them
/// as model bundles.
#[derive(Debug, Clone, clap::Parser, serde::Serialize)]
#[command(
    name = "distill",
    version,
    about = "Train teachers (EASE, MLP), distil them into a small ONNX student, evaluate side by side \
             and export model bundles"
)]
pub struct Config {
    /// Interaction log (MovieLens u.data / ratings.dat, CSV with a header, RecBole .inter).
    #[arg(long, env = "DISTILREC_DATA")]
    pub data: PathBuf,
    /// Format of the interaction log; `auto` guesses from the name and first line.
    #[arg(long, env = "DISTILREC_FORMAT", value_enum, default_value = "auto")]
    #[serde(skip)]
    pub format: Format,
    /// Keep only ratings >= this value as positives (default: every rating is a positive).
    #[arg(long, env = "DISTILREC_MIN_RATING")]
    pub min_rating: Option<f32>,
    /// Model repository: bundles go to `<models>/<name>/<version>/` and `<name>-teacher`.
    #[arg(long, env = "DISTILREC_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Model name of the student bundle (the teacher is `<name>-teacher`); default: the
    /// dataset name.
    #[arg(long, env = "DISTILREC_NAME")]
    pub name: Option<String>,
    /// Where report.json, report.md, curves.png and the split TSVs go
    /// (default `runs/<name>-<unix time>`).
    #[arg(long, env = "DISTILREC_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Seed of the split, the initialisation and the training order.
    #[arg(long, env = "DISTILREC_SEED", default_value_t = 2020)]
    pub seed: u64,
    /// Further seeds to repeat the evaluation on (comma-separated); report.md then shows
    /// mean ± std over all seeds. Bundles are exported for `--seed` only.
    #[arg(long, env = "DISTILREC_EXTRA_SEEDS", value_delimiter = ',', num_args = 0..)]
    pub extra_seeds: Vec<u64>,
    /// Teacher the students distil from.
    #[arg(long, env = "DISTILREC_TEACHER", value_enum, default_value = "auto")]
    pub teacher: TeacherChoice,
    /// A teacher trained elsewhere, as a model bundle directory (`model.onnx`, `manifest.json`
    /// and `items.tsv`; format 1 or 2, e.g. exported from PyTorch): it is evaluated next to the
    /// built-in teachers and, unless `--teacher` says otherwise, is the one distilled from. Its
    /// vocabulary must contain every item of `--data`.
    #[arg(long, env = "DISTILREC_TEACHER_BUNDLE")]
    pub teacher_bundle: Option<PathBuf>,
    /// Distillation variants to train, each reported separately (comma-separated). The best one
    /// on validation NDCG@10 is exported.
    #[arg(
        long,
        env = "DISTILREC_KD",
        value_enum,
        value_delimiter = ',',
        default_value = "logit,rank,hidden,combined"
    )]
    pub kd: Vec<KdVariant>,
    /// Weight of the cross-entropy against the true interactions in the KD students' loss.
    #[arg(long, env = "DISTILREC_LAMBDA_CE", default_value_t = 1.0)]
    pub lambda_ce: f64,
    /// Weight of the Hinton KL term (multiplied by T²).
    #[arg(long, env = "DISTILREC_LAMBDA_KD", default_value_t = 1.0)]
    pub lambda_kd: f64,
    /// Softmax temperature of the logit distillation (teacher scores are standardised per
    /// user first).
    #[arg(long, env = "DISTILREC_TEMPERATURE", default_value_t = 1.0)]
    pub temperature: f64,
    /// Ranking distillation: number of the teacher's top unseen items used as extra positives.
    #[arg(long, env = "DISTILREC_RANK_K", default_value_t = 20)]
    pub rank_k: usize,
    /// Ranking distillation: weights decay as exp(−rank / decay).
    #[arg(long, env = "DISTILREC_RANK_DECAY", default_value_t = 10.0)]
    pub rank_decay: f64,
    /// Weight of the ranking-distillation term.
    #[arg(long, env = "DISTILREC_LAMBDA_RANK", default_value_t = 0.5)]
    pub lambda_rank: f64,
    /// Weight of the hidden-representation (MSE) term.
    #[arg(long, env = "DISTILREC_LAMBDA_HIDDEN", default_value_t = 1.0)]
    pub lambda_hidden: f64,
    /// EASE regularisation values tried; the best on validation NDCG@10 is kept.
    #[arg(
        long,
        env = "DISTILREC_EASE_LAMBDAS",
        value_delimiter = ',',
        default_value = "100,200,400,800"
    )]
    pub ease_lambdas: Vec<f64>,
    /// Ensemble teacher: per-user standardised EASE scores + w × standardised MLP scores, for
    /// each w here (comma-separated); the best on validation NDCG@10 is kept. Its scores exist
    /// only as KD targets (no ONNX graph: when it is the distilling teacher, the best teacher
    /// with a graph is exported as `<name>-teacher`). Empty = no ensemble.
    #[arg(
        long,
        env = "DISTILREC_ENSEMBLE_WEIGHTS",
        value_delimiter = ',',
        num_args = 0..,
        default_value = "0.1,0.2,0.35,0.5,0.75,1,1.5"
    )]
    pub ensemble_weights: Vec<f64>,
    /// Item-embedding width of the MLP teacher.
    #[arg(long, env = "DISTILREC_TEACHER_DIM", default_value_t = 256)]
    pub teacher_dim: usize,
    /// Hidden layer widths of the MLP teacher (comma-separated; the last one is the width of
    /// its item matrix).
    #[arg(
        long,
        env = "DISTILREC_TEACHER_HIDDEN",
        value_delimiter = ',',
        default_value = "512,256"
    )]
    pub teacher_hidden: Vec<usize>,
    /// Item-embedding width of the student.
    #[arg(long, env = "DISTILREC_STUDENT_DIM", default_value_t = 64)]
    pub student_dim: usize,
    /// Hidden layer widths of the student (comma-separated, may be empty).
    #[arg(
        long,
        env = "DISTILREC_STUDENT_HIDDEN",
        value_delimiter = ',',
        num_args = 0..,
        default_value = "64"
    )]
    pub student_hidden: Vec<usize>,
    /// Activation of the MLP layers (teacher and student).
    #[arg(long, env = "DISTILREC_ACTIVATION", value_enum, default_value = "tanh")]
    pub activation: ActivationArg,
    /// Size sweep: student widths (embedding and hidden layers) trained with the chosen KD
    /// variant and without KD on every seed, reported as a table and `size-sweep.png`
    /// (comma-separated; empty = no sweep). The main student's width reuses its rows.
    #[arg(
        long,
        env = "DISTILREC_SWEEP_DIMS",
        value_delimiter = ',',
        num_args = 0..,
        default_value = "16,32,64"
    )]
    pub sweep_dims: Vec<usize>,
    /// Largest allowed student/teacher parameter ratio; the run fails above it.
    #[arg(long, env = "DISTILREC_MAX_PARAM_RATIO", default_value_t = 0.10)]
    pub max_param_ratio: f64,
    /// Epoch budget of every trained model (teacher, student, KD students).
    #[arg(long, env = "DISTILREC_MAX_EPOCHS", default_value_t = 200)]
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation NDCG@10.
    #[arg(long, env = "DISTILREC_PATIENCE", default_value_t = 25)]
    pub patience: usize,
    /// Users per training step.
    #[arg(long, env = "DISTILREC_BATCH_SIZE", default_value_t = 128)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, env = "DISTILREC_LR", default_value_t = 5e-3)]
    pub lr: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, env = "DISTILREC_WEIGHT_DECAY", default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Probability of dropping each history item from the input while training (denoising).
    #[arg(long, env = "DISTILREC_INPUT_DROPOUT", default_value_t = 0.5)]
    pub input_dropout: f64,
    /// Most recent training items kept per user in the bundle's users.tsv.
    #[arg(long, env = "DISTILREC_MAX_HISTORY", default_value_t = 1000)]
    pub max_history: usize,
    /// Users whose exported-ONNX scores are compared with the training forward.
    #[arg(long, env = "DISTILREC_PARITY_USERS", default_value_t = 64)]
    pub parity_users: usize,
    /// Largest allowed |ONNX − training| score difference.
    #[arg(long, env = "DISTILREC_PARITY_TOLERANCE", default_value_t = 1e-4)]
    pub parity_tolerance: f64,
    /// Timed tract calls per latency figure.
    #[arg(long, env = "DISTILREC_LATENCY_ITERS", default_value_t = 200)]
    pub latency_iters: usize,
    /// Threads of candle's matrix products. One is fastest for these small matrices on a busy
    /// 2-core machine (3–4× faster per step than two); exported as RAYON_NUM_THREADS by the
    /// binary before anything starts.
    #[arg(long, env = "DISTILREC_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// CI preset: at most 30 epochs, patience 8, one EASE λ (400), 50 latency calls.
    #[arg(long, env = "DISTILREC_QUICK")]
    pub quick: bool,
    /// Skip writing bundles (evaluation and report only).
    #[arg(long, env = "DISTILREC_NO_EXPORT")]
    pub no_export: bool,
    /// Bundle format of the exported student: `two-tower` (format 2: ONNX user encoder +
    /// `items.f32`, served by a scoring engine) or `full-scores` (format 1: one ONNX graph
    /// scoring every item). The teacher is always format 1.
    #[arg(
        long,
        env = "DISTILREC_STUDENT_FORMAT",
        value_enum,
        default_value = "two-tower"
    )]
    pub student_format: StudentFormat,
    /// Engine written into a two-tower student's manifest (`serving.engine`): exact, int8 or
    /// ann. The report evaluates all three either way.
    #[arg(long, env = "DISTILREC_STUDENT_ENGINE", default_value = "exact")]
    pub student_engine: crate::engine::EngineKind,
    /// Trainer: `dense` (full softmax, EASE, dense KD targets; small catalogues), `sampled`
    /// (sampled softmax, top-K KD targets, streaming evaluation; any catalogue), or `auto`
    /// (dense up to 4,096 items when its plan fits the memory budget, else sampled).
    #[arg(long, env = "DISTILREC_MODE", value_enum, default_value = "auto")]
    pub mode: Mode,
    /// Memory budget of the job (e.g. 8G, 512M). The plan printed at start must fit it, or the
    /// job stops before training anything. Default: the machine's available memory.
    #[arg(long, env = "DISTILREC_MAX_MEMORY", value_parser = crate::os::parse_bytes)]
    pub max_memory: Option<u64>,
    /// Sampled trainer: negatives per step, shared by the batch (logQ-corrected). A catalogue
    /// no larger than this is trained with the exact full softmax.
    #[arg(long, env = "DISTILREC_NEGATIVES", default_value_t = 1024)]
    pub negatives: usize,
    /// Sampled trainer: smoothing exponent of the negative distribution (count^α).
    #[arg(long, env = "DISTILREC_SAMPLER_ALPHA", default_value_t = 0.75)]
    pub sampler_alpha: f64,
    /// Sampled trainer: true items per user and step.
    #[arg(long, env = "DISTILREC_SAMPLED_TARGETS", default_value_t = 32)]
    pub sampled_targets: usize,
    /// Sampled trainer: users per step.
    #[arg(long, env = "DISTILREC_SAMPLED_BATCH_SIZE", default_value_t = 256)]
    pub sampled_batch_size: usize,
    /// Sampled trainer: Adam learning rate.
    #[arg(long, env = "DISTILREC_SAMPLED_LR", default_value_t = 2e-3)]
    pub sampled_lr: f64,
    /// Sampled trainer: Adam learning rate of the teacher (lower than the students': the wide
    /// teacher peaks early and below a 24-wide student at 2e-3 on a 20k-item log, and above it
    /// at 5e-4; docs/bench-runs/2026-12-07-sampled-trainer.md).
    #[arg(long, env = "DISTILREC_SAMPLED_TEACHER_LR", default_value_t = 5e-4)]
    pub sampled_teacher_lr: f64,
    /// Sampled trainer: AdamW's decoupled weight decay (embedding rows decay when a step uses
    /// them).
    #[arg(long, env = "DISTILREC_SAMPLED_WEIGHT_DECAY", default_value_t = 0.0)]
    pub sampled_weight_decay: f64,
    /// Sampled trainer: epoch budget of every model.
    #[arg(long, env = "DISTILREC_SAMPLED_MAX_EPOCHS", default_value_t = 40)]
    pub sampled_max_epochs: usize,
    /// Sampled trainer: stop after this many epochs without a better validation NDCG@10.
    #[arg(long, env = "DISTILREC_SAMPLED_PATIENCE", default_value_t = 5)]
    pub sampled_patience: usize,
    /// Sampled trainer: hidden layer widths of the teacher (its embedding width is
    /// --teacher-dim). One layer generalises better than the dense trainer's two on ML-100K
    /// (test NDCG@10 0.305 vs 0.282 at input dropout 0.7; docs/bench-runs).
    #[arg(
        long,
        env = "DISTILREC_SAMPLED_TEACHER_HIDDEN",
        value_delimiter = ',',
        default_value = "256"
    )]
    pub sampled_teacher_hidden: Vec<usize>,
    /// Sampled trainer: student widths (embedding and hidden layers) of the size sweep; widths
    /// above --max-param-ratio of the teacher are left out. Each trains with and without KD.
    #[arg(
        long,
        env = "DISTILREC_SAMPLED_SWEEP_DIMS",
        value_delimiter = ',',
        default_value = "8,16,24"
    )]
    pub sampled_sweep_dims: Vec<usize>,
    /// Sampled trainer: users whose full-ranking validation NDCG@10 drives early stopping.
    #[arg(long, env = "DISTILREC_EVAL_USERS", default_value_t = 3000)]
    pub eval_users: usize,
    /// Sampled trainer: length of the teacher's top-K list per user (KD targets).
    #[arg(long, env = "DISTILREC_KD_TOP_K", default_value_t = 100)]
    pub kd_top_k: usize,
    /// Sampled trainer: random items added to each user's logit-KD set.
    #[arg(long, env = "DISTILREC_KD_RANDOM", default_value_t = 32)]
    pub kd_random: usize,
    /// Sampled trainer: the student's own current top items added to each user's logit-KD set.
    #[arg(long, env = "DISTILREC_KD_STUDENT_TOP", default_value_t = 20)]
    pub kd_student_top: usize,
    /// Sampled trainer: where a KD student starts. `twin`: from its trained no-KD twin's
    /// weights, so KD refines a model that already ranks (its validation score at the start is
    /// the one to beat, and a student no KD epoch improved is reported as such); `scratch`: from
    /// a fresh initialisation, as its twin did.
    #[arg(long, env = "DISTILREC_KD_INIT", value_enum, default_value = "twin")]
    pub kd_init: KdInit,
    /// Sampled trainer: epochs between refreshes of the student's top items.
    #[arg(long, env = "DISTILREC_KD_REFRESH_EPOCHS", default_value_t = 2)]
    pub kd_refresh_epochs: usize,
    /// Sampled trainer: the exported student is the smallest KD student whose validation
    /// NDCG@10 keeps this share of the teacher's (else the best one).
    #[arg(long, env = "DISTILREC_TARGET_QUALITY", default_value_t = 0.97)]
    pub target_quality: f64,
}
