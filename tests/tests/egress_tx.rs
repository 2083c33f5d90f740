//! `--egress bypass`: rewritten requests leave the gateway by AF_XDP TX on the inside
//! interface, with the next hop's MACs from the XDP program's route lookup, past the
//! kernel's forwarding; whatever the lookup or the size rules out goes the kernel's way
//! (re-injection), counted; and the default (`--egress kernel`) sends nothing by TX.
//!
//! The gateway's FORWARD chain has a counter for SIP to the server: a request that went
//! by AF_XDP TX never passes it, one that went the kernel's way does. So the counts below
//! tell the two paths apart independently of rport's own counters. The phone's checksums
//! are computed in software (`tx off`), and the server checks each one (UdpInCsumErrors,
//! and the captured frames): a wrong checksum from the frame building would be seen.
use std::{
    net::UdpSocket,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use rport_tests::{
    capture::{Capture, udp_checksums, udp_csum_errors},
    ns::{Bpffs, Ns, can_run, send_udp, sh},
    packets::register,
    topo::{GW_INSIDE, NAT_PUBLIC, NatTopology, PHONE, Rport, SERVER},
};

/// Requests sent by AF_XDP TX per case.
const N: usize = 10;

/// The topology with the phone's checksums computed in software (as a NIC's received
/// frames have them) and a counter in the gateway's FORWARD chain for SIP to the server.
fn bed() -> Result<NatTopology> {
    let t = NatTopology::new()?;
    sh(t.phone.cmd("ethtool").args(["-K", "ph0", "tx", "off"]))?;
    let rules = t.path("count.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet rporttx {{\n chain sip_fwd {{\n  type filter hook forward priority filter; policy accept;\n  ip daddr {SERVER} udp dport 5060 counter\n }}\n}}\n"
        ),
    )?;
    sh(t.gw.cmd("nft").arg("-f").arg(&rules))?;
    Ok(t)
}

/// Packets the gateway's FORWARD chain counted toward the server's SIP port.
fn forwarded_by_kernel(t: &NatTopology) -> u64 {
    let out = sh(t
        .gw
        .cmd("nft")
        .args(["list", "chain", "inet", "rporttx", "sip_fwd"]))
    .unwrap();
    out.split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {out}"))
}

/// Every datagram the server receives on its SIP port while `f` runs, until `want` have
/// come or 5 s passed.
fn at_server(t: &NatTopology, want: usize, f: impl FnOnce()) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(format!("/var/run/netns/{}", t.server.name)).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || -> Result<Vec<Vec<u8>>> {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let s = UdpSocket::bind(format!("{SERVER}:5060"));
        let _ = ready_tx.send(());
        let s = s?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 65536]);
        let end = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < end {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        Ok(got)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    f();
    h.join().unwrap().unwrap()
}

/// `msgs` from the phone's 5060 to the server, from one socket.
fn send(t: &NatTopology, msgs: Vec<Vec<u8>>) {
    t.phone
        .within(move || -> Result<()> {
            let s = UdpSocket::bind(format!("{PHONE}:5060"))?;
            for m in &msgs {
                s.send_to(m, format!("{SERVER}:5060"))?;
                // One at a time through the NAT and the gateway (no burst to lose).
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
        .unwrap()
        .unwrap();
}

fn registers(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            register(&format!(
                "Via: SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bK-{tag}-{i};rport"
            ))
        })
        .collect()
}

fn rewritten(m: &[u8]) -> bool {
    String::from_utf8_lossy(m).contains(&format!(";received={NAT_PUBLIC}"))
}

/// The gateway's neighbour entry for the server, resolved (a datagram from the gateway
/// to the discard port makes the kernel resolve it).
fn resolve_server(gw: &Ns) {
    send_udp(gw, "0.0.0.0:0", &format!("{SERVER}:9"), b"x".to_vec(), 1).unwrap();
    wait_neighbour(gw);
}

/// Waits until the gateway holds a usable neighbour entry for the server (after the
/// kernel resolved it for a request it forwarded).
fn wait_neighbour(gw: &Ns) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let out = gw
            .ip(&["neigh", "show", SERVER, "dev", GW_INSIDE])
            .unwrap_or_default();
        if ["REACHABLE", "STALE", "DELAY"]
            .iter()
            .any(|s| out.contains(s))
        {
            return;
        }
        assert!(Instant::now() < end, "no neighbour entry: {out}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn daemon(r: &Rport) -> serde_json::Value {
    r.stats().unwrap()["daemon"].clone()
}

/// The NAT's public source port of the phone's requests, from a rewritten Via.
fn nat_port(m: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(m);
    text.split(";rport=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no rport value in {text}"))
}

