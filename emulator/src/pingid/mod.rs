//! The PingID SDK side of the emulator: the API under `/pingid/v1/`, signed answers, and the
//! `/_emulator/pingid/` control API that plays the phone.
//!
//! State: users (per account), devices (per user and application), pairing keys (application or
//! organization scope, the seed's visibility rule) and authentications (30-minute lifetime). How a
//! user's phone answers is a [`Plan`]: set ahead for the user's next authentications, or applied at
//! once to the latest pending one.

pub mod jwt;

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::Request;
use crate::state::random_string;

/// Account id of the default PingID account.
pub const DEFAULT_ACCOUNT_ID: &str = "e17f898d-3577-490d-baa7-64ceecf6b8a5";
/// The default application (the first of [`PingidOptions::applications`]).
pub const DEFAULT_APPLICATION_ID: &str = "49b9ed37-31ce-488f-9c44-1fe1ed95f756";
/// A second application of the same account, to show the scope rules.
pub const OTHER_APPLICATION_ID: &str = "0c9e6f33-7a1b-4d2c-9e8f-5a4b3c2d1e0f";
/// The default account token.
pub const DEFAULT_TOKEN: &str = "9ac4216d0123456789abcdef01234567";
/// The default API key, base64 (32 bytes).
pub const DEFAULT_API_KEY_B64: &str = "ZW11bGF0b3ItcGluZ2lkLWFwaS1rZXktMzItYnl0ZXM=";
/// How long an authentication can be read or answered (reference §4).
pub const AUTHENTICATION_LIFETIME_MS: i64 = 30 * 60 * 1000;
/// Wrong OTPs before an authentication reads LOCKED (the real count is unconfirmed).
pub const OTP_TRIES_BEFORE_LOCK: u32 = 5;

const JSON_TYPE: &str = "application/json";

/// The PingID account the emulator serves.
#[derive(Clone, Debug)]
pub struct PingidOptions {
    pub account_id: String,
    pub token: String,
    /// The API key, base64 (standard alphabet), as in `pingidsdk.properties`.
    pub api_key_b64: String,
    /// Application ids of the account; the first is the default one.
    pub applications: Vec<String>,
}

impl Default for PingidOptions {
    fn default() -> Self {
        PingidOptions {
            account_id: DEFAULT_ACCOUNT_ID.into(),
            token: DEFAULT_TOKEN.into(),
            api_key_b64: DEFAULT_API_KEY_B64.into(),
            applications: vec![DEFAULT_APPLICATION_ID.into(), OTHER_APPLICATION_ID.into()],
        }
    }
}

/// How the phone answers an authentication.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// `approve`, `reject`, `ignore` (stays IN_PROGRESS), `timeout`, `otp` (the status says OTP and
    /// a code is expected) or `status` (ends in [`Plan::status`]).
    pub action: String,
    /// Seconds after the authentication starts (or after the answer is given) before it applies.
    #[serde(default)]
    pub after_secs: u64,
    /// With `otp`: the right code (default: 6 random digits).
    #[serde(default)]
    pub otp: Option<String>,
    /// With `reject` or `status`: the `reason` (e.g. `DEVICE_ROOTED`; `reject` defaults to `DENIED_BY_USER`).
    #[serde(default)]
    pub reason: Option<String>,
    /// With `status`: the final status, e.g. `IGNORED_DEVICE`, `LOCKED`, `BYPASSED_DEVICE`.
    #[serde(default)]
    pub status: Option<String>,
}

impl Plan {
    pub fn new(action: &str) -> Plan {
        Plan {
            action: action.into(),
            after_secs: 0,
            otp: None,
            reason: None,
            status: None,
        }
    }

    pub fn after(mut self, secs: u64) -> Plan {
        self.after_secs = secs;
        self
    }

    fn check(&self) -> Result<(), String> {
        match self.action.as_str() {
            "approve" | "reject" | "ignore" | "timeout" | "otp" => Ok(()),
            "status" if self.status.as_deref().is_some_and(|s| !s.is_empty()) => Ok(()),
            "status" => Err("action \"status\" needs a status".into()),
            other => Err(format!("unknown action {other:?}")),
        }
    }

