//! The TLS client of `ftps://` (rustls on ring): the roots of `fetch.ca_file` (or the
//! system bundle), the optional client certificate, the certificate chain and the host
//! name always checked. One [`ClientConfig`] serves a server's control and data
//! connections, so the data connections resume the control connection's TLS session, as
//! servers such as vsftpd require (`require_ssl_reuse`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config::Fetch;
use crate::fetch::{read_pem, trusted_roots};

/// The TLS settings of `fetch`, read and parsed now; the error says which file is wrong.
pub(crate) fn client_config(fetch: &Fetch) -> Result<Arc<ClientConfig>, String> {
    let Some((what, file)) = trusted_roots(fetch, Some("ftps"))? else {
        return Err("no trusted CA certificates".into());
    };
    let shown = |e: String| format!("{what} {}: {e}", file.display());
    let pem = read_pem(&file).map_err(shown)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| shown(format!("not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| shown(format!("a certificate rustls cannot use: {e}")))?;
    }
    if roots.is_empty() {
        return Err(shown("no PEM certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match (&fetch.client_cert, &fetch.client_key) {
        (Some(cert), Some(key)) => {
            let cert_pem =
                read_pem(cert).map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
            let certs = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client_cert {}: not PEM: {e}", cert.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "client_cert {}: no PEM certificate in it",
                    cert.display()
                ));
            }
            let key_pem =
                read_pem(key).map_err(|e| format!("client_key {}: {e}", key.display()))?;
            let private = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("client_key {}: not a PEM private key: {e}", key.display()))?;
            builder.with_client_auth_cert(certs, private).map_err(|e| {
                format!(
                    "client_cert {} with client_key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(
                "fetch.client_cert and fetch.client_key go together: give both or neither".into(),
            )
        }
    };
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: the URL's host (a name or an address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))
}
