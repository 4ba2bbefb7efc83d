//! The status report's upload against a hostile server, as the real binary (host, and
//! the armv7 build under qemu-arm through `LICENSE_AGENT_BIN`): a report goes only where
//! it is configured to go.

use crate::common;

use std::time::{Duration, Instant};

use common::faults::{Fault, FaultServer};
use common::now;
use common::phone::{Phone, DAY};

/// `report = "http://127.0.0.1:<port>/"` answered with a 307 or a 308 (which ask a
/// client to send the same body on) to a listener on another port: the listener
/// receives nothing, not even a connection, and `status` says that the upload fails
/// because the server redirected the report, and where to. The failure is tried again
/// later (the server may take the report at its configured address one day): it does
/// not turn the report off as "takes no uploads".
#[test]
fn a_report_redirected_to_another_port_is_not_sent_there_and_status_names_the_redirect() {
    let t = now();
    let (phone, folder) = Phone::with_folder_server(&[("vqmon", t - DAY, Some(t + 100 * DAY))]);
    // Per redirect: the connections, requests and body bytes that reached the other
    // port, and what `status` said of the upload.
    let mut elsewhere_got = Vec::new();
    let mut said = Vec::new();
    for (code, reason) in [(307, "Temporary Redirect"), (308, "Permanent Redirect")] {
        // Takes anything (201) and records every request, with its body.
        let elsewhere = FaultServer::start(Fault::Status(201));
        let target = format!("{}taken/0004f2000001-license-status.json", elsewhere.url());
        let server = FaultServer::start(Fault::Raw(
            format!("HTTP/1.1 {code} {reason}\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes(),
        ));
        phone.configure(&format!(
            "server = \"file://{}/\"\nreport = \"{}\"\n[fetch]\ntotal_timeout = \"5s\"\n\
             [timing]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n",
            folder.path().display(),
            server.url()
        ));
        let daemon = phone.start(None);
        let failing = daemon.wait_status("the upload failed", |s| {
            s["daemon"]["report"]
                .as_str()
                .is_some_and(|r| r.contains("failing ("))
        });
        // Tried again after its back-off (a redirect is no "takes no uploads").
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.requests() < 2 {
            assert!(
                Instant::now() < deadline,
                "never tried again: {:#}",
                daemon.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let again = daemon.status();
        assert!(
            !again["daemon"]["report"]
                .as_str()
                .unwrap()
                .starts_with("off"),
            "{again:#}"
        );
        for seen in server.seen() {
            assert_eq!(
                (seen.method.as_str(), seen.path.as_str()),
                ("PUT", "/0004f2000001-license-status.json")
            );
            assert!(seen.body.starts_with(b"{"), "the report: {seen:?}");
        }
        let (exit, _) = daemon.stop();
        assert_eq!(exit, Some(0));
        elsewhere_got.push((
            code,
            elsewhere.connections(),
            elsewhere.seen().len(),
            received(&elsewhere),
        ));
        let words = failing["daemon"]["report"].as_str().unwrap().to_string();
        said.push((code, reason, server.url(), target, words));
    }
    assert_eq!(
        elsewhere_got,
        [(307, 0, 0, 0), (308, 0, 0, 0)],
        "the report went elsewhere"
    );
    for (code, reason, url, target, words) in said {
        for expected in [
            format!("{url}0004f2000001-license-status.json: redirects: "),
            format!("the server answered {code} {reason} redirecting the report to {target}"),
            "a report goes only where configured".to_string(),
        ] {
            assert!(words.contains(&expected), "{expected:?} not in {words:?}");
        }
    }
}

/// The body bytes a fault server received, over all its requests.
fn received(server: &FaultServer) -> usize {
    server.seen().iter().map(|r| r.body.len()).sum()
}
