//! TLS termination: certificates per site chosen by SNI, reloaded without a restart.
//!
//! rustls with the aws-lc-rs provider, TLS 1.3 and 1.2 only, ALPN `h2` then `http/1.1`.
//! [`CertStore`] holds every certificate the configuration names (each site's `tls`, each
//! listener's `default_certificate`), loaded from PEM files. A handshake picks, in order:
//! the site whose host is the SNI name exactly, the catch-all `"*"` site's certificate, the
//! listener's `default_certificate`. A handshake that matches none of them (or sends no SNI
//! and has no fallback) is answered with a fatal `unrecognized_name` alert (RFC 6066 §3)
//! before any certificate is chosen; the listener goes on serving.
//!
//! Reloads: [`CertStore::poll`] runs every [`POLL_INTERVAL`] and reloads any certificate whose
//! cert or key file changed (mtime or length). A file that fails to load is logged once per
//! change and the previous certificate stays in use; a half-written pair (new cert, old key)
//! fails the key check and is picked up on the next poll once both are in place.
//! [`CertStore::reload`] rebuilds the whole store from new sites (SIGHUP and sites pushed by the
//! control plane, through `Edge::reload` and `Edge::apply_fleet`, with the listeners bound at
//! start): all or nothing, so a SIGHUP also re-reads every certificate file. Open connections keep the session they negotiated; only new handshakes see
//! a new certificate.
//!
//! ```text
//! accept ─► Acceptor::accept: read ClientHello ─► known SNI? ─ no ─► alert unrecognized_name
//!                                                     └─ yes ─► handshake (resolver: CertStore)
//! ```

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use stratus_config::EdgeConfig;
use stratus_config::edge::{Certificate, Listener, Site};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::Error;

/// How often certificate files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A fatal `unrecognized_name` alert as a plaintext TLS record: content type 21 (alert),
/// version 3.3, length 2, level 2 (fatal), description 112. Before the handshake has keys,
/// alerts travel unencrypted in TLS 1.2 and 1.3 alike.
const UNRECOGNIZED_NAME: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// A certificate's files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl From<&Certificate> for Files {
    fn from(c: &Certificate) -> Self {
        Self { cert: c.cert.clone(), key: c.key.clone() }
    }
}

/// What a file looked like when it was last read: modification time and length.
type Stamp = [Option<(SystemTime, u64)>; 2];

#[derive(Clone, Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' stamp at the last load attempt, successful or not, so a broken file is
    /// reported once rather than on every poll.
    seen: Stamp,
}

/// One consistent set of certificates.
#[derive(Clone, Debug, Default)]
struct Certs {
    loaded: HashMap<Files, Loaded>,
    by_host: HashMap<String, Files>,
    wildcard: Option<Files>,
    /// By listener index in the configuration.
    defaults: Vec<Option<Files>>,
}

/// Every certificate the edge serves, swapped as a whole on reload.
#[derive(Debug)]
pub struct CertStore {
    provider: Arc<CryptoProvider>,
    certs: RwLock<Arc<Certs>>,
}

