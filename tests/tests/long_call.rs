//! Steering that never forgets (issue #10): a response must find its way to the phone's NAT
//! mapping however long the transaction lasts, whatever happened to the gateway's state
//! meanwhile, and through whichever gateway it comes back.
//!
//! The call: a phone behind a real NAT calls a legacy called party (SIPp) that answers
//! every response to the private sent-by of the top Via, with 100 and 180 at once and the
//! 200 OK after 32 s of ringing. The 200 finds the gateway's BINDINGS entry of the INVITE
//! gone in each test below: evicted by ~90,000 newer transactions of other clients
//! (65,536-entry LRU map), lost with a map that did not survive a restart, or never made,
//! on a second gateway that did not see the request. The NAT is told to keep idle UDP
//! mappings 2 minutes, as home routers do (Linux's default for such a flow is 30 s, which
//! would lose the answer at the NAT, not at the gateway).
use std::time::{Duration, Instant};

use rport_common::MAX_BINDINGS;
use rport_tests::{
    capture::{Capture, udp_checksums},
    load::GenReport,
    ns::{Bpffs, Proc, can_run, sh},
    sip::{Sipp, SippResult, legacy_uas_scenario, long_uac_scenario, run_bounded},
    topo::{
        GW_INSIDE, GW_OUTSIDE, NatTopology, PHONE, Rport, SERVER, TwoGatewayTopology, write_tag_key,
    },
};

/// The load generator and legacy responder of `cargo xtask bench` (rport_tests::load).
const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// How long the called party rings before it answers.
const RING_MS: u32 = 32_000;
/// How long the phone waits for the 200 after the 180: the ringing and some.
const ANSWER_WITHIN_MS: u32 = 40_000;
/// How long the NAT keeps an idle UDP mapping: 2 minutes, longer than the ringing (see
/// `NatTopology::keep_udp_mappings`).
const NAT_UDP_SECS: u32 = 120;
/// The call's target: the legacy called party itself.
const CALLED: &str = "198.51.100.10:5060";
/// Where the load goes (a SIP port of rport's besides 5060, given with --sip-port).
const LOAD_TARGET: &str = "198.51.100.10:5080";
/// The load: REGISTER/s and seconds, ending well before the called party answers; more
/// new transactions (91,000) than the LRU map holds.
const LOAD_RATE: u64 = 3_500;
const LOAD_SECS: u64 = 26;

fn tools() -> bool {
    can_run("long_call", &["ip", "nft", "sipp", "ethtool", "ss"])
}

/// The legacy called party on the server, for one call; and the phone's call to it, given
/// up by SIPp itself some time after the answer is due.
fn call(
    phone: &rport_tests::ns::Ns,
    server: &rport_tests::ns::Ns,
    dir: &std::path::Path,
    ring_ms: u32,
    answer_within_ms: u32,
) -> (Sipp, Sipp) {
    let uas = Sipp::uas(
        server,
        &legacy_uas_scenario(ring_ms),
        dir,
        SERVER,
        5060,
        1,
        Duration::from_secs(75),
    )
    .unwrap();
    let uac = Sipp::uac(
        phone,
        &long_uac_scenario(answer_within_ms),
        dir,
        PHONE,
        5060,
        CALLED,
        1,
        Duration::from_millis(answer_within_ms as u64 + 15_000),
        &[],
    )
    .unwrap();
    (uas, uac)
}

