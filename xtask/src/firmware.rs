//! `cargo xtask build BOARD`: the board's binary and its firmware drop.
//!
//! ARM targets are built by `scripts/build-arm.sh` (Debian's Rust 1.85 and the GNU
//! cross linkers, set up by `scripts/cross-env.sh`: shell is the right tool for a
//! toolchain's environment); the host board by the host cargo with static glibc. The
//! binary is stripped, held to the board's budget and run with `--version` on the
//! board's CPU; then the drop is laid out in `target/firmware/BOARD/` as the phone's
//! root file system (`firmware/README.md`), its `agent.toml` checked first by the agent's
//! own parser ([`generated`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::board::{Board, Init};
use crate::render;

/// How `build` was asked.
#[derive(Debug)]
pub struct Options {
    /// The production keyring to put into the drop (absolute).
    pub keyring: Option<PathBuf>,
    /// Assemble the drop (`--no-assemble`: build and check the binary only).
    pub assemble: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keyring: None,
            assemble: true,
        }
    }
}

/// What the drop holds that is made from the board: the checked `agent.toml`, the init
/// script or unit, and the DHCP client's hook (each: its text, where it goes, its mode).
pub struct Generated {
    pub config: String,
    pub init: (String, &'static str, u32),
    pub dhcp_hook: (String, &'static str, u32),
}

/// Renders and checks what is generated from the board.
pub fn generated(b: &Board, repo: &Path) -> Result<Generated, String> {
    let config = render::config(b);
    render::check_config(b, &config).map_err(|e| format!("{}: {e}", b.file.display()))?;
    let (template, on_phone, mode) = render::init_template(b);
    let text = fs::read_to_string(repo.join(template))
        .map_err(|e| format!("cannot read {template}: {e}"))?;
    let path = repo.join(template);
    let init = render::template(b, &text, &path.display().to_string())?;
    let (hook, hook_on_phone, hook_mode) = render::dhcp_hook(b);
    let hook_text =
        fs::read_to_string(repo.join(hook)).map_err(|e| format!("cannot read {hook}: {e}"))?;
    // The hook is shipped as it is: it must nudge the board's own control socket.
    if !hook_text.contains(&format!(":-{}}}", b.control_socket)) {
        return Err(format!(
            "{}: control_socket {} is not the default of {hook} (LICENSE_AGENT_CONTROL_SOCKET)",
            b.file.display(),
            b.control_socket
        ));
    }
    Ok(Generated {
        config,
        init: (init, on_phone, mode),
        dhcp_hook: (hook_text, hook_on_phone, hook_mode),
    })
}

/// A command for `program` in the environment the caller of `cargo xtask` had: without
/// what `cargo run` (and rustup) added for the xtask itself (`CARGO_PKG_NAME=xtask`, its
/// `LD_LIBRARY_PATH`, the toolchain choice...). Build scripts such as ring's rerun when
/// those change, and none of them is meant for the board's build.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO"
                    | "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "OUT_DIR"
                    | "RUSTUP_TOOLCHAIN"
                    | "RUSTUP_TOOLCHAIN_SOURCE"
                    | "RUST_RECURSION_COUNT"
            )
        {
            command.env_remove(&*name);
        }
    }
    // cargo run put the xtask's target directory and the toolchain's libraries first.
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        let rustup = std::env::var_os("RUSTUP_HOME").map(PathBuf::from);
        let target = crate::repo_root().join("target");
        let kept: Vec<PathBuf> = std::env::split_paths(&paths)
            .filter(|p| {
                !p.starts_with(&target) && !rustup.as_ref().is_some_and(|r| p.starts_with(r))
            })
            .collect();
        if kept.is_empty() {
            command.env_remove("LD_LIBRARY_PATH");
        } else if let Ok(joined) = std::env::join_paths(kept) {
            command.env("LD_LIBRARY_PATH", joined);
        }
    }
    command
}

fn log(message: impl AsRef<str>) {
    println!("build: {}", message.as_ref());
}

/// Runs `command` and returns its standard output without the trailing newlines, or
/// `None` when it cannot start or fails.
fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::inherit()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string(),
    )
}

/// Runs `command` with inherited output; an error naming `what` when it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what} failed ({status})")),
        Err(e) => Err(format!("{what}: cannot start: {e}")),
    }
}

/// Whether the keyring trusts the demo key of `examples/demo/keyring` (its private half
/// is public).
fn trusts_demo_key(repo: &Path, keyring: &Path) -> bool {
    let demo = fs::read_to_string(repo.join("examples/demo/keyring")).unwrap_or_default();
    let key = demo.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("ed25519")).then(|| words.next().unwrap_or(""))
    });
    match key {
        Some(key) if !key.is_empty() => {
            let text = fs::read(keyring).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .to_ascii_lowercase()
                .contains(&key.to_ascii_lowercase())
        }
        _ => false,
    }
}

/// Bytes as MB with two decimals.
fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1_000_000.0)
}

