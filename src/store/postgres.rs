//! PostgreSQL pairing store (feature `postgres`): one table shared by a fleet of hosts.
//!
//! # Client
//! tokio-postgres driven by a current-thread tokio runtime owned by the store: the runtime runs on the
//! calling thread inside `block_on`, so the store starts no thread. Host names are resolved here, in the
//! calling thread (`getaddrinfo`), and handed to tokio-postgres as `hostaddr`: tokio's own lookup would
//! run on a blocking-pool thread, which would outlive a timed-out login. TLS is rustls with ring (no
//! OpenSSL): the system trust store plus `store_ca_file`.
//!
//! # Deadlines
//! Connecting (TCP, TLS, authentication, the schema check) and every query end by the call's deadline;
//! past it the call fails with [`StoreError::Unreachable`], as does a refused or lost connection, so
//! `store_fail_mode` decides the login. An error the database answers is [`StoreError::Unavailable`]. The
//! name resolution itself cannot be interrupted: use an IP address or a local resolver in the URL's host.
//!
//! # PgBouncer (transaction pooling)
//! Every statement goes out as an unnamed statement with typed parameters (`query_typed`: no named
//! prepared statement outlives its call), every operation is one statement (its own transaction), and no
//! session state is set. Migrations take a transaction-level advisory lock.
//!
//! # Schema
//! The same table and columns as SQLite ([`super::sqlite::MIGRATIONS`]), in PostgreSQL's dialect
//! ([`MIGRATIONS`]): integers are `BIGINT` where SQLite's 64-bit `INTEGER` holds unix times and steps.
//! The schema version is the one row of `lockserver_schema`.

#![forbid(unsafe_code)]

use super::{
    LocalTotp, Location, Migrated, OpenMode, Pairing, PairingStore, PendingPairing, Record, Snapshot, StoreError,
    check_user, check_value,
};
use crate::config::Secret;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::future::Future;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

/// The schema migrations in PostgreSQL's dialect: `MIGRATIONS[n]` takes the schema from version `n` to
/// `n + 1`, like [`super::sqlite::MIGRATIONS`] (the store suite checks that both give the same columns).
pub const MIGRATIONS: &[&str] = &[
    // 1: the pairing table.
    "CREATE TABLE pairings (
        user_name         TEXT    NOT NULL PRIMARY KEY,
        account_id        TEXT    NOT NULL,
        enabled           INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        totp_enabled      INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
        totp_id           TEXT,
        totp_secret       TEXT,
        totp_last_step    BIGINT  CHECK (totp_last_step >= 0),
        totp_failures     INTEGER NOT NULL DEFAULT 0 CHECK (totp_failures >= 0),
        totp_window_start BIGINT  NOT NULL DEFAULT 0 CHECK (totp_window_start >= 0),
        created           BIGINT  NOT NULL,
        updated           BIGINT  NOT NULL
    );",
    // 2: pairings the host started and the user has not finished (PingID pairing keys).
    "CREATE TABLE pending_pairings (
        user_name   TEXT    NOT NULL PRIMARY KEY,
        account_id  TEXT    NOT NULL,
        pairing_key TEXT    NOT NULL,
        created     BIGINT  NOT NULL
    );",
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock key migrations hold (transaction-scoped): "lockserv" in ASCII.
const MIGRATION_LOCK: i64 = 0x6c6f_636b_7365_7276;

const PAIRING_COLUMNS: &str = "user_name, account_id, enabled, totp_enabled, totp_id";

/// How the connection is protected (`sslmode` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `sslmode=disable`: plain TCP (a loopback database, or a tunnel).
    Disable,
    /// `sslmode=require` and `sslmode=verify-full` (the default): TLS, with the server certificate
    /// checked against the trust store and the host name. lockserver never talks to an unverified
    /// server: `require` verifies too.
    VerifyFull,
}

/// The PostgreSQL store. `Send + Sync`: calls from several threads take turns on the one connection.
pub struct PostgresStore {
    // Dropped in this order: the client, then the runtime (with the connection task it cancels).
    client: Client,
    runtime: Runtime,
    /// The URL without password, for messages.
    label: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.label)
            .finish_non_exhaustive()
    }
}

