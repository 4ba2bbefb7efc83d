//! What every command line of the project shares: exit codes, usage errors, reading
//! option values, and reading license files under the size cap.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::accept::FileBytes;
use crate::format;

/// Every file was valid (or the command did what it was asked).
pub const EXIT_OK: i32 = 0;
/// At least one file was refused, or the action failed.
pub(crate) const EXIT_FAILED: i32 = 1;
/// The command line was wrong, or something it names (a keyring) cannot be used.
pub(crate) const EXIT_USAGE: i32 = 2;

/// An action that failed (exit 1): the message goes to standard error.
pub fn failed(program: &str, message: &str) -> crate::cli::Outcome {
    eprintln!("{program}: {message}");
    crate::cli::Outcome {
        stdout: String::new(),
        code: EXIT_FAILED,
    }
}

/// A command-line mistake: printed with a hint to `--help`, exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Self {
        Usage(e.to_string())
    }
}

impl From<String> for Usage {
    fn from(s: String) -> Self {
        Usage(s)
    }
}

/// The value of the option just read, as UTF-8 text.
pub fn text_value(parser: &mut lexopt::Parser, option: &str) -> Result<String, Usage> {
    let value: OsString = parser.value()?;
    value
        .into_string()
        .map_err(|v| Usage(format!("{option}: {v:?} is not valid UTF-8")))
}

/// Reads a license file's bytes (`-` is standard input), never more than the cap plus
/// one byte: enough to tell that a file is too big.
pub(crate) fn read_license_bytes(path: &Path) -> io::Result<Vec<u8>> {
    let source: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path)?)
    };
    let mut bytes = Vec::with_capacity(8 * 1024);
    source
        .take(format::MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a license file (`-` is standard input), never more than the cap plus one byte.
pub(crate) fn read_license_file(path: &Path) -> io::Result<FileBytes> {
    read_license_bytes(path).map(|bytes| FileBytes::judge(&bytes))
}
