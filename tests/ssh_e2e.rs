//! End to end through the distribution's sshd (issue 5), sudo and su: real logins over SSH with a scripted
//! paramiko client (`tests/e2e/ssh_client.py`).
//!
//! Every test starts its own sshd on a free loopback port inside a private mount namespace
//! (`unshare --mount --propagation private`) where `/etc/pam.d`, `/etc/passwd`, `/etc/shadow`, `/etc/group` and
//! `/etc/sudoers` are bind-mounted copies with the test users added and `/run` is a tmpfs: the host's
//! configuration is never touched. sshd runs through a symlink named `sshd-latchtest`, so OpenSSH 9.2 uses
//! the PAM service `sshd-latchtest` (`__progname`). The emulator runs in this process, as Latch or as PingID
//! (its scripted phone approves, rejects, ignores or asks for a code); the module in sshd reaches it over
//! loopback and sends its log lines to the test's syslog socket. [`Sshd`]'s `Drop` kills
//! every process of the namespace (by PID) and removes the temp dir, also when a test fails.
//!
//! Needs root (sshd with `UsePAM yes`, mount namespaces); as another user every test prints why and passes.

#[allow(unused_imports)]
mod common;

use common::{Env, OP_B, current_uid, write_file_mode};
use lockserver::totp;
use lockserver_emulator::{Fault, Plan};
use serde::Deserialize;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
const PYTHON: &str = "/usr/bin/python3";
/// The PAM service name sshd 9.2 uses when started through a symlink of this name.
const SERVICE: &str = "sshd-latchtest";
/// The test users' password (pam_unix, in the shadow copy).
const PASSWORD: &str = "e2e-Password-1";
const LOCKED_TEXT: &str = "Access denied: your Latch is locked";
const UNAVAILABLE_TEXT: &str = "The lock server cannot be reached";
const NOT_PAIRED_TEXT: &str = "this account is not paired";
const CODE_PROMPT: &str = "Verification code";
const WRONG_CODE_TEXT: &str = "The verification code is not right.";
const OTP_PROMPT: &str = "Latch one-time password";
const LOGGED_IN: &str = "LOGGED_IN_OK";

/// `auth` lines for `AuthenticationMethods publickey,keyboard-interactive`: the key proves the user, the
/// keyboard-interactive round is lockserver alone. `pam_permit.so` primes the stack with a success, so a
/// module answer of PAM_IGNORE (`unpaired = "ignore"`, `enabled = false`) lets the user in rather than
/// ending an all-ignore stack in PAM_PERM_DENIED.
const AUTH_KEY_THEN_LOCKSERVER: &str = "auth required pam_permit.so\nauth required {module}\n";
/// [`AUTH_KEY_THEN_LOCKSERVER`] with the module's `debug` argument: each service call is logged as it is
/// sent, which times the module's own waits.
const AUTH_KEY_THEN_LOCKSERVER_DEBUG: &str = "auth required pam_permit.so\nauth required {module} debug\n";
/// The same without `pam_permit.so`: what happens to unpaired users when lockserver is alone.
const AUTH_LOCKSERVER_ALONE: &str = "auth required {module}\n";
/// `auth` lines for keyboard-interactive alone: the password (Debian's common-auth, written out), then
/// lockserver. A wrong password ends the stack at `requisite pam_deny.so`, before lockserver is asked; the
/// jump over it does not count as a success (libpam), `pam_permit.so` does.
const AUTH_PASSWORD_THEN_LOCKSERVER: &str = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                                             auth requisite pam_deny.so\n\
                                             auth required pam_permit.so\n\
                                             auth required {module}\n";

/// Whether this process can run the suite; prints why not.
fn can_run(test: &str) -> bool {
    if current_uid() != 0 {
        println!("SKIPPED {test}: the sshd end-to-end tests need root (sshd with UsePAM, mount namespaces)");
        return false;
    }
    for tool in [
        SSHD,
        PYTHON,
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
        "/usr/bin/ssh-keygen",
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run scripts/test.sh, which installs openssh-server, openssh-client, python3-paramiko, sudo"
        );
    }
    let paramiko = Command::new(PYTHON)
        .args(["-c", "import paramiko"])
        .status()
        .expect("run python3");
    assert!(paramiko.success(), "python3-paramiko is missing: run scripts/test.sh");
    true
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs `cmd` with `stdin` as its input; kills it (by PID) when it takes longer than `limit`.
fn output_within(cmd: &mut Command, stdin: &str, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait for the child")
}

/// The mount namespace of a process, as `/proc/PID/ns/mnt` reads (`mnt:[4026…]`).
fn mount_ns(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

/// One test user of an [`Sshd`].
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
}

/// What the client saw of one login.
#[derive(Debug, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    pub partial: Vec<String>,
    pub rounds: Vec<Round>,
    pub banner: String,
    pub error: String,
    pub output: String,
    pub exit: Option<i32>,
    pub elapsed: f64,
}

/// One keyboard-interactive request as the client received it.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Round {
    pub title: String,
    pub instructions: String,
    pub prompts: Vec<(String, bool)>,
}

impl Outcome {
    /// Every text the user was shown: instructions and prompts, in order.
    pub fn seen(&self) -> String {
        let mut s = String::new();
        for r in &self.rounds {
            if !r.instructions.is_empty() {
                let _ = writeln!(s, "{}", r.instructions);
            }
            for (p, _) in &r.prompts {
                let _ = writeln!(s, "{p}");
            }
        }
        s
    }

    /// The prompts, in order.
    pub fn prompts(&self) -> Vec<&str> {
        self.rounds
            .iter()
            .flat_map(|r| r.prompts.iter().map(|(p, _)| p.as_str()))
            .collect()
    }

    pub fn logged_in(&self) -> bool {
        self.ok && self.output.contains(LOGGED_IN) && self.exit == Some(0)
    }
}

/// How the client logs in.
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub user: String,
    pub key: bool,
    pub kbdint: bool,
    pub password: Option<String>,
    pub answers: Vec<String>,
    pub otp_url: Option<String>,
}

impl Login {
    /// Key, then keyboard-interactive.
    pub fn key_kbd(user: &str) -> Login {
        Login {
            user: user.into(),
            key: true,
            kbdint: true,
            ..Login::default()
        }
    }

    /// The key alone.
    pub fn key(user: &str) -> Login {
        Login {
            user: user.into(),
            key: true,
            ..Login::default()
        }
    }

    /// Keyboard-interactive alone, answering the password prompt with `password`.
    pub fn password(user: &str, password: &str) -> Login {
        Login {
            user: user.into(),
            kbdint: true,
            password: Some(password.into()),
            ..Login::default()
        }
    }

    pub fn answers(mut self, answers: &[&str]) -> Login {
        self.answers = answers.iter().map(|s| (*s).to_string()).collect();
        self
    }
}

/// A private sshd: its own mount namespace, port, host key, PAM services, users and temp dir.
pub struct Sshd {
    pub port: u16,
    pub dir: TempDir,
    pub users: Vec<TestUser>,
    child: Option<Child>,
    ns: Option<PathBuf>,
}

/// What [`Sshd::start`] sets up.
pub struct SshdSpec<'a> {
    /// `AuthenticationMethods`.
    pub methods: &'a str,
    /// The `auth` lines of the sshd service; `{module}` is replaced by the module and its arguments.
    pub auth: &'a str,
    /// Test users to add (uids from 42000, password [`PASSWORD`], the test key authorized).
    pub users: &'a [&'a str],
}

