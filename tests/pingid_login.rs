//! PingID at login, through the real libpam and the module against the emulator's PingID side
//! (which checks every request's JWT with its own code and signs its answers): push approved,
//! rejected, unanswered (cancelled), one-time codes, the account phase, operations as the push's
//! clientContext, outages under `fail_mode`, and answers that prove a misconfiguration.

#[allow(unused_imports)]
mod common;

use common::pam_driver::{
    PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_MAXTRIES, PAM_PERM_DENIED, PAM_SERVICE_ERR, PAM_SUCCESS,
};
use common::{Env, Style, Transcript, timed};
use lockserver::store::PendingPairing;
use lockserver_emulator::{Fault, Plan, SignatureMode};
use std::time::{Duration, Instant};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

const APPROVE_TEXT: &str = "Approve the login on your phone";
const REJECTED_TEXT: &str = "the login was rejected on your phone";
const TIMEOUT_TEXT: &str = "the phone did not answer in time";
const OTP_PROMPT: &str = "Verification code";
const INVALID_OTP_TEXT: &str = "The verification code is not right";
const KEYBOARD_TEXT: &str = "keyboard-interactive";

fn plan(env: &Env, user: &str, plan: Plan) {
    env.emu
        .pingid_plan(Some(user), plan)
        .expect("emulator: set the phone's plan");
}

fn otp_plan(code: &str) -> Plan {
    Plan {
        otp: Some(code.into()),
        ..Plan::new("otp")
    }
}

/// The emulator's authentications of `user`: (status, client_context).
fn authentications(env: &Env, user: &str) -> Vec<(String, Option<String>)> {
    env.emu
        .pingid_authentications(Some(user))
        .iter()
        .map(|a| {
            (
                a["status"].as_str().unwrap_or_default().to_string(),
                a["client_context"].as_str().map(String::from),
            )
        })
        .collect()
}

fn assert_code(env: &Env, code: i32, want: i32, t: &Transcript, what: &str) {
    assert_eq!(
        code,
        want,
        "{what}: got {code}, want {want}; transcript {t:?}; log:\n{}",
        env.logs.lines().join("\n")
    );
}

fn auth(env: &Env, svc: &str, user: &str, answers: &[&str], want: i32, what: &str) -> (Transcript, Duration) {
    let mut s = env.session(svc, user);
    let ((code, t), took) = timed(|| s.authenticate(answers));
    assert_code(env, code, want, &t, &format!("auth: {what}"));
    (t, took)
}

fn account(env: &Env, svc: &str, user: &str, want: i32, what: &str) -> Transcript {
    let mut s = env.session(svc, user);
    let (code, t) = s.acct_mgmt();
    assert_code(env, code, want, &t, &format!("account: {what}"));
    assert!(
        t.prompts().is_empty(),
        "account: {what}: the account phase prompted: {t:?}"
    );
    t
}

#[test]
fn push_approved_lets_in_after_telling_the_user() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("approve").after(1));
    let (t, took) = auth(&env, &svc, "alice", &[], PAM_SUCCESS, "approved after 1 s");
    assert!(
        t.has(Style::Info, APPROVE_TEXT),
        "told to approve (PAM_TEXT_INFO): {t:?}"
    );
    assert!(t.prompts().is_empty(), "a push needs no prompt: {t:?}");
    assert!(took >= Duration::from_millis(900), "it waited for the phone: {took:?}");
    assert_eq!(authentications(&env, "alice")[0].0, "APPROVED");
    env.logs.expect_line(&["user=alice", "access granted"]);
}

#[test]
fn push_rejected_is_refused_with_the_dictionary_text() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("reject"));
    let (t, _) = auth(&env, &svc, "alice", &[], PAM_AUTH_ERR, "rejected");
    assert!(t.has(Style::Error, REJECTED_TEXT), "{t:?}");
}

#[test]
fn every_refusing_status_has_its_own_text() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    let cases = [
        ("IGNORED_DEVICE", None, "set to ignore this request"),
        ("BYPASSED_DEVICE", None, "bypass mode"),
        ("CANCELED", None, "cancelled"),
        ("OTP_IS_BLOCKED", None, "blocked"),
        ("LOCKED", None, "PingID account is locked"),
        ("REJECTED", Some("DEVICE_ROOTED"), "rooted"),
        ("TIMEOUT", None, TIMEOUT_TEXT),
    ];
    for (status, reason, text) in cases {
        plan(
            &env,
            "alice",
            Plan {
                status: Some(status.into()),
                reason: reason.map(String::from),
                ..Plan::new("status")
            },
        );
        let (t, _) = auth(&env, &svc, "alice", &[], PAM_AUTH_ERR, status);
        assert!(t.has(Style::Error, text), "{status}: {t:?}");
    }
}

