//! The daemon's log: standard error through `env_logger`, with two rules for text a
//! neighbour controls.
//!
//! - **Escaped.** Every message is written with its control characters escaped (`\n`,
//!   `\r`, `\t`, `\u{1b}` as `\x1b`, …) and its backslashes doubled, so a file name, a
//!   server's words or a supervisor's line can neither forge a log line nor drive a
//!   terminal.
//! - **Folded.** A call site that logs more than [`BURST`] lines within [`WINDOW`] has
//!   the rest counted instead of written, and one line says how many were folded when
//!   the window ends (the daemon's loop asks [`summary_due_in`] so that line is written
//!   on time even when the site falls silent). Anything a neighbour can repeat — a
//!   supervisor flipping its call state, a client reconnecting, a server failing — thus
//!   costs a bounded number of lines however fast it repeats (a supervisor flipping
//!   `CALL-STATE` used to write 24 MB a second onto the phone's flash).
//! - **Never waited on.** On a phone, standard error is a FIFO read by `logger`; a
//!   reader that stops (a hung syslog) would make a write wait for ever, and with it the
//!   loop. Each line is written only when `poll` says standard error takes it now (a
//!   pipe then has room for a line of up to `PIPE_BUF` bytes, written whole); otherwise
//!   it is dropped and counted, and the count is said once standard error takes lines
//!   again. Lines are cut to [`LINE_MAX`] bytes.
//! - **Also to syslog.** Every line that passes the folding (and every fold summary)
//!   also goes to syslog (`crate::syslog`) with its severity, once [`start_syslog`] has
//!   the `[syslog]` configuration; standard error is kept too, always (a foreground run,
//!   systemd's journal, the init script's log file). `RUST_LOG` filters standard error
//!   (default `info`); `syslog.level` filters syslog, so `level = "debug"` sends debug
//!   lines whatever `RUST_LOG` says.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines a call site may write within [`WINDOW`] before the rest are folded.
pub(crate) const BURST: u32 = 50;
/// The window over which a call site's lines are counted.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// The longest line written (within `PIPE_BUF`, so a pipe takes it whole).
pub(crate) const LINE_MAX: usize = 4000;

/// One call site's count in the current window.
struct Site {
    start: Instant,
    written: u32,
    folded: u64,
    /// The last folded message (escaped), for the summary.
    example: String,
    level: log::Level,
    target: String,
}

/// The folding state of every call site, keyed by `file:line`.
#[derive(Default)]
struct Folds {
    sites: HashMap<String, Site>,
}

impl Folds {
    /// Whether a line of `key` may be written at `now`; the summaries of windows that
    /// ended go to `summaries`.
    fn admit(
        &mut self,
        key: &str,
        record: &log::Record<'_>,
        message: &str,
        now: Instant,
        summaries: &mut Vec<Summary>,
    ) -> bool {
        let site = self.sites.entry(key.to_string()).or_insert_with(|| Site {
            start: now,
            written: 0,
            folded: 0,
            example: String::new(),
            level: record.level(),
            target: record.target().to_string(),
        });
        if now.saturating_duration_since(site.start) >= WINDOW {
            if let Some(line) = summary(key, site) {
                summaries.push(line);
            }
            site.start = now;
            site.written = 0;
            site.folded = 0;
        }
        if site.written < BURST {
            site.written += 1;
            return true;
        }
        site.folded += 1;
        site.example = message.chars().take(120).collect();
        false
    }

    /// The summaries of the windows that have ended by `now` (and forgets idle sites).
    fn due(&mut self, now: Instant) -> Vec<Summary> {
        let mut lines = Vec::new();
        self.sites.retain(|key, site| {
            if now.saturating_duration_since(site.start) < WINDOW {
                return true;
            }
            lines.extend(summary(key, site));
            false
        });
        lines
    }

