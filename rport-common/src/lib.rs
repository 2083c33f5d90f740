//! Types shared by the XDP program (`rport-ebpf`) and the daemon (`rport-userspace`).
//!
//! Every map key and value here is `#[repr(C)]`, made only of integers and byte arrays,
//! with no implicit padding: the kernel and userspace read the same bytes, and a layout
//! test pins each size and field offset so a change on one side cannot go unnoticed.
#![no_std]

pub mod counters;
pub mod hash;
pub mod tag;

pub use counters::Counter;

/// Names of the maps, as the XDP object defines them and userspace looks them up.
pub mod maps {
    /// `LruHashMap<u64, Binding>`: the observed source of each request, by transaction key.
    pub const BINDINGS: &str = "BINDINGS";
    /// `PerCpuArray<u64>`: one slot per [`crate::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `Array<u8>` of 65,536 entries, indexed by UDP port (host byte order): 1 for a
    /// port that carries SIP, 0 for any other.
    pub const SIP_PORTS: &str = "SIP_PORTS";
    /// `HashMap<u32, IfaceConf>`: interfaces rport is attached to, by ifindex.
    pub const IFACES: &str = "IFACES";
    /// `XskMap`: AF_XDP sockets, at `IfaceConf::slot * MAX_QUEUES + rx queue`.
    pub const XSKS: &str = "XSKS";
    /// `LpmTrie<[u8; 16], u8>`: sources treated as if they had sent `;rport` (force-rport).
    pub const FORCE_RPORT: &str = "FORCE_RPORT";
    /// `Array<tag::TagKeys>`, one entry (index 0): the steering-tag keys and age limits.
    pub const TAG_KEYS: &str = "TAG_KEYS";
    /// `HashMap<u64, u8>`: the socket cookies (`SO_COOKIE`) of the daemon's AF_PACKET
    /// sockets, whose frames the TC egress program turns back into the receive path
    /// (`TC_REINJECT_PROGRAM_NAME`).
    pub const INJECT_SOCKETS: &str = "INJECT_SOCKETS";
    /// `LruHashMap<ReinjectKey, u64>`: each frame the TC program re-injected, with when
    /// (boot ns), for generic XDP to pass when it sees it again.
    pub const REINJECTED: &str = "REINJECTED";
}

/// A re-injected UDP frame, as the TC program saw it leave the daemon and generic XDP sees
/// it come back: addresses (IPv4-mapped for IPv4), ports, and the UDP length and checksum
/// as on the wire (the checksum covers the whole datagram, so another datagram with the
/// same key must be made to collide, within [`REINJECT_WINDOW_NS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReinjectKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub udp_len_csum: [u8; 4],
}

/// How long after its re-injection a frame is recognised: the redirect delivers it within
/// microseconds; past this an entry is stale and ignored.
pub const REINJECT_WINDOW_NS: u64 = 10_000_000;
/// Entries of `maps::REINJECTED` (LRU: a stale entry makes room for a new one).
pub const MAX_REINJECTED: u32 = 4096;
/// The XDP program's global (a `u8`, 1 by default) that tells it the kernel may run it as
/// generic XDP, so that it looks for re-injected frames; the loader sets 0 for native mode.
pub const MAY_BE_GENERIC_GLOBAL: &str = "RPORT_MAY_BE_GENERIC";
/// The XDP program's global (a `u8`, 0 by default) for `rport run --egress bypass`: 1 sends
/// steered responses out by `bpf_fib_lookup` + `bpf_redirect` instead of the kernel's
/// forwarding (docs/OPERATIONS.md, "Egress").
pub const EGRESS_BYPASS_GLOBAL: &str = "RPORT_EGRESS_BYPASS";

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "rport";
/// Name of the object's trivial XDP program (XDP_PASS): attached to the peer of a veth that
/// rport's XDP redirects into (the kernel drops a frame redirected into a veth whose peer
/// has no XDP program). Tests and benches attach it; `rport run` does not.
pub const PASS_PROGRAM_NAME: &str = "rport_pass";
/// Name of the object's bare XDP forwarder (`bpf_fib_lookup` + `bpf_redirect`, no SIP work):
/// the ceiling row of `bench gateways`; `rport run` never attaches it.
pub const FWD_PROGRAM_NAME: &str = "rport_fwd";
/// Name of the TC (clsact ingress) program that applies steering decisions.
pub const TC_PROGRAM_NAME: &str = "rport_steer";
/// Name of the TC (egress) program that re-injects the daemon's rewritten frames into the
/// receive path of the interface they arrived on.
pub const TC_REINJECT_PROGRAM_NAME: &str = "rport_reinject";
/// Entries of `maps::INJECT_SOCKETS`: one AF_PACKET socket per forwarding thread.
pub const MAX_INJECT_SOCKETS: u32 = MAX_QUEUES * MAX_IFACES;

