//! The status report's uploads, decided (`<mac>-license-status.json`,
//! `docs/report-schema.md`): what to send and when; the executor sends it off the loop
//! ([`Action::Upload`]) and hands the outcome back, so no server can hold the loop.
//!
//! - "Changed" leaves out the instants the report was made and judged at: a report
//!   that says the same again is not sent again. Reports are compared as values, never
//!   serialised to be compared. (The last fetch's time is in it, so a phone that polls
//!   its server also tells it, at each poll, that it is alive.)
//! - A server that takes no uploads (HTTP 405, FTP refusing `STOR` under every name it
//!   is tried with, TFTP, a read-only folder: [`FailureKind::NoUploads`]) is not asked
//!   again until the configuration is read again: the report is on by default, and a
//!   server without uploads is common. One name or one overwrite refused is not that:
//!   FTP tries other ways ([`crate::fetch::ftp`]), and `status` says what was tried;
//!   nor is a server that took a report since the configuration was read (a full
//!   disk): it is asked again after the back-off.
//! - One upload at a time; a report that changes during one is sent after it.
//! - A failed upload is tried again after a back-off (`timing.retry_initial` doubling to
//!   `timing.retry_max`, jittered like the fetch's), with the newest report; a change
//!   never brings the next try forward.

use super::Action;
use crate::config::listed;
use crate::config::{Secs, ServerUrl};
use crate::fetch::worker::Taken;
use crate::fetch::{backoff, FailureKind, FetchError};
use crate::format::Serial;
use crate::report::Report;
use crate::time::Mono;

/// The report's file name on the server.
pub(crate) fn report_file(mac: Serial) -> String {
    format!("{mac}-license-status.json")
}

/// A report as compared (without its instants), and its instants: when it was made and
/// the instant judged at. Serialised only as its upload starts (one replaced before
/// then never is).
#[derive(Clone)]
struct Ready {
    key: Report,
    made: String,
    evaluated_at: Option<String>,
}

impl Ready {
    /// The bytes uploaded: the whole report, its instants in place.
    fn body(&mut self) -> Option<Vec<u8>> {
        self.key.reported_at = std::mem::take(&mut self.made);
        self.key.evaluated_at = self.evaluated_at.take();
        let body = serde_json::to_vec_pretty(&self.key);
        self.made = std::mem::take(&mut self.key.reported_at);
        self.evaluated_at = self.key.evaluated_at.take();
        let mut body = body.ok()?;
        body.push(b'\n');
        Some(body)
    }
}

/// The last report a server took.
struct Sent {
    /// The report as compared.
    key: Report,
    /// Where it went.
    base: ServerUrl,
    /// When it was made (RFC 3339, the phone's clock at the time).
    made: String,
    /// What was tried beside the plain way (servers that failed first, FTP's fallbacks).
    tried: Option<String>,
}

/// The uploads' state: what was sent, what waits, the upload under way.
pub(crate) struct Uploads {
    /// Where reports go; `Err`: nowhere, and why.
    server: Result<Vec<ServerUrl>, String>,
    name: String,
    sent: Option<Sent>,
    /// A report not yet taken.
    wanted: Option<Ready>,
    /// The report the upload under way carries.
    flight: Option<Ready>,
    failures: u32,
    retry_at: Option<Mono>,
    last_error: Option<String>,
    initial: Secs,
    max: Secs,
    jitter: u64,
}

impl Uploads {
    /// The uploads of the phone `mac` to `server` (base URLs, or why none), backing off
    /// from `initial` to `max`.
    pub(crate) fn new(
        server: Result<Vec<ServerUrl>, String>,
        mac: Serial,
        (initial, max): (Secs, Secs),
        jitter: u64,
    ) -> Uploads {
        if let Err(why) = &server {
            log::info!("status report: {why}");
        }
        Uploads {
            server,
            name: report_file(mac),
            sent: None,
            wanted: None,
            flight: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            initial,
            max,
            jitter,
        }
    }

    /// Takes over what `old` sent and is sending, when both send to the same servers (a
    /// reload). Returns whether the upload under way (if any) is now this one's.
    pub(crate) fn continue_from(&mut self, old: &mut Uploads) -> bool {
        // The same servers as named (credentials aside).
        let same = match (&self.server, &old.server) {
            (Ok(new), Ok(old)) => listed(new) == listed(old),
            _ => false,
        };
        if same {
            // The upload under way too, and the back-off: a storm of SIGHUPs neither
            // starts an upload per reload nor hurries the next try.
            self.sent = old.sent.take();
            self.flight = old.flight.take();
            self.wanted = old.wanted.take();
            self.failures = old.failures;
            self.retry_at = old.retry_at;
            self.last_error = old.last_error.take();
        }
        same
    }

