//! Generated SIP messages for the Via grammar tests: valid ones and near misses.
//!
//! Built from pieces that each hit a rule of the grammar (rport-ebpf/src/scan/mod.rs):
//! header-name case and compact forms, whitespace and folds wherever LWS may be, every
//! host class, ports at and past their limits, known and unknown parameters with token,
//! host and quoted values (escapes, folds, unterminated), junk, bare CRs, a second value
//! on the line, a second Via header, the Call-ID before or after the Via. Then, now and
//! then, one byte of the Via value is inserted, replaced or removed.
#![allow(dead_code)] // each test binary uses its own part

use std::net::{IpAddr, Ipv4Addr};

use proptest::{
    prelude::*,
    test_runner::{Config, FileFailurePersistence},
};
use rport_userspace::sip::rewrite::Observed;

/// The source every generated request comes from (some sent-by hosts are this address).
pub const SRC: Observed = Observed {
    addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
    port: 32415,
};

/// `cases` cases, failures kept in proptest-regressions/`name`.txt (the package's
/// directory, where `cargo test` runs integration tests).
pub fn config(cases: u32, name: &'static str) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(name))),
        ..Config::default()
    }
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(options)
}

const START: &[&str] = &[
    "INVITE sip:bob@example.com SIP/2.0",
    "REGISTER sip:198.51.100.10 SIP/2.0",
    "OPTIONS sip:x SIP/2.0",
    "SIP/2.0 200 OK",
];

const BEFORE: &[&str] = &[
    "Max-Forwards: 70",
    "To: <sip:bob@example.com>",
    "From: <sip:alice@example.com>;tag=1",
    "X-Via: SIP/2.0/UDP 10.9.9.9;rport",
    "Viaduct: SIP/2.0/UDP 10.9.9.8;rport",
    "Vi: SIP/2.0/UDP 10.9.9.7",
    "Call-ID: early@192.168.1.50",
    "Contact: <sip:a@192.168.1.50:5060>;expires=60",
    "Subject: folded\r\n over two lines",
];

// Each piece: a valid pool (drawn 6 times in 7) and a junk one.
const NAME: &[&str] = &["Via", "Via", "Via", "v", "VIA", "V", "vIa", "Via ", "v\t"];
const NAME_JUNK: &[&str] = &["Via\r", "Vi a", "X", "Via:x", "V\x00"];

const LEAD: &[&str] = &[" ", " ", " ", "", "  ", "\t", "\r\n ", " \r\n\t"];
const LEAD_JUNK: &[&str] = &["\r", " \r"];

const PROTO: &[&str] = &[
    "SIP/2.0/UDP",
    "SIP/2.0/UDP",
    "SIP/2.0/UDP",
    "SIP/2.0/TCP",
    "SIP / 2.0 / UDP",
    "sip/2.0/udp",
    "SIP/2.0\r\n /UDP",
];
const PROTO_JUNK: &[&str] = &[
    "SIP/2.0/",
    "SIP//UDP",
    "SIP/2.0/UDP/X",
    "SIP 2.0/UDP",
    "S\"P/2.0/UDP",
    "SIP/2.0/UD\rP",
];

const GAP: &[&str] = &[" ", " ", " ", " ", "  ", "\t", "\r\n "];
const GAP_JUNK: &[&str] = &["", "\r", " \r"];

const HOST: &[&str] = &[
    "192.168.1.50",
    "192.168.1.50",
    "203.0.113.1",
    "203.0.113.1",
    "010.0.0.1",
    "256.1.1.1",
    "1.2.3",
    "100.64.0.9",
    "172.16.5.4",
    "phone.invalid",
    "PBX-1.example.com.",
    "[2001:db8::1]",
    "[fd00::1]",
    "[FC00::2]",
    "[::ffff:203.0.113.1]",
];
const HOST_JUNK: &[&str] = &[
    "a_b.invalid",
    "[2001:db8::1",
    "[]",
    "[g::1]",
    "",
    "192.168.1.50\r",
    "1.2.3.4x!",
];

const PORT: &[&str] = &[
    "",
    "",
    "",
    ":5060",
    ":5060",
    ":0",
    ":65535",
    ":00080",
    " : 5062",
    ":\r\n 5060",
];
const PORT_JUNK: &[&str] = &[":65536", ":000080", ":", ":5060x", ":99999", ":50\r60"];

const SEP: &[&str] = &[
    ";", ";", ";", ";", " ;", "; ", " ; ", "\r\n ;", ";\r\n\t", ",",
];
const SEP_JUNK: &[&str] = &["", ";;", "\r;", "; ;"];

