//! The caller's conversation callback as the login decision's [`Prompter`]: texts go out as
//! NUL-terminated strings borrowed for the call, answers come back in a buffer the library owns and
//! wipes, so no allocation ever crosses the boundary in either direction.

use super::boundary::LOCKSERVER_MAX_INPUT;
use crate::escape;
use crate::login::Prompter;
use std::ffi::{CString, c_char, c_int, c_void};
use zeroize::Zeroizing;

/// What the library asks the conversation callback to do with a text (the values are PAM's).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_message_style {
    /// Show the text as a prompt and read a secret answer without echoing it (a one-time password,
    /// a verification code).
    LOCKSERVER_PROMPT_ECHO_OFF = 1,
    /// Show the text as a prompt and read an answer that may be echoed (not a secret).
    LOCKSERVER_PROMPT_ECHO_ON = 2,
    /// Show an error text (why the login is refused, a wrong code). Nothing is read.
    LOCKSERVER_MESSAGE_ERROR = 3,
    /// Show an information text (e.g. "Approve the login on your phone"). Nothing is read.
    LOCKSERVER_MESSAGE_INFO = 4,
}

/// Size in bytes of the answer buffer a prompt gets: room for LOCKSERVER_MAX_INPUT bytes and the NUL.
pub(crate) const ANSWER_SIZE: usize = LOCKSERVER_MAX_INPUT + 1;

/// The conversation callback of lockserver_login, called on the calling thread during that call only.
///
/// - `userdata`: the pointer given to lockserver_login, passed through untouched.
/// - `style`: what to do with `text` (a lockserver_message_style value).
/// - `text`: NUL-terminated UTF-8, borrowed: valid until the callback returns; do not free it.
/// - `answer`, `answer_size`: for the two prompt styles, a buffer of `answer_size` bytes
///   (LOCKSERVER_MAX_INPUT + 1) owned by the library, zero-filled; write the answer there as a
///   NUL-terminated string (at most answer_size - 1 bytes, then the NUL). The library copies it into
///   wiped memory and wipes the buffer when the callback returns; wipe any copy of your own. For the
///   message styles `answer` is NULL and `answer_size` 0.
///
/// Return 0 when the text was shown (and, for a prompt, the answer written); any other value means
/// "no answer" (the user cancelled, the terminal is gone): a login that needs the answer is refused.
/// An answer without a NUL within the buffer counts as no answer; one that is not UTF-8 as a wrong
/// code. The callback must return normally: no longjmp and no C++ exception out of it. It may call
/// other lockserver_* functions, with the same handle too.
pub type lockserver_conversation = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        style: lockserver_message_style,
        text: *const c_char,
        answer: *mut c_char,
        answer_size: usize,
    ) -> c_int,
>;

/// The callback, non-null, as it is called.
pub(super) type Callback =
    unsafe extern "C" fn(*mut c_void, lockserver_message_style, *const c_char, *mut c_char, usize) -> c_int;

/// The login's side of the conversation.
pub(super) struct CallbackPrompter {
    callback: Callback,
    userdata: *mut c_void,
    /// The last error text shown: what lockserver_login gives the caller as the refusal's message.
    last_error: Option<String>,
}

impl CallbackPrompter {
    /// # Safety
    /// `callback` is safe to call with `userdata` and the arguments its documentation
    /// ([`lockserver_conversation`]) describes, for as long as this prompter lives.
    pub(super) unsafe fn new(callback: Callback, userdata: *mut c_void) -> CallbackPrompter {
        CallbackPrompter {
            callback,
            userdata,
            last_error: None,
        }
    }

    /// The last error text shown, if any.
    pub(super) fn into_last_error(self) -> Option<String> {
        self.last_error
    }

    /// Shows a text that asks nothing back; the callback's answer does not change the login.
    fn say(&mut self, style: lockserver_message_style, text: &CString) {
        // SAFETY: the contract of `new`; `text` is NUL-terminated and outlives the call; a message
        // style gets no answer buffer (NULL, 0), as documented.
        let _ = unsafe { (self.callback)(self.userdata, style, text.as_ptr(), std::ptr::null_mut(), 0) };
    }

