//! A hostile corpus: SIP-shaped datagrams built to break a parser (a thousand Vias, a 4 KiB
//! branch, ten thousand parameters, NUL bytes, invalid UTF-8, bare CR or LF, names with
//! spaces, impossible ports, IPv6 zone ids, lying lengths, junk `rport` values, messages
//! without a Via or with one in the body only, compact forms, frames shorter than their
//! UDP length), each with what rport must make of it: the counter it moves and whether
//! the server must get it.
//!
//! Generated, not stored, so that a family grows by a line; the payloads are plain bytes,
//! so a runner may send them live (tests/tests/hostile_corpus.rs: through a real NAT and
//! `rport run`), write them to a capture for `rport replay`, or feed them to the model
//! ([`tests`] below: every single-frame case through `rport_ebpf::model` and the rewrite).
//!
//! Each case carries a token (`hc0042z`, in its Request-URI, reason phrase or a header
//! other than the Via) that the rewrite never touches, so a receiver can tell the cases
//! apart whatever became of them.
use std::fmt::Write as _;

/// How a case is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    /// From the phone, over UDP, through the NAT (the kernel builds sound IP and UDP
    /// headers; a datagram beyond the MTU leaves as fragments).
    Phone,
    /// From a host on the gateway's outside, with a raw socket: IP and UDP headers of our
    /// own, the UDP length claiming `extra` bytes more than the datagram holds (the frame
    /// is short on the wire, IP length and checksum right).
    ShortUdp { extra: u16 },
}

/// What rport must make of a case (one frame, or each fragment of it), and the counters of
/// `rport stats --json` that say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expect {
    /// XDP found the top Via unusable: `xdp.malformed_via`; passed as it came.
    MalformedVia,
    /// No Via in the headers: `xdp.no_via`; passed as it came.
    NoVia,
    /// Not a request nor a response: `xdp.non_sip_on_sip_port`; passed as it came.
    NotSip,
    /// IP fragments, one count per fragment: `xdp.ip_fragment`; passed, reassembled by
    /// the server as sent.
    Fragments,
    /// Handed to the daemon (`xdp.to_userspace`), its top Via rewritten (`daemon.rewritten`):
    /// what the server gets is what the rewrite makes of it, byte for byte.
    Rewritten,
    /// Handed to the daemon, which refused it (`daemon.rewrite_errors`): forwarded as it came.
    RewriteError,
    /// Handed to the daemon, which found nothing to change (`daemon.unchanged`).
    Unchanged,
    /// A response with no tag and no binding: `xdp.response_no_binding`; passed as it came.
    ResponseNoBinding,
    /// Short of its UDP length: `xdp.truncated`, and the daemon never sees it
    /// (`daemon.rx_frames` stays); the server's UDP drops it.
    Truncated,
}

impl Expect {
    /// (group, counter, moves per frame) of `rport stats --json`: each must move by exactly
    /// that much per frame of the case (0: must not move).
    pub fn counters(self) -> &'static [(&'static str, &'static str, u64)] {
        const NOT_DAEMON: (&str, &str, u64) = ("daemon", "rx_frames", 0);
        match self {
            Expect::MalformedVia => &[("xdp", "malformed_via", 1), NOT_DAEMON],
            Expect::NoVia => &[("xdp", "no_via", 1), NOT_DAEMON],
            Expect::NotSip => &[("xdp", "non_sip_on_sip_port", 1), NOT_DAEMON],
            Expect::Fragments => &[("xdp", "ip_fragment", 1), NOT_DAEMON],
            Expect::Rewritten => &[
                ("xdp", "to_userspace", 1),
                ("daemon", "rx_frames", 1),
                ("daemon", "rewritten", 1),
            ],
            Expect::RewriteError => &[
                ("xdp", "to_userspace", 1),
                ("daemon", "rewrite_errors", 1),
                ("daemon", "rewritten", 0),
            ],
            Expect::Unchanged => &[
                ("xdp", "to_userspace", 1),
                ("daemon", "unchanged", 1),
                ("daemon", "rewritten", 0),
            ],
            Expect::ResponseNoBinding => &[("xdp", "response_no_binding", 1), NOT_DAEMON],
            Expect::Truncated => &[("xdp", "truncated", 1), NOT_DAEMON],
        }
    }

    /// Whether the server must get the case (as sent, or as the rewrite makes it).
    pub fn reaches_server(self) -> bool {
        self != Expect::Truncated
    }
}

