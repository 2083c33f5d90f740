//! Sending a rewritten message on: back into the kernel's receive path of the interface it
//! arrived on, so that the gateway forwards it as it forwards any packet.
//!
//! Why: rport must never forward what the gateway itself would drop. The XDP program takes
//! the request off the wire before the kernel's input path sees it; had the daemon sent it
//! on from a raw IP socket (as it once did), it would leave through the OUTPUT path, where
//! the forward chain, conntrack's forward rules and reverse-path filtering (rp_filter) never
//! look at it: an attacker outside, or an inside address forged from outside, reached the
//! server through rport that the gateway's own rules stopped without it
//! (tests/tests/firewall.rs). Now the daemon writes the rewritten Ethernet frame, with its
//! original MACs (the destination is this interface's own), on an AF_PACKET socket bound to
//! the interface it came in on; the TC egress program `rport_reinject` (rport-ebpf) knows
//! the socket by its cookie (`INJECT_SOCKETS`) and redirects the frame to that interface's
//! ingress. The kernel receives it as if it had just arrived: PREROUTING, routing with
//! rp_filter on the real input interface, the FORWARD chain with the real `iifname` and
//! source address, conntrack and NAT, TTL, neighbours, POSTROUTING and whatever egress
//! interface the routes pick. No PACKET_QDISC_BYPASS: that would skip TC egress.
//!
//! The cost against a raw socket: one copy into the kernel per frame as before (batched,
//! one `sendmmsg` per batch), then a pass through the receive path (backlog, PREROUTING)
//! that the raw socket's output path did not take.
//!
//! The headers are fixed here: lengths, IPv4 header checksum, UDP checksum over the
//! pseudo-header; not the TTL (the kernel's forwarding decrements it, and sends the ICMP
//! when it runs out). The redirect to ingress drops a frame larger than the interface's
//! MTU, so an IPv4 datagram that the rewrite made larger than that, or than the smallest
//! inside MTU, is fragmented here to the smaller of the two, each fragment with the frame's
//! own link header (DF cleared: rport made it bigger, so losing it, or bouncing an ICMP to
//! a client that sent a packet that fitted, would be worse); the kernel then forwards the
//! fragments. For
//! IPv6 only the source may fragment (RFC 8200 §4.5), and the client is the source: the
//! caller bounds the rewrite so the packet still fits, and forwards the request unchanged
//! (and counts it) when it would not.
//!
//! A frame that cannot be queued ([`Unsent`]) or that the kernel refuses is counted by the
//! caller (`unsent`, `send_errors`), never lost silently.
use std::{
    marker::PhantomData,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Result, bail};
use rport_ebpf::{csum, parse};

use super::{
    egress::{EgressTx, Fallback},
    mmsg::{MsgBatch, Refused},
};

/// Where the parts of a UDP frame are (the XDP program's own parser, on the host).
pub type Located = parse::Headers;

/// Why a frame cannot be sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectError {
    /// Not an IPv4/IPv6 UDP frame, or cut short.
    NotUdp,
    /// Larger than 65535 bytes of IP.
    TooBig,
}

