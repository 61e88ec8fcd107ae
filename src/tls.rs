//! The server's certificate: the PEM files of `--tls-cert` and `--tls-key`,
//! checked at start (a bad file is a clear error there) and read again on
//! SIGHUP. A reload swaps the key for new handshakes; open connections keep
//! the one they began with, so nothing is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Reads every certificate of a PEM file; `flag` names it in errors.
pub fn read_certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?.collect();
    let certs = certs.map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificates in it", path.display()));
    }
    Ok(certs)
}

/// The certificate and key served, reloadable.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads the pair, or says what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = RwLock::new(Arc::new(load_pair(cert, key, &provider)?));
        Ok(Arc::new(Certificates { cert: cert.to_path_buf(), key: key.to_path_buf(), provider, current }))
    }

    /// Reads the files again; on an error the served pair stays as it was.
    pub fn reload(&self) -> Result<(), String> {
        let pair = Arc::new(load_pair(&self.cert, &self.key, &self.provider)?);
        // A poisoned lock only means a reader panicked; the slot is still a valid Arc.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = pair;
        Ok(())
    }

    /// A rustls server configuration serving this pair: TLS 1.2 and 1.3,
    /// ALPN `http/1.1`, no client certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    /// Every name gets the one pair: a client that asked for another name
    /// fails its own verification, as with any single-certificate server.
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner())))
    }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = read_certificates(cert, "--tls-cert")?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!("--tls-key {}: no private key read ({e}); give a PEM PKCS#8, PKCS#1 or SEC1 key", key.display())
    })?;
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| format!("--tls-key {} does not fit --tls-cert {}: {e}", key.display(), cert.display()))
}
