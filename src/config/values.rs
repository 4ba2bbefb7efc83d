//! The value syntaxes of the configuration file: durations, MAC addresses, interface
//! names, paths, user names and passwords (the provisioning URL: `server_url.rs`). Each parser takes the text as written and says
//! what is wrong with it; the caller adds the file, the key and the place.

use std::path::{Path, PathBuf};

use super::Secs;
use crate::format::Serial;

/// The longest duration accepted: 100 years (36500d). Far above any sensible timer, and
/// low enough that adding it to any instant or timestamp of the agent cannot overflow.
pub(crate) const MAX_SECS: u64 = 36_500 * 86_400;

/// The longest path a Unix socket can have (`sun_path` is 108 bytes with its NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// Units of a duration string, largest first.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// What a duration looks like, for error messages.
const DURATION_FORM: &str =
    "a duration is whole seconds (90) or parts from the largest unit to the smallest, \
     like \"90s\", \"1h30m\" or \"2d\" (units d, h, m, s)";

/// `text` quoted for a message, cut to a readable length.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
    }
}

/// A duration written as a string: `"90s"`, `"1h30m"`, `"2d"`.
pub(crate) fn duration(text: &str) -> Result<Secs, String> {
    if text.is_empty() {
        return Err(format!("empty; {DURATION_FORM}"));
    }
    if text.starts_with('-') {
        return Err(format!("{}: a duration cannot be negative", shown(text)));
    }
    let too_large = || {
        format!(
            "{}: too large; the longest duration is 36500d (100 years)",
            shown(text)
        )
    };
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS of the largest unit still allowed
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let Some(unit) = after.chars().next() else {
            return Err(format!(
                "{}: {number} has no unit; add s, m, h or d, or write the seconds as a \
                 number without quotes",
                shown(text)
            ));
        };
        if unit.is_whitespace() {
            return Err(format!(
                "{}: a duration has no spaces; {DURATION_FORM}",
                shown(text)
            ));
        }
        if digits == 0 {
            return Err(format!(
                "{}: unexpected {unit:?}; {DURATION_FORM}",
                shown(text)
            ));
        }
        let Some(index) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "{}: unknown unit {unit:?}; the units are d, h, m and s",
                shown(text)
            ));
        };
        if index < next_unit {
            return Err(format!(
                "{}: {unit:?} comes after a smaller or equal unit; write the parts from the \
                 largest unit to the smallest, each once, like \"1h30m\"",
                shown(text)
            ));
        }
        next_unit = index + 1;
        // Only digits: the parse fails on overflow alone.
        let n: u64 = number.parse().map_err(|_| too_large())?;
        total = n
            .checked_mul(UNITS[index].1)
            .and_then(|part| total.checked_add(part))
            .filter(|t| *t <= MAX_SECS)
            .ok_or_else(too_large)?;
        rest = &after[unit.len_utf8()..];
    }
    Ok(Secs(total))
}

/// A duration written as a TOML integer: whole seconds.
pub(crate) fn whole_seconds(n: i128) -> Result<Secs, String> {
    if n < 0 {
        return Err(format!("{n}: a duration cannot be negative"));
    }
    match u64::try_from(n) {
        Ok(secs) if secs <= MAX_SECS => Ok(Secs(secs)),
        _ => Err(format!(
            "{n} seconds: too large; the longest duration is 36500d (100 years)"
        )),
    }
}

/// The canonical text of a duration: `0s`, `90s` → `1m30s`, `86400` → `1d`.
pub(crate) fn duration_text(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut left = secs;
    for (unit, size) in UNITS {
        if left >= size {
            out.push_str(&(left / size).to_string());
            out.push(unit);
            left %= size;
        }
    }
    out
}

/// A MAC address: 12 hex digits, any case, or six pairs separated by `:` (or all by `-`).
pub(crate) fn mac(text: &str) -> Result<Serial, String> {
    let bad = || {
        format!(
            "{}: not a MAC address; expected 12 hex digits (0004f2000001), or pairs \
             separated by colons or dashes (00:04:f2:00:00:01)",
            shown(text)
        )
    };
    let bytes = text.as_bytes();
    let digits: Vec<u8> = match bytes.len() {
        12 => bytes.to_vec(),
        17 => {
            let sep = bytes[2];
            let separated =
                (sep == b':' || sep == b'-') && bytes.iter().skip(2).step_by(3).all(|b| *b == sep);
            if !separated {
                return Err(bad());
            }
            bytes
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != 2)
                .map(|(_, b)| *b)
                .collect()
        }
        _ => return Err(bad()),
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let compact = String::from_utf8(digits).map_err(|_| bad())?;
    let serial = Serial::parse(&compact).map_err(|_| bad())?;
    if serial == Serial::SITE_FILE {
        return Err(format!(
            "{}: the all-zero address is no phone's MAC (000000000000 names the site \
             license file)",
            shown(text)
        ));
    }
    Ok(serial)
}

/// A network interface name as Linux accepts it: 1 to 15 bytes, not `.` or `..`, no `/`,
/// `:`, white space or control character.
pub(crate) fn interface(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "{}: an interface name is 1 to 15 bytes long",
            shown(name)
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{}: not an interface name", shown(name)));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{}: an interface name cannot contain {c:?}",
            shown(name)
        ));
    }
    Ok(())
}

/// The directory relative paths are resolved against: the one holding the configuration
/// file, made absolute (from the current directory) when it can be, so that the resolved
/// paths stay right if the agent changes directory.
pub(crate) fn base_dir(config_file: &Path) -> PathBuf {
    let dir = match config_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.components().collect()
}

/// A file or directory path: absolute as written, relative to `base` otherwise; `.`
/// components and trailing slashes are dropped (`..` is kept: symbolic links).
pub(crate) fn path(text: &str, base: &Path) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("empty; expected a path".to_string());
    }
    if text.contains('\0') {
        return Err(format!("{}: a path cannot contain NUL", shown(text)));
    }
    Ok(base.join(text).components().collect())
}

/// The path of a Unix socket: a [`path`] that fits in `sun_path`.
pub(crate) fn socket_path(text: &str, base: &Path) -> Result<PathBuf, String> {
    let resolved = path(text, base)?;
    let len = resolved.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "{}: a Unix socket path is at most {MAX_SOCKET_PATH} bytes, and {} is {len}",
            shown(text),
            resolved.display()
        ));
    }
    Ok(resolved)
}

/// An HTTP basic-authentication user name: not empty, no `:`, no control character.
pub(crate) fn username(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty; expected a user name".to_string());
    }
    if text.contains(':') {
        return Err(format!(
            "{}: a basic-authentication user name cannot contain ':'",
            shown(text)
        ));
    }
    no_control(text)
}

/// A password: no control character (it goes in an HTTP header).
pub(crate) fn password(text: &str) -> Result<(), String> {
    no_control(text).map_err(|_| "contains a control character".to_string())
}

fn no_control(text: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{}: contains the control character {c:?}",
            shown(text)
        )),
        None => Ok(()),
    }
}