    /// The (status, reason) this plan ends in; `None` while it keeps the authentication pending.
    fn outcome(&self) -> Option<(String, Option<String>)> {
        match self.action.as_str() {
            "approve" => Some(("APPROVED".into(), None)),
            "reject" => Some((
                "REJECTED".into(),
                Some(self.reason.clone().unwrap_or("DENIED_BY_USER".into())),
            )),
            "timeout" => Some(("TIMEOUT".into(), None)),
            "status" => Some((self.status.clone().unwrap_or_default(), self.reason.clone())),
            _ => None,
        }
    }
}

/// How answers are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignatureMode {
    /// `X-PINGID-Signature`, right.
    #[default]
    Good,
    /// `X-PINGID-Singature` (the sample's spelling), right.
    SampleSpelling,
    /// No signature header.
    None,
    /// Signed with another key.
    BadKey,
    /// Signed right, over another body.
    BadBody,
}

impl SignatureMode {
    pub fn parse(s: &str) -> Option<SignatureMode> {
        Some(match s {
            "good" => SignatureMode::Good,
            "sample_spelling" => SignatureMode::SampleSpelling,
            "none" => SignatureMode::None,
            "bad_key" => SignatureMode::BadKey,
            "bad_body" => SignatureMode::BadBody,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
struct User {
    first_name: String,
    last_name: String,
}

#[derive(Clone, Debug)]
struct Device {
    id: String,
    user: String,
    app: String,
    device_type: String,
    nickname: String,
    primary: bool,
    enrolled_ms: i64,
}

#[derive(Clone, Debug)]
struct Key {
    data: String,
    /// `None` = organization scope.
    app: Option<String>,
    used: bool,
}

#[derive(Clone, Debug)]
struct Auth {
    user: String,
    app: String,
    created_ms: i64,
    client_context: Option<String>,
    device_id: String,
    plan: Plan,
    /// When `plan` took effect (creation, or the control call that answered).
    plan_from_ms: i64,
    /// The right OTP, once the plan asked for one.
    otp: Option<String>,
    otp_tries: u32,
    status: String,
    reason: Option<String>,
}

impl Auth {
    fn is_final(&self) -> bool {
        !matches!(self.status.as_str(), "IN_PROGRESS" | "OTP" | "INVALID_OTP")
    }

    /// Applies the plan if its time has come.
    fn advance(&mut self, now_ms: i64) {
        if self.is_final() {
            return;
        }
        let due = now_ms
            >= self
                .plan_from_ms
                .saturating_add((self.plan.after_secs as i64).saturating_mul(1000));
        if !due {
            return;
        }
        if self.plan.action == "otp" {
            if self.status == "IN_PROGRESS" {
                self.status = "OTP".into();
                self.otp = Some(self.plan.otp.clone().unwrap_or_else(|| random_string(b"0123456789", 6)));
            }
        } else if let Some((status, reason)) = self.plan.outcome() {
            self.status = status;
            self.reason = reason;
        }
    }
}

#[derive(Default)]
struct State {
    users: HashMap<String, User>,
    devices: Vec<Device>,
    keys: HashMap<String, Key>,
    auths: HashMap<String, Auth>,
    /// Auth ids in creation order (the "latest" one of a user).
    auth_order: Vec<String>,
    plans: HashMap<String, Plan>,
    default_plan: Option<Plan>,
    signature: SignatureMode,
    /// Answers the next requests with this (status, body), signed as usual.
    raw: Option<(u16, Vec<u8>, u64)>,
    requests: u64,
}

/// The PingID service of one emulator.
pub struct Pingid {
    opts: PingidOptions,
    key: Vec<u8>,
    state: Mutex<State>,
}

/// A control-call failure: (HTTP status, message).
pub type CtlError = (u16, String);

fn web_id() -> String {
    let h = random_string(b"0123456789abcdef", 32);
    format!(
        "webs_{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn uuid() -> String {
    let h = random_string(b"0123456789abcdef", 32);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The error envelope `{message, id, target, details, code}`.
pub fn envelope(code: &str, message: &str, target: Option<&str>, details: &[(&str, &str)]) -> Vec<u8> {
    let details: Vec<Value> = details
        .iter()
        .map(|(c, m)| json!({"code": c, "message": m, "target": target}))
        .collect();
    let mut v = json!({"message": message, "id": web_id(), "code": code, "details": details});
    if let Some(t) = target {
        v["target"] = json!(t);
    }
    v.to_string().into_bytes()
}

type Answer = (u16, Vec<u8>);

fn err(status: u16, code: &str, message: &str, target: Option<&str>) -> Answer {
    (status, envelope(code, message, target, &[]))
}

fn not_found(what: &str, id: &str) -> Answer {
    err(404, "NOT_FOUND", &format!("{what} {id} not found"), Some(what))
}

impl Pingid {
    pub fn new(opts: PingidOptions) -> Result<Pingid, String> {
        let key = data_encoding::BASE64
            .decode(opts.api_key_b64.trim().as_bytes())
            .map_err(|_| "the PingID API key is not base64".to_string())?;
        if opts.applications.is_empty() {
            return Err("the PingID account needs an application".into());
        }
        Ok(Pingid {
            opts,
            key,
            state: Mutex::new(State::default()),
        })
    }

    pub fn options(&self) -> &PingidOptions {
        &self.opts
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves one API request under `/pingid/`. Returns (status, content type, extra headers); the
    /// body is appended to `body`.
    pub fn api(
        &self,
        req: &Request,
        now_ms: i64,
        body: &mut Vec<u8>,
    ) -> (u16, Option<&'static str>, Vec<(String, String)>) {
        let (status, bytes) = self.answer(req, now_ms);
        let signature = self.signature_header(&bytes);
        body.extend_from_slice(&bytes);
        let ctype = (status != 204).then_some(JSON_TYPE);
        (status, ctype, signature.into_iter().collect())
    }

    fn signature_header(&self, body: &[u8]) -> Option<(String, String)> {
        let (name, key, signed): (&str, &[u8], &[u8]) = match self.st().signature {
            SignatureMode::None => return None,
            SignatureMode::Good => ("X-PINGID-Signature", &self.key, body),
            SignatureMode::SampleSpelling => ("X-PINGID-Singature", &self.key, body),
            SignatureMode::BadKey => ("X-PINGID-Signature", b"not the account's key", body),
            SignatureMode::BadBody => ("X-PINGID-Signature", &self.key, b"{\"status\":\"APPROVED\"}"),
        };
        Some((
            name.to_string(),
            jwt::sign_response(key, &self.opts.account_id, &self.opts.token, signed),
        ))
    }

    fn answer(&self, req: &Request, now_ms: i64) -> Answer {
        {
            let mut st = self.st();
            st.requests += 1;
            if let Some((status, bytes, left)) = st.raw.take() {
                if left > 1 {
                    st.raw = Some((status, bytes.clone(), left - 1));
                }
                return (status, bytes);
            }
        }
        let Some(host) = req.header("host").map(strip_port) else {
            return err(401, "UNAUTHORIZED_REQ", "no Host header", Some("authorization"));
        };
        let Some(auth) = req.header("authorization") else {
            return err(
                401,
                "UNAUTHORIZED_REQ",
                "Authorization header missing",
                Some("authorization"),
            );
        };
        let signed = jwt::Signed {
            method: req.method(),
            host,
            path: req.path(),
            query: req.query(),
            body: &req.body,
        };
        if let Err(why) = jwt::verify_request(
            auth,
            &self.key,
            &self.opts.account_id,
            &self.opts.token,
            &signed,
            now_ms.div_euclid(1000),
        ) {
            return err(401, "UNAUTHORIZED_REQ", why, Some("authorization"));
        }
        let Some(rest) = req.path().strip_prefix("/pingid/v1/accounts/") else {
            return err(404, "NOT_FOUND", "no such resource", None);
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let Some((&account, segs)) = segs.split_first() else {
            return err(404, "NOT_FOUND", "no such resource", None);
        };
        if account != self.opts.account_id {
            return err(
                401,
                "UNAUTHORIZED_REQ",
                "the path names another account",
                Some("account"),
            );
        }
        let (app, segs) = match segs {
            ["applications", app, rest @ ..] => {
                if !self.opts.applications.iter().any(|a| a == app) {
                    return not_found("application", app);
                }
                (Some(*app), rest)
            }
            rest => (None, rest),
        };
        let json_body = || -> Result<serde_json::Map<String, Value>, Answer> {
            match serde_json::from_slice(&req.body) {
                Ok(Value::Object(o)) => Ok(o),
                _ => Err(err(400, "INVALID_REQUEST", "the body is not a JSON object", None)),
            }
        };
        let mut st = self.st();
        let result = match (req.method(), app, segs) {
            ("POST", None, ["users"]) => json_body().and_then(|b| st.create_user(&b)),
            ("GET", Some(app), ["users", user]) => st.get_user(app, user, req.query() == Some("expand=devices")),
            ("DELETE", None, ["users", user]) => st.delete_user(user),
            ("DELETE", None, ["users", user, "devices", id]) => st.delete_device(user, id),
            ("POST", scope, ["pairingkeys"]) => json_body().and_then(|b| st.create_key(scope, &b)),
            ("GET", scope, ["pairingkeys", id]) => st.get_key(scope, id),
            ("POST", Some(app), ["users", user, "authentications"]) => {
                json_body().and_then(|b| st.start_auth(app, user, &b, now_ms))
            }
            ("GET", Some(app), ["users", user, "authentications", id]) => st.get_auth(app, user, id, now_ms),
            ("PUT", Some(app), ["users", user, "authentications", id, "otp"]) => {
                json_body().and_then(|b| st.submit_otp(app, user, id, &b, now_ms))
            }
            ("DELETE", Some(app), ["users", user, "authentications", id]) => st.cancel_auth(app, user, id, now_ms),
            _ => Err(err(404, "NOT_FOUND", "no such resource", None)),
        };
        match result {
            Ok(answer) | Err(answer) => answer,
        }
    }

    /// Serves `/_emulator/pingid/<what>`.
    pub fn control(&self, req: &Request, what: &str, now_ms: i64) -> Result<Value, CtlError> {
        let bad = |e: String| (400u16, e);
        let body = || -> Result<Value, CtlError> {
            if req.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(json!({}));
            }
            serde_json::from_slice(&req.body).map_err(|e| bad(format!("bad JSON body: {e}")))
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match (req.method(), what) {
            ("POST", "users") => {
                let b = body()?;
                let user = text(&b, "username").ok_or_else(|| bad("username is required".into()))?;
                self.add_user(&user).map_err(bad)?;
                Ok(json!({}))
            }
            ("POST", "claim") => {
                let b = body()?;
                let key = text(&b, "key").ok_or_else(|| bad("key is required".into()))?;
                let (device, user) = self
                    .claim(&key, text(&b, "user").as_deref(), text(&b, "app").as_deref(), now_ms)
                    .map_err(bad)?;
                Ok(json!({"device_id": device, "user": user}))
            }
            ("POST", "device") => {
                let b = body()?;
                let user = text(&b, "user").ok_or_else(|| bad("user is required".into()))?;
                let device = self
                    .add_device(&user, text(&b, "app").as_deref(), now_ms)
                    .map_err(bad)?;
                Ok(json!({"device_id": device}))
            }
            ("POST", "plan") => {
                let mut b = body()?;
                let user = text(&b, "user");
                if let Some(o) = b.as_object_mut() {
                    o.remove("user");
                }
                let plan: Plan = serde_json::from_value(b).map_err(|e| bad(e.to_string()))?;
                self.set_plan(user.as_deref(), plan).map_err(bad)?;
                Ok(json!({}))
            }
            ("POST", "answer") => {
                let mut b = body()?;
                let user = text(&b, "user").ok_or_else(|| bad("user is required".into()))?;
                if let Some(o) = b.as_object_mut() {
                    o.remove("user");
                }
                let plan: Plan = serde_json::from_value(b).map_err(|e| bad(e.to_string()))?;
                let id = self.answer_latest(&user, plan, now_ms).map_err(|e| (404, e))?;
                Ok(json!({"id": id}))
            }
            ("GET", "otp") => {
                let user = query(req, "user").ok_or_else(|| bad("user is required".into()))?;
                Ok(match self.otp(&user, now_ms) {
                    Some((id, otp)) => json!({"id": id, "otp": otp}),
                    None => json!({"otp": null}),
                })
            }
            ("GET", "authentications") => {
                let user = query(req, "user");
                Ok(json!(self.authentications(user.as_deref(), now_ms)))
            }
            ("POST", "signature") => {
                let b = body()?;
                let mode = text(&b, "mode")
                    .and_then(|m| SignatureMode::parse(&m))
                    .ok_or_else(|| bad("mode must be good, sample_spelling, none, bad_key or bad_body".into()))?;
                self.set_signature(mode);
                Ok(json!({}))
            }
            ("POST", "raw") => {
                let b = body()?;
                let status = b
                    .get("status")
                    .and_then(Value::as_u64)
                    .filter(|s| (200..600).contains(s));
                let status = status.ok_or_else(|| bad("status (200-599) is required".into()))?;
                let answer = text(&b, "body").unwrap_or_default();
                let count = b.get("count").and_then(Value::as_u64).unwrap_or(1);
                self.set_raw(status as u16, answer.as_bytes(), count);
                Ok(json!({}))
            }
            _ => Err((
                404,
                format!("no control endpoint {} /_emulator/pingid/{what}", req.method()),
            )),
        }
    }

    /// Creates a user as `POST /users` would.
    pub fn add_user(&self, username: &str) -> Result<(), String> {
        let body = json!({"username": username}).as_object().cloned().unwrap_or_default();
        self.st().create_user(&body).map(drop).map_err(answer_text)
    }

    /// The phone claims a pairing key: a device for `user` (default: the key's `pairingData`) in
    /// `app` (default: the first application), the key becomes USED. Returns (device id, user).
    pub fn claim(
        &self,
        key: &str,
        user: Option<&str>,
        app: Option<&str>,
        now_ms: i64,
    ) -> Result<(String, String), String> {
        let app = self.app_or_default(app)?;
        let mut st = self.st();
        let k = st.keys.get(key).ok_or_else(|| format!("pairing key {key} not found"))?;
        if k.app.as_deref().is_some_and(|a| a != app) {
            return Err(format!("pairing key {key} belongs to another application"));
        }
        if k.used {
            return Err(format!("pairing key {key} is already used"));
        }
        let user = user.map_or_else(|| k.data.clone(), str::to_string);
        if !st.users.contains_key(&user) {
            return Err(format!("user {user} does not exist"));
        }
        if let Some(k) = st.keys.get_mut(key) {
            k.used = true;
        }
        Ok((st.add_device(&user, &app, now_ms), user))
    }

    /// Pairs a device for an existing user without a key.
    pub fn add_device(&self, user: &str, app: Option<&str>, now_ms: i64) -> Result<String, String> {
        let app = self.app_or_default(app)?;
        let mut st = self.st();
        if !st.users.contains_key(user) {
            return Err(format!("user {user} does not exist"));
        }
        Ok(st.add_device(user, &app, now_ms))
    }

    /// How `user`'s (or, with `None`, every user's) next authentications are answered.
    pub fn set_plan(&self, user: Option<&str>, plan: Plan) -> Result<(), String> {
        plan.check()?;
        let mut st = self.st();
        match user {
            Some(u) => {
                st.plans.insert(u.to_string(), plan);
            }
            None => st.default_plan = Some(plan),
        }
        Ok(())
    }

    /// Answers the user's latest pending authentication with `plan` (from now); returns its id.
    pub fn answer_latest(&self, user: &str, plan: Plan, now_ms: i64) -> Result<String, String> {
        plan.check()?;
        let mut st = self.st();
        let id = st
            .latest_auth(user, now_ms)
            .filter(|id| st.auths.get(id).is_some_and(|a| !a.is_final()))
            .ok_or_else(|| format!("no pending authentication of {user}"))?;
        if let Some(a) = st.auths.get_mut(&id) {
            a.plan = plan;
            a.plan_from_ms = now_ms;
            a.advance(now_ms);
        }
        Ok(id)
    }

    /// The right OTP of the user's latest authentication, once it asks for one: (id, otp).
    pub fn otp(&self, user: &str, now_ms: i64) -> Option<(String, String)> {
        let mut st = self.st();
        let id = st.latest_auth(user, now_ms)?;
        let a = st.auths.get_mut(&id)?;
        a.advance(now_ms);
        Some((id, a.otp.clone()?))
    }

    /// The authentications (of one user), oldest first, as the control API shows them.
    pub fn authentications(&self, user: Option<&str>, now_ms: i64) -> Vec<Value> {
        let mut st = self.st();
        let st = &mut *st;
        st.auth_order
            .iter()
            .filter_map(|id| {
                let a = st.auths.get_mut(id)?;
                if user.is_some_and(|u| u != a.user) {
                    return None;
                }
                a.advance(now_ms);
                Some(json!({
                    "id": id, "user": a.user, "app": a.app, "status": a.status, "reason": a.reason,
                    "client_context": a.client_context, "otp_tries": a.otp_tries,
                }))
            })
            .collect()
    }

    pub fn set_signature(&self, mode: SignatureMode) {
        self.st().signature = mode;
    }

    /// The next `count` API requests get exactly this answer (signed per the signature mode).
    pub fn set_raw(&self, status: u16, body: &[u8], count: u64) {
        self.st().raw = (count > 0).then(|| (status, body.to_vec(), count));
    }

    /// API requests received under `/pingid/` (faulted ones are counted by the emulator only).
    pub fn request_count(&self) -> u64 {
        self.st().requests
    }

    pub fn reset(&self) {
        *self.st() = State::default();
    }

    pub fn state_json(&self) -> Value {
        let st = self.st();
        let mut users: Vec<&String> = st.users.keys().collect();
        users.sort();
        let keys: serde_json::Map<String, Value> = st
            .keys
            .iter()
            .map(|(id, k)| {
                let scope = k.app.clone().unwrap_or_else(|| "organization".into());
                (
                    id.clone(),
                    json!({"pairingData": k.data, "scope": scope, "used": k.used}),
                )
            })
            .collect();
        let devices: Vec<Value> = st
            .devices
            .iter()
            .map(|d| json!({"id": d.id, "user": d.user, "app": d.app}))
            .collect();
        json!({
            "account_id": self.opts.account_id, "applications": self.opts.applications,
            "users": users, "devices": devices, "pairing_keys": keys,
            "authentications": st.auth_order.len(), "requests": st.requests,
        })
    }

    fn app_or_default(&self, app: Option<&str>) -> Result<String, String> {
        match app {
            None => Ok(self.opts.applications[0].clone()),
            Some(a) if self.opts.applications.iter().any(|x| x == a) => Ok(a.to_string()),
            Some(a) => Err(format!("unknown application {a:?}")),
        }
    }
}

fn answer_text((_, body): Answer) -> String {
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        // `[::1]:8080` → `[::1]`; a bare `[::1]` has its last colon inside the brackets.
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

fn query(req: &Request, name: &str) -> Option<String> {
    req.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| crate::sign::form_decode(v.as_bytes()))
}

fn json_answer(status: u16, v: Value) -> Result<Answer, Answer> {
    Ok((status, v.to_string().into_bytes()))
}

impl State {
    fn create_user(&mut self, b: &serde_json::Map<String, Value>) -> Result<Answer, Answer> {
        let text = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let username = text("username");
        if username.is_empty() || username.chars().count() > 100 {
            return Err(err(
                400,
                "INVALID_DATA",
                "username must be 1 to 100 characters",
                Some("username"),
            ));
        }
        if self.users.contains_key(&username) {
            let body = envelope(
                "INVALID_DATA",
                "the user already exists",
                Some("username"),
                &[("UNIQUE_VALUE_REQUIRED", "username is taken")],
            );
            return Err((400, body));
        }
        let user = User {
            first_name: text("firstName"),
            last_name: text("lastName"),
        };
        let v = json!({"username": username, "firstName": user.first_name, "lastName": user.last_name,
            "status": "NOT_ACTIVE", "lastLogin": null});
        self.users.insert(username, user);
        json_answer(201, v)
    }

    fn user_json(&self, app: &str, name: &str, user: &User, expand: bool) -> Value {
        let devices: Vec<Value> = self
            .devices
            .iter()
            .filter(|d| d.user == name && d.app == app)
            .map(|d| {
                json!({"id": d.id, "deviceType": d.device_type, "deviceName": d.device_type,
                    "deviceNickname": d.nickname, "deviceRole": if d.primary { "Primary" } else { "Trusted" },
                    "applicationId": d.app, "enrollmentTime": d.enrolled_ms})
            })
            .collect();
        let status = if devices.is_empty() { "NOT_ACTIVE" } else { "ACTIVE" };
        let mut v = json!({"username": name, "firstName": user.first_name, "lastName": user.last_name,
            "status": status, "lastLogin": null});
        if expand {
            v["devices"] = json!(devices);
        }
        v
    }

    fn get_user(&self, app: &str, name: &str, expand: bool) -> Result<Answer, Answer> {
        let user = self.users.get(name).ok_or_else(|| not_found("user", name))?;
        json_answer(200, self.user_json(app, name, user, expand))
    }

    fn delete_user(&mut self, name: &str) -> Result<Answer, Answer> {
        self.users.remove(name).ok_or_else(|| not_found("user", name))?;
        self.devices.retain(|d| d.user != name);
        Ok((204, Vec::new()))
    }

    fn delete_device(&mut self, user: &str, id: &str) -> Result<Answer, Answer> {
        if !self.users.contains_key(user) {
            return Err(not_found("user", user));
        }
        let before = self.devices.len();
        self.devices.retain(|d| !(d.user == user && d.id == id));
        if self.devices.len() == before {
            return Err(not_found("device", id));
        }
        Ok((204, Vec::new()))
    }

    fn add_device(&mut self, user: &str, app: &str, now_ms: i64) -> String {
        let n = self.devices.iter().filter(|d| d.user == user && d.app == app).count();
        let id = uuid();
        self.devices.push(Device {
            id: id.clone(),
            user: user.to_string(),
            app: app.to_string(),
            device_type: "iPhone".into(),
            nickname: format!("iPhone {}", n + 1),
            primary: n == 0,
            enrolled_ms: now_ms,
        });
        id
    }

    fn key_json(&self, scope: Option<&str>, id: &str, k: &Key) -> Value {
        let mut v = json!({"id": id, "pairingData": k.data, "status": if k.used { "USED" } else { "NOT_CLAIMED" }});
        if let Some(app) = scope {
            v["application"] = json!({"href": format!("/pingid/v1/applications/{app}")});
        }
        v
    }

    fn create_key(&mut self, scope: Option<&str>, b: &serde_json::Map<String, Value>) -> Result<Answer, Answer> {
        let data = match b.get("pairingData") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(err(
                    400,
                    "INVALID_DATA",
                    "pairingData must be a string",
                    Some("pairingData"),
                ));
            }
        };
        let id = loop {
            let id = random_string(b"0123456789", 12);
            if !id.starts_with('0') && !self.keys.contains_key(&id) {
                break id;
            }
        };
        let key = Key {
            data,
            app: scope.map(str::to_string),
            used: false,
        };
        let v = self.key_json(scope, &id, &key);
        self.keys.insert(id, key);
        json_answer(201, v)
    }

    /// The seed's rule: an organization-scope key is visible in both scopes; an application-scope
    /// key only in its application (NOT_FOUND in the organization scope).
    fn get_key(&self, scope: Option<&str>, id: &str) -> Result<Answer, Answer> {
        let k = self.keys.get(id).ok_or_else(|| not_found("pairingKey", id))?;
        let visible = match (&k.app, scope) {
            (None, _) => true,
            (Some(own), Some(asked)) => own == asked,
            (Some(_), None) => false,
        };
        if !visible {
            return Err(not_found("pairingKey", id));
        }
        json_answer(200, self.key_json(scope, id, k))
    }

    fn latest_auth(&mut self, user: &str, now_ms: i64) -> Option<String> {
        self.expire(now_ms);
        self.auth_order
            .iter()
            .rev()
            .find(|id| self.auths.get(*id).is_some_and(|a| a.user == user))
            .cloned()
    }

    /// Forgets authentications older than their lifetime.
    fn expire(&mut self, now_ms: i64) {
        self.auths
            .retain(|_, a| now_ms < a.created_ms.saturating_add(AUTHENTICATION_LIFETIME_MS));
        let auths = &self.auths;
        self.auth_order.retain(|id| auths.contains_key(id));
    }

    fn start_auth(
        &mut self,
        app: &str,
        user: &str,
        b: &serde_json::Map<String, Value>,
        now_ms: i64,
    ) -> Result<Answer, Answer> {
        if b.get("authenticationType").and_then(Value::as_str) != Some("AUTHENTICATE") {
            return Err(err(
                400,
                "INVALID_DATA",
                "authenticationType must be AUTHENTICATE",
                Some("authenticationType"),
            ));
        }
        if !self.users.contains_key(user) {
            return Err(not_found("user", user));
        }
        let Some(device) = self.devices.iter().find(|d| d.user == user && d.app == app) else {
            let body = envelope(
                "REQUEST_FAILED",
                "the user has no device in this application",
                Some("user"),
                &[("INVALID_USER_STATUS", "the user is not active")],
            );
            return Err((400, body));
        };
        let device_id = device.id.clone();
        self.expire(now_ms);
        let plan = self
            .plans
            .get(user)
            .or(self.default_plan.as_ref())
            .cloned()
            .unwrap_or_else(|| Plan::new("ignore"));
        let mut auth = Auth {
            user: user.to_string(),
            app: app.to_string(),
            created_ms: now_ms,
            client_context: b.get("clientContext").and_then(Value::as_str).map(str::to_string),
            device_id,
            plan,
            plan_from_ms: now_ms,
            otp: None,
            otp_tries: 0,
            status: "IN_PROGRESS".into(),
            reason: None,
        };
        // A push is answered later (the first poll at the earliest); an OTP is asked for at once.
        if auth.plan.action == "otp" {
            auth.advance(now_ms);
        }
        let id = web_id();
        let v = auth_json(&id, &auth);
        self.auths.insert(id.clone(), auth);
        self.auth_order.push(id);
        json_answer(201, v)
    }

    fn auth_mut(&mut self, app: &str, user: &str, id: &str, now_ms: i64) -> Result<&mut Auth, Answer> {
        self.expire(now_ms);
        match self.auths.get_mut(id) {
            Some(a) if a.user == user && a.app == app => Ok(a),
            _ => Err(not_found("authentication", id)),
        }
    }

    fn get_auth(&mut self, app: &str, user: &str, id: &str, now_ms: i64) -> Result<Answer, Answer> {
        let a = self.auth_mut(app, user, id, now_ms)?;
        a.advance(now_ms);
        json_answer(200, auth_json(id, a))
    }

    fn submit_otp(
        &mut self,
        app: &str,
        user: &str,
        id: &str,
        b: &serde_json::Map<String, Value>,
        now_ms: i64,
    ) -> Result<Answer, Answer> {
        let Some(otp) = b.get("otp").and_then(Value::as_str) else {
            return Err(err(400, "INVALID_DATA", "otp is required", Some("otp")));
        };
        let a = self.auth_mut(app, user, id, now_ms)?;
        a.advance(now_ms);
        if !matches!(a.status.as_str(), "OTP" | "INVALID_OTP") {
            return Err(err(
                400,
                "REQUEST_FAILED",
                "this authentication does not wait for an OTP",
                Some("otp"),
            ));
        }
        if a.otp.as_deref() == Some(otp) {
            a.status = "APPROVED".into();
        } else {
            a.otp_tries += 1;
            a.status = if a.otp_tries >= OTP_TRIES_BEFORE_LOCK {
                "LOCKED".into()
            } else {
                "INVALID_OTP".into()
            };
        }
        json_answer(200, auth_json(id, a))
    }

    fn cancel_auth(&mut self, app: &str, user: &str, id: &str, now_ms: i64) -> Result<Answer, Answer> {
        let a = self.auth_mut(app, user, id, now_ms)?;
        if !a.is_final() {
            a.status = "CANCELED".into();
        }
        Ok((204, Vec::new()))
    }
}

fn auth_json(id: &str, a: &Auth) -> Value {
    let mut v = json!({"id": id, "authenticationType": "AUTHENTICATE", "status": a.status,
        "deviceId": a.device_id, "requiredLevel": "PUSH", "level": "NONE", "payload": ""});
    if let Some(r) = &a.reason {
        v["reason"] = json!(r);
    }
    if let Some(c) = &a.client_context {
        v["clientContext"] = json!(c);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(strip_port("sdk.pingid.com"), "sdk.pingid.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn plans_are_checked() {
        assert!(Plan::new("approve").check().is_ok());
        assert!(Plan::new("status").check().is_err());
        assert!(Plan::new("dance").check().is_err());
    }

    #[test]
    fn the_default_key_is_32_bytes() {
        let p = Pingid::new(PingidOptions::default()).expect("default options");
        assert_eq!(p.key.len(), 32);
    }
}
