//! The `license-agent` command line: one module per subcommand, each with its own
//! `--help`; this file dispatches and maps outcomes to exit statuses.

pub mod args;
mod check_sync;
mod inspect;
mod install;
mod report;
mod run;
mod setup;
mod status;
mod verify;

use std::ffi::OsString;
use std::path::Path;

use args::{Usage, EXIT_OK, EXIT_USAGE};

use crate::trust::Keyring;

pub use crate::VERSION;

const HELP: &str = "\
license-agent: the phone-side license agent (verifies, stores and merges signed
feature licenses for the phone)

Usage: license-agent <COMMAND> [OPTIONS]

Commands:
  run         the daemon: fetch, verify, store, publish, then wait for changes
  status      the licenses and features of this phone, and why
  check-sync  make the running daemon fetch the license files now
  install     accept a license file by hand, as a download would be accepted
  verify      the verdict on license files against a trusted keyring
  inspect     decode license files without trusting them
  help        this text, or a command's (license-agent help status)

Options:
  -h, --help     this text
  -V, --version  the version

Each command has --help. Exit status: 0 success, 1 a file refused or an action failed,
2 usage error.
";

/// What a command produced: text for standard output and the exit status.
pub struct Outcome {
    pub stdout: String,
    pub code: i32,
}

impl Outcome {
    pub fn help(text: &str) -> Outcome {
        Outcome {
            stdout: text.to_string(),
            code: EXIT_OK,
        }
    }
}

/// Loads the keyring named on the command line; an unusable keyring is exit status 2.
pub(crate) fn load_keyring(path: &Path) -> Result<Keyring, Usage> {
    Keyring::load(path).map_err(|e| Usage(e.to_string()))
}

fn help_for(command: &str) -> Option<&'static str> {
    match command {
        "verify" => Some(verify::HELP),
        "inspect" => Some(inspect::HELP),
        "install" => Some(install::HELP),
        "status" => Some(status::HELP),
        "run" => Some(run::HELP),
        "check-sync" => Some(check_sync::HELP),
        _ => None,
    }
}

/// Runs the command line `args` (without the program name).
pub fn run(args: Vec<OsString>) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next()? {
        None => {
            return Err(Usage(
                "a command is needed; see license-agent --help".into(),
            ))
        }
        Some(Short('h') | Long("help")) => return Ok(Outcome::help(HELP)),
        Some(Short('V') | Long("version")) => {
            // The transports too: what a board's binary can fetch from is a build choice.
            return Ok(Outcome::help(&format!(
                "license-agent {VERSION} (fetches over {})\n",
                crate::config::TRANSPORTS.join(", ")
            )));
        }
        Some(Value(cmd)) => cmd
            .into_string()
            .map_err(|c| Usage(format!("unknown command {c:?}")))?,
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "verify" => verify::run(parser),
        "inspect" => inspect::run(parser),
        "install" => install::run(parser),
        "status" => status::run(parser),
        "run" => run::run(parser),
        "check-sync" => check_sync::run(parser),
        "help" => match parser.next()? {
            None => Ok(Outcome::help(HELP)),
            Some(Value(v)) => {
                let name = v.to_string_lossy().into_owned();
                help_for(&name)
                    .map(Outcome::help)
                    .ok_or_else(|| Usage(format!("no command {name:?}; see license-agent --help")))
            }
            Some(other) => Err(other.unexpected().into()),
        },
        other => Err(Usage(format!(
            "unknown command {other:?}; commands: run, status, check-sync, install, verify, inspect, help"
        ))),
    }
}

/// Runs a command line and prints the outcome; returns the exit status.
pub fn main_with(
    program: &str,
    args: Vec<OsString>,
    run: fn(Vec<OsString>) -> Result<Outcome, Usage>,
) -> i32 {
    use std::io::Write;
    match run(args) {
        Ok(outcome) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = stdout.write_all(outcome.stdout.as_bytes());
            let _ = stdout.flush();
            outcome.code
        }
        Err(usage) => {
            eprintln!("{program}: {usage}");
            EXIT_USAGE
        }
    }
}
