//! The one rustls client configuration, shared by IMAP (and later SMTP).
//!
//! Verification is always on: SPEC §Config has no switch to turn it off, and
//! `ca_file` is how a private CA becomes trusted. The account's CAs are added
//! to the OS roots rather than replacing them, so adding a `ca_file` for one
//! server never breaks another that uses a public CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why a TLS client configuration could not be built. Never network related,
/// so never worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    // `cause`, not `source`: shown once in the message, not again as a chained source.
    #[error("cannot read ca_file {}: {cause}", path.display())]
    CaFileRead {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("ca_file {} is not valid PEM: {reason}", path.display())]
    CaFileInvalid { path: PathBuf, reason: String },
    #[error("ca_file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    CaFileEmpty { path: PathBuf },
    #[error("ca_file {}: certificate rejected as a trust anchor: {reason}", path.display())]
    CaFileRejected { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client config (ring provider, TLS 1.2 and 1.3) trusting the OS roots
/// plus every certificate in `ca_file`.
///
/// Built per account because `ca_file` differs per account; the OS roots
/// behind it are read from disk once per process.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots.roots.extend(os_roots().roots.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|err| TlsConfigError::CaFileRejected {
                    path: path.to_path_buf(),
                    reason: err.to_string(),
                })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM file, which may hold several (a CA bundle).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|cause| TlsConfigError::CaFileRead {
        path: path.to_path_buf(),
        cause,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsConfigError::CaFileInvalid {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::CaFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The OS trust store, loaded once. Unreadable individual certificates are
/// skipped (a broken bundle entry must not make every server untrusted); an
/// empty store only means that servers need a `ca_file`, which the
/// certificate error then says.
fn os_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for err in &loaded.errors {
            tracing::debug!("skipping part of the OS certificate store: {err}");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        tracing::debug!("OS certificate store: {added} roots loaded, {ignored} ignored");
        roots
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_named() {
        let err = tls_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
        assert!(message.contains("cannot read ca_file"), "{message}");
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let message = tls_config(Some(&path)).unwrap_err().to_string();
        assert!(message.contains("holds no PEM certificate"), "{message}");
    }

    #[test]
    fn config_without_ca_file_builds() {
        tls_config(None).unwrap();
    }
}
