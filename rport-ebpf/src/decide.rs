//! The decision: from what the parser and the scanner found (and what the maps hold) to
//! one [`Outcome`] per frame, and from an outcome to the counters it bumps.
//!
//! Plain code over plain values, host-tested. The XDP glue (`main.rs`) and the host model
//! (`model.rs`) do the lookups, the map writes and the verdict, each in one match over the
//! outcome, and both take the counters from [`Outcome::counters`]. rport never drops a
//! frame: every outcome passes it to the kernel, except a request redirected to the
//! daemon (which falls back to passing it when no socket is bound).
//!
//! A frame is decided in two steps around the scan, which only the glue can run (a
//! `bpf_loop` in the kernel): [`classify`] before it (is this a SIP message rport looks
//! into?), [`decide`] after it.

use rport_common::{Binding, Counter, IfaceConf, MAX_QUEUES, SCAN_WINDOW, SIP_PORT, flags, role};

use crate::{
    parse::{Headers, ParseError, payload_head},
    pkt::Packet,
    scan::{Scan, found},
};

/// A request or a response, by its first payload bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// What every SIP message's outcome counts besides its own counter: its kind and the
/// frame facts the traffic counters report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub kind: Kind,
    /// The UDP length claims more bytes than the frame holds ([`Headers::short`]).
    pub short: bool,
    /// First fragment of a fragmented IPv4 datagram.
    pub first_fragment: bool,
    pub ipv6: bool,
    /// One or two VLAN tags.
    pub vlan: bool,
}

impl Msg {
    pub fn new(kind: Kind, h: &Headers) -> Msg {
        Msg {
            kind,
            short: h.short,
            first_fragment: h.first_fragment,
            ipv6: h.ipv6,
            vlan: h.vlan != 0,
        }
    }

    /// Pushes the message's counters and `outcome`, the counter of what became of it.
    #[inline(always)]
    fn counters(&self, outcome: Counter, c: &mut Counters) {
        c.push(match self.kind {
            Kind::Request => Counter::SipRequests,
            Kind::Response => Counter::SipResponses,
        });
        c.push(outcome);
        c.push_if(self.short, Counter::Truncated);
        c.push_if(self.first_fragment, Counter::IpFragment);
        c.push_if(self.ipv6, Counter::Ipv6);
        c.push_if(self.vlan, Counter::Vlan);
    }
}

/// A keep-alive on a SIP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keepalive {
    /// CRLF or CRLFCRLF (RFC 5626).
    Crlf,
    /// Four zero bytes.
    Zero,
    /// A STUN message (RFC 5389 magic cookie).
    Stun,
}

/// Where a request goes once its binding is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// On through the kernel as it is: nothing to rewrite, or a first fragment (the
    /// rewrite needs the whole datagram).
    Pass,
    /// To the daemon, for the Via rewrite: redirected to the AF_XDP socket at this XSKMAP
    /// index (`IfaceConf::slot * MAX_QUEUES + rx queue`), or passed unrewritten when none
    /// is bound there.
    ToUserspace(u32),
    /// Needs the rewrite, but came in on an rx queue beyond the XSKMAP's: passed unrewritten.
    QueueOutOfRange,
}

/// Everything the program can make of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    // Passed before the payload is looked into.
    /// Not a UDP datagram rport can look into: why, as the parser said.
    Parse(ParseError),
    /// UDP, but neither port is a SIP port.
    NotSip,
    /// A keep-alive on a SIP port.
    Keepalive(Keepalive),
    /// UDP on a SIP port that is neither a request, a response nor a keep-alive.
    NotSipOnSipPort,

    // A SIP message without a top Via rport can use: passed.
    /// No Via in the headers.
    NoVia(Msg),
    /// The scan window ended before the headers did, and no Via was in it.
    ViaBeyondWindow(Msg),
    /// The top Via is unusable ([`found::MALFORMED`]).
    MalformedVia(Msg),

    // Requests.
    /// On an inside interface (a server toward a client): counted with its Via `flags`
    /// (the [`Binding::flags`] it would have had), passed, not recorded.
    RequestFromInside { msg: Msg, flags: u32 },
    /// From outside: `binding` is written under `key` (`new`: the map had none), then the
    /// frame goes as `then` says.
    Record {
        msg: Msg,
        key: u64,
        binding: Binding,
        new: bool,
        then: Then,
    },

    // Responses: only one from the server the request went to, on an inside interface,
    // is ever sent to the recorded source (anti-reflection).
    /// No binding under the top Via's key: passed untouched.
    ResponseNoBinding(Msg),
    /// Already sent to the recorded address and port (an rport-aware server): passed.
    ResponseAlreadyCorrect(Msg),
    /// Would be steered, but came in on an outside interface: passed untouched.
    ResponseNotFromInside(Msg),
    /// Would be steered, but comes from another host or port than the request went to.
    ResponseSourceMismatch(Msg),
    /// Destination rewritten to the recorded source (`addr`, `port`), checksums patched,
    /// then passed: the kernel routes it to the client's NAT mapping (RFC 3581 §4).
    Steer { msg: Msg, addr: [u8; 16], port: u16 },
}

