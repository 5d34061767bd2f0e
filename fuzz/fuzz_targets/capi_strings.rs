//! The C API's string inputs: whatever bytes a C caller passes (cut at the first NUL, as C would) to
//! the functions that read strings, with and without a handle, must give a result code, never a
//! panic or a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockserver::capi::*;
use std::ffi::{CString, c_char};
use std::ptr;
use std::sync::LazyLock;

/// A handle on a config whose store does not exist (nobody is paired) and whose service is a closed
/// loopback port: user names are checked, then answered "not paired" without any traffic.
struct Handle(*mut lockserver);
// SAFETY: the C API documents handles as usable from any thread; the pointer is never freed here.
unsafe impl Send for Handle {}
// SAFETY: as above (the functions take `const struct lockserver *`).
unsafe impl Sync for Handle {}

static HANDLE: LazyLock<Handle> = LazyLock::new(|| {
    let text = format!(
        "service = \"latch\"\ntimeout_ms = 200\nstore = \"sqlite:///nonexistent-lockserver-fuzz/pairings.db\"\n\n\
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

fuzz_target!(|data: &[u8]| {
    let (first, second) = data.split_at(data.len() / 2);
    let (a, b) = (c_string(first), c_string(second));
    let handle = HANDLE.0;
    let mut valid = false;
    let mut code: *mut c_char = ptr::null_mut();
    let mut access = lockserver_access::LOCKSERVER_ACCESS_LOCKED;
    let mut token: *mut c_char = ptr::null_mut();
    // SAFETY (each call): valid C strings, valid out pointers, the handle from lockserver_open.
    unsafe {
        let params = lockserver_totp_params_default();
        let _ = lockserver_totp_verify(a.as_ptr(), b.as_ptr(), 1_700_000_000, &params, &mut valid);
        let _ = lockserver_totp_code(a.as_ptr(), 1_700_000_000, &params, &mut code);
        free(code);
        let mut other = ptr::null_mut();
        if lockserver_open_config_str(a.as_ptr(), &mut other) == lockserver_result::LOCKSERVER_OK {
            let _ = lockserver_close(other);
        }
        let _ = lockserver_user_status(handle, a.as_ptr(), b.as_ptr(), false, &mut access, &mut token);
        free(token);
        let _ = lockserver_user_totp_verify(handle, a.as_ptr(), b.as_ptr(), &mut valid);
        let _ = lockserver_status(handle, a.as_ptr(), b.as_ptr(), false, &mut access, &mut token);
        free(token);
        free(lockserver_last_error_message());
    }
});
