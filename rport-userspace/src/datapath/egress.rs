//! Egress bypass (`--egress bypass`): rewritten requests leave by AF_XDP TX on the inside
//! interface the XDP program's route lookup named, instead of going back through the
//! kernel's receive path (inject.rs).
//!
//! The XDP program looks the route up (`bpf_fib_lookup`) and hands the egress ifindex and
//! the next hop's MACs over in the frame's metadata ([`EgressMeta`], read by afxdp.rs).
//! When the lookup found everything and the rewritten frame fits the egress MTU, the
//! forwarding thread writes a new Ethernet header in front of the IP packet, decrements
//! the TTL / hop limit (what the kernel's forwarding would have done), copies it into a TX
//! frame of that interface's socket and queues it; the batch is sent with one `sendto`.
//! Anything else — no neighbour entry yet, fragmentation needed, no route, TTL running
//! out, a full TX ring — goes the kernel's way (re-injection), counted by reason. What it
//! skips (the FORWARD chain, conntrack, POSTROUTING) is why it is opt-in: see
//! docs/ARCHITECTURE.md, "Egress bypass: requests".
//!
//! Sockets: TX only, one per (inside interface, tx queue), each with its own UMEM (fill and
//! completion rings; its frames for TX, and in zero-copy mode half of them the driver's
//! receive buffers for that queue), bound zero-copy first (`XDP_ZEROCOPY`), copy mode
//! when the driver has none (veth); the mode is kept ([`Mode`]) and counted
//! (`egress_tx_zerocopy`, `egress_tx_copy`, `rport stats`). Several forwarding threads may send on one
//! socket (the thread of outside queue q uses inside queue q % n): the TX half (ring,
//! completions, free frames) is behind a per-socket mutex taken once per batch, never per
//! packet.
//!
//! The one copy (rx frame → TX frame) is one `memcpy` of the packet, about 50–65 ns for a
//! REGISTER; XDP_SHARED_UMEM would save it, at the price of rx frames held until their TX
//! completes and one UMEM shared by the outside and inside sockets (docs/ARCHITECTURE.md,
//! "Egress bypass: requests").
use std::{
    num::NonZeroU32,
    ptr::NonNull,
    sync::{Arc, Mutex},
};

use anyhow::{Result, anyhow};
use rport_common::EgressMeta;
use rport_ebpf::csum;
use xdpilone::{DeviceQueue, IfInfo, RingTx, Socket, SocketConfig, Umem, UmemConfig, xdp::XdpDesc};

use crate::datapath::{afxdp::Area, inject::BATCH};

/// TX frame size: half a page, room for a 1,500-byte MTU and more (a larger packet goes
/// the kernel's way, `bypass_mtu`).
pub const TX_FRAME: u32 = 2048;
/// TX frames per socket (also the TX and completion ring sizes): 4 MiB, as the rx
/// UMEM of one queue. A frame is the kernel's from its `sendto` until the receiver's IP
/// layer has it (copy mode: the completion comes when the skb is orphaned), which on a
/// busy host may be milliseconds: 2,048 frames hold 25 ms at 80,000 requests/s.
pub const TX_FRAMES: u32 = 2048;
/// Ethernet header written in front of the IP packet (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// XDP_COPY, XDP_ZEROCOPY bind flags (linux/if_xdp.h).
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
/// SOL_XDP and XDP_MAX_TX_SKB_BUDGET (linux/if_xdp.h, Linux 6.17): how many descriptors
/// one `sendto` sends in copy mode (32 by default, fewer than a batch).
const SOL_XDP: libc::c_int = 283;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// `sendto`s per flush at most: in copy mode one sends at most the budget (32 on kernels
/// without the option, then EAGAIN) and a batch is up to 64 frames.
const MAX_KICKS: usize = 4;

/// How a socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The driver reads the TX frames from the UMEM itself.
    ZeroCopy,
    /// The kernel copies each TX frame into an skb (veth, drivers without zero-copy).
    Copy,
}

/// The TX half of one socket: what a sending thread locks, once per batch.
pub struct TxSocket {
    // Field order is drop order: rings and socket go before the memory they use.
    tx: RingTx,
    device: DeviceQueue,
    _umem: Umem,
    area: Area,
    /// Frames not in the kernel's hands (neither in the TX ring nor awaiting completion).
    free: Vec<u64>,
}

