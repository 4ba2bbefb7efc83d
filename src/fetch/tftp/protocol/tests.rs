//! The TFTP read against scripted servers, and against a model server over a simulated
//! network that loses, duplicates and reorders packets.

use super::*;
use proptest::prelude::*;

const SERVER: &str = "10.0.0.1:69";
const TID: &str = "10.0.0.1:40000";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn timing() -> Timing {
    Timing {
        interval: Duration::from_secs(1),
        answer: Duration::from_secs(10),
        total: Duration::from_secs(60),
    }
}

fn start(now: Instant) -> Read {
    Read::new("phones/a-license.cfg", addr(SERVER), timing(), now)
}

fn sent(read: &mut Read) -> Vec<Transmit> {
    std::iter::from_fn(|| read.poll_transmit()).collect()
}

fn oack(options: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = OACK.to_be_bytes().to_vec();
    for (name, value) in options {
        for field in [name, value] {
            bytes.extend_from_slice(field.as_bytes());
            bytes.push(0);
        }
    }
    bytes
}

fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = DATA.to_be_bytes().to_vec();
    bytes.extend_from_slice(&block.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn server_error(code: u16, message: &str) -> Vec<u8> {
    error(code, message)
}

/// The opcode and the block or code of a packet the client sent.
fn head(packet: &Transmit) -> (u16, u16) {
    let (op, rest) = be16(&packet.bytes).unwrap();
    (op, be16(rest).map_or(0, |(n, _)| n))
}

/// The options of a request, as text fields after the file name and mode.
fn request_fields(packet: &Transmit) -> Vec<String> {
    packet.bytes[2..]
        .split(|&b| b == 0)
        .map(|f| String::from_utf8(f.to_vec()).unwrap())
        .collect()
}

#[test]
fn a_read_with_options_acknowledges_each_block_and_ends_on_a_short_one() {
    let t0 = Instant::now();
    let mut read = start(t0);
    let request = sent(&mut read);
    assert_eq!(request.len(), 1);
    assert_eq!(request[0].to, addr(SERVER));
    assert_eq!(
        request_fields(&request[0]),
        [
            "phones/a-license.cfg",
            "octet",
            "blksize",
            "1428",
            "timeout",
            "1",
            "tsize",
            "0",
            ""
        ]
    );
    let file: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    read.on_datagram(
        addr(TID),
        &oack(&[("blksize", "1428"), ("tsize", "2000"), ("timeout", "1")]),
        t0,
    );
    let acks = sent(&mut read);
    assert_eq!(acks.iter().map(head).collect::<Vec<_>>(), [(ACK, 0)]);
    assert_eq!(acks[0].to, addr(TID));
    read.on_datagram(addr(TID), &data(1, &file[..1428]), t0);
    read.on_datagram(addr(TID), &data(2, &file[1428..]), t0);
    let acks = sent(&mut read);
    assert_eq!(
        acks.iter().map(head).collect::<Vec<_>>(),
        [(ACK, 1), (ACK, 2)]
    );
    assert_eq!(read.outcome(), Some(&Ok(file)));
    assert_eq!(read.wake_at(), None);
}

#[test]
fn a_server_ignoring_the_options_sends_blocks_of_512_and_a_final_empty_one() {
    let t0 = Instant::now();
    let mut read = start(t0);
    sent(&mut read);
    read.on_datagram(addr(TID), &data(1, &[7; 512]), t0);
    read.on_datagram(addr(TID), &data(2, &[]), t0);
    assert_eq!(
        sent(&mut read).iter().map(head).collect::<Vec<_>>(),
        [(ACK, 1), (ACK, 2)]
    );
    assert_eq!(read.outcome(), Some(&Ok(vec![7; 512])));
}

#[test]
fn refused_options_make_one_plain_request_and_a_missing_file_is_not_found() {
    for code in [E_OPTIONS, E_NOT_DEFINED, E_ILLEGAL] {
        let t0 = Instant::now();
        let mut read = start(t0);
        sent(&mut read);
        read.on_datagram(addr(TID), &server_error(code, "no options"), t0);
        let again = sent(&mut read);
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].to,
            addr(SERVER),
            "to the server's port, not the old TID"
        );
        assert_eq!(
            request_fields(&again[0]),
            ["phones/a-license.cfg", "octet", ""]
        );
        // The plain request is not asked twice: a refusal now is the answer.
        read.on_datagram(addr("10.0.0.1:40001"), &server_error(code, "still no"), t0);
        assert_eq!(
            read.outcome(),
            Some(&Err(Failure::Error {
                code,
                message: "still no".into()
            }))
        );
    }
    let t0 = Instant::now();
    let mut read = start(t0);
    read.on_datagram(addr(TID), &server_error(E_NOT_FOUND, "File not found"), t0);
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::NotFound("File not found".into())))
    );
}

