//! `license-agent install`: accept a license by hand (a field engineer copying a file
//! over ssh) exactly as a download would be accepted, and say what changed. The store
//! has one writer: this process when no daemon runs, otherwise the daemon, which gets
//! the file over the control socket and runs the same [`install_into`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::args::{failed, read_license_bytes, FileBytes, Usage, EXIT_FAILED};
use super::setup::{config_option, default_config};
use super::Outcome;
use crate::daemon::control::{call, ControlError, Request, Response};
use crate::engine::{self, clock, evaluate, judge_candidate, Decision, Origin};
use crate::format::{End, FeatureId};
use crate::phone::{daemon_wait, load_phone, read_clock, wall_clock, Phone};
use crate::storage::{describe, Mode, Store, WriterLock};
use crate::time::UnixTime;
use crate::trust::Rejection;

pub const HELP: &str = "\
license-agent install: accept a license file by hand, as a download would be accepted

Usage: license-agent install [--config PATH] FILE

The file (- for standard input) must verify against the phone's keyring, be bound to
this phone (its MAC, or its site serial), and not have expired. It is then stored
exactly as given and the licenses it replaces are dropped; the command says what
changed in the feature set. While the daemon runs it holds the store, so the file is
handed to it: it judges and stores the file the same way and applies it at once
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
    let shown = file.display().to_string();
    let bytes = match read_license_bytes(&file) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Ok(failed(
                "license-agent",
                &format!("cannot read {shown}: {e}"),
            ))
        }
    };
    // One writer per store: with its lock, install here; without it a daemon runs (or
    // is starting, or another install is under way), so hand the file to the daemon.
    let deadline = std::time::Instant::now() + HAND_OVER_WAIT;
    loop {
        match WriterLock::try_acquire(&phone.config.state_dir) {
            Ok(Some(lock)) => return install_here(&phone, lock, &bytes, &shown),
            Ok(None) => {}
            Err(e) => return Ok(failed("license-agent", &e.to_string())),
        }
        let request = Request::Install {
            file: shown.clone(),
            license: hex::encode(&bytes),
        };
        let socket = &phone.config.control_socket;
        match call(socket, &request, daemon_wait(&phone)) {
            Ok(response) => return Ok(from_daemon(response)),
            Err(ControlError::NoDaemon(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            // Not reached: nothing was handed over.
            Err(e @ (ControlError::NoDaemon(_) | ControlError::PermissionDenied)) => {
                return Ok(failed(
                    "license-agent",
                    &format!(
                        "nothing installed: another license-agent process holds the store {} and the daemon at {} did not take the file ({e})",
                        phone.config.state_dir.display(),
                        socket.display()
                    ),
                ))
            }
            // Reached, but no answer: it may have the file, so "nothing installed" could
            // be wrong.
            Err(e) => {
                return Ok(failed(
                    "license-agent",
                    &format!(
                        "the daemon at {} was handed the file but gave no answer ({e}); it may still install it: `license-agent status` shows whether it did",
                        socket.display()
                    ),
                ))
            }
        }
    }
}
/// How long `install` keeps trying when the store is locked but no daemon answers yet
/// (a daemon starting, or another install under way).
const HAND_OVER_WAIT: Duration = Duration::from_secs(10);

/// No daemon runs: this process is the store's writer.
fn install_here(
    phone: &Phone,
    lock: WriterLock,
    bytes: &[u8],
    shown: &str,
) -> Result<Outcome, Usage> {
    let wall = wall_clock()?;
    let mut store = match Store::open(
        &phone.config.state_dir,
        &phone.keyring,
        &phone.identity,
        Mode::Writer(Arc::new(lock)),
        wall,
    ) {
        Ok(store) => store,
        Err(e) => return Ok(failed("license-agent", &e.to_string())),
    };
    let mut done = install_into(phone, &mut store, FileBytes::judge(bytes), shown, wall);
    if done.accepted {
        done.stdout
            .push_str("no daemon is running: it applies the license when it starts\n");
    }
    eprint!("{}", done.stderr);
    Ok(Outcome {
        stdout: done.stdout,
        code: done.code,
    })
}

/// The daemon installed the file: its words, and what it enabled.
fn from_daemon(response: Response) -> Outcome {
    let Some(done) = response.install else {
        let why = response.error.unwrap_or_else(|| "no reason given".into());
        return failed(
            "license-agent",
            &format!("nothing installed: the running daemon refused the request: {why}"),
        );
    };
    eprint!("{}", done.stderr);
    let mut stdout = done.stdout;
    if let (true, Some(status)) = (done.accepted, response.status) {
        let enabled = if status.enabled.is_empty() {
            "-".to_string()
        } else {
            status.enabled.join(", ")
        };
        stdout.push_str(&format!(
            "the running daemon applied it: enabled now {enabled}\n"
        ));
    }
    Outcome {
        stdout,
        code: done.code,
    }
}

/// What an install did: the words for standard output and error, and the exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Stored (the feature set may have changed).
    #[serde(default)]
    pub accepted: bool,
}

