//! Shared helpers of the integration tests: the real-libpam driver, an in-process Latch emulator, a config
//! and a store in a temp dir, a pairing made for real over the emulator's API, and a syslog collector.
//!
//! Every [`Env`] has its own temp dir, emulator port, store and log socket, so tests run in parallel.
#![allow(dead_code)] // each test binary uses a different part of these helpers

pub mod cases;
pub mod pam_driver;
pub mod pg;
pub mod qr;

pub use cases::record_case;
pub use pam_driver::{Answer, PamSession, Style, Transcript};

use lockserver::config::{Config, LoadOptions};
use lockserver::store::{OpenMode, Pairing, PairingStore};
use lockserver_emulator::{AppConfig, Emulator, Options};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Operation ids the emulator's application knows.
pub const OP_A: &str = "OperationA0000000001";
pub const OP_B: &str = "OperationB0000000002";
/// An operation id the emulator does not know (its status answers 301).
pub const OP_UNKNOWN: &str = "OperationZ9999999999";
/// The remote host every session sets.
pub const RHOST: &str = "192.0.2.7";

/// The effective uid of the test process (for `trust_owner=`).
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `liblockserver.so` of the build the tests run from: the cdylib of the `module/` package (the root
/// package is an rlib only, so that the module gets LTO; see module/Cargo.toml). Cargo does not build
/// another package for this one's tests: `cargo build -p lockserver-module` runs once per test binary (a
/// no-op when it is fresh), so a test never loads a module older than the code it tests.
pub fn module_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let release = profile_dir().file_name().is_some_and(|n| n == "release");
        build_module(if release { "release" } else { "dev" })
    })
}

/// Builds the module with a cargo profile (`dev`, `release`, or `bench`: the release settings with the
/// symbols kept, for callgrind) and returns its path.
pub fn build_module(profile: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "lockserver-module", "--profile", profile])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build -p lockserver-module");
    assert!(status.success(), "cargo build -p lockserver-module failed: {status}");
    let module = profile_dir().join("liblockserver.so");
    assert!(module.is_file(), "{} not found after the build", module.display());
    module
}

/// `target/<debug|release>`: where the test binary's profile puts its outputs.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.parent()
        .and_then(Path::parent)
        .expect("the profile directory")
        .to_path_buf()
}

/// The `lockserver` CLI of the build the tests run from. It is a package of its own (`cli/`), so cargo
/// does not build it for this package's tests: `cargo build -p lockserver-cli` runs once per test binary
/// (a no-op when it is fresh) and the binary next to the profile's other outputs is used.
pub fn cli_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test binary");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the profile directory")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "lockserver-cli"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p lockserver-cli");
        assert!(status.success(), "cargo build -p lockserver-cli failed: {status}");
        let bin = profile_dir.join("lockserver");
        assert!(bin.is_file(), "{} not found after the build", bin.display());
        bin
    })
}

/// Runs `f` and measures it.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// A syslog socket of our own: the module's `log_socket=` points here. A thread keeps draining it, as a
/// syslog daemon does: the kernel queues only `net.unix.max_dgram_qlen` datagrams (10 by default) and the
/// module's sends wait while the queue is full.
pub struct LogCollector {
    pub path: PathBuf,
    inner: Arc<Collected>,
    stop: Arc<AtomicBool>,
    drainer: Option<JoinHandle<()>>,
}

struct Collected {
    sock: UnixDatagram,
    lines: Mutex<Lines>,
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    /// When each line arrived (within the drainer's 2 ms), for tests that time the module itself.
    arrived: Vec<Instant>,
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, datagram: &[u8]) {
        self.lines.push(String::from_utf8_lossy(datagram).into_owned());
        self.arrived.push(Instant::now());
    }
}

