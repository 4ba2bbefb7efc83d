//! `ftp://` and `ftps://` servers (RFC 959; `ftps` is explicit TLS, RFC 4217): one
//! control connection per fetch cycle for both files, passive mode (`EPSV`, then `PASV`),
//! binary.
//!
//! - The file asked for is the URL's path without its leading `/`, then the name,
//!   relative to the login folder: `ftp://prov/phones/` asks for
//!   `phones/0004f2abcdef-license.cfg`.
//! - The login is the URL's or `[fetch]`'s user name and password, or `anonymous`.
//! - `ftps`: `AUTH TLS` before the login, then `PBSZ 0` and `PROT P`, so the password and
//!   the files go encrypted, over the configuration's TLS client ([`tls`], the one
//!   HTTPS uses too), which checks the certificate and the host name. The data
//!   connections resume the control connection's TLS session.
//! - A host name is resolved to all its addresses, tried in order until one accepts
//!   the connection; the data connection goes to the address the control connection
//!   reached (the address in a `PASV` reply is never used).
//! - `SIZE` comes first: `550` (no such file) is the 404 rule, a size above [`MAX_BODY`]
//!   is refused before any data, and a transfer shorter than it is a cut one. Every file
//!   is then downloaded whole: a `SIZE` and `MDTM` (to the second) equal to the stored
//!   copy's is no proof that the file is the same (a renewal is the size of the license
//!   it replaces, and may be copied in with its time), so `MDTM` is never asked.
//! - Every wait (connect, each reply, each read of data) ends at the file's deadline,
//!   `fetch.total_timeout` after its fetch began; connecting also within
//!   `fetch.connect_timeout`. A transfer shorter than `SIZE` said, or not confirmed by
//!   `226`, is a cut transfer.
//! - The status report goes up with `STOR` to a temporary name in the same folder
//!   (`.part-<name>`, else `<name>.part`), then `RNFR`/`RNTO` over `<name>`, else in
//!   place; refused overwrites and leftovers are deleted first, the agent's temporary
//!   file never stays ([`Ftp::store`]); its control connection is closed after it.
//! - The password is never shown, even when a server echoes it: every reply and every
//!   error text of the connection goes into a message through
//!   [`Secrets::words`](super::secrets::Secrets::words), which hides it in the server's
//!   words before they are cut and escaped; the whole message is then looked over once
//!   more ([`Secrets::hide`](super::secrets::Secrets::hide)).

pub(crate) mod protocol;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::secrets::Secrets;
use super::{tls, FailureKind, FetchError, FetchOutcome, SetupError, Source, TlsConfig, MAX_BODY};
use crate::config::{Fetch, Scheme, ServerUrl};
use protocol::{Reply, ReplyReader};

/// The most characters of an error's text (TLS, the socket's) shown in a message.
const ERROR_CHARS: usize = 200;

/// The login when the configuration gives none (RFC 1635).
const ANONYMOUS: (&str, &str) = ("anonymous", "license-agent@");

/// An anonymous login: `anonymous`, or `ftp`, which vsftpd, pure-ftpd and proftpd's
/// usual configuration take the same way (RFC 1635), in any case.
fn is_anonymous(user: &str) -> bool {
    user.eq_ignore_ascii_case(ANONYMOUS.0) || user.eq_ignore_ascii_case("ftp")
}

/// An FTP or FTPS server, for one fetch cycle: the control connection is opened by the
/// first fetch and kept for the next.
pub(crate) struct Ftp {
    base: String,
    host: String,
    port: u16,
    /// The URL's path without its leading `/` (empty, or ending with `/`).
    folder: String,
    user: String,
    password: String,
    /// The configured password, never shown (the anonymous one is no secret).
    secrets: Secrets,
    /// `ftps`: the TLS client and the name the certificate must carry.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    connect_timeout: Duration,
    total_timeout: Duration,
    session: RefCell<Option<Session>>,
}

impl fmt::Debug for Ftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ftp")
            .field("base", &self.base)
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What one `STOR` gave.
enum Put {
    Stored,
    /// Refused for good (5xx) before the data, in words.
    Refused(String),
    /// Refused for good after the data (a filter, a quota), in words.
    RefusedAfterData(String),
}

