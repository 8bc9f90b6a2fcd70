//! Protobuf bodies for `POST /recommend` (`proto/recommend.proto`): content negotiation, decoding
//! into the same [`RecommendRequest`] a JSON body becomes (so validation is shared, not copied),
//! and encoding answers and error bodies.
//!
//! - Request: `content-type: application/x-protobuf` or `application/protobuf` → protobuf;
//!   JSON types → JSON; anything else (or none) → 415.
//! - Response: protobuf when `Accept` prefers a protobuf type over JSON, JSON when it prefers
//!   JSON; with no `Accept`, or no preference between the two (`*/*`, what curl and most HTTP
//!   libraries send), the request's own format.

use axum::body::Body;
use axum::extract::{FromRequest, MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use prost::Message;

use super::api::{ExternalId, RecommendRequest, RecommendResponse};
use super::errors::{ApiError, ErrorInfo};
use super::extract::{content_type, is_json_mime, parse, read_body};
use crate::proto::v1;
use crate::server::state::AppState;

/// What protobuf answers are labelled with (either protobuf type is accepted on requests).
pub const CONTENT_TYPE: &str = "application/x-protobuf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

impl Format {
    fn matches(self, m: &mime::Mime) -> bool {
        match self {
            Format::Json => is_json_mime(m),
            Format::Protobuf => {
                m.type_() == mime::APPLICATION
                    && matches!(m.subtype().as_str(), "x-protobuf" | "protobuf")
            }
        }
    }
}

/// The format of the request body, or `None` for an unsupported or missing content type.
pub fn request_format(headers: &HeaderMap) -> Option<Format> {
    // The two spellings clients send almost always, without a MIME parse (the handler, the
    // edge middleware and the answer each ask).
    match headers.get(header::CONTENT_TYPE)?.as_bytes() {
        b"application/json" => return Some(Format::Json),
        b"application/x-protobuf" => return Some(Format::Protobuf),
        _ => {}
    }
    let m = content_type(headers)?;
    [Format::Protobuf, Format::Json]
        .into_iter()
        .find(|f| f.matches(&m))
}

/// Media ranges of `Accept` that are looked at; the rest are ignored. Real clients send a
/// handful; a 400 KB header of 10^5 ranges would otherwise cost 10^5 MIME parses on an async
/// worker.
const MAX_MEDIA_RANGES: usize = 16;

/// The format of the answer (success or error).
pub fn response_format(headers: &HeaderMap) -> Format {
    let fallback = request_format(headers).unwrap_or(Format::Json);
    let ranges: Vec<(mime::Mime, f32)> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(MAX_MEDIA_RANGES)
        .filter_map(media_range)
        .collect();
    if ranges.is_empty() {
        return fallback;
    }
    let (pb, json) = (
        quality(&ranges, Format::Protobuf),
        quality(&ranges, Format::Json),
    );
    if pb > json {
        Format::Protobuf
    } else if json > pb {
        Format::Json
    } else {
        // No preference (or neither acceptable: answering in a format the client can decode
        // beats a 406 that hides the real outcome).
        fallback
    }
}

fn media_range(s: &str) -> Option<(mime::Mime, f32)> {
    let m: mime::Mime = s.trim().parse().ok()?;
    let q = m
        .get_param("q")
        .and_then(|q| q.as_str().parse::<f32>().ok())
        .filter(|q| q.is_finite())
        .map_or(1.0, |q| q.clamp(0.0, 1.0));
    Some((m, q))
}

/// The q-value `ranges` give `format`: the most specific matching range decides
/// (RFC 9110 §12.5.1: `application/x-protobuf` over `application/*` over `*/*`).
fn quality(ranges: &[(mime::Mime, f32)], format: Format) -> f32 {
    ranges
        .iter()
        .filter_map(|(m, q)| {
            let specificity = if m.type_() == mime::STAR {
                0
            } else if m.type_() != mime::APPLICATION {
                return None;
            } else if m.subtype() == mime::STAR {
                1
            } else if format.matches(m) {
                2
            } else {
                return None;
            };
            Some((specificity, *q))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map_or(0.0, |(_, q)| q)
}

/// The body of `POST /recommend` in either format, as the one request type the handler validates.
pub struct RecommendBody(pub RecommendRequest);

impl FromRequest<AppState> for RecommendBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match request_format(req.headers()) {
            None => Err(ApiError::UnsupportedMediaType(
                "`application/json` or `application/x-protobuf`",
            )),
            Some(Format::Json) => {
                let bytes = read_body(req, state, ApiError::MalformedJson).await?;
                parse(&bytes).map(RecommendBody)
            }
            Some(Format::Protobuf) => {
                let bytes = read_body(req, state, ApiError::MalformedProtobuf).await?;
                check_id_counts(&bytes, state.config.max_history)?;
                decode_request(&bytes).map(RecommendBody)
            }
        }
    }
}

/// Refuses a body with more `history` or `exclude` ids than `--max-history` from the wire format
/// alone, before decoding allocates a `String` per id (a 256 KB body of empty ids is 128k
/// of them). The same 422 the handler would give after decoding. A body that does not even
/// scan is left to the decoder, which names the wire error.
pub fn check_id_counts(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let Some((history, exclude)) = count_ids(bytes) else {
        return Ok(());
    };
    for (field, n) in [("history", history), ("exclude", exclude)] {
        if n > max {
            return Err(ApiError::Validation(format!(
                "{field} has {n} items; the limit is {max}"
            )));
        }
    }
    Ok(())
}

/// `(history items, exclude ids)` as they appear on the wire; `None` on a wire error.
fn count_ids(mut buf: &[u8]) -> Option<(usize, usize)> {
    use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
    let (mut history, mut exclude) = (0, 0);
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        match (tag, wire) {
            (1, WireType::LengthDelimited) | (4, WireType::LengthDelimited) => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let (inner, rest) = (buf.get(..len)?, buf.get(len..)?);
                if tag == 1 {
                    history += count_field(inner, 1)?;
                } else {
                    exclude += 1;
                }
                buf = rest;
            }
            _ => skip_field(wire, tag, &mut buf, DecodeContext::default()).ok()?,
        }
    }
    Some((history, exclude))
}

