//! One trait for "a lock server", one module per service.
//!
//! The login decision ([`crate::login`]) only sees [`LockService`]: Latch answers a status with an
//! optional one-time token that is compared locally, PingID (later) with a push approval or a code that
//! the service itself verifies — both fit [`Access`] and [`Challenge`].
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

use crate::config::Secret;
use std::fmt;
use std::time::Instant;

/// The lock's answer for one account (and operation).
#[derive(Debug)]
pub enum Access {
    /// The latch is open: the login may go on.
    Open,
    /// The latch is open, but the service asks for a one-time code before the login goes on.
    CodeRequired(Challenge),
    /// The latch is closed.
    Locked,
}

/// A one-time code the user must type.
#[derive(Debug)]
pub enum Challenge {
    /// Latch `two_factor.token`: sent to the user's phone, compared here in constant time.
    LocalToken(Secret),
    /// A code the service verifies itself (PingID OTP), identified by the service's session id.
    Remote(String),
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
    /// account phase and CLI status checks cannot ask the user for one.
    fn status(
        &self,
        account: &str,
        operation: Option<&str>,
        want_code: bool,
        deadline: Instant,
    ) -> Result<Access, ServiceError>;

    /// Verifies a code for a [`Challenge::Remote`]. Services without remote challenges never get here.
    fn verify_remote(&self, _session: &str, _code: &str, _deadline: Instant) -> Result<CodeCheck, ServiceError> {
        Err(ServiceError::Unavailable(
            "this service has no remote code check".into(),
        ))
    }

    /// Pairs with the code from the phone app; returns the service's account id.
    fn pair(&self, code: &str, common_name: Option<&str>, deadline: Instant) -> Result<String, ServiceError>;

    /// Unpairs the account at the service ([`ServiceError::NotPaired`] if it has no such pairing).
    fn unpair(&self, account: &str, deadline: Instant) -> Result<(), ServiceError>;

    /// Creates a TOTP at the service for `user_id`.
    fn totp_create(&self, user_id: &str, common_name: &str, deadline: Instant) -> Result<TotpEnrolment, ServiceError>;

    /// Validates a TOTP code at the service.
    fn totp_validate(&self, totp_id: &str, code: &str, deadline: Instant) -> Result<CodeCheck, ServiceError>;

    /// The refusal this service gives a wrong code, for a code refused before it reaches the service
    /// (not 6-8 digits): the user then reads the same text as for a code the service refused.
    fn wrong_code(&self) -> Refusal;

    /// Deletes a TOTP at the service; a TOTP the service no longer has is [`Removal::AlreadyGone`].
    fn totp_delete(&self, totp_id: &str, deadline: Instant) -> Result<Removal, ServiceError>;

    /// Every operation id the service knows for this application (sub-operations included), for
    /// `check-config`; `None` for a service without operations.
    fn operation_ids(&self, _deadline: Instant) -> Result<Option<Vec<String>>, ServiceError> {
        Ok(None)
    }
}

/// A lock service that may be shared between threads (the C API's handles do).
pub type SharedService = Box<dyn LockService + Send + Sync>;

/// Builds the client of the service the config names.
pub fn from_config(config: &crate::config::Config) -> Result<SharedService, ServiceError> {
    match (config.service, &config.latch) {
        (crate::config::ServiceKind::Latch, Some(latch)) => Ok(Box::new(latch::LatchClient::new(latch)?)),
        (crate::config::ServiceKind::Latch, None) => {
            Err(ServiceError::Unavailable("the config has no [latch] section".into()))
        }
        (crate::config::ServiceKind::Pingid, _) => Err(ServiceError::Unavailable(
            "the PingID service is not available in this build yet".into(),
        )),
    }
}
