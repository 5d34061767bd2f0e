//! TLS for the service clients: ureq's connector chain with a rustls client of our own, whose
//! certificate verifier parses only the trust anchors a handshake can use.
//!
//! A cold HTTPS login (sshd's case: a fresh process per connection) used to hand ureq every
//! certificate of the system bundle, and ureq's rustls connector parsed each into a webpki trust
//! anchor (~145 of them) before the first handshake. webpki only ever uses an anchor whose subject is,
//! byte for byte, the issuer of a certificate in the chain it builds, and every certificate it can put
//! in a chain is one the server presented. So [`AnchorVerifier`] keeps the DER of every trusted
//! certificate and, at each handshake, hands webpki just those whose subject is the issuer of a
//! presented certificate, in the store's order, and otherwise does what rustls'
//! `WebPkiServerVerifier` does (same functions, same algorithms): the same chains are accepted and
//! refused, with the same errors. A certificate this module cannot read is never left out: an
//! unreadable anchor is always handed over, an unreadable presented certificate makes the whole
//! store be used.
//!
//! One rustls `ClientConfig` is built per [`super::http::Transport`] and shared by its connections,
//! so a C API handle pays no trust store build per new connection either (ureq rebuilds its config
//! for every connection of a request that carries its own config, as each call here does for its
//! deadline).

#![forbid(unsafe_code)]

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use ureq::unversioned::transport::time::{Duration, Instant};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

/// The rustls client config of a transport: TLS 1.2 and 1.3 (what ureq offered), ring, SNI on, no
/// client certificate, and [`AnchorVerifier`] over `trusted` (in this order).
pub(crate) fn client_config(trusted: Vec<CertificateDer<'static>>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnchorVerifier {
        trusted,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The issuer and subject names of a DER X.509 certificate: the contents of each `Name` SEQUENCE,
/// without its tag and length (what webpki compares). `None` when the certificate's start is not
/// `SEQUENCE { SEQUENCE { [0] version?, serial, signature, issuer, validity, subject ...`.
///
/// A walk of the outer elements only, bounds-checked at every step; it checks nothing else (webpki does).
pub fn issuer_and_subject(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0; // [0] EXPLICIT, constructed
    let (certificate, _) = element(cert, SEQUENCE)?;
    let (mut tbs, _) = element(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs, VERSION)?.1;
    }
    let (_serial, rest) = element(tbs, INTEGER)?;
    let (_signature, rest) = element(rest, SEQUENCE)?;
    let (issuer, rest) = element(rest, SEQUENCE)?;
    let (_validity, rest) = element(rest, SEQUENCE)?;
    let (subject, _) = element(rest, SEQUENCE)?;
    Some((issuer, subject))
}

/// The DER element with tag `tag` at the start of `input`: (its contents, the bytes after it).
/// Definite lengths of up to 4 bytes (webpki accepts no more); anything else is `None`.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        (bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)), rest)
    };
    (length <= rest.len()).then(|| rest.split_at(length))
}

/// A `WebPkiServerVerifier` over the whole trust store, in effect, that parses only the anchors a
/// chain can use (see the module's comment).
struct AnchorVerifier {
    /// Every trusted certificate, `ca_file` first, then the system bundle (as read; duplicates kept).
    trusted: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for AnchorVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnchorVerifier")
            .field("trusted", &self.trusted.len())
            .finish()
    }
}

impl AnchorVerifier {
    /// The trust anchors webpki could use for a chain made of `presented` certificates: those whose
    /// subject is the issuer of one of them, plus any this module cannot read (webpki decides on
    /// those), in the store's order. Every certificate when a presented one cannot be read.
    fn anchors_for(&self, presented: &[&[u8]]) -> RootCertStore {
        let issuers: Option<Vec<&[u8]>> = presented
            .iter()
            .map(|c| issuer_and_subject(c).map(|(issuer, _)| issuer))
            .collect();
        let usable = |cert: &&CertificateDer<'static>| match (&issuers, issuer_and_subject(cert)) {
            (Some(issuers), Some((_, subject))) => issuers.contains(&subject),
            _ => true,
        };
        let mut roots = RootCertStore::empty();
        // Certificates webpki cannot make an anchor of are skipped, as over the full store.
        roots.add_parsable_certificates(
            self.trusted
                .iter()
                .filter(usable)
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        roots
    }
}

