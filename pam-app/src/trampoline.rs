//! The conversation function libpam calls: C arrays in, a [`Conversation`] in the middle, malloc'd
//! answers out. Linux-PAM passes `msg` as an array of `num_msg` pointers and frees the reply array and
//! every `resp` in it with `free()`; on failure nothing is handed over.

use crate::Conversation;
use crate::Style;
use crate::ffi::{PAM_BUF_ERR, PAM_CONV_ERR, PAM_SUCCESS, PamMessage, PamResponse};
use libc::{c_int, c_void};
use std::ffi::{CStr, CString};

/// The `conv` member of every `pam_conv` this crate makes; `appdata` is a `*const Box<dyn Conversation>`.
pub extern "C" fn conversation_trampoline(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // A panic (in the conversation, say) must not unwind into libpam.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| converse(num_msg, msg, resp, appdata)))
        .unwrap_or(PAM_CONV_ERR)
}

fn converse(num_msg: c_int, msg: *mut *const PamMessage, resp: *mut *mut PamResponse, appdata: *mut c_void) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the `Box<dyn Conversation>` a live Transaction owns (set in Transaction::start),
    // and libpam calls the conversation only from inside that transaction's calls, one at a time.
    let conversation = unsafe { &mut **appdata.cast::<Box<dyn Conversation>>() };
    let replies = Replies::new(n);
    let Some(mut replies) = replies else {
        return PAM_BUF_ERR;
    };
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of n pointers to messages.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            return PAM_CONV_ERR;
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
        let answer = conversation.message(style, &text);
        if style.is_prompt() {
            let Some(answer) = answer.and_then(|a| CString::new(a).ok()) else {
                return PAM_CONV_ERR;
            };
            if !replies.set(i, &answer) {
                return PAM_BUF_ERR;
            }
        }
    }
    // SAFETY: resp is the out-pointer libpam gave; it takes ownership of the array.
    unsafe { *resp = replies.hand_over() };
    PAM_SUCCESS
}

/// The calloc'd reply array, freed with every answer in it unless handed over to libpam.
struct Replies {
    array: *mut PamResponse,
    n: usize,
}

impl Replies {
    fn new(n: usize) -> Option<Replies> {
        // SAFETY: calloc of n zeroed responses (null `resp`, 0 `resp_retcode`).
        let array = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
        (!array.is_null()).then_some(Replies { array, n })
    }

    /// Stores a malloc'd copy of `answer` in slot `i`; false when out of memory.
    fn set(&mut self, i: usize, answer: &CStr) -> bool {
        debug_assert!(i < self.n);
        // SAFETY: strdup copies a valid C string into malloc'd memory, which libpam (or Drop) frees.
        let copy = unsafe { libc::strdup(answer.as_ptr()) };
        if copy.is_null() {
            return false;
        }
        // SAFETY: i < n, so the slot is inside the calloc'd array; a previous answer there is freed.
        unsafe {
            libc::free((*self.array.add(i)).resp.cast());
            (*self.array.add(i)).resp = copy;
        }
        true
    }

    fn hand_over(self) -> *mut PamResponse {
        let array = self.array;
        std::mem::forget(self);
        array
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        for i in 0..self.n {
            // SAFETY: every slot is inside the array and holds null or a strdup'd string we own.
            unsafe { libc::free((*self.array.add(i)).resp.cast()) };
        }
        // SAFETY: the array came from calloc and was not handed to libpam.
        unsafe { libc::free(self.array.cast()) };
    }
}

