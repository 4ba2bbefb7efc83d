//! The DHCP clients' hooks of the firmware drop (`firmware/dhcp/`), run by the real
//! clients against a real DHCP server: BusyBox 1.35's `udhcpc` (the VVX board) and ISC
//! `dhclient` 4.4 (the systemd boards), each in a network namespace of its own, joined
//! by a veth pair to another where dnsmasq 2.90 serves the lease (options 66 and 160
//! from an options file, read again on SIGHUP, so one server can hand out a new
//! provisioning server on renewal).
//!
//! What is checked is the contract of `firmware/README.md` ("The provisioning server
//! from DHCP"): the file's exact lines, every value's hex decoded and compared with the
//! bytes dnsmasq was told to send (trailing NULs dropped), hostile values that must
//! neither break the file nor reach a shell, the events without options (a lease without
//! them, deconfig or release), and the nudge (`license-agent check-sync`, a fake here
//! that records its arguments) only when the option lines change and the control
//! socket is there.
//!
//! The clients run the hook the way the phone does: udhcpc through a stand-in for the
//! udhcpc script that executes each file of its `.d` folder with the event, with
//! BusyBox's tools first on PATH; dhclient through a stand-in for Debian's
//! dhclient-script that *sources* the hook (its `run_hook`), and checks that the hook
//! ends with status 0 and leaves the script's variables alone. Needs root (namespaces),
//! `ip`, dnsmasq-base, busybox and isc-dhcp-client (scripts/setup-servers.sh).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const DHCLIENT: &str = "/sbin/dhclient";
const BUSYBOX: &str = "/bin/busybox";
/// How long a client may take for one lease (dnsmasq answers in milliseconds; udhcpc
/// retries every second, dhclient after 1-3 s).
const LEASE_WAIT: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn hook(name: &str) -> PathBuf {
    repo().join("firmware/dhcp").join(name)
}

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `ip ARGS`, failing the test with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Polls `f` every 50 ms until it gives something, for at most `within`.
fn wait<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        sleep(Duration::from_millis(50));
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    Udhcpc,
    Dhclient,
}

/// One test's network: a server namespace with dnsmasq, a client namespace, a veth pair
/// between them, and a work folder. Everything (processes, namespaces) goes on drop,
/// also when the test fails.
struct Lab {
    work: tempfile::TempDir,
    client: Client,
    server_ns: String,
    client_ns: String,
    /// The client's interface (what the file's `interface=` must say).
    ifname: String,
    dnsmasq: Option<Child>,
    /// A client left running (udhcpc without -q, dhclient -d).
    running: Option<Child>,
    /// The agent's control socket stand-in (the hook nudges only when it is there).
    _socket: Option<UnixListener>,
    /// dnsmasq's "read OPTSFILE" lines seen so far.
    reads: usize,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in [self.running.take(), self.dnsmasq.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace takes its end of the veth pair, and so the pair, along.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Lab {
    /// A new network for `client`; with `socket` the agent "runs" (its control socket is
    /// there). dnsmasq starts with no options to send.
    fn new(client: Client, socket: bool) -> Lab {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Interface names: at most 15 bytes.
        let tag = format!("lh{}x{n}", std::process::id() % 100_000);
        let work = tempfile::tempdir().unwrap();
        let mut lab = Lab {
            work,
            client,
            server_ns: format!("{tag}s"),
            client_ns: format!("{tag}c"),
            ifname: format!("{tag}c"),
            dnsmasq: None,
            running: None,
            _socket: None,
            reads: 0,
        };
        let server_if = format!("{tag}s");
        ip(&["netns", "add", &lab.server_ns]);
        ip(&["netns", "add", &lab.client_ns]);
        ip(&[
            "link",
            "add",
            &server_if,
            "netns",
            &lab.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lab.ifname,
            "netns",
            &lab.client_ns,
        ]);
        ip(&["-n", &lab.server_ns, "link", "set", "lo", "up"]);
        ip(&["-n", &lab.client_ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &lab.server_ns,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &server_if,
        ]);
        ip(&["-n", &lab.server_ns, "link", "set", &server_if, "up"]);
        ip(&["-n", &lab.client_ns, "link", "set", &lab.ifname, "up"]);

        let w = lab.work.path().to_path_buf();
        if socket {
            lab._socket = Some(UnixListener::bind(w.join("control.sock")).unwrap());
        }
        // The fake agent: records how the hook called it.
        fs::create_dir_all(w.join("fake")).unwrap();
        write_exec(
            &w.join("fake/license-agent"),
            &format!("#!/bin/sh\necho \"$*\" >>{}\n", w.join("nudges").display()),
        );
        fs::create_dir_all(w.join("snap")).unwrap();
        lab.serve(&[]);
        let dnsmasq = Command::new("ip")
            .args(["netns", "exec", &lab.server_ns, DNSMASQ])
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
            ])
            .arg(format!("--interface={server_if}"))
            .arg("--dhcp-range=10.77.0.50,10.77.0.60,2m")
            .arg(format!("--dhcp-leasefile={}", w.join("leases").display()))
            .arg(format!("--dhcp-optsfile={}", w.join("opts").display()))
            .arg(format!("--pid-file={}", w.join("dnsmasq.pid").display()))
            .arg(format!(
                "--log-facility={}",
                w.join("dnsmasq.log").display()
            ))
            .arg("--log-dhcp")
            .stdin(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        lab.dnsmasq = Some(dnsmasq);
        lab.wait_read();
        lab.install_client();
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.path(name)).unwrap_or_default();
        format!(
            "dnsmasq log:\n{}\nclient log:\n{}\nevents:\n{}",
            read("dnsmasq.log"),
            read("client.log"),
            read("events")
        )
    }

