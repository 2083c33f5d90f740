//! Cost of the top-Via rewrite per message (`cargo bench -p rport-userspace --bench rewrite`).
//!
//! Each case is laid out as in the daemon: the SIP payload sits in an AF_XDP-sized frame
//! after room for the Ethernet/IP/UDP headers, and the rest of the frame is the tail room
//! the rewrite grows into. Every iteration starts again from the original bytes.
//!
//! `register_contact` is the REGISTER through both rewrites, as the daemon does for a
//! message from a phone: the top Via with its steering tag, then the Contact aliased with
//! a Contact tag ([`rport_userspace::sip::contact`]), both tags made in the loop (a
//! SipHash each), as the daemon makes them per message.
//!
//! `nat/*` is the NAT tracker's cost per rewritten request ([`NatTracker::observe`]):
//! `refresh` a known client's REGISTER (10,000 clients of 1,000 sources), alone and
//! `refresh_contended` with a second thread observing other clients all the while (two
//! forwarding threads); `full_newcomer` a new Call-ID arriving at a full table, a minute
//! after the previous one (the worst case of a flood: what the lock is held for).
use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use criterion::{Criterion, criterion_group, criterion_main};
use rport_userspace::{
    datapath::afxdp::FRAME_SIZE,
    datapath::keys::Signer,
    observe::nat::{CLIENTS, NatTracker},
    sip::{
        contact::{ContactPolicy, rewrite_contacts},
        rewrite::{Observed, Policy, rewrite_top_via},
    },
};

/// Ethernet + IPv4 + UDP headers before the payload.
const HEAD_V4: usize = 14 + 20 + 8;
/// Ethernet + IPv6 + UDP headers before the payload.
const HEAD_V6: usize = 14 + 40 + 8;

const SRC_V4: Observed = Observed {
    addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
    port: 32415,
};
const SRC_V6: Observed = Observed {
    addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x60)),
    port: 40000,
};

struct Case {
    name: &'static str,
    msg: Vec<u8>,
    src: Observed,
    head: usize,
    /// The top Via line after the rewrite, or `None` if the message must stay as it is.
    expect_via: Option<&'static str>,
}

/// Joins header lines and a body, with a Content-Length that matches the body.
fn sip(lines: &[&str], length_header: &str, body: &str) -> Vec<u8> {
    let mut m = String::new();
    for l in lines {
        m.push_str(l);
        m.push_str("\r\n");
    }
    m.push_str(&format!("{length_header}{}\r\n\r\n{body}", body.len()));
    m.into_bytes()
}

