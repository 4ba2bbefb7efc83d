//! Fetching the two license files from the provisioning server (`shared/spec/agent-rules.md`,
//! "Fetching").
//!
//! A [`Fetcher`] is built once from [`Config::server`](crate::config::Config::server) and
//! [`Config::fetch`](crate::config::Config::fetch); it holds one HTTP client, so the site
//! file ([`SITE_FILE`]) and the phone file ([`phone_file`]) go over one keep-alive
//! connection. [`Fetcher::fetch`] never fails loudly: every answer is a [`FetchOutcome`]:
//! a body of at most [`MAX_BODY`] bytes with its validators, "not modified" (304),
//! "absent" (404 or 410: the stored license of that kind stays in force), or a
//! [`FetchError`] whose one-line `Display` says what went wrong and where, for example
//! `https://prov/0004f2abcdef-license.cfg: TLS: invalid peer certificate: UnknownIssuer`.
//!
//! # HTTP and HTTPS
//!
//! - `GET` with `User-Agent: license-agent/<version> (mac <12 hex digits>)`, and
//!   `If-None-Match` / `If-Modified-Since` from the [`Validator`] stored at the last 200
//!   (a validator that is not a valid header value is not sent: the file is fetched whole).
//! - Basic authentication when `fetch.username` and `fetch.password` are set.
//! - Timeouts: `fetch.connect_timeout` for the connection, `fetch.total_timeout` for the
//!   whole exchange. The body is read in pieces and the total deadline is checked after
//!   each one, so a server trickling bytes is cut off too (each single read waits at most
//!   the total timeout, so the worst case is under twice the total timeout).
//! - At most 5 redirects (a loop or more is [`FailureKind::Redirects`]); reqwest drops the
//!   `Authorization` header when a redirect leaves the host. A failure after a redirect
//!   names the URL that failed and the one first asked for.
//! - Validators (`ETag`, `Last-Modified`) longer than [`MAX_VALIDATOR`] are not kept; the
//!   daemon keeps them only with a file it holds.
//! - Proxy variables of the environment (`http_proxy`...) are ignored: the configuration
//!   has no proxy, and a daemon should not depend on its environment.
//! - TLS is rustls on ring; the certificate chain and the host name are always checked.
//!   Trusted roots: exactly the certificates of `fetch.ca_file` (PEM, one or more) when
//!   it is set. Otherwise, for an `https://` server, the system bundle
//!   [`SYSTEM_CA_BUNDLE`]; without either, [`Fetcher::new`] fails
//!   ([`FailureKind::Setup`]) rather than every fetch failing later. (An `http://` server
//!   without `ca_file` gets no roots, so a redirect from it to `https://` fails as
//!   [`FailureKind::Tls`].) `fetch.client_cert` and `fetch.client_key` (PEM) are the
//!   client certificate for mutual TLS.
//! - Status: 200 → [`FetchOutcome::Body`], 304 → [`FetchOutcome::NotModified`] (only to a
//!   request that carried a validator: otherwise it answers nothing and is a failure), 404 and
//!   410 → [`FetchOutcome::Absent`], anything else → [`FailureKind::Status`].
//! - The body is streamed and abandoned as soon as it passes [`MAX_BODY`] (or at once when
//!   `Content-Length` announces more): a 10 MB answer is never read whole.
//!
//! # file://
//!
//! A `file:///abs/dir/` server reads `dir/<name>` with the same cap; a missing file is
//! [`FetchOutcome::Absent`] with status 404, anything that is not a regular file or
//! cannot be read is [`FailureKind::Io`]. There are no validators, and never a 304.
//!
//! # Retries
//!
//! [`backoff`] is the delay before a retry: exponential, capped, with jitter.
//!
//! [`Fetcher::new`] must not be called from inside an async runtime (reqwest's blocking
//! client runs its own); the agent has none.

#[cfg(test)]
mod tests;
pub(crate) mod tftp;
pub(crate) mod worker;

