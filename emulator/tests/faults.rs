//! Every fault mode, observed from a raw TcpStream client.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Conn;
use lockserver_emulator::{Emulator, Fault, Options};
use serde_json::json;

fn start() -> (Emulator, String) {
    let emu = Emulator::start(Options::default()).expect("start");
    let acc = emu.pair("fault-user").expect("pair");
    (emu, acc)
}

fn status_path(acc: &str) -> String {
    format!("/api/3.0/status/{acc}")
}

fn set_fault(emu: &Emulator, body: serde_json::Value) {
    let mut c = Conn::open(emu.addr());
    assert_eq!(c.control("POST", "/_emulator/fault", body).status, 200);
}

/// Reads until EOF (or error), returning the bytes.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return v,
            Ok(n) => v.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn refuse_closes_without_answer() {
    let (emu, acc) = start();
    set_fault(&emu, json!({"mode": "refuse"}));
    let mut c = Conn::open(emu.addr());
    let app = (emu.app_id(), emu.secret());
    let date = lockserver_emulator::sign::format_date(common::now_secs());
    let sts = lockserver_emulator::sign::string_to_sign("GET", &date, "", &status_path(&acc), "");
    let auth = lockserver_emulator::sign::authorization_header(app.0, app.1, &sts);
    c.send_raw(
        format!(
            "GET {} HTTP/1.1\r\nAuthorization: {auth}\r\nX-11Paths-Date: {date}\r\n\r\n",
            status_path(&acc)
        )
        .as_bytes(),
    );
    assert!(read_all(c.stream()).is_empty());
    // Control requests are not affected; the count includes the refused request.
    assert_eq!(emu.request_count(), 1);
    emu.set_fault(Fault::None);
    let mut c = Conn::open(emu.addr());
    assert_eq!(
        c.latch(app, "GET", &status_path(&acc), &[]).json()["data"]["operations"][app.0]["status"],
        "on"
    );
}

