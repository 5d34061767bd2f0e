//! libFuzzer entry for the `escape` target; the body and what it checks: `lockserver_fuzz::escape`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockserver_fuzz::escape(data));
