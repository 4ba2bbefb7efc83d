//! The lease's reading, the choice of server, and the master file, each alone; then
//! whole cycles over folders (the transports have their own tests, and the real servers
//! are in `tests/it/provisioning.rs`).

use std::path::Path;

use super::dhcp::{named_server, parse_lease, Lease, MAX_OPTION};
use super::master;
use super::*;
use crate::config::{BootServer, OptionType, Scheme, ServerSource, ServerUrl, TRANSPORTS};
use crate::fetch::FetchOutcome;

fn hex_line(n: u8, value: &[u8]) -> String {
    format!("option{n}=hex:{}\n", hex::encode(value))
}

fn lease(options: &[(u8, &[u8])]) -> Lease {
    let text: String = options.iter().map(|(n, v)| hex_line(*n, v)).collect();
    parse_lease(text.as_bytes())
}

fn dhcp() -> BootServer {
    BootServer {
        source: ServerSource::Dhcp,
        master_config: true,
        ..BootServer::default()
    }
}

fn named(value: &str) -> Result<String, String> {
    named_server(
        value.as_bytes(),
        OptionType::String,
        Scheme::Ftp,
        TRANSPORTS,
    )
    .map(|n| match n.master_file {
        Some(file) => format!("{} + {file}", n.url),
        None => n.url.to_string(),
    })
    .map_err(|r| r.0)
}

#[test]
fn the_hooks_file_gives_each_option_as_sent() {
    let text = "# written by the hook\nformat=1\nevent=bound\ninterface=eth0\r\n\
                option66=hex:70726f76\r\noption160=text:https://p/\nsiaddr=0a000001\n\
                option0=hex:00\noption255=hex:00\noption066=hex:00\noption1600=hex:00\n\
                option7=hex:zz\noption9=plain\n";
    let lease = parse_lease(text.as_bytes());
    assert_eq!(lease.options.get(&66), Some(&Ok(b"prov".to_vec())));
    assert_eq!(lease.options.get(&160), Some(&Ok(b"https://p/".to_vec())));
    // Numbers outside 1-254, or written with a leading zero, are no options.
    assert_eq!(
        lease.options.keys().copied().collect::<Vec<_>>(),
        [7, 9, 66, 160]
    );
    // A line that does not read refuses its option only, and says why.
    assert!(matches!(&lease.options[&7], Err(why) if why.contains("hex")));
    assert!(matches!(&lease.options[&9], Err(why) if why.contains("neither hex: nor text:")));
    // Not UTF-8, binary, empty: never a panic.
    let _ = parse_lease(&[0xff, b'\n', 0, b'=']);
    assert_eq!(parse_lease(b""), Lease::default());
}

#[test]
fn an_option_longer_than_dhcp_allows_is_refused() {
    let long = vec![b'a'; MAX_OPTION + 1];
    let lease = lease(&[(160, &long)]);
    assert!(matches!(&lease.options[&160], Err(why) if why.contains("at most 255")));
    let lease = parse_lease(format!("option160=text:{}\n", "a".repeat(300)).as_bytes());
    assert!(lease.options[&160].is_err());
}

#[test]
fn a_value_names_a_host_an_address_or_a_url() {
    assert_eq!(named("prov.example").unwrap(), "ftp://prov.example/");
    assert_eq!(
        named("10.0.0.5:2121/phones").unwrap(),
        "ftp://10.0.0.5:2121/phones/"
    );
    assert_eq!(
        named("https://10.77.0.1/lic/").unwrap(),
        "https://10.77.0.1/lic/"
    );
    assert_eq!(named("TFTP://prov/x").unwrap(), "tftp://prov/x/");
    // Some DHCP servers end a string with NUL bytes.
    assert_eq!(named("prov\0\0").unwrap(), "ftp://prov/");
    // A .cfg file at the end is the master file to read.
    assert_eq!(
        named("http://prov/site/phone1.cfg").unwrap(),
        "http://prov/site/ + phone1.cfg"
    );
    // The scheme of a name without one is the configured type.
    let https = named_server(b"prov", OptionType::String, Scheme::Https, TRANSPORTS).unwrap();
    assert_eq!(https.url.as_str(), "https://prov/");
    // An address option is four bytes.
    let address = named_server(
        &[10, 77, 0, 1],
        OptionType::Address,
        Scheme::Ftp,
        TRANSPORTS,
    );
    assert_eq!(address.unwrap().url.as_str(), "ftp://10.77.0.1/");
    let five = named_server(
        &[1, 2, 3, 4, 5],
        OptionType::Address,
        Scheme::Ftp,
        TRANSPORTS,
    );
    assert!(five.unwrap_err().0.contains("5 bytes"));
}

