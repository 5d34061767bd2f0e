//! `lockserver.conf` (TOML) → [`Config`], validated.
//!
//! Every error names the file, the key and, where the key is in the file, its line: a sysadmin reading
//! `auth.log` must be able to fix the file without guessing. Secrets are held in [`Secret`], which never
//! prints its value.

#![forbid(unsafe_code)]

use serde::Deserialize;
use std::fmt;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

/// Where the module and the CLI look when no `config=` / `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/lockserver/lockserver.conf";
/// The store used when the config names none.
pub const DEFAULT_STORE: &str = "sqlite:///var/lib/lockserver/lockserver.db";
/// A config file larger than this is refused before it is read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The operation NAME that switches the TOTP flow on or off.
pub const TOTP_OPERATION: &str = "TOTP";

/// A secret value (application secret, API key, token). Zeroed on drop; `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the few places that sign or compare with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Latch,
    Pingid,
}

/// What a login gets when the service is unreachable, slow or incoherent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Deny (the default).
    Secure,
    /// Allow, and log loudly.
    Safe,
}

/// What a login gets when the user has no pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnpairedPolicy {
    /// PAM_IGNORE: the rest of the stack decides.
    Ignore,
    /// PAM_SUCCESS.
    Allow,
    /// PAM_AUTH_ERR.
    Deny,
}

/// What a login gets when the store has the user as paired but the service says "not paired" (the
/// pairing was removed at the service, e.g. from the phone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceUnpaired {
    /// PAM_AUTH_ERR, with a text saying the pairing was removed at the service (the default): the
    /// lock cannot be shed from the phone.
    Deny,
    /// Follow `unpaired`, as if the store had no pairing.
    AsUnpaired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TotpSource {
    /// The Latch TOTP API (the seed's flow).
    Latch,
    /// RFC 6238 in-process.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TotpAlgorithm {
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "SHA512")]
    Sha512,
}

/// One `NAME:ID:ENABLED` entry of `operations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    pub id: String,
    pub enabled: bool,
}

/// What the lock check does for one operation NAME (DESIGN §3, operation rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationRule {
    /// Found and enabled: check this operation id.
    Check(String),
    /// Found and disabled: no lock check.
    Off,
    /// Not found: the application-wide status.
    ApplicationWide,
}

