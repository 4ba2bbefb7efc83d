//! The status report: what this phone holds and has in force, and why, as data. Built
//! from the store by `license-agent status`, or from live state by the daemon (which
//! adds what it alone knows: the last fetch and the next retry); JSON both ways.

use serde::{Deserialize, Serialize};

use crate::engine::clock::ClockVerdict;
use crate::engine::reboot::Cause;
use crate::engine::{evaluate, Evaluation, Role, Status, StoreId, Verdict};
use crate::format::features::rfc3339;
use crate::format::Kind;
use crate::format::{End, FeatureId};
use crate::phone::{read_clock, Phone};
use crate::storage::dropped::Reason as DropReason;
use crate::storage::dropped::{self, Dropped};
use crate::storage::{SignedParts, Store};
use crate::time::UnixTime;

/// What the daemon adds: its fetching and publishing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DaemonJson {
    /// The provisioning base URL, or why there is none.
    pub server: String,
    /// Where the server comes from and what its master file named (`[provisioning]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) provisioning: Option<ProvisioningJson>,
    pub last_fetch: Option<String>,
    /// A fetch cycle is under way (its outcome is not in `files` yet).
    #[serde(default)]
    pub fetching: bool,
    /// The outcome of each file at the last fetch.
    pub(crate) files: Vec<FileFetchJson>,
    pub(crate) consecutive_failures: u32,
    pub(crate) next_retry: Option<String>,
    /// The feature set in the features file.
    pub(crate) published: Vec<String>,
    pub(crate) features_file: String,
    pub(crate) next_wake: Option<String>,
    /// The next poll of the server, and why (a configured feature without a license in
    /// force, or one Expiring Shortly).
    #[serde(default)]
    pub(crate) next_poll: Option<String>,
    #[serde(default)]
    pub(crate) poll_reason: Option<String>,
    /// The supervisor link in words: connected, not connected and why, or none.
    #[serde(default)]
    pub(crate) supervisor: String,
    /// The last call state heard and since when (`None`: unknown, counts as busy).
    #[serde(default)]
    pub(crate) call_state: Option<String>,
    #[serde(default)]
    pub(crate) reboot: RebootJson,
    /// The status report's uploads in words: where the last one went, or why none goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) report: Option<String>,
    /// The configuration's bad values set aside (each key read as if absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) config_set_aside: Vec<ConfigSetAsideJson>,
}

/// A bad value of the configuration, set aside: its dotted key, and the error with what
/// was done, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigSetAsideJson {
    pub(crate) key: String,
    pub(crate) detail: String,
}

impl ConfigSetAsideJson {
    pub(crate) fn of(e: &crate::config::ConfigError) -> Self {
        ConfigSetAsideJson {
            key: e.key.clone().unwrap_or_default(),
            detail: set_aside_words(e),
        }
    }
}

/// A bad value of the configuration set aside, in words, as the log, standard error and
/// `status` say it: the error, and what was done.
pub(crate) fn set_aside_words(e: &crate::config::ConfigError) -> String {
    format!("{e}; set aside: read as if absent (its default) until the file is mended")
}

/// The provisioning server as the last cycle found it (`[provisioning]`). URLs never
/// show credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ProvisioningJson {
    /// `dhcp` or `static`.
    pub(crate) source: String,
    /// The server that answered (its base URL); none when none did.
    pub(crate) server: Option<String>,
    /// Where it came from: `dhcp option N`, `remembered`, `static`.
    pub(crate) origin: Option<String>,
    /// Where the license files are fetched from, and where the report goes.
    pub(crate) licenses: Option<String>,
    pub(crate) logs: Option<String>,
    /// The master configuration file, in words.
    pub(crate) master: Option<String>,
    /// What was refused or failed on the way (a DHCP value, a server before).
    #[serde(default)]
    pub(crate) notes: Vec<String>,
}

/// Reboots: the set booted with, what is needed, and what a request waits for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RebootJson {
    pub(crate) pending: bool,
    /// The features the phone booted with (`None` until the clock was first sane).
    pub(crate) booted: Option<Vec<String>>,
    pub(crate) needs: Vec<NeedJson>,
    /// What a request waits for; `None` when nothing is pending.
    pub(crate) waiting_for: Option<WaitingFor>,
    pub(crate) until: Option<String>,
    /// The same in words.
    pub(crate) detail: Option<String>,
}

