//! The field layer: six element texts → a typed, still *unverified* [`License`] with the
//! exact bytes its signature covers.

use std::fmt;

use super::error::{FormatError, Malformed};
use super::features::{self, FeatureEntry};
use super::xml::{self, FieldText};

/// The first line of every signed message (LF included).
pub(crate) const MESSAGE_PREFIX: &[u8] = b"PLCM-LICENSE-2.0\n";
/// The only format version this agent reads.
pub(crate) const VERSION: &str = "2.0";

/// A license's serial: the phone's MAC for a phone license, the site serial for a site
/// license. Six bytes, shown as 12 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(pub(crate) [u8; 6]);

impl Serial {
    /// The serial used by the site license's file name, `000000000000`.
    pub(crate) const SITE_FILE: Serial = Serial([0; 6]);

    /// Reads 12 hex digits, any case (a MAC as people type it has no colons here).
    pub fn parse(text: &str) -> Result<Serial, String> {
        decode_exact::<6>(text.as_bytes())
            .map(Serial)
            .map_err(|why| format!("serial {text:?}: {why}; expected 12 hex digits"))
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::hex_lower(&self.0))
    }
}

/// The id of a signing key: the first 4 bytes of SHA-256 over its raw public key, shown
/// as 8 uppercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub(crate) [u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

crate::words::words! {
    /// Phone license (bound to one MAC) or site license (shared by a site); its word
    /// ([`Kind::id`]) is the name used on the command line and in JSON.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Kind {
        Phone = "phone",
        Site = "site",
    }
}

impl Kind {
    /// The `Description` text of this kind.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Kind::Phone => "Phone",
            Kind::Site => "Site",
        }
    }

    /// Reads `phone` or `site` (any case).
    pub fn parse(text: &str) -> Result<Kind, String> {
        Kind::from_id(&text.to_ascii_lowercase())
            .ok_or_else(|| format!("kind {text:?}: expected phone or site"))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A decoded license file. Decoding proves only that the file is well formed: nothing
/// here is trusted until [`crate::trust`] has checked the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    serial: Serial,
    kind: Kind,
    key_id: KeyId,
    features: Vec<FeatureEntry>,
    signature: [u8; 64],
    signed_message: Vec<u8>,
}

impl License {
    /// Builds a license from its parts; the signed message is derived, never given.
    pub(crate) fn from_parts(
        serial: Serial,
        kind: Kind,
        key_id: KeyId,
        features: Vec<FeatureEntry>,
        signature: [u8; 64],
    ) -> License {
        let signed_message = signed_message(serial, kind, key_id, &features);
        License {
            serial,
            kind,
            key_id,
            features,
            signature,
            signed_message,
        }
    }

    pub(crate) fn serial(&self) -> Serial {
        self.serial
    }
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub(crate) fn features(&self) -> &[FeatureEntry] {
        &self.features
    }
    pub(crate) fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
    /// The exact bytes the signature covers. Two files carry the same license exactly
    /// when these are equal.
    pub fn signed_message(&self) -> &[u8] {
        &self.signed_message
    }
}

/// The message of the spec: prefix, serial, description, key id, then the raw table.
pub(crate) fn signed_message(
    serial: Serial,
    kind: Kind,
    key_id: KeyId,
    features: &[FeatureEntry],
) -> Vec<u8> {
    let mut msg =
        Vec::with_capacity(MESSAGE_PREFIX.len() + 30 + features.len() * features::RECORD_LEN);
    msg.extend_from_slice(MESSAGE_PREFIX);
    msg.extend_from_slice(format!("{serial}\n{}\n{key_id}\n", kind.description()).as_bytes());
    msg.extend_from_slice(&features::encode_table(features));
    msg
}

/// Decodes exactly `N` bytes from `2N` hex digits of any case.
fn decode_exact<const N: usize>(text: &[u8]) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!("{} characters", text.len()));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(describe_hex_error)?;
    Ok(out)
}

