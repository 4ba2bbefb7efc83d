//! The fault suite (issue 12): at every path the agent reads or writes, each fault a
//! phone's flash or a careless hand can put there: a read-only mount, a full file
//! system, a FIFO, a directory, a symbolic link to a device, a huge file, and a file that
//! vanishes mid-read (its second `read` fails with EIO, injected by strace, at the places
//! the agent reads; the case counts only if strace's log shows the EIO injected). For each, the
//! real binary (`status --json`, `run --once` and `install`, each bounded in time; an
//! install may fail, but must say why) must keep the
//! rule: nothing there stops the agent from starting and publishing the stored licenses
//! that verify. Only the configuration and the keyring are different: without them
//! nothing can be verified, so the agent refuses plainly (exit 2, naming the file), and
//! never hangs.
//!
//! The mounts are real (a read-only bind mount, a small tmpfs), so the suite runs as root,
//! as the README's test command does. It prints a table of what each case gave.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::bounded::{command, run, Mount};
use common::now;
use common::phone::Phone;
use common::pki::Pki;

const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ReadOnlyMount,
    FullFileSystem,
    Fifo,
    Directory,
    DeviceLink,
    HugeFile,
    VanishesMidRead,
}

const FAULTS: [Fault; 7] = [
    Fault::ReadOnlyMount,
    Fault::FullFileSystem,
    Fault::Fifo,
    Fault::Directory,
    Fault::DeviceLink,
    Fault::HugeFile,
    Fault::VanishesMidRead,
];

/// What the agent must do with a fault at a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Start and publish the stored license's feature.
    Runs,
    /// Exit 2 with a message naming the file (nothing can be verified without it); a
    /// read-only or full file system there changes nothing, so then it runs.
    RefusesPlainly,
}

/// A path the agent reads or writes, relative to the phone's folder.
struct Place {
    path: &'static str,
    /// Whether the agent `read()`s what is there: a folder is listed, not read, the lock
    /// is only locked and the features file only written, so a read that fails there
    /// cannot happen and [`Fault::VanishesMidRead`] is not a case at them.
    reads: bool,
    rule: Rule,
}

const PLACES: [Place; 14] = [
    Place {
        path: "etc/agent.toml",
        reads: true,
        rule: Rule::RefusesPlainly,
    },
    Place {
        path: "etc/keyring",
        reads: true,
        rule: Rule::RefusesPlainly,
    },
    Place {
        path: "etc/ca.pem",
        reads: true,
        rule: Rule::Runs,
    },
    Place {
        path: "etc/client.pem",
        reads: true,
        rule: Rule::Runs,
    },
    Place {
        path: "etc/client.key",
        reads: true,
        rule: Rule::Runs,
    },
    Place {
        path: "state",
        reads: false,
        rule: Rule::Runs,
    },
    Place {
        path: "state/meta.json",
        reads: true,
        rule: Rule::Runs,
    },
    Place {
        path: "state/lock",
        reads: false,
        rule: Rule::Runs,
    },
    Place {
        path: "state/phone",
        reads: false,
        rule: Rule::Runs,
    },
    Place {
        path: "state/site/0000000005.cfg",
        reads: true,
        rule: Rule::Runs,
    },
    Place {
        path: "state/rejected",
        reads: false,
        rule: Rule::Runs,
    },
    Place {
        path: "run/features",
        reads: false,
        rule: Rule::Runs,
    },
    Place {
        path: "run",
        reads: false,
        rule: Rule::Runs,
    },
    // A folder as the provisioning server (`file://`), serving a site license.
    Place {
        path: "srv/000000000000-license.cfg",
        reads: true,
        rule: Rule::Runs,
    },
];

/// The feature of the license stored before the fault.
const STORED: &str = "usb-call-recording";

