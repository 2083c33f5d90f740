//! `rport run --egress bypass`: steered responses leave the gateway by `bpf_fib_lookup` and
//! `bpf_redirect` from XDP, past the kernel's forwarding, and still reach the phone behind
//! its NAT with valid checksums; a response whose next hop has no resolved neighbour
//! entry goes the kernel's way (which resolves it), and the next ones by redirect.
//!
//! The server's tx checksum offload is off (`ethtool -K srv0 tx off`): its responses
//! reach XDP with a complete checksum, as from a real NIC, which the redirect path
//! updates in place (docs/OPERATIONS.md, "Egress"). The NAT's `nat-out` (the peer of the
//! gateway's outside veth) runs `rport_pass`: a veth transmits a redirected frame only
//! then.
use rport_tests::{
    capture::{Capture, udp_checksums, udp_csum_errors},
    ns::{Bpffs, can_run, sh},
    sip::{Kamailio, Server, register_scenario, sipp_client},
    topo::{GW_OUTSIDE, NAT_PUBLIC, NatTopology, PHONE},
    xdp::attach_pass,
};

const N: u32 = 5;

fn tools() -> bool {
    can_run(
        "egress_redirect",
        &["ip", "nft", "kamailio", "sipp", "ethtool", "nstat"],
    )
}

struct Figures {
    steered: u64,
    redirected: u64,
    no_neigh: u64,
    other: u64,
    /// Responses captured on the NAT's outside with valid, invalid UDP checksums.
    good: u64,
    bad: u64,
    /// UdpInCsumErrors at the NAT and the phone during the run.
    csum_errors: (u64, u64),
    answered: (u64, u64),
}

/// `N` REGISTERs from the phone through the NAT to a legacy registrar, rport on the
/// gateway with `--egress bypass`; `unresolved`: the gateway has no neighbour entry for the
/// NAT when the first response comes (the NAT has a static one for the gateway, so it
/// never ARPs, and the gateway's table is flushed after rport starts).
fn registers_by_redirect(unresolved: bool) -> Option<(Figures, String)> {
    if !tools() {
        return None;
    }
    let t = NatTopology::new().unwrap();
    sh(t.server.cmd("ethtool").args(["-K", "srv0", "tx", "off"])).unwrap();
    let _pass = attach_pass(&t.nat, "nat-out").unwrap();
    if unresolved {
        let mac = t.gw.ip(&["-br", "link", "show", GW_OUTSIDE]).unwrap();
        let mac = mac.split_whitespace().nth(2).unwrap().to_string();
        t.nat
            .ip(&[
                "neigh",
                "replace",
                "203.0.113.2",
                "lladdr",
                &mac,
                "dev",
                "nat-out",
                "nud",
                "permanent",
            ])
            .unwrap();
    }
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &["--egress", "bypass"]).unwrap();
    if unresolved {
        t.gw.ip(&["neigh", "flush", "dev", GW_OUTSIDE]).unwrap();
        let left = t.gw.ip(&["neigh", "show", NAT_PUBLIC]).unwrap();
        assert!(
            left.trim().is_empty() || left.contains("FAILED"),
            "no entry: {left}"
        );
    }
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
    let (good, bad) = udp_checksums(&cap.frames(), 5060);
    let c = |n: &str| rport.counter("xdp", n).unwrap();
    let f = Figures {
        steered: c("response_steered"),
        redirected: c("steer_redirected"),
        no_neigh: c("steer_fallback_no_neigh"),
        other: c("steer_fallback_other"),
        good,
        bad,
        csum_errors: (
            udp_csum_errors(&t.nat) - nat0,
            udp_csum_errors(&t.phone) - phone0,
        ),
        answered: (r.successful, r.failed),
    };
    let log = std::fs::read_to_string(t.path("rport.log")).unwrap_or_default();
    drop(rport);
    Some((f, log))
}

