//! TOTP at login through the real libpam (issue: the seed's Latch TOTP flow, local RFC 6238 codes, the
//! message dictionary), and the CLI's enrolment QR code read back from what it prints and saves.

#[allow(unused_imports)]
mod common;

use common::pam_driver::{PAM_AUTHINFO_UNAVAIL, PAM_MAXTRIES, PAM_SERVICE_ERR, PAM_SUCCESS};
use common::qr;
use common::{Answer, Env, Style, current_uid, timed, write_file_mode};
use lockserver::accounts::AccountError;
use lockserver::config::TotpAlgorithm;
use lockserver::store::{LocalTotp, Migrated, Pairing, StoreError};
use lockserver::totp;
use lockserver_emulator::Fault;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROMPT: &str = "Verification code";
const WRONG: &str = "The verification code is not right.";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The config of `env` with `top` keys before the first section and `totp` keys in `[totp]`.
fn write_config(env: &Env, top: &str, totp: &str) {
    let text = format!("{top}\n{}{totp}\n", env.conf.render());
    write_file_mode(&env.config_path(), &text, 0o600);
}

/// Enrols a TOTP for `user` as `lockserver totp create` does; returns the QR value.
fn enrol(env: &Env, user: &str) -> Result<String, AccountError> {
    env.enrol_totp(user).map(|e| e.qr.clone())
}

fn secret_of_uri(uri: &str) -> String {
    let start = uri.find("secret=").expect("secret= in the otpauth URI") + 7;
    uri[start..].split('&').next().expect("secret value").to_string()
}

fn latch_env(user: &str) -> (Env, Vec<u8>) {
    let mut env = Env::new();
    env.set_conf(|c| c.operations = vec!["TOTP:TOTP:true".into()]);
    env.pair(user);
    enrol(&env, user).expect("enrol at the emulator");
    let totp_id = env
        .store()
        .get(user, lockserver::store::default_deadline())
        .expect("store")
        .expect("paired")
        .totp_id
        .expect("TOTP id stored");
    let secret = env.emu.totp_secret(&totp_id).expect("the emulator knows the TOTP");
    let secret = totp::decode_secret(&secret).expect("base32 secret");
    (env, secret)
}

fn code(secret: &[u8]) -> String {
    totp::code_at(secret, now(), &totp::Params::default())
}

#[test]
fn latch_totp_right_code_logs_in() {
    let (env, secret) = latch_env("alice");
    let svc = env.service("sshd", &[]);
    let mut s = env.session(&svc, "alice");
    let ((rc, transcript), took) = timed(|| s.authenticate(&[&code(&secret)]));
    assert_eq!(rc, PAM_SUCCESS, "{transcript:?}");
    assert!(took < Duration::from_millis(env.conf.timeout_ms * 2 + 500));
    let prompts = transcript.prompts();
    assert_eq!(prompts.len(), 1, "{transcript:?}");
    assert_eq!(prompts[0].style, Style::EchoOff, "the code is typed with echo off");
    assert!(prompts[0].text.contains(PROMPT));
    env.logs.expect_line(&["verification code accepted"]);
}

#[test]
fn latch_totp_wrong_codes_are_refused_after_max_attempts() {
    let (env, _) = latch_env("bob");
    let svc = env.service("sshd", &[]);
    let mut s = env.session(&svc, "bob");
    let (rc, transcript) = s.authenticate(&["000000", "999999x", "12345"]);
    assert_eq!(rc, PAM_MAXTRIES, "{transcript:?}");
    assert_eq!(
        transcript.prompts().len(),
        3,
        "max_attempts = 3 prompts: {transcript:?}"
    );
    assert!(transcript.has(Style::Error, WRONG), "{transcript:?}");
    env.logs.expect_line(&["too many wrong verification codes"]);
}

