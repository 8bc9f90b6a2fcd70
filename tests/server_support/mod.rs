//! Shared harness for the end-to-end server tests: real bundles in a temp repository, the real
//! `distilrec` binary on port 0 (the address is read from its `listening on HOST:PORT` log line),
//! and polling helpers with deadlines.
#![allow(dead_code)]

pub mod schema;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distilrec::bundle::{list_versions, write_bundle, Manifest, Role};
use distilrec::onnx::{
    synthetic_items, write_synthetic_bundle, EaseWeights, MeanMlpWeights, ModelWeights,
};
use serde_json::{json, Value};

pub const N_ROWS: usize = 200;
pub const TOKEN: &str = "test-admin-token";
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The server binary: `DISTILREC_BIN` when set (e.g. to run these tests against an older build
/// kept aside; the shared target directory's binary changes with every build), else Cargo's.
pub fn server_bin() -> String {
    std::env::var("DISTILREC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_distilrec").to_string())
}

pub fn mlp(seed: u64) -> ModelWeights {
    ModelWeights::MeanMlp(MeanMlpWeights::random(N_ROWS, 8, &[16], seed))
}

pub fn ease(seed: u64) -> ModelWeights {
    ModelWeights::Ease(EaseWeights::random(N_ROWS, seed))
}

/// Writes `weights` as the next version of `name` and returns that version.
pub fn publish(repo: &Path, name: &str, weights: &ModelWeights) -> u64 {
    let dir = write_synthetic_bundle(repo, name, weights, Role::Student).expect("bundle writes");
    version_of(&dir)
}

