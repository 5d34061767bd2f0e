//! The Latch API over real HTTP: signatures, pairing, status, two-factor tokens, TOTP, control API.

mod common;

use common::{Conn, now_secs};
use lockserver_emulator::{AppConfig, Emulator, Options, QrMode, sign, totp};
use serde_json::json;

const OP: &str = "OperationId000000001";

fn start() -> Emulator {
    let mut o = Options::default();
    o.apps[0].operations.push(OP.into());
    Emulator::start(o).expect("start")
}

#[test]
fn signature_errors() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let mut c = Conn::open(emu.addr());
    let path = "/api/3.0/status/nobody";
    let date = sign::format_date(now_secs());

    // 103: no Authorization header.
    let r = c.request("GET", path, &[("X-11Paths-Date", &date)], b"");
    assert_eq!((r.status, r.error_code()), (200, Some(103)));
    assert_eq!(r.json()["error"]["message"], "Authorization header missing");

    // 101: bad format.
    for bad in ["11PATHS onlyid", "Basic abc def", "11PATHS  a b", "11PATHS a b c"] {
        let r = c.request("GET", path, &[("Authorization", bad), ("X-11Paths-Date", &date)], b"");
        assert_eq!(r.error_code(), Some(101), "{bad}");
    }

    // 104: no date.
    let sts = sign::string_to_sign("GET", &date, "", path, "");
    let auth = sign::authorization_header(app.0, app.1, &sts);
    let r = c.request("GET", path, &[("Authorization", &auth)], b"");
    assert_eq!(r.error_code(), Some(104));

    // 108: bad date format (signed with that value).
    let r = c.latch_at(app, "GET", path, &[], "2015-02-15T14:53:00Z");
    assert_eq!(r.error_code(), Some(108));

    // 109: outside the ±300 s window, both sides.
    let r = c.latch_at(app, "GET", path, &[], &sign::format_date(now_secs() - 400));
    assert_eq!(r.error_code(), Some(109));
    assert_eq!(r.json()["error"]["message"], "Request expired, date is too old");
    let r = c.latch_at(app, "GET", path, &[], &sign::format_date(now_secs() + 400));
    assert_eq!(r.error_code(), Some(109));
    let r = c.latch_at(app, "GET", path, &[], &sign::format_date(now_secs() - 200));
    assert_eq!(
        r.error_code(),
        Some(201),
        "inside the window the signature is fine and the account unknown"
    );

    // 102: wrong secret, unknown app, tampered path, tampered body.
    let r = c.latch((app.0, "WrongSecretWrongSecretWrongSecretWrong00"), "GET", path, &[]);
    assert_eq!(r.error_code(), Some(102));
    assert_eq!(r.json()["error"]["message"], "Invalid application signature");
    let r = c.latch(("UnknownAppId00000000", app.1), "GET", path, &[]);
    assert_eq!(r.error_code(), Some(102));
    let sts = sign::string_to_sign("GET", &date, "", "/api/3.0/status/other", "");
    let auth = sign::authorization_header(app.0, app.1, &sts);
    let r = c.request("GET", path, &[("Authorization", &auth), ("X-11Paths-Date", &date)], b"");
    assert_eq!(r.error_code(), Some(102));
    let sts = sign::string_to_sign("POST", &date, "", "/api/3.0/totps", "userId=a");
    let auth = sign::authorization_header(app.0, app.1, &sts);
    let r = c.request(
        "POST",
        "/api/3.0/totps",
        &[
            ("Authorization", &auth),
            ("X-11Paths-Date", &date),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"userId=b",
    );
    assert_eq!(r.error_code(), Some(102));

    // Window is configurable and clock skew moves the emulator's clock.
    emu.set_window_secs(10);
    let r = c.latch_at(app, "GET", path, &[], &sign::format_date(now_secs() - 60));
    assert_eq!(r.error_code(), Some(109));
    emu.set_window_secs(300);
    emu.set_clock_skew(3600);
    assert_eq!(c.latch(app, "GET", path, &[]).error_code(), Some(109));
    emu.set_clock_skew(0);
    assert_eq!(c.latch(app, "GET", path, &[]).error_code(), Some(201));
}

