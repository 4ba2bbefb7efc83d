//! A phone's flash chip for power-cut tests: an NBD server (fixed newstyle, simple
//! replies) on a Unix socket that QEMU's NBD client uses as the virtio-blk disk.
//!
//! # The model
//!
//! The server keeps `durable`, what the flash holds, and `pending`, the writes the
//! drive's volatile write cache holds and has not yet made durable, in arrival order:
//!
//! - READ returns `durable` overlaid by every pending write in order: the guest sees
//!   its own writes, whether or not they are durable, exactly as with a real drive.
//! - WRITE only appends to `pending`; its reply promises nothing about durability.
//! - FLUSH applies every pending write to `durable` in order, clears `pending`, and
//!   only then replies: a completed flush is the one promise a volatile cache makes.
//! - A client going away (QEMU killed, a clean disconnect) changes nothing; nor does a
//!   guest reboot inside a running QEMU. The test decides what the power cut did, after
//!   it killed QEMU and before the next QEMU starts, with [`FlashServer::cut`]:
//!   [`CutMode::LoseUnflushed`] drops every pending write (a drive that kept exactly
//!   what it was told to flush), [`CutMode::KeepRandomSubset`] splits every pending
//!   write into 4096-byte-aligned pieces and keeps a seeded random half of them,
//!   applied in arrival order (a drive that had written back an arbitrary part of its
//!   cache, page by page, in any order, when the power went).
//!
//! # Why this is faithful
//!
//! An eMMC, UFS or SATA device with a volatile write cache acknowledges a write when it
//! is in the cache; only a completed cache flush (or a write with FUA) guarantees that
//! what was acknowledged before it is on the medium. On power loss, anything
//! acknowledged but not flushed may be lost, kept, or kept in part, in any order, at
//! the granularity of the device's program unit (a flash page, 4 KiB here). That is
//! exactly the freedom `pending` gives: it never persists something the device was not
//! given, never loses something that was flushed, and may keep any subset of the rest.
//! (A stale version of a block surviving while a newer one is lost is allowed too, and
//! happens on real devices.) Filesystems and the agent must be correct under all of
//! these outcomes, so a test that passes here has not been helped by a lenient disk.
//!
//! The server advertises `NBD_FLAG_SEND_FLUSH`, and QEMU's NBD client forwards a flush
//! only when it is set (it silently completes them otherwise); QEMU's `cache=writeback`
//! then gives the guest a virtio-blk device with a volatile write cache, so the guest
//! kernel sends flushes and FUA writes. It does not advertise `NBD_FLAG_SEND_FUA`: QEMU
//! then emulates a FUA write as the write followed by a flush of everything, which in
//! this model persists at least what a real FUA write would, in the right order. A
//! client that sets the FUA flag anyway gets that same treatment. Nothing else (TRIM,
//! WRITE_ZEROES, structured replies, metadata contexts) is advertised or accepted.
//!
//! # Using it
//!
//! Give QEMU [`FlashServer::drive_option`] (`-drive driver=raw,file.driver=nbd,
//! file.server.type=unix,file.server.path=SOCK,if=none,id=ID,cache=writeback`, or
//! `file=nbd+unix:///?socket=SOCK,format=raw,...`) and `-device
//! virtio-blk-device,drive=ID`. Cut the power with SIGKILL: on SIGTERM (or `quit`)
//! QEMU closes its block devices in order, which flushes. Then wait for QEMU to have
//! exited and call [`FlashServer::cut`]; it waits for the server to see the connection
//! end, so that requests QEMU had already sent (still in the socket buffer) are in
//! `pending` first: in flight, never acknowledged, their fate is the cut's to decide.
//!
//! The protocol parsing is sans-IO ([`parse_request`], [`parse_option_header`],
//! [`parse_info_request`]) and the disk model is a plain value ([`Disk`]), so both are
//! unit-tested without a socket. Malformed input closes that connection with a message
//! on stderr; the server then serves the next client. One client is served at a time;
//! a second one waits in the listen backlog until the first goes.

