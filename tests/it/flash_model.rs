//! The flash model of `tests/it/common/nbd.rs`, checked with QEMU's own NBD client
//! (`qemu-io`, package qemu-utils) and with a raw in-test client for what QEMU never
//! sends.
//!
//! The model: writes sit in the drive's volatile cache (`pending`) until a flush makes
//! them durable; reads see them meanwhile; a power cut loses them all
//! (`LoseUnflushed`) or keeps a seeded random subset of their 4 KiB pages
//! (`KeepRandomSubset`). That is what an eMMC or SSD with a volatile write cache is
//! allowed to do, so software that survives it here does not rely on luck. FUA is not
//! advertised, so QEMU emulates it with write + flush, which this model makes durable.
//!
//! What `qemu-io` does, learnt here and pinned by
//! `qemu_io_flushes_on_close_but_not_when_killed`: by default (`-t writethrough`) it
//! flushes after every write; with `-t writeback` it still flushes when it closes the
//! image, even without a `flush` command; a read-only open (`-r`) never flushes; and
//! `sigraise 9` kills it at once with no flush, exactly like a SIGKILLed QEMU (its
//! output up to then is still printed). So unflushed writes are made with
//! `-t writeback ... -c 'sigraise 9'`, and later looks are read-only.

use crate::common;

use std::io::{Read, Write as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::nbd::*;
use proptest::prelude::*;

const QEMU_IO: &str = "/usr/bin/qemu-io";
const KIB: usize = 1024;
/// The test disk: 1 MiB.
const DISK: usize = 1024 * KIB;
/// The longest a `qemu-io` run may take.
const BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// Helpers: qemu-io
// ---------------------------------------------------------------------------------

/// How `qemu-io` opens the disk and how it ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Read-write with a write-back cache, then `sigraise 9`: it dies like a SIGKILLed
    /// QEMU, without the flush it does on a clean close.
    WritebackKilled,
    /// Read-write with a write-back cache, ending normally (it flushes on close).
    WritebackClean,
    /// Read-only (never flushes), through the `nbd+unix://` URL.
    ReadOnly,
    /// Read-only, through `--image-opts` with the driver options a `-drive` uses.
    ReadOnlyImageOpts,
}

fn start(dir: &Path) -> FlashServer {
    FlashServer::start(vec![0; DISK], &dir.join("flash.sock"))
}

/// Runs `qemu-io` on the server with `commands`; fails the test if it fails, if a
/// pattern does not verify, or if it does not end as `session` says.
fn qemu_io(server: &FlashServer, session: Session, commands: &[&str]) -> String {
    assert!(
        Path::new(QEMU_IO).is_file(),
        "{QEMU_IO} is missing: install qemu-utils (scripts/setup-cross.sh does)"
    );
    let mut cmd = Command::new(QEMU_IO);
    match session {
        Session::WritebackKilled | Session::WritebackClean => {
            cmd.args(["-f", "raw", "-t", "writeback"]);
        }
        Session::ReadOnly => {
            cmd.args(["-f", "raw", "-r"]);
        }
        Session::ReadOnlyImageOpts => {
            cmd.args(["-r", "--image-opts"]);
        }
    }
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    if session == Session::WritebackKilled {
        cmd.args(["-c", "sigraise 9"]);
    }
    if session == Session::ReadOnlyImageOpts {
        cmd.arg(format!(
            "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={}",
            server.socket().display()
        ));
    } else {
        cmd.arg(server.url());
    }
    let out = bounded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = format!(
        "qemu-io {commands:?}: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains("Pattern verification failed") && !stdout.contains("failed:"),
        "{shown}"
    );
    assert!(stderr.trim().is_empty(), "{shown}");
    match session {
        Session::WritebackKilled => assert_eq!(out.status.signal(), Some(9), "{shown}"),
        _ => assert_eq!(out.status.code(), Some(0), "{shown}"),
    }
    stdout
}

/// Runs `cmd` to its end, failing the test if it outlives [`BOUND`].
fn bounded(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().expect("start qemu-io");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} still running after {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("collect the output")
}

fn filled(len: usize, byte: u8) -> Vec<u8> {
    vec![byte; len]
}

/// Panics unless `image[at..at + len]` is all `byte`.
fn assert_all(image: &[u8], at: usize, len: usize, byte: u8, what: &str) {
    if let Some(i) = image[at..at + len].iter().position(|&b| b != byte) {
        panic!(
            "{what}: byte {} is {:#04x}, expected {byte:#04x}",
            at + i,
            image[at + i]
        );
    }
}

// ---------------------------------------------------------------------------------
// Helpers: a raw NBD client
// ---------------------------------------------------------------------------------

