//! Records the build time: a phone clock that reads earlier than it is not yet set
//! (`agent-rules.md`, "Unsynced clock"). `SOURCE_DATE_EPOCH` makes it reproducible.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
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
