//! A board file, `boards/BOARD.toml` (the format and every key: `boards/README.md`),
//! read with the `toml` crate into a [`Board`] whose every value is checked.
//!
//! Every value is a TOML string (numbers and lists too), without `"`, `\` or control
//! characters, since they are written into generated files. An unknown key, a key given
//! twice, a missing required key or a value of the wrong form is a [`BoardError`] naming
//! the file and the key (or the line); nothing panics on a bad board file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every armv7 binary's budget, whatever its board file says (issue 6: "at most 3 MB").
pub const ARMV7_MAX_BYTES: u64 = 3_000_000;

/// What is wrong with a board file: the file, the key when it is one key's, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for BoardError {}

/// How the phone starts the agent (`init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// BusyBox init with `/etc/init.d/S45license-agent`.
    Sysv,
    /// `license-agent.service`.
    Systemd,
}

/// The file as written: every key a string; the optional ones may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    description: Option<String>,
    target: Option<String>,
    #[serde(default)]
    qemu: String,
    #[serde(default)]
    qemu_cpu: String,
    #[serde(default)]
    max_bytes: String,
    transports: Option<String>,
    init: Option<String>,
    binary: Option<String>,
    config: Option<String>,
    #[serde(default)]
    phone_app_unit: String,
    keyring: Option<String>,
    state_dir: Option<String>,
    control_socket: Option<String>,
    features_file: Option<String>,
    supervisor_socket: Option<String>,
    interface: Option<String>,
    log: Option<String>,
    #[serde(default)]
    server: String,
    #[serde(default)]
    enabled_features: String,
}

/// A board, every value checked (`phone_app_unit` defaulted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// The board file, absolute.
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    pub target: String,
    pub qemu: String,
    pub qemu_cpu: String,
    /// The board's own budget (`max_bytes`), if any.
    pub max_bytes: Option<u64>,
    /// The transports it ships, in the file's order (`http`, `ftp`, `tftp`).
    pub transports: Vec<String>,
    pub init: Init,
    pub binary: String,
    pub config: String,
    pub phone_app_unit: String,
    pub keyring: String,
    pub state_dir: String,
    pub control_socket: String,
    pub features_file: String,
    pub supervisor_socket: String,
    pub interface: String,
    pub log: String,
    pub server: String,
    pub enabled_features: String,
}

