//! Forwarding threads: one per (outside interface, rx queue), or at most `--workers` per
//! interface each owning several queues (`datapath/workers.rs`), each with its own AF_XDP
//! socket per queue and its own frame sender, rewriting the messages the XDP program hands over (a request's
//! top Via and Contacts, a client's 1xx/2xx's Contacts) and giving them back to the kernel
//! on the interface they arrived on, which forwards them toward the server (inject.rs).
use std::{
    net::IpAddr,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::{Context as _, Result};
use aya::maps::XskMap;
use rport_common::{MAX_QUEUES, maps, role};

use crate::{
    datapath::{
        afxdp::XskQueue,
        egress::{EgressIface, EgressTx, Fallback, Mode},
        inject::{self, Batch, FrameSender, Unsent},
        loader::{Iface, LoadConfig, Loaded},
        workers::{self, Placement},
    },
    observe::{dstats::DaemonStats, nat::NatTracker},
    sip::message,
};

/// The forwarding threads: their counters (read by the control socket) and handles, in
/// one group per outside interface, so that the threads of an interface that went away can
/// be stopped and started again when it is back (datapath/ifwatch.rs).
pub struct Workers {
    /// Every thread's counters, and the interface watcher's (summed by `rport stats`).
    pub stats: Vec<Arc<DaemonStats>>,
    /// The interface watcher's counters (`iface_lost`, `iface_reattached`), in `stats` too.
    pub watch_stats: Arc<DaemonStats>,
    groups: Vec<Group>,
    ctx: Ctx,
}

/// The threads of one outside interface.
struct Group {
    slot: u32,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
    /// One per queue, kept across a restart (so counts go on from where they were).
    stats: Vec<Arc<DaemonStats>>,
    /// `SO_COOKIE`s of its threads' senders in INJECT_SOCKETS: taken out again when the
    /// group restarts, or an interface that keeps coming back would fill the map.
    cookies: Vec<u64>,
    /// Threads of the last start (each owns one or more queues: `--workers`).
    threads: usize,
}

/// What every forwarding thread is started with, besides its socket.
struct Ctx {
    egress_mtu: usize,
    batch_time: prometheus::Histogram,
    force_rport: Vec<(IpAddr, u8)>,
    contact_alias: bool,
    tag_key: Arc<crate::datapath::keys::CurrentKey>,
    nat: Arc<NatTracker>,
    /// The inside interfaces' AF_XDP TX sockets under `--egress bypass`, else None.
    egress: Option<Arc<[EgressIface]>>,
    placement: Placement,
}

impl Workers {
    /// Stops every thread and waits for them.
    pub fn join(self) {
        for g in &self.groups {
            g.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for g in self.groups {
            for h in g.handles {
                let _ = h.join();
            }
        }
    }

    /// Stops the threads of the interface in `slot` and waits for them (at most one poll
    /// timeout): their sockets close, and the kernel takes them out of XSKS.
    pub fn stop_iface(&mut self, slot: u32) {
        for g in self.groups.iter_mut().filter(|g| g.slot == slot) {
            g.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for h in g.handles.drain(..) {
                let _ = h.join();
            }
        }
    }

    /// `--egress bypass`: an inside interface came back under a new ifindex (`ifaces`: all
    /// of them, with its new one). Its TX sockets were bound to the old one: the TX sockets
    /// are opened again, and the running forwarding threads restarted with them (their
    /// senders hold the sockets). Nothing to do under `--egress kernel`.
    pub fn inside_back(&mut self, ebpf: &mut aya::Ebpf, ifaces: &[Iface]) -> Result<()> {
        if self.ctx.egress.is_none() {
            return Ok(());
        }
        self.ctx.egress = Some(open_egress(ifaces, &self.watch_stats));
        let running: Vec<Iface> = self
            .groups
            .iter()
            .filter(|g| !g.handles.is_empty())
            .filter_map(|g| ifaces.iter().find(|i| i.slot == g.slot).cloned())
            .collect();
        for i in &running {
            self.start_iface(ebpf, i)?;
        }
        Ok(())
    }

    /// Opens one AF_XDP socket per rx queue of `iface` (an outside interface), registers
    /// it in XSKS and starts the threads that own them (one per queue, or `--workers` at
    /// most, each with several); the threads of a group that ran before are stopped
    /// first, and their counters go on. Returns the number of sockets.
    pub fn start_iface(&mut self, ebpf: &mut aya::Ebpf, iface: &Iface) -> Result<u32> {
        self.stop_iface(iface.slot);
        let gi = match self.groups.iter().position(|g| g.slot == iface.slot) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    slot: iface.slot,
                    stop: Arc::new(AtomicBool::new(false)),
                    handles: Vec::new(),
                    stats: Vec::new(),
                    cookies: Vec::new(),
                    threads: 0,
                });
                self.groups.len() - 1
            }
        };
        let mut cookies: aya::maps::HashMap<_, u64, u8> = aya::maps::HashMap::try_from(
            ebpf.map_mut(maps::INJECT_SOCKETS)
                .context("INJECT_SOCKETS map")?,
        )?;
        for c in self.groups[gi].cookies.drain(..) {
            // The sockets are closed (their threads stopped): nothing sends with them.
            let _ = cookies.remove(&c);
        }
        let stop = Arc::new(AtomicBool::new(false));
        self.groups[gi].stop = stop.clone();
        let queues = rx_queues(&iface.name);
        let had = self.groups[gi].stats.len();
        // CPUs of the threads before this interface's, so each thread has its own in turn.
        let first = self.groups[..gi].iter().map(|g| g.threads).sum::<usize>();
        let plan = workers::assign(queues, self.ctx.placement.workers);
        self.groups[gi].threads = plan.len();
        for (w, owned) in plan.into_iter().enumerate() {
            // Rewritten frames go back in where they came from: the redirect to ingress
            // takes no frame larger than this interface's MTU, and a grown packet larger
            // than the egress MTU would meet the client's DF there (or, for IPv6, a
            // Packet Too Big for a packet rport grew): the smaller of the two bounds them.
            let mut sender =
                FrameSender::new(iface.index, mtu(&iface.name).min(self.ctx.egress_mtu))?;
            if let Some(e) = &self.ctx.egress {
                // Worker w sends on the inside interfaces' queue w (modulo their count).
                sender = sender.with_egress(EgressTx::for_queue(e, w as u32));
            }
            // Known to the TC program before the first frame is sent, or that frame would
            // leave on the wire as it is.
            let cookie = sender.cookie()?;
            let mut cookies: aya::maps::HashMap<_, u64, u8> = aya::maps::HashMap::try_from(
                ebpf.map_mut(maps::INJECT_SOCKETS)
                    .context("INJECT_SOCKETS map")?,
            )?;
            cookies
                .insert(cookie, 1, 0)
                .with_context(|| format!("registering the frame sender of {}", iface.name))?;
            self.groups[gi].cookies.push(cookie);
            let mut xsks_owned = Vec::new();
            let mut stats_owned = Vec::new();
            for &q in &owned {
                let xsk = open_rebinding(&iface.name, iface.index, q)?;
                let mut xsks: XskMap<_> =
                    XskMap::try_from(ebpf.map_mut(maps::XSKS).context("XSKS map")?)?;
                xsks.set(iface.slot * MAX_QUEUES + q, xsk.fd(), 0)
                    .with_context(|| format!("registering the AF_XDP socket of {}", xsk.name))?;
                let g = &mut self.groups[gi];
                // A queue the interface did not have at the first start shares the last
                // queue's counters: the control socket sums the list it was given then.
                let stats = if (q as usize) < g.stats.len() {
                    g.stats[q as usize].clone()
                } else if had > 0 {
                    g.stats[had - 1].clone()
                } else {
                    let s = Arc::new(DaemonStats::default());
                    g.stats.push(s.clone());
                    self.stats.push(s.clone());
                    s
                };
                xsks_owned.push(xsk);
                stats_owned.push(stats);
            }
            let (stop, bt, nat) = (
                stop.clone(),
                self.ctx.batch_time.clone(),
                self.ctx.nat.clone(),
            );
            let rules = Rules {
                force_rport: self.ctx.force_rport.clone(),
                signer: crate::datapath::keys::Signer::new(self.ctx.tag_key.clone()),
                contact_alias: self.ctx.contact_alias,
            };
            let cpus = &self.ctx.placement.cpus;
            let cpu = (!cpus.is_empty()).then(|| cpus[(first + w) % cpus.len()]);
            let name = match owned.as_slice() {
                [q] => format!("rport-{}-q{q}", iface.name),
                _ => format!("rport-{}-w{w}", iface.name),
            };
            let label = name.clone();
            self.groups[gi]
                .handles
                .push(std::thread::Builder::new().name(name).spawn(move || {
                    if let Some(c) = cpu {
                        if let Err(e) = workers::pin_current(c) {
                            tracing::warn!("{label}: not pinned to CPU {c}: {e}");
                        }
                    }
                    workers::tune_current();
                    workers::run(
                        &mut xsks_owned,
                        &stats_owned,
                        &stop,
                        &bt,
                        &mut sender,
                        |i, frame, len, meta, sender, now| {
                            forward_frame(
                                frame,
                                len,
                                meta.as_ref(),
                                &rules,
                                sender,
                                &stats_owned[i],
                                &nat,
                                now,
                            )
                        },
                    )
                })?);
        }
        Ok(queues)
    }
}

