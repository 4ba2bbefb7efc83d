//! The integration tests: one binary (`cargo test --test it`), one module per subject.
//! They drive the real binaries (`license-agent`, `license-issuer`, `license-fleet`,
//! `supervisor-sim`) against real servers started on 127.0.0.1 by the
//! [`test_servers`] crate (nginx, vsftpd, tftpd-hpa, the fault server, the PKI), which
//! the library's unit tests share. `common` holds what only these tests need: how to
//! start the binaries, test phones and their daemons, the supervisor fake, the control
//! socket client, the emulated phone and its flash.
//!
//! A module is a filter: `cargo test --test it -- daemon::` runs one subject. The
//! emulated phone's modules (`phone`, `phone_cuts`, `phone_trust_cuts`, `phone_dhcp`,
//! `phone_figures`) need its image and are `#[ignore]`d in a plain run;
//! `scripts/phone-check.sh` builds the image and runs them with `--ignored`.
//! `previous_release` needs the last release's binary, and `scripts/compat-check.sh`
//! builds it and runs that module the same way.

mod common;
#[path = "../../examples/fleet_gen/generate.rs"]
mod fleet_gen;

mod boot_path;
mod cli;
mod config_paths;
mod crash;
mod daemon;
mod dhcp_hooks;
mod fault_suite;
mod flash_model;
mod fleet_page;
mod fleet_truth;
mod hostile;
mod install_status;
mod interop;
mod issuer;
#[cfg(feature = "pkcs11")]
mod issuer_pkcs11;
mod liveness;
mod neighbours;
mod phone;
mod phone_cuts;
mod phone_dhcp;
mod phone_figures;
mod phone_trust_cuts;
mod previous_release;
mod provisioning;
mod quiet;
mod reboot_windows;
mod reboots;
mod renewals;
mod report_upload;
mod robustness;
mod servers;
mod supervisor_sim;
mod syslog;
mod transports;
mod trust_rotation;
mod vectors;
