//! No input fools or crashes the verifier.
//!
//! - Every single-bit flip and every truncation of every valid vector (exhaustively, not
//!   sampled) is refused, or is still valid with the identical signed message (a flip in
//!   white space, a comment, or the case of a hex digit).
//! - Random bytes, and random edits of valid files, never panic (proptest), in the
//!   library and through the real binary.

use crate::common;

use std::io::Write;
use std::process::Stdio;
use std::sync::OnceLock;

use common::{agent, announced_verdict, assert_no_crash, cfg_files, own_vectors};
use license_agent::format::{self, FormatError, MAX_FILE_SIZE};
use license_agent::trust::{Keyring, Rejection};
use proptest::prelude::*;

fn keyring() -> Keyring {
    Keyring::load(&own_vectors().join("keyring")).expect("vector keyring")
}

fn valid_vectors() -> Vec<(String, Vec<u8>)> {
    cfg_files(&own_vectors())
        .into_iter()
        .filter(|f| announced_verdict(f) == "valid")
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&f).unwrap(),
            )
        })
        .collect()
}

/// The property: refused, or valid with exactly the original signed message.
fn refused_or_same(keyring: &Keyring, original: &[u8], changed: &[u8]) -> Result<bool, String> {
    match keyring.verify_bytes(changed) {
        Err(_) => Ok(false),
        Ok(v) if v.signed_message() == original => Ok(true),
        Ok(_) => Err(format!(
            "accepted with a different signed message: {:?}",
            String::from_utf8_lossy(changed)
        )),
    }
}

#[test]
fn every_single_bit_flip_is_refused_or_carries_the_same_license() {
    let keyring = keyring();
    let mut accepted = 0usize;
    let mut total = 0usize;
    for (name, bytes) in valid_vectors() {
        let original = keyring
            .verify_bytes(&bytes)
            .unwrap()
            .signed_message()
            .to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut changed = bytes.clone();
            changed[bit / 8] ^= 1 << (bit % 8);
            total += 1;
            match refused_or_same(&keyring, &original, &changed) {
                Ok(same) => accepted += usize::from(same),
                Err(e) => panic!("{name}, bit {bit}: {e}"),
            }
        }
    }
    // Some flips are harmless (comment text, hex case): the property is not vacuous.
    assert!(
        accepted > 0 && accepted < total,
        "{accepted} of {total} flips accepted"
    );
    println!(
        "{total} flips: {accepted} harmless, {} refused",
        total - accepted
    );
}

#[test]
fn every_truncation_is_refused_or_carries_the_same_license() {
    let keyring = keyring();
    for (name, bytes) in valid_vectors() {
        let original = keyring
            .verify_bytes(&bytes)
            .unwrap()
            .signed_message()
            .to_vec();
        let mut still_valid = 0;
        for len in 0..bytes.len() {
            match refused_or_same(&keyring, &original, &bytes[..len]) {
                Ok(same) => still_valid += usize::from(same),
                Err(e) => panic!("{name}, cut at {len}: {e}"),
            }
        }
        // Only cutting trailing white space or a trailing comment can leave it valid.
        let tail = bytes.len() - bytes.windows(10).rposition(|w| w == b"</LICENSE>").unwrap() - 10;
        assert!(
            still_valid <= tail,
            "{name}: {still_valid} truncations valid, tail is {tail} bytes"
        );
    }
}