fn connect(server: &FlashServer) -> UnixStream {
    let stream = UnixStream::connect(server.socket()).expect("connect to the flash server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
}

fn read_n(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read from the server");
    buf
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads the 18-byte greeting and checks it.
fn greeting(stream: &mut UnixStream) {
    let g = read_n(stream, 18);
    assert_eq!(u64_at(&g, 0), NBD_MAGIC);
    assert_eq!(u64_at(&g, 8), IHAVEOPT);
    assert_eq!(u16_at(&g, 16), HANDSHAKE_FLAGS);
}

fn send_option(stream: &mut UnixStream, option: u32, data: &[u8]) {
    let mut b = Vec::new();
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    stream.write_all(&b).expect("send an option");
}

/// Reads one option reply: (option, reply type, data).
fn option_reply(stream: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    let h = read_n(stream, 20);
    assert_eq!(u64_at(&h, 0), OPTION_REPLY_MAGIC);
    let len = u32_at(&h, 16) as usize;
    (u32_at(&h, 8), u32_at(&h, 12), read_n(stream, len))
}

fn go_data(name: &[u8], infos: &[u16]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
    d.extend_from_slice(name);
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

/// Greeting, client flags, `NBD_OPT_GO` for the default export: a client in the
/// transmission phase. Returns it with the size and transmission flags it was given.
fn transmission(server: &FlashServer) -> (UnixStream, u64, u16) {
    let mut s = connect(server);
    greeting(&mut s);
    s.write_all(&(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    send_option(&mut s, NBD_OPT_GO, &go_data(b"", &[NBD_INFO_BLOCK_SIZE]));
    let (mut size, mut flags, mut block_sizes) = (None, None, None);
    loop {
        let (option, reply, data) = option_reply(&mut s);
        assert_eq!(option, NBD_OPT_GO);
        match reply {
            NBD_REP_INFO if u16_at(&data, 0) == NBD_INFO_EXPORT => {
                assert_eq!(data.len(), 12);
                size = Some(u64_at(&data, 2));
                flags = Some(u16_at(&data, 10));
            }
            NBD_REP_INFO if u16_at(&data, 0) == NBD_INFO_BLOCK_SIZE => {
                assert_eq!(data.len(), 14);
                block_sizes = Some((u32_at(&data, 2), u32_at(&data, 6), u32_at(&data, 10)));
            }
            NBD_REP_ACK => break,
            other => panic!("unexpected reply {other:#x} to NBD_OPT_GO"),
        }
    }
    assert_eq!(block_sizes, Some((512, 4096, MAX_REQUEST)));
    (s, size.expect("NBD_INFO_EXPORT"), flags.expect("flags"))
}

/// Sends a request (with `payload` after it) and reads the simple reply: its error and,
/// for a successful READ, the `length` bytes that follow.
fn request(
    s: &mut UnixStream,
    command: u16,
    flags: u16,
    offset: u64,
    length: u32,
    payload: &[u8],
) -> (u32, Vec<u8>) {
    let cookie = 0x1234_5678_9abc_def0 ^ offset;
    let mut b = encode_request(command, flags, cookie, offset, length);
    b.extend_from_slice(payload);
    s.write_all(&b).expect("send a request");
    let r = read_n(s, 16);
    assert_eq!(u32_at(&r, 0), SIMPLE_REPLY_MAGIC);
    assert_eq!(
        u64_at(&r, 8),
        cookie,
        "the reply carries the request's cookie"
    );
    let error = u32_at(&r, 4);
    let data = if command == NBD_CMD_READ && error == 0 {
        read_n(s, length as usize)
    } else {
        Vec::new()
    };
    (error, data)
}

/// The server closes the connection: the next read sees the end of the stream.
fn assert_closed(mut s: UnixStream, what: &str) {
    let mut buf = [0; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: the server sent {n} more bytes instead of closing"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the server did not close the connection: {e}"),
    }
}

/// Waits (up to 5 s) until the server has no client, i.e. it saw the last one go.
fn wait_idle(server: &FlashServer) {
    // `cut` waits for the client to go; with nothing pending it changes nothing.
    let report = server.cut(CutMode::LoseUnflushed);
    assert_eq!(report.pending_writes, 0, "nothing was pending: {report}");
}

// ---------------------------------------------------------------------------------
// 1-3: the model, through QEMU's client
// ---------------------------------------------------------------------------------

#[test]
fn qemu_io_flushes_on_close_but_not_when_killed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    qemu_io(&server, Session::WritebackClean, &["write -P 0x5a 0 4k"]);
    let s = server.stats();
    assert_eq!((s.writes, s.pending_writes), (1, 0), "{s:?}");
    assert!(s.flushes >= 1, "a clean close flushes: {s:?}");

    let before = server.stats().flushes;
    qemu_io(&server, Session::WritebackKilled, &["write -P 0x5b 0 4k"]);
    let s = server.stats();
    assert_eq!((s.writes, s.pending_writes), (2, 1), "{s:?}");
    assert_eq!(s.flushes, before, "sigraise 9 must not flush: {s:?}");

    qemu_io(&server, Session::ReadOnly, &["read -P 0x5b 0 4k"]);
    assert_eq!(
        server.stats().flushes,
        before,
        "a read-only open never flushes"
    );
    assert_eq!(server.stats().pending_writes, 1);
}

#[test]
fn flushed_data_survives_a_cut_and_unflushed_data_is_visible_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    let out = qemu_io(
        &server,
        Session::WritebackKilled,
        &[
            "write -P 0xab 0 64k",
            "flush",
            "write -P 0xcd 64k 64k",
            // Same connection: the guest reads its own unflushed write.
            "read -P 0xcd 64k 64k",
            "read -P 0xab 0 64k",
        ],
    );
    assert_eq!(out.matches("read 65536/65536").count(), 2, "{out}");
    let s = server.stats();
    assert_eq!(
        (s.writes, s.flushes, s.pending_writes, s.bytes_written),
        (2, 1, 1, 128 * 1024),
        "{s:?}"
    );
    let durable = server.durable_image();
    assert_all(&durable, 0, 64 * KIB, 0xab, "flushed data is durable");
    assert_all(
        &durable,
        64 * KIB,
        64 * KIB,
        0,
        "unflushed data is not durable yet",
    );
    assert_all(&server.visible_image(), 64 * KIB, 64 * KIB, 0xcd, "visible");

    // A reboot without a power cut (a new client, nothing decided): still visible.
    qemu_io(&server, Session::ReadOnly, &["read -P 0xcd 64k 64k"]);
    assert_eq!(server.stats().pending_writes, 1);

    let report = server.cut(CutMode::LoseUnflushed);
    assert_eq!(
        report,
        CutReport {
            pending_writes: 1,
            pending_bytes: 64 * 1024,
            kept_pieces: 0,
            dropped_pieces: 16
        },
        "{report}"
    );
    qemu_io(
        &server,
        Session::ReadOnly,
        &["read -P 0xab 0 64k", "read -P 0 64k 64k"],
    );
    assert_all(&server.durable_image(), 0, 64 * KIB, 0xab, "after the cut");
}

#[test]
fn unflushed_data_is_gone_after_lose_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    qemu_io(
        &server,
        Session::WritebackKilled,
        &[
            "write -P 0x11 0 128k",
            "flush",
            // Overwrites flushed data without a flush, and writes fresh space.
            "write -P 0x22 32k 64k",
            "write -P 0x33 512k 8k",
            "read -P 0x22 32k 64k",
        ],
    );
    assert_eq!(server.stats().pending_writes, 2);

    let report = server.cut(CutMode::LoseUnflushed);
    assert_eq!(
        (report.pending_writes, report.pending_bytes),
        (2, 72 * 1024)
    );
    assert_eq!(
        (report.kept_pieces, report.dropped_pieces),
        (0, 18),
        "{report}"
    );
    assert_eq!(server.stats().pending_writes, 0);

    let mut expected = filled(DISK, 0);
    expected[..128 * KIB].fill(0x11);
    assert!(
        server.durable_image() == expected,
        "the flash holds exactly what was flushed"
    );
    assert!(server.visible_image() == expected, "and nothing is pending");
    qemu_io(
        &server,
        Session::ReadOnlyImageOpts,
        &["read -P 0x11 0 128k", "read -P 0 512k 8k"],
    );
    // The cut is final: a second one has nothing to do.
    assert_eq!(server.cut(CutMode::LoseUnflushed), CutReport::default());

    let file = dir.path().join("flash.img");
    server.write_durable_to(&file);
    assert!(std::fs::read(&file).unwrap() == expected);
}

/// One power cut with `KeepRandomSubset { seed }` after flushed and unflushed writes:
/// the report and the flash afterwards.
fn random_cut(seed: u64) -> (CutReport, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    qemu_io(
        &server,
        Session::WritebackKilled,
        &[
            "write -P 0x11 0 64k",
            "write -P 0x44 256k 16k",
            "flush",
            "write -P 0x22 0 64k",
            "write -P 0x33 128k 64k",
        ],
    );
    let report = server.cut(CutMode::KeepRandomSubset { seed });
    let image = server.durable_image();
    assert!(
        server.visible_image() == image,
        "nothing pending after the cut"
    );
    // The guest after the cut sees the flash: the flushed data is always there.
    qemu_io(&server, Session::ReadOnly, &["read -P 0x44 256k 16k"]);
    (report, image)
}

#[test]
fn keep_random_subset_keeps_whole_pages_deterministically_and_never_flushed_data() {
    let (report, image) = random_cut(7);
    assert_eq!(
        (report.pending_writes, report.pending_bytes),
        (2, 128 * 1024)
    );
    assert_eq!(report.kept_pieces + report.dropped_pieces, 32, "{report}");
    assert!(
        report.kept_pieces > 0 && report.dropped_pieces > 0,
        "a fixed seed keeps some pieces and drops some: {report}"
    );

    // Every 4 KiB page holds one version, old or new, never a mix.
    let mut new_pages = 0;
    for page in 0..16 {
        let p = &image[page * 4096..(page + 1) * 4096];
        assert!(
            p == &filled(4096, 0x11)[..] || p == &filled(4096, 0x22)[..],
            "page {page} is torn"
        );
        new_pages += usize::from(p[0] == 0x22);
    }
    for page in 32..48 {
        let p = &image[page * 4096..(page + 1) * 4096];
        assert!(
            p == &filled(4096, 0)[..] || p == &filled(4096, 0x33)[..],
            "page {page} is torn"
        );
        new_pages += usize::from(p[0] == 0x33);
    }
    assert_eq!(new_pages, report.kept_pieces, "{report}");
    assert_all(
        &image,
        256 * KIB,
        16 * KIB,
        0x44,
        "flushed data is always kept",
    );
    assert_all(&image, 64 * KIB, 64 * KIB, 0, "nothing was written there");

    // The same seed, the same flash; another seed, another flash.
    let (again, image_again) = random_cut(7);
    assert_eq!(again, report);
    assert!(
        image_again == image,
        "seed 7 must give the same flash every time"
    );
    let (other, image_other) = random_cut(8);
    assert!(
        image_other != image,
        "seeds 7 and 8 give the same flash: {report} / {other}"
    );
    assert_all(
        &image_other,
        256 * KIB,
        16 * KIB,
        0x44,
        "seed 8: flushed data",
    );
}

// ---------------------------------------------------------------------------------
// 4: protocol robustness
// ---------------------------------------------------------------------------------

#[test]
fn malformed_clients_are_dropped_and_the_next_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    // Garbage right after the greeting (as client flags: unknown bits).
    let mut s = connect(&server);
    greeting(&mut s);
    s.write_all(&[0xff; 64]).unwrap();
    assert_closed(s, "garbage after the greeting");

    // Valid flags, then garbage instead of an option.
    let mut s = connect(&server);
    greeting(&mut s);
    s.write_all(&NBD_FLAG_C_FIXED_NEWSTYLE.to_be_bytes())
        .unwrap();
    s.write_all(b"this is not an NBD option header at all")
        .unwrap();
    assert_closed(s, "garbage option");

    // An option claiming megabytes of data.
    let mut s = connect(&server);
    greeting(&mut s);
    s.write_all(&NBD_FLAG_C_FIXED_NEWSTYLE.to_be_bytes())
        .unwrap();
    let mut h = IHAVEOPT.to_be_bytes().to_vec();
    h.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
    h.extend_from_slice(&(16u32 << 20).to_be_bytes());
    s.write_all(&h).unwrap();
    assert_closed(s, "oversized option");

    // Garbage in the transmission phase.
    let (mut s, _, _) = transmission(&server);
    s.write_all(&[0x42; REQUEST_HEADER_LEN]).unwrap();
    assert_closed(s, "garbage request");

    // Oversized lengths: a read, and a write whose payload never comes.
    let (mut s, _, _) = transmission(&server);
    s.write_all(&encode_request(NBD_CMD_READ, 0, 1, 0, MAX_REQUEST + 1))
        .unwrap();
    assert_closed(s, "oversized read");
    let (mut s, _, _) = transmission(&server);
    s.write_all(&encode_request(NBD_CMD_WRITE, 0, 2, 0, u32::MAX))
        .unwrap();
    assert_closed(s, "oversized write");

    // A truncated request header, and a write whose payload is cut short: neither
    // reaches the disk.
    let (mut s, _, _) = transmission(&server);
    s.write_all(&encode_request(NBD_CMD_READ, 0, 3, 0, 512)[..10])
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(s, "truncated request");
    let (mut s, _, _) = transmission(&server);
    s.write_all(&encode_request(NBD_CMD_WRITE, 0, 4, 0, 8192))
        .unwrap();
    s.write_all(&[0xee; 100]).unwrap();
    drop(s);
    // Half a greeting exchange, then gone.
    let mut s = connect(&server);
    s.write_all(&[0, 0]).unwrap();
    drop(s);

    assert!(server.wait_connections(9, Duration::from_secs(5)));
    wait_idle(&server);
    let stats = server.stats();
    assert_eq!(stats.connections, 9);
    assert_eq!((stats.writes, stats.pending_writes), (0, 0), "{stats:?}");
    assert!(server.visible_image().iter().all(|&b| b == 0));

    // The next client, QEMU's, is served as if nothing had happened.
    qemu_io(
        &server,
        Session::WritebackClean,
        &["write -P 0x77 4k 4k", "read -P 0x77 4k 4k"],
    );
    assert_eq!(server.stats().connections, stats.connections + 1);
    assert_all(
        &server.durable_image(),
        4096,
        4096,
        0x77,
        "after a clean close",
    );
}

