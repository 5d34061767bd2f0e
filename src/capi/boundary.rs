//! The boundary between C and Rust: result codes, input strings, output strings, per-thread last error,
//! and the panic guard every export goes through.

use crate::service::{Refusal, ServiceError};
use crate::store::StoreError;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Longest string argument accepted, in bytes (without the terminating NUL).
pub const LOCKSERVER_MAX_INPUT: usize = 4096;

/// What a `lockserver_*` call did. `LOCKSERVER_OK` is 0; every other value is a failure whose text
/// [`lockserver_result_message`] gives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lockserver_result {
    /// Done.
    LOCKSERVER_OK = 0,
    /// A required pointer argument was NULL.
    LOCKSERVER_ERROR_NULL_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    LOCKSERVER_ERROR_INVALID_UTF8 = 2,
    /// A string argument is longer than LOCKSERVER_MAX_INPUT bytes.
    LOCKSERVER_ERROR_TOO_LONG = 3,
    /// The handle is NULL, closed, or was never returned by lockserver_open*.
    LOCKSERVER_ERROR_INVALID_HANDLE = 4,
    /// An argument has a wrong value (a pairing code of the wrong shape, an empty user name, ...).
    LOCKSERVER_ERROR_INVALID_ARGUMENT = 5,
    /// The configuration cannot be used (see lockserver_last_error_message).
    LOCKSERVER_ERROR_CONFIG = 6,
    /// The service is unreachable, too slow, or answered nonsense.
    LOCKSERVER_ERROR_UNAVAILABLE = 7,
    /// The service's answer proves a misconfiguration (bad app id or secret, clock off, unknown operation).
    LOCKSERVER_ERROR_MISCONFIGURED = 8,
    /// The account (or local user) is not paired.
    LOCKSERVER_ERROR_NOT_PAIRED = 9,
    /// The local user is already paired.
    LOCKSERVER_ERROR_ALREADY_PAIRED = 10,
    /// The service refused the request; lockserver_last_error_code gives its code (e.g. 206).
    LOCKSERVER_ERROR_SERVICE = 11,
    /// The pairing store cannot be used.
    LOCKSERVER_ERROR_STORE = 12,
    /// A bug inside the library was caught; the handle stays usable.
    LOCKSERVER_ERROR_PANIC = 13,
    /// The operation needs TOTP to be on (the TOTP operations flag) or enrolled for the user.
    LOCKSERVER_ERROR_TOTP_DISABLED = 14,
    /// The config's service does not do this: pairing keys under Latch, code pairing or the service's
    /// TOTP calls under PingID (lockserver_last_error_message says what to call instead).
    LOCKSERVER_ERROR_NOT_SUPPORTED = 15,
    /// The user has not entered the pairing key in the app yet: show it again and ask later.
    LOCKSERVER_ERROR_NOT_CLAIMED = 16,
    /// The service does not know it (a pairing key not found in the scope asked; see
    /// lockserver_last_error_message for the service's text).
    LOCKSERVER_ERROR_NOT_FOUND = 17,
}

use lockserver_result::*;

/// The one table of result texts. It expands to an exhaustive `match`, so a variant without a
/// text does not compile and a variant listed twice is an unreachable pattern (denied in CI);
/// Rust itself refuses two variants with one number.
macro_rules! result_texts {
    ($($variant:ident => $text:literal,)*) => {
        impl lockserver_result {
            /// Every result, in the order of the table.
            pub(crate) const ALL: &[lockserver_result] = &[$($variant),*];

            /// The text [`lockserver_result_message`] gives.
            pub(crate) fn text(self) -> &'static CStr {
                match self {
                    $($variant => $text,)*
                }
            }
        }
    };
}

