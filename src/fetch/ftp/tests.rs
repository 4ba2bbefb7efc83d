//! The FTP driver against a small scripted server on 127.0.0.1: what vsftpd (in
//! `tests/it/transports.rs`) never does: no `EPSV`, a `PASV` naming another host, a kept
//! control connection closed between files, a transfer shorter than `SIZE`, a stalled
//! data connection, an endless banner; and every way an upload can be refused.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use super::*;
use crate::config::Secs;

#[derive(Clone, Default)]
struct Script {
    files: BTreeMap<String, Vec<u8>>,
    no_epsv: bool,
    /// `SIZE` says this instead of the file's size.
    size_says: Option<u64>,
    /// The data connection sends nothing and stays open.
    stall_data: bool,
    /// The control connection is closed after this many RETRs.
    close_after: Option<usize>,
    /// ...saying `421` first, unasked.
    say_421: bool,
    /// Sent instead of the greeting.
    greeting: Option<Vec<u8>>,
    /// The password taken (`secret` when not set); another one is echoed in the `530`.
    password: Option<String>,
    /// `STOR` is refused with a `553` that echoes the password the login took.
    refuse_stor: bool,
    /// An echoed password starts at this character of the reply's text (after the
    /// code), dots filling up to it: so that it can straddle where a message cuts.
    echo_at: Option<usize>,
    /// The folder uploads go to, shared by every session (starts empty).
    folder: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    /// Every command received, in order (`PASS` included).
    log: Arc<Mutex<Vec<String>>>,
    /// `STOR` to a name that begins with a dot is refused (pure-ftpd `-x`).
    refuse_dot_names: bool,
    /// `STOR` or `RNTO` over a file that exists is refused (proftpd `AllowOverwrite off`).
    no_overwrite: bool,
    /// `RNFR` is refused.
    no_rename: bool,
    /// `DELE` is refused.
    no_delete: bool,
    /// `STOR` to a name that begins with a dot takes the data, keeps it, then answers
    /// `553` (an upload filter).
    refuse_dot_after_data: bool,
    /// Every `RNTO` is refused.
    no_rnto: bool,
    /// `STOR` to these names is refused.
    refuse_stor_of: Vec<String>,
}

impl Script {
    /// `words` then the password, starting at the character `echo_at` when set.
    fn echo(&self, words: &str, password: &str) -> String {
        let dots = self
            .echo_at
            .map_or(0, |at| at.saturating_sub(words.chars().count()));
        format!("{words}{}{password}", ".".repeat(dots))
    }
}

/// Serves control connections one after the other; counts them.
fn serve(script: Script) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    thread::spawn(move || {
        for control in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            thread::spawn(move || session(control, &script));
        }
    });
    (port, connections)
}

