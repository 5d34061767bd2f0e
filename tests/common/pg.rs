//! The PostgreSQL server of the tests: `scripts/test.sh` starts a private cluster and sets
//! `LOCKSERVER_TEST_PG_URL` (a URL without password to a database whose role may create databases) and
//! `LOCKSERVER_TEST_PG_PASSWORD_FILE`. Each test gets a database of its own, dropped after it. Without
//! the variables a PostgreSQL test fails under CI (CI=true) and is skipped locally with one line.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const PG_URL_ENV: &str = "LOCKSERVER_TEST_PG_URL";
pub const PG_PASSWORD_FILE_ENV: &str = "LOCKSERVER_TEST_PG_PASSWORD_FILE";

/// A database of its own for one test.
pub struct Database {
    /// `postgres://ROLE@HOST:PORT/NAME?sslmode=disable`: no password in it.
    pub url: String,
    pub password: String,
    admin_url: String,
    name: String,
}

/// A fresh database, or `None` (skipped, said once) when no server is configured outside CI.
pub fn database(tag: &str) -> Option<Database> {
    let (Ok(admin_url), Some(password_file)) = (std::env::var(PG_URL_ENV), std::env::var_os(PG_PASSWORD_FILE_ENV))
    else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{PG_URL_ENV} / {PG_PASSWORD_FILE_ENV} are not set: under CI the PostgreSQL tests must run \
                 (scripts/test.sh starts the server)"
            );
        }
        static SAID: std::sync::Once = std::sync::Once::new();
        // Straight to the stderr descriptor: the test harness captures `eprintln!`.
        SAID.call_once(|| {
            let line = format!("SKIPPED: PostgreSQL tests ({PG_URL_ENV} not set; scripts/test.sh sets it)\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        });
        return None;
    };
    let password = std::fs::read_to_string(&password_file)
        .expect("read the PostgreSQL password file")
        .trim()
        .to_string();
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "lockserver_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    psql(&admin_url, &password, &format!("CREATE DATABASE {name}"));
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url.as_str(), ""));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    Some(Database {
        url: format!("{server}/{name}?{query}"),
        password,
        admin_url,
        name,
    })
}

impl Database {
    /// Runs SQL on this database (not through the store).
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, &self.password, sql)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql_result(
            &self.admin_url,
            &self.password,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `sql` with `psql` (Debian's postgresql-client); returns its unaligned, tuples-only output.
pub fn psql_result(url: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .map_err(|e| format!("run psql (Debian package postgresql-client): {e}"))?;
    if !out.status.success() {
        return Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn psql(url: &str, password: &str, sql: &str) -> String {
    psql_result(url, password, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// PgBouncer (transaction pooling) in front of the test cluster, when `scripts/test.sh` started it.
pub const PGBOUNCER_PORT_ENV: &str = "LOCKSERVER_TEST_PGBOUNCER_PORT";

impl Database {
    /// The loopback port of the server in [`Self::url`].
    pub fn port(&self) -> u16 {
        let after_host = self.url.split("127.0.0.1:").nth(1).expect("a loopback URL");
        after_host
            .split(['/', '?'])
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL")
    }

    /// This URL with `authority` (`HOST:PORT`, or `h1:p1,h2:p2`) in place of the server's.
    pub fn url_at(&self, authority: &str) -> String {
        self.url.replacen(&format!("127.0.0.1:{}", self.port()), authority, 1)
    }

    /// This database through PgBouncer, or `None` (skipped, said) when it was not started outside CI.
    pub fn via_pgbouncer(&self) -> Option<String> {
        match std::env::var(PGBOUNCER_PORT_ENV) {
            Ok(port) => Some(self.url_at(&format!("127.0.0.1:{port}"))),
            Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{PGBOUNCER_PORT_ENV} is not set: under CI scripts/test.sh starts PgBouncer")
            }
            Err(_) => {
                let line = format!("SKIPPED: PgBouncer test ({PGBOUNCER_PORT_ENV} not set)\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                None
            }
        }
    }
}

/// A TCP relay on a loopback port in front of the database, to take the database away mid-run as a
/// fleet meets it: [`Relay::stop`] resets every connection and refuses new ones (the server stopped),
/// [`Relay::hang`] keeps accepting and passes nothing on (a firewall dropping packets).
pub struct Relay {
    pub port: u16,
    state: std::sync::Arc<std::sync::atomic::AtomicU8>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

const RELAY_FORWARD: u8 = 0;
const RELAY_HANG: u8 = 1;
const RELAY_STOPPED: u8 = 2;

impl Relay {
    pub fn start(target_port: u16) -> Relay {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let state = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(RELAY_FORWARD));
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let (st, ss) = (state.clone(), streams.clone());
        let acceptor = std::thread::spawn(move || {
            loop {
                match st.load(Ordering::SeqCst) {
                    RELAY_STOPPED => return, // the listener goes with this thread: new connections are refused
                    mode => match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            let keep = client.try_clone().expect("clone");
                            ss.lock().expect("streams").push(keep);
                            if mode == RELAY_HANG {
                                continue; // accepted, never answered
                            }
                            let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                                continue;
                            };
                            ss.lock().expect("streams").push(server.try_clone().expect("clone"));
                            for (mut from, mut to) in [
                                (client.try_clone().expect("clone"), server.try_clone().expect("clone")),
                                (server, client),
                            ] {
                                std::thread::spawn(move || {
                                    let _ = std::io::copy(&mut from, &mut to);
                                    let _ = to.shutdown(std::net::Shutdown::Both);
                                });
                            }
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                    },
                }
            }
        });
        Relay {
            port,
            state,
            streams,
            acceptor: Some(acceptor),
        }
    }

    /// From now on, accept and never answer (open connections keep working).
    pub fn hang(&self) {
        self.state.store(RELAY_HANG, Ordering::SeqCst);
    }

    /// Resets every connection and closes the port.
    pub fn stop(&mut self) {
        self.state.store(RELAY_STOPPED, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for s in self.streams.lock().expect("streams").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}