impl CertStore {
    /// Loads every certificate `config` names; an unreadable or mismatched file is an error
    /// naming the file. Without TLS listeners nothing is loaded.
    pub fn new(config: &EdgeConfig) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = build(&config.listeners, &config.sites, &provider)?;
        Ok(Self { provider, certs: RwLock::new(Arc::new(certs)) })
    }

    /// Replaces every certificate with those `sites` and `listeners` name, every file read
    /// again. All or nothing: on error the current certificates stay in use.
    pub fn reload(&self, listeners: &[Listener], sites: &[Site]) -> Result<(), Error> {
        let certs = build(listeners, sites, &self.provider)?;
        if !certs.loaded.is_empty() {
            tracing::info!(certificates = certs.loaded.len(), "certificates reloaded");
        }
        *self.certs.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certs);
        Ok(())
    }

    /// Reloads certificates whose files changed since they were last read; returns how many
    /// were replaced. Failures are logged and the previous certificate kept. Blocking file I/O:
    /// call it off the runtime's worker threads.
    pub fn poll(&self) -> usize {
        let current = self.snapshot();
        let changed: Vec<(Files, Stamp)> = current
            .loaded
            .iter()
            .filter_map(|(files, l)| {
                let now = stamp(files);
                (now != l.seen).then(|| (files.clone(), now))
            })
            .collect();
        if changed.is_empty() {
            return 0;
        }
        let mut next = (*current).clone();
        let mut replaced = 0;
        for (files, now) in changed {
            let Some(entry) = next.loaded.get_mut(&files) else { continue };
            entry.seen = now;
            match load(&files, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %files.cert.display(), "certificate reloaded");
                    entry.key = Arc::new(key);
                    replaced += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate reload failed; keeping the previous one");
                }
            }
        }
        // A reload() that ran meanwhile wins: its certificates are newer than this poll's.
        let mut slot = self.certs.write().unwrap_or_else(PoisonError::into_inner);
        if Arc::ptr_eq(&slot, &current) {
            *slot = Arc::new(next);
        }
        replaced
    }

    /// The certificate for a handshake on listener `listener` naming `sni`.
    pub fn resolve(&self, sni: Option<&str>, listener: usize) -> Option<Arc<CertifiedKey>> {
        let certs = self.snapshot();
        let files = sni
            .and_then(|name| certs.by_host.get(&name.to_ascii_lowercase()))
            .or(certs.wildcard.as_ref())
            .or_else(|| certs.defaults.get(listener).and_then(Option::as_ref))?;
        certs.loaded.get(files).map(|l| l.key.clone())
    }

    fn snapshot(&self) -> Arc<Certs> {
        self.certs.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn build(listeners: &[Listener], sites: &[Site], provider: &CryptoProvider) -> Result<Certs, Error> {
    let mut certs = Certs::default();
    if !listeners.iter().any(|l| l.tls) {
        return Ok(certs);
    }
    let add = |c: &Certificate, certs: &mut Certs| -> Result<Files, Error> {
        let files = Files::from(c);
        if !certs.loaded.contains_key(&files) {
            let seen = stamp(&files);
            let key = Arc::new(load(&files, provider)?);
            certs.loaded.insert(files.clone(), Loaded { key, seen });
        }
        Ok(files)
    };
    for site in sites {
        let Some(c) = &site.tls else { continue };
        let files = add(c, &mut certs)?;
        for host in &site.hosts {
            if host == "*" {
                certs.wildcard = Some(files.clone());
            } else {
                certs.by_host.insert(host.to_ascii_lowercase(), files.clone());
            }
        }
    }
    for l in listeners {
        let files = match (&l.default_certificate, l.tls) {
            (Some(c), true) => Some(add(c, &mut certs)?),
            _ => None,
        };
        certs.defaults.push(files);
    }
    Ok(certs)
}

fn stamp(files: &Files) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [one(&files.cert), one(&files.key)]
}

/// Reads a PEM chain and key and checks that they belong together.
fn load(files: &Files, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let bad = |path: &Path, reason: String| Error::Certificate { path: path.to_owned(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, "no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| bad(&files.key, format!("does not fit certificate {}: {e}", files.cert.display())))
}

/// rustls' view of the store for one listener.
#[derive(Debug)]
struct Resolver {
    store: Arc<CertStore>,
    listener: usize,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.resolve(hello.server_name(), self.listener)
    }
}

/// Accepts TLS connections for one listener.
#[derive(Debug)]
pub struct Acceptor {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    listener: usize,
    handshake_timeout: Duration,
}

impl Acceptor {
    /// An acceptor for listener number `listener` (its index in the configuration); a
    /// handshake must complete within `handshake_timeout`.
    pub fn new(store: Arc<CertStore>, listener: usize, handshake_timeout: Duration) -> Result<Self, Error> {
        let mut config = ServerConfig::builder_with_provider(store.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver { store: store.clone(), listener }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless resumption tickets as well as the default in-memory session cache, so
        // returning clients skip the full handshake on any of our worker threads.
        config.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| Error::Tls(e.to_string()))?;
        Ok(Self { config: Arc::new(config), store, listener, handshake_timeout })
    }

    /// Runs the handshake on `tcp`. An unknown server name gets an `unrecognized_name` alert.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        tokio::time::timeout(self.handshake_timeout, self.handshake(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out"))?
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let hello = start.client_hello();
        if self.store.resolve(hello.server_name(), self.listener).is_none() {
            let name = hello.server_name().unwrap_or("").to_owned();
            let mut io = start.io;
            // The peer is told why; whether the alert arrives changes nothing for us.
            let _ = io.write_all(&UNRECOGNIZED_NAME).await;
            let _ = io.shutdown().await;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no certificate for server name {name:?}"),
            ));
        }
        start.into_stream(self.config.clone()).await
    }
}

#[cfg(test)]
mod tests;
