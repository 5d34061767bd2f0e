//! The config file (`lockserver.conf`): any text must parse into a config or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = lockserver::config::Config::parse_str(text)
    {
        // The error's text is what an admin reads: building it must not panic either.
        let _ = e.to_string();
    }
});
