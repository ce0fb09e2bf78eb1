//! TLS material: PEM loading and the rustls configurations of both sides. Every config is
//! built on the one crypto provider of this binary (ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a certificate, key or CA could not be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    /// The file holds no PEM certificate.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    #[error("{path}: no PEM private key found")]
    /// The file holds no PEM private key.
    NoKey {
        /// The file.
        path: PathBuf,
    },
    #[error("{path}: {message}")]
    /// The file holds something rustls refuses.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    #[error("TLS setup: {0}")]
    /// rustls refused the configuration.
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider of the whole binary (ring), for every rustls configuration.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default, for libraries that ask for the default provider.
pub fn install_default_provider() {
    // Err means a provider is already installed, which is exactly what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Every certificate of a PEM file, in order; none is an error.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1). The file's bytes are
/// zeroized once parsed.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = zeroize::Zeroizing::new(read(path)?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => invalid(path, e),
    })
}

/// The earliest notAfter of `certs` (Unix seconds): when the chain read from `path` stops
/// being valid for a peer, whichever of its certificates ends first.
fn earliest_not_after(path: &Path, certs: &[CertificateDer<'_>]) -> Result<i64, TlsError> {
    let mut earliest = i64::MAX;
    for der in certs {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| invalid(path, e))?;
        earliest = earliest.min(cert.validity().not_after.timestamp());
    }
    Ok(earliest)
}

/// Certificates as a root store; `path` names their file in errors.
fn roots_of(path: &Path, certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(path, e))?;
    }
    Ok(roots)
}

/// A CA file as a root store.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_of(path, load_certs(path)?)
}

/// When the served certificates stop being valid, for the expiry metrics and alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// The earliest notAfter of the serving chain (`server.tls_cert_file`), Unix seconds.
    pub(crate) certificate: i64,
    /// The earliest notAfter of the client CAs (`server.client_ca_file`), Unix seconds.
    pub(crate) client_ca: i64,
}

/// The TLS of the review listener and, when `login`, of the login listener, built from one
/// read of each file, so that [`Expiry`] describes exactly the certificates served.
pub(crate) struct Serving {
    /// The review listener's configuration.
    pub(crate) reviews: Arc<ServerConfig>,
    /// The login listener's configuration, when asked for.
    pub(crate) login: Option<Arc<ServerConfig>>,
    /// When the served certificates expire.
    pub(crate) expiry: Expiry,
}

/// Reads the certificate chain, key and client CA once and builds the listeners' TLS.
pub(crate) fn serving(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    login: bool,
) -> Result<Serving, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let cas = load_certs(client_ca)?;
    let expiry = Expiry {
        certificate: earliest_not_after(cert, &certs)?,
        client_ca: earliest_not_after(client_ca, &cas)?,
    };
    let login = match login {
        true => Some(login_config(certs.clone(), key.clone_key())?),
        false => None,
    };
    let reviews = reviews_config(certs, key, client_ca, roots_of(client_ca, cas)?)?;
    Ok(Serving {
        reviews,
        login,
        expiry,
    })
}

/// The TokenReview listener: TLS 1.2+, h2 and http/1.1, and a client certificate that chains
/// to `client_ca` required in the handshake. A client without one never gets to send a
/// request: nothing it could say is parsed, and it never holds more than a handshake slot.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(serving(cert, key, client_ca, false)?.reviews)
}

fn reviews_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: &Path,
    roots: RootCertStore,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| invalid(client_ca, e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The login listener: the same certificate, TLS 1.2+, h2 and http/1.1, and no client
/// certificate (people log in here; their password is the credential).
fn login_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The LDAP client side: only `ca_file` when given, the system's roots otherwise.
pub fn ldap_client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca_file {
        Some(p) => load_roots(p)?,
        None => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A broken system certificate must not stop the daemon.
                let _ = roots.add(cert);
            }
            roots
        }
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A self-signed certificate valid until `not_after` (Unix seconds).
    fn cert_until(not_after: i64) -> Result<CertificateDer<'static>, Box<dyn std::error::Error>> {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)?;
        let key = rcgen::KeyPair::generate()?;
        Ok(p.self_signed(&key)?.der().clone())
    }

    #[test]
    fn a_chains_expiry_is_its_earliest_not_after_wherever_it_is() -> TestResult {
        let (soon, late) = (2_000_000_000, 2_100_000_000);
        let path = Path::new("chain.pem");
        let later_first = [cert_until(late)?, cert_until(soon)?];
        let sooner_first = [cert_until(soon)?, cert_until(late)?];
        assert_eq!(earliest_not_after(path, &later_first)?, soon);
        assert_eq!(earliest_not_after(path, &sooner_first)?, soon);
        Ok(())
    }

    #[test]
    fn der_that_is_no_certificate_is_refused_naming_the_file() {
        let junk = [CertificateDer::from(vec![0u8, 0, 0])];
        let refused = earliest_not_after(Path::new("junk.pem"), &junk);
        assert!(
            matches!(&refused, Err(TlsError::Invalid { path, .. }) if path == Path::new("junk.pem")),
            "{refused:?}"
        );
    }
}
