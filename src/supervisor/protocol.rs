//! The supervisor protocol's wire format (`shared/spec/supervisor-protocol.md`), both
//! directions, written once for the agent and for `supervisor-sim`:
//!
//! - UTF-8 text lines ending in `\n`, at most [`MAX_LINE`] bytes including the `\n`.
//!   Words are separated by exactly one space; keywords are upper case.
//! - Agent → supervisor ([`ToSupervisor`]): `HELLO license-agent/1`,
//!   `FEATURES a,b,c` (`FEATURES -` for none), `REBOOT <id> <cause>`, `ERR <text>`.
//! - Supervisor → agent ([`FromSupervisor`]): `HELLO supervisor/<version>`,
//!   `CALL-STATE idle|active`, `CHECK-SYNC`, `OK <id>`, `BUSY <id>`, `ERR <text>`.
//! - `<id>` is a decimal `u64` without sign or leading zeros; `<cause>` is one of
//!   `license-expired`, `license-changed`, `feature-licensed`; a feature name is
//!   `[a-z0-9-]+` (but not `-` alone, which means "none"), each at most once.
//! - `<text>` of `ERR` is everything after `ERR ` (free text, not empty).
//!
//! `parse` takes one line without its `\n` (one trailing `\n` is tolerated, so
//! `parse(&m.to_line())` works); anything else is an error whose text says what was
//! expected, fit to be sent back as `ERR <text>`. `to_line` renders a line ending in `\n`.
//!
//! [`LineReader`] turns the bytes of a stream into lines, however they are chunked, with
//! bounded memory: an overlong line is reported once and skipped, a line that is not
//! UTF-8 is reported, nothing panics.

use std::collections::BTreeSet;

/// The longest line, in bytes, including its `\n`.
pub const MAX_LINE: usize = 1024;

/// The agent's greeting, the only version it speaks.
const AGENT_HELLO: &str = "license-agent/1";
/// What a supervisor's greeting starts with; the version follows.
const SUPERVISOR_PREFIX: &str = "supervisor/";
/// The longest piece of a peer's line quoted in an error.
const QUOTE_MAX: usize = 60;

// One definition of each, shared with the reboot rules of the engine.
pub use crate::engine::reboot::{CallState, Cause};

/// A line the supervisor sends to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromSupervisor {
    /// `HELLO supervisor/<version>`: the answer to the agent's HELLO.
    Hello { version: String },
    /// `CALL-STATE idle|active`: right after HELLO, then on every change.
    CallState(CallState),
    /// `CHECK-SYNC`: fetch the license files now.
    CheckSync,
    /// `OK <id>`: the reboot asked for will happen.
    Ok(u64),
    /// `BUSY <id>`: refused, a call is in progress.
    Busy(u64),
    /// `ERR <text>`: the agent's last line was not understood.
    Err(String),
}

/// A line the agent sends to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToSupervisor {
    /// `HELLO license-agent/1`: the first line after connecting.
    Hello,
    /// `FEATURES a,b,c` or `FEATURES -`: the enabled feature set.
    Features(Vec<String>),
    /// `REBOOT <id> <cause>`: ask for a reboot.
    Reboot { id: u64, cause: Cause },
    /// `ERR <text>`: the supervisor's last line was not understood.
    Err(String),
}

const FROM_SUPERVISOR_FORMS: &str = "HELLO supervisor/<version>, CALL-STATE idle|active, \
                                     CHECK-SYNC, OK <id>, BUSY <id> or ERR <text>";
const TO_SUPERVISOR_FORMS: &str =
    "HELLO license-agent/1, FEATURES <name>,<name>... or FEATURES -, REBOOT <id> <cause> or ERR <text>";

