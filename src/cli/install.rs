//! `license-agent install`: accept a license by hand (a field engineer copying a file
//! over ssh) exactly as a download would be accepted, and say what changed. The store
//! has one writer: this process when no daemon runs, otherwise the daemon, which gets
//! the file over the control socket and runs the same [`install_into`]. This file
//! parses the arguments, talks to the daemon, and prints the outcome's words.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::args::{failed, read_license_bytes, Usage};
use super::setup::{config_option, default_config};
use super::Outcome;
use crate::accept::{install_into, FileBytes};
use crate::control::{call, ControlError, Request, Response};
use crate::phone::{daemon_wait, wall_clock, Phone};
use crate::storage::{Mode, Store, WriterLock};

pub(crate) const HELP: &str = "\
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

pub(crate) fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
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
    let phone = super::setup::load_phone_saying(&config)?;
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
    let done = install_into(phone, &mut store, FileBytes::judge(bytes), shown, wall);
    let mut words = done.words();
    if done.accepted() {
        words
            .stdout
            .push_str("no daemon is running: it applies the license when it starts\n");
    }
    eprint!("{}", words.stderr);
    Ok(Outcome {
        stdout: words.stdout,
        code: words.code,
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
    let words = done.outcome.words();
    eprint!("{}", words.stderr);
    let mut stdout = words.stdout;
    if let (true, Some(status)) = (done.outcome.accepted(), response.status) {
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
        code: words.code,
    }
}
