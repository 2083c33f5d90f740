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
    topo::{GW_OUTSIDE, NAT_PUBLIC, NatTopology, PHONE, Rport},
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
