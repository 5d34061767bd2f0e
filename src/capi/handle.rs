//! The opaque handle and the calls made with it.
//!
//! A `lockserver *` is a number looked up in a registry on every call (never dereferenced), so a
//! closed, stale or forged pointer gives `LOCKSERVER_ERROR_INVALID_HANDLE` instead of a crash, and a
//! handle closed by one thread while another uses it stays alive until that call returns.

use super::boundary::lockserver_result::{self, *};
use super::boundary::{Failure, guard, input, optional_input, out_ptr, output};
use crate::accounts::{self, AccountError, Accounts, UserStatus};
use crate::config::{Config, LoadOptions, TotpAlgorithm};
use crate::dictionary::Dictionary;
use crate::login::system_clock;
use crate::service::{self, Access, Challenge, CodeCheck, ServiceError, SharedService};
use crate::store::{self, OpenMode, PairingStore, StoreError};
use crate::totp;
use std::collections::HashMap;
use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Instant;

/// An open lockserver: a config, its dictionary, a kept-alive service client and (on first use) the
/// pairing store. Opaque to C; made by lockserver_open or lockserver_open_config_str, released by
/// lockserver_close.
pub struct lockserver {
    pub(super) config: Config,
    /// The texts lockserver_login shows, loaded (and checked) once when the handle is opened.
    pub(super) dictionary: Dictionary,
    pub(super) service: SharedService,
    store: Mutex<Option<Arc<dyn PairingStore + Send + Sync>>>,
    /// Where lockserver_login sends its log lines (lockserver_set_log_socket); `None`: nowhere.
    pub(super) log_socket: Mutex<Option<PathBuf>>,
}

/// The answer of a status check.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_access {
    /// The latch is open.
    LOCKSERVER_ACCESS_OPEN = 0,
    /// The latch is locked.
    LOCKSERVER_ACCESS_LOCKED = 1,
    /// The latch is open, and the service issued a one-time password the user must type.
    LOCKSERVER_ACCESS_CODE_REQUIRED = 2,
    /// The lock check is off for that operation (config).
    LOCKSERVER_ACCESS_CHECK_OFF = 3,
}

/// Hash algorithm of a TOTP.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_totp_algorithm {
    LOCKSERVER_TOTP_SHA1 = 0,
    LOCKSERVER_TOTP_SHA256 = 1,
    LOCKSERVER_TOTP_SHA512 = 2,
}

/// Parameters of an RFC 6238 TOTP. `lockserver_totp_params_default()` gives SHA1, 6 digits, 30 s, ±1 step.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lockserver_totp_params {
    /// A `lockserver_totp_algorithm` value (a plain integer, so that no C value is undefined behaviour).
    pub algorithm: u32,
    /// 6, 7 or 8.
    pub digits: u32,
    /// Seconds per step, 1 or more.
    pub step_secs: u64,
    /// Steps accepted either side of now, at most 10.
    pub window: u32,
}

static REGISTRY: LazyLock<Mutex<HashMap<usize, Arc<lockserver>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> std::sync::MutexGuard<'static, HashMap<usize, Arc<lockserver>>> {
    // A panic while holding the lock cannot leave the map inconsistent (single inserts/removes).
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn lookup(h: *const lockserver) -> Result<Arc<lockserver>, Failure> {
    registry()
        .get(&(h as usize))
        .cloned()
        .ok_or_else(|| Failure::new(LOCKSERVER_ERROR_INVALID_HANDLE, "the handle is NULL, closed or unknown"))
}

/// The handle and the one string argument of a call, looked up and read in that order.
///
/// # Safety
/// `arg` is NULL or a NUL-terminated string that stays valid during the call.
unsafe fn handle_and_input<'a>(
    h: *const lockserver,
    arg: *const c_char,
) -> Result<(Arc<lockserver>, &'a str), Failure> {
    let handle = lookup(h)?;
    // SAFETY: the caller's guarantee on `arg`.
    Ok((handle, unsafe { input(arg) }?))
}