#[derive(Debug, Clone)]
pub struct LatchConfig {
    pub app_id: String,
    pub secret: Secret,
    /// Base URL without a trailing slash, e.g. `https://latch.tu.com`.
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PingIdConfig {
    pub account_id: String,
    pub application_id: String,
    pub token: Secret,
    pub api_key: Secret,
    /// `scheme://host[:port]` is used; the path is replaced by `/pingid/v1/...`.
    pub url: String,
    pub pairing_scope: PairingScope,
    /// How long a login waits for the person to answer the push.
    pub push_timeout: Duration,
    /// The pause between two status polls of a push.
    pub poll_interval: Duration,
    /// Refuse answers without an `X-PINGID-Signature` (see the README for why the default is false).
    pub require_response_signature: bool,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairingScope {
    Application,
    Organization,
}

#[derive(Debug, Clone)]
pub struct TotpConfig {
    pub source: TotpSource,
    pub max_attempts: u32,
    pub algorithm: TotpAlgorithm,
    pub digits: u32,
    pub step_secs: u64,
    /// Accepted steps either side of now.
    pub window: u32,
    /// Local mode: at most `rate_limit_count` failures per `rate_limit_period_secs` per user.
    pub rate_limit_count: u32,
    pub rate_limit_period_secs: u64,
    pub issuer: String,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            source: TotpSource::Latch,
            max_attempts: 3,
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            step_secs: 30,
            window: 1,
            rate_limit_count: 5,
            rate_limit_period_secs: 300,
            issuer: "lockserver".to_string(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages); `None` for a config given as a string.
    pub path: Option<PathBuf>,
    pub enabled: bool,
    pub service: ServiceKind,
    pub operations: Vec<Operation>,
    pub fail_mode: FailMode,
    pub unpaired: UnpairedPolicy,
    pub service_unpaired: ServiceUnpaired,
    pub timeout: Duration,
    pub store: String,
    /// `store_password_file`, read: the PostgreSQL password.
    pub store_password: Option<Secret>,
    /// `store_ca_file`: extra trusted CAs for PostgreSQL TLS.
    pub store_ca_file: Option<PathBuf>,
    /// `store_fail_mode` (default `fail_mode`): what a login does when a networked store is unreachable.
    pub store_fail_mode: FailMode,
    pub dictionary: Option<PathBuf>,
    pub latch: Option<LatchConfig>,
    pub pingid: Option<PingIdConfig>,
    pub totp: TotpConfig,
    /// Members of these groups (through NSS) are never checked: the break-glass accounts.
    pub exempt_groups: Vec<String>,
    /// When not empty, only members of these groups are checked.
    pub require_groups: Vec<String>,
    /// The other files loading it read or checked (empty for a config given as a string).
    pub files: Vec<FileInput>,
    /// The text holds a secret inline (then group and others may not read the file).
    pub holds_inline_secrets: bool,
}

/// A configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("<config>")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How strictly [`Config::load`] checks the file's owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Also accept files owned by this uid (besides root). Only for tests and for a root-run CLI that
    /// was told so explicitly; the module takes it from its own `trust_owner=` argument, never silently.
    pub trusted_owner: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOperations {
    List(Vec<String>),
    Joined(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    enabled: Option<bool>,
    service: Option<ServiceKind>,
    operations: Option<RawOperations>,
    fail_mode: Option<FailMode>,
    unpaired: Option<UnpairedPolicy>,
    service_unpaired: Option<ServiceUnpaired>,
    timeout_ms: Option<u64>,
    store: Option<String>,
    store_password_file: Option<PathBuf>,
    store_ca_file: Option<PathBuf>,
    store_fail_mode: Option<FailMode>,
    dictionary: Option<PathBuf>,
    latch: Option<RawLatch>,
    pingid: Option<RawPingId>,
    totp: Option<RawTotp>,
    exempt_groups: Option<Vec<String>>,
    require_groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatch {
    app_id: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    url: Option<String>,
    ca_file: Option<PathBuf>,
    proxy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPingId {
    account_id: Option<String>,
    application_id: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    url: Option<String>,
    pairing_scope: Option<PairingScope>,
    push_timeout_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
    require_response_signature: Option<bool>,
    ca_file: Option<PathBuf>,
    proxy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTotp {
    source: Option<TotpSource>,
    max_attempts: Option<u32>,
    algorithm: Option<TotpAlgorithm>,
    digits: Option<u32>,
    step_secs: Option<u64>,
    window: Option<u32>,
    rate_limit_count: Option<u32>,
    rate_limit_period_secs: Option<u64>,
    issuer: Option<String>,
}

/// Reads the text and the semantic checks against one source, so errors can point at lines.
struct Checker<'a> {
    path: Option<&'a Path>,
    spans: Spans<'a>,
    trusted_owner: Option<u32>,
    check_files: bool,
}

/// The parsed document with the parser's spans: where each key and section is in the text.
struct Spans<'a> {
    text: &'a str,
    root: DeTable<'a>,
}

impl Spans<'_> {
    /// The 1-based line where `key` is assigned inside `section` (or at the top level), or where the
    /// section itself starts when `key` is `None`. Dotted keys and inline tables count too.
    fn line(&self, section: Option<&str>, key: Option<&str>) -> Option<usize> {
        let (table, name) = match (section, key) {
            (Some(s), Some(k)) => (entry(&self.root, s)?.1.get_ref().as_table()?, k),
            (Some(s), None) => (&self.root, s),
            (None, Some(k)) => (&self.root, k),
            (None, None) => return None,
        };
        entry(table, name).map(|(k, _)| line_at(self.text, k.span().start))
    }
}

type DeEntry<'t, 'a> = (&'t Spanned<DeString<'a>>, &'t Spanned<DeValue<'a>>);

fn entry<'t, 'a>(table: &'t DeTable<'a>, name: &str) -> Option<DeEntry<'t, 'a>> {
    table.iter().find(|(k, _)| k.get_ref() == name)
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

impl Checker<'_> {
    fn error(&self, section: Option<&str>, key: &str, message: impl Into<String>) -> ConfigError {
        let full_key = match section {
            Some(s) => format!("{s}.{key}"),
            None => key.to_string(),
        };
        ConfigError {
            path: self.path.map(Path::to_path_buf),
            line: self.spans.line(section, Some(key)),
            key: Some(full_key),
            message: message.into(),
        }
    }

    fn required(&self, section: &str, key: &str, value: Option<String>) -> Result<String, ConfigError> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            Some(_) => Err(self.error(Some(section), key, "is empty")),
            None => Err(ConfigError {
                path: self.path.map(Path::to_path_buf),
                line: self.spans.line(Some(section), None),
                key: Some(format!("{section}.{key}")),
                message: "is missing".into(),
            }),
        }
    }

    /// A secret given inline as `key` or in a file as `key_file`, exactly one of them.
    fn secret(
        &self,
        section: &str,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Secret, ConfigError> {
        let file_key = format!("{key}_file");
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.error(
                Some(section),
                &file_key,
                format!("give either `{key}` or `{file_key}`, not both"),
            )),
            (Some(v), None) => Ok(Secret::new(self.required(section, key, Some(v))?)),
            (None, Some(path)) => {
                if !self.check_files {
                    return Err(self.error(Some(section), &file_key, "secret files are not allowed here"));
                }
                let err = |m: String| self.error(Some(section), &file_key, m);
                check_permissions(&path, true, self.trusted_owner).map_err(err)?;
                let text = zeroize::Zeroizing::new(
                    fs::read_to_string(&path)
                        .map_err(|e| self.error(Some(section), &file_key, format!("{}: {e}", path.display())))?,
                );
                let value = text.trim().to_string();
                if value.is_empty() {
                    return Err(self.error(Some(section), &file_key, format!("{} is empty", path.display())));
                }
                Ok(Secret::new(value))
            }
            (None, None) => Err(ConfigError {
                path: self.path.map(Path::to_path_buf),
                line: self.spans.line(Some(section), None),
                key: Some(format!("{section}.{key}")),
                message: format!("is missing (give `{key}` or `{file_key}`)"),
            }),
        }
    }

