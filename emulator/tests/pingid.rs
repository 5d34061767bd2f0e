//! The PingID SDK side over real HTTP: the JWT checks, signed answers, users, devices, pairing keys
//! in both scopes (the seed's NOT_FOUND rule), authentications scripted through the control API,
//! faults, and `--service`.

mod common;

use common::{Conn, Response, now_secs};
use lockserver_emulator::pingid::{OTHER_APPLICATION_ID, jwt};
use lockserver_emulator::{Emulator, Fault, Options, Plan, Services, SignatureMode, sign};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Pid {
    emu: Emulator,
    key: Vec<u8>,
    /// `expires` of the JWTs signed, in seconds from now (the emulator's clock may be skewed).
    expires_in: std::cell::Cell<i64>,
}

impl Pid {
    fn start() -> Pid {
        Pid::with(Options::default())
    }

    fn with(o: Options) -> Pid {
        let emu = Emulator::start(o).expect("start");
        let key = data_encoding::BASE64
            .decode(emu.pingid_options().api_key_b64.as_bytes())
            .expect("key");
        Pid {
            emu,
            key,
            expires_in: std::cell::Cell::new(300),
        }
    }

    fn acc(&self) -> String {
        self.emu.pingid_options().account_id.clone()
    }

    fn app(&self) -> String {
        self.emu.pingid_options().applications[0].clone()
    }

    fn app_path(&self) -> String {
        format!("/pingid/v1/accounts/{}/applications/{}", self.acc(), self.app())
    }

    fn expires(secs_from_now: i64) -> String {
        sign::format_date(now_secs() + secs_from_now).replacen(' ', "T", 1) + "Z"
    }

    /// A request signed for `Host: localhost`, with `extra` JWT header fields.
    fn auth(&self, method: &str, target: &str, body: &[u8], extra: &[(&str, Value)]) -> String {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let signed = jwt::Signed {
            method,
            host: "localhost",
            path,
            query,
            body,
        };
        let o = self.emu.pingid_options();
        jwt::sign_request(
            &self.key,
            &o.account_id,
            &o.token,
            &signed,
            Some(&Pid::expires(self.expires_in.get())),
            extra,
        )
    }

    fn call(&self, c: &mut Conn, method: &str, target: &str, body: &Value) -> Response {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let auth = self.auth(method, target, &bytes, &[]);
        c.request(
            method,
            target,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            &bytes,
        )
    }

    /// The answer's signature, as the emulator must have made it.
    fn assert_signed(&self, r: &Response) {
        let o = self.emu.pingid_options();
        let expected = jwt::sign_response(&self.key, &o.account_id, &o.token, &r.body);
        assert_eq!(
            r.header("X-PINGID-Signature"),
            Some(expected.as_str()),
            "signature of {:?}",
            r.status
        );
    }

    /// Creates `user` and pairs a device in the default application.
    fn active_user(&self, c: &mut Conn, user: &str) {
        let r = self.call(
            c,
            "POST",
            &format!("/pingid/v1/accounts/{}/users", self.acc()),
            &json!({"username": user}),
        );
        assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
        self.emu.pingid_add_device(user, None).expect("device");
    }