/// One case.
#[derive(Clone, Debug)]
pub struct Case {
    pub id: usize,
    pub family: &'static str,
    pub name: String,
    /// The UDP payload.
    pub payload: Vec<u8>,
    pub send: Send,
    pub expect: Expect,
}

impl Case {
    /// The token that identifies the case in what a receiver got.
    pub fn token(&self) -> String {
        token(self.id)
    }

    /// Frames the case is on the wire: the fragments of its datagram at `mtu` (IPv4, no
    /// options: 1,480 bytes of IP payload per fragment but the last).
    pub fn frames(&self, mtu: usize) -> u64 {
        let ip_payload = self.payload.len() + 8;
        let per = (mtu - 20) / 8 * 8;
        ip_payload.div_ceil(per).max(1) as u64
    }
}

pub fn token(id: usize) -> String {
    format!("hc{id:04}z")
}

/// The phone's private sent-by, as a phone behind NAT writes it.
pub const SENT_BY: &str = "192.168.1.50:5060";

/// A request `method` to the server: its Request-URI user is `tok`, then `vias` (whole
/// header lines, each with its line end), the usual headers, `extra` (raw header bytes)
/// and `body` with a right Content-Length. No Contact: only the Via edit applies.
fn request(method: &str, tok: &str, vias: &[u8], extra: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = format!("{method} sip:{tok}@198.51.100.10 SIP/2.0\r\n").into_bytes();
    m.extend_from_slice(vias);
    m.extend_from_slice(common(tok, method).as_bytes());
    m.extend_from_slice(extra);
    m.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    m.extend_from_slice(body);
    m
}

/// A response (status `code`, the token as its reason phrase), the same way.
fn response(code: u16, tok: &str, vias: &[u8], extra: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = format!("SIP/2.0 {code} {tok}\r\n").into_bytes();
    m.extend_from_slice(vias);
    m.extend_from_slice(common(tok, "MESSAGE").as_bytes());
    m.extend_from_slice(extra);
    m.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    m.extend_from_slice(body);
    m
}

fn common(tok: &str, method: &str) -> String {
    format!(
        "Max-Forwards: 70\r\nFrom: <sip:alice@198.51.100.10>;tag=1\r\nTo: <sip:bob@198.51.100.10>\r\nCall-ID: {tok}@192.168.1.50\r\nCSeq: 1 {method}\r\n"
    )
}

/// A Via header line (with CRLF) with this value.
fn via(value: &str) -> Vec<u8> {
    format!("Via: {value}\r\n").into_bytes()
}

/// The phone's usual top Via value, with `params` after the branch.
fn good_via(tok: &str, params: &str) -> String {
    format!("SIP/2.0/UDP {SENT_BY};branch=z9hG4bK-{tok}{params}")
}

/// A Via value from raw bytes (a header line of them).
fn via_bytes(value: &[u8]) -> Vec<u8> {
    let mut v = b"Via: ".to_vec();
    v.extend_from_slice(value);
    v.extend_from_slice(b"\r\n");
    v
}

/// Replaces every CRLF of `m` by `end`.
fn line_ends(m: &[u8], end: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    let mut i = 0;
    while i < m.len() {
        if m[i..].starts_with(b"\r\n") {
            out.extend_from_slice(end);
            i += 2;
        } else {
            out.push(m[i]);
            i += 1;
        }
    }
    out
}

/// Builds the corpus, case by case.
struct Gen {
    cases: Vec<Case>,
}

