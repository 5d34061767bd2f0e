//! The HTTP transport shared by the service clients.
//!
//! One [`Transport`] wraps one `ureq::Agent`, built once per client and reused for every call, so a
//! C API handle keeps its connections alive between status checks. Every call takes the deadline of
//! the whole login and returns by it, whatever the server does (refuses, hangs, dribbles bytes,
//! closes mid-answer). Every failure becomes [`ServiceError::Unavailable`] with a short reason that
//! never holds a header, a body or a secret.
//!
//! The proxy and the extra CA come from the config only, never from the environment (sshd's
//! keyboard-interactive child has an empty one anyway, DESIGN §5): ureq's `Config::default()` does
//! read the `*_PROXY` variables, and the agent built here overwrites whatever it found.

#![forbid(unsafe_code)]

use super::{ServiceError, tls};
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::Agent;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, NextTimeout, TcpConnector};

/// Answers larger than this are refused without being read into memory (DESIGN §10).
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// The body type of Latch requests (and of any form POST).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Idle keep-alive connections kept per client. The default (3 per host) would make a C API handle
/// used from many threads close and reopen connections on every call.
const MAX_IDLE_CONNECTIONS: usize = 32;

/// Size of each of a connection's read and write buffers, and the largest response head accepted.
const IO_BUFFER_BYTES: usize = 16 * 1024;

/// How long a resolved host name is reused (see [`CachingResolver`]).
const DNS_CACHE_TTL: Duration = Duration::from_secs(30);

/// Where Linux distributions keep the system CA bundle, most common first (the same list openssl
/// and rustls-native-certs probe); see [`trusted_certificates`].
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Error code of the [`ServiceError::Misconfigured`] errors this crate finds itself, before any
/// request (unreadable `ca_file`, bad proxy URL, an id that cannot be put in a path): the service
/// never uses 0.
pub const LOCAL_ERROR_CODE: u32 = 0;

/// What a [`Transport`] is built from. Everything comes from the config file.
#[derive(Debug, Clone, Copy)]
pub struct TransportOptions<'a> {
    /// `https://host[:port][/prefix]` (or `http://` for an emulator), without a trailing slash.
    pub base_url: &'a str,
    /// Extra trusted CA certificates (PEM), added to the system trust store.
    pub ca_file: Option<&'a Path>,
    /// `http://[user:pass@]host:port` (CONNECT tunnel for https). Never taken from the environment.
    pub proxy: Option<&'a str>,
}

