//! End to end over HTTP: two-tower (format 2) bundles — user encoder ONNX + items.f32 — served
//! through each scoring engine by the real binary on port 0, checked against the reference
//! forward pass of the same weights; engine choice by manifest and by `--engine`; a damaged
//! item matrix refused while the previous version keeps serving; a swap across formats.

mod server_support;

use distilrec::bundle::index::INDEX_FILE;
use distilrec::bundle::ITEM_MATRIX_FILE;
use distilrec::engine::synthetic::clustered_items;
use distilrec::engine::{EngineKind, EngineParams};
use distilrec::onnx::{
    write_synthetic_two_tower, write_synthetic_two_tower_as, MeanMlpWeights, ModelWeights,
    Precision,
};
use serde_json::{json, Value};
use server_support::*;

/// A student of the test size with a clustered item side.
fn student(seed: u64) -> MeanMlpWeights {
    let mut w = MeanMlpWeights::random(N_ROWS, 8, &[16], seed);
    w.set_item_matrix(&clustered_items(N_ROWS, 16, 8, seed + 100));
    w
}

fn publish_tt(
    repo: &std::path::Path,
    name: &str,
    w: &MeanMlpWeights,
    engine: Option<EngineKind>,
) -> u64 {
    let serving = engine.map(|engine| {
        let mut p = EngineParams {
            engine,
            ..EngineParams::default()
        };
        // The graph itself, not the exact scan `ann` uses below `full_scan_below` items; a
        // one-thread build and a search list longer than the catalogue keep this plumbing test
        // off the graph's recall (the engine's unit tests measure that at 100k items).
        p.ann.full_scan_below = 0;
        p.ann.build_threads = 1;
        p.ann.ef_search = 256;
        p
    });
    let dir = write_synthetic_two_tower(repo, name, w, distilrec::bundle::Role::Student, serving)
        .expect("bundle writes");
    dir.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

const HISTORY: [u32; 4] = [4, 8, 15, 16];
const EXCLUDE: [u32; 2] = [23, 42];

fn ask(server: &Server, model: &str, k: usize) -> Value {
    let ids: Vec<String> = HISTORY.iter().map(|r| format!("i{r}")).collect();
    let ex: Vec<String> = EXCLUDE.iter().map(|r| format!("i{r}")).collect();
    let (status, body, _) =
        server.recommend(json!({"history": ids, "exclude": ex, "k": k, "model": model}));
    assert_eq!(status, 200, "{body}");
    body
}

fn excluded() -> Vec<u32> {
    HISTORY.iter().chain(&EXCLUDE).copied().collect()
}

#[test]
fn every_engine_serves_the_reference_ranking() {
    let (_root, repo) = temp_repo();
    let w = student(1);
    for kind in EngineKind::ALL {
        publish_tt(&repo, &format!("tt-{kind}"), &w, Some(kind));
    }
    let server = Server::start(&repo, &["--default-model", "tt-exact"]);
    server.wait_ready();
    let reference = ModelWeights::MeanMlp(w.clone());
    for kind in EngineKind::ALL {
        let name = format!("tt-{kind}");
        wait_for(&format!("{name} live"), || {
            server.live_version(&name).is_some()
        });
        let detail = server.get_json(&format!("/v1/models/{name}"));
        assert_eq!(detail["live"]["format_version"], 2, "{detail}");
        assert_eq!(detail["live"]["engine"], kind.name(), "{detail}");
        for k in [10, 100] {
            let body = ask(&server, &name, k);
            if kind == EngineKind::Exact {
                assert_matches_reference(&body["items"], &reference, &HISTORY, &excluded(), k);
            } else {
                // Approximate engines: exact scores of allowed rows, nearly the true top k
                // (the engines' unit tests measure recall on large clustered catalogues).
                assert_near_reference(&body["items"], &reference, k, 0.9);
            }
        }
    }
}

#[test]
fn an_int8_export_serves_close_to_its_f32_twin() {
    let (_root, repo) = temp_repo();
    let w = student(3);
    publish_tt(&repo, "tt-f32", &w, None);
    let int8_dir = write_synthetic_two_tower_as(
        &repo,
        "tt-int8",
        &w,
        distilrec::bundle::Role::Student,
        None,
        Precision::Int8,
    )
    .expect("int8 bundle writes");
    assert!(int8_dir.join("items.i8").is_file() && !int8_dir.join(ITEM_MATRIX_FILE).exists());
    let server = Server::start(&repo, &["--default-model", "tt-f32"]);
    server.wait_ready();
    wait_for("tt-int8 live", || server.live_version("tt-int8").is_some());
    let detail = server.get_json("/v1/models/tt-int8");
    assert_eq!(detail["live"]["format_version"], 2, "{detail}");
    let (f, q) = (ask(&server, "tt-f32", 10), ask(&server, "tt-int8", 10));
    let rows = |b: &Value| -> Vec<(u32, f64)> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    row_of(i["id"].as_str().unwrap()),
                    i["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (f, q) = (rows(&f), rows(&q));
    assert_eq!(q.len(), 10);
    let ex = excluded();
    assert!(q.iter().all(|(r, _)| *r > 0 && !ex.contains(r)));
    // The reference scores of the f32 weights: int8 serves each row within a small error of
    // them, and mostly the same rows.
    let reference = ModelWeights::MeanMlp(w).score_reference(&HISTORY);
    let spread = f[0].1 - f[9].1;
    for (r, s) in &q {
        let err = (s - reference[*r as usize] as f64).abs();
        assert!(
            err < 0.05 * f[0].1.abs().max(1.0),
            "row {r}: {s} vs {}",
            reference[*r as usize]
        );
    }
    let shared: Vec<(f64, f64)> = q
        .iter()
        .filter_map(|(r, s)| f.iter().find(|(x, _)| x == r).map(|(_, fs)| (*s, *fs)))
        .collect();
    assert!(
        shared.iter().any(|(s, fs)| s != fs),
        "the int8 bundle served the f32 scores exactly: its weights were not quantised"
    );
    let same = shared.len();
    assert!(
        same >= 8,
        "only {same} of the f32 top 10 (score spread {spread})"
    );

    // The int8 engine serves the int8 bundle from its own codes (no f32 copy): the same
    // scores as the exact engine over the decoded file, up to f32 rounding.
    let int8_server = Server::start(&repo, &["--default-model", "tt-f32", "--engine", "int8"]);
    int8_server.wait_ready();
    wait_for("tt-int8 live on the int8 engine", || {
        int8_server.live_version("tt-int8").is_some()
    });
    let codes = rows(&ask(&int8_server, "tt-int8", 10));
    assert_eq!(codes.len(), 10);
    for (r, s) in &codes {
        assert!(*r > 0 && !ex.contains(r));
        if let Some((_, exact)) = q.iter().find(|(x, _)| x == r) {
            assert!(
                (s - exact).abs() <= 1e-4 * exact.abs().max(1.0),
                "row {r}: {s} vs {exact}"
            );
        }
    }
    let common = codes
        .iter()
        .filter(|(r, _)| q.iter().any(|(x, _)| x == r))
        .count();
    assert!(common >= 9, "only {common} of the exact engine's top 10");
}

/// Every served score equals the reference, nothing excluded is served, the list has the
/// right length, and at least `min_recall` of the reference top k is in it.
fn assert_near_reference(items: &Value, weights: &ModelWeights, k: usize, min_recall: f64) {
    let ex = excluded();
    let reference = weights.score_reference(&HISTORY);
    let mut best: Vec<u32> = (1..N_ROWS as u32).filter(|r| !ex.contains(r)).collect();
    best.sort_by(|a, b| reference[*b as usize].total_cmp(&reference[*a as usize]));
    best.truncate(k);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), best.len());
    let mut hits = 0;
    for item in items {
        let row = row_of(item["id"].as_str().unwrap());
        assert!(
            row > 0 && !ex.contains(&row),
            "row {row} must not be served"
        );
        let score = item["score"].as_f64().unwrap() as f32;
        assert!((score - reference[row as usize]).abs() < 1e-4, "row {row}");
        hits += usize::from(best.contains(&row));
    }
    let recall = hits as f64 / best.len() as f64;
    assert!(recall >= min_recall, "recall {recall}");
}

