//! Request bodies: real user histories from a split TSV, ready JSONL bodies, or synthetic ones.
//! Which body request `n` gets is a pure function of `(seed, n)`, so runs replay exactly.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use prost::Message;
use serde::Serialize;
use serde_json::Value;

/// The server's wire types, compiled from `../proto/recommend.proto` by `build.rs`. Only the
/// request is used: the harness reads status and headers, never response bodies.
#[allow(dead_code)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/distilrec.v1.rs"));
}

#[derive(Serialize)]
struct RecommendRequest<'a> {
    history: &'a [String],
    k: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
}

pub struct BodyOptions<'a> {
    pub k: usize,
    pub model: Option<&'a str>,
    pub history_len: usize,
    pub synthetic_items: usize,
    pub seed: u64,
}

/// Loads JSON request bodies from `path` (format sniffed from the first non-empty line), or
/// generates synthetic ones when `path` is `None`.
pub fn load(path: Option<&Path>, opts: &BodyOptions) -> anyhow::Result<Vec<Vec<u8>>> {
    let bodies = match path {
        None => synthetic(opts),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading bodies from {}", path.display()))?;
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            if first.is_some_and(|l| l.starts_with('{')) {
                from_jsonl(&text)?
            } else {
                histories_from_tsv(&text)
                    .iter()
                    .map(|h| encode(h, opts))
                    .collect()
            }
        }
    };
    if bodies.is_empty() {
        bail!("no request bodies found");
    }
    Ok(bodies)
}

fn encode(history: &[String], opts: &BodyOptions) -> Vec<u8> {
    let start = history.len().saturating_sub(opts.history_len);
    serde_json::to_vec(&RecommendRequest {
        history: &history[start..],
        k: opts.k,
        model: opts.model,
    })
    .expect("serialising strings and integers cannot fail")
}

/// Each non-empty line must be a JSON object; it is sent unchanged (re-serialised compactly).
fn from_jsonl(text: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("JSONL line {}", i + 1))?;
            if !v.is_object() {
                bail!("JSONL line {} is not a JSON object", i + 1);
            }
            Ok(serde_json::to_vec(&v)?)
        })
        .collect()
}

/// Re-encodes one JSON request body as a `distilrec.v1.RecommendRequest` (for `--protobuf`), so
/// both formats carry exactly the same requests. Fields protobuf cannot carry are an error
/// rather than silently dropped.
pub fn to_protobuf(json: &[u8]) -> anyhow::Result<Vec<u8>> {
    let v: Value = serde_json::from_slice(json).context("a request body is not JSON")?;
    let obj = v
        .as_object()
        .context("a request body is not a JSON object")?;
    let mut msg = pb::RecommendRequest::default();
    for (key, value) in obj {
        let value = Some(value).filter(|v| !v.is_null());
        match (key.as_str(), value) {
            (_, None) => {}
            ("history", Some(v)) => {
                msg.history = Some(pb::History {
                    items: ids(v, key)?,
                })
            }
            ("user_id", Some(v)) => msg.user_id = Some(id(v, key)?),
            ("exclude", Some(v)) => msg.exclude = ids(v, key)?,
            ("model", Some(v)) => {
                msg.model = Some(v.as_str().context("`model` is not a string")?.to_string())
            }
            ("k", Some(v)) => {
                let k = v.as_u64().and_then(|k| u32::try_from(k).ok());
                msg.k = Some(k.context("`k` is not a non-negative 32-bit integer")?);
            }
            (other, Some(_)) => bail!("field `{other}` has no protobuf equivalent"),
        }
    }
    Ok(msg.encode_to_vec())
}

/// Ids are strings in protobuf; JSON also allows non-negative integers (the server reads `42`
/// as `"42"`).
fn id(v: &Value, field: &str) -> anyhow::Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_u64() => Ok(n.to_string()),
        _ => bail!("`{field}` holds {v}, not an id"),
    }
}

fn ids(v: &Value, field: &str) -> anyhow::Result<Vec<String>> {
    v.as_array()
        .with_context(|| format!("`{field}` is not a list"))?
        .iter()
        .map(|i| id(i, field))
        .collect()
}

/// Groups `user<TAB>item[<TAB>...]` lines by user, keeping file order within a user and the order
/// in which users first appear. A first line whose first column starts with "user" is a header.
pub fn histories_from_tsv(text: &str) -> Vec<Vec<String>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut histories: Vec<Vec<String>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut cols = line.split('\t');
        let (Some(user), Some(item)) = (cols.next(), cols.next()) else {
            continue;
        };
        let (user, item) = (user.trim(), item.trim());
        if user.is_empty() || item.is_empty() {
            continue;
        }
        if i == 0 && user.to_ascii_lowercase().starts_with("user") {
            continue;
        }
        let slot = *index.entry(user).or_insert_with(|| {
            histories.push(Vec::new());
            histories.len() - 1
        });
        histories[slot].push(item.to_string());
    }
    histories
}

