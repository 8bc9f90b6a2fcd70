//! A minimal keep-alive HTTP/1.1 client over one tokio `TcpStream` per connection.
//!
//! Hand-rolled because client and server share two cores: requests are pre-serialised once, so a
//! round trip costs one `write_all`, a few reads and an `httparse` pass — no per-request
//! allocation beyond the response buffer, no connection pool locking.

use std::io;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: `host:port` plus the base path of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if url.starts_with("https://") => bail!("https is not supported: {url}"),
            None => bail!("URL must start with http://: {url}"),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, rest) = v6
                    .split_once(']')
                    .with_context(|| format!("unclosed [ in {url}"))?;
                (host, rest.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().with_context(|| format!("bad port in {url}"))?,
            None => 80,
        };
        if host.is_empty() {
            bail!("no host in {url}");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            base_path: path.to_string(),
        })
    }

    /// `host:port` for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A complete POST request with a JSON body, ready to be written as is.
    pub fn post_json(&self, path: &str, body: &[u8], bearer: Option<&str>) -> Vec<u8> {
        self.post(path, "application/json", body, bearer)
    }

    /// A complete POST request whose body is `media_type`, asking for the same type back.
    pub fn post(&self, path: &str, media_type: &str, body: &[u8], bearer: Option<&str>) -> Vec<u8> {
        let auth = bearer
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut req = format!(
            "POST {}{} HTTP/1.1\r\nhost: {}\r\ncontent-type: {media_type}\r\naccept: {media_type}\r\n{auth}content-length: {}\r\n\r\n",
            self.base_path,
            path,
            self.addr(),
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }
}

/// What the harness keeps from a response; the body is read and discarded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub model_version: Option<String>,
    pub queue_time: Option<String>,
    pub inference_time: Option<String>,
    /// The server asked to close the connection (or will close it after the body).
    pub close: bool,
}

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The response was not valid HTTP/1.1.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "io: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are single small writes; Nagle would add up to 40 ms of delayed-ACK latency.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends one pre-serialised request and reads the whole response.
    pub async fn round_trip(&mut self, request: &[u8]) -> Result<Response, ClientError> {
        self.stream.write_all(request).await?;
        loop {
            if let Some((resp, consumed)) = parse_response(&self.buf)? {
                self.buf.advance(consumed);
                return Ok(resp);
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                // A body delimited by connection close ends here.
                if let Some(resp) = parse_until_eof(&self.buf)? {
                    self.buf.clear();
                    return Ok(resp);
                }
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response was complete",
                )));
            }
        }
    }
}

enum BodyLen {
    Fixed(usize),
    Chunked,
    UntilEof,
}

struct Head {
    resp: Response,
    header_len: usize,
    body: BodyLen,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let header_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ClientError::Protocol(e.to_string())),
    };
    let status = parsed.code.unwrap_or(0);
    let mut resp = Response {
        status,
        close: parsed.version == Some(0),
        ..Response::default()
    };
    let mut body = if status == 204 || status == 304 || (100..200).contains(&status) {
        BodyLen::Fixed(0)
    } else {
        BodyLen::UntilEof
    };
    for h in parsed.headers.iter() {
        let value = || String::from_utf8_lossy(h.value).trim().to_string();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ClientError::Protocol("bad content-length".into()))?;
            body = BodyLen::Fixed(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value().to_ascii_lowercase().contains("chunked") {
                body = BodyLen::Chunked;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value().to_ascii_lowercase();
            if v.contains("close") {
                resp.close = true;
            }
        } else if name.eq_ignore_ascii_case("x-model-version") {
            resp.model_version = Some(value());
        } else if name.eq_ignore_ascii_case("x-queue-time") {
            resp.queue_time = Some(value());
        } else if name.eq_ignore_ascii_case("x-inference-time") {
            resp.inference_time = Some(value());
        }
    }
    if matches!(body, BodyLen::UntilEof) {
        resp.close = true;
    }
    Ok(Some(Head {
        resp,
        header_len,
        body,
    }))
}

