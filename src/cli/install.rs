//! `license-agent install`: accept a license by hand (a field engineer copying a file
//! over ssh) exactly as a download would be accepted, and say what changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{failed, read_license_file, FileBytes, Usage, EXIT_FAILED, EXIT_OK};
use super::setup::{config_option, default_config, load_phone, read_clock, wall_clock};
use super::Outcome;
use crate::daemon::control::{call, ControlError, Request, Response};
use crate::engine::{self, clock, evaluate, judge_candidate, Decision, Instant, Origin};
use crate::format::{End, FeatureId};
use crate::storage::{describe, Mode, Store};
use crate::trust::Rejection;

pub const HELP: &str = "\
license-agent install: accept a license file by hand, as a download would be accepted

Usage: license-agent install [--config PATH] FILE

The file (- for standard input) must verify against the phone's keyring, be bound to
this phone (its MAC, or its site serial), and not have expired. It is then stored
exactly as given and the licenses it replaces are dropped; the command says what
changed in the feature set, and tells the running daemon, which applies it at once
(publishes the set, tells the phone supervisor, asks for a reboot if the set changed).
A refused file leaves the store untouched.

Options:
  --config PATH  the agent's configuration (default /etc/license-agent/agent.toml)
  -h, --help     this text

Exit status: 0 installed (or identical to a stored license: nothing to do), 1 refused
or the store could not be written, 2 usage error or unusable configuration or keyring.
";

pub fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut config = default_config();
    let mut file: Option<PathBuf> = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = config_option(&mut parser)?,
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            Value(v) if file.is_none() => file = Some(v.into()),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let file = file.ok_or_else(|| Usage("install needs a FILE".into()))?;
    let phone = load_phone(&config)?;
    let wall = wall_clock()?;
    let mut store = match Store::open(
        &phone.config.state_dir,
        &phone.keyring,
        &phone.identity,
        Mode::Writer,
        wall,
    ) {
        Ok(store) => store,
        Err(e) => return Ok(failed("license-agent", &e.to_string())),
    };
    let reading = read_clock(&phone, store.meta(), wall);
    let shown = file.display().to_string();

    let bytes = match read_license_file(&file) {
        Ok(FileBytes::Read(bytes)) => bytes,
        Ok(FileBytes::TooBig(m)) => {
            return refuse(
                &mut store,
                wall,
                &shown,
                &Rejection::Malformed(m).to_string(),
            )
        }
        Err(e) => {
            return Ok(failed(
                "license-agent",
                &format!("cannot read {shown}: {e}"),
            ))
        }
    };
    let license = match phone.keyring.verify_bytes(&bytes) {
        Ok(license) => license,
        Err(rejection) => {
            return refuse(
                &mut store,
                wall,
                &shown,
                &format!("{}: {rejection}", rejection.verdict()),
            )
        }
    };
    let subject = describe(&license);
    let before = reading
        .judge_at
        .map(|at| evaluate(store.held(), at).enabled());
    let decision = judge_candidate(
        &phone.identity,
        store.held(),
        &license,
        Origin::Installed,
        reading.judge_at,
        store.next_seq(),
    );
    let mut out = String::new();
    let accepted = matches!(decision, Decision::Accept { .. });
    let code = match decision {
        Decision::Accept { drop } => {
            let at = reading.judge_at.unwrap_or(wall); // Accept implies a sane clock
            let stored = store
                .add(&bytes, license, &drop, wall)
                .and_then(|seq| store.prune(at, wall).map(|_| seq));
            let seq = match stored {
                Ok(seq) => seq,
                Err(e) => return Ok(failed("license-agent", &e.to_string())),
            };
            let path = store
                .held()
                .iter()
                .find(|h| h.seq == seq)
                .map(|h| store.path_of(h));
            out.push_str(&format!(
                "installed: {subject}, stored as {}\n",
                path.map(|p| p.display().to_string()).unwrap_or_default()
            ));
            let after = evaluate(store.held(), at);
            for l in after.licenses.iter().filter(|l| l.seq != seq) {
                out.push_str(&format!(
                    "  kept: {} license {} ({}, {})\n",
                    l.kind,
                    l.serial,
                    l.role.id(),
                    l.status
                ));
            }
            if !drop.is_empty() {
                out.push_str(&format!(
                    "  dropped {} license(s) it replaces\n",
                    drop.len()
                ));
            }
            out.push_str(&changes(&before.unwrap_or_default(), &after.enabled()));
            EXIT_OK
        }
        Decision::Identical { .. } => {
            store.meta_mut().record(
                wall,
                "identical",
                subject.clone(),
                "already stored; nothing changed",
            );
            out.push_str(&format!(
                "unchanged: {subject} is already stored (identical signed content)\n"
            ));
            EXIT_OK
        }
        Decision::Superseded { by } => {
            let longer = store.held().iter().find(|h| h.seq == by);
            let detail = match longer {
                Some(h) => format!(
                    "the stored {} lasts longer (until {}) and stays in use: the longest duration wins",
                    describe(&h.license),
                    engine::license_span(&h.license).1
                ),
                None => "a stored license lasts longer and stays in use".into(),
            };
            store
                .meta_mut()
                .record(wall, "superseded", subject.clone(), detail.clone());
            eprintln!("license-agent: not installed: {subject}: {detail}");
            EXIT_FAILED
        }
        Decision::Refuse(refusal) => {
            return refuse(
                &mut store,
                wall,
                &subject,
                &format!("{}: {refusal}", refusal.id()),
            );
        }
    };
    if let Some(t) = clock::trusted_time_to_write(&reading, store.meta().latest_trusted) {
        store.meta_mut().latest_trusted = Some(t);
    }
    if let Err(e) = store.save_meta() {
        return Ok(failed("license-agent", &e.to_string()));
    }
    if accepted {
        out.push_str(&tell_daemon(&phone.config.control_socket));
    }
    Ok(Outcome { stdout: out, code })
}

