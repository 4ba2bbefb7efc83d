//! `license-agent`: the phone-side binary. All logic lives in the library; see `cli`.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(license_agent::cli::main_with(
        "license-agent",
        args,
        license_agent::cli::run,
    ));
}
