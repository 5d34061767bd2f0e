//! The Debian packages (issue 13): `make deb` from the checkout writes `lockserver_<version>_<arch>.deb`
//! and `liblockserver-dev_<version>_<arch>.deb` into `target/debian/`; their contents (paths, modes, owners,
//! links), conffiles, control fields and maintainer scripts are what the expected lists below say; lintian
//! reports no error; every packaged man page renders without a warning; the packaged bash, zsh and fish
//! completions load in their shell and complete; the packaged sshd drop-in wins over Debian's stock
//! sshd_config.
//!
//! The installed behaviour (install, login, remove, purge in a Debian 12 root) is `tests/deb_install.rs`.

mod deb_support;

use deb_support::{VERSION, debs, repo_root, run, stdout_of};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

/// `lockserver_<version>_<arch>.deb`: `MODE OWNER PATH [-> LINK]`, with `{triplet}` and `{version}`.
const LOCKSERVER_CONTENTS: &str = "\
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/lockserver/
-rw------- root/root ./etc/lockserver/lockserver.conf
drwxr-xr-x root/root ./lib/
drwxr-xr-x root/root ./lib/{triplet}/
drwxr-xr-x root/root ./lib/{triplet}/security/
-rw-r--r-- root/root ./lib/{triplet}/security/pam_lockserver.so
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/{triplet}/
lrwxrwxrwx root/root ./usr/lib/{triplet}/liblockserver.so.0 -> liblockserver.so.{version}
-rw-r--r-- root/root ./usr/lib/{triplet}/liblockserver.so.{version}
drwxr-xr-x root/root ./usr/sbin/
-rwxr-xr-x root/root ./usr/sbin/lockserver
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/bash-completion/
drwxr-xr-x root/root ./usr/share/bash-completion/completions/
-rw-r--r-- root/root ./usr/share/bash-completion/completions/lockserver
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/lockserver/
-rw-r--r-- root/root ./usr/share/doc/lockserver/README.md.gz
-rw-r--r-- root/root ./usr/share/doc/lockserver/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/lockserver/copyright
drwxr-xr-x root/root ./usr/share/doc/lockserver/examples/
-rw-r--r-- root/root ./usr/share/doc/lockserver/examples/pam.d-sshd
-rw-r--r-- root/root ./usr/share/doc/lockserver/examples/sshd_config.d-lockserver.conf
-rw-r--r-- root/root ./usr/share/doc/lockserver/sysadmin-guide.md.gz
drwxr-xr-x root/root ./usr/share/fish/
drwxr-xr-x root/root ./usr/share/fish/vendor_completions.d/
-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/lockserver.fish
drwxr-xr-x root/root ./usr/share/lintian/
drwxr-xr-x root/root ./usr/share/lintian/overrides/
-rw-r--r-- root/root ./usr/share/lintian/overrides/lockserver
drwxr-xr-x root/root ./usr/share/man/
drwxr-xr-x root/root ./usr/share/man/man5/
-rw-r--r-- root/root ./usr/share/man/man5/lockserver-dictionary.5.gz
-rw-r--r-- root/root ./usr/share/man/man5/lockserver.conf.5.gz
drwxr-xr-x root/root ./usr/share/man/man8/
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-check-config.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-migrate.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-pair.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-pairing-key-create.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-pairing-key-show.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-pairing-key.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-status.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-store-copy.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-store.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-totp-create.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-totp-disable.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-totp-verify.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-totp.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-try-login.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-unpair.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver-users.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/lockserver.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/pam_lockserver.8.gz
drwxr-xr-x root/root ./usr/share/pam-configs/
-rw-r--r-- root/root ./usr/share/pam-configs/lockserver
drwxr-xr-x root/root ./usr/share/zsh/
drwxr-xr-x root/root ./usr/share/zsh/vendor-completions/
-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_lockserver
drwxr-xr-x root/root ./var/
drwxr-xr-x root/root ./var/lib/
drwx------ root/root ./var/lib/lockserver/
";

/// `liblockserver-dev_<version>_<arch>.deb`.
const DEV_CONTENTS: &str = "\
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/include/
-rw-r--r-- root/root ./usr/include/lockserver.h
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/{triplet}/
lrwxrwxrwx root/root ./usr/lib/{triplet}/liblockserver.so -> liblockserver.so.0
drwxr-xr-x root/root ./usr/lib/{triplet}/pkgconfig/
-rw-r--r-- root/root ./usr/lib/{triplet}/pkgconfig/lockserver.pc
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/liblockserver-dev/
-rw-r--r-- root/root ./usr/share/doc/liblockserver-dev/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/liblockserver-dev/copyright
drwxr-xr-x root/root ./usr/share/doc/liblockserver-dev/examples/
-rw-r--r-- root/root ./usr/share/doc/liblockserver-dev/examples/check_login.c
-rw-r--r-- root/root ./usr/share/doc/liblockserver-dev/examples/pair_user.c
-rw-r--r-- root/root ./usr/share/doc/liblockserver-dev/examples/status.cpp
-rw-r--r-- root/root ./usr/share/doc/liblockserver-dev/examples/totp.c
";