use std::fmt;
use std::io::{self, Read, Write as _};
use std::net::Shutdown;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// `NBDMAGIC`, first word of the server greeting.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`, second word of the greeting and first word of every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of an option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

pub const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const NBD_FLAG_NO_ZEROES: u16 = 1 << 1;
pub const NBD_FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const NBD_FLAG_C_NO_ZEROES: u32 = 1 << 1;

pub const NBD_FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const NBD_FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const NBD_FLAG_SEND_FUA: u16 = 1 << 3;
/// The transmission flags this server sends: flush, and deliberately not FUA.
pub const TRANSMISSION_FLAGS: u16 = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;
/// The handshake flags this server sends.
pub const HANDSHAKE_FLAGS: u16 = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;

pub const NBD_OPT_EXPORT_NAME: u32 = 1;
pub const NBD_OPT_ABORT: u32 = 2;
pub const NBD_OPT_LIST: u32 = 3;
pub const NBD_OPT_INFO: u32 = 6;
pub const NBD_OPT_GO: u32 = 7;
pub const NBD_OPT_STRUCTURED_REPLY: u32 = 8;

pub const NBD_REP_ACK: u32 = 1;
pub const NBD_REP_SERVER: u32 = 2;
pub const NBD_REP_INFO: u32 = 3;
pub const NBD_REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const NBD_REP_ERR_INVALID: u32 = (1 << 31) + 3;

pub const NBD_INFO_EXPORT: u16 = 0;
pub const NBD_INFO_BLOCK_SIZE: u16 = 3;

pub const NBD_CMD_READ: u16 = 0;
pub const NBD_CMD_WRITE: u16 = 1;
pub const NBD_CMD_DISC: u16 = 2;
pub const NBD_CMD_FLUSH: u16 = 3;
pub const NBD_CMD_FLAG_FUA: u16 = 1 << 0;

/// Error value of a simple reply to a request the server will not do.
pub const NBD_EINVAL: u32 = 22;

/// Size of a transmission request header.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Size of an option header (magic, option, length).
pub const OPTION_HEADER_LEN: usize = 16;
/// The longest READ or WRITE served (QEMU's own limit); a longer request closes the
/// connection.
pub const MAX_REQUEST: u32 = 32 << 20;
/// The longest option data accepted; a longer option closes the connection.
pub const MAX_OPTION: u32 = 64 << 10;
/// The flash page: the unit [`CutMode::KeepRandomSubset`] keeps or drops.
pub const PAGE: u64 = 4096;
/// Block sizes advertised on request (`NBD_INFO_BLOCK_SIZE`): 512-byte sectors,
/// 4 KiB pages preferred, [`MAX_REQUEST`] at most.
pub const MIN_BLOCK: u32 = 512;
pub const PREFERRED_BLOCK: u32 = PAGE as u32;

/// How long [`FlashServer::cut`] waits for the client to go.
const CUT_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// Sans-IO protocol parsing
// ---------------------------------------------------------------------------------

/// Why a connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A header of the wrong size was handed to a parser (a truncated message).
    Truncated { expected: usize, got: usize },
    /// Client flags with bits this server did not offer.
    UnknownClientFlags(u32),
    /// An option header that does not start with `IHAVEOPT`.
    BadOptionMagic(u64),
    /// Option data longer than [`MAX_OPTION`].
    OptionTooLong(u32),
    /// A request header that does not start with [`REQUEST_MAGIC`].
    BadRequestMagic(u32),
    /// A request longer than [`MAX_REQUEST`].
    RequestTooLong(u32),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { expected, got } => {
                write!(f, "truncated header: {got} bytes, expected {expected}")
            }
            ProtocolError::UnknownClientFlags(x) => write!(f, "unknown client flags {x:#x}"),
            ProtocolError::BadOptionMagic(x) => write!(f, "bad option magic {x:#018x}"),
            ProtocolError::OptionTooLong(n) => {
                write!(f, "option data of {n} bytes (at most {MAX_OPTION})")
            }
            ProtocolError::BadRequestMagic(x) => write!(f, "bad request magic {x:#010x}"),
            ProtocolError::RequestTooLong(n) => {
                write!(f, "request of {n} bytes (at most {MAX_REQUEST})")
            }
        }
    }
}

