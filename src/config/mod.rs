//! The agent's configuration file (`DEFAULT_PATH`, TOML): who the phone is, where the
//! keyring, the state and the sockets are, the provisioning server, and the timers of
//! `shared/spec/agent-rules.md` that it marks *(config)*.
//!
//! [`Config::parse`] checks all of a file: an unknown key, a value of the wrong type or
//! form, a missing required key or two keys that contradict each other is a
//! [`ConfigError`] naming the file, the full dotted key (`timing.poll_interval`) and,
//! where there is one, the line and column. No input panics. The build tools check
//! each firmware's file that way ([`check_config_text`]). On the phone,
//! [`Config::load_setting_aside`] reads the file (at most `MAX_FILE_SIZE` bytes) and
//! sets a bad value aside, reading its key as if absent, unless the key is one of
//! [`NEVER_SET_ASIDE`]: a typo must not take the phone's licensed features away. Every
//! value set aside is returned, to be logged and shown; nothing is ignored silently.
//!
//! # The keys
//!
//! | key | value | default |
//! | --- | --- | --- |
//! | `mac` | the phone's MAC: 12 hex digits, any case, or pairs separated by `:` or `-` (not all zero) | one of `mac`, `interface` is required |
//! | `interface` | read the MAC from `/sys/class/net/<name>/address` (1–15 bytes, no `/`) | |
//! | `site_serial` | the site serial a site license must carry (12 hex digits) | any |
//! | `keyring` | path of the keyring | required |
//! | `state_dir` | path of the license store | required |
//! | `server` | provisioning base URL, or a list of them tried in order (at most 8): `http://`, `https://`, `ftp://`, `ftps://`, `tftp://` (a port, if given, 1–65535; an IPv6 host in brackets), `file:///abs/` or `file:rel/` | no fetching |
//! | `enabled_features` | features the phone has enabled: names, `feature-XXXX` or ids | `[]` |
//! | `supervisor_socket` | the phone supervisor's socket | `/run/phone/supervisor.sock` |
//! | `supervisor` | `"none"`: no supervisor, reboots are only logged (not with `supervisor_socket`) | |
//! | `control_socket` | the agent's control socket (an output: see below) | `/run/license-agent/control.sock` |
//! | `features_file` | where the enabled feature set is published (an output) | `/run/license-agent/features` |
//! | `report` | where the status report `<mac>-license-status.json` is uploaded: `false` (nowhere), `true` (the `server`s that take uploads: all but `tftp`), or a base URL (`http(s)`, `ftp(s)`, `file`; a port as for `server`); into a `file:` folder it is an output | `true` |
//! | `[fetch]` | `ca_file`, `client_cert` + `client_key`, `username` + `password` (pairs: both or neither), `connect_timeout`, `total_timeout` | no TLS client certificate, no authentication, 10s, 60s |
//! | `[reboot]` | `windows` (`DAYS HH:MM-HH:MM` in local time), `timezone` (a POSIX `TZ` rule), `wait_for_window` (causes), `deadline` (`config/reboot_windows.rs`) | no window, `UTC0`, `feature-licensed` and `license-changed`, 7d |
//! | `[syslog]` | `server` (`host`, `host:port`, or a `udp://`, `tcp://`, `tls://` URL), `transport` (`udp`, `tcp`, `tls`), `facility` (`kern` … `local7`), `level` (`debug`, `info`, `notice`, `warning`, `error`, …: less severe lines are not sent), `local` (`auto`: `/dev/log` when it is a socket; `on`; `off`; or a socket path), `ca_file`, `client_cert` + `client_key` (for `tls`) | no remote syslog, `udp` (port 514; 6514 for `tls`), `local0`, `info`, `auto`, `[fetch]`'s files |
//! | `[timing]` | `windback_tolerance`, `poll_interval`, `renewal_check_interval`, `idle_grace`, `stagger_window`, `reboot_reask`, `retry_initial`, `retry_max`, `write_retry`, `boot_clock_wait` | 24h, 1h, 1d, 30s, 1h, 10m, 30s, 1h, 1m, 30s |
//!
//! Paths that are not absolute are taken from the directory holding the configuration
//! file (so a demo configuration next to its files works from any directory), and so is
//! a `file:` server URL that is not absolute; a relative configuration path is made
//! absolute from the current directory, so the results do not depend on it later. The server URL is kept with a `/` at the
//! end, since file names are appended to it. Socket paths must fit a Unix socket address
//! (107 bytes).
//!
//! The paths the agent writes (the outputs: `control_socket`; `features_file` and the
//! `.tmp-` file it is written through; the status report in a `file:` folder, `report`'s
//! or with `report = true` each `file:` server's) may not be, or lie inside, what it
//! reads or keeps: the configuration file, `keyring`, `supervisor_socket`,
//! `fetch.ca_file`, `fetch.client_cert`, `fetch.client_key`, the `state_dir` folder (the
//! licenses, `meta.json`, `rejected/`, the lock), or a license file (`<12 hex
//! digits>-license.cfg`) of a `file:` server; the report going into a `file:` server's
//! folder is the normal case. The paths are compared as written and with the existing
//! folders resolved (symbolic links, `..`); nothing has to exist (`paths.rs`). The error
//! is at the output's key, or at the input's when the output is a default.
//!
//! Durations are whole seconds (a TOML integer) or a string of `<digits><unit>` parts
//! from the largest unit to the smallest, units `d`, `h`, `m`, `s`: `"90s"`, `"1h30m"`,
//! `"2d"`; at most 100 years. Zero is refused where it would make the agent spin or
//! divide by zero: `poll_interval`, `renewal_check_interval`, `stagger_window`,
//! `reboot_reask`, `retry_initial`, `retry_max`, `write_retry`, `connect_timeout`,
//! `total_timeout`; and
//! `retry_initial` must not exceed `retry_max`.
//!
//! # Example (`src/config/example.toml`, every key)
//!
#![doc = concat!("```toml\n", include_str!("example.toml"), "```")]