#[test]
fn bad_requests_get_errors_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (mut s, size, flags) = transmission(&server);
    assert_eq!(size, DISK as u64);
    assert_eq!(flags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
    assert_eq!(flags & NBD_FLAG_SEND_FUA, 0, "FUA must not be advertised");

    // Out of range: EINVAL, and a write's payload is read and discarded.
    let disk = DISK as u64;
    assert_eq!(
        request(&mut s, NBD_CMD_READ, 0, disk - 512, 1024, &[]).0,
        NBD_EINVAL
    );
    assert_eq!(
        request(&mut s, NBD_CMD_READ, 0, u64::MAX - 1, 4, &[]).0,
        NBD_EINVAL
    );
    let payload = filled(1024, 0x99);
    assert_eq!(
        request(&mut s, NBD_CMD_WRITE, 0, disk - 512, 1024, &payload).0,
        NBD_EINVAL
    );
    // Commands not advertised: TRIM (4), WRITE_ZEROES (6).
    assert_eq!(request(&mut s, 4, 0, 0, 4096, &[]).0, NBD_EINVAL);
    assert_eq!(request(&mut s, 6, 0, 0, 4096, &[]).0, NBD_EINVAL);

    // Still in step: write, read it back, flush.
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(request(&mut s, NBD_CMD_WRITE, 0, 1000, 8192, &data).0, 0);
    let (error, back) = request(&mut s, NBD_CMD_READ, 0, 1000, 8192, &[]);
    assert_eq!(error, 0);
    assert!(back == data);
    assert_eq!(request(&mut s, NBD_CMD_READ, 0, 0, 0, &[]), (0, Vec::new()));
    assert_eq!(server.stats().pending_writes, 1);
    assert!(server.durable_image()[1000..9192].iter().all(|&b| b == 0));
    assert_eq!(request(&mut s, NBD_CMD_FLUSH, 0, 0, 0, &[]).0, 0);
    assert!(server.durable_image()[1000..9192] == data[..]);

    // A write with FUA (never advertised) is written and flushed with all before it.
    assert_eq!(
        request(&mut s, NBD_CMD_WRITE, 0, 0, 512, &filled(512, 1)).0,
        0
    );
    assert_eq!(
        request(
            &mut s,
            NBD_CMD_WRITE,
            NBD_CMD_FLAG_FUA,
            512,
            512,
            &filled(512, 2)
        )
        .0,
        0
    );
    let stats = server.stats();
    assert_eq!((stats.pending_writes, stats.flushes), (0, 2), "{stats:?}");
    assert_all(
        &server.durable_image(),
        0,
        512,
        1,
        "the write before the FUA write",
    );
    assert_all(&server.durable_image(), 512, 512, 2, "the FUA write");

    // A clean disconnect keeps what is pending.
    assert_eq!(
        request(&mut s, NBD_CMD_WRITE, 0, 4096, 512, &filled(512, 3)).0,
        0
    );
    s.write_all(&encode_request(NBD_CMD_DISC, 0, 9, 0, 0))
        .unwrap();
    assert_closed(s, "after NBD_CMD_DISC");
    wait_idle_keeping(&server, 1);
}

