//! The Latch client (API 3.0, reference `latch-api.md`).
//!
//! [`sign`] holds the 11PATHS signature as pure functions, [`response`] turns answers into results;
//! this module builds the paths, signs, sends through the shared [`Transport`] and logs (at debug
//! level, method and path only: never a header, a body, a code or a token).

#![forbid(unsafe_code)]

pub mod response;
pub mod sign;

use crate::config::{LatchConfig, Secret};
use crate::service::http::{
    FORM_CONTENT_TYPE, LOCAL_ERROR_CODE, Method, Reply, RequestBody, Transport, TransportOptions,
};
use crate::service::{
    Access, CodeCheck, CodePairing, LockService, PairingFlow, Refusal, Removal, ServiceError, ServiceTotp,
    TotpEnrolment,
};
use serde_json::Value;
use std::time::{Instant, SystemTime};
use zeroize::Zeroizing;

/// Every path starts here.
pub const API_PREFIX: &str = "/api/3.0";
/// Pairing codes typed from the Latch app: 6 letters or digits.
pub const PAIRING_CODE_LEN: usize = 6;

/// A Latch application: its id and secret, and one kept-alive HTTP client.
pub struct LatchClient {
    app_id: String,
    secret: Secret,
    transport: Transport,
}

impl std::fmt::Debug for LatchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatchClient")
            .field("app_id", &self.app_id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl LatchClient {
    /// Builds the client from the `[latch]` section. Errors are configuration errors
    /// ([`ServiceError::Misconfigured`] with code [`LOCAL_ERROR_CODE`]).
    pub fn new(config: &LatchConfig) -> Result<LatchClient, ServiceError> {
        // The app id is the middle word of a space-separated header.
        if config.app_id.is_empty() || !config.app_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(local_error(
                "latch.app_id must be non-empty printable ASCII without spaces",
            ));
        }
        if config.secret.expose().is_empty() {
            return Err(local_error("latch.secret is empty"));
        }
        let transport = Transport::new(&TransportOptions {
            base_url: &config.url,
            ca_file: config.ca_file.as_deref(),
            proxy: config.proxy.as_deref(),
        })?;
        Ok(LatchClient {
            app_id: config.app_id.clone(),
            secret: config.secret.clone(),
            transport,
        })
    }

    /// Signs and sends one request; `shown` is the path as it may appear in logs.
    fn call(
        &self,
        method: Method,
        path: &str,
        shown: &str,
        params: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Reply, ServiceError> {
        let date = sign::format_date(SystemTime::now());
        // The body and the string to sign may hold a code; the header is a replayable credential
        // while its date is fresh: all three are wiped after use.
        let body = Zeroizing::new(sign::serialize_params(params));
        let to_sign = Zeroizing::new(sign::string_to_sign(method.as_str(), &date, "", path, &body));
        let authorization = Zeroizing::new(sign::authorization(
            &self.app_id,
            &sign::signature(self.secret.expose().as_bytes(), &to_sign),
        ));
        let headers = [
            ("Authorization", authorization.as_str()),
            (sign::DATE_HEADER, date.as_str()),
        ];
        log::debug!("latch: {method} {shown}");
        // POST and PUT always carry the (maybe empty) form, like the SDKs. GET and DELETE carry
        // none; given parameters anyway, the transport refuses rather than drop what was signed.
        let form = RequestBody {
            content_type: FORM_CONTENT_TYPE,
            bytes: body.as_bytes(),
        };
        let form = (matches!(method, Method::Post | Method::Put) || !params.is_empty()).then_some(form);
        let result = self.transport.send(method, path, &headers, form, deadline);
        match &result {
            Ok(reply) => log::debug!("latch: {method} {shown} -> HTTP {}", reply.status),
            Err(e) => log::debug!(
                "latch: {method} {shown} failed: {}",
                crate::escape::escape(&e.to_string())
            ),
        }
        result
    }

    /// [`Self::call`] for a path that holds nothing to hide, then the envelope.
    fn data(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        deadline: Instant,
    ) -> Result<Option<Value>, ServiceError> {
        response::envelope(&self.call(method, path, path, params, deadline)?)
    }
}

impl LockService for LatchClient {
    fn status(
        &self,
        account: &str,
        operation: Option<&str>,
        want_code: bool,
        deadline: Instant,
    ) -> Result<Access<'_>, ServiceError> {
        let path = status_path(account, operation, want_code)?;
        // The answer is keyed by the id asked about: the application's, or the operation's.
        let queried = operation.unwrap_or(&self.app_id);
        response::status(self.data(Method::Get, &path, &[], deadline)?, queried)
    }

    fn unpair(&self, account: &str, deadline: Instant) -> Result<(), ServiceError> {
        let path = format!("{API_PREFIX}/unpair/{}", segment("account id", account)?);
        self.data(Method::Get, &path, &[], deadline).map(drop)
    }

    fn pairing(&self) -> PairingFlow<'_> {
        PairingFlow::Code(self)
    }

    fn totp(&self) -> Option<&dyn ServiceTotp> {
        Some(self)
    }

    fn operation_ids(&self, deadline: Instant) -> Result<Option<Vec<String>>, ServiceError> {
        let path = format!("{API_PREFIX}/operation");
        response::operation_ids(self.data(Method::Get, &path, &[], deadline)?).map(Some)
    }
}

