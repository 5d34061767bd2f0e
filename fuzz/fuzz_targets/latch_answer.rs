//! libFuzzer entry for the `latch_answer` target; the body and what it checks: `lockserver_fuzz::latch_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::latch_answer(data));
