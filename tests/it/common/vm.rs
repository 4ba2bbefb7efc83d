//! The emulated phone (issue 13): the image of `scripts/phone-image.sh` booted under
//! `qemu-system-arm`, with everything a phone has around it on the host side.
//!
//! - **The provisioning server**: real nginx on 127.0.0.1 ([`Nginx`]) with a private CA
//!   ([`Pki`]), reached from the phone as `https://prov.example.test/` through QEMU's
//!   user network with `restrict=on` (no other address exists for the guest) and one
//!   `guestfwd` rule: 10.0.2.100:443 → `socat` → nginx's HTTPS port.
//! - **The deployment's trust**: the CA and a keyring of a vendor key made for this lab,
//!   packed as a second cpio archive appended to the image's initramfs (the kernel
//!   unpacks both), so the read-only firmware holds them as a phone's does.
//! - **The flash**: the data partition is a [`FlashServer`], an NBD server that keeps
//!   only what the guest flushed (see `nbd.rs`); QEMU reaches it through its NBD client,
//!   and a power cut is QEMU killed with SIGKILL, then [`FlashServer::cut`].
//! - **Two virtio-serial ports**, each a Unix socket QEMU serves: `control`, a shell on
//!   the phone ([`Vm::sh`], e.g. the SNTP stand-in `phone-clock set`), and
//!   `supervisor`, the standard input and output of the phone's supervisor stand-in
//!   (`supervisor-sim --on-ok "reboot -f"`): commands such as `call active` go in,
//!   its events come out ([`Vm::events`]).
//! - The serial console goes to a file ([`Vm::console`]), read when a test fails.
//!
//! **The DHCP network** ([`Lab::with_dhcp`], issue 27) replaces QEMU's user network with a
//! wire of the test's own: a network namespace with a tap device (`test_servers::netns`)
//! in which QEMU runs (`-netdev tap`), a real dnsmasq giving the phone its lease, its DNS
//! and the provisioning options the test chooses (`test_servers::dnsmasq_dhcp`), and
//! nginx on `https://10.77.0.1/` (port 443) inside the namespace; the test starts more
//! servers there ([`Dhcp::run`]). The kernel command line says `phone.net=dhcp`, so the
//! phone's rcS starts BusyBox udhcpc with the license agent's hook instead of the fixed
//! address. The deployment's `agent.toml` (e.g. `[provisioning] source = "dhcp"`) comes
//! with the trust, in the appended archive.
//!
//! The image is `target/phone/` unless `LICENSE_AGENT_PHONE_IMAGE` names another folder.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::nbd::{CutMode, CutReport, FlashServer};
use super::nginx::Nginx;
use super::pki::Pki;
use test_servers::dnsmasq_dhcp::DnsmasqDhcp;
use test_servers::netns::{self, Netns};

/// The phone's MAC (QEMU gives its network card this address).
pub const MAC: &str = "0004f2000001";
/// The site serial of the image's deployment (`site_serial` in its agent.toml).
pub const SITE_SERIAL: &str = "100000000001";
/// How long a boot may take, from power-on to the control shell answering. A boot
/// takes 5 to 8 s here; a loaded CI machine may be several times slower.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one control-shell command may take.
pub const SH_TIMEOUT: Duration = Duration::from_secs(60);

/// The image's folder: `kernel`, `initrd.cpio`, `flash.img`.
pub fn image_dir() -> PathBuf {
    let dir = std::env::var_os("LICENSE_AGENT_PHONE_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/phone"));
    for file in ["vmlinuz", "initrd.cpio", "flash.img"] {
        assert!(
            dir.join(file).is_file(),
            "{} has no {file}: build the phone image first (bash scripts/phone-image.sh)",
            dir.display()
        );
    }
    dir
}

/// The image's deployment configuration (`agent.toml` beside the image: a copy of the
/// firmware's `/etc/license-agent/agent.toml`), for a test to start its own from.
pub fn image_agent_toml() -> String {
    let path = image_dir().join("agent.toml");
    fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build the phone image again (bash scripts/phone-image.sh)",
            path.display()
        )
    })
}