/// Largest number of rx queues per interface that get an AF_XDP socket.
pub const MAX_QUEUES: u32 = 64;
/// Largest number of interfaces one daemon attaches to.
pub const MAX_IFACES: u32 = 64;
/// Entries in the XSKMAP.
pub const XSKMAP_SIZE: u32 = MAX_QUEUES * MAX_IFACES;
/// Bindings kept (LRU: the oldest go first when the map is full).
pub const MAX_BINDINGS: u32 = 65_536;
/// How many bytes of UDP payload the XDP program scans for the top Via. A Via further
/// in is counted (`via_beyond_window`) and the packet passes untouched.
pub const SCAN_WINDOW: u32 = 1500;
/// Default SIP port.
pub const SIP_PORT: u16 = 5060;

/// The verdicts an XDP program returns (the kernel's `enum xdp_action`, uapi
/// `linux/bpf.h`), for userspace and tests: BPF_PROG_TEST_RUN hands them back as a bare
/// `u32`. (The program itself uses aya-ebpf's bindings of the same enum.)
pub mod xdp_action {
    pub const XDP_ABORTED: u32 = 0;
    pub const XDP_DROP: u32 = 1;
    pub const XDP_PASS: u32 = 2;
    pub const XDP_TX: u32 = 3;
    pub const XDP_REDIRECT: u32 = 4;
}

/// Role of an interface, as `rport run` was told.
pub mod role {
    /// Where clients and their NATs are: requests come in here.
    pub const OUTSIDE: u32 = 1;
    /// Where the SIP servers are: responses come in here, and only these are steered.
    pub const INSIDE: u32 = 2;
}

/// Value of the `IFACES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceConf {
    /// Index of this interface's block of [`MAX_QUEUES`] entries in the XSKMAP.
    pub slot: u32,
    /// [`role::OUTSIDE`] or [`role::INSIDE`].
    pub role: u32,
}

/// Flags of a [`Binding`] (and of the scan result they come from).
pub mod flags {
    /// The request came over IPv6 (addresses are full 16 bytes, else IPv4-mapped).
    pub const IPV6: u32 = 1 << 0;
    /// The top Via has `rport` without a value: the client asks for RFC 3581.
    pub const RPORT_EMPTY: u32 = 1 << 1;
    /// The top Via has `rport=N` already.
    pub const RPORT_VALUE: u32 = 1 << 2;
    /// The top Via has `received=` already.
    pub const RECEIVED: u32 = 1 << 3;
    /// The sent-by host is not the source address (or is a name): `received` is due.
    pub const SENT_BY_DIFFERS: u32 = 1 << 4;
    /// The sent-by port (5060 when absent) is not the source port.
    pub const PORT_DIFFERS: u32 = 1 << 5;
    /// The sent-by host is an RFC 1918 address (or an IPv6 ULA).
    pub const SENT_BY_PRIVATE: u32 = 1 << 6;
    /// The sent-by host is in the RFC 6598 shared space (carrier-grade NAT).
    pub const SENT_BY_CGNAT: u32 = 1 << 7;
    /// The sent-by host is a domain name.
    pub const SENT_BY_NAME: u32 = 1 << 8;
    /// The source matched a `--force-rport` network.
    pub const FORCE_RPORT: u32 = 1 << 9;
    /// The branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub const MAGIC_COOKIE: u32 = 1 << 10;
    /// Recorded from the first fragment of a fragmented IPv4 datagram.
    pub const FRAGMENT: u32 = 1 << 11;
    /// The sent-by host is an IPv6 reference (`[...]`).
    pub const SENT_BY_V6: u32 = 1 << 12;
}

