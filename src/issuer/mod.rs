//! The vendor side: key generation and license signing (the `license-issuer` tool, and
//! tests that need licenses). The phone never signs; nothing on the agent's path calls
//! this module, so the release build of `license-agent` links none of it.
//!
//! Every file written here is decoded and verified again by the agent's own code before
//! it is returned: the issuer never produces a file the agent would refuse.

use std::fmt::Write as _;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::format::{self, features, FeatureEntry, Kind, License, Serial};
use crate::trust::{key_id_of, Keyring, Verified};

/// A signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key, with its PKCS#8 (v2) document to store.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), String> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "no randomness for a new key".to_string())?;
        let key = SigningKey::from_pkcs8(doc.as_ref())?;
        Ok((key, doc.as_ref().to_vec()))
    }

    /// The key of a 32-byte seed (deterministic: tests and reproducible examples).
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, String> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(|pair| SigningKey { pair })
            .map_err(|e| format!("not an Ed25519 seed ({e})"))
    }

    /// Reads a PKCS#8 DER private key (v2 as `keygen` writes, or v1 as OpenSSL writes).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(|pair| SigningKey { pair })
            .map_err(|e| format!("not an Ed25519 PKCS#8 DER private key ({e})"))
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// The line that trusts this key in a keyring file.
    pub fn keyring_line(&self, label: &str) -> String {
        let public = self.public_key();
        let label = if label.is_empty() {
            format!("key {}", key_id_of(&public))
        } else {
            label.replace(['\n', '\r'], " ")
        };
        format!("ed25519 {} {label}", hex::encode(public))
    }
}

/// What a license says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseSpec {
    pub serial: Serial,
    pub kind: Kind,
    pub features: Vec<FeatureEntry>,
}

/// Signs `spec` and writes the license file text, then proves the text is one the agent
/// accepts (decodes to the same license, verifies with this key).
pub fn issue(spec: &LicenseSpec, key: &SigningKey) -> Result<String, String> {
    features::check_table(&spec.features).map_err(|e| e.to_string())?;
    let public = key.public_key();
    let key_id = key_id_of(&public);
    let message = format::signed_message(spec.serial, spec.kind, key_id, &spec.features);
    let signature = key.pair.sign(&message);

    let text = render(spec, &key_id.to_string(), signature.as_ref());
    let verified = self_check(&text, &public)?;
    if verified.signed_message() != message.as_slice() {
        return Err("internal: the written file does not carry the message that was signed".into());
    }
    Ok(text)
}

fn render(spec: &LicenseSpec, key_id: &str, signature: &[u8]) -> String {
    let mut text = String::new();
    // `write!` into a String cannot fail.
    let _ = write!(
        text,
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\" standalone=\"yes\"?>\n\
         <!-- {kind} license for {serial}, made by license-issuer -->\n\
         <LICENSE>\n  <Serial>{serial}</Serial>\n  <Version>{version}</Version>\n  \
         <Description>{description}</Description>\n  <Key>{key_id}</Key>\n  \
         <Features>{table}</Features>\n  <Signature>{signature}</Signature>\n</LICENSE>\n",
        kind = spec.kind,
        serial = spec.serial,
        version = format::license::VERSION,
        description = spec.kind.description(),
        table = hex::encode(features::encode_table(&spec.features)),
        signature = hex::encode(signature),
    );
    text
}

fn self_check(text: &str, public: &[u8; 32]) -> Result<Verified<License>, String> {
    Keyring::single(*public, "issuer")
        .verify_bytes(text.as_bytes())
        .map_err(|e| format!("refusing to write a file the agent would refuse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{End, FeatureId, Transaction};

    fn spec(features: Vec<FeatureEntry>) -> LicenseSpec {
        LicenseSpec {
            serial: Serial::parse("0004f2000001").unwrap(),
            kind: Kind::Phone,
            features,
        }
    }

    fn entry(id: u16) -> FeatureEntry {
        FeatureEntry {
            id: FeatureId(id),
            transaction: Transaction::New,
            start: 1_767_225_600,
            end: End::Never,
            limit: 0,
        }
    }

    #[test]
    fn issued_file_verifies_with_the_key_and_only_with_it() {
        let (key, der) = SigningKey::generate().unwrap();
        let text = issue(&spec(vec![entry(1), entry(2)]), &key).unwrap();
        let ring = Keyring::parse(&key.keyring_line("test")).unwrap();
        let verified = ring.verify_bytes(text.as_bytes()).unwrap();
        assert_eq!(verified.features().len(), 2);
        // The stored key reads back as the same key.
        assert_eq!(
            SigningKey::from_pkcs8(&der).unwrap().public_key(),
            key.public_key()
        );
        let (other, _) = SigningKey::generate().unwrap();
        let other_ring = Keyring::parse(&other.keyring_line("")).unwrap();
        assert!(other_ring.verify_bytes(text.as_bytes()).is_err());
    }

    #[test]
    fn refuses_tables_the_agent_would_refuse() {
        let (key, _) = SigningKey::generate().unwrap();
        assert!(issue(&spec(vec![]), &key).is_err());
        assert!(issue(&spec(vec![entry(1), entry(1)]), &key).is_err());
        assert!(issue(&spec((1..=257).map(entry).collect()), &key).is_err());
        assert!(issue(&spec((1..=256).map(entry).collect()), &key).is_ok());
    }

    #[test]
    fn keys_that_are_not_pkcs8_are_refused() {
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }
}