#[test]
fn an_announced_size_over_the_bound_is_refused_before_any_data() {
    let t0 = Instant::now();
    let mut read = start(t0);
    sent(&mut read);
    read.on_datagram(addr(TID), &oack(&[("tsize", "65537")]), t0);
    let out = sent(&mut read);
    assert_eq!(
        out.iter().map(head).collect::<Vec<_>>(),
        [(ERROR, E_OPTIONS)]
    );
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::TooBig {
            announced: Some(65_537)
        }))
    );
    // At the bound exactly, it is read.
    let mut read = start(t0);
    read.on_datagram(addr(TID), &oack(&[("tsize", "65536")]), t0);
    assert_eq!(read.outcome(), None);
}

#[test]
fn a_file_growing_past_the_bound_is_abandoned_at_the_first_byte_too_many() {
    let t0 = Instant::now();
    let mut read = start(t0);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    let mut block = 1u16;
    while read.outcome().is_none() {
        block += 1;
        read.on_datagram(addr(TID), &data(block, &[1; 512]), t0);
    }
    assert_eq!(
        block, 129,
        "128 blocks of 512 are the bound; the 129th is one too many"
    );
    let out = sent(&mut read);
    assert_eq!(out.last().map(head), Some((ERROR, E_ALLOCATION)));
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::TooBig { announced: None }))
    );
}

#[test]
fn duplicates_get_no_answer_and_a_lost_ack_is_sent_again_with_back_off() {
    let t0 = Instant::now();
    let mut read = start(t0);
    sent(&mut read);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    assert_eq!(
        sent(&mut read).iter().map(head).collect::<Vec<_>>(),
        [(ACK, 1)]
    );
    // The same block again (a duplicate, or the server's retransmission): no ACK now.
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    // A block from the future cannot exist in lock-step: ignored.
    read.on_datagram(addr(TID), &data(3, &[1; 512]), t0);
    assert!(sent(&mut read).is_empty());
    // The timer repeats the last ACK at 1, then 2, 4, 8, 8 seconds' intervals.
    let mut at = t0;
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let wake = read.wake_at().unwrap();
        gaps.push((wake - at).as_secs());
        at = wake;
        read.on_timer(wake);
        assert_eq!(
            sent(&mut read).iter().map(head).collect::<Vec<_>>(),
            [(ACK, 1)]
        );
    }
    assert_eq!(gaps, [1, 2, 4, 8, 8]);
    // A new block resets the interval.
    read.on_datagram(addr(TID), &data(2, &[1; 512]), at);
    sent(&mut read);
    assert_eq!(read.wake_at(), Some(at + Duration::from_secs(1)));
}

#[test]
fn strangers_change_nothing_and_other_ports_of_the_server_get_error_5() {
    let t0 = Instant::now();
    let mut read = start(t0);
    sent(&mut read);
    // Another host, before and after the transfer started: ignored without a word.
    read.on_datagram(addr("10.0.0.9:40000"), &data(1, &[9; 10]), t0);
    assert!(sent(&mut read).is_empty());
    assert_eq!(read.outcome(), None);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    sent(&mut read);
    // A second transfer of the server (a request sent twice): ERROR 5 to it.
    read.on_datagram(addr("10.0.0.1:40001"), &data(1, &[2; 512]), t0);
    read.on_datagram(addr("10.0.0.1:40001"), &data(2, &[2; 3]), t0);
    let out = sent(&mut read);
    assert_eq!(
        out.iter().map(|p| (p.to, head(p))).collect::<Vec<_>>(),
        [
            (addr("10.0.0.1:40001"), (ERROR, E_UNKNOWN_TID)),
            (addr("10.0.0.1:40001"), (ERROR, E_UNKNOWN_TID))
        ]
    );
    read.on_datagram(addr("10.0.0.9:40000"), &data(2, &[9; 3]), t0);
    read.on_datagram(addr(TID), &data(2, &[1; 3]), t0);
    let mut file = vec![1; 512];
    file.extend([1; 3]);
    assert_eq!(read.outcome(), Some(&Ok(file)));
}