/// The TTLs of the IPv4 UDP frames from `sport` among `frames`.
fn ttls(frames: &[Vec<u8>], sport: u16) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
            let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else {
                return None;
            };
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                return None;
            };
            (u.source_port() == sport).then(|| ip.header().ttl())
        })
        .collect()
}

#[test]
fn requests_leave_by_af_xdp_tx_once_the_neighbour_is_known() {
    if !can_run("egress_tx", &["ip", "nft", "ethtool", "nstat"]) {
        return;
    }
    let t = bed().unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &["--egress", "bypass"]).unwrap();
    let d = daemon(&rport);
    assert_eq!(d["egress_tx_copy"], 1, "veth: copy mode, one queue: {d}");
    assert_eq!(d["egress_tx_zerocopy"], 0, "{d}");

    // No neighbour entry for the server yet: the first request goes the kernel's way,
    // which resolves it, and arrives.
    sh(t.gw.cmd("ip").args(["neigh", "flush", "dev", GW_INSIDE])).unwrap();
    let got = at_server(&t, 1, || send(&t, registers("first", 1)));
    assert_eq!(
        got.len(),
        1,
        "the first request arrived: {}",
        daemon(&rport)
    );
    assert!(rewritten(&got[0]));
    let d = daemon(&rport);
    assert_eq!(d["bypass_no_neigh"], 1, "{d}");
    assert_eq!(d["bypass_sent"], 0, "{d}");
    assert_eq!(forwarded_by_kernel(&t), 1, "the kernel forwarded it");

    // Then by AF_XDP TX: past the FORWARD chain, checksums right, TTL decremented once.
    wait_neighbour(&t.gw);
    let csum0 = udp_csum_errors(&t.server);
    let cap = Capture::start(&t.server, "srv0").unwrap();
    let got = at_server(&t, N, || send(&t, registers("tx", N)));
    assert_eq!(got.len(), N, "requests at the server: {}", daemon(&rport));
    assert!(got.iter().all(|m| rewritten(m)), "all rewritten");
    let d = daemon(&rport);
    assert_eq!(d["bypass_sent"], N as u64, "{d}");
    assert_eq!(d["forwarded"], N as u64 + 1, "{d}");
    assert_eq!(d["bypass_no_neigh"], 1, "{d}");
    assert_eq!(d["bypass_mtu"], 0, "{d}");
    assert_eq!(d["bypass_other"], 0, "{d}");
    assert_eq!(d["bypass_tx_full"], 0, "{d}");
    assert_eq!(d["send_errors"], 0, "{d}");
    assert_eq!(
        forwarded_by_kernel(&t),
        1,
        "the requests sent by AF_XDP TX passed the FORWARD chain"
    );
    let port = nat_port(&got[0]);
    let frames = cap.frames();
    assert_eq!(
        udp_checksums(&frames, port),
        (N as u64, 0),
        "checksums (good, bad) at the server"
    );
    assert_eq!(udp_csum_errors(&t.server) - csum0, 0, "UdpInCsumErrors");
    // 64 from the phone, one less at the NAT, one less at the gateway: never twice, never
    // not at all.
    assert_eq!(ttls(&frames, port), vec![62; N], "TTLs at the server");
}

/// A REGISTER padded so that its IPv4 packet is `ip_len` bytes.
fn big_register(ip_len: usize) -> Vec<u8> {
    let m = registers("big", 1).remove(0);
    let head = String::from_utf8(m).unwrap();
    let head = head.trim_end_matches("\r\n");
    let fixed = head.len() + "\r\nX-Pad: \r\n\r\n".len() + 28;
    format!("{head}\r\nX-Pad: {}\r\n\r\n", "p".repeat(ip_len - fixed)).into_bytes()
}

