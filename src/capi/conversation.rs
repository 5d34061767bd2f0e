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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    /// What a test callback saw, and what it answers.
    #[derive(Default)]
    struct Seen {
        calls: Vec<(lockserver_message_style, String, usize)>,
        answer: Vec<u8>,
        rc: c_int,
    }

    unsafe extern "C" fn record(
        userdata: *mut c_void,
        style: lockserver_message_style,
        text: *const c_char,
        answer: *mut c_char,
        answer_size: usize,
    ) -> c_int {
        // SAFETY: the tests pass a `Seen` as userdata.
        let seen = unsafe { &mut *userdata.cast::<Seen>() };
        // SAFETY: the library passes a NUL-terminated text.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned();
        seen.calls.push((style, text, answer_size));
        if !answer.is_null() {
            let n = seen.answer.len().min(answer_size);
            // SAFETY: `answer` has `answer_size` writable bytes; at most that many are written.
            unsafe { std::ptr::copy_nonoverlapping(seen.answer.as_ptr(), answer.cast::<u8>(), n) };
        }
        seen.rc
    }

    fn prompter(seen: &mut Seen) -> CallbackPrompter {
        // SAFETY: `record` takes a `Seen`, which outlives the prompter in each test.
        unsafe { CallbackPrompter::new(record, std::ptr::from_mut(seen).cast()) }
    }

    #[test]
    fn a_prompt_gets_a_buffer_and_its_answer_is_copied_up_to_the_nul() {
        let mut seen = Seen {
            answer: b"123456\0garbage".to_vec(),
            ..Seen::default()
        };
        let answer = prompter(&mut seen).prompt_secret("Code: ");
        assert_eq!(answer.as_deref().map(String::as_str), Some("123456"));
        assert_eq!(
            seen.calls,
            [(
                lockserver_message_style::LOCKSERVER_PROMPT_ECHO_OFF,
                "Code: ".to_string(),
                ANSWER_SIZE
            )]
        );
    }

    #[test]
    fn no_answer_when_the_callback_fails_or_overruns_the_buffer() {
        let mut seen = Seen {
            answer: b"123456\0".to_vec(),
            rc: -1,
            ..Seen::default()
        };
        assert!(
            prompter(&mut seen).prompt_secret("Code: ").is_none(),
            "a non-zero return is no answer"
        );
        let mut seen = Seen {
            answer: vec![b'7'; ANSWER_SIZE],
            ..Seen::default()
        };
        assert!(
            prompter(&mut seen).prompt_secret("Code: ").is_none(),
            "no NUL in the buffer"
        );
        let mut seen = Seen::default();
        let empty = prompter(&mut seen).prompt_secret("Code: ");
        assert_eq!(
            empty.as_deref().map(String::as_str),
            Some(""),
            "nothing written is the empty answer"
        );
        let mut seen = Seen {
            answer: vec![0xff, 0xfe, b'1', 0],
            ..Seen::default()
        };
        let bad = prompter(&mut seen).prompt_secret("Code: ");
        assert_eq!(bad.as_deref().map(String::as_str), Some(""), "not UTF-8: a wrong code");
    }

    #[test]
    fn errors_get_no_buffer_are_escaped_and_the_last_one_is_kept() {
        let mut seen = Seen {
            rc: 1,
            ..Seen::default()
        };
        let mut p = prompter(&mut seen);
        p.error("first");
        // A NUL would cut the C string short; a bidi override would reorder the terminal.
        p.error("locked\0out\u{202e}");
        let shown = "locked\\u{0}out\\u{202e}";
        assert_eq!(p.into_last_error().as_deref(), Some(shown));
        assert_eq!(
            seen.calls,
            [
                (
                    lockserver_message_style::LOCKSERVER_MESSAGE_ERROR,
                    "first".to_string(),
                    0
                ),
                (lockserver_message_style::LOCKSERVER_MESSAGE_ERROR, shown.to_string(), 0),
            ]
        );
    }
}
