//! The PINGID-HMAC request signature and the response signature (reference `pingid-sdk-api.md` §1),
//! as pure functions.
//!
//! A request is signed by a JWT (HS256, key = the decoded API key) whose payload is
//! `{"data": hex(sha256(canonical))}`, with the canonical string
//! `METHOD:host:path:[query:]hex(sha256(body)):` — the query field and its colon only when there is
//! a query. A response is signed by a JWT of the same form whose `data` is `hex(sha256(body))`.
//! Nothing here reads the clock or the network, so the reference vectors are pinned in tests.

#![forbid(unsafe_code)]

use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The `Authorization` value prefix (no space after `=`).
pub const AUTHORIZATION_PREFIX: &str = "PINGID-HMAC=";
/// The response signature header as documented.
pub const RESPONSE_SIGNATURE_HEADER: &str = "X-PINGID-Signature";
/// The same header as Ping's sample server spells it; accepted too (reference §1.3).
pub const RESPONSE_SIGNATURE_HEADER_SAMPLE: &str = "X-PINGID-Singature";
/// `jwt_version` of every request.
pub const JWT_VERSION: &str = "v4";

type HmacSha256 = Hmac<Sha256>;

/// The JWS protected header fields of a request.
#[derive(Debug, Clone, Copy)]
pub struct JwtHeader<'a> {
    pub account_id: &'a str,
    pub token: &'a str,
    /// `yyyy-MM-ddTHH:mm:ssZ` (the Java sample sends now + 5 min; Ping's Node client sends none).
    pub expires: Option<&'a str>,
}

impl JwtHeader<'_> {
    /// The header JSON, compact, in the sample's order: alg, typ, account_id, token, jwt_version
    /// [, expires]. Written by hand because the order is part of the signed bytes.
    pub fn to_json(&self) -> String {
        let mut out = format!(
            "{{\"alg\":\"HS256\",\"typ\":\"JWT\",\"account_id\":{},\"token\":{},\"jwt_version\":\"{JWT_VERSION}\"",
            json_string(self.account_id),
            json_string(self.token)
        );
        if let Some(expires) = self.expires {
            out.push_str(",\"expires\":");
            out.push_str(&json_string(expires));
        }
        out.push('}');
        out
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(&Sha256::digest(bytes))
}

/// `METHOD:host:path:[query:]hex(sha256(body)):`. `query` is without `?`; `None` or empty leaves
/// the field and its colon out.
pub fn canonical_string(method: &str, host: &str, path: &str, query: Option<&str>, body: &[u8]) -> String {
    let mut out = format!("{}:{host}:{path}:", method.to_ascii_uppercase());
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push_str(q);
        out.push(':');
    }
    out.push_str(&sha256_hex(body));
    out.push(':');
    out
}

/// The compact JWT `b64url(header).b64url({"data":hex(sha256(data_source))}).b64url(hmac)`.
pub fn jwt(key: &[u8], header: &JwtHeader<'_>, signed_text: &[u8]) -> String {
    let payload = format!("{{\"data\":\"{}\"}}", sha256_hex(signed_text));
    let mut out = BASE64URL_NOPAD.encode(header.to_json().as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(payload.as_bytes()));
    let signature = mac(key, out.as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(&signature));
    out
}

/// HMAC-SHA256 keyed with `key` over `message`. HMAC takes keys of any length, so this never
/// fails; the fallback (an empty signature, which no server accepts) keeps the function total.
fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return Vec::new();
    };
    m.update(message);
    m.finalize().into_bytes().to_vec()
}

/// The `Authorization` header value for one request.
pub fn authorization(key: &[u8], header: &JwtHeader<'_>, canonical: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{AUTHORIZATION_PREFIX}{}",
        jwt(key, header, canonical.as_bytes())
    ))
}

/// The API key as bytes: base64 in the standard or the URL-safe alphabet, with or without padding
/// (Ping's files use both, reference §1.2). Surrounding whitespace is ignored; anything else that
/// does not decode, or decodes to nothing, is refused.
pub fn decode_api_key(text: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the API key is empty");
    }
    for encoding in [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD] {
        if let Ok(key) = encoding.decode(text.as_bytes()) {
            let key = Zeroizing::new(key);
            if key.is_empty() {
                return Err("the API key is empty");
            }
            return Ok(key);
        }
    }
    Err("the API key is not base64 (standard or URL-safe alphabet)")
}

