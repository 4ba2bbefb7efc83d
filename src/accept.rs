//! Judge and store: what `license-agent install` and the daemon share to accept a license
//! file given by hand exactly as a download would be accepted. The store has one writer
//! (the install command when no daemon runs, otherwise the daemon), which runs
//! [`install_into`]; the result is data ([`InstallOutcome`], [`FeatureChange`]) that the
//! command line puts into words.
//!
//! What it stored, kept and replaced is named by kind and number
//! ([`StoreId`](crate::engine::StoreId)): a number alone may be held by both kinds.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::{self, clock, evaluate, judge_candidate, Decision, Origin};
use crate::format::{self, Capped, End, FeatureId, Malformed};
use crate::phone::{read_clock, Phone};
use crate::storage::{describe, Store};
use crate::time::UnixTime;
use crate::trust::Rejection;

/// A license file's bytes, or why there are none.
pub(crate) enum FileBytes {
    Read(Vec<u8>),
    /// Larger than a license file may be; reading stopped just past the cap.
    TooBig(Malformed),
}

impl FileBytes {
    /// Judges bytes read under the cap (at most the cap plus one byte): too big, or the
    /// content. The same judgement wherever the bytes were read (by the command line, or
    /// by a client that handed them over the control socket).
    pub(crate) fn judge(bytes: &[u8]) -> FileBytes {
        match format::read_capped(bytes) {
            Ok(Capped::Content(bytes)) => FileBytes::Read(bytes),
            Ok(Capped::TooBig(m)) => FileBytes::TooBig(m),
            // Reading a slice cannot fail; were it to, verifying refuses an oversize file.
            Err(_) => FileBytes::Read(bytes.to_vec()),
        }
    }
}

/// One change of the enabled feature set (`name`: the feature's name; ends as RFC 3339
/// or `never`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub(crate) enum FeatureChange {
    /// Enabled now, until `until`.
    Added { name: String, until: String },
    /// No longer enabled.
    Removed { name: String },
    /// Still enabled, with a new end.
    Changed {
        name: String,
        from: String,
        to: String,
    },
}

impl fmt::Display for FeatureChange {
    /// `+ name until end`, `- name`, `~ name: until old -> until new`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureChange::Added { name, until } => write!(f, "+ {name} until {until}"),
            FeatureChange::Removed { name } => write!(f, "- {name}"),
            FeatureChange::Changed { name, from, to } => {
                write!(f, "~ {name}: until {from} -> until {to}")
            }
        }
    }
}

/// The feature set's changes: enabled or with a new end (in id order), then disabled.
pub(crate) fn changes(
    before: &BTreeMap<FeatureId, End>,
    after: &BTreeMap<FeatureId, End>,
) -> Vec<FeatureChange> {
    let mut out = Vec::new();
    for (id, end) in after {
        match before.get(id) {
            None => out.push(FeatureChange::Added {
                name: id.to_string(),
                until: end.to_string(),
            }),
            Some(old) if old != end => out.push(FeatureChange::Changed {
                name: id.to_string(),
                from: old.to_string(),
                to: end.to_string(),
            }),
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(id)) {
        out.push(FeatureChange::Removed {
            name: id.to_string(),
        });
    }
    out
}

/// A stored license kept beside the one installed: its kind, serial, role and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeptLicense {
    pub(crate) kind: String,
    pub(crate) serial: String,
    pub(crate) role: String,
    pub(crate) status: String,
}

/// What an install did (`subject` describes the license, or names the file when it is
/// no license).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub(crate) enum InstallOutcome {
    /// Stored (the feature set may have changed).
    Accepted {
        subject: String,
        /// The stored file.
        stored_as: String,
        kept: Vec<KeptLicense>,
        /// How many stored licenses it replaces.
        dropped: usize,
        changes: Vec<FeatureChange>,
        /// Why the record of it (`meta.json`) could not be written yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unrecorded: Option<String>,
    },
    /// Identical signed content is already stored: nothing changed.
    Identical { subject: String },
    /// A stored license lasts longer and stays in use (`detail` says which).
    Superseded { subject: String, detail: String },
    /// Refused (recorded in `meta.json`; `unrecorded`: why the record could not be
    /// written).
    Refused {
        subject: String,
        reason: String,
        unrecorded: Option<String>,
    },
    /// The store could not be written.
    StoreFailed { error: String },
}

