//! The running daemon's privileges: after attach `rport run` holds only
//! `rport_userspace::privileges::KEPT` (effective, permitted, bounding; nothing
//! inheritable or ambient) on every thread, with no-new-privs set, and still does its
//! work with them: a REGISTER through it is rewritten, `rport stats` answers, SIGHUP
//! rotates the tag key, SIGTERM detaches.
use std::time::{Duration, Instant};

use rport_tests::{
    ns::{Bpffs, can_run, recv_udp, send_udp},
    packets::register,
    topo::{GW_ATTACKER_IF, NatTopology, PHONE, Rport, SERVER, write_tag_key},
};
use rport_userspace::privileges::kept_mask;

/// One `Key:\tvalue` line of a /proc status file.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

fn hex(status: &str, key: &str) -> u64 {
    u64::from_str_radix(field(status, key), 16).unwrap()
}

/// Every thread of `pid` against the kept set; the differences, one line each.
fn check_threads(pid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!tasks.is_empty());
    for t in tasks {
        let Ok(s) = std::fs::read_to_string(t.join("status")) else {
            continue;
        };
        let name = field(&s, "Name").to_string();
        for key in ["CapEff", "CapPrm", "CapBnd"] {
            if hex(&s, key) != kept_mask() {
                bad.push(format!(
                    "{name}: {key} {:016x}, not {:016x}",
                    hex(&s, key),
                    kept_mask()
                ));
            }
        }
        for key in ["CapInh", "CapAmb"] {
            if hex(&s, key) != 0 {
                bad.push(format!("{name}: {key} {:016x}", hex(&s, key)));
            }
        }
        if field(&s, "NoNewPrivs") != "1" {
            bad.push(format!("{name}: NoNewPrivs {}", field(&s, "NoNewPrivs")));
        }
    }
    bad
}

/// The top Via the server got for a REGISTER from the phone through its NAT and rport.
fn request(t: &NatTopology, branch: &str) -> String {
    let phone = format!("{PHONE}:5060");
    let server = format!("{SERVER}:5060");
    let got = recv_udp(&t.server, &server, Duration::from_secs(5)).unwrap();
    let via = format!("Via: SIP/2.0/UDP {PHONE}:5060;branch={branch};rport");
    send_udp(&t.phone, &phone, &server, register(&via), 1).unwrap();
    let msg = got.join().unwrap().expect("the request reached the server");
    String::from_utf8_lossy(&msg)
        .lines()
        .find(|l| l.starts_with("Via:"))
        .expect("a Via")
        .to_string()
}

fn wait_for(r: &Rport, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(&r.log).unwrap_or_default();
        if log.contains(what) || t0.elapsed() > Duration::from_secs(5) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_running_daemon_keeps_only_the_kept_capabilities_and_still_works() {
    if !can_run("privileges", &["ip", "nft"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    let key = t.path("tag.key");
    write_tag_key(&key).unwrap();
    // A second outside interface: two AF_XDP UMEMs (8 MiB each), made after the drop,
    // more than the default RLIMIT_MEMLOCK of 8 MiB: CAP_IPC_LOCK is what lets them lock.
    let _second = t.attacker().unwrap();
    // The XDP log thread starts before the main thread drops: it must drop by itself.
    let mut r = t
        .rport(
            &pins,
            &[
                "--outside",
                GW_ATTACKER_IF,
                "--tag-key",
                key.to_str().unwrap(),
                "--xdp-log",
                "info",
                "--metrics",
                "127.0.0.1:9464",
            ],
        )
        .unwrap();
    let pid = r.proc.child.as_ref().unwrap().id();
    let bad = check_threads(pid);
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    // It still serves: the REGISTER is rewritten (received, rport, the steering tag).
    let via = request(&t, "z9hG4bK-priv-1");
    assert!(
        via.contains("received=203.0.113.1") && via.contains(";rptag="),
        "{via}"
    );
    // SIGHUP still rotates the key (the pinned TAG_KEYS written through its fd).
    std::fs::remove_file(&key).unwrap();
    write_tag_key(&key).unwrap();
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let log = wait_for(&r, "SIGHUP");
    assert!(log.contains("tag key rotated"), "{log}");
    let via2 = request(&t, "z9hG4bK-priv-2");
    assert!(via2.contains(";rptag="), "{via2}");
    // `rport stats` (the control socket; the daemon reads its pinned maps) and a scrape.
    assert_eq!(r.counter("daemon", "rewritten").unwrap(), 2);
    let scrape =
        t.gw.within(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9464")?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            anyhow::Ok(out)
        })
        .unwrap()
        .unwrap();
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    // Threads started later (forwarding, control, metrics) inherited the reduced sets.
    let bad = check_threads(pid);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let st = r.proc.stop().unwrap();
    assert!(st.success(), "{st:?}");
    assert!(wait_for(&r, "detached").contains("detached"));
    assert!(!t.gw.ip(&["-o", "link"]).unwrap().contains("xdp"));
}
