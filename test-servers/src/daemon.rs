//! A real server binary run as a test's child, the way `nginx.rs` runs nginx: in the
//! foreground, in a process group of its own, under `setpriv --pdeathsig TERM` from a
//! keeper thread that lives as long as the [`Daemon`] (so the server also stops if the
//! test process dies without unwinding), and stopped on drop (SIGTERM, then SIGKILL to
//! its whole process group after 5 s).
//!
//! Apache refuses to serve as root. With [`Privileges::Unprivileged`] a server started
//! by root runs as `nobody:nogroup` (65534) keeping only `CAP_DAC_OVERRIDE` and
//! `CAP_DAC_READ_SEARCH` (ambient), so it still reads and writes the test's folders and
//! files whatever their owners and modes (a test's temp folder is 0700, `put_file`'s
//! files 0600); files it creates belong to 65534. Run by anyone else, the server runs as
//! that user.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::nginx::accepts;

/// How long a SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Start attempts (a port picked free may be taken before the server binds it).
pub(crate) const START_ATTEMPTS: usize = 5;
const SETPRIV: &str = "/usr/bin/setpriv";

/// Whose rights the server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges {
    /// The test's own (root stays root).
    Same,
    /// Root becomes 65534 with file access rights kept (see the module documentation).
    Unprivileged,
}

/// A running server process; see the module documentation.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    keeper: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Daemon {
    /// Starts `program args` with stdin and stdout on /dev/null and stderr into
    /// `stderr` (created), from a keeper thread.
    pub fn spawn(
        program: &str,
        args: &[OsString],
        stderr: &Path,
        privileges: Privileges,
    ) -> Result<Daemon, String> {
        let name = Path::new(program)
            .file_name()
            .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned());
        let stderr =
            fs::File::create(stderr).map_err(|e| format!("create {}: {e}", stderr.display()))?;
        let mut cmd = if Path::new(SETPRIV).exists() {
            let mut cmd = Command::new(SETPRIV);
            if privileges == Privileges::Unprivileged && nix::unistd::geteuid().is_root() {
                let caps = "+dac_override,+dac_read_search";
                cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                    .args(["--inh-caps", caps, "--ambient-caps", caps]);
            }
            cmd.args(["--pdeathsig", "TERM", program]);
            cmd
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        let (child_tx, child_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = thread::Builder::new()
            .name(format!("{name}-keeper"))
            .spawn(move || {
                let spawned = cmd.spawn();
                let ok = spawned.is_ok();
                let _ = child_tx.send(spawned);
                if ok {
                    // Lives until the Daemon is stopped (sender dropped).
                    let _ = stop_rx.recv();
                }
            })
            .map_err(|e| format!("start the keeper thread: {e}"))?;
        let mut daemon = Daemon {
            name,
            child: None,
            keeper: Some((stop_tx, keeper)),
        };
        let child = child_rx
            .recv()
            .map_err(|_| "the keeper thread died".to_string())?
            .map_err(|e| format!("start {program}: {e}"))?;
        daemon.child = Some(child);
        Ok(daemon)
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id (of the server itself: setpriv execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `timeout` until every port accepts connections (and `ready()` holds);
    /// fails at once if the process exits.
    pub fn wait_ready(
        &mut self,
        ports: &[u16],
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("{} exited at start: {status}", self.name));
            }
            if ready() && ports.iter().all(|&p| accepts(p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on ports {ports:?} within {timeout:?}",
                    self.name
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL to its whole process group after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(pid, Signal::SIGTERM);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
            }
            // Children left behind, or a server that ignored SIGTERM.
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
        }
        if let Some((stop, keeper)) = self.keeper.take() {
            drop(stop);
            let _ = keeper.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls `attempt` up to [`START_ATTEMPTS`] times while it fails with a retry flag set
/// (a port taken meanwhile); panics with every failure's text if none succeeds.
pub(crate) fn start_with_retries<T>(
    what: &str,
    mut attempt: impl FnMut() -> Result<T, (String, bool)>,
) -> T {
    let mut failures = String::new();
    for n in 1..=START_ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err((text, retry)) => {
                failures.push_str(&format!("attempt {n}:\n{text}\n"));
                if !retry {
                    break;
                }
            }
        }
    }
    panic!("{what} did not start:\n{failures}");
}
