//! `license-issuer`: the vendor-side tool that makes signing keys and signs license
//! files. Host only: phones never sign, and the phone build does not include it.
//!
//! A key is a PKCS#8 file (`--key`, for development) or a key pair in a PKCS#11 token
//! (`--token`, `--key-label`; built with the `pkcs11` feature), which signs without
//! ever giving its private key out.

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
    issue_verified, keyring_line, now, own_keyring, parse_instant, parse_time, read_verified,
    LicenseSpec, Signer, SigningKey,
};
use license_agent::trust::{Keyring, Verified};

const HELP: &str = "\
license-issuer: make signing keys and sign license files (vendor side, host only)

Usage:
  license-issuer keygen -o KEYFILE [--label TEXT]
  license-issuer keygen TOKEN [--label TEXT]
  license-issuer pubkey --key KEYFILE|TOKEN [--label TEXT]
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
        existing file) and prints the keyring line that trusts its public key; with
        TOKEN, generates the key pair inside the token instead (the private key
        sensitive and not extractable; refused if the label is taken)
pubkey  prints the keyring line of an existing key
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

--key KEYFILE  a PKCS#8 key file (development); wherever --key is taken, TOKEN may
           be given instead:
TOKEN      --token LABEL --key-label LABEL [--pkcs11-module PATH] [--pin-file FILE]:
           the Ed25519 key pair labelled --key-label (CKA_LABEL) in the PKCS#11 token
           labelled --token, which signs (CKM_EDDSA); every signature it makes is
           verified before anything is written. The module defaults to
           $LICENSE_ISSUER_PKCS11_MODULE, else /usr/lib/softhsm/libsofthsm2.so
           (SoftHSM2). The user PIN is the first line of --pin-file, else
           $LICENSE_ISSUER_PIN; never an argument (it would show in ps).
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
    token: Option<String>,
    key_label: Option<String>,
    pkcs11_module: Option<PathBuf>,
    pin_file: Option<PathBuf>,
}