impl FromSupervisor {
    /// Parses one line from the supervisor (without its `\n`; one trailing `\n` is
    /// tolerated). The error says what was expected.
    pub(crate) fn parse(line: &str) -> Result<FromSupervisor, String> {
        let line = prepare(line, FROM_SUPERVISOR_FORMS)?;
        if let Some(text) = err_text(line)? {
            return Ok(FromSupervisor::Err(text));
        }
        let words = words(line)?;
        match words[0] {
            "HELLO" => {
                let [_, greeting] = exact::<2>(&words, "HELLO supervisor/<version>")?;
                match greeting.strip_prefix(SUPERVISOR_PREFIX) {
                    Some(version) if is_version(version) => Ok(FromSupervisor::Hello {
                        version: version.to_string(),
                    }),
                    _ => Err(format!(
                        "expected HELLO supervisor/<version> (a version of printable ASCII \
                         characters), got HELLO {}",
                        quote(greeting)
                    )),
                }
            }
            "CALL-STATE" => {
                let [_, state] = exact::<2>(&words, "CALL-STATE idle|active")?;
                CallState::parse(state)
                    .map(FromSupervisor::CallState)
                    .ok_or_else(|| {
                        format!(
                            "expected CALL-STATE idle or CALL-STATE active, got CALL-STATE {}",
                            quote(state)
                        )
                    })
            }
            "CHECK-SYNC" => {
                exact::<1>(&words, "CHECK-SYNC")?;
                Ok(FromSupervisor::CheckSync)
            }
            "OK" => {
                let [_, id] = exact::<2>(&words, "OK <id>")?;
                Ok(FromSupervisor::Ok(parse_id(id, "OK <id>")?))
            }
            "BUSY" => {
                let [_, id] = exact::<2>(&words, "BUSY <id>")?;
                Ok(FromSupervisor::Busy(parse_id(id, "BUSY <id>")?))
            }
            other => Err(unknown(other, FROM_SUPERVISOR_FORMS)),
        }
    }

    /// The line, ending in `\n`. An `ERR` text is made one line and cut to fit
    /// [`MAX_LINE`]; other fields are written as given (values from `Self::parse`
    /// round-trip).
    pub fn to_line(&self) -> String {
        match self {
            FromSupervisor::Hello { version } => format!("HELLO {SUPERVISOR_PREFIX}{version}\n"),
            FromSupervisor::CallState(s) => format!("CALL-STATE {}\n", s.word()),
            FromSupervisor::CheckSync => "CHECK-SYNC\n".to_string(),
            FromSupervisor::Ok(id) => format!("OK {id}\n"),
            FromSupervisor::Busy(id) => format!("BUSY {id}\n"),
            FromSupervisor::Err(text) => err_line(text),
        }
    }
}

impl ToSupervisor {
    /// Parses one line from the agent (without its `\n`; one trailing `\n` is
    /// tolerated). The error says what was expected.
    pub fn parse(line: &str) -> Result<ToSupervisor, String> {
        let line = prepare(line, TO_SUPERVISOR_FORMS)?;
        if let Some(text) = err_text(line)? {
            return Ok(ToSupervisor::Err(text));
        }
        let words = words(line)?;
        match words[0] {
            "HELLO" => {
                let [_, greeting] = exact::<2>(&words, "HELLO license-agent/1")?;
                if greeting == AGENT_HELLO {
                    Ok(ToSupervisor::Hello)
                } else {
                    Err(format!(
                        "expected HELLO license-agent/1 (the only version spoken), got HELLO {}",
                        quote(greeting)
                    ))
                }
            }
            "FEATURES" => {
                let [_, list] = exact::<2>(&words, "FEATURES <name>,<name>... or FEATURES -")?;
                parse_features(list).map(ToSupervisor::Features)
            }
            "REBOOT" => {
                let [_, id, cause] = exact::<3>(&words, "REBOOT <id> <cause>")?;
                let id = parse_id(id, "REBOOT <id> <cause>")?;
                let cause = Cause::parse(cause).ok_or_else(|| {
                    format!(
                        "expected a cause (license-expired, license-changed or \
                         feature-licensed) in REBOOT <id> <cause>, got {}",
                        quote(cause)
                    )
                })?;
                Ok(ToSupervisor::Reboot { id, cause })
            }
            other => Err(unknown(other, TO_SUPERVISOR_FORMS)),
        }
    }

    /// The line, ending in `\n`. An `ERR` text is made one line and cut to fit
    /// [`MAX_LINE`]; an empty feature list is `-`; other fields are written as given
    /// (values from [`Self::parse`] round-trip).
    pub(crate) fn to_line(&self) -> String {
        match self {
            ToSupervisor::Hello => format!("HELLO {AGENT_HELLO}\n"),
            ToSupervisor::Features(names) if names.is_empty() => "FEATURES -\n".to_string(),
            ToSupervisor::Features(names) => format!("FEATURES {}\n", names.join(",")),
            ToSupervisor::Reboot { id, cause } => format!("REBOOT {id} {}\n", cause.word()),
            ToSupervisor::Err(text) => err_line(text),
        }
    }
}

