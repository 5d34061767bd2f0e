//! The message dictionary (XML): any text must parse or give a line-numbered error; lookups and
//! formatting of what parsed must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockserver::dictionary::{Dictionary, Section};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Dictionary::parse(text) {
        for section in [Section::Lock, Section::Pairing, Section::Totp] {
            let _ = d.format(section, "paired", &[("user", "alice")]);
            let _ = d.service_error(section, "pairerror", 206, text);
        }
    }
});
