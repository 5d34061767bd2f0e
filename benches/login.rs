//! The benchmark (DESIGN §10, issue #12): prints figures, asserts nothing. `cargo bench --bench login`
//! (`-- --quick`: a few iterations, to check that it runs; CI does that). `LOCKSERVER_BENCH_MODULE=PATH`
//! measures that build of the module instead of this tree's (a before/after comparison).
//!
//! A *cold* login is what sshd pays for each connection: a fresh process (`benches/pam_login.c`, built
//! here with `cc`) that loads libpam, reads a PAM service file with `pam_start_confdir`, loads the
//! stack's modules and runs auth + account once. Each figure is a median over fresh processes (A B A B
//! …, so a drift of the machine's speed hits every case alike) and is printed with its floor, the ratio
//! and the target:
//!
//! - cold login over HTTP vs a cold `pam_permit` stack + one bare signed Latch request on a new
//!   connection (the floor client: `std::net::TcpStream`, the request signed with HMAC-SHA1, the
//!   answer read by its Content-Length; nothing else);
//! - cold login over HTTPS (system CA bundle + `ca_file`) vs a cold `pam_permit` stack + one bare
//!   HTTPS request by a minimal rustls client that loads the same trust store (both files, every
//!   certificate, into a `RootCertStore`) for each request;
//! - warm login (one process, many logins) vs the bare request, and vs a warm `pam_permit` login (what
//!   libpam itself costs per transaction: reading the service file, audit messages) + the bare request;
//! - a PingID login over HTTP, the emulator's phone approving at once (one signed POST that starts the
//!   authentication and answers APPROVED, its signature verified), cold and warm, against the floors
//!   of the Latch HTTP login (one bare signed request);
//! - `enabled = false`, and an unpaired user with `unpaired = "ignore"`, vs a cold `pam_permit` stack;
//! - the module stripped, and what it needs at run time;
//! - peak RSS of 200 logins in one process, minus that of 200 `pam_permit` logins;
//! - with valgrind installed, the instruction counts (callgrind) of one cold HTTPS login by phase: the
//!   repeatable figures, whatever else the machine is doing;
//! - the C API's status checks per second on a warm handle, and local TOTP verifications per second.
//! - a login with each store (SQLite, PostgreSQL, PostgreSQL through PgBouncer in transaction pooling),
//!   cold and warm. PostgreSQL figures need the test cluster (`LOCKSERVER_TEST_PG_URL`, see
//!   scripts/test.sh); without it they are skipped with a line.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use lockserver::capi::{
    lockserver as Handle, lockserver_access, lockserver_close, lockserver_open_config_str, lockserver_result,
    lockserver_status,
};
use lockserver::config::TotpAlgorithm;
use lockserver::store::{self, OpenMode, Pairing, PairingStore};
use lockserver::totp;
use lockserver_emulator::{Emulator, Options, Plan as PhonePlan, TlsMode, sign};
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many of each thing one run measures.
struct Plan {
    cold_runs: usize,
    warm_logins: usize,
    rss_logins: usize,
    bare_requests: usize,
    capi_secs: f64,
}

const FULL: Plan = Plan {
    cold_runs: 41,
    warm_logins: 400,
    rss_logins: 200,
    bare_requests: 400,
    capi_secs: 2.0,
};

const QUICK: Plan = Plan {
    cold_runs: 3,
    warm_logins: 20,
    rss_logins: 20,
    bare_requests: 20,
    capi_secs: 0.2,
};

/// The user paired at both emulators, and one paired nowhere.
const USER: &str = "bench";
const STRANGER: &str = "stranger";

fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One line: figure, floor, ratio, target.
fn line(name: &str, figure: f64, floor: f64, unit: &str, target: f64) {
    let ratio = figure / floor;
    let verdict = if ratio <= target { "met" } else { "NOT met" };
    println!(
        "{name:<46} {figure:>9.0} {unit}  floor {floor:>9.0} {unit}  ratio {ratio:>5.2}  target ≤ {target:<4} {verdict}"
    );
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Pairs [`USER`] with `account` in `store` (the benchmark's every store starts with that one row).
fn pair_bench_user(store: &dyn PairingStore, account: &str) {
    let pairing = Pairing {
        user: USER.into(),
        account_id: account.into(),
        enabled: true,
        totp_enabled: false,
        totp_id: None,
    };
    store.insert(&pairing, store::default_deadline()).expect("insert");
}

/// A signed Latch status request, as the wire carries it.
fn signed_request(emu: &Emulator, account: &str) -> String {
    let path = format!("/api/3.0/status/{account}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let date = sign::format_date(now as i64);
    let auth = sign::authorization_header(
        emu.app_id(),
        emu.secret(),
        &sign::string_to_sign("GET", &date, "", &path, ""),
    );
    let host = emu.addr();
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nX-11Paths-Date: {date}\r\n\r\n")
}

/// Reads one HTTP answer (head, then a body of its Content-Length); returns its status line.
fn read_answer(stream: &mut impl Read) -> String {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.lines().next().unwrap_or_default().to_string();
            }
        }
        let n = stream.read(&mut chunk).expect("read the answer");
        assert!(n > 0, "the emulator closed mid-answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The HTTP floor: one signed request on a new connection.
fn bare_http(emu: &Emulator, account: &str) -> f64 {
    let start = Instant::now();
    let mut s = TcpStream::connect(emu.addr()).expect("connect");
    s.write_all(signed_request(emu, account).as_bytes()).expect("send");
    let status = read_answer(&mut s);
    let took = start.elapsed();
    assert!(status.contains(" 200"), "bare request: {status}");
    took.as_secs_f64() * 1e6
}

/// The trust store a cold HTTPS client builds: every certificate of the system bundle and of `ca_file`.
fn trust_store(ca_file: &Path) -> rustls::RootCertStore {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for file in [Path::new(SYSTEM_BUNDLE), ca_file] {
        if let Ok(iter) = CertificateDer::pem_file_iter(file) {
            roots.add_parsable_certificates(iter.flatten());
        }
    }
    roots
}

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The HTTPS floor: the trust store loaded, a client config built, one signed request on a new connection.
fn bare_https(emu: &Emulator, account: &str, ca_file: &Path) -> f64 {
    let start = Instant::now();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(trust_store(ca_file))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(emu.addr().ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let tcp = TcpStream::connect(emu.addr()).expect("connect");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(signed_request(emu, account).as_bytes()).expect("send");
    let status = read_answer(&mut tls);
    let took = start.elapsed();
    assert!(status.contains(" 200"), "bare HTTPS request: {status}");
    took.as_secs_f64() * 1e6
}

/// What one run of the PAM application printed.
struct Run {
    wall_us: f64,
    logins_us: Vec<f64>,
    peak_rss_kib: u64,
    minor_faults: f64,
}

struct Driver {
    exe: PathBuf,
    confdir: PathBuf,
}

impl Driver {
    fn build(dir: &Path) -> Driver {
        let exe = dir.join("pam_login");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pam_login.c");
        let status = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&exe)
            .arg(&source)
            .arg("-lpam")
            .status()
            .expect("run cc (build-essential and libpam0g-dev)");
        assert!(status.success(), "cc failed on {}", source.display());
        let confdir = dir.join("pam.d");
        std::fs::create_dir_all(&confdir).expect("PAM dir");
        Driver { exe, confdir }
    }

    fn command(&self, service: &str, user: &str, count: usize) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(&self.confdir).args([service, user]).arg(count.to_string());
        cmd.env_clear();
        cmd
    }

    fn run(&self, service: &str, user: &str, count: usize) -> Run {
        let mut cmd = self.command(service, user, count);
        let start = Instant::now();
        let out = cmd.output().expect("run the PAM application");
        let wall_us = start.elapsed().as_secs_f64() * 1e6;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let failed = text.lines().find(|l| l.starts_with("login") && !l.ends_with(" 0 0"));
            panic!("{service}/{user}: a login did not succeed: {failed:?}");
        }
        let mut run = Run {
            wall_us,
            logins_us: Vec::new(),
            peak_rss_kib: 0,
            minor_faults: f64::NAN,
        };
        for l in text.lines() {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                (Some("login"), Some(us)) => run.logins_us.push(us.parse().unwrap_or(f64::NAN)),
                (Some("peak_rss_kib"), Some(kib)) => run.peak_rss_kib = kib.parse().unwrap_or(0),
                (Some("minor_faults"), Some(n)) => run.minor_faults = n.parse().unwrap_or(f64::NAN),
                _ => {}
            }
        }
        run
    }
}

