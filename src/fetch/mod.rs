//! Fetching the two license files from the provisioning servers
//! (`shared/spec/agent-rules.md`, "Fetching").
//!
//! A [`Fetcher`] is built for one server of [`Config::servers`](crate::config::Config)
//! with [`Config::fetch`](crate::config::Config::fetch), for one cycle: for HTTP it holds
//! one client, so the site file ([`SITE_FILE`]) and the phone file ([`phone_file`]) go
//! over one keep-alive connection. [`Fetcher::fetch`] never fails loudly: every answer is
//! a [`FetchOutcome`]: a body of at most [`MAX_BODY`] bytes, "absent" (no such file: the
//! stored license of that kind stays in force), or a [`FetchError`] whose one-line
//! `Display` says what went wrong and where, for example
//! `https://prov/0004f2abcdef-license.cfg: TLS: invalid peer certificate: UnknownIssuer`.
//!
//! # Every file whole, every time
//!
//! A file is always downloaded whole and its bytes judged; nothing is ever skipped on a
//! server's say-so that it has not changed. Validators are made of a modification time
//! and a size (nginx's and Apache's `ETag`, `Last-Modified`, FTP's `SIZE` and `MDTM`),
//! and a renewal is the size of the license it replaces: copied into place with the old
//! file's time (`cp -p`, `rsync -t`, an archive, an image with fixed file times) or in
//! the same second, it has the very same validators, and a conditional request would
//! keep the old license for good. So no request is conditional (HTTP sends neither
//! `If-None-Match` nor `If-Modified-Since`; FTP asks `SIZE` only to refuse a file too
//! big before it comes and to tell a cut transfer, never `MDTM`), and the daemon
//! compares the bytes with what it holds: the same license is "unchanged", with nothing
//! written. A license file is at most [`MAX_BODY`] bytes and usually under one KiB, so
//! a whole file costs the server about what a `304` did: the connection, the TLS
//! handshake and the headers dominate (docs/figures/storm.md measures a boot storm
//! both ways).
//!
//! Each transport is a module and a cargo feature, so a board's binary carries only the
//! ones it ships (`config::TRANSPORTS` lists them): `http` (`http`, `https`), `ftp`
//! (`ftp`, `ftps`) and `tftp` (`tftp`); folders (`file://`) are always there.
//!
//! # file://
//!
//! A `file:///abs/dir/` server reads `dir/<name>` with the same cap; a missing file is
//! [`FetchOutcome::Absent`], anything that is not a regular file or cannot be read is
//! [`FailureKind::Io`].
//!
//! # Retries
//!
//! [`backoff`] is the delay before a retry: exponential, capped, with jitter.

// A build without every transport leaves some outcomes and failure kinds unused.
#![cfg_attr(
    not(all(feature = "http", feature = "tftp", feature = "ftp")),
    allow(dead_code)
)]

#[cfg(test)]
pub(crate) mod fake;
#[cfg(feature = "ftp")]
pub(crate) mod ftp;
#[cfg(feature = "http")]
pub(crate) mod http;
pub(crate) mod secrets;
#[cfg(feature = "tftp")]
pub(crate) mod tftp;
#[cfg(any(feature = "http", feature = "ftp"))]
pub(crate) mod tls;
pub(crate) mod worker;

pub(crate) use worker::{Server, Source};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Fetch, Scheme, Secs, ServerUrl};
use crate::format::{self, Capped, Serial};

/// The largest body accepted, in bytes: a license file's largest size.
pub(crate) const MAX_BODY: usize = crate::format::MAX_FILE_SIZE;

/// The site license's file name on the server.
pub(crate) const SITE_FILE: &str = "000000000000-license.cfg";

/// The system's CA bundle, trusted for an `https://` or `ftps://` server when no
/// `fetch.ca_file` is set.
pub(crate) const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS client of a configuration, for HTTPS and FTPS alike ([`tls::client_config`]);
/// nothing in a build without either.
#[cfg(any(feature = "http", feature = "ftp"))]
pub(crate) type TlsConfig = std::sync::Arc<rustls::ClientConfig>;
#[cfg(not(any(feature = "http", feature = "ftp")))]
pub(crate) type TlsConfig = ();

