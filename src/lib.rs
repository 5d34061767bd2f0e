//! lockserver: a phone-controlled lock (Latch, PingID) and a TOTP second factor in front of PAM logins.
//!
//! Module map:
//! - [`config`]: `lockserver.conf` → [`config::Config`], validated, with permission checks.
//! - [`dictionary`]: every text a user sees.
//! - [`escape`]: text from others made safe for a log line or a terminal.
//! - [`safe_path`]: which files may be trusted (root's, in root's directories).
//! - [`service`]: one trait for "a lock server", one module per service.
//! - [`store`]: the pairing store (SQLite by default).
//! - [`totp`]: RFC 6238 codes for local verification.
//! - [`local_totp`]: the local-TOTP verifier (rate limit, replay guard) for the login, the CLI and the C API.
//! - [`login`]: the login decision, free of PAM types.
//! - [`pam`]: the PAM hooks (`pam_sm_*`) and their syslog lines.
//! - [`accounts`]: pair, unpair, status and TOTP for a local user (shared by the CLI and the C API).
//! - [`capi`]: the C API (`lockserver_*`).
//!
//! The `lockserver` command is a program of its own (the `cli/` package), written against this API.

pub mod accounts;
pub mod capi;
pub mod config;
pub mod dictionary;
pub mod escape;
pub mod local_totp;
pub mod login;
pub mod pam;
pub mod safe_path;
pub mod service;
pub mod store;
pub mod totp;
