//! Trust updates (`docs/trust-update.md`, a draft for issue 28): the trust a phone holds
//! (versioned root keys with a threshold, and the license keys), the reader of a trust
//! document, and the judgement of a document against the trust held.
//!
//! Pure: bytes and an instant in, a new [`Trust`] or a [`Refusal`] out. Nothing here
//! fetches, stores or is used by the daemon yet: the reader and the rules come first,
//! checked against the spec's independent vectors (`tests/trust-vectors/`).

use std::fmt;

use ring::signature::{UnparsedPublicKey, ED25519};

use super::keyring::{key_id_of, PUBLIC_KEY_LEN};
use crate::format::KeyId;
use crate::time::UnixTime;

/// The largest trust document, in bytes.
pub(crate) const MAX_DOCUMENT: usize = 16_384;

/// Version `version`'s file name, on the server and in the store: `trust-N.cfg`.
pub(crate) fn document_name(version: u32) -> String {
    format!("trust-{version}.cfg")
}
/// The most root keys, license keys and signature lines a document holds.
pub(crate) const MAX_ROOTS: usize = 16;
pub(crate) const MAX_LICENSE_KEYS: usize = 64;
pub(crate) const MAX_SIGNATURES: usize = 32;

/// The first text of the signed message: no license signature can be one of these.
const DOMAIN: &str = "LICENSE-AGENT-TRUST-1\n";

type Key = [u8; PUBLIC_KEY_LEN];

/// The trust a phone holds: a version, how long it is vouched for, the root keys that
/// may sign the next version (and how many must), and the keys that sign licenses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trust {
    pub(crate) version: u32,
    /// `None`: never.
    pub(crate) expires: Option<UnixTime>,
    pub(crate) threshold: usize,
    /// Sorted by their bytes, each once.
    pub(crate) roots: Vec<Key>,
    /// Sorted by their bytes, each once.
    pub(crate) licenses: Vec<Key>,
}

impl Trust {
    /// The signed message (`docs/trust-update.md`, "The signed message").
    pub(crate) fn signed_message(&self) -> Vec<u8> {
        let mut out = String::from(DOMAIN);
        out.push_str(&format!("version {}\n", self.version));
        match self.expires {
            Some(at) => out.push_str(&format!("expires {at}\n")),
            None => out.push_str("expires never\n"),
        }
        out.push_str(&format!("root-threshold {}\n", self.threshold));
        for key in &self.roots {
            out.push_str(&format!("root {}\n", hex::encode(key)));
        }
        for key in &self.licenses {
            out.push_str(&format!("license {}\n", hex::encode(key)));
        }
        out.into_bytes()
    }
}

/// A document as read: the trust it carries and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    pub(crate) trust: Trust,
    pub(crate) signatures: Vec<(KeyId, [u8; 64])>,
}

/// Why a document is not taken, one variant per verdict of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Malformed {
        line: usize,
        why: String,
    },
    UnsupportedVersion {
        found: String,
    },
    NotNewer {
        version: u32,
        held: u32,
    },
    SkipsAVersion {
        version: u32,
        held: u32,
    },
    BelowOldThreshold {
        signed: usize,
        threshold: usize,
        held: u32,
        bad: Vec<KeyId>,
    },
    BelowOwnThreshold {
        signed: usize,
        threshold: usize,
        bad: Vec<KeyId>,
    },
    Expired {
        at: UnixTime,
    },
    /// It has an expiry and the clock is not judged yet: taken once it is.
    WaitsForClock,
    NoRootKey,
}

impl Refusal {
    /// The verdict's word (`docs/trust-update.md`, "Verdicts, in words").
    pub(crate) fn verdict(&self) -> &'static str {
        match self {
            Refusal::Malformed { .. } => "malformed",
            Refusal::UnsupportedVersion { .. } => "unsupported version",
            Refusal::NotNewer { .. } => "not newer",
            Refusal::SkipsAVersion { .. } => "skips a version",
            Refusal::BelowOldThreshold { .. } => "below the old threshold",
            Refusal::BelowOwnThreshold { .. } => "below its own threshold",
            Refusal::Expired { .. } => "expired",
            Refusal::WaitsForClock => "waits for the clock",
            Refusal::NoRootKey => "no root key",
        }
    }
}

