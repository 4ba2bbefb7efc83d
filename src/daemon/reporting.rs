//! Where the status report goes (`report` in the configuration): the server the
//! executor uploads it to. What is sent and when is the core's ([`super::core::uploads`]).

use std::sync::Arc;

use crate::config::Config;
use crate::fetch::{Provisioning, Server};
use crate::format::Serial;

/// The server the reports of the phone `mac` go to, or why none (for the status).
pub(crate) fn report_server(config: &Config, mac: Serial) -> Result<Arc<dyn Server>, String> {
    let servers = config.report_servers();
    if servers.is_empty() {
        return Err(match config.report {
            crate::config::ReportTo::Off => "off (report = false)".to_string(),
            _ if config.servers.is_empty() => "off: no server".to_string(),
            _ => "off: the servers take no uploads (TFTP); set report = URL".to_string(),
        });
    }
    Provisioning::new(&servers, &config.fetch, mac)
        .map(|p| Arc::new(p) as Arc<dyn Server>)
        .map_err(|e| format!("off: {e}"))
}