mod boot_server;
mod paths;
mod reboot_windows;
mod server_url;
pub(crate) mod syslog;
mod table;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::format::{FeatureId, Serial};
#[cfg(test)]
pub(crate) use boot_server::DhcpOptions;
pub(crate) use boot_server::{BootServer, OptionType, ServerSource};
pub(crate) use server_url::{listed, shown_url, Scheme, ServerUrl};
use table::{Item, Source, Table};

#[cfg(test)]
use values::MAX_SECS;

/// Where the agent reads its configuration unless told otherwise.
pub(crate) const DEFAULT_PATH: &str = "/etc/license-agent/agent.toml";

/// The largest configuration file, in bytes.
pub(crate) const MAX_FILE_SIZE: usize = 64 * 1024;

/// The keys whose bad value still stops `run` ([`Config::load_setting_aside`]): who the
/// phone is (a site license for another site must not pass), what it trusts and where
/// its licenses are. Every other key has a default the agent can run on.
pub(crate) const NEVER_SET_ASIDE: [&str; 5] =
    ["mac", "interface", "site_serial", "keyring", "state_dir"];

/// At most this many bad values set aside; a file with more is refused as a whole.
const MAX_SET_ASIDE: usize = 32;

/// A configuration with every key, each explained (it parses: see the tests).
#[cfg(test)]
const EXAMPLE: &str = include_str!("example.toml");

const DEFAULT_SUPERVISOR_SOCKET: &str = "/run/phone/supervisor.sock";
const DEFAULT_CONTROL_SOCKET: &str = "/run/license-agent/control.sock";
const DEFAULT_FEATURES_FILE: &str = "/run/license-agent/features";

const TOP_KEYS: [&str; 17] = [
    "mac",
    "interface",
    "site_serial",
    "keyring",
    "state_dir",
    "server",
    "enabled_features",
    "supervisor_socket",
    "supervisor",
    "control_socket",
    "features_file",
    "report",
    "provisioning",
    "fetch",
    "timing",
    "reboot",
    "syslog",
];
const FETCH_KEYS: [&str; 7] = [
    "ca_file",
    "client_cert",
    "client_key",
    "username",
    "password",
    "connect_timeout",
    "total_timeout",
];
const TIMING_KEYS: [&str; 10] = [
    "windback_tolerance",
    "poll_interval",
    "renewal_check_interval",
    "idle_grace",
    "stagger_window",
    "reboot_reask",
    "retry_initial",
    "retry_max",
    "write_retry",
    "boot_clock_wait",
];

