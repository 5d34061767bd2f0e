//! PingID SDK answers: the first two bytes are the HTTP status, the rest the body: the JSON reading
//! (duplicate keys refused), the object reading and the error envelope must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockserver::service::pingid::response;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]) % 600, rest),
        _ => (400, data),
    };
    let _ = response::parse_json(body);
    if let Ok(o) = response::object(body) {
        let _ = response::field(&o, "id");
        let _ = response::id_field(&o, "id");
    }
    let _ = response::error_from(status, body).to_string();
});