#[test]
fn hang_never_answers_until_the_cap() {
    let (emu, acc) = start();
    set_fault(&emu, json!({"mode": "hang", "delay_ms": 1500}));
    let mut s = TcpStream::connect(emu.addr()).expect("connect");
    s.write_all(format!("GET {} HTTP/1.1\r\n\r\n", status_path(&acc)).as_bytes())
        .expect("write");
    s.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
    let mut buf = [0u8; 64];
    let e = s.read(&mut buf).expect_err("no answer expected");
    assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e:?}");
    // Other connections still work meanwhile (control and, after clearing, the API).
    let mut c = Conn::open(emu.addr());
    assert_eq!(
        c.control("GET", "/_emulator/requests", serde_json::Value::Null).json()["count"],
        1
    );
    // After the cap the socket is closed, still without an answer.
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let t = Instant::now();
    assert!(read_all(&mut s).is_empty());
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn hang_ends_when_the_emulator_stops() {
    let (emu, acc) = start();
    emu.set_fault(Fault::Hang {
        max: Duration::from_secs(120),
    });
    let mut s = TcpStream::connect(emu.addr()).expect("connect");
    s.write_all(format!("GET {} HTTP/1.1\r\n\r\n", status_path(&acc)).as_bytes())
        .expect("write");
    std::thread::sleep(Duration::from_millis(200));
    drop(emu);
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let t = Instant::now();
    assert!(read_all(&mut s).is_empty());
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn http_500_and_garbage() {
    let (emu, acc) = start();
    let app = (emu.app_id(), emu.secret());
    set_fault(&emu, json!({"mode": "500"}));
    let mut c = Conn::open(emu.addr());
    let r = c.latch(app, "GET", &status_path(&acc), &[]);
    assert_eq!(r.status, 500);
    assert!(r.header("content-type").expect("ct").starts_with("text/html"));
    assert!(String::from_utf8_lossy(&r.body).contains("<html>"));

    set_fault(&emu, json!({"mode": "garbage"}));
    let r = c.latch(app, "GET", &status_path(&acc), &[]);
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
    assert!(!r.body.is_empty());
}

#[test]
fn slow_delays_and_trickle_drips() {
    let (emu, acc) = start();
    let app = (emu.app_id(), emu.secret());
    set_fault(&emu, json!({"mode": "slow", "delay_ms": 400}));
    let mut c = Conn::open(emu.addr());
    let t = Instant::now();
    let r = c.latch(app, "GET", &status_path(&acc), &[]);
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(r.json()["data"]["operations"][app.0]["status"], "on");

    set_fault(&emu, json!({"mode": "trickle", "delay_ms": 5}));
    let t = Instant::now();
    let r = c.latch(app, "GET", &status_path(&acc), &[]);
    let n = r.body.len() as u32;
    assert!(
        t.elapsed() >= Duration::from_millis(5) * n,
        "{n} bytes in {:?}",
        t.elapsed()
    );
    assert_eq!(r.json()["data"]["operations"][app.0]["status"], "on");
}

#[test]
fn close_sends_half_a_body() {
    let (emu, acc) = start();
    let app = (emu.app_id(), emu.secret());
    emu.set_fault(Fault::Close);
    let mut c = Conn::open(emu.addr());
    let date = lockserver_emulator::sign::format_date(common::now_secs());
    let sts = lockserver_emulator::sign::string_to_sign("GET", &date, "", &status_path(&acc), "");
    let auth = lockserver_emulator::sign::authorization_header(app.0, app.1, &sts);
    c.send_raw(
        format!(
            "GET {} HTTP/1.1\r\nAuthorization: {auth}\r\nX-11Paths-Date: {date}\r\n\r\n",
            status_path(&acc)
        )
        .as_bytes(),
    );
    let raw = read_all(c.stream());
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.1 200"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("content-length")
        .parse()
        .expect("n");
    assert!(!body.is_empty() && body.len() < len, "{} of {len}", body.len());
    assert!(body.starts_with("{\"data\""));
}

#[test]
fn huge_bodies_are_streamed() {
    let (emu, acc) = start();
    let app = (emu.app_id(), emu.secret());
    let size = 3 * 1024 * 1024 + 7;
    set_fault(&emu, json!({"mode": "huge", "size": size}));
    let mut c = Conn::open(emu.addr());
    let r = c.latch(app, "GET", &status_path(&acc), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(r.body.len(), size);
    assert!(r.body.starts_with(b"{\"data\":{\"operations\":{"));
    assert!(r.body.ends_with(b"\"}}}}"));
    // Complete and well-formed: it even parses.
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());

    set_fault(&emu, json!({"mode": "huge", "size": 200_000, "chunked": true}));
    let r = c.latch(app, "GET", &status_path(&acc), &[]);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.header("content-length").is_none());
    assert_eq!(r.body.len(), 200_000);

    // A client may hang up early: the emulator keeps serving.
    emu.set_fault(Fault::Huge {
        size: 64 << 20,
        chunked: false,
    });
    let mut s = TcpStream::connect(emu.addr()).expect("connect");
    s.write_all(format!("GET {} HTTP/1.1\r\n\r\n", status_path(&acc)).as_bytes())
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("Content-Length: 67108864"));
    drop(s);
    emu.set_fault(Fault::None);
    let mut c = Conn::open(emu.addr());
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 200);
}

#[test]
fn fault_count_limits_and_none_clears() {
    let (emu, acc) = start();
    let app = (emu.app_id(), emu.secret());
    set_fault(&emu, json!({"mode": "500", "count": 2}));
    let mut c = Conn::open(emu.addr());
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 500);
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 500);
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 200);
    emu.set_fault_times(Fault::Garbage, 1);
    assert!(serde_json::from_slice::<serde_json::Value>(&c.latch(app, "GET", &status_path(&acc), &[]).body).is_err());
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 200);
    set_fault(&emu, json!({"mode": "500"}));
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 500);
    set_fault(&emu, json!({"mode": "none"}));
    assert_eq!(c.latch(app, "GET", &status_path(&acc), &[]).status, 200);
    assert_eq!(emu.state_json()["fault"]["mode"], "none");
}
