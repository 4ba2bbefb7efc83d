//! `openssl s_server -WWW` on 127.0.0.1: a TLS server that refuses the handshake itself,
//! for what nginx never does (nginx with `ssl_verify_client on` completes the handshake
//! with a client that sent no certificate and answers 400; `s_server -Verify 1` ends
//! the handshake with an alert). Serves the files of a folder; killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long `s_server` may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SServer {
    child: Child,
    port: u16,
}

impl SServer {
    /// Serves `root` with `cert` and `key`, with `s_server`'s `extra` options (e.g.
    /// `-Verify 1 -CAfile ca.pem`). Panics if it does not listen within 10 s.
    pub fn start(root: &Path, cert: &Path, key: &Path, extra: &[&str]) -> SServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(extra)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server (the README's test command installs openssl)");
        let mut server = SServer { child, port };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("openssl s_server exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "openssl s_server did not listen within {START_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `https://localhost:PORT/` (the test PKI's server certificate names localhost).
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
