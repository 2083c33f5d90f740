//! The XDP program under random and mutated frames (issue 13): a seeded property test
//! through BPF_PROG_TEST_RUN, with the host model (`rport_ebpf::model`) run side by side.
//!
//! Frames: random bytes (some with an IP ethertype, some as UDP to 5060 with a random
//! payload), well-formed Ethernet/VLAN/IPv4/IPv6/UDP frames with random SIP messages
//! (REGISTER, INVITE, responses; Vias, Contacts, `;rptag=` in Vias and Request-URIs, good,
//! expired, forged and foreign tags, random parameters), and mutations of the fixture
//! table's frames and of generated ones (bit flips, truncations, length fields that lie,
//! inserted and deleted bytes). They arrive on the outside and the inside device, rx queues
//! 0..4, in episodes of [`EPISODE`] frames that share a state: bindings left by earlier
//! requests (so responses find them and get steered), tag keys or none, force-rport
//! networks, daemon sockets on some outside queues.
//!
//! Properties of every frame:
//! - the verdict is XDP_PASS or XDP_REDIRECT, and XDP_REDIRECT only for a message handed
//!   to the daemon on an outside queue that holds a socket;
//! - the frame leaves unchanged, unless steered (then: the TC metadata in front of it);
//! - `packets` rises by exactly 1, every counter by at most 1; a frame that is not a SIP
//!   message (by an oracle independent of rport's parser) counts exactly one "why not"
//!   counter; a SIP message counts `sip_requests` or `sip_responses` and exactly one
//!   "what became of it" counter; only a recorded request counts binding counters;
//! - BINDINGS changes only for a SIP request on an outside interface: one key, whose
//!   binding's source is the frame's source; `binding_new` and `binding_recorded` match
//!   what changed;
//! - the kernel and the model agree on verdict, counters, output bytes and bindings (a
//!   steered frame is handed to TC by the kernel and steered in XDP by the model: the
//!   model's output must be the kernel's metadata applied to the frame).
//!
//! Reproducible: `RPORT_PROPS_SEED` (default fixed) and `RPORT_PROPS_FRAMES` (default
//! 20,000); a failure prints the seed, the episode (`RPORT_PROPS_EPISODE=n` runs only it),
//! the frame in hex and what went wrong.
use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use Counter::*;
use rport_common::{
    Binding, Counter, SteerMeta, role,
    tag::{self, KIND_CONTACT, KIND_VIA, Tag},
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};
use rport_tests::{
    fixtures::{self, Datapath, Prior},
    host::Host,
    packets::{CLIENT_V6, NAT_PORT, NAT_V4, PHONE_V4, PHONE_V6, SERVER_V4, SERVER_V6},
    xdp::{BED_RX_QUEUES, can_load_bpf, with_bed},
};
use rport_userspace::datapath::keys::tai_now_s;

/// Frames per episode (a state: bindings, keys, sockets, force-rport networks).
const EPISODE: usize = 40;
const DEFAULT_SEED: u64 = 0x5eed_0013;
const DEFAULT_FRAMES: usize = 20_000;

// ---------------------------------------------------------------------------------------
// A seeded generator.

/// xorshift64*, seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn u16(&mut self) -> u16 {
        self.next() as u16
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

// ---------------------------------------------------------------------------------------
// Frames.

const MAC: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