    fn start_auth(&self, c: &mut Conn, user: &str) -> Value {
        let r = self.call(
            c,
            "POST",
            &format!("{}/users/{user}/authentications", self.app_path()),
            &json!({"authenticationType": "AUTHENTICATE", "clientContext": "sshd"}),
        );
        assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    fn poll(&self, c: &mut Conn, user: &str, id: &str) -> Value {
        let r = self.call(
            c,
            "GET",
            &format!("{}/users/{user}/authentications/{id}", self.app_path()),
            &Value::Null,
        );
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        r.json()
    }
}

fn assert_unauthorized(r: &Response, why: &str) {
    assert_eq!(r.status, 401, "{why}: {:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["code"], "UNAUTHORIZED_REQ", "{why}");
    assert!(v["id"].as_str().is_some_and(|i| i.starts_with("webs_")), "{why}");
}

#[test]
fn the_jwt_is_checked_exactly() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    let target = format!("{}/users/nobody?expand=devices", p.app_path());
    // Correct: the user is unknown, so NOT_FOUND — the signature passed.
    let r = p.call(&mut c, "GET", &target, &Value::Null);
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(r.json()["target"], "user");
    p.assert_signed(&r);

    // No Authorization, or not PINGID-HMAC.
    assert_unauthorized(&c.request("GET", &target, &[], b""), "no header");
    let auth = p.auth("GET", &target, b"", &[]);
    let bare = auth.trim_start_matches("PINGID-HMAC=");
    assert_unauthorized(&c.request("GET", &target, &[("Authorization", bare)], b""), "no prefix");
    assert_unauthorized(
        &c.request("GET", &target, &[("Authorization", &format!("Bearer {bare}"))], b""),
        "other scheme",
    );

    // Signed for another target: without the query, with another query, another method.
    let path_only = target.split('?').next().unwrap_or_default().to_string();
    for (method, signed_target) in [
        ("GET", path_only.as_str()),
        ("GET", &format!("{path_only}?expand=x")),
        ("DELETE", &target),
    ] {
        let auth = p.auth(method, signed_target, b"", &[]);
        assert_unauthorized(
            &c.request("GET", &target, &[("Authorization", &auth)], b""),
            signed_target,
        );
    }
    // The query is signed too: signed without one, sent with one.
    let auth = p.auth("GET", &path_only, b"", &[]);
    assert_unauthorized(
        &c.request("GET", &target, &[("Authorization", &auth)], b""),
        "query added",
    );
    let r = c.request("GET", &path_only, &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 404, "the same request without the query passes");

    // Body: signed over one body, another sent.
    let users = format!("/pingid/v1/accounts/{}/users", p.acc());
    let auth = p.auth("POST", &users, br#"{"username":"a"}"#, &[]);
    let r = c.request("POST", &users, &[("Authorization", &auth)], br#"{"username":"b"}"#);
    assert_unauthorized(&r, "tampered body");
    let r = c.request("POST", &users, &[("Authorization", &auth)], br#"{"username":"a"}"#);
    assert_eq!(r.status, 201, "the exact body passes");

    // Header fields: each wrong value, an unknown field, an expired JWT.
    for (field, value) in [
        ("alg", json!("none")),
        ("typ", json!("JWS")),
        ("jwt_version", json!("v3")),
        ("account_id", json!("another-account")),
        ("token", json!("another-token")),
        ("expires", json!(Pid::expires(-10))),
        ("expires", json!("tomorrow")),
        ("kid", json!("1")),
    ] {
        let auth = p.auth("GET", &target, b"", &[(field, value.clone())]);
        assert_unauthorized(
            &c.request("GET", &target, &[("Authorization", &auth)], b""),
            &format!("{field}={value}"),
        );
    }
    // X-Request-ID is allowed (the Java sample sends one).
    let auth = p.auth(
        "GET",
        &target,
        b"",
        &[("X-Request-ID", json!("6f9619ff-8b86-d011-b42d-00c04fc964ff"))],
    );
    assert_eq!(c.request("GET", &target, &[("Authorization", &auth)], b"").status, 404);

    // Another key.
    let o = p.emu.pingid_options();
    let signed = jwt::Signed {
        method: "GET",
        host: "localhost",
        path: &path_only,
        query: Some("expand=devices"),
        body: b"",
    };
    let auth = jwt::sign_request(b"another key", &o.account_id, &o.token, &signed, None, &[]);
    assert_unauthorized(
        &c.request("GET", &target, &[("Authorization", &auth)], b""),
        "other key",
    );
    // Without expires (as Ping's Node client sends it) the JWT is fine.
    let auth = jwt::sign_request(&p.key, &o.account_id, &o.token, &signed, None, &[]);
    assert_eq!(c.request("GET", &target, &[("Authorization", &auth)], b"").status, 404);
    // Signed for another host.
    let other_host = jwt::Signed {
        host: "sdk.pingid.com",
        ..signed
    };
    let auth = jwt::sign_request(&p.key, &o.account_id, &o.token, &other_host, None, &[]);
    assert_unauthorized(
        &c.request("GET", &target, &[("Authorization", &auth)], b""),
        "other host",
    );
    // A 401 is signed too.
    p.assert_signed(&c.request("GET", &target, &[], b""));
}

#[test]
fn users_and_devices() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    let users = format!("/pingid/v1/accounts/{}/users", p.acc());
    let r = p.call(
        &mut c,
        "POST",
        &users,
        &json!({"username": "alice", "firstName": "", "lastName": ""}),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["status"], "NOT_ACTIVE");
    let r = p.call(&mut c, "POST", &users, &json!({"username": "alice"}));
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("INVALID_DATA")));
    assert_eq!(r.json()["details"][0]["code"], "UNIQUE_VALUE_REQUIRED");
    let r = p.call(&mut c, "POST", &users, &json!({"username": ""}));
    assert_eq!(r.status, 400);
    let r = p.call(&mut c, "POST", &users, &json!("not an object"));
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("INVALID_REQUEST")));

    let get = format!("{}/users/alice?expand=devices", p.app_path());
    let device = p.emu.pingid_add_device("alice", None).expect("device");
    let v = p.call(&mut c, "GET", &get, &Value::Null).json();
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["devices"][0]["id"], device.as_str());
    assert_eq!(v["devices"][0]["deviceRole"], "Primary");
    assert_eq!(v["devices"][0]["applicationId"], p.app().as_str());
    // Without expand, no devices; in the other application, not active.
    let v = p
        .call(&mut c, "GET", &format!("{}/users/alice", p.app_path()), &Value::Null)
        .json();
    assert!(v.get("devices").is_none());
    let other = format!(
        "/pingid/v1/accounts/{}/applications/{OTHER_APPLICATION_ID}/users/alice?expand=devices",
        p.acc()
    );
    let v = p.call(&mut c, "GET", &other, &Value::Null).json();
    assert_eq!(
        (v["status"].as_str(), v["devices"].as_array().map(Vec::len)),
        (Some("NOT_ACTIVE"), Some(0))
    );
    // Unknown application.
    let r = p.call(
        &mut c,
        "GET",
        &format!("/pingid/v1/accounts/{}/applications/nope/users/alice", p.acc()),
        &Value::Null,
    );
    assert_eq!((r.status, r.json()["target"].as_str()), (404, Some("application")));

    let del = format!("/pingid/v1/accounts/{}/users/alice/devices/{device}", p.acc());
    let r = p.call(&mut c, "DELETE", &del, &Value::Null);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    p.assert_signed(&r);
    assert_eq!(p.call(&mut c, "DELETE", &del, &Value::Null).status, 404);
    assert_eq!(p.call(&mut c, "GET", &get, &Value::Null).json()["status"], "NOT_ACTIVE");
}

