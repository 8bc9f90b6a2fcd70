//! Distillation objectives. The teacher is fixed, so everything it contributes (softened
//! distributions, top-K lists, hidden user vectors) is precomputed once per run for all users
//! and gathered by user id per batch.

use candle_core::{Device, Tensor, Var, D};

use super::error::TrainError;
use crate::topk::top_indices;

/// Which distillation signal(s) a student is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KdVariant {
    /// Hinton: T²·KL(softmax(teacher/T) ‖ softmax(student/T)).
    Logit,
    /// Tang & Wang 2018: the teacher's top-K unseen items as rank-weighted extra positives.
    Rank,
    /// FitNets / DE: a learned projection of the student's user vector regresses the MLP
    /// teacher's hidden user vector.
    Hidden,
    /// All three together.
    Combined,
}

impl KdVariant {
    pub fn name(self) -> &'static str {
        match self {
            KdVariant::Logit => "logit",
            KdVariant::Rank => "rank",
            KdVariant::Hidden => "hidden",
            KdVariant::Combined => "combined",
        }
    }
    pub fn uses_logit(self) -> bool {
        matches!(self, KdVariant::Logit | KdVariant::Combined)
    }
    pub fn uses_rank(self) -> bool {
        matches!(self, KdVariant::Rank | KdVariant::Combined)
    }
    pub fn uses_hidden(self) -> bool {
        matches!(self, KdVariant::Hidden | KdVariant::Combined)
    }
}

pub struct LogitKd {
    /// softmax(teacher / T) per user, `[n_users, n_items]`.
    pub teacher_probs: Tensor,
    /// Σ p log p per user (`[n_users]`), so the loss is a true KL (≥ 0) and readable.
    pub neg_entropy: Tensor,
    pub temperature: f64,
    pub lambda: f64,
}

pub struct RankKd {
    /// Rank-weighted teacher top-K per user, rows sum to 1, `[n_users, n_items]`.
    pub targets: Tensor,
    pub lambda: f64,
}

pub struct HiddenKd {
    /// The MLP teacher's final hidden user vector per user, `[n_users, d_teacher]`.
    pub targets: Tensor,
    /// `[d_student, d_teacher]`, trained with the student, not exported.
    pub projection: Var,
    pub lambda: f64,
}

/// λ_ce·CE(true) + the enabled distillation terms.
pub struct Objective {
    pub lambda_ce: f64,
    pub logit: Option<LogitKd>,
    pub rank: Option<RankKd>,
    pub hidden: Option<HiddenKd>,
}

impl Objective {
    pub fn plain() -> Self {
        Objective {
            lambda_ce: 1.0,
            logit: None,
            rank: None,
            hidden: None,
        }
    }

    /// `ids`: u32 user ids of the batch rows; `target`: row-normalised true train items.
    pub fn loss(
        &self,
        logits: &Tensor,
        user_vec: &Tensor,
        target: &Tensor,
        ids: &Tensor,
    ) -> Result<Tensor, TrainError> {
        let mut loss = (soft_ce(logits, target)? * self.lambda_ce)?;
        if let Some(k) = &self.logit {
            let p = k.teacher_probs.index_select(ids, 0)?;
            let h = k.neg_entropy.index_select(ids, 0)?;
            let logq = candle_nn::ops::log_softmax(&(logits / k.temperature)?, D::Minus1)?;
            let kl = (h - (p * logq)?.sum(D::Minus1)?)?.mean_all()?;
            loss = (loss + (kl * (k.lambda * k.temperature * k.temperature))?)?;
        }
        if let Some(r) = &self.rank {
            let t = r.targets.index_select(ids, 0)?;
            loss = (loss + (soft_ce(logits, &t)? * r.lambda)?)?;
        }
        if let Some(h) = &self.hidden {
            let t = h.targets.index_select(ids, 0)?;
            let mse = user_vec
                .matmul(h.projection.as_tensor())?
                .sub(&t)?
                .sqr()?
                .mean_all()?;
            loss = (loss + (mse * h.lambda)?)?;
        }
        Ok(loss)
    }
}