#[test]
fn custom_dictionary_changes_what_the_user_sees() {
    let (env, secret) = latch_env("carol");
    let dict = env.dir.path().join("dictionary.xml");
    std::fs::write(
        &dict,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<translations><totp>\
         <two_fa_field_tooltip>Código de verificación: </two_fa_field_tooltip>\
         <validateerror306>Ese código no vale.</validateerror306><invalidcode></invalidcode>\
         </totp></translations>\n",
    )
    .expect("write dictionary");
    write_config(&env, &format!("dictionary = \"{}\"", dict.display()), "");
    let svc = env.service("sshd", &[]);
    let mut s = env.session(&svc, "carol");
    let (rc, transcript) = s.authenticate(&["000000", &code(&secret)]);
    assert_eq!(rc, PAM_SUCCESS, "{transcript:?}");
    assert!(
        transcript.prompts()[0].text.starts_with("Código de verificación"),
        "{transcript:?}"
    );
    assert!(transcript.has(Style::Error, "Ese código no vale."), "{transcript:?}");

    // A malformed dictionary is a configuration error naming the file and the position.
    std::fs::write(&dict, "<translations>\n<totp><invalidcode>x</totp>").expect("write");
    let mut s = env.session(&svc, "carol");
    let (rc, _) = s.authenticate(&[]);
    assert_eq!(rc, common::pam_driver::PAM_SERVICE_ERR);
    let line = env.logs.expect_line(&["dictionary"]);
    assert!(line.contains(&format!("{}:2:", dict.display())), "{line}");
}

#[test]
fn totp_flag_off_asks_nothing_and_enrolment_says_operationdisabled() {
    let (mut env, _) = latch_env("dave");
    env.set_conf(|c| c.operations = vec!["TOTP:TOTP:false".into()]);
    let svc = env.service("sshd", &[]);
    let mut s = env.session(&svc, "dave");
    let (rc, transcript) = s.authenticate(&[]);
    assert_eq!(rc, PAM_SUCCESS, "{transcript:?}");
    assert!(
        transcript.prompts().is_empty(),
        "no prompt with the TOTP flag off: {transcript:?}"
    );
    assert_eq!(enrol(&env, "dave").map(|_| ()), Err(AccountError::TotpDisabled));
}

#[test]
fn service_failing_during_validation_follows_fail_mode() {
    for (mode, want) in [("secure", PAM_AUTHINFO_UNAVAIL), ("safe", PAM_SUCCESS)] {
        let (mut env, secret) = latch_env("erin");
        env.set_conf(|c| c.fail_mode = mode.into());
        let svc = env.service("sshd", &[]);
        let emu = Arc::clone(&env.emu);
        let mut s = env.session(&svc, "erin");
        // The status answers; then, while the user types, the service starts failing.
        let answer = Answer::later(move |_| {
            emu.set_fault(Fault::Http500);
            code(&secret)
        });
        let ((rc, transcript), took) = timed(|| s.authenticate_with(vec![answer]));
        assert_eq!(rc, want, "fail_mode {mode}: {transcript:?}");
        assert!(took < Duration::from_millis(env.conf.timeout_ms + 500), "{took:?}");
    }
}

fn local_env(user: &str, totp_keys: &str) -> (Env, String) {
    let mut env = Env::new();
    env.set_conf(|c| {
        c.operations = vec!["TOTP:TOTP:true".into()];
        c.max_attempts = 1;
    });
    write_config(&env, "", &format!("source = \"local\"\n{totp_keys}"));
    env.pair(user);
    let uri = enrol(&env, user).expect("local enrolment");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    (env, secret_of_uri(&uri))
}

