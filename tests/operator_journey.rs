//! The operator's journey end to end, on real data: a server runs on a repository, the `distill`
//! job (small epoch budget) writes a new student version into it, the server picks it up by
//! polling, serves it, and `/v1/models` and `/metrics` show the new live version. The served
//! scores equal the scores the distill job computed with its training forward for the same
//! histories (its `parity-sample.json`).

#![cfg(feature = "train")]

mod data_support;
mod server_support;

use std::process::Command;

use distilrec::bundle::ItemVocab;
use serde_json::json;
use server_support::{mlp, publish, sample, temp_repo, wait_for, Server};

#[test]
fn distill_publishes_a_version_that_the_running_server_serves_with_the_same_scores() {
    let Some(data) = data_support::ml100k("the operator journey") else {
        return;
    };
    let (root, repo) = temp_repo();
    // Version 1: a placeholder, so the server is serving before the job runs.
    assert_eq!(publish(&repo, "ml100k", &mlp(1)), 1);
    let server = Server::start(
        &repo,
        &["--poll-interval-ms", "200", "--default-model", "ml100k"],
    );
    server.wait_ready();
    assert_eq!(server.live_version("ml100k"), Some(1));

    let run_dir = root.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .arg("--data")
        .arg(&data)
        .args(["--name", "ml100k", "--quick"])
        .arg("--models")
        .arg(&repo)
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .expect("the distill binary runs");
    assert!(
        out.status.success(),
        "distill failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_for("the distilled version to go live", || {
        server.live_version("ml100k") == Some(2)
    });
    let models = server.get_json("/v1/models");
    assert!(models.to_string().contains("ml100k"), "{models}");
    let detail = server.get_json("/v1/models/ml100k");
    assert_eq!(detail["live"]["version"], json!(2), "{detail}");
    let metrics = server.metrics();
    assert_eq!(
        sample(
            &metrics,
            r#"distilrec_model_live_info{model="ml100k",version="2"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"distilrec_model_live_info{model="ml100k",version="1"}"#
        ),
        0.0
    );

    // Same bundle, same histories: the server's scores are the job's scores.
    let items = ItemVocab::read(&repo.join("ml100k/2/items.tsv")).unwrap();
    let (_, users) = data_support::parity_sample(&run_dir);
    assert!(!users.is_empty());
    for user in users.iter().take(8) {
        let (rows, expected) = (&user.history_rows, &user.scores);
        let history: Vec<&str> = rows.iter().map(|&r| items.id(r)).collect();
        let k = 20;
        let (status, body, headers) = server.recommend(json!({"history": history, "k": k}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-model-version"], "2");
        let served = body["items"].as_array().unwrap();
        assert_eq!(served.len(), k);
        let mut served_rows = Vec::new();
        for item in served {
            let row = items
                .row(item["id"].as_str().unwrap())
                .expect("a known item") as usize;
            let score = item["score"].as_f64().unwrap();
            assert!(!rows.contains(&row), "history item {row} served");
            assert!(
                (score - expected[row]).abs() < 1e-4,
                "row {row}: served {score}, distill computed {}",
                expected[row]
            );
            served_rows.push(row);
        }
        // Nothing that was left out scores above the lowest served item.
        let lowest = served.last().unwrap()["score"].as_f64().unwrap();
        for (row, &s) in expected.iter().enumerate().skip(1) {
            if !served_rows.contains(&row) && !rows.contains(&row) {
                assert!(
                    s <= lowest + 1e-4,
                    "row {row} ({s}) outranks the served list"
                );
            }
        }
    }
}