/// A phone laid out as on the device: the configuration, keyring and certificates in
/// `etc/` (read-only firmware on a real phone), the state on flash in `state/`, the
/// published features in `run/` (a tmpfs). One phone license is stored, and a site
/// license too, in the file that is one of the places. The server is HTTPS and refuses
/// connections, so the CA and client certificate files are read at every fetch.
fn phone(pki: &Pki, place: &Place) -> Phone {
    let mut phone = Phone::new("");
    // The server is a folder for the place in it, HTTPS (refusing) for all others.
    let server = if place.path.starts_with("srv/") {
        let srv = phone.path("srv");
        std::fs::create_dir_all(&srv).unwrap();
        let site = phone.sign("site", &[("vqmon", now() - DAY, None)]);
        std::fs::write(srv.join("000000000000-license.cfg"), site).unwrap();
        format!("file://{}/", srv.display())
    } else {
        "https://127.0.0.1:9/".to_string()
    };
    let etc = phone.path("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::rename(phone.path("keyring"), etc.join("keyring")).unwrap();
    for (from, to) in [
        (&pki.ca_pem, "ca.pem"),
        (&pki.client_cert, "client.pem"),
        (&pki.client_key, "client.key"),
    ] {
        std::fs::copy(from, etc.join(to)).unwrap();
    }
    let config = etc.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "mac = \"{}\"\nsite_serial = \"100000000001\"\nkeyring = \"keyring\"\n\
             state_dir = \"{}\"\nfeatures_file = \"{}\"\ncontrol_socket = \"{}\"\n\
             supervisor = \"none\"\nserver = \"{}\"\n[fetch]\n\
             ca_file = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"\n\
             connect_timeout = \"1s\"\n",
            common::phone::MAC,
            phone.path("state").display(),
            phone.path("run/features").display(),
            phone.path("control.sock").display(),
            server,
        ),
    )
    .unwrap();
    phone.config = config;
    phone.install(&phone.sign("phone", &[(STORED, now() - DAY, None)]));
    let site = phone.sign("site", &[("vqmon", now() - DAY, None)]);
    std::fs::write(phone.path("state/site/0000000005.cfg"), site).unwrap();
    std::fs::create_dir_all(phone.path("run")).unwrap();
    phone
}

/// Puts `fault` at `path`. Returns the mount to undo, and the strace injection to run
/// the commands under (for a file that vanishes mid-read; strace appends the calls on
/// `path` it traced to `log`).
fn inject(path: &Path, fault: Fault, log: &Path) -> (Option<Mount>, Option<String>) {
    // The folder a mount fault covers: the place itself if it is a folder, else its own.
    let folder = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap().to_path_buf()
    };
    let replace = |make: &dyn Fn(&Path)| {
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            let _ = std::fs::remove_file(path);
        }
        make(path);
    };
    match fault {
        Fault::ReadOnlyMount => return (Some(Mount::read_only(&folder)), None),
        Fault::FullFileSystem => return (Some(Mount::full(&folder, 512)), None),
        Fault::Fifo => replace(&|p| {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
        }),
        Fault::Directory => replace(&|p| std::fs::create_dir(p).unwrap()),
        Fault::DeviceLink => replace(&|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
        Fault::HugeFile => replace(&|p| {
            // 1 GiB, sparse: the agent must refuse it by size, never read it whole.
            std::fs::File::create(p).unwrap().set_len(1 << 30).unwrap()
        }),
        Fault::VanishesMidRead => {
            // strace appends what it traced (only the calls on this path) to the log,
            // where [`injected`] counts the reads it failed.
            return (
                None,
                Some(format!(
                    "-A -o {} -P {} -e inject=read:error=EIO:when=2",
                    log.display(),
                    path.display()
                )),
            );
        }
    }
    (None, None)
}

/// How many reads strace failed with EIO (the `(INJECTED)` lines of its log).
fn injected(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("read(") && l.contains("EIO") && l.contains("(INJECTED)"))
        .count()
}

/// Runs `license-agent ARGS --config …`, under strace when injecting; fails the test if
/// it outlives [`BOUND`].
fn bounded(phone: &Phone, args: &[&str], strace: Option<&str>) -> Output {
    let started = Instant::now();
    let out = run(command(phone, args, None, strace));
    let took = started.elapsed();
    SLOWEST.with(|s| s.set(s.get().max(took)));
    out
}

