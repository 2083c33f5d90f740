//! Incoming calls ring (issue 11): a phone behind a real NAT registers through rport to a
//! PBX that ignores NAT (Kamailio registrar + tm + rr, `reply_to_via=1`, no nathelper),
//! and the requests the PBX sends toward it — the INVITE to its registered Contact, the
//! ACK and the BYE of the dialog — reach it.
//!
//! The PBX sends them to the private Contact the phone wrote (`sip:phone@192.168.1.50`),
//! which routes to the gateway and no further. rport put its Contact tag in that Contact
//! (`;rptag=`, a URI parameter the PBX stores and copies into the Request-URI); the XDP
//! program on the inside interface reads it from the Request-URI and steers the request
//! to the NAT mapping it names, by the same TC handoff as responses. Checksums are
//! materialized on the gateway's egress toward the NAT (`ethtool -K gw-out tx off`) and
//! checked at the phone (`UdpInCsumErrors`) and on the NAT's outside interface (capture).
use std::time::Duration;

use rport_tests::{
    capture::{Capture, udp_checksums, udp_csum_errors},
    ns::{Bpffs, can_run, sh},
    sip::{
        Kamailio, Server, Sipp, SippResult, hangup_uas_scenario, incoming_calls_via,
        phone_call_hung_up_scenario, register_user_scenario, sipp_client,
    },
    topo::{GW_OUTSIDE, GW_OUTSIDE2, NatTopology, PHONE, Rport, SERVER},
};

/// The Contact the phone writes: its private address, as every phone behind NAT does.
const PHONE_CONTACT: &str = "sip:phone@192.168.1.50:5060";

fn tools() -> bool {
    can_run(
        "incoming_call",
        &["ip", "nft", "kamailio", "sipp", "ethtool", "nstat"],
    )
}

/// The phone registers AOR `user` (one REGISTER from 192.168.1.50:5060): answered or not.
fn register(t: &NatTopology, user: &str) -> SippResult {
    sipp_client(
        &t.phone,
        &register_user_scenario(user, PHONE_CONTACT),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        1,
        10,
    )
    .unwrap()
}

/// [`incoming_calls_via`] on the NAT topology.
fn incoming_calls(t: &NatTopology, user: &str, calls: u32) -> (SippResult, Option<SippResult>) {
    incoming_calls_via(&t.phone, &t.server, &t.dir, user, calls).unwrap()
}

fn log(t: &NatTopology) -> String {
    std::fs::read_to_string(t.path("rport.log")).unwrap_or_default()
}