/// Response headers asked for by name: (the name as asked, the value).
pub type ResponseHeaders = Vec<(&'static str, String)>;

/// HTTP methods the services use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request body and its `Content-Type`.
#[derive(Debug, Clone, Copy)]
pub struct RequestBody<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// What the server answered: any status (4xx/5xx are answers too, the caller decides) and the body,
/// at most [`MAX_ANSWER_BYTES`]. The body is wiped on drop: it may hold one-time tokens.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Drop for Reply {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

impl fmt::Debug for Reply {
    // The body may hold tokens: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A reusable HTTP client for one service base URL.
pub struct Transport {
    agent: Agent,
    base_url: String,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("base_url", &self.base_url).finish()
    }
}

impl Transport {
    /// Builds the client. Fails with [`ServiceError::Misconfigured`] (code [`LOCAL_ERROR_CODE`]) when
    /// the URL, the CA file or the proxy in the config cannot be used: a configuration error must
    /// deny whatever `fail_mode` says, so it is not [`ServiceError::Unavailable`].
    pub fn new(options: &TransportOptions<'_>) -> Result<Transport, ServiceError> {
        let base_url = options.base_url.trim_end_matches('/').to_string();
        let plain = base_url.starts_with("http://");
        if !plain && !base_url.starts_with("https://") {
            return Err(local_error("the service URL must start with https:// (or http://)"));
        }
        let Ok(uri) = base_url.parse::<Uri>() else {
            return Err(local_error("the service URL is not a valid URL"));
        };
        let proxy = match options.proxy {
            // ureq gives no detail worth showing, and the URL may hold a password: name the key only.
            Some(p) => Some(ureq::Proxy::new(p).map_err(|_| local_error("the proxy URL is not valid"))?),
            None => None,
        };
        if proxy
            .as_ref()
            .is_some_and(|p| !matches!(p.protocol(), ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https))
        {
            // This build of ureq has no SOCKS support: refuse here rather than connect around the proxy.
            return Err(local_error(
                "the proxy must be an http:// or https:// URL (no SOCKS support)",
            ));
        }
        let tls = if plain {
            None
        } else {
            let config = tls::client_config(trusted_certificates(options.ca_file)?)
                .map_err(|e| local_error(format!("TLS set-up: {e}")))?;
            Some(config)
        };
        let config = agent_config(proxy);
        if plain {
            // The host only: a URL may carry credentials. At debug level: every login (and each of its
            // phases) builds a client, and the warning belongs to `check-config`, which says it once.
            let host = uri.host().unwrap_or("?");
            log::debug!(
                "http://{}: plain HTTP, the connection to the service is not encrypted",
                crate::escape::escape(host)
            );
        }
        // ureq's default chain minus SOCKS, with our TLS (see `super::tls`) instead of ureq's.
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(TcpConnector::default())
                .chain(tls::TlsConnector { config: tls });
        let agent = Agent::with_parts(config, connector, CachingResolver::default());
        Ok(Transport { agent, base_url })
    }

    /// The base URL requests are sent to (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// One request to `base_url + path` (`path` starts with `/`). Returns by `deadline`; fails at
    /// once when it has already passed.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<RequestBody<'_>>,
        deadline: Instant,
    ) -> Result<Reply, ServiceError> {
        self.send_reading_headers(method, path, headers, body, &[], deadline)
            .map(|(reply, _)| reply)
    }

    /// [`Self::send`], also returning the values of the response headers named in `wanted`
    /// (case-insensitive; each name at most once, the first value), in no particular order. PingID
    /// signs its answers in a header.
    pub fn send_reading_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<RequestBody<'_>>,
        wanted: &[&'static str],
        deadline: Instant,
    ) -> Result<(Reply, ResponseHeaders), ServiceError> {
        let remaining = time_left(deadline)?;
        if !path.starts_with('/') {
            return Err(ServiceError::Unavailable(
                "internal error: request path without a leading /".into(),
            ));
        }
        if body.is_some() && matches!(method, Method::Get | Method::Delete) {
            return Err(ServiceError::Unavailable(format!(
                "internal error: a {method} request has no body"
            )));
        }
        let url = format!("{}{path}", self.base_url);
        let mut response = self.call(method, &url, headers, body, remaining).map_err(unavailable)?;
        let status = response.status().as_u16();
        // A header value that is not visible ASCII is left out, as if it were absent.
        let found = wanted
            .iter()
            .filter_map(|name| {
                let value = response.headers().get(*name)?.to_str().ok()?;
                Some((*name, value.to_string()))
            })
            .collect();
        let body = read_body(response.body_mut())?;
        Ok((Reply { status, body }, found))
    }

    fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<RequestBody<'_>>,
        remaining: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut builder = ureq::http::Request::builder().method(method.as_str()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        match body {
            Some(b) => self.run(builder.header("Content-Type", b.content_type).body(b.bytes)?, remaining),
            None => self.run(builder.body(())?, remaining),
        }
    }

    fn run<S: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<S>,
        remaining: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        // `timeout_global` is the only ureq timeout that bounds the whole exchange (each phase
        // timeout restarts when the previous phase ends, so their sum could exceed the budget). It
        // makes ureq's default resolver run each lookup on a detached thread; [`CachingResolver`]
        // keeps that to one lookup per host name per 30 s, and none for IP literals.
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(remaining))
            .build();
        self.agent.run(request)
    }
}

/// Shorthands the unit tests use; the clients call [`Transport::send`].
#[cfg(test)]
impl Transport {
    pub fn get(&self, path: &str, headers: &[(&str, &str)], deadline: Instant) -> Result<Reply, ServiceError> {
        self.send(Method::Get, path, headers, None, deadline)
    }

    pub fn delete(&self, path: &str, headers: &[(&str, &str)], deadline: Instant) -> Result<Reply, ServiceError> {
        self.send(Method::Delete, path, headers, None, deadline)
    }

