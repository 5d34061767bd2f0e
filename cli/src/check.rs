//! `lockserver check-config`: every problem of the configuration with its fix, like `sshd -t` but
//! saying what to do. Changes nothing (an outdated store is reported, not migrated).
//!
//! Checks, in order (a later one needs the earlier ones): `config` (syntax and values), `permission`
//! and `path` (of the config and the files it names), `dictionary`, `groups`, `store`, `schema`,
//! `service` (a signed request: credentials, clock, reachability), `operations` (each id known to the
//! service). `--json` prints one object for configuration management (stable, documented in
//! lockserver(8) and the sysadmin guide):
//!
//! ```json
//! {"ok": false, "config": "/etc/lockserver/lockserver.conf",
//!  "checks":   [{"check": "config", "result": "ok", "what": "..."},
//!               {"check": "operations", "result": "problem", "what": "...", "fix": "..."}],
//!  "problems": [{"check": "operations", "what": "...", "fix": "..."}]}
//! ```
//! `result` is `ok`, `warning` (works, but read it) or `problem` (exit status non-zero).

use super::Exit;
use lockserver::config::{Config, ConfigError, LoadOptions, TOTP_OPERATION};
use lockserver::dictionary::Dictionary;
use lockserver::escape;
use lockserver::service::{self, ServiceError};
use lockserver::store::{self, OpenMode, StoreError};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Warning,
    Problem(Exit),
}

struct Check {
    check: &'static str,
    result: Outcome,
    what: String,
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn ok(&mut self, check: &'static str, what: impl Into<String>) {
        self.push(check, Outcome::Ok, what.into(), None);
    }
    fn warning(&mut self, check: &'static str, what: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Outcome::Warning, what.into(), Some(fix.into()));
    }
    fn problem(&mut self, check: &'static str, exit: Exit, what: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Outcome::Problem(exit), what.into(), Some(fix.into()));
    }
    fn push(&mut self, check: &'static str, result: Outcome, what: String, fix: Option<String>) {
        self.checks.push(Check {
            check,
            result,
            what,
            fix,
        });
    }

    /// The exit status: that of the first problem, 0 when there is none.
    fn exit(&self) -> Exit {
        self.checks
            .iter()
            .find_map(|c| match c.result {
                Outcome::Problem(e) => Some(e),
                _ => None,
            })
            .unwrap_or(Exit::Ok)
    }

    fn print_text(&self) {
        // The texts hold config values and server answers: nothing in them may act on the terminal.
        let shown = |s: &str| escape::for_terminal(s, 1000);
        for c in &self.checks {
            let what = shown(&c.what);
            match c.result {
                Outcome::Ok => println!("{}: ok ({what})", c.check),
                Outcome::Warning => println!("{}: warning: {what}", c.check),
                Outcome::Problem(_) => println!("{}: PROBLEM: {what}", c.check),
            }
            if let (Some(fix), false) = (&c.fix, c.result == Outcome::Ok) {
                println!("  fix: {}", shown(fix));
            }
        }
        let problems = self.problems().count();
        match problems {
            0 => println!("check-config: no problem found"),
            n => println!("check-config: {n} problem(s) found"),
        }
    }

    fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| matches!(c.result, Outcome::Problem(_)))
    }

    fn to_json(&self, path: &Path) -> serde_json::Value {
        let entry = |c: &Check| {
            let mut v = json!({
                "check": c.check,
                "result": match c.result {
                    Outcome::Ok => "ok",
                    Outcome::Warning => "warning",
                    Outcome::Problem(_) => "problem",
                },
                "what": c.what,
            });
            if let (Some(fix), false) = (&c.fix, c.result == Outcome::Ok) {
                v["fix"] = json!(fix);
            }
            v
        };
        let problems: Vec<_> = self
            .problems()
            .map(|c| json!({"check": c.check, "what": c.what, "fix": c.fix.clone().unwrap_or_default()}))
            .collect();
        json!({
            "ok": problems.is_empty(),
            "config": path.display().to_string(),
            "checks": self.checks.iter().map(entry).collect::<Vec<_>>(),
            "problems": problems,
        })
    }
}

/// Runs every check of the config at `path`; prints the report (text or JSON) and returns the exit code.
pub fn run(path: &Path, trusted_owner: Option<u32>, json_output: bool) -> Exit {
    let mut report = Report::default();
    check_all(&mut report, path, trusted_owner);
    if json_output {
        println!("{}", report.to_json(path));
    } else {
        report.print_text();
    }
    report.exit()
}