#[test]
fn signed_x_headers_and_multivalued_params_are_accepted() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let mut c = Conn::open(emu.addr());
    let code = emu.add_code(Some("Q2W3E4")).expect("code");
    let date = sign::format_date(now_secs());
    let path = format!("/api/1.0/pair/{code}");
    let xh = sign::serialize_x_headers([("X-11paths-B", "Test value"), ("X-11paths-A", "x")]);
    let params = sign::serialize_params(&[("B", "B"), ("B", "A"), ("commonName", "Jo Doe")]);
    let sts = sign::string_to_sign("POST", &date, &xh, &path, &params);
    let auth = sign::authorization_header(app.0, app.1, &sts);
    let body = "commonName=Jo+Doe&B=B&B=A"; // any order on the wire; the server re-serializes
    let r = c.request(
        "POST",
        &path,
        &[
            ("Authorization", &auth),
            ("X-11Paths-Date", &date),
            ("X-11paths-B", "Test value"),
            ("X-11paths-A", "x"),
            ("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8"),
        ],
        body.as_bytes(),
    );
    assert_eq!(
        r.json()["data"]["accountId"].as_str().map(str::len),
        Some(64),
        "{:?}",
        r.json()
    );
    let st = emu.state_json();
    let acc = r.json()["data"]["accountId"].as_str().expect("id").to_string();
    assert_eq!(st["accounts"][&acc]["common_name"], "Jo Doe");
}

#[test]
fn pair_status_unpair_flow() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let mut c = Conn::open(emu.addr());

    // Register a code through the control API.
    let r = c.control("POST", "/_emulator/codes", json!({"code": "ABC234", "user": "alice"}));
    assert_eq!(r.status, 200);
    let expected_account = r.json()["account"].as_str().expect("account").to_string();
    assert_eq!(expected_account, emu.account_id_for("alice"));

    let r = c.latch(app, "GET", "/api/3.0/pair/ABC234", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let acc = r.json()["data"]["accountId"].as_str().expect("accountId").to_string();
    assert_eq!(acc, expected_account);
    assert_eq!(acc.len(), 64);

    // Used code: 206. Same user again with a new code: 205. Unknown code: 206.
    let r = c.latch(app, "GET", "/api/3.0/pair/ABC234", &[]);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 206, "message": "Token not found or expired"}})
    );
    emu.add_code_for(Some("DEF234"), "alice").expect("code");
    let r = c.latch(app, "POST", "/api/3.0/pair/DEF234", &[("commonName", "Alice")]);
    assert_eq!(r.error_code(), Some(205));
    assert_eq!(r.json()["error"]["message"], "Account and application already paired");
    let r = c.latch(app, "GET", "/api/3.0/pair/ZZZZZZ", &[]);
    assert_eq!(r.error_code(), Some(206));
    // Expired code.
    let code = emu.add_code_with_ttl(None, std::time::Duration::ZERO).expect("code");
    assert_eq!(
        c.latch(app, "GET", &format!("/api/3.0/pair/{code}"), &[]).error_code(),
        Some(206)
    );

    // Status: app-wide and per operation, default on.
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.json(), json!({"data": {"operations": {app.0: {"status": "on"}}}}));
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/{OP}/nootp/silent"), &[]);
    assert_eq!(r.json(), json!({"data": {"operations": {OP: {"status": "on"}}}}));
    let r = c.latch(
        app,
        "GET",
        &format!("/api/3.0/status/{acc}/op/UnknownOperation0000"),
        &[],
    );
    assert_eq!(
        r.json(),
        json!({"error": {"code": 301, "message": "Application or Operation not found"}})
    );
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/bogus"), &[]);
    assert_eq!(r.status, 404);

    // Close the operation's latch via the control API: the op is off, the app still on.
    let r = c.control(
        "POST",
        "/_emulator/latch",
        json!({"account": acc, "operation": OP, "status": "off"}),
    );
    assert_eq!(r.status, 200);
    let r = c.latch(app, "POST", &format!("/api/3.0/status/{acc}/op/{OP}"), &[]);
    assert_eq!(r.json()["data"]["operations"][OP]["status"], "off");
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.json()["data"]["operations"][app.0]["status"], "on");
    // Close the app latch: every operation reads off.
    emu.set_latch(&acc, Some(OP), true).expect("latch");
    emu.set_latch(&acc, None, false).expect("latch");
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/{OP}"), &[]);
    assert_eq!(r.json()["data"]["operations"][OP]["status"], "off");
    // lock/unlock endpoints.
    let r = c.latch(app, "POST", &format!("/api/3.0/unlock/{acc}"), &[]);
    assert_eq!(r.json(), json!({}));
    let r = c.latch(app, "GET", &format!("/api/2.0/status/{acc}"), &[]);
    assert_eq!(r.json()["data"]["operations"][app.0]["status"], "on");

    // Control API errors.
    let r = c.control("POST", "/_emulator/latch", json!({"account": "nope", "status": "off"}));
    assert_eq!(r.status, 400);
    let r = c.control("POST", "/_emulator/latch", json!({"account": acc, "status": "maybe"}));
    assert_eq!(r.status, 400);
    let r = c.control(
        "POST",
        "/_emulator/latch",
        json!({"account": acc, "operation": "Unknown", "status": "on"}),
    );
    assert_eq!(r.status, 400);

    // Unpair, then the account is gone.
    let r = c.latch(app, "GET", &format!("/api/3.0/unpair/{acc}"), &[]);
    assert_eq!(r.json(), json!({}));
    let r = c.latch(app, "GET", &format!("/api/3.0/unpair/{acc}"), &[]);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 201, "message": "Account not paired"}})
    );
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.error_code(), Some(201));

    // A random code from the control API pairs a fresh account.
    let r = c.control("POST", "/_emulator/codes", serde_json::Value::Null);
    let code = r.json()["code"].as_str().expect("code").to_string();
    assert_eq!(code.len(), 6);
    assert!(!code.contains(['S', '5', 'l', '1', '0', 'O']));
    let r = c.latch(app, "GET", &format!("/api/3.0/pair/{code}"), &[]);
    assert_eq!(r.json()["data"]["accountId"].as_str().map(str::len), Some(64));

    // Request count covers API requests only.
    let n = emu.request_count();
    let r = c.control("GET", "/_emulator/requests", serde_json::Value::Null);
    assert_eq!(r.json()["count"].as_u64(), Some(n));
    assert!(n >= 15);
}

