//! The sampled trainer's loop: epochs of shuffled user batches (denoised inputs, sampled
//! targets, shared sampled negatives, and for a KD student the teacher's signals), early
//! stopping on full-ranking validation NDCG@10 over a fixed sample of users, best weights kept.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::rank;
use super::sampler::Sampler;
use super::tower::{Example, KdWeight, Tower, Trainer};
use crate::data::split::Split;
use crate::train::progress;

/// Fewest optimiser steps in one epoch (small logs repeat their users within an epoch).
const MIN_STEPS: usize = 32;

/// Epochs before early stopping may stop a training from scratch: validation often dips while
/// a model moves from popularity to personal rankings. A warm-started training (a KD student
/// starting from its no-KD twin) starts from personal rankings and is judged from its start.
const MIN_EPOCHS: usize = 10;

/// Settings of one training.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FitOpts {
    pub max_epochs: usize,
    pub patience: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub input_dropout: f64,
    /// True items per user and step (sampled from the training history).
    pub targets_per_user: usize,
    /// Users in the early-stopping validation sample.
    pub eval_users: usize,
    /// Threads of the validation ranking.
    pub threads: usize,
    pub seed: u64,
    /// The tower is already trained (a KD student starting from its no-KD twin): it is
    /// evaluated before the first epoch, that score is the one to beat (best epoch 0: no epoch
    /// improved on it), and early stopping may stop it from the first epoch on.
    pub warm_start: bool,
}

/// What a KD student learns from besides the true items.
pub struct Teacher<'a> {
    pub tower: &'a Tower,
    /// Teacher user vectors `[n_users, last_dim]` from the training histories.
    pub users: &'a [f32],
    /// The teacher's top-K unseen items per user, best first.
    pub top: &'a [Vec<u32>],
    pub kd: KdWeight,
    /// Ranking KD: the first `rank_k` of `top` as weighted positives, weights ∝ exp(−r/decay)
    /// summing to `lambda_rank`.
    pub rank_k: usize,
    pub rank_decay: f64,
    pub lambda_rank: f64,
    /// Uniform random items added to each user's logit-KD set.
    pub random_items: usize,
    /// The student's own current top items added to each user's logit-KD set (refreshed every
    /// `refresh_epochs`), so the set holds what the student ranks high as well.
    pub student_top: usize,
    pub refresh_epochs: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FitResult {
    pub epochs: usize,
    pub best_epoch: usize,
    /// Validation NDCG@10 (sample of users) after each epoch.
    pub curve: Vec<f64>,
    /// Validation NDCG@10 before the first epoch (warm-started trainings only).
    pub start_ndcg: Option<f64>,
    /// Mean loss terms of the last epoch.
    pub last_ce: f64,
    pub last_kd: f64,
    /// A non-finite loss stopped the training.
    pub diverged: bool,
    pub seconds: f64,
}

/// The users early stopping is measured on: up to `n` users with validation items, fixed by
/// the seed, as a split of their own.
fn validation_sample(split: &Split, n: usize, seed: u64) -> Split {
    let mut users: Vec<usize> = (0..split.n_users())
        .filter(|&u| !split.valid[u].is_empty() && !split.train[u].is_empty())
        .collect();
    if users.len() > n {
        users.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5a3e));
        users.truncate(n);
        users.sort_unstable();
    }
    let pick = |part: &[Vec<u32>]| users.iter().map(|&u| part[u].clone()).collect();
    Split {
        seed: split.seed,
        ratios: split.ratios,
        train: pick(&split.train),
        valid: pick(&split.valid),
        test: users.iter().map(|_| Vec::new()).collect(),
    }
}

