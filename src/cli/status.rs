//! `license-agent status`: what this phone holds and has in force, and why: the clock
//! verdict, every stored license, the merged feature set, recent events, the next change.
//! Read-only: it never writes the store.

use super::args::{Usage, EXIT_FAILED, EXIT_OK};
use super::setup::{config_option, default_config};
use super::Outcome;
use crate::engine::status::Status;
use crate::engine::{ClockVerdict, Role};
use crate::format::Kind;
use crate::time::UnixTime;
use std::time::Duration;

use crate::control::{call, Request, Response};
use crate::phone::{parse_instant, wall_clock};
use crate::status::{build, StatusJson};
use crate::storage::{Mode, Store};

pub(crate) const HELP: &str = "\
license-agent status: the licenses and features of this phone, and why

Usage: license-agent status [--config PATH] [--json | --report] [--at TIME]

Shows the MAC, the clock verdict (ok; unsynced: earlier than this agent's build, so the
last published feature set stands; windback: more than the tolerance behind the latest
trusted time, so licenses are judged at that time), every stored license (kind, serial,
key id, role, status, start, end, days left), the merged feature set (name, status, end,
source, transaction type, limit), files set aside, recent events, and the next change.

Options:
  --config PATH  the agent's configuration (default /etc/license-agent/agent.toml)
  --json         one JSON object instead of tables
  --report       the report this phone gives its service provider's fleet view
                 (<mac>-license-status.json, docs/report-schema.md)
  --at TIME      evaluate the stored licenses at another instant (RFC 3339 or Unix
                 seconds): \"will this phone still have vqmon on 1 March?\"
  -h, --help     this text

Statuses: Active, Expiring Shortly (fewer than 31 days left), Impending (not started),
Inactive (ended). Exit status: 0 shown, 1 the store could not be read, 2 usage error or
unusable configuration or keyring.
";

pub(crate) fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut config = default_config();
    let mut json = false;
    let mut fleet = false;
    let mut at: Option<UnixTime> = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = config_option(&mut parser)?,
            Long("json") => json = true,
            Long("report") => fleet = true,
            Long("at") => {
                let text = super::args::text_value(&mut parser, "--at")?;
                at = Some(parse_instant(&text).map_err(|e| Usage(format!("--at: {e}")))?);
            }
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let phone = super::setup::load_phone_saying(&config)?;
    let wall = wall_clock()?;
    // The running daemon knows most (its last fetch); without one, read the store.
    let (report, fallback) = match ask_daemon(&phone.config.control_socket, at) {
        Ok(report) => (report, None),
        Err(why) => {
            let store = match Store::open(
                &phone.config.state_dir,
                &phone.keyring,
                &phone.identity,
                Mode::ReadOnly,
                wall,
            ) {
                Ok(store) => store,
                Err(e) => {
                    eprintln!("license-agent: {e}");
                    return Ok(Outcome {
                        stdout: String::new(),
                        code: EXIT_FAILED,
                    });
                }
            };
            (build(&phone, &store, wall, at), Some(why))
        }
    };
    if json && fleet {
        return Err(Usage("--json and --report: one or the other".into()));
    }
    let stdout = if fleet {
        let made = crate::status::time(wall);
        let report = crate::report::build(report.clone(), made, crate::report::BOARD);
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else if json {
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        if let (Some(why), Some(map)) = (&fallback, value.as_object_mut()) {
            map.insert("daemon_unavailable".into(), why.clone().into());
        }
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    } else {
        let mut text = table(&report);
        if let Some(why) = fallback {
            text = text.replacen(
                "read from    the store (no daemon asked)",
                &format!("read from    the store ({why})"),
                1,
            );
        }
        text
    };
    Ok(Outcome {
        stdout,
        code: EXIT_OK,
    })
}

/// The daemon's live status; `--at` is answered from the store (the daemon judges now).
fn ask_daemon(socket: &std::path::Path, at: Option<UnixTime>) -> Result<StatusJson, String> {
    if at.is_some() {
        return Err("--at is evaluated from the store".into());
    }
    match call(socket, &Request::Status {}, Duration::from_secs(5)) {
        Ok(Response {
            ok: true,
            status: Some(status),
            ..
        }) => Ok(status),
        Ok(r) => Err(format!(
            "the daemon refused: {}",
            r.error.unwrap_or_default()
        )),
        Err(e) => Err(format!("{e} at {}", socket.display())),
    }
}

