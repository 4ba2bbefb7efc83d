//! Tests of [`crate::fetch`] against the test servers on 127.0.0.1: the fault server
//! scripted answer by answer, and nginx for HTTPS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use test_servers::faults::{FaultServer, Next, SeenRequest};
use test_servers::nginx::Nginx;
use test_servers::openssl::SServer;
use test_servers::pki::Pki;

use super::*;
use crate::config::ClientIdentity;
use crate::fetch::*;

const MAC: Serial = Serial([0x00, 0x04, 0xf2, 0xab, 0xcd, 0xef]);

thread_local! {
    /// The blocking clients built on this thread ([`Setup::client`]): each starts a
    /// runtime thread.
    pub(super) static BLOCKING_CLIENTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn blocking_clients() -> usize {
    BLOCKING_CLIENTS.with(std::cell::Cell::get)
}

/// A scripted HTTP/1.1 server (the test servers' [`FaultServer`] with a handler): every
/// request is recorded, and the handler writes whatever answer it wants on the
/// connection.
struct Server(FaultServer);

impl Server {
    fn start(
        handler: impl Fn(&SeenRequest, &mut TcpStream) -> Next + Send + Sync + 'static,
    ) -> Server {
        Server(FaultServer::scripted(handler))
    }

    fn port(&self) -> u16 {
        self.0.addr().port()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/lic/", self.port())
    }

    fn fetcher(&self) -> Fetcher {
        Fetcher::new(&self.base(), &Fetch::default(), MAC).unwrap()
    }

    /// The request heads seen so far, as sent.
    fn requests(&self) -> Vec<String> {
        self.0.seen().into_iter().map(|r| r.head).collect()
    }

    /// Connections accepted.
    fn accepted(&self) -> usize {
        self.0.connections()
    }
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    let _ = stream.write_all(&bytes);
}

fn failed(outcome: FetchOutcome) -> FetchError {
    match outcome {
        FetchOutcome::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn body(outcome: FetchOutcome) -> Vec<u8> {
    match outcome {
        FetchOutcome::Body { bytes } => bytes,
        other => panic!("expected a body, got {other:?}"),
    }
}

/// A server answering every request with one status and an empty body.
fn status_server(status: &'static str) -> Server {
    Server::start(move |_, s| {
        respond(s, status, &[], b"");
        Next::KeepAlive
    })
}

#[test]
fn file_names() {
    assert_eq!(phone_file(MAC), "0004f2abcdef-license.cfg");
    assert_eq!(phone_file(Serial::SITE_FILE), SITE_FILE);
    assert_eq!(MAX_BODY, 65_536);
}

/// A 200 gives the body whole; the validators that came with it are not kept, and no
/// request ever carries one (`If-None-Match`, `If-Modified-Since`): nginx's `ETag` is a
/// modification time and a size, the same for a renewal copied in with the old time.
#[test]
fn every_request_is_unconditional_and_names_the_phone_and_its_auth() {
    let server = Server::start(|request, s| {
        let body = format!("file {}", request.path.as_str());
        respond(
            s,
            "200 OK",
            &[
                ("ETag", "\"5f3a2b1c-1d6\""),
                ("Last-Modified", "Tue, 03 Mar 2026 10:00:00 GMT"),
            ],
            body.as_bytes(),
        );
        Next::KeepAlive
    });
    let fetch = Fetch {
        username: Some("phone".into()),
        password: Some("s3cret".into()),
        ..Fetch::default()
    };
    let fetcher = Fetcher::new(&server.base(), &fetch, MAC).unwrap();
    assert!(!format!("{fetcher:?}").contains("s3cret"));
    for _ in 0..2 {
        assert_eq!(
            body(fetcher.fetch(SITE_FILE)),
            b"file /lic/000000000000-license.cfg"
        );
        assert_eq!(
            body(fetcher.fetch(&phone_file(MAC))),
            b"file /lic/0004f2abcdef-license.cfg"
        );
    }
    let requests: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.to_ascii_lowercase())
        .collect();
    assert_eq!(requests.len(), 4);
    let version = env!("CARGO_PKG_VERSION");
    let auth = "authorization: basic cghvbmu6cznjcmv0"; // base64("phone:s3cret"), lower case
    for r in &requests {
        assert!(r.starts_with("get /lic/"), "{r}");
        assert!(
            r.contains(&format!(
                "user-agent: license-agent/{version} (mac 0004f2abcdef)\r\n"
            )),
            "{r}"
        );
        assert!(r.contains(auth), "{r}");
        assert!(
            !r.contains("if-none-match") && !r.contains("if-modified-since"),
            "{r}"
        );
    }
}

#[test]
fn no_auth_header_without_credentials() {
    let server = status_server("304 Not Modified");
    server.fetcher().fetch(SITE_FILE);
    assert!(!server.requests()[0]
        .to_ascii_lowercase()
        .contains("authorization"));
}

#[test]
fn statuses() {
    let cases = [
        (
            "404 Not Found",
            FetchOutcome::Absent {
                answer: "404".into(),
            },
        ),
        (
            "410 Gone",
            FetchOutcome::Absent {
                answer: "410".into(),
            },
        ),
    ];
    for (status, expected) in cases {
        let server = status_server(status);
        assert_eq!(server.fetcher().fetch(SITE_FILE), expected, "{status}");
    }
    for (status, code) in [
        ("500 Internal Server Error", 500),
        ("403 Forbidden", 403),
        ("401 Unauthorized", 401),
        ("503 Service Unavailable", 503),
        ("204 No Content", 204),
        // Not modified since what? No request names an earlier copy: not an answer.
        ("304 Not Modified", 304),
    ] {
        let server = status_server(status);
        let e = failed(server.fetcher().fetch(SITE_FILE));
        assert_eq!(e.kind, FailureKind::Status(code));
        assert_eq!(e.kind.id(), format!("status-{code}"));
        assert_eq!(e.url, format!("{}{SITE_FILE}", server.base()));
        if code != 304 {
            assert_eq!(e.to_string(), format!("{}: HTTP status: {status}", e.url));
        }
    }
    let e = failed(status_server("304 Not Modified").fetcher().fetch(SITE_FILE));
    assert!(e.detail.contains("no validator was sent"), "{e}");
}

#[test]
fn an_absent_site_file_keeps_the_connection_for_the_phone_file() {
    let server = Server::start(|request, s| {
        if request.path.as_str().contains(SITE_FILE) {
            respond(s, "404 Not Found", &[], b"not here");
        } else {
            respond(s, "200 OK", &[], b"phone");
        }
        Next::KeepAlive
    });
    let fetcher = server.fetcher();
    assert_eq!(
        fetcher.fetch(SITE_FILE),
        FetchOutcome::Absent {
            answer: "404".into()
        }
    );
    assert_eq!(body(fetcher.fetch(&phone_file(MAC))), b"phone");
    assert_eq!(server.accepted(), 1);
}

#[test]
fn both_files_go_over_one_connection() {
    let server = Server::start(|request, s| {
        respond(s, "200 OK", &[], request.path.as_bytes());
        Next::KeepAlive
    });
    let fetcher = server.fetcher();
    assert_eq!(
        body(fetcher.fetch(SITE_FILE)),
        b"/lic/000000000000-license.cfg"
    );
    assert_eq!(
        body(fetcher.fetch(&phone_file(MAC))),
        b"/lic/0004f2abcdef-license.cfg"
    );
    assert_eq!(server.accepted(), 1);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn redirects_are_followed_up_to_five() {
    // /lic/<name> → /r/1 → ... → /r/<hops> → 200.
    let server = |hops: usize| {
        Server::start(move |request, s| {
            let p = request.path.as_str();
            let n: usize = p
                .strip_prefix("/r/")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if n < hops {
                let to = format!("/r/{}", n + 1);
                respond(s, "302 Found", &[("Location", &to)], b"");
            } else {
                respond(s, "200 OK", &[], b"here");
            }
            Next::KeepAlive
        })
    };
    assert_eq!(body(server(5).fetcher().fetch(SITE_FILE)), b"here");
    let e = failed(server(6).fetcher().fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Redirects, "{e}");
}

/// A failure after a redirect names the URL that failed, and where it came from.
#[test]
fn a_failure_after_a_redirect_names_the_url_that_failed() {
    let refused = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = refused.local_addr().unwrap().port();
    drop(refused);
    let server = Server::start(move |request, s| {
        match request.path.as_str() {
            "/lic/000000000000-license.cfg" => {
                respond(s, "302 Found", &[("Location", "/moved/site.cfg")], b"")
            }
            "/lic/0004f2abcdef-license.cfg" => {
                let to = format!("http://127.0.0.1:{refused_port}/gone.cfg");
                respond(s, "302 Found", &[("Location", &to)], b"")
            }
            _ => respond(s, "500 Internal Server Error", &[], b""),
        }
        Next::KeepAlive
    });
    let asked = format!("{}{SITE_FILE}", server.base());
    let e = failed(server.fetcher().fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Status(500));
    let moved = format!("http://127.0.0.1:{}/moved/site.cfg", server.port());
    assert_eq!(e.url, format!("{moved} (redirected from {asked})"));
    let e = failed(server.fetcher().fetch(&phone_file(MAC)));
    assert_eq!(e.kind, FailureKind::Connect, "{e}");
    assert!(
        e.url.starts_with(&format!(
            "http://127.0.0.1:{refused_port}/gone.cfg (redirected from"
        )),
        "{e}"
    );
}

#[test]
fn a_redirect_loop_fails() {
    let server = Server::start(|request, s| {
        let to = if request.path.as_str() == "/a" {
            "/b"
        } else {
            "/a"
        };
        respond(s, "301 Moved Permanently", &[("Location", to)], b"");
        Next::KeepAlive
    });
    let e = failed(server.fetcher().fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Redirects, "{e}");
    assert_eq!(e.kind.id(), "redirects");
    assert!(server.requests().len() <= 1 + MAX_REDIRECTS);
}

/// How a body is framed.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    Close,
}

/// A server sending `size` bytes of `x` with the given framing, in pieces of 16 KiB;
/// `sent` gets the number of body bytes the socket accepted before the client went away.
fn sized_server(size: usize, framing: Framing) -> (Server, Arc<Mutex<Option<usize>>>) {
    let sent = Arc::new(Mutex::new(None));
    let sent2 = sent.clone();
    let server = Server::start(move |_, s| {
        let head = match framing {
            Framing::Length => format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n"),
            Framing::Chunked => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            Framing::Close => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
        };
        let mut written = 0;
        let mut ok = s.write_all(head.as_bytes()).is_ok();
        let piece = [b'x'; 16 * 1024];
        while ok && written < size {
            let n = piece.len().min(size - written);
            ok = match framing {
                Framing::Chunked => s
                    .write_all(format!("{n:x}\r\n").as_bytes())
                    .and_then(|_| s.write_all(&piece[..n]))
                    .and_then(|_| s.write_all(b"\r\n"))
                    .is_ok(),
                _ => s.write_all(&piece[..n]).is_ok(),
            };
            if ok {
                written += n;
            }
        }
        if ok {
            if let Framing::Chunked = framing {
                let _ = s.write_all(b"0\r\n\r\n");
            }
        }
        *sent2.lock().unwrap() = Some(written);
        match framing {
            Framing::Close => Next::Close,
            _ => Next::KeepAlive,
        }
    });
    (server, sent)
}

#[test]
fn a_body_of_max_body_bytes_is_accepted_and_one_more_refused() {
    for framing in [Framing::Length, Framing::Chunked, Framing::Close] {
        let (server, _) = sized_server(MAX_BODY, framing);
        let bytes = body(server.fetcher().fetch(SITE_FILE));
        assert_eq!(bytes.len(), MAX_BODY, "{framing:?}");
        assert!(bytes.iter().all(|&b| b == b'x'));

        let (server, _) = sized_server(MAX_BODY + 1, framing);
        let e = failed(server.fetcher().fetch(SITE_FILE));
        assert_eq!(e.kind, FailureKind::TooBig, "{framing:?}: {e}");
        assert_eq!(e.kind.id(), "too-big");
    }
}

#[test]
fn a_huge_body_is_abandoned_while_it_streams() {
    const HUGE: usize = 16 * 1024 * 1024;
    for framing in [Framing::Length, Framing::Chunked, Framing::Close] {
        let (server, sent) = sized_server(HUGE, framing);
        let e = failed(server.fetcher().fetch(SITE_FILE));
        assert_eq!(e.kind, FailureKind::TooBig, "{framing:?}: {e}");
        if let Framing::Length = framing {
            assert!(e.detail.contains("announces 16777216 bytes"), "{e}");
        }
        // The client closed early: the server could not send it all.
        let deadline = Instant::now() + Duration::from_secs(10);
        let written = loop {
            if let Some(n) = *sent.lock().unwrap() {
                break n;
            }
            assert!(
                Instant::now() < deadline,
                "{framing:?}: the server still sends"
            );
            thread::sleep(Duration::from_millis(20));
        };
        assert!(written < HUGE, "{framing:?}: all {written} bytes were sent");
    }
}

#[test]
fn a_body_cut_midway_is_cut() {
    let server = Server::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        let _ = s.write_all(&[b'x'; 100]);
        Next::Close
    });
    let e = failed(server.fetcher().fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Cut, "{e}");
    assert_eq!(e.kind.id(), "cut");
    assert!(e.detail.contains("100 of 1000"), "{e}");
}

