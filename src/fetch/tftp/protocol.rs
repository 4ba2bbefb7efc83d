//! A TFTP read (RFC 1350, with the options of RFC 2347, 2348 and 2349) as a state
//! machine fed datagrams and time: no socket, no clock, so every loss, duplicate, late
//! packet and stranger is tested without a network, and the driver (`super`) is a plain
//! loop around it.
//!
//! The exchange: a read request (RRQ, `octet` mode) asking `blksize`, `timeout` and
//! `tsize` goes to the server's port; the server answers from a port of its own, the
//! transfer ID (TID), with an option acknowledgement (OACK, then ACK 0) or straight with
//! DATA block 1 (it ignored the options: blocks of 512). Each DATA block is
//! acknowledged; a block shorter than the block size ends the file.
//!
//! - **Options refused**: an ERROR 8 (or 0 or 4, which old servers send for a request
//!   they do not parse) to a request with options makes the read start again once,
//!   without options (RFC 2347).
//! - **Size**: the `tsize` of an OACK above [`MAX_BODY`] is refused before any data
//!   (ERROR 8 to the server); the blocks are counted, and one byte more than the bound
//!   ends the transfer (ERROR 3).
//! - **Retransmission**: the last packet sent (the request, or the last ACK) is sent
//!   again when nothing new came within the interval, which doubles from the first up to
//!   [`MAX_INTERVAL`]; the transfer fails at its total deadline, and a request that got
//!   no answer at all within the answer time fails as [`Failure::NoAnswer`] (the driver
//!   then tries the server's next address).
//! - **Duplicates and reordering**: a DATA block other than the next one is ignored: no
//!   ACK is sent for it. Every packet the client sends answers a new block or is a timer's
//!   retransmission, so duplicates in the network are never multiplied (the Sorcerer's
//!   Apprentice needs one side that answers a duplicate at once); an ACK that was lost
//!   is sent again by the timer. The ignored blocks since the last new one are counted:
//!   a transfer that reaches its total deadline having had [`FLOOD`] or more of them and
//!   nothing new is a [`Failure::Flood`] (the server kept sending, only never the next
//!   block), not a [`Failure::Timeout`] (it stopped sending). Either way it ends at the
//!   same deadline: no datagram moves a timer.
//! - **Strangers**: the first answer must come from the server's address (any port: that
//!   port is the TID); later packets from the same host but another port get ERROR 5
//!   ("unknown transfer ID", RFC 1350) and change nothing, which also ends a second
//!   transfer that a retransmitted request may have started. Packets from other hosts
//!   are ignored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::MAX_BODY;

/// The block size asked for: a 1500-byte Ethernet frame less the IP, UDP and TFTP
/// headers (1468), less room for a tunnel's headers.
pub(crate) const ASKED_BLKSIZE: u16 = 1428;

/// The block size without options (RFC 1350).
const PLAIN_BLKSIZE: u16 = 512;

/// The longest wait between two sends of the same packet.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(8);

/// The duplicate DATA blocks (blocks other than the next one) since the last new block
/// from which a transfer that times out is named a flood: a server resending its block
/// a few times before it gives up is one that stopped sending.
pub(crate) const FLOOD: u64 = 16;

/// The largest datagram a server may send: a DATA header and the largest block size
/// (RFC 2348: 65464), rounded up.
pub(crate) const MAX_DATAGRAM: usize = 65_536;

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// TFTP error codes (RFC 1350, 2347).
const E_NOT_DEFINED: u16 = 0;
const E_NOT_FOUND: u16 = 1;
const E_ALLOCATION: u16 = 3;
const E_ILLEGAL: u16 = 4;
const E_UNKNOWN_TID: u16 = 5;
const E_OPTIONS: u16 = 8;

/// How a read ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// ERROR 1: no such file on the server.
    NotFound(String),
    /// No answer at all to the request within the answer time.
    NoAnswer { sends: u32, waited: Duration },
    /// The answers stopped before the file was whole, and the total time passed.
    Timeout { received: usize, waited: Duration },
    /// The total time passed while the server sent only blocks other than the next one
    /// (duplicates), at least [`FLOOD`] of them since the last new block, after
    /// `received` bytes.
    Flood {
        duplicates: u64,
        received: usize,
        waited: Duration,
    },
    /// An ERROR packet other than "file not found".
    Error { code: u16, message: String },
    /// The file is larger than [`MAX_BODY`] (announced by `tsize`, or counted).
    TooBig { announced: Option<u64> },
    /// The file ended at another size than its `tsize` announced.
    Short { received: usize, announced: u64 },
    /// A packet from the transfer's port that breaks the protocol.
    Protocol(String),
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transmit {
    pub(crate) to: SocketAddr,
    pub(crate) bytes: Vec<u8>,
}

