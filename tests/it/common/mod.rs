//! Shared by the integration tests: how to start the binaries under test, where the
//! vectors are, and small file helpers.
//!
//! `LICENSE_AGENT_BIN` replaces the `license-agent` under test (for example the armv7
//! build) and `LICENSE_AGENT_RUNNER` names what starts it (`qemu-arm -cpu cortex-a9`):
//! there is no binfmt_misc on the build machines, so the host side must start QEMU.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod bounded;
pub mod control;
pub mod nbd;
pub mod phone;
pub mod supervisor;
pub mod vendor;
pub mod vm;

pub use test_servers::{
    apache, atftpd, bare_httpd, busybox_httpd, dnsmasq_tftp, faults, files, ftp, lighttpd, nginx,
    pki, proftpd, pure_ftpd, tftp,
};

/// Held by the few tests that load the machine for a minute and assert timing (the
/// seeded liveness interleavings: 16 daemons at once; Chromium rendering the fleet
/// page), so that in the one test binary they never run beside each other.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A provisioning server for a test: nginx serving a new folder `www` under `work`
/// (its `root`), with the certificates of a new `pki` there (its CA is the one to trust).
pub fn web_server(work: &Path) -> (pki::Pki, nginx::Nginx) {
    let pki = pki::Pki::new(&work.join("pki"));
    let root = work.join("www");
    std::fs::create_dir_all(&root).unwrap();
    let nginx = nginx::Nginx::start(&root, &pki);
    (pki, nginx)
}

/// A `license-agent` command, honouring `LICENSE_AGENT_BIN` and `LICENSE_AGENT_RUNNER`.
pub fn agent() -> Command {
    let bin = std::env::var_os("LICENSE_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_license-agent")));
    match std::env::var("LICENSE_AGENT_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or("env"));
            cmd.args(words).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// The host `license-issuer` (vendor side; never run under QEMU).
pub fn issuer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_license-issuer"))
}

/// The service provider's `license-fleet` (a host tool: always the host build).
pub fn fleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_license-fleet"))
}

/// Runs a command and returns its output, failing the test if it could not start or
/// if it died of a signal or a panic (status 101): no input may do that.
pub fn run<I, S>(mut cmd: Command, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = cmd
        .args(args)
        .output()
        .expect("start the binary under test");
    assert_no_crash(&out);
    out
}

pub fn assert_no_crash(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some()
            && out.status.code() != Some(101)
            && !stderr.contains("panicked"),
        "the binary crashed: {:?}\nstderr: {stderr}",
        out.status
    );
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// The project's own copy of the vectors.
pub fn own_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// `../shared/vectors/` beside the checkout (the independent implementation's vectors):
/// the test command always has it beside the clone, so a missing one fails the test that
/// asks, saying where it looked, instead of testing the own copy alone unnoticed.
pub fn shared_vectors() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    let keyring = dir.join("keyring");
    assert!(
        keyring.is_file(),
        "the shared vectors are missing: no file {} (../shared/vectors/keyring beside the \
         checkout {}, where the test command puts shared/); the vectors cannot be checked \
         against the independent implementation's",
        keyring.display(),
        env!("CARGO_MANIFEST_DIR")
    );
    dir
}

/// Every vector folder: the own copy and the shared one (which must be there).
pub fn vector_dirs() -> Vec<PathBuf> {
    vec![own_vectors(), shared_vectors()]
}

/// The `.cfg` files of a folder, sorted.
pub fn cfg_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read vector folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension() == Some(OsStr::new("cfg")))
        .collect();
    files.sort();
    files
}

/// The verdict a vector's name announces.
pub fn announced_verdict(file: &Path) -> &'static str {
    let name = file.file_name().and_then(OsStr::to_str).unwrap_or("");
    [
        "valid",
        "malformed",
        "unsupported-version",
        "unknown-key",
        "bad-signature",
    ]
    .into_iter()
    .find(|v| name.starts_with(&format!("{v}-")))
    .unwrap_or_else(|| panic!("{name} announces no verdict"))
}

/// Unix seconds now (the real clock).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Unix seconds as RFC 3339 UTC, as the binaries print and take them.
pub fn rfc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .expect("a representable instant")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A vendor: `license-issuer keygen` writes `dir/vendor.key` and its line to
/// `dir/keyring`. Returns the key's path.
pub fn vendor_key(dir: &Path) -> PathBuf {
    let key = dir.join("vendor.key");
    let out = run(
        issuer(),
        ["keygen".as_ref(), "-o".as_ref(), key.as_os_str()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("keyring"), stdout(&out)).expect("write the keyring");
    key
}

/// `license-issuer sign` with `key` into `out`; `features` are
/// `NAME_OR_ID,TRANSACTION,START,END[,LIMIT]`. Fails the test if the issuer refuses.
pub fn sign_license(key: &Path, kind: &str, serial: &str, features: &[String], out: &Path) {
    let mut cmd = issuer();
    cmd.arg("sign").arg("--key").arg(key);
    cmd.args(["--serial", serial, "--kind", kind])
        .arg("-o")
        .arg(out);
    for f in features {
        cmd.args(["--feature", f]);
    }
    let result = run(cmd, Vec::<&str>::new());
    assert_eq!(
        result.status.code(),
        Some(0),
        "sign: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}
