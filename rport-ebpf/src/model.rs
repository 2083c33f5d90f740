//! The XDP program on the host: the steps of `main.rs` over a byte slice and plain maps.
//!
//! Same parser, same scanner dispatch ([`Scan::run_chunked`] is the `bpf_loop` callback's
//! loop), same decision, same counters and the same steer rewrite; only the map types and
//! the helpers differ. Tests run fixture tables through it without a kernel, and the same
//! table through BPF_PROG_TEST_RUN checks that the two agree. What it cannot model: the
//! LRU eviction of a full `BINDINGS` map ([`rport_common::MAX_BINDINGS`] entries), and a
//! map update the kernel refuses (here every binding write succeeds).
//!
//! Host only (std: hash maps, `Vec`).

use std::collections::{HashMap, HashSet};

use rport_common::{Binding, Counter, IfaceConf, SIP_PORT};

use crate::{
    csum,
    decide::{self, Counters, Done, Ingress, Lookups, Outcome, Then, XDP_PASS, XDP_REDIRECT},
    fib,
    parse::{self, Headers},
    scan::Scan,
};

/// The program's maps, as plain collections.
#[derive(Clone, Debug)]
pub struct HostMaps {
    /// `BINDINGS`, by transaction key.
    pub bindings: HashMap<u64, Binding>,
    /// `SIP_PORTS`: the UDP ports that carry SIP.
    pub sip_ports: HashSet<u16>,
    /// `FORCE_RPORT`: networks as (address in the 16-byte map encoding, prefix length in
    /// bits over it; IPv4 networks are IPv4-mapped, so 96 + their prefix).
    pub force_rport: Vec<([u8; 16], u32)>,
    /// An AF_XDP socket is bound at every XSKMAP index (the daemon runs): redirects
    /// succeed. False: as under BPF_PROG_TEST_RUN, they fall back to XDP_PASS.
    pub xsk_bound: bool,
    /// `IFACES`, by ifindex.
    pub ifaces: HashMap<u32, IfaceConf>,
    /// `TAG_KEYS[0]`.
    pub tag_keys: rport_common::tag::TagKeys,
    /// `bpf_ktime_get_tai_ns` in seconds.
    pub tai_now_s: u64,
    /// The `RPORT_EGRESS_BYPASS` global (`--egress bypass`).
    pub egress_bypass: bool,
    /// What `bpf_fib_lookup` answers, whatever the query (the host has no routing table).
    pub fib: fib::Fib,
}

impl Default for HostMaps {
    /// What `XdpHarness::load` starts from: SIP port 5060, nothing else.
    fn default() -> Self {
        HostMaps {
            bindings: HashMap::new(),
            sip_ports: HashSet::from([SIP_PORT]),
            force_rport: Vec::new(),
            xsk_bound: false,
            ifaces: HashMap::new(),
            tag_keys: rport_common::tag::TagKeys::default(),
            tai_now_s: 0,
            egress_bypass: false,
            fib: fib::Fib::Pass(fib::NoHop::NotForwarded),
        }
    }
}

/// Ingress ifindex of a [`run`]: that of BPF_PROG_TEST_RUN without a context (loopback),
/// where `XdpHarness::set_role` puts its role.
pub const IFINDEX: u32 = 1;

/// One run in full: the verdict, the counters it bumped and the outcome they came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub verdict: u32,
    pub counters: Counters,
    pub outcome: Outcome,
}

/// Runs the program once on `frame` (rewritten in place when a response is steered),
/// arriving at [`IFINDEX`] with `role` (its XSKMAP slot from `maps.ifaces[IFINDEX]`, 0
/// when absent) on rx queue `rx_queue`, at boot-clock time `now_ns`. Returns the verdict
/// and the counters bumped (each once, in slot order, `packets` included).
pub fn run(
    frame: &mut [u8],
    role: u32,
    rx_queue: u32,
    maps: &mut HostMaps,
    now_ns: u64,
) -> (u32, Vec<Counter>) {
    let r = run_full(frame, role, rx_queue, maps, now_ns);
    (r.verdict, r.counters.iter().collect())
}

/// [`run`], with the outcome.
pub fn run_full(
    frame: &mut [u8],
    role: u32,
    rx_queue: u32,
    maps: &mut HostMaps,
    now_ns: u64,
) -> Run {
    let slot = maps.ifaces.get(&IFINDEX).map_or(0, |c| c.slot);
    let at = Ingress {
        ifindex: IFINDEX,
        rx_queue,
    };
    exec(frame, at, Some(IfaceConf { slot, role }), maps, now_ns)
}

/// [`run_full`] on any ingress interface, its role and slot read from `maps.ifaces` as the
/// program reads `IFACES` (an interface not there is an outside one).
pub fn run_at(frame: &mut [u8], at: Ingress, maps: &mut HostMaps, now_ns: u64) -> Run {
    let iface = maps.ifaces.get(&at.ifindex).copied();
    exec(frame, at, iface, maps, now_ns)
}

/// The map reads of a decision.
struct View<'a> {
    maps: &'a HostMaps,
    iface: Option<IfaceConf>,
    now: u64,
}