#[test]
fn no_answer_is_refused_in_time_and_the_authentication_cancelled() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("ignore"));
    let (t, took) = auth(&env, &svc, "alice", &[], PAM_AUTH_ERR, "no answer");
    assert!(t.has(Style::Error, TIMEOUT_TEXT), "{t:?}");
    let push_timeout = Duration::from_secs(env.conf.push_timeout_secs);
    assert!(
        took >= push_timeout && took <= push_timeout + Duration::from_secs(1),
        "refused after push_timeout_secs, within 1 s more: {took:?}"
    );
    assert_eq!(
        authentications(&env, "alice")[0].0,
        "CANCELED",
        "the unanswered authentication is withdrawn (DELETE)"
    );
}

#[test]
fn otp_right_lets_in_wrong_ones_end_at_max_attempts() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");

    plan(&env, "alice", otp_plan("246810"));
    let (t, _) = auth(&env, &svc, "alice", &["246810"], PAM_SUCCESS, "right code");
    let prompts = t.prompts();
    assert_eq!(prompts.len(), 1, "{t:?}");
    assert_eq!(prompts[0].style, Style::EchoOff, "the code is not echoed");
    assert!(prompts[0].text.contains(OTP_PROMPT), "{t:?}");

    plan(&env, "alice", otp_plan("246810"));
    let (t, _) = auth(
        &env,
        &svc,
        "alice",
        &["111111", "1 2", "222222"],
        PAM_MAXTRIES,
        "three wrong codes",
    );
    assert_eq!(t.prompts().len(), 3, "max_attempts = 3: {t:?}");
    assert_eq!(
        t.0.iter().filter(|m| m.text.contains(INVALID_OTP_TEXT)).count(),
        3,
        "each wrong code is told: {t:?}"
    );
}

#[test]
fn otp_locked_at_the_service_ends_the_prompts_at_once() {
    let mut env = Env::pingid();
    env.set_conf(|c| c.max_attempts = 10);
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", otp_plan("246810"));
    // The emulator locks after 5 wrong codes: the sixth prompt never comes.
    let wrong = ["100000", "200000", "300000", "400000", "500000", "600000", "700000"];
    let (t, _) = auth(&env, &svc, "alice", &wrong, PAM_MAXTRIES, "locked after 5");
    assert_eq!(t.prompts().len(), 5, "{t:?}");
    assert!(t.has(Style::Error, "PingID account is locked"), "{t:?}");
}

#[test]
fn account_phase_pushes_without_prompting_and_refuses_otp_only() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("approve"));
    let t = account(&env, &svc, "alice", PAM_SUCCESS, "key-only login, approved");
    assert!(t.has(Style::Info, APPROVE_TEXT), "{t:?}");

    plan(&env, "alice", Plan::new("reject"));
    account(&env, &svc, "alice", PAM_PERM_DENIED, "key-only login, rejected");

    plan(&env, "alice", otp_plan("246810"));
    let t = account(&env, &svc, "alice", PAM_PERM_DENIED, "key-only login, OTP asked");
    assert!(t.has(Style::Error, KEYBOARD_TEXT), "{t:?}");
}

#[test]
fn account_after_an_approved_auth_does_not_push_again() {
    let env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("approve"));
    let mut s = env.session(&svc, "alice");
    let (code, t) = s.authenticate(&[]);
    assert_code(&env, code, PAM_SUCCESS, &t, "auth");
    let (code, t) = s.acct_mgmt();
    assert_code(&env, code, PAM_SUCCESS, &t, "account after auth");
    assert_eq!(authentications(&env, "alice").len(), 1, "one push for the transaction");
}

#[test]
fn operations_switch_the_check_and_name_the_service_on_the_phone() {
    let mut env = Env::pingid();
    env.set_conf(|c| c.operations = vec!["sshd:ssh-login:true".into(), "sudo:sudo-op:false".into()]);
    let ssh = env.service("sshd", &[]);
    let sudo = env.service("sudo", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("approve"));
    auth(&env, &ssh, "alice", &[], PAM_SUCCESS, "sshd checked");
    assert_eq!(
        authentications(&env, "alice"),
        vec![("APPROVED".to_string(), Some("ssh-login".to_string()))],
        "the operation id is the push's clientContext"
    );
    auth(&env, &sudo, "alice", &[], PAM_SUCCESS, "sudo: check off");
    assert_eq!(authentications(&env, "alice").len(), 1, "no push when the check is off");
}

