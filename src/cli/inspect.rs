//! `license-agent inspect`: decode files without trusting them, for a person or a script.

use std::path::PathBuf;

use super::args::{Usage, EXIT_FAILED, EXIT_OK};
use super::report::{feature_table, json_line, judge, FileReport, Mode};
use super::{load_keyring, Outcome};

pub(crate) const HELP: &str = "\
license-agent inspect: decode license files without trusting them

Usage: license-agent inspect [--keyring PATH] [--json] FILE...

Shows every field of each FILE (- for standard input): kind, serial, key id, the feature
table with names, transaction types and dates (RFC 3339, UTC), and the signature.
Nothing shown is trusted unless the verdict, given with --keyring, is valid.

Options:
  --keyring PATH  also give the verdict against this trusted keyring
  --json          one JSON object per file per line (the fields of verify --json, for
                  every decodable file, plus signature and signed_message in hex)
  -h, --help      this text

Exit status: 0 every file decodes (and, with --keyring, is valid), 1 otherwise,
2 usage error or unusable keyring.
";

pub(crate) fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut keyring_path: Option<PathBuf> = None;
    let mut json = false;
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("keyring") => keyring_path = Some(parser.value()?.into()),
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            Value(v) => files.push(v.into()),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if files.is_empty() {
        return Err(Usage("inspect needs at least one FILE".into()));
    }
    let keyring = keyring_path.as_deref().map(load_keyring).transpose()?;
    let mut out = String::new();
    let mut all_good = true;
    for file in &files {
        let report = judge(file, keyring.as_ref(), Mode::Inspect);
        all_good &= report.is_valid() || (keyring.is_none() && report.verdict == "unchecked");
        if json {
            out.push_str(&json_line(&report));
            out.push('\n');
        } else {
            out.push_str(&text(&report));
        }
    }
    Ok(Outcome {
        stdout: out,
        code: if all_good { EXIT_OK } else { EXIT_FAILED },
    })
}

fn text(r: &FileReport) -> String {
    let mut out = format!("{}\n", r.file);
    if let (Some(kind), Some(serial), Some(key)) = (r.kind, &r.serial, &r.key) {
        let bound = if kind == "phone" {
            "MAC of the phone"
        } else {
            "site serial"
        };
        out.push_str(&format!("  kind:       {kind}\n  serial:     {serial} ({bound})\n  version:    2.0\n  key id:     {key}\n"));
    }
    if let Some(features) = &r.features {
        out.push_str(&format!("  features:   {}\n", features.len()));
        out.push_str(&feature_table(features));
    }
    if let (Some(signature), Some(msg)) = (&r.signature, &r.signed_message) {
        out.push_str(&format!(
            "  signature:  {signature}\n  signed:     {} bytes (shown in hex by --json)\n",
            msg.len() / 2
        ));
    }
    out.push_str(&format!("  verdict:    {}: {}\n\n", r.verdict, r.detail));
    out
}