fn version_of(dir: &Path) -> u64 {
    dir.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// Builds the next version of `name` in a scratch repository, lets `corrupt` damage it, then
/// renames it into `repo` in one step (how an operator publishes atomically), so the server
/// never sees the undamaged files.
pub fn publish_with(
    repo: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> PathBuf,
    corrupt: impl FnOnce(&Path),
) -> u64 {
    let next = list_versions(repo, name).last().copied().unwrap_or(0) + 1;
    let scratch = tempfile::tempdir_in(repo.parent().unwrap()).unwrap();
    for v in 1..next {
        std::fs::create_dir_all(scratch.path().join(name).join(v.to_string())).unwrap();
    }
    let dir = write(scratch.path());
    assert_eq!(
        version_of(&dir),
        next,
        "scratch numbering follows the repository"
    );
    corrupt(&dir);
    std::fs::create_dir_all(repo.join(name)).unwrap();
    let target = repo.join(name).join(next.to_string());
    std::fs::rename(&dir, &target).unwrap();
    next
}

/// A bundle whose ONNX graph scores `onnx_rows` rows while items.tsv has `N_ROWS`.
pub fn write_wrong_shape(scratch: &Path, name: &str) -> PathBuf {
    let w = ModelWeights::MeanMlp(MeanMlpWeights::random(N_ROWS - 50, 8, &[16], 99));
    let manifest = Manifest::new(name, Role::Student, N_ROWS, w.architecture());
    write_bundle(
        scratch,
        manifest,
        &w.to_onnx(),
        &synthetic_items(N_ROWS),
        None,
    )
    .unwrap()
}

/// A bundle whose ONNX file is cut in half, with the manifest's sha256 matching the cut file.
pub fn write_truncated(scratch: &Path, name: &str) -> PathBuf {
    let w = mlp(98);
    let onnx = w.to_onnx();
    let manifest = Manifest::new(name, Role::Student, N_ROWS, w.architecture());
    write_bundle(
        scratch,
        manifest,
        &onnx[..onnx.len() / 2],
        &synthetic_items(N_ROWS),
        None,
    )
    .unwrap()
}

/// A bundle whose embedding table has only `emb_rows` rows while its output (and items.tsv)
/// has `N_ROWS`: histories with a row >= `emb_rows` make tract's Gather index out of bounds.
pub fn write_short_embedding(scratch: &Path, name: &str, emb_rows: usize) -> PathBuf {
    use prost::Message;
    let w = mlp(97);
    let ModelWeights::MeanMlp(m) = &w else {
        unreachable!("mlp() builds a mean-MLP")
    };
    let mut proto = tract_onnx::pb::ModelProto::decode(&*w.to_onnx()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let emb = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == "embedding")
        .expect("the mean-MLP graph has an `embedding` initializer");
    emb.dims[0] = emb_rows as i64;
    emb.raw_data.truncate(emb_rows * m.dim * 4);
    let manifest = Manifest::new(name, Role::Student, N_ROWS, w.architecture());
    write_bundle(
        scratch,
        manifest,
        &proto.encode_to_vec(),
        &synthetic_items(N_ROWS),
        None,
    )
    .unwrap()
}

/// Runs the binary with `args` (no `--addr` added) and waits up to `within` for it to exit;
/// `None` (after killing it) if it was still running. Returns the exit status and all output.
pub fn run_until_exit(args: &[&str], within: Duration) -> (Option<ExitStatus>, String) {
    let mut child = Command::new(server_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("DISTILREC_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the distilrec binary starts");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status, text)
}

pub struct Server {
    child: Child,
    pub base: String,
    pub admin_base: Option<String>,
    logs: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::blocking::Client,
}

impl Server {
    /// Starts the binary on `repo` with `--addr 127.0.0.1:0` plus `args`, and waits for the
    /// `listening on` line (and the admin one when `--admin-addr` is passed).
    pub fn start(repo: &Path, args: &[&str]) -> Server {
        Server::start_env(repo, args, &[])
    }

    /// [`Server::start`] with extra environment variables (flags can be set through them; a
    /// binary that does not know a variable ignores it).
    pub fn start_env(repo: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut child = Command::new(server_bin())
            .arg("--models")
            .arg(repo)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("DISTILREC_ADMIN_TOKEN")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the distilrec binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(bool, String)>();
        // Keep draining both pipes for the whole life of the process, or it blocks on logging.
        for (stream, _) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                0,
            ),
            (Box::new(child.stderr.take().unwrap()), 1),
        ] {
            let logs = Arc::clone(&logs);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = address_after(&line, "admin API listening on ") {
                        let _ = tx.send((true, addr));
                    } else if let Some(addr) = address_after(&line, "listening on ") {
                        let _ = tx.send((false, addr));
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let want_admin = args.contains(&"--admin-addr");
        let (mut base, mut admin_base) = (None, None);
        let deadline = Instant::now() + START_DEADLINE;
        while base.is_none() || (want_admin && admin_base.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, a)) => admin_base = Some(format!("http://{a}")),
                Ok((false, a)) => base = Some(format!("http://{a}")),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "server did not log its address; logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Server {
            child,
            base: base.unwrap(),
            admin_base,
            logs,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the server process (Linux `/proc`).
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// `host:port` of the public listener.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    pub fn wait_ready(&self) {
        wait_for("readiness", || {
            self.http
                .get(self.url("/readyz"))
                .send()
                .is_ok_and(|r| r.status() == 200)
        });
    }

    pub fn recommend(&self, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(self.url("/recommend"))
            .json(&body)
            .send()
            .expect("the server answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let value = r.json().unwrap_or(Value::Null);
        (status, value, headers)
    }

    pub fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .expect("the server answers")
            .json()
            .expect("a JSON body")
    }

    pub fn live_version(&self, model: &str) -> Option<u64> {
        self.get_json(&format!("/v1/models/{model}"))["live"]["version"].as_u64()
    }

    pub fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// POST to an admin route on `base` with the test token.
    pub fn admin(&self, base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.post(format!("{base}{path}")).bearer_auth(TOKEN);
        req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().expect("the server answers");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM succeeded");
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

/// Polls `cond` every 20 ms until it holds; panics after 30 s.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Value of the sample `name{labels}` in a text exposition (labels in the exporter's order,
/// i.e. sorted by name), or 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Sum of every sample of `metric` (all label sets) in a text exposition.
pub fn sample_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the poller has finished at least `rounds` more rounds over the repository
/// (`distilrec_repository_scans_total{scope="repository"}` counts one at the start of each), so
/// a test can show that something did *not* happen meanwhile without sleeping.
pub fn wait_poll_rounds(server: &Server, rounds: u32) {
    let series = r#"distilrec_repository_scans_total{scope="repository"}"#;
    let start = sample(&server.metrics(), series);
    // One more than asked: the round counted first may still have been running at `start`.
    let want = start + f64::from(rounds) + 1.0;
    wait_for(&format!("{rounds} poll rounds"), || {
        sample(&server.metrics(), series) >= want
    });
}

/// Gives `path` a modification time one second after its current one: a new fingerprint for
/// the poller without waiting for the clock to move.
pub fn touch_later(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let mtime = f.metadata().unwrap().modified().unwrap();
    f.set_modified(mtime + Duration::from_secs(1)).unwrap();
}

/// Item id `iN` → vocabulary row N (the synthetic vocabulary).
pub fn row_of(id: &str) -> u32 {
    id.strip_prefix('i').unwrap().parse().unwrap()
}

/// Checks a served top-k list against the reference forward pass of `weights`: every score
/// within 1e-4, nothing excluded returned, and nothing left out scoring higher.
pub fn assert_matches_reference(
    items: &Value,
    weights: &ModelWeights,
    history: &[u32],
    excluded: &[u32],
    k: usize,
) {
    let reference = weights.score_reference(history);
    let items = items.as_array().expect("items is an array");
    assert_eq!(items.len(), k.min(N_ROWS - 1 - excluded.len()));
    let mut served = Vec::new();
    for item in items {
        let row = row_of(item["id"].as_str().unwrap());
        let score = item["score"].as_f64().unwrap() as f32;
        assert!(
            row > 0 && !excluded.contains(&row),
            "row {row} must not be served"
        );
        assert!(
            (score - reference[row as usize]).abs() < 1e-4,
            "row {row}: served {score}, reference {}",
            reference[row as usize]
        );
        assert_eq!(item["title"], json!(format!("Item {row}")));
        served.push(row);
    }
    let lowest = items
        .last()
        .map_or(f32::INFINITY, |i| i["score"].as_f64().unwrap() as f32);
    for (row, &s) in reference.iter().enumerate().skip(1) {
        let row = row as u32;
        if !served.contains(&row) && !excluded.contains(&row) {
            assert!(
                s <= lowest + 1e-4,
                "row {row} ({s}) beats the served minimum {lowest}"
            );
        }
    }
}

/// A temporary directory holding an empty model repository `models/` (keep the `TempDir`
/// alive for as long as the repository is used).
pub fn temp_repo() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("models");
    std::fs::create_dir(&repo).unwrap();
    (root, repo)
}

/// The `(version, kind)` of every remembered load failure of `model` (none when the model is
/// not listed).
pub fn load_failures(server: &Server, model: &str) -> Vec<(u64, String)> {
    server.get_json(&format!("/v1/models/{model}"))["load_failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["version"].as_u64().unwrap(),
                        f["kind"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
