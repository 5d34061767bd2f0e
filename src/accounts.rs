//! What is done for a local user by name, through the pairing store and the service: pair, unpair,
//! status, TOTP enrolment and checks. The CLI and the C API both call these, so their rules (roll back
//! a half-done pairing, unpairing removes the TOTP, a TOTP already gone at the service counts as
//! removed, local codes are checked under the rate limit) live in one place. The login checks codes
//! itself ([`crate::login`]: it also consumes a right code, against replay); this module does not.

#![forbid(unsafe_code)]

use crate::config::PairingScope;
use crate::config::{Config, OperationRule, Secret, TotpSource};
use crate::local_totp;
use crate::service::{
    self, Access, Challenge, Claim, CodeCheck, KeyStatus, LockService, PairingKey, ServiceError, totp_api,
};
use crate::store::{self, LocalTotp, Pairing, PairingStore, PendingPairing, StoreError};
use crate::totp;
use std::fmt;
use std::time::Instant;

/// Why an account action did not happen. Nothing was changed, unless the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// A pairing code must be 6 letters or digits.
    InvalidCode,
    /// The user has no pairing.
    NotPaired,
    /// The user is paired already.
    AlreadyPaired,
    /// The operation NAME is not in the config.
    UnknownOperation(String),
    /// The TOTP operations flag is off.
    TotpDisabled,
    /// The user has no TOTP enrolled.
    TotpNotEnrolled,
    /// The user has a TOTP already.
    TotpAlreadyEnrolled,
    /// Too many wrong codes: the local rate limit, or the service takes no more for now.
    RateLimited,
    /// Host-initiated pairing: the user has no pairing key to complete (none was made).
    NoPendingKey,
    /// Host-initiated pairing: the user has not entered the key in the app yet.
    NotClaimed {
        key: String,
    },
    Service(ServiceError),
    Store(StoreError),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::InvalidCode => f.write_str("a pairing code is 6 letters or digits"),
            AccountError::NotPaired => f.write_str("the user is not paired"),
            AccountError::AlreadyPaired => f.write_str("the user is already paired"),
            AccountError::UnknownOperation(name) => write!(f, "no operation named {name} in the config"),
            AccountError::TotpDisabled => f.write_str("TOTP is switched off (operations flag TOTP)"),
            AccountError::TotpNotEnrolled => f.write_str("the user has no TOTP"),
            AccountError::TotpAlreadyEnrolled => f.write_str("the user has a TOTP already"),
            AccountError::RateLimited => f.write_str("too many wrong codes; try again later"),
            AccountError::NoPendingKey => f.write_str("the user has no pairing key to complete"),
            AccountError::NotClaimed { key } => write!(f, "enter pairing key {key} in the app first"),
            AccountError::Service(e) => e.fmt(f),
            AccountError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AccountError {}

impl From<ServiceError> for AccountError {
    fn from(e: ServiceError) -> Self {
        AccountError::Service(e)
    }
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyPaired => AccountError::AlreadyPaired,
            StoreError::NotPaired => AccountError::NotPaired,
            other => AccountError::Store(other),
        }
    }
}

/// The lock status answer for a user: what [`Accounts::status`] found.
#[derive(Debug)]
pub enum UserStatus<'s> {
    /// The lock check is off for that operation (config).
    CheckOff,
    Checked(Access<'s>),
}

/// Where a user stands with a host-initiated pairing (PingID), as [`Accounts::key_pairing_state`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingState {
    NotPaired,
    /// A key was made; `claim` says whether the app has used it yet.
    Pending {
        pending: PendingPairing,
        claim: Claim,
    },
    Paired {
        pairing: Pairing,
        claim: Claim,
    },
}

/// A TOTP just enrolled: what to show the user.
#[derive(Clone)]
pub struct Enrolment {
    /// The QR value: from the service (image data URI, URL or otpauth URI), or a local otpauth URI.
    /// It holds the TOTP secret: wiped on drop.
    pub qr: String,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Enrolment { qr: *** }")
    }
}

impl Drop for Enrolment {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.qr);
    }
}

/// Why a self-service action was refused by [`Accounts::prove_factor`]: the caller could not show that
/// they still hold the factor the action would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotProven {
    /// The latch is locked right now: only its owner, with the phone, can open it.
    Locked,
    /// TOTP is on for the user and no code was given.
    CodeNeeded,
    /// The TOTP code given is not right.
    WrongCode,
    /// The check itself could not be made (not paired, service or store failure, rate limit).
    Account(AccountError),
}

