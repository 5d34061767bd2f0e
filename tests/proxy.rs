//! The `proxy` setting through a real HTTP CONNECT proxy (Debian's tinyproxy, started here on a
//! loopback port with its own config file, stopped when the test ends): Latch over HTTPS through it, and
//! a proxy that refuses or hangs following `fail_mode` within the login's budget (through libpam).

#[allow(unused_imports)]
mod common;

use common::pam_driver::{PAM_AUTHINFO_UNAVAIL, PAM_SUCCESS};
use common::{Env, record_case, timed};
use lockserver::config::Config;
use lockserver::service::{self, Access};
use lockserver_emulator::{Emulator, Options, TlsMode};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tinyproxy on a free loopback port that allows CONNECT to `connect_port` only; killed on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(connect_port: u16) -> Option<Tinyproxy> {
        if Command::new("tinyproxy").arg("-v").output().is_err() {
            eprintln!("tinyproxy is not installed: proxy test skipped (scripts/test.sh installs it)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = common::listen_port();
        let conf = dir.path().join("tinyproxy.conf");
        // tinyproxy drops root for `User`; it logs to stderr in the foreground (-d).
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 10\nAllow 127.0.0.1\nConnectPort {connect_port}\n\
                 LogLevel Connect\nMaxClients 20\nUser nobody\nGroup nogroup\n"
            ),
        )
        .expect("write tinyproxy.conf");
        let log = dir.path().join("tinyproxy.log");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).expect("log"),
            ))
            .spawn()
            .expect("start tinyproxy");
        let proxy = Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        };
        let ready = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < ready, "tinyproxy did not listen: {}", proxy.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_config(emu: &Emulator, ca: &Path, proxy: &str) -> Config {
    let text = format!(
        "service = \"latch\"\n[latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\nca_file = \"{}\"\n\
         proxy = \"{proxy}\"\n",
        emu.app_id(),
        emu.secret(),
        emu.url(),
        ca.display()
    );
    Config::parse_str(&text).expect("config")
}

#[test]
fn latch_over_https_through_a_connect_proxy() {
    let emu = Emulator::start(Options {
        tls: Some(TlsMode::SelfSigned),
        ..Options::default()
    })
    .expect("emulator");
    let Some(proxy) = Tinyproxy::start(emu.addr().port()) else {
        return;
    };
    let account = emu.pair("alice").expect("pair");
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem().expect("the emulator's CA")).expect("write CA");
    let client =
        service::from_config(&https_config(&emu, &ca, &format!("http://127.0.0.1:{}", proxy.port))).expect("client");
    let deadline = || Instant::now() + Duration::from_secs(5);
    match client.status(&account, None, false, deadline()) {
        Ok(Access::Open) => {}
        other => panic!("expected open through the proxy, got {other:?}: {}", proxy.log_text()),
    }
    emu.set_latch(&account, None, false).expect("lock");
    assert!(matches!(
        client.status(&account, None, false, deadline()),
        Ok(Access::Locked)
    ));
    // The requests really went through the proxy, as a CONNECT tunnel to the emulator.
    let connect = format!("CONNECT 127.0.0.1:{}", emu.addr().port());
    assert!(proxy.log_text().contains(&connect), "{}", proxy.log_text());
    record_case(
        "proxy-https",
        "network",
        "Latch over HTTPS through an HTTP CONNECT proxy (tinyproxy)",
        "the answer is read through the tunnel; the certificate is still checked",
        "5 s",
    );
}

/// A proxy that is not there, or that takes the connection and never answers: no answer from the
/// service, so `fail_mode` decides, within `timeout_ms` + 500 ms.
fn proxy_fault(id: &str, what: &str, proxy_url: &str) {
    let mut env = Env::new();
    let svc = env.service("sshd", &[]);
    env.pair("alice");
    let budget = Duration::from_millis(env.conf.timeout_ms + 500);
    for (fail_mode, want) in [("secure", PAM_AUTHINFO_UNAVAIL), ("safe", PAM_SUCCESS)] {
        env.set_conf(|c| {
            c.fail_mode = fail_mode.into();
            c.latch_extra = format!("proxy = \"{proxy_url}\"\n");
        });
        env.logs.clear();
        let mut s = env.session(&svc, "alice");
        let ((rc, transcript), took) = timed(|| s.authenticate(&[]));
        assert_eq!(rc, want, "{what}, fail_mode {fail_mode}: {transcript:?}");
        assert!(took < budget, "{what}, fail_mode {fail_mode}: took {took:?}");
        env.logs
            .expect_line(&["user=alice", &format!("fail_mode = {fail_mode}")]);
    }
    record_case(
        id,
        "network",
        what,
        "no answer: `fail_mode` decides (secure: PAM_AUTHINFO_UNAVAIL, safe: PAM_SUCCESS), logged",
        "timeout_ms + 500 ms",
    );
}

#[test]
fn a_proxy_that_refuses_follows_fail_mode() {
    let port = common::dead_port();
    proxy_fault(
        "proxy-refuses",
        "the proxy refuses the connection (nothing listening)",
        &format!("http://127.0.0.1:{port}"),
    );
}

#[test]
fn a_proxy_that_hangs_follows_fail_mode() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and reads, never answers; the connections stay open until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = stream.set_nonblocking(true);
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    proxy_fault(
        "proxy-hangs",
        "the proxy accepts the connection and never answers",
        &format!("http://127.0.0.1:{port}"),
    );
}
