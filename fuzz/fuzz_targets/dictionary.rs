//! libFuzzer entry for the `dictionary` target; the body and what it checks: `lockserver_fuzz::dictionary`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::dictionary(data));