/// Occurrences of length-delimited field `field` in a message.
fn count_field(mut buf: &[u8], field: u32) -> Option<usize> {
    use prost::encoding::{decode_key, skip_field, DecodeContext, WireType};
    let mut n = 0;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if tag == field && wire == WireType::LengthDelimited {
            n += 1;
        }
        skip_field(wire, tag, &mut buf, DecodeContext::default()).ok()?;
    }
    Some(n)
}

/// Wire errors (truncation, bad varints, wrong wire types, invalid UTF-8) are 400
/// `malformed_protobuf`. An empty body is a valid empty message, so it reaches validation (422:
/// neither history nor user) instead. Unknown fields are skipped, as protobuf readers do.
pub fn decode_request(bytes: &[u8]) -> Result<RecommendRequest, ApiError> {
    let m = v1::RecommendRequest::decode(bytes).map_err(|e| {
        ApiError::MalformedProtobuf(format!("not a valid distilrec.v1.RecommendRequest: {e}"))
    })?;
    Ok(RecommendRequest {
        history: m
            .history
            .map(|h| h.items.into_iter().map(|i| ExternalId(i.into())).collect()),
        user_id: m.user_id.map(|u| ExternalId(u.into())),
        k: m.k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        exclude: m
            .exclude
            .into_iter()
            .map(|i| ExternalId(i.into()))
            .collect(),
        model: m.model,
    })
}

pub fn encode_response(r: &RecommendResponse) -> Vec<u8> {
    v1::RecommendResponse {
        model: r.model.to_owned(),
        version: r.version,
        items: r
            .items
            .iter()
            .map(|i| v1::Item {
                id: i.id.to_owned(),
                score: i.score,
                title: i.title.map(str::to_owned),
            })
            .collect(),
        unknown_items: r.unknown_items.clone(),
        timing: Some(v1::Timing {
            queue_us: r.timing.queue_us,
            inference_us: r.timing.inference_us,
            batch_size: u32::try_from(r.timing.batch_size).unwrap_or(u32::MAX),
        }),
    }
    .encode_to_vec()
}

/// Whether an error answer to `req` must be re-encoded as protobuf ([`protobuf_error_body`]):
/// a `POST /recommend` whose client negotiated protobuf.
pub fn wants_protobuf_errors(req: &Request) -> bool {
    req.extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| p.as_str() == "/recommend")
        && response_format(req.headers()) == Format::Protobuf
}

