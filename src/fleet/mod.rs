//! `license-fleet`: the service provider's view of a fleet's licenses, from the status
//! reports the phones leave on the provisioning server (`docs/report-schema.md`), the
//! way the vendor's cloud portal shows licenses. A host tool, never on a phone.
//!
//! Every report comes from a device in the field: a file that is not a report (too big,
//! not JSON, another schema) is listed as such and never stops the tool.
//!
//! Outputs: text tables, `--json`, `--csv[=TABLE]` ([`csv`]) and the portal-like page
//! `--html FILE` ([`html`]). The folder is read on every core and folded report by
//! report ([`view::Gather`]): 100,000 reports take seconds and a few hundred MB at most.

pub(crate) mod csv;
pub(crate) mod html;
pub(crate) mod slim;
#[cfg(test)]
mod tests;
pub(crate) mod view;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cli::args::{text_value, Usage, EXIT_OK};
use crate::cli::Outcome;
use crate::report::SCHEMA;
use slim::Slim;
use view::{Fleet, Gather, Options};

/// The largest report file read, in bytes (a report is at most 256 KiB).
pub(crate) const MAX_REPORT_FILE: u64 = 512 * 1024;
/// The report files' names end so.
pub(crate) const SUFFIX: &str = "-license-status.json";

const HELP: &str = "\
license-fleet: a fleet's licenses from its phones' status reports (host tool)

Usage: license-fleet [--at TIME] [--within DAYS] [--stale DAYS]
                     [--json | --csv[=TABLE]] [--html FILE] DIR

Reads every <mac>-license-status.json in DIR (the provisioning server's upload
folder; a report must be named for the MAC it carries, else it is listed among the
files that are not reports) and shows, as the vendor's portal does:
  the summary: licenses in all, Active, Expiring Shortly (fewer than 31 days left),
    Impending (not started), Inactive (ended), each license once however many phones
    hold it;
  the licenses: fingerprint, kind, serial, status, start, end, the phones holding it,
    and each feature it grants (description when known, transaction, start, end,
    status) with the phones using it against its Managed Device limit (OVER when
    above);
  what needs attention, phone by phone:
    feature-ends    a feature in force ends within DAYS (--within)
    booted-expired  booted with an expired license: a feature the phone is
                    configured for (its report's configured) is neither in the set
                    it booted with (booted) nor in force, and a license it holds
                    granted it until an end already past when the phone judged its
                    licenses (evaluated_at); judged from the report, not at --at
                    (reports without configured or booted, e.g. without a running
                    daemon, say nothing of it)
    stale-report    the report is older than DAYS (--stale), or its time cannot
                    be read
    future-report   the report's time is more than a day after the instant (the
                    phone's clock is ahead): never preferred to one of the present
    refused, unknown-key  a license refused (an unknown key: a stale keyring)
    clock           the clock is unsynced or wound back
    reboot-pending  a reboot the phone needs and has not had
  files that are not reports.

Options:
  --at TIME      judge the fleet at another instant (RFC 3339 or Unix seconds)
  --within DAYS  a feature ending this soon needs attention (default 31)
  --stale DAYS   a report older than this is stale (default 7)
  --json         one JSON object instead of tables
  --csv[=TABLE]  one table as CSV (RFC 4180, CRLF; text from reports that a
                 spreadsheet would run as a formula gets a leading '; here and
                 in the tables every control character is a space):
                   licenses (the default): one row per feature a license grants,
                     the license's columns repeated (a license granting nothing:
                     one row, feature columns empty); statuses as in --json;
                   attention: mac, what, detail, every item;
                   summary: at, phones, the five counts, attention, unreadable;
                   unreadable: file, why
  --html FILE    also write the portal-like page to FILE: one static HTML file,
                 nothing external (works offline, servable as is): the counts,
                 the license table (Expiring Shortly in red) and what needs
                 attention (the first 5000 items; the counts cover all), sortable
                 by a click on a column, filtered by text and status; the URL
                 fragment holds the view (#status=expiring-shortly&sort=end&dir=desc).
                 Without --json or --csv, stdout just says what was written.
  -h, --help     this text
";

/// A file of the folder that is not a usable report, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Unreadable {
    pub(crate) file: String,
    pub(crate) why: String,
}

/// What `license-fleet` prints on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Json,
    Csv(csv::Table),
}

/// The command line of `license-fleet` (without the program name).
pub fn run(args: Vec<OsString>) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut at = None;
    let mut within = 31;
    let mut stale = 7;
    let mut output: Option<Output> = None;
    let mut html: Option<PathBuf> = None;
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
    let set_output = |output: &mut Option<Output>, new: Output| -> Result<(), Usage> {
        match output.replace(new) {
            Some(old) if old != new => Err(Usage(
                "--json and --csv: one output at a time (--html may go with either)".into(),
            )),
            _ => Ok(()),
        }
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
            Long("json") => set_output(&mut output, Output::Json)?,
            Long("csv") => {
                let table = match parser.optional_value() {
                    None => csv::Table::Licenses,
                    Some(v) => v.to_str().and_then(csv::Table::parse).ok_or_else(|| {
                        Usage("--csv=TABLE: licenses, attention, summary or unreadable".into())
                    })?,
                };
                set_output(&mut output, Output::Csv(table))?;
            }
            Long("html") => html = Some(PathBuf::from(parser.value()?)),
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
    let options = Options {
        at,
        within: within * 86_400,
        stale: stale * 86_400,
    };
    let (fleet, unreadable) = gather_folder(&dir, options).map_err(Usage)?;
    let mut stdout = String::new();
    if let Some(path) = &html {
        if let Err(e) = write_page(path, &html::page(&fleet, &unreadable)) {
            return Ok(crate::cli::args::failed(
                "license-fleet",
                &format!("{}: {e}", path.display()),
            ));
        }
        if output.is_none() {
            stdout = format!(
                "wrote {}: {} phones, {} licenses, {} attention items, {} files not reports\n",
                path.display(),
                fleet.phones,
                fleet.summary.all,
                fleet.attention.len(),
                unreadable.len()
            );
        }
    }
    match (output, &html) {
        (None, Some(_)) => {}
        (None, None) => stdout = table(&fleet, &unreadable),
        (Some(Output::Json), _) => {
            // Written straight from the data (no tree of values: 100,000 licenses).
            #[derive(serde::Serialize)]
            struct Json<'a> {
                fleet: &'a Fleet,
                unreadable: &'a [Unreadable],
            }
            let json = Json {
                fleet: &fleet,
                unreadable: &unreadable,
            };
            stdout = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
        }
        (Some(Output::Csv(which)), _) => stdout = csv::csv(&fleet, &unreadable, which),
    }
    Ok(Outcome {
        stdout,
        code: EXIT_OK,
    })
}

