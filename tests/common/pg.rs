//! The PostgreSQL server of the tests: `scripts/test.sh` starts a private cluster and sets
//! `LOCKSERVER_TEST_PG_URL` (a URL without password to a database whose role may create databases) and
//! `LOCKSERVER_TEST_PG_PASSWORD_FILE`. Each test gets a database of its own, dropped after it. Without
//! the variables a PostgreSQL test fails under CI (CI=true) and is skipped locally with one line.

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