    /// Waits until dnsmasq has read its options file once more.
    fn wait_read(&mut self) {
        let want = self.reads + 1;
        let opts = format!("read {}", self.path("opts").display());
        let log = self.path("dnsmasq.log");
        wait(Duration::from_secs(10), || {
            let text = fs::read_to_string(&log).ok()?;
            (text.matches(&opts).count() >= want).then_some(())
        })
        .unwrap_or_else(|| panic!("dnsmasq did not read its options\n{}", self.log()));
        self.reads = want;
    }

    /// The options dnsmasq sends from now on: 66 as text (dnsmasq sends it as a string),
    /// any other in dnsmasq's hex form (`160,68:74:...`: the bytes as they are).
    fn serve(&self, options: &[(u8, &[u8])]) {
        let mut text = String::new();
        for (code, value) in options {
            if *code == 66 {
                let s = std::str::from_utf8(value).unwrap();
                assert!(
                    !s.contains(['"', '\\', ',', '#', '\n']),
                    "not for dnsmasq's text: {s}"
                );
                text += &format!("66,{s}\n");
            } else {
                let bytes: Vec<String> = value.iter().map(|b| format!("{b:02x}")).collect();
                assert!(bytes.len() >= 2, "one byte would be read as a number");
                text += &format!("{code},{}\n", bytes.join(":"));
            }
        }
        fs::write(self.path("opts"), text).unwrap();
    }

    /// `serve`, then SIGHUP: a running dnsmasq reads its options file again.
    fn reserve(&mut self, options: &[(u8, &[u8])]) {
        self.serve(options);
        let pid = fs::read_to_string(self.path("dnsmasq.pid")).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_read();
    }