/// Hands `s` to the caller through `out`, which `out_ptr` checked before any work was done.
///
/// # Safety
/// `out` is non-null and writable.
pub(super) unsafe fn give(out: *mut *mut c_char, s: &str) -> Result<(), Failure> {
    let ptr = output(s)?;
    // SAFETY: the caller's guarantee on `out`.
    unsafe { *out = ptr };
    Ok(())
}

/// Handle values are numbers counted up from a high base and never reused, so a pointer kept after
/// `lockserver_close` can never name a newer handle. C only passes them back; they are never
/// dereferenced.
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x1000_0000);

fn register(handle: lockserver, out: *mut *mut lockserver) {
    let id = NEXT_HANDLE.fetch_add(16, Ordering::Relaxed);
    registry().insert(id, Arc::new(handle));
    // SAFETY: `out` was checked non-null by the caller before any work.
    unsafe { *out = std::ptr::without_provenance_mut(id) };
}

fn open_with(config: Config) -> Result<lockserver, Failure> {
    // Checked as the PAM module checks it (owner, mode), so a handle's logins read the same texts.
    let dictionary = Dictionary::for_config(&config, None)
        .map_err(|e| Failure::new(LOCKSERVER_ERROR_CONFIG, format!("dictionary {e}")))?;
    let service = service::from_config(&config)?;
    Ok(lockserver {
        config,
        dictionary,
        service,
        store: Mutex::new(None),
        log_socket: Mutex::new(Some(PathBuf::from(crate::pam::syslog::DEFAULT_SOCKET))),
    })
}

impl lockserver {
    /// The store for the account calls (`lockserver_user_*`): created and migrated if needed, as the CLI
    /// does.
    fn store(&self) -> Result<Arc<dyn PairingStore + Send + Sync>, Failure> {
        Ok(self.kept_store(|| {
            store::open_at(
                &store::Location::of(&self.config),
                OpenMode::Create,
                store::default_deadline(),
            )
        })?)
    }

    /// The store for a login, opened as the PAM module opens it, by the login's `deadline`: never created
    /// or migrated (a missing store means nobody is paired).
    pub(super) fn login_store(&self, deadline: Instant) -> Result<Arc<dyn PairingStore + Send + Sync>, StoreError> {
        self.kept_store(|| store::open_at(&store::Location::of(&self.config), OpenMode::Existing, deadline))
    }

    /// The handle's store if a call opened it already, else opened with `open` and kept for later calls
    /// (a failed open is not kept: the next call tries again). Opened outside the lock, so a slow open
    /// (a busy file, a PostgreSQL connect) never holds another thread's call past its own deadline; of
    /// two opened at once, the first kept wins.
    fn kept_store(
        &self,
        open: impl FnOnce() -> Result<Box<dyn PairingStore + Send + Sync>, StoreError>,
    ) -> Result<Arc<dyn PairingStore + Send + Sync>, StoreError> {
        let slot = || self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slot().as_ref() {
            return Ok(Arc::clone(s));
        }
        let opened: Arc<dyn PairingStore + Send + Sync> = Arc::from(open()?);
        Ok(Arc::clone(slot().get_or_insert(opened)))
    }

    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.config.timeout
    }

    pub(super) fn with_accounts<T>(
        &self,
        action: impl FnOnce(&Accounts<'_>) -> Result<T, AccountError>,
    ) -> Result<T, Failure> {
        let store = self.store()?;
        let accounts = Accounts {
            config: &self.config,
            store: store.as_ref(),
            service: self.service.as_ref(),
        };
        action(&accounts).map_err(Failure::from)
    }
}

impl From<AccountError> for Failure {
    fn from(e: AccountError) -> Failure {
        let message = e.to_string();
        match e {
            AccountError::Service(s) => s.into(),
            AccountError::Store(s) => s.into(),
            AccountError::InvalidCode | AccountError::UnknownOperation(_) => {
                Failure::new(LOCKSERVER_ERROR_INVALID_ARGUMENT, message)
            }
            AccountError::NotPaired => Failure::new(LOCKSERVER_ERROR_NOT_PAIRED, message),
            AccountError::AlreadyPaired | AccountError::TotpAlreadyEnrolled => {
                Failure::new(LOCKSERVER_ERROR_ALREADY_PAIRED, message)
            }
            AccountError::TotpDisabled | AccountError::TotpNotEnrolled => {
                Failure::new(LOCKSERVER_ERROR_TOTP_DISABLED, message)
            }
            AccountError::RateLimited => Failure::new(LOCKSERVER_ERROR_SERVICE, message),
            AccountError::NoPendingKey => Failure::new(LOCKSERVER_ERROR_NOT_PAIRED, message),
            AccountError::NotClaimed { .. } => Failure::new(LOCKSERVER_ERROR_NOT_CLAIMED, message),
        }
    }
}

