//! `lockserver totp create | disable | verify` (the seed's TOTP flow, and local RFC 6238 codes).

use super::commands::{Context, hostname};
use super::qr::{self, Shown};
use super::{Exit, fail};
use lockserver::dictionary::Section;
use lockserver::login::system_clock;
use std::path::Path;

impl Context<'_> {
    pub fn totp_create(&self, user: &str, qr_file: Option<&Path>) -> Exit {
        // The image is only ever written to a new file: say so before anything is enrolled.
        if let Some(path) = qr_file
            && path.symlink_metadata().is_ok()
        {
            return fail(
                Exit::Usage,
                &format!("{} already exists: give --qr-file a new path", path.display()),
            );
        }
        let label = format!("{user}@{}", hostname());
        self.with_accounts(user, |a| {
            let enrolment = a.totp_create(user, &label)?;
            println!("{}", self.text(Section::Totp, "enabled", user));
            match qr::show(&enrolment.qr) {
                Ok(Shown::Drawn { art, content }) => {
                    // The key first and the code last, so that the code is what stays on the screen.
                    if content.starts_with("otpauth://") {
                        println!("Scan this code with the app, or enter it by hand: {content}");
                    }
                    println!("{}", qr::coloured(&art));
                    if let Some(warning) = qr::too_small(&art, 1, qr::terminal_size()) {
                        eprintln!("lockserver: {warning}");
                    }
                }
                Ok(Shown::Link(url)) => println!("Open this address to see the QR code: {url}"),
                Err(e) => eprintln!("lockserver: the QR code cannot be drawn here ({e}); use --qr-file PATH"),
            }
            if let Some(path) = qr_file {
                match qr::save_image(&enrolment.qr, path) {
                    Ok(()) => println!("QR code saved to {}", path.display()),
                    Err(e) => {
                        eprintln!("lockserver: {e}");
                        return Ok(Exit::Store);
                    }
                }
            }
            Ok(Exit::Ok)
        })
    }

    pub fn totp_disable(&self, user: &str, self_service: bool) -> Exit {
        // Through sudo, only with the factor in hand: a borrowed password must not remove it (#9).
        if self_service && let Err(code) = self.prove_factor(user) {
            return code;
        }
        self.with_accounts(user, |a| {
            a.totp_disable(user)?;
            println!("{}", self.text(Section::Totp, "disabled", user));
            Ok(Exit::Ok)
        })
    }

    pub fn totp_verify(&self, user: &str, code: &str) -> Exit {
        self.with_accounts(user, |a| {
            if a.totp_verify(user, code, system_clock())? {
                println!("code accepted");
                Ok(Exit::Ok)
            } else {
                eprintln!("lockserver: {}", self.dictionary.get(Section::Totp, "invalidcode"));
                Ok(Exit::Refused)
            }
        })
    }
}
