//! `license-agent verify`: the verdict on each file against a trusted keyring.

use std::path::PathBuf;

use super::args::{Usage, EXIT_FAILED, EXIT_OK};
use super::report::{json_line, judge, Mode};
use super::{load_keyring, Outcome};

pub(crate) const HELP: &str = "\
license-agent verify: the verdict on each license file against a trusted keyring

Usage: license-agent verify --keyring PATH [--json] FILE...

Checks each FILE (- for standard input) in the order of the spec: size, syntax, fields
and feature table (malformed), version (unsupported-version), key id (unknown-key),
signature (bad-signature). Binding to a phone and dates are not judged here.

Options:
  --keyring PATH  the trusted keyring (lines of \"ed25519 <64 hex digits> [label]\")
  --json          one JSON object per file per line: file, verdict, detail; for a valid
                  file also serial, kind, key and features
  -h, --help      this text

Exit status: 0 every file is valid, 1 any is not, 2 usage error or unusable keyring.
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
    let keyring_path = keyring_path.ok_or_else(|| Usage("verify needs --keyring PATH".into()))?;
    if files.is_empty() {
        return Err(Usage("verify needs at least one FILE".into()));
    }
    let keyring = load_keyring(&keyring_path)?;
    let mut out = String::new();
    let mut all_valid = true;
    for file in &files {
        let report = judge(file, Some(&keyring), Mode::Verify);
        all_valid &= report.is_valid();
        if json {
            out.push_str(&json_line(&report));
        } else {
            out.push_str(&format!(
                "{}: {}: {}",
                report.file, report.verdict, report.detail
            ));
        }
        out.push('\n');
    }
    Ok(Outcome {
        stdout: out,
        code: if all_valid { EXIT_OK } else { EXIT_FAILED },
    })
}
