//! Shared by the distillation tests: a tiny interaction log with structure a recommender can
//! learn, written in a second.

use std::fmt::Write as _;

/// 60 users in 3 taste groups over 40 items: each user mostly rates items of its group.
pub fn synthetic_inter(path: &std::path::Path) {
    let mut s = String::from("user_id:token\titem_id:token\trating:float\ttimestamp:float\n");
    let mut x: u64 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for u in 0..60u64 {
        let group = u % 3;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 15 {
            let item = if next() % 5 == 0 {
                next() % 40
            } else {
                group * 13 + next() % 13
            };
            seen.insert(item);
        }
        for (t, item) in seen.iter().enumerate() {
            let _ = writeln!(
                s,
                "u{u}\ti{item}\t4\t{}",
                1_000_000 + t as u64 * 60 + next() % 50
            );
        }
    }
    std::fs::write(path, s).unwrap();
}