/// Judges a license given by hand and stores it as a download would be, in the store of
/// its one writer: this process, or the daemon (`shown` names the file in the words and
/// the events). Every refusal is recorded in `meta.json` too.
pub fn install_into(
    phone: &Phone,
    store: &mut Store,
    candidate: FileBytes,
    shown: &str,
    wall: UnixTime,
) -> Installed {
    let failed = |message: String| Installed {
        code: EXIT_FAILED,
        stderr: format!("license-agent: {message}\n"),
        ..Installed::default()
    };
    let reading = read_clock(phone, store.meta(), wall);
    let bytes = match candidate {
        FileBytes::Read(bytes) => bytes,
        FileBytes::TooBig(m) => {
            return refuse(store, wall, shown, &Rejection::Malformed(m).to_string())
        }
    };
    let license = match phone.keyring.verify_bytes(&bytes) {
        Ok(license) => license,
        Err(rejection) => {
            return refuse(
                store,
                wall,
                shown,
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
    let mut done = Installed::default();
    match decision {
        Decision::Accept { drop } => {
            let at = reading.judge_at.unwrap_or(wall); // Accept implies a sane clock
            let stored = store
                .add(&bytes, license, &drop, wall)
                .and_then(|seq| store.prune(at, wall).map(|_| seq));
            let seq = match stored {
                Ok(seq) => seq,
                Err(e) => return failed(e.to_string()),
            };
            let path = store
                .held()
                .iter()
                .find(|h| h.seq == seq)
                .map(|h| store.path_of(h));
            let out = &mut done.stdout;
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
            done.accepted = true;
        }
        Decision::Identical { .. } => {
            store.meta_mut().record(
                wall,
                "identical",
                subject.clone(),
                "already stored; nothing changed",
            );
            done.stdout =
                format!("unchanged: {subject} is already stored (identical signed content)\n");
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
            done.stderr = format!("license-agent: not installed: {subject}: {detail}\n");
            done.code = EXIT_FAILED;
        }
        Decision::Refuse(refusal) => {
            return refuse(
                store,
                wall,
                &subject,
                &format!("{}: {refusal}", refusal.id()),
            );
        }
    }
    if let Some(t) = clock::trusted_time_to_write(&reading, store.meta().latest_trusted) {
        store.meta_mut().latest_trusted = Some(t);
    }
    if let Err(e) = store.save_meta() {
        return failed(e.to_string());
    }
    done
}

/// Records a refusal, leaves the licenses untouched, exit 1.
fn refuse(store: &mut Store, wall: UnixTime, subject: &str, why: &str) -> Installed {
    store
        .meta_mut()
        .record(wall, "refused", subject.to_string(), why.to_string());
    let mut stderr = format!("license-agent: refused: {subject}: {why}\n");
    if let Err(e) = store.save_meta() {
        stderr.push_str(&format!(
            "license-agent: and the refusal could not be recorded: {e}\n"
        ));
    }
    Installed {
        code: EXIT_FAILED,
        stderr,
        ..Installed::default()
    }
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