#[test]
fn a_pending_user_logs_in_as_unpaired() {
    let mut env = Env::pingid();
    env.set_conf(|c| c.unpaired = "deny".into());
    let svc = env.service("sshd", &[]);
    env.emu.pingid_add_user("alice").expect("user");
    env.store()
        .set_pending(
            &PendingPairing {
                user: "alice".into(),
                account_id: "alice".into(),
                key: "123456789012".into(),
            },
            soon(),
        )
        .expect("pending");
    let (t, _) = auth(&env, &svc, "alice", &[], PAM_AUTH_ERR, "pending, unpaired = deny");
    assert!(t.has(Style::Error, "not paired"), "{t:?}");
    assert!(authentications(&env, "alice").is_empty(), "no push for a pending user");
}

#[test]
fn a_user_without_a_device_at_pingid_is_refused_unless_service_unpaired_says_otherwise() {
    let mut env = Env::pingid();
    env.set_conf(|c| c.unpaired = "allow".into());
    let svc = env.service("sshd", &[]);
    // In the store, but without a device at PingID (unpaired from the phone's side).
    env.emu.pingid_add_user("bob").expect("user without device");
    env.store()
        .insert(
            &lockserver::store::Pairing {
                user: "bob".into(),
                account_id: "bob".into(),
                enabled: true,
                totp_enabled: false,
                totp_id: None,
            },
            soon(),
        )
        .expect("bob in the store");
    let (t, _) = auth(
        &env,
        &svc,
        "bob",
        &[],
        PAM_AUTH_ERR,
        "no device, service_unpaired default",
    );
    assert!(t.has(Style::Error, "pair"), "{t:?}");
    env.set_conf(|c| c.extra = "service_unpaired = \"as_unpaired\"".into());
    auth(
        &env,
        &svc,
        "bob",
        &[],
        PAM_SUCCESS,
        "no device, as_unpaired, unpaired = allow",
    );
}

/// Outages: `fail_mode` decides, within timeout_ms + 0.5 s.
fn outage(what: &str, set: impl Fn(&mut Env)) {
    let mut env = Env::pingid();
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    set(&mut env);
    let limit = Duration::from_millis(env.conf.timeout_ms + 500);
    let (t, took) = auth(
        &env,
        &svc,
        "alice",
        &[],
        PAM_AUTHINFO_UNAVAIL,
        &format!("{what}, secure"),
    );
    assert!(took <= limit, "{what}: {took:?}");
    assert!(t.has(Style::Error, "cannot be reached"), "{what}: {t:?}");
    env.set_conf(|c| c.fail_mode = "safe".into());
    let (_, took) = auth(&env, &svc, "alice", &[], PAM_SUCCESS, &format!("{what}, safe"));
    assert!(took <= limit, "{what}: {took:?}");
    env.logs.expect_line(&["user=alice", "FAIL-OPEN"]);
}

#[test]
fn service_hung_takes_fail_mode_in_time() {
    outage("hang", |env| {
        env.emu.set_fault(Fault::Hang {
            max: Duration::from_secs(30),
        })
    });
}

#[test]
fn service_down_takes_fail_mode() {
    outage("down", |env| {
        let port = common::dead_port();
        env.set_conf(|c| c.url = format!("http://127.0.0.1:{port}"));
    });
}

#[test]
fn a_bad_response_signature_is_refused_even_when_safe() {
    let mut env = Env::pingid();
    env.set_conf(|c| c.fail_mode = "safe".into());
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    plan(&env, "alice", Plan::new("approve"));
    for mode in [SignatureMode::BadKey, SignatureMode::BadBody] {
        env.emu.pingid_set_signature(mode);
        let (t, _) = auth(&env, &svc, "alice", &[], PAM_SERVICE_ERR, &format!("{mode:?}"));
        assert!(t.has(Style::Error, "misconfigured"), "{mode:?}: {t:?}");
    }
    // Unsigned answers pass by default, and are refused with require_response_signature.
    env.emu.pingid_set_signature(SignatureMode::None);
    auth(&env, &svc, "alice", &[], PAM_SUCCESS, "unsigned, not required");
    env.set_conf(|c| c.pingid_extra = "require_response_signature = true\n".into());
    auth(&env, &svc, "alice", &[], PAM_SERVICE_ERR, "unsigned, required");
}

#[test]
fn a_wrong_api_key_is_a_misconfiguration_whatever_fail_mode_says() {
    let mut env = Env::pingid();
    env.set_conf(|c| c.fail_mode = "safe".into());
    let svc = env.service("sshd", &[]);
    env.pair_pingid("alice");
    // UNAUTHORIZED_REQ: the emulator refuses the request signed with the wrong token.
    let text = env
        .conf
        .render()
        .replace(&lockserver_emulator::PingidOptions::default().token, "0000000000000000");
    common::write_file_mode(&env.config_path(), &text, 0o600);
    auth(&env, &svc, "alice", &[], PAM_SERVICE_ERR, "wrong token");
    env.logs
        .expect_line(&["user=alice", "rejects this host's configuration"]);
}
