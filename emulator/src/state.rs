//! The emulator's in-memory Latch state: pairing codes, paired accounts with their latches and two-factor
//! settings, TOTPs, and the injected faults/errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::qr::QrMode;

/// The message the real service sends with each Latch error code (reference §4.1), or a generic text.
pub fn latch_message(code: u32) -> &'static str {
    match code {
        101 => "Invalid Authorization header format",
        102 => "Invalid application signature",
        103 => "Authorization header missing",
        104 => "Date header missing",
        105 => "Invalid credentials",
        106 => "Outdated client version. The app still works, but is not the latest one available for this platform",
        107 => "Unsupported client version",
        108 => "Invalid date format",
        109 => "Request expired, date is too old",
        110 => "Unauthorized client",
        111 => "User not authorized",
        201 => "Account not paired",
        202 => "Invalid account name",
        203 => "Error pairing account",
        204 => "Error unpairing account",
        205 => "Account and application already paired",
        206 => "Token not found or expired",
        207 => "Token not found or expired",
        208 => "Generic account error",
        301 => "Application or Operation not found",
        306 => "Invalid totp code",
        401 => "Missing parameter in API call",
        402 => "Invalid parameter value",
        501 => "There isn't a token generated for this operation and user account",
        701 => "The account has been paired but has been marked as disabled",
        1100 => "Authorization control not found",
        _ => "Error",
    }
}

/// A failure injected into API (non-control) requests.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Read the request, then close the connection without answering.
    Refuse,
    /// Read the request and never answer; the socket is held until the client goes away or `max` passes.
    Hang {
        /// How long the socket is held at most.
        max: Duration,
    },
    /// HTTP 500 with an HTML body.
    Http500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// The correct answer, sent after `delay`.
    Slow {
        /// Delay before the answer.
        delay: Duration,
    },
    /// The correct answer: head at once, then the body one byte every `delay`.
    Trickle {
        /// Delay between body bytes.
        delay: Duration,
    },
    /// The head of the correct answer (with its full `Content-Length`) and half its body, then close.
    Close,
    /// HTTP 200 with a JSON-looking body of `size` bytes, streamed (never held in memory).
    Huge {
        /// Body size in bytes.
        size: u64,
        /// Send it with `Transfer-Encoding: chunked` instead of a `Content-Length`.
        chunked: bool,
    },
    /// The correct answer with every `"status"` given twice, the contradicting value first (`twin_first`)
    /// or last: an ambiguous answer that a last-key-wins parser reads one way and a first-key-wins
    /// parser the other.
    Contradict {
        /// The contradicting `status` comes before the real one.
        twin_first: bool,
    },
}

impl Fault {
    /// The mode name used by the control API.
    pub fn mode(&self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Refuse => "refuse",
            Fault::Hang { .. } => "hang",
            Fault::Http500 => "500",
            Fault::Garbage => "garbage",
            Fault::Slow { .. } => "slow",
            Fault::Trickle { .. } => "trickle",
            Fault::Close => "close",
            Fault::Huge { .. } => "huge",
            Fault::Contradict { twin_first: true } => "contradict",
            Fault::Contradict { twin_first: false } => "contradict_after",
        }
    }

    /// Builds a fault from the control API's fields. `delay_ms`/`size` default to 120 000 ms for `hang`,
    /// 1 000 ms for `slow`, 50 ms for `trickle` and 64 MiB for `huge`.
    pub fn from_mode(mode: &str, delay_ms: Option<u64>, size: Option<u64>, chunked: bool) -> Option<Fault> {
        let ms = |d: u64| Duration::from_millis(delay_ms.unwrap_or(d));
        Some(match mode {
            "none" | "" => Fault::None,
            "refuse" => Fault::Refuse,
            "hang" => Fault::Hang { max: ms(120_000) },
            "500" | "http500" => Fault::Http500,
            "garbage" => Fault::Garbage,
            "slow" => Fault::Slow { delay: ms(1_000) },
            "trickle" => Fault::Trickle { delay: ms(50) },
            "close" => Fault::Close,
            "huge" => Fault::Huge {
                size: size.unwrap_or(64 << 20),
                chunked,
            },
            "huge_chunked" => Fault::Huge {
                size: size.unwrap_or(64 << 20),
                chunked: true,
            },
            "contradict" => Fault::Contradict { twin_first: true },
            "contradict_after" => Fault::Contradict { twin_first: false },
            _ => return None,
        })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({ "mode": self.mode() });
        match self {
            Fault::Hang { max: d } | Fault::Slow { delay: d } | Fault::Trickle { delay: d } => {
                v["delay_ms"] = json!(d.as_millis() as u64);
            }
            Fault::Huge { size, chunked } => {
                v["size"] = json!(size);
                v["chunked"] = json!(chunked);
            }
            _ => {}
        }
        v
    }
}

