//! `license-agent status`: what this phone holds and has in force, and why: the clock
//! verdict, every stored license, the merged feature set, recent events, the next change.
//! Read-only: it never writes the store.

use serde::Serialize;

use super::args::{Usage, EXIT_FAILED, EXIT_OK};
use super::setup::{
    config_option, default_config, load_phone, parse_instant, read_clock, wall_clock, Phone,
};
use super::Outcome;
use crate::engine::{evaluate, ClockVerdict, Evaluation, Instant};
use crate::format::features::rfc3339;
use crate::format::{End, FeatureId};
use crate::storage::{Mode, Store};

pub const HELP: &str = "\
license-agent status: the licenses and features of this phone, and why

Usage: license-agent status [--config PATH] [--json] [--at TIME]

Shows the MAC, the clock verdict (ok; unsynced: earlier than this agent's build, so the
last published feature set stands; windback: more than the tolerance behind the latest
trusted time, so licenses are judged at that time), every stored license (kind, serial,
key id, role, status, start, end, days left), the merged feature set (name, status, end,
source, transaction type, limit), files set aside, recent events, and the next change.

Options:
  --config PATH  the agent's configuration (default /etc/license-agent/agent.toml)
  --json         one JSON object instead of tables
  --at TIME      evaluate the stored licenses at another instant (RFC 3339 or Unix
                 seconds): \"will this phone still have vqmon on 1 March?\"
  -h, --help     this text

Statuses: Active, Expiring Shortly (fewer than 31 days left), Impending (not started),
Inactive (ended). Exit status: 0 shown, 1 the store could not be read, 2 usage error or
unusable configuration or keyring.
";

#[derive(Serialize)]
struct LicenseJson {
    kind: &'static str,
    serial: String,
    key: String,
    role: &'static str,
    /// `None` while the clock is unsynced.
    status: Option<&'static str>,
    start: String,
    end: String,
    days_left: Option<i64>,
    file: String,
}

#[derive(Serialize)]
struct FeatureJson {
    id: u16,
    name: String,
    status: Option<&'static str>,
    enabled: bool,
    end: String,
    source: Option<&'static str>,
    serial: Option<String>,
    transaction: Option<&'static str>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct InvalidJson {
    file: String,
    reason: String,
}

#[derive(Serialize)]
struct EventJson {
    at: String,
    what: String,
    subject: String,
    detail: String,
}

#[derive(Serialize)]
struct StatusJson {
    /// Where this came from: `store` (read directly).
    source: &'static str,
    mac: String,
    site_serial: Option<String>,
    clock: &'static str,
    wall_clock: String,
    latest_trusted: Option<String>,
    /// The instant the licenses were judged at; `None` when unsynced.
    evaluated_at: Option<String>,
    /// Whether `evaluated_at` came from `--at`.
    at_requested: bool,
    licenses: Vec<LicenseJson>,
    features: Vec<FeatureJson>,
    enabled: Vec<String>,
    next_change: Option<String>,
    set_aside: Vec<InvalidJson>,
    events: Vec<EventJson>,
}

pub fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut config = default_config();
    let mut json = false;
    let mut at: Option<Instant> = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = config_option(&mut parser)?,
            Long("json") => json = true,
            Long("at") => {
                let text = super::args::text_value(&mut parser, "--at")?;
                at = Some(parse_instant(&text).map_err(|e| Usage(format!("--at: {e}")))?);
            }
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let phone = load_phone(&config)?;
    let wall = wall_clock()?;
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
    let report = build(&phone, &store, wall, at);
    let stdout = if json {
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            + "\n"
    } else {
        table(&report)
    };
    Ok(Outcome {
        stdout,
        code: EXIT_OK,
    })
}

fn time(t: Instant) -> String {
    u32::try_from(t)
        .map(rfc3339)
        .unwrap_or_else(|_| format!("@{t}"))
}

fn days_left(end: End, at: Instant) -> Option<i64> {
    match end {
        End::Never => None,
        End::At(e) => Some(((i64::from(e) - at).max(0) + 86_399) / 86_400),
    }
}