/// What a rename gave: done, or which half was refused (in words).
enum Renamed {
    Done,
    /// `RNFR`: no renames here.
    FromRefused(String),
    /// `RNTO`: the target may be in the way (an overwrite refused).
    ToRefused(String),
}

/// Why a step stopped the fetch of a file.
enum Stop {
    /// The server says there is no such file (550): its words.
    Absent(String),
    Failed(FailureKind, String),
}

type Step<T> = Result<T, Stop>;

impl Ftp {
    /// The server of `base` (`ftp://` or `ftps://`, credentials taken out) with the login
    /// and timeouts of `fetch`, and for `ftps` the configuration's TLS client `tls`.
    pub(crate) fn new(
        base: &ServerUrl,
        fetch: &Fetch,
        tls: Option<&TlsConfig>,
    ) -> Result<Ftp, FetchError> {
        let setup = |why: SetupError| FetchError::setup(base.as_str(), why);
        let tls = match (base.scheme(), tls) {
            (Scheme::Ftps, Some(config)) => {
                let name = tls::server_name(base.host()).map_err(|e| setup(e.into()))?;
                Some((Arc::clone(config), name))
            }
            (Scheme::Ftps, None) => return Err(setup(SetupError::NoTls)),
            _ => None,
        };
        let (user, password) = match (&fetch.username, &fetch.password) {
            (Some(user), Some(password)) => (user.clone(), password.clone()),
            _ => (ANONYMOUS.0.to_string(), ANONYMOUS.1.to_string()),
        };
        Ok(Ftp {
            base: base.to_string(),
            host: base.host().to_string(),
            port: base.port(),
            folder: base.path().trim_start_matches('/').to_string(),
            user,
            password,
            secrets: Secrets::new([fetch.password.as_deref()]),
            tls,
            connect_timeout: Duration::from_secs(fetch.connect_timeout.0.max(1)),
            total_timeout: Duration::from_secs(fetch.total_timeout.0.max(1)),
            session: RefCell::new(None),
        })
    }
}

impl Source for Ftp {
    fn fetch(&self, name: &str) -> FetchOutcome {
        let url = format!("{}{}", self.base, name);
        let path = format!("{}{}", self.folder, name);
        let deadline = Instant::now() + self.total_timeout;
        let mut slot = self.session.borrow_mut();
        let kept = slot.as_ref().map(|s| s.replies);
        let mut result = self.fetch_on(&mut slot, &path, deadline);
        // A kept control connection that the server closed while it waited (before any
        // reply about this file): once more, afresh. A cut later is a cut.
        if matches!(result, Err(Stop::Failed(FailureKind::Cut, _)))
            && kept.is_some()
            && slot.as_ref().map(|s| s.replies) == kept
        {
            *slot = None;
            result = self.fetch_on(&mut slot, &path, deadline);
        }
        // The server's words are safe already (`Secrets::words`); a second net.
        let hide = |text: String| self.secrets.hide(&text);
        match result {
            Ok(outcome) => outcome,
            Err(Stop::Absent(answer)) => FetchOutcome::Absent {
                answer: hide(answer),
            },
            Err(Stop::Failed(kind, detail)) => {
                // Whatever state the connection is in, it is not used again.
                *slot = None;
                FetchOutcome::Failed(FetchError::new(url, kind, hide(detail)))
            }
        }
    }
}

impl Ftp {
    fn fetch_on(
        &self,
        slot: &mut Option<Session>,
        path: &str,
        deadline: Instant,
    ) -> Step<FetchOutcome> {
        let session = match slot {
            Some(session) => session,
            None => slot.insert(self.open(deadline)?),
        };
        session.set_deadline(deadline);
        self.retrieve(session, path, deadline)
    }

