//! The DHCP lease as the DHCP client's hook hands it over (`firmware/README.md`, "The
//! contract"): `key=value` lines, `optionN=hex:...` (or `text:...`) for each option, and
//! what one option's value says about the provisioning server.
//!
//! Everything here is hostile until checked: the file is read to a bound, a line that
//! does not read refuses only that option, and a value becomes a server only when it is
//! a host name, an address or a URL of a transport this build has (never a folder: a
//! DHCP server must not point the agent at its own files). Errors never show a
//! password a URL carries.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{OptionType, Scheme, ServerUrl};

/// The largest lease file read, in bytes.
pub(crate) const MAX_LEASE_FILE: u64 = 16 * 1024;

/// The longest option value: a DHCP option holds at most 255 bytes (RFC 2132); a value
/// split over several (RFC 3396) is still refused past this.
pub(crate) const MAX_OPTION: usize = 255;

/// The options of one lease, each as sent, or why its line does not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) options: BTreeMap<u8, Result<Vec<u8>, String>>,
}

/// Reads the hook's file. Unknown keys, comments and blank lines are ignored; a line
/// `optionN=...` with N in 1–254 gives option N (its value, or why it does not read).
pub(crate) fn parse_lease(bytes: &[u8]) -> Lease {
    let mut lease = Lease::default();
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(rest) = line.strip_prefix(b"option") else {
            continue;
        };
        let Some(eq) = rest.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (digits, value) = (&rest[..eq], &rest[eq + 1..]);
        let number = match std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u8>().ok())
        {
            Some(n @ 1..=254) if digits.len() <= 3 && digits[0] != b'0' => n,
            _ => continue,
        };
        lease.options.insert(number, option_value(value));
    }
    lease
}

/// One option's value: `hex:` followed by pairs of hex digits, or `text:` and the bytes.
fn option_value(value: &[u8]) -> Result<Vec<u8>, String> {
    let bytes = if let Some(hex) = value.strip_prefix(b"hex:") {
        if hex.len() > 2 * MAX_OPTION {
            return Err(too_long(hex.len() / 2));
        }
        hex::decode(hex).map_err(|e| format!("the hook's hex does not read ({e})"))?
    } else if let Some(text) = value.strip_prefix(b"text:") {
        text.to_vec()
    } else {
        return Err("the hook wrote neither hex: nor text: (see firmware/README.md)".into());
    };
    if bytes.len() > MAX_OPTION {
        return Err(too_long(bytes.len()));
    }
    Ok(bytes)
}

fn too_long(len: usize) -> String {
    format!("{len} bytes; a DHCP option holds at most {MAX_OPTION}")
}

/// A provisioning server an option names: its base URL and, when the URL ended with a
/// `.cfg` file, that master configuration file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) url: ServerUrl,
    pub(crate) master_file: Option<String>,
}

/// Why an option's value names no server (never showing a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server option `value` names, read as `kind`: four bytes for an address; for a
/// string, a host name or address (`host[:port][/path]`, fetched over `server_type`) or
/// a URL of one of `schemes` (not `file`). Trailing NUL bytes, which some DHCP servers
/// add, are dropped.
pub(crate) fn named_server(
    value: &[u8],
    kind: OptionType,
    server_type: Scheme,
    schemes: &[&str],
) -> Result<Named, Refused> {
    let text = match kind {
        OptionType::Address => match value {
            [a, b, c, d] => format!("{a}.{b}.{c}.{d}"),
            _ => {
                return Err(Refused(format!(
                    "{} bytes; an address option holds 4 (an IPv4 address)",
                    value.len()
                )))
            }
        },
        OptionType::String => {
            let mut end = value.len();
            while end > 0 && value[end - 1] == 0 {
                end -= 1;
            }
            let value = &value[..end];
            if value.is_empty() {
                return Err(Refused("empty".into()));
            }
            if let Some((at, b)) = value
                .iter()
                .enumerate()
                .find(|(_, b)| !b.is_ascii_graphic())
            {
                return Err(Refused(format!(
                    "byte {at} is {b:#04x}; a server is a host name, an address or a URL in \
                     printable ASCII without spaces"
                )));
            }
            // Printable ASCII: UTF-8.
            String::from_utf8_lossy(value).into_owned()
        }
    };
    let schemes: Vec<&str> = schemes.iter().copied().filter(|s| *s != "file").collect();
    let shown = crate::config::shown_url(&text);
    if text
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("file:"))
    {
        return Err(Refused(format!(
            "{shown}: a DHCP server cannot point the agent at a folder of the phone"
        )));
    }
    let full = if text.contains("://") {
        text
    } else if text
        .split_once(':')
        .is_some_and(|(word, _)| is_scheme_word(word))
        && !port_follows(&text)
    {
        // `mailto:x` and the like: a scheme without `//`.
        return Err(Refused(format!(
            "{shown}: not a host name, an address or a URL of {}",
            schemes.join(", ")
        )));
    } else {
        format!("{}://{text}", server_type.name())
    };
    let (base, master_file) = split_master_file(&full);
    let url = ServerUrl::parse(base, std::path::Path::new("/"), &schemes).map_err(Refused)?;
    Ok(Named { url, master_file })
}

/// Whether `word` could be a URL scheme (letters only).
fn is_scheme_word(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Whether `host:` is followed by a port (`prov:8080/...`), not a scheme's rest.
fn port_follows(text: &str) -> bool {
    text.split_once(':').is_some_and(|(_, rest)| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && matches!(rest.as_bytes().get(digits), None | Some(b'/'))
    })
}

/// A URL whose last path segment is a `.cfg` file: the folder, and the file's name.
fn split_master_file(url: &str) -> (&str, Option<String>) {
    let Some(scheme_end) = url.find("://") else {
        return (url, None);
    };
    let after = &url[scheme_end + 3..];
    let Some(slash) = after.rfind('/') else {
        return (url, None);
    };
    let name = &after[slash + 1..];
    if is_master_name(name) {
        let cut = scheme_end + 3 + slash + 1;
        (&url[..cut], Some(name.to_string()))
    } else {
        (url, None)
    }
}

/// Whether `name` is a plain `.cfg` file name (letters, digits, `-`, `_`, `.`; no `..`).
pub(crate) fn is_master_name(name: &str) -> bool {
    name.len() > 4
        && name.len() <= 255
        && name[name.len() - 4..].eq_ignore_ascii_case(".cfg")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.contains("..")
}