/// A transmission command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NbdCommand {
    Read,
    Write,
    Disconnect,
    Flush,
    /// Anything else (TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS...): refused with EINVAL.
    Other(u16),
}

/// A parsed transmission request header (a WRITE's payload follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub command: NbdCommand,
    pub flags: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl Request {
    /// Whether the client asked for Forced Unit Access (not advertised, but honoured as
    /// write + flush).
    pub fn fua(&self) -> bool {
        self.flags & NBD_CMD_FLAG_FUA != 0
    }

    /// Whether `[offset, offset + length)` lies within a disk of `size` bytes.
    pub fn in_range(&self, size: u64) -> bool {
        self.offset
            .checked_add(u64::from(self.length))
            .is_some_and(|end| end <= size)
    }
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Parses a 28-byte request header. Lengths above [`MAX_REQUEST`] are refused for
/// every command: the connection is closed rather than a payload of that size read.
pub fn parse_request(header: &[u8]) -> Result<Request, ProtocolError> {
    if header.len() != REQUEST_HEADER_LEN {
        return Err(ProtocolError::Truncated {
            expected: REQUEST_HEADER_LEN,
            got: header.len(),
        });
    }
    let magic = be_u32(&header[0..4]);
    if magic != REQUEST_MAGIC {
        return Err(ProtocolError::BadRequestMagic(magic));
    }
    let length = be_u32(&header[24..28]);
    if length > MAX_REQUEST {
        return Err(ProtocolError::RequestTooLong(length));
    }
    let command = match be_u16(&header[6..8]) {
        NBD_CMD_READ => NbdCommand::Read,
        NBD_CMD_WRITE => NbdCommand::Write,
        NBD_CMD_DISC => NbdCommand::Disconnect,
        NBD_CMD_FLUSH => NbdCommand::Flush,
        other => NbdCommand::Other(other),
    };
    Ok(Request {
        command,
        flags: be_u16(&header[4..6]),
        cookie: be_u64(&header[8..16]),
        offset: be_u64(&header[16..24]),
        length,
    })
}

/// Encodes a request header (for test clients).
pub fn encode_request(command: u16, flags: u16, cookie: u64, offset: u64, length: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(REQUEST_HEADER_LEN);
    b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&command.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&length.to_be_bytes());
    b
}

/// Checks the client flags that follow the greeting; returns whether the client asked
/// for no zeroes after `NBD_OPT_EXPORT_NAME`.
pub fn parse_client_flags(flags: u32) -> Result<bool, ProtocolError> {
    let known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
    if flags & !known != 0 {
        return Err(ProtocolError::UnknownClientFlags(flags));
    }
    Ok(flags & NBD_FLAG_C_NO_ZEROES != 0)
}

/// Parses a 16-byte option header into (option, data length).
pub fn parse_option_header(header: &[u8]) -> Result<(u32, u32), ProtocolError> {
    if header.len() != OPTION_HEADER_LEN {
        return Err(ProtocolError::Truncated {
            expected: OPTION_HEADER_LEN,
            got: header.len(),
        });
    }
    let magic = be_u64(&header[0..8]);
    if magic != IHAVEOPT {
        return Err(ProtocolError::BadOptionMagic(magic));
    }
    let length = be_u32(&header[12..16]);
    if length > MAX_OPTION {
        return Err(ProtocolError::OptionTooLong(length));
    }
    Ok((be_u32(&header[8..12]), length))
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: Vec<u8>,
    pub infos: Vec<u16>,
}

/// Parses the data of `NBD_OPT_INFO` / `NBD_OPT_GO`; `None` if it is inconsistent
/// (answered with `NBD_REP_ERR_INVALID`, the connection stays).
pub fn parse_info_request(data: &[u8]) -> Option<InfoRequest> {
    if data.len() < 6 {
        return None;
    }
    let name_len = usize::try_from(be_u32(&data[0..4])).ok()?;
    if name_len > data.len() - 6 {
        return None;
    }
    let name = data[4..4 + name_len].to_vec();
    let rest = &data[4 + name_len..];
    let count = usize::from(be_u16(&rest[0..2]));
    let list = &rest[2..];
    if list.len() != 2 * count {
        return None;
    }
    let infos = list.chunks_exact(2).map(be_u16).collect();
    Some(InfoRequest { name, infos })
}

