//! The forwarding step done in XDP: the kernel's route and neighbour lookup
//! (`bpf_fib_lookup`) as one typed result, the TTL / hop-limit decrement a router owes, and
//! the next hop's MAC addresses.
//!
//! What the kernel's forwarding would do for a frame, and what bypassing it must still do:
//! find the route and the neighbour (the helper, with the ingress interface as input, so
//! policy routing and the interface's `forwarding` sysctl apply), decrement the TTL and
//! refuse a frame whose TTL would reach 0 (the kernel then sends the ICMP Time Exceeded:
//! the caller passes such a frame), and address the frame to the next hop.
//!
//! Host-compilable: [`FibParams`] is the helper's `struct bpf_fib_lookup` (same layout,
//! checked against aya's binding on BPF), and [`Fib::from_ret`] maps its return code, so
//! the mapping is unit-tested here; only [`lookup`] calls the kernel.

/// Return codes of `bpf_fib_lookup` (`BPF_FIB_LKUP_RET_*`, include/uapi/linux/bpf.h), as
/// numbers so that the host build has them; checked against aya's on BPF.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const BLACKHOLE: i64 = 1;
    pub const UNREACHABLE: i64 = 2;
    pub const PROHIBIT: i64 = 3;
    pub const NOT_FWDED: i64 = 4;
    pub const FWD_DISABLED: i64 = 5;
    pub const UNSUPP_LWT: i64 = 6;
    pub const NO_NEIGH: i64 = 7;
    pub const FRAG_NEEDED: i64 = 8;
    pub const NO_SRC_ADDR: i64 = 9;
}

/// `AF_INET`, `AF_INET6` and `IPPROTO_UDP`, the helper's `family` and `l4_protocol`.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_UDP: u8 = 17;

/// `struct bpf_fib_lookup` (64 bytes): the helper's input and output in one.
///
/// Multi-byte fields that the kernel reads as big-endian are kept as bytes in network
/// order, so nothing here depends on the host's byte order.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FibParams {
    pub family: u8,
    pub l4_protocol: u8,
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// In: the IP datagram's length for the helper's MTU check (0: no check). Out, on
    /// [`ret::FRAG_NEEDED`]: the route's MTU (`mtu_result`).
    pub tot_len: u16,
    /// In: the ingress interface. Out: the egress interface.
    pub ifindex: u32,
    /// IPv4: the TOS byte (first byte); IPv6: the flow information, big-endian. Out: the
    /// route's metric.
    pub tos_flowinfo: [u8; 4],
    /// IPv4 source in the first 4 bytes, or the IPv6 source.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Out: VLAN protocol and TCI (not filled for XDP by the kernels of today).
    pub vlan: [u8; 4],
    /// In (kernels ≥ 6.10): the first 4 bytes are the skb mark for policy routing, 0 here.
    /// Out: the egress interface's MAC.
    pub smac: [u8; 6],
    /// Out: the next hop's MAC.
    pub dmac: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<FibParams>() == 64);

/// One lookup's input: what the kernel's forwarding would route the datagram by.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The interface the frame arrived on (routing input, `forwarding` sysctl).
    pub ifindex: u32,
    pub ipv6: bool,
    /// Addresses in rport's 16-byte encoding (IPv4-mapped for IPv4).
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// IPv4: the TOS byte; IPv6: the first word of the header with the version masked off
    /// (traffic class and flow label; [`flowinfo`]).
    pub tos_flowinfo: u32,
    /// The datagram's length for the helper's MTU check, 0 for none (the caller checks).
    pub tot_len: u16,
}

/// The flow information of an IPv6 header (its first 4 bytes), as [`Query::tos_flowinfo`]
/// wants it: the version nibble masked off (`IPV6_FLOWINFO_MASK`).
#[inline(always)]
pub fn flowinfo(first_word: [u8; 4]) -> u32 {
    u32::from_be_bytes(first_word) & 0x0fff_ffff
}

impl FibParams {
    /// Fills every field for `q` (the output fields, and the mark they share room with,
    /// zeroed).
    #[inline(always)]
    pub fn set(&mut self, q: &Query) {
        *self = FibParams::default();
        self.l4_protocol = IPPROTO_UDP;
        self.sport = q.sport.to_be_bytes();
        self.dport = q.dport.to_be_bytes();
        self.tot_len = q.tot_len;
        self.ifindex = q.ifindex;
        if q.ipv6 {
            self.family = AF_INET6;
            self.tos_flowinfo = q.tos_flowinfo.to_be_bytes();
            self.src = *q.src;
            self.dst = *q.dst;
        } else {
            self.family = AF_INET;
            self.tos_flowinfo = [q.tos_flowinfo as u8, 0, 0, 0];
            self.src[..4].copy_from_slice(&q.src[12..16]);
            self.dst[..4].copy_from_slice(&q.dst[12..16]);
        }
    }
}

