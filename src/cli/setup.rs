//! What the commands acting for this phone share: its configuration, identity and
//! keyring, and the wall clock.
//!
//! The wall clock is read here, at the edge, and nowhere else. `LICENSE_AGENT_TEST_NOW`
//! (Unix seconds or RFC 3339) replaces it: a **test aid** for driving expiries and clock
//! faults in end-to-end tests without touching the machine's clock; never set it on a
//! phone.

use std::path::{Path, PathBuf};

use chrono::DateTime;

use super::args::{text_value, Usage};
use crate::config::{self, Config};
use crate::engine::{judge_clock, ClockReading, Identity};
use crate::storage::Meta;
use crate::time::{real_now, UnixTime};
use crate::trust::Keyring;

/// Test aid: replaces the wall clock (see the module doc).
pub const TEST_NOW_VAR: &str = "LICENSE_AGENT_TEST_NOW";

/// This phone, as its configuration describes it.
pub struct Phone {
    pub config: Config,
    pub identity: Identity,
    pub keyring: Keyring,
}

/// Reads the configuration, the MAC and the keyring. Any of them unusable is exit 2.
pub fn load_phone(config_path: &Path) -> Result<Phone, Usage> {
    let config = Config::load(config_path).map_err(|e| Usage(e.to_string()))?;
    let mac = config.mac().map_err(|e| Usage(e.to_string()))?;
    let keyring = Keyring::load(&config.keyring).map_err(|e| Usage(e.to_string()))?;
    Ok(Phone {
        identity: Identity {
            mac,
            site_serial: config.site_serial,
        },
        config,
        keyring,
    })
}

/// `--config PATH`, or the default.
pub fn config_option(parser: &mut lexopt::Parser) -> Result<PathBuf, Usage> {
    Ok(PathBuf::from(text_value(parser, "--config")?))
}

pub fn default_config() -> PathBuf {
    PathBuf::from(config::DEFAULT_PATH)
}

/// An instant written as RFC 3339 or as Unix seconds.
pub fn parse_instant(text: &str) -> Result<UnixTime, String> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return Ok(secs);
    }
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp())
        .map_err(|e| {
            format!("{text:?} is neither RFC 3339 (2027-03-01T00:00:00Z) nor Unix seconds ({e})")
        })
}

/// The wall clock (or the test aid's instant).
pub fn wall_clock() -> Result<UnixTime, Usage> {
    match std::env::var(TEST_NOW_VAR) {
        Ok(text) => parse_instant(&text).map_err(|e| Usage(format!("{TEST_NOW_VAR}: {e}"))),
        Err(_) => Ok(real_now()),
    }
}

/// How long a client waits for the daemon's answer: the daemon answers between two
/// steps, and a fetch of two files may take two total timeouts; a little longer.
pub fn daemon_wait(phone: &Phone) -> std::time::Duration {
    let total = phone.config.fetch.total_timeout.0;
    std::time::Duration::from_secs(total.saturating_mul(2).saturating_add(10))
}

/// The clock as judged for this phone's store.
pub fn read_clock(phone: &Phone, meta: &Meta, wall: UnixTime) -> ClockReading {
    judge_clock(
        wall,
        crate::engine::clock::BUILD_TIME,
        meta.latest_trusted,
        phone.config.timing.windback_tolerance.0,
    )
}