fn ids(bad: &[KeyId]) -> String {
    if bad.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = bad.iter().map(ToString::to_string).collect();
    format!("; signatures that do not verify: {}", ids.join(", "))
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.verdict();
        match self {
            Refusal::Malformed { line: 0, why } => write!(f, "{word}: {why}"),
            Refusal::Malformed { line, why } => write!(f, "{word}: line {line}: {why}"),
            Refusal::UnsupportedVersion { found } => {
                write!(
                    f,
                    "{word}: license-agent-trust {found:?}; this agent reads 1"
                )
            }
            Refusal::NotNewer { version, held } => {
                write!(f, "{word}: version {version}, the phone holds {held}")
            }
            Refusal::SkipsAVersion { version, held } => write!(
                f,
                "{word}: version {version} after {held}; each version is taken in turn"
            ),
            Refusal::BelowOldThreshold {
                signed,
                threshold,
                held,
                bad,
            } => write!(
                f,
                "{word}: {signed} of the {threshold} root signatures version {held} needs{}",
                ids(bad)
            ),
            Refusal::BelowOwnThreshold {
                signed,
                threshold,
                bad,
            } => write!(
                f,
                "{word}: {signed} of the {threshold} signatures of its own roots{}",
                ids(bad)
            ),
            Refusal::Expired { at } => write!(f, "{word}: at {at} (Unix seconds)"),
            Refusal::WaitsForClock => write!(
                f,
                "{word}: it expires, and the clock is not set yet; judged once it is"
            ),
            Refusal::NoRootKey => write!(
                f,
                "{word}: the firmware keyring names no root key, so no update can be taken"
            ),
        }
    }
}

