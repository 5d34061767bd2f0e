//! RFC 6238 time-based one-time passwords, for `[totp] source = "local"` and the C API.
//!
//! Hand-written on `hmac` + `sha1`/`sha2` (a few lines, security-relevant, and we need the matched time
//! step back for replay protection). Codes are compared in constant time.

#![forbid(unsafe_code)]

use crate::config::{TotpAlgorithm, TotpConfig};
use hmac::{Hmac, Mac};
use std::io::Read;
use subtle::ConstantTimeEq;

/// The parameters of one TOTP (RFC 6238 §4: T0 = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub algorithm: TotpAlgorithm,
    pub digits: u32,
    pub step_secs: u64,
    /// Accepted steps either side of now.
    pub window: u32,
}

impl From<&TotpConfig> for Params {
    fn from(c: &TotpConfig) -> Params {
        Params {
            algorithm: c.algorithm,
            digits: c.digits,
            step_secs: c.step_secs,
            window: c.window,
        }
    }
}

impl Default for Params {
    fn default() -> Params {
        Params::from(&TotpConfig::default())
    }
}

fn hmac_digest<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The code of time step `counter` (RFC 4226 dynamic truncation).
pub fn code_at_step(secret: &[u8], counter: u64, algorithm: TotpAlgorithm, digits: u32) -> String {
    let msg = counter.to_be_bytes();
    let mac = match algorithm {
        TotpAlgorithm::Sha1 => hmac_digest::<Hmac<sha1::Sha1>>(secret, &msg),
        TotpAlgorithm::Sha256 => hmac_digest::<Hmac<sha2::Sha256>>(secret, &msg),
        TotpAlgorithm::Sha512 => hmac_digest::<Hmac<sha2::Sha512>>(secret, &msg),
    };
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    let modulus = 10u32.pow(digits.clamp(6, 8));
    format!("{:0width$}", bin % modulus, width = digits.clamp(6, 8) as usize)
}

/// The code for unix time `time`.
pub fn code_at(secret: &[u8], time: u64, p: &Params) -> String {
    code_at_step(secret, time / p.step_secs.max(1), p.algorithm, p.digits)
}

/// Checks `code` at unix time `time`. Returns the matched step, or `None`. A step at or before
/// `last_step` never matches (a code accepted once is refused if replayed).
pub fn verify(secret: &[u8], code: &str, time: u64, p: &Params, last_step: Option<u64>) -> Option<u64> {
    let code = code.trim();
    if code.len() != p.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = time / p.step_secs.max(1);
    let window = u64::from(p.window);
    let mut matched = None;
    // Check every step of the window (no early exit) so timing does not tell which step matched.
    for step in now.saturating_sub(window)..=now.saturating_add(window) {
        let expected = code_at_step(secret, step, p.algorithm, p.digits);
        let equal: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if equal && last_step.is_none_or(|last| step > last) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// Decodes a base32 secret (RFC 4648, padding and case optional, spaces ignored).
pub fn decode_secret(base32: &str) -> Option<Vec<u8>> {
    let cleaned: String = base32
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = data_encoding::BASE32_NOPAD.decode(cleaned.as_bytes()).ok()?;
    (!bytes.is_empty()).then_some(bytes)
}

/// A new random secret of 20 bytes (160 bits, RFC 4226's recommendation), base32 without padding.
pub fn generate_secret() -> std::io::Result<zeroize::Zeroizing<String>> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 20]);
    std::fs::File::open("/dev/urandom")?.read_exact(bytes.as_mut())?;
    Ok(zeroize::Zeroizing::new(
        data_encoding::BASE32_NOPAD.encode(bytes.as_ref()),
    ))
}

