//! The `lockserver` CLI as a sysadmin and a sudo user meet it: verbs, exit codes, messages that say
//! what to do next, and who may act for whom. The CLI needs root; these tests skip (saying so) when
//! not run as root — CI runs them as root.

#[allow(unused_imports)]
mod common;

use common::{Env, current_uid, write_file_mode};
use std::process::{Command, Output};

fn run(env: &Env, sudo_user: Option<&str>, args: &[&str]) -> Option<Output> {
    if current_uid() != 0 {
        eprintln!("not root: CLI test skipped (CI runs as root)");
        return None;
    }
    let mut cmd = Command::new(common::cli_path());
    cmd.arg("-c").arg(env.config_path()).args(args);
    cmd.env_remove("SUDO_USER").env_remove("SUDO_UID");
    if let Some(user) = sudo_user {
        cmd.env("SUDO_USER", user).env("SUDO_UID", "1000");
    }
    Some(cmd.output().expect("run lockserver"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn pair_status_unpair_users_with_exit_codes() {
    let env = Env::new();
    let code = env.emu.add_code(None).expect("code");
    let Some(out) = run(&env, None, &["pair", &code, "--user", "root"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("root is now paired"), "{}", text(&out));

    let out = run(&env, None, &["pair", "ABC234", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(6), "already paired: {}", text(&out));
    assert!(text(&out).contains("unpair"), "tells what to do: {}", text(&out));

    let out = run(&env, None, &["status", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("root: open"));
    let account = env
        .store()
        .get("root", lockserver::store::default_deadline())
        .expect("store")
        .expect("paired")
        .account_id;
    env.latch(&account, None, false);
    let out = run(&env, None, &["status", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(1), "locked: {}", text(&out));
    assert!(text(&out).contains("root: locked"));

    let out = run(&env, None, &["users"]).expect("root");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains(&account), "{}", text(&out));

    let out = run(&env, None, &["unpair", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&env, None, &["status", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(6), "not paired: {}", text(&out));
    assert!(
        text(&out).contains("lockserver pair"),
        "tells what to do: {}",
        text(&out)
    );
}

#[test]
fn expired_or_malformed_codes_say_what_to_do() {
    let env = Env::new();
    let Some(out) = run(&env, None, &["pair", "ZZZZZZ", "--user", "root"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(5), "206 from the service: {}", text(&out));
    assert!(
        text(&out).contains("Ask the Latch app for a new code"),
        "{}",
        text(&out)
    );
    let out = run(&env, None, &["pair", "12", "--user", "root"]).expect("root");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("6 letters or digits"), "{}", text(&out));
    let out = run(&env, None, &["pair", "ABC234", "--user", "no-such-user-here"]).expect("root");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        env.store()
            .list(lockserver::store::default_deadline())
            .expect("list")
            .is_empty(),
        "nothing changed"
    );
}

#[test]
fn sudo_users_act_only_on_themselves_with_the_system_config() {
    let env = Env::new();
    // Through sudo, only the system config: another file would bring its own store and service.
    let Some(out) = run(&env, Some("alice"), &["status"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("-c/--config is not allowed"), "{}", text(&out));
    for args in [
        &["status", "--user", "bob"][..],
        &["users"],
        &["--trust-owner", "1000", "status"],
    ] {
        let out = run(&env, Some("alice"), args).expect("root");
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", text(&out));
    }
    // Root must name the user.
    let out = run(&env, None, &["status"]).expect("root");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("--user NAME"), "{}", text(&out));
}

#[test]
fn qr_file_is_written_new_never_through_a_link() {
    let mut env = Env::new();
    env.set_conf(|c| c.operations = vec!["TOTP:TOTP:true".into()]);
    let text_conf = format!("{}source = \"local\"\n", env.conf.render());
    write_file_mode(&env.config_path(), &text_conf, 0o600);
    env.pair("root");
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    let link = env.dir.path().join("qr.png");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let Some(out) = run(
        &env,
        None,
        &[
            "totp",
            "create",
            "--user",
            "root",
            "--qr-file",
            link.to_str().expect("path"),
        ],
    ) else {
        return;
    };
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious",
        "the link target is untouched"
    );
}

#[test]
fn check_config_reports_each_part() {
    let env = Env::new();
    let Some(out) = run(&env, None, &["check-config"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("config: ok") && t.contains("store: ok") && t.contains("service: ok"),
        "{t}"
    );
    assert!(t.contains("service: warning") && t.contains("plain HTTP"), "{t}");

    // A wrong secret: the service rejects the signature (102), and the fix says what to check.
    let bad = env.conf.render().replace(&env.conf.secret, &"x".repeat(40));
    write_file_mode(&env.config_path(), &bad, 0o600);
    let out = run(&env, None, &["check-config"]).expect("root");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("102") && text(&out).contains("fix: check app_id and secret"),
        "{}",
        text(&out)
    );

    // A config readable by others while holding the secret.
    write_file_mode(&env.config_path(), &env.conf.render(), 0o644);
    let out = run(&env, None, &["check-config"]).expect("root");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("permission: PROBLEM"), "{}", text(&out));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));

    // A store whose directory others can write (#9): what, where and the fix, in one line.
    write_file_mode(&env.config_path(), &env.conf.render(), 0o600);
    env.pair("alice");
    let store_dir = env.store_path().parent().expect("store dir").to_path_buf();
    std::fs::set_permissions(&store_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let out = run(&env, None, &["check-config"]).expect("root");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let fix = format!("chmod go-w {}", store_dir.display());
    let line = text(&out)
        .lines()
        .find(|l| l.contains(&fix))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no line with {fix:?}: {}", text(&out)));
    assert!(line.contains("writable by group or others"), "{line}");
    std::fs::set_permissions(&store_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    // A bad value: the key, the line and where to read about it.
    write_file_mode(&env.config_path(), &env.conf.render().replace("secure", "open"), 0o600);
    let out = run(&env, None, &["check-config"]).expect("root");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains(":3") && text(&out).contains("lockserver.conf(5)"),
        "{}",
        text(&out)
    );

    // The service is down: exit 4, and the fix names what to look at.
    let mut env = env;
    env.set_conf(|c| c.url = format!("http://127.0.0.1:{}", common::dead_port()));
    let out = run(&env, None, &["check-config"]).expect("root");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("fix: check url, proxy and ca_file"),
        "{}",
        text(&out)
    );
}

/// Every operation id must be one of the application's at the service: an unknown one fails every login it
/// applies to with 301, while the service itself answers fine.
#[test]
fn check_config_names_unknown_operation_ids() {
    let mut env = Env::new();
    env.set_conf(|c| {
        c.operations = vec![
            format!("sshd:{}:true", common::OP_A),
            "sudo:NoSuchOperationId12:true".into(),
            "su:AlsoUnknownId:false".into(),
            "TOTP:TOTP:true".into(),
        ]
    });
    let Some(out) = run(&env, None, &["check-config"]) else {
        return;
    };
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("service: ok"), "the service itself answers: {t}");
    assert!(
        t.contains("operations: PROBLEM: sudo:NoSuchOperationId12:true"),
        "names the bad one: {t}"
    );
    assert!(t.contains(&format!("sshd:{}:true: known", common::OP_A)), "{t}");
    assert!(
        t.contains("operations: warning: su:AlsoUnknownId:false"),
        "an entry that is off: {t}"
    );
    assert!(!t.contains("TOTP:TOTP"), "the TOTP switch is no operation id: {t}");

    // The same as JSON: one object, stable keys.
    let out = run(&env, None, &["check-config", "--json"]).expect("root");
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["ok"], false);
    assert_eq!(v["config"], env.config_path().display().to_string());
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["check"], "operations");
    assert!(
        problems[0]["what"]
            .as_str()
            .is_some_and(|w| w.contains("NoSuchOperationId12"))
    );
    assert!(problems[0]["fix"].as_str().is_some_and(|f| !f.is_empty()));
    let checks = v["checks"].as_array().expect("checks");
    for c in checks {
        assert!(
            ["ok", "warning", "problem"].contains(&c["result"].as_str().unwrap_or("")),
            "{c}"
        );
    }
    assert!(
        checks.iter().any(|c| c["check"] == "service" && c["result"] == "ok"),
        "{v}"
    );

    // Fixed: ok, exit 0.
    env.set_conf(|c| {
        c.operations = vec![
            format!("sshd:{}:true", common::OP_A),
            format!("sudo:{}:true", common::OP_B),
        ]
    });
    let out = run(&env, None, &["check-config", "--json"]).expect("root");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (out.status.code(), &v["ok"]),
        (Some(0), &serde_json::Value::Bool(true)),
        "{v}"
    );
}

