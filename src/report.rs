//! The license status report of one phone (`<mac>-license-status.json` once uploaded;
//! `license-agent status --report` prints it), for its service
//! provider's fleet view (`docs/report-schema.md`, schema [`SCHEMA`]): built from the
//! status ([`StatusJson`]) as data, bounded in size (lists cut, texts cut), and without
//! secrets (server URLs are kept without their user info, which the configuration takes
//! out; no password, key or path to one is in a status).
//!
//! Each license carries the fingerprint of its signed message, so the same site license
//! held by a thousand phones is one license to the fleet view, and its signed content
//! (`signed`: the canonical parts of the message), so the fleet view can rebuild the
//! message, hash it to the fingerprint and check the signature against its keyring. The
//! licenses the phone dropped lately (`dropped`: ended, or replaced) come with the same.
//! The feature tables carried are bounded over the whole report ([`MAX_SIGNED_HEX`]): a
//! license past the budget carries none (`signed: null`), never a cut one.

use serde::{Deserialize, Serialize};

use crate::engine::clock::ClockVerdict;
use crate::engine::reboot::Cause;
use crate::engine::{Role, Status, Verdict};
use crate::format::Kind;
use crate::status::{
    ConfigSetAsideJson, DaemonJson, EventJson, FileFetchJson, GrantJson, InvalidJson, RebootJson,
    StatusJson, TrustJson, WaitingFor,
};
use crate::storage::dropped::Reason as DropReason;
pub(crate) use crate::storage::SignedParts as Signed;

/// The schema's name and version: a reader refuses a major version it does not know.
pub(crate) const SCHEMA: &str = "license-agent-report/1";

/// Bounds: at most this many licenses, features (a license file's most records),
/// refusals (the newest) and files set aside, and this many characters in any text
/// taken from a status.
pub(crate) const MAX_LICENSES: usize = 32;
/// The most feature records kept over all licenses, held then dropped: those of one
/// license file at its largest (256), as a phone holds a few licenses of a few records.
/// (512 before the signed tables came: with them at their budget too, the worst report
/// would pass 256 KiB.)
pub(crate) const MAX_GRANTS: usize = crate::format::features::MAX_RECORDS;
/// The most hex digits of feature tables in `signed` over all licenses, held then
/// dropped: 64 KiB, eight tables of the largest (256 records, 8 KiB of hex each).
pub(crate) const MAX_SIGNED_HEX: usize = 64 * 1024;
/// The most characters of each text of a dropped license but its grants (the longest is
/// a fingerprint, 64 hex digits; a date is at most 25 characters).
pub(crate) const MAX_FIELD: usize = 64;
/// The most licenses dropped reported (the agent keeps no more records).
pub(crate) const MAX_DROPPED: usize = crate::storage::dropped::MAX_RECORDS;
pub(crate) const MAX_FEATURES: usize = crate::format::features::MAX_RECORDS;
pub(crate) const MAX_REFUSALS: usize = 16;
pub(crate) const MAX_SET_ASIDE: usize = 16;
/// The configuration's values set aside in a report, at most.
pub(crate) const MAX_CONFIG_SET_ASIDE: usize = 8;
pub(crate) const MAX_TEXT: usize = 256;
/// The most characters of a feature name in `configured` and `booted` (a name is at
/// most `feature-XXXX` or the spec's longest, `conference-management`).
pub(crate) const MAX_NAME: usize = 32;