/// The `otpauth://totp/ISSUER:ACCOUNT?...` URI authenticator apps scan. `algorithm`, `digits` and
/// `period` are written only when they differ from the Key URI format's defaults (SHA1, 6, 30): a
/// shorter URI is a smaller QR code, one that fits an 80x24 terminal.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str, p: &Params) -> String {
    let mut uri = format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}",
        encode(issuer),
        encode(account),
        secret_base32,
        encode(issuer)
    );
    let algorithm = match p.algorithm {
        TotpAlgorithm::Sha1 => None,
        TotpAlgorithm::Sha256 => Some("SHA256"),
        TotpAlgorithm::Sha512 => Some("SHA512"),
    };
    if let Some(a) = algorithm {
        uri.push_str(&format!("&algorithm={a}"));
    }
    if p.digits != 6 {
        uri.push_str(&format!("&digits={}", p.digits));
    }
    if p.step_secs != 30 {
        uri.push_str(&format!("&period={}", p.step_secs));
    }
    uri
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1_SEED: &[u8] = b"12345678901234567890";
    const SHA256_SEED: &[u8] = b"12345678901234567890123456789012";
    const SHA512_SEED: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// RFC 6238 Appendix B, all 18 vectors (8 digits, 30 s step).
    #[test]
    fn rfc6238_appendix_b() {
        let vectors: &[(u64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(t, sha1, sha256, sha512) in vectors {
            let p = |algorithm| Params {
                algorithm,
                digits: 8,
                step_secs: 30,
                window: 0,
            };
            assert_eq!(code_at(SHA1_SEED, t, &p(TotpAlgorithm::Sha1)), sha1, "SHA1 t={t}");
            assert_eq!(
                code_at(SHA256_SEED, t, &p(TotpAlgorithm::Sha256)),
                sha256,
                "SHA256 t={t}"
            );
            assert_eq!(
                code_at(SHA512_SEED, t, &p(TotpAlgorithm::Sha512)),
                sha512,
                "SHA512 t={t}"
            );
        }
    }

    #[test]
    fn six_digits_are_the_last_six() {
        assert_eq!(code_at(SHA1_SEED, 59, &Params::default()), "287082");
    }

    #[test]
    fn google_authenticator_vector() {
        let secret = decode_secret("2SH3V3GDW7ZNMGYE").expect("base32");
        assert_eq!(code_at(&secret, 10000 * 30, &Params::default()), "050548");
    }

    #[test]
    fn window_and_replay() {
        let p = Params::default();
        let t = 1_700_000_000;
        let prev = code_at(SHA1_SEED, t - 30, &p);
        let now_step = t / 30;
        assert_eq!(verify(SHA1_SEED, &prev, t, &p, None), Some(now_step - 1));
        let far = code_at(SHA1_SEED, t - 90, &p);
        assert_eq!(verify(SHA1_SEED, &far, t, &p, None), None, "outside the ±1 window");
        let code = code_at(SHA1_SEED, t, &p);
        assert_eq!(verify(SHA1_SEED, &code, t, &p, Some(now_step)), None, "replayed");
        assert_eq!(verify(SHA1_SEED, "12345", t, &p, None), None, "wrong length");
        assert_eq!(verify(SHA1_SEED, "abcdef", t, &p, None), None, "not digits");
    }

    #[test]
    fn secrets_and_uri() {
        let s = generate_secret().expect("urandom");
        assert_eq!(s.len(), 32);
        assert_eq!(decode_secret(&s).map(|b| b.len()), Some(20));
        assert_eq!(decode_secret("jbsw y3dp ehpk 3pxp"), decode_secret("JBSWY3DPEHPK3PXP"));
        assert!(decode_secret("!!").is_none());
        let uri = otpauth_uri("Lock Server", "alice@host", "JBSWY3DPEHPK3PXP", &Params::default());
        assert_eq!(
            uri,
            "otpauth://totp/Lock%20Server:alice%40host?secret=JBSWY3DPEHPK3PXP&issuer=Lock%20Server"
        );
        let other = Params {
            algorithm: TotpAlgorithm::Sha256,
            digits: 8,
            step_secs: 60,
            ..Params::default()
        };
        assert_eq!(
            otpauth_uri("x", "a", "JBSWY3DPEHPK3PXP", &other),
            "otpauth://totp/x:a?secret=JBSWY3DPEHPK3PXP&issuer=x&algorithm=SHA256&digits=8&period=60"
        );
    }
}
