//! Writes the 100k-item bundles of the load suite (loadtest/bench.sh): a student with the
//! architecture of a trained student bundle (read from its manifest) and an MLP teacher with the
//! `distill` job's default MLP-teacher shape, both with seeded random weights. Weights do not
//! change the cost of a forward pass, so these measure what a real model of that size would.
//! (The EASE teacher cannot be built at this size: its item-item matrix would hold 10^10 floats.)
//!
//!     cargo run --release --example synth_bundles -- --out /tmp/synth --items 100000

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use distilrec::bundle::{Bundle, Role};
use distilrec::onnx::{write_synthetic_bundle, Activation, MeanMlpWeights, ModelWeights};

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
    let teacher = MeanMlpWeights::random(
        n_rows,
        args.teacher_dim,
        &args.teacher_hidden,
        args.seed + 1,
    );
    let suffix = if args.items % 1000 == 0 {
        format!("{}k", args.items / 1000)
    } else {
        args.items.to_string()
    };
    for (name, weights, role) in [
        (format!("student{suffix}"), student, Role::Student),
        (format!("teacher{suffix}"), teacher, Role::Teacher),
    ] {
        let weights = ModelWeights::MeanMlp(weights);
        let dir = write_synthetic_bundle(&args.out, &name, &weights, role)?;
        println!(
            "{}\t{} parameters\t{}",
            name,
            weights.parameter_count(),
            dir.display()
        );
    }
    Ok(())
}
