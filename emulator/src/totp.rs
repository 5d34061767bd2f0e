//! RFC 4226 / RFC 6238 one-time passwords (HMAC-SHA1), written independently of the `lockserver` crate.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The TOTP time step, in seconds.
pub const STEP_SECS: i64 = 30;
/// Digits of the codes the emulator issues and validates.
pub const DIGITS: u32 = 6;

/// HOTP value of `counter` (RFC 4226 §5.3), zero-padded to `digits` (1..=9).
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let digits = digits.clamp(1, 9);
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    let code = bin % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// TOTP value at Unix time `unix_secs` with a 30 s step.
pub fn totp(key: &[u8], unix_secs: i64, digits: u32) -> String {
    hotp(key, unix_secs.div_euclid(STEP_SECS).max(0) as u64, digits)
}

/// True when `code` is the 6-digit TOTP of the step at `unix_secs` or of one step either side.
pub fn verify(key: &[u8], code: &str, unix_secs: i64) -> bool {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let step = unix_secs.div_euclid(STEP_SECS);
    let mut ok = false;
    for s in [step - 1, step, step + 1] {
        if s >= 0 {
            // No early return: examine every window.
            ok |= constant_eq(hotp(key, s as u64, DIGITS).as_bytes(), code.as_bytes());
        }
    }
    ok
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA1 rows (8 digits, key "12345678901234567890").
    #[test]
    fn rfc6238_appendix_b_sha1() {
        let key = b"12345678901234567890";
        for (t, want) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp(key, t, 8), want, "t={t}");
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc4226_hotp() {
        let key = b"12345678901234567890";
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
        ];
        for (c, w) in want.iter().enumerate() {
            assert_eq!(hotp(key, c as u64, 6), *w);
        }
    }

    #[test]
    fn verify_window() {
        let key = b"12345678901234567890";
        let t = 1_111_111_111;
        let now = totp(key, t, 6);
        assert!(verify(key, &now, t));
        assert!(verify(key, &totp(key, t - 30, 6), t));
        assert!(verify(key, &totp(key, t + 30, 6), t));
        assert!(!verify(key, &totp(key, t - 90, 6), t));
        assert!(!verify(key, &totp(key, t + 90, 6), t));
        assert!(!verify(key, "12345", t));
        assert!(!verify(key, "abcdef", t));
        assert!(!verify(key, &format!("{now}0"), t));
    }
}
