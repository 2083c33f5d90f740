//! The XDP program's debug events (aya-log): there at `--xdp-log debug`, absent at the
//! default level (`off`) and at `warn`.
use std::sync::{Arc, Mutex};

use rport_tests::{packets::*, xdp::*};
use rport_userspace::datapath::loader::XdpLog;

/// Collects the records as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

fn records(level: XdpLog) -> Vec<String> {
    let _ns = aya::test_helpers::NetNsGuard::new().unwrap();
    let mut h = XdpHarness::load_with_log(level).unwrap();
    let cap = Capture::default();
    let mut logger = h.logger(cap.clone()).unwrap();
    // A REGISTER whose top Via has no host: malformed.
    let bad = udp4(
        NAT_V4,
        40000,
        SERVER_V4,
        5060,
        &register("Via: SIP/2.0/UDP ;branch=z9hG4bK-x;rport"),
    );
    let r = h.run(&bad).unwrap();
    assert_eq!(r.verdict, XDP_PASS);
    logger.flush();
    cap.0.lock().unwrap().clone()
}

#[test]
fn debug_events_only_when_asked_for() {
    if !can_load_bpf("debug_events_only_when_asked_for") {
        return;
    }
    let on = records(XdpLog::Debug);
    assert_eq!(on.len(), 1, "{on:?}");
    assert!(
        on[0].contains("DEBUG malformed top Via from ::ffff:203.0.113.1:40000"),
        "{on:?}"
    );
    assert_eq!(records(XdpLog::Warn), Vec::<String>::new());
    assert_eq!(records(XdpLog::Off), Vec::<String>::new());
}

/// A flood of bad packets at `--xdp-log debug`: the daemon's log bridge
/// (`logging::XdpLog`) lets at most `PER_SECOND` lines a second through per call site of
/// the program, and the first line of the next second says how many it held back; no
/// record is lost from the count.
#[test]
fn a_flood_of_bad_packets_logs_a_bounded_number_of_lines() {
    use rport_userspace::observe::logging::{PER_SECOND, XdpLog as Bridge};
    if !can_load_bpf("a_flood_of_bad_packets_logs_a_bounded_number_of_lines") {
        return;
    }
    const FLOOD: usize = 2000;
    let _ns = aya::test_helpers::NetNsGuard::new().unwrap();
    let mut h = XdpHarness::load_with_log(XdpLog::Debug).unwrap();
    let cap = Capture::default();
    let mut logger = h.logger(Bridge::new(cap.clone())).unwrap();
    let bad = udp4(
        NAT_V4,
        40000,
        SERVER_V4,
        5060,
        &register("Via: SIP/2.0/UDP ;branch=z9hG4bK-x;rport"),
    );
    let t0 = std::time::Instant::now();
    for i in 0..FLOOD {
        assert_eq!(h.run(&bad).unwrap().verdict, XDP_PASS);
        // Drained as the daemon's log thread does, before the buffer could fill.
        if i % 16 == 15 {
            logger.flush();
        }
    }
    logger.flush();
    let secs = t0.elapsed().as_secs() as usize;
    let flood = cap.0.lock().unwrap().clone();
    assert!(!flood.is_empty());
    assert!(
        flood.len() <= PER_SECOND as usize * (secs + 1),
        "{} lines in {secs} s: {:?}",
        flood.len(),
        &flood[..5]
    );
    // The next second: one more, with the count of the suppressed ones.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    h.run(&bad).unwrap();
    logger.flush();
    let all = cap.0.lock().unwrap().clone();
    assert_eq!(all.len(), flood.len() + 1, "{:?}", &all[flood.len()..]);
    let suppressed: usize = all
        .iter()
        .filter_map(|l| {
            let (_, n) = l.rsplit_once(" (")?;
            n.strip_suffix(" suppressed)")?.parse::<usize>().ok()
        })
        .sum();
    assert!(
        all.last().unwrap().ends_with(" suppressed)"),
        "{}",
        all.last().unwrap()
    );
    // Every record is either a line or in a suppressed count.
    assert_eq!(all.len() + suppressed, FLOOD + 1, "{all:?}");
}
