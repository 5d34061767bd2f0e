//! Remembers a refusal for the same sshd connection for a few seconds.
//!
//! The OpenSSH client retries keyboard-interactive (`NumberOfPasswordPrompts`, three by default), and
//! sshd 9.2 runs each try in a new PAM child forked from the connection's monitor process: a new PAM
//! transaction, so `pam_set_data` cannot carry the answer. Without this, a locked user reads the refusal
//! three times, and with the service hung waits three budgets; a PingID user gets three pushes, and
//! an unanswered one waits `push_timeout_secs` three times.
//!
//! One connection is the session sshd's per-connection process creates (`setsid()` after `accept`): its
//! kbd-int children inherit it, and the session leader is that sshd process. The key is the session id,
//! the leader's start time (so a reused pid is another key), the PAM service, the user and the remote
//! host. Only sessions led by `sshd` count: sudo or su in a shell share the shell's session, and a user
//! who unlocks the phone and runs sudo again must be asked again.
//!
//! Only refusals are remembered, never a success: a lock closed a second ago must close the next login.
//! Entries live in `/run/lockserver/refusals` (root only, gone at reboot), one small file each.

#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How long a refusal holds for the same connection: long enough for the client's retries.
pub const REMEMBER_SECS: u64 = 10;
/// The root-only directory the entries live in.
pub const DIR: &str = "/run/lockserver/refusals";

/// What is remembered: the PAM code class of the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The lock refused (locked, unpaired with "deny", a service refusal).
    Denied,
    /// The service could not be asked and `fail_mode = "secure"`.
    Unavailable,
}

impl Refusal {
    fn word(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::Unavailable => "unavailable",
        }
    }
}

/// The sshd connection this process belongs to, as a key; `None` outside an sshd connection.
pub fn connection_key(service: &str, user: &[u8], rhost: &str) -> Option<String> {
    if rhost.is_empty() {
        return None;
    }
    let session = session_id(&fs::read_to_string("/proc/self/stat").ok()?)?;
    let leader = format!("/proc/{session}");
    let exe = fs::read_link(format!("{leader}/exe")).ok()?;
    if exe.file_name()?.to_str()? != "sshd" {
        return None;
    }
    let started = start_time(&fs::read_to_string(format!("{leader}/stat")).ok()?)?;
    let mut h = Sha256::new();
    for part in [
        service.as_bytes(),
        user,
        rhost.as_bytes(),
        session.as_bytes(),
        started.as_bytes(),
    ] {
        h.update(part.len().to_le_bytes());
        h.update(part);
    }
    Some(data_encoding::HEXLOWER.encode(&h.finalize()))
}

/// A refusal recorded for `key` in the last [`REMEMBER_SECS`], if any.
pub fn recall(key: &str) -> Option<Refusal> {
    recall_in(Path::new(DIR), key, now())
}

/// Records a refusal for `key`. Failing to record only costs the next try a service call.
pub fn remember(key: &str, refusal: Refusal) {
    if let Err(e) = remember_in(Path::new(DIR), key, refusal, now()) {
        log::debug!("could not remember the refusal for this connection: {e}");
    }
}

fn recall_in(dir: &Path, key: &str, now: u64) -> Option<Refusal> {
    trusted_dir(dir).ok()?;
    let text = fs::read_to_string(dir.join(key)).ok()?;
    let (until, word) = text.trim().split_once(' ')?;
    if until.parse::<u64>().ok()? < now {
        return None;
    }
    match word {
        "denied" => Some(Refusal::Denied),
        "unavailable" => Some(Refusal::Unavailable),
        _ => None,
    }
}

fn remember_in(dir: &Path, key: &str, refusal: Refusal, now: u64) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        make_dir(parent)?;
    }
    make_dir(dir)?;
    trusted_dir(dir)?;
    forget_expired(dir, now);
    let tmp: PathBuf = dir.join(format!(".{key}.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written =
        writeln!(f, "{} {}", now + REMEMBER_SECS, refusal.word()).and_then(|()| fs::rename(&tmp, dir.join(key)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn make_dir(dir: &Path) -> std::io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The directory is a real directory owned by root (or by us, in tests), open to nobody else.
fn trusted_dir(dir: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    let own = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    let owner_ok = meta.uid() == 0 || meta.uid() == own;
    if !meta.is_dir() || !owner_ok || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a directory only its owner can use",
            dir.display()
        )));
    }
    Ok(())
}

/// Drops expired entries (a handful at most: one per refused connection in the last seconds).
fn forget_expired(dir: &Path, now: u64) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let expired = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|u| u.parse::<u64>().ok()))
            .is_none_or(|until| until < now);
        // A half-written temporary file of another login is young: leave those for a minute.
        let young_tmp = entry.file_name().to_string_lossy().starts_with('.')
            && entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 60);
        if expired && !young_tmp {
            let _ = fs::remove_file(path);
        }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Field 6 (session) of `/proc/PID/stat`; the command name (field 2) may hold spaces and parentheses.
fn session_id(stat: &str) -> Option<String> {
    field_after_comm(stat, 3)
}

/// Field 22 (start time, in clock ticks since boot) of `/proc/PID/stat`.
fn start_time(stat: &str) -> Option<String> {
    field_after_comm(stat, 19)
}

fn field_after_comm(stat: &str, index: usize) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let field = rest.split_whitespace().nth(index)?;
    field.bytes().all(|b| b.is_ascii_digit()).then(|| field.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let stat = "4242 (sshd: a (b) c) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1 2";
        assert_eq!(session_id(stat).as_deref(), Some("4242"));
        assert_eq!(start_time(stat).as_deref(), Some("987654"));
        assert_eq!(session_id("garbage"), None);
    }

    #[test]
    fn remembered_for_a_while_then_forgotten() {
        let base = tempfile::tempdir().expect("dir");
        let dir = base.path().join("lockserver").join("refusals");
        assert_eq!(recall_in(&dir, "k", 100), None);
        remember_in(&dir, "k", Refusal::Unavailable, 100).expect("remember");
        assert_eq!(recall_in(&dir, "k", 100 + REMEMBER_SECS), Some(Refusal::Unavailable));
        assert_eq!(recall_in(&dir, "k", 101 + REMEMBER_SECS), None, "expired");
        assert_eq!(recall_in(&dir, "other", 100), None);
        assert_eq!(fs::metadata(&dir).expect("dir").mode() & 0o777, 0o700);
        // Expired entries go when the next one is written.
        remember_in(&dir, "k2", Refusal::Denied, 200).expect("remember");
        assert!(!dir.join("k").exists());
        assert_eq!(recall_in(&dir, "k2", 200), Some(Refusal::Denied));
    }

    #[test]
    fn a_directory_open_to_others_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().expect("dir");
        let dir = base.path().join("refusals");
        remember_in(&dir, "k", Refusal::Denied, 100).expect("remember");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert_eq!(recall_in(&dir, "k", 100), None);
        assert!(remember_in(&dir, "k", Refusal::Denied, 100).is_err());
    }

    #[test]
    fn no_key_outside_sshd() {
        // This test process is not in a session led by sshd.
        assert_eq!(connection_key("sshd", b"u", "127.0.0.1"), None);
        assert_eq!(connection_key("sshd", b"u", ""), None);
    }
}