thread_local! {
    /// The longest any command of the current case took.
    static SLOWEST: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
    /// The reads strace failed with EIO in the current case (a vanishing file).
    static INJECTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn words(out: &Output) -> String {
    format!(
        "exit {:?}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// One case: what `status` and `run --once` gave, or why the rule was broken.
fn case(pki: &Pki, place: &Place, fault: Fault) -> Result<String, String> {
    let phone = phone(pki, place);
    let path = phone.path(place.path);
    // In the phone's own folder, which the agent never reads.
    let log = phone.path("vanish.strace");
    let (mount, strace) = inject(&path, fault, &log);
    let refuses = place.rule == Rule::RefusesPlainly
        && !matches!(fault, Fault::ReadOnlyMount | Fault::FullFileSystem);
    let status = bounded(&phone, &["status", "--json"], strace.as_deref());
    let once = bounded(&phone, &["run", "--once"], strace.as_deref());
    // A hand install: it installs, or says plainly why not (never a hang or a crash).
    let new = phone.sign("site", &[("productivity-suite", now() - DAY, None)]);
    let file = phone.path("new-license.cfg");
    std::fs::write(&file, new).unwrap();
    let install = bounded(
        &phone,
        &["install", file.to_str().unwrap()],
        strace.as_deref(),
    );
    drop(mount);
    if fault == Fault::VanishesMidRead {
        // The fault fired, or this case proved nothing.
        let n = injected(&log);
        if n == 0 {
            let traced = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "no EIO was injected: no second read of {}; strace saw:\n{traced}",
                path.display()
            ));
        }
        INJECTED.with(|c| c.set(n));
    }
    let install_ok = match install.status.code() {
        Some(0) => true,
        Some(1 | 2) => String::from_utf8_lossy(&install.stderr).contains("license-agent"),
        _ => false,
    };
    if !install_ok {
        return Err(format!("install: {}", words(&install)));
    }
    if refuses {
        let named = place.path.rsplit('/').next().unwrap_or(place.path);
        for out in [&status, &once] {
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.code() != Some(2) || !err.contains(named) {
                return Err(format!("expected exit 2 naming {named}: {}", words(out)));
            }
        }
        return Ok("refused plainly (exit 2)".into());
    }
    if status.status.code() != Some(0) {
        return Err(format!("status: {}", words(&status)));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&status.stdout).map_err(|e| format!("status --json: {e}"))?;
    let enabled = report["enabled"].to_string();
    if once.status.code() != Some(0) {
        return Err(format!("run --once: {}", words(&once)));
    }
    // Putting something else in place of the folder that held the stored license took
    // the license away with it: then running on what is left is the rule.
    let replaced = !matches!(
        fault,
        Fault::ReadOnlyMount | Fault::FullFileSystem | Fault::VanishesMidRead
    );
    if replaced && matches!(place.path, "state" | "state/phone") {
        return if enabled.contains(STORED) {
            Err(format!("{STORED} in force without its file: {enabled}"))
        } else {
            Ok(format!("runs on what is left: {enabled}"))
        };
    }
    if !enabled.contains(STORED) {
        return Err(format!("status does not show {STORED} in force: {enabled}"));
    }
    // Published where the features file can be written; where the fault is at the
    // features file (or its folder) itself, the failure is said instead.
    let at_features = place.path.starts_with("run");
    let features_ok = phone.published().iter().any(|f| f == STORED);
    let said = String::from_utf8_lossy(&once.stderr).contains("cannot publish");
    match (at_features, features_ok, said) {
        (_, true, _) => Ok("runs, publishes the stored set".into()),
        (true, false, true) => Ok("runs; publishing fails and is said".into()),
        _ => Err(format!(
            "{STORED} not published: {:?}; {}",
            phone.published(),
            words(&once)
        )),
    }
}

/// Proves: at each place, each fault keeps the rule above; a vanishing file is a case only
/// where the agent reads it, and there only once strace's log shows a read failed with
/// EIO (an injection that never fired breaks the case instead of passing it).
#[test]
fn every_fault_at_every_path() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let mut failures = Vec::new();
    println!("{:<30} {:<16} outcome", "path", "fault");
    let mut slowest = Duration::ZERO;
    let mut cases = 0;
    for place in &PLACES {
        for fault in FAULTS {
            if fault == Fault::VanishesMidRead && !place.reads {
                println!(
                    "{:<30} {:<16} not a case: never read()",
                    place.path,
                    format!("{fault:?}")
                );
                continue;
            }
            cases += 1;
            SLOWEST.with(|s| s.set(Duration::ZERO));
            INJECTED.with(|c| c.set(0));
            let result = case(&pki, place, fault);
            slowest = slowest.max(SLOWEST.with(|s| s.get()));
            let injected = INJECTED.with(|c| c.get());
            let shown = match &result {
                Ok(what) if injected > 0 => format!("{what} ({injected} read(s) failed EIO)"),
                Ok(what) => what.clone(),
                Err(why) => format!("BROKEN: {why}"),
            };
            println!("{:<30} {:<16} {shown}", place.path, format!("{fault:?}"));
            if let Err(why) = result {
                failures.push(format!("{} / {fault:?}: {why}", place.path));
            }
        }
    }
    println!(
        "figure: {cases} cases; the slowest command (status, run --once or install) took {:.2} s",
        slowest.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) broke the rule:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
