//! `license-issuer` with keys in a real PKCS#11 token: SoftHSM2 (Debian's `softhsm2`,
//! installed by scripts/setup-servers.sh). Each test makes its own token directory and
//! token; the key pair is generated inside it, licenses and trust signatures are made
//! by it and judged by the agent's own binary, and no private key file appears.

use crate::common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{agent, issuer, run, stdout};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "246810";

/// A SoftHSM2 token of its own: its configuration, its token directory, its label.
struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
    label: &'static str,
}

impl Token {
    fn new() -> Token {
        assert!(
            Path::new(MODULE).is_file(),
            "{MODULE} missing: install softhsm2 (scripts/setup-servers.sh)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let label = "vendor-hsm";
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", "13579"])
            .output()
            .expect("softhsm2-util (install softhsm2: scripts/setup-servers.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Token { dir, conf, label }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// license-issuer with this token's configuration and `pin` in the environment.
    fn issuer_with(&self, pin: Option<&str>, args: &[&dyn AsRefOs]) -> Output {
        let mut cmd = issuer();
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .env_remove("LICENSE_ISSUER_PIN")
            .env_remove("LICENSE_ISSUER_PKCS11_MODULE");
        if let Some(pin) = pin {
            cmd.env("LICENSE_ISSUER_PIN", pin);
        }
        run(cmd, args.iter().map(|a| a.os()).collect::<Vec<_>>())
    }

    /// The options naming the key `key` of this token.
    fn key<'a>(&'a self, key: &'a str) -> [&'a str; 4] {
        ["--token", self.label, "--key-label", key]
    }

    /// Succeeds, and gives standard output.
    fn ok(&self, args: &[&dyn AsRefOs]) -> String {
        let out = self.issuer_with(Some(PIN), args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }

    /// Fails with `code`, without a panic, saying `says`.
    fn fails(&self, pin: Option<&str>, args: &[&dyn AsRefOs], code: i32, says: &str) {
        let out = self.issuer_with(pin, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(says), "expected {says:?} in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }

    /// No file under the test's directory holds an Ed25519 private key in the clear: no
    /// PKCS#8 document (v1 or v2: the OID then the OCTET STRING of the seed).
    fn assert_no_private_key_file(&self) {
        let needle = [0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let mut stack = vec![self.dir.path().to_path_buf()];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                seen += 1;
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds a private key in the clear",
                    path.display()
                );
            }
        }
        assert!(seen > 3, "the token's files were not found");
    }
}

/// Arguments of mixed kinds (&str and paths) in one list.
trait AsRefOs {
    fn os(&self) -> OsString;
}
impl AsRefOs for str {
    fn os(&self) -> OsString {
        self.into()
    }
}
impl AsRefOs for &str {
    fn os(&self) -> OsString {
        (*self).into()
    }
}
impl AsRefOs for String {
    fn os(&self) -> OsString {
        self.into()
    }
}
impl AsRefOs for PathBuf {
    fn os(&self) -> OsString {
        self.clone().into()
    }
}

/// keygen in the token: the keyring line it prints, and its 64 hex digits.
fn keygen(t: &Token, key: &str, label: &str) -> (String, String) {
    let [a, b, c, d] = t.key(key);
    let line = t.ok(&[&"keygen", &a, &b, &c, &d, &"--label", &label]);
    let public = line.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(public.len(), 64, "{line}");
    (line, public)
}

#[test]
fn a_license_signed_in_the_token_verifies_with_the_agent_and_no_key_file_is_written() {
    let t = Token::new();
    let (line, public) = keygen(&t, "licenses-2026", "token vendor");
    let keyring = t.path("keyring");
    std::fs::write(&keyring, &line).unwrap();
    // pubkey reads the same key back from the token.
    let [a, b, c, d] = t.key("licenses-2026");
    let again = t.ok(&[&"pubkey", &a, &b, &c, &d]);
    assert!(again.starts_with(&format!("ed25519 {public} ")), "{again}");
    // A taken label is refused, and the first key stays.
    t.fails(
        Some(PIN),
        &[&"keygen", &a, &b, &c, &d],
        1,
        "already holds a key labelled",
    );

    // The PIN from a file (its first line) works as from the environment.
    let pin_file = t.path("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let license = t.path("phone.cfg");
    let out = t.issuer_with(
        None,
        &[
            &"sign",
            &a,
            &b,
            &c,
            &d,
            &"--pin-file",
            &pin_file,
            &"--pkcs11-module",
            &MODULE,
            &"--serial",
            &"0004f2000001",
            &"--kind",
            &"phone",
            &"--feature",
            &"vqmon,new,2026-01-01T00:00:00Z,2027-01-01T00:00:00Z",
            &"-o",
            &license,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = run(
        agent(),
        [
            "verify".as_ref(),
            "--keyring".as_ref(),
            keyring.as_os_str(),
            license.as_os_str(),
        ],
    );
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
    assert!(stdout(&verified).contains("token vendor"));

    // A Renewal built from it, signed in the token as well.
    let renewed = t.path("renewed.cfg");
    t.ok(&[
        &"renew",
        &a,
        &b,
        &c,
        &d,
        &"--from",
        &license,
        &"--feature",
        &"vqmon",
        &"--until",
        &"2030-01-01T00:00:00Z",
        &"-o",
        &renewed,
    ]);
    assert!(renewed.exists());
    t.assert_no_private_key_file();
}

#[test]
fn a_token_root_signs_a_trust_update_with_file_roots() {
    let t = Token::new();
    let (_, token_root) = keygen(&t, "root-a", "");
    let mut file_public = Vec::new();
    for name in ["root-b", "license-1", "license-2"] {
        let line = t.ok(&[&"keygen", &"-o", &t.path(name)]);
        file_public.push(line.split_whitespace().nth(1).unwrap().to_string());
    }
    let [file_root, license1, license2] = &file_public[..] else {
        unreachable!()
    };
    std::fs::write(
        t.path("firmware.keyring"),
        format!(
            "version 0\nroot-threshold 2\nroot ed25519 {token_root}\nroot ed25519 {file_root}\ned25519 {license1}\n"
        ),
    )
    .unwrap();
    let draft = t.path("trust-1.draft");
    t.ok(&[
        &"trust-draft",
        &"--trust-version",
        &"1",
        &"--root-threshold",
        &"2",
        &"--root",
        &token_root.as_str(),
        &"--root",
        &file_root.as_str(),
        &"--license",
        &license2.as_str(),
        &"-o",
        &draft,
    ]);
    let [a, b, c, d] = t.key("root-a");
    let token_line = t.ok(&[&"trust-sign", &a, &b, &c, &d, &"--draft", &draft]);
    assert!(token_line.starts_with("signature "), "{token_line}");
    std::fs::write(t.path("a.sig"), &token_line).unwrap();
    let file_line = t.ok(&[
        &"trust-sign",
        &"--key",
        &t.path("root-b"),
        &"--draft",
        &draft,
    ]);
    std::fs::write(t.path("b.sig"), &file_line).unwrap();
    let done = t.path("trust-1.cfg");
    t.ok(&[
        &"trust-assemble",
        &"--draft",
        &draft,
        &"--previous",
        &t.path("firmware.keyring"),
        &"--signature",
        &t.path("a.sig"),
        &"--signature",
        &t.path("b.sig"),
        &"-o",
        &done,
    ]);
    let text = std::fs::read_to_string(&done).unwrap();
    assert_eq!(text.matches("\nsignature ").count(), 2, "{text}");
    // The token's line alone is below the old threshold: it counted as one, no more.
    t.fails(
        Some(PIN),
        &[
            &"trust-assemble",
            &"--draft",
            &draft,
            &"--previous",
            &t.path("firmware.keyring"),
            &"--signature",
            &t.path("a.sig"),
        ],
        1,
        "below the old threshold",
    );
}

/// `v` as the argument list of [`Token::issuer_with`].
fn args(v: &[String]) -> Vec<&dyn AsRefOs> {
    v.iter().map(|s| s as &dyn AsRefOs).collect()
}

#[test]
fn a_wrong_pin_an_unknown_key_or_token_and_a_missing_module_are_said_plainly() {
    let t = Token::new();
    keygen(&t, "lic", "");
    let sign_with = |key: &'static str| -> Vec<String> {
        let mut v: Vec<String> = ["sign", "--token", "vendor-hsm", "--key-label", key]
            .map(String::from)
            .to_vec();
        v.extend(
            [
                "--serial",
                "0004f2000001",
                "--kind",
                "phone",
                "--feature",
                "vqmon,new,2026-01-01T00:00:00Z,never",
            ]
            .map(String::from),
        );
        v
    };
    let good = sign_with("lic");
    t.fails(Some("000000"), &args(&good), 1, "wrong PIN");
    t.fails(
        Some(PIN),
        &args(&sign_with("nope")),
        1,
        "no Ed25519 key labelled \"nope\"",
    );
    let mut other_token = good.clone();
    other_token[2] = "elsewhere".into();
    t.fails(
        Some(PIN),
        &args(&other_token),
        1,
        "no token labelled \"elsewhere\"",
    );
    let mut missing = good.clone();
    missing.extend(["--pkcs11-module", "/nonexistent/libpkcs11.so"].map(String::from));
    t.fails(
        Some(PIN),
        &args(&missing),
        1,
        "/nonexistent/libpkcs11.so: no such file",
    );
    // Usage errors: no PIN at all, no key label, a PIN as an argument, two keys.
    t.fails(None, &args(&good), 2, "LICENSE_ISSUER_PIN or --pin-file");
    t.fails(
        Some(PIN),
        &[&"pubkey", &"--token", &"vendor-hsm"],
        2,
        "needs --key-label",
    );
    t.fails(
        Some(PIN),
        &[
            &"pubkey",
            &"--token",
            &"vendor-hsm",
            &"--key-label",
            &"lic",
            &"--pin",
            &PIN,
        ],
        2,
        "--pin",
    );
    t.fails(
        Some(PIN),
        &[&"pubkey", &"--key", &"k", &"--token", &"vendor-hsm"],
        2,
        "give one",
    );
}
