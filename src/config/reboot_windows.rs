//! The `[reboot]` table: when the site wants its phones to reboot (issue 29). Without
//! `windows`, a reboot is asked as soon as the phone is idle (and the idle grace and,
//! for a site license, the stagger delay are over), as before the table existed.
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `windows` | reboot windows, `DAYS HH:MM-HH:MM` in local time (`"Mon-Fri 01:00-04:00"`, `"Sat,Sun 22:00-02:00"`, `"daily 02:00-03:00"`), at most 16 | none: no window |
//! | `timezone` | the phone's local time as a POSIX `TZ` rule (`"CET-1CEST,M3.5.0,M10.5.0/3"`) | `"UTC0"` |
//! | `wait_for_window` | the causes whose reboot waits for a window: `feature-licensed`, `license-changed`, `license-expired` | the first two |
//! | `deadline` | the longest a reboot waits for a window; after it, it is asked at the next idle moment | `"7d"` |

use std::collections::BTreeSet;
use std::sync::Arc;

use super::table::Table;
use super::ConfigError;
use super::Secs;
use crate::engine::reboot::Cause;
use crate::engine::window::tz::Tz;
use crate::engine::window::{Schedule, Window};

pub(super) const KEYS: [&str; 4] = ["windows", "timezone", "wait_for_window", "deadline"];

/// The most windows (a site has a handful).
const MAX_WINDOWS: usize = 16;

/// Reads the `[reboot]` table: the schedule, or `None` when it names no window.
pub(super) fn parse(table: &Table) -> Result<Option<Arc<Schedule>>, ConfigError> {
    table.check_keys(&KEYS)?;
    let mut windows = Vec::new();
    if let Some(item) = table.get("windows") {
        let list = item.array("a list of windows like [\"Mon-Fri 01:00-04:00\"]")?;
        if list.len() > MAX_WINDOWS {
            return Err(item.error(format_args!("at most {MAX_WINDOWS} windows")));
        }
        for w in list {
            let text = w.str("a window like \"Mon-Fri 01:00-04:00\"")?;
            windows.push(Window::parse(text).map_err(|e| w.error(e))?);
        }
    }
    let tz = match table.get("timezone") {
        None => Tz::utc(),
        Some(item) => {
            let text = item.str("a POSIX TZ rule like \"CET-1CEST,M3.5.0,M10.5.0/3\"")?;
            Tz::parse(text).map_err(|e| {
                item.error(format_args!(
                    "{e} (a POSIX TZ rule, such as \"CET-1CEST,M3.5.0,M10.5.0/3\" or \"EST5EDT,M3.2.0,M11.1.0\")"
                ))
            })?
        }
    };
    let causes = match table.get("wait_for_window") {
        None => BTreeSet::from([Cause::FeatureLicensed, Cause::LicenseChanged]),
        Some(item) => {
            let mut causes = BTreeSet::new();
            for c in item.array("a list of causes like [\"feature-licensed\"]")? {
                let word = c.str("a cause")?;
                let cause = Cause::parse(word).ok_or_else(|| {
                    c.error(format_args!(
                        "{word:?}: the causes are feature-licensed, license-changed and license-expired"
                    ))
                })?;
                causes.insert(cause);
            }
            causes
        }
    };
    let deadline = super::secs(table, "deadline", Secs(7 * 86_400))?;
    if windows.is_empty() {
        // Named without windows: nothing waits (and the rest is checked all the same).
        return Ok(None);
    }
    Ok(Some(Arc::new(Schedule {
        windows,
        tz,
        causes,
        deadline: deadline.0,
    })))
}
