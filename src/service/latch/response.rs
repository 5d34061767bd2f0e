//! Latch answers (reference `latch-api.md` §2.2, §3, §4) → results.
//!
//! The envelope is `{"data": ..., "error": {"code": n, "message": "..."}}`, both optional; API errors
//! come with HTTP 200. Anything else — another status, non-JSON, a shape that does not fit — is
//! [`ServiceError::Unavailable`], so `fail_mode` decides. Answers are navigated key by key, never
//! searched as text: a nested `"status":"off"` or a token somewhere else must not count.

#![forbid(unsafe_code)]

use crate::config::Secret;
use crate::service::http::Reply;
use crate::service::{Access, Challenge, ServiceError, TotpEnrolment, json};
use serde_json::{Map, Value};

/// Error codes that prove this host's configuration is wrong rather than the request or the user:
/// 101–105 (authorization header, signature, credentials), 108/109 (date format, clock skew), 110
/// (unauthorized client), 111 (application not allowed to make this call) and 301 (application or
/// operation not found; on a status with an operation id it means the configured id is unknown).
/// A TOTP call reads 301 for its own path as "this TOTP id is gone" instead.
const MISCONFIGURATION_CODES: &[u32] = &[101, 102, 103, 104, 105, 108, 109, 110, 111, NOT_FOUND];
/// Application or operation (or TOTP) not found.
pub const NOT_FOUND: u32 = 301;
/// Account not paired (the user unpaired from the phone).
pub const NOT_PAIRED: u32 = 201;
/// Pairing token not found or expired; also what a malformed pairing code gets.
pub const TOKEN_NOT_FOUND: u32 = 206;
/// Invalid TOTP code.
pub const INVALID_TOTP: u32 = 306;

/// Longest server message kept (it ends up in logs and on terminals).
const MAX_MESSAGE_CHARS: usize = 200;
/// Longest id accepted from the service (account ids are 64 characters).
pub const MAX_ID_LEN: usize = 128;
/// Longest Latch one-time token accepted (they are 6 characters).
const MAX_TOKEN_LEN: usize = 32;

/// The `data` of a successful answer (`None` for `{}`, an empty body or 204), or the error it carries.
pub fn envelope(reply: &Reply) -> Result<Option<Value>, ServiceError> {
    match reply.status {
        204 => Ok(None),
        200 => parse_body(&reply.body),
        status => Err(ServiceError::Unavailable(http_status_reason(status, &reply.body))),
    }
}

fn parse_body(body: &[u8]) -> Result<Option<Value>, ServiceError> {
    // "Responses is empty if code is valid" (TOTP validate): an empty body is a success without data.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // A key given twice (anywhere) makes the answer ambiguous: refused, so fail_mode decides.
    let value = json::parse_unique(body).map_err(|e| match e {
        json::JsonError::Syntax => incoherent("not JSON"),
        ambiguous => incoherent(&ambiguous.to_string()),
    })?;
    let Value::Object(mut top) = value else {
        return Err(incoherent("not a JSON object"));
    };
    // An error wins over data that may come with it ("errors can be non fatal"): failing closed is
    // the safe reading of an answer that is both.
    match top.remove("error") {
        None | Some(Value::Null) => {}
        Some(error) => return Err(api_error(&error)?),
    }
    match top.remove("data") {
        None | Some(Value::Null) => Ok(None),
        Some(data) => Ok(Some(data)),
    }
}

/// `{"code": n, "message": "..."}` → the error it means; `Err` when it has another shape.
fn api_error(error: &Value) -> Result<ServiceError, ServiceError> {
    let code = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| incoherent("error without a numeric code"))?;
    let message = match error.get("message") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(m)) => clean_message(m),
        Some(_) => return Err(incoherent("error message is not a string")),
    };
    Ok(map_error(code, message))
}

/// The error code → the [`ServiceError`] the login acts on.
pub fn map_error(code: u32, message: String) -> ServiceError {
    if MISCONFIGURATION_CODES.contains(&code) {
        ServiceError::Misconfigured { code, message }
    } else if code == NOT_PAIRED {
        ServiceError::NotPaired { code }
    } else {
        ServiceError::Api { code, message }
    }
}