/// A code from an independent generator (oathtool), as an authenticator app would show it.
fn oathtool(secret: &str, algorithm: &str, digits: u32) -> String {
    let out = Command::new("oathtool")
        .arg(format!("--totp={algorithm}"))
        .arg(format!("--digits={digits}"))
        .arg("-b")
        .arg(secret)
        .output()
        .expect("oathtool is installed by the test command (Debian package oathtool)");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn local_totp_accepts_oathtool_codes_once() {
    let (env, secret) = local_env("frank", "");
    let svc = env.service("sshd", &[]);
    let code = oathtool(&secret, "sha1", 6);
    let mut s = env.session(&svc, "frank");
    let (rc, transcript) = s.authenticate(&[&code]);
    assert_eq!(rc, PAM_SUCCESS, "{transcript:?}");
    // The same code again: a replay, refused.
    let mut s = env.session(&svc, "frank");
    let (rc, transcript) = s.authenticate(&[&code]);
    assert_eq!(rc, PAM_MAXTRIES, "a replayed code is refused: {transcript:?}");
    env.logs.expect_line(&["replayed"]);
}

#[test]
fn local_totp_sha256_eight_digits_interoperate() {
    let (env, secret) = local_env("gina", "algorithm = \"SHA256\"\ndigits = 8\n");
    let config = env.load_config();
    assert_eq!(config.totp.algorithm, TotpAlgorithm::Sha256);
    let svc = env.service("sshd", &[]);
    let code = oathtool(&secret, "sha256", 8);
    assert_eq!(code.len(), 8);
    let mut s = env.session(&svc, "gina");
    let (rc, transcript) = s.authenticate(&[&code]);
    assert_eq!(rc, PAM_SUCCESS, "{transcript:?}");
}

#[test]
fn local_totp_failures_are_rate_limited() {
    let (env, secret) = local_env("hank", "rate_limit_count = 2\nrate_limit_period_secs = 300\n");
    let svc = env.service("sshd", &[]);
    for _ in 0..2 {
        let mut s = env.session(&svc, "hank");
        assert_eq!(s.authenticate(&["000000"]).0, PAM_MAXTRIES);
    }
    // Now even the right code is refused until the period ends, without a prompt.
    let mut s = env.session(&svc, "hank");
    let (rc, transcript) = s.authenticate(&[&oathtool(&secret, "sha1", 6)]);
    assert_eq!(rc, PAM_MAXTRIES, "{transcript:?}");
    assert!(transcript.prompts().is_empty(), "{transcript:?}");
    assert!(transcript.has(Style::Error, "Too many wrong codes"), "{transcript:?}");
    env.logs.expect_line(&["rate limit"]);
}

/// Runs the CLI as root (it refuses otherwise); `None` when this test process is not root.
fn cli(env: &Env, args: &[&str]) -> Option<std::process::Output> {
    if current_uid() != 0 {
        eprintln!("not root: the CLI checks are skipped here (CI runs as root)");
        return None;
    }
    let uid = current_uid().to_string();
    let out = Command::new(common::cli_path())
        .arg("-c")
        .arg(env.config_path())
        .args(["--trust-owner", &uid])
        .args(args)
        .env_remove("SUDO_USER")
        .env_remove("SUDO_UID")
        .output()
        .expect("run lockserver");
    Some(out)
}

/// The block of QR art in the CLI's output (the lines made of block characters).
fn art_of(stdout: &str) -> String {
    // Every line of the code sets its colours (bright white on black) and resets them.
    let plain: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("\x1b[97;40m")?.strip_suffix("\x1b[0m").map(String::from))
        .collect();
    assert!(!plain.is_empty(), "no coloured QR lines in {stdout:?}");
    plain
        .iter()
        .map(String::as_str)
        .filter(|l| !l.is_empty() && l.chars().all(|c| matches!(c, ' ' | '█' | '▀' | '▄')))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cli_qr_reads_back_in_local_and_latch_modes() {
    // Local: the otpauth URI drawn in the terminal and saved as PNG.
    let (env, secret) = local_env("root", "");
    let Some(out) = cli(&env, &["totp", "disable", "--user", "root"]) else {
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = env.dir.path().join("qr.png");
    let out = cli(
        &env,
        &[
            "totp",
            "create",
            "--user",
            "root",
            "--qr-file",
            png.to_str().expect("utf-8 path"),
        ],
    )
    .expect("root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let from_art = qr::read_terminal_art(&art_of(&stdout)).expect("the terminal QR reads back");
    assert!(
        from_art.starts_with("otpauth://totp/") && from_art.contains("secret="),
        "{from_art}"
    );
    assert_ne!(secret_of_uri(&from_art), secret, "a new secret after disable + create");
    let saved = std::fs::read(&png).expect("saved PNG");
    assert_eq!(qr::read_png(&saved).expect("the PNG reads back"), from_art);

    // Latch: the emulator's PNG data URI, read and redrawn.
    let (env, _) = latch_env("root");
    let Some(out) = cli(&env, &["totp", "disable", "--user", "root"]) else {
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&env, &["totp", "create", "--user", "root"]).expect("root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let from_art = qr::read_terminal_art(&art_of(&stdout)).expect("the terminal QR reads back");
    let totp_id = env
        .store()
        .get("root", lockserver::store::default_deadline())
        .expect("store")
        .expect("paired")
        .totp_id
        .expect("id");
    let secret = env.emu.totp_secret(&totp_id).expect("emulator secret");
    assert_eq!(secret_of_uri(&from_art), secret, "the QR holds the service's secret");

    // `totp verify` checks a code without logging in.
    let code = totp::code_at(
        &totp::decode_secret(&secret).expect("base32"),
        now(),
        &totp::Params::default(),
    );
    let out = cli(&env, &["totp", "verify", &code, "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let out = cli(&env, &["totp", "verify", wrong, "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));

    // Unpairing Latch also removes the TOTP, at the service too (seed).
    let out = cli(&env, &["unpair", "--user", "root"]).expect("root");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        env.emu.totp_secret(&totp_id),
        None,
        "the TOTP is deleted at the service"
    );
    assert!(
        env.store()
            .get("root", lockserver::store::default_deadline())
            .expect("store")
            .is_none()
    );
    env.pair("root");

    // The TOTP flag off: the operationdisabled text, nothing changed.
    let text = env.conf.render().replace("TOTP:TOTP:true", "TOTP:TOTP:false");
    write_file_mode(&env.config_path(), &text, 0o600);
    let out = cli(&env, &["totp", "disable", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("switched off"));
}

#[test]
fn parallel_logins_share_one_rate_limit() {
    let (env, _) = local_env("ivy", "rate_limit_count = 2\nrate_limit_period_secs = 300\n");
    let svc = env.service("sshd", &[]);
    let sessions = 6;
    // Every session is at its prompt (past the early check) before any answers.
    let barrier = Arc::new(std::sync::Barrier::new(sessions));
    let limited = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..sessions)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let (env, svc) = (&env, &svc);
                scope.spawn(move || {
                    let mut s = env.session(svc, "ivy");
                    let answer = Answer::later(move |_| {
                        barrier.wait();
                        "000000".to_string()
                    });
                    let (rc, transcript) = s.authenticate_with(vec![answer]);
                    assert_eq!(rc, PAM_MAXTRIES, "{transcript:?}");
                    transcript.has(Style::Error, "Too many wrong codes")
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a login thread panicked"))
            .filter(|limited| *limited)
            .count()
    });
    assert_eq!(
        limited,
        sessions - 2,
        "only rate_limit_count codes are checked, however many logins run at once"
    );
}

/// Self-service removal through sudo must prove the user still holds the factors (#9, hole 9): the
/// latch open right now, and a current TOTP code when TOTP is on.
#[test]
fn prove_factor_needs_an_open_latch_and_a_current_code() {
    use lockserver::accounts::{Accounts, NotProven};
    let (env, secret) = latch_env("alice");
    let account = env
        .store()
        .get("alice", lockserver::store::default_deadline())
        .expect("store")
        .expect("paired")
        .account_id;
    let prove = |code: Option<&str>| {
        let config = env.load_config();
        let store = env.store();
        let service = lockserver::service::from_config(&config).expect("client");
        let accounts = Accounts {
            config: &config,
            store: store.as_ref(),
            service: service.as_ref(),
        };
        accounts.prove_factor("alice", || code.map(lockserver::config::Secret::new), now())
    };
    assert_eq!(prove(None), Err(NotProven::CodeNeeded));
    let right = code(&secret);
    let wrong: String = right
        .chars()
        .map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) })
        .collect();
    assert_eq!(prove(Some(&wrong)), Err(NotProven::WrongCode));
    assert_eq!(prove(Some(&code(&secret))), Ok(()));
    env.latch(&account, None, false);
    assert_eq!(prove(Some(&code(&secret))), Err(NotProven::Locked));
    env.latch(&account, None, true);
    assert!(matches!(
        prove(Some("123")),
        Err(NotProven::WrongCode | NotProven::Account(_))
    ));
}

