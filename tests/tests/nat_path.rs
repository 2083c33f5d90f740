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
    let rport = Rport::start(
        &t.gw,
        GW_OUTSIDE,
        GW_INSIDE,
        &pins,
        &t.path("rport.log"),
        &[],
    )
    .unwrap();
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