/// Waits until the 100 and the 180 have been steered to the phone: the call rings.
fn wait_ringing(rport: &Rport, uac: &mut Sipp) {
    let t = Instant::now();
    loop {
        let steered = rport.counter("xdp", "response_steered").unwrap_or(0);
        if steered >= 2 {
            return;
        }
        assert!(
            uac.running() && t.elapsed() < Duration::from_secs(10),
            "the call did not ring (100 and 180 steered: {steered}); phone: {}",
            uac.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What an operator would look at when the answer is lost.
fn diagnosis(rport: &Rport) -> String {
    match rport.stats() {
        Ok(s) => {
            let x = &s["xdp"];
            format!(
                "sip_requests {} sip_responses {} response_steered {} response_no_binding {} \
                 response_source_mismatch {} steer_failed {} binding_new {} bindings_live {} \
                 bindings_evicted {}",
                x["sip_requests"],
                x["sip_responses"],
                x["response_steered"],
                x["response_no_binding"],
                x["response_source_mismatch"],
                x["steer_failed"],
                x["binding_new"],
                s["bindings_live"],
                s["bindings_evicted"]
            )
        }
        Err(e) => format!("(no stats: {e})"),
    }
}

/// Live bindings of transactions sent to the called party (the call's INVITE, until the
/// ACK and the BYE make theirs); None when the list cannot be read.
fn call_bindings(rport: &Rport) -> Option<usize> {
    let v = rport.all_bindings().ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter(|b| b["server"] == CALLED)
            .count(),
    )
}

fn assert_call_completed(r: SippResult, what: &str, diag: &str, phone_log: &str) {
    assert_eq!(
        (r.successful, r.failed),
        (1, 0),
        "{what}: the phone's call (INVITE/100/180/200/ACK/BYE/200) did not complete (successful, \
         failed); the 200 OK after {RING_MS} ms of ringing must reach the phone. Gateway: {diag}; \
         phone: {phone_log}"
    );
}

/// The phone's call to a legacy called party, 200 OK after 32 s, while other clients
/// push ~90,000 REGISTERs through the gateway: the LRU map evicts the INVITE's binding
/// (`bindings_evicted` > 0), and the 200 must reach the phone all the same, with valid
/// checksums where the gateway's egress computes them.
#[test]
fn long_ringing_call_is_answered_under_load() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    t.keep_udp_mappings(NAT_UDP_SECS).unwrap();
    // Checksums computed in software on the gateway's egress toward the NAT, as a NIC
    // would: a steered packet with a wrong checksum shows on the wire (see steer_csum.rs).
    sh(t.gw.cmd("ethtool").args(["-K", GW_OUTSIDE, "tx", "off"])).unwrap();
    let mut c = t.server.cmd(BENCH);
    c.args(["respond", LOAD_TARGET]);
    let _responder = Proc::spawn(c, "responder", &t.path("responder.log")).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t
        .rport(&pins, &["--sip-port", "5060", "--sip-port", "5080"])
        .unwrap();
    let started = Instant::now();
    let (mut uas, mut uac) = call(&t.phone, &t.server, &t.dir, RING_MS, ANSWER_WITHIN_MS);
    wait_ringing(&rport, &mut uac);
    let before = call_bindings(&rport);

    // Other clients behind the same NAT (the phone's namespace, other ports): each
    // REGISTER a new transaction, its 200 sent to its private sent-by, steered.
    let out = t.path("gen.json");
    let mut g = t.phone.cmd(BENCH);
    g.args([
        "gen",
        LOAD_TARGET,
        "-",
        &LOAD_RATE.to_string(),
        &LOAD_SECS.to_string(),
    ])
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(std::fs::File::create(t.path("gen.err")).unwrap());
    run_bounded(&mut g, Duration::from_secs(LOAD_SECS + 10)).unwrap();
    let load = GenReport::from_json(
        &serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap(),
    )
    .unwrap();
    let load_done = started.elapsed();
    // From here on the gateway carries only the call: the 200 OK, its retransmissions,
    // the ACK, the BYE and its 200.
    let cap = Capture::start(&t.nat, "nat-out").unwrap();
    let after = call_bindings(&rport);
    let load_diag = format!(
        "load: {} REGISTERs sent, {} answered, done {load_done:?} after the INVITE; bindings \
         to the called party before the load {before:?}, after {after:?}",
        load.sent, load.received
    );
    eprintln!("{load_diag}; gateway: {}", diagnosis(&rport));
    // The test's premises: more new transactions than the map holds, all of them before
    // the called party answers.
    assert!(
        load.sent > MAX_BINDINGS as u64,
        "the load must outnumber the map's {MAX_BINDINGS} entries; {load_diag}"
    );
    assert!(
        load_done < Duration::from_millis(RING_MS as u64 - 1_000),
        "the load must end before the answer (machine too busy?); {load_diag}"
    );

    let phone = uac.wait(Duration::from_secs(60));
    let diag = diagnosis(&rport);
    let phone = phone.unwrap_or_else(|e| panic!("phone: {e}; gateway: {diag}; {load_diag}"));
    // (a) The 200 OK reached the phone: the call completed.
    assert_call_completed(
        phone,
        "under load",
        &format!("{diag}; {load_diag}"),
        &uac.log(),
    );
    // (b) The phone's ACK reached the called party (its scenario does not go on without
    // it) and so did the BYE.
    let called = uas.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (called.successful, called.failed),
        (1, 0),
        "the called party's side of the call (ACK received, BYE answered)"
    );
    // (c) The LRU map did forget: the answer found its way without the binding.
    let s = rport.stats().unwrap();
    assert!(
        s["bindings_evicted"].as_u64().unwrap() > 0,
        "bindings_evicted must be > 0 after {} new transactions: {s}",
        load.sent
    );
    // (d) What was steered after the load (the 200 OK and its retransmissions, the BYE's
    // 200) arrived at the NAT with valid checksums.
    let (good, bad) = udp_checksums(&cap.frames(), 5060);
    assert!(
        good >= 2 && bad == 0,
        "answers of the called party at the NAT after the load, valid {good} and invalid {bad} \
         checksums (at least the 200 OK and the BYE's 200, none invalid)"
    );
}

