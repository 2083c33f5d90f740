//! The XDP contract as a table (in the style of Katran's lib/testing fixtures): each row is
//! a crafted frame, the role of the interface it arrives on, the expected verdict, the
//! exact counter deltas, the binding it must leave (or none) and the expected output frame.
//! Every row runs through the real program in the kernel (BPF_PROG_TEST_RUN).
use etherparse::{SlicedPacket, TransportSlice};
use rport_common::{Binding, Counter, flags as F, hash::transaction_key, role};
use rport_tests::{packets::*, xdp::*};

use Counter::*;

const V: &str = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport";
/// Counters of a REGISTER with `;rport` and a private sent-by, from a NAT, with no daemon.
const REQ_NAT: &[Counter] = &[
    Packets,
    SipRequests,
    RportEmpty,
    SentByDiffers,
    SourcePortDiffers,
    SentByPrivate,
    BindingRecorded,
    UserspaceUnavailable,
];
const NAT_FLAGS: u32 =
    F::RPORT_EMPTY | F::SENT_BY_PRIVATE | F::MAGIC_COOKIE | F::SENT_BY_DIFFERS | F::PORT_DIFFERS;

enum Out {
    /// The frame leaves exactly as it came.
    Same,
    /// Destination rewritten to the binding (address, port), checksums valid.
    Steered([u8; 4], u16),
}

struct Expect {
    key: u64,
    src: [u8; 16],
    sport: u16,
    flags: u32,
    vlan: (u16, u16),
    requests: u32,
}

struct Case {
    name: String,
    role: u32,
    /// Frames run before (as requests from the outside), e.g. to create a binding.
    setup: Vec<Vec<u8>>,
    frame: Vec<u8>,
    verdict: u32,
    counters: Vec<Counter>,
    binding: Option<Expect>,
    out: Out,
}

fn v4m(a: [u8; 4]) -> [u8; 16] {
    rport_common::addr_to_16(std::net::Ipv4Addr::from(a).into())
}

fn key(branch: &str) -> u64 {
    transaction_key(branch.as_bytes(), b"", 0, b"")
}

fn nat_req(via: &str) -> Vec<u8> {
    udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via))
}

fn bind(branch: &str, flags: u32) -> Option<Expect> {
    Some(Expect {
        key: key(branch),
        src: v4m(NAT_V4),
        sport: NAT_PORT,
        flags,
        vlan: (0, 0),
        requests: 1,
    })
}

fn case(name: &str, frame: Vec<u8>, counters: &[Counter], binding: Option<Expect>) -> Case {
    Case {
        name: name.into(),
        role: role::OUTSIDE,
        setup: vec![],
        frame,
        verdict: XDP_PASS,
        counters: counters.to_vec(),
        binding,
        out: Out::Same,
    }
}

fn with(mut c: &[Counter], extra: &[Counter]) -> Vec<Counter> {
    let mut v = c.to_vec();
    v.extend_from_slice(extra);
    c = &[];
    let _ = c;
    v
}

