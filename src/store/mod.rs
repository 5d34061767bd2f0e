//! The pairing store: the seed's four facts per local user name (LOCK_ACCOUNT_ID, LOCK_ENABLED,
//! LOCK_TOTP_ENABLED, LOCK_TOTP_ID) plus what local TOTP needs.

#![forbid(unsafe_code)]

pub mod sqlite;

use crate::config::Secret;
use std::fmt;

/// One user's pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// Local user name (the key).
    pub user: String,
    /// LOCK_ACCOUNT_ID: the service's account id.
    pub account_id: String,
    /// LOCK_ENABLED.
    pub enabled: bool,
    /// LOCK_TOTP_ENABLED.
    pub totp_enabled: bool,
    /// LOCK_TOTP_ID: the service's TOTP id (Latch source).
    pub totp_id: Option<String>,
}

/// Local RFC 6238 state of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTotp {
    pub secret: Secret,
    /// The last accepted time step: a code of this step or earlier is refused (replay).
    pub last_step: Option<u64>,
    /// Failures in the current rate-limit window and when that window started (unix seconds).
    pub failures: u32,
    pub window_start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be opened or used (missing file, permissions, database down, corrupt).
    Unavailable(String),
    /// The user is already paired (pair refuses to overwrite).
    AlreadyPaired,
    /// The user has no pairing.
    NotPaired,
    /// A value that cannot be stored (empty or over-long user name, ...).
    Invalid(String),
    /// The store does not exist yet (no `lockserver pair` has run): nobody is paired.
    Missing,
    /// The store's schema is older than this build's: any root `lockserver` command migrates it.
    Outdated { path: String, found: u32, wanted: u32 },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "pairing store unavailable: {why}"),
            StoreError::AlreadyPaired => f.write_str("the user is already paired"),
            StoreError::NotPaired => f.write_str("the user is not paired"),
            StoreError::Invalid(why) => write!(f, "invalid value: {why}"),
            StoreError::Missing => f.write_str("the pairing store does not exist yet (nobody has paired)"),
            StoreError::Outdated { path, found, wanted } => write!(
                f,
                "the pairing store {path} has schema version {found}, older than this build's version \
                 {wanted}: run any `lockserver` command as root (e.g. `lockserver users`) to migrate it"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// Longest local user name the store accepts (Linux allows 32; leave room for LDAP names).
pub const MAX_USER_LEN: usize = 256;

/// The pairing store. Implementations are safe under concurrent logins and concurrent CLI writers.
pub trait PairingStore {
    /// The pairing of `user`, if any.
    fn get(&self, user: &str) -> Result<Option<Pairing>, StoreError>;
    /// Records a new pairing; [`StoreError::AlreadyPaired`] if `user` has one.
    fn insert(&self, pairing: &Pairing) -> Result<(), StoreError>;
    /// Removes the pairing (and every TOTP fact) of `user`; returns what was removed.
    fn remove(&self, user: &str) -> Result<Option<Pairing>, StoreError>;
    /// Every pairing, ordered by user name.
    fn list(&self) -> Result<Vec<Pairing>, StoreError>;
    /// Sets LOCK_TOTP_ENABLED and LOCK_TOTP_ID; [`StoreError::NotPaired`] if `user` has no pairing.
    fn set_totp(&self, user: &str, enabled: bool, totp_id: Option<&str>) -> Result<(), StoreError>;
    /// Local TOTP state of `user`.
    fn local_totp(&self, user: &str) -> Result<Option<LocalTotp>, StoreError>;
    /// Stores (or with `None` clears) the local TOTP state of `user`.
    fn set_local_totp(&self, user: &str, state: Option<&LocalTotp>) -> Result<(), StoreError>;
    /// Atomically records `step` as the last accepted local TOTP step if it is newer than the stored one.
    /// `Ok(false)`: the step was already used (a replay) or the user has no local TOTP.
    fn accept_totp_step(&self, user: &str, step: u64) -> Result<bool, StoreError>;
    /// Atomically counts one failed local code at unix time `now`: a window older than `period_secs` is
    /// restarted at `now` with one failure. Returns the failures in the current window.
    fn record_totp_failure(&self, user: &str, now: u64, period_secs: u64) -> Result<u32, StoreError>;
    /// Sets the failure count of `user` to 0 (a right code ends a run of wrong ones).
    fn clear_totp_failures(&self, user: &str) -> Result<(), StoreError>;
    /// The failures counted in the window still running at `now` (0 when it is older than `period_secs`).
    fn totp_failures(&self, user: &str, now: u64, period_secs: u64) -> Result<u32, StoreError>;
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The CLI: create the store if needed and apply pending migrations.
    Create,
    /// A login: never create or migrate; a missing store is [`StoreError::Missing`], an older schema is
    /// [`StoreError::Outdated`] and a newer one [`StoreError::Unavailable`], each saying what to run.
    Existing,
}

/// Opens the store named by the config's `store` URL, waiting at most 5 s for a busy store.
pub fn open(url: &str, mode: OpenMode) -> Result<Box<dyn PairingStore + Send + Sync>, StoreError> {
    open_with_timeout(url, mode, sqlite::DEFAULT_BUSY_TIMEOUT)
}

/// Opens the store, waiting at most `busy_timeout` whenever another process holds it (a login passes
/// its own budget).
pub fn open_with_timeout(
    url: &str,
    mode: OpenMode,
    busy_timeout: std::time::Duration,
) -> Result<Box<dyn PairingStore + Send + Sync>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open_with_timeout(std::path::Path::new(path), mode, busy_timeout)?;
        return Ok(Box::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Unavailable(
            "PostgreSQL stores are not supported yet: use sqlite:///PATH".into(),
        ));
    }
    Err(StoreError::Unavailable(format!("unknown store URL scheme in {url:?}")))
}

/// Checks a user name before it reaches a store.
pub fn check_user(user: &str) -> Result<(), StoreError> {
    if user.is_empty() || user.len() > MAX_USER_LEN || user.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "user name must be 1-256 printable characters".into(),
        ));
    }
    Ok(())
}
