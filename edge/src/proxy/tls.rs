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
//! Handshakes are tuned for cost (measured in `docs/performance.md`, TLS): our cipher order
//! with AES-128-GCM first (see [`suite_rank`]), unless the client lists ChaCha20 first; two
//! session tickets after a full handshake and one after a resumption offer (`hello.rs` reads
//! the offer from the ClientHello's bytes); the TLS 1.3 tickets sent in the same write as
//! the first response rather than alone (`cork.rs`); and tickets sealed in one AES-GCM pass
//! (`ticket.rs`).
//!
//! ```text
//! accept ─► Acceptor::accept: read ClientHello ─► known SNI? ─ no ─► alert unrecognized_name
//!                                                     └─ yes ─► settings for the hello
//!                                                               ─► handshake (resolver: CertStore)
//! ```

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use stratus_config::EdgeConfig;
use stratus_config::edge::{Certificate, Listener, Site};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use crate::error::Error;

mod cork;
mod hello;
mod hkdf;
mod ticket;

pub use cork::Cork;

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
    /// The handshake settings by what the ClientHello asks for: `[chacha_first][resuming]`
    /// (see [`Acceptor::config_for`]). All four share one ticketer and one certificate store.
    configs: [[Arc<ServerConfig>; 2]; 2],
    store: Arc<CertStore>,
    listener: usize,
    handshake_timeout: Duration,
}

impl Acceptor {
    /// An acceptor for listener number `listener` (its index in the configuration); a
    /// handshake must complete within `handshake_timeout`.
    pub fn new(store: Arc<CertStore>, listener: usize, handshake_timeout: Duration) -> Result<Self, Error> {
        let mut provider = (*store.provider).clone();
        provider.cipher_suites.sort_by_key(|s| suite_rank(s.suite()));
        for suite in &mut provider.cipher_suites {
            *suite = hkdf::prepared(*suite);
        }
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver { store: store.clone(), listener }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless resumption tickets (TLS 1.3 and 1.2), so returning clients skip the full
        // handshake on any of our worker threads. Sealed with AES-256-GCM under a key replaced
        // every 6 hours, the previous key's tickets accepted for 6 more (`ticket.rs`).
        config.ticketer = Arc::new(
            ticket::Ticketer::new()
                .ok_or_else(|| Error::Tls("no randomness for session ticket keys".into()))?,
        );
        // Our cipher order (AES-128-GCM first), as BoringSSL and Cloudflare do; see
        // `suite_rank` and docs/performance.md, TLS.
        config.ignore_client_order = true;
        // Two tickets after a full handshake (rustls' and OpenSSL's default), so a client can
        // open two resumed connections at once; one after a resumption, as OpenSSL does, so a
        // client that uses each ticket once (RFC 8446 §C.4) always holds a fresh one. Making
        // and encrypting a ticket is a fixed cost of every handshake (docs/performance.md, TLS).
        config.send_tls13_tickets = TICKETS_FULL;
        let with = |client_order: bool, tickets: usize| {
            let mut c = config.clone();
            c.ignore_client_order = !client_order;
            c.send_tls13_tickets = tickets;
            Arc::new(c)
        };
        let configs = [
            [with(false, TICKETS_FULL), with(false, TICKETS_RESUMED)],
            [with(true, TICKETS_FULL), with(true, TICKETS_RESUMED)],
        ];
        Ok(Self { configs, store, listener, handshake_timeout })
    }

    /// Runs the handshake on `tcp`. An unknown server name gets an `unrecognized_name` alert.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<Cork<TcpStream>>> {
        tokio::time::timeout(self.handshake_timeout, self.handshake(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tls handshake timed out"))?
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<Cork<TcpStream>>> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), Recorder::new(tcp)).await?;
        let hello = start.client_hello();
        if self.store.resolve(hello.server_name(), self.listener).is_none() {
            let name = hello.server_name().unwrap_or("").to_owned();
            let mut io = start.io.inner;
            // The peer is told why; whether the alert arrives changes nothing for us.
            let _ = io.write_all(&UNRECOGNIZED_NAME).await;
            let _ = io.shutdown().await;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no certificate for server name {name:?}"),
            ));
        }
        let config = self.config_for(&hello, &start.io.seen).clone();
        let StartHandshake { accepted, io: Recorder { inner, .. }, .. } = start;
        let mut tls = StartHandshake::from_parts(accepted, Cork::new(inner)).into_stream(config).await?;
        tls.get_mut().0.release();
        Ok(tls)
    }

    /// The settings for a client: the client's cipher order if it lists ChaCha20-Poly1305
    /// before the AES-GCM suites (as clients without AES instructions do; BoringSSL honours
    /// that too), ours otherwise; fewer tickets when the ClientHello (`raw`, its records)
    /// offers a session to resume.
    fn config_for(&self, hello: &ClientHello<'_>, raw: &[u8]) -> &Arc<ServerConfig> {
        let chacha_first = hello
            .cipher_suites()
            .iter()
            .find(|s| suite_rank(**s) < u8::MAX)
            .is_some_and(|s| suite_rank(*s) == CHACHA);
        let resuming = hello::offers_psk(raw) == Some(true);
        &self.configs[usize::from(chacha_first)][usize::from(resuming)]
    }
}

/// Our preference among the AEAD suites we offer, best first; `u8::MAX` for any other.
///
/// AES-128-GCM first: with AES and carry-less multiply instructions it is the cheapest AEAD,
/// and its suites hash the handshake with SHA-256, which SHA instructions run at about four
/// times SHA-384's speed (a resumed handshake is mostly that key schedule). Its security level
/// (128 bits) is that of the X25519 and P-256 key exchange and the P-256 certificate that
/// protect the same session, so AES-256 adds nothing there. TLS 1.3 requires every
/// implementation to support it (RFC 8446 §9.1), and BoringSSL, Google's and Cloudflare's
/// servers put it first.
fn suite_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => CHACHA,
        _ => u8::MAX,
    }
}

/// [`suite_rank`] of the ChaCha20-Poly1305 suites.
const CHACHA: u8 = 2;

/// How many TLS 1.3 tickets a handshake sends: after a full one, after a resumption offer.
const TICKETS_FULL: usize = 2;
const TICKETS_RESUMED: usize = 1;

/// The most of a connection's first bytes kept for [`hello::offers_psk`]: a ClientHello of
/// four full records. A longer one is handshaken like one that offers no session.
const HELLO_BYTES: usize = 4 * (5 + (1 << 14));

/// The TCP stream while rustls reads the ClientHello, keeping a copy of what it read.
struct Recorder {
    inner: TcpStream,
    seen: Vec<u8>,
}

impl Recorder {
    fn new(inner: TcpStream) -> Self {
        Self { inner, seen: Vec::new() }
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        let room = HELLO_BYTES.saturating_sub(this.seen.len());
        this.seen.extend_from_slice(&read[..read.len().min(room)]);
        Poll::Ready(Ok(()))
    }
}

/// Writes are the acceptor's alerts, straight to the socket.
impl AsyncWrite for Recorder {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