/// One option reply.
pub fn encode_option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&reply.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// The replies to `NBD_OPT_INFO` / `NBD_OPT_GO` for a disk of `size` bytes: the
/// export's size and flags, the block sizes if asked for, then `NBD_REP_ACK`.
pub fn info_replies(option: u32, request: &InfoRequest, size: u64) -> Vec<u8> {
    let mut export = Vec::with_capacity(12);
    export.extend_from_slice(&NBD_INFO_EXPORT.to_be_bytes());
    export.extend_from_slice(&size.to_be_bytes());
    export.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
    let mut out = encode_option_reply(option, NBD_REP_INFO, &export);
    if request.infos.contains(&NBD_INFO_BLOCK_SIZE) {
        let mut sizes = Vec::with_capacity(14);
        sizes.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
        sizes.extend_from_slice(&MIN_BLOCK.to_be_bytes());
        sizes.extend_from_slice(&PREFERRED_BLOCK.to_be_bytes());
        sizes.extend_from_slice(&MAX_REQUEST.to_be_bytes());
        out.extend(encode_option_reply(option, NBD_REP_INFO, &sizes));
    }
    out.extend(encode_option_reply(option, NBD_REP_ACK, &[]));
    out
}

/// A simple reply header.
pub fn encode_simple_reply(error: u32, cookie: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b
}

// ---------------------------------------------------------------------------------
// The disk model
// ---------------------------------------------------------------------------------

/// A write the drive's cache holds and has not made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// What a power cut does to the writes not yet flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Every pending write is lost: the flash keeps exactly what was flushed.
    LoseUnflushed,
    /// Every pending write is split into 4096-byte-aligned pieces; each piece is kept
    /// with probability 1/2 (a PRNG seeded with `seed` decides), and the kept pieces
    /// are applied in arrival order.
    KeepRandomSubset { seed: u64 },
}

/// What [`FlashServer::cut`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CutReport {
    /// Writes pending at the cut.
    pub pending_writes: usize,
    /// Their bytes, summed.
    pub pending_bytes: u64,
    /// 4 KiB-aligned pieces made durable.
    pub kept_pieces: usize,
    /// 4 KiB-aligned pieces lost.
    pub dropped_pieces: usize,
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "power cut: {} pending writes ({} bytes) in {} pieces: {} kept, {} dropped",
            self.pending_writes,
            self.pending_bytes,
            self.kept_pieces + self.dropped_pieces,
            self.kept_pieces,
            self.dropped_pieces
        )
    }
}

/// SplitMix64: a tiny, well-mixed, deterministic PRNG.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

/// The pieces of a write of `len` bytes at `offset`, cut at multiples of [`PAGE`]:
/// `(offset, len)` of each, in order.
pub fn pieces(offset: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let end = offset + len;
    let mut at = offset;
    while at < end {
        let next = ((at / PAGE) + 1) * PAGE;
        let stop = next.min(end);
        out.push((at, stop - at));
        at = stop;
    }
    out
}

/// The flash: what is durable and what the drive cache still holds.
#[derive(Debug, Clone)]
pub struct Disk {
    durable: Vec<u8>,
    pending: Vec<Write>,
}

impl Disk {
    pub fn new(image: Vec<u8>) -> Disk {
        Disk {
            durable: image,
            pending: Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.durable.len() as u64
    }

    /// What the flash holds.
    pub fn durable(&self) -> &[u8] {
        &self.durable
    }

    /// The writes not yet flushed, in arrival order.
    pub fn pending(&self) -> &[Write] {
        &self.pending
    }

    /// What the guest reads: `durable` overlaid by every pending write, in order.
    /// Panics if the range is outside the disk (the server checks first).
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let start = usize::try_from(offset).expect("offset fits usize");
        let end = start + len;
        let mut out = self.durable[start..end].to_vec();
        for w in &self.pending {
            let w_start = usize::try_from(w.offset).expect("offset fits usize");
            let w_end = w_start + w.data.len();
            let lo = start.max(w_start);
            let hi = end.min(w_end);
            if lo < hi {
                out[lo - start..hi - start].copy_from_slice(&w.data[lo - w_start..hi - w_start]);
            }
        }
        out
    }