/// Splits `sslmode` off the URL (tokio-postgres knows no `verify-full`) and checks what is left.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Tls), StoreError> {
    let label = super::redact(url);
    if label != url {
        return Err(StoreError::Invalid(
            "the store URL must not hold a password: use store_password_file".into(),
        ));
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut tls = Tls::VerifyFull;
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", "disable")) => tls = Tls::Disable,
            Some(("sslmode", "require" | "verify-full")) => tls = Tls::VerifyFull,
            Some(("sslmode", other)) => {
                return Err(StoreError::Invalid(format!(
                    "sslmode={other} in the store URL: use disable, require or verify-full"
                )));
            }
            Some(("password", _)) => {
                return Err(StoreError::Invalid(
                    "the store URL must not hold a password: use store_password_file".into(),
                ));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| StoreError::Invalid(format!("store URL {label}: {e}")))?;
    if config.get_hosts().is_empty() {
        return Err(StoreError::Invalid(format!("store URL {label}: no host")));
    }
    Ok((config, tls))
}

impl PostgresStore {
    /// Connects by `deadline` and checks the schema: a login ([`OpenMode::Existing`]) needs exactly this
    /// build's version; [`OpenMode::Create`] (the CLI) migrates; [`OpenMode::Migrate`] leaves it to
    /// [`PairingStore::migrate`].
    pub fn open(location: &Location<'_>, mode: OpenMode, deadline: Instant) -> Result<PostgresStore, StoreError> {
        let label = super::redact(location.url);
        parse_url(location.url)?;
        // No thread: the runtime runs inside `block_on` on the caller's thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start the PostgreSQL client: {e}")))?;
        // A multi-host URL: one host after the other, each given an equal share of what is left, so that
        // a first host that hangs leaves the next one time to answer.
        let hosts = split_hosts(location.url);
        let mut failures = Vec::new();
        let mut client = None;
        for (i, url) in hosts.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / u32::try_from(hosts.len() - i).unwrap_or(u32::MAX);
            match connect_host(&runtime, location, url, Instant::now() + share) {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(StoreError::Unreachable(why)) if i + 1 < hosts.len() => {
                    log::warn!(
                        "pairing store host {} unreachable, trying the next: {why}",
                        super::redact(url)
                    );
                    failures.push(why);
                }
                Err(StoreError::Unreachable(why)) => failures.push(why),
                Err(e) => return Err(e),
            }
        }
        let Some(client) = client else {
            return Err(StoreError::Unreachable(failures.join("; ")));
        };
        let store = PostgresStore { client, runtime, label };
        match mode {
            OpenMode::Existing => store.check_version(deadline)?,
            OpenMode::Create => {
                store.migrate(deadline)?;
            }
            OpenMode::Migrate => {}
        }
        Ok(store)
    }

    /// Runs one statement (an unnamed one: PgBouncer-safe) by `deadline`.
    fn query(
        &self,
        deadline: Instant,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, StoreError> {
        within(
            &self.runtime,
            deadline,
            "a store query",
            self.client.query_typed(sql, params),
        )?
        .map_err(|e| net_err(&self.label, e))
    }

    fn batch(&self, deadline: Instant, sql: &str) -> Result<(), StoreError> {
        within(&self.runtime, deadline, "a store query", self.client.batch_execute(sql))?
            .map_err(|e| net_err(&self.label, e))
    }

    /// The version in `lockserver_schema`; 0 when there is no such table (nothing ever migrated).
    fn read_version(&self, deadline: Instant) -> Result<u32, StoreError> {
        let read = within(
            &self.runtime,
            deadline,
            "reading the schema version",
            self.client
                .query_typed("SELECT coalesce(max(version), 0) FROM lockserver_schema", &[]),
        )?;
        let rows = match read {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => return Ok(0),
            Err(e) => return Err(net_err(&self.label, e)),
        };
        let v: i32 = match rows.first() {
            Some(row) => col(row, 0)?,
            None => 0,
        };
        u32::try_from(v).map_err(|_| StoreError::Unavailable(format!("corrupt store: schema version {v}")))
    }

    /// The body of [`PairingStore::import`], inside its transaction.
    /// Both tables, inside the caller's transaction.
    fn read_snapshot(&self, deadline: Instant) -> Result<Snapshot, StoreError> {
        let rows = self.query(
            deadline,
            &format!(
                "SELECT {} FROM pairings ORDER BY user_name COLLATE \"C\"",
                super::sqlite::RECORD_COLUMNS
            ),
            &[],
        )?;
        let records = rows
            .iter()
            .map(|row| {
                Ok(Record {
                    pairing: pairing_of(row)?,
                    totp_secret: col::<Option<String>>(row, 5)?.map(Secret::new),
                    totp_last_step: col::<Option<i64>>(row, 6)?
                        .map(|s| from_db("totp_last_step", s))
                        .transpose()?,
                    totp_failures: from_db("totp_failures", i64::from(col::<i32>(row, 7)?))?,
                    totp_window_start: from_db("totp_window_start", col::<i64>(row, 8)?)?,
                    created: from_db("created", col::<i64>(row, 9)?)?,
                    updated: from_db("updated", col::<i64>(row, 10)?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = self.query(
            deadline,
            "SELECT user_name, account_id, pairing_key FROM pending_pairings ORDER BY user_name COLLATE \"C\"",
            &[],
        )?;
        let pending = rows
            .iter()
            .map(|row| {
                Ok(PendingPairing {
                    user: col(row, 0)?,
                    account_id: col(row, 1)?,
                    key: col(row, 2)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Snapshot { records, pending })
    }

    fn import_rows(&self, snapshot: &Snapshot, replace: bool, deadline: Instant) -> Result<(), StoreError> {
        let held = self.query(
            deadline,
            "SELECT (SELECT count(*) FROM pairings) + (SELECT count(*) FROM pending_pairings)",
            &[],
        )?;
        let held: i64 = match held.first() {
            Some(row) => col(row, 0)?,
            None => 0,
        };
        if held > 0 && !replace {
            return Err(StoreError::NotEmpty {
                pairings: usize::try_from(held).unwrap_or(usize::MAX),
            });
        }
        self.batch(deadline, "DELETE FROM pairings; DELETE FROM pending_pairings")?;
        let sql = format!(
            "INSERT INTO pairings ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            super::sqlite::RECORD_COLUMNS
        );
        for r in &snapshot.records {
            let p = &r.pairing;
            let last_step = r.totp_last_step.map(|s| to_db("last TOTP step", s)).transpose()?;
            let failures = i32::try_from(r.totp_failures)
                .map_err(|_| StoreError::Invalid(format!("TOTP failure count {} is too large", r.totp_failures)))?;
            let secret = r.totp_secret.as_ref().map(Secret::expose);
            let inserted = self.query(
                deadline,
                &sql,
                &[
                    (&p.user, Type::TEXT),
                    (&p.account_id, Type::TEXT),
                    (&i32::from(p.enabled), Type::INT4),
                    (&i32::from(p.totp_enabled), Type::INT4),
                    (&p.totp_id, Type::TEXT),
                    (&secret, Type::TEXT),
                    (&last_step, Type::INT8),
                    (&failures, Type::INT4),
                    (&to_db("TOTP window start", r.totp_window_start)?, Type::INT8),
                    (&to_db("created", r.created)?, Type::INT8),
                    (&to_db("updated", r.updated)?, Type::INT8),
                ],
            );
            match inserted {
                Err(StoreError::Unavailable(why)) if why.contains("(23505)") => {
                    return Err(StoreError::Invalid(format!("the user {} appears twice", p.user)));
                }
                other => other?,
            };
        }
        let now = unix_now();
        for p in &snapshot.pending {
            self.query(
                deadline,
                "INSERT INTO pending_pairings (user_name, account_id, pairing_key, created) VALUES ($1, $2, $3, $4)",
                &[
                    (&p.user, Type::TEXT),
                    (&p.account_id, Type::TEXT),
                    (&p.key, Type::TEXT),
                    (&now, Type::INT8),
                ],
            )?;
        }
        Ok(())
    }

    fn check_version(&self, deadline: Instant) -> Result<(), StoreError> {
        let found = self.read_version(deadline)?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the pairing store {} has schema version {found}, newer than this build's version \
                 {SCHEMA_VERSION}: upgrade lockserver on this host",
                self.label
            )));
        }
        if found == 0 {
            return Err(StoreError::Unavailable(format!(
                "the database {} has no lockserver schema: run `lockserver migrate` as root to create it",
                self.label
            )));
        }
        Err(StoreError::Outdated {
            path: self.label.clone(),
            found,
            wanted: SCHEMA_VERSION,
        })
    }
}

impl PairingStore for PostgresStore {
    fn get(&self, user: &str, deadline: Instant) -> Result<Option<Pairing>, StoreError> {
        check_user(user)?;
        let rows = self.query(
            deadline,
            &format!("SELECT {PAIRING_COLUMNS} FROM pairings WHERE user_name = $1"),
            &[(&user, Type::TEXT)],
        )?;
        rows.first().map(pairing_of).transpose()
    }

    fn insert(&self, pairing: &Pairing, deadline: Instant) -> Result<(), StoreError> {
        check_user(&pairing.user)?;
        check_value("account id", &pairing.account_id)?;
        if let Some(id) = &pairing.totp_id {
            check_value("TOTP id", id)?;
        }
        let now = unix_now();
        let rows = self.query(
            deadline,
            // One statement: the pairing and the end of its pending row commit together.
            "WITH added AS (
                 INSERT INTO pairings (user_name, account_id, enabled, totp_enabled, totp_id, created, updated)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (user_name) DO NOTHING RETURNING user_name
             ), done AS (
                 DELETE FROM pending_pairings WHERE user_name IN (SELECT user_name FROM added)
             )
             SELECT 1 FROM added",
            &[
                (&pairing.user, Type::TEXT),
                (&pairing.account_id, Type::TEXT),
                (&i32::from(pairing.enabled), Type::INT4),
                (&i32::from(pairing.totp_enabled), Type::INT4),
                (&pairing.totp_id, Type::TEXT),
                (&now, Type::INT8),
            ],
        )?;
        if rows.is_empty() {
            Err(StoreError::AlreadyPaired)
        } else {
            Ok(())
        }
    }

    fn remove(&self, user: &str, deadline: Instant) -> Result<Option<Pairing>, StoreError> {
        check_user(user)?;
        let rows = self.query(
            deadline,
            &format!(
                "WITH pending AS (DELETE FROM pending_pairings WHERE user_name = $1)
                 DELETE FROM pairings WHERE user_name = $1 RETURNING {PAIRING_COLUMNS}"
            ),
            &[(&user, Type::TEXT)],
        )?;
        rows.first().map(pairing_of).transpose()
    }

    fn set_pending(&self, pending: &PendingPairing, deadline: Instant) -> Result<(), StoreError> {
        check_user(&pending.user)?;
        check_value("account id", &pending.account_id)?;
        check_value("pairing key", &pending.key)?;
        let rows = self.query(
            deadline,
            "INSERT INTO pending_pairings (user_name, account_id, pairing_key, created)
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM pairings WHERE user_name = $1)
             ON CONFLICT (user_name) DO UPDATE
                 SET account_id = EXCLUDED.account_id, pairing_key = EXCLUDED.pairing_key, created = EXCLUDED.created
             RETURNING 1",
            &[
                (&pending.user, Type::TEXT),
                (&pending.account_id, Type::TEXT),
                (&pending.key, Type::TEXT),
                (&unix_now(), Type::INT8),
            ],
        )?;
        if rows.is_empty() {
            Err(StoreError::AlreadyPaired)
        } else {
            Ok(())
        }
    }

    fn pending(&self, user: &str, deadline: Instant) -> Result<Option<PendingPairing>, StoreError> {
        check_user(user)?;
        let rows = self.query(
            deadline,
            "SELECT account_id, pairing_key FROM pending_pairings WHERE user_name = $1",
            &[(&user, Type::TEXT)],
        )?;
        rows.first()
            .map(|row| {
                Ok(PendingPairing {
                    user: user.to_string(),
                    account_id: col(row, 0)?,
                    key: col(row, 1)?,
                })
            })
            .transpose()
    }

    fn list(&self, deadline: Instant) -> Result<Vec<Pairing>, StoreError> {
        let rows = self.query(
            deadline,
            // COLLATE "C": the same byte order as SQLite's, whatever the database's locale.
            &format!("SELECT {PAIRING_COLUMNS} FROM pairings ORDER BY user_name COLLATE \"C\""),
            &[],
        )?;
        rows.iter().map(pairing_of).collect()
    }

    fn set_totp(&self, user: &str, enabled: bool, totp_id: Option<&str>, deadline: Instant) -> Result<(), StoreError> {
        check_user(user)?;
        if let Some(id) = totp_id {
            check_value("TOTP id", id)?;
        }
        let rows = self.query(
            deadline,
            "UPDATE pairings SET totp_enabled = $2, totp_id = $3, updated = $4 WHERE user_name = $1 RETURNING 1",
            &[
                (&user, Type::TEXT),
                (&i32::from(enabled), Type::INT4),
                (&totp_id, Type::TEXT),
                (&unix_now(), Type::INT8),
            ],
        )?;
        if rows.is_empty() {
            Err(StoreError::NotPaired)
        } else {
            Ok(())
        }
    }

    fn local_totp(&self, user: &str, deadline: Instant) -> Result<Option<LocalTotp>, StoreError> {
        check_user(user)?;
        let rows = self.query(
            deadline,
            "SELECT totp_secret, totp_last_step, totp_failures, totp_window_start FROM pairings WHERE user_name = $1",
            &[(&user, Type::TEXT)],
        )?;
        let Some(row) = rows.first() else { return Ok(None) };
        let Some(secret) = col::<Option<String>>(row, 0)? else {
            return Ok(None);
        };
        Ok(Some(LocalTotp {
            secret: Secret::new(secret),
            last_step: col::<Option<i64>>(row, 1)?
                .map(|s| from_db("totp_last_step", s))
                .transpose()?,
            failures: from_db("totp_failures", i64::from(col::<i32>(row, 2)?))?,
            window_start: from_db("totp_window_start", col::<i64>(row, 3)?)?,
        }))
    }

    fn set_local_totp(&self, user: &str, state: Option<&LocalTotp>, deadline: Instant) -> Result<(), StoreError> {
        check_user(user)?;
        let now = unix_now();
        let rows = match state {
            Some(state) => {
                check_value("TOTP secret", state.secret.expose())?;
                let last_step = state.last_step.map(|s| to_db("last TOTP step", s)).transpose()?;
                let window_start = to_db("TOTP window start", state.window_start)?;
                let failures = i32::try_from(state.failures)
                    .map_err(|_| StoreError::Invalid(format!("TOTP failure count {} is too large", state.failures)))?;
                self.query(
                    deadline,
                    "UPDATE pairings SET totp_secret = $2, totp_last_step = $3, totp_failures = $4,
                     totp_window_start = $5, updated = $6 WHERE user_name = $1 RETURNING 1",
                    &[
                        (&user, Type::TEXT),
                        (&state.secret.expose(), Type::TEXT),
                        (&last_step, Type::INT8),
                        (&failures, Type::INT4),
                        (&window_start, Type::INT8),
                        (&now, Type::INT8),
                    ],
                )?
            }
            None => self.query(
                deadline,
                "UPDATE pairings SET totp_secret = NULL, totp_last_step = NULL, totp_failures = 0,
                 totp_window_start = 0, updated = $2 WHERE user_name = $1 RETURNING 1",
                &[(&user, Type::TEXT), (&now, Type::INT8)],
            )?,
        };
        if rows.is_empty() {
            Err(StoreError::NotPaired)
        } else {
            Ok(())
        }
    }

    fn accept_totp_step(&self, user: &str, step: u64, deadline: Instant) -> Result<bool, StoreError> {
        check_user(user)?;
        let step = to_db("TOTP step", step)?;
        // One statement: two hosts racing with one code cannot both see the old step.
        let rows = self.query(
            deadline,
            "UPDATE pairings SET totp_last_step = $2, updated = $3
             WHERE user_name = $1 AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2)
             RETURNING 1",
            &[(&user, Type::TEXT), (&step, Type::INT8), (&unix_now(), Type::INT8)],
        )?;
        Ok(!rows.is_empty())
    }

    fn record_totp_failure(
        &self,
        user: &str,
        now: u64,
        period_secs: u64,
        deadline: Instant,
    ) -> Result<u32, StoreError> {
        check_user(user)?;
        let now = to_db("time", now)?;
        // A period beyond i64 is "forever": the window never ends.
        let period = i64::try_from(period_secs).unwrap_or(i64::MAX);
        // One statement (SET sees the row as it was): the window test is sqlite.rs's `in_window`, written
        // as `now - start < period` so that it cannot overflow and a clock stepped back keeps counting.
        let rows = self.query(
            deadline,
            "UPDATE pairings SET
                 totp_failures = CASE WHEN $2 - totp_window_start < $3
                                      THEN LEAST(totp_failures, 2147483646) + 1 ELSE 1 END,
                 totp_window_start = CASE WHEN $2 - totp_window_start < $3 THEN totp_window_start ELSE $2 END,
                 updated = $4
             WHERE user_name = $1 RETURNING totp_failures",
            &[
                (&user, Type::TEXT),
                (&now, Type::INT8),
                (&period, Type::INT8),
                (&unix_now(), Type::INT8),
            ],
        )?;
        match rows.first() {
            Some(row) => from_db("totp_failures", i64::from(col::<i32>(row, 0)?)),
            None => Err(StoreError::NotPaired),
        }
    }

    fn clear_totp_failures(&self, user: &str, deadline: Instant) -> Result<(), StoreError> {
        check_user(user)?;
        self.query(
            deadline,
            "UPDATE pairings SET totp_failures = 0, updated = $2 WHERE user_name = $1",
            &[(&user, Type::TEXT), (&unix_now(), Type::INT8)],
        )?;
        Ok(())
    }

    fn totp_failures(&self, user: &str, now: u64, period_secs: u64, deadline: Instant) -> Result<u32, StoreError> {
        check_user(user)?;
        let now = to_db("time", now)?;
        let period = i64::try_from(period_secs).unwrap_or(i64::MAX);
        let rows = self.query(
            deadline,
            "SELECT CASE WHEN $2 - totp_window_start < $3 THEN totp_failures ELSE 0 END
             FROM pairings WHERE user_name = $1",
            &[(&user, Type::TEXT), (&now, Type::INT8), (&period, Type::INT8)],
        )?;
        match rows.first() {
            Some(row) => from_db("totp_failures", i64::from(col::<i32>(row, 0)?)),
            None => Ok(0),
        }
    }

    fn schema_version(&self, deadline: Instant) -> Result<u32, StoreError> {
        self.read_version(deadline)
    }

    fn export(&self, deadline: Instant) -> Result<Snapshot, StoreError> {
        // One snapshot of both tables (one server connection through PgBouncer: a transaction).
        self.batch(deadline, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let read = self.read_snapshot(deadline);
        match (read, self.batch(deadline, "COMMIT")) {
            (Err(e), _) | (Ok(_), Err(e)) => {
                let _ = self.batch(deadline, "ROLLBACK");
                Err(e)
            }
            (Ok(snapshot), Ok(())) => Ok(snapshot),
        }
    }

    fn import(&self, snapshot: &Snapshot, replace: bool, deadline: Instant) -> Result<(), StoreError> {
        snapshot.check()?;
        // BEGIN … COMMIT on the one connection (PgBouncer keeps a transaction on one server connection);
        // the table locks make a concurrent writer wait until the copy is in or rolled back.
        self.batch(
            deadline,
            "BEGIN; LOCK TABLE pairings, pending_pairings IN EXCLUSIVE MODE",
        )?;
        let done = self.import_rows(snapshot, replace, deadline);
        let end = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match (done, self.batch(deadline, end)) {
            (Err(e), _) | (Ok(()), Err(e)) => {
                let _ = self.batch(deadline, "ROLLBACK");
                Err(e)
            }
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    fn migrate(&self, deadline: Instant) -> Result<Migrated, StoreError> {
        let from = self.read_version(deadline)?;
        if from == SCHEMA_VERSION {
            return Ok(Migrated { from, to: from });
        }
        if from > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the pairing store {} has schema version {from}, newer than this build's version \
                 {SCHEMA_VERSION}: upgrade lockserver",
                self.label
            )));
        }
        // One transaction in one batch (PgBouncer keeps a transaction on one server connection): the
        // advisory lock makes a second `lockserver migrate` wait, then find nothing left to do.
        let mut sql = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS lockserver_schema (version INTEGER NOT NULL);
             CREATE TEMP TABLE lockserver_from ON COMMIT DROP AS
                 SELECT coalesce(max(version), 0) AS v FROM lockserver_schema;"
        );
        for (n, migration) in MIGRATIONS.iter().enumerate() {
            // Each step runs only if the version (read under the lock) is below it.
            let step = n + 1;
            sql.push_str(&format!(
                "\nDO $lockserver$ BEGIN IF (SELECT v FROM lockserver_from) < {step} THEN EXECUTE {}; END IF; \
                 END $lockserver$;",
                quote_literal(migration)
            ));
        }
        sql.push_str(&format!(
            "\nDELETE FROM lockserver_schema;
             INSERT INTO lockserver_schema (version) VALUES ({SCHEMA_VERSION});
             COMMIT;"
        ));
        if let Err(e) = self.batch(deadline, &sql) {
            // A failed batch leaves the transaction aborted on this connection: end it.
            let _ = self.batch(deadline, "ROLLBACK");
            return Err(e);
        }
        log::info!(
            "pairing store {} migrated from schema version {from} to {SCHEMA_VERSION}",
            self.label
        );
        Ok(Migrated {
            from,
            to: SCHEMA_VERSION,
        })
    }
}