fn expected(list: &str, triplet: &str) -> BTreeSet<String> {
    list.lines()
        .map(|l| l.replace("{triplet}", triplet).replace("{version}", VERSION))
        .collect()
}

/// `dpkg-deb -c` without sizes and dates: `MODE OWNER PATH [-> LINK]`.
fn contents(deb: &Path) -> BTreeSet<String> {
    let listing = stdout_of(Command::new("dpkg-deb").arg("-c").arg(deb));
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected dpkg-deb -c line: {line}");
            // mode owner size date time path [-> target]
            format!("{} {} {}", fields[0], fields[1], fields[5..].join(" "))
        })
        .collect()
}

fn assert_same(what: &str, actual: &BTreeSet<String>, expected: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(actual).collect();
    let unexpected: Vec<_> = actual.difference(expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{what}: the package differs from the expected list\n  missing: {missing:#?}\n  unexpected: {unexpected:#?}"
    );
}

fn field(deb: &Path, name: &str) -> String {
    stdout_of(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
}

/// A control member (`conffiles`, `postrm`, …), or None when the package has none.
fn control_member(deb: &Path, member: &str) -> Option<String> {
    let out = Command::new("dpkg-deb")
        .arg("-I")
        .arg(deb)
        .arg(member)
        .output()
        .expect("run dpkg-deb -I");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn extract(deb: &Path) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    dir
}

#[test]
fn both_packages_hold_exactly_the_expected_files() {
    let debs = debs();
    assert_same(
        "lockserver",
        &contents(&debs.lockserver),
        &expected(LOCKSERVER_CONTENTS, &debs.triplet),
    );
    assert_same(
        "liblockserver-dev",
        &contents(&debs.dev),
        &expected(DEV_CONTENTS, &debs.triplet),
    );
}

#[test]
fn control_fields_conffiles_and_maintainer_scripts() {
    let debs = debs();
    for (deb, name) in [(&debs.lockserver, "lockserver"), (&debs.dev, "liblockserver-dev")] {
        assert_eq!(field(deb, "Package"), name);
        assert_eq!(field(deb, "Version"), VERSION, "debian/changelog and Cargo.toml agree");
        assert_eq!(field(deb, "Architecture"), debs.arch);
    }
    // The module and the CLI need libc and libpam only (and libgcc_s, Rust's unwinder: the module is
    // built with panic = "unwind" so that a panic is caught before it crosses into libpam).
    let depends: BTreeSet<String> = field(&debs.lockserver, "Depends")
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        depends,
        ["libc6", "libgcc-s1", "libpam0g"].map(String::from).into(),
        "lockserver's run-time dependencies"
    );
    assert_eq!(
        field(&debs.dev, "Depends"),
        format!("lockserver (= {VERSION})"),
        "the -dev package pins the library it links against"
    );

    assert_eq!(
        control_member(&debs.lockserver, "conffiles").as_deref(),
        Some("/etc/lockserver/lockserver.conf\n")
    );
    assert_eq!(control_member(&debs.dev, "conffiles"), None);

    // The package never turns the pam-auth-update profile on; it takes it out on remove, and purge
    // deletes the config and the pairings.
    for script in ["preinst", "postinst"] {
        if let Some(text) = control_member(&debs.lockserver, script) {
            assert!(
                !text.contains("pam-auth-update"),
                "{script} must not touch the PAM stacks:\n{text}"
            );
        }
    }
    let prerm = control_member(&debs.lockserver, "prerm").expect("a prerm");
    assert!(
        prerm.contains("pam-auth-update --package --remove lockserver"),
        "{prerm}"
    );
    let postrm = control_member(&debs.lockserver, "postrm").expect("a postrm");
    assert!(
        postrm.contains("rm -rf /etc/lockserver /var/lib/lockserver"),
        "{postrm}"
    );

    let pkg = extract(&debs.lockserver);
    let profile = fs::read_to_string(pkg.path().join("usr/share/pam-configs/lockserver")).expect("profile");
    assert!(
        profile.contains("\nDefault: no\n"),
        "the profile is off by default:\n{profile}"
    );
}

#[test]
fn the_shipped_config_is_valid_and_switched_off() {
    let pkg = extract(&debs().lockserver);
    let text = fs::read_to_string(pkg.path().join("etc/lockserver/lockserver.conf")).expect("config");
    // Valid, so that a stack naming the module before the admin edits it steps aside instead of failing.
    let config = lockserver::config::Config::parse_str(&text).expect("the example config parses");
    assert!(
        !config.enabled,
        "installing the package changes no login: enabled = false"
    );
}

#[test]
fn lintian_reports_no_error() {
    let debs = debs();
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info", "--show-overrides"])
        .arg(&debs.lockserver)
        .arg(&debs.dev)
        .output()
        .expect("lintian is installed by scripts/test.sh");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lintian failed:\n{report}");
    // No error; and no warning either: the expected ones are overridden in debian/*.lintian-overrides,
    // each with its reason.
    let errors: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(errors.is_empty(), "lintian errors and warnings: {errors:#?}");
    assert!(
        report.contains("O: lockserver: package-name-doesnt-match-sonames"),
        "{report}"
    );
}

#[test]
fn every_packaged_man_page_renders_without_a_warning() {
    let pkg = extract(&debs().lockserver);
    let mut pages = Vec::new();
    for section in ["man5", "man8"] {
        for entry in fs::read_dir(pkg.path().join("usr/share/man").join(section)).expect("man dir") {
            pages.push(entry.expect("man page").path());
        }
    }
    pages.sort();
    assert_eq!(
        pages.len(),
        20,
        "lockserver(8) and its 15 verb pages, pam_lockserver(8), two in section 5"
    );
    for page in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .output()
            .expect("man-db is installed by scripts/test.sh");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{}: {warnings}",
            page.display()
        );
        assert!(out.stdout.len() > 200, "{} renders to text", page.display());
    }
}

