//! `tftp://host[:port]/path/` servers: the read of [`protocol`] driven over a UDP socket.
//!
//! The file asked for is the URL's path without its leading `/`, then the name:
//! `tftp://prov/phones/` asks for `phones/0004f2abcdef-license.cfg`, `tftp://prov/` for
//! `0004f2abcdef-license.cfg` (servers such as tftpd-hpa in `--secure` mode read it in
//! their root folder).
//!
//! A host name is resolved to all its addresses, tried in order: one that gives no
//! answer at all within `fetch.connect_timeout` is passed over for the next. Any
//! answer, "file not found" included, is the server's. The transfer of one file may take
//! `fetch.total_timeout`; every wait is bounded by the protocol's next timer, so a
//! silent server, a trickle of strangers' datagrams or a flood cannot hold it.
//!
//! Like every transport, an unchanged file is downloaded whole every time (a few
//! kilobytes), and judged identical to the license held.

pub(crate) mod protocol;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::{FailureKind, FetchError, FetchOutcome, Source, MAX_BODY};
use crate::config::{Fetch, ServerUrl};
use protocol::{Failure, Read, Timing, MAX_DATAGRAM};

/// The first retransmission interval (and the `timeout` option asked of the server).
const FIRST_INTERVAL: Duration = Duration::from_secs(1);

/// A TFTP server, for one fetch cycle.
#[derive(Debug)]
pub(crate) struct Tftp {
    base: String,
    host: String,
    port: u16,
    /// The URL's path without its leading `/` (empty, or ending with `/`).
    folder: String,
    timing: Timing,
}

impl Tftp {
    /// The server of `base` (a `tftp://` URL; the host, port and path are taken from
    /// it whatever its scheme).
    pub(crate) fn new(base: &ServerUrl, fetch: &Fetch) -> Tftp {
        Tftp {
            base: base.to_string(),
            host: base.host().to_string(),
            port: base.port(),
            folder: base.path().trim_start_matches('/').to_string(),
            timing: Timing {
                interval: FIRST_INTERVAL,
                answer: Duration::from_secs(fetch.connect_timeout.0.max(1)),
                total: Duration::from_secs(fetch.total_timeout.0.max(1)),
            },
        }
    }
}

impl Source for Tftp {
    fn fetch(&self, name: &str) -> FetchOutcome {
        let url = format!("{}{}", self.base, name);
        let file = format!("{}{}", self.folder, name);
        match (self.host.as_str(), self.port).to_socket_addrs() {
            Ok(found) => self.fetch_from(&url, &file, found.collect()),
            Err(e) => FetchOutcome::Failed(FetchError::new(
                &url,
                FailureKind::Connect,
                format!("cannot resolve {}: {e}", self.host),
            )),
        }
    }
}

impl Tftp {
    /// Reads `file` from the first of `addresses` that answers.
    fn fetch_from(&self, url: &str, file: &str, addresses: Vec<SocketAddr>) -> FetchOutcome {
        let failed =
            |kind, detail: String| FetchOutcome::Failed(FetchError::new(url, kind, detail));
        let mut unanswered = Vec::new();
        for server in addresses {
            let result = match read(server, file, self.timing) {
                Ok(result) => result,
                Err(e) => {
                    unanswered.push(format!("{server} ({e})"));
                    continue;
                }
            };
            return match result {
                Ok(bytes) => FetchOutcome::Body { bytes },
                Err(Failure::NotFound(message)) => FetchOutcome::Absent {
                    answer: format!("TFTP error 1 ({message}) from {server}"),
                },
                Err(Failure::NoAnswer { sends, waited }) => {
                    let s = if sends == 1 { "" } else { "s" };
                    unanswered.push(format!(
                        "{server} ({sends} request{s} in {}s)",
                        waited.as_secs()
                    ));
                    continue;
                }
                Err(failure) => FetchOutcome::Failed(failure_error(url, server, failure)),
            };
        }
        if unanswered.is_empty() {
            return failed(
                FailureKind::Connect,
                format!("{} has no address", self.host),
            );
        }
        failed(
            FailureKind::Timeout,
            format!("no answer from {}", unanswered.join(", ")),
        )
    }
}

/// A failure of the read from `server`, for people.
fn failure_error(url: &str, server: SocketAddr, failure: Failure) -> FetchError {
    let (kind, detail) = match failure {
        Failure::Timeout { received, waited } => (
            FailureKind::Timeout,
            format!(
                "{server} stopped sending after {received} bytes: the total timeout of {}s passed",
                waited.as_secs()
            ),
        ),
        Failure::Flood {
            duplicates,
            received,
            waited,
        } => (
            FailureKind::Timeout,
            format!(
                "{server} flooded {duplicates} duplicate DATA blocks without progress after \
                 {received} bytes: the total timeout of {}s passed",
                waited.as_secs()
            ),
        ),
        Failure::Error { code, message } => (
            FailureKind::Refused,
            format!("{server} answered TFTP error {code}: {message}"),
        ),
        Failure::TooBig {
            announced: Some(size),
        } => (
            FailureKind::TooBig,
            format!(
                "{server} announces {size} bytes (tsize); a license file is at most \
                 {MAX_BODY}: not downloaded"
            ),
        ),
        Failure::TooBig { announced: None } => (
            FailureKind::TooBig,
            format!("more than {MAX_BODY} bytes from {server}: abandoned"),
        ),
        Failure::Short {
            received,
            announced,
        } => (
            FailureKind::Cut,
            format!("{server} ended the file after {received} of the {announced} bytes announced"),
        ),
        Failure::Protocol(why) => (FailureKind::Protocol, format!("{server}: {why}")),
        // Handled by the caller; kept total.
        Failure::NotFound(message) => (FailureKind::Io, message),
        Failure::NoAnswer { sends, .. } => (
            FailureKind::Timeout,
            format!("no answer from {server} to {sends} requests"),
        ),
    };
    FetchError::new(url, kind, detail)
}

/// Reads `file` from `server` on a socket of its own.
fn read(server: SocketAddr, file: &str, timing: Timing) -> io::Result<Result<Vec<u8>, Failure>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    let mut transfer = Read::new(file, server, timing, Instant::now());
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        while let Some(packet) = transfer.poll_transmit() {
            if let Err(e) = socket.send_to(&packet.bytes, packet.to) {
                // A lost datagram is the protocol's to repair; a socket that cannot send
                // at all ends the read.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                ) {
                    return Err(e);
                }
            }
        }
        if let Some(result) = transfer.take_outcome() {
            return Ok(result);
        }
        let Some(wake) = transfer.wake_at() else {
            return Err(io::Error::other("the transfer ended without a result"));
        };
        let now = Instant::now();
        if wake <= now {
            transfer.on_timer(now);
            continue;
        }
        // At least 1 ms: a zero timeout would mean "wait for ever".
        socket.set_read_timeout(Some((wake - now).max(Duration::from_millis(1))))?;
        match socket.recv_from(&mut buffer) {
            Ok((len, from)) => transfer.on_datagram(from, &buffer[..len], Instant::now()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                transfer.on_timer(Instant::now())
            }
            Err(e) => return Err(e),
        }
    }
}