fn build(phone: &Phone, store: &Store, wall: Instant, at: Option<Instant>) -> StatusJson {
    let reading = read_clock(phone, store.meta(), wall);
    let judge_at = at.or(reading.judge_at);
    let evaluation: Option<Evaluation> = judge_at.map(|t| evaluate(store.held(), t));
    let licenses = store
        .held()
        .iter()
        .map(|h| {
            let view = evaluation
                .as_ref()
                .and_then(|e| e.licenses.iter().find(|l| l.seq == h.seq));
            let (start, end) = crate::engine::license_span(&h.license);
            LicenseJson {
                kind: h.license.kind().name(),
                serial: h.license.serial().to_string(),
                key: h.license.key_id().to_string(),
                role: view.map_or("unknown", |v| v.role.id()),
                status: view.map(|v| v.status.id()),
                start: time(start),
                end: end.to_string(),
                days_left: judge_at.and_then(|t| days_left(end, t)),
                file: store.path_of(h).display().to_string(),
            }
        })
        .collect();
    let features: Vec<FeatureJson> = match &evaluation {
        Some(e) => e
            .features
            .iter()
            .map(|f| FeatureJson {
                id: f.id.0,
                name: f.id.name(),
                status: Some(f.status.id()),
                enabled: f.enabled(),
                end: f.governing.entry.end.to_string(),
                source: Some(f.governing.kind.name()),
                serial: store
                    .held()
                    .iter()
                    .find(|h| h.seq == f.governing.seq)
                    .map(|h| h.license.serial().to_string()),
                transaction: Some(f.governing.entry.transaction.name()),
                limit: Some(f.governing.entry.limit),
            })
            .collect(),
        // Unsynced: the set last published stands, and nothing else is known.
        None => store
            .meta()
            .published
            .iter()
            .flatten()
            .map(|p| FeatureJson {
                id: p.id,
                name: FeatureId(p.id).name(),
                status: None,
                enabled: true,
                end: p.end.map_or(End::Never, End::At).to_string(),
                source: None,
                serial: None,
                transaction: None,
                limit: None,
            })
            .collect(),
    };
    let enabled = features
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.name.clone())
        .collect();
    StatusJson {
        source: "store",
        mac: phone.identity.mac.to_string(),
        site_serial: phone.identity.site_serial.map(|s| s.to_string()),
        clock: reading.verdict.id(),
        wall_clock: time(wall),
        latest_trusted: store.meta().latest_trusted.map(time),
        evaluated_at: judge_at.map(time),
        at_requested: at.is_some(),
        licenses,
        features,
        enabled,
        next_change: evaluation.as_ref().and_then(|e| e.next_change).map(time),
        set_aside: store
            .invalid()
            .iter()
            .map(|i| InvalidJson {
                file: i.path.display().to_string(),
                reason: i.reason.clone(),
            })
            .collect(),
        events: store
            .meta()
            .events
            .iter()
            .rev()
            .take(10)
            .map(|e| EventJson {
                at: time(e.at),
                what: e.what.clone(),
                subject: e.subject.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
    }
}

fn label(status: Option<&str>) -> &'static str {
    match status {
        Some("active") => "Active",
        Some("expiring-shortly") => "Expiring Shortly",
        Some("impending") => "Impending",
        Some("inactive") => "Inactive",
        _ => "-",
    }
}

fn table(r: &StatusJson) -> String {
    let mut out = format!("MAC          {}\n", r.mac);
    if let Some(site) = &r.site_serial {
        out.push_str(&format!("site serial  {site}\n"));
    }
    let clock = match r.clock {
        c if c == ClockVerdict::Unsynced.id() => "unsynced: earlier than this agent's build; the last published feature set stands".to_string(),
        c if c == ClockVerdict::Windback.id() => format!(
            "windback: more than the tolerance behind the latest trusted time {}; judged at that time",
            r.latest_trusted.as_deref().unwrap_or("-")
        ),
        _ => "ok".to_string(),
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
    out.push_str(&format!(
        "read from    the store (no daemon asked)\n\nLICENSES ({})\n",
        r.licenses.len()
    ));
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
                l.role,
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
                f.source.unwrap_or("-"),
                f.transaction.unwrap_or("-"),
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
