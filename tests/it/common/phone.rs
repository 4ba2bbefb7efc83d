//! A phone for the end-to-end tests: its files (vendor key, keyring, configuration,
//! state), the daemon started on it as the real binary (optionally on the test clock),
//! and the supervisor simulator beside it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{agent, now, rfc, run};

pub const DAY: i64 = 86_400;
pub const MAC: &str = "0004f2000001";
pub const SITE: &str = "100000000001";
pub const SITE_FILE: &str = "000000000000-license.cfg";
pub const PHONE_FILE: &str = "0004f2000001-license.cfg";

/// A phone's files: vendor key, keyring, configuration, state.
pub struct Phone {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub config: PathBuf,
}

impl Phone {
    /// `extra` is appended to the configuration (server, [fetch], [timing]).
    pub fn new(extra: &str) -> Phone {
        let dir = tempfile::tempdir().unwrap();
        let key = super::vendor_key(dir.path());
        let config = dir.path().join("agent.toml");
        let phone = Phone { dir, key, config };
        phone.configure(extra);
        phone
    }

    /// A phone whose provisioning server is a folder (`file://`, returned), serving a
    /// site license of `site_features`.
    pub fn with_folder_server(
        site_features: &[(&str, i64, Option<i64>)],
    ) -> (Phone, tempfile::TempDir) {
        let server = tempfile::tempdir().unwrap();
        let phone = Phone::new(&format!(
            "server = \"file://{}/\"\n",
            server.path().display()
        ));
        std::fs::write(
            server.path().join(SITE_FILE),
            phone.sign("site", site_features),
        )
        .unwrap();
        (phone, server)
    }

