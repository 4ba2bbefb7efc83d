//! A network namespace of a test's own with one tap device in it: the emulated phone's
//! DHCP network. QEMU (`-netdev tap,ifname=tap0`) is started inside it and its guest
//! sees a wire to `tap0`, on which the namespace holds the server addresses
//! [`LAB_ADDRESSES`] (10.77.0.1 to .3, /24); dnsmasq (`dnsmasq_dhcp.rs`), nginx and
//! vsftpd run inside it too, listening there ([`Netns::run`]).
//!
//! Addresses exist only inside the namespace, so every test has its own 10.77.0.0/24 and
//! tests run side by side without a per-test subnet; only the name must be unique
//! (`la-<pid>-<n>`). Dropping it deletes the namespace (the tap goes with it once nothing
//! in it runs). A test process killed without unwinding leaves its namespace behind: the
//! next [`Netns::new`] deletes those whose process is gone. Needs root (`ip netns`).

use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sched::{setns, CloneFlags};

pub use super::pki::LAB_ADDRESSES;

/// The tap device inside every namespace (QEMU's `ifname=`).
pub const TAP: &str = "tap0";
/// The namespace's first address: its DHCP and DNS server, and the default server.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The prefix length of [`LAB_ADDRESSES`].
pub const PREFIX: u8 = 24;
/// Where `ip netns` keeps the namespaces' names.
const NETNS_DIR: &str = "/run/netns";
/// The names' prefix: `la-<pid>-<n>`.
const PREFIX_NAME: &str = "la-";

/// A network namespace with [`TAP`] up and [`LAB_ADDRESSES`] on it; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Makes a new namespace (and first deletes the ones dead test processes left).
    pub fn new() -> Netns {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        sweep_stale();
        let name = format!(
            "{PREFIX_NAME}{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        // From here on the drop deletes it, whatever fails next.
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
        for addr in LAB_ADDRESSES {
            netns.ip(&["addr", "add", &format!("{addr}/{PREFIX}"), "dev", TAP]);
        }
        netns.ip(&["link", "set", TAP, "up"]);
        netns
    }

    /// `ip ARGS` inside the namespace; must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command run inside the namespace (`ip netns exec NAME PROGRAM`: `ip` execs the
    /// program, so the child's process id is the program's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that has entered the namespace, and returns what it gives.
    /// Whatever `f` starts runs inside: its processes, and the threads it spawns (a
    /// network namespace is per thread and inherited), e.g. nginx's keeper thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new(NETNS_DIR).join(&self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let ns = fs::File::open(&path)
                        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `ip ARGS`; panics with its error when it fails.
fn ip(args: &[&str]) -> String {
    let out: Output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip (package iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the namespaces named `la-<pid>-<n>` whose process no longer exists.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX_NAME)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}