pub(crate) use worker::{Server, Source};

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{
    HeaderMap, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::{Certificate, Identity, StatusCode};

use crate::config::{Fetch, Secs, ServerUrl};
use crate::format::{self, Capped, Serial};
use crate::storage::Validator;

/// The largest body accepted, in bytes: a license file's largest size.
pub(crate) const MAX_BODY: usize = crate::format::MAX_FILE_SIZE;

/// The site license's file name on the server.
pub(crate) const SITE_FILE: &str = "000000000000-license.cfg";

/// The system's CA bundle, trusted for an `https://` server when no `fetch.ca_file` is set.
pub(crate) const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The most redirects followed.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// The longest `ETag` or `Last-Modified` kept for the next request, in bytes (real ones
/// are a few dozen): what a server sends can never swell `meta.json`.
pub(crate) const MAX_VALIDATOR: usize = 256;

/// The largest PEM file read (CA bundle, client certificate or key), in bytes.
const MAX_PEM: u64 = 4 * 1024 * 1024;

/// A phone license's file name on the server: `<12 lowercase hex digits>-license.cfg`.
pub(crate) fn phone_file(mac: Serial) -> String {
    format!("{mac}-license.cfg")
}

/// What one fetch gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchOutcome {
    /// 200: the body (at most [`MAX_BODY`] bytes) and the validators of the response
    /// (`ETag`, `Last-Modified`), to send back at the next fetch.
    Body {
        bytes: Vec<u8>,
        validator: Validator,
    },
    /// 304 Not Modified: the file is the one downloaded last time.
    NotModified,
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
    /// The URL asked for (the server's base URL for an error of [`Fetcher::new`] or a
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
    /// More than [`MAX_REDIRECTS`] redirects, or a loop.
    Redirects,
    /// The server answered with an error of its protocol other than "no such file"
    /// (TFTP's access violation, FTP's wrong password...).
    Refused,
    /// An answer that breaks the protocol (a malformed or unexpected packet).
    Protocol,
    /// Any other transfer or file error.
    Io,
}

