//! `lockserver_login`: the PAM module's whole login decision ([`crate::login::Login::decide`]) for a C
//! program, with the program's conversation callback as the prompter and the handle's kept-alive
//! service client and store as the resources.

use super::boundary::lockserver_result::{self, *};
use super::boundary::{Failure, guard, input, optional_input, out_ptr, output};
use super::conversation::{CallbackPrompter, lockserver_conversation};
use super::handle::{lockserver, lookup};
use crate::config::FailMode;
use crate::login::{Login, Phase, Prompter, Resources, Verdict, system_clock};
use crate::pam::syslog;
use crate::service::{LockService, ServiceError};
use crate::store::{self, PairingStore, StoreError};
use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Instant;

/// What lockserver_login decided. No verdict is 0, so a variable initialised to 0 and read without
/// checking the call's result never reads as LOCKSERVER_VERDICT_ALLOWED.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_verdict {
    /// Let the login go on: the lock is open and every code asked was right; or the user is not paired
    /// and `unpaired = "allow"`; or the service is unreachable and `fail_mode = "safe"` (PAM_SUCCESS).
    LOCKSERVER_VERDICT_ALLOWED = 1,
    /// Refused: the lock is closed, a code was wrong or not given, the user is not paired and
    /// `unpaired = "deny"`, or the service refused the request (PAM_AUTH_ERR).
    LOCKSERVER_VERDICT_REFUSED = 2,
    /// Refused after too many wrong codes, or the service or the rate limit takes no more (PAM_MAXTRIES).
    LOCKSERVER_VERDICT_MAX_TRIES = 3,
    /// Refused: the service could not be asked in time and `fail_mode = "secure"` (PAM_AUTHINFO_UNAVAIL).
    LOCKSERVER_VERDICT_UNAVAILABLE = 4,
    /// Refused: this host is misconfigured (the store cannot be read, or the service's answer proves a
    /// wrong app id, secret, clock or operation id) (PAM_SERVICE_ERR).
    LOCKSERVER_VERDICT_MISCONFIGURED = 5,
    /// Not lockserver's to decide: it is disabled (`enabled = false`), or the user is not paired and
    /// `unpaired = "ignore"`. The program decides by its other checks, as PAM does with PAM_IGNORE.
    LOCKSERVER_VERDICT_IGNORE = 6,
}

impl From<&Verdict> for lockserver_verdict {
    fn from(v: &Verdict) -> lockserver_verdict {
        use lockserver_verdict::*;
        match v {
            Verdict::Allow => LOCKSERVER_VERDICT_ALLOWED,
            Verdict::Deny => LOCKSERVER_VERDICT_REFUSED,
            Verdict::MaxTries => LOCKSERVER_VERDICT_MAX_TRIES,
            Verdict::Unavailable => LOCKSERVER_VERDICT_UNAVAILABLE,
            Verdict::ConfigError => LOCKSERVER_VERDICT_MISCONFIGURED,
            Verdict::Ignore => LOCKSERVER_VERDICT_IGNORE,
        }
    }
}

/// A login's store and service: the handle's, so logins on one handle share its connections.
struct HandleResources<'h> {
    handle: &'h lockserver,
    store: Option<Arc<dyn PairingStore + Send + Sync>>,
}

impl Resources for HandleResources<'_> {
    fn store(&mut self, deadline: Instant) -> Result<&dyn PairingStore, StoreError> {
        let store = match self.store.take() {
            Some(s) => s,
            None => self.handle.login_store(deadline)?,
        };
        let store: &Arc<dyn PairingStore + Send + Sync> = self.store.insert(store);
        Ok(&**store)
    }

    fn store_fail_mode(&self) -> FailMode {
        self.handle.config.store_fail_mode
    }

    fn service(&mut self) -> Result<&dyn LockService, ServiceError> {
        Ok(self.handle.service.as_ref())
    }
}

/// The log lines of one lockserver_login: the PAM module's lines for the same decision (the same
/// words, levels and facility, LOG_AUTHPRIV), to the handle's socket, with the prefix
/// `lockserver_login(SERVICE:auth): user=USER rhost=-: ` so that they are told apart from the module's.
/// Without them a FAIL-OPEN of a C program would be seen nowhere. The thread's context before the
/// call is put back when the scope ends, a panic included.
struct LogScope {
    outer: Option<syslog::Context>,
}

impl LogScope {
    fn begin(handle: &lockserver, user: &str, service: &str) -> LogScope {
        let socket = handle.log_socket.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let context = socket.map(|socket| syslog::Context {
            ident: program_name().to_string(),
            prefix: format!(
                "lockserver_login({}:auth): user={} rhost=-: ",
                syslog::printable(service),
                syslog::printable(user)
            ),
            socket,
        });
        LogScope {
            outer: syslog::swap(context),
        }
    }
}