    /// How long until the next window with folded lines ends.
    fn next_due(&self, now: Instant) -> Option<Duration> {
        self.sites
            .values()
            .filter(|s| s.folded > 0)
            .map(|s| (s.start + WINDOW).saturating_duration_since(now))
            .min()
    }
}

/// A fold summary: the site's level and target (for its syslog severity), the line.
type Summary = (log::Level, String, String);

fn summary(key: &str, site: &Site) -> Option<Summary> {
    (site.folded > 0).then(|| {
        let line = format!(
            "[{:<5} {}] {} more line(s) like this one folded in {} s ({key}): {}",
            site.level,
            site.target,
            site.folded,
            WINDOW.as_secs(),
            site.example
        );
        (site.level, site.target.clone(), line)
    })
}

fn folds() -> &'static Mutex<Folds> {
    static FOLDS: OnceLock<Mutex<Folds>> = OnceLock::new();
    FOLDS.get_or_init(|| Mutex::new(Folds::default()))
}

/// `text` with control characters escaped and backslashes doubled.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Lines dropped because standard error did not take them.
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes one line (`\n`-terminated, cut to [`LINE_MAX`]) to standard error if it
/// takes it now; else counts it as dropped.
fn emit(line: &str) {
    use std::sync::atomic::Ordering;
    let stderr = std::io::stderr();
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&stderr),
        nix::poll::PollFlags::POLLOUT,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLOUT));
    if !ready {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut bytes = line.as_bytes();
    if bytes.len() > LINE_MAX {
        let mut cut = LINE_MAX;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        bytes = &line.as_bytes()[..cut];
    }
    let mut out = Vec::with_capacity(bytes.len() + 96);
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(
            out,
            "[WARN  license_agent::logging] {dropped} log line(s) dropped: standard error was not taking them"
        );
    }
    out.extend_from_slice(bytes);
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    let _ = stderr.lock().write_all(&out);
}

/// Where lines go besides standard error (none until [`start_syslog`]).
fn sink() -> &'static Mutex<Option<crate::syslog::Sink>> {
    static SINK: OnceLock<Mutex<Option<crate::syslog::Sink>>> = OnceLock::new();
    SINK.get_or_init(|| Mutex::new(None))
}

/// Sends one line (escaped) to syslog, if it is started; never waits.
fn to_syslog(level: log::Level, target: &str, message: &str) {
    if let Ok(sink) = sink().lock() {
        if let Some(sink) = sink.as_ref() {
            sink.send(crate::syslog::severity(level, target), message);
        }
    }
}

/// The daemon's logger: `RUST_LOG`'s filter for standard error, `[syslog]`'s level for
/// syslog, one folding for both.
struct Logger {
    /// `env_logger`'s filter (`RUST_LOG`, default `info`), used only to filter.
    stderr: env_logger::Logger,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.stderr.enabled(metadata) || syslog_wants(metadata.level(), metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        let to_stderr = self.stderr.matches(record);
        if !to_stderr && !syslog_wants(record.level(), record.target()) {
            return;
        }
        let message = escape(&record.args().to_string());
        let key = format!(
            "{}:{}",
            record.file().unwrap_or("?"),
            record.line().unwrap_or(0)
        );
        let mut summaries = Vec::new();
        let admitted = folds()
            .lock()
            .map(|mut f| f.admit(&key, record, &message, Instant::now(), &mut summaries))
            .unwrap_or(true);
        for (level, target, line) in summaries {
            emit(&line);
            to_syslog(level, &target, &line);
        }
        if admitted {
            if to_stderr {
                emit(&format!(
                    "[{:<5} {}] {}",
                    record.level(),
                    record.target(),
                    message
                ));
            }
            to_syslog(record.level(), record.target(), &message);
        }
    }

    fn flush(&self) {}
}

/// Whether syslog is started and takes lines of `level`.
fn syslog_wants(level: log::Level, target: &str) -> bool {
    sink().lock().is_ok_and(|sink| {
        sink.as_ref()
            .is_some_and(|s| s.wants(crate::syslog::severity(level, target)))
    })
}