/// What the glue's helpers made of an outcome's actions, which the decision cannot know.
/// Outcomes without an action ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// [`Outcome::Record`]: the kernel took the binding write.
    pub stored: bool,
    /// [`Then::ToUserspace`]: the redirect found a socket. [`Outcome::Steer`]: the
    /// destination was rewritten (every field it writes was in the frame).
    pub delivered: bool,
}

/// The counters one frame bumps: a set, bit `c as u32` for each [`Counter`] `c`.
///
/// A set: every outcome bumps each of its counters once. (The one counter two facts
/// could name is `truncated`, for a short frame whose steer rewrite then finds its fields
/// missing; the parser has read every field the rewrite touches, so a response that gets
/// that far always has them.) A bitmask because it is the cheapest to build: one `or`
/// per counter a flag decides.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters(u64);

const _: () = assert!(
    rport_common::counters::COUNT <= 64,
    "Counters holds 64 slots"
);

impl Counters {
    #[inline(always)]
    pub const fn new() -> Counters {
        Counters(0)
    }
    #[inline(always)]
    pub fn push(&mut self, c: Counter) {
        self.0 |= 1 << c as u32;
    }
    /// Adds `c` if `cond`, without a branch.
    #[inline(always)]
    pub fn push_if(&mut self, cond: bool, c: Counter) {
        self.0 |= (cond as u64) << c as u32;
    }
    /// Bit `c as u32` set for each counter `c`: what the glue walks.
    #[inline(always)]
    pub const fn bits(self) -> u64 {
        self.0
    }
    pub fn contains(self, c: Counter) -> bool {
        self.0 & (1 << c as u32) != 0
    }
    /// The counters, in slot order.
    pub fn iter(self) -> impl Iterator<Item = Counter> {
        Counter::ALL
            .iter()
            .copied()
            .filter(move |c| self.contains(*c))
    }
}

impl core::fmt::Debug for Counters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Counter::name))
            .finish()
    }
}

/// The counters of a request's Via, from the flags of its (would-be) binding.
#[inline(always)]
fn via_counters(fl: u32, c: &mut Counters) {
    c.push(if fl & flags::RPORT_EMPTY != 0 {
        Counter::RportEmpty
    } else if fl & flags::RPORT_VALUE != 0 {
        Counter::RportWithValue
    } else {
        Counter::NoRport
    });
    c.push_if(fl & flags::RECEIVED != 0, Counter::ReceivedPresent);
    c.push_if(fl & flags::SENT_BY_DIFFERS != 0, Counter::SentByDiffers);
    c.push_if(fl & flags::PORT_DIFFERS != 0, Counter::SourcePortDiffers);
    c.push_if(fl & flags::SENT_BY_PRIVATE != 0, Counter::SentByPrivate);
    c.push_if(fl & flags::SENT_BY_CGNAT != 0, Counter::SentByCgnat);
    c.push_if(fl & flags::SENT_BY_NAME != 0, Counter::SentByName);
    c.push_if(fl & flags::FORCE_RPORT != 0, Counter::ForceRport);
}

