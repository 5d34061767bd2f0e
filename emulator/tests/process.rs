//! The binary (stdout line, ready file, cert file) and HTTPS.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lockserver_emulator::{DEFAULT_APP_ID, DEFAULT_SECRET, Emulator, Options, TlsMode, sign};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One signed GET over TLS (verifying the certificate for `host`), returning the raw response text.
fn tls_get(cfg: Arc<rustls::ClientConfig>, addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    let date = sign::format_date(common::now_secs());
    let sts = sign::string_to_sign("GET", &date, "", path, "");
    let auth = sign::authorization_header(DEFAULT_APP_ID, DEFAULT_SECRET, &sts);
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from(host.to_string()).expect("name")).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nX-11Paths-Date: {date}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn https_self_signed_in_process() {
    let emu = Emulator::start(Options {
        tls: Some(TlsMode::SelfSigned),
        ..Options::default()
    })
    .expect("start");
    assert!(emu.url().starts_with("https://127.0.0.1:"));
    let cfg = tls_client(emu.ca_pem().expect("ca"));
    let code = emu.add_code(Some("TLS234")).expect("code");
    for host in ["localhost", "127.0.0.1"] {
        let resp = tls_get(cfg.clone(), emu.addr(), host, "/api/3.0/status/nobody");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.contains(r#"{"error":{"code":201,"message":"Account not paired"}}"#),
            "{resp}"
        );
    }
    let resp = tls_get(cfg, emu.addr(), "localhost", &format!("/api/3.0/pair/{code}"));
    assert!(resp.contains("\"accountId\""), "{resp}");
    // A plain-HTTP client gets nothing useful and the server survives.
    let mut s = TcpStream::connect(emu.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /_emulator/state HTTP/1.1\r\n\r\n").expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

#[test]
fn binary_prints_url_and_writes_files() {
    let dir = std::env::temp_dir().join(format!("lockserver-emulator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ready = dir.join("ready");
    let cert = dir.join("ca.pem");
    let child = Command::new(env!("CARGO_BIN_EXE_lockserver-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-self-signed",
            "--operation",
            "Op1",
            "--code",
            "BIN234",
        ])
        .arg("--cert-out")
        .arg(&cert)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut child = Kill(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let url = line
        .trim_end()
        .strip_prefix("listening ")
        .expect("listening line")
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(std::fs::read_to_string(&ready).expect("ready").trim_end(), url);
    let ca = std::fs::read_to_string(&cert).expect("cert");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().expect("addr");
    let resp = tls_get(tls_client(&ca), addr, "localhost", "/api/3.0/pair/BIN234");
    assert!(resp.contains("\"accountId\""), "{resp}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn binary_plain_http_and_bad_flags() {
    let child = Command::new(env!("CARGO_BIN_EXE_lockserver-emulator"))
        .args([
            "--app-id",
            "MyAppID",
            "--secret",
            "MySecretKey",
            "--app",
            "Other:OtherSecret:OpA,OpB",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = Kill(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let url = line
        .trim_end()
        .strip_prefix("listening http://")
        .expect("line")
        .to_string();
    let mut c = common::Conn::open(url.parse().expect("addr"));
    let st = c.control("GET", "/_emulator/state", serde_json::Value::Null).json();
    assert_eq!(st["apps"], serde_json::json!(["MyAppID", "Other"]));
    assert_eq!(st["operations"]["Other"], serde_json::json!(["OpA", "OpB"]));
    let r = c.latch(("MyAppID", "MySecretKey"), "GET", "/api/3.0/status/x", &[]);
    assert_eq!(r.error_code(), Some(201));

    let out = Command::new(env!("CARGO_BIN_EXE_lockserver-emulator"))
        .args(["--app", "nocolon"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ID:SECRET"));
    let out = Command::new(env!("CARGO_BIN_EXE_lockserver-emulator"))
        .args(["--listen", "256.0.0.1:1"])
        .output()
        .expect("run");
    assert!(!out.status.success());
}