impl Gen {
    fn tok(&self) -> String {
        token(self.cases.len())
    }
    fn push(&mut self, family: &'static str, name: &str, payload: Vec<u8>, expect: Expect) {
        self.push_as(family, name, payload, Send::Phone, expect);
    }
    fn push_as(
        &mut self,
        family: &'static str,
        name: &str,
        payload: Vec<u8>,
        send: Send,
        expect: Expect,
    ) {
        let id = self.cases.len();
        assert!(
            payload.windows(7).any(|w| w == token(id).as_bytes()),
            "case {id} ({family}: {name}) carries its token"
        );
        self.cases.push(Case {
            id,
            family,
            name: name.into(),
            payload,
            send,
            expect,
        });
    }
}

/// The whole corpus, in family order.
pub fn corpus() -> Vec<Case> {
    use Expect::*;
    let mut g = Gen { cases: Vec::new() };

    // 1,000 Via headers: beyond one frame, so IP fragments, passed whole (never rewritten:
    // the rewrite needs the whole datagram); and 60 of them, in one frame.
    for (name, form) in [
        ("1,000 Via lines, the top one with rport", 0),
        ("1,000 compact v: lines", 1),
        ("1,000 Vias in one header, comma-separated", 2),
        ("1,000 Via lines, the top one malformed", 3),
        ("a response with 1,000 Via lines", 4),
    ] {
        let t = g.tok();
        let mut vias = Vec::new();
        match form {
            2 => {
                let mut v = good_via(&t, ";rport");
                for i in 1..1000 {
                    write!(
                        v,
                        ", SIP/2.0/UDP 10.0.{}.{}:5060;branch=z9hG4bK-{i}",
                        i / 250,
                        i % 250
                    )
                    .unwrap();
                }
                vias = via(&v);
            }
            _ => {
                for i in 0..1000 {
                    let v = if i == 0 && form == 3 {
                        format!("SIP/2.0/UDP {SENT_BY}:99;branch=z9hG4bK-{t}")
                    } else if i == 0 {
                        good_via(&t, ";rport")
                    } else {
                        format!(
                            "SIP/2.0/UDP 10.0.{}.{}:5060;branch=z9hG4bK-{i}",
                            i / 250,
                            i % 250
                        )
                    };
                    if form == 1 {
                        vias.extend_from_slice(format!("v: {v}\r\n").as_bytes());
                    } else {
                        vias.extend(via(&v));
                    }
                }
            }
        }
        let m = if form == 4 {
            response(200, &t, &vias, b"", b"")
        } else {
            request("MESSAGE", &t, &vias, b"", b"")
        };
        g.push("many_vias", name, m, Fragments);
    }
    {
        let t = g.tok();
        let mut vias = via(&good_via(&t, ";rport"));
        for i in 1..20 {
            vias.extend(via(&format!(
                "SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK-{i}"
            )));
        }
        g.push(
            "many_vias",
            "20 Via lines in one frame",
            request("MESSAGE", &t, &vias, b"", b""),
            Rewritten,
        );
    }

    // A 4 KiB branch (and shorter ones that fit a frame).
    for (n, compact, resp) in [
        (4096, false, false),
        (4096, true, false),
        (4000, false, true),
        (65000 - 400, false, false),
    ] {
        let t = g.tok();
        let v = format!(
            "SIP/2.0/UDP {SENT_BY};rport;branch=z9hG4bK-{t}{}",
            "b".repeat(n)
        );
        let vias = if compact {
            format!("v: {v}\r\n").into_bytes()
        } else {
            via(&v)
        };
        let m = if resp {
            response(200, &t, &vias, b"", b"")
        } else {
            request("MESSAGE", &t, &vias, b"", b"")
        };
        g.push(
            "long_branch",
            &format!("a {n}-byte branch (compact {compact}, response {resp})"),
            m,
            Fragments,
        );
    }
    for n in [200usize, 600, 1100] {
        let t = g.tok();
        let v = format!(
            "SIP/2.0/UDP {SENT_BY};rport;branch=z9hG4bK-{t}{}",
            "b".repeat(n)
        );
        g.push(
            "long_branch",
            &format!("a {n}-byte branch in one frame"),
            request("MESSAGE", &t, &via(&v), b"", b""),
            Rewritten,
        );
    }

    // 10,000 parameters (fragments), and a few hundred in one frame.
    for (name, p) in [
        ("10,000 ;p", ";p"),
        ("10,000 ;p=1", ";p=1"),
        ("10,000 ;rport", ";rport"),
        ("10,000 ;x=yy", ";x=yy"),
    ] {
        let t = g.tok();
        let v = good_via(&t, &p.repeat(10_000));
        g.push(
            "many_params",
            name,
            request("MESSAGE", &t, &via(&v), b"", b""),
            Fragments,
        );
    }
    {
        let t = g.tok();
        let v = good_via(&t, &format!(";rport{}", ";p".repeat(300)));
        g.push(
            "many_params",
            "300 ;p in one frame",
            request("MESSAGE", &t, &via(&v), b"", b""),
            Rewritten,
        );
        let t = g.tok();
        let v = good_via(&t, &";rport".repeat(100));
        g.push(
            "many_params",
            "100 ;rport in one frame",
            request("MESSAGE", &t, &via(&v), b"", b""),
            MalformedVia,
        );
    }

    // NUL bytes, and invalid UTF-8, in every part of a message, request and response.
    for (family, bad) in [
        ("nul", &b"\0"[..]),
        ("invalid_utf8", &b"\xff\xfe"[..]),
        ("invalid_utf8", &b"\xc0\xaf"[..]),
    ] {
        for resp in [false, true] {
            let mk = |t: &str, vias: &[u8], extra: &[u8], body: &[u8]| {
                if resp {
                    response(200, t, vias, extra, body)
                } else {
                    request("MESSAGE", t, vias, extra, body)
                }
            };
            let badv = |pre: &str, post: &str| [pre.as_bytes(), bad, post.as_bytes()].concat();
            let t = g.tok();
            g.push(
                family,
                "in the Via host",
                mk(
                    &t,
                    &via_bytes(&badv(
                        "SIP/2.0/UDP 192.168.1.5",
                        &format!("0:5060;branch=z9hG4bK-{t};rport"),
                    )),
                    b"",
                    b"",
                ),
                MalformedVia,
            );
            let t = g.tok();
            g.push(
                family,
                "in the Via port",
                mk(
                    &t,
                    &via_bytes(&badv(
                        "SIP/2.0/UDP 192.168.1.50:50",
                        &format!("60;branch=z9hG4bK-{t};rport"),
                    )),
                    b"",
                    b"",
                ),
                MalformedVia,
            );
            let t = g.tok();
            g.push(
                family,
                "in the sent-protocol",
                mk(
                    &t,
                    &via_bytes(&badv(
                        "SIP/2.0/U",
                        &format!("DP {SENT_BY};branch=z9hG4bK-{t};rport"),
                    )),
                    b"",
                    b"",
                ),
                MalformedVia,
            );
            let t = g.tok();
            g.push(
                family,
                "in the body",
                mk(
                    &t,
                    &via(&good_via(&t, ";rport")),
                    b"Content-Type: text/plain\r\n",
                    &badv("hello ", " world"),
                ),
                if resp { ResponseNoBinding } else { Rewritten },
            );
            let t = g.tok();
            g.push(
                family,
                "in another header's value",
                mk(
                    &t,
                    &via(&good_via(&t, ";rport")),
                    &badv("Subject: a", "b\r\n"),
                    b"",
                ),
                if resp { ResponseNoBinding } else { Rewritten },
            );
            let t = g.tok();
            g.push(
                family,
                "in another header's name",
                mk(
                    &t,
                    &via(&good_via(&t, ";rport")),
                    &badv("X-A", "b: 1\r\n"),
                    b"",
                ),
                if resp { ResponseNoBinding } else { Rewritten },
            );
        }
        let t = g.tok();
        g.push(
            family,
            "as the first byte",
            [
                bad,
                &request("MESSAGE", &t, &via(&good_via(&t, ";rport")), b"", b"")[..],
            ]
            .concat(),
            NotSip,
        );
    }
    {
        let t = g.tok();
        let mut m = vec![0u8; 600];
        m.extend_from_slice(t.as_bytes());
        g.push("nul", "600 NUL bytes", m, NotSip);
        let t = g.tok();
        let mut v = good_via(&t, "").into_bytes();
        v.extend_from_slice(b"\0;rport");
        g.push(
            "nul",
            "after the branch",
            request("MESSAGE", &t, &via_bytes(&v), b"", b""),
            MalformedVia,
        );
    }

    // Bare CR or bare LF line ends, throughout or only after the Via.
    for resp in [false, true] {
        for (name, end) in [
            ("bare LF", &b"\n"[..]),
            ("bare CR", b"\r"),
            ("LF CR", b"\n\r"),
            ("CR CR LF", b"\r\r\n"),
        ] {
            let t = g.tok();
            let m = if resp {
                response(200, &t, &via(&good_via(&t, ";rport")), b"", b"")
            } else {
                request("MESSAGE", &t, &via(&good_via(&t, ";rport")), b"", b"")
            };
            let expect = match (name, resp) {
                ("bare LF", false) => Rewritten,
                ("bare LF", true) => ResponseNoBinding,
                // No line ends it knows: one long start line, no headers.
                ("bare CR" | "LF CR", _) => NoVia,
                _ => MalformedVia,
            };
            g.push(
                "line_ends",
                &format!("{name} throughout (response {resp})"),
                line_ends(&m, end),
                expect,
            );
        }
        for (name, end) in [("bare LF", &b"\n"[..]), ("bare CR", b"\r")] {
            let t = g.tok();
            let mut vias = format!("Via: {}", good_via(&t, ";rport")).into_bytes();
            vias.extend_from_slice(end);
            let m = if resp {
                response(180, &t, &vias, b"", b"")
            } else {
                request("OPTIONS", &t, &vias, b"", b"")
            };
            let expect = match (name, resp) {
                ("bare LF", false) => Rewritten,
                ("bare LF", true) => ResponseNoBinding,
                _ => MalformedVia,
            };
            g.push(
                "line_ends",
                &format!("{name} after the Via only (response {resp})"),
                m,
                expect,
            );
        }
    }

    // Header names with spaces.
    for resp in [false, true] {
        for (name, prefix, expect) in [
            (
                "space before the colon (RFC 3261 allows it)",
                "Via : ",
                if resp { ResponseNoBinding } else { Rewritten },
            ),
            (
                "tab before the colon",
                "Via\t: ",
                if resp { ResponseNoBinding } else { Rewritten },
            ),
            ("a space inside the name", "V ia: ", NoVia),
            (
                "a space before the name (a continuation line)",
                " Via: ",
                NoVia,
            ),
            (
                "no space after the colon",
                "Via:",
                if resp { ResponseNoBinding } else { Rewritten },
            ),
            (
                "lower case name",
                "via: ",
                if resp { ResponseNoBinding } else { Rewritten },
            ),
            ("Via-X, a longer name", "Via-X: ", NoVia),
        ] {
            let t = g.tok();
            let vias = format!("{prefix}{}\r\n", good_via(&t, ";rport")).into_bytes();
            let m = if resp {
                response(200, &t, &vias, b"", b"")
            } else {
                request("MESSAGE", &t, &vias, b"", b"")
            };
            g.push(
                "header_name_spaces",
                &format!("{name} (response {resp})"),
                m,
                expect,
            );
        }
    }

    // Ports 0, 65535, 99999 and others in the sent-by.
    for resp in [false, true] {
        for (port, ok) in [
            ("0", true),
            ("65535", true),
            ("99999", false),
            ("65536", false),
            ("000005060", false),
            ("", false),
            ("abc", false),
            ("-1", false),
            ("5060:5060", false),
        ] {
            let t = g.tok();
            let v = format!("SIP/2.0/UDP 192.168.1.50:{port};branch=z9hG4bK-{t};rport");
            let m = if resp {
                response(200, &t, &via(&v), b"", b"")
            } else {
                request("MESSAGE", &t, &via(&v), b"", b"")
            };
            let expect = match (ok, resp) {
                (false, _) => MalformedVia,
                (true, false) => Rewritten,
                (true, true) => ResponseNoBinding,
            };
            g.push(
                "sent_by_ports",
                &format!("sent-by port {port:?} (response {resp})"),
                m,
                expect,
            );
        }
    }

    // IPv6 sent-by with zone ids (RFC 6874 writes `%25`; a zone is meaningless off its link).
    for host in [
        "[fe80::1%eth0]",
        "[fe80::1%eth0]:5060",
        "[fe80::1%25eth0]:5060",
        "[::1%]",
        "fe80::1%eth0",
        "[2001:db8::1%eth0]:5060",
        "[fe80::1%",
        "[fe80::1%eth0;x]",
        "[fe80::1%zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz]",
    ] {
        for rport in [";rport", ""] {
            let t = g.tok();
            let v = format!("SIP/2.0/UDP {host};branch=z9hG4bK-{t}{rport}");
            g.push(
                "ipv6_zone",
                &format!("sent-by {host} ({rport:?})"),
                request("MESSAGE", &t, &via(&v), b"", b""),
                MalformedVia,
            );
        }
    }

    // Truncated and lying Content-Length (the Via edit does not need it; the server judges).
    for (name, cl, body) in [
        ("says more than the body", "500", &b"short body"[..]),
        (
            "says less than the body",
            "3",
            b"a longer body than it says",
        ),
        ("negative", "-5", b"body"),
        ("huge", "99999999999999999999", b"body"),
        ("not a number", "ten", b"body"),
        ("empty", "", b"body"),
        ("says a body that is not there", "100", b""),
        ("zero, with a body", "0", b"body after all"),
    ] {
        for compact in [false, true] {
            let t = g.tok();
            let mut m = format!("MESSAGE sip:{t}@198.51.100.10 SIP/2.0\r\n").into_bytes();
            m.extend(via(&good_via(&t, ";rport")));
            m.extend_from_slice(common(&t, "MESSAGE").as_bytes());
            m.extend_from_slice(
                format!(
                    "{}: {cl}\r\n\r\n",
                    if compact { "l" } else { "Content-Length" }
                )
                .as_bytes(),
            );
            m.extend_from_slice(body);
            g.push(
                "content_length",
                &format!("Content-Length {name} (compact {compact})"),
                m,
                Rewritten,
            );
        }
    }
    {
        let t = g.tok();
        let mut m = format!("MESSAGE sip:{t}@198.51.100.10 SIP/2.0\r\n").into_bytes();
        m.extend(via(&good_via(&t, ";rport")));
        m.extend_from_slice(common(&t, "MESSAGE").as_bytes());
        m.extend_from_slice(b"Content-Length: 4\r\nContent-Length: 40\r\n\r\nbody");
        g.push(
            "content_length",
            "two Content-Lengths that differ",
            m,
            Rewritten,
        );
    }

    // rport with junk values.
    for resp in [false, true] {
        // A value where none belongs is replaced by the observed port; a grammar breach
        // (no digits, two rports, two received) is refused.
        for (p, want) in [
            (";rport=abc", Rewritten),
            (";rport=99999", Rewritten),
            (";rport==", MalformedVia),
            (";rport=", MalformedVia),
            (";rport=-1", Rewritten),
            (";rport=65536", Rewritten),
            (";rport;rport", MalformedVia),
            (";rport=5060;rport=5061", MalformedVia),
            (";RPORT", Rewritten),
            (";rport=0", Rewritten),
            (";rport=5060abc", Rewritten),
            (";rport=1;received=1.2.3.4;received=5.6.7.8", RewriteError),
        ] {
            let t = g.tok();
            let v = good_via(&t, p);
            let m = if resp {
                response(200, &t, &via(&v), b"", b"")
            } else {
                request("MESSAGE", &t, &via(&v), b"", b"")
            };
            let expect = match (want, resp) {
                (MalformedVia, _) => MalformedVia,
                (_, true) => ResponseNoBinding,
                (w, false) => w,
            };
            g.push("rport_junk", &format!("{p} (response {resp})"), m, expect);
        }
    }

    // A response without a Via; a Via in the body only.
    for code in [100u16, 180, 200, 404, 503] {
        let t = g.tok();
        g.push(
            "response_no_via",
            &format!("a {code} without a Via"),
            response(code, &t, b"", b"", b""),
            NoVia,
        );
    }
    {
        let t = g.tok();
        g.push(
            "response_no_via",
            "an empty Via value",
            response(200, &t, b"Via: \r\n", b"", b""),
            MalformedVia,
        );
    }
    for resp in [false, true] {
        for (name, body) in [
            (
                "a Via line",
                format!("Via: SIP/2.0/UDP {SENT_BY};branch=z9hG4bK-body;rport\r\n"),
            ),
            (
                "a compact v: line",
                format!("v: SIP/2.0/UDP {SENT_BY};branch=z9hG4bK-body;rport\r\n"),
            ),
            (
                "a whole message",
                String::from_utf8(request(
                    "MESSAGE",
                    "inner",
                    &via(&good_via("inner", ";rport")),
                    b"",
                    b"",
                ))
                .unwrap(),
            ),
        ] {
            let t = g.tok();
            let extra = b"Content-Type: message/sip\r\n";
            let m = if resp {
                response(200, &t, b"", extra, body.as_bytes())
            } else {
                request("MESSAGE", &t, b"", extra, body.as_bytes())
            };
            g.push(
                "via_in_body",
                &format!("{name} in the body only (response {resp})"),
                m,
                NoVia,
            );
        }
    }

    // Compact v: forms.
    for resp in [false, true] {
        for (name, line) in [
            ("v: with rport", "v: {V};rport\r\n"),
            ("V: upper case", "V: {V};rport\r\n"),
            ("v: no space", "v:{V};rport\r\n"),
            ("v : space before the colon", "v : {V};rport\r\n"),
            (
                "two v: lines",
                "v: {V};rport\r\nv: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-2\r\n",
            ),
            (
                "v: then a long-form Via",
                "v: {V};rport\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-2\r\n",
            ),
        ] {
            let t = g.tok();
            let vias = line.replace("{V}", &good_via(&t, "")).into_bytes();
            let m = if resp {
                response(200, &t, &vias, b"", b"")
            } else {
                request("MESSAGE", &t, &vias, b"", b"")
            };
            g.push(
                "compact",
                &format!("{name} (response {resp})"),
                m,
                if resp { ResponseNoBinding } else { Rewritten },
            );
        }
    }

    // Odd start lines: requests and responses rport must still tell apart.
    for (name, start, expect) in [
        (
            "lower-case method",
            "message sip:{T}@198.51.100.10 SIP/2.0",
            NotSip,
        ),
        (
            "unknown method",
            "FROBNICATE sip:{T}@198.51.100.10 SIP/2.0",
            Rewritten,
        ),
        ("status 999", "SIP/2.0 999 {T}", ResponseNoBinding),
        (
            "status without a reason",
            "SIP/2.0 200 X{T}",
            ResponseNoBinding,
        ),
        ("SIP/3.0 status line", "SIP/3.0 200 {T}", RewriteError),
        (
            "request line without a version",
            "MESSAGE sip:{T}@198.51.100.10",
            RewriteError,
        ),
    ] {
        let t = g.tok();
        let mut m = start.replace("{T}", &t).into_bytes();
        m.extend_from_slice(b"\r\n");
        m.extend(via(&good_via(&t, ";rport")));
        m.extend_from_slice(common(&t, "MESSAGE").as_bytes());
        m.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        g.push("start_line", name, m, expect);
    }

    // Frames shorter than their UDP length, from a host on the outside with a raw socket.
    for extra in [1u16, 4, 100, 1000, 30000] {
        let t = g.tok();
        g.push_as(
            "truncated_udp",
            &format!("a request, UDP length {extra} bytes more"),
            request("MESSAGE", &t, &via(&good_via(&t, ";rport")), b"", b""),
            Send::ShortUdp { extra },
            Truncated,
        );
    }
    for extra in [1u16, 100, 5000] {
        let t = g.tok();
        g.push_as(
            "truncated_udp",
            &format!("a response, UDP length {extra} bytes more"),
            response(200, &t, &via(&good_via(&t, ";rport")), b"", b""),
            Send::ShortUdp { extra },
            Truncated,
        );
    }
    for extra in [1u16, 64] {
        let t = g.tok();
        let mut m = format!("MESSAGE sip:{t}@198.51.100.10 SIP/2.0\r\n").into_bytes();
        m.extend_from_slice(format!("Via: SIP/2.0/UDP {SENT_BY};branch=z9hG4bK-").as_bytes());
        g.push_as(
            "truncated_udp",
            &format!("cut inside the Via, UDP length {extra} bytes more"),
            m,
            Send::ShortUdp { extra },
            Truncated,
        );
    }
    g.cases
}