    /// Connects to the first address that accepts, greets, secures and logs in.
    fn open(&self, deadline: Instant) -> Step<Session> {
        let addresses = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| {
                Stop::Failed(
                    FailureKind::Connect,
                    format!("cannot resolve {}: {e}", self.host),
                )
            })?;
        let mut tried = Vec::new();
        let mut timed_out = true;
        for address in addresses {
            let wait = match left(deadline) {
                Some(left) => left.min(self.connect_timeout),
                None => break,
            };
            match TcpStream::connect_timeout(&address, wait) {
                Ok(tcp) => return self.login(tcp, address, deadline),
                Err(e) => {
                    timed_out &= matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    );
                    tried.push(format!("{address} ({e})"));
                }
            }
        }
        if tried.is_empty() {
            return Err(Stop::Failed(
                FailureKind::Connect,
                format!("{} has no address", self.host),
            ));
        }
        let kind = if timed_out {
            FailureKind::Timeout
        } else {
            FailureKind::Connect
        };
        Err(Stop::Failed(
            kind,
            format!("cannot connect to {}", tried.join(", ")),
        ))
    }

    fn login(&self, tcp: TcpStream, address: SocketAddr, deadline: Instant) -> Step<Session> {
        let _ = tcp.set_nodelay(true);
        let mut session = Session {
            control: Stream::Plain(Timed { tcp, deadline }),
            reader: ReplyReader::default(),
            pending: Vec::new(),
            peer: address.ip(),
            epsv: true,
            replies: 0,
            secrets: self.secrets.clone(),
        };
        let mut hello = session.reply()?;
        // 120: "ready in a moment"; the 220 follows (within the deadline).
        while hello.code == 120 {
            hello = session.reply()?;
        }
        if hello.code != 220 {
            return Err(refused(format!(
                "{address} greets with {}",
                hello.shown(&self.secrets)
            )));
        }
        if let Some((config, name)) = &self.tls {
            let auth = session.command("AUTH", Some("TLS"))?;
            if auth.code != 234 {
                return Err(Stop::Failed(
                    FailureKind::Tls,
                    format!(
                        "{address} answers AUTH TLS with {}: it does not offer explicit TLS",
                        auth.shown(&self.secrets)
                    ),
                ));
            }
            session.secure(config, name)?;
            for (verb, arg) in [("PBSZ", "0"), ("PROT", "P")] {
                let reply = session.command(verb, Some(arg))?;
                if !reply.completed() {
                    return Err(refused(format!(
                        "{verb} {arg}: {}",
                        reply.shown(&self.secrets)
                    )));
                }
            }
        }
        let user = session.command("USER", Some(&self.user))?;
        let refusal = match user.code {
            230 => None,
            331 | 332 => {
                let pass = session.command("PASS", Some(&self.password))?;
                (!matches!(pass.code, 230 | 202)).then_some(pass)
            }
            _ => Some(user),
        };
        if let Some(reply) = refusal {
            return Err(refused(format!(
                "the login as {:?} was refused: {}",
                self.user,
                reply.shown(&self.secrets)
            )));
        }
        let binary = session.command("TYPE", Some("I"))?;
        if !binary.completed() {
            return Err(refused(format!("TYPE I: {}", binary.shown(&self.secrets))));
        }
        Ok(session)
    }

    /// `SIZE`, then the download.
    fn retrieve(&self, session: &mut Session, path: &str, deadline: Instant) -> Step<FetchOutcome> {
        let absent = |r: &Reply| Stop::Absent(format!("FTP {}", r.shown(&self.secrets)));
        // A SIZE answer that cannot be read is no answer: the file is downloaded, capped
        // while streaming.
        let size = match session.command("SIZE", Some(path))? {
            r if r.code == 213 => protocol::size(&r.text).ok(),
            r if r.code == 550 => return Err(absent(&r)),
            _ => None,
        };
        if let Some(size) = size.filter(|&s| s > MAX_BODY as u64) {
            return Err(Stop::Failed(
                FailureKind::TooBig,
                format!(
                    "the server says {size} bytes (SIZE); a license file is at most \
                     {MAX_BODY}: not downloaded"
                ),
            ));
        }
        let tcp = self.data_connection(session, deadline)?;
        let start = session.command("RETR", Some(path))?;
        match start.code {
            125 | 150 => {}
            550 => return Err(absent(&start)),
            _ => return Err(refused(format!("RETR: {}", start.shown(&self.secrets)))),
        }
        let mut data = self.data_stream(tcp, deadline)?;
        let bytes = read_capped(&mut data, &self.secrets)?;
        drop(data);
        let done = session.reply()?;
        if !done.completed() {
            return Err(Stop::Failed(
                FailureKind::Cut,
                format!("the transfer ended with {}", done.shown(&self.secrets)),
            ));
        }
        if let Some(size) = size.filter(|&s| s != bytes.len() as u64) {
            return Err(Stop::Failed(
                FailureKind::Cut,
                format!("{} bytes came where SIZE announced {size}", bytes.len()),
            ));
        }
        Ok(FetchOutcome::Body { bytes })
    }
}