/// What a status answer is for a C caller: the access kind and the one-time password to compare,
/// if one was issued. A question put to the person (a push) cannot be waited for here: it is withdrawn
/// and the call fails (PingID's status calls are refused before they are sent; this is the defence
/// for any service that asks).
fn access_parts(access: Access<'_>) -> Result<(lockserver_access, Option<String>), ServiceError> {
    Ok(match access {
        Access::Open => (lockserver_access::LOCKSERVER_ACCESS_OPEN, None),
        Access::Locked | Access::Refused(_) => (lockserver_access::LOCKSERVER_ACCESS_LOCKED, None),
        Access::CodeRequired(Challenge::LocalToken(t)) => (
            lockserver_access::LOCKSERVER_ACCESS_CODE_REQUIRED,
            Some(t.expose().to_string()),
        ),
        Access::CodeRequired(Challenge::Remote(_)) => (lockserver_access::LOCKSERVER_ACCESS_CODE_REQUIRED, None),
        Access::Pending(approval) => {
            approval.cancel(std::time::Instant::now() + std::time::Duration::from_secs(1));
            return Err(ServiceError::Misconfigured {
                code: crate::service::http::LOCAL_ERROR_CODE,
                message: "this service asks the person on the phone, which a status call cannot wait for".into(),
            });
        }
    })
}

/// Writes an access answer and, if asked, its one-time password (NULL when none was issued).
///
/// # Safety
/// `out_access` is valid; `out_token` is NULL or valid.
unsafe fn write_access(
    (kind, token): (lockserver_access, Option<String>),
    out_access: *mut lockserver_access,
    out_token: *mut *mut c_char,
) -> Result<(), Failure> {
    let token_ptr = match (&token, out_token.is_null()) {
        (Some(t), false) => output(t)?,
        _ => std::ptr::null_mut(),
    };
    // SAFETY: checked by the caller (out_access non-null; out_token non-null when written).
    unsafe {
        *out_access = kind;
        if !out_token.is_null() {
            *out_token = token_ptr;
        }
    }
    Ok(())
}

/// Opens a handle from a config file (the same file and checks as the PAM module: owned by root, not
/// writable by others, not readable by others when it holds secrets). The config's `dictionary`, if
/// any, is loaded and checked too: a file the module would refuse is LOCKSERVER_ERROR_CONFIG here.
///
/// `config_path`: NUL-terminated path, borrowed. `out`: receives the handle, owned by the caller and
/// released with lockserver_close. Thread-safe.
///
/// # Safety
/// `config_path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_open(config_path: *const c_char, out: *mut *mut lockserver) -> lockserver_result {
    guard(|| {
        out_ptr(out)?;
        // SAFETY: the caller's guarantee on config_path.
        let path = unsafe { input(config_path) }?;
        let config = Config::load(Path::new(path), LoadOptions::default())
            .map_err(|e| Failure::new(LOCKSERVER_ERROR_CONFIG, e.to_string()))?;
        register(open_with(config)?, out);
        Ok(())
    })
}

/// Opens a handle from a config given as TOML text (same keys as the file; `*_file` secrets are not
/// allowed). `config_toml`: borrowed. `out`: as lockserver_open.
///
/// # Safety
/// `config_toml` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_open_config_str(
    config_toml: *const c_char,
    out: *mut *mut lockserver,
) -> lockserver_result {
    guard(|| {
        out_ptr(out)?;
        // SAFETY: the caller's guarantee on config_toml.
        let text = unsafe { input(config_toml) }?;
        let config = Config::parse_str(text).map_err(|e| Failure::new(LOCKSERVER_ERROR_CONFIG, e.to_string()))?;
        register(open_with(config)?, out);
        Ok(())
    })
}

