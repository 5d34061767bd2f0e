//! Shared by the Debian package tests (`tests/deb_*.rs`): `make deb` run once per test binary, the two
//! packages it wrote, and small command helpers that report a failure with the command's output.
#![allow(dead_code)] // each test binary uses a different part of these helpers

pub mod root;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The two packages `make deb` writes into `target/debian/`.
pub struct Debs {
    pub lockserver: PathBuf,
    pub dev: PathBuf,
    /// The Debian architecture (`dpkg --print-architecture`), e.g. `amd64`.
    pub arch: String,
    /// The multiarch triplet (`DEB_HOST_MULTIARCH`), e.g. `x86_64-linux-gnu`.
    pub triplet: String,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory `make deb` writes into (debian/rules: `$CARGO_TARGET_DIR/debian`, else `target/debian`).
pub fn deb_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from)
        .join("debian")
}

/// Runs `make deb` from the checkout once per test binary (a release build, then debhelper), and
/// returns the packages named as the issue fixes them: `lockserver_<version>_<arch>.deb` and
/// `liblockserver-dev_<version>_<arch>.deb`.
pub fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| {
        let mut make = Command::new("make");
        make.arg("-C").arg(repo_root()).args(["deb", "--no-print-directory"]);
        // The variables cargo set for this test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, OUT_DIR, …) would make
        // the nested release build look changed to build scripts that watch them (ring's), and rebuild.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let from_cargo = name == "CARGO" || name == "OUT_DIR" || name.starts_with("CARGO_");
            if from_cargo && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR" {
                make.env_remove(name.as_ref());
            }
        }
        let out = make.output().expect("run make deb");
        assert!(
            out.status.success(),
            "make deb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"));
        let triplet = stdout_of(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"));
        let dir = deb_dir();
        let debs = Debs {
            lockserver: dir.join(format!("lockserver_{VERSION}_{arch}.deb")),
            dev: dir.join(format!("liblockserver-dev_{VERSION}_{arch}.deb")),
            arch,
            triplet,
        };
        for deb in [&debs.lockserver, &debs.dev] {
            assert!(deb.is_file(), "make deb did not write {}", deb.display());
        }
        let mut written: Vec<String> = std::fs::read_dir(&dir)
            .expect("read target/debian")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        written.sort();
        assert_eq!(
            written.len(),
            2,
            "make deb writes exactly the two packages, found {written:?}"
        );
        debs
    })
}

/// Runs a command, asserts it succeeded, returns its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The trimmed stdout of a command that must succeed.
pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).trim().to_string()
}

/// The effective uid of this process (the owner of its /proc entry).
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}