#[test]
fn a_server_closing_without_an_answer_is_a_cut() {
    let server = Server::start(|_, _| Next::Close);
    let e = failed(server.fetcher().fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Cut, "{e}");
}

fn one_second() -> Fetch {
    Fetch {
        connect_timeout: Secs(1),
        total_timeout: Secs(1),
        ..Fetch::default()
    }
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start(|_, _| {
        thread::sleep(Duration::from_secs(8));
        Next::Close
    });
    let fetcher = Fetcher::new(&server.base(), &one_second(), MAC).unwrap();
    let started = Instant::now();
    let e = failed(fetcher.fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Timeout, "{e}");
    assert_eq!(e.kind.id(), "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_body_that_stalls_or_trickles_times_out() {
    // Stalls after the head and 10 bytes.
    let stall = Server::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        thread::sleep(Duration::from_secs(8));
        Next::Close
    });
    // Sends one byte every 200 ms: every read succeeds, the total timeout still holds.
    let trickle = Server::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        for _ in 0..40 {
            if s.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        Next::Close
    });
    for server in [stall, trickle] {
        let fetcher = Fetcher::new(&server.base(), &one_second(), MAC).unwrap();
        let started = Instant::now();
        let e = failed(fetcher.fetch(SITE_FILE));
        assert_eq!(e.kind, FailureKind::Timeout, "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn connection_refused_is_connect() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}/");
    let fetcher = Fetcher::new(&base, &one_second(), MAC).unwrap();
    let e = failed(fetcher.fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Connect, "{e}");
    assert_eq!(e.kind.id(), "connect");
    assert!(e.detail.to_ascii_lowercase().contains("refused"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{base}{SITE_FILE}: cannot connect: ")),
        "{e}"
    );
}

#[test]
fn bad_names_are_refused_without_a_request() {
    let server = status_server("200 OK");
    let fetcher = server.fetcher();
    for name in [
        "",
        "..",
        ".",
        "../x",
        "a/b",
        "/etc/passwd",
        "a..b",
        "x?y=1",
        "x#y",
        "a b",
        "a%2fb",
        "x\n",
        "é",
        "a\\b",
    ] {
        let e = failed(fetcher.fetch(name));
        assert_eq!(e.kind, FailureKind::Setup, "{name:?}");
        assert_eq!(e.kind.id(), "setup");
        assert_eq!(e.url, server.base());
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    assert!(server.requests().is_empty());
    assert_eq!(server.accepted(), 0);
}

#[test]
fn file_server() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("file://{}/", dir.path().display());
    let fetcher = Fetcher::new(&base, &Fetch::default(), MAC).unwrap();
    assert_eq!(fetcher.base.as_str(), base);

    std::fs::write(dir.path().join(SITE_FILE), b"site").unwrap();
    assert_eq!(
        fetcher.fetch(SITE_FILE),
        FetchOutcome::Body {
            bytes: b"site".to_vec(),
        }
    );

    assert_eq!(
        fetcher.fetch(&phone_file(MAC)),
        FetchOutcome::Absent {
            answer: "no such file".into()
        }
    );

    let exact = phone_file(MAC);
    std::fs::write(dir.path().join(&exact), vec![b'x'; MAX_BODY]).unwrap();
    assert_eq!(body(fetcher.fetch(&exact)).len(), MAX_BODY);
    std::fs::write(dir.path().join("big.cfg"), vec![b'x'; MAX_BODY + 1]).unwrap();
    assert_eq!(failed(fetcher.fetch("big.cfg")).kind, FailureKind::TooBig);

    std::fs::create_dir(dir.path().join("adir")).unwrap();
    let e = failed(fetcher.fetch("adir"));
    assert_eq!(e.kind, FailureKind::Io, "{e}");
    assert!(e.detail.contains("not a regular file"), "{e}");

    assert_eq!(failed(fetcher.fetch("../x")).kind, FailureKind::Setup);
}

#[test]
fn setup_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"not a certificate\n").unwrap();
    let bad_pem = dir.path().join("bad.pem");
    std::fs::write(
        &bad_pem,
        b"-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    for file in [&missing, &garbage, &bad_pem] {
        let fetch = Fetch {
            ca_file: Some(file.clone()),
            ..Fetch::default()
        };
        let e = Fetcher::new("https://prov.example/", &fetch, MAC).unwrap_err();
        assert_eq!(e.kind, FailureKind::Setup, "{e}");
        assert!(e.detail.contains(&file.display().to_string()), "{e}");
        assert_eq!(e.url, "https://prov.example/");
    }

    let pki = Pki::new(&dir.path().join("pki"));
    let (cert, key) = (pki.client_cert.clone(), pki.client_key.clone());
    // A usable pair builds.
    let fetch = Fetch {
        client_identity: Some(ClientIdentity {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ca_file: Some(pki.ca_pem.clone()),
        ..Fetch::default()
    };
    Fetcher::new("https://prov.example/", &fetch, MAC).unwrap();
    // A missing key, a key that is not one, a lone certificate.
    for (c, k, named) in [
        (&cert, &missing, &missing),
        (&missing, &key, &missing),
        (&cert, &garbage, &garbage),
    ] {
        let fetch = Fetch {
            client_identity: Some(ClientIdentity {
                cert: c.clone(),
                key: k.clone(),
            }),
            ..fetch.clone()
        };
        let e = Fetcher::new("https://prov.example/", &fetch, MAC).unwrap_err();
        assert_eq!(e.kind, FailureKind::Setup, "{e}");
        assert!(e.detail.contains(&named.display().to_string()), "{e}");
    }
    // A lone certificate or key cannot be given: `ClientIdentity` is the pair (the
    // configuration refuses one without the other: config::tests). A URL without its
    // trailing '/' cannot either: `ServerUrl` adds it.
    for server in ["sftp://x/", "file://rel/", "x"] {
        let e = Fetcher::new(server, &Fetch::default(), MAC).unwrap_err();
        assert_eq!(e.kind, FailureKind::Setup, "{server}");
    }
}

/// The start check of the servers builds no blocking client, so it starts no runtime
/// thread (issue 26: `run --once` starts one thread, the cycle's); the cycle builds the
/// only one. What the check is for still holds: a server that cannot be used is refused
/// at start, naming the file.
#[test]
fn the_start_check_starts_no_client_and_a_cycle_builds_one() {
    use crate::fetch::Server as _;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let url = |s: &str| ServerUrl::parse(s, Path::new("/"), crate::config::TRANSPORTS).unwrap();
    let servers = [url("https://prov.example/"), url("http://second.example/")];
    let fetch = Fetch {
        ca_file: Some(pki.ca_pem.clone()),
        ..Fetch::default()
    };
    let before = blocking_clients();
    let provisioning = Provisioning::new(&servers, &fetch, MAC).unwrap();
    assert_eq!(blocking_clients(), before, "the start check built a client");
    let source = provisioning.open(0).unwrap();
    assert_eq!(blocking_clients(), before + 1);
    drop(source);

    let missing = dir.path().join("missing.pem");
    let fetch = Fetch {
        ca_file: Some(missing.clone()),
        ..Fetch::default()
    };
    let e = Provisioning::new(&servers, &fetch, MAC).unwrap_err();
    assert_eq!(e.kind, FailureKind::Setup, "{e}");
    assert_eq!(e.url, "https://prov.example/");
    assert!(e.detail.contains(&missing.display().to_string()), "{e}");
}

#[test]
fn plain_http_on_an_https_url_is_a_tls_error() {
    // A plain HTTP server that answers as soon as anything arrives (a ClientHello has no
    // blank line for an HTTP server to wait for).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.read(&mut [0; 512]);
            respond(&mut s, "200 OK", &[], b"");
            thread::sleep(Duration::from_secs(2));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let fetch = Fetch {
        ca_file: Some(Pki::new(dir.path()).ca_pem),
        ..one_second()
    };
    let base = format!("https://127.0.0.1:{port}/");
    let e = failed(Fetcher::new(&base, &fetch, MAC).unwrap().fetch(SITE_FILE));
    assert_eq!(e.kind, FailureKind::Tls, "{e}");
    assert_eq!(e.kind.id(), "tls");
}

#[test]
fn backoff_table() {
    let (i, m) = (Secs(30), Secs(3600));
    // jitter u64::MAX % span and 0: the top and the bottom of [d/2, d].
    let table = [
        (0, 30),
        (1, 60),
        (2, 120),
        (3, 240),
        (4, 480),
        (5, 960),
        (6, 1920),
        (7, 3600),
        (8, 3600),
        (100, 3600),
        (u32::MAX, 3600),
    ];
    for (attempt, full) in table {
        let span = full - full / 2 + 1;
        assert_eq!(backoff(attempt, i, m, span - 1), full, "attempt {attempt}");
        assert_eq!(backoff(attempt, i, m, 0), full / 2, "attempt {attempt}");
        assert_eq!(backoff(attempt, i, m, span), full / 2, "attempt {attempt}");
        for jitter in [1, 7, 12_345, u64::MAX, u64::MAX / 3] {
            let d = backoff(attempt, i, m, jitter);
            assert!((full / 2..=full).contains(&d), "{attempt} {jitter}: {d}");
        }
    }
    // Jitter spreads: many different delays over the range.
    let distinct: std::collections::BTreeSet<u64> =
        (0..1000).map(|j| backoff(7, i, m, j * 7919)).collect();
    assert!(distinct.len() > 500);
}

#[test]
fn backoff_never_zero_never_overflows() {
    for attempt in [0, 1, 31, 32, 63, 64, 65, 1000, u32::MAX] {
        for (initial, max) in [
            (0, 0),
            (0, 10),
            (1, 1),
            (1, 2),
            (u64::MAX, u64::MAX),
            (u64::MAX / 2 + 1, u64::MAX),
            (5, 1),
        ] {
            for jitter in [0, 1, u64::MAX] {
                let d = backoff(attempt, Secs(initial), Secs(max), jitter);
                assert!(d >= 1, "{attempt} {initial} {max} {jitter}");
                assert!(d <= max.max(1), "{attempt} {initial} {max} {jitter}: {d}");
            }
        }
    }
    assert_eq!(backoff(0, Secs(1), Secs(1), 0), 1);
    let top_span = u64::MAX - u64::MAX / 2 + 1;
    assert_eq!(backoff(64, Secs(1), Secs(u64::MAX), top_span - 1), u64::MAX);
    assert_eq!(backoff(64, Secs(1), Secs(u64::MAX), 0), u64::MAX / 2);
}

#[test]
fn error_display_is_one_line() {
    let e = FetchError {
        url: "https://prov/x-license.cfg".into(),
        kind: FailureKind::Tls,
        detail: "invalid peer certificate: UnknownIssuer".into(),
    };
    assert_eq!(
        e.to_string(),
        "https://prov/x-license.cfg: TLS: invalid peer certificate: UnknownIssuer"
    );
    let ids: Vec<String> = [
        FailureKind::Setup,
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::Tls,
        FailureKind::Status(500),
        FailureKind::TooBig,
        FailureKind::Cut,
        FailureKind::Redirects,
        FailureKind::Io,
    ]
    .iter()
    .map(FailureKind::id)
    .collect();
    assert_eq!(
        ids,
        [
            "setup",
            "connect",
            "timeout",
            "tls",
            "status-500",
            "too-big",
            "cut",
            "redirects",
            "io"
        ]
    );
}

/// HTTPS against real servers (the test servers' nginx, and `openssl s_server` for a
/// handshake refused): a trusted chain, an unknown CA, a wrong host name, an expired
/// certificate, mutual TLS. Both are installed by the README's test command.
#[test]
fn https_against_real_servers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join(SITE_FILE), b"site over tls").unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let nginx = Nginx::start(&root, &pki);
    let with_ca = |file: &Path| Fetch {
        ca_file: Some(file.to_path_buf()),
        ..Fetch::default()
    };
    let fetch =
        |base: String, fetch: &Fetch| Fetcher::new(&base, fetch, MAC).unwrap().fetch(SITE_FILE);

    assert_eq!(
        body(fetch(nginx.https_url(), &with_ca(&pki.ca_pem))),
        b"site over tls"
    );
    let e = failed(fetch(nginx.https_url(), &with_ca(&pki.other_ca_pem)));
    assert_eq!(e.kind, FailureKind::Tls, "{e}");
    assert!(e.detail.contains("UnknownIssuer"), "{e}");
    assert!(
        e.to_string()
            .contains(": TLS: invalid peer certificate: UnknownIssuer"),
        "{e}"
    );
    let e = failed(fetch(nginx.untrusted_url(), &with_ca(&pki.ca_pem)));
    assert!(
        e.kind == FailureKind::Tls && e.detail.contains("UnknownIssuer"),
        "{e}"
    );

    let e = failed(fetch(nginx.wrong_host_url(), &with_ca(&pki.ca_pem)));
    assert_eq!(e.kind, FailureKind::Tls, "{e}");
    assert!(e.detail.contains("not valid for name"), "{e}");

    let e = failed(fetch(nginx.expired_url(), &with_ca(&pki.ca_pem)));
    assert_eq!(e.kind, FailureKind::Tls, "{e}");
    assert!(e.detail.contains("expired"), "{e}");

    // Mutual TLS: the server demands a certificate from the CA (nginx answers 400
    // to a client without one, or with one it refuses).
    let with_client = |cert: &Path, key: &Path| Fetch {
        client_identity: Some(ClientIdentity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        ..with_ca(&pki.ca_pem)
    };
    assert_eq!(
        body(fetch(
            nginx.mtls_url(),
            &with_client(&pki.client_cert, &pki.client_key)
        )),
        b"site over tls"
    );
    let e = failed(fetch(nginx.mtls_url(), &with_ca(&pki.ca_pem)));
    assert_eq!(e.kind, FailureKind::Status(400), "{e}");
    let refused = with_client(&pki.untrusted_client_cert, &pki.untrusted_client_key);
    let e = failed(fetch(nginx.mtls_url(), &refused));
    assert_eq!(e.kind, FailureKind::Status(400), "{e}");

    // A server that ends the handshake itself without a client certificate from its CA
    // (nginx answers 400 instead): a TLS failure.
    let ca = pki.ca_pem.to_str().unwrap();
    let strict = SServer::start(
        &root,
        &pki.server_cert,
        &pki.server_key,
        &["-Verify", "1", "-CAfile", ca],
    );
    assert_eq!(
        body(fetch(
            strict.url(),
            &with_client(&pki.client_cert, &pki.client_key)
        )),
        b"site over tls"
    );
    let e = failed(fetch(strict.url(), &with_ca(&pki.ca_pem)));
    assert_eq!(e.kind, FailureKind::Tls, "{e}");
}

