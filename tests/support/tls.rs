//! TLS helpers: a certificate authority made for one test (rcgen), self-signed acceptors,
//! certificate files for the edge's configuration, and a TLS terminator in front of a plain port.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), for the edge's `ca_file`.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca");
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// A TLS acceptor with a certificate for `names` signed by this CA, offering `alpn`.
    pub fn acceptor(&self, names: &[&str], alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `names`, offering `alpn`.
pub fn self_signed_acceptor(names: &[&str], alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let key = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
        )
        .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Writes `pem` to a file in `dir` and returns its path as TOML-ready text.
pub fn pem_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> String {
    crate::support::write_file(dir.path(), name, pem).display().to_string()
}

/// Terminates TLS on a fresh loopback port and forwards the plaintext to `target`; returns
/// the port's address.
pub async fn tls_terminator(acceptor: tokio_rustls::TlsAcceptor, target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind terminator");
    let addr = listener.local_addr().expect("terminator address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}
