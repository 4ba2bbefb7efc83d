//! `http://` and `https://` servers (reqwest's blocking client, rustls on ring; the
//! `http` feature).
//!
//! - `PUT` of the status report ([`Http::upload`]): 200, 201 and 204 take it; 405 and
//!   501 say the server takes no uploads ([`FailureKind::NoUploads`]). A report goes
//!   only where it is configured to go: the `PUT` goes over a client of its own that
//!   follows no redirect (`redirect::Policy::none()`, built at the first upload), so a
//!   307 or 308 (which ask for the same body elsewhere) never sends it on, and any 3xx
//!   answer is a [`FailureKind::Redirects`] failure naming the status and its
//!   `Location`. It is tried again later like any failure, never taken for "takes no
//!   uploads".
//! - `GET` with `User-Agent: license-agent/<version> (mac <12 hex digits>)`, never
//!   conditional: no `If-None-Match`, no `If-Modified-Since` (a server's validators are
//!   a modification time and a size, blind to a renewal copied in with the old time:
//!   see [`super`], "Every file whole, every time").
//! - Basic authentication when `fetch.username` and `fetch.password` are set.
//! - Timeouts: `fetch.connect_timeout` for the connection, `fetch.total_timeout` for the
//!   whole exchange. The body is read in pieces and the total deadline is checked after
//!   each one, so a server trickling bytes is cut off too (each single read waits at most
//!   the total timeout, so the worst case is under twice the total timeout).
//! - A `GET` follows at most 5 redirects (a loop or more is [`FailureKind::Redirects`]);
//!   reqwest drops the `Authorization` header when a redirect leaves the host. A failure
//!   after a redirect names the URL that failed and the one first asked for.
//! - The password is never shown: what a server chose that a message carries (a URL it
//!   redirected to, a `Location`, the text of a TLS or transport error) goes through
//!   [`Secrets::words`](super::secrets::Secrets::words) first, and each failure's detail
//!   is looked over once more. Statuses are shown with their standard reason, never the
//!   server's, and error bodies are never shown.
//! - Proxy variables of the environment (`http_proxy`...) are ignored: the configuration
//!   has no proxy, and a daemon should not depend on its environment.
//! - TLS is the configuration's rustls client ([`super::tls`], on ring, the one FTPS
//!   uses too), given to reqwest with `use_preconfigured_tls`; the certificate chain and
//!   the host name are always checked. Trusted roots: exactly the certificates of
//!   `fetch.ca_file` (PEM, one or more) when it is set. Otherwise, when a server is
//!   `https://` or `ftps://`, the system bundle [`SYSTEM_CA_BUNDLE`](super::SYSTEM_CA_BUNDLE); without either,
//!   [`Provisioning::new`](super::Provisioning::new) fails ([`FailureKind::Setup`])
//!   rather than every fetch failing later. (With only `http://` servers and no
//!   `ca_file` there are no roots, so a redirect to `https://` fails as
//!   [`FailureKind::Tls`].) `fetch.client_cert` and `fetch.client_key` (PEM) are the
//!   client certificate for mutual TLS.
//! - Status: 200 → [`FetchOutcome::Body`], 404 and 410 → [`FetchOutcome::Absent`],
//!   anything else → [`FailureKind::Status`] (a 304 too: the request named no earlier
//!   copy, so it answers nothing).
//! - The body is streamed and abandoned as soon as it passes [`MAX_BODY`] (or at once when
//!   `Content-Length` announces more): a 10 MB answer is never read whole.
//!

#[cfg(test)]
mod tests;

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::LOCATION;
use reqwest::StatusCode;

use super::secrets::Secrets;
use super::{too_big, FailureKind, FetchError, FetchOutcome, SetupError, TlsConfig, MAX_BODY};
use crate::config::{Fetch, Secs, ServerUrl};
use crate::format::Serial;

/// The most redirects followed.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// The most characters shown of what a server chose (a URL, an error's text).
const SHOWN_CHARS: usize = 300;

/// One HTTP client for the cycle (and so one keep-alive connection for both files), and
/// one that follows no redirect for the report's upload, built when first needed.
/// `Debug` does not show the password.
pub(crate) struct Http {
    client: Client,
    /// What builds a client (for the upload's).
    setup: Setup,
    /// The upload's client (no redirects), or why it cannot be built.
    put: std::sync::OnceLock<Result<Client, FetchError>>,
    auth: Option<(String, String)>,
    /// The password, never shown.
    secrets: Secrets,
    total: Duration,
    /// The URL the request in progress was last redirected to (reqwest names the first
    /// URL in an error, and a message must name the one that failed).
    last_hop: LastHop,
}

/// Everything a client is built from, read and parsed once.
struct Setup {
    server: String,
    mac: Serial,
    connect: Duration,
    total: Duration,
    /// The configuration's TLS client ([`super::tls`]).
    tls: TlsConfig,
}

