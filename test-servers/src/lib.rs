//! The servers license-agent's tests fetch from, each started on 127.0.0.1 by the test
//! that needs it and gone when dropped: real nginx (HTTP, HTTPS, mutual TLS, Basic
//! auth, bad certificates), `openssl s_server` (a handshake refused), vsftpd (FTP and
//! FTPS), tftpd-hpa and a lossy UDP relay in front of it, Pure-FTPd and ProFTPD (FTP and
//! FTPS), atftpd and dnsmasq's TFTP (`scripts/setup-servers.sh` provides these four),
//! the fault server (an HTTP/1.1 server of our own that misbehaves as asked, or answers
//! as a test scripts it), and the throw-away PKI they use.
//!
//! One crate for the library's unit tests (a dev-dependency) and the integration tests
//! (`tests/it`) alike, so each server exists once. It knows nothing of the agent: it
//! serves bytes, and the tests decide what they mean. Tests panic on set-up failures
//! (a server that cannot start is a broken test machine, said plainly).

pub mod atftpd;
#[cfg(test)]
mod curl_client;
pub mod dnsmasq_tftp;
pub mod faults;
pub mod ftp;
pub mod nginx;
pub mod openssl;
pub mod pki;
pub mod proftpd;
pub mod pure_ftpd;
pub mod tftp;