const PARAM: &[&str] = &[
    "rport",
    "rport",
    "rport",
    "rport=5",
    "rport=65535",
    "rport=65536",
    "rport=000080",
    "rport=abc",
    "rport=\"7\"",
    "RPORT",
    "rport = 9",
    "received=192.0.2.9",
    "received",
    "received=2001:db8::9",
    "Received=203.0.113.1",
    "branch=z9hG4bK-x",
    "branch=z9hG4bK-y",
    "branch=z9hG4bK",
    "branch=legacy1",
    "branch=legacy2",
    "branch=1234",
    "branch",
    "Branch=z9hG4bKq",
    "branch=z9hG4b",
    "lr",
    "x",
    "x=\"a;b,c\"",
    "x=\"esc\\\"q\"",
    "x=\"fold\r\n ed\"",
    "x=\"\\\\\"",
    "x=\"é\"",
    "maddr=[2001:db8::1]",
    "ttl=1",
    "x=1:2",
    "x = y",
    "x=\"\"",
    "longparametername=1",
];
const PARAM_JUNK: &[&str] = &[
    "rport=",
    "received=",
    "branch=",
    "branch=\"z9hG4bK\"",
    "x:y",
    "x=\"open",
    "x=\"bad\\\r\n x\"",
    "x=\"\x01\"",
    "x=a\"b",
    "x=\"a\"b",
    "a\x7fb",
];

const TAIL: &[&str] = &[
    "",
    "",
    "",
    " ",
    "\t",
    ", SIP/2.0/UDP 198.51.100.7;rport",
    " ,SIP/2.0/UDP x;branch=z9hG4bK-2",
    ",",
    "\r\n ",
];
const TAIL_JUNK: &[&str] = &[" junk", "\r", "x"];

const AFTER_VIA: &[&str] = &[
    "",
    "",
    "Via: SIP/2.0/TCP 198.51.100.8;rport;branch=z9hG4bK-2",
    "v: SIP/2.0/UDP 10.0.0.2;received=x",
];

const CALL_ID: &[&str] = &[
    "Call-ID: c1@192.168.1.50",
    "Call-ID: c1@192.168.1.50",
    "i: compact@h",
    "Call-ID:  spaced id \t",
    "call-id: a\r\n b",
    "CALL-ID: c\rr",
    "",
];

fn piece(
    valid: &'static [&'static str],
    junk: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => pick(valid), 1 => pick(junk)]
}

/// Bytes a mutation inserts or writes: separators, quotes, line-break parts, edges of the
/// character classes.
const MUTANT: &[u8] = b"\r\n\"\\;,:=/ \t[]x0_@\x00\x7f\x80\xff";

/// The top Via header's value (what follows the colon), and its name.
pub fn via_header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let params = prop::collection::vec((piece(SEP, SEP_JUNK), piece(PARAM, PARAM_JUNK)), 0..4);
    let value = (
        piece(LEAD, LEAD_JUNK),
        piece(PROTO, PROTO_JUNK),
        piece(GAP, GAP_JUNK),
        piece(HOST, HOST_JUNK),
        piece(PORT, PORT_JUNK),
        params,
        piece(TAIL, TAIL_JUNK),
    )
        .prop_map(|(lead, proto, gap, host, port, params, tail)| {
            let mut v = format!("{lead}{proto}{gap}{host}{port}");
            for (sep, p) in params {
                v.push_str(sep);
                v.push_str(p);
            }
            v.push_str(tail);
            v.into_bytes()
        });
    let mutation = prop::option::weighted(
        0.2,
        (
            any::<prop::sample::Index>(),
            prop::sample::select(MUTANT),
            0..3u8,
        ),
    );
    (piece(NAME, NAME_JUNK), value, mutation).prop_map(|(name, mut value, mutation)| {
        if let Some((at, byte, kind)) = mutation {
            let i = at.index(value.len() + 1);
            match kind {
                0 => value.insert(i, byte),
                1 if i < value.len() => value[i] = byte,
                _ if i < value.len() => {
                    value.remove(i);
                }
                _ => value.push(byte),
            }
        }
        (name.to_string(), value)
    })
}

/// A generated message, shown as an escaped byte string when a case fails.
#[derive(Clone)]
pub struct Msg(pub Vec<u8>);

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Msg {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A whole message: start line, some headers, the Via, maybe another Via, maybe a
/// Call-ID, the empty line and a body; LF or CRLF line ends.
pub fn message() -> impl Strategy<Value = Msg> {
    (
        pick(START),
        prop::bool::weighted(0.8),
        prop::collection::vec(pick(BEFORE), 0..3),
        via_header(),
        pick(AFTER_VIA),
        pick(CALL_ID),
    )
        .prop_map(|(start, crlf, before, (name, via), after, call_id)| {
            let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut m = Vec::with_capacity(512);
            let mut line = |l: &[u8]| {
                m.extend_from_slice(l);
                m.extend_from_slice(eol);
            };
            line(start.as_bytes());
            for h in before {
                line(h.as_bytes());
            }
            line(&[name.as_bytes(), b":", &via].concat());
            for h in [after, call_id, "CSeq: 1 INVITE", "Content-Length: 4"] {
                if !h.is_empty() {
                    line(h.as_bytes());
                }
            }
            line(b"");
            m.extend_from_slice(b"body");
            Msg(m)
        })
}