#[test]
fn pairing_keys_follow_the_seed_scope_rules() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    let app_keys = format!("{}/pairingkeys", p.app_path());
    let org_keys = format!("/pingid/v1/accounts/{}/pairingkeys", p.acc());
    let other_keys = format!(
        "/pingid/v1/accounts/{}/applications/{OTHER_APPLICATION_ID}/pairingkeys",
        p.acc()
    );

    let r = p.call(
        &mut c,
        "POST",
        &app_keys,
        &json!({"pairingData": "[\"john.smith\", \"dagny.taggart\"]"}),
    );
    assert_eq!(r.status, 201);
    let app_key = r.json();
    assert_eq!(app_key["status"], "NOT_CLAIMED");
    assert_eq!(app_key["pairingData"], "[\"john.smith\", \"dagny.taggart\"]");
    let app_key = app_key["id"].as_str().expect("id").to_string();
    assert!(
        app_key.len() == 12 && app_key.bytes().all(|b| b.is_ascii_digit()),
        "{app_key}"
    );

    let org_key = p
        .call(&mut c, "POST", &org_keys, &json!({"pairingData": "yury"}))
        .json();
    let org_key = org_key["id"].as_str().expect("id").to_string();

    // Application-scope key: visible in its application only; NOT_FOUND in the organization scope.
    assert_eq!(
        p.call(&mut c, "GET", &format!("{app_keys}/{app_key}"), &Value::Null)
            .json()["status"],
        "NOT_CLAIMED"
    );
    let r = p.call(&mut c, "GET", &format!("{org_keys}/{app_key}"), &Value::Null);
    assert_eq!(r.status, 404);
    let v = r.json();
    assert_eq!(v["code"], "NOT_FOUND");
    assert_eq!(v["target"], "pairingKey");
    assert_eq!(v["message"], format!("pairingKey {app_key} not found"));
    assert_eq!(v["details"], json!([]));
    assert!(v["id"].as_str().is_some_and(|i| i.starts_with("webs_")));
    p.assert_signed(&r);
    assert_eq!(
        p.call(&mut c, "GET", &format!("{other_keys}/{app_key}"), &Value::Null)
            .status,
        404
    );

    // Organization-scope key: visible in both scopes (and every application).
    for base in [&org_keys, &app_keys, &other_keys] {
        let v = p.call(&mut c, "GET", &format!("{base}/{org_key}"), &Value::Null).json();
        assert_eq!(
            (v["status"].as_str(), v["pairingData"].as_str()),
            (Some("NOT_CLAIMED"), Some("yury")),
            "{base}"
        );
    }
    assert_eq!(
        p.call(&mut c, "GET", &format!("{org_keys}/999999999999"), &Value::Null)
            .status,
        404
    );

    // The phone claims: a device for the user named in pairingData, the key is USED.
    p.emu.pingid_add_user("yury").expect("user");
    assert!(
        p.emu
            .pingid_claim(&app_key, Some("yury"), Some(OTHER_APPLICATION_ID))
            .is_err(),
        "another app's key"
    );
    let (device, user) = p.emu.pingid_claim(&org_key, None, None).expect("claim");
    assert_eq!(user, "yury");
    assert!(p.emu.pingid_claim(&org_key, None, None).is_err(), "single use");
    assert_eq!(
        p.call(&mut c, "GET", &format!("{org_keys}/{org_key}"), &Value::Null)
            .json()["status"],
        "USED"
    );
    let v = p
        .call(
            &mut c,
            "GET",
            &format!("{}/users/yury?expand=devices", p.app_path()),
            &Value::Null,
        )
        .json();
    assert_eq!(
        (v["status"].as_str(), v["devices"][0]["id"].as_str()),
        (Some("ACTIVE"), Some(device.as_str()))
    );
    // A key naming a user that does not exist cannot be claimed.
    let k = p
        .call(&mut c, "POST", &app_keys, &json!({"pairingData": "ghost"}))
        .json();
    assert!(
        p.emu
            .pingid_claim(k["id"].as_str().unwrap_or_default(), None, None)
            .is_err()
    );
}

