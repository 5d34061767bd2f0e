//! One trait for "a lock server", one module per service.
//!
//! The login decision ([`crate::login`]) only sees [`LockService`]: Latch answers a status with an
//! optional one-time token that is compared locally; PingID with a push the person answers on the phone
//! ([`Access::Pending`], polled through [`Approval`]) or a code the service itself verifies
//! ([`Challenge::Remote`]). Pairing comes in two shapes ([`PairingFlow`]): the user types a code from the
//! app (Latch), or the host makes a key the user enters in the app (PingID). A TOTP API at the service is
//! a capability of its own ([`LockService::totp`]), so no service carries methods it cannot answer.
//!
//! A service's own error numbers are read in its module only. Callers see typed outcomes
//! ([`CodeCheck`], [`Removal`], [`ServiceError`]); where a user's text is chosen by the service's code
//! (the dictionary's `pairerrorNNN` / `validateerrorNNN` keys) or a C caller is given it
//! (`lockserver_last_error_code`), the code travels in a [`Refusal`] and is passed on, never matched.

#![forbid(unsafe_code)]

pub mod http;
pub mod json;
pub mod latch;
pub mod pingid;
pub mod tls;

use crate::config::Secret;
use std::fmt;
use std::time::{Duration, Instant};

/// A text for the user, named by its key in the service's section of the dictionary (`[lock]` for
/// Latch, `[pingid]` for PingID). The service picks the key; the login looks it up and shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text(pub &'static str);

/// The lock's answer for one account (and operation).
pub enum Access<'s> {
    /// The latch is open (or the person approved): the login may go on.
    Open,
    /// The service asks for a one-time code before the login goes on.
    CodeRequired(Challenge<'s>),
    /// The lock is closed (Latch `off`, PingID `LOCKED`): the dictionary's `locked` text.
    Locked,
    /// The person or their device said no (PingID REJECTED, TIMEOUT, ...), with the text to show.
    Refused(Text),
    /// The service asked the person (a push to the phone); the answer comes later.
    Pending(Box<dyn Approval + 's>),
}

impl fmt::Debug for Access<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Open => f.write_str("Open"),
            Access::CodeRequired(c) => f.debug_tuple("CodeRequired").field(c).finish(),
            Access::Locked => f.write_str("Locked"),
            Access::Refused(t) => f.debug_tuple("Refused").field(t).finish(),
            Access::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// A question put to the person (a push): polled until they answer or the wait is over.
pub trait Approval {
    /// Asks once; `Ok(None)` while the person has not answered.
    fn poll(&self, deadline: Instant) -> Result<Option<Access<'_>>, ServiceError>;
    /// Nobody waits any more (the wait is over): withdraws the question. Best effort.
    fn cancel(&self, deadline: Instant);
    /// How long the login waits for the person (PingID `push_timeout_secs`).
    fn patience(&self) -> Duration;
    /// The pause between two polls (PingID `poll_interval_ms`).
    fn interval(&self) -> Duration;
}

/// A one-time code the user must type.
pub enum Challenge<'s> {
    /// Latch `two_factor.token`: sent to the user's phone, compared here in constant time.
    LocalToken(Secret),
    /// A code the service verifies itself (PingID OTP).
    Remote(Box<dyn RemoteCode + 's>),
}

impl fmt::Debug for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Challenge::LocalToken(_) => f.write_str("LocalToken(***)"),
            Challenge::Remote(_) => f.write_str("Remote(..)"),
        }
    }
}

/// A code check done by the service, for one challenge.
pub trait RemoteCode {
    /// Sends the code the user typed.
    fn verify(&self, code: &str, deadline: Instant) -> Result<CodeAnswer, ServiceError>;
}

/// The service's answer to a code of a [`Challenge::Remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeAnswer {
    Valid,
    /// Wrong; the user may try again while the login has attempts left.
    TryAgain(Text),
    /// No more codes for this login (locked, blocked): no retry helps.
    Refused(Text),
}

/// What a service said when it refused a request: its own code and text (already cleaned for a log
/// line). Passed on for the user's text and the C API; only the service module interprets `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u32,
    pub message: String,
}

