//! The TLS client of `https://` and `ftps://` (rustls on ring; the syslog server's, RFC
//! 5425, is built the same way by [`syslog_client_config`]), one [`ClientConfig`] for
//! both: built once per configuration by [`client_config`] (the CA, client certificate
//! and key files read and parsed then), handed to reqwest
//! (`ClientBuilder::use_preconfigured_tls`) for HTTPS and used as it is for FTPS. The
//! roots are exactly `fetch.ca_file`'s certificates, or the system bundle
//! ([`SYSTEM_CA_BUNDLE`]) for a TLS scheme without it; the optional client certificate
//! is for mutual TLS; the certificate chain and the host name are always checked.
//!
//! For FTPS, one configuration serves a server's control and data connections, so the
//! data connections resume the control connection's TLS session, as servers such as
//! vsftpd require (`require_ssl_reuse`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::SYSTEM_CA_BUNDLE;
use crate::config::{ClientIdentity, Fetch, Scheme, ServerUrl};

/// The largest PEM file read (CA bundle, client certificate or key), in bytes.
const MAX_PEM: u64 = 4 * 1024 * 1024;

/// Which PEM file a [`TlsError::Pem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemFile {
    CaFile,
    SystemBundle,
    ClientCert,
    ClientKey,
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemFile::CaFile => "ca_file",
            PemFile::SystemBundle => "the system CA bundle",
            PemFile::ClientCert => "client_cert",
            PemFile::ClientKey => "client_key",
        })
    }
}

/// What is wrong with a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PemProblem {
    /// It cannot be read (or is no regular file): the system's words.
    Unreadable(String),
    /// Larger than [`MAX_PEM`].
    TooBig(String),
    /// Not PEM certificates: the parser's words.
    NotCertificates(String),
    /// Not a PEM private key: the parser's words.
    NotKey(String),
    /// No certificate in it.
    Empty,
    /// A certificate rustls cannot use as a root: its words.
    Unusable(String),
}

impl fmt::Display for PemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemProblem::Unreadable(e) => write!(f, "cannot read it: {e}"),
            PemProblem::TooBig(e) => write!(f, "{e}: not a PEM file"),
            PemProblem::NotCertificates(e) => write!(f, "not PEM certificates: {e}"),
            PemProblem::NotKey(e) => write!(f, "not a PEM private key: {e}"),
            PemProblem::Empty => f.write_str("no PEM certificate in it"),
            PemProblem::Unusable(e) => write!(f, "a certificate rustls cannot use: {e}"),
        }
    }
}

/// Why the TLS client cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsError {
    /// A TLS server, no `fetch.ca_file`, and no system bundle.
    NoRoots(Scheme),
    /// A PEM file that cannot be used.
    Pem {
        file: PemFile,
        path: PathBuf,
        problem: PemProblem,
    },
    /// rustls refuses the client certificate with its key: its words.
    Identity {
        identity: ClientIdentity,
        why: String,
    },
    /// rustls refuses the protocol versions of the provider: its words.
    Versions(String),
    /// A host name that no certificate can be checked against.
    ServerName { host: String, why: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::NoRoots(scheme) => write!(
                f,
                "an {scheme} server needs trusted CA certificates: set fetch.ca_file (there \
                 is no system bundle {SYSTEM_CA_BUNDLE})"
            ),
            TlsError::Pem {
                file,
                path,
                problem,
            } => write!(f, "{file} {}: {problem}", path.display()),
            TlsError::Identity { identity, why } => write!(
                f,
                "client_cert {} with client_key {}: {why}",
                identity.cert.display(),
                identity.key.display()
            ),
            TlsError::Versions(why) => write!(f, "cannot set up TLS: {why}"),
            TlsError::ServerName { host, why } => {
                write!(f, "{host:?} cannot be checked against a certificate: {why}")
            }
        }
    }
}

impl std::error::Error for TlsError {}

/// The TLS client of a configuration: `fetch`'s roots (or, when one of `servers` is
/// over TLS, the system bundle; else none, and an `https://` redirect fails) and client
/// certificate. `None` when no server needs one (only `ftp://`, `tftp://` and folders).
pub(crate) fn client_config(
    fetch: &Fetch,
    servers: &[ServerUrl],
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    if !servers.iter().any(|s| super::uses_tls(s.scheme())) {
        return Ok(None);
    }
    let tls_scheme = servers.iter().map(|s| s.scheme()).find(|s| s.is_tls());
    let roots = trusted_roots(fetch, tls_scheme)?;
    build(roots, fetch.client_identity.as_ref()).map(Some)
}

