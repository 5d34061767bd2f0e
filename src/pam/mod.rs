//! The PAM hooks: module arguments, the conversation as a [`Prompter`], the verdict as a PAM code.
//!
//! ```text
//! auth     required  pam_lockserver.so [config=PATH] [operation=NAME] [debug]
//! account  required  pam_lockserver.so [config=PATH] [operation=NAME] [debug]
//! ```
//! Extra arguments: `trust_owner=UID` accepts a config owned by that uid besides root (tests only);
//! `log_socket=PATH` sends log lines to that syslog socket instead of `/dev/log`.
//!
//! pam-bindings catches panics at the boundary (→ PAM_ABORT) and checks argc/argv; nothing here writes
//! to stdout or stderr, and the environment is never read (sshd's keyboard-interactive child has none).

mod cache;
pub mod groups;
mod memory;
pub mod syslog;

use crate::config::{Config, LoadOptions};
use crate::login::{Login, Outcome, Phase, Prompter, Resources, Verdict};
use crate::service::{self, LockService, ServiceError};
use crate::store::{self, PairingStore, StoreError};
use cache::{CachedStore, WatchedService};
use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_TEXT_INFO, PamFlag, PamResultCode};
use pam::conv::Conv;
use pam::items::{RHost, Service, User};
use pam::module::{PamHandle, PamHooks};
use std::ffi::CStr;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Longest text shown to the user in one PAM message (dictionary texts are short).
const MAX_MESSAGE_CHARS: usize = 1024;

/// `pam_set_data` key under which the auth phase records the user, operation and config it granted, so
/// the account phase of the same transaction does not ask the service twice for the same thing.
const CHECKED_KEY: &str = "pam_lockserver/granted(user,operation,config)";

struct Module;
pam::pam_hooks!(Module);

impl PamHooks for Module {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        hook(pamh, &args, Phase::Auth)
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        hook(pamh, &args, Phase::Account)
    }

    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        // No credentials to set; success keeps stacks where we are the only auth module working.
        PamResultCode::PAM_SUCCESS
    }
}

/// The module arguments.
#[derive(Debug, Default)]
struct Args {
    config: Option<PathBuf>,
    operation: Option<String>,
    debug: bool,
    trust_owner: Option<u32>,
    log_socket: Option<PathBuf>,
}

/// Parses every argument. A bad one is reported, but the others still count, so `log_socket=` and
/// `debug` take effect for the line that reports it.
fn parse_args(args: &[&CStr]) -> (Args, Option<String>) {
    let mut out = Args::default();
    let mut error = None;
    for arg in args {
        let Ok(arg) = arg.to_str() else {
            error.get_or_insert_with(|| "a module argument is not valid UTF-8".to_string());
            continue;
        };
        match arg.split_once('=') {
            None if arg == "debug" => out.debug = true,
            Some(("config", v)) if !v.is_empty() => out.config = Some(PathBuf::from(v)),
            Some(("operation", v)) if !v.is_empty() => out.operation = Some(v.to_string()),
            Some(("log_socket", v)) if !v.is_empty() => out.log_socket = Some(PathBuf::from(v)),
            Some(("trust_owner", v)) => match v.parse() {
                Ok(uid) => out.trust_owner = Some(uid),
                Err(_) => {
                    error.get_or_insert_with(|| format!("trust_owner={v}: not a uid"));
                }
            },
            _ => {
                error.get_or_insert_with(|| format!("unknown module argument {arg:?}"));
            }
        }
    }
    (out, error)
}

fn item_string(item: Option<&CStr>) -> Option<String> {
    item.map(|s| String::from_utf8_lossy(s.to_bytes()).into_owned())
}

fn hook(pamh: &mut PamHandle, raw_args: &[&CStr], phase: Phase) -> PamResultCode {
    let phase_name = match phase {
        Phase::Auth => "auth",
        Phase::Account => "account",
    };
    let service_name = item_string(pamh.get_item::<Service>().ok().flatten().map(|s| s.0)).unwrap_or_default();
    let rhost = item_string(pamh.get_item::<RHost>().ok().flatten().map(|s| s.0)).unwrap_or_default();
    let user_item = match pamh.get_item::<User>() {
        Ok(Some(u)) => Some(u.0.to_bytes().to_vec()),
        _ => None,
    };
    let user_bytes = match user_item {
        Some(u) => u,
        // Only the auth phase may ask for a user name; the account phase never prompts, and an empty
        // name takes the unpaired path.
        None if phase == Phase::Auth => pamh.get_user(None).map(String::into_bytes).unwrap_or_default(),
        None => Vec::new(),
    };
    let user_display = String::from_utf8_lossy(&user_bytes).into_owned();

    let (args, bad_argument) = parse_args(raw_args);
    syslog::begin(
        syslog::Context {
            ident: if service_name.is_empty() {
                "pam_lockserver".into()
            } else {
                syslog::printable(&service_name)
            },
            prefix: syslog::prefix(&service_name, phase_name, &user_display, &rhost),
            socket: args
                .log_socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(syslog::DEFAULT_SOCKET)),
        },
        args.debug,
    );
    let code = match bad_argument {
        None => run(pamh, &args, phase, &service_name, &user_bytes, &rhost),
        Some(why) => {
            log::error!("configuration error: {}; denying", crate::escape::escape(&why));
            PamResultCode::PAM_SERVICE_ERR
        }
    };
    log::debug!("returning {code:?}");
    syslog::end();
    code
}