#[test]
fn silence_is_no_answer_and_a_stalled_transfer_times_out() {
    let t0 = Instant::now();
    let mut read = start(t0);
    let mut sends = 0;
    let mut at = t0;
    while read.outcome().is_none() {
        sends += sent(&mut read).len();
        at = read.wake_at().unwrap();
        read.on_timer(at);
    }
    assert_eq!(at - t0, Duration::from_secs(10), "the answer time");
    // Sent at 0, 1, 3 and 7 s.
    assert_eq!(sends, 4);
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::NoAnswer {
            sends: 4,
            waited: Duration::from_secs(10)
        }))
    );

    let mut read = start(t0);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    let mut at = t0;
    while read.outcome().is_none() {
        at = read.wake_at().unwrap();
        read.on_timer(at);
    }
    assert_eq!(at - t0, Duration::from_secs(60), "the total time");
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::Timeout {
            received: 512,
            waited: Duration::from_secs(60)
        }))
    );
}

/// A server that, after block 1, floods that block again and again (one a millisecond)
/// and never sends block 2 is named as a flood of duplicates without progress, not as a
/// server that stopped sending; the read still ends at its total time, and the flood
/// gets no answer (only the timer's ACKs go out). A few duplicates and then silence is
/// a server that stopped.
#[test]
fn a_flood_of_duplicates_is_named_as_such_and_ends_at_the_total_time() {
    let t0 = Instant::now();
    let mut read = start(t0);
    sent(&mut read);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    sent(&mut read);
    let (mut now, mut flooded, mut fires) = (t0, 0u64, 0usize);
    let mut out = Vec::new();
    while read.outcome().is_none() {
        now += Duration::from_millis(1);
        while let Some(wake) = read.wake_at().filter(|&wake| wake <= now) {
            read.on_timer(wake);
            fires += 1;
        }
        if read.outcome().is_none() {
            read.on_datagram(addr(TID), &data(1, &[1; 512]), now);
            flooded += 1;
        }
        out.extend(sent(&mut read).iter().map(head));
    }
    assert_eq!(now - t0, Duration::from_secs(60), "the total time");
    assert_eq!(flooded, 59_999);
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::Flood {
            duplicates: flooded,
            received: 512,
            waited: Duration::from_secs(60)
        }))
    );
    assert!(out.iter().all(|&p| p == (ACK, 1)), "{out:?}");
    assert!(
        out.len() < fires,
        "{} sent for {fires} timer firings",
        out.len()
    );

    let mut read = start(t0);
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    for _ in 0..3 {
        read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    }
    while read.outcome().is_none() {
        let wake = read.wake_at().unwrap();
        read.on_timer(wake);
    }
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::Timeout {
            received: 512,
            waited: Duration::from_secs(60)
        }))
    );
}

