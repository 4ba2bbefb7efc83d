//! This phone: its configuration, identity and keyring ([`Phone`], [`load_phone`]), and
//! the wall clock as the agent reads and judges it for the phone's store.
//!
//! The wall clock is read here, at the edge, and nowhere else. `LICENSE_AGENT_TEST_NOW`
//! (Unix seconds or RFC 3339) replaces it: a **test aid** for driving expiries and clock
//! faults in end-to-end tests without touching the machine's clock; never set it on a
//! phone.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::DateTime;

use crate::config::{Config, ConfigError};
use crate::engine::{judge_clock, ClockReading, Identity};
use crate::storage::Meta;
use crate::time::{real_now, UnixTime};
use crate::trust::{Keyring, KeyringError};

/// Test aid: replaces the wall clock (see the module doc).
pub(crate) const TEST_NOW_VAR: &str = "LICENSE_AGENT_TEST_NOW";

/// This phone, as its configuration describes it.
pub(crate) struct Phone {
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    /// The keyring of the trust held: the firmware's, or that of the last trust document
    /// taken (`docs/trust-update.md`). Licenses are verified with it, and nothing else.
    pub(crate) keyring: Keyring,
    /// The firmware's keyring, the first trust (its labels name the keys it shares).
    pub(crate) firmware: Keyring,
    /// What the stored trust documents gave when the phone was loaded.
    pub(crate) trust_load: TrustLoad,
    /// The configuration's bad values set aside (each key read as if absent), as their
    /// errors: logged, and shown by `status` and the report, until the file is mended.
    pub(crate) config_set_aside: Vec<ConfigError>,
}

/// What the trust documents in the store gave at load (`docs/trust-update.md`,
/// "Rollback"): the versions taken, and everything not taken, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustLoad {
    pub(crate) taken: Vec<u32>,
    pub(crate) notes: Vec<String>,
}

impl Phone {
    /// The phone trusting its firmware keyring alone (nothing stored read).
    pub(crate) fn new(config: Config, identity: Identity, firmware: Keyring) -> Phone {
        Phone {
            config,
            identity,
            keyring: firmware.clone(),
            firmware,
            trust_load: TrustLoad::default(),
            config_set_aside: Vec::new(),
        }
    }

    /// Takes the trust documents stored on `disk` (`trust/` of the state folder): the
    /// chain from the firmware's keyring, each verified against the one before. A
    /// folder that cannot be read for a passing reason (descriptors, memory) is an
    /// error: deciding from the firmware's keyring then would set aside licenses of a
    /// key a stored update added. Anything else unreadable is a note, and the chain
    /// stops before it.
    pub(crate) fn take_stored_trust(
        &mut self,
        disk: &dyn crate::storage::disk::Disk,
    ) -> Result<(), std::io::Error> {
        use crate::storage::trust as stored;
        let mut load = TrustLoad::default();
        let read = match stored::read(disk, &self.config.state_dir) {
            Ok(read) => read,
            Err(e) if crate::storage::passing(&e) => return Err(e),
            Err(e) => {
                load.notes.push(format!(
                    "{}: cannot be read ({e}); the firmware's keyring is held",
                    self.config.state_dir.join(stored::TRUST_DIR).display()
                ));
                self.keyring = self.firmware.clone();
                self.keyring.mark_incomplete();
                self.trust_load = load;
                return Ok(());
            }
        };
        let chain = crate::trust::chain::resume(&self.firmware.trust(), &read.documents);
        // Each version in turn: the keys each removed are remembered.
        let mut keyring = self.firmware.clone();
        for version in &chain.taken {
            let next = read
                .documents
                .get(version)
                .and_then(|bytes| crate::trust::update::parse(bytes).ok());
            if let Some(document) = next {
                keyring = keyring.followed_by(&self.firmware, &document.trust);
            }
        }
        // A document that does not follow, or one that cannot be read: what the phone
        // held may be further on than what reads now.
        let short = !chain.set_aside.is_empty()
            || read
                .strangers
                .iter()
                .any(|(_, why)| why.starts_with("cannot be read"));
        if short {
            keyring.mark_incomplete();
        }
        load.taken = chain.taken;
        for (version, why) in chain.set_aside {
            load.notes
                .push(format!("{} not taken: {why}", stored::file_name(version)));
        }
        for (name, why) in read.strangers {
            load.notes.push(format!("{name} not read: {why}"));
        }
        self.keyring = keyring;
        self.trust_load = load;
        Ok(())
    }
}

