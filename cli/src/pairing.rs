//! PingID's host-initiated pairing: `pairing-key create | show`, `pair --user` without a code, and
//! the pairing part of `status`.

use super::commands::Context;
use super::qr::{self, Shown};
use super::{Exit, fail};
use lockserver::accounts::PairingState;
use lockserver::config::{PairingScope, ServiceKind};
use lockserver::dictionary::Section;
use lockserver::escape::escape;
use lockserver::service::{Claim, KeyStatus};

impl Context<'_> {
    /// The Latch flow has a code: a command of the key flow says how Latch pairs instead.
    fn key_flow(&self, user: &str) -> Result<(), Exit> {
        if self.config.service == ServiceKind::Pingid {
            Ok(())
        } else {
            Err(fail(Exit::Usage, &self.text(Section::Pairing, "wrong_flow_key", user)))
        }
    }

    pub fn pairing_key_create(&self, user: &str, scope: Option<PairingScope>, allow_unknown_user: bool) -> Exit {
        if let Err(code) = self.key_flow(user) {
            return code;
        }
        if let Err(code) = self.known_user(user, allow_unknown_user) {
            return code;
        }
        self.with_accounts(user, |a| {
            let key = a.pairing_key_create(user, scope)?;
            println!("pairing key: {}", escape(&key.key));
            match qr::show(&key.key) {
                Ok(Shown::Drawn { art, .. }) => {
                    println!("{}", qr::coloured(&art));
                    if let Some(warning) = qr::too_small(&art, 2, qr::terminal_size()) {
                        eprintln!("lockserver: {warning}");
                    }
                }
                Ok(Shown::Link(_)) => {}
                Err(e) => eprintln!("lockserver: the QR code cannot be drawn here ({e}); enter the key by hand"),
            }
            println!("{}", self.text(Section::Pairing, "key_created", user));
            Ok(Exit::Ok)
        })
    }

    pub fn pairing_key_show(&self, key: &str, scope: Option<PairingScope>) -> Exit {
        if let Err(code) = self.key_flow("") {
            return code;
        }
        self.with_accounts("", |a| {
            Ok(match a.pairing_key_status(key, scope)? {
                KeyStatus::NotClaimed => {
                    println!("status: NOT_CLAIMED");
                    Exit::Ok
                }
                KeyStatus::Used => {
                    println!("status: USED");
                    Exit::Ok
                }
                KeyStatus::NotFound { message } => fail(Exit::Refused, &escape(&message)),
            })
        })
    }

    /// `pair --user NAME` without a code.
    pub fn pair_pending(&self, user: &str) -> Exit {
        if self.config.service != ServiceKind::Pingid {
            return fail(
                Exit::Usage,
                "pair needs the CODE shown in the Latch app: lockserver pair CODE",
            );
        }
        self.with_accounts(user, |a| {
            a.pair_pending(user)?;
            println!("{}", self.text(Section::Pairing, "paired_key", user));
            Ok(Exit::Ok)
        })
    }

    /// `status` with PingID: pending or paired, and the devices.
    pub fn pairing_status(&self, user: &str) -> Exit {
        self.with_accounts(user, |a| {
            Ok(match a.key_pairing_state(user)? {
                PairingState::NotPaired => {
                    println!("{user}: not paired");
                    Exit::PairingState
                }
                PairingState::Pending { pending, claim } => {
                    if claim.active {
                        println!("{user}: pending (key claimed: run `lockserver pair --user {user}`)");
                    } else {
                        println!("{user}: pending (pairing key {} not claimed yet)", escape(&pending.key));
                    }
                    print_devices(&claim);
                    Exit::PairingState
                }
                PairingState::Paired { pairing, claim } => {
                    println!("{user}: paired (PingID user {})", escape(&pairing.account_id));
                    if !claim.active {
                        println!("{user}: warning: PingID has no device of this application for the user");
                    }
                    print_devices(&claim);
                    Exit::Ok
                }
            })
        })
    }
}

fn print_devices(claim: &Claim) {
    for d in &claim.devices {
        println!(
            "device: {} {} ({})",
            escape(&d.kind),
            escape(&d.nickname),
            escape(&d.id)
        );
    }
}
