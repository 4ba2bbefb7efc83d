//! The trust a phone holds at start (`docs/trust-update.md`, "Rollback"): the firmware
//! keyring's, then each stored document in turn, each checked against the one before
//! by the rules but the expiry (a version taken once is not refused for having expired
//! since: "Freeze" says what an expired trust means).
//!
//! Pure: the firmware's trust and the stored documents' bytes in, the trust held and
//! what is set aside out. The store that keeps the documents comes with the agent's use
//! of them (issue 28).

use std::collections::BTreeMap;

use super::update::{follows, Trust};

/// What the chain gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The trust held: the firmware's, or the last stored document that follows.
    pub(crate) held: Trust,
    /// The stored versions taken, in order.
    pub(crate) taken: Vec<u32>,
    /// Stored documents not taken, with why (never silently dropped): one that does not
    /// follow, every one after it or after a missing version. Versions at or below the
    /// firmware's are not read (a newer firmware keyring supersedes them) and not here.
    pub(crate) set_aside: Vec<(u32, String)>,
}

/// The chain from `firmware` through `stored` (version → bytes, as kept in `trust/`).
pub(crate) fn resume(firmware: &Trust, stored: &BTreeMap<u32, Vec<u8>>) -> Chain {
    let mut held = firmware.clone();
    let mut taken = Vec::new();
    let mut set_aside = Vec::new();
    let mut broken: Option<String> = None;
    let Some(first) = firmware.version.checked_add(1) else {
        // The firmware holds the last version there can be.
        return Chain {
            held,
            taken,
            set_aside,
        };
    };
    for (&version, bytes) in stored.range(first..) {
        if let Some(why) = &broken {
            set_aside.push((version, why.clone()));
            continue;
        }
        if held.version.checked_add(1) != Some(version) {
            let why = format!(
                "version {} is missing from the store",
                u64::from(held.version) + 1
            );
            set_aside.push((version, why.clone()));
            broken = Some(why);
            continue;
        }
        match follows(&held, bytes) {
            Ok(trust) => {
                held = trust;
                taken.push(version);
            }
            Err(refusal) => {
                set_aside.push((version, refusal.to_string()));
                broken = Some(format!("follows version {version}, which is set aside"));
            }
        }
    }
    Chain {
        held,
        taken,
        set_aside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Keyring;

    fn vectors() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trust-vectors/chain")
    }

    fn firmware() -> Trust {
        let text = std::fs::read_to_string(vectors().join("firmware.keyring")).unwrap();
        Keyring::parse(&text).unwrap().trust()
    }

    fn stored(versions: &[u32]) -> BTreeMap<u32, Vec<u8>> {
        versions
            .iter()
            .map(|v| {
                let bytes = std::fs::read(vectors().join(format!("trust-{v}.cfg"))).unwrap();
                (*v, bytes)
            })
            .collect()
    }

    #[test]
    fn the_stored_chain_leads_to_the_same_trust_as_the_updates_did() {
        let chain = resume(&firmware(), &stored(&[1, 2, 3, 4]));
        assert_eq!(chain.taken, [1, 2, 3, 4]);
        assert!(chain.set_aside.is_empty());
        assert_eq!(chain.held.version, 4);
        // Nothing stored: the firmware's.
        assert_eq!(resume(&firmware(), &BTreeMap::new()).held, firmware());
    }

    #[test]
    fn a_broken_link_sets_it_and_what_follows_aside_and_keeps_what_came_before() {
        // Version 2 altered: 1 stands; 2, 3 and 4 are set aside, each with why.
        let mut docs = stored(&[1, 2, 3, 4]);
        let two = docs.get_mut(&2).unwrap();
        let at = two.len() - 10;
        two[at] = if two[at] == b'0' { b'1' } else { b'0' };
        let chain = resume(&firmware(), &docs);
        assert_eq!(chain.taken, [1]);
        assert_eq!(chain.held.version, 1);
        let aside: Vec<u32> = chain.set_aside.iter().map(|(v, _)| *v).collect();
        assert_eq!(aside, [2, 3, 4]);
        assert!(chain.set_aside[1].1.contains("follows version 2"));
        // A missing version: what follows it is set aside.
        let chain = resume(&firmware(), &stored(&[1, 3, 4]));
        assert_eq!(chain.taken, [1]);
        assert!(
            chain.set_aside[0].1.contains("version 2 is missing"),
            "{:?}",
            chain.set_aside
        );
    }

    #[test]
    fn the_keyring_of_the_chains_end_verifies_with_its_keys_only() {
        let text = std::fs::read_to_string(vectors().join("firmware.keyring")).unwrap();
        let firmware = Keyring::parse(&text).unwrap();
        let chain = resume(&firmware.trust(), &stored(&[1, 2, 3, 4]));
        let keyring = firmware.for_trust(&chain.held);
        // The same trust back, and only its license keys trusted.
        assert_eq!(keyring.trust(), chain.held);
        for key in &firmware.trust().licenses {
            let id = crate::trust::key_id_of(key);
            let still = chain.held.licenses.contains(key);
            assert_eq!(keyring.get(id).is_some(), still, "{id}");
        }
        for key in &chain.held.roots {
            assert!(keyring.get(crate::trust::key_id_of(key)).is_none());
        }
    }

    #[test]
    fn the_last_version_there_can_be_ends_the_chain_without_a_panic() {
        let top = Trust {
            version: u32::MAX,
            ..firmware()
        };
        let docs: BTreeMap<u32, Vec<u8>> = [(u32::MAX, b"x".to_vec())].into_iter().collect();
        assert_eq!(resume(&top, &docs).held, top);
        let below = Trust {
            version: u32::MAX - 1,
            ..firmware()
        };
        let chain = resume(&below, &docs);
        assert_eq!(chain.set_aside.len(), 1);
    }

    #[test]
    fn a_newer_firmware_keyring_supersedes_what_is_stored_and_an_older_one_leads_back() {
        // A firmware at version 2 (its trust, as the chain had it): 1 and 2 are not read,
        // 3 and 4 follow it.
        let at_two = resume(&firmware(), &stored(&[1, 2])).held;
        let chain = resume(&at_two, &stored(&[1, 2, 3, 4]));
        assert_eq!(chain.taken, [3, 4]);
        assert!(chain.set_aside.is_empty());
        // A firmware rolled back to version 0 with the store at 4: back to 4.
        assert_eq!(resume(&firmware(), &stored(&[1, 2, 3, 4])).held, chain.held);
    }
}
