//! PINGID-HMAC as the server sees it (reference `pingid-sdk-api.md` §1), written from the reference
//! and not shared with lockserver: the request JWT is checked field by field, and answers are
//! signed the way the sample client verifies them.

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// `Authorization: PINGID-HMAC=<jwt>`.
pub const PREFIX: &str = "PINGID-HMAC=";
/// Header fields a request JWT may carry; any other is refused.
const KNOWN_FIELDS: &[&str] = &[
    "alg",
    "typ",
    "account_id",
    "token",
    "jwt_version",
    "expires",
    "X-Request-ID",
];

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    HEXLOWER.encode(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

/// What the request says about itself, as the server reconstructs it.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The `Host` header without its port.
    pub host: &'a str,
    /// The raw path, as received.
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// `METHOD:host:path:[query:]sha256hex(body):`, the query part only when there is a query.
pub fn canonical(s: &Signed<'_>) -> String {
    let query = match s.query {
        Some(q) if !q.is_empty() => format!("{q}:"),
        _ => String::new(),
    };
    format!("{}:{}:{}:{query}{}:", s.method, s.host, s.path, sha256_hex(s.body))
}

/// Checks a request's `Authorization` value; `Err` says why (it goes into the 401 message).
/// `now_secs` is the emulator's clock, for `expires`.
pub fn verify_request(
    authorization: &str,
    key: &[u8],
    account_id: &str,
    token: &str,
    signed: &Signed<'_>,
    now_secs: i64,
) -> Result<(), &'static str> {
    let jwt = authorization
        .strip_prefix(PREFIX)
        .ok_or("Authorization is not PINGID-HMAC=<jwt>")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h64, p64, s64] = parts[..] else {
        return Err("the JWT is not three parts");
    };
    let signature = BASE64URL_NOPAD
        .decode(s64.as_bytes())
        .map_err(|_| "JWT signature is not base64url")?;
    hmac(key, &jwt.as_bytes()[..h64.len() + 1 + p64.len()])
        .verify_slice(&signature)
        .map_err(|_| "JWT signature does not verify with the account's API key")?;
    let header = json_part(h64).ok_or("JWT header is not a JSON object")?;
    if header.keys().any(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err("JWT header has an unknown field");
    }
    let text = |k: &str| header.get(k).and_then(Value::as_str);
    if text("alg") != Some("HS256") {
        return Err("JWT alg is not HS256");
    }
    if text("typ") != Some("JWT") {
        return Err("JWT typ is not JWT");
    }
    if text("jwt_version") != Some("v4") {
        return Err("JWT jwt_version is not v4");
    }
    if text("account_id") != Some(account_id) {
        return Err("JWT account_id is not this account");
    }
    if text("token") != Some(token) {
        return Err("JWT token is wrong");
    }
    if let Some(expires) = header.get("expires") {
        let at = expires
            .as_str()
            .and_then(parse_expires)
            .ok_or("JWT expires is not yyyy-MM-ddTHH:mm:ssZ")?;
        if at < now_secs {
            return Err("JWT expired");
        }
    }
    let payload = json_part(p64).ok_or("JWT payload is not a JSON object")?;
    if payload.len() != 1 {
        return Err("JWT payload must hold data only");
    }
    let data = payload
        .get("data")
        .and_then(Value::as_str)
        .ok_or("JWT payload has no data")?;
    if data != sha256_hex(canonical(signed).as_bytes()) {
        return Err("JWT data is not the hash of this request's canonical string");
    }
    Ok(())
}

fn json_part(b64: &str) -> Option<Map<String, Value>> {
    let bytes = BASE64URL_NOPAD.decode(b64.as_bytes()).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

/// `yyyy-MM-ddTHH:mm:ssZ` → seconds since 1970 (UTC).
pub fn parse_expires(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    // The Latch date parser takes `yyyy-MM-dd HH:mm:ss`.
    crate::sign::parse_date(&format!("{} {}", &s[..10], &s[11..19]))
}

/// The response signature JWT over `body`: header {alg,typ,account_id,token,jwt_version},
/// payload {"data": sha256hex(body)}, HS256 with `key`.
pub fn sign_response(key: &[u8], account_id: &str, token: &str, body: &[u8]) -> String {
    let header = serde_json::json!({
        "alg": "HS256", "typ": "JWT", "account_id": account_id, "token": token, "jwt_version": "v4"
    });
    let payload = serde_json::json!({ "data": sha256_hex(body) });
    let mut out = BASE64URL_NOPAD.encode(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(payload.to_string().as_bytes()));
    let sig = hmac(key, out.as_bytes()).finalize().into_bytes();
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(&sig));
    out
}