    /// POST with an `application/x-www-form-urlencoded` body (already encoded).
    pub fn post_form(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        deadline: Instant,
    ) -> Result<Reply, ServiceError> {
        let body = RequestBody {
            content_type: FORM_CONTENT_TYPE,
            bytes: body.as_bytes(),
        };
        self.send(Method::Post, path, headers, Some(body), deadline)
    }
}

/// The agent settings every service call shares.
fn agent_config(proxy: Option<ureq::Proxy>) -> Config {
    Agent::config_builder()
        // 4xx/5xx bodies are answers the caller maps (Latch puts its errors in 200 bodies anyway).
        .http_status_as_error(false)
        // Only the config's proxy: `Config::default()` picked one from the environment, this replaces it.
        .proxy(proxy)
        // The services never redirect; following one would resend the request elsewhere.
        .max_redirects(0)
        .max_redirects_will_error(true)
        .max_idle_connections(MAX_IDLE_CONNECTIONS)
        .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
        // ureq's defaults (128 KiB each way, zeroed for every new connection) were ~30 % of a
        // warm login's instructions; answers are a few hundred bytes, bodies are read in pieces
        // whatever the buffer, and a response head larger than the buffer is refused.
        .input_buffer_size(IO_BUFFER_BYTES)
        .output_buffer_size(IO_BUFFER_BYTES)
        .max_response_header_size(IO_BUFFER_BYTES)
        .user_agent(concat!("lockserver/", env!("CARGO_PKG_VERSION")))
        // TLS is `super::tls`'s connector, which reads nothing of this; should ureq's own connector ever
        // run, it trusts nothing (ureq's default would be its built-in webpki roots).
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(Vec::new())))
                .build(),
        )
        .build()
}

/// The trust store: the system PEM bundle (first of [`SYSTEM_CA_BUNDLES`] that exists) plus the
/// certificates of `ca_file`.
///
/// Never the platform verifier: on Linux it reads `SSL_CERT_FILE`/`SSL_CERT_DIR` from the environment,
/// and su and sudo run PAM in a setuid process with the caller's environment — a caller could make the
/// module trust nothing (then `fail_mode = "safe"` lets them in) or trust their own CA. The places read
/// here are fixed.
fn trusted_certificates(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, ServiceError> {
    let mut certs = match ca_file {
        Some(ca_file) => {
            let certs = pem_certificates(ca_file)?;
            if certs.is_empty() {
                return Err(local_error(format!(
                    "ca_file {}: no PEM certificate in it",
                    ca_file.display()
                )));
            }
            certs
        }
        None => Vec::new(),
    };
    match SYSTEM_CA_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file()) {
        // A broken system bundle is the system's problem, not this config's: keep the extra CA.
        Some(bundle) => match pem_certificates(&bundle) {
            Ok(system) => certs.extend(system),
            Err(e) => log::warn!("system CA bundle unusable: {}", crate::escape::escape(&e.to_string())),
        },
        None => log::warn!("no system CA bundle found in {SYSTEM_CA_BUNDLES:?}"),
    }
    if certs.is_empty() {
        return Err(local_error(
            "no trusted CA: install ca-certificates or set latch.ca_file",
        ));
    }
    Ok(certs)
}

/// The certificates of a PEM file; other sections (keys, CRLs, `TRUSTED CERTIFICATE`) and text
/// outside sections are skipped, as rustls-pki-types' reader does.
///
/// Read here rather than with `ureq::tls::parse_pem`: a cold HTTPS login reads the whole system bundle
/// (~140 certificates, ~220 KB), and that reader's line handling and base64 decoder cost ~7.9 M
/// instructions, most of a cold login; data-encoding's decoder does it in a small fraction of that
/// (callgrind figures in the README's performance section). Certificates are public: no constant-time
/// decoding is needed.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServiceError> {
    let pem = std::fs::read(path).map_err(|e| local_error(format!("cannot read {}: {e}", path.display())))?;
    parse_pem_certificates(&pem).ok_or_else(|| local_error(format!("{}: malformed PEM", path.display())))
}

