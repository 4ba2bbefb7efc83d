//! The interoperability matrix (issue 24): the real binary against every provisioning
//! server set-up a fleet runs, each a real server from Debian started on 127.0.0.1 from
//! a configuration of the test's own ([`test_servers`]): nginx, Apache (mod_dav,
//! mod_ssl), lighttpd (mod_webdav), BusyBox httpd, an HTTP server that sends no
//! validators at all, vsftpd, pure-ftpd (`-x`, anonymous), proftpd (TLS,
//! `AllowOverwrite off`), tftpd-hpa, atftpd and dnsmasq's TFTP. Over every transport
//! each speaks, one daemon goes through:
//!
//! 1. the first fetch (both files accepted);
//! 2. the second fetch (`check-sync`: both downloaded again, found unchanged);
//! 3. a renewal of the site license with the same size and modification time as the
//!    file it replaces, rewritten in place with its time put back (`cp -p`: the same
//!    inode too): taken at the next `check-sync`;
//! 4. another such renewal, taken at the next poll (the license is Expiring Shortly:
//!    the agent checks for a renewal every 2 s here);
//! 5. another, taken at the next boot (the daemon stopped and started again);
//! 6. the phone file removed: absent, and the stored phone license stays in force;
//! 7. the status report: where the server writes, it lands whole under its name with no
//!    temporary file left, after several uploads (the first one and one per change, in
//!    both runs of the daemon); where it does not (a read-only server, TFTP), `status`
//!    says the server takes no uploads.
//!
//! Every set-up runs, whatever the others do; the test then writes the matrix into
//! `docs/testing.md` (between its markers, from the host binary's run) and fails if a
//! cell did.

use crate::common;

use std::any::Any;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::apache::Apache;
use common::atftpd::Atftpd;
use common::bare_httpd::BareHttpd;
use common::busybox_httpd::BusyboxHttpd;
use common::dnsmasq_tftp::DnsmasqTftp;
use common::files;
use common::ftp::{Security, Vsftpd};
use common::lighttpd::Lighttpd;
use common::nginx::{self};
use common::phone::{feature_end, Daemon, Phone, DAY, MAC, PHONE_FILE, SITE_FILE};
use common::pki::Pki;
use common::proftpd::{ProOptions, Proftpd};
use common::pure_ftpd::{PureFtpd, PureOptions};
use common::tftp::Tftpd;
use serde_json::Value;

/// What the server does with the status report.
enum Report {
    /// It writes: the report lands in `dir` (through `url`, or the server's own URL).
    Lands { url: Option<String>, dir: PathBuf },
    /// It takes no uploads (read-only, or TFTP): `status` must say so.
    Refused,
    /// It takes new files only (anonymous pure-ftpd): the first report lands in `dir`,
    /// the later ones fail, and `status` says it took a report before and refuses this
    /// one.
    LandsOnce { dir: PathBuf },
}

/// One server set-up of the matrix.
struct Setup {
    /// The server and how it is set up, for the table.
    server: String,
    /// `http`, `https`, `ftp`, `ftps` or `tftp`.
    transport: &'static str,
    /// The URL the agent fetches from.
    url: String,
    /// More of `[fetch]` (`ca_file`...).
    fetch: String,
    /// The folder the server serves.
    root: PathBuf,
    report: Report,
}

/// A set-up, with its running server and folder (stopped and removed when dropped, on
/// the test's thread).
type Started = (Setup, Box<dyn Any>);

/// One row of the table: each cell's words, and whether each passed.
struct Row {
    server: String,
    transport: &'static str,
    cells: Vec<(String, bool)>,
}

const COLUMNS: [&str; 7] = [
    "first fetch",
    "second fetch",
    "renewal, same size and time: check-sync",
    "… a poll",
    "… a boot",
    "file removed",
    "report upload",
];

