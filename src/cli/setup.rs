//! What the commands acting for this phone share on the command line: `--config PATH`
//! and its default, the phone loaded with a word on standard error for each bad value
//! of the configuration set aside, and the mapping of an unusable phone (configuration,
//! MAC, keyring) or test clock to a usage error (exit 2). The phone itself is
//! [`crate::phone`].

use std::path::{Path, PathBuf};

use super::args::{text_value, Usage};
use crate::config;
use crate::phone::{BadTestNow, Phone, PhoneError};

impl From<PhoneError> for Usage {
    fn from(e: PhoneError) -> Self {
        Usage(e.to_string())
    }
}

impl From<BadTestNow> for Usage {
    fn from(e: BadTestNow) -> Self {
        Usage(e.to_string())
    }
}

/// `--config PATH`, or the default.
pub(crate) fn config_option(parser: &mut lexopt::Parser) -> Result<PathBuf, Usage> {
    Ok(PathBuf::from(text_value(parser, "--config")?))
}

pub(crate) fn default_config() -> PathBuf {
    PathBuf::from(config::DEFAULT_PATH)
}

/// The phone of the configuration at `config`, for a person's command: each bad value
/// set aside is said on standard error (`run` logs them instead).
pub(crate) fn load_phone_saying(config: &Path) -> Result<Phone, Usage> {
    let phone = crate::phone::load_phone(config)?;
    for e in &phone.config_set_aside {
        eprintln!("license-agent: {}", crate::status::set_aside_words(e));
    }
    Ok(phone)
}
