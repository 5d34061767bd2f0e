//! The pairing store suite. One set of assertions (CRUD, TOTP facts and their atomic updates, invalid
//! values, concurrent writers with their own connections) runs against both backends: a SQLite file
//! (`mod sqlite`) and a fresh database on a real PostgreSQL server (`mod postgres`, the server that
//! `scripts/test.sh` starts; see [`Backend::postgres`]). Then what only SQLite has: files, migrations and
//! versions on disk, permissions, and writers in child processes re-executing this test binary.

#[path = "common/cases.rs"]
mod cases;

use lockserver::config::Secret;
use lockserver::store::sqlite::{SCHEMA_VERSION, SqliteStore};
use lockserver::store::{LocalTotp, Location, OpenMode, Pairing, PairingStore, PendingPairing, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set in a child process: `<db path>|<worker id>` runs one concurrency worker.
const CHILD_ENV: &str = "LOCKSERVER_STORE_TEST_CHILD";
/// Set in a child process: the store path to create under `umask 000`.
const UMASK_ENV: &str = "LOCKSERVER_STORE_TEST_UMASK_PATH";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "lockserver-store-test-{}-{}-{nanos}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The deadline of a test's store call: far enough never to matter unless a test waits for a lock.
fn later() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn pairing(user: &str) -> Pairing {
    Pairing {
        user: user.into(),
        account_id: format!("account-of-{user}"),
        enabled: true,
        totp_enabled: false,
        totp_id: None,
    }
}

fn totp_state(secret: &str) -> LocalTotp {
    LocalTotp {
        secret: Secret::new(secret),
        last_step: None,
        failures: 0,
        window_start: 0,
    }
}

fn unavailable_message(result: Result<SqliteStore, StoreError>) -> String {
    match result {
        Err(StoreError::Unavailable(m)) => m,
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, the store opened"),
    }
}

fn crud(b: &Backend) {
    let store = b.open(OpenMode::Create);
    assert_eq!(store.schema_version(later()), Ok(b.schema_version()));

    assert_eq!(store.get("alice", later()), Ok(None));
    assert_eq!(store.list(later()), Ok(vec![]));
    store.insert(&pairing("carol"), later()).expect("insert carol");
    store.insert(&pairing("alice"), later()).expect("insert alice");
    let bob = Pairing {
        enabled: false,
        totp_enabled: true,
        totp_id: Some("totp-bob".into()),
        ..pairing("bob")
    };
    store.insert(&bob, later()).expect("insert bob");
    assert_eq!(store.get("alice", later()), Ok(Some(pairing("alice"))));
    assert_eq!(store.get("bob", later()), Ok(Some(bob.clone())));
    // Ordered by user name.
    assert_eq!(
        store.list(later()),
        Ok(vec![pairing("alice"), bob.clone(), pairing("carol")])
    );

    // LOCK_TOTP_ENABLED / LOCK_TOTP_ID.
    store
        .set_totp("alice", true, Some("totp-1"), later())
        .expect("set_totp");
    let alice = store.get("alice", later()).expect("get").expect("paired");
    assert!(alice.totp_enabled);
    assert_eq!(alice.totp_id.as_deref(), Some("totp-1"));
    store.set_totp("alice", false, None, later()).expect("set_totp off");
    assert_eq!(store.get("alice", later()), Ok(Some(pairing("alice"))));

    // Local TOTP state.
    assert_eq!(store.local_totp("alice", later()), Ok(None));
    let state = LocalTotp {
        secret: Secret::new("JBSWY3DPEHPK3PXP"),
        last_step: Some(55_000_000),
        failures: 2,
        window_start: 1_700_000_000,
    };
    store
        .set_local_totp("alice", Some(&state), later())
        .expect("set_local_totp");
    assert_eq!(store.local_totp("alice", later()), Ok(Some(state.clone())));
    assert_eq!(store.local_totp("carol", later()), Ok(None));

    // Replay protection: only newer steps are accepted.
    assert_eq!(store.accept_totp_step("alice", 55_000_000, later()), Ok(false));
    assert_eq!(store.accept_totp_step("alice", 54_999_999, later()), Ok(false));
    assert_eq!(store.accept_totp_step("alice", 55_000_001, later()), Ok(true));
    assert_eq!(store.accept_totp_step("alice", 55_000_001, later()), Ok(false));
    assert_eq!(
        store.local_totp("alice", later()).map(|s| s.and_then(|s| s.last_step)),
        Ok(Some(55_000_001))
    );
    // No local TOTP: nothing to accept.
    assert_eq!(store.accept_totp_step("carol", 1, later()), Ok(false));

    // Rate-limit window: the stored window (1_700_000_000, 2 failures) runs for 60 s.
    let start = 1_700_000_000;
    assert_eq!(store.totp_failures("alice", start + 10, 60, later()), Ok(2));
    assert_eq!(store.record_totp_failure("alice", start + 10, 60, later()), Ok(3));
    assert_eq!(store.totp_failures("alice", start + 59, 60, later()), Ok(3));
    assert_eq!(store.totp_failures("alice", start + 60, 60, later()), Ok(0));
    assert_eq!(store.clear_totp_failures("alice", later()), Ok(()));
    assert_eq!(store.totp_failures("alice", start + 10, 60, later()), Ok(0));
    assert_eq!(store.record_totp_failure("alice", start + 10, 60, later()), Ok(1));
    // An expired window restarts with one failure at `now`.
    assert_eq!(store.record_totp_failure("alice", start + 100, 60, later()), Ok(1));
    assert_eq!(store.totp_failures("alice", start + 120, 60, later()), Ok(1));
    let now_state = store.local_totp("alice", later()).expect("read").expect("present");
    assert_eq!((now_state.failures, now_state.window_start), (1, start + 100));
    // A user without local TOTP still has a counter (the row exists).
    assert_eq!(store.record_totp_failure("carol", start, 60, later()), Ok(1));
    assert_eq!(store.totp_failures("carol", start, 60, later()), Ok(1));
    // Nobody: no failures, and nothing to record on.
    assert_eq!(store.totp_failures("nobody", start, 60, later()), Ok(0));

    // Clearing the local TOTP state clears the counters too.
    store.set_local_totp("alice", None, later()).expect("clear");
    assert_eq!(store.local_totp("alice", later()), Ok(None));
    assert_eq!(store.totp_failures("alice", start + 100, 60, later()), Ok(0));

    // Everything survives reopening, in Existing mode (what a login does).
    drop(store);
    let store = b.open(OpenMode::Existing);
    assert_eq!(store.list(later()).map(|l| l.len()), Ok(3));
    assert_eq!(store.get("bob", later()), Ok(Some(bob)));

    // Unicode and long-but-valid names are fine.
    let long = "x".repeat(256);
    for user in ["josé", "DOMAIN\\user", "user@example.com", long.as_str()] {
        store.insert(&pairing(user), later()).expect("insert unusual name");
        assert_eq!(store.get(user, later()), Ok(Some(pairing(user))));
    }
}

fn already_paired(b: &Backend) {
    let store = b.open(OpenMode::Create);
    store.insert(&pairing("alice"), later()).expect("first insert");
    let other = Pairing {
        account_id: "another-account".into(),
        ..pairing("alice")
    };
    assert_eq!(store.insert(&other, later()), Err(StoreError::AlreadyPaired));
    // The first pairing is untouched.
    assert_eq!(store.get("alice", later()), Ok(Some(pairing("alice"))));
    // Another connection sees the same.
    let second = b.open(OpenMode::Existing);
    assert_eq!(second.insert(&other, later()), Err(StoreError::AlreadyPaired));
}

fn remove_returns_the_row_and_clears_totp_facts(b: &Backend) {
    let store = b.open(OpenMode::Create);
    store.insert(&pairing("alice"), later()).expect("insert");
    store
        .set_totp("alice", true, Some("totp-42"), later())
        .expect("set_totp");
    store
        .set_local_totp("alice", Some(&totp_state("JBSWY3DPEHPK3PXP")), later())
        .expect("local");
    assert_eq!(store.accept_totp_step("alice", 7, later()), Ok(true));
    assert_eq!(store.record_totp_failure("alice", 1000, 60, later()), Ok(1));

    let removed = store.remove("alice", later()).expect("remove");
    assert_eq!(
        removed,
        Some(Pairing {
            totp_enabled: true,
            totp_id: Some("totp-42".into()),
            ..pairing("alice")
        })
    );
    assert_eq!(store.get("alice", later()), Ok(None));
    assert_eq!(store.local_totp("alice", later()), Ok(None));
    assert_eq!(store.totp_failures("alice", 1000, 60, later()), Ok(0));
    assert_eq!(store.remove("alice", later()), Ok(None));

    // Pairing again starts from nothing: no TOTP left over (the seed: unpairing removes the TOTP).
    store.insert(&pairing("alice"), later()).expect("pair again");
    assert_eq!(store.get("alice", later()), Ok(Some(pairing("alice"))));
    assert_eq!(store.local_totp("alice", later()), Ok(None));
    assert_eq!(store.accept_totp_step("alice", 8, later()), Ok(false));
}

fn unpaired_users(b: &Backend) {
    let store = b.open(OpenMode::Create);
    assert_eq!(
        store.set_totp("ghost", true, Some("t"), later()),
        Err(StoreError::NotPaired)
    );
    assert_eq!(
        store.set_local_totp("ghost", Some(&totp_state("JBSWY3DPEHPK3PXP")), later()),
        Err(StoreError::NotPaired)
    );
    assert_eq!(store.set_local_totp("ghost", None, later()), Err(StoreError::NotPaired));
    assert_eq!(
        store.record_totp_failure("ghost", 1, 60, later()),
        Err(StoreError::NotPaired)
    );
    assert_eq!(store.accept_totp_step("ghost", 1, later()), Ok(false));
    assert_eq!(store.local_totp("ghost", later()), Ok(None));
    assert_eq!(store.remove("ghost", later()), Ok(None));
    assert_eq!(store.list(later()), Ok(vec![]));
}

fn invalid_values_are_refused_without_panicking(b: &Backend) {
    let store = b.open(OpenMode::Create);
    let too_long = "u".repeat(257);
    let state = totp_state("JBSWY3DPEHPK3PXP");
    for user in ["", "a\nb", "a\0b", "tab\there", "\u{7f}", too_long.as_str()] {
        let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Invalid(_)));
        assert!(
            matches!(store.get(user, later()), Err(StoreError::Invalid(_))),
            "{user:?}"
        );
        assert!(invalid(store.insert(&pairing(user), later())), "{user:?}");
        assert!(
            matches!(store.remove(user, later()), Err(StoreError::Invalid(_))),
            "{user:?}"
        );
        assert!(invalid(store.set_totp(user, true, None, later())), "{user:?}");
        assert!(
            matches!(store.local_totp(user, later()), Err(StoreError::Invalid(_))),
            "{user:?}"
        );
        assert!(invalid(store.set_local_totp(user, Some(&state), later())), "{user:?}");
        assert!(
            matches!(store.accept_totp_step(user, 1, later()), Err(StoreError::Invalid(_))),
            "{user:?}"
        );
        assert!(
            matches!(
                store.record_totp_failure(user, 1, 60, later()),
                Err(StoreError::Invalid(_))
            ),
            "{user:?}"
        );
        assert!(
            matches!(store.totp_failures(user, 1, 60, later()), Err(StoreError::Invalid(_))),
            "{user:?}"
        );
    }
    store.insert(&pairing("alice"), later()).expect("insert");
    let bad_account = Pairing {
        account_id: "x\ny".into(),
        ..pairing("bob")
    };
    assert!(matches!(
        store.insert(&bad_account, later()),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_totp("alice", true, Some(""), later()),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_local_totp("alice", Some(&totp_state("")), later()),
        Err(StoreError::Invalid(_))
    ));
    let huge = LocalTotp {
        window_start: u64::MAX,
        ..totp_state("JBSWY3DPEHPK3PXP")
    };
    assert!(matches!(
        store.set_local_totp("alice", Some(&huge), later()),
        Err(StoreError::Invalid(_))
    ));
    // Nothing above was stored.
    assert_eq!(store.list(later()), Ok(vec![pairing("alice")]));
    assert_eq!(store.local_totp("alice", later()), Ok(None));
}

