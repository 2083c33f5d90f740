//! rport under sustained load through the real NAT: every request answered, and no AF_XDP
//! frame lost on the way (a frame not handed back to the fill ring is gone for good, and
//! once all 2,048 are gone the socket receives nothing: a slow death no short test shows).
use std::time::Duration;

use rport_tests::{
    load::GenReport,
    ns::{Bpffs, Proc, can_run},
    sip::run_bounded,
    topo::NatTopology,
};

/// The load generator and legacy responder of `cargo xtask bench` (rport_tests::load).
const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn load(t: &NatTopology, rate: u64, secs: f64) -> GenReport {
    let out = t.path("gen.json");
    let mut c = t.phone.cmd(BENCH);
    c.args([
        "gen",
        "198.51.100.10:5060",
        "192.168.1.50:5060",
        &rate.to_string(),
        &secs.to_string(),
    ])
    .stdout(std::fs::File::create(&out).unwrap());
    run_bounded(&mut c, Duration::from_secs(60)).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    GenReport::from_json(&v).unwrap()
}

#[test]
fn sustained_load_every_frame_comes_back() {
    if !can_run("load_path", &["ip", "nft"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let mut c = t.server.cmd(BENCH);
    c.args(["respond", "198.51.100.10:5060"]);
    let _responder = Proc::spawn(c, "responder", &t.path("responder.log")).unwrap();
    let pins = Bpffs::new().unwrap();
    let rport = t.rport(&pins, &[]).unwrap();
    // Far more requests than UMEM frames (2,048), in bursts of 64 (sendmmsg).
    let mut total = 0;
    for _ in 0..3 {
        let r = load(&t, 10_000, 1.0);
        total += r.sent;
        // A loaded two-core machine may drop a few in the kernel's queues; a leak loses
        // everything once the frames are gone, which 30,000 requests through 2,048
        // frames would show.
        assert!(
            r.received as f64 >= 0.99 * r.sent as f64,
            "{} of {} answered",
            r.received,
            r.sent
        );
    }
    let s = rport.stats().unwrap();
    let d = &s["daemon"];
    assert_eq!(d["fill_starved"], 0, "{d}");
    assert_eq!(d["bad_frames"], 0, "{d}");
    assert_eq!(d["send_errors"], 0, "{d}");
    // What the kernel dropped before rport saw it (rx ring full) is counted, not hidden:
    // every request the generator sent and rport did not forward is one of those.
    let dropped = d["xsk_rx_dropped"].as_u64().unwrap();
    assert!(d["xsk_ring_full"].as_u64().unwrap() <= dropped, "{d}");
    // Every frame the XDP program redirected was received, rewritten and forwarded.
    let to_userspace = s["xdp"]["to_userspace"].as_u64().unwrap();
    assert!(to_userspace >= total, "{s}");
    assert_eq!(d["rx_frames"], to_userspace, "{s}");
    assert_eq!(d["forwarded"], to_userspace, "{s}");
}
