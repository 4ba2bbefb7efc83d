//! The agent's trust updates (`docs/trust-update.md`): what a cycle asks for, and taking
//! what it brought before the license files are judged.
//!
//! The fetch thread follows the versions up only to know which to ask next; here each
//! document is judged again against the trust held, stored durably before it is used,
//! and only then does the keyring change. Licenses whose key a new trust no longer has
//! are set aside with the reason (never dropped silently), and those set aside before
//! are taken back when a later version trusts their key again.

use super::{fetching::file_result, Agent, Snapshot};
use crate::accept::{install_into, FileBytes};
use crate::fetch::worker::{Fetched, TrustAsk, MAX_TRUST_STEPS};
use crate::fetch::{FailureKind, FetchOutcome};
use crate::status::{FileFetchJson, FileOutcome};
use crate::storage::meta::{TrustJudged, TrustSetAside, MAX_TRUST_SET_ASIDE};
use crate::time::UnixTime;
use crate::trust::update::{self, Refusal};

/// Whether `name` is a trust document's (`trust-N.cfg`), not a license file's.
pub(super) fn is_trust_file(name: &str) -> bool {
    name.starts_with("trust-")
}

/// What taking a cycle's documents gave.
pub(super) struct TrustStep {
    /// One result per document asked for, in order.
    pub(super) files: Vec<FileFetchJson>,
    /// The server may hold more than one cycle takes: the next cycle is due at once.
    pub(super) more: bool,
}

impl Agent {
    /// What a cycle asks of the trust documents: none when the trust held names no
    /// root key (no update can be taken, so none is asked for).
    pub(super) fn trust_ask(&self, snap: &Snapshot) -> Option<TrustAsk> {
        let held = self.phone.keyring.trust();
        (!held.roots.is_empty()).then_some(TrustAsk {
            held,
            now: snap.reading.judge_at,
        })
    }

    /// Takes the trust documents a cycle brought, in order, each judged again against
    /// the trust held (the thread's judgement only chose what to ask).
    pub(super) fn apply_trust(&mut self, fetched: Vec<Fetched>, snap: &Snapshot) -> TrustStep {
        let now = snap.stamp.wall;
        let judge_at = snap.reading.judge_at;
        let mut files = Vec::new();
        let mut taken = 0usize;
        let before = self.phone.keyring.clone();
        for file in fetched {
            let held = self.phone.keyring.trust();
            let asked = held.version.saturating_add(1);
            let mut result = match file.outcome {
                FetchOutcome::Absent { answer } => {
                    self.forget_refusal(asked);
                    file_result(
                        now,
                        &file.name,
                        FileOutcome::Absent,
                        &format!("{answer}: trust version {} is the newest", held.version),
                    )
                }
                FetchOutcome::Failed(e) if e.kind == FailureKind::TooBig => {
                    // An answer, and far past what a document may be: refused, not a
                    // failure to try again sooner.
                    let refusal = Refusal::Malformed {
                        line: 0,
                        why: format!(
                            "more bytes than a fetch takes ({}); a trust document is at most {}",
                            crate::fetch::MAX_BODY,
                            update::MAX_DOCUMENT
                        ),
                    };
                    self.refuse(&file.name, asked, &refusal, now)
                }
                FetchOutcome::Failed(e) => {
                    log::warn!("trust update: fetch failed: {e}");
                    file_result(
                        now,
                        &file.name,
                        FileOutcome::Failed,
                        &format!("{e}; trust version {} is held", held.version),
                    )
                }
                FetchOutcome::Body { bytes } => match update::judge(&held, &bytes, judge_at) {
                    Ok(trust) => self.take(&file.name, trust, &bytes, now),
                    Err(refusal) => self.refuse(&file.name, asked, &refusal, now),
                },
            };
            if result.outcome == FileOutcome::Accepted {
                taken += 1;
            }
            result.transport = file.server.as_ref().map(|s| s.scheme().to_string());
            result.server = file.server.map(|s| s.to_string());
            files.push(result);
        }
        if self.phone.keyring.trust() != before.trust() {
            self.after_trust_change(now);
        }
        let judged = files
            .iter()
            .any(|f| matches!(f.outcome, FileOutcome::Accepted | FileOutcome::Refused));
        if judged {
            // The verdicts are kept whatever else the cycle writes (a failure is noted
            // and the write tried again).
            let _ = self.store.save_meta();
        }
        TrustStep {
            files,
            more: taken == MAX_TRUST_STEPS,
        }
    }