/// The agent's configuration, every value checked and every path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub(crate) path: PathBuf,
    /// Where the phone's MAC comes from (see [`Config::mac`]).
    pub(crate) mac: MacSource,
    /// The site serial a site license must carry, when configured.
    pub(crate) site_serial: Option<Serial>,
    pub(crate) keyring: PathBuf,
    pub(crate) state_dir: PathBuf,
    /// The provisioning servers, tried in this order (`http`, `https`, `ftp`, `ftps`,
    /// `tftp` or `file` base URLs, each ending in `/`); no fetching when empty.
    pub(crate) servers: Vec<ServerUrl>,
    /// The licensable features the phone has enabled, in file order, no duplicates.
    pub(crate) enabled_features: Vec<FeatureId>,
    pub(crate) supervisor: Supervisor,
    pub(crate) control_socket: PathBuf,
    pub(crate) features_file: PathBuf,
    /// Where the status report goes.
    pub(crate) report: ReportTo,
    /// Where the provisioning server comes from (`[provisioning]`).
    pub(crate) boot_server: BootServer,
    /// The reboot windows (`[reboot]`); `None`: a reboot is asked when idle.
    pub(crate) reboot_windows: Option<std::sync::Arc<crate::engine::window::Schedule>>,
    pub(crate) fetch: Fetch,
    pub(crate) timing: Timing,
    /// Where the log goes besides standard error (`[syslog]`).
    pub(crate) syslog: syslog::Syslog,
}

/// The URL schemes this build fetches from: its transport features (a board builds
/// those it ships), and folders.
pub(crate) const TRANSPORTS: &[&str] = &[
    #[cfg(feature = "http")]
    "http",
    #[cfg(feature = "http")]
    "https",
    #[cfg(feature = "ftp")]
    "ftp",
    #[cfg(feature = "ftp")]
    "ftps",
    #[cfg(feature = "tftp")]
    "tftp",
    "file",
];

/// The URL schemes a build with these transport features (a board's `transports`)
/// fetches from: what [`TRANSPORTS`] is for the features this build has.
pub(crate) fn schemes_of<'a>(features: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
    let mut schemes: Vec<&'static str> = Vec::new();
    for feature in features {
        schemes.extend_from_slice(match feature {
            "http" => &["http", "https"][..],
            "ftp" => &["ftp", "ftps"][..],
            "tftp" => &["tftp"][..],
            _ => &[][..],
        });
    }
    schemes.push("file");
    schemes
}

/// The most servers a `server` list may name.
pub(crate) const MAX_SERVERS: usize = 8;

/// Where the status report is uploaded (`report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReportTo {
    /// `report = false`.
    Off,
    /// The provisioning servers that take uploads (the default).
    Servers,
    /// A base URL of its own.
    Url(ServerUrl),
}

impl Config {
    /// The servers the status report is uploaded to, tried in order (none: no report).
    pub(crate) fn report_servers(&self) -> Vec<ServerUrl> {
        match &self.report {
            ReportTo::Off => Vec::new(),
            ReportTo::Servers => self
                .servers
                .iter()
                .filter(|s| s.scheme().takes_uploads())
                .cloned()
                .collect(),
            ReportTo::Url(url) => vec![url.clone()],
        }
    }
}

/// Where the phone's MAC comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MacSource {
    /// Written in the file.
    Fixed(Serial),
    /// Read from `/sys/class/net/<name>/address` when asked.
    Interface(String),
}

/// How reboots are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Supervisor {
    /// The phone supervisor's Unix socket (`supervisor-protocol.md`).
    Socket(PathBuf),
    /// A board without supervisor: the agent only logs the reboots it would have asked.
    None,
}

/// How licenses are fetched from the server. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    /// The CA certificate(s) that the server's certificate must chain to.
    pub(crate) ca_file: Option<PathBuf>,
    /// The TLS client certificate and its key, for mutual TLS.
    pub(crate) client_identity: Option<ClientIdentity>,
    /// HTTP basic authentication: both or neither.
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) connect_timeout: Secs,
    pub(crate) total_timeout: Secs,
}

impl Default for Fetch {
    fn default() -> Self {
        Fetch {
            ca_file: None,
            client_identity: None,
            username: None,
            password: None,
            connect_timeout: Secs(10),
            total_timeout: Secs(60),
        }
    }
}

impl fmt::Debug for Fetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetch")
            .field("ca_file", &self.ca_file)
            .field("client_identity", &self.client_identity)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("total_timeout", &self.total_timeout)
            .finish()
    }
}

/// A TLS client certificate and its private key (`fetch.client_cert`,
/// `fetch.client_key`): one is never given without the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    /// PEM: the certificate, then any intermediates.
    pub(crate) cert: PathBuf,
    /// PEM: the certificate's private key.
    pub(crate) key: PathBuf,
}

