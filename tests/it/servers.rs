//! Self-test of the test servers (the `test-servers` crate): the nginx endpoints (plain, HTTPS,
//! mutual TLS, Basic authentication, the three bad certificates) and every fault of the
//! fault server do what they claim, checked with reqwest (the agent's own HTTP client)
//! and, where a byte-exact view matters, a raw TCP client. Loopback only, no fixed
//! ports, every server stops on drop.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::faults::{self, Fault, FaultServer};
use common::nginx::{Nginx, BASIC_PASSWORD, BASIC_USER};
use common::pki::Pki;
use reqwest::blocking::{Client, ClientBuilder, Response};
use reqwest::StatusCode;

const SITE_FILE: &str = "000000000000-license.cfg";
const PHONE_FILE: &str = "0004f2000001-license.cfg";

/// A client that trusts only `ca` and ignores proxy variables.
fn builder(ca: &Path) -> ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&fs::read(ca).expect("read CA")).expect("CA PEM");
    Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
}

fn client(pki: &Pki) -> Client {
    builder(&pki.ca_pem).build().expect("build client")
}

fn client_with_identity(pki: &Pki, identity_pem: &[u8]) -> Client {
    let identity = reqwest::Identity::from_pem(identity_pem).expect("identity PEM");
    builder(&pki.ca_pem)
        .identity(identity)
        .build()
        .expect("build client")
}

fn get(client: &Client, url: &str) -> Response {
    client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"))
}