    /// Stores document `trust` (durably, before it is used), then holds it.
    fn take(
        &mut self,
        name: &str,
        trust: update::Trust,
        bytes: &[u8],
        now: UnixTime,
    ) -> FileFetchJson {
        let version = trust.version;
        self.store.own_folder(
            crate::storage::trust::TRUST_DIR,
            "the trust documents taken",
            now,
        );
        let stored = crate::storage::trust::write(
            &**self.store.disk(),
            &self.phone.config.state_dir,
            version,
            bytes,
        );
        if let Err(e) = stored {
            let why = format!(
                "trust version {version} verifies but cannot be stored ({e}); it is not \
                 taken, and is asked for again"
            );
            log::error!("{name}: {why}");
            return file_result(now, name, FileOutcome::Failed, &why);
        }
        self.phone.keyring = self.phone.keyring.followed_by(&self.phone.firmware, &trust);
        let keys = self.phone.keyring.license_key_words();
        let detail = format!(
            "trust version {version} taken: license keys {}, {} of {} root keys to update",
            keys.join(", "),
            trust.threshold,
            trust.roots.len()
        );
        log::info!(target: crate::syslog::NOTICE, "{name}: {detail}");
        self.record_judged(version, "taken", &detail, now);
        self.store
            .meta_mut()
            .record(now, "trust-taken", name.to_string(), detail.clone());
        file_result(now, name, FileOutcome::Accepted, &detail)
    }

    fn refuse(
        &mut self,
        name: &str,
        asked: u32,
        refusal: &Refusal,
        now: UnixTime,
    ) -> FileFetchJson {
        let detail = format!("{}: {refusal}", refusal.verdict());
        if *refusal == Refusal::WaitsForClock {
            log::info!("{name}: {detail}");
        } else {
            log::warn!("{name} refused: {detail}");
        }
        self.record_judged(asked, refusal.verdict(), &detail, now);
        self.store
            .meta_mut()
            .record(now, "trust-refused", name.to_string(), detail.clone());
        file_result(now, name, FileOutcome::Refused, &detail)
    }

    /// The document refused for version `asked` is no longer on the server: its
    /// refusal no longer stands (nor asks anything of the provider in the fleet view).
    fn forget_refusal(&mut self, asked: u32) {
        let Some(record) = self.store.meta_mut().trust.as_mut() else {
            return;
        };
        let stale = record
            .last
            .as_ref()
            .is_some_and(|l| l.version == asked && l.verdict != "taken");
        if stale {
            record.last = None;
            let _ = self.store.save_meta();
        }
    }

    fn record_judged(&mut self, version: u32, verdict: &str, detail: &str, at: UnixTime) {
        let record = self
            .store
            .meta_mut()
            .trust
            .get_or_insert_with(Default::default);
        record.last = Some(TrustJudged {
            version,
            verdict: verdict.to_string(),
            detail: detail.to_string(),
            at,
        });
    }

    /// The trust held changed: licenses of a key it no longer has are set aside with
    /// the reason; those set aside before whose key it trusts again are taken back.
    fn after_trust_change(&mut self, now: UnixTime) {
        // What was recorded of the update first: the store read again is read from
        // disk (a write that fails is carried over, `keep_unsaved`).
        let _ = self.store.save_meta();
        // Every stored license judged again under the new trust: one of a key it
        // removed is set aside with the reason (`removed_key_reason`) and recorded
        // from its note (`recover_set_aside`), as at any load.
        self.reload(now);
        let mut record = self.store.meta().trust.clone().unwrap_or_default();
        let mut kept = Vec::new();
        for aside in std::mem::take(&mut record.set_aside) {
            if !self.take_back(&aside, now) {
                kept.push(aside);
            }
        }
        record.set_aside = kept;
        self.store.meta_mut().trust = Some(record);
        self.take_back_unknown_keys(now);
    }

