//! Host-initiated pairing (PingID): the host makes a pairing key for a local user, the user enters it
//! in the app (typed, or scanned from a QR code of it), and the host then records the pairing. The
//! same library calls as `lockserver pairing-key create | show` and `lockserver pair --user`
//! ([`crate::accounts::Accounts`]): one implementation, two front ends.

use super::boundary::lockserver_result::{self, *};
use super::boundary::{Failure, guard, input, out_ptr};
use super::handle::{give, lookup};
use super::supported::key_flow;
use crate::config::PairingScope;
use crate::service::KeyStatus;
use crate::service::pingid::{response::is_id, username_segment};
use std::ffi::c_char;

/// The scope of a pairing key (PingID). A key made in the organization scope is found in both scopes;
/// one made in the application scope only there.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_pairing_scope {
    /// The config's `[pingid] pairing_scope` (`application` unless set).
    LOCKSERVER_SCOPE_CONFIGURED = 0,
    LOCKSERVER_SCOPE_APPLICATION = 1,
    LOCKSERVER_SCOPE_ORGANIZATION = 2,
}

/// What the service says of a pairing key. No status is 0, so a variable initialised to 0 and read
/// without checking the call's result is neither.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_key_status {
    /// Made, not entered in the app yet.
    LOCKSERVER_KEY_NOT_CLAIMED = 1,
    /// Entered in the app: a device is paired with it (complete with lockserver_user_pair_pending).
    LOCKSERVER_KEY_USED = 2,
}

/// A scope argument: a plain integer from C, since an out-of-range value in a Rust enum would be
/// undefined behaviour.
fn scope_from(scope: u32) -> Result<Option<PairingScope>, Failure> {
    match scope {
        0 => Ok(None),
        1 => Ok(Some(PairingScope::Application)),
        2 => Ok(Some(PairingScope::Organization)),
        _ => Err(Failure::new(
            LOCKSERVER_ERROR_INVALID_ARGUMENT,
            "unknown pairing scope (0 configured, 1 application, 2 organization)",
        )),
    }
}

/// Refused before anything is sent: a name PingID cannot sign unambiguously, a key that is not a plain
/// id.
fn invalid(message: String) -> Failure {
    Failure::new(LOCKSERVER_ERROR_INVALID_ARGUMENT, message)
}

/// Makes a pairing key for the local user `user` (PingID): creates the PingID user of that name when
/// it does not exist, makes the key in `scope` with the user name as its pairing data, and records the
/// user in the store as pending. A pending user logs in as unpaired until the pairing is completed
/// (lockserver_user_pair_pending); a new key replaces the user's pending one.
///
/// - `user`: borrowed; 1-100 ASCII letters, digits, '.', '_', '-' or '@' (what signs unambiguously),
///   else LOCKSERVER_ERROR_INVALID_ARGUMENT.
/// - `scope`: a lockserver_pairing_scope value; any other is LOCKSERVER_ERROR_INVALID_ARGUMENT.
/// - `out_key`: receives the key (free it with lockserver_string_free). It is all the app needs:
///   show it for typing, or draw a QR code of exactly this string for the app to scan.
///
/// LOCKSERVER_ERROR_ALREADY_PAIRED when the user is paired; LOCKSERVER_ERROR_NOT_SUPPORTED under a
/// service that pairs with a code (Latch: lockserver_user_pair). Arguments are checked before anything
/// is sent or stored: a refused one changes nothing. Thread-safe.
///
/// # Safety
/// `user` is NULL or NUL-terminated; `out_key` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_pairing_key_create(
    handle: *const super::handle::lockserver,
    user: *const c_char,
    scope: u32,
    out_key: *mut *mut c_char,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_key)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on user.
        let user = unsafe { input(user) }?;
        let scope = scope_from(scope)?;
        key_flow(&h)?;
        username_segment(user).map_err(|e| invalid(e.to_string()))?;
        let key = h.with_accounts(|a| a.pairing_key_create(user, scope))?;
        // SAFETY: checked non-null above.
        unsafe { give(out_key, &key.key) }
    })
}

