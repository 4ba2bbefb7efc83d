//! One file's verdict and content, as `verify` and `inspect` print it: a JSON object per
//! line for scripts, or text for people.

use std::path::Path;

use serde::Serialize;

use super::args::read_license_file;
use crate::accept::FileBytes;
use crate::engine::Verdict;
use crate::format::{self, features::rfc3339, FeatureEntry, License};
use crate::trust::{Keyring, Rejection};

/// A feature record, as printed.
#[derive(Debug, Serialize)]
pub(crate) struct FeatureReport {
    pub(crate) id: u16,
    pub(crate) name: String,
    pub(crate) transaction: &'static str,
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) limit: u32,
}

impl From<&FeatureEntry> for FeatureReport {
    fn from(e: &FeatureEntry) -> Self {
        FeatureReport {
            id: e.id.0,
            name: e.id.name(),
            transaction: e.transaction.name(),
            start: rfc3339(e.start),
            end: e.end.to_string(),
            limit: e.limit,
        }
    }
}

/// The verdict on one file, with its decoded content where the verdict allows showing it.
#[derive(Debug, Serialize)]
pub(crate) struct FileReport {
    pub(crate) file: String,
    /// `valid`, `malformed`, `unsupported-version`, `unknown-key`, `bad-signature`;
    /// `unreadable` when the file could not be read; `unchecked` from `inspect` without
    /// a keyring.
    pub(crate) verdict: &'static str,
    pub(crate) detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) features: Option<Vec<FeatureReport>>,
    /// The signature in hex (`inspect` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<String>,
    /// The signed message in hex (`inspect` only): what any implementation must agree on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signed_message: Option<String>,
}

impl FileReport {
    fn bare(file: &Path, verdict: &'static str, detail: String) -> FileReport {
        FileReport {
            file: file.display().to_string(),
            verdict,
            detail,
            serial: None,
            kind: None,
            key: None,
            features: None,
            signature: None,
            signed_message: None,
        }
    }

    fn with_license(mut self, license: &License) -> FileReport {
        self.serial = Some(license.serial().to_string());
        self.kind = Some(license.kind().id());
        self.key = Some(license.key_id().to_string());
        self.features = Some(license.features().iter().map(FeatureReport::from).collect());
        self
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.verdict == "valid"
    }
}

/// How much of a file to show.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `verify`: content only for a valid file.
    Verify,
    /// `inspect`: everything decodable, trusted or not, plus the signed message.
    Inspect,
}

/// Reads, decodes and (with a keyring) verifies one file.
pub(crate) fn judge(path: &Path, keyring: Option<&Keyring>, mode: Mode) -> FileReport {
    let bytes = match read_license_file(path) {
        Ok(FileBytes::Read(bytes)) => bytes,
        Ok(FileBytes::TooBig(m)) => return rejected(path, Rejection::Malformed(m)),
        Err(e) => {
            return FileReport::bare(path, "unreadable", format!("cannot read the file: {e}"))
        }
    };
    let license = match format::parse(&bytes) {
        Ok(license) => license,
        Err(e) => return rejected(path, e.into()),
    };
    let mut report = match keyring.map(|k| k.verify(license.clone())) {
        None => FileReport::bare(
            path,
            "unchecked",
            "well-formed; signature not checked (no --keyring given)".into(),
        ),
        Some(Ok(verified)) => {
            let signer = verified.signer();
            let detail = match signer.label.as_str() {
                "" => format!("signed by trusted key {}", signer.id),
                label => format!("signed by trusted key {} ({label})", signer.id),
            };
            FileReport::bare(path, "valid", detail)
        }
        Some(Err(rejection)) => rejected(path, rejection),
    };
    if mode == Mode::Inspect || report.is_valid() {
        report = report.with_license(&license);
    }
    if mode == Mode::Inspect {
        report.signature = Some(hex::encode(license.signature()));
        report.signed_message = Some(hex::encode(license.signed_message()));
    }
    report
}

fn rejected(path: &Path, rejection: Rejection) -> FileReport {
    // The verdict already says "malformed"; the detail need not say it again.
    let detail = match &rejection {
        Rejection::Malformed(m) => m.to_string(),
        other => other.to_string(),
    };
    FileReport::bare(path, Verdict::of(&rejection).id(), detail)
}

/// One JSON object on one line.
pub(crate) fn json_line(report: &FileReport) -> String {
    // Serialising plain strings and numbers cannot fail; keep a visible fallback anyway.
    serde_json::to_string(report)
        .unwrap_or_else(|e| format!("{{\"file\":\"?\",\"verdict\":\"error\",\"detail\":\"{e}\"}}"))
}

/// The feature table as an aligned text table.
pub(crate) fn feature_table(features: &[FeatureReport]) -> String {
    let mut out = format!(
        "  {:<6}  {:<22}  {:<11}  {:<20}  {:<20}  {}\n",
        "ID", "NAME", "TRANSACTION", "START", "END", "LIMIT"
    );
    for f in features {
        let limit = if f.limit == 0 {
            "-".to_string()
        } else {
            f.limit.to_string()
        };
        out.push_str(&format!(
            "  0x{:04x}  {:<22}  {:<11}  {:<20}  {:<20}  {}\n",
            f.id, f.name, f.transaction, f.start, f.end, limit
        ));
    }
    out
}
