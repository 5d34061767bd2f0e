//! The pairing store: the seed's four facts per local user name (LOCK_ACCOUNT_ID, LOCK_ENABLED,
//! LOCK_TOTP_ENABLED, LOCK_TOTP_ID) plus what local TOTP needs.

#![forbid(unsafe_code)]

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use crate::config::Secret;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// A pairing the host started and the user has not finished (PingID: a pairing key made, not yet
/// claimed in the app). A pending user is not paired: logins treat them as unpaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPairing {
    pub user: String,
    /// The service's account id the pairing will have (PingID: the user name there).
    pub account_id: String,
    /// What the user was given to enter in the app.
    pub key: String,
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
    /// The store's schema is older than this build's: `lockserver migrate` migrates it.
    Outdated { path: String, found: u32, wanted: u32 },
    /// A networked store could not be reached (refused, timed out, TLS or login failed on the way) within
    /// the deadline: `store_fail_mode` decides the login. An error the database answers is `Unavailable`.
    Unreachable(String),
    /// [`PairingStore::import`] without `replace` into a store that already holds pairings.
    NotEmpty { pairings: usize },
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
                 {wanted}: run `lockserver migrate` as root to migrate it"
            ),
            StoreError::Unreachable(why) => write!(f, "pairing store unreachable: {why}"),
            StoreError::NotEmpty { pairings } => write!(f, "the target store already holds {pairings} pairings"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Everything a store holds about one user (every column of its row): what `lockserver store copy`
/// moves from one store to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pairing: Pairing,
    /// The local TOTP secret (base32), if local TOTP is enrolled.
    pub totp_secret: Option<Secret>,
    pub totp_last_step: Option<u64>,
    pub totp_failures: u32,
    pub totp_window_start: u64,
    /// When the row was made and last changed (unix seconds).
    pub created: u64,
    pub updated: u64,
}

/// Everything a store holds: what `lockserver store copy` moves, in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The pairings, ordered by user name.
    pub records: Vec<Record>,
    /// The pairings a host started and the user has not finished, ordered by user name.
    pub pending: Vec<PendingPairing>,
}

impl Snapshot {
    /// How many users it holds, paired or pending.
    pub fn users(&self) -> usize {
        self.records.len() + self.pending.len()
    }

    /// The checks every write makes, for every record; a user named twice (paired twice, pending twice,
    /// or both) is refused.
    pub fn check(&self) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::new();
        for r in &self.records {
            check_user(&r.pairing.user)?;
            check_value("account id", &r.pairing.account_id)?;
            if let Some(id) = &r.pairing.totp_id {
                check_value("TOTP id", id)?;
            }
            if let Some(secret) = &r.totp_secret {
                check_value("TOTP secret", secret.expose())?;
            }
            if !seen.insert(r.pairing.user.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "the user {} appears twice",
                    r.pairing.user
                )));
            }
        }
        for p in &self.pending {
            check_user(&p.user)?;
            check_value("account id", &p.account_id)?;
            check_value("pairing key", &p.key)?;
            if !seen.insert(p.user.as_str()) {
                return Err(StoreError::Invalid(format!("the user {} appears twice", p.user)));
            }
        }
        Ok(())
    }
}

/// Longest value (account id, TOTP id or secret, pairing key) the store accepts.
pub const MAX_VALUE_LEN: usize = 1024;

/// A value the store accepts: 1–[`MAX_VALUE_LEN`] bytes, no control character.
pub fn check_value(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1-{MAX_VALUE_LEN} printable characters"
        )));
    }
    Ok(())
}

/// Longest local user name the store accepts (Linux allows 32; leave room for LDAP names).
pub const MAX_USER_LEN: usize = 256;