/// The DHCP network of a [`Lab`]: the namespace the phone's wire is in, and its dnsmasq.
pub struct Dhcp {
    pub dnsmasq: DnsmasqDhcp,
    /// Dropped last: deleting the namespace ends its addresses.
    pub netns: Netns,
}

impl Dhcp {
    /// Runs `f` inside the namespace (to start a server on its addresses).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.netns.run(f)
    }
}

/// A phone and its surroundings; see the module documentation.
pub struct Lab {
    /// Short (sockets live here: at most 107 bytes of path).
    pub dir: PathBuf,
    /// The PKI whose CA the phone trusts (its server certificate names 10.77.0.1-3 too).
    pub pki: Pki,
    /// The provisioning server: on 127.0.0.1 (reached as `https://prov.example.test/`),
    /// or with [`Lab::with_dhcp`] inside the namespace, `https://10.77.0.1/`.
    pub nginx: Nginx,
    /// The vendor's signing key, trusted by the phone's keyring.
    pub key: PathBuf,
    pub flash: FlashServer,
    /// The DHCP network ([`Lab::with_dhcp`]); `None`: QEMU's user network.
    pub dhcp: Option<Dhcp>,
    kernel: PathBuf,
    initrd: PathBuf,
    boots: usize,
    /// More `guestfwd` rules of QEMU's user network: a guest address (`10.0.2.101:514`)
    /// to a port on the host's 127.0.0.1 ([`Lab::forward`]).
    forwards: Vec<(String, u16)>,
    _tmp: tempfile::TempDir,
}

impl Lab {
    /// A new lab: a blank flash, an empty provisioning folder, nothing running but nginx
    /// and the flash server.
    pub fn new() -> Lab {
        Lab::build(None, "", None)
    }

    /// A lab whose phone boots with `agent_toml` as its `/etc/license-agent/agent.toml`
    /// (start from [`image_agent_toml`]).
    pub fn with_agent_toml(agent_toml: &str) -> Lab {
        Lab::build(None, "", Some(agent_toml))
    }

    /// A lab whose firmware keyring has `lines` after the vendor key's line (trust
    /// updates, `docs/trust-update.md`: `version`, `root-threshold`, `root ed25519`
    /// lines, more license keys).
    pub fn with_keyring_lines(lines: &str) -> Lab {
        Lab::build(None, lines, None)
    }

    /// A lab whose phone is on the DHCP network (see the module documentation): dnsmasq
    /// gives leases of `lease` (dnsmasq's notation, e.g. `2m`) with `options`
    /// ([`test_servers::dnsmasq_dhcp::text_option`]) and answers DNS for `hosts`; the
    /// phone boots with `agent_toml` as its `/etc/license-agent/agent.toml`.
    pub fn with_dhcp(
        lease: &str,
        options: &[String],
        hosts: &[(&str, &str)],
        agent_toml: &str,
    ) -> Lab {
        Lab::build(Some((lease, options, hosts)), "", Some(agent_toml))
    }

    #[allow(clippy::type_complexity)]
    fn build(
        dhcp: Option<(&str, &[String], &[(&str, &str)])>,
        keyring_lines: &str,
        agent_toml: Option<&str>,
    ) -> Lab {
        let image = image_dir();
        let tmp = tempfile::Builder::new()
            .prefix("phone-")
            .tempdir_in("/tmp")
            .expect("a temp folder");
        let dir = tmp.path().to_path_buf();
        let pki = Pki::new(&dir.join("pki"));
        let key = super::vendor_key(&dir);
        if !keyring_lines.is_empty() {
            let path = dir.join("keyring");
            let mut keyring = fs::read_to_string(&path).expect("read the keyring");
            keyring.push_str(keyring_lines);
            fs::write(&path, keyring).expect("write the keyring");
        }
        let www = dir.join("www");
        fs::create_dir(&www).expect("the provisioning folder");
        let trust = dir.join("trust");
        let (nginx, dhcp) = match dhcp {
            None => (Nginx::start(&www, &pki), None),
            Some((lease, options, hosts)) => {
                let netns = Netns::new();
                let nginx = netns.run(|| Nginx::start_on(&www, &pki, netns::SERVER, Some(443)));
                let dnsmasq =
                    DnsmasqDhcp::start(&netns, &dir.join("dnsmasq"), lease, options, hosts);
                (nginx, Some(Dhcp { dnsmasq, netns }))
            }
        };
        if let Some(agent_toml) = agent_toml {
            let config = trust.join("etc/license-agent/agent.toml");
            fs::create_dir_all(config.parent().unwrap()).unwrap();
            fs::write(&config, agent_toml).expect("write the deployment's agent.toml");
        }

        // The deployment's trust, appended to the firmware as a second cpio archive.
        let put = |path: &str, from: &Path| {
            let to = trust.join(path);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        };
        put("etc/license-agent/provisioning-ca.pem", &pki.ca_pem);
        put("usr/share/license-agent/keyring", &dir.join("keyring"));
        let initrd = dir.join("initrd.cpio");
        let mut firmware = fs::read(image.join("initrd.cpio")).expect("read initrd.cpio");
        firmware.extend(cpio_newc(&trust));
        fs::write(&initrd, firmware).expect("write the initramfs");

        let flash_image = fs::read(image.join("flash.img")).expect("read flash.img");
        let flash = FlashServer::start(flash_image, &dir.join("flash.sock"));
        Lab {
            dir,
            pki,
            nginx,
            key,
            flash,
            dhcp,
            kernel: image.join("vmlinuz"),
            initrd,
            boots: 0,
            forwards: Vec::new(),
            _tmp: tmp,
        }
    }