/// A lockserver stack: the module decides, or steps aside to pam_permit.
fn lock_stack(module: &Path, args: &str) -> String {
    let m = module.display();
    format!(
        "auth [success=done ignore=ignore default=die] {m} {args}\nauth required pam_permit.so\n\
         account [success=done ignore=ignore default=die] {m} {args}\naccount required pam_permit.so\n"
    )
}

/// The stripped size of `module` and the libraries it needs.
fn module_facts(module: &Path, dir: &Path) -> (u64, Vec<String>) {
    let stripped = dir.join("stripped.so");
    let ok = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(module)
        .status()
        .is_ok_and(|s| s.success());
    let size = if ok {
        std::fs::metadata(&stripped).map_or(0, |m| m.len())
    } else {
        0
    };
    let needed = Command::new("readelf")
        .args(["-d", "-W"])
        .arg(module)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("(NEEDED)"))
                .filter_map(|l| l.split('[').nth(1).map(|s| s.trim_end_matches(']').to_string()))
                .collect()
        })
        .unwrap_or_default();
    (size, needed)
}

/// The phases of a login callgrind counts: each phase is the largest inclusive count among functions whose
/// name contains one of its patterns (a function LTO inlined shows in its caller).
const PHASES: &[(&str, &[&str])] = &[
    ("whole process", &["PROGRAM TOTALS"]),
    ("  main (all below; the rest: exec, ld.so, libc)", &["???:main "]),
    ("  pam_start (libpam reads the service file)", &["pam_start_confdir"]),
    ("  modules loaded (dlopen: map + relocate)", &["dl_open_worker_begin"]),
    ("    of which relocation", &["_dl_relocate_object"]),
    ("    of which constructors (Rust runtime)", &["call_init"]),
    ("  one auth hook (all below)", &["pam_sm_authenticate"]),
    (
        "    config read and parse (+ dictionary)",
        &["lockserver::config::Config::load", "lockserver::pam::cache::load"],
    ),
    ("    store open", &["lockserver::store::open_at", "CachedStore::open"]),
    (
        "    store query",
        &["SqliteStore as lockserver::store::PairingStore>::get"],
    ),
    (
        "    service client (TLS setup, trust store)",
        &["lockserver::service::from_config"],
    ),
    (
        "      of which trust store (PEM read)",
        &[
            "lockserver::service::http::pem_certificates",
            "lockserver::service::http::trusted_certificates",
        ],
    ),
    (
        "    connect + request + TLS + parse",
        &["LatchClient as lockserver::service::LockService>::status"],
    ),
    (
        "      of which certificate check (the anchors it names)",
        &["ServerCertVerifier>::verify_server_cert"],
    ),
    (
        "      of which TLS handshake",
        &["rustls::conn::ConnectionCommon<Data>::complete_io"],
    ),
    ("    log lines", &["SyslogLogger as log::Log>::log"]),
    ("  account hook (already checked)", &["pam_sm_acct_mgmt"]),
    ("  modules unloaded (pam_end)", &["_dl_close_worker", "_dl_fini"]),
];

/// Callgrind's inclusive instruction counts of `logins` logins in one process: the whole process's, and
/// each of [`PHASES`] (`None`: not seen). `None` when valgrind is missing or fails.
fn callgrind(driver: &Driver, service: &str, logins: usize, dir: &Path) -> Option<(u64, Vec<Option<u64>>)> {
    let out_file = dir.join(format!("callgrind.{service}.{logins}.out"));
    let cmd = driver.command(service, USER, logins);
    let mut vg = Command::new("valgrind");
    vg.args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    if !vg.output().map(|o| o.status.success()).unwrap_or(false) {
        return None;
    }
    let annotated = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(&out_file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&annotated.stdout);
    let count = |l: &str| -> Option<u64> {
        let first = l.split_whitespace().next()?;
        first.replace(',', "").parse().ok()
    };
    let best = |patterns: &[&str]| {
        text.lines()
            .filter(|l| patterns.iter().any(|p| l.contains(p)))
            .filter_map(count)
            .max()
    };
    let total = best(&["PROGRAM TOTALS"]).unwrap_or(0);
    Some((total, PHASES.iter().map(|(_, patterns)| best(patterns)).collect()))
}

