//! Minimal guards for the namespace tests: a network namespace, a process, a bpffs mount.
//! Each removes what it made on Drop, also when the test fails or panics.
use std::{
    net::UdpSocket,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique name for this test process: prefix + pid + counter.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace, deleted on Drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(prefix: &str) -> Result<Ns> {
        let name = unique(prefix);
        sh(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }
    /// `ip -n <ns> args…`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        sh(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }
    /// A command run inside the namespace (`ip netns exec`).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
    /// Runs `f` on a thread that has entered this namespace.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.name))?;
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a valid namespace fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow::anyhow!(
                    "setns: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread panicked"))?
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Creates a veth pair `a` (in `na`) — `b` (in `nb`), one queue each (AF_XDP on veth
/// receives on the queue matching the sender's tx queue).
pub fn veth(na: &Ns, a: &str, nb: &Ns, b: &str) -> Result<()> {
    sh(Command::new("ip").args([
        "link",
        "add",
        a,
        "netns",
        &na.name,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
        "type",
        "veth",
        "peer",
        "name",
        b,
        "netns",
        &nb.name,
        "numtxqueues",
        "1",
        "numrxqueues",
        "1",
    ]))?;
    na.ip(&["link", "set", a, "up"])?;
    nb.ip(&["link", "set", b, "up"])?;
    Ok(())
}

/// A child process, killed (SIGTERM, then SIGKILL) and reaped on Drop.
pub struct Proc {
    pub child: Option<Child>,
    pub what: String,
}

impl Proc {
    pub fn spawn(mut c: Command, what: &str, log: &Path) -> Result<Proc> {
        let f = std::fs::File::create(log)?;
        let child = c
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Proc {
            child: Some(child),
            what: what.into(),
        })
    }
    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("already stopped")?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if t.elapsed() > Duration::from_secs(5) {
                let _ = c.kill();
                bail!("{} did not stop on SIGTERM", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A bpffs mounted on a fresh directory of ours (outside /sys, so every `ip netns exec`
/// sees it), unmounted and removed on Drop.
pub struct Bpffs {
    pub dir: PathBuf,
}

impl Bpffs {
    pub fn new() -> Result<Bpffs> {
        let dir = std::env::temp_dir().join(unique("rport-bpffs-"));
        std::fs::create_dir_all(&dir)?;
        sh(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir))?;
        Ok(Bpffs { dir })
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command, returns stdout, or an error with its stderr.
pub fn sh(c: &mut Command) -> Result<String> {
    let o: Output = c.output().with_context(|| format!("running {c:?}"))?;
    if !o.status.success() {
        bail!("{c:?}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The built `rport` binary: next to this executable (a binary in target/<profile>/) or one
/// level up (a test in target/<profile>/deps/).
pub fn rport_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable location")?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let p = d.join("rport");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the rport binary is not built next to {}: run `cargo xtask test` (it builds the binaries first)",
        exe.display()
    )
}

/// Sends `payload` `n` times over UDP from `from` to `to`, inside namespace `ns`.
pub fn send_udp(ns: &Ns, from: &str, to: &str, payload: Vec<u8>, n: usize) -> Result<()> {
    let (from, to) = (from.to_string(), to.to_string());
    ns.within(move || -> Result<()> {
        let s = UdpSocket::bind(&from)?;
        for _ in 0..n {
            s.send_to(&payload, &to)?;
        }
        Ok(())
    })?
}

/// Receives one UDP datagram on `bind` inside namespace `ns`, on a thread of its own (so
/// the test can send meanwhile); gives up after `timeout`. The socket is bound before this
/// returns.
pub fn recv_udp(
    ns: &Ns,
    bind: &str,
    timeout: Duration,
) -> Result<std::thread::JoinHandle<Result<Vec<u8>>>> {
    let file = std::fs::File::open(format!("/var/run/netns/{}", ns.name))?;
    let bind = bind.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || -> Result<Vec<u8>> {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let s = UdpSocket::bind(&bind);
        let _ = ready_tx.send(());
        let s = s?;
        s.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 65536];
        let (n, _) = s.recv_from(&mut buf).context("nothing received")?;
        buf.truncate(n);
        Ok(buf)
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    Ok(h)
}

/// True when the namespace tests can run here; otherwise prints why they skip.
pub fn can_run(test: &str, tools: &[&str]) -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {test}: needs root to create network namespaces and attach XDP");
        return false;
    }
    for t in tools {
        if Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("SKIP {test}: {t} is not installed (cargo xtask setup installs it)");
            return false;
        }
    }
    true
}