impl Outcome {
    /// Every counter this frame bumps, `packets` included, given what the helpers did.
    #[inline(always)]
    pub fn counters(&self, done: Done) -> Counters {
        use Counter as C;
        let mut c = Counters::new();
        c.push(C::Packets);
        match *self {
            Outcome::Parse(ParseError::NotUdp) | Outcome::NotSip => c.push(C::NonSip),
            Outcome::Parse(ParseError::Truncated) => c.push(C::Truncated),
            Outcome::Parse(ParseError::LaterFragment | ParseError::Ipv6Fragment) => {
                c.push(C::IpFragment)
            }
            Outcome::Keepalive(Keepalive::Crlf) => c.push(C::KeepaliveCrlf),
            Outcome::Keepalive(Keepalive::Zero) => c.push(C::KeepaliveZero),
            Outcome::Keepalive(Keepalive::Stun) => c.push(C::KeepaliveStun),
            Outcome::NotSipOnSipPort => c.push(C::NonSipOnSipPort),
            Outcome::NoVia(m) => m.counters(C::NoVia, &mut c),
            Outcome::ViaBeyondWindow(m) => m.counters(C::ViaBeyondWindow, &mut c),
            Outcome::MalformedVia(m) => m.counters(C::MalformedVia, &mut c),
            Outcome::RequestFromInside { msg, flags } => {
                msg.counters(C::RequestFromInside, &mut c);
                via_counters(flags, &mut c);
            }
            Outcome::Record {
                msg,
                ref binding,
                new,
                then,
                ..
            } => {
                msg.counters(
                    match then {
                        Then::Pass => C::RequestUnchanged,
                        Then::ToUserspace(_) if done.delivered => C::ToUserspace,
                        Then::ToUserspace(_) | Then::QueueOutOfRange => C::UserspaceUnavailable,
                    },
                    &mut c,
                );
                via_counters(binding.flags, &mut c);
                if done.stored {
                    c.push(C::BindingRecorded);
                    c.push_if(new, C::BindingNew);
                } else {
                    c.push(C::BindingUpdateFailed);
                }
            }
            Outcome::ResponseNoBinding(m) => m.counters(C::ResponseNoBinding, &mut c),
            Outcome::ResponseAlreadyCorrect(m) => m.counters(C::ResponseAlreadyCorrect, &mut c),
            Outcome::ResponseNotFromInside(m) => m.counters(C::ResponseNotFromInside, &mut c),
            Outcome::ResponseSourceMismatch(m) => m.counters(C::ResponseSourceMismatch, &mut c),
            Outcome::Steer { msg, .. } => msg.counters(
                if done.delivered {
                    C::ResponseSteered
                } else {
                    C::Truncated
                },
                &mut c,
            ),
        }
        c
    }
}

/// Step 1, before the scan: is `p` (parsed into `h`) a SIP message rport looks into?
/// `to_sip`/`from_sip`: its destination/source port is a SIP port. `payload`:
/// [`Headers::payload`] (the glue masks it for the verifier).
///
/// A message is a response when it comes from a SIP port and starts with `SIP/2.0 `, a
/// request when it goes to one and starts with an upper-case letter (a method); anything
/// else on a SIP port is a keep-alive or counted as not SIP. The payload is only read
/// once a port says SIP.
#[inline(always)]
pub fn classify<P: Packet>(
    p: &P,
    h: &Headers,
    payload: usize,
    to_sip: bool,
    from_sip: bool,
) -> Result<Msg, Outcome> {
    if !to_sip && !from_sip {
        return Err(Outcome::NotSip);
    }
    let len = h.payload_len;
    let head = &payload_head(p, payload, len);
    if len >= 8 {
        if from_sip && head == b"SIP/2.0 " {
            return Ok(Msg::new(Kind::Response, h));
        }
        if to_sip && head[0].is_ascii_uppercase() {
            return Ok(Msg::new(Kind::Request, h));
        }
    }
    Err(keepalive(len, head))
}

/// Keep-alives (RFC 5626 CRLF, four zero bytes, STUN) or something else on a SIP port.
#[inline(always)]
fn keepalive(len: u16, head: &[u8; 8]) -> Outcome {
    let k = if len == 2 {
        (head[0] == b'\r' && head[1] == b'\n').then_some(Keepalive::Crlf)
    } else if len == 4 {
        match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0x0d0a_0d0a => Some(Keepalive::Crlf),
            0 => Some(Keepalive::Zero),
            _ => None,
        }
    } else if len >= 20 {
        (u32::from_be_bytes([head[4], head[5], head[6], head[7]]) == 0x2112_a442)
            .then_some(Keepalive::Stun)
    } else {
        None
    };
    match k {
        Some(k) => Outcome::Keepalive(k),
        None => Outcome::NotSipOnSipPort,
    }
}

/// Where a frame came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    pub ifindex: u32,
    pub rx_queue: u32,
}

/// The map reads and the clock a decision needs. [`decide`] calls each only on the paths
/// that need it, as the program always has: a response never looks at the force-rport
/// networks, a request from inside never at the bindings or the clock.
pub trait Lookups {
    /// `IFACES[ifindex]` of the ingress interface, if `rport run` configured it.
    fn iface(&self) -> Option<IfaceConf>;
    /// The source is in a `--force-rport` network.
    fn force_rport(&self, src: &[u8; 16]) -> bool;
    /// The binding recorded under `key`.
    fn binding(&self, key: u64) -> Option<&Binding>;
    /// `bpf_ktime_get_boot_ns`.
    fn now(&self) -> u64;
}

