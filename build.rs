//! Records the build time: a phone clock that reads earlier than it is not yet set
//! (`agent-rules.md`, "Unsynced clock"). `SOURCE_DATE_EPOCH` makes it reproducible.
//!
//! And links the release `license-agent` with `link/boot.ld`, which puts the code a boot
//! runs side by side at the start of the text: see that file for why.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    boot_layout();
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let code = format!(
        "/// When this agent was built (Unix seconds).\npub const BUILD_TIME: i64 = {secs};\n"
    );
    std::fs::write(std::path::Path::new(&out).join("build_time.rs"), code)
        .expect("write build_time.rs");
}

/// The boot path's code together (`link/boot.ld`), for the phone's binary: the release
/// `license-agent` on Linux. Not in test builds: their memory is nobody's concern, and
/// they link faster without it. Not in the build that `scripts/boot-figures.sh --layout`
/// profiles either (`LICENSE_AGENT_BOOT_PROFILE=PATH`): the same code, laid out as the
/// linker would, and the linker's map written to PATH, to name the functions run.
fn boot_layout() {
    println!("cargo:rerun-if-changed=link/boot.ld");
    println!("cargo:rerun-if-env-changed=LICENSE_AGENT_BOOT_PROFILE");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if !release || !linux {
        return;
    }
    if let Some(map) = std::env::var_os("LICENSE_AGENT_BOOT_PROFILE") {
        let map = map.to_string_lossy();
        println!("cargo:rustc-link-arg-bin=license-agent=-Wl,-Map={map}");
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // `-T` with a script that ends in INSERT adds to the linker's own layout (GNU ld and
    // lld alike) instead of replacing it.
    println!("cargo:rustc-link-arg-bin=license-agent=-Wl,-T,{dir}/link/boot.ld");
}