#[test]
fn the_engine_flag_overrides_the_manifest() {
    let (_root, repo) = temp_repo();
    // No `serving` section: `ann` on 199 items scans them exactly (below `full_scan_below`).
    publish_tt(&repo, "tt", &student(2), None);
    let server = Server::start(&repo, &["--engine", "ann"]);
    server.wait_ready();
    let detail = server.get_json("/v1/models/tt");
    assert_eq!(detail["live"]["engine"], "ann", "{detail}");
    let body = ask(&server, "tt", 5);
    assert_matches_reference(
        &body["items"],
        &ModelWeights::MeanMlp(student(2)),
        &HISTORY,
        &excluded(),
        5,
    );
}

#[test]
fn a_damaged_item_matrix_is_refused_and_the_old_version_keeps_serving() {
    let (_root, repo) = temp_repo();
    let w1 = student(3);
    publish_tt(&repo, "tt", &w1, None);
    let server = Server::start(&repo, &["--poll-interval-ms", "100"]);
    server.wait_ready();
    // Version 2: one flipped byte in items.f32 (checksum); version 3: truncated (size).
    let v2 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &student(4), None);
            scratch.join("tt").join(v.to_string())
        },
        |dir| {
            let p = dir.join(ITEM_MATRIX_FILE);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[100] ^= 0x40;
            std::fs::write(&p, bytes).unwrap();
        },
    );
    let v3 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &student(5), None);
            scratch.join("tt").join(v.to_string())
        },
        |dir| {
            let p = dir.join(ITEM_MATRIX_FILE);
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        },
    );
    wait_for("both refusals", || {
        let f = server.get_json("/v1/models/tt")["load_failures"].clone();
        f.as_array().is_some_and(|a| a.len() == 2)
    });
    let failures = server.get_json("/v1/models/tt")["load_failures"].clone();
    let kinds: Vec<(u64, String)> = failures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["version"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (v2, "checksum".to_string()),
            (v3, "inconsistent".to_string())
        ]
    );
    assert_eq!(server.live_version("tt"), Some(1));
    let body = ask(&server, "tt", 5);
    assert_matches_reference(
        &body["items"],
        &ModelWeights::MeanMlp(w1),
        &HISTORY,
        &excluded(),
        5,
    );
}

