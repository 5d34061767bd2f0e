//! The C API's string inputs: whatever bytes a C caller passes (cut at the first NUL, as C would) to
//! the functions that read strings, with and without a handle, must give a result code, never a panic
//! or a crash (AddressSanitizer watches the pointers under cargo-fuzz).

use ::lockserver::capi::*;
use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr;
use std::sync::LazyLock;

/// A handle on a config whose store does not exist (nobody is paired) and whose service is a closed
/// loopback port: inputs are checked, then answered "not paired" or "unavailable" at once.
struct Handle(*mut lockserver);
// SAFETY: the C API documents handles as usable from any thread; the pointer is never freed here.
unsafe impl Send for Handle {}
// SAFETY: as above (the functions take `const struct lockserver *`).
unsafe impl Sync for Handle {}

static HANDLE: LazyLock<Handle> = LazyLock::new(|| {
    let text = format!(
        "service = \"latch\"\ntimeout_ms = 200\nstore = \"sqlite:///nonexistent-lockserver-fuzz/pairings.db\"\n\
         operations = [\"sshd:OperationA0000000001:true\"]\n\n\
         [latch]\napp_id = \"abcdefghijklmnopqrst\"\nsecret = \"{}\"\nurl = \"http://127.0.0.1:9\"\n",
        "s".repeat(40)
    );
    let text = CString::new(text).expect("no NUL");
    let mut out = ptr::null_mut();
    // SAFETY: a valid C string and a valid out pointer.
    let rc = unsafe { lockserver_open_config_str(text.as_ptr(), &mut out) };
    assert!(!out.is_null(), "open: {rc:?}");
    Handle(out)
});

fn c_string(data: &[u8]) -> CString {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    CString::new(&data[..end]).expect("cut at the first NUL")
}

fn free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: a string the C API returned, freed once with its own function.
        unsafe { lockserver_string_free(s) };
    }
}

/// A conversation that shows nothing and answers every prompt with an empty line.
unsafe extern "C" fn silent(
    _userdata: *mut c_void,
    _style: lockserver_message_style,
    _text: *const c_char,
    _answer: *mut c_char,
    _answer_size: usize,
) -> c_int {
    0
}

/// The input is split in two strings (the halves, each cut at its first NUL).
pub fn capi_strings(data: &[u8]) {
    let (first, second) = data.split_at(data.len() / 2);
    let (a, b) = (c_string(first), c_string(second));
    let handle = HANDLE.0;
    let mut valid = false;
    let mut out: *mut c_char = ptr::null_mut();
    let mut out2: *mut c_char = ptr::null_mut();
    let mut access = lockserver_access::LOCKSERVER_ACCESS_LOCKED;
    let mut verdict = lockserver_verdict::LOCKSERVER_VERDICT_REFUSED;
    // SAFETY (each call): valid C strings, valid out pointers (each result freed once and reset),
    // the handle from lockserver_open_config_str, a conversation as the header describes.
    unsafe {
        let params = lockserver_totp_params_default();
        let _ = lockserver_totp_verify(a.as_ptr(), b.as_ptr(), 1_700_000_000, &params, &mut valid);
        let _ = lockserver_totp_code(a.as_ptr(), 1_700_000_000, &params, &mut out);
        free(std::mem::replace(&mut out, ptr::null_mut()));
        let mut other = ptr::null_mut();
        if lockserver_open_config_str(a.as_ptr(), &mut other) == lockserver_result::LOCKSERVER_OK {
            let _ = lockserver_close(other);
        }
        let _ = lockserver_status(handle, a.as_ptr(), b.as_ptr(), false, &mut access, &mut out);
        free(std::mem::replace(&mut out, ptr::null_mut()));
        let _ = lockserver_pair(handle, a.as_ptr(), b.as_ptr(), &mut out);
        free(std::mem::replace(&mut out, ptr::null_mut()));
        let _ = lockserver_unpair(handle, a.as_ptr());
        let _ = lockserver_totp_create(handle, a.as_ptr(), b.as_ptr(), &mut out, &mut out2);
        free(std::mem::replace(&mut out, ptr::null_mut()));
        free(std::mem::replace(&mut out2, ptr::null_mut()));
        let _ = lockserver_totp_validate(handle, a.as_ptr(), b.as_ptr(), &mut valid);
        let _ = lockserver_totp_delete(handle, b.as_ptr());
        let _ = lockserver_user_status(handle, a.as_ptr(), b.as_ptr(), false, &mut access, &mut out);
        free(std::mem::replace(&mut out, ptr::null_mut()));
        let _ = lockserver_user_pair(handle, a.as_ptr(), b.as_ptr());
        let _ = lockserver_user_unpair(handle, b.as_ptr());
        let _ = lockserver_user_totp_create(handle, a.as_ptr(), &mut out);
        free(std::mem::replace(&mut out, ptr::null_mut()));
        let _ = lockserver_user_totp_disable(handle, b.as_ptr());
        let _ = lockserver_user_totp_verify(handle, a.as_ptr(), b.as_ptr(), &mut valid);
        let _ = lockserver_login(
            handle,
            a.as_ptr(),
            b.as_ptr(),
            Some(silent),
            ptr::null_mut(),
            &mut verdict,
            &mut out,
        );
        free(std::mem::replace(&mut out, ptr::null_mut()));
        free(lockserver_last_error_message());
        let _ = lockserver_result_message(lockserver_last_error_code());
    }
}
