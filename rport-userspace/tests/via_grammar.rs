//! One Via grammar, two implementations: the XDP scanner (`rport_ebpf::scan`, run as the
//! XDP program's `bpf_loop` runs it, by `Scan::run_chunked`) and the rewrite's parser
//! (`rport_userspace::sip::via`). Where they disagree, XDP passes unrewritten a request the
//! rewrite would change, or hands over one the rewrite then edits in a way the response's
//! scan no longer matches. Compared on every field the grammar defines (see
//! rport-ebpf/src/scan/mod.rs): top Via found or not, malformed or not, the value's range,
//! the sent-by (host class, IPv4 literal, port), rport empty or valued, received, branch,
//! and so the transaction key.
mod common;

use proptest::prelude::*;
use rport_common::flags;
use rport_userspace::sip::{
    props::{self, Verdict},
    via,
};

/// The comparison (rport_userspace::sip::props, shared with the fuzzer) as a test case.
fn agree(m: &[u8]) -> Result<Verdict, TestCaseError> {
    props::agree(m).map_err(TestCaseError::fail)
}

fn decisions_agree(m: &[u8], verdict: Verdict) -> Result<(), TestCaseError> {
    props::decisions_agree(m, verdict, common::SRC).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(common::config(4000, "proptest-regressions/via_grammar.txt"))]

    #[test]
    fn scanner_and_parser_agree(m in common::message()) {
        let verdict = agree(&m)?;
        decisions_agree(&m, verdict)?;
    }

    /// Any bytes at all after a valid start (the scanner's random sweeps, with the parser).
    #[test]
    fn agree_on_any_header_bytes(tail in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut m = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP ".to_vec();
        m.extend_from_slice(&tail);
        m.extend_from_slice(b"\r\n\r\n");
        agree(&m)?;
    }
}

/// The generator reaches every verdict, and inside the good ones the parts that matter:
/// a test that compares nothing cannot fail.
#[test]
fn generated_messages_cover_the_grammar() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = common::message();
    let mut seen = std::collections::HashMap::<&str, u32>::new();
    let n = 3000;
    for _ in 0..n {
        let m = strategy.new_tree(&mut runner).unwrap().current();
        let verdict = agree(&m).unwrap();
        *seen.entry(format!("{verdict:?}").leak()).or_default() += 1;
        if verdict != Verdict::Ok {
            continue;
        }
        let v = via::parse_top_via(&m).unwrap();
        let f = v.flags(&m);
        for (what, yes) in [
            ("rport empty", f & flags::RPORT_EMPTY != 0),
            ("rport valued", f & flags::RPORT_VALUE != 0),
            ("received", f & flags::RECEIVED != 0),
            ("cookie", f & flags::MAGIC_COOKIE != 0),
            (
                "legacy branch",
                v.branch.is_some() && f & flags::MAGIC_COOKIE == 0,
            ),
            ("ipv6", f & flags::SENT_BY_V6 != 0),
            ("name", f & flags::SENT_BY_NAME != 0),
            ("private", f & flags::SENT_BY_PRIVATE != 0),
            ("port", v.port.is_some()),
            ("fold", m[v.value.clone()].contains(&b'\n')),
            ("quoted", m[v.value.clone()].contains(&b'"')),
            (
                "second value",
                m[v.value.end..].starts_with(b",") || m[v.value.end..].starts_with(b" ,"),
            ),
        ] {
            if yes {
                *seen.entry(what).or_default() += 1;
            }
        }
    }
    let at_least = |what: &str, k: u32| {
        let got = seen.get(what).copied().unwrap_or(0);
        assert!(got >= k, "{what}: {got} of {n} ({seen:?})");
    };
    at_least("NoVia", n / 50);
    at_least("Malformed", n / 5);
    at_least("Ok", n / 5);
    for what in [
        "rport empty",
        "rport valued",
        "received",
        "cookie",
        "legacy branch",
        "ipv6",
        "name",
        "private",
        "port",
        "fold",
        "quoted",
        "second value",
    ] {
        at_least(what, 10);
    }
}

/// The grammar's decisions, one line each, checked on both sides.
#[test]
fn table() {
    use Verdict::*;
    let cases: &[(&str, Verdict)] = &[
        (
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport",
            Ok,
        ),
        ("v:SIP/2.0/UDP h", Ok),
        ("Via: sip / 2.0 / udp\r\n h ; rport = 7 ;x=\"a;b,c\"", Ok),
        (
            "Via: SIP/2.0/UDP [2001:db8::1]:5060;maddr=[::1];received=2001:db8::9",
            Ok,
        ),
        ("Via: SIP/2.0/UDP 010.0.0.1;rport=\"7\"", Ok),
        ("Via: SIP/2.0/UDP h;x=\"\\\"\\\\\";lr , SIP/2.0/UDP ;;;", Ok),
        ("Via\r: SIP/2.0/UDP h", NoVia),
        ("Vi a: SIP/2.0/UDP h", NoVia),
        ("Via:", Malformed),
        ("Via: SIP/2.0/UDP[::1]", Malformed),
        ("Via: SIP/2.0/UDP a_b.invalid", Malformed),
        ("Via: SIP/2.0/UDP h:000080", Malformed),
        ("Via: SIP/2.0/UDP h;rport=", Malformed),
        ("Via: SIP/2.0/UDP h;branch=\"z9hG4bK1\"", Malformed),
        ("Via: SIP/2.0/UDP h;rport;RPORT=1", Malformed),
        ("Via: SIP/2.0/UDP h;x=\"a\\\r\n b\"", Malformed),
        ("Via: SIP/2.0/UDP h;", Malformed),
        // The fuzz campaign's cases (as the client sent them).
        (
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport;x:",
            Malformed,
        ),
        (
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;x=\"open",
            Malformed,
        ),
        ("Via: SIP/2.0/UDP 192.168.1.50:5060;x:y;rport", Malformed),
        (
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;b2.168.1.50:5060;rport",
            Malformed,
        ),
        ("Via: SIP/2.0/UDP 192.168.1.50:5060x", Malformed),
        (
            "Via: SIP/2.0/UDP 192.168.1.50\r:5060;branch=legacy;rport",
            Malformed,
        ),
    ];
    for &(via, want) in cases {
        let m = format!("INVITE sip:x SIP/2.0\r\n{via}\r\nCall-ID: c\r\n\r\n");
        let got = agree(m.as_bytes()).unwrap_or_else(|e| panic!("{via:?}: {e}"));
        assert_eq!(got, want, "{via:?}");
        decisions_agree(m.as_bytes(), got).unwrap_or_else(|e| panic!("{via:?}: {e}"));
    }
}