impl Collected {
    /// Moves every datagram waiting in the socket into the line list. Only ever called with the list
    /// locked, so no line can be read but not yet listed.
    fn drain(&self) -> MutexGuard<'_, Lines> {
        let mut guard = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buf = std::mem::take(&mut guard.buf);
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => guard.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: nothing more waiting
            }
        }
        guard.buf = buf;
        guard
    }

    /// Moves at most one waiting datagram into the line list; whether there was one.
    fn take_one(&self) -> bool {
        let mut guard = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buf = std::mem::take(&mut guard.buf);
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        let got = match self.sock.recv(&mut buf) {
            Ok(n) => {
                guard.push(&buf[..n]);
                true
            }
            Err(_) => false,
        };
        guard.buf = buf;
        got
    }
}

/// Syslog severities as they appear in `<PRI>` with facility LOG_AUTHPRIV (10 << 3).
pub const PRI_ERR: &str = "<83>";
pub const PRI_WARNING: &str = "<84>";
pub const PRI_INFO: &str = "<86>";

impl LogCollector {
    pub fn bind(path: PathBuf) -> LogCollector {
        Self::bind_reading(path, None)
    }

    /// A collector that reads like a busy syslog daemon: one datagram, then `per_line` of other work.
    pub fn bind_slow(path: PathBuf, per_line: Duration) -> LogCollector {
        Self::bind_reading(path, Some(per_line))
    }