/// The instruction counts of one cold login by phase, and with `warm` the cost of one more login in the
/// same process: the counts of 21 logins minus those of 1, divided by 20 (no first-login work in it).
fn phases(driver: &Driver, service: &str, dir: &Path, warm: bool) {
    let Some((total, cold)) = callgrind(driver, service, 1, dir) else {
        println!("(valgrind not installed or it failed: no instruction counts)");
        return;
    };
    println!("instructions of one cold login ({service}), callgrind, inclusive:");
    for ((name, _), n) in PHASES.iter().zip(&cold) {
        match n {
            Some(n) => println!(
                "  {name:<46} {:>12} Ir  {:>5.1} %",
                n,
                100.0 * *n as f64 / total.max(1) as f64
            ),
            None => println!("  {name:<46} {:>12}", "(not seen)"),
        }
    }
    println!();
    if !warm {
        return;
    }
    let Some((_, many)) = callgrind(driver, service, 21, dir) else {
        return;
    };
    println!("instructions of one warm login ({service}: 21 logins minus 1, / 20), callgrind, inclusive:");
    for (((name, _), one), all) in PHASES.iter().zip(&cold).zip(&many) {
        match (one, all) {
            (Some(one), Some(all)) => println!("  {name:<46} {:>12} Ir", all.saturating_sub(*one) / 20),
            (None, Some(all)) => println!("  {name:<46} {:>12} Ir", all / 20),
            _ => println!("  {name:<46} {:>12}", "(not seen)"),
        }
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let plan = if args.iter().any(|a| a == "--quick") || std::env::var_os("LOCKSERVER_BENCH_QUICK").is_some() {
        QUICK
    } else {
        FULL
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let uid = common::current_uid();
    // LOCKSERVER_BENCH_MODULE: measure another build of the module (e.g. a copy of an older one).
    // The release settings with the symbols kept (profile `bench`): callgrind names the phases.
    let module = match std::env::var_os("LOCKSERVER_BENCH_MODULE") {
        Some(p) => PathBuf::from(p),
        None => common::build_module("bench"),
    };
    let module = module.as_path();
    let driver = Driver::build(dir);

    // A syslog socket that swallows the lines, as a syslog daemon would.
    let log_socket = dir.join("log.sock");
    let log = UnixDatagram::bind(&log_socket).expect("log socket");
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while log.recv(&mut buf).is_ok() {}
    });

    let http = Emulator::start(Options::default()).expect("emulator");
    let https = Emulator::start(Options {
        tls: Some(TlsMode::SelfSigned),
        ..Options::default()
    })
    .expect("HTTPS emulator");
    let ca_file = dir.join("ca.pem");
    write_private(&ca_file, https.ca_pem().expect("the emulator's CA"));

    let mut configs = Vec::new();
    for (name, emu, extra_top, extra_latch) in [
        ("http", &http, "", String::new()),
        ("https", &https, "", format!("ca_file = \"{}\"\n", ca_file.display())),
        ("off", &http, "enabled = false\n", String::new()),
    ] {
        // The same emulator serves two configs: pair once.
        let account = emu.pair(USER).unwrap_or_else(|_| emu.account_id_for(USER));
        let db = dir.join(format!("{name}.db"));
        let store = store::open(&format!("sqlite://{}", db.display()), OpenMode::Create).expect("store");
        pair_bench_user(store.as_ref(), &account);
        drop(store);
        let config = format!(
            "service = \"latch\"\n{extra_top}unpaired = \"ignore\"\ntimeout_ms = 3000\nstore = \"sqlite://{}\"\n\
             [latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\n{extra_latch}",
            db.display(),
            emu.app_id(),
            emu.secret(),
            emu.url()
        );
        let path = dir.join(format!("{name}.conf"));
        write_private(&path, &config);
        let module_args = format!(
            "config={} trust_owner={uid} log_socket={}",
            path.display(),
            log_socket.display()
        );
        std::fs::write(
            driver.confdir.join(format!("lock-{name}")),
            lock_stack(module, &module_args),
        )
        .expect("PAM service");
        configs.push((name, config, account));
    }
    pingid_service(
        &driver,
        module,
        &http,
        dir,
        &format!("trust_owner={uid} log_socket={}", log_socket.display()),
    );
    std::fs::write(
        driver.confdir.join("permit"),
        "auth required pam_permit.so\naccount required pam_permit.so\n",
    )
    .expect("PAM service");
    // `--hold SECS`: keep the setup (emulators, PAM directory, driver) up for a look by hand.
    if let Some(secs) = args.iter().position(|a| a == "--hold").and_then(|i| args.get(i + 1)) {
        println!(
            "holding {secs} s: {} {} lock-https {USER} 1",
            driver.exe.display(),
            driver.confdir.display()
        );
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
        return;
    }
    let http_account = &configs[0].2;
    let https_account = &configs[1].2;

    println!(
        "lockserver benchmark: module {}, emulators {} and {}, {} runs per cold figure{}\n",
        module.display(),
        http.url(),
        https.url(),
        plan.cold_runs,
        if plan.cold_runs < FULL.cold_runs {
            " (quick mode: figures not meaningful)"
        } else {
            ""
        }
    );

    // Cold logins, every case in turn so that the machine's drift hits them alike.
    let cases: [(&str, &str); 6] = [
        ("permit", USER),
        ("lock-http", USER),
        ("lock-https", USER),
        ("lock-off", USER),
        ("lock-http", STRANGER),
        ("lock-pingid", USER),
    ];
    let mut cold: [Vec<f64>; 6] = Default::default();
    let mut faults: [Vec<f64>; 6] = Default::default();
    let mut bare_h = Vec::new();
    let mut bare_s = Vec::new();
    for _ in 0..2 {
        for (service, user) in cases {
            driver.run(service, user, 1);
        }
    }
    for _ in 0..plan.cold_runs {
        for (i, (service, user)) in cases.iter().enumerate() {
            let run = driver.run(service, user, 1);
            cold[i].push(run.wall_us);
            faults[i].push(run.minor_faults);
        }
        bare_h.push(bare_http(&http, http_account));
        bare_s.push(bare_https(&https, https_account, &ca_file));
    }
    for _ in plan.cold_runs..plan.bare_requests {
        bare_h.push(bare_http(&http, http_account));
    }
    let [permit, lock_http, lock_https, lock_off, lock_unpaired, lock_pingid] = cold.map(|mut v| median(&mut v));
    let faults = faults.map(|mut v| median(&mut v));
    let bare_h = median(&mut bare_h);
    let bare_s = median(&mut bare_s);

    // Warm: one process, many logins; the first few are not counted.
    let warm_median = |service: &str| {
        let run = driver.run(service, USER, plan.warm_logins + 10);
        median(&mut run.logins_us[10..].to_vec())
    };
    let warm_us = warm_median("lock-http");
    let warm_permit = warm_median("permit");
    let warm_pingid = warm_median("lock-pingid");

    let rss_lock = driver.run("lock-http", USER, plan.rss_logins).peak_rss_kib;
    let rss_permit = driver.run("permit", USER, plan.rss_logins).peak_rss_kib;
    let (size, needed) = module_facts(module, dir);

    println!("medians (µs of wall time){:>60}", "");
    println!("{:<46} {permit:>9.0} µs", "cold pam_permit stack");
    println!("{:<46} {bare_h:>9.0} µs", "bare signed HTTP request, new conn.");
    println!("{:<46} {bare_s:>9.0} µs", "bare HTTPS request (trust store loaded)");
    line("cold login, HTTP", lock_http, permit + bare_h, "µs", 1.3);
    line(
        "cold login, HTTPS (system store)",
        lock_https,
        permit + bare_s,
        "µs",
        1.3,
    );
    println!(
        "{:<46} {warm_permit:>9.0} µs",
        "warm pam_permit login (libpam's own work)"
    );
    line("warm login, HTTP", warm_us, bare_h, "µs", 1.3);
    line(
        "warm login, HTTP, vs warm pam_permit + bare",
        warm_us,
        warm_permit + bare_h,
        "µs",
        1.3,
    );
    // A push login is two requests (start, then one poll once `poll_interval_ms` has passed: the
    // service answers the start "in progress" even when the phone approves at once).
    let poll_us = PINGID_POLL_MS as f64 * 1000.0;
    line(
        "cold login, PingID (approved), vs 2 bare + poll",
        lock_pingid,
        permit + 2.0 * bare_h + poll_us,
        "µs",
        1.3,
    );
    line(
        "warm login, PingID (approved), vs 2 bare + poll",
        warm_pingid,
        2.0 * bare_h + poll_us,
        "µs",
        1.3,
    );
    line("cold, enabled = false", lock_off, permit, "µs", 1.5);
    line("cold, unpaired user (ignore)", lock_unpaired, permit, "µs", 1.5);
    println!(
        "{:<46} permit {:.0}, HTTP {:.0}, HTTPS {:.0}, enabled = false {:.0}, unpaired {:.0}, PingID {:.0}",
        "page faults of a cold process (median)", faults[0], faults[1], faults[2], faults[3], faults[4], faults[5]
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "{:<46} {:>9.2} MB  target ≤ 3 MB {}; needs {}",
        "module stripped",
        mib(size),
        if size <= 3 << 20 { "met" } else { "NOT met" },
        needed.join(", ")
    );
    let added = rss_lock.saturating_sub(rss_permit);
    println!(
        "{:<46} {:>9} KiB (peak {rss_lock} KiB vs pam_permit's {rss_permit} KiB)  target ≤ 3072 KiB {}\n",
        format!("peak RSS added over {} logins", plan.rss_logins),
        added,
        if added <= 3072 { "met" } else { "NOT met" }
    );

    for service in ["lock-https", "lock-http", "permit"] {
        phases(&driver, service, dir, service != "lock-https");
    }

    let store_args = format!(
        "config={{config}} trust_owner={uid} log_socket={}",
        log_socket.display()
    );
    stores(&driver, module, &store_args, dir, &configs[0].1, http_account, &plan);

    capi_and_totp(&configs[0].1, http_account, &plan);
}

