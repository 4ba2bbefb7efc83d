//! Fuzz entry points: each takes arbitrary bytes as an input of one outside interface,
//! must never panic, and checks what holds for every input (a round trip, a bound).
//! `fuzz/` drives them with libFuzzer (`cargo fuzz`, which builds the crate with
//! `--cfg fuzzing`); the unit tests replay every committed corpus file through them, so
//! the test command keeps each past finding fixed without a fuzzing toolchain.

use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use reqwest::StatusCode;

use crate::fetch::ftp::protocol::{self as ftp, Reply, ReplyReader};
use crate::fetch::http::{self, Head};
use crate::fetch::{self, FetchOutcome};
use crate::format::MAX_FILE_SIZE;
use crate::storage::Meta;
use crate::supervisor::protocol::{FromSupervisor, LineReader, Read, ToSupervisor};
use crate::trust::Keyring;

/// A fuzz target: bytes in, a panic if a property breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its folder under `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 11] = [
    ("license", license),
    ("keyring", keyring),
    ("config", config),
    ("meta", meta),
    ("control", control),
    ("supervisor", supervisor),
    ("server_answer", server_answer),
    ("ftp_reply", ftp_reply),
    ("provisioning", provisioning),
    ("trust_update", trust_update),
    ("reboot_window", reboot_window),
];

/// The keyring of the project's vectors: inputs grown from the vectors carry valid
/// signatures, so verification is reached, not only parsing.
fn vector_keyring() -> Keyring {
    Keyring::parse(include_str!("../tests/vectors/keyring")).expect("the vectors' keyring parses")
}

/// A license file: parsed, then verified; a verified license is a parsed one.
pub fn license(data: &[u8]) {
    let parsed = crate::format::parse(data);
    if let Ok(l) = &parsed {
        assert!(!l.features().is_empty() && l.features().len() <= 256);
        assert!(data.len() <= MAX_FILE_SIZE);
    }
    if let Ok(verified) = vector_keyring().verify_bytes(data) {
        let parsed = parsed.expect("a verified license parses");
        assert_eq!(verified.signed_message(), parsed.signed_message());
    }
}

/// A keyring file.
pub fn keyring(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = Keyring::parse(text) {
        assert!(!k.keys().is_empty());
    }
}

/// A configuration file, as the phone reads it: checked whole (the build tools' way),
/// and with its bad values set aside (the agent's way), which ends, sets aside at most
/// what the file holds, and takes a file the strict check takes unchanged.
pub fn config(data: &[u8]) {
    use crate::config::Config;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/license-agent/agent.toml");
    let strict = Config::parse(text, path);
    let lenient = Config::parse_setting_aside(text, path);
    match (&strict, &lenient) {
        (Ok(_), Ok((_, set_aside))) => assert!(set_aside.is_empty()),
        (Ok(_), Err(e)) => panic!("a file the strict check takes was refused: {e}"),
        (Err(e), Ok((_, set_aside))) => assert_eq!(set_aside.first(), Some(e)),
        (Err(_), Err(_)) => {}
    }
}

/// `meta.json`: parsed, written back and read again to the same metadata, and the parts
/// the agent computes from it.
pub fn meta(data: &[u8]) {
    let Ok(meta) = serde_json::from_slice::<Meta>(data) else {
        return;
    };
    let again: Meta = serde_json::from_slice(&serde_json::to_vec_pretty(&meta).expect("encodes"))
        .expect("reads back");
    assert_eq!(again, meta);
    let _ = crate::daemon::publish::from_meta(meta.published.as_deref().unwrap_or(&[]));
    if let Some(record) = &meta.reboot {
        let _ = record.booted_set();
    }
    let _ = crate::engine::judge_clock(0, 1, meta.latest_trusted, u64::MAX);
}