result_texts! {
    LOCKSERVER_OK => c"ok",
    LOCKSERVER_ERROR_NULL_ARGUMENT => c"a required pointer argument is NULL",
    LOCKSERVER_ERROR_INVALID_UTF8 => c"a string argument is not valid UTF-8",
    LOCKSERVER_ERROR_TOO_LONG => c"a string argument is too long",
    LOCKSERVER_ERROR_INVALID_HANDLE => c"the handle is NULL, closed or unknown",
    LOCKSERVER_ERROR_INVALID_ARGUMENT => c"an argument has a wrong value",
    LOCKSERVER_ERROR_CONFIG => c"the configuration cannot be used",
    LOCKSERVER_ERROR_UNAVAILABLE => c"the service is unreachable, too slow, or answered nonsense",
    LOCKSERVER_ERROR_MISCONFIGURED => c"the service rejects this host's configuration",
    LOCKSERVER_ERROR_NOT_PAIRED => c"not paired",
    LOCKSERVER_ERROR_ALREADY_PAIRED => c"already paired",
    LOCKSERVER_ERROR_SERVICE => c"the service refused the request",
    LOCKSERVER_ERROR_STORE => c"the pairing store cannot be used",
    LOCKSERVER_ERROR_PANIC => c"internal error",
    LOCKSERVER_ERROR_TOTP_DISABLED => c"TOTP is off",
    LOCKSERVER_ERROR_NOT_SUPPORTED => c"not supported by this service",
    LOCKSERVER_ERROR_NOT_CLAIMED => c"the pairing key has not been entered in the app yet",
    LOCKSERVER_ERROR_NOT_FOUND => c"not found",
}

/// Numbers of results that were removed. C programs may still hold them, so they are never given
/// to another result (a test checks); a removed variant's number goes here.
#[cfg(test)]
const RETIRED_RESULTS: &[i32] = &[];

/// The text of a result code (a `lockserver_result` value; any other number gets "unknown result").
/// The pointer is static: do not free it. Never NULL. Thread-safe.
///
/// The argument is a plain integer, not the enum: a C caller may pass any value, and an out-of-range
/// value in a Rust enum would be undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn lockserver_result_message(result: i32) -> *const c_char {
    guard_or(c"internal error".as_ptr(), || {
        lockserver_result::ALL
            .iter()
            .find(|r| **r as i32 == result)
            .map_or(c"unknown result", |r| r.text())
            .as_ptr()
    })
}

/// A failure: the result code and the details kept for `lockserver_last_error_*`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub result: lockserver_result,
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// A refusal the service gave as an answer (not as an error), e.g. a TOTP check it will not take.
    pub fn refused(result: lockserver_result, refusal: Refusal) -> Failure {
        Failure {
            result,
            code: service_code(refusal.code),
            message: format!("service error {}: {}", refusal.code, refusal.message),
        }
    }

    pub fn new(result: lockserver_result, message: impl Into<String>) -> Failure {
        Failure {
            result,
            code: 0,
            message: message.into(),
        }
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Failure {
        let result = match e {
            ServiceError::Unavailable(_) => LOCKSERVER_ERROR_UNAVAILABLE,
            ServiceError::Misconfigured { .. } => LOCKSERVER_ERROR_MISCONFIGURED,
            ServiceError::NotPaired { .. } => LOCKSERVER_ERROR_NOT_PAIRED,
            ServiceError::Api { .. } => LOCKSERVER_ERROR_SERVICE,
        };
        Failure {
            result,
            code: service_code(e.service_code()),
            message: e.to_string(),
        }
    }
}