/// `store copy`'s two halves: export reads every column of both tables, import writes all or nothing
/// and refuses a store that holds pairings (or pending ones) unless told to replace them.
fn export_and_import_all_or_nothing(b: &Backend) {
    use lockserver::store::{PendingPairing, Record, Snapshot};
    let store = b.open(OpenMode::Create);
    store.insert(&pairing("alice"), later()).expect("insert");
    store
        .set_local_totp("alice", Some(&totp_state("JBSWY3DPEHPK3PXP")), later())
        .expect("totp");
    let pending = |user: &str| PendingPairing {
        user: user.into(),
        account_id: format!("{user}@pingid"),
        key: format!("key-of-{user}"),
    };
    store.set_pending(&pending("zoe"), later()).expect("pending");
    let exported = store.export(later()).expect("export");
    assert_eq!(exported.records.len(), 1);
    assert_eq!(exported.records[0].pairing, pairing("alice"));
    assert_eq!(
        exported.records[0].totp_secret.as_ref().map(|s| s.expose()),
        Some("JBSWY3DPEHPK3PXP")
    );
    assert_eq!(exported.pending, vec![pending("zoe")]);

    let record = |user: &str| Record {
        pairing: pairing(user),
        totp_secret: None,
        totp_last_step: Some(7),
        totp_failures: 3,
        totp_window_start: 1_700_000_000,
        created: 1_600_000_000,
        updated: 1_650_000_000,
    };
    let new = Snapshot {
        records: vec![record("bob"), record("carol")],
        pending: vec![pending("yann")],
    };
    assert_eq!(
        store.import(&new, false, later()),
        Err(StoreError::NotEmpty { pairings: 2 })
    );
    assert_eq!(
        store.export(later()).expect("export"),
        exported,
        "refused: nothing changed"
    );
    // A bad record (the last one), a user twice, or a user both paired and pending: nothing written.
    let mut bad = new.clone();
    bad.records.push(Record {
        pairing: Pairing {
            account_id: String::new(),
            ..pairing("dave")
        },
        ..record("dave")
    });
    let mut bad_pending = new.clone();
    bad_pending.pending.push(PendingPairing {
        key: String::new(),
        ..pending("xavier")
    });
    let twice = Snapshot {
        records: vec![record("bob"), record("bob")],
        pending: vec![],
    };
    let both = Snapshot {
        records: vec![record("bob")],
        pending: vec![pending("bob")],
    };
    for wrong in [&bad, &bad_pending, &twice, &both] {
        assert!(
            matches!(store.import(wrong, true, later()), Err(StoreError::Invalid(_))),
            "{wrong:?}"
        );
    }
    assert_eq!(
        store.export(later()).expect("export"),
        exported,
        "failed: nothing changed"
    );

    store.import(&new, true, later()).expect("replace");
    assert_eq!(store.export(later()).expect("export"), new, "every column as given");
    assert_eq!(store.get("alice", later()), Ok(None));
    assert_eq!(
        store.pending("zoe", later()),
        Ok(None),
        "replace removes pending pairings too"
    );
    assert_eq!(store.pending("yann", later()), Ok(Some(pending("yann"))));
    // The imported rows are live: the counters work on them.
    assert_eq!(store.totp_failures("bob", 1_700_000_010, 300, later()), Ok(3));
}

