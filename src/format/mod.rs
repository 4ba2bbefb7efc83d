//! The license file format, version 2.0 (`shared/spec/license-file.md`).
//!
//! [`parse`] turns bytes into an unverified [`License`] or a [`FormatError`], checking in
//! the spec's order: size, syntax (`xml`), fields and feature table (`license`,
//! `features`), version. `read_capped` reads a file or stream without ever holding
//! more than the cap plus one byte, so a huge file is refused without being read whole.

pub(crate) mod error;
pub(crate) mod features;
pub(crate) mod license;
pub(crate) mod xml;

use std::io::{self, Read};

pub use error::FormatError;

pub use error::Malformed;

pub use error::Location;
pub use features::{End, FeatureEntry, FeatureId, Transaction};
pub(crate) use license::signed_message;
pub use license::{KeyId, License};
pub use license::{Kind, Serial};

/// The largest license file, in bytes.
pub const MAX_FILE_SIZE: usize = 65_536;

/// `bytes` in lowercase hex, as `hex::encode` writes them, a byte at a time rather than
/// a character: the daemon's status writes every license's signature, table, serial and
/// fingerprint so at each event.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)]);
        text.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Hex digits: always UTF-8.
    String::from_utf8(text).unwrap_or_default()
}

/// Decodes a license file (not its signature: see [`crate::trust`]).
pub fn parse(input: &[u8]) -> Result<License, FormatError> {
    if input.len() > MAX_FILE_SIZE {
        return Err(too_big(Some(input.len())).into());
    }
    license::decode(input)
}

/// The size refusal; `size` is known when the whole input is in memory, and not when
/// reading stopped at the cap.
pub(crate) fn too_big(size: Option<usize>) -> Malformed {
    let size = match size {
        Some(n) => format!("{n} bytes"),
        None => format!("larger than {MAX_FILE_SIZE} bytes"),
    };
    Malformed::whole(format!(
        "the file is {size}; a license file is at most {MAX_FILE_SIZE} bytes"
    ))
}

/// What [`read_capped`] found.
#[derive(Debug)]
pub(crate) enum Capped {
    /// The whole content, within the cap.
    Content(Vec<u8>),
    /// More than [`MAX_FILE_SIZE`] bytes were there; reading stopped one byte past it.
    TooBig(Malformed),
}

/// Reads at most `MAX_FILE_SIZE + 1` bytes from `source`: enough to know it is too big,
/// never more, whatever the source's size (a 10 MB file, a pipe that never ends).
pub(crate) fn read_capped(source: impl Read) -> io::Result<Capped> {
    let mut buf = Vec::with_capacity(8 * 1024);
    source
        .take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut buf)?;
    if buf.len() > MAX_FILE_SIZE {
        Ok(Capped::TooBig(too_big(None)))
    } else {
        Ok(Capped::Content(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lower_is_hex_encode() {
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_lower(&every), hex::encode(&every));
        assert_eq!(hex_lower(&[]), "");
        assert_eq!(hex_lower(&[0x00, 0x04, 0xf2, 0xab]), "0004f2ab");
    }

    /// A reader of `len` bytes of `b'x'` that counts what was taken from it.
    struct Counting {
        left: usize,
        taken: usize,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.left);
            buf[..n].fill(b'x');
            self.left -= n;
            self.taken += n;
            Ok(n)
        }
    }

    #[test]
    fn ten_megabytes_are_refused_after_reading_just_past_the_cap() {
        let mut src = Counting {
            left: 10 * 1024 * 1024,
            taken: 0,
        };
        let got = read_capped(&mut src).unwrap();
        assert!(matches!(got, Capped::TooBig(ref m) if m.reason.contains("at most 65536")));
        assert_eq!(src.taken, MAX_FILE_SIZE + 1);
    }

    #[test]
    fn exactly_the_cap_is_read_whole() {
        let mut src = Counting {
            left: MAX_FILE_SIZE,
            taken: 0,
        };
        assert!(
            matches!(read_capped(&mut src).unwrap(), Capped::Content(c) if c.len() == MAX_FILE_SIZE)
        );
    }

    #[test]
    fn parse_refuses_oversize_before_looking_at_content() {
        let big = vec![0xFFu8; MAX_FILE_SIZE + 1];
        match parse(&big) {
            Err(FormatError::Malformed(m)) => assert!(m.reason.contains("at most"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