impl InstallOutcome {
    /// Stored (the feature set may have changed).
    pub(crate) fn accepted(&self) -> bool {
        matches!(self, InstallOutcome::Accepted { .. })
    }

    /// The words `license-agent install` says for it, and its exit status. One renderer
    /// for both writers: the command line prints them, the daemon logs the first line and
    /// hands them to the client with the outcome (the control protocol carries both).
    pub(crate) fn words(&self) -> Words {
        let mut words = Words::default();
        match self {
            InstallOutcome::Accepted {
                subject,
                stored_as,
                kept,
                dropped,
                changes,
                unrecorded,
            } => {
                if let Some(e) = unrecorded {
                    words.stderr = format!(
                        "license-agent: stored, but its record could not be written yet: {e}\n"
                    );
                }
                let out = &mut words.stdout;
                out.push_str(&format!("installed: {subject}, stored as {stored_as}\n"));
                for l in kept {
                    out.push_str(&format!(
                        "  kept: {} license {} ({}, {})\n",
                        l.kind, l.serial, l.role, l.status
                    ));
                }
                if *dropped > 0 {
                    out.push_str(&format!("  dropped {dropped} license(s) it replaces\n"));
                }
                if changes.is_empty() {
                    out.push_str("  features: no change\n");
                } else {
                    out.push_str("  features:\n");
                    for c in changes {
                        out.push_str(&format!("  {c}\n"));
                    }
                }
            }
            InstallOutcome::Identical { subject } => {
                words.stdout =
                    format!("unchanged: {subject} is already stored (identical signed content)\n");
            }
            InstallOutcome::Superseded { subject, detail } => {
                words.stderr = format!("license-agent: not installed: {subject}: {detail}\n");
                words.code = 1;
            }
            InstallOutcome::Refused {
                subject,
                reason,
                unrecorded,
            } => {
                words.stderr = format!("license-agent: refused: {subject}: {reason}\n");
                if let Some(e) = unrecorded {
                    words.stderr.push_str(&format!(
                        "license-agent: and the refusal could not be recorded: {e}\n"
                    ));
                }
                words.code = 1;
            }
            InstallOutcome::StoreFailed { error } => {
                words.stderr = format!("license-agent: {error}\n");
                words.code = 1;
            }
        }
        words
    }
}

/// An install's words: standard output and error, and the exit status (0 installed or
/// identical, 1 otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Words {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i32,
}