/// These tests play libpam's side: they build `pam_message` arrays as Linux-PAM does, call the
/// trampoline, read the replies and free them with `free()` as libpam does. `scripts/test.sh` also runs
/// them under valgrind, which reports any leak or bad free.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Script {
        answers: Vec<Option<String>>,
        seen: Arc<Mutex<Vec<(Style, String)>>>,
        panic_on: Option<String>,
    }

    impl Conversation for Script {
        fn message(&mut self, style: Style, text: &str) -> Option<String> {
            if self.panic_on.as_deref() == Some(text) {
                panic!("the conversation panicked on purpose");
            }
            self.seen.lock().unwrap().push((style, text.to_string()));
            if style.is_prompt() {
                self.answers.remove(0)
            } else {
                None
            }
        }
    }

    /// Calls the trampoline with `messages`; returns its code and the answers (freed here, as libpam does).
    fn call(conversation: Box<dyn Conversation>, messages: &[(i32, &str)]) -> (i32, Vec<Option<String>>) {
        let texts: Vec<CString> = messages.iter().map(|(_, t)| CString::new(*t).unwrap()).collect();
        let structs: Vec<PamMessage> = messages
            .iter()
            .zip(&texts)
            .map(|((style, _), t)| PamMessage {
                msg_style: *style,
                msg: t.as_ptr(),
            })
            .collect();
        let mut pointers: Vec<*const PamMessage> = structs.iter().map(std::ptr::from_ref).collect();
        let boxed: Box<Box<dyn Conversation>> = Box::new(conversation);
        let appdata = std::ptr::from_ref::<Box<dyn Conversation>>(&boxed).cast_mut().cast();
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        let n = c_int::try_from(messages.len()).unwrap();
        let rc = conversation_trampoline(n, pointers.as_mut_ptr(), &mut resp, appdata);
        let mut answers = Vec::new();
        if rc == PAM_SUCCESS {
            assert!(!resp.is_null());
            for i in 0..messages.len() {
                // SAFETY: on success the trampoline handed over an array of n responses.
                let r = unsafe { (*resp.add(i)).resp };
                if r.is_null() {
                    answers.push(None);
                } else {
                    // SAFETY: a strdup'd NUL-terminated string.
                    answers.push(Some(unsafe { CStr::from_ptr(r) }.to_string_lossy().into_owned()));
                    // SAFETY: libpam frees each answer with free().
                    unsafe { libc::free(r.cast()) };
                }
            }
            // SAFETY: and the array itself.
            unsafe { libc::free(resp.cast()) };
        } else {
            assert!(resp.is_null(), "nothing is handed over on failure");
        }
        (rc, answers)
    }

    #[test]
    fn prompts_get_answers_and_other_messages_none() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            answers: vec![Some("123456".into()), Some("alice".into())],
            seen: Arc::clone(&seen),
            panic_on: None,
        };
        let (rc, answers) = call(
            Box::new(script),
            &[
                (PAM_TEXT_INFO, "Approve on your phone"),
                (PAM_PROMPT_ECHO_OFF, "Verification code: "),
                (PAM_ERROR_MSG, "Wrong code"),
                (PAM_PROMPT_ECHO_ON, "Name: "),
            ],
        );
        assert_eq!(rc, PAM_SUCCESS);
        assert_eq!(answers, vec![None, Some("123456".into()), None, Some("alice".into())]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], (Style::Info, "Approve on your phone".into()));
        assert_eq!(seen[2], (Style::Error, "Wrong code".into()));
    }

    #[test]
    fn a_missing_answer_fails_and_frees_what_was_answered() {
        let script = Script {
            answers: vec![Some("first".into()), None],
            ..Script::default()
        };
        let (rc, _) = call(
            Box::new(script),
            &[(PAM_PROMPT_ECHO_OFF, "one: "), (PAM_PROMPT_ECHO_OFF, "two: ")],
        );
        assert_eq!(rc, PAM_CONV_ERR);
    }

    #[test]
    fn an_answer_with_a_nul_byte_fails_the_conversation() {
        let script = Script {
            answers: vec![Some("12\u{0}34".into())],
            ..Script::default()
        };
        assert_eq!(
            call(Box::new(script), &[(PAM_PROMPT_ECHO_OFF, "code: ")]).0,
            PAM_CONV_ERR
        );
    }

    #[test]
    fn a_panicking_conversation_is_a_conversation_error() {
        let script = Script {
            answers: vec![Some("first".into())],
            panic_on: Some("boom".into()),
            ..Script::default()
        };
        let (rc, _) = call(
            Box::new(script),
            &[(PAM_PROMPT_ECHO_OFF, "one: "), (PAM_TEXT_INFO, "boom")],
        );
        assert_eq!(rc, PAM_CONV_ERR);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let boxed: Box<Box<dyn Conversation>> = Box::new(Box::new(Script::default()));
        let appdata = std::ptr::from_ref::<Box<dyn Conversation>>(&boxed).cast_mut().cast();
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        let mut none: Vec<*const PamMessage> = vec![std::ptr::null()];
        assert_eq!(
            conversation_trampoline(0, none.as_mut_ptr(), &mut resp, appdata),
            PAM_CONV_ERR
        );
        assert_eq!(
            conversation_trampoline(-1, none.as_mut_ptr(), &mut resp, appdata),
            PAM_CONV_ERR
        );
        assert_eq!(
            conversation_trampoline(1, std::ptr::null_mut(), &mut resp, appdata),
            PAM_CONV_ERR
        );
        assert_eq!(
            conversation_trampoline(1, none.as_mut_ptr(), std::ptr::null_mut(), appdata),
            PAM_CONV_ERR
        );
        assert_eq!(
            conversation_trampoline(1, none.as_mut_ptr(), &mut resp, std::ptr::null_mut()),
            PAM_CONV_ERR
        );
        // A null message pointer inside the array.
        assert_eq!(
            conversation_trampoline(1, none.as_mut_ptr(), &mut resp, appdata),
            PAM_CONV_ERR
        );
        assert!(resp.is_null());
    }
}
