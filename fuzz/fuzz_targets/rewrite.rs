//! The top-Via rewrite: no panic; an error leaves the message as it came; a change keeps
//! the grammar, the bytes outside the top Via value, the sent-by, branch and key (the XDP
//! scanner's too), and is idempotent (rport_userspace::sip::props::check_rewrite).
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rport_userspace::sip::{props, rewrite::Policy};

fuzz_target!(|data: &[u8]| {
    let (opt, m) = common::split(data);
    let policy = Policy {
        force_rport: opt & 0x80 != 0,
        tag: common::tag(opt),
    };
    if let Err(why) = props::check_rewrite(m, common::source(opt), policy) {
        panic!("{why}\n{:?}", String::from_utf8_lossy(m));
    }
});