/// Whether `a` is in the network (`net`, prefix length).
pub fn in_net(a: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// What a forwarding thread applies to every message: the `--force-rport` networks, the
/// signer of the steering tags, and whether Contacts get the client's tag (`--contact`).
pub struct Rules {
    pub force_rport: Vec<(IpAddr, u8)>,
    pub signer: crate::datapath::keys::Signer,
    pub contact_alias: bool,
}

/// Rewrites one frame in place and queues it on `sender`: a request's top Via (RFC 3581)
/// and, for a request or a client's 1xx/2xx, its Contacts (the client's steering tag in
/// each URI, `sip::contact`). Anything rport cannot rewrite is still a good packet: it
/// goes on unchanged, and is counted.
///
/// Under `--egress bypass` (`sender.bypassing()`) it leaves by AF_XDP TX where `meta`, the
/// XDP program's route lookup, allows it (egress.rs); else, and by default, the kernel's
/// way (re-injection), the reason counted.
#[allow(clippy::too_many_arguments)]
pub fn forward_frame<'f>(
    frame: &'f mut [u8],
    len: usize,
    meta: Option<&rport_common::EgressMeta>,
    rules: &Rules,
    sender: &mut Batch<'_, 'f>,
    stats: &DaemonStats,
    nat: &NatTracker,
    now: std::time::Instant,
) {
    let Ok(h) = inject::locate(&frame[..len.min(frame.len())]) else {
        DaemonStats::add(&stats.bad_frames, 1);
        crate::warn_limited!("a frame from the XDP program is not IP/UDP: dropped");
        return;
    };
    let src = inject::source(&h);
    let server = inject::destination(&h);
    let (p0, plen) = (h.payload as usize, h.payload_len as usize);
    // IPv6 is never fragmented on the way (only the client may): bound the rewrite so the
    // packet still fits the MTU, else it goes on unchanged (counted as no_room).
    let room_end = if h.ipv6 {
        (h.l3 as usize + sender.mtu()).min(frame.len())
    } else {
        frame.len()
    };
    let r = message::rewrite(
        &mut frame[p0..room_end.max(p0 + plen)],
        plen,
        (src, h.sport),
        (server, h.dport),
        rules,
        stats,
        now,
    );
    let (new_plen, tagged) = (r.len, r.tagged);
    let msg = &frame[p0..p0 + new_plen];
    // The rewrite found the Call-ID on its pass; otherwise it gets its own search.
    let cid = match r.call_id {
        Some(r) => Some(&msg[r]),
        None => crate::sip::rewrite::call_id(msg),
    };
    if let Some(cid) = cid {
        nat.observe(
            cid,
            std::net::SocketAddr::new(src, h.sport),
            now,
            tagged.then_some(server),
        )
        .count(stats);
    }
    let Ok(total) = inject::finish(frame, &h, new_plen) else {
        // A header that cannot hold the length.
        DaemonStats::add(&stats.bad_frames, 1);
        crate::warn_limited!(%src, "TTL exhausted or too long after the rewrite: dropped");
        return;
    };
    // Done writing: the frame stays queued, unchanged, until the batch is flushed.
    let frame: &'f [u8] = frame;
    let l3 = h.l3 as usize;
    if sender.bypassing() {
        match sender.bypass(meta, frame, l3, total, h.ipv6) {
            Ok(()) => return,
            Err(Fallback::NoNeigh) => DaemonStats::add(&stats.bypass_no_neigh, 1),
            Err(Fallback::Mtu) => DaemonStats::add(&stats.bypass_mtu, 1),
            Err(Fallback::Other) => DaemonStats::add(&stats.bypass_other, 1),
        }
    }
    match sender.push(&frame[..l3 + total], l3, h.ipv6) {
        Ok(0) => {}
        Ok(_) => DaemonStats::add(&stats.fragmented, 1),
        Err(Unsent::Full | Unsent::Fragments) => DaemonStats::add(&stats.unsent, 1),
    }
}

