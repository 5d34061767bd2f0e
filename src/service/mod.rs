//! One trait for "a lock server", one module per service.
//!
//! The login decision ([`crate::login`]) only sees [`LockService`]: Latch answers a status with an
//! optional one-time token that is compared locally, PingID (later) with a push approval or a code that
//! the service itself verifies — both fit [`Access`] and [`Challenge`].

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

/// Why a service call did not give an answer. The variant decides what the login does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// Unreachable, timed out, HTTP error, unparsable answer: `fail_mode` decides.
    Unavailable(String),
    /// The answer proves this host is misconfigured (bad app id or signature, clock off, unknown
    /// operation): always deny, log loudly.
    Misconfigured { code: u32, message: String },
    /// The service says the account is not paired (Latch 201).
    NotPaired,
    /// Any other error the service reported for this request (e.g. 206 code expired, 306 invalid code).
    Api { code: u32, message: String },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Unavailable(why) => write!(f, "service unavailable: {why}"),
            ServiceError::Misconfigured { code, message } => {
                write!(f, "service rejects this host's configuration: {code} {message}")
            }
            ServiceError::NotPaired => f.write_str("the service says the account is not paired"),
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
    fn verify_remote(&self, _session: &str, _code: &str, _deadline: Instant) -> Result<bool, ServiceError> {
        Err(ServiceError::Unavailable(
            "this service has no remote code check".into(),
        ))
    }

    /// Pairs with the code from the phone app; returns the service's account id.
    fn pair(&self, code: &str, common_name: Option<&str>, deadline: Instant) -> Result<String, ServiceError>;

    /// Unpairs the account at the service.
    fn unpair(&self, account: &str, deadline: Instant) -> Result<(), ServiceError>;

    /// Creates a TOTP at the service for `user_id`.
    fn totp_create(&self, user_id: &str, common_name: &str, deadline: Instant) -> Result<TotpEnrolment, ServiceError>;

    /// Validates a TOTP code: `Ok(true)` valid, `Ok(false)` the service says invalid (Latch 306).
    fn totp_validate(&self, totp_id: &str, code: &str, deadline: Instant) -> Result<bool, ServiceError>;

    /// Deletes a TOTP at the service.
    fn totp_delete(&self, totp_id: &str, deadline: Instant) -> Result<(), ServiceError>;
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