    fn bind_reading(path: PathBuf, per_line: Option<Duration>) -> LogCollector {
        let sock = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        sock.set_nonblocking(true).expect("non-blocking log socket");
        let inner = Arc::new(Collected {
            sock,
            lines: Mutex::new(Lines::default()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let inner = Arc::clone(&inner);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match per_line {
                        None => {
                            drop(inner.drain());
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Some(pause) => {
                            if inner.take_one() {
                                std::thread::sleep(pause);
                            } else {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }
            })
        };
        LogCollector {
            path,
            inner,
            stop,
            drainer: Some(drainer),
        }
    }

    /// Every line received so far. The module sends its lines before the hook returns, so after a PAM
    /// call they are all here.
    pub fn lines(&self) -> Vec<String> {
        self.inner.drain().lines.clone()
    }

    /// Forgets the lines received so far.
    pub fn clear(&self) {
        let mut lines = self.inner.drain();
        lines.lines.clear();
        lines.arrived.clear();
    }

    /// The first line holding every needle.
    pub fn find(&self, needles: &[&str]) -> Option<String> {
        self.inner
            .drain()
            .lines
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .cloned()
    }

    /// The first line holding every needle, with when it arrived.
    pub fn find_timed(&self, needles: &[&str]) -> Option<(String, Instant)> {
        let lines = self.inner.drain();
        lines
            .lines
            .iter()
            .zip(&lines.arrived)
            .find(|(l, _)| needles.iter().all(|n| l.contains(n)))
            .map(|(l, t)| (l.clone(), *t))
    }

    /// Like [`Self::find`], failing the test with every line received when none matches.
    pub fn expect_line(&self, needles: &[&str]) -> String {
        self.find(needles).unwrap_or_else(|| {
            panic!(
                "no log line holds all of {needles:?}; lines received:\n{}",
                self.lines().join("\n")
            )
        })
    }
}

impl Drop for LogCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.drainer.take() {
            let _ = h.join();
        }
    }
}

/// The values of a `lockserver.conf`; [`Conf::render`] writes it.
#[derive(Debug, Clone)]
pub struct Conf {
    pub url: String,
    pub app_id: String,
    pub secret: String,
    pub operations: Vec<String>,
    pub fail_mode: String,
    pub unpaired: String,
    pub timeout_ms: u64,
    pub store: String,
    /// Lines written right after `store` (e.g. `store_password_file`, `store_fail_mode`).
    pub store_extra: String,
    pub max_attempts: u32,
    /// More top-level lines, as written (e.g. `service_unpaired = "as_unpaired"`).
    pub extra: String,
    /// More `[latch]` lines, as written (e.g. `proxy = "http://127.0.0.1:3128"`).
    pub latch_extra: String,
    /// `latch` or `pingid`.
    pub service: String,
    /// `[pingid]` values (the emulator's account); only rendered for `service = "pingid"`.
    pub push_timeout_secs: u64,
    pub poll_interval_ms: u64,
    /// More lines for the `[pingid]` section.
    pub pingid_extra: String,
}

impl Conf {
    pub fn render(&self) -> String {
        let ops: Vec<String> = self.operations.iter().map(|o| format!("{o:?}")).collect();
        let pingid = if self.service == "pingid" {
            let p = lockserver_emulator::PingidOptions::default();
            format!(
                "\n[pingid]\n\
                 account_id = \"{}\"\n\
                 application_id = \"{}\"\n\
                 token = \"{}\"\n\
                 api_key = \"{}\"\n\
                 url = \"{}/pingid\"\n\
                 push_timeout_secs = {}\n\
                 poll_interval_ms = {}\n{}",
                p.account_id,
                p.applications[0],
                p.token,
                p.api_key_b64,
                self.url,
                self.push_timeout_secs,
                self.poll_interval_ms,
                self.pingid_extra,
            )
        } else {
            String::new()
        };
        let text = format!(
            "service    = \"{service}\"\n\
             operations = [{ops}]\n\
             fail_mode  = \"{fail}\"\n\
             unpaired   = \"{unpaired}\"\n\
             timeout_ms = {timeout}\n\
             store      = \"{store}\"\n\
             {store_extra}\
             {extra}\n\
             \n\
             [latch]\n\
             app_id = \"{app}\"\n\
             secret = \"{secret}\"\n\
             url    = \"{url}\"\n\
             {latch_extra}\
             \n\
             [totp]\n\
             max_attempts = {max}\n",
            ops = ops.join(", "),
            fail = self.fail_mode,
            unpaired = self.unpaired,
            timeout = self.timeout_ms,
            store = self.store,
            store_extra = self.store_extra,
            app = self.app_id,
            secret = self.secret,
            url = self.url,
            max = self.max_attempts,
            extra = self.extra,
            latch_extra = self.latch_extra,
            service = self.service,
        );
        text + &pingid
    }
}

/// Writes `text` to `path` with `mode` (exactly, whatever the umask).
pub fn write_file_mode(path: &Path, text: &str, mode: u32) {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One test's world: a temp dir with a config, a store, a PAM confdir and a log socket, and an emulator.
pub struct Env {
    pub emu: Arc<Emulator>,
    pub dir: TempDir,
    pub conf: Conf,
    pub logs: LogCollector,
}

impl Env {
    /// An emulator whose application knows [`OP_A`] and [`OP_B`]; a config with `fail_mode = "secure"`,
    /// `unpaired = "ignore"`, `timeout_ms = 1000`, no operations.
    pub fn new() -> Env {
        let emu = Emulator::start(Options {
            apps: vec![AppConfig {
                operations: vec![OP_A.to_string(), OP_B.to_string()],
                ..AppConfig::default()
            }],
            ..Options::default()
        })
        .expect("start the Latch emulator");
        // A 0700 directory in /tmp (root's sticky directory, which the module's path rule accepts on the
        // way to a file, never as the directory holding it), whatever TMPDIR says.
        let dir = tempfile::Builder::new()
            .prefix("lockserver-pam-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        fs::create_dir(dir.path().join("pam.d")).expect("mkdir pam.d");
        let logs = LogCollector::bind(dir.path().join("log.sock"));
        let conf = Conf {
            url: emu.url().to_string(),
            app_id: emu.app_id().to_string(),
            secret: emu.secret().to_string(),
            operations: Vec::new(),
            fail_mode: "secure".into(),
            unpaired: "ignore".into(),
            timeout_ms: 1000,
            store: format!("sqlite://{}", dir.path().join("store").join("lockserver.db").display()),
            store_extra: String::new(),
            max_attempts: 3,
            extra: String::new(),
            latch_extra: String::new(),
            service: "latch".into(),
            push_timeout_secs: 5,
            poll_interval_ms: 100,
            pingid_extra: String::new(),
        };
        let env = Env {
            emu: Arc::new(emu),
            dir,
            conf,
            logs,
        };
        env.write_config();
        env
    }

    /// Like [`Env::new`] with `service = "pingid"` against the emulator's PingID account
    /// (`push_timeout_secs = 5`, `poll_interval_ms = 100`).
    pub fn pingid() -> Env {
        let mut env = Env::new();
        env.set_conf(|c| c.service = "pingid".into());
        env
    }

    /// Pairs `user` with PingID without the CLI: the user and a device at the emulator (as a claimed
    /// key leaves them), the pairing in the store (account id = the PingID user name).
    pub fn pair_pingid(&self, user: &str) {
        self.emu.pingid_add_user(user).expect("emulator: add the PingID user");
        self.emu.pingid_add_device(user, None).expect("emulator: add a device");
        self.store()
            .insert(
                &Pairing {
                    user: user.to_string(),
                    account_id: user.to_string(),
                    enabled: true,
                    totp_enabled: false,
                    totp_id: None,
                },
                Instant::now() + Duration::from_secs(10),
            )
            .expect("store the pairing");
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("lockserver.conf")
    }

    pub fn pam_dir(&self) -> PathBuf {
        self.dir.path().join("pam.d")
    }

    /// Writes `self.conf` to the config file, mode 0600.
    pub fn write_config(&self) {
        write_file_mode(&self.config_path(), &self.conf.render(), 0o600);
    }

    /// Changes the config and writes it.
    pub fn set_conf(&mut self, change: impl FnOnce(&mut Conf)) {
        change(&mut self.conf);
        self.write_config();
    }

    /// The module arguments every service gets, then `extra`.
    pub fn module_args(&self, config: &Path, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            format!("config={}", config.display()),
            format!("trust_owner={}", current_uid()),
            format!("log_socket={}", self.logs.path.display()),
        ];
        args.extend(extra.iter().map(|s| (*s).to_string()));
        args
    }

    /// Writes the PAM service `name` (auth and account through the module) with the usual arguments plus
    /// `extra`; returns `name`.
    pub fn service(&self, name: &str, extra: &[&str]) -> String {
        self.service_with_config(name, &self.config_path(), extra)
    }

    /// Like [`Self::service`] with another config file.
    pub fn service_with_config(&self, name: &str, config: &Path, extra: &[&str]) -> String {
        pam_driver::write_service(&self.pam_dir(), name, module_path(), &self.module_args(config, extra));
        name.to_string()
    }

    /// A PAM transaction for `service` and `user`, PAM_RHOST set.
    pub fn session(&self, service: &str, user: &str) -> PamSession {
        let mut s = PamSession::start(&self.pam_dir(), service, user);
        s.set_rhost(RHOST);
        s
    }

    /// Like [`Self::session`] for a user name that need not be UTF-8.
    pub fn session_bytes(&self, service: &str, user: &[u8]) -> PamSession {
        let mut s = PamSession::start_bytes(&self.pam_dir(), service, user);
        s.set_rhost(RHOST);
        s
    }

    /// The config as the CLI would load it (trusting our uid as owner).
    pub fn load_config(&self) -> Config {
        Config::load(
            &self.config_path(),
            LoadOptions {
                trusted_owner: Some(current_uid()),
            },
        )
        .unwrap_or_else(|e| panic!("load the test config: {e}"))
    }

    /// The store named by the config, created if needed.
    ///
    /// Drop it before the module logs in on the same store from this process: the module's SQLite
    /// (statically linked into the cdylib) and this test binary's are two copies of the library in one
    /// process, which do not see each other's POSIX locks; used at the same time on one file, one copy can
    /// truncate the `-shm` file the other has mapped (SIGBUS). Concurrent writers belong in another
    /// process (see `churn_store_writer_process` in `pam_login.rs`).
    pub fn store(&self) -> Box<dyn PairingStore + Send + Sync> {
        // Through the config, as the CLI opens it: a PostgreSQL store needs its password file.
        let config = self.load_config();
        lockserver::store::open_at(
            &lockserver::store::Location::of(&config),
            OpenMode::Create,
            lockserver::store::default_deadline(),
        )
        .unwrap_or_else(|e| panic!("open the store: {e}"))
    }

    /// Points the config at the PostgreSQL database `db` (password in a 0600 file of this env), with
    /// `store_fail_mode` if given.
    pub fn use_postgres(&mut self, db: &pg::Database, store_fail_mode: Option<&str>) {
        let password_file = self.dir.path().join("db.password");
        write_file_mode(&password_file, &format!("{}\n", db.password), 0o600);
        let mut extra = format!("store_password_file = \"{}\"\n", password_file.display());
        if let Some(mode) = store_fail_mode {
            extra.push_str(&format!("store_fail_mode = \"{mode}\"\n"));
        }
        self.set_conf(|c| {
            c.store = db.url.clone();
            c.store_extra = extra;
        });
    }

    /// The path of the SQLite store file.
    pub fn store_path(&self) -> PathBuf {
        PathBuf::from(self.conf.store.strip_prefix("sqlite://").expect("a sqlite:// store"))
    }

    /// Pairs `user` for real: the emulator issues a pairing code (as the phone app shows it), the
    /// lockserver Latch client pairs with it, and the account id goes into the store. Returns the
    /// account id.
    pub fn pair(&self, user: &str) -> String {
        let code = self.emu.add_code(None).expect("emulator: add a pairing code");
        let config = self.load_config();
        let service = lockserver::service::from_config(&config).unwrap_or_else(|e| panic!("build the client: {e}"));
        let account = lockserver::service::code_pairing(service.as_ref())
            .and_then(|p| p.pair(&code, None, Instant::now() + Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("pair {user} with code {code}: {e}"));
        self.store()
            .insert(
                &Pairing {
                    user: user.to_string(),
                    account_id: account.clone(),
                    enabled: true,
                    totp_enabled: false,
                    totp_id: None,
                },
                lockserver::store::default_deadline(),
            )
            .unwrap_or_else(|e| panic!("store the pairing of {user}: {e}"));
        account
    }

    /// Enrols a TOTP for `user` as `lockserver totp create` does (at the emulator, or a local secret per
    /// `[totp] source`). The store handle is dropped on return, before any login through the module.
    pub fn enrol_totp(
        &self,
        user: &str,
    ) -> Result<lockserver::accounts::Enrolment, lockserver::accounts::AccountError> {
        let config = self.load_config();
        let store = self.store();
        let service = lockserver::service::from_config(&config).unwrap_or_else(|e| panic!("build the client: {e}"));
        let accounts = lockserver::accounts::Accounts {
            config: &config,
            store: store.as_ref(),
            service: service.as_ref(),
        };
        accounts.totp_create(user, &format!("{user}@test"))
    }

    /// Opens (`true`) or closes the latch of `account` (`operation: None` = the application's).
    pub fn latch(&self, account: &str, operation: Option<&str>, open: bool) {
        self.emu
            .set_latch(account, operation, open)
            .unwrap_or_else(|e| panic!("emulator: set latch: {e}"));
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// A free loopback port for a server the test starts itself (sshd, tinyproxy): bound to :0, then
/// released for it. Not [`dead_port`], which names the same port to every caller.
pub fn listen_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A loopback port where nothing listens, and nothing will while the test runs: a port that was free
/// a moment ago (bind to :0, then close) can be handed to another test's listener at once, which then
/// answers in its place. Ports below 1024 are never handed out by `bind(:0)` (they are outside
/// `ip_local_port_range`), so one of them that refuses a connection now stays refused.
pub fn dead_port() -> u16 {
    (600..1000)
        .find(|&port| {
            matches!(
                std::net::TcpStream::connect(("127.0.0.1", port)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        })
        .expect("a loopback port below 1024 where nothing listens")
}

/// Runs `sql` on the SQLite file and returns the first column of the first row.
pub fn sqlite_query(path: &Path, sql: &str) -> String {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.query_row(sql, [], |r| r.get::<_, String>(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