/// Whether `name` may appear in a FEATURES line: `[a-z0-9-]+`, not `-` alone.
pub(crate) fn is_feature_name(name: &str) -> bool {
    !name.is_empty()
        && name != "-"
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks the length, drops one trailing `\n`, refuses an empty line.
fn prepare<'a>(line: &'a str, forms: &str) -> Result<&'a str, String> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    if body.len() + 1 > MAX_LINE {
        return Err(format!(
            "line too long: {} bytes with its newline, at most {MAX_LINE}",
            body.len() + 1
        ));
    }
    if body.is_empty() {
        return Err(format!("empty line: expected {forms}"));
    }
    Ok(body)
}

/// `Some(text)` for an `ERR <text>` line.
fn err_text(line: &str) -> Result<Option<String>, String> {
    if line == "ERR" || line == "ERR " {
        return Err("expected ERR <text>, with a text".to_string());
    }
    Ok(line.strip_prefix("ERR ").map(str::to_string))
}

/// The words of a line, refusing anything but single spaces between them.
fn words(line: &str) -> Result<Vec<&str>, String> {
    let words: Vec<&str> = line.split(' ').collect();
    if words.iter().any(|w| w.is_empty()) {
        return Err(format!(
            "words must be separated by exactly one space, with none at the start or end: {}",
            quote(line)
        ));
    }
    Ok(words)
}

/// Exactly `N` words, or an error naming the expected form.
fn exact<'a, const N: usize>(words: &[&'a str], form: &str) -> Result<[&'a str; N], String> {
    <[&str; N]>::try_from(words).map_err(|_| {
        format!(
            "expected {form} ({N} word{}), got {} words",
            if N == 1 { "" } else { "s" },
            words.len()
        )
    })
}

fn unknown(keyword: &str, forms: &str) -> String {
    format!(
        "unknown message {}: expected {forms} (keywords in upper case)",
        quote(keyword)
    )
}

/// A decimal `u64` without sign or leading zeros.
fn parse_id(text: &str, form: &str) -> Result<u64, String> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "expected <id> in {form} to be a decimal number from 0 to {} without sign or \
             leading zeros, got {}",
                u64::MAX,
                quote(text)
            )
        })
}

fn parse_features(list: &str) -> Result<Vec<String>, String> {
    if list == "-" {
        return Ok(Vec::new());
    }
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for name in list.split(',') {
        if !is_feature_name(name) {
            return Err(format!(
                "expected FEATURES <name>,<name>... (names of a-z, 0-9 and -, separated by \
                 single commas) or FEATURES -, got the name {}",
                quote(name)
            ));
        }
        if !seen.insert(name) {
            return Err(format!(
                "FEATURES names each feature at most once; {} is repeated",
                quote(name)
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// A version: printable ASCII without spaces, not empty.
fn is_version(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())
}

/// `ERR <text>\n` with the text on one line, never empty, cut to fit `MAX_LINE`.
fn err_line(text: &str) -> String {
    let mut line = String::from("ERR ");
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if line.len() + c.len_utf8() + 1 > MAX_LINE {
            break;
        }
        line.push(c);
    }
    if line.len() == 4 {
        line.push('?');
    }
    line.push('\n');
    line
}

/// A peer's text, quoted, escaped and cut short for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// What a [`LineReader`] found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A complete line, without its `\n` and without one trailing `\r`.
    Line(String),
    /// A line longer than the limit: reported once, the rest of it up to its `\n` is
    /// discarded.
    Overlong,
    /// A complete line that is not UTF-8 (discarded).
    NotUtf8,
}

/// Splits a byte stream into lines, buffering at most one line's worth of bytes.
#[derive(Debug, Clone)]
pub struct LineReader {
    /// The unfinished line; always shorter than `limit`.
    buf: Vec<u8>,
    /// The longest line in bytes, including its `\n`.
    limit: usize,
    /// Inside an overlong line already reported: discard up to the next `\n`.
    skipping: bool,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new()
    }
}

impl LineReader {
    /// A reader for protocol lines of at most [`MAX_LINE`] bytes.
    pub fn new() -> LineReader {
        LineReader::with_limit(MAX_LINE)
    }

    /// A reader for lines of at most `limit` bytes including the `\n` (at least 1).
    pub fn with_limit(limit: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            limit: limit.max(1),
            skipping: false,
        }
    }

    /// Takes the next bytes of the stream; returns what they completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Read> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let part = &rest[..i];
                    rest = &rest[i + 1..];
                    if self.skipping {
                        self.skipping = false;
                    } else if self.buf.len() + part.len() + 1 > self.limit {
                        self.buf.clear();
                        out.push(Read::Overlong);
                    } else {
                        self.buf.extend_from_slice(part);
                        out.push(self.finish());
                    }
                }
                None => {
                    if !self.skipping {
                        if self.buf.len() + rest.len() + 1 > self.limit {
                            // Even with its '\n' next, this line is too long.
                            self.buf.clear();
                            self.skipping = true;
                            out.push(Read::Overlong);
                        } else {
                            self.buf.extend_from_slice(rest);
                        }
                    }
                    break;
                }
            }
        }
        out
    }

    /// Bytes of an unfinished line (not counting an overlong line being discarded). A
    /// peer that closes with this above 0 left half a line, which the caller discards.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn finish(&mut self) -> Read {
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        match String::from_utf8(bytes) {
            Ok(line) => Read::Line(line),
            Err(_) => Read::NotUtf8,
        }
    }
}