impl Ftp {
    /// Stores `bytes` as the URL's folder + `name` ([`Ftp::store`]); on success, what was
    /// tried beside the plain way, in words (for `status`).
    pub(crate) fn upload(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, FetchError> {
        let url = format!("{}{}", self.base, name);
        let deadline = Instant::now() + self.total_timeout;
        let mut slot = self.session.borrow_mut();
        let result = (|| {
            let session = match &mut *slot {
                Some(session) => session,
                None => slot.insert(self.open(deadline)?),
            };
            session.set_deadline(deadline);
            self.store(session, name, bytes, deadline)
        })();
        *slot = None;
        result
            .map(|tried| (!tried.is_empty()).then(|| self.secrets.hide(&tried.join("; "))))
            .map_err(|stop| {
                let (kind, detail) = match stop {
                    Stop::Absent(answer) => (FailureKind::Refused, answer),
                    Stop::Failed(kind, detail) => (kind, detail),
                };
                // The server's words are safe already (`Secrets::words`); a second net.
                FetchError::new(url, kind, self.secrets.hide(&detail))
            })
    }

    /// The upload itself: the steps that did not go the plain way, in words, or why it
    /// failed. A reader of the folder never sees half a report, and nothing of the
    /// agent's is left behind:
    ///
    /// 1. `STOR` to a temporary name, `.part-<name>`, else (a server refusing names that
    ///    begin with a dot: pure-ftpd `-x`) `<name>.part`; then `RNFR`/`RNTO` over the
    ///    name. A refused `RNTO` (a server that forbids overwriting: proftpd
    ///    `AllowOverwrite off`) deletes the previous report and renames again. Where
    ///    renames fail, the report is written under its own name, and the temporary
    ///    file deleted (kept only if it holds the only report the server has left).
    /// 2. `STOR` to the name itself (a server that takes files but no renames; at
    ///    once for an anonymous login, which may create files but, on pure-ftpd and
    ///    with vsftpd's defaults, not rename or delete them).
    ///
    /// A temporary name refused for good (5xx) is tried once more after a `DELE` of it
    /// that succeeds (a temporary file a cut upload left in the way); the report's own
    /// name is deleted only once a new report is whole on the server (under a
    /// temporary name), never before: a full server keeps the one it holds. A 5xx after
    /// the data is a refusal of that name too, and what the server kept of it is
    /// deleted. The server "takes no uploads"
    /// ([`FailureKind::NoUploads`]) only when it took no `STOR` at all and holds no
    /// report of that name (`SIZE`: one it took before, and may take again); a transient
    /// refusal (4xx) or a broken transfer stops the upload, tried again later.
    fn store(
        &self,
        session: &mut Session,
        name: &str,
        bytes: &[u8],
        deadline: Instant,
    ) -> Step<Vec<String>> {
        let path = format!("{}{}", self.folder, name);
        let mut tried = Vec::new();
        // An anonymous login writes in place: anonymous FTP may create files but not
        // rename or delete them (pure-ftpd; vsftpd's defaults), so a temporary file
        // could never be taken away.
        let temps = if is_anonymous(&self.user) {
            tried.push("anonymous: no temporary name".to_string());
            Vec::new()
        } else {
            vec![format!(".part-{name}"), format!("{name}.part")]
        };
        for temp in temps {
            let temp = format!("{}{temp}", self.folder);
            if !self.put(session, &temp, bytes, deadline, &mut tried, true)? {
                continue;
            }
            // Whether the previous report was deleted to make way (then `temp` may hold
            // the only report the server has).
            let mut old_deleted = false;
            let renamed = match self.rename(session, &temp, &path)? {
                Renamed::Done => true,
                Renamed::FromRefused(why) => {
                    tried.push(why);
                    false
                }
                Renamed::ToRefused(why) => {
                    tried.push(why);
                    // An overwrite refused: the previous report out of the way (the new
                    // one is whole under `temp`), and the rename once more.
                    let dele = session.command("DELE", Some(&path))?;
                    if !dele.completed() {
                        tried.push(format!("DELE {path}: {}", dele.shown(&self.secrets)));
                        false
                    } else if let Renamed::Done = self.rename(session, &temp, &path)? {
                        tried.push(format!("{path} deleted, then renamed over it"));
                        true
                    } else {
                        old_deleted = true;
                        tried.push(format!("{path} deleted, and the rename refused again"));
                        false
                    }
                }
            };
            if !renamed {
                // Renames do not work here: the name itself, then no temporary file stays
                // (unless it holds the only report left: a report is never lost).
                let stored = self.put(session, &path, bytes, deadline, &mut tried, false)?;
                if stored || !old_deleted {
                    tried.push(self.remove(session, &temp)?);
                } else {
                    tried.push(format!("{temp} kept: the only report on the server"));
                }
                if stored {
                    tried.push(format!("written in place as {path}"));
                    return Ok(tried);
                }
                return Err(Stop::Failed(FailureKind::Refused, tried.join("; ")));
            }
            if !tried.is_empty() {
                tried.push(format!("written as {temp} and renamed"));
            }
            return Ok(tried);
        }
        if self.put(session, &path, bytes, deadline, &mut tried, false)? {
            tried.push(format!("written in place as {path}"));
            return Ok(tried);
        }
        // No STOR taken: the server takes no uploads, unless a report of this name is
        // there already: it took one before (a full disk or quota, or it replaces no
        // file: anonymous pure-ftpd), and may again.
        let kind = if session.command("SIZE", Some(&path))?.code == 213 {
            tried.push(format!(
                "{path} is there: the server took a report before, and refuses this one"
            ));
            FailureKind::Refused
        } else {
            FailureKind::NoUploads
        };
        Err(Stop::Failed(kind, tried.join("; ")))
    }

    /// `STOR path` with `bytes`: whether it was stored; what went otherwise is added to
    /// `tried`. A temporary name (`leftover`) refused for good (5xx) before its data is
    /// tried once more after a `DELE` that succeeds (a temporary file a cut upload left
    /// in the way). The report's own name is never deleted before a new report is whole
    /// on the server: a full server would lose the one it holds.
    fn put(
        &self,
        session: &mut Session,
        path: &str,
        bytes: &[u8],
        deadline: Instant,
        tried: &mut Vec<String>,
        leftover: bool,
    ) -> Step<bool> {
        let why = match self.put_once(session, path, bytes, deadline)? {
            Put::Stored => return Ok(true),
            Put::RefusedAfterData(why) => {
                tried.push(why);
                return Ok(false);
            }
            Put::Refused(why) => why,
        };
        tried.push(why);
        if !leftover || !session.command("DELE", Some(path))?.completed() {
            return Ok(false);
        }
        tried.push(format!("{path} deleted"));
        match self.put_once(session, path, bytes, deadline)? {
            Put::Stored => Ok(true),
            Put::Refused(again) | Put::RefusedAfterData(again) => {
                tried.push(again);
                Ok(false)
            }
        }
    }

    /// One `STOR path`. A transient refusal (4xx) or a broken transfer ends the upload
    /// (an error); a refusal for good (5xx), before the data or after it (a filter, a
    /// quota), is a refusal of this name.
    fn put_once(
        &self,
        session: &mut Session,
        path: &str,
        bytes: &[u8],
        deadline: Instant,
    ) -> Step<Put> {
        let tcp = self.data_connection(session, deadline)?;
        let start = session.command("STOR", Some(path))?;
        match start.code {
            125 | 150 => {}
            500..=599 => {
                return Ok(Put::Refused(format!(
                    "STOR {path}: {}",
                    start.shown(&self.secrets)
                )))
            }
            _ => {
                return Err(refused(format!(
                    "STOR {path}: {}",
                    start.shown(&self.secrets)
                )))
            }
        }
        // From here the server may hold part of the file: said if the upload stops.
        let left = |stop: Stop| match stop {
            Stop::Failed(kind, detail) => Stop::Failed(
                kind,
                format!("{detail} ({path} may stay on the server until the next upload)"),
            ),
            other => other,
        };
        let mut data = self.data_stream(tcp, deadline).map_err(left)?;
        data.write_all(bytes)
            .and_then(|()| data.flush())
            .map_err(|e| left(io_stop(e, "sending the file", &self.secrets)))?;
        data.close();
        drop(data);
        let done = session.reply().map_err(left)?;
        if done.completed() {
            return Ok(Put::Stored);
        }
        // Whatever part of it the server kept is not left there.
        let dele = session.command("DELE", Some(path)).map_err(left)?;
        let kept = if dele.completed() {
            String::new()
        } else {
            format!("; DELE {path}: {} (left behind)", dele.shown(&self.secrets))
        };
        if (500..600).contains(&done.code) {
            return Ok(Put::RefusedAfterData(format!(
                "STOR {path}: {} after the data{kept}",
                done.shown(&self.secrets)
            )));
        }
        Err(Stop::Failed(
            FailureKind::Cut,
            format!("the upload ended with {}{kept}", done.shown(&self.secrets)),
        ))
    }

    /// `RNFR from`, `RNTO to`.
    fn rename(&self, session: &mut Session, from: &str, to: &str) -> Step<Renamed> {
        let reply = session.command("RNFR", Some(from))?;
        if reply.code != 350 {
            let why = format!("RNFR {from}: {}", reply.shown(&self.secrets));
            return Ok(Renamed::FromRefused(why));
        }
        let reply = session.command("RNTO", Some(to))?;
        Ok(if reply.completed() {
            Renamed::Done
        } else {
            Renamed::ToRefused(format!("RNTO {to}: {}", reply.shown(&self.secrets)))
        })
    }

    /// `DELE path` of the agent's own temporary file, said either way.
    fn remove(&self, session: &mut Session, path: &str) -> Step<String> {
        let reply = session.command("DELE", Some(path))?;
        Ok(if reply.completed() {
            format!("{path} deleted")
        } else {
            format!("DELE {path}: {} (left behind)", reply.shown(&self.secrets))
        })
    }

    /// A passive data connection (`EPSV`, else `PASV`) to the control connection's peer.
    fn data_connection(&self, session: &mut Session, deadline: Instant) -> Step<TcpStream> {
        let port = session.passive()?;
        let to = SocketAddr::new(session.peer, port);
        let wait = left(deadline)
            .ok_or_else(|| timeout("before the data connection"))?
            .min(self.connect_timeout);
        TcpStream::connect_timeout(&to, wait).map_err(|e| {
            let kind = match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FailureKind::Timeout,
                _ => FailureKind::Connect,
            };
            Stop::Failed(kind, format!("the data connection to {to}: {e}"))
        })
    }

