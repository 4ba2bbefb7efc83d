//! The `[syslog]` table: where the agent's log goes besides standard error, modelled on
//! the phone's own `device.syslog.*` settings: a remote syslog server (`server`,
//! `transport`: RFC 5424 over UDP, TCP or TLS), the `facility` and the `level` below
//! which nothing is sent, and the local syslog socket (`local`: BusyBox `syslogd`'s
//! `/dev/log`). TLS takes `ca_file`, `client_cert` and `client_key`, by default
//! `[fetch]`'s (one PKI for the provisioning server and the syslog server).

use std::path::{Path, PathBuf};

use super::table::{Item, Table};
use super::{values, ClientIdentity, ConfigError, Fetch};

pub(super) const KEYS: [&str; 8] = [
    "server",
    "transport",
    "facility",
    "level",
    "local",
    "ca_file",
    "client_cert",
    "client_key",
];

/// Where the local syslog daemon listens (BusyBox `syslogd`, and every other).
pub(crate) const DEV_LOG: &str = "/dev/log";

/// How lines reach the remote server (`transport`, or the server URL's scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// RFC 5426: one datagram a line.
    Udp,
    /// RFC 6587 octet counting: `<length> <line>`.
    Tcp,
    /// RFC 5425: octet counting inside TLS.
    Tls,
}

impl Transport {
    const NAMES: [&'static str; 3] = ["udp", "tcp", "tls"];

    fn named(name: &str) -> Option<Transport> {
        match name {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The IANA port: 514 for UDP and TCP, 6514 for TLS (RFC 5425).
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 514,
            Transport::Tls => 6514,
        }
    }
}

/// The remote syslog server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyslogServer {
    /// A name or an address (an IPv6 one without its brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) transport: Transport,
}