fn describe_hex_error(e: hex::FromHexError) -> String {
    match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => {
            format!("{c:?} at position {} is not a hex digit", index + 1)
        }
        hex::FromHexError::OddLength => "an odd number of hex digits".into(),
        hex::FromHexError::InvalidStringLength => "the wrong number of hex digits".into(),
    }
}

fn field_error(
    input: &[u8],
    field: FieldText<'_>,
    name: &str,
    why: impl fmt::Display,
) -> Malformed {
    Malformed::at(input, field.offset, format!("<{name}>: {why}"))
}

/// Decodes a license file already within the size cap (see [`super::parse`]).
pub(super) fn decode(input: &[u8]) -> Result<License, FormatError> {
    let [serial, version, description, key, table, signature] = xml::read_fields(input)?;

    let serial_value = decode_exact::<6>(serial.text).map(Serial).map_err(|why| {
        field_error(
            input,
            serial,
            "Serial",
            format!("{why}; expected 12 hex digits"),
        )
    })?;
    let kind = match description.text {
        b"Phone" => Kind::Phone,
        b"Site" => Kind::Site,
        other => {
            return Err(field_error(
                input,
                description,
                "Description",
                format!(
                    "{:?} is neither \"Phone\" nor \"Site\"",
                    String::from_utf8_lossy(other)
                ),
            )
            .into())
        }
    };
    let key_id = decode_exact::<4>(key.text)
        .map(KeyId)
        .map_err(|why| field_error(input, key, "Key", format!("{why}; expected 8 hex digits")))?;
    let table_bytes = decode_table_hex(input, table)?;
    let entries = features::decode_table(&table_bytes).map_err(|e| {
        // Point at the first hex digit of the faulty record when there is one.
        let offset = e.record.map_or(0, |r| r * 2 * features::RECORD_LEN);
        Malformed::at(input, table.offset + offset, format!("<Features>: {e}"))
    })?;
    let signature_bytes = decode_exact::<64>(signature.text).map_err(|why| {
        field_error(
            input,
            signature,
            "Signature",
            format!("{why}; expected 128 hex digits"),
        )
    })?;

    // Version last: a well-formed file of another version is "unsupported", not "malformed".
    if version.text != VERSION.as_bytes() {
        return Err(FormatError::UnsupportedVersion {
            found: String::from_utf8_lossy(version.text).into_owned(),
        });
    }
    Ok(License::from_parts(
        serial_value,
        kind,
        key_id,
        entries,
        signature_bytes,
    ))
}

fn decode_table_hex(input: &[u8], table: FieldText<'_>) -> Result<Vec<u8>, Malformed> {
    let digits = table.text;
    if let Some(bad) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(Malformed::at(
            input,
            table.offset + bad,
            format!(
                "<Features>: {:?} is not a hex digit",
                char::from(digits[bad])
            ),
        ));
    }
    if digits.len() % 2 != 0 {
        return Err(field_error(
            input,
            table,
            "Features",
            format!("an odd number of hex digits ({})", digits.len()),
        ));
    }
    hex::decode(digits).map_err(|e| field_error(input, table, "Features", describe_hex_error(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_parse_and_display() {
        assert_eq!(
            Serial::parse("0004F2000001").unwrap().to_string(),
            "0004f2000001"
        );
        assert!(Serial::parse("00:04:f2:00:00:01").is_err());
        assert!(Serial::parse("0004f200000").is_err());
        assert!(Serial::parse("0004f200000g").is_err());
    }

    #[test]
    fn message_layout_matches_the_spec() {
        let entry = FeatureEntry {
            id: features::FeatureId(1),
            transaction: features::Transaction::New,
            start: 1_767_225_600,
            end: features::End::Never,
            limit: 0,
        };
        let msg = signed_message(
            Serial::parse("0004F2000001").unwrap(),
            Kind::Phone,
            KeyId([0x03, 0xa5, 0x48, 0xa2]),
            &[entry],
        );
        let mut expected = b"PLCM-LICENSE-2.0\n0004f2000001\nPhone\n03A548A2\n".to_vec();
        expected.extend_from_slice(&hex::decode("000102006955b900ffffffff00000000").unwrap());
        assert_eq!(msg, expected);
    }
}