    /// The data connection as a stream, over TLS for `ftps` (after the command that
    /// opened the transfer).
    fn data_stream(&self, tcp: TcpStream, deadline: Instant) -> Step<Stream> {
        let data = Stream::Plain(Timed { tcp, deadline });
        match &self.tls {
            Some((config, name)) => data.secure(config, name, &self.secrets),
            None => Ok(data),
        }
    }
}

/// The control connection, logged in.
struct Session {
    control: Stream,
    reader: ReplyReader,
    /// Bytes read and not yet taken by a reply.
    pending: Vec<u8>,
    /// Where the control connection goes, and so the data connections.
    peer: IpAddr,
    /// Whether to ask `EPSV` (until the server refuses it once).
    epsv: bool,
    /// Replies read so far.
    replies: u64,
    /// What never shows in a message (the server's words go through it).
    secrets: Secrets,
}

impl Session {
    fn set_deadline(&mut self, deadline: Instant) {
        if let Some(timed) = self.control.timed() {
            timed.deadline = deadline;
        }
    }

    fn command(&mut self, verb: &str, arg: Option<&str>) -> Step<Reply> {
        let line = protocol::command(verb, arg).map_err(|e| Stop::Failed(FailureKind::Setup, e))?;
        self.control
            .write_all(line.as_bytes())
            .and_then(|()| self.control.flush())
            .map_err(|e| io_stop(e, &format!("sending {verb}"), &self.secrets))?;
        self.reply()
    }