/// [`pem_certificates`] on bytes: `None` when a section is cut short, its end line does not match its
/// begin line, or a certificate's base64 is not valid.
fn parse_pem_certificates(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    let mut base64 = Vec::with_capacity(4096);
    let mut section: Option<&[u8]> = None;
    // The lines, as `pem.split(|&b| b == b'\n')` gives them, but found with memchr: the byte-by-byte
    // split was ~1.2 M instructions of a cold HTTPS login (the system bundle is ~3,400 lines).
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', pem).chain([pem.len()]) {
        let line = &pem[start..end];
        start = end + 1;
        // Markers start at the line's start (as the library reads them); line ends may be CRLF.
        let line = line.trim_ascii_end();
        match section {
            None => {
                if let Some(rest) = line.strip_prefix(b"-----BEGIN ") {
                    section = Some(rest.strip_suffix(b"-----")?);
                    base64.clear();
                }
            }
            Some(label) => match line.strip_prefix(b"-----END ") {
                Some(rest) => {
                    if rest.strip_suffix(b"-----")? != label {
                        return None;
                    }
                    if label == b"CERTIFICATE" {
                        certs.push(CertificateDer::from(data_encoding::BASE64.decode(&base64).ok()?));
                    }
                    section = None;
                }
                None => base64.extend_from_slice(line.trim_ascii_start()),
            },
        }
    }
    match section {
        Some(_) => None,
        None => Some(certs),
    }
}

