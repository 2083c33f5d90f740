//! Sending a rewritten request on toward the server, as a router would.
//!
//! Why a raw IP socket and not AF_XDP TX: the request must leave by whatever interface
//! and next hop the kernel's routing picks for the server, with a resolved neighbour, and
//! AF_XDP TX would make rport redo both (a FIB lookup helper, neighbour tracking, an XDP
//! program on the egress peer for veth). A raw socket (`IPPROTO_RAW`, header included) hands
//! our IP packet, with the client's public source address kept, to the kernel's output
//! path: routes, neighbours, qdiscs and any egress interface just work. The cost is one
//! copy into the kernel per packet, batched with one `sendmmsg` per family per batch.
//!
//! The headers are fixed here: lengths, TTL/hop limit decremented (we forward), IPv4 header
//! checksum, UDP checksum over the pseudo-header. An IPv4 datagram that the rewrite made
//! larger than the egress MTU is fragmented here (DF cleared: rport made it bigger, so
//! losing it, or bouncing an ICMP to a client that sent a packet that fitted, would be
//! worse). For IPv6 only the source may fragment (RFC 8200 §4.5), and the client is the
//! source: the caller bounds the rewrite so the packet still fits, and forwards the request
//! unchanged (and counts it) when it would not.
use std::{
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Result, bail};
use rport_ebpf::{csum, parse};

use super::mmsg::{MsgBatch, Refused};

/// Where the parts of a UDP frame are (the XDP program's own parser, on the host).
pub type Located = parse::Headers;

/// Why a frame cannot be sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectError {
    /// Not an IPv4/IPv6 UDP frame, or cut short.
    NotUdp,
    /// TTL or hop limit would reach 0.
    TtlExceeded,
    /// Larger than 65535 bytes of IP.
    TooBig,
}

/// Parses a frame down to its UDP payload.
pub fn locate(frame: &[u8]) -> Result<Located, InjectError> {
    let h = parse::headers(frame).map_err(|_| InjectError::NotUdp)?;
    if h.short || h.first_fragment {
        return Err(InjectError::NotUdp);
    }
    Ok(h)
}

/// Source address of a frame, if it is UDP.
pub fn source(h: &Located) -> IpAddr {
    rport_common::addr_from_16(&h.src)
}

/// Destination address of a frame.
pub fn destination(h: &Located) -> IpAddr {
    rport_common::addr_from_16(&h.dst)
}

fn sum16(data: &[u8]) -> u32 {
    // The complement of the checksum with a zero initial sum, folded back to a raw sum.
    (!csum::checksum(data, 0)) as u32
}