/// Builds the board's binary, checks it, and (unless told not to) assembles its drop.
pub fn build(b: &Board, repo: &Path, options: &Options) -> Result<(), String> {
    let board = &b.name;
    let target = &b.target;
    log(format!(
        "board {board} ({}): {}",
        b.file.display(),
        b.description
    ));
    if let Some(keyring) = &options.keyring {
        if trusts_demo_key(repo, keyring) {
            if !target.starts_with("x86_64-") {
                return Err(format!(
                    "{} trusts the DEMO key (its private key is public): never in a phone's \
                     firmware",
                    keyring.display()
                ));
            }
            log(format!(
                "warning: {} trusts the DEMO key: for a development machine only",
                keyring.display()
            ));
        }
    }
    // Before the build: a board whose configuration the agent refuses fails at once.
    let generated = generated(b, repo)?;

    // -- Build ---------------------------------------------------------------------------
    // Exactly the transports the board ships (cargo features; folders always work).
    let features = ["--no-default-features", "--features", &b.features()];
    log(format!("transports: {}", b.transports.join(" ")));
    let start = Instant::now();
    let (bin, strip_tool) = match target.as_str() {
        "armv7-unknown-linux-gnueabihf" | "aarch64-unknown-linux-gnu" => {
            run(
                command("bash")
                    .arg(repo.join("scripts/build-arm.sh"))
                    .arg(target)
                    .args(features)
                    // The board's name goes into the binary: the status report says it.
                    .env("LICENSE_AGENT_BOARD", board),
                "scripts/build-arm.sh",
            )?;
            let strip = if target.starts_with("armv7") {
                "arm-linux-gnueabihf-strip"
            } else {
                "aarch64-linux-gnu-strip"
            };
            (
                repo.join("target/debian")
                    .join(target)
                    .join("release/license-agent"),
                strip,
            )
        }
        "x86_64-unknown-linux-gnu" => {
            if std::env::consts::ARCH != "x86_64" {
                return Err("the host board builds on an x86_64 machine".into());
            }
            let mut cargo = command("cargo");
            for var in [
                "RUSTFLAGS",
                "CARGO_ENCODED_RUSTFLAGS",
                "CARGO_BUILD_RUSTFLAGS",
                "CARGO_BUILD_TARGET",
                "CARGO_TARGET_DIR",
            ] {
                if let Some(value) = std::env::var_os(var) {
                    log(format!("ignoring {var}={}", value.to_string_lossy()));
                    cargo.env_remove(var);
                }
            }
            // With an explicit --target the flags reach only the agent, not build scripts.
            let flags_var = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";
            let flags = "-C target-feature=+crt-static";
            let version = |tool: &str| {
                output(
                    command(tool)
                        .arg("--version")
                        .env_remove("CARGO_TARGET_DIR"),
                )
                .unwrap_or_else(|| format!("{tool}: no version"))
            };
            log(format!(
                "{}, {}; {flags_var}='{flags}'",
                version("cargo"),
                version("rustc")
            ));
            run(
                cargo
                    .current_dir(repo)
                    .env(flags_var, flags)
                    .env("LICENSE_AGENT_BOARD", board)
                    .args(["build", "--release", "--locked", "--target", target])
                    .args(["--bin", "license-agent"])
                    .args(features),
                "cargo build",
            )?;
            (
                repo.join("target")
                    .join(target)
                    .join("release/license-agent"),
                "strip",
            )
        }
        other => return Err(format!("no build for target {other}")),
    };
    if !bin.is_file() {
        return Err(format!("build finished but {} is missing", bin.display()));
    }
    log(format!(
        "built in {} s: {}",
        start.elapsed().as_secs(),
        bin.display()
    ));

    let file_b = |bin: &Path| output(command("file").arg("-b").arg(bin));
    let info = file_b(&bin).ok_or("file -b failed (is `file` installed?)")?;
    if !(info.contains("statically linked") || info.contains("static-pie linked")) {
        return Err(format!(
            "{} is not statically linked: {info}",
            bin.display()
        ));
    }
    if info.contains("not stripped") {
        log(format!("stripping with {strip_tool}"));
        run(command(strip_tool).arg(&bin), strip_tool)?;
    }
    log(format!("file: {}", file_b(&bin).unwrap_or_default()));

    let bytes = fs::metadata(&bin)
        .map_err(|e| format!("{}: {e}", bin.display()))?
        .len();
    let budget = match b.budget() {
        Some(max) if bytes > max => {
            println!(
                "license-agent {board} ({target}): {bytes} bytes ({} MB), OVER the budget of \
                 {max} bytes",
                mb(bytes)
            );
            return Err(format!(
                "the binary is {} bytes over the budget of {max} bytes",
                bytes - max
            ));
        }
        Some(max) => format!("budget {max} bytes: ok, {} bytes to spare", max - bytes),
        None => "no budget set".into(),
    };
    println!(
        "license-agent {board} ({target}): {bytes} bytes ({} MB), stripped, static; {budget}",
        mb(bytes)
    );

    // It starts on the board's CPU.
    let mut starts = if b.qemu.is_empty() {
        command(&bin)
    } else {
        let mut qemu = command(&b.qemu);
        qemu.arg("-cpu").arg(&b.qemu_cpu).arg(&bin);
        qemu
    };
    let under = if b.qemu.is_empty() {
        String::new()
    } else {
        format!(" under {} -cpu {}", b.qemu, b.qemu_cpu)
    };
    let version = output(starts.arg("--version"))
        .ok_or_else(|| format!("{} --version failed{under}", bin.display()))?;
    log(format!("runs{under}: {version}"));

    if options.assemble {
        assemble(b, repo, options, &generated, &bin, bytes, &version)?;
    }
    Ok(())
}