/// Why a lookup gave no next hop to send to: the frame then goes the kernel's way, which
/// does what XDP cannot (resolve the neighbour, fragment, send the ICMP error, drop as the
/// route says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoHop {
    /// The route is there, the neighbour entry is not (or not valid): the kernel resolves
    /// it (ARP / ND) and queues the frame meanwhile.
    NoNeighbour,
    /// Bigger than the route's MTU (only when the query gave a length): the kernel
    /// fragments or sends Fragmentation Needed / Packet Too Big.
    FragNeeded { mtu: u16 },
    /// Not forwarded: a local destination, no route, or a blackhole, unreachable or
    /// prohibit route (the kernel drops it and sends what the route says).
    NotForwarded,
    /// Forwarding is off on the ingress interface (`net.ipv4.conf.IF.forwarding`,
    /// `net.ipv6.conf.IF.forwarding`).
    ForwardingDisabled,
    /// Anything else: a negative errno (bad arguments), a lightweight tunnel route, no
    /// source address, a code this build does not know.
    Other(i64),
}

/// The result of one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fib {
    /// Send it out of `ifindex`, from `smac` to `dmac`.
    Forward {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    Pass(NoHop),
}

impl Fib {
    /// The typed result of a lookup that returned `rc` with `p` as it left it.
    #[inline(always)]
    pub fn from_ret(rc: i64, p: &FibParams) -> Fib {
        Fib::Pass(match rc {
            ret::SUCCESS => {
                return Fib::Forward {
                    ifindex: p.ifindex,
                    smac: p.smac,
                    dmac: p.dmac,
                };
            }
            ret::NO_NEIGH => NoHop::NoNeighbour,
            ret::FRAG_NEEDED => NoHop::FragNeeded { mtu: p.tot_len },
            ret::NOT_FWDED | ret::BLACKHOLE | ret::UNREACHABLE | ret::PROHIBIT => {
                NoHop::NotForwarded
            }
            ret::FWD_DISABLED => NoHop::ForwardingDisabled,
            other => NoHop::Other(other),
        })
    }
}

/// Runs the helper for `p` (filled by [`FibParams::set`]) and maps its result.
///
/// # Safety
/// `ctx` is the `xdp_md` the running XDP program was called with.
#[cfg(target_arch = "bpf")]
#[inline(always)]
pub unsafe fn lookup(ctx: *mut core::ffi::c_void, p: &mut FibParams) -> Fib {
    use aya_ebpf::bindings::bpf_fib_lookup;
    const _: () = {
        use aya_ebpf::bindings as b;
        assert!(core::mem::size_of::<bpf_fib_lookup>() == core::mem::size_of::<FibParams>());
        assert!(core::mem::offset_of!(bpf_fib_lookup, ifindex) == 8);
        assert!(core::mem::offset_of!(bpf_fib_lookup, smac) == 52);
        assert!(core::mem::offset_of!(bpf_fib_lookup, dmac) == 58);
        assert!(
            b::BPF_FIB_LKUP_RET_SUCCESS as i64 == ret::SUCCESS
                && b::BPF_FIB_LKUP_RET_BLACKHOLE as i64 == ret::BLACKHOLE
                && b::BPF_FIB_LKUP_RET_UNREACHABLE as i64 == ret::UNREACHABLE
                && b::BPF_FIB_LKUP_RET_PROHIBIT as i64 == ret::PROHIBIT
                && b::BPF_FIB_LKUP_RET_NOT_FWDED as i64 == ret::NOT_FWDED
                && b::BPF_FIB_LKUP_RET_FWD_DISABLED as i64 == ret::FWD_DISABLED
                && b::BPF_FIB_LKUP_RET_UNSUPP_LWT as i64 == ret::UNSUPP_LWT
                && b::BPF_FIB_LKUP_RET_NO_NEIGH as i64 == ret::NO_NEIGH
                && b::BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 == ret::FRAG_NEEDED
                && b::BPF_FIB_LKUP_RET_NO_SRC_ADDR as i64 == ret::NO_SRC_ADDR
        );
    };
    // SAFETY: `p` is 64 writable bytes laid out as `struct bpf_fib_lookup` (asserted
    // above); flags 0: a full lookup in the main tables, with the neighbour.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_fib_lookup(
            ctx,
            p as *mut FibParams as *mut bpf_fib_lookup,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    Fib::from_ret(rc, p)
}