#[test]
fn hostile_values_are_refused_with_a_reason_that_shows_no_secret() {
    for (value, says) in [
        ("", "empty"),
        ("prov\nexample", "byte 4 is 0x0a"),
        ("prov example", "byte 4 is 0x20"),
        ("pr\u{1b}[31mov", "byte 2 is 0x1b"),
        ("file:///etc/", "folder of the phone"),
        ("FILE:/etc/", "folder of the phone"),
        ("mailto:x@y", "not a host name"),
        ("gopher://prov/", "not supported"),
        ("https://prov/?q=1", "no query"),
        ("tftp://user:pw@prov/", "TFTP has no user name"),
        ("https://prov:99999/", "port"),
        ("https:///x", "no host"),
    ] {
        let why = named(value).expect_err(value);
        assert!(why.contains(says), "{value:?}: {why}");
    }
    // Not UTF-8, not ASCII.
    let err = named_server(
        &[b'p', 0xc3, 0xa9],
        OptionType::String,
        Scheme::Ftp,
        TRANSPORTS,
    );
    assert!(err.unwrap_err().0.contains("byte 1 is 0xc3"));
    // A password in a URL is used, and never shown: not in the URL, not in an error.
    let ok = named_server(
        b"ftp://phone:S3cret@prov/",
        OptionType::String,
        Scheme::Ftp,
        TRANSPORTS,
    )
    .unwrap();
    assert_eq!(ok.url.credentials().unwrap().password, "S3cret");
    assert!(!format!("{} {:?}", ok.url, ok.url).contains("S3cret"));
    for bad in [
        "ftp://phone:S3cret@prov:0/",
        "ftp://phone:S3cret@/",
        "ftp://phone:S3cret@prov/?x",
        "tftp://phone:S3cret@prov/",
    ] {
        let why = named(bad).expect_err(bad);
        assert!(!why.contains("S3cret"), "{bad}: {why}");
    }
}

#[test]
fn the_custom_option_comes_first_then_66_then_the_remembered_then_the_static() {
    let statics = [ServerUrl::test("https://static/")];
    let known = Known {
        server: Candidate {
            url: ServerUrl::test("ftp://remembered/"),
            master_file: None,
            origin: Origin::Dhcp(66),
        },
        licenses: ServerUrl::test("ftp://remembered/lic/"),
        logs: ServerUrl::test("ftp://remembered/"),
    };
    let both = lease(&[(66, b"prov66"), (160, b"https://prov160/")]);
    let words = |choice: &Choice| -> Vec<String> {
        choice
            .candidates
            .iter()
            .map(|c| format!("{} {}", c.origin, c.url))
            .collect()
    };
    let choice = choose(&dhcp(), Ok(Some(&both)), Some(&known), &statics, TRANSPORTS);
    assert_eq!(
        words(&choice),
        [
            "dhcp option 160 https://prov160/",
            "remembered ftp://remembered/",
            "static https://static/"
        ]
    );
    assert!(choice.notes.is_empty());
    // Option 66 only: 160 is not looked at.
    let only66 = BootServer {
        dhcp_options: crate::config::DhcpOptions::Option66,
        ..dhcp()
    };
    let choice = choose(&only66, Ok(Some(&both)), None, &[], TRANSPORTS);
    assert_eq!(words(&choice), ["dhcp option 66 ftp://prov66/"]);
    // A custom option refused: said, and 66 is taken.
    let bad160 = lease(&[(66, b"prov66"), (160, b"https://prov160/\n")]);
    let choice = choose(&dhcp(), Ok(Some(&bad160)), None, &[], TRANSPORTS);
    assert_eq!(words(&choice), ["dhcp option 66 ftp://prov66/"]);
    assert_eq!(choice.notes.len(), 1);
    assert!(choice.notes[0].starts_with("DHCP option 160 refused: byte 16 is 0x0a"));
    // Nothing usable from DHCP: the last good server is kept, then the static one.
    let bad = lease(&[(160, b"\x01")]);
    let choice = choose(&dhcp(), Ok(Some(&bad)), Some(&known), &statics, TRANSPORTS);
    assert_eq!(
        words(&choice),
        ["remembered ftp://remembered/", "static https://static/"]
    );
    assert!(choice.notes[0].contains("DHCP option 160 refused"));
    for lease in [Ok(None), Err("unreadable"), Ok(Some(&Lease::default()))] {
        let choice = choose(&dhcp(), lease, None, &statics, TRANSPORTS);
        assert_eq!(words(&choice), ["static https://static/"]);
        assert_eq!(choice.notes.len(), 1, "{:?}", choice.notes);
    }
    // A custom option of the address type.
    let address = BootServer {
        custom_type: OptionType::Address,
        ..dhcp()
    };
    let choice = choose(
        &address,
        Ok(Some(&lease(&[(160, &[10, 0, 0, 9])]))),
        None,
        &[],
        TRANSPORTS,
    );
    assert_eq!(words(&choice), ["dhcp option 160 ftp://10.0.0.9/"]);
    // Static: the lease is not looked at; each server once.
    let statics2 = [
        ServerUrl::test("https://static/"),
        ServerUrl::test("https://static/"),
    ];
    let choice = choose(
        &BootServer::default(),
        Ok(Some(&both)),
        Some(&known),
        &statics2,
        TRANSPORTS,
    );
    assert_eq!(words(&choice), ["static https://static/"]);
    // The DHCP server and the remembered one the same: asked once, as DHCP's.
    let same = lease(&[(160, b"ftp://remembered/")]);
    let choice = choose(&dhcp(), Ok(Some(&same)), Some(&known), &[], TRANSPORTS);
    assert_eq!(words(&choice), ["dhcp option 160 ftp://remembered/"]);
}