fn session(mut control: TcpStream, script: &Script) {
    let greeting = script
        .greeting
        .clone()
        .unwrap_or_else(|| b"220-Welcome\r\n220 scripted\r\n".to_vec());
    if control.write_all(&greeting).is_err() {
        return;
    }
    let mut lines = BufReader::new(control.try_clone().unwrap()).lines();
    let mut passive: Option<TcpListener> = None;
    let mut rename_from: Option<String> = None;
    let folder = &script.folder;
    let mut retrs = 0;
    let mut logged_in_with = String::new();
    let taken = script.password.as_deref().unwrap_or("secret");
    while let Some(Ok(line)) = lines.next() {
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        script.log.lock().unwrap().push(line.clone());
        // A file served, else one uploaded.
        let file = script
            .files
            .get(arg)
            .cloned()
            .or_else(|| folder.lock().unwrap().get(arg).cloned());
        let file = file.as_ref();
        let exists = |name: &str| folder.lock().unwrap().contains_key(name);
        let answer = match verb {
            "USER" => "331 password please".to_string(),
            "PASS" if arg == taken => {
                logged_in_with = arg.to_string();
                "230 in".into()
            }
            "PASS" => format!("530 {} is wrong", script.echo("Login incorrect: ", arg)),
            "STOR" if script.refuse_stor => format!(
                "553 {} may not write {arg}",
                script.echo("Could not create file: ", &logged_in_with)
            ),
            "STOR" if script.refuse_dot_names && arg.starts_with('.') => {
                "553 Prohibited file name".into()
            }
            "STOR" if script.refuse_stor_of.iter().any(|n| n == arg) => "553 Not here".into(),
            "STOR" if script.no_overwrite && exists(arg) => {
                "553 Overwrite permission denied".into()
            }
            "STOR" => {
                let Some(listener) = passive.take() else {
                    let _ = control.write_all(b"425 no data connection\r\n");
                    continue;
                };
                let (mut data, _) = listener.accept().unwrap();
                let _ = control.write_all(b"150 send it\r\n");
                let mut bytes = Vec::new();
                let _ = data.read_to_end(&mut bytes);
                folder.lock().unwrap().insert(arg.to_string(), bytes);
                if script.refuse_dot_after_data && arg.starts_with('.') {
                    "553 Prohibited file name".into()
                } else {
                    "226 stored".into()
                }
            }
            "RNFR" if script.no_rename => "550 Rename not allowed".into(),
            "RNFR" if exists(arg) => {
                rename_from = Some(arg.to_string());
                "350 go on".into()
            }
            "RNTO" if script.no_rnto => "553 Rename refused".into(),
            "RNTO" if script.no_overwrite && exists(arg) => {
                "553 Overwrite permission denied".into()
            }
            "RNTO" => match rename_from.take() {
                Some(from) => {
                    let mut files = folder.lock().unwrap();
                    let bytes = files.remove(&from).unwrap_or_default();
                    files.insert(arg.to_string(), bytes);
                    "250 renamed".into()
                }
                None => "503 RNFR first".into(),
            },
            "DELE" if script.no_delete => "550 Delete not allowed".into(),
            "DELE" if folder.lock().unwrap().remove(arg).is_some() => "250 deleted".into(),
            "TYPE" => "200 binary".into(),
            "SIZE" => match (file, script.size_says) {
                (None, _) => "550 no such file".into(),
                (Some(_), Some(n)) => format!("213 {n}"),
                (Some(f), None) => format!("213 {}", f.len()),
            },
            "EPSV" | "PASV" if verb == "EPSV" && script.no_epsv => "500 what".into(),
            "EPSV" | "PASV" => {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                passive = Some(listener);
                if verb == "EPSV" {
                    format!("229 Extended (|||{port}|)")
                } else {
                    // Another host: the client must use the control connection's.
                    format!("227 Passive (192,0,2,1,{},{})", port >> 8, port & 255)
                }
            }
            "RETR" => {
                let (Some(file), Some(listener)) = (file, passive.take()) else {
                    let _ = control.write_all(b"550 Failed to open file.\r\n");
                    continue;
                };
                let (mut data, _) = listener.accept().unwrap();
                let _ = control.write_all(b"150 here it comes\r\n");
                if script.stall_data {
                    thread::sleep(Duration::from_secs(30));
                    return;
                }
                let _ = data.write_all(file);
                drop(data);
                retrs += 1;
                let _ = control.write_all(b"226 done\r\n");
                if script.close_after == Some(retrs) {
                    if script.say_421 {
                        let _ = control.write_all(b"421 Timeout.\r\n");
                    }
                    return;
                }
                continue;
            }
            "QUIT" => return,
            _ => "502 not implemented".into(),
        };
        if control
            .write_all(format!("{answer}\r\n").as_bytes())
            .is_err()
        {
            return;
        }
    }
}

fn ftp(port: u16, total: u64) -> Ftp {
    let fetch = Fetch {
        username: Some("agent".into()),
        password: Some("secret".into()),
        connect_timeout: Secs(2),
        total_timeout: Secs(total),
        ..Fetch::default()
    };
    Ftp::new(
        &ServerUrl::test(&format!("ftp://127.0.0.1:{port}/")),
        &fetch,
        None,
    )
    .unwrap()
}

fn script(files: &[(&str, &[u8])]) -> Script {
    Script {
        files: files
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect(),
        ..Script::default()
    }
}