/// The board names in `REPO/boards/`, sorted.
pub fn names(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo.join("boards"))
        .map(|dir| {
            dir.filter_map(|entry| {
                let path = entry.ok()?.path();
                if path.extension()? != "toml" {
                    return None;
                }
                Some(path.file_stem()?.to_str()?.to_string())
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The board file `arg` names: a file, or a board name in `REPO/boards/`.
pub fn locate(arg: &str, repo: &Path) -> Result<PathBuf, BoardError> {
    let given = Path::new(arg);
    if given.is_file() {
        return given.canonicalize().map_err(|e| BoardError {
            file: given.to_path_buf(),
            key: None,
            message: format!("cannot resolve the path: {e}"),
        });
    }
    let file = repo.join("boards").join(format!("{arg}.toml"));
    if file.is_file() {
        Ok(file)
    } else {
        Err(BoardError {
            file,
            key: None,
            message: format!("no such board (boards: {})", names(repo).join(" ")),
        })
    }
}

/// Reads and checks the board `arg` (a name in `REPO/boards/` or a file).
pub fn load(arg: &str, repo: &Path) -> Result<Board, BoardError> {
    let file = locate(arg, repo)?;
    let text = std::fs::read_to_string(&file).map_err(|e| BoardError {
        file: file.clone(),
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &file)
}

/// Checks a board file's text; `file` is where it came from (its name is the board's).
pub fn parse(text: &str, file: &Path) -> Result<Board, BoardError> {
    let err = |key: &str, message: String| BoardError {
        file: file.to_path_buf(),
        key: (!key.is_empty()).then(|| key.to_string()),
        message,
    };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let place = e.span().map(|span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {column} ({source}): ")
        });
        err(
            "",
            format!("{}{}", place.unwrap_or_default(), e.message().trim_end()),
        )
    })?;

    let required = |key: &str, value: Option<String>| -> Result<String, BoardError> {
        match value {
            None => Err(err(key, "missing".into())),
            Some(v) if v.is_empty() => Err(err(key, "must not be empty".into())),
            Some(v) => Ok(v),
        }
    };
    let mut b = Board {
        file: file.to_path_buf(),
        name: required("name", raw.name)?,
        description: required("description", raw.description)?,
        target: required("target", raw.target)?,
        qemu: raw.qemu,
        qemu_cpu: raw.qemu_cpu,
        max_bytes: None,
        transports: Vec::new(),
        init: Init::Sysv,
        binary: required("binary", raw.binary)?,
        config: required("config", raw.config)?,
        phone_app_unit: raw.phone_app_unit,
        keyring: required("keyring", raw.keyring)?,
        state_dir: required("state_dir", raw.state_dir)?,
        control_socket: required("control_socket", raw.control_socket)?,
        features_file: required("features_file", raw.features_file)?,
        supervisor_socket: required("supervisor_socket", raw.supervisor_socket)?,
        interface: required("interface", raw.interface)?,
        log: required("log", raw.log)?,
        server: raw.server,
        enabled_features: raw.enabled_features,
    };
    let transports = required("transports", raw.transports)?;
    let init = required("init", raw.init)?;
    if b.phone_app_unit.is_empty() {
        b.phone_app_unit = "phone-app.service".into();
    }

    // Values are written into generated files as they are.
    for (key, value) in b
        .pairs()
        .into_iter()
        .chain([("transports", transports.clone()), ("init", init.clone())])
    {
        if value
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(err(
                key,
                "must not contain \", \\ or control characters".into(),
            ));
        }
    }

    // The checks. Each failure names the key.
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if b.name != stem {
        return Err(err(
            "name",
            format!("\"{}\" must be the file's name without .toml", b.name),
        ));
    }
    match b.target.as_str() {
        "armv7-unknown-linux-gnueabihf" | "aarch64-unknown-linux-gnu" => {
            if b.qemu.is_empty() || b.qemu_cpu.is_empty() {
                return Err(err("qemu", "an ARM target needs qemu and qemu_cpu".into()));
            }
        }
        "x86_64-unknown-linux-gnu" => {}
        other => {
            return Err(err(
                "target",
                format!(
                    "{other}: armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-gnu or \
                     x86_64-unknown-linux-gnu"
                ),
            ))
        }
    }
    if !b.qemu.is_empty()
        && !b
            .qemu
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c))
    {
        return Err(err("qemu", "a program like qemu-arm".into()));
    }
    if !b.qemu_cpu.is_empty()
        && !b
            .qemu_cpu
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(err("qemu_cpu", "a QEMU CPU name like cortex-a9".into()));
    }
    let max = raw.max_bytes;
    if !max.is_empty() {
        let number = (!max.starts_with('0') && max.chars().all(|c| c.is_ascii_digit()))
            .then(|| max.parse::<u64>().ok())
            .flatten();
        b.max_bytes = Some(
            number.ok_or_else(|| err("max_bytes", "must be a number of bytes or empty".into()))?,
        );
    }
    // The transports the board ships: cargo features of the agent (http covers https).
    b.transports = transports.split(' ').map(str::to_string).collect();
    if !b
        .transports
        .iter()
        .all(|t| matches!(t.as_str(), "http" | "ftp" | "tftp"))
    {
        return Err(err(
            "transports",
            "the transports the board ships, space-separated: http (also https), ftp (also \
             ftps), tftp"
                .into(),
        ));
    }
    for (key, value) in [
        ("binary", &b.binary),
        ("config", &b.config),
        ("keyring", &b.keyring),
        ("state_dir", &b.state_dir),
        ("control_socket", &b.control_socket),
        ("features_file", &b.features_file),
    ] {
        if !is_path(value) {
            return Err(err(
                key,
                format!(
                    "must be an absolute path of letters, digits and ._/+- (found \"{value}\")"
                ),
            ));
        }
    }
    if b.supervisor_socket != "none" && !is_path(&b.supervisor_socket) {
        return Err(err(
            "supervisor_socket",
            "must be an absolute path or \"none\"".into(),
        ));
    }
    if !(1..=15).contains(&b.interface.len())
        || !b
            .interface
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(err(
            "interface",
            "must be a network interface name (1-15 characters, no /)".into(),
        ));
    }
    if !b
        .enabled_features
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _-".contains(c))
    {
        return Err(err(
            "enabled_features",
            "space-separated feature names, feature-XXXX or ids".into(),
        ));
    }
    if !b.server.is_empty() {
        let rest = [
            "http://", "https://", "ftp://", "ftps://", "tftp://", "file:",
        ]
        .iter()
        .find_map(|prefix| b.server.strip_prefix(prefix));
        if !rest.is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace)) {
            return Err(err(
                "server",
                "must be empty or an http://, https://, ftp://, ftps://, tftp:// or file: URL"
                    .into(),
            ));
        }
    }
    let unit_ok = [".service", ".target"].iter().any(|suffix| {
        b.phone_app_unit.strip_suffix(suffix).is_some_and(|stem| {
            !stem.is_empty()
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@._:-".contains(c))
        })
    });
    if !unit_ok {
        return Err(err(
            "phone_app_unit",
            "must be a unit name (x.service or x.target)".into(),
        ));
    }
    b.init = match init.as_str() {
        "sysv" => Init::Sysv,
        "systemd" => Init::Systemd,
        _ => return Err(err("init", "must be sysv or systemd".into())),
    };
    let (log_word, init_name) = match b.init {
        Init::Sysv => ("syslog", "sysv"),
        Init::Systemd => ("journal", "systemd"),
    };
    if b.log != log_word && !is_path(&b.log) {
        return Err(err(
            "log",
            format!("for init {init_name}: {log_word} or an absolute file path"),
        ));
    }
    if b.init == Init::Systemd {
        for (key, value) in [
            ("control_socket", &b.control_socket),
            ("features_file", &b.features_file),
        ] {
            if !value
                .strip_prefix("/run/")
                .is_some_and(|rest| rest.contains('/'))
            {
                return Err(err(
                    key,
                    "must be in a directory under /run/ for systemd's RuntimeDirectory=".into(),
                ));
            }
        }
    }
    Ok(b)
}

