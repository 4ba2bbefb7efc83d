//! The status report's upload (`<mac>-license-status.json`, `docs/report-schema.md`):
//! after the boot cycle and whenever the report changes, it goes to the provisioning
//! server (`report` in the configuration), off the loop on a thread of its own like a
//! fetch, so no server can hold the loop.
//!
//! - "Changed" leaves out the instants the report was made and judged at: a report
//!   that says the same again is not sent again. (The last fetch's time is in it, so a
//!   phone that polls its server also tells it, at each poll, that it is alive.)
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

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::config::Config;
use crate::fetch::worker::{self, Job, Server, Taken};
use crate::fetch::{backoff, FailureKind, FetchError, Provisioning};
use crate::format::Serial;
use crate::report::Report;
use crate::time::Mono;

/// The report's file name on the server.
pub(crate) fn report_file(mac: Serial) -> String {
    format!("{mac}-license-status.json")
}

/// A report as compared (without its instants), as sent, and when it was made.
#[derive(Clone)]
struct Ready {
    key: Vec<u8>,
    body: Vec<u8>,
    made: String,
}

/// The last report a server took.
struct Sent {
    /// The report as compared.
    key: Vec<u8>,
    /// Where it went.
    base: String,
    /// When it was made (RFC 3339, the phone's clock at the time).
    made: String,
    /// What was tried beside the plain way (servers that failed first, FTP's fallbacks).
    tried: Option<String>,
}

/// The uploader's state: what was sent, what waits, the upload under way.
pub(crate) struct Reporter {
    /// Where reports go; `Err`: nowhere, and why (for the status).
    server: Result<Arc<dyn Server>, String>,
    name: String,
    /// The last report a server took (its key), where and when (RFC 3339, the phone's
    /// clock at the time it was made).
    sent: Option<Sent>,
    /// A report not yet taken.
    wanted: Option<Ready>,
    flight: Option<(Job<Result<Taken, FetchError>>, Ready)>,
    failures: u32,
    retry_at: Option<Mono>,
    last_error: Option<String>,
    initial: crate::config::Secs,
    max: crate::config::Secs,
    jitter: u64,
}

impl Reporter {
    /// The uploader of `config` for the phone `mac`.
    pub(crate) fn new(config: &Config, mac: Serial, jitter: u64) -> Reporter {
        let servers = config.report_servers();
        let server = if servers.is_empty() {
            Err(match config.report {
                crate::config::ReportTo::Off => "off (report = false)".to_string(),
                _ if config.servers.is_empty() => "off: no server".to_string(),
                _ => "off: the servers take no uploads (TFTP); set report = URL".to_string(),
            })
        } else {
            Provisioning::new(&servers, &config.fetch, mac)
                .map(|p| Arc::new(p) as Arc<dyn Server>)
                .map_err(|e| format!("off: {e}"))
        };
        Self::with_server(server, mac, config, jitter)
    }

    /// The uploader for `server` (tests give their own).
    pub(crate) fn with_server(
        server: Result<Arc<dyn Server>, String>,
        mac: Serial,
        config: &Config,
        jitter: u64,
    ) -> Reporter {
        if let Err(why) = &server {
            log::info!("status report: {why}");
        }
        Reporter {
            server,
            name: report_file(mac),
            sent: None,
            wanted: None,
            flight: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            initial: config.timing.retry_initial,
            max: config.timing.retry_max,
            jitter,
        }
    }

    /// Takes over what `old` sent and is sending, when both send to the same servers (a
    /// reload).
    pub(crate) fn continue_from(&mut self, old: &mut Reporter) {
        let same = match (&self.server, &old.server) {
            (Ok(new), Ok(old)) => new.listed() == old.listed(),
            _ => false,
        };
        if same {
            // The upload under way too, and the back-off: a storm of SIGHUPs neither
            // starts an upload thread per reload nor hurries the next try.
            self.sent = old.sent.take();
            self.flight = old.flight.take();
            self.wanted = old.wanted.take();
            self.failures = old.failures;
            self.retry_at = old.retry_at;
            self.last_error = old.last_error.take();
        }
    }