fn table() -> Vec<Case> {
    let mut t = vec![
        case("REGISTER over IPv4 with ;rport and a private sent-by", nat_req(V), REQ_NAT, bind("z9hG4bK-1", NAT_FLAGS)),
        case(
            "compact form `v:` in lower case",
            nat_req("v: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-2;rport"),
            REQ_NAT,
            bind("z9hG4bK-2", NAT_FLAGS),
        ),
        case(
            "upper-case name, whitespace before the colon and around / : ; =",
            nat_req("VIA  : SIP / 2.0 / UDP 192.168.1.50 : 5060 ; branch = z9hG4bK-3 ; RPORT"),
            REQ_NAT,
            bind("z9hG4bK-3", NAT_FLAGS),
        ),
        case(
            "Via folded over three lines",
            nat_req("Via: SIP/2.0/UDP\r\n 192.168.1.50:5060\r\n\t;branch=z9hG4bK-4;rport"),
            REQ_NAT,
            bind("z9hG4bK-4", NAT_FLAGS),
        ),
        case(
            "two Via values on one line: only the first counts (no rport there)",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-5, SIP/2.0/UDP 198.51.100.99;branch=z9hG4bK-x;rport"),
            &[Packets, SipRequests, NoRport, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, UserspaceUnavailable],
            bind("z9hG4bK-5", NAT_FLAGS & !F::RPORT_EMPTY),
        ),
        case(
            "sent-by without a port (5060 implied)",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-6;rport"),
            REQ_NAT,
            bind("z9hG4bK-6", NAT_FLAGS),
        ),
        case(
            "sent-by is the source, no rport: nothing to do",
            udp4(NAT_V4, 5060, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-7")),
            &[Packets, SipRequests, NoRport, BindingRecorded, RequestUnchanged],
            Some(Expect { key: key("z9hG4bK-7"), src: v4m(NAT_V4), sport: 5060, flags: F::MAGIC_COOKIE, vlan: (0, 0), requests: 1 }),
        ),
        case(
            "sent-by is the source, with rport: the rport still gets its value",
            udp4(NAT_V4, 5060, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-8;rport")),
            &[Packets, SipRequests, RportEmpty, BindingRecorded, UserspaceUnavailable],
            Some(Expect { key: key("z9hG4bK-8"), src: v4m(NAT_V4), sport: 5060, flags: F::MAGIC_COOKIE | F::RPORT_EMPTY, vlan: (0, 0), requests: 1 }),
        ),
        case(
            "received and rport=N already present",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;received=203.0.113.1;rport=32415;branch=z9hG4bK-9"),
            &[Packets, SipRequests, RportWithValue, ReceivedPresent, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, UserspaceUnavailable],
            bind("z9hG4bK-9", (NAT_FLAGS & !F::RPORT_EMPTY) | F::RPORT_VALUE | F::RECEIVED),
        ),
        case(
            "carrier-grade NAT (RFC 6598) sent-by",
            nat_req("Via: SIP/2.0/UDP 100.64.1.2:5060;branch=z9hG4bK-10;rport"),
            &[Packets, SipRequests, RportEmpty, SentByDiffers, SourcePortDiffers, SentByCgnat, BindingRecorded, UserspaceUnavailable],
            bind("z9hG4bK-10", (NAT_FLAGS & !F::SENT_BY_PRIVATE) | F::SENT_BY_CGNAT),
        ),
        case(
            "domain-name sent-by",
            nat_req("Via: SIP/2.0/UDP phone.invalid:5060;branch=z9hG4bK-11;rport"),
            &[Packets, SipRequests, RportEmpty, SentByDiffers, SourcePortDiffers, SentByName, BindingRecorded, UserspaceUnavailable],
            bind("z9hG4bK-11", (NAT_FLAGS & !F::SENT_BY_PRIVATE) | F::SENT_BY_NAME),
        ),
        case(
            "RFC 2543 branch (no magic cookie): the key adds sent-by and Call-ID",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=1234;rport"),
            REQ_NAT,
            Some(Expect {
                key: transaction_key(b"1234", b"192.168.1.50", 5060, b"call-1@192.168.1.50"),
                src: v4m(NAT_V4),
                sport: NAT_PORT,
                flags: NAT_FLAGS & !F::MAGIC_COOKIE,
                vlan: (0, 0),
                requests: 1,
            }),
        ),
        case(
            "IPv6 with a bracketed sent-by",
            udp6(CLIENT_V6, 5060, SERVER_V6, 5060, &register("Via: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-13;rport")),
            &[Packets, Ipv6, SipRequests, RportEmpty, BindingRecorded, UserspaceUnavailable],
            Some(Expect { key: key("z9hG4bK-13"), src: CLIENT_V6, sport: 5060, flags: F::IPV6 | F::SENT_BY_V6 | F::RPORT_EMPTY | F::MAGIC_COOKIE, vlan: (0, 0), requests: 1 }),
        ),
        case(
            "one 802.1Q tag",
            udp4_vlan(&[100], NAT_V4, NAT_PORT, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-14;rport")),
            &with(REQ_NAT, &[Vlan]),
            Some(Expect { key: key("z9hG4bK-14"), src: v4m(NAT_V4), sport: NAT_PORT, flags: NAT_FLAGS, vlan: (100, 0), requests: 1 }),
        ),
        case(
            "two tags (QinQ)",
            udp4_vlan(&[100, 200], NAT_V4, NAT_PORT, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-15;rport")),
            &with(REQ_NAT, &[Vlan]),
            Some(Expect { key: key("z9hG4bK-15"), src: v4m(NAT_V4), sport: NAT_PORT, flags: NAT_FLAGS, vlan: (100, 200), requests: 1 }),
        ),
        case(
            "IPv4 header with 8 bytes of options",
            with_ipv4_options(&nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-16;rport"), 8),
            REQ_NAT,
            bind("z9hG4bK-16", NAT_FLAGS),
        ),
        case(
            "first IPv4 fragment: recorded, counted, passed (no rewrite of a fragment)",
            as_fragment(&nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-17;rport"), true, 0),
            &[Packets, IpFragment, SipRequests, RportEmpty, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, RequestUnchanged],
            bind("z9hG4bK-17", NAT_FLAGS | F::FRAGMENT),
        ),
        case("later IPv4 fragment", as_fragment(&nat_req(V), false, 100), &[Packets, IpFragment], None),
        case("DNS: UDP to port 53", udp4(NAT_V4, 40000, SERVER_V4, 53, b"\x12\x34\x01\x00\x00\x01"), &[Packets, NonSip], None),
        case("TCP to 5060", tcp4(NAT_V4, 40000, SERVER_V4, 5060, &register(V)), &[Packets, NonSip], None),
        case("ARP", { let mut f = vec![0xffu8; 6]; f.extend_from_slice(&CLIENT_MAC); f.extend_from_slice(&[0x08, 0x06]); f.extend_from_slice(&[0u8; 28]); f }, &[Packets, NonSip], None),
        case("CRLF keep-alive", udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"\r\n\r\n"), &[Packets, KeepaliveCrlf], None),
        case("four-zero-byte keep-alive", udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &[0, 0, 0, 0]), &[Packets, KeepaliveZero], None),
        case(
            "STUN binding request on 5060",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            &[Packets, KeepaliveStun],
            None,
        ),
        case("lower-case text on 5060 is not SIP", udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"hello, this is not sip"), &[Packets, NonSipOnSipPort], None),
        case("no Via at all", nat_req("X-Nothing: here"), &[Packets, SipRequests, NoVia], None),
        case(
            "Via after other headers",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"OPTIONS sip:198.51.100.10 SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:a@198.51.100.10>;tag=1\r\nTo: <sip:a@198.51.100.10>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-27;rport\r\nContent-Length: 0\r\n\r\n"),
            REQ_NAT,
            bind("z9hG4bK-27", NAT_FLAGS),
        ),
        case(
            "Via beyond the scan window",
            nat_req(&format!("X-Pad: {}\r\n{V}", "a".repeat(1600))),
            &[Packets, SipRequests, ViaBeyondWindow],
            None,
        ),
        case(
            "a 1500-byte packet",
            {
                let via = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-29;rport";
                let base = nat_req(via).len();
                nat_req(&format!("{via}\r\nX-Pad: {}", "b".repeat(1514 - base - 9)))
            },
            REQ_NAT,
            bind("z9hG4bK-29", NAT_FLAGS),
        ),
        case(
            "request with truncated payload (UDP length says more)",
            { let mut f = nat_req(V); f.truncate(14 + 20 + 8 + 20); f },
            &[Packets, SipRequests, Truncated, NoVia],
            None,
        ),
    ];
    // Truncation at every header boundary: inside Ethernet, VLAN, IPv4, IPv6, UDP.
    let full = nat_req(V);
    // (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, as a NIC never
    // delivers them, so the first cut is right after it.)
    for (cut, what) in [
        (14, "IPv4 (Ethernet header only)"),
        (14 + 19, "IPv4"),
        (14 + 20 + 7, "UDP"),
    ] {
        t.push(case(
            &format!("cut before the end of the {what} header"),
            full[..cut].to_vec(),
            &[Packets, Truncated],
            None,
        ));
    }
    let tagged = udp4_vlan(&[7], NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(V));
    t.push(case(
        "cut inside the VLAN tag",
        tagged[..16].to_vec(),
        &[Packets, Truncated],
        None,
    ));
    let v6 = udp6(CLIENT_V6, 5060, SERVER_V6, 5060, &register(V));
    t.push(case(
        "cut inside the IPv6 header",
        v6[..14 + 39].to_vec(),
        &[Packets, Truncated],
        None,
    ));

    // A request from an inside interface (server toward client) is not recorded.
    let mut c = case(
        "request arriving on an inside interface",
        nat_req(V),
        &[
            Packets,
            SipRequests,
            RportEmpty,
            SentByDiffers,
            SourcePortDiffers,
            SentByPrivate,
            RequestFromInside,
        ],
        None,
    );
    c.role = role::INSIDE;
    t.push(c);

    // Retransmission: same branch twice, one binding counting two requests.
    let mut c = case(
        "retransmission refreshes the same binding",
        nat_req(V),
        REQ_NAT,
        None,
    );
    c.setup = vec![nat_req(V)];
    c.binding = Some(Expect {
        requests: 2,
        ..bind("z9hG4bK-1", NAT_FLAGS).unwrap()
    });
    t.push(c);

    // Responses: the request (run first) leaves the binding they are matched against.
    let resp_via =
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;received=203.0.113.1;rport=32415";
    let mut c = case(
        "response from an rport-aware server, already to the NAT mapping: untouched",
        udp4(SERVER_V4, 5060, NAT_V4, NAT_PORT, &ok_response(resp_via)),
        &[Packets, SipResponses, ResponseAlreadyCorrect],
        None,
    );
    c.role = role::INSIDE;
    c.setup = vec![nat_req(V)];
    t.push(c);
    let mut c = case(
        "response from a legacy server to the private sent-by: steered to the NAT mapping",
        udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp_via)),
        &[Packets, SipResponses, ResponseSteered],
        None,
    );
    c.role = role::INSIDE;
    c.setup = vec![nat_req(V)];
    c.out = Out::Steered(NAT_V4, NAT_PORT);
    t.push(c);
    let mut c = case(
        "legacy response on an outside interface: never steered (anti-reflection)",
        udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp_via)),
        &[Packets, SipResponses, ResponseNotFromInside],
        None,
    );
    c.setup = vec![nat_req(V)];
    t.push(c);
    let mut c = case(
        "legacy response from another host than the request went to: never steered",
        udp4(
            [198, 51, 100, 99],
            5060,
            PHONE_V4,
            5060,
            &ok_response(resp_via),
        ),
        &[Packets, SipResponses, ResponseSourceMismatch],
        None,
    );
    c.role = role::INSIDE;
    c.setup = vec![nat_req(V)];
    t.push(c);
    let mut c = case(
        "response without a binding",
        udp4(
            SERVER_V4,
            5060,
            PHONE_V4,
            5060,
            &ok_response("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-none"),
        ),
        &[Packets, SipResponses, ResponseNoBinding],
        None,
    );
    c.role = role::INSIDE;
    t.push(c);
    t
}

