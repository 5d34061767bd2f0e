//! PingID as a [`LockService`]: a login is a PingID authentication of the user (a push the person
//! answers on the phone, or a one-time code the service checks), pairing is host-initiated (a key
//! the user enters in the app). The service's account id of a local user is the PingID user name.
//!
//! Statuses are read here only; the login sees [`Access`] and a dictionary key of the `[pingid]`
//! section for every final status that refuses (`rejected`, `timeout`, `locked`, …).

#![forbid(unsafe_code)]

use super::{AuthStatus, Authentication, PingidClient, PingidError, PingidSettings, Reason, UserStatus};
use crate::config::{PairingScope as ConfigScope, PingIdConfig};
use crate::service::{
    Access, Approval, Challenge, Claim, CodeAnswer, DeviceInfo, KeyPairing, KeyStatus, LockService, PairingFlow,
    PairingKey, RemoteCode, ServiceError, ServiceTotp, Text,
};
use std::time::{Duration, Instant};

/// The PingID client with the login's waiting rules.
#[derive(Debug)]
pub struct PingidLock {
    client: PingidClient,
    push_timeout: Duration,
    poll_interval: Duration,
}

impl PingidLock {
    /// Builds the client from the config's `[pingid]` section.
    pub fn new(config: &PingIdConfig) -> Result<PingidLock, ServiceError> {
        let settings = PingidSettings {
            account_id: config.account_id.clone(),
            application_id: config.application_id.clone(),
            token: config.token.clone(),
            api_key: config.api_key.clone(),
            url: config.url.clone(),
            pairing_scope: scope(config.pairing_scope),
            require_response_signature: config.require_response_signature,
            ca_file: config.ca_file.clone(),
            proxy: config.proxy.clone(),
        };
        Ok(PingidLock {
            client: PingidClient::new(&settings)?,
            push_timeout: config.push_timeout,
            poll_interval: config.poll_interval,
        })
    }

    /// The client itself, for what the trait does not cover.
    pub fn client(&self) -> &PingidClient {
        &self.client
    }

    /// What an authentication's status means for the login.
    fn access(&self, user: &str, auth: Authentication, want_code: bool) -> Result<Option<Access<'_>>, ServiceError> {
        Ok(Some(match auth.status {
            AuthStatus::InProgress => return Ok(None),
            AuthStatus::Approved => Access::Open,
            AuthStatus::Otp => {
                if !want_code {
                    // Nobody can type it (the account phase): withdraw the question at once.
                    let _ = self
                        .client
                        .cancel_authentication(user, &auth.id, Instant::now() + Duration::from_secs(1));
                }
                Access::CodeRequired(Challenge::Remote(Box::new(Otp {
                    lock: self,
                    user: user.to_string(),
                    id: auth.id,
                })))
            }
            AuthStatus::Locked => Access::Locked,
            final_status => Access::Refused(refusal_text(final_status, auth.reason.as_ref())),
        }))
    }
}

/// The `[pingid]` dictionary key of a status that refuses.
fn refusal_text(status: AuthStatus, reason: Option<&Reason>) -> Text {
    if reason == Some(&Reason::DeviceRooted) {
        return Text("device_rooted");
    }
    Text(match status {
        AuthStatus::Rejected => "rejected",
        AuthStatus::Timeout => "timeout",
        AuthStatus::Canceled => "canceled",
        AuthStatus::Locked => "locked",
        AuthStatus::OtpIsBlocked => "otp_blocked",
        AuthStatus::IgnoredDevice => "ignored_device",
        AuthStatus::BypassedDevice => "bypassed_device",
        AuthStatus::InvalidOtp => "invalid_otp",
        AuthStatus::SelectDevice => "select_device",
        // Not refusals; listed so a new status is a compile error here.
        AuthStatus::InProgress | AuthStatus::Approved | AuthStatus::Otp => "rejected",
    })
}

fn scope(s: ConfigScope) -> super::PairingScope {
    match s {
        ConfigScope::Application => super::PairingScope::Application,
        ConfigScope::Organization => super::PairingScope::Organization,
    }
}

/// A user without a device in this application (or unknown to PingID) is not paired.
fn not_paired_or(e: PingidError) -> ServiceError {
    match &e {
        PingidError::Api(api) if api.is_not_found("user") || api.has_detail("INVALID_USER_STATUS") => {
            ServiceError::NotPaired {
                code: u32::from(api.http_status),
            }
        }
        _ => e.into(),
    }
}

impl LockService for PingidLock {
    fn status(
        &self,
        account: &str,
        operation: Option<&str>,
        want_code: bool,
        deadline: Instant,
    ) -> Result<Access<'_>, ServiceError> {
        let auth = self
            .client
            .start_authentication(account, operation, deadline)
            .map_err(not_paired_or)?;
        let id = auth.id.clone();
        Ok(match self.access(account, auth, want_code)? {
            Some(access) => access,
            None => Access::Pending(Box::new(Push {
                lock: self,
                user: account.to_string(),
                id,
                want_code,
            })),
        })
    }

    /// Removes the user's devices of this application (the PingID user itself stays: other
    /// applications of the account may use it).
    fn unpair(&self, account: &str, deadline: Instant) -> Result<(), ServiceError> {
        self.client
            .delete_devices(account, deadline)
            .map(drop)
            .map_err(Into::into)
    }

    fn pairing(&self) -> PairingFlow<'_> {
        PairingFlow::HostKey(self)
    }

    fn totp(&self) -> Option<&dyn ServiceTotp> {
        None
    }
}

