//! Log lines of the module: syslog facility LOG_AUTHPRIV, prefix `pam_lockserver(<service>:<phase>):`,
//! and the user and remote host on every line.
//!
//! Lines go as datagrams straight to the syslog socket (`/dev/log`, or `log_socket=` for containers and
//! tests) instead of through `syslog(3)`: no `openlog()` state of the host process is touched, no unsafe
//! code is needed, and the timestamp is left to the syslog daemon (RFC 3164 allows it).
//!
//! An authentication module must not lose its audit trail, nor hold a login on a stuck daemon: a send
//! waits at most [`SEND_WAIT`] for room in the socket's queue (the kernel queues only
//! `net.unix.max_dgram_qlen` datagrams, 10 by default). What still could not be written is counted,
//! and the next line that gets through says how many were lost.

use crate::escape;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// The longest a line waits for room in the syslog socket's queue.
pub const SEND_WAIT: Duration = Duration::from_millis(100);
/// Longest line sent (in characters); the fields in it are capped too, this is the last bound.
const MAX_LINE_CHARS: usize = 2048;
/// Per syslog socket: lines that could not be written since the last one that was (present: the last
/// send failed). Per socket, so a host (or a test) with several never reports one socket's losses in
/// another. Held during a send, so this process's lines queue here, in order, and each send waits only
/// for its own slot in the socket's queue.
static SENDER: LazyLock<Mutex<Sender>> = LazyLock::new(|| Mutex::new(Sender::default()));

/// What [`send`] keeps between lines: the lost-line counts, and one unbound datagram socket for every
/// line of this process (a socket, a timeout and a close per line were most of a warm login's log cost).
#[derive(Default)]
struct Sender {
    lost: HashMap<PathBuf, u64>,
    socket: Option<Socket>,
}

/// The socket, the process that made it and its mode. A forked child makes its own: the file
/// description, and with it the blocking mode, would otherwise be shared with the parent.
struct Socket {
    sock: UnixDatagram,
    pid: u32,
    nonblocking: bool,
}

impl Sender {
    /// This process's socket in the mode asked for; `None` if no socket can be made.
    fn socket(&mut self, nonblocking: bool) -> Option<&UnixDatagram> {
        let pid = std::process::id();
        if self.socket.as_ref().is_some_and(|s| s.pid != pid) {
            // Inherited through fork: the parent still owns it. Never closed here.
            std::mem::forget(self.socket.take());
        }
        if self.socket.is_none() {
            let sock = UnixDatagram::unbound().ok()?;
            sock.set_write_timeout(Some(SEND_WAIT)).ok()?;
            self.socket = Some(Socket {
                sock,
                pid,
                nonblocking: false,
            });
        }
        let switched = match self.socket.as_mut() {
            Some(s) if s.nonblocking != nonblocking => {
                s.nonblocking = nonblocking;
                s.sock.set_nonblocking(nonblocking).is_ok()
            }
            _ => true,
        };
        if !switched {
            self.socket = None;
        }
        self.socket.as_ref().map(|s| &s.sock)
    }
}

const LOG_AUTHPRIV: u8 = 10 << 3;
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Who the lines of the current hook call are about.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Program name for the syslog tag (e.g. `sshd`).
    pub ident: String,
    /// `pam_lockserver(sshd:auth): user=alice rhost=192.0.2.1: `
    pub prefix: String,
    pub socket: PathBuf,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

struct SyslogLogger;

static LOGGER: SyslogLogger = SyslogLogger;
static INSTALLED: OnceLock<()> = OnceLock::new();
static LOGGER_INSTALLED: OnceLock<()> = OnceLock::new();

fn install_logger() {
    LOGGER_INSTALLED.get_or_init(|| {
        // Another logger may already be installed in a host that links us statically; then our
        // lines go there, which is still better than failing the login.
        let _ = log::set_logger(&LOGGER);
    });
}

