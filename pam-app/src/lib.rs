//! The libpam *application* side, declared once: `pam_start` / `pam_start_confdir`, the auth and account
//! calls, `pam_end`, and the conversation trampoline. Used by `lockserver try-login` (a terminal
//! conversation) and by the tests (a scripted one). The module side (`pam_sm_*`) lives in the library.
//!
//! All `unsafe` of this crate sits in [`ffi`], [`Transaction`] and the trampoline, each block with the
//! reason it holds.

pub mod ffi;
mod trampoline;

use ffi::{PamConv, PamHandle};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use ffi::{
    PAM_ABORT, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_BUF_ERR, PAM_CONV_ERR, PAM_IGNORE, PAM_MAXTRIES,
    PAM_NO_MODULE_DATA, PAM_PERM_DENIED, PAM_SERVICE_ERR, PAM_SUCCESS,
};
pub use trampoline::conversation_trampoline;

/// A message style of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    EchoOff,
    EchoOn,
    Error,
    Info,
    Other(i32),
}

impl Style {
    pub fn from_raw(raw: i32) -> Style {
        match raw {
            ffi::PAM_PROMPT_ECHO_OFF => Style::EchoOff,
            ffi::PAM_PROMPT_ECHO_ON => Style::EchoOn,
            ffi::PAM_ERROR_MSG => Style::Error,
            ffi::PAM_TEXT_INFO => Style::Info,
            other => Style::Other(other),
        }
    }

    /// Whether the message asks for an answer.
    pub fn is_prompt(self) -> bool {
        matches!(self, Style::EchoOff | Style::EchoOn)
    }
}

/// The person (or script) at the other end of a transaction.
pub trait Conversation {
    /// One message from a module. For a prompt, `Some(answer)`; `None` fails the whole conversation
    /// (as a user who hangs up). For other styles the return value is ignored.
    fn message(&mut self, style: Style, text: &str) -> Option<String>;
}

/// One PAM transaction: `pam_start(_confdir)` … `pam_end` (in `Drop`).
pub struct Transaction {
    handle: *mut PamHandle,
    /// Pointed to by the conversation's `appdata_ptr`: boxed twice so the address stays put; kept alive
    /// until `pam_end` has run.
    conversation: Box<Box<dyn Conversation>>,
    last: i32,
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("the {what} holds a NUL byte"))
}

impl Transaction {
    /// Starts a transaction for `service` and `user`. With `confdir`, the service file is read from that
    /// directory (`pam_start_confdir`, Linux-PAM ≥ 1.4) instead of `/etc/pam.d`.
    pub fn start(
        service: &str,
        user: &[u8],
        confdir: Option<&Path>,
        conversation: Box<dyn Conversation>,
    ) -> Result<Transaction, String> {
        let c_service = cstring("service name", service.as_bytes())?;
        let c_user = cstring("user name", user)?;
        let c_confdir = confdir
            .map(|d| cstring("PAM configuration directory", d.as_os_str().as_bytes()))
            .transpose()?;
        let conversation = Box::new(conversation);
        let conv = PamConv {
            conv: conversation_trampoline,
            appdata_ptr: std::ptr::from_ref::<Box<dyn Conversation>>(&conversation)
                .cast_mut()
                .cast(),
        };
        let mut handle: *mut PamHandle = std::ptr::null_mut();
        let confdir_ptr = c_confdir.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: every pointer is a valid NUL-terminated string (or null for the default confdir) or a
        // live struct for the duration of the call; libpam copies the strings and the pam_conv struct.
        // `appdata_ptr` points into `conversation`, which the returned Transaction keeps (boxed, never
        // moved out) until after pam_end.
        let rc =
            unsafe { ffi::pam_start_confdir(c_service.as_ptr(), c_user.as_ptr(), &conv, confdir_ptr, &mut handle) };
        if rc != PAM_SUCCESS || handle.is_null() {
            return Err(format!("pam_start failed for service {service} (code {rc})"));
        }
        Ok(Transaction {
            handle,
            conversation,
            last: PAM_SUCCESS,
        })
    }

    /// Sets PAM_RHOST.
    pub fn set_rhost(&mut self, rhost: &str) -> Result<(), String> {
        let c_rhost = cstring("remote host", rhost.as_bytes())?;
        // SAFETY: the handle is live (pam_end runs only in Drop); libpam copies the string.
        let rc = unsafe { ffi::pam_set_item(self.handle, ffi::PAM_RHOST, c_rhost.as_ptr().cast()) };
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            Err(format!("pam_set_item(PAM_RHOST) failed (code {rc})"))
        }
    }

    /// `pam_authenticate`: the auth stack's code.
    pub fn authenticate(&mut self) -> i32 {
        // SAFETY: the handle is live; the conversation's appdata (self.conversation) outlives the call.
        self.last = unsafe { ffi::pam_authenticate(self.handle, 0) };
        self.last
    }

    /// `pam_acct_mgmt`: the account stack's code.
    pub fn acct_mgmt(&mut self) -> i32 {
        // SAFETY: the handle is live; the conversation's appdata (self.conversation) outlives the call.
        self.last = unsafe { ffi::pam_acct_mgmt(self.handle, 0) };
        self.last
    }

    /// The conversation, e.g. to read what a scripted one recorded.
    pub fn conversation(&mut self) -> &mut dyn Conversation {
        &mut **self.conversation
    }

    /// libpam's text for `rc`, e.g. "Authentication failure".
    pub fn describe(&self, rc: i32) -> String {
        // SAFETY: pam_strerror returns a pointer to a static string (or null) for a live handle.
        let text = unsafe { ffi::pam_strerror(self.handle, rc) };
        if text.is_null() {
            return format!("code {rc}");
        }
        // SAFETY: non-null, NUL-terminated static string from libpam.
        let s = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        format!("{s} (code {rc})")
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: the handle came from pam_start_confdir and is ended exactly once, here; the
        // conversation is dropped only after this call returns.
        unsafe { ffi::pam_end(self.handle, self.last) };
    }
}
