//! Which calls the config's service answers. Latch pairs with a code from the app, has a TOTP API and
//! answers a status without asking anyone; PingID pairs with a key the host makes, and its lock check
//! is a question to the person on the phone. A call of the other kind answers
//! `LOCKSERVER_ERROR_NOT_SUPPORTED`, before anything is sent or stored, with the call to use instead.

use super::boundary::Failure;
use super::boundary::lockserver_result::LOCKSERVER_ERROR_NOT_SUPPORTED;
use super::handle::lockserver;
use crate::config::ServiceKind;
use crate::service::{CodePairing, KeyPairing, PairingFlow, ServiceTotp};

/// Pairing with a code from the phone app (Latch).
pub(super) fn code_flow(h: &lockserver) -> Result<&dyn CodePairing, Failure> {
    match h.service.pairing() {
        PairingFlow::Code(p) => Ok(p),
        PairingFlow::HostKey(_) => Err(Failure::new(
            LOCKSERVER_ERROR_NOT_SUPPORTED,
            "this service pairs with a key the host makes: lockserver_pairing_key_create, then \
             lockserver_user_pair_pending",
        )),
    }
}

/// Pairing with a key the host makes (PingID).
pub(super) fn key_flow(h: &lockserver) -> Result<&dyn KeyPairing, Failure> {
    match h.service.pairing() {
        PairingFlow::HostKey(p) => Ok(p),
        PairingFlow::Code(_) => Err(Failure::new(
            LOCKSERVER_ERROR_NOT_SUPPORTED,
            "this service pairs with a code from the phone app: lockserver_user_pair or lockserver_pair",
        )),
    }
}

/// The service's own TOTP API (Latch).
pub(super) fn totp_calls(h: &lockserver) -> Result<&dyn ServiceTotp, Failure> {
    h.service.totp().ok_or_else(|| {
        Failure::new(
            LOCKSERVER_ERROR_NOT_SUPPORTED,
            "this service has no TOTP API: a local TOTP ([totp] source = \"local\") is enrolled with \
             lockserver_user_totp_create",
        )
    })
}

/// A lock status outside a login. PingID has none: its check is a push, which would ring the user's
/// phone for a question nobody waits for.
pub(super) fn status_calls(h: &lockserver) -> Result<(), Failure> {
    match h.config.service {
        ServiceKind::Latch => Ok(()),
        ServiceKind::Pingid => Err(Failure::new(
            LOCKSERVER_ERROR_NOT_SUPPORTED,
            "PingID's lock check asks the person on the phone: run it as a login, with lockserver_login",
        )),
    }
}
