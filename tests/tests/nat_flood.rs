//! The NAT tracker as an attacker's target (issue 12): the daemon keeps one entry per
//! Call-ID of every request it rewrites, so any outside sender can make it remember. An
//! attacker on the gateway's outside (its own namespace and interface, `topo::attacker`)
//! sends 20,000 valid REGISTERs with `;rport`, each with a new Call-ID, from plain UDP
//! sockets within a few seconds, while a victim phone behind a real NAT keeps registering
//! (SIPp, one Call-ID, through Kamailio). Then the victim's NAT forgets its mapping:
//!
//! - the victim's rebinding is still seen (`nat.recent_rebindings` of `rport stats --nat
//!   --json`): the flood did not make the tracker forget a client that kept refreshing;
//! - the attacker's source holds no more than its share of the table
//!   ([`SOURCE_SHARE`]): the rest of its Call-IDs were refused, and counted
//!   (`daemon.nat_source_capped`).
//!
//! The daemon's resident memory before and after the flood is printed (not asserted).
use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use rport_tests::{
    ns::{Bpffs, can_run},
    sip::{Kamailio, Server, refresh_scenario, sipp_client_with},
    topo::{ATTACKER, GW_ATTACKER_IF, NatTopology, PHONE, Rport, SERVER},
};
use rport_userspace::observe::nat::{self, SOURCE_SHARE};

/// Distinct Call-IDs the attacker sends.
const FLOOD: usize = 20_000;
/// Datagrams per burst, and the pause after each: 20,000 in about 4 s (plus the sending),
/// slow enough that the gateway's AF_XDP rings keep up.
const BURST: usize = 250;
const PAUSE: Duration = Duration::from_millis(50);
/// The victim's registration, one Call-ID for all its REGISTERs (RFC 3261 §10.2).
const VICTIM: &str = "phone-1@192.168.1.50";

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A valid REGISTER through "NAT" (private sent-by, `;rport`) with Call-ID number `i`.
fn flood_register(i: usize) -> Vec<u8> {
    format!(
        "REGISTER sip:{SERVER} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.7.7:5060;branch=z9hG4bK-flood-{i};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{i}@{SERVER}>;tag={i}\r\n\
         To: <sip:u{i}@{SERVER}>\r\n\
         Call-ID: flood-{i}@192.168.7.7\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:u{i}@192.168.7.7:5060>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The flood, from four sockets of the attacker (other ports do not buy it more room).
fn flood(atk: &rport_tests::ns::Ns) -> Duration {
    atk.within(|| {
        let socks: Vec<UdpSocket> = (0..4)
            .map(|p| UdpSocket::bind(format!("{ATTACKER}:{}", 41000 + p)).unwrap())
            .collect();
        let to = format!("{SERVER}:5060");
        let t = Instant::now();
        for i in 0..FLOOD {
            socks[i % socks.len()]
                .send_to(&flood_register(i), &to)
                .unwrap();
            if i % BURST == BURST - 1 {
                std::thread::sleep(PAUSE);
            }
        }
        t.elapsed()
    })
    .unwrap()
}

fn nat_of(r: &Rport) -> serde_json::Value {
    let s = r.stats().unwrap();
    serde_json::json!({"nat": {"clients": s["nat"]["clients"], "untracked": s["nat"]["untracked"],
        "rebindings": s["nat"]["rebindings"]},
        "daemon": {"rewritten": s["daemon"]["rewritten"],
        "nat_source_capped": s["daemon"]["nat_source_capped"],
        "nat_source_evicted": s["daemon"]["nat_source_evicted"],
        "nat_full_evicted": s["daemon"]["nat_full_evicted"],
        "nat_idle_expired": s["daemon"]["nat_idle_expired"],
        "xsk_ring_full": s["daemon"]["xsk_ring_full"]}})
}

#[test]
fn a_call_id_flood_does_not_hide_a_victims_rebinding() {
    if !can_run("nat_flood", &["ip", "nft", "kamailio", "sipp", "conntrack"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let atk = t.attacker().unwrap();
    let _k = Kamailio::start(&t.server, SERVER, Server::LegacyRegistrar, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &["--outside", GW_ATTACKER_IF]).unwrap();
    let pid = rport.proc.child.as_ref().unwrap().id();
    let cid = ["-cid_str", VICTIM];
    let victim = |n: u32, pause_ms: u32| {
        let r = sipp_client_with(
            &t.phone,
            &refresh_scenario(n, pause_ms),
            &t.dir,
            PHONE,
            5060,
            &format!("{SERVER}:5060"),
            1,
            10,
            &[],
            &cid,
        )
        .unwrap();
        assert_eq!((r.successful, r.failed), (1, 0), "the victim's REGISTERs");
    };
    // The victim is registered before the attack...
    victim(1, 0);
    let rss_before = rss_kib(pid);
    // ...and keeps refreshing (every second, 8 times) while the attacker floods.
    let took = std::thread::scope(|s| {
        let v = s.spawn(|| victim(8, 1000));
        let took = flood(&atk);
        v.join().unwrap();
        took
    });
    // The last datagrams may still be on their way through the daemon.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid);
    let during = nat_of(&rport);
    eprintln!(
        "flood of {FLOOD} Call-IDs in {took:?}; daemon VmRSS {rss_before} KiB before, \
         {rss_after} KiB after; {during}"
    );
    // The premise of the counts below (not a speed target): the whole flood came while
    // its first Call-IDs were still fresh, so none gave its place to a later one.
    assert!(
        took < Duration::from_secs(nat::STALE_S),
        "the flood took {took:?}"
    );

    // The victim's NAT forgets its mapping: its next REGISTER comes from a new port.
    t.forget_nat_mappings().unwrap();
    victim(2, 200);
    let s = rport.stats().unwrap();
    let n = &s["nat"];
    let seen = n["recent_rebindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["client"] == VICTIM)
        .cloned();
    eprintln!("after the victim's rebinding: {}", nat_of(&rport));
    let r = seen
        .unwrap_or_else(|| panic!("the victim's rebinding is lost after the flood: {n}; {during}"));
    assert_ne!(r["old"], r["new"], "{r}");
    assert!(
        r["new"].as_str().unwrap().starts_with("203.0.113.1:"),
        "{r}"
    );
    // The attacker's source held no more than its share of the table (+ the victim).
    let clients = n["clients"].as_u64().unwrap();
    assert!(
        clients <= SOURCE_SHARE as u64 + 1,
        "the tracker holds {clients} clients after {FLOOD} Call-IDs of one source (share \
         {SOURCE_SHARE}): {during}"
    );
    // The rest of the flood was refused, and counted.
    let capped = s["daemon"]["nat_source_capped"].as_u64().unwrap_or(0);
    let rewritten = s["daemon"]["rewritten"].as_u64().unwrap();
    assert!(
        capped > 0 && clients - 1 + capped <= rewritten,
        "refused Call-IDs of the attacker counted: capped {capped}, clients {clients}, \
         rewritten {rewritten}: {during}"
    );
    // None was forgotten: the table never filled, and the flood was over before its
    // first Call-IDs were stale.
    let full = s["daemon"]["nat_full_evicted"].as_u64().unwrap_or(0)
        + s["daemon"]["nat_idle_expired"].as_u64().unwrap_or(0)
        + s["daemon"]["nat_source_evicted"].as_u64().unwrap_or(0)
        + n["untracked"].as_u64().unwrap();
    assert_eq!(full, 0, "{during}");
}
