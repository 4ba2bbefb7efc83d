//! license-agent: the phone-side license agent for embedded Linux desk phones.
//!
//! The crate is laid out the way a license travels through the phone; arrows point down
//! only (`cli` → `daemon` → `accept`, `control`, `fetch`, `supervisor`, `status` → the
//! core), and nothing below `cli` imports it.
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
//! - [`config`]: the configuration file; `phone` (private): the phone's configuration,
//!   identity and keyring, and the wall clock as read and judged; `time` (private):
//!   wall-clock Unix seconds and their conversions.
//! - `accept` (private): judge and store a license given by hand, for `install` and the
//!   daemon alike; the outcome as data.
//! - `fetch` (private): the provisioning server (HTTP; HTTPS and FTPS with a private CA
//!   and mutual TLS; FTP; TFTP; or a folder), and the status report's upload;
//!   `locate` (private): which server to ask (DHCP's options, the one remembered, the
//!   static list) and the folders its master configuration file names.
//! - [`supervisor`]: the phone supervisor's protocol (public: the `supervisor-sim` tool
//!   shares it) and the link to it.
//! - `control` (private): the control socket's protocol between the command line and the
//!   daemon; `status` (private): the status report, as data.
//! - `daemon` (private): `license-agent run`, the loop that ties them together at the
//!   edges (clock, timer, signals, sockets); `logging` (private): its log, escaped and
//!   with repeats folded; `syslog` (private): that log sent to the local `syslogd` and a
//!   syslog server, never waited on.
//! - [`issuer`]: the vendor side (building and signing license files); host tools and
//!   tests use it, the phone never calls it.
//! - [`cli`]: the `license-agent` command line (arguments and rendering only), the one
//!   entry of the binaries; [`VERSION`] is the crate's.

mod accept;
pub mod cli;
pub mod config;
mod control;
mod daemon;
pub mod engine;
mod fetch;
mod files;
pub mod fleet;
pub mod format;
#[cfg(all(any(test, fuzzing), feature = "http", feature = "ftp"))]
pub mod fuzzing;
pub mod issuer;
mod locate;
mod logging;
mod phone;
mod report;
mod status;
pub mod storage;
pub mod supervisor;
mod syslog;
#[cfg(test)]
mod testkit;
mod time;
pub mod trust;
mod words;

/// The version of the agent (and of its tools).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
