//! Latch API answers: the first two bytes are the HTTP status, the rest the body. Every reading the
//! client makes of an answer (envelope, status, pairing, TOTP enrolment) must end in a value or a
//! `ServiceError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockserver::service::http::Reply;
use lockserver::service::latch::response;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => {
            // Mostly 200 (the interesting parse), sometimes any status.
            let s = u16::from_be_bytes([*a, *b]);
            (if s % 4 == 0 { s % 600 } else { 200 }, rest)
        }
        _ => (200, data),
    };
    let reply = Reply {
        status,
        body: body.to_vec(),
    };
    if let Ok(data) = response::envelope(&reply) {
        let _ = response::status(data.clone(), "OperationA0000000001");
        let _ = response::account_id(data.clone());
        let _ = response::totp_enrolment(data);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = response::is_id(text);
        let _ = response::map_error(u32::from(status), text.to_string());
    }
});