impl Drop for LogScope {
    fn drop(&mut self) {
        syslog::swap(self.outer.take());
    }
}

/// The syslog tag: the program's file name (as syslog(3) would take it), printable.
fn program_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.is_empty())
            .map_or_else(|| "lockserver".to_string(), |n| syslog::printable(&n))
    })
}

/// Where lockserver_login on this handle sends its log lines: the path of a syslog datagram socket
/// (the default is /dev/log, as for the PAM module), or NULL for no log lines (a program that keeps
/// its own audit trail). `socket_path`: borrowed; an absolute path, else
/// LOCKSERVER_ERROR_INVALID_ARGUMENT. Lines that cannot be written (no daemon) are dropped, counted,
/// and the count is reported in the next line that gets through; a login never waits more than
/// 100 ms for a stuck daemon. Thread-safe: logins already running keep the socket they started with.
///
/// # Safety
/// `socket_path` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_set_log_socket(
    handle: *const lockserver,
    socket_path: *const c_char,
) -> lockserver_result {
    guard(|| {
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on socket_path.
        let path = unsafe { optional_input(socket_path) }?.map(PathBuf::from);
        if path.as_ref().is_some_and(|p| !p.is_absolute()) {
            return Err(Failure::new(
                LOCKSERVER_ERROR_INVALID_ARGUMENT,
                "the log socket must be an absolute path",
            ));
        }
        *h.log_socket.lock().unwrap_or_else(PoisonError::into_inner) = path;
        Ok(())
    })
}

/// The decision of the PAM module's auth phase for `user`, `operation` standing where the PAM service
/// name stands (looked up in `operations`; a name not there gets the application-wide check).
fn decide(handle: &lockserver, user: &str, operation: &str, prompter: &mut dyn Prompter) -> Verdict {
    let login = Login {
        config: &handle.config,
        dictionary: &handle.dictionary,
        user,
        operation,
        explicit_operation: false,
        phase: Phase::Auth,
        clock: system_clock,
    };
    let mut resources = HandleResources { handle, store: None };
    login.decide(&mut resources, prompter)
}

