//! PingID answers (reference `pingid-sdk-api.md` §2–§3) → typed results.
//!
//! A body is parsed only after its signature was checked (see [`super::PingidClient`]), and only
//! when no object in it repeats a key: serde_json silently keeps the last of two, so
//! `{"status":"REJECTED","status":"APPROVED"}` would read as approved — an answer that says two
//! things is incoherent, whatever the order. Answers are navigated key by key, never searched.

#![forbid(unsafe_code)]

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// Longest server text kept (it ends up in logs and on terminals).
const MAX_TEXT_CHARS: usize = 200;
/// Longest id accepted from the service and put into a later path.
pub const MAX_ID_LEN: usize = 128;

/// Why a call failed. [`super::PingidClient`] methods return it; `From` maps it to the
/// [`crate::service::ServiceError`] the login acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingidError {
    /// Unreachable, timed out, 5xx, an answer that is not what the API sends: `fail_mode` decides.
    Unavailable(String),
    /// The response signature is wrong (or missing while `require_response_signature`): a forged
    /// answer or a wrong API key. Never let `fail_mode` turn it into an allow.
    BadSignature(String),
    /// Refused before sending: a value this client cannot sign unambiguously or a setting that
    /// cannot work (a configuration or input error, not an outage).
    Local(String),
    /// The service answered with its error envelope.
    Api(Box<ApiError>),
}

impl fmt::Display for PingidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingidError::Unavailable(why) => write!(f, "PingID unavailable: {why}"),
            PingidError::BadSignature(why) => write!(f, "PingID answer refused: {why}"),
            PingidError::Local(why) => f.write_str(why),
            PingidError::Api(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PingidError {}

/// The top-level `code` of an error envelope (sample `ErrorCode.java`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidData,
    RequestFailed,
    InvalidRequest,
    NotFound,
    /// The request's signature or credentials were refused: this host is misconfigured.
    UnauthorizedReq,
    UnexpectedError,
    /// A code the sample's list does not have (kept, cleaned, for the logs).
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "INVALID_DATA" => ErrorCode::InvalidData,
            "REQUEST_FAILED" => ErrorCode::RequestFailed,
            "INVALID_REQUEST" => ErrorCode::InvalidRequest,
            "NOT_FOUND" => ErrorCode::NotFound,
            "UNAUTHORIZED_REQ" => ErrorCode::UnauthorizedReq,
            "UNEXPECTED_ERROR" => ErrorCode::UnexpectedError,
            other => ErrorCode::Other(clean(other)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidData => "INVALID_DATA",
            ErrorCode::RequestFailed => "REQUEST_FAILED",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UnauthorizedReq => "UNAUTHORIZED_REQ",
            ErrorCode::UnexpectedError => "UNEXPECTED_ERROR",
            ErrorCode::Other(code) => code,
        }
    }
}

/// One entry of `details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// e.g. `RESOURCE_ALREADY_EXISTS`, `DEVICE_BLOCKED`, `INVALID_USER_STATUS`.
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

/// The envelope `{message, id, target, details, code}` of a non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    pub code: ErrorCode,
    pub message: String,
    /// The service's id of this error, for support.
    pub id: String,
    /// What caused it (a field, or a resource name such as `user`, `pairingKey`).
    pub target: Option<String>,
    pub details: Vec<ErrorDetail>,
}

impl ApiError {
    /// The sample's "not found" idiom: NOT_FOUND whose target names this resource
    /// (case-insensitive). A NOT_FOUND about something else (an unknown application, a wrong
    /// path) is not "the user does not exist".
    pub fn is_not_found(&self, resource: &str) -> bool {
        self.code == ErrorCode::NotFound && self.target.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(resource))
    }

    /// Whether a detail has this code.
    pub fn has_detail(&self, code: &str) -> bool {
        self.details.iter().any(|d| d.code == code)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PingID error {} (HTTP {}): {}",
            self.code.as_str(),
            self.http_status,
            self.message
        )?;
        if let Some(d) = self.details.first() {
            write!(f, " [{}: {}]", d.code, d.message)?;
        }
        Ok(())
    }
}

/// Parses a body into JSON, refusing any object that repeats a key (at any depth).
pub fn parse_json(body: &[u8]) -> Result<Value, PingidError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    NoDuplicates::deserialize(&mut de).and_then(|_| de.end()).map_err(|e| {
        incoherent(if e.to_string().contains(DUPLICATE) {
            "an object repeats a key"
        } else {
            "not JSON"
        })
    })?;
    serde_json::from_slice(body).map_err(|_| incoherent("not JSON"))
}

const DUPLICATE: &str = "duplicate key in a JSON object";

/// Walks a JSON document without keeping it, failing on a repeated key.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

/// A non-2xx answer → the error it carries. 5xx (and anything without a well-formed envelope) is
/// an outage; a 4xx envelope is the service's answer to this request.
pub fn error_from(status: u16, body: &[u8]) -> PingidError {
    let envelope = parse_json(body).ok().and_then(|v| api_error(status, &v));
    match envelope {
        Some(e) if status < 500 => PingidError::Api(Box::new(e)),
        Some(e) => PingidError::Unavailable(format!("HTTP {status} ({}: {})", e.code.as_str(), e.message)),
        None => PingidError::Unavailable(format!("HTTP {status}")),
    }
}