    /// Asks a question; the answer is copied out of the buffer into wiped memory.
    fn ask(&mut self, style: lockserver_message_style, prompt: &str) -> Option<Zeroizing<String>> {
        let prompt = c_text(prompt);
        let mut buffer = Zeroizing::new(vec![0u8; ANSWER_SIZE]);
        // SAFETY: the contract of `new`; `prompt` is NUL-terminated and outlives the call; `buffer` has
        // ANSWER_SIZE writable bytes, the size passed, and outlives the call.
        let rc = unsafe {
            (self.callback)(
                self.userdata,
                style,
                prompt.as_ptr(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        if rc != 0 {
            return None;
        }
        answer_in(&buffer)
    }
}

/// The NUL-terminated answer in `buffer`: `None` when there is no NUL (the callback overran it); an
/// answer that is not UTF-8 cannot match any code and becomes the empty answer (as in the PAM module).
fn answer_in(buffer: &[u8]) -> Option<Zeroizing<String>> {
    let len = buffer.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&buffer[..len]).unwrap_or_default();
    Some(Zeroizing::new(text.to_owned()))
}

/// Longest text given to the callback, in characters (as in the PAM module's messages).
const MAX_TEXT_CHARS: usize = 1024;

/// A text for C, escaped as the PAM module escapes its messages: it may carry a server's message, and
/// nothing in it may rewrite or reorder the user's terminal. The escaping also removes any NUL, which
/// would cut the C string short.
fn c_text(text: &str) -> CString {
    CString::new(escape::for_terminal(text, MAX_TEXT_CHARS)).unwrap_or_default()
}

impl Prompter for CallbackPrompter {
    fn prompt_secret(&mut self, prompt: &str) -> Option<Zeroizing<String>> {
        self.ask(lockserver_message_style::LOCKSERVER_PROMPT_ECHO_OFF, prompt)
    }

    fn error(&mut self, text: &str) {
        let text = c_text(text);
        self.say(lockserver_message_style::LOCKSERVER_MESSAGE_ERROR, &text);
        self.last_error = Some(text.to_string_lossy().into_owned());
    }

    fn info(&mut self, text: &str) {
        self.say(lockserver_message_style::LOCKSERVER_MESSAGE_INFO, &c_text(text));
    }
}

#[cfg(test)]
mod tests {
    // The callback itself (what it is given, what it returns) is tested from C (tests/c/capi_test.c)
    // and from Rust through the C ABI (tests/capi.rs): an `extern "C" fn` here would be taken for an
    // export by tests/panic_boundary.rs.
    use super::*;

    #[test]
    fn the_answer_is_copied_up_to_the_nul() {
        assert_eq!(
            answer_in(b"123456\0garbage").as_deref().map(String::as_str),
            Some("123456")
        );
        assert_eq!(answer_in(&[0; ANSWER_SIZE]).as_deref().map(String::as_str), Some(""));
    }

    #[test]
    fn no_nul_in_the_buffer_is_no_answer_and_bad_utf8_a_wrong_one() {
        assert!(
            answer_in(&[b'7'; ANSWER_SIZE]).is_none(),
            "the callback overran the buffer"
        );
        let bad = answer_in(&[0xff, 0xfe, b'1', 0]);
        assert_eq!(bad.as_deref().map(String::as_str), Some(""), "not UTF-8: a wrong code");
    }

    #[test]
    fn texts_are_escaped_for_the_terminal_and_never_hold_a_nul() {
        // A NUL would cut the C string short; a bidi override would reorder the terminal.
        let text = c_text("locked\0out\u{202e}\nline 2");
        assert_eq!(text.to_str(), Ok("locked\\u{0}out\\u{202e}\nline 2"));
        assert!(c_text(&"x".repeat(5000)).as_bytes().len() < 1100, "capped");
    }
}