#[test]
fn oversize_is_refused_by_size_before_syntax() {
    let mut bytes = std::fs::read(own_vectors().join("valid-phone-perpetual.cfg")).unwrap();
    bytes.resize(MAX_FILE_SIZE + 1, b' ');
    match format::parse(&bytes) {
        Err(FormatError::Malformed(m)) => {
            assert!(m.at.is_none() && m.reason.contains("65537 bytes"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Exactly the cap is allowed (trailing white space after the root).
    bytes.truncate(MAX_FILE_SIZE);
    assert!(keyring().verify_bytes(&bytes).is_ok());
}

#[test]
fn the_verdict_order_of_the_spec_holds() {
    let keyring = keyring();
    let base = std::fs::read_to_string(own_vectors().join("valid-phone-perpetual.cfg")).unwrap();
    // An unknown key and a bad version: version is judged first.
    let both = base
        .replace("<Version>2.0", "<Version>3.0")
        .replace("03A548A2", "DEADBEEF");
    assert!(matches!(
        keyring.verify_bytes(both.as_bytes()),
        Err(Rejection::UnsupportedVersion { .. })
    ));
    // A bad version and a malformed table: malformed first.
    let both = base
        .replace("<Version>2.0", "<Version>3.0")
        .replace("<Features>0001", "<Features>0000");
    assert!(matches!(
        keyring.verify_bytes(both.as_bytes()),
        Err(Rejection::Malformed(_))
    ));
    // An unknown key and a broken signature: unknown key first.
    let both = base
        .replace("03A548A2", "DEADBEEF")
        .replace("<Signature>e", "<Signature>f");
    assert!(matches!(
        keyring.verify_bytes(both.as_bytes()),
        Err(Rejection::UnknownKey { .. })
    ));
}

/// The keyring and the signed messages of the valid vectors, loaded once.
fn shared() -> &'static (Keyring, Vec<Vec<u8>>) {
    static SHARED: OnceLock<(Keyring, Vec<Vec<u8>>)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let keyring = keyring();
        let messages = valid_vectors()
            .into_iter()
            .map(|(_, b)| keyring.verify_bytes(&b).unwrap().signed_message().to_vec())
            .collect();
        (keyring, messages)
    })
}

/// One valid file edited at random, and what the edit must give.
#[derive(Debug, Clone)]
struct Edit {
    /// The file's number, in [`valid_vectors`]'s order (as in [`shared`]).
    file: usize,
    bytes: Vec<u8>,
    must: Must,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Must {
    /// No edit (or a byte replaced by itself): the file verifies.
    Verify,
    /// A hex digit of `<Serial>`, `<Key>` or `<Signature>` given another value: the
    /// serial, the key or the signature is another one, and the file is refused.
    BeRefused,
    /// Anything else (the format ignores some edits: white space, a comment): refused,
    /// or the very license of the file it was made from.
    RefuseOrKeep,
}

/// The spans of `<Serial>`, `<Key>` and `<Signature>` whose text is hex digits only.
fn hex_fields(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    ["Serial", "Key", "Signature"]
        .into_iter()
        .filter_map(|tag| {
            let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
            let start = find(bytes, open.as_bytes())? + open.len();
            let end = start + find(&bytes[start..], close.as_bytes())?;
            let text = &bytes[start..end];
            (!text.is_empty() && text.iter().all(u8::is_ascii_hexdigit)).then_some(start..end)
        })
        .collect()
}

/// A valid file with one random edit: a byte replaced (half the time by a hex digit),
/// inserted or removed, or (one case in 8) none.
fn edited() -> impl Strategy<Value = Edit> {
    let files: Vec<Vec<u8>> = valid_vectors().into_iter().map(|(_, b)| b).collect();
    (
        0..files.len(),
        any::<prop::sample::Index>(),
        prop_oneof![
            any::<u8>(),
            prop::sample::select(b"0123456789abcdefABCDEF".to_vec())
        ],
        prop_oneof![7 => 0..3u8, 1 => Just(3u8)],
    )
        .prop_map(move |(file, at, byte, op)| {
            let original = &files[file];
            let mut bytes = original.clone();
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                2 => {
                    bytes.remove(i);
                }
                _ => {}
            }
            let digit = |b: u8| char::from(b).to_digit(16);
            let must = if bytes == *original {
                Must::Verify
            } else if op == 0
                && hex_fields(original).iter().any(|span| span.contains(&i))
                && digit(byte).is_some()
                && digit(byte) != digit(original[i])
            {
                Must::BeRefused
            } else {
                Must::RefuseOrKeep
            };
            Edit { file, bytes, must }
        })
}

/// Fragments of the format glued in random order: reaches deep into the syntax layer.
fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = [
        "<?xml version=\"1.0\"?>",
        "<LICENSE>",
        "</LICENSE>",
        "<Serial>",
        "</Serial>",
        "0004f2000001",
        "<Version>",
        "</Version>",
        "2.0",
        "<Description>",
        "</Description>",
        "Phone",
        "Site",
        "<Key>",
        "</Key>",
        "03A548A2",
        "<Features>",
        "</Features>",
        "000102006955b900ffffffff00000000",
        "<Signature>",
        "</Signature>",
        "<!--",
        "-->",
        "<!DOCTYPE",
        "&amp;",
        "<![CDATA[",
        "]]>",
        "<?pi?>",
        " ",
        "\n",
        "<",
        ">",
        "/>",
        "=\"x\"",
        "\u{e9}",
    ];
    prop::collection::vec(prop::sample::select(pieces.to_vec()), 0..40)
        .prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = shared().0.verify_bytes(&bytes);
    }

    /// Every case says what must hold: a file as it was verifies, one whose serial, key
    /// or signature was given another digit is refused, and any other edit is refused or
    /// (an edit the format ignores) carries the very license of its file.
    #[test]
    fn random_edits_are_refused_or_carry_the_same_license(edit in edited()) {
        let (keyring, originals) = shared();
        let verdict = keyring.verify_bytes(&edit.bytes);
        match (&verdict, edit.must) {
            (Ok(v), Must::Verify | Must::RefuseOrKeep) => prop_assert_eq!(
                v.signed_message(),
                &originals[edit.file][..],
                "an edit of valid vector {} verifies as another license",
                edit.file
            ),
            (Err(_), Must::BeRefused | Must::RefuseOrKeep) => {}
            (Ok(_), Must::BeRefused) => prop_assert!(
                false,
                "valid vector {} with a digit of its serial, key or signature changed \
                 verifies: {:?}",
                edit.file,
                String::from_utf8_lossy(&edit.bytes)
            ),
            (Err(rejection), Must::Verify) => prop_assert!(
                false,
                "valid vector {} itself is refused: {}",
                edit.file,
                rejection
            ),
        }
    }

    #[test]
    fn xml_like_input_never_panics(bytes in xmlish()) {
        let _ = format::parse(&bytes);
    }

    #[test]
    fn keyring_text_never_panics(lines in prop::collection::vec(keyring_line(), 0..8)) {
        let _ = Keyring::parse(&lines.join("\n"));
    }
}