/// Waits for the client to go without cutting, and checks that `pending` writes are
/// still pending: a new client is only greeted once the previous one is gone.
fn wait_idle_keeping(server: &FlashServer, pending: usize) {
    let connections = server.stats().connections;
    let mut s = connect(server);
    greeting(&mut s);
    assert_eq!(server.stats().connections, connections + 1);
    assert_eq!(server.stats().pending_writes, pending);
}

#[test]
fn handshake_options() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    // Old-style end of haggling, without NO_ZEROES: size, flags and 124 zeroes.
    let mut s = connect(&server);
    greeting(&mut s);
    s.write_all(&NBD_FLAG_C_FIXED_NEWSTYLE.to_be_bytes())
        .unwrap();
    // Unsupported options are refused and haggling goes on.
    for option in [NBD_OPT_STRUCTURED_REPLY, 5, 9, 10, 11, 0x1234] {
        send_option(&mut s, option, b"whatever");
        let (o, reply, _) = option_reply(&mut s);
        assert_eq!((o, reply), (option, NBD_REP_ERR_UNSUP));
    }
    send_option(&mut s, NBD_OPT_LIST, &[]);
    assert_eq!(
        option_reply(&mut s),
        (NBD_OPT_LIST, NBD_REP_SERVER, vec![0; 4])
    );
    assert_eq!(option_reply(&mut s), (NBD_OPT_LIST, NBD_REP_ACK, vec![]));
    send_option(&mut s, NBD_OPT_LIST, b"x");
    assert_eq!(option_reply(&mut s).1, NBD_REP_ERR_INVALID);
    // INFO with inconsistent data, then a good one (any export name will do).
    send_option(&mut s, NBD_OPT_INFO, &[0, 0, 0, 9, b'a', 0, 0]);
    assert_eq!(option_reply(&mut s).1, NBD_REP_ERR_INVALID);
    send_option(&mut s, NBD_OPT_INFO, &go_data(b"anything", &[]));
    let (o, reply, data) = option_reply(&mut s);
    assert_eq!(
        (o, reply, u16_at(&data, 0)),
        (NBD_OPT_INFO, NBD_REP_INFO, NBD_INFO_EXPORT)
    );
    assert_eq!(u64_at(&data, 2), DISK as u64);
    assert_eq!(
        option_reply(&mut s).1,
        NBD_REP_ACK,
        "no block sizes unless asked"
    );
    send_option(&mut s, NBD_OPT_EXPORT_NAME, b"flash");
    let r = read_n(&mut s, 8 + 2 + 124);
    assert_eq!(u64_at(&r, 0), DISK as u64);
    assert_eq!(u16_at(&r, 8), TRANSMISSION_FLAGS);
    assert!(r[10..].iter().all(|&b| b == 0));
    assert_eq!(
        request(&mut s, NBD_CMD_READ, 0, 0, 512, &[]),
        (0, filled(512, 0))
    );
    drop(s);

    // With NO_ZEROES: no zeroes.
    let mut s = connect(&server);
    greeting(&mut s);
    s.write_all(&(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    send_option(&mut s, NBD_OPT_EXPORT_NAME, b"");
    let r = read_n(&mut s, 10);
    assert_eq!(u64_at(&r, 0), DISK as u64);
    assert_eq!(
        request(&mut s, NBD_CMD_FLUSH, 0, 0, 0, &[]).0,
        0,
        "no zeroes came first"
    );
    drop(s);

    // Abort.
    let mut s = connect(&server);
    greeting(&mut s);
    s.write_all(&NBD_FLAG_C_FIXED_NEWSTYLE.to_be_bytes())
        .unwrap();
    send_option(&mut s, NBD_OPT_ABORT, &[]);
    assert_eq!(option_reply(&mut s), (NBD_OPT_ABORT, NBD_REP_ACK, vec![]));
    assert_closed(s, "after NBD_OPT_ABORT");

    // QEMU's own negotiation.
    qemu_io(&server, Session::ReadOnly, &["read -P 0 0 4k"]);

    let socket = server.socket().display().to_string();
    assert_eq!(server.url(), format!("nbd+unix:///?socket={socket}"));
    assert_eq!(
        server.drive_option("flash"),
        format!(
            "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={socket},\
             if=none,id=flash,cache=writeback"
        )
    );
}

#[test]
fn drop_stops_the_server_even_with_a_client_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let socket = server.socket().to_path_buf();
    let (s, _, _) = transmission(&server);
    assert!(socket.exists());
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        started.elapsed()
    );
    assert!(!socket.exists(), "the socket is removed");
    assert_closed(s, "after the server was dropped");
    // A stale socket file is replaced by the next server.
    let _stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = FlashServer::start(vec![0; 4096], &socket);
    let (_, size, _) = transmission(&server);
    assert_eq!(size, 4096);
}

