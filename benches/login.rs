//! The benchmark (DESIGN §10): prints figures, asserts nothing. `cargo bench --bench login`.
//!
//! - one login through the real libpam (pam_start_confdir + authenticate + acct_mgmt + pam_end, the
//!   module loading its config, opening the store, asking the loopback emulator) against one bare HTTP
//!   request to the same emulator on a new connection: the difference is the login's own work;
//! - C API status checks per second on a warm handle (1 and 4 threads) and with a new connection per check;
//! - local TOTP verifications per second.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::pam_driver;

use lockserver::capi::{
    lockserver as Handle, lockserver_access, lockserver_close, lockserver_open_config_str, lockserver_result,
    lockserver_status,
};
use lockserver::config::TotpAlgorithm;
use lockserver::store::{self, OpenMode, Pairing};
use lockserver::totp;
use lockserver_emulator::{Emulator, Options};
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

const LOGINS: usize = 400;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn report(name: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name:<44} p50 {p50:>8.0} µs   p90 {:>8.0} µs   p99 {:>8.0} µs   (n={})",
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples.len()
    );
    p50
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One GET on a new connection, reading the whole answer: what a login's service call costs at least.
fn bare_request(addr: &str, path: &str) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let emu = Emulator::start(Options::default()).expect("emulator");
    let account = emu.pair("bench").expect("pair");
    let db = tmp.path().join("lockserver.db");
    let config = format!(
        "service = \"latch\"\ntimeout_ms = 3000\nstore = \"sqlite://{}\"\n[latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\n",
        db.display(),
        emu.app_id(),
        emu.secret(),
        emu.url()
    );
    let config_path = tmp.path().join("lockserver.conf");
    std::fs::write(&config_path, &config).expect("config");
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let store = store::open(&format!("sqlite://{}", db.display()), OpenMode::Create).expect("store");
    store
        .insert(
            &Pairing {
                user: "bench".into(),
                account_id: account.clone(),
                enabled: true,
                totp_enabled: false,
                totp_id: None,
            },
            store::default_deadline(),
        )
        .expect("insert");
    drop(store);

    println!(
        "lockserver benchmark (loopback emulator at {}, plain HTTP)\n",
        emu.url()
    );

    // 1. Logins through the real libpam.
    let confdir = tmp.path().join("pam.d");
    std::fs::create_dir_all(&confdir).expect("confdir");
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let module = common::module_path();
    let args = vec![
        format!("config={}", config_path.display()),
        format!("trust_owner={uid}"),
    ];
    pam_driver::write_service(&confdir, "bench", module, &args);
    let peak_before = peak_rss_kib();
    let mut logins = Vec::with_capacity(LOGINS);
    for i in 0..LOGINS + 20 {
        let start = Instant::now();
        let mut session = pam_driver::PamSession::start(&confdir, "bench", "bench");
        session.set_rhost("192.0.2.1");
        let (auth, _) = session.authenticate(&[]);
        let (account_rc, _) = session.acct_mgmt();
        drop(session);
        let took = start.elapsed();
        assert_eq!((auth, account_rc), (0, 0), "the benchmark login must succeed");
        if i >= 20 {
            logins.push(took);
        }
    }
    let addr = emu.url().trim_start_matches("http://").to_string();
    let path = format!("/api/3.0/status/{account}");
    let bare: Vec<Duration> = (0..LOGINS).map(|_| bare_request(&addr, &path)).collect();
    let peak_after = peak_rss_kib();
    let login_p50 = report("login via libpam (auth + account)", logins);
    let bare_p50 = report("bare HTTP request, new connection", bare);
    println!(
        "{:<44} p50 {:>8.0} µs   (budget: well under 1000 µs)\n",
        "=> the login's own work",
        (login_p50 - bare_p50).max(0.0)
    );
    println!(
        "peak RSS growth over {} logins: {} KiB (budget: at most 5 MB; includes the in-process emulator)\n",
        LOGINS + 20,
        peak_after.saturating_sub(peak_before)
    );

    // 2. The C API.
    let c_config = CString::new(config.clone()).expect("config has no NUL");
    let c_account = CString::new(account.clone()).expect("account has no NUL");
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
    let run_for = Duration::from_secs(2);
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
        "C API status checks, new handle and connection each: {:>6.0} /s\n",
        n as f64 / start.elapsed().as_secs_f64()
    );

    // 3. Local TOTP.
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
    while start.elapsed() < Duration::from_secs(1) {
        assert!(totp::verify(&secret, &code, now, &params, None).is_some());
        n += 1;
    }
    println!(
        "local TOTP verifications (SHA1, ±1 step):        {:>9.0} /s",
        n as f64 / start.elapsed().as_secs_f64()
    );
}
