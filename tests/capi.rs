//! The C API from C and through its ABI from Rust:
//! - `tests/c/capi_test.c` compiled with the system compiler against the built `liblockserver.so` and
//!   the committed header, and run against the emulator (its Latch and PingID sides) twice: under
//!   valgrind when installed (which then must report no error and no definite leak), and built with
//!   AddressSanitizer + UndefinedBehaviorSanitizer;
//! - lockserver_login beside the real PAM module for the same logins: the same verdicts, texts and log
//!   lines, for both services;
//! - the examples (`examples/pair_user.c`, `examples/check_login.c`) built and run with either service.

#[allow(unused_imports)]
mod common;

use common::pam_driver::{
    Answer, Message, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_IGNORE, PAM_MAXTRIES, PAM_SERVICE_ERR, PAM_SUCCESS, Style,
};
use common::{Conf, Env, dead_port};
use lockserver::capi::lockserver_result::LOCKSERVER_OK;
use lockserver::capi::{
    lockserver_close, lockserver_login, lockserver_message_style, lockserver_open, lockserver_open_config_str,
    lockserver_set_log_socket, lockserver_string_free, lockserver_verdict,
};
use lockserver::config::Secret;
use lockserver::store::{self, LocalTotp, OpenMode, Pairing};
use lockserver_emulator::{AppConfig, Emulator, Options, PingidOptions, Plan, QrMode, SignatureMode};
use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OPERATION: &str = "CapiOperation0000001";

/// A directory with the library under its SONAME and its link name, as an install would lay it out.
fn lib_dir(tmp: &Path) -> PathBuf {
    let built = common::module_path().to_path_buf();
    let dir = tmp.join("lib");
    std::fs::create_dir_all(&dir).expect("lib dir");
    symlink(&built, dir.join("liblockserver.so")).expect("link name");
    symlink(&built, dir.join("liblockserver.so.0")).expect("soname");
    dir
}

fn compile(tmp: &Path, lib: &Path, source: &Path, compiler: &str, extra: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tmp.join(source.file_stem().expect("source name"));
    let status = Command::new(compiler)
        .args(extra)
        .args(["-Wall", "-Wextra", "-Werror", "-pthread", "-g"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join(source))
        .arg("-L")
        .arg(lib)
        .arg("-llockserver")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "{compiler} failed on {}", source.display());
    out
}