// ---------------------------------------------------------------------------------------------------
// The two backends.

#[path = "common/pg.rs"]
mod pg;

/// One store under test: a SQLite file in a temp dir, or a database of its own on the PostgreSQL server
/// (created for the test, dropped after it).
struct Backend {
    url: String,
    password: Option<Secret>,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres(pg::Database),
}

impl Backend {
    fn sqlite(tag: &str) -> Backend {
        let dir = TempDir::new(tag);
        Backend {
            url: format!("sqlite://{}", dir.path("store.db").display()),
            password: None,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A fresh database, or `None` (skipped) when no server is configured outside CI.
    fn postgres(tag: &str) -> Option<Backend> {
        let db = pg::database(tag)?;
        Some(Backend {
            url: db.url.clone(),
            password: Some(Secret::new(db.password.clone())),
            kind: Kind::Postgres(db),
        })
    }

    fn location(&self) -> Location<'_> {
        Location {
            url: &self.url,
            password: self.password.as_ref(),
            ca_file: None,
        }
    }

    fn try_open(&self, mode: OpenMode) -> Result<Box<dyn PairingStore + Send + Sync>, StoreError> {
        lockserver::store::open_at(&self.location(), mode, later())
    }

    fn open(&self, mode: OpenMode) -> Box<dyn PairingStore + Send + Sync> {
        self.try_open(mode)
            .unwrap_or_else(|e| panic!("open {} ({mode:?}): {e}", self.url))
    }

    fn schema_version(&self) -> u32 {
        match self.kind {
            Kind::Sqlite(_) => SCHEMA_VERSION,
            Kind::Postgres(_) => lockserver::store::postgres::SCHEMA_VERSION,
        }
    }

    /// The backend's own consistency check after a concurrent run.
    fn check_integrity(&self) {
        match &self.kind {
            Kind::Sqlite(_) => {
                let path = self.url.strip_prefix("sqlite://").expect("sqlite URL");
                let store = SqliteStore::open(Path::new(path), OpenMode::Existing).expect("existing");
                assert_eq!(store.integrity_check(later()), Ok("ok".to_string()));
            }
            // PostgreSQL checks its constraints itself; the model comparison that follows is the check.
            Kind::Postgres(_) => {}
        }
    }

    /// Runs SQL on the backend's database (not through the store).
    fn sql(&self, sql: &str) -> String {
        match &self.kind {
            Kind::Sqlite(_) => {
                let path = self.url.strip_prefix("sqlite://").expect("sqlite URL");
                let conn = rusqlite::Connection::open(path).expect("raw open");
                let mut stmt = conn.prepare(sql).expect("prepare");
                let rows = stmt
                    .query_map([], |r| r.get::<_, rusqlite::types::Value>(0))
                    .expect("query")
                    .map(|v| match v.expect("row") {
                        rusqlite::types::Value::Null => String::new(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>();
                rows.join("\n")
            }
            Kind::Postgres(db) => db.sql(sql),
        }
    }
}

/// A pairing the host started (PingID pairing key): recorded, replaced by a new key, refused for a
/// paired user, and cleared by the pairing that completes it or by `remove`.
fn pending_pairings(b: &Backend) {
    let store = b.open(OpenMode::Create);
    let pending = |key: &str| PendingPairing {
        user: "alice".into(),
        account_id: "alice".into(),
        key: key.into(),
    };
    assert_eq!(store.pending("alice", later()), Ok(None));
    store.set_pending(&pending("111111111111"), later()).expect("pending");
    store
        .set_pending(&pending("222222222222"), later())
        .expect("a new key replaces the old");
    assert_eq!(store.pending("alice", later()), Ok(Some(pending("222222222222"))));
    assert_eq!(store.get("alice", later()), Ok(None), "pending is not paired");
    assert_eq!(store.list(later()), Ok(vec![]));

    store
        .insert(&pairing("alice"), later())
        .expect("the claim completes it");
    assert_eq!(
        store.pending("alice", later()),
        Ok(None),
        "completed: no longer pending"
    );
    assert_eq!(
        store.set_pending(&pending("333333333333"), later()),
        Err(StoreError::AlreadyPaired)
    );
    assert_eq!(store.pending("alice", later()), Ok(None));

    store.remove("alice", later()).expect("unpair");
    store
        .set_pending(&pending("444444444444"), later())
        .expect("pending again");
    assert_eq!(store.remove("alice", later()), Ok(None), "nothing paired to return");
    assert_eq!(
        store.pending("alice", later()),
        Ok(None),
        "remove clears a pending pairing too"
    );
    assert!(matches!(
        store.set_pending(&pending(""), later()),
        Err(StoreError::Invalid(_))
    ));
}

/// Each function of the suite becomes a test per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Backend::sqlite(stringify!($name))); })*
        }
        mod postgres {
            $(#[test] fn $name() {
                if let Some(b) = super::Backend::postgres(stringify!($name)) {
                    super::$name(&b);
                }
            })*
        }
    };
}

