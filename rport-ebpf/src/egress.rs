//! `--egress bypass` for requests: what the XDP program tells the daemon about the way
//! out of a request it hands over (`rport_common::EgressMeta`, in the frame's metadata).
//!
//! The request keeps its destination (the rewrite touches the SIP payload only), so the
//! route the kernel would take for it is known before the rewrite: [`request_query`] asks
//! `bpf_fib_lookup` for it from the ingress interface (policy routing, the `forwarding`
//! sysctl), and [`status`] turns the result into what the daemon acts on. The daemon
//! checks the rest it alone knows: the final size against the egress MTU, an interface it
//! has a TX socket on (userspace `datapath/egress.rs`).
use rport_common::egress_status;

use crate::{
    fib::{Fib, NoHop, Query, flowinfo},
    parse::Headers,
    pkt::Packet,
};

/// The lookup's [`Query`] for a request as it arrived: its addresses and ports, its TOS
/// (IPv4) or flow information (IPv6) and length read from the IP header at `l3` (so the
/// helper checks the route's MTU against what arrived; the daemon checks the rewritten
/// size). `None`: the IP header is not in the frame.
#[inline(always)]
pub fn request_query<'a, P: Packet>(
    p: &P,
    l3: usize,
    h: &'a Headers,
    ifindex: u32,
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
        dst: &h.dst,
        sport: h.sport,
        dport: h.dport,
        tos_flowinfo,
        tot_len,
    })
}

/// What the daemon is told ([`egress_status`]): forward it itself only when the lookup
/// found the next hop and the frame is untagged (for a tagged frame the lookup ran from the
/// lower device, not the VLAN device the kernel would route it from).
#[inline(always)]
pub fn status(fib: Fib, h: &Headers) -> u16 {
    match fib {
        Fib::Forward { .. } if h.vlan != 0 || h.vlan_inner != 0 => egress_status::OTHER,
        Fib::Forward { .. } => egress_status::FORWARD,
        Fib::Pass(NoHop::NoNeighbour) => egress_status::NO_NEIGH,
        Fib::Pass(NoHop::FragNeeded { .. }) => egress_status::FRAG_NEEDED,
        Fib::Pass(_) => egress_status::OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ipv6: bool) -> Headers {
        Headers {
            l3: 14,
            ipv6,
            src: [1; 16],
            dst: [2; 16],
            sport: 40000,
            dport: 5060,
            ..Headers::default()
        }
    }

    #[test]
    fn the_query_is_the_request_as_it_arrived() {
        let mut f = [0u8; 14 + 40];
        f[14..18].copy_from_slice(&[0x45, 0xb8, 0x02, 0x6c]);
        let h = headers(false);
        let q = request_query(&&f[..], 14, &h, 3).unwrap();
        assert_eq!(
            (q.ifindex, q.ipv6, q.sport, q.dport),
            (3, false, 40000, 5060)
        );
        assert_eq!((q.tos_flowinfo, q.tot_len), (0xb8, 620));
        assert_eq!((q.src, q.dst), (&[1; 16], &[2; 16]), "its own destination");
        // IPv6: traffic class and flow label, the payload length plus the header.
        f[14..22].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45, 0x02, 0x44, 17, 64]);
        let h = headers(true);
        let q = request_query(&&f[..], 14, &h, 3).unwrap();
        assert_eq!((q.tos_flowinfo, q.tot_len), (0x0b81_2345, 580 + 40));
        assert!(request_query(&&[0u8; 16][..], 14, &h, 3).is_none());
    }

    #[test]
    fn only_a_found_next_hop_for_an_untagged_frame_is_forwarded() {
        let fwd = Fib::Forward {
            ifindex: 4,
            smac: [2; 6],
            dmac: [3; 6],
        };
        let mut h = headers(false);
        assert_eq!(status(fwd, &h), egress_status::FORWARD);
        assert_eq!(
            status(Fib::Pass(NoHop::NoNeighbour), &h),
            egress_status::NO_NEIGH
        );
        assert_eq!(
            status(Fib::Pass(NoHop::FragNeeded { mtu: 1400 }), &h),
            egress_status::FRAG_NEEDED
        );
        for r in [
            NoHop::NotForwarded,
            NoHop::ForwardingDisabled,
            NoHop::Other(-22),
        ] {
            assert_eq!(status(Fib::Pass(r), &h), egress_status::OTHER, "{r:?}");
        }
        h.vlan = 7;
        assert_eq!(status(fwd, &h), egress_status::OTHER, "tagged");
    }
}
