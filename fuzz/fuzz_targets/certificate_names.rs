//! libFuzzer entry for the `certificate_names` target; the body and what it checks:
//! `lockserver_fuzz::certificate_names`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::certificate_names(data));