/// Writes `bytes` as `root/name`, readable by every server's user.
fn place(root: &Path, name: &str, bytes: &[u8]) {
    let path = root.join(name);
    nginx::put_file(&path, bytes);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

fn outcome(files: &Value, file: &str) -> (String, String) {
    let f = files
        .as_array()
        .and_then(|a| a.iter().find(|f| f["file"] == file))
        .cloned()
        .unwrap_or_default();
    (
        f["outcome"].as_str().unwrap_or("-").to_string(),
        f["detail"].as_str().unwrap_or("").to_string(),
    )
}

fn check_sync(daemon: &Daemon) -> Value {
    daemon.request(r#"{"cmd":"check-sync"}"#)["check_sync"]["files"].clone()
}

/// The files in `dir` other than the report and the licenses: a temporary file left.
fn leftovers(dir: &Path) -> Vec<String> {
    let report = format!("{MAC}-license-status.json");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != &report && n != SITE_FILE && n != PHONE_FILE)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the five steps against `setup`; never panics (a step that fails is a cell).
fn run(setup: &Setup) -> Row {
    let mut cells = Vec::new();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| story(setup, &mut cells)));
    if let Err(panic) = result {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        let why: String = why.chars().take(200).collect();
        cells.push((format!("FAILED: {why}"), false));
    }
    while cells.len() < COLUMNS.len() {
        cells.push(("not reached".into(), false));
    }
    Row {
        server: setup.server.clone(),
        transport: setup.transport,
        cells,
    }
}