/// Logs to standard error, `info` unless RUST_LOG says otherwise, escaped and folded.
pub(crate) fn init() {
    let stderr =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = stderr.filter();
    if log::set_boxed_logger(Box::new(Logger { stderr })).is_ok() {
        log::set_max_level(max);
    }
}

/// Also sends the log to syslog as `config` says (`hostname`: the phone's MAC); a
/// second call replaces the first (its sender thread ends once its queue is empty).
pub(crate) fn start_syslog(config: &crate::config::syslog::Syslog, hostname: &str) {
    let started = crate::syslog::Sink::start(config, hostname);
    if started.is_some() {
        // Lines below RUST_LOG's level may be wanted by syslog.
        let level = match config.level {
            0..=3 => log::LevelFilter::Error,
            4 => log::LevelFilter::Warn,
            5 | 6 => log::LevelFilter::Info,
            _ => log::LevelFilter::Debug,
        };
        if level > log::max_level() {
            log::set_max_level(level);
        }
    }
    let local = started
        .as_ref()
        .and_then(|s| s.local().map(|p| p.display().to_string()));
    if let Ok(mut sink) = sink().lock() {
        *sink = started;
    }
    if let Some(path) = local {
        // The init script's log forwarder stops at this line (firmware/init.d).
        log::info!(target: crate::syslog::NOTICE, "{LOCAL_SYSLOG_SAID} {path}");
    }
}

/// Stops sending to syslog, once what is queued is sent or `within` has passed.
pub(crate) fn stop_syslog(within: Duration) {
    let sink = sink().lock().ok().and_then(|mut sink| sink.take());
    if let Some(sink) = sink {
        sink.finish(within);
    }
}

/// Said once the log goes to the local syslogd: from then on the init script passes on
/// only what standard error holds besides log lines.
pub(crate) const LOCAL_SYSLOG_SAID: &str = "syslog: sending to the local syslogd at";

/// Writes the summaries of windows that have ended; returns how long until the next
/// one is due (for the loop's `poll` timeout).
pub(crate) fn summary_due_in() -> Option<Duration> {
    let now = Instant::now();
    let Ok(mut folds) = folds().lock() else {
        return None;
    };
    let lines = folds.due(now);
    let next = folds.next_due(now);
    drop(folds);
    for (level, target, line) in lines {
        emit(&line);
        to_syslog(level, &target, &line);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_log_raw() {
        assert_eq!(
            escape("a.cfg\n[INFO  license_agent] forged\u{1b}[2J\\"),
            "a.cfg\\n[INFO  license_agent] forged\\u{1b}[2J\\\\"
        );
        assert_eq!(escape("plain words: ok"), "plain words: ok");
    }

    #[test]
    fn a_call_site_repeated_is_folded_and_counted() {
        let mut folds = Folds::default();
        let t0 = Instant::now();
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("t")
            .args(format_args!("x"))
            .build();
        let mut summaries = Vec::new();
        let written = (0..10_000)
            .filter(|_| folds.admit("f.rs:1", &record, "call active", t0, &mut summaries))
            .count();
        assert_eq!(written, BURST as usize);
        assert!(summaries.is_empty());
        // Another call site is counted on its own.
        assert!(folds.admit("f.rs:2", &record, "other", t0, &mut summaries));
        assert_eq!(folds.next_due(t0), Some(WINDOW));
        // The window ends: one line says how many were folded.
        let lines = folds.due(t0 + WINDOW);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0]
                .2
                .contains(&format!("{} more line(s)", 10_000 - BURST)),
            "{:?}",
            lines[0]
        );
        assert!(lines[0].2.contains("call active"), "{:?}", lines[0]);
        assert_eq!((lines[0].0, lines[0].1.as_str()), (log::Level::Info, "t"));
        assert_eq!(folds.next_due(t0 + WINDOW), None);
    }
}
