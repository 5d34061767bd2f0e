//! libFuzzer entry for the `pingid_answer` target; the body and what it checks: `lockserver_fuzz::pingid_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::pingid_answer(data));