/// One reboot need.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NeedJson {
    pub(crate) cause: Cause,
    pub(crate) since: String,
    /// Not asked before this (the stagger delay of a site cause).
    pub(crate) not_before: String,
    pub(crate) phase: NeedPhase,
    pub(crate) request: Option<u64>,
}

crate::words::words! {
    /// Where a reboot need stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum NeedPhase {
        /// Not asked yet.
        Waiting = "waiting",
        /// REBOOT `request` sent, no answer yet.
        Asked = "asked",
        /// The supervisor said OK.
        Accepted = "accepted",
    }
}

crate::words::words! {
    /// What a pending reboot request waits for. An unknown word (a newer agent's) reads
    /// as [`WaitingFor::Other`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum WaitingFor {
        /// Nothing: it is asked now.
        Nothing = "nothing",
        SupervisorConnection = "supervisor-connection",
        /// The phone to be idle (a call is on, or the call state is unknown).
        Idle = "idle",
        /// Continuous idle for the grace.
        IdleGrace = "idle-grace",
        /// This phone's stagger delay (a site license's reboot).
        StaggerDelay = "stagger-delay",
        /// A reboot window (`[reboot]`), this phone's point in it, or its deadline.
        Window = "window",
        /// The supervisor's answer to a REBOOT.
        Answer = "answer",
        /// The reboot the supervisor accepted, asked again if still running then.
        RebootAfterOk = "reboot-after-ok",
        /// A word of a newer agent.
        Other = "other",
    } else Other
}

/// One file at one fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FileFetchJson {
    pub(crate) file: String,
    pub(crate) at: String,
    pub(crate) outcome: FileOutcome,
    pub(crate) detail: String,
    /// The server that answered (its base URL), and its transport (the URL's scheme:
    /// `https`, `tftp`...); none when no server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) transport: Option<String>,
}

impl FileFetchJson {
    /// `answered by <server> (<transport>)`, when a server answered.
    pub(crate) fn answered_by(&self) -> Option<String> {
        let (server, transport) = (self.server.as_ref()?, self.transport.as_ref()?);
        Some(format!("answered by {server} ({transport})"))
    }
}

/// What became of one file at one fetch (in JSON and in words: `accepted`, `unchanged`,
/// `absent`, `not-used`, `refused`, `failed`, `skipped`; `not-modified` is read in the
/// reports of older agents).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FileOutcome {
    /// Verified, judged and stored.
    Accepted,
    /// Identical to a stored license.
    Unchanged,
    /// The server said 304 (older agents only: this one fetches every file whole and
    /// never writes it; read in their reports by `license-fleet`).
    NotModified,
    /// Not on the server: the stored license stays in force.
    Absent,
    /// A stored license of longer duration stays in use.
    NotUsed,
    /// Refused (recorded in the events).
    Refused,
    /// Not fetched, or not stored.
    Failed,
    /// Nothing fetched: no server, or the clock is not set.
    Skipped,
}

impl FileOutcome {
    /// The word, as in JSON.
    pub(crate) fn word(self) -> &'static str {
        match self {
            FileOutcome::Accepted => "accepted",
            FileOutcome::Unchanged => "unchanged",
            FileOutcome::NotModified => "not-modified",
            FileOutcome::Absent => "absent",
            FileOutcome::NotUsed => "not-used",
            FileOutcome::Refused => "refused",
            FileOutcome::Failed => "failed",
            FileOutcome::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for FileOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LicenseJson {
    /// SHA-256 of the signed message, hex: the same license on every phone that holds it.
    #[serde(default)]
    pub(crate) fingerprint: String,
    pub(crate) kind: Kind,
    pub(crate) serial: String,
    pub(crate) key: String,
    /// `None` (`unknown` in JSON) while the clock is unsynced.
    #[serde(with = "crate::words::or_unknown")]
    pub(crate) role: Option<Role>,
    /// `None` while the clock is unsynced.
    pub(crate) status: Option<Status>,
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) days_left: Option<i64>,
    pub(crate) file: String,
    /// What it grants, record by record.
    #[serde(default)]
    pub(crate) grants: Vec<GrantJson>,
    /// Its signed content, canonical (`None` from an agent before this field).
    #[serde(default)]
    pub(crate) signed: Option<SignedParts>,
}

/// A license this agent dropped from its store, and when and why (`ended`, `replaced`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DroppedJson {
    pub(crate) fingerprint: String,
    pub(crate) kind: Kind,
    pub(crate) serial: String,
    pub(crate) key: String,
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) grants: Vec<GrantJson>,
    pub(crate) signed: Option<SignedParts>,
    pub(crate) dropped_at: String,
    pub(crate) reason: DropReason,
}