#[test]
fn protocol_breaches_from_the_transfer_end_it_with_an_error_to_the_server() {
    let t0 = Instant::now();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0], E_ILLEGAL),
        (vec![0, 3, 0], E_ILLEGAL),
        (vec![0, 5], E_ILLEGAL),
        (ack(1), E_ILLEGAL),
        (vec![0, 9, 1, 2], E_ILLEGAL),
        (oack(&[("blksize", "65464")]), E_OPTIONS),
        (oack(&[("blksize", "7")]), E_OPTIONS),
        (oack(&[("windowsize", "4")]), E_OPTIONS),
        (oack(&[("timeout", "5")]), E_OPTIONS),
        (oack(&[("tsize", "-1")]), E_OPTIONS),
        (b"\x00\x06blksize\x00512".to_vec(), E_ILLEGAL),
        (b"\x00\x06blksize\x00".to_vec(), E_ILLEGAL),
        (b"\x00\x06".to_vec(), E_ILLEGAL),
        (b"\x00\x06bl\x01ksize\x00512\x00".to_vec(), E_ILLEGAL),
    ];
    for (packet, code) in cases {
        let mut read = start(t0);
        sent(&mut read);
        read.on_datagram(addr(TID), &packet, t0);
        let out = sent(&mut read);
        assert_eq!(
            out.iter().map(|p| (p.to, head(p))).collect::<Vec<_>>(),
            [(addr(TID), (ERROR, code))],
            "{packet:?}"
        );
        assert!(
            matches!(read.outcome(), Some(Err(Failure::Protocol(_)))),
            "{packet:?}: {:?}",
            read.outcome()
        );
    }
    // A block longer than the block size agreed.
    let mut read = start(t0);
    read.on_datagram(addr(TID), &oack(&[("blksize", "512")]), t0);
    read.on_datagram(addr(TID), &data(1, &[0; 513]), t0);
    assert!(matches!(read.outcome(), Some(Err(Failure::Protocol(_)))));
}

#[test]
fn a_file_shorter_than_announced_is_cut_and_a_late_oack_is_ignored() {
    let t0 = Instant::now();
    let mut read = start(t0);
    read.on_datagram(
        addr(TID),
        &oack(&[("blksize", "512"), ("tsize", "600")]),
        t0,
    );
    read.on_datagram(addr(TID), &data(1, &[1; 512]), t0);
    // The OACK again, late (ACK 0 was taken for lost): nothing.
    read.on_datagram(
        addr(TID),
        &oack(&[("blksize", "512"), ("tsize", "600")]),
        t0,
    );
    read.on_datagram(addr(TID), &data(2, &[1; 10]), t0);
    assert_eq!(
        read.outcome(),
        Some(&Err(Failure::Short {
            received: 522,
            announced: 600
        }))
    );
}

#[test]
fn error_messages_from_the_server_are_bounded_and_printable() {
    let t0 = Instant::now();
    let mut read = start(t0);
    let mut packet = ERROR.to_be_bytes().to_vec();
    packet.extend_from_slice(&2u16.to_be_bytes());
    packet.extend_from_slice(b"no\n\x1b[31m");
    packet.extend(std::iter::repeat_n(b'x', 5000));
    read.on_datagram(addr(TID), &packet, t0);
    let Some(Err(Failure::Error { code: 2, message })) = read.outcome() else {
        panic!("{:?}", read.outcome());
    };
    assert!(message.starts_with("no??[31m"), "{message}");
    assert_eq!(message.chars().count(), 200);
}

/// A correct TFTP sender (RFC 1350 with RFC 1123's fix: a block is sent again only when
/// its timer fires, never on a duplicate ACK), for the simulation.
struct ModelServer {
    file: Vec<u8>,
    blksize: usize,
    /// The block last sent and when it is sent again.
    block: u16,
    resend_at: Option<Instant>,
    finished: bool,
}

impl ModelServer {
    fn block_bytes(&self, block: u16) -> Vec<u8> {
        let start = (usize::from(block) - 1) * self.blksize;
        let end = (start + self.blksize).min(self.file.len());
        data(block, &self.file[start.min(end)..end])
    }

    fn blocks(&self) -> u16 {
        (self.file.len() / self.blksize + 1) as u16
    }
}