suite!(
    crud,
    already_paired,
    remove_returns_the_row_and_clears_totp_facts,
    unpaired_users,
    pending_pairings,
    invalid_values_are_refused_without_panicking,
    concurrent_threads_with_their_own_connections,
    export_and_import_all_or_nothing,
);

// ---------------------------------------------------------------------------------------------------
// SQLite only: files, versions on disk, permissions, other processes.

#[test]
fn existing_mode_never_creates() {
    let dir = TempDir::new("missing");
    let path = dir.path("store.db");
    assert!(matches!(
        SqliteStore::open(&path, OpenMode::Existing),
        Err(StoreError::Missing)
    ));
    assert!(!path.exists(), "Existing mode created the file");
    let deep = dir.path("no/such/dir/store.db");
    assert!(matches!(
        SqliteStore::open(&deep, OpenMode::Existing),
        Err(StoreError::Missing)
    ));
    assert!(!dir.path("no").exists(), "Existing mode created a directory");

    // An empty file is no store: refused (a truncated store must not make everyone unpaired).
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("touch");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("empty file"), "{msg}");
    assert_eq!(
        fs::metadata(&path).map(|m| m.len()).ok(),
        Some(0),
        "Existing mode wrote to the file"
    );
    // The CLI makes it a store.
    let store = SqliteStore::open(&path, OpenMode::Create).expect("create over the empty file");
    store.insert(&pairing("alice"), later()).expect("insert");
    drop(store);
    let store = SqliteStore::open(&path, OpenMode::Existing).expect("existing");
    assert_eq!(store.get("alice", later()), Ok(Some(pairing("alice"))));

    // A directory, or a file that is not a database: Unavailable, no panic.
    let sub = dir.path("sub.db");
    fs::create_dir(&sub).expect("mkdir");
    let msg = unavailable_message(SqliteStore::open(&sub, OpenMode::Existing));
    assert!(msg.contains("not a regular file"), "{msg}");
    let junk = dir.path("junk.db");
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&junk)
        .expect("junk");
    fs::write(&junk, vec![0x5a_u8; 8192]).expect("write junk");
    unavailable_message(SqliteStore::open(&junk, OpenMode::Existing));
    unavailable_message(SqliteStore::open(&junk, OpenMode::Create));
}

#[test]
fn sqlite_file_without_our_schema_is_refused_and_left_alone() {
    let dir = TempDir::new("foreign");
    let path = dir.path("store.db");
    {
        // Another program's database: it has something in it, but not our schema (user_version 0).
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.execute_batch("CREATE TABLE unrelated (x INTEGER);")
            .expect("schema");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("without the lockserver schema"), "{msg}");
    // The CLI does not take it over either: no table of ours is added to someone else's file.
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Create));
    assert!(msg.contains("without the lockserver schema"), "{msg}");
    let tables = {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.query_row("SELECT group_concat(name) FROM sqlite_schema", [], |r| {
            r.get::<_, String>(0)
        })
        .expect("tables")
    };
    assert_eq!(tables, "unrelated");
    cases::record_case(
        "store-not-a-store",
        "local user / admin",
        "a store file that is empty, not SQLite, or SQLite without our schema",
        "refused (a login denies with PAM_SERVICE_ERR); the file is left alone",
        "busy timeout",
    );
}

#[test]
fn migrate_creates_then_has_nothing_left_to_do() {
    let dir = TempDir::new("migrate");
    let path = dir.path("sub/store.db");
    let url = format!("sqlite://{}", path.display());
    let location = Location::url(&url);
    let to = SCHEMA_VERSION;
    assert_eq!(
        lockserver::store::migrate(&location, later()),
        Ok(lockserver::store::Migrated { from: 0, to })
    );
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(
        lockserver::store::migrate(&location, later()),
        Ok(lockserver::store::Migrated { from: to, to })
    );
    let store = SqliteStore::open(&path, OpenMode::Existing).expect("a login opens it");
    assert_eq!(store.list(later()), Ok(vec![]));
}

#[test]
fn outdated_error_says_to_run_migrate() {
    let e = StoreError::Outdated {
        path: "/x.db".into(),
        found: 1,
        wanted: 2,
    };
    let msg = e.to_string();
    assert!(msg.contains("schema version 1"), "{msg}");
    assert!(msg.contains("`lockserver migrate` as root"), "{msg}");
}

#[test]
fn schema_newer_than_this_build() {
    let dir = TempDir::new("new");
    let path = dir.path("store.db");
    drop(SqliteStore::open(&path, OpenMode::Create).expect("create"));
    let newer = SCHEMA_VERSION + 3;
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.pragma_update(None, "user_version", newer).expect("bump version");
    }
    for mode in [OpenMode::Existing, OpenMode::Create] {
        let msg = unavailable_message(SqliteStore::open(&path, mode));
        assert!(msg.contains(&format!("schema version {newer}")), "{mode:?}: {msg}");
        assert!(msg.contains(&format!("version {SCHEMA_VERSION}")), "{mode:?}: {msg}");
        assert!(msg.contains("upgrade lockserver"), "{mode:?}: {msg}");
    }
    // Create mode did not touch it.
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, newer);
}

#[test]
fn created_root_only() {
    let dir = TempDir::new("perms");
    let path = dir.path("var/lib/lockserver/store.db");
    let store = SqliteStore::open(&path, OpenMode::Create).expect("create");
    store.insert(&pairing("alice"), later()).expect("insert");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&dir.path("var/lib/lockserver")), 0o700);
    // While a connection is open the WAL companions exist; SQLite copies the db file's mode.
    for suffix in ["-wal", "-shm"] {
        let c = companion(&path, suffix);
        assert!(c.exists(), "{} missing", c.display());
        assert_eq!(mode_of(&c), 0o600, "{}", c.display());
    }
    let journal: String = rusqlite::Connection::open(&path)
        .expect("raw")
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal");
    assert_eq!(journal, "wal");
}

