//! `license-issuer` end to end: keys, signing, refusals, and proof that what it signs is
//! byte-exact to the spec, checked by an independent implementation (the signed message
//! rebuilt here by hand from the spec, and OpenSSL's Ed25519) and the other way round.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{agent, issuer, run, stdout};
use serde_json::Value;

struct Vendor {
    dir: tempfile::TempDir,
    key: PathBuf,
    keyring: PathBuf,
}

fn vendor() -> Vendor {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key");
    let out = run(
        issuer(),
        [
            "keygen".as_ref(),
            "-o".as_ref(),
            key.as_os_str(),
            "--label".as_ref(),
            "test vendor".as_ref(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keyring = dir.path().join("keyring");
    std::fs::write(&keyring, stdout(&out)).unwrap();
    Vendor { dir, key, keyring }
}

fn sign(v: &Vendor, args: &[&str], name: &str) -> PathBuf {
    let path = v.dir.path().join(name);
    let mut all = vec![
        "sign",
        "--key",
        v.key.to_str().unwrap(),
        "-o",
        path.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = run(issuer(), all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn verify_json(keyring: &Path, file: &Path) -> Value {
    let out = run(
        agent(),
        [
            "verify".as_ref(),
            "--json".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            file.as_os_str(),
        ],
    );
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let v = vendor();
    let mode = std::fs::metadata(&v.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let line = std::fs::read_to_string(&v.keyring).unwrap();
    assert!(
        line.starts_with("ed25519 ") && line.trim_end().ends_with("test vendor"),
        "{line}"
    );
    let before = std::fs::read(&v.key).unwrap();
    let out = run(
        issuer(),
        ["keygen".as_ref(), "-o".as_ref(), v.key.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read(&v.key).unwrap(),
        before,
        "the key file is untouched"
    );
    // pubkey prints the same keyring line again.
    let out = run(
        issuer(),
        [
            "pubkey".as_ref(),
            "--key".as_ref(),
            v.key.as_os_str(),
            "--label".as_ref(),
            "test vendor".as_ref(),
        ],
    );
    assert_eq!(stdout(&out), line);
}

#[test]
fn signed_licenses_verify_and_round_trip_through_inspect() {
    let v = vendor();
    let file = sign(
        &v,
        &[
            "--serial",
            "0004F2ABCDEF",
            "--kind",
            "site",
            "--feature",
            "vqmon,trial,2026-01-01T00:00:00Z,2027-06-30T12:00:00Z",
            "--feature",
            "0x0003,renewal,2026-01-01T00:00:00+02:00,never,25",
            "--feature",
            "feature-0abc,addon,2026-03-01T00:00:00Z,2026-04-01T00:00:00Z,0",
        ],
        "site.cfg",
    );
    let verdict = verify_json(&v.keyring, &file);
    assert_eq!(verdict["verdict"], "valid", "{verdict}");

    let out = run(
        agent(),
        ["inspect".as_ref(), "--json".as_ref(), file.as_os_str()],
    );
    let inspected: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(inspected["serial"], "0004f2abcdef");
    assert_eq!(inspected["kind"], "site");
    assert_eq!(inspected["key"], verdict["key"]);
    let f = inspected["features"].as_array().unwrap();
    let rows: Vec<(u64, &str, &str, &str, &str, u64)> = f
        .iter()
        .map(|e| {
            (
                e["id"].as_u64().unwrap(),
                e["name"].as_str().unwrap(),
                e["transaction"].as_str().unwrap(),
                e["start"].as_str().unwrap(),
                e["end"].as_str().unwrap(),
                e["limit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                2,
                "vqmon",
                "trial",
                "2026-01-01T00:00:00Z",
                "2027-06-30T12:00:00Z",
                0
            ),
            (
                3,
                "productivity-suite",
                "renewal",
                "2025-12-31T22:00:00Z",
                "never",
                25
            ),
            (
                0xabc,
                "feature-0abc",
                "addon",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
                0
            ),
        ]
    );
    // Text inspect shows the features by name.
    let out = run(agent(), ["inspect".as_ref(), file.as_os_str()]);
    assert!(stdout(&out).contains("productivity-suite") && stdout(&out).contains("vqmon"));

    // Without the key in the keyring, the same file is an unknown key.
    let vectors_keyring = common::own_vectors().join("keyring");
    assert_eq!(
        verify_json(&vectors_keyring, &file)["verdict"],
        "unknown-key"
    );
}

#[test]
fn the_issuer_refuses_what_the_agent_would_refuse() {
    let v = vendor();
    let key = v.key.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--serial",
                "0004f2",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,2026-01-01T00:00:00Z,never",
            ],
            "serial",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "desk",
                "--feature",
                "vqmon,new,2026-01-01T00:00:00Z,never",
            ],
            "kind",
        ),
        (
            &["--serial", "0004f2000001", "--kind", "phone"],
            "at least one --feature",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,2026-01-01T00:00:00Z",
            ],
            "NAME_OR_ID",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "fax,new,2026-01-01T00:00:00Z,never",
            ],
            "not a known name",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,gift,2026-01-01T00:00:00Z,never",
            ],
            "transaction",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,yesterday,never",
            ],
            "RFC 3339",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,never,never",
            ],
            "START cannot be never",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,1969-12-31T23:59:59Z,never",
            ],
            "between 1970",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,2026-01-01T00:00:00.5Z,never",
            ],
            "whole seconds",
        ),
        (
            &[
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,2026-01-01T00:00:00Z,never,-1",
            ],
            "LIMIT",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["sign", "--key", key];
        all.extend_from_slice(args);
        let out = run(issuer(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Rules of the table itself (checked by the agent's own code) exit 1 and write nothing.
    let target = v.dir.path().join("never-written.cfg");
    for features in [
        vec![
            "vqmon,new,2026-01-01T00:00:00Z,never",
            "2,new,2026-01-01T00:00:00Z,never",
        ],
        vec!["vqmon,new,2026-02-01T00:00:00Z,2026-01-01T00:00:00Z"],
    ] {
        let mut all = vec![
            "sign",
            "--key",
            key,
            "--serial",
            "0004f2000001",
            "--kind",
            "phone",
            "-o",
            target.to_str().unwrap(),
        ];
        for f in &features {
            all.extend_from_slice(&["--feature", f]);
        }
        let out = run(issuer(), &all);
        assert_eq!(out.status.code(), Some(1), "{features:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("feature record"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!target.exists());
    }
}

// ---- Independent implementation: the spec's message built here, OpenSSL's Ed25519 ----

/// The DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410).
const SPKI_PREFIX: &str = "302a300506032b6570032100";

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed by the README's test command (scripts/setup-cross.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The text of the element `name` in a license file, trimmed.
fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let from = xml.find(&open).unwrap() + open.len();
    let to = xml[from..].find(&format!("</{name}>")).unwrap() + from;
    xml[from..to].trim()
}

/// The spec's signed message, rebuilt from the XML without the crate's code.
fn message_by_hand(xml: &str) -> Vec<u8> {
    let mut msg = b"PLCM-LICENSE-2.0\n".to_vec();
    msg.extend_from_slice(format!("{}\n", element(xml, "Serial").to_lowercase()).as_bytes());
    msg.extend_from_slice(format!("{}\n", element(xml, "Description")).as_bytes());
    msg.extend_from_slice(format!("{}\n", element(xml, "Key").to_uppercase()).as_bytes());
    msg.extend_from_slice(&hex::decode(element(xml, "Features")).unwrap());
    msg
}

#[test]
fn openssl_verifies_what_license_issuer_signs() {
    let v = vendor();
    let file = sign(
        &v,
        &[
            "--serial",
            "0004f2000001",
            "--kind",
            "phone",
            "--feature",
            "lync,new,2026-01-01T00:00:00Z,never",
            "--feature",
            "h323,trial,2026-02-01T00:00:00Z,2026-03-01T00:00:00Z,3",
        ],
        "phone.cfg",
    );
    let xml = std::fs::read_to_string(&file).unwrap();
    let keyring = std::fs::read_to_string(&v.keyring).unwrap();
    let public = hex::decode(keyring.split_whitespace().nth(1).unwrap()).unwrap();
    let d = v.dir.path();
    std::fs::write(
        d.join("pub.der"),
        hex::decode(format!("{SPKI_PREFIX}{}", hex::encode(&public))).unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("msg.bin"), message_by_hand(&xml)).unwrap();
    std::fs::write(
        d.join("sig.bin"),
        hex::decode(element(&xml, "Signature")).unwrap(),
    )
    .unwrap();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    let out = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-keyform",
        "DER",
        "-inkey",
        &p("pub.der"),
        "-rawin",
        "-in",
        &p("msg.bin"),
        "-sigfile",
        &p("sig.bin"),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));
    // And the key id in the file is the spec's: SHA-256 of the raw key, first 4 bytes.
    std::fs::write(d.join("pub.raw"), &public).unwrap();
    let out = openssl(&["dgst", "-sha256", "-r", &p("pub.raw")]);
    let sha = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(element(&xml, "Key"), sha[..8].to_uppercase());
}

#[test]
fn a_license_signed_by_openssl_from_the_spec_alone_is_valid() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
    // An OpenSSL key (PKCS#8 v1), its raw public key, and the key id per the spec.
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-outform",
        "DER",
        "-out",
        &p("key.der"),
    ]);
    openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        &p("key.der"),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        &p("pub.der"),
    ]);
    let spki = std::fs::read(p("pub.der")).unwrap();
    let public = &spki[spki.len() - 32..];
    std::fs::write(p("pub.raw"), public).unwrap();
    let sha = String::from_utf8_lossy(&openssl(&["dgst", "-sha256", "-r", &p("pub.raw")]).stdout)
        .to_string();
    let key_id = sha[..8].to_uppercase();
    // A site license with two features, table written by hand.
    let table = "0005010069559b00ffffffff00000000000602006955b9006b36ec8000000064";
    let xml_without_sig = format!(
        "<LICENSE>\n <Serial>100000000001</Serial>\n <Version>2.0</Version>\n <Description>Site</Description>\n <Key>{key_id}</Key>\n <Features>{table}</Features>\n"
    );
    std::fs::write(
        p("msg.bin"),
        message_by_hand(&format!("{xml_without_sig}</LICENSE>")),
    )
    .unwrap();
    openssl(&[
        "pkeyutl",
        "-sign",
        "-keyform",
        "DER",
        "-inkey",
        &p("key.der"),
        "-rawin",
        "-in",
        &p("msg.bin"),
        "-out",
        &p("sig.bin"),
    ]);
    let sig = hex::encode(std::fs::read(p("sig.bin")).unwrap());
    let file = d.path().join("000000000000-license.cfg");
    std::fs::write(
        &file,
        format!("{xml_without_sig} <Signature>{sig}</Signature>\n</LICENSE>\n"),
    )
    .unwrap();
    let keyring = d.path().join("keyring");
    std::fs::write(
        &keyring,
        format!("ed25519 {} openssl key\n", hex::encode(public)),
    )
    .unwrap();

    let v = verify_json(&keyring, &file);
    assert_eq!(v["verdict"], "valid", "{v}");
    assert_eq!(v["key"], key_id);
    assert_eq!(v["features"][0]["name"], "lync");
    assert_eq!(v["features"][1]["name"], "conference-management");
    assert_eq!(v["features"][1]["limit"], 100);

    // license-issuer reads the OpenSSL key (PKCS#8 v1) and names the same key.
    let out = run(issuer(), ["pubkey", "--key", &p("key.der")]);
    assert!(
        stdout(&out).starts_with(&format!("ed25519 {}", hex::encode(public))),
        "{}",
        stdout(&out)
    );
}

