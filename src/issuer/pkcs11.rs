//! Keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM2 in the tests): the
//! token generates the Ed25519 key pair (CKM_EC_EDWARDS_KEY_PAIR_GEN), keeps the private
//! key sensitive and non-extractable, and signs (CKM_EDDSA, pure Ed25519). Only the
//! public key leaves it. Nothing here writes a file.
//!
//! Every signature the token returns is verified with the public key read from the
//! token before it is used ([`super::Signer`]), so a faulty token or a wrong object
//! cannot put a bad signature into a license or a trust update.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use super::{checked_signature, Signer};

/// Where SoftHSM2's module is on Debian: the default of `--pkcs11-module`.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The DER of the curve for CKA_EC_PARAMS: the OID 1.3.101.112 (id-Ed25519, RFC 8410),
/// which PKCS#11 3.0 prefers; SoftHSM2 2.6.1 takes it, and the printable string
/// "edwards25519" as well (both tried).
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// Which key of which token, and how to log in.
pub struct TokenSpec {
    /// The PKCS#11 module (a shared library) to load.
    pub module: PathBuf,
    /// The token's label (CKA_LABEL of the token, as `softhsm2-util --init-token` sets it).
    pub token: String,
    /// The key pair's CKA_LABEL.
    pub key_label: String,
    /// The user PIN.
    pub pin: AuthPin,
}

/// A key pair in a token, logged in and ready to sign.
pub struct TokenKey {
    session: Session,
    private: ObjectHandle,
    public: [u8; 32],
}

impl TokenKey {
    /// Finds the key pair labelled `spec.key_label` in the token.
    pub fn open(spec: &TokenSpec) -> Result<TokenKey, String> {
        let session = login(spec, false)?;
        let public = match find(&session, spec, ObjectClass::PUBLIC_KEY)? {
            Some(handle) => public_key_of(&session, handle, &spec.key_label)?,
            None => return Err(no_key(spec)),
        };
        let private = find(&session, spec, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
            format!(
                "token {:?} has the public key {:?} but no private key of that label",
                spec.token, spec.key_label
            )
        })?;
        Ok(TokenKey {
            session,
            private,
            public,
        })
    }

    /// Generates a new key pair in the token, labelled `spec.key_label` (refused when
    /// one of that label is there already), and returns its public key.
    pub fn generate(spec: &TokenSpec) -> Result<[u8; 32], String> {
        let session = login(spec, true)?;
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
            if find(&session, spec, class)?.is_some() {
                return Err(format!(
                    "token {:?} already holds a key labelled {:?}: not generating another",
                    spec.token, spec.key_label
                ));
            }
        }
        let label = spec.key_label.as_bytes().to_vec();
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcParams(ED25519_PARAMS.to_vec()),
            Attribute::Verify(true),
            Attribute::Label(label.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            // The private key never leaves the token, not even wrapped.
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label),
        ];
        let (public, _private) = session
            .generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(|e| {
                format!(
                    "token {:?} cannot generate an Ed25519 key pair: {}",
                    spec.token,
                    explain(&e)
                )
            })?;
        public_key_of(&session, public, &spec.key_label)
    }
}

impl Signer for TokenKey {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let signature = self
            .session
            .sign(&mechanism, self.private, message)
            .map_err(|e| format!("the token cannot sign: {}", explain(&e)))?;
        checked_signature(&self.public, message, &signature)
    }
}

/// Loads the module, finds the token by label, opens a session and logs the user in.
fn login(spec: &TokenSpec, read_write: bool) -> Result<Session, String> {
    let module = &spec.module;
    if !module.is_file() {
        // libloading's own message for a missing file is the loader's, and vague.
        return Err(format!(
            "PKCS#11 module {}: no such file (--pkcs11-module or LICENSE_ISSUER_PKCS11_MODULE; \
             SoftHSM2's is {DEFAULT_MODULE})",
            module.display()
        ));
    }
    let pkcs11 = load(module)?;
    let slots = pkcs11.get_slots_with_token().map_err(|e| {
        format!(
            "{}: cannot list the tokens: {}",
            module.display(),
            explain(&e)
        )
    })?;
    let mut labels = Vec::new();
    let mut found = None;
    for slot in slots {
        let Ok(info) = pkcs11.get_token_info(slot) else {
            continue;
        };
        // Labels are blank-padded to 32 bytes in the token's info.
        let label = info.label().trim_end().to_string();
        if label == spec.token {
            found = Some(slot);
            break;
        }
        // SoftHSM2 keeps one free, unlabelled slot: not worth naming.
        if !label.is_empty() {
            labels.push(label);
        }
    }
    let slot = found.ok_or_else(|| {
        format!(
            "no token labelled {:?} in {} (tokens: {})",
            spec.token,
            module.display(),
            if labels.is_empty() {
                "none".to_string()
            } else {
                format!("{labels:?}")
            }
        )
    })?;
    let session = if read_write {
        pkcs11.open_rw_session(slot)
    } else {
        pkcs11.open_ro_session(slot)
    }
    .map_err(|e| {
        format!(
            "token {:?}: cannot open a session: {}",
            spec.token,
            explain(&e)
        )
    })?;
    match session.login(UserType::User, Some(&spec.pin)) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(e) => Err(format!(
            "token {:?}: cannot log in: {}",
            spec.token,
            explain(&e)
        )),
    }
}

