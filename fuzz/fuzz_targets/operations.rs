//! libFuzzer entry for the `operations` target; the body and what it checks: `lockserver_fuzz::operations`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::operations(data));
