//! Ethernet → VLAN → IPv4/IPv6 → UDP, down to the SIP payload.

use crate::pkt::Packet;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const IPV6_HLEN: usize = 40;
const IPV6_NEXT_FRAGMENT: u8 = 44;
const UDP_HLEN: usize = 8;

/// Why a frame is not a UDP datagram rport can look into. Each maps to one verdict and
/// one counter in `main.rs`; none of them drops the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4/IPv6 (ARP, LLDP, a third VLAN tag, ...), or IP but not UDP.
    NotUdp,
    /// Cut short inside a header.
    Truncated,
    /// A non-first IP fragment: no UDP header to look at.
    LaterFragment,
    /// IPv6 with a Fragment header: counted and passed.
    Ipv6Fragment,
}

/// Where things are in a UDP frame, and the addresses needed for a binding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    // Offsets are u16: read back from the scratch map, a u16 load gives the verifier a
    // non-negative bounded range for the packet arithmetic done with them.
    /// Offset of the IP header.
    pub l3: u16,
    /// Offset of the UDP header.
    pub l4: u16,
    /// Offset of the UDP payload.
    pub payload: u16,
    /// Payload bytes present in this frame (capped by the UDP length).
    pub payload_len: u16,
    /// True for IPv6.
    pub ipv6: bool,
    /// Source and destination addresses, IPv4-mapped for IPv4.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// VLAN ids (outer, inner), 0 when absent.
    pub vlan: u16,
    pub vlan_inner: u16,
    /// First fragment of a fragmented IPv4 datagram (payload is partial).
    pub first_fragment: bool,
    /// The UDP length claims more bytes than the frame holds (and it is not a fragment).
    pub short: bool,
}

/// IPv4-mapped encoding of an IPv4 address.
#[inline(always)]
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// Parses a frame down to its UDP payload, into `h` (filled in place: on the XDP side it
/// is a per-CPU scratch map value, because the BPF stack is only 512 bytes).
#[inline(always)]
pub fn parse<P: Packet>(p: &P, h: &mut Headers) -> Result<(), ParseError> {
    *h = Headers::default();
    let mut off = ETH_HLEN;
    let mut proto = p.be16(12).ok_or(ParseError::Truncated)?;
    // Up to two tags: 802.1ad outer + 802.1Q inner (QinQ), or one of either.
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let tag = p.read::<[u8; 4]>(off).ok_or(ParseError::Truncated)?;
        h.vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        proto = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let tag = p.read::<[u8; 4]>(off).ok_or(ParseError::Truncated)?;
            h.vlan_inner = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
            proto = u16::from_be_bytes([tag[2], tag[3]]);
            off += 4;
        }
    }
    h.l3 = off as u16;
    let ip_payload_end;
    // Each header is read whole, with one bounds check: the verifier must see a check for
    // every access, and the compiler may not fold them into one it cannot follow.
    if proto == ETH_P_IP {
        let ip = p.read::<[u8; 20]>(off).ok_or(ParseError::Truncated)?;
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 {
            return Err(ParseError::NotUdp);
        }
        if ip[9] != IPPROTO_UDP {
            return Err(ParseError::NotUdp);
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if frag & 0x1fff != 0 {
            return Err(ParseError::LaterFragment);
        }
        h.first_fragment = frag & 0x2000 != 0;
        h.src = v4_mapped([ip[12], ip[13], ip[14], ip[15]]);
        h.dst = v4_mapped([ip[16], ip[17], ip[18], ip[19]]);
        ip_payload_end = off + u16::from_be_bytes([ip[2], ip[3]]) as usize;
        // Options (ihl > 20) are skipped; the UDP read below checks they are all there.
        off += ihl;
    } else if proto == ETH_P_IPV6 {
        let ip = p
            .read::<[u8; IPV6_HLEN]>(off)
            .ok_or(ParseError::Truncated)?;
        let next = ip[6];
        let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
        h.src.copy_from_slice(&ip[8..24]);
        h.dst.copy_from_slice(&ip[24..40]);
        if next == IPV6_NEXT_FRAGMENT {
            return Err(ParseError::Ipv6Fragment);
        }
        if next != IPPROTO_UDP {
            // Extension headers other than Fragment are rare on SIP traffic: passed.
            return Err(ParseError::NotUdp);
        }
        h.ipv6 = true;
        ip_payload_end = off + IPV6_HLEN + plen;
        off += IPV6_HLEN;
    } else {
        return Err(ParseError::NotUdp);
    }
    h.l4 = off as u16;
    let udp = p.read::<[u8; UDP_HLEN]>(off).ok_or(ParseError::Truncated)?;
    h.sport = u16::from_be_bytes([udp[0], udp[1]]);
    h.dport = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if udp_len < UDP_HLEN {
        return Err(ParseError::Truncated);
    }
    let payload = off + UDP_HLEN;
    h.payload = payload as u16;
    // What the frame really holds: trailing Ethernet padding is not payload, and a frame
    // shorter than its headers claim is counted as truncated (but still looked into).
    let frame_end = p.len();
    let mut end = off + udp_len;
    if !h.first_fragment && (end > frame_end || end > ip_payload_end) {
        h.short = true;
    }
    if ip_payload_end < end {
        end = ip_payload_end;
    }
    if frame_end < end {
        end = frame_end;
    }
    h.payload_len = end.saturating_sub(payload) as u16;
    Ok(())
}

/// Host convenience: parse into a fresh [`Headers`].
#[cfg(not(target_arch = "bpf"))]
pub fn headers(p: &[u8]) -> Result<Headers, ParseError> {
    let mut h = Headers::default();
    parse(&p, &mut h)?;
    Ok(h)
}