/// Judges a license given by hand and stores it as a download would be, in the store of
/// its one writer: the install command, or the daemon (`shown` names the file in the
/// outcome and the events). Every refusal is recorded in `meta.json` too.
pub(crate) fn install_into(
    phone: &Phone,
    store: &mut Store,
    candidate: FileBytes,
    shown: &str,
    wall: UnixTime,
) -> InstallOutcome {
    let failed = |error: String| InstallOutcome::StoreFailed { error };
    let reading = read_clock(phone, store.meta(), wall);
    let bytes = match candidate {
        FileBytes::Read(bytes) => bytes,
        FileBytes::TooBig(m) => {
            let why = store
                .meta_mut()
                .record_rejection(wall, shown, &Rejection::Malformed(m));
            return refused(store, shown, why);
        }
    };
    let license = match phone.keyring.verify_bytes(&bytes) {
        Ok(license) => license,
        Err(rejection) => {
            let why = store.meta_mut().record_rejection(wall, shown, &rejection);
            return refused(store, shown, why);
        }
    };
    let subject = describe(&license);
    let before = reading
        .judge_at
        .map(|at| evaluate(store.held(), at).enabled());
    let decision = judge_candidate(
        &phone.identity,
        store.held(),
        &license,
        Origin::Installed,
        reading.judge_at,
        store.next_seq(),
    );
    let frozen = reading.judge_at.and_then(|at| phone.keyring.frozen(at));
    let done = match decision {
        Decision::Accept { .. } if frozen.is_some() => {
            let why = frozen.unwrap_or_default();
            store
                .meta_mut()
                .record(wall, "refused", subject.clone(), why.clone());
            return refused(store, shown, format!("{subject}: {why}"));
        }
        Decision::Accept { drop } => {
            let at = reading.judge_at.unwrap_or(wall); // Accept implies a sane clock
            let id = match store.add(&bytes, license, &drop, at, wall) {
                Ok(id) => id,
                Err(e) => {
                    return failed(format!(
                        "not installed: {e}; the licenses held stay in force"
                    ))
                }
            };
            store.prune(at, wall);
            let path = store
                .held()
                .iter()
                .find(|h| h.id() == id)
                .map(|h| store.path_of(h));
            let after = evaluate(store.held(), at);
            let kept = after
                .licenses
                .iter()
                .filter(|l| l.id() != id)
                .map(|l| KeptLicense {
                    kind: l.kind.to_string(),
                    serial: l.serial.to_string(),
                    role: l.role.id().to_string(),
                    status: l.status.to_string(),
                })
                .collect();
            InstallOutcome::Accepted {
                subject,
                stored_as: path.map(|p| p.display().to_string()).unwrap_or_default(),
                kept,
                dropped: drop.len(),
                changes: changes(&before.unwrap_or_default(), &after.enabled()),
                unrecorded: None,
            }
        }
        Decision::Identical { .. } => {
            store.meta_mut().record(
                wall,
                "identical",
                subject.clone(),
                "already stored; nothing changed",
            );
            InstallOutcome::Identical { subject }
        }
        Decision::Superseded { by } => {
            let longer = store.held().iter().find(|h| h.id() == by);
            let detail = match longer {
                Some(h) => format!(
                    "the stored {} lasts longer (until {}) and stays in use: the longest duration wins",
                    describe(&h.license),
                    engine::license_span(&h.license).1
                ),
                None => "a stored license lasts longer and stays in use".into(),
            };
            store
                .meta_mut()
                .record(wall, "superseded", subject.clone(), detail.clone());
            InstallOutcome::Superseded { subject, detail }
        }
        Decision::Refuse(refusal) => {
            let why = store
                .meta_mut()
                .record_refusal(wall, subject.as_str(), &refusal);
            return refused(store, &subject, why);
        }
    };
    if let Some(t) = clock::trusted_time_to_write(&reading, store.meta().latest_trusted) {
        store.meta_mut().latest_trusted = Some(t);
    }
    let mut done = done;
    if let (Err(e), InstallOutcome::Accepted { unrecorded, .. }) = (store.save_meta(), &mut done) {
        // Stored: the license is in; only the record of it waits for a later write.
        *unrecorded = Some(e.to_string());
    }
    done
}

