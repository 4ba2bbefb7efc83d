//! Finding the provisioning server, and where on it the license files are and the
//! status report goes, as a SoundPoint IP / VVX phone does (`firmware/README.md`, "The
//! provisioning server from DHCP"; `[provisioning]` in the configuration).
//!
//! - [`dhcp`]: the lease the DHCP client's hook writes, and what an option names;
//! - [`choose`]: the servers to ask, in order: the DHCP option's (the custom one, then
//!   66, as configured), the one that answered last (remembered in the store), then the
//!   static `server` list; every value refused is said in a note, never silently;
//! - [`master`]: the master configuration file, `LICENSE_DIRECTORY` and
//!   `LOG_FILE_DIRECTORY`;
//! - [`Locator::run`]: one fetch cycle with all of it, on the fetch thread
//!   (`fetch::worker`), so reading the lease and the master file holds no loop.
//!
//! The choice is pure (from the lease, what is known and the configuration); the I/O is
//! in `Locator::run` alone.

pub(crate) mod dhcp;
pub(crate) mod master;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use crate::config::{BootServer, Fetch, ServerSource, ServerUrl};
use crate::fetch::worker::{fetch_cycle, Fetched, TrustAsk};
use crate::fetch::{FailureKind, FetchError, FetchOutcome, Provisioning, Server};
use crate::format::Serial;
use crate::storage::meta::KnownServer;
use dhcp::Lease;

/// Where a server came from, as `status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// DHCP option N of the current lease.
    Dhcp(u8),
    /// The server that answered last, from the store.
    Remembered,
    /// The `server` list of the configuration.
    Static,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Dhcp(n) => write!(f, "dhcp option {n}"),
            Origin::Remembered => f.write_str("remembered"),
            Origin::Static => f.write_str("static"),
        }
    }
}

impl Origin {
    /// The origin `words` name (its `Display`).
    fn from_words(words: &str) -> Option<Origin> {
        match words {
            "remembered" => Some(Origin::Remembered),
            "static" => Some(Origin::Static),
            _ => words
                .strip_prefix("dhcp option ")
                .and_then(|n| n.parse().ok())
                .map(Origin::Dhcp),
        }
    }
}

/// A server to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) url: ServerUrl,
    /// The master file its URL named (`.../phone.cfg`).
    pub(crate) master_file: Option<String>,
    pub(crate) origin: Origin,
}

/// The servers to ask this cycle, in order, and what was refused on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) notes: Vec<String>,
}

/// What is known of the last server that answered: the server (its origin then), and
/// the folders its master file named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) server: Candidate,
    pub(crate) licenses: ServerUrl,
    pub(crate) logs: ServerUrl,
}

impl Known {
    /// As the store keeps it: the URLs without credentials (`meta.json` is readable by
    /// anyone on the phone; credentials from a DHCP URL live in memory only).
    pub(crate) fn record(&self) -> KnownServer {
        KnownServer {
            url: self.server.url.as_str().to_string(),
            master_file: self.server.master_file.clone(),
            origin: self.server.origin.to_string(),
            licenses: self.licenses.as_str().to_string(),
            logs: self.logs.as_str().to_string(),
        }
    }

    /// What the store kept, if it still reads as servers of `schemes` (a record of
    /// another build, or written by hand, that does not is ignored: never a failure).
    pub(crate) fn from_record(record: &KnownServer, schemes: &[&str]) -> Result<Known, String> {
        let schemes: Vec<&str> = schemes.iter().copied().filter(|s| *s != "file").collect();
        let url = |text: &str| ServerUrl::parse(text, Path::new("/"), &schemes);
        let master_file = match &record.master_file {
            Some(name) if dhcp::is_master_name(name) => Some(name.clone()),
            Some(name) => return Err(format!("{name:?} is not a master file's name")),
            None => None,
        };
        Ok(Known {
            server: Candidate {
                url: url(&record.url)?,
                master_file,
                origin: Origin::from_words(&record.origin).unwrap_or(Origin::Remembered),
            },
            licenses: url(&record.licenses)?,
            logs: url(&record.logs)?,
        })
    }
}

