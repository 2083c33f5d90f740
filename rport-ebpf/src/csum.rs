//! Internet checksum (RFC 1071) and its incremental update (RFC 1624), and the one
//! rewrite that uses them in XDP: [`steer`].
//!
//! A steered response only changes its destination address and port, so the IPv4 header
//! checksum and the UDP checksum are patched rather than recomputed over the payload.

use crate::pkt::PacketMut;

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Updates checksum `hc` (as stored, big-endian value) when a 16-bit word changes from `old`
/// to `new`: HC' = ~(~HC + ~m + m') (RFC 1624 eqn. 3).
#[inline(always)]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !fold((!hc as u32) + (!old as u32 & 0xffff) + new as u32)
}

/// Updates checksum `hc` for a change of a field made of big-endian 16-bit words.
#[inline(always)]
pub fn update_words<const N: usize>(mut hc: u16, old: &[u8; N], new: &[u8; N]) -> u16 {
    let mut i = 0;
    while i + 1 < N {
        let o = u16::from_be_bytes([old[i], old[i + 1]]);
        let n = u16::from_be_bytes([new[i], new[i + 1]]);
        hc = update16(hc, o, n);
        i += 2;
    }
    hc
}

/// Rewrites a response's destination address and port to `addr` (16-byte encoding,
/// IPv4-mapped for IPv4) and `port`, patching the IPv4 header and UDP checksums; the
/// kernel then routes it to the client's NAT mapping (RFC 3581 §4). `l3`, `l4`: offsets
/// of the IP and UDP headers ([`crate::parse::Headers`]).
///
/// Both headers are bounds-checked before the first write: a frame too short for either
/// is left as it was, and `None` says so.
#[inline(always)]
pub fn steer<P: PacketMut>(
    p: &mut P,
    l3: usize,
    l4: usize,
    ipv6: bool,
    addr: &[u8; 16],
    port: u16,
) -> Option<()> {
    let udp = p.read::<[u8; 8]>(l4)?;
    let old_port = [udp[2], udp[3]];
    let new_port = port.to_be_bytes();
    let mut uc = u16::from_be_bytes([udp[6], udp[7]]);
    if ipv6 {
        let ip = p.bytes_mut::<40>(l3)?;
        let mut old = [0u8; 16];
        old.copy_from_slice(&ip[24..40]);
        uc = update_words(uc, &old, addr);
        uc = update_words(uc, &old_port, &new_port);
        // 0 is not a valid UDP checksum over IPv6 (RFC 8200 §8.1); its one's-complement
        // twin, all ones, means the same sum.
        if uc == 0 {
            uc = 0xffff;
        }
        ip[24..40].copy_from_slice(addr);
    } else {
        let ip = p.bytes_mut::<20>(l3)?;
        let old = [ip[16], ip[17], ip[18], ip[19]];
        let new = [addr[12], addr[13], addr[14], addr[15]];
        let ipc = update_words(u16::from_be_bytes([ip[10], ip[11]]), &old, &new);
        if uc != 0 {
            // 0 means "no checksum" for UDP over IPv4: leave it so.
            uc = update_words(uc, &old, &new);
            uc = update_words(uc, &old_port, &new_port);
            // A checksum that comes out 0 is sent as all ones (RFC 768): written as 0 it
            // would say "no checksum" and the receiver would not check it at all.
            if uc == 0 {
                uc = 0xffff;
            }
        }
        ip[10..12].copy_from_slice(&ipc.to_be_bytes());
        ip[16..20].copy_from_slice(&new);
    }
    let udp = p.bytes_mut::<8>(l4)?;
    udp[2..4].copy_from_slice(&new_port);
    udp[6..8].copy_from_slice(&uc.to_be_bytes());
    Some(())
}