/// The URL once per host of a multi-host URL (`postgres://u@h1:5432,h2/db?…`, libpq's form), each with
/// one host and everything else as it was; a one-host URL as it is.
fn split_hosts(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_string()];
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    if !hosts.contains(',') {
        return vec![url.to_string()];
    }
    hosts
        .split(',')
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect()
}

/// Connects to the one host of `url` (TCP, TLS, authentication) by `deadline`.
fn connect_host(
    runtime: &Runtime,
    location: &Location<'_>,
    url: &str,
    deadline: Instant,
) -> Result<Client, StoreError> {
    let label = super::redact(url);
    let (mut config, tls) = parse_url(url)?;
    if let Some(password) = location.password {
        config.password(password.expose());
    }
    config.application_name("lockserver");
    resolve_hosts(&mut config)?;
    let client = match tls {
        Tls::Disable => {
            config.ssl_mode(SslMode::Disable);
            let connected = within(runtime, deadline, "connecting", config.connect(NoTls))?;
            let (client, connection) = connected.map_err(|e| net_err(&label, e))?;
            runtime.spawn(connection);
            client
        }
        Tls::VerifyFull => {
            config.ssl_mode(SslMode::Require);
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(location.ca_file)?);
            let connected = within(runtime, deadline, "connecting", config.connect(connector))?;
            let (client, connection) = connected.map_err(|e| net_err(&label, e))?;
            runtime.spawn(connection);
            client
        }
    };
    Ok(client)
}

