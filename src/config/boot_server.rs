//! The `[provisioning]` table: where the provisioning ("boot") server comes from, as a
//! SoundPoint IP / VVX phone finds it (`firmware/README.md`, "The provisioning server
//! from DHCP"): the `server` list of this file (static), or DHCP's options with the
//! list as the fallback; and whether the master configuration file on that server
//! says where the license files and the reports go. The defaults are the phone's.

use std::path::{Path, PathBuf};

use toml::de::DeValue;

use super::server_url::Scheme;
use super::table::Table;
use super::{values, ConfigError};

pub(super) const KEYS: [&str; 7] = [
    "source",
    "dhcp_option",
    "custom_option",
    "custom_option_type",
    "server_type",
    "master_config",
    "dhcp_file",
];

/// Where the hook of the DHCP client writes the lease's options.
const DEFAULT_DHCP_FILE: &str = "/run/license-agent/dhcp";

/// Where the server comes from (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerSource {
    /// The `server` list only.
    Static,
    /// DHCP's options, then the server that answered last, then the `server` list.
    Dhcp,
}

/// Which DHCP options name the server (`dhcp_option`; the phone's "Boot Server").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DhcpOptions {
    /// Option 66 only.
    Option66,
    /// The custom option only.
    Custom,
    /// The custom option, then option 66 (the phone's default).
    CustomThen66,
}

/// How the custom option's value reads (`custom_option_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptionType {
    /// Text: a host name, an address or a URL.
    String,
    /// Four bytes: an IPv4 address.
    Address,
}

/// The `[provisioning]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootServer {
    pub(crate) source: ServerSource,
    pub(crate) dhcp_options: DhcpOptions,
    /// 128–254.
    pub(crate) custom_option: u8,
    pub(crate) custom_type: OptionType,
    /// The transport of a server named without a scheme (never `file`).
    pub(crate) server_type: Scheme,
    /// Whether the master configuration file is read first.
    pub(crate) master_config: bool,
    pub(crate) dhcp_file: PathBuf,
}

impl Default for BootServer {
    /// No `[provisioning]` table: the `server` list, as before there was one.
    fn default() -> Self {
        BootServer {
            source: ServerSource::Static,
            dhcp_options: DhcpOptions::CustomThen66,
            custom_option: 160,
            custom_type: OptionType::String,
            server_type: Scheme::Ftp,
            master_config: false,
            dhcp_file: PathBuf::from(DEFAULT_DHCP_FILE),
        }
    }
}

impl BootServer {
    /// Whether a cycle first finds where the files are (DHCP, the master file), rather
    /// than asking the `server` list for them.
    pub(crate) fn locates(&self) -> bool {
        self.source == ServerSource::Dhcp || self.master_config
    }

    /// The DHCP options asked, in order.
    pub(crate) fn options(&self) -> Vec<u8> {
        match self.dhcp_options {
            DhcpOptions::Option66 => vec![66],
            DhcpOptions::Custom => vec![self.custom_option],
            DhcpOptions::CustomThen66 => vec![self.custom_option, 66],
        }
    }
}

/// Reads the `[provisioning]` table of a build fetching over `schemes`.
pub(super) fn parse(
    table: &Table,
    base: &Path,
    schemes: &[&str],
) -> Result<BootServer, ConfigError> {
    table.check_keys(&KEYS)?;
    let d = BootServer::default();
    let source = match table.get("source") {
        None => d.source,
        Some(item) => match item.word(&["static", "dhcp"])? {
            "dhcp" => ServerSource::Dhcp,
            _ => ServerSource::Static,
        },
    };
    let dhcp_options = match table.get("dhcp_option") {
        None => d.dhcp_options,
        // 66 written as a number is 66 too.
        Some(item) if matches!(item.value(), DeValue::Integer(n) if n.as_str() == "66") => {
            DhcpOptions::Option66
        }
        Some(item) => match item.word(&["66", "custom", "custom-then-66"])? {
            "66" => DhcpOptions::Option66,
            "custom" => DhcpOptions::Custom,
            _ => DhcpOptions::CustomThen66,
        },
    };
    let custom_option = match table.get("custom_option") {
        None => d.custom_option,
        Some(item) => match item.value() {
            DeValue::Integer(n) => match i128::from_str_radix(n.as_str(), n.radix()) {
                Ok(n @ 128..=254) => n as u8,
                _ => {
                    return Err(item.error(format_args!(
                        "{n}: a custom DHCP option is a site-specific one, 128 to 254 \
                         (the phone's default 160)"
                    )))
                }
            },
            other => return Err(item.type_error("an option number, 128 to 254", other)),
        },
    };
    let custom_type = match table.get("custom_option_type") {
        None => d.custom_type,
        Some(item) => match item.word(&["string", "address"])? {
            "address" => OptionType::Address,
            _ => OptionType::String,
        },
    };
    let server_type = match table.get("server_type") {
        None => d.server_type,
        Some(item) => {
            let name = item.word(&["ftp", "tftp", "http", "https", "ftps"])?;
            if !schemes.contains(&name) {
                return Err(item.error(format_args!(
                    "this agent is built without {name}: its board ships no {name} (it \
                     fetches over {})",
                    schemes.join(", ")
                )));
            }
            Scheme::named(name).unwrap_or(Scheme::Ftp)
        }
    };
    let master_config = match table.get("master_config") {
        None => source == ServerSource::Dhcp,
        Some(item) => match item.value() {
            DeValue::Boolean(b) => *b,
            other => return Err(item.type_error("true or false", other)),
        },
    };
    let dhcp_file = match table.get("dhcp_file") {
        None => d.dhcp_file,
        Some(item) => {
            values::path(item.str("a file path")?, base).map_err(|why| item.error(why))?
        }
    };
    Ok(BootServer {
        source,
        dhcp_options,
        custom_option,
        custom_type,
        server_type,
        master_config,
        dhcp_file,
    })
}
