//! The small metadata file beside the stored licenses (`meta.json`): the latest trusted
//! time, the feature set last published, the fetch validators, and recent events (what
//! was accepted, refused, dropped or moved aside, and why).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::reboot::{Cause, InForce, InForceSet, Need, Phase};
use crate::engine::{Refusal, Verdict};
use crate::format::FeatureId;
use crate::time::UnixTime;
use crate::trust::Rejection;

/// How many events are kept (the oldest go first).
pub(crate) const MAX_EVENTS: usize = 32;

/// The longest subject or detail of an event, in bytes (longer ones are cut, marked
/// `…`): with the events, the validators and the sets all bounded, `meta.json` can never
/// grow past what the store reads back.
pub(crate) const MAX_EVENT_TEXT: usize = 512;

/// `text` cut to at most [`MAX_EVENT_TEXT`] bytes, on a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_EVENT_TEXT {
        let mut cut = MAX_EVENT_TEXT - '…'.len_utf8();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A feature as published to the phone firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PublishedFeature {
    pub(crate) id: u16,
    /// Unix seconds; `None` for never.
    pub(crate) end: Option<u32>,
}

/// What identified the last download of one file for older agents (until issue 24):
/// HTTP's validators (sent back in a conditional request), or FTP's `SIZE` and `MDTM`.
/// This agent never writes one (every file is fetched whole: `fetch`, "Every file whole,
/// every time") and drops a file's at its next fetch; the field stays so that an older
/// agent reads the same `meta.json` (each value at most 256 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Validator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_modified: Option<String>,
    /// FTP `SIZE`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) size: Option<u64>,
    /// FTP `MDTM`, as the server sent it (`YYYYMMDDHHMMSS[.sss]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) modified: Option<String>,
}

/// Something that happened to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Wall clock time (Unix seconds) when it happened.
    pub(crate) at: UnixTime,
    /// `accepted`, `refused`, `identical`, `superseded`, `dropped`, `moved-aside`,
    /// `removed-leftover`, `renumbered` (a free word: an older agent reads any).
    pub(crate) what: String,
    /// The license or file concerned, in words.
    pub(crate) subject: String,
    /// Why.
    pub(crate) detail: String,
    /// A refusal's verdict, recorded as such (added after the events: an older agent's
    /// refusals have none, and an older agent ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verdict: Option<Verdict>,
    /// The key a refused license was signed with, when no trusted key matched it
    /// (`unknown-key`: a stale keyring, or a forgery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

impl Event {
    /// A refusal's verdict: as recorded, or for a refusal recorded without one (by an
    /// agent before the field, or rewritten by one after a rollback) the verdict word
    /// its detail starts with, as those agents wrote it (`unknown-key: ...`); `None` for
    /// another event, or a detail that starts with no verdict's word.
    pub(crate) fn refusal_verdict(&self) -> Option<Verdict> {
        if self.what != "refused" {
            return None;
        }
        self.verdict.or_else(|| {
            let (word, _) = self.detail.split_once(": ")?;
            Verdict::from_id(word)
        })
    }
}

/// One feature of the set the phone booted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BootedFeature {
    pub(crate) id: u16,
    pub(crate) site: bool,
    /// Unix seconds; `None` for never.
    pub(crate) end: Option<u32>,
}

/// The reboot state of one boot of the phone: the set it booted with and the reboots
/// still needed. Taken back by an agent restarted within the same boot (so it never asks
/// twice for one cause); ignored after a real reboot (another boot id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RebootRecord {
    /// `/proc/sys/kernel/random/boot_id` of that boot.
    pub(crate) boot_id: String,
    pub(crate) booted: Vec<BootedFeature>,
    #[serde(default)]
    pub(crate) needs: BTreeMap<Cause, Need>,
    /// The reboot the supervisor accepted in this boot (`Phase::Accepted`), kept when
    /// the needs it served are gone: the phone is about to reboot, and a need that comes
    /// meanwhile waits for that reboot (or the re-ask) instead of asking again (added
    /// after the needs: an older agent ignores it, and a record without it reads as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) accepted: Option<Phase>,
}