/// The options naming a token key: taken wherever `--key` is.
const TOKEN_OPTIONS: [&str; 4] = ["--token", "--key-label", "--pkcs11-module", "--pin-file"];

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
            ("--token", self.token.is_some()),
            ("--key-label", self.key_label.is_some()),
            ("--pkcs11-module", self.pkcs11_module.is_some()),
            ("--pin-file", self.pin_file.is_some()),
        ];
        let taken = |name: &str| {
            takes.contains(&name) || (TOKEN_OPTIONS.contains(&name) && takes.contains(&"--key"))
        };
        match given.iter().find(|(name, on)| *on && !taken(name)) {
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
            Long("token") => o.token = Some(text_value(&mut parser, "--token")?),
            Long("key-label") => o.key_label = Some(text_value(&mut parser, "--key-label")?),
            Long("pkcs11-module") => o.pkcs11_module = Some(parser.value()?.into()),
            Long("pin-file") => o.pin_file = Some(parser.value()?.into()),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let need = |what: &str, cmd: &str| Usage(format!("{cmd} needs {what}"));
    let label = o.label.clone().unwrap_or_default();
    match command.as_deref() {
        Some("keygen") if o.token.is_some() => {
            o.refuse_others("keygen", &[&TOKEN_OPTIONS[..], &["--label"]].concat())?;
            token_keygen(&o, &label)
        }
        Some("keygen") => {
            o.refuse_others("keygen", &["-o", "--label"])?;
            keygen(
                &o.output.ok_or_else(|| need("-o KEYFILE", "keygen"))?,
                &label,
            )
        }
        Some("pubkey") => {
            o.refuse_others("pubkey", &["--key", "--label"])?;
            let key = match load_signer(&o, "pubkey")? {
                Ok(key) => key,
                Err(e) => return Ok(failed(PROGRAM, &e)),
            };
            Ok(Outcome::help(&format!(
                "{}\n",
                keyring_line(&key.public_key(), &label)
            )))
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
            let key = match load_signer(&o, "sign")? {
                Ok(key) => key,
                Err(e) => return Ok(failed(PROGRAM, &e)),
            };
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
            let keyring = keyring(&o, key.as_ref())?;
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
            write_checked(&derived, key.as_ref(), &against, &o)
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
            let draft = read_text(
                o.draft.as_deref().ok_or_else(|| need("--draft FILE"))?,
                "--draft",
            )?;
            match load_signer(o, cmd)? {
                Ok(key) => ceremony::sign(&draft, key.as_ref()).map(|line| format!("{line}\n")),
                Err(e) => Err(e),
            }
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
    Ok(emit(o.output.as_deref(), &text))
}

/// `text` to standard output, or to `-o FILE`.
fn emit(output: Option<&Path>, text: &str) -> Outcome {
    match output {
        None => Outcome::help(text),
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => Outcome {
                stdout: String::new(),
                code: EXIT_OK,
            },
            Err(e) => failed(PROGRAM, &format!("cannot write {}: {e}", path.display())),
        },
    }
}

/// The keyring files are verified with: `--keyring`, or the signing key alone.
fn keyring(o: &Options, key: &dyn Signer) -> Result<Keyring, Usage> {
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
    let key = match load_signer(o, cmd)? {
        Ok(key) => key,
        Err(e) => return Ok(failed(PROGRAM, &e)),
    };
    let keyring = keyring(o, key.as_ref())?;
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
    write_checked(&derived, key.as_ref(), &against, o)
}

/// Signs, compares with each earlier file, and writes unless the phones would lose a
/// feature (and --allow-fewer was not given).
fn write_checked(
    derived: &Derived,
    key: &dyn Signer,
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
    Ok(emit(o.output.as_deref(), &issued.text))
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

/// The key that signs: `--key KEYFILE`, or a token's (`--token`, `--key-label`). A usage
/// error for options that do not name one; `Err` inside for a key that cannot be used
/// (no such token or key, a wrong PIN, a module that does not load: exit 1).
fn load_signer(o: &Options, cmd: &str) -> Result<Result<Box<dyn Signer>, String>, Usage> {
    match (&o.key, &o.token) {
        (Some(_), Some(_)) => Err(Usage(format!(
            "{cmd}: --key and --token name two keys; give one"
        ))),
        (Some(path), None) => {
            if let Some(name) = TOKEN_OPTIONS[1..]
                .iter()
                .zip([
                    o.key_label.is_some(),
                    o.pkcs11_module.is_some(),
                    o.pin_file.is_some(),
                ])
                .find_map(|(name, on)| on.then_some(name))
            {
                return Err(Usage(format!("{cmd}: {name} goes with --token, not --key")));
            }
            Ok(Ok(Box::new(load_key(path)?)))
        }
        (None, Some(_)) => token::open(o, cmd),
        (None, None) => Err(Usage(format!(
            "{cmd} needs --key KEYFILE or --token LABEL --key-label LABEL"
        ))),
    }
}

/// `keygen` with `--token`: the key pair is made inside the token.
fn token_keygen(o: &Options, label: &str) -> Result<Outcome, Usage> {
    match token::generate(o)? {
        Ok(public) => Ok(Outcome::help(&format!(
            "{}\n",
            keyring_line(&public, label)
        ))),
        Err(e) => Ok(failed(PROGRAM, &e)),
    }
}

#[cfg(feature = "pkcs11")]
mod token {
    //! The token options read into a [`TokenSpec`].
    use super::{Options, Signer, Usage};
    use license_agent::issuer::pkcs11::{TokenKey, TokenSpec, DEFAULT_MODULE};
    use std::path::PathBuf;

    pub(super) fn open(o: &Options, cmd: &str) -> Result<Result<Box<dyn Signer>, String>, Usage> {
        let spec = spec(o, cmd)?;
        Ok(TokenKey::open(&spec).map(|k| Box::new(k) as Box<dyn Signer>))
    }

    pub(super) fn generate(o: &Options) -> Result<Result<[u8; 32], String>, Usage> {
        Ok(TokenKey::generate(&spec(o, "keygen")?))
    }

    fn spec(o: &Options, cmd: &str) -> Result<TokenSpec, Usage> {
        let module = match (
            &o.pkcs11_module,
            std::env::var_os("LICENSE_ISSUER_PKCS11_MODULE"),
        ) {
            (Some(path), _) => path.clone(),
            (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
            _ => PathBuf::from(DEFAULT_MODULE),
        };
        let key_label = o
            .key_label
            .clone()
            .ok_or_else(|| Usage(format!("{cmd} --token needs --key-label LABEL")))?;
        let pin = match &o.pin_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Usage(format!("--pin-file {}: {e}", path.display())))?;
                text.lines().next().unwrap_or("").to_string()
            }
            None => std::env::var("LICENSE_ISSUER_PIN").map_err(|_| {
                Usage(format!(
                    "{cmd} --token needs the token's PIN: LICENSE_ISSUER_PIN or --pin-file FILE \
                     (never an argument)"
                ))
            })?,
        };
        Ok(TokenSpec {
            module,
            token: o.token.clone().unwrap_or_default(),
            key_label,
            pin: pin.into(),
        })
    }
}

#[cfg(not(feature = "pkcs11"))]
mod token {
    //! Built without the `pkcs11` feature: token options are refused.
    use super::{Options, Signer, Usage};

    const NO: &str = "this license-issuer was built without PKCS#11 support (cargo feature pkcs11)";

    pub(super) fn open(_: &Options, _: &str) -> Result<Result<Box<dyn Signer>, String>, Usage> {
        Err(Usage(NO.into()))
    }

    pub(super) fn generate(_: &Options) -> Result<Result<[u8; 32], String>, Usage> {
        Err(Usage(NO.into()))
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