#[test]
fn two_factor_tokens() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let mut c = Conn::open(emu.addr());
    let acc = emu.pair("bob").expect("pair");

    let r = c.control(
        "POST",
        "/_emulator/otp",
        json!({"account": acc, "operation": OP, "required": true}),
    );
    assert_eq!(r.status, 200);
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/{OP}"), &[]);
    let tf = &r.json()["data"]["operations"][OP]["two_factor"];
    let token = tf["token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), 6);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
    let generated = tf["generated"].as_i64().expect("generated");
    assert!((generated / 1000 - now_secs()).abs() < 5);
    assert_eq!(emu.last_otp(&acc, Some(OP)).as_deref(), Some(token.as_str()));
    let r = c.control(
        "GET",
        &format!("/_emulator/otp?account={acc}&operation={OP}"),
        serde_json::Value::Null,
    );
    assert_eq!(r.json()["token"], token);

    // A fresh token every time.
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/{OP}"), &[]);
    let token2 = r.json()["data"]["operations"][OP]["two_factor"]["token"]
        .as_str()
        .expect("t")
        .to_string();
    assert_eq!(emu.last_otp(&acc, Some(OP)).as_deref(), Some(token2.as_str()));

    // nootp: none; app-level status: none (only the op requires it).
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/{OP}/nootp"), &[]);
    assert_eq!(r.json(), json!({"data": {"operations": {OP: {"status": "on"}}}}));
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert!(r.json()["data"]["operations"][app.0].get("two_factor").is_none());

    // POST with otp: that token is used.
    let r = c.latch(
        app,
        "POST",
        &format!("/api/3.0/status/{acc}/op/{OP}"),
        &[("otp", "MyTok9"), ("msg", "hi")],
    );
    assert_eq!(r.json()["data"]["operations"][OP]["two_factor"]["token"], "MyTok9");

    // Latch off: no token.
    emu.set_latch(&acc, Some(OP), false).expect("latch");
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/{OP}"), &[]);
    assert_eq!(r.json(), json!({"data": {"operations": {OP: {"status": "off"}}}}));

    // App-level requirement.
    emu.require_otp(&acc, None, true).expect("otp");
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert!(r.json()["data"]["operations"][app.0]["two_factor"]["token"].is_string());
    emu.require_otp(&acc, None, false).expect("otp");
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert!(r.json()["data"]["operations"][app.0].get("two_factor").is_none());
}

