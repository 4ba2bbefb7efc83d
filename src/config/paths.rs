//! The paths the agent writes may not destroy what it reads or keeps.
//!
//! The agent writes its control socket (`control_socket`: bound at every start, in place
//! of a stale one), its features file (`features_file`, replaced through
//! `.tmp-<name>` beside it) and its status report (`<mac>-license-status.json`, through
//! `.tmp-<mac>-license-status.json`, into a `file:` folder: `report`'s, or with `report
//! = true` each `file:` server's). None of these may be, or lie inside:
//!
//! - the configuration file itself, the keyring, `fetch.ca_file`, `fetch.client_cert`,
//!   `fetch.client_key` (and `syslog`'s when given), the supervisor's socket;
//! - the state folder (`state_dir`: `phone/`, `site/`, `meta.json`, `rejected/`, the
//!   lock);
//! - a license file of a `file:` server (`<12 hex digits>-license.cfg` in its folder:
//!   the folder serves a fleet, so another phone's file too). The rest of that folder is
//!   no input: the report uploaded there is the normal case.
//!
//! Paths are compared twice: as the configuration has them (absolute, `.` dropped), and
//! resolved: every existing folder canonicalised, `..` taken after it, so that
//! `a/../state` or a symbolic link into the state folder cannot slip through. An input
//! is followed to the end (writing over a link's target destroys it); the last part of
//! an output is not (the agent replaces or removes a link there, never its target).
//! Nothing needs to exist: what does not is taken as written (the agent creates missing
//! folders as they are named), and nothing is opened, so loading never blocks.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::table::Item;
use super::{Config, ConfigError, MacSource, ReportTo, Supervisor};
use crate::storage::atomic::TEMP_PREFIX;

/// The status report's name after the MAC (`daemon::reporting::report_file`).
const REPORT_SUFFIX: &str = "-license-status.json";
/// A license file's name on a server after the MAC or the site's zeros
/// (`fetch::phone_file`, `fetch::SITE_FILE`).
const LICENSE_SUFFIX: &str = "-license.cfg";

/// Where the keys that name paths are in the file (`None`: not given, the default).
pub(crate) struct Places<'a, 'i> {
    pub(crate) keyring: Option<Item<'a, 'i>>,
    pub(crate) state_dir: Option<Item<'a, 'i>>,
    pub(crate) supervisor_socket: Option<Item<'a, 'i>>,
    pub(crate) control_socket: Option<Item<'a, 'i>>,
    pub(crate) features_file: Option<Item<'a, 'i>>,
    pub(crate) report: Option<Item<'a, 'i>>,
    pub(crate) ca_file: Option<Item<'a, 'i>>,
    pub(crate) client_cert: Option<Item<'a, 'i>>,
    pub(crate) client_key: Option<Item<'a, 'i>>,
    /// `syslog.ca_file`, `syslog.client_cert`, `syslog.client_key`.
    pub(crate) syslog: [Option<Item<'a, 'i>>; 3],
    /// Each entry of `server`, in the order of [`Config::servers`].
    pub(crate) servers: Vec<Item<'a, 'i>>,
}

/// File names `<prefix><12 hex digits><suffix>` (any case): what the agent writes or
/// reads for a MAC not known before it runs (`interface`), or for any phone.
#[derive(Clone, Copy)]
struct MacNames {
    prefix: &'static str,
    suffix: &'static str,
}

const LICENSES: MacNames = MacNames {
    prefix: "",
    suffix: LICENSE_SUFFIX,
};

impl MacNames {
    fn matches(self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            return false;
        };
        let len = self.prefix.len() + 12 + self.suffix.len();
        name.len() == len
            && name.is_char_boundary(self.prefix.len())
            && name.is_char_boundary(self.prefix.len() + 12)
            && name[..self.prefix.len()].eq_ignore_ascii_case(self.prefix)
            && name[self.prefix.len()..self.prefix.len() + 12]
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
            && name[self.prefix.len() + 12..].eq_ignore_ascii_case(self.suffix)
    }

    /// Whether one name is both.
    fn overlaps(self, other: MacNames) -> bool {
        self.prefix.eq_ignore_ascii_case(other.prefix)
            && self.suffix.eq_ignore_ascii_case(other.suffix)
    }

    fn shown(self) -> String {
        format!("{}<mac>{}", self.prefix, self.suffix)
    }
}