    fn proxy(&self, section: &str, proxy: Option<&str>) -> Result<(), ConfigError> {
        match proxy {
            Some(p) if !(p.starts_with("http://") || p.starts_with("https://") || p.starts_with("socks5://")) => {
                Err(self.error(Some(section), "proxy", "must be an http://, https:// or socks5:// URL"))
            }
            _ => Ok(()),
        }
    }

    /// Whoever can write the trust anchors can answer for the service.
    fn ca_file(&self, section: &str, ca: Option<&Path>) -> Result<(), ConfigError> {
        let Some(ca) = ca else { return Ok(()) };
        if !self.check_files {
            return Ok(());
        }
        let err = |m: String| self.error(Some(section), "ca_file", m);
        if !ca.is_file() {
            return Err(err(format!("{} is not a readable file", ca.display())));
        }
        check_permissions(ca, false, self.trusted_owner).map_err(err)
    }

    fn url(&self, section: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
        let url = value.unwrap_or_else(|| default.to_string());
        let url = url.trim().trim_end_matches('/').to_string();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                self.error(
                    Some(section),
                    "url",
                    "must start with https:// (or http:// for an emulator)",
                )
            })?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(self.error(Some(section), "url", "has no host"));
        }
        Ok(url)
    }
}

impl Config {
    /// Reads and validates the file at `path`, with the permission checks of DESIGN §3.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Config, ConfigError> {
        ConfigFile::read(path, options)?.parse()
    }

    /// Parses a config given as a string (the C API's `lockserver_open_config_str`). No file is
    /// involved, so there is no permission check, and `*_file` secrets are refused.
    pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
        let (spans, raw) = read_raw(None, text)?;
        let checker = Checker {
            path: None,
            spans,
            trusted_owner: None,
            check_files: false,
        };
        build(&checker, raw)
    }

    /// The lock check rule for the operation NAME (PAM service or `operation=` argument).
    pub fn operation_rule(&self, name: &str) -> OperationRule {
        match self.operations.iter().find(|op| op.name == name) {
            Some(op) if op.enabled => OperationRule::Check(op.id.clone()),
            Some(_) => OperationRule::Off,
            None => OperationRule::ApplicationWide,
        }
    }

    /// Whether `name` is an operation of the file (an `operation=` argument must name one).
    pub fn has_operation(&self, name: &str) -> bool {
        self.operations.iter().any(|op| op.name == name)
    }

    /// The `TOTP:TOTP:ENABLED` flag: on only when present and enabled.
    pub fn totp_enabled(&self) -> bool {
        self.operations.iter().any(|op| op.name == TOTP_OPERATION && op.enabled)
    }
}

/// Whether the file itself holds a secret (decided on the parsed document, so dotted keys and inline
/// tables count too).
fn holds_inline_secrets(raw: &RawConfig) -> bool {
    raw.latch.as_ref().is_some_and(|l| l.secret.is_some())
        || raw
            .pingid
            .as_ref()
            .is_some_and(|p| p.token.is_some() || p.api_key.is_some())
}

/// The TOML document with its spans, and every key known (deny_unknown_fields), not yet validated.
fn read_raw<'a>(path: Option<&Path>, text: &'a str) -> Result<(Spans<'a>, RawConfig), ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError {
        path: path.map(Path::to_path_buf),
        line: e.span().map(|s| line_at(text, s.start)),
        key: None,
        message: e.message().to_string(),
    };
    let doc = DeTable::parse(text).map_err(syntax)?;
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc.clone())).map_err(syntax)?;
    Ok((
        Spans {
            text,
            root: doc.into_inner(),
        },
        raw,
    ))
}

