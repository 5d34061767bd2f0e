//! SQLite pairing store: one root-only file, WAL journal, numbered migrations.
//!
//! # Schema
//! One table, `pairings`, one row per local user name (see [`MIGRATIONS`] for the exact SQL):
//! `user_name` (key), `account_id` (LOCK_ACCOUNT_ID), `enabled` (LOCK_ENABLED), `totp_enabled`
//! (LOCK_TOTP_ENABLED), `totp_id` (LOCK_TOTP_ID), the local TOTP state `totp_secret` (base32 text),
//! `totp_last_step`, `totp_failures`, `totp_window_start`, and `created` / `updated` (unix seconds).
//! A second table, `pending_pairings`, holds pairings the host started and the user has not finished
//! (`user_name`, `account_id`, `pairing_key`, `created`); `insert` and `remove` clear a user's row.
//! The schema version is `PRAGMA user_version`: the number of migrations applied.
//!
//! # Opening
//! - [`OpenMode::Create`] (the CLI): creates the parent directory (0700) and, if missing, the store
//!   (0600, WAL, every migration) under a temporary name linked into place when complete, so a login
//!   never sees a half-made store; applies pending migrations of an existing file in one IMMEDIATE
//!   transaction.
//! - [`OpenMode::Migrate`] (`lockserver migrate`): like `Create`, but [`PairingStore::migrate`] applies the
//!   migrations and reports them.
//! - [`OpenMode::Existing`] (every login, in a fresh process): never creates, never migrates, never
//!   vacuums. Only a file that does not exist is [`StoreError::Missing`] (nobody is paired); a file that
//!   exists but is no pairing store (empty, not SQLite, SQLite without our schema) is
//!   [`StoreError::Unavailable`] saying so; an older schema is [`StoreError::Outdated`] and a newer one
//!   [`StoreError::Unavailable`], each saying what to run.
//!
//! Both modes refuse a database file that is not root's or that group or others may write, in a place
//! others could change (see [`crate::safe_path`]: its directories, and a `-wal`, `-shm` or `-journal`
//! file open to group or others). SQLite gives the side files the permissions of the database file,
//! so they are 0600 as well.
//!
//! # Waiting for locks
//! Every call waits for a locked database until its deadline (SQLite's busy timeout is set to what is
//! left before each call); after that it fails with `Unavailable("store busy")`. A login passes what is
//! left of its time budget, so the store never makes it wait past `timeout_ms`. Within one process,
//! operations on one [`SqliteStore`] are serialized by a mutex; each holds it until its deadline at most
//! plus the statement's own time.
//!
//! # Concurrency
//! Every write runs in an `IMMEDIATE` transaction (the write lock is taken up front, so a writer never
//! fails half-way on a lock upgrade). `insert` relies on the primary key (no check-then-insert race),
//! `remove` is one `DELETE … RETURNING`, and the TOTP counters (`accept_totp_step`,
//! `record_totp_failure`) are read-modify-writes inside one transaction.

#![forbid(unsafe_code)]

