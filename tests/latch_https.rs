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
