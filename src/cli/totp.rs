//! `lockserver totp create | disable | verify` (the seed's TOTP flow, and local RFC 6238 codes).

use super::Exit;
use super::commands::{Context, hostname};
use super::qr::{self, Shown};
use crate::dictionary::Section;
use crate::login::system_clock;
use std::path::Path;

impl Context<'_> {
    pub fn totp_create(&self, user: &str, qr_file: Option<&Path>) -> Exit {
        let label = format!("{user}@{}", hostname());
        self.with_accounts(user, |a| {
            let enrolment = a.totp_create(user, &label)?;
            println!("{}", self.text(Section::Totp, "enabled", user));
            match qr::show(&enrolment.qr, qr_file) {
                Ok(Shown::Drawn { art, content }) => {
                    println!("{art}");
                    if content.starts_with("otpauth://") {
                        println!("Or enter it by hand: {content}");
                    }
                }
                Ok(Shown::Link(url)) => println!("Open this address to see the QR code: {url}"),
                Err(e) => eprintln!("lockserver: the QR code cannot be shown here ({e}); use --qr-file PATH"),
            }
            if let Some(path) = qr_file {
                println!("QR code saved to {}", path.display());
            }
            Ok(Exit::Ok)
        })
    }

    pub fn totp_disable(&self, user: &str) -> Exit {
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