/// Runs `fut` on the store's runtime until `deadline`; past it, [`StoreError::Unreachable`].
fn within<F: Future>(runtime: &Runtime, deadline: Instant, what: &str, fut: F) -> Result<F::Output, StoreError> {
    if Instant::now() >= deadline {
        return Err(StoreError::Unreachable(format!(
            "the time budget was spent before {what}"
        )));
    }
    let deadline = tokio::time::Instant::from_std(deadline);
    runtime
        .block_on(async { tokio::time::timeout_at(deadline, fut).await })
        .map_err(|_| StoreError::Unreachable(format!("no answer within the time budget ({what})")))
}

/// Resolves every host name here (see the module doc) and gives tokio-postgres the addresses.
fn resolve_hosts(config: &mut tokio_postgres::Config) -> Result<(), StoreError> {
    if !config.get_hostaddrs().is_empty() {
        return Ok(());
    }
    let mut addrs = Vec::new();
    for host in config.get_hosts() {
        match host {
            Host::Tcp(name) => {
                let ip = match name.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => (name.as_str(), 0)
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .map(|a| a.ip())
                        .ok_or_else(|| StoreError::Unreachable(format!("cannot resolve the database host {name}")))?,
                };
                addrs.push(ip);
            }
            // A socket path needs no name resolution: leave the config as it is.
            Host::Unix(_) => return Ok(()),
        }
    }
    for ip in addrs {
        config.hostaddr(ip);
    }
    Ok(())
}