#[test]
fn created_root_only_whatever_the_umask() {
    if let Ok(path) = std::env::var(UMASK_ENV) {
        // The child: runs under umask 000.
        if let Ok(status) = fs::read_to_string("/proc/self/status") {
            let umask = status.lines().find(|l| l.starts_with("Umask:"));
            assert_eq!(
                umask.map(|l| l.split_whitespace().last()),
                Some(Some("0000")),
                "umask not 000"
            );
        }
        let path = PathBuf::from(path);
        let store = SqliteStore::open(&path, OpenMode::Create).expect("create");
        store.insert(&pairing("alice"), later()).expect("insert");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().expect("parent")), 0o700);
        for suffix in ["-wal", "-shm"] {
            assert_eq!(mode_of(&companion(&path, suffix)), 0o600, "{suffix}");
        }
        return;
    }
    let dir = TempDir::new("umask");
    let path = dir.path("made/store.db");
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" --exact created_root_only_whatever_the_umask --nocapture --test-threads=1")
        .arg(&exe)
        .env(UMASK_ENV, &path)
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&dir.path("made")), 0o700);
    let store = SqliteStore::open(&path, OpenMode::Existing).expect("existing");
    assert_eq!(store.get("alice", later()), Ok(Some(pairing("alice"))));
}

#[test]
fn writable_by_others_is_refused() {
    let dir = TempDir::new("writable");
    let path = dir.path("store.db");
    drop(SqliteStore::open(&path, OpenMode::Create).expect("create"));

    for mode in [0o666, 0o620, 0o602] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
        assert!(msg.contains("writable by group or others"), "{mode:o}: {msg}");
        assert!(msg.contains("chmod 600"), "{mode:o}: {msg}");
        let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Create));
        assert!(msg.contains("chmod 600"), "{mode:o}: {msg}");
    }
    // Readable by others is refused too: SQLite gives the -wal and -shm files the database's mode, and
    // those must be private (#9); 0600 is what Create makes.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("chmod 600"), "{msg}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    for side in ["-wal", "-shm"] {
        let _ = fs::set_permissions(companion(&path, side), fs::Permissions::from_mode(0o600));
    }
    drop(SqliteStore::open(&path, OpenMode::Existing).expect("0600 opens"));

    // A writable WAL companion could inject pages: refused too.
    let wal = companion(&path, "-wal");
    let _ = fs::remove_file(&wal);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&wal)
        .expect("wal");
    fs::set_permissions(&wal, fs::Permissions::from_mode(0o666)).expect("chmod wal");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("-wal"), "{msg}");
    fs::remove_file(&wal).expect("rm wal");

    // A directory others can write to lets them replace the file.
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("directory"), "{msg}");
    // ... even a sticky one like /tmp: others can create the `-wal` or `-journal` file beside it.
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o1777)).expect("chmod dir");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("sticky"), "{msg}");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o700)).expect("chmod dir back");
    drop(SqliteStore::open(&path, OpenMode::Existing).expect("0700 dir"));

    // A side file that group or others can read is refused, not only a writable one.
    let journal = companion(&path, "-journal");
    fs::write(&journal, b"").expect("journal");
    fs::set_permissions(&journal, fs::Permissions::from_mode(0o644)).expect("chmod journal");
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("-journal") && msg.contains("chmod 600"), "{msg}");
    fs::remove_file(&journal).expect("rm journal");
    cases::record_case(
        "store-side-files",
        "local user",
        "a store file or a `-wal`/`-shm`/`-journal` side file others can read or write",
        "refused, naming the file and the fix",
        "busy timeout",
    );
}

#[test]
fn busy_timeout_bounds_the_wait() {
    let dir = TempDir::new("busy");
    let path = dir.path("store.db");
    let holder = SqliteStore::open(&path, OpenMode::Create).expect("create");
    holder.insert(&pairing("alice"), later()).expect("insert");
    // Another process holds the write lock (a raw connection in an open IMMEDIATE transaction).
    let raw = rusqlite::Connection::open(&path).expect("raw");
    raw.execute_batch("BEGIN IMMEDIATE").expect("lock");

    let login = SqliteStore::open(&path, OpenMode::Existing).expect("opening does not need the write lock");
    let start = Instant::now();
    assert_eq!(
        login.accept_totp_step("alice", 1, start + Duration::from_millis(300)),
        Err(StoreError::Unavailable("store busy".into()))
    );
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(250), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(login.get("alice", later()), Ok(Some(pairing("alice"))));
    // A login whose budget is spent gives up at once.
    let start = Instant::now();
    assert!(matches!(
        login.record_totp_failure("alice", 1, 60, start),
        Err(StoreError::Unavailable(m)) if m.contains("store busy")
    ));
    assert!(start.elapsed() < Duration::from_millis(200));

    // A writer waiting within its timeout gets through once the lock goes.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        raw.execute_batch("COMMIT").expect("unlock");
    });
    assert_eq!(login.record_totp_failure("alice", 1, 60, later()), Ok(1));
    releaser.join().expect("releaser");
}

// ---------------------------------------------------------------------------------------------------
// Concurrency.

const OPS: usize = 200;
const OWN_USERS: usize = 4;
const SHARED_USERS: [&str; 3] = ["shared-0", "shared-1", "shared-2"];
/// A rate-limit period no test outlives: every recorded failure counts in the same window.
const FOREVER: u64 = 1 << 40;
const NOW: u64 = 1_000_000;

/// xorshift64*: deterministic per worker, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What one worker did to the shared users.
#[derive(Default, Debug)]
struct SharedEffects {
    /// Failures recorded per shared user.
    failures: BTreeMap<String, u32>,
    /// Steps accepted per shared user.
    accepted: BTreeMap<String, Vec<u64>>,
}

/// One worker's own users: the model of what the store must hold for them.
type Model = HashMap<String, (Option<Pairing>, Option<LocalTotp>)>;

