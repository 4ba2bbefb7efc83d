//! The daemon, as the real binary, fetching over the transports other than HTTP from
//! real servers started on 127.0.0.1: tftpd-hpa directly and through a UDP relay of the
//! tests' own that loses, duplicates, reorders or stops datagrams. Boot fetch,
//! check-sync, renewal, a missing file, and every fault: the stored licenses stay in
//! force and the fetch is retried. And a list of servers whose first one is down.

use crate::common;

use std::time::Duration;

use common::ftp::{free_tcp_port, Security, Vsftpd};
use common::phone::{fault_case, fault_case_within, Phone, DAY, MAC, PHONE_FILE, SITE_FILE};
use common::pki::Pki;
use common::tftp::{free_udp_port, set_mode, Impairment, Relay, Tftpd};
use common::{agent, now, run, stdout};
use serde_json::Value;

fn outcomes(files: &Value) -> Vec<(String, String)> {
    files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(site: &str, phone: &str) -> Vec<(String, String)> {
    vec![
        (SITE_FILE.into(), site.into()),
        (PHONE_FILE.into(), phone.into()),
    ]
}

fn tftp_phone(server: &str, total: &str) -> Phone {
    Phone::new(&format!(
        "server = \"{server}\"\n[fetch]\nconnect_timeout = \"3s\"\ntotal_timeout = \"{total}\"\n\
         [timing]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n"
    ))
}

/// A site license of `count` features (`feature-0100`...), valid from yesterday for 100
/// days: a file of several TFTP blocks.
fn site_with_features(phone: &Phone, count: u16) -> Vec<u8> {
    let t = now();
    let names: Vec<String> = (0..count)
        .map(|i| format!("feature-{:04}", 100 + i))
        .collect();
    let list: Vec<(&str, i64, Option<i64>)> = names
        .iter()
        .map(|f| (f.as_str(), t - DAY, Some(t + 100 * DAY)))
        .collect();
    phone.sign("site", &list)
}

fn check_sync(daemon: &common::phone::Daemon) -> Value {
    daemon.request(r#"{"cmd":"check-sync"}"#)["check_sync"]["files"].clone()
}

#[test]
fn tftp_boot_check_sync_renewal_and_a_missing_file() {
    let work = tempfile::tempdir().unwrap();
    let tftpd = Tftpd::start(&work.path().join("tftp"), &[]);
    let phone = tftp_phone(&tftpd.url(), "10s");
    let t = now();
    tftpd.put(
        SITE_FILE,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]),
    );
    tftpd.put(
        PHONE_FILE,
        &phone.sign("phone", &[("usb-call-recording", t - DAY, None)]),
    );
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(
        outcomes(&s["daemon"]["files"]),
        pair("accepted", "accepted"),
        "{s:#}"
    );
    assert_eq!(
        s["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon"])
    );

    // A renewal of the site license, picked up by check-sync; the phone file, unchanged,
    // comes whole (TFTP has no validators) and is judged identical.
    tftpd.put(
        SITE_FILE,
        &phone.sign(
            "site",
            &[
                ("vqmon", t - DAY, Some(t + 400 * DAY)),
                ("lync", t - DAY, Some(t + 400 * DAY)),
            ],
        ),
    );
    let files = check_sync(&daemon);
    assert_eq!(outcomes(&files), pair("accepted", "unchanged"), "{files:#}");
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon", "lync"])
    );

    // The server loses the phone file: TFTP error 1 is "not on the server", and the
    // stored phone license stays in force.
    tftpd.remove(PHONE_FILE);
    let files = check_sync(&daemon);
    assert_eq!(outcomes(&files), pair("unchanged", "absent"), "{files:#}");
    assert!(
        files[1]["detail"]
            .as_str()
            .unwrap()
            .contains("TFTP error 1"),
        "{files:#}"
    );
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon", "lync"])
    );
}