/// Fixes the headers after the payload (at `h.payload`) became `new_payload_len` bytes:
/// returns the length of the IP packet, which starts at `h.l3`.
pub fn finish(frame: &mut [u8], h: &Located, new_payload_len: usize) -> Result<usize, InjectError> {
    let (l3, l4) = (h.l3 as usize, h.l4 as usize);
    let udp_len = 8 + new_payload_len;
    if l4 + udp_len > frame.len() {
        return Err(InjectError::NotUdp);
    }
    let total = l4 - l3 + udp_len;
    if total > 65535 {
        return Err(InjectError::TooBig);
    }
    frame[l4 + 4..l4 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    frame[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    let mut pseudo: u32 = 17 + udp_len as u32;
    if h.ipv6 {
        let hop = frame[l3 + 7];
        if hop <= 1 {
            return Err(InjectError::TtlExceeded);
        }
        frame[l3 + 7] = hop - 1;
        frame[l3 + 4..l3 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        pseudo += sum16(&frame[l3 + 8..l3 + 40]);
    } else {
        let ttl = frame[l3 + 8];
        if ttl <= 1 {
            return Err(InjectError::TtlExceeded);
        }
        frame[l3 + 8] = ttl - 1;
        frame[l3 + 2..l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
        frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = csum::checksum(&frame[l3..l4], 0);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        pseudo += sum16(&frame[l3 + 12..l3 + 20]);
    }
    let mut c = csum::checksum(&frame[l4..l4 + udp_len], pseudo);
    if c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones.
    }
    frame[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Splits the IPv4 packet `pkt` into fragments of at most `mtu` bytes, written one after
/// the other into `out`; `spans` receives (offset, length) of each. Returns their number.
pub fn fragment_v4(
    pkt: &[u8],
    mtu: usize,
    out: &mut [u8],
    spans: &mut [(usize, usize)],
) -> Result<usize> {
    let hl = ((pkt.first().copied().unwrap_or(0) & 0x0f) as usize) * 4;
    let per = mtu.saturating_sub(hl) & !7;
    if per == 0 || hl < 20 || pkt.len() <= hl {
        bail!("cannot fragment to an MTU of {mtu}");
    }
    let data = &pkt[hl..];
    let (mut n, mut off, mut at) = (0, 0, 0);
    while off < data.len() {
        let chunk = (data.len() - off).min(per);
        let more = off + chunk < data.len();
        let len = hl + chunk;
        if n == spans.len() || at + len > out.len() {
            bail!("more fragments than room for them");
        }
        let f = &mut out[at..at + len];
        f[..hl].copy_from_slice(&pkt[..hl]);
        f[hl..].copy_from_slice(&data[off..off + chunk]);
        f[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        // Offset in 8-byte units, MF on all but the last, DF cleared (see the module doc).
        let field = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&field.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let c = csum::checksum(&f[..hl], 0);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        spans[n] = (at, len);
        n += 1;
        off += chunk;
        at += len;
    }
    Ok(n)
}

/// Largest batch one `sendmmsg` sends.
pub const BATCH: usize = 64;
/// Room for the fragments of a batch; past 70 KiB short of it the sender says it is full,
/// so one more datagram of any size (64 KiB at most) always fits.
const SCRATCH: usize = 192 * 1024;
/// Entries per family: a full batch plus the fragments of one more datagram.
const CAP: usize = BATCH + MAX_FRAGS;
/// Fragments of one datagram at most (a 64 KiB datagram over a 1280-byte MTU needs 52).
const MAX_FRAGS: usize = 56;

/// One family's raw socket and pending datagrams.
struct Family {
    fd: OwnedFd,
    msgs: MsgBatch,
}

impl Family {
    fn new(family: libc::c_int) -> std::io::Result<Family> {
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Family {
            // SAFETY: fd is a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            msgs: MsgBatch::new(CAP),
        })
    }

    /// Sends the batch: (sent, failed). A packet the kernel refuses (no route, EMSGSIZE…)
    /// is counted and the rest go on.
    fn flush(&mut self) -> (u64, u64) {
        // Never `Stop`, so never an error.
        let s = self
            .msgs
            .send(self.fd.as_fd(), |_| Refused::Skip)
            .unwrap_or_default();
        (s.sent, s.skipped)
    }
}

/// Batching raw-socket sender for both families. Packets are queued and sent through a
/// [`Batch`], which borrows them until it is flushed.
pub struct RawSender {
    v4: Family,
    v6: Family,
    mtu: usize,
    scratch: Box<[u8]>,
    scratch_used: usize,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u64,
    pub failed: u64,
}

impl RawSender {
    /// Opens the raw sockets. `mtu` is the egress MTU toward the servers.
    pub fn new(mtu: usize) -> Result<RawSender> {
        let v4 = Family::new(libc::AF_INET)
            .map_err(|e| anyhow::anyhow!("raw IPv4 socket: {e} (needs CAP_NET_RAW)"))?;
        let v6 =
            Family::new(libc::AF_INET6).map_err(|e| anyhow::anyhow!("raw IPv6 socket: {e}"))?;
        Ok(RawSender {
            v4,
            v6,
            mtu,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            scratch_used: 0,
        })
    }

    /// Egress MTU this sender fragments to.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// A batch of sends whose packets live for `'frames`.
    pub fn batch<'frames>(&mut self) -> Batch<'_, 'frames> {
        // Whatever an earlier batch left unsent (it was leaked, or dropped unflushed) points
        // to packets that may be gone: never send it.
        self.v4.msgs.clear();
        self.v6.msgs.clear();
        self.scratch_used = 0;
        Batch {
            sender: self,
            _frames: PhantomData,
        }
    }
}

/// Packets queued on a [`RawSender`], borrowed (`'frames`) until the batch is flushed:
/// the sender keeps only their addresses, and the kernel reads them in
/// [`Batch::flush`]. What a batch holds when it goes out of scope unflushed is not sent.
///
/// The borrow is what makes this safe: a packet cannot be freed or changed while a batch
/// that may still send it is alive.
///
/// ```no_run
/// # use rport_userspace::datapath::inject::RawSender;
/// let mut sender = RawSender::new(1500).unwrap();
/// let pkt = vec![0x45; 28];
/// let mut batch = sender.batch();
/// batch.push(&pkt, "198.51.100.10".parse().unwrap());
/// batch.flush();
/// ```
///
/// ```compile_fail,E0597
/// # use rport_userspace::datapath::inject::RawSender;
/// let mut sender = RawSender::new(1500).unwrap();
/// let mut batch = sender.batch();
/// {
///     let pkt = vec![0x45; 28];
///     batch.push(&pkt, "198.51.100.10".parse().unwrap());
/// } // `pkt` freed while queued
/// batch.flush();
/// ```
pub struct Batch<'s, 'frames> {
    sender: &'s mut RawSender,
    _frames: PhantomData<&'frames [u8]>,
}

impl<'frames> Batch<'_, 'frames> {
    /// Egress MTU the sender fragments to.
    pub fn mtu(&self) -> usize {
        self.sender.mtu
    }

    /// Whether a batch is full: flush before the next push (which would be dropped).
    pub fn full(&self) -> bool {
        let s = &self.sender;
        s.v4.msgs.len() >= BATCH || s.v6.msgs.len() >= BATCH || s.scratch_used > SCRATCH - 70 * 1024
    }

    /// Queues the IP packet `pkt` (IPv4 or IPv6, header included) for `dst`. Returns the
    /// number of fragments when it had to fragment (IPv4 only), else 0.
    pub fn push(&mut self, pkt: &'frames [u8], dst: IpAddr) -> usize {
        if self.full() {
            return 0;
        }
        let s = &mut *self.sender;
        // Raw sockets take no port.
        let to = SocketAddr::new(dst, 0);
        match dst {
            IpAddr::V6(_) => {
                // SAFETY: `pkt` is borrowed for 'frames, which outlives this batch, and
                // only a batch sends (or clears) the sender's queues.
                unsafe { s.v6.msgs.push(pkt, to) };
                0
            }
            IpAddr::V4(_) if pkt.len() <= s.mtu => {
                // SAFETY: as above.
                unsafe { s.v4.msgs.push(pkt, to) };
                0
            }
            IpAddr::V4(_) => {
                let base = s.scratch_used;
                let mut spans = [(0usize, 0usize); MAX_FRAGS];
                let Ok(k) = fragment_v4(pkt, s.mtu, &mut s.scratch[base..], &mut spans) else {
                    return 0;
                };
                for &(at, len) in &spans[..k] {
                    // SAFETY: inside the sender's boxed scratch buffer, which is borrowed
                    // with the sender for this batch and written only past `scratch_used`
                    // until a flush has sent these.
                    unsafe {
                        let f = std::slice::from_raw_parts(s.scratch.as_ptr().add(base + at), len);
                        s.v4.msgs.push(f, to);
                    }
                }
                s.scratch_used += spans[..k].last().map_or(0, |(a, l)| a + l);
                k
            }
        }
    }

    /// Sends everything queued, one `sendmmsg` per family (more if the kernel refuses some).
    pub fn flush(&mut self) -> Flushed {
        let s = &mut *self.sender;
        let (a, b) = s.v4.flush();
        let (c, d) = s.v6.flush();
        s.scratch_used = 0;
        Flushed {
            sent: a + c,
            failed: b + d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn frame4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([203, 0, 113, 1], [198, 51, 100, 10], 64)
            .udp(32415, 5060);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn check(frame: &[u8], payload: &[u8]) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!()
        };
        assert_eq!(u.payload(), payload);
        match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap()
                );
                assert_eq!(h.time_to_live, 63);
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap()
                );
                assert_eq!(h.hop_limit, 63);
            }
            _ => panic!(),
        }
    }

    #[test]
    fn grown_payload_gets_right_lengths_ttl_and_checksums() {
        let mut f = frame4(b"REGISTER x SIP/2.0\r\n\r\n");
        let h = locate(&f).unwrap();
        let grown = b"REGISTER x SIP/2.0\r\nX: grown\r\n\r\n";
        f.resize(h.payload as usize + grown.len(), 0);
        f[h.payload as usize..].copy_from_slice(grown);
        let n = finish(&mut f, &h, grown.len()).unwrap();
        assert_eq!(n, 20 + 8 + grown.len());
        check(&f, grown);
    }

    #[test]
    fn ipv6_and_vlan() {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .single_vlan(7.try_into().unwrap())
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50],
                [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                64,
            )
            .udp(5060, 5060);
        let mut f = Vec::new();
        b.write(&mut f, b"OPTIONS x SIP/2.0\r\n\r\n").unwrap();
        let h = locate(&f).unwrap();
        assert!(h.ipv6);
        finish(&mut f, &h, 21).unwrap();
        check(&f, b"OPTIONS x SIP/2.0\r\n\r\n");
    }

    #[test]
    fn a_udp_checksum_that_comes_out_zero_is_sent_as_all_ones() {
        // The last two payload bytes are solved for: the value that makes the UDP sum all
        // ones, whose checksum is 0 (RFC 768: sent as 0xffff; 0 would say "none").
        let base = b"OPTIONS x SIP/2.0\r\n\r\nzz";
        let found = (0..=u16::MAX).find_map(|w| {
            let mut p = base.to_vec();
            let n = p.len();
            p[n - 2..].copy_from_slice(&w.to_be_bytes());
            let mut f = frame4(&p);
            let h = locate(&f).unwrap();
            finish(&mut f, &h, p.len()).unwrap();
            let l4 = h.l4 as usize;
            let stored = [f[l4 + 6], f[l4 + 7]];
            f[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
            let mut pseudo = 17 + (8 + p.len()) as u32;
            pseudo += sum16(&f[14 + 12..14 + 20]);
            (csum::checksum(&f[l4..l4 + 8 + p.len()], pseudo) == 0).then_some(stored)
        });
        assert_eq!(found, Some([0xff, 0xff]));
    }

    #[test]
    fn ttl_one_is_not_forwarded() {
        let mut f = frame4(b"x");
        f[14 + 8] = 1;
        let h = locate(&f).unwrap();
        assert_eq!(finish(&mut f, &h, 1), Err(InjectError::TtlExceeded));
    }

    #[test]
    fn truncation_never_panics() {
        let f = frame4(b"REGISTER x SIP/2.0\r\n\r\n");
        for n in 0..f.len() {
            let mut g = f[..n].to_vec();
            if let Ok(h) = locate(&g) {
                let _ = finish(&mut g, &h, h.payload_len as usize);
            }
        }
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut f = frame4(&payload);
        let h = locate(&f).unwrap();
        let n = finish(&mut f, &h, payload.len()).unwrap();
        let pkt = f[14..14 + n].to_vec();
        let mut scratch = [0u8; 8000];
        let mut spans = [(0, 0); 8];
        let k = fragment_v4(&pkt, 1500, &mut scratch, &mut spans).unwrap();
        assert_eq!(k, 3);
        let frags: Vec<&[u8]> = spans[..k]
            .iter()
            .map(|&(a, l)| &scratch[a..a + l])
            .collect();
        let mut data = vec![0u8; n - 20];
        for (i, fr) in frags.iter().enumerate() {
            assert!(fr.len() <= 1500);
            assert_eq!(
                csum::checksum(&fr[..20], 0),
                0,
                "fragment {i} header checksum"
            );
            let field = u16::from_be_bytes([fr[6], fr[7]]);
            assert_eq!(field & 0x2000 != 0, i < 2, "MF on all but the last");
            assert_eq!(field & 0x4000, 0, "DF cleared");
            assert_eq!(&fr[4..6], &pkt[4..6], "same id");
            let off = ((field & 0x1fff) as usize) * 8;
            data[off..off + fr.len() - 20].copy_from_slice(&fr[20..]);
        }
        assert_eq!(&data[..], &pkt[20..]);
    }
}
