//! A small HTTP/1.1 request reader and response writer: `Content-Length` bodies, keep-alive, reusable buffers.

use std::io::{self, BufRead, Read, Write};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 100;

type Span = (usize, usize);

/// One parsed request. Buffers are reused from one request to the next on a connection.
#[derive(Default)]
pub struct Request {
    head: Vec<u8>,
    method: Span,
    target: Span,
    /// The request is HTTP/1.0.
    pub http10: bool,
    headers: Vec<(Span, Span)>,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
    /// The connection may be kept open after the answer.
    pub keep_alive: bool,
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection cleanly between requests.
    Eof,
    /// An I/O error or a connection closed in the middle of a request.
    Io(io::Error),
    /// A malformed request: answer with this status and close.
    Bad(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn trim_ows(b: &[u8], mut s: usize, mut e: usize) -> Span {
    while s < e && (b[s] == b' ' || b[s] == b'\t') {
        s += 1;
    }
    while e > s && (b[e - 1] == b' ' || b[e - 1] == b'\t') {
        e -= 1;
    }
    (s, e)
}

fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

impl Request {
    fn text(&self, s: Span) -> &str {
        std::str::from_utf8(&self.head[s.0..s.1]).unwrap_or("")
    }

    /// The method, as sent.
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request target exactly as on the wire (path and query).
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| self.head[n.0..n.1].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| self.text(*v))
    }

    /// Every header as (name, value), in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (self.text(*n), self.text(*v)))
    }

    fn read_line<R: BufRead>(&mut self, r: &mut R) -> Result<Option<Span>, ReadError> {
        let start = self.head.len();
        let room = MAX_HEAD.saturating_sub(start);
        if room == 0 {
            return Err(ReadError::Bad(431, "request head too large"));
        }
        let n = r.by_ref().take(room as u64).read_until(b'\n', &mut self.head)?;
        if n == 0 {
            return Ok(None);
        }
        if self.head.last() != Some(&b'\n') {
            if n >= room {
                return Err(ReadError::Bad(431, "request head too large"));
            }
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut end = self.head.len() - 1;
        if end > start && self.head[end - 1] == b'\r' {
            end -= 1;
        }
        Ok(Some((start, end)))
    }

    /// Reads the request line and the headers. `Err(Eof)` when the peer closed the connection before a request.
    pub fn read_head<R: BufRead>(&mut self, r: &mut R) -> Result<(), ReadError> {
        self.head.clear();
        self.headers.clear();
        self.body.clear();
        // Request line, skipping a few stray empty lines (RFC 9112 §2.2).
        let mut skipped = 0;
        let line = loop {
            match self.read_line(r)? {
                None if self.head.is_empty() => return Err(ReadError::Eof),
                None => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
                Some((s, e)) if s == e => {
                    skipped += 1;
                    if skipped > 8 {
                        return Err(ReadError::Bad(400, "empty request line"));
                    }
                    self.head.clear();
                }
                Some(span) => break span,
            }
        };
        let l = &self.head[line.0..line.1];
        let mut parts = l.split(|&b| b == b' ');
        let (Some(m), Some(t), Some(v), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(ReadError::Bad(400, "malformed request line"));
        };
        if !is_token(m) || t.first() != Some(&b'/') || t.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(ReadError::Bad(400, "malformed request line"));
        }
        self.http10 = match v {
            b"HTTP/1.1" => false,
            b"HTTP/1.0" => true,
            _ => return Err(ReadError::Bad(505, "HTTP version not supported")),
        };
        self.method = (line.0, line.0 + m.len());
        self.target = (line.0 + m.len() + 1, line.0 + m.len() + 1 + t.len());
        loop {
            let Some((s, e)) = self.read_line(r)? else {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            };
            if s == e {
                break;
            }
            if self.headers.len() >= MAX_HEADERS {
                return Err(ReadError::Bad(431, "too many headers"));
            }
            let h = &self.head[s..e];
            if h[0] == b' ' || h[0] == b'\t' {
                return Err(ReadError::Bad(400, "obsolete header folding"));
            }
            let Some(colon) = h.iter().position(|&b| b == b':') else {
                return Err(ReadError::Bad(400, "malformed header"));
            };
            if !is_token(&h[..colon]) {
                return Err(ReadError::Bad(400, "malformed header name"));
            }
            let value = trim_ows(&self.head, s + colon + 1, e);
            self.headers.push(((s, s + colon), value));
        }
        if std::str::from_utf8(&self.head).is_err() {
            return Err(ReadError::Bad(400, "request head is not UTF-8"));
        }
        let conn = self.header("connection").unwrap_or("");
        let has = |tok: &str| conn.split(',').any(|t| t.trim().eq_ignore_ascii_case(tok));
        self.keep_alive = if self.http10 { has("keep-alive") } else { !has("close") };
        Ok(())
    }

    /// The declared body length (0 when none). Chunked request bodies are not supported.
    pub fn content_length(&self) -> Result<usize, ReadError> {
        if self.header("transfer-encoding").is_some() {
            return Err(ReadError::Bad(501, "Transfer-Encoding in requests is not supported"));
        }
        let mut len: Option<usize> = None;
        for (n, v) in self.headers() {
            if !n.eq_ignore_ascii_case("content-length") {
                continue;
            }
            if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Bad(400, "invalid Content-Length"));
            }
            let parsed: usize = v.parse().map_err(|_| ReadError::Bad(400, "invalid Content-Length"))?;
            if len.is_some_and(|l| l != parsed) {
                return Err(ReadError::Bad(400, "conflicting Content-Length"));
            }
            len = Some(parsed);
        }
        let len = len.unwrap_or(0);
        if len > MAX_BODY {
            return Err(ReadError::Bad(413, "request body too large"));
        }
        Ok(len)
    }

    /// The client sent `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// Reads exactly `len` body bytes.
    pub fn read_body<R: Read>(&mut self, r: &mut R, len: usize) -> Result<(), ReadError> {
        self.body.clear();
        if len == 0 {
            return Ok(());
        }
        self.body.resize(len, 0);
        r.read_exact(&mut self.body)?;
        Ok(())
    }
}