/// Why the phone could not be loaded: its configuration (or the MAC it names), or its
/// keyring, is unusable.
#[derive(Debug)]
pub(crate) enum PhoneError {
    Config(ConfigError),
    Keyring(KeyringError),
    /// The stored trust documents could not be read just now.
    Trust(std::io::Error),
}

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneError::Config(e) => e.fmt(f),
            PhoneError::Keyring(e) => e.fmt(f),
            PhoneError::Trust(e) => write!(f, "the stored trust documents cannot be read now: {e}"),
        }
    }
}

/// Reads the configuration, the MAC and the keyring, and takes the trust documents
/// stored. A bad value the agent can run without is set aside
/// ([`Config::load_setting_aside`]) and kept in [`Phone::config_set_aside`]:
/// the daemon and every command read the file the same way (the same control socket,
/// the same store), and each says what it set aside.
pub(crate) fn load_phone(config_path: &Path) -> Result<Phone, PhoneError> {
    let (config, set_aside) =
        Config::load_setting_aside(config_path).map_err(PhoneError::Config)?;
    let mut phone = phone_of(config)?;
    phone.config_set_aside = set_aside;
    Ok(phone)
}

/// The phone `config` describes: its MAC, its keyring, the trust stored.
fn phone_of(config: Config) -> Result<Phone, PhoneError> {
    let mac = config.mac().map_err(PhoneError::Config)?;
    let keyring = Keyring::load(&config.keyring).map_err(PhoneError::Keyring)?;
    let identity = Identity {
        mac,
        site_serial: config.site_serial,
    };
    let mut phone = Phone::new(config, identity, keyring);
    phone
        .take_stored_trust(&crate::storage::disk::RealDisk)
        .map_err(PhoneError::Trust)?;
    Ok(phone)
}

/// An instant written as RFC 3339 or as Unix seconds.
pub(crate) fn parse_instant(text: &str) -> Result<UnixTime, String> {
    let t = match text.trim().parse::<i64>() {
        Ok(secs) => secs,
        Err(_) => DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp())
            .map_err(|e| {
                format!(
                    "{text:?} is neither RFC 3339 (2027-03-01T00:00:00Z) nor Unix seconds ({e})"
                )
            })?,
    };
    // The instants a license can name: Unix seconds in 32 bits.
    if (0..=i64::from(u32::MAX)).contains(&t) {
        Ok(t)
    } else {
        Err(format!(
            "{text:?} is outside the instants a license can name (1970-01-01T00:00:00Z to \
             2106-02-07T06:28:15Z)"
        ))
    }
}

/// The test aid's instant is not one.
#[derive(Debug)]
pub(crate) struct BadTestNow(pub(crate) String);

impl fmt::Display for BadTestNow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TEST_NOW_VAR}: {}", self.0)
    }
}

/// The wall clock (or the test aid's instant).
pub(crate) fn wall_clock() -> Result<UnixTime, BadTestNow> {
    match std::env::var(TEST_NOW_VAR) {
        Ok(text) => parse_instant(&text).map_err(BadTestNow),
        Err(_) => Ok(real_now()),
    }
}

/// How long a client waits for the daemon's answer: the daemon answers between two
/// steps, and a fetch of two files may take two total timeouts; a little longer.
pub(crate) fn daemon_wait(phone: &Phone) -> Duration {
    let total = phone.config.fetch.total_timeout.0;
    Duration::from_secs(total.saturating_mul(2).saturating_add(10))
}

/// The clock as judged for this phone's store.
pub(crate) fn read_clock(phone: &Phone, meta: &Meta, wall: UnixTime) -> ClockReading {
    judge_clock(
        wall,
        crate::engine::clock::BUILD_TIME,
        meta.latest_trusted,
        phone.config.timing.windback_tolerance.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_those_a_license_can_name() {
        assert_eq!(parse_instant("0"), Ok(0));
        assert_eq!(parse_instant(" 4294967295 "), Ok(4_294_967_295));
        assert_eq!(parse_instant("2106-02-07T06:28:15Z"), Ok(4_294_967_295));
        assert_eq!(parse_instant("2027-03-01T00:00:00Z"), Ok(1_803_859_200));
        for bad in [
            "-9223372036854775808",
            "9223372036854775807",
            "-1",
            "4294967296",
            "1969-12-31T23:59:59Z",
            "2106-02-07T06:28:16Z",
        ] {
            let e = parse_instant(bad).unwrap_err();
            assert!(
                e.contains("outside the instants a license can name"),
                "{bad}: {e}"
            );
        }
        assert!(parse_instant("soon")
            .unwrap_err()
            .contains("neither RFC 3339"));
    }
}