impl FailureKind {
    /// A short machine name: `setup`, `connect`, `timeout`, `tls`, `status-500`,
    /// `too-big`, `cut`, `redirects`, `refused`, `protocol`, `io`.
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
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

impl FetchError {
    fn new(url: impl Into<String>, kind: FailureKind, detail: impl Into<String>) -> FetchError {
        FetchError {
            url: url.into(),
            kind,
            detail: detail.into(),
        }
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
    base: String,
    target: Target,
}

enum Target {
    Http {
        client: Client,
        auth: Option<(String, String)>,
        total: Duration,
        /// The URL the request in progress was last redirected to (reqwest names the
        /// first URL in an error, and a message must name the one that failed).
        last_hop: LastHop,
    },
    Dir(PathBuf),
    Tftp(tftp::Tftp),
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Fetcher");
        s.field("base", &self.base);
        match &self.target {
            Target::Http { auth, total, .. } => s
                .field("username", &auth.as_ref().map(|(user, _)| user))
                .field("password", &auth.as_ref().map(|_| "<hidden>"))
                .field("total_timeout", total),
            Target::Dir(dir) => s.field("dir", dir),
            Target::Tftp(tftp) => s.field("tftp", tftp),
        };
        s.finish()
    }
}

impl Fetcher {
    /// A fetcher for `server` (`Config::server`: `http://…/`, `https://…/` or
    /// `file:///abs/dir/`, ending with `/`) with the TLS, authentication and timeouts of
    /// `fetch`, announcing `mac` in its `User-Agent`. Reads the CA, client certificate
    /// and key files now: one that cannot be read or parsed is a [`FailureKind::Setup`]
    /// error naming it.
    pub(crate) fn new(server: &str, fetch: &Fetch, mac: Serial) -> Result<Fetcher, FetchError> {
        let setup = |detail: String| FetchError::new(server, FailureKind::Setup, detail);
        if !server.ends_with('/') {
            return Err(setup(
                "the server URL must end with '/': file names are appended to it".into(),
            ));
        }
        let lower = server.to_ascii_lowercase();
        if let Some(dir) = server
            .get("file://".len()..)
            .filter(|_| lower.starts_with("file://"))
        {
            if !dir.starts_with('/') {
                return Err(setup(
                    "a file:// server must name an absolute folder".into(),
                ));
            }
            return Ok(Fetcher {
                base: server.to_string(),
                target: Target::Dir(PathBuf::from(dir)),
            });
        }
        if lower.starts_with("tftp://") {
            return Ok(Fetcher {
                base: server.to_string(),
                target: Target::Tftp(tftp::Tftp::new(server, fetch)?),
            });
        }
        let https = lower.starts_with("https://");
        if !https && !lower.starts_with("http://") {
            return Err(setup(
                "unsupported URL: expected http://, https://, tftp:// or file:///".into(),
            ));
        }

        let last_hop = LastHop::default();
        let mut builder = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .user_agent(format!(
                "license-agent/{} (mac {mac})",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(at_least_1s(fetch.connect_timeout))
            .timeout(at_least_1s(fetch.total_timeout))
            .redirect(follow(&last_hop))
            .no_proxy();

        let roots = match &fetch.ca_file {
            Some(file) => Some(("ca_file", file.clone())),
            None if https => {
                let system = PathBuf::from(SYSTEM_CA_BUNDLE);
                if !system.exists() {
                    return Err(setup(format!(
                        "an https server needs trusted CA certificates: set fetch.ca_file \
                         (there is no system bundle {SYSTEM_CA_BUNDLE})"
                    )));
                }
                Some(("the system CA bundle", system))
            }
            None => None,
        };
        if let Some((what, file)) = roots {
            let pem =
                read_pem(&file).map_err(|e| setup(format!("{what} {}: {e}", file.display())))?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
                setup(format!(
                    "{what} {}: not PEM certificates: {}",
                    file.display(),
                    innermost(&e)
                ))
            })?;
            if certs.is_empty() {
                return Err(setup(format!(
                    "{what} {}: no PEM certificate in it",
                    file.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }

        match (&fetch.client_cert, &fetch.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_pem(cert)
                    .map_err(|e| setup(format!("client_cert {}: {e}", cert.display())))?;
                let key_pem = read_pem(key)
                    .map_err(|e| setup(format!("client_key {}: {e}", key.display())))?;
                pem.push(b'\n');
                pem.extend_from_slice(&key_pem);
                let identity = Identity::from_pem(&pem).map_err(|e| {
                    setup(format!(
                        "client_cert {} with client_key {}: not a PEM certificate and \
                         private key: {}",
                        cert.display(),
                        key.display(),
                        innermost(&e)
                    ))
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(setup(
                    "fetch.client_cert and fetch.client_key go together: give both or neither"
                        .into(),
                ))
            }
        }

        let client = builder
            .build()
            .map_err(|e| setup(format!("cannot set up the HTTP client: {}", innermost(&e))))?;
        let auth = match (&fetch.username, &fetch.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            _ => None,
        };
        Ok(Fetcher {
            base: server.to_string(),
            target: Target::Http {
                client,
                auth,
                total: at_least_1s(fetch.total_timeout),
                last_hop,
            },
        })
    }

    /// Fetches `base + name`. `validator` is what was stored from the last 200 for this
    /// file; it makes the request conditional (HTTP only). `name` must be a plain file
    /// name: ASCII letters, digits, `-`, `_` and `.`, not empty, not `.`, no `..`.
    pub(crate) fn fetch(&self, name: &str, validator: Option<&Validator>) -> FetchOutcome {
        if let Err(why) = check_name(name) {
            // The base as the URL: the name may hold anything, a line break included.
            return FetchOutcome::Failed(FetchError::new(&self.base, FailureKind::Setup, why));
        }
        let url = format!("{}{}", self.base, name);
        match &self.target {
            Target::Dir(dir) => fetch_file(url, &dir.join(name)),
            Target::Tftp(tftp) => tftp.fetch(name, validator),
            Target::Http {
                client,
                auth,
                total,
                last_hop,
            } => {
                last_hop.set(None);
                let mut request = client.get(&url);
                if let Some((user, password)) = auth {
                    request = request.basic_auth(user, Some(password));
                }
                let conditional = conditional(validator);
                let asked_unchanged = !conditional.is_empty();
                request = request.headers(conditional);
                let started = Instant::now();
                match request.send() {
                    Ok(response) => answer(&url, response, asked_unchanged, started, *total),
                    Err(e) => {
                        let failed = last_hop
                            .get()
                            .map_or(url.clone(), |to| answered_url(&url, &to));
                        FetchOutcome::Failed(transport(failed, &e))
                    }
                }
            }
        }
    }
}

impl Source for Fetcher {
    fn fetch(&self, name: &str, validator: Option<&Validator>) -> FetchOutcome {
        Fetcher::fetch(self, name, validator)
    }
}

/// The configured provisioning servers: a [`Fetcher`] is set up afresh for a server when a
/// fetch cycle first needs it (on the fetch thread) and dropped after the cycle, so no
/// HTTP client outlives a cycle.
#[derive(Debug)]
pub(crate) struct Provisioning {
    bases: Vec<String>,
    /// Each server's fetch settings (its URL's credentials in them).
    fetch: Vec<Fetch>,
    mac: Serial,
}

impl Provisioning {
    /// The servers of the configuration (at least one), each checked now (the CA,
    /// certificate and key files read and parsed) so that an unusable one is said at
    /// start, not at each fetch.
    pub(crate) fn new(
        servers: &[ServerUrl],
        fetch: &Fetch,
        mac: Serial,
    ) -> Result<Provisioning, FetchError> {
        if servers.is_empty() {
            return Err(FetchError::new(
                "-",
                FailureKind::Setup,
                "no provisioning server configured (server =)",
            ));
        }
        let fetch: Vec<Fetch> = servers.iter().map(|s| s.fetch_settings(fetch)).collect();
        for (server, settings) in servers.iter().zip(&fetch) {
            drop(Fetcher::new(&server.url, settings, mac)?);
        }
        Ok(Provisioning {
            bases: servers.iter().map(|s| s.url.clone()).collect(),
            fetch,
            mac,
        })
    }
}

impl Server for Provisioning {
    fn bases(&self) -> &[String] {
        &self.bases
    }

    fn open(&self, index: usize) -> Result<Box<dyn Source>, FetchError> {
        let (Some(base), Some(fetch)) = (self.bases.get(index), self.fetch.get(index)) else {
            return Err(FetchError::new(
                "-",
                FailureKind::Setup,
                format!("no server number {index}"),
            ));
        };
        Fetcher::new(base, fetch, self.mac).map(|f| Box::new(f) as Box<dyn Source>)
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

fn at_least_1s(secs: Secs) -> Duration {
    Duration::from_secs(secs.0.max(1))
}

/// The host and port of a URL's authority (`host`, `host:port`, `[v6]`, `[v6]:port`),
/// with `default` when it names none; the host without brackets.
pub(crate) fn host_port(authority: &str, default: u16) -> Result<(String, u16), String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{authority:?}: an IPv6 address without its ']'"))?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("{authority:?}: only ':port' may follow an IPv6 address")
                })?),
            };
            (host, port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("{authority:?}: no host"));
    }
    let port = match port {
        None => default,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{authority:?}: the port must be a number from 1 to 65535"))?,
    };
    Ok((host.to_string(), port))
}

/// A name that cannot climb out of the base, add a query or change the URL in any way.
fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name != "."
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a plain file name (ASCII letters, digits, '-', '_' and '.', \
             not '.', no '..'; e.g. {SITE_FILE})"
        ))
    }
}