/// What `--egress bypass` made of a steered frame (`decide::Done::bypass`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bypass {
    /// Not tried: `--egress kernel`, or not a steered frame.
    #[default]
    Off,
    /// Rewritten in XDP and redirected out of this interface.
    Redirected(u32),
    /// The next hop has no neighbour entry yet: handed to the kernel, which resolves it.
    NoNeighbour,
    /// Any other reason to go the kernel's way ([`next_hop`]).
    Fallback,
}

/// The lookup's [`Query`] for a frame steered to `addr`:`port` (its source and ports as
/// parsed, its TOS or flow information and its length read from the IP header at `l3`,
/// so that the route is the one the kernel would pick and the helper checks the MTU).
/// `None`: the IP header is not in the frame.
#[inline(always)]
pub fn steer_query<'a, P: crate::pkt::Packet>(
    p: &P,
    l3: usize,
    h: &'a crate::parse::Headers,
    ifindex: u32,
    addr: &'a [u8; 16],
    port: u16,
) -> Option<Query<'a>> {
    let (tos_flowinfo, tot_len) = if h.ipv6 {
        let w = p.read::<[u8; 8]>(l3)?;
        (
            flowinfo([w[0], w[1], w[2], w[3]]),
            u16::from_be_bytes([w[4], w[5]]).saturating_add(40),
        )
    } else {
        let w = p.read::<[u8; 4]>(l3)?;
        (w[1] as u32, u16::from_be_bytes([w[2], w[3]]))
    };
    Some(Query {
        ifindex,
        ipv6: h.ipv6,
        src: &h.src,
        dst: addr,
        sport: h.sport,
        dport: port,
        tos_flowinfo,
        tot_len,
    })
}

/// Whether a steered frame may leave by redirect, and to which next hop: only when the
/// lookup found one, out of an interface rport is attached to (`egress_known`: so never
/// into a device the operator did not name, a tunnel, a bridge or a VLAN device, where an
/// XDP redirect may not be transmitted), from an untagged frame (the tags would go out
/// with it, and the lookup ran on the lower device), whose TTL does not expire here.
/// Everything else is the kernel's to forward, resolve, fragment or answer.
#[inline(always)]
pub fn next_hop(
    fib: Fib,
    vlan: bool,
    egress_known: bool,
    expires: bool,
) -> Result<(u32, [u8; 6], [u8; 6]), Bypass> {
    match fib {
        Fib::Forward { .. } if vlan || !egress_known || expires => Err(Bypass::Fallback),
        Fib::Forward {
            ifindex,
            smac,
            dmac,
        } => Ok((ifindex, smac, dmac)),
        Fib::Pass(NoHop::NoNeighbour) => Err(Bypass::NoNeighbour),
        Fib::Pass(_) => Err(Bypass::Fallback),
    }
}

/// What a TTL / hop-limit decrement found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hops {
    /// Decremented (and, for IPv4, the header checksum updated).
    Decremented,
    /// 1 or 0: a router must not forward it. Left as it was, for the kernel to drop it and
    /// send Time Exceeded.
    Expired,
}

/// Decrements the TTL of the IPv4 header `ip` (its first 20 bytes) and patches its header
/// checksum for the change of the TTL/protocol word (RFC 1624 eqn. 3), as a router does
/// (RFC 1812 §5.3.1). A TTL of 1 or 0 is left alone: [`Hops::Expired`].
#[inline(always)]
pub fn decrement_ttl(ip: &mut [u8; 20]) -> Hops {
    let ttl = ip[8];
    if ttl <= 1 {
        return Hops::Expired;
    }
    let old = u16::from_be_bytes([ttl, ip[9]]);
    let new = u16::from_be_bytes([ttl - 1, ip[9]]);
    let hc = crate::csum::update16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[8] = ttl - 1;
    ip[10..12].copy_from_slice(&hc.to_be_bytes());
    Hops::Decremented
}

