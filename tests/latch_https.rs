//! The Latch client over HTTPS against the emulator with a throw-away CA: trusted through `ca_file`
//! (added to the system trust store), refused without it.

use lockserver::config::Config;
use lockserver::service::{self, Access, ServiceError};
use lockserver_emulator::{Emulator, Options, TlsMode};
use std::time::{Duration, Instant};

fn config(emu: &Emulator, ca_file: Option<&std::path::Path>) -> Config {
    let ca = ca_file.map_or(String::new(), |p| format!("ca_file = \"{}\"\n", p.display()));
    let text = format!(
        "service = \"latch\"\n[latch]\napp_id = \"{}\"\nsecret = \"{}\"\nurl = \"{}\"\n{ca}",
        emu.app_id(),
        emu.secret(),
        emu.url()
    );
    Config::parse_str(&text).expect("config")
}

#[test]
fn https_with_ca_file_and_without() {
    let emu = Emulator::start(Options {
        tls: Some(TlsMode::SelfSigned),
        ..Options::default()
    })
    .expect("emulator");
    assert!(emu.url().starts_with("https://"), "{}", emu.url());
    let account = emu.pair("alice").expect("pair");
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, emu.ca_pem().expect("the emulator's CA")).expect("write CA");

    let trusted = service::from_config(&config(&emu, Some(&ca))).expect("client");
    let deadline = || Instant::now() + Duration::from_secs(5);
    match trusted.status(&account, None, false, deadline()) {
        Ok(Access::Open) => {}
        other => panic!("expected open over HTTPS, got {other:?}"),
    }
    emu.set_latch(&account, None, false).expect("lock");
    assert!(matches!(
        trusted.status(&account, None, false, deadline()),
        Ok(Access::Locked)
    ));

    // Without the CA the certificate is not trusted: no answer, so fail_mode decides.
    let untrusted = service::from_config(&config(&emu, None)).expect("client");
    match untrusted.status(&account, None, false, deadline()) {
        Err(ServiceError::Unavailable(why)) => assert!(why.to_lowercase().contains("cert"), "{why}"),
        other => panic!("expected a certificate failure, got {other:?}"),
    }
}

/// A throw-away PKI for the emulator's `TlsMode::Files`: a root, an intermediate it signs and leaves.
mod pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    pub struct Ca {
        pub pem: String,
        params: CertificateParams,
        key: KeyPair,
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    pub fn root(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let params = ca_params(name);
        let pem = params.self_signed(&key).expect("root").pem();
        Ca { pem, params, key }
    }

    pub fn intermediate(name: &str, by: &Ca) -> Ca {
        let key = KeyPair::generate().expect("key");
        let params = ca_params(name);
        let pem = params
            .signed_by(&key, &Issuer::from_params(&by.params, &by.key))
            .expect("intermediate")
            .pem();
        Ca { pem, params, key }
    }

    /// A leaf for `names` signed by `by`: (certificate PEM, PKCS#8 key PEM).
    pub fn leaf(names: &[&str], by: &Ca) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, "emulator");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&by.params, &by.key))
            .expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// An emulator serving `chain` (PEM, leaf first) with `key`, a paired account, and the config of a
/// client trusting `ca` (PEM) on top of the system store.
fn serve(dir: &std::path::Path, chain: &str, key: &str, ca: &str) -> (Emulator, String, Config) {
    let (cert_file, key_file, ca_file) = (dir.join("chain.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&cert_file, chain).expect("write chain");
    std::fs::write(&key_file, key).expect("write key");
    std::fs::write(&ca_file, ca).expect("write CA");
    let emu = Emulator::start(Options {
        tls: Some(TlsMode::Files {
            cert: cert_file,
            key: key_file,
        }),
        ..Options::default()
    })
    .expect("emulator");
    let account = emu.pair("alice").expect("pair");
    let config = config(&emu, Some(&ca_file));
    (emu, account, config)
}

/// One status check by a new client: `Ok(true)` for an open latch.
fn status(config: &Config, account: &str) -> Result<bool, ServiceError> {
    let client = service::from_config(config).expect("client");
    let answer = client.status(account, None, false, Instant::now() + Duration::from_secs(5));
    answer.map(|access| matches!(access, Access::Open))
}

fn refused_certificate(result: Result<bool, ServiceError>, what: &str) {
    match result {
        Err(ServiceError::Unavailable(why)) => assert!(why.contains(what), "{why}"),
        other => panic!("expected a refused certificate ({what}), got {other:?}"),
    }
}

/// The trust store holds the root only; the server sends its leaf and the intermediate between them.
#[test]
fn chain_through_an_intermediate_is_trusted() {
    let root = pki::root("lockserver test root");
    let inter = pki::intermediate("lockserver test intermediate", &root);
    let (leaf, key) = pki::leaf(&["127.0.0.1"], &inter);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_emu, account, config) = serve(tmp.path(), &format!("{leaf}{}", inter.pem), &key, &root.pem);
    assert!(matches!(status(&config, &account), Ok(true)));

    // Without the intermediate nobody trusted issued the leaf.
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_emu, account, config) = serve(tmp.path(), &leaf, &key, &root.pem);
    refused_certificate(status(&config, &account), "UnknownIssuer");
}

/// A CA with the very name of the trusted one but another key: its leaf is refused.
#[test]
fn issuer_name_of_a_trusted_ca_with_another_key_is_refused() {
    let trusted = pki::root("lockserver twin CA");
    let impostor = pki::root("lockserver twin CA");
    let (leaf, key) = pki::leaf(&["127.0.0.1"], &impostor);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_emu, account, config) = serve(tmp.path(), &format!("{leaf}{}", impostor.pem), &key, &trusted.pem);
    refused_certificate(status(&config, &account), "BadSignature");
}

/// A certificate from a trusted CA for another host name is refused.
#[test]
fn certificate_for_another_host_is_refused() {
    let root = pki::root("lockserver name CA");
    let (leaf, key) = pki::leaf(&["service.test", "127.0.0.2"], &root);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_emu, account, config) = serve(tmp.path(), &leaf, &key, &root.pem);
    refused_certificate(status(&config, &account), "not valid for name");
}