use super::{
    LocalTotp, Migrated, OpenMode, Pairing, PairingStore, PendingPairing, Record, Snapshot, StoreError, check_user,
    check_value, remaining,
};
use crate::config::Secret;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, ffi, params};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The schema migrations, in order: `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
/// Never edit a released migration; append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the pairing table.
    "CREATE TABLE pairings (
        user_name         TEXT    NOT NULL PRIMARY KEY,
        account_id        TEXT    NOT NULL,
        enabled           INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        totp_enabled      INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
        totp_id           TEXT,
        totp_secret       TEXT,
        totp_last_step    INTEGER CHECK (totp_last_step >= 0),
        totp_failures     INTEGER NOT NULL DEFAULT 0 CHECK (totp_failures >= 0),
        totp_window_start INTEGER NOT NULL DEFAULT 0 CHECK (totp_window_start >= 0),
        created           INTEGER NOT NULL,
        updated           INTEGER NOT NULL
    ) STRICT;",
    // 2: pairings the host started and the user has not finished (PingID pairing keys).
    "CREATE TABLE pending_pairings (
        user_name   TEXT    NOT NULL PRIMARY KEY,
        account_id  TEXT    NOT NULL,
        pairing_key TEXT    NOT NULL,
        created     INTEGER NOT NULL
    ) STRICT;",
];

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const PAIRING_COLUMNS: &str = "user_name, account_id, enabled, totp_enabled, totp_id";

/// Every column, for [`PairingStore::export`] and [`PairingStore::import`].
pub(super) const RECORD_COLUMNS: &str = "user_name, account_id, enabled, totp_enabled, totp_id, totp_secret, \
    totp_last_step, totp_failures, totp_window_start, created, updated";

/// The SQLite pairing store. `Send + Sync`: one handle may be shared by threads.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// This handle's opening made the store (already at this build's version).
    created: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, taking at most [`super::DEFAULT_TIMEOUT`].
    pub fn open(path: &Path, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        Self::open_at(path, mode, super::default_deadline())
    }

    /// Opens the store at `path`; opening waits for another process's lock until `deadline` at most.
    pub fn open_at(path: &Path, mode: OpenMode, deadline: Instant) -> Result<SqliteStore, StoreError> {
        if path.as_os_str().is_empty() {
            return Err(StoreError::Unavailable("the store path is empty".into()));
        }
        // `lockserver migrate` on a store it creates reports the migrations from version 0.
        let created = mode != OpenMode::Existing && prepare_file(path)?;
        check_permissions(path)?;
        // No SQLITE_OPEN_CREATE: the file exists (made above with 0600, or the caller gets Missing), and
        // SQLite must never create it with umask-dependent permissions. No SQLITE_OPEN_URI: the path is a
        // path. The mutex is ours.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen) if !path.exists() => StoreError::Missing,
            _ => unavailable(&format!("cannot open {}", path.display()), e),
        })?;
        set_timeout(&conn, remaining(deadline, "opening the store")?)?;
        match mode {
            OpenMode::Create | OpenMode::Migrate => {
                let journal: String = conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))
                    .map_err(|e| not_a_store(path, db_err(e)))?;
                if !journal.eq_ignore_ascii_case("wal") {
                    // Switching needs an exclusive lock, and SQLite answers BUSY at once (without the busy
                    // handler) while another connection has the file open: retry within the timeout.
                    let now: String = retry_busy(deadline, || {
                        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                    })
                    .map_err(db_err)?;
                    if !now.eq_ignore_ascii_case("wal") {
                        return Err(StoreError::Unavailable(format!(
                            "cannot switch {} to WAL journal mode (it stays {now})",
                            path.display()
                        )));
                    }
                }
                conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err)?;
                if mode == OpenMode::Create {
                    migrate(&mut conn, path)?;
                }
            }
            OpenMode::Existing => {
                // A login's connection is short-lived and almost never writes: closing it must not
                // checkpoint and delete the WAL, which the next login would then have to recreate and
                // recover (most of a login's store time). The CLI's connections and SQLite's automatic
                // checkpoints keep the WAL small.
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                    .map_err(|e| not_a_store(path, db_err(e)))?;
                conn.pragma_update(None, "synchronous", "NORMAL")
                    .map_err(|e| not_a_store(path, db_err(e)))?;
                check_version(&conn, path)?;
            }
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            created,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PRAGMA integrity_check`: `"ok"` when the file is sound, else SQLite's findings, one per line.
    pub fn integrity_check(&self, deadline: Instant) -> Result<String, StoreError> {
        let conn = self.conn(deadline)?;
        let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(db_err)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db_err)?;
        let mut lines = Vec::new();
        for row in rows {
            lines.push(row.map_err(db_err)?);
        }
        Ok(lines.join("\n"))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (Transaction rolls back on drop),
        // so the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, set to wait for another process's lock until `deadline` at most.
    fn conn(&self, deadline: Instant) -> Result<MutexGuard<'_, Connection>, StoreError> {
        let conn = self.lock();
        set_timeout(&conn, remaining(deadline, "a store query")?)?;
        Ok(conn)
    }

    /// Runs `f` in an IMMEDIATE transaction: committed if `f` succeeds, rolled back otherwise.
    fn write<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn(deadline)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }
}

