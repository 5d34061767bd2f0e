//! `make install` into a staging tree, then the C and C++ examples built with pkg-config against that
//! tree (as a C programmer would after installing) and run against the Latch emulator: check_login
//! through lockserver_login (open, locked, one-time passwords wrong, missing and right, unpaired).

use lockserver::store::{self, OpenMode, Pairing};
use lockserver_emulator::{Emulator, Options};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn triplet() -> String {
    Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "x86_64-linux-gnu".into())
}

fn stage(dest: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("make")
        .arg("-C")
        .arg(root)
        .args(["install", "PREFIX=/usr", "PROFILE=debug", "--no-print-directory"])
        .arg(format!("DESTDIR={}", dest.display()))
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pkg_config(dest: &Path, libdir: &Path) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(["--cflags", "--libs", "lockserver"])
        .env("PKG_CONFIG_PATH", libdir.join("pkgconfig"))
        .env("PKG_CONFIG_SYSROOT_DIR", dest)
        .output()
        .expect("pkg-config is installed by the test command");
    assert!(
        out.status.success(),
        "pkg-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn build(compiler: &str, std: &str, source: &str, flags: &[String], out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror"])
        .arg(root.join("examples").join(source))
        .args(flags)
        .arg("-o")
        .arg(out)
        .status()
        .expect("run the compiler");
    assert!(status.success(), "{compiler} {source} failed");
}

fn run(bin: &Path, libdir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("LD_LIBRARY_PATH", libdir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run example");
    if let Some(mut input) = child.stdin.take() {
        std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("example output")
}

/// Runs `bin`, waits for its one-time password prompt, then types what `token` gives (read only
/// once the prompt is shown: the service issues the token during the login).
fn login_with_phone_token(bin: &Path, libdir: &Path, args: &[&str], token: impl FnOnce() -> String) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .env("LD_LIBRARY_PATH", libdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run example");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("one-time password: ") {
        match std::io::Read::read(&mut stdout, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, format!("{}\n", token()).as_bytes()).expect("type the token");
    drop(stdin);
    std::io::Read::read_to_end(&mut stdout, &mut seen).expect("the rest of stdout");
    let mut out = child.wait_with_output().expect("example output");
    seen.extend_from_slice(&out.stdout);
    out.stdout = seen;
    out
}

#[test]
fn installed_tree_builds_and_runs_the_examples() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dest = tmp.path().join("stage");
    stage(&dest);
    let libdir: PathBuf = dest.join(format!("usr/lib/{}", triplet()));
    for file in [
        "liblockserver.so.0.1.0",
        "liblockserver.so.0",
        "liblockserver.so",
        "pkgconfig/lockserver.pc",
    ] {
        assert!(libdir.join(file).exists(), "installed {file}");
    }
    assert!(dest.join("usr/include/lockserver.h").exists());
    assert!(
        dest.join(format!("lib/{}/security/pam_lockserver.so", triplet()))
            .exists()
    );
    assert!(dest.join("usr/sbin/lockserver").exists());
    assert_eq!(
        std::fs::read_link(libdir.join("liblockserver.so.0")).expect("link"),
        Path::new("liblockserver.so.0.1.0")
    );

    let flags = pkg_config(&dest, &libdir);
    assert!(flags.iter().any(|f| f == "-llockserver"), "{flags:?}");
    let bins = tmp.path().join("bin");
    std::fs::create_dir_all(&bins).expect("bin dir");
    build("cc", "-std=c11", "check_login.c", &flags, &bins.join("check_login"));
    build("cc", "-std=c11", "totp.c", &flags, &bins.join("totp"));
    build("c++", "-std=c++17", "status.cpp", &flags, &bins.join("status"));

    // The examples against the emulator.
    let emu = Emulator::start(Options::default()).expect("emulator");
    let account = emu.pair("alice").expect("pair");
    let db = tmp.path().join("lockserver.db");
    let config = format!(
        "service = \"latch\"\nstore = \"sqlite://{}\"\n[latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\n",
        db.display(),
        emu.app_id(),
        emu.secret(),
        emu.url()
    );
    let config_path = tmp.path().join("lockserver.conf");
    std::fs::write(&config_path, &config).expect("config");
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    store::open(&format!("sqlite://{}", db.display()), OpenMode::Create)
        .and_then(|s| {
            s.insert(
                &Pairing {
                    user: "alice".into(),
                    account_id: account.clone(),
                    enabled: true,
                    totp_enabled: false,
                    totp_id: None,
                },
                lockserver::store::default_deadline(),
            )
        })
        .expect("store the pairing");
    let conf = config_path.to_str().expect("utf-8 path");

    // check_login runs the module's decision through lockserver_login and asks on its terminal.
    let check = |user: &str, stdin: &str| run(&bins.join("check_login"), &libdir, &[conf, user], &[], stdin);
    let out = check("alice", "");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice: allowed"));
    emu.set_latch(&account, None, false).expect("lock");
    let out = check("alice", "");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice: refused"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("your Latch is locked"),
        "the dictionary's text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    emu.set_latch(&account, None, true).expect("unlock");
    emu.require_otp(&account, None, true).expect("otp");
    // Three wrong one-time passwords (max_attempts), then no answer at all.
    let out = check("alice", "wrong1\nwrong2\nwrong3\n");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("too many wrong codes"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("Latch one-time password: ")
            .count(),
        3
    );
    let out = check("alice", "");
    assert_eq!(out.status.code(), Some(1));
    // The user types the token the app shows for this login.
    let out = login_with_phone_token(&bins.join("check_login"), &libdir, &[conf, "alice"], || {
        emu.last_otp(&account, None).expect("the emulator issued a token")
    });
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice: allowed"));
    // Not paired, unpaired = "ignore" (the default): the program decides by its other checks.
    let out = check("nobody-paired", "");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let out = check("", "");
    assert_eq!(out.status.code(), Some(3), "an empty user name is a bad argument");

    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let out = run(&bins.join("totp"), &libdir, &[secret], &[], "");
    assert_eq!(out.status.code(), Some(0));
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(code.len(), 6);
    let out = run(&bins.join("totp"), &libdir, &[secret, &code], &[], "");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let out = run(&bins.join("totp"), &libdir, &[secret, wrong], &[], "");
    assert_eq!(out.status.code(), Some(1));

    let out = run(
        &bins.join("status"),
        &libdir,
        &[&account],
        &[("LOCKSERVER_CONFIG", config.as_str())],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("open (liblockserver 0.1.0)"));
    let out = run(
        &bins.join("status"),
        &libdir,
        &["bad/id"],
        &[("LOCKSERVER_CONFIG", config.as_str())],
        "",
    );
    assert_eq!(out.status.code(), Some(3));
}
