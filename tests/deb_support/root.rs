//! A throwaway Debian 12 root for the install tests (`tests/deb_install.rs`, `tests/source_install.rs`):
//! `mmdebstrap --variant=minbase bookworm` plus the packages a test names, cached as a tarball under
//! `target/deb-root/` for a week (delete it to fetch a fresh one); each [`Root`] unpacks a new copy in the
//! temp directory.
//! Programs run there through `chroot` with an empty environment; the chroot shares the network
//! namespace, so the module, the CLI and sshd in it reach the emulator a test runs on the host's loopback.
//! [`Root`]'s `Drop` unmounts what it mounted (`/proc`, bind mounts) and deletes the copy, also when the
//! test fails; a tree it cannot unmount is left in place, never deleted through a mount.

use super::{current_uid, repo_root, run};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

const MIRROR: &str = "http://deb.debian.org/debian";
const CACHE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The test cache directory, `$CARGO_TARGET_DIR` or `target/`, plus `sub`.
pub fn cache_dir(sub: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from)
        .join(sub);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The cached root tarball for `include`, made by mmdebstrap when missing or older than a week.
fn root_tarball(include: &[&str]) -> PathBuf {
    let tarball = cache_dir("deb-root").join(format!("bookworm-minbase+{}.tar", include.join("+")));
    let fresh = fs::metadata(&tarball)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < CACHE_MAX_AGE);
    if !fresh {
        let partial = tarball.with_extension("tar.partial");
        let _ = fs::remove_file(&partial);
        run(Command::new("mmdebstrap")
            .args(["--variant=minbase", "--quiet", "--format=tar"])
            .arg(format!("--include={}", include.join(",")))
            .arg("bookworm")
            .arg(&partial)
            .arg(MIRROR)
            .stdin(Stdio::null()));
        fs::rename(&partial, &tarball).expect("store the root tarball");
    }
    tarball
}

/// A Debian 12 root unpacked from the cached tarball, with `/proc` mounted.
pub struct Root {
    dir: Option<tempfile::TempDir>,
    /// What was mounted inside, in order; unmounted in reverse.
    mounts: Vec<PathBuf>,
}

impl Root {
    /// minbase plus `include` (apt package names).
    pub fn new(include: &[&str]) -> Root {
        let tarball = root_tarball(include);
        // Outside the checkout: `make deb`'s dh_clean walks the source tree, and must never walk (or clean
        // in) a live root with its /proc and bind mounts.
        let dir = tempfile::Builder::new()
            .prefix("lockserver-deb-root.")
            .tempdir()
            .expect("temp dir for the root");
        let mut root = Root {
            dir: Some(dir),
            mounts: Vec::new(),
        };
        run(Command::new("tar")
            .args(["--extract", "--same-owner", "--numeric-owner", "--file"])
            .arg(&tarball)
            .arg("--directory")
            .arg(root.path()));
        let proc = root.file("/proc");
        run(Command::new("mount").args(["-t", "proc", "proc"]).arg(&proc));
        root.mounts.push(proc);
        root
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("the root is there until dropped").path()
    }

    /// A host path for a path inside the root.
    pub fn file(&self, inside: &str) -> PathBuf {
        self.path().join(inside.trim_start_matches('/'))
    }

    /// Binds the host directory `host` at `inside` (created), read-only unless `writable`.
    pub fn bind(&mut self, host: &Path, inside: &str, writable: bool) {
        let target = self.file(inside);
        fs::create_dir_all(&target).expect("mount point");
        run(Command::new("mount").arg("--bind").arg(host).arg(&target));
        self.mounts.push(target.clone());
        if !writable {
            run(Command::new("mount").args(["-o", "remount,bind,ro"]).arg(&target));
        }
    }

    /// Mounts an overlay at `inside`: `host` below (never written), the changes in a directory of the root.
    pub fn overlay(&mut self, host: &Path, inside: &str) {
        let name = inside.trim_matches('/').replace('/', "_");
        let upper = self.file(&format!("/var/tmp/overlay-{name}/upper"));
        let work = self.file(&format!("/var/tmp/overlay-{name}/work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).expect("overlay dirs");
        }
        let target = self.file(inside);
        fs::create_dir_all(&target).expect("mount point");
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                host.display(),
                upper.display(),
                work.display()
            ))
            .arg(&target));
        self.mounts.push(target);
    }

    /// A `chroot` command running `sh -c SCRIPT` inside the root with an empty environment (PATH, HOME, a
    /// C locale and `env`), stdin, stdout and stderr piped.
    pub fn command(&self, script: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("chroot");
        cmd.arg(self.path())
            .args(["/usr/bin/env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LC_ALL=C.UTF-8",
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(["/bin/sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `sh -c SCRIPT` inside the root with INPUT on its stdin.
    pub fn sh_with_input(&self, script: &str, input: &str) -> Output {
        let mut child = self.command(script, &[]).spawn().expect("run chroot");
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait for chroot")
    }

    pub fn sh(&self, script: &str) -> Output {
        self.sh_with_input(script, "")
    }

    /// Runs a script that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the root: `{script}` failed ({}):\n{}",
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pamtester SERVICE USER OPS...` with INPUT typed at the prompts.
    pub fn pamtester(&self, service: &str, user: &str, ops: &str, input: &str) -> Output {
        self.sh_with_input(&format!("pamtester -v {service} {user} {ops}"), input)
    }

    pub fn exists(&self, inside: &str) -> bool {
        self.file(inside).symlink_metadata().is_ok()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        while let Some(target) = self.mounts.pop() {
            let unmounted = Command::new("umount").arg(&target).status().is_ok_and(|s| s.success())
                || Command::new("umount")
                    .arg("-l")
                    .arg(&target)
                    .status()
                    .is_ok_and(|s| s.success());
            if !unmounted {
                // Never delete a tree with a mount inside it: leave it for the admin.
                if let Some(dir) = self.dir.take() {
                    eprintln!(
                        "cannot unmount {}: left {} in place",
                        target.display(),
                        dir.keep().display()
                    );
                }
                return;
            }
        }
    }
}

/// A command's stdout and stderr, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether the root can be made here: root, with mmdebstrap and friends. As another user it prints why.
pub fn can_run() -> bool {
    if current_uid() != 0 {
        println!("SKIPPED: the Debian 12 root needs root (mmdebstrap, chroot, mount)");
        return false;
    }
    for tool in ["mmdebstrap", "chroot", "tar", "mount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is missing: run scripts/test.sh, which installs mmdebstrap"
        );
    }
    true
}
