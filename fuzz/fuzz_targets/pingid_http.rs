//! libFuzzer entry for the `pingid_http` target; the body and what it checks: `lockserver_fuzz::pingid_http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::pingid_http(data));