fn has_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The local TOTP secret of the user `login-totp` (RFC 6238's test key).
const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// Everything the C program gets: the emulator, the accounts, the configs and the store's users.
struct Fixture {
    _tmp: tempfile::TempDir,
    _emu: Emulator,
    /// Holds the connections of the hung service until the test ends.
    _hung: std::thread::JoinHandle<()>,
    env: Vec<(&'static str, String)>,
}

/// A service that accepts connections and never answers.
fn hung_service() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().take(16) {
            held.push(conn);
        }
    });
    (port, thread)
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("temp dir");
    let emu = Emulator::start(Options {
        apps: vec![AppConfig {
            operations: vec![OPERATION.to_string()],
            ..AppConfig::default()
        }],
        qr_mode: QrMode::Uri,
        ..Options::default()
    })
    .expect("emulator");
    let open = emu.pair("open-user").expect("pair open");
    let locked = emu.pair("locked-user").expect("pair locked");
    emu.set_latch(&locked, None, false).expect("lock");
    let otp = emu.pair("otp-user").expect("pair otp");
    emu.require_otp(&otp, None, true).expect("otp");
    let totp_account = emu.pair("totp-user").expect("pair totp");
    let code1 = emu.add_code(None).expect("code 1");
    let code2 = emu.add_code(None).expect("code 2");

    // The users lockserver_login is tried with, as `lockserver pair` would have recorded them.
    let db = tmp.path().join("capi.db");
    let store = store::open(&format!("sqlite://{}", db.display()), OpenMode::Create).expect("create the store");
    for (user, account) in [
        ("login-open", &open),
        ("login-locked", &locked),
        ("login-otp", &otp),
        ("login-totp", &totp_account),
    ] {
        store
            .insert(
                &Pairing {
                    user: user.into(),
                    account_id: account.clone(),
                    enabled: true,
                    totp_enabled: false,
                    totp_id: None,
                },
                store::default_deadline(),
            )
            .expect("store a pairing");
    }
    store
        .set_local_totp(
            "login-totp",
            Some(&LocalTotp {
                secret: Secret::new(TOTP_SECRET),
                last_step: None,
                failures: 0,
                window_start: 0,
            }),
            store::default_deadline(),
        )
        .and_then(|()| store.set_totp("login-totp", true, None, store::default_deadline()))
        .expect("enrol the local TOTP");
    drop(store);

    let config_with = |url: &str, secret: &str, timeout_ms: u32| {
        format!(
            "service = \"latch\"\noperations = [\"sshd:{OPERATION}:true\", \"sudo:{OPERATION}:false\", \"TOTP:TOTP:true\"]\n\
             timeout_ms = {timeout_ms}\nstore = \"sqlite://{}\"\n[latch]\napp_id = \"{}\"\nsecret = \"{secret}\"\nurl = \"{url}\"\n\
             [totp]\nsource = \"local\"\n",
            db.display(),
            emu.app_id(),
        )
    };
    // A wide budget: under valgrind on a loaded machine the first SQLite open of a handle alone has
    // taken over 3 s (the store then counts as unreadable: MISCONFIGURED). No login here waits for it
    // but the hung one, which has its own.
    let config = config_with(emu.url(), emu.secret(), WIDE_TIMEOUT_MS);
    let config_path = tmp.path().join("lockserver.conf");
    std::fs::write(&config_path, &config).expect("write config");
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
    // A dictionary of the admin's own texts (root-owned, not writable by others, as the module wants).
    let dictionary = tmp.path().join("dictionary.xml");
    std::fs::write(
        &dictionary,
        "<?xml version=\"1.0\"?>\n<translations><lock><locked>Cerrado: abre tu Latch.</locked></lock></translations>\n",
    )
    .expect("write the dictionary");
    std::fs::set_permissions(&dictionary, std::fs::Permissions::from_mode(0o644)).expect("chmod dictionary");
    let wrong_secret: String = emu.secret().chars().rev().collect();
    let (hung_port, hung) = hung_service();

    let env = vec![
        ("LS_CONFIG", config.clone()),
        ("LS_CONFIG_PATH", config_path.display().to_string()),
        ("LS_OPEN_ACCOUNT", open),
        ("LS_LOCKED_ACCOUNT", locked),
        ("LS_OTP_ACCOUNT", otp),
        ("LS_CODE1", code1),
        ("LS_CODE2", code2),
        ("LS_OPERATION_ID", OPERATION.to_string()),
        ("LS_EMULATOR_PORT", emu.addr().port().to_string()),
        ("LS_TOTP_SECRET", TOTP_SECRET.to_string()),
        (
            "LS_DOWN_CONFIG",
            // A refused connection ends at once; the long budget is for valgrind on a busy machine
            // (the store open alone can take seconds there, and a budget spent in it is another verdict).
            config_with(&format!("http://127.0.0.1:{}", dead_port()), emu.secret(), 15000),
        ),
        (
            "LS_HUNG_CONFIG",
            config_with(&format!("http://127.0.0.1:{hung_port}"), emu.secret(), HUNG_TIMEOUT_MS),
        ),
        (
            "LS_WRONG_SECRET_CONFIG",
            config_with(emu.url(), &wrong_secret, WIDE_TIMEOUT_MS),
        ),
        ("LS_DICTIONARY", dictionary.display().to_string()),
        (
            "LS_PINGID_CONFIG",
            pingid_config(&emu, &tmp.path().join("capi-pingid.db")),
        ),
    ];
    Fixture {
        _tmp: tmp,
        _emu: emu,
        _hung: hung,
        env,
    }
}

/// A PingID config for the emulator's PingID account, with its own store (not created yet). The polls
/// of a push share `timeout_ms` with the login's other service calls: under valgrind each costs tens of
/// milliseconds, so the budget is wide and the polls few.
fn pingid_config(emu: &Emulator, db: &Path) -> String {
    let p = PingidOptions::default();
    format!(
        "service = \"pingid\"\ntimeout_ms = 10000\nstore = \"sqlite://{}\"\n[pingid]\naccount_id = \"{}\"\n\
         application_id = \"{}\"\ntoken = \"{}\"\napi_key = \"{}\"\nurl = \"{}/pingid\"\n\
         push_timeout_secs = 5\npoll_interval_ms = 500\n",
        db.display(),
        p.account_id,
        p.applications[0],
        p.token,
        p.api_key_b64,
        emu.url(),
    )
}

/// `timeout_ms` of the configs whose service answers (or refuses connections at once).
const WIDE_TIMEOUT_MS: u32 = 10_000;