/// Groups that NSS does not know, an outdated store schema and a config that does not load are problems
/// with a fix, in JSON too; nothing is changed.
#[test]
fn check_config_groups_schema_and_broken_config() {
    let env = Env::new();
    let conf = format!(
        "exempt_groups = [\"root\", \"no-such-group-lockserver\"]\n{}",
        env.conf.render()
    );
    write_file_mode(&env.config_path(), &conf, 0o600);
    let Some(out) = run(&env, None, &["check-config"]) else {
        return;
    };
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("groups: ok (exempt_groups: root is known to NSS)"), "{t}");
    assert!(
        t.contains("groups: PROBLEM: exempt_groups: no group no-such-group-lockserver"),
        "{t}"
    );

    // A store that is no pairing store (schema version 0) is reported, and left as it is.
    env.pair("root");
    let user_version = |set: Option<i64>| {
        let db = rusqlite::Connection::open(env.store_path()).expect("open the store");
        if let Some(v) = set {
            db.pragma_update(None, "user_version", v).expect("set user_version");
        }
        db.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .expect("user_version")
    };
    user_version(Some(0));
    write_file_mode(&env.config_path(), &env.conf.render(), 0o600);
    let out = run(&env, None, &["check-config"]).expect("root");
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(text(&out).contains("store: PROBLEM"), "{}", text(&out));
    assert_eq!(user_version(None), 0, "nothing changed");

    // Not TOML at all: still one JSON object.
    write_file_mode(&env.config_path(), "service = [\n", 0o600);
    let out = run(&env, None, &["check-config", "--json"]).expect("root");
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["problems"][0]["check"], "config", "{v}");
}