/// The TLS client of the syslog server (`[syslog]`: RFC 5425): its `ca_file` (else the
/// system bundle) and client certificate, checked as for the provisioning server.
pub(crate) fn syslog_client_config(
    ca_file: Option<&Path>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca_file {
        Some(path) => (PemFile::CaFile, path.to_path_buf()),
        None => (PemFile::SystemBundle, PathBuf::from(SYSTEM_CA_BUNDLE)),
    };
    build(Some(roots), identity)
}

/// A client configuration trusting the certificates of `roots` (none: no roots), with
/// the client certificate `identity`.
fn build(
    roots_file: Option<(PemFile, PathBuf)>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some((file, path)) = roots_file {
        let pem_error = pem_error(file, &path);
        let pem = read_pem(&path).map_err(pem_error)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| pem_error(PemProblem::NotCertificates(e.to_string())))?;
            roots
                .add(cert)
                .map_err(|e| pem_error(PemProblem::Unusable(e.to_string())))?;
        }
        if roots.is_empty() {
            return Err(pem_error(PemProblem::Empty));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Versions(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => {
            let (certs, key) = client_identity(identity)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Identity {
                    identity: identity.clone(),
                    why: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The CA certificates a server's certificate must chain to: `fetch.ca_file`, else (for
/// `tls_scheme`, a scheme that needs them: `https`, `ftps`) the system bundle; `None`
/// for plain schemes without `ca_file`.
fn trusted_roots(
    fetch: &Fetch,
    tls_scheme: Option<Scheme>,
) -> Result<Option<(PemFile, PathBuf)>, TlsError> {
    match (&fetch.ca_file, tls_scheme) {
        (Some(file), _) => Ok(Some((PemFile::CaFile, file.clone()))),
        (None, Some(scheme)) => {
            let system = PathBuf::from(SYSTEM_CA_BUNDLE);
            if !system.exists() {
                return Err(TlsError::NoRoots(scheme));
            }
            Ok(Some((PemFile::SystemBundle, system)))
        }
        (None, None) => Ok(None),
    }
}

/// The client certificate chain and its key, read and parsed.
fn client_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_error = pem_error(PemFile::ClientCert, &identity.cert);
    let cert_pem = read_pem(&identity.cert).map_err(cert_error)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(PemProblem::NotCertificates(e.to_string())))?;
    if certs.is_empty() {
        return Err(cert_error(PemProblem::Empty));
    }
    let key_error = pem_error(PemFile::ClientKey, &identity.key);
    let key_pem = read_pem(&identity.key).map_err(key_error)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_error(PemProblem::NotKey(e.to_string())))?;
    Ok((certs, key))
}

/// The error about the PEM file `file` at `path`, for a problem.
fn pem_error(file: PemFile, path: &Path) -> impl Fn(PemProblem) -> TlsError + Copy + '_ {
    move |problem| TlsError::Pem {
        file,
        path: path.to_path_buf(),
        problem,
    }
}

/// Reads a PEM file (certificates or a key), refusing a huge one or one that is not a
/// regular file (a FIFO in its place must not hold the daemon).
fn read_pem(path: &Path) -> Result<Vec<u8>, PemProblem> {
    crate::files::read_regular(path, MAX_PEM).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => PemProblem::TooBig(e.to_string()),
        _ => PemProblem::Unreadable(e.to_string()),
    })
}

/// The name the server's certificate must carry: the URL's host (a name or an address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|e| TlsError::ServerName {
        host: host.to_string(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One configuration for every server: built only when a server uses it, and its
    /// files read then (an `ftp://` server alone never reads `ca_file`).
    #[test]
    fn built_once_for_the_servers_that_use_it() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, b"not pem").unwrap();
        let fetch = Fetch {
            ca_file: Some(garbage.clone()),
            ..Fetch::default()
        };
        let plain = [ServerUrl::test("ftp://a/"), ServerUrl::test("tftp://b/")];
        assert!(client_config(&fetch, &plain).unwrap().is_none());
        for tls in ["https://c/", "ftps://c/", "http://c/"] {
            let servers = [ServerUrl::test("ftp://a/"), ServerUrl::test(tls)];
            let e = client_config(&fetch, &servers).unwrap_err();
            assert_eq!(
                e,
                TlsError::Pem {
                    file: PemFile::CaFile,
                    path: garbage.clone(),
                    problem: PemProblem::Empty,
                },
                "{tls}"
            );
        }
    }
}