/// `OPS` random operations: inserts / removes / gets / set_totp / set_local_totp / list on this worker's
/// own users (checked against a per-user model at every step), and failure counters and TOTP steps on
/// users every worker shares. Panics on any divergence.
fn worker(store: &dyn PairingStore, id: u64) -> (Model, SharedEffects) {
    let mut rng = Rng::new(id + 1);
    let own: Vec<String> = (0..OWN_USERS).map(|n| format!("w{id}-u{n}")).collect();
    let mut model: Model = own.iter().map(|u| (u.clone(), (None, None))).collect();
    let mut effects = SharedEffects::default();
    // No retry on "store busy": with the default 5 s busy timeout, a busy answer here would be a bug
    // (a statement that bypasses the busy handler), not load.
    for op in 0..OPS {
        let user = &own[rng.below(OWN_USERS as u64) as usize];
        let shared = SHARED_USERS[rng.below(SHARED_USERS.len() as u64) as usize];
        let Some(entry) = model.get_mut(user) else {
            panic!("no model for {user}");
        };
        match rng.below(9) {
            0 | 1 => {
                let p = Pairing {
                    account_id: format!("acct-{id}-{op}"),
                    enabled: rng.below(2) == 0,
                    ..pairing(user)
                };
                let got = store.insert(&p, later());
                if entry.0.is_some() {
                    assert_eq!(got, Err(StoreError::AlreadyPaired), "insert {user}");
                } else {
                    assert_eq!(got, Ok(()), "insert {user}");
                    entry.0 = Some(p);
                }
            }
            2 => {
                let got = store.remove(user, later());
                assert_eq!(got, Ok(entry.0.take()), "remove {user}");
                entry.1 = None;
            }
            3 => {
                assert_eq!(store.get(user, later()), Ok(entry.0.clone()), "get {user}");
                assert_eq!(
                    store.local_totp(user, later()),
                    Ok(entry.1.clone()),
                    "local_totp {user}"
                );
            }
            4 => {
                let on = rng.below(2) == 0;
                let tid = format!("totp-{id}-{op}");
                let got = store.set_totp(user, on, on.then_some(tid.as_str()), later());
                match &mut entry.0 {
                    Some(p) => {
                        assert_eq!(got, Ok(()), "set_totp {user}");
                        p.totp_enabled = on;
                        p.totp_id = on.then_some(tid);
                    }
                    None => assert_eq!(got, Err(StoreError::NotPaired), "set_totp {user}"),
                }
            }
            5 => {
                let state = (rng.below(3) != 0).then(|| LocalTotp {
                    secret: Secret::new(format!("JBSWY3DPEHPK3PX{}", op % 10)),
                    last_step: Some(op as u64),
                    failures: (op % 5) as u32,
                    window_start: op as u64,
                });
                let got = store.set_local_totp(user, state.as_ref(), later());
                if entry.0.is_some() {
                    assert_eq!(got, Ok(()), "set_local_totp {user}");
                    entry.1 = state;
                } else {
                    assert_eq!(got, Err(StoreError::NotPaired), "set_local_totp {user}");
                }
            }
            6 => {
                let n = store
                    .record_totp_failure(shared, NOW, FOREVER, later())
                    .expect("record failure");
                assert!(n >= 1);
                *effects.failures.entry(shared.to_string()).or_default() += 1;
            }
            7 => {
                // Every worker walks the same step numbers, so steps collide across workers.
                let step = op as u64;
                if store.accept_totp_step(shared, step, later()).expect("accept step") {
                    effects.accepted.entry(shared.to_string()).or_default().push(step);
                }
            }
            _ => {
                let all = store.list(later()).expect("list");
                let listed: HashMap<&str, &Pairing> = all.iter().map(|p| (p.user.as_str(), p)).collect();
                for (u, (p, _)) in &model {
                    assert_eq!(listed.get(u.as_str()).copied(), p.as_ref(), "list {u}");
                }
                assert!(all.windows(2).all(|w| w[0].user < w[1].user), "list not ordered");
            }
        }
    }
    // Final state of this worker's users.
    for (u, (p, t)) in &model {
        assert_eq!(store.get(u, later()), Ok(p.clone()), "final get {u}");
        assert_eq!(store.local_totp(u, later()), Ok(t.clone()), "final local_totp {u}");
    }
    (model, effects)
}

fn setup_shared(store: &dyn PairingStore) {
    for user in SHARED_USERS {
        store.insert(&pairing(user), later()).expect("shared insert");
        store
            .set_local_totp(user, Some(&totp_state("JBSWY3DPEHPK3PXP")), later())
            .expect("shared totp");
    }
}

/// Checks the shared users against what every worker did: no lost failure, no step accepted twice.
fn check_shared(store: &dyn PairingStore, effects: &[SharedEffects]) {
    for user in SHARED_USERS {
        let recorded: u32 = effects.iter().filter_map(|e| e.failures.get(user)).sum();
        assert_eq!(
            store.totp_failures(user, NOW, FOREVER, later()),
            Ok(recorded),
            "failures of {user}"
        );
        let mut accepted: Vec<u64> = effects
            .iter()
            .filter_map(|e| e.accepted.get(user))
            .flatten()
            .copied()
            .collect();
        let distinct: HashSet<u64> = accepted.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            accepted.len(),
            "a step of {user} was accepted twice: {accepted:?}"
        );
        accepted.sort_unstable();
        let last = store
            .local_totp(user, later())
            .expect("local")
            .expect("present")
            .last_step;
        assert_eq!(last, accepted.last().copied(), "last step of {user}");
        assert_eq!(
            store.get(user, later()),
            Ok(Some(pairing(user))),
            "shared pairing {user}"
        );
    }
}

fn concurrent_threads_with_their_own_connections(b: &Backend) {
    const THREADS: usize = 8;
    // All open (create + migrate) the same new store at once.
    let barrier = Arc::new(Barrier::new(THREADS));
    let stores: Vec<Box<dyn PairingStore + Send + Sync>> = std::thread::scope(|scope| {
        let openers: Vec<_> = (0..THREADS)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    barrier.wait();
                    b.try_open(OpenMode::Create)
                })
            })
            .collect();
        openers
            .into_iter()
            .map(|h| h.join().expect("opener thread").expect("concurrent create"))
            .collect()
    });
    setup_shared(stores[0].as_ref());

    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(id, store)| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                worker(store.as_ref(), id as u64)
            })
        })
        .collect();
    let results: Vec<(Model, SharedEffects)> = workers.into_iter().map(|h| h.join().expect("worker thread")).collect();

    let store = b.open(OpenMode::Existing);
    b.check_integrity();
    // Every worker's users hold exactly what its model says; nothing else exists.
    let mut expected: Vec<Pairing> = results
        .iter()
        .flat_map(|(m, _)| m.values().filter_map(|(p, _)| p.clone()))
        .chain(SHARED_USERS.iter().map(|u| pairing(u)))
        .collect();
    expected.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(store.list(later()), Ok(expected));
    for (model, _) in &results {
        for (u, (_, t)) in model {
            assert_eq!(store.local_totp(u, later()), Ok(t.clone()), "local_totp {u}");
        }
    }
    let effects: Vec<SharedEffects> = results.into_iter().map(|(_, e)| e).collect();
    check_shared(store.as_ref(), &effects);
}