fn check_all(r: &mut Report, path: &Path, trusted_owner: Option<u32>) {
    let config = match Config::load(path, LoadOptions { trusted_owner }) {
        Ok(c) => c,
        Err(e) => {
            let (check, what, fix) = config_problem(&e);
            r.problem(check, Exit::Config, what, fix);
            return;
        }
    };
    r.ok(
        "config",
        format!(
            "{}: {} operations, fail_mode {:?}, unpaired {:?}",
            path.display(),
            config.operations.len(),
            config.fail_mode,
            config.unpaired
        ),
    );
    match Dictionary::for_config(&config, trusted_owner) {
        Ok(_) => r.ok(
            "dictionary",
            config
                .dictionary
                .as_ref()
                .map_or_else(|| "built-in texts".to_string(), |p| p.display().to_string()),
        ),
        Err(e) => r.problem(
            "dictionary",
            Exit::Config,
            format!("dictionary {e}"),
            "fix the file (see lockserver-dictionary(5)): root-owned, not writable by others, well-formed XML; \
             or remove `dictionary` to use the built-in texts",
        ),
    }
    check_groups(r, &config);
    check_store(r, &config);
    check_service(r, &config);
}

/// Which check a load error belongs to, what it says and how to fix it. Path and permission errors carry
/// their own fix (`…; fix: chmod go-w DIR`); the others point at the key and line.
fn config_problem(e: &ConfigError) -> (&'static str, String, String) {
    let text = e.to_string();
    let file = e
        .path
        .as_ref()
        .map_or_else(|| "the config".to_string(), |p| p.display().to_string());
    let (what, fix) = match text.split_once("; fix: ") {
        Some((what, fix)) => (what.to_string(), Some(fix.to_string())),
        None => (text.clone(), None),
    };
    let check = if ["owned by uid", "writable by group", "readable by group"]
        .iter()
        .any(|m| what.contains(m))
    {
        "permission"
    } else if [
        "symbolic link",
        "cannot read",
        "not a regular file",
        "cannot be examined",
        "absolute",
    ]
    .iter()
    .any(|m| what.contains(m))
    {
        "path"
    } else {
        "config"
    };
    let fix = fix.unwrap_or_else(|| match check {
        "permission" if what.contains("owned by uid") => {
            format!("chown root:root {file} (only root may own what decides logins)")
        }
        "permission" => format!("chmod 600 {file}"),
        "path" => {
            format!("give the path of the file itself (-c / config=); check that {file} exists and is readable by root")
        }
        _ => {
            let place = match (e.line, &e.key) {
                (Some(line), Some(key)) => format!("`{key}` at {file}:{line}"),
                (Some(line), None) => format!("{file}:{line}"),
                (None, Some(key)) => format!("`{key}` in {file}"),
                (None, None) => file.clone(),
            };
            format!("edit {place} (the keys and their values: lockserver.conf(5))")
        }
    });
    (check, what, fix)
}

fn check_groups(r: &mut Report, config: &Config) {
    let lists = [
        ("exempt_groups", &config.exempt_groups),
        ("require_groups", &config.require_groups),
    ];
    for (key, groups) in lists {
        for group in groups.iter() {
            match lockserver::pam::groups::exists(group) {
                Ok(true) => r.ok("groups", format!("{key}: {group} is known to NSS")),
                Ok(false) => r.problem(
                    "groups",
                    Exit::Config,
                    format!("{key}: no group {group} (NSS: `getent group {group}` finds nothing)"),
                    format!("create the group (groupadd {group}, or in LDAP/SSSD), or fix its name in `{key}`"),
                ),
                Err(e) => r.problem(
                    "groups",
                    Exit::Config,
                    format!("{key}: cannot look up {group}: {e}"),
                    "check NSS (/etc/nsswitch.conf, sssd)",
                ),
            }
        }
    }
    if !config.exempt_groups.is_empty() && !config.require_groups.is_empty() {
        r.warning(
            "groups",
            "both exempt_groups and require_groups are set",
            "a member of an exempt group is never checked, even when also in require_groups",
        );
    }
}

fn check_store(r: &mut Report, config: &Config) {
    match store::open_at(
        &store::Location::of(config),
        OpenMode::Existing,
        store::default_deadline(),
    ) {
        Ok(s) => match s.list(store::default_deadline()) {
            Ok(list) => r.ok("store", format!("{}: {} pairings", config.store, list.len())),
            Err(e) => r.problem(
                "store",
                Exit::Store,
                format!("{}: {e}", config.store),
                "check the database (sqlite3 … 'PRAGMA integrity_check') or restore it from a backup",
            ),
        },
        Err(StoreError::Missing) => r.ok(
            "store",
            format!(
                "{}: not created yet (the first `lockserver pair` creates it)",
                config.store
            ),
        ),
        Err(StoreError::Outdated { found, wanted, .. }) => r.problem(
            "schema",
            Exit::Store,
            format!(
                "{}: schema version {found}, this build needs {wanted}: logins refuse until it is migrated",
                config.store
            ),
            "run `lockserver users` as root (any root command migrates the store)",
        ),
        Err(e) => r.problem(
            "store",
            Exit::Store,
            format!("{}: {e}", config.store),
            "check `store` in the config; the database file and its directory must be root's and closed \
             to others (chmod 600 FILE, chmod 700 DIR)",
        ),
    }
}

