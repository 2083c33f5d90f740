//! `rport rewrite` end to end, in process (rport_userspace::sip::rewrite::rewrite_message):
//! only a message that is not SIP is refused; the key and the Via rewrite's top Via are
//! kept; a second pass changes nothing (rport_userspace::sip::props::check_message).
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rport_common::tag::TagBuf;
use rport_userspace::sip::props;

fuzz_target!(|data: &[u8]| {
    let (opt, m) = common::split(data);
    let tag = common::tag(opt).unwrap_or(TagBuf::from_text(b"0a1b"));
    if let Err(why) = props::check_message(m, common::source(opt), opt & 0x80 != 0, tag) {
        panic!("{why}\n{:?}", String::from_utf8_lossy(m));
    }
});
