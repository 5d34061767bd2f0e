//! The PAM application side, for `lockserver try-login`: runs `pam_authenticate` and `pam_acct_mgmt`
//! of a real service stack on the terminal, and never opens a session or changes a credential.

use libc::{c_char, c_int, c_void};
use std::ffi::{CStr, CString};
use std::io::{BufRead, Write};

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_SUCCESS: c_int = 0;
const PAM_CONV_ERR: c_int = 19;
const PAM_BUF_ERR: c_int = 5;
const PAM_RHOST: c_int = 4;

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

#[repr(C)]
struct PamConv {
    conv: extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandleT {
    _private: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandleT,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleT, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandleT, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandleT, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandleT, errnum: c_int) -> *const c_char;
}

/// What the stack answered.
#[derive(Debug)]
pub struct Report {
    pub auth: String,
    pub account: Option<String>,
    pub success: bool,
}

/// Runs the auth and account stacks of `service` for `user` on this terminal.
pub fn try_login(service: &str, user: &str) -> Result<Report, String> {
    let c_service = CString::new(service).map_err(|_| "the service name holds a NUL byte".to_string())?;
    let c_user = CString::new(user).map_err(|_| "the user name holds a NUL byte".to_string())?;
    let conv = PamConv {
        conv: terminal_conv,
        appdata_ptr: std::ptr::null_mut(),
    };
    let mut pamh: *mut PamHandleT = std::ptr::null_mut();
    // SAFETY: all pointers are valid NUL-terminated strings / a live PamConv that outlives the handle
    // (both live until the end of this function, after pam_end).
    let rc = unsafe { pam_start(c_service.as_ptr(), c_user.as_ptr(), &conv, &mut pamh) };
    if rc != PAM_SUCCESS || pamh.is_null() {
        return Err(format!("pam_start failed for service {service} ({rc})"));
    }
    let rhost = c"try-login";
    // SAFETY: pamh is a live handle from pam_start; libpam copies the string.
    unsafe { pam_set_item(pamh, PAM_RHOST, rhost.as_ptr().cast()) };
    // SAFETY: pamh is a live handle from pam_start.
    let auth = unsafe { pam_authenticate(pamh, 0) };
    let auth_text = describe(pamh, auth);
    let mut account_text = None;
    let mut last = auth;
    if auth == PAM_SUCCESS {
        // SAFETY: pamh is a live handle from pam_start.
        let account = unsafe { pam_acct_mgmt(pamh, 0) };
        account_text = Some(describe(pamh, account));
        last = account;
    }
    // SAFETY: pamh is live and is not used after this call.
    unsafe { pam_end(pamh, last) };
    Ok(Report {
        auth: auth_text,
        account: account_text,
        success: last == PAM_SUCCESS,
    })
}

fn describe(pamh: *mut PamHandleT, rc: c_int) -> String {
    // SAFETY: pam_strerror returns a pointer to a static string (or null) for a live handle.
    let text = unsafe { pam_strerror(pamh, rc) };
    if text.is_null() {
        return format!("code {rc}");
    }
    // SAFETY: non-null, NUL-terminated static string from libpam.
    let s = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    format!("{s} (code {rc})")
}

/// Reads one line from the terminal, with echo off when asked.
fn read_answer(echo: bool) -> Option<String> {
    let stdin = std::io::stdin();
    let saved = if echo { None } else { echo_off() };
    let mut line = String::new();
    let ok = stdin.lock().read_line(&mut line).is_ok();
    if let Some(t) = saved {
        // SAFETY: restores the attributes read from fd 0 by echo_off.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        println!();
    }
    ok.then(|| line.trim_end_matches(['\n', '\r']).to_string())
}

fn echo_off() -> Option<libc::termios> {
    // SAFETY: termios is plain old data; tcgetattr fills it or fails (then we leave echo alone).
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a valid pointer to a termios.
    if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
        return None;
    }
    let saved = t;
    t.c_lflag &= !libc::ECHO;
    // SAFETY: fd 0 and a valid termios derived from its own attributes.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    Some(saved)
}

extern "C" fn terminal_conv(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    let outcome = std::panic::catch_unwind(|| converse(num_msg, msg, resp));
    outcome.unwrap_or(PAM_CONV_ERR)
}

fn converse(num_msg: c_int, msg: *mut *const PamMessage, resp: *mut *mut PamResponse) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: calloc of n zeroed PamResponse structs; libpam frees it (and each resp) with free().
    let replies = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of n message pointers.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            continue;
        }
        // SAFETY: m points to a valid PamMessage for the duration of the call.
        let (style, text_ptr) = unsafe { ((*m).msg_style, (*m).msg) };
        let text = if text_ptr.is_null() {
            String::new()
        } else {
            // SAFETY: NUL-terminated message string from the module.
            unsafe { CStr::from_ptr(text_ptr) }.to_string_lossy().into_owned()
        };
        match style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                print!("{text}");
                let _ = std::io::stdout().flush();
                let answer = read_answer(style == PAM_PROMPT_ECHO_ON).unwrap_or_default();
                let Ok(c) = CString::new(answer) else { continue };
                // SAFETY: replies has n entries; strdup's copy is freed by libpam.
                unsafe { (*replies.add(i)).resp = libc::strdup(c.as_ptr()) };
            }
            PAM_ERROR_MSG => eprintln!("{text}"),
            PAM_TEXT_INFO => println!("{text}"),
            _ => {}
        }
    }
    // SAFETY: resp is a valid out-pointer given by libpam.
    unsafe { *resp = replies };
    PAM_SUCCESS
}
