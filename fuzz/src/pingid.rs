//! PingID answers: the JSON reading and the error envelope, the response signature's JWT framing,
//! and the whole client against a loopback server whose answers are signed with the client's key (so
//! the fuzzer gets past the signature check into the reading of each call's answer).

use crate::loopback;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, Mac};
use lockserver::config::{PairingScope as ConfigScope, PingIdConfig, Secret};
use lockserver::service::pingid::{PairingScope, PingidClient, PingidLock, PingidSettings, response, sign};
use lockserver::service::{Access, Challenge, KeyPairing, LockService};
use sha2::Sha256;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

// The reference's test vectors (pingid-sdk-api.md §1.4).
const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ACCOUNT: &str = "130d6e82-df53-43d7-bc0b-0ffe03133f11";
const APPLICATION: &str = "c0a658e0-47dc-4cb4-80d7-1a59a6a8a620";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn key() -> Vec<u8> {
    sign::decode_api_key(KEY_B64).expect("the vector key decodes").to_vec()
}

/// The first byte picks what is read: JSON and the error envelope (then two bytes of HTTP status and
/// the body), a response signature as sent (`JWT\nBODY`), or a signature whose header and payload
/// JSON come from the input and whose HMAC is right (`HEADER\nPAYLOAD\nBODY`), so the header's and
/// payload's reading is reached.
pub fn pingid_answer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let (status, body) = match rest {
                [a, b, body @ ..] => (u16::from_be_bytes([*a, *b]) % 600, body),
                _ => (400, rest),
            };
            let _ = response::parse_json(body).map_err(|e| e.to_string());
            if let Ok(o) = response::object(body) {
                let _ = response::field(&o, "id");
                let _ = response::id_field(&o, "id");
                let _ = response::field(&o, "status");
            }
            let e = response::error_from(status, body);
            let _ = e.to_string();
            let _ = lockserver::service::ServiceError::from(e).to_string();
        }
        1 => {
            let (jwt, body) = split_line(rest);
            let jwt = String::from_utf8_lossy(jwt);
            let _ = sign::verify_response(&key(), ACCOUNT, &jwt, body).map_err(|e| e.to_string());
            let _ = sign::decode_api_key(&jwt);
        }
        _ => {
            let (header, rest) = split_line(rest);
            let (payload, body) = split_line(rest);
            let mut jwt = BASE64URL_NOPAD.encode(header);
            jwt.push('.');
            jwt.push_str(&BASE64URL_NOPAD.encode(payload));
            let mut mac = Hmac::<Sha256>::new_from_slice(&key()).expect("HMAC takes any key");
            mac.update(jwt.as_bytes());
            jwt.push('.');
            jwt.push_str(&BASE64URL_NOPAD.encode(&mac.finalize().into_bytes()));
            let _ = sign::verify_response(&key(), ACCOUNT, &jwt, body);
        }
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

static CLIENT: LazyLock<PingidClient> = LazyLock::new(|| {
    PingidClient::new(&PingidSettings {
        account_id: ACCOUNT.into(),
        application_id: APPLICATION.into(),
        token: Secret::new(TOKEN),
        api_key: Secret::new(KEY_B64),
        url: format!("http://127.0.0.1:{}", loopback::port()),
        pairing_scope: PairingScope::Application,
        require_response_signature: true,
        ca_file: None,
        proxy: None,
    })
    .expect("the fuzz client builds")
});

static LOCK: LazyLock<PingidLock> = LazyLock::new(|| {
    PingidLock::new(&PingIdConfig {
        account_id: ACCOUNT.into(),
        application_id: APPLICATION.into(),
        token: Secret::new(TOKEN),
        api_key: Secret::new(KEY_B64),
        url: format!("http://127.0.0.1:{}", loopback::port()),
        pairing_scope: ConfigScope::Application,
        push_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(1),
        require_response_signature: false,
        ca_file: None,
        proxy: None,
    })
    .expect("the fuzz lock builds")
});