fn run(
    pamh: &mut PamHandle,
    args: &Args,
    phase: Phase,
    service_name: &str,
    user_bytes: &[u8],
    rhost: &str,
) -> PamResultCode {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH));
    let operation = args.operation.as_deref().unwrap_or(service_name);
    // What the auth phase records when it grants: the same user, operation and config file must match
    // for the account phase to skip its own check.
    let checked = format!(
        "{}\n{operation}\n{}",
        String::from_utf8_lossy(user_bytes),
        path.display()
    );
    // Before anything is read: the auth phase of this transaction already granted exactly this.
    if phase == Phase::Account && already_checked(pamh, &checked) {
        log::info!("lock already checked in the auth phase of this transaction: access granted");
        return PamResultCode::PAM_SUCCESS;
    }
    // The config, dictionary, store and service the previous transaction of this process built, when
    // still valid (see `cache`), or built now.
    let mut slot = cache::slot();
    let options = LoadOptions {
        trusted_owner: args.trust_owner,
    };
    let cache::Entry {
        config,
        dictionary,
        store,
        service,
        ..
    } = match cache::load(&mut slot, &path, options) {
        Ok(entry) => entry,
        Err(cache::LoadError::Config(e)) => {
            log::error!(
                "configuration error: {}; denying",
                crate::escape::escape(&e.to_string())
            );
            return PamResultCode::PAM_SERVICE_ERR;
        }
        Err(cache::LoadError::Dictionary(e)) => {
            log::error!("configuration error: dictionary {}; denying", crate::escape::escape(&e));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    // A user name that is not UTF-8 cannot be in the store: the empty name is refused by the store's
    // check and so takes the unpaired path, as any unknown user does.
    let user = match std::str::from_utf8(user_bytes) {
        Ok(u) => u,
        Err(_) => {
            log::warn!("the user name is not valid UTF-8");
            ""
        }
    };

    let login = Login {
        config,
        dictionary,
        user,
        operation,
        explicit_operation: args.operation.is_some(),
        phase,
        clock: crate::login::system_clock,
    };
    // The OpenSSH client's keyboard-interactive retries: a refusal of this connection a moment ago
    // stands, without a second wait or a second message.
    let connection = match phase {
        Phase::Auth => memory::connection_key(service_name, user_bytes, rhost),
        Phase::Account => None,
    };
    if let Some(refusal) = connection.as_deref().and_then(memory::recall) {
        log::warn!(
            "access denied again without asking: this sshd connection was refused less than {} s ago",
            memory::REMEMBER_SECS
        );
        let verdict = match refusal {
            memory::Refusal::Denied => Verdict::Deny,
            memory::Refusal::Unavailable => Verdict::Unavailable,
        };
        return to_pam_code(&verdict, phase);
    }
    let mut resources = LazyResources {
        config,
        store,
        service,
        store_checked: false,
    };
    let Outcome { verdict, lock_refusal } = {
        let mut prompter = ConvPrompter::new(pamh);
        login.decide_outcome(&mut resources, &mut prompter)
    };
    resources.drop_failed();
    if let Some(key) = connection.as_deref().filter(|_| lock_refusal) {
        match verdict {
            Verdict::Deny => memory::remember(key, memory::Refusal::Denied),
            Verdict::Unavailable => memory::remember(key, memory::Refusal::Unavailable),
            _ => {}
        }
    }
    if phase == Phase::Auth && verdict == Verdict::Allow {
        // Failing to record only costs the account phase a second service call.
        let _ = pamh.set_data(CHECKED_KEY, Box::new(checked));
    }
    to_pam_code(&verdict, phase)
}

fn already_checked(pamh: &PamHandle, what: &str) -> bool {
    // SAFETY: only this module stores data under CHECKED_KEY, and always a `String` (see `run`).
    match unsafe { pamh.get_data::<String>(CHECKED_KEY) } {
        Ok(checked) => checked == what,
        Err(_) => false,
    }
}

fn to_pam_code(verdict: &Verdict, phase: Phase) -> PamResultCode {
    use PamResultCode::*;
    match (verdict, phase) {
        (Verdict::Allow, _) => PAM_SUCCESS,
        (Verdict::Ignore, _) => PAM_IGNORE,
        (Verdict::ConfigError, _) => PAM_SERVICE_ERR,
        (Verdict::Deny, Phase::Auth) => PAM_AUTH_ERR,
        (Verdict::MaxTries, Phase::Auth) => PAM_MAXTRIES,
        (Verdict::Unavailable, Phase::Auth) => PAM_AUTHINFO_UNAVAIL,
        (Verdict::Deny | Verdict::MaxTries | Verdict::Unavailable, Phase::Account) => PAM_PERM_DENIED,
    }
}

/// The store and the service client: the cached ones (the store checked once per transaction), or
/// opened and built on first use and kept in the cache's slots.
struct LazyResources<'c> {
    config: &'c Config,
    store: &'c mut Option<CachedStore>,
    service: &'c mut Option<WatchedService>,
    /// Whether this transaction has checked the cached store yet.
    store_checked: bool,
}