/// The RFC 5424 facilities, by name and code (`facility`).
pub(crate) const FACILITIES: [(&str, u8); 24] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("solaris-cron", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The RFC 5424 severities, by name and code (`level`; `warn` and `err` as syslog's
/// tools also say).
pub(crate) const SEVERITIES: [(&str, u8); 10] = [
    ("emerg", 0),
    ("alert", 1),
    ("crit", 2),
    ("error", 3),
    ("err", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

/// Whether the local syslog socket is written (`local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Local {
    /// [`DEV_LOG`] when it is a socket when the agent starts (the default).
    Auto,
    /// This socket, whether or not it is there yet (`"on"`: [`DEV_LOG`]).
    Socket(PathBuf),
    Off,
}

/// The `[syslog]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Syslog {
    /// No remote syslog when `None`.
    pub(crate) server: Option<SyslogServer>,
    /// An RFC 5424 facility code, 0–23 (default 16, `local0`).
    pub(crate) facility: u8,
    /// The threshold: lines of a severity code above it (less severe) are not sent
    /// (default 6, `info`).
    pub(crate) level: u8,
    pub(crate) local: Local,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_identity: Option<ClientIdentity>,
}

impl Syslog {
    /// No `[syslog]` table: the local socket if there is one, `local0`, `info`.
    pub(crate) fn from_fetch(fetch: &Fetch) -> Syslog {
        Syslog {
            server: None,
            facility: 16,
            level: 6,
            local: Local::Auto,
            ca_file: fetch.ca_file.clone(),
            client_identity: fetch.client_identity.clone(),
        }
    }
}

impl Default for Syslog {
    fn default() -> Self {
        Syslog::from_fetch(&Fetch::default())
    }
}

/// Reads the `[syslog]` table; paths are taken from `base`, the TLS files default to
/// `fetch`'s.
pub(super) fn parse(table: &Table, base: &Path, fetch: &Fetch) -> Result<Syslog, ConfigError> {
    table.check_keys(&KEYS)?;
    let mut syslog = Syslog::from_fetch(fetch);
    let transport = table
        .get("transport")
        .map(|item| {
            let name = item.word(&Transport::NAMES)?;
            Ok::<_, ConfigError>((Transport::named(name).unwrap_or(Transport::Udp), item))
        })
        .transpose()?;
    if let Some(item) = table.get("server") {
        let text = item.str("a host, host:port, or a URL like \"tls://logs.example.com:6514\"")?;
        let server =
            server(text, transport.as_ref().map(|(t, _)| *t)).map_err(|why| item.error(why))?;
        syslog.server = Some(server);
    } else if let Some((_, item)) = &transport {
        return Err(item.error("given without server; give the syslog server too"));
    }
    if let Some(item) = table.get("facility") {
        syslog.facility = coded(&item, &FACILITIES, "a facility")?;
    }
    if let Some(item) = table.get("level") {
        syslog.level = coded(&item, &SEVERITIES, "a level")?;
    }
    if let Some(item) = table.get("local") {
        let text = item.str("\"auto\", \"on\", \"off\" or a socket path")?;
        syslog.local = match text {
            "auto" => Local::Auto,
            "on" => Local::Socket(PathBuf::from(DEV_LOG)),
            "off" => Local::Off,
            path => Local::Socket(values::socket_path(path, base).map_err(|why| {
                item.error(format_args!(
                    "{why} (the value is \"auto\", \"on\", \"off\" or the path of the \
                     local syslog socket)"
                ))
            })?),
        };
    }
    let path_of = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
        table
            .get(name)
            .map(|item| values::path(item.str("a file path")?, base).map_err(|w| item.error(w)))
            .transpose()
    };
    if let Some(ca_file) = path_of("ca_file")? {
        syslog.ca_file = Some(ca_file);
    }
    match (path_of("client_cert")?, path_of("client_key")?) {
        (Some(cert), Some(key)) => syslog.client_identity = Some(ClientIdentity { cert, key }),
        (None, None) => {}
        (Some(_), None) => return Err(pair_missing(table, "client_key", "client_cert")),
        (None, Some(_)) => return Err(pair_missing(table, "client_cert", "client_key")),
    }
    if let Some(server) = &syslog.server {
        if server.transport == Transport::Tls && !cfg!(any(feature = "http", feature = "ftp")) {
            let item = table.get("transport").or_else(|| table.get("server"));
            if let Some(item) = item {
                return Err(item.error(
                    "this agent is built without TLS (its board ships neither https nor \
                     ftps); give udp or tcp",
                ));
            }
        }
    }
    Ok(syslog)
}

/// The error of a client certificate given without its key, or the reverse.
fn pair_missing(table: &Table, missing: &str, given: &str) -> ConfigError {
    let line = table.get(given).map_or(0, |item| item.line());
    table.missing(
        missing,
        format_args!("missing; {given} is given (line {line}), and they go together"),
    )
}

/// `server`: `host`, `host:port`, `[v6]:port`, or `udp://`, `tcp://`, `tls://` before
/// any of them; `transport` is the `transport` key's, which a scheme must agree with.
pub(crate) fn server(text: &str, transport: Option<Transport>) -> Result<SyslogServer, String> {
    let shown = values::shown(text);
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => match Transport::named(scheme) {
            Some(t) => (Some(t), rest),
            None => {
                return Err(format!(
                    "{shown}: the scheme is udp://, tcp:// or tls:// (or none: a host)"
                ))
            }
        },
        None => (None, text),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let transport = match (scheme, transport) {
        (Some(s), Some(t)) if s != t => {
            return Err(format!(
                "{shown} says {} but transport says {}; give one",
                s.name(),
                t.name()
            ))
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => Transport::Udp,
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(format!("{shown}: an IPv6 address without its closing ]"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{shown}: not an IPv6 address in brackets"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{shown}: after ] comes :port or nothing")),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    let is_v6 = rest.starts_with('[');
    if host.is_empty() || (!is_v6 && !host.chars().all(name_ok)) || host.len() > 253 {
        return Err(format!(
            "{shown}: not a host name or address (letters, digits, '-', '.'; an IPv6 \
             address in brackets)"
        ));
    }
    let port = match port {
        None => transport.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("{shown}: the port is 1 to 65535")),
        },
    };
    Ok(SyslogServer {
        host: host.to_string(),
        port,
        transport,
    })
}

/// One of the `names` of `table`, as its code.
fn coded(item: &Item, table: &[(&str, u8)], what: &str) -> Result<u8, ConfigError> {
    let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let text = item.str(what)?;
    table
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            item.error(format_args!(
                "{}: not {what}; one of {}",
                values::shown(text),
                names.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_a_host_a_port_and_a_transport() {
        let ok = |text: &str, t: Option<Transport>| server(text, t).unwrap();
        let s = |host: &str, port: u16, transport: Transport| SyslogServer {
            host: host.into(),
            port,
            transport,
        };
        assert_eq!(ok("logs", None), s("logs", 514, Transport::Udp));
        assert_eq!(ok("logs:1514", None), s("logs", 1514, Transport::Udp));
        assert_eq!(
            ok("logs", Some(Transport::Tls)),
            s("logs", 6514, Transport::Tls)
        );
        assert_eq!(
            ok("tcp://10.0.0.1:601", None),
            s("10.0.0.1", 601, Transport::Tcp)
        );
        assert_eq!(
            ok("tls://[::1]:7000/", Some(Transport::Tls)),
            s("::1", 7000, Transport::Tls)
        );
        assert_eq!(
            ok("udp://[fe80::1]", None),
            s("fe80::1", 514, Transport::Udp)
        );
        for (bad, says) in [
            ("http://logs", "the scheme is udp://"),
            ("tls://logs", "says tls but transport says udp"),
            ("logs:0", "the port is 1 to 65535"),
            ("logs:65536", "the port is 1 to 65535"),
            ("logs:+1", "the port is 1 to 65535"),
            ("", "not a host name"),
            ("lo gs", "not a host name"),
            ("a/b", "not a host name"),
            ("[::1", "without its closing ]"),
            ("[nope]:1", "not an IPv6 address"),
            ("[::1]x", "after ] comes :port"),
        ] {
            let e = server(bad, Some(Transport::Udp)).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