/// One datagram in flight: delivered at `at` to `to`.
struct InFlight {
    at: Instant,
    to_client: bool,
    from: SocketAddr,
    bytes: Vec<u8>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Over a network that loses, duplicates and delays (so reorders) datagrams, the read
    /// either gives the exact file or fails on time; it never gives other bytes, and it
    /// sends at most one packet per new block and timer firing (no amplification).
    #[test]
    fn a_lossy_network_never_corrupts_the_file_nor_multiplies_packets(
        size in 0usize..6000,
        seed in any::<u64>(),
        loss in 0u32..40,
        duplicate in 0u32..40,
        options in any::<bool>(),
    ) {
        let mut rng = seed | 1;
        let mut roll = move |percent: u32| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % 100) < u64::from(percent)
        };
        let file: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        let t0 = Instant::now();
        let server_tid = addr(TID);
        let mut server = ModelServer {
            file: file.clone(),
            blksize: if options { 1428 } else { 512 },
            block: 0,
            resend_at: None,
            finished: false,
        };
        let mut read = start(t0);
        let mut now = t0;
        let mut net: Vec<InFlight> = Vec::new();
        let mut client_sends = 0u32;
        let mut timer_fires = 0u32;
        let mut delay = 0u64;
        for _ in 0..100_000 {
            // The client's packets into the network.
            while let Some(packet) = read.poll_transmit() {
                client_sends += 1;
                for _ in 0..(1 + u32::from(roll(duplicate))) {
                    if !roll(loss) {
                        delay = (delay * 31 + 17) % 700;
                        net.push(InFlight {
                            at: now + Duration::from_millis(5 + delay),
                            to_client: false,
                            from: addr("10.0.0.2:5000"),
                            bytes: packet.bytes.clone(),
                        });
                    }
                }
            }
            if read.outcome().is_some() {
                break;
            }
            // The next event: a delivery, the client's timer or the server's.
            let next_net = net.iter().map(|p| p.at).min();
            let next = [next_net, read.wake_at(), server.resend_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            now = next;
            if read.wake_at() == Some(now) {
                timer_fires += 1;
                read.on_timer(now);
                continue;
            }
            let mut server_out = Vec::new();
            if server.resend_at == Some(now) {
                server.resend_at = Some(now + Duration::from_millis(1500));
                if server.block == 0 && options {
                    server_out.push(oack(&[("blksize", "1428"), ("tsize", &size.to_string()), ("timeout", "1")]));
                } else if server.block > 0 {
                    server_out.push(server.block_bytes(server.block));
                }
            } else {
                let index = net.iter().position(|p| p.at == now).unwrap();
                let packet = net.remove(index);
                if packet.to_client {
                    read.on_datagram(packet.from, &packet.bytes, now);
                } else if !server.finished {
                    // The server: a request starts the transfer, an ACK of the block
                    // last sent moves it on; duplicates are not answered.
                    let (op, rest) = be16(&packet.bytes).unwrap();
                    match op {
                        RRQ if server.resend_at.is_none() => {
                            server.resend_at = Some(now + Duration::from_millis(1500));
                            if options {
                                server_out.push(oack(&[("blksize", "1428"), ("tsize", &size.to_string()), ("timeout", "1")]));
                            } else {
                                server.block = 1;
                                server_out.push(server.block_bytes(1));
                            }
                        }
                        ACK => {
                            let acked = be16(rest).unwrap().0;
                            if acked == server.block {
                                if acked == server.blocks() {
                                    server.finished = true;
                                    server.resend_at = None;
                                } else {
                                    server.block += 1;
                                    server.resend_at = Some(now + Duration::from_millis(1500));
                                    server_out.push(server.block_bytes(server.block));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            for bytes in server_out {
                for _ in 0..(1 + u32::from(roll(duplicate))) {
                    if !roll(loss) {
                        delay = (delay * 31 + 17) % 700;
                        net.push(InFlight {
                            at: now + Duration::from_millis(5 + delay),
                            to_client: true,
                            from: server_tid,
                            bytes: bytes.clone(),
                        });
                    }
                }
            }
        }
        match read.outcome() {
            Some(Ok(bytes)) => prop_assert_eq!(bytes, &file),
            Some(Err(Failure::NoAnswer { .. })) => prop_assert!(now - t0 <= Duration::from_secs(10)),
            Some(Err(Failure::Timeout { .. })) => prop_assert!(now - t0 <= Duration::from_secs(60)),
            other => prop_assert!(false, "{:?}", other),
        }
        // The request, one ACK per block of the file (and ACK 0 for the OACK), and
        // one packet per timer firing: nothing more.
        let acks = u32::from(server.blocks()) + u32::from(options);
        prop_assert!(
            client_sends <= 1 + acks + timer_fires,
            "sent {} for {} blocks and {} timer firings", client_sends, acks, timer_fires
        );
    }
}
