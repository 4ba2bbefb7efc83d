//! Test support shared by the unit tests: a fixed signing key, its keyring, this phone's
//! identity, and real signed-and-verified licenses (only the verifier makes `Verified`).

use std::sync::OnceLock;

use crate::engine::Identity;
use crate::format::{End, FeatureEntry, FeatureId, Kind, License, Serial, Transaction};
use crate::issuer::{issue, LicenseSpec, SigningKey};
use crate::trust::{Keyring, Verified};

pub(crate) const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z.
pub(crate) const T0: i64 = 1_767_225_600;
pub(crate) const MAC: &str = "0004f2000001";
pub(crate) const SITE: &str = "100000000001";

/// One entry: feature id, start, end (`None` = never).
pub(crate) type E = (u16, i64, Option<i64>);

/// The test vendor key and a keyring trusting it.
pub(crate) fn key() -> &'static (SigningKey, Keyring) {
    static KEY: OnceLock<(SigningKey, Keyring)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SigningKey::from_seed(&[7; 32]).expect("seed");
        let ring = Keyring::single(key.public_key(), "unit tests");
        (key, ring)
    })
}

pub(crate) fn keyring() -> &'static Keyring {
    &key().1
}

pub(crate) fn identity() -> Identity {
    Identity {
        mac: Serial::parse(MAC).expect("mac"),
        site_serial: Some(Serial::parse(SITE).expect("site")),
    }
}

pub(crate) fn entry((id, start, end): E, transaction: Transaction, limit: u32) -> FeatureEntry {
    FeatureEntry {
        id: FeatureId(id),
        transaction,
        start: u32::try_from(start).expect("start fits"),
        end: end.map_or(End::Never, |e| End::At(u32::try_from(e).expect("end fits"))),
        limit,
    }
}

/// A signed license file's text.
pub(crate) fn file_with(kind: Kind, serial: &str, entries: Vec<FeatureEntry>) -> String {
    let spec = LicenseSpec {
        serial: Serial::parse(serial).expect("serial"),
        kind,
        features: entries,
    };
    issue(&spec, &key().0).expect("issue")
}

pub(crate) fn license_with(
    kind: Kind,
    serial: &str,
    entries: Vec<FeatureEntry>,
) -> Verified<License> {
    keyring()
        .verify_bytes(file_with(kind, serial, entries).as_bytes())
        .expect("verify")
}

/// This phone's (or this site's) license with `New` entries.
pub(crate) fn lic(kind: Kind, entries: &[E]) -> Verified<License> {
    lic_file(kind, entries).1
}

/// Like [`lic`], with the file's text too.
pub(crate) fn lic_file(kind: Kind, entries: &[E]) -> (String, Verified<License>) {
    let serial = if kind == Kind::Phone { MAC } else { SITE };
    let text = file_with(
        kind,
        serial,
        entries
            .iter()
            .map(|e| entry(*e, Transaction::New, 0))
            .collect(),
    );
    let license = keyring().verify_bytes(text.as_bytes()).expect("verify");
    (text, license)
}

/// This phone, trusting the test key, its configuration `agent.toml` in `dir` (the
/// MAC, the site serial, `keyring` and `state_dir = "state"`, then the lines `more`).
pub(crate) fn phone_in(dir: &std::path::Path, more: &str) -> crate::phone::Phone {
    let text = format!(
        "mac = \"{MAC}\"\nsite_serial = \"{SITE}\"\nkeyring = \"keyring\"\nstate_dir = \"state\"\n{more}"
    );
    let config = crate::config::Config::parse(&text, &dir.join("agent.toml")).expect("config");
    crate::phone::Phone::new(config, identity(), keyring().clone())
}

/// The store of `phone` on the real file system, opened at `at` as its one writer.
pub(crate) fn writer_store(phone: &crate::phone::Phone, at: i64) -> crate::storage::Store {
    use crate::storage::{Mode, Store, WriterLock};
    let state = &phone.config.state_dir;
    std::fs::create_dir_all(state).expect("state folder");
    let lock = std::sync::Arc::new(WriterLock::try_acquire(state).expect("lock").expect("free"));
    Store::open(
        state,
        &phone.keyring,
        &phone.identity,
        Mode::Writer(lock),
        at,
    )
    .expect("store")
}
