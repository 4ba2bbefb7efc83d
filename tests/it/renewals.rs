//! A renewal the validators cannot see (issue 24, finding 1), as the real binary against
//! real nginx (HTTP and HTTPS) and vsftpd (FTP): a renewal of a license is the same
//! size as the license it replaces (the same features, another end), and copied into
//! place with the old file's modification time (`cp -p`, `rsync -t`, an archive, an
//! image built with fixed file times) it has the same `ETag` and `Last-Modified` at
//! nginx and the same `SIZE` and `MDTM` over FTP. The agent must take it at the next
//! boot, poll and check-sync all the same: a download is never skipped on validators.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ftp::{Security, Vsftpd};
use common::now;
use common::phone::{feature_end, Daemon, Phone, DAY, SITE_FILE};

/// Replaces `path` with `bytes` (which must be as long as what it replaces) keeping the
/// old file's modification time, as `cp -p` or `rsync -t` would.
fn renew_in_place(path: &Path, bytes: &[u8]) {
    let old = std::fs::metadata(path).unwrap();
    assert_eq!(old.len(), bytes.len() as u64, "a renewal of the same size");
    common::files::put_same_time(path, bytes);
    let new = std::fs::metadata(path).unwrap();
    assert_eq!(new.modified().unwrap(), old.modified().unwrap());
}

/// A site license whose `vqmon` ends `days` days from now (always the same size).
fn site(phone: &Phone, t: i64, days: i64) -> Vec<u8> {
    phone.sign("site", &[("vqmon", t - DAY, Some(t + days * DAY))])
}

fn wait_end(daemon: &Daemon, end: i64, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let s = daemon.status();
        if feature_end(&s, "vqmon") == Some(common::rfc(end)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the renewal ending {end} was not taken: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Boot, check-sync and poll each meet a renewal with the old file's size and time.
fn renewals_through(server: &str, root: &Path, extra_fetch: &str) {
    let t = now();
    // vqmon Expiring Shortly: the agent checks for a renewal every 2 s.
    let phone = Phone::new(&format!(
        "server = \"{server}\"\nenabled_features = [\"vqmon\"]\n[fetch]\n{extra_fetch}\
         connect_timeout = \"3s\"\ntotal_timeout = \"10s\"\n\
         [timing]\nrenewal_check_interval = \"2s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n"
    ));
    let file = root.join(SITE_FILE);
    std::fs::write(&file, site(&phone, t, 10)).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let daemon = phone.start(None);
    wait_end(
        &daemon,
        t + 10 * DAY,
        Duration::from_secs(20),
        "the first boot",
    );
    // check-sync.
    renew_in_place(&file, &site(&phone, t, 11));
    let files = daemon.request(r#"{"cmd":"check-sync"}"#)["check_sync"]["files"].clone();
    assert_eq!(files[0]["outcome"], "accepted", "check-sync: {files:#}");
    wait_end(&daemon, t + 11 * DAY, Duration::from_secs(5), "check-sync");
    // A poll (the renewal check of an Expiring Shortly license), asked by nobody.
    renew_in_place(&file, &site(&phone, t, 12));
    wait_end(&daemon, t + 12 * DAY, Duration::from_secs(20), "a poll");
    // A boot.
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    renew_in_place(&file, &site(&phone, t, 13));
    let daemon = phone.start(None);
    wait_end(&daemon, t + 13 * DAY, Duration::from_secs(20), "a boot");
}

#[test]
fn a_renewal_with_the_old_size_and_time_is_taken_from_nginx_over_http_and_https() {
    let work = tempfile::tempdir().unwrap();
    let (pki, nginx) = common::web_server(work.path());
    let root = nginx.root.clone();
    renewals_through(&nginx.http_url(), &root, "");
    let ca = format!("ca_file = \"{}\"\n", pki.ca_pem.display());
    renewals_through(&nginx.https_url(), &root, &ca);
    // Never a conditional request: nginx would answer it 304 (the same ETag).
    let conditional: Vec<_> = nginx
        .access_entries()
        .into_iter()
        .filter(|e| e.if_none_match != "-" || e.if_modified_since != "-" || e.status == 304)
        .collect();
    assert!(conditional.is_empty(), "{conditional:#?}");
}

#[test]
fn a_renewal_with_the_old_size_and_time_is_taken_from_vsftpd() {
    let work = tempfile::tempdir().unwrap();
    let server = Vsftpd::start(work.path(), Security::Plain, "");
    renewals_through(&server.url(), &server.root, "");
}
