//! Which files may be trusted: a StrictModes-like rule, after OpenSSH's `safe_path()`.
//!
//! A file that decides who may log in (the config, a secret file, `ca_file`, the dictionary, the pairing
//! store) is trusted only if nobody but root could have written it or put it there: the file and every
//! directory from `/` down to it are owned by root (or the `trust_owner=` uid of tests) and not writable
//! by group or others. A root-owned *sticky* directory (like `/tmp`) is accepted on the way, since others
//! cannot replace root's entries in it, but never as the directory that holds the file (others could
//! create files beside it, e.g. SQLite's `-wal`). A symbolic link on the way is followed only if root
//! owns it (and the directory holding it passes the same rule).
//!
//! Every refusal is a [`Problem`]: what is wrong, where, and the command that fixes it.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one path at most (Linux's own limit).
const MAX_LINKS: usize = 40;

/// One reason not to trust a path, with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub what: String,
    /// The command (or step) that fixes it.
    pub fix: String,
    /// The file does not exist (the caller may treat that as "nothing there").
    pub not_found: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}; fix: {}", self.path.display(), self.what, self.fix)
    }
}

impl std::error::Error for Problem {}

fn problem(path: &Path, what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        path: path.to_path_buf(),
        what: what.into(),
        fix: fix.into(),
        not_found: false,
    }
}

fn stat_problem(path: &Path, e: &io::Error) -> Problem {
    Problem {
        not_found: e.kind() == io::ErrorKind::NotFound,
        ..problem(path, format!("cannot be examined: {e}"), "check that the path is right")
    }
}

/// Whether `uid` may own what lockserver trusts.
fn trusted_uid(uid: u32, trusted: Option<u32>) -> bool {
    uid == 0 || Some(uid) == trusted
}