    fn reply(&mut self) -> Step<Reply> {
        let mut buffer = [0u8; 2048];
        loop {
            if !self.pending.is_empty() {
                let (used, reply) = self
                    .reader
                    .push(&self.pending)
                    .map_err(|broken| protocol_error(broken.shown(&self.secrets)))?;
                self.pending.drain(..used);
                if let Some(reply) = reply {
                    if reply.code == 421 {
                        // "Service not available, closing control connection", also sent
                        // unasked (vsftpd's idle timeout): the session is over, and this
                        // is no answer to what was asked.
                        return Err(Stop::Failed(
                            FailureKind::Cut,
                            format!(
                                "the server ends the session: {}",
                                reply.shown(&self.secrets)
                            ),
                        ));
                    }
                    self.replies += 1;
                    return Ok(reply);
                }
            }
            match self.control.read(&mut buffer) {
                Ok(0) => {
                    return Err(Stop::Failed(
                        FailureKind::Cut,
                        "the server closed the control connection".into(),
                    ))
                }
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_stop(e, "waiting for the server's reply", &self.secrets)),
            }
        }
    }

    /// After `234`: the rest of the control connection goes over TLS.
    fn secure(&mut self, config: &Arc<ClientConfig>, name: &ServerName<'static>) -> Step<()> {
        if !self.pending.is_empty() {
            // Bytes sent before the handshake would be read as if they came over TLS.
            return Err(protocol_error(
                "the server sent more after 234, before TLS began".into(),
            ));
        }
        let plain = std::mem::replace(&mut self.control, Stream::Closed);
        self.control = plain.secure(config, name, &self.secrets)?;
        Ok(())
    }

    /// The data port: `EPSV`, or `PASV` once a server refused `EPSV`.
    fn passive(&mut self) -> Step<u16> {
        if self.epsv {
            let reply = self.command("EPSV", None)?;
            if let Some(port) = (reply.code == 229)
                .then(|| protocol::epsv_port(&reply.text).ok())
                .flatten()
            {
                return Ok(port);
            }
            // Refused, or an answer that cannot be read: PASV from now on.
            self.epsv = false;
        }
        let reply = self.command("PASV", None)?;
        if reply.code != 227 {
            return Err(refused(format!(
                "neither EPSV nor PASV: PASV answered {}",
                reply.shown(&self.secrets)
            )));
        }
        protocol::pasv_port(&reply.text)
            .map_err(|e| protocol_error(format!("{e}: {}", reply.shown(&self.secrets))))
    }
}