/// `Some((response, bytes consumed))` once a whole response is in `buf`.
fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, ClientError> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    let body = &buf[head.header_len..];
    let body_len = match head.body {
        BodyLen::Fixed(n) if body.len() >= n => n,
        BodyLen::Fixed(_) | BodyLen::UntilEof => return Ok(None),
        BodyLen::Chunked => match chunked_len(body)? {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    Ok(Some((head.resp, head.header_len + body_len)))
}

fn parse_until_eof(buf: &[u8]) -> Result<Option<Response>, ClientError> {
    match parse_head(buf)? {
        Some(Head {
            resp,
            body: BodyLen::UntilEof,
            ..
        }) => Ok(Some(resp)),
        _ => Ok(None),
    }
}

/// Length of a complete chunked body (including the terminating chunk and trailers), or `None`
/// if more bytes are needed.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, ClientError> {
    let mut pos = 0;
    loop {
        let Some(line_end) = find_crlf(&body[pos..]) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[pos..pos + line_end])
            .map_err(|_| ClientError::Protocol("bad chunk size".into()))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| ClientError::Protocol(format!("bad chunk size {size_hex:?}")))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailers, each ending in CRLF, then an empty line.
            loop {
                let Some(end) = find_crlf(&body[pos..]) else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if body.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.base_path.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let t = Target::parse("http://example.org/api/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.base_path.as_str()),
            ("example.org", 80, "/api")
        );
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!((t.addr().as_str(), t.port), ("[::1]:9000", 9000));
        assert_eq!(Target::parse("http://[::1]").unwrap().port, 80);
        assert!(Target::parse("http://h:x").is_err());
        assert!(Target::parse("https://x").is_err());
        assert!(Target::parse("127.0.0.1:80").is_err());
    }

    #[test]
    fn builds_post_with_length_and_token() {
        let t = Target::parse("http://h:1/base").unwrap();
        let req = String::from_utf8(t.post_json("/recommend", b"{}", Some("tok"))).unwrap();
        assert!(req.starts_with("POST /base/recommend HTTP/1.1\r\n"));
        assert!(req.contains("content-length: 2\r\n"));
        assert!(req.contains("authorization: Bearer tok\r\n"));
        assert!(req.ends_with("\r\n\r\n{}"));
        let req = t.post("/recommend", "application/x-protobuf", b"\x0a\x00", None);
        let head = String::from_utf8_lossy(&req);
        assert!(head.contains("content-type: application/x-protobuf\r\n"));
        assert!(head.contains("accept: application/x-protobuf\r\n"));
        assert!(head.contains("content-length: 2\r\n"));
        assert!(req.ends_with(b"\r\n\r\n\x0a\x00"));
    }

    #[test]
    fn parses_fixed_length_response_with_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Model-Version: 3\r\nx-queue-time: 12us\r\nx-inference-time: 0.5ms\r\n\r\nhelloHTTP/1.1";
        let (resp, used) = parse_response(raw).unwrap().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.model_version.as_deref(), Some("3"));
        assert_eq!(resp.queue_time.as_deref(), Some("12us"));
        assert_eq!(resp.inference_time.as_deref(), Some("0.5ms"));
        assert!(!resp.close);
        assert_eq!(&raw[used..], b"HTTP/1.1");
        // Truncated body: not complete yet.
        assert!(parse_response(&raw[..raw.len() - 12]).unwrap().is_none());
    }

    #[test]
    fn parses_chunked_response() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let (resp, used) = parse_response(raw).unwrap().unwrap();
        assert_eq!((resp.status, used), (503, raw.len()));
        for cut in 1..raw.len() {
            assert!(
                parse_response(&raw[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn body_until_eof_marks_close() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\npartial";
        assert!(parse_response(raw).unwrap().is_none());
        let resp = parse_until_eof(raw).unwrap().unwrap();
        assert!(resp.close);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"NOT HTTP\r\n\r\n").is_err());
    }
}
