//! The trusted keyring: which Ed25519 public keys may sign licenses.
//!
//! Format (`license-file.md`): `#` starts a comment, blank lines are ignored, every other
//! line is `ed25519 <64 hex digits> [free text]`. A key's id is derived from the key, never
//! read from the file. Any other line makes the whole keyring invalid: an agent with a
//! keyring it cannot read trusts nothing and says why.

use std::fmt;
use std::path::Path;

use ring::digest;

use crate::format::KeyId;

/// Bytes of a raw Ed25519 public key.
pub(crate) const PUBLIC_KEY_LEN: usize = 32;

/// The id of a raw public key: first 4 bytes of its SHA-256.
pub(crate) fn key_id_of(public_key: &[u8; PUBLIC_KEY_LEN]) -> KeyId {
    let hash = digest::digest(&digest::SHA256, public_key);
    let mut id = [0u8; 4];
    id.copy_from_slice(&hash.as_ref()[..4]);
    KeyId(id)
}

/// One trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustedKey {
    pub(crate) id: KeyId,
    pub(crate) public_key: [u8; PUBLIC_KEY_LEN],
    /// The free text after the key on its line (may be empty).
    pub(crate) label: String,
}

/// Why a keyring cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringError {
    /// The file could not be read.
    Io { path: String, error: String },
    /// A line is not a comment, blank, or a key line.
    Line { line: usize, reason: String },
    /// Two different keys have the same 4-byte id: a license naming it would be ambiguous.
    IdCollision { id: KeyId, line: usize },
    /// No key line at all (an empty or truncated file): taking it would set every stored
    /// license aside as no longer verifying.
    Empty,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::Io { path, error } => write!(f, "cannot read keyring {path}: {error}"),
            KeyringError::Line { line, reason } => {
                write!(
                    f,
                    "invalid keyring, line {line}: {reason}; no key is trusted"
                )
            }
            KeyringError::IdCollision { id, line } => write!(
                f,
                "invalid keyring, line {line}: another key already has id {id}; no key is trusted"
            ),
            KeyringError::Empty => f.write_str(
                "invalid keyring: it names no key (empty or truncated?), so nothing could verify",
            ),
        }
    }
}

impl std::error::Error for KeyringError {}

/// The set of trusted keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    /// The license keys.
    keys: Vec<TrustedKey>,
    /// The trust version this keyring is (`version N`; 0 when not given).
    version: u32,
    /// The root keys (`root ed25519 ...`), which sign trust updates and never licenses
    /// (`docs/trust-update.md`), and how many must sign the next version.
    roots: Vec<[u8; PUBLIC_KEY_LEN]>,
    root_threshold: usize,
    /// Until when the trust is vouched for: never for a firmware keyring; a trust
    /// document's own expiry (`docs/trust-update.md`, "Freeze").
    expires: Option<crate::time::UnixTime>,
    /// License keys an earlier version had and a later one removed, each with the
    /// version that removed it (none for a firmware keyring): a stored license of such
    /// a key is set aside with that reason, wherever it is found.
    removed: Vec<([u8; PUBLIC_KEY_LEN], u32)>,
    /// The trust documents stored could not all be read or did not all follow (a
    /// damaged flash, a folder someone replaced): this keyring may be short of a later
    /// version, so a stored license of a key it does not know is kept, not set aside.
    incomplete: bool,
}