/// The families, in corpus order.
pub fn families(cases: &[Case]) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = Vec::new();
    for c in cases {
        if !f.contains(&c.family) {
            f.push(c.family);
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fixtures::Datapath as _, host::Host, packets::udp4};
    use rport_common::{Counter, role};

    #[test]
    fn at_least_200_cases_unique_tokens() {
        let c = corpus();
        assert!(c.len() >= 200, "{}", c.len());
        for (i, x) in c.iter().enumerate() {
            assert_eq!(x.id, i);
            // The token is there once (so a receiver can tell the cases apart).
            let tok = x.token();
            let n = x
                .payload
                .windows(7)
                .filter(|w| *w == tok.as_bytes())
                .count();
            assert!(n >= 1, "{}", x.name);
            assert!(x.payload.len() <= 65507, "{}: {}", x.name, x.payload.len());
        }
    }

    /// Every case that is one frame, through the XDP program's model (a phone's datagram
    /// from its NAT, or the short frame), moves the counter its expectation names; and
    /// where the daemon is expected to rewrite, the rewrite agrees.
    #[test]
    fn single_frame_cases_on_the_model() {
        use rport_userspace::sip::rewrite::{Observed, Policy};
        let mut dp = Host::default();
        let prior = crate::fixtures::Prior {
            sockets: vec![0],
            ..Default::default()
        };
        let mut bad = Vec::new();
        for c in corpus() {
            if c.frames(1500) > 1 || c.expect == Expect::Fragments {
                if c.expect != Expect::Fragments {
                    bad.push(format!(
                        "{} #{} {}: {} frames",
                        c.family,
                        c.id,
                        c.name,
                        c.frames(1500)
                    ));
                }
                continue;
            }
            dp.reset(&prior).unwrap();
            let mut f = udp4(
                crate::packets::NAT_V4,
                crate::packets::NAT_PORT,
                crate::packets::SERVER_V4,
                5060,
                &c.payload,
            );
            if let Send::ShortUdp { extra } = c.send {
                let l = u16::from_be_bytes([f[38], f[39]]) + extra;
                f[38..40].copy_from_slice(&l.to_be_bytes());
            }
            let before = dp.counters().unwrap();
            dp.run(&f, role::OUTSIDE, 0).unwrap();
            let after = dp.counters().unwrap();
            for (group, name, per) in c.expect.counters() {
                if *group != "xdp" {
                    continue;
                }
                let i = Counter::ALL.iter().position(|x| x.name() == *name).unwrap();
                if after[i] - before[i] != *per {
                    let moved: Vec<&str> = Counter::ALL
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| after[*i] != before[*i])
                        .map(|(_, c)| c.name())
                        .collect();
                    bad.push(format!(
                        "{} #{} {}: {name} {moved:?}",
                        c.family, c.id, c.name
                    ));
                }
            }
            let src = Observed {
                addr: "203.0.113.1".parse().unwrap(),
                port: crate::packets::NAT_PORT,
            };
            let p = Policy::default();
            let (_, r) = rport_userspace::sip::props::rewrite(&c.payload, src, p);
            let got = match r {
                Ok(r) if r.changed => Expect::Rewritten,
                Ok(_) => Expect::Unchanged,
                Err(_) => Expect::RewriteError,
            };
            if matches!(
                c.expect,
                Expect::Rewritten | Expect::Unchanged | Expect::RewriteError
            ) && got != c.expect
            {
                bad.push(format!(
                    "{} #{} {}: the rewrite says {got:?}",
                    c.family, c.id, c.name
                ));
            }
            if let Err(e) = rport_userspace::sip::props::check_rewrite(&c.payload, src, p) {
                bad.push(format!("{} #{} {}: {e}", c.family, c.id, c.name));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
