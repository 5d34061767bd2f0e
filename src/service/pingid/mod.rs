//! The PingID SDK client (reference `pingid-sdk-api.md`).
//!
//! [`sign`] holds the PINGID-HMAC signature as pure functions, [`response`] the answer parsing; this
//! module builds the paths, signs, sends through the shared [`Transport`] (1 MiB answer cap, one
//! deadline per call, TLS via the system trust store plus `ca_file`, proxy from the config only),
//! checks the answer's signature and logs (debug level, method and path only; pairing keys shown
//! as `<key>`; never a header, a body or an OTP).
//!
//! Response signatures: every answer's `X-PINGID-Signature` (or the sample's `X-PINGID-Singature`)
//! is checked over the exact body; a wrong one is refused. A missing one is accepted unless
//! [`PingidSettings::require_response_signature`]: the documentation promises the header but
//! Ping's own sample treats it as optional and its spelling is unconfirmed (reference §1.3), so a
//! default of "required" could lock every host out on a spelling difference. With it required, an
//! unsigned 5xx is still an outage (it grants nothing, and a network attacker can cause an outage
//! anyway); an unsigned 2xx/4xx is refused.

#![forbid(unsafe_code)]

pub mod lock;
pub mod response;
pub mod sign;

pub use lock::PingidLock;

use crate::config::Secret;
use crate::service::ServiceError;
use crate::service::http::{LOCAL_ERROR_CODE, Method, Reply, RequestBody, Transport, TransportOptions};
pub use response::{ApiError, ErrorCode, ErrorDetail, PingidError};
use response::{field, id_field, incoherent, is_id, object};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// The service URL when the config names none (the path part is replaced, the host kept).
pub const DEFAULT_URL: &str = "https://sdk.pingid.com/pingid";
/// Every path starts here.
pub const API_PREFIX: &str = "/pingid/v1";
/// Longest user name the service accepts.
pub const MAX_USERNAME_LEN: usize = 100;
/// Longest one-time code sent (PingID's are 6 digits).
pub const MAX_OTP_LEN: usize = 32;
/// How long a request's JWT is valid (the sample's `expires`).
const JWT_LIFETIME: Duration = Duration::from_secs(300);
const JSON_TYPE: &str = "application/json";

/// Where pairing keys are made and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PairingScope {
    /// `/accounts/{a}/applications/{app}/pairingkeys`: usable by this application only.
    #[default]
    Application,
    /// `/accounts/{a}/pairingkeys`: usable by any application of the account.
    Organization,
}

/// What the client is built from; the config parser fills it from `[pingid]`.
#[derive(Debug, Clone)]
pub struct PingidSettings {
    pub account_id: String,
    pub application_id: String,
    pub token: Secret,
    /// As in `pingidsdk.properties`: base64, standard or URL-safe alphabet, padded or not.
    pub api_key: Secret,
    /// e.g. [`DEFAULT_URL`]; only scheme, host and port are used.
    pub url: String,
    pub pairing_scope: PairingScope,
    /// Refuse answers without a signature header (see the module documentation).
    pub require_response_signature: bool,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
}

/// A user's `status` (sample `UserStatus.java`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserStatus {
    /// At least one paired device.
    Active,
    NotActive,
    Suspended,
    Bypass,
    /// A value the sample does not list (including `UNKNOWN`).
    Other(String),
}

/// A PingID user, with the devices of this application when they were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub status: UserStatus,
    pub devices: Vec<Device>,
}

/// A paired device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    /// `Android`, `iPhone`, `SMS`, …
    pub device_type: String,
    pub nickname: String,
    /// `Primary` or `Trusted`.
    pub role: String,
    pub application_id: Option<String>,
}

/// A pairing key as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingKey {
    /// The key itself, to show to the user.
    pub id: String,
    pub pairing_data: String,
    pub status: PairingKeyStatus,
}

/// What the service says of a pairing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingKeyStatus {
    /// Available: no device paired with it yet.
    NotClaimed,
    /// A device paired with it.
    Used,
    /// Unknown in the scope asked (the seed's rule: an application-scope key is not found in the
    /// organization scope), with the service's message.
    NotFound { message: String },
}

/// An authentication's `status` (sample `AuthenticationStatus.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStatus {
    /// The phone has not answered yet: poll again.
    InProgress,
    Approved,
    Rejected,
    /// The user must type a one-time code: [`PingidClient::submit_otp`].
    Otp,
    InvalidOtp,
    OtpIsBlocked,
    Locked,
    Timeout,
    Canceled,
    SelectDevice,
    IgnoredDevice,
    BypassedDevice,
}