impl Sshd {
    pub fn start(env: &Env, spec: &SshdSpec) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("lockserver-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        // sshd reads authorized_keys as the user: the dir must be traversable.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        let p = |name: &str| d.join(name);

        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(p("hostkey")),
        );
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(p("client_key")),
        );
        let pubkey = fs::read_to_string(p("client_key.pub")).expect("client public key");
        let hash = run_ok(Command::new("openssl").args(["passwd", "-6", PASSWORD]))
            .trim()
            .to_string();

        // Users, in copies of the account files.
        for sub in ["etc", "authkeys", "home", "pam.d"] {
            fs::create_dir(p(sub)).expect("mkdir");
        }
        let mut passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let mut group = fs::read_to_string("/etc/group").expect("read /etc/group");
        let mut shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
        let mut users = Vec::new();
        for (i, name) in spec.users.iter().enumerate() {
            let uid = 42000 + u32::try_from(i).expect("few users");
            let home = p("home").join(name);
            fs::create_dir(&home).expect("mkdir home");
            std::os::unix::fs::chown(&home, Some(uid), Some(uid)).expect("chown home");
            let _ = writeln!(passwd, "{name}:x:{uid}:{uid}:lockserver e2e:{}:/bin/sh", home.display());
            let _ = writeln!(group, "{name}:x:{uid}:");
            let _ = writeln!(shadow, "{name}:{hash}:19000:0:99999:7:::");
            fs::write(p("authkeys").join(name), &pubkey).expect("authorized key");
            users.push(TestUser {
                name: (*name).to_string(),
                uid,
            });
        }
        write_file_mode(&p("etc/passwd"), &passwd, 0o644);
        write_file_mode(&p("etc/group"), &group, 0o644);
        write_file_mode(&p("etc/shadow"), &shadow, 0o640);
        let sudoers = Path::new("/etc/sudoers").exists();
        if sudoers {
            let mut text = fs::read_to_string("/etc/sudoers").expect("read /etc/sudoers");
            text.push_str("\n# lockserver e2e\nDefaults !lecture, passwd_tries=1\n");
            for name in spec.users {
                let _ = writeln!(text, "{name} ALL=(root) ALL");
            }
            write_file_mode(&p("etc/sudoers"), &text, 0o440);
        }

        // PAM: a copy of the host's directory (for the other services), plus ours.
        run_ok(Command::new("cp").arg("-a").arg("/etc/pam.d/.").arg(p("pam.d")));
        // A snapshot of the module: a build running meanwhile (cargo relinks the .so in place) must not
        // make sshd's dlopen fail ("PAM: Module is unknown").
        let module_copy = p("pam_lockserver.so");
        fs::copy(common::module_path(), &module_copy).expect("copy the module");
        fs::copy(common::cli_path(), p("lockserver")).expect("copy the CLI");
        let module = |extra: &[&str]| {
            let mut line = module_copy.display().to_string();
            for a in env.module_args(&env.config_path(), extra) {
                line.push(' ');
                line.push_str(&a);
            }
            line
        };
        let tail = |module_line: &str| {
            format!(
                "account required pam_unix.so\n\
                 account required {module_line}\n\
                 session required pam_permit.so\n\
                 password required pam_deny.so\n"
            )
        };
        let sshd_module = module(&[]);
        let sshd_pam = format!("{}{}", spec.auth.replace("{module}", &sshd_module), tail(&sshd_module));
        fs::write(p("pam.d").join(SERVICE), sshd_pam).expect("write the sshd PAM service");
        // sudo and su: the password, then lockserver for the operation "sudo".
        let sudo_module = module(&["operation=sudo"]);
        let su_sudo = format!(
            "auth [success=1 default=ignore] pam_unix.so\n\
             auth requisite pam_deny.so\n\
             auth required pam_permit.so\n\
             auth required {sudo_module}\n{}",
            tail(&sudo_module)
        );
        fs::write(p("pam.d/sudo"), &su_sudo).expect("write the sudo PAM service");
        fs::write(p("pam.d/su"), &su_sudo).expect("write the su PAM service");

        // sshd, on a free port (`common::dead_port()` names a port nothing may listen on: two sshd
        // started at once would both get the same one).
        let port = common::listen_port();
        std::os::unix::fs::symlink(SSHD, p(SERVICE)).expect("symlink sshd");
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/hostkey\n\
             PidFile {d}/sshd.pid\n\
             UsePAM yes\n\
             KbdInteractiveAuthentication yes\n\
             PasswordAuthentication no\n\
             PubkeyAuthentication yes\n\
             AuthorizedKeysFile {d}/authkeys/%u\n\
             AuthenticationMethods {methods}\n\
             PermitRootLogin no\n\
             StrictModes no\n\
             UseDNS no\n\
             MaxStartups 100\n\
             MaxAuthTries 10\n\
             LoginGraceTime 60\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             LogLevel VERBOSE\n",
            d = d.display(),
            methods = spec.methods,
        );
        fs::write(p("sshd_config"), config).expect("write sshd_config");
        let mut script = String::from("set -e\nmount --bind \"$D/pam.d\" /etc/pam.d\n");
        for f in ["passwd", "group", "shadow"] {
            let _ = writeln!(script, "mount --bind \"$D/etc/{f}\" /etc/{f}");
        }
        if sudoers {
            script.push_str("mount --bind \"$D/etc/sudoers\" /etc/sudoers\n");
        }
        // The system config path the CLI uses through sudo: /etc seen through an overlay whose upper layer is
        // in the temp dir, with the test's config bound there (the host's /etc gets nothing).
        for sub in ["etc-upper", "etc-work"] {
            fs::create_dir(p(sub)).expect("mkdir");
        }
        script = format!(
            "set -e\nmount -t overlay overlay -o lowerdir=/etc,upperdir=\"$D/etc-upper\",workdir=\"$D/etc-work\" /etc\n\
             mkdir -p /etc/lockserver\ntouch /etc/lockserver/lockserver.conf\n\
             mount --bind \"$CONF\" /etc/lockserver/lockserver.conf\n{}",
            script.trim_start_matches("set -e\n")
        );
        script.push_str(
            "mount -t tmpfs -o mode=0755 tmpfs /run\n\
             mkdir -m 0755 /run/sshd\n\
             exec \"$D/sshd-latchtest\" -D -e -f \"$D/sshd_config\"\n",
        );
        let log = fs::File::create(p("sshd.log")).expect("sshd.log");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("D", d)
            .env("CONF", env.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start unshare + sshd");
        let mut sshd = Sshd {
            port,
            dir,
            users,
            child: Some(child),
            ns: None,
        };
        sshd.wait_ready();
        sshd
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("sshd started").id()
    }

    /// Waits for the SSH banner on the port; panics with sshd's log if it does not come.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("sshd exited ({status}) before listening:\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8];
                if s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"SSH-2.0")) {
                    self.ns = mount_ns(self.pid());
                    assert_ne!(
                        self.ns,
                        mount_ns(std::process::id()),
                        "sshd runs in its own mount namespace"
                    );
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// sshd's own log (stderr, LogLevel VERBOSE).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Logs in with the scripted client.
    pub fn ssh(&self, login: &Login) -> Outcome {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ssh_client.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script)
            .args(["--port", &self.port.to_string(), "--user", &login.user])
            .args(["--command", &format!("echo {LOGGED_IN}; id -un")]);
        if login.key {
            cmd.arg("--key").arg(self.dir.path().join("client_key"));
        }
        if login.kbdint {
            cmd.arg("--kbdint");
        }
        if let Some(pw) = &login.password {
            cmd.args(["--password", pw]);
        }
        for a in &login.answers {
            cmd.arg(format!("--answer={a}"));
        }
        if let Some(url) = &login.otp_url {
            cmd.args(["--otp-url", url]);
        }
        let out = output_within(&mut cmd, "", Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "client output is not JSON ({e}): {stdout}\nstderr: {}\nsshd log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )
        })
    }

    /// Runs `argv` inside the namespace as `user` (through `runuser`), `stdin` as its input, within 30 s.
    /// Returns (exit code, stdout, stderr).
    pub fn run_as(&self, user: &str, argv: &[&str], stdin: &str) -> (i32, String, String) {
        let out = output_within(&mut self.command_as(user, argv), stdin, Duration::from_secs(30));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `argv` to run inside the namespace as `user` (through `runuser`). Killed with the namespace.
    pub fn command_as(&self, user: &str, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "--target",
            &self.pid().to_string(),
            "--mount",
            "--",
            "runuser",
            "-u",
            user,
            "--",
        ])
        .args(argv);
        cmd
    }

    /// Every process in the namespace (sshd, its connection children, sudo/su runs), by PID.
    fn namespace_pids(&self) -> Vec<i32> {
        let Some(ns) = &self.ns else { return Vec::new() };
        let mut pids = Vec::new();
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    && mount_ns(pid).as_ref() == Some(ns)
                {
                    pids.push(i32::try_from(pid).expect("pid"));
                }
            }
        }
        pids
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let mut pids = self.namespace_pids();
        if let Some(c) = &self.child {
            pids.push(i32::try_from(c.id()).expect("pid"));
        }
        for pid in pids {
            // SAFETY: kill has no memory preconditions; these PIDs are processes this test started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // Connection children re-parented elsewhere die with SIGKILL; give the kernel a moment to tear the
        // namespace (and its mounts) down before the temp dir goes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.namespace_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Enrols a Latch TOTP for `user` (as `lockserver totp create` does) and returns its secret. Before sshd logs
/// anyone in: the store handle is dropped on return.
fn enrol_totp(env: &Env, user: &str) -> Vec<u8> {
    env.enrol_totp(user).expect("enrol TOTP");
    let totp_id = env
        .store()
        .get(user, lockserver::store::default_deadline())
        .expect("store")
        .expect("paired")
        .totp_id
        .expect("TOTP id stored");
    let secret = env.emu.totp_secret(&totp_id).expect("the emulator knows the TOTP");
    totp::decode_secret(&secret).expect("base32 secret")
}

fn totp_code(secret: &[u8]) -> String {
    totp::code_at(secret, now(), &totp::Params::default())
}

fn key_kbd_spec<'a>(users: &'a [&'a str]) -> SshdSpec<'a> {
    SshdSpec {
        methods: "publickey,keyboard-interactive",
        auth: AUTH_KEY_THEN_LOCKSERVER,
        users,
    }
}

/// Waits up to 5 s for a log line holding every needle (the module's lines may trail the client's answer).
fn expect_log(env: &Env, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = env.logs.find(needles) {
            return line;
        }
        if Instant::now() > deadline {
            return env.logs.expect_line(needles);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_in(o: &Outcome, sshd: &Sshd, what: &str) {
    assert!(
        o.logged_in(),
        "{what}: expected a login: {o:#?}\nsshd log:\n{}",
        sshd.log()
    );
}

fn assert_refused(o: &Outcome, sshd: &Sshd, what: &str) {
    assert!(!o.ok, "{what}: expected a refusal: {o:#?}\nsshd log:\n{}", sshd.log());
    assert!(o.output.is_empty(), "{what}: no command ran: {o:#?}");
}

// ---------------------------------------------------------------------------------------------------------
// publickey,keyboard-interactive

#[test]
fn key_then_kbdint_open_locked() {
    if !can_run("key_then_kbdint_open_locked") {
        return;
    }
    let env = Env::new();
    let acc = env.pair("alice");
    let sshd = Sshd::start(&env, &key_kbd_spec(&["alice"]));

    let o = sshd.ssh(&Login::key_kbd("alice"));
    assert_in(&o, &sshd, "latch open");
    assert_eq!(o.partial, ["keyboard-interactive"], "the key is a partial success");
    assert!(o.output.contains("alice"), "the command ran as alice: {o:?}");
    assert!(o.prompts().is_empty(), "latch open, no TOTP: nothing asked: {o:?}");
    expect_log(
        &env,
        &[
            &format!("pam_lockserver({SERVICE}:auth): user=alice rhost=127.0.0.1"),
            "access granted",
        ],
    );
    assert!(sshd.log().contains("Accepted keyboard-interactive/pam for alice"));

    env.latch(&acc, None, false);
    env.logs.clear();
    let o = sshd.ssh(&Login::key_kbd("alice"));
    assert_refused(&o, &sshd, "latch closed");
    assert_eq!(o.partial, ["keyboard-interactive"], "refused after the key");
    assert!(o.seen().contains(LOCKED_TEXT), "the user is told why: {o:#?}");
    expect_log(
        &env,
        &[&format!("{SERVICE}:auth"), "user=alice", "access denied: latch locked"],
    );

    env.latch(&acc, None, true);
    assert_in(&sshd.ssh(&Login::key_kbd("alice")), &sshd, "open again");
}

#[test]
fn key_then_kbdint_totp() {
    if !can_run("key_then_kbdint_totp") {
        return;
    }
    let mut env = Env::new();
    env.set_conf(|c| {
        c.operations = vec!["TOTP:TOTP:true".into()];
        c.max_attempts = 3;
    });
    env.pair("carol");
    let secret = enrol_totp(&env, "carol");
    let sshd = Sshd::start(&env, &key_kbd_spec(&["carol"]));

    let o = sshd.ssh(&Login::key_kbd("carol").answers(&[&totp_code(&secret)]));
    assert_in(&o, &sshd, "right TOTP code");
    assert_eq!(
        o.prompts(),
        [format!("{CODE_PROMPT}: ")],
        "one prompt, nothing stale: {o:#?}"
    );
    assert!(!o.rounds[0].prompts[0].1, "the code is typed with echo off");
    expect_log(&env, &["user=carol", "verification code accepted"]);

    let o = sshd.ssh(&Login::key_kbd("carol").answers(&["000000", "111111", "222222"]));
    assert_refused(&o, &sshd, "three wrong codes");
    let prompts = o.prompts();
    assert_eq!(prompts.len(), 3, "max_attempts = 3 prompts: {o:#?}");
    assert_eq!(prompts[0], format!("{CODE_PROMPT}: "));
    for p in &prompts[1..] {
        assert_eq!(
            *p,
            format!("{WRONG_CODE_TEXT}\n{CODE_PROMPT}: "),
            "each later prompt carries the last error, once: {o:#?}"
        );
    }
    println!("three wrong codes, the user saw:\n{}", o.seen());
    expect_log(&env, &["user=carol", "too many wrong verification codes"]);

    // A wrong code, then the right one.
    let o = sshd.ssh(&Login::key_kbd("carol").answers(&["000000", &totp_code(&secret)]));
    assert_in(&o, &sshd, "wrong then right code");
    assert_eq!(o.prompts().len(), 2);
}

#[test]
fn key_then_kbdint_latch_otp() {
    if !can_run("key_then_kbdint_latch_otp") {
        return;
    }
    let env = Env::new();
    let acc = env.pair("dave");
    env.emu.require_otp(&acc, None, true).expect("require OTP");
    let sshd = Sshd::start(&env, &key_kbd_spec(&["dave"]));
    let mut login = Login::key_kbd("dave");
    login.otp_url = Some(format!("{}/_emulator/otp?account={acc}", env.emu.url()));
    let o = sshd.ssh(&login);
    assert_in(&o, &sshd, "right Latch OTP");
    assert_eq!(o.prompts(), [format!("{OTP_PROMPT}: ")], "{o:#?}");
    expect_log(&env, &["user=dave", "one-time password accepted"]);

    let o = sshd.ssh(&Login::key_kbd("dave").answers(&["WRONG1", "WRONG2", "WRONG3"]));
    assert_refused(&o, &sshd, "wrong Latch OTPs");
    assert_eq!(o.prompts().len(), 3, "{o:#?}");
    assert!(
        o.prompts()[1].starts_with("The one-time password is not right.\n"),
        "{o:#?}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// keyboard-interactive alone: password (pam_unix), then lockserver

fn password_spec<'a>(users: &'a [&'a str]) -> SshdSpec<'a> {
    SshdSpec {
        methods: "keyboard-interactive",
        auth: AUTH_PASSWORD_THEN_LOCKSERVER,
        users,
    }
}

#[test]
fn kbdint_password_then_lockserver() {
    if !can_run("kbdint_password_then_lockserver") {
        return;
    }
    let env = Env::new();
    let acc = env.pair("erin");
    let sshd = Sshd::start(&env, &password_spec(&["erin", "frank"]));

    let o = sshd.ssh(&Login::password("erin", PASSWORD));
    assert_in(&o, &sshd, "password right, latch open");
    assert_eq!(o.prompts(), ["Password: "], "{o:#?}");

    let wrong = sshd.ssh(&Login::password("erin", "not-the-password"));
    assert_refused(&wrong, &sshd, "wrong password");
    assert!(
        !wrong.seen().contains("Latch"),
        "a wrong password never reaches the lock: {wrong:#?}"
    );

    env.latch(&acc, None, false);
    let o = sshd.ssh(&Login::password("erin", PASSWORD));
    assert_refused(&o, &sshd, "password right, latch closed");
    assert!(o.seen().contains(LOCKED_TEXT), "{o:#?}");
    expect_log(&env, &["user=erin", "access denied: latch locked"]);

    // With the latch closed, a wrong password looks the same as before: no hint about the latch.
    let o = sshd.ssh(&Login::password("erin", "not-the-password"));
    assert_refused(&o, &sshd, "wrong password, latch closed");
    assert_eq!(o.rounds, wrong.rounds, "a wrong password shows nothing about the latch");

    // An unpaired user (unpaired = ignore) logs in with the password alone.
    let o = sshd.ssh(&Login::password("frank", PASSWORD));
    assert_in(&o, &sshd, "unpaired, ignore");
}

#[test]
fn unknown_and_unpaired_users_see_nothing_different() {
    if !can_run("unknown_and_unpaired_users_see_nothing_different") {
        return;
    }
    let mut env = Env::new();
    env.set_conf(|c| c.unpaired = "deny".into());
    let acc = env.pair("gina");
    env.latch(&acc, None, false);
    let sshd = Sshd::start(&env, &password_spec(&["gina", "hank"]));

    // unpaired = deny: the right password, then the refusal with its reason.
    let o = sshd.ssh(&Login::password("hank", PASSWORD));
    assert_refused(&o, &sshd, "unpaired, deny");
    assert!(o.seen().contains(NOT_PAIRED_TEXT), "{o:#?}");
    expect_log(&env, &["user=hank", "denied (unpaired = \"deny\")"]);

    // Wrong passwords: a user who does not exist, an unpaired one and a paired locked one see the same.
    let nobody = sshd.ssh(&Login::password("no-such-user-e2e", "guess"));
    let unpaired = sshd.ssh(&Login::password("hank", "guess"));
    let paired = sshd.ssh(&Login::password("gina", "guess"));
    for (who, o) in [("unknown", &nobody), ("unpaired", &unpaired), ("paired", &paired)] {
        assert_refused(o, &sshd, who);
    }
    assert_eq!(nobody.rounds, unpaired.rounds, "unknown vs unpaired user");
    assert_eq!(nobody.rounds, paired.rounds, "unknown vs paired user");
    assert_eq!(nobody.error, paired.error);

    // unpaired = allow.
    env.set_conf(|c| c.unpaired = "allow".into());
    assert_in(&sshd.ssh(&Login::password("hank", PASSWORD)), &sshd, "unpaired, allow");
}

// ---------------------------------------------------------------------------------------------------------
// publickey alone: the account hook

#[test]
fn publickey_alone_account_hook() {
    if !can_run("publickey_alone_account_hook") {
        return;
    }
    let env = Env::new();
    let acc = env.pair("ivan");
    let sshd = Sshd::start(
        &env,
        &SshdSpec {
            methods: "publickey",
            auth: AUTH_KEY_THEN_LOCKSERVER,
            users: &["ivan", "judy"],
        },
    );
    let o = sshd.ssh(&Login::key("ivan"));
    assert_in(&o, &sshd, "key, latch open");
    expect_log(&env, &[&format!("{SERVICE}:account"), "user=ivan", "access granted"]);

    env.latch(&acc, None, false);
    let o = sshd.ssh(&Login::key("ivan"));
    assert_refused(&o, &sshd, "key, latch closed");
    assert!(o.rounds.is_empty(), "no prompt: {o:#?}");
    expect_log(
        &env,
        &[
            &format!("{SERVICE}:account"),
            "user=ivan",
            "access denied: latch locked",
        ],
    );

    assert_in(&sshd.ssh(&Login::key("judy")), &sshd, "unpaired user, ignore");
    env.latch(&acc, None, true);
    assert_in(&sshd.ssh(&Login::key("ivan")), &sshd, "open again");
}

// ---------------------------------------------------------------------------------------------------------
// The service hung or down

#[test]
fn service_hung_or_down() {
    if !can_run("service_hung_or_down") {
        return;
    }
    let mut env = Env::new();
    env.pair("kate");
    let sshd = Sshd::start(&env, &key_kbd_spec(&["kate"]));
    let budget = env.conf.timeout_ms as f64 / 1000.0;

    for (what, fault) in [
        (
            "hang",
            Some(Fault::Hang {
                max: Duration::from_secs(30),
            }),
        ),
        ("down", None),
    ] {
        let saved_url = env.conf.url.clone();
        match fault {
            Some(f) => env.emu.set_fault(f),
            None => {
                let port = common::dead_port();
                env.set_conf(|c| c.url = format!("http://127.0.0.1:{port}"));
            }
        }
        env.set_conf(|c| c.fail_mode = "secure".into());
        let o = sshd.ssh(&Login::key_kbd("kate"));
        assert_refused(&o, &sshd, &format!("{what}, secure"));
        assert!(o.elapsed < budget + 5.0, "{what}: refused within the budget: {o:#?}");
        assert!(
            o.seen().contains(UNAVAILABLE_TEXT),
            "{what}: the user is told why: {o:#?}"
        );
        expect_log(&env, &["user=kate", "access denied (fail_mode = secure)"]);

        env.set_conf(|c| c.fail_mode = "safe".into());
        let o = sshd.ssh(&Login::key_kbd("kate"));
        assert_in(&o, &sshd, &format!("{what}, safe"));
        assert!(o.elapsed < budget * 2.0 + 5.0, "{what}: in within the budget: {o:#?}");
        expect_log(&env, &["user=kate", "FAIL-OPEN"]);

        // Back to normal: sshd is healthy and the next login works.
        env.emu.set_fault(Fault::None);
        env.set_conf(|c| {
            c.url = saved_url;
            c.fail_mode = "secure".into();
        });
        let o = sshd.ssh(&Login::key_kbd("kate"));
        assert_in(&o, &sshd, &format!("after {what}"));
        assert!(o.elapsed < 5.0, "{o:#?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Many at once

#[test]
fn twenty_simultaneous_logins() {
    if !can_run("twenty_simultaneous_logins") {
        return;
    }
    let env = Env::new();
    let names: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut locked = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let acc = env.pair(n);
        if i % 3 == 0 {
            env.latch(&acc, None, false);
            locked.push(n.clone());
        }
    }
    let sshd = Sshd::start(&env, &key_kbd_spec(&refs));
    let start = Instant::now();
    let outcomes: Vec<(String, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let sshd = &sshd;
                s.spawn(move || (n.clone(), sshd.ssh(&Login::key_kbd(n))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    println!("20 simultaneous logins in {:?}", start.elapsed());
    for (n, o) in &outcomes {
        if locked.contains(n) {
            assert_refused(o, &sshd, n);
            assert!(o.seen().contains(LOCKED_TEXT), "{n}: {o:#?}");
        } else {
            assert_in(o, &sshd, n);
            assert!(o.output.contains(n.as_str()), "{n} ran as itself: {o:#?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// sudo and su

#[test]
fn sudo_and_su_follow_the_sudo_operation() {
    if !can_run("sudo_and_su_follow_the_sudo_operation") {
        return;
    }
    assert!(
        Path::new("/usr/bin/sudo").exists(),
        "sudo is missing: run scripts/test.sh"
    );
    let mut env = Env::new();
    env.set_conf(|c| c.operations = vec![format!("sudo:{OP_B}:true")]);
    let alice = env.pair("alice");
    let bob = env.pair("bob");
    env.latch(&alice, Some(OP_B), false);
    env.latch(&bob, Some(OP_B), false);
    let sshd = Sshd::start(&env, &key_kbd_spec(&["alice", "bob"]));
    let pw = format!("{PASSWORD}\n");

    // The sudo operation is locked, the application is not: SSH in, but no sudo.
    assert_in(&sshd.ssh(&Login::key_kbd("alice")), &sshd, "ssh while sudo is locked");
    let (code, out, err) = sshd.run_as("alice", &["sudo", "-S", "-u", "root", "id", "-un"], &pw);
    assert_ne!(code, 0, "sudo refused: {out} {err}");
    assert!(err.contains(LOCKED_TEXT), "sudo shows why: {err}");
    expect_log(
        &env,
        &["pam_lockserver(sudo:auth): user=alice", "access denied: latch locked"],
    );

    let (code, out, err) = sshd.run_as("alice", &["su", "-c", "id -un", "bob"], &pw);
    assert_ne!(code, 0, "su refused: {out} {err}");
    assert!(err.contains(LOCKED_TEXT), "su shows why: {err}");
    expect_log(
        &env,
        &["pam_lockserver(su:auth): user=bob", "access denied: latch locked"],
    );

    env.latch(&alice, Some(OP_B), true);
    env.latch(&bob, Some(OP_B), true);
    let (code, out, err) = sshd.run_as("alice", &["sudo", "-S", "-u", "root", "id", "-un"], &pw);
    assert_eq!((code, out.trim()), (0, "root"), "sudo allowed: {err}");
    let (code, out, err) = sshd.run_as("alice", &["su", "-c", "id -un", "bob"], &pw);
    assert_eq!((code, out.trim()), (0, "bob"), "su allowed: {err}");
    expect_log(&env, &["pam_lockserver(sudo:account): user=alice"]);
}

#[test]
fn unpaired_ignore_with_and_without_a_success_before_the_module() {
    if !can_run("unpaired_ignore_with_and_without_a_success_before_the_module") {
        return;
    }
    let env = Env::new();
    // publickey,keyboard-interactive with pam_permit.so before the module: an unpaired user gets in.
    let sshd = Sshd::start(&env, &key_kbd_spec(&["liam"]));
    let o = sshd.ssh(&Login::key_kbd("liam"));
    assert_in(&o, &sshd, "unpaired, ignore, pam_permit before the module");
    assert!(o.prompts().is_empty(), "{o:#?}");
    drop(sshd);
    // lockserver alone in the auth stack: PAM_IGNORE is the only answer, and libpam denies.
    let sshd = Sshd::start(
        &env,
        &SshdSpec {
            methods: "publickey,keyboard-interactive",
            auth: AUTH_LOCKSERVER_ALONE,
            users: &["liam"],
        },
    );
    let o = sshd.ssh(&Login::key_kbd("liam"));
    assert_refused(&o, &sshd, "unpaired, ignore, lockserver alone");
    expect_log(&env, &["user=liam", "ignored (unpaired = \"ignore\")"]);
}

// ---------------------------------------------------------------------------------------------------------
// The OpenSSH client's keyboard-interactive retries

/// Logs in with the OpenSSH client itself (key, then keyboard-interactive, retried
/// `NumberOfPasswordPrompts` = 3 times as by default), no terminal. Returns (exit code, stderr, seconds).
fn openssh(sshd: &Sshd, user: &str) -> (i32, String, f64) {
    openssh_with(sshd, user, "publickey,keyboard-interactive", None)
}

/// [`openssh`] with the client's `PreferredAuthentications` and, for prompts, an askpass program answering
/// `answer` (`SSH_ASKPASS_REQUIRE=force`: no terminal needed).
fn openssh_with(sshd: &Sshd, user: &str, methods: &str, answer: Option<&str>) -> (i32, String, f64) {
    let mut cmd = Command::new("ssh");
    if let Some(answer) = answer {
        let askpass = sshd.dir.path().join("askpass");
        fs::write(&askpass, format!("#!/bin/sh\necho {answer}\n")).expect("askpass");
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o755)).expect("chmod askpass");
        cmd.env("SSH_ASKPASS", &askpass).env("SSH_ASKPASS_REQUIRE", "force");
    }
    cmd.arg("-i")
        .arg(sshd.dir.path().join("client_key"))
        .args(["-p", &sshd.port.to_string()])
        .args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("PreferredAuthentications={methods}"),
            "-o",
            "NumberOfPasswordPrompts=3",
            "-o",
            "LogLevel=INFO",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .arg("true");
    let start = Instant::now();
    let out = output_within(&mut cmd, "", Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed().as_secs_f64(),
    )
}

#[test]
fn openssh_retries_cost_one_refusal_per_connection() {
    if !can_run("openssh_retries_cost_one_refusal_per_connection") {
        return;
    }
    let mut env = Env::new();
    env.set_conf(|c| c.timeout_ms = 3000);
    let account = env.pair("nina");
    env.latch(&account, None, false);
    let sshd = Sshd::start(&env, &key_kbd_spec(&["nina"]));

    let asked = env.emu.request_count();
    let (code, stderr, _) = openssh(&sshd, "nina");
    assert_ne!(code, 0, "refused: {stderr}\nsshd log:\n{}", sshd.log());
    assert_eq!(
        stderr.matches(LOCKED_TEXT).count(),
        1,
        "the refusal is shown once: {stderr}"
    );
    assert_eq!(env.emu.request_count() - asked, 1, "the service is asked once");
    expect_log(&env, &["user=nina", "access denied again without asking"]);
    let tries = sshd.log().matches("Failed keyboard-interactive/pam for nina").count();
    assert!(tries >= 2, "the client did retry: {}", sshd.log());

    // A new connection is asked again: the lock is open now, and the user gets in.
    env.latch(&account, None, true);
    std::thread::sleep(Duration::from_millis(100));
    assert_in(
        &sshd.ssh(&Login::key_kbd("nina")),
        &sshd,
        "a new connection after unlocking",
    );

    // The service hangs: one wait of the budget, not three.
    env.emu.set_fault(Fault::Hang {
        max: Duration::from_secs(30),
    });
    let (code, stderr, elapsed) = openssh(&sshd, "nina");
    env.emu.set_fault(Fault::None);
    assert_ne!(code, 0, "refused: {stderr}");
    assert_eq!(stderr.matches(UNAVAILABLE_TEXT).count(), 1, "{stderr}");
    // Three tries that each waited would take over 9 s; one wait plus connecting (slow when the suite's
    // other sshd tests run beside it) stays well under 7.5 s.
    assert!(
        elapsed < 3.0 * 2.5,
        "one budget (3 s) plus the connection, not three: {elapsed} s"
    );
}

// ---------------------------------------------------------------------------------------------------------
// The sudo self-service rule

/// The ```sudoers block of the README, as a sysadmin copies it.
fn readme_sudoers_block() -> String {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let start = readme.find("```sudoers\n").expect("a ```sudoers block in the README") + "```sudoers\n".len();
    let len = readme[start..].find("```").expect("end of the block");
    readme[start..start + len].to_string()
}

#[test]
fn sudo_self_service_rule_from_the_readme() {
    if !can_run("sudo_self_service_rule_from_the_readme") {
        return;
    }
    assert!(
        Path::new("/usr/bin/sudo").exists(),
        "sudo is missing: run scripts/test.sh"
    );
    let mut env = Env::new();
    env.set_conf(|c| {
        c.operations = vec![format!("sudo:{OP_B}:true")];
        c.unpaired = "deny".into();
    });
    let sshd = Sshd::start(&env, &key_kbd_spec(&["olga"]));
    let cli = sshd.dir.path().join("lockserver");
    let cli = cli.to_str().expect("path");
    let block = readme_sudoers_block().replace("/usr/sbin/lockserver", cli);
    let sudoers = sshd.dir.path().join("etc/sudoers");
    let base = fs::read_to_string(&sudoers).expect("sudoers copy");
    // Rewritten in place: the namespace's /etc/sudoers is bound to this inode.
    let set_rule = |rule: &str| {
        fs::write(&sudoers, format!("{base}\n{rule}\n")).expect("write sudoers");
        run_ok(Command::new("visudo").args(["-c", "-q", "-f"]).arg(&sudoers));
    };
    let sudo = |args: &[&str]| {
        let mut argv = vec!["sudo", "-n", cli];
        argv.extend_from_slice(args);
        sshd.run_as("olga", &argv, "")
    };

    // NOPASSWD alone: sudo still runs the account stack, which denies the unpaired user (unpaired = "deny").
    let without: Vec<&str> = block.lines().filter(|l| !l.starts_with("Defaults!")).collect();
    set_rule(&without.join("\n"));
    let code = env.emu.add_code(None).expect("code");
    let (rc, out, err) = sudo(&["pair", &code]);
    assert_ne!(rc, 0, "refused by the account stack: {out} {err}");
    assert!(
        env.store()
            .get("olga", lockserver::store::default_deadline())
            .expect("store")
            .is_none(),
        "not paired: {out} {err}"
    );
    expect_log(
        &env,
        &[
            "pam_lockserver(sudo:account): user=olga",
            "denied (unpaired = \"deny\")",
        ],
    );

    // The README's block: the user pairs, then checks their lock while the sudo operation is locked.
    set_rule(&block);
    let code = env.emu.add_code(None).expect("code");
    let (rc, out, err) = sudo(&["pair", &code]);
    assert_eq!(rc, 0, "paired through sudo: {out} {err}");
    let account = env
        .store()
        .get("olga", lockserver::store::default_deadline())
        .expect("store")
        .expect("paired")
        .account_id;
    env.latch(&account, Some(OP_B), false);
    let (rc, out, err) = sudo(&["status"]);
    assert_eq!((rc, out.trim()), (0, "olga: open (application)"), "{err}");
    let (rc, out, err) = sudo(&["status", "--operation", "sudo"]);
    assert_eq!((rc, out.trim()), (1, "olga: locked (operation sudo)"), "{err}");
    let (rc, out, err) = sudo(&["status", "--user", "olga"]);
    assert_eq!(rc, 0, "status --user of oneself: {out} {err}");
    let (rc, out, err) = sudo(&["totp", "verify", "123456"]);
    assert!(
        err.contains("lockserver:") && !err.contains("sudo:"),
        "the CLI ran (and says TOTP is off) rather than sudo refusing ({rc}): {out} {err}"
    );
    // The CLI still acts only on the caller, and every other command still meets the whole stack.
    let (rc, _, err) = sudo(&["status", "--user", "root"]);
    assert_eq!(rc, 7, "{err}");
    let (rc, out, err) = sshd.run_as(
        "olga",
        &["sudo", "-S", "-u", "root", "id", "-un"],
        &format!("{PASSWORD}\n"),
    );
    assert_ne!(rc, 0, "other sudo commands still check the lock: {out} {err}");
    assert!(err.contains(LOCKED_TEXT), "{err}");

    // sudo's default passwd_tries = 3: after a lock refusal sudo says "Sorry, try again." and asks for the
    // password again, as after a wrong password (the guide says so).
    set_rule(&format!("{block}\nDefaults passwd_tries=3"));
    let (rc, out, err) = sshd.run_as(
        "olga",
        &["sudo", "-S", "-u", "root", "id", "-un"],
        &format!("{PASSWORD}\n{PASSWORD}\n{PASSWORD}\n"),
    );
    println!("sudo, passwd_tries=3, locked: {rc}\n{err}");
    assert_ne!(rc, 0, "{out}");
    assert_eq!(err.matches(LOCKED_TEXT).count(), 3, "asked three times: {err}");
    assert_eq!(err.matches("Sorry, try again.").count(), 2, "{err}");
}

/// What the sysadmin guide says an OpenSSH user reads, observed with the OpenSSH client itself.
#[test]
fn what_openssh_users_read() {
    if !can_run("what_openssh_users_read") {
        return;
    }
    let mut env = Env::new();
    env.set_conf(|c| c.operations = vec!["TOTP:TOTP:true".into()]);
    let ivan = env.pair("ivan");
    env.pair("carol");
    enrol_totp(&env, "carol");
    env.latch(&ivan, None, false);

    // Key alone, latch locked: the account hook's text, then the connection closes.
    let sshd = Sshd::start(
        &env,
        &SshdSpec {
            methods: "publickey",
            auth: AUTH_KEY_THEN_LOCKSERVER,
            users: &["ivan"],
        },
    );
    let (code, stderr, _) = openssh_with(&sshd, "ivan", "publickey", None);
    println!("key-only refusal:\n{stderr}");
    assert_ne!(code, 0);
    let locked = stderr
        .find(LOCKED_TEXT)
        .unwrap_or_else(|| panic!("the reason is shown: {stderr}"));
    let closed = stderr
        .find("Connection closed")
        .unwrap_or_else(|| panic!("then the close: {stderr}"));
    assert!(locked < closed, "{stderr}");
    drop(sshd);

    // Wrong TOTP codes until max_attempts (PAM_MAXTRIES): sshd offers no method any more.
    let sshd = Sshd::start(&env, &key_kbd_spec(&["carol"]));
    let (code, stderr, _) = openssh_with(&sshd, "carol", "publickey,keyboard-interactive", Some("000000"));
    println!("too many codes:\n{stderr}");
    assert_ne!(code, 0);
    assert!(stderr.contains(WRONG_CODE_TEXT), "{stderr}");
    assert!(
        stderr.contains("Permission denied ()."),
        "{stderr}\nsshd log:\n{}",
        sshd.log()
    );
    println!("sshd log:\n{}", sshd.log());
}

// ---------------------------------------------------------------------------------------------------------
// PingID: the same sshd, the emulator's PingID side playing the phone

/// The dictionary's `[pingid]` texts, as the ssh user reads them.
const APPROVE_TEXT: &str = "Approve the login on your phone.";
const REJECTED_TEXT: &str = "Access denied: the login was rejected on your phone.";
const PUSH_TIMEOUT_TEXT: &str = "Access denied: the phone did not answer in time.";
const KEYBOARD_TEXT: &str = "log in with keyboard-interactive authentication";

/// The PingID config beside the Latch one ([`Env::new`]): `service = "pingid"` against the emulator's
/// account, `push_timeout_secs = 5` (the least allowed) and `poll_interval_ms = 100`, so an unanswered
/// push costs seconds, not the default 40. Each user is paired as a claimed key leaves them (a PingID
/// user with a device in the application, the pairing in the store).
fn pingid_env(users: &[&str]) -> Env {
    let env = Env::pingid();
    for user in users {
        env.pair_pingid(user);
    }
    env
}

/// How `user`'s phone answers the next pushes.
fn phone(env: &Env, user: &str, plan: Plan) {
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

/// The statuses of `user`'s authentications at the emulator, oldest first.
fn pushes(env: &Env, user: &str) -> Vec<String> {
    env.emu
        .pingid_authentications(Some(user))
        .iter()
        .map(|a| a["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn push_timeout(env: &Env) -> f64 {
    env.conf.push_timeout_secs as f64
}

/// Like [`expect_log`], returning when the line arrived: the module sends it before its hook returns,
/// so it times the module's own work, without what sshd adds after a failure (below).
fn expect_log_at(env: &Env, needles: &[&str]) -> Instant {
    expect_log(env, needles);
    env.logs.find_timed(needles).expect("the line just found").1
}

/// sshd 9.2 pads every failed authentication request to a multiple of a per-user delay of a few
/// milliseconds, doubled until it exceeds the time the request took (`ensure_minimum_time_since`): a
/// refusal after waiting `t` seconds in the module reaches the client after between `t` and `2 t`.
const SSHD_FAILURE_PADDING: f64 = 2.0;

#[test]
fn pingid_push_approved_rejected_unanswered() {
    if !can_run("pingid_push_approved_rejected_unanswered") {
        return;
    }
    let env = pingid_env(&["paula"]);
    let sshd = Sshd::start(
        &env,
        &SshdSpec {
            auth: AUTH_KEY_THEN_LOCKSERVER_DEBUG,
            ..key_kbd_spec(&["paula"])
        },
    );
    let budget = env.conf.timeout_ms as f64 / 1000.0;

    // Approved a second after the push: in, after waiting for the phone; one push for the login (the
    // account phase of the same PAM transaction does not ask again).
    phone(&env, "paula", Plan::new("approve").after(1));
    let o = sshd.ssh(&Login::key_kbd("paula"));
    assert_in(&o, &sshd, "push approved");
    assert!(o.output.contains("paula"), "the command ran as paula: {o:?}");
    assert!(o.prompts().is_empty(), "a push asks nothing: {o:#?}");
    assert!(o.elapsed >= 1.0, "it waited for the phone: {o:#?}");
    assert_eq!(pushes(&env, "paula"), ["APPROVED"], "one push for the whole login");
    expect_log(
        &env,
        &[
            &format!("{SERVICE}:auth"),
            "user=paula",
            "waiting for the person to answer on the phone",
        ],
    );
    expect_log(
        &env,
        &[&format!("{SERVICE}:auth"), "user=paula", "PingID open (application)"],
    );
    expect_log(
        &env,
        &[
            &format!("{SERVICE}:account"),
            "user=paula",
            "lock already checked in the auth phase",
        ],
    );
    // Connection and key for a baseline of what the login costs besides the module.
    phone(&env, "paula", Plan::new("approve"));
    let connect = sshd.ssh(&Login::key_kbd("paula"));
    assert_in(&connect, &sshd, "push approved at once");

    // Rejected: refused after the key, and the ssh user reads why. sshd holds PAM_TEXT_INFO until a
    // prompt or the end of the PAM conversation, so "Approve the login on your phone" arrives with the
    // refusal, in one keyboard-interactive round without prompts.
    env.logs.clear();
    phone(&env, "paula", Plan::new("reject"));
    let o = sshd.ssh(&Login::key_kbd("paula"));
    assert_refused(&o, &sshd, "push rejected");
    assert_eq!(o.partial, ["keyboard-interactive"], "refused after the key");
    assert_eq!(
        o.rounds,
        [Round {
            title: String::new(),
            instructions: format!("{APPROVE_TEXT}\n{REJECTED_TEXT}\n"),
            prompts: Vec::new(),
        }],
        "the user reads both texts, in order: {o:#?}"
    );
    expect_log(
        &env,
        &[
            "user=paula",
            "access denied: refused on the phone (rejected, application)",
        ],
    );

    // Nobody answers: the module refuses after push_timeout_secs, within the budget (+ 0.5 s), and
    // withdraws the question at PingID (the DELETE arrived: the emulator has it as CANCELED).
    phone(&env, "paula", Plan::new("ignore"));
    env.logs.clear();
    let o = sshd.ssh(&Login::key_kbd("paula"));
    assert_refused(&o, &sshd, "push unanswered");
    assert!(o.seen().contains(PUSH_TIMEOUT_TEXT), "the user is told why: {o:#?}");
    let pushed = expect_log_at(&env, &["user=paula", "pingid: POST", "/authentications"]);
    let refused = expect_log_at(&env, &["user=paula", "no answer on the phone within 5 s"]) - pushed;
    let limit = push_timeout(&env) + budget + 0.5;
    assert!(
        refused.as_secs_f64() >= push_timeout(&env) && refused.as_secs_f64() <= limit,
        "the module refused after push_timeout_secs, within the budget + 0.5 s ({limit:.1} s): {refused:?}"
    );
    assert!(
        o.elapsed <= (connect.elapsed + limit) * SSHD_FAILURE_PADDING,
        "the client read it within the connection and sshd's padding of that: {o:#?}"
    );
    assert_eq!(
        pushes(&env, "paula").last().map(String::as_str),
        Some("CANCELED"),
        "the unanswered push is withdrawn: {:?}",
        pushes(&env, "paula")
    );
    println!(
        "push unanswered: the module refused after {refused:?}, the client read it after {:.1} s",
        o.elapsed
    );
}

#[test]
fn pingid_otp_right_and_wrong() {
    if !can_run("pingid_otp_right_and_wrong") {
        return;
    }
    let env = pingid_env(&["oscar"]);
    let sshd = Sshd::start(&env, &key_kbd_spec(&["oscar"]));

    // PingID answers the authentication with OTP: the code is asked with echo off.
    phone(&env, "oscar", otp_plan("246810"));
    let o = sshd.ssh(&Login::key_kbd("oscar").answers(&["246810"]));
    assert_in(&o, &sshd, "right code");
    assert_eq!(o.prompts(), [CODE_PROMPT.to_string() + ": "], "{o:#?}");
    assert!(!o.rounds[0].prompts[0].1, "the code is typed with echo off");
    assert_eq!(pushes(&env, "oscar"), ["APPROVED"]);
    expect_log(&env, &["user=oscar", "one-time password accepted"]);

    // Wrong codes up to max_attempts: each later prompt carries the dictionary's text.
    phone(&env, "oscar", otp_plan("246810"));
    let o = sshd.ssh(&Login::key_kbd("oscar").answers(&["111111", "222222", "333333"]));
    assert_refused(&o, &sshd, "three wrong codes");
    let prompts = o.prompts();
    assert_eq!(prompts.len(), 3, "max_attempts = 3 prompts: {o:#?}");
    for p in &prompts[1..] {
        assert_eq!(*p, format!("{WRONG_CODE_TEXT}\n{CODE_PROMPT}: "), "{o:#?}");
    }
    expect_log(&env, &["user=oscar", "too many wrong one-time passwords"]);

    // The push first, then the phone offers a code instead: the approve text arrives with the prompt,
    // and a wrong code then the right one lets in.
    phone(
        &env,
        "oscar",
        Plan {
            after_secs: 1,
            ..otp_plan("135790")
        },
    );
    let o = sshd.ssh(&Login::key_kbd("oscar").answers(&["000000", "135790"]));
    assert_in(&o, &sshd, "push, then a code: wrong, then right");
    assert_eq!(
        o.prompts(),
        [
            format!("{APPROVE_TEXT}\n{CODE_PROMPT}: "),
            format!("{WRONG_CODE_TEXT}\n{CODE_PROMPT}: ")
        ],
        "{o:#?}"
    );
}

#[test]
fn pingid_key_only_account_hook() {
    if !can_run("pingid_key_only_account_hook") {
        return;
    }
    let env = pingid_env(&["kim"]);
    let sshd = Sshd::start(
        &env,
        &SshdSpec {
            methods: "publickey",
            auth: AUTH_KEY_THEN_LOCKSERVER,
            users: &["kim", "lena"],
        },
    );

    phone(&env, "kim", Plan::new("approve").after(1));
    let o = sshd.ssh(&Login::key("kim"));
    assert_in(&o, &sshd, "key, push approved");
    assert!(o.elapsed >= 1.0, "it waited for the phone: {o:#?}");
    assert_eq!(pushes(&env, "kim"), ["APPROVED"]);
    expect_log(
        &env,
        &[&format!("{SERVICE}:account"), "user=kim", "PingID open (application)"],
    );

    phone(&env, "kim", Plan::new("reject"));
    let o = sshd.ssh(&Login::key("kim"));
    assert_refused(&o, &sshd, "key, push rejected");
    assert!(o.rounds.is_empty(), "no prompt: {o:#?}");
    assert_eq!(
        o.banner,
        format!("{APPROVE_TEXT}\n{REJECTED_TEXT}\n"),
        "sshd shows the account hook's texts as a banner before it closes: {o:#?}"
    );
    expect_log(
        &env,
        &[
            &format!("{SERVICE}:account"),
            "user=kim",
            "access denied: refused on the phone (rejected",
        ],
    );

    // A code cannot be asked here: refused with the text that says how to log in, the question
    // withdrawn at PingID.
    phone(&env, "kim", otp_plan("246810"));
    let o = sshd.ssh(&Login::key("kim"));
    assert_refused(&o, &sshd, "key, PingID asks for a code");
    assert!(o.banner.contains(KEYBOARD_TEXT), "{o:#?}");
    assert_eq!(pushes(&env, "kim").last().map(String::as_str), Some("CANCELED"));

    assert_in(&sshd.ssh(&Login::key("lena")), &sshd, "unpaired user, ignore");
    assert!(pushes(&env, "lena").is_empty(), "no push for an unpaired user");
}

#[test]
fn pingid_service_hung_or_down() {
    if !can_run("pingid_service_hung_or_down") {
        return;
    }
    let mut env = pingid_env(&["hugo"]);
    phone(&env, "hugo", Plan::new("approve"));
    let sshd = Sshd::start(
        &env,
        &SshdSpec {
            auth: AUTH_KEY_THEN_LOCKSERVER_DEBUG,
            ..key_kbd_spec(&["hugo"])
        },
    );
    let budget = env.conf.timeout_ms as f64 / 1000.0;
    let connect = sshd.ssh(&Login::key_kbd("hugo"));
    assert_in(&connect, &sshd, "healthy");

    for (what, fault) in [
        (
            "hang",
            Some(Fault::Hang {
                max: Duration::from_secs(30),
            }),
        ),
        ("down", None),
    ] {
        let saved_url = env.conf.url.clone();
        match fault {
            Some(f) => env.emu.set_fault(f),
            None => {
                let port = common::dead_port();
                env.set_conf(|c| c.url = format!("http://127.0.0.1:{port}"));
            }
        }
        // From the service call sent to the decision: the budget + 0.5 s. The client reads it after
        // the connection, padded by sshd on a failure.
        let limit = budget + 0.5;
        let sent = ["user=hugo", "pingid: POST", "/authentications"];
        env.set_conf(|c| c.fail_mode = "secure".into());
        env.logs.clear();
        let o = sshd.ssh(&Login::key_kbd("hugo"));
        assert_refused(&o, &sshd, &format!("{what}, secure"));
        assert!(
            o.seen().contains(UNAVAILABLE_TEXT),
            "{what}: the user is told why: {o:#?}"
        );
        let decided =
            expect_log_at(&env, &["user=hugo", "access denied (fail_mode = secure)"]) - expect_log_at(&env, &sent);
        assert!(
            decided.as_secs_f64() <= limit,
            "{what}: the module refused within {limit:.1} s: {decided:?}"
        );
        assert!(
            o.elapsed <= (connect.elapsed + limit) * SSHD_FAILURE_PADDING,
            "{what}: {o:#?}"
        );

        env.set_conf(|c| c.fail_mode = "safe".into());
        env.logs.clear();
        let o = sshd.ssh(&Login::key_kbd("hugo"));
        assert_in(&o, &sshd, &format!("{what}, safe"));
        let decided = expect_log_at(&env, &["user=hugo", "FAIL-OPEN"]) - expect_log_at(&env, &sent);
        assert!(
            decided.as_secs_f64() <= limit,
            "{what}: the module let in within {limit:.1} s: {decided:?}"
        );
        // The account phase of the same transaction takes the auth phase's answer: no second wait.
        assert!(
            env.logs.find(&[&format!("{SERVICE}:account"), "FAIL-OPEN"]).is_none()
                && env
                    .logs
                    .find(&[&format!("{SERVICE}:account"), "lock already checked"])
                    .is_some(),
            "the account phase did not ask again: {:#?}",
            env.logs.lines()
        );
        assert!(
            o.elapsed <= (connect.elapsed + limit) * SSHD_FAILURE_PADDING,
            "{what}: {o:#?}"
        );

        env.emu.set_fault(Fault::None);
        env.set_conf(|c| {
            c.url = saved_url;
            c.fail_mode = "secure".into();
        });
        assert_in(&sshd.ssh(&Login::key_kbd("hugo")), &sshd, &format!("after {what}"));
    }
}

/// What a PingID user reads in the OpenSSH client itself, and what its keyboard-interactive retries cost.
#[test]
fn pingid_through_the_openssh_client() {
    if !can_run("pingid_through_the_openssh_client") {
        return;
    }
    let mut env = pingid_env(&["rita"]);
    let sshd = Sshd::start(&env, &key_kbd_spec(&["rita"]));

    phone(&env, "rita", Plan::new("approve"));
    let (code, stderr, _) = openssh(&sshd, "rita");
    assert_eq!(code, 0, "approved: {stderr}\nsshd log:\n{}", sshd.log());
    // An interactive login (a terminal, no command): sshd shows the PAM texts it held after the login.
    let mut cmd = Command::new("ssh");
    cmd.arg("-tt")
        .arg("-i")
        .arg(sshd.dir.path().join("client_key"))
        .args(["-p", &sshd.port.to_string()])
        .args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg("rita@127.0.0.1");
    let out = output_within(&mut cmd, &format!("echo {LOGGED_IN}; exit\n"), Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "approved, interactive:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "interactive login: {stdout}");
    assert!(
        stdout.contains(APPROVE_TEXT),
        "the held text is shown after the login: {stdout}"
    );

    phone(&env, "rita", Plan::new("reject"));
    let before = pushes(&env, "rita").len();
    let (code, stderr, elapsed) = openssh(&sshd, "rita");
    println!("push rejected, OpenSSH client ({elapsed:.1} s):\n{stderr}");
    assert_ne!(code, 0, "refused: {stderr}");
    assert_eq!(
        stderr.matches(REJECTED_TEXT).count(),
        1,
        "the refusal is shown once: {stderr}"
    );
    assert_eq!(pushes(&env, "rita").len() - before, 1, "one push, not one per retry");

    phone(&env, "rita", Plan::new("ignore"));
    let before = pushes(&env, "rita").len();
    let (code, stderr, elapsed) = openssh(&sshd, "rita");
    println!("push unanswered, OpenSSH client ({elapsed:.1} s):\n{stderr}");
    assert_ne!(code, 0, "refused: {stderr}");
    assert_eq!(stderr.matches(PUSH_TIMEOUT_TEXT).count(), 1, "{stderr}");
    assert_eq!(pushes(&env, "rita").len() - before, 1, "one push, not one per retry");
    // One wait padded by sshd is under 2 × 5 s plus the connection; three waits are over 15 s.
    assert!(
        elapsed < push_timeout(&env) * SSHD_FAILURE_PADDING + 3.0,
        "one wait for the phone, not one per retry: {elapsed} s"
    );

    // The service hangs: one budget, not one per retry, as for Latch.
    env.set_conf(|c| c.timeout_ms = 3000);
    env.emu.set_fault(Fault::Hang {
        max: Duration::from_secs(30),
    });
    let (code, stderr, elapsed) = openssh(&sshd, "rita");
    env.emu.set_fault(Fault::None);
    assert_ne!(code, 0, "refused: {stderr}");
    assert_eq!(stderr.matches(UNAVAILABLE_TEXT).count(), 1, "{stderr}");
    assert!(
        elapsed < 3.0 * 2.5,
        "one budget (3 s) plus the connection, not three: {elapsed} s"
    );
}

/// sudo shows PAM_TEXT_INFO at once on the user's terminal (sshd holds it, above): the approve text is
/// there while the module waits for the phone, and the phone's answer then decides. sudo runs on a
/// terminal of its own (`script`), as a person runs it: without one it writes the text to a buffered
/// stdout.
#[test]
fn pingid_sudo_shows_the_approve_text_while_it_waits() {
    if !can_run("pingid_sudo_shows_the_approve_text_while_it_waits") {
        return;
    }
    for tool in ["/usr/bin/sudo", "/usr/bin/script"] {
        assert!(Path::new(tool).exists(), "{tool} is missing: run scripts/test.sh");
    }
    let mut env = pingid_env(&["sam"]);
    env.set_conf(|c| {
        c.operations = vec!["sudo:sudo-op:true".into()];
        c.push_timeout_secs = 30;
    });
    let sshd = Sshd::start(&env, &key_kbd_spec(&["sam"]));
    phone(&env, "sam", Plan::new("ignore"));

    let mut child = sshd
        .command_as("sam", &["script", "-q", "-e", "-c", "sudo -u root id -un", "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sudo on a terminal");
    let mut input = child.stdin.take().expect("stdin");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = child.stdout.take().map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                    break;
                }
            }
        })
    });
    let mut seen = String::new();
    let read_until = |needle: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seen.contains(needle) && Instant::now() < deadline {
            if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
                seen.push_str(&chunk);
            }
        }
        seen.contains(needle)
    };
    // The password at sudo's prompt (echo off), then the push.
    assert!(
        read_until("password for sam", &mut seen),
        "sudo asks for the password: {seen}"
    );
    let _ = input.write_all(format!("{PASSWORD}\n").as_bytes());
    let shown_while_waiting = read_until(APPROVE_TEXT, &mut seen);
    let waiting = env.emu.pingid_authentications(Some("sam"));
    // The phone answers only now.
    let answered = env.emu.pingid_answer("sam", Plan::new("approve"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let status = child.wait().expect("wait for sudo");
    drop(input);
    if let Some(r) = reader {
        let _ = r.join();
    }
    seen.extend(rx.try_iter());
    println!("sudo showed:\n{seen}");
    assert!(shown_while_waiting, "the text came while the module waited: {seen}");
    assert!(!seen.contains(PASSWORD), "the password was not echoed: {seen}");
    assert_eq!(waiting.len(), 1, "one push: {waiting:?}");
    assert_eq!(
        waiting[0]["status"], "IN_PROGRESS",
        "nobody had answered yet: {waiting:?}"
    );
    assert_eq!(
        waiting[0]["client_context"], "sudo-op",
        "the phone shows which service asks"
    );
    answered.expect("the pending push answered");
    assert!(status.success(), "approved: sudo ran: {seen}");
    assert!(seen.contains("root"), "{seen}");
    expect_log(
        &env,
        &["pam_lockserver(sudo:auth): user=sam", "PingID open (operation sudo-op)"],
    );
}
