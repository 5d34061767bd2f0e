//! libFuzzer entry for the `http_answer` target; the body and what it checks: `lockserver_fuzz::http_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::http_answer(data));
