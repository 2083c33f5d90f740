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

impl Headers {
    /// The key a re-injected datagram is noted under (`REINJECTED`): its addresses, ports
    /// and the UDP length and checksum words (`udp_len_csum`, as they are in the frame).
    /// One definition for the TC program that notes it and the XDP program that finds it.
    #[inline(always)]
    pub fn reinject_key(&self, udp_len_csum: [u8; 4]) -> rport_common::ReinjectKey {
        rport_common::ReinjectKey {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            udp_len_csum,
        }
    }
}

/// IPv4-mapped encoding of an IPv4 address.
#[inline(always)]
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// `*h = Headers::default()`, as one 2-byte store per word.
///
/// Why: on BPF the assignment compiles to two calls of aya-ebpf's `memset` (a byte loop,
/// five instructions per byte) over 51 bytes: about 270 instructions paid by every UDP
/// packet, SIP or not. Volatile, so that the compiler cannot merge the stores back into a
/// `memset`.
#[inline(always)]
fn clear(h: &mut Headers) {
    use core::mem::{MaybeUninit, align_of, size_of};
    const WORDS: usize = size_of::<Headers>() / 2;
    const _: () = assert!(size_of::<Headers>().is_multiple_of(2) && align_of::<Headers>() == 2);
    let init = Headers::default();
    let src = &init as *const Headers as *const MaybeUninit<u16>;
    let dst = h as *mut Headers as *mut MaybeUninit<u16>;
    let mut i = 0;
    while i < WORDS {
        // SAFETY: word `i` of two valid, 2-aligned `Headers`; MaybeUninit, because one
        // word holds a padding byte.
        unsafe { core::ptr::write_volatile(dst.add(i), src.add(i).read()) };
        i += 1;
    }
}

/// The UDP ports (source, destination) of a frame that [`parse`] accepts, read without
/// filling [`Headers`]: untagged IPv4 that is not a later fragment, or IPv6 with UDP
/// right after its fixed header; the UDP header whole, its length at least 8. `None` for
/// anything else (VLAN tags, other protocols, anything `parse` refuses): the caller then
/// runs `parse`, which decides those.
///
/// Why: a datagram to and from no SIP port needs nothing but its ports (it is counted
/// `non_sip` and passed), while `parse` costs it the per-CPU scratch lookup, the clearing
/// of [`Headers`] and the stores of both addresses.
#[inline(always)]
pub fn udp_ports<P: Packet>(p: &P) -> Option<(u16, u16)> {
    let proto = p.be16(12)?;
    let udp_off = if proto == ETH_P_IP {
        let ip = p.read::<[u8; 20]>(ETH_HLEN)?;
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_UDP || frag & 0x1fff != 0 {
            return None;
        }
        ETH_HLEN + ihl
    } else if proto == ETH_P_IPV6 {
        let ip = p.read::<[u8; IPV6_HLEN]>(ETH_HLEN)?;
        if ip[6] != IPPROTO_UDP {
            return None;
        }
        ETH_HLEN + IPV6_HLEN
    } else {
        return None;
    };
    let udp = p.read::<[u8; UDP_HLEN]>(udp_off)?;
    if (u16::from_be_bytes([udp[4], udp[5]]) as usize) < UDP_HLEN {
        return None;
    }
    Some((
        u16::from_be_bytes([udp[0], udp[1]]),
        u16::from_be_bytes([udp[2], udp[3]]),
    ))
}