fn rx_queues(ifname: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .clamp(1, MAX_QUEUES)
}

fn tx_queues(ifname: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("tx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .clamp(1, MAX_QUEUES)
}

/// The AF_XDP TX sockets of every inside interface (`--egress bypass`). An interface
/// where none can be opened sends the kernel's way (`bypass_other`), said once.
/// [`XskQueue::open`], tried again for up to a second while the queue is busy: the kernel
/// lets go of a closed socket's queue in deferred work (xp_release_deferred), so the socket
/// of a thread just stopped (`start_iface` restarting a group on the same interface) may
/// hold it a moment after its close.
fn open_rebinding(ifname: &str, ifindex: u32, queue: u32) -> Result<XskQueue> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match XskQueue::open(ifname, ifindex, queue) {
            Err(e)
                if std::time::Instant::now() < end
                    && e.chain().any(|c| c.to_string().contains("busy")) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn open_egress(ifaces: &[Iface], stats: &DaemonStats) -> Arc<[EgressIface]> {
    let mut out = Vec::new();
    for i in ifaces.iter().filter(|i| i.role == role::INSIDE) {
        match EgressIface::open(&i.name, i.index, tx_queues(&i.name), mtu(&i.name)) {
            Ok(e) => {
                let n = tx_queues(&i.name) as u64;
                match e.mode {
                    Mode::ZeroCopy => DaemonStats::add(&stats.egress_tx_zerocopy, n),
                    Mode::Copy => DaemonStats::add(&stats.egress_tx_copy, n),
                }
                tracing::info!(
                    "egress bypass: AF_XDP TX on {} ({} queue(s), {} mode)",
                    i.name,
                    n,
                    match e.mode {
                        Mode::ZeroCopy => "zero-copy",
                        Mode::Copy => "copy",
                    }
                );
                out.push(e);
            }
            Err(e) => tracing::warn!(
                "egress bypass: no AF_XDP TX on {}: {e:#}; its requests go the kernel's way",
                i.name
            ),
        }
    }
    out.into()
}

fn mtu(ifname: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// Whether rewritten requests leave by AF_XDP TX (`--egress bypass`).
fn bypass(cfg: &LoadConfig) -> bool {
    cfg.egress == crate::datapath::loader::Egress::Bypass
}

/// Opens one AF_XDP socket per rx queue of every outside interface, registers it in the
/// XSKMAP and starts the threads (`placement`: `--workers`, `--cpus`). `_stop`: the daemon's stop flag; [`Workers::join`] stops
/// the threads (each group has a flag of its own, so one interface's can be restarted).
pub fn start(
    loaded: &mut Loaded,
    cfg: &LoadConfig,
    _stop: &Arc<AtomicBool>,
    batch_time: &prometheus::Histogram,
    nat: &Arc<NatTracker>,
    placement: &Placement,
) -> Result<Workers> {
    // The smallest inside MTU: where rewritten requests leave.
    let egress_mtu = loaded
        .ifaces
        .iter()
        .filter(|i| i.role == role::INSIDE)
        .map(|i| mtu(&i.name))
        .min()
        .unwrap_or(1500);
    let watch_stats = Arc::new(DaemonStats::default());
    let egress = bypass(cfg).then(|| open_egress(&loaded.ifaces, &watch_stats));
    let mut workers = Workers {
        stats: vec![watch_stats.clone()],
        watch_stats,
        groups: Vec::new(),
        ctx: Ctx {
            egress_mtu,
            batch_time: batch_time.clone(),
            force_rport: cfg.force_rport.clone(),
            contact_alias: cfg.contact_alias,
            tag_key: loaded.tag_key.clone(),
            nat: nat.clone(),
            egress,
            placement: placement.clone(),
        },
    };
    let outside: Vec<Iface> = loaded
        .ifaces
        .iter()
        .filter(|i| i.role == role::OUTSIDE)
        .cloned()
        .collect();
    for iface in &outside {
        workers.start_iface(&mut loaded.ebpf, iface)?;
    }
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::inject::tests::{frame4, frame4_with_options, idle_sender};

    fn rules() -> Rules {
        Rules {
            force_rport: Vec::new(),
            signer: crate::datapath::keys::Signer::new(crate::datapath::keys::CurrentKey::new(
                rport_common::tag::TagKey {
                    key: [7; 16],
                    valid: 1,
                    ..Default::default()
                },
            )),
            contact_alias: true,
        }
    }

    /// A message that cannot be sent is counted: every message handed over is either
    /// queued (`forwarded` after the flush) or in `unsent`. Before, one that needed more
    /// fragments than a batch holds was dropped and counted nowhere.
    #[test]
    fn a_message_that_cannot_be_sent_is_counted() {
        // 600 bytes: 75 fragments of 8 bytes, more than a batch holds (MAX_FRAGS).
        let msg = format!(
            "OPTIONS sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport\r\nCall-ID: c1\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "p".repeat(480)
        );
        let msg = msg.as_bytes();
        let (stats, nat, rules) = (DaemonStats::default(), NatTracker::default(), rules());
        let now = std::time::Instant::now();
        for (mut f, mtu, queued) in [
            // 60 bytes of IP header at the smallest IPv4 MTU: 8 bytes a fragment.
            (frame4_with_options(msg), 68, false),
            (frame4(msg), 1500, true),
        ] {
            let len = f.len();
            f.resize(4096, 0);
            let before = stats.load();
            let mut sender = idle_sender(mtu);
            let mut batch = sender.batch();
            forward_frame(&mut f, len, None, &rules, &mut batch, &stats, &nat, now);
            let after = stats.load();
            assert_eq!(after.rewritten - before.rewritten, 1);
            assert_eq!(after.unsent - before.unsent, !queued as u64, "MTU {mtu}");
        }
    }

    #[test]
    fn networks() {
        let n = ("203.0.113.0".parse().unwrap(), 24);
        assert!(in_net("203.0.113.77".parse().unwrap(), n));
        assert!(!in_net("203.0.114.1".parse().unwrap(), n));
        assert!(!in_net("2001:db8::1".parse().unwrap(), n));
        assert!(in_net(
            "192.0.2.1".parse().unwrap(),
            ("0.0.0.0".parse().unwrap(), 0)
        ));
        assert!(in_net(
            "2001:db8:1::5".parse().unwrap(),
            ("2001:db8:1::".parse().unwrap(), 48)
        ));
    }
}
