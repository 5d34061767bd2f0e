//! The Debian packages installed into a throwaway Debian 12 root (issue 13), used there with only that
//! root's programs, then removed and purged.
//!
//! The root is `mmdebstrap --variant=minbase bookworm` plus pamtester, pkg-config, gcc and libc6-dev
//! (`deb_support::root`: cached for a week, a fresh copy per run, programs run through `chroot` with an
//! empty environment, the emulator on the host's loopback).
//!
//! Needs root (chroot, mount) and Debian's package mirror; as another user the test prints why and passes.
//! Run it alone with `cargo test --test deb_install`.

mod deb_support;

use deb_support::root::{Root, can_run, text};
use deb_support::{VERSION, debs};
use lockserver_emulator::{Emulator, Options};
use std::fs;

/// What the root gets besides minbase: the PAM test program and a C toolchain for the example.
const INCLUDE: &[&str] = &["pamtester", "pkg-config", "gcc", "libc6-dev"];
const LOCKED_TEXT: &str = "Access denied: your Latch is locked";
const PASSWORD: &str = "deb-Test-Password-1";

#[test]
fn install_use_remove_and_purge_in_a_debian_12_root() {
    if !can_run() {
        return;
    }
    let debs = debs();
    let root = Root::new(INCLUDE);
    let triplet = &debs.triplet;

    // Install both packages with apt, from files: their dependencies are all in minbase.
    fs::create_dir_all(root.file("/tmp/debs")).expect("debs dir");
    for deb in [&debs.lockserver, &debs.dev] {
        let name = deb.file_name().expect("a file name");
        fs::copy(deb, root.file("/tmp/debs").join(name)).expect("copy the package into the root");
    }
    root.ok(&format!(
        "apt-get install -y --no-install-recommends /tmp/debs/lockserver_{VERSION}_{a}.deb \
         /tmp/debs/liblockserver-dev_{VERSION}_{a}.deb",
        a = debs.arch
    ));
    assert_eq!(
        root.ok("stat -c '%a %U:%G' /etc/lockserver/lockserver.conf /var/lib/lockserver"),
        "600 root:root\n700 root:root\n"
    );
    assert!(
        root.ok("dpkg-query -W -f='${Conffiles}' lockserver")
            .contains("/etc/lockserver/lockserver.conf"),
        "the config is a conffile"
    );

    // The package edits no PAM stack, and its pam-auth-update profile stays off when another package's
    // maintainer script runs pam-auth-update.
    let stacks_naming_the_module = "grep -l pam_lockserver /etc/pam.d/* || true";
    let common_stacks_naming_it = "grep -l pam_lockserver /etc/pam.d/common-* || true";
    assert_eq!(root.ok(stacks_naming_the_module), "");
    root.ok("pam-auth-update --package");
    assert_eq!(root.ok(stacks_naming_the_module), "");

    // The shipped example stack for sshd (key, then lockserver) with the shipped config: switched off, so
    // the module steps aside and the login goes on.
    root.ok("useradd --create-home alice && useradd --create-home bob");
    root.ok(&format!("printf 'alice:{PASSWORD}\\nbob:{PASSWORD}\\n' | chpasswd"));
    root.ok("cp /usr/share/doc/lockserver/examples/pam.d-sshd /etc/pam.d/sshd");
    let out = root.pamtester("sshd", "alice", "authenticate acct_mgmt", "");
    assert!(out.status.success(), "enabled = false steps aside:\n{}", text(&out));

    // The admin's config: this host's emulator.
    let emu = Emulator::start(Options::default()).expect("emulator");
    let config = format!(
        "enabled = true\nservice = \"latch\"\nfail_mode = \"secure\"\nunpaired = \"ignore\"\ntimeout_ms = 3000\n\
         store = \"sqlite:///var/lib/lockserver/lockserver.db\"\n\n[latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\n",
        emu.app_id(),
        emu.secret(),
        emu.url()
    );
    // The conffile keeps its mode (0600) when rewritten in place.
    fs::write(root.file("/etc/lockserver/lockserver.conf"), &config).expect("write the config");
    let out = root.ok("lockserver check-config");
    assert!(out.contains("config: ok") && out.contains("service: ok"), "{out}");

    // Pairing, as the demo does: the phone shows a code, root pairs alice with it.
    let (code, account) = emu.add_code_for(None, "alice@example.org").expect("pairing code");
    root.ok(&format!("lockserver pair {code} --user alice"));
    assert!(root.ok("lockserver status --user alice").contains("open"));

    // pamtester through the example stack: allowed while the latch is open, refused when locked.
    let out = root.pamtester("sshd", "alice", "authenticate acct_mgmt", "");
    assert!(out.status.success(), "latch open: {}", text(&out));
    emu.set_latch(&account, None, false).expect("lock");
    let out = root.pamtester("sshd", "alice", "authenticate", "");
    assert!(!out.status.success(), "latch locked: {}", text(&out));
    assert!(text(&out).contains(LOCKED_TEXT), "the user is told why: {}", text(&out));
    let out = root.pamtester("sshd", "alice", "acct_mgmt", "");
    assert!(!out.status.success(), "the account phase refuses too: {}", text(&out));
    let out = root.sh("lockserver status --user alice");
    assert_eq!(out.status.code(), Some(1), "status: locked\n{}", text(&out));

    // The C API: pkg-config from the -dev package, the packaged example built and run.
    let flags = root.ok("pkg-config --cflags --libs lockserver");
    assert_eq!(
        flags.trim(),
        "-llockserver",
        "the header and library are in the default paths"
    );
    root.ok(
        "gcc -std=c11 -Wall -Wextra -Werror /usr/share/doc/liblockserver-dev/examples/check_login.c \
         $(pkg-config --cflags --libs lockserver) -o /usr/local/bin/check_login",
    );
    assert!(
        root.ok("readelf -d /usr/local/bin/check_login")
            .contains("[liblockserver.so.0]"),
        "linked against the SONAME, which the runtime package ships"
    );
    let out = root.sh("check_login /etc/lockserver/lockserver.conf alice");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim()),
        (Some(1), "alice: refused")
    );
    emu.set_latch(&account, None, true).expect("unlock");
    let out = root.sh("check_login /etc/lockserver/lockserver.conf alice");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim()),
        (Some(0), "alice: allowed"),
        "{}",
        text(&out)
    );

    // The pam-auth-update profile, when the admin turns it on: the module after the password in
    // common-auth, for every service that includes it.
    fs::write(
        root.file("/etc/pam.d/lstest"),
        "@include common-auth\n@include common-account\n",
    )
    .expect("stack");
    root.ok("pam-auth-update --enable lockserver");
    assert_eq!(root.ok(common_stacks_naming_it), "/etc/pam.d/common-auth\n");
    let password = format!("{PASSWORD}\n");
    let out = root.pamtester("lstest", "alice", "authenticate", &password);
    assert!(out.status.success(), "password right, latch open: {}", text(&out));
    emu.set_latch(&account, None, false).expect("lock");
    let out = root.pamtester("lstest", "alice", "authenticate", &password);
    assert!(!out.status.success(), "password right, latch locked: {}", text(&out));
    assert!(text(&out).contains(LOCKED_TEXT), "{}", text(&out));
    let out = root.pamtester("lstest", "bob", "authenticate", &password);
    assert!(
        out.status.success(),
        "bob is not paired (unpaired = \"ignore\"): {}",
        text(&out)
    );
    let out = root.pamtester("lstest", "bob", "authenticate", "wrong\n");
    assert!(!out.status.success(), "the password still counts: {}", text(&out));

    // Removing the -dev package leaves programs built against the library running.
    root.ok("apt-get remove -y liblockserver-dev");
    assert!(!root.exists("/usr/include/lockserver.h"));
    assert!(!root.sh("pkg-config --exists lockserver").status.success());
    assert_eq!(
        root.sh("check_login /etc/lockserver/lockserver.conf alice")
            .status
            .code(),
        Some(1)
    );

    // Remove: the profile leaves common-auth with the module, so logins keep working (the sshd stack the
    // admin wrote still names it: theirs to edit, as the README says); the config (as the admin changed
    // it) and the pairings stay.
    root.ok("apt-get remove -y lockserver");
    assert_eq!(
        root.ok(common_stacks_naming_it),
        "",
        "no common-* stack names the removed module"
    );
    assert_eq!(root.ok(stacks_naming_the_module), "/etc/pam.d/sshd\n");
    for gone in [
        "/usr/sbin/lockserver".to_string(),
        format!("/lib/{triplet}/security/pam_lockserver.so"),
        format!("/usr/lib/{triplet}/liblockserver.so.0"),
    ] {
        assert!(!root.exists(&gone), "{gone} is removed");
    }
    let out = root.pamtester("lstest", "alice", "authenticate", &password);
    assert!(
        out.status.success(),
        "after remove, the password login works: {}",
        text(&out)
    );
    assert_eq!(
        fs::read_to_string(root.file("/etc/lockserver/lockserver.conf")).expect("config kept"),
        config
    );
    assert!(
        root.exists("/var/lib/lockserver/lockserver.db"),
        "the pairings are kept"
    );
    assert_eq!(
        root.ok("dpkg-query -W -f='${db:Status-Abbrev}' lockserver").trim(),
        "rc"
    );

    // Purge: both gone.
    root.ok("apt-get purge -y lockserver");
    assert!(!root.exists("/etc/lockserver"), "purge removes the config");
    assert!(!root.exists("/var/lib/lockserver"), "purge removes the pairings");
    let out = root.sh("dpkg-query -W -f='${db:Status-Abbrev}' lockserver");
    assert!(
        !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() == "un",
        "lockserver is no longer known to dpkg: {}",
        text(&out)
    );
}
