//! Properties of the top-Via rewrite over generated messages (tests/common): it is
//! idempotent, never duplicates a parameter, changes no byte outside the top Via value,
//! and its output parses to the same Via with `received`/`rport` as observed, which the
//! XDP scanner (reading the response that echoes it) keys the same way; a malformed Via
//! is never touched.
mod common;

use std::net::IpAddr;

use proptest::prelude::*;
use rport_ebpf::scan::{Scan, found};
use rport_userspace::sip::{
    headers,
    rewrite::{Observed, Policy, RewriteError, Rewritten, rewrite_top_via},
    via::{self, TopVia, ViaError},
};

fn rewrite(m: &[u8], src: Observed, p: Policy) -> (Vec<u8>, Result<Rewritten, RewriteError>) {
    let mut b = m.to_vec();
    b.resize(m.len() + 256, 0);
    let r = rewrite_top_via(&mut b, m.len(), src, p);
    b.truncate(r.as_ref().map_or(m.len(), |r| r.len));
    (b, r)
}

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

/// The value of a parameter whose whole text (`;name=value`, SWS allowed) is `span`.
fn param_value(m: &[u8], span: std::ops::Range<usize>) -> &[u8] {
    let p = &m[span];
    let eq = p.iter().position(|&c| c == b'=').unwrap();
    p[eq + 1..].trim_ascii()
}

fn check(m: &[u8], src: Observed, policy: Policy) -> Result<(), TestCaseError> {
    let (out, r) = rewrite(m, src, policy);
    let parsed = via::parse_top_via(m);
    let r = match r {
        Err(e) => {
            // Whatever the reason, the message goes on as it came.
            prop_assert_eq!(&out[..], m);
            let want = match parsed {
                Err(ViaError::NotSip) => RewriteError::NotSip,
                Err(ViaError::NoVia) => RewriteError::NoVia,
                Err(ViaError::Malformed) => RewriteError::MalformedVia,
                // Two `received`: a good Via, but not one to rewrite.
                Ok(v) if v.received_twice => RewriteError::MalformedVia,
                Ok(_) => RewriteError::NoRoom,
            };
            prop_assert_eq!(e, want);
            return Ok(());
        }
        Ok(r) => r,
    };
    prop_assert_eq!(r.changed, out != m);
    // The Call-ID it reports is the result's.
    prop_assert_eq!(r.call_id.clone().map(|c| &out[c]), headers::call_id(&out));
    if !r.changed {
        return Ok(());
    }
    let before: TopVia = parsed.expect("changed, so the Via parsed");
    // The output follows the grammar (so no parameter is there twice) ...
    let after = via::parse_top_via(&out);
    prop_assert!(
        after.is_ok(),
        "{:?}: {}",
        after,
        String::from_utf8_lossy(&out)
    );
    let after = after.unwrap();
    // ... and changed nothing outside the top Via value.
    prop_assert_eq!(after.value.start, before.value.start);
    prop_assert_eq!(&out[..after.value.start], &m[..before.value.start]);
    prop_assert_eq!(&out[after.value.end..], &m[before.value.end..]);
    // The same sent-by and branch, so the same key ...
    prop_assert_eq!(&out[after.host.clone()], &m[before.host.clone()]);
    prop_assert_eq!(after.host_kind, before.host_kind);
    prop_assert_eq!(after.port, before.port);
    prop_assert_eq!(
        after.branch.clone().map(|b| &out[b]),
        before.branch.clone().map(|b| &m[b])
    );
    prop_assert_eq!(via::transaction_key(&out), via::transaction_key(m));
    // ... on the XDP side too: the response echoes this Via, and must find the binding
    // the request was recorded under.
    let (s_req, s_out) = (Scan::run_chunked(m), Scan::run_chunked(&out));
    prop_assert_eq!(s_out.found & found::MALFORMED, 0);
    prop_assert_eq!(s_out.key(), s_req.key());
    // received and rport as observed.
    let received = after.received.clone().expect("received set");
    let addr = src.addr.to_string();
    prop_assert_eq!(param_value(&out, received), addr.as_bytes());
    let wants_rport = before.rport.is_some() || policy.force_rport;
    prop_assert_eq!(r.rport_set, wants_rport);
    if wants_rport {
        prop_assert_eq!(after.rport.map(|r| r.port), Some(Some(src.port)));
    } else {
        // No rport asked for and none written.
        prop_assert!(after.rport.is_none());
    }
    // Idempotent: a second pass finds nothing to do.
    let (twice, r2) = rewrite(&out, src, policy);
    prop_assert_eq!(&twice, &out);
    prop_assert!(!r2.unwrap().changed);
    Ok(())
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