/// The timers of the agent rules that the configuration may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timing {
    /// How far behind the latest trusted time the clock may read before it counts as
    /// wound back.
    pub(crate) windback_tolerance: Secs,
    /// Polling for a license while an enabled feature has none in force.
    pub(crate) poll_interval: Secs,
    /// Checking for a renewal while a license in force is Expiring Shortly.
    pub(crate) renewal_check_interval: Secs,
    /// How long the phone must have been idle before a reboot is asked.
    pub(crate) idle_grace: Secs,
    /// The window over which site-license reboots are spread by MAC.
    pub(crate) stagger_window: Secs,
    /// Asking again when still running this long after the supervisor's `OK`.
    pub(crate) reboot_reask: Secs,
    /// The first back-off delay after a failed fetch, and the most it grows to.
    pub(crate) retry_initial: Secs,
    pub(crate) retry_max: Secs,
    /// Trying a failed write again (the store on read-only or full flash, the features
    /// file).
    pub(crate) write_retry: Secs,
    /// At a start with the clock not yet set (a phone boots at 1970 until SNTP sets
    /// it), how long the boot fetch and the first publish wait for the clock; zero
    /// publishes the stored set at once.
    pub(crate) boot_clock_wait: Secs,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            windback_tolerance: Secs(24 * 3600),
            poll_interval: Secs(3600),
            renewal_check_interval: Secs(24 * 3600),
            idle_grace: Secs(30),
            stagger_window: Secs(3600),
            reboot_reask: Secs(600),
            retry_initial: Secs(30),
            retry_max: Secs(3600),
            write_retry: Secs(60),
            boot_clock_wait: Secs(30),
        }
    }
}

/// A duration in whole seconds (at most [`MAX_SECS`](values::MAX_SECS) when it comes from
/// the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Secs(pub(crate) u64);

impl Secs {
    /// Reads a duration as the file writes it in a string: `"90s"`, `"1h30m"`, `"2d"`.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> Result<Secs, String> {
        values::duration(text)
    }

    #[cfg(test)]
    pub(crate) fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

/// The file's form: `0s`, `1m30s`, `1d`.
impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&values::duration_text(self.0))
    }
}

/// What is wrong with a configuration: the file, the full dotted key when the problem is
/// one key's, and what is wrong (with the line and column when there is a place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) file: PathBuf,
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Checks a configuration given as text with the agent's own parser, as the binary of a
/// board shipping `transports` (its cargo features: `http`, `ftp`, `tftp`) would read
/// it, for the build tools: `cargo xtask` checks each firmware drop's generated
/// `agent.toml` with it. The error as text.
pub fn check_config_text<'a>(
    text: &str,
    path: &Path,
    transports: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    Config::parse_for(text, path, &schemes_of(transports), &[])
        .map(drop)
        .map_err(|e| e.to_string())
}