fn check_service(r: &mut Report, config: &Config) {
    if let Some(l) = &config.latch
        && l.url.starts_with("http://")
    {
        r.warning(
            "service",
            format!(
                "{} is plain HTTP: anyone on the path can read and change the answers",
                l.url
            ),
            "use https:// outside tests (the emulator also speaks HTTPS)",
        );
    }
    let service = match service::from_config(config) {
        Ok(s) => s,
        Err(e) => {
            r.problem(
                "service",
                Exit::Config,
                format!("cannot build the client: {e}"),
                "check the [latch] / [pingid] section (url, ca_file, proxy)",
            );
            return;
        }
    };
    let budget = config.timeout.max(Duration::from_secs(5));
    // A status for an account nobody has: a signed request whose expected answer is "not paired".
    let probe = "0".repeat(64);
    match service.status(&probe, None, false, Instant::now() + budget) {
        Err(ServiceError::NotPaired { .. }) | Ok(_) => r.ok("service", "reachable; credentials and clock accepted"),
        Err(ServiceError::Api { code, message }) => r.ok("service", format!("reachable; answered {code}: {message}")),
        Err(ServiceError::Misconfigured { code, message }) => {
            r.problem(
                "service",
                Exit::Config,
                format!("the service rejects this host's configuration ({code}: {message})"),
                "check app_id and secret (or secret_file) against the service's console, and this host's clock \
                 (108/109: run NTP)",
            );
            return;
        }
        Err(ServiceError::Unavailable(why)) => {
            r.problem(
                "service",
                Exit::Unavailable,
                format!("cannot reach the service: {why}"),
                "check url, proxy and ca_file, DNS and the firewall; every login now follows fail_mode",
            );
            return;
        }
    }
    check_operations(r, config, service.as_ref(), budget);
}

/// Each operation id of the config must be one of the application's at the service: an unknown one makes
/// every login it applies to fail (Latch 301).
fn check_operations(r: &mut Report, config: &Config, service: &dyn service::LockService, budget: Duration) {
    let ops: Vec<_> = config
        .operations
        .iter()
        .filter(|op| op.name != TOTP_OPERATION)
        .collect();
    if ops.is_empty() {
        r.ok(
            "operations",
            "none configured: every login checks the application's latch",
        );
        return;
    }
    let known = match service.operation_ids(Instant::now() + budget) {
        Ok(Some(ids)) => Some(ids),
        Ok(None) => {
            r.ok("operations", "this service has no operation ids to check");
            return;
        }
        Err(e) => {
            r.warning(
                "operations",
                format!("the service does not list the application's operations ({e})"),
                "each operation id is then tried with a status request",
            );
            None
        }
    };
    let probe = "0".repeat(64);
    for op in ops {
        let found = match &known {
            Some(ids) => Ok(ids.contains(&op.id)),
            // The operation's status of an account nobody has: an unknown id is 301, a known one 201.
            None => match service.status(&probe, Some(&op.id), false, Instant::now() + budget) {
                Err(ServiceError::Misconfigured { .. }) => Ok(false),
                Err(ServiceError::Unavailable(why)) => Err(why),
                _ => Ok(true),
            },
        };
        let entry = format!("{}:{}:{}", op.name, op.id, op.enabled);
        match (found, op.enabled) {
            (Ok(true), _) => r.ok("operations", format!("{entry}: known to the service")),
            (Ok(false), true) => r.problem(
                "operations",
                Exit::Config,
                format!("{entry}: the service has no operation {} in this application: every {} login is refused (301)", op.id, op.name),
                "copy the operation id from the service's console (Latch: the application's operations) into `operations`",
            ),
            (Ok(false), false) => r.warning(
                "operations",
                format!("{entry}: the service has no operation {} (the entry is off, so no login uses it)", op.id),
                "fix the id before switching the entry on",
            ),
            (Err(why), _) => r.problem(
                "operations",
                Exit::Unavailable,
                format!("{entry}: cannot check at the service: {why}"),
                "run check-config again when the service answers",
            ),
        }
    }
}