    /// Signs a license with the lab's vendor key; `features` as `license-issuer sign
    /// --feature` takes them.
    pub fn sign(&self, kind: &str, features: &[String]) -> Vec<u8> {
        let serial = if kind == "phone" { MAC } else { SITE_SERIAL };
        let out = self.dir.join(format!("signed-{kind}.cfg"));
        super::sign_license(&self.key, kind, serial, features, &out);
        fs::read(&out).expect("read the signed file")
    }

    /// Puts the phone's `<mac>-license.cfg` on the server.
    pub fn post_phone(&self, features: &[String]) -> Vec<u8> {
        let bytes = self.sign("phone", features);
        self.nginx.put(&format!("{MAC}-license.cfg"), &bytes);
        bytes
    }

    /// Puts the site-wide `000000000000-license.cfg` on the server.
    pub fn post_site(&self, features: &[String]) -> Vec<u8> {
        let bytes = self.sign("site", features);
        self.nginx.put("000000000000-license.cfg", &bytes);
        bytes
    }

    /// Lets the phone reach `host_port` on the host's 127.0.0.1 as the TCP address
    /// `guest` (`10.0.2.101:514`), from the next power-on (QEMU's user network only).
    pub fn forward(&mut self, guest: &str, host_port: u16) {
        self.forwards.push((guest.to_string(), host_port));
    }

    /// Powers the phone on: starts QEMU (its RTC at 1970, as a phone without a clock
    /// battery) and connects to its two ports. Does not wait for the boot.
    pub fn power_on(&mut self) -> Vm {
        self.boots += 1;
        let run = self.dir.join(format!("power-{}", self.boots));
        fs::create_dir(&run).expect("a folder for this power-on");
        let console = run.join("console.log");
        let control = run.join("control.sock");
        let supervisor = run.join("supervisor.sock");
        let (mut cmd, netdev, append) = match &self.dhcp {
            None => (
                Command::new("qemu-system-arm"),
                format!(
                    "user,id=net,restrict=on,guestfwd=tcp:10.0.2.100:443-cmd:socat - TCP:127.0.0.1:{}{}",
                    self.nginx.https_port,
                    self.forwards
                        .iter()
                        .map(|(guest, port)| format!(
                            ",guestfwd=tcp:{guest}-cmd:socat - TCP:127.0.0.1:{port}"
                        ))
                        .collect::<String>()
                ),
                "console=ttyAMA0 quiet",
            ),
            // The wire is the namespace's tap; rcS asks DHCP for the network.
            Some(dhcp) => (
                dhcp.netns.command("qemu-system-arm"),
                format!("tap,id=net,ifname={},script=no,downscript=no", netns::TAP),
                "console=ttyAMA0 quiet phone.net=dhcp",
            ),
        };
        let flash = format!(
            "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={},if=none,id=flash,cache=writeback",
            self.flash.socket().display()
        );
        let mac = MAC
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        cmd.args(["-M", "virt", "-cpu", "cortex-a15", "-m", "256"])
            .args(["-display", "none", "-monitor", "none", "-nodefaults"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", append])
            .args(["-rtc", "base=1970-01-01T00:00:10"])
            .arg("-drive")
            .arg(flash)
            .args(["-device", "virtio-blk-device,drive=flash"])
            .arg("-netdev")
            .arg(netdev)
            .arg("-device")
            .arg(format!("virtio-net-device,netdev=net,mac={mac}"))
            .args(["-device", "virtio-rng-device"])
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=control,path={},server=on,wait=off",
                control.display()
            ))
            .args([
                "-device",
                "virtserialport,chardev=control,name=control,nr=1",
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,id=supervisor,path={},server=on,wait=off",
                supervisor.display()
            ))
            .args([
                "-device",
                "virtserialport,chardev=supervisor,name=supervisor,nr=2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(run.join("qemu.stderr")).unwrap(),
            ));
        let child = cmd.spawn().expect("start qemu-system-arm");
        let powered = Instant::now();
        let control = Channel::connect(&control, &run);
        let supervisor = Channel::connect(&supervisor, &run);
        Vm {
            child: Some(child),
            control,
            supervisor,
            console,
            powered,
            token: 0,
            boot_id: None,
        }
    }