impl CodePairing for LatchClient {
    fn pair(&self, code: &str, common_name: Option<&str>, deadline: Instant) -> Result<String, ServiceError> {
        let path = pair_path(code)?;
        // The pairing code is short-lived but still a credential: logs show its place only.
        let shown = format!("{API_PREFIX}/pair/<code>");
        let reply = match common_name.filter(|n| !n.is_empty()) {
            Some(name) => self.call(Method::Post, &path, &shown, &[("commonName", name)], deadline)?,
            None => self.call(Method::Get, &path, &shown, &[], deadline)?,
        };
        response::account_id(response::envelope(&reply)?)
    }
}

impl ServiceTotp for LatchClient {
    fn totp_create(&self, user_id: &str, common_name: &str, deadline: Instant) -> Result<TotpEnrolment, ServiceError> {
        let path = format!("{API_PREFIX}/totps");
        // Form parameters are encoded, so any user id or name is safe here.
        let params = [("userId", user_id), ("commonName", common_name)];
        response::totp_enrolment(self.data(Method::Post, &path, &params, deadline)?)
    }

    fn totp_validate(&self, totp_id: &str, code: &str, deadline: Instant) -> Result<CodeCheck, ServiceError> {
        let path = format!("{API_PREFIX}/totps/{}/validate", segment("TOTP id", totp_id)?);
        match self.data(Method::Post, &path, &[("code", code)], deadline) {
            Ok(_) => Ok(CodeCheck::Valid),
            Err(ServiceError::Api {
                code: response::INVALID_TOTP,
                message,
            }) => Ok(CodeCheck::Invalid(Refusal {
                code: response::INVALID_TOTP,
                message,
            })),
            Err(e) => Err(e),
        }
    }

    fn wrong_code(&self) -> Refusal {
        Refusal {
            code: response::INVALID_TOTP,
            message: "Invalid totp code".into(),
        }
    }

    fn totp_delete(&self, totp_id: &str, deadline: Instant) -> Result<Removal, ServiceError> {
        let path = format!("{API_PREFIX}/totps/{}", segment("TOTP id", totp_id)?);
        match self.data(Method::Delete, &path, &[], deadline) {
            Ok(_) => Ok(Removal::Deleted),
            // On a TOTP path, "application or operation not found" is the TOTP id: it is gone
            // already. (On a status with an operation id the same code proves a misconfiguration.)
            Err(ServiceError::Misconfigured {
                code: response::NOT_FOUND,
                ..
            }) => Ok(Removal::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}

/// `/api/3.0/status/{acc}[/op/{op}][/nootp]`. `/nootp` when no code may be asked: the service then
/// generates no token (nobody could type it).
pub fn status_path(account: &str, operation: Option<&str>, want_code: bool) -> Result<String, ServiceError> {
    let mut path = format!("{API_PREFIX}/status/{}", segment("account id", account)?);
    if let Some(op) = operation {
        path.push_str("/op/");
        path.push_str(segment("operation id", op)?);
    }
    if !want_code {
        path.push_str("/nootp");
    }
    Ok(path)
}

/// `/api/3.0/pair/{code}` for a well-formed code. A malformed one never reaches the wire: it gets
/// the error a wrong code gets from the service, 206 (so users see the same "invalid or expired
/// code" text), with a message saying why.
pub fn pair_path(code: &str) -> Result<String, ServiceError> {
    if code.len() != PAIRING_CODE_LEN || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ServiceError::Api {
            code: response::TOKEN_NOT_FOUND,
            message: format!("malformed pairing code: {PAIRING_CODE_LEN} letters or digits expected"),
        });
    }
    Ok(format!("{API_PREFIX}/pair/{code}"))
}

/// An id as one path segment. Ids are alphanumeric, so anything else (a `/`, `?`, `#`, `%`, `..`)
/// is refused rather than encoded: it can only be a corrupt store or config entry, and refusing
/// makes sure a value can never change which endpoint is called. Refusals are configuration
/// errors: they must deny whatever `fail_mode` says.
fn segment<'a>(what: &str, id: &'a str) -> Result<&'a str, ServiceError> {
    if response::is_id(id) {
        Ok(id)
    } else {
        Err(local_error(format!(
            "the {what} is not a plain id (letters, digits, '-', '_')"
        )))
    }
}