/// Child worker output lines: `@@ fail <user> <count>` and `@@ step <user> <step>`.
fn run_child_worker(spec: &str) {
    let (path, id) = spec.rsplit_once('|').expect("child spec");
    let path = PathBuf::from(path);
    let id: u64 = id.parse().expect("child id");
    // Start together with the other processes.
    let go = companion(&path, ".go");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "never told to go");
        std::thread::sleep(Duration::from_millis(1));
    }
    let store = SqliteStore::open(&path, OpenMode::Existing).expect("child open");
    let (_, effects) = worker(&store, id);
    for (user, n) in &effects.failures {
        println!("@@ fail {user} {n}");
    }
    for (user, steps) in &effects.accepted {
        for step in steps {
            println!("@@ step {user} {step}");
        }
    }
}

#[test]
fn concurrent_processes_and_threads() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child_worker(&spec);
        return;
    }
    const PROCESSES: u64 = 4;
    const THREADS: u64 = 4;
    let dir = TempDir::new("procs");
    let path = dir.path("store.db");
    let setup = SqliteStore::open(&path, OpenMode::Create).expect("create");
    setup_shared(&setup);
    drop(setup);

    let exe = std::env::current_exe().expect("current exe");
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            let spec = format!("{}|{}", path.display(), 100 + n);
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_processes_and_threads",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, spec)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let threads: Vec<_> = (0..THREADS)
        .map(|id| {
            let path = path.clone();
            std::thread::spawn(move || {
                let go = companion(&path, ".go");
                while !go.exists() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let store = SqliteStore::open(&path, OpenMode::Existing).expect("thread open");
                worker(&store, id)
            })
        })
        .collect();
    fs::write(companion(&path, ".go"), b"go").expect("go");

    let mut effects = Vec::new();
    let mut models = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut e = SharedEffects::default();
        // libtest prints "test NAME ... " before the test's own output, on the same line.
        for line in stdout.lines().filter_map(|l| l.split_once("@@ ").map(|(_, rest)| rest)) {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["fail", user, n] => {
                    e.failures.insert(user.to_string(), n.parse().expect("count"));
                }
                ["step", user, s] => e
                    .accepted
                    .entry(user.to_string())
                    .or_default()
                    .push(s.parse().expect("step")),
                _ => panic!("bad child line {line:?}"),
            }
        }
        effects.push(e);
    }
    for t in threads {
        let (model, e) = t.join().expect("worker thread");
        models.push(model);
        effects.push(e);
    }
    assert!(
        effects.iter().any(|e| !e.failures.is_empty()),
        "the children reported nothing"
    );

    let store = SqliteStore::open(&path, OpenMode::Existing).expect("existing");
    assert_eq!(store.integrity_check(later()), Ok("ok".to_string()));
    check_shared(&store, &effects);
    // The threads' users (the children checked theirs before exiting).
    for model in &models {
        for (u, (p, t)) in model {
            assert_eq!(store.get(u, later()), Ok(p.clone()), "get {u}");
            assert_eq!(store.local_totp(u, later()), Ok(t.clone()), "local_totp {u}");
        }
    }
    // Every listed user belongs to a worker or is shared: nothing appeared from nowhere.
    for p in store.list(later()).expect("list") {
        assert!(
            p.user.starts_with("shared-") || p.user.starts_with('w'),
            "unexpected user {}",
            p.user
        );
    }
}

/// A store owned by someone else (planted in a shared directory) is refused: it could say that
/// nobody is paired. Needs root to chown; skipped otherwise.
#[test]
fn store_owned_by_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        eprintln!("not root: cannot chown, skipped (CI runs as root)");
        return;
    }
    let dir = TempDir::new("owner");
    let path = dir.path("store.db");
    drop(SqliteStore::open(&path, OpenMode::Create).expect("create"));
    let status = Command::new("chown").arg("65534").arg(&path).status().expect("chown");
    assert!(status.success());
    assert_eq!(fs::metadata(&path).expect("stat").uid(), 65534);
    let msg = unavailable_message(SqliteStore::open(&path, OpenMode::Existing));
    assert!(msg.contains("not root"), "{msg}");
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL only: its schema against SQLite's, migrations, deadlines, threads.

/// The columns of `pairings` as `name type nullable pk`, with each backend's types named alike.
fn columns(b: &Backend) -> Vec<String> {
    let sql = match b.kind {
        Kind::Sqlite(_) => {
            "SELECT name || ' ' || lower(type) || ' ' || (CASE WHEN \"notnull\" = 1 OR pk = 1 THEN 'not-null' ELSE 'null' END) || ' ' || pk FROM pragma_table_info('pairings') ORDER BY cid"
        }
        Kind::Postgres(_) => {
            "SELECT c.column_name || ' ' || (CASE WHEN c.data_type IN ('integer', 'bigint') THEN 'integer' ELSE c.data_type END) || ' ' || (CASE WHEN c.is_nullable = 'NO' THEN 'not-null' ELSE 'null' END) || ' ' || (CASE WHEN k.column_name IS NULL THEN 0 ELSE 1 END) FROM information_schema.columns c LEFT JOIN information_schema.key_column_usage k ON k.table_name = c.table_name AND k.column_name = c.column_name AND k.constraint_name = 'pairings_pkey' WHERE c.table_name = 'pairings' ORDER BY c.ordinal_position"
        }
    };
    b.sql(sql).lines().map(str::to_string).collect()
}

#[test]
fn postgres_schema_is_the_sqlite_schema() {
    let Some(pg) = Backend::postgres("schema") else { return };
    let lite = Backend::sqlite("schema");
    drop(pg.open(OpenMode::Create));
    drop(lite.open(OpenMode::Create));
    assert_eq!(
        lockserver::store::postgres::MIGRATIONS.len(),
        lockserver::store::sqlite::MIGRATIONS.len(),
        "one PostgreSQL migration per SQLite migration"
    );
    let (pg_cols, lite_cols) = (columns(&pg), columns(&lite));
    assert_eq!(pg_cols.len(), 11, "{pg_cols:?}");
    assert_eq!(pg_cols, lite_cols, "the two schemas differ");
}

