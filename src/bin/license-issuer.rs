//! `license-issuer`: the vendor-side tool that makes signing keys and signs license
//! files. Host only: phones never sign, and the phone build does not include it.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use license_agent::cli::args::{failed, text_value, Usage, EXIT_OK};
use license_agent::cli::{main_with, Outcome};
use license_agent::format::{End, FeatureEntry, FeatureId, Kind, License, Serial, Transaction};
use license_agent::issuer::compare::judge;
use license_agent::issuer::derive::{addon, renew, AddonRequest, Derived, RenewRequest};
use license_agent::issuer::{
    issue_verified, now, own_keyring, parse_instant, parse_time, read_verified, LicenseSpec,
    SigningKey,
};
use license_agent::trust::{Keyring, Verified};

const HELP: &str = "\
license-issuer: make signing keys and sign license files (vendor side, host only)

Usage:
  license-issuer keygen -o KEYFILE [--label TEXT]
  license-issuer pubkey --key KEYFILE [--label TEXT]
  license-issuer sign --key KEYFILE --serial HEX12 --kind phone|site
                      --feature NAME_OR_ID,TRANSACTION,START,END[,LIMIT]...
                      [--previous FILE [--keyring FILE]] [--allow-fewer] [-o FILE]
  license-issuer addon --key KEYFILE --from FILE --feature NAME_OR_ID --limit N
                      [--start TIME] [--keyring FILE] [--previous FILE] [--allow-fewer]
                      [-o FILE]
  license-issuer renew --key KEYFILE --from FILE --until TIME [--feature NAME_OR_ID]...
                      [--start TIME] [--limit N] [--keyring FILE] [--previous FILE]
                      [--allow-fewer] [-o FILE]
  license-issuer trust-draft --trust-version N [--until TIME|never] --root-threshold T
                      --root HEX64... --license HEX64... [-o FILE]
  license-issuer trust-sign --key KEYFILE --draft FILE [-o FILE]
  license-issuer trust-assemble --draft FILE --signature FILE... --previous FILE
                      [-o FILE]

keygen  writes a new Ed25519 private key (PKCS#8 DER, mode 0600, never over an
        existing file) and prints the keyring line that trusts its public key
pubkey  prints the keyring line of an existing key file
sign    writes a signed license file to standard output or -o FILE; it refuses to write
        a file that license-agent would refuse
addon   builds a site license's Addon from the file in force (--from): the same file with
        the feature's record replaced by an Addon record (the added capacity --limit N,
        from --start or now to that record's end); every other record is kept byte for
        byte. Refused for a phone license, a feature the file lacks, a Trial record, and
        a record that never ends or has ended by the start.
renew   builds a Renewal from the file in force (--from): each --feature (default: every
        record that ends and is not a Trial) becomes a Renewal record to --until, from
        its current end (earlier when the agent would use the new file sooner: no gap),
        or from --start (no later than that end); its limit is --limit, or the current
        one (an Addon record's limit is the added capacity only: give --limit TOTAL to
        roll the Addons together). Other records are kept byte for byte.

trust-draft, trust-sign, trust-assemble: a trust update's key ceremony
        (docs/trust-update.md): the draft of version N (expiring --until, default
        never; the root keys and the license keys as 64 hex digits, as the keyring
        lines of `pubkey` write them); one signature line by one root key, on the
        machine that holds it; then the draft with every signature line, written only
        when the agent would take it after --previous (the version before: a trust
        document, or the firmware keyring for version 1 of it).

--feature (sign): NAME_OR_ID a name (vqmon, lync, ...), feature-XXXX, or an id (2,
           0x0002); TRANSACTION trial, new, addon or renewal; START and END times, END
           may be never; LIMIT a count, 0 or absent for none. Repeat --feature for each
           feature (1 to 256).
TIME       RFC 3339 in whole seconds (2026-01-01T00:00:00Z) or Unix seconds (1767225600).
--from FILE, --previous FILE are verified first, with --keyring FILE or else the
           public key of --key.
--previous FILE   the file posted before for this serial (addon and renew compare with
           --from as well): when the new file would take a feature away from the phones
           (the agent uses the file with the latest end, newest on a tie, so a feature the
           new file lacks, or grants only later, is removed from every phone), each is
           named on standard error and nothing is written (exit 1), unless --allow-fewer.
Notes on what was built go to standard error.

Exit status: 0 success, 1 the action failed (or fewer features without --allow-fewer),
2 usage error.
";

const PROGRAM: &str = "license-issuer";

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(main_with(PROGRAM, args, run));
}