/// Every response goes by redirect: counted, answered, valid checksums on the wire.
#[test]
fn steered_responses_leave_by_redirect() {
    let Some((f, log)) = registers_by_redirect(false) else {
        return;
    };
    assert_eq!(
        f.answered,
        (N as u64, 0),
        "every REGISTER answered; log:\n{log}"
    );
    assert!(f.steered >= N as u64, "steered {}", f.steered);
    assert_eq!(
        (f.redirected, f.no_neigh, f.other),
        (f.steered, 0, 0),
        "steer_redirected, steer_fallback_no_neigh, steer_fallback_other"
    );
    assert_eq!(
        (f.good, f.bad),
        (f.steered, 0),
        "responses at the NAT with valid, invalid checksums"
    );
    assert_eq!(
        f.csum_errors,
        (0, 0),
        "UdpInCsumErrors at the NAT, the phone"
    );
}

/// The first response finds no neighbour entry for the NAT: the kernel forwards it (and
/// resolves the neighbour); the rest go by redirect. All arrive.
#[test]
fn unresolved_neighbour_falls_back_to_the_kernel_once() {
    let Some((f, log)) = registers_by_redirect(true) else {
        return;
    };
    assert_eq!(
        f.answered,
        (N as u64, 0),
        "every REGISTER answered; log:\n{log}"
    );
    assert!(f.steered >= N as u64, "steered {}", f.steered);
    assert_eq!(
        (f.redirected, f.no_neigh, f.other),
        (f.steered - 1, 1, 0),
        "steer_redirected, steer_fallback_no_neigh, steer_fallback_other"
    );
    assert_eq!(
        (f.good, f.bad),
        (f.steered, 0),
        "responses at the NAT with valid, invalid checksums"
    );
    assert_eq!(
        f.csum_errors,
        (0, 0),
        "UdpInCsumErrors at the NAT, the phone"
    );
}

