//! End to end: hot-swap by polling and by the admin API, refusal of corrupt bundles while the
//! old version keeps serving, rollback, and swapping under continuous load.

mod server_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use distilrec::bundle::{ITEMS_FILE, MODEL_FILE};
use distilrec::onnx::write_synthetic_bundle;
use serde_json::{json, Value};
use server_support::*;

const HISTORY: [u32; 3] = [4, 8, 15];

fn ask(server: &Server) -> (u64, Value) {
    let ids: Vec<String> = HISTORY.iter().map(|r| format!("i{r}")).collect();
    let (status, body, headers) = server.recommend(json!({"history": ids, "k": 5}));
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().unwrap();
    assert_eq!(headers["x-model-version"], version.to_string().as_str());
    (version, body)
}

#[test]
fn polling_picks_up_new_versions_and_refuses_corrupt_ones() {
    let (_root, repo) = temp_repo();
    let v1 = mlp(1);
    publish(&repo, "m", &v1);
    let server = Server::start(&repo, &["--poll-interval-ms", "50"]);
    server.wait_ready();
    let (version, body) = ask(&server);
    assert_eq!(version, 1);
    assert_matches_reference(&body["items"], &v1, &HISTORY, &HISTORY, 5);

    // A new version written with the atomic writer is picked up and served.
    let v2 = mlp(2);
    assert_eq!(publish(&repo, "m", &v2), 2);
    wait_for("version 2 live", || server.live_version("m") == Some(2));
    let (version, body) = ask(&server);
    assert_eq!(version, 2);
    assert_matches_reference(&body["items"], &v2, &HISTORY, &HISTORY, 5);
    let text = server.metrics();
    assert_eq!(
        sample(&text, r#"distilrec_model_live_info{model="m",version="2"}"#),
        1.0
    );
    assert!(!text.contains(r#"distilrec_model_live_info{model="m",version="1"}"#));
    wait_for("version 1 freed", || {
        sample(&server.metrics(), r#"distilrec_model_instances{model="m"}"#) == 1.0
    });

    // Each kind of corrupt bundle is refused; version 2 keeps serving.
    // Expected failure kinds (`distilrec_model_load_total{result}`) per corruption.
    let corrupt: Vec<(&[&str], u64)> = vec![
        (
            &["checksum"],
            publish_with(
                &repo,
                "m",
                |s| {
                    write_synthetic_bundle(s, "m", &mlp(3), distilrec::bundle::Role::Student)
                        .unwrap()
                },
                |d| {
                    let mut bytes = std::fs::read(d.join(MODEL_FILE)).unwrap();
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                    std::fs::write(d.join(MODEL_FILE), bytes).unwrap();
                },
            ),
        ),
        (
            &["decode", "contract", "load"],
            publish_with(&repo, "m", |s| write_truncated(s, "m"), |_| {}),
        ),
        (
            &["output_shape"],
            publish_with(&repo, "m", |s| write_wrong_shape(s, "m"), |_| {}),
        ),
        (
            &["io"],
            publish_with(
                &repo,
                "m",
                |s| {
                    write_synthetic_bundle(s, "m", &mlp(4), distilrec::bundle::Role::Student)
                        .unwrap()
                },
                |d| std::fs::remove_file(d.join(ITEMS_FILE)).unwrap(),
            ),
        ),
    ];
    let bad_versions: Vec<u64> = corrupt.iter().map(|c| c.1).collect();
    assert_eq!(bad_versions, vec![3, 4, 5, 6]);
    wait_for("all corrupt versions refused", || {
        load_failures(&server, "m").len() == 4
    });
    let seen = load_failures(&server, "m");
    for (kinds, version) in &corrupt {
        let (_, got) = seen.iter().find(|(v, _)| v == version).unwrap();
        assert!(
            kinds.contains(&got.as_str()),
            "version {version}: {got} (expected {kinds:?})"
        );
    }
    assert_eq!(server.live_version("m"), Some(2));
    assert_eq!(ask(&server).0, 2);
    let text = server.metrics();
    let refused: f64 = text
        .lines()
        .filter(|l| l.starts_with(r#"distilrec_model_load_total{model="m",result="#))
        .filter(|l| !l.contains(r#"result="ok""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    // A refused version is remembered, not retried on every poll.
    let polls_before = sample(
        &text,
        r#"distilrec_model_reload_duration_seconds_count{model="m"}"#,
    );
    assert_eq!(refused, 4.0);
    let logs = server.logs();
    assert!(logs.contains("model version refused"), "{logs}");

    // A good version above the broken ones wins.
    let v7 = mlp(7);
    assert_eq!(publish(&repo, "m", &v7), 7);
    wait_for("version 7 live", || server.live_version("m") == Some(7));
    let (version, body) = ask(&server);
    assert_eq!(version, 7);
    assert_matches_reference(&body["items"], &v7, &HISTORY, &HISTORY, 5);
    let polls_after = sample(
        &server.metrics(),
        r#"distilrec_model_reload_duration_seconds_count{model="m"}"#,
    );
    assert_eq!(polls_after - polls_before, 1.0, "only version 7 was loaded");
}

#[test]
fn admin_api_loads_pins_rolls_back_and_unpins() {
    let (_root, repo) = temp_repo();
    let weights = [mlp(1), mlp(2), mlp(3)];
    for w in &weights {
        publish(&repo, "m", w);
    }
    let server = Server::start(&repo, &["--poll-interval-ms", "50", "--admin-token", TOKEN]);
    server.wait_ready();
    assert_eq!(server.live_version("m"), Some(3));
    let base = server.base.clone();

    // The token is required.
    let r = server
        .http
        .post(server.url("/admin/models/m/load"))
        .json(&json!({"version": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .http
        .post(server.url("/admin/models/m/load"))
        .bearer_auth("wrong-token-value")
        .json(&json!({"version": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // Load + pin an older version: served at once, and polling does not move it back.
    let (s, v) = server.admin(&base, "/admin/models/m/load", Some(json!({"version": 1})));
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)), "{v}");
    let (version, body) = ask(&server);
    assert_eq!(version, 1);
    assert_matches_reference(&body["items"], &weights[0], &HISTORY, &HISTORY, 5);
    let detail = server.get_json("/v1/models/m");
    assert_eq!(detail["pinned"], 1);
    // A few poll rounds leave a pinned model alone.
    wait_poll_rounds(&server, 3);
    assert_eq!(server.live_version("m"), Some(1));

    // Bad admin requests.
    for (path, body, status, error_type) in [
        (
            "/admin/models/m/load",
            json!({"version": 99}),
            404,
            "unknown_version",
        ),
        (
            "/admin/models/m/load",
            json!({"version": "../1"}),
            422,
            "validation",
        ),
        (
            "/admin/models/m/load",
            json!({"version": 0}),
            422,
            "validation",
        ),
        (
            "/admin/models/nope/load",
            json!({"version": 1}),
            404,
            "unknown_model",
        ),
    ] {
        let (s, v) = server.admin(&base, path, Some(body));
        assert_eq!(
            (s, v["error_type"].as_str()),
            (status, Some(error_type)),
            "{path}"
        );
    }

    // A corrupt version asked for explicitly is refused with the reason; version 1 still serves.
    let bad = publish_with(&repo, "m", |s| write_wrong_shape(s, "m"), |_| {});
    let (s, v) = server.admin(&base, "/admin/models/m/load", Some(json!({"version": bad})));
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error_type"], "load_failed");
    assert_eq!(ask(&server).0, 1);

    // Rollback goes to the version live before the current one (3), pinned.
    let (s, v) = server.admin(&base, "/admin/models/m/rollback", None);
    assert_eq!((s, v["version"].as_u64()), (200, Some(3)), "{v}");
    assert_eq!(ask(&server).0, 3);
    // Without more history it goes to the next lower version on disk.
    let (s, v) = server.admin(&base, "/admin/models/m/rollback", None);
    assert_eq!((s, v["version"].as_u64()), (200, Some(2)), "{v}");
    let (version, body) = ask(&server);
    assert_eq!(version, 2);
    assert_matches_reference(&body["items"], &weights[1], &HISTORY, &HISTORY, 5);

    // Unpin: back to the highest working version (the broken one stays refused).
    let (s, v) = server.admin(&base, "/admin/models/m/unpin", None);
    assert_eq!((s, v["version"].as_u64()), (200, Some(3)), "{v}");
    assert_eq!(server.get_json("/v1/models/m")["pinned"], Value::Null);
    assert_eq!(ask(&server).0, 3);
}

#[test]
fn admin_api_on_its_own_address() {
    let (_root, repo) = temp_repo();
    publish(&repo, "m", &mlp(1));
    publish(&repo, "m", &mlp(2));
    let server = Server::start(&repo, &["--admin-addr", "127.0.0.1:0"]);
    server.wait_ready();
    let admin = server.admin_base.clone().unwrap();
    // Not on the public address.
    let (s, _) = server.admin(
        &server.base,
        "/admin/models/m/load",
        Some(json!({"version": 1})),
    );
    assert_eq!(s, 404);
    let (s, v) = server.admin(&admin, "/admin/models/m/load", Some(json!({"version": 1})));
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(ask(&server).0, 1);
}

#[test]
fn swapping_under_load_fails_no_request() {
    let (_root, repo) = temp_repo();
    let weights = Arc::new([mlp(1), mlp(2)]);
    for w in weights.iter() {
        publish(&repo, "m", w);
    }
    let server = Arc::new(Server::start(
        &repo,
        &["--poll-interval-ms", "0", "--admin-token", TOKEN],
    ));
    server.wait_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let counts = Arc::new(Mutex::new([0usize; 2]));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (server, stop, errors, counts, weights) = (
                Arc::clone(&server),
                Arc::clone(&stop),
                Arc::clone(&errors),
                Arc::clone(&counts),
                Arc::clone(&weights),
            );
            std::thread::spawn(move || {
                let ids: Vec<String> = HISTORY.iter().map(|r| format!("i{r}")).collect();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = if (n + c).is_multiple_of(2) {
                        json!({"history": ids, "k": 5})
                    } else {
                        json!({"user_id": "u2", "k": 5})
                    };
                    let r = server
                        .http
                        .post(server.url("/recommend"))
                        .json(&body)
                        .send();
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            errors.lock().unwrap().push(format!("transport: {e}"));
                            continue;
                        }
                    };
                    if r.status() != 200 {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("status {}", r.status()));
                        continue;
                    }
                    let v: Value = r.json().unwrap();
                    let version = v["version"].as_u64().unwrap();
                    if !(1..=2).contains(&version) {
                        errors.lock().unwrap().push(format!("version {version}"));
                        continue;
                    }
                    // The answer is the one of the version it claims.
                    let w = &weights[version as usize - 1];
                    let history: Vec<u32> = if body.get("history").is_some() {
                        HISTORY.to_vec()
                    } else {
                        distilrec::onnx::synthetic_users(N_ROWS)
                            .get("u2")
                            .unwrap()
                            .to_vec()
                    };
                    let reference = w.score_reference(&history);
                    for item in v["items"].as_array().unwrap() {
                        let row = row_of(item["id"].as_str().unwrap()) as usize;
                        let score = item["score"].as_f64().unwrap() as f32;
                        if (score - reference[row]).abs() > 1e-4 {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("version {version} row {row}: {score}"));
                        }
                    }
                    counts.lock().unwrap()[version as usize - 1] += 1;
                }
            })
        })
        .collect();

    let swaps = 60;
    for i in 0..swaps {
        let version = 1 + (i % 2) as u64;
        let (s, v) = server.admin(
            &server.base,
            "/admin/models/m/load",
            Some(json!({"version": version})),
        );
        assert_eq!((s, v["version"].as_u64()), (200, Some(version)), "{v}");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} failures, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let counts = *counts.lock().unwrap();
    eprintln!("responses per version during {swaps} swaps: {counts:?}");
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "both versions served: {counts:?}"
    );
    let text = server.metrics();
    assert!(
        sample(
            &text,
            r#"distilrec_model_load_total{model="m",result="ok"}"#
        ) >= swaps as f64
    );
    // Every swapped-out version is freed once no request holds it: no growth across swaps.
    wait_for("old versions freed", || {
        sample(&server.metrics(), r#"distilrec_model_instances{model="m"}"#) == 1.0
    });
}