/// Re-encodes an error body as `ErrorBody`; any other answer is returned as it is. Applied by
/// the router's edge middleware rather than the handler, so that errors raised before or around
/// the handler (415/413/400 from the extractor, the request deadline's 503) follow it too.
pub fn protobuf_error_body(response: Response) -> Response {
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    let body = v1::ErrorBody {
        error: info.message,
        error_type: info.error_type.to_owned(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Response::from_parts(parts, Body::from(body.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn request_content_types() {
        let f = |ct: &str| request_format(&headers(&[("content-type", ct)]));
        assert_eq!(f("application/x-protobuf"), Some(Format::Protobuf));
        assert_eq!(f("application/protobuf"), Some(Format::Protobuf));
        assert_eq!(
            f("Application/X-Protobuf; messageType=x"),
            Some(Format::Protobuf)
        );
        assert_eq!(f("application/json"), Some(Format::Json));
        assert_eq!(f("application/octet-stream"), None);
        assert_eq!(f("text/plain"), None);
        assert_eq!(request_format(&HeaderMap::new()), None);
    }

    #[test]
    fn accept_negotiation() {
        let pb = "application/x-protobuf";
        let json = "application/json";
        let f = |ct: &str, accept: &str| {
            let mut h = vec![("content-type", ct)];
            if !accept.is_empty() {
                h.push(("accept", accept));
            }
            response_format(&headers(&h))
        };
        // No Accept or no preference: mirror the request.
        assert_eq!(f(pb, ""), Format::Protobuf);
        assert_eq!(f(json, ""), Format::Json);
        assert_eq!(f(pb, "*/*"), Format::Protobuf);
        assert_eq!(f(json, "application/*"), Format::Json);
        assert_eq!(f(pb, "text/html"), Format::Protobuf);
        // An explicit preference wins over the request format.
        assert_eq!(f(json, pb), Format::Protobuf);
        assert_eq!(f(json, "application/protobuf"), Format::Protobuf);
        assert_eq!(f(pb, json), Format::Json);
        assert_eq!(f(pb, "application/json, */*;q=0.1"), Format::Json);
        assert_eq!(
            f(json, "application/json;q=0.5, application/x-protobuf"),
            Format::Protobuf
        );
        assert_eq!(
            f(pb, "application/x-protobuf;q=0.2, application/json;q=0.9"),
            Format::Json
        );
        // Only the first 16 ranges count.
        let many = format!("{}, {pb}", vec!["text/html"; 16].join(", "));
        assert_eq!(f(json, &many), Format::Json);
        let fewer = format!("{}, {pb}", vec!["text/html"; 15].join(", "));
        assert_eq!(f(json, &fewer), Format::Protobuf);
        // The most specific range decides: protobuf excluded, everything else welcome.
        assert_eq!(f(pb, "application/x-protobuf;q=0, */*"), Format::Json);
        // Unsupported request type: JSON unless protobuf is asked for.
        assert_eq!(f("text/plain", ""), Format::Json);
        assert_eq!(f("text/plain", pb), Format::Protobuf);
        assert_eq!(f(pb, "garbage"), Format::Protobuf);
    }

    #[test]
    fn too_many_ids_are_refused_before_decoding() {
        let ids = |n: usize| vec![String::new(); n];
        let msg = v1::RecommendRequest {
            history: Some(v1::History { items: ids(1001) }),
            exclude: ids(3),
            ..Default::default()
        };
        let bytes = msg.encode_to_vec();
        assert_eq!(count_ids(&bytes), Some((1001, 3)));
        let err = check_id_counts(&bytes, 1000).unwrap_err();
        assert_eq!(err.status_and_type().1, "validation");
        assert!(err.to_string().contains("history has 1001"), "{err}");
        assert!(check_id_counts(&bytes, 1001).is_ok());
        // Garbage is left to the decoder.
        assert!(check_id_counts(b"\xff\xff", 1).is_ok());
    }

    #[test]
    fn decoding_keeps_presence_and_rejects_garbage() {
        let msg = v1::RecommendRequest {
            history: Some(v1::History {
                items: vec!["i1".into(), "42".into()],
            }),
            k: Some(0),
            exclude: vec!["i7".into()],
            model: Some(String::new()),
            ..Default::default()
        };
        let r = decode_request(&msg.encode_to_vec()).unwrap();
        assert_eq!(
            r.history,
            Some(vec![ExternalId("i1".into()), ExternalId("42".into())])
        );
        assert_eq!(
            (r.k, r.user_id, r.model.as_deref()),
            (Some(0), None, Some(""))
        );
        assert_eq!(r.exclude, vec![ExternalId("i7".into())]);

        let empty = decode_request(b"").unwrap();
        assert!(empty.history.is_none() && empty.user_id.is_none() && empty.k.is_none());

        let bytes = msg.encode_to_vec();
        let t = |b: &[u8]| decode_request(b).unwrap_err().status_and_type().1;
        assert_eq!(t(&bytes[..bytes.len() - 1]), "malformed_protobuf");
        assert_eq!(t(&[0xff; 12]), "malformed_protobuf");
        // Field 3 (k) sent with the length-delimited wire type.
        assert_eq!(t(&[0x1a, 0x01, 0x00]), "malformed_protobuf");
        // Invalid UTF-8 in `user_id`.
        assert_eq!(t(&[0x12, 0x02, 0xc3, 0x28]), "malformed_protobuf");
    }
}
