//! A test-only driver for the real libpam: `pam_start_confdir` on a service file in a temp dir, a scripted
//! conversation that records every message, and the auth / account calls.
//!
//! To see every code the module returns — PAM_IGNORE included, which a plain `required` line turns into
//! PAM_PERM_DENIED at the end of the stack — the service file written by [`write_service`] uses
//! `[success=done ignore=ignore default=die]` for the module and, behind it, a `pam_debug.so` line that
//! answers [`IGNORE_MARKER`]: the stack ends on that line only when the module said PAM_IGNORE, and the
//! driver reports it as PAM_IGNORE.

use libc::{c_char, c_int, c_void};
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const PAM_SUCCESS: i32 = 0;
pub const PAM_SERVICE_ERR: i32 = 3;
pub const PAM_BUF_ERR: i32 = 5;
pub const PAM_PERM_DENIED: i32 = 6;
pub const PAM_AUTH_ERR: i32 = 7;
pub const PAM_AUTHINFO_UNAVAIL: i32 = 9;
pub const PAM_MAXTRIES: i32 = 11;
pub const PAM_NO_MODULE_DATA: i32 = 18;
pub const PAM_CONV_ERR: i32 = 19;
pub const PAM_IGNORE: i32 = 25;
pub const PAM_ABORT: i32 = 26;

/// What the `pam_debug.so` line behind the module answers; a module never returns it from a hook.
pub const IGNORE_MARKER: i32 = PAM_NO_MODULE_DATA;
const IGNORE_MARKER_NAME: &str = "no_module_data";

const PAM_RHOST: c_int = 4;

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
    fn from_raw(raw: c_int) -> Style {
        match raw {
            1 => Style::EchoOff,
            2 => Style::EchoOn,
            3 => Style::Error,
            4 => Style::Info,
            other => Style::Other(other),
        }
    }
}

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

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandleT {
    _private: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandleT,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleT, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandleT, status: c_int) -> c_int;
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

/// The scripted user: answers prompts from a queue, records every message.
#[derive(Default)]
struct ConvState {
    answers: Mutex<VecDeque<Answer>>,
    transcript: Mutex<Vec<Message>>,
}

/// One PAM transaction (one `pam_start_confdir` … `pam_end`).
pub struct PamSession {
    handle: *mut PamHandleT,
    /// Pointed to by the conversation's `appdata_ptr`: boxed so its address stays put, kept alive until
    /// `pam_end` has run.
    state: Box<ConvState>,
    last: c_int,
}

fn cstring(what: &str, bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap_or_else(|_| panic!("{what} holds a NUL byte"))
}

impl PamSession {
    /// Starts a transaction for `service` (a file in `confdir`) and `user`.
    pub fn start(confdir: &Path, service: &str, user: &str) -> PamSession {
        Self::start_bytes(confdir, service, user.as_bytes())
    }

    /// Like [`Self::start`], for a user name that need not be UTF-8.
    pub fn start_bytes(confdir: &Path, service: &str, user: &[u8]) -> PamSession {
        let c_service = cstring("service name", service.as_bytes());
        let c_user = cstring("user name", user);
        let c_confdir = cstring("confdir", confdir.as_os_str().as_bytes());
        let state = Box::new(ConvState::default());
        let conv = PamConv {
            conv: scripted_conv,
            appdata_ptr: std::ptr::from_ref::<ConvState>(&state).cast_mut().cast(),
        };
        let mut handle: *mut PamHandleT = std::ptr::null_mut();
        // SAFETY: every pointer is a valid NUL-terminated string or a live struct for the duration of the
        // call; libpam copies the strings and the pam_conv struct. `appdata_ptr` points into `state`,
        // which the returned session keeps (boxed, never moved out) until after pam_end.
        let rc = unsafe {
            pam_start_confdir(
                c_service.as_ptr(),
                c_user.as_ptr(),
                &conv,
                c_confdir.as_ptr(),
                &mut handle,
            )
        };
        assert!(
            rc == PAM_SUCCESS && !handle.is_null(),
            "pam_start_confdir({service}, confdir {}) failed with {rc}",
            confdir.display()
        );
        PamSession {
            handle,
            state,
            last: PAM_SUCCESS,
        }
    }

