//! What one PAM transaction built and the next may reuse, in a process that runs many (a daemon that
//! authenticates with PAM, a C program linking the module): the parsed config and dictionary, the
//! opened store and the service client with its kept-alive connection. sshd forks a fresh process per
//! connection and never gets a second transaction; the module is linked `-z nodelete`, so this outlives
//! `pam_end`.
//!
//! Each reuse is re-earned every transaction, and everything that decides a login is read again:
//! - the config is read through one descriptor with every check [`Config::load`] makes, and its
//!   bytes (not its mtime: two same-size edits within one timestamp tick must not be missed) and the
//!   bytes of every file it names (secret files, CA files, the dictionary, after the same permission
//!   checks) must equal those the cached config was built from, or everything is rebuilt;
//! - a SQLite store must still be the same file at its path (dev/ino: a store replaced by rename is a
//!   new store), pass the permission checks its open made (a chmod-ed store is refused as at open), and
//!   be at this build's schema version (which also proves a PostgreSQL connection alive);
//! - a store or service that failed (unavailable, unreachable) is dropped, so the next transaction
//!   opens afresh;
//! - lock status, pairings and codes are never cached: each login asks the store and the service.
//!
//! Fork: a child shares its parent's sockets, SQLite descriptors and locks. A process whose pid differs
//! from the one that filled the cache neither uses nor closes (drops) what it inherited: it forgets it
//! and starts empty. Threads: one mutex; a thread that finds it held (another login is running) works
//! with fresh resources of its own instead of waiting, and a poisoned lock counts as empty.

#![forbid(unsafe_code)]

use crate::config::{Config, ConfigError, ConfigFile, LoadOptions};
use crate::dictionary::Dictionary;
use crate::service::{
    Access, Approval, Challenge, CodeAnswer, CodeCheck, LockService, PairingFlow, Refusal, RemoteCode, Removal,
    ServiceError, ServiceTotp, SharedService, TotpEnrolment,
};
use crate::store::{
    self, LocalTotp, Location, Migrated, OpenMode, Pairing, PairingStore, PendingPairing, Snapshot, StoreError,
};
use std::cell::Cell;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

static CACHE: Mutex<Cache> = Mutex::new(Cache { pid: 0, entry: None });

pub struct Cache {
    /// The process that filled `entry`.
    pid: u32,
    entry: Option<Entry>,
}