impl AuthStatus {
    fn parse(s: &str) -> Option<AuthStatus> {
        Some(match s {
            "IN_PROGRESS" => AuthStatus::InProgress,
            "APPROVED" => AuthStatus::Approved,
            "REJECTED" => AuthStatus::Rejected,
            "OTP" => AuthStatus::Otp,
            "INVALID_OTP" => AuthStatus::InvalidOtp,
            "OTP_IS_BLOCKED" => AuthStatus::OtpIsBlocked,
            "LOCKED" => AuthStatus::Locked,
            "TIMEOUT" => AuthStatus::Timeout,
            "CANCELED" => AuthStatus::Canceled,
            "SELECT_DEVICE" => AuthStatus::SelectDevice,
            "IGNORED_DEVICE" => AuthStatus::IgnoredDevice,
            "BYPASSED_DEVICE" => AuthStatus::BypassedDevice,
            _ => return None,
        })
    }
}

/// Why an authentication was refused (sample `Reason.java`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    DeniedByUser,
    BlockedByUser,
    CanceledByUser,
    DeviceBlocked,
    DeviceRooted,
    Other(String),
}

/// One authentication session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// `webs_<uuid>`; valid for 30 minutes.
    pub id: String,
    pub status: AuthStatus,
    pub reason: Option<Reason>,
}

/// A PingID application of one account, and one kept-alive HTTP client.
pub struct PingidClient {
    account_id: String,
    application_id: String,
    token: Secret,
    key: Zeroizing<Vec<u8>>,
    /// The host as it is signed: no scheme, no port (Java's `URI.getHost`).
    host: String,
    pairing_scope: PairingScope,
    require_response_signature: bool,
    transport: Transport,
}