/// rustls with ring: the system CA bundle plus `store_ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut add = |path: &Path, required: bool| -> Result<(), StoreError> {
        let certs = match CertificateDer::pem_file_iter(path) {
            Ok(iter) => iter.collect::<Result<Vec<_>, _>>(),
            Err(e) if !required => {
                log::debug!("no system CA bundle at {}: {e}", path.display());
                return Ok(());
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "store_ca_file {}: {e}",
                    path.display()
                )));
            }
        };
        let certs = certs.map_err(|e| StoreError::Unavailable(format!("{}: malformed PEM: {e}", path.display())))?;
        if required && certs.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "store_ca_file {}: no PEM certificate in it",
                path.display()
            )));
        }
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            log::warn!("{}: {ignored} certificates could not be used", path.display());
        }
        Ok(())
    };
    if let Some(ca) = ca_file {
        add(ca, true)?;
    }
    add(Path::new("/etc/ssl/certs/ca-certificates.crt"), false)?;
    if roots.is_empty() {
        return Err(StoreError::Unavailable(
            "no trusted CA for the database's TLS: install ca-certificates or set store_ca_file".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unavailable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client error: an answer from the database is `Unavailable` (it is up, and said no); anything on
/// the way (refused, closed, TLS, I/O) is `Unreachable`.
fn net_err(label: &str, e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("{label}: {} ({})", db.message(), db.code().code())),
        None => StoreError::Unreachable(format!("{label}: {e}")),
    }
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::Unavailable(format!("corrupt store: column {i}: {e}")))
}