impl ServerCertVerifier for AnchorVerifier {
    // The steps of rustls' `WebPkiServerVerifier::verify_server_cert` (no CRLs), in its order.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let presented: Vec<&[u8]> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref())
            .collect();
        let roots = self.anchors_for(&presented);
        if roots.is_empty() {
            // webpki's answer over the full store too (no anchor names the chain's issuers): said here
            // because an empty store is otherwise easy to mistake for a broken one.
            log::debug!("TLS: no trusted CA is the issuer of a certificate the server presented");
        }
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The last link of the connector chain: wraps the TCP (or proxy tunnel) transport in TLS when the URL
/// is https. `config` is `None` for a plain http:// service: nothing is ever wrapped then.
pub(crate) struct TlsConnector {
    pub(crate) config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("tls", &self.config.is_some())
            .finish()
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None); // ureq reports "connection failed"
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let Some(config) = &self.config else {
            // Only an https:// proxy in front of an http:// service gets here.
            return Err(ureq::Error::Tls("TLS needed, but the service URL is http://"));
        };
        let host = details.uri.host().ok_or(ureq::Error::Tls("no host in the URL"))?;
        // An IPv6 literal comes in brackets.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host)
            .map_err(|_| ureq::Error::Tls("the host is not a valid TLS server name"))?
            .to_owned();
        let mut conn = ClientConnection::new(config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        // The handshake gets what is left of the connection's budget, counted from when ureq set it.
        sock.set_timeout(remaining(details.timeout, details.now, (details.current_time)()));
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// `timeout`, set at `since`, as seen at `now`.
fn remaining(mut timeout: NextTimeout, since: Instant, now: Instant) -> NextTimeout {
    if let (Duration::Exact(limit), Instant::Exact(since), Instant::Exact(now)) = (timeout.after, since, now) {
        timeout.after = Duration::Exact(limit.saturating_sub(now.saturating_duration_since(since)));
    }
    timeout
}

/// A TLS connection as a ureq transport (what ureq's own rustls transport does).
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("chained", &self.stream.sock.inner())
            .finish()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject;

    /// A CA: its certificate and what signs with its name and key.
    struct Ca {
        cert: CertificateDer<'static>,
        params: CertificateParams,
        key: KeyPair,
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn root(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca { cert, params, key }
    }

    /// A CA of `name` whose certificate `by` signs.
    fn intermediate(name: &str, by: &Ca) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&by.params, &by.key))
            .unwrap()
            .der()
            .clone();
        Ca { cert, params, key }
    }

    fn leaf(names: &[&str], by: &Ca) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params
            .signed_by(&key, &Issuer::from_params(&by.params, &by.key))
            .unwrap()
            .der()
            .clone()
    }

    /// The system bundle (when the machine has one) after `extra`: what a transport trusts.
    fn store(extra: &[&Ca]) -> Vec<CertificateDer<'static>> {
        let mut certs: Vec<CertificateDer<'static>> = extra.iter().map(|c| c.cert.clone()).collect();
        if let Ok(iter) = CertificateDer::pem_file_iter("/etc/ssl/certs/ca-certificates.crt") {
            certs.extend(iter.map(|c| c.unwrap()));
        }
        certs
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    /// Our verifier's answer and that of rustls' own over the whole store: they must be the same.
    fn both(
        trusted: &[CertificateDer<'static>],
        chain: &[CertificateDer<'static>],
        host: &str,
        at: UnixTime,
    ) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ours = AnchorVerifier {
            trusted: trusted.to_vec(),
            provider: provider.clone(),
        };
        let name = ServerName::try_from(host).unwrap().to_owned();
        let got = ours
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
            .map(drop);
        let mut all = RootCertStore::empty();
        all.add_parsable_certificates(trusted.iter().cloned());
        if all.is_empty() {
            // rustls' builder refuses an empty store; webpki over no anchor knows no issuer.
            assert_eq!(
                got,
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                ))
            );
            return got;
        }
        let full = WebPkiServerVerifier::builder_with_provider(Arc::new(all), provider)
            .build()
            .unwrap();
        let want = full
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
            .map(drop);
        assert_eq!(got, want, "our verifier and rustls' over the full store disagree");
        assert_eq!(ours.supported_verify_schemes(), full.supported_verify_schemes());
        got
    }

    fn refused(result: Result<(), rustls::Error>) -> rustls::CertificateError {
        match result {
            Err(rustls::Error::InvalidCertificate(e)) => e,
            other => panic!("expected a refused certificate, got {other:?}"),
        }
    }

    #[test]
    fn reads_names_of_real_certificates() {
        let ca = root("Names CA");
        let (issuer, subject) = issuer_and_subject(&ca.cert).unwrap();
        assert_eq!(issuer, subject, "self-signed");
        let inter = intermediate("Names Intermediate", &ca);
        let (issuer, subject) = issuer_and_subject(&inter.cert).unwrap();
        assert_eq!(issuer, issuer_and_subject(&ca.cert).unwrap().1);
        assert_ne!(issuer, subject);
        // Every certificate of the system bundle reads, with the subject webpki finds.
        for cert in store(&[]) {
            let mut one = RootCertStore::empty();
            one.add(cert.clone()).unwrap();
            let (_, subject) = issuer_and_subject(&cert).unwrap();
            let subject = rustls::DistinguishedName::in_sequence(subject);
            assert_eq!(subject.as_ref(), one.subjects()[0].as_ref());
        }
    }

    #[test]
    fn name_reader_never_panics_on_cut_or_garbage_input() {
        let ca = root("Cut CA");
        let der = ca.cert.as_ref();
        for end in 0..der.len() {
            // A cut certificate may still hold both names (they come early): never a panic, and
            // never other names than the whole certificate's.
            if let Some(names) = issuer_and_subject(&der[..end]) {
                assert_eq!(Some(names), issuer_and_subject(der));
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = der.to_vec();
            let at = (state as usize) % bytes.len();
            bytes[at] = (state >> 32) as u8;
            let _ = issuer_and_subject(&bytes);
            let len = (state >> 40) as usize % 64;
            let garbage: Vec<u8> = (0..len).map(|i| (state >> (i % 56)) as u8).collect();
            let _ = issuer_and_subject(&garbage);
        }
        assert_eq!(issuer_and_subject(&[]), None);
        assert_eq!(issuer_and_subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(issuer_and_subject(&[0x30, 0x80, 0x00, 0x00]), None, "indefinite length");
    }

    #[test]
    fn chain_through_an_intermediate_is_trusted() {
        let ca = root("Chain Root");
        let inter = intermediate("Chain Intermediate", &ca);
        let chain = [leaf(&["service.test"], &inter), inter.cert.clone()];
        assert_eq!(both(&store(&[&ca]), &chain, "service.test", now()), Ok(()));
        // The root sent along too, as some servers do.
        let with_root = [chain[0].clone(), chain[1].clone(), ca.cert.clone()];
        assert_eq!(both(&store(&[&ca]), &with_root, "service.test", now()), Ok(()));
        // Trusting the intermediate alone is enough, as with webpki over any store.
        assert_eq!(both(&store(&[&inter]), &chain, "service.test", now()), Ok(()));
        // The intermediate not sent: nobody trusted issued the leaf.
        let e = refused(both(&store(&[&ca]), &chain[..1], "service.test", now()));
        assert_eq!(e, rustls::CertificateError::UnknownIssuer);
    }

    #[test]
    fn same_issuer_name_signed_by_another_key_is_refused() {
        let ca = root("Twin CA");
        let impostor = root("Twin CA");
        assert_eq!(
            issuer_and_subject(&ca.cert).unwrap().1,
            issuer_and_subject(&impostor.cert).unwrap().1
        );
        let chain = [leaf(&["service.test"], &impostor)];
        let e = refused(both(&store(&[&ca]), &chain, "service.test", now()));
        assert_eq!(e, rustls::CertificateError::BadSignature);
        // Both CAs trusted (the impostor after): the right one is found, as over the full store.
        assert_eq!(both(&store(&[&ca, &impostor]), &chain, "service.test", now()), Ok(()));
    }

    #[test]
    fn no_matching_anchor_is_an_unknown_issuer() {
        let ca = root("Unknown CA");
        let chain = [leaf(&["service.test"], &ca), ca.cert.clone()];
        let e = refused(both(&store(&[]), &chain, "service.test", now()));
        assert_eq!(e, rustls::CertificateError::UnknownIssuer);
        // And with nothing trusted at all.
        let e = refused(both(&[], &chain, "service.test", now()));
        assert_eq!(e, rustls::CertificateError::UnknownIssuer);
    }

    #[test]
    fn wrong_name_and_expiry_are_refused() {
        let ca = root("Name CA");
        let chain = [leaf(&["service.test", "127.0.0.1"], &ca)];
        let trusted = store(&[&ca]);
        assert_eq!(both(&trusted, &chain, "127.0.0.1", now()), Ok(()));
        let e = refused(both(&trusted, &chain, "other.test", now()));
        assert!(
            matches!(e, rustls::CertificateError::NotValidForNameContext { .. }),
            "{e:?}"
        );
        let e = refused(both(&trusted, &chain, "::1", now()));
        assert!(
            matches!(e, rustls::CertificateError::NotValidForNameContext { .. }),
            "{e:?}"
        );
        // rcgen certificates are valid until 4096.
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(70_000_000_000));
        let e = refused(both(&trusted, &chain, "service.test", later));
        assert!(matches!(e, rustls::CertificateError::ExpiredContext { .. }), "{e:?}");
    }

    #[test]
    fn unreadable_presented_certificates_get_the_whole_store() {
        let ca = root("Garbage CA");
        let chain = [
            leaf(&["service.test"], &ca),
            CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]),
        ];
        assert_eq!(both(&store(&[&ca]), &chain, "service.test", now()), Ok(()));
        let verifier = AnchorVerifier {
            trusted: store(&[&ca]),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let presented: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
        let mut all = RootCertStore::empty();
        all.add_parsable_certificates(verifier.trusted.iter().cloned());
        assert_eq!(verifier.anchors_for(&presented).len(), all.len());
        assert_eq!(verifier.anchors_for(&presented[..1]).len(), 1, "only the leaf's issuer");
        // A garbage end entity: the same parse error.
        let garbage = [CertificateDer::from(vec![1, 2, 3])];
        assert!(both(&store(&[&ca]), &garbage, "service.test", now()).is_err());
    }
}