/// The board this binary was built for (`scripts/build.sh BOARD` says), or `unknown`.
pub(crate) const BOARD: &str = match option_env!("LICENSE_AGENT_BOARD") {
    Some(board) => board,
    None => "unknown",
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) schema: String,
    pub(crate) mac: String,
    pub(crate) site_serial: Option<String>,
    pub(crate) agent: Agent,
    /// When the report was made (the phone's clock, RFC 3339).
    pub(crate) reported_at: String,
    pub(crate) clock: ClockVerdict,
    /// The instant the licenses were judged at (`None` while unsynced).
    pub(crate) evaluated_at: Option<String>,
    pub(crate) licenses: Vec<License>,
    pub(crate) features: Vec<Feature>,
    /// The features the phone's configuration enables (`enabled_features`), by name, at
    /// most [`MAX_FEATURES`]; `None` in a report of an agent that did not say.
    #[serde(default)]
    pub(crate) configured: Option<Vec<String>>,
    /// The features the phone booted with: the set its firmware applied at boot and runs
    /// with until the next reboot (the running daemon's; `None` when not known: no
    /// daemon, or before the first boot cycle with a sane clock). At most
    /// [`MAX_FEATURES`].
    #[serde(default)]
    pub(crate) booted: Option<Vec<String>>,
    /// Licenses refused lately, oldest first (at most [`MAX_REFUSALS`]).
    pub(crate) refusals: Vec<Refusal>,
    /// Stored files that do not verify any more, set aside (at most [`MAX_SET_ASIDE`]).
    pub(crate) set_aside: Vec<InvalidJson>,
    /// A reboot the agent needs and has not had yet.
    pub(crate) reboot: Option<Reboot>,
    /// The last fetch of the license files (only from the running daemon).
    pub(crate) last_fetch: Option<LastFetch>,
    /// The licenses the phone dropped from its store lately, oldest drop first (at most
    /// [`MAX_DROPPED`]); `None` in a report of an agent that did not say.
    #[serde(default)]
    pub(crate) dropped: Option<Vec<Dropped>>,
    /// The trust the phone holds, the last update judged, and the licenses an update
    /// set aside (`docs/trust-update.md`); `None` from an agent before trust updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trust: Option<TrustJson>,
    /// The configuration's bad values the running daemon set aside, each key read as if
    /// absent (at most [`MAX_CONFIG_SET_ASIDE`]); empty from an agent that did not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) config_set_aside: Vec<ConfigSetAsideJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Agent {
    pub(crate) version: String,
    /// The board the binary was built for (`scripts/build.sh BOARD`), or `unknown`.
    pub(crate) board: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct License {
    /// SHA-256 of the signed message, hex: the same license on any phone.
    pub(crate) fingerprint: String,
    pub(crate) kind: Kind,
    pub(crate) serial: String,
    pub(crate) key: String,
    /// `None` (`unknown`) while unsynced.
    #[serde(with = "crate::words::or_unknown")]
    pub(crate) role: Option<Role>,
    /// `None` while unsynced.
    pub(crate) status: Option<Status>,
    pub(crate) start: String,
    /// RFC 3339, or `never`.
    pub(crate) end: String,
    /// What it grants, record by record (at most [`MAX_GRANTS`] over all licenses).
    pub(crate) grants: Vec<GrantJson>,
    /// Its signed content: `None` past [`MAX_SIGNED_HEX`], or from an agent that did not
    /// say.
    #[serde(default)]
    pub(crate) signed: Option<Signed>,
}