/// Decrements the hop limit of the IPv6 header whose first 8 bytes are `ip` (no header
/// checksum in IPv6). A hop limit of 1 or 0 is left alone: [`Hops::Expired`].
#[inline(always)]
pub fn decrement_hop_limit(ip: &mut [u8; 8]) -> Hops {
    if ip[7] <= 1 {
        return Hops::Expired;
    }
    ip[7] -= 1;
    Hops::Decremented
}

/// Whether the IP header at `l3` would expire at this hop (TTL or hop limit ≤ 1): such a
/// frame goes to the kernel, which answers with Time Exceeded. `None`: not in the frame.
#[inline(always)]
pub fn expires<P: crate::pkt::Packet>(p: &P, l3: usize, ipv6: bool) -> Option<bool> {
    // Two bytes read, not one: the verifier learns no packet range from the 1-byte bounds
    // check the compiler makes of `p + 1 > end` (`p >= end`). IPv6: next header, hop
    // limit; IPv4: TTL, protocol.
    let hops = if ipv6 {
        p.read::<[u8; 2]>(l3 + 6)?[1]
    } else {
        p.read::<[u8; 2]>(l3 + 8)?[0]
    };
    Some(hops <= 1)
}

/// Readies the frame for the next hop: the TTL or hop limit decremented (with the IPv4
/// header checksum) and the Ethernet addresses set to `smac` → `dmac`. `None` when a header
/// is not in the frame or the TTL expires (nothing written then).
#[inline(always)]
pub fn to_next_hop<P: crate::pkt::PacketMut>(
    p: &mut P,
    l3: usize,
    ipv6: bool,
    smac: &[u8; 6],
    dmac: &[u8; 6],
) -> Option<()> {
    // The link header first: bounds-checked before the IP header is touched.
    p.bytes_mut::<12>(0)?;
    let hops = if ipv6 {
        decrement_hop_limit(p.bytes_mut::<8>(l3)?)
    } else {
        decrement_ttl(p.bytes_mut::<20>(l3)?)
    };
    if hops == Hops::Expired {
        return None;
    }
    let eth = p.bytes_mut::<12>(0)?;
    eth[..6].copy_from_slice(dmac);
    eth[6..].copy_from_slice(smac);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::checksum;

    fn params_out(ifindex: u32, tot_len: u16) -> FibParams {
        FibParams {
            ifindex,
            tot_len,
            smac: [2, 0, 0, 0, 0, 1],
            dmac: [2, 0, 0, 0, 0, 2],
            ..FibParams::default()
        }
    }

    #[test]
    fn success_is_a_forward_with_the_egress_and_macs() {
        assert_eq!(
            Fib::from_ret(ret::SUCCESS, &params_out(7, 0)),
            Fib::Forward {
                ifindex: 7,
                smac: [2, 0, 0, 0, 0, 1],
                dmac: [2, 0, 0, 0, 0, 2]
            }
        );
    }

    #[test]
    fn every_other_code_is_a_reason_to_pass() {
        let p = params_out(7, 1400);
        let cases = [
            (ret::NO_NEIGH, NoHop::NoNeighbour),
            (ret::FRAG_NEEDED, NoHop::FragNeeded { mtu: 1400 }),
            (ret::NOT_FWDED, NoHop::NotForwarded),
            (ret::BLACKHOLE, NoHop::NotForwarded),
            (ret::UNREACHABLE, NoHop::NotForwarded),
            (ret::PROHIBIT, NoHop::NotForwarded),
            (ret::FWD_DISABLED, NoHop::ForwardingDisabled),
            (ret::UNSUPP_LWT, NoHop::Other(ret::UNSUPP_LWT)),
            (ret::NO_SRC_ADDR, NoHop::Other(ret::NO_SRC_ADDR)),
            (10, NoHop::Other(10)),
            (-22, NoHop::Other(-22)),
        ];
        for (rc, want) in cases {
            assert_eq!(Fib::from_ret(rc, &p), Fib::Pass(want), "rc {rc}");
        }
    }

    #[test]
    fn next_hop_only_for_a_forward_out_of_an_rport_interface() {
        let fwd = Fib::Forward {
            ifindex: 4,
            smac: [1; 6],
            dmac: [2; 6],
        };
        assert_eq!(next_hop(fwd, false, true, false), Ok((4, [1; 6], [2; 6])));
        for (vlan, known, expires) in [
            (true, true, false),
            (false, false, false),
            (false, true, true),
        ] {
            assert_eq!(
                next_hop(fwd, vlan, known, expires),
                Err(Bypass::Fallback),
                "vlan {vlan} known {known} expires {expires}"
            );
        }
        assert_eq!(
            next_hop(Fib::Pass(NoHop::NoNeighbour), false, true, false),
            Err(Bypass::NoNeighbour)
        );
        for r in [
            NoHop::FragNeeded { mtu: 1280 },
            NoHop::NotForwarded,
            NoHop::ForwardingDisabled,
            NoHop::Other(-22),
        ] {
            assert_eq!(
                next_hop(Fib::Pass(r), false, true, false),
                Err(Bypass::Fallback)
            );
        }
    }

    #[test]
    fn steer_query_routes_by_the_new_destination_and_the_frame_s_length() {
        use crate::model::frames::*;
        let mut f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, b"SIP/2.0 200 OK\r\n");
        f[15] = 0x88; // TOS
        let p: &[u8] = &f;
        let mut h = crate::parse::Headers::default();
        crate::parse::parse(&p, &mut h).unwrap();
        let nat = v4m(NAT_V4);
        let q = steer_query(&p, 14, &h, 9, &nat, NAT_PORT).unwrap();
        assert_eq!(
            (q.ifindex, q.ipv6, q.sport, q.dport),
            (9, false, 5060, NAT_PORT)
        );
        assert_eq!((q.src, q.dst), (&v4m(SERVER_V4), &nat));
        assert_eq!(q.tos_flowinfo, 0x88);
        assert_eq!(q.tot_len as usize, p.len() - 14);
        let g = udp6(SERVER_V6, 5060, CLIENT_V6, 5060, b"SIP/2.0 200 OK\r\n");
        let p: &[u8] = &g;
        crate::parse::parse(&p, &mut h).unwrap();
        let q = steer_query(&p, 14, &h, 9, &NAT_V6, NAT_PORT).unwrap();
        assert!(q.ipv6);
        assert_eq!(q.tot_len as usize, p.len() - 14);
        assert_eq!(
            steer_query(&&g[..20], 14, &h, 9, &NAT_V6, 1).map(|q| q.tot_len),
            None
        );
    }

    #[test]
    fn params_have_the_kernel_layout() {
        use core::mem::offset_of;
        // include/uapi/linux/bpf.h, struct bpf_fib_lookup.
        assert_eq!(offset_of!(FibParams, family), 0);
        assert_eq!(offset_of!(FibParams, l4_protocol), 1);
        assert_eq!(offset_of!(FibParams, sport), 2);
        assert_eq!(offset_of!(FibParams, dport), 4);
        assert_eq!(offset_of!(FibParams, tot_len), 6);
        assert_eq!(offset_of!(FibParams, ifindex), 8);
        assert_eq!(offset_of!(FibParams, tos_flowinfo), 12);
        assert_eq!(offset_of!(FibParams, src), 16);
        assert_eq!(offset_of!(FibParams, dst), 32);
        assert_eq!(offset_of!(FibParams, vlan), 48);
        assert_eq!(offset_of!(FibParams, smac), 52);
        assert_eq!(offset_of!(FibParams, dmac), 58);
    }

    #[test]
    fn set_encodes_ipv4_and_ipv6() {
        let mut p = params_out(99, 99);
        p.vlan = [1; 4];
        let v4 = |a: [u8; 4]| {
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&a);
            m
        };
        let (s, d) = (v4([198, 51, 100, 10]), v4([203, 0, 113, 1]));
        let q = Query {
            ifindex: 3,
            ipv6: false,
            src: &s,
            dst: &d,
            sport: 5060,
            dport: 32415,
            tos_flowinfo: 0xb8,
            tot_len: 0,
        };
        p.set(&q);
        let mut want = FibParams {
            family: AF_INET,
            l4_protocol: IPPROTO_UDP,
            sport: [0x13, 0xc4],
            dport: [0x7e, 0x9f],
            ifindex: 3,
            tos_flowinfo: [0xb8, 0, 0, 0],
            ..FibParams::default()
        };
        want.src[..4].copy_from_slice(&[198, 51, 100, 10]);
        want.dst[..4].copy_from_slice(&[203, 0, 113, 1]);
        // The output fields (and the mark, which shares smac's room) are zeroed.
        assert_eq!(p, want);

        let s6 = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let d6 = [0x20, 1, 0xd, 0xb8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let fi = flowinfo([0x6b, 0x81, 0x23, 0x45]);
        assert_eq!(fi, 0x0b81_2345, "version nibble masked off");
        p.set(&Query {
            ipv6: true,
            src: &s6,
            dst: &d6,
            tos_flowinfo: fi,
            tot_len: 1280,
            ..q
        });
        assert_eq!(p.family, AF_INET6);
        assert_eq!((p.src, p.dst), (s6, d6));
        assert_eq!(p.tos_flowinfo, [0x0b, 0x81, 0x23, 0x45]);
        assert_eq!(p.tot_len, 1280);
    }

    /// An IPv4 header with options-free layout and a valid checksum.
    fn ipv4_header(ttl: u8, id: u16) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 0x54, 0, 0, 0x40, 0, ttl, 17, 0, 0, 198, 51, 100, 10, 203, 0, 113, 1,
        ];
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let c = checksum(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn ttl_decrement_equals_a_recomputed_checksum() {
        // Every TTL that may be forwarded, over ids that put the checksum near its edges
        // (0x0000 / 0xffff carries).
        for ttl in 2..=255u8 {
            for id in [0u16, 1, 0x1234, 0x7fff, 0xbeef, 0xfeff, 0xffff] {
                let mut h = ipv4_header(ttl, id);
                assert_eq!(decrement_ttl(&mut h), Hops::Decremented);
                assert_eq!(h[8], ttl - 1);
                let patched = [h[10], h[11]];
                let mut z = h;
                z[10..12].copy_from_slice(&[0, 0]);
                assert_eq!(
                    checksum(&z, 0).to_be_bytes(),
                    patched,
                    "ttl {ttl} id {id:#x}"
                );
                assert_eq!(checksum(&h, 0), 0, "the header sums to zero");
            }
        }
    }

    #[test]
    fn ttl_of_one_or_zero_expires_untouched() {
        for ttl in [0, 1] {
            let mut h = ipv4_header(ttl, 7);
            let orig = h;
            assert_eq!(decrement_ttl(&mut h), Hops::Expired);
            assert_eq!(h, orig);
        }
        let mut v6 = [0x60, 0, 0, 0, 0, 8, 17, 1];
        assert_eq!(decrement_hop_limit(&mut v6), Hops::Expired);
        assert_eq!(v6[7], 1);
        v6[7] = 64;
        assert_eq!(decrement_hop_limit(&mut v6), Hops::Decremented);
        assert_eq!(v6[7], 63);
    }

    #[test]
    fn to_next_hop_writes_macs_and_decrements() {
        use crate::model::frames::*;
        let smac = [2, 0, 0, 0, 0, 0xa];
        let dmac = [2, 0, 0, 0, 0, 0xb];
        let mut f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, b"SIP/2.0 200 OK\r\n");
        let ttl = f[14 + 8];
        let mut p: &mut [u8] = &mut f;
        assert_eq!(expires(&p, 14, false), Some(false));
        assert_eq!(to_next_hop(&mut p, 14, false, &smac, &dmac), Some(()));
        assert_eq!(f[..6], dmac);
        assert_eq!(f[6..12], smac);
        assert_eq!(f[14 + 8], ttl - 1);
        assert!(checksums_valid(&f));

        let mut g = udp6(SERVER_V6, 5060, CLIENT_V6, 5060, b"SIP/2.0 200 OK\r\n");
        let hl = g[14 + 7];
        let mut p: &mut [u8] = &mut g;
        assert_eq!(to_next_hop(&mut p, 14, true, &smac, &dmac), Some(()));
        assert_eq!(g[..6], dmac);
        assert_eq!(g[14 + 7], hl - 1);
        assert!(checksum6_valid(&g));

        // Expiring: nothing written, the MACs included.
        let mut e = udp4(SERVER_V4, 5060, PHONE_V4, 5060, b"x");
        e[14 + 8] = 1;
        let orig = e.clone();
        let mut p: &mut [u8] = &mut e;
        assert_eq!(expires(&p, 14, false), Some(true));
        assert_eq!(to_next_hop(&mut p, 14, false, &smac, &dmac), None);
        assert_eq!(e, orig);
        // Too short for the IP header.
        let mut s = orig[..20].to_vec();
        let mut p: &mut [u8] = &mut s;
        assert_eq!(expires(&p, 14, false), None);
        assert_eq!(to_next_hop(&mut p, 14, false, &smac, &dmac), None);
        assert_eq!(s, orig[..20]);
    }
}