/// Validates the document into a [`Config`].
fn build(c: &Checker<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let holds_inline_secrets = holds_inline_secrets(&raw);
    // (A config given as a string reads no file.)
    let files = if c.check_files {
        referenced_files(&raw)
    } else {
        Vec::new()
    };
    let service = raw.service.ok_or_else(|| ConfigError {
        path: c.path.map(Path::to_path_buf),
        line: None,
        key: Some("service".into()),
        message: "is missing (\"latch\" or \"pingid\")".into(),
    })?;

    let operations = match raw.operations {
        None => Vec::new(),
        Some(RawOperations::List(items)) => parse_operations(c, items.iter().map(String::as_str))?,
        Some(RawOperations::Joined(s)) => parse_operations(c, s.split(',').map(str::trim).filter(|s| !s.is_empty()))?,
    };

    let timeout_ms = raw.timeout_ms.unwrap_or(3000);
    if !(100..=60_000).contains(&timeout_ms) {
        return Err(c.error(None, "timeout_ms", "must be between 100 and 60000"));
    }

    let store = raw.store.unwrap_or_else(|| DEFAULT_STORE.to_string());
    if !(store.starts_with("sqlite://") || store.starts_with("postgres://") || store.starts_with("postgresql://")) {
        return Err(c.error(None, "store", "must be sqlite:///PATH or postgres://..."));
    }
    // Every path is absolute: a relative one would resolve against the working directory of whatever
    // process loads the module (or of a sudo caller).
    let relative = |p: &Path| !p.is_absolute();
    if store.strip_prefix("sqlite://").is_some_and(|p| relative(Path::new(p))) {
        return Err(c.error(
            None,
            "store",
            "the SQLite path must be absolute (sqlite:///var/lib/...)",
        ));
    }
    let must_be_absolute = |section: Option<&str>, key: &str, p: Option<&PathBuf>| match p {
        Some(p) if relative(p) => Err(c.error(
            section,
            key,
            format!("{} is a relative path: give the absolute path", p.display()),
        )),
        _ => Ok(()),
    };
    must_be_absolute(None, "dictionary", raw.dictionary.as_ref())?;
    must_be_absolute(None, "store_password_file", raw.store_password_file.as_ref())?;
    must_be_absolute(None, "store_ca_file", raw.store_ca_file.as_ref())?;
    if let Some(l) = &raw.latch {
        must_be_absolute(Some("latch"), "secret_file", l.secret_file.as_ref())?;
        must_be_absolute(Some("latch"), "ca_file", l.ca_file.as_ref())?;
    }
    if let Some(p) = &raw.pingid {
        must_be_absolute(Some("pingid"), "token_file", p.token_file.as_ref())?;
        must_be_absolute(Some("pingid"), "api_key_file", p.api_key_file.as_ref())?;
        must_be_absolute(Some("pingid"), "ca_file", p.ca_file.as_ref())?;
    }

    // The PostgreSQL keys, together (DESIGN §3): the password only from a root-only file, never the URL.
    let networked = !store.starts_with("sqlite://");
    if networked && crate::store::redact(&store) != store {
        return Err(c.error(None, "store", "must not hold a password: use store_password_file"));
    }
    let store_password = match raw.store_password_file {
        Some(file) if networked => {
            let err = |m: String| c.error(None, "store_password_file", m);
            if !c.check_files {
                return Err(err("secret files are not allowed here".into()));
            }
            check_permissions(&file, true, c.trusted_owner).map_err(err)?;
            let text = zeroize::Zeroizing::new(
                fs::read_to_string(&file).map_err(|e| err(format!("{}: {e}", file.display())))?,
            );
            let value = Secret::new(text.trim());
            if value.expose().is_empty() {
                return Err(err(format!("{} is empty", file.display())));
            }
            Some(value)
        }
        Some(_) => return Err(c.error(None, "store_password_file", "is only for a postgres:// store")),
        None => None,
    };
    if let Some(ca) = &raw.store_ca_file
        && c.check_files
    {
        let err = |m: String| c.error(None, "store_ca_file", m);
        if !ca.is_file() {
            return Err(err(format!("{} is not a readable file", ca.display())));
        }
        check_permissions(ca, false, c.trusted_owner).map_err(err)?;
    }
    let fail_mode = raw.fail_mode.unwrap_or(FailMode::Secure);
    let store_fail_mode = raw.store_fail_mode.unwrap_or(fail_mode);

    let latch = match raw.latch {
        None => None,
        Some(l) => {
            let app_id = c.required("latch", "app_id", l.app_id)?;
            if app_id.len() != 20 || !app_id.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                return Err(c.error(Some("latch"), "app_id", "must be 20 letters or digits"));
            }
            let secret_file = l.secret_file.clone();
            let secret = c.secret("latch", "secret", l.secret, l.secret_file)?;
            if secret.expose().len() != 40 || !secret.expose().chars().all(|ch| ch.is_ascii_alphanumeric()) {
                // Point at what to edit: the secret file (and the line naming it), or the key.
                return Err(match secret_file {
                    Some(file) => c.error(
                        Some("latch"),
                        "secret_file",
                        format!("the secret in {} must be 40 letters or digits", file.display()),
                    ),
                    None => c.error(Some("latch"), "secret", "must be 40 letters or digits"),
                });
            }
            let url = c.url("latch", l.url, "https://latch.tu.com")?;
            c.proxy("latch", l.proxy.as_deref())?;
            c.ca_file("latch", l.ca_file.as_deref())?;
            Some(LatchConfig {
                app_id,
                secret,
                url,
                ca_file: l.ca_file,
                proxy: l.proxy,
            })
        }
    };

    let pingid = match raw.pingid {
        None => None,
        Some(p) => Some(parse_pingid(c, p)?),
    };

    match service {
        ServiceKind::Latch if latch.is_none() => {
            return Err(c.error(None, "service", "is \"latch\" but there is no [latch] section"));
        }
        ServiceKind::Pingid if pingid.is_none() => {
            return Err(c.error(None, "service", "is \"pingid\" but there is no [pingid] section"));
        }
        _ => {}
    }

    let totp = parse_totp(c, raw.totp, service)?;
    let exempt_groups = group_list(c, "exempt_groups", raw.exempt_groups)?;
    let require_groups = group_list(c, "require_groups", raw.require_groups)?;

    Ok(Config {
        path: c.path.map(Path::to_path_buf),
        enabled: raw.enabled.unwrap_or(true),
        service,
        operations,
        fail_mode,
        unpaired: raw.unpaired.unwrap_or(UnpairedPolicy::Ignore),
        service_unpaired: raw.service_unpaired.unwrap_or(ServiceUnpaired::Deny),
        timeout: Duration::from_millis(timeout_ms),
        store,
        store_password,
        store_ca_file: raw.store_ca_file,
        store_fail_mode,
        dictionary: raw.dictionary,
        latch,
        pingid,
        totp,
        exempt_groups,
        require_groups,
        files,
        holds_inline_secrets,
    })
}