#[test]
fn tftp_from_a_server_that_ignores_the_options() {
    let work = tempfile::tempdir().unwrap();
    let refuse = [
        "--refuse", "blksize", "--refuse", "tsize", "--refuse", "timeout",
    ];
    let tftpd = Tftpd::start(&work.path().join("tftp"), &refuse);
    let phone = tftp_phone(&tftpd.url(), "10s");
    let site = site_with_features(&phone, 12);
    assert!(
        site.len() > 512,
        "more than one block of 512: {} bytes",
        site.len()
    );
    tftpd.put(SITE_FILE, &site);
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(
        outcomes(&s["daemon"]["files"]),
        pair("accepted", "absent"),
        "{s:#}"
    );
}

/// Through a network that loses a fifth of the datagrams, duplicates a fifth and holds
/// each for up to 300 ms (so they overtake each other), both ways: the files come whole,
/// at the first cycle or at a retry (a request whose every copy was lost is a failed
/// fetch, retried like any other).
///
/// Proves: with every seed the agent got both licenses whole, and over the run the relay
/// did drop, duplicate and reorder datagrams (its own counts, each > 0; TFTP is
/// lock-step, so a reordering is a late copy or retransmission overtaken by what came
/// after it, too rare to demand of every seed).
#[test]
fn tftp_through_loss_duplication_and_reordering() {
    let work = tempfile::tempdir().unwrap();
    // Blocks of 512, so that a license is several blocks and reordering has a chance.
    let tftpd = Tftpd::start(&work.path().join("tftp"), &["--blocksize", "512"]);
    // What the relays dropped, duplicated and reordered, over the run.
    let mut impaired = [0usize; 3];
    for seed in [1u64, 2, 3, 4] {
        let relay = Relay::start(
            tftpd.addr(),
            Impairment {
                loss: 20,
                duplicate: 20,
                max_delay: Duration::from_millis(300),
                stall_after: None,
                seed,
            },
        );
        let phone = tftp_phone(&relay.url(), "40s");
        let t = now();
        let site = site_with_features(&phone, 40);
        assert!(site.len() > 3 * 512, "{} bytes", site.len());
        tftpd.put(SITE_FILE, &site);
        tftpd.put(PHONE_FILE, &phone.sign("phone", &[("lync", t - DAY, None)]));
        let daemon = phone.start(None);
        let s = daemon.wait_status("both licenses fetched", |s| {
            s["enabled"].as_array().is_some_and(|e| e.len() == 41)
        });
        assert_eq!(
            s["licenses"].as_array().unwrap().len(),
            2,
            "seed {seed}: {s:#}"
        );
        let counts = &relay.counts;
        let n = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "seed {seed}: agent sent {} datagrams, server {}; relay dropped {}, duplicated {}, \
             reordered {}; {} failed cycle(s)",
            n(&counts.from_agent),
            n(&counts.from_server),
            n(&counts.dropped),
            n(&counts.duplicated),
            n(&counts.reordered),
            s["daemon"]["consecutive_failures"],
        );
        impaired[0] += n(&counts.dropped);
        impaired[1] += n(&counts.duplicated);
        impaired[2] += n(&counts.reordered);
    }
    // The network was impaired every way this test claims, not only set up to be.
    for (what, count) in ["dropped", "duplicated", "reordered"].iter().zip(impaired) {
        assert!(
            count > 0,
            "over the run the relay {what} no datagram: {impaired:?}"
        );
    }
}

#[test]
fn tftp_fault_server_down() {
    // Nothing listens on the port: no answer to the requests.
    let url = format!("tftp://127.0.0.1:{}/", free_udp_port());
    fault_case(&url, "", "no answer");
}

#[test]
fn tftp_fault_stalled_transfer() {
    let work = tempfile::tempdir().unwrap();
    let tftpd = Tftpd::start(&work.path().join("tftp"), &["--blocksize", "512"]);
    tftpd.put(SITE_FILE, &[b'x'; 3000]);
    tftpd.put(PHONE_FILE, &[b'x'; 3000]);
    // The OACK and the first block pass; nothing after.
    let relay = Relay::start(
        tftpd.addr(),
        Impairment {
            stall_after: Some(2),
            ..Impairment::none()
        },
    );
    fault_case(&relay.url(), "", "stopped sending after 512 bytes");
}