/// Parses a frame down to its UDP payload, into `h` (filled in place: on the XDP side it
/// is a per-CPU scratch map value, because the BPF stack is only 512 bytes).
#[inline(always)]
pub fn parse<P: Packet>(p: &P, h: &mut Headers) -> Result<(), ParseError> {
    clear(h);
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

/// The first payload bytes the decision looks at ([`crate::decide::classify`]): all 8 when the
/// payload has that many, else its first 4 or 2 (enough for the keep-alives), zero after
/// them. `off` and `len` are [`Headers::payload`] and [`Headers::payload_len`].
///
/// One read of the size needed: the payload length never exceeds the frame, so it cannot
/// fail, and the decision is a function of `len` and these bytes alone.
#[inline(always)]
pub fn payload_head<P: Packet>(p: &P, off: usize, len: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    if len >= 8 {
        if let Some(x) = p.read::<[u8; 8]>(off) {
            b = x;
        }
    } else if len >= 4 {
        if let Some([b0, b1, b2, b3]) = p.read::<[u8; 4]>(off) {
            b[..4].copy_from_slice(&[b0, b1, b2, b3]);
        }
    } else if len >= 2 {
        if let Some([b0, b1]) = p.read::<[u8; 2]>(off) {
            b[0] = b0;
            b[1] = b1;
        }
    }
    b
}

/// Host convenience: parse into a fresh [`Headers`].
#[cfg(not(target_arch = "bpf"))]
pub fn headers(p: &[u8]) -> Result<Headers, ParseError> {
    let mut h = Headers::default();
    parse(&p, &mut h)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: [u8; 4] = [192, 0, 2, 1];
    const DST4: [u8; 4] = [198, 51, 100, 2];
    const SRC6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ];
    const DST6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    ];
    const SIP: &[u8] = b"OPTIONS sip:x SIP/2.0\r\n\r\n";

    /// Ethernet header: MACs, then each (TPID, TCI) tag, then the ethertype.
    fn eth(ethertype: u16, tags: &[(u16, u16)]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for &(tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// IPv4 header with `options` (a multiple of 4 bytes), total length covering `l4_len`.
    fn ipv4(proto: u8, frag: u16, options: &[u8], l4_len: usize) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let hlen = 20 + options.len();
        let total = (hlen + l4_len) as u16;
        let mut ip = vec![0x40 | (hlen / 4) as u8, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]); // id
        ip.extend_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(&[64, proto, 0, 0]); // ttl, proto, checksum (not checked)
        ip.extend_from_slice(&SRC4);
        ip.extend_from_slice(&DST4);
        ip.extend_from_slice(options);
        ip
    }

    fn ipv6(next: u8, plen: usize) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(plen as u16).to_be_bytes());
        ip.extend_from_slice(&[next, 64]);
        ip.extend_from_slice(&SRC6);
        ip.extend_from_slice(&DST6);
        ip
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

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn v4_frame(tags: &[(u16, u16)], options: &[u8], payload: &[u8]) -> Vec<u8> {
        let u = udp(5060, 5080, payload);
        cat(&[&eth(ETH_P_IP, tags), &ipv4(17, 0, options, u.len()), &u])
    }

    fn v6_frame(tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
        let u = udp(5060, 5080, payload);
        cat(&[&eth(ETH_P_IPV6, tags), &ipv6(17, u.len()), &u])
    }

    fn parse_slice(f: &[u8]) -> Result<Headers, ParseError> {
        let mut h = Headers::default();
        let r = parse(&f, &mut h).map(|()| h);
        assert_eq!(r, headers(f), "parse and headers disagree");
        assert_eq!(
            udp_ports(&f),
            ports_by_parse(&r),
            "udp_ports and parse disagree"
        );
        r
    }

    /// What [`udp_ports`] must give for a frame `parse` made `r` of: the ports of an
    /// untagged frame it accepts (l3 right after the Ethernet header), nothing otherwise.
    fn ports_by_parse(r: &Result<Headers, ParseError>) -> Option<(u16, u16)> {
        r.ok()
            .filter(|h| h.l3 as usize == ETH_HLEN)
            .map(|h| (h.sport, h.dport))
    }

    fn expect_v4(l3: u16, l4: u16, payload_len: u16) -> Headers {
        Headers {
            l3,
            l4,
            payload: l4 + 8,
            payload_len,
            ipv6: false,
            src: v4_mapped(SRC4),
            dst: v4_mapped(DST4),
            sport: 5060,
            dport: 5080,
            ..Headers::default()
        }
    }

    fn expect_v6(l3: u16, payload_len: u16) -> Headers {
        Headers {
            l3,
            l4: l3 + 40,
            payload: l3 + 48,
            payload_len,
            ipv6: true,
            src: SRC6,
            dst: DST6,
            sport: 5060,
            dport: 5080,
            ..Headers::default()
        }
    }

    /// How many payload bytes `payload_head` returns for a payload of `len` bytes.
    fn head_len(len: u16) -> usize {
        match len {
            8.. => 8,
            4..8 => 4,
            2..4 => 2,
            _ => 0,
        }
    }

    #[test]
    fn payload_head_reads_what_classify_needs() {
        let frame: Vec<u8> = (1..=20).collect();
        let p: &[u8] = &frame;
        for len in 0..=12u16 {
            let head = payload_head(&p, 10, len);
            let n = head_len(len);
            assert_eq!(head[..n], frame[10..10 + n], "len {len}");
            assert!(head[n..].iter().all(|b| *b == 0), "len {len}: {head:?}");
        }
        // Past the end of the frame: nothing read, all zero (the parser never asks this).
        assert_eq!(payload_head(&p, 15, 8), [0; 8]);
    }

    #[test]
    fn v4_mapped_layout() {
        assert_eq!(
            v4_mapped([192, 0, 2, 1]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]
        );
    }

    #[test]
    fn ipv4_udp() {
        let f = v4_frame(&[], &[], SIP);
        assert_eq!(f.len(), 14 + 20 + 8 + SIP.len());
        let h = parse_slice(&f).unwrap();
        assert_eq!(h, expect_v4(14, 34, SIP.len() as u16));
        assert_eq!(&f[h.payload as usize..][..h.payload_len as usize], SIP);
        assert!(!h.short);
        assert!(!h.first_fragment);
        assert_eq!(h.vlan, 0);
        assert_eq!(h.vlan_inner, 0);
    }

    #[test]
    fn ipv4_with_options() {
        for words in 1..=10usize {
            let options: Vec<u8> = (0..words * 4)
                .map(|i| if i == 0 { 0x94 } else { 1 })
                .collect();
            let f = v4_frame(&[], &options, SIP);
            let h = parse_slice(&f).unwrap();
            let l4 = (14 + 20 + words * 4) as u16;
            assert_eq!(h, expect_v4(14, l4, SIP.len() as u16), "ihl {}", 5 + words);
            assert_eq!(&f[h.payload as usize..], SIP);
            // Cut inside the options or the UDP header behind them.
            for len in 34..l4 as usize + 8 {
                assert_eq!(parse_slice(&f[..len]), Err(ParseError::Truncated), "{len}");
            }
        }
    }

    #[test]
    fn ipv4_bad_version_or_ihl() {
        let mut f = v4_frame(&[], &[], SIP);
        for first in [0x65u8, 0x35, 0x44, 0x40, 0x05] {
            f[14] = first;
            assert_eq!(parse_slice(&f), Err(ParseError::NotUdp), "{first:#x}");
        }
    }

    #[test]
    fn ipv6_udp() {
        let f = v6_frame(&[], SIP);
        assert_eq!(f.len(), 14 + 40 + 8 + SIP.len());
        let h = parse_slice(&f).unwrap();
        assert_eq!(h, expect_v6(14, SIP.len() as u16));
        assert_eq!(&f[h.payload as usize..][..h.payload_len as usize], SIP);
    }

    #[test]
    fn vlan_tags() {
        // One tag of either kind; the TCI's priority and DEI bits are not part of the id.
        for tpid in [ETH_P_8021Q, ETH_P_8021AD] {
            let f = v4_frame(&[(tpid, 0xe064)], &[], SIP);
            let h = parse_slice(&f).unwrap();
            let want = Headers {
                vlan: 100,
                ..expect_v4(18, 38, SIP.len() as u16)
            };
            assert_eq!(h, want, "{tpid:#x}");

            let f = v6_frame(&[(tpid, 0x1fff)], SIP);
            let h = parse_slice(&f).unwrap();
            let want = Headers {
                vlan: 0xfff,
                ..expect_v6(18, SIP.len() as u16)
            };
            assert_eq!(h, want, "{tpid:#x}");
        }
        // Two tags: QinQ (802.1ad outer, 802.1Q inner) and any other pair of the two.
        for (outer, inner) in [
            (ETH_P_8021AD, ETH_P_8021Q),
            (ETH_P_8021Q, ETH_P_8021Q),
            (ETH_P_8021AD, ETH_P_8021AD),
            (ETH_P_8021Q, ETH_P_8021AD),
        ] {
            let f = v4_frame(&[(outer, 100), (inner, 0x30c8)], &[], SIP);
            let h = parse_slice(&f).unwrap();
            let want = Headers {
                vlan: 100,
                vlan_inner: 200,
                ..expect_v4(22, 42, SIP.len() as u16)
            };
            assert_eq!(h, want, "{outer:#x}/{inner:#x}");
            assert_eq!(&f[h.payload as usize..], SIP);

            let f = v6_frame(&[(outer, 4094), (inner, 1)], SIP);
            let h = parse_slice(&f).unwrap();
            let want = Headers {
                vlan: 4094,
                vlan_inner: 1,
                ..expect_v6(22, SIP.len() as u16)
            };
            assert_eq!(h, want);
        }
        // A third tag is not looked through.
        let f = v4_frame(
            &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
            &[],
            SIP,
        );
        assert_eq!(parse_slice(&f), Err(ParseError::NotUdp));
    }

    #[test]
    fn not_udp() {
        // TCP, ICMP, GRE over IPv4.
        for proto in [6u8, 1, 47, 0] {
            let u = udp(5060, 5060, SIP);
            let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(proto, 0, &[], u.len()), &u]);
            assert_eq!(parse_slice(&f), Err(ParseError::NotUdp), "{proto}");
        }
        // TCP, hop-by-hop, routing, ICMPv6 over IPv6.
        for next in [6u8, 0, 43, 58] {
            let u = udp(5060, 5060, SIP);
            let f = cat(&[&eth(ETH_P_IPV6, &[]), &ipv6(next, u.len()), &u]);
            assert_eq!(parse_slice(&f), Err(ParseError::NotUdp), "{next}");
        }
        // ARP, LLDP, and a tagged ARP frame.
        let arp = [0u8; 28];
        for f in [
            cat(&[&eth(0x0806, &[]), &arp]),
            cat(&[&eth(0x88cc, &[]), &arp]),
            cat(&[&eth(0x0806, &[(ETH_P_8021Q, 5)]), &arp]),
            cat(&[&eth(0x0806, &[(ETH_P_8021AD, 5), (ETH_P_8021Q, 6)]), &arp]),
        ] {
            assert_eq!(parse_slice(&f), Err(ParseError::NotUdp));
        }
        // Only the ethertype is needed to say "not IP".
        assert_eq!(parse_slice(&eth(0x0806, &[])), Err(ParseError::NotUdp));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_short_payload() {
        let opts = [1u8; 8];
        let frames = [
            v4_frame(&[], &[], SIP),
            v4_frame(&[], &opts, SIP),
            v4_frame(&[(ETH_P_8021Q, 7)], &[], SIP),
            v4_frame(&[(ETH_P_8021AD, 7), (ETH_P_8021Q, 8)], &opts, SIP),
            v6_frame(&[], SIP),
            v6_frame(&[(ETH_P_8021AD, 7), (ETH_P_8021Q, 8)], SIP),
        ];
        for f in &frames {
            let full = parse_slice(f).unwrap();
            assert!(!full.short);
            let payload = full.payload as usize;
            assert_eq!(payload + full.payload_len as usize, f.len());
            for len in 0..f.len() {
                let r = parse_slice(&f[..len]);
                if len < payload {
                    // Cut inside a header.
                    assert_eq!(r, Err(ParseError::Truncated), "len {len} of {}", f.len());
                } else {
                    // Cut inside the payload: looked into, but marked short.
                    let want = Headers {
                        payload_len: (len - payload) as u16,
                        short: true,
                        ..full
                    };
                    assert_eq!(r, Ok(want), "len {len} of {}", f.len());
                }
            }
        }
    }

    #[test]
    fn later_ipv4_fragments() {
        // Any non-zero offset, with or without MF (and DF, which is irrelevant here).
        for frag in [0x0001u16, 0x00b9, 0x1fff, 0x20b9, 0x2001, 0x4001, 0x3fff] {
            let payload = [b'x'; 64];
            let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, frag, &[], 64), &payload]);
            assert_eq!(parse_slice(&f), Err(ParseError::LaterFragment), "{frag:#x}");
            // Tagged too.
            let f = cat(&[
                &eth(ETH_P_IP, &[(ETH_P_8021Q, 9)]),
                &ipv4(17, frag, &[], 64),
                &payload,
            ]);
            assert_eq!(parse_slice(&f), Err(ParseError::LaterFragment), "{frag:#x}");
        }
        // A later fragment of something else is just not UDP.
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(6, 0x00b9, &[], 8), &[0u8; 8]]);
        assert_eq!(parse_slice(&f), Err(ParseError::NotUdp));
        // Only the 20-byte header is needed to tell.
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0x00b9, &[], 100)]);
        assert_eq!(parse_slice(&f), Err(ParseError::LaterFragment));
    }

    #[test]
    fn first_ipv4_fragment() {
        // The UDP header claims the whole datagram (3000 bytes of payload); this fragment
        // carries 1000 of them.
        let mut u = udp(5060, 5080, &[b'a'; 1000]);
        u[4..6].copy_from_slice(&3008u16.to_be_bytes());
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0x2000, &[], u.len()), &u]);
        let h = parse_slice(&f).unwrap();
        assert_eq!(
            h,
            Headers {
                first_fragment: true,
                short: false,
                ..expect_v4(14, 34, 1000)
            }
        );
        // DF is not MF: an unfragmented datagram whose UDP length lies is short.
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0x4000, &[], u.len()), &u]);
        let h = parse_slice(&f).unwrap();
        assert_eq!(
            h,
            Headers {
                first_fragment: false,
                short: true,
                ..expect_v4(14, 34, 1000)
            }
        );
        // DF on a normal datagram changes nothing.
        let u = udp(5060, 5080, SIP);
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0x4000, &[], u.len()), &u]);
        assert_eq!(parse_slice(&f), Ok(expect_v4(14, 34, SIP.len() as u16)));
    }

    #[test]
    fn ipv6_fragment_header() {
        // Fragment header (first fragment, offset 0, M=1), then UDP.
        let fh = [17u8, 0, 0x00, 0x01, 0, 0, 0, 42];
        let u = udp(5060, 5080, SIP);
        let f = cat(&[
            &eth(ETH_P_IPV6, &[]),
            &ipv6(IPV6_NEXT_FRAGMENT, fh.len() + u.len()),
            &fh,
            &u,
        ]);
        assert_eq!(parse_slice(&f), Err(ParseError::Ipv6Fragment));
        // Also when tagged, and when nothing follows the fixed header.
        let f = cat(&[
            &eth(ETH_P_IPV6, &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2)]),
            &ipv6(IPV6_NEXT_FRAGMENT, 0),
        ]);
        assert_eq!(parse_slice(&f), Err(ParseError::Ipv6Fragment));
        // Cut inside the fixed header: truncated first.
        assert_eq!(parse_slice(&f[..22 + 39]), Err(ParseError::Truncated));
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A 4-byte payload padded to the 60-byte Ethernet minimum.
        let mut f = v4_frame(&[], &[], b"ping");
        assert_eq!(f.len(), 46);
        f.resize(60, 0);
        let h = parse_slice(&f).unwrap();
        assert_eq!(h, expect_v4(14, 34, 4));
        let mut f = v6_frame(&[], b"");
        f.resize(80, 0xee);
        assert_eq!(parse_slice(&f), Ok(expect_v6(14, 0)));
    }

    #[test]
    fn payload_length_is_capped_by_udp_ip_and_frame() {
        // UDP length 8: empty payload, trailing bytes ignored.
        let mut u = udp(5060, 5080, SIP);
        u[4..6].copy_from_slice(&8u16.to_be_bytes());
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0, &[], u.len()), &u]);
        assert_eq!(parse_slice(&f), Ok(expect_v4(14, 34, 0)));

        // UDP length 10: two payload bytes.
        u[4..6].copy_from_slice(&10u16.to_be_bytes());
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0, &[], u.len()), &u]);
        assert_eq!(parse_slice(&f), Ok(expect_v4(14, 34, 2)));

        // UDP length below the header size: not a UDP datagram one can trust.
        for bad in [0u16, 1, 7] {
            u[4..6].copy_from_slice(&bad.to_be_bytes());
            let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0, &[], u.len()), &u]);
            assert_eq!(parse_slice(&f), Err(ParseError::Truncated), "{bad}");
            let f = cat(&[&eth(ETH_P_IPV6, &[]), &ipv6(17, u.len()), &u]);
            assert_eq!(parse_slice(&f), Err(ParseError::Truncated), "{bad}");
        }

        // UDP length beyond the IP length: capped by IP, and short.
        let u = udp(5060, 5080, SIP);
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0, &[], u.len() - 5), &u]);
        assert_eq!(
            parse_slice(&f),
            Ok(Headers {
                short: true,
                ..expect_v4(14, 34, SIP.len() as u16 - 5)
            })
        );
        let f = cat(&[&eth(ETH_P_IPV6, &[]), &ipv6(17, u.len() - 5), &u]);
        assert_eq!(
            parse_slice(&f),
            Ok(Headers {
                short: true,
                ..expect_v6(14, SIP.len() as u16 - 5)
            })
        );

        // IP length shorter than its own headers: nothing usable, no panic.
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0, &[], 0), &u]);
        let mut f2 = f.clone();
        f2[16..18].copy_from_slice(&0u16.to_be_bytes());
        for f in [f, f2] {
            assert_eq!(
                parse_slice(&f),
                Ok(Headers {
                    short: true,
                    ..expect_v4(14, 34, 0)
                })
            );
        }

        // IP and UDP lengths beyond the frame: capped by the frame, and short.
        let mut u = udp(5060, 5080, SIP);
        u[4..6].copy_from_slice(&1400u16.to_be_bytes());
        let f = cat(&[&eth(ETH_P_IP, &[]), &ipv4(17, 0, &[], 1400), &u]);
        assert_eq!(
            parse_slice(&f),
            Ok(Headers {
                short: true,
                ..expect_v4(14, 34, SIP.len() as u16)
            })
        );
    }

    #[test]
    fn parse_resets_the_headers() {
        let mut h = Headers::default();
        let f = v6_frame(&[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2)], SIP);
        parse(&f.as_slice(), &mut h).unwrap();
        assert_eq!(h.vlan_inner, 2);
        let f = v4_frame(&[], &[], SIP);
        parse(&f.as_slice(), &mut h).unwrap();
        assert_eq!(h, expect_v4(14, 34, SIP.len() as u16));
        // An error leaves nothing of the previous frame behind either.
        let f = cat(&[&eth(0x0806, &[]), &[0u8; 28]]);
        assert_eq!(parse(&f.as_slice(), &mut h), Err(ParseError::NotUdp));
        assert_eq!(
            h,
            Headers {
                l3: 14,
                ..Headers::default()
            }
        );
    }

    #[test]
    fn random_frames_do_not_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let templates = [
            v4_frame(&[], &[1; 8], SIP),
            v6_frame(&[(ETH_P_8021AD, 3), (ETH_P_8021Q, 4)], SIP),
        ];
        let mut oks = 0;
        for i in 0..5000 {
            let mut f = if i % 2 == 0 {
                let len = (next() % 120) as usize;
                let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if len >= 14 && i % 4 == 0 {
                    let et =
                        [ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD][(next() % 4) as usize];
                    f[12..14].copy_from_slice(&et.to_be_bytes());
                }
                f
            } else {
                templates[(i / 2) % 2].clone()
            };
            // Flip a few bytes of the headers and cut at a random length.
            for _ in 0..(next() % 4) {
                if !f.is_empty() {
                    let at = (next() % f.len().min(70) as u64) as usize;
                    f[at] = next() as u8;
                }
            }
            let cut = (next() % (f.len() as u64 + 1)) as usize;
            let f = &f[..cut];
            if let Ok(h) = parse_slice(f) {
                oks += 1;
                assert!(h.l3 < h.l4 && h.l4 < h.payload, "{h:?}");
                assert!(
                    h.payload as usize + h.payload_len as usize <= f.len(),
                    "{h:?}"
                );
                assert!(h.payload as usize <= f.len(), "{h:?}");
                // The head read never fails on what the parser accepted.
                let head = payload_head(&f, h.payload as usize, h.payload_len);
                let n = head_len(h.payload_len);
                assert_eq!(head[..n], f[h.payload as usize..][..n], "{h:?}");
                assert!(head[n..].iter().all(|b| *b == 0), "{h:?}");
            }
        }
        assert!(oks > 100, "{oks}");
    }

    /// The non-SIP shortcut of the XDP program (`udp_ports`, before the scratch slot)
    /// decides exactly the frames `parse` accepts untagged, with the same ports: mutated
    /// untagged IPv4 (with and without options, fragments) and IPv6 frames, cut anywhere.
    #[test]
    fn udp_ports_agrees_with_parse() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let templates = [
            v4_frame(&[], &[], SIP),
            v4_frame(&[], &[1; 8], SIP),
            v6_frame(&[], SIP),
            v4_frame(&[(ETH_P_8021Q, 7)], &[], SIP),
        ];
        let (mut some, mut none) = (0, 0);
        for i in 0..20_000 {
            let mut f = templates[i % templates.len()].clone();
            // Flip a few bytes of the headers (ethertype, IP, UDP), cut at a random length.
            for _ in 0..(next() % 3) {
                let at = 12 + (next() % 50) as usize;
                f[at] = match next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => f[at] ^ (1 << (next() % 8)),
                    _ => next() as u8,
                };
            }
            let cut = if next() % 2 == 0 {
                f.len()
            } else {
                (next() % (f.len() as u64 + 1)) as usize
            };
            let f = &f[..cut];
            let mut h = Headers::default();
            let r = parse(&f, &mut h).map(|()| h);
            let got = udp_ports(&f);
            assert_eq!(got, ports_by_parse(&r), "{f:02x?}");
            if got.is_some() { some += 1 } else { none += 1 }
        }
        assert!(some > 1000 && none > 1000, "{some} {none}");
    }
}