impl std::fmt::Debug for PingidClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingidClient")
            .field("account_id", &self.account_id)
            .field("application_id", &self.application_id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl PingidClient {
    /// Builds the client. Errors are configuration errors ([`PingidError::Local`]).
    pub fn new(settings: &PingidSettings) -> Result<PingidClient, PingidError> {
        if !is_id(&settings.account_id) {
            return Err(local(
                "pingid.account_id must be a plain id (letters, digits, '-', '_')",
            ));
        }
        if !is_id(&settings.application_id) {
            return Err(local(
                "pingid.application_id must be a plain id (letters, digits, '-', '_')",
            ));
        }
        if settings.token.expose().is_empty() {
            return Err(local("pingid.token is empty"));
        }
        let key =
            sign::decode_api_key(settings.api_key.expose()).map_err(|why| local(format!("pingid.api_key: {why}")))?;
        let (base_url, host) = split_url(&settings.url)?;
        let transport = Transport::new(&TransportOptions {
            base_url: &base_url,
            ca_file: settings.ca_file.as_deref(),
            proxy: settings.proxy.as_deref(),
        })
        .map_err(from_transport)?;
        Ok(PingidClient {
            account_id: settings.account_id.clone(),
            application_id: settings.application_id.clone(),
            token: settings.token.clone(),
            key,
            host,
            pairing_scope: settings.pairing_scope,
            require_response_signature: settings.require_response_signature,
            transport,
        })
    }

    /// The configured default scope of pairing keys.
    pub fn pairing_scope(&self) -> PairingScope {
        self.pairing_scope
    }

    /// `POST /accounts/{a}/users`: creates `username` (no first or last name).
    pub fn create_user(&self, username: &str, deadline: Instant) -> Result<User, PingidError> {
        let username = username_segment(username)?;
        let path = format!("/accounts/{}/users", self.account_id);
        let body = json!({"username": username, "firstName": "", "lastName": ""}).to_string();
        let reply = self.call(Method::Post, &path, &path, None, Some(body.as_bytes()), deadline)?;
        user(&object(&reply.body)?)
    }

    /// `GET /accounts/{a}/applications/{app}/users/{u}?expand=devices`: the user and its devices
    /// of this application, or `None` when the service does not know the user.
    pub fn get_user(&self, username: &str, deadline: Instant) -> Result<Option<User>, PingidError> {
        let path = format!("{}/users/{}", self.app_path(), username_segment(username)?);
        match self.call(Method::Get, &path, &path, Some("expand=devices"), None, deadline) {
            Ok(reply) => {
                let mut user = user(&object(&reply.body)?)?;
                user.devices
                    .retain(|d| d.application_id.as_deref().is_none_or(|a| a == self.application_id));
                Ok(Some(user))
            }
            Err(PingidError::Api(e)) if e.is_not_found("user") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user's devices in this application (empty when the user does not exist).
    pub fn list_devices(&self, username: &str, deadline: Instant) -> Result<Vec<Device>, PingidError> {
        Ok(self
            .get_user(username, deadline)?
            .map(|u| u.devices)
            .unwrap_or_default())
    }

    /// `DELETE /accounts/{a}/users/{u}/devices/{id}`: unpairs one device.
    pub fn delete_device(&self, username: &str, device_id: &str, deadline: Instant) -> Result<(), PingidError> {
        let path = format!(
            "/accounts/{}/users/{}/devices/{}",
            self.account_id,
            username_segment(username)?,
            id_segment("device id", device_id)?
        );
        self.call(Method::Delete, &path, &path, None, None, deadline).map(drop)
    }

    /// Deletes every device of the user in this application; returns how many.
    pub fn delete_devices(&self, username: &str, deadline: Instant) -> Result<usize, PingidError> {
        let devices = self.list_devices(username, deadline)?;
        for device in &devices {
            self.delete_device(username, &device.id, deadline)?;
        }
        Ok(devices.len())
    }

    /// `POST …/pairingkeys` in `scope`, with `pairing_data` stored as is (the CLI puts the user name).
    pub fn create_pairing_key(
        &self,
        pairing_data: &str,
        scope: PairingScope,
        deadline: Instant,
    ) -> Result<PairingKey, PingidError> {
        let path = self.pairing_keys_path(scope);
        let body = json!({ "pairingData": pairing_data }).to_string();
        let reply = self.call(Method::Post, &path, &path, None, Some(body.as_bytes()), deadline)?;
        let o = object(&reply.body)?;
        let status = match field(&o, "status")? {
            "NOT_CLAIMED" => PairingKeyStatus::NotClaimed,
            "USED" => PairingKeyStatus::Used,
            _ => return Err(incoherent("unknown pairing key status")),
        };
        Ok(PairingKey {
            id: id_field(&o, "id")?,
            pairing_data: o
                .get("pairingData")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            status,
        })
    }

    /// `GET …/pairingkeys/{key}` in `scope`: NOT_CLAIMED, USED, or NOT_FOUND in that scope.
    pub fn pairing_key_status(
        &self,
        key: &str,
        scope: PairingScope,
        deadline: Instant,
    ) -> Result<PairingKeyStatus, PingidError> {
        let base = self.pairing_keys_path(scope);
        let path = format!("{base}/{}", id_segment("pairing key", key)?);
        let shown = format!("{base}/<key>");
        match self.call(Method::Get, &path, &shown, None, None, deadline) {
            Ok(reply) => match field(&object(&reply.body)?, "status")? {
                "NOT_CLAIMED" => Ok(PairingKeyStatus::NotClaimed),
                "USED" => Ok(PairingKeyStatus::Used),
                _ => Err(incoherent("unknown pairing key status")),
            },
            Err(PingidError::Api(e)) if e.is_not_found("pairingKey") => Ok(PairingKeyStatus::NotFound {
                message: e.message.clone(),
            }),
            Err(e) => Err(e),
        }
    }

    /// `POST …/users/{u}/authentications`: starts a push to the user's device. `client_context`
    /// is shown by the app (the PAM service's operation id).
    pub fn start_authentication(
        &self,
        username: &str,
        client_context: Option<&str>,
        deadline: Instant,
    ) -> Result<Authentication, PingidError> {
        let path = format!(
            "{}/users/{}/authentications",
            self.app_path(),
            username_segment(username)?
        );
        let mut body = Map::new();
        body.insert("authenticationType".into(), "AUTHENTICATE".into());
        if let Some(context) = client_context {
            body.insert("clientContext".into(), context.into());
        }
        let body = Value::Object(body).to_string();
        let reply = self.call(Method::Post, &path, &path, None, Some(body.as_bytes()), deadline)?;
        authentication(&reply)
    }

    /// `GET …/authentications/{id}`: the current status.
    pub fn authentication_status(
        &self,
        username: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<Authentication, PingidError> {
        let path = self.authentication_path(username, id)?;
        authentication(&self.call(Method::Get, &path, &path, None, None, deadline)?)
    }

    /// `PUT …/authentications/{id}/otp`: the code the user typed; the answer says APPROVED,
    /// INVALID_OTP (may try again), LOCKED, …
    pub fn submit_otp(
        &self,
        username: &str,
        id: &str,
        otp: &str,
        deadline: Instant,
    ) -> Result<Authentication, PingidError> {
        let path = format!("{}/otp", self.authentication_path(username, id)?);
        // Written straight into wiped memory (no JSON value holds a copy); a code is letters and
        // digits, so nothing needs escaping.
        if otp.is_empty() || otp.len() > MAX_OTP_LEN || !otp.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(local(format!(
                "a one-time code is 1 to {MAX_OTP_LEN} letters or digits"
            )));
        }
        let body = Zeroizing::new(format!("{{\"otp\":\"{otp}\"}}"));
        authentication(&self.call(Method::Put, &path, &path, None, Some(body.as_bytes()), deadline)?)
    }

    /// `DELETE …/authentications/{id}`: nobody waits for it any more.
    pub fn cancel_authentication(&self, username: &str, id: &str, deadline: Instant) -> Result<(), PingidError> {
        let path = self.authentication_path(username, id)?;
        self.call(Method::Delete, &path, &path, None, None, deadline).map(drop)
    }

    fn app_path(&self) -> String {
        format!("/accounts/{}/applications/{}", self.account_id, self.application_id)
    }

    fn pairing_keys_path(&self, scope: PairingScope) -> String {
        match scope {
            PairingScope::Application => format!("{}/pairingkeys", self.app_path()),
            PairingScope::Organization => format!("/accounts/{}/pairingkeys", self.account_id),
        }
    }

    fn authentication_path(&self, username: &str, id: &str) -> Result<String, PingidError> {
        Ok(format!(
            "{}/users/{}/authentications/{}",
            self.app_path(),
            username_segment(username)?,
            id_segment("authentication id", id)?
        ))
    }

    /// Signs and sends one request to `/pingid/v1{rel}[?query]`, checks the answer's signature,
    /// and turns a non-2xx answer into its error. `shown` is `rel` as it may appear in logs.
    fn call(
        &self,
        method: Method,
        rel: &str,
        shown: &str,
        query: Option<&str>,
        body: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<Reply, PingidError> {
        let path = format!("{API_PREFIX}{rel}");
        let canonical = Zeroizing::new(sign::canonical_string(
            method.as_str(),
            &self.host,
            &path,
            query,
            body.unwrap_or_default(),
        ));
        let expires = expires_at(SystemTime::now() + JWT_LIFETIME);
        let header = sign::JwtHeader {
            account_id: &self.account_id,
            token: self.token.expose(),
            expires: Some(&expires),
        };
        let authorization = sign::authorization(&self.key, &header, &canonical);
        let headers = [("Authorization", authorization.as_str()), ("Accept", JSON_TYPE)];
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let body = body.map(|bytes| RequestBody {
            content_type: JSON_TYPE,
            bytes,
        });
        log::debug!("pingid: {method} {API_PREFIX}{shown}");
        let wanted = [sign::RESPONSE_SIGNATURE_HEADER, sign::RESPONSE_SIGNATURE_HEADER_SAMPLE];
        let result = self
            .transport
            .send_reading_headers(method, &target, &headers, body, &wanted, deadline)
            .map_err(from_transport)
            .and_then(|(reply, signatures)| {
                self.check_signature(&reply, &signatures)?;
                Ok(reply)
            });
        match &result {
            Ok(reply) => log::debug!("pingid: {method} {API_PREFIX}{shown} -> HTTP {}", reply.status),
            Err(e) => log::debug!("pingid: {method} {API_PREFIX}{shown} failed: {e}"),
        }
        let reply = result?;
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(response::error_from(reply.status, &reply.body))
        }
    }

    /// Every signature header present must verify; none present is accepted unless required (and
    /// then still for a 5xx, see the module documentation).
    fn check_signature(&self, reply: &Reply, signatures: &[(&str, String)]) -> Result<(), PingidError> {
        if signatures.is_empty() {
            if self.require_response_signature && reply.status < 500 {
                return Err(PingidError::BadSignature("the answer is not signed".into()));
            }
            return Ok(());
        }
        for (_, jwt) in signatures {
            sign::verify_response(&self.key, &self.account_id, jwt, &reply.body).map_err(|e| {
                // A wrong api_key shows this way: the service refuses the request (401) and its
                // answer does not verify with the key either. The body cannot be trusted to say so.
                PingidError::BadSignature(if reply.status == 401 {
                    format!("HTTP 401 and {e}: pingid.api_key is probably wrong")
                } else {
                    e.to_string()
                })
            })?;
        }
        Ok(())
    }
}

impl From<PingidError> for ServiceError {
    fn from(e: PingidError) -> ServiceError {
        match e {
            PingidError::Unavailable(why) => ServiceError::Unavailable(why),
            PingidError::BadSignature(why) | PingidError::Local(why) => ServiceError::Misconfigured {
                code: LOCAL_ERROR_CODE,
                message: why,
            },
            PingidError::Api(e) if e.code == ErrorCode::UnauthorizedReq => ServiceError::Misconfigured {
                code: u32::from(e.http_status),
                message: e.to_string(),
            },
            PingidError::Api(e) => ServiceError::Api {
                code: u32::from(e.http_status),
                message: e.to_string(),
            },
        }
    }
}

/// A user name as one path segment. Only ASCII letters, digits and `.` `_` `-` `@` (1 to 100, not
/// `.` or `..`): these need no percent-encoding, so the path the server decodes and the one signed
/// here are the same bytes whichever way the server reads it (reference §1.5). Anything else is
/// refused, never encoded.
pub fn username_segment(username: &str) -> Result<&str, PingidError> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_LEN
        && username != "."
        && username != ".."
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(username)
    } else {
        Err(local(format!(
            "a PingID user name must be 1 to {MAX_USERNAME_LEN} ASCII letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

fn id_segment<'a>(what: &str, id: &'a str) -> Result<&'a str, PingidError> {
    if is_id(id) {
        Ok(id)
    } else {
        Err(local(format!(
            "the {what} is not a plain id (letters, digits, '-', '_')"
        )))
    }
}

/// `scheme://host[:port]` to send to, and the host as signed. The URL's path is dropped: every
/// request goes to [`API_PREFIX`] (the sample's `setPath("/pingid/v1" + path)`).
fn split_url(url: &str) -> Result<(String, String), PingidError> {
    let bad = || local("pingid.url must be http(s)://host[:port][/path] without user or query");
    let uri: ureq::http::Uri = url.trim().parse().map_err(|_| bad())?;
    let scheme = uri
        .scheme_str()
        .filter(|s| *s == "https" || *s == "http")
        .ok_or_else(bad)?;
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') || uri.query().is_some() || authority.host().is_empty() {
        return Err(bad());
    }
    Ok((format!("{scheme}://{authority}"), authority.host().to_string()))
}

/// `yyyy-MM-ddTHH:mm:ssZ` (UTC), the sample's `expires` format.
fn expires_at(when: SystemTime) -> String {
    let secs = when
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut s = crate::service::latch::sign::format_unix_seconds(secs).replacen(' ', "T", 1);
    s.push('Z');
    s
}

fn from_transport(e: ServiceError) -> PingidError {
    match e {
        ServiceError::Misconfigured { message, .. } => PingidError::Local(message),
        ServiceError::Unavailable(why) => PingidError::Unavailable(why),
        other => PingidError::Unavailable(other.to_string()),
    }
}

fn local(message: impl Into<String>) -> PingidError {
    PingidError::Local(message.into())
}

fn user(o: &Map<String, Value>) -> Result<User, PingidError> {
    let status = match field(o, "status")? {
        "ACTIVE" => UserStatus::Active,
        "NOT_ACTIVE" => UserStatus::NotActive,
        "SUSPENDED" => UserStatus::Suspended,
        "BYPASS" => UserStatus::Bypass,
        other => UserStatus::Other(response::clean(other)),
    };
    let devices = match o.get("devices") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(device).collect::<Result<_, _>>()?,
        Some(_) => return Err(incoherent("devices is not a list")),
    };
    Ok(User {
        username: response::clean(field(o, "username")?),
        status,
        devices,
    })
}

fn device(v: &Value) -> Result<Device, PingidError> {
    let o = v.as_object().ok_or_else(|| incoherent("a device is not an object"))?;
    let text = |key: &str| {
        o.get(key)
            .and_then(Value::as_str)
            .map(response::clean)
            .unwrap_or_default()
    };
    Ok(Device {
        id: id_field(o, "id")?,
        device_type: text("deviceType"),
        nickname: text("deviceNickname"),
        role: text("deviceRole"),
        application_id: o.get("applicationId").and_then(Value::as_str).map(response::clean),
    })
}

fn authentication(reply: &Reply) -> Result<Authentication, PingidError> {
    let o = object(&reply.body)?;
    let status = AuthStatus::parse(field(&o, "status")?).ok_or_else(|| incoherent("unknown authentication status"))?;
    let reason = match o.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(match r.as_str() {
            "DENIED_BY_USER" => Reason::DeniedByUser,
            "BLOCKED_BY_USER" => Reason::BlockedByUser,
            "CANCELED_BY_USER" => Reason::CanceledByUser,
            "DEVICE_BLOCKED" => Reason::DeviceBlocked,
            "DEVICE_ROOTED" => Reason::DeviceRooted,
            other => Reason::Other(response::clean(other)),
        }),
        Some(_) => return Err(incoherent("reason is not a string")),
    };
    Ok(Authentication {
        id: id_field(&o, "id")?,
        status,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_sign_unambiguously() {
        for ok in ["alice", "a.b-c_d", "alice@example.com", "A1", &"x".repeat(100)] {
            assert_eq!(username_segment(ok).ok(), Some(ok));
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "a%2F",
            "a?b",
            "a#b",
            "ä",
            "a+b",
            "a:b",
            &"x".repeat(101),
        ] {
            assert!(matches!(username_segment(bad), Err(PingidError::Local(_))), "{bad:?}");
        }
    }

    #[test]
    fn url_keeps_scheme_host_port_and_drops_the_path() {
        assert_eq!(
            split_url(DEFAULT_URL).unwrap(),
            ("https://sdk.pingid.com".to_string(), "sdk.pingid.com".to_string())
        );
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("http://127.0.0.1:8080".to_string(), "127.0.0.1".to_string())
        );
        // IPv6: the host keeps its brackets, as Java's URI.getHost() and a Host header show it.
        assert_eq!(
            split_url("http://[::1]:8080/pingid").unwrap(),
            ("http://[::1]:8080".to_string(), "[::1]".to_string())
        );
        for bad in ["ftp://x", "https://u:p@h/", "https://h/?q=1", "not a url", "/pingid"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clients_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<PingidClient>();
    }

    #[test]
    fn expires_format() {
        assert_eq!(
            expires_at(UNIX_EPOCH + Duration::from_secs(1_764_608_700)),
            "2025-12-01T17:05:00Z"
        );
    }

    fn settings() -> PingidSettings {
        PingidSettings {
            account_id: "acc-1".into(),
            application_id: "app-1".into(),
            token: Secret::new("tok"),
            api_key: Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            url: "http://127.0.0.1:9".into(),
            pairing_scope: PairingScope::Application,
            require_response_signature: false,
            ca_file: None,
            proxy: None,
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(PingidClient::new(&settings()).is_ok());
        let cases: [fn(&mut PingidSettings); 5] = [
            |s| s.account_id = "a/b".into(),
            |s| s.application_id = String::new(),
            |s| s.token = Secret::new(""),
            |s| s.api_key = Secret::new("not base64!"),
            |s| s.url = "ftp://x".into(),
        ];
        for change in cases {
            let mut s = settings();
            change(&mut s);
            assert!(matches!(PingidClient::new(&s), Err(PingidError::Local(_))), "{s:?}");
        }
    }

    #[test]
    fn errors_map_to_what_the_login_acts_on() {
        let api = |code: ErrorCode| {
            PingidError::Api(Box::new(ApiError {
                http_status: 401,
                code,
                message: "m".into(),
                id: "i".into(),
                target: None,
                details: Vec::new(),
            }))
        };
        assert!(matches!(
            ServiceError::from(api(ErrorCode::UnauthorizedReq)),
            ServiceError::Misconfigured { code: 401, .. }
        ));
        assert!(matches!(
            ServiceError::from(api(ErrorCode::NotFound)),
            ServiceError::Api { .. }
        ));
        assert!(matches!(
            ServiceError::from(PingidError::BadSignature("x".into())),
            ServiceError::Misconfigured { .. }
        ));
        assert!(matches!(
            ServiceError::from(PingidError::Unavailable("x".into())),
            ServiceError::Unavailable(_)
        ));
    }
}