/// The DHCP hook's lease file, each option read as a server of either type, and the
/// same bytes as a master configuration file: a server from DHCP is never a folder of
/// the phone and never shows a password; a folder a master file names stays under the
/// server or is a network URL.
pub fn provisioning(data: &[u8]) {
    use crate::config::{OptionType, Scheme, ServerUrl, TRANSPORTS};
    use crate::locate::{dhcp, master};
    let lease = dhcp::parse_lease(data);
    for value in lease.options.values().flatten() {
        for kind in [OptionType::String, OptionType::Address] {
            if let Ok(named) = dhcp::named_server(value, kind, Scheme::Ftp, TRANSPORTS) {
                assert_ne!(named.url.scheme(), Scheme::File);
                if let Some(c) = named.url.credentials().filter(|c| !c.password.is_empty()) {
                    assert!(!named.url.to_string().contains(&format!(":{}@", c.password)));
                }
            }
        }
    }
    let server =
        ServerUrl::parse("ftp://u:pw@prov/base/", Path::new("/"), TRANSPORTS).expect("a fixed URL");
    if let Ok(dirs) = master::parse(data) {
        for dir in [&dirs.licenses, &dirs.logs] {
            if let Ok(url) = master::resolve(&server, dir.as_deref(), TRANSPORTS) {
                assert_ne!(url.scheme(), Scheme::File);
                if url.host() == "prov" && url.scheme() == Scheme::Ftp {
                    assert!(
                        url.path().starts_with("/base/")
                            || dir.as_deref().is_some_and(|d| d.contains("://"))
                    );
                }
            }
        }
    }
}

/// A trust document (`docs/trust-update.md`): read, and judged against a trust whose
/// roots nobody holds the keys of: whatever the bytes, never taken; one that reads
/// carries keys within the bounds, each once.
pub fn trust_update(data: &[u8]) {
    use crate::trust::update;
    if let Ok(document) = update::parse(data) {
        let t = &document.trust;
        assert!(data.len() <= update::MAX_DOCUMENT);
        assert!((1..=update::MAX_ROOTS).contains(&t.roots.len()));
        assert!((1..=update::MAX_LICENSE_KEYS).contains(&t.licenses.len()));
        assert!(t.threshold >= 1 && t.threshold <= t.roots.len());
        assert!(document.signatures.len() <= update::MAX_SIGNATURES);
        assert!(t.roots.iter().all(|r| !t.licenses.contains(r)));
    }
    let held = update::Trust {
        version: 0,
        expires: None,
        threshold: 1,
        roots: vec![[7u8; 32]],
        licenses: vec![[8u8; 32]],
    };
    assert!(update::judge(&held, data, Some(0)).is_err());
}

/// A control request (the daemon's side), and an answer (the client's side).
pub fn control(data: &[u8]) {
    let _ = crate::control::parse_request(data);
    let _ = serde_json::from_slice::<crate::control::Response>(data);
    // An error answer quoting anything stays one line that reads back.
    let text = String::from_utf8_lossy(data);
    let line = crate::control::encode_response(&crate::control::Response::error(text.as_ref()));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(serde_json::from_slice::<crate::control::Response>(&line).is_ok());
}

/// Bytes from the supervisor (and, for `supervisor-sim`, from the agent), chunked where
/// the first byte says: lines of at most the limit, every message that parses renders
/// back to a line that parses to it.
pub fn supervisor(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut reader = LineReader::new();
    let step = usize::from(cut).max(1);
    for chunk in stream.chunks(step) {
        for read in reader.push(chunk) {
            let Read::Line(line) = read else { continue };
            assert!(line.len() < crate::supervisor::protocol::MAX_LINE);
            // What is rendered reads back and renders the same (an ERR text is made one
            // printable line when rendered, so the first rendering is the fixpoint).
            if let Ok(m) = FromSupervisor::parse(&line) {
                let rendered = m.to_line();
                let again = FromSupervisor::parse(&rendered).expect("a rendered line parses");
                assert_eq!(again.to_line(), rendered);
            }
            if let Ok(m) = ToSupervisor::parse(&line) {
                let rendered = m.to_line();
                let again = ToSupervisor::parse(&rendered).expect("a rendered line parses");
                assert_eq!(again.to_line(), rendered);
            }
        }
        assert!(reader.pending() < crate::supervisor::protocol::MAX_LINE);
    }
}