impl Keyring {
    /// Reads a keyring file (capped at 1 MiB: a keyring holds a handful of lines).
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        const MAX: u64 = 1 << 20;
        let io_err = |e: std::io::Error| KeyringError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        // Opened so that a FIFO or a device in its place cannot hold the daemon.
        let bytes = crate::files::read_regular(path, MAX).map_err(io_err)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            KeyringError::Line {
                line,
                reason: "not valid UTF-8 text".into(),
            }
        })?;
        Keyring::parse(text)
    }

    /// Reads keyring text.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keyring = Keyring::default();
        let (mut seen_version, mut threshold_line) = (None, None);
        let mut root_line;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let bad = |reason: String| KeyringError::Line { line, reason };
            let (mut algorithm, mut rest) = content
                .split_once(char::is_whitespace)
                .unwrap_or((content, ""));
            // The trust lines of `docs/trust-update.md`.
            match algorithm {
                "version" | "root-threshold" => {
                    let seen = if algorithm == "version" {
                        &mut seen_version
                    } else {
                        &mut threshold_line
                    };
                    if seen.is_some() {
                        return Err(bad(format!("a second {algorithm} line")));
                    }
                    let value = rest.trim();
                    let number = value
                        .parse::<u32>()
                        .ok()
                        .filter(|_| value == "0" || !value.starts_with('0'))
                        .ok_or_else(|| bad(format!("{algorithm} {value:?}: a decimal number")))?;
                    *seen = Some(line);
                    if algorithm == "version" {
                        keyring.version = number;
                    } else {
                        keyring.root_threshold = number as usize;
                    }
                    continue;
                }
                "root" => {
                    let (kind, key) = rest
                        .trim_start()
                        .split_once(char::is_whitespace)
                        .unwrap_or((rest.trim_start(), ""));
                    algorithm = kind;
                    rest = key;
                    root_line = true;
                }
                _ => root_line = false,
            }
            if algorithm != "ed25519" {
                return Err(bad(format!(
                    "expected \"ed25519 <64 hex digits> [label]\", found {algorithm:?}"
                )));
            }
            let rest = rest.trim_start();
            let (key_hex, label) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let mut public_key = [0u8; PUBLIC_KEY_LEN];
            if key_hex.len() != 2 * PUBLIC_KEY_LEN
                || hex::decode_to_slice(key_hex, &mut public_key).is_err()
            {
                return Err(bad(format!(
                    "the key must be 64 hex digits (32 bytes), found {:?}",
                    key_hex
                )));
            }
            if root_line {
                let id = key_id_of(&public_key);
                match keyring.roots.iter().find(|r| key_id_of(r) == id) {
                    Some(r) if *r == public_key => {}
                    Some(_) => return Err(KeyringError::IdCollision { id, line }),
                    None => keyring.roots.push(public_key),
                }
            } else {
                keyring.add(public_key, label.trim(), line)?;
            }
        }
        if keyring.keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        if let Some(root) = keyring
            .roots
            .iter()
            .find(|r| keyring.get(key_id_of(r)).is_some())
        {
            return Err(KeyringError::Line {
                line: 0,
                reason: format!(
                    "key {} is both a root key and a license key; a root key signs only \
                     trust updates",
                    key_id_of(root)
                ),
            });
        }
        match (threshold_line, keyring.roots.len()) {
            (None, 0) => {}
            (Some(line), 0) => {
                return Err(KeyringError::Line {
                    line,
                    reason: "root-threshold without root keys".into(),
                })
            }
            (None, _) => {
                return Err(KeyringError::Line {
                    line: 0,
                    reason: "root keys without a root-threshold line".into(),
                })
            }
            (Some(line), roots)
                if keyring.root_threshold == 0 || keyring.root_threshold > roots =>
            {
                return Err(KeyringError::Line {
                    line,
                    reason: format!(
                        "root-threshold {}: 1 to the {roots} root keys",
                        keyring.root_threshold
                    ),
                })
            }
            _ => {}
        }
        keyring.roots.sort_unstable();
        Ok(keyring)
    }

    /// Adds a key (a repeat of a trusted key is the same key, and ignored).
    fn add(
        &mut self,
        public_key: [u8; PUBLIC_KEY_LEN],
        label: &str,
        line: usize,
    ) -> Result<(), KeyringError> {
        let id = key_id_of(&public_key);
        match self.keys.iter().find(|k| k.id == id) {
            Some(k) if k.public_key == public_key => Ok(()),
            Some(_) => Err(KeyringError::IdCollision { id, line }),
            None => {
                self.keys.push(TrustedKey {
                    id,
                    public_key,
                    label: label.to_string(),
                });
                Ok(())
            }
        }
    }

    /// A keyring of one key (the issuer checks its own output with it).
    pub(crate) fn single(public_key: [u8; PUBLIC_KEY_LEN], label: &str) -> Keyring {
        let id = key_id_of(&public_key);
        Keyring {
            keys: vec![TrustedKey {
                id,
                public_key,
                label: label.to_string(),
            }],
            ..Keyring::default()
        }
    }

    /// The keyring of `trust` (a trust document taken after this firmware keyring): its
    /// license keys, each with the label this keyring gave it, or `trust version N`;
    /// its version and roots, so that the next update is judged against it.
    pub(crate) fn for_trust(&self, trust: &super::update::Trust) -> Keyring {
        let keys = trust
            .licenses
            .iter()
            .map(|public_key| {
                let id = key_id_of(public_key);
                let label = match self.get(id).filter(|k| k.public_key == *public_key) {
                    Some(known) => known.label.clone(),
                    None => format!("trust version {}", trust.version),
                };
                TrustedKey {
                    id,
                    public_key: *public_key,
                    label,
                }
            })
            .collect();
        Keyring {
            keys,
            version: trust.version,
            roots: trust.roots.clone(),
            root_threshold: trust.threshold,
            expires: trust.expires,
            removed: Vec::new(),
            incomplete: false,
        }
    }

    /// The keyring of `next`, the version taken after this keyring's (`firmware`, the
    /// first trust, gives the labels): the keys it removes are remembered with it.
    pub(crate) fn followed_by(&self, firmware: &Keyring, next: &super::update::Trust) -> Keyring {
        let mut keyring = firmware.for_trust(next);
        let mut removed: Vec<([u8; PUBLIC_KEY_LEN], u32)> = self
            .removed
            .iter()
            .copied()
            .chain(
                self.keys
                    .iter()
                    .filter(|k| !next.licenses.contains(&k.public_key))
                    .map(|k| (k.public_key, next.version)),
            )
            .filter(|(key, _)| !next.licenses.contains(key))
            .collect();
        removed.sort_unstable();
        removed.dedup_by_key(|(key, _)| *key);
        keyring.removed = removed;
        keyring
    }

    /// Marks the keyring as possibly short of the trust the phone held (see the field).
    pub(crate) fn mark_incomplete(&mut self) {
        self.incomplete = true;
    }

    /// Whether it may be short of the trust the phone held.
    pub(crate) fn incomplete(&self) -> bool {
        self.incomplete
    }

    /// The version that removed the license key `id`, if one did.
    pub(crate) fn removed_by(&self, id: KeyId) -> Option<u32> {
        self.removed
            .iter()
            .find(|(key, _)| key_id_of(key) == id)
            .map(|(_, version)| *version)
    }

    #[cfg_attr(not(test), allow(dead_code))]
    /// The trust this keyring is (`docs/trust-update.md`, "The firmware keyring is the
    /// first trust"): its version, roots and license keys; it never expires.
    pub(crate) fn trust(&self) -> super::update::Trust {
        let mut licenses: Vec<[u8; PUBLIC_KEY_LEN]> =
            self.keys.iter().map(|k| k.public_key).collect();
        licenses.sort_unstable();
        super::update::Trust {
            version: self.version,
            expires: self.expires,
            threshold: self.root_threshold,
            roots: self.roots.clone(),
            licenses,
        }
    }

    /// The trust version this keyring is.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// How many root keys it has, and how many must sign the next version.
    pub(crate) fn roots(&self) -> (usize, usize) {
        (self.roots.len(), self.root_threshold)
    }

    /// When its trust expires (`None`: never).
    pub(crate) fn expires(&self) -> Option<crate::time::UnixTime> {
        self.expires
    }

    /// Why a license not stored yet is not taken now, if the trust held has expired by
    /// `now` (`docs/trust-update.md`, "Freeze"): it may have been minted with a key whose
    /// removal the phone is being kept from seeing. Stored licenses are not touched.
    pub(crate) fn frozen(&self, now: crate::time::UnixTime) -> Option<String> {
        let at = self.expires.filter(|at| *at <= now)?;
        Some(format!(
            "trust expired: trust version {} expired at {}; no license not stored already \
             is taken until a newer trust version reaches the phone",
            self.version,
            crate::format::features::rfc3339(u32::try_from(at.max(0)).unwrap_or(u32::MAX))
        ))
    }

    /// The ids of the license keys, in order, as written (`0A1B2C3D`).
    pub(crate) fn license_key_words(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.to_string()).collect()
    }

    /// The key with this id, if trusted.
    pub(crate) fn get(&self, id: KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// All trusted keys, in file order.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_keyring_that_names_no_key_is_refused() {
        for text in ["", "\n", "# only a comment\n  \n"] {
            assert!(
                matches!(Keyring::parse(text), Err(KeyringError::Empty)),
                "{text:?}"
            );
        }
    }

    use super::*;

    const VENDOR: &str = "44ad6866528e8fc138f2d6677816a1875da530e7e4d2598519a09a3cf1a4947d";
    const ROTATED: &str = "F7E184C9607460291E40065A329D78140879CD7A98E0C633D7358FF7CDA46C03";

    #[test]
    fn derives_the_key_ids_the_vectors_name() {
        let text = format!("# c\ned25519 {VENDOR} vendor key\n\n  ed25519\t{ROTATED}\r\n");
        let ring = Keyring::parse(&text).unwrap();
        let ids: Vec<String> = ring.keys().iter().map(|k| k.id.to_string()).collect();
        assert_eq!(ids, ["03A548A2", "6C8B40D1"]);
        assert_eq!(ring.keys()[0].label, "vendor key");
    }

    #[test]
    fn a_repeated_key_is_one_key() {
        let text = format!("ed25519 {VENDOR} a\ned25519 {} b\n", VENDOR.to_uppercase());
        assert_eq!(Keyring::parse(&text).unwrap().keys().len(), 1);
    }

    #[test]
    fn comments_may_follow_a_key() {
        let ring = Keyring::parse(&format!("ed25519 {VENDOR}# trailing\n")).unwrap();
        assert_eq!(ring.keys().len(), 1);
    }

    #[test]
    fn any_other_line_invalidates_the_whole_keyring() {
        for bad in [
            format!("ed25519 {VENDOR}\nrsa {VENDOR}\n"),
            format!("ed25519 {}\n", &VENDOR[..62]),
            format!("ed25519 {VENDOR}00\n"),
            format!("ed25519 {}zz\n", &VENDOR[..62]),
            "ed25519\n".to_string(),
            format!("ED25519 {VENDOR}\n"),
        ] {
            let err = Keyring::parse(&bad).unwrap_err();
            assert!(matches!(err, KeyringError::Line { .. }), "{bad:?}: {err}");
        }
        let err = Keyring::parse(&format!("\n\nrsa {VENDOR}\n")).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