impl fmt::Display for NotProven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotProven::Locked => f.write_str("the latch is locked: open it in the app first, then try again"),
            NotProven::CodeNeeded => f.write_str("give a current verification code of the user's TOTP"),
            NotProven::WrongCode => f.write_str("the verification code is not right"),
            NotProven::Account(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NotProven {}

/// Everything an action needs.
pub struct Accounts<'a> {
    pub config: &'a Config,
    pub store: &'a dyn PairingStore,
    pub service: &'a dyn LockService,
}

/// Checks the shape of a pairing code before it reaches the service.
pub fn check_pairing_code(code: &str) -> Result<&str, AccountError> {
    let code = code.trim();
    if code.len() == 6 && code.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(code)
    } else {
        Err(AccountError::InvalidCode)
    }
}

impl<'a> Accounts<'a> {
    /// Each store and service call gets the config's whole budget.
    fn deadline(&self) -> Instant {
        Instant::now() + self.config.timeout
    }

    fn pairing(&self, user: &str) -> Result<Pairing, AccountError> {
        self.store.get(user, self.deadline())?.ok_or(AccountError::NotPaired)
    }

    /// Pairs `user` with a code from the phone. If the store refuses after the service paired, the
    /// service pairing is undone, so the phone is never left paired to an account this host forgot.
    pub fn pair(&self, user: &str, code: &str, common_name: &str) -> Result<Pairing, AccountError> {
        let code = check_pairing_code(code)?;
        store::check_user(user)?;
        if self.store.get(user, self.deadline())?.is_some() {
            return Err(AccountError::AlreadyPaired);
        }
        let account_id = service::code_pairing(self.service)?.pair(code, Some(common_name), self.deadline())?;
        let pairing = Pairing {
            user: user.to_string(),
            account_id,
            enabled: true,
            totp_enabled: false,
            totp_id: None,
        };
        if let Err(e) = self.store.insert(&pairing, self.deadline()) {
            let _ = self.service.unpair(&pairing.account_id, self.deadline());
            return Err(e.into());
        }
        Ok(pairing)
    }

    /// Unpairs `user` at the service and in the store, TOTP included (seed: unpairing Latch also
    /// removes the TOTP). With `force`, service failures are returned as warnings and the local
    /// pairing is removed anyway.
    pub fn unpair(&self, user: &str, force: bool) -> Result<Vec<ServiceError>, AccountError> {
        // A pairing started by the host and not finished is undone the same way (the app may have
        // claimed the key already).
        let pairing = match (
            self.store.get(user, self.deadline())?,
            self.store.pending(user, self.deadline())?,
        ) {
            (Some(p), _) => p,
            (None, Some(pending)) => Pairing {
                user: user.to_string(),
                account_id: pending.account_id,
                enabled: false,
                totp_enabled: false,
                totp_id: None,
            },
            (None, None) => return Err(AccountError::NotPaired),
        };
        let mut warnings = Vec::new();
        let mut tolerate = |e: ServiceError| {
            if !force {
                return Err(e);
            }
            warnings.push(e);
            Ok(())
        };
        // A TOTP gone already at the service (Removal::AlreadyGone) is no failure.
        if let Some(Err(e)) = pairing
            .totp_id
            .as_ref()
            .map(|id| totp_api(self.service).and_then(|t| t.totp_delete(id, self.deadline())))
        {
            tolerate(e)?;
        }
        match self.service.unpair(&pairing.account_id, self.deadline()) {
            Ok(()) | Err(ServiceError::NotPaired { .. }) => {}
            Err(e) => tolerate(e)?,
        }
        self.store.remove(user, self.deadline())?;
        Ok(warnings)
    }

