//! Keep-alive load against an in-process emulator: signed status requests from N threads for a few seconds.
//!
//! `cargo run --release -p lockserver-emulator --example loadgen -- [THREADS] [SECONDS]`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockserver_emulator::{Emulator, Options, sign};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).min(60);
    let emu = Emulator::start(Options::default()).expect("start");
    let acc = emu.pair("load").expect("pair");
    let path = format!("/api/3.0/status/{acc}");
    let (app, secret) = (emu.app_id().to_string(), emu.secret().to_string());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (path, app, secret, addr) = (path.clone(), app.clone(), secret.clone(), emu.addr());
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut r = BufReader::new(s);
                let mut n = 0u64;
                let mut line = String::new();
                let mut body = Vec::new();
                while Instant::now() < deadline {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
                    let date = sign::format_date(now);
                    let auth =
                        sign::authorization_header(&app, &secret, &sign::string_to_sign("GET", &date, "", &path, ""));
                    let req = format!(
                        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nX-11Paths-Date: {date}\r\n\r\n"
                    );
                    r.get_mut().write_all(req.as_bytes()).expect("write");
                    let mut len = 0usize;
                    loop {
                        line.clear();
                        r.read_line(&mut line).expect("read");
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("Content-Length: ") {
                            len = v.trim().parse().expect("len");
                        }
                    }
                    body.resize(len, 0);
                    r.read_exact(&mut body).expect("body");
                    assert!(body.starts_with(b"{\"data\""), "{}", String::from_utf8_lossy(&body));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().expect("join")).sum();
    println!(
        "{threads} thread(s), {secs} s: {total} requests, {:.0} req/s",
        total as f64 / secs as f64
    );
}