impl RebootRecord {
    pub(crate) fn booted_set(&self) -> InForceSet {
        self.booted
            .iter()
            .map(|b| {
                let end = b.end;
                (FeatureId(b.id), InForce { site: b.site, end })
            })
            .collect()
    }

    pub(crate) fn booted_list(set: &InForceSet) -> Vec<BootedFeature> {
        set.iter()
            .map(|(id, f)| BootedFeature {
                id: id.0,
                site: f.site,
                end: f.end,
            })
            .collect()
    }
}

/// The content of `meta.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    #[serde(default)]
    pub(crate) latest_trusted: Option<UnixTime>,
    #[serde(default)]
    pub(crate) published: Option<Vec<PublishedFeature>>,
    #[serde(default)]
    pub(crate) validators: BTreeMap<String, Validator>,
    #[serde(default)]
    pub(crate) events: Vec<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reboot: Option<RebootRecord>,
    /// The provisioning server that answered last and its folders, for a boot on which
    /// DHCP names none (added with `[provisioning]`: an older agent ignores it).
    /// A record that does not read (by hand, another build) is none: it never costs
    /// the rest of the metadata.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_server_or_none"
    )]
    pub(crate) boot_server: Option<KnownServer>,
    /// The trust held and the last update judged (`docs/trust-update.md`, "In status
    /// and the report"; added with trust updates: an older agent ignores it). A record
    /// that does not read is none, as `boot_server`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub(crate) trust: Option<TrustRecord>,
}

/// What the agent keeps of trust updates beside the documents themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustRecord {
    /// The last update judged by a fetch cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last: Option<TrustJudged>,
    /// The licenses set aside because an update removed their key, oldest first (at
    /// most [`MAX_TRUST_SET_ASIDE`]).
    #[serde(default)]
    pub(crate) set_aside: Vec<TrustSetAside>,
}

/// The most set-aside licenses recorded (the files themselves stay in `rejected/`).
pub(crate) const MAX_TRUST_SET_ASIDE: usize = 16;

/// One update judged: its version, the verdict's word (`taken`, or why it was
/// refused) and the whole detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustJudged {
    pub(crate) version: u32,
    pub(crate) verdict: String,
    pub(crate) detail: String,
    pub(crate) at: UnixTime,
}

/// A license set aside because the trust version `version` removed its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustSetAside {
    pub(crate) at: UnixTime,
    /// In words (`phone license 0004f2000001`).
    pub(crate) license: String,
    pub(crate) key: String,
    pub(crate) version: u32,
    pub(crate) reason: String,
    /// Where the file went (`rejected/...`), to be taken back if a later version
    /// trusts its key again; `None` when it could not be moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
}

/// A field as stored, or none when it does not read as one.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// The provisioning server that answered last (`locate::Known` as stored): base URLs
/// without credentials, the master file its URL named, where it came from in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KnownServer {
    pub(crate) url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) master_file: Option<String>,
    pub(crate) origin: String,
    pub(crate) licenses: String,
    pub(crate) logs: String,
}

/// `boot_server` as stored, or none when it does not read as one.
fn known_server_or_none<'de, D>(deserializer: D) -> Result<Option<KnownServer>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

impl Meta {
    /// Appends an event, keeping the last [`MAX_EVENTS`].
    pub(crate) fn record(
        &mut self,
        at: UnixTime,
        what: &str,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(Event {
            at,
            what: what.to_string(),
            subject: bounded(subject.into()),
            detail: bounded(detail.into()),
            verdict: None,
            key: None,
        });
    }