fn label(status: Option<Status>) -> &'static str {
    status.map_or("-", Status::label)
}

pub(crate) fn table(r: &StatusJson) -> String {
    let mut out = format!("MAC          {}\n", r.mac);
    if let Some(site) = &r.site_serial {
        out.push_str(&format!("site serial  {site}\n"));
    }
    let clock = match r.clock {
        ClockVerdict::Unsynced => "unsynced: earlier than this agent's build; the last published feature set stands".to_string(),
        ClockVerdict::Windback => format!(
            "windback: more than the tolerance behind the latest trusted time {}; judged at that time",
            r.latest_trusted.as_deref().unwrap_or("-")
        ),
        ClockVerdict::Ok => "ok".to_string(),
    };
    out.push_str(&format!(
        "clock        {clock} (wall clock {})\n",
        r.wall_clock
    ));
    match (&r.evaluated_at, r.at_requested) {
        (Some(at), true) => out.push_str(&format!(
            "evaluated at {at} (requested with --at, not now)\n"
        )),
        (Some(at), false) => out.push_str(&format!("evaluated at {at}\n")),
        (None, _) => {}
    }
    if r.source == "daemon" {
        out.push_str("read from    the running daemon\n");
    } else if r.source != "store" {
        out.push_str(&format!("read from    {}\n", r.source));
    } else {
        out.push_str("read from    the store (no daemon asked)\n");
    }
    if let Some(d) = &r.daemon {
        // First: every other line may come from a default standing in for a value.
        for aside in &d.config_set_aside {
            let e = crate::logging::escape(&aside.detail);
            out.push_str(&format!(
                "config       SET ASIDE, read as if absent (its default): {e}\n"
            ));
        }
        match &d.provisioning {
            None => out.push_str(&format!("server       {}\n", d.server)),
            Some(p) => {
                let origin = p.origin.as_deref().unwrap_or("none answered yet");
                let server = p.server.as_deref().unwrap_or("-");
                out.push_str(&format!(
                    "server       {server} ({origin}; source {})\n",
                    p.source
                ));
                if let Some(licenses) = &p.licenses {
                    out.push_str(&format!("  licenses   {licenses}\n"));
                }
                if let Some(logs) = &p.logs {
                    out.push_str(&format!("  reports    {logs}\n"));
                }
                if let Some(master) = &p.master {
                    let master = crate::logging::escape(master);
                    out.push_str(&format!("  master     {master}\n"));
                }
                for note in &p.notes {
                    let note = crate::logging::escape(note);
                    out.push_str(&format!("  note       {note}\n"));
                }
            }
        }
        if let Some(at) = &d.last_fetch {
            out.push_str(&format!("last fetch   {at}\n"));
        }
        for f in &d.files {
            out.push_str(&format!("  {} {}: {}\n", f.file, f.outcome, f.detail));
            if let Some(by) = f.answered_by() {
                out.push_str(&format!("    {by}\n"));
            }
        }
        if let Some(retry) = &d.next_retry {
            out.push_str(&format!(
                "next retry   {retry} ({} failure(s) in a row)\n",
                d.consecutive_failures
            ));
        }
        let published = if d.published.is_empty() {
            "-".to_string()
        } else {
            d.published.join(", ")
        };
        out.push_str(&format!(
            "published    {published} to {}\n",
            d.features_file
        ));
        if let (Some(at), Some(why)) = (&d.next_poll, &d.poll_reason) {
            out.push_str(&format!("next poll    {at} ({why})\n"));
        }
        out.push_str(&format!("supervisor   {}\n", d.supervisor));
        if let Some(report) = &d.report {
            out.push_str(&format!("report       {report}\n"));
        }
        if let Some(call) = &d.call_state {
            out.push_str(&format!("call         {call}\n"));
        }
        out.push_str(&reboot_text(&d.reboot));
    }
    out.push_str(&format!("\nLICENSES ({})\n", r.licenses.len()));
    if !r.licenses.is_empty() {
        out.push_str(&format!(
            "  {:<5}  {:<12}  {:<8}  {:<8}  {:<16}  {:<20}  {:<20}  {}\n",
            "KIND", "SERIAL", "KEY", "ROLE", "STATUS", "START", "END", "DAYS LEFT"
        ));
        for l in &r.licenses {
            out.push_str(&format!(
                "  {:<5}  {:<12}  {:<8}  {:<8}  {:<16}  {:<20}  {:<20}  {}\n",
                l.kind,
                l.serial,
                l.key,
                l.role.map_or("unknown", Role::id),
                label(l.status),
                l.start,
                l.end,
                l.days_left.map_or("-".to_string(), |d| d.to_string())
            ));
        }
    }
    out.push_str(&format!("\nFEATURES ({} enabled)\n", r.enabled.len()));
    if !r.features.is_empty() {
        out.push_str(&format!(
            "  {:<22}  {:<16}  {:<20}  {:<6}  {:<11}  {}\n",
            "NAME", "STATUS", "END", "SOURCE", "TRANSACTION", "LIMIT"
        ));
        for f in &r.features {
            let status = if r.evaluated_at.is_none() {
                "published"
            } else {
                label(f.status)
            };
            out.push_str(&format!(
                "  {:<22}  {:<16}  {:<20}  {:<6}  {:<11}  {}\n",
                f.name,
                status,
                f.end,
                f.source.map_or("-", Kind::id),
                f.transaction.as_deref().unwrap_or("-"),
                f.limit
                    .filter(|l| *l > 0)
                    .map_or("-".to_string(), |l| l.to_string())
            ));
        }
    }
    out.push_str(&format!(
        "\nnext change  {}\n",
        r.next_change.as_deref().unwrap_or("none")
    ));
    if !r.set_aside.is_empty() {
        out.push_str("\nSET ASIDE (not used)\n");
        for i in &r.set_aside {
            out.push_str(&format!("  {}: {}\n", i.file, i.reason));
        }
    }
    if let Some(t) = &r.trust {
        out.push_str(&trust_text(t));
    }
    if let Some(failure) = &r.store_write_failure {
        out.push_str(&format!(
            "\nSTORE NOT WRITABLE: {failure}\n  running on the licenses held; the write is tried again\n"
        ));
    }
    if !r.events.is_empty() {
        out.push_str("\nRECENT EVENTS (newest first)\n");
        for e in &r.events {
            out.push_str(&format!(
                "  {}  {:<16}  {}: {}\n",
                e.at, e.what, e.subject, e.detail
            ));
        }
    }
    out
}

