//! The CLI verbs. Messages a user reads come from the dictionary; each error says what to do next.

use super::{Exit, fail};
use lockserver::accounts::{self, AccountError, Accounts, NotProven, UserStatus};
use lockserver::config::{Config, ServiceKind};
use lockserver::dictionary::{Dictionary, Section};
use lockserver::login::system_clock;
use lockserver::service::{self, Access, ServiceError, SharedService};
use lockserver::store::{self, OpenMode, PairingStore, StoreError};
use std::time::Instant;

pub(super) type Store = Box<dyn PairingStore + Send + Sync>;

pub(super) struct Context<'a> {
    pub config: &'a Config,
    pub dictionary: &'a Dictionary,
}

impl Context<'_> {
    pub(super) fn store(&self) -> Result<Store, Exit> {
        store::open_at(
            &store::Location::of(self.config),
            OpenMode::Create,
            store::default_deadline(),
        )
        .map_err(|e| fail(Exit::Store, &format!("{e} ({})", self.config.store)))
    }

    pub(super) fn service(&self) -> Result<SharedService, Exit> {
        service::from_config(self.config).map_err(|e| fail(Exit::Config, &format!("configuration error: {e}")))
    }

    pub(super) fn text(&self, section: Section, key: &str, user: &str) -> String {
        self.dictionary.format(section, key, &[("user", user)])
    }

    /// Maps a service error of a pairing request to the user's message and exit code.
    pub(super) fn pairing_error(&self, e: ServiceError) -> Exit {
        match e {
            ServiceError::Api { code, message } => fail(
                Exit::Refused,
                &self
                    .dictionary
                    .service_error(Section::Pairing, "pairerror", code, &message),
            ),
            ServiceError::Misconfigured { code, message } => fail(
                Exit::Config,
                &format!(
                    "the service rejects this host's configuration ({code}: {message}); check app_id, secret \
                     and this host's clock"
                ),
            ),
            ServiceError::NotPaired { .. } => fail(Exit::PairingState, "the service says the account is not paired"),
            ServiceError::Unavailable(why) => fail(
                Exit::Unavailable,
                // The dictionary's text is a sentence of its own: the reason follows in brackets.
                &format!(
                    "{} ({})",
                    self.dictionary.get(Section::Lock, "unavailable").trim_end(),
                    lockserver::escape::escape(&why)
                ),
            ),
        }
    }

    /// Runs `action` with the store and the service, mapping failures to messages and exit codes.
    pub(super) fn with_accounts(
        &self,
        user: &str,
        action: impl FnOnce(&Accounts<'_>) -> Result<Exit, AccountError>,
    ) -> Exit {
        let store = match self.store() {
            Ok(s) => s,
            Err(code) => return code,
        };
        let service = match self.service() {
            Ok(s) => s,
            Err(code) => return code,
        };
        let accounts = Accounts {
            config: self.config,
            store: store.as_ref(),
            service: service.as_ref(),
        };
        match action(&accounts) {
            Ok(code) => code,
            Err(e) => self.account_error(user, e),
        }
    }

    /// The user's message and exit code for a failed action.
    pub(super) fn account_error(&self, user: &str, e: AccountError) -> Exit {
        let d = self.dictionary;
        match e {
            AccountError::InvalidCode => fail(Exit::Usage, d.get(Section::Pairing, "invalid_code")),
            AccountError::NotPaired => fail(Exit::PairingState, &self.text(Section::Pairing, "not_paired", user)),
            AccountError::AlreadyPaired => {
                fail(Exit::PairingState, &self.text(Section::Pairing, "already_paired", user))
            }
            AccountError::UnknownOperation(name) => {
                fail(Exit::Usage, &format!("no operation named {name} in the config"))
            }
            AccountError::TotpDisabled => fail(Exit::Refused, d.get(Section::Totp, "operationdisabled")),
            AccountError::TotpNotEnrolled => fail(Exit::PairingState, &self.text(Section::Totp, "not_enabled", user)),
            AccountError::TotpAlreadyEnrolled => fail(
                Exit::PairingState,
                &format!("{user} already has TOTP on; run `lockserver totp disable` first to make a new one"),
            ),
            AccountError::RateLimited => fail(Exit::Refused, d.get(Section::Totp, "too_many_attempts")),
            AccountError::Store(e) => fail(Exit::Store, &e.to_string()),
            AccountError::Service(ServiceError::NotPaired { .. }) => fail(
                Exit::PairingState,
                &format!("{user} was unpaired from the phone: run `lockserver unpair` and pair again"),
            ),
            AccountError::NoPendingKey => {
                fail(Exit::PairingState, &self.text(Section::Pairing, "no_pending_key", user))
            }
            AccountError::NotClaimed { key } => fail(
                Exit::PairingState,
                &self.dictionary.format(
                    Section::Pairing,
                    "key_not_claimed",
                    &[("user", user), ("code", &lockserver::escape::escape(&key))],
                ),
            ),
            AccountError::Service(e) => self.pairing_error(e),
        }
    }

    /// Pairing a user this machine does not know is refused unless asked for: with a shared store the
    /// user may live on other hosts of the fleet, but a typo would pair a user nobody is.
    pub(crate) fn known_user(&self, user: &str, allow_unknown_user: bool) -> Result<(), Exit> {
        if super::actor::user_exists(user) != Some(false) || allow_unknown_user {
            return Ok(());
        }
        let shared = store::Location::of(self.config).is_networked();
        let hint = if shared {
            "; the store is shared: if the user exists on other hosts of the fleet, add \
             --allow-unknown-user (check the spelling: a typo would pair a user nobody is)"
        } else {
            ""
        };
        Err(fail(Exit::Usage, &format!("no such user on this system: {user}{hint}")))
    }

    pub fn pair(&self, user: &str, code: &str, allow_unknown_user: bool) -> Exit {
        if self.config.service == ServiceKind::Pingid {
            return fail(Exit::Usage, &self.text(Section::Pairing, "wrong_flow_code", user));
        }
        if let Err(e) = accounts::check_pairing_code(code) {
            return self.account_error(user, e);
        }
        if let Err(code) = self.known_user(user, allow_unknown_user) {
            return code;
        }
        let common_name = format!("{user}@{}", hostname());
        self.with_accounts(user, |a| {
            a.pair(user, code, &common_name)?;
            println!("{}", self.text(Section::Pairing, "paired", user));
            Ok(Exit::Ok)
        })
    }

    /// Unpairs `user`. Through sudo (`self_service`) the caller must first prove they hold the factor the
    /// unpairing removes: a borrowed password alone must not shed the lock (#9).
    pub fn unpair(&self, user: &str, force: bool, self_service: bool) -> Exit {
        if self_service && let Err(code) = self.prove_factor(user) {
            return code;
        }
        let exit = self.with_accounts(user, |a| {
            for warning in a.unpair(user, force)? {
                eprintln!("lockserver: warning: the service could not finish unpairing ({warning}); removed locally");
            }
            println!("{}", self.text(Section::Pairing, "unpaired", user));
            Ok(Exit::Ok)
        });
        if matches!(exit, Exit::Unavailable | Exit::Refused) {
            eprintln!("lockserver: nothing was changed; run again, or add --force to remove the local pairing anyway");
        }
        exit
    }

    /// Checks that the self-service caller still holds `user`'s factors (the latch open now; a current
    /// TOTP code, asked for at a prompt, when TOTP is on). Root is never asked.
    pub(super) fn prove_factor(&self, user: &str) -> Result<(), Exit> {
        let mut outcome = Ok(());
        let exit = self.with_accounts(user, |a| {
            outcome = a.prove_factor(
                user,
                || crate::prompt::code(&format!("Verification code for {user}: ")),
                system_clock(),
            );
            Ok(Exit::Ok)
        });
        if exit != Exit::Ok {
            return Err(exit);
        }
        match outcome {
            Ok(()) => Ok(()),
            Err(NotProven::Account(e)) => Err(self.account_error(user, e)),
            Err(NotProven::Locked) => Err(fail(
                Exit::NotAllowed,
                &format!(
                    "{user}'s latch is locked: open it in the app first, then run this again (nothing was changed)"
                ),
            )),
            Err(why @ (NotProven::CodeNeeded | NotProven::WrongCode)) => Err(fail(
                Exit::NotAllowed,
                &format!("{why}: a current code from {user}'s authenticator app is needed (nothing was changed)"),
            )),
        }
    }

    pub fn status(&self, user: &str, operation: Option<&str>) -> Exit {
        if self.config.service == ServiceKind::Pingid {
            // A PingID status would push to the phone: show the pairing instead.
            return self.pairing_status(user);
        }
        let scope = operation.map_or_else(|| "application".to_string(), |name| format!("operation {name}"));
        self.with_accounts(user, |a| {
            Ok(match a.status(user, operation, false)? {
                UserStatus::CheckOff => {
                    println!("{user}: the lock check is off for {scope} (config)");
                    Exit::Ok
                }
                UserStatus::Checked(Access::Locked | Access::Refused(_)) => {
                    println!("{user}: locked ({scope})");
                    Exit::Locked
                }
                UserStatus::Checked(_) => {
                    println!("{user}: open ({scope})");
                    Exit::Ok
                }
            })
        })
    }

    pub fn users(&self) -> Exit {
        let store = match self.store() {
            Ok(s) => s,
            Err(code) => return code,
        };
        match store.list(store::default_deadline()) {
            Ok(list) => {
                println!("{:<24} {:<8} {:<6} ACCOUNT", "USER", "ENABLED", "TOTP");
                for p in list {
                    println!(
                        "{:<24} {:<8} {:<6} {}",
                        p.user,
                        if p.enabled { "yes" } else { "no" },
                        if p.totp_enabled { "on" } else { "off" },
                        p.account_id
                    );
                }
                Exit::Ok
            }
            Err(e) => fail(Exit::Store, &e.to_string()),
        }
    }
}