// ---------------------------------------------------------------------------------
// 5: the sans-IO parts
// ---------------------------------------------------------------------------------

#[test]
fn request_parser() {
    let h = encode_request(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0xdead_beef, 4096, 512);
    assert_eq!(h.len(), REQUEST_HEADER_LEN);
    let r = parse_request(&h).unwrap();
    assert_eq!(
        r,
        Request {
            command: NbdCommand::Write,
            flags: NBD_CMD_FLAG_FUA,
            cookie: 0xdead_beef,
            offset: 4096,
            length: 512
        }
    );
    assert!(r.fua());
    assert!(r.in_range(4608));
    assert!(!r.in_range(4607));
    let huge = parse_request(&encode_request(NBD_CMD_READ, 0, 0, u64::MAX, 1)).unwrap();
    assert!(!huge.in_range(u64::MAX), "offset + length overflows");

    for (cmd, want) in [
        (NBD_CMD_READ, NbdCommand::Read),
        (NBD_CMD_DISC, NbdCommand::Disconnect),
        (NBD_CMD_FLUSH, NbdCommand::Flush),
        (4, NbdCommand::Other(4)),
        (0xffff, NbdCommand::Other(0xffff)),
    ] {
        assert_eq!(
            parse_request(&encode_request(cmd, 0, 0, 0, 0))
                .unwrap()
                .command,
            want
        );
        assert!(!parse_request(&encode_request(cmd, 0, 0, 0, 0))
            .unwrap()
            .fua());
    }

    assert_eq!(
        parse_request(&encode_request(NBD_CMD_READ, 0, 0, 0, MAX_REQUEST)).map(|r| r.length),
        Ok(MAX_REQUEST)
    );
    assert_eq!(
        parse_request(&encode_request(NBD_CMD_READ, 0, 0, 0, MAX_REQUEST + 1)),
        Err(ProtocolError::RequestTooLong(MAX_REQUEST + 1))
    );
    assert_eq!(
        parse_request(&encode_request(NBD_CMD_FLUSH, 0, 0, 0, u32::MAX)),
        Err(ProtocolError::RequestTooLong(u32::MAX))
    );
    let mut bad = h.clone();
    bad[0] ^= 1;
    assert_eq!(
        parse_request(&bad),
        Err(ProtocolError::BadRequestMagic(0x2460_9513))
    );
    assert_eq!(
        parse_request(&h[..27]),
        Err(ProtocolError::Truncated {
            expected: 28,
            got: 27
        })
    );
    assert!(parse_request(&[]).is_err());
    let mut long = h;
    long.push(0);
    assert!(parse_request(&long).is_err());
}