fn local_error(message: impl Into<String>) -> ServiceError {
    ServiceError::Misconfigured {
        code: LOCAL_ERROR_CODE,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    const APP: &str = "MyAppIDMyAppIDMyApp0";

    fn config(url: &str) -> LatchConfig {
        LatchConfig {
            app_id: APP.to_string(),
            secret: Secret::new("MySecretKeyMySecretKeyMySecretKeyMySecre"),
            url: url.to_string(),
            ca_file: None,
            proxy: None,
        }
    }

    fn client(url: &str) -> LatchClient {
        LatchClient::new(&config(url)).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(3)
    }

    /// A server that answers every request with `answer` and reports each raw request it got.
    fn server(answer: &'static str) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then the body by Content-Length.
                loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_string)
                            })
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&buf).to_string());
                let _ = write!(s, "{answer}");
            }
        });
        (url, rx)
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn paths() {
        assert_eq!(status_path("acc", None, true).unwrap(), "/api/3.0/status/acc");
        assert_eq!(
            status_path("acc", Some("op1"), true).unwrap(),
            "/api/3.0/status/acc/op/op1"
        );
        assert_eq!(
            status_path("acc", Some("op1"), false).unwrap(),
            "/api/3.0/status/acc/op/op1/nootp"
        );
        assert_eq!(status_path("acc", None, false).unwrap(), "/api/3.0/status/acc/nootp");
        assert_eq!(pair_path("Ab3dE9").unwrap(), "/api/3.0/pair/Ab3dE9");
    }

    #[test]
    fn path_injection_is_refused() {
        for bad in ["", "../x", "a/b", "a?x=1", "a#f", "a%2F", "..", "a b", "a\r\nX: y", "ü"] {
            assert!(
                matches!(
                    status_path(bad, None, true),
                    Err(ServiceError::Misconfigured { code: 0, .. })
                ),
                "{bad:?}"
            );
            assert!(status_path("acc", Some(bad), true).is_err(), "{bad:?}");
        }
        for bad in [
            "", "12345", "1234567", "../../", "ab/cde", "abc?de", "abc de", "abcdé", "abc%2F",
        ] {
            match pair_path(bad) {
                Err(ServiceError::Api { code: 206, .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    /// Refused values never reach the wire: the calls fail before any connection.
    #[test]
    fn injection_attempts_make_no_request() {
        let c = client("http://192.0.2.1:9");
        let start = Instant::now();
        assert!(c.pair("../adm", None, soon()).is_err());
        assert!(c.unpair("a/../../x", soon()).is_err());
        assert!(c.totp_validate("x/../../status/acc", "123456", soon()).is_err());
        assert!(c.totp_delete("x?y", soon()).is_err());
        assert!(c.status("acc", Some("op/../x"), true, soon()).is_err());
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    /// Parameters are signed: a GET that would sign them without sending them is refused.
    #[test]
    fn get_with_parameters_is_refused() {
        let (url, _r) = server(leak(ok("{}")));
        let c = client(&url);
        match c.call(Method::Get, "/api/3.0/x", "/api/3.0/x", &[("a", "b")], soon()) {
            Err(ServiceError::Unavailable(why)) => assert!(why.contains("internal"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deadline_already_passed_fails_fast() {
        let c = client("http://192.0.2.1:9");
        let start = Instant::now();
        match c.status("acc", None, true, Instant::now()) {
            Err(ServiceError::Unavailable(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn bad_config_is_a_configuration_error() {
        let mut cfg = config("https://latch.tu.com");
        cfg.app_id = "has space".into();
        assert!(matches!(
            LatchClient::new(&cfg),
            Err(ServiceError::Misconfigured { code: 0, .. })
        ));
        let mut cfg = config("https://latch.tu.com");
        cfg.secret = Secret::new("");
        assert!(matches!(
            LatchClient::new(&cfg),
            Err(ServiceError::Misconfigured { code: 0, .. })
        ));
    }

    #[test]
    fn client_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<LatchClient>();
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", client("https://latch.tu.com"));
        assert!(!shown.contains("MySecretKey"), "{shown}");
    }

    /// The request on the wire: method, path, date header, and a signature that verifies.
    #[test]
    fn status_request_is_signed() {
        let body = format!(r#"{{"data":{{"operations":{{"{APP}":{{"status":"on"}}}}}}}}"#);
        let (url, requests) = server(leak(ok(&body)));
        let client = client(&url);
        let access = client.status("acc1", None, false, soon()).unwrap();
        assert!(matches!(access, Access::Open));
        let req = requests.recv().unwrap();
        assert!(req.starts_with("GET /api/3.0/status/acc1/nootp HTTP/1.1\r\n"), "{req}");
        let date = header(&req, "X-11Paths-Date").unwrap();
        assert_eq!(date.len(), 19);
        let to_sign = format!("GET\n{date}\n\n/api/3.0/status/acc1/nootp");
        let expected = sign::signature(b"MySecretKeyMySecretKeyMySecretKeyMySecre", &to_sign);
        assert_eq!(
            header(&req, "Authorization").unwrap(),
            format!("11PATHS {APP} {expected}")
        );
    }

    #[test]
    fn operation_status_reads_the_operation_key() {
        let body = r#"{"data":{"operations":{"OP1":{"status":"on","two_factor":{"token":"Ab12Cd"}}}}}"#;
        let (url, requests) = server(leak(ok(body)));
        match client(&url).status("acc1", Some("OP1"), true, soon()) {
            Ok(Access::CodeRequired(crate::service::Challenge::LocalToken(t))) => assert_eq!(t.expose(), "Ab12Cd"),
            other => panic!("{other:?}"),
        }
        let req = requests.recv().unwrap();
        assert!(req.starts_with("GET /api/3.0/status/acc1/op/OP1 HTTP/1.1\r\n"), "{req}");
    }

    #[test]
    fn unknown_operation_is_a_misconfiguration() {
        let (url, _r) = server(leak(ok(
            r#"{"error":{"code":301,"message":"Application or Operation not found"}}"#,
        )));
        assert!(matches!(
            client(&url).status("acc1", Some("OP1"), true, soon()),
            Err(ServiceError::Misconfigured { code: 301, .. })
        ));
    }

    #[test]
    fn pair_get_and_post_with_common_name() {
        let acc = "A".repeat(64);
        let body = leak(ok(&format!(r#"{{"data":{{"accountId":"{acc}"}}}}"#)));
        let (url, requests) = server(body);
        let c = client(&url);
        assert_eq!(c.pair("Ab3dE9", None, soon()).unwrap(), acc);
        let req = requests.recv().unwrap();
        assert!(req.starts_with("GET /api/3.0/pair/Ab3dE9 HTTP/1.1\r\n"), "{req}");

        assert_eq!(c.pair("Ab3dE9", Some("John Doe"), soon()).unwrap(), acc);
        let req = requests.recv().unwrap();
        assert!(req.starts_with("POST /api/3.0/pair/Ab3dE9 HTTP/1.1\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\ncommonName=John+Doe"), "{req}");
        assert_eq!(header(&req, "Content-Type"), Some("application/x-www-form-urlencoded"));
        let date = header(&req, "X-11Paths-Date").unwrap();
        let to_sign = format!("POST\n{date}\n\n/api/3.0/pair/Ab3dE9\ncommonName=John+Doe");
        let expected = sign::signature(b"MySecretKeyMySecretKeyMySecretKeyMySecre", &to_sign);
        assert_eq!(
            header(&req, "Authorization").unwrap(),
            format!("11PATHS {APP} {expected}")
        );
    }

    #[test]
    fn pair_expired_code() {
        let (url, _r) = server(leak(ok(
            r#"{"error":{"code":206,"message":"Token not found or expired"}}"#,
        )));
        assert!(matches!(
            client(&url).pair("Ab3dE9", None, soon()),
            Err(ServiceError::Api { code: 206, .. })
        ));
    }

    #[test]
    fn unpair_empty_object_is_success() {
        let (url, requests) = server(leak(ok("{}")));
        client(&url).unpair("acc1", soon()).unwrap();
        assert!(
            requests
                .recv()
                .unwrap()
                .starts_with("GET /api/3.0/unpair/acc1 HTTP/1.1\r\n")
        );
    }

    #[test]
    fn unpair_not_paired() {
        let (url, _r) = server(leak(ok(r#"{"error":{"code":201,"message":"Account not paired"}}"#)));
        assert_eq!(
            client(&url).unpair("acc1", soon()),
            Err(ServiceError::NotPaired { code: 201 })
        );
    }

    #[test]
    fn totp_create_sends_user_and_name() {
        let (url, requests) = server(leak(ok(r#"{"data":{"totpId":"TOTP1","qr":"otpauth://totp/x"}}"#)));
        let e = client(&url)
            .totp_create("user@example.com", "John Doe", soon())
            .unwrap();
        assert_eq!((e.totp_id.as_str(), e.qr.as_str()), ("TOTP1", "otpauth://totp/x"));
        let req = requests.recv().unwrap();
        assert!(req.starts_with("POST /api/3.0/totps HTTP/1.1\r\n"), "{req}");
        assert!(
            req.ends_with("\r\n\r\ncommonName=John+Doe&userId=user%40example.com"),
            "{req}"
        );
    }

    #[test]
    fn totp_validate_outcomes() {
        let (url, requests) = server("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        assert_eq!(
            client(&url).totp_validate("TOTP1", "123456", soon()),
            Ok(CodeCheck::Valid)
        );
        let req = requests.recv().unwrap();
        assert!(
            req.starts_with("POST /api/3.0/totps/TOTP1/validate HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.ends_with("\r\n\r\ncode=123456"), "{req}");

        let (url, _r) = server(leak(ok("{}")));
        assert_eq!(
            client(&url).totp_validate("TOTP1", "123456", soon()),
            Ok(CodeCheck::Valid)
        );
        let (url, _r) = server(leak(ok("")));
        assert_eq!(
            client(&url).totp_validate("TOTP1", "123456", soon()),
            Ok(CodeCheck::Valid)
        );
        let (url, _r) = server(leak(ok(r#"{"error":{"code":306,"message":"Invalid totp code"}}"#)));
        assert_eq!(
            client(&url).totp_validate("TOTP1", "000000", soon()),
            Ok(CodeCheck::Invalid(Refusal {
                code: 306,
                message: "Invalid totp code".into()
            }))
        );
        let (url, _r) = server(leak(ok(
            r#"{"error":{"code":102,"message":"Invalid application signature"}}"#,
        )));
        assert!(matches!(
            client(&url).totp_validate("TOTP1", "000000", soon()),
            Err(ServiceError::Misconfigured { code: 102, .. })
        ));
    }

    #[test]
    fn totp_delete_204() {
        let (url, requests) = server("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        assert_eq!(client(&url).totp_delete("TOTP1", soon()), Ok(Removal::Deleted));
        assert!(
            requests
                .recv()
                .unwrap()
                .starts_with("DELETE /api/3.0/totps/TOTP1 HTTP/1.1\r\n")
        );
    }

    #[test]
    fn totp_delete_of_a_gone_totp_is_no_misconfiguration() {
        let (url, _r) = server(leak(ok(
            r#"{"error":{"code":301,"message":"Application or Operation not found"}}"#,
        )));
        assert_eq!(client(&url).totp_delete("TOTP1", soon()), Ok(Removal::AlreadyGone));
        // The same code on a status with an operation id still proves a misconfiguration.
        let (url, _r) = server(leak(ok(
            r#"{"error":{"code":301,"message":"Application or Operation not found"}}"#,
        )));
        assert!(matches!(
            client(&url).status("acc1", Some("OP1"), false, soon()),
            Err(ServiceError::Misconfigured { code: 301, .. })
        ));
    }

    #[test]
    fn html_500_is_unavailable() {
        let (url, _r) = server(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
        );
        assert_eq!(
            client(&url).status("acc1", None, true, soon()).unwrap_err(),
            ServiceError::Unavailable("HTTP 500".into())
        );
    }
}