/// Why a server cannot be fetched from at all (a [`FailureKind::Setup`] failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetupError {
    /// No `server` in the configuration.
    NoServer,
    /// A server index out of range.
    NoSuchServer(usize),
    /// A scheme this build has no transport for.
    Unsupported,
    /// The TLS client cannot be set up.
    #[cfg(any(feature = "http", feature = "ftp"))]
    Tls(tls::TlsError),
    /// reqwest cannot build its client: the innermost cause.
    HttpClient(String),
    /// A TLS server opened without the configuration's TLS client (a bug).
    NoTls,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NoServer => f.write_str("no provisioning server configured (server =)"),
            SetupError::NoSuchServer(index) => write!(f, "no server number {index}"),
            SetupError::Unsupported => write!(
                f,
                "unsupported URL: this agent fetches over {}",
                crate::config::TRANSPORTS.join(", ")
            ),
            #[cfg(any(feature = "http", feature = "ftp"))]
            SetupError::Tls(e) => e.fmt(f),
            SetupError::HttpClient(why) => write!(f, "cannot set up the HTTP client: {why}"),
            SetupError::NoTls => f.write_str("no TLS client set up for this server"),
        }
    }
}

impl std::error::Error for SetupError {}

#[cfg(any(feature = "http", feature = "ftp"))]
impl From<tls::TlsError> for SetupError {
    fn from(e: tls::TlsError) -> SetupError {
        SetupError::Tls(e)
    }
}

/// Whether a server of `scheme` uses the TLS client: `https` and `ftps`, and `http` (a
/// redirect may lead to `https`).
fn uses_tls(scheme: Scheme) -> bool {
    matches!(scheme, Scheme::Http | Scheme::Https | Scheme::Ftps)
}

/// A name asked of [`Fetcher::fetch`] or [`Fetcher::upload`] that is not a plain file
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotPlainName(String);

impl fmt::Display for NotPlainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a plain file name (ASCII letters, digits, '-', '_' and '.', not \
             '.', no '..'; e.g. {SITE_FILE})",
            self.0
        )
    }
}

/// A phone license's file name on the server: `<12 lowercase hex digits>-license.cfg`.
pub(crate) fn phone_file(mac: Serial) -> String {
    format!("{mac}-license.cfg")
}

/// What one fetch gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchOutcome {
    /// The whole file (at most [`MAX_BODY`] bytes).
    Body { bytes: Vec<u8> },
    /// No such file on the server: HTTP 404 or 410, TFTP error 1, or for `file://` no
    /// file; `answer` is the server's answer in words (`404`, `TFTP error 1 (File not
    /// found) from 10.0.0.1:69`).
    Absent { answer: String },
    /// Anything else.
    Failed(FetchError),
}

/// Why a fetch failed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchError {
    /// The URL asked for (the server's base URL for an error of [`Fetcher::open`] or a
    /// name refused by [`Fetcher::fetch`]).
    pub(crate) url: String,
    pub(crate) kind: FailureKind,
    /// What happened, in words; for a transport error it ends with the innermost cause.
    pub(crate) detail: String,
}

/// The kinds of fetch failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FailureKind {
    /// The configuration cannot be used (a CA file, client certificate or key that cannot
    /// be read or parsed, no trusted roots for https, an unsupported URL, a bad file
    /// name).
    Setup,
    /// No connection: refused, unreachable, name not found.
    Connect,
    /// The connect or total timeout passed.
    Timeout,
    /// The TLS handshake failed: certificate not trusted, wrong host name, expired,
    /// client certificate refused...
    Tls,
    /// An HTTP status other than 200, 304, 404 and 410.
    Status(u16),
    /// The body is larger than [`MAX_BODY`].
    TooBig,
    /// The connection was cut before the whole answer came.
    Cut,
    /// More than [`MAX_REDIRECTS`] redirects, or a loop, for a fetch; any 3xx answer to
    /// an upload (never followed: a report goes only where configured). Not "takes no
    /// uploads": the upload is tried again later.
    Redirects,
    /// The server answered with an error of its protocol other than "no such file"
    /// (TFTP's access violation, FTP's wrong password...).
    Refused,
    /// An answer that breaks the protocol (a malformed or unexpected packet).
    Protocol,
    /// Any other transfer or file error.
    Io,
    /// The server takes no uploads (the status report): HTTP 405 or 501, FTP refusing
    /// `STOR` for good (5xx) under every name tried, TFTP, a read-only folder.
    NoUploads,
}

impl FailureKind {
    /// A short machine name: `setup`, `connect`, `timeout`, `tls`, `status-500`,
    /// `too-big`, `cut`, `redirects`, `refused`, `protocol`, `io`, `no-uploads`.
    pub(crate) fn id(&self) -> String {
        match self {
            FailureKind::Setup => "setup".into(),
            FailureKind::Connect => "connect".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::Tls => "tls".into(),
            FailureKind::Status(code) => format!("status-{code}"),
            FailureKind::TooBig => "too-big".into(),
            FailureKind::Cut => "cut".into(),
            FailureKind::Redirects => "redirects".into(),
            FailureKind::Refused => "refused".into(),
            FailureKind::Protocol => "protocol".into(),
            FailureKind::Io => "io".into(),
            FailureKind::NoUploads => "no-uploads".into(),
        }
    }

