//! The XDP program: the glue between the kernel and the packet logic of the library.
//!
//! One frame, in order: [`parse::parse`], the SIP port lookups, [`decide::classify`] on
//! the first payload bytes, the top-Via scan (a `bpf_loop`: [`verifier::scan`]),
//! [`decide::decide`] with the map lookups it asks for, then [`apply`]: the one match from
//! the outcome to map writes, helpers, counters ([`decide::Outcome::counters`]) and
//! verdict. Every outcome but a redirect to the daemon is XDP_PASS: rport never drops
//! what it does not understand. `rport_ebpf::model` is this file on the host.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `asm!` on BPF: one unaligned packet load (`verifier::load64`).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{
            BPF_F_INGRESS, BPF_F_MARK_MANGLED_0, BPF_F_NO_PREALLOC, BPF_F_PSEUDO_HDR, TC_ACT_OK,
            xdp_action, xdp_md,
        },
        helpers::generated::{
            bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_ktime_get_tai_ns, bpf_redirect,
            bpf_xdp_adjust_meta,
        },
        macros::{classifier, map, xdp},
        maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap, lpm_trie::Key},
        programs::{TcContext, XdpContext},
    };
    use aya_log_ebpf::{debug, warn};
    use rport_common::{
        Binding, Counter, EgressMeta, IfaceConf, MAX_BINDINGS, MAX_IFACES, MAX_INJECT_SOCKETS,
        MAX_REINJECTED, REINJECT_WINDOW_NS, ReinjectKey, SteerMeta, XSKMAP_SIZE, counters,
    };
    use rport_ebpf::{
        csum,
        decide::{self, Counters, Done, Ingress, Lookups, Outcome, Then},
        fib::{self, Bypass, Fib},
        parse::{self, Headers},
        scan::Scan,
    };

    use verifier::{Frame, at};

    const _: () = assert!(
        decide::XDP_PASS == xdp_action::XDP_PASS
            && decide::XDP_REDIRECT == xdp_action::XDP_REDIRECT,
        "the host's verdict numbers are the kernel's"
    );

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
    /// Steering-tag keys and age limits (one value, index 0; `rport_common::tag`).
    #[map(name = "TAG_KEYS")]
    static TAG_KEYS: Array<rport_common::tag::TagKeys> = Array::with_max_entries(1, 0);
    #[map(name = "FORCE_RPORT")]
    static FORCE_RPORT: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(256, BPF_F_NO_PREALLOC);
    /// `SO_COOKIE` of each AF_PACKET socket the daemon sends rewritten frames on (value
    /// unused): how [`rport_reinject`] knows rport's own frames from any other.
    #[map(name = "INJECT_SOCKETS")]
    static INJECT_SOCKETS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_INJECT_SOCKETS, 0);
    /// Frames [`rport_reinject`] turned back into received ones, with when: generic XDP
    /// runs on them again (native XDP does not), and passes them by this ([`reinjected`]).
    #[map(name = "REINJECTED")]
    static REINJECTED: LruHashMap<ReinjectKey, u64> =
        LruHashMap::with_max_entries(MAX_REINJECTED, 0);
    /// The TC program's parsed headers (not on its stack, as the XDP program's).
    #[map(name = "REINJECT_SCRATCH")]
    static REINJECT_SCRATCH: PerCpuArray<Headers> = PerCpuArray::with_max_entries(1, 0);

    #[xdp]
    pub fn rport(ctx: XdpContext) -> u32 {
        // A datagram to and from no SIP port: its ports decide it, before the scratch slot
        // and the full parse. The same outcome as `parse` + `classify` give it.
        if not_sip_counted(ctx.ctx) {
            return xdp_action::XDP_PASS;
        }
        frame(ctx.ctx)
    }

    /// [`not_sip`], and the counts of such a datagram: true when it is one (its verdict
    /// is XDP_PASS).
    ///
    /// Not inlined: the SIP_PORTS and counter lookups need a key on the stack, and any
    /// stack in [`rport`] adds to every call chain below [`frame`], whose deepest (the tag
    /// check's SipHash) is at the verifier's 512-byte limit without it.
    #[inline(never)]
    fn not_sip_counted(raw: *mut aya_ebpf::bindings::xdp_md) -> bool {
        // A volatile read of the context keeps it one argument: LLVM would otherwise pass
        // `data` and `data_end` instead (argument promotion), and the verifier refuses
        // the arithmetic its u32-to-pointer widening does on `data_end` ("pointer
        // arithmetic on pkt_end prohibited").
        // SAFETY: the context the program was called with.
        let _ = unsafe { core::ptr::read_volatile(&(*raw).ingress_ifindex) };
        let ctx = XdpContext::new(raw);
        if !not_sip(&ctx) {
            return false;
        }
        count_known(Outcome::NotSip.counters(Done::default()).bits());
        true
    }

    /// Everything after [`not_sip`]: the parse, the scan, the decision.
    ///
    /// Not inlined: in one function with the port check, the compiler keeps what it read
    /// on the stack, the verifier carries those slots into every state of the scan's
    /// callback, and it no longer verifies within the 1M-instruction limit.
    #[inline(never)]
    fn frame(raw: *mut aya_ebpf::bindings::xdp_md) -> u32 {
        let ctx = XdpContext::new(raw);
        let Some(wp) = verifier::work() else {
            // Never: the slot exists from load on (the verifier wants the check).
            count(Counter::Packets as u32);
            return xdp_action::XDP_PASS;
        };
        // SAFETY: this CPU's scratch slot, used by this program run only.
        let w = unsafe { &mut *wp };
        let f = Frame(&ctx);
        if let Err(e) = parse::parse(&f, &mut w.h) {
            return apply(&ctx, wp, Outcome::Parse(e), BEFORE_SCAN);
        }
        let h = &w.h;
        let (to_sip, from_sip) = (is_sip_port(h.dport), is_sip_port(h.sport));
        let msg = match decide::classify(&f, h, at(h.payload), to_sip, from_sip) {
            Ok(m) => m,
            Err(o) => return apply(&ctx, wp, o, BEFORE_SCAN),
        };
        let ifindex = ctx.ingress_ifindex() as u32;
        // SAFETY: the value is copied out at once. Not kept as an Option: its payload is
        // undefined when None, and LLVM may then store a register the verifier knows
        // was never written ("R1 !read_ok").
        let maps = Maps {
            iface: unsafe { IFACES.get(&ifindex) }
                .copied()
                .unwrap_or(decide::UNKNOWN_IFACE),
        };
        if maps.iface.role == rport_common::role::OUTSIDE && may_be_generic() && reinjected(&ctx, h)
        {
            // The daemon's own output, back through generic XDP: the kernel has it next.
            // Counted as that alone (its first pass counted the rest).
            count(Counter::Packets as u32);
            count(Counter::Reinjected as u32);
            return xdp_action::XDP_PASS;
        }
        verifier::scan(&ctx, wp, decide::look(&msg, Some(maps.iface)));
        // SAFETY: the same per-CPU slot; the loop is over.
        let w = unsafe { &*wp };
        let ingress = Ingress {
            ifindex,
            rx_queue: ctx.rx_queue_index(),
        };
        let out = decide::decide(msg, &w.h, &w.scan, ingress, &maps);
        apply(&ctx, wp, out, AFTER_SCAN)
    }

    /// XDP_PASS, nothing else: for the peer of a veth that [`rport`] redirects into (with
    /// `--egress bypass`). veth transmits a redirected frame only when its peer runs an
    /// XDP program.
    #[xdp]
    pub fn rport_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// A bare XDP router, for the ceiling row of `bench gateways` (never attached by
    /// `rport run`): Ethernet, untagged IPv4 or IPv6, the route and neighbour from
    /// `bpf_fib_lookup`, the TTL or hop limit decremented, the next hop's MACs, and
    /// `bpf_redirect` out of the egress interface. No SIP work, no checks of rport's:
    /// what this path costs when nothing else is done. Anything else (ARP, VLAN tags, a
    /// TTL expiring, no neighbour yet, no route) is the kernel's (XDP_PASS).
    #[xdp]
    pub fn rport_fwd(ctx: XdpContext) -> u32 {
        use rport_ebpf::pkt::Packet as _;
        let f = Frame(&ctx);
        let Some(et) = f.read::<[u8; 2]>(12) else {
            return xdp_action::XDP_PASS;
        };
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        let (ipv6, tos_flowinfo, tot_len) = match et {
            [0x08, 0x00] => {
                let Some(ip) = f.read::<[u8; 20]>(14) else {
                    return xdp_action::XDP_PASS;
                };
                src[12..].copy_from_slice(&ip[12..16]);
                dst[12..].copy_from_slice(&ip[16..20]);
                (false, ip[1] as u32, u16::from_be_bytes([ip[2], ip[3]]))
            }
            [0x86, 0xdd] => {
                let Some(ip) = f.read::<[u8; 40]>(14) else {
                    return xdp_action::XDP_PASS;
                };
                src.copy_from_slice(&ip[8..24]);
                dst.copy_from_slice(&ip[24..40]);
                let len = u16::from_be_bytes([ip[4], ip[5]]).saturating_add(40);
                (true, fib::flowinfo([ip[0], ip[1], ip[2], ip[3]]), len)
            }
            _ => return xdp_action::XDP_PASS,
        };
        let mut p = fib::FibParams::default();
        p.set(&fib::Query {
            ifindex: ctx.ingress_ifindex() as u32,
            ipv6,
            src: &src,
            dst: &dst,
            sport: 0,
            dport: 0,
            tos_flowinfo,
            tot_len,
        });
        // SAFETY: the program's own context.
        let r = unsafe { fib::lookup(ctx.ctx as *mut core::ffi::c_void, &mut p) };
        let expires = fib::expires(&f, 14, ipv6).unwrap_or(true);
        let Ok((ifindex, smac, dmac)) = fib::next_hop(r, false, true, expires) else {
            return xdp_action::XDP_PASS;
        };
        if fib::to_next_hop(&mut Frame(&ctx), 14, ipv6, &smac, &dmac).is_none() {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(ifindex, 0) as u32 }
    }

    /// A datagram to and from no SIP port, by [`parse::udp_ports`].
    #[inline(always)]
    fn not_sip(ctx: &XdpContext) -> bool {
        match parse::udp_ports(&Frame(ctx)) {
            Some((sport, dport)) => !is_sip_port(dport) && !is_sip_port(sport),
            None => false,
        }
    }

    /// Outcomes decided before the scan: their counter sets are few and known to the
    /// compiler, which turns them into direct counts.
    const BEFORE_SCAN: bool = false;
    /// After it: the set is built at run time, and goes through [`verifier::forget`]
    /// before it is counted.
    const AFTER_SCAN: bool = true;

    /// The one match: from an outcome to the map write, redirect or rewrite it asks for
    /// (and its log line), then its counters and the verdict.
    #[inline(always)]
    fn apply(ctx: &XdpContext, wp: *mut verifier::Work, out: Outcome, scanned: bool) -> u32 {
        // SAFETY: this CPU's scratch slot; nothing else borrows it now.
        let h = unsafe { &(*wp).h };
        let mut done = Done::default();
        let verdict = match out {
            Outcome::Record {
                key, binding, then, ..
            } => {
                done.stored = BINDINGS.insert(&key, &binding, 0).is_ok();
                if !done.stored {
                    warn!(
                        ctx,
                        "binding not recorded (map update failed), source port {}", h.sport
                    );
                }
                if egress_bypass() && matches!(then, Then::ToUserspace(_)) {
                    egress_meta(ctx, wp);
                }
                to_daemon(then, &mut done)
            }
            Outcome::ResponseContact { then, .. } => {
                if egress_bypass() && matches!(then, Then::ToUserspace(_)) {
                    egress_meta(ctx, wp);
                }
                to_daemon(then, &mut done)
            }
            Outcome::Steer { addr, port, .. } => {
                // `--egress bypass`: a next hop to redirect to, or why not.
                let forward = egress_bypass() && {
                    let r = steer_lookup(ctx.ctx, wp, &addr, port);
                    done.bypass = if r == bypass::NO_NEIGHBOUR {
                        Bypass::NoNeighbour
                    } else {
                        Bypass::Fallback
                    };
                    r == bypass::FORWARD
                };
                if !forward && hand_to_tc(ctx, h, &addr, port) {
                    done.delivered = true;
                } else {
                    // No metadata room (driver), or out by redirect: steer here, as a
                    // complete checksum.
                    let mut f = Frame(ctx);
                    done.delivered =
                        csum::steer(&mut f, at(h.l3), at(h.l4), h.ipv6, &addr, port).is_some();
                    done.in_xdp = done.delivered;
                }
                let mut verdict = xdp_action::XDP_PASS;
                if forward && done.delivered && to_next_hop(ctx.ctx, wp) {
                    // SAFETY: this CPU's slot; the lookup left the egress there.
                    let ifindex = unsafe { (*wp).fib.ifindex };
                    done.bypass = Bypass::Redirected(ifindex);
                    done.in_xdp = false;
                    // SAFETY: plain helper call.
                    verdict = unsafe { bpf_redirect(ifindex, 0) } as u32;
                }
                if done.delivered {
                    debug!(ctx, "steered to {:i}:{}", addr, port);
                }
                verdict
            }
            Outcome::MalformedVia(_) => {
                log_malformed(ctx, h);
                xdp_action::XDP_PASS
            }
            Outcome::ResponseNotFromInside { .. } => {
                debug!(
                    ctx,
                    "response on an outside interface not steered (anti-reflection)"
                );
                xdp_action::XDP_PASS
            }
            Outcome::ResponseSourceMismatch(_) => {
                debug!(
                    ctx,
                    "response from {:i}:{}, not the server the request went to: not steered",
                    h.src,
                    h.sport
                );
                xdp_action::XDP_PASS
            }
            Outcome::Parse(_)
            | Outcome::NotSip
            | Outcome::Keepalive(_)
            | Outcome::NotSipOnSipPort
            | Outcome::NoVia(_)
            | Outcome::ViaBeyondWindow(_)
            | Outcome::RequestFromInside { .. }
            | Outcome::RequestAlreadyCorrect(_)
            | Outcome::ResponseNoBinding(_)
            | Outcome::TagInvalid(_)
            | Outcome::TagExpired(_)
            | Outcome::ResponseAlreadyCorrect { .. } => xdp_action::XDP_PASS,
        };
        let cs = out.counters(done);
        if scanned {
            count_all(verifier::forget(wp, cs));
        } else {
            count_known(cs.bits());
        }
        verdict
    }

    /// What [`steer_lookup`] found.
    mod bypass {
        /// A next hop to redirect to (in `Work::fib`).
        pub const FORWARD: u32 = 0;
        /// The next hop's neighbour is not resolved.
        pub const NO_NEIGHBOUR: u32 = 1;
        /// Another reason to leave it to the kernel (`fib::next_hop`).
        pub const FALLBACK: u32 = 2;
    }

    /// `--egress bypass` for a steered frame: the route and neighbour for its new
    /// destination (`bpf_fib_lookup` from the ingress interface, the parameters and the
    /// answer in `Work::fib`), and whether they allow a redirect ([`fib::next_hop`]).
    /// Nothing written to the frame: `apply` then steers it (the same rewrite as without
    /// metadata room) and [`to_next_hop`] readies it for the redirect.
    ///
    /// In a frame of its own (a BPF-to-BPF call), as is [`to_next_hop`]: the stack of
    /// `apply`'s caller leaves about 100 bytes for a callee.
    #[inline(never)]
    fn steer_lookup(xdp: *mut xdp_md, wp: *mut verifier::Work, addr: &[u8; 16], port: u16) -> u32 {
        let ctx = XdpContext::new(xdp);
        // SAFETY: this CPU's scratch slot; nothing else borrows it now.
        let w = unsafe { &mut *wp };
        let l3 = at(w.h.l3);
        let ifindex = ctx.ingress_ifindex() as u32;
        let Some(q) = fib::steer_query(&Frame(&ctx), l3, &w.h, ifindex, addr, port) else {
            return bypass::FALLBACK;
        };
        w.fib.set(&q);
        // SAFETY: the program's own context.
        let r = unsafe { fib::lookup(xdp as *mut core::ffi::c_void, &mut w.fib) };
        let known = match r {
            // SAFETY: only tested for presence.
            Fib::Forward { ifindex, .. } => unsafe { IFACES.get(&ifindex) }.is_some(),
            Fib::Pass(_) => false,
        };
        let expires = fib::expires(&Frame(&ctx), l3, w.h.ipv6).unwrap_or(true);
        let vlan = w.h.vlan != 0 || w.h.vlan_inner != 0;
        match fib::next_hop(r, vlan, known, expires) {
            Ok(_) => bypass::FORWARD,
            Err(Bypass::NoNeighbour) => bypass::NO_NEIGHBOUR,
            Err(_) => bypass::FALLBACK,
        }
    }

    /// The TTL decrement and the next hop's MACs (from `Work::fib`, after
    /// [`steer_lookup`] found it) on the steered frame. False: not in the frame (never:
    /// the lookup checked the TTL and the parser the headers).
    #[inline(never)]
    fn to_next_hop(xdp: *mut xdp_md, wp: *mut verifier::Work) -> bool {
        let ctx = XdpContext::new(xdp);
        // SAFETY: this CPU's scratch slot; nothing else borrows it now.
        let w = unsafe { &*wp };
        let mut f = Frame(&ctx);
        fib::to_next_hop(&mut f, at(w.h.l3), w.h.ipv6, &w.fib.smac, &w.fib.dmac).is_some()
    }

    /// The redirect of a message the daemon rewrites. XDP_PASS in the flags: with no
    /// socket at this index (daemon stopped or died) the message goes on through the
    /// kernel unrewritten instead of being lost.
    #[inline(always)]
    fn to_daemon(then: Then, done: &mut Done) -> u32 {
        match then {
            Then::ToUserspace(index) => match XSKS.redirect(index, xdp_action::XDP_PASS as u64) {
                Ok(v) => {
                    done.delivered = true;
                    v
                }
                Err(v) => v,
            },
            Then::Pass | Then::QueueOutOfRange => xdp_action::XDP_PASS,
        }
    }

    /// Set by the loader (1) unless the program is attached in native or offload mode:
    /// then the kernel may run it as generic XDP, which sees re-injected frames again.
    #[unsafe(no_mangle)]
    static RPORT_MAY_BE_GENERIC: u8 = 1;

    #[inline(always)]
    fn may_be_generic() -> bool {
        // SAFETY: a global the loader fills in; volatile, so the compiler keeps the read.
        unsafe { core::ptr::read_volatile(&RPORT_MAY_BE_GENERIC) != 0 }
    }

    /// Set by the loader (1) for `rport run --egress bypass`: steered responses leave by
    /// `bpf_fib_lookup` + `bpf_redirect`, past the kernel's forwarding (netfilter's
    /// forward and postrouting chains, conntrack). 0, the default: the kernel forwards.
    #[unsafe(no_mangle)]
    static RPORT_EGRESS_BYPASS: u8 = 0;

    #[inline(always)]
    fn egress_bypass() -> bool {
        // SAFETY: a global the loader fills in; volatile, so the compiler keeps the read.
        unsafe { core::ptr::read_volatile(&RPORT_EGRESS_BYPASS) != 0 }
    }

    /// Whether this frame is one [`rport_reinject`] just gave back to the kernel (generic
    /// XDP only: native XDP does not run on redirected skbs). The entry is used up: one
    /// re-injection lets one frame by.
    ///
    /// Why a map and not a mark: generic XDP sees no skb field but the interface and the
    /// rx queue, and nothing in the frame is beyond an attacker's reach. The key holds the
    /// UDP checksum over the whole rewritten datagram, and the entry lives
    /// [`REINJECT_WINDOW_NS`]: another datagram would have to collide with a frame rport
    /// made a moment ago.
    #[inline(always)]
    fn reinjected(ctx: &XdpContext, h: &Headers) -> bool {
        let Some(len_csum) = rport_ebpf::pkt::Packet::read::<[u8; 4]>(&Frame(ctx), at(h.l4) + 4)
        else {
            return false;
        };
        let key = h.reinject_key(len_csum);
        // SAFETY: the value is copied out at once.
        let Some(t) = (unsafe { REINJECTED.get(&key) }).copied() else {
            return false;
        };
        let _ = REINJECTED.remove(&key);
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        now.wrapping_sub(t) <= REINJECT_WINDOW_NS
    }

    /// Bumps each counter of the set (bit `i`: slot `i`), one iteration per counter set,
    /// lowest first: a loop over every bit up to the highest one set costs three times as
    /// much for a SIP message.
    #[inline(always)]
    fn count_all(mut m: u64) {
        let mut n = 0;
        while n < counters::COUNT && m != 0 {
            count(Counters::lowest_slot(m));
            m &= m - 1;
            n += 1;
        }
    }

    /// [`count_all`] for a set the compiler knows (a few constants): one test per slot,
    /// which it folds into direct counts.
    ///
    /// Written out rather than a loop over the slots, which the compiler keeps as a loop.
    #[inline(always)]
    fn count_known(m: u64) {
        macro_rules! slots {
            ($($i:literal)*) => {$(
                if m & (1 << $i) != 0 {
                    count($i);
                }
            )*};
        }
        slots!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28
            29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53);
    }
    const _: () = assert!(
        counters::COUNT == 54,
        "count_known: one test per counter slot"
    );

    #[inline(always)]
    fn count(slot: u32) {
        if let Some(p) = COUNTERS.get_ptr_mut(slot) {
            // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
            unsafe { *p += 1 };
        }
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

    /// `--egress bypass` for a message handed to the daemon: the route and neighbour
    /// toward its destination ([`request_route`]) in the frame's metadata as an
    /// [`EgressMeta`], which AF_XDP copies in front of the frame; the daemon sends it out
    /// itself when the status allows (userspace datapath/egress.rs). No metadata room
    /// (driver): none written, and the daemon sends it the kernel's way.
    ///
    /// Invalidates every packet pointer taken before (bpf_xdp_adjust_meta moves data_meta).
    #[inline(always)]
    fn egress_meta(ctx: &XdpContext, wp: *mut verifier::Work) {
        const LEN: usize = core::mem::size_of::<EgressMeta>();
        let status = request_route(ctx.ctx, wp);
        // SAFETY: helper on this program's own context.
        if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(LEN as i32)) } != 0 {
            return;
        }
        let (meta, data) = (ctx.metadata(), ctx.data());
        if meta + LEN > data {
            return;
        }
        // SAFETY: this CPU's slot, its lookup filled by `request_route` just now.
        let p = unsafe { &(*wp).fib };
        let m = EgressMeta {
            magic: EgressMeta::MAGIC,
            ifindex: p.ifindex,
            dmac: p.dmac,
            smac: p.smac,
            status,
            _pad: 0,
        };
        // SAFETY: LEN bytes at `meta` are the metadata area (bounds-checked above).
        unsafe { core::ptr::write_unaligned(meta as *mut EgressMeta, m) };
    }

    /// The lookup for [`egress_meta`]: `bpf_fib_lookup` from the ingress interface for
    /// the request as it arrived (`rport_ebpf::egress`), the parameters and the answer in
    /// `Work::fib` (a request is never steered: the slot is free), its status returned.
    /// Its own frame (a BPF-to-BPF call), so that the lookup's paths stay out of `apply`'s.
    #[inline(never)]
    fn request_route(xdp: *mut xdp_md, wp: *mut verifier::Work) -> u16 {
        let ctx = XdpContext::new(xdp);
        // SAFETY: this CPU's scratch slot; nothing else borrows it now. Two fields apart.
        let (h, p) = unsafe { (&(*wp).h, &mut (*wp).fib) };
        let ifindex = ctx.ingress_ifindex() as u32;
        let Some(q) = rport_ebpf::egress::request_query(&Frame(&ctx), at(h.l3), h, ifindex) else {
            *p = fib::FibParams::default();
            return rport_common::egress_status::OTHER;
        };
        p.set(&q);
        // SAFETY: the program's own context.
        let r = unsafe { fib::lookup(xdp as *mut core::ffi::c_void, p) };
        rport_ebpf::egress::status(r, h)
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
            Counter::SteerApplied as u32
        } else {
            Counter::SteerFailed as u32
        });
        TC_ACT_OK as i32
    }

    /// Turns the daemon's rewritten frames back into received ones (TC egress of every
    /// interface rport is attached to): the daemon writes each one, whole, on an AF_PACKET
    /// socket bound to the interface it arrived on, and this redirects it to that
    /// interface's ingress. The kernel then does for it everything it does for a
    /// forwarded packet: PREROUTING, routing and reverse-path filtering on the real input
    /// interface, the FORWARD chain with its real `iifname` and source, conntrack and NAT,
    /// TTL, neighbours, POSTROUTING. So rport never forwards what the gateway would drop.
    ///
    /// Recognised by socket cookie, not by `skb->mark`: a forwarded skb has no socket (the
    /// cookie is 0: one helper call and out), a local sender's socket is not in
    /// [`INJECT_SOCKETS`], and nothing outside the daemon can send from its sockets. A mark
    /// is anyone's to set (another program, an `nft meta mark set` rule, SO_MARK) and would
    /// have to be cleared before the frame re-enters the stack, where the operator's rules
    /// may match marks of their own.
    #[classifier]
    pub fn rport_reinject(ctx: TcContext) -> i32 {
        let skb = ctx.skb.skb;
        // SAFETY: helper on this program's own context.
        let cookie = unsafe { bpf_get_socket_cookie(skb as *mut core::ffi::c_void) };
        if cookie == 0 {
            return TC_ACT_OK as i32;
        }
        // SAFETY: the value is only tested for presence.
        if unsafe { INJECT_SOCKETS.get(&cookie) }.is_none() {
            return TC_ACT_OK as i32;
        }
        remember(&ctx);
        // SAFETY: the context the program was called with.
        let ifindex = unsafe { (*skb).ifindex };
        // The interface it is leaving is the one the daemon bound the socket to: the one
        // the request arrived on. Redirected to its ingress, it is PACKET_HOST (the frame
        // keeps its destination MAC, this interface's own). Native XDP does not run on it;
        // generic XDP does (the kernel marks no bpf_redirect as a re-injection), and
        // passes it by its entry in REINJECTED, so it is never handed to the daemon twice.
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(ifindex, BPF_F_INGRESS as u64) as i32 }
    }

    /// Notes a re-injected UDP frame in [`REINJECTED`] for generic XDP ([`reinjected`]).
    /// A first fragment is never handed to the daemon, later ones are not UDP: only whole
    /// datagrams are noted.
    #[inline(always)]
    fn remember(ctx: &TcContext) {
        let Some(hp) = REINJECT_SCRATCH.get_ptr_mut(0) else {
            return;
        };
        // SAFETY: this CPU's slot, used by this program run only.
        let h = unsafe { &mut *hp };
        if parse::parse(&Skb(ctx), h).is_err() || h.first_fragment || h.short {
            return;
        }
        let Ok(len_csum) = ctx.load::<[u8; 4]>((h.l4 & 0x0fff) as usize + 4) else {
            return;
        };
        let key = h.reinject_key(len_csum);
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        let _ = REINJECTED.insert(&key, &now, 0);
    }

    /// The skb as a [`rport_ebpf::pkt::Packet`] (bytes through `bpf_skb_load_bytes`, which
    /// does its own bounds checks).
    struct Skb<'a>(&'a TcContext);

    impl rport_ebpf::pkt::Packet for Skb<'_> {
        #[inline(always)]
        fn len(&self) -> usize {
            self.0.len() as usize
        }
        #[inline(always)]
        fn read<T: rport_ebpf::pkt::Plain>(&self, off: usize) -> Option<T> {
            self.0.load::<T>(off).ok()
        }
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

    /// SIP ports are what userspace put in SIP_PORTS (5060 unless told otherwise).
    #[inline(always)]
    fn is_sip_port(port: u16) -> bool {
        SIP_PORTS.get(port as u32).is_some_and(|v| *v != 0)
    }

    /// The decision's map reads, from the program's maps. The interface's entry is read
    /// once, before the scan (which it shapes: `decide::look`).
    struct Maps {
        iface: IfaceConf,
    }

    impl Lookups for Maps {
        #[inline(always)]
        fn iface(&self) -> Option<IfaceConf> {
            Some(self.iface)
        }
        #[inline(always)]
        fn force_rport(&self, src: &[u8; 16]) -> bool {
            FORCE_RPORT.get(Key::new(128, *src)).is_some()
        }
        #[inline(always)]
        fn binding(&self, key: u64) -> Option<&Binding> {
            // SAFETY: a map value, valid for the whole program run (RCU); the decision
            // reads the fields it needs at once.
            unsafe { BINDINGS.get(&key) }
        }
        #[inline(always)]
        fn now(&self) -> u64 {
            // SAFETY: helper without arguments.
            unsafe { bpf_ktime_get_boot_ns() }
        }
        #[inline(always)]
        fn tag(&self, _h: &Headers, _scan: &Scan) -> decide::TagResult {
            let Some(w) = verifier::work() else {
                return decide::TagResult::Invalid;
            };
            let code = check_tag(w);
            // SAFETY: this CPU's slot, written by check_tag just now.
            decide::tag_result(code, unsafe { &(*w).tag })
        }
    }

    /// [`decide::check_tag`] on this CPU's work slot, in a frame of its own: the decode
    /// and SipHash need stack that the response path cannot spare (512 bytes in all).
    #[inline(never)]
    fn check_tag(w: *mut verifier::Work) -> u32 {
        let Some(keys) = TAG_KEYS.get(0) else {
            return 1;
        };
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_tai_ns() } / 1_000_000_000;
        // SAFETY: this CPU's slot; the scan is over, nothing else borrows it.
        let w = unsafe { &mut *w };
        decide::check_tag(keys, &w.h, &w.scan, now, &mut w.tag)
    }

    /// Debug events (aya-log): compiled in, but with the level below `debug` (the loader's
    /// default) the verifier sees them as dead code and they cost nothing per packet.
    #[inline(never)]
    fn log_malformed(ctx: &XdpContext, h: &Headers) {
        debug!(ctx, "malformed top Via from {:i}:{}", h.src, h.sport);
    }

    /// What the verifier needs that the packet logic does not: every workaround in one
    /// place, each with its reason.
    ///
    /// - The parsed headers and the scanner state live in a per-CPU map value ([`Work`],
    ///   [`SCRATCH`]), not on the stack.
    /// - The scan is one `bpf_loop` callback ([`scan_step`]) over a context on the stack
    ///   ([`LoopCtx`]), its position kept in [`Work`] too.
    /// - Every packet access checks `data + off + size <= data_end` on the very pointer
    ///   it uses, after bounding `off` by [`MAX_OFFSET`] ([`Frame`]); writes take a whole
    ///   header at once (`PacketMut::bytes_mut`).
    /// - Offsets read back from [`Headers`] are masked ([`at`]) before packet arithmetic.
    /// - The counter set of an outcome goes through the same slot ([`forget`]).
    mod verifier {
        use core::ffi::c_void;

        use aya_ebpf::{
            bindings::xdp_md, helpers::generated::bpf_loop, macros::map, maps::PerCpuArray,
            programs::XdpContext,
        };
        use rport_common::SCAN_WINDOW;
        use rport_ebpf::{
            decide::Counters,
            parse::Headers,
            pkt::{MAX_OFFSET, Packet, PacketMut, Plain},
            scan::Scan,
        };

        /// The XDP context as a [`Packet`] (and a [`PacketMut`]).
        pub struct Frame<'a>(pub &'a XdpContext);

        impl Frame<'_> {
            /// Address of `size` bytes at `off`, if they are in the frame.
            ///
            /// Bounding `off` first gives the verifier a finite range for the pointer; then
            /// the `data + off + size <= data_end` check it needs before every access.
            #[inline(always)]
            fn span(&self, off: usize, size: usize) -> Option<usize> {
                if off > MAX_OFFSET {
                    return None;
                }
                let start = self.0.data();
                if start + off + size > self.0.data_end() {
                    return None;
                }
                Some(start + off)
            }
        }

        impl Packet for Frame<'_> {
            #[inline(always)]
            fn len(&self) -> usize {
                self.0.data_end() - self.0.data()
            }
            #[inline(always)]
            fn read<T: Plain>(&self, off: usize) -> Option<T> {
                let p = self.span(off, core::mem::size_of::<T>())?;
                // SAFETY: in bounds (checked by `span`); unaligned because packet fields are;
                // any bytes are a valid `T: Plain`.
                Some(unsafe { core::ptr::read_unaligned(p as *const T) })
            }
        }

        impl PacketMut for Frame<'_> {
            #[inline(always)]
            fn bytes_mut<const N: usize>(&mut self, off: usize) -> Option<&mut [u8; N]> {
                let p = self.span(off, N)?;
                // SAFETY: in bounds (checked by `span`), byte-aligned, borrowed from `self`
                // mutably so no other access overlaps it; and the program calls no helper that
                // moves packet data (`bpf_xdp_adjust_*`), which would leave it dangling.
                Some(unsafe { &mut *(p as *mut [u8; N]) })
            }
        }

        /// Per-CPU working memory of one program run: the parsed headers and the scanner
        /// state.
        ///
        /// Why not the stack: the headers do not fit next to everything else in 512 bytes,
        /// and the scanner state must not either. The verifier tracks constants stored on
        /// the stack, so a state machine kept there has its fields known exactly at every
        /// `bpf_loop` iteration; branches on them get predicted, marked precise, and no two
        /// iterations look alike: the callback never converges ("sequence of 8193 jumps is
        /// too complex"). Loads from a map value are unknown scalars, so the callback
        /// verifies once.
        #[repr(C)]
        pub struct Work {
            pub h: Headers,
            pub scan: Scan,
            /// Scan position in the payload: advanced by the callback, by 1 or up to 32
            /// bytes, so it cannot be the `bpf_loop` index (and lives here for the same
            /// reason as the scanner state).
            pos: u64,
            /// The counter set of the outcome, on its way to `count_all` ([`forget`]).
            counters: u64,
            /// A run's length on its way to the steps after it (`scan_step`), for the
            /// same reason.
            run: u32,
            /// The response's tag, decoded by `check_tag` (here, not on the stack).
            pub tag: rport_common::tag::Tag,
            /// `bpf_fib_lookup`'s parameters (`--egress bypass`; here, not on the stack).
            pub fib: rport_ebpf::fib::FibParams,
        }

        #[map(name = "SCRATCH")]
        static SCRATCH: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);

        /// This CPU's [`Work`] slot.
        #[inline(always)]
        pub fn work() -> Option<*mut Work> {
            SCRATCH.get_ptr_mut(0)
        }

        /// The bits of a counter set, as the verifier sees a value loaded from a map: an
        /// unknown number.
        ///
        /// Why: each path through the decision builds its own set, which the verifier
        /// knows bit by bit; the counting loop depends on every bit, so no two paths
        /// would look alike there, and the loop would be walked once per path (past the
        /// 1M-instruction limit). Read back from the scratch slot, the set is the same
        /// unknown on every path, they merge at the loop, and it is verified once. Costs
        /// a store and a load.
        #[inline(always)]
        pub fn forget(work: *mut Work, cs: Counters) -> u64 {
            // SAFETY: this CPU's slot; volatile, so the compiler keeps the round trip.
            unsafe {
                let p = core::ptr::addr_of_mut!((*work).counters);
                core::ptr::write_volatile(p, cs.bits());
                core::ptr::read_volatile(p)
            }
        }

        /// An offset read back from [`Headers`], masked to 12 bits. Parsing guarantees
        /// offsets far below 4096, so the mask changes nothing; it is there because the
        /// verifier knows nothing of a value loaded from a map, and the compiler may
        /// compare a copy of it instead of the register that then does the packet
        /// arithmetic.
        #[inline(always)]
        pub fn at(x: u16) -> usize {
            (x & 0x0fff) as usize
        }

        /// Runs the scanner over the payload (at most [`SCAN_WINDOW`] bytes) into
        /// `work.scan`, finished. The same dispatch as `Scan::run_chunked` on the host.
        #[inline(always)]
        pub fn scan(ctx: &XdpContext, work: *mut Work, look: u32) {
            // SAFETY: this CPU's slot (from `work()`), not borrowed across this call.
            let w = unsafe { &mut *work };
            let n = if w.h.payload_len as u32 > SCAN_WINDOW {
                SCAN_WINDOW
            } else {
                w.h.payload_len as u32
            };
            reset(&mut w.scan);
            w.scan.look_for(look);
            w.pos = 0;
            let mut lc = LoopCtx {
                xdp: ctx.ctx,
                work,
                off: at(w.h.payload) as u32,
                n,
            };
            // SAFETY: the callback only reads through the context it is handed,
            // bounds-checked.
            unsafe {
                bpf_loop(
                    n,
                    scan_step as *mut c_void,
                    &mut lc as *mut LoopCtx as *mut c_void,
                    0,
                );
            }
            // SAFETY: the same per-CPU slot; the loop is over.
            unsafe { (*lc.work).scan.finish() };
        }

        /// The 8 packet bytes at `p` as a little-endian word, in one load.
        ///
        /// Why asm: LLVM's BPF backend assumes strict alignment, so `read_unaligned` of a
        /// `u64` (or `[u8; 8]`) becomes 8 byte loads and 14 shifts and ors: 22 instructions
        /// per word, 88 per 32-byte skip. The kernel does not need that: packet loads at any
        /// offset are allowed where unaligned access is cheap (x86-64, arm64: the verifier
        /// checks packet alignment only on architectures without
        /// CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS, or with BPF_F_STRICT_ALIGNMENT). Same
        /// value, same bounds check by the verifier, on the register it is given. Measured
        /// (BPF_PROG_TEST_RUN, interleaved): the Via 1,100 bytes in 13% faster.
        ///
        /// # Safety
        /// `p..p + 8` is in the packet: the caller checked `p + 8 <= data_end`.
        #[inline(always)]
        unsafe fn load64(p: usize) -> u64 {
            let v: u64;
            // SAFETY: a load from memory the caller checked; no side effect.
            unsafe {
                core::arch::asm!(
                    "{0} = *(u64 *)({1} + 0)",
                    lateout(reg) v,
                    in(reg) p,
                    options(readonly, nostack)
                );
            }
            v
        }

        /// `*scan = Scan::new()` in one 8-byte store per word.
        ///
        /// Why: the assignment compiles to three calls of aya-ebpf's `memset` (a byte loop,
        /// five instructions per byte) over the zero fields, 160 bytes since the tag words:
        /// about 800 instructions per SIP packet, a fifth of what the scan of a REGISTER
        /// costs. The values come from `Scan::new()` itself, which the compiler folds into
        /// constants; volatile, so that it cannot turn the stores back into a `memset`.
        #[inline(always)]
        fn reset(scan: &mut Scan) {
            use core::mem::{MaybeUninit, align_of, size_of};
            const WORDS: usize = size_of::<Scan>() / 8;
            const _: () = assert!(size_of::<Scan>().is_multiple_of(8) && align_of::<Scan>() == 8);
            let init = Scan::new();
            let src = &init as *const Scan as *const MaybeUninit<u64>;
            let dst = scan as *mut Scan as *mut MaybeUninit<u64>;
            let mut i = 0;
            while i < WORDS {
                // SAFETY: word `i` of two valid, 8-aligned `Scan`s; MaybeUninit, because the
                // last word holds padding.
                unsafe { core::ptr::write_volatile(dst.add(i), src.add(i).read()) };
                i += 1;
            }
        }

        /// State handed to the `bpf_loop` callback: the context to read bytes through, the
        /// per-CPU work slot (scanner and position), where the payload starts and how many
        /// of its bytes to scan.
        #[repr(C)]
        struct LoopCtx {
            xdp: *mut xdp_md,
            work: *mut Work,
            off: u32,
            n: u32,
        }

        /// One `bpf_loop` iteration: 32 or 8 bytes at once while the scanner skips a line
        /// (the start line, headers it does not read), else up to 8 bytes on one load (a
        /// run of the state's class, then scanner steps), or one step near the end. Returns 1 to stop. Same result as one step per
        /// byte: `Scan::run_chunked` is this loop on the host.
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
            // register used below (`off` < 4096 and `pos` < SCAN_WINDOW < 2048 by
            // construction).
            let base = lc.off as usize & 0x0fff;
            let off = base + (pos as usize & 0x07ff);
            if w.scan.skipping() && pos + 32 <= n {
                if data + off + 32 > end {
                    return 1;
                }
                let p = data + off;
                // SAFETY: in bounds (checked above).
                let words = unsafe { [load64(p), load64(p + 8), load64(p + 16), load64(p + 24)] };
                w.pos = pos + w.scan.skip_words(&words) as u64;
                return 0;
            }
            if w.scan.skipping() && pos + 8 <= n {
                if data + off + 8 > end {
                    return 1;
                }
                // SAFETY: in bounds (checked above).
                let word = unsafe { load64(data + off) };
                w.pos = pos + w.scan.skip_word(word) as u64;
                return 0;
            }
            // Up to 8 bytes on one 8-byte load (`Scan::step_word`: a run, then steps): the
            // loop overhead and the bounds check are paid once per word, not per byte.
            if pos + 8 <= n {
                if data + off + 8 > end {
                    return 1;
                }
                // SAFETY: in bounds (checked above).
                let word = unsafe { load64(data + off) };
                // `Scan::step_word`, with the run's length forgotten (`forget`) before the
                // steps: known exactly on each of the run loops' exits, it would have the
                // steps verified once per length.
                let run = w.scan.run_word(word);
                if run >= 8 {
                    w.pos = pos + 8;
                    return 0;
                }
                // SAFETY: a field of this CPU's slot; volatile, so the round trip stays.
                let run = unsafe {
                    let p = core::ptr::addr_of_mut!(w.run);
                    core::ptr::write_volatile(p, run);
                    core::ptr::read_volatile(p)
                };
                let (adv, go_on) = w.scan.step_rest(word, run);
                w.pos = pos + adv as u64;
                return if go_on { 0 } else { 1 };
            }
            // Every byte is read as the first of a 2-byte window (the last one as the
            // second): the compiler turns a 1-byte check `p + 1 > end` into `p >= end`,
            // from which the verifier learns no range, while `p + 2 > end` keeps a usable
            // one.
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