/// `builder` (reqwest's blocking `ClientBuilder` or its async one: the same methods)
/// with every setting of `setup` and the redirect policy `redirect`: one list, so the
/// start check ([`Http::check`]) builds what a cycle's client is built from.
macro_rules! configured {
    ($builder:expr, $setup:expr, $redirect:expr) => {
        $builder
            .use_preconfigured_tls(rustls::ClientConfig::clone(&$setup.tls))
            .user_agent(format!(
                "license-agent/{} (mac {})",
                env!("CARGO_PKG_VERSION"),
                $setup.mac
            ))
            .connect_timeout($setup.connect)
            .timeout($setup.total)
            .redirect($redirect)
            .no_proxy()
    };
}

impl Setup {
    /// Everything a client for `server` is built from ([`Http::new`]).
    fn new(
        server: &ServerUrl,
        fetch: &Fetch,
        tls: Option<&TlsConfig>,
        mac: Serial,
    ) -> Result<Setup, FetchError> {
        let Some(tls) = tls else {
            return Err(FetchError::setup(server.as_str(), SetupError::NoTls));
        };
        Ok(Setup {
            server: server.to_string(),
            mac,
            connect: at_least_1s(fetch.connect_timeout),
            total: at_least_1s(fetch.total_timeout),
            tls: TlsConfig::clone(tls),
        })
    }

    /// A client following redirects as `redirect` says. Reqwest's blocking client
    /// starts a runtime thread of its own, which lives as long as the client.
    fn client(&self, redirect: reqwest::redirect::Policy) -> Result<Client, FetchError> {
        #[cfg(test)]
        tests::BLOCKING_CLIENTS.with(|n| n.set(n.get() + 1));
        configured!(Client::builder(), self, redirect)
            .build()
            .map_err(|e| self.failed(&e))
    }

    /// The async client of the same settings: what [`Setup::client`] builds on its
    /// runtime thread, and so fails where it would, built here without that thread.
    fn check(&self, redirect: reqwest::redirect::Policy) -> Result<(), FetchError> {
        configured!(reqwest::Client::builder(), self, redirect)
            .build()
            .map(drop)
            .map_err(|e| self.failed(&e))
    }

    fn failed(&self, e: &reqwest::Error) -> FetchError {
        FetchError::setup(&self.server, SetupError::HttpClient(innermost(e)))
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("username", &self.auth.as_ref().map(|(user, _)| user))
            .field("password", &self.auth.as_ref().map(|_| "<hidden>"))
            .field("total_timeout", &self.total)
            .finish()
    }
}

impl Http {
    /// A client for `server` (`http://` or `https://`) with the authentication and
    /// timeouts of `fetch` over the configuration's TLS client `tls`, announcing `mac` in
    /// its `User-Agent`.
    pub(crate) fn new(
        server: &ServerUrl,
        fetch: &Fetch,
        tls: Option<&TlsConfig>,
        mac: Serial,
    ) -> Result<Http, FetchError> {
        let setup = Setup::new(server, fetch, tls, mac)?;
        let last_hop = LastHop::default();
        let client = setup.client(follow(&last_hop))?;
        let auth = match (&fetch.username, &fetch.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            _ => None,
        };
        Ok(Http {
            client,
            setup,
            put: std::sync::OnceLock::new(),
            auth,
            secrets: Secrets::new([fetch.password.as_deref()]),
            total: at_least_1s(fetch.total_timeout),
            last_hop,
        })
    }

    /// Whether [`Http::new`] would build a client for `server` with these settings,
    /// found without building it: its async core is built and dropped, so no runtime
    /// thread is started (the start check of [`Provisioning::new`](super::Provisioning::new);
    /// a cycle builds its own client).
    pub(crate) fn check(
        server: &ServerUrl,
        fetch: &Fetch,
        tls: Option<&TlsConfig>,
        mac: Serial,
    ) -> Result<(), FetchError> {
        Setup::new(server, fetch, tls, mac)?.check(follow(&LastHop::default()))
    }

    /// `GET url`, whole.
    pub(crate) fn fetch(&self, url: &str) -> FetchOutcome {
        self.last_hop.set(None);
        let mut request = self.client.get(url);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let started = Instant::now();
        let outcome = match request.send() {
            Ok(response) => answer(url, response, started, self.total, &self.secrets),
            Err(e) => {
                let failed = self
                    .last_hop
                    .get()
                    .map_or(url.to_string(), |to| answered_url(url, &to, &self.secrets));
                FetchOutcome::Failed(transport(failed, &e, &self.secrets))
            }
        };
        match outcome {
            FetchOutcome::Failed(e) => FetchOutcome::Failed(self.second_net(e)),
            other => other,
        }
    }