#[test]
fn the_master_file_gives_the_two_folders_and_nothing_else() {
    let file = br#"<?xml version="1.0" standalone="yes"?>
<!-- the phone's master file -->
<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone1.cfg, sip.cfg" MISC_FILES=""
  LOG_FILE_DIRECTORY="logs/phones" OVERRIDES_DIRECTORY="" LICENSE_DIRECTORY="lic&amp;x">
  <APPLICATION_SPIP300 APP_FILE_PATH_SPIP300="sip.ld" CONFIG_FILES_SPIP300="x"/>
</APPLICATION>
"#;
    let dirs = master::parse(file).unwrap();
    assert_eq!(dirs.licenses.as_deref(), Some("lic&x"));
    assert_eq!(dirs.logs.as_deref(), Some("logs/phones"));
    let dirs = master::parse(b"<APPLICATION/>").unwrap();
    assert_eq!(dirs, master::Directories::default());
    for (bad, says) in [
        (&b"<APPLICATION LICENSE_DIRECTORY=\"a\">"[..], "ends inside"),
        (b"<CONFIG/>", "not APPLICATION"),
        (b"", "no APPLICATION"),
        (b"<APPLICATION/><APPLICATION/>", "second root"),
        (
            b"<!DOCTYPE x [<!ENTITY e \"lic\">]><APPLICATION/>",
            "DOCTYPE",
        ),
        (
            b"<APPLICATION LICENSE_DIRECTORY=\"&e;\"/>",
            "LICENSE_DIRECTORY does not read",
        ),
        (
            b"<APPLICATION LICENSE_DIRECTORY=\"a\" LICENSE_DIRECTORY=\"b\"/>",
            "attributes",
        ),
        (b"<APPLICATION LOG_FILE_DIRECTORY=\"a b\"/>", "' '"),
        (b"<APPLICATION><a></b></APPLICATION>", "not well-formed"),
        (b"junk<APPLICATION/>", "outside"),
    ] {
        let why = master::parse(bad).expect_err(&String::from_utf8_lossy(bad));
        assert!(
            why.contains(says),
            "{}: {why}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("<APPLICATION LICENSE_DIRECTORY=\"{}\"/>", "a".repeat(256));
    assert!(master::parse(long.as_bytes())
        .unwrap_err()
        .contains("at most 255"));
}

#[test]
fn a_folder_is_under_the_server_or_a_url_of_its_own_never_the_phones() {
    let server = ServerUrl::test("ftp://phone:pw@prov/base/");
    let resolve = |dir: Option<&str>| master::resolve(&server, dir, TRANSPORTS);
    assert_eq!(resolve(None).unwrap(), server);
    assert_eq!(resolve(Some("")).unwrap(), server);
    let lic = resolve(Some("/lic/2026/")).unwrap();
    assert_eq!(lic.as_str(), "ftp://prov/base/lic/2026/");
    // Under the server: its credentials too.
    assert_eq!(lic.credentials(), server.credentials());
    assert_eq!(
        resolve(Some("https://other/l")).unwrap().as_str(),
        "https://other/l/"
    );
    for bad in [
        "../etc",
        "a/../../b",
        "a//b",
        "./a",
        "a\\b",
        "a?b",
        "a#b",
        "a%2e",
    ] {
        assert!(resolve(Some(bad)).is_err(), "{bad}");
    }
    assert!(resolve(Some("file:///data/license-agent/")).is_err());
}

/// A folder with the files given, as a `file:` server.
fn folder(files: &[(&str, &[u8])]) -> (tempfile::TempDir, ServerUrl) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let url = ServerUrl::parse(
        &format!("file://{}/", dir.path().display()),
        Path::new("/"),
        TRANSPORTS,
    )
    .unwrap();
    (dir, url)
}