/// Every file besides the config that [`build`] reads or checks, and the dictionary (read by
/// [`crate::dictionary::Dictionary::for_config`]).
fn referenced_files(raw: &RawConfig) -> Vec<FileInput> {
    let mut files = Vec::new();
    let mut add = |path: &Option<PathBuf>, holds_secrets: bool| {
        if let Some(path) = path {
            files.push(FileInput {
                path: path.clone(),
                holds_secrets,
            });
        }
    };
    add(&raw.dictionary, false);
    add(&raw.store_ca_file, false);
    // Read only for a networked store (refused otherwise); listing it anyway costs one more check.
    add(&raw.store_password_file, true);
    if let Some(l) = &raw.latch {
        add(&l.secret_file, true);
        add(&l.ca_file, false);
    }
    if let Some(p) = &raw.pingid {
        add(&p.token_file, true);
        add(&p.api_key_file, true);
        add(&p.ca_file, false);
    }
    files
}

fn parse_pingid(c: &Checker<'_>, p: RawPingId) -> Result<PingIdConfig, ConfigError> {
    let s = Some("pingid");
    let id = |key: &str, value: Option<String>| {
        let v = c.required("pingid", key, value)?;
        if v.len() > 128 || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
            return Err(c.error(s, key, "must be an id of letters, digits, '-' or '_'"));
        }
        Ok(v)
    };
    let account_id = id("account_id", p.account_id)?;
    let application_id = id("application_id", p.application_id)?;
    let token = c.secret("pingid", "token", p.token, p.token_file)?;
    let api_key = c.secret("pingid", "api_key", p.api_key, p.api_key_file)?;
    if crate::service::pingid::sign::decode_api_key(api_key.expose()).is_err() {
        return Err(c.error(s, "api_key", "must be base64 (standard or URL-safe alphabet)"));
    }
    let url = c.url("pingid", p.url, crate::service::pingid::DEFAULT_URL)?;
    let push_timeout_secs = p.push_timeout_secs.unwrap_or(40);
    if !(5..=300).contains(&push_timeout_secs) {
        return Err(c.error(s, "push_timeout_secs", "must be between 5 and 300"));
    }
    let poll_interval_ms = p.poll_interval_ms.unwrap_or(1000);
    if !(100..=10_000).contains(&poll_interval_ms) {
        return Err(c.error(s, "poll_interval_ms", "must be between 100 and 10000"));
    }
    c.proxy("pingid", p.proxy.as_deref())?;
    c.ca_file("pingid", p.ca_file.as_deref())?;
    Ok(PingIdConfig {
        account_id,
        application_id,
        token,
        api_key,
        url,
        pairing_scope: p.pairing_scope.unwrap_or(PairingScope::Application),
        push_timeout: Duration::from_secs(push_timeout_secs),
        poll_interval: Duration::from_millis(poll_interval_ms),
        require_response_signature: p.require_response_signature.unwrap_or(false),
        ca_file: p.ca_file,
        proxy: p.proxy,
    })
}

/// Group names as NSS knows them: not empty, no whitespace, `:` or `,` (they could not be one name).
fn group_list(c: &Checker<'_>, key: &str, raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let names = raw.unwrap_or_default();
    for name in &names {
        if name.is_empty()
            || name.len() > 256
            || name
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || ch == ':' || ch == ',')
        {
            return Err(c.error(None, key, format!("{name:?} is not a group name")));
        }
    }
    Ok(names)
}

fn parse_totp(c: &Checker<'_>, raw: Option<RawTotp>, service: ServiceKind) -> Result<TotpConfig, ConfigError> {
    // PingID has no TOTP API: its TOTP codes are checked in-process.
    let d = match service {
        ServiceKind::Latch => TotpConfig::default(),
        ServiceKind::Pingid => TotpConfig {
            source: TotpSource::Local,
            ..TotpConfig::default()
        },
    };
    let Some(t) = raw else { return Ok(d) };
    if service == ServiceKind::Pingid && t.source == Some(TotpSource::Latch) {
        return Err(c.error(
            Some("totp"),
            "source",
            "\"latch\" needs service = \"latch\" (PingID has no TOTP API): use \"local\"",
        ));
    }
    let cfg = TotpConfig {
        source: t.source.unwrap_or(d.source),
        max_attempts: t.max_attempts.unwrap_or(d.max_attempts),
        algorithm: t.algorithm.unwrap_or(d.algorithm),
        digits: t.digits.unwrap_or(d.digits),
        step_secs: t.step_secs.unwrap_or(d.step_secs),
        window: t.window.unwrap_or(d.window),
        rate_limit_count: t.rate_limit_count.unwrap_or(d.rate_limit_count),
        rate_limit_period_secs: t.rate_limit_period_secs.unwrap_or(d.rate_limit_period_secs),
        issuer: t.issuer.unwrap_or(d.issuer),
    };
    let t = Some("totp");
    if !(1..=10).contains(&cfg.max_attempts) {
        return Err(c.error(t, "max_attempts", "must be between 1 and 10"));
    }
    if !(6..=8).contains(&cfg.digits) {
        return Err(c.error(t, "digits", "must be 6, 7 or 8"));
    }
    if !(10..=300).contains(&cfg.step_secs) {
        return Err(c.error(t, "step_secs", "must be between 10 and 300"));
    }
    if cfg.window > 10 {
        return Err(c.error(t, "window", "must be at most 10 steps"));
    }
    if cfg.rate_limit_count == 0 || cfg.rate_limit_period_secs == 0 {
        return Err(c.error(t, "rate_limit_count", "rate limit count and period must be positive"));
    }
    Ok(cfg)
}

