//! systemd's readiness protocol (sd_notify(3)) for `Type=notify`: `READY=1` once the
//! program is attached and the control socket serves, `RELOADING=1`/`READY=1` around a
//! SIGHUP, `STOPPING=1` when the detach begins.
//!
//! Our own twenty lines rather than the `sd-notify` crate: the protocol is one datagram
//! of `KEY=value` lines to the socket `$NOTIFY_SOCKET` names (a path, or `@name` for the
//! abstract namespace), std has both address kinds, and this keeps the dependency tree
//! as it is. Without `$NOTIFY_SOCKET` (not under systemd) it does nothing.
use std::{io, os::unix::net::UnixDatagram};

/// Sends `state` (e.g. `"READY=1\nSTATUS=attached"`) to `$NOTIFY_SOCKET`. `Ok(false)`:
/// no socket to tell (not run by systemd, or not `Type=notify`).
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => send_to(&path.to_string_lossy(), state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the socket `addr` (`/path` or `@abstract`).
pub fn send_to(addr: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt as _;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &a)?;
    } else if addr.starts_with('/') {
        sock.send_to(state.as_bytes(), addr)?;
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET {addr:?} is neither a path nor an @abstract name"),
        ));
    }
    Ok(())
}

/// [`notify`], a failure logged and otherwise ignored: the daemon works without systemd
/// knowing (systemd then times the start out, which says more than an exit here would).
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!("telling systemd {state:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_socket() {
        let dir = std::env::temp_dir().join(format!("rport-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("notify");
        let _ = std::fs::remove_file(&p);
        let rx = UnixDatagram::bind(&p).unwrap();
        send_to(p.to_str().unwrap(), "READY=1\nSTATUS=attached").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=attached");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("rport-notify-test-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let rx = UnixDatagram::bind_addr(&a).unwrap();
        send_to(&format!("@{name}"), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn not_a_socket_address() {
        let e = send_to("relative/path", "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(send_to("/nonexistent/rport/notify", "READY=1").is_err());
    }
}