/// `timeout_ms` of the config whose service never answers.
const HUNG_TIMEOUT_MS: u32 = 300;

/// Runs a compiled C test program with the fixture's environment; asserts it passed enough checks.
/// A login against the hung service must end within `hung_bound_ms`.
fn run_c_tests(mut cmd: Command, fixture: &Fixture, what: &str, hung_bound_ms: u32) {
    for (k, v) in &fixture.env {
        cmd.env(k, v);
    }
    cmd.env("LS_HUNG_BOUND_MS", hung_bound_ms.to_string());
    let output = cmd.output().expect("run the C tests");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(" 0 failed"),
        "C tests ({what}) failed ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    let passed: u32 = stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a 'N passed, M failed' line");
    assert!(passed > 200, "only {passed} C checks ran ({what})");
}

#[test]
fn c_program_exercises_every_function() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let lib = lib_dir(tmp.path());
    let binary = compile(tmp.path(), &lib, Path::new("tests/c/capi_test.c"), "cc", &["-std=c11"]);
    // Valgrind runs the library some 20-50 times slower: there the bound only proves the login ends.
    let (cmd, hung_bound_ms) = if has_valgrind() {
        let mut c = Command::new("valgrind");
        c.args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(&binary);
        (c, 5000)
    } else {
        eprintln!("valgrind is not installed: running the C tests without it");
        (Command::new(&binary), HUNG_TIMEOUT_MS + 500)
    };
    run_c_tests(cmd, &fixture, "valgrind", hung_bound_ms);
}

/// The same C program built with AddressSanitizer and UndefinedBehaviorSanitizer (issue #9). The
/// test program is instrumented, the Rust library is not; ASan's runtime comes first (the program is
/// linked with it) and intercepts every malloc and free, the library's included, so a string freed
/// twice or the wrong way, a write past a buffer the program got, or a leak of the program's is
/// reported and fails the run.
#[test]
fn c_program_under_address_and_undefined_behaviour_sanitizers() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let lib = lib_dir(tmp.path());
    let binary = compile(
        tmp.path(),
        &lib,
        Path::new("tests/c/capi_test.c"),
        "cc",
        &[
            "-std=c11",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
        ],
    );
    let mut cmd = Command::new(&binary);
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=97");
    // The library is not instrumented: a login costs what it costs without sanitizers, so the bound is
    // timeout_ms + 0.5 s.
    run_c_tests(cmd, &fixture, "ASan+UBSan", HUNG_TIMEOUT_MS + 500);
}

#[test]
fn header_declares_only_the_api_and_compiles_as_c_and_cpp() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/lockserver.h")).expect("header");
    let code = strip_comments(&header);
    let declared: Vec<&str> = code
        .split('(')
        .filter_map(|before| before.split(|c: char| !(c.is_alphanumeric() || c == '_')).next_back())
        .filter(|name| !name.is_empty())
        .collect();
    assert!(declared.len() > 20, "few declarations found: {declared:?}");
    for name in declared {
        assert!(name.starts_with("lockserver_"), "the header declares {name}");
    }
    assert!(!header.contains("pam_sm_"), "the PAM hooks are not part of the C API");
    assert!(header.contains(&format!(
        "#define LOCKSERVER_MAX_INPUT {}",
        lockserver::capi::LOCKSERVER_MAX_INPUT
    )));
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = tmp.path().join("h.c");
    std::fs::write(
        &src,
        "#include <lockserver.h>\nint main(void) { return lockserver_version() == 0; }\n",
    )
    .expect("write");
    for (compiler, lang) in [("cc", "-std=c11"), ("c++", "-std=c++17")] {
        let status = Command::new(compiler)
            .args([
                "-x",
                if compiler == "cc" { "c" } else { "c++" },
                lang,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
            ])
            .arg("-I")
            .arg(root.join("include"))
            .args(["-fsyntax-only"])
            .arg(&src)
            .status()
            .expect("run the compiler");
        assert!(status.success(), "the header does not compile with {compiler} {lang}");
    }
}

/// The header without its comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..].find("*/").map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
}