fn pairing_of(row: &Row) -> Result<Pairing, StoreError> {
    Ok(Pairing {
        user: col(row, 0)?,
        account_id: col(row, 1)?,
        enabled: flag("enabled", col(row, 2)?)?,
        totp_enabled: flag("totp_enabled", col(row, 3)?)?,
        totp_id: col(row, 4)?,
    })
}

fn flag(column: &str, v: i32) -> Result<bool, StoreError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(StoreError::Unavailable(format!("corrupt store: {column} = {v}"))),
    }
}

fn from_db<T: TryFrom<i64>>(column: &str, v: i64) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Unavailable(format!("corrupt store: {column} = {v}")))
}

fn to_db(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

/// A SQL string literal (for the migration text inside `EXECUTE`).
fn quote_literal(sql: &str) -> String {
    format!("'{}'", sql.replace('\'', "''"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PostgresStore>();
    }

    #[test]
    fn url_sslmode_and_password_rules() {
        let (c, tls) = parse_url("postgres://lockserver@db.example:6432/fleet?sslmode=verify-full").expect("parse");
        assert_eq!(tls, Tls::VerifyFull);
        assert_eq!(c.get_user(), Some("lockserver"));
        assert_eq!(c.get_ports(), &[6432]);
        assert_eq!(
            parse_url("postgresql://u@h/d?sslmode=disable").map(|p| p.1),
            Ok(Tls::Disable)
        );
        assert_eq!(
            parse_url("postgresql://u@h/d?sslmode=require").map(|p| p.1),
            Ok(Tls::VerifyFull)
        );
        assert_eq!(parse_url("postgresql://u@h/d").map(|p| p.1), Ok(Tls::VerifyFull));
        assert!(matches!(
            parse_url("postgres://u@h/d?sslmode=prefer"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(parse_url("postgres://u:pw@h/d"), Err(StoreError::Invalid(_))));
        assert!(matches!(
            parse_url("postgres://u@h/d?password=pw"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            parse_url("postgres://u@h/d?bogus=1"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn multi_host_urls_split_into_one_url_per_host() {
        assert_eq!(
            split_hosts("postgres://ls@h1:5432,h2,[::1]:6432/fleet?sslmode=disable"),
            [
                "postgres://ls@h1:5432/fleet?sslmode=disable",
                "postgres://ls@h2/fleet?sslmode=disable",
                "postgres://ls@[::1]:6432/fleet?sslmode=disable"
            ]
        );
        assert_eq!(
            split_hosts("postgresql://h1,h2"),
            ["postgresql://h1", "postgresql://h2"]
        );
        assert_eq!(split_hosts("postgres://ls@h/db"), ["postgres://ls@h/db"]);
        for url in split_hosts("postgres://ls@h1,h2:6432/db?sslmode=verify-full") {
            let (c, tls) = parse_url(&url).expect("each part parses");
            assert_eq!(c.get_hosts().len(), 1);
            assert_eq!(tls, Tls::VerifyFull);
        }
    }

    #[test]
    fn a_past_deadline_fails_before_any_work() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let r = within(&rt, Instant::now(), "x", async { 1 });
        assert!(matches!(r, Err(StoreError::Unreachable(_))));
        let r = within(&rt, Instant::now() + std::time::Duration::from_secs(5), "x", async {
            1
        });
        assert_eq!(r, Ok(1));
    }
}