/// The timing of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// The first retransmission interval (also asked of the server as `timeout`, in whole
    /// seconds from 1 to 255).
    pub(crate) interval: Duration,
    /// How long a request may go without any answer.
    pub(crate) answer: Duration,
    /// The whole transfer's deadline, from the first send.
    pub(crate) total: Duration,
}

/// One file being read.
#[derive(Debug)]
pub(crate) struct Read {
    file: String,
    server: SocketAddr,
    timing: Timing,
    with_options: bool,
    state: State,
    /// The first send: the total deadline counts from it.
    started: Instant,
    /// The request now out (the first, or the plain one after options were refused): the
    /// answer time counts from it.
    asked: Instant,
    /// The packet to send again when the interval passes, and where.
    last: Transmit,
    interval: Duration,
    resend_at: Instant,
    sends: u32,
    outgoing: Vec<Transmit>,
}

#[derive(Debug)]
enum State {
    /// The request is out; no answer yet.
    Requesting,
    /// Answered by the transfer `tid`; `next` is the block awaited.
    Receiving {
        tid: SocketAddr,
        blksize: usize,
        tsize: Option<u64>,
        next: u16,
        data: Vec<u8>,
        /// DATA blocks other than `next` since the last new block.
        duplicates: u64,
    },
    Done(Result<Vec<u8>, Failure>),
}

impl Read {
    /// Starts reading `file` (the path the server is asked for) from `server`: the
    /// request is the first [`Read::poll_transmit`].
    pub(crate) fn new(file: &str, server: SocketAddr, timing: Timing, now: Instant) -> Read {
        let request = Transmit {
            to: server,
            bytes: request(file, Some(timing.interval)),
        };
        Read {
            file: file.to_string(),
            server,
            timing,
            with_options: true,
            state: State::Requesting,
            started: now,
            asked: now,
            last: request.clone(),
            interval: timing.interval,
            resend_at: now + timing.interval,
            sends: 1,
            outgoing: vec![request],
        }
    }