/// Lines that look like keyring lines, and some that only nearly do.
fn keyring_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "ed25519[ \t]{0,2}[0-9a-fA-F]{60,68}[ -~]{0,10}",
        "[ \t]*#[ -~]{0,20}",
        "(ed25519|ED25519|rsa)? ?[0-9a-f#]{0,70}",
    ]
}

/// Command lines of words the binaries know, mixed with arbitrary ones.
fn command_line() -> impl Strategy<Value = Vec<String>> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "verify",
            "inspect",
            "help",
            "keygen",
            "pubkey",
            "sign",
            "--json",
            "--keyring",
            "--key",
            "--serial",
            "--kind",
            "--feature",
            "--label",
            "-o",
            "--help",
            "-h",
            "--version",
            "-V",
            "-",
            "--",
            "phone",
            "site",
            "0004f2000001",
            "vqmon,new,2026-01-01T00:00:00Z,never",
            "tests/vectors/keyring",
            "tests/vectors/valid-phone-perpetual.cfg",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}",
        "--[a-z=]{0,8}",
    ];
    prop::collection::vec(word, 0..7)
}

proptest! {
    // Each case starts processes: fewer cases.
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn neither_binary_panics_on_any_command_line(args in command_line()) {
        // Run from the crate root so the relative paths in the word list exist; outputs
        // go to a scratch folder (the issuer's -o never overwrites a key, but may write).
        let scratch = tempfile::tempdir().unwrap();
        let args: Vec<String> = args
            .into_iter()
            .map(|a| if a == "-o" { format!("-o{}/out", scratch.path().display()) } else { a })
            .collect();
        for mut cmd in [agent(), common::issuer()] {
            let out = cmd
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_no_crash(&out);
            prop_assert!(matches!(out.status.code(), Some(0..=2)), "{args:?}: {:?}", out.status);
        }
    }
}

proptest! {
    // Each case starts a process: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_binary_never_panics_on_random_input(bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..4096), edited().prop_map(|edit| edit.bytes), xmlish()]) {
        let keyring = own_vectors().join("keyring");
        for command in ["verify", "inspect"] {
            let mut child = agent()
                .args([command.as_ref(), "--json".as_ref(), "--keyring".as_ref(), keyring.as_os_str(), "-".as_ref()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let _ = child.stdin.take().unwrap().write_all(&bytes);
            let out = child.wait_with_output().unwrap();
            assert_no_crash(&out);
            prop_assert!(matches!(out.status.code(), Some(0) | Some(1)));
            let line = String::from_utf8(out.stdout).unwrap();
            let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            prop_assert!(v["verdict"].is_string() && v["detail"].is_string());
        }
    }
}