/// Trains `tower`; returns the weights of the best validation epoch and the curve.
pub fn fit(
    tower: Tower,
    split: &Split,
    sampler: &Sampler,
    opts: &FitOpts,
    teacher: Option<&Teacher<'_>>,
    label: &str,
) -> (Tower, FitResult) {
    let start = Instant::now();
    let n_items = tower.n_items;
    let sample = validation_sample(split, opts.eval_users, opts.seed);
    let mut trainer = Trainer::new(tower, opts.lr, opts.weight_decay);
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5a4d_f17e);
    let mut users: Vec<u32> = (0..split.n_users() as u32)
        .filter(|&u| !split.train[u as usize].is_empty())
        .collect();
    let keep = 1.0 - opts.input_dropout;
    let rank_weights: Vec<f32> = teacher.map_or_else(Vec::new, |t| {
        let w: Vec<f64> = (0..t.rank_k)
            .map(|r| (-(r as f64) / t.rank_decay).exp())
            .collect();
        let total: f64 = w.iter().sum();
        w.iter()
            .map(|x| (t.lambda_rank * x / total) as f32)
            .collect()
    });
    let mut student_top: Vec<Vec<u32>> = Vec::new();

    let bar = progress::bar(opts.max_epochs as u64, label);
    let mut curve = Vec::new();
    let validate = |tower: &Tower| {
        // Without validation users (every history too short to hold one out) nothing can be
        // chosen on validation: the last epoch is kept and the training runs to its cap.
        (sample.n_users() > 0).then(|| {
            rank::evaluate(tower, &sample, 0, opts.threads, None)
                .0
                .ndcg10()
        })
    };
    let start_ndcg = if opts.warm_start {
        validate(&trainer.tower)
    } else {
        None
    };
    let mut best = (
        start_ndcg.unwrap_or(f64::NEG_INFINITY),
        0usize,
        trainer.tower.clone(),
    );
    let min_epochs = if opts.warm_start { 1 } else { MIN_EPOCHS };
    let (mut last_ce, mut last_kd, mut diverged) = (0.0, 0.0, false);
    for epoch in 1..=opts.max_epochs {
        if let Some(t) = teacher {
            if t.student_top > 0 && (epoch - 1) % t.refresh_epochs.max(1) == 0 {
                student_top = rank::top_items(
                    &trainer.tower,
                    &split.train,
                    &users,
                    &|_| t.student_top,
                    &|u| split.train[u as usize].clone(),
                    opts.threads,
                    None,
                );
                // `users` order → per user index.
                let mut by_user = vec![Vec::new(); split.n_users()];
                for (&u, l) in users.iter().zip(student_top.drain(..)) {
                    by_user[u as usize] = l;
                }
                student_top = by_user;
            }
        }
        // An epoch is at least MIN_STEPS steps: with few users (a few hundred), one pass is a
        // handful of steps and early stopping would judge a model that has barely moved.
        let passes = MIN_STEPS.div_ceil(users.len().div_ceil(opts.batch_size).max(1));
        let mut order = Vec::with_capacity(users.len() * passes);
        for _ in 0..passes {
            users.shuffle(&mut rng);
            order.extend_from_slice(&users);
        }
        let (mut ce, mut kd, mut steps) = (0.0, 0.0, 0usize);
        for chunk in order.chunks(opts.batch_size) {
            let batch: Vec<Example> = chunk
                .iter()
                .map(|&u| {
                    example(
                        u,
                        split,
                        keep,
                        opts.targets_per_user,
                        teacher.map(|t| (t, &rank_weights[..], &student_top[..])),
                        n_items,
                        &mut rng,
                    )
                })
                .collect();
            let negs = sampler.draw(&mut rng);
            let kd_weight = teacher.map_or(KdWeight::NONE, |t| t.kd);
            let loss = trainer.step(&batch, &negs, &|i| sampler.log_q(i), kd_weight);
            ce += loss.ce;
            kd += loss.kd;
            steps += 1;
        }
        (last_ce, last_kd) = (ce / steps.max(1) as f64, kd / steps.max(1) as f64);
        if !(last_ce + last_kd).is_finite() || !trainer.tower.is_finite() {
            diverged = true;
            tracing::warn!(
                label,
                epoch,
                "the loss or the weights are not finite: training stopped"
            );
            break;
        }
        let ndcg = validate(&trainer.tower).unwrap_or(epoch as f64);
        curve.push(ndcg);
        if ndcg > best.0 {
            best.0 = ndcg;
            best.1 = epoch;
            // Reuses the kept copy's buffers: no third copy of the tables.
            best.2.clone_from(&trainer.tower);
        }
        tracing::debug!(label, epoch, ndcg, ce = last_ce, kd = last_kd, "epoch");
        bar.set_message(format!(
            "loss {:.3} valid NDCG@10 {ndcg:.4} (best {:.4} @ {})",
            last_ce + last_kd,
            best.0,
            best.1
        ));
        bar.inc(1);
        if epoch >= min_epochs && epoch - best.1 >= opts.patience {
            break;
        }
    }
    bar.finish_and_clear();
    tracing::info!(
        label,
        epochs = curve.len(),
        best_epoch = best.1,
        best_valid_ndcg10 = format!("{:.4}", best.0),
        seconds = format!("{:.1}", start.elapsed().as_secs_f64()),
        "trained (sampled softmax)"
    );
    (
        best.2,
        FitResult {
            epochs: curve.len(),
            best_epoch: best.1,
            curve,
            start_ndcg,
            last_ce,
            last_kd,
            diverged,
            seconds: start.elapsed().as_secs_f64(),
        },
    )
}