/// Why a frame was not queued: the caller counts it (`unsent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The batch is full (flush before pushing again).
    Full,
    /// It needs more fragments at this MTU than a batch has room for, or the MTU leaves no
    /// room for data past the IP header.
    Fragments,
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
/// returns the length of the IP packet, which starts at `h.l3`. The TTL is left as it
/// came: the kernel forwards the frame and decrements it.
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
        frame[l3 + 4..l3 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        pseudo += sum16(&frame[l3 + 8..l3 + 40]);
    } else {
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

/// Splits the IPv4 packet `pkt` into fragments of at most `mtu` bytes of IP, each behind
/// a copy of the link header `l2`, written one after the other into `out`; `spans`
/// receives (offset, length) of each frame. Returns their number.
pub fn fragment_v4(
    l2: &[u8],
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
        if n == spans.len() || at + l2.len() + len > out.len() {
            bail!("more fragments than room for them");
        }
        out[at..at + l2.len()].copy_from_slice(l2);
        let f = &mut out[at + l2.len()..at + l2.len() + len];
        f[..hl].copy_from_slice(&pkt[..hl]);
        f[hl..].copy_from_slice(&data[off..off + chunk]);
        f[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        // Offset in 8-byte units, MF on all but the last, DF cleared (see the module doc).
        let field = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&field.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let c = csum::checksum(&f[..hl], 0);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        spans[n] = (at, l2.len() + len);
        n += 1;
        off += chunk;
        at += l2.len() + len;
    }
    Ok(n)
}

/// Largest batch one `sendmmsg` sends.
pub const BATCH: usize = 64;
/// Room for the fragments of a batch; past 70 KiB short of it the sender says it is full,
/// so one more datagram of any size (64 KiB at most) always fits.
const SCRATCH: usize = 192 * 1024;
/// Entries: a full batch plus the fragments of one more datagram.
const CAP: usize = BATCH + MAX_FRAGS;
/// Fragments of one datagram at most (a 64 KiB datagram over a 1280-byte MTU needs 52).
pub const MAX_FRAGS: usize = 56;

/// The AF_PACKET socket of one forwarding thread, bound to the interface its frames
/// arrived on, and the frames pending for it.
pub struct FrameSender {
    fd: OwnedFd,
    msgs: MsgBatch,
    mtu: usize,
    scratch: Box<[u8]>,
    scratch_used: usize,
    /// AF_XDP TX on the inside interfaces (`--egress bypass`), else None.
    egress: Option<EgressTx>,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Frames the kernel took (AF_PACKET).
    pub sent: u64,
    pub failed: u64,
    /// Frames sent by AF_XDP TX.
    pub bypass_sent: u64,
    /// Frames staged for AF_XDP TX that found no TX frame or ring slot: sent the kernel's
    /// way instead (or counted in `unsent`).
    pub bypass_full: u64,
    /// Of those, frames that could not be queued on the kernel's way either.
    pub unsent: u64,
}

impl FrameSender {
    /// Opens an AF_PACKET socket bound to `ifindex`, whose MTU is `mtu`. Protocol 0: it
    /// receives nothing, it only sends.
    pub fn new(ifindex: u32, mtu: usize) -> Result<FrameSender> {
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            bail!(
                "AF_PACKET socket: {} (needs CAP_NET_RAW)",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of its own size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            bail!(
                "binding an AF_PACKET socket to interface {ifindex}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(FrameSender::with_fd(fd, mtu))
    }

    fn with_fd(fd: OwnedFd, mtu: usize) -> FrameSender {
        FrameSender {
            fd,
            msgs: MsgBatch::new(CAP),
            mtu,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            scratch_used: 0,
            egress: None,
        }
    }

    /// Sends what [`Batch::bypass`] admits by AF_XDP TX on these sockets.
    pub fn with_egress(mut self, egress: EgressTx) -> FrameSender {
        self.egress = Some(egress);
        self
    }

    /// The socket's cookie (`SO_COOKIE`), by which the TC program knows its frames.
    pub fn cookie(&self) -> Result<u64> {
        let mut v: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: an 8-byte buffer and its length.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                &mut v as *mut u64 as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            bail!("SO_COOKIE: {}", std::io::Error::last_os_error());
        }
        Ok(v)
    }

    /// MTU of the interface this sender sends on (it fragments IPv4 to it).
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether it sends by AF_XDP TX where it can (`--egress bypass`).
    pub fn bypassing(&self) -> bool {
        self.egress.is_some()
    }

    /// A batch of sends whose frames live for `'frames`.
    pub fn batch<'frames>(&mut self) -> Batch<'_, 'frames> {
        // Whatever an earlier batch left unsent (it was leaked, or dropped unflushed) points
        // to frames that may be gone: never send it.
        self.msgs.clear();
        self.scratch_used = 0;
        if let Some(e) = &mut self.egress {
            e.clear();
        }
        Batch {
            sender: self,
            _frames: PhantomData,
        }
    }
}

/// Frames queued on a [`FrameSender`], borrowed (`'frames`) until the batch is flushed:
/// the sender keeps only their addresses, and the kernel reads them in
/// [`Batch::flush`]. What a batch holds when it goes out of scope unflushed is not sent.
///
/// The borrow is what makes this safe: a frame cannot be freed or changed while a batch
/// that may still send it is alive.
///
/// ```no_run
/// # use rport_userspace::datapath::inject::FrameSender;
/// let mut sender = FrameSender::new(2, 1500).unwrap();
/// let frame = vec![0x45; 42];
/// let mut batch = sender.batch();
/// let _ = batch.push(&frame, 14, false);
/// batch.flush();
/// ```
///
/// ```compile_fail,E0597
/// # use rport_userspace::datapath::inject::FrameSender;
/// let mut sender = FrameSender::new(2, 1500).unwrap();
/// let mut batch = sender.batch();
/// {
///     let frame = vec![0x45; 42];
///     let _ = batch.push(&frame, 14, false);
/// } // `frame` freed while queued
/// batch.flush();
/// ```
pub struct Batch<'s, 'frames> {
    sender: &'s mut FrameSender,
    _frames: PhantomData<&'frames [u8]>,
}

impl<'frames> Batch<'_, 'frames> {
    /// MTU the sender fragments to.
    pub fn mtu(&self) -> usize {
        self.sender.mtu
    }

    /// Whether a batch is full: flush before the next push (which would be refused).
    /// Frames staged for AF_XDP TX count: whatever of them cannot go that way is queued
    /// the kernel's way at the flush, and must find room.
    pub fn full(&self) -> bool {
        let s = &self.sender;
        let staged = s.egress.as_ref().map_or(0, |e| e.len());
        s.msgs.len() + staged >= BATCH || s.scratch_used > SCRATCH - 70 * 1024
    }

    /// Whether this sender sends by AF_XDP TX (`--egress bypass`).
    pub fn bypassing(&self) -> bool {
        self.sender.egress.is_some()
    }

    /// Stages the whole Ethernet `frame` (IP at `l3`, `ip_len` bytes of IP, TTL not yet
    /// decremented) for AF_XDP TX if `meta` allows it ([`EgressTx::admit`]); else says why
    /// not, and the caller pushes it the kernel's way. Never when the batch is full.
    pub fn bypass(
        &mut self,
        meta: Option<&rport_common::EgressMeta>,
        frame: &'frames [u8],
        l3: usize,
        ip_len: usize,
        ipv6: bool,
    ) -> Result<(), Fallback> {
        if self.full() {
            return Err(Fallback::Other);
        }
        let Some(e) = self.sender.egress.as_mut() else {
            return Err(Fallback::Other);
        };
        let port = e.admit(meta, frame, l3, ip_len, ipv6)?;
        let Some(m) = meta else {
            return Err(Fallback::Other);
        };
        // SAFETY: `frame` is borrowed for 'frames, which outlives this batch; only a batch
        // flushes or clears what is staged.
        unsafe { e.stage(port, m, frame, l3, ip_len, ipv6) };
        Ok(())
    }

    /// Queues the whole Ethernet `frame`, whose IP header starts at `l3`. Returns the
    /// number of fragments when it had to fragment (IPv4 only), else 0; or why it queued
    /// nothing.
    pub fn push(&mut self, frame: &'frames [u8], l3: usize, ipv6: bool) -> Result<usize, Unsent> {
        if self.full() {
            return Err(Unsent::Full);
        }
        let s = &mut *self.sender;
        if ipv6 || frame.len() <= l3 + s.mtu {
            // SAFETY: `frame` is borrowed for 'frames, which outlives this batch, and
            // only a batch sends (or clears) the sender's queue.
            unsafe { s.msgs.push_bound(frame) };
            return Ok(0);
        }
        let base = s.scratch_used;
        let mut spans = [(0usize, 0usize); MAX_FRAGS];
        let (l2, pkt) = frame.split_at(l3);
        let Ok(k) = fragment_v4(l2, pkt, s.mtu, &mut s.scratch[base..], &mut spans) else {
            return Err(Unsent::Fragments);
        };
        for &(at, len) in &spans[..k] {
            // SAFETY: inside the sender's boxed scratch buffer, which is borrowed with the
            // sender for this batch and written only past `scratch_used` until a flush has
            // sent these.
            unsafe {
                let f = std::slice::from_raw_parts(s.scratch.as_ptr().add(base + at), len);
                s.msgs.push_bound(f);
            }
        }
        s.scratch_used += spans[..k].last().map_or(0, |(a, l)| a + l);
        Ok(k)
    }

    /// Sends everything queued: what is staged for AF_XDP TX first (one lock and one kick
    /// per egress socket), what of it found no room there joins the rest, then all that in
    /// one `sendmmsg` (more if the kernel refuses some: a frame it refuses is counted as
    /// failed and the rest go on).
    pub fn flush(&mut self) -> Flushed {
        let mut f = Flushed::default();
        // Taken out for the length of the flush (a move, no allocation): its leftovers are
        // pushed the kernel's way below, through `self`.
        if let Some(mut e) = self.sender.egress.take() {
            let t = e.flush();
            f.bypass_sent = t.sent;
            f.bypass_full = t.full;
            for u in e.unsent() {
                // SAFETY: staged from a frame borrowed for 'frames (`bypass`), alive and
                // unchanged until this batch ends.
                let frame: &'frames [u8] =
                    unsafe { std::slice::from_raw_parts(u.frame, u.frame_len as usize) };
                if self.push(frame, u.l3 as usize, u.ipv6).is_err() {
                    f.unsent += 1;
                }
            }
            e.clear();
            self.sender.egress = Some(e);
        }
        let s = &mut *self.sender;
        // Never `Stop`, so never an error.
        let r = s
            .msgs
            .send(s.fd.as_fd(), |_| Refused::Skip)
            .unwrap_or_default();
        s.scratch_used = 0;
        f.sent = r.sent;
        f.failed = r.skipped;
        f
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    pub(crate) fn frame4(payload: &[u8]) -> Vec<u8> {
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
                assert_eq!(h.time_to_live, 64, "the kernel's forwarding decrements it");
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap()
                );
                assert_eq!(h.hop_limit, 64, "the kernel's forwarding decrements it");
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
    fn ttl_is_left_to_the_kernel() {
        // The kernel's forwarding drops it (and sends the ICMP) as for any packet.
        let mut f = frame4(b"x");
        f[14 + 8] = 1;
        let h = locate(&f).unwrap();
        finish(&mut f, &h, 1).unwrap();
        assert_eq!(f[14 + 8], 1);
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
        let (l2, pkt) = (f[..14].to_vec(), f[14..14 + n].to_vec());
        let mut scratch = [0u8; 8000];
        let mut spans = [(0, 0); 8];
        let k = fragment_v4(&l2, &pkt, 1500, &mut scratch, &mut spans).unwrap();
        assert_eq!(k, 3);
        let frags: Vec<&[u8]> = spans[..k]
            .iter()
            .map(|&(a, l)| &scratch[a..a + l])
            .collect();
        let mut data = vec![0u8; n - 20];
        for (i, fr) in frags.iter().enumerate() {
            assert_eq!(&fr[..14], &l2[..], "fragment {i} keeps the link header");
            let fr = &fr[14..];
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

    /// A sender on a socket that is never flushed: what it queues, or refuses to.
    pub(crate) fn idle_sender(mtu: usize) -> FrameSender {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        FrameSender::with_fd(s.into(), mtu)
    }

    /// An IPv4 frame with a 60-byte header (40 bytes of NOP options) and `n` bytes of
    /// payload.
    pub(crate) fn frame4_with_options(payload: &[u8]) -> Vec<u8> {
        let mut f = frame4(payload);
        f.splice(14 + 20..14 + 20, [1u8; 40]);
        f[14] = 0x4f;
        let total = (f.len() - 14) as u16;
        f[14 + 2..14 + 4].copy_from_slice(&total.to_be_bytes());
        f
    }

    #[test]
    fn too_many_fragments_is_refused_not_lost() {
        // 60 bytes of header at the smallest IPv4 MTU (68) leave 8 bytes a fragment:
        // 1,000 bytes would take 126 of them.
        let f = frame4_with_options(&[b'x'; 992]);
        let mut s = idle_sender(68);
        let mut b = s.batch();
        assert_eq!(b.push(&f, 14, false), Err(Unsent::Fragments));
        // A frame that fits is queued whole, one that needs a few is fragmented.
        let small = frame4(b"x");
        assert_eq!(b.push(&small, 14, false), Ok(0));
        let mut s = idle_sender(1500);
        let big = frame4(&[b'y'; 2000]);
        assert_eq!(s.batch().push(&big, 14, false), Ok(2));
    }

    #[test]
    fn a_full_batch_refuses() {
        let f = frame4(b"x");
        let mut s = idle_sender(1500);
        let mut b = s.batch();
        for _ in 0..BATCH {
            assert_eq!(b.push(&f, 14, false), Ok(0));
        }
        assert!(b.full());
        assert_eq!(b.push(&f, 14, false), Err(Unsent::Full));
    }
}
