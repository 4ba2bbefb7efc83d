//! `license-fleet`: the service provider's view of a fleet's licenses, from the status
//! reports the phones leave on the provisioning server (`docs/report-schema.md`), the
//! way the vendor's cloud portal shows licenses. A host tool, never on a phone.
//!
//! Every report comes from a device in the field: a file that is not a report (too big,
//! not JSON, another schema) is listed as such and never stops the tool.

#[cfg(test)]
mod tests;
pub(crate) mod view;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::args::{text_value, Usage, EXIT_OK};
use crate::cli::Outcome;
use crate::report::{Report, SCHEMA};
use view::{fleet, Fleet, Options};

/// The largest report file read, in bytes (a report is at most 256 KiB).
pub(crate) const MAX_REPORT_FILE: u64 = 512 * 1024;
/// The report files' names end so.
pub(crate) const SUFFIX: &str = "-license-status.json";

const HELP: &str = "\
license-fleet: a fleet's licenses from its phones' status reports (host tool)

Usage: license-fleet [--at TIME] [--within DAYS] [--stale DAYS] [--json] DIR

Reads every <mac>-license-status.json in DIR (the provisioning server's upload
folder) and shows, as the vendor's portal does:
  the summary: licenses in all, Active, Expiring Shortly (fewer than 31 days left),
    Impending (not started), Inactive (ended), each license once however many phones
    hold it;
  the licenses: fingerprint, kind, serial, status, start, end, the phones holding it,
    and each feature it grants with the phones using it against its Managed Device
    limit (OVER when above);
  what needs attention: features ending within DAYS, stale reports, refused licenses
    (an unknown key: a stale keyring), clock problems, pending reboots;
  files that are not reports.

Options:
  --at TIME      judge the fleet at another instant (RFC 3339 or Unix seconds)
  --within DAYS  a feature ending this soon needs attention (default 31)
  --stale DAYS   a report older than this is stale (default 7)
  --json         one JSON object instead of tables
  -h, --help     this text
";

/// A file of the folder that is not a usable report, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Unreadable {
    pub(crate) file: String,
    pub(crate) why: String,
}

/// The command line of `license-fleet` (without the program name).
pub fn run(args: Vec<OsString>) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut at = None;
    let mut within = 31;
    let mut stale = 7;
    let mut json = false;
    let mut dir: Option<PathBuf> = None;
    let days = |parser: &mut lexopt::Parser, option: &str| -> Result<i64, Usage> {
        let text = text_value(parser, option)?;
        text.trim()
            .trim_end_matches('d')
            .parse::<i64>()
            .ok()
            .filter(|d| (0..=36_500).contains(d))
            .ok_or_else(|| Usage(format!("{option}: a number of days from 0 to 36500")))
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("at") => {
                let text = text_value(&mut parser, "--at")?;
                at = Some(
                    crate::phone::parse_instant(&text).map_err(|e| Usage(format!("--at: {e}")))?,
                );
            }
            Long("within") => within = days(&mut parser, "--within")?,
            Long("stale") => stale = days(&mut parser, "--stale")?,
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let dir = dir.ok_or_else(|| Usage("the reports' folder is needed; see --help".into()))?;
    let at = match at {
        Some(t) => t,
        None => crate::phone::wall_clock().map_err(|e| Usage(e.to_string()))?,
    };
    let (reports, unreadable) = read_folder(&dir).map_err(Usage)?;
    let options = Options {
        at,
        within: within * 86_400,
        stale: stale * 86_400,
    };
    let fleet = fleet(&reports, options);
    let stdout = if json {
        let value = serde_json::json!({ "fleet": fleet, "unreadable": unreadable });
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    } else {
        table(&fleet, &unreadable)
    };
    Ok(Outcome {
        stdout,
        code: EXIT_OK,
    })
}

/// Every `*-license-status.json` of `dir`: the reports, and the files that are not.
pub(crate) fn read_folder(dir: &Path) -> Result<(Vec<Report>, Vec<Unreadable>), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(SUFFIX))
        })
        .collect();
    names.sort();
    let mut reports = Vec::new();
    let mut unreadable = Vec::new();
    for path in names {
        match read_report(&path) {
            Ok(report) => reports.push(report),
            Err(why) => unreadable.push(Unreadable {
                file: path.display().to_string(),
                why,
            }),
        }
    }
    Ok((reports, unreadable))
}

/// One report file: a regular file of bounded size, JSON of the schema's major version.
fn read_report(path: &Path) -> Result<Report, String> {
    let bytes = crate::files::read_regular(path, MAX_REPORT_FILE).map_err(|e| e.to_string())?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => return Err(format!("schema {other:?}, not {SCHEMA:?}")),
        None => return Err("no schema: not a license-agent report".into()),
    }
    serde_json::from_value(value).map_err(|e| format!("not a {SCHEMA} report: {e}"))
}

fn label(status: &str) -> &str {
    match status {
        "active" => "Active",
        "expiring-shortly" => "Expiring Shortly",
        "impending" => "Impending",
        "inactive" => "Inactive",
        other => other,
    }
}

/// The fleet as text tables.
pub(crate) fn table(fleet: &Fleet, unreadable: &[Unreadable]) -> String {
    let s = &fleet.summary;
    let mut out = format!(
        "fleet at {}: {} phones\n\nlicenses {}  active {}  expiring shortly {}  impending {}  inactive {}\n",
        fleet.at, fleet.phones, s.all, s.active, s.expiring_shortly, s.impending, s.inactive
    );
    out.push_str("\nLICENSE       KIND   SERIAL        STATUS            START                 END                   PHONES\n");
    for l in &fleet.licenses {
        out.push_str(&format!(
            "{:<13} {:<6} {:<13} {:<17} {:<21} {:<21} {}\n",
            l.fingerprint.get(..12).unwrap_or(&l.fingerprint),
            l.kind,
            l.serial,
            label(&l.status),
            l.start,
            l.end,
            l.phones
        ));
        for g in &l.grants {
            let used = if g.limit > 0 {
                format!(
                    "{} of {}{}",
                    g.in_use,
                    g.limit,
                    if g.over_limit { " OVER" } else { "" }
                )
            } else {
                format!("{} (not counted)", g.in_use)
            };
            out.push_str(&format!(
                "    {:<24} {:<9} until {:<21} in use {used}\n",
                g.name, g.transaction, g.end
            ));
        }
    }
    if !fleet.attention.is_empty() {
        out.push_str("\nATTENTION\n");
        for a in &fleet.attention {
            out.push_str(&format!("{}  {:<15} {}\n", a.mac, a.what, a.detail));
        }
    }
    if !unreadable.is_empty() {
        out.push_str("\nNOT REPORTS\n");
        for u in unreadable {
            out.push_str(&format!("{}: {}\n", u.file, u.why));
        }
    }
    out
}
