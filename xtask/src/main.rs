//! `cargo xtask`: the project's build tasks on the build machine (the alias is in
//! `.cargo/config.toml`; `scripts/build.sh` calls `cargo xtask build`).
//!
//! - `build [--keyring FILE] [--no-assemble] BOARD`: reads `boards/BOARD.toml`
//!   ([`board`]), checks the `agent.toml` generated from it with the agent's own
//!   configuration parser ([`render::check_config`]), builds the board's statically
//!   linked release binary with exactly its transports, enforces its size budget, runs
//!   `--version` on the board's CPU, and assembles the firmware drop in
//!   `target/firmware/BOARD/` ([`firmware`]).
//! - `check [BOARD...]`: the board files and what is generated from them (the
//!   configuration, checked as above, and the init script or unit), without building.
//! - `board BOARD`: the checked board as `key=value` lines, for shell scripts.
//! - `boards`: the board names in `boards/`, on one line.

mod board;
mod firmware;
mod render;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask COMMAND ...   (scripts/build.sh ARGS is cargo xtask build ARGS)

  build [--keyring FILE] [--no-assemble] BOARD
      The build entry point per board: reads boards/BOARD.toml, checks the agent.toml
      generated from it with the agent's own configuration parser (and that its servers
      use transports the board ships), builds the statically linked release
      license-agent for the board's target with exactly the board's transports, strips
      it, reports its size in bytes and MB (and fails when it is over the board's
      budget: an armv7 binary may never exceed 3,000,000 bytes, issue 6), checks that
      it starts on the board's CPU (under QEMU for ARM), then assembles the firmware
      drop in target/firmware/BOARD/: a tree laid out as the phone's root file system
      (binary, generated agent.toml, init script or systemd unit, docs), to be copied
      into the firmware image. See firmware/README.md.

      BOARD          a name from boards/ (vvx-armv7, arm64, host) or a path to a board file
      --keyring FILE put FILE into the drop as the keyring (the production keyring; by
                     default the drop has none, so an image without one fails loudly)
      --no-assemble  build and check the binary only

      ARM targets are built with Debian's Rust 1.85 (scripts/build-arm.sh, output in
      target/debian/); the host board with the host cargo, static glibc
      (-C target-feature=+crt-static, output in target/x86_64-unknown-linux-gnu/).

  check [BOARD...]   the board files (default: all) and their generated agent.toml,
                     init script or unit, checked without building
  board BOARD        the checked board as key=value lines (for scripts)
  boards             the board names in boards/, on one line
";

/// The repository: this crate's parent directory.
fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let repo = repo_root();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (who, result) = match command {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "build" => ("build", build(rest, &repo)),
        "check" => ("xtask", check(rest, &repo)),
        "board" => ("xtask", show(rest, &repo)),
        "boards" if rest.is_empty() => {
            println!("{}", board::names(&repo).join(" "));
            return ExitCode::SUCCESS;
        }
        _ => (
            "xtask",
            Err(format!("unknown command {command} (see --help)")),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{who}: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `build [--keyring FILE] [--no-assemble] BOARD`.
fn build(args: &[String], repo: &Path) -> Result<(), String> {
    let mut options = firmware::Options::default();
    let mut board_arg = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keyring" => {
                let file = args.next().ok_or("--keyring needs a file")?;
                let path = Path::new(file)
                    .canonicalize()
                    .map_err(|_| format!("no keyring file {file}"))?;
                if !path.is_file() {
                    return Err(format!("no keyring file {file}"));
                }
                options.keyring = Some(path);
            }
            "--no-assemble" => options.assemble = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            option if option.starts_with('-') => {
                return Err(format!("unknown option {option} (see --help)"))
            }
            name => {
                if board_arg.replace(name).is_some() {
                    return Err("one board only".into());
                }
            }
        }
    }
    let Some(board_arg) = board_arg else {
        return Err(format!(
            "usage: scripts/build.sh [--keyring FILE] [--no-assemble] BOARD (boards: {})",
            board::names(repo).join(" ")
        ));
    };
    let board = board::load(board_arg, repo).map_err(|e| format!("unusable board file: {e}"))?;
    firmware::build(&board, repo, &options)
}

/// `check [BOARD...]`: each board and what is generated from it, without building.
fn check(args: &[String], repo: &Path) -> Result<(), String> {
    let names = if args.is_empty() {
        board::names(repo)
    } else {
        args.to_vec()
    };
    for name in names {
        let board = board::load(&name, repo).map_err(|e| e.to_string())?;
        firmware::generated(&board, repo)?;
        println!(
            "xtask: board {}: ok (agent.toml parses, servers within transports \"{}\", {} rendered)",
            board.name,
            board.transports.join(" "),
            render::init_template(&board).0
        );
    }
    Ok(())
}

/// `board BOARD`: `key=value` lines (values hold no newline, `"` or `\`).
fn show(args: &[String], repo: &Path) -> Result<(), String> {
    let [name] = args else {
        return Err("usage: cargo xtask board BOARD".into());
    };
    let board = board::load(name, repo).map_err(|e| e.to_string())?;
    println!("file={}", board.file.display());
    for (key, value) in board.pairs() {
        println!("{key}={value}");
    }
    Ok(())
}
