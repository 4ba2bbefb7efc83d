//! The vendor side: key generation and license signing (the `license-issuer` tool, and
//! tests that need licenses). The phone never signs; nothing on the agent's path calls
//! this module, so the release build of `license-agent` links none of it.
//!
//! Every file written here is decoded and verified again by the agent's own code before
//! it is returned: the issuer never produces a file the agent would refuse.
//!
//! - [`derive`]: a site license's Addon, or a Renewal, built from the file in force
//!   (the vendor portal's transaction types, `shared/seeds/000_*.txt`).
//! - [`compare`]: what phones would lose if a new file for a serial were posted after
//!   the previous one (the agent uses the file with the latest end, `agent-rules.md`).
//! - [`pkcs11`] (feature `pkcs11`): keys held in a PKCS#11 token, which signs and never
//!   gives its private key out; [`Signer`] is what a file key and a token key share.

pub mod ceremony;
pub mod compare;
pub mod derive;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;

use std::fmt::Write as _;
use std::path::Path;

use chrono::DateTime;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::format::{self, features, End, FeatureEntry, Kind, License, Serial, MAX_FILE_SIZE};
use crate::trust::{key_id_of, Keyring, Verified};

/// What signs: a key pair in memory ([`SigningKey`], from a file) or a key in a token
/// (`pkcs11::TokenKey`). Everything that signs takes `&dyn Signer`.
pub trait Signer {
    /// The raw 32-byte Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// The Ed25519 signature of `message`, already verified with [`Signer::public_key`]
    /// (a token could answer anything).
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], String>;
}

impl Signer for SigningKey {
    fn public_key(&self) -> [u8; 32] {
        SigningKey::public_key(self)
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        checked_signature(
            &self.public_key(),
            message,
            self.pair.sign(message).as_ref(),
        )
    }
}

/// `signature` as 64 bytes, when it is a valid Ed25519 signature of `message` by `public`.
pub(crate) fn checked_signature(
    public: &[u8; 32],
    message: &[u8],
    signature: &[u8],
) -> Result<[u8; 64], String> {
    let sig: [u8; 64] = signature.try_into().map_err(|_| {
        format!(
            "the signer returned {} bytes, not a 64-byte Ed25519 signature",
            signature.len()
        )
    })?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, &sig)
        .map_err(|_| {
            format!(
                "the signature made does not verify with key {}: nothing is written",
                key_id_of(public)
            )
        })?;
    Ok(sig)
}

/// The line that trusts `public` in a keyring file (`label` empty: the key id).
pub fn keyring_line(public: &[u8; 32], label: &str) -> String {
    let label = if label.is_empty() {
        format!("key {}", key_id_of(public))
    } else {
        label.replace(['\n', '\r'], " ")
    };
    format!("ed25519 {} {label}", hex::encode(public))
}

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

    /// The Ed25519 signature of `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }

    /// The line that trusts this key in a keyring file.
    pub fn keyring_line(&self, label: &str) -> String {
        keyring_line(&self.public_key(), label)
    }
}

/// What a license says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseSpec {
    pub serial: Serial,
    pub kind: Kind,
    pub features: Vec<FeatureEntry>,
}

/// A license file as written, with the license the agent's own code read back from it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub text: String,
    pub license: Verified<License>,
}

/// Signs `spec` and writes the license file text, then proves the text is one the agent
/// accepts (decodes to the same license, verifies with this key).
pub fn issue(spec: &LicenseSpec, key: &dyn Signer) -> Result<String, String> {
    issue_verified(spec, key).map(|issued| issued.text)
}

/// [`issue`], also returning the verified license (to compare it with another file).
pub fn issue_verified(spec: &LicenseSpec, key: &dyn Signer) -> Result<Issued, String> {
    features::check_table(&spec.features).map_err(|e| e.to_string())?;
    let public = key.public_key();
    let key_id = key_id_of(&public);
    let message = format::signed_message(spec.serial, spec.kind, key_id, &spec.features);
    let signature = key.sign(&message)?;

    let text = render(spec, &key_id.to_string(), &signature);
    let verified = self_check(&text, &public)?;
    if verified.signed_message() != message.as_slice() {
        return Err("internal: the written file does not carry the message that was signed".into());
    }
    if text.len() > MAX_FILE_SIZE {
        return Err("the license would exceed the size limit".into());
    }
    Ok(Issued {
        text,
        license: verified,
    })
}

