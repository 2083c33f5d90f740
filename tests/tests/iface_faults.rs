//! Faults of the gateway while rport runs (issue 13): an interface deleted and created
//! again under its name, and the daemon killed under load and started again.
use std::time::{Duration, Instant};

use rport_tests::{
    ns::{Bpffs, can_run},
    sip::{Kamailio, Server, SippResult, register_scenario, sipp_client, sipp_client_with},
    topo::{GW_INSIDE, GW_OUTSIDE, NAT_PUBLIC, NatTopology, PHONE, Rport, server_leg, wire},
};

const N: u32 = 10;

fn tools() -> bool {
    can_run(
        "iface_faults",
        &["ip", "nft", "kamailio", "sipp", "conntrack"],
    )
}

fn register(t: &NatTopology) -> SippResult {
    sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )
    .unwrap()
}

fn log_lines(rport: &Rport, needle: &str) -> usize {
    std::fs::read_to_string(&rport.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The most entries any INJECT_SOCKETS map loaded on this machine holds (BPF maps are
/// not per network namespace: the daemons of this binary's tests are all seen).
fn most_inject_sockets() -> usize {
    aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .filter(|m| m.name_as_str() == Some(rport_common::maps::INJECT_SOCKETS))
        .filter_map(|m| {
            let data = aya::maps::MapData::from_id(m.id()).ok()?;
            let map: aya::maps::HashMap<_, u64, u8> =
                aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).ok()?;
            Some(map.keys().count())
        })
        .max()
        .unwrap_or(0)
}

/// Which of the gateway's interfaces the fault hits.
#[derive(Clone, Copy, Debug)]
enum Side {
    Outside,
    Inside,
}

/// The gateway's `side` veth deleted (its peer goes with it) and made again with the same
/// names, addresses and routes, as a container or link restart does.
fn replace_link(t: &NatTopology, side: Side) {
    match side {
        Side::Outside => {
            t.gw.ip(&["link", "del", GW_OUTSIDE]).unwrap();
            wire(
                &t.nat,
                "nat-out",
                NAT_PUBLIC,
                &t.gw,
                GW_OUTSIDE,
                "203.0.113.2",
            )
            .unwrap();
            // The NAT's mappings pointed at the old link.
            t.forget_nat_mappings().unwrap();
        }
        Side::Inside => {
            t.gw.ip(&["link", "del", GW_INSIDE]).unwrap();
            server_leg(&t.gw, &t.server).unwrap();
        }
    }
}

fn interface_replaced_under_its_name(side: Side) {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    let k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    let before = register(&t);
    assert_eq!((before.successful, before.failed), (N as u64, 0));
    let vias_before = k.seen_vias().len();

    let name = match side {
        Side::Outside => GW_OUTSIDE,
        Side::Inside => GW_INSIDE,
    };
    let t0 = Instant::now();
    replace_link(&t, side);
    // Bounded wait for the reattach (a daemon that never reattaches lets it run out).
    let mut reattached_after = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if rport.counter("daemon", "iface_reattached").unwrap_or(0) >= 1 {
            reattached_after = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = register(&t);
    eprintln!(
        "iface_faults {side:?}: sipp before {}/{N}, after {}/{N} (failed {}); reattached {:?} after the link was replaced",
        before.successful, after.successful, after.failed, reattached_after
    );
    let log = std::fs::read_to_string(&rport.log).unwrap_or_default();
    assert_eq!(
        (after.successful, after.failed),
        (N as u64, 0),
        "every REGISTER must succeed again after {name} came back; log:\n{log}"
    );
    let vias = &k.seen_vias()[vias_before..];
    assert!(!vias.is_empty());
    for v in vias {
        assert!(v.contains(";received=203.0.113.1"), "not rewritten: {v}");
        assert!(
            !v.contains(";rport;") && !v.ends_with(";rport"),
            "rport not filled: {v}"
        );
    }
    // The senders of the stopped threads left INJECT_SOCKETS: every rport daemon of this
    // test binary has one outside interface with one queue (tests/src/ns.rs `veth`), so
    // no such map holds more than one cookie (an interface that keeps coming back would
    // otherwise fill it, and then fail to reattach).
    let most = most_inject_sockets();
    assert!(most <= 1, "an INJECT_SOCKETS map holds {most} cookies");
    let d = &rport.stats().unwrap()["daemon"];
    assert_eq!(d["iface_lost"], 1, "{d}");
    assert_eq!(d["iface_reattached"], 1, "{d}");
    assert_eq!(
        log_lines(&rport, &format!("interface {name} (ifindex")),
        1,
        "{log}"
    );
    assert_eq!(
        log_lines(&rport, &format!("interface {name} is back")),
        1,
        "{log}"
    );
    // The new link carries rport's XDP program.
    let link = t.gw.ip(&["link", "show", name]).unwrap();
    assert!(link.contains(" xdp"), "{link}");
}

#[test]
fn outside_interface_deleted_and_recreated() {
    interface_replaced_under_its_name(Side::Outside);
}

#[test]
fn inside_interface_deleted_and_recreated() {
    interface_replaced_under_its_name(Side::Inside);
}

/// The first top Via at index `from` or after that `pick` accepts, waited for (polled
/// every 5 ms, at most `limit`): how long it took.
fn first_via(
    k: &Kamailio,
    from: usize,
    limit: Duration,
    pick: impl Fn(&str) -> bool,
) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if k.seen_vias().iter().skip(from).any(|v| pick(v)) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn sigkill_under_load_then_restart() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    // A server that answers the source: the traffic flows without rport, so the calls of
    // the run show whether the kernel forwarded while the daemon was dead.
    let k = Kamailio::start(&t.server, "198.51.100.10", Server::AwareRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let mut rport = t.rport(&pins, &[]).unwrap();
    let (rate, calls) = (50u32, 400u32);
    std::thread::scope(|s| {
        let load = s.spawn(|| {
            sipp_client_with(
                &t.phone,
                &register_scenario(true),
                &t.dir,
                PHONE,
                5062,
                "198.51.100.10:5060",
                calls,
                rate,
                &[],
                &[],
            )
        });
        // The load running through rport first.
        let rewritten = |v: &str| v.contains(";received=");
        assert!(
            first_via(&k, 0, Duration::from_secs(10), rewritten).is_some(),
            "no rewritten request before the kill"
        );
        std::thread::sleep(Duration::from_secs(1));
        let at_kill = k.seen_vias().len();
        let t_kill = Instant::now();
        rport.kill().unwrap();
        // Traffic through the kernel alone: a request that reaches the server unrewritten.
        let gap = first_via(&k, at_kill, Duration::from_secs(10), |v| !rewritten(v));
        let link = t.gw.ip(&["-d", "link", "show", GW_OUTSIDE]).unwrap();
        let attached_after_kill = link.contains(" xdp");
        std::thread::sleep(Duration::from_millis(500));
        let at_start = k.seen_vias().len();
        let t_start = Instant::now();
        let rport2 = Rport::start(
            &t.gw,
            GW_OUTSIDE,
            GW_INSIDE,
            &pins,
            &t.path("rport2.log"),
            &[],
        )
        .unwrap();
        let serving = t_start.elapsed();
        let first_rewritten =
            first_via(&k, at_start, Duration::from_secs(10), rewritten).map(|d| d + serving);
        let r = load.join().unwrap().unwrap();
        eprintln!(
            "iface_faults sigkill: {rate} REGISTER/s; first unrewritten request at the server {:?} after the kill (since the kill {:?}); restart: answering stats after {serving:?}, first rewritten request after {:?}; sipp {}/{calls} successful, {} failed",
            gap,
            t_kill.elapsed(),
            first_rewritten,
            r.successful,
            r.failed
        );
        assert!(
            !attached_after_kill,
            "XDP left attached after SIGKILL: {link}"
        );
        assert!(
            gap.is_some(),
            "no request reached the server after the kill"
        );
        assert!(
            first_rewritten.is_some(),
            "the restarted daemon rewrote nothing; log:\n{}",
            std::fs::read_to_string(&rport2.log).unwrap_or_default()
        );
        assert_eq!(r.successful + r.failed, calls as u64);
        assert_eq!(r.failed, 0, "calls lost around the kill and restart");
        let d = &rport2.stats().unwrap()["daemon"];
        assert!(d["rewritten"].as_u64().unwrap() > 0, "{d}");
    });
}