/// The status of a pairing key at the service, in `scope` (a lockserver_pairing_scope value):
/// `*out_status` is LOCKSERVER_KEY_NOT_CLAIMED or LOCKSERVER_KEY_USED. A key the service does not know
/// in that scope is LOCKSERVER_ERROR_NOT_FOUND (lockserver_last_error_message gives the service's
/// text); a key that is not a plain id (letters, digits, '-', '_') is LOCKSERVER_ERROR_INVALID_ARGUMENT.
/// LOCKSERVER_ERROR_NOT_SUPPORTED under a service that pairs with a code. Changes nothing.
/// Thread-safe.
///
/// # Safety
/// `key` is NULL or NUL-terminated; `out_status` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_pairing_key_status(
    handle: *const super::handle::lockserver,
    key: *const c_char,
    scope: u32,
    out_status: *mut lockserver_key_status,
) -> lockserver_result {
    guard(|| {
        out_ptr(out_status)?;
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on key.
        let key = unsafe { input(key) }?;
        let scope = scope_from(scope)?;
        let pairing = key_flow(&h)?;
        if !is_id(key) {
            return Err(invalid(
                "a pairing key is a plain id (letters, digits, '-', '_')".into(),
            ));
        }
        let status = match pairing.key_status(key, scope, h.deadline())? {
            KeyStatus::NotClaimed => lockserver_key_status::LOCKSERVER_KEY_NOT_CLAIMED,
            KeyStatus::Used => lockserver_key_status::LOCKSERVER_KEY_USED,
            KeyStatus::NotFound { message } => {
                return Err(Failure::new(
                    LOCKSERVER_ERROR_NOT_FOUND,
                    format!("pairing key not found: {}", crate::escape::escape(&message)),
                ));
            }
        };
        // SAFETY: checked non-null above.
        unsafe { *out_status = status };
        Ok(())
    })
}

/// Completes the pending pairing of the local user `user` (made by lockserver_pairing_key_create) once
/// the service counts the user as paired in this application (the key entered in the app), and
/// records it in the store: from then on the user's logins push to the phone.
///
/// LOCKSERVER_ERROR_NOT_CLAIMED while the key has not been entered yet (lockserver_last_error_message
/// names the key: show it again, ask later); LOCKSERVER_ERROR_NOT_PAIRED when the user has no pending
/// key; LOCKSERVER_ERROR_ALREADY_PAIRED when the pairing is recorded already;
/// LOCKSERVER_ERROR_NOT_SUPPORTED under a service that pairs with a code (Latch: lockserver_user_pair).
/// Nothing is changed on an error. Thread-safe.
///
/// # Safety
/// `user` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_user_pair_pending(
    handle: *const super::handle::lockserver,
    user: *const c_char,
) -> lockserver_result {
    guard(|| {
        let h = lookup(handle)?;
        // SAFETY: the caller's guarantee on user.
        let user = unsafe { input(user) }?;
        key_flow(&h)?;
        username_segment(user).map_err(|e| invalid(e.to_string()))?;
        h.with_accounts(|a| a.pair_pending(user))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_c_are_checked() {
        assert_eq!(scope_from(0).ok(), Some(None));
        assert_eq!(scope_from(1).ok(), Some(Some(PairingScope::Application)));
        assert_eq!(scope_from(2).ok(), Some(Some(PairingScope::Organization)));
        for bad in [3, 7, u32::MAX] {
            assert_eq!(
                scope_from(bad).err().map(|f| f.result),
                Some(LOCKSERVER_ERROR_INVALID_ARGUMENT)
            );
        }
        for s in [
            lockserver_pairing_scope::LOCKSERVER_SCOPE_CONFIGURED,
            lockserver_pairing_scope::LOCKSERVER_SCOPE_APPLICATION,
            lockserver_pairing_scope::LOCKSERVER_SCOPE_ORGANIZATION,
        ] {
            assert!(scope_from(s as u32).is_ok(), "{s:?}");
        }
    }
}
