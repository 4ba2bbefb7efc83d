//! The provisioning server found as a phone finds it (`[provisioning]`, issue 27), with
//! the real binary and real servers: the lease file written as the DHCP hook writes it
//! (`firmware/README.md`), nginx and vsftpd serving master files, license folders and
//! log folders. The DHCP clients themselves, with a real dnsmasq, are in
//! `dhcp_hooks.rs` and, on the emulated phone, `phone_dhcp.rs`.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ftp::{Security, Vsftpd};
use common::nginx::{BASIC_PASSWORD, BASIC_USER};
use common::now;
use common::phone::{Daemon, Phone, DAY};
use serde_json::Value;

const MAC: &str = "0004f2000001";
const REPORT: &str = "0004f2000001-license-status.json";
const SITE_FILE: &str = "000000000000-license.cfg";

/// Writes the lease as the hook does: options as hex, replaced atomically.
fn write_lease(path: &Path, options: &[(u8, &[u8])]) {
    let mut text = String::from("# license-agent DHCP lease (test)\nformat=1\nevent=bound\n");
    for (n, value) in options {
        text.push_str(&format!("option{n}=hex:{}\n", hex::encode(value)));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `check-sync` with the command line, as the hook nudges the daemon.
fn check_sync(phone: &Phone) -> String {
    let out = common::run(
        common::agent(),
        [
            "check-sync".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ],
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn provisioning(status: &Value) -> &Value {
    &status["daemon"]["provisioning"]
}

fn wait_for_file(path: &Path, daemon: &Daemon) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            if !bytes.is_empty() {
                return bytes;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never came: {:#}",
            path.display(),
            daemon.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The whole story of a DHCP phone, without a restart: option 160 names an HTTP server
/// with credentials in the URL, whose master file sends the licenses to `lic/` and the
/// reports to `logs/`; a renewed lease names an FTP server by a bare address in option
/// 66 (no master file there: its root); a lease without options keeps the remembered
/// one; a hostile value is refused with a clear note and the last good server kept;
/// the remembered one down, the static one answers. No password is ever shown.
#[test]
fn the_server_dhcp_names_is_followed_folder_by_folder_without_a_restart() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let ftp_work = tempfile::tempdir().unwrap();
    let ftp = Vsftpd::start(ftp_work.path(), Security::Plain, "write_enable=YES\n");
    ftp.allow_uploads();
    let fallback = tempfile::tempdir().unwrap();

    let phone = Phone::new("");
    let www = work.path().join("www");
    std::fs::create_dir_all(www.join("lic")).unwrap();
    std::fs::create_dir_all(www.join("logs")).unwrap();
    std::fs::write(
        www.join(format!("{MAC}.cfg")),
        "<?xml version=\"1.0\"?>\n<APPLICATION APP_FILE_PATH=\"sip.ld\" \
         LICENSE_DIRECTORY=\"lic\" LOG_FILE_DIRECTORY=\"logs\" CONFIG_FILES=\"\"/>\n",
    )
    .unwrap();
    // The root holds a license the phone must not take: the master file says lic/.
    std::fs::write(
        www.join(SITE_FILE),
        phone.sign("site", &[("h323", t - DAY, None)]),
    )
    .unwrap();
    std::fs::write(
        www.join("lic").join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, None)]),
    )
    .unwrap();
    ftp.put(SITE_FILE, &phone.sign("site", &[("lync", t - DAY, None)]));
    std::fs::write(
        fallback.path().join(SITE_FILE),
        phone.sign("site", &[("usb-call-recording", t - DAY, None)]),
    )
    .unwrap();

    let lease = phone.path("dhcp");
    let basic = nginx
        .basic_url()
        .replace("http://", &format!("http://{BASIC_USER}:{BASIC_PASSWORD}@"));
    write_lease(
        &lease,
        &[(160, basic.as_bytes()), (66, b"not-used.invalid")],
    );
    phone.configure(&format!(
        "server = \"file://{}/\"\nreport = true\n\
         [provisioning]\nsource = \"dhcp\"\ndhcp_file = \"dhcp\"\n\
         [fetch]\nusername = \"{}\"\npassword = \"{}\"\ntotal_timeout = \"5s\"\n\
         connect_timeout = \"2s\"\n[timing]\nretry_initial = \"1h\"\nretry_max = \"1h\"\n",
        fallback.path().display(),
        common::ftp::USER,
        common::ftp::PASSWORD,
    ));
    let daemon = phone.start(None);
    let pid = daemon.child.id();

    // 1. Option 160, its master file: licenses from lic/, the report into logs/.
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "dhcp option 160", "{status:#}");
    assert_eq!(p["server"], nginx.basic_url().as_str());
    assert_eq!(status["daemon"]["server"], nginx.basic_url().as_str());
    assert_eq!(p["licenses"], format!("{}lic/", nginx.basic_url()));
    assert_eq!(p["logs"], format!("{}logs/", nginx.basic_url()));
    assert_eq!(phone.published(), ["vqmon"]);
    let report = wait_for_file(&www.join("logs").join(REPORT), &daemon);
    assert!(report.starts_with(b"{"));
    // nginx logs a request once answered: the report's may come a moment after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nginx.uploads().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked: Vec<String> = nginx
        .access_entries()
        .iter()
        .chain(&nginx.uploads())
        .map(|e| format!("{} {} {}", e.method, e.path, e.status))
        .collect();
    for expected in [
        format!("GET /{MAC}.cfg 200"),
        format!("GET /lic/{SITE_FILE} 200"),
        format!("PUT /logs/{REPORT} 201"),
    ] {
        assert!(asked.contains(&expected), "{expected} not in {asked:#?}");
    }
    assert!(!asked
        .iter()
        .any(|a| a.starts_with(&format!("GET /{SITE_FILE}"))));

    // 2. The lease renewed with another server, by a bare address in option 66: the
    // nudge is enough, no restart.
    write_lease(
        &lease,
        &[(66, format!("127.0.0.1:{}", ftp.port).as_bytes())],
    );
    check_sync(&phone);
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "dhcp option 66", "{status:#}");
    assert_eq!(p["server"], ftp.shown_url().as_str());
    assert_eq!(p["licenses"], ftp.shown_url().as_str());
    assert!(p["master"].as_str().unwrap().starts_with("none ("), "{p:#}");
    assert_eq!(phone.published(), ["lync"]);
    wait_for_file(&ftp.root.join(REPORT), &daemon);

    // 3. DHCP gives nothing: the remembered server.
    write_lease(&lease, &[]);
    check_sync(&phone);
    let status = daemon.status();
    assert_eq!(provisioning(&status)["origin"], "remembered", "{status:#}");
    assert_eq!(provisioning(&status)["server"], ftp.shown_url().as_str());
    assert_eq!(phone.published(), ["lync"]);

    // 4. A hostile value: refused, said, and the last good server kept.
    write_lease(&lease, &[(160, b"https://evil/\x1b[2J\nserver=x")]);
    check_sync(&phone);
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "remembered", "{status:#}");
    let notes = p["notes"].to_string();
    assert!(
        notes.contains("DHCP option 160 refused: byte 13 is 0x1b"),
        "{notes}"
    );
    let text = common::stdout(&common::run(
        common::agent(),
        [
            "status".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ],
    ));
    assert!(text.contains("(remembered; source dhcp)"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");

    // 5. The remembered server gone: the static one.
    drop(ftp);
    check_sync(&phone);
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "static", "{status:#}");
    assert_eq!(
        p["server"],
        format!("file://{}/", fallback.path().display())
    );
    assert_eq!(phone.published(), ["usb-call-recording"]);
    assert_eq!(daemon.child.id(), pid);

    // Never a password: not in the status, not in the log.
    let (_, log) = daemon.stop();
    for secret in [BASIC_PASSWORD, common::ftp::PASSWORD] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(
            !status.to_string().contains(secret),
            "{secret} in {status:#}"
        );
    }
    let meta = std::fs::read_to_string(phone.path("state/meta.json")).unwrap();
    assert!(!meta.contains(BASIC_PASSWORD), "{meta}");
}