    /// The client's side: the stand-in for the script that runs the hooks, which
    /// records each event and a copy of the file after it (`snap/N`).
    fn install_client(&self) {
        let w = self.work.path();
        let record = format!(
            "n=$(cat {events} 2>/dev/null | wc -l)\n\
             cp {file} {snap}/$((n + 1)) 2>/dev/null\n",
            events = w.join("events").display(),
            file = w.join("run/dhcp").display(),
            snap = w.join("snap").display(),
        );
        match self.client {
            Client::Udhcpc => {
                // The udhcpc script's hook loop (Buildroot's default.script), with the
                // phone's userland: BusyBox's tools, then the fake agent.
                let bin = w.join("bin");
                fs::create_dir_all(&bin).unwrap();
                let out = Command::new(BUSYBOX)
                    .args(["--install", "-s"])
                    .arg(&bin)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "busybox --install: {out:?}");
                fs::create_dir_all(w.join("default.script.d")).unwrap();
                std::os::unix::fs::symlink(
                    hook("udhcpc-license-agent"),
                    w.join("default.script.d/license-agent"),
                )
                .unwrap();
                write_exec(
                    &w.join("default.script"),
                    &format!(
                        "#!{BUSYBOX} sh\n\
                         PATH={fake}:{bin}\n\
                         for hook in \"${{0}}.d/\"*; do\n\
                         \t[ -f \"${{hook}}\" -a -x \"${{hook}}\" ] && \"${{hook}}\" \"${{1}}\"\n\
                         done\n\
                         {record}\
                         echo \"$1\" >>{events}\n",
                        fake = w.join("fake").display(),
                        bin = bin.display(),
                        events = w.join("events").display(),
                    ),
                );
            }
            Client::Dhclient => {
                // Debian's dhclient-script, reduced to its exit hooks: run_hook sources
                // the hook; its status, and the script's own variables after it, are
                // recorded (a hook that exits, or leaks, shows there). dhclient gives
                // the script a PATH of its own; the fake agent goes first.
                write_exec(
                    &w.join("dhclient-script"),
                    &format!(
                        "#!/bin/sh\n\
                         run_hook() {{\n\
                         \tlocal script=\"$1\"\n\
                         \tlocal exit_status=0\n\
                         \tif [ -f $script ]; then\n\
                         \t\t. $script\n\
                         \t\texit_status=$?\n\
                         \tfi\n\
                         \treturn $exit_status\n\
                         }}\n\
                         PATH={fake}:$PATH\n\
                         out=mine event=mine names=mine v=mine\n\
                         run_hook {hook}\n\
                         status=$?\n\
                         {record}\
                         echo \"$reason status=$status $out $event $names $v\" >>{events}\n",
                        fake = w.join("fake").display(),
                        hook = hook("dhclient-license-agent").display(),
                        events = w.join("events").display(),
                    ),
                );
                // The integrator's lines of firmware/README.md, as they are there.
                fs::write(
                    w.join("dhclient.conf"),
                    "option license-agent-option-160 code 160 = array of unsigned integer 8;\n\
                     also request tftp-server-name, license-agent-option-160;\n",
                )
                .unwrap();
            }
        }
    }

    /// The client's command (in the client's namespace), with the hook's file and socket
    /// moved into the work folder.
    fn client_command(&self, args: &[&str]) -> Command {
        let w = self.work.path();
        let file = format!("LICENSE_AGENT_DHCP_FILE={}", w.join("run/dhcp").display());
        let socket = format!(
            "LICENSE_AGENT_CONTROL_SOCKET={}",
            w.join("control.sock").display()
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client_ns]);
        match self.client {
            Client::Udhcpc => {
                cmd.args([BUSYBOX, "udhcpc", "-f", "-T", "1", "-t", "10"])
                    .args(["-i", &self.ifname, "-O", "tftp", "-O", "160", "-s"])
                    .arg(w.join("default.script"))
                    .env("LICENSE_AGENT_DHCP_FILE", w.join("run/dhcp"))
                    .env("LICENSE_AGENT_CONTROL_SOCKET", w.join("control.sock"));
            }
            Client::Dhclient => {
                // dhclient gives its script only its own variables and those of -e.
                cmd.args([DHCLIENT, "-e", &file, "-e", &socket, "-cf"])
                    .arg(w.join("dhclient.conf"))
                    .arg("-lf")
                    .arg(w.join("dhclient.leases"))
                    .arg("-pf")
                    .arg(w.join("dhclient.pid"))
                    .arg("-sf")
                    .arg(w.join("dhclient-script"));
            }
        }
        cmd.args(args);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.join("client.log"))
            .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd
    }

    /// The events so far (udhcpc's `$1`; dhclient's reason and what was recorded).
    fn events(&self) -> Vec<String> {
        fs::read_to_string(self.path("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits for event number `n` (1-based), which must start with `what`; gives the
    /// file as it was right after it.
    fn event(&self, n: usize, what: &str) -> String {
        let events = wait(LEASE_WAIT, || {
            let e = self.events();
            (e.len() >= n).then_some(e)
        })
        .unwrap_or_else(|| panic!("no event {n} ({what})\n{}", self.log()));
        assert!(
            events[n - 1].starts_with(what),
            "event {n}: {} instead of {what}\n{}",
            events[n - 1],
            self.log()
        );
        if self.client == Client::Dhclient {
            // Sourced: status 0, and the script's variables are its own still.
            assert!(
                events[n - 1].ends_with(" status=0 mine mine mine mine"),
                "the hook changed dhclient-script: {}",
                events[n - 1]
            );
        }
        fs::read_to_string(self.path(&format!("snap/{n}"))).unwrap_or_default()
    }

    /// One lease: udhcpc -q (deconfig, then bound, then it exits), or dhclient -d until
    /// it is bound (PREINIT, then BOUND or REBOOT), then stopped without a release.
    /// Gives the file after the lease.
    fn lease(&mut self) -> String {
        let before = self.events().len();
        match self.client {
            Client::Udhcpc => {
                let mut child = self.client_command(&["-q", "-n"]).spawn().unwrap();
                let status = wait(LEASE_WAIT, || child.try_wait().unwrap());
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                assert!(
                    status.is_some_and(|s| s.success()),
                    "udhcpc: {status:?}\n{}",
                    self.log()
                );
                self.event(before + 1, "deconfig");
                self.event(before + 2, "bound")
            }
            Client::Dhclient => {
                let child = self.client_command(&["-d", &self.ifname]).spawn().unwrap();
                self.running = Some(child);
                self.event(before + 1, "PREINIT");
                let file = self.event(before + 2, "");
                let last = self.events().get(before + 1).cloned().unwrap_or_default();
                assert!(
                    last.starts_with("BOUND ") || last.starts_with("REBOOT "),
                    "dhclient: {last}\n{}",
                    self.log()
                );
                self.stop();
                file
            }
        }
    }

    /// Stops a running client at once (no release: as a power cut would).
    fn stop(&mut self) {
        if let Some(mut child) = self.running.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // dhclient -r signals the pid of this file: never a pid the system reused.
        let _ = fs::remove_file(self.path("dhclient.pid"));
    }

    /// The nudges the fake agent got.
    fn nudges(&self) -> Vec<String> {
        fs::read_to_string(self.path("nudges"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits for nudge number `n`; then checks that no other comes (the hook starts it
    /// in the background, so it may come just after the event).
    fn expect_nudges(&self, n: usize) {
        if n > 0 {
            wait(Duration::from_secs(5), || {
                (self.nudges().len() >= n).then_some(())
            });
        }
        sleep(Duration::from_millis(500));
        let nudges = self.nudges();
        assert_eq!(
            nudges,
            vec!["check-sync".to_string(); n],
            "the nudges\n{}",
            self.log()
        );
    }
}

/// Checks the file's exact lines: the comment, `format=1`, the event, the interface,
/// then one `optionN=hex:...` line per option, in order, whose decoded value is the
/// bytes sent without trailing NULs.
fn assert_file(lab: &Lab, file: &str, event: &str, options: &[(u8, &[u8])]) {
    let lines: Vec<&str> = file.split('\n').collect();
    assert!(
        lines[0].starts_with("# license-agent DHCP lease: "),
        "{file:?}\n{}",
        lab.log()
    );
    let mut want = vec![
        "format=1".to_string(),
        format!("event={event}"),
        format!("interface={}", lab.ifname),
    ];
    for (code, value) in options {
        let mut value = value.to_vec();
        while value.last() == Some(&0) {
            value.pop();
        }
        want.push(format!("option{code}=hex:{}", hex(&value)));
    }
    want.push(String::new()); // the final newline
    assert_eq!(lines[1..], want[..], "the file:\n{file}\n{}", lab.log());
    // And what the agent will decode, byte for byte.
    for (line, (code, value)) in lines[4..].iter().zip(options) {
        let (_, h) = line.split_once("=hex:").unwrap();
        let got = unhex(h).unwrap_or_else(|| panic!("not hex: {line}"));
        let sent = &value[..value.len() - value.iter().rev().take_while(|b| **b == 0).count()];
        assert_eq!(got, sent, "option {code}");
    }
}

const HOST: &[u8] = b"prov.example";
const URL: &[u8] = b"https://10.77.0.1/lic/";

fn one_lease(client: Client, options: &[(u8, &[u8])]) {
    let mut lab = Lab::new(client, true);
    lab.reserve(options);
    let file = lab.lease();
    assert_file(&lab, &file, "bound", options);
    // The options appeared while the agent ran: one nudge (udhcpc's deconfig before,
    // with no file yet, changed no option line).
    lab.expect_nudges(usize::from(!options.is_empty()));
}

#[test]
fn udhcpc_option_66_a_host_name() {
    one_lease(Client::Udhcpc, &[(66, HOST)]);
}

#[test]
fn dhclient_option_66_a_host_name() {
    one_lease(Client::Dhclient, &[(66, HOST)]);
}

#[test]
fn udhcpc_option_160_an_https_url() {
    one_lease(Client::Udhcpc, &[(160, URL)]);
}

#[test]
fn dhclient_option_160_an_https_url() {
    one_lease(Client::Dhclient, &[(160, URL)]);
}

#[test]
fn udhcpc_both_options() {
    one_lease(Client::Udhcpc, &[(66, HOST), (160, URL)]);
}

#[test]
fn dhclient_both_options() {
    one_lease(Client::Dhclient, &[(66, HOST), (160, URL)]);
}

#[test]
fn udhcpc_a_lease_without_the_options() {
    one_lease(Client::Udhcpc, &[]);
}

#[test]
fn dhclient_a_lease_without_the_options() {
    one_lease(Client::Dhclient, &[]);
}

/// Without the agent's control socket (the agent not running) the file is written the
/// same, and nobody is nudged.
fn no_socket_no_nudge(client: Client) {
    let mut lab = Lab::new(client, false);
    lab.reserve(&[(66, HOST), (160, URL)]);
    let file = lab.lease();
    assert_file(&lab, &file, "bound", &[(66, HOST), (160, URL)]);
    lab.expect_nudges(0);
}

#[test]
fn udhcpc_no_agent_no_nudge() {
    no_socket_no_nudge(Client::Udhcpc);
}

#[test]
fn dhclient_no_agent_no_nudge() {
    no_socket_no_nudge(Client::Dhclient);
}

const OTHER: &[u8] = b"ftp://prov2.example/phones/";

#[test]
fn udhcpc_renewal_with_another_server() {
    let mut lab = Lab::new(Client::Udhcpc, true);
    lab.reserve(&[(66, HOST), (160, URL)]);
    // udhcpc stays (no -q); SIGUSR1 makes it renew at once (it renews at half the lease
    // time by itself, a minute here).
    let child = lab.client_command(&[]).spawn().unwrap();
    let pid = child.id().to_string();
    lab.running = Some(child);
    lab.event(1, "deconfig");
    let file = lab.event(2, "bound");
    assert_file(&lab, &file, "bound", &[(66, HOST), (160, URL)]);
    lab.expect_nudges(1);
    let renew = |lab: &Lab| {
        let status = Command::new("kill").args(["-USR1", &pid]).status().unwrap();
        assert!(status.success(), "{}", lab.log());
    };

    lab.reserve(&[(66, b"prov2.example"), (160, OTHER)]);
    renew(&lab);
    let file = lab.event(3, "renew");
    assert_file(
        &lab,
        &file,
        "renew",
        &[(66, b"prov2.example"), (160, OTHER)],
    );
    lab.expect_nudges(2);

    // The same options again: the file is written, nobody nudged.
    renew(&lab);
    let file = lab.event(4, "renew");
    assert_file(
        &lab,
        &file,
        "renew",
        &[(66, b"prov2.example"), (160, OTHER)],
    );
    lab.expect_nudges(2);
    lab.stop();
}

/// dhclient renews at T1, which dnsmasq 2.90 always makes half the lease (a minute at
/// the least): the second lease here is dhclient's next start, which takes the
/// recorded lease again (REBOOT) from a server that now sends another provisioning
/// server, with no release in between (as after a power cut).
#[test]
fn dhclient_second_lease_with_another_server() {
    let mut lab = Lab::new(Client::Dhclient, true);
    lab.reserve(&[(66, HOST), (160, URL)]);
    let file = lab.lease();
    assert_file(&lab, &file, "bound", &[(66, HOST), (160, URL)]);
    lab.expect_nudges(1);

    lab.reserve(&[(66, b"prov2.example"), (160, OTHER)]);
    let file = lab.lease();
    assert!(lab.events()[3].starts_with("REBOOT "), "{}", lab.log());
    assert_file(
        &lab,
        &file,
        "bound",
        &[(66, b"prov2.example"), (160, OTHER)],
    );
    lab.expect_nudges(2);

    // The same options again: the file is written, nobody nudged.
    let file = lab.lease();
    assert_file(
        &lab,
        &file,
        "bound",
        &[(66, b"prov2.example"), (160, OTHER)],
    );
    lab.expect_nudges(2);
}

/// The lease ends: udhcpc's deconfig (at its next start) and dhclient's release write
/// the file without options, and the agent is nudged (the options went away).
#[test]
fn udhcpc_deconfig_writes_no_options() {
    let mut lab = Lab::new(Client::Udhcpc, true);
    lab.reserve(&[(66, HOST), (160, URL)]);
    lab.lease();
    lab.expect_nudges(1);
    lab.reserve(&[]);
    // The next start: deconfig first (the file loses its options), then the new lease.
    let file = lab.lease();
    assert_file(&lab, &file, "bound", &[]);
    let deconfig = lab.event(3, "deconfig");
    assert_file(&lab, &deconfig, "deconfig", &[]);
    lab.expect_nudges(2);
}

#[test]
fn dhclient_release_writes_no_options() {
    let mut lab = Lab::new(Client::Dhclient, true);
    lab.reserve(&[(66, HOST), (160, URL)]);
    lab.lease();
    lab.expect_nudges(1);
    let before = lab.events().len();
    let status = lab.client_command(&["-r", &lab.ifname]).status().unwrap();
    assert!(status.success(), "dhclient -r\n{}", lab.log());
    let file = lab.event(before + 1, "RELEASE");
    assert_file(&lab, &file, "deconfig", &[]);
    lab.expect_nudges(2);
}

/// Values a hostile or broken server may send in option 160: each comes through as its
/// exact bytes in hex, the file keeps its lines, and nothing of it reaches a shell.
fn hostile(client: Client) {
    let mut lab = Lab::new(client, true);
    let canary = lab.path("canary");
    let mut long = b"https://prov.example/".to_vec();
    long.resize(250, b'a');
    let values: Vec<Vec<u8>> = vec![
        b"https://prov.example/lic/\nevent=deconfig\noption66=hex:41\n".to_vec(),
        b"https://x/\"q'`id`\\\"\\'".to_vec(),
        format!("https://x/$(touch {})", canary.display()).into_bytes(),
        format!("`touch {}`;touch {}", canary.display(), canary.display()).into_bytes(),
        b"a\x01\x02\x1b[31m\x7f\x80\xff\x00b\t\r".to_vec(),
        b"https://x/\\101\\\\012\\n".to_vec(),
        b"https://x/\0\0".to_vec(),
        long,
        b"https://phone:p%40ss:w0rd@prov.example/lic/".to_vec(),
    ];
    for value in &values {
        let options: [(u8, &[u8]); 2] = [(66, HOST), (160, value)];
        lab.reserve(&options);
        let file = lab.lease();
        assert_file(&lab, &file, "bound", &options);
        assert!(!canary.exists(), "a value reached a shell: {value:?}");
    }
    // A host name in option 66 that is not one: dhclient hands its bytes (the agent
    // refuses it); BusyBox says "bad", and the hook leaves option 66 out.
    let name: &[u8] = b"x$(id) 'q'&y";
    lab.reserve(&[(66, name), (160, URL)]);
    let file = lab.lease();
    match client {
        Client::Dhclient => assert_file(&lab, &file, "bound", &[(66, name), (160, URL)]),
        Client::Udhcpc => assert_file(&lab, &file, "bound", &[(160, URL)]),
    }
}

#[test]
fn udhcpc_hostile_values_come_through_as_hex() {
    hostile(Client::Udhcpc);
}

#[test]
fn dhclient_hostile_values_come_through_as_hex() {
    hostile(Client::Dhclient);
}