/// Releases a handle. Calls still running on other threads finish first; later calls with it return
/// LOCKSERVER_ERROR_INVALID_HANDLE. Closing NULL or a closed handle returns that error too. Thread-safe.
///
/// # Safety
/// Any pointer value is accepted: it is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_close(handle: *mut lockserver) -> lockserver_result {
    guard(|| {
        registry()
            .remove(&(handle as usize))
            .map(drop)
            .ok_or_else(|| Failure::new(LOCKSERVER_ERROR_INVALID_HANDLE, "the handle is NULL, closed or unknown"))
    })
}

/// The lock status of a service account id, application-wide (`operation_id` NULL) or for one
/// operation id. With `want_code` false the service issues no one-time password.
///
/// `account_id`, `operation_id`: borrowed. `out_access`: required. `out_token`: may be NULL; else it
/// receives the one-time password when the answer is LOCKSERVER_ACCESS_CODE_REQUIRED (free it with
/// lockserver_string_free), or NULL. LOCKSERVER_ERROR_NOT_SUPPORTED under PingID, whose lock check is
/// a push to the person's phone: run it as a login (lockserver_login). Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; output pointers are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_status(
    handle: *const lockserver,
    account_id: *const c_char,
    operation_id: *const c_char,
    want_code: bool,
    out_access: *mut lockserver_access,
    out_token: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_access)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (account, operation) = unsafe { (input(account_id)?, optional_input(operation_id)?) };
        super::supported::status_calls(&h)?;
        let access = access_parts(h.service.status(account, operation, want_code, h.deadline())?)?;
        // SAFETY: out_access checked above; out_token NULL or writable per the contract.
        unsafe { write_access(access, out_access, out_token) }
    })
}

/// Pairs with a code from the Latch app. `common_name` may be NULL. `out_account_id` receives the
/// service's account id (free it with lockserver_string_free). Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `out_account_id` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_pair(
    handle: *const lockserver,
    code: *const c_char,
    common_name: *const c_char,
    out_account_id: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_account_id)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (code, name) = unsafe { (input(code)?, optional_input(common_name)?) };
        let flow = super::supported::code_flow(&h)?;
        let code = accounts::check_pairing_code(code)?;
        let account = flow.pair(code, name, h.deadline())?;
        // SAFETY: checked non-null above.
        unsafe { give(out_account_id, &account) }
    })
}

/// Unpairs a service account id. Thread-safe.
///
/// # Safety
/// `account_id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_unpair(handle: *const lockserver, account_id: *const c_char) -> lockserver_result {
    guard(|| {
        // SAFETY: the caller's guarantee on account_id.
        let (h, account) = unsafe { handle_and_input(handle, account_id) }?;
        h.service.unpair(account, h.deadline())?;
        Ok(())
    })
}

/// Creates a TOTP at the service. `out_totp_id` and `out_qr` receive strings to free with
/// lockserver_string_free (`qr` is an image data URI, a URL or an otpauth URI). Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; output pointers are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_totp_create(
    handle: *const lockserver,
    user_id: *const c_char,
    common_name: *const c_char,
    out_totp_id: *mut *mut c_char,
    out_qr: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_totp_id)?;
        out_ptr(out_qr)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (user_id, name) = unsafe { (input(user_id)?, input(common_name)?) };
        let enrolment = super::supported::totp_calls(&h)?.totp_create(user_id, name, h.deadline())?;
        let id = output(&enrolment.totp_id)?;
        let qr = match output(&enrolment.qr) {
            Ok(qr) => qr,
            Err(e) => {
                // SAFETY: `id` came from output() just above and was not handed out.
                unsafe { super::boundary::lockserver_string_free(id) };
                return Err(e);
            }
        };
        // SAFETY: both checked non-null above.
        unsafe {
            *out_totp_id = id;
            *out_qr = qr;
        }
        Ok(())
    })
}