/// A path the agent writes.
enum Written {
    /// This file (its last part not followed).
    File(PathBuf),
    /// Files of these names in this folder.
    Named(PathBuf, MacNames),
}

/// A path the agent reads or keeps: what must not be written over.
enum Kept {
    /// This path and everything under it.
    Under(PathBuf),
    /// The license files (`<12 hex digits>-license.cfg`) of this `file:` server folder.
    Licenses(PathBuf),
}

struct Output<'p, 'a, 'i> {
    key: &'static str,
    item: Option<&'p Item<'a, 'i>>,
    /// What the agent does there.
    does: String,
    /// What to do instead.
    fix: &'static str,
    path: Written,
}

struct Input<'p, 'a, 'i> {
    /// `None`: the configuration file, which no key names.
    key: Option<&'static str>,
    item: Option<&'p Item<'a, 'i>>,
    what: String,
    path: Kept,
}

/// How an output meets an input, and the input's path it meets.
struct Hit {
    inside: bool,
    target: PathBuf,
}

/// Refuses an output path that is, or lies inside, an input or the state folder (see
/// the module doc).
pub(crate) fn check(config: &Config, places: &Places) -> Result<(), ConfigError> {
    let inputs = inputs(config, places);
    let mut resolver = Resolver::default();
    let resolved_inputs: Vec<Kept> = inputs
        .iter()
        .map(|input| match &input.path {
            Kept::Under(path) => Kept::Under(resolver.resolve(path, true)),
            Kept::Licenses(folder) => Kept::Licenses(resolver.resolve(folder, true)),
        })
        .collect();
    for output in outputs(config, places) {
        let resolved = match &output.path {
            Written::File(path) => Written::File(resolver.resolve(path, false)),
            Written::Named(folder, names) => Written::Named(resolver.resolve(folder, true), *names),
        };
        for (input, resolved_input) in inputs.iter().zip(&resolved_inputs) {
            if let Some(hit) = hit(&output.path, &input.path) {
                return Err(refusal(config, &output, input, &hit, None));
            }
            if let Some(hit) = hit(&resolved, resolved_input) {
                let via = shown(&resolved);
                return Err(refusal(config, &output, input, &hit, Some(via)));
            }
        }
    }
    Ok(())
}

fn outputs<'p, 'a, 'i>(config: &Config, places: &'p Places<'a, 'i>) -> Vec<Output<'p, 'a, 'i>> {
    const GIVE_A_PATH: &str =
        "give another path: the agent must never write over what it reads or keeps";
    let mut out = vec![Output {
        key: "control_socket",
        item: places.control_socket.as_ref(),
        does: "the agent binds its control socket there at every start, in place of a stale \
               one"
        .into(),
        fix: GIVE_A_PATH,
        path: Written::File(config.control_socket.clone()),
    }];
    let features = &config.features_file;
    out.push(Output {
        key: "features_file",
        item: places.features_file.as_ref(),
        does: "the agent replaces the features file whenever the enabled set changes".into(),
        fix: GIVE_A_PATH,
        path: Written::File(features.clone()),
    });
    if let (Some(dir), Some(name)) = (features.parent(), features.file_name()) {
        let mut temporary = OsString::from(TEMP_PREFIX);
        temporary.push(name);
        let temporary = dir.join(temporary);
        out.push(Output {
            key: "features_file",
            item: places.features_file.as_ref(),
            does: format!(
                "the agent writes the features file as {} first, removing what is there, \
                 then renames it",
                temporary.display()
            ),
            fix: GIVE_A_PATH,
            path: Written::File(temporary),
        });
    }

    // The status report, into `file:` folders.
    let folders: Vec<(&'static str, Option<&Item>, PathBuf, &str)> = match &config.report {
        ReportTo::Off => Vec::new(),
        ReportTo::Url(url) => url
            .folder()
            .map(|folder| ("report", places.report.as_ref(), folder.to_path_buf(), ""))
            .into_iter()
            .collect(),
        ReportTo::Servers => config
            .servers
            .iter()
            .zip(&places.servers)
            .filter_map(|(server, item)| {
                let how = match places.report {
                    Some(_) => " (report = true)",
                    None => " (report = true, the default)",
                };
                server
                    .folder()
                    .map(|folder| ("server", Some(item), folder.to_path_buf(), how))
            })
            .collect(),
    };
    for (key, item, folder, how) in folders {
        let does = format!(
            "the agent writes its status report into {}{how} as {}, through {}",
            folder.display(),
            MacNames {
                prefix: "",
                suffix: REPORT_SUFFIX
            }
            .shown(),
            MacNames {
                prefix: TEMP_PREFIX,
                suffix: REPORT_SUFFIX
            }
            .shown()
        );
        for prefix in ["", TEMP_PREFIX] {
            let names = MacNames {
                prefix,
                suffix: REPORT_SUFFIX,
            };
            let path = match &config.mac {
                MacSource::Fixed(mac) => {
                    Written::File(folder.join(format!("{prefix}{mac}{REPORT_SUFFIX}")))
                }
                MacSource::Interface(_) => Written::Named(folder.clone(), names),
            };
            out.push(Output {
                key,
                item,
                does: does.clone(),
                fix: "give another folder, or report = false: the agent must never write \
                      over what it reads or keeps",
                path,
            });
        }
    }
    out
}