#[test]
fn handshake_parsers() {
    assert_eq!(parse_client_flags(0), Ok(false));
    assert_eq!(parse_client_flags(NBD_FLAG_C_FIXED_NEWSTYLE), Ok(false));
    assert_eq!(parse_client_flags(3), Ok(true));
    assert_eq!(
        parse_client_flags(4),
        Err(ProtocolError::UnknownClientFlags(4))
    );

    let mut h = IHAVEOPT.to_be_bytes().to_vec();
    h.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
    h.extend_from_slice(&10u32.to_be_bytes());
    assert_eq!(parse_option_header(&h), Ok((NBD_OPT_GO, 10)));
    let mut long = h.clone();
    long[12..16].copy_from_slice(&(MAX_OPTION + 1).to_be_bytes());
    assert_eq!(
        parse_option_header(&long),
        Err(ProtocolError::OptionTooLong(MAX_OPTION + 1))
    );
    let mut bad = h.clone();
    bad[7] = 0;
    assert!(matches!(
        parse_option_header(&bad),
        Err(ProtocolError::BadOptionMagic(_))
    ));
    assert!(matches!(
        parse_option_header(&h[..15]),
        Err(ProtocolError::Truncated { .. })
    ));

    assert_eq!(
        parse_info_request(&go_data(b"disk", &[3, 0])),
        Some(InfoRequest {
            name: b"disk".to_vec(),
            infos: vec![3, 0]
        })
    );
    assert_eq!(
        parse_info_request(&go_data(b"", &[])),
        Some(InfoRequest {
            name: vec![],
            infos: vec![]
        })
    );
    assert_eq!(parse_info_request(&[0, 0, 0, 0, 0]), None, "too short");
    assert_eq!(
        parse_info_request(&[0, 0, 0, 1, 0, 0]),
        None,
        "name longer than the data"
    );
    assert_eq!(parse_info_request(&[0xff, 0xff, 0xff, 0xff, 0, 0]), None);
    let mut extra = go_data(b"x", &[3]);
    extra.push(0);
    assert_eq!(
        parse_info_request(&extra),
        None,
        "count does not match the list"
    );
    let short = go_data(b"x", &[3, 0]);
    assert_eq!(parse_info_request(&short[..short.len() - 2]), None);

    // The GO replies: export info (+ block sizes if asked), then ACK.
    let replies = info_replies(
        NBD_OPT_GO,
        &parse_info_request(&go_data(b"", &[3])).unwrap(),
        1 << 20,
    );
    assert_eq!(replies.len(), (20 + 12) + (20 + 14) + 20);
    assert_eq!(u64_at(&replies, 0), OPTION_REPLY_MAGIC);
    assert_eq!(u32_at(&replies, 12), NBD_REP_INFO);
    assert_eq!(u64_at(&replies, 22), 1 << 20);
    assert_eq!(u16_at(&replies, 30), TRANSMISSION_FLAGS);
    assert_eq!(u32_at(&replies, 32 + 12), NBD_REP_INFO);
    assert_eq!(u16_at(&replies, 32 + 20), NBD_INFO_BLOCK_SIZE);
    assert_eq!(u32_at(&replies, 66 + 12), NBD_REP_ACK);
}