fn csum_fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// An Ethernet frame (with `tags`: (TPID, VID) pairs) carrying UDP `sport`→`dport` with
/// `payload`, between `src` and `dst` (both of one family), checksums valid; `ip_options`
/// bytes of IPv4 options (a multiple of 4, NOPs).
fn udp_frame(
    tags: &[(u16, u16)],
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    ip_options: usize,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = MAC.to_vec();
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    let ulen = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(ulen as usize);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let hl = 20 + ip_options;
            let mut ip = vec![0x40 | (hl / 4) as u8, 0];
            ip.extend_from_slice(&((hl + udp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend(std::iter::repeat_n(1u8, ip_options));
            let c = csum_fold(sum(&ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let pseudo = sum(&s.octets()) + sum(&d.octets()) + 17 + u32::from(ulen);
            let mut c = csum_fold(pseudo + sum(&udp));
            if c == 0 {
                c = 0xffff;
            }
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&ulen.to_be_bytes());
            ip.extend_from_slice(&[17, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let pseudo = sum(&s.octets()) + sum(&d.octets()) + 17 + u32::from(ulen);
            let mut c = csum_fold(pseudo + sum(&udp));
            if c == 0 {
                c = 0xffff;
            }
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        _ => unreachable!("one family"),
    }
    f.extend_from_slice(&udp);
    f
}

/// Where the layers of a frame are, read as plainly as possible (the generator's own
/// reading, not rport's): the IP header's offset, IPv6 or not, the UDP header's offset.
fn locate(f: &[u8]) -> Option<(usize, bool, usize)> {
    let mut off = 14;
    let mut ty = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    for _ in 0..2 {
        if ty == 0x8100 || ty == 0x88a8 {
            ty = u16::from_be_bytes([*f.get(off + 2)?, *f.get(off + 3)?]);
            off += 4;
        }
    }
    match ty {
        0x0800 => Some((off, false, off + ((*f.get(off)? & 0xf) as usize) * 4)),
        0x86dd => Some((off, true, off + 40)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// The oracle: what a frame is, read independently of rport's parser.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
}

#[derive(Debug, Default)]
struct Facts {
    /// A SIP message (UDP on port 5060 whose payload starts as one).
    msg: Option<Kind>,
    ipv6: bool,
    /// The outer VLAN id is not 0 (what the `vlan` counter counts).
    vlan: bool,
    src: [u8; 16],
    sport: u16,
    dst: [u8; 16],
    dport: u16,
    vlans: (u16, u16),
    /// A first fragment (MF set, offset 0).
    first_fragment: bool,
    /// Not a fragment, and the UDP length claims more than the frame or the IP length
    /// holds (what the `truncated` counter counts of a message).
    short: bool,
}

fn v4m(a: [u8; 4]) -> [u8; 16] {
    rport_common::addr_to_16(Ipv4Addr::from(a).into())
}

fn facts(f: &[u8]) -> Facts {
    let mut x = Facts::default();
    let be = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?])) };
    let Some(mut ty) = be(12) else { return x };
    let mut off = 14;
    let mut vids = Vec::new();
    while vids.len() < 2 && (ty == 0x8100 || ty == 0x88a8) {
        let (Some(tci), Some(t)) = (be(off), be(off + 2)) else {
            return x;
        };
        vids.push(tci & 0x0fff);
        ty = t;
        off += 4;
    }
    x.vlans = (
        vids.first().copied().unwrap_or(0),
        vids.get(1).copied().unwrap_or(0),
    );
    x.vlan = x.vlans.0 != 0;
    let (udp, ip_end) = if ty == 0x0800 {
        let Some(ip) = f.get(off..off + 20) else {
            return x;
        };
        let ihl = (ip[0] & 0xf) as usize * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 {
            return x;
        }
        if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
            return x; // a later fragment: no UDP header
        }
        x.first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x2000 != 0;
        x.src = v4m([ip[12], ip[13], ip[14], ip[15]]);
        x.dst = v4m([ip[16], ip[17], ip[18], ip[19]]);
        (off + ihl, off + u16::from_be_bytes([ip[2], ip[3]]) as usize)
    } else if ty == 0x86dd {
        let Some(ip) = f.get(off..off + 40) else {
            return x;
        };
        if ip[6] != 17 {
            return x;
        }
        x.src.copy_from_slice(&ip[8..24]);
        x.dst.copy_from_slice(&ip[24..40]);
        x.ipv6 = true;
        (
            off + 40,
            off + 40 + u16::from_be_bytes([ip[4], ip[5]]) as usize,
        )
    } else {
        return x;
    };
    let Some(u) = f.get(udp..udp + 8) else {
        return x;
    };
    x.sport = u16::from_be_bytes([u[0], u[1]]);
    x.dport = u16::from_be_bytes([u[2], u[3]]);
    let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
    if ulen < 8 || (x.sport != 5060 && x.dport != 5060) {
        return x;
    }
    x.short = !x.first_fragment && (udp + ulen > f.len() || udp + ulen > ip_end);
    let end = (udp + ulen).min(ip_end).min(f.len());
    let payload = f.get(udp + 8..end.max(udp + 8)).unwrap_or(&[]);
    if payload.len() >= 8 {
        if payload.starts_with(b"SIP/2.0 ") {
            x.msg = Some(Kind::Response);
        } else if payload[0].is_ascii_uppercase() {
            x.msg = Some(Kind::Request);
        }
    }
    x
}

// ---------------------------------------------------------------------------------------
// SIP messages.

/// One episode's state on both datapaths, and what the generator draws from.
struct Episode {
    prior: Prior,
    /// Branches shared by the episode's requests and responses.
    branches: Vec<String>,
    /// Frames generated so far (mutation material).
    made: Vec<Vec<u8>>,
}

const CLIENTS4: &[[u8; 4]] = &[NAT_V4, [203, 0, 113, 7], [192, 168, 7, 9]];
const SERVERS4: &[[u8; 4]] = &[SERVER_V4, [198, 51, 100, 99]];
const OTHER_V6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const OTHER_KEY: [u8; 16] = [0xa5; 16];

fn ip_text(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// An `rptag` value: mostly one rport could have made (under the fixture key or another
/// gateway's, of either kind, fresh or old, for `server` or another), sometimes altered or
/// junk. Ages stay far from the limits (300 s, a day; 16-second steps), so that the
/// kernel's clock and the host's cannot disagree on them.
fn rptag(r: &mut Rng, kind: u8, server: [u8; 16], server_port: u16) -> String {
    if r.pct(10) {
        let n = r.below(40);
        return (0..n)
            .map(|_| *r.pick(b"0123456789abcdefABCDEFxz-.") as char)
            .collect();
    }
    let key = if r.pct(80) {
        fixtures::tag_keys().slots[1].key
    } else {
        OTHER_KEY
    };
    let kind = if r.pct(85) { kind } else { kind ^ 1 };
    let age = *r.pick(&[10u64, 10, 400, 3000, 90_000]);
    let target = if r.pct(80) {
        v4m(NAT_V4)
    } else if r.pct(50) {
        CLIENT_V6
    } else {
        v4m(*r.pick(CLIENTS4))
    };
    let port = if r.pct(80) { NAT_PORT } else { r.u16() };
    let id = if r.pct(90) { 1 } else { r.below(8) as u8 };
    let server = if r.pct(85) {
        server
    } else {
        v4m(*r.pick(SERVERS4))
    };
    let t = Tag::new(id, kind, target, port, tai_now_s() - age).sign(&key, &server, server_port, 0);
    let mut s = String::from_utf8(tag::encode(&t).as_bytes().to_vec()).expect("hex");
    if r.pct(10) && !s.is_empty() {
        // One digit changed, or the tail cut.
        let mut b = s.into_bytes();
        let i = r.below(b.len());
        if r.pct(50) {
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        } else {
            b.truncate(i);
        }
        s = String::from_utf8(b).expect("hex");
    }
    s
}

/// A top Via (or a header that almost is one), its sent-by drawn around the frame's source:
/// mostly one a phone would send (so that requests are recorded and responses find their
/// bindings), else anything near one.
fn via(
    r: &mut Rng,
    ep: &Episode,
    src: IpAddr,
    sport: u16,
    tag_for: Option<([u8; 16], u16)>,
) -> String {
    if r.pct(65) {
        let host = match r.below(4) {
            0 | 1 => "192.168.1.50".to_string(),
            2 => ip_text(src),
            _ => r
                .pick(&["100.64.1.2", "phone.invalid", "[2001:db8:ff::50]"])
                .to_string(),
        };
        let port = r.pick(&["", ":5060", ":5062"]).to_string();
        let mut v = format!(
            "Via: SIP/2.0/UDP {host}{port};branch={}",
            r.pick(&ep.branches)
        );
        if r.pct(60) {
            let p = *r.pick(&[";rport", ";rport=32415;received=203.0.113.1"]);
            v.push_str(p);
        }
        if let Some((server, port)) = tag_for {
            if r.pct(30) {
                v.push_str(&format!(";rptag={}", rptag(r, KIND_VIA, server, port)));
            }
        }
        return v;
    }
    let name = *r.pick(&["Via", "Via", "Via", "v", "VIA", "via", "Vía", "Viaa"]);
    let colon = *r.pick(&[": ", ": ", ":", " : ", "\t:\t"]);
    let proto = *r.pick(&[
        "SIP/2.0/UDP",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP",
        "SIP/2.0/TCP",
        "SIP / 2.0 / UDP",
        "SIP/2.0/udp",
        "SIP/3.0/UDP",
        "SIP/2.0",
    ]);
    let host = match r.below(12) {
        0..=2 => "192.168.1.50".to_string(),
        3 | 4 => ip_text(src),
        5 => "100.64.1.2".into(),
        6 => "phone.invalid".into(),
        7 => "[2001:db8:ff::50]".into(),
        8 => "10.0.0.1".into(),
        9 => "".into(),
        10 => r
            .pick(&["1.2.3", "999.1.1.1", "[2001:db8::", "a..b", "[::1]"])
            .to_string(),
        _ => format!("h{}.example", r.below(100)),
    };
    let port = match r.below(8) {
        0 | 1 => String::new(),
        2 | 3 => ":5060".into(),
        4 => format!(":{sport}"),
        5 => format!(":{}", r.u16()),
        _ => r
            .pick(&[":", ":99999", ":abc", ":0", ": 5060", ":5060x"])
            .to_string(),
    };
    let mut params: Vec<String> = Vec::new();
    if r.pct(90) {
        params.push(format!(";branch={}", r.pick(&ep.branches)));
    }
    if r.pct(60) {
        params.push(
            r.pick(&[
                ";rport",
                ";rport",
                ";rport=32415",
                ";rport=",
                ";RPORT",
                ";rport=x",
            ])
            .to_string(),
        );
    }
    if r.pct(20) {
        params.push(format!(
            ";received={}",
            r.pick(&["203.0.113.1", "2001:db8:1::50", "x"])
        ));
    }
    if let Some((server, port)) = tag_for {
        if r.pct(50) {
            params.push(format!(";rptag={}", rptag(r, KIND_VIA, server, port)));
        }
    } else if r.pct(5) {
        params.push(format!(
            ";rptag={}",
            rptag(r, KIND_VIA, v4m(SERVER_V4), 5060)
        ));
    }
    if r.pct(20) {
        params.push(
            r.pick(&[";ttl=1", ";maddr=x", ";x", ";branch", ";alias", "; x = y"])
                .to_string(),
        );
    }
    // Shuffle the parameters (Fisher-Yates).
    for i in (1..params.len()).rev() {
        params.swap(i, r.below(i + 1));
    }
    let mut v = format!("{name}{colon}{proto} {host}{port}{}", params.concat());
    if r.pct(10) {
        v.push_str(&format!(
            ", SIP/2.0/UDP 198.51.100.99;branch={}",
            r.pick(&ep.branches)
        ));
    }
    if r.pct(5) {
        v = v.replacen(' ', "\r\n ", 1);
    }
    v
}

/// A SIP message from `src`:`sport` to `dst`:`dport`.
fn sip(r: &mut Rng, ep: &Episode, kind: Kind, src: IpAddr, sport: u16, dst: IpAddr) -> Vec<u8> {
    let src16 = rport_common::addr_to_16(src);
    let mut lines = Vec::new();
    match kind {
        Kind::Request => {
            let method = *r.pick(&[
                "REGISTER", "INVITE", "INVITE", "OPTIONS", "MESSAGE", "BYE", "ACK", "NOTIFY", "X",
            ]);
            let mut uri = format!("sip:100@{}", ip_text(dst));
            if r.pct(50) {
                uri.push_str(":5060");
            }
            if r.pct(40) {
                // The Contact tag a server finds in the Request-URI (for the server
                // sending it: `src`, any port).
                uri.push_str(&format!(";rptag={}", rptag(r, KIND_CONTACT, src16, 0)));
            }
            if r.pct(20) {
                let p = *r.pick(&[";transport=udp", ";lr", ";rptag", ";rptag="]);
                uri.push_str(p);
            }
            lines.push(format!("{method} {uri} SIP/2.0"));
        }
        Kind::Response => {
            let code = *r.pick(&[100, 180, 183, 200, 200, 302, 401, 404, 486, 603]);
            lines.push(format!("SIP/2.0 {code} Whatever"));
        }
    }
    let tag_for = (kind == Kind::Response).then_some((src16, sport));
    let mut headers = vec![
        "Max-Forwards: 70".to_string(),
        "From: <sip:alice@198.51.100.10>;tag=1".into(),
        "To: <sip:alice@198.51.100.10>".into(),
        format!("Call-ID: call-{}@192.168.1.50", r.below(3)),
        "CSeq: 1 REGISTER".into(),
    ];
    if r.pct(50) {
        let c = match r.below(5) {
            0 => "m: <sip:alice@192.168.1.50:5060>".to_string(),
            1 => "Contact: *".into(),
            2 => format!(
                "Contact: <sip:alice@192.168.1.50:5060;rptag={}>",
                rptag(r, KIND_CONTACT, src16, 0)
            ),
            _ => "Contact: <sip:alice@192.168.1.50:5060>".into(),
        };
        headers.push(c);
    }
    if r.pct(15) {
        let n = *r.pick(&[10usize, 200, 1100, 1600]);
        headers.push(format!("X-Pad: {}", "p".repeat(n)));
    }
    for i in (1..headers.len()).rev() {
        headers.swap(i, r.below(i + 1));
    }
    if r.pct(92) {
        let at = if r.pct(70) {
            0
        } else {
            r.below(headers.len() + 1)
        };
        headers.insert(at, via(r, ep, src, sport, tag_for));
        if r.pct(20) {
            headers.insert(at + 1, via(r, ep, src, sport, None));
        }
    }
    lines.extend(headers);
    lines.push("Content-Length: 0".into());
    let mut m = lines.join("\r\n");
    m.push_str("\r\n\r\n");
    if r.pct(10) {
        m.push_str("v=0\r\no=- 1 1 IN IP4 192.168.1.50\r\n");
    }
    m.into_bytes()
}

/// A well-formed UDP frame with a SIP message, a keep-alive or random bytes on 5060,
/// between hosts of the episode's pools; its role and rx queue.
fn sip_frame(r: &mut Rng, ep: &Episode) -> (Vec<u8>, u32, u32) {
    let v6 = r.pct(20);
    let kind = if r.pct(55) {
        Kind::Request
    } else {
        Kind::Response
    };
    let client = |r: &mut Rng| -> IpAddr {
        if v6 {
            IpAddr::from(*r.pick(&[CLIENT_V6, PHONE_V6, OTHER_V6]))
        } else {
            IpAddr::from(*r.pick(&[NAT_V4, NAT_V4, PHONE_V4, [203, 0, 113, 7]]))
        }
    };
    let server = |r: &mut Rng| -> IpAddr {
        if v6 {
            IpAddr::from(*r.pick(&[SERVER_V6, SERVER_V6, OTHER_V6]))
        } else {
            IpAddr::from(*r.pick(SERVERS4))
        }
    };
    let cport = |r: &mut Rng| {
        let any = r.u16();
        *r.pick(&[NAT_PORT, NAT_PORT, 5060, 40000, any])
    };
    let sport = |r: &mut Rng| *r.pick(&[5060u16, 5060, 5060, 5080]);
    // Requests mostly from a client on the outside, responses mostly from a server on the
    // inside; each way round sometimes (a server's request toward a client, a client's
    // answer).
    let towards_server = match kind {
        Kind::Request => r.pct(80),
        Kind::Response => r.pct(25),
    };
    let (src, sp, dst, dp) = if towards_server {
        (client(r), cport(r), server(r), sport(r))
    } else {
        (server(r), sport(r), client(r), cport(r))
    };
    let role = if towards_server == r.pct(90) {
        role::OUTSIDE
    } else {
        role::INSIDE
    };
    let payload = match r.below(20) {
        0 => r
            .pick(&[&b"\r\n\r\n"[..], b"\r\n", &[0, 0, 0, 0], b"\r\n\r\n\r\n"])
            .to_vec(),
        1 => {
            let mut s = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
            s.extend(r.bytes(12));
            s
        }
        2 => {
            let n = r.below(64);
            r.bytes(n)
        }
        _ => sip(r, ep, kind, src, sp, dst),
    };
    let tags: &[(u16, u16)] = match r.below(10) {
        0 => &[(0x8100, 100)],
        1 => &[(0x88a8, 100), (0x8100, 200)],
        2 => &[(0x8100, 0)],
        _ => &[],
    };
    let opts = if !v6 && r.pct(10) { 4 * r.below(11) } else { 0 };
    let mut f = udp_frame(tags, src, sp, dst, dp, opts, &payload);
    if r.pct(3) {
        // A first fragment (MF set, offset 0).
        if let Some((l3, false, _)) = locate(&f) {
            f[l3 + 6] = 0x20;
        }
    }
    (f, role, r.below(BED_RX_QUEUES as usize) as u32)
}

/// Random bytes: a frame of any content, or with an IP ethertype, or a UDP datagram to
/// 5060 whose payload is random (sometimes starting with an upper-case letter).
fn random_frame(r: &mut Rng) -> Vec<u8> {
    let n = if r.pct(80) {
        14 + r.below(200)
    } else {
        14 + r.below(1500)
    };
    let mut f = r.bytes(n);
    match r.below(4) {
        0 => {}
        1 => {
            let ty = *r.pick(&[0x0800u16, 0x86dd, 0x8100, 0x88a8]);
            f[12..14].copy_from_slice(&ty.to_be_bytes());
        }
        _ => {
            let n = r.below(300);
            let mut p = r.bytes(n);
            if let Some(b) = p.first_mut() {
                if r.pct(50) {
                    *b = b'A' + (*b % 26);
                }
            }
            let (src, dst) = if r.pct(75) {
                (
                    IpAddr::from(*r.pick(CLIENTS4)),
                    IpAddr::from(*r.pick(SERVERS4)),
                )
            } else {
                (IpAddr::from(CLIENT_V6), IpAddr::from(SERVER_V6))
            };
            f = udp_frame(&[], src, r.u16(), dst, 5060, 0, &p);
        }
    }
    f
}

/// `f` mutated one to three times.
fn mutate(r: &mut Rng, f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    for _ in 0..1 + r.below(3) {
        let loc = locate(&f);
        match r.below(9) {
            0 | 1 => {
                for _ in 0..1 + r.below(4) {
                    let i = r.below(f.len());
                    f[i] ^= 1 << r.below(8);
                }
            }
            2 => {
                let n = 14 + r.below(f.len() - 13);
                f.truncate(n);
            }
            3 | 4 => {
                // A length field that lies: IPv4 total length, IPv6 payload length, UDP
                // length; to 0, a little less or more, or anything.
                let Some((l3, v6, l4)) = loc else { continue };
                let at = match r.below(2) {
                    0 if v6 => l3 + 4,
                    0 => l3 + 2,
                    _ => l4 + 4,
                };
                if at + 2 > f.len() {
                    continue;
                }
                let old = u16::from_be_bytes([f[at], f[at + 1]]);
                let new = match r.below(5) {
                    0 => 0,
                    1 => old.wrapping_sub(1 + r.below(16) as u16),
                    2 => old.wrapping_add(1 + r.below(16) as u16),
                    3 => r.below(9) as u16,
                    _ => r.u16(),
                };
                f[at..at + 2].copy_from_slice(&new.to_be_bytes());
            }
            5 => {
                let i = r.below(f.len() + 1);
                let ins: Vec<u8> = if r.pct(50) {
                    let n = 1 + r.below(16);
                    r.bytes(n)
                } else {
                    r.pick(&[
                        &b"\r\n"[..],
                        b";rport",
                        b"Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK-m",
                        b",",
                        b";rptag=",
                        b" ",
                        b"\r\n ",
                        b":",
                        b"[",
                    ])
                    .to_vec()
                };
                f.splice(i..i, ins);
            }
            6 => {
                let i = r.below(f.len());
                let n = 1 + r.below(16);
                let end = (i + n).min(f.len());
                f.drain(i..end);
            }
            7 => {
                // A header byte that decides the path: ethertype, version/IHL, protocol or
                // next header, fragment field, a port.
                let Some((l3, v6, l4)) = loc else { continue };
                let at = *r.pick(&[
                    12,
                    13,
                    l3,
                    if v6 { l3 + 6 } else { l3 + 9 },
                    l3 + 6,
                    l3 + 7,
                    l4,
                    l4 + 1,
                    l4 + 2,
                    l4 + 3,
                ]);
                if at < f.len() {
                    f[at] = *r.pick(&[0, 1, 0x13, 0xc4, 17, 44, 0x20, 0x45, 0x4f, 0x60, 0xff]);
                }
            }
            _ => {
                let n = 1 + r.below(64);
                let tail = r.bytes(n);
                f.extend(tail);
            }
        }
        if f.len() < 14 {
            f.resize(14, 0);
        }
    }
    f.truncate(3000);
    f
}

// ---------------------------------------------------------------------------------------
// Running a frame on a datapath, and the properties.

/// A binding with what belongs to the runner (its clock, its device numbers) zeroed.
fn norm(mut b: Binding) -> Binding {
    b.first_seen_ns = 0;
    b.last_seen_ns = 0;
    b.ifindex = 0;
    b
}

/// What one frame did on one datapath.
#[derive(Debug)]
struct Obs {
    verdict: u32,
    out: Vec<u8>,
    /// Counter deltas, `Counter::ALL` order.
    counters: Vec<u64>,
    /// Keys new or changed by the frame, with their (normalized) binding and whether new.
    changed: Vec<(u64, Binding, bool)>,
    /// The raw binding of each changed key (timestamps kept).
    raw: Vec<Binding>,
}

/// A datapath and what it held after the previous frame.
struct Tracked<'a, D> {
    dp: &'a mut D,
    counters: Vec<u64>,
    bindings: HashMap<u64, Binding>,
}

impl<'a, D: Datapath> Tracked<'a, D> {
    fn new(dp: &'a mut D) -> anyhow::Result<Self> {
        let counters = dp.counters()?;
        Ok(Tracked {
            dp,
            counters,
            bindings: HashMap::new(),
        })
    }
    fn reset(&mut self, prior: &Prior) -> anyhow::Result<()> {
        self.dp.reset(prior)?;
        self.bindings = self.dp.bindings()?.into_iter().collect();
        self.counters = self.dp.counters()?;
        Ok(())
    }
    fn run(&mut self, frame: &[u8], role: u32, q: u32) -> anyhow::Result<Obs> {
        let (verdict, out) = self.dp.run(frame, role, q)?;
        let c = self.dp.counters()?;
        let counters = c.iter().zip(&self.counters).map(|(a, b)| a - b).collect();
        self.counters = c;
        let now: HashMap<u64, Binding> = self.dp.bindings()?.into_iter().collect();
        let mut changed: Vec<(u64, Binding, bool)> = Vec::new();
        let mut raw = Vec::new();
        let mut keys: Vec<&u64> = now.keys().collect();
        keys.sort();
        for k in keys {
            let b = now[k];
            match self.bindings.get(k) {
                Some(old) if *old == b => {}
                old => {
                    changed.push((*k, norm(b), old.is_none()));
                    raw.push(b);
                }
            }
        }
        if now.len() < self.bindings.len() {
            // A key gone: reported as a change nobody may make (LRU eviction cannot
            // happen in an episode's few keys).
            changed.push((0, Binding::default(), false));
        }
        self.bindings = now;
        Ok(Obs {
            verdict,
            out,
            counters,
            changed,
            raw,
        })
    }
}

/// "Why not" counters of a frame that is no SIP message: exactly one of them.
const NOT_A_MESSAGE: &[Counter] = &[
    NonSip,
    Truncated,
    IpFragment,
    KeepaliveCrlf,
    KeepaliveZero,
    KeepaliveStun,
    NonSipOnSipPort,
];

/// "What became of it" counters of a SIP message: exactly one of them (a response with a
/// Contact from outside with no daemon counts `userspace_unavailable` besides).
const FATE: &[Counter] = &[
    NoVia,
    ViaBeyondWindow,
    MalformedVia,
    RequestFromInside,
    RequestUnchanged,
    ToUserspace,
    UserspaceUnavailable,
    ResponseNoBinding,
    RequestAlreadyCorrect,
    ResponseAlreadyCorrect,
    ResponseContact,
    ResponseNotFromInside,
    ResponseSourceMismatch,
    ResponseSteered,
    RequestSteered,
    TagInvalid,
    RequestTagInvalid,
    TagExpired,
    RequestTagExpired,
];

/// Counters only a request rport records (or counts from inside) moves.
const VIA_COUNTERS: &[Counter] = &[
    RportEmpty,
    RportWithValue,
    NoRport,
    ReceivedPresent,
    SentByDiffers,
    SourcePortDiffers,
    SentByPrivate,
    SentByCgnat,
    SentByName,
    ForceRport,
];

/// Everything the kernel's run of one frame gets wrong by the properties, one line each.
fn properties(f: &[u8], role_: u32, q: u32, sockets: &[u32], k: &Obs, errs: &mut Vec<String>) {
    let c = |x: Counter| k.counters[x as usize];
    let fx = facts(f);
    if k.verdict != XDP_PASS && k.verdict != XDP_REDIRECT {
        errs.push(format!("verdict {} (neither PASS nor REDIRECT)", k.verdict));
    }
    if k.counters.iter().any(|d| *d > 1) {
        errs.push(format!(
            "a counter moved by more than 1: {:?}",
            moved(&k.counters)
        ));
    }
    if c(Packets) != 1 {
        errs.push(format!("packets moved by {}", c(Packets)));
    }
    let fate: u64 = FATE.iter().map(|x| c(*x)).sum();
    let fate = fate.saturating_sub(c(ResponseContact) & c(UserspaceUnavailable));
    let handed =
        c(ToUserspace) + (c(ResponseContact) & 1u64.saturating_sub(c(UserspaceUnavailable)));
    match fx.msg {
        None => {
            let why: u64 = NOT_A_MESSAGE.iter().map(|x| c(*x)).sum();
            let all: u64 = k.counters.iter().sum();
            if why != 1 || all != 2 {
                errs.push(format!(
                    "not a SIP message: want packets and one of {NOT_A_MESSAGE:?}, got {:?}",
                    moved(&k.counters)
                ));
            }
        }
        Some(kind) => {
            let (want_req, want_resp) = match kind {
                Kind::Request => (1, 0),
                Kind::Response => (0, 1),
            };
            if c(SipRequests) != want_req || c(SipResponses) != want_resp {
                errs.push(format!(
                    "a SIP {kind:?}: sip_requests {} sip_responses {}",
                    c(SipRequests),
                    c(SipResponses)
                ));
            }
            if fate != 1 {
                errs.push(format!(
                    "a SIP message counts {fate} of {FATE:?}: {:?}",
                    moved(&k.counters)
                ));
            }
            if c(Truncated) != fx.short as u64 || c(IpFragment) != fx.first_fragment as u64 {
                errs.push(format!(
                    "truncated {} ip_fragment {}: the frame is short {} a first fragment {}",
                    c(Truncated),
                    c(IpFragment),
                    fx.short,
                    fx.first_fragment
                ));
            }
            if c(Ipv6) != fx.ipv6 as u64 || c(Vlan) != fx.vlan as u64 {
                errs.push(format!(
                    "ipv6 {} vlan {}: the frame is ipv6 {} with outer VLAN id {}",
                    c(Ipv6),
                    c(Vlan),
                    fx.ipv6,
                    fx.vlans.0
                ));
            }
        }
    }
    // A recorded request: its binding counters; nothing else has any.
    let recorded = fx.msg == Some(Kind::Request)
        && (c(RequestUnchanged) + c(ToUserspace) + c(UserspaceUnavailable)) == 1;
    let stored = c(BindingRecorded) + c(BindingUpdateFailed);
    if stored != recorded as u64 || c(BindingNew) > c(BindingRecorded) {
        errs.push(format!(
            "binding counters {:?} for a frame that is {}a recorded request",
            moved(&k.counters),
            if recorded { "" } else { "not " }
        ));
    }
    let via_counted: u64 = VIA_COUNTERS.iter().map(|x| c(*x)).sum();
    if via_counted > 0 && !recorded && c(RequestFromInside) == 0 {
        errs.push(format!(
            "Via counters without a request to count them: {:?}",
            moved(&k.counters)
        ));
    }
    if (recorded || c(RequestFromInside) == 1)
        && c(RportEmpty) + c(RportWithValue) + c(NoRport) != 1
    {
        errs.push(format!(
            "a request's rport counted {} times",
            c(RportEmpty) + c(RportWithValue) + c(NoRport)
        ));
    }
    // Bindings: only a SIP request from outside writes one, for the frame's source.
    let new = k.changed.iter().filter(|x| x.2).count() as u64;
    if !k.changed.is_empty() {
        let sip_request_outside = fx.msg == Some(Kind::Request) && role_ == role::OUTSIDE;
        if !sip_request_outside || k.changed.len() != 1 {
            errs.push(format!(
                "bindings changed by a frame that is {:?} on role {role_}: {:?}",
                fx.msg, k.changed
            ));
        }
        for (key, b, _) in &k.changed {
            if b.src_addr != fx.src
                || b.src_port != fx.sport
                || b.dst_addr != fx.dst
                || b.dst_port != fx.dport
            {
                errs.push(format!(
                    "binding {key:#x} is {:?}:{} -> {:?}:{}, the frame {:?}:{} -> {:?}:{}",
                    b.src_addr,
                    b.src_port,
                    b.dst_addr,
                    b.dst_port,
                    fx.src,
                    fx.sport,
                    fx.dst,
                    fx.dport
                ));
            }
            if (b.vlan, b.vlan_inner) != fx.vlans {
                errs.push(format!(
                    "binding VLANs {:?}, the frame's {:?}",
                    (b.vlan, b.vlan_inner),
                    fx.vlans
                ));
            }
        }
    }
    if c(BindingRecorded) != k.changed.len() as u64 || c(BindingNew) != new {
        errs.push(format!(
            "binding_recorded {} binding_new {}, but {} keys changed ({new} new)",
            c(BindingRecorded),
            c(BindingNew),
            k.changed.len()
        ));
    }
    for b in &k.raw {
        if b.first_seen_ns == 0 || b.last_seen_ns < b.first_seen_ns {
            errs.push("binding timestamps not set".into());
        }
    }
    // Verdict: a redirect is a handover to the daemon, on an outside queue with a socket.
    let may_redirect = role_ == role::OUTSIDE && sockets.contains(&q);
    let want = if handed == 1 { XDP_REDIRECT } else { XDP_PASS };
    if k.verdict != want || (k.verdict == XDP_REDIRECT && !may_redirect) {
        errs.push(format!(
            "verdict {} with {:?} (role {role_}, queue {q}, sockets on {sockets:?})",
            k.verdict,
            moved(&k.counters)
        ));
    }
    // Output: unchanged unless steered; steered: handed to TC, the frame behind metadata.
    let steered = c(ResponseSteered) + c(RequestSteered) == 1;
    if !steered && k.out != f {
        errs.push("frame changed, not steered".into());
    }
    if steered {
        let meta = std::mem::size_of::<SteerMeta>();
        if c(SteerInXdp) == 1 || k.out.len() != f.len() + meta || k.out[meta..] != *f {
            errs.push("steered, but not the frame behind TC metadata".into());
        }
    }
}

fn moved(d: &[u64]) -> Vec<&'static str> {
    Counter::ALL
        .iter()
        .filter(|c| d[**c as usize] > 0)
        .map(|c| c.name())
        .collect()
}

/// The kernel's and the model's runs of one frame disagree: how, one line each.
fn agree(f: &[u8], k: &Obs, h: &Obs, errs: &mut Vec<String>) {
    if k.verdict != h.verdict {
        errs.push(format!("verdict: kernel {} model {}", k.verdict, h.verdict));
    }
    let mut hc = h.counters.clone();
    let steered = k.counters[ResponseSteered as usize] + k.counters[RequestSteered as usize] == 1;
    if steered && k.counters[SteerInXdp as usize] == 0 {
        // The kernel hands to TC what the model steers in XDP.
        hc[SteerInXdp as usize] = hc[SteerInXdp as usize].saturating_sub(1);
    }
    if k.counters != hc {
        errs.push(format!(
            "counters: kernel {:?} model {:?}",
            moved(&k.counters),
            moved(&h.counters)
        ));
    }
    let meta = std::mem::size_of::<SteerMeta>();
    if steered && k.counters[SteerInXdp as usize] == 0 && k.out.len() == f.len() + meta {
        // The model's output must be the kernel's decision applied to the frame.
        // SAFETY: SteerMeta is repr(C) plain data (layout test in rport-common); any
        // bytes are a value of it.
        let m: SteerMeta = unsafe { std::ptr::read_unaligned(k.out.as_ptr() as *const SteerMeta) };
        let mut want = f.to_vec();
        let mut w: &mut [u8] = &mut want;
        let ok = m.magic == SteerMeta::MAGIC
            && rport_ebpf::csum::steer(
                &mut w,
                m.l3 as usize,
                m.l4 as usize,
                m.ipv6 != 0,
                &m.addr,
                u16::from_be(m.port_be),
            )
            .is_some();
        if !ok || h.out != want {
            errs.push(format!(
                "steered: the model's frame {} is not the kernel's metadata applied ({})",
                hex(&h.out),
                hex(&k.out[..meta])
            ));
        }
    } else if k.out != h.out {
        errs.push(format!(
            "output: kernel {} model {}",
            hex(&k.out),
            hex(&h.out)
        ));
    }
    let kb: Vec<_> = k.changed.iter().map(|(k, b, n)| (*k, *b, *n)).collect();
    let hb: Vec<_> = h.changed.iter().map(|(k, b, n)| (*k, *b, *n)).collect();
    if kb != hb {
        errs.push(format!("bindings: kernel {kb:?} model {hb:?}"));
    }
}

/// The state of episode `n`: tag keys or none, sockets on some outside queues or none,
/// a force-rport network or none, the branches its messages share.
fn episode(r: &mut Rng) -> Episode {
    let mut prior = Prior::default();
    if r.pct(50) {
        prior.tag_keys = Some(fixtures::tag_keys());
    }
    if r.pct(25) {
        for q in 0..BED_RX_QUEUES {
            if r.pct(50) {
                prior.sockets.push(q);
            }
        }
    }
    if r.pct(20) {
        prior.force_rport.push(*r.pick(&[
            (IpAddr::from(NAT_V4), 32),
            (IpAddr::from([203, 0, 113, 0]), 24),
        ]));
    }
    let branches = (0..6)
        .map(|i| {
            if r.pct(80) {
                format!("z9hG4bK-{i}{:x}", r.below(1 << 16))
            } else {
                format!("{}", r.below(10_000))
            }
        })
        .collect();
    Episode {
        prior,
        branches,
        made: Vec::new(),
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            v.strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(default)
}

#[test]
fn random_and_mutated_frames() {
    if !can_load_bpf("random_and_mutated_frames") {
        return;
    }
    let seed = env("RPORT_PROPS_SEED", DEFAULT_SEED);
    let frames = env("RPORT_PROPS_FRAMES", DEFAULT_FRAMES as u64) as usize;
    let only = std::env::var("RPORT_PROPS_EPISODE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let corpus: Vec<Vec<u8>> = fixtures::table()
        .into_iter()
        .flat_map(|f| std::iter::once(f.frame).chain(f.prior.requests))
        .filter(|f| f.len() <= 3000)
        .collect();
    let started = Instant::now();
    let (stats, failures) = with_bed(move |bed| {
        let mut kernel = Tracked::new(bed)?;
        let mut model = Host::default();
        let mut host = Tracked::new(&mut model)?;
        let mut failures: Vec<String> = Vec::new();
        let mut stats: HashMap<&'static str, u64> = HashMap::new();
        let mut total = Vec::new();
        let episodes = frames.div_ceil(EPISODE);
        for n in 0..episodes {
            if only.is_some_and(|o| o != n) {
                continue;
            }
            let mut r = Rng::new(seed ^ (n as u64).wrapping_mul(0x9e37_79b9));
            let mut ep = episode(&mut r);
            kernel.reset(&ep.prior)?;
            host.reset(&ep.prior)?;
            for i in 0..EPISODE.min(frames - n * EPISODE) {
                let (f, role_, q, how) = match r.below(20) {
                    0..=4 => {
                        let f = random_frame(&mut r);
                        let role_ = *r.pick(&[role::OUTSIDE, role::INSIDE]);
                        (f, role_, r.below(BED_RX_QUEUES as usize) as u32, "random")
                    }
                    5..=12 => {
                        let (f, role_, q) = sip_frame(&mut r, &ep);
                        ep.made.push(f.clone());
                        (f, role_, q, "sip")
                    }
                    _ => {
                        let base = if ep.made.is_empty() || r.pct(50) {
                            r.pick(&corpus).clone()
                        } else {
                            r.pick(&ep.made).clone()
                        };
                        let f = mutate(&mut r, &base);
                        let role_ = *r.pick(&[role::OUTSIDE, role::INSIDE]);
                        (f, role_, r.below(BED_RX_QUEUES as usize) as u32, "mutated")
                    }
                };
                let k = kernel.run(&f, role_, q)?;
                let h = host.run(&f, role_, q)?;
                let mut errs = Vec::new();
                properties(&f, role_, q, &ep.prior.sockets, &k, &mut errs);
                agree(&f, &k, &h, &mut errs);
                *stats.entry(how).or_default() += 1;
                if total.is_empty() {
                    total = vec![0u64; k.counters.len()];
                }
                for (t, d) in total.iter_mut().zip(&k.counters) {
                    *t += d;
                }
                if !errs.is_empty() {
                    failures.push(format!(
                        "seed {seed:#x} episode {n} (RPORT_PROPS_EPISODE={n}) frame {i} ({how}), role {role_} rx queue {q}, sockets on {:?}, force-rport {:?}, tag keys {}:\n    frame {}\n    {}",
                        ep.prior.sockets,
                        ep.prior.force_rport,
                        ep.prior.tag_keys.is_some(),
                        hex(&f),
                        errs.join("\n    ")
                    ));
                    // The two datapaths may now hold different states: next episode.
                    break;
                }
                if failures.len() >= 10 {
                    break;
                }
            }
            if failures.len() >= 10 {
                break;
            }
        }
        let mut summary: Vec<String> = stats.iter().map(|(k, v)| format!("{k} {v}")).collect();
        summary.sort();
        let outcomes: Vec<String> = Counter::ALL
            .iter()
            .filter(|c| total.get(**c as usize).is_some_and(|t| *t > 0))
            .map(|c| format!("{} {}", c.name(), total[*c as usize]))
            .collect();
        Ok(((summary, outcomes, total), failures))
    })
    .expect("bed");
    let (summary, outcomes, total) = stats;
    println!(
        "seed {seed:#x}: {} frames ({}) in {:.1} s",
        total.first().copied().unwrap_or(0),
        summary.join(", "),
        started.elapsed().as_secs_f64()
    );
    println!("counters over all frames: {}", outcomes.join(", "));
    assert!(
        failures.is_empty(),
        "{} failures (seed {seed:#x}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Not a test of nothing: the generators reach every kind of outcome that matters.
    if only.is_none() && frames >= DEFAULT_FRAMES {
        for c in [
            RequestUnchanged,
            ToUserspace,
            UserspaceUnavailable,
            ResponseSteered,
            RequestSteered,
            TagSteered,
            BindingSteered,
            TagInvalid,
            TagExpired,
            RequestTagInvalid,
            RequestTagExpired,
            ResponseContact,
            ResponseNoBinding,
            ResponseSourceMismatch,
            ResponseNotFromInside,
            MalformedVia,
            NoVia,
            ViaBeyondWindow,
            Truncated,
            IpFragment,
            KeepaliveStun,
            NonSipOnSipPort,
            BindingNew,
        ] {
            assert!(total[c as usize] > 0, "no frame counted {}", c.name());
        }
    }
}