/// What a KD student's examples draw on: the teacher, ranking-KD weights by rank, and the
/// student's current top items per user.
type KdInputs<'a, 'b> = (&'a Teacher<'b>, &'a [f32], &'a [Vec<u32>]);

/// One user's example: the history with input dropout (at least one item kept) as input, up
/// to `n_targets` of the dropped items as targets (the whole history when none was dropped),
/// and the teacher's signals.
fn example(
    u: u32,
    split: &Split,
    keep: f64,
    n_targets: usize,
    teacher: Option<KdInputs<'_, '_>>,
    n_items: usize,
    rng: &mut StdRng,
) -> Example {
    let history = &split.train[u as usize];
    // Input dropout splits the history: kept items are the input, dropped ones the targets —
    // the model learns to predict items it was not shown, as it must at serving time, instead
    // of echoing its input.
    let mut input = Vec::with_capacity(history.len());
    let mut held_out = Vec::with_capacity(history.len());
    for &i in history {
        if rng.random::<f64>() < keep {
            input.push(i);
        } else {
            held_out.push(i);
        }
    }
    if input.is_empty() {
        let k = rng.random_range(0..held_out.len());
        input.push(held_out.swap_remove(k));
    }
    let pool = if held_out.is_empty() {
        history
    } else {
        &held_out
    };
    let m = n_targets.min(pool.len());
    let w = 1.0 / m as f32;
    let mut targets: Vec<(u32, f32)> = pool.choose_multiple(rng, m).map(|&i| (i, w)).collect();
    let mut kd = Vec::new();
    if let Some((t, rank_weights, student_top)) = teacher {
        let top = &t.top[u as usize];
        // A list shorter than rank_k (a small catalogue, a heavy user) still carries the whole
        // ranking-KD weight.
        let used: f32 = rank_weights.iter().take(top.len()).sum();
        let full: f32 = rank_weights.iter().sum();
        let scale = if used > 0.0 { full / used } else { 0.0 };
        targets.extend(top.iter().zip(rank_weights).map(|(&i, &w)| (i, w * scale)));
        let mut set: Vec<u32> = top.clone();
        if let Some(s) = student_top.get(u as usize) {
            set.extend_from_slice(s);
        }
        set.extend((0..t.random_items).map(|_| rng.random_range(0..n_items as u32)));
        set.sort_unstable();
        set.dedup();
        if t.kd.lambda > 0.0 && !set.is_empty() {
            let dl = t.tower.last_dim();
            let zu = &t.users[u as usize * dl..(u as usize + 1) * dl];
            let logits: Vec<f32> = set
                .iter()
                .map(|&i| t.tower.score(zu, i) / t.kd.temperature)
                .collect();
            let max = logits.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
            let e: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            kd = set.into_iter().zip(e).map(|(i, e)| (i, e / sum)).collect();
        }
    }
    Example { input, targets, kd }
}

