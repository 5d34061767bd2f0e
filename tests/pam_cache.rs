//! The process-wide cache across PAM transactions (src/pam/cache.rs), through the real libpam: in ONE
//! process (this test binary, which loads the module once), a first transaction fills the cache, then
//! one thing changes and the next transaction must see it. Every test first proves the cache is in
//! use (a second login opens no new connection to the service), so each would fail if the check it is
//! about were missing.
//!
//! The tests hold one lock: the module's cache has one slot, and a login that finds it held by
//! another thread works uncached (which would hide a missing check).

#[allow(unused_imports)]
mod common;

use common::pam_driver::{PAM_AUTH_ERR, PAM_IGNORE, PAM_SERVICE_ERR, PAM_SUCCESS};
use common::{Env, PamSession};
use lockserver::store::OpenMode;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A TCP forwarder in front of the emulator that counts the connections made to it.
struct CountingProxy {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl CountingProxy {
    fn start(target: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        CountingProxy { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An environment whose config reaches the emulator through a [`CountingProxy`], with "alice" paired.
fn setup() -> (Env, CountingProxy, String, String) {
    let mut env = Env::new();
    let proxy = CountingProxy::start(env.emu.addr());
    env.set_conf(|c| c.url = proxy.url.clone());
    let svc = env.service("sshd", &[]);
    let account = env.pair("alice");
    (env, proxy, svc, account)
}

/// One whole transaction (auth only); returns the module's code.
fn login(env: &Env, svc: &str) -> i32 {
    let mut s: PamSession = env.session(svc, "alice");
    s.authenticate(&[]).0
}

/// Two logins allowed, the second on the first one's connection: the cache holds this config's entry.
fn cached(env: &Env, proxy: &CountingProxy, svc: &str) {
    assert_eq!(login(env, svc), PAM_SUCCESS, "first login");
    let before = proxy.connections();
    assert_eq!(login(env, svc), PAM_SUCCESS, "second login");
    assert_eq!(
        proxy.connections(),
        before,
        "the second login reused the cached client's connection (log:\n{})",
        env.logs.lines().join("\n")
    );
}

#[test]
fn a_changed_config_is_followed_at_once() {
    let _one = serial();
    let (mut env, proxy, svc, _) = setup();
    cached(&env, &proxy, &svc);

    // enabled = false: the next login skips the check.
    env.set_conf(|c| c.extra = "enabled = false".into());
    assert_eq!(login(&env, &svc), PAM_IGNORE, "enabled = false is followed");
    env.set_conf(|c| c.extra = String::new());
    assert_eq!(login(&env, &svc), PAM_SUCCESS, "enabled again");
    cached(&env, &proxy, &svc);

    // A same-size edit in place with the old mtime put back: only the bytes tell. Another secret of the
    // same length: the emulator refuses the signature.
    let path = env.config_path();
    let mtime = fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    let text = fs::read_to_string(&path).expect("read the config");
    let secret = env.conf.secret.clone();
    let other: String = secret.chars().map(|c| if c == 'a' { 'b' } else { 'a' }).collect();
    assert_eq!(other.len(), secret.len());
    fs::write(&path, text.replace(&secret, &other)).expect("edit the config in place");
    let file = fs::File::options().write(true).open(&path).expect("open the config");
    file.set_times(fs::FileTimes::new().set_modified(mtime))
        .expect("put the mtime back");
    assert_eq!(fs::metadata(&path).expect("size").len(), text.len() as u64);
    assert_ne!(login(&env, &svc), PAM_SUCCESS, "the new (wrong) secret is used");

    // And the config chmod-ed readable by others (it holds the secret inline): refused.
    env.write_config();
    cached(&env, &proxy, &svc);
    fs::set_permissions(env.config_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(
        login(&env, &svc),
        PAM_SERVICE_ERR,
        "a config readable by others is refused"
    );
    env.logs.expect_line(&["user=alice", "readable by group or others"]);
}

#[test]
fn a_changed_secret_file_is_followed_with_the_config_unchanged() {
    let _one = serial();
    let (env, proxy, svc, _) = setup();
    // The application secret in a file of its own: the config's bytes stay the same below.
    let secret_file = env.dir.path().join("latch.secret");
    common::write_file_mode(&secret_file, &env.conf.secret, 0o600);
    let text = env.conf.render().replace(
        &format!("secret = \"{}\"", env.conf.secret),
        &format!("secret_file = \"{}\"", secret_file.display()),
    );
    assert!(text.contains("secret_file"), "the config names the secret file");
    common::write_file_mode(&env.config_path(), &text, 0o600);
    cached(&env, &proxy, &svc);

    let wrong: String = env.conf.secret.chars().rev().collect();
    assert_ne!(wrong, env.conf.secret);
    common::write_file_mode(&secret_file, &wrong, 0o600);
    assert_ne!(
        login(&env, &svc),
        PAM_SUCCESS,
        "the new (wrong) secret in the file is used"
    );
    common::write_file_mode(&secret_file, &env.conf.secret, 0o600);
    assert_eq!(login(&env, &svc), PAM_SUCCESS, "the right one again");
    // A secret file others may read is refused as at load.
    fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(login(&env, &svc), PAM_SERVICE_ERR, "a secret file readable by others");
}

#[test]
fn a_store_replaced_by_rename_is_opened_afresh() {
    let _one = serial();
    let (env, proxy, svc, _) = setup();
    cached(&env, &proxy, &svc);

    // A new store where nobody is paired, moved into place (the old one and its side files moved aside).
    let store = env.store_path();
    let dir = store.parent().expect("store dir");
    let fresh = dir.join("fresh.db");
    drop(lockserver::store::open(&format!("sqlite://{}", fresh.display()), OpenMode::Create).expect("new store"));
    for suffix in ["", "-wal", "-shm"] {
        let side = |p: &Path| p.with_file_name(format!("{}{suffix}", p.file_name().unwrap_or_default().display()));
        let _ = fs::rename(side(&store), side(&dir.join("old.db")));
    }
    fs::rename(&fresh, &store).expect("move the new store into place");
    assert_eq!(
        login(&env, &svc),
        PAM_IGNORE,
        "alice is not paired in the new store (unpaired = ignore)"
    );
}

#[test]
fn a_store_chmod_ed_open_is_refused() {
    let _one = serial();
    let (env, proxy, svc, _) = setup();
    cached(&env, &proxy, &svc);
    fs::set_permissions(env.store_path(), fs::Permissions::from_mode(0o644)).expect("chmod the store");
    assert_eq!(
        login(&env, &svc),
        PAM_SERVICE_ERR,
        "a store open to others is refused, as opening it refuses it"
    );
    env.logs.expect_line(&["user=alice", "open to group or others"]);
    fs::set_permissions(env.store_path(), fs::Permissions::from_mode(0o600)).expect("chmod back");
    assert_eq!(login(&env, &svc), PAM_SUCCESS, "the store is fine again");
}

#[test]
fn the_lock_status_is_never_cached() {
    let _one = serial();
    let (env, proxy, svc, account) = setup();
    cached(&env, &proxy, &svc);
    env.latch(&account, None, false);
    assert_eq!(
        login(&env, &svc),
        PAM_AUTH_ERR,
        "the latch closed at the service denies"
    );
    env.latch(&account, None, true);
    assert_eq!(login(&env, &svc), PAM_SUCCESS, "and open again allows");
}

#[test]
fn a_forked_child_uses_nothing_of_its_parent() {
    let _one = serial();
    let (env, proxy, svc, _) = setup();
    cached(&env, &proxy, &svc);
    let before = proxy.connections();

    // SAFETY: the child only runs one PAM transaction (libpam, the module) and leaves with _exit, never
    // returning into the test harness; the proxy and emulator threads it does not have stay in the parent.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| login(&env, &svc))).unwrap_or(-1);
        // SAFETY: ends the child at once, running no destructor or atexit handler of the parent's state.
        unsafe { libc::_exit(if code == PAM_SUCCESS { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid place for its status.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's login was allowed (status {status:#x}; log:\n{})",
        env.logs.lines().join("\n")
    );
    assert_eq!(
        proxy.connections(),
        before + 1,
        "the child made its own connection instead of using its parent's"
    );
    // The parent's cached connection is still its own and still works.
    assert_eq!(login(&env, &svc), PAM_SUCCESS, "the parent after the fork");
    assert_eq!(proxy.connections(), before + 1, "the parent kept its connection");
}