impl LazyResources<'_> {
    /// What failed (unavailable, unreachable) in this transaction is not kept for the next.
    fn drop_failed(&mut self) {
        if self.store.as_ref().is_some_and(CachedStore::failed) {
            *self.store = None;
        }
        if self.service.as_ref().is_some_and(WatchedService::failed) {
            *self.service = None;
        }
    }
}

impl Resources for LazyResources<'_> {
    fn store(&mut self, deadline: std::time::Instant) -> Result<&dyn PairingStore, StoreError> {
        let location = store::Location::of(self.config);
        if !self.store_checked {
            self.store_checked = true;
            if self.store.as_ref().is_some_and(|s| !s.still_valid(&location, deadline)) {
                *self.store = None;
            }
        }
        if self.store.is_none() {
            // Opening (a busy SQLite file, a PostgreSQL connect) is charged to the login's budget.
            *self.store = Some(CachedStore::open(&location, deadline)?);
        }
        match self.store.as_ref() {
            Some(s) => Ok(s),
            None => Err(StoreError::Unavailable("store not opened".into())),
        }
    }

    fn store_fail_mode(&self) -> crate::config::FailMode {
        self.config.store_fail_mode
    }

    fn groups(&mut self, user: &str) -> Result<Vec<String>, String> {
        groups::of_user(user)
    }

    fn service(&mut self) -> Result<&dyn LockService, ServiceError> {
        if self.service.is_none() {
            *self.service = Some(WatchedService::new(service::from_config(self.config)?));
        }
        match self.service.as_ref() {
            Some(s) => Ok(s),
            None => Err(ServiceError::Unavailable("service not built".into())),
        }
    }
}

/// The PAM conversation as a [`Prompter`]. Each message goes in its own call: some applications
/// truncate messages at PAM_MAX_MSG_SIZE.
struct ConvPrompter<'h> {
    conv: Option<Conv<'h>>,
}

impl<'h> ConvPrompter<'h> {
    fn new(pamh: &'h PamHandle) -> Self {
        ConvPrompter {
            conv: pamh.get_item::<Conv>().ok().flatten(),
        }
    }

    fn say(&self, style: pam::constants::PamMessageStyle, text: &str) {
        if let Some(conv) = &self.conv {
            let _ = conv.send(style, text);
        }
    }
}

impl Prompter for ConvPrompter<'_> {
    fn prompt_secret(&mut self, prompt: &str) -> Option<Zeroizing<String>> {
        let conv = self.conv.as_ref()?;
        let prompt = crate::escape::for_terminal(prompt, MAX_MESSAGE_CHARS);
        let reply = conv.send(PAM_PROMPT_ECHO_OFF, &prompt).ok()??;
        // A reply that is not UTF-8 cannot match any code: give back an empty answer.
        Some(Zeroizing::new(reply.as_str().map(str::to_string).unwrap_or_default()))
    }

    fn error(&mut self, text: &str) {
        // The text may carry a server's message or a dictionary value: nothing in it may reorder or
        // rewrite the user's terminal.
        self.say(PAM_ERROR_MSG, &crate::escape::for_terminal(text, MAX_MESSAGE_CHARS));
    }

    fn info(&mut self, text: &str) {
        self.say(PAM_TEXT_INFO, &crate::escape::for_terminal(text, MAX_MESSAGE_CHARS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let (a, error) = parse_args(&[c"config=/x.conf", c"operation=sudo", c"debug", c"trust_owner=1000"]);
        assert_eq!(error, None);
        assert_eq!(a.config, Some(PathBuf::from("/x.conf")));
        assert_eq!(a.operation.as_deref(), Some("sudo"));
        assert!(a.debug);
        assert_eq!(a.trust_owner, Some(1000));
        assert!(parse_args(&[c"bogus"]).1.is_some());
        assert!(parse_args(&[c"config="]).1.is_some());
        assert!(parse_args(&[c"trust_owner=me"]).1.is_some());
        // The other arguments still count when one is bad.
        let (a, error) = parse_args(&[c"bogus", c"log_socket=/run/x.sock"]);
        assert!(error.is_some());
        assert_eq!(a.log_socket, Some(PathBuf::from("/run/x.sock")));
    }

    #[test]
    fn codes_per_phase() {
        assert_eq!(to_pam_code(&Verdict::Deny, Phase::Auth), PamResultCode::PAM_AUTH_ERR);
        assert_eq!(
            to_pam_code(&Verdict::Deny, Phase::Account),
            PamResultCode::PAM_PERM_DENIED
        );
        assert_eq!(
            to_pam_code(&Verdict::ConfigError, Phase::Account),
            PamResultCode::PAM_SERVICE_ERR
        );
        assert_eq!(
            to_pam_code(&Verdict::Unavailable, Phase::Auth),
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        );
    }
}