const LOCK_STORE_ENV: &str = "LOCKSERVER_TEST_LOCK_STORE";
const LOCK_READY_ENV: &str = "LOCKSERVER_TEST_LOCK_READY";
const LOCK_STOP_ENV: &str = "LOCKSERVER_TEST_LOCK_STOP";

/// Issue #9 hole 7: the store's wait is charged to the same `timeout_ms` budget as the service. Another
/// process holds the store's write lock (as a CLI writing would) while the service is slow: the login
/// spends most of its budget on the service, then waits for the store only for what is left, and ends
/// with PAM_SERVICE_ERR ("store busy") within timeout_ms + 500 ms. Before, the store waited a whole
/// `timeout_ms` of its own on top.
#[test]
fn locked_store_and_slow_service_share_one_budget() {
    let (env, secret) = local_env("lena", "");
    let svc = env.service("sshd", &[]);
    let budget = Duration::from_millis(env.conf.timeout_ms + 500);
    // The lock holder is another process: POSIX locks are per process, and the module's SQLite and this
    // test binary's are two copies in one process.
    let ready = env.dir.path().join("lock.ready");
    let stop = env.dir.path().join("lock.stop");
    let holder = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "store_lock_holder_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCK_STORE_ENV, env.store_path())
        .env(LOCK_READY_ENV, &ready)
        .env(LOCK_STOP_ENV, &stop)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the lock holder");
    let start = std::time::Instant::now();
    while !ready.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ready.exists(), "the lock holder did not take the lock");

    // The service answers after 70% of the budget; the store is locked for far longer than the rest.
    env.emu.set_fault(Fault::Slow {
        delay: Duration::from_millis(env.conf.timeout_ms * 7 / 10),
    });
    let code = oathtool(&secret, "sha1", 6);
    let mut s = env.session(&svc, "lena");
    let ((rc, transcript), took) = timed(|| s.authenticate(&[&code]));
    std::fs::write(&stop, b"").expect("tell the lock holder to stop");
    let out = holder.wait_with_output().expect("wait for the lock holder");
    assert!(
        out.status.success(),
        "lock holder: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rc, PAM_SERVICE_ERR, "{transcript:?}\n{}", env.logs.lines().join("\n"));
    assert!(
        took <= budget,
        "took {took:?}, more than timeout_ms + 500 ms ({budget:?})"
    );
    env.logs
        .expect_line(&["user=lena", "configuration error", "store busy"]);

    // The lock gone, the same login works.
    env.emu.set_fault(Fault::None);
    let mut s = env.session(&svc, "lena");
    let (rc, transcript) = s.authenticate(&[&code]);
    assert_eq!(rc, PAM_SUCCESS, "{transcript:?}");
    common::record_case(
        "one-budget",
        "local user",
        "the store locked by another process while the service is slow",
        "one `timeout_ms` budget for the whole login, store included",
        "timeout_ms + 500 ms",
    );
}