#[test]
fn exports_are_exactly_the_api_and_the_pam_hooks() {
    let lib = common::module_path().to_path_buf();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("run nm");
    assert!(out.status.success(), "nm failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    let pam: Vec<&str> = names.iter().copied().filter(|n| n.starts_with("pam_sm_")).collect();
    assert_eq!(pam.len(), 6, "the six pam_sm_* hooks: {pam:?}");
    for name in &names {
        assert!(
            name.starts_with("lockserver_") || name.starts_with("pam_sm_"),
            "unexpected export {name}"
        );
    }
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/lockserver.h")).expect("header");
    for name in names.iter().filter(|n| n.starts_with("lockserver_")) {
        assert!(
            header.contains(&format!("{name}(")),
            "{name} is exported but not in the header"
        );
    }
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("run readelf");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains("[liblockserver.so.0]"),
        "SONAME liblockserver.so.0:\n{dynamic}"
    );
    assert!(dynamic.contains("NODELETE"), "linked with -z nodelete:\n{dynamic}");
    // DESIGN §10: no run-time dependency beyond libc and libpam (ld-linux is glibc's loader). The
    // unwinder is linked in statically (module/build.rs).
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    for lib in &needed {
        assert!(
            lib.starts_with("libc.so") || lib.starts_with("libpam.so") || lib.starts_with("ld-linux"),
            "unexpected run-time dependency {lib}: {needed:?}"
        );
    }
}

/// A scripted person for lockserver_login's conversation: answers from a queue (none left: no answer,
/// as the PAM driver's user who hangs up), every text recorded as the PAM driver records it.
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Message>,
}

/// The conversation callback over a [`Script`]. It must not panic (it is called from C's side of the
/// boundary): nothing in it unwraps.
unsafe extern "C" fn scripted(
    userdata: *mut c_void,
    style: lockserver_message_style,
    text: *const c_char,
    answer: *mut c_char,
    answer_size: usize,
) -> c_int {
    // SAFETY: the test passes a `Script` as userdata, alive for the whole lockserver_login call.
    let script = unsafe { &mut *userdata.cast::<Script>() };
    // SAFETY: the library passes a NUL-terminated text, valid during the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned();
    let style = match style {
        lockserver_message_style::LOCKSERVER_PROMPT_ECHO_OFF => Style::EchoOff,
        lockserver_message_style::LOCKSERVER_PROMPT_ECHO_ON => Style::EchoOn,
        lockserver_message_style::LOCKSERVER_MESSAGE_ERROR => Style::Error,
        lockserver_message_style::LOCKSERVER_MESSAGE_INFO => Style::Info,
    };
    script.seen.push(Message {
        style,
        text: text.clone(),
    });
    if !style.is_prompt() {
        return 0;
    }
    let Some(next) = script.answers.pop_front() else {
        return 1;
    };
    let reply = match next {
        Answer::Text(t) => t,
        Answer::Later(mut f) => f(&text),
    };
    if answer.is_null() || reply.len() >= answer_size {
        return 1;
    }
    // SAFETY: `answer` has `answer_size` writable bytes; the reply and its NUL fit (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(reply.as_ptr(), answer.cast::<u8>(), reply.len());
        *answer.add(reply.len()) = 0;
    }
    0
}

/// lockserver_login on the env's config file, logging to the env's collector: the result, the verdict
/// and what the person saw. The handle (and its store connection) is closed before it returns, before
/// the module logs in.
fn c_api_login(env: &Env, user: &str, service: &str, answers: Vec<Answer>) -> (lockserver_verdict, Vec<Message>) {
    let path = CString::new(env.config_path().display().to_string()).expect("path");
    let (user, service) = (
        CString::new(user).expect("user"),
        CString::new(service).expect("service"),
    );
    let mut script = Script {
        answers: answers.into(),
        seen: Vec::new(),
    };
    let mut handle = std::ptr::null_mut();
    let mut verdict = lockserver_verdict::LOCKSERVER_VERDICT_ALLOWED;
    // SAFETY: NUL-terminated strings, writable out-pointers, a callback over the `Script` passed.
    let rc = unsafe {
        assert_eq!(lockserver_open(path.as_ptr(), &mut handle), LOCKSERVER_OK, "open");
        let socket = CString::new(env.logs.path.display().to_string()).expect("socket path");
        assert_eq!(
            lockserver_set_log_socket(handle, socket.as_ptr()),
            LOCKSERVER_OK,
            "log socket"
        );
        let rc = lockserver_login(
            handle,
            user.as_ptr(),
            service.as_ptr(),
            Some(scripted),
            std::ptr::from_mut(&mut script).cast(),
            &mut verdict,
            std::ptr::null_mut(),
        );
        assert_eq!(lockserver_close(handle), LOCKSERVER_OK, "close");
        rc
    };
    assert_eq!(rc, LOCKSERVER_OK, "lockserver_login");
    (verdict, script.seen)
}

