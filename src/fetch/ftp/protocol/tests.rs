//! The control connection's words: replies in any pieces, multi-line replies, bounds, and
//! the EPSV, PASV, SIZE and MDTM answers, good and hostile.

use proptest::prelude::*;

use super::*;

fn replies(bytes: &[u8]) -> Result<Vec<Reply>, String> {
    let mut reader = ReplyReader::default();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (used, reply) = reader
            .push(rest)
            .map_err(|e| e.shown(&Secrets::default()))?;
        out.extend(reply);
        rest = &rest[used..];
    }
    Ok(out)
}

#[test]
fn one_line_and_multi_line_replies() {
    let got = replies(
        b"220 (vsFTPd 3.0.3)\r\n230-Welcome\r\n230-more\r\n 230 indented\r\n123 another code\r\n230 Login successful.\r\n",
    )
    .unwrap();
    assert_eq!(
        got,
        [
            Reply {
                code: 220,
                text: "(vsFTPd 3.0.3)".into()
            },
            Reply {
                code: 230,
                text: "Welcome\n230-more\n 230 indented\n123 another code\nLogin successful."
                    .into()
            },
        ]
    );
    // A bare code and a line ending in a lone LF.
    assert_eq!(replies(b"200\n").unwrap()[0].code, 200);
}

#[test]
fn a_reply_ends_where_its_bytes_end_and_the_rest_is_the_next() {
    let mut reader = ReplyReader::default();
    let (used, reply) = reader.push(b"150 Opening\r\n226 Done\r\n").unwrap();
    assert_eq!(used, 13);
    assert_eq!(reply.unwrap().code, 150);
}

#[test]
fn what_is_not_a_reply_is_a_protocol_error() {
    for bad in [
        &b"hello\r\n"[..],
        b"22 short\r\n",
        b"099 below\r\n",
        b"600 above\r\n",
        b"220x no separator\r\n",
    ] {
        assert!(replies(bad).is_err(), "{bad:?}");
    }
    let long = [b"220 ".to_vec(), vec![b'a'; MAX_LINE], b"\r\n".to_vec()].concat();
    assert!(replies(&long).unwrap_err().contains("line longer"));
    // An endless multi-line reply of short lines.
    let mut endless = b"220-banner\r\n".to_vec();
    for _ in 0..MAX_REPLY / 8 {
        endless.extend_from_slice(b"more..\r\n");
    }
    assert!(replies(&endless).unwrap_err().contains("reply longer"));
}

#[test]
fn commands_never_carry_a_second_line() {
    assert_eq!(command("TYPE", Some("I")).unwrap(), "TYPE I\r\n");
    assert_eq!(command("EPSV", None).unwrap(), "EPSV\r\n");
    for arg in ["a\r\nDELE x", "a\nb", "a\0"] {
        assert!(command("PASS", Some(arg)).is_err(), "{arg:?}");
    }
}

#[test]
fn epsv_and_pasv_ports() {
    assert_eq!(
        epsv_port("Entering Extended Passive Mode (|||40011|)").unwrap(),
        40011
    );
    assert_eq!(epsv_port("ok (!!!6446!)").unwrap(), 6446);
    for bad in [
        "(|||0|)",
        "(|||65536|)",
        "(||1|2|)",
        "no parens",
        "(|||x|)",
        "()",
        "(|||",
    ] {
        assert!(epsv_port(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        pasv_port("Entering Passive Mode (127,0,0,1,156,84).").unwrap(),
        156 * 256 + 84
    );
    assert_eq!(pasv_port("=10,0,0,2,1,2").unwrap(), 258);
    for bad in ["(1,2,3,4,5)", "(1,2,3,4,256,1)", "(1,2,3,4,0,0)", "nothing"] {
        assert!(pasv_port(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn size_replies() {
    assert_eq!(super::size("1234").unwrap(), 1234);
    assert!(super::size("-1").is_err() && super::size("12kB").is_err() && super::size("").is_err());
}

proptest! {
    /// Any bytes (reply-like lines of codes, text, random bytes, CR and LF), cut at any
    /// number of arbitrary points: never a panic, and the same replies (or the same refusal) as read whole.
    #[test]
    fn any_bytes_in_any_pieces(
        bytes in prop::collection::vec(
            (
                prop::sample::select(vec!["220 ", "230-", "230 ", "123 ", " 230 ", "230", "99 ", ""]),
                prop_oneof![
                    3 => "[ -~]{0,8}".prop_map(String::into_bytes),
                    1 => prop::collection::vec(any::<u8>(), 0..8),
                ],
                prop::sample::select(vec!["\r\n", "\r\n", "\n", "\r", ""]),
            )
                .prop_map(|(code, text, end)| [code.as_bytes(), &text, end.as_bytes()].concat()),
            0..40,
        ).prop_map(|lines| lines.concat()),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let whole = replies(&bytes);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut reader = ReplyReader::default();
        let mut pieces = Vec::new();
        let mut error = None;
        'outer: for cut in cuts.windows(2) {
            let mut rest = &bytes[cut[0]..cut[1]];
            while !rest.is_empty() {
                match reader.push(rest) {
                    Ok((used, reply)) => { pieces.extend(reply); rest = &rest[used..]; }
                    Err(e) => { error = Some(e); break 'outer; }
                }
            }
        }
        match whole {
            Ok(all) => { prop_assert!(error.is_none()); prop_assert_eq!(all, pieces); }
            Err(_) => prop_assert!(error.is_some()),
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = (epsv_port(&text), pasv_port(&text), size(&text));
    }
}