/// One feature record of a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GrantJson {
    pub(crate) name: String,
    pub(crate) transaction: String,
    pub(crate) start: String,
    pub(crate) end: String,
    /// The Managed Device limit (0: not counted).
    pub(crate) limit: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FeatureJson {
    pub(crate) id: u16,
    pub(crate) name: String,
    pub(crate) status: Option<Status>,
    pub(crate) enabled: bool,
    pub(crate) end: String,
    /// The kind of license that governs it.
    pub(crate) source: Option<Kind>,
    pub(crate) serial: Option<String>,
    pub(crate) transaction: Option<String>,
    pub(crate) limit: Option<u32>,
    /// The fingerprint of the license that governs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InvalidJson {
    pub(crate) file: String,
    pub(crate) reason: String,
}

/// The trust the phone holds (`docs/trust-update.md`, "In status and the report").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustJson {
    /// The trust version held, and the firmware keyring's.
    pub(crate) version: u32,
    pub(crate) firmware_version: u32,
    /// How many root keys, and how many must sign the next version.
    pub(crate) roots: usize,
    pub(crate) root_threshold: usize,
    /// The ids of the keys that sign licenses.
    pub(crate) license_keys: Vec<String>,
    /// RFC 3339, or `never`.
    pub(crate) expires: String,
    /// Expired at the instant judged: licenses not stored already are refused.
    pub(crate) expired: bool,
    /// `possible`, or why not.
    pub(crate) updates: String,
    /// What the stored documents gave at load that was not taken, with why.
    #[serde(default)]
    pub(crate) notes: Vec<String>,
    /// The last update judged.
    #[serde(default)]
    pub(crate) last_update: Option<TrustJudgedJson>,
    /// Licenses set aside because an update removed their key, oldest first.
    #[serde(default)]
    pub(crate) set_aside: Vec<TrustSetAsideJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustJudgedJson {
    pub(crate) version: u32,
    /// `taken`, or the refusal's verdict (`below the old threshold`, ...).
    pub(crate) verdict: String,
    pub(crate) detail: String,
    pub(crate) at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustSetAsideJson {
    pub(crate) at: String,
    pub(crate) license: String,
    pub(crate) key: String,
    pub(crate) version: u32,
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) file: Option<String>,
}