fn inputs<'p, 'a, 'i>(config: &Config, places: &'p Places<'a, 'i>) -> Vec<Input<'p, 'a, 'i>> {
    let mut inputs = Vec::new();
    if let Some(file) = config_file(&config.path) {
        inputs.push(Input {
            key: None,
            item: None,
            what: "the configuration file itself".into(),
            path: Kept::Under(file),
        });
    }
    inputs.push(Input {
        key: Some("keyring"),
        item: places.keyring.as_ref(),
        what: "the keyring".into(),
        path: Kept::Under(config.keyring.clone()),
    });
    inputs.push(Input {
        key: Some("state_dir"),
        item: places.state_dir.as_ref(),
        what: "the state folder".into(),
        path: Kept::Under(config.state_dir.clone()),
    });
    if let Supervisor::Socket(socket) = &config.supervisor {
        inputs.push(Input {
            key: Some("supervisor_socket"),
            item: places.supervisor_socket.as_ref(),
            what: "the supervisor's socket".into(),
            path: Kept::Under(socket.clone()),
        });
    }
    let fetch = &config.fetch;
    let identity = fetch.client_identity.as_ref();
    for (key, path, item, what) in [
        (
            "fetch.ca_file",
            fetch.ca_file.as_ref(),
            &places.ca_file,
            "the CA file",
        ),
        (
            "fetch.client_cert",
            identity.map(|i| &i.cert),
            &places.client_cert,
            "the client certificate",
        ),
        (
            "fetch.client_key",
            identity.map(|i| &i.key),
            &places.client_key,
            "the client key",
        ),
    ] {
        if let Some(path) = path {
            inputs.push(Input {
                key: Some(key),
                item: item.as_ref(),
                what: what.into(),
                path: Kept::Under(path.clone()),
            });
        }
    }
    // The syslog server's TLS files (`[fetch]`'s unless given).
    let syslog = &config.syslog;
    let identity = syslog.client_identity.as_ref();
    for ((key, path, what), item) in [
        (
            "syslog.ca_file",
            syslog.ca_file.as_ref(),
            "the syslog CA file",
        ),
        (
            "syslog.client_cert",
            identity.map(|i| &i.cert),
            "the syslog client certificate",
        ),
        (
            "syslog.client_key",
            identity.map(|i| &i.key),
            "the syslog client key",
        ),
    ]
    .into_iter()
    .zip(&places.syslog)
    {
        if let (Some(path), Some(item)) = (path, item) {
            inputs.push(Input {
                key: Some(key),
                item: Some(item),
                what: what.into(),
                path: Kept::Under(path.clone()),
            });
        }
    }
    for (server, item) in config.servers.iter().zip(&places.servers) {
        if let Some(folder) = server.folder() {
            inputs.push(Input {
                key: Some("server"),
                item: Some(item),
                what: format!("a license file of the server {server}"),
                path: Kept::Licenses(folder.to_path_buf()),
            });
        }
    }
    inputs
}

