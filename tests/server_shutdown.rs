//! End to end: SIGTERM while requests are in flight — they all complete, then the process
//! exits 0.

mod server_support;

use std::time::Duration;

use serde_json::json;
use server_support::*;

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let (_root, repo) = temp_repo();
    publish(&repo, "m", &mlp(1));
    // A long batching window keeps the requests queued (in flight) when the signal arrives,
    // however slowly the five clients start on a busy host.
    let mut server = Server::start(
        &repo,
        &[
            "--max-batch-size",
            "64",
            "--max-queue-delay-us",
            "6000000",
            "--request-timeout-ms",
            "20000",
        ],
    );
    server.wait_ready();
    let in_flight = 5;
    let clients: Vec<_> = (0..in_flight)
        .map(|i| {
            let url = server.url("/recommend");
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::new()
                    .post(url)
                    .json(&json!({"history": [format!("i{}", i + 1)], "k": 3}))
                    .send()
                    .expect("in-flight request completes");
                (r.status().as_u16(), r.json::<serde_json::Value>().unwrap())
            })
        })
        .collect();
    wait_for("requests queued", || {
        sample(&server.metrics(), r#"distilrec_queue_depth{model="m"}"#) == in_flight as f64
    });
    server.sigterm();
    for c in clients {
        let (status, body) = c.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 3);
    }
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    // The last lines may still be in the pipe to the test's log reader when the process exits.
    wait_for("shutdown logged", || {
        server.logs().contains("shutdown complete")
    });
    let logs = server.logs();
    assert!(logs.contains("draining"), "{logs}");
}