/// An interface rport was not told about is treated as an outside one.
const UNKNOWN_IFACE: IfaceConf = IfaceConf {
    slot: 0,
    role: role::OUTSIDE,
};

/// Step 2, after the scan (`scan` finished): the outcome of a SIP message.
#[inline(always)]
pub fn decide<L: Lookups>(msg: Msg, h: &Headers, scan: &Scan, at: Ingress, maps: &L) -> Outcome {
    if scan.found & found::VIA == 0 {
        return if scan.found & found::HEADERS_END == 0 && h.payload_len as u32 > SCAN_WINDOW {
            Outcome::ViaBeyondWindow(msg)
        } else {
            Outcome::NoVia(msg)
        };
    }
    if scan.found & found::MALFORMED != 0 {
        return Outcome::MalformedVia(msg);
    }
    let iface = maps.iface().unwrap_or(UNKNOWN_IFACE);
    match msg.kind {
        Kind::Request => request(msg, h, scan, iface, at, maps),
        Kind::Response => response(msg, h, scan, iface, maps),
    }
}

#[inline(always)]
fn request<L: Lookups>(
    msg: Msg,
    h: &Headers,
    scan: &Scan,
    iface: IfaceConf,
    at: Ingress,
    maps: &L,
) -> Outcome {
    let mut fl = scan.flags & !(flags::SENT_BY_DIFFERS | flags::PORT_DIFFERS);
    if h.ipv6 {
        fl |= flags::IPV6;
    }
    if h.first_fragment {
        fl |= flags::FRAGMENT;
    }
    let v4 = scan.sent_by_v4();
    let src_v4 = [h.src[12], h.src[13], h.src[14], h.src[15]];
    // An IPv6 literal sent-by is not compared here (text forms vary): userspace decides.
    let v6_literal = h.ipv6 && fl & flags::SENT_BY_V6 != 0;
    let differs = !v6_literal && (h.ipv6 || v4 != Some(src_v4));
    if differs {
        fl |= flags::SENT_BY_DIFFERS;
    }
    let sent_by_port = if scan.port == 0 {
        SIP_PORT
    } else {
        scan.port as u16
    };
    if sent_by_port != h.sport {
        fl |= flags::PORT_DIFFERS;
    }
    if maps.force_rport(&h.src) {
        fl |= flags::FORCE_RPORT;
    }
    if iface.role == role::INSIDE {
        // A server's request toward a client: not what rport rewrites.
        return Outcome::RequestFromInside { msg, flags: fl };
    }

    let key = scan.key();
    let now = maps.now();
    let (first_seen_ns, requests) = match maps.binding(key) {
        Some(old) => (old.first_seen_ns, old.requests.saturating_add(1)),
        None => (now, 0),
    };
    let binding = Binding {
        src_addr: h.src,
        dst_addr: h.dst,
        first_seen_ns,
        last_seen_ns: now,
        src_port: h.sport,
        dst_port: h.dport,
        sent_by_port,
        vlan: h.vlan,
        vlan_inner: h.vlan_inner,
        _pad: 0,
        ifindex: at.ifindex,
        flags: fl,
        requests: if requests == 0 { 1 } else { requests },
        sent_by_v4: v4.unwrap_or([0; 4]),
        _reserved: 0,
    };
    let wants_rewrite = fl & (flags::RPORT_EMPTY | flags::RPORT_VALUE | flags::FORCE_RPORT) != 0
        || differs
        || v6_literal;
    let then = if !wants_rewrite || h.first_fragment {
        Then::Pass
    } else if at.rx_queue >= MAX_QUEUES {
        Then::QueueOutOfRange
    } else {
        Then::ToUserspace(iface.slot * MAX_QUEUES + at.rx_queue)
    };
    Outcome::Record {
        msg,
        key,
        binding,
        new: requests == 0,
        then,
    }
}

#[inline(always)]
fn response<L: Lookups>(msg: Msg, h: &Headers, scan: &Scan, iface: IfaceConf, maps: &L) -> Outcome {
    let Some(b) = maps.binding(scan.key()) else {
        return Outcome::ResponseNoBinding(msg);
    };
    if h.dst == b.src_addr && h.dport == b.src_port {
        return Outcome::ResponseAlreadyCorrect(msg);
    }
    if iface.role != role::INSIDE {
        return Outcome::ResponseNotFromInside(msg);
    }
    if h.src != b.dst_addr || h.sport != b.dst_port {
        return Outcome::ResponseSourceMismatch(msg);
    }
    Outcome::Steer {
        msg,
        addr: b.src_addr,
        port: b.src_port,
    }
}