/// The server's text: control characters dropped, length capped. What is left (bidi overrides, format
/// characters) is escaped where it is written ([`crate::escape`]).
fn clean_message(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

/// "HTTP 503", plus the Latch error inside if the body is a well-formed error envelope.
fn http_status_reason(status: u16, body: &[u8]) -> String {
    let inner = json::parse_unique(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| api_error(e).ok()));
    match inner {
        Some(ServiceError::Api { code, message } | ServiceError::Misconfigured { code, message }) => {
            format!("HTTP {status} (error {code}: {message})")
        }
        Some(ServiceError::NotPaired { .. }) => format!("HTTP {status} (error {NOT_PAIRED})"),
        _ => format!("HTTP {status}"),
    }
}

/// `data.operations[queried].status` → [`Access`]: `on` opens (with a challenge when a
/// `two_factor.token` comes with it), `off` locks, anything else is incoherent.
pub fn status<'s>(data: Option<Value>, queried: &str) -> Result<Access<'s>, ServiceError> {
    let mut data = data.ok_or_else(|| incoherent("status without data"))?;
    let entry = data
        .get_mut("operations")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| incoherent("status without operations"))?
        .get_mut(queried)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| incoherent("status without the queried application or operation"))?;
    match entry.get("status").and_then(Value::as_str) {
        Some("off") => Ok(Access::Locked),
        Some("on") => match two_factor_token(entry)? {
            Some(token) => Ok(Access::CodeRequired(Challenge::LocalToken(token))),
            None => Ok(Access::Open),
        },
        _ => Err(incoherent("status is neither on nor off")),
    }
}

/// The Latch one-time token, moved out of the answer (not copied). `two_factor` absent → `None`;
/// present without a plausible token → incoherent.
fn two_factor_token(entry: &mut Map<String, Value>) -> Result<Option<Secret>, ServiceError> {
    let two_factor = match entry.get_mut("two_factor") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(tf)) => tf,
        Some(_) => return Err(incoherent("two_factor is not an object")),
    };
    match two_factor.get_mut("token").map(Value::take) {
        Some(Value::String(token)) if is_token(&token) => Ok(Some(Secret::new(token))),
        Some(Value::String(mut token)) => {
            zeroize::Zeroize::zeroize(&mut token);
            Err(incoherent("two_factor token is malformed"))
        }
        _ => Err(incoherent("two_factor without a token")),
    }
}

fn is_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `data.accountId` of a pairing.
pub fn account_id(data: Option<Value>) -> Result<String, ServiceError> {
    let data = data.ok_or_else(|| incoherent("pairing without data"))?;
    id_field(&data, "accountId")
}

/// `data.totpId` and `data.qr` of a TOTP creation.
pub fn totp_enrolment(data: Option<Value>) -> Result<TotpEnrolment, ServiceError> {
    let data = data.ok_or_else(|| incoherent("TOTP creation without data"))?;
    let totp_id = id_field(&data, "totpId")?;
    let qr = match data.get("qr").and_then(Value::as_str) {
        Some(qr) if !qr.is_empty() => qr.to_string(),
        _ => return Err(incoherent("TOTP creation without qr")),
    };
    Ok(TotpEnrolment { totp_id, qr })
}