impl PairingStore for SqliteStore {
    fn get(&self, user: &str, deadline: Instant) -> Result<Option<Pairing>, StoreError> {
        check_user(user)?;
        let conn = self.conn(deadline)?;
        let raw = conn
            .query_row(
                &format!("SELECT {PAIRING_COLUMNS} FROM pairings WHERE user_name = ?1"),
                [user],
                RawPairing::from_row,
            )
            .optional()
            .map_err(db_err)?;
        raw.map(RawPairing::into_pairing).transpose()
    }

    fn insert(&self, pairing: &Pairing, deadline: Instant) -> Result<(), StoreError> {
        check_user(&pairing.user)?;
        check_value("account id", &pairing.account_id)?;
        if let Some(id) = &pairing.totp_id {
            check_value("TOTP id", id)?;
        }
        let now = unix_now();
        self.write(deadline, |tx| {
            let inserted = tx.execute(
                "INSERT INTO pairings (user_name, account_id, enabled, totp_enabled, totp_id, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    pairing.user,
                    pairing.account_id,
                    pairing.enabled,
                    pairing.totp_enabled,
                    pairing.totp_id,
                    now
                ],
            );
            match inserted {
                Ok(_) => {}
                Err(e) if is_key_violation(&e) => return Err(StoreError::AlreadyPaired),
                Err(e) => return Err(db_err(e)),
            }
            tx.execute("DELETE FROM pending_pairings WHERE user_name = ?1", [&pairing.user])
                .map_err(db_err)?;
            Ok(())
        })
    }

    fn set_pending(&self, pending: &PendingPairing, deadline: Instant) -> Result<(), StoreError> {
        check_user(&pending.user)?;
        check_value("account id", &pending.account_id)?;
        check_value("pairing key", &pending.key)?;
        let now = unix_now();
        self.write(deadline, |tx| {
            let paired: Option<i64> = tx
                .query_row("SELECT 1 FROM pairings WHERE user_name = ?1", [&pending.user], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)?;
            if paired.is_some() {
                return Err(StoreError::AlreadyPaired);
            }
            tx.execute(
                "INSERT OR REPLACE INTO pending_pairings (user_name, account_id, pairing_key, created)
                 VALUES (?1, ?2, ?3, ?4)",
                params![pending.user, pending.account_id, pending.key, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    fn pending(&self, user: &str, deadline: Instant) -> Result<Option<PendingPairing>, StoreError> {
        check_user(user)?;
        let conn = self.conn(deadline)?;
        conn.query_row(
            "SELECT account_id, pairing_key FROM pending_pairings WHERE user_name = ?1",
            [user],
            |r| {
                Ok(PendingPairing {
                    user: user.to_string(),
                    account_id: r.get(0)?,
                    key: r.get(1)?,
                })
            },
        )
        .optional()
        .map_err(db_err)
    }

    fn remove(&self, user: &str, deadline: Instant) -> Result<Option<Pairing>, StoreError> {
        check_user(user)?;
        let raw = self.write(deadline, |tx| {
            tx.execute("DELETE FROM pending_pairings WHERE user_name = ?1", [user])
                .map_err(db_err)?;
            tx.query_row(
                &format!("DELETE FROM pairings WHERE user_name = ?1 RETURNING {PAIRING_COLUMNS}"),
                [user],
                RawPairing::from_row,
            )
            .optional()
            .map_err(db_err)
        })?;
        raw.map(RawPairing::into_pairing).transpose()
    }

    fn list(&self, deadline: Instant) -> Result<Vec<Pairing>, StoreError> {
        let conn = self.conn(deadline)?;
        let mut stmt = conn
            .prepare(&format!("SELECT {PAIRING_COLUMNS} FROM pairings ORDER BY user_name"))
            .map_err(db_err)?;
        let rows = stmt.query_map([], RawPairing::from_row).map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(db_err)?.into_pairing()?);
        }
        Ok(out)
    }

    fn set_totp(&self, user: &str, enabled: bool, totp_id: Option<&str>, deadline: Instant) -> Result<(), StoreError> {
        check_user(user)?;
        if let Some(id) = totp_id {
            check_value("TOTP id", id)?;
        }
        let now = unix_now();
        self.write(deadline, |tx| {
            let changed = tx
                .execute(
                    "UPDATE pairings SET totp_enabled = ?2, totp_id = ?3, updated = ?4 WHERE user_name = ?1",
                    params![user, enabled, totp_id, now],
                )
                .map_err(db_err)?;
            if changed == 0 {
                Err(StoreError::NotPaired)
            } else {
                Ok(())
            }
        })
    }

    fn local_totp(&self, user: &str, deadline: Instant) -> Result<Option<LocalTotp>, StoreError> {
        check_user(user)?;
        let conn = self.conn(deadline)?;
        let raw = conn
            .query_row(
                "SELECT totp_secret, totp_last_step, totp_failures, totp_window_start
                 FROM pairings WHERE user_name = ?1",
                [user],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err)?;
        let Some((Some(secret), last_step, failures, window_start)) = raw else {
            return Ok(None);
        };
        let secret = Secret::new(secret);
        Ok(Some(LocalTotp {
            secret,
            last_step: last_step.map(|s| from_db("totp_last_step", s)).transpose()?,
            failures: from_db("totp_failures", failures)?,
            window_start: from_db("totp_window_start", window_start)?,
        }))
    }

    fn set_local_totp(&self, user: &str, state: Option<&LocalTotp>, deadline: Instant) -> Result<(), StoreError> {
        check_user(user)?;
        let now = unix_now();
        let changed = match state {
            Some(state) => {
                check_value("TOTP secret", state.secret.expose())?;
                let last_step = state.last_step.map(|s| to_db("last TOTP step", s)).transpose()?;
                let window_start = to_db("TOTP window start", state.window_start)?;
                self.write(deadline, |tx| {
                    tx.execute(
                        "UPDATE pairings SET totp_secret = ?2, totp_last_step = ?3, totp_failures = ?4,
                         totp_window_start = ?5, updated = ?6 WHERE user_name = ?1",
                        params![
                            user,
                            state.secret.expose(),
                            last_step,
                            state.failures,
                            window_start,
                            now
                        ],
                    )
                    .map_err(db_err)
                })?
            }
            None => self.write(deadline, |tx| {
                tx.execute(
                    "UPDATE pairings SET totp_secret = NULL, totp_last_step = NULL, totp_failures = 0,
                     totp_window_start = 0, updated = ?2 WHERE user_name = ?1",
                    params![user, now],
                )
                .map_err(db_err)
            })?,
        };
        if changed == 0 {
            Err(StoreError::NotPaired)
        } else {
            Ok(())
        }
    }

    fn accept_totp_step(&self, user: &str, step: u64, deadline: Instant) -> Result<bool, StoreError> {
        check_user(user)?;
        let step = to_db("TOTP step", step)?;
        let now = unix_now();
        self.write(deadline, |tx| {
            let changed = tx
                .execute(
                    "UPDATE pairings SET totp_last_step = ?2, updated = ?3
                     WHERE user_name = ?1 AND totp_secret IS NOT NULL
                       AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                    params![user, step, now],
                )
                .map_err(db_err)?;
            Ok(changed == 1)
        })
    }

    fn record_totp_failure(
        &self,
        user: &str,
        now: u64,
        period_secs: u64,
        deadline: Instant,
    ) -> Result<u32, StoreError> {
        check_user(user)?;
        let stamp = unix_now();
        self.write(deadline, |tx| {
            let Some((failures, window_start)) = read_failures(tx, user)? else {
                return Err(StoreError::NotPaired);
            };
            let (failures, window_start) = if in_window(now, window_start, period_secs) {
                (failures.saturating_add(1), window_start)
            } else {
                (1, now)
            };
            tx.execute(
                "UPDATE pairings SET totp_failures = ?2, totp_window_start = ?3, updated = ?4 WHERE user_name = ?1",
                params![user, failures, to_db("TOTP window start", window_start)?, stamp],
            )
            .map_err(db_err)?;
            Ok(failures)
        })
    }

    fn clear_totp_failures(&self, user: &str, deadline: Instant) -> Result<(), StoreError> {
        check_user(user)?;
        let stamp = unix_now();
        self.write(deadline, |tx| {
            tx.execute(
                "UPDATE pairings SET totp_failures = 0, updated = ?2 WHERE user_name = ?1",
                params![user, stamp],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    fn totp_failures(&self, user: &str, now: u64, period_secs: u64, deadline: Instant) -> Result<u32, StoreError> {
        check_user(user)?;
        let conn = self.conn(deadline)?;
        Ok(match read_failures(&conn, user)? {
            Some((failures, window_start)) if in_window(now, window_start, period_secs) => failures,
            _ => 0,
        })
    }

    fn schema_version(&self, deadline: Instant) -> Result<u32, StoreError> {
        read_version(&*self.conn(deadline)?)
    }

    fn export(&self, deadline: Instant) -> Result<Snapshot, StoreError> {
        let mut conn = self.conn(deadline)?;
        // One read transaction: the two tables as of one moment.
        let tx = conn.transaction().map_err(db_err)?;
        let conn = &tx;
        let mut stmt = conn
            .prepare(&format!("SELECT {RECORD_COLUMNS} FROM pairings ORDER BY user_name"))
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    RawPairing::from_row(r)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    [
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, i64>(10)?,
                    ],
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (raw, secret, last_step, [failures, window_start, created, updated]) = row.map_err(db_err)?;
            out.push(Record {
                pairing: raw.into_pairing()?,
                totp_secret: secret.map(Secret::new),
                totp_last_step: last_step.map(|s| from_db("totp_last_step", s)).transpose()?,
                totp_failures: from_db("totp_failures", failures)?,
                totp_window_start: from_db("totp_window_start", window_start)?,
                created: from_db("created", created)?,
                updated: from_db("updated", updated)?,
            });
        }
        drop(stmt);
        let mut stmt = conn
            .prepare("SELECT user_name, account_id, pairing_key FROM pending_pairings ORDER BY user_name")
            .map_err(db_err)?;
        let pending = stmt
            .query_map([], |r| {
                Ok(PendingPairing {
                    user: r.get(0)?,
                    account_id: r.get(1)?,
                    key: r.get(2)?,
                })
            })
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        drop(stmt);
        tx.finish().map_err(db_err)?;
        Ok(Snapshot { records: out, pending })
    }

    fn import(&self, snapshot: &Snapshot, replace: bool, deadline: Instant) -> Result<(), StoreError> {
        snapshot.check()?;
        self.write(deadline, |tx| {
            let held: i64 = tx
                .query_row(
                    "SELECT (SELECT count(*) FROM pairings) + (SELECT count(*) FROM pending_pairings)",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if held > 0 && !replace {
                return Err(StoreError::NotEmpty {
                    pairings: usize::try_from(held).unwrap_or(usize::MAX),
                });
            }
            tx.execute("DELETE FROM pairings", []).map_err(db_err)?;
            tx.execute("DELETE FROM pending_pairings", []).map_err(db_err)?;
            let mut stmt = tx
                .prepare(&format!(
                    "INSERT INTO pairings ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))
                .map_err(db_err)?;
            for r in &snapshot.records {
                let p = &r.pairing;
                stmt.execute(params![
                    p.user,
                    p.account_id,
                    p.enabled,
                    p.totp_enabled,
                    p.totp_id,
                    r.totp_secret.as_ref().map(Secret::expose),
                    r.totp_last_step.map(|s| to_db("last TOTP step", s)).transpose()?,
                    r.totp_failures,
                    to_db("TOTP window start", r.totp_window_start)?,
                    to_db("created", r.created)?,
                    to_db("updated", r.updated)?,
                ])
                .map_err(|e| {
                    if is_key_violation(&e) {
                        StoreError::Invalid(format!("the user {} appears twice", p.user))
                    } else {
                        db_err(e)
                    }
                })?;
            }
            drop(stmt);
            let now = unix_now();
            for p in &snapshot.pending {
                tx.execute(
                    "INSERT INTO pending_pairings (user_name, account_id, pairing_key, created) VALUES (?1, ?2, ?3, ?4)",
                    params![p.user, p.account_id, p.key, now],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
    }

    fn migrate(&self, deadline: Instant) -> Result<Migrated, StoreError> {
        let mut conn = self.conn(deadline)?;
        let from = if self.created { 0 } else { read_version(&conn)? };
        migrate(&mut conn, &self.path)?;
        Ok(Migrated {
            from,
            to: read_version(&conn)?,
        })
    }
}

/// A pairing row as stored, before its integers are checked.
struct RawPairing {
    user: String,
    account_id: String,
    enabled: i64,
    totp_enabled: i64,
    totp_id: Option<String>,
}

impl RawPairing {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPairing> {
        Ok(RawPairing {
            user: r.get(0)?,
            account_id: r.get(1)?,
            enabled: r.get(2)?,
            totp_enabled: r.get(3)?,
            totp_id: r.get(4)?,
        })
    }

    fn into_pairing(self) -> Result<Pairing, StoreError> {
        Ok(Pairing {
            enabled: flag("enabled", self.enabled)?,
            totp_enabled: flag("totp_enabled", self.totp_enabled)?,
            user: self.user,
            account_id: self.account_id,
            totp_id: self.totp_id,
        })
    }
}

/// The failure counter and window start of `user`; `None` when the user has no pairing.
fn read_failures(conn: &Connection, user: &str) -> Result<Option<(u32, u64)>, StoreError> {
    let raw = conn
        .query_row(
            "SELECT totp_failures, totp_window_start FROM pairings WHERE user_name = ?1",
            [user],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()
        .map_err(db_err)?;
    raw.map(|(f, w)| Ok((from_db("totp_failures", f)?, from_db("totp_window_start", w)?)))
        .transpose()
}

/// Whether the rate-limit window that started at `window_start` still runs at `now`. A window that
/// starts after `now` (the clock went back) still runs: stepping the clock back must not reset the count.
fn in_window(now: u64, window_start: u64, period_secs: u64) -> bool {
    // `window_start + period` is never below `window_start`, so this also holds when `now < window_start`.
    now < window_start.saturating_add(period_secs)
}

/// Create mode: the parent directory (0700) and, if there is no store yet, a new one, 0600 whatever the
/// umask. The new store is made complete (WAL, every migration) under a temporary name and then linked
/// into place, so a login never meets a half-made store (an empty file is refused: issue #9 hole 3).
/// Returns whether this call made it.
fn prepare_file(path: &Path) -> Result<bool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(&format!("cannot create directory {}", dir.display()), e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err(&format!("cannot chmod directory {}", dir.display()), e))?;
    }
    if fs::symlink_metadata(path).is_ok() {
        // There already: its permissions and schema are checked next.
        return Ok(false);
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(
        ".new-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let made = build_new_store(&tmp, path).and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        // Another CLI linked its own first: use that one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(&format!("cannot create {}", path.display()), e)),
    });
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut side = tmp.as_os_str().to_os_string();
        side.push(suffix);
        let _ = fs::remove_file(PathBuf::from(side));
    }
    made
}

/// A complete store at `tmp` (messages name `path`, where it is going).
fn build_new_store(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_err(&format!("cannot create {}", tmp.display()), e))?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err(&format!("cannot chmod {}", tmp.display()), e))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(tmp, flags)
        .map_err(|e| unavailable(&format!("cannot open {}", tmp.display()), e))?;
    let journal: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "cannot switch {} to WAL journal mode (it stays {journal})",
            path.display()
        )));
    }
    migrate(&mut conn, path)?;
    // Closing the only connection checkpoints the WAL into the file and removes it.
    conn.close().map_err(|(_, e)| db_err(e))
}

/// Refuses a store that someone other than root (or the process's own uid) could change or put in place:
/// the file, its directories and its side files ([`crate::safe_path::check_store_file`]). A missing file
/// is [`StoreError::Missing`].
pub(crate) fn check_permissions(path: &Path) -> Result<(), StoreError> {
    let own_uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    crate::safe_path::check_store_file(path, Some(own_uid)).map_err(|p| {
        if p.not_found {
            StoreError::Missing
        } else {
            StoreError::Unavailable(p.to_string())
        }
    })
}

fn set_timeout(conn: &Connection, timeout: Duration) -> Result<(), StoreError> {
    // rusqlite panics above i32::MAX milliseconds; cap it (that is 24 days).
    let max = Duration::from_millis(i32::MAX as u64);
    conn.busy_timeout(timeout.min(max)).map_err(db_err)
}

/// Runs `f` again while it fails with SQLITE_BUSY, until `deadline` at most: for the few statements
/// that return BUSY without consulting the busy handler.
fn retry_busy<T>(deadline: Instant, mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() + pause <= deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn read_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_err)?;
    // A negative version is no version of ours: report it as a huge (newer) one.
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

fn newer_error(path: &Path, found: u32) -> StoreError {
    StoreError::Unavailable(format!(
        "the pairing store {} has schema version {found}, newer than this build's version {SCHEMA_VERSION}: \
         upgrade lockserver (or restore a store made by this version)",
        path.display()
    ))
}

/// Existing mode: the file must be a pairing store at exactly this build's schema version. A file that
/// exists but is not a pairing store is refused, never taken for "nobody is paired": a truncated or
/// replaced store must not unlock every account.
fn check_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = read_version(conn).map_err(|e| not_a_store(path, e))?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    if found > SCHEMA_VERSION {
        return Err(newer_error(path, found));
    }
    if found == 0 {
        return Err(foreign_or_empty(conn, path));
    }
    Err(StoreError::Outdated {
        path: path.display().to_string(),
        found,
        wanted: SCHEMA_VERSION,
    })
}

/// Why a file at schema version 0 is no pairing store: empty, or another program's SQLite database.
fn foreign_or_empty(conn: &Connection, path: &Path) -> StoreError {
    let objects: Result<i64, _> = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0));
    match objects {
        Ok(0) => StoreError::Unavailable(format!(
            "{} exists but holds no pairing store (an empty file): restore it from a backup, or remove it \
             and run `lockserver migrate` as root to start with nobody paired",
            path.display()
        )),
        Ok(_) => StoreError::Unavailable(format!(
            "{} is a SQLite database without the lockserver schema (another program's file?): point \
             `store` at the pairing store",
            path.display()
        )),
        Err(e) => not_a_store(path, db_err(e)),
    }
}

/// A read of the file failed: say which file, and that it may not be a store at all.
fn not_a_store(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) if why != "store busy" => {
            StoreError::Unavailable(format!("{} cannot be read as a pairing store: {why}", path.display()))
        }
        other => other,
    }
}

