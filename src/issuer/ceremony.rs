//! The key ceremony of a trust update (`docs/trust-update.md`, "The ceremony"): a draft
//! (the document without signatures), one signature line per root key (each made
//! wherever that key is kept), and the assembled document, checked against the version
//! before it by the agent's own rules before it is written.

use super::Signer;
use crate::time::UnixTime;
use crate::trust::key_id_of;
use crate::trust::update::{self, Document, Trust};

/// What a trust version says, before it is signed.
pub struct DraftSpec {
    pub version: u32,
    /// `None`: never.
    pub expires: Option<i64>,
    pub root_threshold: usize,
    pub roots: Vec<[u8; 32]>,
    pub licenses: Vec<[u8; 32]>,
}

/// The draft's text: every line of the document but the signatures, refused when the
/// agent would refuse it as malformed.
pub fn draft(spec: &DraftSpec) -> Result<String, String> {
    let mut roots = spec.roots.clone();
    roots.sort_unstable();
    let mut licenses = spec.licenses.clone();
    licenses.sort_unstable();
    let expires = match spec.expires {
        None => "never".to_string(),
        Some(at) => chrono::DateTime::from_timestamp(at, 0)
            .ok_or_else(|| format!("expires {at}: not an instant"))?
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    };
    let mut text = format!(
        "# trust version {}: written by license-issuer trust-draft; sign with trust-sign\n\
         license-agent-trust 1\nversion {}\nexpires {expires}\nroot-threshold {}\n",
        spec.version, spec.version, spec.root_threshold
    );
    for key in &roots {
        text.push_str(&format!(
            "root ed25519 {}  # {}\n",
            hex::encode(key),
            key_id_of(key)
        ));
    }
    for key in &licenses {
        text.push_str(&format!(
            "license ed25519 {}  # {}\n",
            hex::encode(key),
            key_id_of(key)
        ));
    }
    read(&text)?;
    Ok(text)
}

fn read(text: &str) -> Result<Document, String> {
    update::parse(text.as_bytes()).map_err(|e| e.to_string())
}

/// One signature line over the draft's signed message, by `key`.
pub fn sign(draft: &str, key: &dyn Signer) -> Result<String, String> {
    let document = read(draft)?;
    let message = document.trust.signed_message();
    let public = key.public_key();
    if !document.trust.roots.contains(&public) {
        // Allowed (an old root signs a draft that drops it), but said.
        eprintln!(
            "license-issuer: note: key {} is not a root of this draft (an old root signing its successor?)",
            key_id_of(&public)
        );
    }
    // Signer::sign verifies what it returns: a line that would not count is never made.
    let signature = key.sign(&message)?;
    Ok(format!(
        "signature {} {}",
        key_id_of(&public),
        hex::encode(signature)
    ))
}

/// The draft with `signatures` (lines as `sign` writes them), judged against `previous`
/// (the file of the version before: a trust document, or the firmware keyring) at `now`,
/// exactly as the agent will judge it.
pub fn assemble(
    draft: &str,
    signatures: &[String],
    previous: &[u8],
    now: UnixTime,
) -> Result<String, String> {
    let previous = &trust_of(previous)?;
    let mut text = draft.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for line in signatures {
        let line = line.trim();
        if !line.starts_with("signature ") || line.contains('\n') {
            return Err(format!("{line:?} is not a signature line of trust-sign"));
        }
        text.push_str(line);
        text.push('\n');
    }
    update::judge(previous, text.as_bytes(), Some(now))
        .map_err(|e| format!("the agent would refuse it: {e}"))?;
    Ok(text)
}

/// The trust a file gives: a trust document (as taken before), or a firmware keyring.
pub(crate) fn trust_of(bytes: &[u8]) -> Result<Trust, String> {
    if let Ok(document) = update::parse(bytes) {
        return Ok(document.trust);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "neither a trust document nor a keyring".to_string())?;
    crate::trust::Keyring::parse(text)
        .map(|k| k.trust())
        .map_err(|e| format!("neither a trust document nor a keyring: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32]).unwrap()
    }

    #[test]
    fn a_ceremony_makes_what_the_agent_takes_and_refuses_what_it_would_refuse() {
        let firmware = format!(
            "version 0\nroot-threshold 2\nroot ed25519 {}\nroot ed25519 {}\nroot ed25519 {}\ned25519 {}\n",
            hex::encode(key(1).public_key()),
            hex::encode(key(2).public_key()),
            hex::encode(key(3).public_key()),
            hex::encode(key(9).public_key()),
        );
        let held = trust_of(firmware.as_bytes()).unwrap();
        let spec = DraftSpec {
            version: 1,
            expires: None,
            root_threshold: 2,
            roots: vec![
                key(2).public_key(),
                key(3).public_key(),
                key(4).public_key(),
            ],
            licenses: vec![key(10).public_key()],
        };
        let text = draft(&spec).unwrap();
        // Each signer on its own: the lines come back in any order.
        let lines: Vec<String> = [3, 4, 2]
            .iter()
            .map(|n| sign(&text, &key(*n)).unwrap())
            .collect();
        let done = assemble(&text, &lines, firmware.as_bytes(), 0).unwrap();
        let taken = update::judge(&held, done.as_bytes(), Some(0)).unwrap();
        assert_eq!(taken.version, 1);
        assert_eq!(trust_of(done.as_bytes()).unwrap(), taken);
        // One old root is below the old threshold: nothing is written.
        let why = assemble(&text, &lines[1..2], firmware.as_bytes(), 0).unwrap_err();
        assert!(why.contains("below the old threshold"), "{why}");
        // A skipped version is refused at the ceremony, not on the phones.
        let skipping = draft(&DraftSpec { version: 2, ..spec }).unwrap();
        let lines: Vec<String> = [2, 3]
            .iter()
            .map(|n| sign(&skipping, &key(*n)).unwrap())
            .collect();
        assert!(assemble(&skipping, &lines, firmware.as_bytes(), 0)
            .unwrap_err()
            .contains("skips a version"));
        // A draft the agent would not read is never written.
        let bad = DraftSpec {
            version: 1,
            expires: None,
            root_threshold: 3,
            roots: vec![key(2).public_key()],
            licenses: vec![key(10).public_key()],
        };
        assert!(draft(&bad).unwrap_err().contains("root-threshold 3"));
    }
}
