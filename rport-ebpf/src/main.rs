//! The XDP program: classify, find the top Via, record the binding, pick the verdict.
//!
//! Packet logic lives in the library (host-tested); this file is the glue to maps and
//! helpers. Every outcome bumps exactly the counters named in `rport_common::Counter`, and
//! every error maps to XDP_PASS in [`verdict_for`]: rport never drops what it does not
//! understand.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use core::ffi::c_void;

    use aya_ebpf::{
        bindings::{
            BPF_F_MARK_MANGLED_0, BPF_F_NO_PREALLOC, BPF_F_PSEUDO_HDR, TC_ACT_OK, xdp_action,
            xdp_md,
        },
        helpers::generated::{bpf_ktime_get_boot_ns, bpf_loop, bpf_xdp_adjust_meta},
        macros::{classifier, map, xdp},
        maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap, lpm_trie::Key},
        programs::{TcContext, XdpContext},
    };
    use aya_log_ebpf::{debug, warn};
    use rport_common::{
        Binding, Counter, IfaceConf, MAX_BINDINGS, MAX_IFACES, MAX_QUEUES, SCAN_WINDOW, SIP_PORT,
        SteerMeta, XSKMAP_SIZE, counters, flags, role,
    };
    use rport_ebpf::{
        csum,
        parse::{self, Headers, ParseError},
        pkt::{MAX_OFFSET, Packet},
        scan::{Scan, found},
    };

    #[map(name = "BINDINGS")]
    static BINDINGS: LruHashMap<u64, Binding> = LruHashMap::with_max_entries(MAX_BINDINGS, 0);
    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);
    /// One byte per UDP port, 1 for a SIP port. An array, not a hash: the verifier inlines
    /// array lookups into a bounds check and an add, where a hash lookup is a helper call
    /// and a hash computation, paid twice by every UDP packet (source and destination).
    #[map(name = "SIP_PORTS")]
    static SIP_PORTS: Array<u8> = Array::with_max_entries(65_536, 0);
    #[map(name = "IFACES")]
    static IFACES: HashMap<u32, IfaceConf> = HashMap::with_max_entries(MAX_IFACES, 0);
    #[map(name = "XSKS")]
    static XSKS: XskMap = XskMap::with_max_entries(XSKMAP_SIZE, 0);
    #[map(name = "FORCE_RPORT")]
    static FORCE_RPORT: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(256, BPF_F_NO_PREALLOC);

    /// Per-CPU working memory of one program run: the parsed headers and the scanner state.
    ///
    /// Why not the stack: the headers do not fit next to everything else in 512 bytes, and
    /// the scanner state must not either. The verifier tracks constants stored on the stack,
    /// so a state machine kept there has its fields known exactly at every `bpf_loop`
    /// iteration; branches on them get predicted, marked precise, and no two iterations
    /// look alike: the callback never converges ("sequence of 8193 jumps is too complex").
    /// Loads from a map value are unknown scalars, so the callback verifies once.
    #[repr(C)]
    pub struct Work {
        h: Headers,
        scan: Scan,
        /// Scan position in the payload: advanced by the callback, by 1 or up to 8 bytes,
        /// so it cannot be the `bpf_loop` index (and lives here for the same reason as
        /// the scanner state).
        pos: u64,
    }

    #[map(name = "SCRATCH")]
    static SCRATCH: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);

    /// The XDP context as a [`Packet`].
    struct Frame<'a>(&'a XdpContext);

    impl Packet for Frame<'_> {
        #[inline(always)]
        fn len(&self) -> usize {
            self.0.data_end() - self.0.data()
        }
        #[inline(always)]
        fn read<T: Copy>(&self, off: usize) -> Option<T> {
            // Bounding `off` first gives the verifier a finite range for the pointer below.
            if off > MAX_OFFSET {
                return None;
            }
            let start = self.0.data();
            if start + off + core::mem::size_of::<T>() > self.0.data_end() {
                return None;
            }
            // SAFETY: in bounds (checked above); unaligned because packet fields are.
            Some(unsafe { core::ptr::read_unaligned((start + off) as *const T) })
        }
    }

    impl Frame<'_> {
        /// Pointer to a `T` at `off`, bounds-checked.
        ///
        /// Safety contract: the caller writes through it before any helper call that can
        /// move packet data, and only writes plain bytes.
        #[inline(always)]
        fn ref_mut_at<T>(&self, off: usize) -> Option<*mut T> {
            if off > MAX_OFFSET {
                return None;
            }
            let start = self.0.data();
            if start + off + core::mem::size_of::<T>() > self.0.data_end() {
                return None;
            }
            Some((start + off) as *mut T)
        }
    }

    /// An offset read back from [`Headers`], masked to 12 bits. Parsing guarantees offsets
    /// far below 4096, so the mask changes nothing; it is there because the verifier knows
    /// nothing of a value loaded from a map, and the compiler may compare a copy of it
    /// instead of the register that then does the packet arithmetic.
    #[inline(always)]
    fn at(x: u16) -> usize {
        (x & 0x0fff) as usize
    }

    #[inline(always)]
    fn count(c: Counter) {
        if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
            // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
            unsafe { *p += 1 };
        }
    }

    /// SIP ports are what userspace put in SIP_PORTS (5060 unless told otherwise).
    #[inline(always)]
    fn is_sip_port(port: u16) -> bool {
        SIP_PORTS.get(port as u32).is_some_and(|v| *v != 0)
    }

    /// Everything that makes the program pass a frame without acting on it.
    #[derive(Clone, Copy)]
    enum Skip {
        Parse(ParseError),
        NotSip,
        Keepalive(Counter),
        NotSipOnSipPort,
    }

    /// One match from outcome to counter; the verdict is always XDP_PASS.
    #[inline(always)]
    fn verdict_for(s: Skip) -> u32 {
        count(match s {
            Skip::Parse(ParseError::NotUdp) | Skip::NotSip => Counter::NonSip,
            Skip::Parse(ParseError::Truncated) => Counter::Truncated,
            Skip::Parse(ParseError::LaterFragment | ParseError::Ipv6Fragment) => {
                Counter::IpFragment
            }
            Skip::Keepalive(c) => c,
            Skip::NotSipOnSipPort => Counter::NonSipOnSipPort,
        });
        xdp_action::XDP_PASS
    }

    #[xdp]
    pub fn rport(ctx: XdpContext) -> u32 {
        count(Counter::Packets);
        let f = Frame(&ctx);
        let Some(wp) = SCRATCH.get_ptr_mut(0) else {
            return xdp_action::XDP_PASS;
        };
        // SAFETY: per-CPU scratch slot, used by this program run only.
        let w = unsafe { &mut *wp };
        let h = &mut w.h;
        if let Err(e) = parse::parse(&f, h) {
            return verdict_for(Skip::Parse(e));
        }
        let to_sip = is_sip_port(h.dport);
        let from_sip = is_sip_port(h.sport);
        if !to_sip && !from_sip {
            return verdict_for(Skip::NotSip);
        }
        // First bytes of the payload decide what it is.
        let head: [u8; 8] = match f.read::<[u8; 8]>(at(h.payload)) {
            Some(b) if h.payload_len >= 8 => b,
            _ => return keepalive_or_other(&f, h),
        };
        let response = from_sip && &head == b"SIP/2.0 ";
        let request = !response && to_sip && head[0].is_ascii_uppercase();
        if !response && !request {
            return keepalive_or_other(&f, h);
        }
        if h.short {
            count(Counter::Truncated);
        }
        if h.first_fragment {
            count(Counter::IpFragment);
        }
        if h.ipv6 {
            count(Counter::Ipv6);
        }
        if h.vlan != 0 {
            count(Counter::Vlan);
        }
        count(if response {
            Counter::SipResponses
        } else {
            Counter::SipRequests
        });

        let n = if h.payload_len as u32 > SCAN_WINDOW {
            SCAN_WINDOW
        } else {
            h.payload_len as u32
        };
        w.scan = Scan::new();
        w.pos = 0;
        let mut lc = LoopCtx {
            xdp: ctx.ctx,
            work: wp,
            off: at(h.payload) as u32,
            n,
        };
        // SAFETY: the callback only reads through the context it is handed, bounds-checked.
        unsafe {
            bpf_loop(
                n,
                scan_step as *mut c_void,
                &mut lc as *mut LoopCtx as *mut c_void,
                0,
            );
        }
        // SAFETY: the same per-CPU slot; the loop is over.
        let w = unsafe { &mut *lc.work };
        let h = &w.h;
        let scan = &mut w.scan;
        scan.finish();
        if scan.found & found::VIA == 0 {
            count(
                if scan.found & found::HEADERS_END == 0 && h.payload_len as u32 > SCAN_WINDOW {
                    Counter::ViaBeyondWindow
                } else {
                    Counter::NoVia
                },
            );
            return xdp_action::XDP_PASS;
        }
        if scan.found & found::MALFORMED != 0 {
            count(Counter::MalformedVia);
            log_malformed(&ctx, h);
            return xdp_action::XDP_PASS;
        }
        let iface = unsafe { IFACES.get(&(ctx.ingress_ifindex() as u32)) }
            .copied()
            .unwrap_or(IfaceConf {
                slot: 0,
                role: role::OUTSIDE,
            });
        if response {
            on_response(&ctx, h, scan, &iface)
        } else {
            on_request(&ctx, h, scan, &iface)
        }
    }

    /// Keep-alives (RFC 5626 CRLF, four zero bytes, STUN) or something else on a SIP port.
    #[inline(never)]
    fn keepalive_or_other(f: &Frame, h: &Headers) -> u32 {
        let len = h.payload_len as usize;
        let pl = at(h.payload);
        let mut k = Skip::NotSipOnSipPort;
        if len == 2 {
            if let Some(b) = f.read::<[u8; 2]>(pl) {
                if b[0] == b'\r' && b[1] == b'\n' {
                    k = Skip::Keepalive(Counter::KeepaliveCrlf);
                }
            }
        } else if len == 4 {
            if let Some(b) = f.read::<[u8; 4]>(pl) {
                let w = u32::from_be_bytes(b);
                if w == 0x0d0a_0d0a {
                    k = Skip::Keepalive(Counter::KeepaliveCrlf);
                } else if w == 0 {
                    k = Skip::Keepalive(Counter::KeepaliveZero);
                }
            }
        } else if len >= 20 {
            if let Some(b) = f.read::<[u8; 4]>(pl + 4) {
                if u32::from_be_bytes(b) == 0x2112_a442 {
                    k = Skip::Keepalive(Counter::KeepaliveStun);
                }
            }
        }
        verdict_for(k)
    }

    /// State handed to the `bpf_loop` callback: the context to read bytes through, the
    /// per-CPU work slot (scanner and position), where the payload starts and how many of
    /// its bytes to scan.
    #[repr(C)]
    struct LoopCtx {
        xdp: *mut xdp_md,
        work: *mut Work,
        off: u32,
        n: u32,
    }

    /// One `bpf_loop` iteration: 8 bytes at once while the scanner skips a line (the
    /// start line, headers it does not read), else one scanner step. Returns 1 to stop.
    /// Same result as one step per byte: `Scan::run_chunked` is this loop on the host.
    #[inline(never)]
    unsafe extern "C" fn scan_step(_i: u64, lc: *mut c_void) -> i64 {
        // SAFETY: bpf_loop passes back the pointer to our stack LoopCtx.
        let lc = unsafe { &mut *(lc as *mut LoopCtx) };
        // SAFETY: points into this CPU's Work slot, alive for the whole program run.
        let w = unsafe { &mut *lc.work };
        let xdp = lc.xdp;
        // SAFETY: the context pointer the program was called with.
        let (data, end) = unsafe { ((*xdp).data as usize, (*xdp).data_end as usize) };
        let n = lc.n as u64;
        let pos = w.pos;
        if pos >= n {
            return 1;
        }
        // Both terms masked: the verifier sees a bounded offset (< 6144) on the very
        // register used below (`off` < 4096 and `pos` < SCAN_WINDOW < 2048 by construction).
        let base = lc.off as usize & 0x0fff;
        // The same dispatch as `Scan::run_chunked` (host-tested against byte steps).
        let off = base + (pos as usize & 0x07ff);
        if w.scan.skipping() && pos + 32 <= n {
            if data + off + 32 > end {
                return 1;
            }
            // SAFETY: in bounds (checked above); unaligned, as packet bytes are.
            let words = unsafe { core::ptr::read_unaligned((data + off) as *const [u64; 4]) };
            let words = words.map(u64::from_le);
            w.pos = pos + w.scan.skip_words(&words) as u64;
            return 0;
        }
        if w.scan.skipping() && pos + 8 <= n {
            if data + off + 8 > end {
                return 1;
            }
            // SAFETY: in bounds (checked above).
            let word = unsafe { core::ptr::read_unaligned((data + off) as *const u64) };
            w.pos = pos + w.scan.skip_word(u64::from_le(word)) as u64;
            return 0;
        }
        // Up to 8 scanner steps on one 8-byte load: the loop overhead and the bounds check
        // are paid once per word instead of once per byte.
        if pos + 8 <= n {
            if data + off + 8 > end {
                return 1;
            }
            // SAFETY: in bounds (checked above).
            let b = unsafe { core::ptr::read_unaligned((data + off) as *const [u8; 8]) };
            let (adv, go_on) = w.scan.step_word(&b);
            w.pos = pos + adv as u64;
            return if go_on { 0 } else { 1 };
        }
        // Every byte is read as the first of a 2-byte window (the last one as the second):
        // the compiler turns a 1-byte check `p + 1 > end` into `p >= end`, from which the
        // verifier learns no range, while `p + 2 > end` keeps a usable one.
        let shift = (pos + 1 == n) as usize;
        let off = base + ((pos as usize).wrapping_sub(shift) & 0x07ff);
        if data + off + 2 > end {
            return 1;
        }
        // SAFETY: in bounds (checked above).
        let b = unsafe { core::ptr::read_unaligned((data + off) as *const [u8; 2]) };
        let c = if shift == 1 { b[1] } else { b[0] };
        w.pos = pos + 1;
        if w.scan.step(c) { 0 } else { 1 }
    }

    // Not inlined: a frame of its own keeps each function under the 512-byte stack limit.
    #[inline(never)]
    fn on_request(ctx: &XdpContext, h: &Headers, scan: &Scan, iface: &IfaceConf) -> u32 {
        let mut fl = scan.flags & !(flags::SENT_BY_DIFFERS | flags::PORT_DIFFERS);
        if h.ipv6 {
            fl |= flags::IPV6;
        }
        if h.first_fragment {
            fl |= flags::FRAGMENT;
        }
        count(if fl & flags::RPORT_EMPTY != 0 {
            Counter::RportEmpty
        } else if fl & flags::RPORT_VALUE != 0 {
            Counter::RportWithValue
        } else {
            Counter::NoRport
        });
        if fl & flags::RECEIVED != 0 {
            count(Counter::ReceivedPresent);
        }
        let v4 = scan.sent_by_v4();
        let src_v4 = [h.src[12], h.src[13], h.src[14], h.src[15]];
        // An IPv6 literal sent-by is not compared here (text forms vary): userspace decides.
        let v6_literal = h.ipv6 && fl & flags::SENT_BY_V6 != 0;
        let differs = !v6_literal && (h.ipv6 || v4 != Some(src_v4));
        if differs {
            fl |= flags::SENT_BY_DIFFERS;
            count(Counter::SentByDiffers);
        }
        let sent_by_port = if scan.port == 0 {
            SIP_PORT
        } else {
            scan.port as u16
        };
        if sent_by_port != h.sport {
            fl |= flags::PORT_DIFFERS;
            count(Counter::SourcePortDiffers);
        }
        if fl & flags::SENT_BY_PRIVATE != 0 {
            count(Counter::SentByPrivate);
        }
        if fl & flags::SENT_BY_CGNAT != 0 {
            count(Counter::SentByCgnat);
        }
        if fl & flags::SENT_BY_NAME != 0 {
            count(Counter::SentByName);
        }
        if FORCE_RPORT.get(Key::new(128, h.src)).is_some() {
            fl |= flags::FORCE_RPORT;
            count(Counter::ForceRport);
        }
        if iface.role == role::INSIDE {
            // A server's request toward a client: not what rport rewrites.
            count(Counter::RequestFromInside);
            return xdp_action::XDP_PASS;
        }

        let key = scan.key();
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        let (first_seen, requests) = match unsafe { BINDINGS.get(&key) } {
            Some(old) => (old.first_seen_ns, old.requests.saturating_add(1)),
            None => (now, 0),
        };
        let b = Binding {
            src_addr: h.src,
            dst_addr: h.dst,
            first_seen_ns: first_seen,
            last_seen_ns: now,
            src_port: h.sport,
            dst_port: h.dport,
            sent_by_port,
            vlan: h.vlan,
            vlan_inner: h.vlan_inner,
            _pad: 0,
            ifindex: ctx.ingress_ifindex() as u32,
            flags: fl,
            requests: if requests == 0 { 1 } else { requests },
            sent_by_v4: v4.unwrap_or([0; 4]),
            _reserved: 0,
        };
        if BINDINGS.insert(&key, &b, 0).is_ok() {
            count(Counter::BindingRecorded);
            if requests == 0 {
                count(Counter::BindingNew);
            }
        } else {
            count(Counter::BindingUpdateFailed);
            warn!(
                ctx,
                "binding not recorded (map update failed), source port {}", h.sport
            );
        }

        let wants_rewrite = fl & (flags::RPORT_EMPTY | flags::RPORT_VALUE | flags::FORCE_RPORT)
            != 0
            || differs
            || v6_literal;
        if !wants_rewrite || h.first_fragment {
            // Nothing to add, or a fragment (the rewrite needs the whole datagram).
            count(Counter::RequestUnchanged);
            return xdp_action::XDP_PASS;
        }
        let q = ctx.rx_queue_index();
        if q >= MAX_QUEUES {
            count(Counter::UserspaceUnavailable);
            return xdp_action::XDP_PASS;
        }
        // XDP_PASS in the flags: with no socket at this index (daemon stopped or died) the
        // request goes on through the kernel unrewritten instead of being lost.
        match XSKS.redirect(iface.slot * MAX_QUEUES + q, xdp_action::XDP_PASS as u64) {
            Ok(v) => {
                count(Counter::ToUserspace);
                v
            }
            Err(v) => {
                count(Counter::UserspaceUnavailable);
                v
            }
        }
    }

    #[inline(never)]
    fn on_response(ctx: &XdpContext, h: &Headers, scan: &Scan, iface: &IfaceConf) -> u32 {
        let key = scan.key();
        // SAFETY: the value is copied out at once.
        let b = match unsafe { BINDINGS.get(&key) } {
            Some(b) => *b,
            None => {
                count(Counter::ResponseNoBinding);
                return xdp_action::XDP_PASS;
            }
        };
        if h.dst == b.src_addr && h.dport == b.src_port {
            count(Counter::ResponseAlreadyCorrect);
            return xdp_action::XDP_PASS;
        }
        // Anti-reflection: only a response that comes from the server the request went to,
        // on an inside interface, is ever sent to the recorded source.
        if iface.role != role::INSIDE {
            count(Counter::ResponseNotFromInside);
            debug!(
                ctx,
                "response on an outside interface not steered (anti-reflection)"
            );
            return xdp_action::XDP_PASS;
        }
        if h.src != b.dst_addr || h.sport != b.dst_port {
            count(Counter::ResponseSourceMismatch);
            debug!(
                ctx,
                "response from {:i}:{}, not the server the request went to: not steered",
                h.src,
                h.sport
            );
            return xdp_action::XDP_PASS;
        }
        if hand_to_tc(ctx, h, &b.src_addr, b.src_port) {
            count(Counter::ResponseSteered);
            debug!(ctx, "response steered to {:i}:{}", b.src_addr, b.src_port);
        } else if steer(&Frame(ctx), h, &b).is_some() {
            count(Counter::ResponseSteered);
            count(Counter::SteerInXdp);
        } else {
            count(Counter::Truncated);
        }
        xdp_action::XDP_PASS
    }

    /// Hands a steering decision to the TC program of this interface in the frame's XDP
    /// metadata (see `SteerMeta` for why TC applies it). False when the driver has no
    /// metadata room: the caller then steers in XDP.
    ///
    /// Invalidates every packet pointer taken before (bpf_xdp_adjust_meta moves data_meta).
    #[inline(always)]
    fn hand_to_tc(ctx: &XdpContext, h: &Headers, addr: &[u8; 16], port: u16) -> bool {
        const LEN: usize = core::mem::size_of::<SteerMeta>();
        // SAFETY: helper on this program's own context.
        if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(LEN as i32)) } != 0 {
            return false;
        }
        let (meta, data) = (ctx.metadata(), ctx.data());
        if meta + LEN > data {
            return false;
        }
        let m = SteerMeta {
            magic: SteerMeta::MAGIC,
            l3: h.l3,
            l4: h.l4,
            addr: *addr,
            port_be: port.to_be(),
            ipv6: h.ipv6 as u16,
        };
        // SAFETY: LEN bytes at `meta` are the metadata area (bounds-checked above).
        unsafe { core::ptr::write_unaligned(meta as *mut SteerMeta, m) };
        true
    }

    /// Applies the XDP program's steering decision (TC ingress of the same interfaces).
    ///
    /// `bpf_l4_csum_replace` knows the skb's checksum state: for a complete checksum it
    /// updates the field for the address (pseudo-header) and the port; for CHECKSUM_PARTIAL
    /// it updates the seed for the address only, and the kernel completes it over the new
    /// port later. Either way the checksum on the wire is right.
    #[classifier]
    pub fn rport_steer(ctx: TcContext) -> i32 {
        let skb = ctx.skb.skb;
        // SAFETY: the context the program was called with.
        let (meta, data) = unsafe { ((*skb).data_meta as usize, (*skb).data as usize) };
        if meta + core::mem::size_of::<SteerMeta>() > data {
            return TC_ACT_OK as i32;
        }
        // SAFETY: bounds-checked above.
        let m = unsafe { core::ptr::read_unaligned(meta as *const SteerMeta) };
        if m.magic != SteerMeta::MAGIC {
            return TC_ACT_OK as i32;
        }
        count(if apply_steer(&ctx, &m).is_ok() {
            Counter::SteerApplied
        } else {
            Counter::SteerFailed
        });
        TC_ACT_OK as i32
    }

    #[inline(always)]
    fn apply_steer(ctx: &TcContext, m: &SteerMeta) -> Result<(), i64> {
        let l3 = (m.l3 & 0x0fff) as usize;
        let l4 = (m.l4 & 0x0fff) as usize;
        let sum = l4 + 6;
        let addr_flags = (BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) as u64;
        if m.ipv6 != 0 {
            let old: [u32; 4] = ctx.load(l3 + 24)?;
            // SAFETY: [u8; 16] and [u32; 4] have the same size, any bits are valid.
            let new: [u32; 4] = unsafe { core::mem::transmute(m.addr) };
            for i in 0..4 {
                ctx.l4_csum_replace(sum, old[i] as u64, new[i] as u64, addr_flags | 4)?;
            }
            ctx.store(l3 + 24, &m.addr, 0)?;
        } else {
            let old: u32 = ctx.load(l3 + 16)?;
            let new = u32::from_ne_bytes([m.addr[12], m.addr[13], m.addr[14], m.addr[15]]);
            ctx.l4_csum_replace(sum, old as u64, new as u64, addr_flags | 4)?;
            ctx.l3_csum_replace(l3 + 10, old as u64, new as u64, 4)?;
            ctx.store(l3 + 16, &new, 0)?;
        }
        let old_port: u16 = ctx.load(l4 + 2)?;
        ctx.l4_csum_replace(
            sum,
            old_port as u64,
            m.port_be as u64,
            BPF_F_MARK_MANGLED_0 as u64 | 2,
        )?;
        ctx.store(l4 + 2, &m.port_be, 0)?;
        Ok(())
    }

    /// Debug events (aya-log): compiled in, but with the level below `debug` (the loader's
    /// default) the verifier sees them as dead code and they cost nothing per packet.
    #[inline(never)]
    fn log_malformed(ctx: &XdpContext, h: &Headers) {
        debug!(ctx, "malformed top Via from {:i}:{}", h.src, h.sport);
    }

    /// Rewrites the destination address and port to the binding's, patching the checksums;
    /// the kernel then routes the response to the client's NAT mapping (RFC 3581 §4).
    #[inline(always)]
    fn steer(f: &Frame, h: &Headers, b: &Binding) -> Option<()> {
        let dport = f.ref_mut_at::<[u8; 2]>(at(h.l4) + 2)?;
        let ucsum = f.ref_mut_at::<[u8; 2]>(at(h.l4) + 6)?;
        let new_port = b.src_port.to_be_bytes();
        // SAFETY: pointers bounds-checked by ref_mut_at; plain byte writes.
        unsafe {
            let old_port = *dport;
            let mut uc = u16::from_be_bytes(*ucsum);
            if h.ipv6 {
                let dst = f.ref_mut_at::<[u8; 16]>(at(h.l3) + 24)?;
                uc = csum::update_words(uc, &*dst, &b.src_addr);
                uc = csum::update_words(uc, &old_port, &new_port);
                *dst = b.src_addr;
            } else {
                let dst = f.ref_mut_at::<[u8; 4]>(at(h.l3) + 16)?;
                let ipc = f.ref_mut_at::<[u8; 2]>(at(h.l3) + 10)?;
                let new = [
                    b.src_addr[12],
                    b.src_addr[13],
                    b.src_addr[14],
                    b.src_addr[15],
                ];
                let c = csum::update_words(u16::from_be_bytes(*ipc), &*dst, &new);
                *ipc = c.to_be_bytes();
                if uc != 0 {
                    // 0 means "no checksum" for UDP over IPv4: leave it so.
                    uc = csum::update_words(uc, &*dst, &new);
                    uc = csum::update_words(uc, &old_port, &new_port);
                }
                *dst = new;
            }
            if uc == 0 && h.ipv6 {
                uc = 0xffff;
            }
            *dport = new_port;
            *ucsum = uc.to_be_bytes();
        }
        Some(())
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("rport-xdp is an eBPF program: build it for bpfel-unknown-none (cargo xtask build)");
}