/// Reads a license file and verifies it with `keyring`, as the agent would: the file an
/// Addon or a Renewal is built from, or the previous file compared with a new one.
pub fn read_verified(path: &Path, keyring: &Keyring) -> Result<Verified<License>, String> {
    let bytes = crate::files::read_regular(path, MAX_FILE_SIZE as u64)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    keyring
        .verify_bytes(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The keyring of one signing key: what files are verified with when no keyring is given.
pub fn own_keyring(key: &dyn Signer) -> Keyring {
    Keyring::single(key.public_key(), "the signing key")
}

/// The issuer's "now": the wall clock, or the crate's test clock
/// (`LICENSE_AGENT_TEST_NOW`, as for the agent), in the instants a license can name.
pub fn now() -> Result<u32, String> {
    let t = crate::phone::wall_clock().map_err(|e| e.to_string())?;
    u32::try_from(t)
        .ok()
        .filter(|&t| t != features::NEVER)
        .ok_or_else(|| format!("the clock reads {t}, outside the instants a license can name"))
}

/// An instant as the command line gives it: RFC 3339 in whole seconds
/// (`2026-01-01T00:00:00Z`, any offset) or Unix seconds (`1767225600`), or `never`.
/// `what` names the value in the error.
pub fn parse_time(text: &str, what: &str) -> Result<End, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("never") {
        return Ok(End::Never);
    }
    let secs = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for an i64 is out of range all the same.
        text.parse::<i64>().unwrap_or(i64::MAX)
    } else {
        let t = DateTime::parse_from_rfc3339(text).map_err(|e| {
            format!("{what} {text:?}: not an RFC 3339 date (2026-01-01T00:00:00Z) nor Unix seconds ({e})")
        })?;
        if t.timestamp_subsec_nanos() != 0 {
            return Err(format!("{what} {text:?}: licenses count whole seconds"));
        }
        t.timestamp()
    };
    match u32::try_from(secs) {
        Ok(secs) if secs != features::NEVER => Ok(End::At(secs)),
        _ => Err(format!(
            "{what} {text:?}: must lie between 1970-01-01T00:00:00Z and 2106-02-07T06:28:14Z"
        )),
    }
}

/// [`parse_time`] where `never` is not an answer (a start, the end of a Renewal).
pub fn parse_instant(text: &str, what: &str) -> Result<u32, String> {
    match parse_time(text, what)? {
        End::At(t) => Ok(t),
        End::Never => Err(format!("{what} cannot be never")),
    }
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
    fn times_are_rfc3339_or_unix_seconds_in_whole_seconds() {
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z", "START"),
            Ok(End::At(1_767_225_600))
        );
        assert_eq!(
            parse_time("2026-01-01T02:00:00+02:00", "START"),
            Ok(End::At(1_767_225_600))
        );
        assert_eq!(
            parse_time(" 1767225600 ", "START"),
            Ok(End::At(1_767_225_600))
        );
        assert_eq!(parse_time("0", "START"), Ok(End::At(0)));
        assert_eq!(parse_time("NEVER", "END"), Ok(End::Never));
        assert!(parse_instant("never", "--start")
            .unwrap_err()
            .contains("cannot be never"));
        for (bad, why) in [
            ("4294967295", "between 1970"),
            ("99999999999999999999999", "between 1970"),
            ("1969-12-31T23:59:59Z", "between 1970"),
            ("2026-01-01T00:00:00.5Z", "whole seconds"),
            ("yesterday", "RFC 3339"),
            ("-5", "RFC 3339"),
            ("", "RFC 3339"),
        ] {
            let e = parse_time(bad, "START").unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_signature_that_does_not_verify_is_never_returned() {
        let key = SigningKey::from_seed(&[3; 32]).unwrap();
        let good = Signer::sign(&key, b"message").unwrap();
        let public = key.public_key();
        assert_eq!(checked_signature(&public, b"message", &good), Ok(good));
        // What a faulty token could answer: another message's, a flipped bit, short.
        assert!(checked_signature(&public, b"other", &good).is_err());
        let mut flipped = good;
        flipped[10] ^= 1;
        assert!(checked_signature(&public, b"message", &flipped).is_err());
        assert!(checked_signature(&public, b"message", &good[..63])
            .unwrap_err()
            .contains("63 bytes"));
    }

    #[test]
    fn keys_that_are_not_pkcs8_are_refused() {
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }
}

#[cfg(test)]
mod derive_tests;