impl Context<'_> {
    /// `lockserver migrate`: the store's schema brought to this build's version (a SQLite store that
    /// does not exist yet is created).
    pub fn migrate(&self) -> Exit {
        let location = store::Location::of(self.config);
        match store::migrate(&location, store::default_deadline()) {
            Ok(m) if m.from == m.to => {
                println!("store: schema version {} (up to date, nothing to do)", m.to);
                Exit::Ok
            }
            Ok(m) => {
                println!("store: migrated from schema version {} to {}", m.from, m.to);
                Exit::Ok
            }
            Err(e) => fail(
                Exit::Store,
                &format!("{e} ({}); nothing was changed", store::redact(&self.config.store)),
            ),
        }
    }

    /// `lockserver store copy FROM TO`: every record of one store written to another in one
    /// transaction. The config's `store_password_file` and `store_ca_file` serve both URLs.
    pub fn store_copy(&self, from_url: &str, to_url: &str, force: bool) -> Exit {
        if from_url == to_url {
            return fail(Exit::Usage, "store copy: FROM_URL and TO_URL are the same store");
        }
        let located = |url| store::Location {
            url,
            password: self.config.store_password.as_ref(),
            ca_file: self.config.store_ca_file.as_deref(),
        };
        // Long enough for a large store over the network; each call still has a bound.
        let deadline = || Instant::now() + COPY_TIMEOUT;
        let source = match store::open_at(&located(from_url), OpenMode::Existing, deadline()) {
            Ok(s) => s,
            Err(StoreError::Missing) => {
                return fail(
                    Exit::Store,
                    &format!(
                        "store copy: {} does not exist (nothing to copy)",
                        store::redact(from_url)
                    ),
                );
            }
            Err(e) => return fail(Exit::Store, &format!("store copy: source: {e}; nothing was changed")),
        };
        let snapshot = match source.export(deadline()) {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    Exit::Store,
                    &format!("store copy: reading the source: {e}; nothing was changed"),
                );
            }
        };
        let target = match store::open_at(&located(to_url), OpenMode::Create, deadline()) {
            Ok(s) => s,
            Err(e) => return fail(Exit::Store, &format!("store copy: target: {e}; nothing was copied")),
        };
        match target.import(&snapshot, force, deadline()) {
            Ok(()) => {
                let records = &snapshot.records;
                let totp = records.iter().filter(|r| r.pairing.totp_enabled).count();
                let local = records.iter().filter(|r| r.totp_secret.is_some()).count();
                println!(
                    "copied {} pairings ({totp} with TOTP on, {local} with a local TOTP secret) and {} pending \
                     pairings from {} to {}",
                    records.len(),
                    snapshot.pending.len(),
                    store::redact(from_url),
                    store::redact(to_url)
                );
                Exit::Ok
            }
            Err(StoreError::NotEmpty { pairings }) => fail(
                Exit::Store,
                &format!(
                    "store copy: {} already holds {pairings} pairings (pending ones counted); nothing was copied (add --force to \
                     replace them)",
                    store::redact(to_url)
                ),
            ),
            Err(e) => fail(
                Exit::Store,
                &format!("store copy: writing the target: {e}; nothing was copied"),
            ),
        }
    }
}

/// How long each step of `store copy` may take.
const COPY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) fn try_login(service: &str, user: &str) -> Exit {
    match crate::try_login::try_login(service, user) {
        Ok(report) => {
            println!("authenticate: {}", report.auth);
            if let Some(account) = &report.account {
                println!("account: {account}");
            }
            if report.success {
                println!("result: the login would be ALLOWED");
                Exit::Ok
            } else {
                println!("result: the login would be REFUSED");
                Exit::Locked
            }
        }
        Err(e) => fail(Exit::Config, &e),
    }
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
