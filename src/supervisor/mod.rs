//! Talking to the phone supervisor (`shared/spec/supervisor-protocol.md`): the firmware
//! process that knows the call state, reboots the phone and relays check-sync events.
//!
//! - [`protocol`]: the line protocol, both directions, and a line reader that survives
//!   anything a peer sends. The agent and the `supervisor-sim` test tool share it.
//! - `link`: the agent's non-blocking connection, with reconnection and back-off.

pub(crate) mod link;
pub mod protocol;