/// `try-login` runs the real stack of a service: here in a private mount namespace whose /etc/pam.d
/// holds only the test's service file, so the host's PAM configuration is never touched.
#[test]
fn try_login_runs_the_real_stack_without_a_session() {
    let env = Env::new();
    if current_uid() != 0 {
        eprintln!("not root: try-login test skipped (CI runs as root)");
        return;
    }
    let account = env.pair("root");
    let service = env.service("trylogin", &[]);
    let try_login = || {
        let script = format!(
            "mount --bind '{}' /etc/pam.d && exec '{}' try-login --service {service} --user root",
            env.pam_dir().display(),
            common::cli_path().display()
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run unshare")
    };
    let out = try_login();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("would be ALLOWED"), "{}", text(&out));
    env.latch(&account, None, false);
    let out = try_login();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("would be REFUSED"), "{}", text(&out));
    assert!(
        text(&out).contains("your Latch is locked"),
        "what the user would see: {}",
        text(&out)
    );
}

/// Runs the CLI as a sudo user would (`SUDO_USER`, `SUDO_UID`), with the system config path: in a private
/// mount namespace, `/etc` gets an overlay whose upper layer holds this test's config as
/// `/etc/lockserver/lockserver.conf`, so the host's /etc is never touched. `stdin` is what the user types.
fn run_self_service(env: &Env, user: &str, args: &[&str], stdin: &str) -> Option<Output> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    if current_uid() != 0 {
        eprintln!("not root: CLI test skipped (CI runs as root)");
        return None;
    }
    let overlay = tempfile::tempdir().expect("overlay dir");
    let (upper, work) = (overlay.path().join("upper"), overlay.path().join("work"));
    std::fs::create_dir_all(upper.join("lockserver")).expect("upper");
    std::fs::create_dir(&work).expect("work");
    for dir in [overlay.path(), &upper, &upper.join("lockserver")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    write_file_mode(&upper.join("lockserver/lockserver.conf"), &config, 0o600);
    let script = format!(
        "mount -t overlay overlay -o lowerdir=/etc,upperdir='{}',workdir='{}' /etc && exec '{}' \"$@\"",
        upper.display(),
        work.display(),
        common::cli_path().display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .args(args)
        .env("SUDO_USER", user)
        .env("SUDO_UID", "1000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run unshare");
    let mut input = child.stdin.take().expect("stdin");
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    Some(child.wait_with_output().expect("wait"))
}

fn paired(env: &Env, user: &str) -> Option<lockserver::store::Pairing> {
    env.store()
        .get(user, lockserver::store::default_deadline())
        .expect("store")
}

/// #9 hole 9: a sudo user's `unpair` needs the latch open right now; a borrowed password is not enough.
#[test]
fn self_service_unpair_needs_the_latch_open() {
    let env = Env::new();
    let account = env.pair("alice");
    env.latch(&account, None, false);
    let Some(out) = run_self_service(&env, "alice", &["unpair"], "") else {
        return;
    };
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("latch is locked"), "{}", text(&out));
    assert!(paired(&env, "alice").is_some(), "nothing was changed");

    // --force does not skip the proof.
    let out = run_self_service(&env, "alice", &["unpair", "--force"], "").expect("root");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(paired(&env, "alice").is_some(), "nothing was changed");

    // The service unreachable: no proof, so nothing is removed, even with --force.
    let mut down = env.conf.clone();
    down.url = format!("http://127.0.0.1:{}", common::dead_port());
    write_file_mode(&env.config_path(), &down.render(), 0o600);
    let out = run_self_service(&env, "alice", &["unpair", "--force"], "").expect("root");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(paired(&env, "alice").is_some(), "nothing was changed");
    write_file_mode(&env.config_path(), &env.conf.render(), 0o600);

    env.latch(&account, None, true);
    let out = run_self_service(&env, "alice", &["unpair"], "").expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(paired(&env, "alice").is_none(), "unpaired");
    common::record_case(
        "self-service-unpair",
        "local user",
        "`sudo lockserver unpair` with a borrowed password while the latch is locked (also `--force`, service down)",
        "refused (exit 7 / 4); nothing changed",
        "the config's timeout_ms per call",
    );
}