/// Not a test by itself: holds the write lock of the SQLite store at `LOCKSERVER_TEST_LOCK_STORE` (an
/// open IMMEDIATE transaction) until the stop file appears (20 s at most).
#[test]
#[ignore = "run by locked_store_and_slow_service_share_one_budget in a child process"]
fn store_lock_holder_process() {
    let (Some(path), Some(ready), Some(stop)) = (
        std::env::var_os(LOCK_STORE_ENV),
        std::env::var_os(LOCK_READY_ENV),
        std::env::var_os(LOCK_STOP_ENV),
    ) else {
        return; // run by hand: nothing to do
    };
    let conn = rusqlite::Connection::open(&path).expect("open the store");
    conn.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
    std::fs::write(&ready, b"").expect("write the ready file");
    let start = std::time::Instant::now();
    while !std::path::Path::new(&stop).exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    conn.execute_batch("ROLLBACK").expect("release the lock");
}

/// A store that answers `totp_failures` slowly: a check-then-record verifier lets every parallel
/// caller past its check before any failure is recorded.
struct SlowFailureCount(Box<dyn lockserver::store::PairingStore + Send + Sync>);

impl lockserver::store::PairingStore for SlowFailureCount {
    fn get(&self, u: &str, d: Instant) -> Result<Option<Pairing>, StoreError> {
        self.0.get(u, d)
    }
    fn insert(&self, p: &Pairing, d: Instant) -> Result<(), StoreError> {
        self.0.insert(p, d)
    }
    fn remove(&self, u: &str, d: Instant) -> Result<Option<Pairing>, StoreError> {
        self.0.remove(u, d)
    }
    fn set_pending(&self, p: &lockserver::store::PendingPairing, d: Instant) -> Result<(), StoreError> {
        self.0.set_pending(p, d)
    }
    fn pending(&self, u: &str, d: Instant) -> Result<Option<lockserver::store::PendingPairing>, StoreError> {
        self.0.pending(u, d)
    }
    fn list(&self, d: Instant) -> Result<Vec<Pairing>, StoreError> {
        self.0.list(d)
    }
    fn set_totp(&self, u: &str, on: bool, id: Option<&str>, d: Instant) -> Result<(), StoreError> {
        self.0.set_totp(u, on, id, d)
    }
    fn local_totp(&self, u: &str, d: Instant) -> Result<Option<LocalTotp>, StoreError> {
        self.0.local_totp(u, d)
    }
    fn set_local_totp(&self, u: &str, s: Option<&LocalTotp>, d: Instant) -> Result<(), StoreError> {
        self.0.set_local_totp(u, s, d)
    }
    fn accept_totp_step(&self, u: &str, step: u64, d: Instant) -> Result<bool, StoreError> {
        self.0.accept_totp_step(u, step, d)
    }
    fn record_totp_failure(&self, u: &str, now: u64, period: u64, d: Instant) -> Result<u32, StoreError> {
        self.0.record_totp_failure(u, now, period, d)
    }
    fn clear_totp_failures(&self, u: &str, d: Instant) -> Result<(), StoreError> {
        self.0.clear_totp_failures(u, d)
    }
    fn totp_failures(&self, u: &str, now: u64, period: u64, d: Instant) -> Result<u32, StoreError> {
        let n = self.0.totp_failures(u, now, period, d);
        std::thread::sleep(Duration::from_millis(100));
        n
    }
    fn schema_version(&self, d: Instant) -> Result<u32, StoreError> {
        self.0.schema_version(d)
    }
    fn migrate(&self, d: Instant) -> Result<Migrated, StoreError> {
        self.0.migrate(d)
    }
    fn export(&self, d: Instant) -> Result<lockserver::store::Snapshot, StoreError> {
        self.0.export(d)
    }
    fn import(&self, r: &lockserver::store::Snapshot, replace: bool, d: Instant) -> Result<(), StoreError> {
        self.0.import(r, replace, d)
    }
}

/// `totp verify` (CLI, C API) and the login share one verifier (#9, hole 8): every attempt is counted
/// before its code is checked, so parallel checks get no more than `rate_limit_count` codes tried.
#[test]
fn parallel_code_checks_outside_a_login_share_the_rate_limit() {
    use lockserver::accounts::Accounts;
    let (env, _) = local_env("jay", "rate_limit_count = 2\nrate_limit_period_secs = 300\n");
    let config = env.load_config();
    let store = SlowFailureCount(env.store());
    let service = lockserver::service::from_config(&config).expect("client");
    let callers = 6;
    let barrier = std::sync::Barrier::new(callers);
    let outcomes: Vec<Result<bool, AccountError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..callers)
            .map(|_| {
                scope.spawn(|| {
                    let accounts = Accounts {
                        config: &config,
                        store: &store,
                        service: service.as_ref(),
                    };
                    barrier.wait();
                    accounts.totp_verify("jay", "000000", now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a thread panicked"))
            .collect()
    });
    let checked = outcomes.iter().filter(|o| matches!(o, Ok(false))).count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, Err(AccountError::RateLimited)))
        .count();
    assert_eq!((checked, limited), (2, callers - 2), "{outcomes:?}");
}