/// `If-None-Match` and `If-Modified-Since` from a stored validator; a value that cannot
/// be a header (a damaged metadata file) is left out.
fn conditional(validator: Option<&Validator>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(v) = validator else {
        return headers;
    };
    for (name, value) in [
        (IF_NONE_MATCH, &v.etag),
        (IF_MODIFIED_SINCE, &v.last_modified),
    ] {
        if let Some(value) = value.as_deref().and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Reads a PEM file (certificates or a key), refusing a huge one or one that is not a
/// regular file (a FIFO in its place must not hold the daemon).
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    crate::files::read_regular(path, MAX_PEM).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => format!("{e}: not a PEM file"),
        _ => format!("cannot read it: {e}"),
    })
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
        Ok(Capped::Content(bytes)) => FetchOutcome::Body {
            bytes,
            validator: Validator::default(),
        },
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

/// Turns a response into an outcome, reading the body of a 200. `asked_unchanged`: the
/// request carried a validator (only then is a 304 an answer).
fn answer(
    asked: &str,
    mut response: Response,
    asked_unchanged: bool,
    started: Instant,
    total: Duration,
) -> FetchOutcome {
    let url = answered_url(asked, response.url().as_str());
    let head = judge_head(
        &url,
        response.status(),
        response.headers(),
        response.content_length(),
        asked_unchanged,
    );
    match head {
        Head::Done(outcome) => {
            drain_small(&mut response);
            outcome
        }
        Head::Body {
            expected,
            validator,
        } => match read_body(&url, &mut response, expected, started, total) {
            Ok(bytes) => FetchOutcome::Body { bytes, validator },
            Err(e) => FetchOutcome::Failed(e),
        },
    }
}