fn synthetic(opts: &BodyOptions) -> Vec<Vec<u8>> {
    const USERS: u64 = 1000;
    (0..USERS)
        .map(|u| {
            let mut state = splitmix64(opts.seed ^ u.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let len = 1 + (state % opts.history_len as u64) as usize;
            let history: Vec<String> = (0..len)
                .map(|_| {
                    state = splitmix64(state);
                    format!("i{}", 1 + state % opts.synthetic_items as u64)
                })
                .collect();
            encode(&history, opts)
        })
        .collect()
}

/// Index of the body for request `n`: independent of which connection sends it or when.
pub fn pick(seed: u64, n: u64, len: usize) -> usize {
    (splitmix64(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))) % len as u64) as usize
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BodyOptions<'static> {
        BodyOptions {
            k: 5,
            model: Some("student"),
            history_len: 2,
            synthetic_items: 10,
            seed: 7,
        }
    }

    #[test]
    fn tsv_groups_by_user_in_file_order() {
        let tsv = "user_id\titem_id\nu2\ta\nu1\tb\nu2\tc\n\nu1\td\textra\n";
        let h = histories_from_tsv(tsv);
        assert_eq!(h, vec![vec!["a", "c"], vec!["b", "d"]]);
        let no_header = histories_from_tsv("1\t10\n1\t11\n");
        assert_eq!(no_header, vec![vec!["10", "11"]]);
    }

    #[test]
    fn tsv_bodies_keep_most_recent_items() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.tsv");
        std::fs::write(&path, "user_id\titem_id\nu1\ta\nu1\tb\nu1\tc\n").unwrap();
        let bodies = load(Some(&path), &opts()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(v["history"], serde_json::json!(["b", "c"]));
        assert_eq!(v["k"], 5);
        assert_eq!(v["model"], "student");
    }

    #[test]
    fn jsonl_bodies_pass_through_and_reject_non_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.jsonl");
        std::fs::write(
            &path,
            "{\"history\": [\"x\"], \"k\": 3}\n\n{\"history\": []}\n",
        )
        .unwrap();
        let bodies = load(Some(&path), &opts()).unwrap();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0], br#"{"history":["x"],"k":3}"#);
        std::fs::write(&path, "{\"a\":1}\n[1]\n").unwrap();
        assert!(load(Some(&path), &opts()).is_err());
    }

    #[test]
    fn synthetic_bodies_are_seeded_and_within_catalogue() {
        let a = load(None, &opts()).unwrap();
        assert_eq!(a, load(None, &opts()).unwrap());
        for body in &a {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            let h = v["history"].as_array().unwrap();
            assert!((1..=2).contains(&h.len()));
            for item in h {
                let id: usize = item.as_str().unwrap()[1..].parse().unwrap();
                assert!((1..=10).contains(&id));
            }
        }
    }

    #[test]
    fn protobuf_bodies_carry_the_same_request() {
        let json = br#"{"history": ["i1", 42], "k": 5, "exclude": ["i2"], "model": "m"}"#;
        let msg = pb::RecommendRequest::decode(to_protobuf(json).unwrap().as_slice()).unwrap();
        assert_eq!(
            msg.history.unwrap().items,
            vec!["i1".to_string(), "42".to_string()]
        );
        assert_eq!(msg.k, Some(5));
        assert_eq!(msg.exclude, vec!["i2".to_string()]);
        assert_eq!(msg.model.as_deref(), Some("m"));
        assert_eq!(msg.user_id, None);

        // Presence survives: an empty history and an explicit k = 0 are sent, not dropped.
        let msg = pb::RecommendRequest::decode(
            to_protobuf(br#"{"history": [], "k": 0}"#)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(
            (msg.history.map(|h| h.items.len()), msg.k),
            (Some(0), Some(0))
        );
        let msg = pb::RecommendRequest::decode(
            to_protobuf(br#"{"user_id": 7, "model": null}"#)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(
            (msg.user_id.as_deref(), msg.history, msg.model),
            (Some("7"), None, None)
        );

        // Every body the harness generates converts.
        for body in load(None, &opts()).unwrap() {
            let msg = pb::RecommendRequest::decode(to_protobuf(&body).unwrap().as_slice()).unwrap();
            assert_eq!(msg.k, Some(5));
            assert!(!msg.history.unwrap().items.is_empty());
        }

        for bad in [
            &br#"{"histroy": []}"#[..],
            br#"{"history": [-1]}"#,
            br#"{"k": "x"}"#,
            br#"[1]"#,
            b"{",
        ] {
            assert!(
                to_protobuf(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn pick_is_deterministic_and_spread() {
        let picks: Vec<usize> = (0..1000).map(|n| pick(3, n, 10)).collect();
        assert_eq!(picks, (0..1000).map(|n| pick(3, n, 10)).collect::<Vec<_>>());
        for b in 0..10 {
            assert!(picks.contains(&b), "body {b} never picked");
        }
        assert_ne!(picks, (0..1000).map(|n| pick(4, n, 10)).collect::<Vec<_>>());
    }
}