#[test]
fn authentications_follow_the_plan() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    p.active_user(&mut c, "alice");

    // No plan: the phone has not answered.
    let a = p.start_auth(&mut c, "alice");
    assert_eq!(a["status"], "IN_PROGRESS");
    assert_eq!(a["clientContext"], "sshd");
    let id = a["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("webs_"));
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "IN_PROGRESS");
    // Answered from the "phone" now.
    p.emu.pingid_answer("alice", Plan::new("approve")).expect("answer");
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "APPROVED");
    assert!(
        p.emu.pingid_answer("alice", Plan::new("reject")).is_err(),
        "nothing pending"
    );
    assert_eq!(p.emu.pingid_authentications(Some("alice"))[0]["client_context"], "sshd");

    // Planned ahead: reject with a reason, timeout, any final status.
    let mut reject = Plan::new("reject");
    reject.reason = Some("DEVICE_ROOTED".into());
    p.emu.pingid_plan(Some("alice"), reject).expect("plan");
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let v = p.poll(&mut c, "alice", &id);
    assert_eq!(
        (v["status"].as_str(), v["reason"].as_str()),
        (Some("REJECTED"), Some("DEVICE_ROOTED"))
    );
    for (plan, status) in [(Plan::new("timeout"), "TIMEOUT"), (Plan::new("ignore"), "IN_PROGRESS")] {
        p.emu.pingid_plan(Some("alice"), plan).expect("plan");
        let id = p.start_auth(&mut c, "alice")["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(p.poll(&mut c, "alice", &id)["status"], status);
    }
    let mut ignored = Plan::new("status");
    ignored.status = Some("IGNORED_DEVICE".into());
    p.emu.pingid_plan(Some("alice"), ignored).expect("plan");
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "IGNORED_DEVICE");

    // Approve after 1 s: pending before, approved after.
    p.emu
        .pingid_plan(Some("alice"), Plan::new("approve").after(1))
        .expect("plan");
    let started = Instant::now();
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "IN_PROGRESS");
    while p.poll(&mut c, "alice", &id)["status"] == "IN_PROGRESS" {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "APPROVED");

    // Cancel: DELETE, then the status reads CANCELED.
    p.emu.pingid_plan(Some("alice"), Plan::new("ignore")).expect("plan");
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("{}/users/alice/authentications/{id}", p.app_path());
    assert_eq!(p.call(&mut c, "DELETE", &path, &Value::Null).status, 204);
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "CANCELED");

    // Another user's authentication is not found under alice; unknown users and users without a
    // device cannot authenticate; the type is required.
    let users = format!("/pingid/v1/accounts/{}/users", p.acc());
    p.call(&mut c, "POST", &users, &json!({"username": "bob"}));
    let auths = format!("{}/users/bob/authentications", p.app_path());
    let r = p.call(&mut c, "POST", &auths, &json!({"authenticationType": "AUTHENTICATE"}));
    assert_eq!(
        (r.status, r.json()["details"][0]["code"].as_str()),
        (400, Some("INVALID_USER_STATUS"))
    );
    let r = p.call(
        &mut c,
        "POST",
        &format!("{}/users/carol/authentications", p.app_path()),
        &json!({"authenticationType": "AUTHENTICATE"}),
    );
    assert_eq!((r.status, r.json()["target"].as_str()), (404, Some("user")));
    let r = p.call(
        &mut c,
        "POST",
        &format!("{}/users/alice/authentications", p.app_path()),
        &json!({}),
    );
    assert_eq!(r.status, 400);
    let r = p.call(
        &mut c,
        "GET",
        &format!("{}/users/bob/authentications/{id}", p.app_path()),
        &Value::Null,
    );
    assert_eq!((r.status, r.json()["target"].as_str()), (404, Some("authentication")));
}