    /// Writes the configuration: the phone's files, `extra`, no supervisor unless
    /// `extra` names its socket, and no status report unless `extra` says `report`
    /// (tests that count a server's requests count fetches; the reports' own tests
    /// turn them on); the control socket is `control.sock` unless `extra` names one.
    pub fn configure(&self, extra: &str) {
        let supervisor = if extra.contains("supervisor_socket") {
            ""
        } else {
            "supervisor = \"none\"\n"
        };
        let report = if extra.contains("report") {
            ""
        } else {
            "report = false\n"
        };
        let control = if extra.contains("control_socket") {
            ""
        } else {
            "control_socket = \"control.sock\"\n"
        };
        std::fs::write(
            &self.config,
            format!(
                "mac = \"{MAC}\"\nsite_serial = \"{SITE}\"\nkeyring = \"keyring\"\nstate_dir = \"state\"\n\
                 {supervisor}{report}{control}features_file = \"run/features\"\n{extra}",
            ),
        )
        .unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A signed license's bytes.
    pub fn sign(&self, kind: &str, features: &[(&str, i64, Option<i64>)]) -> Vec<u8> {
        let serial = if kind == "phone" { MAC } else { SITE };
        let out_file = self.path("signed.cfg");
        let specs: Vec<String> = features
            .iter()
            .map(|(name, start, end)| {
                format!(
                    "{name},new,{},{}",
                    rfc(*start),
                    end.map_or("never".into(), rfc)
                )
            })
            .collect();
        super::sign_license(&self.key, kind, serial, &specs, &out_file);
        std::fs::read(out_file).unwrap()
    }

    /// Installs by hand with `license-agent install`; must succeed. Returns its output.
    pub fn install(&self, bytes: &[u8]) -> String {
        self.install_with(bytes, agent())
    }

    /// Installs by hand as if the time were `t` (the test clock of the CLI).
    pub fn install_at(&self, bytes: &[u8], t: i64) -> String {
        let mut cmd = agent();
        cmd.env("LICENSE_AGENT_TEST_NOW", t.to_string());
        self.install_with(bytes, cmd)
    }

    fn install_with(&self, bytes: &[u8], cmd: Command) -> String {
        let file = self.path("install.cfg");
        std::fs::write(&file, bytes).unwrap();
        let out = run(
            cmd,
            [
                "install".as_ref(),
                "--config".as_ref(),
                self.config.as_os_str(),
                file.as_os_str(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes the stored reboot record look like one of an earlier boot of the phone, so
    /// the next start is a start after a real reboot (the boot id is the machine's).
    pub fn pretend_reboot(&self) {
        let path = self.path("state/meta.json");
        let mut meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(meta["reboot"].is_object(), "no reboot record in {meta}");
        meta["reboot"]["boot_id"] = "an-earlier-boot".into();
        std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    }

    pub fn features_file(&self) -> String {
        std::fs::read_to_string(self.path("run/features")).unwrap_or_default()
    }

    /// The feature names in the published features file.
    pub fn published(&self) -> Vec<String> {
        self.features_file()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    pub fn start(&self, test_now: Option<i64>) -> Daemon {
        let child = self.spawn(test_now);
        self.attach(child)
    }

    /// Starts `license-agent run` without waiting for it.
    pub fn spawn(&self, test_now: Option<i64>) -> Child {
        let mut cmd = agent();
        cmd.args(["run".as_ref(), "--config".as_ref(), self.config.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = test_now {
            cmd.env("LICENSE_AGENT_TEST_NOW", t.to_string());
        }
        cmd.spawn().expect("start the daemon")
    }

    /// The daemon `child`, once its control socket answers.
    pub fn attach(&self, child: Child) -> Daemon {
        let mut daemon = Daemon {
            child,
            socket: self.path("control.sock"),
        };
        // Ready once the control socket answers and the boot fetch cycle is over.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon
            .try_request(r#"{"cmd":"status"}"#)
            .is_ok_and(|v| v["status"]["daemon"]["fetching"] != true)
        {
            if !daemon.alive() {
                let (code, log) = daemon.stop();
                panic!("the daemon ended before answering (exit {code:?}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }
}

/// A running daemon; stopped with SIGTERM on drop.
pub struct Daemon {
    pub child: Child,
    socket: PathBuf,
}

impl Daemon {
    pub fn try_request(&self, line: &str) -> std::io::Result<Value> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }

    pub fn request(&self, line: &str) -> Value {
        self.try_request(line).expect("the daemon answers")
    }

    pub fn status(&self) -> Value {
        let v = self.request(r#"{"cmd":"status"}"#);
        assert_eq!(v["ok"], true, "{v}");
        v["status"].clone()
    }

    /// Sets the test clock; the daemon wakes and decides before it answers, and a fetch
    /// cycle the new time calls for (a feature ending, a poll or retry due) runs off
    /// its loop: this waits for it to end too, and returns the status then.
    pub fn set_time(&self, t: i64) -> Value {
        let v = self.request(&format!(r#"{{"cmd":"test-set-time","now":{t}}}"#));
        assert_eq!(v["ok"], true, "{v}");
        if v["status"]["daemon"]["fetching"] == true {
            return self.wait_status("the fetch cycle over", |s| s["daemon"]["fetching"] == false);
        }
        v["status"].clone()
    }

    /// Waits (up to 20 s) until the status satisfies `ok`; returns it.
    pub fn wait_status(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never {what}: {s:#}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's peak and current resident set (`VmHWM`, `VmRSS`), for figures.
    pub fn memory(&self) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status and standard error.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let code = status.code();
        std::mem::forget(self);
        (code, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The supervisor simulator, recording to a file; commands go to its standard input.
pub struct Sim {
    pub child: Child,
    record: PathBuf,
}

impl Sim {
    pub fn start(socket: &std::path::Path, record: PathBuf) -> Sim {
        Sim::start_with(socket, record, &[])
    }

    /// Started with extra options (`--answer busy`, `--call active`).
    pub fn start_with(socket: &std::path::Path, record: PathBuf, options: &[&str]) -> Sim {
        let child = Command::new(env!("CARGO_BIN_EXE_supervisor-sim"))
            .args(options)
            .arg("--socket")
            .arg(socket)
            .arg("--record")
            .arg(&record)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start supervisor-sim");
        let sim = Sim { child, record };
        sim.wait_for("listening", 1);
        sim
    }

    pub fn command(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Everything recorded so far.
    pub fn record(&self) -> String {
        std::fs::read_to_string(&self.record).unwrap_or_default()
    }

    /// How many recorded events contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.record().lines().filter(|l| l.contains(text)).count()
    }

    /// Returns once the agent has read everything sent to it so far and everything it
    /// wrote before has been recorded: an unknown line gets ERR on the same stream, so
    /// its ERR comes after any REBOOT the agent sent first.
    pub fn barrier(&mut self) {
        let errs = self.count("recv ERR");
        self.command("send SYNC");
        self.wait_for("recv ERR", errs + 1);
    }

    /// Waits until `count` recorded events contain `text`; returns the record.
    pub fn wait_for(&self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let record = std::fs::read_to_string(&self.record).unwrap_or_default();
            if record.lines().filter(|l| l.contains(text)).count() >= count {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "no {count}× {text:?} in:\n{record}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A phone holding a site and a phone license, whose server (`server`, with `extra_fetch`
/// in `[fetch]`) fails: the daemon reports a failure whose words contain `expected`
/// (lower case), schedules a retry, keeps both licenses in force, and retries by itself.
pub fn fault_case(server: &str, extra_fetch: &str, expected: &str) {
    fault_case_within(server, extra_fetch, expected, "3s");
}

/// [`fault_case`] with the fetches' total timeout `total` (a fault that must strike
/// within a transfer, by a test's own clock, needs one longer than its own wait).
pub fn fault_case_within(server: &str, extra_fetch: &str, expected: &str, total: &str) {
    let phone = Phone::new(&format!(
        "server = \"{server}\"\n[fetch]\nconnect_timeout = \"2s\"\ntotal_timeout = \"{total}\"\n{extra_fetch}\
         [timing]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n"
    ));
    let t = now();
    phone.install(&phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]));
    phone.install(&phone.sign("phone", &[("lync", t - DAY, None)]));
    let mut daemon = phone.start(None);
    let s = daemon.status();
    let files = s["daemon"]["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["outcome"] == "failed"), "{s:#}");
    let details: String = files
        .iter()
        .map(|f| f["detail"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(
        details.to_lowercase().contains(expected),
        "expected {expected:?} in: {details}"
    );
    assert!(
        s["daemon"]["next_retry"].is_string(),
        "a retry is scheduled: {s:#}"
    );
    assert_eq!(
        s["enabled"],
        serde_json::json!(["vqmon", "lync"]),
        "the stored licenses stay in force"
    );
    assert_eq!(
        phone.features_file().lines().count(),
        3,
        "{}",
        phone.features_file()
    );
    // It retries by itself, and is still alive and answering afterwards.
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.status()["daemon"]["consecutive_failures"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "no retry within 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(daemon.alive());
    assert_eq!(
        daemon.status()["licenses"].as_array().unwrap().len(),
        2,
        "nothing lost"
    );
}

/// The end of feature `name` in a `status`, as it shows it (RFC 3339).
pub fn feature_end(status: &Value, name: &str) -> Option<String> {
    status["features"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["end"].as_str())
        .map(str::to_string)
}