    /// How the kind reads in a message.
    fn label(&self) -> &'static str {
        match self {
            FailureKind::Setup => "cannot fetch",
            FailureKind::Connect => "cannot connect",
            FailureKind::Timeout => "timed out",
            FailureKind::Tls => "TLS",
            FailureKind::Status(_) => "HTTP status",
            FailureKind::TooBig => "too big",
            FailureKind::Cut => "connection cut",
            FailureKind::Redirects => "redirects",
            FailureKind::Refused => "refused",
            FailureKind::Protocol => "protocol error",
            FailureKind::Io => "I/O error",
            FailureKind::NoUploads => "takes no uploads",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

impl FetchError {
    pub(crate) fn new(
        url: impl Into<String>,
        kind: FailureKind,
        detail: impl Into<String>,
    ) -> FetchError {
        FetchError {
            url: url.into(),
            kind,
            detail: detail.into(),
        }
    }

    /// A [`FailureKind::Setup`] failure at `url`.
    fn setup(url: impl Into<String>, why: impl fmt::Display) -> FetchError {
        FetchError::new(url, FailureKind::Setup, why.to_string())
    }
}

/// One line: `<url>: <kind>: <detail>`.
impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.url, self.kind.label(), self.detail)
    }
}

impl std::error::Error for FetchError {}

/// Fetches files from one provisioning server. Build it once: it keeps one HTTP client
/// (and so its keep-alive connection) for every fetch. `Debug` does not show the
/// password.
pub(crate) struct Fetcher {
    base: ServerUrl,
    target: Target,
}

enum Target {
    #[cfg(feature = "http")]
    Http(Box<http::Http>),
    Dir(PathBuf),
    #[cfg(feature = "tftp")]
    Tftp(tftp::Tftp),
    #[cfg(feature = "ftp")]
    Ftp(Box<ftp::Ftp>),
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Fetcher");
        s.field("base", &self.base.as_str());
        match &self.target {
            #[cfg(feature = "http")]
            Target::Http(http) => s.field("http", http),
            Target::Dir(dir) => s.field("dir", dir),
            #[cfg(feature = "tftp")]
            Target::Tftp(tftp) => s.field("tftp", tftp),
            #[cfg(feature = "ftp")]
            Target::Ftp(ftp) => s.field("ftp", ftp),
        };
        s.finish()
    }
}

impl Fetcher {
    /// A fetcher for `server` (one of `Config::servers`) with the authentication and
    /// timeouts of `fetch` and the TLS client `tls` of the configuration (see
    /// [`Provisioning`]), announcing `mac` in its `User-Agent`.
    pub(crate) fn open(
        server: &ServerUrl,
        fetch: &Fetch,
        tls: Option<&TlsConfig>,
        mac: Serial,
    ) -> Result<Fetcher, FetchError> {
        // Only HTTP announces the MAC (User-Agent), and a build may have no transport.
        let _ = (mac, fetch, tls);
        let target = match server.scheme() {
            Scheme::File => Some(Target::Dir(
                server.folder().unwrap_or(Path::new("/")).into(),
            )),
            #[cfg(feature = "tftp")]
            Scheme::Tftp => Some(Target::Tftp(tftp::Tftp::new(server, fetch))),
            #[cfg(feature = "ftp")]
            Scheme::Ftp | Scheme::Ftps => {
                Some(Target::Ftp(Box::new(ftp::Ftp::new(server, fetch, tls)?)))
            }
            #[cfg(feature = "http")]
            Scheme::Http | Scheme::Https => Some(Target::Http(Box::new(http::Http::new(
                server, fetch, tls, mac,
            )?))),
            #[allow(unreachable_patterns)] // with every transport built
            _ => None,
        };
        let Some(target) = target else {
            return Err(FetchError::setup(server.as_str(), SetupError::Unsupported));
        };
        Ok(Fetcher {
            base: server.clone(),
            target,
        })
    }

    /// Whether [`Fetcher::open`] would open `server`, found at no cost a cycle does not
    /// pay anyway: for HTTP the client's settings are checked by building reqwest's async
    /// client and dropping it, without the runtime thread the blocking client starts;
    /// every other transport is opened and dropped (nothing is started or connected).
    pub(crate) fn check(
        server: &ServerUrl,
        fetch: &Fetch,
        tls: Option<&TlsConfig>,
        mac: Serial,
    ) -> Result<(), FetchError> {
        #[cfg(feature = "http")]
        if matches!(server.scheme(), Scheme::Http | Scheme::Https) {
            return http::Http::check(server, fetch, tls, mac);
        }
        Fetcher::open(server, fetch, tls, mac).map(drop)
    }