/// What the XDP program records for each SIP request: the value of the `BINDINGS` map.
///
/// Keyed by [`hash::transaction_key`] of the top Via, so the response (which carries the
/// same top Via) finds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// Source address the request came from (IPv4-mapped `::ffff:a.b.c.d` for IPv4).
    pub src_addr: [u8; 16],
    /// Destination the request was sent to (the server), same encoding.
    pub dst_addr: [u8; 16],
    /// `bpf_ktime_get_boot_ns` of the first request with this key.
    pub first_seen_ns: u64,
    /// `bpf_ktime_get_boot_ns` of the latest request with this key.
    pub last_seen_ns: u64,
    /// Observed source port (host byte order).
    pub src_port: u16,
    /// Destination port of the request (host byte order).
    pub dst_port: u16,
    /// Port in the sent-by (5060 when absent), host byte order.
    pub sent_by_port: u16,
    /// Outer VLAN id (0: untagged).
    pub vlan: u16,
    /// Inner VLAN id of a double-tagged frame (0: none).
    pub vlan_inner: u16,
    /// Padding made explicit, always 0.
    pub _pad: u16,
    /// Interface the request came in on.
    pub ifindex: u32,
    /// [`flags`].
    pub flags: u32,
    /// How many requests with this key were seen (retransmissions count too).
    pub requests: u32,
    /// The sent-by IPv4 address when it is an IPv4 literal (network byte order), else 0.
    pub sent_by_v4: [u8; 4],
    /// Explicit tail padding, always 0.
    pub _reserved: u32,
}

impl Binding {
    /// The observed source as a socket address.
    #[cfg(feature = "user")]
    pub fn source(&self) -> core::net::SocketAddr {
        core::net::SocketAddr::new(addr_from_16(&self.src_addr), self.src_port)
    }
    /// The server the request was sent to.
    #[cfg(feature = "user")]
    pub fn destination(&self) -> core::net::SocketAddr {
        core::net::SocketAddr::new(addr_from_16(&self.dst_addr), self.dst_port)
    }
}

/// A steering decision handed from the XDP program to the TC program on the same
/// interface, in the frame's XDP metadata area (`bpf_xdp_adjust_meta`).
///
/// Why not rewrite in XDP: a packet from a local sender on a veth (a server in a container
/// or namespace of the gateway host) reaches XDP with CHECKSUM_PARTIAL: its UDP checksum
/// field holds only the pseudo-header seed, which the kernel completes later. XDP cannot
/// see that state, so no in-place update is right in every case (a complete checksum needs
/// RFC 1624 over address and port; a seed needs the address only, uncomplemented). The TC
/// program sees the skb, and `bpf_l4_csum_replace` applies the right update for either.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerMeta {
    /// [`SteerMeta::MAGIC`]: metadata written by rport (another XDP program's metadata
    /// is never taken for a decision).
    pub magic: u32,
    /// Offset of the IP header in the frame.
    pub l3: u16,
    /// Offset of the UDP header in the frame.
    pub l4: u16,
    /// New destination address (IPv4-mapped for IPv4, as in [`Binding`]).
    pub addr: [u8; 16],
    /// New destination port, network byte order.
    pub port_be: u16,
    /// 1 for IPv6, 0 for IPv4.
    pub ipv6: u16,
}

impl SteerMeta {
    /// "rpS1".
    pub const MAGIC: u32 = 0x7270_5331;
}

/// Where the XDP program's route lookup (`bpf_fib_lookup`) says a request handed to the
/// daemon goes next, in the frame's XDP metadata (`bpf_xdp_adjust_meta`); only under
/// `--egress bypass`. AF_XDP copies the metadata in front of the frame (the kernel's
/// `xsk_copy_xdp`), so the daemon reads it from the [`EgressMeta`]-sized bytes just before
/// the descriptor's data, and sends the rewritten request out by AF_XDP TX on `ifindex`
/// with these MACs when `status` is [`egress_status::FORWARD`] (datapath/egress.rs);
/// anything else goes the kernel's way (re-injection), counted by the status.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressMeta {
    /// [`EgressMeta::MAGIC`]: written by rport for this frame (the daemon clears it before
    /// the frame goes back to the fill ring, so a stale one is never read).
    pub magic: u32,
    /// Egress interface of the route to the frame's destination.
    pub ifindex: u32,
    /// Next hop's MAC (the neighbour entry).
    pub dmac: [u8; 6],
    /// The egress interface's MAC.
    pub smac: [u8; 6],
    /// One of [`egress_status`].
    pub status: u16,
    /// Explicit padding, always 0.
    pub _pad: u16,
}