#[test]
fn otp_right_wrong_and_locked() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    p.active_user(&mut c, "alice");
    let mut plan = Plan::new("otp");
    plan.otp = Some("123456".into());
    p.emu.pingid_plan(Some("alice"), plan).expect("plan");
    let a = p.start_auth(&mut c, "alice");
    assert_eq!(a["status"], "OTP");
    let id = a["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(p.emu.pingid_otp("alice").as_deref(), Some("123456"));
    let otp_path = format!("{}/users/alice/authentications/{id}/otp", p.app_path());
    let r = p.call(&mut c, "PUT", &otp_path, &json!({"otp": "000000"}));
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("INVALID_OTP")));
    p.assert_signed(&r);
    let r = p.call(&mut c, "PUT", &otp_path, &json!({"otp": "123456"}));
    assert_eq!(r.json()["status"], "APPROVED");
    assert_eq!(
        p.call(&mut c, "PUT", &otp_path, &json!({"otp": "123456"})).status,
        400,
        "no longer waits"
    );

    // A random code by default (read from the control API); five wrong ones lock.
    p.emu.pingid_plan(Some("alice"), Plan::new("otp")).expect("plan");
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let right = p.emu.pingid_otp("alice").expect("otp");
    assert!(right.len() == 6 && right.bytes().all(|b| b.is_ascii_digit()));
    let otp_path = format!("{}/users/alice/authentications/{id}/otp", p.app_path());
    let wrong = if right == "111111" { "222222" } else { "111111" };
    let statuses: Vec<String> = (0..5)
        .map(|_| {
            p.call(&mut c, "PUT", &otp_path, &json!({"otp": wrong})).json()["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["INVALID_OTP", "INVALID_OTP", "INVALID_OTP", "INVALID_OTP", "LOCKED"]
    );
    assert_eq!(p.call(&mut c, "PUT", &otp_path, &json!({"otp": right})).status, 400);

    // A push-only authentication does not take an OTP.
    p.emu.pingid_plan(Some("alice"), Plan::new("ignore")).expect("plan");
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let otp_path = format!("{}/users/alice/authentications/{id}/otp", p.app_path());
    assert_eq!(p.call(&mut c, "PUT", &otp_path, &json!({"otp": "123456"})).status, 400);
}

#[test]
fn authentications_live_30_minutes() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    p.active_user(&mut c, "alice");
    let id = p.start_auth(&mut c, "alice")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    p.expires_in.set(2 * 3600);
    p.emu.set_clock_skew(29 * 60);
    assert_eq!(p.poll(&mut c, "alice", &id)["status"], "IN_PROGRESS");
    p.emu.set_clock_skew(30 * 60 + 1);
    let r = p.call(
        &mut c,
        "GET",
        &format!("{}/users/alice/authentications/{id}", p.app_path()),
        &Value::Null,
    );
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("NOT_FOUND")));
}

