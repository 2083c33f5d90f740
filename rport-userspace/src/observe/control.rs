//! The control socket: `rport run` serves it, `rport stats` and `rport bindings` ask it.
//!
//! Why a socket and not the pinned maps: `ip netns exec` gives every command a fresh /sys,
//! so a second command does not see the daemon's bpffs. /run is shared with the host, so
//! the socket is a path there, one per network namespace like the daemon's interfaces:
//! `/run/rport/net-<netns inode>/control`. `rport stats` run in the same namespace (by any
//! means that keeps the host's /run) reaches it, another namespace's daemon does not.
//!
//! Why not the abstract name it used to be: anyone may bind an abstract name first, so an
//! unprivileged user could keep `rport run` from starting and answer root's `rport stats`
//! with made-up figures. Both ends now trust root only:
//! - the directories are root's, mode 0700, never followed through a symlink (checked with
//!   lstat): nobody else can create, replace or reach anything inside them;
//! - the daemon answers a client whose SO_PEERCRED uid is 0, and only that;
//! - the client believes a server whose SO_PEERCRED uid is 0, and only that, and otherwise
//!   names the pid and uid that answered.
//!
//! One daemon per namespace: it holds an flock on `lock` (with its pid) next to the socket
//! for its lifetime. A second `rport run` finds it held and stops before it attaches
//! anything; a socket left by a killed daemon (nobody holds the lock) is replaced.
//!
//! One request line, one JSON reply line: `stats` (a [`Snapshot`]), `bindings` (its
//! [`BindingRow`]s), `clients` (the [`ReachableClient`]s of the NAT tracker), or
//! `{"error": "…"}`.
use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Seek as _, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::{
            fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::observe::{
    nat::ReachableClient,
    snapshot::{BindingRow, Snapshot, Sources},
};

/// The directory of every namespace's control socket (shared with the host by
/// `ip netns exec`, unlike /sys).
pub const RUN_DIR: &str = "/run/rport";

/// The only uid either end trusts.
const ROOT: u32 = 0;

const NO_DAEMON: &str = "no rport daemon is running in this network namespace (start `rport run`)";

/// Where one network namespace's control socket lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// [`RUN_DIR`], or a test's directory.
    pub base: PathBuf,
    /// `base/net-<netns inode>`.
    pub dir: PathBuf,
}

impl Layout {
    pub fn for_netns(base: &Path, netns_inode: u64) -> Layout {
        Layout {
            base: base.to_path_buf(),
            dir: base.join(format!("net-{netns_inode}")),
        }
    }

    /// This process's network namespace (the inode names it, as in the default pin dir).
    pub fn this_netns() -> Result<Layout> {
        let ino = std::fs::metadata("/proc/self/ns/net")
            .context("reading /proc/self/ns/net")?
            .ino();
        Ok(Layout::for_netns(Path::new(RUN_DIR), ino))
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control")
    }

    fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
}

fn who(uid: u32) -> String {
    if uid == ROOT {
        "root".into()
    } else {
        format!("uid {uid}")
    }
}

/// `path` must be a directory itself (not a symlink to one), owned by `owner`, with no
/// access for group or others.
fn check_dir(path: &Path, owner: u32) -> Result<()> {
    let m = std::fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    let p = path.display();
    if m.file_type().is_symlink() {
        bail!("{p} is a symlink: refusing to follow it (rport creates this directory itself)");
    }
    if !m.is_dir() {
        bail!("{p} is not a directory");
    }
    if m.uid() != owner {
        bail!(
            "{p} is owned by uid {}, not {}: refusing it",
            m.uid(),
            who(owner)
        );
    }
    if m.mode() & 0o077 != 0 {
        bail!(
            "{p} has mode {:04o}, not 0700: refusing it",
            m.mode() & 0o7777
        );
    }
    Ok(())
}

/// Creates `path` (mode 0700) unless it exists, then [`check_dir`]s it.
fn ensure_dir(path: &Path, owner: u32) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    check_dir(path, owner)
}

/// Whether a socket is at `path`; anything else there (a symlink, a file, a socket of
/// another owner) is refused.
fn check_socket(path: &Path, owner: u32) -> Result<bool> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    let p = path.display();
    if m.file_type().is_symlink() {
        bail!("{p} is a symlink: refusing to follow it");
    }
    if !m.file_type().is_socket() {
        bail!("{p} is not a socket: refusing to replace it");
    }
    if m.uid() != owner {
        bail!(
            "{p} is owned by uid {}, not {}: refusing it",
            m.uid(),
            who(owner)
        );
    }
    Ok(true)
}

fn peer_cred(stream: &UnixStream) -> Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_PEERCRED");
    }
    Ok(cred)
}