/// A pairing code waiting to be used.
pub(crate) struct Code {
    pub user: String,
    pub expires_ms: Option<i64>,
}

/// One account paired with one application.
pub(crate) struct Account {
    pub app: String,
    pub user: String,
    pub common_name: Option<String>,
    pub paired_ms: i64,
    /// Latch per operation; the key "" is the application-wide latch. Absent = on.
    pub latches: HashMap<String, bool>,
    /// Operations ("" = the application) for which status issues a two-factor token.
    pub otp_required: HashSet<String>,
    /// Last token issued per operation ("" = the application): (token, generated ms).
    pub last_otp: HashMap<String, (String, i64)>,
}

impl Account {
    /// The latch as status reports it: an operation is off when it or the application is off.
    pub fn is_on(&self, op: &str) -> bool {
        let app_on = self.latches.get("").copied().unwrap_or(true);
        app_on && (op.is_empty() || self.latches.get(op).copied().unwrap_or(true))
    }
}

/// One TOTP enrolment.
pub(crate) struct Totp {
    pub app: String,
    pub user_id: String,
    pub common_name: Option<String>,
    pub secret: Vec<u8>,
    pub created_ms: i64,
    pub seq: u64,
}

/// Everything mutable, under one mutex.
#[derive(Default)]
pub(crate) struct State {
    /// Operation ids per application id.
    pub operations: HashMap<String, Vec<String>>,
    pub codes: HashMap<String, Code>,
    pub accounts: HashMap<String, Account>,
    pub totps: HashMap<String, Totp>,
    pub totp_seq: u64,
    pub fault: Fault,
    /// How many more requests the fault applies to (`None` = until changed).
    pub fault_remaining: Option<u64>,
    pub error: Option<(u32, String)>,
    pub skew_secs: i64,
    pub qr_mode: QrMode,
}

