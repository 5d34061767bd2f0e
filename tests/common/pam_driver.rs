//! A test-only driver for the real libpam: `pam_start_confdir` on a service file in a temp dir, a scripted
//! conversation that records every message, and the auth / account calls.
//!
//! To see every code the module returns — PAM_IGNORE included, which a plain `required` line turns into
//! PAM_PERM_DENIED at the end of the stack — the service file written by [`write_service`] uses
//! `[success=done ignore=ignore default=die]` for the module and, behind it, a `pam_debug.so` line that
//! answers [`IGNORE_MARKER`]: the stack ends on that line only when the module said PAM_IGNORE, and the
//! driver reports it as PAM_IGNORE.

use pam_app::{Conversation, Transaction};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[allow(unused_imports)] // each test binary uses a different part
pub use pam_app::{
    PAM_ABORT, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_BUF_ERR, PAM_CONV_ERR, PAM_IGNORE, PAM_MAXTRIES,
    PAM_NO_MODULE_DATA, PAM_PERM_DENIED, PAM_SERVICE_ERR, PAM_SUCCESS, Style,
};

/// What the `pam_debug.so` line behind the module answers; a module never returns it from a hook.
pub const IGNORE_MARKER: i32 = PAM_NO_MODULE_DATA;
const IGNORE_MARKER_NAME: &str = "no_module_data";

/// One message the module sent through the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub style: Style,
    pub text: String,
}

/// Everything the user saw during one call.
#[derive(Debug, Clone, Default)]
pub struct Transcript(pub Vec<Message>);

impl Transcript {
    /// The prompts (echo off or on).
    pub fn prompts(&self) -> Vec<&Message> {
        self.0
            .iter()
            .filter(|m| matches!(m.style, Style::EchoOff | Style::EchoOn))
            .collect()
    }

    /// Whether any message contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.0.iter().any(|m| m.text.contains(needle))
    }

    /// Whether any message of `style` contains `needle`.
    pub fn has(&self, style: Style, needle: &str) -> bool {
        self.0.iter().any(|m| m.style == style && m.text.contains(needle))
    }
}

/// One scripted answer to a prompt.
pub enum Answer {
    /// This text.
    Text(String),
    /// Whatever the closure returns when the prompt arrives (e.g. a token the emulator just issued).
    Later(Box<dyn FnMut(&str) -> String + Send>),
}

impl Answer {
    pub fn text(s: &str) -> Answer {
        Answer::Text(s.to_string())
    }

    pub fn later(f: impl FnMut(&str) -> String + Send + 'static) -> Answer {
        Answer::Later(Box::new(f))
    }
}

/// The scripted user: answers prompts from a queue, records every message. Shared with the
/// [`Transaction`]'s conversation, so a session can reload and read it between calls.
#[derive(Default)]
struct ConvState {
    answers: VecDeque<Answer>,
    transcript: Vec<Message>,
}

struct Scripted(Arc<Mutex<ConvState>>);

impl Conversation for Scripted {
    fn message(&mut self, style: Style, text: &str) -> Option<String> {
        let mut state = self.0.lock().ok()?;
        state.transcript.push(Message {
            style,
            text: text.to_string(),
        });
        if !style.is_prompt() {
            return None;
        }
        state.answers.pop_front().map(|a| match a {
            Answer::Text(t) => t,
            Answer::Later(mut f) => f(text),
        })
    }
}

/// One PAM transaction (one `pam_start_confdir` … `pam_end`).
pub struct PamSession {
    pam: Transaction,
    state: Arc<Mutex<ConvState>>,
}

impl PamSession {
    /// Starts a transaction for `service` (a file in `confdir`) and `user`.
    pub fn start(confdir: &Path, service: &str, user: &str) -> PamSession {
        Self::start_bytes(confdir, service, user.as_bytes())
    }

    /// Like [`Self::start`], for a user name that need not be UTF-8.
    pub fn start_bytes(confdir: &Path, service: &str, user: &[u8]) -> PamSession {
        let state = Arc::new(Mutex::new(ConvState::default()));
        let pam = Transaction::start(service, user, Some(confdir), Box::new(Scripted(Arc::clone(&state))))
            .unwrap_or_else(|e| panic!("pam_start_confdir({service}, confdir {}): {e}", confdir.display()));
        PamSession { pam, state }
    }

    /// Sets PAM_RHOST.
    pub fn set_rhost(&mut self, rhost: &str) -> &mut Self {
        self.pam.set_rhost(rhost).expect("pam_set_item(PAM_RHOST)");
        self
    }

    fn begin(&self, answers: Vec<Answer>) {
        let mut state = self.state.lock().expect("conversation lock");
        state.answers.clear();
        state.answers.extend(answers);
        state.transcript.clear();
    }

    fn finish(&mut self, raw: i32) -> (i32, Transcript) {
        let messages = std::mem::take(&mut self.state.lock().expect("conversation lock").transcript);
        let code = if raw == IGNORE_MARKER { PAM_IGNORE } else { raw };
        (code, Transcript(messages))
    }

    /// `pam_authenticate`, answering prompts in order from `answers` (an unanswered prompt fails the
    /// conversation, as a user who hangs up). Returns the module's code and what the user saw.
    pub fn authenticate(&mut self, answers: &[&str]) -> (i32, Transcript) {
        self.authenticate_with(answers.iter().map(|a| Answer::text(a)).collect())
    }

    /// [`Self::authenticate`] with answers that may be computed when their prompt arrives.
    pub fn authenticate_with(&mut self, answers: Vec<Answer>) -> (i32, Transcript) {
        self.begin(answers);
        let rc = self.pam.authenticate();
        self.finish(rc)
    }

    /// `pam_acct_mgmt`, with no answers at all (the account phase must never prompt).
    pub fn acct_mgmt(&mut self) -> (i32, Transcript) {
        self.begin(Vec::new());
        let rc = self.pam.acct_mgmt();
        self.finish(rc)
    }

    /// Answers left unused by the last call.
    pub fn unused_answers(&self) -> usize {
        self.state.lock().expect("conversation lock").answers.len()
    }
}

/// Writes `confdir/service`: the module (at `module`, with `args`) for auth and account, each followed by
/// the PAM_IGNORE marker line (see the module docs).
pub fn write_service(confdir: &Path, service: &str, module: &Path, args: &[String]) -> PathBuf {
    let args = args.join(" ");
    let module = module.display();
    let text = format!(
        "auth [success=done ignore=ignore default=die] {module} {args}\n\
         auth required pam_debug.so auth={IGNORE_MARKER_NAME}\n\
         account [success=done ignore=ignore default=die] {module} {args}\n\
         account required pam_debug.so acct={IGNORE_MARKER_NAME}\n"
    );
    let path = confdir.join(service);
    std::fs::write(&path, text).expect("write the PAM service file");
    path
}
