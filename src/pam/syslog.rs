//! Log lines of the module: syslog facility LOG_AUTHPRIV, prefix `pam_lockserver(<service>:<phase>):`,
//! and the user and remote host on every line.
//!
//! Lines go as datagrams straight to the syslog socket (`/dev/log`, or `log_socket=` for containers and
//! tests) instead of through `syslog(3)`: no `openlog()` state of the host process is touched, no unsafe
//! code is needed, and the timestamp is left to the syslog daemon (RFC 3164 allows it).

use std::cell::RefCell;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;

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

/// Installs the logger (once per load of the module) and sets this thread's context.
pub fn begin(context: Context, debug: bool) {
    INSTALLED.get_or_init(|| {
        // Another logger may already be installed in a host that links us statically; then our
        // lines go there, which is still better than failing the login.
        let _ = log::set_logger(&LOGGER);
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

/// Escapes control characters (and quotes oddities) so a user name cannot forge log lines.
pub fn printable(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    if s.chars().all(|c| !c.is_control() && c != ' ') {
        return s.to_string();
    }
    format!("{:?}", s)
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
            let line: String = text.chars().map(|ch| if ch == '\n' { ' ' } else { ch }).collect();
            // Logging must never fail a login: a missing syslog daemon loses the line, nothing more.
            // Non-blocking: a stuck syslog daemon (full socket queue) loses lines, it never holds a login.
            if let Ok(sock) = UnixDatagram::unbound()
                && sock.set_nonblocking(true).is_ok()
            {
                let _ = sock.send_to(line.as_bytes(), &ctx.socket);
            }
        });
    }

    fn flush(&self) {}
}