#[test]
fn reads_overlay_pending_writes_in_order_and_flush_applies_them() {
    let mut disk = Disk::new(filled(16 * 1024, 0));
    disk.write(0, filled(8192, 1));
    disk.write(4096, filled(4096, 2));
    disk.write(6000, filled(100, 3));
    disk.write(100, Vec::new());
    assert_eq!(disk.pending().len(), 3, "an empty write is nothing");
    let r = disk.read(4000, 2200);
    assert!(r[..96].iter().all(|&b| b == 1));
    assert!(r[96..2000].iter().all(|&b| b == 2));
    assert!(r[2000..2100].iter().all(|&b| b == 3));
    assert!(r[2100..].iter().all(|&b| b == 2));
    assert!(
        disk.durable().iter().all(|&b| b == 0),
        "nothing durable before a flush"
    );
    assert_eq!(disk.read(12288, 4096), filled(4096, 0));

    let seen = disk.read(0, 16 * 1024);
    disk.flush();
    assert!(disk.pending().is_empty());
    assert!(
        disk.durable() == &seen[..],
        "the flush makes durable what was seen"
    );
    assert!(disk.read(0, 16 * 1024) == seen);
}

#[test]
fn pieces_are_cut_at_page_boundaries() {
    assert_eq!(pieces(0, 4096), vec![(0, 4096)]);
    assert_eq!(pieces(0, 8192), vec![(0, 4096), (4096, 4096)]);
    assert_eq!(
        pieces(1000, 9000),
        vec![(1000, 3096), (4096, 4096), (8192, 1808)]
    );
    assert_eq!(pieces(4096, 512), vec![(4096, 512)]);
    assert_eq!(pieces(4000, 96), vec![(4000, 96)]);
    assert_eq!(pieces(4000, 97), vec![(4000, 96), (4096, 1)]);
    assert_eq!(pieces(7, 0), vec![]);
}

