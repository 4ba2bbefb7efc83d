//! The TFTP driver over real UDP sockets on 127.0.0.1 with a minimal scripted server:
//! addresses tried in turn, and the outcomes the daemon sees.

use std::net::UdpSocket;
use std::path::Path;
use std::thread;

use super::*;
use crate::config::Secs;

fn settings(connect: u64, total: u64) -> Fetch {
    Fetch {
        connect_timeout: Secs(connect),
        total_timeout: Secs(total),
        ..Fetch::default()
    }
}

/// Serves one read request for any name: `file` in blocks of 512 without options (the
/// request's options are ignored), or ERROR 1 when `file` is `None`. Returns its address.
fn one_shot_server(file: Option<Vec<u8>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let Ok((_, client)) = socket.recv_from(&mut buf) else {
            return;
        };
        // The transfer from a port of its own, as RFC 1350 asks.
        let transfer = UdpSocket::bind("127.0.0.1:0").unwrap();
        transfer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let Some(file) = file else {
            let _ = transfer.send_to(b"\x00\x05\x00\x01File not found\x00", client);
            return;
        };
        for (index, chunk) in file.chunks(512).chain([&[][..]]).enumerate() {
            let block = (index + 1) as u16;
            let mut packet = vec![0, 3];
            packet.extend_from_slice(&block.to_be_bytes());
            packet.extend_from_slice(chunk);
            let _ = transfer.send_to(&packet, client);
            if transfer.recv_from(&mut buf).is_err() || chunk.len() < 512 {
                return;
            }
        }
    });
    addr
}

#[test]
fn addresses_are_tried_in_turn_until_one_answers() {
    let tftp = Tftp::new(
        &ServerUrl::test("tftp://prov.example.test/phones/"),
        &settings(1, 10),
    );
    assert_eq!(tftp.folder, "phones/");
    // Nothing listens on the first address (a socket bound and kept quiet).
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let file: Vec<u8> = (0..1300u32).map(|i| i as u8).collect();
    let live = one_shot_server(Some(file.clone()));
    let outcome = tftp.fetch_from(
        "tftp://prov.example.test/phones/x",
        "phones/x",
        vec![dead.local_addr().unwrap(), live],
    );
    assert_eq!(outcome, FetchOutcome::Body { bytes: file });
    // "File not found" is an answer: the address after it is not asked.
    let missing = one_shot_server(None);
    let never = UdpSocket::bind("127.0.0.1:0").unwrap();
    let outcome = tftp.fetch_from("u", "x", vec![missing, never.local_addr().unwrap()]);
    let FetchOutcome::Absent { answer } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(answer.contains("TFTP error 1 (File not found)"), "{answer}");
    let mut buf = [0u8; 100];
    never.set_nonblocking(true).unwrap();
    assert!(
        never.recv_from(&mut buf).is_err(),
        "the second address was asked"
    );
}

#[test]
fn no_answer_from_any_address_names_each_one() {
    let tftp = Tftp::new(&ServerUrl::test("tftp://h/"), &settings(1, 10));
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let FetchOutcome::Failed(e) = tftp.fetch_from("tftp://h/x", "x", vec![a, b]) else {
        panic!("not a failure");
    };
    assert_eq!(e.kind, FailureKind::Timeout);
    assert_eq!(
        e.detail,
        format!("no answer from {a} (1 request in 1s), {b} (1 request in 1s)")
    );
}

#[test]
fn urls_name_host_port_and_folder() {
    let fetch = Fetch::default();
    for (url, host, port, folder) in [
        ("tftp://prov/", "prov", 69, ""),
        ("TFTP://10.0.0.1:6969/a/b/", "10.0.0.1", 6969, "a/b/"),
        ("tftp://[::1]:70/x/", "::1", 70, "x/"),
        ("tftp://[fe80::1]/", "fe80::1", 69, ""),
    ] {
        let tftp = Tftp::new(&ServerUrl::test(url), &fetch);
        assert_eq!(
            (tftp.host.as_str(), tftp.port, tftp.folder.as_str()),
            (host, port, folder),
            "{url}"
        );
    }
    for url in [
        "tftp://prov:0/",
        "tftp://prov:99999/",
        "tftp://prov:x/",
        "tftp://:69/",
        "tftp://[::1/",
        "tftp://[::1]x/",
    ] {
        // Refused when the configuration is read: a `Tftp` is only ever made from a
        // parsed URL (and which transport a scheme takes is `Fetcher::open`'s choice).
        let e = ServerUrl::parse(url, Path::new("/"), crate::config::TRANSPORTS).unwrap_err();
        assert!(!e.is_empty(), "{url}");
    }
}

/// A server that sends block 1 and then floods it again, a copy a millisecond, never
/// block 2: the fetch ends at its total timeout, and says that the server flooded
/// duplicates without progress (not that it stopped sending).
#[test]
fn a_flood_of_duplicates_ends_at_the_total_timeout_and_is_named() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = socket.local_addr().unwrap();
    thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let Ok((_, client)) = socket.recv_from(&mut buf) else {
            return;
        };
        let transfer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut block = vec![0, 3, 0, 1];
        block.extend_from_slice(&[b'x'; 512]);
        // Bounded: 6 s at most, whatever the client does.
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            let _ = transfer.send_to(&block, client);
            thread::sleep(Duration::from_millis(1));
        }
    });
    let tftp = Tftp::new(&ServerUrl::test("tftp://127.0.0.1/"), &settings(1, 2));
    let started = Instant::now();
    let FetchOutcome::Failed(e) = tftp.fetch_from("tftp://127.0.0.1/x", "x", vec![server]) else {
        panic!("not a failure");
    };
    let took = started.elapsed();
    assert_eq!(e.kind, FailureKind::Timeout, "{e}");
    assert!(
        e.detail.contains("flooded ")
            && e.detail
                .contains("duplicate DATA blocks without progress after 512 bytes"),
        "{e}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}: {e}");
}
