//! The command line's definition: verbs, options and their help. Kept apart from what the verbs do so
//! that `lockserver-assets` renders the man page and the shell completions from this one source.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Default config path (the library's [`lockserver::config::DEFAULT_PATH`]).
const DEFAULT_CONFIG: &str = lockserver::config::DEFAULT_PATH;

/// Exit codes, also in the README and the man page.
const EXIT_STATUS: &str = "Exit status: 0 done (status: open), 1 status: locked, 2 usage, 3 configuration error, \
4 service unreachable, 5 the service refused the request, 6 not paired / already paired, 7 not allowed, \
8 store error.

Through sudo (a rule for /usr/sbin/lockserver), a user acts only on themself (SUDO_USER); -c, \
--trust-owner, --qr-file, users and try-login are for root only.

Files: /etc/lockserver/lockserver.conf (see lockserver.conf(5)), the store it names (default \
/var/lib/lockserver/lockserver.db), the dictionary (lockserver-dictionary(5)).";

/// Command-line interface of lockserver.
#[derive(Debug, Parser)]
#[command(
    name = "lockserver",
    version,
    about = "Pair users with their phone lock (Latch, PingID) and check it",
    long_about = "Pairs local users with their phone lock (Telefónica Latch or PingID), enrols TOTP codes, \
                  shows a user's lock, checks the configuration and tries a PAM login safely. The PAM module \
                  pam_lockserver(8) then refuses a login while the user's lock is closed.",
    after_long_help = EXIT_STATUS
)]
pub struct Cli {
    /// Config file.
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Also accept a config owned by this uid (root only; for tests and staging).
    #[arg(long, global = true, value_name = "UID")]
    pub trust_owner: Option<u32>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pair a user: Latch with the code shown in the app; PingID (no code) once the user has entered
    /// the key of `pairing-key create` in the app.
    Pair {
        /// The 6-character pairing code from the Latch app (none for PingID).
        code: Option<String>,
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
        /// Pair a user this machine does not know (an admin host pairing for a fleet's shared store).
        #[arg(long)]
        allow_unknown_user: bool,
    },
    /// Unpair a user (also removes their TOTP).
    Unpair {
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
        /// Remove the local pairing even if the service cannot be reached.
        #[arg(long)]
        force: bool,
    },
    /// Show whether a user's latch is open or locked.
    Status {
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
        /// Operation NAME from the config (default: the application-wide latch).
        #[arg(long)]
        operation: Option<String>,
    },
    /// PingID pairing keys: make one for a user, or show one's status.
    PairingKey {
        #[command(subcommand)]
        action: PairingKeyAction,
    },
    /// TOTP codes at login: enrol, switch off, check a code.
    Totp {
        #[command(subcommand)]
        action: TotpAction,
    },
    /// List every pairing in the store (root only).
    Users,
    /// Check the config, the files it names, the store, the groups and the service (a signed request,
    /// and each operation id), like `sshd -t`; every problem with its fix. Changes nothing. Exit status:
    /// 0 when no problem was found, else that of the first problem.
    CheckConfig {
        /// Print one JSON object: {"ok", "config", "checks": [{"check", "result", "what", "fix"}],
        /// "problems": [{"check", "what", "fix"}]}; result is ok, warning or problem.
        #[arg(long)]
        json: bool,
    },
    /// Apply the store's pending schema migrations and report the versions (root only).
    Migrate,
    /// Work on whole stores (root only).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Run the real PAM stack of a service for a user (auth + account, no session), without changing
    /// anything: try a new stack before closing your root shell.
    TryLogin {
        /// The PAM service, a file of /etc/pam.d (e.g. sshd, sudo).
        #[arg(long)]
        service: String,
        /// The user to log in as.
        #[arg(long)]
        user: String,
    },
}

/// Where a PingID pairing key is made and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// Usable by this application only.
    Application,
    /// Usable by every application of the account.
    Organization,
}

impl From<Scope> for lockserver::config::PairingScope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Application => lockserver::config::PairingScope::Application,
            Scope::Organization => lockserver::config::PairingScope::Organization,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PairingKeyAction {
    /// Make a pairing key for a user (creating the PingID user if needed), show it with a QR code,
    /// and record the user as pending until `lockserver pair --user NAME`.
    Create {
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
        /// Default: the config's `pairing_scope`.
        #[arg(long, value_enum)]
        scope: Option<Scope>,
        /// Make it for a user this machine does not know (an admin host for a fleet's shared store).
        #[arg(long)]
        allow_unknown_user: bool,
    },
    /// Show whether a pairing key is NOT_CLAIMED or USED (not found: exit 5).
    Show {
        /// The pairing key.
        key: String,
        /// Default: the config's `pairing_scope`.
        #[arg(long, value_enum)]
        scope: Option<Scope>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Copy every pairing and TOTP fact from one store to another (SQLite and PostgreSQL, either way) in
    /// one transaction; prints the counts. A PostgreSQL URL's password comes from the config's
    /// store_password_file.
    Copy {
        /// The store to read: sqlite:///PATH or postgres://USER@HOST/DB.
        from_url: String,
        /// The store to write (created and migrated if needed).
        to_url: String,
        /// Replace what the target holds (without it a target with pairings is refused).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TotpAction {
    /// Switch TOTP on for a paired user and show the QR code to scan.
    Create {
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
        /// Also save the QR code as a PNG image (mode 0600: it holds the secret).
        #[arg(long, value_name = "PATH")]
        qr_file: Option<PathBuf>,
    },
    /// Switch TOTP off for a user and delete the TOTP at the service.
    Disable {
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
    },
    /// Check a code without logging in.
    Verify {
        code: String,
        /// The local user to act for (root only; through sudo you act for yourself).
        #[arg(long)]
        user: Option<String>,
    },
}
