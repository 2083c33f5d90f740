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
use rport_common::{SCAN_WINDOW, flags, hash};
use rport_ebpf::scan::{Scan, found};
use rport_userspace::sip::{
    headers,
    rewrite::{Policy, rewrite_top_via},
    via::{self, HostKind, ViaError},
};

/// What both sides concluded about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not SIP to the rewrite (bad start line, no end of headers): not compared.
    NotSip,
    NoVia,
    Malformed,
    Ok,
}

/// Checks that the scanner and the parser agree on `m`; returns their common verdict.
fn agree(m: &[u8]) -> Result<Verdict, TestCaseError> {
    assert!(
        m.len() <= SCAN_WINDOW as usize,
        "keep messages in the window"
    );
    let s = Scan::run_chunked(m);
    // The XDP loop's dispatch is the byte-step machine.
    prop_assert_eq!(s, Scan::run(m), "run_chunked and run disagree");
    let Some(h) = headers::frame(m) else {
        return Ok(Verdict::NotSip);
    };
    let v = match via::parse_top_via_in(m, &h) {
        Err(ViaError::NotSip) => unreachable!("framed"),
        Err(ViaError::NoVia) => {
            prop_assert_eq!(s.found & found::VIA, 0, "the scanner found a Via: {:?}", s);
            return Ok(Verdict::NoVia);
        }
        Err(ViaError::Malformed) => {
            prop_assert_eq!(
                s.found & (found::VIA | found::MALFORMED),
                found::VIA | found::MALFORMED,
                "the scanner took the Via for a good one: {:?}",
                s
            );
            return Ok(Verdict::Malformed);
        }
        Ok(v) => v,
    };
    prop_assert_eq!(
        s.found & (found::VIA | found::VIA_DONE | found::MALFORMED),
        found::VIA | found::VIA_DONE,
        "the scanner found no good Via: {:?}",
        s
    );
    prop_assert_eq!(
        (s.via_start as usize, s.via_end as usize),
        (v.value.start, v.value.end),
        "where the top Via value is"
    );
    prop_assert_eq!(s.flags, v.flags(m), "flags: scanner {:#x}", s.flags);
    prop_assert_eq!(s.host_len as usize, v.host.len());
    prop_assert_eq!(
        s.host_hash,
        hash::bytes(hash::FNV_OFFSET, &m[v.host.clone()])
    );
    prop_assert_eq!(s.port, v.port.unwrap_or(0) as u32);
    let v4 = match v.host_kind {
        HostKind::V4(a) => Some(a),
        _ => None,
    };
    prop_assert_eq!(s.sent_by_v4(), v4);
    prop_assert_eq!(
        s.rport,
        v.rport.as_ref().and_then(|r| r.port).unwrap_or(0) as u32
    );
    prop_assert_eq!(s.found & found::BRANCH != 0, v.branch.is_some());
    let branch = v.branch.clone().map(|r| &m[r]).unwrap_or_default();
    prop_assert_eq!(s.branch_hash, hash::bytes(hash::FNV_OFFSET, branch));
    prop_assert_eq!(Some(s.key()), via::transaction_key(m), "transaction key");
    Ok(Verdict::Ok)
}

/// What the XDP program's choice rests on agrees with what the rewrite does: a request it
/// would pass on without handing it over (a good Via, no rport, the sent-by an IPv4
/// literal that is the source) is one the rewrite leaves alone; a malformed one is never
/// edited.
fn decisions_agree(m: &[u8], verdict: Verdict) -> Result<(), TestCaseError> {
    if m.starts_with(b"SIP/2.0 ") {
        return Ok(());
    }
    let mut b = m.to_vec();
    b.resize(m.len() + 256, 0);
    let r = rewrite_top_via(&mut b, m.len(), common::SRC, Policy::default());
    if verdict == Verdict::Malformed {
        prop_assert!(r.is_err());
        prop_assert_eq!(&b[..m.len()], m);
    }
    let s = Scan::run_chunked(m);
    let xdp_hands_over = s.flags & (flags::RPORT_EMPTY | flags::RPORT_VALUE) != 0
        || s.sent_by_v4() != Some([203, 0, 113, 1]);
    if r.is_ok_and(|r| r.changed) {
        prop_assert_eq!(verdict, Verdict::Ok);
        prop_assert!(
            xdp_hands_over,
            "XDP would pass a request the rewrite changes"
        );
    }
    Ok(())
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
