//! Negative items for the sampled softmax: drawn with replacement from a smoothed popularity
//! distribution (count^α, word2vec's unigram smoothing), with each item's log expected count so
//! the loss can apply the logQ correction (Bengio & Senécal; Yi et al., RecSys'19) that makes
//! the sampled softmax an unbiased stand-in for the full one.
//!
//! When the catalogue is no larger than the sample size, every item is taken exactly once with
//! a correction of zero: the loss *is* the full softmax (tested in `tower.rs`).

use rand::Rng;

pub struct Sampler {
    /// Cumulative distribution over items (last value 1).
    cdf: Vec<f64>,
    /// ln(expected count of item i in one draw of `n` samples) = ln(n · q_i).
    log_expected: Vec<f32>,
    n: usize,
    full: bool,
}

/// One step's shared negatives.
pub struct Negatives {
    pub items: Vec<u32>,
    /// The logQ correction of each entry of `items`.
    pub log_q: Vec<f32>,
}

impl Sampler {
    /// `counts`: training interactions per item; `n`: samples per step; `alpha`: smoothing
    /// exponent (0 = uniform, 1 = popularity).
    pub fn new(counts: &[u32], n: usize, alpha: f64) -> Self {
        let n_items = counts.len();
        if n >= n_items {
            return Sampler {
                cdf: Vec::new(),
                log_expected: vec![0.0; n_items],
                n: n_items,
                full: true,
            };
        }
        let w: Vec<f64> = counts
            .iter()
            .map(|&c| (c as f64 + 1.0).powf(alpha))
            .collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cdf = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        let log_expected = w
            .iter()
            .map(|x| (n as f64 * x / total).ln() as f32)
            .collect();
        Sampler {
            cdf,
            log_expected,
            n,
            full: false,
        }
    }

    /// Whether every item is a negative of every step (the exact full softmax).
    pub fn is_full(&self) -> bool {
        self.full
    }

    pub fn samples_per_step(&self) -> usize {
        self.n
    }

    /// The logQ correction of item `i` (also applied to a positive's logit).
    pub fn log_q(&self, i: u32) -> f32 {
        self.log_expected[i as usize]
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Negatives {
        let items: Vec<u32> = if self.full {
            (0..self.n as u32).collect()
        } else {
            (0..self.n)
                .map(|_| {
                    let x: f64 = rng.random();
                    self.cdf.partition_point(|&c| c < x).min(self.cdf.len() - 1) as u32
                })
                .collect()
        };
        let log_q = items.iter().map(|&i| self.log_q(i)).collect();
        Negatives { items, log_q }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn draws_follow_the_smoothed_popularity() {
        let counts = [0u32, 9, 99, 999];
        let s = Sampler::new(&counts, 2, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut seen = [0usize; 4];
        for _ in 0..20_000 {
            for i in s.draw(&mut rng).items {
                seen[i as usize] += 1;
            }
        }
        // q ∝ count + 1: 1, 10, 100, 1000 of 1111; 40,000 draws.
        for (i, w) in [1.0, 10.0, 100.0, 1000.0].iter().enumerate() {
            let want = 40_000.0 * w / 1111.0;
            let got = seen[i] as f64;
            assert!(
                (got - want).abs() < 5.0 * want.sqrt() + 5.0,
                "item {i}: {got} vs {want}"
            );
            let lq = (2.0 * w / 1111.0f64).ln() as f32;
            assert!((s.log_q(i as u32) - lq).abs() < 1e-5);
        }
    }

    #[test]
    fn a_sample_as_large_as_the_catalogue_is_every_item_once() {
        let s = Sampler::new(&[5, 0, 2], 8, 0.75);
        assert!(s.is_full());
        let d = s.draw(&mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(d.items, vec![0, 1, 2]);
        assert_eq!(d.log_q, vec![0.0; 3]);
    }
}
