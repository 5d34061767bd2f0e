//! The README's from-source install and the sysadmin guide's sshd steps, followed literally in a pristine
//! Debian 12 root (issue 13), then a login with the real OpenSSH client against the emulator.
//!
//! The root (`deb_support::root`) is `mmdebstrap --variant=minbase bookworm` plus the packages of the
//! README's `apt-get install` line (read from README.md, so the root follows the README) and
//! `openssh-server`, which the guide takes as given on an SSH host. The blocks marked
//! `<!-- source-install: … -->` in README.md and docs/sysadmin-guide.md are run as they are written,
//! with these exceptions, each forced by the test machine having no internet but package registries:
//! - the rustup line is not run: this machine's toolchain (`$RUSTUP_HOME`, `$CARGO_HOME`) is mounted at
//!   `/root/.rustup` and `/root/.cargo` in the root as overlays (the host's files are never written), so the
//!   README's next line, `. "$HOME/.cargo/env" && rustc --version`, runs as written;
//! - `git clone https://github.com/…` is sent by git's `url.<base>.insteadOf` to a bare clone of this
//!   checkout: the root builds the checkout's **HEAD commit** (commit before running this test);
//! - `systemctl reload ssh` (no systemd in a chroot): the test starts sshd on a free loopback port,
//!   after making `/run/sshd` as Debian's ssh.service does.
//!
//! The build inside the root is the whole release build (`make install` runs `cargo build --release`),
//! into `target/source-root-target/` of the host, kept between runs like the root's tarball: the first
//! run builds everything (measured and printed: see the README's "Install with make"), later ones only what
//! changed. Then check-config, pairing, and the guide's key-then-lockserver layout with Debian's stock
//! sshd_config (MaxAuthTries 6) and the stock client (NumberOfPasswordPrompts 3): latch open → in; locked →
//! the reason once, `Permission denied (keyboard-interactive).`; wrong TOTP codes → three prompts in one
//! PAM transaction (PAM_MAXTRIES), two password prompts from the client, then sshd's disconnect, `Too many
//! authentication failures`. sshd runs with `-o LogLevel=VERBOSE` (its log is asserted and printed).
//!
//! Needs root (chroot, mount), git, and Debian's and crates.io's mirrors; as another user it prints why and
//! passes. Run it alone with `cargo test --test source_install`.

mod deb_support;

use deb_support::repo_root;
use deb_support::root::{Root, cache_dir, can_run, text};
use lockserver_emulator::{Emulator, Options};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOCKED_TEXT: &str = "Access denied: your Latch is locked. Unlock it in the Latch app and try again.";
const WRONG_CODE_TEXT: &str = "The verification code is not right.";
/// Debian's sshd package besides the README's: the guide's steps are for a host that runs sshd.
const SSH_SERVER: &str = "openssh-server";

/// The shell block after the line `<!-- source-install: NAME … -->` in `doc` (a fenced `sh` block).
fn marked_block(doc_path: &str, name: &str) -> String {
    let doc = fs::read_to_string(repo_root().join(doc_path)).unwrap_or_else(|e| panic!("read {doc_path}: {e}"));
    let marker = format!("<!-- source-install: {name} ");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{doc_path} has no `{marker}…-->` line"))
        .1;
    let mut lines = after.lines().skip(1);
    assert_eq!(
        lines.next(),
        Some("```sh"),
        "{doc_path}: the marker `{marker}` is followed by a ```sh block"
    );
    let block: Vec<&str> = lines.take_while(|l| *l != "```").collect();
    assert!(!block.is_empty(), "{doc_path}: the `{name}` block is empty");
    block.join("\n") + "\n"
}

/// The packages of the block's `apt-get install` line.
fn apt_packages(block: &str) -> Vec<String> {
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with("apt-get install"))
        .expect("the README's block installs its packages with apt-get install");
    let code = line.split('#').next().unwrap_or_default();
    code.split_whitespace()
        .skip(2)
        .filter(|w| !w.starts_with('-'))
        .map(str::to_string)
        .collect()
}

/// The URL of the block's `git clone URL` command.
fn clone_url(block: &str) -> String {
    block
        .split_whitespace()
        .skip_while(|w| *w != "clone")
        .nth(1)
        .expect("the README's block clones the source with git clone URL")
        .to_string()
}

