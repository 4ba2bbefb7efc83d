//! `fleet_gen DIR PHONES [NOW]`: writes a generated fleet of PHONES status reports into
//! DIR, as it is at NOW (Unix seconds; default the current time), for the benchmark of
//! `license-fleet` (`scripts/bench-fleet.sh`), with DIR/keyring.txt, the keyring that
//! verifies every license of it (`license-fleet --keyring DIR/keyring.txt DIR`). See
//! `generate.rs` for what the fleet holds.

mod generate;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: fleet_gen DIR PHONES [NOW]");
        std::process::exit(2)
    };
    let (Some(dir), Some(phones)) = (args.first(), args.get(1)) else {
        usage()
    };
    let Ok(phones) = phones.parse::<usize>() else {
        usage()
    };
    let now = match args.get(2) {
        Some(t) => t.parse::<i64>().unwrap_or_else(|_| usage()),
        None => chrono::Utc::now().timestamp(),
    };
    let start = std::time::Instant::now();
    match generate::generate(std::path::Path::new(dir), phones, now) {
        Ok(w) => println!(
            "fleet_gen: {} reports (every license signed), {} bytes in {dir} in {:.1} s",
            w.files,
            w.bytes,
            start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("fleet_gen: {dir}: {e}");
            std::process::exit(1);
        }
    }
}
