//! The memory and time plan of a job, made from the data's shape before anything large is
//! allocated: which trainer runs (dense full-softmax or sampled), which phases run, their
//! predicted peak memory and time, and whether that fits `--max-memory`. A plan that does not
//! fit stops the job before it starts, with the phases that needed the memory named.
//!
//! Memory figures count the large buffers each phase holds (matrices, optimiser moments,
//! per-user lists) plus what earlier phases keep; they are upper estimates, not measurements.
//! Time figures are upper bounds (every training at its epoch cap): the sampled trainer's step
//! is timed on this machine at start-up with the job's batch shape, ranking passes scale a
//! measured GEMM rate; the dense trainer's figures only scale the GEMM rate (rough).

use std::time::Instant;

use super::config::{Config, Mode};
use super::error::TrainError;

/// Catalogues above this many items never take the dense path in `--mode auto`: it holds
/// `[users, items]` score matrices per model and EASE's `items²` Gram matrix, and its EASE is
/// O(items³). Measured: a 9k-item log took 14 min on the dense path.
pub const DENSE_MAX_ITEMS: usize = 4_096;

/// The data's shape.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Shape {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
}

/// One phase of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseEstimate {
    pub name: String,
    /// Peak bytes while the phase runs (including what is kept from earlier phases).
    pub bytes: u64,
    pub seconds: f64,
    /// Why the phase is skipped, if it is.
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub shape: Shape,
    pub mode: Mode,
    pub budget_bytes: u64,
    pub phases: Vec<PhaseEstimate>,
    /// Measured f32 GEMM rate used for the time estimates.
    pub gflops: f64,
}

impl Plan {
    pub fn peak_bytes(&self) -> u64 {
        self.phases
            .iter()
            .filter(|p| p.skipped.is_none())
            .map(|p| p.bytes)
            .max()
            .unwrap_or(0)
    }

    pub fn seconds(&self) -> f64 {
        self.phases
            .iter()
            .filter(|p| p.skipped.is_none())
            .map(|p| p.seconds)
            .sum()
    }

    /// Whether phase `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.phases
            .iter()
            .any(|p| p.name == name && p.skipped.is_none())
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "plan: {} users, {} items, {} interactions → {} trainer; budget {} (--max-memory)\n",
            self.shape.users,
            self.shape.items,
            self.shape.interactions,
            self.mode.name(),
            human_bytes(self.budget_bytes)
        );
        s.push_str(&format!(
            "  {:<44} {:>10} {:>10}\n",
            "phase", "peak mem", "time ≤"
        ));
        for p in &self.phases {
            match &p.skipped {
                None => s.push_str(&format!(
                    "  {:<44} {:>10} {:>10}\n",
                    p.name,
                    human_bytes(p.bytes),
                    human_seconds(p.seconds)
                )),
                Some(why) => s.push_str(&format!("  {:<44} skipped: {why}\n", p.name)),
            }
        }
        s.push_str(&format!(
            "  peak {} of {}; at most {} if every training runs to its epoch cap (steps timed on \
             this machine, ranking at the measured GEMM rate of {:.1} GFLOP/s)",
            human_bytes(self.peak_bytes()),
            human_bytes(self.budget_bytes),
            human_seconds(self.seconds()),
            self.gflops
        ));
        s
    }

    /// Refuses the plan if its peak is over the budget, naming the phases over it.
    pub fn check(&self) -> Result<(), TrainError> {
        let over: Vec<String> = self
            .phases
            .iter()
            .filter(|p| p.skipped.is_none() && p.bytes > self.budget_bytes)
            .map(|p| format!("{} ({})", p.name, human_bytes(p.bytes)))
            .collect();
        if over.is_empty() {
            return Ok(());
        }
        Err(TrainError::Plan(format!(
            "this job needs about {} but --max-memory allows {}: {}. Nothing was trained. \
             Lower --teacher-dim/--teacher-hidden, --kd-top-k or --batch-size, or raise \
             --max-memory.\n{}",
            human_bytes(self.peak_bytes()),
            human_bytes(self.budget_bytes),
            over.join(", "),
            self.to_text()
        )))
    }
}

pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

