//! Properties of the top-Via rewrite over generated messages (tests/common): it is
//! idempotent, never duplicates a parameter, changes no byte outside the top Via value,
//! and its output parses to the same Via with `received`/`rport` as observed, which the
//! XDP scanner (reading the response that echoes it) keys the same way; a malformed Via
//! is never touched.
mod common;

use std::net::IpAddr;

use proptest::prelude::*;
use rport_userspace::sip::{
    props::{self, rewrite},
    rewrite::{Observed, Policy},
};

fn source() -> impl Strategy<Value = Observed> {
    prop_oneof![
        Just(common::SRC),
        Just(Observed {
            addr: "2001:db8:1::60".parse().unwrap(),
            port: 5062
        }),
        Just(Observed {
            addr: "192.168.1.50".parse().unwrap(),
            port: 5060
        }),
    ]
}

/// The properties (rport_userspace::sip::props, shared with the fuzzer) as a test case.
fn check(m: &[u8], src: Observed, policy: Policy) -> Result<(), TestCaseError> {
    props::check_rewrite(m, src, policy).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(common::config(3000, "proptest-regressions/rewrite_props.txt"))]

    #[test]
    fn rewrite_properties(m in common::message(), src in source(), force in any::<bool>()) {
        check(&m, src, Policy { force_rport: force, tag: None })?;
    }
}

/// A sent-by that is the source, no rport: byte for byte. A sent-by that is another
/// address written differently (`010.0.0.1`, `[2001:db8:1:0::60]`) is compared as one.
#[test]
fn sent_by_is_compared_as_an_address() {
    for (host, src, changed) in [
        ("203.0.113.1", "203.0.113.1", false),
        ("203.000.113.001", "203.0.113.1", false),
        ("203.0.113.2", "203.0.113.1", true),
        ("[2001:db8:1:0::60]", "2001:db8:1::60", false),
        ("[::ffff:203.0.113.1]", "203.0.113.1", false),
        ("host.invalid", "203.0.113.1", true),
    ] {
        let m = format!(
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch=z9hG4bK-1\r\nCall-ID: c\r\n\r\n"
        );
        let src = Observed {
            addr: src.parse::<IpAddr>().unwrap(),
            port: 5060,
        };
        let (_, r) = rewrite(m.as_bytes(), src, Policy::default());
        assert_eq!(r.unwrap().changed, changed, "{host}");
    }
}

/// Found by the fuzzer (fuzz/corpus/rewrite/seed-found-706a2924): removing a client's
/// `rptag` (here valueless, the last parameter) took `;` onwards but left the whitespace
/// before that `;` trailing the value, outside of it once the value ended earlier, so
/// "bytes after the value unchanged" failed. The removal now takes that whitespace too.
/// The same with a fold before the `;` (fuzz/corpus/rewrite/seed-found-fd644025): the
/// line break of the fold is whitespace too, and goes with the removed tag.
#[test]
fn fuzz_finding_a_fold_before_a_removed_tag() {
    let m = b"REGISTE sip:b158.19.100n10 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.11.9\r\n ;rptag=                    r   \r\n\r\n";
    let src = Observed {
        addr: "203.0.113.11".parse().unwrap(),
        port: 5060,
    };
    check(m, src, Policy::default()).unwrap();
}

#[test]
fn fuzz_finding_bytes_after_the_via_value() {
    let m = b"ZESTEZ s:198.51.,10z.10 SIP/2.0\r\nVia: SIP/2.0/UP 192.1;received;rp\t\t\t\t\t\t\t;\t\t\t\t\tRPTAg\r\nv:\r\n\r;expires=60 \n\n";
    let src = Observed {
        addr: "2001:db8:1::60".parse().unwrap(),
        port: 5062,
    };
    check(m, src, Policy::default()).unwrap();
}
