//! The Latch "11PATHS" request signature (reference `latch-api.md` §1), written from the reference text and
//! independently of the `lockserver` crate, so that the emulator can be used to test lockserver's own signer.

use std::cmp::Ordering;

use data_encoding::BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The authorization method word in `Authorization: 11PATHS <appId> <signature>`.
pub const AUTH_METHOD: &str = "11PATHS";
/// The date header; its value is signed on the second line.
pub const DATE_HEADER: &str = "X-11Paths-Date";
/// Prefix (compared case-insensitively) of the extra headers that are signed on the third line.
pub const X_HEADER_PREFIX: &str = "x-11paths-";

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `s` encoded like `java.net.URLEncoder.encode(s, "UTF-8")`: unreserved `A-Z a-z 0-9 * - . _`,
/// space as `+`, every other byte of the UTF-8 encoding as upper-case `%XX`.
pub fn java_urlencode_into(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

/// `java.net.URLEncoder.encode(s, "UTF-8")`.
pub fn java_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    java_urlencode_into(s, &mut out);
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte. Malformed escapes are
/// kept literally and invalid UTF-8 is replaced (the signature will then simply not match).
pub fn form_decode(s: &[u8]) -> String {
    if !s.iter().any(|&b| b == b'%' || b == b'+') {
        return String::from_utf8_lossy(s).into_owned();
    }
    let mut bytes = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => bytes.push(b' '),
            b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                (Some(h), Some(l)) => {
                    bytes.push(h << 4 | l);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Percent-decodes a path segment (no `+` rule).
pub fn path_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            bytes.push(h << 4 | l);
            i += 3;
            continue;
        }
        bytes.push(b[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses an `application/x-www-form-urlencoded` body into (name, value) pairs, in body order. Empty pieces
/// (`a=1&&b=2`) are skipped; a piece without `=` is a name with an empty value.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(eq) => (form_decode(&p[..eq]), form_decode(&p[eq + 1..])),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

/// Java `String.compareTo` order (UTF-16 code units), which is what a `TreeMap<String, _>` sorts by.
fn java_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The serialized body parameters: sorted by name (then value, for a repeated name), each
/// `urlencode(name)=urlencode(value)`, joined by `&`. Empty when there are no parameters.
pub fn serialize_params<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    sorted.sort_by(|a, b| java_cmp(a.0, b.0).then_with(|| java_cmp(a.1, b.1)));
    let mut out = String::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        java_urlencode_into(k, &mut out);
        out.push('=');
        java_urlencode_into(v, &mut out);
    }
    out
}

/// The serialized `X-11paths-*` headers (the date header excluded): names lower-cased, sorted, `\n` in values
/// replaced by a space, `name:value` joined by one space, trimmed. Empty when there are none.
pub fn serialize_x_headers<'a, I>(headers: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut picked: Vec<(String, &str)> = headers
        .into_iter()
        .filter_map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            (lower.starts_with(X_HEADER_PREFIX) && lower != "x-11paths-date").then_some((lower, value))
        })
        .collect();
    if picked.is_empty() {
        return String::new();
    }
    picked.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (i, (name, value)) in picked.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&value.replace('\n', " "));
    }
    out.trim().to_string()
}

/// The string to sign. `serialized_params` is `""` when the request has no body parameter, in which case no
/// trailing line is added.
pub fn string_to_sign(method: &str, date: &str, x_headers: &str, path_and_query: &str, params: &str) -> String {
    let method = method.trim().to_ascii_uppercase();
    let path = path_and_query.trim();
    let mut s = String::with_capacity(method.len() + date.len() + x_headers.len() + path.len() + params.len() + 5);
    s.push_str(&method);
    s.push('\n');
    s.push_str(date);
    s.push('\n');
    s.push_str(x_headers);
    s.push('\n');
    s.push_str(path);
    if !params.is_empty() {
        s.push('\n');
        s.push_str(params);
    }
    s
}

/// Base64 (standard, padded) HMAC-SHA1 of `data` keyed with `secret`.
pub fn sign(secret: &[u8], data: &str) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
    let mut mac = match HmacSha1::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(data.as_bytes());
    BASE64.encode(&mac.finalize().into_bytes())
}