fn cases() -> Vec<Case> {
    // A typical softphone REGISTER; `register_with(via)` is it with another top Via.
    let register_with = |via: &str| {
        sip(
            &[
                "REGISTER sip:example.com SIP/2.0",
                via,
                "Max-Forwards: 70",
                "Contact: <sip:alice@192.168.1.50:5060;rinstance=6f8e1c2b3a4d5e6f>",
                "To: <sip:alice@example.com>",
                "From: <sip:alice@example.com>;tag=8f3a2b1c",
                "Call-ID: 9b2e7c4d1a0f3e5b@192.168.1.50",
                "CSeq: 1 REGISTER",
                "Expires: 3600",
                "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE",
                "User-Agent: Zoiper rv2.10.19.5",
                "Allow-Events: presence, kpml, talk",
            ],
            "Content-Length: ",
            "",
        )
    };
    let register = register_with(
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport",
    );
    let sdp = "v=0\r\n\
               o=alice 2890844526 2890844526 IN IP4 192.168.1.50\r\n\
               s=-\r\n\
               c=IN IP4 192.168.1.50\r\n\
               t=0 0\r\n\
               m=audio 49170 RTP/AVP 0 8 101\r\n\
               a=rtpmap:0 PCMU/8000\r\n\
               a=rtpmap:8 PCMA/8000\r\n\
               a=rtpmap:101 telephone-event/8000\r\n\
               a=fmtp:101 0-16\r\n\
               a=ptime:20\r\n\
               a=sendrecv\r\n";
    let invite = sip(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "Max-Forwards: 70",
            "From: \"Alice\" <sip:alice@example.com>;tag=1928301774",
            "To: <sip:bob@example.com>",
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK776asdhds;rport",
            "Call-ID: a84b4c76e66710@192.168.1.50",
            "CSeq: 314159 INVITE",
            "Contact: <sip:alice@192.168.1.50:5060>",
            "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE",
            "Supported: replaces, timer, 100rel",
            "Session-Expires: 1800",
            "Min-SE: 90",
            "User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)",
            "Allow-Events: talk, hold, conference",
            "Content-Type: application/sdp",
        ],
        "Content-Length: ",
        sdp,
    );
    let compact = sip(
        &[
            "INVITE sip:bob@example.com SIP/2.0",
            "v : SIP / 2.0 / UDP 192.168.1.50 : 5060 ; branch = z9hG4bK-77 ; rport",
            "f : <sip:alice@example.com> ; tag = 88sja8x",
            "t : <sip:bob@example.com>",
            "i : 0ha0isndaksdj@192.168.1.50",
            "m : <sip:alice@192.168.1.50:5060>",
            "CSeq : 8 INVITE",
            "c : application/sdp",
        ],
        "l : ",
        sdp,
    );
    let ipv6 = sip(
        &[
            "REGISTER sip:example.com SIP/2.0",
            "Via: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-v6-3f2a1b;rport",
            "Max-Forwards: 70",
            "Contact: <sip:alice@[2001:db8:1::50]:5060>",
            "To: <sip:alice@example.com>",
            "From: <sip:alice@example.com>;tag=6a5b4c3d",
            "Call-ID: 1d2c3b4a5f6e@2001:db8:1::50",
            "CSeq: 2 REGISTER",
            "Expires: 3600",
        ],
        "Content-Length: ",
        "",
    );
    let already = register_with(
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport=32415;received=203.0.113.1",
    );
    vec![
        Case {
            name: "register",
            msg: register,
            src: SRC_V4,
            head: HEAD_V4,
            expect_via: Some(
                "\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport=32415;received=203.0.113.1\r\n",
            ),
        },
        Case {
            name: "invite_sdp",
            msg: invite,
            src: SRC_V4,
            head: HEAD_V4,
            expect_via: Some(
                "\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK776asdhds;rport=32415;received=203.0.113.1\r\n",
            ),
        },
        Case {
            name: "compact",
            msg: compact,
            src: SRC_V4,
            head: HEAD_V4,
            expect_via: Some(
                "\r\nv : SIP / 2.0 / UDP 192.168.1.50 : 5060 ; branch = z9hG4bK-77 ;rport=32415;received=203.0.113.1\r\n",
            ),
        },
        Case {
            name: "ipv6",
            msg: ipv6,
            src: SRC_V6,
            head: HEAD_V6,
            expect_via: Some(
                "\r\nVia: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-v6-3f2a1b;rport=40000;received=2001:db8:1::60\r\n",
            ),
        },
        Case {
            name: "noop_already_correct",
            msg: already,
            src: SRC_V4,
            head: HEAD_V4,
            expect_via: None,
        },
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs the rewrite once, outside the timed loop, and checks it does what the case says, so
/// a parse failure or a changed rule cannot turn the benchmark into a silent no-op.
fn check(c: &Case) {
    let mut frame = vec![0u8; FRAME_SIZE as usize];
    let buf = &mut frame[c.head..];
    buf[..c.msg.len()].copy_from_slice(&c.msg);
    let r = rewrite_top_via(buf, c.msg.len(), c.src, Policy::default())
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let out = &buf[..r.len];
    match c.expect_via {
        Some(via) => {
            assert!(
                r.changed && r.received_set && r.rport_set,
                "{}: {r:?}",
                c.name
            );
            assert!(
                contains(out, via.as_bytes()),
                "{}: expected {via:?} in\n{}",
                c.name,
                String::from_utf8_lossy(out)
            );
            assert_eq!(r.len, c.msg.len() + via.len() - original_via_len(c));
        }
        None => {
            assert!(!r.changed, "{}: {r:?}", c.name);
            assert_eq!(out, &c.msg[..], "{}", c.name);
        }
    }
}

/// Length of the original top Via line (with the CRLFs around it), to check that nothing but
/// that line changed length.
fn original_via_len(c: &Case) -> usize {
    let first_crlf = c.msg.windows(2).position(|w| w == b"\r\n").unwrap();
    let mut at = first_crlf;
    loop {
        let line_start = at + 2;
        let line_end = line_start
            + c.msg[line_start..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap();
        let line = &c.msg[line_start..line_end];
        if line.starts_with(b"Via:") || line.starts_with(b"v :") {
            return line.len() + 4;
        }
        at = line_end;
    }
}

/// The REGISTER of `register`, through both rewrites with tags (the daemon's path for a
/// message from a phone).
fn register_contact(
    buf: &mut [u8],
    msg: &[u8],
    signer: &Signer,
    server: IpAddr,
    now: std::time::Instant,
) -> usize {
    buf[..msg.len()].copy_from_slice(msg);
    let target = (SRC_V4.addr, SRC_V4.port);
    let via = Policy {
        force_rport: false,
        tag: Some(signer.via_tag(target, (server, 5060), now)),
    };
    let len = rewrite_top_via(buf, msg.len(), SRC_V4, via).map_or(msg.len(), |r| r.len);
    let contact = ContactPolicy {
        tag: Some(signer.contact_tag(target, server, now)),
    };
    rewrite_contacts(buf, len, SRC_V4, contact).map_or(len, |r| r.len)
}

fn bench_rewrite(cr: &mut Criterion) {
    let cases = cases();
    for c in &cases {
        check(c);
    }
    let signer = Signer::new(rport_userspace::datapath::keys::CurrentKey::new(
        rport_common::tag::TagKey {
            key: [0x5a; 16],
            valid: 1,
            ..Default::default()
        },
    ));
    let server = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));
    let register = &cases[0];
    assert_eq!(register.name, "register");
    {
        // Checked once outside the timed loop, like the other cases.
        let mut frame = vec![0u8; FRAME_SIZE as usize];
        let buf = &mut frame[HEAD_V4..];
        let now = std::time::Instant::now();
        let len = register_contact(buf, &register.msg, &signer, server, now);
        let out = String::from_utf8_lossy(&buf[..len]).into_owned();
        let via = format!(
            "\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport=32415;received=203.0.113.1;rptag={:?}\r\n",
            signer.via_tag((SRC_V4.addr, SRC_V4.port), (server, 5060), now)
        );
        let contact = format!(
            "\r\nContact: <sip:alice@192.168.1.50:5060;rinstance=6f8e1c2b3a4d5e6f;rptag={:?}>\r\n",
            signer.contact_tag((SRC_V4.addr, SRC_V4.port), server, now)
        );
        assert!(
            out.contains(&via) && out.contains(&contact),
            "register_contact: expected {via:?} and {contact:?} in\n{out}"
        );
    }
    let mut g = cr.benchmark_group("rewrite");
    // One frame, reused: no allocation in the timed loop, as in the daemon.
    let mut frame = vec![0u8; FRAME_SIZE as usize];
    for c in &cases {
        let (msg, src, head) = (&c.msg[..], c.src, c.head);
        g.bench_function(c.name, |b| {
            b.iter(|| {
                // Restoring the original bytes is timed on purpose: the daemon runs AF_XDP in
                // copy mode, so the kernel copies every frame into the UMEM before the rewrite
                // too. It is a memcpy of a few hundred bytes; `copy_only` below measures it.
                let buf = &mut frame[head..];
                buf[..msg.len()].copy_from_slice(black_box(msg));
                black_box(rewrite_top_via(
                    black_box(buf),
                    black_box(msg.len()),
                    black_box(src),
                    Policy::default(),
                ))
            })
        });
    }
    let now = std::time::Instant::now();
    g.bench_function("register_contact", |b| {
        b.iter(|| {
            black_box(register_contact(
                black_box(&mut frame[HEAD_V4..]),
                black_box(&register.msg),
                &signer,
                black_box(server),
                now,
            ))
        })
    });
    // Baseline: the copy alone, for the largest message (the INVITE with SDP).
    let largest = cases
        .iter()
        .map(|c| &c.msg)
        .max_by_key(|m| m.len())
        .unwrap();
    g.bench_function("copy_only", |b| {
        b.iter(|| {
            let buf = &mut frame[HEAD_V4..];
            buf[..largest.len()].copy_from_slice(black_box(largest));
            black_box(buf);
        })
    });
    g.finish();
}