/// The whole error chain of a failed request, for matching the TLS reason.
fn error_text(err: &reqwest::Error) -> String {
    let mut text = format!("{err}");
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(" <- ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A PKI, a document root holding the two license files, and nginx serving it.
struct Setup {
    _tmp: tempfile::TempDir,
    pki: Pki,
    nginx: Nginx,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(&tmp.path().join("pki"));
    let root = tmp.path().join("www");
    fs::create_dir(&root).expect("create root");
    fs::write(root.join(SITE_FILE), b"site license\n").expect("write site file");
    fs::write(root.join(PHONE_FILE), b"phone license\n").expect("write phone file");
    let nginx = Nginx::start(&root, &pki);
    Setup {
        _tmp: tmp,
        pki,
        nginx,
    }
}

#[test]
fn nginx_plain_and_https_serve_files_with_304_and_404() {
    let started = Instant::now();
    let s = setup();
    let c = client(&s.pki);
    eprintln!("nginx started in {:?}", started.elapsed());

    for base in [s.nginx.http_url(), s.nginx.https_url()] {
        assert!(base.ends_with('/'));
        let url = format!("{base}{SITE_FILE}");
        let first = get(&c, &url);
        assert_eq!(first.status(), StatusCode::OK, "{url}");
        let etag = first.headers()["etag"].to_str().unwrap().to_string();
        let modified = first.headers()["last-modified"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(first.bytes().unwrap().as_ref(), b"site license\n");

        let again = c.get(&url).header("If-None-Match", &etag).send().unwrap();
        assert_eq!(
            again.status(),
            StatusCode::NOT_MODIFIED,
            "If-None-Match on {url}"
        );
        let again = c
            .get(&url)
            .header("If-Modified-Since", &modified)
            .send()
            .unwrap();
        assert_eq!(
            again.status(),
            StatusCode::NOT_MODIFIED,
            "If-Modified-Since on {url}"
        );

        let missing = get(&c, &format!("{base}missing-license.cfg"));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    // A replacement of the same size within the same second still gets a new ETag.
    let url = format!("{}{PHONE_FILE}", s.nginx.http_url());
    let etag = get(&c, &url).headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    s.nginx.put(PHONE_FILE, b"PHONE LICENSE\n");
    let changed = c.get(&url).header("If-None-Match", &etag).send().unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(changed.bytes().unwrap().as_ref(), b"PHONE LICENSE\n");
    s.nginx.remove(PHONE_FILE);
    assert_eq!(get(&c, &url).status(), StatusCode::NOT_FOUND);

    // The access log shows statuses, user agents, ports and connection reuse.
    let entries = s.nginx.wait_access_entries(11, Duration::from_secs(2));
    assert_eq!(entries.len(), 11, "{}", s.nginx.access_log());
    assert_eq!(entries.iter().filter(|e| e.status == 304).count(), 4);
    assert_eq!(entries.iter().filter(|e| e.status == 404).count(), 3);
    assert!(entries
        .iter()
        .all(|e| e.method == "GET" && e.user_agent == "-"));
    let https: Vec<_> = entries
        .iter()
        .filter(|e| e.port == s.nginx.https_port)
        .collect();
    assert_eq!(https.len(), 4);
    assert!(https.iter().all(|e| e.ssl_protocol == "TLSv1.3"));
    assert!(
        https.iter().all(|e| e.connection == https[0].connection),
        "reqwest reuses one connection: {https:?}"
    );
    assert_eq!(entries[0].path, format!("/{SITE_FILE}"));
    s.nginx.clear_access_log();
    assert!(s.nginx.access_entries().is_empty());
}

#[test]
fn nginx_user_agent_is_logged() {
    let s = setup();
    let c = builder(&s.pki.ca_pem)
        .user_agent("license-agent/0.1.0 (test)")
        .build()
        .unwrap();
    assert_eq!(
        get(&c, &format!("{}{SITE_FILE}", s.nginx.http_url())).status(),
        StatusCode::OK
    );
    let entries = s.nginx.wait_access_entries(1, Duration::from_secs(2));
    assert_eq!(entries[0].user_agent, "license-agent/0.1.0 (test)");
    assert!(s
        .nginx
        .access_log()
        .contains("200\tGET /000000000000-license.cfg HTTP/1.1\tlicense-agent/0.1.0 (test)\t"));
}

#[test]
fn nginx_mutual_tls_requires_a_client_certificate_of_the_ca() {
    let s = setup();
    let url = format!("{}{SITE_FILE}", s.nginx.mtls_url());

    let without = get(&client(&s.pki), &url);
    assert_eq!(without.status(), StatusCode::BAD_REQUEST);

    let identity = fs::read(&s.pki.client_identity).unwrap();
    let with = get(&client_with_identity(&s.pki, &identity), &url);
    assert_eq!(with.status(), StatusCode::OK);
    assert_eq!(with.bytes().unwrap().as_ref(), b"site license\n");

    // Separate files work too (the agent's client_cert / client_key).
    let mut pem = fs::read(&s.pki.client_cert).unwrap();
    pem.extend(fs::read(&s.pki.client_key).unwrap());
    let with = get(&client_with_identity(&s.pki, &pem), &url);
    assert_eq!(with.status(), StatusCode::OK);

    // A client certificate from the other CA is refused with 400 too (nginx finishes
    // the handshake and refuses at the HTTP level).
    let mut foreign = fs::read(&s.pki.untrusted_client_key).unwrap();
    foreign.extend(fs::read(&s.pki.untrusted_client_cert).unwrap());
    let refused = get(&client_with_identity(&s.pki, &foreign), &url);
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn nginx_basic_auth() {
    let s = setup();
    let c = client(&s.pki);
    let url = format!("{}{SITE_FILE}", s.nginx.basic_url());
    assert_eq!(get(&c, &url).status(), StatusCode::UNAUTHORIZED);
    let wrong = c
        .get(&url)
        .basic_auth(BASIC_USER, Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = c
        .get(&url)
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(right.bytes().unwrap().as_ref(), b"site license\n");
    let entries = s.nginx.wait_access_entries(3, Duration::from_secs(2));
    assert_eq!(entries[2].remote_user, "phone");
    assert_eq!(entries[2].port, s.nginx.basic_port);
}

#[test]
fn nginx_bad_certificates_fail_verification() {
    let s = setup();
    let c = client(&s.pki);
    let cases = [
        (s.nginx.wrong_host_url(), "not valid for name"),
        (s.nginx.expired_url(), "expired"),
        (s.nginx.untrusted_url(), "unknownissuer"),
    ];
    for (base, reason) in cases {
        let url = format!("{base}{SITE_FILE}");
        let err = c.get(&url).send().expect_err(&url);
        let text = error_text(&err);
        assert!(err.is_connect(), "{url}: {text}");
        eprintln!("{url}: {text}");
        assert!(
            text.to_lowercase().contains(reason),
            "{url}: expected {reason}: {text}"
        );
    }
    // The untrusted endpoint is good once its own CA is trusted: only the CA differs.
    let other = builder(&s.pki.other_ca_pem).build().unwrap();
    let ok = get(&other, &format!("{}{SITE_FILE}", s.nginx.untrusted_url()));
    assert_eq!(ok.status(), StatusCode::OK);
}

#[test]
fn nginx_stops_on_drop() {
    let s = setup();
    let ports = s.nginx.ports();
    let dir = s.nginx.dir.clone();
    let pid: i32 = fs::read_to_string(dir.join("nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let started = Instant::now();
    drop(s);
    eprintln!("nginx stopped in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!dir.exists(), "temp folder removed");
    for port in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "nginx master {pid} gone"
    );
}

/// Sends a raw GET and returns everything until the server closes or `limit` bytes.
fn raw_get(url_base: &str, limit: usize) -> Vec<u8> {
    let addr = url_base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    while got.len() < limit {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
    }
    got
}

fn plain_client(total: Duration) -> Client {
    Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(total)
        .build()
        .unwrap()
}

#[test]
fn fault_status_and_serve() {
    let server = FaultServer::start(Fault::Status(503));
    assert!(server.url().starts_with("http://127.0.0.1:") && server.url().ends_with('/'));
    let c = plain_client(Duration::from_secs(5));
    for _ in 0..2 {
        let resp = get(&c, &format!("{}{SITE_FILE}", server.url()));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.text().unwrap().contains("503"));
    }
    assert_eq!(server.requests(), 2);
    assert_eq!(server.connections(), 1, "keep-alive reuses the connection");
    assert_eq!(server.seen()[0].path, format!("/{SITE_FILE}"));

    let body = b"served body\n".to_vec();
    let server = FaultServer::start(Fault::Serve(body.clone()));
    let url = format!("{}{PHONE_FILE}", server.url());
    let first = get(&c, &url);
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, faults::etag_of(&body));
    assert_eq!(first.bytes().unwrap().as_ref(), body.as_slice());
    let again = c.get(&url).header("If-None-Match", &etag).send().unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        server.seen()[1].header("if-none-match"),
        Some(etag.as_str())
    );
}

#[test]
fn fault_stall_times_out_and_drop_is_prompt() {
    let server = FaultServer::start(Fault::Stall);
    let started = Instant::now();
    let err = plain_client(Duration::from_millis(800))
        .get(format!("{}{SITE_FILE}", server.url()))
        .send()
        .expect_err("a stalled server never answers");
    assert!(err.is_timeout(), "{}", error_text(&err));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.requests(), 1, "the request was read");

    // A client still connected does not hold the drop up.
    let mut held = TcpStream::connect(server.addr()).unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let dropping = Instant::now();
    drop(server);
    assert!(
        dropping.elapsed() < Duration::from_secs(1),
        "{:?}",
        dropping.elapsed()
    );
}

#[test]
fn fault_cut_body() {
    let server = FaultServer::start(Fault::CutBody);
    let raw = raw_get(&server.url(), usize::MAX);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("Content-Length: 1000"), "{head}");
    assert_eq!(body.len(), 100);

    let err = plain_client(Duration::from_secs(5))
        .get(server.url())
        .send()
        .and_then(|r| r.bytes())
        .expect_err("a cut body is an error");
    assert!(err.is_body() || err.is_decode(), "{}", error_text(&err));
}

#[test]
fn fault_slow_drip_trips_a_total_timeout() {
    let server = FaultServer::start(Fault::SlowDrip);
    let started = Instant::now();
    let err = plain_client(Duration::from_millis(1500))
        .get(server.url())
        .send()
        .and_then(|r| r.bytes())
        .expect_err("400 bytes at 2 per second take 200 s");
    let took = started.elapsed();
    assert!(err.is_timeout(), "{}", error_text(&err));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(server.wait_idle(Duration::from_secs(2)));
    let sent = server.bytes_sent();
    assert!((2..=5).contains(&sent), "dripped {sent} bytes in {took:?}");
}

#[test]
fn fault_oversize_records_what_was_written() {
    for content_length in [true, false] {
        let server = FaultServer::start(Fault::Oversize { content_length });
        // A client that stops after 65,537 bytes of head and body.
        let got = raw_get(&server.url(), 65_537);
        assert!(got.len() >= 65_537);
        let head = String::from_utf8_lossy(&got[..200]).into_owned();
        assert_eq!(
            head.contains("Content-Length: 10485760"),
            content_length,
            "{head}"
        );
        assert!(server.wait_idle(Duration::from_secs(3)), "writer ended");
        let sent = server.bytes_sent();
        eprintln!(
            "oversize content_length={content_length}: {sent} bytes written before the close"
        );
        assert!((60_000..2_000_000).contains(&sent), "{sent} bytes written");

        // A client that reads it all gets exactly 10 MiB.
        let server = FaultServer::start(Fault::Oversize { content_length });
        let body = plain_client(Duration::from_secs(10))
            .get(server.url())
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(body.len(), faults::OVERSIZE_BYTES);
        assert!(server.wait_idle(Duration::from_secs(3)));
        assert_eq!(server.bytes_sent(), faults::OVERSIZE_BYTES);
    }
}

#[test]
fn fault_redirect_loop() {
    let server = FaultServer::start(Fault::RedirectLoop);
    let err = plain_client(Duration::from_secs(5))
        .get(format!("{}{SITE_FILE}", server.url()))
        .send()
        .expect_err("an endless redirect");
    assert!(err.is_redirect(), "{}", error_text(&err));
    // reqwest's default policy follows 10 redirects: 11 requests, all to the same path.
    assert_eq!(server.requests(), 11);
    assert!(server
        .seen()
        .iter()
        .all(|r| r.path == format!("/{SITE_FILE}")));

    let raw = raw_get(&server.url(), usize::MAX);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 302 "), "{text}");
    assert!(
        text.contains(&format!("Location: {}x\r\n", server.url())),
        "{text}"
    );
}
