//! The binary under test run with a bound on its time, so that a hang fails the test
//! instead of holding it, and the file-system faults that need root: a read-only bind
//! mount and a small tmpfs, each undone when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::phone::Phone;
use super::{agent, assert_no_crash};

/// The longest one command may take, even under qemu-arm: a few seconds of work, so
/// reaching it means the command hung.
pub const BOUND: Duration = Duration::from_secs(30);

/// `license-agent ARGS --config <phone's>`, on the test clock at `t` if given, under
/// `strace OPTIONS` if given (fault injection).
pub fn command(phone: &Phone, args: &[&str], t: Option<i64>, strace: Option<&str>) -> Command {
    let base = agent();
    let mut cmd = match strace {
        Some(options) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-o", "/dev/null"])
                .args(options.split_whitespace())
                .arg(base.get_program())
                .args(base.get_args());
            c
        }
        None => base,
    };
    cmd.args(args).arg("--config").arg(&phone.config);
    if let Some(t) = t {
        cmd.env("LICENSE_AGENT_TEST_NOW", t.to_string());
    }
    cmd
}

/// Runs `cmd` to its end, killing it and failing the test if it outlives [`BOUND`];
/// fails the test too if it crashed.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().expect("start the binary under test");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} still running after {BOUND:?}: it hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect the output");
    assert_no_crash(&out);
    out
}

/// An output in words, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A mount for the length of a test, undone on drop (lazily, so that nothing left open
/// can keep it).
pub struct Mount(PathBuf);

impl Mount {
    /// `dir` over itself, read-only: flash the kernel remounted read-only after errors.
    pub fn read_only(dir: &Path) -> Mount {
        sh(&format!(
            "mount --bind '{0}' '{0}' && mount -o remount,bind,ro '{0}'",
            dir.display()
        ));
        Mount(dir.to_path_buf())
    }

    /// A tmpfs of `kib` KiB at `dir`, holding what `dir` held, then filled up: a full
    /// file system.
    pub fn full(dir: &Path, kib: u32) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let keep = tempfile::tempdir().unwrap();
        sh(&format!(
            "cp -a '{d}/.' '{k}/' && mount -t tmpfs -o size={kib}k tmpfs '{d}' && cp -a '{k}/.' '{d}/'",
            d = dir.display(),
            k = keep.path().display()
        ));
        let mount = Mount(dir.to_path_buf());
        use std::io::Write;
        let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while filler
            .write_all(&block)
            .and_then(|()| filler.sync_all())
            .is_ok()
        {}
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {} (these tests mount file systems, as root: the README's test command)",
        String::from_utf8_lossy(&out.stderr)
    );
}
