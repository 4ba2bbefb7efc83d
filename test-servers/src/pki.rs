//! A throw-away test PKI, made with rcgen (ring backend): a provisioning CA, the server
//! and client certificates the good HTTPS and mutual-TLS endpoints use, and the bad
//! server certificates (wrong host name, expired, signed by another CA) the TLS failure
//! tests need. Every certificate and key is written as a PEM file.
//!
//! Keys are ECDSA P-256. Certificates are valid from 2000-01-01 to 2099-12-31, except
//! the expired one (2000-01-01 to 2001-01-01): a client whose clock is before 2000 (an
//! unsynced phone at 1970) rejects even the good ones as not yet valid.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The provisioning server's name as the emulated phone knows it (its `/etc/hosts`):
/// the local server certificates carry it beside `localhost` and `127.0.0.1`.
pub const PROVISIONING_HOST: &str = "prov.example.test";

/// The server addresses of the emulated phone's DHCP network (`netns.rs`): the local
/// server certificate carries them too, so a phone told `https://10.77.0.1/` by DHCP
/// verifies it.
pub const LAB_ADDRESSES: [&str; 3] = ["10.77.0.1", "10.77.0.2", "10.77.0.3"];

/// The PEM files of the test PKI, all inside `dir`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The folder holding every file below.
    pub dir: PathBuf,
    /// The provisioning CA: trust this one.
    pub ca_pem: PathBuf,
    /// Server certificate for `localhost`, `127.0.0.1`, [`PROVISIONING_HOST`] and the
    /// [`LAB_ADDRESSES`], signed by the CA.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (the phone's, for mutual TLS), signed by the CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// `client_key` then `client_cert` in one file (what `reqwest::Identity::from_pem`
    /// and `curl --cert` without `--key` take).
    pub client_identity: PathBuf,
    /// Another CA, unrelated to `ca_pem`.
    pub other_ca_pem: PathBuf,
    /// Server certificate signed by the CA, but only for `wrong.example`.
    pub wrong_host_cert: PathBuf,
    pub wrong_host_key: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by the CA, expired
    /// since 2001-01-01.
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by the other CA.
    pub untrusted_cert: PathBuf,
    pub untrusted_key: PathBuf,
    /// Client certificate signed by the other CA (refused by the mutual-TLS endpoint).
    pub untrusted_client_cert: PathBuf,
    pub untrusted_client_key: PathBuf,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy)]
enum Role {
    Server,
    Client,
}

impl Pki {
    /// Makes a fresh PKI in `dir` (created if missing; files there are overwritten).
    /// Panics if a certificate cannot be made or written: a broken test setup.
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = |name: &str| dir.join(name);
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca_pem: path("ca.pem"),
            server_cert: path("server-cert.pem"),
            server_key: path("server-key.pem"),
            client_cert: path("client-cert.pem"),
            client_key: path("client-key.pem"),
            client_identity: path("client-identity.pem"),
            other_ca_pem: path("other-ca.pem"),
            wrong_host_cert: path("wrong-host-cert.pem"),
            wrong_host_key: path("wrong-host-key.pem"),
            expired_cert: path("expired-cert.pem"),
            expired_key: path("expired-key.pem"),
            untrusted_cert: path("untrusted-cert.pem"),
            untrusted_key: path("untrusted-key.pem"),
            untrusted_client_cert: path("untrusted-client-cert.pem"),
            untrusted_client_key: path("untrusted-client-key.pem"),
        };

        let ca = make_ca("license-agent test provisioning CA");
        write(&pki.ca_pem, &ca.pem());
        let other_ca = make_ca("license-agent test OTHER CA");
        write(&pki.other_ca_pem, &other_ca.pem());

        let mut local = vec!["localhost", "127.0.0.1", PROVISIONING_HOST];
        local.extend(LAB_ADDRESSES);
        let valid = (2000, 2099);
        issue(
            &ca,
            &local,
            Role::Server,
            valid,
            &pki.server_cert,
            &pki.server_key,
        );
        issue(
            &ca,
            &["phone-0004f2000001"],
            Role::Client,
            valid,
            &pki.client_cert,
            &pki.client_key,
        );
        let identity = format!("{}{}", read(&pki.client_key), read(&pki.client_cert));
        write(&pki.client_identity, &identity);
        issue(
            &ca,
            &["wrong.example"],
            Role::Server,
            valid,
            &pki.wrong_host_cert,
            &pki.wrong_host_key,
        );
        issue(
            &ca,
            &local,
            Role::Server,
            (2000, 2000),
            &pki.expired_cert,
            &pki.expired_key,
        );
        issue(
            &other_ca,
            &local,
            Role::Server,
            valid,
            &pki.untrusted_cert,
            &pki.untrusted_key,
        );
        issue(
            &other_ca,
            &["phone-0004f2000001"],
            Role::Client,
            valid,
            &pki.untrusted_client_cert,
            &pki.untrusted_client_key,
        );
        pki
    }
}

/// A self-signed CA with the given common name.
fn make_ca(common_name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
    let key = KeyPair::generate().expect("generate CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-sign the CA")
}

/// Issues a leaf certificate for `names` (DNS names or IP addresses), valid from 1 January
/// of the first year to 1 January of the year after the second (so `(2000, 2000)` ended
/// on 2001-01-01), and writes it and its key.
fn issue(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    role: Role,
    (from, to): (i32, i32),
    cert_path: &Path,
    key_path: &Path,
) {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("valid subject alternative names");
    params.distinguished_name = name(names[0]);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date_time_ymd(from, 1, 1);
    params.not_after = date_time_ymd(to + 1, 1, 1);
    let key = KeyPair::generate().expect("generate leaf key");
    let cert = params
        .signed_by(&key, issuer)
        .expect("sign the leaf certificate");
    write(cert_path, &cert.pem());
    write(key_path, &key.serialize_pem());
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "license-agent tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