fn locator(statics: Vec<ServerUrl>, settings: BootServer) -> Locator {
    Locator {
        settings,
        statics,
        fetch: crate::config::Fetch::default(),
        mac: crate::format::Serial::parse("0004f2000001").unwrap(),
        schemes: TRANSPORTS.to_vec(),
    }
}

const FILES: [&str; 2] = ["000000000000-license.cfg", "0004f2000001-license.cfg"];

fn files() -> Vec<String> {
    FILES.iter().map(|f| f.to_string()).collect()
}

fn static_master() -> BootServer {
    BootServer {
        master_config: true,
        ..BootServer::default()
    }
}

#[test]
fn a_cycle_reads_the_phones_master_file_else_the_sites_and_fetches_from_its_folder() {
    let (_dir, url) = folder(&[
        (
            "000000000000.cfg",
            b"<APPLICATION LICENSE_DIRECTORY=\"site\"/>",
        ),
        ("lic/0004f2000001-license.cfg", b"phone in lic"),
        ("site/0004f2000001-license.cfg", b"phone in site"),
        ("0004f2000001-license.cfg", b"phone at the root"),
    ]);
    let (fetched, located) = locator(vec![url.clone()], static_master()).run(None, None, &files());
    // No <mac>.cfg: the site's master file names the folder.
    assert_eq!(
        fetched[1].outcome,
        FetchOutcome::Body {
            bytes: b"phone in site".to_vec()
        }
    );
    let found = located.found.unwrap();
    assert_eq!(found.licenses.as_str(), format!("{url}site/"));
    assert_eq!(found.logs, url);
    assert!(located
        .master
        .starts_with("000000000000.cfg: LICENSE_DIRECTORY \"site\""));
    // The phone's own master file wins.
    std::fs::write(
        url.folder().unwrap().join("0004f2000001.cfg"),
        b"<APPLICATION LICENSE_DIRECTORY=\"lic\" LOG_FILE_DIRECTORY=\"logs\"/>",
    )
    .unwrap();
    let (fetched, located) = locator(vec![url.clone()], static_master()).run(None, None, &files());
    assert_eq!(
        fetched[1].outcome,
        FetchOutcome::Body {
            bytes: b"phone in lic".to_vec()
        }
    );
    let known = located.found.unwrap();
    assert_eq!(known.logs.as_str(), format!("{url}logs/"));

    // A master file that does not read: a note, and the folders known stay.
    std::fs::write(
        url.folder().unwrap().join("0004f2000001.cfg"),
        b"<APPLICATION",
    )
    .unwrap();
    let (fetched, located) =
        locator(vec![url.clone()], static_master()).run(Some(&known), None, &files());
    assert_eq!(
        fetched[1].outcome,
        FetchOutcome::Body {
            bytes: b"phone in lic".to_vec()
        }
    );
    assert_eq!(located.found.as_ref().unwrap().licenses, known.licenses);
    assert!(
        located.notes[0].contains("does not read"),
        "{:?}",
        located.notes
    );
    // Without what was known: the root.
    let (fetched, _) = locator(vec![url.clone()], static_master()).run(None, None, &files());
    assert_eq!(
        fetched[1].outcome,
        FetchOutcome::Body {
            bytes: b"phone at the root".to_vec()
        }
    );
}