    /// Records that the license file `subject` was refused (`refused`) and returns the
    /// detail recorded: the verdict's word first (`unknown-key: signed with key ...`),
    /// as older readers expect, and the verdict and untrusted key as fields.
    pub(crate) fn record_rejection(
        &mut self,
        at: UnixTime,
        subject: impl Into<String>,
        rejection: &Rejection,
    ) -> String {
        let key = match rejection {
            Rejection::UnknownKey { key_id } => Some(key_id.to_string()),
            _ => None,
        };
        self.push_refusal(at, subject.into(), Verdict::of(rejection), key, rejection)
    }

    /// Records that the verified license `subject` was not taken (`refused`) and
    /// returns the detail recorded, as [`Meta::record_rejection`] does.
    pub(crate) fn record_refusal(
        &mut self,
        at: UnixTime,
        subject: impl Into<String>,
        refusal: &Refusal,
    ) -> String {
        self.push_refusal(at, subject.into(), refusal.verdict(), None, refusal)
    }

    fn push_refusal(
        &mut self,
        at: UnixTime,
        subject: String,
        verdict: Verdict,
        key: Option<String>,
        why: &dyn std::fmt::Display,
    ) -> String {
        let detail = format!("{}: {why}", verdict.id());
        self.push(Event {
            at,
            what: "refused".into(),
            subject: bounded(subject),
            detail: bounded(detail.clone()),
            verdict: Some(verdict),
            key: key.map(bounded),
        });
        detail
    }