#[test]
fn incoming_calls_ring_through_a_pbx_that_ignores_nat() {
    if !tools() {
        return;
    }
    const N: u32 = 4;
    let t = NatTopology::new().unwrap();
    sh(t.gw.cmd("ethtool").args(["-K", GW_OUTSIDE, "tx", "off"])).unwrap();
    let k = Kamailio::start(&t.server, SERVER, Server::Pbx, &t.dir).unwrap();

    // Without rport: the registration's 200 goes to the private Via and is lost (the PBX
    // stored the Contact all the same), and every call to the phone is lost at the
    // gateway, which has no route to 192.168.1.0/24.
    // (Each phase registers its own AOR: the PBX keeps every Contact it was given, and
    // forks a call to all of them.)
    assert_eq!(register(&t, "nat0").successful, 0, "REGISTER without rport");
    let (c, p) = incoming_calls(&t, "nat0", 2);
    assert_eq!((c.successful, c.failed), (0, 2), "calls without rport");
    assert!(p.is_none_or(|p| p.successful == 0));

    let pins = Bpffs::new().unwrap();
    // rport steering responses only (Contacts left alone): the phone shows "registered",
    // every incoming call still fails. The state issue 11 was filed in.
    {
        let rport = t.rport(&pins, &["--contact", "off"]).unwrap();
        assert_eq!(register(&t, "nat1").successful, 1, "{}", log(&t));
        // Seen, its Via rewritten, but no Contact tagged: no server can reach it.
        assert_eq!(rport.clients().unwrap(), serde_json::json!([]));
        assert_eq!(rport.stats().unwrap()["nat"]["reachable_clients"], 0);
        let (c, _) = incoming_calls(&t, "nat1", 2);
        assert_eq!(
            (c.successful, c.failed),
            (0, 2),
            "calls, Contacts not aliased"
        );
        assert_eq!(rport.counter("xdp", "request_steered").unwrap(), 0);
        assert!(rport.counter("xdp", "request_from_inside").unwrap() >= 2);
    }

    // rport: the REGISTER's Contact carries the phone's tag, the PBX stores it, and every
    // request it sends to that Contact is steered to the phone's NAT mapping.
    let rport = t.rport(&pins, &[]).unwrap();
    assert_eq!(
        rport.clients().unwrap(),
        serde_json::json!([]),
        "before the REGISTER"
    );
    assert_eq!(register(&t, "phone").successful, 1, "{}", log(&t));
    assert!(rport.counter("daemon", "contacts_aliased").unwrap() >= 1);
    // `rport bindings --clients`: the phone, reachable by the PBX at its NAT mapping.
    let clients = rport.clients().unwrap();
    let listed = clients.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{clients:#}");
    let mapping = listed[0]["mapping"].as_str().unwrap();
    assert!(mapping.starts_with("203.0.113.1:"), "{clients:#}");
    assert_eq!(listed[0]["server"], "198.51.100.10", "{clients:#}");
    let left = listed[0]["expires_in_s"].as_f64().unwrap();
    assert!(left > 86_000.0 && left <= 86_400.0, "{clients:#}");
    assert_eq!(rport.stats().unwrap()["nat"]["reachable_clients"], 1);
    let (nat0, phone0) = (udp_csum_errors(&t.nat), udp_csum_errors(&t.phone));
    let cap = Capture::start(&t.nat, "nat-out").unwrap();
    let (c, p) = incoming_calls(&t, "phone", N);
    let diag = format!(
        "caller {c:?}, phone {p:?}\nrport stats: {}\nrport log:\n{}",
        rport.stats().map(|s| s.to_string()).unwrap_or_default(),
        log(&t)
    );
    assert_eq!((c.successful, c.failed), (N as u64, 0), "calls: {diag}");
    // The phone got each INVITE, ACK and BYE (its scenario waits for all three).
    let p = p.unwrap_or_else(|| panic!("the phone did not answer every call: {diag}"));
    assert_eq!((p.successful, p.failed), (N as u64, 0), "{diag}");
    // What the PBX stored and called: the phone's private Contact with rport's tag.
    for to in k.targets("phone") {
        assert!(
            to.starts_with("sip:phone@192.168.1.50:5060;rptag="),
            "the PBX called {to}: {}",
            std::fs::read_to_string(&k.log).unwrap_or_default()
        );
    }
    assert_eq!(k.targets("nat1"), ["sip:phone@192.168.1.50:5060"; 2]);
    // INVITE, ACK and BYE of each call steered by the Contact tag, none refused.
    let steered = rport.counter("xdp", "request_steered").unwrap();
    assert!(steered >= 3 * N as u64, "request_steered {steered}: {diag}");
    assert_eq!(rport.counter("xdp", "request_tag_invalid").unwrap(), 0);
    assert_eq!(rport.counter("xdp", "request_tag_expired").unwrap(), 0);
    // The phone's 180 and 200 went to the daemon for their Contacts.
    assert!(rport.counter("xdp", "response_contact").unwrap() >= 2 * N as u64);
    // Checksums, computed in software on the gateway's egress as a NIC would: every
    // datagram from the PBX's port that reached the NAT is right, and the phone saw no
    // checksum error.
    let (good, bad) = udp_checksums(&cap.frames(), 5060);
    assert_eq!(bad, 0, "datagrams from 5060 with a bad checksum at the NAT");
    assert!(good >= steered, "good {good} < steered {steered}");
    assert_eq!(
        (
            udp_csum_errors(&t.nat) - nat0,
            udp_csum_errors(&t.phone) - phone0
        ),
        (0, 0),
        "UDP checksum errors (NAT, phone)"
    );
    assert_eq!(rport.counter("xdp", "steer_failed").unwrap(), 0);
    assert_eq!(rport.counter("xdp", "steer_in_xdp").unwrap(), 0);
}

#[test]
fn the_far_end_hangs_up_a_call_the_phone_made() {
    if !tools() {
        return;
    }
    const N: u32 = 3;
    let t = NatTopology::new().unwrap();
    sh(t.gw.cmd("ethtool").args(["-K", GW_OUTSIDE, "tx", "off"])).unwrap();
    let k = Kamailio::start(&t.server, SERVER, Server::Pbx, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    let mut service = Sipp::uas(
        &t.server,
        &hangup_uas_scenario(300),
        &t.dir,
        SERVER,
        5070,
        N,
        Duration::from_secs(40),
    )
    .unwrap();
    let phone0 = udp_csum_errors(&t.phone);
    // The phone calls; the far end's BYE comes back through the PBX to the phone's
    // Contact (the dialog's remote target), which rport tagged in the INVITE.
    let r = sipp_client(
        &t.phone,
        &phone_call_hung_up_scenario(),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        1,
    )
    .unwrap();
    let s = service.wait(Duration::from_secs(30)).unwrap();
    let diag = format!(
        "phone {r:?}, service {s:?}\nrport stats: {}\nrport log:\n{}\nservice: {}\nPBX:\n{}",
        rport.stats().map(|s| s.to_string()).unwrap_or_default(),
        log(&t),
        service.log(),
        std::fs::read_to_string(&k.log).unwrap_or_default()
    );
    assert_eq!((r.successful, r.failed), (N as u64, 0), "{diag}");
    assert_eq!((s.successful, s.failed), (N as u64, 0), "{diag}");
    assert!(
        rport.counter("xdp", "request_steered").unwrap() >= N as u64,
        "{diag}"
    );
    assert_eq!(udp_csum_errors(&t.phone) - phone0, 0);
}

#[test]
fn a_restart_between_the_register_and_the_call_loses_nothing() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    let _k = Kamailio::start(&t.server, SERVER, Server::Pbx, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let mut rport = t.rport(&pins, &[]).unwrap();
    assert_eq!(register(&t, "phone").successful, 1, "{}", log(&t));
    // The daemon goes, and with it every binding it recorded: the tag needs none.
    let bindings = rport.bindings_pin();
    rport.kill().unwrap();
    std::fs::remove_file(&bindings).unwrap();
    let rport: Rport = t.rport(&pins, &[]).unwrap();
    let (c, p) = incoming_calls(&t, "phone", 2);
    let diag = format!("caller {c:?}, phone {p:?}\n{}", log(&t));
    assert_eq!((c.successful, c.failed), (2, 0), "{diag}");
    assert!(p.is_some_and(|p| p.successful == 2), "{diag}");
    assert!(rport.counter("xdp", "request_steered").unwrap() >= 6);
}

/// Frames captured that carry a SIP request line starting with `method`.
fn requests_seen(cap: &Capture, method: &str) -> usize {
    let pat = format!("{method} sip:");
    cap.frames()
        .iter()
        .filter(|f| f.windows(pat.len()).any(|w| w == pat.as_bytes()))
        .count()
}

/// The `rptag` value of a Contact URI the PBX called.
fn tag_of(uri: &str) -> String {
    uri.split_once(";rptag=")
        .map(|(_, t)| t.to_string())
        .unwrap_or_default()
}

#[test]
fn two_phones_behind_two_nats_with_the_same_contact_each_get_their_own_calls() {
    if !tools() {
        return;
    }
    const N: u32 = 2;
    let t = NatTopology::new().unwrap();
    let home2 = t.second_home().unwrap();
    for dev in [GW_OUTSIDE, GW_OUTSIDE2] {
        sh(t.gw.cmd("ethtool").args(["-K", dev, "tx", "off"])).unwrap();
    }
    let k = Kamailio::start(&t.server, SERVER, Server::Pbx, &t.dir).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &["--outside", GW_OUTSIDE2]).unwrap();
    // Both write Contact sip:phone@192.168.1.50:5060; AOR 100 at home 1, 200 at home 2.
    let reg = |ns, user: &str, contact: &str| {
        sipp_client(
            ns,
            &register_user_scenario(user, contact),
            &t.dir,
            PHONE,
            5060,
            "198.51.100.10:5060",
            1,
            10,
        )
        .unwrap()
    };
    assert_eq!(
        reg(&t.phone, "100", PHONE_CONTACT).successful,
        1,
        "{}",
        log(&t)
    );
    assert_eq!(
        reg(&home2.phone, "200", PHONE_CONTACT).successful,
        1,
        "{}",
        log(&t)
    );
    let errs0 = (udp_csum_errors(&t.phone), udp_csum_errors(&home2.phone));

    // Calls to 100 ring phone 1 only, calls to 200 phone 2 only.
    for (user, rings, quiet) in [
        ("100", &t.phone, &home2.phone),
        ("200", &home2.phone, &t.phone),
    ] {
        let quiet_cap = Capture::start(quiet, "ph0").unwrap();
        let (c, p) = incoming_calls_via(rings, &t.server, &t.dir, user, N).unwrap();
        let diag = format!("calls to {user}: caller {c:?}, phone {p:?}\n{}", log(&t));
        assert_eq!((c.successful, c.failed), (N as u64, 0), "{diag}");
        assert_eq!(p.map(|p| p.successful), Some(N as u64), "{diag}");
        assert_eq!(
            requests_seen(&quiet_cap, "INVITE"),
            0,
            "the other phone got an INVITE: {diag}"
        );
    }
    // Two tags for one private Contact: each names its own NAT mapping.
    let (t100, t200) = (k.targets("100"), k.targets("200"));
    assert!(
        tag_of(&t100[0]).len() > 30 && tag_of(&t200[0]).len() > 30,
        "{t100:?} {t200:?}"
    );
    assert_ne!(tag_of(&t100[0]), tag_of(&t200[0]));

    // A forged Contact from home 2: phone 1's own tag (as a sniffer would have copied it)
    // on a third address. rport replaces the tag with home 2's: the calls to 300 ring
    // phone 2, never phone 1, and nothing goes to the third address.
    let forged = format!("sip:phone@203.0.113.99:5060;rptag={}", tag_of(&t100[0]));
    assert_eq!(
        reg(&home2.phone, "300", &forged).successful,
        1,
        "{}",
        log(&t)
    );
    let t300 = k.targets("300");
    assert!(t300.is_empty(), "no call yet");
    let victim = Capture::start(&t.phone, "ph0").unwrap();
    let wire1 = Capture::start(&t.nat, "nat-out").unwrap();
    let (c, p) = incoming_calls_via(&home2.phone, &t.server, &t.dir, "300", 1).unwrap();
    let diag = format!("call to 300: caller {c:?}, phone 2 {p:?}\n{}", log(&t));
    assert_eq!((c.successful, c.failed), (1, 0), "{diag}");
    let t300 = k.targets("300");
    assert!(
        t300[0].starts_with("sip:phone@203.0.113.99:5060;rptag="),
        "{t300:?}"
    );
    assert_ne!(
        tag_of(&t300[0]),
        tag_of(&t100[0]),
        "the victim's tag survived"
    );
    assert_eq!(
        requests_seen(&victim, "INVITE"),
        0,
        "the victim got the attacker's call"
    );
    let to_third = wire1
        .frames()
        .iter()
        .filter(|f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[30..34] == [203, 0, 113, 99])
        .count();
    assert_eq!(to_third, 0, "datagrams sent to the third address");
    assert_eq!(
        (
            udp_csum_errors(&t.phone) - errs0.0,
            udp_csum_errors(&home2.phone) - errs0.1
        ),
        (0, 0),
        "UDP checksum errors at the phones"
    );
    assert_eq!(rport.counter("xdp", "request_tag_invalid").unwrap(), 0);
}