    /// A power cut's second half, after [`Vm::power_cut`]: what the flash kept of the
    /// writes the guest had not flushed.
    pub fn cut(&self, mode: CutMode) -> CutReport {
        self.flash.cut(mode)
    }
}

/// A running phone; see the module documentation. Dropping it cuts the power.
pub struct Vm {
    child: Option<Child>,
    control: Channel,
    supervisor: Channel,
    /// The serial console's output (kernel messages, rcS, the person's shell).
    pub console: PathBuf,
    /// When QEMU was started.
    pub powered: Instant,
    token: u64,
    boot_id: Option<String>,
}

impl Vm {
    /// Runs `command` in the phone's control shell (standard error joined to standard
    /// output, standard input empty); its exit status and output.
    pub fn try_sh(&mut self, command: &str, timeout: Duration) -> Result<(i32, String), String> {
        self.request(command, timeout, None)
            .map(|answer| answer.expect("only a stop abandons a request"))
    }

    /// [`Vm::try_sh`] that gives up as soon as `stop` says so (it is asked every 100 µs
    /// while the command runs): `Ok(None)` then, the command abandoned. For a test that
    /// cuts the power at an instant of its choosing, such as the moment a write reaches
    /// the flash ([`Vm::power_cut`] right after: the guest flushes within a millisecond
    /// or so, so the instant must be caught quickly).
    pub fn try_sh_or_stop(
        &mut self,
        command: &str,
        timeout: Duration,
        mut stop: impl FnMut() -> bool,
    ) -> Result<Option<(i32, String)>, String> {
        self.request(command, timeout, Some(&mut stop))
    }

