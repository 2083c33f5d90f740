//! AF_XDP receive: one socket per (interface, rx queue), its own UMEM, batched rings.
//!
//! The XDP program redirects requests that need a rewrite into the XSKMAP entry of the
//! queue they arrived on; this side takes them off the rx ring in batches, hands each frame
//! to a handler (rewrite + queue for sending), flushes the sends once per batch, then gives
//! every frame of the batch back to the fill ring in one go. Frames are never copied in
//! userspace: the rewrite happens inside the UMEM frame, which has room to grow (4 KiB
//! frames, packets ≤ MTU).
//!
//! Copy mode, on purpose (the TX sockets of `--egress bypass` try zero-copy first:
//! datapath/egress.rs). In zero-copy mode the driver fills the whole rx queue from this
//! socket's fill ring, so every packet of the queue, SIP or not, would depend on this
//! daemon giving frames back: a stopped (SIGSTOP, a debugger, a stalled disk write) or
//! slow daemon would stall the queue for all traffic after 2,048 SIP packets. In copy mode
//! the kernel keeps its own buffers: only the datagrams redirected here wait for rport, and
//! a dead daemon's socket leaves XSKS, so they go on unrewritten (XDP_PASS fallback). The
//! copy is one memcpy of a SIP-sized frame per message (50–180 ns, measured for the TX
//! copy in docs/ARCHITECTURE.md, "Egress bypass: requests"), small against the ~10 µs a transaction costs. veth has no
//! zero-copy at all.
use std::{num::NonZeroU32, os::fd::RawFd, ptr::NonNull, sync::atomic::Ordering, time::Instant};

use anyhow::{Context as _, Result, anyhow};
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, xdp::XdpDesc};

use rport_common::EgressMeta;

use crate::{
    datapath::{
        egress,
        inject::{Batch, Flushed, FrameSender},
    },
    observe::dstats::DaemonStats,
};

/// Counts what one flush did: every frame sent on is `forwarded`, those by AF_XDP TX also
/// `bypass_sent`.
fn count_flush(stats: &DaemonStats, f: Flushed) {
    DaemonStats::add(&stats.forwarded, f.sent + f.bypass_sent);
    DaemonStats::add(&stats.send_errors, f.failed);
    DaemonStats::add(&stats.bypass_sent, f.bypass_sent);
    DaemonStats::add(&stats.bypass_tx_full, f.bypass_full);
    DaemonStats::add(&stats.unsent, f.unsent);
}

/// UMEM frame size: a page, so a rewritten request always has tail room.
pub const FRAME_SIZE: u32 = 4096;
/// Frames per socket (also the ring sizes).
pub const FRAMES: u32 = 2048;
/// Frames taken off the rx ring per batch.
pub const RX_BATCH: usize = 64;
/// Longest time between two reads of the kernel's socket statistics while busy.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// XDP_COPY bind flag (linux/if_xdp.h).
const XDP_COPY: u16 = 1 << 1;

