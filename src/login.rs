//! The login decision: config + store + service + a prompter → [`Verdict`]. No PAM types here, so every
//! rule is testable with fakes; `crate::pam` only translates.
//!
//! Rules (DESIGN §3, §5): a configuration error never lets anyone in; `fail_mode` covers only a service
//! that is unreachable, slow or incoherent; answers that prove a misconfiguration always deny.

#![forbid(unsafe_code)]

use crate::config::{Config, FailMode, OperationRule, ServiceUnpaired, TotpSource, UnpairedPolicy};
use crate::dictionary::{Dictionary, Section};
use crate::escape::{escape, quoted};
use crate::local_totp;
use crate::service::{Access, Approval, Challenge, CodeAnswer, CodeCheck, LockService, ServiceError, Text, totp_api};
use crate::store::{Pairing, PairingStore, StoreError};
use crate::totp;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Which PAM phase asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pam_sm_authenticate`: lock check, then codes.
    Auth,
    /// `pam_sm_acct_mgmt`: the lock check alone, never a prompt.
    Account,
}

/// What the caller (PAM, C API) should answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the login go on (PAM_SUCCESS).
    Allow,
    /// Not ours to decide (PAM_IGNORE): lockserver disabled, user unpaired with `unpaired = "ignore"`.
    Ignore,
    /// Refused: latch locked, wrong code, service down with `fail_mode = "secure"`, unpaired with "deny".
    Deny,
    /// Too many wrong codes (PAM_MAXTRIES).
    MaxTries,
    /// The service cannot be asked and `fail_mode = "secure"` (PAM_AUTHINFO_UNAVAIL).
    Unavailable,
    /// This host is misconfigured: config, store, or an answer proving it (PAM_SERVICE_ERR).
    ConfigError,
}

/// Talks to the person logging in. Implemented over the PAM conversation, and by fakes in tests.
pub trait Prompter {
    /// Asks for a hidden answer. `None` when the user gave none or the conversation failed.
    fn prompt_secret(&mut self, prompt: &str) -> Option<Zeroizing<String>>;
    /// Shows an error text.
    fn error(&mut self, text: &str);
    /// Shows an information text (PAM_TEXT_INFO), e.g. "Approve the login on your phone".
    fn info(&mut self, text: &str);
}

/// Where the decision gets its store and service. Both are made on first use, so a login that does not
/// need them (disabled, unpaired) never opens a database or builds a TLS client.
pub trait Resources {
    /// The store, opened (connected, schema checked) by `deadline` on first use.
    fn store(&mut self, deadline: Instant) -> Result<&dyn PairingStore, StoreError>;
    /// What an unreachable store means for the login (`store_fail_mode`, default `fail_mode`).
    fn store_fail_mode(&self) -> FailMode;
    fn service(&mut self) -> Result<&dyn LockService, ServiceError>;
    /// The names of the groups `user` is in (through NSS), read only when the config has
    /// `exempt_groups` or `require_groups`. Without a way to read them, the user is checked.
    fn groups(&mut self, _user: &str) -> Result<Vec<String>, String> {
        Err("no group lookup here".into())
    }
}

/// A [`Verdict`] and where it came from, for callers that remember refusals (the PAM module does, per
/// sshd connection, so the OpenSSH client's retries do not ask again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The lock itself refused (locked, unpaired with "deny", a service refusal, or the service
    /// unreachable with `fail_mode = "secure"`): asking again within seconds would answer the same.
    pub lock_refusal: bool,
}

/// The time the login's store and service calls may still take, together: opening the store, each query
/// and each service call are charged to it. Prompt time (a person typing) is not counted: `timeout_ms`
/// bounds what the store and the service cost, not how fast people type.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    remaining: Duration,
}

impl Budget {
    pub fn new(total: Duration) -> Budget {
        Budget { remaining: total }
    }

    /// Runs one store or service call with a deadline of what is left, and charges its time.
    pub fn spend<T>(&mut self, call: impl FnOnce(Instant) -> T) -> T {
        let start = Instant::now();
        let result = call(start + self.remaining);
        self.charge_since(start);
        result
    }

    /// The deadline of a call starting now; charge it with [`Budget::charge_since`] when it returns.
    pub fn deadline_from(&self, start: Instant) -> Instant {
        start + self.remaining
    }

    /// Charges the time since `start`.
    pub fn charge_since(&mut self, start: Instant) {
        self.remaining = self.remaining.saturating_sub(start.elapsed());
    }
}

/// One login to decide.
pub struct Login<'a> {
    pub config: &'a Config,
    pub dictionary: &'a Dictionary,
    /// Local user name.
    pub user: &'a str,
    /// The operation NAME: `operation=` argument, else the PAM service name.
    pub operation: &'a str,
    /// Whether `operation` came from an explicit `operation=` argument (which must name something).
    pub explicit_operation: bool,
    pub phase: Phase,
    /// Unix time in seconds (injected so tests can pin it).
    pub clock: fn() -> u64,
}

/// The system clock as unix seconds.
pub fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Login<'_> {
    /// Decides the login. Logs every outcome (via `log`) with the reason; never a secret or a code.
    pub fn decide(&self, res: &mut dyn Resources, prompter: &mut dyn Prompter) -> Verdict {
        self.decide_outcome(res, prompter).verdict
    }

    /// [`Self::decide`], saying whether a refusal came from the lock check.
    pub fn decide_outcome(&self, res: &mut dyn Resources, prompter: &mut dyn Prompter) -> Outcome {
        let mut lock_refusal = false;
        let verdict = self.decide_inner(res, prompter, &mut lock_refusal);
        let lock_refusal = lock_refusal && matches!(verdict, Verdict::Deny | Verdict::Unavailable);
        Outcome { verdict, lock_refusal }
    }

    fn decide_inner(&self, res: &mut dyn Resources, prompter: &mut dyn Prompter, lock_refusal: &mut bool) -> Verdict {
        let config = self.config;
        if !config.enabled {
            log::info!("lockserver is disabled in the config (enabled = false): stepping aside");
            return Verdict::Ignore;
        }
        if self.explicit_operation && !config.has_operation(self.operation) {
            log::error!(
                "configuration error: operation={} names no entry of `operations` in the config",
                crate::escape::field(self.operation)
            );
            prompter.error(self.dictionary.get(Section::Lock, "misconfigured"));
            return Verdict::ConfigError;
        }
        if let Some(verdict) = self.group_scope(res) {
            return verdict;
        }

        let mut budget = Budget::new(config.timeout);
        let pairing = match self.pairing(res, &mut budget) {
            Ok(Some(p)) => p,
            Ok(None) => {
                *lock_refusal = true;
                return self.unpaired(prompter, "no pairing in the store");
            }
            Err(verdict) => {
                match verdict {
                    Verdict::ConfigError => prompter.error(self.dictionary.get(Section::Lock, "misconfigured")),
                    Verdict::Unavailable => prompter.error(self.dictionary.get(Section::Lock, "unavailable")),
                    _ => {}
                }
                return verdict;
            }
        };

        let operation_id = match config.operation_rule(self.operation) {
            OperationRule::Off => {
                log::info!(
                    "lock check is off for operation {} (config)",
                    crate::escape::field(self.operation)
                );
                None
            }
            OperationRule::Check(id) => Some(Some(id)),
            OperationRule::ApplicationWide => Some(None),
        };
        if let Some(op_id) = operation_id {
            let verdict = self.lock_check(res, prompter, &pairing, op_id.as_deref(), &mut budget, lock_refusal);
            if verdict != Verdict::Allow {
                return verdict;
            }
        }
        if self.phase == Phase::Auth {
            let verdict = self.totp_check(res, prompter, &pairing, &mut budget);
            if verdict != Verdict::Allow {
                return verdict;
            }
        }
        log::info!("access granted");
        Verdict::Allow
    }

    /// `exempt_groups` / `require_groups`: `Some(Ignore)` when this user is not ours to check. A
    /// failed group lookup checks the user (the safe side: a break-glass account then needs the lock).
    fn group_scope(&self, res: &mut dyn Resources) -> Option<Verdict> {
        let config = self.config;
        if config.exempt_groups.is_empty() && config.require_groups.is_empty() {
            return None;
        }
        let groups = match res.groups(self.user) {
            Ok(g) => g,
            Err(why) => {
                log::warn!("cannot read the user's groups ({}): checking the user", escape(&why));
                return None;
            }
        };
        if let Some(group) = config.exempt_groups.iter().find(|g| groups.contains(g)) {
            log::warn!(
                "user is in the exempt group {}: not checked (exempt_groups)",
                crate::escape::field(group)
            );
            return Some(Verdict::Ignore);
        }
        if !config.require_groups.is_empty() && !config.require_groups.iter().any(|g| groups.contains(g)) {
            log::info!("user is in none of require_groups: not checked");
            return Some(Verdict::Ignore);
        }
        None
    }

    fn pairing(&self, res: &mut dyn Resources, budget: &mut Budget) -> Result<Option<Pairing>, Verdict> {
        let (fail_mode, opened) = open_store(res, budget);
        let store = match opened {
            Ok(store) => store,
            Err(StoreError::Missing) => {
                // Loud: a mistyped `store` or a deleted database makes everyone unpaired.
                log::error!(
                    "the pairing store {} does not exist: treating the user as unpaired",
                    self.config.store
                );
                return Ok(None);
            }
            Err(e) => return Err(store_failure(fail_mode, e)),
        };
        match budget.spend(|deadline| store.get(self.user, deadline)) {
            Ok(Some(p)) if p.enabled => Ok(Some(p)),
            Ok(_) => Ok(None),
            Err(StoreError::Missing) => Ok(None),
            Err(StoreError::Invalid(why)) => {
                log::warn!("user name cannot be paired ({why}): treating as unpaired");
                Ok(None)
            }
            Err(e) => Err(store_failure(fail_mode, e)),
        }
    }

    fn unpaired(&self, prompter: &mut dyn Prompter, why: &str) -> Verdict {
        match self.config.unpaired {
            UnpairedPolicy::Ignore => {
                log::info!("user not paired ({why}): ignored (unpaired = \"ignore\")");
                Verdict::Ignore
            }
            UnpairedPolicy::Allow => {
                log::info!("user not paired ({why}): allowed (unpaired = \"allow\")");
                Verdict::Allow
            }
            UnpairedPolicy::Deny => {
                log::warn!("user not paired ({why}): denied (unpaired = \"deny\")");
                prompter.error(self.dictionary.get(self.texts(), "not_paired"));
                Verdict::Deny
            }
        }
    }

    fn service<'r>(&self, res: &'r mut dyn Resources) -> Result<&'r dyn LockService, Verdict> {
        res.service().map_err(|e| {
            log::error!(
                "configuration error: cannot build the service client: {}",
                escape(&e.to_string())
            );
            Verdict::ConfigError
        })
    }

    /// What the logs call the lock.
    fn lock_name(&self) -> &'static str {
        match self.config.service {
            crate::config::ServiceKind::Latch => "latch",
            crate::config::ServiceKind::Pingid => "PingID",
        }
    }

    /// The section of the dictionary the service's texts are in.
    fn texts(&self) -> Section {
        Section::for_service(self.config.service)
    }

    fn lock_check(
        &self,
        res: &mut dyn Resources,
        prompter: &mut dyn Prompter,
        pairing: &Pairing,
        operation_id: Option<&str>,
        budget: &mut Budget,
        lock_refusal: &mut bool,
    ) -> Verdict {
        // Every refusal of the status is the lock's; a wrong one-time password is the user's.
        *lock_refusal = true;
        let service = match self.service(res) {
            Ok(s) => s,
            Err(v) => return v,
        };
        let want_code = self.phase == Phase::Auth;
        let answer = budget.spend(|deadline| service.status(&pairing.account_id, operation_id, want_code, deadline));
        let scope = operation_id.map_or_else(|| "application".to_string(), |id| format!("operation {id}"));
        match answer {
            Ok(access) => self.follow(prompter, access, &scope, budget, lock_refusal),
            Err(ServiceError::NotPaired { .. }) => self.unpaired_at_service(prompter),
            Err(ServiceError::Api { code, message }) => {
                // An answer, not an outage: fail_mode does not apply.
                log::error!(
                    "access denied: the service refused the status request ({code}: {})",
                    quoted(&message)
                );
                self.refused_request(prompter, ServiceError::Api { code, message })
            }
            Err(e) => self.service_failure(prompter, e),
        }
    }

    /// The store has this user as paired but the service says not paired (removed from the phone's
    /// side): `service_unpaired` decides whether that sheds the lock.
    fn unpaired_at_service(&self, prompter: &mut dyn Prompter) -> Verdict {
        match self.config.service_unpaired {
            ServiceUnpaired::Deny => {
                log::warn!(
                    "access denied: the store has the user as paired but the service says not paired \
                     (pairing removed at the service?); pair again or remove the pairing \
                     (service_unpaired = \"deny\")"
                );
                prompter.error(self.dictionary.get(self.texts(), "unpaired_at_service"));
                Verdict::Deny
            }
            ServiceUnpaired::AsUnpaired => {
                log::warn!("the service says the account is not paired (unpaired on the phone?)");
                self.unpaired(
                    prompter,
                    "the service says not paired; service_unpaired = \"as_unpaired\"",
                )
            }
        }
    }

    /// Acts on the service's answer: let in, refuse with its text, ask for a code, or wait for the
    /// person. One path per kind of answer, whatever the service.
    ///
    /// A push the phone refused or left unanswered stays a refusal of the lock (`lock_refusal`): the
    /// OpenSSH client retries keyboard-interactive by itself, and each retry must not push again nor
    /// wait `push_timeout_secs` again. Once a code is asked, a refusal is the user's typing.
    fn follow(
        &self,
        prompter: &mut dyn Prompter,
        access: Access<'_>,
        scope: &str,
        budget: &mut Budget,
        lock_refusal: &mut bool,
    ) -> Verdict {
        match access {
            Access::Open => {
                log::info!("{} open ({scope})", self.lock_name());
                Verdict::Allow
            }
            Access::Locked => {
                log::warn!("access denied: {} locked ({scope})", self.lock_name());
                prompter.error(self.dictionary.get(self.texts(), "locked"));
                Verdict::Deny
            }
            Access::Refused(Text(key)) => {
                log::warn!("access denied: refused on the phone ({key}, {scope})");
                prompter.error(self.dictionary.get(self.texts(), key));
                Verdict::Deny
            }
            Access::CodeRequired(challenge) => {
                log::info!("the service asks for a one-time password ({scope})");
                *lock_refusal = false;
                self.one_time_password(prompter, challenge, budget)
            }
            Access::Pending(approval) => self.wait_for_person(prompter, approval.as_ref(), scope, budget, lock_refusal),
        }
    }

    /// A push: tell the person, then poll until they answer or the service's patience is over (then
    /// withdraw the question). The wait is not charged to the budget; each poll is.
    fn wait_for_person(
        &self,
        prompter: &mut dyn Prompter,
        approval: &dyn Approval,
        scope: &str,
        budget: &mut Budget,
        lock_refusal: &mut bool,
    ) -> Verdict {
        log::info!("waiting for the person to answer on the phone ({scope})");
        prompter.info(self.dictionary.get(self.texts(), "approve_on_phone"));
        let give_up = Instant::now() + approval.patience();
        loop {
            let now = Instant::now();
            if now >= give_up {
                budget.spend(|deadline| approval.cancel(deadline));
                log::warn!(
                    "access denied: no answer on the phone within {} s ({scope})",
                    approval.patience().as_secs()
                );
                prompter.error(self.dictionary.get(self.texts(), "timeout"));
                return Verdict::Deny;
            }
            std::thread::sleep(approval.interval().min(give_up - now));
            match budget.spend(|deadline| approval.poll(deadline)) {
                Ok(None) => {}
                Ok(Some(access)) => return self.follow(prompter, access, scope, budget, lock_refusal),
                Err(e) => return self.failure_after_asking(prompter, e),
            }
        }
    }

    /// The service failed after it had asked the person (a push, a code): it was reachable, so this
    /// is no outage to fail open on — else ignoring the push or typing wrong codes could spend the
    /// budget until `fail_mode = "safe"` lets in.
    fn failure_after_asking(&self, prompter: &mut dyn Prompter, error: ServiceError) -> Verdict {
        match error {
            ServiceError::Unavailable(why) => {
                log::error!(
                    "access denied: the service failed after asking the person: {}",
                    escape(&why)
                );
                prompter.error(self.dictionary.get(self.texts(), "unavailable"));
                Verdict::Unavailable
            }
            ServiceError::NotPaired { .. } => {
                // Unpaired while it asked: whatever service_unpaired says, nobody approved this login.
                log::error!("access denied: the service says the account is not paired any more");
                prompter.error(self.dictionary.get(self.texts(), "unpaired_at_service"));
                Verdict::Deny
            }
            e @ ServiceError::Api { .. } => {
                log::error!(
                    "access denied: the service refused the request ({})",
                    escape(&e.to_string())
                );
                self.refused_request(prompter, e)
            }
            e @ ServiceError::Misconfigured { .. } => self.service_failure(prompter, e),
        }
    }

    /// The service answered a request with an error of its own: denied, with its text.
    fn refused_request(&self, prompter: &mut dyn Prompter, error: ServiceError) -> Verdict {
        let (code, message) = match &error {
            ServiceError::Api { code, message } | ServiceError::Misconfigured { code, message } => {
                (*code, message.as_str())
            }
            _ => (error.service_code(), ""),
        };
        prompter.error(&self.dictionary.service_error(self.texts(), "error", code, message));
        Verdict::Deny
    }

    /// What a failed service call means for the login.
    fn service_failure(&self, prompter: &mut dyn Prompter, error: ServiceError) -> Verdict {
        match error {
            ServiceError::Misconfigured { code, message } => {
                log::error!(
                    "access denied: the service rejects this host's configuration ({code}: {}); \
                     check the service's ids and keys, the clock and the operation ids",
                    quoted(&message)
                );
                prompter.error(self.dictionary.get(self.texts(), "misconfigured"));
                Verdict::ConfigError
            }
            other => match self.config.fail_mode {
                FailMode::Secure => {
                    log::error!("access denied (fail_mode = secure): {}", escape(&other.to_string()));
                    prompter.error(self.dictionary.get(self.texts(), "unavailable"));
                    Verdict::Unavailable
                }
                FailMode::Safe => {
                    log::warn!(
                        "FAIL-OPEN: access granted without a lock check (fail_mode = safe): {}",
                        escape(&other.to_string())
                    );
                    Verdict::Allow
                }
            },
        }
    }

    fn one_time_password(&self, prompter: &mut dyn Prompter, challenge: Challenge<'_>, budget: &mut Budget) -> Verdict {
        let texts = self.texts();
        if self.phase == Phase::Account {
            // The account phase never prompts (a key-only login): the user must come back with a
            // login that can be asked.
            log::warn!("access denied: the service asks for a one-time password, which the account phase cannot ask");
            prompter.error(self.dictionary.get(texts, "otp_needs_prompt"));
            return Verdict::Deny;
        }
        for attempt in 1..=self.config.totp.max_attempts {
            let Some(answer) = prompter.prompt_secret(self.dictionary.get(texts, "otp_prompt")) else {
                log::warn!("access denied: no one-time password given");
                return Verdict::Deny;
            };
            let answer = answer.trim();
            let result = match &challenge {
                Challenge::LocalToken(token) => {
                    let expected = token.expose().as_bytes();
                    if answer.len() == expected.len() && bool::from(answer.as_bytes().ct_eq(expected)) {
                        CodeAnswer::Valid
                    } else {
                        CodeAnswer::TryAgain(Text("otp_invalid"))
                    }
                }
                Challenge::Remote(code) => match budget.spend(|deadline| code.verify(answer, deadline)) {
                    Ok(result) => result,
                    Err(e) => return self.failure_after_asking(prompter, e),
                },
            };
            match result {
                CodeAnswer::Valid => {
                    log::info!("one-time password accepted");
                    return Verdict::Allow;
                }
                CodeAnswer::TryAgain(Text(key)) => {
                    log::warn!(
                        "wrong one-time password (attempt {attempt} of {})",
                        self.config.totp.max_attempts
                    );
                    prompter.error(self.dictionary.get(texts, key));
                }
                CodeAnswer::Refused(Text(key)) => {
                    log::warn!("access denied: the service takes no more one-time passwords ({key})");
                    prompter.error(self.dictionary.get(texts, key));
                    return Verdict::MaxTries;
                }
            }
        }
        log::warn!("access denied: too many wrong one-time passwords");
        Verdict::MaxTries
    }

    fn totp_check(
        &self,
        res: &mut dyn Resources,
        prompter: &mut dyn Prompter,
        pairing: &Pairing,
        budget: &mut Budget,
    ) -> Verdict {
        if !pairing.totp_enabled {
            return Verdict::Allow;
        }
        if !self.config.totp_enabled() {
            log::info!("TOTP is switched off (operations flag TOTP): no code asked");
            return Verdict::Allow;
        }
        match self.config.totp.source {
            TotpSource::Latch => self.latch_totp(res, prompter, pairing, budget),
            TotpSource::Local => self.local_totp(res, prompter, budget),
        }
    }

    /// RFC 6238 in-process: no service call; replayed codes refused; failures rate-limited per user.
    fn local_totp(&self, res: &mut dyn Resources, prompter: &mut dyn Prompter, budget: &mut Budget) -> Verdict {
        let dict = self.dictionary;
        let t = &self.config.totp;
        let (fail_mode, opened) = open_store(res, budget);
        let store = match opened {
            Ok(s) => s,
            Err(e) => return self.store_denial(prompter, fail_mode, e),
        };
        let state = match budget.spend(|deadline| store.local_totp(self.user, deadline)) {
            Ok(Some(state)) => state,
            Ok(None) => {
                log::error!("TOTP is enabled for the user but the store has no local secret: denied");
                return Verdict::ConfigError;
            }
            Err(e) => return self.store_denial(prompter, fail_mode, e),
        };
        let Some(secret) = totp::decode_secret(state.secret.expose()) else {
            log::error!("the stored TOTP secret is not valid base32: denied");
            return Verdict::ConfigError;
        };
        let secret = Zeroizing::new(secret);
        let verifier = local_totp::Verifier {
            store,
            config: t,
            user: self.user,
        };
        for attempt in 1..=t.max_attempts {
            let now = (self.clock)();
            match budget.spend(|deadline| verifier.limited(now, deadline)) {
                Ok(Some(failures)) => return self.rate_limited(prompter, &format!("{failures} wrong codes")),
                Ok(None) => {}
                Err(e) => return self.store_denial(prompter, fail_mode, e),
            }
            let Some(code) = prompter.prompt_secret(dict.get(Section::Totp, "two_fa_field_tooltip")) else {
                log::warn!("access denied: no verification code given");
                return Verdict::Deny;
            };
            let now = (self.clock)();
            let checked = budget.spend(|deadline| verifier.check(&secret, &code, now, true, deadline));
            match checked {
                Ok(local_totp::Check::Accepted) => {
                    log::info!("verification code accepted");
                    return Verdict::Allow;
                }
                Ok(local_totp::Check::RateLimited { count }) => {
                    return self.rate_limited(prompter, &format!("{count} codes"));
                }
                Ok(local_totp::Check::Replayed) => log::warn!("a verification code was replayed"),
                Ok(local_totp::Check::Wrong) => {}
                Err(e) => return self.store_denial(prompter, fail_mode, e),
            }
            log::warn!("wrong verification code (attempt {attempt} of {})", t.max_attempts);
            prompter.error(dict.get(Section::Totp, "invalidcode"));
        }
        log::warn!("access denied: too many wrong verification codes");
        Verdict::MaxTries
    }

    /// The local TOTP rate limit is reached: `count` codes within the period.
    fn rate_limited(&self, prompter: &mut dyn Prompter, count: &str) -> Verdict {
        log::warn!(
            "access denied: {count} within {} s (rate limit)",
            self.config.totp.rate_limit_period_secs
        );
        prompter.error(self.dictionary.get(Section::Totp, "too_many_attempts"));
        Verdict::MaxTries
    }

    fn latch_totp(
        &self,
        res: &mut dyn Resources,
        prompter: &mut dyn Prompter,
        pairing: &Pairing,
        budget: &mut Budget,
    ) -> Verdict {
        let Some(totp_id) = pairing.totp_id.as_deref() else {
            log::error!("TOTP is enabled for the user but the store has no TOTP id: denied");
            return Verdict::ConfigError;
        };
        let service = match self.service(res) {
            Ok(s) => s,
            Err(v) => return v,
        };
        let service = match totp_api(service) {
            Ok(t) => t,
            Err(e) => return config_error(e),
        };
        let dict = self.dictionary;
        // Once the service has said "wrong code", it is reachable: a later failure is no outage to
        // fail open on (else wrong guesses could spend the budget until `fail_mode = "safe"` lets in).
        let mut refused_once = false;
        for attempt in 1..=self.config.totp.max_attempts {
            let Some(code) = prompter.prompt_secret(dict.get(Section::Totp, "two_fa_field_tooltip")) else {
                log::warn!("access denied: no verification code given");
                return Verdict::Deny;
            };
            let code = code.trim();
            // Only digits reach the service: anything else is a wrong code here and now.
            let well_formed = (6..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit());
            let answer = if well_formed {
                budget.spend(|deadline| service.totp_validate(totp_id, code, deadline))
            } else {
                Ok(CodeCheck::Invalid(service.wrong_code()))
            };
            match answer {
                Ok(CodeCheck::Valid) => {
                    log::info!("verification code accepted");
                    return Verdict::Allow;
                }
                Ok(CodeCheck::Invalid(refusal)) => {
                    prompter.error(&dict.service_error(Section::Totp, "validateerror", refusal.code, &refusal.message))
                }
                Ok(CodeCheck::Locked(refusal)) => {
                    log::warn!(
                        "access denied: the service takes no more verification codes ({})",
                        refusal.code
                    );
                    prompter.error(&dict.service_error(Section::Totp, "validateerror", refusal.code, &refusal.message));
                    return Verdict::MaxTries;
                }
                Err(ServiceError::Api { code, message }) => {
                    prompter.error(&dict.service_error(Section::Totp, "validateerror", code, &message))
                }
                Err(ServiceError::NotPaired { .. }) => {
                    log::error!("access denied: the service says the TOTP's account is not paired");
                    return Verdict::Deny;
                }
                Err(e) if refused_once => {
                    log::error!(
                        "access denied: the service failed after refusing a code: {}",
                        escape(&e.to_string())
                    );
                    prompter.error(dict.get(Section::Lock, "unavailable"));
                    return Verdict::Unavailable;
                }
                Err(e) => return self.service_failure(prompter, e),
            }
            refused_once = true;
            log::warn!(
                "wrong verification code (attempt {attempt} of {})",
                self.config.totp.max_attempts
            );
        }
        log::warn!("access denied: too many wrong verification codes");
        Verdict::MaxTries
    }
}

/// Opens the store on the login's budget (its time is charged like a call's), with what an unreachable
/// store means for this login.
fn open_store<'r>(
    res: &'r mut dyn Resources,
    budget: &mut Budget,
) -> (FailMode, Result<&'r dyn PairingStore, StoreError>) {
    let fail_mode = res.store_fail_mode();
    let start = Instant::now();
    let opened = res.store(budget.deadline_from(start));
    budget.charge_since(start);
    (fail_mode, opened)
}

/// A store or setup failure at login: never lets anyone in, and says why in the log.
fn config_error(e: impl std::fmt::Display) -> Verdict {
    log::error!("configuration error: {}", escape(&e.to_string()));
    Verdict::ConfigError
}

/// A store failure before the pairing is known. An unreachable networked store follows `store_fail_mode`
/// (like `fail_mode` for the service); any other store error (an answer, a broken file) is a
/// configuration error whatever the mode.
fn store_failure(fail_mode: FailMode, e: StoreError) -> Verdict {
    match (e, fail_mode) {
        (StoreError::Unreachable(why), FailMode::Secure) => {
            log::error!("access denied (store_fail_mode = secure): pairing store unreachable: {why}");
            Verdict::Unavailable
        }
        (StoreError::Unreachable(why), FailMode::Safe) => {
            log::warn!(
                "FAIL-OPEN: access granted without a lock check (store_fail_mode = safe): pairing store \
                 unreachable: {why}"
            );
            Verdict::Allow
        }
        (e, _) => config_error(e),
    }
}

impl Login<'_> {
    /// A store failure once the user is known to be paired (local TOTP): an unreachable store under
    /// `store_fail_mode = "safe"` lets the user in without the code, loudly; otherwise denied.
    fn store_denial(&self, prompter: &mut dyn Prompter, fail_mode: FailMode, e: StoreError) -> Verdict {
        match (e, fail_mode) {
            (StoreError::Unreachable(why), FailMode::Safe) => {
                log::warn!(
                    "FAIL-OPEN: access granted without the verification code (store_fail_mode = safe): \
                     pairing store unreachable: {why}"
                );
                Verdict::Allow
            }
            (StoreError::Unreachable(why), FailMode::Secure) => {
                log::error!("access denied (store_fail_mode = secure): pairing store unreachable: {why}");
                prompter.error(self.dictionary.get(Section::Lock, "unavailable"));
                Verdict::Unavailable
            }
            (e, _) => config_error(e),
        }
    }
}