fn api_error(status: u16, v: &Value) -> Option<ApiError> {
    let o = v.as_object()?;
    let code = ErrorCode::parse(o.get("code")?.as_str()?);
    let details = match o.get("details") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| {
                let d = d.as_object()?;
                Some(ErrorDetail {
                    code: clean(d.get("code")?.as_str()?),
                    message: text(d, "message"),
                    target: opt_text(d, "target"),
                })
            })
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    Some(ApiError {
        http_status: status,
        code,
        message: text(o, "message"),
        id: text(o, "id"),
        target: opt_text(o, "target"),
        details,
    })
}

fn text(o: &Map<String, Value>, key: &str) -> String {
    opt_text(o, key).unwrap_or_default()
}

fn opt_text(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key).and_then(Value::as_str).map(clean)
}

/// The server's text, made safe for one log line: control characters dropped, length capped.
pub fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_TEXT_CHARS).collect()
}

pub fn incoherent(why: &str) -> PingidError {
    PingidError::Unavailable(format!("incoherent answer: {why}"))
}

/// A required string field of an object.
pub fn field<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a str, PingidError> {
    o.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| incoherent(&format!("no string {key:?}")))
}

/// An id the service gave that a later call puts into a path: letters, digits, `-`, `_` only.
pub fn id_field(o: &Map<String, Value>, key: &str) -> Result<String, PingidError> {
    let id = field(o, key)?;
    if is_id(id) {
        Ok(id.to_string())
    } else {
        Err(incoherent(&format!("{key:?} is not a plain id")))
    }
}

pub fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, PingidError> {
    match parse_json(body)? {
        Value::Object(o) => Ok(o),
        _ => Err(incoherent("not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_in_either_order_and_at_any_depth() {
        for body in [
            r#"{"status":"REJECTED","status":"APPROVED"}"#,
            r#"{"status":"APPROVED","status":"REJECTED"}"#,
            r#"{"a":{"id":"1","id":"2"}}"#,
            r#"{"devices":[{"id":"1"},{"id":"2","id":"3"}]}"#,
            r#"{"a":1,"a":1}"#,
        ] {
            let e = parse_json(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&e, PingidError::Unavailable(why) if why.contains("repeats a key")),
                "{body}: {e:?}"
            );
        }
        // The same key in sibling objects is fine.
        let v = parse_json(br#"{"devices":[{"id":"1"},{"id":"2"}],"id":"x"}"#).unwrap();
        assert_eq!(v["id"], "x");
        for bad in [&b"not json"[..], b"{\"a\":1} trailing", b"", b"{\"a\":"] {
            assert!(matches!(parse_json(bad), Err(PingidError::Unavailable(why)) if why.contains("not JSON")));
        }
    }

    #[test]
    fn the_seed_not_found_envelope() {
        let body = br#"{
            "message": "pairingKey 349666846915 not found",
            "id": "webs_046b4007-250e-4871-a3c7-f6a26883c88f",
            "target": "pairingKey",
            "details": [],
            "code": "NOT_FOUND"
        }"#;
        let PingidError::Api(e) = error_from(404, body) else {
            panic!("expected an API error");
        };
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, "pairingKey 349666846915 not found");
        assert_eq!(e.id, "webs_046b4007-250e-4871-a3c7-f6a26883c88f");
        assert_eq!(e.target.as_deref(), Some("pairingKey"));
        assert!(e.details.is_empty());
        assert!(e.is_not_found("pairingkey"));
        assert!(!e.is_not_found("user"));
        // Without a target it is about nothing in particular: not "the user does not exist".
        let PingidError::Api(e) = error_from(404, br#"{"code":"NOT_FOUND","message":"no such resource","id":"i"}"#)
        else {
            panic!("expected an API error");
        };
        assert!(!e.is_not_found("user"));
    }

    #[test]
    fn details_and_unknown_codes_are_kept() {
        let body = br#"{"code":"REQUEST_FAILED","message":"m\u0007","id":"i","target":"user",
            "details":[{"code":"INVALID_USER_STATUS","message":"no device","target":"user"}]}"#;
        let PingidError::Api(e) = error_from(400, body) else {
            panic!("expected an API error");
        };
        assert_eq!(e.code, ErrorCode::RequestFailed);
        assert_eq!(e.message, "m", "control characters are dropped");
        assert!(e.has_detail("INVALID_USER_STATUS"));
        assert!(e.to_string().contains("INVALID_USER_STATUS"));
        let PingidError::Api(e) = error_from(400, br#"{"code":"NEW_CODE","message":"x"}"#) else {
            panic!("expected an API error");
        };
        assert_eq!(e.code, ErrorCode::Other("NEW_CODE".into()));
    }

    #[test]
    fn outages_and_shapeless_errors_are_unavailable() {
        assert!(matches!(error_from(500, b"<html>"), PingidError::Unavailable(w) if w == "HTTP 500"));
        assert!(matches!(
            error_from(503, br#"{"code":"UNEXPECTED_ERROR","message":"down"}"#),
            PingidError::Unavailable(w) if w.contains("UNEXPECTED_ERROR")
        ));
        for body in [&b"{}"[..], b"[]", br#"{"code":7}"#, br#"{"code":"X","details":{}}"#] {
            assert!(matches!(error_from(400, body), PingidError::Unavailable(_)), "{body:?}");
        }
    }

    #[test]
    fn ids_are_plain() {
        assert!(is_id("webs_4259429a-8fb2-438c-8897-c205f188f4a3"));
        assert!(is_id("349666846915"));
        for bad in ["", "a/b", "..", "a?b", "a%2f", &"x".repeat(129)] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
