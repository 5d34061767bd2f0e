//! The local-TOTP verifier (`[totp] source = "local"`): the rate limit and the replay guard around one
//! RFC 6238 check, written once for the login, the CLI's `totp verify` and the C API.
//!
//! Every attempt is counted before the code is checked, in one atomic store statement, so parallel
//! logins or C API calls cannot each get their own allowance; a right code clears the count. A code
//! of a step at or before the last accepted one is refused (a replay).

#![forbid(unsafe_code)]

use crate::config::TotpConfig;
use crate::store::{PairingStore, StoreError};
use crate::totp;
use std::time::Instant;

/// What one code check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The code is right (and, when consumed, its step is now used up).
    Accepted,
    /// Not a code of the current window.
    Wrong,
    /// A right code of a step already used: refused.
    Replayed,
    /// `count` attempts within the period: refused, whatever the code.
    RateLimited { count: u32 },
}

/// The verifier of one user's local codes.
pub struct Verifier<'a> {
    pub store: &'a dyn PairingStore,
    pub config: &'a TotpConfig,
    pub user: &'a str,
}

impl Verifier<'_> {
    /// Whether the user is rate-limited already at `now` (so a login need not even prompt): the
    /// failures counted in the running period, when they reach the limit.
    pub fn limited(&self, now: u64, deadline: Instant) -> Result<Option<u32>, StoreError> {
        let t = self.config;
        let failures = self
            .store
            .totp_failures(self.user, now, t.rate_limit_period_secs, deadline)?;
        Ok((failures >= t.rate_limit_count).then_some(failures))
    }

    /// Checks `code` against `secret` at unix time `now`. With `consume`, a right code's step is recorded
    /// so that it is refused if replayed (a login); without, the code is only checked (`totp verify`),
    /// and a step already used is still refused.
    pub fn check(
        &self,
        secret: &[u8],
        code: &str,
        now: u64,
        consume: bool,
        deadline: Instant,
    ) -> Result<Check, StoreError> {
        let (store, user, t) = (self.store, self.user, self.config);
        let count = store.record_totp_failure(user, now, t.rate_limit_period_secs, deadline)?;
        if count > t.rate_limit_count {
            return Ok(Check::RateLimited { count });
        }
        let params = totp::Params::from(t);
        let last_step = if consume {
            None
        } else {
            store.local_totp(user, deadline)?.and_then(|s| s.last_step)
        };
        let Some(step) = totp::verify(secret, code, now, &params, last_step) else {
            return Ok(Check::Wrong);
        };
        // Atomic in the store: two logins racing with one code cannot both get in.
        if consume && !store.accept_totp_step(user, step, deadline)? {
            return Ok(Check::Replayed);
        }
        store.clear_totp_failures(user, deadline)?;
        Ok(Check::Accepted)
    }
}