impl Lookups for View<'_> {
    fn iface(&self) -> Option<IfaceConf> {
        self.iface
    }
    fn force_rport(&self, src: &[u8; 16]) -> bool {
        self.maps
            .force_rport
            .iter()
            .any(|(net, bits)| in_prefix(src, net, *bits))
    }
    fn binding(&self, key: u64) -> Option<&Binding> {
        self.maps.bindings.get(&key)
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn tag(&self, h: &Headers, scan: &Scan) -> decide::TagResult {
        let mut t = rport_common::tag::Tag::new(0, 0, [0; 16], 0, 0);
        let code = decide::check_tag(&self.maps.tag_keys, h, scan, self.maps.tai_now_s, &mut t);
        decide::tag_result(code, &t)
    }
}

/// `a` is in `net`/`bits` (an LPM trie lookup with a full 128-bit key).
fn in_prefix(a: &[u8; 16], net: &[u8; 16], bits: u32) -> bool {
    let bits = bits.min(128) as usize;
    let (full, rest) = (bits / 8, bits % 8);
    a[..full] == net[..full] && (rest == 0 || (a[full] ^ net[full]) >> (8 - rest) == 0)
}

/// `rport()` of main.rs.
fn exec(
    frame: &mut [u8],
    at: Ingress,
    iface: Option<IfaceConf>,
    maps: &mut HostMaps,
    now: u64,
) -> Run {
    let mut h = Headers::default();
    let p: &[u8] = frame;
    if let Err(e) = parse::parse(&p, &mut h) {
        return apply(frame, &h, Outcome::Parse(e), maps);
    }
    let to_sip = maps.sip_ports.contains(&h.dport);
    let from_sip = maps.sip_ports.contains(&h.sport);
    let msg = match decide::classify(&p, &h, h.payload as usize, to_sip, from_sip) {
        Ok(m) => m,
        Err(o) => return apply(frame, &h, o, maps),
    };
    let payload = &p[h.payload as usize..][..h.payload_len as usize];
    let scan = Scan::run_chunked_as(decide::look(&msg, iface), payload);
    let view = View { maps, iface, now };
    let out = decide::decide(msg, &h, &scan, at, &view);
    apply(frame, &h, out, maps)
}

/// `apply()` of main.rs: the map write, the redirect or the steer rewrite, the counters.
fn apply(mut frame: &mut [u8], h: &Headers, out: Outcome, maps: &mut HostMaps) -> Run {
    let mut done = Done::default();
    let verdict = match out {
        Outcome::Record {
            key, binding, then, ..
        } => {
            maps.bindings.insert(key, binding);
            done.stored = true;
            to_daemon(then, maps, &mut done)
        }
        Outcome::ResponseContact { then, .. } => to_daemon(then, maps, &mut done),
        Outcome::Steer { addr, port, .. } if maps.egress_bypass => {
            // `steer_lookup()` of main.rs, with the lookup's answer from the maps; then the
            // steer in XDP and, for a next hop, `to_next_hop()` and the redirect.
            let l3 = h.l3 as usize;
            let vlan = h.vlan != 0 || h.vlan_inner != 0;
            let known = matches!(maps.fib, fib::Fib::Forward { ifindex, .. }
                if maps.ifaces.contains_key(&ifindex));
            let expires = fib::expires(&frame, l3, h.ipv6).unwrap_or(true);
            let hop = fib::next_hop(maps.fib, vlan, known, expires);
            done.bypass = match hop {
                Err(fib::Bypass::NoNeighbour) => fib::Bypass::NoNeighbour,
                _ => fib::Bypass::Fallback,
            };
            let verdict = steer_in_xdp(&mut *frame, h, &addr, port, &mut done);
            match hop {
                Ok((ifindex, smac, dmac))
                    if done.delivered
                        && fib::to_next_hop(&mut frame, l3, h.ipv6, &smac, &dmac).is_some() =>
                {
                    done.bypass = fib::Bypass::Redirected(ifindex);
                    done.in_xdp = false;
                    XDP_REDIRECT
                }
                _ => verdict,
            }
        }
        Outcome::Steer { addr, port, .. } => steer_in_xdp(frame, h, &addr, port, &mut done),
        _ => XDP_PASS,
    };
    Run {
        verdict,
        counters: out.counters(done),
        outcome: out,
    }
}

/// The steer of main.rs's `apply()` without metadata room: in XDP, passed.
fn steer_in_xdp(
    mut frame: &mut [u8],
    h: &Headers,
    addr: &[u8; 16],
    port: u16,
    done: &mut Done,
) -> u32 {
    done.delivered =
        csum::steer(&mut frame, h.l3 as usize, h.l4 as usize, h.ipv6, addr, port).is_some();
    // The host has no TC program to hand the decision to: the model is the program on a
    // driver without XDP metadata, which steers in XDP itself.
    done.in_xdp = done.delivered;
    XDP_PASS
}

/// `to_daemon()` of main.rs: redirected when a socket is bound, else passed.
fn to_daemon(then: Then, maps: &HostMaps, done: &mut Done) -> u32 {
    match then {
        Then::ToUserspace(_) if maps.xsk_bound => {
            done.delivered = true;
            XDP_REDIRECT
        }
        Then::ToUserspace(_) | Then::Pass | Then::QueueOutOfRange => XDP_PASS,
    }
}

