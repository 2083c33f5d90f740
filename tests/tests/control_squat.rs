//! The control socket against a local attacker (issue 12): an unprivileged user of the
//! gateway binds the old abstract name `@rport/control` and tries the new path before
//! `rport run` starts, then asks the daemon itself. `rport run` must still start, root's
//! `rport stats --json` must give the real daemon's counters, and the attacker must be
//! refused both as a server and as a client. Who may be root's server is checked too: a
//! squatter that gets past the directory (CAP_DAC_OVERRIDE, uid nobody) is not believed.
use std::{
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use rport_tests::{
    ns::{Bpffs, Ns, Proc, can_run, send_udp, sh, unique, veth},
    packets::register,
    topo::Rport,
};
use rport_userspace::observe::snapshot::Snapshot;

/// The attacker's tool: binds a unix socket (an abstract name when it starts with `@`),
/// making its directory if it can, and answers every request with made-up JSON.
const SQUATTER: &str = r#"
import os, socket, sys
path, fake = sys.argv[1], sys.argv[2].encode() + b"\n"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if path.startswith("@"):
    s.bind("\0" + path[1:])
else:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s.bind(path)
s.listen()
print("squatting", path, flush=True)
while True:
    c, _ = s.accept()
    c.recv(100)
    c.sendall(fake)
    c.close()
"#;

const PYTHON: &str = "/usr/bin/python3";

/// A directory of ours (the script, the logs), removed on Drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `setpriv` to uid/gid nobody with no groups, inside `ns`; with `dac_override` the process
/// keeps CAP_DAC_OVERRIDE (it can pass root's 0700 directory, yet is not root).
fn as_nobody(ns: &Ns, dac_override: bool) -> Command {
    let mut c = ns.cmd("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if dac_override {
        c.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
    }
    c
}

fn netns_inode(ns: &Ns) -> u64 {
    sh(ns.cmd("stat").args(["-L", "-c", "%i", "/proc/self/ns/net"]))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Starts a squatter on `path` and waits until it listens.
fn squat(mut c: Command, script: &Path, path: &str, fake: &str, log: &Path) -> Proc {
    c.arg(PYTHON).arg(script).args([path, fake]);
    let p = Proc::spawn(c, "squatter", log).unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("squatting")
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "squatter on {path} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn squatters_and_unprivileged_clients_are_refused() {
    if !can_run(
        "squatters_and_unprivileged_clients_are_refused",
        &["ip", "setpriv", "stat", "timeout", PYTHON],
    ) {
        return;
    }
    let scratch = Scratch(std::env::temp_dir().join(unique("rport-squat-")));
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&scratch.0)
        .unwrap();
    let script = scratch.0.join("squat.py");
    std::fs::write(&script, SQUATTER).unwrap();
    // What the attacker wants root to read: well-formed, and recognisable.
    let fake = Snapshot {
        uptime_s: 999_999,
        bindings_live: 4242,
        ..Default::default()
    }
    .to_json()
    .unwrap()
    .to_string();

    let gw = Ns::new("rpsqgw").unwrap();
    let peer = Ns::new("rpsqpeer").unwrap();
    veth(&gw, "out0", &peer, "cli0").unwrap();
    veth(&gw, "in0", &gw, "in0p").unwrap();
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "out0"])
        .unwrap();
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "cli0"])
        .unwrap();
    let dir = format!("/run/rport/net-{}", netns_inode(&gw));
    let socket = format!("{dir}/control");

    // (1) Before the daemon: the old abstract name (the old code stopped here: `rport
    // run` failed to bind and root's `rport stats` printed this squatter's JSON)...
    let _old = squat(
        as_nobody(&gw, false),
        &script,
        "@rport/control",
        &fake,
        &scratch.0.join("squat-abstract.log"),
    );
    // ... and the new path: nobody may create anything under /run/rport.
    let o = as_nobody(&gw, false)
        .args(["timeout", "5", PYTHON])
        .arg(&script)
        .args([&socket, &fake])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success(), "nobody bound {socket}");
    assert!(err.contains("PermissionError"), "{err}");
    assert!(!Path::new(&dir).exists());

    // The daemon starts all the same (Rport::start waits for `rport stats` to answer).
    let pins = Bpffs::new().unwrap();
    let log = scratch.0.join("rport.log");
    // (Rport::start is satisfied by any answer to `rport stats`, the squatter's too.)
    let mut rport = Rport::start(&gw, "out0", "in0", &pins, &log, &[]).unwrap();
    assert!(
        rport
            .proc
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "rport run exited: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Root reads the real daemon's counters, not the squatter's.
    let msg = register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-sq1;rport");
    send_udp(&peer, "192.0.2.2:40000", "192.0.2.1:5060", msg, 3).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let s = rport.stats().unwrap();
    assert_eq!(s["xdp"]["sip_requests"], 3, "{s}");
    assert_eq!(s["bindings_live"], 1, "{s}");
    assert!(s["uptime_s"].as_u64().unwrap() < 999_999, "{s}");
    let m = std::fs::symlink_metadata(&dir).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o700), "{dir}");
    let m = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(m.uid(), 0);

    // (2) The unprivileged user as a client: the directory keeps it out.
    let o = as_nobody(&gw, false)
        .arg(&rport.bin)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(out, "", "no figures for nobody");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("permission denied (the control socket is root's only: run this as root)"),
        "{err}"
    );
    // Past the directory (CAP_DAC_OVERRIDE, still uid nobody): the daemon's SO_PEERCRED
    // check refuses it.
    let o = as_nobody(&gw, true)
        .arg(&rport.bin)
        .args(["bindings", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(out, "");
    assert_eq!(err.trim(), "rport: daemon: permission denied");

    // A second `rport run` in this namespace is refused before it attaches anything, and
    // the first one keeps serving.
    let daemon_pid = rport.proc.child.as_ref().unwrap().id();
    let o = gw
        .cmd("timeout")
        .args(["10"])
        .arg(&rport.bin)
        .args(["run", "--outside", "out0", "--inside", "in0", "--pin-path"])
        .arg(&rport.pins)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "another `rport run` (pid {daemon_pid}) is already running in this network namespace"
        )),
        "{err}"
    );
    assert_eq!(rport.stats().unwrap()["xdp"]["sip_requests"], 3);
    assert!(gw.ip(&["link", "show", "out0"]).unwrap().contains(" xdp"));

    // Root's client believes root only. A namespace without a daemon, whose directory a
    // squatter with CAP_DAC_OVERRIDE (uid nobody) gets into first.
    let gw2 = Ns::new("rpsqgw2").unwrap();
    veth(&gw2, "a0", &gw2, "a1").unwrap();
    let dir2 = RunDir(PathBuf::from(format!(
        "/run/rport/net-{}",
        netns_inode(&gw2)
    )));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir2.0)
        .unwrap();
    let socket2 = dir2.0.join("control");
    let squatter = squat(
        as_nobody(&gw2, true),
        &script,
        socket2.to_str().unwrap(),
        &fake,
        &scratch.0.join("squat-path.log"),
    );
    let squatter_pid = squatter.child.as_ref().unwrap().id();
    let o = gw2
        .cmd(&rport.bin)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(out, "", "the squatter's figures are not printed");
    assert_eq!(
        err.trim(),
        format!(
            "rport: {} is answered by pid {squatter_pid} (uid 65534), not by root: refusing to trust it",
            socket2.display()
        )
    );
    // And `rport run` does not take over a socket that is not root's: it stops, clearly,
    // with nothing attached.
    let o = gw2
        .cmd("timeout")
        .args(["10"])
        .arg(&rport.bin)
        .args(["run", "--outside", "a0", "--inside", "a1", "--pin-path"])
        .arg(pins.dir.join("gw2"))
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(
        err.trim(),
        format!(
            "rport: {} is owned by uid 65534, not root: refusing it",
            socket2.display()
        )
    );
    assert!(!gw2.ip(&["-o", "link"]).unwrap().contains(" xdp"));
    drop(squatter);

    // A clean stop removes the namespace's directory.
    assert!(rport.proc.stop().unwrap().success());
    assert!(!Path::new(&dir).exists(), "{dir} left behind");
}

/// A directory under /run/rport made by the test, removed on Drop.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
