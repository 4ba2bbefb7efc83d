//! The simulator's memo of verdicts (test builds only): [`Keyring::verify_bytes`] gives
//! the same verdict for the same bytes and keyring every time (Ed25519 verification and
//! the strict reader are pure), so the simulated daemon, which reads and verifies the
//! same few files millions of times, may look the verdict up instead of computing it
//! again. Only a thread that asked for it ([`enable`]) uses it; every other test, and
//! the agent outside tests, verifies every time.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{Keyring, Rejection, Verified};
use crate::format::License;

type Verdict = Result<Verified<License>, Rejection>;
/// Exact bytes → the keyrings they were judged with, and the verdict under each.
type Memo = HashMap<Vec<u8>, Vec<(Keyring, Verdict)>>;

/// More distinct files than the simulator ever sees: past it the memo starts afresh.
const MAX_ENTRIES: usize = 4_096;

thread_local! {
    /// `None` until this thread asks for the memo.
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// Verdicts are looked up on this thread from now on.
pub(crate) fn enable() {
    MEMO.with(|m| {
        m.borrow_mut().get_or_insert_with(HashMap::new);
    });
}

/// Whether this thread looks verdicts up.
pub(super) fn enabled() -> bool {
    MEMO.with(|m| m.borrow().is_some())
}

/// The verdict of `bytes` under `keyring`: looked up if judged before on this thread,
/// else `judge`d and kept.
pub(super) fn verdict(keyring: &Keyring, bytes: &[u8], judge: impl FnOnce() -> Verdict) -> Verdict {
    let known = MEMO.with(|m| {
        let memo = m.borrow();
        let entries = memo.as_ref()?.get(bytes)?;
        entries
            .iter()
            .find(|(k, _)| k == keyring)
            .map(|(_, v)| v.clone())
    });
    if let Some(v) = known {
        return v;
    }
    let v = judge();
    MEMO.with(|m| {
        if let Some(memo) = m.borrow_mut().as_mut() {
            if memo.len() >= MAX_ENTRIES {
                memo.clear();
            }
            memo.entry(bytes.to_vec())
                .or_default()
                .push((keyring.clone(), v.clone()));
        }
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Kind;
    use crate::testkit::{self, DAY, T0};

    #[test]
    fn a_remembered_verdict_is_the_verdict_and_another_keyring_is_judged_afresh() {
        let text = testkit::lic_file(Kind::Site, &[(1, T0 - DAY, None)]).0;
        let keyring = testkit::keyring().clone();
        let fresh = keyring.verify_bytes(text.as_bytes());
        enable();
        let first = keyring.verify_bytes(text.as_bytes());
        let again = verdict(&keyring, text.as_bytes(), || panic!("judged again"));
        assert_eq!(first, fresh);
        assert_eq!(again, fresh);
        assert!(fresh.is_ok());
        // An empty keyring trusts nothing: the memo of the other keyring is not its.
        let empty = Keyring::default();
        assert!(matches!(
            empty.verify_bytes(text.as_bytes()),
            Err(Rejection::UnknownKey { .. })
        ));
        // One changed byte is other bytes: judged, and refused.
        let mut forged = text.into_bytes();
        let i = forged.iter().position(|b| *b == b'=').unwrap_or(40) - 3;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        assert!(keyring.verify_bytes(&forged).is_err());
    }
}