#[test]
fn a_request_grown_past_the_inside_mtu_goes_by_the_kernel_and_arrives_whole() {
    if !can_run("egress_tx", &["ip", "nft", "ethtool"]) {
        return;
    }
    let t = bed().unwrap();
    // A smaller MTU on the servers' segment (both ends of the link).
    t.gw.ip(&["link", "set", GW_INSIDE, "mtu", "1400"]).unwrap();
    t.server
        .ip(&["link", "set", "srv0", "mtu", "1400"])
        .unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &["--egress", "bypass"]).unwrap();
    resolve_server(&t.gw);
    // 1,390 bytes of IP: fits as sent; the rewrite (`received`, `rport`, the tag) makes it
    // larger than 1,400.
    let req = big_register(1390);
    let got = at_server(&t, 1, || send(&t, vec![req.clone()]));
    assert_eq!(got.len(), 1, "the big request arrived: {}", daemon(&rport));
    assert!(got[0].len() + 28 > 1400, "{} bytes", got[0].len());
    assert!(rewritten(&got[0]));
    assert!(
        String::from_utf8_lossy(&got[0]).contains(&"p".repeat(1000)),
        "whole"
    );
    let d = daemon(&rport);
    assert_eq!(d["bypass_mtu"], 1, "{d}");
    assert_eq!(d["fragmented"], 1, "{d}");
    assert_eq!(d["bypass_sent"], 0, "{d}");
    // Two fragments by the kernel; the rule matches the one with the UDP header.
    assert_eq!(forwarded_by_kernel(&t), 1, "by the kernel");
    // A small one right after goes by AF_XDP TX: the fallback is per request.
    let got = at_server(&t, 1, || send(&t, registers("small", 1)));
    assert_eq!(got.len(), 1);
    let d = daemon(&rport);
    assert_eq!(d["bypass_sent"], 1, "{d}");
    assert_eq!(forwarded_by_kernel(&t), 1, "not by the kernel");
}

#[test]
fn the_default_kernel_egress_sends_nothing_by_tx() {
    if !can_run("egress_tx", &["ip", "nft", "ethtool"]) {
        return;
    }
    let t = bed().unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    resolve_server(&t.gw);
    let got = at_server(&t, N, || send(&t, registers("kernel", N)));
    assert_eq!(got.len(), N, "requests at the server: {}", daemon(&rport));
    assert!(got.iter().all(|m| rewritten(m)));
    let d = daemon(&rport);
    for c in [
        "bypass_sent",
        "bypass_no_neigh",
        "bypass_mtu",
        "bypass_other",
        "bypass_tx_full",
        "egress_tx_copy",
        "egress_tx_zerocopy",
    ] {
        assert_eq!(d[c], 0, "{c}: {d}");
    }
    assert_eq!(d["forwarded"], N as u64, "{d}");
    assert_eq!(forwarded_by_kernel(&t), N as u64, "all by the kernel");
}

/// The inside interface deleted and made again under its name (a container or link
/// restart): the daemon reattaches, and its requests leave by AF_XDP TX on the new
/// interface again. Before, the TX sockets stayed bound to the old ifindex, and every
/// request went the kernel's way as `bypass_other` from then on.
#[test]
fn the_inside_interface_recreated_gets_its_tx_sockets_again() {
    if !can_run("egress_tx", &["ip", "nft", "ethtool", "nstat"]) {
        return;
    }
    let t = bed().unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &["--egress", "bypass"]).unwrap();
    resolve_server(&t.gw);
    let got = at_server(&t, N, || send(&t, registers("before", N)));
    assert_eq!(got.len(), N, "{}", daemon(&rport));
    assert_eq!(daemon(&rport)["bypass_sent"], N as u64);

    t.gw.ip(&["link", "del", GW_INSIDE]).unwrap();
    rport_tests::topo::server_leg(&t.gw, &t.server).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while daemon(&rport)["iface_reattached"].as_u64().unwrap_or(0) < 1 {
        assert!(Instant::now() < end, "not reattached: {}", daemon(&rport));
        std::thread::sleep(Duration::from_millis(20));
    }
    resolve_server(&t.gw);
    let before = daemon(&rport);
    let got = at_server(&t, N, || send(&t, registers("after", N)));
    let d = daemon(&rport);
    assert_eq!(
        got.len(),
        N,
        "requests at the server after the link came back: {d}"
    );
    assert!(
        got.iter().all(|m| rewritten(m)),
        "all rewritten: {d}\n{}",
        std::fs::read_to_string(&rport.log).unwrap_or_default()
    );
    let sent = d["bypass_sent"].as_u64().unwrap() - before["bypass_sent"].as_u64().unwrap();
    let other = d["bypass_other"].as_u64().unwrap() - before["bypass_other"].as_u64().unwrap();
    assert_eq!(
        (sent, other),
        (N as u64, 0),
        "(by TX, the kernel's way as bypass_other) after the link came back: {d}"
    );
}