fn secret_from_uri(uri: &str) -> Vec<u8> {
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let q = uri.split_once('?').expect("query").1;
    let s = q.split('&').find_map(|kv| kv.strip_prefix("secret=")).expect("secret");
    data_encoding::BASE32_NOPAD.decode(s.as_bytes()).expect("base32")
}

fn decode_png_qr(png_bytes: &[u8]) -> String {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = dec.read_info().expect("png info");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().expect("decode").1
}

#[test]
fn totp_endpoints() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let mut c = Conn::open(emu.addr());

    // URI mode.
    emu.set_qr_mode(QrMode::Uri);
    let r = c.latch(
        app,
        "POST",
        "/api/3.0/totps",
        &[("userId", "user@example.com"), ("commonName", "John Doe")],
    );
    let data = &r.json()["data"];
    let id = data["totpId"].as_str().expect("totpId").to_string();
    let uri = data["qr"].as_str().expect("qr").to_string();
    let key = secret_from_uri(&uri);
    assert_eq!(key.len(), 20);
    assert_eq!(
        data_encoding::BASE32_NOPAD.encode(&key),
        emu.totp_secret(&id).expect("secret")
    );
    let r = c.control("GET", &format!("/_emulator/totp?id={id}"), serde_json::Value::Null);
    assert_eq!(r.json()["secret"].as_str(), emu.totp_secret(&id).as_deref());
    let r = c.control(
        "GET",
        "/_emulator/totp?user=user%40example.com",
        serde_json::Value::Null,
    );
    assert_eq!(r.json()["id"], id);

    // Validate: right code, neighbour step, wrong code, missing code.
    let code = totp::totp(&key, now_secs(), 6);
    let r = c.latch(
        app,
        "POST",
        &format!("/api/3.0/totps/{id}/validate"),
        &[("code", &code)],
    );
    assert_eq!((r.status, r.json()), (200, json!({})));
    let prev = totp::totp(&key, now_secs() - 30, 6);
    let r = c.latch(
        app,
        "POST",
        &format!("/api/3.0/totps/{id}/validate"),
        &[("code", &prev)],
    );
    assert_eq!(r.json(), json!({}));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = c.latch(
        app,
        "POST",
        &format!("/api/3.0/totps/{id}/validate"),
        &[("code", wrong)],
    );
    assert_eq!(
        r.json(),
        json!({"error": {"code": 306, "message": "Invalid totp code"}})
    );
    let r = c.latch(app, "POST", &format!("/api/3.0/totps/{id}/validate"), &[]);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 401, "message": "Missing parameter in API call"}})
    );
    let r = c.latch(app, "POST", "/api/3.0/totps", &[("commonName", "x")]);
    assert_eq!(r.error_code(), Some(401));

    // Get.
    let r = c.latch(app, "GET", &format!("/api/3.0/totps/{id}"), &[]);
    assert_eq!(r.json()["data"]["totpId"], id);
    assert_eq!(r.json()["data"]["qr"], uri);

    // PNG mode: a data URI whose QR holds the otpauth URI.
    emu.set_qr_mode(QrMode::Png);
    let r = c.latch(app, "GET", &format!("/api/3.0/totps/{id}"), &[]);
    let qr = r.json()["data"]["qr"].as_str().expect("qr").to_string();
    let b64 = qr.strip_prefix("data:image/png;base64,").expect("data uri");
    let png_bytes = data_encoding::BASE64.decode(b64.as_bytes()).expect("base64");
    assert_eq!(decode_png_qr(&png_bytes), uri);

    // Delete: 204 empty, then unknown id.
    let r = c.latch(app, "DELETE", &format!("/api/3.0/totps/{id}"), &[]);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = c.latch(app, "DELETE", &format!("/api/3.0/totps/{id}"), &[]);
    assert_eq!(r.error_code(), Some(301));
    let r = c.latch(
        app,
        "POST",
        &format!("/api/3.0/totps/{id}/validate"),
        &[("code", &code)],
    );
    assert_eq!(r.error_code(), Some(301));
    let r = c.latch(app, "GET", &format!("/api/3.0/totps/{id}"), &[]);
    assert_eq!(r.error_code(), Some(301));
    // The connection survived every answer, including the 204.
    assert_eq!(c.latch(app, "GET", "/api/3.0/status/x", &[]).error_code(), Some(201));
}

