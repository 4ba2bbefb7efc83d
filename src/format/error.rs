//! Why a file is not a license file: the "malformed" and "unsupported version" verdicts,
//! each with a reason a field engineer can act on and the place in the file it concerns.

use std::fmt;

/// A place in a license file, computed from a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line number.
    pub(crate) line: usize,
    /// 1-based column (in bytes; the file is ASCII).
    pub(crate) column: usize,
}

impl Location {
    /// The line and column of byte `offset` in `input` (clamped to the input's end).
    pub(crate) fn of(input: &[u8], offset: usize) -> Location {
        let before = input.get(..offset).unwrap_or(input);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Location {
            line,
            column: 1 + before.len() - line_start,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The file breaks a rule of the format: what was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What is wrong, in words.
    pub reason: String,
    /// Where in the file, when the problem has a place (a size problem has none).
    pub at: Option<Location>,
}

impl Malformed {
    pub(crate) fn at(input: &[u8], offset: usize, reason: impl Into<String>) -> Malformed {
        Malformed {
            reason: reason.into(),
            at: Some(Location::of(input, offset)),
        }
    }

    pub(crate) fn whole(reason: impl Into<String>) -> Malformed {
        Malformed {
            reason: reason.into(),
            at: None,
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "{at}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Why bytes could not be decoded into a license (checked in the spec's order: size,
/// syntax, fields and feature table, then version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Size, syntax, a field or the feature table breaks the format.
    Malformed(Malformed),
    /// Well-formed, but `Version` is not `2.0`: a newer format this agent does not read.
    UnsupportedVersion {
        /// The `Version` text found (trimmed).
        found: String,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Malformed(m) => write!(f, "malformed license file: {m}"),
            FormatError::UnsupportedVersion { found } => write!(
                f,
                "unsupported license format version {found:?}: this agent reads version 2.0 only"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

impl From<Malformed> for FormatError {
    fn from(m: Malformed) -> Self {
        FormatError::Malformed(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_columns_from_one() {
        let text = b"ab\ncd\nef";
        assert_eq!(Location::of(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of(text, 4), Location { line: 2, column: 2 });
        assert_eq!(Location::of(text, 6), Location { line: 3, column: 1 });
        // Past the end is clamped, never a panic.
        assert_eq!(Location::of(text, 99), Location { line: 3, column: 3 });
    }
}
