//! The whole story in under a minute, narrated (`bash scripts/demo.sh`): a provisioning
//! server on 127.0.0.1 (the tests' fault server, scripted to serve a folder and take the
//! phone's status report), the phone supervisor simulator, and the daemon on the test
//! clock (`LICENSE_AGENT_TEST_NOW`: 20 s before midnight on 2027-03-31, when the site
//! license ends). It shows the boot fetch and the published set, a call starting, the
//! site license ending during the call, no reboot while the call lasts, then, once the
//! call has ended and the idle grace passed, the REBOOT the agent asks for, with
//! `license-agent status` at each step.
//!
//! Usage: `story [BIN_DIR]` (default: the folder holding this program's folder, e.g.
//! `target/release`), where license-agent, license-issuer and supervisor-sim are.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use test_servers::faults::{FaultServer, Next};

const MAC: &str = "0004f2000001";
const SITE: &str = "100000000001";
/// The test clock starts here; the site license ends 20 s later.
const START: &str = "2027-03-31T23:59:40Z";
const SITE_END: &str = "2027-04-01T00:00:00Z";

type Failure = String;

fn main() -> ExitCode {
    match story() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(text: &str) {
    println!("\n== {text}");
}

fn story() -> Result<(), Failure> {
    let bin = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
            .ok_or("cannot tell where the binaries are: give their folder")?,
    };
    let work = bin.join("demo-story");
    let _ = fs::remove_dir_all(&work);
    let served = work.join("provisioning");
    fs::create_dir_all(&served).map_err(|e| format!("{}: {e}", served.display()))?;

    // The vendor: a key, the keyring that trusts it, two licenses.
    let key = work.join("vendor.key");
    let keyring = run(Command::new(bin.join("license-issuer"))
        .arg("keygen")
        .arg("-o")
        .arg(&key))?;
    write(&work.join("keyring"), keyring.as_bytes())?;
    sign(
        &bin,
        &key,
        "site",
        SITE,
        &format!("vqmon,new,2027-01-01T00:00:00Z,{SITE_END}"),
        &served.join("000000000000-license.cfg"),
    )?;
    sign(
        &bin,
        &key,
        "phone",
        MAC,
        "usb-call-recording,new,2027-01-01T00:00:00Z,never",
        &served.join(format!("{MAC}-license.cfg")),
    )?;
    let provisioning = serve(served.clone());
    let port = provisioning.addr().port();

    let socket = work.join("supervisor.sock");
    let mut supervisor = Supervisor::start(&bin, &socket)?;
    let config = work.join("agent.toml");
    write(
        &config,
        format!(
            "mac = \"{MAC}\"\nsite_serial = \"{SITE}\"\nkeyring = \"keyring\"\n\
             state_dir = \"state\"\nserver = \"http://127.0.0.1:{port}/\"\n\
             enabled_features = [\"vqmon\", \"usb-call-recording\"]\n\
             supervisor_socket = \"supervisor.sock\"\ncontrol_socket = \"control.sock\"\n\
             features_file = \"features\"\n[timing]\nidle_grace = \"5s\"\nstagger_window = \"4s\"\n"
        )
        .as_bytes(),
    )?;

    say(&format!(
        "The phone boots. Its clock (the test clock) says {START}; the provisioning server \
         is http://127.0.0.1:{port}/. The agent fetches both license files, verifies, \
         stores and publishes the feature set, and tells the supervisor."
    ));
    let mut agent = Agent::start(&bin, &config, &work)?;
    agent.wait_status("the boot fetch over", |s| {
        s.contains("published    usb-call-recording, vqmon")
    })?;
    supervisor.wait("recv FEATURES usb-call-recording,vqmon")?;
    agent.show_status()?;
    println!("features file:\n{}", read(&work.join("features")));

    say("A call starts (the supervisor says CALL-STATE active).");
    supervisor.command("call active")?;
    supervisor.wait("state active")?;

    say(&format!(
        "The site license ends at {SITE_END}, during the call: vqmon is no longer in force, \
         the phone needs a reboot to drop it, but not while the call lasts."
    ));
    agent.wait_status("the reboot needed", |s| s.contains("reboot       needed"))?;
    agent.show_status()?;
    thread::sleep(Duration::from_secs(5));
    if supervisor.seen("recv REBOOT") {
        return Err("the agent asked for a reboot during the call".into());
    }
    println!("(5 s more of the call: no REBOOT asked)");

    say("The call ends. After the idle grace (5 s) and this phone's stagger delay (site licenses end on every phone at once: at most 4 s here), the agent asks for the reboot:");
    supervisor.command("call idle")?;
    let reboot = supervisor.wait("recv REBOOT")?;
    println!("supervisor received: {reboot}");
    agent.show_status()?;

    say("Meanwhile the agent uploaded its status report for the service provider's fleet view (license-fleet):");
    let report = served.join(format!("{MAC}-license-status.json"));
    println!("{} ({} bytes)", report.display(), read(&report).len());

    agent.stop();
    supervisor.stop();
    say(
        "The end. `license-agent run --once --config examples/demo/agent.toml` is the quick check.",
    );
    Ok(())
}

