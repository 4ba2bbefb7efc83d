//! Trust: the keyring, the Ed25519 check, and [`Verified`], the proof that a license
//! passed it.
//!
//! `Verified<T>` has private fields, so only this module can build one: code that takes
//! a `Verified<License>` cannot be handed an unchecked file by mistake.

pub(crate) mod chain;
pub(crate) mod keyring;
#[cfg(test)]
pub(crate) mod memo;
pub(crate) mod update;

use std::fmt;
use std::ops::Deref;

use ring::signature::{UnparsedPublicKey, ED25519};

use crate::format::{self, FormatError, KeyId, License, Malformed};
pub use keyring::Keyring;
pub use keyring::KeyringError;
pub(crate) use keyring::{key_id_of, TrustedKey};

/// A value whose signature was checked against a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    key: TrustedKey,
}

impl<T> Verified<T> {
    /// The trusted key that signed it.
    pub(crate) fn signer(&self) -> &TrustedKey {
        &self.key
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Why a license file is refused, one variant per verdict of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Size, syntax, a field or the feature table breaks the format.
    Malformed(Malformed),
    /// Well-formed, of a format version other than 2.0.
    UnsupportedVersion { found: String },
    /// Signed by a key this phone does not trust (perhaps a stale keyring after a key
    /// rotation, perhaps a forgery).
    UnknownKey { key_id: KeyId },
    /// The signature does not match the content: altered, or not signed by that key.
    BadSignature { key_id: KeyId },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(m) => write!(f, "malformed license file: {m}"),
            Rejection::UnsupportedVersion { found } => {
                write!(f, "{}", FormatError::UnsupportedVersion { found: found.clone() })
            }
            Rejection::UnknownKey { key_id } => write!(
                f,
                "signed with key {key_id}, which is not in the trusted keyring (a newer vendor key needs a keyring update; otherwise the file is not genuine)"
            ),
            Rejection::BadSignature { key_id } => write!(
                f,
                "the signature does not match the content for key {key_id}: the file was altered or not signed by that key"
            ),
        }
    }
}

impl std::error::Error for Rejection {}

impl From<FormatError> for Rejection {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Malformed(m) => Rejection::Malformed(m),
            FormatError::UnsupportedVersion { found } => Rejection::UnsupportedVersion { found },
        }
    }
}

impl From<Malformed> for Rejection {
    fn from(m: Malformed) -> Self {
        Rejection::Malformed(m)
    }
}

impl Keyring {
    /// Checks a decoded license's signature: the key must be trusted, then the signature
    /// must match the signed message.
    pub(crate) fn verify(&self, license: License) -> Result<Verified<License>, Rejection> {
        let key_id = license.key_id();
        let key = self.get(key_id).ok_or(Rejection::UnknownKey { key_id })?;
        UnparsedPublicKey::new(&ED25519, &key.public_key)
            .verify(license.signed_message(), license.signature())
            .map_err(|_| Rejection::BadSignature { key_id })?;
        Ok(Verified {
            value: license,
            key: key.clone(),
        })
    }

    /// Decodes and verifies a whole file: the full verdict of `license-file.md`.
    pub fn verify_bytes(&self, bytes: &[u8]) -> Result<Verified<License>, Rejection> {
        // The simulator's threads look the verdict up (`memo`); the agent judges each time.
        #[cfg(test)]
        if memo::enabled() {
            return memo::verdict(self, bytes, || {
                format::parse(bytes)
                    .map_err(Rejection::from)
                    .and_then(|license| self.verify(license))
            });
        }
        self.verify(format::parse(bytes)?)
    }
}