    /// The next packet to send, if any.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.outgoing.is_empty() {
            None
        } else {
            Some(self.outgoing.remove(0))
        }
    }

    /// When [`Read::on_timer`] must be called if no datagram comes first (`None` once
    /// the read is over).
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        match self.state {
            State::Done(_) => None,
            State::Requesting => Some(
                self.resend_at
                    .min(self.asked + self.timing.answer)
                    .min(self.started + self.timing.total),
            ),
            State::Receiving { .. } => Some(self.resend_at.min(self.started + self.timing.total)),
        }
    }

    /// The result, once the read is over.
    #[cfg(test)]
    pub(crate) fn outcome(&self) -> Option<&Result<Vec<u8>, Failure>> {
        match &self.state {
            State::Done(result) => Some(result),
            _ => None,
        }
    }

    /// Takes the result, once the read is over.
    pub(crate) fn take_outcome(&mut self) -> Option<Result<Vec<u8>, Failure>> {
        match std::mem::replace(&mut self.state, State::Requesting) {
            State::Done(result) => Some(result),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Time passed: fails at a deadline, or sends the last packet again.
    pub(crate) fn on_timer(&mut self, now: Instant) {
        let waited = now.saturating_duration_since(self.started);
        let total_over = waited >= self.timing.total;
        match &self.state {
            State::Done(_) => return,
            State::Requesting
                if total_over
                    || now.saturating_duration_since(self.asked) >= self.timing.answer =>
            {
                let sends = self.sends;
                let waited = now.saturating_duration_since(self.asked);
                return self.finish(Err(Failure::NoAnswer { sends, waited }));
            }
            State::Receiving {
                data, duplicates, ..
            } if total_over => {
                let received = data.len();
                let failure = if *duplicates >= FLOOD {
                    Failure::Flood {
                        duplicates: *duplicates,
                        received,
                        waited,
                    }
                } else {
                    Failure::Timeout { received, waited }
                };
                return self.finish(Err(failure));
            }
            _ => {}
        }
        if now >= self.resend_at {
            self.interval = (self.interval * 2).min(MAX_INTERVAL);
            self.resend_at = now + self.interval;
            self.sends += 1;
            self.outgoing.push(self.last.clone());
        }
    }

    /// A datagram came from `from`.
    pub(crate) fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        if from.ip() != self.server.ip() {
            return; // not the server: not ours to answer
        }
        let tid = match &self.state {
            State::Done(_) => return,
            State::Requesting => from,
            State::Receiving { tid, .. } => *tid,
        };
        if from != tid {
            // Another transfer of this host (e.g. started by a request sent twice).
            self.outgoing.push(Transmit {
                to: from,
                bytes: error(E_UNKNOWN_TID, "unknown transfer ID"),
            });
            return;
        }
        let packet = match Packet::parse(bytes) {
            Ok(packet) => packet,
            Err(why) => return self.abort(tid, E_ILLEGAL, Failure::Protocol(why)),
        };
        match packet {
            Packet::Error { code, message } => self.on_error(code, message, now),
            Packet::Oack(options) => self.on_oack(tid, options, now),
            Packet::Data { block, payload } => self.on_data(tid, block, payload, now),
            Packet::Other(opcode) => self.abort(
                tid,
                E_ILLEGAL,
                Failure::Protocol(format!("unexpected packet (opcode {opcode})")),
            ),
        }
    }

    fn on_error(&mut self, code: u16, message: String, now: Instant) {
        if code == E_NOT_FOUND {
            return self.finish(Err(Failure::NotFound(message)));
        }
        if self.with_options
            && matches!(self.state, State::Requesting)
            && matches!(code, E_OPTIONS | E_NOT_DEFINED | E_ILLEGAL)
        {
            // Options refused: ask again, plainly (the server ended that transfer).
            self.with_options = false;
            self.asked = now;
            self.sends = 0;
            let plain = Transmit {
                to: self.server,
                bytes: request(&self.file, None),
            };
            return self.send(plain, now);
        }
        self.finish(Err(Failure::Error { code, message }))
    }

    fn on_oack(&mut self, tid: SocketAddr, options: Vec<(String, String)>, now: Instant) {
        match self.state {
            State::Requesting if self.with_options => {}
            // The OACK again (ACK 0 was lost: the timer sends it again), or late.
            State::Receiving { .. } if self.with_options => return,
            _ => {
                return self.abort(
                    tid,
                    E_OPTIONS,
                    Failure::Protocol("an option acknowledgement to a request without one".into()),
                )
            }
        }
        let asked_timeout = timeout_secs(self.timing.interval);
        let mut blksize = PLAIN_BLKSIZE as usize;
        let mut tsize = None;
        for (name, value) in options {
            let number = value.parse::<u64>().ok();
            match (name.to_ascii_lowercase().as_str(), number) {
                ("blksize", Some(n)) if (8..=u64::from(ASKED_BLKSIZE)).contains(&n) => {
                    blksize = n as usize
                }
                ("timeout", Some(n)) if n == u64::from(asked_timeout) => {}
                ("tsize", Some(n)) => tsize = Some(n),
                _ => {
                    return self.abort(
                        tid,
                        E_OPTIONS,
                        Failure::Protocol(format!(
                            "the server acknowledged an option not asked for or out of \
                             range: {name}={value}"
                        )),
                    )
                }
            }
        }
        if let Some(size) = tsize.filter(|&size| size > MAX_BODY as u64) {
            return self.abort(
                tid,
                E_OPTIONS,
                Failure::TooBig {
                    announced: Some(size),
                },
            );
        }
        self.state = State::Receiving {
            tid,
            blksize,
            tsize,
            next: 1,
            data: Vec::new(),
            duplicates: 0,
        };
        self.send(
            Transmit {
                to: tid,
                bytes: ack(0),
            },
            now,
        );
    }

    fn on_data(&mut self, tid: SocketAddr, block: u16, payload: &[u8], now: Instant) {
        if let State::Requesting = self.state {
            if block != 1 {
                return; // a late block of an earlier transfer
            }
            // The options were ignored: plain blocks.
            self.state = State::Receiving {
                tid,
                blksize: PLAIN_BLKSIZE as usize,
                tsize: None,
                next: 1,
                data: Vec::new(),
                duplicates: 0,
            };
        }
        let State::Receiving {
            blksize,
            tsize,
            next,
            data,
            duplicates,
            ..
        } = &mut self.state
        else {
            return;
        };
        if block != *next {
            // A duplicate or a stray: no answer (see the module doc), only counted.
            *duplicates = duplicates.saturating_add(1);
            return;
        }
        if payload.len() > *blksize {
            let why = format!(
                "block {block} has {} bytes, more than the block size {blksize}",
                payload.len()
            );
            return self.abort(tid, E_ILLEGAL, Failure::Protocol(why));
        }
        if data.len() + payload.len() > MAX_BODY {
            let announced = *tsize;
            return self.abort(tid, E_ALLOCATION, Failure::TooBig { announced });
        }
        data.extend_from_slice(payload);
        *duplicates = 0;
        let last = payload.len() < *blksize;
        *next = next.wrapping_add(1);
        let result = match (last, *tsize) {
            (false, _) => None,
            (true, Some(size)) if size != data.len() as u64 => Some(Err(Failure::Short {
                received: data.len(),
                announced: size,
            })),
            (true, _) => Some(Ok(std::mem::take(data))),
        };
        self.send(
            Transmit {
                to: tid,
                bytes: ack(block),
            },
            now,
        );
        if let Some(result) = result {
            self.state = State::Done(result);
        }
    }

    /// Sends `packet` as the one to repeat, with the interval back at its start.
    fn send(&mut self, packet: Transmit, now: Instant) {
        self.interval = self.timing.interval;
        self.resend_at = now + self.interval;
        self.sends += 1;
        self.last = packet.clone();
        self.outgoing.push(packet);
    }

    /// Ends the transfer with an ERROR to the server, and `failure`.
    fn abort(&mut self, tid: SocketAddr, code: u16, failure: Failure) {
        let message = match &failure {
            Failure::TooBig { .. } => format!("file too large: at most {MAX_BODY} bytes"),
            Failure::Protocol(why) => why.clone(),
            _ => "transfer abandoned".into(),
        };
        self.outgoing.push(Transmit {
            to: tid,
            bytes: error(code, &message),
        });
        self.finish(Err(failure));
    }

    fn finish(&mut self, result: Result<Vec<u8>, Failure>) {
        self.state = State::Done(result);
    }
}

