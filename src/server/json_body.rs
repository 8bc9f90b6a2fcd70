//! The JSON body of a `/recommend` answer, written straight into a buffer.
//!
//! `serde_json::to_vec` escapes every string byte by byte; for a 10-item answer (an id and a
//! title per item) that was about 5 % of the async worker's samples under `wrk`, the stage that
//! bounds throughput at small catalogues. Here a string that needs no escaping (no control
//! character, `"` or `\`, which is almost every id and title) is copied whole; any other string,
//! every number and the layout go through `serde_json` itself, so the output is byte for byte
//! what `serde_json::to_vec(&RecommendResponse)` writes (the tests compare the two).

use super::api::{Item, RecommendResponse};

/// Bytes of an answer beyond its items' ids and titles (keys, punctuation, numbers).
const FIXED_BYTES: usize = 128;
/// Bytes of one item beyond its id and title.
const ITEM_BYTES: usize = 48;

pub fn recommend_response(body: &RecommendResponse) -> Vec<u8> {
    let strings: usize = body
        .items
        .iter()
        .map(|i| i.id.len() + i.title.map_or(0, str::len))
        .sum();
    let mut out = Vec::with_capacity(
        FIXED_BYTES + body.model.len() + strings + ITEM_BYTES * body.items.len(),
    );
    out.extend_from_slice(b"{\"model\":");
    string(&mut out, body.model);
    out.extend_from_slice(b",\"version\":");
    integer(&mut out, body.version);
    out.extend_from_slice(b",\"items\":[");
    for (n, item) in body.items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        self::item(&mut out, item);
    }
    out.extend_from_slice(b"],\"unknown_items\":[");
    for (n, id) in body.unknown_items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        string(&mut out, id);
    }
    out.extend_from_slice(b"],\"timing\":{\"queue_us\":");
    integer(&mut out, body.timing.queue_us);
    out.extend_from_slice(b",\"inference_us\":");
    integer(&mut out, body.timing.inference_us);
    out.extend_from_slice(b",\"batch_size\":");
    integer(&mut out, body.timing.batch_size as u64);
    out.extend_from_slice(b"}}");
    out
}

fn item(out: &mut Vec<u8>, item: &Item) {
    out.extend_from_slice(b"{\"id\":");
    string(out, item.id);
    out.extend_from_slice(b",\"score\":");
    // serde_json's own float formatting (shortest round-trip; `null` for NaN and infinities).
    serde_value(out, &item.score);
    if let Some(title) = item.title {
        out.extend_from_slice(b",\"title\":");
        string(out, title);
    }
    out.push(b'}');
}

/// A JSON string: copied whole when nothing in it needs escaping, else serde_json's escaping.
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s) {
        serde_value(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// What serde_json escapes: the control characters, `"` and `\` (not `/`, DEL or non-ASCII).
/// A fold without early exit, so the compiler can check many bytes per instruction.
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

fn integer(out: &mut Vec<u8>, n: u64) {
    serde_value(out, &n);
}

fn serde_value<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a string or a float into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("serializing a plain value into memory");
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::server::api::Timing;

    /// Pieces that exercise every escaping rule and non-ASCII text.
    const PIECES: &[&str] = &[
        "a",
        "Toy Story (1995)",
        "\"",
        "\\",
        "/",
        "\n",
        "\t",
        "\u{0}",
        "\u{1f}",
        "\u{7f}",
        "é",
        "日本",
        "🎬",
        " ",
        "\r\n",
        "'",
        "</script>",
        "\u{2028}",
        "",
    ];

    fn random_string(rng: &mut StdRng) -> String {
        let n = rng.random_range(0..6);
        (0..n)
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect()
    }

    fn random_score(rng: &mut StdRng) -> f32 {
        match rng.random_range(0..10) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => -0.0,
            4 => f32::MIN_POSITIVE / 3.0,
            5 => f32::MAX,
            6 => rng.random_range(-1e-7..1e-7),
            _ => rng.random_range(-50.0..50.0),
        }
    }

    #[test]
    fn byte_for_byte_what_serde_json_writes() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let ids: Vec<String> = (0..rng.random_range(0..12))
                .map(|_| random_string(&mut rng))
                .collect();
            let titles: Vec<Option<String>> = ids
                .iter()
                .map(|_| rng.random_bool(0.7).then(|| random_string(&mut rng)))
                .collect();
            let model = random_string(&mut rng);
            let body = RecommendResponse {
                model: &model,
                version: rng.random(),
                items: ids
                    .iter()
                    .zip(&titles)
                    .map(|(id, title)| Item {
                        id,
                        score: random_score(&mut rng),
                        title: title.as_deref(),
                    })
                    .collect(),
                unknown_items: (0..rng.random_range(0..3))
                    .map(|_| random_string(&mut rng))
                    .collect(),
                timing: Timing {
                    queue_us: rng.random(),
                    inference_us: rng.random_range(0..1_000),
                    batch_size: rng.random_range(1..64),
                },
            };
            let ours = recommend_response(&body);
            let theirs = serde_json::to_vec(&body).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    #[test]
    fn escaping_is_decided_by_the_same_bytes_as_serde_json() {
        for b in 0u8..=0x7f {
            let s = (b as char).to_string();
            let escaped = serde_json::to_string(&s).unwrap() != format!("\"{s}\"");
            assert_eq!(needs_escape(&s), escaped, "byte {b:#04x}");
        }
        assert!(!needs_escape("é日本🎬"));
    }
}