fn load(module: &Path) -> Result<Pkcs11, String> {
    let pkcs11 = Pkcs11::new(module).map_err(|e| {
        format!(
            "cannot load PKCS#11 module {}: {}",
            module.display(),
            explain(&e)
        )
    })?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| {
            format!(
                "PKCS#11 module {} does not initialize: {}",
                module.display(),
                explain(&e)
            )
        })?;
    Ok(pkcs11)
}

/// The one Ed25519 object of `class` labelled `spec.key_label`; more than one is an
/// error (which would sign is not for us to guess).
fn find(
    session: &Session,
    spec: &TokenSpec,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>, String> {
    let template = [
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Label(spec.key_label.as_bytes().to_vec()),
    ];
    let found = session
        .find_objects(&template)
        .map_err(|e| format!("token {:?}: cannot search it: {}", spec.token, explain(&e)))?;
    match found[..] {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(format!(
            "token {:?} holds {} Ed25519 {class} objects labelled {:?}: give a unique --key-label",
            spec.token,
            found.len(),
            spec.key_label
        )),
    }
}

fn no_key(spec: &TokenSpec) -> String {
    format!(
        "token {:?} holds no Ed25519 key labelled {:?} (license-issuer keygen --token ... \
         --key-label ... makes one)",
        spec.token, spec.key_label
    )
}

/// The raw public key of a public key object: CKA_EC_POINT, which PKCS#11 3.0 wants
/// DER-wrapped (an OCTET STRING of the 32 bytes) and some tokens give raw.
fn public_key_of(session: &Session, handle: ObjectHandle, label: &str) -> Result<[u8; 32], String> {
    let attributes = session
        .get_attributes(handle, &[AttributeType::EcPoint])
        .map_err(|e| format!("key {label:?}: cannot read CKA_EC_POINT: {}", explain(&e)))?;
    let point = attributes
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| format!("key {label:?}: the token gave no CKA_EC_POINT"))?;
    unwrap_point(&point).ok_or_else(|| {
        format!(
            "key {label:?}: CKA_EC_POINT {} is not an Ed25519 public key",
            hex::encode(&point)
        )
    })
}

/// `04 20 <32 bytes>` (DER OCTET STRING) or the 32 bytes alone.
pub(crate) fn unwrap_point(point: &[u8]) -> Option<[u8; 32]> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw if raw.len() == 32 => raw.try_into().ok(),
        _ => None,
    }
}

/// A PKCS#11 error in words a vendor's operator can act on.
fn explain(e: &Error) -> String {
    match e {
        Error::Pkcs11(RvError::PinIncorrect, _) => "wrong PIN (CKR_PIN_INCORRECT)".into(),
        Error::Pkcs11(RvError::PinLocked, _) => {
            "the PIN is locked after too many wrong tries (CKR_PIN_LOCKED)".into()
        }
        Error::Pkcs11(RvError::MechanismInvalid, _) => {
            "the token does not support Ed25519 (CKR_MECHANISM_INVALID)".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_unwrap_from_der_or_raw_and_nothing_else() {
        let key = [7u8; 32];
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&key);
        assert_eq!(unwrap_point(&der), Some(key));
        assert_eq!(unwrap_point(&key), Some(key));
        assert_eq!(unwrap_point(&der[..33]), None);
        assert_eq!(unwrap_point(&[0x04, 0x21, 1]), None);
        assert_eq!(unwrap_point(&[]), None);
    }
}