    /// One request on the control channel (see `phone-vm/rootfs/etc/phone/control`).
    fn request(
        &mut self,
        command: &str,
        timeout: Duration,
        stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Option<(i32, String)>, String> {
        self.token += 1;
        // Unique across boots and power-ons: stale output never matches.
        let token = format!("{}-{}", std::process::id(), self.token);
        let line = format!("{token} {}\n", base64(command.as_bytes()));
        self.control.send(line.as_bytes())?;
        let (begin, end) = (format!("@@<{token}\n"), format!("@@>{token} "));
        let done = |text: &str| {
            let at = text.find(&end)?;
            text[at..].find('\n').map(|n| at + n + 1)
        };
        let Some(text) = self.control.wait_for_or_stop(timeout, done, stop)? else {
            return Ok(None);
        };
        let at = text.find(&end).unwrap();
        let status = text[at + end.len()..].trim().parse().unwrap_or(-1);
        let output = match text[..at].find(&begin) {
            Some(start) => &text[start + begin.len()..at],
            None => &text[..at],
        };
        Ok(Some((status, output.to_string())))
    }

    /// [`Vm::try_sh`] that must succeed (exit status 0); its output.
    pub fn sh(&mut self, command: &str) -> String {
        match self.try_sh(command, SH_TIMEOUT) {
            Ok((0, out)) => out,
            Ok((status, out)) => panic!(
                "on the phone, `{command}` exited {status}:\n{out}\n{}",
                self.diagnostics()
            ),
            Err(e) => panic!("on the phone, `{command}`: {e}\n{}", self.diagnostics()),
        }
    }

    /// Waits until the phone has booted anew (its control shell answers with a boot id
    /// other than the last one seen) and returns the new boot id.
    pub fn wait_boot(&mut self) -> String {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            // A command sent while the phone boots may be lost: ask again.
            if let Ok((0, id)) = self.try_sh(
                "cat /proc/sys/kernel/random/boot_id",
                Duration::from_secs(3),
            ) {
                let id = id.trim().to_string();
                if self.boot_id.as_deref() != Some(id.as_str()) {
                    self.boot_id = Some(id.clone());
                    return id;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "the phone did not boot (again) within {BOOT_TIMEOUT:?}\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Whether the daemon answers on its control socket. `license-agent status` alone
    /// reads the store when no daemon runs, and the daemon opens its socket only once its
    /// start is done (the store loaded, the licenses of removed keys set aside): a test
    /// that looks at the store before that races the daemon's start.
    pub fn agent_answers(&mut self) -> bool {
        matches!(
            self.try_sh("license-agent status", Duration::from_secs(30)),
            Ok((0, out)) if out.contains("read from    the running daemon")
        )
    }

    /// Waits until [`Vm::agent_answers`] (at most [`BOOT_TIMEOUT`]).
    pub fn wait_agent(&mut self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while !self.agent_answers() {
            if Instant::now() > deadline {
                let log = self
                    .try_sh("logread | tail -n 40", Duration::from_secs(10))
                    .map(|(_, log)| log)
                    .unwrap_or_default();
                panic!(
                    "the agent never answered on its control socket within {BOOT_TIMEOUT:?}\n-- logread --\n{log}\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// The boot id last seen by [`Vm::wait_boot`].
    pub fn wait_boot_id(&self) -> String {
        self.boot_id.clone().expect("wait_boot first")
    }

    /// Sets the phone's wall clock (the SNTP stand-in, 64-bit time).
    pub fn set_clock(&mut self, unix: i64) {
        self.sh(&format!("phone-clock set {unix}"));
    }

    /// The phone's wall clock, Unix seconds.
    pub fn clock(&mut self) -> i64 {
        let out = self.sh("phone-clock get");
        out.trim().parse().expect("phone-clock get prints seconds")
    }

    /// Sends one command line to the supervisor stand-in (`call active`, `check-sync`).
    pub fn supervisor(&mut self, command: &str) {
        if let Err(e) = self.supervisor.send(format!("{command}\n").as_bytes()) {
            panic!("supervisor port: {e}\n{}", self.diagnostics());
        }
    }

    /// Every event the supervisor stand-in has reported since power-on, without the
    /// timestamps (the guest's clock moves).
    pub fn events(&self) -> Vec<String> {
        self.supervisor
            .text()
            .lines()
            .filter_map(|line| line.split_once(' ').map(|(_, event)| event.to_string()))
            .collect()
    }

    /// Every event with its time: the guest's wall clock, in milliseconds.
    pub fn timed_events(&self) -> Vec<(i64, String)> {
        self.supervisor
            .text()
            .lines()
            .filter_map(|line| {
                let (ms, event) = line.split_once(' ')?;
                Some((ms.parse().ok()?, event.to_string()))
            })
            .collect()
    }

    /// Waits until `count` events satisfy `pred`.
    pub fn wait_events(
        &self,
        count: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) {
        let result = self.supervisor.wait_for(timeout, |text| {
            let n = text
                .lines()
                .filter(|l| l.split_once(' ').is_some_and(|(_, e)| pred(e)))
                .count();
            (n >= count).then_some(0)
        });
        if let Err(e) = result {
            panic!("waiting for {what}: {e}\n{}", self.diagnostics());
        }
    }

    /// Events that are `recv REBOOT …` (the agent asked for a reboot).
    pub fn reboot_requests(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with("recv REBOOT "))
            .count()
    }

    /// Everything that helps when a test fails: the console's tail, the events.
    pub fn diagnostics(&self) -> String {
        let console = fs::read(&self.console).unwrap_or_default();
        let console = String::from_utf8_lossy(&console);
        let tail: Vec<&str> = console.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "-- console (last 60 lines) --\n{}\n-- supervisor events --\n{}\n-- control channel (last 2000 bytes) --\n{}",
            tail.join("\n"),
            self.supervisor.text(),
            last_chars(&self.control.text(), 2000)
        )
    }

    /// Pulls the plug: SIGKILL to QEMU, so whatever the guest had not flushed to the
    /// flash is the flash server's to keep or lose ([`Lab::cut`]).
    pub fn power_cut(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Standard base64 (the control channel's requests).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn last_chars(text: &str, n: usize) -> String {
    let start = text.len().saturating_sub(n);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// One virtio-serial port's host side: what the guest wrote, gathered by a thread.
struct Channel {
    stream: UnixStream,
    seen: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// Bytes of `seen` already handed to a caller of `wait_for`.
    consumed: Mutex<usize>,
}

impl Channel {
    /// Connects to QEMU's socket (it appears a moment after QEMU starts).
    fn connect(path: &Path, run: &Path) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > deadline => panic!(
                    "connect to {}: {e}; QEMU said: {}",
                    path.display(),
                    fs::read_to_string(run.join("qemu.stderr")).unwrap_or_default()
                ),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        let seen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = stream.try_clone().expect("clone the port's socket");
        let shared = Arc::clone(&seen);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (lock, ready) = &*shared;
                        lock.lock().unwrap().extend_from_slice(&buf[..n]);
                        ready.notify_all();
                    }
                }
            }
        });
        Channel {
            stream,
            seen,
            consumed: Mutex::new(0),
        }
    }

    fn send(&self, bytes: &[u8]) -> Result<(), String> {
        (&self.stream)
            .write_all(bytes)
            .map_err(|e| format!("write to the port: {e}"))
    }

    /// Everything the guest wrote so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.0.lock().unwrap()).into_owned()
    }

    /// Waits until `done` finds an end in the text not yet consumed; consumes up to it
    /// and returns that text. `Ok(None)` as soon as `stop` says so (asked every 100 µs).
    fn wait_for_or_stop(
        &self,
        timeout: Duration,
        done: impl Fn(&str) -> Option<usize>,
        mut stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Option<String>, String> {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        let mut consumed = self.consumed.lock().unwrap();
        let mut looked_at = None;
        loop {
            if looked_at != Some(seen.len()) {
                looked_at = Some(seen.len());
                let text = String::from_utf8_lossy(&seen[*consumed..]).into_owned();
                if let Some(end) = done(&text) {
                    // `end` counts bytes of the lossy text: the same bytes when all is UTF-8.
                    *consumed = (*consumed + end).min(seen.len());
                    return Ok(Some(text[..end].to_string()));
                }
            }
            if stop.as_mut().is_some_and(|stop| stop()) {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("nothing came within {timeout:?}"));
            }
            let mut wait = deadline - now;
            if stop.is_some() {
                wait = wait.min(Duration::from_micros(100));
            }
            seen = ready.wait_timeout(seen, wait).unwrap().0;
        }
    }

    /// [`Channel::wait_for_or_stop`] without a stop.
    fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&str) -> Option<usize>,
    ) -> Result<String, String> {
        self.wait_for_or_stop(timeout, done, None)
            .map(|text| text.expect("only a stop ends a wait early"))
    }
}

/// A cpio archive (the "newc" format the kernel's initramfs takes) of every file and
/// folder under `root`, owned by root.
pub fn cpio_newc(root: &Path) -> Vec<u8> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((name, path.clone()));
            if path.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let mut entries = Vec::new();
    walk(root, root, &mut entries);
    let mut out = Vec::new();
    let mut ino = 1;
    let mut entry = |out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]| {
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        ino += 1;
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (name, path) in entries {
        if path.is_dir() {
            entry(&mut out, &name, 0o040755, &[]);
        } else {
            let data = fs::read(&path).unwrap();
            entry(&mut out, &name, 0o100644, &data);
        }
    }
    entry(&mut out, "TRAILER!!!", 0, &[]);
    out
}