/// The PingID config's `poll_interval_ms` (its smallest value): a push login waits one interval.
const PINGID_POLL_MS: u64 = 100;

/// The PAM service `lock-pingid`: the emulator's PingID side with `USER` paired (a user with a device, the
/// pairing in its own store) and the phone approving every push at once.
fn pingid_service(driver: &Driver, module: &Path, emu: &Emulator, dir: &Path, args: &str) {
    emu.pingid_add_user(USER).expect("PingID user");
    emu.pingid_add_device(USER, None).expect("PingID device");
    emu.pingid_plan(None, PhonePlan::new("approve"))
        .expect("the phone's plan");
    let db = dir.join("pingid.db");
    let store = store::open(&format!("sqlite://{}", db.display()), OpenMode::Create).expect("store");
    pair_bench_user(store.as_ref(), USER);
    drop(store);
    let p = emu.pingid_options();
    let config = format!(
        "service = \"pingid\"\nunpaired = \"ignore\"\ntimeout_ms = 3000\nstore = \"sqlite://{}\"\n[pingid]\n\
         account_id = \"{}\"\napplication_id = \"{}\"\ntoken = \"{}\"\napi_key = \"{}\"\nurl = \"{}/pingid\"\n\
         poll_interval_ms = {PINGID_POLL_MS}\n",
        db.display(),
        p.account_id,
        p.applications[0],
        p.token,
        p.api_key_b64,
        emu.url()
    );
    let path = dir.join("pingid.conf");
    write_private(&path, &config);
    std::fs::write(
        driver.confdir.join("lock-pingid"),
        lock_stack(module, &format!("config={} {args}", path.display())),
    )
    .expect("PAM service");
}