/// Every option, as given.
#[derive(Default)]
struct Options {
    key: Option<PathBuf>,
    output: Option<PathBuf>,
    label: Option<String>,
    serial: Option<Serial>,
    kind: Option<Kind>,
    features: Vec<String>,
    from: Option<PathBuf>,
    previous: Option<PathBuf>,
    keyring: Option<PathBuf>,
    allow_fewer: bool,
    limit: Option<u32>,
    start: Option<u32>,
    until: Option<u32>,
    never: bool,
    trust_version: Option<u32>,
    root_threshold: Option<usize>,
    roots: Vec<[u8; 32]>,
    licenses: Vec<[u8; 32]>,
    draft: Option<PathBuf>,
    signatures: Vec<PathBuf>,
}

impl Options {
    /// The options given that `command` does not take.
    fn refuse_others(&self, command: &str, takes: &[&str]) -> Result<(), Usage> {
        let given = [
            ("--key", self.key.is_some()),
            ("-o", self.output.is_some()),
            ("--label", self.label.is_some()),
            ("--serial", self.serial.is_some()),
            ("--kind", self.kind.is_some()),
            ("--feature", !self.features.is_empty()),
            ("--from", self.from.is_some()),
            ("--previous", self.previous.is_some()),
            ("--keyring", self.keyring.is_some()),
            ("--allow-fewer", self.allow_fewer),
            ("--limit", self.limit.is_some()),
            ("--start", self.start.is_some()),
            ("--until", self.until.is_some() || self.never),
            ("--trust-version", self.trust_version.is_some()),
            ("--root-threshold", self.root_threshold.is_some()),
            ("--root", !self.roots.is_empty()),
            ("--license", !self.licenses.is_empty()),
            ("--draft", self.draft.is_some()),
            ("--signature", !self.signatures.is_empty()),
        ];
        match given.iter().find(|(name, on)| *on && !takes.contains(name)) {
            Some((name, _)) => Err(Usage(format!("{command} does not take {name}"))),
            None => Ok(()),
        }
    }
}

fn run(args: Vec<OsString>) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut command: Option<String> = None;
    let mut o = Options::default();
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
            Long("key") => o.key = Some(parser.value()?.into()),
            Short('o') | Long("output") => o.output = Some(parser.value()?.into()),
            Long("label") => o.label = Some(text_value(&mut parser, "--label")?),
            Long("serial") => {
                o.serial = Some(Serial::parse(&text_value(&mut parser, "--serial")?)?)
            }
            Long("kind") => o.kind = Some(Kind::parse(&text_value(&mut parser, "--kind")?)?),
            Long("feature") => o.features.push(text_value(&mut parser, "--feature")?),
            Long("from") => o.from = Some(parser.value()?.into()),
            Long("previous") => o.previous = Some(parser.value()?.into()),
            Long("keyring") => o.keyring = Some(parser.value()?.into()),
            Long("allow-fewer") => o.allow_fewer = true,
            Long("limit") => {
                let text = text_value(&mut parser, "--limit")?;
                o.limit = Some(text.trim().parse::<u32>().map_err(|_| {
                    Usage(format!(
                        "--limit {text:?} is not a whole number up to 4294967295"
                    ))
                })?)
            }
            Long("start") => {
                o.start = Some(parse_instant(
                    &text_value(&mut parser, "--start")?,
                    "--start",
                )?)
            }
            Long("until") => {
                let text = text_value(&mut parser, "--until")?;
                if text == "never" {
                    o.never = true;
                } else {
                    o.until = Some(parse_instant(&text, "--until")?)
                }
            }
            Long("trust-version") => {
                let text = text_value(&mut parser, "--trust-version")?;
                o.trust_version = Some(
                    text.parse()
                        .map_err(|_| Usage(format!("--trust-version {text:?}: 1 to 4294967295")))?,
                )
            }
            Long("root-threshold") => {
                let text = text_value(&mut parser, "--root-threshold")?;
                o.root_threshold = Some(
                    text.parse()
                        .map_err(|_| Usage(format!("--root-threshold {text:?}: a count")))?,
                )
            }
            Long("root") => o
                .roots
                .push(public_key(&text_value(&mut parser, "--root")?)?),
            Long("license") => o
                .licenses
                .push(public_key(&text_value(&mut parser, "--license")?)?),
            Long("draft") => o.draft = Some(parser.value()?.into()),
            Long("signature") => o.signatures.push(parser.value()?.into()),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let need = |what: &str, cmd: &str| Usage(format!("{cmd} needs {what}"));
    let label = o.label.clone().unwrap_or_default();
    match command.as_deref() {
        Some("keygen") => {
            o.refuse_others("keygen", &["-o", "--label"])?;
            keygen(
                &o.output.ok_or_else(|| need("-o KEYFILE", "keygen"))?,
                &label,
            )
        }
        Some("pubkey") => {
            o.refuse_others("pubkey", &["--key", "--label"])?;
            let key = load_key(&o.key.ok_or_else(|| need("--key KEYFILE", "pubkey"))?)?;
            Ok(Outcome::help(&format!("{}\n", key.keyring_line(&label))))
        }
        Some("sign") => {
            o.refuse_others(
                "sign",
                &[
                    "--key",
                    "-o",
                    "--serial",
                    "--kind",
                    "--feature",
                    "--previous",
                    "--keyring",
                    "--allow-fewer",
                ],
            )?;
            let key = load_key(
                o.key
                    .as_deref()
                    .ok_or_else(|| need("--key KEYFILE", "sign"))?,
            )?;
            let features = o
                .features
                .iter()
                .map(|f| parse_feature(f))
                .collect::<Result<Vec<_>, _>>()?;
            let spec = LicenseSpec {
                serial: o.serial.ok_or_else(|| need("--serial HEX12", "sign"))?,
                kind: o.kind.ok_or_else(|| need("--kind phone|site", "sign"))?,
                features,
            };
            if spec.features.is_empty() {
                return Err(need("at least one --feature", "sign"));
            }
            let keyring = keyring(&o, &key)?;
            let mut against = Vec::new();
            if let Some(path) = &o.previous {
                match read_verified(path, &keyring) {
                    Ok(l) => against.push((path.clone(), l)),
                    Err(e) => return Ok(failed(PROGRAM, &e)),
                }
            }
            let derived = Derived {
                spec,
                notes: Vec::new(),
            };
            write_checked(&derived, &key, &against, &o)
        }
        Some(cmd @ ("addon" | "renew")) => derive_from(cmd, &o),
        Some(cmd @ ("trust-draft" | "trust-sign" | "trust-assemble")) => ceremony_step(cmd, &o),
        Some(other) => Err(Usage(format!(
            "unknown command {other:?}; commands: keygen, pubkey, sign, addon, renew, \
             trust-draft, trust-sign, trust-assemble"
        ))),
        None => Err(Usage(
            "a command is needed; see license-issuer --help".into(),
        )),
    }
}

