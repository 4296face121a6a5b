//! The gateway's HTTPS: the certificate it serves, read from PEM files and checked before
//! anything listens, and replaced live when the files change (on SIGHUP and on a periodic
//! look) without touching a connection: the listeners ask [`Certificates`] for the current
//! certificate at each handshake, so a connection keeps the one it was opened with and the
//! next handshake gets the new one.

use arc_swap::ArcSwap;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a certificate pair cannot be served; each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", .0.display())]
    NoKey(PathBuf),
    #[error("the key in {} is of a kind TLS cannot use: {reason}", path.display())]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error("the first certificate in {} cannot be read: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("the certificate in {} expired at {when}", path.display())]
    Expired { path: PathBuf, when: String },
    #[error("the certificate in {} is not valid before {when}", path.display())]
    NotYetValid { path: PathBuf, when: String },
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot write a self-signed certificate to {}: {reason}", path.display())]
    SelfSigned { path: PathBuf, reason: String },
}

/// A certificate pair read and checked.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The leaf certificate's `notAfter`, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of both files as read: what a later look compares to see a change.
    fingerprint: [u8; 32],
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((cert.len() as u64).to_be_bytes());
    hash.update(cert);
    hash.update(key);
    hash.finalize().into()
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |d| d.to_rfc3339())
}

/// Reads and checks the pair: the chain parses, the key is one TLS can sign with and is the
/// leaf certificate's, and the leaf is valid at `now` (Unix seconds).
pub fn load(cert_file: &Path, key_file: &Path, now: i64) -> Result<Loaded, CertError> {
    let pair = read_pair(cert_file, key_file, now)?;
    Ok(Loaded {
        fingerprint: fingerprint(&pair.cert_pem, &pair.key_pem),
        key: pair.certified,
        not_after: pair.not_after,
    })
}

/// A certificate chain and its key as read and checked by [`read_pair`].
pub(crate) struct Pair {
    /// The chain (`certified.cert`) with a signer of the key.
    pub certified: Arc<CertifiedKey>,
    /// The key itself (a signer does not give it back).
    pub key: PrivateKeyDer<'static>,
    pub not_after: i64,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// [`load`]'s checks, for the served certificate and for the gateway's client certificate
/// ([`crate::upstream_tls`]).
pub(crate) fn read_pair(cert_file: &Path, key_file: &Path, now: i64) -> Result<Pair, CertError> {
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate(cert_file.to_owned()));
    };
    let (not_before, not_after) = validity(leaf).map_err(|reason| CertError::Malformed {
        path: cert_file.to_owned(),
        reason,
    })?;
    if now >= not_after {
        return Err(CertError::Expired {
            path: cert_file.to_owned(),
            when: date(not_after),
        });
    }
    if now < not_before {
        return Err(CertError::NotYetValid {
            path: cert_file.to_owned(),
            when: date(not_before),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| CertError::NoKey(key_file.to_owned()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| {
        CertError::UnsupportedKey {
            path: key_file.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signer);
    if certified.keys_match().is_err() {
        return Err(CertError::Mismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
        });
    }
    Ok(Pair {
        certified: Arc::new(certified),
        key: private,
        not_after,
        cert_pem,
        key_pem,
    })
}

/// The leaf's `notBefore` and `notAfter`, Unix seconds.
fn validity(leaf: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).map_err(|e| e.to_string())?;
    let validity = &cert.tbs_certificate.validity;
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    Ok((secs(validity.not_before), secs(validity.not_after)))
}

/// Writes a certificate for `localhost`, `127.0.0.1` and `::1` to `cert_file` and its key to
/// `key_file` (mode 0600), signed by a local authority written beside them as `ca.pem` (the
/// file clients trust: `curl --cacert data/tls/ca.pem`), when neither file exists. Never
/// overwrites: a pair half there is left to [`load`] to refuse.
pub fn ensure_self_signed(cert_file: &Path, key_file: &Path) -> Result<bool, CertError> {
    if cert_file.exists() || key_file.exists() {
        return Ok(false);
    }
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |e: &dyn std::fmt::Display| CertError::SelfSigned {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let on_cert = fail(cert_file);
    let year = chrono::Datelike::year(&chrono::Utc::now());
    let (ca_pem, cert_pem, key_pem) = (|| -> Result<_, rcgen::Error> {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "carpool registry local CA");
        ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        ca.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = rcgen::CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        leaf.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok((ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem()))
    })()
    .map_err(|e| on_cert(&e))?;
    if let Some(dir) = cert_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| on_cert(&e))?;
    }
    if let Some(dir) = key_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(key_file)(&e))?;
    }
    // The authority first, replacing one left by an earlier pair (its key is gone: it could
    // not have signed this one), so `ca.pem` always matches the pair written after it.
    let ca_file = cert_file.with_file_name("ca.pem");
    let ca_next = cert_file.with_file_name("ca.pem.new");
    let _ = std::fs::remove_file(&ca_next);
    write_new(&ca_next, ca_pem.as_bytes(), 0o644).map_err(|e| fail(&ca_file)(&e))?;
    std::fs::rename(&ca_next, &ca_file).map_err(|e| fail(&ca_file)(&e))?;
    write_new(key_file, key_pem.as_bytes(), 0o600).map_err(|e| fail(key_file)(&e))?;
    write_new(cert_file, cert_pem.as_bytes(), 0o644).map_err(|e| on_cert(&e))?;
    Ok(true)
}