/// One login situation, set up twice (for two users, so neither run sees the other's tokens, failure
/// counts or store rows), decided once by the PAM module and once by lockserver_login.
struct Case {
    name: &'static str,
    conf: fn(&mut Conf),
    /// Pairs `user` (or not) and sets its lock; returns the account id.
    setup: fn(&Env, &str) -> Option<String>,
    answers: fn(&Env, Option<&str>) -> Vec<Answer>,
    service: &'static str,
    pam: i32,
    verdict: lockserver_verdict,
}

fn paired(env: &Env, user: &str) -> Option<String> {
    Some(env.pair(user))
}

fn locked(env: &Env, user: &str) -> Option<String> {
    let account = env.pair(user);
    env.latch(&account, None, false);
    Some(account)
}

fn with_otp(env: &Env, user: &str) -> Option<String> {
    let account = env.pair(user);
    env.emu.require_otp(&account, None, true).expect("otp");
    Some(account)
}

fn unpaired_at_service(env: &Env, user: &str) -> Option<String> {
    let account = env.pair(user);
    let client = lockserver::service::from_config(&env.load_config()).expect("client");
    client
        .unpair(&account, Instant::now() + Duration::from_secs(5))
        .expect("unpair at the service");
    Some(account)
}

fn nobody(_: &Env, _: &str) -> Option<String> {
    None
}

fn no_answers(_: &Env, _: Option<&str>) -> Vec<Answer> {
    Vec::new()
}

fn wrong_codes(_: &Env, _: Option<&str>) -> Vec<Answer> {
    ["wrong1", "wrong2", "wrong3"].iter().map(|a| Answer::text(a)).collect()
}

/// A wrong one-time password, then the one the phone shows.
fn wrong_then_token(env: &Env, account: Option<&str>) -> Vec<Answer> {
    let (emu, account) = (Arc::clone(&env.emu), account.unwrap_or_default().to_string());
    vec![
        Answer::text("wrong1"),
        Answer::later(move |_| emu.last_otp(&account, None).unwrap_or_default()),
    ]
}

fn unchanged(_: &mut Conf) {}

#[test]
fn lockserver_login_decides_as_the_pam_module_with_the_same_texts() {
    use lockserver_verdict::*;
    let cases = [
        Case {
            name: "open",
            conf: unchanged,
            setup: paired,
            answers: no_answers,
            service: "sshd",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "locked",
            conf: unchanged,
            setup: locked,
            answers: no_answers,
            service: "sshd",
            pam: PAM_AUTH_ERR,
            verdict: LOCKSERVER_VERDICT_REFUSED,
        },
        Case {
            name: "locked, its operation's check off",
            conf: |c| c.operations = vec![format!("sudo:{}:false", common::OP_A)],
            setup: locked,
            answers: no_answers,
            service: "sudo",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "one-time password wrong, then right",
            conf: unchanged,
            setup: with_otp,
            answers: wrong_then_token,
            service: "sshd",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "one-time password wrong every time",
            conf: unchanged,
            setup: with_otp,
            answers: wrong_codes,
            service: "sshd",
            pam: PAM_MAXTRIES,
            verdict: LOCKSERVER_VERDICT_MAX_TRIES,
        },
        Case {
            name: "one-time password not given",
            conf: unchanged,
            setup: with_otp,
            answers: no_answers,
            service: "sshd",
            pam: PAM_AUTH_ERR,
            verdict: LOCKSERVER_VERDICT_REFUSED,
        },
        Case {
            name: "unpaired, ignore",
            conf: unchanged,
            setup: nobody,
            answers: no_answers,
            service: "sshd",
            pam: PAM_IGNORE,
            verdict: LOCKSERVER_VERDICT_IGNORE,
        },
        Case {
            name: "unpaired, deny",
            conf: |c| c.unpaired = "deny".into(),
            setup: nobody,
            answers: no_answers,
            service: "sshd",
            pam: PAM_AUTH_ERR,
            verdict: LOCKSERVER_VERDICT_REFUSED,
        },
        Case {
            name: "unpaired at the service (from the phone), unpaired = allow",
            conf: |c| c.unpaired = "allow".into(),
            setup: unpaired_at_service,
            answers: no_answers,
            service: "sshd",
            pam: PAM_AUTH_ERR,
            verdict: LOCKSERVER_VERDICT_REFUSED,
        },
        Case {
            name: "service down, secure",
            conf: |c| c.url = format!("http://127.0.0.1:{}", common::dead_port()),
            setup: paired,
            answers: no_answers,
            service: "sshd",
            pam: PAM_AUTHINFO_UNAVAIL,
            verdict: LOCKSERVER_VERDICT_UNAVAILABLE,
        },
        Case {
            name: "service down, safe",
            conf: |c| {
                c.url = format!("http://127.0.0.1:{}", common::dead_port());
                c.fail_mode = "safe".into();
            },
            setup: locked,
            answers: no_answers,
            service: "sshd",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "wrong secret, safe",
            conf: |c| {
                c.secret = c.secret.chars().rev().collect();
                c.fail_mode = "safe".into();
            },
            setup: paired,
            answers: no_answers,
            service: "sshd",
            pam: PAM_SERVICE_ERR,
            verdict: LOCKSERVER_VERDICT_MISCONFIGURED,
        },
    ];
    decide_both_ways(cases, Env::new);
}