    /// Sets PAM_RHOST.
    pub fn set_rhost(&mut self, rhost: &str) -> &mut Self {
        let c_rhost = cstring("rhost", rhost.as_bytes());
        // SAFETY: the handle is live (pam_end runs only in Drop); libpam copies the string.
        let rc = unsafe { pam_set_item(self.handle, PAM_RHOST, c_rhost.as_ptr().cast()) };
        assert_eq!(rc, PAM_SUCCESS, "pam_set_item(PAM_RHOST) failed");
        self
    }

    fn begin(&self, answers: Vec<Answer>) {
        let mut queue = self.state.answers.lock().expect("answers lock");
        queue.clear();
        queue.extend(answers);
        self.state.transcript.lock().expect("transcript lock").clear();
    }

    fn finish(&mut self, raw: c_int) -> (i32, Transcript) {
        self.last = raw;
        let messages = std::mem::take(&mut *self.state.transcript.lock().expect("transcript lock"));
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
        // SAFETY: the handle is live; the conversation's appdata (self.state) outlives the call.
        let rc = unsafe { pam_authenticate(self.handle, 0) };
        self.finish(rc)
    }

    /// `pam_acct_mgmt`, with no answers at all (the account phase must never prompt).
    pub fn acct_mgmt(&mut self) -> (i32, Transcript) {
        self.begin(Vec::new());
        // SAFETY: the handle is live; the conversation's appdata (self.state) outlives the call.
        let rc = unsafe { pam_acct_mgmt(self.handle, 0) };
        self.finish(rc)
    }

    /// Answers left unused by the last call.
    pub fn unused_answers(&self) -> usize {
        self.state.answers.lock().expect("answers lock").len()
    }
}

impl Drop for PamSession {
    fn drop(&mut self) {
        // SAFETY: the handle came from pam_start_confdir and is ended exactly once, here; `state` is
        // dropped only after this call returns.
        unsafe { pam_end(self.handle, self.last) };
    }
}

extern "C" fn scripted_conv(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // A panic must not unwind into libpam.
    std::panic::catch_unwind(|| converse(num_msg, msg, resp, appdata)).unwrap_or(PAM_CONV_ERR)
}

fn converse(num_msg: c_int, msg: *mut *const PamMessage, resp: *mut *mut PamResponse, appdata: *mut c_void) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the `ConvState` a live PamSession owns (set in start_bytes).
    let state = unsafe { &*appdata.cast::<ConvState>() };
    // SAFETY: calloc of n zeroed responses; libpam frees the array and every `resp` with free().
    let replies = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    let mut failed = false;
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of n pointers to messages.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            failed = true;
            break;
        }
        // SAFETY: m points to a message valid for the duration of the call.
        let (style, text_ptr) = unsafe { ((*m).msg_style, (*m).msg) };
        let text = if text_ptr.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string from the module, valid for the duration of the call.
            unsafe { CStr::from_ptr(text_ptr) }.to_string_lossy().into_owned()
        };
        let style = Style::from_raw(style);
        if let Ok(mut t) = state.transcript.lock() {
            t.push(Message {
                style,
                text: text.clone(),
            });
        }
        if matches!(style, Style::EchoOff | Style::EchoOn) {
            let answer = state.answers.lock().ok().and_then(|mut q| q.pop_front());
            let answer = answer.map(|a| match a {
                Answer::Text(t) => t,
                Answer::Later(mut f) => f(&text),
            });
            let Some(answer) = answer.and_then(|a| CString::new(a).ok()) else {
                failed = true;
                break;
            };
            // SAFETY: strdup copies a valid C string into malloc'd memory that libpam frees.
            let copy = unsafe { libc::strdup(answer.as_ptr()) };
            if copy.is_null() {
                failed = true;
                break;
            }
            // SAFETY: i < n, so the slot is inside the calloc'd array.
            unsafe { (*replies.add(i)).resp = copy };
        }
    }
    if failed {
        for i in 0..n {
            // SAFETY: every slot is inside the array and holds null or a strdup'd string we own.
            unsafe { libc::free((*replies.add(i)).resp.cast()) };
        }
        // SAFETY: the array came from calloc and was not handed to libpam.
        unsafe { libc::free(replies.cast()) };
        return PAM_CONV_ERR;
    }
    // SAFETY: resp is the out-pointer libpam gave; it takes ownership of the array.
    unsafe { *resp = replies };
    PAM_SUCCESS
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
