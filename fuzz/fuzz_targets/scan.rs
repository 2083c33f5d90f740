//! The XDP scanner and the header framing: their own invariants on any bytes (offsets in
//! range, whatever the scan looks for), and the scanner's agreement with the rewrite's Via
//! parser and with what the rewrite does (rport_userspace::sip::props: check_scan,
//! check_headers, agree, decisions_agree; the differential test is tests/via_grammar.rs).
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rport_common::SCAN_WINDOW;
use rport_userspace::sip::props;

fuzz_target!(|data: &[u8]| {
    let (opt, m) = common::split(data);
    let fail = |why: String| -> ! { panic!("{why}\n{:?}", String::from_utf8_lossy(m)) };
    props::check_scan(m).unwrap_or_else(|w| fail(w));
    props::check_headers(m).unwrap_or_else(|w| fail(w));
    // The scanner reads the first SCAN_WINDOW bytes; the comparison is of those.
    if m.len() <= SCAN_WINDOW as usize {
        let verdict = props::agree(m).unwrap_or_else(|w| fail(w));
        props::decisions_agree(m, verdict, common::source(opt)).unwrap_or_else(|w| fail(w));
    }
});