/// A license the phone dropped from its store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Dropped {
    pub(crate) fingerprint: String,
    pub(crate) kind: Kind,
    pub(crate) serial: String,
    pub(crate) key: String,
    pub(crate) start: String,
    /// RFC 3339, or `never`.
    pub(crate) end: String,
    /// What it granted (within [`MAX_GRANTS`], after the licenses held).
    pub(crate) grants: Vec<GrantJson>,
    /// As for a license held.
    #[serde(default)]
    pub(crate) signed: Option<Signed>,
    /// When it was dropped (the phone's clock, RFC 3339).
    pub(crate) dropped_at: String,
    pub(crate) reason: DropReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Feature {
    pub(crate) name: String,
    pub(crate) status: Option<Status>,
    /// In force on this phone (Active or Expiring Shortly): published.
    pub(crate) enabled: bool,
    pub(crate) end: String,
    /// The kind of license that governs it.
    pub(crate) source: Option<Kind>,
    pub(crate) serial: Option<String>,
    pub(crate) transaction: Option<String>,
    /// The Managed Device limit.
    pub(crate) limit: Option<u32>,
    /// The fingerprint of the license that governs it.
    pub(crate) fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Refusal {
    pub(crate) at: String,
    /// The file or license refused.
    pub(crate) subject: String,
    pub(crate) verdict: Verdict,
    pub(crate) detail: String,
    /// The key id, for a license signed with a key this phone does not trust (a stale
    /// keyring, or a forgery).
    pub(crate) key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reboot {
    pub(crate) causes: Vec<Cause>,
    /// What the request waits for, if known.
    pub(crate) waiting_for: Option<WaitingFor>,
    /// Until when, and in words (a reboot window: which, when it opens, this phone's
    /// point in it, the deadline); absent from agents before windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastFetch {
    pub(crate) at: Option<String>,
    pub(crate) files: Vec<FileFetchJson>,
}

/// The report of `status`, made at `reported_at`, by an agent built for `board`. The
/// status is taken, so what fits is moved into the report, not copied (the daemon makes
/// one at every event).
pub(crate) fn build(status: StatusJson, reported_at: String, board: &str) -> Report {
    let StatusJson {
        mac,
        site_serial,
        clock,
        evaluated_at,
        licenses,
        features,
        configured,
        set_aside,
        events,
        dropped,
        trust,
        daemon,
        ..
    } = status;
    // The status lists its events newest first; the report, oldest first.
    let refusals: Vec<Refusal> = events
        .into_iter()
        .rev()
        .filter(|e| e.what == "refused")
        .map(refusal)
        .collect();
    let skip = refusals.len().saturating_sub(MAX_REFUSALS);
    let mut grants_left = MAX_GRANTS;
    let mut hex_left = MAX_SIGNED_HEX;
    let (booted, reboot, last_fetch, config_set_aside) = match daemon {
        Some(d) => {
            let DaemonJson {
                last_fetch,
                files,
                reboot,
                config_set_aside,
                ..
            } = d;
            let config_set_aside = config_set_aside
                .into_iter()
                .take(MAX_CONFIG_SET_ASIDE)
                .map(|c| ConfigSetAsideJson {
                    key: cut_to(c.key, MAX_FIELD),
                    detail: cut(c.detail),
                })
                .collect();
            let RebootJson {
                pending,
                booted,
                needs,
                waiting_for,
                until,
                detail,
                ..
            } = reboot;
            let reboot = pending.then(|| Reboot {
                causes: needs.into_iter().map(|n| n.cause).collect(),
                waiting_for,
                until: until.map(cut),
                detail: detail.map(cut),
            });
            let last_fetch = LastFetch {
                at: last_fetch.map(cut),
                files: files
                    .into_iter()
                    // The license files: the trust documents are in `trust`.
                    .filter(|f| !f.file.starts_with("trust-"))
                    .take(2)
                    .map(|f| FileFetchJson {
                        file: cut(f.file),
                        at: cut(f.at),
                        outcome: f.outcome,
                        detail: cut(f.detail),
                        server: f.server.map(cut),
                        transport: f.transport.map(cut),
                    })
                    .collect(),
            };
            (
                booted.map(names),
                reboot,
                Some(last_fetch),
                config_set_aside,
            )
        }
        None => (None, None, None, Vec::new()),
    };
    Report {
        schema: SCHEMA.into(),
        mac: cut(mac),
        site_serial: site_serial.map(cut),
        agent: Agent {
            version: env!("CARGO_PKG_VERSION").into(),
            board: cut(board.to_string()),
        },
        reported_at,
        clock,
        evaluated_at,
        licenses: licenses
            .into_iter()
            .take(MAX_LICENSES)
            .map(|l| License {
                fingerprint: cut(l.fingerprint),
                kind: l.kind,
                serial: cut(l.serial),
                key: cut(l.key),
                role: l.role,
                status: l.status,
                start: cut(l.start),
                end: cut(l.end),
                grants: grants(l.grants, &mut grants_left),
                signed: signed(l.signed, &mut hex_left),
            })
            .collect(),
        features: features
            .into_iter()
            .take(MAX_FEATURES)
            .map(|f| Feature {
                name: cut(f.name),
                status: f.status,
                enabled: f.enabled,
                end: cut(f.end),
                source: f.source,
                serial: f.serial.map(cut),
                transaction: f.transaction.map(cut),
                limit: f.limit,
                fingerprint: f.fingerprint.map(cut),
            })
            .collect(),
        configured: Some(names(configured)),
        booted,
        refusals: refusals.into_iter().skip(skip).collect(),
        set_aside: set_aside
            .into_iter()
            .take(MAX_SET_ASIDE)
            .map(|i| InvalidJson {
                file: cut(i.file),
                reason: cut(i.reason),
            })
            .collect(),
        reboot,
        last_fetch,
        // After the licenses held: they take the budgets first.
        dropped: dropped.map(|list| {
            list.into_iter()
                .take(MAX_DROPPED)
                .map(|d| {
                    let field = |text: String| cut_to(text, MAX_FIELD);
                    Dropped {
                        fingerprint: field(d.fingerprint),
                        kind: d.kind,
                        serial: field(d.serial),
                        key: field(d.key),
                        start: field(d.start),
                        end: field(d.end),
                        grants: grants(d.grants, &mut grants_left),
                        signed: signed(d.signed, &mut hex_left),
                        dropped_at: field(d.dropped_at),
                        reason: d.reason,
                    }
                })
                .collect()
        }),
        trust: trust.map(bounded_trust),
        config_set_aside,
    }
}

/// The trust section with its lists and texts bounded (the status's own are bounded
/// by what the agent keeps; the report's sizes are the schema's).
fn bounded_trust(mut t: TrustJson) -> TrustJson {
    let field = |text: String| cut_to(text, MAX_FIELD);
    t.license_keys = t.license_keys.into_iter().take(64).map(field).collect();
    t.expires = field(t.expires);
    t.updates = cut(t.updates);
    t.notes = t.notes.into_iter().take(8).map(cut).collect();
    t.last_update = t.last_update.map(|mut l| {
        l.verdict = field(l.verdict);
        l.detail = cut(l.detail);
        l.at = field(l.at);
        l
    });
    t.set_aside = t
        .set_aside
        .into_iter()
        .take(crate::storage::meta::MAX_TRUST_SET_ASIDE)
        .map(|mut s| {
            s.at = field(s.at);
            s.license = field(s.license);
            s.key = field(s.key);
            s.reason = cut(s.reason);
            s.file = s.file.map(cut);
            s
        })
        .collect();
    t
}

/// The grants of one license, as many as `left` allows (and taken from it).
fn grants(mut list: Vec<GrantJson>, left: &mut usize) -> Vec<GrantJson> {
    let take = list.len().min(*left);
    *left -= take;
    list.truncate(take);
    list.into_iter()
        .map(|g| GrantJson {
            name: cut(g.name),
            transaction: cut(g.transaction),
            start: cut(g.start),
            end: cut(g.end),
            limit: g.limit,
        })
        .collect()
}

/// The signed content of one license when its feature table fits in what is `left` of
/// [`MAX_SIGNED_HEX`] (taken from it), and every part has its canonical shape; else
/// `None`: a hex string is never cut.
fn signed(parts: Option<Signed>, left: &mut usize) -> Option<Signed> {
    let parts = parts?;
    let hex = |text: &str, len: usize, upper: bool| {
        text.len() == len
            && text.bytes().all(|b| {
                b.is_ascii_digit()
                    || if upper {
                        (b'A'..=b'F').contains(&b)
                    } else {
                        (b'a'..=b'f').contains(&b)
                    }
            })
    };
    let record = 2 * crate::format::features::RECORD_LEN;
    let table = parts.features.len();
    let canonical = hex(&parts.serial, 12, false)
        && matches!(parts.description.as_str(), "Site" | "Phone")
        && hex(&parts.key, 8, true)
        && (record..=record * MAX_FEATURES).contains(&table)
        && table % record == 0
        && hex(&parts.features, table, false)
        && hex(&parts.signature, 128, false);
    if !canonical || table > *left {
        return None;
    }
    *left -= table;
    Some(parts)
}

/// A `refused` event, with the verdict and key it was recorded with (a refusal an older
/// agent recorded has neither: [`Verdict::Refused`], its detail says why).
fn refusal(event: EventJson) -> Refusal {
    Refusal {
        at: cut(event.at),
        subject: cut(event.subject),
        verdict: event.verdict.unwrap_or(Verdict::Refused),
        detail: cut(event.detail),
        key: event.key.map(cut),
    }
}

/// Feature names, at most [`MAX_FEATURES`], each cut to [`MAX_NAME`] characters.
fn names(mut list: Vec<String>) -> Vec<String> {
    list.truncate(MAX_FEATURES);
    list.into_iter().map(|n| cut_to(n, MAX_NAME)).collect()
}

/// `text`, cut to [`MAX_TEXT`] characters.
fn cut(text: String) -> String {
    cut_to(text, MAX_TEXT)
}

/// `text`, cut to `max` characters (an ellipsis marks the cut).
fn cut_to(text: String, max: usize) -> String {
    // No more bytes than `max`, so no more characters: nothing to count.
    if text.len() <= max {
        return text;
    }
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests;