fn parse_operations<'a>(c: &Checker<'_>, items: impl Iterator<Item = &'a str>) -> Result<Vec<Operation>, ConfigError> {
    let mut out: Vec<Operation> = Vec::new();
    for item in items {
        let bad = |why: &str| c.error(None, "operations", format!("entry \"{item}\": {why}"));
        let parts: Vec<&str> = item.split(':').map(str::trim).collect();
        let [name, id, enabled] = parts[..] else {
            return Err(bad("must be NAME:ID:ENABLED"));
        };
        if name.is_empty() || id.is_empty() {
            return Err(bad("NAME and ID must not be empty"));
        }
        if !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(bad("ID must be letters, digits, '-' or '_'"));
        }
        let enabled = match enabled.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(bad("ENABLED must be true or false")),
        };
        if out.iter().any(|op| op.name == name) {
            return Err(bad("NAME appears twice"));
        }
        out.push(Operation {
            name: name.to_string(),
            id: id.to_string(),
            enabled,
        });
    }
    Ok(out)
}

/// A config file read, not yet parsed: the bytes and the descriptor's metadata. The PAM layer's cache
/// compares the bytes with those its parsed config came from, and parses only when they differ.
pub struct ConfigFile {
    path: PathBuf,
    options: LoadOptions,
    meta: fs::Metadata,
    /// The text may hold the application secret: wiped when dropped.
    bytes: zeroize::Zeroizing<Vec<u8>>,
}

impl ConfigFile {
    /// Reads the file at `path` through one descriptor: the directories on the way are checked by path
    /// (root's, not writable by others), then one open, checked and read through the same descriptor: no
    /// symbolic link, no swap between the permission check and the read, nothing but a small regular
    /// file. The owner and mode are judged by [`ConfigFile::parse`] or [`ConfigFile::check_owner_and_mode`]
    /// (whether group/other may read it depends on whether it holds a secret).
    pub fn read(path: &Path, options: LoadOptions) -> Result<ConfigFile, ConfigError> {
        let whole = |message: String| whole_file(path, message);
        // (A missing file is reported by the open below.)
        match crate::safe_path::check_ancestors(path, options.trusted_owner) {
            Err(p) if !p.not_found => return Err(whole(p.to_string())),
            _ => {}
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => whole("is a symbolic link: point config= at the file itself".into()),
                _ => whole(format!("cannot read: {e}")),
            })?;
        let meta = file.metadata().map_err(|e| whole(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(whole("is not a regular file".into()));
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(whole(format!("is larger than {MAX_CONFIG_BYTES} bytes")));
        }
        // Read into one buffer of the file's size (no copy left behind by growing it).
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CONFIG_BYTES), &mut bytes)
            .map_err(|e| whole(format!("cannot read: {e}")))?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            options,
            meta,
            bytes,
        })
    }

    /// The bytes read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Parses and validates the text, then checks the file's owner and mode (readable by group/other
    /// only when it holds no inline secret).
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let path = self.path.as_path();
        let text = std::str::from_utf8(&self.bytes).map_err(|_| whole_file(path, "is not valid UTF-8".into()))?;
        // Parsed once: the same document says whether it holds a secret and becomes the config.
        let (spans, raw) = read_raw(Some(path), text)?;
        let checker = Checker {
            path: Some(path),
            spans,
            trusted_owner: self.options.trusted_owner,
            check_files: true,
        };
        let config = build(&checker, raw)?;
        self.check_owner_and_mode(config.holds_inline_secrets)?;
        Ok(config)
    }

    /// The owner and mode check [`ConfigFile::parse`] ends with, for a text already parsed (the same
    /// bytes as before: `holds_secrets` is what that parse found).
    pub fn check_owner_and_mode(&self, holds_secrets: bool) -> Result<(), ConfigError> {
        check_metadata(&self.path, &self.meta, holds_secrets, self.options.trusted_owner)
            .map_err(|m| whole_file(&self.path, m))
    }
}

fn whole_file(path: &Path, message: String) -> ConfigError {
    ConfigError {
        path: Some(path.to_path_buf()),
        line: None,
        key: None,
        message,
    }
}

/// A file other than the config itself that loading it read or checked (a `*_file` secret, a CA file,
/// the dictionary). The config is only as current as these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    pub path: PathBuf,
    /// Checked as a secret (no access for group or others).
    pub holds_secrets: bool,
}

