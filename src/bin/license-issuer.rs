//! `license-issuer`: the vendor-side tool that makes signing keys and signs license
//! files. Host only: phones never sign, and the phone build does not include it.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use license_agent::cli::args::{failed, text_value, Usage, EXIT_OK};
use license_agent::cli::{main_with, Outcome};
use license_agent::format::{
    End, FeatureEntry, FeatureId, Kind, Serial, Transaction, MAX_FILE_SIZE,
};
use license_agent::issuer::{issue, LicenseSpec, SigningKey};

const HELP: &str = "\
license-issuer: make signing keys and sign license files (vendor side, host only)

Usage:
  license-issuer keygen -o KEYFILE [--label TEXT]
  license-issuer pubkey --key KEYFILE [--label TEXT]
  license-issuer sign --key KEYFILE --serial HEX12 --kind phone|site
                      --feature NAME_OR_ID,TRANSACTION,START,END[,LIMIT]... [-o FILE]

keygen  writes a new Ed25519 private key (PKCS#8 DER, mode 0600, never over an
        existing file) and prints the keyring line that trusts its public key
pubkey  prints the keyring line of an existing key file
sign    writes a signed license file to standard output or -o FILE; it refuses to write
        a file that license-agent would refuse

--feature: NAME_OR_ID a name (vqmon, lync, ...), feature-XXXX, or an id (2, 0x0002);
           TRANSACTION trial, new, addon or renewal; START and END RFC 3339 dates
           (2026-01-01T00:00:00Z), END may be never; LIMIT a count, 0 or absent for none.
           Repeat --feature for each feature (1 to 256).

Exit status: 0 success, 1 the action failed, 2 usage error.
";

const PROGRAM: &str = "license-issuer";

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(main_with(PROGRAM, args, run));
}

fn run(args: Vec<OsString>) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut command: Option<String> = None;
    let mut key: Option<PathBuf> = None;
    let mut output: Option<PathBuf> = None;
    let mut label = String::new();
    let mut serial: Option<Serial> = None;
    let mut kind: Option<Kind> = None;
    let mut features: Vec<FeatureEntry> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            Short('V') | Long("version") => {
                return Ok(Outcome::help(&format!(
                    "license-issuer {}\n",
                    license_agent::cli::VERSION
                )))
            }
            Value(v) if command.is_none() => {
                command = Some(
                    v.into_string()
                        .map_err(|c| Usage(format!("unknown command {c:?}")))?,
                )
            }
            Long("key") => key = Some(parser.value()?.into()),
            Short('o') | Long("output") => output = Some(parser.value()?.into()),
            Long("label") => label = text_value(&mut parser, "--label")?,
            Long("serial") => serial = Some(Serial::parse(&text_value(&mut parser, "--serial")?)?),
            Long("kind") => kind = Some(Kind::parse(&text_value(&mut parser, "--kind")?)?),
            Long("feature") => {
                features.push(parse_feature(&text_value(&mut parser, "--feature")?)?)
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let need = |what: &str, cmd: &str| Usage(format!("{cmd} needs {what}"));
    match command.as_deref() {
        Some("keygen") => keygen(&output.ok_or_else(|| need("-o KEYFILE", "keygen"))?, &label),
        Some("pubkey") => {
            let key = load_key(&key.ok_or_else(|| need("--key KEYFILE", "pubkey"))?)?;
            Ok(Outcome::help(&format!("{}\n", key.keyring_line(&label))))
        }
        Some("sign") => {
            let key = load_key(&key.ok_or_else(|| need("--key KEYFILE", "sign"))?)?;
            let spec = LicenseSpec {
                serial: serial.ok_or_else(|| need("--serial HEX12", "sign"))?,
                kind: kind.ok_or_else(|| need("--kind phone|site", "sign"))?,
                features,
            };
            if spec.features.is_empty() {
                return Err(need("at least one --feature", "sign"));
            }
            sign(&spec, &key, output.as_deref())
        }
        Some(other) => Err(Usage(format!(
            "unknown command {other:?}; commands: keygen, pubkey, sign"
        ))),
        None => Err(Usage(
            "a command is needed; see license-issuer --help".into(),
        )),
    }
}

fn keygen(path: &Path, label: &str) -> Result<Outcome, Usage> {
    let (key, der) = match SigningKey::generate() {
        Ok(k) => k,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    // create_new: never overwrite a private key; mode 0600 from the first byte.
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&der).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => Ok(Outcome::help(&format!("{}\n", key.keyring_line(label)))),
        Err(e) => Ok(failed(
            PROGRAM,
            &format!("cannot write key file {}: {e}", path.display()),
        )),
    }
}

fn load_key(path: &Path) -> Result<SigningKey, Usage> {
    let der = std::fs::read(path)
        .map_err(|e| Usage(format!("cannot read key file {}: {e}", path.display())))?;
    SigningKey::from_pkcs8(&der).map_err(|e| Usage(format!("{}: {e}", path.display())))
}

fn sign(spec: &LicenseSpec, key: &SigningKey, output: Option<&Path>) -> Result<Outcome, Usage> {
    let text = match issue(spec, key) {
        Ok(text) if text.len() <= MAX_FILE_SIZE => text,
        Ok(_) => return Ok(failed(PROGRAM, "the license would exceed the size limit")),
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    match output {
        None => Ok(Outcome::help(&text)),
        Some(path) => match std::fs::write(path, &text) {
            Ok(()) => Ok(Outcome {
                stdout: String::new(),
                code: EXIT_OK,
            }),
            Err(e) => Ok(failed(
                PROGRAM,
                &format!("cannot write {}: {e}", path.display()),
            )),
        },
    }
}

/// `NAME_OR_ID,TRANSACTION,START,END[,LIMIT]`.
fn parse_feature(text: &str) -> Result<FeatureEntry, Usage> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if !(4..=5).contains(&parts.len()) {
        return Err(Usage(format!(
            "--feature {text:?}: expected NAME_OR_ID,TRANSACTION,START,END[,LIMIT]"
        )));
    }
    let start = match parse_time(parts[2], "START")? {
        End::At(t) => t,
        End::Never => return Err(Usage(format!("--feature {text:?}: START cannot be never"))),
    };
    let limit = match parts.get(4) {
        None => 0,
        Some(l) => l.parse::<u32>().map_err(|_| {
            Usage(format!(
                "--feature {text:?}: LIMIT {l:?} is not a whole number up to 4294967295"
            ))
        })?,
    };
    Ok(FeatureEntry {
        id: FeatureId::parse(parts[0])?,
        transaction: Transaction::parse(parts[1])?,
        start,
        end: parse_time(parts[3], "END")?,
        limit,
    })
}

/// An RFC 3339 instant in whole seconds between 1970 and 2106, or `never`.
fn parse_time(text: &str, what: &str) -> Result<End, Usage> {
    if text.eq_ignore_ascii_case("never") {
        return Ok(End::Never);
    }
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| Usage(format!("{what} {text:?}: not an RFC 3339 date ({e})")))?;
    if t.timestamp_subsec_nanos() != 0 {
        return Err(Usage(format!(
            "{what} {text:?}: licenses count whole seconds"
        )));
    }
    match u32::try_from(t.timestamp()) {
        Ok(secs) if secs != u32::MAX => Ok(End::At(secs)),
        _ => Err(Usage(format!(
            "{what} {text:?}: must lie between 1970-01-01T00:00:00Z and 2106-02-07T06:28:14Z"
        ))),
    }
}
