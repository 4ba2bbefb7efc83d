//! `license-agent run`: the daemon (see `crate::daemon`), or one boot pass with `--once`.

use super::args::{Usage, EXIT_FAILED, EXIT_OK};
use super::setup::{config_option, default_config};
use super::Outcome;
use crate::daemon::{self, DaemonClock};

pub(crate) const HELP: &str = "\
license-agent run: fetch, verify, store and publish the licenses, then wait for changes

Usage: license-agent run [--config PATH] [--once]

At start: load and verify the stored licenses again, fetch 000000000000-license.cfg and
<mac>-license.cfg from the provisioning server, apply them, publish the enabled feature
set to the features file. Then sleep until the next instant that matters (a license
start or end, the 31-day mark, a retry after a failed fetch); a step of the wall clock
wakes it at once. SIGTERM or SIGINT stop it, SIGHUP reads the configuration again. The
control socket answers `license-agent status` and `license-agent check-sync`.
A fetch failure never blocks the start: the stored licenses stay in force and the fetch
is retried with exponential back-off and jitter.

Options:
  --config PATH  the agent's configuration (default /etc/license-agent/agent.toml)
  --once         one start-fetch-decide-publish pass, print the status, and exit
  -h, --help     this text

Logs go to standard error (RUST_LOG=debug for more), and to syslog as the
configuration's [syslog] says: the local /dev/log when it is a socket (unless
local = \"off\"), and a syslog server over UDP, TCP or TLS. Test aid:
LICENSE_AGENT_TEST_NOW starts the daemon's clock at that instant and lets tests move it
over the control socket; never set it on a phone.

Exit status: 0 stopped cleanly (or --once done, even if the fetch failed), 1 the agent
could not run, 2 usage error or unusable configuration or keyring.
";

pub(crate) fn run(mut parser: lexopt::Parser) -> Result<Outcome, Usage> {
    use lexopt::prelude::*;
    let mut config = default_config();
    let mut once = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = config_option(&mut parser)?,
            Long("once") => once = true,
            Short('h') | Long("help") => return Ok(Outcome::help(HELP)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    crate::logging::init();
    if !once {
        // Before anything slow: a SIGHUP or SIGTERM during the start must reach the
        // loop, not kill the agent with the default action.
        if let Err(e) = daemon::block_signals() {
            return Ok(super::args::failed("license-agent", &e.to_string()));
        }
    }
    // A configuration the agent cannot run on is a usage error (2), as for every other
    // command; a bad value it can run without is set aside and logged. Read once: the
    // agent starts from what was checked here.
    let phone = crate::phone::load_phone(&config)?;
    for e in &phone.config_set_aside {
        log::error!("{}", crate::status::set_aside_words(e));
    }
    if once {
        DaemonClock::from_env().map_err(|e| Usage(e.to_string()))?;
        let (report, mut status) = match daemon::once(phone) {
            Ok(done) => done,
            Err(e) => return Ok(super::args::failed("license-agent", &e.to_string())),
        };
        let mut out = String::from("run --once:\n");
        for f in &report.files {
            out.push_str(&format!("  {} {}: {}\n", f.file, f.outcome, f.detail));
        }
        out.push('\n');
        status.source = "run --once".into();
        out.push_str(&super::status::table(&status));
        return Ok(Outcome {
            stdout: out,
            code: EXIT_OK,
        });
    }
    // The daemon's log also to syslog as [syslog] says (read at start; a SIGHUP does
    // not change it).
    crate::logging::start_syslog(&phone.config.syslog, &phone.identity.mac.to_string());
    let outcome = match daemon::run(&config, phone) {
        Ok(code) => Outcome {
            stdout: String::new(),
            code,
        },
        Err(e) => {
            log::error!("{e}");
            Outcome {
                stdout: String::new(),
                code: EXIT_FAILED,
            }
        }
    };
    // The last lines ("stopping") reach the syslog server too, unless it is in trouble.
    crate::logging::stop_syslog(std::time::Duration::from_secs(1));
    Ok(outcome)
}