/// The servers to ask, in order. With `source = "dhcp"`: the server of the first
/// option of `settings` the lease holds and that reads (an option refused is a note,
/// and the next one is tried), then the one `known` (it answered last), then `statics`;
/// each once. With `"static"`: `statics`. `lease` is the hook's file: `Ok(None)` when
/// there is none yet.
pub(crate) fn choose(
    settings: &BootServer,
    lease: Result<Option<&Lease>, &str>,
    known: Option<&Known>,
    statics: &[ServerUrl],
    schemes: &[&str],
) -> Choice {
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut notes = Vec::new();
    if settings.source == ServerSource::Dhcp {
        match lease {
            Err(why) => notes.push(format!("the DHCP lease does not read: {why}")),
            Ok(None) => notes.push("no DHCP lease yet (no file from the hook)".into()),
            Ok(Some(lease)) => {
                for number in settings.options() {
                    let kind = if number == 66 {
                        crate::config::OptionType::String
                    } else {
                        settings.custom_type
                    };
                    let named = match lease.options.get(&number) {
                        None => continue,
                        Some(Err(why)) => Err(why.clone()),
                        Some(Ok(value)) => {
                            dhcp::named_server(value, kind, settings.server_type, schemes)
                                .map_err(|r| r.0)
                        }
                    };
                    match named {
                        Ok(named) => {
                            candidates.push(Candidate {
                                url: named.url,
                                master_file: named.master_file,
                                origin: Origin::Dhcp(number),
                            });
                            break;
                        }
                        Err(why) => notes.push(format!("DHCP option {number} refused: {why}")),
                    }
                }
                if candidates.is_empty() && notes.is_empty() {
                    let asked: Vec<String> = settings.options().iter().map(u8::to_string).collect();
                    notes.push(format!(
                        "the DHCP lease names no server (option {})",
                        asked.join(" nor ")
                    ));
                }
            }
        }
        if let Some(known) = known {
            let mut server = known.server.clone();
            server.origin = Origin::Remembered;
            candidates.push(server);
        }
    }
    candidates.extend(statics.iter().map(|url| Candidate {
        url: url.clone(),
        master_file: None,
        origin: Origin::Static,
    }));
    // Each server once (the first place it has), as named without credentials.
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    candidates.retain(|c| {
        let key = (c.url.as_str().to_string(), c.master_file.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    Choice { candidates, notes }
}

/// Where one cycle found the files (for `status`, the store and the report's upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    /// The server that answered and its folders; `None` when none did.
    pub(crate) found: Option<Known>,
    /// The master file, in words (`0004f2000001.cfg: LICENSE_DIRECTORY "lic"`, `none
    /// (404)`, `off`).
    pub(crate) master: String,
    /// Values refused, servers that failed before one answered.
    pub(crate) notes: Vec<String>,
}

/// A cycle that finds the server first: everything it needs, sent to the fetch thread.
#[derive(Debug, Clone)]
pub(crate) struct Locator {
    pub(crate) settings: BootServer,
    pub(crate) statics: Vec<ServerUrl>,
    pub(crate) fetch: Fetch,
    pub(crate) mac: Serial,
    pub(crate) schemes: Vec<&'static str>,
}

impl Locator {
    /// Reads the lease (with `source = "dhcp"`), chooses, reads the master file (with
    /// `master_config`) on the first server that answers, then fetches `files` from its
    /// license folder (after the trust documents, with `trust`: they live beside the
    /// licenses). `known`: what the last cycle found (the remembered server).
    pub(crate) fn run(
        &self,
        known: Option<&Known>,
        trust: Option<&TrustAsk>,
        files: &[String],
    ) -> (Vec<Fetched>, Located) {
        let lease = match self.settings.source {
            ServerSource::Dhcp => read_lease(&self.settings.dhcp_file),
            ServerSource::Static => Ok(None),
        };
        let lease_ref = match &lease {
            Ok(l) => Ok(l.as_ref()),
            Err(why) => Err(why.as_str()),
        };
        let choice = choose(
            &self.settings,
            lease_ref,
            known,
            &self.statics,
            &self.schemes,
        );
        let mut notes = choice.notes;
        for note in &notes {
            log::warn!("provisioning server: {note}");
        }
        if choice.candidates.is_empty() {
            let why = "no provisioning server: DHCP names none, none is remembered and no \
                       static server is configured";
            return (
                failed_all(files, FetchError::new("-", FailureKind::Setup, why)),
                Located {
                    found: None,
                    master: "not read: no server".into(),
                    notes,
                },
            );
        }
        if !self.settings.master_config {
            return self.without_master(choice.candidates, notes, trust, files);
        }
        let mut failures: Vec<FetchError> = Vec::new();
        for candidate in choice.candidates {
            match self.master(&candidate, known) {
                Err(e) => failures.push(e),
                Ok((found, master, note)) => {
                    notes.extend(failures.iter().map(|e| format!("did not answer: {e}")));
                    notes.extend(note);
                    let fetched = match Provisioning::new(
                        std::slice::from_ref(&found.licenses),
                        &self.fetch,
                        self.mac,
                    ) {
                        Ok(server) => fetch_cycle(&server as &dyn Server, trust, files),
                        Err(e) => failed_all(files, e),
                    };
                    return (
                        fetched,
                        Located {
                            found: Some(found),
                            master,
                            notes,
                        },
                    );
                }
            }
        }
        let error = crate::fetch::worker::every_server_failed(failures);
        (
            failed_all(files, error),
            Located {
                found: None,
                master: "not read: no server answered".into(),
                notes,
            },
        )
    }

    /// The cycle without a master file: the candidates asked in turn for each file.
    fn without_master(
        &self,
        candidates: Vec<Candidate>,
        notes: Vec<String>,
        trust: Option<&TrustAsk>,
        files: &[String],
    ) -> (Vec<Fetched>, Located) {
        let mut usable = Vec::new();
        let mut setup_errors = Vec::new();
        for candidate in candidates {
            match Provisioning::new(std::slice::from_ref(&candidate.url), &self.fetch, self.mac) {
                Ok(_) => usable.push(candidate),
                Err(e) => setup_errors.push(e),
            }
        }
        let bases: Vec<ServerUrl> = usable.iter().map(|c| c.url.clone()).collect();
        let fetched = match Provisioning::new(&bases, &self.fetch, self.mac) {
            Ok(server) => fetch_cycle(&server as &dyn Server, trust, files),
            Err(e) => failed_all(
                files,
                crate::fetch::worker::every_server_failed(
                    setup_errors.into_iter().chain([e]).collect(),
                ),
            ),
        };
        let answered = fetched.iter().find_map(|f| f.server.clone());
        let found = answered.and_then(|url| {
            let server = usable.into_iter().find(|c| c.url == url)?;
            Some(Known {
                licenses: server.url.clone(),
                logs: server.url.clone(),
                server,
            })
        });
        (
            fetched,
            Located {
                found,
                master: "off (master_config = false)".into(),
                notes,
            },
        )
    }

    /// Reads the master file on `candidate`: the server and its folders, the master
    /// file in words and a note when it did not read; `Err` when the server did not
    /// answer (or cannot be asked).
    fn master(
        &self,
        candidate: &Candidate,
        known: Option<&Known>,
    ) -> Result<(Known, String, Option<String>), FetchError> {
        let server =
            Provisioning::new(std::slice::from_ref(&candidate.url), &self.fetch, self.mac)?;
        let source = server.open(0)?;
        let root = Known {
            server: candidate.clone(),
            licenses: candidate.url.clone(),
            logs: candidate.url.clone(),
        };
        let names = master::names(self.mac, candidate.master_file.as_deref());
        for name in &names {
            let bytes = match source.fetch(name) {
                FetchOutcome::Failed(e) => return Err(e),
                FetchOutcome::Absent { .. } => continue,
                FetchOutcome::Body { bytes } => bytes,
            };
            let read = master::parse(&bytes).and_then(|dirs| {
                let licenses =
                    master::resolve(&candidate.url, dirs.licenses.as_deref(), &self.schemes)
                        .map_err(|e| format!("LICENSE_DIRECTORY: {e}"))?;
                let logs = master::resolve(&candidate.url, dirs.logs.as_deref(), &self.schemes)
                    .map_err(|e| format!("LOG_FILE_DIRECTORY: {e}"))?;
                Ok((dirs, licenses, logs))
            });
            return Ok(match read {
                Ok((dirs, licenses, logs)) => {
                    let words = format!(
                        "{name}: LICENSE_DIRECTORY {}, LOG_FILE_DIRECTORY {}",
                        attribute_words(dirs.licenses.as_deref()),
                        attribute_words(dirs.logs.as_deref())
                    );
                    let found = Known {
                        server: candidate.clone(),
                        licenses,
                        logs,
                    };
                    (found, words, None)
                }
                Err(why) => {
                    // A fetch failure of the master file: the folders known stay.
                    let kept = known
                        .filter(|k| k.server.url == candidate.url)
                        .map(|k| Known {
                            server: candidate.clone(),
                            licenses: k.licenses.clone(),
                            logs: k.logs.clone(),
                        });
                    let note = format!(
                        "{}{name}: the master configuration file does not read: {why}; {}",
                        candidate.url,
                        if kept.is_some() {
                            "the folders known stay"
                        } else {
                            "the server's root is used"
                        }
                    );
                    log::warn!("{note}");
                    (
                        kept.unwrap_or(root),
                        format!("{name}: does not read ({why})"),
                        Some(note),
                    )
                }
            });
        }
        Ok((
            root,
            format!("none ({} not on the server)", names.join(", ")),
            None,
        ))
    }
}

fn attribute_words(value: Option<&str>) -> String {
    match value {
        None => "not given (the root)".into(),
        Some("") => "empty (the root)".into(),
        Some(v) => format!("{v:?}"),
    }
}

/// The hook's file: `Ok(None)` when there is none.
fn read_lease(path: &Path) -> Result<Option<Lease>, String> {
    match crate::files::read_regular(path, dhcp::MAX_LEASE_FILE) {
        Ok(bytes) => Ok(Some(dhcp::parse_lease(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if crate::files::is_too_large(&e) => Err(format!(
            "{}: larger than {} bytes",
            path.display(),
            dhcp::MAX_LEASE_FILE
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Every file failed with `error`.
fn failed_all(files: &[String], error: FetchError) -> Vec<Fetched> {
    files
        .iter()
        .map(|name| Fetched {
            name: name.clone(),
            outcome: FetchOutcome::Failed(error.clone()),
            server: None,
        })
        .collect()
}
