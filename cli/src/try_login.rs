//! `lockserver try-login`: runs `pam_authenticate` and `pam_acct_mgmt` of a real service stack on the
//! terminal, and never opens a session or changes a credential.

use pam_app::{Conversation, PAM_SUCCESS, Style, Transaction};
use std::io::{BufRead, IsTerminal, Write};

/// What the stack answered.
#[derive(Debug)]
pub struct Report {
    pub auth: String,
    pub account: Option<String>,
    pub success: bool,
}

/// Runs the auth and account stacks of `service` (in /etc/pam.d) for `user` on this terminal.
pub fn try_login(service: &str, user: &str) -> Result<Report, String> {
    let mut pam = Transaction::start(service, user.as_bytes(), None, Box::new(Terminal))?;
    pam.set_rhost("try-login")?;
    let auth = pam.authenticate();
    let auth_text = pam.describe(auth);
    let mut account_text = None;
    let mut last = auth;
    if auth == PAM_SUCCESS {
        let account = pam.acct_mgmt();
        account_text = Some(pam.describe(account));
        last = account;
    }
    Ok(Report {
        auth: auth_text,
        account: account_text,
        success: last == PAM_SUCCESS,
    })
}

/// The person at this terminal.
struct Terminal;

impl Conversation for Terminal {
    fn message(&mut self, style: Style, text: &str) -> Option<String> {
        match style {
            Style::EchoOff | Style::EchoOn => {
                print!("{text}");
                let _ = std::io::stdout().flush();
                Some(read_answer(style == Style::EchoOn).unwrap_or_default())
            }
            Style::Error => {
                eprintln!("{text}");
                None
            }
            Style::Info => {
                println!("{text}");
                None
            }
            Style::Other(_) => None,
        }
    }
}

/// Reads one line from standard input, with echo off when asked and stdin is a terminal.
fn read_answer(echo: bool) -> Option<String> {
    let stdin = std::io::stdin();
    let _quiet = (!echo && stdin.is_terminal()).then(EchoOff::new).flatten();
    let mut line = String::new();
    let ok = stdin.lock().read_line(&mut line).is_ok();
    ok.then(|| line.trim_end_matches(['\n', '\r']).to_string())
}

/// Terminal echo switched off until dropped (via `stty`, so this program needs no unsafe code).
struct EchoOff;

impl EchoOff {
    fn new() -> Option<EchoOff> {
        let stty = |arg: &str| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status()
                .is_ok_and(|s| s.success())
        };
        stty("-echo").then_some(EchoOff)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        println!();
    }
}