impl EgressMeta {
    /// "rpE1".
    pub const MAGIC: u32 = 0x7270_4531;
}

/// [`EgressMeta::status`] values: what the route lookup found.
pub mod egress_status {
    /// Route and neighbour found: the daemon may send it out itself.
    pub const FORWARD: u16 = 1;
    /// No neighbour entry yet (`BPF_FIB_LKUP_RET_NO_NEIGH`): the kernel resolves it.
    pub const NO_NEIGH: u16 = 2;
    /// Larger than the egress MTU (`BPF_FIB_LKUP_RET_FRAG_NEEDED`): the kernel fragments.
    pub const FRAG_NEEDED: u16 = 3;
    /// Anything else (no route, blackhole, forwarding off, a lookup error): the kernel
    /// decides.
    pub const OTHER: u16 = 4;
}

/// Decodes the 16-byte address encoding used in the maps (IPv4-mapped for IPv4).
#[cfg(feature = "user")]
pub fn addr_from_16(a: &[u8; 16]) -> core::net::IpAddr {
    let v6 = core::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => core::net::IpAddr::V4(v4),
        None => core::net::IpAddr::V6(v6),
    }
}

/// Encodes an address for the maps (IPv4-mapped for IPv4).
#[cfg(feature = "user")]
pub fn addr_to_16(a: core::net::IpAddr) -> [u8; 16] {
    match a {
        core::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        core::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Key of the `FORCE_RPORT` LPM trie: prefix length in bits over the 16-byte encoding.
pub const V4_MAPPED_PREFIX_BITS: u32 = 96;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), integers and byte arrays only, no padding (see the layout
    // tests below), so every bit pattern is valid.
    unsafe impl aya::Pod for super::Binding {}
    unsafe impl aya::Pod for super::IfaceConf {}
    unsafe impl aya::Pod for super::tag::TagKey {}
    unsafe impl aya::Pod for super::tag::TagConf {}
    unsafe impl aya::Pod for super::tag::TagKeys {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn binding_layout_is_pinned() {
        assert_eq!(size_of::<Binding>(), 80);
        assert_eq!(offset_of!(Binding, src_addr), 0);
        assert_eq!(offset_of!(Binding, dst_addr), 16);
        assert_eq!(offset_of!(Binding, first_seen_ns), 32);
        assert_eq!(offset_of!(Binding, last_seen_ns), 40);
        assert_eq!(offset_of!(Binding, src_port), 48);
        assert_eq!(offset_of!(Binding, dst_port), 50);
        assert_eq!(offset_of!(Binding, sent_by_port), 52);
        assert_eq!(offset_of!(Binding, vlan), 54);
        assert_eq!(offset_of!(Binding, vlan_inner), 56);
        assert_eq!(offset_of!(Binding, ifindex), 60);
        assert_eq!(offset_of!(Binding, flags), 64);
        assert_eq!(offset_of!(Binding, requests), 68);
        assert_eq!(offset_of!(Binding, sent_by_v4), 72);
        assert_eq!(offset_of!(Binding, _reserved), 76);
        assert_eq!(core::mem::align_of::<Binding>(), 8);
    }

    #[test]
    fn steer_meta_layout_is_pinned() {
        // XDP metadata: at most 32 bytes, a multiple of 4.
        assert_eq!(size_of::<SteerMeta>(), 28);
        assert_eq!(offset_of!(SteerMeta, l3), 4);
        assert_eq!(offset_of!(SteerMeta, l4), 6);
        assert_eq!(offset_of!(SteerMeta, addr), 8);
        assert_eq!(offset_of!(SteerMeta, port_be), 24);
        assert_eq!(offset_of!(SteerMeta, ipv6), 26);
    }

    #[test]
    fn egress_meta_layout_is_pinned() {
        // XDP metadata: at most 32 bytes, a multiple of 4.
        assert_eq!(size_of::<EgressMeta>(), 24);
        assert_eq!(offset_of!(EgressMeta, ifindex), 4);
        assert_eq!(offset_of!(EgressMeta, dmac), 8);
        assert_eq!(offset_of!(EgressMeta, smac), 14);
        assert_eq!(offset_of!(EgressMeta, status), 20);
        assert_eq!(offset_of!(EgressMeta, _pad), 22);
        assert_eq!(core::mem::align_of::<EgressMeta>(), 4);
    }

    #[test]
    fn iface_conf_layout_is_pinned() {
        assert_eq!(size_of::<IfaceConf>(), 8);
        assert_eq!(offset_of!(IfaceConf, role), 4);
    }

    #[test]
    fn tag_keys_layout_is_pinned() {
        use tag::{TagConf, TagKey, TagKeys};
        assert_eq!(size_of::<TagKey>(), 32);
        assert_eq!(offset_of!(TagKey, key), 0);
        assert_eq!(offset_of!(TagKey, created_tai_s), 16);
        assert_eq!(offset_of!(TagKey, id), 24);
        assert_eq!(offset_of!(TagKey, valid), 25);
        assert_eq!(offset_of!(TagKey, _pad), 26);
        assert_eq!(core::mem::align_of::<TagKey>(), 8);
        assert_eq!(size_of::<TagConf>(), 16);
        assert_eq!(offset_of!(TagConf, max_age_via_s), 0);
        assert_eq!(offset_of!(TagConf, max_age_contact_s), 4);
        assert_eq!(offset_of!(TagConf, max_future_s), 8);
        assert_eq!(offset_of!(TagConf, _pad), 12);
        assert_eq!(size_of::<TagKeys>(), 24 + 8 * 32);
        assert_eq!(offset_of!(TagKeys, conf), 0);
        assert_eq!(offset_of!(TagKeys, current), 16);
        assert_eq!(offset_of!(TagKeys, _pad), 20);
        assert_eq!(offset_of!(TagKeys, slots), 24);
        assert_eq!(core::mem::align_of::<TagKeys>(), 8);
    }

    #[test]
    fn tag_keys_round_trip_through_bytes() {
        let mut k = tag::TagKeys {
            conf: tag::TagConf::DEFAULT,
            current: 5,
            ..Default::default()
        };
        k.slots[5] = tag::TagKey {
            key: [0x5a; 16],
            created_tai_s: 0x0102_0304_0506_0708,
            id: 5,
            valid: 1,
            _pad: [0; 6],
        };
        // SAFETY: TagKeys is repr(C) plain data, as the kernel sees a map value.
        let bytes: [u8; 280] = unsafe { core::mem::transmute(k) };
        let back: tag::TagKeys = unsafe { core::mem::transmute(bytes) };
        assert_eq!(k, back);
        assert_eq!(&bytes[0..4], &tag::defaults::MAX_AGE_VIA_S.to_ne_bytes());
        assert_eq!(&bytes[16..20], &5u32.to_ne_bytes());
        let slot = 24 + 5 * 32;
        assert_eq!(&bytes[slot..slot + 16], &[0x5a; 16]);
        assert_eq!(
            &bytes[slot + 16..slot + 24],
            &0x0102_0304_0506_0708u64.to_ne_bytes()
        );
        assert_eq!(bytes[slot + 24], 5);
        assert_eq!(bytes[slot + 25], 1);
    }

    #[test]
    fn binding_round_trips_through_bytes() {
        let b = Binding {
            src_addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 1],
            dst_addr: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            first_seen_ns: 1,
            last_seen_ns: 0x0102_0304_0506_0708,
            src_port: 32415,
            dst_port: 5060,
            sent_by_port: 5060,
            vlan: 100,
            vlan_inner: 200,
            _pad: 0,
            ifindex: 7,
            flags: flags::RPORT_EMPTY | flags::SENT_BY_PRIVATE,
            requests: 3,
            sent_by_v4: [192, 168, 1, 50],
            _reserved: 0,
        };
        // SAFETY: Binding is repr(C) plain data; reading it as bytes and back is what the
        // kernel does with map values.
        let bytes: [u8; 80] = unsafe { core::mem::transmute(b) };
        let back: Binding = unsafe { core::mem::transmute(bytes) };
        assert_eq!(b, back);
        assert_eq!(&bytes[48..50], &32415u16.to_ne_bytes());
        assert_eq!(&bytes[72..76], &[192, 168, 1, 50]);
    }
}
