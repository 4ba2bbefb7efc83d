//! Where the status report goes (`report` in the configuration): the server the
//! executor uploads it to. What is sent and when is the core's ([`super::core::uploads`]).

use std::sync::Arc;

use crate::config::{Config, ReportTo, ServerUrl};
use crate::fetch::{Provisioning, Server};
use crate::format::Serial;

/// The server the reports of the phone `mac` go to, or why none (for the status).
/// `logs`: with a cycle that finds the server (`[provisioning]`), the log folder of the
/// one found last, where `report = true` sends them.
pub(crate) fn report_server(
    config: &Config,
    mac: Serial,
    logs: Option<&ServerUrl>,
) -> Result<Arc<dyn Server>, String> {
    let servers = match logs {
        Some(logs) if config.boot_server.locates() && config.report == ReportTo::Servers => {
            vec![logs.clone()]
        }
        None if config.boot_server.locates() && config.report == ReportTo::Servers => {
            return Err("not yet: the provisioning server is not found yet".to_string())
        }
        _ => config.report_servers(),
    };
    if servers.len() == 1 && !servers[0].scheme().takes_uploads() {
        return Err(format!(
            "off: {} takes no uploads (TFTP); set report = URL",
            servers[0]
        ));
    }
    if servers.is_empty() {
        return Err(match config.report {
            ReportTo::Off => "off (report = false)".to_string(),
            _ if config.servers.is_empty() => "off: no server".to_string(),
            _ => "off: the servers take no uploads (TFTP); set report = URL".to_string(),
        });
    }
    Provisioning::new(&servers, &config.fetch, mac)
        .map(|p| Arc::new(p) as Arc<dyn Server>)
        .map_err(|e| format!("off: {e}"))
}