/// The answer to a one-time code (a TOTP at the service, or a [`Challenge::Remote`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    Valid,
    /// A wrong code (Latch 306); the user may try again while the login has attempts left.
    Invalid(Refusal),
    /// The service takes no more codes for now (e.g. too many wrong ones): no retry helps.
    Locked(Refusal),
}

/// The answer to a TOTP delete. Both mean the TOTP is gone, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// The service had no such TOTP any more (e.g. deleted by an earlier call).
    AlreadyGone,
}

/// Why a service call did not give an answer. The variant decides what the login does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// Unreachable, timed out, HTTP error, unparsable answer: `fail_mode` decides.
    Unavailable(String),
    /// The answer proves this host is misconfigured (bad app id or signature, clock off, unknown
    /// operation): always deny, log loudly.
    Misconfigured { code: u32, message: String },
    /// The service says the account is not paired (Latch 201); `code` is the service's number for it.
    NotPaired { code: u32 },
    /// Any other refusal of this request (e.g. Latch 206 pairing code expired or not found).
    Api { code: u32, message: String },
}

impl ServiceError {
    /// The service's own error number, 0 when the failure had none (an outage, a local check).
    pub fn service_code(&self) -> u32 {
        match self {
            ServiceError::Unavailable(_) => 0,
            ServiceError::Misconfigured { code, .. }
            | ServiceError::NotPaired { code }
            | ServiceError::Api { code, .. } => *code,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Unavailable(why) => write!(f, "service unavailable: {why}"),
            ServiceError::Misconfigured { code, message } => {
                write!(f, "service rejects this host's configuration: {code} {message}")
            }
            ServiceError::NotPaired { .. } => f.write_str("the service says the account is not paired"),
            ServiceError::Api { code, message } => write!(f, "service error {code}: {message}"),
        }
    }
}

impl std::error::Error for ServiceError {}

/// A TOTP created at the service.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    pub totp_id: String,
    /// A data URI of a QR image, a URL, or an otpauth URI (as the service gives it).
    pub qr: String,
}

/// A lock server. Every call gets the deadline of the whole login (or CLI command) and must return by it.
pub trait LockService {
    /// The lock status of `account`, application-wide (`operation = None`) or for one operation id.
    /// With `want_code = false` the service must not issue a one-time code (Latch `/nootp`): the PAM
    /// account phase and CLI status checks cannot ask the user for one. A service that asks the
    /// person (PingID) answers [`Access::Pending`].
    fn status(
        &self,
        account: &str,
        operation: Option<&str>,
        want_code: bool,
        deadline: Instant,
    ) -> Result<Access<'_>, ServiceError>;

    /// Unpairs the account at the service ([`ServiceError::NotPaired`] if it has no such pairing).
    fn unpair(&self, account: &str, deadline: Instant) -> Result<(), ServiceError>;

    /// How a user pairs with this service.
    fn pairing(&self) -> PairingFlow<'_>;

    /// The service's TOTP API, when it has one (Latch).
    fn totp(&self) -> Option<&dyn ServiceTotp>;

    /// Every operation id the service knows for this application (sub-operations included), for
    /// `check-config`; `None` for a service without operations.
    fn operation_ids(&self, _deadline: Instant) -> Result<Option<Vec<String>>, ServiceError> {
        Ok(None)
    }
}

/// The two ways a pairing starts.
pub enum PairingFlow<'s> {
    /// The user reads a code in the phone app and the host sends it (Latch).
    Code(&'s dyn CodePairing),
    /// The host makes a pairing key for a user, the user enters it in the app, and the host then
    /// sees the claim (PingID).
    HostKey(&'s dyn KeyPairing),
}

/// Pairing with a code from the phone app.
pub trait CodePairing {
    /// Pairs with the code; returns the service's account id.
    fn pair(&self, code: &str, common_name: Option<&str>, deadline: Instant) -> Result<String, ServiceError>;
}

/// A pairing key as made for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingKey {
    /// What the user enters in the app (also drawn as a QR code).
    pub key: String,
    /// The service's account id the user will have once the key is claimed.
    pub account_id: String,
}

/// What the service says of a pairing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    NotClaimed,
    Used,
    /// Unknown in the scope asked, with the service's message.
    NotFound {
        message: String,
    },
}