#[test]
fn tftp_fault_oversize_announced_and_counted() {
    let work = tempfile::tempdir().unwrap();
    let tftpd = Tftpd::start(&work.path().join("tftp"), &[]);
    tftpd.put(SITE_FILE, &vec![b'x'; 70_000]);
    fault_case(&tftpd.url(), "", "announces 70000 bytes");
    // A server that does not announce sizes: counted while streaming.
    let plain = Tftpd::start(&work.path().join("tftp-plain"), &["--refuse", "tsize"]);
    plain.put(SITE_FILE, &vec![b'x'; 70_000]);
    fault_case(&plain.url(), "", "more than 65536 bytes");
}

#[test]
fn tftp_fault_access_violation() {
    let work = tempfile::tempdir().unwrap();
    let tftpd = Tftpd::start(&work.path().join("tftp"), &[]);
    tftpd.put(SITE_FILE, b"not readable by the world");
    set_mode(&tftpd.root.join(SITE_FILE), 0o600);
    fault_case(&tftpd.url(), "", "tftp error 2");
}

/// `server` as a list whose first server (`dead`) is down, the second `live`, holding
/// only the site license (`put` writes there): each file is taken from the second, and
/// `status` (JSON and text) names the server and transport that answered.
fn second_server_answers(dead: &str, live: &str, put: &dyn Fn(&str, &[u8]), transport: &str) {
    let phone = Phone::new(&format!(
        "server = [\"{dead}\", \"{live}\"]\n[fetch]\nconnect_timeout = \"2s\"\ntotal_timeout = \"5s\"\n"
    ));
    let t = now();
    put(
        SITE_FILE,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]),
    );
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(
        outcomes(&s["daemon"]["files"]),
        pair("accepted", "absent"),
        "{s:#}"
    );
    for file in s["daemon"]["files"].as_array().unwrap() {
        assert_eq!(file["server"], live, "{s:#}");
        assert_eq!(file["transport"], transport, "{s:#}");
    }
    assert_eq!(s["daemon"]["server"], format!("{dead}, {live}"));
    let out = run(
        agent(),
        [
            "status".as_ref(),
            "--config".as_ref(),
            phone.config.as_os_str(),
        ],
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!("answered by {live} ({transport})")),
        "{text}"
    );
}

#[test]
fn a_list_of_servers_with_the_first_one_down() {
    let work = tempfile::tempdir().unwrap();
    let (_pki, nginx) = common::web_server(work.path());
    let dead = format!("tftp://127.0.0.1:{}/", free_udp_port());
    second_server_answers(&dead, &nginx.http_url(), &|n, b| nginx.put(n, b), "http");
    // The dead server cost its timeout once in the cycle: the phone file went to nginx
    // first (two requests there, and the answers came within one answer time).
    assert_eq!(
        nginx.wait_access_entries(2, Duration::from_secs(5)).len(),
        2
    );
    // An FTP server down, then TFTP.
    let tftpd = Tftpd::start(&work.path().join("tftp"), &[]);
    let dead = format!("ftp://127.0.0.1:{}/", free_tcp_port());
    second_server_answers(&dead, &tftpd.url(), &|n, b| tftpd.put(n, b), "tftp");
}

/// A phone fetching from `server`, and reporting its status there (STOR, when the
/// server takes it).
fn ftp_phone(server: &str, extra_fetch: &str) -> Phone {
    Phone::new(&format!(
        "server = \"{server}\"\nreport = true\n[fetch]\nconnect_timeout = \"3s\"\ntotal_timeout = \"10s\"\n\
         {extra_fetch}[timing]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n"
    ))
}

