//! A real DHCP and DNS server for the emulated phone: dnsmasq 2.90 (Debian 12's
//! `dnsmasq-base`, `scripts/setup-servers.sh`) inside a test's network namespace
//! ([`Netns`]), bound to its tap device, giving leases of 10.77.0.50-60 with the options
//! a test chooses (66, the TFTP server name; 160, the custom provisioning option; any
//! other), the router and the DNS server being the namespace's 10.77.0.1.
//!
//! The options are in a `--dhcp-optsfile` and the host names in an `--addn-hosts` file,
//! both of which dnsmasq reads again on SIGHUP: [`DnsmasqDhcp::set_options`] rewrites
//! them and waits until dnsmasq has, so the next lease (a renewal, a new boot) carries
//! the new options. Why DNS rather than an `/etc/hosts` in the phone's image: a phone
//! resolves the host name of option 66 with the DNS server the same lease names, as a
//! deployed phone does, and the test can change both at once.
//!
//! Its log (`--log-dhcp`, `--log-queries`) is [`DnsmasqDhcp::log`]. It runs under
//! `setpriv --pdeathsig KILL` so it ends with the thread that started it, and is killed
//! on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::dnsmasq_tftp::DNSMASQ_BIN;
use super::netns::{Netns, TAP};

/// How long dnsmasq may take to start, or to read its files again.
const TIMEOUT: Duration = Duration::from_secs(15);

/// One DHCP option as dnsmasq's `--dhcp-option` takes it after the number: `"text"`
/// for a string (quoted: dnsmasq would read `10.77.0.1` as an address otherwise).
pub fn text_option(number: u8, value: &str) -> String {
    assert!(
        !value.contains(['"', '\\', '\n']),
        "option {number}: {value:?} cannot be quoted for dnsmasq"
    );
    format!("{number},\"{value}\"")
}

/// dnsmasq serving DHCP and DNS on the namespace's tap; see the module documentation.
pub struct DnsmasqDhcp {
    /// Its log file.
    pub log: PathBuf,
    /// The leases it gave (`--dhcp-leasefile`).
    pub leases: PathBuf,
    opts: PathBuf,
    hosts: PathBuf,
    child: Child,
}

impl DnsmasqDhcp {
    /// Starts dnsmasq in `netns`, its files in `work`, leases of `lease` (dnsmasq's
    /// notation: `2m`, `1h`), giving `options` (see [`text_option`]) and answering DNS
    /// for `hosts` (`(name, address)`).
    pub fn start(
        netns: &Netns,
        work: &Path,
        lease: &str,
        options: &[String],
        hosts: &[(&str, &str)],
    ) -> DnsmasqDhcp {
        fs::create_dir_all(work).expect("create the dnsmasq folder");
        let path = |name: &str| work.join(name);
        let (opts, hosts_file, log) = (path("dhcp-opts"), path("hosts"), path("dnsmasq.log"));
        write_files(&opts, &hosts_file, options, hosts);
        let mut cmd = netns.command("setpriv");
        cmd.args(["--pdeathsig", "KILL", DNSMASQ_BIN])
            .args(["--no-daemon", "--conf-file=/dev/null"])
            .arg(format!("--interface={TAP}"))
            .args([
                "--bind-interfaces",
                "--port=53",
                "--no-resolv",
                "--no-hosts",
            ])
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            .arg(format!(
                "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,{lease}"
            ))
            .arg(format!("--dhcp-optsfile={}", opts.display()))
            .arg(format!(
                "--dhcp-leasefile={}",
                path("dnsmasq.leases").display()
            ))
            .arg("--dhcp-authoritative")
            .args(["--log-dhcp", "--log-queries"])
            .arg(format!("--log-facility={}", log.display()))
            .arg(format!("--pid-file={}", path("dnsmasq.pid").display()))
            .args(["--user=root", "--group=root"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(path("dnsmasq.stderr")).expect("create dnsmasq.stderr"),
            ));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("start {DNSMASQ_BIN} (package dnsmasq-base, scripts/setup-servers.sh): {e}")
        });
        let mut server = DnsmasqDhcp {
            log,
            leases: path("dnsmasq.leases"),
            opts,
            hosts: hosts_file,
            child,
        };
        server.wait_log("DHCP, IP range", 1);
        server
    }

    /// Replaces the options and host names; returns once dnsmasq has read them
    /// (SIGHUP): the next lease it gives, or renews, carries them.
    pub fn set_options(&mut self, options: &[String], hosts: &[(&str, &str)]) {
        let before = self.count(&self.hosts_read());
        write_files(&self.opts, &self.hosts, options, hosts);
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP).expect("SIGHUP dnsmasq");
        // It reads the hosts file after the options file, and says so.
        self.wait_log(&self.hosts_read(), before + 1);
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log line dnsmasq writes when it has read the hosts file.
    fn hosts_read(&self) -> String {
        format!("read {}", self.hosts.display())
    }

    fn count(&self, text: &str) -> usize {
        self.log_text().matches(text).count()
    }

    /// Waits until the log holds `count` times `text`; panics (with the log) if not.
    fn wait_log(&mut self, text: &str, count: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.count(text) < count {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dnsmasq exited ({status}):\n{}{}",
                    fs::read_to_string(self.log.with_file_name("dnsmasq.stderr"))
                        .unwrap_or_default(),
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq: no {count}× {text:?} in its log within {TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DnsmasqDhcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_files(opts: &Path, hosts_file: &Path, options: &[String], hosts: &[(&str, &str)]) {
    let mut text = String::from("# dhcp-optsfile (test-servers/src/dnsmasq_dhcp.rs)\n");
    for option in options {
        text.push_str(option);
        text.push('\n');
    }
    fs::write(opts, text).expect("write the dhcp-optsfile");
    let mut text = String::new();
    for (name, addr) in hosts {
        text.push_str(&format!("{addr} {name}\n"));
    }
    fs::write(hosts_file, text).expect("write the hosts file");
}