/// A paired device, as shown to an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub kind: String,
    pub nickname: String,
}

/// Whether a user has claimed a key: the devices paired in this application (none yet: not claimed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whether the service counts the user as paired (PingID `ACTIVE` with a device here).
    pub active: bool,
    pub devices: Vec<DeviceInfo>,
}

/// Host-initiated pairing.
pub trait KeyPairing {
    /// Makes a pairing key for `user` (creating the user at the service when needed), in `scope`
    /// or the configured one.
    fn create_key(
        &self,
        user: &str,
        scope: Option<crate::config::PairingScope>,
        deadline: Instant,
    ) -> Result<PairingKey, ServiceError>;

    /// The status of a key in `scope` (or the configured one).
    fn key_status(
        &self,
        key: &str,
        scope: Option<crate::config::PairingScope>,
        deadline: Instant,
    ) -> Result<KeyStatus, ServiceError>;

    /// Whether the service's account `account` has paired a device in this application.
    fn claim(&self, account: &str, deadline: Instant) -> Result<Claim, ServiceError>;
}

/// A TOTP API at the service (Latch `totps`).
pub trait ServiceTotp {
    /// Creates a TOTP at the service for `user_id`.
    fn totp_create(&self, user_id: &str, common_name: &str, deadline: Instant) -> Result<TotpEnrolment, ServiceError>;

    /// Validates a TOTP code at the service.
    fn totp_validate(&self, totp_id: &str, code: &str, deadline: Instant) -> Result<CodeCheck, ServiceError>;

    /// The refusal this service gives a wrong code, for a code refused before it reaches the service
    /// (not 6-8 digits): the user then reads the same text as for a code the service refused.
    fn wrong_code(&self) -> Refusal;

    /// Deletes a TOTP at the service; a TOTP the service no longer has is [`Removal::AlreadyGone`].
    fn totp_delete(&self, totp_id: &str, deadline: Instant) -> Result<Removal, ServiceError>;
}

/// The service's TOTP API, or the misconfiguration of asking a service that has none.
pub fn totp_api(service: &dyn LockService) -> Result<&dyn ServiceTotp, ServiceError> {
    service.totp().ok_or_else(|| ServiceError::Misconfigured {
        code: http::LOCAL_ERROR_CODE,
        message: "this service has no TOTP API: use [totp] source = \"local\"".into(),
    })
}

/// Code pairing, or the misconfiguration of asking a service that pairs otherwise.
pub fn code_pairing(service: &dyn LockService) -> Result<&dyn CodePairing, ServiceError> {
    match service.pairing() {
        PairingFlow::Code(p) => Ok(p),
        PairingFlow::HostKey(_) => Err(ServiceError::Misconfigured {
            code: http::LOCAL_ERROR_CODE,
            message: "this service pairs with a key the host makes (`lockserver pairing-key create`), not a code"
                .into(),
        }),
    }
}

/// Key pairing, or the misconfiguration of asking a service that pairs with a code.
pub fn key_pairing(service: &dyn LockService) -> Result<&dyn KeyPairing, ServiceError> {
    match service.pairing() {
        PairingFlow::HostKey(p) => Ok(p),
        PairingFlow::Code(_) => Err(ServiceError::Misconfigured {
            code: http::LOCAL_ERROR_CODE,
            message: "this service pairs with a code from the phone app (`lockserver pair CODE`), not a key".into(),
        }),
    }
}

/// A lock service that may be shared between threads (the C API's handles do).
pub type SharedService = Box<dyn LockService + Send + Sync>;

/// Builds the client of the service the config names.
pub fn from_config(config: &crate::config::Config) -> Result<SharedService, ServiceError> {
    use crate::config::ServiceKind;
    match config.service {
        ServiceKind::Latch => match &config.latch {
            Some(latch) => Ok(Box::new(latch::LatchClient::new(latch)?)),
            None => Err(ServiceError::Unavailable("the config has no [latch] section".into())),
        },
        ServiceKind::Pingid => match &config.pingid {
            Some(p) => Ok(Box::new(pingid::PingidLock::new(p)?)),
            None => Err(ServiceError::Unavailable("the config has no [pingid] section".into())),
        },
    }
}