/// What happened on the link to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// The supervisor answered HELLO: the link is up.
    Up { version: String },
    /// The connection ended (or could not be made), and why.
    Down(String),
    /// A message after the greeting.
    Message(FromSupervisor),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn from_all() -> Vec<FromSupervisor> {
        vec![
            FromSupervisor::Hello {
                version: "1".into(),
            },
            FromSupervisor::Hello {
                version: "2.5-beta".into(),
            },
            FromSupervisor::CallState(CallState::Idle),
            FromSupervisor::CallState(CallState::Active),
            FromSupervisor::CheckSync,
            FromSupervisor::Ok(0),
            FromSupervisor::Ok(u64::MAX),
            FromSupervisor::Busy(7),
            FromSupervisor::Err("unknown message \"FOO\": expected ...".into()),
        ]
    }

    fn to_all() -> Vec<ToSupervisor> {
        let mut all = vec![
            ToSupervisor::Hello,
            ToSupervisor::Features(vec![]),
            ToSupervisor::Features(vec!["vqmon".into()]),
            ToSupervisor::Features(vec![
                "usb-call-recording".into(),
                "feature-00ff".into(),
                "h323".into(),
            ]),
            ToSupervisor::Err("expected CALL-STATE idle".into()),
        ];
        for (id, cause) in Cause::ALL.into_iter().enumerate() {
            all.push(ToSupervisor::Reboot {
                id: id as u64 * 1000,
                cause,
            });
        }
        all
    }

    #[test]
    fn exact_lines() {
        let from: Vec<String> = from_all().iter().map(FromSupervisor::to_line).collect();
        assert_eq!(
            from,
            [
                "HELLO supervisor/1\n",
                "HELLO supervisor/2.5-beta\n",
                "CALL-STATE idle\n",
                "CALL-STATE active\n",
                "CHECK-SYNC\n",
                "OK 0\n",
                "OK 18446744073709551615\n",
                "BUSY 7\n",
                "ERR unknown message \"FOO\": expected ...\n",
            ]
        );
        let to: Vec<String> = to_all().iter().map(ToSupervisor::to_line).collect();
        assert_eq!(
            to,
            [
                "HELLO license-agent/1\n",
                "FEATURES -\n",
                "FEATURES vqmon\n",
                "FEATURES usb-call-recording,feature-00ff,h323\n",
                "ERR expected CALL-STATE idle\n",
                "REBOOT 0 license-expired\n",
                "REBOOT 1000 license-changed\n",
                "REBOOT 2000 feature-licensed\n",
            ]
        );
    }

    #[test]
    fn every_message_round_trips() {
        for m in from_all() {
            let line = m.to_line();
            assert!(line.ends_with('\n') && line.len() <= MAX_LINE);
            assert_eq!(
                FromSupervisor::parse(line.trim_end_matches('\n')),
                Ok(m.clone())
            );
            assert_eq!(FromSupervisor::parse(&line), Ok(m));
        }
        for m in to_all() {
            let line = m.to_line();
            assert!(line.ends_with('\n') && line.len() <= MAX_LINE);
            assert_eq!(
                ToSupervisor::parse(line.trim_end_matches('\n')),
                Ok(m.clone())
            );
            assert_eq!(ToSupervisor::parse(&line), Ok(m));
        }
    }

    #[test]
    fn causes_and_states() {
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.word()), Some(c));
            assert_eq!(c.to_string(), c.word());
        }
        assert_eq!(Cause::parse("License-Expired"), None);
        assert_eq!(Cause::parse(""), None);
        for s in [CallState::Idle, CallState::Active] {
            assert_eq!(CallState::parse(s.word()), Some(s));
            assert_eq!(s.to_string(), s.word());
        }
        assert_eq!(CallState::parse("IDLE"), None);
    }

    #[test]
    fn malformed_from_supervisor() {
        for line in [
            "",
            "\n",
            " ",
            "HELLO",
            "HELLO supervisor/",
            "HELLO supervisor",
            "HELLO license-agent/1",
            "HELLO supervisor/1 extra",
            "HELLO  supervisor/1",
            "HELLO supervisor/1 ",
            " HELLO supervisor/1",
            "hello supervisor/1",
            "HELLO supervisor/\u{e9}",
            "HELLO supervisor/1\t",
            "CALL-STATE",
            "CALL-STATE Idle",
            "CALL-STATE busy",
            "CALL-STATE idle active",
            "CALL-STATE idle\r",
            "call-state idle",
            "CHECK-SYNC now",
            "CHECK-SYNC ",
            "check-sync",
            "OK",
            "OK -1",
            "OK +1",
            "OK 01",
            "OK 1.0",
            "OK 0x10",
            "OK 18446744073709551616",
            "OK 1 2",
            "BUSY",
            "BUSY abc",
            "BUSY ",
            "ERR",
            "ERR ",
            "err text",
            "FEATURES vqmon",
            "REBOOT 1 license-expired",
            "NOPE",
            "HELLO supervisor/1\n\n",
            "\u{0}",
        ] {
            let e = FromSupervisor::parse(line).expect_err(line);
            assert!(
                e.contains("expected") || e.contains("must"),
                "{line:?}: {e}"
            );
            assert!(!e.contains('\n'), "{line:?}: {e}");
        }
    }

    #[test]
    fn malformed_to_supervisor() {
        for line in [
            "",
            "HELLO",
            "HELLO license-agent/2",
            "HELLO license-agent/1 x",
            "HELLO supervisor/1",
            "Hello license-agent/1",
            "FEATURES",
            "FEATURES ",
            "FEATURES a b",
            "FEATURES a,,b",
            "FEATURES ,a",
            "FEATURES a,",
            "FEATURES Vqmon",
            "FEATURES vq_mon",
            "FEATURES -,a",
            "FEATURES a,-",
            "FEATURES a,a",
            "features -",
            "REBOOT",
            "REBOOT 1",
            "REBOOT license-expired",
            "REBOOT 1 license-expired extra",
            "REBOOT x license-expired",
            "REBOOT 1 License-Expired",
            "REBOOT 1 reboot",
            "REBOOT 00 license-changed",
            "REBOOT 99999999999999999999 license-changed",
            "REBOOT  1 license-changed",
            "REBOOT 1 license-changed\r",
            "ERR",
            "OK 1",
            "CHECK-SYNC",
        ] {
            let e = ToSupervisor::parse(line).expect_err(line);
            assert!(
                e.contains("expected") || e.contains("must") || e.contains("once"),
                "{line:?}: {e}"
            );
        }
        // "--" is a name by the grammar; only "-" alone is reserved for "none".
        assert_eq!(
            ToSupervisor::parse("FEATURES --"),
            Ok(ToSupervisor::Features(vec!["--".into()]))
        );
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = ToSupervisor::parse("REBOOT 1 reboot").unwrap_err();
        assert!(
            e.contains("license-expired") && e.contains("\"reboot\""),
            "{e}"
        );
        let e = FromSupervisor::parse("CALL-STATE busy").unwrap_err();
        assert!(
            e.contains("CALL-STATE idle") && e.contains("\"busy\""),
            "{e}"
        );
        let e = ToSupervisor::parse("hello license-agent/1").unwrap_err();
        assert!(
            e.contains("unknown message \"hello\"") && e.contains("upper case"),
            "{e}"
        );
        let long = format!("X{}", "y".repeat(500));
        let e = ToSupervisor::parse(&long).unwrap_err();
        assert!(e.len() < 300, "a quoted line is cut short: {e}");
        let e = ToSupervisor::parse(&format!("ERR {}", "x".repeat(MAX_LINE))).unwrap_err();
        assert!(e.contains("too long"), "{e}");
    }

    #[test]
    fn line_length_limit() {
        // 1,023 bytes plus the newline is the longest line.
        let names: Vec<String> = (0..250).map(|i| format!("f{i:03}")).collect();
        let m = ToSupervisor::Features(names);
        let line = m.to_line();
        assert_eq!(line.len(), "FEATURES ".len() + 250 * 5 - 1 + 1);
        assert!(line.len() > MAX_LINE);
        assert!(ToSupervisor::parse(&line).unwrap_err().contains("too long"));
        let fits = format!("ERR {}", "x".repeat(MAX_LINE - 5));
        assert_eq!(fits.len() + 1, MAX_LINE);
        assert!(ToSupervisor::parse(&fits).is_ok());
        assert!(ToSupervisor::parse(&format!("{fits}x")).is_err());
    }

    #[test]
    fn err_text_is_made_one_line_and_fits() {
        let line = FromSupervisor::Err("a\nb\r\u{0}c".into()).to_line();
        assert_eq!(line, "ERR a b  c\n");
        assert_eq!(FromSupervisor::Err(String::new()).to_line(), "ERR ?\n");
        let line = ToSupervisor::Err("\u{e9}".repeat(2 * MAX_LINE)).to_line();
        assert!(line.len() <= MAX_LINE && line.ends_with('\n'));
        assert!(ToSupervisor::parse(&line).is_ok());
    }

    #[test]
    fn is_feature_name_grammar() {
        for ok in [
            "a",
            "vqmon",
            "usb-call-recording",
            "0",
            "feature-00ff",
            "--",
            "a-",
        ] {
            assert!(is_feature_name(ok), "{ok}");
        }
        for bad in ["", "-", "A", "a b", "a,b", "é", "a_b", "a.b"] {
            assert!(!is_feature_name(bad), "{bad}");
        }
    }

    fn all(reader: &mut LineReader, chunks: &[&[u8]]) -> Vec<Read> {
        chunks.iter().flat_map(|c| reader.push(c)).collect()
    }

    fn line(s: &str) -> Read {
        Read::Line(s.to_string())
    }

    #[test]
    fn reader_lines_crlf_and_pending() {
        let mut r = LineReader::new();
        let got = all(
            &mut r,
            &[
                b"HELLO lic",
                b"ense-agent/1\r\nFEATURES -\n\nA\r\r\n",
                b"par",
            ],
        );
        assert_eq!(
            got,
            [
                line("HELLO license-agent/1"),
                line("FEATURES -"),
                line(""),
                line("A\r")
            ]
        );
        assert_eq!(r.pending(), 3);
        assert_eq!(r.push(b"tial\n"), [line("partial")]);
        assert_eq!(r.pending(), 0);
        assert_eq!(r.push(b"\r\n"), [line("")]);
        assert_eq!(r.push(b""), []);
    }

    #[test]
    fn reader_overlong_lines() {
        let mut r = LineReader::new();
        // The longest line: 1,023 bytes and the newline.
        let max = "a".repeat(MAX_LINE - 1);
        assert_eq!(r.push(format!("{max}\n").as_bytes()), [line(&max)]);
        // One byte more is overlong, whether the newline comes in the same chunk or not.
        assert_eq!(
            r.push(format!("{max}b\nnext\n").as_bytes()),
            [Read::Overlong, line("next")]
        );
        assert_eq!(r.push(max.as_bytes()), []);
        assert_eq!(r.pending(), MAX_LINE - 1);
        assert_eq!(r.push(b"b"), [Read::Overlong]);
        assert_eq!(r.pending(), 0);
        // The rest of the overlong line is discarded, however long, reported once.
        for _ in 0..100 {
            assert_eq!(r.push(&[b'z'; 4096]), []);
            assert_eq!(r.pending(), 0);
        }
        assert_eq!(r.push(b"zz\nOK 1\n"), [line("OK 1")]);
        // A CR counts towards the length.
        assert_eq!(r.push(format!("{max}\r\n").as_bytes()), [Read::Overlong]);
        assert_eq!(r.push(b"after\n"), [line("after")]);
    }

    #[test]
    fn reader_not_utf8() {
        let mut r = LineReader::new();
        assert_eq!(
            r.push(b"OK \xff\nOK 1\n\xc3\n\xc3\xa9\n"),
            [Read::NotUtf8, line("OK 1"), Read::NotUtf8, line("\u{e9}")]
        );
        // A multi-byte character split across chunks is still one character.
        assert_eq!(all(&mut r, &[b"x\xc3", b"\xa9\n"]), [line("x\u{e9}")]);
    }

    #[test]
    fn reader_with_limit() {
        let mut r = LineReader::with_limit(4);
        assert_eq!(r.push(b"abc\nabcd\nab"), [line("abc"), Read::Overlong]);
        assert_eq!(r.pending(), 2);
        let mut r = LineReader::with_limit(0);
        assert_eq!(r.push(b"\na\n"), [line(""), Read::Overlong]);
    }

    /// What a stream must yield, computed on the whole input at once.
    fn reference(bytes: &[u8], limit: usize) -> (Vec<Read>, usize) {
        let mut out = Vec::new();
        let mut segments: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        let last = segments.pop().unwrap_or(&[]);
        for seg in segments {
            if seg.len() + 1 > limit {
                out.push(Read::Overlong);
            } else {
                let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
                out.push(match std::str::from_utf8(seg) {
                    Ok(s) => line(s),
                    Err(_) => Read::NotUtf8,
                });
            }
        }
        let pending = if last.len() + 1 > limit {
            out.push(Read::Overlong);
            0
        } else {
            last.len()
        };
        (out, pending)
    }

    fn chunked<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&bytes[at..c]);
            at = c;
        }
        chunks.push(&bytes[at..]);
        chunks
    }

    fn valid_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(ToSupervisor::Hello.to_line()),
            (any::<u64>(), 0..3usize).prop_map(|(id, c)| ToSupervisor::Reboot {
                id,
                cause: Cause::ALL[c]
            }
            .to_line()),
            proptest::collection::vec("[a-z0-9][a-z0-9-]{0,12}", 0..6).prop_map(|names| {
                let mut names = names;
                names.sort();
                names.dedup();
                ToSupervisor::Features(names).to_line()
            }),
            (any::<u64>()).prop_map(|id| FromSupervisor::Busy(id).to_line()),
            "[ -~\u{e9}\u{4e2d}]{1,80}".prop_map(|t| FromSupervisor::Err(t).to_line()),
        ]
        .prop_flat_map(|l| (Just(l), any::<bool>()))
        .prop_map(|(l, crlf)| if crlf { l.replace('\n', "\r\n") } else { l })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn random_chunking_of_valid_lines_yields_the_same_lines(
            lines in proptest::collection::vec(valid_line(), 0..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let stream = lines.concat();
            let mut r = LineReader::new();
            let got = all(&mut r, &chunked(stream.as_bytes(), &cuts));
            prop_assert_eq!(r.pending(), 0);
            let want: Vec<Read> = lines
                .iter()
                .map(|l| line(l.trim_end_matches('\n').trim_end_matches('\r')))
                .collect();
            prop_assert_eq!(&got, &want);
            // And every line parses back to what was sent.
            for g in got {
                let Read::Line(l) = g else { unreachable!() };
                prop_assert!(ToSupervisor::parse(&l).is_ok() || FromSupervisor::parse(&l).is_ok(), "{}", l);
            }
        }

        #[test]
        fn random_bytes_in_random_chunks_match_the_reference_and_stay_bounded(
            bytes in proptest::collection::vec(
                prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r'), 4 => Just(b'a')],
                0..5000,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
            limit in prop_oneof![Just(MAX_LINE), 1..40usize],
        ) {
            let mut r = LineReader::with_limit(limit);
            let mut got = Vec::new();
            for chunk in chunked(&bytes, &cuts) {
                got.extend(r.push(chunk));
                prop_assert!(r.pending() < limit);
                prop_assert!(r.buf.capacity() <= limit.max(MAX_LINE) * 2);
            }
            let (want, pending) = reference(&bytes, limit);
            prop_assert_eq!(got, want);
            prop_assert_eq!(r.pending(), pending);
        }

        #[test]
        fn parsers_never_panic(line in "\\PC{0,40}|[A-Z -]{0,20}[ 0-9a-z,/-]{0,30}") {
            let _ = ToSupervisor::parse(&line);
            let _ = FromSupervisor::parse(&line);
        }

        /// Lines of keywords and arguments, valid and nearly valid: each parser accepts
        /// exactly the lines the grammar (written again below) accepts, and what it
        /// accepts renders back to the same line; a parser refusing everything fails.
        #[test]
        fn each_parser_accepts_exactly_the_grammar_and_renders_the_same_line(
            keyword in prop::sample::select(vec![
                "HELLO", "CALL-STATE", "CHECK-SYNC", "OK", "BUSY", "ERR", "FEATURES", "REBOOT",
                "hello", "NOPE",
            ]),
            args in proptest::collection::vec(grammar_argument(), 0..4),
        ) {
            let mut line = keyword.to_string();
            for a in &args {
                line.push(' ');
                line.push_str(a);
            }
            let to = ToSupervisor::parse(&line);
            prop_assert_eq!(to.is_ok(), grammar_to_supervisor(&line), "to supervisor {:?}: {:?}", line, to);
            if let Ok(m) = to {
                prop_assert_eq!(m.to_line(), format!("{line}\n"));
            }
            let from = FromSupervisor::parse(&line);
            prop_assert_eq!(from.is_ok(), grammar_from_supervisor(&line), "from supervisor {:?}: {:?}", line, from);
            if let Ok(m) = from {
                prop_assert_eq!(m.to_line(), format!("{line}\n"));
            }
        }
    }

    /// Arguments: the words each form wants, near misses of them, and random text.
    fn grammar_argument() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "idle",
                "active",
                "Idle",
                "supervisor/1",
                "supervisor/",
                "license-agent/1",
                "license-agent/2",
                "license-expired",
                "license-changed",
                "feature-licensed",
                "0",
                "7",
                "42",
                "007",
                "-1",
                "18446744073709551615",
                "18446744073709551616",
                "-",
                "a",
                "a,b",
                "a,a",
                "a,",
                ",a",
                "a-b,c0",
                "--",
                "",
            ])
            .prop_map(str::to_string),
            "[a-z0-9,/-]{0,12}",
        ]
    }

    /// A decimal id from 0 to `u64::MAX`, no sign, no leading zero.
    fn grammar_id(w: &str) -> bool {
        !w.is_empty()
            && w.bytes().all(|b| b.is_ascii_digit())
            && (w == "0" || !w.starts_with('0'))
            && w.parse::<u128>().is_ok_and(|n| n <= u128::from(u64::MAX))
    }

    /// `-`, or names of a-z, 0-9 and - (not `-` alone) between single commas, each once.
    fn grammar_features(list: &str) -> bool {
        let names: Vec<&str> = list.split(',').collect();
        list == "-"
            || (names.iter().all(|n| {
                !n.is_empty()
                    && *n != "-"
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }) && names.iter().collect::<BTreeSet<_>>().len() == names.len())
    }

    /// `ERR <text>` with a text, else keywords and words between single spaces.
    fn grammar_words(line: &str) -> Result<bool, Vec<&str>> {
        if line == "ERR" || line == "ERR " {
            return Ok(false);
        }
        if line.starts_with("ERR ") {
            return Ok(true);
        }
        let words: Vec<&str> = line.split(' ').collect();
        if words.iter().any(|w| w.is_empty()) {
            return Ok(false);
        }
        Err(words)
    }

    /// HELLO license-agent/1, FEATURES <list>, REBOOT <id> <cause>, ERR <text>.
    fn grammar_to_supervisor(line: &str) -> bool {
        let words = match grammar_words(line) {
            Ok(known) => return known,
            Err(words) => words,
        };
        match words.as_slice() {
            ["HELLO", "license-agent/1"] => true,
            ["FEATURES", list] => grammar_features(list),
            ["REBOOT", id, cause] => {
                grammar_id(id)
                    && ["license-expired", "license-changed", "feature-licensed"].contains(cause)
            }
            _ => false,
        }
    }

    /// HELLO supervisor/<version>, CALL-STATE idle|active, CHECK-SYNC, OK <id>, BUSY <id>,
    /// ERR <text>.
    fn grammar_from_supervisor(line: &str) -> bool {
        let words = match grammar_words(line) {
            Ok(known) => return known,
            Err(words) => words,
        };
        match words.as_slice() {
            ["HELLO", greeting] => greeting
                .strip_prefix("supervisor/")
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())),
            ["CALL-STATE", "idle" | "active"] | ["CHECK-SYNC"] => true,
            ["OK" | "BUSY", id] => grammar_id(id),
            _ => false,
        }
    }
}