    /// The lock status of `user`, application-wide or for the operation NAME, without asking the
    /// service for a one-time code (`want_code = false`) unless asked.
    pub fn status(&self, user: &str, operation: Option<&str>, want_code: bool) -> Result<UserStatus<'a>, AccountError> {
        let pairing = self.pairing(user)?;
        let op_id = match operation {
            None => None,
            Some(name) if !self.config.has_operation(name) => {
                return Err(AccountError::UnknownOperation(name.to_string()));
            }
            Some(name) => match self.config.operation_rule(name) {
                OperationRule::Check(id) => Some(id),
                _ => return Ok(UserStatus::CheckOff),
            },
        };
        let access = self
            .service
            .status(&pairing.account_id, op_id.as_deref(), want_code, self.deadline())?;
        Ok(UserStatus::Checked(access))
    }

    fn totp_pairing(&self, user: &str) -> Result<Pairing, AccountError> {
        if !self.config.totp_enabled() {
            return Err(AccountError::TotpDisabled);
        }
        self.pairing(user)
    }

    /// Enrols a TOTP for a paired user (the service's, or a local secret) and records it.
    pub fn totp_create(&self, user: &str, label: &str) -> Result<Enrolment, AccountError> {
        let pairing = self.totp_pairing(user)?;
        if pairing.totp_enabled {
            return Err(AccountError::TotpAlreadyEnrolled);
        }
        match self.config.totp.source {
            TotpSource::Latch => {
                let api = totp_api(self.service)?;
                let enrolment = api.totp_create(label, user, self.deadline())?;
                if let Err(e) = self
                    .store
                    .set_totp(user, true, Some(&enrolment.totp_id), self.deadline())
                {
                    // Do not leave a TOTP at the service that no login will ever ask for.
                    let _ = api.totp_delete(&enrolment.totp_id, self.deadline());
                    return Err(e.into());
                }
                Ok(Enrolment { qr: enrolment.qr })
            }
            TotpSource::Local => {
                let secret = totp::generate_secret()
                    .map_err(|e| AccountError::Store(StoreError::Unavailable(format!("no randomness: {e}"))))?;
                let state = LocalTotp {
                    secret: Secret::new(secret.as_str()),
                    last_step: None,
                    failures: 0,
                    window_start: 0,
                };
                let stored = self
                    .store
                    .set_local_totp(user, Some(&state), self.deadline())
                    .and_then(|()| self.store.set_totp(user, true, None, self.deadline()));
                if let Err(e) = stored {
                    let _ = self.store.set_local_totp(user, None, self.deadline());
                    return Err(e.into());
                }
                let params = totp::Params::from(&self.config.totp);
                Ok(Enrolment {
                    qr: totp::otpauth_uri(&self.config.totp.issuer, label, &secret, &params),
                })
            }
        }
    }

    /// Switches TOTP off for `user`, deleting it at the service.
    pub fn totp_disable(&self, user: &str) -> Result<(), AccountError> {
        let pairing = self.totp_pairing(user)?;
        if !pairing.totp_enabled {
            return Err(AccountError::TotpNotEnrolled);
        }
        if let Some(totp_id) = &pairing.totp_id {
            // Deleted now or gone already (Removal::AlreadyGone): clearing it here is what was asked.
            totp_api(self.service)?.totp_delete(totp_id, self.deadline())?;
        }
        self.store.set_totp(user, false, None, self.deadline())?;
        self.store.set_local_totp(user, None, self.deadline())?;
        Ok(())
    }

    /// Proves that whoever asks for a self-service `unpair` or `totp disable` of `user` (through sudo, with
    /// a password that may be borrowed) still holds the user's factors: the application latch is open
    /// right now, and when TOTP is on, a current code (checked under the rate limit). `ask_code` is called
    /// only when a code is needed and only after the latch was found open, so nobody is prompted for a
    /// code that cannot help. Nothing is changed but a failed code's count.
    pub fn prove_factor(
        &self,
        user: &str,
        ask_code: impl FnOnce() -> Option<Secret>,
        now: u64,
    ) -> Result<(), NotProven> {
        let pairing = self.pairing(user).map_err(NotProven::Account)?;
        let access = self
            .service
            .status(&pairing.account_id, None, false, self.deadline())
            .map_err(|e| NotProven::Account(e.into()))?;
        if !self.open_now(access).map_err(|e| NotProven::Account(e.into()))? {
            return Err(NotProven::Locked);
        }
        if pairing.totp_enabled && self.config.totp_enabled() {
            let code = ask_code().ok_or(NotProven::CodeNeeded)?;
            let code = code.expose().trim();
            if code.is_empty() {
                return Err(NotProven::CodeNeeded);
            }
            if !self.totp_verify(user, code, now).map_err(NotProven::Account)? {
                return Err(NotProven::WrongCode);
            }
        }
        Ok(())
    }

    /// Whether a status answer proves the user's lock open now. A push (PingID) is waited for, up to
    /// the service's patience, and withdrawn if unanswered; a one-time code Latch sends along is still
    /// an open latch, a code PingID asks for instead of a push is no proof here.
    fn open_now(&self, access: Access<'_>) -> Result<bool, ServiceError> {
        Ok(match access {
            Access::Open | Access::CodeRequired(Challenge::LocalToken(_)) => true,
            Access::CodeRequired(Challenge::Remote(_)) | Access::Locked | Access::Refused(_) => false,
            Access::Pending(approval) => {
                let give_up = Instant::now() + approval.patience();
                loop {
                    let now = Instant::now();
                    if now >= give_up {
                        approval.cancel(self.deadline());
                        return Ok(false);
                    }
                    std::thread::sleep(approval.interval().min(give_up - now));
                    if let Some(answer) = approval.poll(self.deadline())? {
                        return self.open_now(answer);
                    }
                }
            }
        })
    }

    /// Checks a TOTP code of `user` without logging in. Local codes are checked under the login's
    /// rate limit (so this is no guessing oracle) and a right code is not consumed.
    pub fn totp_verify(&self, user: &str, code: &str, now: u64) -> Result<bool, AccountError> {
        let pairing = self.totp_pairing(user)?;
        if !pairing.totp_enabled {
            return Err(AccountError::TotpNotEnrolled);
        }
        if let (Some(totp_id), TotpSource::Latch) = (&pairing.totp_id, self.config.totp.source) {
            return match totp_api(self.service)?.totp_validate(totp_id, code, self.deadline())? {
                CodeCheck::Valid => Ok(true),
                CodeCheck::Invalid(_) => Ok(false),
                CodeCheck::Locked(_) => Err(AccountError::RateLimited),
            };
        }
        let state = self
            .store
            .local_totp(user, self.deadline())?
            .ok_or(AccountError::TotpNotEnrolled)?;
        let secret = totp::decode_secret(state.secret.expose())
            .map(zeroize::Zeroizing::new)
            .ok_or_else(|| AccountError::Store(StoreError::Invalid("the stored TOTP secret is not base32".into())))?;
        let secret = zeroize::Zeroizing::new(secret);
        // The login's own verifier and rate limit (so this is no guessing oracle); a right code is
        // not consumed.
        let verifier = local_totp::Verifier {
            store: self.store,
            config: &self.config.totp,
            user,
        };
        match verifier.check(&secret, code, now, false, self.deadline())? {
            local_totp::Check::Accepted => Ok(true),
            local_totp::Check::Wrong | local_totp::Check::Replayed => Ok(false),
            local_totp::Check::RateLimited { .. } => Err(AccountError::RateLimited),
        }
    }

    /// Host-initiated pairing, step 1: makes a pairing key for `user` at the service (creating the
    /// service's user when needed) and records the user as pending. A paired user is refused.
    pub fn pairing_key_create(&self, user: &str, scope: Option<PairingScope>) -> Result<PairingKey, AccountError> {
        store::check_user(user)?;
        let pairing = service::key_pairing(self.service)?;
        if self.store.get(user, self.deadline())?.is_some() {
            return Err(AccountError::AlreadyPaired);
        }
        let key = pairing.create_key(user, scope, self.deadline())?;
        self.store.set_pending(
            &PendingPairing {
                user: user.to_string(),
                account_id: key.account_id.clone(),
                key: key.key.clone(),
            },
            self.deadline(),
        )?;
        Ok(key)
    }

    /// The status of a pairing key at the service, in `scope` (or the configured one).
    pub fn pairing_key_status(&self, key: &str, scope: Option<PairingScope>) -> Result<KeyStatus, AccountError> {
        Ok(service::key_pairing(self.service)?.key_status(key, scope, self.deadline())?)
    }

    /// Host-initiated pairing, step 2: once the user has claimed the key (the service counts them
    /// as paired in this application), records the pairing.
    pub fn pair_pending(&self, user: &str) -> Result<Pairing, AccountError> {
        store::check_user(user)?;
        let service_pairing = service::key_pairing(self.service)?;
        if self.store.get(user, self.deadline())?.is_some() {
            return Err(AccountError::AlreadyPaired);
        }
        let pending = self
            .store
            .pending(user, self.deadline())?
            .ok_or(AccountError::NoPendingKey)?;
        if !service_pairing.claim(&pending.account_id, self.deadline())?.active {
            return Err(AccountError::NotClaimed { key: pending.key });
        }
        let pairing = Pairing {
            user: user.to_string(),
            account_id: pending.account_id,
            enabled: true,
            totp_enabled: false,
            totp_id: None,
        };
        self.store.insert(&pairing, self.deadline())?;
        Ok(pairing)
    }

    /// Paired, pending or neither, with the devices the service has for the user.
    pub fn key_pairing_state(&self, user: &str) -> Result<PairingState, AccountError> {
        let service_pairing = service::key_pairing(self.service)?;
        if let Some(pairing) = self.store.get(user, self.deadline())? {
            let claim = service_pairing.claim(&pairing.account_id, self.deadline())?;
            return Ok(PairingState::Paired { pairing, claim });
        }
        match self.store.pending(user, self.deadline())? {
            Some(pending) => {
                let claim = service_pairing.claim(&pending.account_id, self.deadline())?;
                Ok(PairingState::Pending { pending, claim })
            }
            None => Ok(PairingState::NotPaired),
        }
    }
}