fn story(setup: &Setup, cells: &mut Vec<(String, bool)>) {
    let t = common::now();
    let report = match &setup.report {
        Report::Lands { url: Some(url), .. } => format!("report = \"{url}\"\n"),
        _ => "report = true\n".into(),
    };
    let phone = Phone::new(&format!(
        "server = \"{}\"\n{report}enabled_features = [\"vqmon\"]\n[fetch]\n{}\
         connect_timeout = \"3s\"\ntotal_timeout = \"10s\"\n\
         [timing]\nrenewal_check_interval = \"2s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n",
        setup.url, setup.fetch
    ));
    let site = |days: i64| phone.sign("site", &[("vqmon", t - DAY, Some(t + days * DAY))]);
    place(&setup.root, SITE_FILE, &site(10));
    place(
        &setup.root,
        PHONE_FILE,
        &phone.sign("phone", &[("usb-call-recording", t - DAY, None)]),
    );
    let daemon = phone.start(None);

    // 1. The first fetch.
    let files = daemon.status()["daemon"]["files"].clone();
    let (s, p) = (outcome(&files, SITE_FILE), outcome(&files, PHONE_FILE));
    let ok = s.0 == "accepted" && p.0 == "accepted";
    cells.push((both(&s, &p), ok));
    if !ok {
        return;
    }

    // 2. The second fetch: downloaded again, the licenses held.
    let files = check_sync(&daemon);
    let (s, p) = (outcome(&files, SITE_FILE), outcome(&files, PHONE_FILE));
    let ok = s.0 == "unchanged" && p.0 == "unchanged";
    cells.push((both(&s, &p), ok));

    // 3-5. A renewal copied in with the old file's size and time (`cp -p`: the same
    // file rewritten, its time put back, the same inode too), taken at the next
    // check-sync, at a poll nobody asked for, and at a boot.
    let path = setup.root.join(SITE_FILE);
    let renew = |days: i64| {
        let before = std::fs::metadata(&path).unwrap();
        let renewal = site(days);
        assert_eq!(renewal.len() as u64, before.len());
        files::overwrite_same_time(&path, &renewal);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before.modified().unwrap()
        );
    };
    let taken = |daemon: &Daemon, days: i64, within: Duration, how: &str| {
        let end = common::rfc(t + days * DAY);
        let deadline = Instant::now() + within;
        loop {
            let now = feature_end(&daemon.status(), "vqmon");
            if now.as_deref() == Some(end.as_str()) {
                return (format!("taken {how}"), true);
            }
            if Instant::now() > deadline {
                return (
                    format!("not taken {how}: vqmon ends {}", now.unwrap_or_default()),
                    false,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    renew(11);
    let files = check_sync(&daemon);
    let (s, _) = outcome(&files, SITE_FILE);
    let (words, ok) = taken(&daemon, 11, Duration::ZERO, "at check-sync");
    cells.push((format!("{s}: {words}"), ok && s == "accepted"));
    renew(12);
    cells.push(taken(&daemon, 12, Duration::from_secs(20), "at a poll"));
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    renew(13);
    let daemon = phone.start(None);
    cells.push(taken(&daemon, 13, Duration::from_secs(20), "at a boot"));

    // 6. The phone file removed.
    std::fs::remove_file(setup.root.join(PHONE_FILE)).unwrap();
    let files = check_sync(&daemon);
    let (p, detail) = outcome(&files, PHONE_FILE);
    let enabled = daemon.status()["enabled"].clone();
    let ok = p == "absent"
        && enabled
            .as_array()
            .is_some_and(|e| e.iter().any(|f| f == "usb-call-recording"));
    let answer = detail.split(": not on the server").next().unwrap_or("");
    // Without the server's port (a new one each run).
    let answer = answer
        .split(" from 127.0.0.1:")
        .next()
        .unwrap_or(answer)
        .replace(&format!("{}/", setup.root.display()), "");
    cells.push((format!("{p} ({answer}); kept"), ok));

    // 7. The report (one upload per change: several by now, over two runs).
    // Settled: no upload under way, and either one failing (after its first try) or
    // none waiting.
    let settled = daemon.wait_status("the report settled", |s| {
        s["daemon"]["report"].as_str().is_some_and(|r| {
            !r.contains("under way")
                && (r.contains("failing") || (!r.contains("waits") && !r.contains("not sent yet")))
        })
    });
    let words = settled["daemon"]["report"]
        .as_str()
        .unwrap_or("")
        .to_string();
    match &setup.report {
        Report::Lands { dir, .. } => {
            let sent = std::fs::read(dir.join(format!("{MAC}-license-status.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            let left = leftovers(dir);
            let ok = !words.contains("failing")
                && sent.as_ref().is_some_and(|r| r["mac"] == MAC)
                && left.is_empty();
            let how = words
                .split_once("; ")
                .map(|(_, tried)| tried.trim_end_matches(')').to_string());
            let cell = match (&how, left.is_empty()) {
                (_, false) => format!("left behind: {}", left.join(", ")),
                (None, true) => "lands".to_string(),
                (Some(how), true) => format!("lands ({})", short(how)),
            };
            let cell = match (ok, left.is_empty()) {
                (false, true) => words.clone(),
                _ => cell,
            };
            cells.push((cell, ok));
        }
        Report::LandsOnce { dir } => {
            let sent = std::fs::read(dir.join(format!("{MAC}-license-status.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            let left = leftovers(dir);
            let ok = words.contains("the server took a report before, and refuses this one")
                && sent.as_ref().is_some_and(|r| r["mac"] == MAC)
                && left.is_empty();
            let cell = if ok {
                "the first lands (in place); the next ones refused, said (no overwrite)".to_string()
            } else {
                format!("{words}; left {left:?}")
            };
            cells.push((cell, ok));
        }
        Report::Refused => {
            let ok = words.starts_with("off:");
            cells.push((
                if ok {
                    "takes no uploads (said)".into()
                } else {
                    words.clone()
                },
                ok,
            ));
        }
    }
}

fn both(site: &(String, String), phone: &(String, String)) -> String {
    if site.0 == phone.0 {
        format!("both {}", site.0)
    } else {
        format!("site {}, phone {}", site.0, phone.0)
    }
}

/// What was tried, short enough for a cell: each step with the server's reply code but
/// not its words, the report's name as `R`.
fn short(how: &str) -> String {
    how.replace(&format!("{MAC}-license-status.json"), "R")
        .split("; ")
        .map(|step| match step.split_once(": ") {
            Some((what, reply)) => format!("{what}: {}", reply.get(..3).unwrap_or(reply)),
            None => step.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn work() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn ca(pki: &Pki) -> String {
    format!("ca_file = \"{}\"\n", pki.ca_pem.display())
}

fn nginx_setups() -> Vec<Started> {
    let mut setups: Vec<Started> = Vec::new();
    for https in [false, true] {
        let work = work();
        let (pki, server) = common::web_server(work.path());
        let root = server.root.clone();
        let (url, fetch, transport) = if https {
            (server.https_url(), ca(&pki), "https")
        } else {
            (server.http_url(), String::new(), "http")
        };
        // Uploads go to the endpoint with Basic authentication and WebDAV PUT.
        let report_url = server.basic_url().replacen(
            "://",
            &format!("://{}:{}@", nginx::BASIC_USER, nginx::BASIC_PASSWORD),
            1,
        );
        setups.push((
            Setup {
                server: format!("nginx {}", version("nginx")),
                transport,
                url,
                fetch,
                report: Report::Lands {
                    url: Some(report_url),
                    dir: root.clone(),
                },
                root,
            },
            Box::new((server, work)),
        ));
    }
    setups
}

fn vsftpd_setups() -> Vec<Started> {
    let mut setups: Vec<Started> = Vec::new();
    for tls in [false, true] {
        let work = work();
        let pki = Pki::new(&work.path().join("pki"));
        let security = if tls {
            Security::Tls {
                cert: &pki.server_cert,
                key: &pki.server_key,
            }
        } else {
            Security::Plain
        };
        let server = Vsftpd::start(work.path(), security, "write_enable=YES\n");
        server.allow_uploads();
        let root = server.root.clone();
        setups.push((
            Setup {
                server: format!("vsftpd {}", version("vsftpd")),
                transport: if tls { "ftps" } else { "ftp" },
                url: server.url(),
                fetch: if tls { ca(&pki) } else { String::new() },
                report: Report::Lands {
                    url: None,
                    dir: root.clone(),
                },
                root,
            },
            Box::new((server, work)),
        ));
    }
    setups
}

/// Apache (mod_dav, mod_ssl; `ETag` "size-mtime") and lighttpd (mod_webdav,
/// mod_openssl; `ETag` a hash of inode, mtime and size), each over HTTP and HTTPS, taking
/// the report by `PUT` into the folder served.
fn apache_and_lighttpd_setups() -> Vec<Started> {
    let mut setups: Vec<Started> = Vec::new();
    for lighttpd in [false, true] {
        for https in [false, true] {
            let work = work();
            let pki = Pki::new(&work.path().join("pki"));
            let root = work.path().join("root");
            std::fs::create_dir_all(&root).unwrap();
            let (server, label, urls): (Box<dyn Any>, String, (String, String)) = if lighttpd {
                let s = Lighttpd::start(&root, &pki);
                let urls = (s.http_url(), s.https_url());
                (
                    Box::new(s),
                    format!("lighttpd {} (mod_webdav)", version("lighttpd")),
                    urls,
                )
            } else {
                let s = Apache::start(&root, &pki);
                let urls = (s.http_url(), s.https_url());
                (
                    Box::new(s),
                    format!("Apache {} (mod_dav, mod_ssl)", version("apache2")),
                    urls,
                )
            };
            let (url, fetch, transport) = if https {
                (urls.1, ca(&pki), "https")
            } else {
                (urls.0, String::new(), "http")
            };
            setups.push((
                Setup {
                    server: label.clone(),
                    transport,
                    url,
                    fetch,
                    report: Report::Lands {
                        url: None,
                        dir: root.clone(),
                    },
                    root,
                },
                Box::new((server, work)),
            ));
        }
    }
    setups
}

/// BusyBox httpd: read-only (`PUT` is 501), `ETag` "mtime-size".
fn busybox_setup() -> Started {
    let work = work();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = BusyboxHttpd::start(&root);
    (
        Setup {
            server: format!("BusyBox {} httpd (read-only)", version("busybox")),
            transport: "http",
            url: server.http_url(),
            fetch: String::new(),
            report: Report::Refused,
            root,
        },
        Box::new((server, work)),
    )
}

/// An HTTP server that sends no validators at all (and takes `PUT`).
fn bare_setup() -> Started {
    let work = work();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = BareHttpd::start(&root);
    (
        Setup {
            server: "no validators at all (the tests' own)".into(),
            transport: "http",
            url: server.http_url(),
            fetch: String::new(),
            report: Report::Lands {
                url: None,
                dir: server.root.clone(),
            },
            root: server.root.clone(),
        },
        Box::new((server, work)),
    )
}

/// The version of Debian package `pkg`: the one unpacked beside the installed servers
/// (`scripts/setup-servers.sh`), else the one installed.
fn version(pkg: &str) -> String {
    let unpacked = format!("/opt/license-agent-servers/{pkg}/.version");
    if let Ok(v) = std::fs::read_to_string(unpacked) {
        return v.trim().to_string();
    }
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output();
    out.ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// Pure-FTPd as a user (plain and TLS), with `-x` (no dot names), and anonymous (new
/// files only: no rename, overwrite or delete).
fn pure_ftpd_setups() -> Vec<Started> {
    let mut setups: Vec<Started> = Vec::new();
    let v = version("pure-ftpd");
    for (label, tls, dots, anonymous) in [
        ("", false, false, false),
        (", TLS required", true, false, false),
        (", -x (no dot names)", false, true, false),
        (", anonymous", false, false, true),
    ] {
        let work = work();
        let pki = Pki::new(&work.path().join("pki"));
        let server = PureFtpd::start(
            work.path(),
            PureOptions {
                tls: tls.then_some((pki.server_cert.as_path(), pki.server_key.as_path())),
                refuse_dot_files: dots,
                anonymous,
            },
        );
        server.allow_uploads();
        let root = server.root.clone();
        let report = if anonymous {
            Report::LandsOnce { dir: root.clone() }
        } else {
            Report::Lands {
                url: None,
                dir: root.clone(),
            }
        };
        setups.push((
            Setup {
                server: format!("pure-ftpd {v}{label}"),
                transport: if tls { "ftps" } else { "ftp" },
                url: server.url(),
                fetch: if tls { ca(&pki) } else { String::new() },
                report,
                root,
            },
            Box::new((server, work)),
        ));
    }
    setups
}

/// ProFTPD plain, with TLS required (mod_tls), and with `AllowOverwrite off`.
fn proftpd_setups() -> Vec<Started> {
    let mut setups: Vec<Started> = Vec::new();
    let v = version("proftpd-core");
    for (label, tls, overwrite) in [
        ("", false, true),
        (", TLS required (mod_tls)", true, true),
        (", AllowOverwrite off", false, false),
    ] {
        let work = work();
        let pki = Pki::new(&work.path().join("pki"));
        let server = Proftpd::start(
            work.path(),
            ProOptions {
                tls: tls.then_some((pki.server_cert.as_path(), pki.server_key.as_path())),
                allow_overwrite: overwrite,
            },
        );
        server.allow_uploads();
        let root = server.root.clone();
        setups.push((
            Setup {
                server: format!("proftpd {v}{label}"),
                transport: if tls { "ftps" } else { "ftp" },
                url: server.url(),
                fetch: if tls { ca(&pki) } else { String::new() },
                report: Report::Lands {
                    url: None,
                    dir: root.clone(),
                },
                root,
            },
            Box::new((server, work)),
        ));
    }
    setups
}

/// atftpd, and dnsmasq's TFTP (on port 69: one at a time, machine-wide).
fn other_tftp_setups() -> Vec<Started> {
    let work_a = work();
    let atftpd = Atftpd::start(&work_a.path().join("tftp"));
    let work_d = work();
    let dnsmasq = DnsmasqTftp::start(work_d.path());
    vec![
        (
            Setup {
                server: format!("atftpd {}", version("atftpd")),
                transport: "tftp",
                url: atftpd.url(),
                fetch: String::new(),
                root: atftpd.root.clone(),
                report: Report::Refused,
            },
            Box::new((atftpd, work_a)),
        ),
        (
            Setup {
                server: format!("dnsmasq {} (TFTP)", version("dnsmasq-base")),
                transport: "tftp",
                url: dnsmasq.url(),
                fetch: String::new(),
                root: dnsmasq.root.clone(),
                report: Report::Refused,
            },
            Box::new((dnsmasq, work_d)),
        ),
    ]
}

fn tftpd_hpa_setup() -> Started {
    let work = work();
    let server = Tftpd::start(&work.path().join("tftp"), &[]);
    (
        Setup {
            server: format!("tftpd-hpa {}", version("tftpd-hpa")),
            transport: "tftp",
            url: server.url(),
            fetch: String::new(),
            root: server.root.clone(),
            report: Report::Refused,
        },
        Box::new((server, work)),
    )
}

/// Every set-up, each started on a thread of its own; every story run at most 4 at a
/// time.
#[test]
fn every_server_of_the_matrix_serves_renewals_and_takes_reports() {
    let mut setups = Vec::new();
    setups.extend(nginx_setups());
    setups.extend(vsftpd_setups());
    setups.extend(apache_and_lighttpd_setups());
    setups.push(busybox_setup());
    setups.push(bare_setup());
    setups.extend(pure_ftpd_setups());
    setups.extend(proftpd_setups());
    setups.push(tftpd_hpa_setup());
    setups.extend(other_tftp_setups());

    // The servers stay on this thread; the stories see the rest.
    let (setups, _servers): (Vec<Setup>, Vec<Box<dyn Any>>) = setups.into_iter().unzip();
    let rows: Vec<Row> = setups
        .chunks(4)
        .flat_map(|chunk| {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk.iter().map(|s| scope.spawn(move || run(s))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let table = table(&rows);
    if std::env::var_os("LICENSE_AGENT_BIN").is_none() {
        write_table(&table);
    }
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.cells
                .iter()
                .filter(|(_, ok)| !ok)
                .map(move |(words, _)| format!("{} {}: {words}", r.server, r.transport))
        })
        .collect();
    assert!(failed.is_empty(), "{table}\n{}", failed.join("\n"));
}

/// The matrix as a Markdown table (a failed cell is marked **FAILED**).
fn table(rows: &[Row]) -> String {
    let mut out = format!("| server | transport | {} |\n", COLUMNS.join(" | "));
    out.push_str(&format!("|---|---|{}\n", "---|".repeat(COLUMNS.len())));
    for row in rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|(words, ok)| {
                let words = words.replace('|', "\\|").replace('\n', " ");
                if *ok {
                    words
                } else {
                    format!("**FAILED** {words}")
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.server,
            row.transport,
            cells.join(" | ")
        );
    }
    out
}

const BEGIN: &str = "<!-- interop matrix: written by tests/it/interop.rs, do not edit -->";
const END: &str = "<!-- end of the interop matrix -->";

/// Rewrites the matrix in `docs/testing.md`, between its markers.
fn write_table(table: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/testing.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        return;
    };
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/testing.md has no interop matrix markers ({BEGIN} ... {END})");
    };
    let written = format!("{}{BEGIN}\n\n{table}\n{}", &doc[..begin], &doc[end..]);
    if written != doc {
        std::fs::write(&path, written).unwrap();
    }
}