/// Lays out the firmware drop in `target/firmware/BOARD/`.
fn assemble(
    b: &Board,
    repo: &Path,
    options: &Options,
    generated: &Generated,
    bin: &Path,
    bytes: u64,
    version: &str,
) -> Result<(), String> {
    let drop = repo.join("target/firmware").join(&b.name);
    if drop.exists() {
        fs::remove_dir_all(&drop).map_err(|e| format!("cannot remove {}: {e}", drop.display()))?;
    }
    fs::create_dir_all(&drop).map_err(|e| format!("cannot create {}: {e}", drop.display()))?;
    // put(MODE, CONTENTS, PATH-ON-PHONE), as `install -D -m MODE`.
    let put = |mode: u32, contents: &[u8], on_phone: &str| -> Result<(), String> {
        let path = drop.join(on_phone.trim_start_matches('/'));
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(fail)?;
        }
        fs::write(&path, contents).map_err(fail)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(fail)
    };
    let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));

    put(0o755, &read(bin)?, &b.binary)?;
    put(0o644, generated.config.as_bytes(), &b.config)?;
    let keyring_note = match &options.keyring {
        Some(keyring) => {
            put(0o644, &read(keyring)?, &b.keyring)?;
            format!("keyring from {}", keyring.display())
        }
        None => format!(
            "NO keyring in the drop: the image must provide {} (the production keyring)",
            b.keyring
        ),
    };
    let (init, on_phone, mode) = &generated.init;
    put(*mode, init.as_bytes(), on_phone)?;
    if b.init == Init::Systemd {
        let wants = drop.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).map_err(|e| format!("{}: {e}", wants.display()))?;
        std::os::unix::fs::symlink(*on_phone, wants.join("license-agent.service"))
            .map_err(|e| format!("{}: {e}", wants.display()))?;
    }
    let (hook, on_phone, mode) = &generated.dhcp_hook;
    put(*mode, hook.as_bytes(), on_phone)?;
    let doc = "/usr/share/doc/license-agent";
    put(
        0o644,
        &read(&repo.join("firmware/README.md"))?,
        &format!("{doc}/README.md"),
    )?;
    put(
        0o644,
        &read(&repo.join("src/config/example.toml"))?,
        &format!("{doc}/agent.toml.example"),
    )?;
    put(0o644, &read(&b.file)?, &format!("{doc}/board.toml"))?;
    let commit = output(
        command("git")
            .arg("-C")
            .arg(repo)
            .args(["describe", "--always", "--dirty"])
            .stderr(Stdio::null()),
    )
    .unwrap_or_else(|| "unknown".into());
    let sha256 = output(command("sha256sum").arg(bin))
        .and_then(|line| line.split(' ').next().map(str::to_string))
        .ok_or("sha256sum failed")?;
    let built = output(command("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).ok_or("date failed")?;
    let info = format!(
        "board        {} ({})\ntarget       {}\nversion      {version}\ncommit       {commit}\n\
         binary       {}: {bytes} bytes ({} MB), sha256 {sha256}\nkeyring      {keyring_note}\n\
         built        {built}\n",
        b.name,
        b.description,
        b.target,
        b.binary,
        mb(bytes)
    );
    put(0o644, info.as_bytes(), &format!("{doc}/BUILD-INFO"))?;

    log(format!("firmware drop for {}: {}", b.name, drop.display()));
    let mut entries = Vec::new();
    list(&drop, &drop, &mut entries);
    entries.sort();
    for (rel, path) in entries {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let to = fs::read_link(&path).unwrap_or_default();
            println!("  {rel:<60} -> {}", to.display());
        } else if meta.is_dir() {
            println!("  {rel}/");
        } else {
            println!(
                "  {rel:<60} {:o} {:>9} bytes",
                meta.permissions().mode() & 0o7777,
                meta.len()
            );
        }
    }
    if options.keyring.is_none() {
        log(format!("warning: {keyring_note}"));
    }
    Ok(())
}

/// Every path under `dir` (not following links), relative to `root`.
fn list(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push((rel, path.clone()));
        if is_dir {
            list(root, &path, out);
        }
    }
}
