//! `liblockserver.so`, installed also as `pam_lockserver.so`: the `lockserver` library as one cdylib.
//!
//! Nothing is defined here. The library's `#[no_mangle]` functions (the PAM hooks `pam_sm_*` of
//! `lockserver::pam`, the C API `lockserver_*` of `lockserver::capi`) are exported by any cdylib that links
//! it; this crate exists so that the cdylib can be built with LTO (see `Cargo.toml`).
#![forbid(unsafe_code)]

pub use lockserver::*;
