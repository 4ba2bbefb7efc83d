//! What a report says about a license, believed only as far as it is proved. A report
//! is a claim: its license fields could say anything. Its `signed` content is the part
//! of the license file the vendor's signature covers, so it proves what the license is:
//! content whose SHA-256 is not the fingerprint claimed is a forgery (flagged, and the
//! license ignored for that report), and with a keyring (`license-fleet --keyring`) the
//! content must also carry a trusted key's signature. A license is then defined by its
//! content, never by the report's words about it.

use crate::engine::Verdict;
use crate::format::features::{self, FeatureEntry};
use crate::format::license::{KeyId, License, Serial};
use crate::format::{End, Kind};
use crate::phone::parse_instant;
use crate::status::fingerprint;
use crate::time::UnixTime;
use crate::trust::Keyring;

use super::slim::{Grant, Signed};

/// How far a license's definition is proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proof {
    /// Only the report's words: an agent before signed content, or content cut by the
    /// report's budget, seen without a keyring.
    Claimed,
    /// Content that hashes to the fingerprint (no keyring to check its signature).
    Hashed,
    /// Content that hashes to the fingerprint and verifies with the keyring.
    Verified,
}

/// One feature record of a license, as the fleet reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantDef {
    pub(crate) name: String,
    pub(crate) transaction: String,
    pub(crate) start: Option<UnixTime>,
    pub(crate) end: Option<End>,
    pub(crate) start_text: String,
    pub(crate) end_text: String,
    pub(crate) limit: u32,
}

/// A license as the fleet defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Def {
    pub(crate) kind: Kind,
    pub(crate) serial: String,
    pub(crate) key: String,
    pub(crate) grants: Vec<GrantDef>,
    pub(crate) proof: Proof,
    /// The signature verified, when [`Proof::Verified`]: the same content with this
    /// signature needs no second check (another signature is checked: the verdict on a
    /// report never depends on which reports were read before it).
    pub(crate) signature: Option<[u8; 64]>,
}

/// Why a report's license is not believed: `forged-license` (its content is not the
/// license it claims) or `unverified-license` (no content, or content the keyring does
/// not verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doubt {
    pub(crate) what: &'static str,
    pub(crate) detail: String,
}

/// What a report claims of a license besides its signed content.
pub(crate) struct Claim<'r, 'a> {
    pub(crate) fingerprint: &'r str,
    pub(crate) kind: Kind,
    pub(crate) serial: &'r str,
    pub(crate) key: &'r str,
    pub(crate) grants: &'r [Grant<'a>],
}

/// The license `claim` is, judged from its signed content. `verified` is the signature
/// an earlier report's content for this fingerprint verified with: the same one is not
/// checked again (matching the hash suffices).
pub(crate) fn judge(
    claim: &Claim<'_, '_>,
    signed: Option<&Signed<'_>>,
    keyring: Option<&Keyring>,
    verified: Option<&[u8; 64]>,
) -> Result<Def, Doubt> {
    let short = claim.fingerprint.get(..12).unwrap_or(claim.fingerprint);
    // No content: the report's word, which a keyring view believes only where another
    // report's content proves the fingerprint (judged once all are read).
    let Some(signed) = signed else {
        return Ok(claimed(claim));
    };
    let license = decode(signed).map_err(|why| Doubt {
        what: "forged-license",
        detail: format!("license {short}: its signed content does not read: {why}"),
    })?;
    if fingerprint(license.signed_message()) != claim.fingerprint {
        return Err(Doubt {
            what: "forged-license",
            detail: format!(
                "license {short} ({} {}): the signed content carried is another license \
                 (its SHA-256 is not the fingerprint claimed)",
                claim.kind, claim.serial
            ),
        });
    }
    let proof = match keyring {
        None => Proof::Hashed,
        Some(_) if verified == Some(license.signature()) => Proof::Verified,
        Some(keyring) => {
            keyring.verify(license.clone()).map_err(|e| Doubt {
                what: "unverified-license",
                detail: format!(
                    "license {short} ({} {}): {} ({e})",
                    license.kind(),
                    license.serial(),
                    Verdict::of(&e).id()
                ),
            })?;
            Proof::Verified
        }
    };
    Ok(defined(&license, proof))
}

