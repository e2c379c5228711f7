//! rustls configurations: the mutual-TLS server consumers connect to, and the client the
//! proxy uses towards its upstreams with its own certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The rustls provider used everywhere (ring: builds with only a C compiler).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "contains no certificate"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("no usable PEM private key: {e}")))
}

pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The notAfter of the first certificate in a PEM file (the one a server or client
/// presents), as Unix seconds.
pub fn not_after(path: &Path) -> Result<i64, TlsError> {
    let certs = load_certs(path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref())
        .map_err(|e| file_error(path, format!("not a usable certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The earliest nextUpdate of a file's CRLs, as Unix seconds; none when no list in it
/// has one.
pub fn crl_next_update(path: &Path) -> Result<Option<i64>, TlsError> {
    let mut next_updates = Vec::new();
    for crl in load_crls(path)? {
        let (_, crl) = x509_parser::parse_x509_crl(crl.as_ref())
            .map_err(|e| file_error(path, format!("not a usable CRL: {e}")))?;
        next_updates.extend(crl.next_update().map(|next| next.timestamp()));
    }
    Ok(next_updates.into_iter().min())
}

/// How a peer's certificate chain is checked for revocation: callers' by the listener
/// (`[https] crls` and the keys after it), an upstream's by its client (`[[upstream]]
/// crls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocation {
    /// CRL files, PEM (one or more `X509 CRL` blocks) or DER; none: no check.
    pub crls: Vec<PathBuf>,
    /// Check only the caller's own certificate, not its issuing CAs'.
    pub end_entity_only: bool,
    /// Accept a certificate that no CRL covers.
    pub allow_unknown_status: bool,
    /// Accept answers from a CRL past its nextUpdate.
    pub allow_expired: bool,
}

impl Revocation {
    /// Every list of every file.
    fn load(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        let mut crls = Vec::new();
        for file in &self.crls {
            crls.extend(load_crls(file)?);
        }
        Ok(crls)
    }
}

/// The CRLs in a file: each `X509 CRL` block of a PEM file, or the whole file as one
/// DER CRL (as CAs publish them at their distribution points). Each is parsed here, so
/// a broken list is refused naming its file instead of failing every handshake.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|e| file_error(path, format!("cannot read CRLs: {e}")))?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(path, format!("not a PEM CRL file: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(file_error(path, "contains no CRL"));
    }
    for crl in &crls {
        x509_parser::parse_x509_crl(crl.as_ref())
            .map_err(|e| file_error(path, format!("not a usable CRL: {e}")))?;
    }
    Ok(crls)
}

/// A verifier builder (for client or server certificates: two types with the same
/// methods) with `revocation`'s lists and settings applied; returns early with the error
/// of a list that does not load.
macro_rules! with_revocation {
    ($builder:expr, $revocation:expr) => {{
        let revocation: &Revocation = $revocation;
        let mut builder = $builder.with_crls(revocation.load()?);
        if revocation.end_entity_only {
            builder = builder.only_check_end_entity_revocation();
        }
        if revocation.allow_unknown_status {
            builder = builder.allow_unknown_revocation_status();
        }
        if !revocation.allow_expired {
            builder = builder.enforce_revocation_expiration();
        }
        builder
    }};
}

/// A server that requires a client certificate chaining to `client_ca`, not revoked by
/// any of `revocation`'s CRLs.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    revocation: &Revocation,
) -> Result<ServerConfig, TlsError> {
    let roots = Arc::new(load_roots(client_ca)?);
    let provider = provider();
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let verifier = with_revocation!(builder, revocation)
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client trusting `ca`, presenting `identity` (certificate, key) if given; the
/// server's chain must not be revoked by any of `revocation`'s CRLs.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    revocation: &Revocation,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let roots = Arc::new(load_roots(ca)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // Without lists the revocation settings change nothing.
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider);
    let verifier = with_revocation!(verifier, revocation)
        .build()
        .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
    let builder = builder.with_webpki_verifier(verifier);
    // No ALPN here: hyper-rustls sets it itself (and refuses a config that has it).
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::TestCa;

    #[test]
    fn crls_load_from_pem_with_several_blocks_or_from_der_and_bad_ones_name_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("CRL test CA").unwrap();
        let pem = ca.crl(&[], 30).unwrap();
        let two = dir.path().join("two.pem");
        std::fs::write(&two, format!("{pem}{pem}")).unwrap();
        assert_eq!(load_crls(&two).unwrap().len(), 2);

        // The DER form CAs publish at their distribution points.
        let der = dir.path().join("one.crl");
        let block = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
        std::fs::write(&der, block.as_ref()).unwrap();
        assert_eq!(load_crls(&der).unwrap(), vec![block]);

        for (name, content) in [
            (
                "empty.pem",
                "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            ),
            ("garbled.crl", "not a list"),
        ] {
            let file = dir.path().join(name);
            std::fs::write(&file, content).unwrap();
            let error = load_crls(&file).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
