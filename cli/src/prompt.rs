//! Asking the person at the terminal for a verification code (self-service proof, #9).

use lockserver::config::Secret;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::{Command, Stdio};

/// Longest line read: a code is 6–8 digits; anything longer is not a code and is not kept.
const MAX_LINE: u64 = 64;

/// Prints `prompt` on stderr and reads one line from stdin, without echo when stdin is a terminal.
/// `None` when nothing could be read (stdin closed or not readable).
pub fn code(prompt: &str) -> Option<Secret> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let terminal = std::io::stdin().is_terminal();
    // `stty` acts on the terminal it is given as stdin (ours): no unsafe termios call in the CLI.
    let echo_off = terminal && stty("-echo");
    let mut line = String::with_capacity(MAX_LINE as usize + 1); // never grown: no copy left behind
    let read = std::io::stdin().lock().take(MAX_LINE).read_line(&mut line);
    if echo_off {
        stty("echo");
        let _ = writeln!(err);
    }
    let secret = Secret::new(line);
    match read {
        Ok(n) if n > 0 => Some(secret),
        _ => None,
    }
}

fn stty(setting: &str) -> bool {
    Command::new("stty")
        .arg(setting)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