/// Reads a trust document (size, syntax and fields: "malformed", "unsupported version").
pub(crate) fn parse(bytes: &[u8]) -> Result<Document, Refusal> {
    let malformed = |line: usize, why: String| Refusal::Malformed { line, why };
    if bytes.len() > MAX_DOCUMENT {
        return Err(malformed(
            0,
            format!(
                "{} bytes; a trust document is at most {MAX_DOCUMENT}",
                bytes.len()
            ),
        ));
    }
    if let Some(at) = bytes.iter().position(|b| *b > 0x7f) {
        let line = 1 + bytes[..at].iter().filter(|b| **b == b'\n').count();
        return Err(malformed(
            line,
            format!("byte {:#04x} is not ASCII", bytes[at]),
        ));
    }
    if bytes.last().is_some_and(|b| *b != b'\n') {
        let line = 1 + bytes.iter().filter(|b| **b == b'\n').count();
        return Err(malformed(line, "the last line does not end with LF".into()));
    }
    // ASCII: UTF-8.
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        // A comment takes the spaces before it with it.
        if let Some(c) = raw.chars().find(|c| c.is_ascii_control()) {
            return Err(malformed(number, format!("control character {c:?}")));
        }
        let content = match raw.split_once('#') {
            Some((content, _)) => content.trim_end_matches(' '),
            None => raw,
        };
        if content.is_empty() {
            continue;
        }
        if content.ends_with(' ') || content.starts_with(' ') || content.contains("  ") {
            return Err(malformed(
                number,
                "words are separated by single spaces".into(),
            ));
        }
        lines.push((number, content.split(' ').collect::<Vec<&str>>()));
    }
    let mut lines = lines.into_iter().peekable();
    let mut expect = |word: &str| -> Result<(usize, Vec<&str>), Refusal> {
        match lines.next() {
            Some((n, words)) if words[0] == word => Ok((n, words)),
            Some((n, words)) => Err(malformed(
                n,
                format!("expected the {word} line, found {:?}", words[0]),
            )),
            None => Err(malformed(0, format!("no {word} line"))),
        }
    };
    let (n, header) = expect("license-agent-trust")?;
    match header.as_slice() {
        [_, "1"] => {}
        [_, other] => {
            return Err(Refusal::UnsupportedVersion {
                found: (*other).to_string(),
            })
        }
        _ => return Err(malformed(n, "expected \"license-agent-trust 1\"".into())),
    }
    let (n, words) = expect("version")?;
    let version = match words.as_slice() {
        [_, v] => decimal(v)
            .filter(|v| (1..=u64::from(u32::MAX)).contains(v))
            .map(|v| v as u32)
            .ok_or_else(|| {
                malformed(
                    n,
                    format!("version {v:?}: 1 to 4294967295, no leading zero"),
                )
            })?,
        _ => return Err(malformed(n, "expected \"version <N>\"".into())),
    };
    let (n, words) = expect("expires")?;
    let expires = match words.as_slice() {
        [_, "never"] => None,
        [_, at] => Some(instant(at).ok_or_else(|| {
            malformed(n, format!("expires {at:?}: YYYY-MM-DDTHH:MM:SSZ or never"))
        })?),
        _ => return Err(malformed(n, "expected \"expires <instant|never>\"".into())),
    };
    let (n, words) = expect("root-threshold")?;
    let (threshold_line, threshold) = match words.as_slice() {
        [_, t] => (
            n,
            decimal(t).ok_or_else(|| malformed(n, format!("root-threshold {t:?}")))?,
        ),
        _ => return Err(malformed(n, "expected \"root-threshold <T>\"".into())),
    };
    let mut all: Vec<Key> = Vec::new();
    let mut key_lines = |kind: &str, max: usize| -> Result<Vec<Key>, Refusal> {
        let mut keys = Vec::new();
        while let Some((n, words)) = lines.next_if(|(_, w)| w[0] == kind) {
            let key = match words.as_slice() {
                [_, "ed25519", hex] => key_hex(hex)
                    .ok_or_else(|| malformed(n, format!("{hex:?} is not 64 hex digits")))?,
                _ => {
                    return Err(malformed(
                        n,
                        format!("expected \"{kind} ed25519 <64 hex digits>\""),
                    ))
                }
            };
            if all.contains(&key) {
                return Err(malformed(n, "a key named twice".into()));
            }
            if all.iter().any(|k| key_id_of(k) == key_id_of(&key)) {
                return Err(malformed(
                    n,
                    format!("two keys with id {}", key_id_of(&key)),
                ));
            }
            if keys.len() == max {
                return Err(malformed(n, format!("more than {max} {kind} keys")));
            }
            all.push(key);
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(malformed(0, format!("no {kind} key")));
        }
        Ok(keys)
    };
    let mut roots = key_lines("root", MAX_ROOTS)?;
    let mut licenses = key_lines("license", MAX_LICENSE_KEYS)?;
    if threshold == 0 || threshold > roots.len() as u64 {
        return Err(malformed(
            threshold_line,
            format!(
                "root-threshold {threshold}: 1 to the {} root keys",
                roots.len()
            ),
        ));
    }
    let mut signatures: Vec<(KeyId, [u8; 64])> = Vec::new();
    for (n, words) in lines {
        let (id, signature) = match words.as_slice() {
            ["signature", id, sig] => (key_id(id), signature_hex(sig)),
            [word, ..] => return Err(malformed(n, format!("{word:?}: not a line of this place"))),
            [] => continue,
        };
        let (Some(id), Some(signature)) = (id, signature) else {
            return Err(malformed(
                n,
                "expected \"signature <8 hex digits> <128 hex digits>\"".into(),
            ));
        };
        if signatures.iter().any(|(seen, _)| *seen == id) {
            return Err(malformed(
                n,
                format!("a second signature line for key {id}"),
            ));
        }
        if signatures.len() == MAX_SIGNATURES {
            return Err(malformed(
                n,
                format!("more than {MAX_SIGNATURES} signature lines"),
            ));
        }
        signatures.push((id, signature));
    }
    roots.sort_unstable();
    licenses.sort_unstable();
    Ok(Document {
        trust: Trust {
            version,
            expires,
            threshold: threshold as usize,
            roots,
            licenses,
        },
        signatures,
    })
}

/// Judges the document `bytes` against the trust `held`, at the judged instant `now`
/// (`None`: the clock is not judged): the new trust, or the first rule it breaks.
pub(crate) fn judge(held: &Trust, bytes: &[u8], now: Option<UnixTime>) -> Result<Trust, Refusal> {
    let trust = follows(held, bytes)?;
    if let Some(at) = trust.expires {
        match now {
            None => return Err(Refusal::WaitsForClock),
            Some(now) if at <= now => return Err(Refusal::Expired { at }),
            Some(_) => {}
        }
    }
    Ok(trust)
}

