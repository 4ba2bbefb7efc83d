//! A vendor's trust ceremony for the tests of trust updates (`docs/trust-update.md`,
//! issue 28): root and license keys made by `license-issuer keygen`, each a file of its
//! own, and documents made as the vendor makes them (`trust-draft`, one `trust-sign`
//! per signer, `trust-assemble` against the version before). Shared by
//! `trust_rotation.rs` (host phones) and `phone_trust_cuts.rs` (the emulated phone).

use std::path::{Path, PathBuf};

use super::bounded;
use super::phone::{DAY, MAC, SITE};
use super::{issuer, rfc, run, sign_license, stdout};

/// A vendor's keys, each a file of its own (each root could be on its own machine).
pub struct Vendor {
    dir: tempfile::TempDir,
}

impl Vendor {
    pub fn new() -> Vendor {
        Vendor {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `license-issuer keygen`: the key's public half, in hex.
    pub fn key(&self, name: &str) -> String {
        let path = self.path(&format!("{name}.key"));
        if !path.exists() {
            let out = run(
                issuer(),
                ["keygen".as_ref(), "-o".as_ref(), path.as_os_str()],
            );
            assert!(out.status.success(), "keygen {name}");
        }
        let out = run(
            issuer(),
            ["pubkey".as_ref(), "--key".as_ref(), path.as_os_str()],
        );
        assert!(out.status.success(), "pubkey {name}");
        stdout(&out).split_whitespace().nth(1).unwrap().to_string()
    }

    /// The firmware keyring: version 0, `roots` of which `threshold` sign the next,
    /// license keys `licenses`.
    pub fn firmware(&self, threshold: usize, roots: &[&str], licenses: &[&str]) -> String {
        let mut text = format!("version 0\nroot-threshold {threshold}\n");
        for r in roots {
            text.push_str(&format!("root ed25519 {} {r}\n", self.key(r)));
        }
        for l in licenses {
            text.push_str(&format!("ed25519 {} {l}\n", self.key(l)));
        }
        std::fs::write(self.path("trust-0.cfg"), &text).unwrap();
        text
    }

    /// The ceremony for `version`: a draft, one `trust-sign` per signer, and
    /// `trust-assemble` against the version before (which checks it as the agent will).
    pub fn ceremony(
        &self,
        version: u32,
        until: &str,
        threshold: usize,
        roots: &[&str],
        licenses: &[&str],
        signers: &[&str],
    ) -> Vec<u8> {
        let draft = self.draft(version, until, threshold, roots, licenses);
        let mut assemble = issuer();
        assemble
            .arg("trust-assemble")
            .arg("--draft")
            .arg(&draft)
            .arg("--previous")
            .arg(self.path(&format!("trust-{}.cfg", version - 1)));
        for s in signers {
            let sig = self.signature(version, s);
            assemble.arg("--signature").arg(sig);
        }
        let done = self.path(&format!("trust-{version}.cfg"));
        assemble.arg("-o").arg(&done);
        let out = run(assemble, Vec::<&str>::new());
        assert!(out.status.success(), "{}", bounded::text(&out));
        std::fs::read(done).unwrap()
    }

    /// A document the issuer would not assemble (the hostile tests' own): the draft
    /// and the signature lines of `signers`, as they are.
    pub fn unchecked(
        &self,
        version: u32,
        threshold: usize,
        roots: &[&str],
        licenses: &[&str],
        signers: &[&str],
    ) -> Vec<u8> {
        let draft = self.draft(version, "never", threshold, roots, licenses);
        let mut text = std::fs::read(draft).unwrap();
        for s in signers {
            text.extend(std::fs::read(self.signature(version, s)).unwrap());
        }
        text
    }

    /// `trust-draft` of version `version` (its file).
    pub fn draft(
        &self,
        version: u32,
        until: &str,
        threshold: usize,
        roots: &[&str],
        licenses: &[&str],
    ) -> PathBuf {
        let draft = self.path(&format!("trust-{version}.draft"));
        let mut cmd = issuer();
        cmd.arg("trust-draft")
            .args(["--trust-version", &version.to_string()])
            .args(["--until", until])
            .args(["--root-threshold", &threshold.to_string()]);
        for r in roots {
            cmd.args(["--root", &self.key(r)]);
        }
        for l in licenses {
            cmd.args(["--license", &self.key(l)]);
        }
        cmd.arg("-o").arg(&draft);
        let out = run(cmd, Vec::<&str>::new());
        assert!(out.status.success(), "{}", bounded::text(&out));
        draft
    }

    /// `signer`'s detached signature line over version `version`'s draft (a file).
    pub fn signature(&self, version: u32, signer: &str) -> PathBuf {
        let sig = self.path(&format!("trust-{version}.{signer}.sig"));
        let mut cmd = issuer();
        cmd.arg("trust-sign")
            .arg("--key")
            .arg(self.path(&format!("{signer}.key")))
            .arg("--draft")
            .arg(self.path(&format!("trust-{version}.draft")))
            .arg("-o")
            .arg(&sig);
        let out = run(cmd, Vec::<&str>::new());
        assert!(out.status.success(), "{}", bounded::text(&out));
        sig
    }

    /// A license signed by license key `key`.
    pub fn license(&self, key: &str, kind: &str, feature: &str, t: i64) -> Vec<u8> {
        let serial = if kind == "phone" { MAC } else { SITE };
        let out = self.path("signed.cfg");
        let spec = format!("{feature},new,{},never", rfc(t - DAY));
        sign_license(
            &self.path(&format!("{key}.key")),
            kind,
            serial,
            &[spec],
            &out,
        );
        std::fs::read(out).unwrap()
    }
}

impl Vendor {
    /// Takes an existing key file (such as the emulated phone lab's vendor key, already
    /// in its keyring) as key `name`.
    pub fn adopt(&self, name: &str, key: &Path) {
        std::fs::copy(key, self.path(&format!("{name}.key")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", key.display()));
    }

    /// Takes `keyring`, a firmware keyring made elsewhere, as version 0 (the version
    /// before version 1's ceremony).
    pub fn firmware_is(&self, keyring: &[u8]) {
        std::fs::write(self.path("trust-0.cfg"), keyring).unwrap();
    }

    /// Key `name`'s id as the agent names it: the first 4 bytes of the SHA-256 of the
    /// raw key, in uppercase hex.
    pub fn key_id(&self, name: &str) -> String {
        let raw = hex::decode(self.key(name)).expect("pubkey prints hex");
        let digest = ring::digest::digest(&ring::digest::SHA256, &raw);
        hex::encode_upper(&digest.as_ref()[..4])
    }
}