// SAFETY: used only behind its Mutex; the raw pointers inside point to memory it owns.
unsafe impl Send for TxSocket {}

impl TxSocket {
    fn open(ifindex: u32, queue: u32, flags: u16, name: &str) -> Result<TxSocket> {
        let area = Area::new((TX_FRAME * TX_FRAMES) as usize)?;
        let mem = NonNull::slice_from_raw_parts(area.ptr, area.len);
        let cfg = UmemConfig {
            fill_size: TX_FRAMES,
            complete_size: TX_FRAMES,
            frame_size: TX_FRAME,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `mem` is page-aligned, ours, and outlives the UMEM (field order).
        let umem = unsafe { Umem::new(cfg, mem) }
            .map_err(|e| anyhow!("AF_XDP TX UMEM for {name}: {e}"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| anyhow!("AF_XDP TX interface {name}: {e}"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem)
            .map_err(|e| anyhow!("AF_XDP TX socket for {name}: {e}"))?;
        // The kernel binds no UMEM without both rings.
        let mut device = umem
            .fq_cq(&sock)
            .map_err(|e| anyhow!("AF_XDP fill/completion rings for {name}: {e}"))?;
        // Zero-copy puts the driver's receive ring of this queue on the UMEM: it takes its
        // buffers from the fill ring (and recycles them itself after an XDP_PASS, which it
        // copies into an skb). An empty fill ring would stop every frame arriving on this
        // queue (the servers' responses): half the frames are the driver's for good.
        // Copy mode receives into the kernel's own buffers: all frames are for TX.
        let tx_frames = if flags & XDP_ZEROCOPY != 0 {
            let half = TX_FRAMES / 2;
            let mut w = device.fill(half);
            let n = w.insert((half as u64..TX_FRAMES as u64).map(|i| i * TX_FRAME as u64));
            w.commit();
            if n != half {
                return Err(anyhow!(
                    "AF_XDP fill ring of {name} took {n} of {half} frames"
                ));
            }
            half
        } else {
            TX_FRAMES
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: None,
                    tx_size: NonZeroU32::new(TX_FRAMES),
                    bind_flags: flags,
                },
            )
            .map_err(|e| anyhow!("AF_XDP TX ring for {name}: {e}"))?;
        let tx = user
            .map_tx()
            .map_err(|e| anyhow!("mapping the AF_XDP TX ring for {name}: {e}"))?;
        umem.bind(&user)
            .map_err(|e| anyhow!("binding AF_XDP TX to {name}: {e}"))?;
        // One sendto per batch in copy mode: ask for a budget of a whole batch (Linux
        // 6.17+; older kernels keep 32, and the flush kicks again on EAGAIN).
        let budget: u32 = 64;
        // SAFETY: a u32 option value and its size, on our socket.
        unsafe {
            libc::setsockopt(
                tx.as_raw_fd(),
                SOL_XDP,
                XDP_MAX_TX_SKB_BUDGET,
                &budget as *const u32 as *const libc::c_void,
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        Ok(TxSocket {
            tx,
            device,
            _umem: umem,
            area,
            free: (0..tx_frames as u64).map(|i| i * TX_FRAME as u64).collect(),
        })
    }

    /// Takes the frames the kernel is done with back into `free`.
    fn reap(&mut self) {
        let mut c = self.device.complete(TX_FRAMES);
        while let Some(addr) = c.read() {
            self.free.push(addr & !(TX_FRAME as u64 - 1));
        }
        c.release();
    }

    /// Builds the frames of `staged` that are for `port` (at most a batch) into free TX
    /// frames, queues as many as the TX ring takes, marks them `sent` and kicks the kernel.
    /// Returns how many went.
    fn send(&mut self, staged: &mut [Staged], port: u8) -> usize {
        self.reap();
        let mut descs = [XdpDesc {
            addr: 0,
            len: 0,
            options: 0,
        }; BATCH];
        let mut which = [0u16; BATCH];
        let mut n = 0;
        for (i, s) in staged.iter_mut().enumerate() {
            if s.port != port {
                continue;
            }
            if n == BATCH {
                break;
            }
            let Some(addr) = self.free.pop() else { break };
            // SAFETY: `addr` is a free chunk of our UMEM (no descriptor holds it), TX_FRAME
            // bytes; the staged frame is alive until the batch that holds it is flushed.
            let (out, ip) = unsafe {
                (
                    std::slice::from_raw_parts_mut(
                        self.area.ptr.as_ptr().add(addr as usize),
                        TX_FRAME as usize,
                    ),
                    std::slice::from_raw_parts(s.ip, s.ip_len as usize),
                )
            };
            let Some(len) = build(out, &s.dmac, &s.smac, ip, s.ipv6) else {
                self.free.push(addr);
                continue;
            };
            descs[n] = XdpDesc {
                addr,
                len: len as u32,
                options: 0,
            };
            which[n] = i as u16;
            n += 1;
        }
        // A reservation may get fewer slots than asked (xdpilone answers from its cached
        // view of the kernel's consumer while that shows any room): go on until the ring
        // takes none, which it then says from a fresh look.
        let mut put = 0;
        while put < n {
            let mut w = self.tx.transmit((n - put) as u32);
            let k = w.insert(descs[put..n].iter().copied()) as usize;
            w.commit();
            if k == 0 {
                break;
            }
            put += k;
        }
        for d in &descs[put..n] {
            self.free.push(d.addr);
        }
        for &i in &which[..put] {
            staged[i as usize].sent = true;
        }
        if put > 0 {
            self.kick();
        }
        put
    }

    /// One `sendto` (more only while the kernel says EAGAIN with frames left: a budget
    /// smaller than the batch).
    fn kick(&mut self) {
        for _ in 0..MAX_KICKS {
            // SAFETY: a zero-length sendto on our socket.
            let r = unsafe {
                libc::sendto(
                    self.tx.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                return;
            }
            if self.tx.pending() == 0 {
                return;
            }
        }
    }
}

/// The TX sockets of one inside interface.
pub struct EgressIface {
    pub name: String,
    pub ifindex: u32,
    /// Largest IP packet it sends (the interface's MTU, bounded by the TX frame).
    pub mtu: usize,
    pub mode: Mode,
    queues: Vec<Arc<Mutex<TxSocket>>>,
}

impl EgressIface {
    /// One TX socket per queue, zero-copy if the driver takes it, else copy mode.
    pub fn open(name: &str, ifindex: u32, queues: u32, mtu: usize) -> Result<EgressIface> {
        let mut mode = Mode::ZeroCopy;
        let mut socks = Vec::with_capacity(queues as usize);
        for q in 0..queues.max(1) {
            let qname = format!("{name} queue {q}");
            let s = match mode {
                Mode::ZeroCopy => match TxSocket::open(ifindex, q, XDP_ZEROCOPY, &qname) {
                    Ok(s) => s,
                    Err(_) => {
                        mode = Mode::Copy;
                        TxSocket::open(ifindex, q, XDP_COPY, &qname)?
                    }
                },
                Mode::Copy => TxSocket::open(ifindex, q, XDP_COPY, &qname)?,
            };
            socks.push(Arc::new(Mutex::new(s)));
        }
        Ok(EgressIface {
            name: name.to_string(),
            ifindex,
            mtu: mtu.min(TX_FRAME as usize - ETH_LEN),
            mode,
            queues: socks,
        })
    }
}

/// A frame queued for AF_XDP TX: where its IP packet is (in an rx frame borrowed by the
/// batch), and the link header to put in front.
#[derive(Clone, Copy)]
pub struct Staged {
    port: u8,
    sent: bool,
    ip: *const u8,
    ip_len: u32,
    /// The whole rx frame and where its IP header starts: the kernel path, if it cannot go.
    pub frame: *const u8,
    pub frame_len: u32,
    pub l3: u16,
    pub ipv6: bool,
    dmac: [u8; 6],
    smac: [u8; 6],
}

/// One inside interface as a forwarding thread sees it: its ifindex and MTU (the socket
/// this thread sends on is at the same index in `EgressTx::socks`).
struct Port {
    ifindex: u32,
    mtu: usize,
}

/// Why a frame did not go by AF_XDP TX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No neighbour entry for the next hop yet.
    NoNeigh,
    /// Larger than the egress MTU (the kernel fragments, or sends the ICMP).
    Mtu,
    /// No metadata, no route, not an interface of ours, TTL running out.
    Other,
}

/// A forwarding thread's AF_XDP TX: its ports and the frames staged for the batch.
pub struct EgressTx {
    ports: Vec<Port>,
    socks: Vec<Arc<Mutex<TxSocket>>>,
    /// Frames of the current batch; pointers into rx frames the batch borrows (only a
    /// `Batch` of inject.rs pushes and clears this).
    staged: Vec<Staged>,
}

// SAFETY: the staged pointers are into rx frames of the thread that owns this (a batch's,
// cleared when the next batch starts); the sender moves into its thread before any batch.
unsafe impl Send for EgressTx {}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxFlushed {
    pub sent: u64,
    /// Staged but no TX frame or ring slot for them: left in `staged` for the kernel path.
    pub full: u64,
}

impl EgressTx {
    /// The sockets of queue `q % n` of each interface (the thread of outside queue `q`).
    pub fn for_queue(ifaces: &[EgressIface], q: u32) -> EgressTx {
        let ifaces: Vec<&EgressIface> = ifaces.iter().filter(|i| !i.queues.is_empty()).collect();
        EgressTx {
            ports: ifaces
                .iter()
                .map(|i| Port {
                    ifindex: i.ifindex,
                    mtu: i.mtu,
                })
                .collect(),
            socks: ifaces
                .iter()
                .map(|i| i.queues[q as usize % i.queues.len()].clone())
                .collect(),
            staged: Vec::with_capacity(BATCH),
        }
    }

    /// Frames staged.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Forgets what is staged (an earlier batch's frames may be gone).
    pub fn clear(&mut self) {
        self.staged.clear();
    }

    /// Whether the frame `frame` (IP at `l3`, `ip_len` bytes of IP) may leave by AF_XDP
    /// TX as `meta` says: the lookup found a route and neighbour, the interface is one of
    /// ours, the frame fits its MTU, the TTL / hop limit does not run out here. Which port,
    /// or why not.
    pub fn admit(
        &self,
        meta: Option<&EgressMeta>,
        frame: &[u8],
        l3: usize,
        ip_len: usize,
        ipv6: bool,
    ) -> Result<u8, Fallback> {
        use rport_common::egress_status as st;
        let Some(m) = meta else {
            return Err(Fallback::Other);
        };
        match m.status {
            st::FORWARD => {}
            st::NO_NEIGH => return Err(Fallback::NoNeigh),
            st::FRAG_NEEDED => return Err(Fallback::Mtu),
            _ => return Err(Fallback::Other),
        }
        let Some(i) = self.ports.iter().position(|p| p.ifindex == m.ifindex) else {
            return Err(Fallback::Other);
        };
        if ip_len > self.ports[i].mtu {
            return Err(Fallback::Mtu);
        }
        // The kernel sends Time Exceeded for a TTL that runs out: leave it that case.
        let ttl = frame
            .get(l3 + if ipv6 { 7 } else { 8 })
            .copied()
            .unwrap_or(0);
        if ttl <= 1 {
            return Err(Fallback::Other);
        }
        Ok(i as u8)
    }

    /// Stages `frame` for `port` (from [`EgressTx::admit`]).
    ///
    /// # Safety
    /// `frame` stays alive and unchanged until [`EgressTx::flush`] or [`EgressTx::clear`]
    /// (a `Batch` borrows it for that long).
    pub unsafe fn stage(
        &mut self,
        port: u8,
        meta: &EgressMeta,
        frame: &[u8],
        l3: usize,
        ip_len: usize,
        ipv6: bool,
    ) {
        self.staged.push(Staged {
            port,
            sent: false,
            ip: frame[l3..l3 + ip_len].as_ptr(),
            ip_len: ip_len as u32,
            frame: frame.as_ptr(),
            frame_len: (l3 + ip_len) as u32,
            l3: l3 as u16,
            ipv6,
            dmac: meta.dmac,
            smac: meta.smac,
        });
    }

    /// Sends what is staged, one lock and one kick per port that has frames. What could
    /// not go (TX ring or frames exhausted) stays in `staged` (see [`EgressTx::unsent`])
    /// for the caller to send the kernel's way.
    pub fn flush(&mut self) -> TxFlushed {
        let mut r = TxFlushed::default();
        if self.staged.is_empty() {
            return r;
        }
        for (pi, sock) in self.socks.iter().enumerate() {
            let pi = pi as u8;
            if !self.staged.iter().any(|s| s.port == pi) {
                continue;
            }
            // A poisoned lock: a thread panicked while sending; the rings are consistent
            // at every step (each is committed whole), so go on.
            let mut sock = sock.lock().unwrap_or_else(|e| e.into_inner());
            r.sent += sock.send(&mut self.staged, pi) as u64;
        }
        self.staged.retain(|s| !s.sent);
        r.full = self.staged.len() as u64;
        r
    }

    /// The frames the last flush left (for the kernel path), then cleared by `clear`.
    pub fn unsent(&self) -> &[Staged] {
        &self.staged
    }
}

/// Writes the frame that leaves by AF_XDP TX into `out`: `dmac`, `smac`, the EtherType of
/// the IP version, then the IP packet `ip` with its TTL / hop limit one less (and the IPv4
/// header checksum over that). Any VLAN tag of the received frame is gone: the egress
/// interface is untagged (a VLAN device has its own ifindex). The UDP checksum is `ip`'s
/// (the TTL is not in the pseudo-header). Returns the frame's length; None when `out` is
/// too small, `ip` is not an IP header, or the TTL would run out.
pub fn build(
    out: &mut [u8],
    dmac: &[u8; 6],
    smac: &[u8; 6],
    ip: &[u8],
    ipv6: bool,
) -> Option<usize> {
    let len = ETH_LEN + ip.len();
    let hl = if ipv6 {
        40
    } else {
        (*ip.first()? & 0x0f) as usize * 4
    };
    if len > out.len() || ip.len() < hl || hl < 20 {
        return None;
    }
    out[..6].copy_from_slice(dmac);
    out[6..12].copy_from_slice(smac);
    out[12..14].copy_from_slice(if ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    out[ETH_LEN..len].copy_from_slice(ip);
    let p = &mut out[ETH_LEN..len];
    let ttl = if ipv6 { &mut p[7] } else { &mut p[8] };
    if *ttl <= 1 {
        return None;
    }
    *ttl -= 1;
    if !ipv6 {
        p[10..12].copy_from_slice(&[0, 0]);
        let c = csum::checksum(&p[..hl], 0);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    Some(len)
}

/// Reads the [`EgressMeta`] the kernel copied in front of a received frame (`before`: the
/// bytes of its UMEM chunk before the descriptor's data) and clears its magic, so that a
/// later frame in this chunk, with no metadata, is never taken for having this one's.
pub fn take_meta(before: &mut [u8]) -> Option<EgressMeta> {
    const N: usize = std::mem::size_of::<EgressMeta>();
    let at = before.len().checked_sub(N)?;
    let b = &mut before[at..];
    // SAFETY: EgressMeta is repr(C) plain data (layout test in rport-common): any bytes
    // are a valid value; read unaligned.
    let m = unsafe { std::ptr::read_unaligned(b.as_ptr() as *const EgressMeta) };
    if m.magic != EgressMeta::MAGIC {
        return None;
    }
    b[..4].copy_from_slice(&[0; 4]);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::inject::{finish, locate, tests::frame4};
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    const DMAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
    const SMAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];

    /// The IP packet of a finished frame (lengths and checksums fixed as forward.rs does).
    fn finished(mut f: Vec<u8>) -> (Vec<u8>, bool) {
        let h = locate(&f).unwrap();
        let total = finish(&mut f, &h, h.payload_len as usize).unwrap();
        (f[h.l3 as usize..h.l3 as usize + total].to_vec(), h.ipv6)
    }

    fn checked(out: &[u8], payload: &[u8], ttl: u8) {
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("not Ethernet II")
        };
        assert_eq!(e.destination(), DMAC);
        assert_eq!(e.source(), SMAC);
        assert!(p.vlan.is_none(), "no VLAN tag on the way out");
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!()
        };
        assert_eq!(u.payload(), payload);
        match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.time_to_live, ttl);
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap()
                );
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.hop_limit, ttl);
                assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap()
                );
            }
            _ => panic!(),
        }
    }

    #[test]
    fn ipv4_frame_gets_the_next_hop_macs_one_less_ttl_and_right_checksums() {
        let payload = b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50;rport=1\r\n\r\n";
        let (ip, v6) = finished(frame4(payload));
        let mut out = [0u8; 4096];
        let n = build(&mut out, &DMAC, &SMAC, &ip, v6).unwrap();
        assert_eq!(n, 14 + ip.len());
        checked(&out[..n], payload, 63);
    }

    #[test]
    fn a_udp_checksum_left_partial_by_a_local_sender_is_complete_on_the_way_out() {
        // A veth frame with CHECKSUM_PARTIAL has only the pseudo-header seed in the UDP
        // checksum field; finish() computes the full checksum, and build keeps it.
        let payload = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let mut f = frame4(payload);
        let h = locate(&f).unwrap();
        let l4 = h.l4 as usize;
        f[l4 + 6..l4 + 8].copy_from_slice(&[0x12, 0x34]);
        let (ip, v6) = finished(f);
        let mut out = [0u8; 2048];
        let n = build(&mut out, &DMAC, &SMAC, &ip, v6).unwrap();
        checked(&out[..n], payload, 63);
    }

    #[test]
    fn ipv6_with_a_vlan_tag_leaves_untagged_with_one_less_hop_limit() {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .single_vlan(7.try_into().unwrap())
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50],
                [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
                9,
            )
            .udp(5060, 5060);
        let mut f = Vec::new();
        let payload = b"OPTIONS x SIP/2.0\r\n\r\n";
        b.write(&mut f, payload).unwrap();
        let (ip, v6) = finished(f);
        assert!(v6);
        let mut out = [0u8; 2048];
        let n = build(&mut out, &DMAC, &SMAC, &ip, v6).unwrap();
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        checked(&out[..n], payload, 8);
    }

    #[test]
    fn a_ttl_that_runs_out_or_no_room_builds_nothing() {
        let (mut ip, _) = finished(frame4(b"x"));
        let mut out = [0u8; 2048];
        assert_eq!(build(&mut out[..20], &DMAC, &SMAC, &ip, false), None);
        ip[8] = 1;
        assert_eq!(build(&mut out, &DMAC, &SMAC, &ip, false), None);
        assert_eq!(build(&mut out, &DMAC, &SMAC, &[], false), None);
        assert_eq!(build(&mut out, &DMAC, &SMAC, &[0x45; 10], false), None);
    }

    fn meta(status: u16, ifindex: u32) -> EgressMeta {
        EgressMeta {
            magic: EgressMeta::MAGIC,
            ifindex,
            dmac: DMAC,
            smac: SMAC,
            status,
            _pad: 0,
        }
    }

    #[test]
    fn metadata_is_read_once_then_its_magic_is_gone() {
        let m = meta(rport_common::egress_status::FORWARD, 7);
        let mut before = [0u8; 256];
        // SAFETY: plain data of its own size.
        let bytes: [u8; 24] = unsafe { std::mem::transmute(m) };
        before[256 - 24..].copy_from_slice(&bytes);
        assert_eq!(take_meta(&mut before), Some(m));
        assert_eq!(take_meta(&mut before), None, "a stale one is never read");
        assert_eq!(take_meta(&mut before[..10]), None);
    }

    #[test]
    fn admission_follows_the_lookup_the_mtu_and_the_ttl() {
        use rport_common::egress_status as st;
        // A port without a socket: admission looks at the ifindex and MTU only.
        let mut tx = EgressTx {
            ports: Vec::new(),
            socks: Vec::new(),
            staged: Vec::new(),
        };
        let (ip, _) = finished(frame4(b"x"));
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&ip);
        let n = ip.len();
        assert_eq!(
            tx.admit(None, &f, 14, n, false),
            Err(Fallback::Other),
            "no metadata"
        );
        assert_eq!(
            tx.admit(Some(&meta(st::NO_NEIGH, 7)), &f, 14, n, false),
            Err(Fallback::NoNeigh)
        );
        assert_eq!(
            tx.admit(Some(&meta(st::FRAG_NEEDED, 7)), &f, 14, n, false),
            Err(Fallback::Mtu)
        );
        assert_eq!(
            tx.admit(Some(&meta(st::FORWARD, 7)), &f, 14, n, false),
            Err(Fallback::Other),
            "not an interface of ours"
        );
        tx.ports.push(Port { ifindex: 7, mtu: n });
        assert_eq!(
            tx.admit(Some(&meta(st::FORWARD, 7)), &f, 14, n, false),
            Ok(0)
        );
        assert_eq!(
            tx.admit(Some(&meta(st::FORWARD, 7)), &f, 14, n + 1, false),
            Err(Fallback::Mtu),
            "grown past the egress MTU"
        );
        f[14 + 8] = 1;
        assert_eq!(
            tx.admit(Some(&meta(st::FORWARD, 7)), &f, 14, n, false),
            Err(Fallback::Other),
            "TTL runs out: the kernel sends the ICMP"
        );
    }
}