impl Config {
    /// Reads and checks the configuration file at `path`. A bad value of a key the
    /// agent can run without is set aside, the key read as if absent (its default),
    /// and the file checked again, so that no configuration value stops the phone from
    /// publishing the licenses it holds (the developers' guide, "Nothing from outside
    /// can brick it"). The values set aside come back as their errors, to be logged and
    /// shown. What is still fatal: a file that cannot be read or is not TOML, and a bad
    /// or missing [`NEVER_SET_ASIDE`] key (who the phone is, what it trusts, where its
    /// licenses are: without them there is nothing to publish, or no safe way to).
    pub(crate) fn load_setting_aside(
        path: &Path,
    ) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        Config::parse_setting_aside(&Config::read(path)?, path)
    }

    /// [`Config::load_setting_aside`] of a text already read (`path` is its file).
    pub(crate) fn parse_setting_aside(
        text: &str,
        path: &Path,
    ) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let mut set_aside: Vec<ConfigError> = Vec::new();
        let mut ignored: Vec<String> = Vec::new();
        loop {
            match Config::parse_for(text, path, TRANSPORTS, &ignored) {
                Ok(config) => return Ok((config, set_aside)),
                Err(e) => {
                    let Some(key) = e.key.clone() else {
                        return Err(e);
                    };
                    let root = key.split('.').next().unwrap_or_default();
                    if NEVER_SET_ASIDE.contains(&root)
                        || ignored.contains(&key)
                        || ignored.len() == MAX_SET_ASIDE
                    {
                        return Err(e);
                    }
                    ignored.push(key);
                    set_aside.push(e);
                }
            }
        }
    }

    /// The file's text: at most `MAX_FILE_SIZE` bytes of UTF-8.
    fn read(path: &Path) -> Result<String, ConfigError> {
        let fail = |message: String| ConfigError {
            file: path.to_path_buf(),
            key: None,
            message,
        };
        // Opened so that a FIFO or a device in its place cannot hold the daemon.
        let bytes = match crate::files::read_regular(path, MAX_FILE_SIZE as u64) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(fail(too_big(None)))
            }
            Err(e) => return Err(fail(format!("cannot read the configuration file: {e}"))),
        };
        match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(&e.as_bytes()[..at]);
                let (line, column) = Source {
                    text: &valid,
                    file: path,
                    ignored: &[],
                }
                .place(at);
                Err(fail(format!(
                    "line {line}, column {column}: not UTF-8 text (byte {at}); a TOML file \
                     is UTF-8"
                )))
            }
        }
    }

    /// Checks a configuration given as text; `path` is the file it came from (named in
    /// errors; relative paths in the text are taken from its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_for(text, path, TRANSPORTS, &[])
    }

    /// [`Config::parse`] for a build fetching from `schemes` (this one's: [`TRANSPORTS`]),
    /// reading the full dotted keys `ignored` as if absent.
    fn parse_for(
        text: &str,
        path: &Path,
        schemes: &[&str],
        ignored: &[String],
    ) -> Result<Config, ConfigError> {
        let src = Source {
            text,
            file: path,
            ignored,
        };
        if text.len() > MAX_FILE_SIZE {
            return Err(src.error(None, None, too_big(Some(text.len()))));
        }
        let doc = DeTable::parse(text).map_err(|e| src.syntax_error(&e, &is_known_key))?;
        let top = Table::root(src, doc.get_ref());
        top.check_keys(&TOP_KEYS)?;
        let base = values::base_dir(path);
        let path_of = |item: &Item, what: &str| -> Result<PathBuf, ConfigError> {
            values::path(item.str(what)?, &base).map_err(|why| item.error(why))
        };
        let socket_of = |item: &Item| -> Result<PathBuf, ConfigError> {
            values::socket_path(item.str("a socket path")?, &base).map_err(|why| item.error(why))
        };

        let mac = match (top.get("mac"), top.get("interface")) {
            (Some(_), Some(interface)) => {
                return Err(interface.error(
                    "mac and interface are both given; give exactly one: the MAC, or the \
                     interface to read it from",
                ))
            }
            (Some(mac), None) => {
                let text = mac.str("a MAC address like \"0004f2000001\"")?;
                MacSource::Fixed(values::mac(text).map_err(|why| mac.error(why))?)
            }
            (None, Some(interface)) => {
                let name = interface.str("an interface name like \"eth0\"")?;
                values::interface(name).map_err(|why| interface.error(why))?;
                MacSource::Interface(name.to_string())
            }
            (None, None) => {
                return Err(top.missing(
                    "mac",
                    "missing; give the phone's MAC (mac = \"0004f2000001\") or the \
                     interface to read it from (interface = \"eth0\")",
                ))
            }
        };

        let site_serial = match top.get("site_serial") {
            None => None,
            Some(item) => {
                let text = item.str("a serial of 12 hex digits")?;
                Some(Serial::parse(text).map_err(|why| item.error(why))?)
            }
        };

        let keyring = match top.get("keyring") {
            Some(item) => path_of(&item, "the keyring's path")?,
            None => {
                return Err(top.missing(
                    "keyring",
                    "missing; the path of the trusted keyring is required",
                ))
            }
        };
        let state_dir = match top.get("state_dir") {
            Some(item) => path_of(&item, "a directory path")?,
            None => {
                return Err(top.missing(
                    "state_dir",
                    "missing; the directory where licenses are stored is required",
                ))
            }
        };

        // One URL, or a list tried in order.
        let mut servers: Vec<ServerUrl> = Vec::new();
        let mut server_items = Vec::new();
        let mut credentials_at = None;
        if let Some(item) = top.get("server") {
            const WHAT: &str = "a URL like \"https://prov.example.com/phones/\", or a list of them";
            let entries = match item.value() {
                DeValue::Array(list) if list.is_empty() => {
                    return Err(item
                        .error("an empty list; give at least one URL, or no server (no fetching)"))
                }
                DeValue::Array(_) => item.array(WHAT)?,
                _ => vec![item],
            };
            for entry in entries {
                let text = entry.str(WHAT)?;
                let url = ServerUrl::parse(text, &base, schemes).map_err(|why| entry.error(why))?;
                if servers.iter().any(|s| s.as_str() == url.as_str()) {
                    return Err(entry.error(format_args!("{url} is listed twice")));
                }
                if servers.len() == MAX_SERVERS {
                    return Err(entry.error(format_args!(
                        "more than {MAX_SERVERS} servers; a phone tries them in turn at every fetch"
                    )));
                }
                if url.credentials().is_some() && credentials_at.is_none() {
                    credentials_at = Some(entry.error(
                        "credentials are in both the URL's user info and fetch.username; give them once",
                    ));
                }
                servers.push(url);
                server_items.push(entry);
            }
        }

        let enabled_features = match top.get("enabled_features") {
            None => Vec::new(),
            Some(item) => features(&item)?,
        };

        let supervisor = match (top.get("supervisor_socket"), top.get("supervisor")) {
            (Some(_), Some(none)) => {
                return Err(none.error(
                    "supervisor and supervisor_socket are both given; give \
                     supervisor_socket for a board with a supervisor, or supervisor = \
                     \"none\" for one without",
                ))
            }
            (Some(item), None) => Supervisor::Socket(socket_of(&item)?),
            (None, Some(item)) => match item.str("\"none\"")? {
                "none" => Supervisor::None,
                other => {
                    return Err(item.error(format_args!(
                        "{}: the only value is \"none\" (a board without supervisor); \
                         for a supervisor, give supervisor_socket = \"/path\"",
                        values::shown(other)
                    )))
                }
            },
            (None, None) => Supervisor::Socket(PathBuf::from(DEFAULT_SUPERVISOR_SOCKET)),
        };

        let control_socket = match top.get("control_socket") {
            Some(item) => socket_of(&item)?,
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        };
        let features_file = match top.get("features_file") {
            Some(item) => path_of(&item, "a file path")?,
            None => PathBuf::from(DEFAULT_FEATURES_FILE),
        };

        let report = match top.get("report") {
            None => ReportTo::Servers,
            Some(item) => match item.value() {
                DeValue::Boolean(false) => ReportTo::Off,
                DeValue::Boolean(true) => ReportTo::Servers,
                _ => {
                    let text = item.str("false, true, or a URL like \"https://prov/reports/\"")?;
                    let url =
                        ServerUrl::parse(text, &base, schemes).map_err(|why| item.error(why))?;
                    if !url.scheme().takes_uploads() {
                        return Err(item.error(format_args!(
                            "{url}: a TFTP server takes no uploads from the agent; give an \
                             http(s), ftp(s) or file URL, or report = false"
                        )));
                    }
                    ReportTo::Url(url)
                }
            },
        };

        let boot_server = match top.table("provisioning")? {
            Some(table) => boot_server::parse(&table, &base, schemes)?,
            None => BootServer::default(),
        };

        let fetch_table = top.table("fetch")?;
        let fetch = match &fetch_table {
            Some(table) => fetch(table, &path_of)?,
            None => Fetch::default(),
        };
        // Credentials may come from a URL's user info or from [fetch], not both.
        if let Some(error) = credentials_at.filter(|_| fetch.username.is_some()) {
            return Err(error);
        }
        let timing = match top.table("timing")? {
            Some(table) => timing(&table)?,
            None => Timing::default(),
        };
        let reboot_windows = match top.table("reboot")? {
            Some(table) => reboot_windows::parse(&table)?,
            None => None,
        };
        let syslog_table = top.table("syslog")?;
        let syslog = match &syslog_table {
            Some(table) => syslog::parse(table, &base, &fetch)?,
            None => syslog::Syslog::from_fetch(&fetch),
        };

        let config = Config {
            path: path.to_path_buf(),
            mac,
            site_serial,
            keyring,
            state_dir,
            servers,
            enabled_features,
            supervisor,
            control_socket,
            features_file,
            report,
            boot_server,
            reboot_windows,
            fetch,
            timing,
            syslog,
        };
        let in_fetch = |name: &str| fetch_table.as_ref().and_then(|table| table.get(name));
        let places = paths::Places {
            keyring: top.get("keyring"),
            state_dir: top.get("state_dir"),
            supervisor_socket: top.get("supervisor_socket"),
            control_socket: top.get("control_socket"),
            features_file: top.get("features_file"),
            report: top.get("report"),
            ca_file: in_fetch("ca_file"),
            client_cert: in_fetch("client_cert"),
            client_key: in_fetch("client_key"),
            syslog: ["ca_file", "client_cert", "client_key"]
                .map(|name| syslog_table.as_ref().and_then(|table| table.get(name))),
            servers: server_items,
        };
        paths::check(&config, &places)?;
        Ok(config)
    }

    /// The phone's MAC: the configured one, or the interface's from `/sys/class/net`.
    pub(crate) fn mac(&self) -> Result<Serial, ConfigError> {
        self.mac_from(Path::new("/sys/class/net"))
    }

    /// [`Config::mac`] with the `/sys/class/net` directory given (for tests): reads
    /// `<sys_class_net>/<interface>/address` (`aa:bb:cc:dd:ee:ff` and a newline).
    pub(crate) fn mac_from(&self, sys_class_net: &Path) -> Result<Serial, ConfigError> {
        let name = match &self.mac {
            MacSource::Fixed(serial) => return Ok(*serial),
            MacSource::Interface(name) => name,
        };
        let fail = |message: String| ConfigError {
            file: self.path.clone(),
            key: Some("interface".to_string()),
            message,
        };
        // The name was checked at parse time, but the field is public: check it again
        // before it becomes part of a path.
        values::interface(name).map_err(fail)?;
        let address = sys_class_net.join(name).join("address");
        let bytes = match crate::files::read_regular(&address, 256) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(format!(
                    "no network interface {name:?}: {} does not exist",
                    address.display()
                )))
            }
            Err(e) => return Err(fail(format!("cannot read {}: {e}", address.display()))),
        };
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        values::mac(text).map_err(|why| {
            fail(format!(
                "{} does not hold the interface's MAC: {why}",
                address.display()
            ))
        })
    }
}