/// Validates a TOTP code at the service: `*out_valid` is true or false. Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `out_valid` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_totp_validate(
    handle: *const lockserver,
    totp_id: *const c_char,
    code: *const c_char,
    out_valid: *mut bool,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_valid)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (id, code) = unsafe { (input(totp_id)?, input(code)?) };
        let valid = match super::supported::totp_calls(&h)?.totp_validate(id, code, h.deadline())? {
            CodeCheck::Valid => true,
            CodeCheck::Invalid(_) => false,
            CodeCheck::Locked(refusal) => return Err(Failure::refused(LOCKSERVER_ERROR_SERVICE, refusal)),
        };
        // SAFETY: checked non-null above.
        unsafe { *out_valid = valid };
        Ok(())
    })
}

/// Deletes a TOTP at the service. A TOTP the service no longer has counts as deleted (LOCKSERVER_OK),
/// so a repeated call is harmless. Thread-safe.
///
/// # Safety
/// `totp_id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_totp_delete(
    handle: *const lockserver,
    totp_id: *const c_char,
) -> lockserver_result {
    guard(|| {
        // SAFETY: the caller's guarantee on totp_id.
        let (h, id) = unsafe { handle_and_input(handle, totp_id) }?;
        super::supported::totp_calls(&h)?.totp_delete(id, h.deadline())?;
        Ok(())
    })
}

/// The default TOTP parameters: SHA1, 6 digits, 30 s steps, ±1 step. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn lockserver_totp_params_default() -> lockserver_totp_params {
    // No panic boundary: a constant, no code that can panic.
    lockserver_totp_params {
        algorithm: lockserver_totp_algorithm::LOCKSERVER_TOTP_SHA1 as u32,
        digits: 6,
        step_secs: 30,
        window: 1,
    }
}

/// # Safety
/// `p` is NULL or points to a `lockserver_totp_params`.
unsafe fn params_from(p: *const lockserver_totp_params) -> Result<totp::Params, Failure> {
    let p = if p.is_null() {
        lockserver_totp_params_default()
    } else {
        // SAFETY: non-null; the caller guarantees it points to a lockserver_totp_params.
        unsafe { *p }
    };
    let algorithm = match p.algorithm {
        0 => TotpAlgorithm::Sha1,
        1 => TotpAlgorithm::Sha256,
        2 => TotpAlgorithm::Sha512,
        _ => {
            return Err(Failure::new(
                LOCKSERVER_ERROR_INVALID_ARGUMENT,
                "unknown TOTP algorithm",
            ));
        }
    };
    if !(6..=8).contains(&p.digits) || p.step_secs == 0 || p.window > 10 {
        return Err(Failure::new(
            LOCKSERVER_ERROR_INVALID_ARGUMENT,
            "TOTP parameters out of range",
        ));
    }
    Ok(totp::Params {
        algorithm,
        digits: p.digits,
        step_secs: p.step_secs,
        window: p.window,
    })
}

fn secret_from(secret_base32: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
    totp::decode_secret(secret_base32)
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| Failure::new(LOCKSERVER_ERROR_INVALID_ARGUMENT, "the secret is not base32"))
}

/// Checks an RFC 6238 code locally, with no service and no handle. `params` may be NULL (defaults);
/// `unix_time` is the time to check at (seconds). No replay protection here: the caller keeps the
/// last accepted step if it needs it (the user-level calls do). Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `params` is NULL or valid; `out_valid` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_totp_verify(
    secret_base32: *const c_char,
    code: *const c_char,
    unix_time: u64,
    params: *const lockserver_totp_params,
    out_valid: *mut bool,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_valid)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (secret, code) = unsafe { (input(secret_base32)?, input(code)?) };
        let secret = secret_from(secret)?;
        // SAFETY: the caller's guarantee on params.
        let params = unsafe { params_from(params) }?;
        let valid = totp::verify(&secret, code, unix_time, &params, None).is_some();
        // SAFETY: checked non-null above.
        unsafe { *out_valid = valid };
        Ok(())
    })
}

/// Computes the RFC 6238 code of a secret at `unix_time` (for tests and enrolment screens).
/// `out_code` receives a string to free with lockserver_string_free. Thread-safe.
///
/// # Safety
/// `secret_base32` is NULL or NUL-terminated; `params` NULL or valid; `out_code` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_totp_code(
    secret_base32: *const c_char,
    unix_time: u64,
    params: *const lockserver_totp_params,
    out_code: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_code)?;
        // SAFETY: the caller's guarantee on secret_base32.
        let secret = secret_from(unsafe { input(secret_base32) }?)?;
        // SAFETY: the caller's guarantee on params.
        let params = unsafe { params_from(params) }?;
        let code = totp::code_at(&secret, unix_time, &params);
        // SAFETY: checked non-null above.
        unsafe { give(out_code, &code) }
    })
}