/// A provisioning server's answer: two bytes of status, one of flags (no longer read:
/// every request is unconditional; kept so that the corpus keeps its meaning), header
/// lines up to an empty line, then the body. Judged and read as the fetcher does; a body is then
/// verified as a downloaded license would be.
pub fn server_answer(data: &[u8]) {
    let [a, b, flags, rest @ ..] = data else {
        return;
    };
    let Ok(status) = StatusCode::from_u16(100 + u16::from_be_bytes([*a, *b]) % 900) else {
        return;
    };
    let _ = flags;
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let content_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let url = "http://fuzz/000000000000-license.cfg";
    let outcome = match http::judge_head(url, status, content_length) {
        Head::Done(outcome) => outcome,
        Head::Body { expected } => {
            let mut reader = Cursor::new(body);
            match http::read_body(
                url,
                &mut reader,
                expected,
                Instant::now(),
                Duration::from_secs(3600),
            ) {
                Ok(bytes) => FetchOutcome::Body { bytes },
                Err(e) => FetchOutcome::Failed(e),
            }
        }
    };
    match outcome {
        FetchOutcome::Body { bytes } => {
            assert!(bytes.len() <= fetch::MAX_BODY);
            assert_eq!(status.as_u16(), 200);
            license(&bytes);
        }
        FetchOutcome::Absent { answer } => {
            assert!(matches!(status.as_u16(), 404 | 410) && answer == status.as_u16().to_string())
        }
        FetchOutcome::Failed(e) => assert!(!e.to_string().is_empty()),
    }
}

/// An FTP server's control connection, as the client reads it: the first byte says how
/// the rest is cut into reads. The replies (or the error that ends them) are the same
/// however the bytes are cut, each within the bounds; what the EPSV, PASV, SIZE and MDTM
/// readers take from any reply never panics, and never gives port 0.
pub fn ftp_reply(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = ftp_replies(stream, stream.len().max(1));
    assert_eq!(ftp_replies(stream, usize::from(cut).max(1)), whole);
    for reply in whole.0 {
        assert!(reply.text.len() <= ftp::MAX_REPLY && (100..600).contains(&reply.code));
        for port in [ftp::epsv_port(&reply.text), ftp::pasv_port(&reply.text)]
            .into_iter()
            .flatten()
        {
            assert_ne!(port, 0);
        }
        let _ = ftp::size(&reply.text);
    }
}

/// The replies in `stream` read `step` bytes at a time, and whether an error ended them.
fn ftp_replies(stream: &[u8], step: usize) -> (Vec<Reply>, bool) {
    let mut reader = ReplyReader::default();
    let mut replies = Vec::new();
    for chunk in stream.chunks(step) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match reader.push(rest) {
                Ok((used, reply)) => {
                    replies.extend(reply);
                    rest = &rest[used..];
                }
                Err(_) => return (replies, true),
            }
        }
    }
    (replies, false)
}

/// A reboot window and a POSIX `TZ` rule (`[reboot]`): lines of `TZ`, then windows,
/// then an instant. Whatever reads, the window in force or next is found from 1970 to
/// 2106, closes after the instant and opens within 9 days of it, and says itself.
pub fn reboot_window(data: &[u8]) {
    use crate::engine::window::{tz::Tz, Schedule, Window};
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let Some(Ok(tz)) = lines.next().map(Tz::parse) else {
        return;
    };
    let windows: Vec<Window> = lines
        .by_ref()
        .take(4)
        .filter_map(|l| Window::parse(l).ok())
        .collect();
    let at = lines
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
        .map_or(0, i64::from);
    let _ = tz.at(at);
    let _ = tz.instant_of_local(at);
    if windows.is_empty() {
        return;
    }
    let schedule = Schedule {
        windows,
        tz,
        causes: Default::default(),
        deadline: 0,
    };
    let o = schedule.current_or_next(at).expect("windows: one is next");
    assert!(o.closes > at, "{o:?} closed at {at}");
    assert!(o.opens - at <= 9 * 86_400, "{o:?} from {at}");
    let _ = (schedule.words(&o), schedule.local_time(o.opens));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed corpus file of every target, through its target: what fuzzing
    /// once found stays fixed. Each target's corpus must be there.
    #[test]
    fn the_fuzz_corpora_replay() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "no corpus for {name}");
            for file in &files {
                let data = std::fs::read(file).unwrap();
                target(&data);
            }
            println!("fuzz corpus {name}: {} inputs replayed", files.len());
        }
    }
}