    /// `e` with the password hidden in its detail once more (the server's words in it
    /// went through [`Secrets::words`] already).
    fn second_net(&self, mut e: FetchError) -> FetchError {
        e.detail = self.secrets.hide(&e.detail);
        e
    }
}

impl Http {
    /// `PUT url` with `bytes` (JSON), over the client that follows no redirect: 200, 201
    /// or 204 is done; a 3xx is a [`FailureKind::Redirects`] failure (the report is not
    /// sent on), any other status a failure.
    pub(crate) fn upload(&self, url: &str, bytes: &[u8]) -> Result<(), FetchError> {
        let client = self
            .put
            .get_or_init(|| self.setup.client(reqwest::redirect::Policy::none()))
            .as_ref()
            .map_err(Clone::clone)?;
        let started = Instant::now();
        let mut request = client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes.to_vec());
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let mut response = request
            .send()
            .map_err(|e| self.second_net(transport(url.to_string(), &e, &self.secrets)))?;
        let status = response.status();
        let location = response.headers().get(LOCATION).map(|to| {
            self.secrets
                .words(&String::from_utf8_lossy(to.as_bytes()), SHOWN_CHARS)
        });
        drain_small(&mut response, started, self.total);
        let kind = match status.as_u16() {
            200 | 201 | 204 => return Ok(()),
            405 | 501 => FailureKind::NoUploads,
            _ if status.is_redirection() => {
                // A report goes only where it is configured to go (a 307 or 308 asks for
                // the same body elsewhere): not followed, and said.
                let answered = match location {
                    Some(to) => format!("redirecting the report to {to}"),
                    None => "(a redirect without a Location)".to_string(),
                };
                return Err(self.second_net(FetchError::new(
                    url,
                    FailureKind::Redirects,
                    format!(
                        "the server answered {} {answered}; a report goes only where \
                         configured",
                        status_text(status)
                    ),
                )));
            }
            code => FailureKind::Status(code),
        };
        let detail = format!("{} to PUT", status_text(status));
        Err(FetchError::new(url, kind, detail))
    }
}

fn at_least_1s(secs: Secs) -> Duration {
    Duration::from_secs(secs.0.max(1))
}

/// Turns a response into an outcome, reading the body of a 200.
fn answer(
    asked: &str,
    mut response: Response,
    started: Instant,
    total: Duration,
    secrets: &Secrets,
) -> FetchOutcome {
    let url = answered_url(asked, response.url().as_str(), secrets);
    let head = judge_head(&url, response.status(), response.content_length());
    match head {
        Head::Done(outcome) => {
            drain_small(&mut response, started, total);
            outcome
        }
        Head::Body { expected } => match read_body(&url, &mut response, expected, started, total) {
            Ok(bytes) => FetchOutcome::Body { bytes },
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
/// redirected to (it is the one that refused, and a server chose it: made safe by
/// `secrets`), naming where it came from.
fn answered_url(asked: &str, answered: &str, secrets: &Secrets) -> String {
    if asked == answered {
        asked.to_string()
    } else {
        format!(
            "{} (redirected from {asked})",
            secrets.words(answered, SHOWN_CHARS)
        )
    }
}

/// What the status line and headers of an answer decide, before any of its body.
#[derive(Debug)]
pub(crate) enum Head {
    /// 200: read a body (of `expected` bytes when announced).
    Body { expected: Option<u64> },
    /// Decided without the body.
    Done(FetchOutcome),
}

/// Judges an answer's status and announced length (sans I/O).
pub(crate) fn judge_head(url: &str, status: StatusCode, content_length: Option<u64>) -> Head {
    let failed =
        |kind, detail: String| Head::Done(FetchOutcome::Failed(FetchError::new(url, kind, detail)));
    match status.as_u16() {
        200 => {}
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

/// Reads away a small body announced by its length (an error page, an upload's answer),
/// so that the connection can be used for the next request; anything else is left (the
/// connection is then closed). It stops at the total deadline (`started + total`): a
/// server dripping those bytes (a byte every half second) never holds the fetch or
/// upload beyond its total timeout (found by attack: 200 s for a 400-byte body).
fn drain_small(response: &mut Response, started: Instant, total: Duration) {
    if response.content_length().is_none_or(|len| len > 8 * 1024) {
        return;
    }
    let mut chunk = [0u8; 1024];
    let mut left = 8 * 1024;
    while left > 0 && started.elapsed() <= total {
        match response.read(&mut chunk[..left.min(1024)]) {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n.min(left),
        }
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
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

/// Classifies an error of `send` (before any response). Its text (a TLS error can carry
/// what the server's certificate says) is made safe by `secrets`.
fn transport(url: String, e: &reqwest::Error, secrets: &Secrets) -> FetchError {
    let cause = secrets.words(&innermost(e), SHOWN_CHARS);
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