/// The lock status of a local user through the pairing store, application-wide (`operation_name`
/// NULL) or for an operation NAME of the config. `out_token` as in lockserver_status; under PingID,
/// LOCKSERVER_ERROR_NOT_SUPPORTED as there. Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; output pointers are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_status(
    handle: *const lockserver,
    user: *const c_char,
    operation_name: *const c_char,
    want_code: bool,
    out_access: *mut lockserver_access,
    out_token: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_access)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (user, operation) = unsafe { (input(user)?, optional_input(operation_name)?) };
        super::supported::status_calls(&h)?;
        let status = h.with_accounts(|a| {
            Ok(match a.status(user, operation, want_code)? {
                UserStatus::CheckOff => None,
                UserStatus::Checked(access) => Some(access_parts(access)?),
            })
        })?;
        match status {
            None => {
                // SAFETY: checked non-null above; out_token NULL or writable.
                unsafe {
                    *out_access = lockserver_access::LOCKSERVER_ACCESS_CHECK_OFF;
                    if !out_token.is_null() {
                        *out_token = std::ptr::null_mut();
                    }
                }
                Ok(())
            }
            // SAFETY: as above.
            Some(access) => unsafe { write_access(access, out_access, out_token) },
        }
    })
}

/// Pairs a local user with a code from the Latch app and records it in the store. Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_pair(
    handle: *const lockserver,
    user: *const c_char,
    code: *const c_char,
) -> lockserver_result {
    guard(|| {
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (user, code) = unsafe { (input(user)?, input(code)?) };
        super::supported::code_flow(&h)?;
        h.with_accounts(|a| a.pair(user, code, user))?;
        Ok(())
    })
}

/// Unpairs a local user at the service and in the store (their TOTP too). Thread-safe.
///
/// # Safety
/// `user` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_unpair(handle: *const lockserver, user: *const c_char) -> lockserver_result {
    guard(|| {
        // SAFETY: the caller's guarantee on user.
        let (h, user) = unsafe { handle_and_input(handle, user) }?;
        h.with_accounts(|a| a.unpair(user, false))?;
        Ok(())
    })
}

/// Enrols a TOTP for a paired local user (at the service, or a local secret per `[totp] source`).
/// `out_qr` receives what to show (free with lockserver_string_free). Thread-safe.
///
/// # Safety
/// `user` is NULL or NUL-terminated; `out_qr` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_totp_create(
    handle: *const lockserver,
    user: *const c_char,
    out_qr: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_qr)?;
        // SAFETY: the caller's guarantee on user.
        let (h, user) = unsafe { handle_and_input(handle, user) }?;
        let enrolment = h.with_accounts(|a| a.totp_create(user, user))?;
        // SAFETY: checked non-null above.
        unsafe { give(out_qr, &enrolment.qr) }
    })
}

/// Switches TOTP off for a local user (deleting it at the service). Thread-safe.
///
/// # Safety
/// `user` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_totp_disable(
    handle: *const lockserver,
    user: *const c_char,
) -> lockserver_result {
    guard(|| {
        // SAFETY: the caller's guarantee on user.
        let (h, user) = unsafe { handle_and_input(handle, user) }?;
        h.with_accounts(|a| a.totp_disable(user))?;
        Ok(())
    })
}

/// Checks a local user's TOTP code (at the service, or locally under the rate limit) without
/// logging in. Thread-safe.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `out_valid` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_totp_verify(
    handle: *const lockserver,
    user: *const c_char,
    code: *const c_char,
    out_valid: *mut bool,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_valid)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (user, code) = unsafe { (input(user)?, input(code)?) };
        let valid = h.with_accounts(|a| a.totp_verify(user, code, system_clock()))?;
        // SAFETY: checked non-null above.
        unsafe { *out_valid = valid };
        Ok(())
    })
}