/// A new file with `mode`, written and synced; an existing one is an error.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The certificate every TLS listener serves, replaceable while they run.
#[derive(Debug)]
pub struct Certificates {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Sessions a replica remembers for resumption by session id (TLS 1.2), about 1 KiB each.
const SESSIONS: usize = 20_000;

/// How long a client has to finish its handshake before the connection is closed.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS acceptor every proxy service shares: TLS 1.3 and 1.2 with rustls's suites (AEAD
/// only, forward-secret key exchange), ALPN `h2` then `http/1.1`, the certificate asked of
/// `certificates` at each handshake, and resumption that works whichever service the kernel
/// hands a returning client to: one session cache and one ticket key (rotated every 6 hours
/// by rustls's ticketer) for the whole process. pingora's own TLS listener builds a
/// configuration per listener, so a client resumed only when it came back to the same
/// service (docs/gateway.md, "TLS").
pub fn acceptor(
    certificates: Arc<Certificates>,
) -> Result<pingora::listeners::tls::Acceptor, rustls::Error> {
    #[allow(
        deprecated,
        reason = "ring is the provider pingora 0.9.1 builds rustls with"
    )]
    let provider = rustls::crypto::ring::default_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSIONS);
    #[allow(
        deprecated,
        reason = "ring is the provider pingora 0.9.1 builds rustls with"
    )]
    let ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.ticketer = ticketer;
    Ok(pingora::listeners::tls::Acceptor::from_server_config(
        Arc::new(config),
    ))
}

/// What a look at the files did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Loaded,
    Unchanged,
}

/// The files, the certificate served from them, and the metrics that follow it.
pub struct Reloader {
    cert_file: PathBuf,
    key_file: PathBuf,
    certificates: Arc<Certificates>,
    fingerprint: Mutex<[u8; 32]>,
    not_after: prometheus::IntGauge,
    outcomes: prometheus::IntCounterVec,
}