/// The pairing store. Implementations are safe under concurrent logins and concurrent CLI writers.
///
/// Every call gets a deadline (a login passes what is left of its `timeout_ms` budget): waiting for a
/// lock, connecting and each query end by then, with [`StoreError::Unavailable`] ("store busy") for a
/// local store or [`StoreError::Unreachable`] for a networked one. A deadline already past fails at once.
pub trait PairingStore {
    /// The pairing of `user`, if any.
    fn get(&self, user: &str, deadline: Instant) -> Result<Option<Pairing>, StoreError>;
    /// Records a new pairing; [`StoreError::AlreadyPaired`] if `user` has one. A pending pairing of
    /// `user` is removed in the same statement or transaction (it is complete now).
    fn insert(&self, pairing: &Pairing, deadline: Instant) -> Result<(), StoreError>;
    /// Removes the pairing (and every TOTP fact) of `user`, and a pending one; returns the pairing
    /// that was removed.
    fn remove(&self, user: &str, deadline: Instant) -> Result<Option<Pairing>, StoreError>;
    /// Records (or replaces) the pending pairing of a user; [`StoreError::AlreadyPaired`] if the
    /// user is paired.
    fn set_pending(&self, pending: &PendingPairing, deadline: Instant) -> Result<(), StoreError>;
    /// The pending pairing of `user`, if any.
    fn pending(&self, user: &str, deadline: Instant) -> Result<Option<PendingPairing>, StoreError>;
    /// Every pairing, ordered by user name.
    fn list(&self, deadline: Instant) -> Result<Vec<Pairing>, StoreError>;
    /// Sets LOCK_TOTP_ENABLED and LOCK_TOTP_ID; [`StoreError::NotPaired`] if `user` has no pairing.
    fn set_totp(&self, user: &str, enabled: bool, totp_id: Option<&str>, deadline: Instant) -> Result<(), StoreError>;
    /// Local TOTP state of `user`.
    fn local_totp(&self, user: &str, deadline: Instant) -> Result<Option<LocalTotp>, StoreError>;
    /// Stores (or with `None` clears) the local TOTP state of `user`.
    fn set_local_totp(&self, user: &str, state: Option<&LocalTotp>, deadline: Instant) -> Result<(), StoreError>;
    /// Atomically records `step` as the last accepted local TOTP step if it is newer than the stored one.
    /// `Ok(false)`: the step was already used (a replay) or the user has no local TOTP.
    fn accept_totp_step(&self, user: &str, step: u64, deadline: Instant) -> Result<bool, StoreError>;
    /// Atomically counts one failed local code at unix time `now`: a window older than `period_secs` is
    /// restarted at `now` with one failure. Returns the failures in the current window.
    fn record_totp_failure(&self, user: &str, now: u64, period_secs: u64, deadline: Instant)
    -> Result<u32, StoreError>;
    /// Sets the failure count of `user` to 0 (a right code ends a run of wrong ones).
    fn clear_totp_failures(&self, user: &str, deadline: Instant) -> Result<(), StoreError>;
    /// The failures counted in the window still running at `now` (0 when it is older than `period_secs`).
    fn totp_failures(&self, user: &str, now: u64, period_secs: u64, deadline: Instant) -> Result<u32, StoreError>;
    /// The schema version the store is at (the number of migrations applied).
    fn schema_version(&self, deadline: Instant) -> Result<u32, StoreError>;
    /// Applies the pending migrations (the CLI only, never a login); returns the versions before and after.
    fn migrate(&self, deadline: Instant) -> Result<Migrated, StoreError>;
    /// Every pairing and pending pairing, read in one snapshot.
    fn export(&self, deadline: Instant) -> Result<Snapshot, StoreError>;
    /// Writes `snapshot` in one transaction: all or nothing. A store that holds pairings (or pending
    /// ones) is refused with [`StoreError::NotEmpty`] unless `replace`, which first removes them all.
    /// The CLI only: the handle must not be used by another thread meanwhile.
    fn import(&self, snapshot: &Snapshot, replace: bool, deadline: Instant) -> Result<(), StoreError>;
}