impl Drop for Session {
    /// `QUIT`, within a second, without waiting for the answer.
    fn drop(&mut self) {
        if matches!(self.control, Stream::Closed) {
            return;
        }
        let now = Instant::now();
        self.set_deadline(now + Duration::from_secs(1));
        let _ = self
            .control
            .write_all(b"QUIT\r\n")
            .and_then(|()| self.control.flush());
    }
}

/// A TCP connection whose every read and write ends at `deadline`.
struct Timed {
    tcp: TcpStream,
    deadline: Instant,
}

impl Timed {
    fn left(&self) -> io::Result<Duration> {
        left(self.deadline)
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "the total timeout passed"))
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.tcp.set_write_timeout(Some(left))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A control or data connection, plain or over TLS.
enum Stream {
    Plain(Timed),
    Tls(Box<StreamOwned<ClientConnection, Timed>>),
    /// Taken apart (while being secured).
    Closed,
}

impl Stream {
    fn timed(&mut self) -> Option<&mut Timed> {
        match self {
            Stream::Plain(timed) => Some(timed),
            Stream::Tls(tls) => Some(&mut tls.sock),
            Stream::Closed => None,
        }
    }

    /// The TLS handshake over this connection (its errors, which can carry the server's
    /// words, made safe by `secrets`).
    fn secure(
        self,
        config: &Arc<ClientConfig>,
        name: &ServerName<'static>,
        secrets: &Secrets,
    ) -> Step<Stream> {
        let Stream::Plain(timed) = self else {
            return Err(protocol_error("TLS asked twice on one connection".into()));
        };
        let connection = ClientConnection::new(config.clone(), name.clone()).map_err(|e| {
            Stop::Failed(
                FailureKind::Tls,
                format!(
                    "cannot start TLS: {}",
                    secrets.words(&e.to_string(), ERROR_CHARS)
                ),
            )
        })?;
        let mut tls = StreamOwned::new(connection, timed);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                let kind = match e.kind() {
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FailureKind::Timeout,
                    _ => FailureKind::Tls,
                };
                return Err(Stop::Failed(
                    kind,
                    format!(
                        "TLS handshake: {}",
                        secrets.words(&e.to_string(), ERROR_CHARS)
                    ),
                ));
            }
        }
        Ok(Stream::Tls(Box::new(tls)))
    }
}