/// The status report's `PUT`: taken on 200, 201 or 204; 405 and 501 say the server takes
/// no uploads; other statuses fail; a redirected upload is never taken (a report goes
/// only where it is configured to go).
#[test]
fn uploads_are_a_put_taken_on_2xx_and_never_redirected() {
    let server = Server::start(|request, s| {
        let status = match request.path.as_str() {
            "/lic/created.json" => "201 Created",
            "/lic/none.json" => "204 No Content",
            "/lic/dav-off.json" => "405 Not Allowed",
            "/lic/broken.json" => "500 Internal Server Error",
            "/lic/moved.json" => {
                respond(s, "302 Found", &[("Location", "/lic/elsewhere.json")], b"");
                return Next::KeepAlive;
            }
            _ => "200 OK",
        };
        // Kept alive: a connection closed without `Connection: close` may be taken
        // again by the client for the next request and reset (seen under qemu-arm).
        respond(s, status, &[], b"");
        Next::KeepAlive
    });
    let f = server.fetcher();
    assert_eq!(f.upload("created.json", b"{}\n"), Ok(None));
    assert_eq!(f.upload("none.json", b"{}\n"), Ok(None));
    let head = &server.requests()[0];
    assert!(
        head.starts_with("PUT /lic/created.json HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(
        f.upload("dav-off.json", b"{}").unwrap_err().kind,
        FailureKind::NoUploads
    );
    assert_eq!(
        f.upload("broken.json", b"{}").unwrap_err().kind,
        FailureKind::Status(500)
    );
    let moved = f.upload("moved.json", b"{}").unwrap_err();
    assert_eq!(moved.kind, FailureKind::Redirects, "{moved}");
    // The redirect is not followed, not even as a GET.
    assert!(
        !server
            .requests()
            .iter()
            .any(|h| h.contains(" /lic/elsewhere.json ")),
        "{:?}",
        server.requests()
    );
    // A name that is not a plain file name is refused before anything is sent.
    let before = server.requests().len();
    assert_eq!(
        f.upload("../x.json", b"{}").unwrap_err().kind,
        FailureKind::Setup
    );
    assert_eq!(server.requests().len(), before);
}

/// The body bytes a fault server received, over all its requests.
fn received(server: &FaultServer) -> usize {
    server.seen().iter().map(|r| r.body.len()).sum()
}

/// A 307 or 308 to the report's `PUT` (which asks the client to send the same body on)
/// is never followed: the server it points to, on another port, receives nothing, not
/// even a connection; the failure says what the server answered and where it pointed,
/// and it is a redirect, not "takes no uploads".
#[test]
fn an_upload_answered_307_or_308_sends_nothing_elsewhere() {
    let mut elsewhere_got = Vec::new();
    let mut failures = Vec::new();
    for status in ["307 Temporary Redirect", "308 Permanent Redirect"] {
        // The listener pointed to takes anything (201), and records every request
        // with its body.
        let elsewhere = FaultServer::start(test_servers::faults::Fault::Status(201));
        let target = format!("{}lic/r.json", elsewhere.url());
        let location = target.clone();
        let server = Server::start(move |_, s| {
            respond(s, status, &[("Location", &location)], b"");
            Next::KeepAlive
        });
        let e = server
            .fetcher()
            .upload("r.json", b"{\"report\": \"whole\"}\n")
            .unwrap_err();
        // Connections, requests and body bytes that reached the other port.
        elsewhere_got.push((
            status,
            elsewhere.connections(),
            elsewhere.seen().len(),
            received(&elsewhere),
        ));
        // The configured server had the PUT, with the report, once.
        let seen = server.0.seen();
        assert_eq!(seen.len(), 1, "{status}: {seen:?}");
        assert_eq!(
            (seen[0].method.as_str(), seen[0].body.as_slice()),
            ("PUT", &b"{\"report\": \"whole\"}\n"[..])
        );
        failures.push((status, server.base(), target, e));
    }
    assert_eq!(
        elsewhere_got,
        [
            ("307 Temporary Redirect", 0, 0, 0),
            ("308 Permanent Redirect", 0, 0, 0)
        ],
        "the report went elsewhere"
    );
    for (status, base, target, e) in failures {
        assert_eq!(e.kind, FailureKind::Redirects, "{e}");
        let shown = e.to_string();
        for words in [
            format!("{base}r.json: redirects: "),
            format!("the server answered {status} redirecting the report to {target}"),
            "a report goes only where configured".to_string(),
        ] {
            assert!(shown.contains(&words), "{words:?} not in {shown}");
        }
    }
}

/// A folder takes the report as a whole file (written aside, then renamed over the
/// old one); TFTP takes no upload at all.
#[test]
fn a_folder_takes_an_upload_whole_and_tftp_takes_none() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("file://{}/", dir.path().display());
    let fetcher = Fetcher::new(&base, &Fetch::default(), MAC).unwrap();
    fetcher.upload("r.json", b"one").unwrap();
    fetcher.upload("r.json", b"two").unwrap();
    assert_eq!(std::fs::read(dir.path().join("r.json")).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["r.json"]);
    // A folder that is not one: an I/O failure, tried again later.
    let gone = Fetcher::new(
        &format!("file://{}/", dir.path().join("r.json").display()),
        &Fetch::default(),
        MAC,
    )
    .unwrap();
    assert_eq!(
        gone.upload("x.json", b"{}").unwrap_err().kind,
        FailureKind::Io
    );
    #[cfg(feature = "tftp")]
    {
        let tftp = Fetcher::new("tftp://127.0.0.1/", &Fetch::default(), MAC).unwrap();
        let e = tftp.upload("x.json", b"{}").unwrap_err();
        assert_eq!(e.kind, FailureKind::NoUploads, "{e}");
    }
}

/// A short answer whose bytes drip (one every half second: 200 s for 400 bytes) ends
/// within the total timeout, for a fetch's error page and for an upload's answer alike:
/// the drain that keeps the connection usable stops at the deadline.
#[test]
fn a_dripping_short_answer_ends_at_the_total_timeout() {
    let server = Server::start(|request, s| {
        let status = if request.method == "PUT" {
            "200 OK"
        } else {
            "404 Not Found"
        };
        let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 400\r\n\r\n").as_bytes());
        for _ in 0..400 {
            if s.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
        Next::Close
    });
    let fetch = Fetch {
        total_timeout: crate::config::Secs(2),
        ..Fetch::default()
    };
    let f = Fetcher::new(&server.base(), &fetch, MAC).unwrap();
    // Bounds 15 times the timeout: the point is 2 s, not 200 s.
    let started = Instant::now();
    assert!(matches!(f.fetch(SITE_FILE), FetchOutcome::Absent { .. }));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(f.upload("r.json", b"{}"), Ok(None));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
