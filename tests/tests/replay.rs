//! `rport replay` on captures written here: a NATed REGISTER, the legacy server's answer
//! to the private sent-by, a DNS query and a CRLF keep-alive; then the pcap runner of the
//! XDP contract table (tests/src/fixtures.rs): the rows' frames as captures, and what
//! replay says of each row.
use std::{net::IpAddr, path::PathBuf};

use etherparse::{NetSlice, SlicedPacket};
use rport_common::{Counter, role};
use rport_tests::{
    fixtures::{Fixture, table},
    ns::rport_bin,
    packets::*,
    xdp::can_load_bpf,
};
use rport_userspace::cli::replay;

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&[
        2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ]);
    for (i, f) in frames.iter().enumerate() {
        for x in [i as u32, 0, f.len() as u32, f.len() as u32] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(f);
    }
    v
}

#[test]
fn replay_reports_what_the_program_does() {
    if !can_load_bpf("replay_reports_what_the_program_does") {
        return;
    }
    let via = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-r1;rport";
    let resp =
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-r1;received=203.0.113.1;rport=32415";
    let file = std::env::temp_dir().join(format!("rport-replay-{}.pcap", std::process::id()));
    std::fs::write(
        &file,
        pcap(&[
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via)),
            udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp)),
            udp4(NAT_V4, 40000, SERVER_V4, 53, b"\x12\x34\x01\x00\x00\x01"),
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"\r\n\r\n"),
        ]),
    )
    .unwrap();
    let o = std::process::Command::new(rport_bin().unwrap())
        .args(["replay", "--json", "--server", "198.51.100.10"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdicts: Vec<&str> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["to-daemon", "steered", "pass", "pass"]);
    assert_eq!(v["totals"]["sip_requests"], 1);
    assert_eq!(v["totals"]["response_steered"], 1);
    assert_eq!(v["totals"]["keepalive_crlf"], 1);
    assert_eq!(v["totals"]["non_sip"], 1);

    // Not a pcap: one clear line, failure.
    let o = std::process::Command::new(rport_bin().unwrap())
        .args(["replay", "/proc/self/status"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("rport: not a pcap file"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

/// A file removed on Drop, also when the test fails.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `rport replay --json --server …` on `frames`: its per-packet rows.
fn replay_json(frames: &[Vec<u8>], servers: &[IpAddr], tag: usize) -> Vec<serde_json::Value> {
    let file = TempFile(std::env::temp_dir().join(format!(
        "rport-replay-table-{}-{tag}.pcap",
        std::process::id()
    )));
    std::fs::write(&file.0, pcap(frames)).unwrap();
    let mut c = std::process::Command::new(rport_bin().unwrap());
    c.args(["replay", "--json"]);
    for s in servers {
        c.arg("--server").arg(s.to_string());
    }
    let o = c.arg(&file.0).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["packets"].as_array().unwrap().clone()
}

fn source(frame: &[u8]) -> Option<IpAddr> {
    match SlicedPacket::from_ethernet(frame).ok()?.net? {
        NetSlice::Ipv4(ip) => Some(ip.header().source_addr().into()),
        NetSlice::Ipv6(ip) => Some(ip.header().source_addr().into()),
    }
}

/// The frames a row puts in a capture, with the role each must get: its prior requests
/// (outside), then its own frame.
fn frames(f: &Fixture) -> Vec<(&[u8], u32)> {
    let mut v: Vec<(&[u8], u32)> = f
        .prior
        .requests
        .iter()
        .map(|r| (r.as_slice(), role::OUTSIDE))
        .collect();
    v.push((&f.frame, f.role));
    v
}

/// One capture replayed in one run: rows in order, and the servers (`--server`) that give
/// every frame in it its role.
#[derive(Default)]
struct Group<'a> {
    rows: Vec<&'a Fixture>,
    servers: Vec<IpAddr>,
}

impl<'a> Group<'a> {
    /// Takes `f` if replay's one role rule (a server's packets are inside, all others
    /// outside) still gives every frame of the group, and of `f`, its role.
    fn take(&mut self, f: &'a Fixture) -> bool {
        let mut servers = self.servers.clone();
        for (frame, r) in frames(f) {
            if r == role::INSIDE {
                match source(frame) {
                    Some(a) if !servers.contains(&a) => servers.push(a),
                    Some(_) => {}
                    None => panic!("{}: an inside frame without a source address", f.name),
                }
            }
        }
        let fits = self
            .rows
            .iter()
            .copied()
            .chain([f])
            .flat_map(frames)
            .all(|(frame, r)| replay::from_inside(frame, &servers) == (r == role::INSIDE));
        if fits {
            self.rows.push(f);
            self.servers = servers;
        }
        fits
    }
}

/// The pcap runner: every row replay can set up (replay runs no daemon sockets, no
/// `--force-rport` and no tag keys), grouped into as few captures as replay's role rule allows, each
/// replayed once. Per row: the verdict replay reports for the row's frame, and the
/// counters it says moved. Rows share one program instance per capture, so whether a key
/// is new (`binding_new`) depends on the rows before: that one counter is left out here
/// (the kernel runner checks it). Everything else a row's frame does depends only on its
/// own prior requests, which come right before it.
#[test]
fn replay_agrees_with_the_fixture_table() {
    if !can_load_bpf("replay_agrees_with_the_fixture_table") {
        return;
    }
    let t = table();
    let (rows, skipped): (Vec<&Fixture>, Vec<&Fixture>) = t.iter().partition(|f| {
        f.prior.force_rport.is_empty() && f.prior.sockets.is_empty() && f.prior.tag_keys.is_none()
    });
    let mut groups: Vec<Group> = Vec::new();
    for f in rows.iter().copied() {
        if !groups.iter_mut().any(|g| g.take(f)) {
            let mut g = Group::default();
            assert!(
                g.take(f),
                "{}: replay cannot give its frames their roles",
                f.name
            );
            groups.push(g);
        }
    }
    let mut failures = Vec::new();
    for (n, g) in groups.iter().enumerate() {
        let all: Vec<Vec<u8>> = g
            .rows
            .iter()
            .flat_map(|f| frames(f))
            .map(|(frame, _)| frame.to_vec())
            .collect();
        let out = replay_json(&all, &g.servers, n);
        assert_eq!(out.len(), all.len(), "one replay row per packet");
        let mut i = 0;
        for f in &g.rows {
            i += f.prior.requests.len();
            let got = &out[i];
            i += 1;
            let moved: Vec<Counter> = f
                .counters
                .iter()
                .copied()
                .filter(|c| *c != Counter::Packets)
                .collect();
            let mut errs = Vec::new();
            let want = replay::verdict(f.verdict, &moved);
            if got["verdict"] != want {
                errs.push(format!("verdict {} want {want}", got["verdict"]));
            }
            let want: Vec<&str> = Counter::ALL
                .iter()
                .filter(|c| moved.contains(c) && **c != Counter::BindingNew)
                .map(|c| c.name())
                .collect();
            let got: Vec<&str> = got["counters"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c.as_str())
                .filter(|c| *c != Counter::BindingNew.name())
                .collect();
            if got != want {
                errs.push(format!("counters {got:?} want {want:?}"));
            }
            if !errs.is_empty() {
                failures.push(format!("{}:\n    {}", f.name, errs.join("\n    ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "pcap: {} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert!(rows.len() >= 40, "most of the table goes through replay");
    println!(
        "pcap: {} fixture rows passed in {} captures; not replayable (daemon sockets, force-rport): {}",
        rows.len(),
        groups.len(),
        skipped
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
}