impl Stream {
    /// Ends a data connection that was written: TLS's `close_notify` first (a server
    /// must tell a whole upload from a cut one), then the TCP half-close.
    fn close(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
        if let Some(timed) = self.timed() {
            let _ = timed.tcp.shutdown(std::net::Shutdown::Write);
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(timed) => timed.read(buf),
            Stream::Tls(tls) => tls.read(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(timed) => timed.write(buf),
            Stream::Tls(tls) => tls.write(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(timed) => timed.flush(),
            Stream::Tls(tls) => tls.flush(),
            Stream::Closed => Ok(()),
        }
    }
}

/// The data connection's bytes until the server closes it, at most [`MAX_BODY`]. (A TLS
/// peer that closes without `close_notify` has ended too: `226` and `SIZE` judge
/// whether the file came whole.)
fn read_capped(data: &mut Stream, secrets: &Secrets) -> Step<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match data.read(&mut buffer) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                if bytes.len() + n > MAX_BODY {
                    return Err(Stop::Failed(
                        FailureKind::TooBig,
                        format!(
                            "more than {MAX_BODY} bytes (a license file is at most \
                             {MAX_BODY}): abandoned"
                        ),
                    ));
                }
                bytes.extend_from_slice(&buffer[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(bytes),
            Err(e) => {
                return Err(io_stop(
                    e,
                    &format!("the data connection, after {} bytes", bytes.len()),
                    secrets,
                ))
            }
        }
    }
}

/// The time left before `deadline`, if any (at least 1 ms: a zero timeout would mean
/// "wait for ever" to the socket).
fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

fn refused(detail: String) -> Stop {
    Stop::Failed(FailureKind::Refused, detail)
}

fn timeout(when: &str) -> Stop {
    Stop::Failed(
        FailureKind::Timeout,
        format!("the total timeout passed {when}"),
    )
}

fn protocol_error(detail: String) -> Stop {
    Stop::Failed(FailureKind::Protocol, detail)
}

/// An I/O error while `doing`, by kind: a timeout, a cut connection, TLS, or other. Its
/// text (rustls's, which can carry the server's words) is made safe by `secrets`.
fn io_stop(e: io::Error, doing: &str, secrets: &Secrets) -> Stop {
    let kind = match e.kind() {
        // The socket's timeout says "resource temporarily unavailable": say what it is.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            return Stop::Failed(
                FailureKind::Timeout,
                format!("{doing}: nothing within the total timeout"),
            )
        }
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => FailureKind::Cut,
        // rustls says what went wrong in TLS as invalid data.
        io::ErrorKind::InvalidData => FailureKind::Tls,
        _ => FailureKind::Io,
    };
    Stop::Failed(
        kind,
        format!("{doing}: {}", secrets.words(&e.to_string(), ERROR_CHARS)),
    )
}