fn body(outcome: FetchOutcome) -> Vec<u8> {
    match outcome {
        FetchOutcome::Body { bytes } => bytes,
        other => panic!("not a body: {other:?}"),
    }
}

fn failure(outcome: FetchOutcome) -> FetchError {
    match outcome {
        FetchOutcome::Failed(e) => e,
        other => panic!("not a failure: {other:?}"),
    }
}

/// Each fetch downloads the file whole, over one control connection, and never asks
/// `MDTM`: the server's `SIZE` and time, the same for a renewal copied in with the old
/// file's time, prove nothing.
#[test]
fn two_files_over_one_control_connection_each_downloaded_whole_every_time() {
    let (port, connections) = serve(script(&[("a.cfg", b"first"), ("b.cfg", b"second")]));
    let client = ftp(port, 10);
    assert_eq!(body(client.fetch("a.cfg")), b"first");
    assert_eq!(body(client.fetch("b.cfg")), b"second");
    assert_eq!(body(client.fetch("a.cfg")), b"first");
    assert!(matches!(
        client.fetch("gone.cfg"),
        FetchOutcome::Absent { answer } if answer == "FTP 550 no such file"
    ));
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[test]
fn without_epsv_pasv_is_used_and_its_address_ignored() {
    let mut s = script(&[("a.cfg", b"over pasv")]);
    s.no_epsv = true;
    let (port, _) = serve(s);
    let client = ftp(port, 10);
    assert_eq!(body(client.fetch("a.cfg")), b"over pasv");
    assert_eq!(body(client.fetch("a.cfg")), b"over pasv");
}

/// Closed silently, or with an unasked `421` that waits in the socket (not to be taken
/// for the answer to `SIZE`).
#[test]
fn a_kept_control_connection_closed_between_files_is_made_again() {
    for say_421 in [false, true] {
        let mut s = script(&[("a.cfg", b"one"), ("b.cfg", b"two")]);
        s.close_after = Some(1);
        s.say_421 = say_421;
        let (port, connections) = serve(s);
        let client = ftp(port, 10);
        assert_eq!(body(client.fetch("a.cfg")), b"one");
        assert_eq!(body(client.fetch("b.cfg")), b"two", "421: {say_421}");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }
}

#[test]
fn a_transfer_shorter_than_size_said_is_cut() {
    let mut s = script(&[("a.cfg", b"short")]);
    s.size_says = Some(9);
    let (port, _) = serve(s);
    let e = failure(ftp(port, 10).fetch("a.cfg"));
    assert_eq!(e.kind, FailureKind::Cut, "{e}");
    assert!(
        e.detail.contains("5 bytes came where SIZE announced 9"),
        "{e}"
    );
}

#[test]
fn a_size_above_the_cap_is_refused_before_any_data() {
    let mut s = script(&[("a.cfg", b"tiny")]);
    s.size_says = Some(MAX_BODY as u64 + 1);
    let (port, _) = serve(s);
    let e = failure(ftp(port, 10).fetch("a.cfg"));
    assert_eq!(e.kind, FailureKind::TooBig, "{e}");
    assert!(e.detail.contains("not downloaded"), "{e}");
}

#[test]
fn a_body_above_the_cap_is_abandoned_while_streaming() {
    let big = vec![b'x'; MAX_BODY + 10];
    let mut s = script(&[("a.cfg", &big)]);
    s.size_says = Some(10); // SIZE lies
    let (port, _) = serve(s);
    let e = failure(ftp(port, 10).fetch("a.cfg"));
    assert_eq!(e.kind, FailureKind::TooBig, "{e}");
}

#[test]
fn a_stalled_data_connection_ends_at_the_total_timeout() {
    let mut s = script(&[("a.cfg", b"never")]);
    s.stall_data = true;
    let (port, _) = serve(s);
    let started = Instant::now();
    let e = failure(ftp(port, 1).fetch("a.cfg"));
    assert_eq!(e.kind, FailureKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "{e}");
}

#[test]
fn a_wrong_password_is_refused() {
    let (port, _) = serve(script(&[]));
    let fetch = Fetch {
        username: Some("agent".into()),
        password: Some("Wr0ng-pass".into()),
        ..Fetch::default()
    };
    let client = Ftp::new(
        &ServerUrl::test(&format!("ftp://127.0.0.1:{port}/")),
        &fetch,
        None,
    )
    .unwrap();
    let e = failure(client.fetch("a.cfg"));
    assert_eq!(e.kind, FailureKind::Refused, "{e}");
    // The server echoes the password: it is never shown.
    assert!(
        e.detail.contains("530 Login incorrect: *** is wrong"),
        "{e}"
    );
}

/// What of `password` `text` shows, if anything: the password whole, escaped (`\"` for
/// `"`, `\\` for `\`), or a beginning of it of 4 characters or more (a cut message
/// ending inside it); or no `***` where it was hidden.
fn shown_of(text: &str, password: &str) -> Option<String> {
    for form in [
        password.to_string(),
        password.escape_debug().to_string(),
        password.escape_default().to_string(),
    ] {
        for n in (4..=form.chars().count()).rev() {
            let start: String = form.chars().take(n).collect();
            if text.contains(&start) {
                return Some(format!("{start:?} of {password:?} shown: {text}"));
            }
        }
    }
    (!text.contains("***")).then(|| format!("no *** in {text}"))
}

/// Passwords a server echoes in an error reply, as a hostile tester chose them: with a
/// `"`, with a `\`, and one that straddles the 120 characters a reply is cut to. The
/// `echo_at` that puts each password across the cut.
const ECHOED: [(&str, Option<usize>); 3] = [
    ("pa\"ss\"word", None),
    ("back\\slash\\pw", None),
    ("Straddling-Secret-42", Some(110)),
];

/// A password the server echoes in its refusal of the login is hidden however it is
/// written and wherever the reply is cut, for a fetch and for an upload alike.
#[test]
fn a_password_echoed_in_a_refused_login_is_never_shown() {
    let mut leaks = Vec::new();
    for (password, echo_at) in ECHOED {
        let (port, _) = serve(Script {
            echo_at,
            ..Script::default()
        });
        let fetch = Fetch {
            username: Some("agent".into()),
            password: Some(password.into()),
            ..Fetch::default()
        };
        let client = Ftp::new(
            &ServerUrl::test(&format!("ftp://127.0.0.1:{port}/")),
            &fetch,
            None,
        )
        .unwrap();
        let fetched = failure(client.fetch("a.cfg"));
        let uploaded = client.upload("r.json", b"{}").unwrap_err();
        for e in [fetched, uploaded] {
            assert_eq!(e.kind, FailureKind::Refused, "{e}");
            assert!(e.detail.contains("530 Login incorrect: "), "{e}");
            leaks.extend(shown_of(&e.to_string(), password));
        }
    }
    assert_eq!(leaks, Vec::<String>::new());
}

/// A password the server echoes in its refusal of an upload (`STOR`, after a login it
/// took) is hidden the same way.
#[test]
fn a_password_echoed_in_a_refused_upload_is_never_shown() {
    let mut leaks = Vec::new();
    for (password, echo_at) in ECHOED {
        let (port, _) = serve(Script {
            password: Some(password.into()),
            refuse_stor: true,
            echo_at,
            ..Script::default()
        });
        let fetch = Fetch {
            username: Some("agent".into()),
            password: Some(password.into()),
            ..Fetch::default()
        };
        let client = Ftp::new(
            &ServerUrl::test(&format!("ftp://127.0.0.1:{port}/")),
            &fetch,
            None,
        )
        .unwrap();
        let e = client.upload("r.json", b"{}").unwrap_err();
        assert_eq!(e.kind, FailureKind::NoUploads, "{e}");
        assert!(
            e.detail
                .contains("STOR .part-r.json: 553 Could not create file: "),
            "{e}"
        );
        leaks.extend(shown_of(&e.to_string(), password));
    }
    assert_eq!(leaks, Vec::<String>::new());
}

#[test]
fn a_preliminary_greeting_is_followed_by_the_real_one() {
    let mut s = script(&[("a.cfg", b"late")]);
    s.greeting = Some(b"120 ready in 1 minute\r\n220 ready\r\n".to_vec());
    let (port, _) = serve(s);
    assert_eq!(body(ftp(port, 10).fetch("a.cfg")), b"late");
}

#[test]
fn an_endless_banner_or_garbage_is_a_protocol_error() {
    for greeting in [
        [b"220-".to_vec(), vec![b'x'; MAX_BODY]].concat(),
        b"HTTP/1.1 400 Bad Request\r\n".to_vec(),
    ] {
        let s = Script {
            greeting: Some(greeting),
            ..Script::default()
        };
        let (port, _) = serve(s);
        let e = failure(ftp(port, 10).fetch("a.cfg"));
        assert_eq!(e.kind, FailureKind::Protocol, "{e}");
    }
}

#[test]
fn nothing_listening_is_a_connect_failure_and_the_url_names_the_file() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = failure(ftp(port, 10).fetch("a.cfg"));
    assert_eq!(e.kind, FailureKind::Connect, "{e}");
    assert_eq!(e.url, format!("ftp://127.0.0.1:{port}/a.cfg"));
}