/// Whether `path` is a key of the file (to keep only sensible guesses of the key a TOML
/// syntax error is about).
fn is_known_key(path: &str) -> bool {
    match path.split_once('.') {
        None => TOP_KEYS.contains(&path),
        Some(("fetch", key)) => FETCH_KEYS.contains(&key),
        Some(("timing", key)) => TIMING_KEYS.contains(&key),
        Some(("provisioning", key)) => boot_server::KEYS.contains(&key),
        Some(("reboot", key)) => reboot_windows::KEYS.contains(&key),
        Some(("syslog", key)) => syslog::KEYS.contains(&key),
        Some(_) => false,
    }
}

fn too_big(size: Option<usize>) -> String {
    let size = match size {
        Some(n) => format!("{n} bytes"),
        None => format!("larger than {MAX_FILE_SIZE} bytes"),
    };
    format!("the file is {size}; a configuration file is at most {MAX_FILE_SIZE} bytes")
}

/// `enabled_features`: an array of feature names or ids, each once.
fn features(item: &Item) -> Result<Vec<FeatureId>, ConfigError> {
    const WHAT: &str = "a feature name or id like \"vqmon\" or \"0x0002\"";
    let mut out: Vec<(FeatureId, usize)> = Vec::new();
    for element in item.array("an array of feature names, like [\"vqmon\"]")? {
        let id = FeatureId::parse(element.str(WHAT)?).map_err(|why| element.error(why))?;
        if let Some((_, line)) = out.iter().find(|(seen, _)| *seen == id) {
            return Err(element.error(format_args!(
                "{} is listed twice (also on line {line})",
                id.name()
            )));
        }
        out.push((id, element.line()));
    }
    Ok(out.into_iter().map(|(id, _)| id).collect())
}