/// Where this transaction's resources live: in the process-wide cache (locked for the transaction),
/// or, when another thread holds it, in a private slot dropped at the end.
pub enum Slot {
    Shared(MutexGuard<'static, Cache>),
    Private(Box<Option<Entry>>),
}

/// The cache for this transaction; never waits.
pub fn slot() -> Slot {
    let mut guard = match CACHE.try_lock() {
        Ok(guard) => guard,
        // Another thread is mid-login: waiting could take its whole budget (a PingID push waits for a
        // person), so this login builds its own.
        Err(TryLockError::WouldBlock) => return Slot::Private(Box::new(None)),
        // A login panicked while holding it (caught at the boundary): what it left may be half made.
        // Not dropped either (a destructor over half-made state could panic again): forgotten.
        Err(TryLockError::Poisoned(poisoned)) => {
            CACHE.clear_poison();
            let mut guard = poisoned.into_inner();
            std::mem::forget(guard.entry.take());
            guard
        }
    };
    let pid = std::process::id();
    if guard.pid != pid {
        // A fork of the process that filled it (or the first use): the sockets and SQLite handles are
        // the parent's too. Using them would mix both processes' traffic on one connection; closing them
        // (a TLS close_notify, a SQLite close that may checkpoint) would act for the parent.
        std::mem::forget(guard.entry.take());
        guard.pid = pid;
    }
    Slot::Shared(guard)
}

impl Slot {
    fn entry(&mut self) -> &mut Option<Entry> {
        match self {
            Slot::Shared(cache) => &mut cache.entry,
            Slot::Private(entry) => entry,
        }
    }
}

/// A config that cannot be used, as the log line should name it.
pub enum LoadError {
    Config(ConfigError),
    Dictionary(String),
}

/// What one transaction built, kept for the next.
pub struct Entry {
    path: PathBuf,
    options: LoadOptions,
    /// The bytes of the config and of each of `config.files`, in order, that `config` was built from.
    source: Vec<Zeroizing<Vec<u8>>>,
    pub config: Config,
    pub dictionary: Dictionary,
    pub store: Option<CachedStore>,
    pub service: Option<WatchedService>,
}

/// The config at `path` and its dictionary: the cached ones when every byte they came from is
/// unchanged, else loaded afresh (dropping the store and service built for the old config).
pub fn load<'s>(slot: &'s mut Slot, path: &Path, options: LoadOptions) -> Result<&'s mut Entry, LoadError> {
    let file = ConfigFile::read(path, options).map_err(LoadError::Config)?;
    let entry = slot.entry();
    // Taken out: kept only if still current, else dropped (with the store and service it holds).
    if let Some(old) = entry.take()
        && old.path == path
        && old.options == options
        && old.source_is(&file)
    {
        // The same bytes parse to the same config, but the file's owner and mode are judged now: a
        // config chmod-ed readable by others since is refused as `Config::load` refuses it.
        file.check_owner_and_mode(old.config.holds_inline_secrets)
            .map_err(LoadError::Config)?;
        return Ok(entry.insert(old));
    }
    let config = file.parse().map_err(LoadError::Config)?;
    let dictionary = Dictionary::for_config(&config, options.trusted_owner).map_err(LoadError::Dictionary)?;
    // The files are read again after the load: if one changed in between, the next transaction sees
    // bytes that differ from these only if it changes again, and then loads afresh. (Only root, or the
    // trusted owner, can write them: the permission checks refuse any other.)
    let inputs: Option<Vec<_>> = config
        .files
        .iter()
        .map(|input| read_input(&input.path, input.holds_secrets, options))
        .collect();
    // A file unreadable now (it was read a moment ago): this config serves this transaction only.
    let source = match inputs {
        Some(inputs) => std::iter::once(Zeroizing::new(file.bytes().to_vec()))
            .chain(inputs)
            .collect(),
        None => Vec::new(),
    };
    Ok(entry.insert(Entry {
        path: path.to_path_buf(),
        options,
        source,
        config,
        dictionary,
        store: None,
        service: None,
    }))
}

impl Entry {
    /// Whether `file` and every file the config names hold the bytes this entry was built from.
    fn source_is(&self, file: &ConfigFile) -> bool {
        let Some((config_bytes, input_bytes)) = self.source.split_first() else {
            return false;
        };
        if config_bytes.as_slice() != file.bytes() || input_bytes.len() != self.config.files.len() {
            return false;
        }
        self.config.files.iter().zip(input_bytes).all(|(input, before)| {
            read_input(&input.path, input.holds_secrets, self.options).is_some_and(|now| now == *before)
        })
    }
}

/// A file the config names, after the permission check loading it makes; `None` when the check or the
/// read fails (the full load then reports why).
fn read_input(path: &Path, holds_secrets: bool, options: LoadOptions) -> Option<Zeroizing<Vec<u8>>> {
    crate::config::check_permissions(path, holds_secrets, options.trusted_owner).ok()?;
    fs::read(path).ok().map(Zeroizing::new)
}

/// The identity of a file: a store replaced by rename (or deleted and made again) is another file.
fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// An opened store, with what proves it is still the one its location names.
pub struct CachedStore {
    inner: Box<dyn PairingStore + Send + Sync>,
    /// A SQLite store: its path and the file it was opened on. `None` for PostgreSQL.
    file: Option<(PathBuf, Option<(u64, u64)>)>,
    /// A call failed as unavailable or unreachable: not to be reused.
    failed: Cell<bool>,
}

