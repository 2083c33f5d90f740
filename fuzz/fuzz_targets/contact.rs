//! The Contact alias: no panic; an error leaves the buffer (room included) as it was; a
//! second run changes nothing; nothing outside the Contact values moves; no client's rptag
//! survives (rport_userspace::sip::props::check_contacts).
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rport_userspace::sip::{contact::ContactPolicy, props};

fuzz_target!(|data: &[u8]| {
    let (opt, m) = common::split(data);
    let policy = ContactPolicy {
        tag: common::tag(opt),
    };
    if let Err(why) = props::check_contacts(m, common::source(opt), policy) {
        panic!("{why}\n{:?}", String::from_utf8_lossy(m));
    }
});