impl Reloader {
    /// Loads the pair (an error names the file at fault, and the gateway does not start).
    pub fn new(
        settings: &crate::settings::TlsSettings,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Self, CertError> {
        if settings.self_signed && ensure_self_signed(&settings.cert_file, &settings.key_file)? {
            tracing::info!(
                cert = %settings.cert_file.display(),
                "wrote a self-signed certificate for localhost (trust ca.pem beside it)"
            );
        }
        let loaded = load(&settings.cert_file, &settings.key_file, crate::unix_now())?;
        metrics.tls_not_after.set(loaded.not_after);
        Ok(Self {
            cert_file: settings.cert_file.clone(),
            key_file: settings.key_file.clone(),
            certificates: Arc::new(Certificates {
                current: ArcSwap::new(loaded.key),
            }),
            fingerprint: Mutex::new(loaded.fingerprint),
            not_after: metrics.tls_not_after.clone(),
            outcomes: metrics.tls_reloads.clone(),
        })
    }

    /// What the listeners ask for a certificate at each handshake.
    pub fn certificates(&self) -> Arc<Certificates> {
        self.certificates.clone()
    }

    /// Looks at the files: a changed, valid pair is served from the next handshake on; an
    /// invalid one is refused and the current certificate kept.
    pub fn reload(&self) -> Result<Reload, CertError> {
        let result = self.look();
        let outcome = match &result {
            Ok(Reload::Loaded) => "loaded",
            Ok(Reload::Unchanged) => "unchanged",
            Err(_) => "failed",
        };
        self.outcomes.with_label_values(&[outcome]).inc();
        result
    }

    fn look(&self) -> Result<Reload, CertError> {
        let (cert, key) = (read(&self.cert_file)?, read(&self.key_file)?);
        if fingerprint(&cert, &key) == *self.fingerprint.lock().unwrap() {
            return Ok(Reload::Unchanged);
        }
        let loaded = load(&self.cert_file, &self.key_file, crate::unix_now())?;
        self.certificates.current.store(loaded.key);
        self.not_after.set(loaded.not_after);
        *self.fingerprint.lock().unwrap() = loaded.fingerprint;
        Ok(Reload::Loaded)
    }
}

/// Looks at the certificate files every `every` (never, when zero) and on SIGHUP.
pub struct ReloadService {
    pub reloader: Arc<Reloader>,
    pub every: Duration,
}

#[async_trait::async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: certificates reload on the period only");
                None
            }
        };
        let period = (!self.every.is_zero()).then_some(self.every);
        // A first look once SIGHUP is handled (`gateway_tls_reloads_total` counts it): from
        // then on the signal reloads instead of ending the process, and a pair replaced
        // since the start is picked up.
        let mut trigger = "start";
        loop {
            match self.reloader.reload() {
                Ok(Reload::Loaded) => tracing::info!(
                    trigger,
                    cert = %self.reloader.cert_file.display(),
                    "TLS certificate reloaded"
                ),
                Ok(Reload::Unchanged) => {}
                Err(e) => tracing::error!(
                    trigger,
                    error = %e,
                    "TLS certificate not reloaded; the previous one is still served"
                ),
            }
            trigger = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
                () = async {
                    match period {
                        Some(p) => tokio::time::sleep(p).await,
                        None => std::future::pending().await,
                    }
                } => "period",
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gw-tls-unit-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A self-signed pair for localhost valid over `[from, until]` (Unix years).
    fn pair(from: i32, until: i32) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    const NOW: i64 = 1_796_515_200; // 2026-12-05

    #[allow(deprecated, reason = "the provider pingora 0.9.1 serves with")]
    fn ring_provider() -> rustls::crypto::CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    #[test]
    fn every_pair_that_cannot_be_served_is_refused_naming_its_file() {
        let dir = temp();
        let good = pair(2020, 2090);
        let (cert, key) = write(&dir, &good);
        let loaded = load(&cert, &key, NOW).unwrap();
        assert_eq!(loaded.not_after, 3_786_912_000);

        type Case = (&'static str, (String, String), fn(&CertError) -> bool);
        let cases: Vec<Case> = vec![
            ("expired", pair(2001, 2002), |e| {
                matches!(e, CertError::Expired { .. })
            }),
            ("not yet valid", pair(2090, 2091), |e| {
                matches!(e, CertError::NotYetValid { .. })
            }),
            ("another key", (good.0.clone(), pair(2020, 2090).1), |e| {
                matches!(e, CertError::Mismatch { .. })
            }),
            ("no certificate", ("hello".into(), good.1.clone()), |e| {
                matches!(e, CertError::NoCertificate(_))
            }),
            ("no key", (good.0.clone(), good.0.clone()), |e| {
                matches!(e, CertError::NoKey(_))
            }),
        ];
        for (case, files, expected) in cases {
            let (cert, key) = write(&dir, &files);
            let Err(error) = load(&cert, &key, NOW) else {
                panic!("{case}: loaded");
            };
            assert!(expected(&error), "{case}: {error}");
            let text = error.to_string();
            assert!(
                text.contains(&cert.display().to_string())
                    || text.contains(&key.display().to_string()),
                "{case}: {text}"
            );
        }
        std::fs::remove_file(dir.join("key.pem")).unwrap();
        let error = load(&cert, &dir.join("key.pem"), NOW).err().unwrap();
        assert!(error.to_string().contains("key.pem"), "{error}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_self_signed_pair_is_written_once_with_a_private_key_and_loads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp().join("tls");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        assert!(ensure_self_signed(&cert, &key).unwrap());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let written = std::fs::read(&cert).unwrap();
        let loaded = load(&cert, &key, crate::unix_now()).unwrap();
        assert!(loaded.not_after > crate::unix_now() + 5 * 365 * 86_400);
        // The leaf is signed by ca.pem, which is an authority.
        let ca = std::fs::read(dir.join("ca.pem")).unwrap();
        let ca = CertificateDer::from_pem_slice(&ca).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(ring_provider()),
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_slice(&written).unwrap();
        for name in ["localhost", "127.0.0.1", "::1"] {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            let now = rustls::pki_types::UnixTime::now();
            rustls::client::danger::ServerCertVerifier::verify_server_cert(
                verifier.as_ref(),
                &leaf,
                &[],
                &name,
                &[],
                now,
            )
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        // Never again, never over a file that is there.
        assert!(!ensure_self_signed(&cert, &key).unwrap());
        assert_eq!(std::fs::read(&cert).unwrap(), written);
        std::fs::remove_file(&key).unwrap();
        assert!(!ensure_self_signed(&cert, &key).unwrap());
        assert!(!key.exists());
        // Both removed to start again: a new pair, and a new ca.pem that signed it.
        std::fs::remove_file(&cert).unwrap();
        let old_ca = std::fs::read(dir.join("ca.pem")).unwrap();
        assert!(ensure_self_signed(&cert, &key).unwrap());
        let new_ca = std::fs::read(dir.join("ca.pem")).unwrap();
        assert_ne!(old_ca, new_ca);
        load(&cert, &key, crate::unix_now()).unwrap();
        std::fs::remove_dir_all(dir.parent().unwrap()).ok();
    }
}