/// The reason phrase for the statuses the emulator sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What the body length header should say.
#[derive(Clone, Copy)]
pub enum BodyLen {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Appends a status line and headers to `out`.
pub fn write_head(out: &mut Vec<u8>, status: u16, content_type: Option<&str>, len: BodyLen, keep_alive: bool) {
    write_head_with(out, status, content_type, &[], len, keep_alive);
}

/// [`write_head`] with extra headers (names and values as given; no CR or LF in them).
pub fn write_head_with(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    extra: &[(String, String)],
    len: BodyLen,
    keep_alive: bool,
) {
    // Writes into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nServer: lockserver-emulator\r\n",
        reason(status)
    );
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(ct) = content_type {
        let _ = write!(out, "Content-Type: {ct}\r\n");
    }
    match len {
        BodyLen::Length(n) => {
            if status != 204 {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
        }
        BodyLen::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

/// Appends a complete response (head and body) to `out`.
pub fn write_response(out: &mut Vec<u8>, status: u16, content_type: Option<&str>, body: &[u8], keep_alive: bool) {
    write_response_with(out, status, content_type, &[], body, keep_alive);
}

/// [`write_response`] with extra headers.
pub fn write_response_with(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    extra: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) {
    write_head_with(
        out,
        status,
        content_type,
        extra,
        BodyLen::Length(body.len() as u64),
        keep_alive,
    );
    if status != 204 {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn parse(raw: &[u8]) -> Result<Request, ReadError> {
        let mut r = BufReader::new(raw);
        let mut req = Request::default();
        req.read_head(&mut r)?;
        let n = req.content_length()?;
        req.read_body(&mut r, n)?;
        Ok(req)
    }

    #[test]
    fn parses_a_request() {
        let req = parse(b"\r\nPOST /api/3.0/totps?x=1 HTTP/1.1\r\nHost: a\r\nX-11Paths-Date:  2015-02-15 14:53:00 \r\nContent-Length: 5\r\n\r\nhello")
            .expect("parse");
        assert_eq!(req.method(), "POST");
        assert_eq!(req.target(), "/api/3.0/totps?x=1");
        assert_eq!(req.path(), "/api/3.0/totps");
        assert_eq!(req.query(), Some("x=1"));
        assert_eq!(req.header("x-11paths-date"), Some("2015-02-15 14:53:00"));
        assert_eq!(req.body, b"hello");
        assert!(req.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .expect("p")
                .keep_alive
        );
        assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").expect("p").keep_alive);
        assert!(
            parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .expect("p")
                .keep_alive
        );
        assert!(parse(b"GET / HTTP/1.1\n\n").expect("p").keep_alive);
    }

    #[test]
    fn rejects_malformed() {
        for (raw, want) in [
            (&b"GARBAGE\r\n\r\n"[..], 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET nopath HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        ] {
            match parse(raw) {
                Err(ReadError::Bad(s, _)) => assert_eq!(s, want, "{:?}", String::from_utf8_lossy(raw)),
                other => panic!("{:?} -> {:?}", String::from_utf8_lossy(raw), other.map(|_| ())),
            }
        }
        assert!(matches!(parse(b""), Err(ReadError::Eof)));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost"), Err(ReadError::Io(_))));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab"),
            Err(ReadError::Io(_))
        ));
        let big = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(parse(&big), Err(ReadError::Bad(431, _))));
    }
}
