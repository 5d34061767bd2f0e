//! libFuzzer entry for the `config` target; the body and what it checks: `lockserver_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::config(data));
