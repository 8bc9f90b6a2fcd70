//! A JSON body extractor whose rejections are [`ApiError`]s, so a bad body gets the same
//! `{"error", "error_type"}` shape as every other error (axum's own `Json` answers in plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::errors::ApiError;

pub struct Json<T>(pub T);

/// The `{name}` segment of `/v1/models/{name}` and `/admin/models/{name}/...`. A segment that
/// does not percent-decode to UTF-8 (`%FF`) cannot name a model: 404 `unknown_model` in our
/// error format instead of axum's plain-text 400.
pub struct ModelName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ModelName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => Ok(ModelName(name)),
            Err(_) => Err(ApiError::UnknownModel(
                "(a name that is not valid UTF-8)".into(),
            )),
        }
    }
}

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType("`application/json`"));
        }
        let bytes = read_body(req, state, ApiError::MalformedJson).await?;
        parse(&bytes).map(Json)
    }
}

/// The whole body, under the router's body limit (413 `payload_too_large` beyond it); other
/// read failures become `malformed(message)` (400 in the body's format).
pub async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
    malformed: fn(String) -> ApiError,
) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            // The client stopped sending or the stream broke: a bad request either way.
            malformed(format!("could not read the body: {rejection}"))
        }
    })
}

/// The parsed `content-type`, if present and well-formed.
pub fn content_type(headers: &HeaderMap) -> Option<mime::Mime> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `application/json`, optionally with parameters (`; charset=utf-8`) or a `+json` suffix.
pub fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|m| is_json_mime(&m))
}

pub fn is_json_mime(mime: &mime::Mime) -> bool {
    mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Syntax errors are 400 `malformed_json`; well-formed JSON of the wrong shape is 422
/// `validation` (the same split axum makes).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the request body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::Validation(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::MalformedJson(format!("invalid JSON: {e}"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        #[allow(dead_code)]
        k: usize,
    }

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("application/json; charset=utf-8")));
        assert!(is_json(&headers("application/vnd.api+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn parse_errors_are_classified() {
        let t = |b: &[u8]| parse::<Req>(b).unwrap_err().status_and_type().1;
        assert_eq!(t(b""), "malformed_json");
        assert_eq!(t(b"  \n"), "malformed_json");
        assert_eq!(t(b"{\"k\": 1"), "malformed_json");
        assert_eq!(t(b"{\"k\": -1}"), "validation");
        assert_eq!(t(b"{\"k\": 1, \"x\": 2}"), "validation");
        assert_eq!(parse::<Req>(b"{\"k\": 3}").unwrap().k, 3);
    }
}