/// The trust section of the status, at the instant judged `judge_at`.
pub(crate) fn trust_json(phone: &Phone, store: &Store, judge_at: Option<UnixTime>) -> TrustJson {
    let keyring = &phone.keyring;
    let (roots, root_threshold) = keyring.roots();
    let record = store.meta().trust.clone().unwrap_or_default();
    TrustJson {
        version: keyring.version(),
        firmware_version: phone.firmware.version(),
        roots,
        root_threshold,
        license_keys: keyring.license_key_words(),
        expires: keyring.expires().map_or("never".into(), time),
        expired: judge_at.is_some_and(|at| keyring.frozen(at).is_some()),
        updates: if roots == 0 {
            "not possible, the firmware names no root key".into()
        } else {
            "possible".into()
        },
        notes: phone.trust_load.notes.clone(),
        last_update: record.last.map(|l| TrustJudgedJson {
            version: l.version,
            verdict: l.verdict,
            detail: l.detail,
            at: time(l.at),
        }),
        set_aside: record
            .set_aside
            .into_iter()
            .map(|s| TrustSetAsideJson {
                at: time(s.at),
                license: s.license,
                key: s.key,
                version: s.version,
                reason: s.reason,
                file: s.file,
            })
            .collect(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EventJson {
    pub(crate) at: String,
    pub(crate) what: String,
    pub(crate) subject: String,
    pub(crate) detail: String,
    /// A refusal's verdict (`None` for other events, and for a refusal whose verdict is
    /// not known: [`Verdict::Refused`] in the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verdict: Option<Verdict>,
    /// The untrusted key of an `unknown-key` refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StatusJson {
    /// Where this came from: `store` (read directly).
    pub(crate) source: String,
    pub(crate) mac: String,
    pub(crate) site_serial: Option<String>,
    pub(crate) clock: ClockVerdict,
    pub(crate) wall_clock: String,
    pub(crate) latest_trusted: Option<String>,
    /// The instant the licenses were judged at; `None` when unsynced.
    pub(crate) evaluated_at: Option<String>,
    /// Whether `evaluated_at` came from `--at`.
    pub(crate) at_requested: bool,
    pub(crate) licenses: Vec<LicenseJson>,
    pub(crate) features: Vec<FeatureJson>,
    pub(crate) enabled: Vec<String>,
    /// The features the configuration enables (`enabled_features`), by name: what the
    /// phone is meant to have, licensed or not.
    #[serde(default)]
    pub(crate) configured: Vec<String>,
    pub(crate) next_change: Option<String>,
    pub(crate) set_aside: Vec<InvalidJson>,
    /// The last write to the state folder that failed (read-only or full flash): the
    /// agent runs on the licenses it holds and tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) store_write_failure: Option<String>,
    /// The latest events, newest first.
    pub(crate) events: Vec<EventJson>,
    /// The licenses dropped lately that are still recorded, oldest drop first (`None`
    /// from an agent before this field).
    #[serde(default)]
    pub(crate) dropped: Option<Vec<DroppedJson>>,
    /// The trust held (`None` from an agent before trust updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trust: Option<TrustJson>,
    /// Only when the running daemon answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) daemon: Option<DaemonJson>,
}

/// A license's fingerprint: SHA-256 of its signed message, in hex.
pub(crate) fn fingerprint(signed_message: &[u8]) -> String {
    crate::format::hex_lower(ring::digest::digest(&ring::digest::SHA256, signed_message).as_ref())
}

pub(crate) fn time(t: UnixTime) -> String {
    u32::try_from(t)
        .map(rfc3339)
        .unwrap_or_else(|_| format!("@{t}"))
}

pub(crate) fn days_left(end: End, at: UnixTime) -> Option<i64> {
    match end {
        End::Never => None,
        End::At(e) => Some(
            i64::from(e)
                .saturating_sub(at)
                .max(0)
                .saturating_add(86_399)
                / 86_400,
        ),
    }
}

pub(crate) fn build(
    phone: &Phone,
    store: &Store,
    wall: UnixTime,
    at: Option<UnixTime>,
) -> StatusJson {
    let reading = read_clock(phone, store.meta(), wall);
    let judge_at = at.or(reading.judge_at);
    let evaluation: Option<Evaluation> = judge_at.map(|t| evaluate(store.held(), t));
    let licenses = store
        .held()
        .iter()
        .map(|h| {
            let view = evaluation
                .as_ref()
                .and_then(|e| e.licenses.iter().find(|l| l.id() == h.id()));
            let (start, end) = crate::engine::license_span(&h.license);
            LicenseJson {
                fingerprint: fingerprint(h.license.signed_message()),
                kind: h.license.kind(),
                serial: h.license.serial().to_string(),
                key: h.license.key_id().to_string(),
                role: view.map(|v| v.role),
                status: view.map(|v| v.status),
                start: time(start),
                end: end.to_string(),
                days_left: judge_at.and_then(|t| days_left(end, t)),
                file: store.path_of(h).display().to_string(),
                grants: grants(&h.license),
                signed: Some(SignedParts::of(&h.license)),
            }
        })
        .collect();
    // The records that stand at the instant judged, of licenses not held again since.
    let dropped = dropped::keep(store.dropped().to_vec(), judge_at)
        .iter()
        .filter(|d| {
            !store
                .held()
                .iter()
                .any(|h| h.license.signed_message() == d.license.signed_message())
        })
        .map(dropped_json)
        .collect();
    // By kind and number: a number alone may be held by both kinds.
    let governing = |id: StoreId| store.held().iter().find(|h| h.id() == id);
    let features: Vec<FeatureJson> = match &evaluation {
        Some(e) => e
            .features
            .iter()
            .map(|f| FeatureJson {
                id: f.id.0,
                name: f.id.name(),
                status: Some(f.status),
                enabled: f.enabled(),
                end: f.governing.entry.end.to_string(),
                source: Some(f.governing.kind),
                serial: governing(f.governing.id()).map(|h| h.license.serial().to_string()),
                transaction: Some(f.governing.entry.transaction.name().into()),
                limit: Some(f.governing.entry.limit),
                fingerprint: governing(f.governing.id())
                    .map(|h| fingerprint(h.license.signed_message())),
            })
            .collect(),
        // Unsynced: the set last published stands, and nothing else is known.
        None => store
            .meta()
            .published
            .iter()
            .flatten()
            .map(|p| FeatureJson {
                id: p.id,
                name: FeatureId(p.id).name(),
                status: None,
                enabled: true,
                end: p.end.map_or(End::Never, End::At).to_string(),
                source: None,
                serial: None,
                transaction: None,
                limit: None,
                fingerprint: None,
            })
            .collect(),
    };
    let enabled = features
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.name.clone())
        .collect();
    StatusJson {
        source: "store".into(),
        mac: phone.identity.mac.to_string(),
        site_serial: phone.identity.site_serial.map(|s| s.to_string()),
        clock: reading.verdict,
        wall_clock: time(wall),
        latest_trusted: store.meta().latest_trusted.map(time),
        evaluated_at: judge_at.map(time),
        at_requested: at.is_some(),
        licenses,
        features,
        enabled,
        configured: phone
            .config
            .enabled_features
            .iter()
            .map(|id| id.name())
            .collect(),
        next_change: evaluation.as_ref().and_then(|e| e.next_change).map(time),
        set_aside: store
            .invalid()
            .iter()
            .map(|i| InvalidJson {
                file: i.path.display().to_string(),
                reason: i.reason.clone(),
            })
            .collect(),
        store_write_failure: store.write_failure().map(ToString::to_string),
        events: store
            .meta()
            .events
            .iter()
            .rev()
            .take(10)
            .map(|e| EventJson {
                at: time(e.at),
                what: e.what.clone(),
                subject: e.subject.clone(),
                detail: e.detail.clone(),
                verdict: e.refusal_verdict(),
                key: e.key.clone(),
            })
            .collect(),
        dropped: Some(dropped),
        trust: Some(trust_json(phone, store, judge_at)),
        daemon: None,
    }
}

/// What a license grants, record by record.
fn grants(license: &crate::format::License) -> Vec<GrantJson> {
    license
        .features()
        .iter()
        .map(|e| GrantJson {
            name: e.id.name(),
            transaction: e.transaction.name().into(),
            start: time(i64::from(e.start)),
            end: e.end.to_string(),
            limit: e.limit,
        })
        .collect()
}

/// A dropped license as shown.
fn dropped_json(d: &Dropped) -> DroppedJson {
    let (start, end) = crate::engine::license_span(&d.license);
    DroppedJson {
        fingerprint: fingerprint(d.license.signed_message()),
        kind: d.license.kind(),
        serial: d.license.serial().to_string(),
        key: d.license.key_id().to_string(),
        start: time(start),
        end: end.to_string(),
        grants: grants(&d.license),
        signed: Some(SignedParts::of(&d.license)),
        dropped_at: time(d.at),
        reason: d.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::FileOutcome::{self, *};

    #[test]
    fn file_outcomes_in_json_and_words() {
        for outcome in [
            Accepted,
            Unchanged,
            NotModified,
            Absent,
            NotUsed,
            Refused,
            Failed,
            Skipped,
        ] {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{outcome}\""));
            assert_eq!(serde_json::from_str::<FileOutcome>(&json).unwrap(), outcome);
        }
        assert_eq!(NotModified.to_string(), "not-modified");
        assert_eq!(NotUsed.to_string(), "not-used");
    }
}
