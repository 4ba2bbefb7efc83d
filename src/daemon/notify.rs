//! Readiness for systemd (`Type=notify`): after the boot cycle has published the feature
//! set, the daemon sends `READY=1` to `$NOTIFY_SOCKET`, so that a unit ordered after it
//! (the phone application: `Before=` in the agent's unit) starts only once the set is
//! there. Before that cycle it sends `EXTEND_TIMEOUT_USEC=` with the cycle's own bound
//! (the configured fetch timeouts), so that a slow server never makes systemd kill a
//! start that would have finished, and restart it into the same wait.
//!
//! The protocol is sd_notify(3): one datagram to a Unix socket, whose name starts
//! with `@` for the abstract namespace. Without `$NOTIFY_SOCKET` (BusyBox init, a shell)
//! nothing is sent; a failure is logged and never stops the agent.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Where systemd listens for this service's notifications.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager, if any, that the agent is ready.
pub(crate) fn ready() {
    tell("READY=1");
}

/// Tells the service manager, if any, that the start may take up to `bound` from now.
pub(crate) fn starting_within(bound: std::time::Duration) {
    let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
    tell(&format!("EXTEND_TIMEOUT_USEC={micros}"));
}

fn tell(message: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    match send(&socket, message.as_bytes()) {
        Ok(()) => log::debug!("told the service manager: {message}"),
        Err(e) => log::warn!(
            "could not tell the service manager {message} ({}): {e}",
            socket.to_string_lossy()
        ),
    }
}

/// Sends one notification datagram to `socket` (a path, or `@name` for an abstract one).
fn send(socket: &OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let bytes = socket.as_bytes();
    let address = match bytes.split_first() {
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some((b'/', _)) => SocketAddr::from_pathname(std::path::Path::new(socket))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@...)",
            ))
        }
    };
    let sender = UnixDatagram::unbound()?;
    let sent = sender.send_to_addr(message, &address)?;
    if sent != message.len() {
        return Err(std::io::Error::other("the datagram was cut short"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path_or_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), b"READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("license-agent-test-{}", std::process::id());
        let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let listener = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        send(OsStr::new(&format!("@{name}")), b"READY=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_bad_or_absent_socket_is_an_error_not_a_panic() {
        assert!(send(OsStr::new("relative/path"), b"READY=1").is_err());
        assert!(send(OsStr::new(""), b"READY=1").is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody-listens");
        assert!(send(missing.as_os_str(), b"READY=1").is_err());
    }
}