    fn push(&mut self, event: Event) {
        self.events.push(event);
        let excess = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded_and_keep_the_newest() {
        let mut meta = Meta::default();
        for i in 0..(MAX_EVENTS as i64 + 5) {
            meta.record(i, "accepted", "x", "y");
        }
        assert_eq!(meta.events.len(), MAX_EVENTS);
        assert_eq!(meta.events[0].at, 5);
    }

    /// Everything in it at its largest still reads back: events of the longest texts,
    /// validators of the longest values, 256 features published and booted, every
    /// reboot cause.
    #[test]
    fn the_largest_metadata_stays_far_below_the_read_bound() {
        use crate::engine::reboot::{Cause, Need};
        let mut meta = Meta {
            latest_trusted: Some(i64::MAX),
            published: Some(
                (0..256)
                    .map(|id| PublishedFeature {
                        id,
                        end: Some(u32::MAX),
                    })
                    .collect(),
            ),
            ..Meta::default()
        };
        for _ in 0..MAX_EVENTS * 2 {
            meta.record(
                i64::MIN,
                "moved-aside",
                "é".repeat(4_000),
                "\u{1}".repeat(100_000),
            );
        }
        // The longest validators an older agent kept.
        let long = "x".repeat(256);
        for name in ["000000000000-license.cfg", "0004f2000001-license.cfg"] {
            meta.validators.insert(
                name.into(),
                Validator {
                    etag: Some(long.clone()),
                    last_modified: Some(long.clone()),
                    size: Some(u64::MAX),
                    modified: Some(long.clone()),
                },
            );
        }
        meta.reboot = Some(RebootRecord {
            boot_id: "b".repeat(64), // the daemon reads at most 64 bytes of it
            booted: (0..256)
                .map(|id| BootedFeature {
                    id,
                    site: true,
                    end: Some(u32::MAX),
                })
                .collect(),
            needs: Cause::ALL
                .into_iter()
                .map(|c| {
                    let need = Need {
                        since: i64::MIN,
                        not_before: i64::MAX,
                        ready_at: crate::time::Mono::from_nanos(u64::MAX),
                        phase: Phase::Asked {
                            id: u64::MAX,
                            at: i64::MIN,
                        },
                        window_deadline: Some(crate::time::Mono::from_nanos(u64::MAX)),
                    };
                    (c, need)
                })
                .collect(),
            accepted: Some(Phase::Accepted {
                at: i64::MIN,
                at_mono: crate::time::Mono::from_nanos(u64::MAX),
            }),
        });
        let bytes = serde_json::to_vec_pretty(&meta).unwrap();
        assert!(bytes.len() < 256 * 1024, "{} bytes", bytes.len());
        assert!(meta
            .events
            .iter()
            .all(|e| e.subject.len() <= MAX_EVENT_TEXT && e.detail.len() <= MAX_EVENT_TEXT));
        assert!(meta.events[0].subject.ends_with('…'));
        assert_eq!(serde_json::from_slice::<Meta>(&bytes).unwrap(), meta);
    }

    #[test]
    fn round_trips_and_tolerates_missing_fields() {
        let mut meta = Meta {
            latest_trusted: Some(1_790_000_000),
            ..Meta::default()
        };
        meta.record(1, "refused", "site license 100000000001", "expired");
        let text = serde_json::to_string(&meta).unwrap();
        assert_eq!(serde_json::from_str::<Meta>(&text).unwrap(), meta);
        assert_eq!(serde_json::from_str::<Meta>("{}").unwrap(), Meta::default());
    }

    /// A refusal keeps its verdict and untrusted key as fields, the detail led by the
    /// verdict's word as before; an event of an older agent (no such fields) reads as
    /// none, and an older agent's shape of an event reads the new one.
    #[test]
    fn a_refusal_is_recorded_with_its_verdict_and_older_shapes_read_both_ways() {
        let mut meta = Meta::default();
        let unknown = Rejection::UnknownKey {
            key_id: crate::format::license::KeyId([0x99, 0xaa, 0xbb, 0xcc]),
        };
        let detail = meta.record_rejection(7, "0004f2000001-license.cfg", &unknown);
        assert!(
            detail.starts_with("unknown-key: signed with key 99AABBCC"),
            "{detail}"
        );
        let other = Refusal::ClockUnsynced;
        meta.record_refusal(8, "phone license 0004f2000001", &other);
        let [first, second] = &meta.events[..] else {
            panic!("{:?}", meta.events)
        };
        assert_eq!(
            (first.verdict, first.key.as_deref()),
            (Some(Verdict::UnknownKey), Some("99AABBCC"))
        );
        assert_eq!(first.detail, detail);
        assert_eq!(
            (second.verdict, second.key.as_deref()),
            (Some(Verdict::ClockUnsynced), None)
        );
        assert!(
            second.detail.starts_with("clock-unsynced: "),
            "{}",
            second.detail
        );

        let text = serde_json::to_string(&meta).unwrap();
        assert!(
            text.contains(r#""verdict":"unknown-key","key":"99AABBCC""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Meta>(&text).unwrap(), meta);
        // The shape of an event before these fields: it reads the new file.
        #[derive(Deserialize)]
        struct OlderEvent {
            #[allow(dead_code)]
            detail: String,
        }
        #[derive(Deserialize)]
        struct OlderMeta {
            events: Vec<OlderEvent>,
        }
        assert_eq!(
            serde_json::from_str::<OlderMeta>(&text)
                .unwrap()
                .events
                .len(),
            2
        );
        // An event an older agent wrote: no verdict, no key.
        let older = r#"{"events":[{"at":1,"what":"refused","subject":"s","detail":"expired: x"}]}"#;
        let read = serde_json::from_str::<Meta>(older).unwrap();
        assert_eq!(
            (read.events[0].verdict, read.events[0].key.as_ref()),
            (None, None)
        );
        // Its verdict is the word its detail starts with, as that agent wrote it; only
        // a refusal has one, and only a verdict's word counts.
        assert_eq!(read.events[0].refusal_verdict(), Some(Verdict::Expired));
        let mut event = read.events[0].clone();
        event.detail = "malformed license file: too big".into();
        assert_eq!(event.refusal_verdict(), None);
        event.what = "accepted".into();
        event.detail = "expired: x".into();
        assert_eq!(event.refusal_verdict(), None);
        assert_eq!(first.refusal_verdict(), Some(Verdict::UnknownKey));
    }
}