#[test]
fn signature_modes() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    let target = format!("{}/users/nobody", p.app_path());
    p.emu.pingid_set_signature(SignatureMode::SampleSpelling);
    let r = p.call(&mut c, "GET", &target, &Value::Null);
    assert!(r.header("X-PINGID-Signature").is_none());
    let o = p.emu.pingid_options();
    assert_eq!(
        r.header("X-PINGID-Singature"),
        Some(jwt::sign_response(&p.key, &o.account_id, &o.token, &r.body).as_str())
    );
    p.emu.pingid_set_signature(SignatureMode::None);
    let r = p.call(&mut c, "GET", &target, &Value::Null);
    assert!(r.header("X-PINGID-Signature").is_none() && r.header("X-PINGID-Singature").is_none());
    for mode in [SignatureMode::BadKey, SignatureMode::BadBody] {
        p.emu.pingid_set_signature(mode);
        let r = p.call(&mut c, "GET", &target, &Value::Null);
        let right = jwt::sign_response(&p.key, &o.account_id, &o.token, &r.body);
        let got = r.header("X-PINGID-Signature").expect("a signature");
        assert_ne!(got, right, "{mode:?}");
    }
    // Raw answers are signed like any other.
    p.emu.pingid_set_signature(SignatureMode::Good);
    p.emu
        .pingid_set_raw(200, r#"{"status":"APPROVED","status":"REJECTED"}"#, 1);
    let r = p.call(&mut c, "GET", &target, &Value::Null);
    assert_eq!(r.body, br#"{"status":"APPROVED","status":"REJECTED"}"#);
    p.assert_signed(&r);
    assert_eq!(p.call(&mut c, "GET", &target, &Value::Null).status, 404, "count 1");
}

#[test]
fn faults_apply_to_pingid_and_the_control_api_plays_the_phone() {
    let p = Pid::start();
    let mut c = Conn::open(p.emu.addr());
    let target = format!("{}/users/nobody", p.app_path());
    p.emu.set_fault_times(Fault::Http500, 1);
    let r = p.call(&mut c, "GET", &target, &Value::Null);
    assert_eq!(r.status, 500);
    assert!(
        r.header("X-PINGID-Signature").is_none(),
        "a 500 from the fault is unsigned, like a proxy's"
    );
    p.emu.set_fault_times(
        Fault::Slow {
            delay: Duration::from_millis(300),
        },
        1,
    );
    let t = Instant::now();
    assert_eq!(p.call(&mut c, "GET", &target, &Value::Null).status, 404);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // The same scripting over HTTP.
    let ctl = |c: &mut Conn, method: &str, what: &str, body: Value| {
        c.control(method, &format!("/_emulator/pingid/{what}"), body)
    };
    assert_eq!(ctl(&mut c, "POST", "users", json!({"username": "dave"})).status, 200);
    let key = p
        .call(
            &mut c,
            "POST",
            &format!("{}/pairingkeys", p.app_path()),
            &json!({"pairingData": "dave"}),
        )
        .json();
    let r = ctl(&mut c, "POST", "claim", json!({"key": key["id"]}));
    assert_eq!((r.status, r.json()["user"].as_str()), (200, Some("dave")));
    assert_eq!(
        ctl(
            &mut c,
            "POST",
            "plan",
            json!({"user": "dave", "action": "otp", "otp": "424242"})
        )
        .status,
        200
    );
    assert_eq!(
        ctl(&mut c, "POST", "plan", json!({"user": "dave", "action": "dance"})).status,
        400
    );
    assert_eq!(
        ctl(
            &mut c,
            "POST",
            "plan",
            json!({"user": "dave", "action": "otp", "otp": "424242"})
        )
        .status,
        200
    );
    let id = p.start_auth(&mut c, "dave")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = c.control("GET", "/_emulator/pingid/otp?user=dave", Value::Null);
    assert_eq!(
        (r.json()["otp"].as_str(), r.json()["id"].as_str()),
        (Some("424242"), Some(id.as_str()))
    );
    let r = ctl(&mut c, "POST", "answer", json!({"user": "dave", "action": "reject"}));
    assert_eq!(r.status, 200);
    assert_eq!(p.poll(&mut c, "dave", &id)["status"], "REJECTED");
    let r = c.control("GET", "/_emulator/pingid/authentications?user=dave", Value::Null);
    assert_eq!(r.json()[0]["client_context"], "sshd");
    assert_eq!(ctl(&mut c, "POST", "signature", json!({"mode": "none"})).status, 200);
    assert_eq!(ctl(&mut c, "POST", "signature", json!({"mode": "nope"})).status, 400);
    let state = c.control("GET", "/_emulator/state", Value::Null).json();
    assert_eq!(state["pingid"]["users"], json!(["dave"]));
    c.control("POST", "/_emulator/reset", Value::Null);
    let state = c.control("GET", "/_emulator/state", Value::Null).json();
    assert_eq!(state["pingid"]["users"], json!([]));
}

#[test]
fn services_can_be_served_alone() {
    let latch_only = Pid::with(Options {
        services: Services {
            latch: true,
            pingid: false,
        },
        ..Options::default()
    });
    let mut c = Conn::open(latch_only.emu.addr());
    let r = latch_only.call(
        &mut c,
        "GET",
        &format!("{}/users/x", latch_only.app_path()),
        &Value::Null,
    );
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("NOT_FOUND")));
    assert!(r.header("X-PINGID-Signature").is_none());

    let pingid_only = Pid::with(Options {
        services: Services {
            latch: false,
            pingid: true,
        },
        ..Options::default()
    });
    let mut c = Conn::open(pingid_only.emu.addr());
    let app = (pingid_only.emu.app_id(), pingid_only.emu.secret());
    assert_eq!(c.latch(app, "GET", "/api/3.0/status/x", &[]).status, 404);
    let r = pingid_only.call(
        &mut c,
        "GET",
        &format!("{}/users/x", pingid_only.app_path()),
        &Value::Null,
    );
    assert_eq!((r.status, r.json()["target"].as_str()), (404, Some("user")));
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_serves_pingid_alone_with_the_given_account() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let key_b64 = data_encoding::BASE64.encode(b"a key given on the command line");
    let child = Command::new(env!("CARGO_BIN_EXE_lockserver-emulator"))
        .args([
            "--service",
            "pingid",
            "--pingid-account",
            "acc-1",
            "--pingid-token",
            "tok-1",
        ])
        .args(["--pingid-api-key", &key_b64, "--pingid-app", "app-1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = Kill(child);
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let addr = line
        .trim_end()
        .strip_prefix("listening http://")
        .expect("listening line")
        .to_string();
    let mut c = Conn::open(addr.parse().expect("addr"));
    let st = c.control("GET", "/_emulator/state", Value::Null).json();
    assert_eq!(st["pingid"]["account_id"], "acc-1");
    assert_eq!(st["pingid"]["applications"], json!(["app-1"]));
    assert_eq!(
        c.control("POST", "/_emulator/pingid/users", json!({"username": "alice"}))
            .status,
        200
    );

    let target = "/pingid/v1/accounts/acc-1/applications/app-1/users/alice";
    let signed = jwt::Signed {
        method: "GET",
        host: "localhost",
        path: target,
        query: None,
        body: b"",
    };
    let key = data_encoding::BASE64.decode(key_b64.as_bytes()).expect("key");
    let auth = jwt::sign_request(&key, "acc-1", "tok-1", &signed, None, &[]);
    let r = c.request("GET", target, &[("Authorization", &auth)], b"");
    assert_eq!((r.status, r.json()["username"].as_str()), (200, Some("alice")));
    assert_eq!(
        r.header("X-PINGID-Signature"),
        Some(jwt::sign_response(&key, "acc-1", "tok-1", &r.body).as_str())
    );
    // Latch is not served.
    assert_eq!(
        c.latch(
            ("LatchEmulatorApp0001", "emulatorsecretemulatorsecretemulator0000"),
            "GET",
            "/api/3.0/status/x",
            &[]
        )
        .status,
        404
    );

    // A key that is not base64 stops the start with a message.
    let out = Command::new(env!("CARGO_BIN_EXE_lockserver-emulator"))
        .args(["--pingid-api-key", "not base64!"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("base64"));
}