/// The configuration file's path, absolute as the other paths are.
fn config_file(path: &Path) -> Option<PathBuf> {
    Some(super::values::base_dir(path).join(path.file_name()?))
}

/// Whether `written` is, or lies inside, `kept`.
fn hit(written: &Written, kept: &Kept) -> Option<Hit> {
    match (written, kept) {
        (Written::File(file), Kept::Under(path)) => file.starts_with(path).then(|| Hit {
            inside: file != path,
            target: path.clone(),
        }),
        (Written::Named(folder, names), Kept::Under(path)) => {
            if folder.starts_with(path) {
                return Some(Hit {
                    inside: true,
                    target: path.clone(),
                });
            }
            let is = path.parent() == Some(folder.as_path())
                && path.file_name().is_some_and(|name| names.matches(name));
            is.then(|| Hit {
                inside: false,
                target: path.clone(),
            })
        }
        (Written::File(file), Kept::Licenses(folder)) => {
            let rest = file.strip_prefix(folder).ok()?;
            let mut parts = rest.components();
            let Some(Component::Normal(name)) = parts.next() else {
                return None;
            };
            LICENSES.matches(name).then(|| Hit {
                inside: parts.next().is_some(),
                target: folder.join(name),
            })
        }
        (Written::Named(written, names), Kept::Licenses(folder)) => {
            if written == folder {
                return names.overlaps(LICENSES).then(|| Hit {
                    inside: false,
                    target: folder.join(LICENSES.shown()),
                });
            }
            let rest = written.strip_prefix(folder).ok()?;
            match rest.components().next() {
                Some(Component::Normal(name)) if LICENSES.matches(name) => Some(Hit {
                    inside: true,
                    target: folder.join(name),
                }),
                _ => None,
            }
        }
    }
}

/// Resolves the paths of one check, looking at each part once: the paths share most
/// of their folders (`/etc/license-agent/...`, `/var/lib/...`), and each part of each
/// costs a system call at every start and reload.
#[derive(Default)]
struct Resolver {
    /// Each path met, its parent resolved already, and what it resolves to.
    known: HashMap<PathBuf, PathBuf>,
}

impl Resolver {
    /// `path` with every existing folder canonicalised (symbolic links followed, `..`
    /// taken after it), and the last part too when `follow_last`; what does not exist
    /// is kept as written, its `..` taken lexically (the agent would create those
    /// folders). Never fails, never opens anything.
    fn resolve(&mut self, path: &Path, follow_last: bool) -> PathBuf {
        let parts: Vec<Component> = path.components().collect();
        let mut out = PathBuf::new();
        for (i, part) in parts.iter().enumerate() {
            match part {
                Component::Prefix(_) | Component::RootDir => out.push(part.as_os_str()),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !out.pop() {
                        out.push("..");
                    }
                }
                Component::Normal(name) => {
                    out.push(name);
                    if i + 1 < parts.len() || follow_last {
                        out = self.real(out);
                    }
                }
            }
        }
        out
    }

    /// `path`, whose parent is resolved already, canonicalised (or as it is when it
    /// cannot be). Below a canonical folder only a symbolic link changes anything, so
    /// one `readlink` says whether to canonicalise: a part that is no link (`EINVAL`),
    /// is missing or cannot be looked at stays as it is, exactly what canonicalising it
    /// would give or keep. A path with no canonical parent (relative, or climbing above
    /// the root) is canonicalised whole.
    fn real(&mut self, path: PathBuf) -> PathBuf {
        if let Some(real) = self.known.get(&path) {
            return real.clone();
        }
        let parent_canonical = path.is_absolute()
            && !path
                .components()
                .any(|part| matches!(part, Component::ParentDir));
        let link = !parent_canonical || std::fs::read_link(&path).is_ok();
        let real = if link {
            std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())
        } else {
            path.clone()
        };
        self.known.insert(path, real.clone());
        real
    }
}

fn shown(written: &Written) -> String {
    match written {
        Written::File(path) => path.display().to_string(),
        Written::Named(folder, names) => folder.join(names.shown()).display().to_string(),
    }
}