    /// [`Fetcher::open`] for the tests: `server` parsed as the configuration would, and
    /// the TLS client built for it alone.
    #[cfg(test)]
    pub(crate) fn new(server: &str, fetch: &Fetch, mac: Serial) -> Result<Fetcher, FetchError> {
        let url = ServerUrl::parse(server, Path::new("/"), crate::config::TRANSPORTS)
            .map_err(|why| FetchError::setup(server, why))?;
        let tls = Provisioning::tls(std::slice::from_ref(&url), fetch)
            .map_err(|why| FetchError::setup(server, why))?;
        Fetcher::open(&url, fetch, tls.as_ref(), mac)
    }

    /// Fetches `base + name`, whole (never conditional: see the module documentation).
    /// `name` must be a plain file name: ASCII letters, digits, `-`, `_` and `.`, not
    /// empty, not `.`, no `..`.
    pub(crate) fn fetch(&self, name: &str) -> FetchOutcome {
        if let Err(why) = check_name(name) {
            // The base as the URL: the name may hold anything, a line break included.
            return FetchOutcome::Failed(FetchError::setup(self.base.as_str(), why));
        }
        let url = self.base.file_url(name);
        match &self.target {
            Target::Dir(dir) => fetch_file(url, &dir.join(name)),
            #[cfg(feature = "tftp")]
            Target::Tftp(tftp) => tftp.fetch(name),
            #[cfg(feature = "ftp")]
            Target::Ftp(ftp) => ftp.fetch(name),
            #[cfg(feature = "http")]
            Target::Http(http) => http.fetch(&url),
        }
    }
}

impl Fetcher {
    /// Stores `bytes` as `base + name` (the status report): an HTTP `PUT`, an FTP
    /// `STOR` (to a temporary name, then renamed, or in place), or for a folder an
    /// atomic write (temp file, fsync, rename). TFTP takes no uploads here. On success,
    /// what was tried beside the plain way, in words (FTP's fallbacks), for `status`.
    pub(crate) fn upload(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, FetchError> {
        check_name(name).map_err(|why| FetchError::setup(self.base.as_str(), why))?;
        let url = self.base.file_url(name);
        match &self.target {
            Target::Dir(dir) => crate::storage::atomic::write(dir, name, bytes)
                .map(|_| None)
                .map_err(|e| {
                    let kind = match e.raw_os_error() {
                        Some(nix::libc::EACCES | nix::libc::EPERM | nix::libc::EROFS) => {
                            FailureKind::NoUploads
                        }
                        _ => FailureKind::Io,
                    };
                    let detail = format!("cannot write {}: {e}", dir.join(name).display());
                    FetchError::new(url, kind, detail)
                }),
            #[cfg(feature = "tftp")]
            Target::Tftp(_) => Err(FetchError::new(
                url,
                FailureKind::NoUploads,
                "the agent uploads nothing over TFTP",
            )),
            #[cfg(feature = "ftp")]
            Target::Ftp(ftp) => ftp.upload(name, bytes),
            #[cfg(feature = "http")]
            Target::Http(http) => http.upload(&url, bytes).map(|()| None),
        }
    }
}

impl Source for Fetcher {
    fn fetch(&self, name: &str) -> FetchOutcome {
        Fetcher::fetch(self, name)
    }