/// Why a response signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// Not three base64url parts with JSON header and payload of the expected shape.
    Malformed(&'static str),
    /// The header names another account, or another algorithm.
    WrongHeader(&'static str),
    /// The HMAC does not match (another key), or `data` is not the hash of this body.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Malformed(why) => write!(f, "malformed response signature: {why}"),
            SignatureError::WrongHeader(why) => write!(f, "response signature header: {why}"),
            SignatureError::Mismatch => f.write_str("the response signature does not match the answer"),
        }
    }
}

/// Checks a response signature JWT over the exact `body` bytes: HS256 with `key`, a header naming
/// `account_id` and carrying a `token` (the sample server's rule), and `data = hex(sha256(body))`.
/// Both comparisons are constant-time.
pub fn verify_response(key: &[u8], account_id: &str, jwt: &str, body: &[u8]) -> Result<(), SignatureError> {
    let mut parts = jwt.trim().split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SignatureError::Malformed("not three dot-separated parts"));
    };
    let signature = BASE64URL_NOPAD
        .decode(signature_b64.as_bytes())
        .map_err(|_| SignatureError::Malformed("signature is not base64url"))?;
    let signed = &jwt.trim()[..header_b64.len() + 1 + payload_b64.len()];
    // Never fails (any key length); failing closed keeps the function total.
    let Ok(mut m) = HmacSha256::new_from_slice(key) else {
        return Err(SignatureError::Mismatch);
    };
    m.update(signed.as_bytes());
    // verify_slice compares in constant time. The HMAC is checked before any field is trusted.
    m.verify_slice(&signature).map_err(|_| SignatureError::Mismatch)?;
    let header = decode_json_object(header_b64).ok_or(SignatureError::Malformed("header is not a JSON object"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(SignatureError::WrongHeader("alg is not HS256"));
    }
    if header.get("account_id").and_then(Value::as_str) != Some(account_id) {
        return Err(SignatureError::WrongHeader("account_id is not this account"));
    }
    if header.get("token").and_then(Value::as_str).is_none() {
        return Err(SignatureError::WrongHeader("no token"));
    }
    let payload = decode_json_object(payload_b64).ok_or(SignatureError::Malformed("payload is not a JSON object"))?;
    let data = payload
        .get("data")
        .and_then(Value::as_str)
        .ok_or(SignatureError::Malformed("payload without data"))?;
    let expected = sha256_hex(body);
    if bool::from(data.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_json_object(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = BASE64URL_NOPAD.decode(part.as_bytes()).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference's computed vectors (§1.4).
    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const ACCOUNT: &str = "130d6e82-df53-43d7-bc0b-0ffe03133f11";
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImFjY291bnRfaWQiOiIxMzBkNmU4Mi1kZjUzLTQzZDctYmMwYi0wZmZlMDMxMzNmMTEiLCJ0b2tlbiI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwiand0X3ZlcnNpb24iOiJ2NCJ9";
    const USER_PATH: &str = "/pingid/v1/accounts/130d6e82-df53-43d7-bc0b-0ffe03133f11/applications/c0a658e0-47dc-4cb4-80d7-1a59a6a8a620/users/tom";

    fn header() -> JwtHeader<'static> {
        JwtHeader {
            account_id: ACCOUNT,
            token: TOKEN,
            expires: None,
        }
    }

    fn key() -> Zeroizing<Vec<u8>> {
        decode_api_key(KEY_B64).unwrap()
    }

    #[test]
    fn vector_a_get_with_query() {
        let canonical = canonical_string("GET", "sdk.pingid.com", USER_PATH, Some("expand=devices"), b"");
        assert_eq!(
            canonical,
            format!(
                "GET:sdk.pingid.com:{USER_PATH}:expand=devices:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:"
            )
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "149f91b558fea72c26750f1229ba7b3ac194993a8cad48e875787c20233a9117"
        );
        let expected = format!(
            "{HEADER_B64}.eyJkYXRhIjoiMTQ5ZjkxYjU1OGZlYTcyYzI2NzUwZjEyMjliYTdiM2FjMTk0OTkzYThjYWQ0OGU4NzU3ODdjMjAyMzNhOTExNyJ9.kKqIor9b8hgmQBOAVY50V97RzsX-gIu_Ho1BF_IUwfM"
        );
        assert_eq!(jwt(&key(), &header(), canonical.as_bytes()), expected);
        assert_eq!(
            *authorization(&key(), &header(), &canonical),
            format!("PINGID-HMAC={expected}")
        );
    }

    #[test]
    fn vector_b_post_without_query() {
        let body = br#"{"username":"tom","firstName":"","lastName":""}"#;
        assert_eq!(
            sha256_hex(body),
            "a52c2659e36f34bcff5202ae7d28d6d9f4d8f341d58cd8b8db9dce9b0744fd02"
        );
        let path = "/pingid/v1/accounts/130d6e82-df53-43d7-bc0b-0ffe03133f11/users";
        let canonical = canonical_string("POST", "sdk.pingid.com", path, None, body);
        assert_eq!(
            canonical,
            format!("POST:sdk.pingid.com:{path}:a52c2659e36f34bcff5202ae7d28d6d9f4d8f341d58cd8b8db9dce9b0744fd02:")
        );
        // An empty query is no query: the same string.
        assert_eq!(
            canonical_string("post", "sdk.pingid.com", path, Some(""), body),
            canonical
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "51ce4f58f020e249d34512794b7e54e1b06fa5c5f778ad1ecd38948257b2a246"
        );
        assert_eq!(
            jwt(&key(), &header(), canonical.as_bytes()),
            format!(
                "{HEADER_B64}.eyJkYXRhIjoiNTFjZTRmNThmMDIwZTI0OWQzNDUxMjc5NGI3ZTU0ZTFiMDZmYTVjNWY3NzhhZDFlY2QzODk0ODI1N2IyYTI0NiJ9.sVmbmO_qjmSE9rzD1MhAWYPHXYF8DowjMjCn-s_SNKk"
            )
        );
    }

    #[test]
    fn expires_is_the_last_header_field() {
        let h = JwtHeader {
            expires: Some("2026-12-01T17:05:00Z"),
            ..header()
        };
        assert!(
            h.to_json()
                .ends_with(r#","jwt_version":"v4","expires":"2026-12-01T17:05:00Z"}"#)
        );
    }

    #[test]
    fn api_key_in_every_base64_form() {
        let bytes: Vec<u8> = (0u8..32).collect();
        for text in [
            KEY_B64,
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        ] {
            assert_eq!(*decode_api_key(text).unwrap(), bytes, "{text:?}");
        }
        // 0xfb 0xff: '+' '/' in the standard alphabet, '-' '_' in the URL-safe one.
        assert_eq!(*decode_api_key("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(*decode_api_key("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(*decode_api_key("-_8").unwrap(), vec![0xfb, 0xff]);
        for bad in ["", "  ", "+_8=", "not base64!", "A", "===="] {
            assert!(decode_api_key(bad).is_err(), "{bad:?}");
        }
    }

    fn response_jwt(key: &[u8], account: &str, body: &[u8]) -> String {
        let h = JwtHeader {
            account_id: account,
            token: TOKEN,
            expires: None,
        };
        jwt(key, &h, body)
    }

    #[test]
    fn response_signature_over_the_exact_body() {
        let body = br#"{"id":"1","status":"APPROVED"}"#;
        let good = response_jwt(&key(), ACCOUNT, body);
        assert_eq!(verify_response(&key(), ACCOUNT, &good, body), Ok(()));
        // An empty body is signed as the hash of "".
        let empty = response_jwt(&key(), ACCOUNT, b"");
        assert_eq!(verify_response(&key(), ACCOUNT, &empty, b""), Ok(()));
        // One byte more (even whitespace) is another body.
        let mut spaced = body.to_vec();
        spaced.push(b' ');
        assert_eq!(
            verify_response(&key(), ACCOUNT, &good, &spaced),
            Err(SignatureError::Mismatch)
        );
        // Another key.
        let other = response_jwt(b"another key", ACCOUNT, body);
        assert_eq!(
            verify_response(&key(), ACCOUNT, &other, body),
            Err(SignatureError::Mismatch)
        );
        // Another account, signed with the right key.
        let foreign = response_jwt(&key(), "another-account", body);
        assert!(matches!(
            verify_response(&key(), ACCOUNT, &foreign, body),
            Err(SignatureError::WrongHeader(_))
        ));
        // A tampered signature part.
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(verify_response(&key(), ACCOUNT, &tampered, body).is_err());
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(matches!(
                verify_response(&key(), ACCOUNT, bad, body),
                Err(SignatureError::Malformed(_) | SignatureError::Mismatch)
            ));
        }
    }
}