/// `n` Call-IDs as phones make them.
fn call_ids(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}{i:08x}-a84b4c76e66710@pc33.example.com").into_bytes())
        .collect()
}

/// A source per 10 clients, in 192.168.0.0/16 (a bench: nothing is sent).
fn source(i: usize) -> std::net::SocketAddr {
    let i = i / 10;
    std::net::SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(192, 168, (i >> 8) as u8, i as u8)),
        40000,
    )
}

fn bench_nat(cr: &mut Criterion) {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::{Duration, Instant},
    };
    let mut g = cr.benchmark_group("nat");
    let t0 = Instant::now();
    let nat = Arc::new(NatTracker::default());
    let ids = call_ids("reg-", 10_000);
    for (i, id) in ids.iter().enumerate() {
        let _ = nat.observe(id, source(i), t0, None);
    }
    let refresh = |b: &mut criterion::Bencher<'_>| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % ids.len();
            black_box(nat.observe(black_box(&ids[k]), source(k), t0, None))
        })
    };
    g.bench_function("refresh", refresh);
    {
        // Another forwarding thread on other clients of the same tracker.
        let stop = Arc::new(AtomicBool::new(false));
        let other = {
            let (nat, stop) = (nat.clone(), stop.clone());
            let ids = call_ids("other-", 10_000);
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    k = (k + 1) % ids.len();
                    black_box(nat.observe(&ids[k], source(k), t0, None));
                }
            })
        };
        g.bench_function("refresh_contended", refresh);
        stop.store(true, Ordering::Relaxed);
        let _ = other.join();
    }
    // A full table of clients active within the hour; each newcomer a minute after the
    // previous one.
    let full = NatTracker::default();
    let many = call_ids("full-", CLIENTS * 2);
    let mut n = 0;
    while full.state().clients < CLIENTS as u64 && n < many.len() {
        for _ in 0..1000 {
            let _ = full.observe(&many[n], source(n * 10), t0, None);
            n += 1;
        }
    }
    let filled: Vec<usize> = (0..n).collect();
    let newcomers = call_ids("new-", 1 << 16);
    let (mut k, mut at) = (0usize, t0);
    g.bench_function("full_newcomer", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                // Every 50 newcomers (50 minutes) the table's clients refresh (untimed), so
                // it stays full of clients active within the hour.
                if k % 50 == 0 {
                    for &i in &filled {
                        let _ = full.observe(&many[i], source(i * 10), at, None);
                    }
                }
                at += Duration::from_secs(61);
                let id = &newcomers[k % newcomers.len()];
                let s = Instant::now();
                black_box(full.observe(black_box(id), source(k), at, None));
                spent += s.elapsed();
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, bench_rewrite, bench_nat);
criterion_main!(benches);