/// The phone a report describes, as far as the binding of its licenses goes.
pub(crate) struct Phone<'r> {
    pub(crate) mac: &'r str,
    pub(crate) site_serial: Option<&'r str>,
}

/// `def` if a phone could hold it, as the agent's binding rules say
/// (`agent-rules.md`): a phone license is bound to the phone's MAC, a site license to
/// its configured site serial. A report holding another phone's license (a genuine
/// file, copied into a forged report) is not believed for it.
pub(crate) fn bound(def: Def, fingerprint: &str, phone: &Phone<'_>) -> Result<Def, Doubt> {
    let short = fingerprint.get(..12).unwrap_or(fingerprint);
    let other = match def.kind {
        Kind::Phone if def.serial != phone.mac => Some("the phone license of another phone"),
        Kind::Site if phone.site_serial.is_some_and(|s| s != def.serial) => {
            Some("the site license of another site")
        }
        _ => None,
    };
    match other {
        Some(what) => Err(Doubt {
            what: "forged-license",
            detail: format!(
                "license {short} ({} {}) is {what}: no agent holds one",
                def.kind, def.serial
            ),
        }),
        None => Ok(def),
    }
}

/// The license of `signed`, decoded as the agent decodes a file's fields (its
/// signature not checked yet).
fn decode(signed: &Signed<'_>) -> Result<License, String> {
    let serial = Serial::parse(signed.serial.as_str())?;
    let kind = match signed.description.as_str() {
        "Site" => Kind::Site,
        "Phone" => Kind::Phone,
        other => return Err(format!("description {other:?} is neither Site nor Phone")),
    };
    let mut key = [0u8; 4];
    hex::decode_to_slice(signed.key.as_str(), &mut key)
        .map_err(|_| format!("key {:?} is not 8 hex digits", signed.key.as_str()))?;
    let table_hex = signed.features.as_str();
    if table_hex.len() > features::MAX_RECORDS * features::RECORD_LEN * 2 {
        return Err("the feature table is longer than 256 records".into());
    }
    let table = hex::decode(table_hex).map_err(|_| "the feature table is not hex".to_string())?;
    let entries = features::decode_table(&table).map_err(|e| e.to_string())?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signed.signature.as_str(), &mut signature)
        .map_err(|_| "the signature is not 128 hex digits".to_string())?;
    Ok(License::from_parts(
        serial,
        kind,
        KeyId(key),
        entries,
        signature,
    ))
}

fn defined(license: &License, proof: Proof) -> Def {
    Def {
        kind: license.kind(),
        serial: license.serial().to_string(),
        key: license.key_id().to_string(),
        grants: license.features().iter().map(grant_of_entry).collect(),
        proof,
        signature: (proof == Proof::Verified).then(|| *license.signature()),
    }
}

fn grant_of_entry(e: &FeatureEntry) -> GrantDef {
    GrantDef {
        name: e.id.name(),
        transaction: e.transaction.name().into(),
        start: Some(i64::from(e.start)),
        end: Some(e.end),
        start_text: features::rfc3339(e.start),
        end_text: e.end.to_string(),
        limit: e.limit,
    }
}

/// The report's own words, for a view without a keyring of an agent without content.
fn claimed(claim: &Claim<'_, '_>) -> Def {
    Def {
        kind: claim.kind,
        serial: claim.serial.into(),
        key: claim.key.into(),
        grants: claim
            .grants
            .iter()
            .map(|g| GrantDef {
                name: g.name.to_string(),
                transaction: g.transaction.to_string(),
                start: parse_instant(g.start.as_str()).ok(),
                end: end_of(g.end.as_str()),
                start_text: g.start.to_string(),
                end_text: g.end.to_string(),
                limit: g.limit,
            })
            .collect(),
        proof: Proof::Claimed,
        signature: None,
    }
}

/// An RFC 3339 instant of a report, or `never`; `None` when it is neither.
pub(crate) fn end_of(text: &str) -> Option<End> {
    if text == "never" {
        return Some(End::Never);
    }
    let t = parse_instant(text).ok()?;
    u32::try_from(t).ok().map(End::At)
}