/// Writes the page beside `path`, then renames it there: a web server never serves
/// half a page.
fn write_page(path: &Path, page: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::write(&tmp, page).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The report files of `dir`, sorted by name: every name that ends with [`SUFFIX`],
/// as bytes (a name that is not UTF-8 is a report to read, or to list, like any other).
fn report_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::ffi::OsStrExt;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().ends_with(SUFFIX.as_bytes()))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The fleet of every `*-license-status.json` of `dir`, and the files that are not
/// reports. Files are read and parsed on every core, each core folding its reports into
/// its own [`Gather`] as it goes (a report is dropped once folded), merged at the end:
/// memory holds the fleet, not the reports, and the result does not depend on which
/// core read which file.
pub(crate) fn gather_folder(
    dir: &Path,
    options: Options,
) -> Result<(Fleet, Vec<Unreadable>), String> {
    let names = report_files(dir)?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let next = AtomicUsize::new(0);
    let parts: Vec<(Gather, Vec<(usize, String)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (names, next) = (&names, &next);
                scope.spawn(move || {
                    let mut gather = Gather::new(options);
                    let mut bad = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = names.get(n) else { break };
                        let read = crate::files::read_regular(path, MAX_REPORT_FILE)
                            .map_err(|e| e.to_string());
                        let named = path.file_name().unwrap_or_default().as_encoded_bytes();
                        match read.and_then(|bytes| {
                            let report = parse(&bytes)?;
                            named_for(named, report.mac.as_str())?;
                            gather.add(&report, n);
                            Ok(())
                        }) {
                            Ok(()) => {}
                            Err(why) => bad.push((n, why)),
                        }
                    }
                    (gather, bad)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut gather = Gather::new(options);
    let mut bad = Vec::new();
    for (part, mut why) in parts {
        gather.merge(part);
        bad.append(&mut why);
    }
    bad.sort_unstable_by_key(|(n, _)| *n);
    let unreadable = bad
        .into_iter()
        .map(|(n, why)| Unreadable {
            file: names
                .get(n)
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            why,
        })
        .collect();
    Ok((gather.finish(), unreadable))
}

/// A report is named for the MAC it carries (`<mac>-license-status.json`): one under
/// another name (another phone's) is not believed, never replacing that phone's report.
fn named_for(name: &[u8], mac: &str) -> Result<(), String> {
    if name == format!("{mac}{SUFFIX}").as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "not named for the phone it describes: it carries the MAC {}",
            plain(mac)
        ))
    }
}

/// One report file's bytes: JSON of the schema's major version, with every field the
/// schema requires.
fn parse(bytes: &[u8]) -> Result<Slim<'_>, String> {
    // The usual case in one pass; anything else again, to say exactly what is wrong.
    let first = match serde_json::from_slice::<Slim<'_>>(bytes) {
        Ok(report) if report.schema == *SCHEMA => return Ok(report),
        Ok(_) => None,
        Err(e) => Some(e),
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => return Err(format!("schema {other:?}, not {SCHEMA:?}")),
        None => return Err("no schema: not a license-agent report".into()),
    }
    Err(format!(
        "not a {SCHEMA} report: {}",
        first.map_or_else(|| "unreadable".into(), |e| e.to_string())
    ))
}

/// `text` as a terminal or a spreadsheet may show it: every control character (C0, DEL,
/// C1: an escape sequence, a line break that would forge a line) made a space. Every
/// text the table and the CSV write goes through it; reports come from the field.
pub(crate) fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
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
            plain(l.fingerprint.get(..12).unwrap_or(&l.fingerprint)),
            plain(&l.kind),
            plain(&l.serial),
            plain(label(&l.status)),
            plain(&l.start),
            plain(&l.end),
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
                plain(&g.name),
                plain(&g.transaction),
                plain(&g.end)
            ));
        }
    }
    if !fleet.attention.is_empty() {
        out.push_str("\nATTENTION\n");
        for a in &fleet.attention {
            out.push_str(&format!(
                "{}  {:<15} {}\n",
                plain(&a.mac),
                plain(&a.what),
                plain(&a.detail)
            ));
        }
    }
    if !unreadable.is_empty() {
        out.push_str("\nNOT REPORTS\n");
        for u in unreadable {
            out.push_str(&format!("{}: {}\n", plain(&u.file), plain(&u.why)));
        }
    }
    out
}