/// Asks the running daemon to read the store again, so the license takes effect now
/// (published, told to the supervisor, a reboot asked if the set changed); says how it
/// went in one line.
fn tell_daemon(socket: &Path) -> String {
    match call(socket, &Request::Reload {}, Duration::from_secs(10)) {
        Ok(Response {
            ok: true,
            status: Some(status),
            ..
        }) => {
            let enabled = if status.enabled.is_empty() {
                "-".to_string()
            } else {
                status.enabled.join(", ")
            };
            format!("the running daemon applied it: enabled now {enabled}\n")
        }
        Ok(response) => format!(
            "the running daemon did not apply it ({}); it will at its next wake-up\n",
            response.error.unwrap_or_default()
        ),
        Err(ControlError::NoDaemon(_)) => {
            "no daemon is running: it applies the license when it starts\n".to_string()
        }
        Err(e) => format!(
            "the running daemon was not told ({e}); it applies the license at its next wake-up\n"
        ),
    }
}

/// Records a refusal, leaves the licenses untouched, exit 1.
fn refuse(store: &mut Store, wall: Instant, subject: &str, why: &str) -> Result<Outcome, Usage> {
    store
        .meta_mut()
        .record(wall, "refused", subject.to_string(), why.to_string());
    let saved = store.save_meta();
    eprintln!("license-agent: refused: {subject}: {why}");
    if let Err(e) = saved {
        eprintln!("license-agent: and the refusal could not be recorded: {e}");
    }
    Ok(Outcome {
        stdout: String::new(),
        code: EXIT_FAILED,
    })
}

/// The feature set's changes, one line each (`+` enabled, `-` disabled, `~` new end).
pub fn changes(before: &BTreeMap<FeatureId, End>, after: &BTreeMap<FeatureId, End>) -> String {
    let mut out = String::new();
    for (id, end) in after {
        match before.get(id) {
            None => out.push_str(&format!("  + {id} until {end}\n")),
            Some(old) if old != end => {
                out.push_str(&format!("  ~ {id}: until {old} -> until {end}\n"))
            }
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(id)) {
        out.push_str(&format!("  - {id}\n"));
    }
    if out.is_empty() {
        "  features: no change\n".to_string()
    } else {
        format!("  features:\n{out}")
    }
}
