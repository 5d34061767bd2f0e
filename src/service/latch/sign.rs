//! The 11PATHS request signature (reference `latch-api.md` §1), as pure functions.
//!
//! Nothing here reads the clock or the network, so every published vector can be pinned in a test:
//! the caller passes the date, the method, the path and the form parameters, and gets the exact
//! string the server re-computes and the `Authorization` value it expects.

#![forbid(unsafe_code)]

use data_encoding::BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The scheme word in `Authorization: 11PATHS <appId> <signature>`.
pub const AUTHORIZATION_METHOD: &str = "11PATHS";
/// The date header; its value is also the second line of the string to sign.
pub const DATE_HEADER: &str = "X-11Paths-Date";
/// Prefix (compared case-insensitively) of the headers that take part in the signature.
const X_HEADER_PREFIX: &str = "x-11paths-";

/// `yyyy-MM-dd HH:mm:ss` in UTC, the only date format the server accepts (a wrong one is error 108).
pub fn format_date(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        // Before 1970 only happens with a broken clock; still format it correctly rather than guess.
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 { -whole - 1 } else { -whole }
        }
    };
    format_unix_seconds(seconds)
}

/// [`format_date`] for a count of seconds since 1970-01-01 00:00:00 UTC (negative before it).
pub fn format_unix_seconds(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31) in the proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`: exact for every day in range, no tables, no chrono.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are within their small ranges by construction.
    (year, month as u32, day as u32)
}

/// `java.net.URLEncoder.encode(s, "UTF-8")`: the encoding the server re-serializes parameters with.
/// ASCII letters, digits and `*-._` stay; space becomes `+`; every other UTF-8 byte is `%XX`
/// with upper-case hex.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

/// The form parameters as signed and as sent: sorted by key then value (Java's `TreeMap` order; a
/// repeated key keeps all its values, sorted), each `enc(key)=enc(value)`, joined by `&`.
/// The same string is the request body.
pub fn serialize_params(params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().collect();
    sorted.sort();
    let mut out = String::new();
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&form_encode(key));
        out.push('=');
        out.push_str(&form_encode(value));
    }
    out
}

/// The signed `X-11Paths-*` headers (the date header excluded): lower-case names, sorted, newlines
/// in values replaced by spaces, `name:value` joined by one space, trimmed. Usually empty.
pub fn serialize_x_headers(headers: &[(&str, &str)]) -> String {
    let mut chosen: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.replace('\n', " ")))
        .filter(|(name, _)| name.starts_with(X_HEADER_PREFIX) && name != &DATE_HEADER.to_ascii_lowercase())
        .collect();
    chosen.sort();
    let joined: Vec<String> = chosen
        .into_iter()
        .map(|(name, value)| format!("{name}:{value}"))
        .collect();
    joined.join(" ").trim().to_string()
}

/// `METHOD\nDATE\nXHEADERS\nPATH[\nPARAMS]`: the parameters line only when there is a parameter.
pub fn string_to_sign(method: &str, date: &str, x_headers: &str, path: &str, params: &str) -> String {
    let mut out = String::with_capacity(method.len() + date.len() + x_headers.len() + path.len() + params.len() + 4);
    out.push_str(&method.trim().to_ascii_uppercase());
    out.push('\n');
    out.push_str(date);
    out.push('\n');
    out.push_str(x_headers);
    out.push('\n');
    out.push_str(path.trim());
    if !params.is_empty() {
        out.push('\n');
        out.push_str(params);
    }
    out
}

/// Standard Base64 (with padding) of HMAC-SHA1(secret, to_sign).
pub fn signature(secret: &[u8], to_sign: &str) -> String {
    // HMAC accepts keys of any length, so this never fails; the fallback keeps the function total.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(to_sign.as_bytes());
    BASE64.encode(&mac.finalize().into_bytes())
}

/// The `Authorization` header value. It grants access to the application: never log it.
pub fn authorization(app_id: &str, signature: &str) -> String {
    format!("{AUTHORIZATION_METHOD} {app_id} {signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: &[u8] = b"MySecretKey";
    const DATE: &str = "2015-02-15 14:53:00";

    fn sign_params(method: &str, path: &str, params: &[(&str, &str)]) -> (String, String) {
        let to_sign = string_to_sign(method, DATE, "", path, &serialize_params(params));
        let sig = signature(KEY, &to_sign);
        (to_sign, sig)
    }

    /// The gold vector of reference §1.3 (golatch's test): x-headers, multi-valued parameters.
    #[test]
    fn gold_vector_with_x_headers_and_repeated_params() {
        let x = serialize_x_headers(&[("X-11paths-B", "Test value"), ("X-11paths-A", "Line\nBreaks")]);
        assert_eq!(x, "x-11paths-a:Line Breaks x-11paths-b:Test value");
        let params = serialize_params(&[("B", "B"), ("B", "A"), ("A", "A")]);
        assert_eq!(params, "A=A&B=A&B=B");
        let to_sign = string_to_sign("POST", DATE, &x, "/api/1.0/pair/my_token", &params);
        assert_eq!(
            to_sign,
            "POST\n2015-02-15 14:53:00\nx-11paths-a:Line Breaks x-11paths-b:Test value\n/api/1.0/pair/my_token\nA=A&B=A&B=B"
        );
        let sig = signature(KEY, &to_sign);
        assert_eq!(sig, "XOxtWhv576pq8w7VAC8EoxN3SPo=");
        assert_eq!(
            authorization("MyAppID", &sig),
            "11PATHS MyAppID XOxtWhv576pq8w7VAC8EoxN3SPo="
        );
    }

    #[test]
    fn computed_vector_status_v1() {
        let (s, sig) = sign_params("GET", "/api/1.0/status/my_account", &[]);
        assert_eq!(s, "GET\n2015-02-15 14:53:00\n\n/api/1.0/status/my_account");
        assert_eq!(sig, "IIcSMu1k7vryFrrXY2ztp/TNMrQ=");
    }

    #[test]
    fn computed_vector_status_operation_nootp_silent() {
        let (s, sig) = sign_params("GET", "/api/3.0/status/my_account/op/my_operation/nootp/silent", &[]);
        assert_eq!(
            s,
            "GET\n2015-02-15 14:53:00\n\n/api/3.0/status/my_account/op/my_operation/nootp/silent"
        );
        assert_eq!(sig, "c4MT1MjRpkU09iTsxo7nTc2Y1VU=");
    }

    #[test]
    fn computed_vector_post_without_params_has_no_params_line() {
        let (s, sig) = sign_params("POST", "/api/3.0/lock/my_account", &[]);
        assert_eq!(s, "POST\n2015-02-15 14:53:00\n\n/api/3.0/lock/my_account");
        assert_eq!(sig, "lzqY6TwbEM5LiSWWky/fsOijk0E=");
    }

    #[test]
    fn computed_vector_totp_create_encodes_space_and_at() {
        let (s, sig) = sign_params(
            "POST",
            "/api/3.0/totps",
            &[("userId", "user@example.com"), ("commonName", "John Doe")],
        );
        assert_eq!(
            s,
            "POST\n2015-02-15 14:53:00\n\n/api/3.0/totps\ncommonName=John+Doe&userId=user%40example.com"
        );
        assert_eq!(sig, "NcHqOmzT09m9Tcn1/RbFYMKz9F0=");
    }

    #[test]
    fn computed_vector_totp_validate() {
        let (s, sig) = sign_params("POST", "/api/3.0/totps/my_totp/validate", &[("code", "123456")]);
        assert_eq!(
            s,
            "POST\n2015-02-15 14:53:00\n\n/api/3.0/totps/my_totp/validate\ncode=123456"
        );
        assert_eq!(sig, "SCTTznOm7VcKYvH/KHx9Dl5+lf4=");
    }

    #[test]
    fn method_is_upper_cased_and_trimmed() {
        assert_eq!(
            string_to_sign(" get ", DATE, "", "/p", ""),
            "GET\n2015-02-15 14:53:00\n\n/p"
        );
    }

    #[test]
    fn form_encoding_matches_java_url_encoder() {
        assert_eq!(form_encode("aZ09*-._"), "aZ09*-._");
        assert_eq!(form_encode("a b"), "a+b");
        assert_eq!(form_encode("~"), "%7E");
        assert_eq!(form_encode("/?&=+%"), "%2F%3F%26%3D%2B%25");
        assert_eq!(form_encode("é"), "%C3%A9");
        assert_eq!(form_encode("€"), "%E2%82%AC");
        assert_eq!(form_encode("\n"), "%0A");
        assert_eq!(form_encode(""), "");
    }

    #[test]
    fn x_headers_ignore_the_date_and_other_headers() {
        let x = serialize_x_headers(&[
            ("X-11Paths-Date", DATE),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-11PATHS-Z", "z"),
        ]);
        assert_eq!(x, "x-11paths-z:z");
        assert_eq!(serialize_x_headers(&[]), "");
    }

    #[test]
    fn date_vectors() {
        assert_eq!(format_unix_seconds(0), "1970-01-01 00:00:00");
        assert_eq!(format_unix_seconds(1_424_011_980), DATE);
        assert_eq!(format_unix_seconds(951_868_799), "2000-02-29 23:59:59");
        assert_eq!(format_unix_seconds(4_107_542_400), "2100-03-01 00:00:00");
        assert_eq!(format_unix_seconds(1_735_646_400), "2024-12-31 12:00:00");
        assert_eq!(format_unix_seconds(253_402_300_799), "9999-12-31 23:59:59");
        assert_eq!(format_unix_seconds(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn date_from_system_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_424_011_980_999);
        assert_eq!(format_date(t), DATE);
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format_date(before), "1969-12-31 23:59:59");
    }

    /// Every day from 1970 to 2100 round-trips through a naive day counter (catches leap-year slips).
    #[test]
    fn civil_from_days_walks_the_calendar() {
        let (mut y, mut m, mut d) = (1970_i64, 1_u32, 1_u32);
        for days in 0..(131 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