/// 64 hex digits: a raw Ed25519 public key.
fn public_key(text: &str) -> Result<[u8; 32], Usage> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
        Usage(format!(
            "{text:?} is not 64 hex digits (a raw Ed25519 public key)"
        ))
    })?;
    Ok(key)
}

fn read_text(path: &Path, what: &str) -> Result<String, Usage> {
    std::fs::read_to_string(path).map_err(|e| Usage(format!("{what} {}: {e}", path.display())))
}

/// One step of a trust update's ceremony.
fn ceremony_step(cmd: &str, o: &Options) -> Result<Outcome, Usage> {
    use license_agent::issuer::ceremony;
    let need = |what: &str| Usage(format!("{cmd} needs {what}"));
    let made = match cmd {
        "trust-draft" => {
            o.refuse_others(
                cmd,
                &[
                    "--trust-version",
                    "--until",
                    "--root-threshold",
                    "--root",
                    "--license",
                    "-o",
                ],
            )?;
            ceremony::draft(&ceremony::DraftSpec {
                version: o.trust_version.ok_or_else(|| need("--trust-version N"))?,
                expires: o.until.map(i64::from),
                root_threshold: o.root_threshold.ok_or_else(|| need("--root-threshold T"))?,
                roots: o.roots.clone(),
                licenses: o.licenses.clone(),
            })
        }
        "trust-sign" => {
            o.refuse_others(cmd, &["--key", "--draft", "-o"])?;
            let key = load_key(o.key.as_deref().ok_or_else(|| need("--key KEYFILE"))?)?;
            let draft = read_text(
                o.draft.as_deref().ok_or_else(|| need("--draft FILE"))?,
                "--draft",
            )?;
            ceremony::sign(&draft, &key).map(|line| format!("{line}\n"))
        }
        _ => {
            o.refuse_others(cmd, &["--draft", "--signature", "--previous", "-o"])?;
            let draft = read_text(
                o.draft.as_deref().ok_or_else(|| need("--draft FILE"))?,
                "--draft",
            )?;
            let previous = o
                .previous
                .as_deref()
                .ok_or_else(|| need("--previous FILE"))?;
            let bytes = std::fs::read(previous)
                .map_err(|e| Usage(format!("--previous {}: {e}", previous.display())))?;
            let mut lines = Vec::new();
            for path in &o.signatures {
                let text = read_text(path, "--signature")?;
                lines.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_string),
                );
            }
            if lines.is_empty() {
                return Err(need("--signature FILE"));
            }
            match now() {
                Ok(at) => ceremony::assemble(&draft, &lines, &bytes, i64::from(at))
                    .map_err(|e| format!("--previous {}: {e}", previous.display())),
                Err(e) => Err(e),
            }
        }
    };
    let text = match made {
        Ok(text) => text,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    match &o.output {
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

/// The keyring files are verified with: `--keyring`, or the signing key alone.
fn keyring(o: &Options, key: &SigningKey) -> Result<Keyring, Usage> {
    match &o.keyring {
        Some(path) => Keyring::load(path).map_err(|e| Usage(format!("--keyring: {e}"))),
        None => Ok(own_keyring(key)),
    }
}

/// `addon` and `renew`: read and verify --from, build, then sign, compare and write.
fn derive_from(cmd: &str, o: &Options) -> Result<Outcome, Usage> {
    let need = |what: &str| Usage(format!("{cmd} needs {what}"));
    let common = [
        "--key",
        "-o",
        "--from",
        "--feature",
        "--previous",
        "--keyring",
        "--allow-fewer",
        "--limit",
        "--start",
    ];
    let ids = o
        .features
        .iter()
        .map(|f| FeatureId::parse(f).map_err(Usage))
        .collect::<Result<Vec<_>, _>>()?;
    let key = load_key(o.key.as_deref().ok_or_else(|| need("--key KEYFILE"))?)?;
    let from = o.from.as_deref().ok_or_else(|| need("--from FILE"))?;
    let request = if cmd == "addon" {
        o.refuse_others(cmd, &common)?;
        let [feature] = ids[..] else {
            return Err(need("exactly one --feature NAME_OR_ID"));
        };
        Ok(AddonRequest {
            feature,
            limit: o.limit.ok_or_else(|| need("--limit N"))?,
            start: o.start,
        })
    } else {
        o.refuse_others(cmd, &[&common[..], &["--until"]].concat())?;
        Err(RenewRequest {
            until: o.until.ok_or_else(|| need("--until TIME"))?,
            features: ids,
            start: o.start,
            limit: o.limit,
        })
    };
    let keyring = keyring(o, &key)?;
    let now = match now() {
        Ok(t) => t,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    let current = match read_verified(from, &keyring) {
        Ok(l) => l,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    let built = match &request {
        Ok(req) => addon(&current, req, now),
        Err(req) => renew(&current, req, now),
    };
    let derived = match built {
        Ok(d) => d,
        Err(e) => return Ok(failed(PROGRAM, &format!("{}: {e}", from.display()))),
    };
    let mut against = vec![(from.to_path_buf(), current)];
    if let Some(path) = &o.previous {
        match read_verified(path, &keyring) {
            Ok(l) => against.push((path.clone(), l)),
            Err(e) => return Ok(failed(PROGRAM, &e)),
        }
    }
    write_checked(&derived, &key, &against, o)
}

/// Signs, compares with each earlier file, and writes unless the phones would lose a
/// feature (and --allow-fewer was not given).
fn write_checked(
    derived: &Derived,
    key: &SigningKey,
    against: &[(PathBuf, Verified<License>)],
    o: &Options,
) -> Result<Outcome, Usage> {
    let issued = match issue_verified(&derived.spec, key) {
        Ok(issued) => issued,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    for note in &derived.notes {
        eprintln!("{PROGRAM}: note: {note}");
    }
    let new_name = match &o.output {
        Some(path) => path.display().to_string(),
        None => "the new file".to_string(),
    };
    let now = match now() {
        Ok(t) => t,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    let earlier: Vec<(String, Verified<License>)> = against
        .iter()
        .map(|(path, l)| (path.display().to_string(), l.clone()))
        .collect();
    let verdict = judge(&issued.license, &new_name, &earlier, now, o.allow_fewer);
    for warning in &verdict.warnings {
        eprintln!("{PROGRAM}: warning: {warning}");
    }
    if let Some(refusal) = verdict.refused {
        return Ok(failed(PROGRAM, &refusal));
    }
    match &o.output {
        None => Ok(Outcome::help(&issued.text)),
        Some(path) => match std::fs::write(path, &issued.text) {
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
    let end = parse_time(parts[3], "END")?;
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
        end,
        limit,
    })
}
