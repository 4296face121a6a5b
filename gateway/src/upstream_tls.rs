//! TLS from the gateway to auth-service and the registry, for deployments whose internal
//! network is not trusted (`upstream_tls`): each upstream's certificate is checked against
//! `ca_file` under the name its settings give, and with `cert_file` and `key_file` the
//! gateway shows its own certificate (mutual TLS, for upstreams that require one). Proxied
//! requests go through pingora's connector (a rustls configuration per new upstream
//! connection, then kept alive in the pool); the JWKS fetch through reqwest with the same
//! authority and certificate.

use crate::settings::UpstreamTlsSettings;
use crate::tls::{CertError, read};
use pingora::utils::tls::{CertKey, WrappedX509};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// What the peers and the JWKS client are given, read and checked once at start.
pub struct UpstreamTls {
    ca: Arc<[WrappedX509]>,
    client: Option<Arc<CertKey>>,
    ca_pem: Vec<u8>,
    identity_pem: Option<Vec<u8>>,
    pub auth_service_name: String,
    pub registry_name: String,
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let all: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if all.is_empty() {
        return Err(CertError::NoCertificate(path.to_owned()));
    }
    Ok(all)
}

impl UpstreamTls {
    /// `None` when upstream TLS is off; an error names the file at fault.
    pub fn load(settings: &UpstreamTlsSettings) -> Result<Option<Self>, CertError> {
        if !settings.enabled {
            return Ok(None);
        }
        let ca_pem = read(&settings.ca_file)?;
        let ca: Vec<WrappedX509> = certificates(&settings.ca_file, &ca_pem)?
            .into_iter()
            .map(|der| WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509))
            .collect();
        let (client, identity_pem) = match (&settings.cert_file, &settings.key_file) {
            (Some(cert_file), Some(key_file)) => {
                // The served certificate's checks: a usable key, the chain's, valid now.
                let pair = crate::tls::read_pair(cert_file, key_file, crate::unix_now())?;
                let certs = pair.certified.cert.iter().map(|c| c.to_vec()).collect();
                let key = CertKey::new(certs, pair.key.secret_der().to_vec());
                (
                    Some(Arc::new(key)),
                    Some([pair.cert_pem, pair.key_pem].concat()),
                )
            }
            (None, None) => (None, None),
            (Some(file), None) | (None, Some(file)) => {
                return Err(CertError::Read {
                    path: file.to_owned(),
                    source: std::io::Error::other("cert_file and key_file go together"),
                });
            }
        };
        Ok(Some(Self {
            ca: ca.into(),
            client,
            ca_pem,
            identity_pem,
            auth_service_name: settings.auth_service_name.clone(),
            registry_name: settings.registry_name.clone(),
        }))
    }

    /// Makes `peer` speak TLS to the upstream named `name`.
    pub fn apply(&self, peer: &mut pingora::upstreams::peer::HttpPeer, name: &str) {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        peer.sni = name.to_owned();
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = Some(self.ca.clone());
        peer.client_cert_key = self.client.clone();
    }

    /// The JWKS client: auth-service's certificate checked under its name (resolved to
    /// `addr`), the gateway's own certificate shown when there is one.
    pub fn jwks_client(
        &self,
        builder: reqwest::ClientBuilder,
        addr: SocketAddr,
    ) -> reqwest::Result<reqwest::Client> {
        let mut builder = builder
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem)?)
            .resolve(&self.auth_service_name, addr)
            .https_only(true);
        if let Some(identity) = &self.identity_pem {
            builder = builder.identity(reqwest::Identity::from_pem(identity)?);
        }
        builder.build()
    }

    /// auth-service's JWKS address under its certificate's name.
    pub fn jwks_url(&self, addr: SocketAddr) -> String {
        format!(
            "https://{}:{}/.well-known/jwks.json",
            self.auth_service_name,
            addr.port()
        )
    }
}