/// A PingID user paired as a claimed key leaves it (user, device, store row), its phone planned.
fn pingid_paired_with(env: &Env, user: &str, plan: Plan) -> Option<String> {
    env.pair_pingid(user);
    env.emu.pingid_plan(Some(user), plan).expect("plan the phone");
    Some(user.to_string())
}

fn approves(env: &Env, user: &str) -> Option<String> {
    pingid_paired_with(env, user, Plan::new("approve"))
}

fn rejects(env: &Env, user: &str) -> Option<String> {
    pingid_paired_with(env, user, Plan::new("reject"))
}

/// The service asks for a code instead of a push; the right one is [`PINGID_OTP`].
fn asks_a_code(env: &Env, user: &str) -> Option<String> {
    let mut plan = Plan::new("otp");
    plan.otp = Some(PINGID_OTP.to_string());
    pingid_paired_with(env, user, plan)
}

const PINGID_OTP: &str = "135790";

fn the_right_code(_: &Env, _: Option<&str>) -> Vec<Answer> {
    vec![Answer::text("000000"), Answer::text(PINGID_OTP)]
}

fn bad_signatures(env: &Env, user: &str) -> Option<String> {
    let account = approves(env, user);
    env.emu.pingid_set_signature(SignatureMode::BadKey);
    account
}

#[test]
fn lockserver_login_decides_pingid_logins_as_the_pam_module() {
    use lockserver_verdict::*;
    let cases = [
        Case {
            name: "PingID push approved",
            conf: unchanged,
            setup: approves,
            answers: no_answers,
            service: "sshd",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "PingID push rejected",
            conf: unchanged,
            setup: rejects,
            answers: no_answers,
            service: "sshd",
            pam: PAM_AUTH_ERR,
            verdict: LOCKSERVER_VERDICT_REFUSED,
        },
        Case {
            name: "PingID code wrong, then right",
            conf: unchanged,
            setup: asks_a_code,
            answers: the_right_code,
            service: "sshd",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "PingID code wrong every time",
            conf: unchanged,
            setup: asks_a_code,
            answers: wrong_codes,
            service: "sshd",
            pam: PAM_MAXTRIES,
            verdict: LOCKSERVER_VERDICT_MAX_TRIES,
        },
        Case {
            name: "PingID down, safe: FAIL-OPEN",
            conf: |c| {
                c.url = format!("http://127.0.0.1:{}", common::dead_port());
                c.fail_mode = "safe".into();
            },
            setup: rejects,
            answers: no_answers,
            service: "sshd",
            pam: PAM_SUCCESS,
            verdict: LOCKSERVER_VERDICT_ALLOWED,
        },
        Case {
            name: "PingID answers with a bad signature, safe",
            conf: |c| c.fail_mode = "safe".into(),
            setup: bad_signatures,
            answers: no_answers,
            service: "sshd",
            pam: PAM_SERVICE_ERR,
            verdict: LOCKSERVER_VERDICT_MISCONFIGURED,
        },
    ];
    decide_both_ways(cases, Env::pingid);
}

/// (priority, message) of each log line: what the PAM module and lockserver_login must agree on. The
/// prefixes differ on purpose (`pam_lockserver(...)` / `lockserver_login(...)`), as do the user names
/// of the two runs and the tag.
fn log_messages(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let (pri, rest) = l.split_once('>')?;
            let (_, after) = rest.split_once(" rhost=")?;
            let (_, message) = after.split_once(": ")?;
            Some((format!("{pri}>"), message.to_string()))
        })
        .collect()
}