#[test]
fn splitmix64_matches_the_reference() {
    // The first outputs of SplitMix64 seeded with 0 (Vigna's reference code).
    let mut rng = SplitMix64::new(0);
    assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
}

#[test]
fn cuts_on_the_model() {
    let base = Disk::new(filled(16 * 1024, 0));

    let mut disk = base.clone();
    disk.write(0, filled(4096, 9));
    disk.flush();
    disk.write(1000, filled(9000, 1));
    let r = disk.clone().cut(CutMode::LoseUnflushed);
    assert_eq!(
        r,
        CutReport {
            pending_writes: 1,
            pending_bytes: 9000,
            kept_pieces: 0,
            dropped_pieces: 3
        }
    );
    assert_eq!(
        r.to_string(),
        "power cut: 1 pending writes (9000 bytes) in 3 pieces: 0 kept, 3 dropped"
    );
    let mut lost = disk.clone();
    lost.cut(CutMode::LoseUnflushed);
    assert!(lost.pending().is_empty());
    assert!(
        lost.durable()[..4096].iter().all(|&b| b == 9)
            && lost.durable()[4096..].iter().all(|&b| b == 0)
    );

    // Two versions of the same page, unflushed: every outcome a drive may produce
    // happens for some seed (neither, old only, new only, both = new), and no other.
    let mut twice = base.clone();
    twice.write(0, filled(4096, 0xaa));
    twice.write(0, filled(4096, 0xbb));
    let mut outcomes = std::collections::BTreeMap::new();
    for seed in 0..64 {
        let mut d = twice.clone();
        let r = d.cut(CutMode::KeepRandomSubset { seed });
        let first = d.durable()[0];
        assert!(
            d.durable()[..4096].iter().all(|&b| b == first),
            "seed {seed}: torn page"
        );
        let expected = match r.kept_pieces {
            0 => vec![0],
            1 => vec![0xaa, 0xbb],
            _ => vec![0xbb],
        };
        assert!(
            expected.contains(&first),
            "seed {seed}: {r} left {first:#x}"
        );
        *outcomes.entry((r.kept_pieces, first)).or_insert(0) += 1;
        // Deterministic.
        let mut again = twice.clone();
        assert_eq!(again.cut(CutMode::KeepRandomSubset { seed }), r);
        assert!(again.durable() == d.durable());
    }
    let seen: Vec<_> = outcomes.keys().copied().collect();
    assert_eq!(
        seen,
        vec![(0, 0), (1, 0xaa), (1, 0xbb), (2, 0xbb)],
        "{outcomes:?}"
    );
}

/// An operation on the model for the property test.
#[derive(Debug, Clone)]
enum Op {
    Write { offset: usize, len: usize, byte: u8 },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..32 * 1024, 1usize..12 * 1024, any::<u8>()).prop_map(|(o, l, b)| {
            let offset = o.min(32 * 1024 - 1);
            Op::Write { offset, len: l.min(32 * 1024 - offset), byte: b }
        }),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Against a naive model: reads see every write, `LoseUnflushed` leaves the image
    /// of the last flush, and `KeepRandomSubset` changes nothing outside the pending
    /// writes and leaves every page either as flushed or as some pending write made it.
    #[test]
    fn the_model_matches_a_naive_one(ops in prop::collection::vec(op(), 0..24), seed in any::<u64>()) {
        let mut disk = Disk::new(vec![0; 32 * 1024]);
        let mut seen = vec![0u8; 32 * 1024];
        let mut flushed = seen.clone();
        for op in &ops {
            match *op {
                Op::Write { offset, len, byte } => {
                    disk.write(offset as u64, vec![byte; len]);
                    seen[offset..offset + len].fill(byte);
                }
                Op::Flush => {
                    disk.flush();
                    flushed = seen.clone();
                }
            }
            prop_assert!(disk.read(0, seen.len()) == seen);
            prop_assert!(disk.durable() == &flushed[..]);
        }
        let mut lost = disk.clone();
        lost.cut(CutMode::LoseUnflushed);
        prop_assert!(lost.durable() == &flushed[..]);

        let pending = disk.pending().to_vec();
        let mut kept = disk.clone();
        let r = kept.cut(CutMode::KeepRandomSubset { seed });
        prop_assert_eq!(r.pending_writes, pending.len());
        let total: usize = pending.iter().map(|w| pieces(w.offset, w.data.len() as u64).len()).sum();
        prop_assert_eq!(r.kept_pieces + r.dropped_pieces, total);
        for (i, (&now, &before)) in kept.durable().iter().zip(&flushed).enumerate() {
            if now != before {
                prop_assert!(
                    pending.iter().any(|w| {
                        let s = w.offset as usize;
                        (s..s + w.data.len()).contains(&i) && w.data[i - s] == now
                    }),
                    "byte {} became {:#x}, which no pending write wrote there", i, now
                );
            }
        }
    }
}