    /// Sends to `server` from now on, when it is not where reports go already (the
    /// provisioning server's log folder changed): nothing is known there yet, so the
    /// report is sent afresh at once; an upload under way to the old place is left to
    /// end unread.
    pub(crate) fn retarget(&mut self, server: Result<Vec<ServerUrl>, String>) {
        let same = match (&self.server, &server) {
            (Ok(new), Ok(old)) => listed(new) == listed(old),
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if same {
            return;
        }
        match &server {
            Ok(bases) => log::info!("status report: now to {}", listed(bases)),
            Err(why) => log::info!("status report: {why}"),
        }
        self.server = server;
        self.sent = None;
        self.flight = None;
        self.failures = 0;
        self.retry_at = None;
        self.last_error = None;
    }

    /// Whether an upload is under way.
    pub(crate) fn uploading(&self) -> bool {
        self.flight.is_some()
    }

    /// The report as it stands now: sent when it differs from the last one taken (and
    /// from the one under way).
    pub(crate) fn offer(&mut self, mut report: Report) {
        if self.server.is_err() {
            return;
        }
        // Compared without its instants (taken out, put back only to be sent).
        let made = std::mem::take(&mut report.reported_at);
        let evaluated_at = report.evaluated_at.take();
        let in_flight = self.flight.as_ref().map(|ready| &ready.key);
        let taken = self.sent.as_ref().map(|sent| &sent.key);
        if in_flight.or(taken) == Some(&report) {
            self.wanted = None;
            return;
        }
        if self.wanted.as_ref().is_some_and(|w| w.key == report) {
            return;
        }
        self.wanted = Some(Ready {
            key: report,
            made,
            evaluated_at,
        });
    }

    /// The upload of the wanted report, when none is under way and no back-off holds it.
    pub(crate) fn start_if_due(&mut self, now: Mono) -> Option<Action> {
        if self.server.is_err() || self.flight.is_some() {
            return None;
        }
        if self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let mut ready = self.wanted.take()?;
        let action = Action::Upload {
            name: self.name.clone(),
            body: ready.body()?,
        };
        self.flight = Some(ready);
        Some(action)
    }

    /// The upload under way is over: `None` when it ended without an answer (no thread
    /// could be started, or it ended without one), with `why`.
    pub(crate) fn finished(&mut self, result: Result<Taken, UploadFailure>, now: Mono) {
        let Some(ready) = self.flight.take() else {
            return;
        };
        match result {
            Ok(Taken { base, tried }) => {
                let to = base.as_str();
                match &tried {
                    Some(tried) => log::info!("status report sent to {to}{} ({tried})", self.name),
                    None => log::info!("status report sent to {to}{}", self.name),
                }
                self.sent = Some(Sent {
                    key: ready.key,
                    base,
                    made: ready.made,
                    tried,
                });
                self.failures = 0;
                self.retry_at = None;
                self.last_error = None;
            }
            // A server that took a report since the configuration was read is not one
            // that takes none: it refuses this one (full, or in a strange state), and is
            // asked again after the back-off.
            Err(UploadFailure::Server(e))
                if e.kind == FailureKind::NoUploads && self.sent.is_none() =>
            {
                // Not a failure to try again: this server never takes one (until the
                // configuration changes).
                log::info!("status report: the server takes no uploads: {e}");
                self.server = Err(format!("off: {e}"));
                self.wanted = None;
            }
            Err(failure) => {
                // Sent again (or a newer one) after the back-off.
                self.wanted.get_or_insert(ready);
                self.failed(now, failure.to_string());
            }
        }
    }

    fn failed(&mut self, now: Mono, why: String) {
        let delay = backoff(self.failures, self.initial, self.max, self.jitter);
        self.failures = self.failures.saturating_add(1);
        log::warn!("status report not sent: {why}; trying again in {delay}s");
        self.retry_at = Some(now.plus_secs(delay));
        self.last_error = Some(why);
    }

    /// When to wake for a retry (a report waits, none under way).
    pub(crate) fn next_attempt(&self) -> Option<Mono> {
        match (&self.wanted, &self.flight) {
            (Some(_), None) => self.retry_at,
            _ => None,
        }
    }

    /// The uploads in words, for `status`.
    pub(crate) fn words(&self) -> String {
        let bases = match &self.server {
            Err(why) => return why.clone(),
            Ok(bases) => bases,
        };
        let mut words = match &self.sent {
            Some(Sent {
                base,
                made,
                tried: None,
                ..
            }) => format!("{}{} (the report of {made})", base.as_str(), self.name),
            Some(Sent {
                base,
                made,
                tried: Some(tried),
                ..
            }) => format!(
                "{}{} (the report of {made}; {tried})",
                base.as_str(),
                self.name
            ),
            None => format!("not sent yet (to {})", listed(bases)),
        };
        if self.flight.is_some() {
            words.push_str("; an upload is under way");
        } else if let Some(why) = &self.last_error {
            words.push_str(&format!("; failing ({} in a row): {why}", self.failures));
        } else if self.wanted.is_some() {
            words.push_str("; a newer one waits");
        }
        words
    }
}

/// Why an upload gave no report taken.
#[derive(Debug)]
pub(crate) enum UploadFailure {
    /// The server's answer, or the failure to reach it.
    Server(FetchError),
    /// No thread could be started for it (out of memory, too many threads).
    NotStarted(String),
    /// Its thread ended without an answer.
    NoAnswer,
}

impl std::fmt::Display for UploadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadFailure::Server(e) => write!(f, "{e}"),
            UploadFailure::NotStarted(why) => write!(f, "cannot start the upload: {why}"),
            UploadFailure::NoAnswer => f.write_str("the upload thread ended without an answer"),
        }
    }
}

#[cfg(test)]
mod tests;