#[test]
fn no_master_file_is_the_root_and_no_server_is_a_failure_of_every_file() {
    let (_dir, url) = folder(&[("0004f2000001-license.cfg", b"root")]);
    let (fetched, located) = locator(vec![url.clone()], static_master()).run(None, None, &files());
    assert!(matches!(fetched[0].outcome, FetchOutcome::Absent { .. }));
    assert_eq!(
        fetched[1].outcome,
        FetchOutcome::Body {
            bytes: b"root".to_vec()
        }
    );
    assert!(located.master.starts_with("none ("), "{}", located.master);
    assert_eq!(located.found.unwrap().licenses, url);

    // DHCP without a lease, nothing remembered, no static server.
    let dir = tempfile::tempdir().unwrap();
    let settings = BootServer {
        dhcp_file: dir.path().join("dhcp"),
        ..dhcp()
    };
    let (fetched, located) = locator(Vec::new(), settings.clone()).run(None, None, &files());
    assert!(fetched
        .iter()
        .all(|f| matches!(&f.outcome, FetchOutcome::Failed(e) if e.detail.contains("no provisioning server"))));
    assert_eq!(located.found, None);
    assert_eq!(located.notes, ["no DHCP lease yet (no file from the hook)"]);
    // A lease file that is too big, or a folder in its place: said, and the static one.
    std::fs::write(dir.path().join("dhcp"), vec![b'#'; 20_000]).unwrap();
    let (_, located) = locator(vec![url.clone()], settings.clone()).run(None, None, &files());
    assert!(
        located.notes[0].contains("larger than"),
        "{:?}",
        located.notes
    );
    assert_eq!(located.found.unwrap().server.origin, Origin::Static);
}

#[test]
fn the_store_keeps_no_credentials_and_a_record_that_does_not_read_is_ignored() {
    let known = Known {
        server: Candidate {
            url: ServerUrl::test("https://phone:S3cret@prov/"),
            master_file: Some("phone1.cfg".into()),
            origin: Origin::Dhcp(160),
        },
        licenses: ServerUrl::test("https://phone:S3cret@prov/lic/"),
        logs: ServerUrl::test("https://phone:S3cret@prov/logs/"),
    };
    let record = known.record();
    let json = serde_json::to_string(&record).unwrap();
    assert!(
        !json.contains("S3cret") && !json.contains("phone@"),
        "{json}"
    );
    let back = Known::from_record(&record, TRANSPORTS).unwrap();
    assert_eq!(back.server.url.as_str(), "https://prov/");
    assert_eq!(back.server.origin, Origin::Dhcp(160));
    assert_eq!(back.server.master_file.as_deref(), Some("phone1.cfg"));
    let mut bad = record.clone();
    bad.url = "file:///data/".into();
    assert!(Known::from_record(&bad, TRANSPORTS).is_err());
    let mut bad = record;
    bad.master_file = Some("../x.cfg".into());
    assert!(Known::from_record(&bad, TRANSPORTS).is_err());
}

/// A password written raw with `#` or `?` in it (common in passwords; a URL wants them
/// percent-encoded): the refusal, a note in `status` and the log, shows the URL without
/// its user info like every other refusal, never the password.
#[test]
fn a_refused_url_whose_password_holds_a_hash_or_a_question_mark_shows_no_password() {
    for value in ["ftp://user:pa#ss@host/", "http://user:s3cr?t@host/phones/"] {
        let why = named(value).unwrap_err();
        assert!(!why.contains("pa#ss") && !why.contains("s3cr?t"), "{why}");
        // And a master file's LOG_FILE_DIRECTORY written the same way.
        let server = ServerUrl::test("http://prov/");
        let why = master::resolve(&server, Some(value), TRANSPORTS).unwrap_err();
        assert!(!why.contains("pa#ss") && !why.contains("s3cr?t"), "{why}");
    }
}

/// `meta.json` with a `boot_server` that does not read (written by hand, or by another
/// build): the remembered server is ignored, as `Known::from_record` promises; the rest
/// of the metadata (the latest trusted time, the published set, the reboot record) is
/// kept, not set aside with it.
#[test]
fn a_boot_server_record_that_does_not_read_costs_nothing_else_of_the_metadata() {
    for record in [
        r#"{"url": 5}"#,
        r#"{"url": "ftp://prov/"}"#,
        r#""ftp://prov/""#,
        r#"{"url": "ftp://prov/", "origin": null, "licenses": [], "logs": {}}"#,
    ] {
        let text = format!(r#"{{"latest_trusted": 1700000000, "boot_server": {record}}}"#);
        let meta = serde_json::from_str::<crate::storage::meta::Meta>(&text);
        assert!(
            meta.as_ref().is_ok_and(|m| m.latest_trusted.is_some()),
            "{record}: {meta:?}"
        );
    }
}