#[test]
fn postgres_login_refuses_an_unmigrated_or_newer_database_and_migrate_fixes_it() {
    let Some(b) = Backend::postgres("lifecycle") else {
        return;
    };
    // A login never migrates: a database without our schema is refused, saying what to run.
    let msg = match b.try_open(OpenMode::Existing) {
        Err(StoreError::Unavailable(m)) => m,
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("a login opened a database without the schema"),
    };
    assert!(msg.contains("run `lockserver migrate`"), "{msg}");
    assert!(!msg.contains(b.password.as_ref().map_or("-", |p| p.expose())), "{msg}");
    assert_eq!(
        b.sql("SELECT to_regclass('pairings') IS NULL"),
        "t",
        "the login created a table"
    );

    // `lockserver migrate`: from 0 to this build's version, then nothing left to do.
    let to = lockserver::store::postgres::SCHEMA_VERSION;
    assert_eq!(
        lockserver::store::migrate(&b.location(), later()),
        Ok(lockserver::store::Migrated { from: 0, to })
    );
    assert_eq!(
        lockserver::store::migrate(&b.location(), later()),
        Ok(lockserver::store::Migrated { from: to, to })
    );
    let store = b.open(OpenMode::Existing);
    store.insert(&pairing("alice"), later()).expect("insert");
    drop(store);

    // A newer schema (a later lockserver migrated it): refused for a login and for migrate.
    b.sql("UPDATE lockserver_schema SET version = 99");
    let msg = match b.try_open(OpenMode::Existing) {
        Err(StoreError::Unavailable(m)) => m,
        other => panic!("expected Unavailable, got {:?}", other.map(|_| "a store")),
    };
    assert!(msg.contains("newer"), "{msg}");
    assert!(lockserver::store::migrate(&b.location(), later()).is_err());
    assert_eq!(b.sql("SELECT user_name FROM pairings"), "alice", "nothing was lost");
}

#[test]
fn postgres_migrations_race_safely() {
    let Some(b) = Backend::postgres("migrate_race") else {
        return;
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| lockserver::store::migrate(&b.location(), later())))
            .collect();
        hs.into_iter().map(|h| h.join().expect("migrate thread")).collect()
    });
    let to = lockserver::store::postgres::SCHEMA_VERSION;
    let from_zero = results
        .iter()
        .filter(|r| **r == Ok(lockserver::store::Migrated { from: 0, to }))
        .count();
    for r in &results {
        assert!(r.as_ref().is_ok_and(|m| m.to == to), "{r:?}");
    }
    assert!(from_zero >= 1, "{results:?}");
    assert_eq!(b.sql("SELECT count(*) FROM lockserver_schema"), "1");
}

/// A listener that accepts and never answers (a firewall that drops, a hung server).
fn silent_listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[test]
fn postgres_unreachable_is_unreachable_within_the_deadline() {
    // No server needed: nothing listening, and a listener that never answers.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let (_silent, silent_port) = silent_listener();
    for (what, port, tls) in [
        ("nothing listening", dead_port, "disable"),
        ("a silent listener", silent_port, "disable"),
        ("a silent listener, TLS", silent_port, "verify-full"),
    ] {
        let url = format!("postgres://lockserver@127.0.0.1:{port}/lockserver?sslmode={tls}");
        let start = Instant::now();
        let r = lockserver::store::open_at(
            &Location::url(&url),
            OpenMode::Existing,
            start + Duration::from_millis(400),
        );
        let took = start.elapsed();
        assert!(matches!(r, Err(StoreError::Unreachable(_))), "{what}: {:?}", r.err());
        assert!(took < Duration::from_millis(900), "{what}: took {took:?}");
    }
}

#[test]
fn postgres_a_query_past_its_deadline_is_unreachable() {
    let Some(b) = Backend::postgres("deadline") else { return };
    let store = b.open(OpenMode::Create);
    store.insert(&pairing("alice"), later()).expect("insert");
    store
        .set_local_totp("alice", Some(&totp_state("JBSWY3DPEHPK3PXP")), later())
        .expect("local TOTP");
    // Another connection holds the row locked: the update waits server-side, the deadline ends it.
    let lock = std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            pg::psql_result(
                &b.url,
                b.password.as_ref().map_or("", |p| p.expose()),
                "BEGIN; SELECT 1 FROM pairings WHERE user_name = 'alice' FOR UPDATE; SELECT pg_sleep(3); COMMIT;",
            )
        });
        // Wait until the holder has the row and sleeps (psql may take a while to start on a busy machine).
        let password = b.password.as_ref().map_or("", |p| p.expose());
        let sleeping =
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'";
        let waited = Instant::now();
        while pg::psql(&b.url, password, sleeping) != "1" {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "the lock holder never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let start = Instant::now();
        let r = store.accept_totp_step("alice", 1, start + Duration::from_millis(300));
        let took = start.elapsed();
        assert!(matches!(r, Err(StoreError::Unreachable(_))), "{r:?}");
        assert!(took < Duration::from_millis(800), "took {took:?}");
        holder.join().expect("holder")
    });
    lock.expect("the lock holder");
}

const THREAD_CHECK_ENV: &str = "LOCKSERVER_STORE_TEST_THREADS";

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// The PostgreSQL client starts no thread and leaves none behind, with a host name to resolve (tokio
/// would resolve it on a blocking-pool thread; the store resolves it itself). Run in a child process,
/// alone, so that no other test's threads are counted.
#[test]
fn postgres_store_starts_no_thread() {
    let Some(b) = Backend::postgres("threads") else { return };
    drop(b.open(OpenMode::Create));
    let url = b.url.replace("127.0.0.1", "localhost");
    assert_ne!(url, b.url, "the test server URL names 127.0.0.1");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "postgres_thread_check_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(THREAD_CHECK_ENV, &url)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("THREADS-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by postgres_store_starts_no_thread in a child process"]
fn postgres_thread_check_child() {
    let Ok(url) = std::env::var(THREAD_CHECK_ENV) else {
        return;
    };
    let password = std::env::var_os(pg::PG_PASSWORD_FILE_ENV)
        .and_then(|f| fs::read_to_string(f).ok())
        .map(|p| Secret::new(p.trim()));
    let location = Location {
        url: &url,
        password: password.as_ref(),
        ca_file: None,
    };
    let before = thread_count();
    let store = lockserver::store::open_at(&location, OpenMode::Existing, later()).expect("open");
    let during = thread_count();
    assert_eq!(store.get("nobody", later()), Ok(None));
    assert_eq!(store.list(later()).map(|l| l.len()), Ok(0));
    let after_queries = thread_count();
    drop(store);
    let after = thread_count();
    assert_eq!(
        (during, after_queries, after),
        (before, before, before),
        "threads before {before}, connected {during}, after queries {after_queries}, after drop {after}"
    );
    println!("THREADS-OK {before}");
}
