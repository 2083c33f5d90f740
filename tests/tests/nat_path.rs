//! The product, proven: a phone behind a real NAT (nftables masquerade random) registers
//! through rport to Kamailio, with real SIPp, in network namespaces.
use rport_tests::{
    ns::{Bpffs, can_run},
    sip::{Kamailio, Server, register_scenario, sipp_client},
    topo::{GW_INSIDE, GW_OUTSIDE, NatTopology, PHONE, Rport},
};

const N: u32 = 5;

fn tools() -> bool {
    can_run("nat_path", &["ip", "nft", "kamailio", "sipp", "conntrack"])
}

#[test]
fn legacy_registrar_loses_every_reply_without_rport_and_none_with_it() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    let k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir).unwrap();
    // Without rport: the failure the product exists for.
    let r = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )
    .unwrap();
    assert_eq!(
        (r.successful, r.failed),
        (0, N as u64),
        "without rport every REGISTER must time out"
    );
    let before = k.seen_vias();
    assert!(
        before.iter().all(|v| !v.contains("received=")),
        "{before:?}"
    );

    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    let r = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )
    .unwrap();
    assert_eq!(
        (r.successful, r.failed),
        (N as u64, 0),
        "with rport every REGISTER must succeed; log:\n{}",
        std::fs::read_to_string(t.path("rport.log")).unwrap_or_default()
    );
    let after = &k.seen_vias()[before.len()..];
    assert!(!after.is_empty());
    for v in after {
        assert!(
            v.starts_with("SIP/2.0/UDP 192.168.1.50:5060;branch="),
            "sent-by untouched: {v}"
        );
        assert!(v.contains(";received=203.0.113.1"), "{v}");
        let port: u16 = v
            .split(";rport=")
            .nth(1)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(port, 0);
    }
    let s = rport.stats().unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&s).unwrap());
    let x = &s["xdp"];
    let d = &s["daemon"];
    // Every request went through the daemon and was rewritten; every answer reached the phone.
    assert_eq!(x["to_userspace"], x["sip_requests"]);
    assert_eq!(d["rewritten"], x["sip_requests"]);
    assert_eq!(d["forwarded"], x["sip_requests"]);
    assert_eq!(x["sip_responses"].as_u64().unwrap(), N as u64);
    assert_eq!(
        x["response_steered"].as_u64().unwrap() + x["response_already_correct"].as_u64().unwrap(),
        N as u64
    );
}

#[test]
fn rport_aware_server_works_and_nothing_is_steered() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::AwareRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    let r = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )
    .unwrap();
    assert_eq!((r.successful, r.failed), (N as u64, 0));
    let s = rport.stats().unwrap();
    // Kamailio answered the source (the NAT mapping) itself: rport left every answer alone.
    assert_eq!(s["xdp"]["sip_responses"], N as u64);
    assert_eq!(s["xdp"]["response_already_correct"], N as u64);
    assert_eq!(s["xdp"]["response_steered"], 0);
}

#[test]
fn a_call_through_the_nat_to_a_proxy() {
    if !tools() {
        return;
    }
    use rport_tests::sip::{sipp_server, uac_scenario, uas_scenario};
    let t = NatTopology::new().unwrap();
    // A stateless proxy in front of the called party: it answers by the Via headers.
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::Proxy, &t.dir).unwrap();
    let _uas = sipp_server(&t.server, &uas_scenario(), &t.dir, "198.51.100.10", 5070).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    let r = sipp_client(
        &t.phone,
        &uac_scenario(),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        2,
        2,
    )
    .unwrap();
    assert_eq!(
        (r.successful, r.failed),
        (2, 0),
        "INVITE/100/180/200/ACK/BYE/200 through NAT and rport"
    );
    let s = rport.stats().unwrap();
    // INVITE, ACK and BYE of both calls were rewritten.
    assert!(s["daemon"]["rewritten"].as_u64().unwrap() >= 6, "{s}");
}

#[test]
fn retransmissions_are_rewritten_identically() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    let k = Kamailio::start(&t.server, "198.51.100.10", Server::AwareRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let _rport = t.rport(&pins, &[]).unwrap();
    let msg = rport_tests::packets::register(
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-retx;rport",
    );
    rport_tests::ns::send_udp(&t.phone, "192.168.1.50:5060", "198.51.100.10:5060", msg, 3).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let v = k.seen_vias();
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(
        v[0].contains(";rport=") && v[0].contains(";received=203.0.113.1"),
        "{v:?}"
    );
    assert!(v.iter().all(|x| *x == v[0]), "{v:?}");
}

