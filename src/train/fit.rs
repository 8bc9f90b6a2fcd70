//! The training loop shared by the MLP teacher, the plain student and the KD students:
//! Mult-DAE-style denoising (dropout on the input history), AdamW, early stopping on
//! validation NDCG@10 with the best weights kept.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::error::TrainError;
use super::kd::Objective;
use super::model::{multi_hot, MeanMlp};
use super::progress;
use crate::data::split::Split;
use crate::eval::{evaluate, Metrics, Stage};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainOpts {
    pub max_epochs: usize,
    pub patience: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub input_dropout: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FitResult {
    pub epochs: usize,
    pub best_epoch: usize,
    /// Validation NDCG@10 after each epoch.
    pub curve: Vec<f64>,
    pub seconds: f64,
}

/// Trains `model` in place; on return it holds the weights of the best validation epoch.
///
/// One function for the whole loop (epochs of shuffled mini-batches, validation, early
/// stopping with the best weights kept, progress): its state is shared by every step, and the
/// loop reads top to bottom as the training procedure the report describes.
pub fn fit(
    model: &MeanMlp,
    split: &Split,
    objective: &Objective,
    opts: &TrainOpts,
    seed: u64,
    label: &str,
) -> Result<FitResult, TrainError> {
    let start = Instant::now();
    let n_items = model.n_items;
    let mut vars = model.vars();
    if let Some(h) = &objective.hidden {
        vars.push(h.projection.clone());
    }
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x05ee_df17);
    // Users without training items carry no signal for any of the losses.
    let mut users: Vec<u32> = (0..split.n_users() as u32)
        .filter(|&u| !split.train[u as usize].is_empty())
        .collect();
    let keep = 1.0 - opts.input_dropout;

    let bar = progress::bar(opts.max_epochs as u64, label);
    let mut curve = Vec::new();
    let mut best = (f64::NEG_INFINITY, 0usize, model.snapshot()?);
    let (mut step_s, mut eval_s) = (0f64, 0f64);
    for epoch in 1..=opts.max_epochs {
        let t = Instant::now();
        users.shuffle(&mut rng);
        for batch in users.chunks(opts.batch_size) {
            let noisy: Vec<Vec<u32>> = batch
                .iter()
                .map(|&u| {
                    split.train[u as usize]
                        .iter()
                        .copied()
                        .filter(|_| rng.random::<f64>() < keep)
                        .collect()
                })
                .collect();
            let clean: Vec<Vec<u32>> = batch
                .iter()
                .map(|&u| split.train[u as usize].clone())
                .collect();
            let x = multi_hot(&noisy, n_items)?;
            let target = multi_hot(&clean, n_items)?;
            let ids = Tensor::new(batch, &Device::Cpu)?;
            let u = model.user_vectors(&x)?;
            let logits = model.logits(&u)?;
            let loss = objective.loss(&logits, &u, &target, &ids)?;
            opt.backward_step(&loss)?;
        }
        step_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let ndcg = validation_ndcg(model, split)?;
        eval_s += t.elapsed().as_secs_f64();
        tracing::debug!(label, epoch, ndcg, "epoch");
        curve.push(ndcg);
        if ndcg > best.0 {
            best = (ndcg, epoch, model.snapshot()?);
        }
        bar.set_message(format!(
            "valid NDCG@10 {ndcg:.4} (best {:.4} @ {})",
            best.0, best.1
        ));
        bar.inc(1);
        if epoch - best.1 >= opts.patience {
            break;
        }
    }
    bar.finish_and_clear();
    tracing::info!(
        label,
        epochs = curve.len(),
        best_epoch = best.1,
        best_valid_ndcg10 = format!("{:.4}", best.0),
        train_s = format!("{step_s:.1}"),
        eval_s = format!("{eval_s:.1}"),
        "trained"
    );
    model.restore(&best.2)?;
    Ok(FitResult {
        epochs: curve.len(),
        best_epoch: best.1,
        curve,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn validation_ndcg(model: &MeanMlp, split: &Split) -> Result<f64, TrainError> {
    let (scores, _) = model.score_histories(&split.train)?;
    Ok(evaluate(&scores, model.n_items, split, Stage::Valid).ndcg10())
}

/// Valid and test metrics of a score matrix computed from the training histories
/// (RecBole protocol: the model has only seen the training split, also when ranking test).
pub fn evaluate_both(scores: &[f32], n_items: usize, split: &Split) -> (Metrics, Metrics) {
    (
        evaluate(scores, n_items, split, Stage::Valid),
        evaluate(scores, n_items, split, Stage::Test),
    )
}

/// A fresh projection for hidden distillation, seeded like the models.
pub fn projection(rng: &mut StdRng, from: usize, to: usize) -> Result<Var, TrainError> {
    super::model::xavier(rng, from, to)
}