/// The `[fetch]` table.
fn fetch(
    table: &Table,
    path_of: &dyn Fn(&Item, &str) -> Result<PathBuf, ConfigError>,
) -> Result<Fetch, ConfigError> {
    table.check_keys(&FETCH_KEYS)?;
    let optional_path = |name: &str, what: &str| -> Result<Option<PathBuf>, ConfigError> {
        table.get(name).map(|item| path_of(&item, what)).transpose()
    };
    let ca_file = optional_path("ca_file", "a file path")?;
    let client_cert = optional_path("client_cert", "a file path")?;
    let client_key = optional_path("client_key", "a file path")?;
    both_or_neither(table, "client_cert", "client_key")?;
    let client_identity = client_cert
        .zip(client_key)
        .map(|(cert, key)| ClientIdentity { cert, key });

    let username = match table.get("username") {
        None => None,
        Some(item) => {
            let text = item.str("a user name")?;
            values::username(text).map_err(|why| item.error(why))?;
            Some(text.to_string())
        }
    };
    let password = match table.get("password") {
        None => None,
        Some(item) => {
            let text = item.str("a password")?;
            values::password(text).map_err(|why| item.error(why))?;
            Some(text.to_string())
        }
    };
    both_or_neither(table, "username", "password")?;

    let defaults = Fetch::default();
    Ok(Fetch {
        ca_file,
        client_identity,
        username,
        password,
        connect_timeout: secs(table, "connect_timeout", defaults.connect_timeout)?,
        total_timeout: secs(table, "total_timeout", defaults.total_timeout)?,
    })
}