/// The same call without load, but the gateway's daemon is SIGKILLed while it rings and
/// its BINDINGS map is lost (the pin removed, as by a flush or a reboot of bpffs) before
/// it is restarted: the restarted daemon has no binding of the INVITE, and the 200 must
/// reach the phone all the same.
#[test]
fn long_ringing_call_survives_a_restart() {
    if !tools() {
        return;
    }
    let t = NatTopology::new().unwrap();
    t.keep_udp_mappings(NAT_UDP_SECS).unwrap();
    let pins = Bpffs::new().unwrap();
    let mut rport = t.rport(&pins, &[]).unwrap();
    let (mut uas, mut uac) = call(&t.phone, &t.server, &t.dir, RING_MS, ANSWER_WITHIN_MS);
    wait_ringing(&rport, &mut uac);
    let pin = rport.bindings_pin();
    rport.kill().unwrap();
    std::fs::remove_file(&pin)
        .unwrap_or_else(|e| panic!("removing the BINDINGS pin {}: {e}", pin.display()));
    let rport = Rport::start(
        &t.gw,
        GW_OUTSIDE,
        GW_INSIDE,
        &pins,
        &t.path("rport-restarted.log"),
        &[],
    )
    .unwrap();
    // The premise: the restarted daemon remembers no transaction.
    let s = rport.stats().unwrap();
    assert_eq!(
        s["bindings_live"], 0,
        "a fresh BINDINGS map after the restart: {s}"
    );

    let phone = uac.wait(Duration::from_secs(60));
    let diag = diagnosis(&rport);
    let phone = phone.unwrap_or_else(|e| panic!("phone: {e}; gateway: {diag}"));
    assert_call_completed(
        phone,
        "after a restart that lost the bindings",
        &format!("{diag} (restarted daemon)"),
        &uac.log(),
    );
    let called = uas.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (called.successful, called.failed),
        (1, 0),
        "the called party's side of the call (ACK received, BYE answered)"
    );
}

/// Two gateways in front of one server, sharing one tag key: the call's requests go in
/// through gw1, every answer comes back through gw2, which saw no request and so has no
/// binding; gw2 must steer the answers to the phone's NAT mapping all the same.
#[test]
fn two_gateways_one_server() {
    if !tools() {
        return;
    }
    let t = TwoGatewayTopology::new().unwrap();
    let key = t.path("tag.key");
    write_tag_key(&key).unwrap();
    let key = key.to_str().unwrap();
    let (pins1, pins2) = (Bpffs::new().unwrap(), Bpffs::new().unwrap());
    let gw1 = Rport::start(
        &t.gw1,
        GW_OUTSIDE,
        GW_INSIDE,
        &pins1,
        &t.path("rport-gw1.log"),
        &["--tag-key", key],
    )
    .unwrap();
    let gw2 = Rport::start(
        &t.gw2,
        GW_OUTSIDE,
        GW_INSIDE,
        &pins2,
        &t.path("rport-gw2.log"),
        &["--tag-key", key],
    )
    .unwrap();
    let (mut uas, mut uac) = call(&t.phone, &t.server, &t.dir, 500, 5_000);
    let phone = uac.wait(Duration::from_secs(30));
    let diag = format!("gw1: {}; gw2: {}", diagnosis(&gw1), diagnosis(&gw2));
    let phone = phone.unwrap_or_else(|e| panic!("phone: {e}; {diag}"));
    assert_eq!(
        (phone.successful, phone.failed),
        (1, 0),
        "the phone's call through gw1, answered through gw2 (successful, failed); {diag}"
    );
    let called = uas.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (called.successful, called.failed),
        (1, 0),
        "the called party's side of the call (ACK received, BYE answered)"
    );
    let (s1, s2) = (gw1.stats().unwrap(), gw2.stats().unwrap());
    // The paths were the intended ones: requests (INVITE, ACK, BYE) through gw1 only,
    // responses (100, 180, 200, the BYE's 200) through gw2 only, steered there without
    // any binding of gw2's own.
    assert!(
        s1["xdp"]["sip_requests"].as_u64().unwrap() >= 3,
        "gw1 saw the requests: {s1}"
    );
    assert_eq!(s1["xdp"]["sip_responses"], 0, "gw1 saw no response: {s1}");
    assert_eq!(s2["xdp"]["sip_requests"], 0, "gw2 saw no request: {s2}");
    assert_eq!(s2["bindings_live"], 0, "gw2 has no binding: {s2}");
    assert!(
        s2["xdp"]["response_steered"].as_u64().unwrap() >= 4,
        "gw2 steered the 100, 180, 200 and the BYE's 200: {s2}"
    );
}