/// Measured seconds of one training step of a `spec` tower at this batch shape (the planner's
/// time estimate): a probe catalogue of at most 16k items (a step's cost does not grow with the
/// catalogue, only with batch, history, targets, negatives and width), one warm-up step, then
/// the mean of three.
pub fn probe_step_seconds(
    spec: &crate::train::model::MlpSpec,
    n_items: usize,
    shape: (usize, usize, usize, usize),
    kd_items: usize,
) -> f64 {
    let (batch, history, targets, negatives) = shape;
    let n = n_items.clamp(2, 16_384);
    let mut rng = StdRng::seed_from_u64(1);
    let tower = Tower::new(n, spec.clone(), &mut rng);
    let mut trainer = Trainer::new(tower, 1e-3, 0.0);
    let sampler = Sampler::new(&vec![1; n], negatives.min(n), 0.75);
    let mut pick =
        |k: usize| -> Vec<u32> { (0..k).map(|_| rng.random_range(0..n as u32)).collect() };
    let batch: Vec<Example> = (0..batch.max(1))
        .map(|_| Example {
            input: pick(history.max(1)),
            targets: pick(targets.max(1)).into_iter().map(|i| (i, 1.0)).collect(),
            kd: pick(kd_items)
                .into_iter()
                .map(|i| (i, 1.0 / kd_items.max(1) as f32))
                .collect(),
        })
        .collect();
    let kd = KdWeight {
        temperature: 1.0,
        lambda: if kd_items > 0 { 1.0 } else { 0.0 },
    };
    let mut draw = StdRng::seed_from_u64(2);
    let negs = sampler.draw(&mut draw);
    trainer.step(&batch, &negs, &|i| sampler.log_q(i), kd);
    let t = Instant::now();
    for _ in 0..3 {
        let negs = sampler.draw(&mut draw);
        trainer.step(&batch, &negs, &|i| sampler.log_q(i), kd);
    }
    t.elapsed().as_secs_f64() / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::Activation;
    use crate::train::model::MlpSpec;

    /// 300 users, 200 items in 4 clusters of 50: each user has 12 items of one cluster, 10 in
    /// train and one each in valid and test — learnable in a few epochs.
    fn clustered_split() -> Split {
        let mut rng = StdRng::seed_from_u64(9);
        let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for u in 0..300u32 {
            let base = (u % 4) * 50;
            let mut items: Vec<u32> = (base..base + 50).collect();
            items.shuffle(&mut rng);
            train.push(items[..10].to_vec());
            valid.push(vec![items[10]]);
            test.push(vec![items[11]]);
        }
        Split {
            seed: 0,
            ratios: [0.8, 0.1, 0.1],
            train,
            valid,
            test,
        }
    }

    fn opts(lr: f64, max_epochs: usize, warm_start: bool) -> FitOpts {
        FitOpts {
            max_epochs,
            patience: 2,
            batch_size: 32,
            lr,
            weight_decay: 0.0,
            input_dropout: 0.3,
            targets_per_user: 4,
            eval_users: 300,
            threads: 1,
            seed: 5,
            warm_start,
        }
    }

    fn tower() -> Tower {
        let spec = MlpSpec {
            dim: 8,
            hidden: vec![8],
            activation: Activation::Tanh,
        };
        Tower::new(200, spec, &mut StdRng::seed_from_u64(3))
    }

    fn same_weights(a: &Tower, b: &Tower, split: &Split) -> bool {
        let (ua, ub) = (a.user_vectors(&split.train), b.user_vectors(&split.train));
        ua.iter().zip(&ub).all(|(x, y)| x.to_bits() == y.to_bits())
            && (0..200u32).all(|i| a.score(&ua[..8], i).to_bits() == b.score(&ua[..8], i).to_bits())
    }

    /// A warm-started training is judged against its starting point: when no epoch beats it,
    /// the starting weights come back unchanged and the best epoch is 0.
    #[test]
    fn a_warm_start_no_epoch_improves_returns_its_starting_weights() {
        let split = clustered_split();
        let sampler = Sampler::new(&[1; 200], 64, 0.75);
        let start = tower();
        // lr 0: no step changes anything, so no epoch can score higher than the start.
        let (out, fit) = fit(
            start.clone(),
            &split,
            &sampler,
            &opts(0.0, 5, true),
            None,
            "t",
        );
        assert_eq!(fit.best_epoch, 0);
        let s = fit
            .start_ndcg
            .expect("a warm start is evaluated before training");
        assert!(fit.curve.iter().all(|&n| n == s), "{:?} vs {s}", fit.curve);
        // Early stopping may stop from the first epoch on (patience 2 → 2 epochs, not 10).
        assert_eq!(fit.epochs, 2);
        assert!(same_weights(&out, &start, &split));
    }

    /// The score a warm start begins with is the one its source was selected with (same
    /// validation sample), and training on from it keeps the best of start and epochs.
    #[test]
    fn a_warm_start_begins_at_its_source_score_and_never_returns_worse() {
        let split = clustered_split();
        let sampler = Sampler::new(&[1; 200], 64, 0.75);
        let (twin, twin_fit) = fit(tower(), &split, &sampler, &opts(5e-3, 12, false), None, "t");
        let best = twin_fit.curve[twin_fit.best_epoch - 1];
        // A model that knows each user's cluster ranks the held-out item among the cluster's
        // 40 unseen items (NDCG@10 ≈ 0.12); one that does not, among 190 (≈ 0.02).
        assert!(best > 0.08, "the clustered log is learnable: {best}");
        assert!(twin_fit.start_ndcg.is_none());
        let (_, warm) = fit(twin, &split, &sampler, &opts(5e-3, 6, true), None, "t");
        assert_eq!(warm.start_ndcg, Some(best));
        let end_best = if warm.best_epoch == 0 {
            best
        } else {
            warm.curve[warm.best_epoch - 1]
        };
        assert!(end_best >= best);
        assert!(warm.curve.iter().all(|&n| n <= end_best));
    }
}