/// Runs the whole login decision for a local user, exactly as the PAM module's auth phase does: the
/// lock check through the pairing store (with the service's one-time password), then the user's TOTP,
/// with `fail_mode` (and `store_fail_mode`), `unpaired`, `service_unpaired`, `operations`,
/// `max_attempts` and the TOTP rate limit of the handle's config, and `timeout_ms` bounding the time of
/// the store and the service together (not the time a person takes to answer).
///
/// - `handle`: from lockserver_open*.
/// - `user`: the local user name, borrowed; 1-256 characters without control characters, else
///   LOCKSERVER_ERROR_INVALID_ARGUMENT.
/// - `service_name`: borrowed, may be NULL: what the PAM service name is to the module (e.g. "sshd"),
///   looked up in the config's `operations`; NULL or a name not listed there gets the application-wide
///   check.
/// - `conversation`: required; called for every prompt and text of the login (see
///   lockserver_conversation), on this thread, before lockserver_login returns.
/// - `userdata`: passed to `conversation` untouched; may be NULL.
/// - `out_verdict`: required; receives the verdict.
/// - `out_message`: may be NULL; else receives the text that says why the login was refused (the last
///   error text given to `conversation`; free it with lockserver_string_free), or NULL when the verdict
///   is ALLOWED or IGNORE or no text was given.
///
/// Writes the log lines the PAM module writes for the same decision (docs/log-lines.md: "access
/// granted", "FAIL-OPEN: ...", "access denied: ..."), prefixed `lockserver_login(SERVICE:auth)`, to
/// syslog or to the socket lockserver_set_log_socket chose; no secret, code or token is logged.
///
/// Returns LOCKSERVER_OK whenever a verdict was reached, a refusal included: read `*out_verdict`. Any
/// other result (a bad argument, a closed handle, LOCKSERVER_ERROR_PANIC) means no verdict: nothing is
/// written, and the login must be treated as refused.
///
/// Thread-safe: many logins may run on one handle at once, each with its own callback and userdata.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `conversation` is NULL or a function as
/// lockserver_conversation describes; output pointers are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_login(
    handle: *const lockserver,
    user: *const c_char,
    service_name: *const c_char,
    conversation: lockserver_conversation,
    userdata: *mut c_void,
    out_verdict: *mut lockserver_verdict,
    out_message: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_verdict)?;
        let Some(callback) = conversation else {
            return Err(Failure::new(
                LOCKSERVER_ERROR_NULL_ARGUMENT,
                "the conversation callback is NULL",
            ));
        };
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on the string arguments.
        let (user, operation) = unsafe { (input(user)?, optional_input(service_name)?) };
        store::check_user(user)?;
        // SAFETY: the caller's guarantee on `conversation` and `userdata`; the prompter lives for this
        // call only.
        let mut prompter = unsafe { CallbackPrompter::new(callback, userdata) };
        let verdict = {
            let _lines = LogScope::begin(&h, user, operation.unwrap_or(""));
            decide(&h, user, operation.unwrap_or(""), &mut prompter)
        };
        let message = match verdict {
            Verdict::Allow | Verdict::Ignore => None,
            _ => prompter.into_last_error(),
        };
        let message = match (message, out_message.is_null()) {
            (Some(text), false) => output(&text)?,
            _ => std::ptr::null_mut(),
        };
        // SAFETY: out_verdict checked non-null above; out_message NULL or writable per the contract.
        unsafe {
            *out_verdict = lockserver_verdict::from(&verdict);
            if !out_message.is_null() {
                *out_message = message;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    // lockserver_login through the C ABI is tested from C (tests/c/capi_test.c) and from Rust
    // (tests/capi.rs, against the PAM module); here, what needs the library's insides.
    use super::*;
    use crate::capi::{lockserver_close, lockserver_open_config_str};
    use zeroize::Zeroizing;

    /// A handle whose store does not exist (everyone is unpaired) and whose service is never reached.
    fn handle(tmp: &std::path::Path) -> *mut lockserver {
        let config = format!(
            "service = \"latch\"\nunpaired = \"deny\"\nstore = \"sqlite://{}/none.db\"\n[latch]\n\
             app_id = \"abcdefghijklmnopqrst\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789ABCD\"\n\
             url = \"http://127.0.0.1:9\"\n",
            tmp.display()
        );
        let config = std::ffi::CString::new(config).expect("no NUL");
        let mut h = std::ptr::null_mut();
        // SAFETY: a NUL-terminated config and a writable out-pointer.
        let rc = unsafe { lockserver_open_config_str(config.as_ptr(), &mut h) };
        assert_eq!(rc, LOCKSERVER_OK);
        h
    }

    /// A prompter whose callback path fails inside the library.
    struct Panicking;

    impl Prompter for Panicking {
        fn prompt_secret(&mut self, _prompt: &str) -> Option<Zeroizing<String>> {
            panic!("a bug in the conversation path")
        }

        fn error(&mut self, _text: &str) {
            panic!("a bug in the conversation path")
        }

        fn info(&mut self, _text: &str) {
            panic!("a bug in the conversation path")
        }
    }

    /// Records the error texts.
    #[derive(Default)]
    struct Errors(Vec<String>);

    impl Prompter for Errors {
        fn prompt_secret(&mut self, _prompt: &str) -> Option<Zeroizing<String>> {
            None
        }

        fn error(&mut self, text: &str) {
            self.0.push(text.to_string());
        }

        fn info(&mut self, _text: &str) {}
    }

    #[test]
    fn a_panic_in_the_conversation_path_is_an_error_code_and_the_handle_stays_usable() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let h = handle(tmp.path());
        let rc = guard(|| {
            let handle = lookup(h)?;
            decide(&handle, "nobody", "sshd", &mut Panicking);
            Ok(())
        });
        assert_eq!(rc, LOCKSERVER_ERROR_PANIC);
        let handle = lookup(h).expect("still open");
        let mut errors = Errors::default();
        assert_eq!(decide(&handle, "nobody", "sshd", &mut errors), Verdict::Deny);
        assert_eq!(
            errors.0,
            [handle.dictionary.get(crate::dictionary::Section::Lock, "not_paired")]
        );
        drop(handle);
        // SAFETY: a handle from lockserver_open_config_str.
        assert_eq!(unsafe { lockserver_close(h) }, LOCKSERVER_OK);
    }

    #[test]
    fn every_verdict_has_its_own_nonzero_value() {
        use lockserver_verdict::*;
        let all = [
            Verdict::Allow,
            Verdict::Deny,
            Verdict::MaxTries,
            Verdict::Unavailable,
            Verdict::ConfigError,
            Verdict::Ignore,
        ];
        let mut values: Vec<i32> = all.iter().map(|v| lockserver_verdict::from(v) as i32).collect();
        assert_eq!(lockserver_verdict::from(&Verdict::Allow), LOCKSERVER_VERDICT_ALLOWED);
        assert_eq!(lockserver_verdict::from(&Verdict::Ignore), LOCKSERVER_VERDICT_IGNORE);
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), all.len());
        assert!(!values.contains(&0), "0 is no verdict");
    }
}