impl KeyPairing for PingidLock {
    fn create_key(
        &self,
        user: &str,
        scope_asked: Option<ConfigScope>,
        deadline: Instant,
    ) -> Result<PairingKey, ServiceError> {
        if self.client.get_user(user, deadline)?.is_none() {
            match self.client.create_user(user, deadline) {
                Ok(_) => {}
                // Created meanwhile by another host: fine, it exists.
                Err(PingidError::Api(e)) if e.has_detail("UNIQUE_VALUE_REQUIRED") => {}
                Err(e) => return Err(e.into()),
            }
        }
        let scope_used = scope_asked.map_or_else(|| self.client.pairing_scope(), scope);
        let key = self.client.create_pairing_key(user, scope_used, deadline)?;
        Ok(PairingKey {
            key: key.id,
            account_id: user.to_string(),
        })
    }

    fn key_status(
        &self,
        key: &str,
        scope_asked: Option<ConfigScope>,
        deadline: Instant,
    ) -> Result<KeyStatus, ServiceError> {
        let scope_used = scope_asked.map_or_else(|| self.client.pairing_scope(), scope);
        Ok(match self.client.pairing_key_status(key, scope_used, deadline)? {
            super::PairingKeyStatus::NotClaimed => KeyStatus::NotClaimed,
            super::PairingKeyStatus::Used => KeyStatus::Used,
            super::PairingKeyStatus::NotFound { message } => KeyStatus::NotFound { message },
        })
    }

    fn claim(&self, account: &str, deadline: Instant) -> Result<Claim, ServiceError> {
        let Some(user) = self.client.get_user(account, deadline)? else {
            return Ok(Claim {
                active: false,
                devices: Vec::new(),
            });
        };
        let devices: Vec<DeviceInfo> = user
            .devices
            .into_iter()
            .map(|d| DeviceInfo {
                id: d.id,
                kind: d.device_type,
                nickname: d.nickname,
            })
            .collect();
        Ok(Claim {
            active: user.status == UserStatus::Active && !devices.is_empty(),
            devices,
        })
    }
}

/// A push waiting for the person.
struct Push<'s> {
    lock: &'s PingidLock,
    user: String,
    id: String,
    want_code: bool,
}

impl Approval for Push<'_> {
    fn poll(&self, deadline: Instant) -> Result<Option<Access<'_>>, ServiceError> {
        let auth = self.lock.client.authentication_status(&self.user, &self.id, deadline)?;
        self.lock.access(&self.user, auth, self.want_code)
    }

    fn cancel(&self, deadline: Instant) {
        if let Err(e) = self.lock.client.cancel_authentication(&self.user, &self.id, deadline) {
            log::warn!(
                "could not cancel the unanswered PingID authentication: {}",
                crate::escape::escape(&e.to_string())
            );
        }
    }

    fn patience(&self) -> Duration {
        self.lock.push_timeout
    }

    fn interval(&self) -> Duration {
        self.lock.poll_interval
    }
}

/// An authentication that waits for a one-time code.
struct Otp<'s> {
    lock: &'s PingidLock,
    user: String,
    id: String,
}

impl RemoteCode for Otp<'_> {
    fn verify(&self, code: &str, deadline: Instant) -> Result<CodeAnswer, ServiceError> {
        // What cannot be a code never reaches the service (nor the log): a wrong code, here and now.
        if code.is_empty() || code.len() > super::MAX_OTP_LEN || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(CodeAnswer::TryAgain(Text("invalid_otp")));
        }
        let auth = self.lock.client.submit_otp(&self.user, &self.id, code, deadline)?;
        Ok(match auth.status {
            AuthStatus::Approved => CodeAnswer::Valid,
            AuthStatus::InvalidOtp | AuthStatus::Otp => CodeAnswer::TryAgain(Text("invalid_otp")),
            AuthStatus::Locked => CodeAnswer::Refused(Text("locked")),
            other => CodeAnswer::Refused(refusal_text(other, auth.reason.as_ref())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusing_status_has_its_text() {
        let cases = [
            (AuthStatus::Rejected, None, "rejected"),
            (AuthStatus::Timeout, None, "timeout"),
            (AuthStatus::Canceled, None, "canceled"),
            (AuthStatus::OtpIsBlocked, None, "otp_blocked"),
            (AuthStatus::IgnoredDevice, None, "ignored_device"),
            (AuthStatus::BypassedDevice, None, "bypassed_device"),
            (AuthStatus::Rejected, Some(Reason::DeviceRooted), "device_rooted"),
        ];
        for (status, reason, key) in cases {
            assert_eq!(refusal_text(status, reason.as_ref()), Text(key), "{status:?}");
        }
    }
}
