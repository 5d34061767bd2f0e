//! The listener, the per-connection loop, the Latch API, the fault modes and the control API.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::http::{self, BodyLen, ReadError, Request};
use crate::pingid::{Pingid, PingidOptions, Plan, SignatureMode};
use crate::qr::{self, QrMode};
use crate::sign;
use crate::state::{ALNUM, Fault, State, latch_message, random_string};
use crate::totp;

/// App id of the default application (20 characters, like a real one).
pub const DEFAULT_APP_ID: &str = "LatchEmulatorApp0001";
/// Secret of the default application (40 characters, like a real one).
pub const DEFAULT_SECRET: &str = "emulatorsecretemulatorsecretemulator0000";

const JSON: &str = "application/json";
/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A client that stops reading for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// One application the emulator knows.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Application id (20 characters in the real service; not enforced).
    pub id: String,
    /// Application secret (40 characters in the real service; not enforced).
    pub secret: String,
    /// Operation ids of this application.
    pub operations: Vec<String>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: DEFAULT_APP_ID.into(),
            secret: DEFAULT_SECRET.into(),
            operations: Vec::new(),
        }
    }
}

/// How the emulator does TLS.
#[derive(Clone, Debug)]
pub enum TlsMode {
    /// A PEM certificate chain and a PEM private key.
    Files {
        /// Certificate chain (leaf first).
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A fresh CA and a leaf for localhost/127.0.0.1/::1; the CA PEM is [`Emulator::ca_pem`].
    SelfSigned,
}

/// How to start an [`Emulator`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to bind, e.g. `127.0.0.1:0` (the default: a free port on loopback).
    pub listen: String,
    /// Serve HTTPS instead of HTTP.
    pub tls: Option<TlsMode>,
    /// Applications; the first is the default one. Empty means one [`AppConfig::default`].
    pub apps: Vec<AppConfig>,
    /// Accepted distance, in seconds, between `X-11Paths-Date` and the emulator's clock (default 300; the real
    /// service's window is unconfirmed).
    pub window_secs: u64,
    /// The form of TOTP `qr` values.
    pub qr_mode: QrMode,
    /// Lifetime of pairing codes registered without an explicit `ttl_secs` (`None` = no expiry).
    pub code_ttl: Option<Duration>,
    /// Log every request to stderr.
    pub verbose: bool,
    /// Which APIs are served (both by default).
    pub services: Services,
    /// The PingID account served under `/pingid/`.
    pub pingid: PingidOptions,
}

/// Which service APIs an emulator serves; the other's paths answer 404.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Services {
    /// Latch, under `/api/`.
    pub latch: bool,
    /// PingID SDK, under `/pingid/`.
    pub pingid: bool,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            latch: true,
            pingid: true,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: "127.0.0.1:0".into(),
            tls: None,
            apps: vec![AppConfig::default()],
            window_secs: 300,
            qr_mode: QrMode::Png,
            code_ttl: None,
            verbose: false,
            services: Services::default(),
            pingid: PingidOptions::default(),
        }
    }
}

/// An error from a control call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuError(pub String);

impl std::fmt::Display for EmuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmuError {}

/// A TOTP as the control API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpInfo {
    /// The `totpId`.
    pub id: String,
    /// The `userId` it was created for.
    pub user_id: String,
    /// Its secret, Base32 without padding.
    pub secret_b32: String,
}