/// Runs every case twice, through lockserver_login and through the real PAM module, each in a fresh
/// `new_env()`, and asserts the same verdict, the same texts in the same order, and the same log lines.
fn decide_both_ways(cases: impl IntoIterator<Item = Case>, new_env: fn() -> Env) {
    for case in cases {
        let mut env = new_env();
        // Pair while the config still names the emulator with the right secret.
        let c_account = (case.setup)(&env, "via-c-api");
        let pam_account = (case.setup)(&env, "via-pam");
        env.set_conf(case.conf);
        env.logs.clear();
        let (verdict, c_seen) = c_api_login(
            &env,
            "via-c-api",
            case.service,
            (case.answers)(&env, c_account.as_deref()),
        );
        let c_lines = env.logs.lines();
        env.logs.clear();
        let svc = env.service(case.service, &[]);
        let (code, pam_seen) = env
            .session(&svc, "via-pam")
            .authenticate_with((case.answers)(&env, pam_account.as_deref()));
        let pam_lines = env.logs.lines();
        assert_eq!(code, case.pam, "{}: the module", case.name);
        assert_eq!(verdict, case.verdict, "{}: lockserver_login", case.name);
        // pam_debug.so, behind the module to tell PAM_IGNORE apart, says its own "auth=..." line.
        let module_seen: Vec<Message> = pam_seen
            .0
            .into_iter()
            .filter(|m| !m.text.starts_with("auth="))
            .collect();
        assert_eq!(
            c_seen, module_seen,
            "{}: the same prompts and texts, in order",
            case.name
        );
        assert!(
            !c_seen.is_empty() || case.pam == PAM_SUCCESS || case.pam == PAM_IGNORE,
            "{}: a refusal says why",
            case.name
        );
        assert!(
            c_lines.iter().all(|l| l.contains(&format!(
                "lockserver_login({}:auth): user=via-c-api rhost=-: ",
                case.service
            ))),
            "{}: every line of lockserver_login names it, the service and the user: {c_lines:#?}",
            case.name
        );
        assert!(!c_lines.is_empty(), "{}: lockserver_login logs its decision", case.name);
        assert_eq!(
            log_messages(&c_lines),
            log_messages(&pam_lines),
            "{}: the same log lines as the module",
            case.name
        );
    }
}

#[test]
fn unpaired_users_follow_the_unpaired_policy_and_a_login_never_creates_the_store() {
    use lockserver_verdict::*;
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = tmp.path().join("none.db");
    for (policy, want, says_why) in [
        ("ignore", LOCKSERVER_VERDICT_IGNORE, false),
        ("allow", LOCKSERVER_VERDICT_ALLOWED, false),
        ("deny", LOCKSERVER_VERDICT_REFUSED, true),
    ] {
        // No store yet (nobody has paired), a service that is never asked.
        let config = format!(
            "service = \"latch\"\nunpaired = \"{policy}\"\nstore = \"sqlite://{}\"\n[latch]\n\
             app_id = \"abcdefghijklmnopqrst\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789ABCD\"\n\
             url = \"http://127.0.0.1:{}\"\n",
            db.display(),
            common::dead_port()
        );
        let config = CString::new(config).expect("config");
        let mut script = Script {
            answers: VecDeque::new(),
            seen: Vec::new(),
        };
        let (mut handle, mut verdict, mut message) =
            (std::ptr::null_mut(), LOCKSERVER_VERDICT_ALLOWED, std::ptr::null_mut());
        // SAFETY: NUL-terminated strings, writable out-pointers, a callback over the `Script` passed.
        unsafe {
            assert_eq!(lockserver_open_config_str(config.as_ptr(), &mut handle), LOCKSERVER_OK);
            let rc = lockserver_login(
                handle,
                c"nobody".as_ptr(),
                c"sshd".as_ptr(),
                Some(scripted),
                std::ptr::from_mut(&mut script).cast(),
                &mut verdict,
                &mut message,
            );
            assert_eq!(rc, LOCKSERVER_OK);
            assert_eq!(lockserver_close(handle), LOCKSERVER_OK);
        }
        assert_eq!(verdict, want, "unpaired = {policy}");
        let text = (!message.is_null()).then(|| {
            // SAFETY: a string the library just returned; freed once, after it is read.
            let t = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
            // SAFETY: as above.
            unsafe { lockserver_string_free(message) };
            t
        });
        assert_eq!(text.is_some(), says_why, "unpaired = {policy}: {text:?}");
        let errors: Vec<&str> = script
            .seen
            .iter()
            .filter(|m| m.style == Style::Error)
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(
            errors,
            text.as_deref().into_iter().collect::<Vec<_>>(),
            "the message is the text shown"
        );
    }
    assert!(!db.exists(), "a login never creates the store");
}