    /// Accepts a write into the cache. Panics if it is outside the disk.
    pub fn write(&mut self, offset: u64, data: Vec<u8>) {
        assert!(
            offset
                .checked_add(data.len() as u64)
                .is_some_and(|end| end <= self.size()),
            "write of {} bytes at {offset} outside a disk of {} bytes",
            data.len(),
            self.size()
        );
        if !data.is_empty() {
            self.pending.push(Write { offset, data });
        }
    }

    /// Makes every pending write durable, in order.
    pub fn flush(&mut self) {
        for w in std::mem::take(&mut self.pending) {
            let start = w.offset as usize;
            self.durable[start..start + w.data.len()].copy_from_slice(&w.data);
        }
    }

    /// A power cut: decides the fate of every pending write and clears `pending`.
    pub fn cut(&mut self, mode: CutMode) -> CutReport {
        let pending = std::mem::take(&mut self.pending);
        let mut report = CutReport {
            pending_writes: pending.len(),
            pending_bytes: pending.iter().map(|w| w.data.len() as u64).sum(),
            ..CutReport::default()
        };
        let mut rng = match mode {
            CutMode::LoseUnflushed => None,
            CutMode::KeepRandomSubset { seed } => Some(SplitMix64::new(seed)),
        };
        for w in &pending {
            for (at, len) in pieces(w.offset, w.data.len() as u64) {
                let keep = rng.as_mut().is_some_and(SplitMix64::coin);
                if keep {
                    let from = (at - w.offset) as usize;
                    let to = from + len as usize;
                    let start = at as usize;
                    self.durable[start..start + len as usize].copy_from_slice(&w.data[from..to]);
                    report.kept_pieces += 1;
                } else {
                    report.dropped_pieces += 1;
                }
            }
        }
        report
    }
}

// ---------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------

/// Counters since the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlashStats {
    /// Clients accepted.
    pub connections: u64,
    /// READ requests served.
    pub reads: u64,
    /// WRITE requests accepted into the cache.
    pub writes: u64,
    /// Flushes done: FLUSH requests, and writes with FUA set.
    pub flushes: u64,
    /// Bytes of the accepted writes.
    pub bytes_written: u64,
    /// Writes pending now.
    pub pending_writes: usize,
}