/// Teacher scores turned into softened distributions. Scores are standardised per user first:
/// EASE scores and MLP logits live on very different scales, and without this one temperature
/// could not suit both teachers.
pub fn logit_targets(
    teacher_scores: &[f32],
    n_items: usize,
    temperature: f64,
    lambda: f64,
) -> Result<LogitKd, TrainError> {
    let n_users = teacher_scores.len() / n_items;
    let mut probs = Vec::with_capacity(teacher_scores.len());
    let mut neg_entropy = Vec::with_capacity(n_users);
    for row in teacher_scores.chunks(n_items) {
        let z = standardise(row);
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| ((v - max) / temperature).exp()).collect();
        let sum: f64 = e.iter().sum();
        let mut h = 0.0;
        for v in e {
            let p = v / sum;
            if p > 0.0 {
                h += p * p.ln();
            }
            probs.push(p as f32);
        }
        neg_entropy.push(h as f32);
    }
    Ok(LogitKd {
        teacher_probs: Tensor::from_vec(probs, (n_users, n_items), &Device::Cpu)?,
        neg_entropy: Tensor::from_vec(neg_entropy, n_users, &Device::Cpu)?,
        temperature,
        lambda,
    })
}

pub fn standardise(row: &[f32]) -> Vec<f64> {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt().max(1e-12);
    row.iter().map(|&v| (v as f64 - mean) / sd).collect()
}

/// Ranking-distillation targets: the teacher's top `k` items the user has not interacted with
/// in training, weighted ∝ exp(−rank / decay) (Tang & Wang's rank-discounted weights), rows
/// normalised to 1.
pub fn rank_targets(
    teacher_scores: &[f32],
    n_items: usize,
    train: &[Vec<u32>],
    k: usize,
    decay: f64,
    lambda: f64,
) -> Result<RankKd, TrainError> {
    let n_users = train.len();
    let mut t = vec![0f32; n_users * n_items];
    let weights: Vec<f64> = (0..k).map(|r| (-(r as f64) / decay).exp()).collect();
    let total: f64 = weights.iter().sum();
    for (u, seen) in train.iter().enumerate() {
        let row = &teacher_scores[u * n_items..(u + 1) * n_items];
        let mut candidates: Vec<u32> = (0..n_items as u32).collect();
        let mut is_seen = vec![false; n_items];
        for &i in seen {
            is_seen[i as usize] = true;
        }
        candidates.retain(|&i| !is_seen[i as usize]);
        for (r, &i) in top_indices(row, &mut candidates, k).iter().enumerate() {
            t[u * n_items + i as usize] = (weights[r] / total) as f32;
        }
    }
    Ok(RankKd {
        targets: Tensor::from_vec(t, (n_users, n_items), &Device::Cpu)?,
        lambda,
    })
}

/// Softmax cross-entropy of `logits` against a row-stochastic target, averaged over rows.
pub fn soft_ce(logits: &Tensor, target: &Tensor) -> Result<Tensor, TrainError> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    Ok((target * logp)?.sum(D::Minus1)?.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_when_student_equals_teacher() {
        let scores = vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
        let kd = logit_targets(&scores, 3, 2.0, 1.0).unwrap();
        let obj = Objective {
            lambda_ce: 0.0,
            logit: Some(kd),
            rank: None,
            hidden: None,
        };
        // Student logits = standardised teacher scores give the same softened distribution.
        let z: Vec<f32> = scores
            .chunks(3)
            .flat_map(standardise)
            .map(|v| v as f32)
            .collect();
        let logits = Tensor::from_vec(z, (2, 3), &Device::Cpu).unwrap();
        let ids = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let dummy = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let l = obj
            .loss(&logits, &dummy, &dummy, &ids)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l.abs() < 1e-5, "{l}");
        let shifted = (logits * -1.0).unwrap();
        let l2 = obj
            .loss(&shifted, &dummy, &dummy, &ids)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l2 > 0.1, "{l2}");
    }

    #[test]
    fn rank_targets_skip_seen_items_and_decrease() {
        let scores = vec![5.0f32, 4.0, 3.0, 2.0, 1.0];
        let r = rank_targets(&scores, 5, &[vec![0]], 3, 1.0, 1.0).unwrap();
        let t = r.targets.to_vec2::<f32>().unwrap();
        assert_eq!(t[0][0], 0.0);
        assert!(t[0][1] > t[0][2] && t[0][2] > t[0][3] && t[0][3] > 0.0);
        assert_eq!(t[0][4], 0.0);
        assert!((t[0].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