pub fn human_seconds(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// `MemAvailable` of /proc/meminfo (what the kernel can give without swapping), if readable.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The budget: `--max-memory`, else the available memory.
pub fn budget(config: &Config) -> u64 {
    config
        .max_memory
        .or_else(available_memory)
        .unwrap_or(4 << 30)
}

/// Bytes needed to read a log of `file_bytes` (the file and the interned records): checked
/// before reading.
pub fn read_bytes(file_bytes: u64) -> u64 {
    // The file is read whole (Parquet: and copied once); a text line of ~20–30 bytes becomes a
    // 24-byte record in a vector that doubles as it grows (ids are interned as they stream out
    // of the parser); Latin-1 text is decoded into a second copy; Parquet stores a row in a few
    // bytes. 6× covers text; very compact Parquet can still exceed it.
    file_bytes.saturating_mul(6)
}

/// Measured single-thread f32 GEMM rate (GFLOP/s) of this machine, from a few 256³ products.
pub fn gemm_rate() -> f64 {
    let n = 256;
    let a = vec![0.5f32; n * n];
    let b = vec![0.25f32; n * n];
    let mut c = vec![0f32; n * n];
    let reps = 8;
    super::sampled::linalg::matmul(&mut c, &a, &b, (n, n, n), false, false, false);
    let t = Instant::now();
    for _ in 0..reps {
        super::sampled::linalg::matmul(&mut c, &a, &b, (n, n, n), false, false, false);
    }
    let s = t.elapsed().as_secs_f64().max(1e-6);
    (2.0 * (n * n * n * reps) as f64 / s / 1e9).clamp(1.0, 500.0)
}

/// What the sampled trainer's phases need, by the data's shape and the configuration.
pub struct SampledShape {
    pub teacher_dims: (usize, Vec<usize>),
    pub student_dims: Vec<(usize, Vec<usize>)>,
}

fn per_item_params(dim: usize, hidden: &[usize]) -> u64 {
    (dim + hidden.last().copied().unwrap_or(dim) + 1) as u64
}

fn dense_layer_flops(dim: usize, hidden: &[usize]) -> f64 {
    let mut prev = dim;
    let mut f = 0.0;
    for &h in hidden {
        f += (prev * h) as f64;
        prev = h;
    }
    f
}

/// Makes the plan. `gflops` is the measured GEMM rate.
pub fn make(config: &Config, shape: Shape, budget_bytes: u64, gflops: f64) -> Plan {
    let mode = match config.mode {
        Mode::Auto => {
            let dense = dense_phases(config, shape, gflops);
            let peak = dense.iter().map(|p| p.bytes).max().unwrap_or(0);
            if shape.items <= DENSE_MAX_ITEMS && peak <= budget_bytes {
                Mode::Dense
            } else {
                Mode::Sampled
            }
        }
        m => m,
    };
    let phases = match mode {
        Mode::Dense => dense_phases(config, shape, gflops),
        _ => {
            // Timing probes allocate a small model: only once the memory plan fits.
            let untimed = sampled_phases(config, shape, gflops, false);
            if untimed
                .iter()
                .all(|p| p.skipped.is_some() || p.bytes <= budget_bytes)
            {
                sampled_phases(config, shape, gflops, true)
            } else {
                untimed
            }
        }
    };
    Plan {
        shape,
        mode,
        budget_bytes,
        phases,
        gflops,
    }
}

/// Reading and splitting: the same on both paths.
fn read_phase(s: Shape) -> PhaseEstimate {
    PhaseEstimate {
        name: "read and split".into(),
        bytes: data_bytes(s),
        seconds: s.interactions as f64 / 2e6,
        skipped: None,
    }
}

fn data_bytes(s: Shape) -> u64 {
    // Records (24 B), the split's per-user lists (4 B per item + 72 B of Vec headers per user)
    // and, while splitting, every interaction once more as (item, time) in growing vectors
    // (up to 32 B); the id strings.
    (s.interactions as u64) * 60 + (s.users as u64) * 120 + (s.items as u64) * 64
}

fn dense_phases(config: &Config, s: Shape, gflops: f64) -> Vec<PhaseEstimate> {
    let (u, i) = (s.users as u64, s.items as u64);
    let rate = gflops * 1e9;
    let base = data_bytes(s);
    let matrix = u * i * 4;
    // Score matrices kept per model: popularity, EASE, MLP, ensemble, student, KD variants,
    // sweep twins; logit and rank targets; multi-hot batches.
    let models = 5 + config.kd.len() as u64 + 2 * config.sweep_dims.len() as u64;
    let ease_bytes = i * i * 8 * 3;
    let grid = config.ease_lambdas.len() as f64;
    let ease_secs = grid * (i as f64).powi(3) / rate + (s.interactions as f64) * 50.0 / rate;
    let epoch_flops = |dim: usize, hidden: &[usize]| {
        let last = hidden.last().copied().unwrap_or(dim) as f64;
        6.0 * (u as f64) * ((i as f64) * (dim as f64 + last) + dense_layer_flops(dim, hidden))
    };
    let epochs = config.max_epochs.min(60) as f64;
    let teacher_secs = epochs * epoch_flops(config.teacher_dim, &config.teacher_hidden) / rate;
    let student_secs = epochs
        * (1 + config.kd.len() + 2 * config.sweep_dims.len()) as f64
        * epoch_flops(config.student_dim, &config.student_hidden)
        / rate
        / 2.0;
    vec![
        read_phase(s),
        PhaseEstimate {
            name: "teacher: EASE (λ grid)".into(),
            bytes: base + ease_bytes + matrix,
            seconds: ease_secs,
            skipped: None,
        },
        PhaseEstimate {
            name: "teacher: MLP ‖ students without KD".into(),
            bytes: base + matrix * 4,
            seconds: teacher_secs,
            skipped: None,
        },
        PhaseEstimate {
            name: "KD targets and students".into(),
            bytes: base + matrix * (models + 2),
            seconds: student_secs,
            skipped: None,
        },
    ]
}

/// The sampled trainer's shapes: teacher and the size sweep's widths within
/// `--max-param-ratio` of the teacher.
pub fn sampled_shapes(config: &Config) -> SampledShape {
    let teacher = (config.teacher_dim, config.sampled_teacher_hidden.clone());
    let t_per_item = per_item_params(teacher.0, &teacher.1) as f64;
    let mut dims = config.sampled_sweep_dims.clone();
    dims.sort_unstable();
    dims.dedup();
    let students = dims
        .into_iter()
        .map(|d| {
            (
                d,
                config.student_hidden.iter().map(|_| d).collect::<Vec<_>>(),
            )
        })
        .filter(|(d, h)| per_item_params(*d, h) as f64 / t_per_item <= config.max_param_ratio)
        .collect();
    SampledShape {
        teacher_dims: teacher,
        student_dims: students,
    }
}

fn sampled_phases(config: &Config, s: Shape, gflops: f64, timed: bool) -> Vec<PhaseEstimate> {
    let (u, i) = (s.users as u64, s.items as u64);
    let rate = gflops * 1e9;
    let base = data_bytes(s);
    let shapes = sampled_shapes(config);
    let (td, th) = &shapes.teacher_dims;
    let t_last = th.last().copied().unwrap_or(*td);
    // Parameters, two Adam moments, the gradient buffer and the best-epoch copy.
    let train_bytes = |d: usize, h: &[usize]| {
        (i * per_item_params(d, h)
            + dense_layer_flops(d, h) as u64
            + h.iter().sum::<usize>() as u64)
            * 4
            * 5
    };
    // The exact engine's two copies of the item side (matrix + column-major blocks) and the
    // allocator's slack around them.
    let engine_bytes = |last: usize| 3 * i * last as u64 * 4;
    let teacher_train = train_bytes(*td, th) + engine_bytes(t_last);
    let biggest_student = shapes
        .student_dims
        .iter()
        .map(|(d, h)| train_bytes(*d, h) + engine_bytes(h.last().copied().unwrap_or(*d)))
        .max()
        .unwrap_or(0);
    // Every student's weights, kept from their training to the export (no-KD and KD).
    let students_kept: u64 = shapes
        .student_dims
        .iter()
        .map(|(d, h)| 2 * train_bytes(*d, h) / 5)
        .sum();
    let k = config.kd_top_k as u64;
    let lists = u * (k.max(20) * 4 + 32);
    let teacher_users = u * t_last as u64 * 4;
    let student_top = u * (config.kd_student_top as u64 * 4 + 32);
    let per_user = (s.interactions as f64 / s.users.max(1) as f64).max(1.0);
    let batch_shape = (
        config.sampled_batch_size.min(s.users.max(1)),
        (per_user * 0.8 * (1.0 - config.input_dropout)).ceil() as usize,
        config.sampled_targets.min(per_user as usize),
        config.negatives.min(s.items),
    );
    let step_secs = |d: usize, h: &[usize], kd_items: usize| {
        if !timed {
            return 0.0;
        }
        let spec = super::model::MlpSpec {
            dim: d,
            hidden: h.to_vec(),
            activation: config.activation.into(),
        };
        super::sampled::fit::probe_step_seconds(&spec, s.items, batch_shape, kd_items)
    };
    let steps_per_epoch = (u as f64 / config.sampled_batch_size as f64)
        .ceil()
        .max(32.0);
    let epochs = config.sampled_max_epochs as f64;
    let eval_users = (config.eval_users.min(s.users)) as f64;
    let rank_secs = |users: f64, last: usize| 2.0 * users * i as f64 * last as f64 / rate;
    let teacher_secs =
        epochs * (steps_per_epoch * step_secs(*td, th, 0) + rank_secs(eval_users, t_last));
    let kd_items = config.kd_top_k + config.kd_student_top + config.kd_random;
    let student_secs: f64 = shapes
        .student_dims
        .iter()
        .map(|(d, h)| {
            let last = h.last().copied().unwrap_or(*d);
            let plain = steps_per_epoch * step_secs(*d, h, 0);
            let kd = steps_per_epoch * step_secs(*d, h, kd_items + config.rank_k)
                + steps_per_epoch
                    * config.sampled_batch_size as f64
                    * kd_items as f64
                    * t_last as f64
                    * 2.0
                    / rate
                + rank_secs(u as f64, last) / config.kd_refresh_epochs.max(1) as f64;
            epochs * (plain + kd + 2.0 * rank_secs(eval_users, last))
        })
        .sum::<f64>();
    let two = 2.0;
    vec![
        read_phase(s),
        PhaseEstimate {
            name: "teacher: EASE".into(),
            bytes: base + i * i * 8 * 3,
            seconds: 0.0,
            skipped: Some(format!(
                "the sampled trainer has no EASE (its items² Gram matrix would be {} and its \
                 solve O(items³))",
                human_bytes(i * i * 8)
            )),
        },
        PhaseEstimate {
            name: format!("teacher (mean_mlp d{td}, {th:?}) ‖ students without KD"),
            bytes: base + teacher_train + biggest_student + students_kept / 2,
            seconds: teacher_secs.max(student_secs / two / two),
            skipped: None,
        },
        PhaseEstimate {
            name: "teacher: full ranking (evaluation + top-K lists)".into(),
            bytes: base
                + train_bytes(*td, th) / 5
                + engine_bytes(t_last) * 2
                + lists
                + teacher_users,
            seconds: rank_secs(u as f64, t_last) / two,
            skipped: None,
        },
        PhaseEstimate {
            name: format!(
                "KD students (widths {:?}), 2 at a time",
                shapes.student_dims.iter().map(|d| d.0).collect::<Vec<_>>()
            ),
            // Two trainings (and a retry's first attempt each), the kept no-KD students.
            bytes: base
                + train_bytes(*td, th) / 5
                + lists
                + teacher_users
                + 2 * (biggest_student + biggest_student / 5 + student_top)
                + students_kept,
            seconds: student_secs / two,
            skipped: None,
        },
        PhaseEstimate {
            name: "parity and export bundles (ONNX + items.f32)".into(),
            // Kept: the teacher and every student's weights, the teacher's signals; written:
            // the teacher's full-scores ONNX and its tract plan, the encoders, the item files.
            bytes: base
                + lists
                + teacher_users
                + students_kept
                + i * per_item_params(*td, th) * 4 * 6,
            seconds: 2.0 + (i * per_item_params(*td, th)) as f64 * 4.0 / 2e8,
            skipped: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use crate::os::parse_bytes;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("8G").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1G").is_err());
    }
}