/// Uploads `bytes` as `r.json` to a server of `script` (a new client each time, as each
/// upload of the daemon is): what it gave, and the folder after it.
fn upload(
    script: &Script,
    bytes: &[u8],
) -> (
    Result<Option<String>, FetchError>,
    BTreeMap<String, Vec<u8>>,
) {
    let (port, _) = serve(script.clone());
    let result = ftp(port, 10).upload("r.json", bytes);
    // The server's session ends after the client's QUIT (a moment).
    let deadline = Instant::now() + Duration::from_secs(2);
    while script
        .log
        .lock()
        .unwrap()
        .last()
        .is_some_and(|l| l != "QUIT")
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(5));
    }
    let folder = script.folder.lock().unwrap().clone();
    (result, folder)
}

fn only_the_report(folder: &BTreeMap<String, Vec<u8>>, bytes: &[u8]) {
    assert_eq!(
        folder
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect::<Vec<_>>(),
        [("r.json", bytes)],
        "nothing but the report"
    );
}

/// The plain way: `STOR` to `.part-r.json`, then renamed over `r.json`; nothing to say.
#[test]
fn an_upload_goes_to_a_temporary_name_then_is_renamed() {
    let s = Script::default();
    for report in [&b"one"[..], b"two"] {
        let (result, folder) = upload(&s, report);
        assert_eq!(result, Ok(None));
        only_the_report(&folder, report);
    }
    let log = s.log.lock().unwrap().join("\n");
    assert!(
        log.contains("STOR .part-r.json\nRNFR .part-r.json\nRNTO r.json"),
        "{log}"
    );
}

