//! The servers license-agent's tests fetch from, each started on 127.0.0.1 by the test
//! that needs it and gone when dropped: real nginx (HTTP, HTTPS, mutual TLS, Basic
//! auth, bad certificates), Apache and lighttpd (HTTP, HTTPS, WebDAV uploads), BusyBox
//! httpd (HTTP, read-only), a server of our own that sends no validators
//! (`bare_httpd.rs`), `openssl s_server` (a handshake refused), vsftpd (FTP and FTPS),
//! tftpd-hpa and a lossy UDP relay in front of it, Pure-FTPd and ProFTPD (FTP and
//! FTPS), atftpd and dnsmasq's TFTP (`scripts/setup-servers.sh` provides the servers
//! beyond nginx, vsftpd and tftpd-hpa), the fault server (an HTTP/1.1 server of our own
//! that misbehaves as asked, or answers as a test scripts it), rsyslogd (receiving
//! syslog over UDP, TCP, TLS or a local socket: `rsyslog.rs`), and the throw-away PKI
//! they use. For the emulated phone's DHCP network: a network namespace with a tap
//! device (`netns.rs`), dnsmasq's DHCP and DNS in it (`dnsmasq_dhcp.rs`), and nginx and
//! vsftpd started there on its addresses (`Nginx::start_on`, `Vsftpd::start_on`).
//!
//! One crate for the library's unit tests (a dev-dependency) and the integration tests
//! (`tests/it`) alike, so each server exists once. It knows nothing of the agent: it
//! serves bytes, and the tests decide what they mean. Tests panic on set-up failures
//! (a server that cannot start is a broken test machine, said plainly).
//!
//! Which validators each HTTP server sends, and whether it answers 304 to a renewal that
//! keeps the file's size and modification time ([`files::put_same_time`]), is in each
//! module's documentation.

pub mod apache;
pub mod atftpd;
pub mod bare_httpd;
pub mod busybox_httpd;
#[cfg(test)]
mod curl_client;
pub mod daemon;
pub mod dnsmasq_dhcp;
pub mod dnsmasq_tftp;
pub mod faults;
pub mod files;
pub mod ftp;
pub mod lighttpd;
pub mod netns;
pub mod nginx;
pub mod openssl;
pub mod pki;
pub mod proftpd;
pub mod pure_ftpd;
pub mod rsyslog;
#[cfg(test)]
mod test_client;
pub mod tftp;
pub mod weblog;