/// Refuses a file that someone other than root (or the trusted uid) could have written or put in place
/// ([`crate::safe_path`]), or — when it holds secrets — that group/other can read.
pub fn check_permissions(path: &Path, holds_secrets: bool, trusted_owner: Option<u32>) -> Result<(), String> {
    crate::safe_path::check_file(path, trusted_owner, holds_secrets).map_err(|p| p.to_string())
}

fn check_metadata(
    path: &Path,
    meta: &fs::Metadata,
    holds_secrets: bool,
    trusted_owner: Option<u32>,
) -> Result<(), String> {
    crate::safe_path::check_file_meta(path, meta, trusted_owner, holds_secrets).map_err(|p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "AbCdEfGhIjKlMnOpQrSt";
    const SECRET: &str = "0123456789abcdefghij0123456789abcdefghij";

    fn base(extra: &str) -> String {
        format!(
            "service = \"latch\"\n{extra}\n[latch]\napp_id = \"{APP}\"\nsecret = \"{SECRET}\"\nurl = \"http://127.0.0.1:1\"\n"
        )
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse_str(&base("")).expect("valid");
        assert!(c.enabled);
        assert_eq!(c.fail_mode, FailMode::Secure);
        assert_eq!(c.unpaired, UnpairedPolicy::Ignore);
        assert_eq!(c.timeout, Duration::from_millis(3000));
        assert_eq!(c.store, DEFAULT_STORE);
        assert_eq!(c.latch.as_ref().map(|l| l.url.as_str()), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn operations_as_list_or_joined_string() {
        let list = Config::parse_str(&base(
            r#"operations = ["sshd:OPA:true", "sudo:OPB:false", "TOTP:TOTP:true"]"#,
        ))
        .expect("list");
        let joined =
            Config::parse_str(&base(r#"operations = "sshd:OPA:true, sudo:OPB:false,TOTP:TOTP:true""#)).expect("joined");
        assert_eq!(list.operations, joined.operations);
        assert_eq!(list.operation_rule("sshd"), OperationRule::Check("OPA".into()));
        assert_eq!(list.operation_rule("sudo"), OperationRule::Off);
        assert_eq!(list.operation_rule("login"), OperationRule::ApplicationWide);
        assert!(list.totp_enabled());
    }

    #[test]
    fn bad_operation_entry_names_key_and_line() {
        let e = Config::parse_str(&base("operations = [\"sshd:OPA\"]")).expect_err("bad");
        assert_eq!(e.key.as_deref(), Some("operations"));
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("NAME:ID:ENABLED"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = Config::parse_str("service = \"latch\"\nfail_mode = \n").expect_err("bad");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn lines_come_from_the_parser_in_any_toml_form() {
        // A key at the start of a line, a dotted key, an inline table and a missing key (its section).
        let e = Config::parse_str(&base("colour = 1")).expect_err("unknown");
        assert_eq!(e.line, Some(2), "{e}");
        let dotted = format!("service = \"latch\"\n\nlatch.app_id = \"short\"\nlatch.secret = \"{SECRET}\"\n");
        let e = Config::parse_str(&dotted).expect_err("short app id");
        assert_eq!((e.key.as_deref(), e.line), (Some("latch.app_id"), Some(3)), "{e}");
        let inline = format!("service = \"latch\"\n# app\nlatch = {{ app_id = \"{APP}\", secret = \"short\" }}\n");
        let e = Config::parse_str(&inline).expect_err("short secret");
        assert_eq!((e.key.as_deref(), e.line), (Some("latch.secret"), Some(3)), "{e}");
        let missing = "service = \"latch\"\n\n[latch]\nsecret = \"x\"\n";
        let e = Config::parse_str(missing).expect_err("no app id");
        assert_eq!((e.key.as_deref(), e.line), (Some("latch.app_id"), Some(3)), "{e}");
    }

    #[test]
    fn unknown_key_and_bad_enum_are_errors() {
        let e = Config::parse_str(&base("colour = 1")).expect_err("unknown");
        assert!(e.message.contains("colour"), "{e}");
        let e = Config::parse_str(&base("fail_mode = \"open\"")).expect_err("enum");
        assert!(e.message.contains("secure"), "{e}");
    }

    #[test]
    fn latch_section_is_validated() {
        let text = base("").replace(APP, "short");
        let e = Config::parse_str(&text).expect_err("short app id");
        assert_eq!(e.key.as_deref(), Some("latch.app_id"));
        assert_eq!(e.line, Some(4));
        let e = Config::parse_str("service = \"latch\"\n").expect_err("no section");
        assert_eq!(e.key.as_deref(), Some("service"));
        let e = Config::parse_str(&base("").replace("secret = ", "secretx = ")).expect_err("no secret");
        assert!(e.to_string().contains("secretx"), "{e}");
    }

    #[test]
    fn timeout_range() {
        assert!(Config::parse_str(&base("timeout_ms = 50")).is_err());
        assert!(Config::parse_str(&base("timeout_ms = 500")).is_ok());
    }

    #[test]
    fn inline_secrets_are_found_in_any_toml_form() {
        let holds = |text: &str| holds_inline_secrets(&read_raw(None, text).expect("valid TOML").1);
        assert!(holds(&base("")));
        let dotted = format!("service = \"latch\"\nlatch.app_id = \"{APP}\"\nlatch.secret = \"{SECRET}\"\n");
        assert!(holds(&dotted));
        let inline = format!("service = \"latch\"\nlatch = {{ app_id = \"{APP}\", secret = \"{SECRET}\" }}\n");
        assert!(holds(&inline));
        let file = format!("service = \"latch\"\n[latch]\napp_id = \"{APP}\"\nsecret_file = \"/x\"\n");
        assert!(!holds(&file));
    }

    #[test]
    fn groups_are_lists_of_names() {
        let c = Config::parse_str(&base(
            "exempt_groups = [\"breakglass\"]\nrequire_groups = [\"staff\", \"admins\"]",
        ))
        .expect("valid");
        assert_eq!(c.exempt_groups, ["breakglass"]);
        assert_eq!(c.require_groups, ["staff", "admins"]);
        assert!(Config::parse_str(&base("")).expect("valid").exempt_groups.is_empty());
        let e = Config::parse_str(&base("exempt_groups = [\"a b\"]")).expect_err("space");
        assert_eq!((e.key.as_deref(), e.line), (Some("exempt_groups"), Some(2)), "{e}");
        assert!(
            Config::parse_str(&base("require_groups = \"staff\"")).is_err(),
            "a list, not a string"
        );
    }

    #[test]
    fn a_bad_secret_file_is_named_with_its_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let uid = std::os::unix::fs::MetadataExt::uid(&fs::metadata(dir.path()).expect("meta"));
        let secret = dir.path().join("latch.secret");
        fs::write(&secret, "too-short\n").expect("write");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
        let conf = dir.path().join("lockserver.conf");
        let text = format!(
            "service = \"latch\"\n[latch]\napp_id = \"{APP}\"\nsecret_file = \"{}\"\n",
            secret.display()
        );
        fs::write(&conf, text).expect("write");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = Config::load(
            &conf,
            LoadOptions {
                trusted_owner: Some(uid),
            },
        )
        .expect_err("short secret");
        assert_eq!((e.key.as_deref(), e.line), (Some("latch.secret_file"), Some(4)), "{e}");
        assert!(e.to_string().contains(&secret.display().to_string()), "{e}");
    }

    #[test]
    fn secret_never_printed() {
        let c = Config::parse_str(&base("")).expect("valid");
        assert!(!format!("{c:?}").contains(SECRET));
    }

    const PINGID: &str = "service = \"pingid\"\n\n[pingid]\naccount_id = \"acc-1\"\napplication_id = \"app-1\"\n\
                          token = \"tok\"\napi_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n";

    #[test]
    fn pingid_section_gets_defaults() {
        let c = Config::parse_str(PINGID).expect("valid");
        let p = c.pingid.as_ref().expect("section");
        assert_eq!(p.url, crate::service::pingid::DEFAULT_URL);
        assert_eq!(p.pairing_scope, PairingScope::Application);
        assert_eq!(p.push_timeout, Duration::from_secs(40));
        assert_eq!(p.poll_interval, Duration::from_millis(1000));
        assert!(!p.require_response_signature);
        // PingID has no TOTP API: codes are local unless said otherwise (and "latch" is refused).
        assert_eq!(c.totp.source, TotpSource::Local);
        assert!(!format!("{c:?}").contains("tok\""), "the token is never printed");
    }

    #[test]
    fn pingid_keys_are_validated_with_their_line() {
        let cases = [
            ("push_timeout_secs = 4", "pingid.push_timeout_secs"),
            ("push_timeout_secs = 301", "pingid.push_timeout_secs"),
            ("poll_interval_ms = 10", "pingid.poll_interval_ms"),
            ("pairing_scope = \"global\"", ""),
            ("proxy = \"ftp://p\"", "pingid.proxy"),
        ];
        for (line, key) in cases {
            let text = format!("{PINGID}{line}\n");
            let e = Config::parse_str(&text).expect_err(line);
            assert_eq!(e.line, Some(8), "{line}: {e}");
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{line}: {e}");
            }
        }
        let bad_key = PINGID.replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "not base64!");
        let e = Config::parse_str(&bad_key).expect_err("api key");
        assert_eq!((e.key.as_deref(), e.line), (Some("pingid.api_key"), Some(7)), "{e}");
        let bad_id = PINGID.replace("acc-1", "acc/1");
        let e = Config::parse_str(&bad_id).expect_err("account id");
        assert_eq!((e.key.as_deref(), e.line), (Some("pingid.account_id"), Some(4)), "{e}");
        let e = Config::parse_str(&format!("{PINGID}[totp]\nsource = \"latch\"\n")).expect_err("latch TOTP");
        assert_eq!(e.key.as_deref(), Some("totp.source"), "{e}");
        // An unpadded key is accepted; a relative file path is not.
        let url_safe = PINGID.replace(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        );
        assert!(Config::parse_str(&url_safe).is_ok());
        let text = format!("{PINGID}ca_file = \"ca.pem\"\n");
        let e = Config::parse_str(&text).expect_err("relative ca_file");
        assert_eq!(e.key.as_deref(), Some("pingid.ca_file"), "{e}");
    }
}