struct Shared {
    apps: Vec<(String, String)>,
    initial_ops: Vec<(String, Vec<String>)>,
    window_secs: AtomicI64,
    code_ttl: Option<Duration>,
    state: Mutex<State>,
    requests: AtomicU64,
    stop: AtomicBool,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    verbose: bool,
    services: Services,
    pingid: Pingid,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn latch_error(out: &mut Vec<u8>, code: u32, message: &str) {
    let _ = write!(out, "{{\"error\":{{\"code\":{code},\"message\":");
    json_str(out, message);
    out.extend_from_slice(b"}}");
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn app_or_default(&self, app: Option<&str>) -> Result<String, EmuError> {
        match app {
            None => Ok(self.apps.first().map(|a| a.0.clone()).unwrap_or_default()),
            Some(a) if self.apps.iter().any(|(id, _)| id == a) => Ok(a.to_string()),
            Some(a) => Err(EmuError(format!("unknown application {a:?}"))),
        }
    }

    fn now_ms(&self, st: &State) -> i64 {
        wall_ms().saturating_add(st.skew_secs.saturating_mul(1000))
    }

    fn add_code(
        &self,
        code: Option<&str>,
        user: Option<&str>,
        app: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<(String, String, String), EmuError> {
        if let Some(c) = code
            && (c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(EmuError(format!("invalid pairing code {c:?} (1-64 letters/digits)")));
        }
        let app = self.app_or_default(app)?;
        let mut st = self.state();
        let now = self.now_ms(&st);
        let code = st.add_code(code, user, ttl.or(self.code_ttl), now);
        let user = st.codes.get(&code).map(|c| c.user.clone()).unwrap_or_default();
        let account = crate::state::account_id(&app, &user);
        Ok((code, user, account))
    }

    fn pair_user(
        &self,
        user: Option<&str>,
        app: Option<&str>,
        common_name: Option<String>,
    ) -> Result<String, EmuError> {
        let app = self.app_or_default(app)?;
        let user = user.map_or_else(|| format!("user-{}", random_string(ALNUM, 12)), str::to_string);
        let mut st = self.state();
        let now = self.now_ms(&st);
        st.pair_user(&app, &user, common_name, now)
            .map_err(|c| EmuError(latch_message(c).into()))
    }

    fn set_latch(&self, account: &str, op: Option<&str>, on: bool) -> Result<(), EmuError> {
        let mut st = self.state();
        let acc = st.control_account(account, op).map_err(EmuError)?;
        acc.latches.insert(op.unwrap_or("").to_string(), on);
        Ok(())
    }

    fn require_otp(&self, account: &str, op: Option<&str>, required: bool) -> Result<(), EmuError> {
        let mut st = self.state();
        let acc = st.control_account(account, op).map_err(EmuError)?;
        let key = op.unwrap_or("").to_string();
        if required {
            acc.otp_required.insert(key);
        } else {
            acc.otp_required.remove(&key);
        }
        Ok(())
    }

    fn last_otp(&self, account: &str, op: Option<&str>) -> Option<(String, i64)> {
        let st = self.state();
        st.accounts.get(account)?.last_otp.get(op.unwrap_or("")).cloned()
    }

    fn set_fault(&self, fault: Fault, count: Option<u64>) {
        let mut st = self.state();
        st.fault_remaining = if fault == Fault::None { None } else { count };
        st.fault = fault;
    }

    fn set_error(&self, code: u32, message: Option<&str>) {
        self.state().error = (code != 0).then(|| (code, message.unwrap_or(latch_message(code)).to_string()));
    }

    fn add_operation(&self, app: Option<&str>, op: &str) -> Result<(), EmuError> {
        if op.is_empty() || op.contains('/') {
            return Err(EmuError(format!("invalid operation id {op:?}")));
        }
        let app = self.app_or_default(app)?;
        let mut st = self.state();
        let ops = st.operations.entry(app).or_default();
        if !ops.iter().any(|o| o == op) {
            ops.push(op.to_string());
        }
        Ok(())
    }

    fn totp_info(&self, id: Option<&str>, user: Option<&str>) -> Option<TotpInfo> {
        let st = self.state();
        let (id, t) = match id {
            Some(id) => st.totps.get_key_value(id)?,
            None => st.latest_totp(user)?,
        };
        Some(TotpInfo {
            id: id.clone(),
            user_id: t.user_id.clone(),
            secret_b32: data_encoding::BASE32_NOPAD.encode(&t.secret),
        })
    }

    fn reset(&self) {
        self.pingid.reset();
        self.state().reset(&self.initial_ops);
        self.requests.store(0, Ordering::SeqCst);
    }

    fn state_json(&self) -> Value {
        let n = self.requests.load(Ordering::SeqCst);
        let mut v = self.state().to_json(n);
        v["window_secs"] = json!(self.window_secs.load(Ordering::Relaxed));
        v["apps"] = json!(self.apps.iter().map(|(id, _)| id).collect::<Vec<_>>());
        v["pingid"] = self.pingid.state_json();
        v
    }
}

/// A running emulator. Dropping it stops the listener and closes every open connection.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    accept: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds `options.listen` and starts serving on a background thread.
    pub fn start(options: Options) -> io::Result<Emulator> {
        let apps = if options.apps.is_empty() {
            vec![AppConfig::default()]
        } else {
            options.apps
        };
        let initial_ops: Vec<(String, Vec<String>)> =
            apps.iter().map(|a| (a.id.clone(), a.operations.clone())).collect();
        let listener = TcpListener::bind(&options.listen)?;
        let addr = listener.local_addr()?;
        let (tls, ca_pem) = match &options.tls {
            None => (None, None),
            Some(TlsMode::Files { cert, key }) => {
                let (cfg, pem) = crate::tls::from_files(cert, key)?;
                (Some(cfg), Some(pem))
            }
            Some(TlsMode::SelfSigned) => {
                let (cfg, pem) = crate::tls::self_signed(Some(addr.ip()))?;
                (Some(cfg), Some(pem))
            }
        };
        let pingid = Pingid::new(options.pingid).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut state = State::new(&initial_ops);
        state.qr_mode = options.qr_mode;
        let shared = Arc::new(Shared {
            apps: apps.iter().map(|a| (a.id.clone(), a.secret.clone())).collect(),
            initial_ops,
            window_secs: AtomicI64::new(options.window_secs.min(i64::MAX as u64) as i64),
            code_ttl: options.code_ttl,
            state: Mutex::new(state),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            verbose: options.verbose,
            services: options.services,
            pingid,
        });
        let host_ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", SocketAddr::new(host_ip, addr.port()));
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("emulator-accept".into())
            .spawn(move || accept_loop(listener, sh, tls))?;
        Ok(Emulator {
            shared,
            addr: SocketAddr::new(host_ip, addr.port()),
            url,
            ca_pem,
            accept: Some(accept),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// With TLS: the PEM a client should trust (the CA for `SelfSigned`, the certificate file for `Files`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The default (first) application's id.
    pub fn app_id(&self) -> &str {
        self.shared.apps.first().map_or("", |a| a.0.as_str())
    }

    /// The default (first) application's secret.
    pub fn secret(&self) -> &str {
        self.shared.apps.first().map_or("", |a| a.1.as_str())
    }

    /// The account id pairing `user` with the default application gives (64 hex characters).
    pub fn account_id_for(&self, user: &str) -> String {
        crate::state::account_id(self.app_id(), user)
    }

    /// Registers a pairing code (`None`: a random valid one) for a fresh user; returns the code.
    pub fn add_code(&self, code: Option<&str>) -> Result<String, EmuError> {
        self.shared.add_code(code, None, None, None).map(|(c, _, _)| c)
    }

    /// Registers a pairing code for `user`; returns (code, account id it pairs to in the default application).
    pub fn add_code_for(&self, code: Option<&str>, user: &str) -> Result<(String, String), EmuError> {
        self.shared
            .add_code(code, Some(user), None, None)
            .map(|(c, _, a)| (c, a))
    }

    /// Registers a pairing code that expires after `ttl`.
    pub fn add_code_with_ttl(&self, code: Option<&str>, ttl: Duration) -> Result<String, EmuError> {
        self.shared.add_code(code, None, None, Some(ttl)).map(|(c, _, _)| c)
    }

    /// Pairs `user` with the default application without a code; returns the account id.
    pub fn pair(&self, user: &str) -> Result<String, EmuError> {
        self.shared.pair_user(Some(user), None, None)
    }

    /// Sets the latch of an account (`operation: None` = the application-wide latch). `on` = open.
    pub fn set_latch(&self, account: &str, operation: Option<&str>, on: bool) -> Result<(), EmuError> {
        self.shared.set_latch(account, operation, on)
    }

    /// Makes status issue (or stop issuing) a two-factor token for this account (and operation).
    pub fn require_otp(&self, account: &str, operation: Option<&str>, required: bool) -> Result<(), EmuError> {
        self.shared.require_otp(account, operation, required)
    }

    /// The last two-factor token status issued for this account (and operation).
    pub fn last_otp(&self, account: &str, operation: Option<&str>) -> Option<String> {
        self.shared.last_otp(account, operation).map(|(t, _)| t)
    }

    /// Adds an operation id to the default application.
    pub fn add_operation(&self, operation: &str) -> Result<(), EmuError> {
        self.shared.add_operation(None, operation)
    }

    /// Applies `fault` to every following API request until changed.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.set_fault(fault, None);
    }

    /// Applies `fault` to the next `count` API requests only.
    pub fn set_fault_times(&self, fault: Fault, count: u64) {
        self.shared.set_fault(fault, Some(count));
    }

    /// Makes every following API request answer this Latch error (`code` 0 clears; `None` message = the
    /// standard text of the code).
    pub fn set_error(&self, code: u32, message: Option<&str>) {
        self.shared.set_error(code, message);
    }

    /// Shifts the emulator's clock by `seconds` (date window, TOTP, `generated`).
    pub fn set_clock_skew(&self, seconds: i64) {
        self.shared.state().skew_secs = seconds;
    }

    /// Sets the accepted date window, in seconds.
    pub fn set_window_secs(&self, seconds: u64) {
        self.shared
            .window_secs
            .store(seconds.min(i64::MAX as u64) as i64, Ordering::Relaxed);
    }

    /// Sets the form of TOTP `qr` values.
    pub fn set_qr_mode(&self, mode: QrMode) {
        self.shared.state().qr_mode = mode;
    }

    /// The Base32 secret of a TOTP.
    pub fn totp_secret(&self, totp_id: &str) -> Option<String> {
        self.shared.totp_info(Some(totp_id), None).map(|t| t.secret_b32)
    }

    /// The most recently created TOTP (optionally of one `userId`).
    pub fn latest_totp(&self, user_id: Option<&str>) -> Option<TotpInfo> {
        self.shared.totp_info(None, user_id)
    }

    /// API (non-control) requests received since start or the last reset, faulted ones included.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Forgets codes, accounts, TOTPs, faults, errors, skew and the request count; operations go back to the
    /// start options.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// The state as `GET /_emulator/state` shows it.
    pub fn state_json(&self) -> Value {
        self.shared.state_json()
    }

    /// The PingID account served (ids, token, API key).
    pub fn pingid_options(&self) -> &PingidOptions {
        self.shared.pingid.options()
    }

    fn pingid_now_ms(&self) -> i64 {
        let st = self.shared.state();
        self.shared.now_ms(&st)
    }

    /// Creates a PingID user, as `POST /users` would.
    pub fn pingid_add_user(&self, user: &str) -> Result<(), EmuError> {
        self.shared.pingid.add_user(user).map_err(EmuError)
    }

    /// The phone claims a pairing key (see [`Pingid::claim`]); returns (device id, user).
    pub fn pingid_claim(&self, key: &str, user: Option<&str>, app: Option<&str>) -> Result<(String, String), EmuError> {
        let now = self.pingid_now_ms();
        self.shared.pingid.claim(key, user, app, now).map_err(EmuError)
    }

    /// Pairs a device for an existing PingID user without a key; returns the device id.
    pub fn pingid_add_device(&self, user: &str, app: Option<&str>) -> Result<String, EmuError> {
        let now = self.pingid_now_ms();
        self.shared.pingid.add_device(user, app, now).map_err(EmuError)
    }

    /// How the phone answers `user`'s (with `None`: everyone's) next authentications.
    pub fn pingid_plan(&self, user: Option<&str>, plan: Plan) -> Result<(), EmuError> {
        self.shared.pingid.set_plan(user, plan).map_err(EmuError)
    }

    /// Answers `user`'s latest pending authentication now; returns its id.
    pub fn pingid_answer(&self, user: &str, plan: Plan) -> Result<String, EmuError> {
        let now = self.pingid_now_ms();
        self.shared.pingid.answer_latest(user, plan, now).map_err(EmuError)
    }

    /// The right OTP of `user`'s latest authentication, once it asks for one.
    pub fn pingid_otp(&self, user: &str) -> Option<String> {
        let now = self.pingid_now_ms();
        self.shared.pingid.otp(user, now).map(|(_, otp)| otp)
    }

    /// `user`'s authentications (all users' with `None`), oldest first, with status and clientContext.
    pub fn pingid_authentications(&self, user: Option<&str>) -> Vec<Value> {
        let now = self.pingid_now_ms();
        self.shared.pingid.authentications(user, now)
    }

    /// How PingID answers are signed from now on.
    pub fn pingid_set_signature(&self, mode: SignatureMode) {
        self.shared.pingid.set_signature(mode);
    }

    /// The next `count` PingID API requests get exactly this answer (signed per the signature mode).
    pub fn pingid_set_raw(&self, status: u16, body: &str, count: u64) {
        self.shared.pingid.set_raw(status, body.as_bytes(), count);
    }

    /// PingID API requests that reached the PingID handler (not faulted).
    pub fn pingid_request_count(&self) -> u64 {
        self.shared.pingid.request_count()
    }

    /// Stops the listener and closes every connection (what `Drop` does).
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; wait for it only if the wake-up got through (never block forever in Drop).
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(h) = self.accept.take()
            && woke
        {
            let _ = h.join();
        }
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>, tls: Option<Arc<rustls::ServerConfig>>) {
    for conn in listener.incoming() {
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let tcp = match conn {
            Ok(t) => t,
            Err(_) => {
                // e.g. EMFILE: do not spin.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(IDLE_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
        let Ok(registered) = tcp.try_clone() else { continue };
        let id = sh.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&sh.conns).insert(id, registered);
        let sh2 = sh.clone();
        let tls = tls.clone();
        let spawned = thread::Builder::new().name("emulator-conn".into()).spawn(move || {
            // Unregisters and closes the socket however serve() ends (even by a panic).
            let _guard = ConnGuard { sh: &sh2, id };
            match tls {
                None => serve(&tcp, &tcp, &sh2),
                Some(cfg) => {
                    if let (Ok(raw), Ok(conn)) = (tcp.try_clone(), rustls::ServerConnection::new(cfg)) {
                        serve(rustls::StreamOwned::new(conn, tcp), &raw, &sh2);
                    }
                }
            }
        });
        if spawned.is_err()
            && let Some(c) = lock(&sh.conns).remove(&id)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

struct ConnGuard<'a> {
    sh: &'a Shared,
    id: u64,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.sh.conns).remove(&self.id) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// What the connection loop does after a request.
enum Next {
    KeepGoing,
    Close,
}

fn send<W: Write>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}

fn serve<S: Read + Write>(io: S, raw: &TcpStream, sh: &Shared) {
    let mut reader = BufReader::with_capacity(16 * 1024, io);
    let mut req = Request::default();
    let mut out: Vec<u8> = Vec::with_capacity(2048);
    let mut body: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        let head = req.read_head(&mut reader);
        let len = head.and_then(|()| req.content_length());
        let len = match len {
            Ok(n) => n,
            Err(ReadError::Bad(status, msg)) => {
                out.clear();
                body.clear();
                latch_error(&mut body, 400, msg);
                http::write_response(&mut out, status, Some(JSON), &body, false);
                let _ = send(reader.get_mut(), &out);
                return;
            }
            Err(_) => return,
        };
        if len > 0 && req.expects_continue() && send(reader.get_mut(), b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
        if req.read_body(&mut reader, len).is_err() {
            return;
        }
        out.clear();
        body.clear();
        let path = req.path();
        let next = if path == "/_emulator" || path.starts_with("/_emulator/") {
            let status = control(sh, &req, &mut body);
            http::write_response(&mut out, status, Some(JSON), &body, req.keep_alive);
            if sh.verbose {
                eprintln!("emulator: {} {} -> {status}", req.method(), req.target());
            }
            match send(reader.get_mut(), &out) {
                Ok(()) if req.keep_alive => Next::KeepGoing,
                _ => Next::Close,
            }
        } else {
            sh.requests.fetch_add(1, Ordering::SeqCst);
            api_request(sh, &req, &mut reader, raw, &mut out, &mut body)
        };
        if matches!(next, Next::Close) {
            return;
        }
    }
}

const HTML_500: &[u8] = b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\
<body><h1>Internal Server Error</h1><p>The server encountered an internal error.</p></body></html>\n";
const GARBAGE: &[u8] = b"<<<this is not JSON>>> \x00\x01\x02 {\"data\": [unterminated";

fn api_request<S: Read + Write>(
    sh: &Shared,
    req: &Request,
    reader: &mut BufReader<S>,
    raw: &TcpStream,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Next {
    let keep = req.keep_alive;
    let (fault, injected, now_ms, qr_mode) = {
        let mut st = sh.state();
        let f = st.take_fault();
        (f, st.error.clone(), sh.now_ms(&st), st.qr_mode)
    };
    if sh.verbose {
        eprintln!("emulator: {} {} (fault {})", req.method(), req.target(), fault.mode());
    }
    let done = |r: io::Result<()>| {
        if r.is_ok() && keep {
            Next::KeepGoing
        } else {
            Next::Close
        }
    };
    match fault {
        Fault::Refuse => {
            let _ = raw.shutdown(Shutdown::Both);
            return Next::Close;
        }
        Fault::Hang { max } => {
            hang(reader, raw, max, &sh.stop);
            return Next::Close;
        }
        Fault::Http500 => {
            http::write_response(out, 500, Some("text/html; charset=utf-8"), HTML_500, keep);
            return done(send(reader.get_mut(), out));
        }
        Fault::Garbage => {
            http::write_response(out, 200, Some(JSON), GARBAGE, keep);
            return done(send(reader.get_mut(), out));
        }
        Fault::Huge { size, chunked } => {
            let app = sh.apps.first().map_or("", |a| a.0.as_str());
            return done(stream_huge(reader.get_mut(), app, size, chunked, keep));
        }
        Fault::None | Fault::Slow { .. } | Fault::Trickle { .. } | Fault::Close | Fault::Contradict { .. } => {}
    }
    let mut extra = Vec::new();
    let (status, ctype) = if req.path().starts_with("/pingid/") {
        if sh.services.pingid {
            let (status, ctype, headers) = sh.pingid.api(req, now_ms, body);
            extra = headers;
            (status, ctype)
        } else {
            body.extend_from_slice(&crate::pingid::envelope("NOT_FOUND", "PingID is not served", None, &[]));
            (404, Some(JSON))
        }
    } else if !sh.services.latch {
        not_found(body)
    } else {
        match injected {
            Some((code, message)) => {
                latch_error(body, code, &message);
                (200, Some(JSON))
            }
            None => api(sh, req, body, now_ms, qr_mode),
        }
    };
    if let Fault::Contradict { twin_first } = fault {
        contradict_statuses(body, twin_first);
    }
    http::write_response_with(out, status, ctype, &extra, body, keep);
    let head_len = out.len() - if status == 204 { 0 } else { body.len() };
    let w = reader.get_mut();
    match fault {
        Fault::Slow { delay } => {
            thread::sleep(delay);
            done(send(w, out))
        }
        Fault::Trickle { delay } => {
            let r = (|| {
                send(w, &out[..head_len])?;
                for b in &out[head_len..] {
                    thread::sleep(delay);
                    send(w, std::slice::from_ref(b))?;
                }
                Ok(())
            })();
            done(r)
        }
        Fault::Close => {
            let half = head_len + (out.len() - head_len) / 2;
            let _ = send(w, &out[..half]);
            let _ = raw.shutdown(Shutdown::Both);
            Next::Close
        }
        _ => done(send(w, out)),
    }
}

/// Gives every `"status":"on"` / `"status":"off"` of a compact JSON body a contradicting twin.
fn contradict_statuses(body: &mut Vec<u8>, twin_first: bool) {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text.as_str();
    while let Some(i) = rest.find("\"status\":\"") {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let (real, twin, len) = if from.starts_with("\"status\":\"on\"") {
            ("\"status\":\"on\"", "\"status\":\"off\"", 13)
        } else if from.starts_with("\"status\":\"off\"") {
            ("\"status\":\"off\"", "\"status\":\"on\"", 14)
        } else {
            out.push_str(&from[..10]);
            rest = &from[10..];
            continue;
        };
        if twin_first {
            out.push_str(twin);
            out.push(',');
            out.push_str(real);
        } else {
            out.push_str(real);
            out.push(',');
            out.push_str(twin);
        }
        rest = &from[len..];
    }
    out.push_str(rest);
    *body = out.into_bytes();
}

/// Holds the connection without answering until the client goes away, the emulator stops or `max` passes.
fn hang<R: Read>(r: &mut R, raw: &TcpStream, max: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + max;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = (deadline - now).clamp(Duration::from_millis(1), Duration::from_millis(250));
        let _ = raw.set_read_timeout(Some(wait));
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = raw.shutdown(Shutdown::Both);
}

/// Streams a `size`-byte body that starts like a status answer, without holding it in memory.
fn stream_huge<W: Write>(w: &mut W, app: &str, size: u64, chunked: bool, keep: bool) -> io::Result<()> {
    static PAD: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    let mut head = Vec::with_capacity(256);
    let len = if chunked {
        BodyLen::Chunked
    } else {
        BodyLen::Length(size)
    };
    http::write_head(&mut head, 200, Some(JSON), len, keep);
    w.write_all(&head)?;
    let mut prefix = Vec::new();
    prefix.extend_from_slice(b"{\"data\":{\"operations\":{");
    json_str(&mut prefix, app);
    prefix.extend_from_slice(b":{\"status\":\"on\",\"padding\":\"");
    let suffix: &[u8] = b"\"}}}}";
    let mut left = size;
    let emit = |w: &mut W, data: &[u8]| -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if chunked {
            write!(w, "{:x}\r\n", data.len())?;
            w.write_all(data)?;
            w.write_all(b"\r\n")
        } else {
            w.write_all(data)
        }
    };
    let take = |left: &mut u64, n: usize| -> usize {
        let k = (*left).min(n as u64) as usize;
        *left -= k as u64;
        k
    };
    let k = take(&mut left, prefix.len());
    emit(w, &prefix[..k])?;
    let pad_total = left.saturating_sub(suffix.len() as u64);
    let mut pad_left = pad_total;
    left -= pad_total;
    while pad_left > 0 {
        let k = pad_left.min(PAD.len() as u64) as usize;
        emit(w, &PAD[..k])?;
        pad_left -= k as u64;
    }
    let k = take(&mut left, suffix.len());
    emit(w, &suffix[..k])?;
    if chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    w.flush()
}

/// Checks the 11PATHS signature; returns the application's index or a Latch error code.
fn authenticate(sh: &Shared, req: &Request, params: &[(String, String)], now_ms: i64) -> Result<usize, u32> {
    let auth = req.header("authorization").ok_or(103u32)?;
    let mut parts = auth.split(' ');
    let (Some(method), Some(app_id), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(101);
    };
    if method != sign::AUTH_METHOD || app_id.is_empty() || signature.is_empty() {
        return Err(101);
    }
    let date = req.header(sign::DATE_HEADER).ok_or(104u32)?;
    let when = sign::parse_date(date).ok_or(108u32)?;
    let window = sh.window_secs.load(Ordering::Relaxed);
    if (now_ms.div_euclid(1000) - when).abs() > window {
        return Err(109);
    }
    // An unknown application id is answered like a bad signature (102), as the Node SDK's tests observe for a
    // wrong app/secret pair.
    let idx = sh.apps.iter().position(|(id, _)| id == app_id).ok_or(102u32)?;
    let xh = sign::serialize_x_headers(req.headers());
    let sp = sign::serialize_params(params);
    let sts = sign::string_to_sign(req.method(), date, &xh, req.target(), &sp);
    if sign::verify(sh.apps[idx].1.as_bytes(), &sts, signature) {
        Ok(idx)
    } else {
        Err(102)
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Splits `/api/<major>.<minor>/<rest>` into `<rest>`.
fn api_rest(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/")?;
    let (version, rest) = rest.split_once('/')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then_some(rest)
}

struct StatusPath<'a> {
    op: Option<&'a str>,
    instance: Option<&'a str>,
    nootp: bool,
}

fn status_suffix<'a>(rest: &[&'a str]) -> Option<StatusPath<'a>> {
    let mut i = 0;
    let mut sp = StatusPath {
        op: None,
        instance: None,
        nootp: false,
    };
    if rest.get(i) == Some(&"op") {
        sp.op = Some(rest.get(i + 1).copied().filter(|s| !s.is_empty())?);
        i += 2;
    }
    if rest.get(i) == Some(&"i") {
        sp.instance = Some(rest.get(i + 1).copied().filter(|s| !s.is_empty())?);
        i += 2;
    }
    if rest.get(i) == Some(&"nootp") {
        sp.nootp = true;
        i += 1;
    }
    if rest.get(i) == Some(&"silent") {
        i += 1;
    }
    (i == rest.len()).then_some(sp)
}

fn not_found(body: &mut Vec<u8>) -> (u16, Option<&'static str>) {
    latch_error(body, 404, "Not found");
    (404, Some(JSON))
}

/// Serves one Latch API request (signature already not checked). Returns (HTTP status, content type).
fn api(sh: &Shared, req: &Request, body: &mut Vec<u8>, now_ms: i64, qr_mode: QrMode) -> (u16, Option<&'static str>) {
    let Some(rest) = api_rest(req.path()) else {
        return not_found(body);
    };
    let form = match req.header("content-type") {
        None => true,
        Some(ct) => ct
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")),
    };
    let params = if form && !req.body.is_empty() {
        sign::parse_form(&req.body)
    } else {
        Vec::new()
    };
    let app_idx = match authenticate(sh, req, &params, now_ms) {
        Ok(i) => i,
        Err(code) => {
            latch_error(body, code, latch_message(code));
            return (200, Some(JSON));
        }
    };
    let app = sh.apps[app_idx].0.as_str();
    let segs: Vec<std::borrow::Cow<'_, str>> = rest.split('/').map(sign::path_decode).collect();
    let segs: Vec<&str> = segs.iter().map(|s| s.as_ref()).collect();
    let result: Result<(), u32> = match (req.method(), segs.as_slice()) {
        ("GET" | "POST", ["pair", token]) => {
            let cn = param(&params, "commonName").map(str::to_string);
            let mut st = sh.state();
            st.pair_code(app, token, cn, now_ms).map(|acc| {
                body.extend_from_slice(b"{\"data\":{\"accountId\":");
                json_str(body, &acc);
                body.extend_from_slice(b"}}");
            })
        }
        ("GET" | "POST", ["pairWithId", user]) if !user.is_empty() => {
            let cn = param(&params, "commonName").map(str::to_string);
            let mut st = sh.state();
            st.pair_user(app, user, cn, now_ms).map(|acc| {
                body.extend_from_slice(b"{\"data\":{\"accountId\":");
                json_str(body, &acc);
                body.extend_from_slice(b"}}");
            })
        }
        ("GET", ["unpair", acc]) => sh.state().unpair(app, acc).map(|()| body.extend_from_slice(b"{}")),
        ("GET" | "POST", ["status", acc, rest @ ..]) => match status_suffix(rest) {
            None => return not_found(body),
            Some(sp) => status(sh, app, acc, &sp, param(&params, "otp"), now_ms, body),
        },
        ("POST", [action @ ("lock" | "unlock"), acc, rest @ ..]) => match status_suffix(rest) {
            Some(sp) if !sp.nootp => {
                let mut st = sh.state();
                if sp.instance.is_some() || sp.op.is_some_and(|op| !st.has_operation(app, op)) {
                    Err(301)
                } else {
                    st.account_mut(app, acc).map(|a| {
                        a.latches.insert(sp.op.unwrap_or("").to_string(), *action == "unlock");
                        body.extend_from_slice(b"{}");
                    })
                }
            }
            _ => return not_found(body),
        },
        ("GET", ["operation"]) => {
            let st = sh.state();
            let ops = st.operations.get(app).cloned().unwrap_or_default();
            let map: serde_json::Map<String, Value> = ops
                .into_iter()
                .map(|op| {
                    let v =
                        json!({"name": op, "two_factor": "DISABLED", "lock_on_request": "DISABLED", "operations": {}});
                    (op, v)
                })
                .collect();
            let _ = serde_json::to_writer(&mut *body, &json!({"data": {"operations": map}}));
            Ok(())
        }
        ("POST", ["totps"]) => match param(&params, "userId").filter(|u| !u.is_empty()) {
            None => Err(401),
            Some(user_id) => {
                let cn = param(&params, "commonName").filter(|c| !c.is_empty());
                let mut st = sh.state();
                let id = st.create_totp(app, user_id, cn.map(str::to_string), now_ms);
                totp_json(&st, &id, qr_mode, body)
            }
        },
        ("GET", ["totps", id]) => {
            let st = sh.state();
            match st.totps.get(*id) {
                Some(t) if t.app == app => totp_json(&st, id, qr_mode, body),
                _ => Err(301),
            }
        }
        ("DELETE", ["totps", id]) => {
            let mut st = sh.state();
            match st.totps.get(*id) {
                Some(t) if t.app == app => {
                    st.totps.remove(*id);
                    return (204, None);
                }
                _ => Err(301),
            }
        }
        ("POST", ["totps", id, "validate"]) => match param(&params, "code") {
            None => Err(401),
            Some(code) => {
                let st = sh.state();
                match st.totps.get(*id) {
                    Some(t) if t.app == app => {
                        if totp::verify(&t.secret, code.trim(), now_ms.div_euclid(1000)) {
                            body.extend_from_slice(b"{}");
                            Ok(())
                        } else {
                            Err(306)
                        }
                    }
                    _ => Err(301),
                }
            }
        },
        _ => return not_found(body),
    };
    if let Err(code) = result {
        body.clear();
        latch_error(body, code, latch_message(code));
    }
    (200, Some(JSON))
}

fn totp_json(st: &State, id: &str, qr_mode: QrMode, body: &mut Vec<u8>) -> Result<(), u32> {
    let t = st.totps.get(id).ok_or(301u32)?;
    let label = t.common_name.as_deref().unwrap_or(&t.user_id);
    let uri = qr::otpauth_uri("Latch", label, &data_encoding::BASE32_NOPAD.encode(&t.secret));
    let qr = match qr_mode {
        QrMode::Uri => uri,
        QrMode::Png => qr::png_data_uri(&uri).unwrap_or(uri),
    };
    let v = json!({"data": {"totpId": id, "qr": qr, "userId": t.user_id, "commonName": t.common_name}});
    let _ = serde_json::to_writer(&mut *body, &v);
    Ok(())
}

fn status(
    sh: &Shared,
    app: &str,
    acc: &str,
    sp: &StatusPath<'_>,
    given_otp: Option<&str>,
    now_ms: i64,
    body: &mut Vec<u8>,
) -> Result<(), u32> {
    let mut st = sh.state();
    if st.accounts.get(acc).is_none_or(|a| a.app != app) {
        return Err(201);
    }
    if sp.instance.is_some() || sp.op.is_some_and(|op| !st.has_operation(app, op)) {
        return Err(301);
    }
    let a = st.account_mut(app, acc)?;
    let op = sp.op.unwrap_or("");
    let on = a.is_on(op);
    let token = if on && !sp.nootp && a.otp_required.contains(op) {
        let t = given_otp
            .filter(|t| !t.is_empty())
            .map_or_else(|| random_string(ALNUM, 6), str::to_string);
        a.last_otp.insert(op.to_string(), (t.clone(), now_ms));
        Some(t)
    } else {
        None
    };
    body.extend_from_slice(b"{\"data\":{\"operations\":{");
    json_str(body, sp.op.unwrap_or(app));
    body.extend_from_slice(if on {
        b":{\"status\":\"on\""
    } else {
        b":{\"status\":\"off\""
    });
    if let Some(t) = token {
        body.extend_from_slice(b",\"two_factor\":{\"token\":");
        json_str(body, &t);
        let _ = write!(body, ",\"generated\":{now_ms}}}");
    }
    body.extend_from_slice(b"}}}}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Control API

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CodeReq {
    code: Option<String>,
    user: Option<String>,
    app: Option<String>,
    ttl_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct PairReq {
    user: Option<String>,
    app: Option<String>,
    common_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatchReq {
    account: String,
    #[serde(default)]
    operation: Option<String>,
    status: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OtpReq {
    account: String,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    required: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FaultReq {
    mode: String,
    delay_ms: Option<u64>,
    size: Option<u64>,
    count: Option<u64>,
    chunked: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ErrorReq {
    code: u32,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondsReq {
    seconds: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeReq {
    mode: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationReq {
    operation: String,
    #[serde(default)]
    app: Option<String>,
}

type Ctl = Result<Value, (u16, String)>;

fn bad(e: impl std::fmt::Display) -> (u16, String) {
    (400, e.to_string())
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, (u16, String)> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad(format!("bad JSON body: {e}")))
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| sign::form_decode(v.as_bytes()))
        .filter(|v| !v.is_empty())
}

fn control(sh: &Shared, req: &Request, body: &mut Vec<u8>) -> u16 {
    let result = control_inner(sh, req);
    match result {
        Ok(v) => {
            let _ = serde_json::to_writer(&mut *body, &v);
            200
        }
        Err((status, msg)) => {
            let _ = serde_json::to_writer(&mut *body, &json!({ "error": msg }));
            status
        }
    }
}

fn control_inner(sh: &Shared, req: &Request) -> Ctl {
    let emu = |e: EmuError| bad(e.0);
    let on_off = |s: &str| match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(bad(format!("status must be \"on\" or \"off\", not {s:?}"))),
    };
    match (req.method(), req.path().trim_end_matches('/')) {
        ("POST", "/_emulator/codes") => {
            let r: CodeReq = parse_body(&req.body)?;
            let (code, user, account) = sh
                .add_code(
                    r.code.as_deref(),
                    r.user.as_deref(),
                    r.app.as_deref(),
                    r.ttl_secs.map(Duration::from_secs),
                )
                .map_err(emu)?;
            Ok(json!({ "code": code, "user": user, "account": account }))
        }
        ("POST", "/_emulator/pair") => {
            let r: PairReq = parse_body(&req.body)?;
            let account = sh
                .pair_user(r.user.as_deref(), r.app.as_deref(), r.common_name)
                .map_err(emu)?;
            Ok(json!({ "account": account }))
        }
        ("POST", "/_emulator/latch") => {
            let r: LatchReq = parse_body(&req.body)?;
            sh.set_latch(&r.account, r.operation.as_deref(), on_off(&r.status)?)
                .map_err(emu)?;
            Ok(json!({}))
        }
        ("POST", "/_emulator/otp") => {
            let r: OtpReq = parse_body(&req.body)?;
            sh.require_otp(&r.account, r.operation.as_deref(), r.required.unwrap_or(true))
                .map_err(emu)?;
            Ok(json!({}))
        }
        ("GET", "/_emulator/otp") => {
            let account = query_param(req, "account").ok_or_else(|| bad("account is required"))?;
            let op = query_param(req, "operation");
            Ok(match sh.last_otp(&account, op.as_deref()) {
                Some((token, generated)) => json!({ "token": token, "generated": generated }),
                None => json!({ "token": null }),
            })
        }
        ("POST", "/_emulator/fault") => {
            let r: FaultReq = parse_body(&req.body)?;
            let fault = Fault::from_mode(&r.mode, r.delay_ms, r.size, r.chunked)
                .ok_or_else(|| bad(format!("unknown fault mode {:?}", r.mode)))?;
            sh.set_fault(fault, r.count);
            Ok(json!({}))
        }
        ("POST", "/_emulator/error") => {
            let r: ErrorReq = parse_body(&req.body)?;
            sh.set_error(r.code, r.message.as_deref());
            Ok(json!({}))
        }
        ("POST", "/_emulator/clock_skew") => {
            let r: SecondsReq = parse_body(&req.body)?;
            sh.state().skew_secs = r.seconds;
            Ok(json!({}))
        }
        ("POST", "/_emulator/window") => {
            let r: SecondsReq = parse_body(&req.body)?;
            if r.seconds < 0 {
                return Err(bad("seconds must be >= 0"));
            }
            sh.window_secs.store(r.seconds, Ordering::Relaxed);
            Ok(json!({}))
        }
        ("POST", "/_emulator/qr") => {
            let r: ModeReq = parse_body(&req.body)?;
            let mode = QrMode::parse(&r.mode).ok_or_else(|| bad("mode must be \"png\" or \"uri\""))?;
            sh.state().qr_mode = mode;
            Ok(json!({}))
        }
        ("POST", "/_emulator/operation") => {
            let r: OperationReq = parse_body(&req.body)?;
            sh.add_operation(r.app.as_deref(), &r.operation).map_err(emu)?;
            Ok(json!({}))
        }
        ("GET", "/_emulator/state") => Ok(sh.state_json()),
        ("GET", "/_emulator/requests") => Ok(json!({ "count": sh.requests.load(Ordering::SeqCst) })),
        ("POST", "/_emulator/reset") => {
            sh.reset();
            Ok(json!({}))
        }
        ("GET", "/_emulator/totp") => {
            let id = query_param(req, "id");
            let user = query_param(req, "user");
            let t = sh
                .totp_info(id.as_deref(), user.as_deref())
                .ok_or((404, "no such TOTP".to_string()))?;
            Ok(json!({ "id": t.id, "user_id": t.user_id, "secret": t.secret_b32 }))
        }
        (_, path) if path.starts_with("/_emulator/pingid/") => {
            let now_ms = {
                let st = sh.state();
                sh.now_ms(&st)
            };
            let what = &path["/_emulator/pingid/".len()..];
            sh.pingid.control(req, what, now_ms)
        }
        _ => Err((404, format!("no control endpoint {} {}", req.method(), req.path()))),
    }
}