/// `$VAR`, else `$HOME/default`.
fn home_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(default),
        PathBuf::from,
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// sshd running in the root; killed (and waited for) when dropped, before the root goes.
struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The OpenSSH client in the root, as a user types it (Debian's stock client config), with the test's key
/// and a host key it has not seen before; `answer`, when given, is typed at every prompt (through
/// SSH_ASKPASS, which also writes each prompt, one a line, to /root/prompts).
fn ssh(root: &Root, port: u16, user: &str, answer: Option<&str>) -> Output {
    let askpass = answer.map(|a| {
        let _ = fs::remove_file(root.file("/root/prompts"));
        let path = root.file("/root/askpass");
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" | tr '\\n' ' ' >> /root/prompts; echo >> /root/prompts\necho '{a}'\n"
            ),
        )
        .expect("askpass");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod askpass");
    });
    let env: &[(&str, &str)] = if askpass.is_some() {
        &[("SSH_ASKPASS", "/root/askpass"), ("SSH_ASKPASS_REQUIRE", "force")]
    } else {
        &[]
    };
    let script = format!(
        "exec timeout 60 ssh -i /root/.ssh/id_ed25519 -p {port} -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null {user}@127.0.0.1 true"
    );
    root.command(&script, env)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh in the root")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn readme_source_install_and_guide_sshd_steps_in_a_debian_12_root() {
    if !can_run() {
        return;
    }
    let get = marked_block("README.md", "get");
    let install = marked_block("README.md", "install");
    let sshd_steps = marked_block("docs/sysadmin-guide.md", "sshd");

    let mut include = apt_packages(&get);
    include.push(SSH_SERVER.into());
    include.sort();
    include.dedup();
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    let mut root = Root::new(&include);

    // A machine's name service: mmdebstrap's tarball leaves /etc/resolv.conf out.
    if !root.exists("/etc/resolv.conf") {
        fs::copy("/etc/resolv.conf", root.file("/etc/resolv.conf")).expect("copy resolv.conf");
    }

    // The toolchain, and the source where the README's URL points.
    root.overlay(&home_dir("RUSTUP_HOME", ".rustup"), "/root/.rustup");
    root.overlay(&home_dir("CARGO_HOME", ".cargo"), "/root/.cargo");
    let bare = root.file("/srv/lockserver.git");
    deb_support::run(
        Command::new("git")
            .args(["clone", "--bare", "--quiet"])
            .arg(repo_root())
            .arg(&bare),
    );
    root.ok(&format!(
        "git config --global url./srv/lockserver.git.insteadOf '{}'",
        clone_url(&get)
    ));

    // README "Install": the packages, Rust, the source.
    let rustup_line = get
        .lines()
        .find(|l| l.contains("sh.rustup.rs"))
        .expect("the README installs Rust with rustup");
    let get_script = get.replace(rustup_line, "# (rustup: this machine's toolchain is mounted)");
    let out = root.sh(&format!("set -e\ncd /root\n{get_script}"));
    assert!(out.status.success(), "README's Install block:\n{}", text(&out));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.contains("rustc 1."), "rustc --version: {version}");

    // README "Install with make", in the clone, into the kept target directory.
    let target = cache_dir("source-root-target");
    root.bind(&target, "/root/lockserver/target", true);
    let started = Instant::now();
    let out = root.sh(&format!(
        "set -e\n. \"$HOME/.cargo/env\"\ncd /root/lockserver\n{install}"
    ));
    println!(
        "README's make install block in the root: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "README's make install block:\n{}", text(&out));
    let triplet = root.ok("gcc -dumpmachine").trim().to_string();
    for installed in [
        "/usr/sbin/lockserver".to_string(),
        format!("/lib/{triplet}/security/pam_lockserver.so"),
        format!("/usr/lib/{triplet}/liblockserver.so.0"),
        "/usr/share/man/man8/lockserver.8".into(),
        "/usr/share/man/man5/lockserver.conf.5".into(),
        "/usr/share/bash-completion/completions/lockserver".into(),
    ] {
        assert!(root.exists(&installed), "make install put {installed} in place");
    }
    assert_eq!(
        root.ok("stat -c '%a %U' /etc/lockserver /var/lib/lockserver"),
        "700 root\n700 root\n"
    );

    // The example config is in place and switched off: installing changed no login.
    assert_eq!(root.ok("stat -c '%a %U' /etc/lockserver/lockserver.conf"), "600 root\n");
    assert!(
        fs::read_to_string(root.file("/etc/lockserver/lockserver.conf"))
            .expect("example config")
            .contains("enabled    = false"),
        "the example is switched off"
    );

    // README "Configure": the emulator's application, TOTP on; check-config.
    let emu = Emulator::start(Options::default()).expect("emulator");
    let config = format!(
        "enabled = true\nservice = \"latch\"\noperations = [\"TOTP:TOTP:true\"]\nfail_mode = \"secure\"\n\
         unpaired = \"ignore\"\ntimeout_ms = 3000\nstore = \"sqlite:///var/lib/lockserver/lockserver.db\"\n\n\
         [latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\n",
        emu.app_id(),
        emu.secret(),
        emu.url()
    );
    let conf = root.file("/etc/lockserver/lockserver.conf");
    fs::write(&conf, config).expect("write the config");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let out = root.ok("lockserver check-config");
    assert!(out.contains("config: ok") && out.contains("service: ok"), "{out}");

    // Two users with the test's key: alice (the lock), carol (the lock and TOTP).
    root.ok("ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519");
    let mut accounts = Vec::new();
    for user in ["alice", "carol"] {
        root.ok(&format!(
            "useradd --create-home --shell /bin/sh {user} && install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh \
             && install -m 0600 -o {user} -g {user} /root/.ssh/id_ed25519.pub /home/{user}/.ssh/authorized_keys"
        ));
        let (code, account) = emu
            .add_code_for(None, &format!("{user}@example.org"))
            .expect("pairing code");
        root.ok(&format!("lockserver pair {code} --user {user}"));
        accounts.push(account);
    }
    root.ok("lockserver totp create --user carol");

    // The guide's sshd steps, in the clone (its packaging/ directory), then sshd on a loopback port.
    root.ok("install -d -m 0755 /run/sshd");
    let out = root.sh(&format!("set -e\ncd /root/lockserver\n{sshd_steps}"));
    assert!(out.status.success(), "the guide's sshd block:\n{}", text(&out));
    let effective = root.ok("sshd -T");
    for line in [
        "usepam yes",
        "kbdinteractiveauthentication yes",
        "passwordauthentication no",
        "authenticationmethods publickey,keyboard-interactive",
        "maxauthtries 6",
    ] {
        assert!(effective.lines().any(|l| l == line), "sshd -T: {line}\n{effective}");
    }
    let port = free_port();
    let log = fs::File::create(root.file("/var/log/sshd-test.log")).expect("sshd log");
    let child = root
        .command(
            &format!("exec /usr/sbin/sshd -D -e -p {port} -o ListenAddress=127.0.0.1 -o LogLevel=VERBOSE"),
            &[],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("start sshd in the root");
    let _sshd = Sshd(child);
    let sshd_log = || fs::read_to_string(root.file("/var/log/sshd-test.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen:\n{}", sshd_log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Latch open: in, nothing asked.
    let out = ssh(&root, port, "alice", None);
    assert!(
        out.status.success(),
        "latch open: {}\nsshd:\n{}",
        stderr(&out),
        sshd_log()
    );

    // Locked: the reason once (one refusal per connection), then the client has no method left to try.
    emu.set_latch(&accounts[0], None, false).expect("lock");
    let out = ssh(&root, port, "alice", None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "latch locked: {err}");
    assert_eq!(err.matches(LOCKED_TEXT).count(), 1, "{err}\nsshd:\n{}", sshd_log());
    assert!(
        err.contains("alice@127.0.0.1: Permission denied (keyboard-interactive)."),
        "{err}"
    );
    emu.set_latch(&accounts[0], None, true).expect("unlock");
    assert!(ssh(&root, port, "alice", None).status.success(), "unlocked again");

    // Wrong TOTP codes: max_attempts (3) code prompts in one keyboard-interactive round, which ends in
    // PAM_MAXTRIES. With Debian's stock sshd_config (MaxAuthTries 6) and stock client, the client then asks
    // twice for a password (which this sshd never accepts: key + keyboard-interactive only) and sshd ends
    // the connection: `Too many authentication failures` (tests/ssh_e2e.rs, with MaxAuthTries 10 and the
    // client limited to publickey,keyboard-interactive, sees `Permission denied ().` instead).
    let out = ssh(&root, port, "carol", Some("000000"));
    let err = stderr(&out);
    let prompts = fs::read_to_string(root.file("/root/prompts")).unwrap_or_default();
    let log = sshd_log();
    println!("wrong codes: client:\n{err}\nprompts:\n{prompts}\nsshd:\n{log}");
    assert_eq!(out.status.code(), Some(255), "wrong codes: {err}");
    assert_eq!(
        prompts.matches("Verification code:").count(),
        3,
        "three code prompts: {prompts}"
    );
    assert!(err.contains(WRONG_CODE_TEXT), "{err}");
    assert!(
        err.contains("Received disconnect from 127.0.0.1 port") && err.contains(": Too many authentication failures"),
        "{err}"
    );
    assert!(!err.contains("Permission denied ()."), "{err}");
    assert!(
        log.contains("maximum authentication attempts exceeded for carol from 127.0.0.1"),
        "{log}"
    );
    println!("what the OpenSSH client printed after three wrong codes:\n{err}");
}