/// Boot fetch, check-sync (unchanged files downloaded whole and found the same), a renewal,
/// and a file that disappears (550: the stored license stays in force), from vsftpd.
fn ftp_story(server: &Vsftpd, phone: &Phone) {
    let t = now();
    server.put(
        SITE_FILE,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]),
    );
    server.put(
        PHONE_FILE,
        &phone.sign("phone", &[("usb-call-recording", t - DAY, None)]),
    );
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(
        outcomes(&s["daemon"]["files"]),
        pair("accepted", "accepted"),
        "{s:#}"
    );
    for file in s["daemon"]["files"].as_array().unwrap() {
        assert_eq!(file["server"], server.shown_url(), "{s:#}");
    }
    assert_eq!(
        s["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon"])
    );
    // Nothing changed: both downloaded whole, and found the ones held.
    let files = check_sync(&daemon);
    assert_eq!(
        outcomes(&files),
        pair("unchanged", "unchanged"),
        "{files:#}"
    );
    // A renewal of the site license.
    server.put(
        SITE_FILE,
        &phone.sign(
            "site",
            &[
                ("vqmon", t - DAY, Some(t + 400 * DAY)),
                ("lync", t - DAY, Some(t + 400 * DAY)),
            ],
        ),
    );
    let files = check_sync(&daemon);
    assert_eq!(outcomes(&files), pair("accepted", "unchanged"), "{files:#}");
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon", "lync"])
    );
    // The status report went up (STOR to a temporary name, then renamed).
    let report = server.root.join(format!("{MAC}-license-status.json"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !report.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:#}",
            daemon.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every report taken (each check-sync changed the last fetch: one upload each, the
    // newest may still be going up, under its temporary name, on a slow machine).
    let words = daemon.wait_status("the reports taken", |s| {
        s["daemon"]["report"].as_str().is_some_and(|r| {
            !r.contains("under way") && !r.contains("waits") && !r.contains("failing")
        })
    })["daemon"]["report"]
        .clone();
    assert!(
        words.as_str().unwrap().starts_with(&server.shown_url()),
        "{words}"
    );
    let sent: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(sent["mac"], MAC);
    let leftovers: Vec<_> = std::fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The phone file disappears: 550, and the stored phone license stays in force.
    server.remove(PHONE_FILE);
    let files = check_sync(&daemon);
    assert_eq!(outcomes(&files), pair("unchanged", "absent"), "{files:#}");
    assert!(
        files[1]["detail"].as_str().unwrap().contains("550"),
        "{files:#}"
    );
    assert_eq!(
        daemon.status()["enabled"],
        serde_json::json!(["usb-call-recording", "vqmon", "lync"])
    );
}

#[test]
fn ftp_boot_check_sync_renewal_and_a_missing_file() {
    let work = tempfile::tempdir().unwrap();
    let server = Vsftpd::start(work.path(), Security::Plain, "write_enable=YES\n");
    server.allow_uploads();
    ftp_story(&server, &ftp_phone(&server.url(), ""));
}

#[test]
fn ftps_boot_check_sync_renewal_and_a_missing_file() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let server = Vsftpd::start(
        work.path(),
        Security::Tls {
            cert: &pki.server_cert,
            key: &pki.server_key,
        },
        "write_enable=YES\n",
    );
    server.allow_uploads();
    let ca = format!("ca_file = \"{}\"\n", pki.ca_pem.display());
    ftp_story(&server, &ftp_phone(&server.url(), &ca));
}

/// A server that requires a client certificate: the phone's (signed by the CA) is taken,
/// for the login and the data connections; one from another CA is a TLS failure.
#[test]
fn ftps_with_a_client_certificate() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let server = Vsftpd::start(
        work.path(),
        Security::MutualTls {
            cert: &pki.server_cert,
            key: &pki.server_key,
            client_ca: &pki.ca_pem,
        },
        "",
    );
    let tls = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            pki.ca_pem.display(),
            cert.display(),
            key.display()
        )
    };
    let phone = ftp_phone(&server.url(), &tls(&pki.client_cert, &pki.client_key));
    let t = now();
    server.put(
        SITE_FILE,
        &phone.sign("site", &[("vqmon", t - DAY, Some(t + 100 * DAY))]),
    );
    let daemon = phone.start(None);
    let s = daemon.status();
    assert_eq!(
        outcomes(&s["daemon"]["files"]),
        pair("accepted", "absent"),
        "{s:#}"
    );
    drop(daemon);
    let untrusted = tls(&pki.untrusted_client_cert, &pki.untrusted_client_key);
    fault_case(&server.url(), &untrusted, "tls");
}

