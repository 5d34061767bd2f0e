//! Several hosts, one PostgreSQL pairing store (issue #11), through the real libpam: each "host" is a PAM
//! service with a module config of its own, all naming one database. And a store that cannot be reached
//! (nothing listening, a listener that never answers) follows `store_fail_mode` within the budget.

#[allow(unused_imports)]
mod common;

use common::pam_driver::{PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_IGNORE, PAM_MAXTRIES, PAM_SUCCESS};
use common::{Env, PRI_ERR, PRI_WARNING, pg, timed, write_file_mode};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Host B: a second module config (the same text as host A's: another machine of the fleet) and its PAM
/// service. Host A is `env`'s own config and the service `host-a`.
fn two_hosts(env: &Env) -> (String, String, PathBuf) {
    let a = env.service("host-a", &[]);
    let b_config = env.dir.path().join("host-b.conf");
    write_file_mode(
        &b_config,
        &std::fs::read_to_string(env.config_path()).expect("config A"),
        0o600,
    );
    let b = env.service_with_config("host-b", &b_config, &[]);
    (a, b, b_config)
}

fn auth(env: &Env, service: &str, user: &str, answers: &[&str], want: i32, what: &str) {
    let mut s = env.session(service, user);
    let ((code, transcript), took) = timed(|| s.authenticate(answers));
    assert_eq!(
        code,
        want,
        "{what}: {transcript:?}\nlog:\n{}",
        env.logs.lines().join("\n")
    );
    let budget = Duration::from_millis(env.conf.timeout_ms + 500);
    assert!(took <= budget, "{what}: took {took:?}, more than {budget:?}");
}

#[test]
fn a_pairing_made_through_one_host_holds_on_the_other() {
    let Some(db) = pg::database("fleet_pairing") else {
        return;
    };
    let mut env = Env::new();
    env.use_postgres(&db, None);
    let (a, b, _) = two_hosts(&env);

    // Paired through host A (the CLI there writes the shared table), checked on host B.
    let account = env.pair("alice");
    auth(&env, &b, "alice", &[], PAM_SUCCESS, "B: paired via A, latch open");
    env.logs
        .expect_line(&["pam_lockserver(host-b:auth): user=alice", "latch open"]);
    env.latch(&account, None, false);
    auth(&env, &b, "alice", &[], PAM_AUTH_ERR, "B: latch closed");
    auth(&env, &a, "alice", &[], PAM_AUTH_ERR, "A: latch closed");

    // Unpaired on B (its CLI removes the row): A no longer checks alice at its next login.
    env.store()
        .remove("alice", lockserver::store::default_deadline())
        .expect("unpair")
        .expect("alice was paired");
    auth(
        &env,
        &a,
        "alice",
        &[],
        PAM_IGNORE,
        "A: unpaired via B (unpaired = ignore)",
    );
    assert_eq!(db.sql("SELECT count(*) FROM pairings"), "0");
}

fn oathtool(secret: &str) -> String {
    let out = Command::new("oathtool")
        .args(["--totp=sha1", "--digits=6", "-b", secret])
        .output()
        .expect("oathtool is installed by the test command");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Host A and B with local TOTP (`rate_limit_count = 2`, one prompt per login) for `user`; returns the
/// services and the TOTP secret.
fn totp_hosts(env: &mut Env, db: &pg::Database, user: &str) -> (String, String, String) {
    env.use_postgres(db, None);
    env.set_conf(|c| {
        c.operations = vec!["TOTP:TOTP:true".into()];
        c.max_attempts = 1;
    });
    let text = env.conf.render().replace(
        "[totp]\n",
        "[totp]\nsource = \"local\"\nrate_limit_count = 2\nrate_limit_period_secs = 300\n",
    );
    write_file_mode(&env.config_path(), &text, 0o600);
    env.pair(user);
    let uri = env.enrol_totp(user).expect("local enrolment").qr.clone();
    let start = uri.find("secret=").expect("secret in the URI") + 7;
    let secret = uri[start..].split('&').next().expect("secret").to_string();
    let (a, b, _) = two_hosts(env);
    (a, b, secret)
}

#[test]
fn a_local_code_accepted_on_one_host_is_refused_on_the_other() {
    let Some(db) = pg::database("fleet_replay") else { return };
    let mut env = Env::new();
    let (a, b, secret) = totp_hosts(&mut env, &db, "bob");
    let code = oathtool(&secret);
    auth(&env, &a, "bob", &[&code], PAM_SUCCESS, "A: right code");
    auth(
        &env,
        &b,
        "bob",
        &[&code],
        PAM_MAXTRIES,
        "B: the same code again (a replay)",
    );
    env.logs
        .expect_line(&["pam_lockserver(host-b:auth): user=bob", "replayed"]);
}

#[test]
fn wrong_codes_count_across_the_fleet() {
    let Some(db) = pg::database("fleet_failures") else {
        return;
    };
    let mut env = Env::new();
    let (a, b, secret) = totp_hosts(&mut env, &db, "carol");
    auth(&env, &a, "carol", &["000000"], PAM_MAXTRIES, "A: wrong code");
    auth(&env, &b, "carol", &["000001"], PAM_MAXTRIES, "B: wrong code");
    // Two wrong codes on two hosts are two: the limit holds on A even for the right code.
    auth(
        &env,
        &a,
        "carol",
        &[&oathtool(&secret)],
        PAM_MAXTRIES,
        "A: rate limited",
    );
    env.logs
        .expect_line(&["pam_lockserver(host-a:auth): user=carol", "rate limit"]);
    assert_eq!(
        db.sql("SELECT totp_failures FROM pairings WHERE user_name = 'carol'"),
        "2"
    );
}

/// `store_fail_mode` for a database that cannot be reached, with `fail_mode` the opposite (it is about
/// the service, not the store): secure denies with PAM_AUTHINFO_UNAVAIL, safe lets in with FAIL-OPEN;
/// both within timeout_ms + 500 ms. Needs no server.
fn unreachable_case(what: &str, port: u16) {
    let mut env = Env::new();
    let (a, _, _) = two_hosts(&env);
    let url = format!("postgres://lockserver@127.0.0.1:{port}/lockserver?sslmode=disable");
    for (mode, fail_mode, want) in [
        ("secure", "safe", PAM_AUTHINFO_UNAVAIL),
        ("safe", "secure", PAM_SUCCESS),
    ] {
        env.set_conf(|c| {
            c.store = url.clone();
            c.store_extra = format!("store_fail_mode = \"{mode}\"\n");
            c.fail_mode = fail_mode.into();
        });
        env.logs.clear();
        auth(
            &env,
            &a,
            "alice",
            &[],
            want,
            &format!("{what}, store_fail_mode = {mode}"),
        );
        let line = env
            .logs
            .expect_line(&["user=alice", &format!("store_fail_mode = {mode}"), "unreachable"]);
        let pri = if mode == "secure" { PRI_ERR } else { PRI_WARNING };
        assert!(line.starts_with(pri), "{what}: {line}");
    }
}

#[test]
fn store_nothing_listening_follows_store_fail_mode() {
    let port = common::dead_port();
    unreachable_case("nothing listening", port);
}

#[test]
fn store_that_never_answers_follows_store_fail_mode_within_the_budget() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    unreachable_case("a listener that never answers", port);
    drop(listener);
}
