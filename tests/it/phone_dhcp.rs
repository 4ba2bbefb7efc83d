//! The emulated phone follows its provisioning server from DHCP (issue 27): the phone
//! of `tests/it/phone.rs` on a wire of the test's own (`Lab::with_dhcp`: a network
//! namespace with a tap device, a real dnsmasq giving the lease, the DNS and options 66
//! and 160, nginx and vsftpd on the namespace's 10.77.0.1-3), its BusyBox udhcpc running
//! the shipped hook (`firmware/dhcp/udhcpc-license-agent`), which writes
//! `/run/license-agent/dhcp`, and the agent configured with `[provisioning] source =
//! "dhcp"` and a static server as the fallback.
//!
//! Each test asserts on the phone's own account, `license-agent status --json` (its
//! daemon's `provisioning` object: `server`, `origin`, `licenses`, `logs`), on the features it
//! publishes, and on the servers' own logs (nginx's access log, vsftpd's log): which
//! server, which folder, which file was asked for.
//!
//! Needs the image (`scripts/phone-image.sh`) and root (`ip netns`), so its tests are
//! `#[ignore]`d in a plain `cargo test`: `scripts/phone-check.sh` runs them with
//! `--ignored`.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::ftp::{Security, Vsftpd, PASSWORD, USER};
use common::nginx::Nginx;
use common::vm::{image_agent_toml, Lab, Vm, MAC};
use common::{now, rfc};
use test_servers::dnsmasq_dhcp::text_option;
use test_servers::netns::SERVER;

const DAY: i64 = 86_400;
const PHONE_FILE: &str = "0004f2000001-license.cfg";
/// The phone's master configuration file (`<mac>.cfg`).
const MASTER_FILE: &str = "0004f2000001.cfg";
/// The status report the agent uploads (`<mac>-license-status.json`).
const REPORT_FILE: &str = "0004f2000001-license-status.json";
/// The FTP server's name in option 66, resolved by dnsmasq's DNS (10.77.0.1).
const FTP_HOST: &str = "boot.lab.test";
/// The static server of the phone's agent.toml: the fallback when DHCP names none and
/// the remembered one does not answer (the lab's nginx, in a folder of its own).
const STATIC_SERVER: &str = "https://10.77.0.1/static/";
/// How long the phone may take to follow a change (a fetch cycle on a loaded machine).
const FOLLOW: Duration = Duration::from_secs(120);

/// The image's deployment with the provisioning server from DHCP: `[provisioning]
/// source = "dhcp"` with its defaults (custom option 160 then option 66, FTP for a bare
/// host name, the master file read), the FTP login in `[fetch]`, and [`STATIC_SERVER`]
/// as the static server.
fn dhcp_agent_toml() -> String {
    let image = image_agent_toml();
    let server = "server = \"https://prov.example.test/\"";
    assert!(
        image.contains(server) && image.contains("\n[fetch]\n"),
        "the image's agent.toml changed shape:\n{image}"
    );
    let mut toml = image
        .replace(
            server,
            &format!("server = [\"{STATIC_SERVER}\"]   # the static server: the fallback"),
        )
        .replacen(
            "\n[fetch]\n",
            &format!(
                "\n[fetch]\nusername = \"{USER}\"   # the FTP server's login\npassword = \"{PASSWORD}\"\n"
            ),
            1,
        );
    toml.push_str(
        "\n[provisioning]\n\
         source = \"dhcp\"\n\
         # dhcp_option default \"custom-then-66\", custom_option default 160, server_type\n\
         # default \"ftp\", master_config default true in dhcp mode\n",
    );
    toml
}

/// A `--feature` argument of `license-issuer sign`.
fn feature(name: &str, start: i64, end: Option<i64>) -> String {
    let end = end.map_or_else(|| "never".to_string(), rfc);
    format!("{name},new,{},{end}", rfc(start))
}

/// A master configuration file whose `APPLICATION` element names the license and log
/// folders, as the vendor's phones read it.
fn master_file(licenses: &str, logs: &str) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"yes\"?>\n<!-- the phone's master configuration -->\n\
         <APPLICATION APP_FILE_PATH=\"sip.ld\" CONFIG_FILES=\"phone.cfg\" \
         LICENSE_DIRECTORY=\"{licenses}\" LOG_FILE_DIRECTORY=\"{logs}\"/>\n"
    )
}