/// The ids of `data.operations` and of their nested `operations`, depth first.
pub fn operation_ids(data: Option<Value>) -> Result<Vec<String>, ServiceError> {
    fn collect(operations: &Map<String, Value>, depth: usize, out: &mut Vec<String>) -> Result<(), ServiceError> {
        // Latch nests operations a few levels; a deeper answer is not one.
        if depth > 8 {
            return Err(incoherent("operations nested too deep"));
        }
        for (id, entry) in operations {
            out.push(id.clone());
            match entry.get("operations") {
                None | Some(Value::Null) => {}
                Some(Value::Object(inner)) => collect(inner, depth + 1, out)?,
                Some(_) => return Err(incoherent("operations is not an object")),
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    match data.as_ref().and_then(|d| d.get("operations")) {
        // An application without operations answers `{}` or an empty map.
        None | Some(Value::Null) => {}
        Some(Value::Object(ops)) => collect(ops, 0, &mut out)?,
        Some(_) => return Err(incoherent("operations is not an object")),
    }
    Ok(out)
}

/// A string field that will later go into a path segment: checked now, so garbage is never stored.
fn id_field(data: &Value, key: &str) -> Result<String, ServiceError> {
    match data.get(key).and_then(Value::as_str) {
        Some(id) if is_id(id) => Ok(id.to_string()),
        Some(_) => Err(incoherent(&format!("{key} is not a plain id"))),
        None => Err(incoherent(&format!("no {key}"))),
    }
}

/// Ids put in paths: 1–128 of `A-Z a-z 0-9 - _`. Real Latch ids are alphanumeric; nothing outside
/// this set can change the path (`/`, `?`, `#`, `%`, `.` are all out).
pub fn is_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn incoherent(what: &str) -> ServiceError {
    ServiceError::Unavailable(format!("incoherent answer: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn parse(status: u16, body: &str) -> Result<Option<Value>, ServiceError> {
        envelope(&reply(status, body))
    }

    fn is_unavailable<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> String {
        match r {
            Err(ServiceError::Unavailable(why)) => why,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    fn error_body(code: u32) -> String {
        format!(r#"{{"error":{{"code":{code},"message":"text {code}"}}}}"#)
    }

    #[test]
    fn data_is_returned() {
        let data = parse(200, r#"{"data":{"accountId":"abc"}}"#).unwrap().unwrap();
        assert_eq!(data["accountId"], "abc");
    }

    #[test]
    fn empty_successes() {
        assert!(parse(200, "{}").unwrap().is_none());
        assert!(parse(200, "").unwrap().is_none());
        assert!(parse(200, " \n").unwrap().is_none());
        assert!(parse(200, r#"{"data":null,"error":null}"#).unwrap().is_none());
        assert!(parse(204, "").unwrap().is_none());
    }

    #[test]
    fn misconfiguration_codes() {
        for code in [101, 102, 103, 104, 105, 108, 109, 110, 111, 301] {
            match parse(200, &error_body(code)) {
                Err(ServiceError::Misconfigured { code: c, message }) => {
                    assert_eq!(c, code);
                    assert_eq!(message, format!("text {code}"));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn not_paired_code() {
        assert_eq!(
            parse(200, &error_body(201)),
            Err(ServiceError::NotPaired { code: NOT_PAIRED })
        );
    }

    #[test]
    fn other_codes_are_api_errors() {
        for code in [205, 206, 306, 401, 704, 1100] {
            assert_eq!(
                parse(200, &error_body(code)),
                Err(ServiceError::Api {
                    code,
                    message: format!("text {code}")
                })
            );
        }
    }

    #[test]
    fn error_wins_over_data() {
        let r = parse(200, r#"{"data":{"operations":{}},"error":{"code":206,"message":"m"}}"#);
        assert!(matches!(r, Err(ServiceError::Api { code: 206, .. })));
    }

    #[test]
    fn error_without_message_is_still_an_error() {
        assert!(matches!(
            parse(200, r#"{"error":{"code":102}}"#),
            Err(ServiceError::Misconfigured { code: 102, .. })
        ));
    }

    #[test]
    fn server_message_is_cleaned() {
        let long = "x".repeat(1000);
        let body = format!(r#"{{"error":{{"code":206,"message":"a\nb\u0007{long}"}}}}"#);
        match parse(200, &body) {
            Err(ServiceError::Api { message, .. }) => {
                assert!(message.starts_with("ab"));
                assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_unavailable() {
        is_unavailable(parse(200, "garbage"));
        is_unavailable(parse(200, "{\"data\":"));
        is_unavailable(parse(200, "[1,2]"));
        is_unavailable(parse(200, "\"on\""));
        is_unavailable(parse(200, "\u{0}\u{1}"));
    }

    #[test]
    fn wrong_shape_errors_are_unavailable() {
        is_unavailable(parse(200, r#"{"error":"bad"}"#));
        is_unavailable(parse(200, r#"{"error":{"code":"102"}}"#));
        is_unavailable(parse(200, r#"{"error":{"code":-1}}"#));
        is_unavailable(parse(200, r#"{"error":{"code":1.5}}"#));
        is_unavailable(parse(200, r#"{"error":{"code":99999999999}}"#));
        is_unavailable(parse(200, r#"{"error":{"code":102,"message":7}}"#));
    }

    #[test]
    fn http_errors_are_unavailable() {
        let why = is_unavailable(parse(500, "<html><body>Internal Server Error</body></html>"));
        assert_eq!(why, "HTTP 500");
        assert_eq!(is_unavailable(parse(503, "")), "HTTP 503");
        assert_eq!(is_unavailable(parse(404, "{}")), "HTTP 404");
        assert_eq!(is_unavailable(parse(302, "")), "HTTP 302");
        // Even a Latch error in a non-200 answer does not count as the service's word.
        let why = is_unavailable(parse(401, &error_body(102)));
        assert_eq!(why, "HTTP 401 (error 102: text 102)");
    }

    fn status_of(body: &str, queried: &str) -> Result<Access<'static>, ServiceError> {
        status(parse(200, body)?, queried)
    }

    #[test]
    fn operation_ids_nested_and_empty() {
        let data: Value = serde_json::from_str(
            r#"{"operations":{"OPA":{"name":"ssh","operations":{"OPC":{"name":"sub"}}},"OPB":{"name":"sudo"}}}"#,
        )
        .expect("json");
        let mut ids = operation_ids(Some(data)).expect("ids");
        ids.sort();
        assert_eq!(ids, ["OPA", "OPB", "OPC"]);
        assert_eq!(operation_ids(None).expect("none"), Vec::<String>::new());
        let bad: Value = serde_json::from_str(r#"{"operations":[1]}"#).expect("json");
        assert!(matches!(operation_ids(Some(bad)), Err(ServiceError::Unavailable(_))));
    }

    #[test]
    fn status_on_off() {
        let on = r#"{"data":{"operations":{"APP":{"status":"on"}}}}"#;
        assert!(matches!(status_of(on, "APP"), Ok(Access::Open)));
        let off = r#"{"data":{"operations":{"APP":{"status":"off"}}}}"#;
        assert!(matches!(status_of(off, "APP"), Ok(Access::Locked)));
    }

    #[test]
    fn status_with_two_factor_token() {
        let body = r#"{"data":{"operations":{"OP":{"status":"on","two_factor":{"token":"g2sEXg","generated":1425209705208}}}}}"#;
        match status_of(body, "OP") {
            Ok(Access::CodeRequired(Challenge::LocalToken(token))) => assert_eq!(token.expose(), "g2sEXg"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn locked_wins_over_a_token() {
        let body = r#"{"data":{"operations":{"OP":{"status":"off","two_factor":{"token":"g2sEXg"}}}}}"#;
        assert!(matches!(status_of(body, "OP"), Ok(Access::Locked)));
    }

    #[test]
    fn malformed_two_factor_is_unavailable() {
        for tf in [
            r#""yes""#,
            r#"{}"#,
            r#"{"token":""}"#,
            r#"{"token":"../x"}"#,
            r#"{"token":123456}"#,
            r#"{"token":"abcdefghijklmnopqrstuvwxyz0123456789"}"#,
        ] {
            let body = format!(r#"{{"data":{{"operations":{{"OP":{{"status":"on","two_factor":{tf}}}}}}}}}"#);
            is_unavailable(status_of(&body, "OP"));
        }
    }

    #[test]
    fn status_is_read_only_under_the_queried_id() {
        // The nested sub-operation says off, the queried one on: open.
        let body = r#"{"data":{"operations":{"APP":{"status":"on","operations":{"SUB":{"status":"off"}}}}}}"#;
        assert!(matches!(status_of(body, "APP"), Ok(Access::Open)));
        // Keyed by another id: incoherent, even though a status is there.
        let other = r#"{"data":{"operations":{"OTHER":{"status":"off"}}}}"#;
        is_unavailable(status_of(other, "APP"));
    }

    #[test]
    fn incoherent_statuses_are_unavailable() {
        for body in [
            r#"{}"#,
            r#"{"data":{}}"#,
            r#"{"data":{"operations":[]}}"#,
            r#"{"data":{"operations":{"APP":"on"}}}"#,
            r#"{"data":{"operations":{"APP":{}}}}"#,
            r#"{"data":{"operations":{"APP":{"status":"ON"}}}}"#,
            r#"{"data":{"operations":{"APP":{"status":"maybe"}}}}"#,
            r#"{"data":{"operations":{"APP":{"status":true}}}}"#,
            r#"{"data":{"status":"on"}}"#,
            r#"{"data":"\"status\":\"on\""}"#,
        ] {
            is_unavailable(status_of(body, "APP"));
        }
    }

    #[test]
    fn duplicated_keys_are_ambiguous_and_unavailable_in_any_order() {
        for body in [
            r#"{"data":{"operations":{"APP":{"status":"on","status":"off"}}}}"#,
            r#"{"data":{"operations":{"APP":{"status":"off","status":"on"}}}}"#,
            r#"{"data":{"operations":{"APP":{"status":"on"},"APP":{"status":"off"}}}}"#,
            r#"{"data":{"operations":{"APP":{"status":"on"}}},"data":{"operations":{"APP":{"status":"off"}}}}"#,
            r#"{"error":{"code":201,"message":"x"},"error":{"code":101,"message":"y"}}"#,
            r#"{"error":{"code":201,"code":101}}"#,
            r#"{"data":{"operations":{"APP":{"status":"on","two_factor":{"token":"a","token":"b"}}}}}"#,
        ] {
            match status_of(body, "APP") {
                Err(ServiceError::Unavailable(why)) => assert!(why.contains("ambiguous"), "{body}: {why}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn status_errors_pass_through() {
        assert_eq!(
            status_of(&error_body(201), "APP").unwrap_err(),
            ServiceError::NotPaired { code: NOT_PAIRED }
        );
        assert!(matches!(
            status_of(&error_body(301), "OP"),
            Err(ServiceError::Misconfigured { code: 301, .. })
        ));
        assert!(matches!(
            status_of(&error_body(109), "OP"),
            Err(ServiceError::Misconfigured { code: 109, .. })
        ));
    }

    #[test]
    fn pairing_answer() {
        let acc = "a".repeat(64);
        let body = format!(r#"{{"data":{{"accountId":"{acc}"}}}}"#);
        assert_eq!(account_id(parse(200, &body).unwrap()).unwrap(), acc);
        is_unavailable(account_id(None));
        is_unavailable(account_id(parse(200, r#"{"data":{"accountId":"../../x"}}"#).unwrap()));
        is_unavailable(account_id(parse(200, r#"{"data":{"accountId":""}}"#).unwrap()));
        is_unavailable(account_id(parse(200, r#"{"data":{"accountId":5}}"#).unwrap()));
    }

    #[test]
    fn totp_answer() {
        let body = r#"{"data":{"totpId":"T0tp1d","qr":"data:image/png;base64,AAAA","extra":1}}"#;
        let e = totp_enrolment(parse(200, body).unwrap()).unwrap();
        assert_eq!(e.totp_id, "T0tp1d");
        assert_eq!(e.qr, "data:image/png;base64,AAAA");
        is_unavailable(totp_enrolment(parse(200, r#"{"data":{"totpId":"T"}}"#).unwrap()));
        is_unavailable(totp_enrolment(
            parse(200, r#"{"data":{"totpId":"a/b","qr":"q"}}"#).unwrap(),
        ));
        is_unavailable(totp_enrolment(None));
    }

    #[test]
    fn ids() {
        assert!(is_id("abcXYZ019"));
        assert!(is_id("a-b_c"));
        for bad in ["", "a/b", "..", ".", "a?b", "a#b", "a%2Fb", "a b", "é", "a\nb"] {
            assert!(!is_id(bad), "{bad:?}");
        }
        assert!(is_id(&"a".repeat(MAX_ID_LEN)));
        assert!(!is_id(&"a".repeat(MAX_ID_LEN + 1)));
    }
}