/// The error: at the output's key when the file gives it, else at the input's (the
/// output is a default), else at the output's key without a place.
fn refusal(
    config: &Config,
    output: &Output,
    input: &Input,
    hit: &Hit,
    via: Option<String>,
) -> ConfigError {
    let relation = if hit.inside { "lies inside" } else { "is" };
    let subject = shown(&output.path);
    let mut message = String::new();
    if output.item.is_none() {
        let _ = write!(message, "the default {} ", output.key);
    }
    let _ = write!(message, "{subject} {relation} {}", input.what);
    let target = hit.target.display().to_string();
    if target != subject {
        let _ = write!(message, " {target}");
    }
    if output.item.is_some() {
        match (input.key, input.item) {
            (Some(key), Some(item)) => {
                let _ = write!(message, " ({key}, line {})", item.line());
            }
            (Some(key), None) => {
                let _ = write!(message, " ({key}, the default)");
            }
            (None, _) => {}
        }
    }
    if let Some(via) = via {
        let _ = write!(
            message,
            " (once symbolic links and '..' are resolved: {via})"
        );
    }
    let _ = write!(message, ": {}; {}", output.does, output.fix);
    match (output.item, input.item) {
        (Some(item), _) | (None, Some(item)) => item.error(message),
        (None, None) => ConfigError {
            file: config.path.clone(),
            key: Some(output.key.to_string()),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// What [`Resolver::resolve`] must give: every existing prefix canonicalised.
    fn canonical_prefixes(path: &Path, follow_last: bool) -> PathBuf {
        let parts: Vec<Component> = path.components().collect();
        let mut out = PathBuf::new();
        for (i, part) in parts.iter().enumerate() {
            match part {
                Component::Prefix(_) | Component::RootDir => out.push(part.as_os_str()),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !out.pop() {
                        out.push("..");
                    }
                }
                Component::Normal(name) => {
                    out.push(name);
                    if i + 1 < parts.len() || follow_last {
                        if let Ok(real) = std::fs::canonicalize(&out) {
                            out = real;
                        }
                    }
                }
            }
        }
        out
    }

    /// Looking at each part once (a `readlink`, a cache shared by the paths of a
    /// check) resolves every path as canonicalising each prefix did: links to folders
    /// and files, `..` after a link, missing parts then `..`, a dangling link, a loop, a
    /// file taken for a folder, `..` above the root, the same paths twice.
    #[test]
    fn each_part_looked_at_once_resolves_as_canonicalising_each_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(d.join("real/state/phone")).unwrap();
        std::fs::create_dir_all(d.join("other/deep")).unwrap();
        std::fs::write(d.join("real/keyring"), b"k").unwrap();
        symlink(d.join("real"), d.join("link")).unwrap();
        symlink("real/state", d.join("relative-link")).unwrap();
        symlink(d.join("other/deep"), d.join("real/jump")).unwrap();
        symlink(d.join("real/keyring"), d.join("keyring-link")).unwrap();
        symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        symlink(d.join("loop-b"), d.join("loop-a")).unwrap();
        symlink(d.join("loop-a"), d.join("loop-b")).unwrap();
        let paths = [
            "real/state",
            "link/state/phone",
            "link/../real/state",
            "relative-link/../keyring",
            "real/jump/../../x",
            "real/jump/..",
            "keyring-link",
            "keyring-link/inside",
            "missing/more/../../real/state",
            "missing/../link/state",
            "dangling",
            "dangling/x",
            "loop-a",
            "loop-a/x",
            "real/keyring/x",
            "real/./state/./phone",
        ];
        let mut resolver = Resolver::default();
        for _ in 0..2 {
            for path in paths {
                let path = d.join(path);
                for follow_last in [true, false] {
                    assert_eq!(
                        resolver.resolve(&path, follow_last),
                        canonical_prefixes(&path, follow_last),
                        "{} (follow_last {follow_last})",
                        path.display()
                    );
                }
            }
        }
        // Above the root, and relative to the working folder.
        for path in ["/../tmp", "/..", "relative/x", "../up"] {
            let path = Path::new(path);
            assert_eq!(
                Resolver::default().resolve(path, true),
                canonical_prefixes(path, true),
                "{}",
                path.display()
            );
        }
    }
}
