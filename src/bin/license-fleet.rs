//! `license-fleet`: a fleet's licenses from its phones' status reports, as the vendor's
//! portal shows them (`license_agent::fleet`). Host only: a service provider's tool.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(license_agent::cli::main_with(
        "license-fleet",
        args,
        license_agent::fleet::run,
    ));
}