#[test]
fn ftp_fault_server_down() {
    let url = format!("ftp://127.0.0.1:{}/", free_tcp_port());
    fault_case(&url, "", "cannot connect");
}

#[test]
fn ftp_fault_wrong_password() {
    let work = tempfile::tempdir().unwrap();
    let server = Vsftpd::start(work.path(), Security::Plain, "");
    fault_case(&server.url_with("wrong"), "", "530 login incorrect");
}

#[test]
fn ftp_fault_oversize() {
    let work = tempfile::tempdir().unwrap();
    let server = Vsftpd::start(work.path(), Security::Plain, "");
    server.put(SITE_FILE, &vec![b'x'; 70_000]);
    fault_case(&server.url(), "", "says 70000 bytes");
}

#[test]
fn ftp_fault_stalled_data_connection() {
    let work = tempfile::tempdir().unwrap();
    // 100 bytes a second: a 3,000-byte file takes 30 s, the total timeout is 3 s.
    let server = Vsftpd::start(work.path(), Security::Plain, "local_max_rate=100\n");
    server.put(SITE_FILE, &[b'x'; 3000]);
    server.put(PHONE_FILE, &[b'x'; 3000]);
    fault_case(&server.url(), "", "the data connection, after");
}

#[test]
fn ftp_fault_transfer_cut_mid_way() {
    let work = tempfile::tempdir().unwrap();
    let server = std::sync::Arc::new(Vsftpd::start(
        work.path(),
        Security::Plain,
        "local_max_rate=200\n",
    ));
    server.put(SITE_FILE, &[b'x'; 3000]);
    server.put(PHONE_FILE, &[b'x'; 3000]);
    // Every session is killed 1.5 s after it opened, while a transfer trickles (200 B/s:
    // vsftpd sends a small file at once, then holds the data connection open to keep
    // the rate): the transfer in progress is cut. Every session, not only the first:
    // under qemu-arm the first file could end whole before the kill, which then fell
    // between the two files, and the second one timed out instead of being cut. Waited
    // for without a short deadline: on a loaded machine the phone's set-up before its
    // boot fetch took more than 10 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(180);
            let mut opened = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
                if server.sessions() == 0 {
                    opened = None;
                    continue;
                }
                let since = *opened.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= Duration::from_millis(1500) && server.kill_sessions() > 0 {
                    opened = None;
                }
            }
        })
    };
    // A total timeout well past the kill: the fetch in progress at a kill is cut, not
    // timed out first.
    fault_case_within(&server.url(), "", "connection cut", "10s");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    killer.join().unwrap();
}

#[test]
fn ftps_fault_tls() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(&work.path().join("pki"));
    let ca = format!("ca_file = \"{}\"\n", pki.ca_pem.display());
    // A certificate from another CA, and one for another host name.
    for (cert, key, expected) in [
        (
            &pki.untrusted_cert,
            &pki.untrusted_key,
            "invalid peer certificate",
        ),
        (
            &pki.wrong_host_cert,
            &pki.wrong_host_key,
            "not valid for name",
        ),
    ] {
        let dir = work.path().join(expected.replace(' ', "-"));
        let server = Vsftpd::start(&dir, Security::Tls { cert, key }, "");
        fault_case(&server.url(), &ca, expected);
    }
    // A server without TLS at all.
    let plain = Vsftpd::start(&work.path().join("plain"), Security::Plain, "");
    let url = plain.url().replacen("ftp://", "ftps://", 1);
    fault_case(&url, &ca, "does not offer explicit tls");
}