/// The remembered server outlives a restart: a phone booting without DHCP options goes
/// to the server that answered last, and `status` says so before and after the boot
/// fetch; a name that does not resolve is a failure of that server, and the one
/// remembered answers.
#[test]
fn a_restart_without_a_lease_goes_to_the_remembered_server() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (pki, nginx) = common::web_server(work.path());
    let www = work.path().join("www");
    let phone = Phone::new("");
    std::fs::write(
        www.join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, None)]),
    )
    .unwrap();
    let lease = phone.path("dhcp");
    write_lease(&lease, &[(160, nginx.https_url().as_bytes())]);
    phone.configure(&format!(
        "[provisioning]\nsource = \"dhcp\"\ndhcp_file = \"dhcp\"\n\
         [fetch]\nca_file = \"{}\"\ntotal_timeout = \"5s\"\nconnect_timeout = \"2s\"\n",
        pki.ca_pem.display()
    ));
    let daemon = phone.start(None);
    let status = daemon.status();
    assert_eq!(
        provisioning(&status)["origin"],
        "dhcp option 160",
        "{status:#}"
    );
    assert_eq!(phone.published(), ["vqmon"]);
    daemon.stop();

    // A name that does not resolve in option 66: that server fails, the remembered one
    // answers.
    write_lease(&lease, &[(66, b"no-such-host.invalid")]);
    let daemon = phone.start(None);
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "remembered", "{status:#}");
    assert_eq!(p["server"], nginx.https_url().as_str());
    assert!(
        p["notes"].to_string().contains("no-such-host.invalid"),
        "{p:#}"
    );
    assert_eq!(phone.published(), ["vqmon"]);
    daemon.stop();
    // No lease at all: the remembered one again.
    std::fs::remove_file(&lease).unwrap();
    let daemon = phone.start(None);
    assert_eq!(provisioning(&daemon.status())["origin"], "remembered");
}