/// What [`PairingStore::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: u32,
    pub to: u32,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The CLI: create the store if needed and apply pending migrations.
    Create,
    /// `lockserver migrate`: like `Create`, but the caller runs [`PairingStore::migrate`] and reports it.
    Migrate,
    /// A login: never create or migrate; a missing store is [`StoreError::Missing`], an older schema is
    /// [`StoreError::Outdated`] and a newer one [`StoreError::Unavailable`], each saying what to run.
    Existing,
}

/// How long a CLI or C API store call may take when no login budget applies.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The deadline of a CLI or C API store call: [`DEFAULT_TIMEOUT`] from now.
pub fn default_deadline() -> Instant {
    Instant::now() + DEFAULT_TIMEOUT
}

/// Where the store is and how to reach it: the config's `store`, `store_password_file` (read) and
/// `store_ca_file`.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub url: &'a str,
    /// The PostgreSQL password (never in the URL).
    pub password: Option<&'a Secret>,
    /// Extra trusted CA certificates (PEM) for PostgreSQL TLS, beside the system trust store.
    pub ca_file: Option<&'a Path>,
}

impl<'a> Location<'a> {
    /// A store given by its URL alone (SQLite, or PostgreSQL without password or extra CA).
    pub fn url(url: &'a str) -> Location<'a> {
        Location {
            url,
            password: None,
            ca_file: None,
        }
    }

    /// The store the config names.
    pub fn of(config: &'a crate::config::Config) -> Location<'a> {
        Location {
            url: &config.store,
            password: config.store_password.as_ref(),
            ca_file: config.store_ca_file.as_deref(),
        }
    }

    /// Whether this is a networked (PostgreSQL) store, to which `store_fail_mode` applies.
    pub fn is_networked(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

/// Opens the store at `url` for the CLI or a test, with [`DEFAULT_TIMEOUT`] to open.
pub fn open(url: &str, mode: OpenMode) -> Result<Box<dyn PairingStore + Send + Sync>, StoreError> {
    open_at(&Location::url(url), mode, default_deadline())
}

/// Opens the store; opening (connecting, checking the schema, and for [`OpenMode::Create`] migrating)
/// ends by `deadline`.
pub fn open_at(
    location: &Location<'_>,
    mode: OpenMode,
    deadline: Instant,
) -> Result<Box<dyn PairingStore + Send + Sync>, StoreError> {
    if let Some(path) = location.url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open_at(Path::new(path), mode, deadline)?;
        return Ok(Box::new(store));
    }
    if location.is_networked() {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(postgres::PostgresStore::open(location, mode, deadline)?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Unavailable(
            "PostgreSQL stores are not supported yet: use sqlite:///PATH".into(),
        ));
    }
    Err(StoreError::Unavailable(format!(
        "unknown store URL scheme in {:?}",
        redact(location.url)
    )))
}

/// The schema version opening a store at `location` for a login accepts: this build's.
pub fn wanted_schema_version(location: &Location<'_>) -> u32 {
    #[cfg(feature = "postgres")]
    if location.is_networked() {
        return postgres::SCHEMA_VERSION;
    }
    #[cfg(not(feature = "postgres"))]
    let _ = location; // (without the feature a networked store cannot be opened at all)
    sqlite::SCHEMA_VERSION
}

/// Applies the pending schema migrations of the store (`lockserver migrate`); creates a SQLite store
/// that does not exist yet.
pub fn migrate(location: &Location<'_>, deadline: Instant) -> Result<Migrated, StoreError> {
    let store = open_at(location, OpenMode::Migrate, deadline)?;
    store.migrate(deadline)
}

/// The URL without a password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// What is left until `deadline`, or a "time is up" error naming `what`.
pub(crate) fn remaining(deadline: Instant, what: &str) -> Result<Duration, StoreError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StoreError::Unavailable(format!(
            "store busy: the time budget was spent before {what}"
        )));
    }
    Ok(left)
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