impl CachedStore {
    /// Opens the store at `location` for a login.
    pub fn open(location: &Location<'_>, deadline: Instant) -> Result<CachedStore, StoreError> {
        let path = location.url.strip_prefix("sqlite://").map(PathBuf::from);
        let before = path.as_deref().and_then(identity);
        let inner = store::open_at(location, OpenMode::Existing, deadline)?;
        let file = path.map(|path| {
            // The file at the path before and after the open: if they differ, a rename raced the open and
            // which one SQLite has is unknown. `None` never matches, so this handle serves this login only.
            let after = identity(&path);
            (path, before.filter(|b| Some(*b) == after))
        });
        Ok(CachedStore {
            inner,
            file,
            failed: Cell::new(false),
        })
    }

    /// Whether a later transaction may use this handle: nothing failed, the file is the one opened and
    /// passes the checks its open made, and the schema is this build's (read from the store itself).
    pub fn still_valid(&self, location: &Location<'_>, deadline: Instant) -> bool {
        if self.failed.get() {
            return false;
        }
        if let Some((path, opened)) = &self.file {
            // The config names the same store (the entry is per config), but check the path anyway.
            if location.url.strip_prefix("sqlite://").map(Path::new) != Some(path.as_path()) {
                return false;
            }
            // The checks `SqliteStore::open_at` makes: a store (or side file) someone else could
            // write now decides nothing, even through the handle opened before.
            if store::sqlite::check_permissions(path).is_err() {
                return false;
            }
            if opened.is_none() || identity(path) != *opened {
                return false;
            }
        }
        // Opening refuses an older or newer schema; a migration in place since is seen here. For
        // PostgreSQL this round trip also proves the connection still alive. It may take half of what
        // is left, so that a server that stopped answering still leaves the reopen its own time, and an
        // unreachable store is reported as unreachable (`store_fail_mode`), not as a spent budget.
        let now = Instant::now();
        let half = now + deadline.saturating_duration_since(now) / 2;
        self.inner.schema_version(half).ok() == Some(store::wanted_schema_version(location))
    }

    fn watch<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Unavailable(_) | StoreError::Unreachable(_)) = &result {
            self.failed.set(true);
        }
        result
    }

    /// Whether a call failed as unavailable or unreachable.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }
}

/// Each call goes to the store; its failure is noted.
macro_rules! watched_store_calls {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
            self.watch(self.inner.$name($($arg),*))
        })*
    };
}

impl PairingStore for CachedStore {
    watched_store_calls! {
        fn get(&self, user: &str, deadline: Instant) -> Option<Pairing>;
        fn insert(&self, pairing: &Pairing, deadline: Instant) -> ();
        fn remove(&self, user: &str, deadline: Instant) -> Option<Pairing>;
        fn set_pending(&self, pending: &PendingPairing, deadline: Instant) -> ();
        fn pending(&self, user: &str, deadline: Instant) -> Option<PendingPairing>;
        fn list(&self, deadline: Instant) -> Vec<Pairing>;
        fn set_totp(&self, user: &str, enabled: bool, totp_id: Option<&str>, deadline: Instant) -> ();
        fn local_totp(&self, user: &str, deadline: Instant) -> Option<LocalTotp>;
        fn set_local_totp(&self, user: &str, state: Option<&LocalTotp>, deadline: Instant) -> ();
        fn accept_totp_step(&self, user: &str, step: u64, deadline: Instant) -> bool;
        fn record_totp_failure(&self, user: &str, now: u64, period_secs: u64, deadline: Instant) -> u32;
        fn clear_totp_failures(&self, user: &str, deadline: Instant) -> ();
        fn totp_failures(&self, user: &str, now: u64, period_secs: u64, deadline: Instant) -> u32;
        fn schema_version(&self, deadline: Instant) -> u32;
        fn migrate(&self, deadline: Instant) -> Migrated;
        fn export(&self, deadline: Instant) -> Snapshot;
        fn import(&self, snapshot: &Snapshot, replace: bool, deadline: Instant) -> ();
    }
}

/// A service client that notes a failed request (unreachable, timed out, an HTTP or parse error):
/// its kept-alive connection or resolved address may be what failed, so it is not reused.
pub struct WatchedService {
    inner: SharedService,
    failed: Cell<bool>,
}

impl WatchedService {
    pub fn new(inner: SharedService) -> WatchedService {
        WatchedService {
            inner,
            failed: Cell::new(false),
        }
    }

