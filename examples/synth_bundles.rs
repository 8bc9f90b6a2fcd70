//! Writes the 100k-item bundles of the load suite (loadtest/bench.sh): a student with the
//! architecture of a trained student bundle (read from its manifest) and an MLP teacher with the
//! `distill` job's default MLP-teacher shape, both with seeded random weights. Weights do not
//! change the cost of a forward pass, so these measure what a real model of that size would.
//! (The EASE teacher cannot be built at this size: its item-item matrix would hold 10^10 floats.)
//!
//! The student's item side is a clustered catalogue (`engine::synthetic::clustered_items`), not
//! uniform noise, so the ANN engine is measured on data shaped like trained embeddings. Besides
//! the format-1 `student<N>` (one ONNX graph scoring every item) it writes the same student as a
//! two-tower bundle `student<N>-tt` (user encoder + items.f32) for the scoring engines.
//!
//!     cargo run --release --example synth_bundles -- --out /tmp/synth --items 100000

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use distilrec::bundle::{Bundle, Role};
use distilrec::engine::synthetic::clustered_items;
use distilrec::onnx::{
    write_synthetic_bundle, write_synthetic_two_tower, write_synthetic_two_tower_as, Activation,
    MeanMlpWeights, ModelWeights, Precision,
};

#[derive(Parser)]
struct Args {
    /// Model repository to write `<prefix>student` / `<prefix>teacher` into (new versions).
    #[arg(long)]
    out: PathBuf,
    /// Catalogue size.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Trained student bundle whose architecture is copied.
    #[arg(long, default_value = "models/ml100k/1")]
    student_bundle: PathBuf,
    /// Shape of the MLP teacher (the `distill` defaults --teacher-dim / --teacher-hidden).
    #[arg(long, default_value_t = 256)]
    teacher_dim: usize,
    #[arg(long, value_delimiter = ',', default_value = "512,256")]
    teacher_hidden: Vec<usize>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Clusters of the synthetic item catalogue.
    #[arg(long, default_value_t = 256)]
    clusters: usize,
    /// Which bundles to write (comma-separated): student (format 1), student-tt (two-tower),
    /// student-tt-int8 (the same two-tower student exported int8: `items.i8` and an int8
    /// encoder), teacher (format 1, MLP teacher shape).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "student,student-tt,teacher"
    )]
    write: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let trained = Bundle::load(&args.student_bundle)
        .with_context(|| format!("loading {}", args.student_bundle.display()))?;
    let arch = &trained.manifest.architecture;
    if arch.kind != "mean_mlp" {
        bail!(
            "the student bundle has architecture `{}`, expected mean_mlp",
            arch.kind
        );
    }
    let dim = arch
        .embedding_dim
        .context("student manifest lacks embedding_dim")?;
    let n_rows = args.items + 1;
    let mut student = MeanMlpWeights::random(n_rows, dim, &arch.hidden, args.seed);
    if arch.activation.as_deref() == Some("tanh") {
        student.activation = Activation::Tanh;
    }
    let catalogue = clustered_items(n_rows, student.d_last(), args.clusters, args.seed + 2);
    student.set_item_matrix(&catalogue);
    drop(catalogue);
    let suffix = if args.items.is_multiple_of(1_000_000) {
        format!("{}m", args.items / 1_000_000)
    } else if args.items.is_multiple_of(1000) {
        format!("{}k", args.items / 1000)
    } else {
        args.items.to_string()
    };
    let wants = |what: &str| args.write.iter().any(|w| w == what);
    for w in &args.write {
        if !["student", "student-tt", "student-tt-int8", "teacher"].contains(&w.as_str()) {
            bail!("--write: unknown bundle `{w}` (student, student-tt, student-tt-int8, teacher)");
        }
    }
    let mut written = Vec::new();
    if wants("student-tt") {
        let name = format!("student{suffix}-tt");
        let dir = write_synthetic_two_tower(&args.out, &name, &student, Role::Student, None)?;
        let params = ModelWeights::MeanMlp(student.clone()).parameter_count();
        written.push((name, params, dir));
    }
    if wants("student-tt-int8") {
        let name = format!("student{suffix}-tt-int8");
        let dir = write_synthetic_two_tower_as(
            &args.out,
            &name,
            &student,
            Role::Student,
            None,
            Precision::Int8,
        )?;
        let params = ModelWeights::MeanMlp(student.clone()).parameter_count();
        written.push((name, params, dir));
    }
    if wants("student") {
        let name = format!("student{suffix}");
        let weights = ModelWeights::MeanMlp(student);
        let dir = write_synthetic_bundle(&args.out, &name, &weights, Role::Student)?;
        written.push((name, weights.parameter_count(), dir));
    }
    if wants("teacher") {
        let teacher = MeanMlpWeights::random(
            n_rows,
            args.teacher_dim,
            &args.teacher_hidden,
            args.seed + 1,
        );
        let name = format!("teacher{suffix}");
        let weights = ModelWeights::MeanMlp(teacher);
        let dir = write_synthetic_bundle(&args.out, &name, &weights, Role::Teacher)?;
        written.push((name, weights.parameter_count(), dir));
    }
    for (name, params, dir) in written {
        println!("{name}\t{params} parameters\t{}", dir.display());
    }
    Ok(())
}
