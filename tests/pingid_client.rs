//! The PingID client against the emulator's PingID side over real HTTP(S): every endpoint, the seed's
//! scope rules, signatures checked both ways, duplicate keys, and faults ending by the deadline.
//! The emulator verifies requests with its own code, so the client's signer is never checked
//! against itself.

use lockserver::config::Secret;
use lockserver::service::ServiceError;
use lockserver::service::pingid::{
    AuthStatus, ErrorCode, PairingKeyStatus, PairingScope, PingidClient, PingidError, PingidSettings, Reason,
    UserStatus,
};
use lockserver_emulator::pingid::OTHER_APPLICATION_ID;
use lockserver_emulator::{Emulator, Fault, Options, Plan, SignatureMode, TlsMode};
use std::time::{Duration, Instant};

fn settings(emu: &Emulator) -> PingidSettings {
    let o = emu.pingid_options();
    PingidSettings {
        account_id: o.account_id.clone(),
        application_id: o.applications[0].clone(),
        token: Secret::new(o.token.clone()),
        api_key: Secret::new(o.api_key_b64.clone()),
        url: format!("{}/pingid", emu.url()),
        pairing_scope: PairingScope::Application,
        require_response_signature: false,
        ca_file: None,
        proxy: None,
    }
}

fn client(emu: &Emulator) -> PingidClient {
    PingidClient::new(&settings(emu)).expect("client")
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn start() -> (Emulator, PingidClient) {
    let emu = Emulator::start(Options::default()).expect("emulator");
    let c = client(&emu);
    (emu, c)
}

#[test]
fn users_pairing_keys_and_devices() {
    let (emu, c) = start();
    assert_eq!(
        c.get_user("alice", soon()).expect("get"),
        None,
        "unknown user is None, not an error"
    );
    let user = c.create_user("alice", soon()).expect("create");
    assert_eq!(
        (user.username.as_str(), &user.status),
        ("alice", &UserStatus::NotActive)
    );
    match c.create_user("alice", soon()) {
        Err(PingidError::Api(e)) => {
            assert_eq!(e.code, ErrorCode::InvalidData);
            assert!(e.has_detail("UNIQUE_VALUE_REQUIRED"), "{e}");
        }
        other => panic!("{other:?}"),
    }

    // A key in the application scope, pairingData = the user name; the phone claims it.
    let key = c
        .create_pairing_key("alice", PairingScope::Application, soon())
        .expect("key");
    assert_eq!(
        (key.pairing_data.as_str(), &key.status),
        ("alice", &PairingKeyStatus::NotClaimed)
    );
    assert_eq!(
        c.pairing_key_status(&key.id, PairingScope::Application, soon())
            .expect("status"),
        PairingKeyStatus::NotClaimed
    );
    let (device, owner) = emu.pingid_claim(&key.id, None, None).expect("claim");
    assert_eq!(owner, "alice");
    assert_eq!(
        c.pairing_key_status(&key.id, PairingScope::Application, soon())
            .expect("status"),
        PairingKeyStatus::Used
    );
    let user = c.get_user("alice", soon()).expect("get").expect("exists");
    assert_eq!(user.status, UserStatus::Active);
    assert_eq!(user.devices.len(), 1);
    assert_eq!(user.devices[0].id, device);
    assert_eq!(user.devices[0].role, "Primary");

    // Devices: a second one here and one in another application; delete removes this app's only.
    emu.pingid_add_device("alice", None).expect("second device");
    let elsewhere = emu
        .pingid_add_device("alice", Some(OTHER_APPLICATION_ID))
        .expect("other app");
    assert_eq!(c.list_devices("alice", soon()).expect("list").len(), 2);
    assert_eq!(c.delete_devices("alice", soon()).expect("delete"), 2);
    assert!(c.list_devices("alice", soon()).expect("list").is_empty());
    assert_eq!(
        c.get_user("alice", soon()).expect("get").expect("exists").status,
        UserStatus::NotActive
    );
    let state = emu.state_json();
    let left: Vec<&str> = state["pingid"]["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(left, [elsewhere.as_str()], "the other application's device stays");
    // Deleting a device that is gone is the service's NOT_FOUND.
    match c.delete_device("alice", &device, soon()) {
        Err(PingidError::Api(e)) => assert!(e.is_not_found("device"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(c.list_devices("nobody", soon()).expect("list").is_empty());
}

#[test]
fn the_seed_scope_rules() {
    let (_emu, c) = start();
    let app_key = c
        .create_pairing_key("alice", PairingScope::Application, soon())
        .expect("app key");
    let org_key = c
        .create_pairing_key("yury", PairingScope::Organization, soon())
        .expect("org key");
    // An organization key is visible in both scopes.
    for scope in [PairingScope::Organization, PairingScope::Application] {
        assert_eq!(
            c.pairing_key_status(&org_key.id, scope, soon()).expect("status"),
            PairingKeyStatus::NotClaimed,
            "{scope:?}"
        );
    }
    // An application key is NOT_FOUND in the organization scope, with the service's message.
    assert_eq!(
        c.pairing_key_status(&app_key.id, PairingScope::Organization, soon())
            .expect("status"),
        PairingKeyStatus::NotFound {
            message: format!("pairingKey {} not found", app_key.id)
        }
    );
    // Another application of the same account does not see it either.
    let mut other = settings(&_emu);
    other.application_id = OTHER_APPLICATION_ID.into();
    let other = PingidClient::new(&other).expect("client");
    assert!(matches!(
        other.pairing_key_status(&app_key.id, PairingScope::Application, soon()),
        Ok(PairingKeyStatus::NotFound { .. })
    ));
    assert_eq!(
        other
            .pairing_key_status(&org_key.id, PairingScope::Application, soon())
            .expect("status"),
        PairingKeyStatus::NotClaimed
    );
    // A malformed key never reaches the wire.
    assert!(matches!(
        c.pairing_key_status("12/34", PairingScope::Application, soon()),
        Err(PingidError::Local(_))
    ));
}

fn paired(emu: &Emulator, c: &PingidClient, user: &str) {
    c.create_user(user, soon()).expect("create");
    emu.pingid_add_device(user, None).expect("device");
}

#[test]
fn push_authentications() {
    let (emu, c) = start();
    paired(&emu, &c, "alice");
    let a = c.start_authentication("alice", Some("sshd-op"), soon()).expect("start");
    assert_eq!(a.status, AuthStatus::InProgress);
    assert!(a.id.starts_with("webs_"));
    assert_eq!(
        emu.pingid_authentications(Some("alice"))[0]["client_context"],
        "sshd-op"
    );
    assert_eq!(
        c.authentication_status("alice", &a.id, soon()).expect("poll").status,
        AuthStatus::InProgress
    );
    emu.pingid_answer("alice", Plan::new("approve")).expect("answer");
    assert_eq!(
        c.authentication_status("alice", &a.id, soon()).expect("poll").status,
        AuthStatus::Approved
    );

    let mut rooted = Plan::new("reject");
    rooted.reason = Some("DEVICE_ROOTED".into());
    emu.pingid_plan(Some("alice"), rooted).expect("plan");
    let a = c.start_authentication("alice", None, soon()).expect("start");
    assert!(emu.pingid_authentications(Some("alice"))[1]["client_context"].is_null());
    let polled = c.authentication_status("alice", &a.id, soon()).expect("poll");
    assert_eq!(
        (polled.status, polled.reason),
        (AuthStatus::Rejected, Some(Reason::DeviceRooted))
    );

    for (plan, status) in [("timeout", AuthStatus::Timeout), ("ignore", AuthStatus::InProgress)] {
        emu.pingid_plan(Some("alice"), Plan::new(plan)).expect("plan");
        let a = c.start_authentication("alice", None, soon()).expect("start");
        assert_eq!(
            c.authentication_status("alice", &a.id, soon()).expect("poll").status,
            status,
            "{plan}"
        );
    }
    // Cancel: the pending one reads CANCELED.
    let a = c.start_authentication("alice", None, soon()).expect("start");
    c.cancel_authentication("alice", &a.id, soon()).expect("cancel");
    assert_eq!(
        c.authentication_status("alice", &a.id, soon()).expect("poll").status,
        AuthStatus::Canceled
    );

    // A user without a device: the service's REQUEST_FAILED / INVALID_USER_STATUS.
    c.create_user("bob", soon()).expect("create");
    match c.start_authentication("bob", None, soon()) {
        Err(PingidError::Api(e)) => assert!(e.has_detail("INVALID_USER_STATUS"), "{e}"),
        other => panic!("{other:?}"),
    }
    // An authentication the service no longer knows (30 minutes on; the emulator's own tests cover
    // the lifetime, a skewed clock here would expire the request JWT first).
    match c.authentication_status("alice", "webs_gone", soon()) {
        Err(PingidError::Api(e)) => assert!(e.is_not_found("authentication"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn otp_authentications() {
    let (emu, c) = start();
    paired(&emu, &c, "alice");
    let mut plan = Plan::new("otp");
    plan.otp = Some("654321".into());
    emu.pingid_plan(Some("alice"), plan).expect("plan");
    let a = c.start_authentication("alice", None, soon()).expect("start");
    assert_eq!(a.status, AuthStatus::Otp);
    assert_eq!(
        c.submit_otp("alice", &a.id, "111111", soon()).expect("otp").status,
        AuthStatus::InvalidOtp
    );
    assert_eq!(
        c.submit_otp("alice", &a.id, "654321", soon()).expect("otp").status,
        AuthStatus::Approved
    );
    // A code that cannot be one is refused before sending.
    for bad in ["", "12 34", "12\"}", &"1".repeat(33)] {
        assert!(
            matches!(c.submit_otp("alice", &a.id, bad, soon()), Err(PingidError::Local(_))),
            "{bad:?}"
        );
    }

    let a = c.start_authentication("alice", None, soon()).expect("start");
    let statuses: Vec<AuthStatus> = (0..5)
        .map(|_| c.submit_otp("alice", &a.id, "000000", soon()).expect("otp").status)
        .collect();
    assert_eq!(statuses.last(), Some(&AuthStatus::Locked));
    assert!(statuses[..4].iter().all(|s| *s == AuthStatus::InvalidOtp));
}

#[test]
fn bad_input_never_reaches_the_service() {
    let (emu, c) = start();
    let before = emu.request_count();
    for user in ["", "a b", "a/b", "../x", "é", "a?b", "a%2Fb"] {
        assert!(
            matches!(c.create_user(user, soon()), Err(PingidError::Local(_))),
            "{user:?}"
        );
        assert!(
            matches!(c.get_user(user, soon()), Err(PingidError::Local(_))),
            "{user:?}"
        );
        assert!(
            matches!(c.start_authentication(user, None, soon()), Err(PingidError::Local(_))),
            "{user:?}"
        );
    }
    assert!(matches!(
        c.authentication_status("alice", "x/../y", soon()),
        Err(PingidError::Local(_))
    ));
    assert_eq!(emu.request_count(), before, "nothing was sent");
    // A refused user name denies whatever fail_mode says.
    assert!(matches!(
        ServiceError::from(c.get_user("a b", soon()).unwrap_err()),
        ServiceError::Misconfigured { .. }
    ));
}

#[test]
fn the_service_refuses_a_wrong_request_signature() {
    let emu = Emulator::start(Options::default()).expect("emulator");
    let wrong_key = PingidSettings {
        api_key: Secret::new("d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMDA="),
        ..settings(&emu)
    };
    let wrong_token = PingidSettings {
        token: Secret::new("another-token"),
        ..settings(&emu)
    };
    // A wrong token: the service's signed UNAUTHORIZED_REQ, a misconfiguration (denied whatever
    // fail_mode says).
    let e = PingidClient::new(&wrong_token)
        .expect("client")
        .get_user("alice", soon())
        .unwrap_err();
    let PingidError::Api(api) = &e else { panic!("{e:?}") };
    assert_eq!((&api.code, api.http_status), (&ErrorCode::UnauthorizedReq, 401));
    assert!(matches!(
        ServiceError::from(e),
        ServiceError::Misconfigured { code: 401, .. }
    ));
    // A wrong key: the 401 does not verify with that key either, and the error says which key.
    let e = PingidClient::new(&wrong_key)
        .expect("client")
        .get_user("alice", soon())
        .unwrap_err();
    assert!(
        matches!(&e, PingidError::BadSignature(why) if why.contains("api_key")),
        "{e:?}"
    );
    assert!(matches!(ServiceError::from(e), ServiceError::Misconfigured { .. }));
    // The URL-safe, unpadded form of the right key signs the same.
    let o = emu.pingid_options();
    let url_safe = o
        .api_key_b64
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let s = PingidSettings {
        api_key: Secret::new(url_safe),
        ..settings(&emu)
    };
    assert_eq!(
        PingidClient::new(&s)
            .expect("client")
            .get_user("alice", soon())
            .expect("get"),
        None
    );
}

#[test]
fn the_client_checks_response_signatures() {
    let (emu, c) = start();
    // The sample's spelling is accepted.
    emu.pingid_set_signature(SignatureMode::SampleSpelling);
    assert_eq!(c.get_user("alice", soon()).expect("sample spelling"), None);
    // Wrong key, or a signature over another body: refused, a misconfiguration.
    for mode in [SignatureMode::BadKey, SignatureMode::BadBody] {
        emu.pingid_set_signature(mode);
        let e = c.get_user("alice", soon()).unwrap_err();
        assert!(matches!(e, PingidError::BadSignature(_)), "{mode:?}: {e:?}");
        assert!(matches!(ServiceError::from(e), ServiceError::Misconfigured { .. }));
        // Also on the error envelope and on 204 answers.
        assert!(matches!(
            c.pairing_key_status("123456789012", PairingScope::Application, soon()),
            Err(PingidError::BadSignature(_))
        ));
    }
    // Missing: accepted by default, refused when required — except for a 5xx, still an outage.
    emu.pingid_set_signature(SignatureMode::None);
    assert_eq!(c.get_user("alice", soon()).expect("unsigned accepted"), None);
    let strict = PingidClient::new(&PingidSettings {
        require_response_signature: true,
        ..settings(&emu)
    })
    .expect("client");
    assert!(matches!(
        strict.get_user("alice", soon()),
        Err(PingidError::BadSignature(_))
    ));
    emu.set_fault_times(Fault::Http500, 1);
    assert!(matches!(
        strict.get_user("alice", soon()),
        Err(PingidError::Unavailable(_))
    ));
    emu.pingid_set_signature(SignatureMode::Good);
    assert_eq!(strict.get_user("alice", soon()).expect("signed"), None);
}

#[test]
fn duplicate_keys_are_incoherent_in_either_order() {
    let (emu, c) = start();
    paired(&emu, &c, "alice");
    let a = c.start_authentication("alice", None, soon()).expect("start");
    for body in [
        format!(r#"{{"id":"{}","status":"REJECTED","status":"APPROVED"}}"#, a.id),
        format!(r#"{{"id":"{}","status":"APPROVED","status":"REJECTED"}}"#, a.id),
    ] {
        emu.pingid_set_raw(200, &body, 1);
        match c.authentication_status("alice", &a.id, soon()) {
            Err(PingidError::Unavailable(why)) => assert!(why.contains("repeats a key"), "{why}"),
            other => panic!("{body}: {other:?}"),
        }
    }
    // An unknown status is not guessed at either.
    emu.pingid_set_raw(200, &format!(r#"{{"id":"{}","status":"MAYBE"}}"#, a.id), 1);
    assert!(matches!(
        c.authentication_status("alice", &a.id, soon()),
        Err(PingidError::Unavailable(_))
    ));
    // A 4xx without an envelope is an outage, not an answer.
    emu.pingid_set_raw(400, "{}", 1);
    assert!(matches!(
        c.authentication_status("alice", &a.id, soon()),
        Err(PingidError::Unavailable(_))
    ));
}

#[test]
fn faults_end_by_the_deadline() {
    let (emu, c) = start();
    paired(&emu, &c, "alice");
    let faults = [
        Fault::Hang {
            max: Duration::from_secs(30),
        },
        Fault::Slow {
            delay: Duration::from_secs(5),
        },
        Fault::Trickle {
            delay: Duration::from_millis(100),
        },
        Fault::Refuse,
        Fault::Close,
        Fault::Http500,
        Fault::Garbage,
        Fault::Huge {
            size: 8 << 20,
            chunked: false,
        },
        Fault::Huge {
            size: 8 << 20,
            chunked: true,
        },
    ];
    for fault in faults {
        emu.set_fault(fault.clone());
        let budget = Duration::from_millis(700);
        let start = Instant::now();
        let result = c.start_authentication("alice", None, start + budget);
        let took = start.elapsed();
        assert!(
            matches!(result, Err(PingidError::Unavailable(_))),
            "{fault:?}: {result:?}"
        );
        assert!(took < budget + Duration::from_millis(500), "{fault:?} took {took:?}");
    }
    emu.set_fault(Fault::None);
    // A deadline already past fails at once, without a request.
    let before = emu.request_count();
    assert!(matches!(
        c.get_user("alice", Instant::now()),
        Err(PingidError::Unavailable(_))
    ));
    assert_eq!(emu.request_count(), before);
}

#[test]
fn https_with_ca_file() {
    let emu = Emulator::start(Options {
        tls: Some(TlsMode::SelfSigned),
        ..Options::default()
    })
    .expect("emulator");
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem().expect("ca")).expect("write ca");
    let trusted = PingidClient::new(&PingidSettings {
        ca_file: Some(ca),
        ..settings(&emu)
    })
    .expect("client");
    assert_eq!(trusted.get_user("alice", soon()).expect("https"), None);
    // Without the CA the certificate is refused: an outage, never an answer.
    let untrusted = client(&emu);
    assert!(matches!(
        untrusted.get_user("alice", soon()),
        Err(PingidError::Unavailable(_))
    ));
}
