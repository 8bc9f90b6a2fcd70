//! Shared by the real-data tests: where MovieLens-100K is, and the distill job's
//! `parity-sample.json` (histories with the training framework's scores).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `DISTILREC_ML100K` (ml-100k.inter; `scripts/setup.sh` fetches it). Panics with set-up
/// instructions when unset, unless `DISTILREC_SKIP_DATA` is set: then `None` and `what` is
/// reported as skipped.
pub fn ml100k(what: &str) -> Option<PathBuf> {
    match std::env::var_os("DISTILREC_ML100K") {
        Some(p) => Some(p.into()),
        None if std::env::var_os("DISTILREC_SKIP_DATA").is_some() => {
            eprintln!("DISTILREC_SKIP_DATA set: skipping {what}");
            None
        }
        None => panic!(
            "set DISTILREC_ML100K to ml-100k.inter (scripts/setup.sh fetches it), \
             or DISTILREC_SKIP_DATA=1 to skip"
        ),
    }
}

/// One user of `parity-sample.json`: history rows and the score of every vocabulary row.
pub struct ParityUser {
    pub user_id: Value,
    pub history_rows: Vec<usize>,
    pub scores: Vec<f64>,
}

/// Reads `<run_dir>/parity-sample.json`: the whole document and its users.
pub fn parity_sample(run_dir: &Path) -> (Value, Vec<ParityUser>) {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(run_dir.join("parity-sample.json"))
            .expect("the job writes parity-sample.json"),
    )
    .expect("parity-sample.json is JSON");
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .expect("an array of numbers")
            .iter()
            .map(|x| x.as_f64().expect("a number"))
            .collect()
    };
    let users = doc["users"]
        .as_array()
        .expect("parity-sample has users")
        .iter()
        .map(|u| ParityUser {
            user_id: u["user_id"].clone(),
            history_rows: numbers(&u["history_rows"])
                .into_iter()
                .map(|r| r as usize)
                .collect(),
            scores: numbers(&u["scores"]),
        })
        .collect();
    (doc, users)
}