/// bash-completion's own loader finds the packaged file under `XDG_DATA_DIRS/bash-completion/completions/`
/// (where the package puts it below /usr/share) and the function completes verbs and sub-verbs.
#[test]
fn the_packaged_bash_completion_loads_and_completes_a_verb() {
    let pkg = extract(&debs().lockserver);
    let script = r#"
        source /usr/share/bash-completion/bash_completion
        __load_completion lockserver || { echo "not loaded"; exit 1; }
        complete -p lockserver
        fn=$(complete -p lockserver | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
        complete_words() {
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
            COMPREPLY=()
            "$fn" lockserver "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
            echo "$*: ${COMPREPLY[*]}"
        }
        complete_words lockserver pa
        complete_words lockserver totp c
        complete_words lockserver status --us
    "#;
    let bash = |data_dirs: &Path| {
        Command::new("bash")
            .args(["--norc", "--noprofile", "-c", script])
            .env("XDG_DATA_DIRS", data_dirs)
            .env("HOME", pkg.path())
            .output()
            .expect("run bash")
    };
    let out = bash(&pkg.path().join("usr/share"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("complete -o bashdefault -o default -o nosort -F _lockserver lockserver"),
        "{text}"
    );
    assert!(text.contains("lockserver pa: pair pairing-key\n"), "{text}");
    assert!(text.contains("lockserver totp c: create\n"), "{text}");
    assert!(text.contains("lockserver status --us: --user\n"), "{text}");
    // Without the package's directory there is nothing to load: the checks above could fail.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = bash(empty.path());
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The packaged zsh completion, found through `fpath` in `usr/share/zsh/vendor-completions` (where Debian's
/// zsh looks) by `compinit`, completes a verb and a flag: typed with TAB in an interactive zsh on a pseudo
/// terminal (`zpty`), every candidate zsh's completion system hands to `compadd` printed between `<<` and `>>`.
#[test]
fn the_packaged_zsh_completion_loads_and_completes_a_verb() {
    let pkg = extract(&debs().lockserver);
    // One interactive zsh -f (no rc files) per run; each line is typed, TAB pressed, the line cleared and a
    // marker printed (`DO''NE`, so that the echo of the typed command does not match it).
    let script = r#"
        zmodload zsh/zpty || exit 2
        zpty z zsh -f -i
        zpty -w z "PROMPT= ; RPROMPT= ; unsetopt zle_bracketed_paste"
        zpty -w z "fpath=(${(q)FPATH_DIR} \$fpath); autoload -U compinit; compinit -u -D"
        zpty -w z 'compadd () { local -a hits; builtin compadd -O hits "$@"; print -r -- "<<${(j: :)hits}>>"; builtin compadd "$@" }'
        zpty -w z "print RE''ADY"
        zpty -r z chunk '*READY*' || exit 3
        for line in "$@"; do
          zpty -w -n z "$line"$'\t'
          zpty -w z $'\C-u'"print DO''NE"
          zpty -r z chunk '*DONE*' || exit 4
          print -r -- "== $line"
          print -r -- "${chunk//$'\r'/}"
        done
        zpty -d z
    "#;
    let zsh_line = |fpath_dir: &Path, line: &str| {
        let out = Command::new("timeout")
            .args(["60", "zsh", "-f", "-c", script, "zsh", line])
            .env("FPATH_DIR", fpath_dir)
            .env("HOME", pkg.path())
            .current_dir(pkg.path())
            .output()
            .expect("zsh is installed by scripts/test.sh");
        assert!(
            out.status.success(),
            "zsh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        candidates_by_line(&String::from_utf8_lossy(&out.stdout))
    };
    // One zsh per line: a completion listing left on the terminal cannot change what the next line gets.
    // A line that got no candidate at all is typed again in a new zsh, twice at most: once in a full
    // test run, a pseudo terminal's output was read empty (the same line passed alone, every time).
    let zsh = |fpath_dir: &Path| {
        let mut all = std::collections::BTreeMap::new();
        for line in ["lockserver pa", "lockserver status --us", "lockserver totp c"] {
            let mut got = zsh_line(fpath_dir, line);
            for _ in 0..2 {
                if got.get(line).is_some_and(|c| !c.is_empty()) {
                    break;
                }
                got = zsh_line(fpath_dir, line);
            }
            all.extend(got);
        }
        all
    };
    let got = zsh(&pkg.path().join("usr/share/zsh/vendor-completions"));
    assert_eq!(got["lockserver pa"], words(&["pair", "pairing-key"]), "{got:?}");
    assert_eq!(got["lockserver status --us"], words(&["--user"]), "{got:?}");
    assert_eq!(got["lockserver totp c"], words(&["create"]), "{got:?}");
    // Without the package's directory zsh completes only file names: the checks above could fail.
    let empty = tempfile::tempdir().expect("temp dir");
    let got = zsh(empty.path());
    assert!(!got["lockserver pa"].contains("pair"), "{got:?}");
}

/// The packaged fish completion, found by fish's own loader in `usr/share/fish/vendor_completions.d`
/// (through `XDG_DATA_DIRS`, as Debian's fish looks below /usr/share), completes a verb and a flag
/// (`complete -C`). fish loads a command's completions only when the command is on `PATH`: the package's
/// own `usr/sbin/lockserver` is.
#[test]
fn the_packaged_fish_completion_loads_and_completes_a_verb() {
    let pkg = extract(&debs().lockserver);
    let script = r#"
        for line in $argv
            echo "== $line"
            for candidate in (complete -C "$line")
                echo "<<"(string split -f1 \t -- $candidate)">>"
            end
        end
    "#;
    let fish = |data_dirs: &Path| {
        let path = format!("{}:/usr/bin:/bin", pkg.path().join("usr/sbin").display());
        let out = Command::new("timeout")
            .args(["60", "fish", "-c", script])
            .args(["lockserver pa", "lockserver status --us", "lockserver totp c"])
            .env("XDG_DATA_DIRS", data_dirs)
            .env("HOME", pkg.path())
            .env("PATH", path)
            .current_dir(pkg.path())
            .output()
            .expect("fish is installed by scripts/test.sh");
        assert!(
            out.status.success(),
            "fish: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        candidates_by_line(&String::from_utf8_lossy(&out.stdout))
    };
    let got = fish(&pkg.path().join("usr/share"));
    assert_eq!(got["lockserver pa"], words(&["pair", "pairing-key"]), "{got:?}");
    assert_eq!(got["lockserver status --us"], words(&["--user"]), "{got:?}");
    assert_eq!(got["lockserver totp c"], words(&["create"]), "{got:?}");
    // Without the package's directory fish completes only file names: the checks above could fail.
    let empty = tempfile::tempdir().expect("temp dir");
    let got = fish(empty.path());
    assert!(!got["lockserver pa"].contains("pair"), "{got:?}");
}

/// `== LINE` headers, each followed by output holding `<<candidate candidate …>>` groups: the set of
/// candidates per line.
fn candidates_by_line(out: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut map = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if let Some(head) = line.strip_prefix("== ") {
            current = Some(head.to_string());
            map.insert(head.to_string(), BTreeSet::new());
            continue;
        }
        let Some(key) = &current else { continue };
        let mut rest = line;
        while let Some(start) = rest.find("<<") {
            let Some(len) = rest[start + 2..].find(">>") else { break };
            let group = &rest[start + 2..start + 2 + len];
            if let Some(set) = map.get_mut(key) {
                set.extend(group.split_whitespace().map(str::to_string));
            }
            rest = &rest[start + 2 + len + 2..];
        }
    }
    map
}

fn words(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|w| (*w).to_string()).collect()
}

/// Debian's stock sshd_config (`/usr/share/openssh/sshd_config`, the file openssh-server installs) with
/// its `Include` pointed at a temp `sshd_config.d`: the shipped drop-in there switches
/// keyboard-interactive on, which lines appended to the stock file cannot do (sshd keeps the first value).
#[test]
fn the_sshd_drop_in_wins_over_debians_stock_config() {
    if deb_support::current_uid() != 0 {
        println!("SKIPPED: sshd -t needs root (its privilege separation directory, a private /run)");
        return;
    }
    let pkg = extract(&debs().lockserver);
    let drop_in = pkg
        .path()
        .join("usr/share/doc/lockserver/examples/sshd_config.d-lockserver.conf");
    let tmp = tempfile::tempdir().expect("temp dir");
    let conf_d = tmp.path().join("sshd_config.d");
    fs::create_dir(&conf_d).expect("sshd_config.d");
    let stock =
        fs::read_to_string("/usr/share/openssh/sshd_config").expect("openssh-server is installed by scripts/test.sh");
    let include = "Include /etc/ssh/sshd_config.d/*.conf\n";
    let ours = stock.replace(include, &format!("Include {}/*.conf\n", conf_d.display()));
    assert_ne!(ours, stock, "the stock file includes sshd_config.d");
    let config = tmp.path().join("sshd_config");
    fs::write(&config, &ours).expect("sshd_config");
    let host_key = tmp.path().join("host_key");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&host_key));

    // sshd -t, then sshd -T, in a private mount namespace with its own /run/sshd.
    let sshd = |config: &Path| {
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd && /usr/sbin/sshd -t -f {c} -h {k} && /usr/sbin/sshd -T -f {c} -h {k}",
            c = config.display(),
            k = host_key.display()
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .expect("run unshare")
    };

    let out = sshd(&config);
    assert!(
        out.status.success(),
        "the stock config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stock_values = String::from_utf8_lossy(&out.stdout);
    assert!(
        stock_values.contains("\nkbdinteractiveauthentication no\n"),
        "{stock_values}"
    );

    // What the guide used to say: the lines appended to the stock file. The stock `no` comes first, so
    // sshd -t refuses the AuthenticationMethods line.
    let appended = tmp.path().join("sshd_config.appended");
    let lines = fs::read_to_string(&drop_in).expect("drop-in");
    fs::write(&appended, format!("{ours}\n{lines}")).expect("appended config");
    let out = sshd(&appended);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Disabled method \"keyboard-interactive\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fs::copy(&drop_in, conf_d.join("lockserver.conf")).expect("copy the drop-in");
    let out = sshd(&config);
    assert!(
        out.status.success(),
        "with the drop-in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = String::from_utf8_lossy(&out.stdout);
    for line in [
        "usepam yes",
        "pubkeyauthentication yes",
        "kbdinteractiveauthentication yes",
        "passwordauthentication no",
        "authenticationmethods publickey,keyboard-interactive",
    ] {
        assert!(values.lines().any(|l| l == line), "sshd -T lacks `{line}`:\n{values}");
    }
}

#[test]
fn the_c_examples_and_the_header_in_the_dev_package_are_the_checkouts() {
    let pkg = extract(&debs().dev);
    let root = repo_root();
    for (packaged, source) in [
        ("usr/include/lockserver.h", "include/lockserver.h"),
        (
            "usr/share/doc/liblockserver-dev/examples/check_login.c",
            "examples/check_login.c",
        ),
    ] {
        assert_eq!(
            fs::read(pkg.path().join(packaged)).expect("packaged file"),
            fs::read(root.join(source)).expect("source file"),
            "{packaged}"
        );
    }
    let pc = fs::read_to_string(
        pkg.path()
            .join(format!("usr/lib/{}/pkgconfig/lockserver.pc", debs().triplet)),
    )
    .expect("lockserver.pc");
    assert!(pc.contains(&format!("libdir=/usr/lib/{}\n", debs().triplet)), "{pc}");
    assert!(pc.contains(&format!("Version: {VERSION}\n")), "{pc}");
}
