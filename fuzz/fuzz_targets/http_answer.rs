//! The HTTP answer framing: the input is sent, as it is, as a whole HTTP response by a server on a
//! loopback port, and the Latch client asks that server for a status. Status line, headers, chunked
//! or sized bodies, the size cap and the Latch reading after them must end in an answer or an error
//! (never a panic, never a wait past the deadline).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{LazyLock, Mutex};

/// What the server answers next.
static ANSWER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The server: reads a request head, writes the current answer, closes.
static PORT: LazyLock<u16> = LazyLock::new(|| {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer = ANSWER.lock().map(|a| a.clone()).unwrap_or_default();
            let _ = stream.write_all(&answer);
        }
    });
    port
});

static CLIENT: LazyLock<lockserver::service::SharedService> = LazyLock::new(|| {
    let text = format!(
        "service = \"latch\"\ntimeout_ms = 300\nstore = \"sqlite:///var/lib/lockserver/pairings.db\"\n\n\
         [latch]\napp_id = \"abcdefghijklmnopqrst\"\nsecret = \"{}\"\nurl = \"http://127.0.0.1:{}\"\n",
        "s".repeat(40),
        *PORT
    );
    let config = lockserver::config::Config::parse_str(&text).expect("config");
    lockserver::service::from_config(&config).expect("client")
});

fuzz_target!(|data: &[u8]| {
    let client = &*CLIENT;
    if let Ok(mut a) = ANSWER.lock() {
        *a = data.to_vec();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
    let _ = client.status(&"a".repeat(64), None, false, deadline);
});