/// The reboot lines of the daemon section.
fn reboot_text(r: &crate::status::RebootJson) -> String {
    if !r.pending {
        return "reboot       none pending\n".to_string();
    }
    let mut out = String::new();
    for need in &r.needs {
        let request = need
            .request
            .map_or(String::new(), |id| format!(" (REBOOT {id})"));
        out.push_str(&format!(
            "reboot       needed: {} since {}, {}{request}, not before {}\n",
            need.cause,
            need.since,
            need.phase.id(),
            need.not_before
        ));
    }
    if let Some(detail) = &r.detail {
        let until = r
            .until
            .as_ref()
            .map_or(String::new(), |u| format!(" until {u}"));
        out.push_str(&format!("  waits for  {detail}{until}\n"));
    }
    out
}

/// The trust section, in words (`docs/trust-update.md`, "In status and the report").
fn trust_text(t: &crate::status::TrustJson) -> String {
    let mut out = format!(
        "\nTRUST        version {} (firmware {}), license keys {}\n",
        t.version,
        t.firmware_version,
        t.license_keys.join(", ")
    );
    if t.roots > 0 {
        out.push_str(&format!(
            "  roots      {} of {} to sign the next version\n",
            t.root_threshold, t.roots
        ));
    }
    let expiry = if t.expired {
        format!(
            "trust version {} expired at {}: licenses not stored already are refused",
            t.version, t.expires
        )
    } else {
        t.expires.clone()
    };
    out.push_str(&format!("  expires    {expiry}\n"));
    out.push_str(&format!("  updates    {}\n", t.updates));
    if let Some(last) = &t.last_update {
        out.push_str(&format!(
            "  last       trust-{}.cfg at {}: {}\n",
            last.version, last.at, last.detail
        ));
    }
    for note in &t.notes {
        out.push_str(&format!("  note       {note}\n"));
    }
    for s in &t.set_aside {
        out.push_str(&format!(
            "  set aside  {} (key {}): {}{}\n",
            s.license,
            s.key,
            s.reason,
            s.file
                .as_deref()
                .map(|f| format!(", kept in {f}"))
                .unwrap_or_default()
        ));
    }
    out
}