/// pure-ftpd `-x` refuses names that begin with a dot (`553 Prohibited file name`): the
/// report goes up as `r.json.part`, renamed; not "takes no uploads" (finding 2).
#[test]
fn a_server_refusing_dot_names_takes_the_report_under_another_temporary_name() {
    let s = Script {
        refuse_dot_names: true,
        ..Script::default()
    };
    for report in [&b"one"[..], b"two"] {
        let (result, folder) = upload(&s, report);
        let tried = result.unwrap().expect("what was tried");
        assert!(
            tried.contains("STOR .part-r.json: 553 Prohibited file name"),
            "{tried}"
        );
        assert!(
            tried.contains("written as r.json.part and renamed"),
            "{tried}"
        );
        only_the_report(&folder, report);
    }
}

/// proftpd `AllowOverwrite off`: the second report's `RNTO` over the first is refused;
/// the first is deleted and the rename made again, and no temporary file stays
/// (finding 3). A leftover temporary file in the way (a cut upload) is deleted too.
#[test]
fn a_server_refusing_overwrites_takes_the_report_and_keeps_no_temporary_file() {
    let s = Script {
        no_overwrite: true,
        ..Script::default()
    };
    let (result, folder) = upload(&s, b"one");
    assert_eq!(result, Ok(None));
    only_the_report(&folder, b"one");
    let (result, folder) = upload(&s, b"two");
    let tried = result.unwrap().expect("what was tried");
    assert!(
        tried.contains("RNTO r.json: 553 Overwrite permission denied"),
        "{tried}"
    );
    assert!(
        tried.contains("r.json deleted, then renamed over it"),
        "{tried}"
    );
    only_the_report(&folder, b"two");
    // A cut upload left its temporary file: STOR to it is refused, DELE clears it.
    s.folder
        .lock()
        .unwrap()
        .insert(".part-r.json".into(), b"half".to_vec());
    let (result, folder) = upload(&s, b"three");
    let tried = result.unwrap().expect("what was tried");
    assert!(
        tried.starts_with("STOR .part-r.json: 553 Overwrite permission denied; .part-r.json deleted; RNTO r.json: 553"),
        "{tried}"
    );
    only_the_report(&folder, b"three");
}