/// Polls `check` every half second until it gives a value, at most `timeout`; fails
/// with what the phone says of itself.
fn wait_until<T>(
    vm: &mut Vm,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&mut Vm) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check(vm) {
            return value;
        }
        if Instant::now() > deadline {
            panic!("never {what} within {timeout:?}\n{}", why(vm));
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The phone's own account of itself, for a failure.
fn why(vm: &mut Vm) -> String {
    let mut out = String::new();
    for command in [
        "license-agent status",
        "cat /run/license-agent/dhcp",
        "ip -4 addr show dev eth0; ip route; cat /etc/resolv.conf",
        "logread | tail -n 60",
    ] {
        let text = vm
            .try_sh(command, Duration::from_secs(20))
            .map(|(_, text)| text)
            .unwrap_or_else(|e| e);
        out.push_str(&format!("-- {command} --\n{text}\n"));
    }
    format!("{out}{}", vm.diagnostics())
}

/// `license-agent status --json` on the phone.
fn status(vm: &mut Vm) -> Value {
    let text = vm.sh("license-agent status --json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json: {e}:\n{text}"))
}

/// The running daemon's `provisioning` object (`status --json`: `daemon.provisioning`),
/// once its `origin` is `origin`, its `server` satisfies `server` and no fetch cycle is
/// under way.
fn wait_provisioning(
    vm: &mut Vm,
    what: &str,
    origin: &str,
    server: impl Fn(&str) -> bool,
) -> Value {
    wait_until(vm, FOLLOW, what, |vm| {
        let (code, text) = vm
            .try_sh("license-agent status --json", Duration::from_secs(30))
            .ok()?;
        let value: Value = serde_json::from_str(&text).ok().filter(|_| code == 0)?;
        let p = &value["daemon"]["provisioning"];
        (p["origin"] == origin
            && server(p["server"].as_str()?)
            && value["daemon"]["fetching"] != true)
            .then(|| p.clone())
    })
}

/// The end of the phone's `vqmon` in a status (RFC 3339), if it has one.
fn vqmon_end(status: &Value) -> Option<String> {
    status["features"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == "vqmon")
        .and_then(|f| f["end"].as_str())
        .map(str::to_string)
}

/// Waits until the agent answers on its control socket; its process id.
fn wait_agent(vm: &mut Vm) -> u32 {
    wait_until(vm, FOLLOW, "the agent answering", |vm| {
        if !vm.agent_answers() {
            return None;
        }
        let (_, pid) = vm
            .try_sh("cat /run/license-agent.child.pid", Duration::from_secs(10))
            .ok()?;
        pid.trim().parse().ok()
    })
}

/// The agent's process id now.
fn agent_pid(vm: &mut Vm) -> u32 {
    let out = vm.sh("cat /run/license-agent.child.pid");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no agent pid: {out:?}"))
}

/// Boots the phone (the lease comes first: rcS waits for it), sets its clock (the SNTP
/// stand-in) and waits for the agent; its process id.
fn boot(vm: &mut Vm, clock: i64) -> u32 {
    vm.wait_boot();
    vm.set_clock(clock);
    wait_agent(vm)
}

/// The hook's file on the phone, `key=value` lines.
fn lease_file(vm: &mut Vm) -> String {
    vm.sh("cat /run/license-agent/dhcp")
}

