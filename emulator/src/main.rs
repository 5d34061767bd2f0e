//! `lockserver-emulator`: runs the Latch emulator until killed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lockserver_emulator::pingid::{DEFAULT_ACCOUNT_ID, DEFAULT_API_KEY_B64, DEFAULT_TOKEN};
use lockserver_emulator::{
    AppConfig, DEFAULT_APP_ID, DEFAULT_SECRET, Emulator, Options, PingidOptions, QrMode, Services, TlsMode,
};

/// A Latch- and PingID-SDK-compatible emulator (Latch under /api/<v>/, PingID under /pingid/v1/,
/// control API under /_emulator/).
#[derive(Parser, Debug)]
#[command(name = "lockserver-emulator", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key", conflicts_with = "tls_self_signed")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a fresh CA-signed certificate for localhost/127.0.0.1/::1.
    #[arg(long)]
    tls_self_signed: bool,
    /// Write the PEM a client must trust (the CA with --tls-self-signed) to this path.
    #[arg(long, value_name = "PATH")]
    cert_out: Option<PathBuf>,
    /// Id of the default application.
    #[arg(long, default_value = DEFAULT_APP_ID)]
    app_id: String,
    /// Secret of the default application.
    #[arg(long, default_value = DEFAULT_SECRET)]
    secret: String,
    /// An operation id of the default application (repeatable).
    #[arg(long = "operation", value_name = "OPID")]
    operations: Vec<String>,
    /// A further application, ID:SECRET or ID:SECRET:OP1,OP2 (repeatable).
    #[arg(long = "app", value_name = "ID:SECRET[:OPS]")]
    apps: Vec<String>,
    /// Accepted distance between X-11Paths-Date and the emulator's clock, in seconds.
    #[arg(long, default_value_t = 300)]
    window_secs: u64,
    /// Form of TOTP `qr` values: a data:image/png;base64 PNG or the otpauth:// URI.
    #[arg(long, value_parser = ["png", "uri"], default_value = "png")]
    totp_qr: String,
    /// Lifetime of pairing codes, in seconds (default: no expiry).
    #[arg(long, value_name = "SECS")]
    code_ttl_secs: Option<u64>,
    /// Pre-register a pairing code (repeatable).
    #[arg(long = "code", value_name = "CODE")]
    codes: Vec<String>,
    /// Also write the URL to this file once listening.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Log every request to stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Which API to serve: latch, pingid or both.
    #[arg(long, value_parser = ["latch", "pingid", "both"], default_value = "both")]
    service: String,
    /// PingID account id.
    #[arg(long, default_value = DEFAULT_ACCOUNT_ID)]
    pingid_account: String,
    /// PingID account token.
    #[arg(long, default_value = DEFAULT_TOKEN)]
    pingid_token: String,
    /// PingID API key (base64, standard alphabet).
    #[arg(long, default_value = DEFAULT_API_KEY_B64)]
    pingid_api_key: String,
    /// A PingID application id (repeatable; the first is the default). Default: two built-in ids.
    #[arg(long = "pingid-app", value_name = "ID")]
    pingid_apps: Vec<String>,
}

fn parse_app(s: &str) -> Result<AppConfig, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
        return Err(format!("--app {s:?}: expected ID:SECRET[:OP1,OP2]"));
    };
    if id.is_empty() || secret.is_empty() {
        return Err(format!("--app {s:?}: empty id or secret"));
    }
    let operations = parts.next().map_or_else(Vec::new, |ops| {
        ops.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect()
    });
    Ok(AppConfig {
        id: id.into(),
        secret: secret.into(),
        operations,
    })
}

/// Writes `contents` to `path` atomically (temp file + rename), so a poller never sees a partial file.
fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

fn run(cli: Cli) -> Result<(), String> {
    let mut apps = vec![AppConfig {
        id: cli.app_id,
        secret: cli.secret,
        operations: cli.operations,
    }];
    for a in &cli.apps {
        apps.push(parse_app(a)?);
    }
    let tls = match (cli.tls_cert, cli.tls_key, cli.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(TlsMode::Files { cert, key }),
        (_, _, true) => Some(TlsMode::SelfSigned),
        _ => None,
    };
    let options = Options {
        listen: cli.listen.clone(),
        tls,
        apps,
        window_secs: cli.window_secs,
        qr_mode: QrMode::parse(&cli.totp_qr).unwrap_or_default(),
        code_ttl: cli.code_ttl_secs.map(Duration::from_secs),
        verbose: cli.verbose,
        services: Services {
            latch: cli.service != "pingid",
            pingid: cli.service != "latch",
        },
        pingid: PingidOptions {
            account_id: cli.pingid_account,
            token: cli.pingid_token,
            api_key_b64: cli.pingid_api_key,
            applications: if cli.pingid_apps.is_empty() {
                PingidOptions::default().applications
            } else {
                cli.pingid_apps
            },
        },
    };
    let emu = Emulator::start(options).map_err(|e| format!("cannot start on {}: {e}", cli.listen))?;
    for code in &cli.codes {
        emu.add_code(Some(code)).map_err(|e| e.to_string())?;
    }
    if let Some(path) = &cli.cert_out {
        let pem = emu.ca_pem().ok_or("--cert-out needs --tls-self-signed or --tls-cert")?;
        write_atomic(path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.ready_file {
        write_atomic(path, &format!("{}\n", emu.url())).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {}", emu.url()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    if cli.verbose {
        eprintln!("emulator: app {} secret {}", emu.app_id(), emu.secret());
    }
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockserver-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