/// A server that takes files but no renames: the temporary file is deleted and the
/// report written in place.
#[test]
fn a_server_refusing_renames_takes_the_report_in_place() {
    let s = Script {
        no_rename: true,
        ..Script::default()
    };
    for report in [&b"one"[..], b"two"] {
        let (result, folder) = upload(&s, report);
        let tried = result.unwrap().expect("what was tried");
        assert!(
            tried.contains("RNFR .part-r.json: 550 Rename not allowed"),
            "{tried}"
        );
        assert!(tried.contains(".part-r.json deleted"), "{tried}");
        assert!(tried.contains("written in place as r.json"), "{tried}");
        only_the_report(&folder, report);
    }
    // The previous report is never deleted on the way (only an RNTO refusal does that).
    let log = s.log.lock().unwrap().clone();
    assert!(!log.iter().any(|l| l == "DELE r.json"), "{log:?}");
}

/// "Takes no uploads" only when no STOR was taken under any name; a server that took one
/// and refused the rest fails the upload (tried again later), saying each step.
#[test]
fn takes_no_uploads_only_when_no_name_is_taken() {
    let nothing = Script {
        refuse_stor: true,
        ..Script::default()
    };
    let (result, folder) = upload(&nothing, b"one");
    let e = result.unwrap_err();
    assert_eq!(e.kind, FailureKind::NoUploads, "{e}");
    for name in [".part-r.json", "r.json.part", "r.json"] {
        assert!(e.detail.contains(&format!("STOR {name}: 553")), "{e}");
    }
    assert!(folder.is_empty());
    // Takes new files only: no rename, no overwrite, no delete.
    let stubborn = Script {
        no_rename: true,
        no_overwrite: true,
        no_delete: true,
        ..Script::default()
    };
    stubborn
        .folder
        .lock()
        .unwrap()
        .insert("r.json".into(), b"old".to_vec());
    let (result, _) = upload(&stubborn, b"new");
    let e = result.unwrap_err();
    assert_eq!(e.kind, FailureKind::Refused, "{e}");
    assert!(
        e.detail
            .contains("RNFR .part-r.json: 550 Rename not allowed"),
        "{e}"
    );
    assert!(
        e.detail
            .contains("STOR r.json: 553 Overwrite permission denied"),
        "{e}"
    );
}

/// Anonymous pure-ftpd: new files only (no dot names, no rename, no overwrite, no
/// delete). The report is written in place at once (a temporary file could never be
/// taken away): it lands, nothing else is left; the next one cannot replace it, which
/// is a failure tried again later and said so, not "takes no uploads".
#[test]
fn an_anonymous_login_writes_in_place_and_leaves_nothing_behind() {
    let s = Script {
        password: Some(ANONYMOUS.1.into()),
        refuse_dot_names: true,
        no_rename: true,
        no_overwrite: true,
        no_delete: true,
        ..Script::default()
    };
    let (port, _) = serve(s.clone());
    let anonymous = Ftp::new(
        &ServerUrl::test(&format!("ftp://127.0.0.1:{port}/")),
        &Fetch::default(),
        None,
    )
    .unwrap();
    let tried = anonymous
        .upload("r.json", b"one")
        .unwrap()
        .expect("what was tried");
    assert!(tried.contains("written in place as r.json"), "{tried}");
    assert_eq!(
        s.folder.lock().unwrap().clone(),
        BTreeMap::from([("r.json".to_string(), b"one".to_vec())])
    );
    let e = anonymous.upload("r.json", b"two").unwrap_err();
    assert_eq!(e.kind, FailureKind::Refused, "{e}");
    assert!(
        e.detail
            .contains("r.json is there: the server took a report before, and refuses this one"),
        "{e}"
    );
    assert_eq!(
        s.folder.lock().unwrap().clone(),
        BTreeMap::from([("r.json".to_string(), b"one".to_vec())])
    );
    let log = s.log.lock().unwrap().join("\n");
    assert!(!log.contains(".part"), "{log}");
}

