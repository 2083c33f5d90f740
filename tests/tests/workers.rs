//! The forwarding threads' placement: `--workers N` (at most N threads per outside
//! interface, each owning several rx queues) and `--cpus LIST` (each thread pinned to one
//! CPU of the list, in turn), on an outside link with two queues and the load arriving on
//! both (`rport_tests::queues`).
//!
//! ```text
//! client 203.0.113.50 ══ 2 queues ══ 203.0.113.1 gateway 198.51.100.1 ── server 198.51.100.10
//!   two flows (ports 40000, 40001)    rport                              legacy responder
//! ```
//! The responder answers the Via's private sent-by, which the gateway has no route to: an
//! answer reaches the client only if rport rewrote its request, so a queue no thread reads
//! (its requests passed unrewritten by XDP) loses every answer of its flow.
use std::time::Duration;

use rport_tests::{
    load::GenReport,
    ns::{Bpffs, Ns, Proc, can_run, unique},
    queues,
    sip::run_bounded,
    topo::{GW_INSIDE, GW_OUTSIDE, Rport, forwarding, server_leg},
};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

struct Bed {
    client: Ns,
    gw: Ns,
    _server: Ns,
    dir: std::path::PathBuf,
    _responder: Proc,
}

impl Bed {
    fn new() -> Bed {
        let dir = std::env::temp_dir().join(unique("rport-workers-"));
        std::fs::create_dir_all(&dir).unwrap();
        let (client, gw, server) = (
            Ns::new("rpwc").unwrap(),
            Ns::new("rpwg").unwrap(),
            Ns::new("rpws").unwrap(),
        );
        queues::wire(&client, "c0", &gw, GW_OUTSIDE, 2).unwrap();
        server_leg(&gw, &server).unwrap();
        forwarding(&gw).unwrap();
        let mut c = server.cmd(BENCH);
        c.args(["respond", "198.51.100.10:5060"]);
        let responder = Proc::spawn(c, "responder", &dir.join("responder.log")).unwrap();
        Bed {
            client,
            gw,
            _server: server,
            dir,
            _responder: responder,
        }
    }

    fn rport(&self, pins: &Bpffs, extra: &[&str]) -> Rport {
        Rport::start(
            &self.gw,
            GW_OUTSIDE,
            GW_INSIDE,
            pins,
            &self.dir.join("rport.log"),
            extra,
        )
        .unwrap()
    }

    /// `n` requests at 1,000/s in two flows (one per queue), claiming a private sent-by.
    fn load(&self, n: u64) -> GenReport {
        let out = self.dir.join("gen.json");
        let mut c = self.client.cmd(BENCH);
        c.args([
            "gen",
            "198.51.100.10:5060",
            "192.168.1.50:5060",
            "1000",
            &(n as f64 / 1000.0).to_string(),
            "40000,40001",
        ])
        .stdout(std::fs::File::create(&out).unwrap());
        run_bounded(&mut c, Duration::from_secs(60)).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
        GenReport::from_json(&v).unwrap()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (thread name, Cpus_allowed_list) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(s) = std::fs::read_to_string(t.unwrap().path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        out.push((field("Name"), field("Cpus_allowed_list")));
    }
    out.sort();
    out
}

fn pid(r: &Rport) -> u32 {
    r.proc.child.as_ref().unwrap().id()
}

#[test]
fn one_worker_forwards_from_both_queues() {
    if !can_run("workers", &["ip", "tc", "ethtool"]) {
        return;
    }
    let bed = Bed::new();
    let pins = Bpffs::new().unwrap();
    let rport = bed.rport(&pins, &["--workers", "1"]);
    // One thread reads both queues (named for the interface, not for a queue).
    let forwarding: Vec<String> = threads(pid(&rport))
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("rport-gw-out"))
        .collect();
    assert_eq!(forwarding, ["rport-gw-out-w0"]);
    let before = queues::xdp_packets(&bed.gw, GW_OUTSIDE).unwrap();
    let r = bed.load(2000);
    let after = queues::xdp_packets(&bed.gw, GW_OUTSIDE).unwrap();
    let per_queue: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // The load did arrive on both queues (the bed's spread), about half on each.
    assert_eq!(per_queue.len(), 2, "{per_queue:?}");
    for q in &per_queue {
        assert!(*q >= 900, "frames per queue {per_queue:?}");
    }
    // And every request was rewritten by the one thread: answered.
    assert!(
        r.received as f64 >= 0.99 * r.sent as f64,
        "{} of {} answered; frames per queue {per_queue:?}",
        r.received,
        r.sent
    );
    let s = rport.stats().unwrap();
    assert!(s["daemon"]["rx_frames"].as_u64().unwrap() >= r.sent, "{s}");
    assert_eq!(s["daemon"]["rx_frames"], s["xdp"]["to_userspace"], "{s}");
}

#[test]
fn cpus_pin_the_forwarding_threads() {
    if !can_run("workers", &["ip", "tc", "ethtool"]) {
        return;
    }
    let bed = Bed::new();
    let pins = Bpffs::new().unwrap();
    let all = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    {
        // `--cpus 0`: both queues' threads on CPU 0; the others where they were.
        let rport = bed.rport(&pins, &["--cpus", "0"]);
        let t = threads(pid(&rport));
        let fwd: Vec<&(String, String)> = t
            .iter()
            .filter(|(n, _)| n.starts_with("rport-gw-out"))
            .collect();
        assert_eq!(fwd.len(), 2, "{t:?}");
        for (n, cpus) in &fwd {
            assert_eq!(cpus, "0", "{n}: {t:?}");
        }
        for (n, cpus) in t.iter().filter(|(n, _)| !n.starts_with("rport-gw-out")) {
            assert_eq!(cpus, &all, "{n} is not a forwarding thread: {t:?}");
        }
        let r = bed.load(1000);
        assert!(r.received as f64 >= 0.99 * r.sent as f64, "{r:?}");
    }
    let online = std::thread::available_parallelism().unwrap().get();
    if online >= 2 {
        // In turn: queue 0's thread on the first CPU of the list, queue 1's on the second.
        let rport = bed.rport(&pins, &["--cpus", "1,0"]);
        let t = threads(pid(&rport));
        let get = |name: &str| t.iter().find(|(n, _)| n == name).map(|(_, c)| c.as_str());
        assert_eq!(get("rport-gw-out-q0"), Some("1"), "{t:?}");
        assert_eq!(get("rport-gw-out-q1"), Some("0"), "{t:?}");
    }
    // Without --cpus nothing is pinned.
    let rport = bed.rport(&pins, &[]);
    for (n, cpus) in threads(pid(&rport)) {
        assert_eq!(cpus, all, "{n}");
    }
    drop(rport);
    // A CPU the daemon may not use stops it before it attaches anything, saying which.
    let out = bed
        .gw
        .cmd(rport_tests::ns::rport_bin().unwrap())
        .args([
            "run",
            "--outside",
            GW_OUTSIDE,
            "--inside",
            GW_INSIDE,
            "--cpus",
            "1023",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cpus: CPU 1023 is not one rport may run on"),
        "{err}"
    );
    let links = rport_tests::ns::sh(bed.gw.cmd("ip").args(["-o", "link"])).unwrap();
    assert!(!links.contains("xdp"), "left attached: {links}");
}
