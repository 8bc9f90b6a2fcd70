//! RecBole's default split: per user, a random 8:1:1 split of that user's interactions.

use std::io::Write;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::records::Interactions;

#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub seed: u64,
    pub ratios: [f64; 3],
    /// Per user, item indices; train is in timestamp order (oldest first).
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<Vec<u32>>,
    pub test: Vec<Vec<u32>>,
}

/// Split sizes for one user with `total` interactions, exactly as RecBole's `_calcu_split_ids`:
/// valid/test get ⌊ratio·total⌋, a user too small for that still gets one each while train
/// keeps more than one, and train takes the rest.
pub fn split_sizes(total: usize, ratios: [f64; 3]) -> [usize; 3] {
    let sum: f64 = ratios.iter().sum();
    let r = ratios.map(|x| x / sum);
    let mut cnt = r.map(|x| (x * total as f64) as usize);
    cnt[0] = total - cnt[1] - cnt[2];
    for i in 1..3 {
        if cnt[0] <= 1 {
            break;
        }
        let j = 3 - i;
        let share = r[j] * total as f64;
        if 0.0 < share && share < 1.0 {
            cnt[j] += 1;
            cnt[0] -= 1;
        }
    }
    cnt
}

/// Shuffles each user's interactions with one seeded RNG (users in index order) and cuts them
/// by [`split_sizes`].
pub fn random_split(data: &Interactions, ratios: [f64; 3], seed: u64) -> Split {
    let n_users = data.n_users();
    let mut per_user: Vec<Vec<(u32, i64)>> = vec![Vec::new(); n_users];
    for r in &data.records {
        per_user[r.user as usize].push((r.item, r.timestamp));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut split = Split {
        seed,
        ratios,
        train: Vec::with_capacity(n_users),
        valid: Vec::with_capacity(n_users),
        test: Vec::with_capacity(n_users),
    };
    for mut inter in per_user {
        inter.shuffle(&mut rng);
        let [n_train, n_valid, _] = split_sizes(inter.len(), ratios);
        let mut train: Vec<(u32, i64)> = inter[..n_train].to_vec();
        // Stable sort keeps the shuffled order among equal timestamps.
        train.sort_by_key(|&(_, t)| t);
        split
            .train
            .push(train.into_iter().map(|(i, _)| i).collect());
        split.valid.push(
            inter[n_train..n_train + n_valid]
                .iter()
                .map(|&(i, _)| i)
                .collect(),
        );
        split
            .test
            .push(inter[n_train + n_valid..].iter().map(|&(i, _)| i).collect());
    }
    split
}

impl Split {
    pub fn n_users(&self) -> usize {
        self.train.len()
    }

    /// Writes `train.tsv`, `valid.tsv`, `test.tsv` (`user_id\titem_id`, external ids) into `dir`.
    pub fn write_tsv(&self, dir: &Path, data: &Interactions) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, part) in [
            ("train", &self.train),
            ("valid", &self.valid),
            ("test", &self.test),
        ] {
            let file = std::fs::File::create(dir.join(format!("{name}.tsv")))?;
            let mut w = std::io::BufWriter::new(file);
            writeln!(w, "user_id\titem_id")?;
            for (u, items) in part.iter().enumerate() {
                for &i in items {
                    writeln!(w, "{}\t{}", data.user_ids[u], data.item_ids[i as usize])?;
                }
            }
            w.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Interaction, Interactions};
    use super::*;
    use std::collections::HashSet;

    fn synthetic(n_users: usize, per_user: impl Fn(usize) -> usize) -> Interactions {
        let mut records = Vec::new();
        for u in 0..n_users {
            for k in 0..per_user(u) {
                records.push(Interaction {
                    user: u as u32,
                    item: ((u * 7 + k * 3) % 50) as u32,
                    rating: 1.0,
                    timestamp: (1000 - k) as i64,
                });
            }
        }
        Interactions {
            name: "t".into(),
            path: "t".into(),
            sha256: String::new(),
            user_ids: (0..n_users).map(|u| format!("u{u}")).collect(),
            item_ids: (0..50).map(|i| format!("i{i}")).collect(),
            item_titles: vec![None; 50],
            records,
        }
    }

    #[test]
    fn sizes_follow_recbole() {
        assert_eq!(split_sizes(100, [0.8, 0.1, 0.1]), [80, 10, 10]);
        assert_eq!(split_sizes(25, [0.8, 0.1, 0.1]), [21, 2, 2]);
        // Small users: valid/test get one each while train keeps more than one.
        assert_eq!(split_sizes(5, [0.8, 0.1, 0.1]), [3, 1, 1]);
        assert_eq!(split_sizes(2, [0.8, 0.1, 0.1]), [1, 0, 1]);
        assert_eq!(split_sizes(1, [0.8, 0.1, 0.1]), [1, 0, 0]);
    }

    #[test]
    fn partitions_each_user_without_leakage_and_keeps_training_data() {
        let data = synthetic(40, |u| 1 + u % 23);
        let s = random_split(&data, [0.8, 0.1, 0.1], 2020);
        for u in 0..40 {
            let (tr, va, te) = (&s.train[u], &s.valid[u], &s.test[u]);
            assert!(!tr.is_empty(), "user {u} lost all training data");
            let all: Vec<u32> = tr.iter().chain(va).chain(te).copied().collect();
            assert_eq!(all.len(), 1 + u % 23);
            let mut mine: Vec<u32> = data
                .records
                .iter()
                .filter(|r| r.user == u as u32)
                .map(|r| r.item)
                .collect();
            let mut got = all.clone();
            mine.sort();
            got.sort();
            assert_eq!(mine, got, "user {u}: split is not a partition");
            let tr: HashSet<_> = tr.iter().collect();
            assert!(
                va.iter().chain(te).all(|i| !tr.contains(i)),
                "user {u}: leakage"
            );
        }
    }

    #[test]
    fn seeded_and_train_in_time_order() {
        let data = synthetic(10, |_| 20);
        let a = random_split(&data, [0.8, 0.1, 0.1], 7);
        assert_eq!(a, random_split(&data, [0.8, 0.1, 0.1], 7));
        assert_ne!(a, random_split(&data, [0.8, 0.1, 0.1], 8));
        let ts: std::collections::HashMap<(u32, u32), i64> = data
            .records
            .iter()
            .map(|r| ((r.user, r.item), r.timestamp))
            .collect();
        for (u, items) in a.train.iter().enumerate() {
            let t: Vec<i64> = items.iter().map(|&i| ts[&(u as u32, i)]).collect();
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn writes_tsv_with_external_ids() {
        let data = synthetic(3, |_| 10);
        let s = random_split(&data, [0.8, 0.1, 0.1], 1);
        let d = tempfile::tempdir().unwrap();
        s.write_tsv(d.path(), &data).unwrap();
        let train = std::fs::read_to_string(d.path().join("train.tsv")).unwrap();
        assert_eq!(train.lines().count(), 1 + 3 * 8);
        assert!(train.lines().nth(1).unwrap().starts_with("u0\ti"));
    }
}