/// `value` as the hook writes it: lower-case hex of its bytes.
fn hex(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The paths nginx served with `status`, in order.
fn served(nginx: &Nginx, status: u16) -> Vec<String> {
    nginx
        .access_entries()
        .iter()
        .filter(|e| e.status == status)
        .map(|e| e.path.clone())
        .collect()
}

/// vsftpd's log: with `xferlog_enable` and `log_ftp_protocol`, every command and every
/// transfer (`OK DOWNLOAD: Client "10.77.0.50", "/0004f2000001-license.cfg", ...`).
fn ftp_log(work: &Path) -> String {
    fs::read_to_string(work.join("vsftpd.log")).unwrap_or_default()
}

/// Whether vsftpd's log has a transfer `what` (`OK DOWNLOAD`, `OK UPLOAD`) of `path` (in
/// the served folder) for the phone (a client of the lease range, 10.77.0.x).
fn ftp_did(log: &str, what: &str, path: &str) -> bool {
    log.lines().any(|line| {
        line.contains(&format!("{what}: Client \"10.77.0."))
            && line.contains(&format!("\"{path}\""))
    })
}

/// Waits until `file` is on the FTP server (an upload of the phone's; `work` is the
/// server's folder, for its log).
fn wait_file(vm: &mut Vm, file: &Path, work: &Path) {
    let deadline = Instant::now() + FOLLOW;
    while !file.is_file() {
        assert!(
            Instant::now() < deadline,
            "no {} on the FTP server:\n{}\n{}",
            file.display(),
            ftp_log(work),
            why(vm)
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// vsftpd on 10.77.0.1:21 in the lab's namespace, serving `work/root` to [`USER`],
/// taking uploads (the status reports) and logging every command and transfer.
fn ftp_server(lab: &Lab, work: &Path) -> Vsftpd {
    let dhcp = lab.dhcp.as_ref().expect("a DHCP lab");
    let server = dhcp.run(|| {
        Vsftpd::start_on(
            work,
            Security::Plain,
            "write_enable=YES\nxferlog_enable=YES\nlog_ftp_protocol=YES\n",
            SERVER,
            Some(21),
        )
    });
    server.allow_uploads();
    server
}

/// A folder on the FTP server that [`USER`] may write in (the report folder).
fn ftp_folder(server: &Vsftpd, name: &str) -> PathBuf {
    let dir = server.root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let user = nix::unistd::User::from_name(USER).unwrap().unwrap();
    nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).unwrap();
    dir
}

#[test]
#[ignore = "the emulated phone on a DHCP network: scripts/phone-check.sh runs this with --ignored"]
fn the_phone_leases_from_dnsmasq_and_the_hook_writes_the_options_it_renews() {
    // The network alone: dnsmasq's lease and options reach the hook, the phone reaches
    // the namespace's servers, a renewal brings new options. The image's own agent.toml.
    let url = "https://10.77.0.1/lic/";
    let mut lab = Lab::with_dhcp(
        "2m",
        &[text_option(66, FTP_HOST), text_option(160, url)],
        &[(FTP_HOST, "10.77.0.1")],
        &image_agent_toml(),
    );
    let work = lab.dir.join("ftp");
    let ftp = ftp_server(&lab, &work);
    ftp.put("hello.txt", b"over FTP from the namespace\n");
    lab.nginx
        .put("hello.txt", b"over HTTP from the namespace\n");

    let mut vm = lab.power_on();
    // Boot to lease: dnsmasq's lease file names the phone's MAC once it acked.
    let leases = lab.dhcp.as_ref().unwrap().dnsmasq.leases.clone();
    let mac = "00:04:f2:00:00:01";
    let deadline = Instant::now() + common::vm::BOOT_TIMEOUT;
    while !fs::read_to_string(&leases)
        .unwrap_or_default()
        .contains(mac)
    {
        assert!(
            Instant::now() < deadline,
            "no lease for {mac}:\n{}\n{}",
            lab.dhcp.as_ref().unwrap().dnsmasq.log_text(),
            vm.diagnostics()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let to_lease = vm.powered.elapsed();
    vm.wait_boot();
    let to_shell = vm.powered.elapsed();

    // The lease: an address of dnsmasq's range, its router and DNS server.
    let addr = vm.sh("ip -4 -o addr show dev eth0");
    let host: Option<u8> = addr
        .split_once("inet 10.77.0.")
        .and_then(|(_, rest)| rest.split_once("/24"))
        .and_then(|(host, _)| host.parse().ok());
    assert!(
        host.is_some_and(|h| (50..=60).contains(&h)),
        "not an address of dnsmasq's range 10.77.0.50-60/24: {addr}\n{}",
        why(&mut vm)
    );
    let route = vm.sh("ip route");
    assert!(route.contains("default via 10.77.0.1"), "{route}");
    let resolv = vm.sh("cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.77.0.1"), "{resolv}");

    // The hook's file: the event and both options, as hex of their bytes.
    let file = lease_file(&mut vm);
    for line in [
        "format=1".to_string(),
        "event=bound".to_string(),
        "interface=eth0".to_string(),
        format!("option66=hex:{}", hex(FTP_HOST)),
        format!("option160=hex:{}", hex(url)),
    ] {
        assert!(
            file.lines().any(|l| l == line),
            "no {line:?} in the hook's file:\n{file}\n-- dnsmasq --\n{}",
            lab.dhcp.as_ref().unwrap().dnsmasq.log_text()
        );
    }

    // The servers in the namespace, from the phone: the name of option 66 through
    // dnsmasq's DNS, FTP (a passive data connection to 10.77.0.1), HTTP, and HTTPS's port.
    let got = vm.sh(&format!(
        "ftpget -u {USER} -p {PASSWORD} {FTP_HOST} - hello.txt"
    ));
    assert_eq!(got, "over FTP from the namespace\n");
    assert!(ftp_log(&work).contains("OK DOWNLOAD"), "{}", ftp_log(&work));
    let got = vm.sh(&format!(
        "wget -q -O - http://10.77.0.1:{}/hello.txt",
        lab.nginx.http_port
    ));
    assert_eq!(got, "over HTTP from the namespace\n");
    let (code, out) = vm
        .try_sh(
            "echo | nc -w 5 10.77.0.1 443 >/dev/null",
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(code, 0, "port 443 of 10.77.0.1 does not answer: {out}");

    // A renewal (udhcpc's SIGUSR1) after dnsmasq's options changed: the hook writes the
    // new ones, as a renewal.
    let other = "https://10.77.0.2/b/";
    lab.dhcp
        .as_mut()
        .unwrap()
        .dnsmasq
        .set_options(&[text_option(160, other)], &[]);
    vm.sh("kill -USR1 $(cat /run/udhcpc.eth0.pid)");
    let file = wait_until(
        &mut vm,
        Duration::from_secs(60),
        "the renewal's file",
        |vm| {
            let file = lease_file(vm);
            file.contains(&format!("option160=hex:{}", hex(other)))
                .then_some(file)
        },
    );
    assert!(file.lines().any(|l| l == "event=renew"), "{file}");
    assert!(!file.contains("option66="), "option 66 is gone: {file}");
    eprintln!(
        "DHCP network: lease {:.1} s after power-on, control shell at {:.1} s",
        to_lease.as_secs_f64(),
        to_shell.as_secs_f64()
    );
}

#[test]
#[ignore = "the emulated phone on a DHCP network: scripts/phone-check.sh runs this with --ignored"]
fn option_66_names_an_ftp_server_by_host_name_and_its_master_file_moves_the_folders() {
    // (a) option 66 alone, a bare host name: FTP (server_type); (c) its master file,
    // there from the start, names `lic` and `logs`: the boot fetch takes the license
    // from lic/ (not the root's) and the report goes up to logs/; then the master file
    // names other folders, and a check-sync follows them without a restart.
    let mut lab = Lab::with_dhcp(
        "2m",
        &[text_option(66, FTP_HOST)],
        &[(FTP_HOST, "10.77.0.1")],
        &dhcp_agent_toml(),
    );
    let work = lab.dir.join("ftp");
    let ftp = ftp_server(&lab, &work);
    let t = now();
    let root_end = t + 365 * DAY;
    let lic_end = t + 730 * DAY;
    let lic2_end = t + 1095 * DAY;
    ftp.put(
        PHONE_FILE,
        &lab.sign("phone", &[feature("vqmon", t - DAY, Some(root_end))]),
    );
    // The same feature in each folder, told apart by its end (a longer one is taken
    // without a reboot).
    for (folder, end) in [("lic", lic_end), ("lic2", lic2_end)] {
        let dir = ftp_folder(&ftp, folder);
        fs::write(
            dir.join(PHONE_FILE),
            lab.sign("phone", &[feature("vqmon", t - DAY, Some(end))]),
        )
        .unwrap();
    }
    let logs = ftp_folder(&ftp, "logs");
    let logs2 = ftp_folder(&ftp, "logs2");
    ftp.put(MASTER_FILE, master_file("lic", "logs").as_bytes());

    let mut vm = lab.power_on();
    let pid = boot(&mut vm, t);
    assert!(
        lease_file(&mut vm).contains(&format!("option66=hex:{}", hex(FTP_HOST))),
        "{}",
        lease_file(&mut vm)
    );

    // (a) + (c) The boot fetch: the server of option 66, over FTP, in the folder its
    // master file names.
    let p = wait_provisioning(&mut vm, "the server of option 66", "dhcp option 66", |s| {
        s.starts_with(&format!("ftp://{FTP_HOST}"))
    });
    eprintln!("(a) option 66 and its master file: {p}");
    let server = p["server"].as_str().unwrap().to_string();
    assert_eq!(
        server.trim_end_matches('/'),
        format!("ftp://{FTP_HOST}"),
        "{p:#}"
    );
    assert_eq!(
        p["licenses"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/'),
        format!("ftp://{FTP_HOST}/lic"),
        "{p:#}"
    );
    assert_eq!(
        p["logs"].as_str().unwrap_or_default().trim_end_matches('/'),
        format!("ftp://{FTP_HOST}/logs"),
        "{p:#}"
    );
    let s = status(&mut vm);
    assert_eq!(
        vqmon_end(&s),
        Some(rfc(lic_end)),
        "the boot fetch took lic/'s license: {s:#}"
    );
    let text = s.to_string();
    assert!(
        !text.contains(PASSWORD),
        "the FTP password is shown: {text}"
    );
    let report = logs.join(REPORT_FILE);
    wait_file(&mut vm, &report, &work);
    let log = ftp_log(&work);
    assert!(
        ftp_did(&log, "OK DOWNLOAD", &format!("/{MASTER_FILE}")),
        "the master file was not read:\n{log}"
    );
    assert!(
        ftp_did(&log, "OK DOWNLOAD", &format!("/lic/{PHONE_FILE}")),
        "lic/{PHONE_FILE} not fetched:\n{log}"
    );
    assert!(
        !ftp_did(&log, "OK DOWNLOAD", &format!("/{PHONE_FILE}")),
        "the root's {PHONE_FILE} was fetched:\n{log}"
    );
    // Uploaded into logs/ (under a temporary name first, perhaps, then renamed).
    assert!(
        log.lines()
            .any(|l| l.contains("OK UPLOAD: Client \"10.77.0.") && l.contains("\"/logs/")),
        "the report did not go up to logs/:\n{log}"
    );
    let in_root = ftp.root.join(REPORT_FILE);
    assert!(!in_root.exists(), "the report went to the root");
    let uploaded: Value =
        serde_json::from_slice(&fs::read(&report).unwrap()).expect("the report is JSON");
    assert!(uploaded.to_string().contains(MAC), "{uploaded:#}");

    // The master file names other folders: followed at the next cycle.
    ftp.put(MASTER_FILE, master_file("lic2", "logs2").as_bytes());
    vm.sh("license-agent check-sync; true");
    let p = wait_until(&mut vm, FOLLOW, "the master file's new folders", |vm| {
        let p = status(vm)["daemon"]["provisioning"].clone();
        let lic = p["licenses"]
            .as_str()?
            .trim_end_matches('/')
            .ends_with("/lic2");
        (lic && p["origin"] == "dhcp option 66").then_some(p)
    });
    eprintln!("(c) the folders moved: {p}");
    assert_eq!(
        p["logs"].as_str().unwrap_or_default().trim_end_matches('/'),
        format!("ftp://{FTP_HOST}/logs2"),
        "{p:#}"
    );
    let s = wait_until(&mut vm, FOLLOW, "the license of lic2/", |vm| {
        let s = status(vm);
        (vqmon_end(&s) == Some(rfc(lic2_end))).then_some(s)
    });
    wait_file(&mut vm, &logs2.join(REPORT_FILE), &work);
    let log = ftp_log(&work);
    assert!(
        ftp_did(&log, "OK DOWNLOAD", &format!("/lic2/{PHONE_FILE}")),
        "lic2/{PHONE_FILE} not fetched:\n{log}"
    );
    assert_eq!(agent_pid(&mut vm), pid, "the agent was restarted");
    assert_eq!(vm.reboot_requests(), 0, "{:?}\n{s:#}", vm.events());
}

#[test]
#[ignore = "the emulated phone on a DHCP network: scripts/phone-check.sh runs this with --ignored"]
fn option_160_names_an_https_server_and_a_renewal_with_another_is_followed_without_a_restart() {
    // (b) option 160, an HTTPS URL (the phone trusts the lab's CA: [fetch] ca_file); (d)
    // the lease renewed with another server's URL: the running agent follows it.
    let first = "https://10.77.0.1/a/";
    let second = "https://10.77.0.2/b/";
    let mut lab = Lab::with_dhcp("2m", &[text_option(160, first)], &[], &dhcp_agent_toml());
    let t = now();
    let first_end = t + 365 * DAY;
    let second_end = t + 730 * DAY;
    fs::create_dir_all(lab.nginx.root.join("a")).unwrap();
    lab.nginx.put(
        &format!("a/{PHONE_FILE}"),
        &lab.sign("phone", &[feature("vqmon", t - DAY, Some(first_end))]),
    );
    // The second server: another nginx, on 10.77.0.2:443, its own folder.
    let www2 = lab.dir.join("www2");
    fs::create_dir_all(www2.join("b")).unwrap();
    let pki = lab.pki.clone();
    let nginx2 = lab
        .dhcp
        .as_ref()
        .unwrap()
        .run(|| Nginx::start_on(&www2, &pki, "10.77.0.2".parse().unwrap(), Some(443)));
    nginx2.put(
        &format!("b/{PHONE_FILE}"),
        &lab.sign("phone", &[feature("vqmon", t - DAY, Some(second_end))]),
    );

    let mut vm = lab.power_on();
    let pid = boot(&mut vm, t);

    // (b) The URL of option 160, over HTTPS.
    let p = wait_provisioning(
        &mut vm,
        "the server of option 160",
        "dhcp option 160",
        |s| s == first,
    );
    eprintln!("(b) option 160: {p}");
    assert_eq!(p["licenses"].as_str(), Some(first), "{p:#}");
    let s = wait_until(&mut vm, FOLLOW, "the first server's license", |vm| {
        let s = status(vm);
        (vqmon_end(&s) == Some(rfc(first_end))).then_some(s)
    });
    let entries = lab.nginx.access_entries();
    assert!(
        entries.iter().any(|e| e.path == format!("/a/{PHONE_FILE}")
            && e.status == 200
            && e.ssl_protocol.starts_with("TLS")),
        "/a/{PHONE_FILE} not fetched over HTTPS: {:?}",
        served(&lab.nginx, 200)
    );
    assert!(
        entries
            .iter()
            .any(|e| e.path == format!("/a/{MASTER_FILE}")),
        "the master file was not asked for: {entries:?}"
    );
    assert!(
        nginx2.access_entries().is_empty(),
        "{:?}",
        nginx2.access_entries()
    );

    // (d) dnsmasq now gives the second server; udhcpc renews (SIGUSR1), its hook writes
    // the new lease and nudges the agent, which fetches from the second server.
    lab.dhcp
        .as_mut()
        .unwrap()
        .dnsmasq
        .set_options(&[text_option(160, second)], &[]);
    let renewed = Instant::now();
    vm.sh("kill -USR1 $(cat /run/udhcpc.eth0.pid)");
    let p = wait_provisioning(
        &mut vm,
        "the renewed lease's server",
        "dhcp option 160",
        |s| s == second,
    );
    eprintln!("(d) renewed: {p}");
    assert_eq!(p["licenses"].as_str(), Some(second), "{p:#}");
    let s2 = wait_until(&mut vm, FOLLOW, "the second server's license", |vm| {
        let s = status(vm);
        (vqmon_end(&s) == Some(rfc(second_end))).then_some(s)
    });
    let followed = renewed.elapsed();
    assert!(
        served(&nginx2, 200).contains(&format!("/b/{PHONE_FILE}")),
        "the second server served {:?}",
        nginx2.access_entries()
    );
    assert!(
        lease_file(&mut vm).contains(&format!("option160=hex:{}", hex(second))),
        "{}",
        lease_file(&mut vm)
    );
    assert_eq!(
        agent_pid(&mut vm),
        pid,
        "the agent was restarted\n{s:#}\n{s2:#}"
    );
    assert_eq!(vm.reboot_requests(), 0, "{:?}", vm.events());
    eprintln!(
        "a renewal with another server followed {:.1} s after udhcpc's SIGUSR1",
        followed.as_secs_f64()
    );
}

#[test]
#[ignore = "the emulated phone on a DHCP network: scripts/phone-check.sh runs this with --ignored"]
fn without_dhcp_options_the_remembered_server_then_the_static_one() {
    // (e) A boot with option 160 (the server is remembered); dnsmasq then gives no option
    // and the phone reboots: the remembered server; that one gone: the static server.
    let dhcp_url = "https://10.77.0.2/d/";
    let mut lab = Lab::with_dhcp("2m", &[text_option(160, dhcp_url)], &[], &dhcp_agent_toml());
    let t = now();
    let end = t + 365 * DAY;
    let license = lab.sign("phone", &[feature("vqmon", t - DAY, Some(end))]);
    // The static server: the lab's nginx, static/ (10.77.0.1).
    fs::create_dir_all(lab.nginx.root.join("static")).unwrap();
    lab.nginx.put(&format!("static/{PHONE_FILE}"), &license);
    // The DHCP server: another nginx on 10.77.0.2, dropped to make it unreachable.
    let www2 = lab.dir.join("www2");
    fs::create_dir_all(www2.join("d")).unwrap();
    let pki = lab.pki.clone();
    let nginx2 = lab
        .dhcp
        .as_ref()
        .unwrap()
        .run(|| Nginx::start_on(&www2, &pki, "10.77.0.2".parse().unwrap(), Some(443)));
    nginx2.put(&format!("d/{PHONE_FILE}"), &license);

    let mut vm = lab.power_on();
    boot(&mut vm, t);
    wait_provisioning(
        &mut vm,
        "the server of option 160",
        "dhcp option 160",
        |s| s == dhcp_url,
    );
    wait_until(&mut vm, FOLLOW, "the license", |vm| {
        (vqmon_end(&status(vm)) == Some(rfc(end))).then_some(())
    });

    // DHCP gives nothing now; the phone reboots and leases without options.
    lab.dhcp.as_mut().unwrap().dnsmasq.set_options(&[], &[]);
    nginx2.clear_access_log();
    let _ = vm.try_sh("sync; reboot -f", Duration::from_secs(2));
    boot(&mut vm, t + 60);
    let file = lease_file(&mut vm);
    assert!(
        !file.contains("option66=") && !file.contains("option160="),
        "options 66 or 160 after the reboot:\n{file}"
    );
    let p = wait_provisioning(&mut vm, "the remembered server", "remembered", |s| {
        s == dhcp_url
    });
    eprintln!("(e) remembered: {p}");
    assert_eq!(p["licenses"].as_str(), Some(dhcp_url), "{p:#}");
    let deadline = Instant::now() + FOLLOW;
    while !served(&nginx2, 200).contains(&format!("/d/{PHONE_FILE}")) {
        assert!(
            Instant::now() < deadline,
            "the remembered server was not asked after the reboot: {:?}\n{}",
            nginx2.access_entries(),
            why(&mut vm)
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert!(
        served(&lab.nginx, 200)
            .iter()
            .all(|p| !p.starts_with("/static/")),
        "the static server was asked while the remembered one answered: {:?}",
        lab.nginx.access_entries()
    );

    // The remembered server gone (connection refused): the static one.
    drop(nginx2);
    vm.sh("license-agent check-sync; true");
    let p = wait_provisioning(&mut vm, "the static server", "static", |s| {
        s == STATIC_SERVER
    });
    eprintln!("(e) static: {p}");
    assert_eq!(p["licenses"].as_str(), Some(STATIC_SERVER), "{p:#}");
    let deadline = Instant::now() + FOLLOW;
    while !served(&lab.nginx, 200).contains(&format!("/static/{PHONE_FILE}")) {
        assert!(
            Instant::now() < deadline,
            "the static server was not asked: {:?}\n{}",
            lab.nginx.access_entries(),
            why(&mut vm)
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(vqmon_end(&status(&mut vm)), Some(rfc(end)));
}