#[test]
fn a_format_one_model_swaps_to_a_two_tower_version() {
    let (_root, repo) = temp_repo();
    let w1 = student(6);
    publish(&repo, "m", &ModelWeights::MeanMlp(w1.clone()));
    let server = Server::start(&repo, &["--poll-interval-ms", "100"]);
    server.wait_ready();
    assert_eq!(server.get_json("/v1/models/m")["live"]["format_version"], 1);
    let before = ask(&server, "m", 10);
    // The same weights as a two-tower bundle rank the same items with the same scores.
    publish_tt(&repo, "m", &w1, Some(EngineKind::Exact));
    wait_for("version 2 live", || server.live_version("m") == Some(2));
    let after = ask(&server, "m", 10);
    assert_eq!(after["version"], 2);
    let rows = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(rows(&before), rows(&after));
    for (a, b) in before["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["items"].as_array().unwrap())
    {
        let (a, b) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

/// Drops the saved graph from a version: the file and its manifest entry.
fn strip_graph(dir: &std::path::Path) {
    std::fs::remove_file(dir.join(INDEX_FILE)).unwrap();
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("ann_index").unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn ann_graph(server: &Server) -> Value {
    server.get_json("/v1/models/tt")["live"]["ann_graph"].clone()
}

#[test]
fn a_saved_ann_graph_is_served_and_a_damaged_one_is_refused() {
    let (_root, repo) = temp_repo();
    let w1 = student(6);
    let v1 = publish_tt(&repo, "tt", &w1, Some(EngineKind::Ann));
    let dir1 = repo.join("tt").join(v1.to_string());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir1.join("manifest.json")).unwrap()).unwrap();
    let saved = &manifest["ann_index"];
    assert_eq!(saved["file"], INDEX_FILE, "{manifest}");
    assert_eq!(
        saved["bytes"].as_u64().unwrap(),
        std::fs::metadata(dir1.join(INDEX_FILE)).unwrap().len()
    );
    let server = Server::start(&repo, &["--poll-interval-ms", "100"]);
    server.wait_ready();
    assert_eq!(ann_graph(&server), "saved");
    let reference = ModelWeights::MeanMlp(w1.clone());
    assert_near_reference(&ask(&server, "tt", 10)["items"], &reference, 10, 0.9);

    // Version 2: one flipped byte in the graph (checksum); version 3: cut short (size).
    let v2 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &student(7), Some(EngineKind::Ann));
            scratch.join("tt").join(v.to_string())
        },
        |dir| {
            let p = dir.join(INDEX_FILE);
            let mut bytes = std::fs::read(&p).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
            std::fs::write(&p, bytes).unwrap();
        },
    );
    let v3 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &student(8), Some(EngineKind::Ann));
            scratch.join("tt").join(v.to_string())
        },
        |dir| {
            let p = dir.join(INDEX_FILE);
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() - 8]).unwrap();
        },
    );
    wait_for("both refusals", || {
        let f = server.get_json("/v1/models/tt")["load_failures"].clone();
        f.as_array().is_some_and(|a| a.len() == 2)
    });
    let failures = server.get_json("/v1/models/tt")["load_failures"].clone();
    let kinds: Vec<(u64, &str)> = failures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["version"].as_u64().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![(v2, "checksum"), (v3, "inconsistent")]);
    assert_eq!(server.live_version("tt"), Some(v1));
    assert_near_reference(&ask(&server, "tt", 10)["items"], &reference, 10, 0.9);

    // Version 4 has no saved graph: one is built at load.
    let w4 = student(9);
    let v4 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &w4, Some(EngineKind::Ann));
            scratch.join("tt").join(v.to_string())
        },
        strip_graph,
    );
    wait_for("version 4 live", || server.live_version("tt") == Some(v4));
    assert_eq!(ann_graph(&server), "built");
    let reference = ModelWeights::MeanMlp(w4);
    assert_near_reference(&ask(&server, "tt", 10)["items"], &reference, 10, 0.9);

    // Version 5 lost its graph and got it back from `distilrec index` before publication.
    let w5 = student(10);
    let v5 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &w5, Some(EngineKind::Ann));
            scratch.join("tt").join(v.to_string())
        },
        |dir| {
            strip_graph(dir);
            let out = std::process::Command::new(server_bin())
                .arg("index")
                .arg(dir)
                .args(["--threads", "1"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert!(dir.join(INDEX_FILE).is_file());
        },
    );
    wait_for("version 5 live", || server.live_version("tt") == Some(v5));
    assert_eq!(ann_graph(&server), "saved");
    let reference = ModelWeights::MeanMlp(w5);
    assert_near_reference(&ask(&server, "tt", 10)["items"], &reference, 10, 0.9);

    // Version 6: the saved graph is intact but `items.f32` was changed in the first indexed
    // row and re-hashed into the manifest, so only the comparison of the graph's rows with the
    // item file (read at its offsets, the file is not decoded whole) can tell.
    let v6 = publish_with(
        &repo,
        "tt",
        |scratch| {
            let v = publish_tt(scratch, "tt", &student(11), Some(EngineKind::Ann));
            scratch.join("tt").join(v.to_string())
        },
        |dir| {
            let path = dir.join("manifest.json");
            let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let dim = m["item_side"]["dim"].as_u64().unwrap() as usize;
            let p = dir.join(ITEM_MATRIX_FILE);
            let mut bytes = std::fs::read(&p).unwrap();
            // Row 1, first value (row 0 is padding, not indexed).
            let at = 4 * dim;
            let v = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) + 0.5;
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            std::fs::write(&p, &bytes).unwrap();
            m["item_side"]["sha256"] = json!(sha256_hex(&bytes));
            std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        },
    );
    wait_for("version 6 refused", || {
        let f = server.get_json("/v1/models/tt")["load_failures"].clone();
        f.as_array()
            .is_some_and(|a| a.iter().any(|f| f["version"].as_u64() == Some(v6)))
    });
    let failures = server.get_json("/v1/models/tt")["load_failures"].clone();
    let f6 = failures
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["version"].as_u64() == Some(v6))
        .unwrap();
    assert_eq!(f6["kind"], "engine", "{failures}");
    assert_eq!(server.live_version("tt"), Some(v5));
    assert_near_reference(&ask(&server, "tt", 10)["items"], &reference, 10, 0.9);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