/// Keys that only make sense together: naming the one that is missing.
fn both_or_neither(table: &Table, a: &str, b: &str) -> Result<(), ConfigError> {
    let (given, missing) = match (table.get(a), table.get(b)) {
        (Some(given), None) => (given, b),
        (None, Some(given)) => (given, a),
        _ => return Ok(()),
    };
    Err(table.missing(
        missing,
        format_args!(
            "missing; {} is given (line {}), and {a} and {b} go together",
            given.key,
            given.line()
        ),
    ))
}

/// The `[timing]` table.
fn timing(table: &Table) -> Result<Timing, ConfigError> {
    table.check_keys(&TIMING_KEYS)?;
    let d = Timing::default();
    let timing = Timing {
        windback_tolerance: secs(table, "windback_tolerance", d.windback_tolerance)?,
        poll_interval: secs(table, "poll_interval", d.poll_interval)?,
        renewal_check_interval: secs(table, "renewal_check_interval", d.renewal_check_interval)?,
        idle_grace: secs(table, "idle_grace", d.idle_grace)?,
        stagger_window: secs(table, "stagger_window", d.stagger_window)?,
        reboot_reask: secs(table, "reboot_reask", d.reboot_reask)?,
        retry_initial: secs(table, "retry_initial", d.retry_initial)?,
        retry_max: secs(table, "retry_max", d.retry_max)?,
        write_retry: secs(table, "write_retry", d.write_retry)?,
        boot_clock_wait: secs(table, "boot_clock_wait", d.boot_clock_wait)?,
    };
    if timing.retry_initial > timing.retry_max {
        // Blame the key that is in the file (retry_initial when both are).
        let (item, message) = match table.get("retry_initial") {
            Some(item) => {
                let max = match table.get("retry_max") {
                    Some(_) => String::new(),
                    None => ", the default".to_string(),
                };
                let message = format!(
                    "{} is longer than timing.retry_max ({}{max}); the back-off starts at \
                     retry_initial and grows up to retry_max",
                    timing.retry_initial, timing.retry_max
                );
                (item, message)
            }
            None => match table.get("retry_max") {
                Some(item) => {
                    let message = format!(
                        "{} is shorter than timing.retry_initial ({}, the default); the \
                         back-off starts at retry_initial and grows up to retry_max",
                        timing.retry_max, timing.retry_initial
                    );
                    (item, message)
                }
                // Unreachable with the defaults (30s ≤ 1h), but never a panic.
                None => return Ok(timing),
            },
        };
        return Err(item.error(message));
    }
    Ok(timing)
}

/// Why zero is refused for a duration key (None: zero is fine).
fn zero_refused(name: &str) -> Option<&'static str> {
    Some(match name {
        "poll_interval" => "the agent would poll the server without pause",
        "renewal_check_interval" => "the agent would check for a renewal without pause",
        "stagger_window" => "the stagger delay is the MAC's hash modulo the window",
        "retry_initial" => "a failed fetch would be retried without pause",
        "reboot_reask" => "the agent would ask the supervisor for a reboot without pause",
        "retry_max" => "a failed fetch would be retried without pause",
        "write_retry" => "a failed write would be retried without pause",
        "connect_timeout" => "every connection would time out at once",
        "total_timeout" => "every fetch would time out at once",
        _ => return None,
    })
}

/// The duration `name` of `table`, or `default` when not given.
fn secs(table: &Table, name: &str, default: Secs) -> Result<Secs, ConfigError> {
    let Some(item) = table.get(name) else {
        return Ok(default);
    };
    let value = match item.value() {
        DeValue::Integer(n) => i128::from_str_radix(n.as_str(), n.radix())
            .map_err(|_| format!("{n}: too large"))
            .and_then(values::whole_seconds),
        DeValue::String(text) => values::duration(text),
        other => {
            return Err(item.type_error(
                "a duration: whole seconds (90) or a string like \"90s\", \"1h30m\" or \"2d\"",
                other,
            ))
        }
    };
    let value = value.map_err(|why| item.error(why))?;
    if value == Secs(0) {
        if let Some(why) = zero_refused(name) {
            return Err(item.error(format_args!("must be more than zero: {why}")));
        }
    }
    Ok(value)
}