/// The rules but the expiry (1 to 4 of "What makes an update valid"): how a document
/// taken before is checked again at start (`docs/trust-update.md`, "Rollback").
pub(crate) fn follows(held: &Trust, bytes: &[u8]) -> Result<Trust, Refusal> {
    if held.roots.is_empty() {
        return Err(Refusal::NoRootKey);
    }
    let document = parse(bytes)?;
    let new = &document.trust;
    let next = held.version.checked_add(1);
    if new.version <= held.version {
        return Err(Refusal::NotNewer {
            version: new.version,
            held: held.version,
        });
    }
    if Some(new.version) != next {
        return Err(Refusal::SkipsAVersion {
            version: new.version,
            held: held.version,
        });
    }
    let message = new.signed_message();
    let (signed, bad) = count(&held.roots, &document.signatures, &message);
    if signed < held.threshold {
        return Err(Refusal::BelowOldThreshold {
            signed,
            threshold: held.threshold,
            held: held.version,
            bad,
        });
    }
    let (signed, bad) = count(&new.roots, &document.signatures, &message);
    if signed < new.threshold {
        return Err(Refusal::BelowOwnThreshold {
            signed,
            threshold: new.threshold,
            bad,
        });
    }
    Ok(document.trust)
}

/// How many of `keys` signed `message` (each once), and the ids whose line did not
/// verify.
fn count(keys: &[Key], signatures: &[(KeyId, [u8; 64])], message: &[u8]) -> (usize, Vec<KeyId>) {
    let mut signed = 0;
    let mut bad = Vec::new();
    for key in keys {
        let id = key_id_of(key);
        let Some((_, signature)) = signatures.iter().find(|(s, _)| *s == id) else {
            continue;
        };
        if UnparsedPublicKey::new(&ED25519, key)
            .verify(message, signature)
            .is_ok()
        {
            signed += 1;
        } else {
            bad.push(id);
        }
    }
    (signed, bad)
}