/// Anonymous, page-aligned memory for a UMEM, unmapped on Drop.
pub(crate) struct Area {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

impl Area {
    pub(crate) fn new(len: usize) -> Result<Area> {
        // SAFETY: anonymous private mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(anyhow!(
                "mmap of the UMEM: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Area {
            ptr: NonNull::new(p as *mut u8).context("mmap returned NULL")?,
            len,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping we made; the sockets using it are dropped before (field order).
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// One AF_XDP socket bound to (interface, queue) with its UMEM and rings.
pub struct XskQueue {
    // Field order is drop order: rings and sockets go before the memory they use.
    rx: RingRx,
    device: DeviceQueue,
    _umem: Umem,
    area: Area,
    /// Interface and queue, for messages.
    pub name: String,
    /// Frames waiting to go back to the fill ring; never more than FRAMES, allocated once.
    returning: Vec<u64>,
    /// Batches taken, and when the kernel's socket statistics were last read.
    batches: u32,
    stats_at: Instant,
    /// The descriptors of the batch being handled.
    descs: [XdpDesc; RX_BATCH],
}

// SAFETY: the queue is moved once into its worker thread and used only there; the raw
// pointers inside point to memory this struct owns.
unsafe impl Send for XskQueue {}

impl XskQueue {
    /// Creates the UMEM, the socket and its rings, binds to (ifindex, queue) in copy mode and
    /// puts every frame in the fill ring.
    pub fn open(ifname: &str, ifindex: u32, queue: u32) -> Result<XskQueue> {
        let name = format!("{ifname} queue {queue}");
        let area = Area::new((FRAME_SIZE * FRAMES) as usize)?;
        let mem = NonNull::slice_from_raw_parts(area.ptr, area.len);
        let cfg = UmemConfig {
            fill_size: FRAMES,
            complete_size: FRAMES,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `mem` is page-aligned, ours, and outlives the UMEM (field order).
        let umem =
            unsafe { Umem::new(cfg, mem) }.map_err(|e| anyhow!("AF_XDP UMEM for {name}: {e}"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| anyhow!("AF_XDP interface {name}: {e}"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem)
            .map_err(|e| anyhow!("AF_XDP socket for {name}: {e}"))?;
        let mut device = umem
            .fq_cq(&sock)
            .map_err(|e| anyhow!("AF_XDP fill/completion rings for {name}: {e}"))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES),
                    tx_size: None,
                    bind_flags: XDP_COPY,
                },
            )
            .map_err(|e| anyhow!("AF_XDP rx ring for {name}: {e}"))?;
        let rx = user
            .map_rx()
            .map_err(|e| anyhow!("mapping the AF_XDP rx ring for {name}: {e}"))?;
        umem.bind(&user)
            .map_err(|e| anyhow!("binding AF_XDP to {name}: {e}"))?;
        {
            let mut w = device.fill(FRAMES);
            let n = w.insert((0..FRAMES as u64).map(|i| i * FRAME_SIZE as u64));
            w.commit();
            if n != FRAMES {
                return Err(anyhow!(
                    "AF_XDP fill ring of {name} took {n} of {FRAMES} frames"
                ));
            }
        }
        Ok(XskQueue {
            rx,
            device,
            _umem: umem,
            area,
            name,
            returning: Vec::with_capacity(FRAMES as usize),
            batches: 0,
            stats_at: Instant::now(),
            descs: [XdpDesc {
                addr: 0,
                len: 0,
                options: 0,
            }; RX_BATCH],
        })
    }

    /// Puts `frames` in the fill ring, as many as it takes; what it cannot take now (the
    /// ring is full, which the frame accounting rules out, or the kernel lags) stays in
    /// `frames` for the next call and is counted as fill starvation.
    fn refill(&mut self, frames: &mut Vec<u64>, stats: &DaemonStats) {
        let mut done = 0;
        while done < frames.len() {
            let mut w = self.device.fill((frames.len() - done) as u32);
            let put = w.insert(frames[done..].iter().copied()) as usize;
            w.commit();
            if put == 0 {
                break;
            }
            done += put;
        }
        frames.drain(..done);
        if !frames.is_empty() {
            DaemonStats::add(&stats.fill_starved, 1);
        }
    }

    /// Copies the kernel's statistics of this socket (cumulative) into `stats`.
    fn kernel_stats(&self, stats: &DaemonStats) {
        if let Ok(k) = self.device.statistics_v2() {
            stats.xsk_ring_full.store(k.rx_ring_full, Ordering::Relaxed);
            stats.xsk_rx_dropped.store(k.rx_dropped, Ordering::Relaxed);
            stats
                .xsk_fill_empty
                .store(k.rx_fill_ring_empty_descs, Ordering::Relaxed);
        }
    }

    /// The socket's fd, for the XSKMAP.
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Takes one batch off the rx ring, hands each frame to `handler`, flushes the sends
    /// and gives the frames back to the fill ring; returns the number of frames (0: the
    /// ring was empty; the caller's wait policy decides what next, `datapath/workers.rs`).
    ///
    /// `handler(frame, len, meta, batch, now)` (`now`: the batch's receive time, one clock
    /// read per batch) gets the frame from its first byte to the end of its
    /// UMEM chunk (so it may grow), the received length and the XDP program's
    /// [`EgressMeta`] if it wrote one (`--egress bypass`), and may queue it in `batch`:
    /// the frames of one rx batch live as long as its send batch, which is flushed and
    /// ended here before the frames go back to the fill ring.
    pub fn batch(
        &mut self,
        stats: &DaemonStats,
        batch_time: &prometheus::Histogram,
        sender: &mut FrameSender,
        mut handler: impl for<'f> FnMut(
            &'f mut [u8],
            usize,
            Option<EgressMeta>,
            &mut Batch<'_, 'f>,
            Instant,
        ),
    ) -> usize {
        if !self.returning.is_empty() {
            let mut returning = std::mem::take(&mut self.returning);
            self.refill(&mut returning, stats);
            self.returning = returning;
        }
        let descs = &mut self.descs;
        let n = {
            let mut r = self.rx.receive(RX_BATCH as u32);
            let mut k = 0;
            while let Some(d) = r.read() {
                descs[k] = d;
                k += 1;
            }
            r.release();
            k
        };
        if n == 0 {
            return 0;
        }
        let t0 = Instant::now();
        self.batches += 1;
        // Looking at the clock is itself a cost: once per 64 batches.
        if self.batches.is_multiple_of(64) && t0.duration_since(self.stats_at) >= STATS_EVERY {
            self.kernel_stats(stats);
            self.stats_at = t0;
        }
        {
            // The frames handed out below are borrowed for as long as this batch lives;
            // it ends, flushed, before they go back to the fill ring.
            let want_meta = sender.bypassing();
            let mut batch = sender.batch();
            for d in &self.descs[..n] {
                let chunk = d.addr & !(FRAME_SIZE as u64 - 1);
                let end = (chunk + FRAME_SIZE as u64).min(self.area.len as u64);
                if d.addr + d.len as u64 > end {
                    DaemonStats::add(&stats.bad_frames, 1);
                    continue;
                }
                // SAFETY: [addr, end) is inside our UMEM, a chunk of its own (each
                // descriptor of the batch is a different chunk), and owned by us until
                // we hand it back to the fill ring, after `batch` has ended.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(
                        self.area.ptr.as_ptr().add(d.addr as usize),
                        (end - d.addr) as usize,
                    )
                };
                // The metadata the kernel copied in front of the data (xsk_copy_xdp),
                // in the chunk's headroom; its magic cleared as it is read, so the
                // chunk goes back to the fill ring without it. Only `--egress bypass`
                // has metadata to read: the default never touches the headroom.
                let meta = if want_meta {
                    // SAFETY: [chunk, addr) is the same chunk's headroom, ours as
                    // above, and does not overlap `frame`.
                    let before = unsafe {
                        std::slice::from_raw_parts_mut(
                            self.area.ptr.as_ptr().add(chunk as usize),
                            (d.addr - chunk) as usize,
                        )
                    };
                    egress::take_meta(before)
                } else {
                    None
                };
                handler(frame, d.len as usize, meta, &mut batch, t0);
                if batch.full() {
                    count_flush(stats, batch.flush());
                }
            }
            let f = batch.flush();
            count_flush(stats, f);
            if f.failed > 0 {
                crate::warn_limited!(
                    failed = f.failed,
                    "the kernel refused rewritten requests (no route? rport stats: send_errors)"
                );
            }
        }
        // Every frame of the batch back to the kernel at once. A reservation may get
        // fewer slots than asked (xdpilone answers from its cached view of the kernel's
        // consumer index while that shows any room), so go on until all are back:
        // a frame not returned would be lost to the socket for good.
        let mut returning = std::mem::take(&mut self.returning);
        returning.extend(
            self.descs[..n]
                .iter()
                .map(|d| d.addr & !(FRAME_SIZE as u64 - 1)),
        );
        self.refill(&mut returning, stats);
        self.returning = returning;
        if self.device.needs_wakeup() {
            self.device.wake();
        }
        let dt = t0.elapsed();
        DaemonStats::add(&stats.rx_frames, n as u64);
        DaemonStats::add(&stats.batches, 1);
        DaemonStats::add(&stats.busy_ns, dt.as_nanos() as u64);
        batch_time.observe(dt.as_secs_f64());
        n
    }

    /// Before the worker sleeps: the kernel's socket statistics, read when idle (they
    /// cost a syscall), and at most every STATS_EVERY while busy (in `batch`).
    pub fn idle(&mut self, stats: &DaemonStats) {
        self.kernel_stats(stats);
    }
}