/// Full RFC 1071 checksum over `data`, starting from the partial sum `sum` (host use and tests).
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to 0xddf2 before complementing.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d, 0), !0xddf2);
    }

    #[test]
    fn steer_leaves_a_frame_too_short_for_its_headers_alone() {
        use crate::model::frames::*;
        let f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, b"SIP/2.0 200 OK\r\n");
        let new = v4m(NAT_V4);
        // Cut inside the UDP header; cut inside the IPv4 header, the UDP header (as the
        // caller claims it) in the frame: nothing is written either way.
        for (cut, l3, l4) in [(40, 14, 34), (30, 14, 22)] {
            let mut short = f[..cut].to_vec();
            let orig = short.clone();
            let mut p: &mut [u8] = &mut short;
            assert_eq!(steer(&mut p, l3, l4, false, &new, 1), None, "cut {cut}");
            assert_eq!(short, orig, "cut {cut}");
        }
        let mut whole = f.clone();
        let mut p: &mut [u8] = &mut whole;
        assert_eq!(steer(&mut p, 14, 34, false, &new, NAT_PORT), Some(()));
        assert!(checksums_valid(&whole));
        assert_eq!(whole[30..34], NAT_V4);
    }

    /// The UDP checksum of `f` recomputed from scratch (its field taken as 0): 0 means the
    /// sum came out all ones, which must go on the wire as 0xffff.
    fn recomputed_udp(f: &[u8], ipv6: bool) -> u16 {
        let (l4, src, dst) = if ipv6 {
            (54, 22..38, 38..54)
        } else {
            (34, 26..30, 30..34)
        };
        let len = u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]) as usize;
        let mut u = f[l4..l4 + len].to_vec();
        u[6..8].copy_from_slice(&[0, 0]);
        let mut s = 17 + len as u32;
        for w in f[src].chunks(2).chain(f[dst].chunks(2)) {
            s += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        checksum(&u, s)
    }

    /// Steers `f` to `addr` with every port until the checksum computed from scratch is 0
    /// (the one port that makes it so: the sum then is all ones), and returns that frame.
    fn steered_to_a_zero_checksum(
        f: &[u8],
        l3: usize,
        l4: usize,
        ipv6: bool,
        addr: &[u8; 16],
    ) -> Vec<u8> {
        (1..=u16::MAX)
            .find_map(|port| {
                let mut g = f.to_vec();
                let mut p: &mut [u8] = &mut g;
                steer(&mut p, l3, l4, ipv6, addr, port)?;
                (recomputed_udp(&g, ipv6) == 0).then_some(g)
            })
            .expect("some port makes the sum all ones")
    }

    #[test]
    fn ipv4_checksum_that_comes_out_zero_is_sent_as_all_ones() {
        use crate::model::frames::*;
        let f = udp4(SERVER_V4, 5060, PHONE_V4, 5060, b"SIP/2.0 200 OK\r\n");
        assert_ne!(f[40..42], [0, 0], "the response has a checksum");
        let g = steered_to_a_zero_checksum(&f, 14, 34, false, &v4m(NAT_V4));
        // Written as 0 it would read "no checksum" (RFC 768).
        assert_eq!(g[40..42], [0xff, 0xff]);
        assert!(checksums_valid(&g));
    }

    #[test]
    fn ipv6_checksum_that_comes_out_zero_is_sent_as_all_ones() {
        use crate::model::frames::*;
        let f = udp6(SERVER_V6, 5060, CLIENT_V6, 5060, b"SIP/2.0 200 OK\r\n");
        let g = steered_to_a_zero_checksum(&f, 14, 54, true, &NAT_V6);
        assert_eq!(g[60..62], [0xff, 0xff]);
        assert!(checksum6_valid(&g));
    }

    #[test]
    fn incremental_equals_recomputed() {
        let mut hdr = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 198, 51, 100, 10, 192, 168, 1,
            50,
        ];
        let c = checksum(&hdr, 0);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            checksum(&hdr, 0),
            0,
            "a header with its checksum sums to zero"
        );
        let old: [u8; 4] = hdr[16..20].try_into().unwrap();
        let new = [203, 0, 113, 1];
        let patched = update_words(c, &old, &new);
        hdr[16..20].copy_from_slice(&new);
        hdr[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(patched, checksum(&hdr, 0));
    }
}