/// A service's number as `lockserver_last_error_code` gives it.
fn service_code(code: u32) -> i32 {
    i32::try_from(code).unwrap_or(i32::MAX)
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let message = e.to_string();
        match e {
            StoreError::AlreadyPaired => Failure::new(LOCKSERVER_ERROR_ALREADY_PAIRED, message),
            StoreError::NotPaired | StoreError::Missing => Failure::new(LOCKSERVER_ERROR_NOT_PAIRED, message),
            StoreError::Invalid(_) => Failure::new(LOCKSERVER_ERROR_INVALID_ARGUMENT, message),
            StoreError::Unavailable(_)
            | StoreError::Outdated { .. }
            | StoreError::Unreachable(_)
            | StoreError::NotEmpty { .. } => Failure::new(LOCKSERVER_ERROR_STORE, message),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<(i32, String)>> = const { RefCell::new(None) };
}

/// Runs an export's body: catches panics, records the last error of this thread.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> lockserver_result {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(Failure::new(
            LOCKSERVER_ERROR_PANIC,
            "internal error (a panic was caught)",
        ))
    });
    match outcome {
        Ok(()) => {
            LAST_ERROR.with(|e| *e.borrow_mut() = None);
            LOCKSERVER_OK
        }
        Err(f) => {
            LAST_ERROR.with(|e| *e.borrow_mut() = Some((f.code, f.message)));
            f.result
        }
    }
}

/// Runs the body of an export that returns no [`lockserver_result`]: a panic gives `fallback`.
pub(crate) fn guard_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Reads a required string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn input<'a>(ptr: *const c_char) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            LOCKSERVER_ERROR_NULL_ARGUMENT,
            "a required string argument is NULL",
        ));
    }
    // Look for the NUL within the limit only, so an unterminated buffer is not read far past it.
    let mut len = 0;
    // SAFETY: the caller guarantees a NUL-terminated string; we stop at the NUL or the limit + 1.
    while unsafe { *ptr.add(len) } != 0 {
        len += 1;
        if len > LOCKSERVER_MAX_INPUT {
            return Err(Failure::new(LOCKSERVER_ERROR_TOO_LONG, "a string argument is too long"));
        }
    }
    // SAFETY: `len` bytes were just read as non-NUL; the one after is the NUL.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|_| Failure::new(LOCKSERVER_ERROR_INVALID_UTF8, "a string is not UTF-8"))
}

/// Reads an optional string argument (NULL means absent).
///
/// # Safety
/// As [`input`].
pub(crate) unsafe fn optional_input<'a>(ptr: *const c_char) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, and the caller's guarantee carries over.
    unsafe { input(ptr) }.map(Some)
}

/// Checks an output pointer before any work is done.
pub(crate) fn out_ptr<T>(ptr: *mut T) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            LOCKSERVER_ERROR_NULL_ARGUMENT,
            "a required output pointer is NULL",
        ));
    }
    Ok(())
}

/// A string for the caller, to be freed with [`lockserver_string_free`].
pub(crate) fn output(s: &str) -> Result<*mut c_char, Failure> {
    CString::new(s).map(CString::into_raw).map_err(|_| {
        Failure::new(
            LOCKSERVER_ERROR_UNAVAILABLE,
            "the service returned a string with a NUL byte",
        )
    })
}

/// Frees a string returned by the library (its bytes are wiped first). NULL is allowed and does nothing.
/// Thread-safe: a string may be freed on another thread than the one that got it.
///
/// # Safety
/// `s` is NULL or a string returned by a `lockserver_*` function and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lockserver_string_free(s: *mut c_char) {
    guard_or((), || {
        if s.is_null() {
            return;
        }
        // SAFETY: the caller passes back a pointer from CString::into_raw (see `output`), once.
        let owned = unsafe { CString::from_raw(s) };
        // Strings may hold tokens or secrets: wipe before freeing.
        let mut bytes = owned.into_bytes_with_nul();
        zeroize::Zeroize::zeroize(&mut bytes);
    });
}

/// The service's error code of this thread's last failed call (e.g. 206 "token expired", 306 "invalid
/// TOTP code"), or 0 when the failure had none or the last call succeeded. Per thread: it reports the
/// calling thread's last call only.
#[unsafe(no_mangle)]
pub extern "C" fn lockserver_last_error_code() -> i32 {
    guard_or(0, || {
        LAST_ERROR.with(|e| e.borrow().as_ref().map_or(0, |(code, _)| *code))
    })
}