/// Checks every directory from `/` down to the one that holds `path`, following root-owned symbolic
/// links, and returns the real path of the file (which need not exist: then the directories are still
/// checked). A relative path is refused: it would depend on the working directory of whoever runs us.
pub fn check_ancestors(path: &Path, trusted: Option<u32>) -> Result<PathBuf, Problem> {
    if !path.is_absolute() {
        return Err(problem(path, "is a relative path", "give the absolute path"));
    }
    let mut pending: VecDeque<OsString> = components(path);
    let mut real = PathBuf::from("/");
    check_dir(&real, trusted, false)?;
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            // The parent of a checked directory is a prefix of it, so it was checked on the way down.
            real.pop();
            continue;
        }
        let candidate = real.join(&name);
        let last = pending.is_empty();
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) if last && e.kind() == io::ErrorKind::NotFound => {
                check_dir(&real, trusted, true)?;
                return Err(stat_problem(&candidate, &e));
            }
            Err(e) => return Err(stat_problem(&candidate, &e)),
        };
        if meta.file_type().is_symlink() {
            if meta.uid() != 0 {
                return Err(problem(
                    &candidate,
                    format!("is a symbolic link owned by uid {}, not root", meta.uid()),
                    format!("use the real path, or `chown -h root {}`", candidate.display()),
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(problem(&candidate, "has too many symbolic links", "use the real path"));
            }
            let target = fs::read_link(&candidate).map_err(|e| stat_problem(&candidate, &e))?;
            if target.is_absolute() {
                real = PathBuf::from("/");
            }
            for part in components(&target).into_iter().rev() {
                pending.push_front(part);
            }
            continue;
        }
        if last {
            check_dir(&real, trusted, true)?;
            return Ok(candidate);
        }
        if !meta.is_dir() {
            return Err(problem(&candidate, "is not a directory", "check the path"));
        }
        real = candidate;
        check_dir_meta(&real, &meta, trusted, false)?;
    }
    Ok(real)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn check_dir(dir: &Path, trusted: Option<u32>, holds_file: bool) -> Result<(), Problem> {
    let meta = fs::metadata(dir).map_err(|e| stat_problem(dir, &e))?;
    check_dir_meta(dir, &meta, trusted, holds_file)
}

fn check_dir_meta(dir: &Path, meta: &fs::Metadata, trusted: Option<u32>, holds_file: bool) -> Result<(), Problem> {
    if !trusted_uid(meta.uid(), trusted) {
        return Err(problem(
            dir,
            format!("(a directory on the way) is owned by uid {}, not root", meta.uid()),
            format!("chown root {}", dir.display()),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 == 0 {
        return Ok(());
    }
    let sticky_root = mode & 0o1000 != 0 && meta.uid() == 0;
    if sticky_root && !holds_file {
        return Ok(());
    }
    if sticky_root {
        return Err(problem(
            dir,
            format!("holds the file but others may create files in it (mode {mode:o}, sticky)"),
            "move the file into a directory only root can write, e.g. `mkdir -m 700` one",
        ));
    }
    Err(problem(
        dir,
        format!("(a directory on the way) is writable by group or others (mode {mode:o})"),
        format!("chmod go-w {}", dir.display()),
    ))
}

/// Checks a file already opened (by its descriptor's metadata): owned by root (or `trusted`), a
/// regular file, not writable by group or others, and when it holds secrets not readable by them.
pub fn check_file_meta(
    path: &Path,
    meta: &fs::Metadata,
    trusted: Option<u32>,
    holds_secrets: bool,
) -> Result<(), Problem> {
    if !meta.is_file() {
        return Err(problem(
            path,
            "is not a regular file",
            "point the setting at a regular file",
        ));
    }
    if !trusted_uid(meta.uid(), trusted) {
        return Err(problem(
            path,
            format!("is owned by uid {}, not root", meta.uid()),
            format!("chown root {}", path.display()),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(problem(
            path,
            format!("is writable by group or others (mode {mode:o})"),
            format!("chmod 600 {}", path.display()),
        ));
    }
    if holds_secrets && mode & 0o044 != 0 {
        return Err(problem(
            path,
            format!("holds secrets and is readable by group or others (mode {mode:o})"),
            format!("chmod 600 {}", path.display()),
        ));
    }
    Ok(())
}

/// The whole rule for a file read by path (ca_file, dictionary, a secret file): its directories, then
/// the file itself (after root's symbolic links).
pub fn check_file(path: &Path, trusted: Option<u32>, holds_secrets: bool) -> Result<(), Problem> {
    let real = check_ancestors(path, trusted)?;
    let meta = fs::symlink_metadata(&real).map_err(|e| stat_problem(&real, &e))?;
    check_file_meta(&real, &meta, trusted, holds_secrets)
}

/// The SQLite store file and its side files (`-wal`, `-shm`, `-journal`): the file and its directories
/// as [`check_file`] (the file may not exist: then [`Problem::not_found`]); each side file that exists
/// must be root's (or `trusted`'s) with no access at all for group or others, or whoever can write it
/// decides what the database says.
pub fn check_store_file(path: &Path, trusted: Option<u32>) -> Result<(), Problem> {
    let real = check_ancestors(path, trusted)?;
    let meta = fs::symlink_metadata(&real).map_err(|e| stat_problem(&real, &e))?;
    check_file_meta(&real, &meta, trusted, false)?;
    check_private(&real, &meta, "the store")?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = real.as_os_str().to_os_string();
        side.push(suffix);
        let side = PathBuf::from(side);
        let meta = match fs::symlink_metadata(&side) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(stat_problem(&side, &e)),
        };
        check_file_meta(&side, &meta, trusted, false)?;
        check_private(&side, &meta, "a side file of the store")?;
    }
    Ok(())
}

/// No access at all for group or others. The store too: SQLite gives its side files the database's
/// mode, so a readable database makes readable side files.
fn check_private(path: &Path, meta: &fs::Metadata, what: &str) -> Result<(), Problem> {
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(problem(
            path,
            format!("({what}) is open to group or others (mode {mode:o})"),
            format!("chmod 600 {}", path.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A 0700 directory under /tmp (root's sticky directory, accepted as an ancestor).
    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("safe-path-")
            .tempdir_in("/tmp")
            .expect("temp dir")
    }

    fn me() -> Option<u32> {
        fs::metadata("/proc/self").ok().map(|m| m.uid())
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn file(path: &Path, mode: u32) {
        fs::write(path, "x").expect("write");
        chmod(path, mode);
    }

    #[test]
    fn a_file_in_a_private_dir_under_tmp_is_trusted() {
        let d = tmp();
        let f = d.path().join("f");
        file(&f, 0o600);
        check_file(&f, me(), true).expect("trusted");
        assert_eq!(check_ancestors(&f, me()).expect("trusted"), f);
    }

    #[test]
    fn relative_paths_are_refused() {
        let e = check_ancestors(Path::new("etc/passwd"), None).expect_err("relative");
        assert!(e.what.contains("relative"), "{e}");
    }

    #[test]
    fn a_group_writable_or_sticky_holding_dir_is_refused_with_its_fix() {
        let d = tmp();
        let sub = d.path().join("sub");
        fs::create_dir(&sub).expect("mkdir");
        let f = sub.join("f");
        file(&f, 0o600);
        chmod(&sub, 0o770);
        let e = check_file(&f, me(), false).expect_err("group-writable dir");
        assert_eq!(e.path, sub);
        assert!(e.fix.contains("chmod go-w"), "{e}");
        chmod(&sub, 0o1777);
        let e = check_file(&f, me(), false).expect_err("sticky holding dir");
        assert!(e.what.contains("sticky"), "{e}");
        // An ancestor that is group-writable (not sticky) is refused too.
        chmod(&sub, 0o700);
        chmod(d.path(), 0o777);
        let e = check_file(&f, me(), false).expect_err("writable ancestor");
        assert_eq!(e.path, d.path());
        chmod(d.path(), 0o700);
        check_file(&f, me(), false).expect("fixed");
    }

    #[test]
    fn a_dir_owned_by_someone_else_is_refused() {
        let d = tmp();
        let f = d.path().join("f");
        file(&f, 0o600);
        let Some(uid) = me() else { return };
        if uid != 0 {
            return; // only root can give a directory away
        }
        std::os::unix::fs::chown(d.path(), Some(4242), None).expect("chown");
        let e = check_file(&f, None, false).expect_err("foreign dir");
        assert!(e.what.contains("uid 4242"), "{e}");
        assert!(e.fix.starts_with("chown root"), "{e}");
    }

    #[test]
    fn symbolic_links_are_followed_only_when_root_owns_them() {
        let d = tmp();
        let real_dir = d.path().join("real");
        fs::create_dir(&real_dir).expect("mkdir");
        let f = real_dir.join("f");
        file(&f, 0o600);
        let link = d.path().join("link");
        symlink(&real_dir, &link).expect("symlink");
        let via = link.join("f");
        if me() == Some(0) {
            assert_eq!(check_ancestors(&via, None).expect("root's link"), f);
            std::os::unix::fs::lchown(&link, Some(4242), None).expect("lchown");
        }
        let e = check_ancestors(&via, None).expect_err("someone else's link");
        assert!(e.what.contains("symbolic link"), "{e}");
        // A link to an unsafe place leads to a refusal of that place.
        let loose = d.path().join("loose");
        fs::create_dir(&loose).expect("mkdir");
        chmod(&loose, 0o777);
        file(&loose.join("g"), 0o600);
        let link2 = d.path().join("link2");
        symlink(&loose, &link2).expect("symlink");
        if me() == Some(0) {
            let e = check_file(&link2.join("g"), None, false).expect_err("link into a loose dir");
            assert_eq!(e.path, loose);
        }
    }

    #[test]
    fn store_side_files_must_be_private() {
        let d = tmp();
        let db = d.path().join("s.db");
        file(&db, 0o600);
        check_store_file(&db, me()).expect("trusted");
        let wal = d.path().join("s.db-wal");
        file(&wal, 0o644);
        let e = check_store_file(&db, me()).expect_err("readable wal");
        assert_eq!(e.path, wal);
        chmod(&wal, 0o600);
        let journal = d.path().join("s.db-journal");
        file(&journal, 0o620);
        assert!(check_store_file(&db, me()).is_err());
        fs::remove_file(&journal).expect("rm");
        check_store_file(&db, me()).expect("fixed");
        let e = check_store_file(&d.path().join("none.db"), me()).expect_err("missing");
        assert!(e.not_found, "{e}");
    }
}