/// The C API on a warm handle, and local TOTP verification.
fn capi_and_totp(config: &str, account: &str, plan: &Plan) {
    let c_config = CString::new(config).expect("config has no NUL");
    let c_account = CString::new(account).expect("account has no NUL");
    let mut handle: *mut Handle = std::ptr::null_mut();
    // SAFETY: valid C strings and out-pointer.
    let rc = unsafe { lockserver_open_config_str(c_config.as_ptr(), &mut handle) };
    assert_eq!(rc, lockserver_result::LOCKSERVER_OK, "open");
    let check = |h: *const Handle| {
        let mut access = lockserver_access::LOCKSERVER_ACCESS_LOCKED;
        // SAFETY: a live handle, valid strings and out-pointer.
        let rc = unsafe {
            lockserver_status(
                h,
                c_account.as_ptr(),
                std::ptr::null(),
                false,
                &mut access,
                std::ptr::null_mut(),
            )
        };
        assert!(rc == lockserver_result::LOCKSERVER_OK && access == lockserver_access::LOCKSERVER_ACCESS_OPEN);
    };
    let run_for = Duration::from_secs_f64(plan.capi_secs);
    for threads in [1usize, 2, 4] {
        let h = handle as usize;
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0u64;
                        while start.elapsed() < run_for {
                            check(h as *const Handle);
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        println!(
            "C API status checks, warm handle, {threads} thread(s): {:>9.0} /s   (budget: ≥ 10000 /s on one thread)",
            total as f64 / start.elapsed().as_secs_f64()
        );
    }
    // SAFETY: the handle is live and not used after this.
    unsafe { lockserver_close(handle) };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_for {
        let mut fresh: *mut Handle = std::ptr::null_mut();
        // SAFETY: valid C string and out-pointer; the handle is closed right after one check.
        unsafe {
            assert_eq!(
                lockserver_open_config_str(c_config.as_ptr(), &mut fresh),
                lockserver_result::LOCKSERVER_OK
            );
            check(fresh);
            lockserver_close(fresh);
        }
        n += 1;
    }
    println!(
        "C API status checks, new handle and connection each: {:>6.0} /s",
        n as f64 / start.elapsed().as_secs_f64()
    );

    let secret = totp::decode_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").expect("secret");
    let params = totp::Params {
        algorithm: TotpAlgorithm::Sha1,
        digits: 6,
        step_secs: 30,
        window: 1,
    };
    let now = 1_700_000_000;
    let code = totp::code_at(&secret, now, &params);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_for {
        assert!(totp::verify(&secret, &code, now, &params, None).is_some());
        n += 1;
    }
    println!(
        "local TOTP verifications (SHA1, ±1 step):        {:>9.0} /s",
        n as f64 / start.elapsed().as_secs_f64()
    );
}

/// A login with each store, cold and warm: `config` (SQLite) as it is, then the same with PostgreSQL
/// direct and through PgBouncer when the test cluster is there.
fn stores(driver: &Driver, module: &Path, module_args: &str, dir: &Path, config: &str, account: &str, plan: &Plan) {
    let service_for = |name: &str, config_text: &str| {
        let path = dir.join(format!("{name}.conf"));
        write_private(&path, config_text);
        let args = module_args.replace("{config}", &path.display().to_string());
        std::fs::write(driver.confdir.join(name), lock_stack(module, &args)).expect("PAM service");
        name.to_string()
    };
    let mut cases = vec![("SQLite".to_string(), service_for("store-sqlite", config))];
    // Kept to the end: dropping it drops the database.
    let db = common::pg::database("bench");
    if let Some(db) = &db {
        let password_file = dir.join("db.password");
        write_private(&password_file, &format!("{}\n", db.password));
        let mut urls = vec![("PostgreSQL (loopback)", db.url.clone())];
        if let Ok(port) = std::env::var(common::pg::PGBOUNCER_PORT_ENV) {
            urls.push(("PostgreSQL via PgBouncer", db.url_at(&format!("127.0.0.1:{port}"))));
        }
        let pairing_store = store::open_at(
            &store::Location {
                url: &db.url,
                password: Some(&lockserver::config::Secret::new(db.password.clone())),
                ca_file: None,
            },
            OpenMode::Create,
            store::default_deadline(),
        )
        .expect("PostgreSQL store");
        pair_bench_user(pairing_store.as_ref(), account);
        drop(pairing_store);
        let sqlite_line = config.lines().find(|l| l.starts_with("store = ")).expect("store line");
        for (i, (name, url)) in urls.into_iter().enumerate() {
            let text = config.replace(
                sqlite_line,
                &format!(
                    "store = \"{url}\"\nstore_password_file = \"{}\"",
                    password_file.display()
                ),
            );
            cases.push((name.to_string(), service_for(&format!("store-pg{i}"), &text)));
        }
    } else {
        println!("(PostgreSQL figures skipped: no test cluster)");
    }
    println!("a login (auth + account) with each store, medians; cold = a fresh process loading the module:");
    for (name, service) in &cases {
        let mut cold: Vec<f64> = (0..plan.cold_runs)
            .map(|_| driver.run(service, USER, 1).wall_us)
            .collect();
        let run = driver.run(service, USER, plan.warm_logins + 10);
        let mut warm = run.logins_us[10..].to_vec();
        println!(
            "  {:<30} cold {:>9.0} µs   warm {:>9.0} µs",
            name,
            median(&mut cold),
            median(&mut warm)
        );
    }
    println!();
}
