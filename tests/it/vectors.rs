//! Every vector of the independent implementation gives the verdict its name announces,
//! through the real binary (`verify --json`), and the facts the vectors' README states
//! hold. Run against the armv7 build too (see `common::agent`).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{agent, announced_verdict, cfg_files, run, stdout, vector_dirs};
use serde_json::Value;

/// `verify --json` over a whole folder: file name → JSON object.
fn verify_folder(dir: &Path) -> (BTreeMap<String, Value>, Option<i32>) {
    let files = cfg_files(dir);
    assert!(
        files.len() >= 40,
        "{}: only {} vectors",
        dir.display(),
        files.len()
    );
    let mut args = vec![
        "verify".into(),
        "--json".into(),
        "--keyring".into(),
        dir.join("keyring").into_os_string(),
    ];
    args.extend(files.iter().map(|f| f.clone().into_os_string()));
    let out = run(agent(), args);
    let mut by_name = BTreeMap::new();
    for line in stdout(&out).lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        let file = v["file"].as_str().expect("file").to_string();
        let name = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        by_name.insert(name, v);
    }
    assert_eq!(by_name.len(), files.len(), "one line per file");
    (by_name, out.status.code())
}

#[test]
fn every_vector_gets_the_verdict_its_name_announces() {
    for dir in vector_dirs() {
        let (reports, code) = verify_folder(&dir);
        for (name, report) in &reports {
            let expected = announced_verdict(Path::new(name));
            assert_eq!(
                report["verdict"],
                expected,
                "{}: {name}: {report}",
                dir.display()
            );
            assert!(
                !report["detail"].as_str().unwrap_or("").is_empty(),
                "{name}: a verdict always says why"
            );
        }
        assert_eq!(code, Some(1), "some vectors are not valid, so exit 1");
    }
}

#[test]
fn valid_vectors_alone_exit_zero_and_show_their_content() {
    for dir in vector_dirs() {
        let valid: Vec<_> = cfg_files(&dir)
            .into_iter()
            .filter(|f| announced_verdict(f) == "valid")
            .collect();
        let mut args = vec![
            "verify".into(),
            "--json".into(),
            "--keyring".into(),
            dir.join("keyring").into_os_string(),
        ];
        args.extend(valid.iter().map(|f| f.clone().into_os_string()));
        let out = run(agent(), args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in stdout(&out).lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            for field in ["serial", "kind", "key", "features"] {
                assert!(!v[field].is_null(), "valid file lacks {field}: {v}");
            }
        }
    }
}

#[test]
fn site_vector_decodes_to_the_documented_features() {
    for dir in vector_dirs() {
        let (reports, _) = verify_folder(&dir);
        let site = &reports["valid-site-two-features.cfg"];
        assert_eq!(site["kind"], "site");
        assert_eq!(site["serial"], "100000000001");
        assert_eq!(site["key"], "03A548A2");
        let f = site["features"].as_array().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0]["id"].as_u64(), f[0]["name"].as_str()),
            (Some(2), Some("vqmon"))
        );
        assert_eq!(f[0]["transaction"], "trial");
        assert_eq!(f[0]["start"], "2026-01-01T00:00:00Z");
        // 1830297600 is 2028-01-01T00:00:00Z (the vectors' README names the day before).
        assert_eq!(f[0]["end"], "2028-01-01T00:00:00Z");
        assert_eq!(f[0]["limit"], 0);
        assert_eq!(
            (f[1]["id"].as_u64(), f[1]["name"].as_str()),
            (Some(3), Some("productivity-suite"))
        );
        assert_eq!(f[1]["transaction"], "renewal");
        assert_eq!(f[1]["end"], "2027-01-01T00:00:00Z");
        assert_eq!(f[1]["limit"], 25);

        let phone = &reports["valid-phone-perpetual.cfg"];
        assert_eq!(phone["kind"], "phone");
        assert_eq!(phone["serial"], "0004f2000001");
        assert_eq!(phone["features"][0]["name"], "usb-call-recording");
        assert_eq!(phone["features"][0]["transaction"], "new");
        assert_eq!(phone["features"][0]["end"], "never");

        assert_eq!(reports["valid-rotated-key.cfg"]["key"], "6C8B40D1");
        let unknown = &reports["valid-unknown-feature-id.cfg"]["features"][0];
        assert!(
            unknown["name"].as_str().unwrap().starts_with("feature-"),
            "{unknown}"
        );
        assert_eq!(
            reports["valid-256-features.cfg"]["features"]
                .as_array()
                .unwrap()
                .len(),
            256
        );
        assert!(reports["unknown-key-stranger.cfg"]["detail"]
            .as_str()
            .unwrap()
            .contains("51582D19"));
    }
}

#[test]
fn same_license_in_different_clothes_has_the_same_signed_message() {
    for dir in vector_dirs() {
        let out = run(
            agent(),
            [
                "inspect".as_ref(),
                "--json".as_ref(),
                dir.join("valid-phone-perpetual.cfg").as_os_str(),
                dir.join("valid-case-comments-whitespace.cfg").as_os_str(),
                dir.join("valid-no-declaration.cfg").as_os_str(),
            ],
        );
        assert_eq!(out.status.code(), Some(0));
        let messages: Vec<String> = stdout(&out)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["signed_message"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(messages.len(), 3);
        assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
        // The message starts with the spec's prefix line.
        assert!(messages[0].starts_with(&hex::encode(
            "PLCM-LICENSE-2.0\n0004f2000001\nPhone\n03A548A2\n"
        )));
    }
}

#[test]
fn own_copy_matches_the_shared_vectors() {
    let shared = common::shared_vectors();
    for file in cfg_files(&shared)
        .into_iter()
        .chain([shared.join("keyring")])
    {
        let own = common::own_vectors().join(file.file_name().unwrap());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            std::fs::read(&own).unwrap_or_default(),
            "tests/vectors/ is out of date for {}",
            file.display()
        );
    }
}