#[test]
fn other_traffic_is_untouched() {
    if !tools() {
        return;
    }
    use std::io::{Read as _, Write as _};
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    // TCP to 5060 and UDP to another port, through the NAT and the gateway.
    let server = t
        .server
        .within(
            || -> anyhow::Result<(std::net::TcpListener, std::net::UdpSocket)> {
                Ok((
                    std::net::TcpListener::bind("198.51.100.10:5060")?,
                    std::net::UdpSocket::bind("198.51.100.10:9999")?,
                ))
            },
        )
        .unwrap()
        .unwrap();
    let payload = rport_tests::packets::register(
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-tcp;rport",
    );
    let p2 = payload.clone();
    t.phone
        .within(move || -> anyhow::Result<()> {
            let mut s = std::net::TcpStream::connect("198.51.100.10:5060")?;
            s.write_all(&p2)?;
            let u = std::net::UdpSocket::bind("192.168.1.50:0")?;
            u.send_to(b"not sip at all", "198.51.100.10:9999")?;
            Ok(())
        })
        .unwrap()
        .unwrap();
    let (mut conn, _) = server.0.accept().unwrap();
    let mut got = vec![0u8; payload.len()];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(
        got, payload,
        "SIP over TCP passes byte for byte (rport handles UDP)"
    );
    let mut buf = [0u8; 64];
    server
        .1
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let (n, _) = server.1.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"not sip at all");
    let s = rport.stats().unwrap();
    assert_eq!(s["xdp"]["sip_requests"], 0);
    assert_eq!(s["daemon"]["rx_frames"], 0);
}

#[test]
fn sip_keeps_flowing_when_the_daemon_dies() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::AwareRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let mut rport = t.rport(&pins, &[]).unwrap();
    // SIGKILL: no cleanup of its own. The kernel closes its XDP link and AF_XDP sockets.
    let mut child = rport.proc.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let r = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )
    .unwrap();
    assert_eq!(
        (r.successful, r.failed),
        (N as u64, 0),
        "requests must pass through the kernel unrewritten"
    );
    let link = t.gw.ip(&["link", "show", GW_OUTSIDE]).unwrap();
    assert!(!link.contains(" xdp"), "{link}");
}

#[test]
fn ipv6_sent_by_other_than_source() {
    if !tools() {
        return;
    }
    use rport_tests::{
        sip::{register_scenario_via, sipp_client_with},
        topo::V6Topology,
    };
    let t = V6Topology::new().unwrap();
    let k = Kamailio::start(&t.server, "2001:db8:2::10", Server::LegacyRegistrar, &t.dir).unwrap();
    // The client writes a stale address in its Via (as after a network change); no rport.
    // (Bracketed addresses come from an injection file: SIPp reads `[...]` as keywords.)
    let scen = register_scenario_via("[field0]:[local_port]", "[field1]", false);
    let f = ["[2001:db8:1::99]", "[2001:db8:2::10]"];
    let r = sipp_client_with(
        &t.client,
        &scen,
        &t.dir,
        "2001:db8:1::50",
        5060,
        "[2001:db8:2::10]:5060",
        N,
        10,
        &f,
        &[],
    )
    .unwrap();
    assert_eq!(
        (r.successful, r.failed),
        (0, N as u64),
        "the server answers the stale address"
    );
    let pins = Bpffs::new().unwrap();
    let rport = Rport::start(
        &t.gw,
        GW_OUTSIDE,
        GW_INSIDE,
        &pins,
        &t.dir.join("rport.log"),
        &[],
    )
    .unwrap();
    let r = sipp_client_with(
        &t.client,
        &scen,
        &t.dir,
        "2001:db8:1::50",
        5060,
        "[2001:db8:2::10]:5060",
        N,
        10,
        &f,
        &[],
    )
    .unwrap();
    assert_eq!((r.successful, r.failed), (N as u64, 0));
    let last = k.seen_vias().pop().unwrap();
    assert!(
        last.contains(";received=2001:db8:1::50"),
        "received without brackets (RFC 5118): {last}"
    );
    assert!(
        !last.contains("rport"),
        "no rport asked, none added: {last}"
    );
    let s = rport.stats().unwrap();
    assert_eq!(s["xdp"]["ipv6"].as_u64().unwrap(), 2 * N as u64);
    assert_eq!(s["xdp"]["response_steered"], N as u64);
}
