//! A request that rport makes larger than the egress MTU: fragmented on re-injection
//! (IPv4), reassembled by the server's kernel, byte for byte what the rewrite produced,
//! and counted.
use std::time::Duration;

use rport_tests::{
    ns::{Bpffs, can_run, recv_udp, send_udp},
    topo::NatTopology,
};
use rport_userspace::sip::rewrite::{Observed, Policy, rewrite_top_via};

/// A REGISTER padded so that its IPv4 packet is `ip_len` bytes.
fn big_register(ip_len: usize) -> Vec<u8> {
    let head = "REGISTER sip:198.51.100.10 SIP/2.0\r\n\
                Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-big-1;rport\r\n\
                From: <sip:phone@198.51.100.10>;tag=1\r\n\
                To: <sip:phone@198.51.100.10>\r\n\
                Call-ID: big-1@192.168.1.50\r\n\
                CSeq: 1 REGISTER\r\n\
                Content-Length: 0\r\n";
    let fixed = head.len() + "X-Pad: \r\n\r\n".len() + 28;
    let pad = "p".repeat(ip_len - fixed);
    format!("{head}X-Pad: {pad}\r\n\r\n").into_bytes()
}

#[test]
fn a_request_grown_past_the_mtu_arrives_whole() {
    if !can_run("fragment_path", &["ip", "nft"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    // 1,480 bytes of IP: fits the 1,500-byte MTU as sent; `;received=203.0.113.1` and
    // `;rport=N` make it larger than that.
    let req = big_register(1480);
    let rx = recv_udp(&t.server, "198.51.100.10:5060", Duration::from_secs(5)).unwrap();
    send_udp(
        &t.phone,
        "192.168.1.50:5060",
        "198.51.100.10:5060",
        req.clone(),
        1,
    )
    .unwrap();
    let got = rx.join().unwrap().unwrap();
    assert!(got.len() + 28 > 1500, "{} bytes", got.len());
    // The NAT's public port is whatever it chose: read it back, then check the datagram
    // is exactly what the rewrite library makes of the original with that source.
    let text = String::from_utf8_lossy(&got);
    let port: u16 = text
        .split(";rport=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no rport in {text}"));
    // And the steering tag (its value depends on the daemon's key and the clock).
    let tag = text
        .split(";rptag=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_hexdigit()).next())
        .unwrap_or_else(|| panic!("no rptag in {text}"));
    let mut want = req.clone();
    want.resize(4096, 0);
    let r = rewrite_top_via(
        &mut want,
        req.len(),
        Observed {
            addr: "203.0.113.1".parse().unwrap(),
            port,
        },
        Policy {
            force_rport: false,
            tag: Some(rport_common::tag::TagBuf::from_text(tag.as_bytes())),
        },
    )
    .unwrap();
    assert_eq!(got, &want[..r.len]);
    let s = rport.stats().unwrap();
    assert_eq!(s["daemon"]["fragmented"], 1, "{}", s["daemon"]);
    // `forwarded` counts packets on the wire: the two fragments.
    assert_eq!(s["daemon"]["forwarded"], 2, "{}", s["daemon"]);
    assert_eq!(s["daemon"]["rewritten"], 1, "{}", s["daemon"]);
    assert_eq!(s["daemon"]["send_errors"], 0, "{}", s["daemon"]);
}