/// The program itself under BPF_PROG_TEST_RUN with `--egress bypass` (the loader's
/// global), on devices of a namespace of its own whose routes and neighbours make each
/// lookup result: the verdict, the frame out and the counters of each bypass outcome.
/// (Not rows of the shared fixture table: their bed has no routes, and its other runners,
/// the host model and `rport replay`, have no lookup to give.)
#[test]
fn bypass_outcomes_in_the_kernel() {
    use rport_common::{Counter, role, tag::KIND_VIA};
    use rport_tests::{
        fixtures::{TAG_KEY, tag, tag_keys, tagged_resp},
        ns::Ns,
        packets::*,
        xdp::{Ingress, XDP_PASS, XDP_REDIRECT, XdpHarness, can_load_bpf},
    };
    use rport_userspace::datapath::loader::{Egress, Iface, XdpLog, ifindex};
    if !can_load_bpf("bypass_outcomes_in_the_kernel") {
        return;
    }
    const NEIGH_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
    let ns = Ns::new("rpeg").unwrap();
    ns.ip(&[
        "link", "add", "rpout", "type", "veth", "peer", "name", "rpin",
    ])
    .unwrap();
    for (dev, a) in [("rpout", "203.0.113.2/24"), ("rpin", "198.51.100.1/24")] {
        ns.ip(&["addr", "add", a, "dev", dev]).unwrap();
        ns.ip(&["link", "set", dev, "up"]).unwrap();
    }
    sh(ns.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"])).unwrap();
    let mac = ns.ip(&["-br", "link", "show", "rpout"]).unwrap();
    let mac: Vec<u8> = mac
        .split_whitespace()
        .nth(2)
        .unwrap()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    let out_mac: [u8; 6] = mac.try_into().unwrap();
    let ns_name = ns.name.clone();
    let neigh = move |on: bool| {
        let mac = NEIGH_MAC.map(|b| format!("{b:02x}")).join(":");
        let args: &[&str] = if on {
            &[
                "neigh",
                "replace",
                "203.0.113.1",
                "lladdr",
                &mac,
                "dev",
                "rpout",
                "nud",
                "permanent",
            ]
        } else {
            // (`flush` leaves a permanent entry.)
            &["neigh", "del", "203.0.113.1", "dev", "rpout"]
        };
        sh(std::process::Command::new("ip")
            .args(["-n", &ns_name])
            .args(args))
        .unwrap();
    };
    let good = tag(&TAG_KEY, KIND_VIA, (SERVER_V4, 5060), 10);
    let resp = tagged_resp(SERVER_V4, &good);
    let payload = resp[42..].to_vec();
    // What the next hop must receive: built anew, checksums computed in full.
    let want = {
        let b = etherparse::PacketBuilder::ethernet2(out_mac, NEIGH_MAC)
            .ipv4(SERVER_V4, NAT_V4, 63)
            .udp(5060, NAT_PORT);
        let mut v = Vec::new();
        b.write(&mut v, &payload).unwrap();
        v
    };
    let run = move |h: &XdpHarness, frame: &[u8], inside: u32| {
        let before = h.counters().unwrap();
        let r = h
            .run_on(
                frame,
                Ingress {
                    ifindex: inside,
                    rx_queue: 0,
                },
            )
            .unwrap();
        let after = h.counters().unwrap();
        let moved: Vec<Counter> = Counter::ALL
            .iter()
            .copied()
            .filter(|c| after[*c as usize] != before[*c as usize])
            .collect();
        (r.verdict, r.out, moved)
    };
    let steered = [
        Counter::Packets,
        Counter::SipResponses,
        Counter::ResponseSteered,
        Counter::TagSteered,
    ];
    let with = |c: Counter| {
        let mut v = steered.to_vec();
        v.push(c);
        v.sort_by_key(|c| *c as u32);
        v
    };
    let expired = {
        let mut f = resp.clone();
        f[22] = 1;
        f[24..26].copy_from_slice(&[0, 0]);
        let c = rport_ebpf::csum::checksum(&f[14..34], 0);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    let (resp_in, expired_in) = (resp.clone(), expired.clone());
    let outcomes = ns
        .within(move || {
            let (outside, inside) = (ifindex("rpout").unwrap(), ifindex("rpin").unwrap());
            let mut h =
                XdpHarness::load_full(XdpLog::Off, rport_common::MAX_BINDINGS, Egress::Bypass)
                    .unwrap();
            h.set_ifaces(&[
                Iface {
                    name: "rpout".into(),
                    index: outside,
                    role: role::OUTSIDE,
                    slot: 0,
                },
                Iface {
                    name: "rpin".into(),
                    index: inside,
                    role: role::INSIDE,
                    slot: 1,
                },
            ])
            .unwrap();
            h.set_tag_keys(&tag_keys()).unwrap();
            neigh(true);
            let resolved = run(&h, &resp_in, inside);
            let ttl_one = run(&h, &expired_in, inside);
            neigh(false);
            let unresolved = run(&h, &resp_in, inside);
            (resolved, ttl_one, unresolved)
        })
        .unwrap();
    let ((v, out, c), (v1, out1, c1), (v2, out2, c2)) = outcomes;
    assert_eq!(v, XDP_REDIRECT, "neighbour resolved: redirected");
    assert_eq!(c, with(Counter::SteerRedirected));
    assert_eq!(
        out, want,
        "steered, TTL 63, the next hop's MACs, checksums in full"
    );
    // The other two go the kernel's way, handed to TC as without bypass: unchanged behind
    // their metadata, the TTL the kernel's to decrement.
    assert_eq!(v1, XDP_PASS, "TTL 1");
    assert_eq!(c1, with(Counter::SteerFallbackOther));
    assert!(out1.ends_with(&expired), "TTL 1: the frame as it came");
    assert_eq!(v2, XDP_PASS, "no neighbour");
    assert_eq!(c2, with(Counter::SteerFallbackNoNeigh));
    assert!(out2.ends_with(&resp), "no neighbour: the frame as it came");
}
