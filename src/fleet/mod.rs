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

pub(crate) mod attention;
mod book;
pub(crate) mod csv;
pub(crate) mod html;
pub(crate) mod model;
#[cfg(test)]
mod portal_tests;
pub(crate) mod slim;
#[cfg(test)]
mod tests;
pub(crate) mod verify;
pub(crate) mod view;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cli::args::{text_value, Usage, EXIT_OK};
use crate::cli::Outcome;
use crate::engine::status::Status;
use crate::report::SCHEMA;
use model::{Fleet, Options};
use slim::Slim;
use view::Gather;

/// The largest report file read, in bytes (a report is at most 256 KiB).
pub(crate) const MAX_REPORT_FILE: u64 = 512 * 1024;
/// The report files' names end so.
pub(crate) const SUFFIX: &str = "-license-status.json";

const HELP: &str = "\
license-fleet: a fleet's licenses from its phones' status reports (host tool)

Usage: license-fleet [--keyring FILE] [--at TIME] [--within DAYS] [--stale DAYS]
                     [--inactive DAYS] [--json | --csv[=TABLE]] [--html FILE] DIR

Reads every <mac>-license-status.json in DIR (the provisioning server's upload
folder; a report must be named for the MAC it carries, else it is listed among the
files that are not reports) and shows the licenses as the vendor's portal does
(docs/fleet-model.md):
  the counts: All, Active, Expiring Shortly (fewer than 31 days left), Impending
    (not started), Inactive (ended): counts of the rows below, as shown;
  the licenses, one row per feature grant: License ID (the serial), kind, feature,
    description, type (Managed Device when counted), transaction (trial, new,
    addon, renewal), start, end, days left, devices in use against the capacity,
    status. A term with a Renewal that starts no later than its end is renewed:
    shown Active, renewed until the Renewal's end, with how many of its phones hold
    the Renewal. An Addon adds its limit to the capacity of the New or Renewal term
    it falls in, while in force. An ended grant stays listed as Inactive for DAYS
    (--inactive) after its end, from the licenses phones report they dropped;
  per-site totals;
  what to act on, grouped, each group with its phones:
    renewal-not-fetched  a term is renewed but these phones hold only the old term
    feature-ends    a feature in force ends within DAYS (--within), no Renewal posted
    over-capacity   more devices in use than the capacity
    feature-lost    a configured feature neither enabled nor licensed, whatever the
                    cause (a license replaced by one without it, none at all)
    booted-expired  the same, because its license ended: the phone booted without it
    forged-license  a report's signed content is not the license it names
    unverified-license  content the keyring does not verify, or none (--keyring)
    unknown-key     a license refused: signed with a key the phone does not trust
    refused         a license refused for another reason
    stale-report    no report for DAYS (--stale), or its time cannot be read
    future-report   a report dated more than a day after the instant (a clock
                    ahead): never preferred to one of the present
    clock           the phone's clock is unsynced or wound back
    reboot-pending  a reboot the phone needs and has not had
    inactive-in-use a phone still uses a grant that has ended
  files that are not reports.