/// #9 hole 9: with TOTP on, a sudo user's `totp disable` and `unpair` also need a current code typed at
/// the prompt; root is asked for nothing.
#[test]
fn self_service_totp_disable_and_unpair_need_a_current_code() {
    let mut env = Env::new();
    env.set_conf(|c| c.operations = vec!["TOTP:TOTP:true".into()]);
    let conf_text = format!("{}source = \"local\"\n", env.conf.render());
    write_file_mode(&env.config_path(), &conf_text, 0o600);
    env.pair("alice");
    env.enrol_totp("alice").expect("enrol");
    let secret = env
        .store()
        .local_totp("alice", lockserver::store::default_deadline())
        .expect("store")
        .expect("local TOTP");
    let secret = lockserver::totp::decode_secret(secret.secret.expose()).expect("base32");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let right = || lockserver::totp::code_at(&secret, now(), &lockserver::totp::Params::default());
    let wrong: String = right()
        .chars()
        .map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) })
        .collect();
    let totp_on = || paired(&env, "alice").is_some_and(|p| p.totp_enabled);

    for (typed, what) in [("", "no code"), (&format!("{wrong}\n")[..], "a wrong code")] {
        let Some(out) = run_self_service(&env, "alice", &["totp", "disable"], typed) else {
            return;
        };
        assert_eq!(out.status.code(), Some(7), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("Verification code for alice"),
            "prompted: {}",
            text(&out)
        );
        assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
        assert!(totp_on(), "{what}: TOTP still on");
        let out = run_self_service(&env, "alice", &["unpair"], typed).expect("root");
        assert_eq!(out.status.code(), Some(7), "{what}: {}", text(&out));
        assert!(paired(&env, "alice").is_some(), "{what}: still paired");
    }

    let right = right();
    let out = run_self_service(&env, "alice", &["totp", "disable"], &format!("{right}\n")).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!totp_on(), "TOTP off");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&right),
        "the code is not echoed"
    );

    // Root is not asked: its stdin is closed and the action is done.
    env.enrol_totp("alice").expect("enrol again");
    let out = run(&env, None, &["totp", "disable", "--user", "alice"]).expect("root");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("Verification code"), "{}", text(&out));
    assert!(!totp_on(), "TOTP off");
    common::record_case(
        "self-service-totp",
        "local user",
        "`sudo lockserver totp disable` / `unpair` with TOTP on: no code or a wrong code",
        "refused (exit 7); nothing changed; a right code typed at the prompt is needed",
        "the config's timeout_ms per call",
    );
}

/// The dictionary's sentence and the reason are two things: "… Try again later. (service unavailable: …)",
/// never "Try again later.: …".
#[test]
fn unreachable_service_message_reads_as_sentences() {
    let mut env = Env::new();
    env.pair("root");
    env.set_conf(|c| c.url = format!("http://127.0.0.1:{}", common::dead_port()));
    let Some(out) = run(&env, None, &["status", "--user", "root"]) else {
        return;
    };
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("Try again later. (connection refused)"), "{t}");
    assert!(!t.contains(".:"), "{t}");
}
