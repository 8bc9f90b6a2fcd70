//! Writes a synthetic interaction log with planted structure, for `distill` at any scale
//! (scripts/bench-distill.sh):
//! - items belong to latent clusters; popularity is Zipf over the whole catalogue, so every
//!   cluster has a head and a long tail;
//! - each user has a main cluster and one or two secondary ones (a taste mixture), plus a
//!   share of globally popular picks;
//! - a user's interactions come in sessions in time: a session sticks to one cluster of the
//!   user's mixture, sessions are hours to days apart, and the mixture drifts slowly.
//!
//! A model that learns the clusters beats popularity clearly; one that only learns popularity
//! does not. Output: CSV `user_id,item_id,rating,timestamp` (ids are strings `u…`, `i…`), no
//! repeated (user, item) pair.
//!
//!     cargo run --release --example synth_log -- --users 50000 --items 20000 \
//!         --interactions 2000000 --out /tmp/log-20k.csv

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    users: usize,
    #[arg(long)]
    items: usize,
    /// Total interactions (approximately; every user gets at least `--min-per-user`).
    #[arg(long)]
    interactions: usize,
    /// Latent clusters (default: about √items).
    #[arg(long)]
    clusters: Option<usize>,
    /// Zipf exponent of item popularity.
    #[arg(long, default_value_t = 0.9)]
    zipf: f64,
    /// Share of picks from global popularity instead of the user's clusters.
    #[arg(long, default_value_t = 0.15)]
    popular_share: f64,
    #[arg(long, default_value_t = 5)]
    min_per_user: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

/// Sampling by cumulative weights.
struct Table {
    items: Vec<u32>,
    cdf: Vec<f64>,
}

impl Table {
    fn new(items: Vec<u32>, weight: impl Fn(u32) -> f64) -> Self {
        let mut acc = 0.0;
        let cdf: Vec<f64> = items
            .iter()
            .map(|&i| {
                acc += weight(i);
                acc
            })
            .collect();
        Table { items, cdf }
    }

    fn draw(&self, rng: &mut StdRng) -> u32 {
        let x = rng.random::<f64>() * self.cdf.last().copied().unwrap_or(0.0);
        let i = self
            .cdf
            .partition_point(|&c| c < x)
            .min(self.items.len() - 1);
        self.items[i]
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.users > 0 && a.items > 1 && a.interactions > 0,
        "sizes must be positive"
    );
    let n_clusters = a
        .clusters
        .unwrap_or(((a.items as f64).sqrt() as usize).clamp(2, 512));
    let mut rng = StdRng::seed_from_u64(a.seed);
    // Popularity rank = item index order shuffled, so ids carry no signal.
    let mut rank: Vec<u32> = (0..a.items as u32).collect();
    for i in (1..rank.len()).rev() {
        rank.swap(i, rng.random_range(0..=i));
    }
    let weight = |i: u32| 1.0 / ((rank[i as usize] + 1) as f64).powf(a.zipf);
    let cluster: Vec<usize> = (0..a.items)
        .map(|_| rng.random_range(0..n_clusters))
        .collect();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_clusters];
    for (i, &c) in cluster.iter().enumerate() {
        members[c].push(i as u32);
    }
    let tables: Vec<Table> = members
        .into_iter()
        .map(|m| {
            if m.is_empty() {
                Table::new(vec![0], |_| 1.0)
            } else {
                Table::new(m, weight)
            }
        })
        .collect();
    let global = Table::new((0..a.items as u32).collect(), weight);

    // Interactions per user: log-normal activity scaled to the requested total.
    let activity: Vec<f64> = (0..a.users)
        .map(|_| {
            let g: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
            (1.2 * g).exp()
        })
        .collect();
    let total: f64 = activity.iter().sum();
    let spare = a.interactions.saturating_sub(a.min_per_user * a.users) as f64;

    let file = std::fs::File::create(&a.out).with_context(|| a.out.display().to_string())?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(w, "user_id,item_id,rating,timestamp")?;
    let mut written = 0usize;
    let mut seen = std::collections::HashSet::new();
    for (u, act) in activity.iter().enumerate() {
        let n = (a.min_per_user + (spare * act / total).round() as usize).min(a.items / 2);
        let main = rng.random_range(0..n_clusters);
        let mut taste = vec![main, rng.random_range(0..n_clusters)];
        if rng.random::<f64>() < 0.5 {
            taste.push(rng.random_range(0..n_clusters));
        }
        let mut t: i64 = 1_500_000_000 + rng.random_range(0..50_000_000);
        seen.clear();
        let mut made = 0;
        let mut tries = 0;
        while made < n && tries < n * 20 {
            // A session: one cluster of the taste (the main one half of the time).
            let c = if rng.random::<f64>() < 0.5 {
                taste[0]
            } else {
                taste[rng.random_range(0..taste.len())]
            };
            let len = rng.random_range(3..15);
            for _ in 0..len {
                tries += 1;
                let item = if rng.random::<f64>() < a.popular_share {
                    global.draw(&mut rng)
                } else {
                    tables[c].draw(&mut rng)
                };
                if !seen.insert(item) {
                    continue;
                }
                t += rng.random_range(30..1_800);
                let rating = rng.random_range(1..=5);
                writeln!(w, "u{u},i{item},{rating},{t}")?;
                made += 1;
                written += 1;
                if made == n {
                    break;
                }
            }
            t += rng.random_range(3_600..400_000);
            // Slow drift: now and then a secondary taste is replaced.
            if taste.len() > 1 && rng.random::<f64>() < 0.05 {
                let k = rng.random_range(1..taste.len());
                taste[k] = rng.random_range(0..n_clusters);
            }
        }
    }
    w.flush()?;
    eprintln!(
        "{}: {} users, {} items, {} clusters, {written} interactions",
        a.out.display(),
        a.users,
        a.items,
        n_clusters
    );
    Ok(())
}