/// A full server (every STOR refused, DELE allowed) keeps the report it holds: the
/// report's own name is never deleted before a new report is whole on the server, and
/// a server holding a report is not one that "takes no uploads" (the attack: ProFTPD's
/// quota, "552 STOR denied", lost the report and turned the uploads off).
#[test]
fn a_full_server_keeps_the_report_it_holds() {
    let s = Script {
        refuse_stor: true,
        ..Script::default()
    };
    s.folder
        .lock()
        .unwrap()
        .insert("r.json".into(), b"old".to_vec());
    let (result, folder) = upload(&s, b"new");
    let e = result.unwrap_err();
    assert_eq!(e.kind, FailureKind::Refused, "{e}");
    assert!(e.detail.contains("the server took a report before"), "{e}");
    only_the_report(&folder, b"old");
    let log = s.log.lock().unwrap().clone();
    assert!(!log.iter().any(|l| l == "DELE r.json"), "{log:?}");
}

/// A name refused after its data (an upload filter) is a refusal of that name, not a
/// cut transfer: what the server kept of it is deleted and the next name tried.
#[test]
fn a_name_refused_after_its_data_is_deleted_and_the_next_name_tried() {
    let s = Script {
        refuse_dot_after_data: true,
        ..Script::default()
    };
    let (result, folder) = upload(&s, b"one");
    let tried = result.unwrap().expect("what was tried");
    assert!(
        tried.contains("STOR .part-r.json: 553 Prohibited file name after the data"),
        "{tried}"
    );
    assert!(
        tried.contains("written as r.json.part and renamed"),
        "{tried}"
    );
    only_the_report(&folder, b"one");
}

/// `ftp` is an anonymous login too (vsftpd, pure-ftpd): written in place at once.
#[test]
fn the_user_ftp_is_an_anonymous_login() {
    for user in ["ftp", "FTP", "Anonymous"] {
        let s = Script {
            password: Some("me@example.com".into()),
            ..Script::default()
        };
        let (port, _) = serve(s.clone());
        let fetch = Fetch {
            username: Some(user.into()),
            password: Some("me@example.com".into()),
            ..Fetch::default()
        };
        let client = Ftp::new(
            &ServerUrl::test(&format!("ftp://127.0.0.1:{port}/")),
            &fetch,
            None,
        )
        .unwrap();
        let tried = client
            .upload("r.json", b"one")
            .unwrap()
            .expect("what was tried");
        assert!(
            tried.contains("anonymous: no temporary name"),
            "{user}: {tried}"
        );
        let log = s.log.lock().unwrap().join("\n");
        assert!(!log.contains(".part"), "{user}: {log}");
    }
}

/// A server that refuses the rename even once the previous report is deleted, and the
/// report's own name too: the new report under its temporary name is the only one the
/// server has, and it is kept (a report is never lost to the clean-up).
#[test]
fn the_only_report_left_is_never_deleted() {
    let s = Script {
        no_rnto: true,
        refuse_stor_of: vec!["r.json".into()],
        ..Script::default()
    };
    s.folder
        .lock()
        .unwrap()
        .insert("r.json".into(), b"old".to_vec());
    let (result, folder) = upload(&s, b"new");
    let e = result.unwrap_err();
    assert_eq!(e.kind, FailureKind::Refused, "{e}");
    assert!(
        e.detail
            .contains(".part-r.json kept: the only report on the server"),
        "{e}"
    );
    assert_eq!(
        folder,
        BTreeMap::from([(".part-r.json".to_string(), b"new".to_vec())])
    );
}