/// A refusal recorded (`why`, as recorded): the licenses untouched, the record saved.
fn refused(store: &mut Store, subject: &str, why: String) -> InstallOutcome {
    InstallOutcome::Refused {
        subject: subject.to_string(),
        reason: why,
        unrecorded: store.save_meta().err().map(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_in_words() {
        let (a, b, c) = (FeatureId(1), FeatureId(2), FeatureId(3));
        let before = BTreeMap::from([(a, End::At(0)), (b, End::Never)]);
        let after = BTreeMap::from([(a, End::Never), (c, End::At(86_400))]);
        let words: Vec<String> = changes(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            words,
            [
                format!("~ {a}: until 1970-01-01T00:00:00Z -> until never"),
                format!("+ {c} until 1970-01-02T00:00:00Z"),
                format!("- {b}"),
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }

    /// An install finds what it stored, and what it keeps, by kind and number: after a
    /// junk file named with the last number of all (set aside), the phone license and
    /// then a site license are installed, and the site license's outcome names its own
    /// file and keeps the phone license (the junk used to give both the one number, so
    /// the outcome named the phone license's file and kept nothing).
    #[test]
    fn an_install_names_its_own_file_and_keeps_the_other_kind() {
        use crate::format::Kind;
        use crate::testkit::{self, DAY};
        let dir = tempfile::tempdir().unwrap();
        let phone = testkit::phone_in(dir.path(), "");
        let wall = clock::BUILD_TIME + 10 * DAY;
        drop(testkit::writer_store(&phone, wall));
        let junk = phone.config.state_dir.join("site/18446744073709551615.cfg");
        std::fs::write(junk, "junk").unwrap();
        let mut store = testkit::writer_store(&phone, wall);
        let (p, _) = testkit::lic_file(Kind::Phone, &[(1, wall - DAY, None)]);
        let (s, _) = testkit::lic_file(Kind::Site, &[(2, wall - DAY, Some(wall + 100 * DAY))]);
        let first = install_into(
            &phone,
            &mut store,
            FileBytes::judge(p.as_bytes()),
            "p",
            wall,
        );
        assert!(first.accepted(), "{first:?}");
        let done = install_into(
            &phone,
            &mut store,
            FileBytes::judge(s.as_bytes()),
            "s",
            wall,
        );
        let InstallOutcome::Accepted {
            stored_as, kept, ..
        } = done
        else {
            panic!("{done:?}")
        };
        assert!(stored_as.ends_with("site/0000000002.cfg"), "{stored_as}");
        let kept: Vec<(&str, &str)> = kept
            .iter()
            .map(|k| (k.kind.as_str(), k.role.as_str()))
            .collect();
        assert_eq!(kept, [("phone", "primary")]);
    }

    /// Every refusal reaches the report with the verdict it was refused with, read from
    /// the record, not from its words: an oversize file is `malformed` (its words,
    /// "malformed license file: ...", were once read back as the verdict `refused`), a
    /// file signed by a key not trusted is `unknown-key` with that key, and a license of
    /// another phone is `not-this-phone`.
    #[test]
    fn every_refusal_reaches_the_report_with_its_verdict() {
        use crate::engine::Verdict;
        use crate::format::{Kind, Transaction};
        use crate::testkit::{self, DAY};
        let dir = tempfile::tempdir().unwrap();
        let phone = testkit::phone_in(dir.path(), "");
        let wall = clock::BUILD_TIME + 10 * DAY;
        let mut store = testkit::writer_store(&phone, wall);
        let oversize = vec![b'#'; crate::format::MAX_FILE_SIZE + 1];
        let grant = || vec![testkit::entry((1, wall - DAY, None), Transaction::New, 0)];
        let spec = crate::issuer::LicenseSpec {
            serial: crate::format::Serial::parse(testkit::MAC).unwrap(),
            kind: Kind::Phone,
            features: grant(),
        };
        let stranger = crate::issuer::SigningKey::from_seed(&[8; 32]).unwrap();
        let untrusted = crate::issuer::issue(&spec, &stranger).unwrap();
        let other_phone = testkit::file_with(Kind::Phone, "0004f2ffffff", grant());
        for (bytes, name) in [
            (oversize, "big"),
            (untrusted.into_bytes(), "untrusted"),
            (other_phone.into_bytes(), "other"),
        ] {
            let done = install_into(&phone, &mut store, FileBytes::judge(&bytes), name, wall);
            assert!(matches!(done, InstallOutcome::Refused { .. }), "{done:?}");
        }
        let status = crate::status::build(&phone, &store, wall, None);
        let report = crate::report::build(status, "t".into(), "host");
        let verdicts: Vec<(Verdict, Option<&str>)> = report
            .refusals
            .iter()
            .map(|r| (r.verdict, r.key.as_deref()))
            .collect();
        assert_eq!(verdicts.len(), 3, "{:?}", report.refusals);
        assert_eq!(verdicts[0], (Verdict::Malformed, None));
        assert_eq!(verdicts[1].0, Verdict::UnknownKey);
        assert!(verdicts[1].1.is_some());
        assert_eq!(verdicts[2], (Verdict::NotThisPhone, None));
    }
}
