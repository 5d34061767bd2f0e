//! Several hosts, one PostgreSQL pairing store (issue #11), through the real libpam: each "host" is a PAM
//! service with a module config of its own, all naming one database. And a store that cannot be reached
//! (nothing listening, a listener that never answers) follows `store_fail_mode` within the budget.

#[allow(unused_imports)]
mod common;

use common::pam_driver::{PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_IGNORE, PAM_MAXTRIES, PAM_PERM_DENIED, PAM_SUCCESS};
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
    totp_hosts_at(env, db, &db.url, user)
}

/// [`totp_hosts`] with the store reached at `store` (the database behind PgBouncer, ...).
fn totp_hosts_at(env: &mut Env, db: &pg::Database, store: &str, user: &str) -> (String, String, String) {
    env.use_postgres(db, None);
    env.set_conf(|c| {
        c.store = store.to_string();
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

// ---------------------------------------------------------------------------------------------------------
// The database taken away mid-run, failover, PgBouncer

/// Sets `store_fail_mode` (keeping the password file line `use_postgres` wrote) and `fail_mode` opposite.
fn set_store_fail_mode(env: &mut Env, mode: &str) {
    env.set_conf(|c| {
        let kept: String = c
            .store_extra
            .lines()
            .filter(|l| !l.starts_with("store_fail_mode"))
            .map(|l| format!("{l}\n"))
            .collect();
        c.store_extra = format!("{kept}store_fail_mode = \"{mode}\"\n");
        c.fail_mode = if mode == "secure" { "safe" } else { "secure" }.into();
    });
}

/// Both modes against a store that cannot be reached now: secure denies, safe lets in loudly.
fn logins_follow_store_fail_mode(env: &mut Env, service: &str, what: &str) {
    for (mode, want) in [("secure", PAM_AUTHINFO_UNAVAIL), ("safe", PAM_SUCCESS)] {
        set_store_fail_mode(env, mode);
        env.logs.clear();
        auth(
            env,
            service,
            "alice",
            &[],
            want,
            &format!("{what}, store_fail_mode = {mode}"),
        );
        env.logs
            .expect_line(&["user=alice", &format!("store_fail_mode = {mode}"), "unreachable"]);
    }
}

fn cli(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(common::cli_path())
        .arg("-c")
        .arg(env.config_path())
        .args(args)
        .env_remove("SUDO_USER")
        .env_remove("SUDO_UID")
        .output()
        .expect("run lockserver")
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The CLI against a store it cannot reach: exit 8, a message that says so, within its own bound.
fn cli_fails_clearly(env: &Env, args: &[&str]) {
    if common::current_uid() != 0 {
        eprintln!("not root: CLI part skipped (CI runs as root)");
        return;
    }
    let (out, took) = timed(|| cli(env, args));
    assert_eq!(out.status.code(), Some(8), "{args:?}: {}", out_text(&out));
    assert!(out_text(&out).contains("unreachable"), "{args:?}: {}", out_text(&out));
    assert!(took < Duration::from_secs(8), "{args:?} took {took:?}");
}

#[test]
fn the_database_stopped_mid_run() {
    let Some(db) = pg::database("fleet_stopped") else {
        return;
    };
    let mut relay = pg::Relay::start(db.port());
    let mut env = Env::new();
    env.use_postgres(&db, None);
    env.set_conf(|c| c.store = db.url_at(&format!("127.0.0.1:{}", relay.port)));
    let a = env.service("host-a", &[]);
    env.pair("alice");
    auth(&env, &a, "alice", &[], PAM_SUCCESS, "database up");

    relay.stop();
    logins_follow_store_fail_mode(&mut env, &a, "database stopped");
    // The CLI says so and changes nothing.
    cli_fails_clearly(&env, &["unpair", "--user", "alice", "--force"]);
    cli_fails_clearly(&env, &["users"]);
    assert_eq!(db.sql("SELECT user_name FROM pairings"), "alice");
}

#[test]
fn the_database_hangs_mid_run() {
    let Some(db) = pg::database("fleet_hang") else { return };
    let relay = pg::Relay::start(db.port());
    let mut env = Env::new();
    env.use_postgres(&db, None);
    env.set_conf(|c| c.store = db.url_at(&format!("127.0.0.1:{}", relay.port)));
    let a = env.service("host-a", &[]);
    env.pair("alice");
    auth(&env, &a, "alice", &[], PAM_SUCCESS, "database up");

    relay.hang();
    logins_follow_store_fail_mode(&mut env, &a, "database behind a dropping firewall");
    cli_fails_clearly(&env, &["unpair", "--user", "alice", "--force"]);
    assert_eq!(db.sql("SELECT user_name FROM pairings"), "alice");
}

#[test]
fn a_database_that_answers_an_error_denies_whatever_store_fail_mode_says() {
    let Some(db) = pg::database("fleet_error") else { return };
    let mut env = Env::new();
    env.use_postgres(&db, None);
    let a = env.service("host-a", &[]);
    env.pair("alice");
    db.sql("REVOKE ALL ON pairings FROM PUBLIC; ALTER TABLE pairings RENAME TO pairings_away");
    set_store_fail_mode(&mut env, "safe");
    let mut s = env.session(&a, "alice");
    let (code, _) = s.authenticate(&[]);
    assert_ne!(code, PAM_SUCCESS, "an answered error must deny: {:?}", env.logs.lines());
    let line = env.logs.expect_line(&["user=alice", "pairings"]);
    assert!(!line.contains("FAIL-OPEN"), "{line}");
}

#[test]
fn a_multi_host_url_fails_over_to_the_next_host_within_the_budget() {
    let Some(db) = pg::database("fleet_failover") else {
        return;
    };
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging_port = hanging.local_addr().expect("addr").port();
    for (what, first) in [
        ("a dead port", common::dead_port()),
        ("a listener that never answers", hanging_port),
    ] {
        let mut env = Env::new();
        env.use_postgres(&db, Some("safe"));
        env.set_conf(|c| c.store = db.url_at(&format!("127.0.0.1:{first},127.0.0.1:{}", db.port())));
        let a = env.service("host-a", &[]);
        let user = format!("u{first}");
        let account = env.pair(&user);
        env.latch(&account, None, false);
        // A locked latch: only a store that was reached can say so (safe would let an unreachable one in).
        auth(&env, &a, &user, &[], PAM_AUTH_ERR, &format!("first host {what}"));
        env.logs.expect_line(&[&format!("user={user}"), "lock"]);
        assert!(env.logs.find(&["FAIL-OPEN"]).is_none(), "{:?}", env.logs.lines());
    }
    drop(hanging);
}

#[test]
fn logins_work_through_pgbouncer_in_transaction_pooling_mode() {
    let Some(db) = pg::database("fleet_pgbouncer") else {
        return;
    };
    let Some(bouncer) = db.via_pgbouncer() else { return };
    let mut env = Env::new();
    // Pairing (the CLI's first write migrates, through PgBouncer too), local TOTP and its replay guard.
    let (a, b, secret) = totp_hosts_at(&mut env, &db, &bouncer, "dave");
    let code = oathtool(&secret);
    auth(&env, &a, "dave", &[&code], PAM_SUCCESS, "A through PgBouncer");
    auth(
        &env,
        &b,
        "dave",
        &[&code],
        PAM_MAXTRIES,
        "B through PgBouncer: a replay",
    );
    // Many logins at once share PgBouncer's few server connections.
    let pam_dir = env.pam_dir();
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (pam_dir, svc) = (pam_dir.clone(), if i % 2 == 0 { a.clone() } else { b.clone() });
            std::thread::spawn(move || {
                let mut s = common::PamSession::start(&pam_dir, &svc, "dave");
                s.set_rhost(common::RHOST);
                s.authenticate(&["000000"]).0
            })
        })
        .collect();
    for t in threads {
        assert_eq!(
            t.join().expect("login thread"),
            PAM_MAXTRIES,
            "a wrong code through PgBouncer"
        );
    }
    assert_eq!(db.sql("SELECT count(*) FROM pairings"), "1");
}

// ---------------------------------------------------------------------------------------------------------
// Load: two hosts, one database

/// 200 logins (auth + account) in parallel over hosts A and B while another thread pairs and unpairs
/// other users through the same database: every verdict right, every pairing there at the end.
#[test]
fn two_hundred_parallel_logins_over_two_hosts_while_pairings_change() {
    let Some(db) = pg::database("fleet_load") else { return };
    let mut env = Env::new();
    env.use_postgres(&db, None);
    env.set_conf(|c| c.timeout_ms = 3000);
    let (a, b, _) = two_hosts(&env);
    let users: Vec<(String, bool)> = (0..10)
        .map(|i| {
            let user = format!("user{i}");
            let account = env.pair(&user);
            env.latch(&account, None, i % 2 == 0);
            (user, i % 2 == 0)
        })
        .collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, config) = (stop.clone(), env.load_config());
        std::thread::spawn(move || -> Result<u32, String> {
            let mut cycles = 0;
            loop {
                // A store per cycle, as CLI runs on several admin hosts open it.
                let store = lockserver::store::open_at(
                    &lockserver::store::Location::of(&config),
                    lockserver::store::OpenMode::Create,
                    lockserver::store::default_deadline(),
                )
                .map_err(|e| format!("open: {e}"))?;
                let deadline = lockserver::store::default_deadline;
                for j in 0..5 {
                    let pairing = lockserver::store::Pairing {
                        user: format!("churn{j}"),
                        account_id: format!("churn-account-{j}"),
                        enabled: true,
                        totp_enabled: false,
                        totp_id: None,
                    };
                    store
                        .insert(&pairing, deadline())
                        .map_err(|e| format!("pair churn{j}: {e}"))?;
                }
                for j in [1, 3] {
                    store
                        .remove(&format!("churn{j}"), deadline())
                        .map_err(|e| format!("unpair churn{j}: {e}"))?
                        .ok_or(format!("churn{j} was not paired"))?;
                }
                cycles += 1;
                if cycles >= 20 && stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(cycles); // churn0, churn2 and churn4 stay
                }
                for j in [0, 2, 4] {
                    store
                        .remove(&format!("churn{j}"), deadline())
                        .map_err(|e| format!("unpair churn{j}: {e}"))?
                        .ok_or(format!("churn{j} was not paired"))?;
                }
            }
        })
    };

    let budget = Duration::from_millis(env.conf.timeout_ms + 500);
    let pam_dir = env.pam_dir();
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let (users, pam_dir, a, b) = (users.clone(), pam_dir.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                for k in 0..20 {
                    let (user, open) = &users[(t + 3 * k) % users.len()];
                    let host = if (t + k) % 2 == 0 { &a } else { &b };
                    let mut s = common::PamSession::start(&pam_dir, host, user);
                    s.set_rhost(common::RHOST);
                    let ((code, _), took) = timed(|| s.authenticate(&[]));
                    let want = if *open { PAM_SUCCESS } else { PAM_AUTH_ERR };
                    if code != want || took > budget {
                        wrong.push(format!("{host} {user}: auth {code} (want {want}) in {took:?}"));
                    }
                    let ((code, _), took) = timed(|| s.acct_mgmt());
                    let want = if *open { PAM_SUCCESS } else { PAM_PERM_DENIED };
                    if code != want || took > budget {
                        wrong.push(format!("{host} {user}: account {code} (want {want}) in {took:?}"));
                    }
                }
                wrong
            })
        })
        .collect();
    let wrong: Vec<String> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("login thread panicked"))
        .collect();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cycles = churn.join().expect("churn thread").expect("pair/unpair alongside");
    assert!(wrong.is_empty(), "wrong verdicts under load:\n{}", wrong.join("\n"));
    assert!(cycles >= 20, "only {cycles} pair/unpair cycles");
    eprintln!("200 logins over two hosts in {took:?}, {cycles} pair/unpair cycles alongside");
    let mut want: Vec<String> = users.iter().map(|(u, _)| u.clone()).collect();
    want.extend(["churn0", "churn2", "churn4"].map(String::from));
    want.sort();
    let listed: Vec<String> = db
        .sql("SELECT user_name FROM pairings ORDER BY user_name COLLATE \"C\"")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(listed, want, "nothing lost, nothing left over");
}