    /// Takes back the licenses set aside at a load for a key then unknown that the
    /// trust held now has (a trust document damaged or missing at that load, a
    /// firmware rolled back): a key trusted again is trusted for every file.
    pub(super) fn take_back_unknown_keys(&mut self, now: UnixTime) {
        let trusted = self.phone.keyring.license_key_words();
        let key_of = |reason: &str| -> Option<String> {
            let rest = reason.split_once("unknown-key: signed with key ")?.1;
            let key = rest.get(..8)?;
            key.bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| key.to_string())
        };
        let wanted = |reason: &str| key_of(reason).is_some_and(|k| trusted.contains(&k));
        let identity = self.phone.identity;
        // This phone's and its site's only: another phone's license is not ours to
        // judge again (nor to refuse again at every start).
        let ours = |l: &crate::format::License| match l.kind() {
            crate::format::Kind::Phone => l.serial() == identity.mac,
            crate::format::Kind::Site => identity.site_serial.is_none_or(|s| s == l.serial()),
        };
        for note in self.store.rejected_notes(&wanted, 64) {
            if !note.license.as_ref().is_some_and(ours) {
                continue;
            }
            let aside = TrustSetAside {
                at: note.at,
                license: note
                    .license
                    .as_ref()
                    .map(crate::storage::describe)
                    .unwrap_or_default(),
                key: key_of(&note.reason).unwrap_or_default(),
                version: self.phone.keyring.version(),
                reason: note.reason.clone(),
                file: Some(note.file.display().to_string()),
            };
            self.take_back(&aside, now);
        }
    }

    /// Records every license a trust update set aside that the store's records lack:
    /// the agent's own records can be lost to a power cut between the file's move and
    /// `meta.json`, or the set-aside can have happened at a load (a cut before the
    /// update's own); the note beside each file in `rejected/` says it all the same.
    pub(super) fn recover_set_aside(&mut self) {
        if !self.store.writer() {
            return;
        }
        let removed = |reason: &str| parse_removed(reason).is_some();
        let notes = self.store.rejected_notes(&removed, 64);
        let mut record = self.store.meta().trust.clone().unwrap_or_default();
        let mut added = false;
        for note in notes {
            let Some((key, version)) = parse_removed(&note.reason) else {
                continue;
            };
            let file = note.file.display().to_string();
            let recorded = record
                .set_aside
                .iter()
                .any(|s| s.file.as_deref() == Some(&file));
            // Taken back since (a later version trusted its key again): held, not aside.
            let held_again = note.license.as_ref().is_some_and(|l| {
                self.store
                    .held()
                    .iter()
                    .any(|h| h.license.signed_message() == l.signed_message())
            });
            if recorded || held_again {
                continue;
            }
            let license = note
                .license
                .as_ref()
                .map(crate::storage::describe)
                .unwrap_or_else(|| "a license".into());
            log::warn!("{license} was set aside ({}), recorded now", note.reason);
            record.set_aside.push(TrustSetAside {
                at: note.at,
                license,
                key: key.to_string(),
                version,
                reason: note.reason,
                file: Some(file),
            });
            added = true;
        }
        if added {
            record.set_aside.sort_by_key(|s| s.at);
            let excess = record.set_aside.len().saturating_sub(MAX_TRUST_SET_ASIDE);
            record.set_aside.drain(..excess);
            self.store.meta_mut().trust = Some(record);
            let _ = self.store.save_meta();
        }
    }

    /// Installs a set-aside license again when the trust held has its key again.
    fn take_back(&mut self, aside: &TrustSetAside, now: UnixTime) -> bool {
        let trusted = self.phone.keyring.license_key_words().contains(&aside.key);
        let Some(file) = aside.file.as_deref().filter(|_| trusted) else {
            return false;
        };
        let bytes = match self.store.disk().read(
            std::path::Path::new(file),
            crate::format::MAX_FILE_SIZE as u64 + 1,
        ) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::warn!(
                    "{} is trusted again, but {file} cannot be read: {e}",
                    aside.license
                );
                return false;
            }
        };
        if !self.would_take(&bytes, now) {
            // Judged first without a trace: taking back a license that has ended, is
            // outlasted or is held already must not add an event (or a refusal to the
            // report) at every start.
            return false;
        }
        let done = install_into(
            &self.phone,
            &mut self.store,
            FileBytes::judge(&bytes),
            file,
            now,
        );
        let words = done.words();
        let first = words
            .stdout
            .lines()
            .chain(words.stderr.lines())
            .next()
            .unwrap_or("");
        log::info!(
            "{} trusted again by trust version {}: {first}",
            aside.license,
            self.phone.keyring.version()
        );
        // Taken, or judged and refused for good (the refusal is in the events); a store
        // that cannot be written keeps the record, to try again at the next change.
        !matches!(done, crate::accept::InstallOutcome::StoreFailed { .. })
    }
}

impl Agent {
    /// Whether a license given by hand now (`bytes`) would be taken: it verifies, the
    /// trust held has not expired, and the rules accept it at the instant judged.
    fn would_take(&self, bytes: &[u8], now: UnixTime) -> bool {
        let Ok(license) = self.phone.keyring.verify_bytes(bytes) else {
            return false;
        };
        let judge_at = crate::phone::read_clock(&self.phone, self.store.meta(), now).judge_at;
        if judge_at.is_some_and(|at| self.phone.keyring.frozen(at).is_some()) {
            return false;
        }
        matches!(
            crate::engine::judge_candidate(
                &self.phone.identity,
                self.store.held(),
                &license,
                crate::engine::Origin::Installed,
                judge_at,
                self.store.next_seq(),
            ),
            crate::engine::Decision::Accept { .. }
        )
    }
}

/// The key and version of a reason `key XXXXXXXX removed by trust version N`.
fn parse_removed(reason: &str) -> Option<(String, u32)> {
    let rest = reason.strip_prefix("key ")?;
    let (key, version) = rest.split_once(" removed by trust version ")?;
    let plain = key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let version: u32 = version.parse().ok()?;
    plain.then(|| (key.to_string(), version))
}
