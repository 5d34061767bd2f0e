//! The `lockserver` command (DESIGN §6): arguments, who acts for whom, exit codes.
//!
//! Exit codes (also in the README):
//! 0 done (status: open) · 1 status: locked · 2 usage · 3 configuration error · 4 service unreachable
//! · 5 the service refused the request · 6 not paired / already paired · 7 not allowed · 8 store error.

#![forbid(unsafe_code)]

mod actor;
mod args;
mod check;
mod commands;
mod pairing;
mod prompt;
mod qr;
mod totp;
mod try_login;

use actor::Actor;
use args::{Cli, Command, PairingKeyAction, StoreAction, TotpAction};
use clap::Parser;
use lockserver::config::{self, Config, LoadOptions};
use lockserver::dictionary::Dictionary;
use std::process::ExitCode;

/// Exit codes of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Locked = 1,
    Usage = 2,
    Config = 3,
    Unavailable = 4,
    Refused = 5,
    PairingState = 6,
    NotAllowed = 7,
    Store = 8,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Runs the CLI with the process's arguments and environment.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let euid = effective_uid();
    let actor = match Actor::detect(euid, std::env::var("SUDO_USER").ok(), std::env::var("SUDO_UID").ok()) {
        Ok(a) => a,
        Err(r) => return fail(Exit::NotAllowed, &r.0).into(),
    };
    run(cli, &actor).into()
}

/// Runs one parsed command as `actor`.
pub fn run(cli: Cli, actor: &Actor) -> Exit {
    if cli.trust_owner.is_some() && !actor.is_root() {
        return fail(Exit::NotAllowed, "--trust-owner is for root only");
    }
    // Through sudo the config is the system's: another root-owned file would bring its own store and
    // service (a user could pair themself with anything), and reading files as root for a user leaks.
    if !actor.is_root() && cli.config != std::path::Path::new(config::DEFAULT_PATH) {
        return fail(Exit::NotAllowed, "through sudo, -c/--config is not allowed");
    }
    // The image is written as root: through sudo it could overwrite any file.
    if let Command::Totp {
        action: TotpAction::Create { qr_file: Some(_), .. },
    } = &cli.command
        && !actor.is_root()
    {
        return fail(
            Exit::NotAllowed,
            "through sudo, --qr-file is not allowed (the QR code is shown on the terminal)",
        );
    }
    if let Command::TryLogin { service, user } = &cli.command {
        if !actor.is_root() {
            return fail(Exit::NotAllowed, "try-login is for root only");
        }
        return commands::try_login(service, user);
    }
    // Before the config is loaded: a config that does not load is what check-config reports.
    if let Command::CheckConfig { json } = &cli.command {
        return check::run(&cli.config, cli.trust_owner, *json);
    }
    let config = match Config::load(
        &cli.config,
        LoadOptions {
            trusted_owner: cli.trust_owner,
        },
    ) {
        Ok(c) => c,
        Err(e) => return fail(Exit::Config, &format!("configuration error: {e}")),
    };
    let dictionary = match Dictionary::for_config(&config, cli.trust_owner) {
        Ok(d) => d,
        Err(e) => return fail(Exit::Config, &format!("configuration error: dictionary {e}")),
    };
    let ctx = commands::Context {
        config: &config,
        dictionary: &dictionary,
    };
    let target = |user: &Option<String>| actor.target(user.as_deref());
    match &cli.command {
        Command::Pair {
            code,
            user,
            allow_unknown_user,
        } => match target(user) {
            Ok(u) => match code {
                Some(code) => ctx.pair(&u, code, *allow_unknown_user),
                None => ctx.pair_pending(&u),
            },
            Err(r) => fail(Exit::NotAllowed, &r.0),
        },
        Command::PairingKey {
            action:
                PairingKeyAction::Create {
                    user,
                    scope,
                    allow_unknown_user,
                },
        } => match target(user) {
            Ok(u) => ctx.pairing_key_create(&u, scope.map(Into::into), *allow_unknown_user),
            Err(r) => fail(Exit::NotAllowed, &r.0),
        },
        Command::PairingKey {
            action: PairingKeyAction::Show { key, scope },
        } => ctx.pairing_key_show(key, scope.map(Into::into)),
        Command::Unpair { user, force } => match target(user) {
            Ok(u) => ctx.unpair(&u, *force, !actor.is_root()),
            Err(r) => fail(Exit::NotAllowed, &r.0),
        },
        Command::Status { user, operation } => match target(user) {
            Ok(u) => ctx.status(&u, operation.as_deref()),
            Err(r) => fail(Exit::NotAllowed, &r.0),
        },
        Command::Totp { action } => {
            let user = match action {
                TotpAction::Create { user, .. } | TotpAction::Disable { user } | TotpAction::Verify { user, .. } => {
                    user
                }
            };
            match target(user) {
                Ok(u) => match action {
                    TotpAction::Create { qr_file, .. } => ctx.totp_create(&u, qr_file.as_deref()),
                    TotpAction::Disable { .. } => ctx.totp_disable(&u, !actor.is_root()),
                    TotpAction::Verify { code, .. } => ctx.totp_verify(&u, code),
                },
                Err(r) => fail(Exit::NotAllowed, &r.0),
            }
        }
        Command::Users if actor.is_root() => ctx.users(),
        Command::Users => fail(Exit::NotAllowed, "listing every pairing is for root only"),
        Command::Migrate if actor.is_root() => ctx.migrate(),
        Command::Migrate => fail(Exit::NotAllowed, "migrate is for root only"),
        Command::Store {
            action:
                StoreAction::Copy {
                    from_url,
                    to_url,
                    force,
                },
        } if actor.is_root() => ctx.store_copy(from_url, to_url, *force),
        Command::Store { .. } => fail(Exit::NotAllowed, "store commands are for root only"),
        Command::CheckConfig { .. } | Command::TryLogin { .. } => Exit::Usage,
    }
}

/// Prints `message` to stderr and returns `code`.
fn fail(code: Exit, message: &str) -> Exit {
    eprintln!("lockserver: {message}");
    code
}

/// The effective uid: the owner of `/proc/self` (no unsafe call needed outside the PAM and C layers).
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}