/// The message of this thread's last failed call, or NULL when the last call succeeded. The caller
/// frees it with lockserver_string_free. Per thread, like lockserver_last_error_code.
#[unsafe(no_mangle)]
pub extern "C" fn lockserver_last_error_message() -> *mut c_char {
    guard_or(std::ptr::null_mut(), || {
        let message = LAST_ERROR.with(|e| e.borrow().as_ref().map(|(_, m)| m.clone()));
        match message {
            Some(m) => CString::new(m.replace('\0', " ")).map_or(std::ptr::null_mut(), CString::into_raw),
            None => std::ptr::null_mut(),
        }
    })
}

/// The library's version, e.g. "0.1.0". Static: do not free. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn lockserver_version() -> *const c_char {
    // No panic boundary: a constant, no code that can panic.
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_its_own_number_and_text_and_the_header_lists_them_all() {
        let mut numbers: Vec<i32> = lockserver_result::ALL.iter().map(|r| *r as i32).collect();
        let mut texts: Vec<&CStr> = lockserver_result::ALL.iter().map(|r| r.text()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(numbers.len(), lockserver_result::ALL.len(), "a number is used twice");
        assert_eq!(texts.len(), lockserver_result::ALL.len(), "a text is used twice");
        assert!(
            numbers.iter().all(|n| !RETIRED_RESULTS.contains(n)),
            "a retired number is reused"
        );
        assert!(texts.iter().all(|t| !t.is_empty() && *t != c"unknown result"));

        // The header is generated from the enum: the table must cover every enumerator it declares.
        let header = include_str!("../../include/lockserver.h");
        let body = header
            .split("typedef enum lockserver_result {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("the header declares lockserver_result");
        let declared: Vec<(String, i32)> = body
            .lines()
            .filter_map(|l| l.trim().strip_suffix(','))
            .filter_map(|l| l.split_once(" = "))
            .map(|(name, n)| (name.to_string(), n.parse().expect("a number")))
            .collect();
        let table: Vec<(String, i32)> = lockserver_result::ALL
            .iter()
            .map(|r| (format!("{r:?}"), *r as i32))
            .collect();
        assert_eq!(declared, table);
        // SAFETY: lockserver_result_message returns a static NUL-terminated string.
        let unknown = unsafe { CStr::from_ptr(lockserver_result_message(9999)) };
        assert_eq!(unknown, c"unknown result");
    }

    #[test]
    fn a_panic_becomes_an_error_code_and_a_message() {
        let rc = guard(|| panic!("boom"));
        assert_eq!(rc, LOCKSERVER_ERROR_PANIC);
        let msg = lockserver_last_error_message();
        assert!(!msg.is_null());
        // SAFETY: a string just returned by the library, freed once.
        unsafe { lockserver_string_free(msg) };
        assert_eq!(guard(|| Ok(())), LOCKSERVER_OK);
        assert!(
            lockserver_last_error_message().is_null(),
            "a success clears the last error"
        );
    }

    #[test]
    fn inputs_are_checked() {
        // SAFETY: NULL and valid NUL-terminated literals.
        unsafe {
            assert_eq!(
                input(std::ptr::null()).map_err(|f| f.result).err(),
                Some(LOCKSERVER_ERROR_NULL_ARGUMENT)
            );
            assert_eq!(input(c"abc".as_ptr()).ok(), Some("abc"));
            assert_eq!(optional_input(std::ptr::null()).ok(), Some(None));
            let bad = [0xffu8, 0xfe, 0];
            assert_eq!(
                input(bad.as_ptr().cast()).map_err(|f| f.result).err(),
                Some(LOCKSERVER_ERROR_INVALID_UTF8)
            );
            let long = vec![b'a'; LOCKSERVER_MAX_INPUT + 1]
                .into_iter()
                .chain([0])
                .collect::<Vec<u8>>();
            assert_eq!(
                input(long.as_ptr().cast()).map_err(|f| f.result).err(),
                Some(LOCKSERVER_ERROR_TOO_LONG)
            );
        }
    }
}