/// The client's check of whoever answered at `path`.
fn check_server(cred: &libc::ucred, owner: u32, path: &Path) -> Result<()> {
    if cred.uid != owner {
        bail!(
            "{} is answered by pid {} (uid {}), not by {}: refusing to trust it",
            path.display(),
            cred.pid,
            cred.uid,
            who(owner)
        );
    }
    Ok(())
}

/// What the daemon holds while it serves: the lock, and the paths to remove at exit.
pub struct Claim {
    layout: Layout,
    _lock: File,
}

impl Drop for Claim {
    /// Removes the socket, the lock and the namespace's directory (still holding the lock:
    /// a daemon starting meanwhile sees it held, or finds its lock file gone and stops).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.layout.socket());
        let _ = std::fs::remove_file(self.layout.lock());
        let _ = std::fs::remove_dir(&self.layout.dir);
    }
}

/// A bound control socket: serve `listener`, keep `claim` until the daemon has detached.
pub struct Bound {
    pub listener: UnixListener,
    pub claim: Claim,
}

/// Takes the namespace's lock, then binds its socket (replacing a stale one).
fn take_lock(layout: &Layout, owner: u32) -> Result<File> {
    let path = layout.lock();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let m = f.metadata()?;
    if !m.is_file() || m.uid() != owner {
        bail!(
            "{} is not a file of {}: refusing it",
            path.display(),
            who(owner)
        );
    }
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::WouldBlock {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        bail!(
            "another `rport run` (pid {}) is already running in this network namespace ({} is held)",
            pid.trim(),
            path.display()
        );
    }
    // The daemon before us may have unlinked this file between our open and our lock.
    match std::fs::symlink_metadata(&path) {
        Ok(now) if now.ino() == m.ino() && now.dev() == m.dev() => {}
        _ => bail!("the `rport run` before is just exiting: try again"),
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    Ok(f)
}

fn bind_in(layout: &Layout, owner: u32) -> Result<Bound> {
    ensure_dir(&layout.base, owner)?;
    ensure_dir(&layout.dir, owner)?;
    let lock = take_lock(layout, owner)?;
    let socket = layout.socket();
    // Nobody holds the lock: a socket still there is a killed daemon's.
    if check_socket(&socket, owner)? {
        std::fs::remove_file(&socket)
            .with_context(|| format!("removing the stale {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    // Not needed for access (the directory is 0700), but says whose it is.
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(Bound {
        listener,
        claim: Claim {
            layout: layout.clone(),
            _lock: lock,
        },
    })
}

/// Binds this namespace's control socket; fails clearly if another daemon in this
/// namespace has it, or if anything in its place is not root's.
pub fn bind() -> Result<Bound> {
    bind_in(&Layout::this_netns()?, ROOT)
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

/// Serves requests from clients of uid `owner` until the listener is closed.
fn serve_with(listener: UnixListener, owner: u32, reply: impl Fn(&str) -> Result<Value>) {
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        // Read the request also from a client we refuse: closing with its line unread
        // would reset the connection, and it would not see why.
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            continue;
        }
        if !peer_cred(&stream).is_ok_and(|c| c.uid == owner) {
            let _ = stream.write_all(b"{\"error\":\"permission denied\"}\n");
            continue;
        }
        let reply = reply(line.trim()).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        let _ = writeln!(stream, "{reply}");
    }
}

/// Serves root's requests until the listener is closed (the daemon exits).
pub fn serve(listener: UnixListener, sources: Arc<Sources>) {
    serve_with(listener, ROOT, |r| reply(&sources, r))
}

/// Connects to the daemon of `layout`, checking every step is `owner`'s.
fn connect_in(layout: &Layout, owner: u32) -> Result<UnixStream> {
    for d in [&layout.base, &layout.dir] {
        match std::fs::symlink_metadata(d) {
            Err(e) if e.kind() == ErrorKind::NotFound => bail!(NO_DAEMON),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => bail!(
                "{}: permission denied (the control socket is root's only: run this as root)",
                d.display()
            ),
            _ => check_dir(d, owner)?,
        }
    }
    let socket = layout.socket();
    if !check_socket_type(&socket)? {
        bail!(NO_DAEMON);
    }
    let s = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            bail!(NO_DAEMON)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", socket.display())),
    };
    check_server(&peer_cred(&s)?, owner, &socket)?;
    Ok(s)
}

/// The client's look at the socket path: a socket, not a symlink (who owns it does not
/// matter: SO_PEERCRED says who answers).
fn check_socket_type(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(true),
        Ok(_) => bail!("{} is not a socket: refusing it", path.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("{}", path.display())),
    }
}

fn request_in<T: serde::de::DeserializeOwned>(
    layout: &Layout,
    owner: u32,
    what: &str,
) -> Result<T> {
    let mut s = connect_in(layout, owner)?;
    // One write of the whole line. If it fails (the daemon answered and closed first: it
    // refuses a client it does not trust), its answer may still be there to read: that,
    // not "Broken pipe", is what the user needs to see.
    let sent = s.write_all(format!("{what}\n").as_bytes());
    let mut buf = String::new();
    let read = s.read_to_string(&mut buf);
    if buf.is_empty() {
        sent.context("sending the request to the daemon")?;
        read.context("reading the daemon's reply")?;
    }
    let v: Value = serde_json::from_str(&buf).context("malformed reply from the daemon")?;
    if let Some(e) = v.get("error") {
        bail!("daemon: {}", e.as_str().unwrap_or_default());
    }
    serde_json::from_value(v).context("malformed reply from the daemon")
}

/// Asks root's daemon of this network namespace, and reads its reply as a `T`.
fn request<T: serde::de::DeserializeOwned>(what: &str) -> Result<T> {
    request_in(&Layout::this_netns()?, ROOT, what)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    /// A scratch base directory (mode 0700, ours), removed on Drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "rport-control-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
            Scratch(p)
        }
        /// A layout whose base is `name` inside the scratch directory.
        fn layout(&self, name: &str) -> Layout {
            Layout::for_netns(&self.0.join(name), 4026531840)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn me() -> u32 {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() }
    }

    fn err<T>(r: Result<T>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn echo(bound: Bound, owner: u32) -> Claim {
        let Bound { listener, claim } = bound;
        std::thread::spawn(move || serve_with(listener, owner, |r| Ok(json!({ "echo": r }))));
        claim
    }

    #[test]
    fn layout_is_per_netns_under_run() {
        let l = Layout::for_netns(Path::new(RUN_DIR), 4026532000);
        assert_eq!(l.socket(), Path::new("/run/rport/net-4026532000/control"));
        assert_eq!(l.lock(), Path::new("/run/rport/net-4026532000/lock"));
        let here = Layout::this_netns().unwrap();
        assert!(here.dir.starts_with(RUN_DIR));
        assert_ne!(here.dir, Layout::for_netns(Path::new(RUN_DIR), 1).dir);
    }

    #[test]
    fn bind_creates_0700_dirs_and_a_client_gets_answers() {
        let s = Scratch::new();
        let l = s.layout("rport");
        let _claim = echo(bind_in(&l, me()).unwrap(), me());
        for d in [&l.base, &l.dir] {
            let m = std::fs::symlink_metadata(d).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.mode() & 0o077, 0, "{}", d.display());
            assert_eq!(m.uid(), me());
        }
        let v: Value = request_in(&l, me(), "stats").unwrap();
        assert_eq!(v, json!({ "echo": "stats" }));
        let pid = std::fs::read_to_string(l.lock()).unwrap();
        assert_eq!(pid, std::process::id().to_string());
    }

    #[test]
    fn a_second_daemon_is_refused_while_the_first_holds_the_lock() {
        let s = Scratch::new();
        let l = s.layout("rport");
        let _claim = echo(bind_in(&l, me()).unwrap(), me());
        let e = err(bind_in(&l, me()));
        assert!(
            e.contains(&format!(
                "another `rport run` (pid {}) is already running",
                std::process::id()
            )),
            "{e}"
        );
        // The first one still answers.
        let v: Value = request_in(&l, me(), "bindings").unwrap();
        assert_eq!(v, json!({ "echo": "bindings" }));
    }

    #[test]
    fn a_stale_socket_is_replaced_and_the_claim_cleans_up() {
        let s = Scratch::new();
        let l = s.layout("rport");
        ensure_dir(&l.base, me()).unwrap();
        ensure_dir(&l.dir, me()).unwrap();
        // A killed daemon: its socket file stays, nobody listens, nobody holds the lock.
        drop(UnixListener::bind(l.socket()).unwrap());
        assert!(l.socket().exists());
        assert!(err(request_in::<Value>(&l, me(), "stats")).contains(NO_DAEMON));
        let claim = echo(bind_in(&l, me()).unwrap(), me());
        let v: Value = request_in(&l, me(), "stats").unwrap();
        assert_eq!(v["echo"], "stats");
        drop(claim);
        assert!(
            !l.dir.exists(),
            "the namespace's directory goes with the daemon"
        );
        assert!(l.base.exists());
        assert!(err(request_in::<Value>(&l, me(), "stats")).contains(NO_DAEMON));
    }

    #[test]
    fn no_daemon_is_one_clear_line() {
        let s = Scratch::new();
        let l = s.layout("rport");
        assert_eq!(err(request_in::<Value>(&l, me(), "stats")), NO_DAEMON);
        ensure_dir(&l.base, me()).unwrap();
        assert_eq!(err(request_in::<Value>(&l, me(), "stats")), NO_DAEMON);
        ensure_dir(&l.dir, me()).unwrap();
        assert_eq!(err(request_in::<Value>(&l, me(), "stats")), NO_DAEMON);
    }

    #[test]
    fn a_symlinked_directory_is_never_followed() {
        let s = Scratch::new();
        let target = s.0.join("elsewhere");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .unwrap();
        let l = s.layout("rport");
        symlink(&target, &l.base).unwrap();
        let e = err(bind_in(&l, me()));
        assert!(e.contains("is a symlink: refusing to follow it"), "{e}");
        let e = err(request_in::<Value>(&l, me(), "stats"));
        assert!(e.contains("is a symlink"), "{e}");
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "nothing made there"
        );
        // The same one level down.
        let l = s.layout("real");
        ensure_dir(&l.base, me()).unwrap();
        symlink(&target, &l.dir).unwrap();
        let e = err(bind_in(&l, me()));
        assert!(e.contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_open_to_others_or_of_another_owner_is_refused() {
        let s = Scratch::new();
        let l = s.layout("rport");
        std::fs::create_dir(&l.base).unwrap();
        std::fs::set_permissions(&l.base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = err(bind_in(&l, me()));
        assert!(e.contains("has mode 0755, not 0700: refusing it"), "{e}");
        let e = err(request_in::<Value>(&l, me(), "stats"));
        assert!(e.contains("has mode 0755"), "{e}");
        std::fs::set_permissions(&l.base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let other = me().wrapping_add(1);
        let e = err(bind_in(&l, other));
        assert!(
            e.contains(&format!("is owned by uid {}, not uid {other}", me())),
            "{e}"
        );
        assert!(!l.dir.exists(), "refused before anything is made inside");
        // A file where the directory goes.
        let l = s.layout("file");
        std::fs::write(&l.base, b"").unwrap();
        assert!(err(bind_in(&l, me())).contains("is not a directory"));
    }

    #[test]
    fn anything_but_our_socket_in_its_place_is_refused() {
        let s = Scratch::new();
        let l = s.layout("rport");
        ensure_dir(&l.base, me()).unwrap();
        ensure_dir(&l.dir, me()).unwrap();
        std::fs::write(l.socket(), b"not a socket").unwrap();
        assert!(err(bind_in(&l, me())).contains("is not a socket: refusing to replace it"));
        assert!(err(request_in::<Value>(&l, me(), "stats")).contains("is not a socket"));
        assert_eq!(std::fs::read(l.socket()).unwrap(), b"not a socket");
        std::fs::remove_file(l.socket()).unwrap();
        symlink("/nonexistent", l.socket()).unwrap();
        assert!(err(bind_in(&l, me())).contains("is a symlink"));
        assert!(err(request_in::<Value>(&l, me(), "stats")).contains("is not a socket"));
        std::fs::remove_file(l.socket()).unwrap();
        // The lock file as a symlink: O_NOFOLLOW.
        std::fs::remove_file(l.lock()).unwrap();
        symlink("/nonexistent", l.lock()).unwrap();
        assert!(err(bind_in(&l, me())).contains("opening"));
        assert!(!Path::new("/nonexistent").exists());
    }

    #[test]
    fn the_client_names_the_pid_and_uid_of_a_server_it_does_not_trust() {
        let p = Path::new("/run/rport/net-1/control");
        let squatter = libc::ucred {
            pid: 4321,
            uid: 65534,
            gid: 65534,
        };
        let e = err(check_server(&squatter, ROOT, p));
        assert_eq!(
            e,
            "/run/rport/net-1/control is answered by pid 4321 (uid 65534), not by root: refusing to trust it"
        );
        let root = libc::ucred {
            pid: 1,
            uid: 0,
            gid: 0,
        };
        check_server(&root, ROOT, p).unwrap();
        // Through a real socket: served by us, expected from someone else.
        let s = Scratch::new();
        let l = s.layout("rport");
        let _claim = echo(bind_in(&l, me()).unwrap(), me());
        let mut st = UnixStream::connect(l.socket()).unwrap();
        let e = err(check_server(
            &peer_cred(&st).unwrap(),
            me().wrapping_add(1),
            &l.socket(),
        ));
        assert!(
            e.contains(&format!("pid {} (uid {})", std::process::id(), me())),
            "{e}"
        );
        writeln!(st, "stats").unwrap();
    }

    #[test]
    fn the_daemon_refuses_a_client_of_another_uid() {
        let s = Scratch::new();
        let l = s.layout("rport");
        // The daemon trusts a uid we are not.
        let _claim = echo(bind_in(&l, me()).unwrap(), me().wrapping_add(1));
        let mut st = UnixStream::connect(l.socket()).unwrap();
        writeln!(st, "stats").unwrap();
        let mut reply = String::new();
        st.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "{\"error\":\"permission denied\"}\n");
        assert_eq!(
            err(request_in::<Value>(&l, me(), "stats")),
            "daemon: permission denied"
        );
    }
}