#[derive(Debug)]
struct State {
    disk: Disk,
    stats: FlashStats,
    /// The client being served (a clone, so that drop can shut it down).
    client: Option<UnixStream>,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a client goes.
    gone: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An NBD server modelling a flash chip with a volatile write cache; see the module
/// documentation. Dropping it stops the server and removes the socket.
#[derive(Debug)]
pub struct FlashServer {
    shared: Arc<Shared>,
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl FlashServer {
    /// Serves `image` (its length is the disk size; must be a multiple of 512) on a
    /// Unix socket at `socket` (a stale socket there is replaced).
    pub fn start(image: Vec<u8>, socket: &Path) -> FlashServer {
        assert!(
            image.len() % 512 == 0,
            "disk size {} is not a multiple of 512",
            image.len()
        );
        if std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(socket).expect("remove the stale socket");
        }
        let listener = UnixListener::bind(socket)
            .unwrap_or_else(|e| panic!("bind the NBD socket {}: {e}", socket.display()));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                disk: Disk::new(image),
                stats: FlashStats::default(),
                client: None,
                stop: false,
            }),
            gone: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("flash-nbd".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&shared, &listener)
            })
            .expect("start the NBD server thread");
        FlashServer {
            shared,
            socket: socket.to_path_buf(),
            thread: Some(thread),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `nbd+unix:///?socket=PATH`, for `qemu-io`, `qemu-img` and `-drive file=`.
    pub fn url(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// The `-drive` option for `qemu-system-*` with id `id`: raw over NBD over the
    /// socket, with a write-back cache so that the guest sees a volatile cache and
    /// flushes.
    pub fn drive_option(&self, id: &str) -> String {
        format!(
            "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={},if=none,id={id},cache=writeback",
            self.socket.display()
        )
    }

    /// The power cut, after the client (QEMU) was killed and before the next starts:
    /// decides what of the pending writes the flash kept. Panics if a client is still
    /// connected after waiting up to 5 s for it to go.
    pub fn cut(&self, mode: CutMode) -> CutReport {
        let state = self.shared.lock();
        let (mut state, _) = self
            .shared
            .gone
            .wait_timeout_while(state, CUT_WAIT, |s| s.client.is_some())
            .unwrap_or_else(|e| e.into_inner());
        if state.client.is_some() {
            drop(state);
            panic!("cut: a client is still connected after {CUT_WAIT:?}: is QEMU still running?");
        }
        let report = state.disk.cut(mode);
        state.stats.pending_writes = 0;
        report
    }

    pub fn stats(&self) -> FlashStats {
        self.shared.lock().stats
    }

    /// A copy of what the flash holds (pending writes excluded).
    pub fn durable_image(&self) -> Vec<u8> {
        self.shared.lock().disk.durable().to_vec()
    }

    /// What a reader sees now: the durable image overlaid by the pending writes.
    pub fn visible_image(&self) -> Vec<u8> {
        let state = self.shared.lock();
        state.disk.read(0, state.disk.durable().len())
    }

    /// Writes [`Self::durable_image`] to `path` (to inspect it, or to mount it).
    pub fn write_durable_to(&self, path: &Path) {
        let image = self.durable_image();
        std::fs::write(path, image)
            .unwrap_or_else(|e| panic!("write the flash image to {}: {e}", path.display()));
    }

    /// Waits up to `timeout` for the server to have accepted `n` clients in all.
    pub fn wait_connections(&self, n: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.stats().connections < n {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for FlashServer {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stop = true;
            if let Some(client) = &state.client {
                let _ = client.shutdown(Shutdown::Both);
            }
        }
        // Wake the accept; it fails harmlessly if the thread has already ended.
        let _ = UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn accept_loop(shared: &Shared, listener: &UnixListener) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if shared.lock().stop {
                    return;
                }
                eprintln!("flash server: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        {
            let mut state = shared.lock();
            if state.stop {
                return;
            }
            match stream.try_clone() {
                Ok(clone) => state.client = Some(clone),
                Err(e) => {
                    eprintln!("flash server: clone the client socket: {e}");
                    continue;
                }
            }
            state.stats.connections += 1;
        }
        match serve(shared, stream) {
            Ok(()) => {}
            Err(End::Protocol(e)) => eprintln!("flash server: closing the connection: {e}"),
            Err(End::Io(e)) => eprintln!("flash server: connection ended: {e}"),
        }
        shared.lock().client = None;
        shared.gone.notify_all();
    }
}

/// Why a connection ended abnormally.
enum End {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Io(e)
    }
}

impl From<ProtocolError> for End {
    fn from(e: ProtocolError) -> End {
        End::Protocol(e)
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on end of stream before the first
/// byte, an error on end of stream within it.
fn read_full(stream: &mut UnixStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("truncated message: {got} of {} bytes", buf.len()),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn read_vec(stream: &mut UnixStream, len: usize) -> Result<Vec<u8>, End> {
    let mut data = vec![0; len];
    if len > 0 && !read_full(stream, &mut data)? {
        return Err(End::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("end of stream before a payload of {len} bytes"),
        )));
    }
    Ok(data)
}

/// One client: handshake, then transmission until it disconnects or goes away.
fn serve(shared: &Shared, mut stream: UnixStream) -> Result<(), End> {
    let size = shared.lock().disk.size();
    let mut greeting = Vec::with_capacity(18);
    greeting.extend_from_slice(&NBD_MAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&HANDSHAKE_FLAGS.to_be_bytes());
    stream.write_all(&greeting)?;

    let mut flags = [0; 4];
    if !read_full(&mut stream, &mut flags)? {
        return Ok(());
    }
    let no_zeroes = parse_client_flags(u32::from_be_bytes(flags))?;

    // Option haggling.
    loop {
        let mut header = [0; OPTION_HEADER_LEN];
        if !read_full(&mut stream, &mut header)? {
            return Ok(());
        }
        let (option, len) = parse_option_header(&header)?;
        let data = read_vec(&mut stream, len as usize)?;
        match option {
            NBD_OPT_EXPORT_NAME => {
                let mut reply = Vec::with_capacity(134);
                reply.extend_from_slice(&size.to_be_bytes());
                reply.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                if !no_zeroes {
                    reply.extend_from_slice(&[0; 124]);
                }
                stream.write_all(&reply)?;
                break;
            }
            NBD_OPT_ABORT => {
                stream.write_all(&encode_option_reply(option, NBD_REP_ACK, &[]))?;
                return Ok(());
            }
            NBD_OPT_LIST if !data.is_empty() => {
                stream.write_all(&encode_option_reply(option, NBD_REP_ERR_INVALID, &[]))?;
            }
            NBD_OPT_LIST => {
                // One export, the default one (empty name).
                let mut reply = encode_option_reply(option, NBD_REP_SERVER, &0u32.to_be_bytes());
                reply.extend(encode_option_reply(option, NBD_REP_ACK, &[]));
                stream.write_all(&reply)?;
            }
            NBD_OPT_INFO | NBD_OPT_GO => match parse_info_request(&data) {
                Some(request) => {
                    stream.write_all(&info_replies(option, &request, size))?;
                    if option == NBD_OPT_GO {
                        break;
                    }
                }
                None => {
                    stream.write_all(&encode_option_reply(option, NBD_REP_ERR_INVALID, &[]))?;
                }
            },
            _ => stream.write_all(&encode_option_reply(option, NBD_REP_ERR_UNSUP, &[]))?,
        }
    }

    // Transmission.
    loop {
        let mut header = [0; REQUEST_HEADER_LEN];
        if !read_full(&mut stream, &mut header)? {
            return Ok(());
        }
        let request = parse_request(&header)?;
        let in_range = request.in_range(size);
        match request.command {
            NbdCommand::Read if !in_range => {
                stream.write_all(&encode_simple_reply(NBD_EINVAL, request.cookie))?;
            }
            NbdCommand::Read => {
                let data = {
                    let mut state = shared.lock();
                    state.stats.reads += 1;
                    state.disk.read(request.offset, request.length as usize)
                };
                let mut reply = encode_simple_reply(0, request.cookie);
                reply.extend_from_slice(&data);
                stream.write_all(&reply)?;
            }
            NbdCommand::Write => {
                // The payload is read in full before anything is done: a write cut
                // short by the client's death never reached the drive.
                let data = read_vec(&mut stream, request.length as usize)?;
                if !in_range {
                    stream.write_all(&encode_simple_reply(NBD_EINVAL, request.cookie))?;
                    continue;
                }
                {
                    let mut state = shared.lock();
                    state.stats.writes += 1;
                    state.stats.bytes_written += data.len() as u64;
                    state.disk.write(request.offset, data);
                    if request.fua() {
                        state.disk.flush();
                        state.stats.flushes += 1;
                    }
                    state.stats.pending_writes = state.disk.pending().len();
                }
                stream.write_all(&encode_simple_reply(0, request.cookie))?;
            }
            NbdCommand::Flush => {
                {
                    let mut state = shared.lock();
                    state.disk.flush();
                    state.stats.flushes += 1;
                    state.stats.pending_writes = 0;
                }
                stream.write_all(&encode_simple_reply(0, request.cookie))?;
            }
            NbdCommand::Disconnect => return Ok(()),
            NbdCommand::Other(_) => {
                stream.write_all(&encode_simple_reply(NBD_EINVAL, request.cookie))?;
            }
        }
    }
}