/// Where the request in progress was last redirected to, shared with the redirect policy.
#[derive(Clone, Default)]
struct LastHop(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl LastHop {
    fn set(&self, url: Option<String>) {
        // A poisoned lock only means a panic elsewhere; the value is still a plain string.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = url;
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, noting each one in `last_hop`.
fn follow(last_hop: &LastHop) -> reqwest::redirect::Policy {
    let last_hop = last_hop.clone();
    reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` starts with the URL first asked for, which is no redirect.
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            last_hop.set(Some(attempt.url().to_string()));
            attempt.follow()
        }
    })
}

/// The URL that answered, in messages: the one asked for, or after a redirect the one
/// redirected to (it is the one that refused), naming where it came from.
fn answered_url(asked: &str, answered: &str) -> String {
    if asked == answered {
        asked.to_string()
    } else {
        format!("{answered} (redirected from {asked})")
    }
}

/// What the status line and headers of an answer decide, before any of its body.
#[derive(Debug)]
pub(crate) enum Head {
    /// 200: read a body (of `expected` bytes when announced).
    Body {
        expected: Option<u64>,
        validator: Validator,
    },
    /// Decided without the body.
    Done(FetchOutcome),
}

/// Judges an answer's status and headers (sans I/O). `content_length` is the length the
/// answer announces; `asked_unchanged` whether the request carried a validator.
pub(crate) fn judge_head(
    url: &str,
    status: StatusCode,
    headers: &HeaderMap,
    content_length: Option<u64>,
    asked_unchanged: bool,
) -> Head {
    let failed =
        |kind, detail: String| Head::Done(FetchOutcome::Failed(FetchError::new(url, kind, detail)));
    match status.as_u16() {
        200 => {}
        304 if asked_unchanged => return Head::Done(FetchOutcome::NotModified),
        304 => {
            return failed(
                FailureKind::Status(304),
                "304 Not Modified, but the request named no earlier copy (no validator was \
                 sent): not an answer"
                    .into(),
            )
        }
        code @ (404 | 410) => {
            return Head::Done(FetchOutcome::Absent {
                answer: code.to_string(),
            })
        }
        code => return failed(FailureKind::Status(code), status_text(status)),
    }
    if let Some(len) = content_length.filter(|&len| len > MAX_BODY as u64) {
        return failed(
            FailureKind::TooBig,
            format!(
                "the server announces {len} bytes; a license file is at most {MAX_BODY}: \
                 not downloaded"
            ),
        );
    }
    Head::Body {
        expected: content_length,
        validator: validators(headers),
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes from `body`, abandoning it as soon as it
/// passes the bound, when it ends short of `expected`, or after the `total` timeout.
pub(crate) fn read_body(
    url: &str,
    body: &mut impl Read,
    expected: Option<u64>,
    started: Instant,
    total: Duration,
) -> Result<Vec<u8>, FetchError> {
    // Never trust an announced length for the allocation beyond the bound.
    let capacity = expected.map_or(8 * 1024, |len| len.min(MAX_BODY as u64) as usize);
    let mut bytes = Vec::with_capacity(capacity);
    let mut chunk = [0u8; 8 * 1024];
    let mut body = body.take(MAX_BODY as u64 + 1);
    loop {
        match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                if bytes.len() > MAX_BODY {
                    return Err(too_big(url.to_string()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout_io(&e) => return Err(timed_out(url, total, bytes.len(), &e)),
            Err(e) => {
                let of = expected.map(|n| format!(" of {n}")).unwrap_or_default();
                return Err(FetchError::new(
                    url,
                    FailureKind::Cut,
                    format!(
                        "the connection broke after {}{of} bytes of the body: {}",
                        bytes.len(),
                        innermost(&e)
                    ),
                ));
            }
        }
        if started.elapsed() > total {
            return Err(FetchError::new(
                url,
                FailureKind::Timeout,
                format!(
                    "the body was still coming after the total timeout of {}s ({} bytes \
                     received)",
                    total.as_secs(),
                    bytes.len()
                ),
            ));
        }
    }
    if let Some(len) = expected.filter(|&len| len != bytes.len() as u64) {
        return Err(FetchError::new(
            url,
            FailureKind::Cut,
            format!(
                "the connection ended after {} of the {len} bytes announced",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Reads away a small error body announced by its length, so that the connection can be
/// used for the next file; anything else is left (the connection is then closed).
fn drain_small(response: &mut Response) {
    if response.content_length().is_some_and(|len| len <= 8 * 1024) {
        let _ = io::copy(&mut response.take(8 * 1024), &mut io::sink());
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// The validators of an answer: each kept only if it is at most [`MAX_VALIDATOR`] bytes
/// of visible ASCII (a longer or stranger one is not kept: the next fetch is whole).
fn validators(headers: &HeaderMap) -> Validator {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .filter(|v| v.len() <= MAX_VALIDATOR)
            .map(str::to_string)
    };
    Validator {
        etag: text(ETAG),
        last_modified: text(LAST_MODIFIED),
    }
}

/// A read error of the body that is a timeout: reqwest's own (wrapped in an
/// `io::Error`), or the socket's.
fn is_timeout_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_timeout)
}

fn timed_out(url: &str, total: Duration, received: usize, e: &io::Error) -> FetchError {
    FetchError::new(
        url,
        FailureKind::Timeout,
        format!(
            "no more of the body within the timeout of {}s ({received} bytes received): {}",
            total.as_secs(),
            innermost(e)
        ),
    )
}

/// Classifies an error of `send` (before any response).
fn transport(url: String, e: &reqwest::Error) -> FetchError {
    let cause = innermost(e);
    let texts = chain(e);
    let (kind, detail) = if e.is_redirect() {
        (
            FailureKind::Redirects,
            format!("more than {MAX_REDIRECTS} redirects, or a loop: {cause}"),
        )
    } else if e.is_timeout() {
        (FailureKind::Timeout, format!("no answer in time: {cause}"))
    } else if texts.iter().any(|t| looks_tls(t)) {
        (FailureKind::Tls, cause)
    } else if e.is_connect() {
        (FailureKind::Connect, cause)
    } else if texts
        .iter()
        .any(|t| t.contains("connection closed before message completed"))
    {
        (
            FailureKind::Cut,
            format!("the server closed the connection without a complete answer: {cause}"),
        )
    } else if e.is_builder() {
        (FailureKind::Setup, cause)
    } else {
        (FailureKind::Io, cause)
    };
    FetchError::new(url, kind, detail)
}

/// The messages of an error and its sources, outermost first.
fn chain(e: &(dyn StdError + 'static)) -> Vec<String> {
    let mut texts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        texts.push(err.to_string());
        next = err.source();
    }
    texts
}

/// The innermost cause's message (reqwest's outer messages repeat the URL and say
/// little): `invalid peer certificate: UnknownIssuer`, `Connection refused (os error
/// 111)`.
fn innermost(e: &(dyn StdError + 'static)) -> String {
    let mut err = e;
    while let Some(source) = err.source() {
        err = source;
    }
    err.to_string()
}

/// Whether an error message comes from TLS (rustls's messages, without depending on
/// rustls's types).
fn looks_tls(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "alert",
        "peer is incompatible",
        "peer misbehaved",
        "corrupt message",
        "invalid dns name",
        "close_notify",
    ]
    .iter()
    .any(|word| text.contains(word))
}