fn check_checksums(frame: &[u8]) {
    let p = SlicedPacket::from_ethernet(frame).expect("output parses");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let hdr = ip.header().to_header();
    assert_eq!(
        hdr.header_checksum,
        hdr.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    let want = udp
        .to_header()
        .calc_checksum_ipv4(&hdr, udp.payload())
        .unwrap();
    assert_eq!(udp.checksum(), want, "UDP checksum");
}

#[test]
fn fixture_table() {
    if !can_load_bpf("fixture_table") {
        return;
    }
    let _ns = aya::test_helpers::NetNsGuard::new().expect("netns");
    let mut h = XdpHarness::load().expect("load");
    let table = table();
    assert!(table.len() >= 30, "the contract has at least 30 rows");
    let mut failures = Vec::new();
    for c in &table {
        h.clear_bindings().unwrap();
        h.set_role(role::OUTSIDE).unwrap();
        for f in &c.setup {
            h.run(f).unwrap();
        }
        h.set_role(c.role).unwrap();
        let before_bindings: Vec<u64> = h.bindings().unwrap().iter().map(|(k, _)| *k).collect();
        let before = h.counters().unwrap();
        let r = h
            .run(&c.frame)
            .unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        let after = h.counters().unwrap();
        let mut errs = Vec::new();
        if r.verdict != c.verdict {
            errs.push(format!("verdict {} want {}", r.verdict, c.verdict));
        }
        let mut want = vec![0u64; Counter::ALL.len()];
        for k in &c.counters {
            want[*k as usize] += 1;
        }
        // binding_new: a recorded binding under a key the map did not hold before.
        if let Some(e) = &c.binding {
            if c.counters.contains(&Counter::BindingRecorded) && !before_bindings.contains(&e.key) {
                want[Counter::BindingNew as usize] += 1;
            }
        }
        for (i, cnt) in Counter::ALL.iter().enumerate() {
            let d = after[i] - before[i];
            if d != want[i] {
                errs.push(format!(
                    "counter {} moved by {d}, want {}",
                    cnt.name(),
                    want[i]
                ));
            }
        }
        let bindings = h.bindings().unwrap();
        match &c.binding {
            None => {
                let new: Vec<_> = bindings
                    .iter()
                    .filter(|(k, _)| !before_bindings.contains(k))
                    .collect();
                if !new.is_empty() {
                    errs.push(format!("unexpected binding {new:?}"));
                }
            }
            Some(e) => match bindings.iter().find(|(k, _)| *k == e.key) {
                None => errs.push(format!(
                    "no binding under key {:#x}; have {bindings:?}",
                    e.key
                )),
                Some((_, b)) => check_binding(b, e, &mut errs),
            },
        }
        match c.out {
            Out::Same => {
                if r.out != c.frame {
                    errs.push("output frame differs from input".into());
                }
            }
            Out::Steered(addr, port) => {
                // The frame is handed on unchanged, with the decision in its XDP metadata
                // for the TC program (rport_common::SteerMeta): TC applies it with the
                // kernel's checksum helpers (tests/tests/steer_csum.rs proves the wire).
                let n = std::mem::size_of::<rport_common::SteerMeta>();
                if r.out.len() != c.frame.len() + n || r.out[n..] != c.frame[..] {
                    errs.push("frame not handed on unchanged after the metadata".into());
                } else {
                    // SAFETY: n bytes, SteerMeta is plain data.
                    let m: rport_common::SteerMeta =
                        unsafe { std::ptr::read_unaligned(r.out.as_ptr() as *const _) };
                    let want = rport_common::SteerMeta {
                        magic: rport_common::SteerMeta::MAGIC,
                        l3: 14,
                        l4: 34,
                        addr: std::net::Ipv4Addr::from(addr).to_ipv6_mapped().octets(),
                        port_be: port.to_be(),
                        ipv6: 0,
                    };
                    if m != want {
                        errs.push(format!("steering metadata {m:?}, want {want:?}"));
                    }
                }
            }
        }
        if !errs.is_empty() {
            failures.push(format!("{}:\n    {}", c.name, errs.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    println!("{} fixture rows passed", table.len());
}

fn check_binding(b: &Binding, e: &Expect, errs: &mut Vec<String>) {
    if b.src_addr != e.src || b.src_port != e.sport {
        errs.push(format!(
            "binding source {:?}:{} want {:?}:{}",
            b.src_addr, b.src_port, e.src, e.sport
        ));
    }
    if b.flags != e.flags {
        errs.push(format!("binding flags {:#x} want {:#x}", b.flags, e.flags));
    }
    if (b.vlan, b.vlan_inner) != e.vlan {
        errs.push(format!(
            "binding vlan {:?} want {:?}",
            (b.vlan, b.vlan_inner),
            e.vlan
        ));
    }
    if b.requests != e.requests {
        errs.push(format!(
            "binding requests {} want {}",
            b.requests, e.requests
        ));
    }
    if b.last_seen_ns < b.first_seen_ns || b.first_seen_ns == 0 {
        errs.push("binding timestamps not set".into());
    }
}
