//! license-agent: the phone-side license agent for embedded Linux desk phones.
//!
//! The crate is laid out the way a license travels through the phone:
//!
//! - [`format`](mod@format): bytes of a license file → an *unverified*
//!   [`format::License`], or a precise "malformed" / "unsupported version" refusal
//!   (`shared/spec/license-file.md`).
//! - [`trust`]: the keyring and the Ed25519 check; the only place that can build a
//!   [`trust::Verified`] license, so nothing unverified reaches later code.
//! - [`engine`]: pure decisions from (licenses held, identity, instant): acceptance,
//!   primary and bridging licenses, statuses, the merged feature set, the next change,
//!   when to poll, and the reboot rules as a state machine.
//! - [`storage`]: the accepted files, exactly as received, written atomically and
//!   verified again at every load; `meta.json` beside them.
//! - [`fetch`]: the provisioning server (HTTP, HTTPS with a private CA and mutual TLS,
//!   or a folder).
//! - [`supervisor`]: the phone supervisor's protocol and the link to it.
//! - [`daemon`]: `license-agent run`, the loop that ties them together at the edges
//!   (clock, timer, signals, sockets); [`config`] is its configuration file and
//!   [`status`] the report it gives.
//! - [`issuer`]: the vendor side (building and signing license files); host tools and
//!   tests use it, the phone never calls it.
//! - [`cli`]: the `license-agent` command line.

mod accept;
pub mod cli;
pub mod config;
mod control;
pub mod daemon;
pub mod engine;
pub mod fetch;
pub mod format;
pub mod issuer;
mod phone;
pub mod status;
pub mod storage;
pub mod supervisor;
#[cfg(test)]
mod testkit;
mod time;
pub mod trust;

/// The version of the agent (and of its tools).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