/// An absolute path of letters, digits and `._/+-`.
fn is_path(value: &str) -> bool {
    value.len() > 1
        && value.starts_with('/')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c))
}

impl Board {
    /// The cargo features of its transports, comma-separated (`http,ftp,tftp`).
    pub fn features(&self) -> String {
        self.transports.join(",")
    }

    /// The size budget its binary is held to: its own, and at most
    /// [`ARMV7_MAX_BYTES`] for an armv7 binary.
    pub fn budget(&self) -> Option<u64> {
        if self.target.starts_with("armv7-") {
            Some(
                self.max_bytes
                    .map_or(ARMV7_MAX_BYTES, |m| m.min(ARMV7_MAX_BYTES)),
            )
        } else {
            self.max_bytes
        }
    }

    /// Every key with its value as written (`phone_app_unit` defaulted), for scripts.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("name", self.name.clone()),
            ("description", self.description.clone()),
            ("target", self.target.clone()),
            ("qemu", self.qemu.clone()),
            ("qemu_cpu", self.qemu_cpu.clone()),
            (
                "max_bytes",
                self.max_bytes.map(|m| m.to_string()).unwrap_or_default(),
            ),
            ("transports", self.transports.join(" ")),
            (
                "init",
                match self.init {
                    Init::Sysv => "sysv".into(),
                    Init::Systemd => "systemd".into(),
                },
            ),
            ("binary", self.binary.clone()),
            ("config", self.config.clone()),
            ("phone_app_unit", self.phone_app_unit.clone()),
            ("keyring", self.keyring.clone()),
            ("state_dir", self.state_dir.clone()),
            ("control_socket", self.control_socket.clone()),
            ("features_file", self.features_file.clone()),
            ("supervisor_socket", self.supervisor_socket.clone()),
            ("interface", self.interface.clone()),
            ("log", self.log.clone()),
            ("server", self.server.clone()),
            ("enabled_features", self.enabled_features.clone()),
        ]
    }
}