/// Time left before `deadline`, or the error of a call that must not start.
fn time_left(deadline: Instant) -> Result<Duration, ServiceError> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(ServiceError::Unavailable(
            "time budget exhausted before the request".into(),
        )),
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`]. A declared length over the cap is refused before reading;
/// an undeclared (chunked) one stops at the cap.
fn read_body(body: &mut ureq::Body) -> Result<Vec<u8>, ServiceError> {
    if body.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES) {
        return Err(too_large());
    }
    body.with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(unavailable)
}

fn too_large() -> ServiceError {
    ServiceError::Unavailable(format!("answer larger than {MAX_ANSWER_BYTES} bytes refused"))
}

/// A short reason for a transport failure. ureq's own texts are used only for variants that hold no
/// request data (a bad URI would echo the path; a proxy error its answer).
fn unavailable(error: ureq::Error) -> ServiceError {
    use ureq::Error as E;
    let why = match error {
        E::Timeout(_) => "timed out".to_string(),
        E::BodyExceedsLimit(_) => return too_large(),
        E::Io(e) => match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timed out".to_string(),
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::UnexpectedEof => "connection closed mid-answer".to_string(),
            // rustls reports a refused certificate or a broken handshake this way; its text names
            // the problem (e.g. "invalid peer certificate: UnknownIssuer") and holds no request data.
            std::io::ErrorKind::InvalidData => match e.get_ref() {
                Some(inner) => format!("TLS or protocol error: {}", short(&inner.to_string())),
                None => "TLS or protocol error".to_string(),
            },
            kind => format!("I/O error ({kind})"),
        },
        E::HostNotFound => "host not found".to_string(),
        E::ConnectionFailed => "connection failed".to_string(),
        E::TooManyRedirects | E::RedirectFailed => "the service answered with a redirect".to_string(),
        E::ConnectProxyFailed(_) => "the proxy refused the connection".to_string(),
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired => format!("TLS error: {}", short(&error.to_string())),
        E::Protocol(_) | E::LargeResponseHeader(..) => "malformed HTTP answer".to_string(),
        E::BadUri(_) | E::Http(_) => "invalid request (URL or header)".to_string(),
        other => format!("HTTP client error: {}", variant_name(&other)),
    };
    ServiceError::Unavailable(why)
}

/// At most 200 characters of a library's error text, on one line.
fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The Debug name of an error variant without its payload.
fn variant_name(error: &ureq::Error) -> String {
    let debug = format!("{error:?}");
    debug.split(['(', ' ', '{']).next().unwrap_or("unknown").to_string()
}

fn local_error(message: impl Into<String>) -> ServiceError {
    ServiceError::Misconfigured {
        code: LOCAL_ERROR_CODE,
        message: message.into(),
    }
}

/// ureq's resolver, minus most of its threads.
///
/// With any overall timeout set, ureq's `DefaultResolver` runs every lookup on a detached thread
/// (and resolution happens before the pool is consulted, so on every request, even on a kept-alive
/// connection). That would be one thread per status check, and a thread left running whenever
/// DNS outlasts the deadline. This resolver answers IP literals directly (no thread, no lookup:
/// the emulator and most fleet setups) and reuses a host's addresses for [`DNS_CACHE_TTL`], so a
/// thread is only spawned once per host name per 30 s; a lookup that outlasts the deadline still
/// leaves its thread running until getaddrinfo returns (bounded by resolv.conf), which is the
/// price of bounding DNS by the deadline at all.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<Vec<CachedLookup>>,
}

#[derive(Debug)]
struct CachedLookup {
    host_port: String,
    at: Instant,
    addrs: Vec<SocketAddr>,
}

impl CachingResolver {
    fn cached(&self, host_port: &str) -> Option<Vec<SocketAddr>> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .iter()
            .find(|c| c.host_port == host_port && c.at.elapsed() < DNS_CACHE_TTL)
            .map(|c| c.addrs.clone())
    }

    fn remember(&self, host_port: String, addrs: &[SocketAddr]) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A client talks to one service host and maybe one proxy: a few entries are plenty.
        cache.retain(|c| c.host_port != host_port && c.at.elapsed() < DNS_CACHE_TTL);
        cache.truncate(7);
        cache.push(CachedLookup {
            host_port,
            at: Instant::now(),
            addrs: addrs.to_vec(),
        });
    }

    fn to_resolved(&self, addrs: &[SocketAddr]) -> ResolvedSocketAddrs {
        let mut out = self.empty();
        for addr in addrs.iter().take(16) {
            out.push(*addr);
        }
        out
    }
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some((host, port)) = host_and_port(uri) else {
            // Let ureq produce its usual error for a URI it cannot use.
            return self.inner.resolve(uri, config, timeout);
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(self.to_resolved(&[SocketAddr::new(ip, port)]));
        }
        let host_port = format!("{host}:{port}");
        if let Some(addrs) = self.cached(&host_port) {
            return Ok(self.to_resolved(&addrs));
        }
        let resolved = self.inner.resolve(uri, config, timeout)?;
        self.remember(host_port, &resolved);
        Ok(resolved)
    }
}

/// Host (without IPv6 brackets) and port (explicit or the scheme's default) of a URI.
fn host_and_port(uri: &Uri) -> Option<(&str, u16)> {
    let authority = uri.authority()?;
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(p), _) => p,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        _ => return None,
    };
    let host = authority.host();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    fn transport(url: &str) -> Transport {
        let options = TransportOptions {
            base_url: url,
            ca_file: None,
            proxy: None,
        };
        match Transport::new(&options) {
            Ok(t) => t,
            Err(e) => panic!("transport: {e}"),
        }
    }

    /// A one-connection-at-a-time server that runs `handler` on each accepted connection.
    fn serve(handler: impl Fn(TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                handler(stream);
            }
        });
        format!("http://{addr}")
    }

    /// Reads one request: the head, then a body of the declared Content-Length.
    fn read_request(stream: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    fn assert_unavailable(result: Result<Reply, ServiceError>) -> String {
        match result {
            Err(ServiceError::Unavailable(why)) => why,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn passed_deadline_fails_without_connecting() {
        // Nothing listens on port 9 of a TEST-NET address; a connect attempt would hang, not fail.
        let t = transport("http://192.0.2.1:9");
        let start = Instant::now();
        let why = assert_unavailable(t.get("/x", &[], Instant::now()));
        assert!(why.contains("budget"), "{why}");
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        assert_unavailable(t.get("/x", &[], past));
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn reads_status_and_body_and_sends_headers() {
        let url = serve(|mut s| {
            let req = read_request(&mut s);
            let ok = req.starts_with("GET /api/x HTTP/1.1") && req.to_ascii_lowercase().contains("x-test: 1");
            let body = if ok { "{}" } else { "bad" };
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        });
        let reply = transport(&url).get("/api/x", &[("X-Test", "1")], soon(2000)).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, b"{}");
    }

    #[test]
    fn error_statuses_are_answers_not_errors() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\n<html>");
        });
        let reply = transport(&url).get("/", &[], soon(2000)).unwrap();
        assert_eq!(reply.status, 500);
    }

    #[test]
    fn post_form_sends_body_and_content_type() {
        let url = serve(|mut s| {
            let req = read_request(&mut s);
            let lower = req.to_ascii_lowercase();
            let ok = lower.contains("content-type: application/x-www-form-urlencoded") && req.ends_with("code=123456");
            let status = if ok { 204 } else { 400 };
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        });
        let reply = transport(&url).post_form("/v", &[], "code=123456", soon(2000)).unwrap();
        assert_eq!(reply.status, 204);
    }

    #[test]
    fn refused_connection_is_unavailable() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = transport(&format!("http://127.0.0.1:{port}"));
        let why = assert_unavailable(t.get("/", &[], soon(2000)));
        assert!(why.contains("refused") || why.contains("connection"), "{why}");
    }

    #[test]
    fn hanging_server_returns_by_the_deadline() {
        let url = serve(|mut s| {
            read_request(&mut s);
            thread::sleep(Duration::from_secs(3));
        });
        let start = Instant::now();
        let why = assert_unavailable(transport(&url).get("/", &[], soon(300)));
        assert!(why.contains("timed out"), "{why}");
        assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
    }

    #[test]
    fn dribbling_server_returns_by_the_deadline() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            for _ in 0..1000 {
                if s.write_all(b"x").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let start = Instant::now();
        let why = assert_unavailable(transport(&url).get("/", &[], soon(300)));
        assert!(why.contains("timed out"), "{why}");
        assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
    }

    #[test]
    fn dribbling_headers_return_by_the_deadline() {
        let url = serve(|mut s| {
            read_request(&mut s);
            for _ in 0..1000 {
                if s.write_all(b"X-A: b\r\n").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let start = Instant::now();
        assert_unavailable(transport(&url).get("/", &[], soon(300)));
        assert!(start.elapsed() < Duration::from_millis(1000), "{:?}", start.elapsed());
    }

    #[test]
    fn close_mid_answer_is_unavailable() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"da");
        });
        assert_unavailable(transport(&url).get("/", &[], soon(2000)));
    }

    #[test]
    fn declared_oversized_answer_is_refused_before_reading() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_ANSWER_BYTES + 1);
            thread::sleep(Duration::from_secs(2));
        });
        let start = Instant::now();
        let why = assert_unavailable(transport(&url).get("/", &[], soon(1500)));
        assert!(why.contains("larger"), "{why}");
        assert!(start.elapsed() < Duration::from_millis(1000));
    }

    #[test]
    fn chunked_oversized_answer_stops_at_the_cap() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..40 {
                if write!(s, "{:x}\r\n", chunk.len()).is_err() || s.write_all(&chunk).is_err() {
                    return;
                }
                let _ = s.write_all(b"\r\n");
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        let why = assert_unavailable(transport(&url).get("/", &[], soon(3000)));
        assert!(why.contains("larger"), "{why}");
    }

    #[test]
    fn answer_exactly_at_the_cap_is_read() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {MAX_ANSWER_BYTES}\r\n\r\n");
            let _ = s.write_all(&vec![b' '; MAX_ANSWER_BYTES as usize]);
        });
        let reply = transport(&url).get("/", &[], soon(3000)).unwrap();
        assert_eq!(reply.body.len() as u64, MAX_ANSWER_BYTES);
    }

    #[test]
    fn keep_alive_reuses_one_connection() {
        let connections = Arc::new(Mutex::new(0usize));
        let counter = connections.clone();
        let url = serve(move |mut s| {
            *counter.lock().unwrap() += 1;
            loop {
                let req = read_request(&mut s);
                if req.is_empty() {
                    return;
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").is_err() {
                    return;
                }
            }
        });
        let t = transport(&url);
        for _ in 0..20 {
            assert_eq!(t.get("/", &[], soon(2000)).unwrap().status, 200);
        }
        assert_eq!(*connections.lock().unwrap(), 1);
    }

    #[test]
    fn redirects_are_not_followed() {
        let url = serve(|mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/\r\nContent-Length: 0\r\n\r\n");
        });
        let start = Instant::now();
        match transport(&url).get("/", &[], soon(2000)) {
            Ok(reply) => assert_eq!(reply.status, 302),
            Err(ServiceError::Unavailable(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_millis(1000));
    }

    #[test]
    fn construction_errors_are_configuration_errors() {
        let bad = |options: TransportOptions<'_>| match Transport::new(&options) {
            Err(ServiceError::Misconfigured {
                code: LOCAL_ERROR_CODE,
                message,
            }) => message,
            other => panic!("expected Misconfigured, got {other:?}"),
        };
        let base = TransportOptions {
            base_url: "https://latch.tu.com",
            ca_file: None,
            proxy: None,
        };
        bad(TransportOptions {
            base_url: "ftp://x",
            ..base
        });
        let msg = bad(TransportOptions {
            proxy: Some("http://user:pa ss@[bad"),
            ..base
        });
        assert!(!msg.contains("pa ss"), "{msg}");
        bad(TransportOptions {
            ca_file: Some(Path::new("/nonexistent/ca.pem")),
            ..base
        });
        let dir = std::env::temp_dir().join(format!("lockserver-http-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        bad(TransportOptions {
            ca_file: Some(&empty),
            ..base
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A throwaway self-signed CA (parsing only; it signs nothing the tests trust).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCAS+gAwIBAgIUJPIOTclR13UxBDw5IeNlvzMgkMowCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHVGVzdCBDQTAeFw0yNjExMjMxNDM4MDBaFw0yNjExMjUxNDM4
MDBaMBIxEDAOBgNVBAMMB1Rlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AASttq9uu6OF4wXEg1d5QoDENKecjPjB72mBubWCZF5/77Pa7l0hux6d0uZ8B3yv
JO7hPNSoH3bAf98L5cWqrNFYo2MwYTAdBgNVHQ4EFgQUYOQ1L8+1V3+Dabt6vpzx
ZDgx58kwHwYDVR0jBBgwFoAUYOQ1L8+1V3+Dabt6vpzxZDgx58kwDwYDVR0TAQH/
BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAgQwCgYIKoZIzj0EAwIDSQAwRgIhAPh/J4ut
CxHHRIAuOVchAdhn7x17caHB7CAtcuoeAWAPAiEAtufGtv/vvD8fFSYof5lePJ2r
BQCnU7lIVg/zhm2IvnI=
-----END CERTIFICATE-----
";

    #[test]
    fn ca_file_is_added_to_the_system_bundle() {
        assert!(
            matches!(trusted_certificates(None), Ok(c) if !c.is_empty()),
            "the system bundle"
        );
        let dir = std::env::temp_dir().join(format!("lockserver-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        let roots = trusted_certificates(Some(&ca));
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(certs) = roots else {
            panic!("expected specific roots, got {roots:?}");
        };
        let system = SYSTEM_CA_BUNDLES.iter().any(|p| Path::new(p).is_file());
        // The extra CA, plus every system root where the system has a bundle.
        if system {
            assert!(certs.len() > 10, "{} roots", certs.len());
        } else {
            assert_eq!(certs.len(), 1);
        }
    }

    #[test]
    fn clients_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Transport>();
    }

    #[test]
    fn proxy_and_https_options_build() {
        let options = TransportOptions {
            base_url: "https://latch.tu.com/",
            ca_file: None,
            proxy: Some("http://proxy.example:3128"),
        };
        let t = Transport::new(&options).unwrap();
        assert_eq!(t.base_url(), "https://latch.tu.com");
    }

    /// With `proxy` set, the connection goes to the proxy (a CONNECT tunnel, also for http://),
    /// never to the service host directly.
    #[test]
    fn requests_go_through_the_configured_proxy() {
        let proxy = serve(|mut s| {
            let connect = read_request(&mut s);
            if !connect.starts_with("CONNECT service.invalid:80 HTTP/1.1") {
                let _ = s.write_all(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            let _ = s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let req = read_request(&mut s);
            let status = if req.starts_with("GET /api/p HTTP/1.1") {
                200
            } else {
                400
            };
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        });
        let options = TransportOptions {
            base_url: "http://service.invalid",
            ca_file: None,
            proxy: Some(&proxy),
        };
        let reply = Transport::new(&options)
            .unwrap()
            .get("/api/p", &[], soon(2000))
            .unwrap();
        assert_eq!(reply.status, 200);
    }

    #[test]
    fn resolver_answers_ip_literals_without_lookup() {
        let uri: Uri = "http://[::1]:8080/x".parse().unwrap();
        assert_eq!(host_and_port(&uri), Some(("::1", 8080)));
        let uri: Uri = "https://latch.tu.com/x".parse().unwrap();
        assert_eq!(host_and_port(&uri), Some(("latch.tu.com", 443)));
        let r = CachingResolver::default();
        let uri: Uri = "http://127.0.0.1:81/".parse().unwrap();
        let got = r.resolve(&uri, &Config::default(), NextTimeout::default()).unwrap();
        assert_eq!(&got[..], &["127.0.0.1:81".parse::<SocketAddr>().unwrap()][..]);
        assert!(r.cache.lock().unwrap().is_empty());
    }

    #[test]
    fn resolver_caches_host_names() {
        let r = CachingResolver::default();
        let uri: Uri = "http://localhost:81/".parse().unwrap();
        let first = r.resolve(&uri, &Config::default(), NextTimeout::default()).unwrap();
        assert!(!first.is_empty());
        assert_eq!(r.cache.lock().unwrap().len(), 1);
        let again = r.resolve(&uri, &Config::default(), NextTimeout::default()).unwrap();
        assert_eq!(&first[..], &again[..]);
    }

    #[test]
    fn reply_debug_hides_the_body() {
        let reply = Reply {
            status: 200,
            body: b"token".to_vec(),
        };
        let shown = format!("{reply:?}");
        assert!(!shown.contains("token"), "{shown}");
    }

    /// The library's reader, for comparison: the DER of every certificate it finds.
    fn library_pem(pem: &[u8]) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c.der().to_vec()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        Some(out)
    }

    fn ders(certs: Option<Vec<CertificateDer<'static>>>) -> Option<Vec<Vec<u8>>> {
        certs.map(|c| c.iter().map(|c| c.to_vec()).collect())
    }

    fn pem_section(label: &str, der: &[u8], eol: &str) -> String {
        let b64 = data_encoding::BASE64.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----{eol}{}{eol}-----END {label}-----{eol}",
            lines.join(eol)
        )
    }

    #[test]
    fn pem_reader_finds_what_the_library_finds() {
        let one: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let two: Vec<u8> = (0..77u32).map(|i| (i * 13 % 256) as u8).collect();
        let text = format!(
            "Subject: some explanatory text\n{}{}\n{}{}",
            pem_section("CERTIFICATE", &one, "\n"),
            pem_section("PRIVATE KEY", &two, "\n"),
            pem_section("CERTIFICATE", &two, "\r\n"),
            pem_section("TRUSTED CERTIFICATE", &one, "\n"),
        );
        let ours = ders(parse_pem_certificates(text.as_bytes()));
        assert_eq!(ours, Some(vec![one.clone(), two.clone()]));
        assert_eq!(ours, library_pem(text.as_bytes()));
        assert_eq!(ders(parse_pem_certificates(b"no PEM here")), Some(vec![]));
        // An indented marker is text, for both readers.
        let indented = format!("  {}", pem_section("CERTIFICATE", &one, "\n"));
        assert_eq!(ders(parse_pem_certificates(indented.as_bytes())), Some(vec![]));
        assert_eq!(library_pem(indented.as_bytes()), Some(vec![]));

        // Cut short, mismatched ends and bad base64 are refused.
        let cut = pem_section("CERTIFICATE", &one, "\n");
        assert!(parse_pem_certificates(&cut.as_bytes()[..cut.len() - 30]).is_none());
        let mismatched = cut.replace("END CERTIFICATE", "END X509 CRL");
        assert!(parse_pem_certificates(mismatched.as_bytes()).is_none());
        let bad = cut.replacen('A', "*", 1);
        assert!(parse_pem_certificates(bad.as_bytes()).is_none());
        assert!(library_pem(bad.as_bytes()).is_none());
    }

    #[test]
    fn pem_reader_reads_the_system_bundle_as_the_library_does() {
        let Some(bundle) = SYSTEM_CA_BUNDLES.iter().find_map(|p| std::fs::read(p).ok()) else {
            return; // no system bundle on this machine: the synthetic test above still runs
        };
        let ours = ders(parse_pem_certificates(&bundle));
        assert!(
            ours.as_ref().is_some_and(|c| c.len() > 10),
            "{:?}",
            ours.map(|c| c.len())
        );
        assert_eq!(ours, library_pem(&bundle));
    }
}