/// The PingID client over HTTP. The first byte picks the call (low four bits) and how answers are
/// signed (next two: right signature, none, the sample's misspelt header, a wrong one); the rest is
/// up to four answers split at `\0\0`, each two bytes of HTTP status then the body. The server
/// answers the client's requests with them in order.
pub fn pingid_http(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let signing = (selector >> 4) & 3;
    let answers: Vec<Vec<u8>> = split_answers(rest).map(|a| http_answer(a, signing)).collect();
    let _turn = loopback::answer_with(answers);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let c = &*CLIENT;
    let lock = &*LOCK;
    let op = selector & 15;
    // Whether the call took an answer as good (a value, or an error the service stated).
    let accepted = match op {
        0 => c.get_user("alice", deadline).is_ok(),
        1 => c.create_user("alice", deadline).is_ok(),
        2 => c.delete_devices("alice", deadline).is_ok(),
        3 => c
            .create_pairing_key("alice", PairingScope::Application, deadline)
            .is_ok(),
        4 => c
            .pairing_key_status("349666846915", PairingScope::Organization, deadline)
            .is_ok(),
        5 => c.start_authentication("alice", Some("sshd"), deadline).is_ok(),
        6 => c.authentication_status("alice", "webs_1", deadline).is_ok(),
        7 => c.submit_otp("alice", "webs_1", "123456", deadline).is_ok(),
        8 => c.cancel_authentication("alice", "webs_1", deadline).is_ok(),
        9 => lock.unpair("alice", deadline).is_ok(),
        10 => lock.create_key("alice", None, deadline).is_ok(),
        11 => lock
            .key_status("349666846915", Some(ConfigScope::Organization), deadline)
            .is_ok(),
        12 => lock.claim("alice", deadline).is_ok(),
        // The login's reading: the push, then one poll, or the one-time code.
        _ => match lock.status("alice", None, selector & 1 == 1, deadline) {
            Ok(Access::Pending(push)) => {
                let _ = push.poll(deadline);
                push.cancel(deadline);
                true
            }
            Ok(Access::CodeRequired(Challenge::Remote(otp))) => {
                let _ = otp.verify("123456", deadline);
                true
            }
            Ok(_) => true,
            Err(_) => false,
        },
    };
    // A wrong signature is never taken as an answer; neither is a missing one where the client
    // requires it (the first nine calls).
    assert!(
        !(accepted && (signing == 3 || (signing == 1 && op < 9))),
        "call {op} accepted an answer signed {}",
        ["right", "not at all", "right (sample header)", "with another key"][usize::from(signing)]
    );
    loopback::assert_within(started, deadline);
}

fn split_answers(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let data = rest?;
        match data.windows(2).position(|w| w == b"\0\0") {
            Some(at) => {
                rest = Some(&data[at + 2..]);
                Some(&data[..at])
            }
            None => {
                rest = None;
                Some(data)
            }
        }
    })
    .take(4)
}

/// One HTTP answer: status from the first two bytes (mostly 200), the body, a signature header.
fn http_answer(answer: &[u8], signing: u8) -> Vec<u8> {
    let (status, body) = match answer {
        [a, b, body @ ..] => {
            let s = u16::from_be_bytes([*a, *b]);
            (if s % 4 == 0 { 100 + s % 500 } else { 200 }, body)
        }
        _ => (200, answer),
    };
    let header = sign::JwtHeader {
        account_id: ACCOUNT,
        token: TOKEN,
        expires: None,
    };
    let signature = match signing {
        0 => format!(
            "{}: {}\r\n",
            sign::RESPONSE_SIGNATURE_HEADER,
            sign::jwt(&key(), &header, body)
        ),
        1 => String::new(),
        2 => format!(
            "{}: {}\r\n",
            sign::RESPONSE_SIGNATURE_HEADER_SAMPLE,
            sign::jwt(&key(), &header, body)
        ),
        _ => format!(
            "{}: {}\r\n",
            sign::RESPONSE_SIGNATURE_HEADER,
            sign::jwt(b"wrong", &header, body)
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{signature}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