/// Create mode: applies the pending migrations in one IMMEDIATE transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found = read_version(conn)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    // Read again under the write lock: another CLI may have migrated meanwhile.
    let found = read_version(&tx).map_err(|e| not_a_store(path, e))?;
    if found > SCHEMA_VERSION {
        return Err(newer_error(path, found));
    }
    if found == 0 {
        // Ours to create only if nothing is in it: never add our table to another program's database.
        let objects: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(db_err)?;
        if objects != 0 {
            return Err(foreign_or_empty(&tx, path));
        }
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)
            .map_err(|e| unavailable(&format!("migration {} of {} failed", n + 1, path.display()), e))?;
    }
    if found < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db_err)?;
        log::info!(
            "pairing store {} migrated from schema version {found} to {SCHEMA_VERSION}",
            path.display()
        );
    }
    tx.commit().map_err(db_err)
}

fn flag(column: &str, v: i64) -> Result<bool, StoreError> {
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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn is_key_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error().is_some_and(|err| {
        err.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY || err.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
    })
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if is_busy(&e) {
        StoreError::Unavailable("store busy".into())
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn unavailable(context: &str, e: rusqlite::Error) -> StoreError {
    if is_busy(&e) {
        StoreError::Unavailable("store busy".into())
    } else {
        StoreError::Unavailable(format!("{context}: {e}"))
    }
}

fn io_err(context: &str, e: io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockserver-sqlite-unit-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn pairing(user: &str) -> Pairing {
        Pairing {
            user: user.into(),
            account_id: format!("acct-{user}"),
            enabled: true,
            totp_enabled: false,
            totp_id: None,
        }
    }

    #[test]
    fn send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
    }

    #[test]
    fn schema_version_counts_migrations() {
        const { assert!(SCHEMA_VERSION >= 1) };
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    }

    #[test]
    fn window_rules() {
        assert!(in_window(100, 90, 60));
        assert!(!in_window(150, 90, 60));
        assert!(!in_window(151, 90, 60));
        // The clock went back: the window keeps counting.
        assert!(in_window(50, 90, 60));
        // Huge values do not overflow.
        assert!(in_window(u64::MAX - 1, u64::MAX - 10, u64::MAX));
        assert!(!in_window(u64::MAX, 0, 10));
    }

    #[test]
    fn create_twice_is_idempotent_and_wal() {
        let dir = temp_dir("twice");
        let path = dir.join("sub").join("store.db");
        let a = SqliteStore::open(&path, OpenMode::Create).expect("create");
        a.insert(&pairing("alice"), later()).expect("insert");
        drop(a);
        let b = SqliteStore::open(&path, OpenMode::Create).expect("create again");
        assert_eq!(b.schema_version(later()), Ok(SCHEMA_VERSION));
        assert_eq!(b.list(later()).map(|l| l.len()), Ok(1));
        let journal: String = b
            .lock()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(journal, "wal");
        drop(b);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn huge_values_are_refused_not_panicked() {
        let dir = temp_dir("huge");
        let path = dir.join("store.db");
        let s = SqliteStore::open(&path, OpenMode::Create).expect("create");
        s.insert(&pairing("bob"), later()).expect("insert");
        let state = LocalTotp {
            secret: Secret::new("JBSWY3DPEHPK3PXP"),
            last_step: Some(u64::MAX),
            failures: u32::MAX,
            window_start: 0,
        };
        assert!(matches!(
            s.set_local_totp("bob", Some(&state), later()),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.accept_totp_step("bob", u64::MAX, later()),
            Err(StoreError::Invalid(_))
        ));
        // A far deadline (rusqlite panics on a busy timeout above i32::MAX ms) is capped, not a panic.
        let far = Instant::now()
            .checked_add(Duration::from_secs(1 << 40))
            .unwrap_or_else(later);
        assert!(matches!(s.get("bob", far), Ok(Some(_))));
        assert!(matches!(
            s.insert(
                &Pairing {
                    account_id: String::new(),
                    ..pairing("carol")
                },
                later()
            ),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(s.get("bad\nname", later()), Err(StoreError::Invalid(_))));
        drop(s);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_flags_are_unavailable() {
        let dir = temp_dir("corrupt");
        let path = dir.join("store.db");
        let s = SqliteStore::open(&path, OpenMode::Create).expect("create");
        s.insert(&pairing("dave"), later()).expect("insert");
        // Bypass the CHECK constraints as a hand-edited file would.
        let conn = s.lock();
        conn.execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE pairings SET enabled = 7;")
            .expect("corrupt");
        drop(conn);
        assert!(matches!(s.get("dave", later()), Err(StoreError::Unavailable(m)) if m.contains("corrupt")));
        drop(s);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn busy_maps_to_store_busy_at_the_deadline() {
        let dir = temp_dir("busy");
        let path = dir.join("store.db");
        let a = SqliteStore::open(&path, OpenMode::Create).expect("create");
        let b = SqliteStore::open(&path, OpenMode::Existing).expect("open");
        a.insert(&pairing("erin"), later()).expect("insert");
        let mut held = a.lock();
        let tx = held
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("lock");
        let start = Instant::now();
        // A deadline already past fails at once, without touching the file.
        assert!(matches!(
            b.insert(&pairing("frank"), start),
            Err(StoreError::Unavailable(m)) if m.contains("store busy")
        ));
        // Reads still work under WAL while a writer holds the lock.
        assert!(matches!(b.get("erin", later()), Ok(Some(_))));
        assert_eq!(
            b.set_totp("erin", true, None, Instant::now() + Duration::from_millis(200)),
            Err(StoreError::Unavailable("store busy".into()))
        );
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(150), "waited {waited:?}");
        assert!(waited < Duration::from_secs(3), "waited {waited:?}");
        drop(tx);
        drop(held);
        b.set_totp("erin", true, None, later()).expect("after the lock is gone");
        drop((a, b));
        let _ = fs::remove_dir_all(&dir);
    }
}
