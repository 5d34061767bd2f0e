//! PingID pairing through the `lockserver` CLI against the emulator: `pairing-key create | show`,
//! the seed's scope rules, `pair --user` before and after the claim, `status`, `unpair`, and a
//! login once paired. The CLI needs root; these tests skip (saying so) when not run as root.

#[allow(unused_imports)]
mod common;

use common::pam_driver::PAM_SUCCESS;
use common::{Env, current_uid};
use lockserver_emulator::Plan;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn run(env: &Env, args: &[&str]) -> Option<Output> {
    if current_uid() != 0 {
        eprintln!("not root: CLI test skipped (CI runs as root)");
        return None;
    }
    let mut cmd = Command::new(common::cli_path());
    cmd.arg("-c").arg(env.config_path()).args(args);
    cmd.env_remove("SUDO_USER").env_remove("SUDO_UID");
    Some(cmd.output().expect("run lockserver"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `pairing key: <id>` from the output.
fn key_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pairing key: "))
        .unwrap_or_else(|| panic!("no `pairing key:` line: {}", text(o)))
        .trim()
        .to_string()
}

#[test]
fn pairing_key_create_show_pair_status_unpair() {
    let env = Env::pingid();
    let Some(out) = run(&env, &["pairing-key", "create", "--user", "root"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = key_of(&out);
    assert!(key.len() == 12 && key.bytes().all(|b| b.is_ascii_digit()), "{key}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('█'),
        "a QR code is drawn: {}",
        text(&out)
    );
    assert_eq!(
        env.store().pending("root", soon()).expect("store").map(|p| p.key),
        Some(key.clone()),
        "root is pending with that key"
    );
    assert!(
        env.store().get("root", soon()).expect("store").is_none(),
        "pending is not paired"
    );

    let out = run(&env, &["pairing-key", "show", &key]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "status: NOT_CLAIMED");

    let out = run(&env, &["pair", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(6), "not claimed yet: {}", text(&out));
    assert!(
        text(&out).contains(&format!("enter pairing key {key} in the app first")),
        "{}",
        text(&out)
    );
    let out = run(&env, &["status", "--user", "root"]).expect("root");
    assert!(text(&out).contains("root: pending"), "{}", text(&out));

    // The phone enters the key: a device for the key's pairingData (the user name).
    let (device, user) = env.emu.pingid_claim(&key, None, None).expect("claim");
    assert_eq!(user, "root", "the key's pairingData is the user name");
    let out = run(&env, &["pairing-key", "show", &key]).expect("root");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "status: USED");

    let out = run(&env, &["pair", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("root is now paired"), "{}", text(&out));
    assert!(
        env.store().pending("root", soon()).expect("store").is_none(),
        "no longer pending"
    );
    let out = run(&env, &["status", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("root: paired"), "{}", text(&out));
    assert!(text(&out).contains(&device), "the device is listed: {}", text(&out));

    // Paired: a push login works.
    let svc = env.service("sshd", &[]);
    env.emu.pingid_plan(Some("root"), Plan::new("approve")).expect("plan");
    let (code, t) = env.session(&svc, "root").authenticate(&[]);
    assert_eq!(code, PAM_SUCCESS, "{t:?}");

    let out = run(&env, &["unpair", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(env.store().get("root", soon()).expect("store").is_none());
    let state = env.emu.state_json();
    assert!(
        !state.to_string().contains(&device),
        "the device is removed at PingID: {state}"
    );
    let out = run(&env, &["status", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

#[test]
fn the_seed_scope_rules_hold_through_the_cli() {
    let env = Env::pingid();
    let Some(out) = run(
        &env,
        &["pairing-key", "create", "--user", "root", "--scope", "application"],
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let app_key = key_of(&out);
    let out = run(&env, &["pairing-key", "show", &app_key, "--scope", "application"]).expect("root");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "status: NOT_CLAIMED");
    let out = run(&env, &["pairing-key", "show", &app_key, "--scope", "organization"]).expect("root");
    assert_eq!(
        out.status.code(),
        Some(5),
        "an application key is not found in organization scope: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("not found"),
        "the service's message: {}",
        text(&out)
    );

    let out = run(
        &env,
        &["pairing-key", "create", "--user", "root", "--scope", "organization"],
    )
    .expect("root");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a new key replaces the pending one: {}",
        text(&out)
    );
    let org_key = key_of(&out);
    for scope in ["application", "organization"] {
        let out = run(&env, &["pairing-key", "show", &org_key, "--scope", scope]).expect("root");
        assert_eq!(out.status.code(), Some(0), "{scope}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "status: NOT_CLAIMED",
            "{scope}"
        );
    }
    assert_eq!(
        env.store().pending("root", soon()).expect("store").map(|p| p.key),
        Some(org_key)
    );
}

#[test]
fn latch_and_pingid_verbs_say_which_flow_they_need() {
    let env = Env::pingid();
    let Some(out) = run(&env, &["pair", "ABC234", "--user", "root"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("pairing-key create"), "{}", text(&out));
    let out = run(&env, &["pair", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(6), "no key made yet: {}", text(&out));
    assert!(text(&out).contains("pairing-key create --user root"), "{}", text(&out));

    let latch = Env::new();
    let out = run(&latch, &["pairing-key", "create", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("lockserver pair CODE"), "{}", text(&out));
    let out = run(&latch, &["pair", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(2), "Latch needs a code: {}", text(&out));
}

/// A pairing key for a user this machine does not know is refused (a typo would pair a user nobody
/// is) unless `--allow-unknown-user` says it is meant: an admin host pairing for a fleet's store.
#[test]
fn a_pairing_key_for_an_unknown_user_needs_allow_unknown_user() {
    let env = Env::pingid();
    let ghost = "pingiduser-not-on-this-host";
    let Some(out) = run(&env, &["pairing-key", "create", "--user", ghost]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no such user on this system"), "{}", text(&out));
    let store = env.store();
    assert_eq!(store.pending(ghost, soon()), Ok(None), "nothing recorded");
    drop(store);
    let out = run(
        &env,
        &["pairing-key", "create", "--user", ghost, "--allow-unknown-user"],
    )
    .expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = key_of(&out);
    let pending = env.store().pending(ghost, soon()).expect("read the store");
    assert_eq!(pending.map(|p| p.key), Some(key));
}