/// A decimal without a leading zero (`0` itself is fine), at most 20 digits.
fn decimal(text: &str) -> Option<u64> {
    let plain = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as Unix seconds.
fn instant(text: &str) -> Option<UnixTime> {
    let b = text.as_bytes();
    let shape = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    // Seconds 00 to 59 (no leap second), within the 32-bit range of the phones' clocks.
    if !shape || &text[17..19] > "59" {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(&text[..19], "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
        .filter(|t| (0..=i64::from(u32::MAX)).contains(t))
}

fn key_hex(text: &str) -> Option<Key> {
    let mut key = [0u8; PUBLIC_KEY_LEN];
    (text.len() == 2 * PUBLIC_KEY_LEN && hex::decode_to_slice(text, &mut key).is_ok())
        .then_some(key)
}

fn key_id(text: &str) -> Option<KeyId> {
    let mut id = [0u8; 4];
    (text.len() == 8 && hex::decode_to_slice(text, &mut id).is_ok()).then_some(KeyId(id))
}

fn signature_hex(text: &str) -> Option<[u8; 64]> {
    let mut signature = [0u8; 64];
    (text.len() == 128 && hex::decode_to_slice(text, &mut signature).is_ok()).then_some(signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    /// A key pair from a label (deterministic).
    fn pair(label: &str) -> Ed25519KeyPair {
        let seed = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
        Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).unwrap()
    }

    fn public(label: &str) -> Key {
        pair(label).public_key().as_ref().try_into().unwrap()
    }

    fn sorted(labels: &[&str]) -> Vec<Key> {
        let mut keys: Vec<Key> = labels.iter().map(|l| public(l)).collect();
        keys.sort_unstable();
        keys
    }

    fn trust(version: u32, threshold: usize, roots: &[&str], licenses: &[&str]) -> Trust {
        Trust {
            version,
            expires: None,
            threshold,
            roots: sorted(roots),
            licenses: sorted(licenses),
        }
    }

    /// The document of `t`, signed by `signers` (labels), as an issuer writes it.
    fn document(t: &Trust, signers: &[&str]) -> String {
        let mut out = format!(
            "# a trust document\nlicense-agent-trust 1\nversion {}\nexpires {}\nroot-threshold {}\n",
            t.version,
            t.expires.map_or("never".to_string(), |at| {
                chrono::DateTime::from_timestamp(at, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            }),
            t.threshold
        );
        for key in &t.roots {
            out.push_str(&format!("root ed25519 {}\n", hex::encode(key)));
        }
        for key in &t.licenses {
            out.push_str(&format!("license ed25519 {}\n", hex::encode(key)));
        }
        let message = t.signed_message();
        for signer in signers {
            let pair = pair(signer);
            let id = key_id_of(&public(signer));
            out.push_str(&format!(
                "signature {id} {}\n",
                hex::encode(pair.sign(&message).as_ref())
            ));
        }
        out
    }

    fn held() -> Trust {
        trust(3, 2, &["r1", "r2", "r3"], &["l1"])
    }

    #[test]
    fn a_rotation_signed_by_the_old_and_the_new_roots_is_taken() {
        // A new license key: the same roots sign, once each, for both thresholds.
        let next = trust(4, 2, &["r1", "r2", "r3"], &["l2"]);
        let doc = document(&next, &["r1", "r3"]);
        assert_eq!(judge(&held(), doc.as_bytes(), Some(0)), Ok(next.clone()));
        // Another text of the same document: comments, order, case, CRLF.
        let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
        lines.swap(5, 6);
        let other = (lines.join("\r\n") + "\r\n")
            .to_uppercase()
            .replace("LICENSE-AGENT-TRUST", "license-agent-trust")
            .replace("VERSION", "version")
            .replace("EXPIRES NEVER", "expires never")
            .replace("ROOT-THRESHOLD", "root-threshold")
            .replace("ROOT ED25519", "root ed25519")
            .replace("LICENSE ED25519", "license ed25519")
            .replace("SIGNATURE", "signature")
            .replace("# A TRUST DOCUMENT", "# another comment");
        assert_eq!(judge(&held(), other.as_bytes(), Some(0)), Ok(next));
        // A root rotation: two of the old (kept r3 counts in both) and two of the new.
        let rotated = trust(4, 2, &["r3", "r4", "r5"], &["l1"]);
        let doc = document(&rotated, &["r1", "r3", "r4"]);
        assert_eq!(judge(&held(), doc.as_bytes(), None), Ok(rotated));
    }

    #[test]
    fn thresholds_count_each_root_once_and_only_roots() {
        let next = trust(4, 2, &["r1", "r4", "r5"], &["l1"]);
        let verdict = |signers: &[&str]| {
            judge(&held(), document(&next, signers).as_bytes(), Some(0)).map_err(|r| r.to_string())
        };
        // Old roots only: its own threshold is not met (r1 counts once there).
        assert!(verdict(&["r1", "r2"])
            .unwrap_err()
            .starts_with("below its own threshold: 1 of the 2"));
        // New roots only.
        assert!(verdict(&["r4", "r5"])
            .unwrap_err()
            .starts_with("below the old threshold: 0 of the 2"));
        // A license key is no root.
        assert!(verdict(&["l1", "r1", "r4"])
            .unwrap_err()
            .starts_with("below the old threshold: 1 of"));
        assert!(verdict(&["r1", "r2", "r4"]).is_ok());
        // The same key twice: malformed.
        let doc = document(&next, &["r1", "r1", "r4"]);
        assert!(matches!(
            judge(&held(), doc.as_bytes(), Some(0)),
            Err(Refusal::Malformed { why, .. }) if why.contains("second signature line")
        ));
        // A listed root whose signature does not verify: not counted, and named.
        let doc = document(&next, &["r1", "r2", "r4", "r5"]);
        let r2 = key_id_of(&public("r2"));
        let forged = doc
            .lines()
            .map(|l| {
                if l.starts_with(&format!("signature {r2}")) {
                    format!("signature {r2} {}", "00".repeat(64))
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        let why = judge(&held(), forged.as_bytes(), Some(0))
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("1 of the 2") && why.contains(&r2.to_string()),
            "{why}"
        );
    }

    #[test]
    fn versions_go_up_one_at_a_time() {
        for (version, verdict) in [(3, "not newer"), (2, "not newer"), (5, "skips a version")] {
            let t = trust(version, 2, &["r1", "r2", "r3"], &["l1"]);
            let refusal =
                judge(&held(), document(&t, &["r1", "r2"]).as_bytes(), Some(0)).unwrap_err();
            assert_eq!(refusal.verdict(), verdict, "{version}");
        }
        let top = Trust {
            version: u32::MAX,
            ..held()
        };
        let t = trust(u32::MAX, 2, &["r1", "r2", "r3"], &["l1"]);
        assert_eq!(
            judge(&top, document(&t, &["r1", "r2"]).as_bytes(), Some(0))
                .unwrap_err()
                .verdict(),
            "not newer"
        );
    }

    #[test]
    fn an_expiry_is_judged_on_the_judged_clock() {
        let mut t = trust(4, 2, &["r1", "r2", "r3"], &["l1"]);
        t.expires = Some(2_000_000_000);
        let doc = document(&t, &["r1", "r2"]);
        assert_eq!(
            judge(&held(), doc.as_bytes(), Some(1_999_999_999)),
            Ok(t.clone())
        );
        assert_eq!(
            judge(&held(), doc.as_bytes(), Some(2_000_000_000)),
            Err(Refusal::Expired { at: 2_000_000_000 })
        );
        assert_eq!(
            judge(&held(), doc.as_bytes(), None),
            Err(Refusal::WaitsForClock)
        );
        // A changed expiry breaks the signatures.
        let later = doc.replace("2033-05-18T03:33:20Z", "2099-01-01T00:00:00Z");
        assert_ne!(later, doc);
        assert_eq!(
            judge(&held(), later.as_bytes(), Some(0))
                .unwrap_err()
                .verdict(),
            "below the old threshold"
        );
    }

    #[test]
    fn a_held_trust_without_roots_takes_no_update() {
        let firmware = trust(0, 0, &[], &["l1"]);
        let t = trust(1, 1, &["r1"], &["l1"]);
        assert_eq!(
            judge(&firmware, document(&t, &["r1"]).as_bytes(), Some(0)),
            Err(Refusal::NoRootKey)
        );
    }

    #[test]
    fn what_breaks_the_syntax_is_malformed_with_its_line() {
        let good = document(&trust(4, 2, &["r1", "r2", "r3"], &["l1"]), &["r1", "r2"]);
        assert!(parse(good.as_bytes()).is_ok());
        let r1 = hex::encode(public("r1"));
        let l1 = hex::encode(public("l1"));
        for (bad, says) in [
            (good.replace("version 4", "version\t4"), "control character"),
            (good.replace("version 4", "version 4 "), "single spaces"),
            (good.replace("version 4", "version  4"), "single spaces"),
            (good.replace("version 4", "version 04"), "no leading zero"),
            (good.replace("version 4", "version 0"), "1 to 4294967295"),
            (
                good.replace("version 4", "version 4294967296"),
                "1 to 4294967295",
            ),
            (
                good.replace("expires never", "expires 2030-01-01T00:00:00"),
                "YYYY-MM-DD",
            ),
            (
                good.replace("expires never", "expires 2030-01-01T00:00:00.5Z"),
                "YYYY-MM-DD",
            ),
            (
                good.replace("expires never", "expires 2030-02-30T00:00:00Z"),
                "YYYY-MM-DD",
            ),
            (
                good.replace("root-threshold 2", "root-threshold 0"),
                "1 to the 3",
            ),
            (
                good.replace("root-threshold 2", "root-threshold 4"),
                "1 to the 3",
            ),
            (good.replace("version 4\n", ""), "expected the version line"),
            (
                good.replace(
                    &format!("license ed25519 {l1}"),
                    &format!("license ed25519 {r1}"),
                ),
                "twice",
            ),
            (
                good.replace("version 4\nexpires never", "expires never\nversion 4"),
                "expected the version",
            ),
            (
                good.replace("root ed25519", "root rsa"),
                "expected \"root ed25519",
            ),
            (format!("{good}trailer\n"), "not a line of this place"),
            (
                good.replace("version 4", "version 4\r5"),
                "control character",
            ),
            (good.replace("# a trust", "# caf\u{e9}"), "not ASCII"),
            (
                format!("{good}#{}\n", "x".repeat(MAX_DOCUMENT)),
                "at most 16384",
            ),
        ] {
            match parse(bad.as_bytes()) {
                Err(Refusal::Malformed { why, .. }) => assert!(why.contains(says), "{says}: {why}"),
                other => panic!("{says}: {other:?}"),
            }
        }
        assert_eq!(
            parse(
                good.replace("license-agent-trust 1", "license-agent-trust 2")
                    .as_bytes()
            ),
            Err(Refusal::UnsupportedVersion { found: "2".into() })
        );
        let many_roots: Vec<String> = (0..17).map(|i| format!("x{i}")).collect();
        let labels: Vec<&str> = many_roots.iter().map(String::as_str).collect();
        let mut t = trust(4, 2, &labels[..16], &["l1"]);
        t.roots.push(public("x16"));
        let doc = document(&t, &[]);
        assert!(parse(doc.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("more than 16 root keys"));
    }

    #[test]
    fn the_firmware_keyring_is_the_first_trust() {
        let text = format!(
            "version 7\nroot-threshold 1\nroot ed25519 {} the ceremony's first\ned25519 {} licenses\n",
            hex::encode(public("r1")),
            hex::encode(public("l1"))
        );
        let keyring = super::super::Keyring::parse(&text).unwrap();
        assert_eq!(
            keyring.trust(),
            Trust {
                version: 7,
                ..trust(7, 1, &["r1"], &["l1"])
            }
        );
        // A root key signs no license.
        assert!(keyring.get(key_id_of(&public("r1"))).is_none());
        let next = trust(8, 1, &["r2"], &["l2"]);
        assert_eq!(
            judge(
                &keyring.trust(),
                document(&next, &["r1", "r2"]).as_bytes(),
                None
            ),
            Ok(next)
        );
        for (bad, says) in [
            (
                text.replace("root-threshold 1\n", ""),
                "without a root-threshold",
            ),
            (
                text.replace("root-threshold 1", "root-threshold 2"),
                "1 to the 1 root",
            ),
            (format!("{text}version 8\n"), "a second version"),
            (
                text.replace(&hex::encode(public("l1")), &hex::encode(public("r1"))),
                "both a root key and a license key",
            ),
        ] {
            let why = super::super::Keyring::parse(&bad).unwrap_err().to_string();
            assert!(why.contains(says), "{says}: {why}");
        }
    }

    /// The canonical words of a trust, as the vectors' `expected` files write them.
    fn words(t: &Trust) -> String {
        let mut out = format!(
            "version {}\nexpires {}\nroot-threshold {}\n",
            t.version,
            t.expires.map_or("never".to_string(), |at| at.to_string()),
            t.threshold
        );
        for key in &t.roots {
            out.push_str(&format!("root {}\n", hex::encode(key)));
        }
        for key in &t.licenses {
            out.push_str(&format!("license {}\n", hex::encode(key)));
        }
        out
    }

    fn vectors() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trust-vectors")
    }

    fn held_of(dir: &std::path::Path, name: &str) -> Trust {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        super::super::Keyring::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .trust()
    }

    fn now_of(dir: &std::path::Path) -> UnixTime {
        std::fs::read_to_string(dir.join("now"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Every case of the independent implementation (`tests/trust-vectors/`, made from
    /// the spec's text in Python): the verdict its folder's name announces, and for a
    /// document taken, the trust its `expected` file writes.
    #[test]
    fn the_independent_vectors_get_the_verdicts_their_names_announce() {
        const VERDICTS: [&str; 9] = [
            "taken",
            "malformed",
            "unsupported-version",
            "not-newer",
            "skips-a-version",
            "below-the-old-threshold",
            "below-its-own-threshold",
            "expired",
            "no-root-key",
        ];
        let mut dirs: Vec<_> = std::fs::read_dir(vectors().join("cases"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        assert!(dirs.len() >= 90, "{} cases", dirs.len());
        let mut wrong = Vec::new();
        for dir in &dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let announced = VERDICTS
                .iter()
                .filter(|v| name.starts_with(&format!("{v}-")))
                .max_by_key(|v| v.len())
                .unwrap_or_else(|| panic!("{name}: no verdict in the name"));
            let held = held_of(dir, "held.keyring");
            let bytes = std::fs::read(dir.join("update.cfg")).unwrap();
            let got = judge(&held, &bytes, Some(now_of(dir)));
            let verdict = match &got {
                Ok(_) => "taken".to_string(),
                Err(r) => r.verdict().replace(' ', "-"),
            };
            if verdict != *announced {
                wrong.push(format!(
                    "{name}: {}",
                    got.as_ref()
                        .err()
                        .map_or("taken".into(), ToString::to_string)
                ));
                continue;
            }
            if let Ok(trust) = got {
                let expected = std::fs::read_to_string(dir.join("expected")).unwrap();
                assert_eq!(words(&trust), expected, "{name}");
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {}:\n{}",
            wrong.len(),
            dirs.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn the_independent_chain_is_taken_version_by_version() {
        let dir = vectors().join("chain");
        let mut trust = held_of(&dir, "firmware.keyring");
        for n in 1..=4 {
            let bytes = std::fs::read(dir.join(format!("trust-{n}.cfg"))).unwrap();
            trust =
                judge(&trust, &bytes, Some(now_of(&dir))).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        let expected = std::fs::read_to_string(dir.join("expected")).unwrap();
        assert_eq!(words(&trust), expected);
    }
}
