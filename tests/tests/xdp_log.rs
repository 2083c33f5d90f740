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