    /// The report as it stands now: sent when it differs from the last one taken (and
    /// from the one under way).
    pub(crate) fn offer(&mut self, report: &Report) {
        if self.server.is_err() {
            return;
        }
        let mut timeless = report.clone();
        timeless.reported_at = String::new();
        timeless.evaluated_at = None;
        let Ok(key) = serde_json::to_vec(&timeless) else {
            return;
        };
        let in_flight = self.flight.as_ref().map(|(_, ready)| &ready.key);
        let taken = self.sent.as_ref().map(|sent| &sent.key);
        if in_flight.or(taken) == Some(&key) {
            self.wanted = None;
            return;
        }
        if self.wanted.as_ref().is_some_and(|w| w.key == key) {
            return;
        }
        let Ok(mut body) = serde_json::to_vec_pretty(report) else {
            return;
        };
        body.push(b'\n');
        self.wanted = Some(Ready {
            key,
            body,
            made: report.reported_at.clone(),
        });
    }

    /// Starts the upload of the wanted report when none is under way and no back-off
    /// holds it.
    pub(crate) fn start_if_due(&mut self, now: Mono) {
        let (Ok(server), None) = (&self.server, &self.flight) else {
            return;
        };
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        let Some(ready) = self.wanted.take() else {
            return;
        };
        let (server, name, body) = (server.clone(), self.name.clone(), ready.body.clone());
        match Job::start("report", move || {
            worker::upload(server.as_ref(), &name, &body)
        }) {
            Ok(job) => self.flight = Some((job, ready)),
            Err(e) => {
                // No thread now (out of memory, too many threads): tried again later.
                self.wanted = Some(ready);
                self.failed(now, format!("cannot start the upload: {e}"));
            }
        }
    }

    /// The descriptor to poll while an upload is under way.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.flight.as_ref().map(|(job, _)| job.fd())
    }

    /// After the descriptor was readable: the upload's outcome, if it is over.
    pub(crate) fn finished(&mut self, now: Mono) {
        let Some(result) = self.flight.as_ref().and_then(|(job, _)| job.try_take()) else {
            return;
        };
        let Some((_, ready)) = self.flight.take() else {
            return;
        };
        match result {
            Some(Ok(Taken { base, tried })) => {
                match &tried {
                    Some(tried) => {
                        log::info!("status report sent to {base}{} ({tried})", self.name)
                    }
                    None => log::info!("status report sent to {base}{}", self.name),
                }
                self.sent = Some(Sent {
                    key: ready.key,
                    base: base.to_string(),
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
            Some(Err(e)) if e.kind == FailureKind::NoUploads && self.sent.is_none() => {
                // Not a failure to try again: this server never takes one (until the
                // configuration changes).
                log::info!("status report: the server takes no uploads: {e}");
                self.server = Err(format!("off: {e}"));
                self.wanted = None;
            }
            Some(Err(e)) => {
                // Sent again (or a newer one) after the back-off.
                self.wanted.get_or_insert(ready);
                self.failed(now, e.to_string());
            }
            None => {
                self.wanted.get_or_insert(ready);
                self.failed(now, "the upload thread ended without an answer".into());
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

    /// When the loop must wake for a retry (a report waits, none under way).
    pub(crate) fn next_attempt(&self) -> Option<Mono> {
        match (&self.wanted, &self.flight) {
            (Some(_), None) => self.retry_at,
            _ => None,
        }
    }

    /// The uploads in words, for `status`.
    pub(crate) fn words(&self) -> String {
        let server = match &self.server {
            Err(why) => return why.clone(),
            Ok(server) => server,
        };
        let mut words = match &self.sent {
            Some(Sent {
                base,
                made,
                tried: None,
                ..
            }) => format!("{base}{} (the report of {made})", self.name),
            Some(Sent {
                base,
                made,
                tried: Some(tried),
                ..
            }) => format!("{base}{} (the report of {made}; {tried})", self.name),
            None => format!("not sent yet (to {})", server.listed()),
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

#[cfg(test)]
mod tests;
