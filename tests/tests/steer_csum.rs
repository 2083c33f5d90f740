//! Steered responses carry valid checksums where they are materialized.
//!
//! veth hands XDP the packets of a local sender with CHECKSUM_PARTIAL: the UDP checksum
//! field holds only the pseudo-header seed, which the kernel completes on the way out.
//! With default offloads the receiver trusts the unfinished checksum, so nothing looks
//! wrong; a real NIC (or `ethtool -K … tx off` on the egress) then sends the checksum the
//! kernel computes from whatever XDP left in the field. These tests turn tx checksum
//! offload off on the gateway's egress toward the phone (the checksum is computed there,
//! in software, as a NIC would) and count UDP checksum errors at the NAT and the phone.
use rport_tests::{
    capture::{Capture, snmp, udp_checksums, udp_csum_errors},
    ns::{Bpffs, can_run, sh},
    sip::{
        Kamailio, Server, register_scenario, register_scenario_via, sipp_client, sipp_client_with,
    },
    topo::{GW_INSIDE, GW_OUTSIDE, NatTopology, PHONE, Rport, V6Topology},
};

const N: u32 = 5;

fn tools() -> bool {
    can_run(
        "steer_csum",
        &["ip", "nft", "kamailio", "sipp", "ethtool", "nstat"],
    )
}

/// Every steering decision applied by the TC program (none steered in XDP, none failed).
fn assert_applied_by_tc(rport: &Rport, steered: u64) {
    assert_eq!(
        (
            rport.counter("xdp", "steer_applied").unwrap(),
            rport.counter("xdp", "steer_in_xdp").unwrap(),
            rport.counter("xdp", "steer_failed").unwrap()
        ),
        (steered, 0, 0),
        "steer_applied, steer_in_xdp, steer_failed"
    );
}

/// Checksums materialized on the gateway's egress toward the NAT; `server_complete`: the
/// server's own interface computes its checksums too (a server behind a real link, whose
/// packets reach XDP with a complete checksum rather than a partial one).
fn registers_with_materialized_checksums(server_complete: bool, extra: &[&str]) {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    sh(t.gw.cmd("ethtool").args(["-K", GW_OUTSIDE, "tx", "off"])).unwrap();
    if server_complete {
        sh(t.server.cmd("ethtool").args(["-K", "srv0", "tx", "off"])).unwrap();
    }
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, extra).unwrap();
    let (nat0, phone0) = (udp_csum_errors(&t.nat), udp_csum_errors(&t.phone));
    let cap = Capture::start(&t.nat, "nat-out").unwrap();
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
    let steered = rport.counter("xdp", "response_steered").unwrap();
    let (nat1, phone1) = (udp_csum_errors(&t.nat), udp_csum_errors(&t.phone));
    let (good, bad) = udp_checksums(&cap.frames(), 5060);
    assert_eq!(
        (good, bad),
        (steered, 0),
        "responses captured at the NAT with valid, invalid checksums"
    );
    assert_eq!(
        (nat1 - nat0, phone1 - phone0),
        (0, 0),
        "UDP checksum errors (NAT, phone) after {steered} steered responses"
    );
    assert!(steered >= N as u64, "steered {steered}");
    assert_applied_by_tc(&rport, steered);
    assert_eq!(
        (r.successful, r.failed),
        (N as u64, 0),
        "every REGISTER answered; log:\n{}",
        std::fs::read_to_string(t.path("rport.log")).unwrap_or_default()
    );
}

#[test]
fn steered_from_a_partial_checksum_is_valid_on_the_wire() {
    registers_with_materialized_checksums(false, &[]);
}

#[test]
fn steered_from_a_complete_checksum_is_valid_on_the_wire() {
    registers_with_materialized_checksums(true, &[]);
}

#[test]
fn steered_in_skb_mode_is_valid_on_the_wire() {
    registers_with_materialized_checksums(false, &["--xdp-mode", "skb"]);
}

/// IPv6 (no NAT; the client's Via names a stale address, so every response is steered):
/// the UDP checksum is mandatory there, and the client counts every bad one.
#[test]
fn steered_ipv6_is_valid_on_the_wire() {
    if !tools() {
        return;
    }
    let t = V6Topology::new().unwrap();
    sh(t.gw.cmd("ethtool").args(["-K", GW_OUTSIDE, "tx", "off"])).unwrap();
    let _k = Kamailio::start(&t.server, "2001:db8:2::10", Server::LegacyRegistrar, &t.dir).unwrap();
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
    let before = snmp(&t.client, "Udp6InCsumErrors");
    let cap = Capture::start(&t.client, "c0").unwrap();
    let scen = register_scenario_via("[field0]:[local_port]", "[field1]", false);
    let r = sipp_client_with(
        &t.client,
        &scen,
        &t.dir,
        "2001:db8:1::50",
        5060,
        "[2001:db8:2::10]:5060",
        N,
        10,
        &["[2001:db8:1::99]", "[2001:db8:2::10]"],
        &[],
    )
    .unwrap();
    let steered = rport.counter("xdp", "response_steered").unwrap();
    let (good, bad) = udp_checksums(&cap.frames(), 5060);
    assert_eq!(
        (good, bad),
        (steered, 0),
        "responses captured at the client with valid, invalid checksums"
    );
    assert_eq!(
        snmp(&t.client, "Udp6InCsumErrors") - before,
        0,
        "UDP checksum errors at the client after {steered} steered responses"
    );
    assert!(steered >= N as u64, "steered {steered}");
    assert_applied_by_tc(&rport, steered);
    assert_eq!((r.successful, r.failed), (N as u64, 0));
}