/// The account id the emulator gives `user` in application `app`: 64 lower-case hex characters, stable.
pub fn account_id(app: &str, user: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"lockserver-emulator account\0");
    h.update(app.as_bytes());
    h.update(b"\0");
    h.update(user.as_bytes());
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// Alphabet of generated pairing codes: upper case and digits without `S 5 l 1 0 O` (the official client
/// refuses those).
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNPQRTUVWXYZ2346789";
/// Alphabet of two-factor tokens and ids.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Fills `buf` from the OS; falls back to a time-seeded generator if the OS source fails.
pub fn random_fill(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_ok() {
        return;
    }
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
        | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// A random string of `n` characters from `alphabet` (unbiased).
pub fn random_string(alphabet: &[u8], n: usize) -> String {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        random_fill(&mut buf);
        for &b in &buf {
            if (b as usize) < limit && out.len() < n {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

impl State {
    pub fn new(apps: &[(String, Vec<String>)]) -> State {
        State {
            operations: apps.iter().cloned().collect(),
            ..State::default()
        }
    }

    /// Clears everything but the applications' operations, which go back to `apps`.
    pub fn reset(&mut self, apps: &[(String, Vec<String>)]) {
        *self = State::new(apps);
    }

    pub fn has_operation(&self, app: &str, op: &str) -> bool {
        self.operations.get(app).is_some_and(|ops| ops.iter().any(|o| o == op))
    }

    /// Takes the fault for one API request, counting it down.
    pub fn take_fault(&mut self) -> Fault {
        match self.fault_remaining {
            Some(0) => Fault::None,
            Some(n) => {
                self.fault_remaining = Some(n - 1);
                let f = self.fault.clone();
                if n == 1 {
                    self.fault = Fault::None;
                    self.fault_remaining = None;
                }
                f
            }
            None => self.fault.clone(),
        }
    }

    pub fn add_code(&mut self, code: Option<&str>, user: Option<&str>, ttl: Option<Duration>, now_ms: i64) -> String {
        let code = code.map_or_else(|| random_string(CODE_ALPHABET, 6), str::to_string);
        let user = user.map_or_else(|| format!("user-{}", random_string(ALNUM, 12)), str::to_string);
        let expires_ms = ttl.map(|t| now_ms.saturating_add(t.as_millis() as i64));
        self.codes.insert(code.clone(), Code { user, expires_ms });
        code
    }

    /// Pairs `user` with `app` directly. Err(205) when already paired.
    pub fn pair_user(
        &mut self,
        app: &str,
        user: &str,
        common_name: Option<String>,
        now_ms: i64,
    ) -> Result<String, u32> {
        let id = account_id(app, user);
        if self.accounts.contains_key(&id) {
            return Err(205);
        }
        self.accounts.insert(
            id.clone(),
            Account {
                app: app.to_string(),
                user: user.to_string(),
                common_name,
                paired_ms: now_ms,
                latches: HashMap::new(),
                otp_required: HashSet::new(),
                last_otp: HashMap::new(),
            },
        );
        Ok(id)
    }

    /// `pair/{token}`: 206 unknown/used/expired code, 205 already paired.
    pub fn pair_code(
        &mut self,
        app: &str,
        token: &str,
        common_name: Option<String>,
        now_ms: i64,
    ) -> Result<String, u32> {
        let user = match self.codes.get(token) {
            None => return Err(206),
            Some(c) if c.expires_ms.is_some_and(|e| e <= now_ms) => {
                self.codes.remove(token);
                return Err(206);
            }
            Some(c) => c.user.clone(),
        };
        let id = self.pair_user(app, &user, common_name, now_ms)?;
        self.codes.remove(token);
        Ok(id)
    }

    pub fn unpair(&mut self, app: &str, acc: &str) -> Result<(), u32> {
        match self.accounts.get(acc) {
            Some(a) if a.app == app => {
                self.accounts.remove(acc);
                Ok(())
            }
            _ => Err(201),
        }
    }

    pub fn account_mut(&mut self, app: &str, acc: &str) -> Result<&mut Account, u32> {
        match self.accounts.get_mut(acc) {
            Some(a) if a.app == app => Ok(a),
            _ => Err(201),
        }
    }

    /// Looks an account up for the control API, whatever its application.
    pub fn control_account(&mut self, acc: &str, op: Option<&str>) -> Result<&mut Account, String> {
        let app = match self.accounts.get(acc) {
            Some(a) => a.app.clone(),
            None => return Err(format!("unknown account {acc:?}")),
        };
        if let Some(op) = op
            && !self.has_operation(&app, op)
        {
            return Err(format!("operation {op:?} is not an operation of application {app:?}"));
        }
        self.accounts
            .get_mut(acc)
            .ok_or_else(|| format!("unknown account {acc:?}"))
    }

    pub fn create_totp(&mut self, app: &str, user_id: &str, common_name: Option<String>, now_ms: i64) -> String {
        let id = random_string(ALNUM, 20);
        let mut secret = vec![0u8; 20];
        random_fill(&mut secret);
        self.totp_seq += 1;
        self.totps.insert(
            id.clone(),
            Totp {
                app: app.to_string(),
                user_id: user_id.to_string(),
                common_name,
                secret,
                created_ms: now_ms,
                seq: self.totp_seq,
            },
        );
        id
    }

    /// The most recently created TOTP, optionally only among those of `user_id`.
    pub fn latest_totp(&self, user_id: Option<&str>) -> Option<(&String, &Totp)> {
        self.totps
            .iter()
            .filter(|(_, t)| user_id.is_none_or(|u| t.user_id == u))
            .max_by_key(|(_, t)| t.seq)
    }

    pub fn to_json(&self, requests: u64) -> Value {
        let apps: BTreeMap<&String, &Vec<String>> = self.operations.iter().collect();
        let codes: BTreeMap<&String, Value> = self
            .codes
            .iter()
            .map(|(c, v)| (c, json!({ "user": v.user, "expires_ms": v.expires_ms })))
            .collect();
        let accounts: BTreeMap<&String, Value> = self
            .accounts
            .iter()
            .map(|(id, a)| {
                let latches: BTreeMap<&str, &str> = a
                    .latches
                    .iter()
                    .map(|(k, on)| {
                        (
                            if k.is_empty() { "(application)" } else { k.as_str() },
                            if *on { "on" } else { "off" },
                        )
                    })
                    .collect();
                let mut otp: Vec<&str> = a.otp_required.iter().map(String::as_str).collect();
                otp.sort_unstable();
                let last: BTreeMap<&String, Value> = a
                    .last_otp
                    .iter()
                    .map(|(k, (t, g))| (k, json!({ "token": t, "generated": g })))
                    .collect();
                (
                    id,
                    json!({
                        "app": a.app, "user": a.user, "common_name": a.common_name, "paired_ms": a.paired_ms,
                        "status": if a.is_on("") { "on" } else { "off" },
                        "latches": latches, "otp_required": otp, "last_otp": last,
                    }),
                )
            })
            .collect();
        let totps: BTreeMap<&String, Value> = self
            .totps
            .iter()
            .map(|(id, t)| {
                (
                    id,
                    json!({
                        "app": t.app, "user_id": t.user_id, "common_name": t.common_name,
                        "secret": data_encoding::BASE32_NOPAD.encode(&t.secret), "created_ms": t.created_ms,
                    }),
                )
            })
            .collect();
        json!({
            "operations": apps,
            "codes": codes,
            "accounts": accounts,
            "totps": totps,
            "fault": self.fault.to_json(),
            "fault_remaining": self.fault_remaining,
            "error": self.error.as_ref().map(|(c, m)| json!({ "code": c, "message": m })),
            "clock_skew_secs": self.skew_secs,
            "qr_mode": self.qr_mode.as_str(),
            "requests": requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings() {
        let c = random_string(CODE_ALPHABET, 6);
        assert_eq!(c.len(), 6);
        assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_ne!(random_string(ALNUM, 20), random_string(ALNUM, 20));
    }

    #[test]
    fn account_ids_are_64_hex_and_per_app() {
        let a = account_id("app1", "alice");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, account_id("app2", "alice"));
        assert_eq!(a, account_id("app1", "alice"));
    }

    #[test]
    fn fault_countdown() {
        let mut s = State {
            fault: Fault::Refuse,
            fault_remaining: Some(2),
            ..State::default()
        };
        assert_eq!(s.take_fault(), Fault::Refuse);
        assert_eq!(s.take_fault(), Fault::Refuse);
        assert_eq!(s.take_fault(), Fault::None);
        assert_eq!(s.fault, Fault::None);
    }

    #[test]
    fn codes_are_single_use_and_expire() {
        let mut s = State::new(&[("app".into(), vec![])]);
        let c = s.add_code(Some("ABC234"), Some("bob"), None, 0);
        let acc = s.pair_code("app", &c, None, 0).expect("pair");
        assert_eq!(acc, account_id("app", "bob"));
        assert_eq!(s.pair_code("app", &c, None, 0), Err(206));
        s.add_code(Some("ABC234"), Some("bob"), None, 0);
        assert_eq!(s.pair_code("app", "ABC234", None, 0), Err(205));
        s.add_code(Some("XYZ234"), None, Some(Duration::from_secs(1)), 0);
        assert_eq!(s.pair_code("app", "XYZ234", None, 1000), Err(206));
    }
}