/// Frames for the host tests of this crate, with valid checksums.
#[cfg(test)]
pub(crate) mod frames {
    use crate::{csum::checksum, parse::v4_mapped};

    pub const NAT_V4: [u8; 4] = [203, 0, 113, 1];
    pub const NAT_PORT: u16 = 32415;
    pub const SERVER_V4: [u8; 4] = [198, 51, 100, 10];
    pub const PHONE_V4: [u8; 4] = [192, 168, 1, 50];
    pub const CLIENT_V6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];
    pub const SERVER_V6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    pub const NAT_V6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    pub fn register(via: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:198.51.100.10 SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nCall-ID: call-1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    pub fn ok_response(via: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\n{via}\r\nCall-ID: call-1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    /// Sum of the pseudo-header words (RFC 768 / RFC 8200 §8.1), for the UDP checksum.
    fn pseudo(src: &[u8], dst: &[u8], len: usize) -> u32 {
        let mut s = 17 + len as u32;
        for w in src.chunks(2).chain(dst.chunks(2)) {
            s += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        s
    }

    pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = udp(sport, dport, payload);
        let c = checksum(&u, pseudo(&src, &dst, u.len()));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + u.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        [eth(0x0800), ip, u].concat()
    }

    pub fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = udp(sport, dport, payload);
        let c = checksum(&u, pseudo(&src, &dst, u.len()));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(u.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[17, 64]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        [eth(0x86dd), ip, u].concat()
    }

    /// The IPv4 header and UDP checksums of an (untagged) frame are both valid.
    pub fn checksums_valid(f: &[u8]) -> bool {
        let udp_len = u16::from_be_bytes([f[38], f[39]]) as usize;
        let ip_ok = checksum(&f[14..34], 0) == 0;
        let udp = &f[34..34 + udp_len];
        let udp_ok = checksum(udp, pseudo(&f[26..30], &f[30..34], udp_len)) == 0;
        ip_ok && udp_ok
    }

    /// The UDP checksum of an IPv6 frame is valid (and not 0, which IPv6 forbids).
    pub fn checksum6_valid(f: &[u8]) -> bool {
        let udp_len = u16::from_be_bytes([f[58], f[59]]) as usize;
        let udp = &f[54..54 + udp_len];
        udp[6..8] != [0, 0] && checksum(udp, pseudo(&f[22..38], &f[38..54], udp_len)) == 0
    }

    pub fn v4m(a: [u8; 4]) -> [u8; 16] {
        v4_mapped(a)
    }
}

#[cfg(test)]
mod tests {
    use super::{frames::*, *};
    use Counter::*;
    use rport_common::{flags as F, hash::transaction_key, role};

    const V: &str = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport";
    const RESP_V: &str =
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;received=203.0.113.1;rport=32415";
    const NAT_FLAGS: u32 = F::RPORT_EMPTY
        | F::SENT_BY_PRIVATE
        | F::MAGIC_COOKIE
        | F::SENT_BY_DIFFERS
        | F::PORT_DIFFERS;
    const REQ_NAT: &[Counter] = &[
        Packets,
        SipRequests,
        RportEmpty,
        SentByDiffers,
        SourcePortDiffers,
        SentByPrivate,
        BindingRecorded,
        BindingNew,
        UserspaceUnavailable,
    ];

    fn key(branch: &str) -> u64 {
        transaction_key(branch.as_bytes(), b"", 0, b"")
    }

    fn sorted(c: &[Counter]) -> Vec<Counter> {
        let mut v = c.to_vec();
        v.sort_by_key(|c| *c as u32);
        v
    }

    fn nat_req(via: &str) -> Vec<u8> {
        udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via))
    }

    #[test]
    fn nat_register_is_recorded_and_passed_without_a_daemon() {
        let mut m = HostMaps::default();
        let mut f = nat_req(V);
        let orig = f.clone();
        let (verdict, counters) = run(&mut f, role::OUTSIDE, 0, &mut m, 1000);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(counters, sorted(REQ_NAT));
        assert_eq!(f, orig, "a request is never rewritten in XDP");
        let b = m.bindings[&key("z9hG4bK-1")];
        assert_eq!(
            b,
            Binding {
                src_addr: v4m(NAT_V4),
                dst_addr: v4m(SERVER_V4),
                first_seen_ns: 1000,
                last_seen_ns: 1000,
                src_port: NAT_PORT,
                dst_port: 5060,
                sent_by_port: 5060,
                ifindex: IFINDEX,
                flags: NAT_FLAGS,
                requests: 1,
                sent_by_v4: PHONE_V4,
                ..Binding::default()
            }
        );
    }

    #[test]
    fn with_the_daemon_a_rewrite_is_redirected_to_its_socket() {
        let mut m = HostMaps {
            xsk_bound: true,
            ..HostMaps::default()
        };
        m.ifaces.insert(
            IFINDEX,
            IfaceConf {
                slot: 2,
                role: role::INSIDE,
            },
        );
        let r = run_full(&mut nat_req(V), role::OUTSIDE, 3, &mut m, 1);
        assert_eq!(r.verdict, XDP_REDIRECT);
        assert!(r.counters.contains(ToUserspace) && !r.counters.contains(UserspaceUnavailable));
        let Outcome::Record { then, .. } = r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(then, Then::ToUserspace(2 * 64 + 3));
        // An rx queue the XSKMAP has no entry for: passed unrewritten.
        let (verdict, c) = run(&mut nat_req(V), role::OUTSIDE, 64, &mut m, 2);
        assert_eq!(verdict, XDP_PASS);
        assert!(c.contains(&UserspaceUnavailable) && !c.contains(&ToUserspace));
    }

    #[test]
    fn retransmission_refreshes_the_binding() {
        let mut m = HostMaps::default();
        run(&mut nat_req(V), role::OUTSIDE, 0, &mut m, 10);
        let (_, c) = run(&mut nat_req(V), role::OUTSIDE, 0, &mut m, 25);
        let no_new: Vec<_> = REQ_NAT
            .iter()
            .copied()
            .filter(|c| *c != BindingNew)
            .collect();
        assert_eq!(c, sorted(&no_new));
        let b = m.bindings[&key("z9hG4bK-1")];
        assert_eq!((b.first_seen_ns, b.last_seen_ns, b.requests), (10, 25, 2));
        assert_eq!(m.bindings.len(), 1);
    }

    #[test]
    fn request_from_inside_is_not_recorded() {
        let mut m = HostMaps::default();
        let (v, c) = run(&mut nat_req(V), role::INSIDE, 0, &mut m, 1);
        assert_eq!(v, XDP_PASS);
        assert_eq!(
            c,
            [
                Packets,
                SipRequests,
                RportEmpty,
                SentByDiffers,
                SourcePortDiffers,
                SentByPrivate,
                RequestFromInside
            ]
        );
        assert!(m.bindings.is_empty());
    }

    #[test]
    fn force_rport_networks_ask_for_the_rewrite() {
        // Sent-by is the source, no rport: nothing to do, unless the source is forced.
        let via = "Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-f";
        let mut m = HostMaps {
            xsk_bound: true,
            ..HostMaps::default()
        };
        let (v, c) = run(&mut nat_req(via), role::OUTSIDE, 0, &mut m, 1);
        assert_eq!(v, XDP_PASS);
        assert!(
            c.contains(&RequestUnchanged) && !c.contains(&ForceRport),
            "{c:?}"
        );
        // 203.0.113.0/24, IPv4-mapped: 96 + 24 bits.
        m.force_rport.push((v4m([203, 0, 113, 0]), 120));
        let (v, c) = run(&mut nat_req(via), role::OUTSIDE, 0, &mut m, 2);
        assert_eq!(v, XDP_REDIRECT);
        assert!(c.contains(&ForceRport) && c.contains(&ToUserspace), "{c:?}");
        assert_ne!(m.bindings[&key("z9hG4bK-f")].flags & F::FORCE_RPORT, 0);
        // A network the source is not in.
        m.force_rport = vec![(v4m([203, 0, 112, 0]), 120)];
        let (_, c) = run(&mut nat_req(via), role::OUTSIDE, 0, &mut m, 3);
        assert!(!c.contains(&ForceRport), "{c:?}");
    }

    #[test]
    fn prefix_match() {
        let a = v4m([203, 0, 113, 77]);
        assert!(in_prefix(&a, &v4m([203, 0, 113, 0]), 120));
        assert!(in_prefix(&a, &v4m([203, 0, 113, 64]), 122));
        assert!(!in_prefix(&a, &v4m([203, 0, 113, 0]), 122));
        assert!(in_prefix(&a, &a, 128));
        assert!(in_prefix(&a, &[0; 16], 0));
        assert!(!in_prefix(&a, &[0; 16], 96));
    }

    /// TAG_KEYS with one key (id 1) and the default age limits, at TAI second 1,000,000.
    fn keyed(key: [u8; 16]) -> HostMaps {
        use rport_common::tag::{TagConf, TagKey, TagKeys};
        let mut k = TagKeys {
            conf: TagConf::DEFAULT,
            current: 1,
            ..TagKeys::default()
        };
        k.slots[1] = TagKey {
            key,
            created_tai_s: 0,
            id: 1,
            valid: 1,
            _pad: [0; 6],
        };
        HostMaps {
            tag_keys: k,
            tai_now_s: 1_000_000,
            ..HostMaps::default()
        }
    }

    /// A Via tag toward the NAT mapping for responses of `server`, made at `made`.
    fn tag_for(key: [u8; 16], server: [u8; 4], made: u64) -> String {
        use rport_common::tag::{self, Tag};
        let v4m = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets();
        let t = Tag::new(1, tag::KIND_VIA, v4m(NAT_V4), NAT_PORT, made).sign(
            &key,
            &v4m(server),
            5060,
            0,
        );
        String::from_utf8(tag::encode(&t).as_bytes().to_vec()).unwrap()
    }

    /// `--egress bypass`: a tagged response with a next hop out of an rport interface is
    /// steered, readied for the next hop and redirected; without one (no neighbour, an
    /// interface rport is not on, no route, a TTL that expires here) it is steered in
    /// XDP and passed, as without bypass, and counted.
    #[test]
    fn bypass_outcomes() {
        const K: [u8; 16] = [7; 16];
        const OUT: u32 = 5;
        let (smac, dmac) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        let fwd = |ifindex| fib::Fib::Forward {
            ifindex,
            smac,
            dmac,
        };
        let via = format!(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-9;rport=32415;received=203.0.113.1;rptag={}",
            tag_for(K, SERVER_V4, 1_000_000 - 10)
        );
        let go = |fib: fib::Fib, ttl: u8| {
            let mut m = keyed(K);
            m.egress_bypass = true;
            m.fib = fib;
            m.ifaces.insert(
                OUT,
                IfaceConf {
                    slot: 0,
                    role: role::OUTSIDE,
                },
            );
            let mut f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(&via));
            f[14 + 8] = ttl;
            f[24..26].copy_from_slice(&[0, 0]);
            let hc = crate::csum::checksum(&f[14..34], 0);
            f[24..26].copy_from_slice(&hc.to_be_bytes());
            let (v, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
            (v, c, f)
        };
        let steered = [Packets, SipResponses, ResponseSteered, TagSteered];
        let (v, c, f) = go(fwd(OUT), 64);
        assert_eq!(v, XDP_REDIRECT);
        assert_eq!(c, [&steered[..], &[SteerRedirected]].concat());
        assert_eq!(
            (f[..6].to_vec(), f[6..12].to_vec()),
            (dmac.to_vec(), smac.to_vec())
        );
        assert_eq!(f[14 + 8], 63, "TTL decremented");
        assert_eq!(f[30..34], NAT_V4);
        assert_eq!(f[36..38], NAT_PORT.to_be_bytes());
        assert!(checksums_valid(&f), "IPv4 header and UDP checksums");

        let in_xdp = [
            Packets,
            SipResponses,
            ResponseSteered,
            SteerInXdp,
            TagSteered,
        ];
        for (fib, ttl, why) in [
            (
                fib::Fib::Pass(fib::NoHop::NoNeighbour),
                64,
                SteerFallbackNoNeigh,
            ),
            (fwd(OUT + 1), 64, SteerFallbackOther),
            (
                fib::Fib::Pass(fib::NoHop::NotForwarded),
                64,
                SteerFallbackOther,
            ),
            (
                fib::Fib::Pass(fib::NoHop::FragNeeded { mtu: 100 }),
                64,
                SteerFallbackOther,
            ),
            (fwd(OUT), 1, SteerFallbackOther),
        ] {
            let (v, c, f) = go(fib, ttl);
            assert_eq!(v, XDP_PASS, "{fib:?} ttl {ttl}");
            assert_eq!(c, [&in_xdp[..], &[why]].concat(), "{fib:?} ttl {ttl}");
            assert_eq!(f[14 + 8], ttl, "the kernel decrements it");
            assert_eq!(f[30..34], NAT_V4);
            assert!(checksums_valid(&f));
        }
    }

    #[test]
    fn tag_outcomes() {
        const K: [u8; 16] = [7; 16];
        let via = |t: &str| {
            format!(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-9;rport=32415;received=203.0.113.1;rptag={t}"
            )
        };
        let go = |m: &mut HostMaps, t: &str, src: [u8; 4]| {
            let mut f = udp4(src, 5060, PHONE_V4, 5060, &ok_response(&via(t)));
            let (_, c) = run(&mut f, role::INSIDE, 0, m, 2);
            (c, f)
        };
        // No binding at all (another gateway saw the request, or the map forgot it): the
        // tag alone steers, to the target it names.
        let mut m = keyed(K);
        let (c, f) = go(&mut m, &tag_for(K, SERVER_V4, 1_000_000 - 10), SERVER_V4);
        assert_eq!(
            c,
            [
                Packets,
                SipResponses,
                ResponseSteered,
                SteerInXdp,
                TagSteered
            ]
        );
        assert_eq!(f[30..34], NAT_V4);
        assert_eq!(f[36..38], NAT_PORT.to_be_bytes());
        assert!(checksums_valid(&f));
        // Another key's tag, an altered one, another server's, an expired one.
        let other = tag_for([8; 16], SERVER_V4, 1_000_000);
        let mut altered = tag_for(K, SERVER_V4, 1_000_000).into_bytes();
        altered[12] = if altered[12] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        for (t, src, want) in [
            (other.as_str(), SERVER_V4, TagInvalid),
            (altered.as_str(), SERVER_V4, TagInvalid),
            ("00", SERVER_V4, TagInvalid),
            (
                &tag_for(K, [198, 51, 100, 99], 1_000_000),
                SERVER_V4,
                TagInvalid,
            ),
            (
                &tag_for(K, SERVER_V4, 1_000_000),
                [198, 51, 100, 99],
                TagInvalid,
            ),
            (
                &tag_for(K, SERVER_V4, 1_000_000 - 400),
                SERVER_V4,
                TagExpired,
            ),
        ] {
            let (c, f) = go(&mut m, t, src);
            assert_eq!(c, [Packets, SipResponses, want], "{t}");
            assert_eq!(f[30..34], PHONE_V4, "not steered: {t}");
        }
    }

    /// A Contact tag toward the NAT mapping for requests of `server` (any port), made at
    /// `made`, of `kind`.
    fn contact_tag(key: [u8; 16], server: [u8; 4], made: u64, kind: u8) -> String {
        use rport_common::tag::{self, Tag};
        let v4m = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets();
        let t = Tag::new(1, kind, v4m(NAT_V4), NAT_PORT, made).sign(&key, &v4m(server), 0, 0);
        String::from_utf8(tag::encode(&t).as_bytes().to_vec()).unwrap()
    }

    /// What a registrar sends to the Contact rport tagged: an INVITE to the phone's
    /// private address, the tag in its Request-URI.
    fn server_invite(tag: &str) -> Vec<u8> {
        format!(
            "INVITE sip:100@192.168.1.50:5060;rptag={tag} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bK-pbx1\r\n\
             Max-Forwards: 70\r\nCall-ID: in-1@198.51.100.10\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:pbx@198.51.100.10>\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn contact_tag_outcomes() {
        use rport_common::tag::{KIND_CONTACT, KIND_VIA};
        const K: [u8; 16] = [7; 16];
        let go = |m: &mut HostMaps, t: &str, src: [u8; 4], sport: u16, role: u32| {
            let mut f = udp4(src, sport, PHONE_V4, 5060, &server_invite(t));
            let (v, c) = run(&mut f, role, 0, m, 2);
            (v, c, f)
        };
        let mut m = keyed(K);
        // The registrar's INVITE, from any of its ports: steered to the mapping.
        for sport in [5060, 5080] {
            let good = contact_tag(K, SERVER_V4, 1_000_000 - 3000, KIND_CONTACT);
            let (v, c, f) = go(&mut m, &good, SERVER_V4, sport, role::INSIDE);
            assert_eq!(v, XDP_PASS);
            assert_eq!(
                c,
                [Packets, SipRequests, SteerInXdp, RequestSteered],
                "sport {sport}"
            );
            assert_eq!(f[30..34], NAT_V4);
            assert_eq!(f[36..38], NAT_PORT.to_be_bytes());
            assert!(checksums_valid(&f));
        }
        assert!(
            m.bindings.is_empty(),
            "a request from inside records nothing"
        );
        let good = contact_tag(K, SERVER_V4, 1_000_000, KIND_CONTACT);
        // On an outside interface: a request toward a server, not steered by its R-URI.
        let (_, c, f) = go(&mut m, &good, SERVER_V4, 5060, role::OUTSIDE);
        assert!(!c.contains(&RequestSteered), "{c:?}");
        assert_eq!(f[30..34], PHONE_V4);
        // Forged, another key's, another server's, a Via tag, an expired one.
        let mut altered = good.clone().into_bytes();
        altered[20] = if altered[20] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        for (t, src, want) in [
            (altered.clone(), SERVER_V4, RequestTagInvalid),
            ("00".to_string(), SERVER_V4, RequestTagInvalid),
            (
                contact_tag([8; 16], SERVER_V4, 1_000_000, KIND_CONTACT),
                SERVER_V4,
                RequestTagInvalid,
            ),
            (good.clone(), [198, 51, 100, 99], RequestTagInvalid),
            (
                contact_tag(K, SERVER_V4, 1_000_000, KIND_VIA),
                SERVER_V4,
                RequestTagInvalid,
            ),
            (
                tag_for(K, SERVER_V4, 1_000_000),
                SERVER_V4,
                RequestTagInvalid,
            ),
            (
                contact_tag(K, SERVER_V4, 1_000_000 - 90_000, KIND_CONTACT),
                SERVER_V4,
                RequestTagExpired,
            ),
        ] {
            let (_, c, f) = go(&mut m, &t, src, 5060, role::INSIDE);
            assert_eq!(c, [Packets, SipRequests, want], "{t}");
            assert_eq!(f[30..34], PHONE_V4, "not steered: {t}");
        }
        // Already sent to the mapping (a server that handles NAT itself): passed as is.
        let mut f = udp4(SERVER_V4, 5060, NAT_V4, NAT_PORT, &server_invite(&good));
        let orig = f.clone();
        let (_, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(c, [Packets, SipRequests, RequestAlreadyCorrect]);
        assert_eq!(f, orig);
        // A Via tag in a response is still a Via tag, not a Contact's.
        let via = format!(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-9;rport=32415;received=203.0.113.1;rptag={good}"
        );
        let mut f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(&via));
        let (_, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(c, [Packets, SipResponses, TagInvalid]);
    }

    #[test]
    fn contacts_from_outside_go_to_the_daemon() {
        let with_contact = |first: &str, via: &str, contact: &str| {
            format!(
                "{first}\r\n{via}\r\nCall-ID: c-1@x\r\nCSeq: 1 INVITE\r\n{contact}Content-Length: 0\r\n\r\n"
            )
            .into_bytes()
        };
        const PBX_VIA: &str = "Via: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bK-pbx1";
        const CONTACT: &str = "Contact: <sip:100@192.168.1.50:5060>\r\n";
        let mut m = HostMaps {
            xsk_bound: true,
            ..HostMaps::default()
        };
        // The phone's answers to the registrar's INVITE: 180 and 200 with its Contact.
        for status in ["SIP/2.0 180 Ringing", "SIP/2.0 200 OK"] {
            let mut f = udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                &with_contact(status, PBX_VIA, CONTACT),
            );
            let (v, c) = run(&mut f, role::OUTSIDE, 0, &mut m, 2);
            assert_eq!(v, XDP_REDIRECT, "{status}");
            assert_eq!(c, [Packets, SipResponses, ResponseContact], "{status}");
        }
        // A 100 without Contact, a response from inside: neither goes to the daemon. (A
        // 3xx with a Contact does: its status is the daemon's to read.)
        for (status, contact, role) in [
            ("SIP/2.0 100 Trying", "", role::OUTSIDE),
            ("SIP/2.0 200 OK", CONTACT, role::INSIDE),
        ] {
            let mut f = udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                &with_contact(status, PBX_VIA, contact),
            );
            let (v, c) = run(&mut f, role, 0, &mut m, 2);
            assert_eq!(v, XDP_PASS, "{status}");
            assert!(!c.contains(&ResponseContact), "{status}: {c:?}");
        }
        // Without a socket, counted as unavailable and passed.
        let mut m = HostMaps::default();
        let mut f = udp4(
            NAT_V4,
            NAT_PORT,
            SERVER_V4,
            5060,
            &with_contact("SIP/2.0 200 OK", PBX_VIA, CONTACT),
        );
        let (v, c) = run(&mut f, role::OUTSIDE, 0, &mut m, 2);
        assert_eq!(v, XDP_PASS);
        assert_eq!(
            c,
            [Packets, SipResponses, UserspaceUnavailable, ResponseContact]
        );
        // A request from outside whose Via needs nothing but that carries a Contact (it
        // may bring a tag of its own): to the daemon; without a Contact it passes.
        let mut m = HostMaps {
            xsk_bound: true,
            ..HostMaps::default()
        };
        const PUBLIC_VIA: &str = "Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-p1";
        let first = "INVITE sip:200@198.51.100.10 SIP/2.0";
        let mut f = udp4(
            NAT_V4,
            NAT_PORT,
            SERVER_V4,
            5060,
            &with_contact(first, PUBLIC_VIA, CONTACT),
        );
        let (v, c) = run(&mut f, role::OUTSIDE, 0, &mut m, 2);
        assert_eq!(v, XDP_REDIRECT, "{c:?}");
        let mut f = udp4(
            NAT_V4,
            NAT_PORT,
            SERVER_V4,
            5060,
            &with_contact(first, PUBLIC_VIA, ""),
        );
        let (v, c) = run(&mut f, role::OUTSIDE, 0, &mut m, 2);
        assert_eq!(v, XDP_PASS, "{c:?}");
        assert!(c.contains(&RequestUnchanged));
    }

    #[test]
    fn legacy_response_is_steered_with_valid_checksums() {
        let mut m = HostMaps::default();
        run(&mut nat_req(V), role::OUTSIDE, 0, &mut m, 1);
        let mut f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(RESP_V));
        let orig = f.clone();
        let (v, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(v, XDP_PASS);
        assert_eq!(
            c,
            [
                Packets,
                SipResponses,
                ResponseSteered,
                SteerInXdp,
                BindingSteered,
                ResponseUntagged
            ]
        );
        assert_eq!(f[30..34], NAT_V4, "destination address");
        assert_eq!(f[36..38], NAT_PORT.to_be_bytes(), "destination port");
        assert!(checksums_valid(&f));
        // Nothing else changed.
        let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != orig[i]).collect();
        assert!(
            changed
                .iter()
                .all(|i| matches!(i, 24..=25 | 30..=33 | 36..=37 | 40..=41)),
            "{changed:?}"
        );
    }

    #[test]
    fn ipv4_response_without_udp_checksum_keeps_none() {
        let mut m = HostMaps::default();
        run(&mut nat_req(V), role::OUTSIDE, 0, &mut m, 1);
        let mut f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(RESP_V));
        f[40..42].copy_from_slice(&[0, 0]);
        run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(f[30..34], NAT_V4);
        assert_eq!(f[40..42], [0, 0], "0: no checksum, and it stays so");
        assert_eq!(crate::csum::checksum(&f[14..34], 0), 0);
    }

    #[test]
    fn ipv6_response_is_steered_with_a_valid_checksum() {
        let mut m = HostMaps::default();
        let via = "Via: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-6;rport";
        // The request comes from the client's NAT66 address and port.
        let mut req = udp6(NAT_V6, 40000, SERVER_V6, 5060, &register(via));
        let (_, c) = run(&mut req, role::OUTSIDE, 0, &mut m, 1);
        assert!(c.contains(&Ipv6) && c.contains(&BindingRecorded), "{c:?}");
        let resp = "Via: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-6;rport=40000";
        let mut f = udp6(SERVER_V6, 5060, CLIENT_V6, 5060, &ok_response(resp));
        let (_, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(
            c,
            [
                Packets,
                SipResponses,
                Ipv6,
                ResponseSteered,
                SteerInXdp,
                BindingSteered,
                ResponseUntagged
            ]
        );
        assert_eq!(f[38..54], NAT_V6);
        assert_eq!(f[56..58], 40000u16.to_be_bytes());
        assert!(checksum6_valid(&f));
    }

    #[test]
    fn ipv6_request_toward_a_client_is_steered_by_its_contact_tag() {
        use rport_common::tag::{self, KIND_CONTACT, Tag};
        const K: [u8; 16] = [7; 16];
        let mut m = keyed(K);
        let t = Tag::new(1, KIND_CONTACT, NAT_V6, 40000, 1_000_000).sign(&K, &SERVER_V6, 0, 0);
        let t = String::from_utf8(tag::encode(&t).as_bytes().to_vec()).unwrap();
        let invite = String::from_utf8(server_invite(&t))
            .unwrap()
            .replace("sip:100@192.168.1.50:5060", "sip:100@[2001:db8:1::50]:5060");
        let mut f = udp6(SERVER_V6, 5060, CLIENT_V6, 5060, invite.as_bytes());
        let (_, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(c, [Packets, SipRequests, Ipv6, SteerInXdp, RequestSteered]);
        assert_eq!(f[38..54], NAT_V6);
        assert_eq!(f[56..58], 40000u16.to_be_bytes());
        assert!(checksum6_valid(&f));
        // The same tag from another server address: refused.
        let other = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
        let mut f = udp6(other, 5060, CLIENT_V6, 5060, invite.as_bytes());
        let (_, c) = run(&mut f, role::INSIDE, 0, &mut m, 2);
        assert_eq!(c, [Packets, SipRequests, Ipv6, RequestTagInvalid]);
        assert_eq!(f[38..54], CLIENT_V6);
    }

    #[test]
    fn responses_not_steered_leave_the_frame_alone() {
        let mut m = HostMaps::default();
        run(&mut nat_req(V), role::OUTSIDE, 0, &mut m, 1);
        for (name, src, dst, dport, r, want) in [
            (
                "already correct",
                SERVER_V4,
                NAT_V4,
                NAT_PORT,
                role::INSIDE,
                ResponseAlreadyCorrect,
            ),
            (
                "on an outside interface",
                SERVER_V4,
                PHONE_V4,
                5060,
                role::OUTSIDE,
                ResponseNotFromInside,
            ),
            (
                "from another host",
                [198, 51, 100, 99],
                PHONE_V4,
                5060,
                role::INSIDE,
                ResponseSourceMismatch,
            ),
        ] {
            let mut f = udp4(src, 5060, dst, dport, &ok_response(RESP_V));
            let orig = f.clone();
            let (v, c) = run(&mut f, r, 0, &mut m, 2);
            assert_eq!(
                (v, c),
                (
                    XDP_PASS,
                    vec![Packets, SipResponses, want, ResponseUntagged]
                ),
                "{name}"
            );
            assert_eq!(f, orig, "{name}");
        }
        let mut f = udp4(
            SERVER_V4,
            5060,
            PHONE_V4,
            5060,
            &ok_response("Via: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-none"),
        );
        let (_, c) = run(&mut f, role::INSIDE, 0, &mut m, 3);
        assert_eq!(
            c,
            [Packets, SipResponses, ResponseNoBinding, ResponseUntagged]
        );
    }

    #[test]
    fn traffic_that_is_not_a_sip_message() {
        let mut m = HostMaps::default();
        for (name, mut f, want) in [
            (
                "DNS",
                udp4(NAT_V4, 40000, SERVER_V4, 53, b"\x12\x34\x01\x00"),
                NonSip,
            ),
            (
                "CRLF keep-alive",
                udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"\r\n\r\n"),
                KeepaliveCrlf,
            ),
            (
                "junk on 5060",
                udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"hello there"),
                NonSipOnSipPort,
            ),
            (
                "cut in the UDP header",
                nat_req(V)[..40].to_vec(),
                Truncated,
            ),
        ] {
            let (v, c) = run(&mut f, role::OUTSIDE, 0, &mut m, 1);
            assert_eq!((v, c), (XDP_PASS, vec![Packets, want]), "{name}");
        }
        assert!(m.bindings.is_empty());
    }

    #[test]
    fn ports_come_from_the_sip_port_map() {
        let mut m = HostMaps {
            sip_ports: HashSet::from([5080]),
            ..HostMaps::default()
        };
        let (_, c) = run(&mut nat_req(V), role::OUTSIDE, 0, &mut m, 1);
        assert_eq!(c, [Packets, NonSip]);
        let mut f = udp4(NAT_V4, NAT_PORT, SERVER_V4, 5080, &register(V));
        let (_, c) = run(&mut f, role::OUTSIDE, 0, &mut m, 1);
        assert!(c.contains(&BindingRecorded), "{c:?}");
    }

    #[test]
    fn run_at_reads_the_role_from_ifaces() {
        let mut m = HostMaps::default();
        let at = Ingress {
            ifindex: 7,
            rx_queue: 0,
        };
        // Not configured: an outside interface, so the request is recorded.
        let r = run_at(&mut nat_req(V), at, &mut m, 1);
        assert!(r.counters.contains(BindingRecorded), "{r:?}");
        assert_eq!(m.bindings[&key("z9hG4bK-1")].ifindex, 7);
        m.ifaces.insert(
            7,
            IfaceConf {
                slot: 0,
                role: role::INSIDE,
            },
        );
        let r = run_at(&mut nat_req(V), at, &mut m, 2);
        assert!(r.counters.contains(RequestFromInside), "{r:?}");
    }
}