fn run(cmd: &mut Command) -> Result<String, Failure> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sign(
    bin: &Path,
    key: &Path,
    kind: &str,
    serial: &str,
    feature: &str,
    out: &Path,
) -> Result<(), Failure> {
    run(Command::new(bin.join("license-issuer"))
        .arg("sign")
        .arg("--key")
        .arg(key)
        .args([
            "--serial",
            serial,
            "--kind",
            kind,
            "--feature",
            feature,
            "-o",
        ])
        .arg(out))
    .map(drop)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// A provisioning server on 127.0.0.1 for `dir` (the tests' fault server, scripted):
/// `GET` a file (404 when absent), `PUT` a status report (stored). Stops when dropped.
fn serve(dir: PathBuf) -> FaultServer {
    FaultServer::scripted(move |request, stream| {
        // Plain names only: nothing outside the folder.
        let name = request.path.strip_prefix('/').unwrap_or("");
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.');
        let (status, content) = match (request.method.as_str(), plain) {
            ("GET", true) => match fs::read(dir.join(name)) {
                Ok(bytes) => ("200 OK", bytes),
                Err(_) => ("404 Not Found", Vec::new()),
            },
            ("PUT", true) => match fs::write(dir.join(name), &request.body) {
                Ok(()) => ("201 Created", Vec::new()),
                Err(_) => ("500 Internal Server Error", Vec::new()),
            },
            _ => ("400 Bad Request", Vec::new()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
            content.len()
        );
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&content));
        if sent.is_ok() {
            Next::KeepAlive
        } else {
            Next::Close
        }
    })
}

/// The supervisor simulator, driven on its standard input; its events come back in order.
struct Supervisor {
    child: Child,
    input: ChildStdin,
    events: Receiver<String>,
    seen: Vec<String>,
}

impl Supervisor {
    fn start(bin: &Path, socket: &Path) -> Result<Supervisor, Failure> {
        let mut child = Command::new(bin.join("supervisor-sim"))
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("supervisor-sim: {e}"))?;
        let input = child.stdin.take().ok_or("supervisor-sim: no stdin")?;
        let output = child.stdout.take().ok_or("supervisor-sim: no stdout")?;
        let (send, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                // "<unix-millis> <event>": the event.
                let event = line
                    .split_once(' ')
                    .map_or(line.clone(), |(_, e)| e.to_string());
                if send.send(event).is_err() {
                    return;
                }
            }
        });
        let mut supervisor = Supervisor {
            child,
            input,
            events,
            seen: Vec::new(),
        };
        supervisor.wait("listening")?;
        Ok(supervisor)
    }

    fn command(&mut self, line: &str) -> Result<(), Failure> {
        writeln!(self.input, "{line}").map_err(|e| format!("supervisor-sim: {e}"))
    }

    /// Waits (at most 60 s) for an event starting with `prefix`; returns it.
    fn wait(&mut self, prefix: &str) -> Result<String, Failure> {
        if let Some(event) = self.seen.iter().find(|e| e.starts_with(prefix)) {
            return Ok(event.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if event.starts_with(prefix) {
                        return Ok(event);
                    }
                }
                Err(_) => break,
            }
        }
        Err(format!(
            "the supervisor never saw {prefix:?}; it saw {:?}",
            self.seen
        ))
    }

    /// Whether an event starting with `prefix` came (without waiting).
    fn seen(&mut self, prefix: &str) -> bool {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        self.seen.iter().any(|e| e.starts_with(prefix))
    }

    fn stop(mut self) {
        let _ = self.command("quit");
        let _ = self.child.wait();
    }
}

/// The daemon, its log in `agent.log`.
struct Agent {
    child: Child,
    bin: PathBuf,
    config: PathBuf,
}

impl Agent {
    fn start(bin: &Path, config: &Path, work: &Path) -> Result<Agent, Failure> {
        let log = fs::File::create(work.join("agent.log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin.join("license-agent"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("LICENSE_AGENT_TEST_NOW", START)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("license-agent run: {e}"))?;
        Ok(Agent {
            child,
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
        })
    }

    fn status(&self) -> Result<String, Failure> {
        run(Command::new(self.bin.join("license-agent"))
            .arg("status")
            .arg("--config")
            .arg(&self.config))
    }

    fn show_status(&self) -> Result<(), Failure> {
        println!("$ license-agent status\n{}", self.status()?);
        Ok(())
    }

    /// Waits (at most 60 s) until the daemon's status satisfies `ok`.
    fn wait_status(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> Result<(), Failure> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status().unwrap_or_default();
            if status.contains("the running daemon") && ok(&status) {
                return Ok(());
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return Err(format!("never {what}:\n{status}"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, as init stops it.
    fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