/// The `timeout` option asked for: the first interval in whole seconds, 1 to 255.
fn timeout_secs(interval: Duration) -> u8 {
    interval.as_secs().clamp(1, 255) as u8
}

/// A read request in `octet` mode; with `options`, asking `blksize`, `timeout` (the first
/// interval) and `tsize`.
fn request(file: &str, options: Option<Duration>) -> Vec<u8> {
    let mut bytes = RRQ.to_be_bytes().to_vec();
    let mut field = |text: &str| {
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
    };
    field(file);
    field("octet");
    if let Some(interval) = options {
        field("blksize");
        field(&ASKED_BLKSIZE.to_string());
        field("timeout");
        field(&timeout_secs(interval).to_string());
        field("tsize");
        field("0");
    }
    bytes
}

fn ack(block: u16) -> Vec<u8> {
    let mut bytes = ACK.to_be_bytes().to_vec();
    bytes.extend_from_slice(&block.to_be_bytes());
    bytes
}

fn error(code: u16, message: &str) -> Vec<u8> {
    let mut bytes = ERROR.to_be_bytes().to_vec();
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend(message.bytes().filter(|&b| b != 0));
    bytes.push(0);
    bytes
}

/// A packet from the server, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Packet<'a> {
    Data { block: u16, payload: &'a [u8] },
    Error { code: u16, message: String },
    Oack(Vec<(String, String)>),
    Other(u16),
}

impl<'a> Packet<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, String> {
        let (opcode, rest) = be16(bytes).ok_or("a packet shorter than its opcode")?;
        match opcode {
            DATA => {
                let (block, payload) = be16(rest).ok_or("a DATA packet without block number")?;
                Ok(Packet::Data { block, payload })
            }
            ERROR => {
                let (code, text) = be16(rest).ok_or("an ERROR packet without error code")?;
                // The message is NUL-terminated text; a server's, so shown, never trusted.
                let text = text.split(|&b| b == 0).next().unwrap_or_default();
                let message = String::from_utf8_lossy(&text[..text.len().min(200)])
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect();
                Ok(Packet::Error { code, message })
            }
            OACK => {
                let mut fields = rest.split(|&b| b == 0);
                if rest.last() != Some(&0) {
                    return Err("an OACK whose last field is not NUL-terminated".into());
                }
                let mut options = Vec::new();
                loop {
                    let name = fields.next().unwrap_or_default();
                    if name.is_empty() {
                        break; // the split's empty tail after the last NUL
                    }
                    let value = fields
                        .next()
                        .filter(|value| !value.is_empty())
                        .ok_or_else(|| format!("the OACK option {name:?} has no value"))?;
                    let text = |field: &[u8]| {
                        std::str::from_utf8(field)
                            .ok()
                            .filter(|s| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()))
                            .map(str::to_string)
                            .ok_or_else(|| {
                                "an OACK option that is not short printable text".to_string()
                            })
                    };
                    options.push((text(name)?, text(value)?));
                    if options.len() > 16 {
                        return Err("an OACK with more than 16 options".into());
                    }
                }
                Ok(Packet::Oack(options))
            }
            other => Ok(Packet::Other(other)),
        }
    }
}

fn be16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*head), rest))
}

#[cfg(test)]
mod tests;