    pub fn failed(&self) -> bool {
        self.failed.get()
    }
}

/// Notes an unavailability in `failed`.
fn note<T>(failed: &Cell<bool>, result: Result<T, ServiceError>) -> Result<T, ServiceError> {
    if let Err(ServiceError::Unavailable(_)) = &result {
        failed.set(true);
    }
    result
}

/// An answer whose later requests (a push polled, a code checked) are watched too.
fn watch_access<'s>(failed: &'s Cell<bool>, access: Access<'s>) -> Access<'s> {
    match access {
        Access::Pending(inner) => Access::Pending(Box::new(WatchedApproval { inner, failed })),
        Access::CodeRequired(Challenge::Remote(inner)) => {
            Access::CodeRequired(Challenge::Remote(Box::new(WatchedCode { inner, failed })))
        }
        other => other,
    }
}

impl LockService for WatchedService {
    fn status(
        &self,
        account: &str,
        operation: Option<&str>,
        want_code: bool,
        deadline: Instant,
    ) -> Result<Access<'_>, ServiceError> {
        note(&self.failed, self.inner.status(account, operation, want_code, deadline))
            .map(|access| watch_access(&self.failed, access))
    }

    fn unpair(&self, account: &str, deadline: Instant) -> Result<(), ServiceError> {
        note(&self.failed, self.inner.unpair(account, deadline))
    }

    fn pairing(&self) -> PairingFlow<'_> {
        // A login never pairs (the CLI does, with its own client).
        self.inner.pairing()
    }

    fn totp(&self) -> Option<&dyn ServiceTotp> {
        self.inner.totp().map(|_| self as &dyn ServiceTotp)
    }

    fn operation_ids(&self, deadline: Instant) -> Result<Option<Vec<String>>, ServiceError> {
        note(&self.failed, self.inner.operation_ids(deadline))
    }
}

/// The TOTP API's calls, watched. Only reached through [`WatchedService::totp`], which returns it only
/// when the inner service has one.
impl ServiceTotp for WatchedService {
    fn totp_create(&self, user_id: &str, common_name: &str, deadline: Instant) -> Result<TotpEnrolment, ServiceError> {
        note(
            &self.failed,
            crate::service::totp_api(self.inner.as_ref())?.totp_create(user_id, common_name, deadline),
        )
    }

    fn totp_validate(&self, totp_id: &str, code: &str, deadline: Instant) -> Result<CodeCheck, ServiceError> {
        note(
            &self.failed,
            crate::service::totp_api(self.inner.as_ref())?.totp_validate(totp_id, code, deadline),
        )
    }

    fn wrong_code(&self) -> Refusal {
        match self.inner.totp() {
            Some(api) => api.wrong_code(),
            None => Refusal {
                code: crate::service::http::LOCAL_ERROR_CODE,
                message: "this service has no TOTP API".into(),
            },
        }
    }

    fn totp_delete(&self, totp_id: &str, deadline: Instant) -> Result<Removal, ServiceError> {
        note(
            &self.failed,
            crate::service::totp_api(self.inner.as_ref())?.totp_delete(totp_id, deadline),
        )
    }
}

struct WatchedApproval<'s> {
    inner: Box<dyn Approval + 's>,
    failed: &'s Cell<bool>,
}

impl Approval for WatchedApproval<'_> {
    fn poll(&self, deadline: Instant) -> Result<Option<Access<'_>>, ServiceError> {
        note(self.failed, self.inner.poll(deadline)).map(|a| a.map(|a| watch_access(self.failed, a)))
    }

    fn cancel(&self, deadline: Instant) {
        self.inner.cancel(deadline)
    }

    fn patience(&self) -> Duration {
        self.inner.patience()
    }

    fn interval(&self) -> Duration {
        self.inner.interval()
    }
}

struct WatchedCode<'s> {
    inner: Box<dyn RemoteCode + 's>,
    failed: &'s Cell<bool>,
}

impl RemoteCode for WatchedCode<'_> {
    fn verify(&self, code: &str, deadline: Instant) -> Result<CodeAnswer, ServiceError> {
        note(self.failed, self.inner.verify(code, deadline))
    }
}