#[test]
fn injected_errors_reset_and_state() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let mut c = Conn::open(emu.addr());
    let acc = emu.pair("carol").expect("pair");
    let r = c.control("POST", "/_emulator/error", json!({"code": 109}));
    assert_eq!(r.status, 200);
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 109, "message": "Request expired, date is too old"}})
    );
    c.control(
        "POST",
        "/_emulator/error",
        json!({"code": 704, "message": "Limit reached"}),
    );
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.json(), json!({"error": {"code": 704, "message": "Limit reached"}}));
    // Even unsigned requests get it.
    let r = c.request("GET", "/api/3.0/status/x", &[], b"");
    assert_eq!(r.error_code(), Some(704));
    c.control("POST", "/_emulator/error", json!({"code": 0}));
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.json()["data"]["operations"][app.0]["status"], "on");

    let st = c.control("GET", "/_emulator/state", serde_json::Value::Null).json();
    assert_eq!(st["accounts"][&acc]["user"], "carol");
    assert_eq!(st["operations"][app.0], json!([OP]));
    assert!(st["requests"].as_u64().expect("n") >= 4);

    let r = c.control("POST", "/_emulator/reset", serde_json::Value::Null);
    assert_eq!(r.status, 200);
    assert_eq!(emu.request_count(), 0);
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.error_code(), Some(201));
    assert_eq!(emu.request_count(), 1);

    // Control API input errors.
    assert_eq!(
        c.control("POST", "/_emulator/fault", json!({"mode": "explode"})).status,
        400
    );
    assert_eq!(
        c.control("POST", "/_emulator/codes", json!({"code": "a/b"})).status,
        400
    );
    assert_eq!(c.control("POST", "/_emulator/codes", json!({"bogus": 1})).status, 400);
    let r = c.request("POST", "/_emulator/latch", &[], b"{not json");
    assert_eq!(r.status, 400);
    assert_eq!(
        c.control("GET", "/_emulator/nothing", serde_json::Value::Null).status,
        404
    );
    assert_eq!(
        c.control("GET", "/_emulator/totp?id=none", serde_json::Value::Null)
            .status,
        404
    );
    // Operations can be added at run time.
    assert_eq!(
        c.control("POST", "/_emulator/operation", json!({"operation": "Op2"}))
            .status,
        200
    );
    let acc = emu.pair("dave").expect("pair");
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}/op/Op2"), &[]);
    assert_eq!(r.json()["data"]["operations"]["Op2"]["status"], "on");
    let r = c.latch(app, "GET", "/api/3.0/operation", &[]);
    assert!(r.json()["data"]["operations"]["Op2"].is_object());
}

#[test]
fn several_apps_are_isolated() {
    let mut o = Options::default();
    o.apps.push(AppConfig {
        id: "SecondAppId000000002".into(),
        secret: "s".repeat(40),
        operations: vec![],
    });
    let emu = Emulator::start(o).expect("start");
    let a1 = (emu.app_id(), emu.secret());
    let secret2 = "s".repeat(40);
    let a2 = ("SecondAppId000000002", secret2.as_str());
    let mut c = Conn::open(emu.addr());
    let acc = emu.pair("erin").expect("pair");
    assert_eq!(
        c.latch(a2, "GET", &format!("/api/3.0/status/{acc}"), &[]).error_code(),
        Some(201)
    );
    assert!(c.latch(a1, "GET", &format!("/api/3.0/status/{acc}"), &[]).json()["data"].is_object());
    let r = c.control(
        "POST",
        "/_emulator/codes",
        json!({"user": "erin", "app": "SecondAppId000000002"}),
    );
    let code = r.json()["code"].as_str().expect("code").to_string();
    let acc2 = r.json()["account"].as_str().expect("account").to_string();
    let r = c.latch(a2, "GET", &format!("/api/3.0/pair/{code}"), &[]);
    assert_eq!(r.json()["data"]["accountId"], acc2);
    assert_ne!(acc, acc2);
}