/// A SIGHUP forgets the credentials of the server DHCP named (the URL's user info, kept
/// in memory only): the remembered server is then asked without them, and a lease that
/// no longer names it sends the phone to the static list, in the same process, where
/// the same lease without the SIGHUP keeps the remembered server.
#[test]
fn a_sighup_keeps_the_credentials_of_the_server_dhcp_named() {
    let t = now();
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let fallback = tempfile::tempdir().unwrap();
    let phone = Phone::new("");
    let www = work.path().join("www");
    std::fs::write(
        www.join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, None)]),
    )
    .unwrap();
    std::fs::write(
        fallback.path().join(SITE_FILE),
        phone.sign("site", &[("usb-call-recording", t - DAY, None)]),
    )
    .unwrap();
    let lease = phone.path("dhcp");
    let basic = nginx
        .basic_url()
        .replace("http://", &format!("http://{BASIC_USER}:{BASIC_PASSWORD}@"));
    write_lease(&lease, &[(160, basic.as_bytes())]);
    phone.configure(&format!(
        "server = \"file://{}/\"\n\
         [provisioning]\nsource = \"dhcp\"\ndhcp_file = \"dhcp\"\n\
         [fetch]\ntotal_timeout = \"5s\"\nconnect_timeout = \"2s\"\n",
        fallback.path().display(),
    ));
    let daemon = phone.start(None);
    let status = daemon.status();
    assert_eq!(
        provisioning(&status)["origin"],
        "dhcp option 160",
        "{status:#}"
    );
    assert_eq!(phone.published(), ["vqmon"]);

    // The configuration read again, unchanged; then a lease without the option.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    write_lease(&lease, &[]);
    check_sync(&phone);
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "remembered", "{status:#}");
    assert_eq!(p["server"], nginx.basic_url().as_str(), "{status:#}");
    assert_eq!(phone.published(), ["vqmon"]);
}

/// A DHCP-named server that accepts and never answers the master file: the loop is not
/// held (`status` answers at once while the boot cycle waits), the stored license is
/// published all the same once the cycle gives up, and the static server answers the
/// same cycle.
#[test]
fn a_master_file_that_never_comes_holds_nothing() {
    use common::faults::{Fault, FaultServer};
    let t = now();
    let stall = FaultServer::start(Fault::Stall);
    let fallback = tempfile::tempdir().unwrap();
    let phone = Phone::new("");
    std::fs::write(
        fallback.path().join(SITE_FILE),
        phone.sign("site", &[("vqmon", t - DAY, None)]),
    )
    .unwrap();
    phone.install(&phone.sign("phone", &[("lync", t - DAY, None)]));
    let lease = phone.path("dhcp");
    write_lease(&lease, &[(160, stall.url().as_bytes())]);
    phone.configure(&format!(
        "server = \"file://{}/\"\n[provisioning]\nsource = \"dhcp\"\ndhcp_file = \"dhcp\"\n\
         [fetch]\ntotal_timeout = \"3s\"\nconnect_timeout = \"1s\"\n",
        fallback.path().display()
    ));
    let child = phone.spawn(None);
    // The control socket answers while the master file hangs.
    let socket = phone.path("control.sock");
    let started = Instant::now();
    let mut answered_while_fetching = false;
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
            let mut answer = String::new();
            if s.read_to_string(&mut answer).is_ok() && answer.contains("\"fetching\":true") {
                answered_while_fetching = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        answered_while_fetching,
        "status never answered during the stalled fetch"
    );
    let daemon = phone.attach(child);
    let status = daemon.status();
    let p = provisioning(&status);
    assert_eq!(p["origin"], "static", "{status:#}");
    assert!(p["notes"].to_string().contains("did not answer"), "{p:#}");
    let mut published = phone.published();
    published.sort();
    assert_eq!(published, ["lync", "vqmon"]);
    assert!(stall.connections() >= 1);
}