A license is defined by the signed content its reports carry, never by their words
about it: content whose SHA-256 is not the fingerprint named is a forgery, flagged
and ignored. With --keyring, a license counts only when its content verifies with
a vendor key of FILE (the phones' keyring format); without, the view says its
licenses are unverified.

Options:
  --keyring FILE  verify every license with these vendor keys
  --at TIME       judge the fleet at another instant (RFC 3339 or Unix seconds)
  --within DAYS   a feature ending this soon needs attention (default 31)
  --stale DAYS    a report older than this is stale (default 7)
  --inactive DAYS an ended grant stays listed this long (default 90)
  --json          one JSON object instead of tables
  --csv[=TABLE]   one table as CSV (RFC 4180, CRLF; text from reports that a
                  spreadsheet would run as a formula gets a leading '; here and
                  in the tables every control character is a space):
                    licenses (the default): one row per license row;
                    attention: one row per group (what, subject, phones, detail);
                    phones: one row per phone of each group;
                    sites: the per-site totals;
                    summary: at, phones, the five counts, attention, unreadable;
                    unreadable: file, why
  --html FILE     also write the portal-like page to FILE: one static HTML file,
                  nothing external (works offline, servable as is): the counts,
                  the license rows (Expiring Shortly in red), per-site totals and
                  the groups to act on (expandable), filtered by text, kind, site
                  serial, transaction, status and days left, sortable by a click;
                  the URL fragment holds the view
                  (#status=expiring-shortly&kind=site&sort=end&dir=desc).
                  Without --json or --csv, stdout just says what was written.
  -h, --help      this text
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
    let mut inactive = 90;
    let mut keyring: Option<std::sync::Arc<crate::trust::Keyring>> = None;
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
            Long("inactive") => inactive = days(&mut parser, "--inactive")?,
            Long("keyring") => {
                let path = PathBuf::from(parser.value()?);
                let ring = crate::trust::Keyring::load(&path)
                    .map_err(|e| Usage(format!("--keyring {}: {e}", path.display())))?;
                keyring = Some(std::sync::Arc::new(ring));
            }
            Long("json") => set_output(&mut output, Output::Json)?,
            Long("csv") => {
                let table = match parser.optional_value() {
                    None => csv::Table::Licenses,
                    Some(v) => v.to_str().and_then(csv::Table::parse).ok_or_else(|| {
                        Usage(
                            "--csv=TABLE: licenses, attention, phones, sites, summary or unreadable"
                                .into(),
                        )
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
        within: within * 86_400,
        stale: stale * 86_400,
        inactive: inactive * 86_400,
        keyring,
        ..Options::at(at)
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
                "wrote {}: {} phones, {} licenses, {} groups to act on ({} phone items), {} files not reports\n",
                path.display(),
                fleet.phones,
                fleet.summary.all,
                fleet.attention.len(),
                fleet.attention_items(),
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
                let (names, next, options) = (&names, &next, &options);
                scope.spawn(move || {
                    let mut gather = Gather::new(options.clone());
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
                            within_bounds(&report)?;
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
    // A MAC as the schema writes it (12 lowercase hex digits): one phone, one spelling,
    // so no copy under another spelling counts twice.
    if mac.len() != 12
        || !mac
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "its mac {:?} is not 12 lowercase hex digits",
            plain(mac)
        ));
    }
    if name == format!("{mac}{SUFFIX}").as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "not named for the phone it describes: it carries the MAC {}",
            plain(mac)
        ))
    }
}

/// The most feature records a report holds over its licenses and dropped records: the
/// bound of every agent's report so far (512 before dropped records; 256 since, over
/// both).
const MAX_REPORT_GRANTS: usize = 512;

/// A report holds no more than an agent's report can (`docs/report-schema.md`): one
/// that does is not a report (a flood of forged grants would cost the view its
/// minutes, every phone's numbers with them).
fn within_bounds(report: &Slim<'_>) -> Result<(), String> {
    use crate::report::{MAX_DROPPED, MAX_FEATURES, MAX_LICENSES, MAX_REFUSALS};
    let dropped = report.dropped.as_deref().unwrap_or(&[]);
    let grants: usize = report
        .licenses
        .iter()
        .map(|l| l.grants.len())
        .sum::<usize>()
        + dropped.iter().map(|d| d.grants.len()).sum::<usize>();
    let lists = [
        ("licenses", report.licenses.len(), MAX_LICENSES),
        ("dropped", dropped.len(), MAX_DROPPED),
        ("grants", grants, MAX_REPORT_GRANTS),
        ("features", report.features.len(), MAX_FEATURES),
        ("refusals", report.refusals.len(), MAX_REFUSALS),
        (
            "configured",
            report.configured.as_ref().map_or(0, Vec::len),
            MAX_FEATURES,
        ),
        (
            "booted",
            report.booted.as_ref().map_or(0, Vec::len),
            MAX_FEATURES,
        ),
    ];
    match lists.iter().find(|(_, n, max)| n > max) {
        Some((what, n, max)) => Err(format!(
            "holds {n} {what}, more than a report can ({max}): not an agent's report"
        )),
        None => Ok(()),
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
        "trial" => "Trial",
        "new" => "New",
        "addon" => "Addon",
        "renewal" => "Renewal",
        other => other,
    }
}

/// The most phones a group lists in the text table (`--csv=phones` lists all).
const TABLE_PHONES: usize = 8;

/// The fleet as text tables.
pub(crate) fn table(fleet: &Fleet, unreadable: &[Unreadable]) -> String {
    use std::fmt::Write as _;
    let s = &fleet.summary;
    let mut out = format!(
        "fleet at {}: {} phones{}\n\nlicenses {}  active {}  expiring shortly {}  impending {}  inactive {}\n",
        fleet.at,
        fleet.phones,
        if fleet.verified {
            ""
        } else {
            " (licenses NOT verified: no --keyring)"
        },
        s.all,
        s.active,
        s.expiring_shortly,
        s.impending,
        s.inactive
    );
    out.push_str(
        "\nLICENSE ID    KIND  FEATURE                DESCRIPTION                          TYPE            TRANSACTION  START                 END                   DAYS  IN USE        STATUS\n",
    );
    for r in &fleet.rows {
        let used = if r.capacity > 0 {
            format!(
                "{} of {}{}",
                r.in_use,
                r.capacity,
                if r.over { " OVER" } else { "" }
            )
        } else if r.transaction == "addon" && r.adds_to.is_some() {
            format!("+{}", r.limit)
        } else {
            r.in_use.to_string()
        };
        let mut status = r
            .status
            .map_or(crate::words::or_unknown::UNKNOWN, Status::label)
            .to_string();
        if let Some(until) = &r.renewed_until {
            let _ = write!(status, " (renewed until {}", plain(until));
            if let (Some(n), Some(of)) = (r.renewal_fetched, r.renewal_phones) {
                let _ = write!(status, ", fetched by {n} of {of}");
            }
            status.push(')');
        }
        let _ = writeln!(
            out,
            "{:<13} {:<5} {:<22} {:<36} {:<15} {:<12} {:<21} {:<21} {:>4}  {:<13} {}",
            plain(&r.id),
            r.kind.id(),
            plain(&r.feature),
            plain(&r.description),
            if r.kind_of_count == "managed-device" {
                "Managed Device"
            } else {
                "Feature"
            },
            plain(label(&r.transaction)),
            plain(&r.start),
            plain(&r.end),
            r.days_left.map_or("-".to_string(), |d| d.to_string()),
            used,
            status
        );
    }
    if !fleet.sites.is_empty() {
        out.push_str(
            "\nSITE          PHONES  LICENSES  ACTIVE  EXPIRING  IMPENDING  INACTIVE  IN USE\n",
        );
        for site in &fleet.sites {
            let _ = writeln!(
                out,
                "{:<13} {:>6}  {:>8}  {:>6}  {:>8}  {:>9}  {:>8}  {} of {}",
                plain(&site.serial),
                site.phones,
                site.rows.all,
                site.rows.active,
                site.rows.expiring_shortly,
                site.rows.impending,
                site.rows.inactive,
                site.in_use,
                site.capacity
            );
        }
    }
    if !fleet.attention.is_empty() {
        out.push_str("\nTO ACT ON\n");
        for g in &fleet.attention {
            let _ = writeln!(
                out,
                "{:<19} {} phones  {}",
                plain(&g.what),
                g.phones.len(),
                plain(&g.detail)
            );
            for p in g.phones.iter().take(TABLE_PHONES) {
                let _ = writeln!(out, "    {}  {}", plain(&p.mac), plain(&p.detail));
            }
            if g.phones.len() > TABLE_PHONES {
                let _ = writeln!(
                    out,
                    "    ... and {} more (--csv=phones lists every one)",
                    g.phones.len() - TABLE_PHONES
                );
            }
        }
    }
    if !unreadable.is_empty() {
        out.push_str("\nNOT REPORTS\n");
        for u in unreadable {
            let _ = writeln!(out, "{}: {}", plain(&u.file), plain(&u.why));
        }
    }
    out
}