/// Runs an example program with `stdin` as its input; its exit code and what it printed.
fn run_example(binary: &Path, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the example");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for the example");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

struct Examples {
    _tmp: tempfile::TempDir,
    pair: PathBuf,
    check: PathBuf,
}

fn examples() -> Examples {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lib = lib_dir(tmp.path());
    let pair = compile(tmp.path(), &lib, Path::new("examples/pair_user.c"), "cc", &["-std=c11"]);
    let check = compile(
        tmp.path(),
        &lib,
        Path::new("examples/check_login.c"),
        "cc",
        &["-std=c11"],
    );
    Examples { _tmp: tmp, pair, check }
}

#[test]
fn the_examples_pair_and_log_in_with_latch() {
    let ex = examples();
    let env = Env::new();
    let conf = env.config_path().display().to_string();
    // The Latch app shows a code; the program asks for it (the key calls are not Latch's).
    let code = env.emu.add_code(None).expect("a pairing code");
    let (status, out) = run_example(&ex.pair, &[&conf, "alice"], &format!("{code}\n"));
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.contains("Pairing code from the Latch app: alice is now paired"),
        "{out}"
    );
    let account = env
        .store()
        .get("alice", Instant::now() + Duration::from_secs(5))
        .expect("store")
        .expect("alice is paired")
        .account_id;
    let (status, out) = run_example(&ex.check, &[&conf, "alice", "sshd"], "");
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("alice: allowed"), "{out}");
    env.latch(&account, None, false);
    let (status, out) = run_example(&ex.check, &[&conf, "alice", "sshd"], "");
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("alice: refused"), "{out}");
    // A wrong code pairs nobody.
    let (status, out) = run_example(&ex.pair, &[&conf, "bob"], "ZZZZZZ\n");
    assert_eq!(status, Some(1), "{out}");
    let (status, out) = run_example(&ex.check, &[&conf, "bob", "sshd"], "");
    assert_eq!(status, Some(2), "bob is not paired: {out}");
}

#[test]
fn the_examples_pair_and_log_in_with_pingid() {
    use std::io::BufRead;
    let ex = examples();
    let env = Env::pingid();
    let conf = env.config_path().display().to_string();
    // The program shows a key and waits; the phone enters it.
    let mut child = Command::new(&ex.pair)
        .args([conf.as_str(), "carol", "30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pair_user");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut key = None;
    let mut line = String::new();
    while key.is_none() && stdout.read_line(&mut line).expect("read") > 0 {
        key = line.strip_prefix("pairing key: ").map(|k| k.trim().to_string());
        line.clear();
    }
    let Some(key) = key else {
        let _ = child.kill();
        panic!("pair_user showed no key: {:?}", child.wait_with_output());
    };
    let (_, user) = env
        .emu
        .pingid_claim(&key, None, None)
        .expect("the phone claims the key");
    assert_eq!(user, "carol");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    let status = child.wait().expect("wait for pair_user");
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("carol is now paired"), "{rest}");
    assert!(
        env.store()
            .get("carol", Instant::now() + Duration::from_secs(5))
            .expect("store")
            .is_some(),
        "the pairing is recorded"
    );

    env.emu.pingid_plan(Some("carol"), Plan::new("approve")).expect("plan");
    let (status, out) = run_example(&ex.check, &[&conf, "carol", "sshd"], "");
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.contains("Approve the login on your phone."),
        "the push is announced: {out}"
    );
    assert!(out.contains("carol: allowed"), "{out}");
    env.emu.pingid_plan(Some("carol"), Plan::new("reject")).expect("plan");
    let (status, out) = run_example(&ex.check, &[&conf, "carol", "sshd"], "");
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("carol: refused"), "{out}");
    // The code the service asks for instead of a push is typed at the program's prompt.
    let mut plan = Plan::new("otp");
    plan.otp = Some(PINGID_OTP.to_string());
    env.emu.pingid_plan(Some("carol"), plan).expect("plan");
    let (status, out) = run_example(&ex.check, &[&conf, "carol", "sshd"], &format!("{PINGID_OTP}\n"));
    assert_eq!(status, Some(0), "{out}");
}
