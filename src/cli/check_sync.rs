//! `license-agent check-sync`: make the running daemon fetch now, and show what changed.

use super::args::{Usage, EXIT_FAILED, EXIT_OK};
use super::setup::{config_option, default_config};
use super::Outcome;
use crate::control::{call, Request};
use crate::phone::daemon_wait;

pub(crate) const HELP: &str = "\
license-agent check-sync: make the running daemon fetch the license files now

Usage: license-agent check-sync [--config PATH] [--json]

Asks the daemon over its control socket to fetch both license files at once, apply
them and publish the result; prints each file's outcome (accepted, unchanged,
absent, refused, not-used, failed, with why) and the changes to the feature set. Each
file is downloaded whole and compared with the license held, never skipped on the
server's word that it has not changed.

Options:
  --config PATH  the agent's configuration (default /etc/license-agent/agent.toml)
  --json         the daemon's answer as one JSON object
  -h, --help     this text

Exit status: 0 fetched (every file answered), 1 a fetch failed or no daemon answered,
2 usage error or unusable configuration.
";

pub(crate) fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut config = default_config();
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = config_option(&mut parser)?,
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let phone = super::setup::load_phone_saying(&config)?;
    let socket = &phone.config.control_socket;
    let response = match call(socket, &Request::CheckSync {}, daemon_wait(&phone)) {
        Ok(r) => r,
        Err(e) => {
            return Ok(super::args::failed(
                "license-agent",
                &format!("check-sync: {} ({})", e, socket.display()),
            ))
        }
    };
    let Some(report) = response.check_sync.filter(|_| response.ok) else {
        let why = response.error.unwrap_or_else(|| "no answer".into());
        return Ok(super::args::failed(
            "license-agent",
            &format!("check-sync: the daemon refused: {why}"),
        ));
    };
    let code = if report.fetched { EXIT_OK } else { EXIT_FAILED };
    let stdout = if json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        let mut out = String::new();
        for f in &report.files {
            out.push_str(&format!("{} {}: {}\n", f.file, f.outcome, f.detail));
            if let Some(by) = f.answered_by() {
                out.push_str(&format!("  {by}\n"));
            }
        }
        if report.changes.is_empty() {
            out.push_str("features: no change\n");
        } else {
            out.push_str("features:\n");
            for c in &report.changes {
                out.push_str(&format!("  {c}\n"));
            }
        }
        out.push_str(&format!(
            "enabled: {}\n",
            if report.enabled.is_empty() {
                "-".to_string()
            } else {
                report.enabled.join(", ")
            }
        ));
        out
    };
    Ok(Outcome { stdout, code })
}