/// Constant-time check of a Base64 signature.
pub fn verify(secret: &[u8], data: &str, signature_b64: &str) -> bool {
    let Ok(sig) = BASE64.decode(signature_b64.as_bytes()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha1::new_from_slice(secret) else {
        return false;
    };
    mac.update(data.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The `Authorization` header value a client sends: `11PATHS <appId> <signature>`.
pub fn authorization_header(app_id: &str, secret: &str, string_to_sign: &str) -> String {
    format!("{AUTH_METHOD} {app_id} {}", sign(secret.as_bytes(), string_to_sign))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `yyyy-MM-dd HH:mm:ss` (UTC) into Unix seconds; `None` for any other shape or an impossible date.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Formats Unix seconds as `yyyy-MM-dd HH:mm:ss` (UTC).
pub fn format_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86400);
    let rem = unix_secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"MySecretKey";
    const DATE: &str = "2015-02-15 14:53:00";

    #[test]
    fn gold_vector_with_x_headers_and_multivalued_params() {
        let xh = serialize_x_headers([("X-11paths-B", "Test value"), ("X-11paths-A", "Line\nBreaks")]);
        assert_eq!(xh, "x-11paths-a:Line Breaks x-11paths-b:Test value");
        let params = serialize_params(&[("B", "B"), ("B", "A"), ("A", "A")]);
        assert_eq!(params, "A=A&B=A&B=B");
        let sts = string_to_sign("post", DATE, &xh, "/api/1.0/pair/my_token", &params);
        assert_eq!(
            sts,
            "POST\n2015-02-15 14:53:00\nx-11paths-a:Line Breaks x-11paths-b:Test value\n/api/1.0/pair/my_token\nA=A&B=A&B=B"
        );
        assert_eq!(sign(KEY, &sts), "XOxtWhv576pq8w7VAC8EoxN3SPo=");
        assert!(verify(KEY, &sts, "XOxtWhv576pq8w7VAC8EoxN3SPo="));
        assert_eq!(
            authorization_header("MyAppID", "MySecretKey", &sts),
            "11PATHS MyAppID XOxtWhv576pq8w7VAC8EoxN3SPo="
        );
    }

    #[test]
    fn computed_vectors() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 5] = [
            ("GET", "/api/1.0/status/my_account", &[], "IIcSMu1k7vryFrrXY2ztp/TNMrQ="),
            (
                "GET",
                "/api/3.0/status/my_account/op/my_operation/nootp/silent",
                &[],
                "c4MT1MjRpkU09iTsxo7nTc2Y1VU=",
            ),
            ("POST", "/api/3.0/lock/my_account", &[], "lzqY6TwbEM5LiSWWky/fsOijk0E="),
            (
                "POST",
                "/api/3.0/totps",
                &[("userId", "user@example.com"), ("commonName", "John Doe")],
                "NcHqOmzT09m9Tcn1/RbFYMKz9F0=",
            ),
            (
                "POST",
                "/api/3.0/totps/my_totp/validate",
                &[("code", "123456")],
                "SCTTznOm7VcKYvH/KHx9Dl5+lf4=",
            ),
        ];
        for (method, path, params, want) in cases {
            let sts = string_to_sign(method, DATE, "", path, &serialize_params(params));
            assert_eq!(sign(KEY, &sts), want, "{sts:?}");
            assert!(verify(KEY, &sts, want));
            assert!(!verify(b"OtherKey", &sts, want));
        }
        // The 4th vector's exact string, as in the reference.
        let sts = string_to_sign(
            "POST",
            DATE,
            "",
            "/api/3.0/totps",
            &serialize_params(&[("userId", "user@example.com"), ("commonName", "John Doe")]),
        );
        assert_eq!(
            sts,
            "POST\n2015-02-15 14:53:00\n\n/api/3.0/totps\ncommonName=John+Doe&userId=user%40example.com"
        );
    }

    #[test]
    fn java_encoding_rules() {
        assert_eq!(java_urlencode("a b*-._~/é"), "a+b*-._%7E%2F%C3%A9");
        assert_eq!(form_decode(b"a+b%2Ac%zz%4"), "a b*c%zz%4");
        assert_eq!(form_decode(b"%C3%A9%"), "é%");
        assert_eq!(
            parse_form(b"code=12+3&&x&y=%41"),
            vec![
                ("code".into(), "12 3".into()),
                ("x".into(), String::new()),
                ("y".into(), "A".into())
            ]
        );
        assert_eq!(path_decode("a%40b.com"), "a@b.com");
        assert_eq!(path_decode("plain"), "plain");
        assert_eq!(path_decode("bad%4"), "bad%4");
    }

    #[test]
    fn bad_signatures_are_rejected() {
        let sts = string_to_sign("GET", DATE, "", "/api/1.0/status/my_account", "");
        assert!(!verify(KEY, &sts, "not base64!"));
        assert!(!verify(KEY, &sts, ""));
        assert!(!verify(KEY, &sts, "IIcSMu1k7vryFrrXY2ztp/TNMrQ"));
        assert!(!verify(KEY, &sts, "JIcSMu1k7vryFrrXY2ztp/TNMrQ="));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_date(DATE), Some(1_424_011_980));
        assert_eq!(format_date(1_424_011_980), DATE);
        assert_eq!(
            parse_date("2024-02-29 23:59:59").map(format_date).as_deref(),
            Some("2024-02-29 23:59:59")
        );
        for bad in [
            "2015-02-15T14:53:00",
            "2015-02-15 14:53:00 UTC",
            "2015-02-30 14:53:00",
            "2015-13-01 00:00:00",
            "2015-02-15 24:00:00",
            "2015-2-15 14:53:00",
            "",
            "Sun, 15 Feb 2015 14:53:00 GMT",
            "2015-02-15 14:53:0x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