// ---------------------------------------------------------------------------------------------------------
// The CLI for a fleet: migrate, store copy, pairing users this host does not know

fn root() -> bool {
    let root = common::current_uid() == 0;
    if !root {
        eprintln!("not root: CLI test skipped (CI runs as root)");
    }
    root
}

#[test]
fn migrate_reports_the_versions_on_both_backends() {
    if !root() {
        return;
    }
    let env = Env::new();
    let out = cli(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    let wanted = lockserver::store::sqlite::SCHEMA_VERSION;
    assert!(
        out_text(&out).contains(&format!("migrated from schema version 0 to {wanted}")),
        "{}",
        out_text(&out)
    );
    let out = cli(&env, &["migrate"]);
    assert!(out_text(&out).contains("up to date"), "{}", out_text(&out));

    let Some(db) = pg::database("fleet_migrate") else {
        return;
    };
    let mut env = Env::new();
    env.use_postgres(&db, None);
    let out = cli(&env, &["migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    assert!(out_text(&out).contains(&format!("from schema version 0 to {wanted}")));
    assert_eq!(db.sql("SELECT version FROM lockserver_schema"), wanted.to_string());
    let out = cli(&env, &["migrate"]);
    assert!(out_text(&out).contains("up to date"), "{}", out_text(&out));

    // Unreachable: a clear message, exit 8.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    env.set_conf(|c| c.store = db.url_at(&format!("127.0.0.1:{port}")));
    cli_fails_clearly(&env, &["migrate"]);
}

/// A SQLite store with every kind of fact: a Latch pairing, a disabled one with a service TOTP id, a
/// local TOTP with its replay step and rate-limit window, a non-ASCII name, and a pending (PingID)
/// pairing.
fn store_with_every_fact(path: &std::path::Path) -> lockserver::store::Snapshot {
    use lockserver::store::{LocalTotp, Pairing, PairingStore, PendingPairing, default_deadline};
    let store = lockserver::store::sqlite::SqliteStore::open(path, lockserver::store::OpenMode::Create)
        .expect("create the SQLite store");
    let pairing = |user: &str, enabled| Pairing {
        user: user.into(),
        account_id: format!("account-of-{user}"),
        enabled,
        totp_enabled: false,
        totp_id: None,
    };
    for (user, enabled) in [("alice", true), ("bob", false), ("carol", true), ("dörte", true)] {
        store
            .insert(&pairing(user, enabled), default_deadline())
            .expect("insert");
    }
    store
        .set_totp("bob", true, Some("totp-id-of-bob"), default_deadline())
        .expect("totp id");
    store
        .set_totp("carol", true, None, default_deadline())
        .expect("totp on");
    let state = LocalTotp {
        secret: lockserver::config::Secret::new("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        last_step: Some(58_000_123),
        failures: 2,
        window_start: 1_740_000_000,
    };
    store
        .set_local_totp("carol", Some(&state), default_deadline())
        .expect("local totp");
    let pending = PendingPairing {
        user: "erin".into(),
        account_id: "erin".into(),
        key: "491773620915".into(),
    };
    store.set_pending(&pending, default_deadline()).expect("pending");
    store.export(default_deadline()).expect("export")
}

#[test]
fn store_copy_round_trips_every_fact_sqlite_postgres_sqlite() {
    use lockserver::store::{PairingStore, default_deadline};
    if !root() {
        return;
    }
    let Some(db) = pg::database("fleet_copy") else { return };
    let mut env = Env::new();
    env.use_postgres(&db, None);
    let first = env.dir.path().join("first").join("lockserver.db");
    let back = env.dir.path().join("back").join("lockserver.db");
    let records = store_with_every_fact(&first);
    assert_eq!((records.records.len(), records.pending.len()), (4, 1));
    let sqlite_first = format!("sqlite://{}", first.display());
    let sqlite_back = format!("sqlite://{}", back.display());

    let out = cli(&env, &["store", "copy", &sqlite_first, &db.url]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    assert!(
        out_text(&out)
            .contains("copied 4 pairings (2 with TOTP on, 1 with a local TOTP secret) and 1 pending pairings"),
        "{}",
        out_text(&out)
    );
    let in_postgres = env.store().export(default_deadline()).expect("export PostgreSQL");
    assert_eq!(in_postgres, records, "SQLite → PostgreSQL keeps every column");

    // A target with pairings is refused without --force, and nothing changes.
    db.sql("DELETE FROM pairings WHERE user_name = 'alice'");
    let out = cli(&env, &["store", "copy", &sqlite_first, &db.url]);
    assert_eq!(out.status.code(), Some(8), "{}", out_text(&out));
    assert!(
        out_text(&out).contains("already holds 4 pairings (pending ones counted)"),
        "{}",
        out_text(&out)
    );
    assert!(out_text(&out).contains("--force"), "{}", out_text(&out));
    assert_eq!(db.sql("SELECT count(*) FROM pairings"), "3");
    let out = cli(&env, &["store", "copy", "--force", &sqlite_first, &db.url]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    assert_eq!(env.store().export(default_deadline()).expect("export"), records);

    // And back to a new SQLite store.
    let out = cli(&env, &["store", "copy", &db.url, &sqlite_back]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    let store = lockserver::store::sqlite::SqliteStore::open(&back, lockserver::store::OpenMode::Existing)
        .expect("open the copy");
    assert_eq!(
        store.export(default_deadline()).expect("export"),
        records,
        "… → SQLite again"
    );
    drop(store);

    // A source that is not there, and the same store twice: refused, nothing written.
    let missing = format!("sqlite://{}", env.dir.path().join("none").join("x.db").display());
    let out = cli(&env, &["store", "copy", &missing, &sqlite_back]);
    assert_eq!(out.status.code(), Some(8), "{}", out_text(&out));
    assert!(out_text(&out).contains("does not exist"), "{}", out_text(&out));
    let out = cli(&env, &["store", "copy", &db.url, &db.url]);
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
}

#[test]
fn pairing_a_user_this_host_does_not_know_needs_allow_unknown_user() {
    if !root() {
        return;
    }
    let Some(db) = pg::database("fleet_ghost") else { return };
    let mut env = Env::new();
    env.use_postgres(&db, None);
    let code = env.emu.add_code(None).expect("code");
    let ghost = "fleetuser-not-on-this-host";
    let out = cli(&env, &["pair", &code, "--user", ghost]);
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
    assert!(
        out_text(&out).contains("no such user on this system"),
        "{}",
        out_text(&out)
    );
    assert!(out_text(&out).contains("--allow-unknown-user"), "{}", out_text(&out));
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'pairings'"),
        "0"
    );

    let out = cli(&env, &["pair", &code, "--user", ghost, "--allow-unknown-user"]);
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
    assert_eq!(db.sql("SELECT user_name FROM pairings"), ghost);
}
