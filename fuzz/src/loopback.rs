//! A loopback HTTP server that answers each connection with the next of the answers a body queued
//! (raw bytes, written as they are), then closes it. With no answer left it closes without one.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the server answers next, in order.
static ANSWERS: Mutex<VecDeque<Vec<u8>>> = Mutex::new(VecDeque::new());
/// Requests answered so far (the replay checks that the HTTP targets reached the server).
static SERVED: AtomicUsize = AtomicUsize::new(0);
/// Held by one body at a time (the replay test runs targets on several threads).
static TURN: Mutex<()> = Mutex::new(());

static PORT: LazyLock<u16> = LazyLock::new(|| {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            serve(stream);
        }
    });
    port
});

/// The server's port (started on first use).
pub fn port() -> u16 {
    *PORT
}

/// How many requests the server has read to the end.
pub fn served() -> usize {
    SERVED.load(Ordering::Relaxed)
}

/// Queues `answers` for the next connections; the guard keeps other bodies out until it is dropped.
pub fn answer_with(answers: Vec<Vec<u8>>) -> MutexGuard<'static, ()> {
    let _ = port();
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let mut queue = ANSWERS.lock().unwrap_or_else(|p| p.into_inner());
    *queue = answers.into();
    turn
}

/// A call given `deadline` must have returned by it (one second of slack for a loaded machine and
/// the sanitizers): a client that waits past its deadline is a finding.
pub fn assert_within(started: Instant, deadline: Instant) {
    let late = Instant::now().saturating_duration_since(deadline);
    assert!(
        late < Duration::from_secs(1),
        "the call returned {late:?} after its deadline ({:?} budget)",
        deadline - started
    );
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    // Read the whole request (head, then a Content-Length body) so that closing does not reset it.
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    };
    let length = content_length(&request[..head_end]);
    while request.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let answer = ANSWERS.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    if let Some(answer) = answer {
        let _ = stream.write_all(&answer);
    }
    SERVED.fetch_add(1, Ordering::Relaxed);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}
