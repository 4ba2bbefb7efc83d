//! The daemon's log sent to syslog (`[syslog]`, `config::syslog`): to a remote server in
//! RFC 5424 over UDP, TCP (RFC 6587 octet counting) or TLS (RFC 5425), and to the local
//! `syslogd` on `/dev/log` (BusyBox's, in its BSD form), each line with its severity
//! (`format::severity`) and the configured facility; lines less severe than the
//! configured level are not sent.
//!
//! **Never waited on.** The logging call only puts the line on a bounded queue
//! ([`QUEUE`] lines) with `try_send`; when the queue is full the line is dropped and
//! counted. One sender thread takes the lines and does all the I/O (`sender.rs`), with
//! connect and write timeouts and a back-off between connection attempts, so a syslog
//! server that is down, slow, refusing or stalled may hold that thread, never the
//! daemon's loop. What was dropped is said once the queue has drained ("N log lines
//! dropped: ...") as a warning of the log itself (standard error and syslog).

mod format;
mod sender;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::syslog::{Local, Syslog, DEV_LOG};

pub(crate) use format::severity;

/// The lines the queue holds before new ones are dropped.
pub(crate) const QUEUE: usize = 256;

/// The log target of an `info` line that is sent as notice (5), the severity of what is
/// normal but significant: `log::info!(target: NOTICE, ...)`.
pub(crate) const NOTICE: &str = "license_agent::notice";

/// One line on its way: its severity, when it was logged, the message (escaped).
struct Line {
    severity: u8,
    time: SystemTime,
    message: String,
}

/// Where lines go: the queue's end that the log writes to.
pub(crate) struct Sink {
    queue: SyncSender<Line>,
    /// Lines dropped because the queue was full (said by the sender thread).
    dropped: Arc<AtomicU64>,
    /// The threshold: severities above it are not sent.
    level: u8,
    /// The local syslog socket written, if any.
    local: Option<PathBuf>,
    /// Says when the sender thread has sent every line and ended.
    done: Option<mpsc::Receiver<()>>,
}

impl Sink {
    /// Starts the sender thread for `config`; `hostname` is the phone's MAC (or `-`).
    /// `None` when there is nowhere to send (no server, and no local socket).
    pub(crate) fn start(config: &Syslog, hostname: &str) -> Option<Sink> {
        let local = match &config.local {
            Local::Off => None,
            Local::Socket(path) => Some(path.clone()),
            Local::Auto => {
                use std::os::unix::fs::FileTypeExt;
                std::fs::metadata(DEV_LOG)
                    .is_ok_and(|m| m.file_type().is_socket())
                    .then(|| DEV_LOG.into())
            }
        };
        if local.is_none() && config.server.is_none() {
            return None;
        }
        let (queue, lines) = mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let sender = sender::Sender::new(config, local.clone(), hostname, Arc::clone(&dropped));
        let (ended, done) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("syslog".into())
            .spawn(move || {
                sender.run(&lines);
                let _ = ended.send(());
            });
        if let Err(e) = started {
            log::error!(
                "syslog: cannot start the sender thread: {e}; logging to standard error only"
            );
            return None;
        }
        Some(Sink {
            queue,
            dropped,
            level: config.level,
            local,
            done: Some(done),
        })
    }

    /// Lets the sender thread send what is queued, waiting at most `within` (a daemon
    /// that stops says so to its syslog server too, unless that server is in trouble).
    pub(crate) fn finish(self, within: std::time::Duration) {
        let Sink { queue, done, .. } = self;
        drop(queue);
        if let Some(done) = done {
            let _ = done.recv_timeout(within);
        }
    }

    /// The local syslog socket written, if any.
    pub(crate) fn local(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// Whether a line of `severity` is sent.
    pub(crate) fn wants(&self, severity: u8) -> bool {
        severity <= self.level
    }

    /// Queues a line (an escaped message) without ever waiting: dropped and counted when
    /// the queue is full.
    pub(crate) fn send(&self, severity: u8, message: &str) {
        if !self.wants(severity) {
            return;
        }
        let line = Line {
            severity,
            time: SystemTime::now(),
            message: message.to_string(),
        };
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose queue nobody reads: the queue takes [`QUEUE`] lines, the rest are
    /// counted, and a line above the threshold is neither queued nor counted.
    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (queue, lines) = mpsc::sync_channel(QUEUE);
        let sink = Sink {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            level: 6,
            local: None,
            done: None,
        };
        let started = std::time::Instant::now();
        for n in 0..QUEUE + 100 {
            sink.send(6, &format!("line {n}"));
        }
        sink.send(7, "debug, below the threshold");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 100);
        let queued: Vec<String> = lines.try_iter().map(|l| l.message).collect();
        assert_eq!(queued.len(), QUEUE);
        assert_eq!(queued[0], "line 0");
        assert_eq!(queued[QUEUE - 1], format!("line {}", QUEUE - 1));
        // The reader gone: still no wait, still counted.
        drop(lines);
        sink.send(3, "error");
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 101);
    }
}
