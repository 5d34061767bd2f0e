//! libFuzzer entry for the `capi_strings` target; the body and what it checks: `lockserver_fuzz::capi_strings`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::capi_strings(data));
