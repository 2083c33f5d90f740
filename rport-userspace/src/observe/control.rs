//! The control socket: `rport run` serves it, `rport stats` and `rport bindings` ask it.
//!
//! Why a socket and not the pinned maps: `ip netns exec` gives every command a fresh /sys,
//! so a second command does not see the daemon's bpffs. An abstract unix socket is scoped
//! by network namespace instead, exactly like the daemon's interfaces: `rport stats` run in
//! the same namespace (by any means) reaches it, another namespace's daemon does not.
//! Access is limited to root and the daemon's own user (SO_PEERCRED).
//!
//! One request line, one JSON reply line: `stats` (a [`Snapshot`]), `bindings` (its
//! [`BindingRow`]s), `clients` (the [`ReachableClient`]s of the NAT tracker), or
//! `{"error": "…"}`.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::{
        fd::AsRawFd as _,
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::observe::{
    nat::ReachableClient,
    snapshot::{BindingRow, Snapshot, Sources},
};

/// Abstract socket name (per network namespace).
pub const SOCKET_NAME: &str = "rport/control";

fn peer_allowed(stream: &UnixStream) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    // SAFETY: no preconditions.
    r == 0 && (cred.uid == 0 || cred.uid == unsafe { libc::geteuid() })
}

/// Binds the control socket; fails clearly if another daemon in this namespace has it.
pub fn bind() -> Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(SOCKET_NAME)?;
    UnixListener::bind_addr(&addr).context(
        "binding the control socket: is another `rport run` already running in this network namespace?",
    )
}

/// The reply to one request.
fn reply(sources: &Sources, request: &str) -> Result<Value> {
    match request {
        "stats" => sources.snapshot()?.to_json(),
        "bindings" => Ok(serde_json::to_value(sources.snapshot()?.bindings)?),
        "clients" => Ok(serde_json::to_value(sources.clients())?),
        other => bail!("unknown request {other:?}"),
    }
}

/// Serves requests until the listener is closed (the daemon exits).
pub fn serve(listener: UnixListener, sources: Arc<Sources>) {
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        if !peer_allowed(&stream) {
            let _ = stream.write_all(b"{\"error\":\"permission denied\"}\n");
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            continue;
        }
        let reply =
            reply(&sources, line.trim()).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        let _ = writeln!(stream, "{reply}");
    }
}

/// Asks the daemon of this network namespace, and reads its reply as a `T`.
fn request<T: serde::de::DeserializeOwned>(what: &str) -> Result<T> {
    let addr = SocketAddr::from_abstract_name(SOCKET_NAME)?;
    let mut s = UnixStream::connect_addr(&addr)
        .context("no rport daemon is running in this network namespace (start `rport run`)")?;
    writeln!(s, "{what}")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let v: Value = serde_json::from_str(&buf).context("malformed reply from the daemon")?;
    if let Some(e) = v.get("error") {
        bail!("daemon: {}", e.as_str().unwrap_or_default());
    }
    serde_json::from_value(v).context("malformed reply from the daemon")
}

/// The running daemon's snapshot (without its bindings: see [`bindings`]).
pub fn stats() -> Result<Snapshot> {
    request("stats")
}

/// The running daemon's live bindings, newest first.
pub fn bindings() -> Result<Vec<BindingRow>> {
    request("bindings")
}

/// The clients the running daemon's servers can reach through their Contact tag, most
/// recently tagged first.
pub fn clients() -> Result<Vec<ReachableClient>> {
    request("clients")
}