    fn upload(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, FetchError> {
        Fetcher::upload(self, name, bytes)
    }
}

/// The configured provisioning servers: a [`Fetcher`] is set up afresh for a server when a
/// fetch cycle first needs it (on the fetch thread) and dropped after the cycle, so no
/// HTTP client outlives a cycle. The TLS client is built once, here, for every server of
/// the configuration: the CA, certificate and key files are read when the configuration
/// is (at start and at each reload), not at each cycle.
#[derive(Debug)]
pub(crate) struct Provisioning {
    servers: Vec<ServerUrl>,
    /// Each server's fetch settings (its URL's credentials in them).
    fetch: Vec<Fetch>,
    #[cfg_attr(not(any(feature = "http", feature = "ftp")), allow(dead_code))]
    tls: Option<TlsConfig>,
    mac: Serial,
}

impl Provisioning {
    /// The servers of the configuration (at least one), each checked now (the CA,
    /// certificate and key files read and parsed, each server's client set up as a cycle
    /// sets it up: [`Fetcher::check`]) so that an unusable one is said at start, not at
    /// each fetch. Nothing is left running: no client is kept, and no thread started.
    pub(crate) fn new(
        servers: &[ServerUrl],
        fetch: &Fetch,
        mac: Serial,
    ) -> Result<Provisioning, FetchError> {
        let Some(first) = servers.first() else {
            return Err(FetchError::setup("-", SetupError::NoServer));
        };
        // A TLS failure is said at the first server that uses the TLS client.
        let named = servers
            .iter()
            .find(|s| uses_tls(s.scheme()))
            .unwrap_or(first);
        let tls = Provisioning::tls(servers, fetch)
            .map_err(|why| FetchError::setup(named.as_str(), why))?;
        let fetch: Vec<Fetch> = servers.iter().map(|s| s.fetch_settings(fetch)).collect();
        for (server, settings) in servers.iter().zip(&fetch) {
            Fetcher::check(server, settings, tls.as_ref(), mac)?;
        }
        Ok(Provisioning {
            servers: servers.to_vec(),
            fetch,
            tls,
            mac,
        })
    }

    /// The TLS client of `servers` with `fetch`'s files.
    fn tls(servers: &[ServerUrl], fetch: &Fetch) -> Result<Option<TlsConfig>, SetupError> {
        #[cfg(any(feature = "http", feature = "ftp"))]
        return Ok(tls::client_config(fetch, servers)?);
        #[cfg(not(any(feature = "http", feature = "ftp")))]
        {
            let _ = (servers, fetch);
            Ok(None)
        }
    }
}

impl Server for Provisioning {
    fn bases(&self) -> &[ServerUrl] {
        &self.servers
    }

    fn open(&self, index: usize) -> Result<Box<dyn Source>, FetchError> {
        let (Some(server), Some(fetch)) = (self.servers.get(index), self.fetch.get(index)) else {
            return Err(FetchError::setup("-", SetupError::NoSuchServer(index)));
        };
        Fetcher::open(server, fetch, self.tls.as_ref(), self.mac)
            .map(|f| Box::new(f) as Box<dyn Source>)
    }
}

/// The delay in seconds before retry number `attempt` (0 is the first retry):
/// `min(max, initial × 2^attempt)`, then a value in `[d/2, d]` chosen by `jitter` (any
/// number: random, or derived from a hash) so that a fleet of phones never retries in
/// step. At least 1 second; no overflow for any input.
pub(crate) fn backoff(attempt: u32, initial: Secs, max: Secs, jitter: u64) -> u64 {
    let grown = 1u64
        .checked_shl(attempt)
        .and_then(|factor| initial.0.checked_mul(factor))
        .unwrap_or(u64::MAX);
    let full = grown.min(max.0).max(1);
    let low = full / 2;
    // full - low <= 2^63, so the span cannot overflow.
    let span = full - low + 1;
    (low + jitter % span).max(1)
}

/// A name that cannot climb out of the base, add a query or change the URL in any way.
fn check_name(name: &str) -> Result<(), NotPlainName> {
    let plain = !name.is_empty()
        && name != "."
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(())
    } else {
        Err(NotPlainName(name.to_string()))
    }
}

/// A `file://` fetch.
fn fetch_file(url: String, path: &Path) -> FetchOutcome {
    let io_error = |url: String, e: io::Error| {
        FetchOutcome::Failed(FetchError::new(
            url,
            FailureKind::Io,
            format!("cannot read {}: {e}", path.display()),
        ))
    };
    // Looked at before opening, so that a FIFO or a device is never opened.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return FetchOutcome::Absent {
                answer: "no such file".into(),
            }
        }
        Err(e) => return io_error(url, e),
        Ok(meta) if !meta.is_file() => {
            return FetchOutcome::Failed(FetchError::new(
                url,
                FailureKind::Io,
                format!("{} is not a regular file", path.display()),
            ))
        }
        Ok(_) => {}
    }
    let file = match crate::files::open_regular(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return FetchOutcome::Absent {
                answer: "no such file".into(),
            }
        }
        Err(e) => return io_error(url, e),
    };
    match format::read_capped(file) {
        Ok(Capped::Content(bytes)) => FetchOutcome::Body { bytes },
        Ok(Capped::TooBig(_)) => FetchOutcome::Failed(too_big(url)),
        Err(e) => io_error(url, e),
    }
}

fn too_big(url: String) -> FetchError {
    FetchError::new(
        url,
        FailureKind::TooBig,
        format!("more than {MAX_BODY} bytes (a license file is at most {MAX_BODY}): abandoned"),
    )
}