#[test]
fn http_framing() {
    let emu = start();
    let app = (emu.app_id(), emu.secret());

    // Many requests on one keep-alive connection.
    let mut c = Conn::open(emu.addr());
    for _ in 0..50 {
        assert_eq!(c.latch(app, "GET", "/api/3.0/status/x", &[]).error_code(), Some(201));
    }

    // Pipelined requests.
    let mut c = Conn::open(emu.addr());
    c.send_raw(b"GET /_emulator/requests HTTP/1.1\r\n\r\nGET /_emulator/requests HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_response().expect("1").status, 200);
    assert_eq!(c.read_response().expect("2").status, 200);

    // Connection: close and HTTP/1.0 close after the answer.
    let mut c = Conn::open(emu.addr());
    let r = c.request("GET", "/_emulator/requests", &[("Connection", "close")], b"");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.read_response().is_none());
    let mut c = Conn::open(emu.addr());
    c.send_raw(b"GET /_emulator/requests HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().expect("resp").status, 200);
    assert!(c.read_response().is_none());

    // Expect: 100-continue.
    let mut c = Conn::open(emu.addr());
    c.send_raw(b"POST /_emulator/codes HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 17\r\n\r\n");
    assert_eq!(c.read_response().expect("100").status, 100);
    c.send_raw(br#"{"code":"XY2346"}"#);
    let r = c.read_response().expect("resp");
    assert_eq!(r.json()["code"], "XY2346");

    // Malformed requests get 4xx and the server keeps serving.
    for raw in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"\xff\xfe\r\n\r\n",
    ] {
        let mut c = Conn::open(emu.addr());
        c.send_raw(raw);
        let r = c.read_response().expect("error response");
        assert!((400..=505).contains(&r.status), "{}", r.status);
        assert!(c.read_response().is_none());
    }
    let mut c = Conn::open(emu.addr());
    c.send_raw(format!("POST /api/3.0/totps HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 2 << 20).as_bytes());
    assert_eq!(c.read_response().expect("413").status, 413);

    // Unknown paths: 404 JSON, with or without /api prefix.
    let mut c = Conn::open(emu.addr());
    let r = c.request("GET", "/", &[], b"");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_object());
    let r = c.latch(app, "GET", "/api/3.0/nothing/here", &[]);
    assert_eq!(r.status, 404);
    let r = c.latch(app, "GET", "/api/x.y/status/a", &[]);
    assert_eq!(r.status, 404);
    let r = c.latch(app, "PUT", "/api/3.0/status/a", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn drop_stops_listening() {
    let emu = start();
    let addr = emu.addr();
    let mut c = Conn::open(addr);
    assert_eq!(c.request("GET", "/_emulator/requests", &[], b"").status, 200);
    drop(emu);
    // The open connection is closed and new ones are refused.
    assert!(c.read_response().is_none());
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn random_and_mutated_input_never_kills_the_server() {
    use std::io::{Read, Write};
    let emu = start();
    let app = (emu.app_id(), emu.secret());
    let acc = emu.pair("fuzz").expect("pair");
    let date = sign::format_date(now_secs());
    let path = format!("/api/3.0/status/{acc}/op/{OP}");
    let sts = sign::string_to_sign("POST", &date, "", &path, "otp=abc");
    let auth = sign::authorization_header(app.0, app.1, &sts);
    let valid = format!(
        "POST {path} HTTP/1.1\r\nAuthorization: {auth}\r\nX-11Paths-Date: {date}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\notp=abc"
    )
    .into_bytes();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let mut input = valid.clone();
        if i % 3 == 0 {
            input = (0..(rnd() % 300)).map(|_| rnd() as u8).collect();
        } else {
            for _ in 0..(1 + rnd() % 6) {
                let at = (rnd() as usize) % input.len();
                match rnd() % 3 {
                    0 => input[at] = rnd() as u8,
                    1 => {
                        input.remove(at);
                    }
                    _ => input.insert(at, rnd() as u8),
                }
            }
        }
        let mut s = std::net::TcpStream::connect(emu.addr()).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .expect("timeout");
        let _ = s.write_all(&input);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        if !sink.is_empty() {
            assert!(sink.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&sink));
        }
    }
    let mut c = Conn::open(emu.addr());
    let r = c.latch(app, "GET", &format!("/api/3.0/status/{acc}"), &[]);
    assert_eq!(r.json()["data"]["operations"][app.0]["status"], "on");
}