/// Installs the logger (once per load of the module) and sets this thread's context.
pub fn begin(context: Context, debug: bool) {
    install_logger();
    INSTALLED.get_or_init(|| {
        // A panic is caught at the hook boundary (PAM_ABORT); its report goes to the log, never to
        // the host's stderr (sshd may forward that to the client). This module's std is its own, so
        // the host program's panic hook is not touched.
        std::panic::set_hook(Box::new(|info| log::error!("internal error, login aborted: {info}")));
    });
    log::set_max_level(if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
    CONTEXT.with(|c| *c.borrow_mut() = Some(context));
}

/// Clears this thread's context at the end of a hook call.
pub fn end() {
    CONTEXT.with(|c| *c.borrow_mut() = None);
}

/// Sets this thread's context for the lines of one C API login (`None`: no lines) and returns the one
/// it replaces, to be put back with another `swap` when the call ends: a login started from inside
/// another's conversation callback logs as itself, and the outer one's lines go on as before. Installs
/// the logger, not the panic hook (a C program's panic output stays where it was), and leaves the
/// level as a PAM hook in the same process set it (`info` if none did).
pub fn swap(context: Option<Context>) -> Option<Context> {
    install_logger();
    if log::max_level() == log::LevelFilter::Off {
        log::set_max_level(log::LevelFilter::Info);
    }
    CONTEXT.with(|c| std::mem::replace(&mut *c.borrow_mut(), context))
}

/// The part of a line that names the module, service, phase, user and remote host.
pub fn prefix(service: &str, phase: &str, user: &str, rhost: &str) -> String {
    format!(
        "pam_lockserver({}:{}): user={} rhost={}: ",
        printable(service),
        phase,
        printable(user),
        printable(rhost)
    )
}

/// A name for a log field, escaped and quoted unless plain ([`escape::field`]), so a user name cannot
/// forge a line or a field.
pub fn printable(s: &str) -> String {
    escape::field(s)
}

impl log::Log for SyslogLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // With `debug`, only our own details: the HTTP client's would flood syslog (and, dropped by a
        // busy socket, crowd out the lines that matter).
        metadata.level() <= log::max_level()
            && (metadata.level() <= log::Level::Info || metadata.target().starts_with("lockserver"))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let severity: u8 = match record.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        CONTEXT.with(|c| {
            let c = c.borrow();
            let Some(ctx) = c.as_ref() else { return };
            let text = format!(
                "<{}>{}[{}]: {}{}",
                LOG_AUTHPRIV | severity,
                ctx.ident,
                std::process::id(),
                ctx.prefix,
                record.args()
            );
            send(&text, &ctx.socket);
        });
    }

    fn flush(&self) {}
}

/// Sends one line (escaped, capped), waiting at most [`SEND_WAIT`] for room; counts it as lost if it
/// cannot go, and tells in it how many earlier lines were lost. Logging never fails a login.
fn send(text: &str, socket: &std::path::Path) {
    let mut sender = SENDER.lock().unwrap_or_else(PoisonError::into_inner);
    let lost = sender.lost.remove(socket).unwrap_or(0);
    let mut line = escape::for_log_line(text, MAX_LINE_CHARS);
    if lost > 0 {
        line.push_str(&format!(" ({lost} earlier log lines were lost)"));
    }
    // A blocking socket with a send timeout: the kernel waits for room in the receiver's queue
    // (SO_SNDTIMEO applies to a full datagram queue), and gives up after SEND_WAIT. While the line
    // before was lost (a daemon that stopped reading), no wait: a stuck daemon costs this process one
    // SEND_WAIT, not one per line.
    let sent = sender
        .socket(lost > 0)
        .is_some_and(|sock| sock.send_to(line.as_bytes(), socket).is_ok());
    if !sent {
        sender.lost.insert(socket.to_path_buf(), lost + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_cannot_be_written_are_counted_and_reported_in_the_next_one() {
        let dir = tempfile::Builder::new().tempdir_in("/tmp").expect("temp dir");
        let path = dir.path().join("log.sock");
        let daemon = UnixDatagram::bind(&path).expect("bind");
        // Nobody reads: the queue fills (net.unix.max_dgram_qlen datagrams), then lines are lost.
        let queue: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(512);
        let sent = queue + 20;
        for i in 0..sent {
            send(&format!("line {i}"), &path);
        }
        daemon.set_nonblocking(true).expect("non-blocking");
        let mut buf = vec![0u8; 8192];
        let mut received = 0;
        while daemon.recv(&mut buf).is_ok() {
            received += 1;
        }
        assert!(received < sent, "all {sent} lines fit in the queue");
        send("after the daemon caught up", &path);
        let n = daemon.recv(&mut buf).expect("the next line gets through");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(
            line,
            format!(
                "after the daemon caught up ({} earlier log lines were lost)",
                sent - received
            )
        );
        // Reported once: the count starts again.
        send("and then", &path);
        let n = daemon.recv(&mut buf).expect("line");
        assert_eq!(&buf[..n], b"and then");
    }

    #[test]
    fn every_line_of_a_process_goes_through_one_socket() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::Builder::new().tempdir_in("/tmp").expect("temp dir");
        let path = dir.path().join("log.sock");
        let daemon = UnixDatagram::bind(&path).expect("bind");
        let fd = || {
            let sender = SENDER.lock().unwrap_or_else(PoisonError::into_inner);
            sender.socket.as_ref().map(|s| (s.sock.as_raw_fd(), s.pid))
        };
        send("one", &path);
        let first = fd();
        send("two", &path);
        assert!(first.is_some(), "a socket is kept");
        assert_eq!(fd(), first, "the second line reuses it");
        let mut buf = vec![0u8; 64];
        for want in [&b"one"[..], b"two"] {
            let n = daemon.recv(&mut buf).expect("line");
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn a_line_is_escaped_and_capped() {
        let dir = tempfile::Builder::new().tempdir_in("/tmp").expect("temp dir");
        let path = dir.path().join("log.sock");
        let daemon = UnixDatagram::bind(&path).expect("bind");
        send(&format!("a\nb\u{202e}{}", "x".repeat(10_000)), &path);
        let mut buf = vec![0u8; 65536];
        let n = daemon.recv(&mut buf).expect("line");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(line.starts_with("a\\u{a}b\\u{202e}xxx"), "{line}");
        assert!(line.len() < MAX_LINE_CHARS + 40, "{}", line.len());
    }
}