/// Signs a request as a PingID client would (for the emulator's own tests and tools): the header
/// {alg,typ,account_id,token,jwt_version[,expires]} plus any `extra` fields, payload
/// {"data": sha256hex(canonical)}. Returns the whole `Authorization` value.
pub fn sign_request(
    key: &[u8],
    account_id: &str,
    token: &str,
    signed: &Signed<'_>,
    expires: Option<&str>,
    extra: &[(&str, Value)],
) -> String {
    let mut header = serde_json::json!({
        "alg": "HS256", "typ": "JWT", "account_id": account_id, "token": token, "jwt_version": "v4"
    });
    if let Some(e) = expires {
        header["expires"] = Value::String(e.to_string());
    }
    for (k, v) in extra {
        header[*k] = v.clone();
    }
    let payload = serde_json::json!({ "data": sha256_hex(canonical(signed).as_bytes()) });
    let mut out = BASE64URL_NOPAD.encode(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(payload.to_string().as_bytes()));
    let sig = hmac(key, out.as_bytes()).finalize().into_bytes();
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(&sig));
    format!("{PREFIX}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
        30, 31,
    ];
    const ACCOUNT: &str = "130d6e82-df53-43d7-bc0b-0ffe03133f11";
    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    /// The reference's vector A, verified by the server side.
    #[test]
    fn reference_vector_a_verifies() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImFjY291bnRfaWQiOiIxMzBkNmU4Mi1kZjUzLTQzZDctYmMwYi0wZmZlMDMxMzNmMTEiLCJ0b2tlbiI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwiand0X3ZlcnNpb24iOiJ2NCJ9.eyJkYXRhIjoiMTQ5ZjkxYjU1OGZlYTcyYzI2NzUwZjEyMjliYTdiM2FjMTk0OTkzYThjYWQ0OGU4NzU3ODdjMjAyMzNhOTExNyJ9.kKqIor9b8hgmQBOAVY50V97RzsX-gIu_Ho1BF_IUwfM";
        let signed = Signed {
            method: "GET",
            host: "sdk.pingid.com",
            path: "/pingid/v1/accounts/130d6e82-df53-43d7-bc0b-0ffe03133f11/applications/c0a658e0-47dc-4cb4-80d7-1a59a6a8a620/users/tom",
            query: Some("expand=devices"),
            body: b"",
        };
        let auth = format!("{PREFIX}{jwt}");
        assert_eq!(verify_request(&auth, &KEY, ACCOUNT, TOKEN, &signed, 0), Ok(()));
        // The same JWT for the request without the query, for another host, another token.
        let no_query = Signed { query: None, ..signed };
        assert!(verify_request(&auth, &KEY, ACCOUNT, TOKEN, &no_query, 0).is_err());
        let other_host = Signed {
            host: "sdk.pingid.eu",
            query: Some("expand=devices"),
            ..no_query
        };
        assert!(verify_request(&auth, &KEY, ACCOUNT, TOKEN, &other_host, 0).is_err());
        assert!(verify_request(&auth, &KEY, ACCOUNT, "other", &signed_a(), 0).is_err());
        assert!(
            verify_request(jwt, &KEY, ACCOUNT, TOKEN, &signed_a(), 0).is_err(),
            "no prefix"
        );
    }

    fn signed_a() -> Signed<'static> {
        Signed {
            method: "GET",
            host: "sdk.pingid.com",
            path: "/pingid/v1/accounts/130d6e82-df53-43d7-bc0b-0ffe03133f11/applications/c0a658e0-47dc-4cb4-80d7-1a59a6a8a620/users/tom",
            query: Some("expand=devices"),
            body: b"",
        }
    }

    #[test]
    fn reference_vector_b_canonical() {
        let body = br#"{"username":"tom","firstName":"","lastName":""}"#;
        let s = Signed {
            method: "POST",
            host: "sdk.pingid.com",
            path: "/pingid/v1/accounts/130d6e82-df53-43d7-bc0b-0ffe03133f11/users",
            query: None,
            body,
        };
        assert_eq!(
            sha256_hex(canonical(&s).as_bytes()),
            "51ce4f58f020e249d34512794b7e54e1b06fa5c5f778ad1ecd38948257b2a246"
        );
    }

    #[test]
    fn expires_parses() {
        assert_eq!(parse_expires("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_expires("1970-01-01 00:01:00"), None);
    }

    #[test]
    fn response_signature_shape() {
        let jwt = sign_response(&KEY, ACCOUNT, TOKEN, b"{}");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = json_part(parts[1]).expect("payload");
        assert_eq!(payload["data"], sha256_hex(b"{}"));
    }
}