// ---- addon, renew and the fewer-features check (issue 25, item 7) ----

/// The issuer's clock for these tests (the crate's test clock).
const NOW: &str = "2026-06-01T00:00:00Z";

fn issuer_at(args: &[&str]) -> std::process::Output {
    let mut cmd = issuer();
    cmd.env("LICENSE_AGENT_TEST_NOW", NOW);
    run(cmd, args)
}

/// The site file in force: vqmon, usb-call-recording and 100 managed devices of
/// conference-management, New until 2027.
fn site_in_force(v: &Vendor) -> PathBuf {
    sign(
        v,
        &[
            "--serial",
            "100000000001",
            "--kind",
            "site",
            "--feature",
            "vqmon,new,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z",
            "--feature",
            "usb-call-recording,new,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z",
            "--feature",
            "conference-management,new,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z,100",
        ],
        "site.cfg",
    )
}

/// The 32-hex-digit records of a file's feature table.
fn records(file: &Path) -> Vec<String> {
    let xml = std::fs::read_to_string(file).unwrap();
    let table = element(&xml, "Features").to_string();
    (0..table.len() / 32)
        .map(|i| table[i * 32..(i + 1) * 32].to_string())
        .collect()
}

fn inspected_features(file: &Path) -> Vec<(String, String, String, String, u64)> {
    let out = run(
        agent(),
        ["inspect".as_ref(), "--json".as_ref(), file.as_os_str()],
    );
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["transaction"].as_str().unwrap().to_string(),
                e["start"].as_str().unwrap().to_string(),
                e["end"].as_str().unwrap().to_string(),
                e["limit"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(
    name: &str,
    t: &str,
    start: &str,
    end: &str,
    limit: u64,
) -> (String, String, String, String, u64) {
    (name.into(), t.into(), start.into(), end.into(), limit)
}

#[test]
fn addon_then_renew_build_from_the_file_in_force() {
    let v = vendor();
    let current = site_in_force(&v);
    let key = v.key.to_str().unwrap();
    let added = v.dir.path().join("addon.cfg");
    let out = issuer_at(&[
        "addon",
        "--key",
        key,
        "--from",
        current.to_str().unwrap(),
        "--feature",
        "conference-management",
        "--limit",
        "20",
        "-o",
        added.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("note: conference-management: an Addon of 20"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(verify_json(&v.keyring, &added)["verdict"], "valid");
    // The other records are the same 16 bytes, in the same places.
    let (old, new) = (records(&current), records(&added));
    assert_eq!(old[..2], new[..2]);
    assert_ne!(old[2], new[2]);
    assert_eq!(
        inspected_features(&added)[2],
        row(
            "conference-management",
            "addon",
            NOW,
            "2027-01-01T00:00:00Z",
            20
        )
    );

    // Renew every feature of the Addon's file, rolling the Addon into 120; --until in
    // Unix seconds (2028-01-01).
    let renewed = v.dir.path().join("renewal.cfg");
    let out = issuer_at(&[
        "renew",
        "--key",
        key,
        "--keyring",
        v.keyring.to_str().unwrap(),
        "--from",
        added.to_str().unwrap(),
        "--until",
        "1830297600",
        "--limit",
        "120",
        "-o",
        renewed.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("rolls together the Addon of 20"),
        "{stderr}"
    );
    assert_eq!(verify_json(&v.keyring, &renewed)["verdict"], "valid");
    let (s, e) = ("2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");
    assert_eq!(
        inspected_features(&renewed),
        [
            row("vqmon", "renewal", s, e, 120),
            row("usb-call-recording", "renewal", s, e, 120),
            row("conference-management", "renewal", s, e, 120),
        ]
    );
    // Renewing vqmon alone: the others are kept byte for byte, and since they have
    // started, the Renewal starts now (the agent uses the new file at once).
    let out = issuer_at(&[
        "renew",
        "--key",
        key,
        "--from",
        current.to_str().unwrap(),
        "--until",
        "2028-01-01T00:00:00Z",
        "--feature",
        "vqmon",
        "-o",
        renewed.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records(&renewed)[1..], records(&current)[1..]);
    assert_eq!(
        inspected_features(&renewed)[0],
        row("vqmon", "renewal", NOW, e, 0)
    );
}

#[test]
fn a_file_with_fewer_features_is_refused_unless_allow_fewer() {
    let v = vendor();
    let current = site_in_force(&v);
    let target = v.dir.path().join("000000000000-license.cfg");
    // The finding: an Addon-only site file, same serial, same end.
    let args = |extra: &'static [&'static str]| {
        let mut all = vec![
            "sign".to_string(),
            "--key".into(),
            v.key.to_str().unwrap().into(),
            "--serial".into(),
            "100000000001".into(),
            "--kind".into(),
            "site".into(),
            "--feature".into(),
            "conference-management,addon,2026-06-01T00:00:00Z,2027-01-01T00:00:00Z,20".into(),
            "--previous".into(),
            current.to_str().unwrap().into(),
            "-o".into(),
            target.to_str().unwrap().into(),
        ];
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let out = issuer_at(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for feature in ["vqmon", "usb-call-recording"] {
        assert!(
            stderr.contains(&format!("warning: {feature}: ")),
            "{feature}: {stderr}"
        );
    }
    assert!(
        stderr.contains("latest end") && stderr.contains("--allow-fewer"),
        "{stderr}"
    );
    assert!(!target.exists(), "nothing is written");

    let out = issuer_at(
        &args(&["--allow-fewer"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: vqmon: "), "{stderr}");
    assert_eq!(verify_json(&v.keyring, &target)["verdict"], "valid");

    // addon compares with --from on its own: a future --start would leave a gap.
    let out = issuer_at(&[
        "addon",
        "--key",
        v.key.to_str().unwrap(),
        "--from",
        current.to_str().unwrap(),
        "--feature",
        "vqmon",
        "--limit",
        "5",
        "--start",
        "2026-09-01T00:00:00Z",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("grants it only from 2026-09-01"),
        "{stderr}"
    );
    assert_eq!(stdout(&out), "", "nothing is written");
}

#[test]
fn addon_and_renew_refusals() {
    let v = vendor();
    let current = site_in_force(&v);
    let key = v.key.to_str().unwrap();
    let from = current.to_str().unwrap();
    let other = vendor();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["addon", "--key", key, "--from", from, "--feature", "vqmon"],
            2,
            "--limit N",
        ),
        (
            &["addon", "--key", key, "--from", from, "--limit", "5"],
            2,
            "exactly one --feature",
        ),
        (
            &[
                "addon",
                "--key",
                key,
                "--from",
                from,
                "--feature",
                "vqmon",
                "--limit",
                "5",
                "--until",
                "2028-01-01T00:00:00Z",
            ],
            2,
            "addon does not take --until",
        ),
        (
            &["addon", "--key", key, "--feature", "vqmon", "--limit", "5"],
            2,
            "--from FILE",
        ),
        (&["renew", "--key", key, "--from", from], 2, "--until TIME"),
        (
            &["renew", "--key", key, "--from", from, "--until", "soon"],
            2,
            "RFC 3339",
        ),
        (
            &["sign", "--key", key, "--from", from],
            2,
            "sign does not take --from",
        ),
        (
            &[
                "addon",
                "--key",
                key,
                "--from",
                from,
                "--feature",
                "h323",
                "--limit",
                "5",
            ],
            1,
            "h323 is not in the current file",
        ),
        (
            &[
                "addon",
                "--key",
                key,
                "--from",
                from,
                "--feature",
                "vqmon",
                "--limit",
                "5",
                "--start",
                "2027-01-01T00:00:00Z",
            ],
            1,
            "not after the Addon's start",
        ),
        (
            &[
                "renew",
                "--key",
                key,
                "--from",
                from,
                "--until",
                "2026-12-01T00:00:00Z",
            ],
            1,
            "does not extend",
        ),
        (
            &[
                "renew",
                "--key",
                key,
                "--from",
                from,
                "--until",
                "2028-01-01T00:00:00Z",
                "--start",
                "2027-02-01T00:00:00Z",
            ],
            1,
            "would be off in between",
        ),
        // --from must verify: with another vendor's key it is an unknown key.
        (
            &[
                "addon",
                "--key",
                other.key.to_str().unwrap(),
                "--from",
                from,
                "--feature",
                "vqmon",
                "--limit",
                "5",
            ],
            1,
            "not in the trusted keyring",
        ),
    ];
    for (args, code, expected) in cases {
        let out = issuer_at(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // A phone license takes no Addon.
    let phone = sign(
        &v,
        &[
            "--serial",
            "0004f2000001",
            "--kind",
            "phone",
            "--feature",
            "vqmon,new,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z,3",
        ],
        "phone.cfg",
    );
    let out = issuer_at(&[
        "addon",
        "--key",
        key,
        "--from",
        phone.to_str().unwrap(),
        "--feature",
        "vqmon",
        "--limit",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("phone license"));
    // A tampered --from is refused before anything is built.
    let xml = std::fs::read_to_string(&current).unwrap();
    let tampered = v.dir.path().join("tampered.cfg");
    std::fs::write(
        &tampered,
        xml.replace("<Serial>100000000001", "<Serial>100000000002"),
    )
    .unwrap();
    let out = issuer_at(&[
        "renew",
        "--key",
        key,
        "--from",
        tampered.to_str().unwrap(),
        "--until",
        "2028-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not match"));
}

/// A trust update's key ceremony with the real tool (`docs/trust-update.md`, "The
/// ceremony"): keys made apart, a draft, one signature line per root key made on its
/// own (as on separate machines), and the assembled document written only when the
/// agent's rules take it after the firmware keyring; below the threshold, or a version
/// that skips, nothing is written.
#[test]
fn a_trust_ceremony_signs_apart_and_writes_only_what_the_agent_takes() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&std::ffi::OsStr]| -> String {
        let out = run(issuer(), args.iter().copied());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let path = |name: &str| dir.path().join(name);
    let mut public = std::collections::HashMap::new();
    for name in ["root1", "root2", "root3", "license1", "license2"] {
        let line = ok(&["keygen".as_ref(), "-o".as_ref(), path(name).as_os_str()]);
        public.insert(name, line.split_whitespace().nth(1).unwrap().to_string());
    }
    std::fs::write(
        path("firmware.keyring"),
        format!(
            "version 0\nroot-threshold 2\nroot ed25519 {}\nroot ed25519 {}\nroot ed25519 {}\ned25519 {}\n",
            public["root1"], public["root2"], public["root3"], public["license1"]
        ),
    )
    .unwrap();
    // The firmware keyring still verifies licenses as before (roots sign none).
    let license = path("phone.cfg");
    ok(&[
        "sign".as_ref(),
        "--key".as_ref(),
        path("license1").as_os_str(),
        "--serial".as_ref(),
        "0004f2000001".as_ref(),
        "--kind".as_ref(),
        "phone".as_ref(),
        "--feature".as_ref(),
        "vqmon,new,2026-01-01T00:00:00Z,never".as_ref(),
        "-o".as_ref(),
        license.as_os_str(),
    ]);
    let verified = run(
        agent(),
        [
            "verify".as_ref(),
            "--keyring".as_ref(),
            path("firmware.keyring").as_os_str(),
            license.as_os_str(),
        ],
    );
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));

    // Version 1: license1 replaced by license2.
    let draft = path("trust-1.draft");
    ok(&[
        "trust-draft".as_ref(),
        "--trust-version".as_ref(),
        "1".as_ref(),
        "--root-threshold".as_ref(),
        "2".as_ref(),
        "--root".as_ref(),
        public["root1"].as_ref(),
        "--root".as_ref(),
        public["root2"].as_ref(),
        "--root".as_ref(),
        public["root3"].as_ref(),
        "--license".as_ref(),
        public["license2"].as_ref(),
        "-o".as_ref(),
        draft.as_os_str(),
    ]);
    for signer in ["root1", "root3"] {
        let line = ok(&[
            "trust-sign".as_ref(),
            "--key".as_ref(),
            path(signer).as_os_str(),
            "--draft".as_ref(),
            draft.as_os_str(),
        ]);
        assert!(line.starts_with("signature "), "{line}");
        std::fs::write(path(&format!("{signer}.sig")), line).unwrap();
    }
    let assemble = |sigs: &[&str], out: &Path| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "trust-assemble".into(),
            "--draft".into(),
            draft.clone().into(),
            "--previous".into(),
            path("firmware.keyring").into(),
            "-o".into(),
            out.into(),
        ];
        for sig in sigs {
            args.push("--signature".into());
            args.push(path(&format!("{sig}.sig")).into());
        }
        run(issuer(), args)
    };
    let done = path("trust-1.cfg");
    let out = assemble(&["root1", "root3"], &done);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&done).unwrap();
    assert!(
        text.contains("license-agent-trust 1\nversion 1\n"),
        "{text}"
    );
    assert_eq!(text.matches("\nsignature ").count(), 2, "{text}");
    // One signature is below the threshold of version 0: refused, nothing written.
    let short = path("short.cfg");
    let out = assemble(&["root1"], &short);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("below the old threshold: 1 of the 2"),
        "{said}"
    );
    assert!(!short.exists());
}
