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

use rport_common::{
    Binding, Counter, IfaceConf, MAX_QUEUES, SCAN_WINDOW, SIP_PORT, flags, role, tag,
};

use crate::{
    parse::{Headers, ParseError, payload_head},
    pkt::Packet,
    scan::{self, Scan, found},
};

/// The XDP verdicts rport gives, numbered as the kernel's `xdp_action` (the XDP program
/// asserts they match aya's), for host code that must not link aya-ebpf (see
/// rport-ebpf/Cargo.toml).
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

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

    /// Adds the message's counters and `outcome`, the counter of what became of it.
    #[inline(always)]
    fn counters(&self, outcome: Counter, c: &mut Counters) {
        c.add(match self.kind {
            Kind::Request => Counter::SipRequests,
            Kind::Response => Counter::SipResponses,
        });
        c.add(outcome);
        c.add_if(self.short, Counter::Truncated);
        c.add_if(self.first_fragment, Counter::IpFragment);
        c.add_if(self.ipv6, Counter::Ipv6);
        c.add_if(self.vlan, Counter::Vlan);
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
    /// On an inside interface (a server toward a client) without a Contact tag in its
    /// Request-URI: counted with its Via `flags` (the [`Binding::flags`] it would have
    /// had), passed, not recorded.
    RequestFromInside { msg: Msg, flags: u32 },
    /// From inside, with a valid Contact tag, already sent to the client's mapping.
    RequestAlreadyCorrect(Msg),
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
    /// `tagged`: decided by the Via's tag (else by a binding).
    ResponseAlreadyCorrect { msg: Msg, tagged: bool },
    /// Would be steered, but came in on an outside interface: passed untouched.
    ResponseNotFromInside { msg: Msg, tagged: bool },
    /// Would be steered, but comes from another host or port than the request went to.
    ResponseSourceMismatch(Msg),
    /// A client's response from outside with a Contact: to the daemon (as `then` says),
    /// which puts the client's tag in the Contact of a 1xx/2xx so that the requests the
    /// server sends in the dialog (ACK, BYE, re-INVITE) come back with it. (The status
    /// class is the daemon's to read: one more packet read here cost the program 80
    /// bytes of its 512 of stack, and responses with a Contact from outside are few.)
    ResponseContact { msg: Msg, then: Then },
    /// Destination rewritten to the recorded source (`addr`, `port`), checksums patched,
    /// then passed: the kernel routes it to the client's NAT mapping (RFC 3581 §4). A
    /// response (by its Via tag or a binding), or a request from inside (by the Contact
    /// tag in its Request-URI: `msg.kind` says which).
    Steer {
        msg: Msg,
        addr: [u8; 16],
        port: u16,
        /// Steered by the response's own tag (stateless), not by a binding.
        by_tag: bool,
    },
    /// A response whose top Via carries an `rptag` that is not rport's (a forged or
    /// altered tag, another key's, a Contact tag, another server's), or a request from
    /// inside whose Request-URI does (a Via tag, made for another server…): passed, not
    /// steered.
    TagInvalid(Msg),
    /// A response or request from inside whose tag is rport's but older than its age
    /// limit: passed.
    TagExpired(Msg),
}

/// What the glue's check of a response's `rptag` found (`rport_common::tag::verify`,
/// against the TAG_KEYS map, for a response from this source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagResult {
    /// Rport made this tag for a request to the response's source: steer to this target.
    Valid {
        addr: [u8; 16],
        port: u16,
    },
    Invalid,
    Expired,
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
    /// [`Outcome::Steer`]: rewritten in XDP itself, not handed to TC (no metadata room).
    pub in_xdp: bool,
    /// [`Outcome::Steer`] under `--egress bypass`: redirected out, or why not.
    pub bypass: crate::fib::Bypass,
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
    pub fn add(&mut self, c: Counter) {
        self.0 |= 1 << c as u32;
    }
    /// Adds `c` if `cond`, without a branch.
    #[inline(always)]
    pub fn add_if(&mut self, cond: bool, c: Counter) {
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
    /// The slot of the lowest counter in `bits` (not 0): its trailing zeros, counted with
    /// a de Bruijn multiplication and a 64-entry table, because BPF has no instruction
    /// for it.
    #[inline(always)]
    pub fn lowest_slot(bits: u64) -> u32 {
        let low = bits & bits.wrapping_neg();
        BIT_INDEX[(low.wrapping_mul(DE_BRUIJN) >> 58) as usize] as u32
    }
    /// The counters, in slot order.
    pub fn iter(self) -> impl Iterator<Item = Counter> {
        Counter::ALL
            .iter()
            .copied()
            .filter(move |c| self.contains(*c))
    }
}

/// A de Bruijn sequence: the top 6 bits of `(1 << i) * DE_BRUIJN` differ for each `i`.
const DE_BRUIJN: u64 = 0x03f7_9d71_b4cb_0a89;
/// `i`, at `(1 << i) * DE_BRUIJN >> 58`.
static BIT_INDEX: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[((1u64 << i).wrapping_mul(DE_BRUIJN) >> 58) as usize] = i as u8;
        i += 1;
    }
    t
};

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
    c.add(if fl & flags::RPORT_EMPTY != 0 {
        Counter::RportEmpty
    } else if fl & flags::RPORT_VALUE != 0 {
        Counter::RportWithValue
    } else {
        Counter::NoRport
    });
    c.add_if(fl & flags::RECEIVED != 0, Counter::ReceivedPresent);
    c.add_if(fl & flags::SENT_BY_DIFFERS != 0, Counter::SentByDiffers);
    c.add_if(fl & flags::PORT_DIFFERS != 0, Counter::SourcePortDiffers);
    c.add_if(fl & flags::SENT_BY_PRIVATE != 0, Counter::SentByPrivate);
    c.add_if(fl & flags::SENT_BY_CGNAT != 0, Counter::SentByCgnat);
    c.add_if(fl & flags::SENT_BY_NAME != 0, Counter::SentByName);
    c.add_if(fl & flags::FORCE_RPORT != 0, Counter::ForceRport);
}

impl Outcome {
    /// Every counter this frame bumps, `packets` included, given what the helpers did.
    #[inline(always)]
    pub fn counters(&self, done: Done) -> Counters {
        use Counter as C;
        let mut c = Counters::new();
        c.add(C::Packets);
        match *self {
            Outcome::Parse(ParseError::NotUdp) | Outcome::NotSip => c.add(C::NonSip),
            Outcome::Parse(ParseError::Truncated) => c.add(C::Truncated),
            Outcome::Parse(ParseError::LaterFragment | ParseError::Ipv6Fragment) => {
                c.add(C::IpFragment)
            }
            Outcome::Keepalive(Keepalive::Crlf) => c.add(C::KeepaliveCrlf),
            Outcome::Keepalive(Keepalive::Zero) => c.add(C::KeepaliveZero),
            Outcome::Keepalive(Keepalive::Stun) => c.add(C::KeepaliveStun),
            Outcome::NotSipOnSipPort => c.add(C::NonSipOnSipPort),
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
                    c.add(C::BindingRecorded);
                    c.add_if(new, C::BindingNew);
                } else {
                    c.add(C::BindingUpdateFailed);
                }
            }
            Outcome::ResponseNoBinding(m) => {
                m.counters(C::ResponseNoBinding, &mut c);
                c.add(C::ResponseUntagged);
            }
            Outcome::RequestAlreadyCorrect(m) => m.counters(C::RequestAlreadyCorrect, &mut c),
            Outcome::ResponseAlreadyCorrect { msg, tagged } => {
                msg.counters(C::ResponseAlreadyCorrect, &mut c);
                c.add_if(!tagged, C::ResponseUntagged);
            }
            Outcome::ResponseContact { msg, then } => {
                msg.counters(C::ResponseContact, &mut c);
                let delivered = matches!(then, Then::ToUserspace(_)) && done.delivered;
                c.add_if(!delivered, C::UserspaceUnavailable);
            }
            Outcome::ResponseNotFromInside { msg, tagged } => {
                msg.counters(C::ResponseNotFromInside, &mut c);
                c.add_if(!tagged, C::ResponseUntagged);
            }
            Outcome::ResponseSourceMismatch(m) => {
                m.counters(C::ResponseSourceMismatch, &mut c);
                c.add(C::ResponseUntagged);
            }
            Outcome::Steer { msg, by_tag, .. } => {
                let request = msg.kind == Kind::Request;
                msg.counters(
                    if !done.delivered {
                        C::Truncated
                    } else if request {
                        C::RequestSteered
                    } else {
                        C::ResponseSteered
                    },
                    &mut c,
                );
                c.add_if(done.in_xdp, C::SteerInXdp);
                c.add_if(done.delivered && by_tag && !request, C::TagSteered);
                c.add_if(done.delivered && !by_tag, C::BindingSteered);
                c.add_if(!by_tag, C::ResponseUntagged);
                match done.bypass {
                    crate::fib::Bypass::Off => {}
                    crate::fib::Bypass::Redirected(_) => c.add(C::SteerRedirected),
                    crate::fib::Bypass::NoNeighbour => c.add(C::SteerFallbackNoNeigh),
                    crate::fib::Bypass::Fallback => c.add(C::SteerFallbackOther),
                }
            }
            Outcome::TagInvalid(m) => m.counters(
                match m.kind {
                    Kind::Request => C::RequestTagInvalid,
                    Kind::Response => C::TagInvalid,
                },
                &mut c,
            ),
            Outcome::TagExpired(m) => m.counters(
                match m.kind {
                    Kind::Request => C::RequestTagExpired,
                    Kind::Response => C::TagExpired,
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
/// On a SIP port (either: a phone behind NAT answers a server from its mapping's port,
/// and a server may send its request to that port), a message is a response when it
/// starts with `SIP/2.0 `, a request when it starts with an upper-case letter (a method);
/// anything else is a keep-alive or counted as not SIP. The payload is only read once a
/// port says SIP.
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
        if head == b"SIP/2.0 " {
            return Ok(Msg::new(Kind::Response, h));
        }
        if head[0].is_ascii_uppercase() {
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
    /// The check of the `rptag` value the scan kept (`scan.tag`): a response's top Via
    /// tag, for a response from `h.src:h.sport`, or a request from inside's Request-URI
    /// tag ([`found::RURI_TAG`]), for a request from `h.src`. Asked only when there is one.
    fn tag(&self, h: &Headers, scan: &Scan) -> TagResult;
}

/// The tag check itself, pure (the glue calls it with the TAG_KEYS value and the TAI
/// clock): decodes `scan.tag` and verifies it as a Via tag made for a request to this
/// response's source, or (a Request-URI's, [`found::RURI_TAG`]) as a Contact tag made
/// for a request to this request's source address. Decodes into `t` (scratch the caller
/// owns: on BPF, map memory, not stack) and returns 0 when valid, 1 when invalid, 2 when
/// expired (a code, not a `TagResult`: see `rport_common::tag` on why BPF subprograms
/// return no enums with payloads).
#[inline(always)]
pub fn check_tag(
    keys: &tag::TagKeys,
    h: &Headers,
    scan: &Scan,
    now_tai_s: u64,
    t: &mut tag::Tag,
) -> u32 {
    let len = scan.tag_len as usize;
    if len > tag::BUF_LEN || !tag::decode_into(tag::TagText::from_words(&scan.tag), len, t) {
        return 1;
    }
    // A Request-URI's tag is a Contact's (made for the server's address, any of its
    // ports: a registrar may send from another socket than the one it was sent to); a
    // Via's is a Via's (made for the server's address and port). Neither passes for the
    // other.
    let contact = scan.found & found::RURI_TAG != 0;
    let (kind, server_port) = if contact {
        (tag::KIND_CONTACT, 0)
    } else {
        (tag::KIND_VIA, h.sport)
    };
    if t.kind != kind {
        return 1;
    }
    match tag::verify(
        keys,
        t,
        &h.src,
        server_port,
        0,
        now_tai_s,
        keys.conf.max_age(kind),
        keys.conf.max_future_s,
    ) {
        tag::TagCheck::Valid => 0,
        tag::TagCheck::Expired => 2,
        _ => 1,
    }
}

/// [`check_tag`]'s code (and the tag it decoded) as a [`TagResult`].
#[inline(always)]
pub fn tag_result(code: u32, t: &tag::Tag) -> TagResult {
    match code {
        0 => TagResult::Valid {
            addr: t.addr,
            port: t.port,
        },
        2 => TagResult::Expired,
        _ => TagResult::Invalid,
    }
}

/// An interface rport was not told about is treated as an outside one.
pub const UNKNOWN_IFACE: IfaceConf = IfaceConf {
    slot: 0,
    role: role::OUTSIDE,
};

/// Between the steps: what the scan must look for besides the top Via ([`scan::look`]),
/// by the message's kind and the role of the interface it came in on (`iface`, the
/// [`Lookups::iface`] the decision will use).
#[inline(always)]
pub fn look(msg: &Msg, iface: Option<IfaceConf>) -> u32 {
    let inside = iface.unwrap_or(UNKNOWN_IFACE).role == role::INSIDE;
    match (msg.kind, inside) {
        (Kind::Request, true) => scan::look::RURI_TAG,
        (Kind::Request, false) => scan::look::CONTACT_UNLESS_REWRITE,
        (Kind::Response, false) => scan::look::CONTACT,
        (Kind::Response, true) => scan::look::VIA,
    }
}

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
    let inside = iface.role == role::INSIDE;
    // A client's answer to a server's request: nothing to steer (it goes to the server's
    // own Via), but its Contact becomes the server's target for the dialog, so the
    // daemon tags it (a 1xx/2xx's only: a 3xx's Contacts are other targets).
    if msg.kind == Kind::Response && !inside && scan.found & found::CONTACT != 0 {
        return Outcome::ResponseContact {
            msg,
            then: to_daemon(h, iface, at),
        };
    }
    // A tag, when there is one, alone decides (stateless: no map to forget, nothing
    // shared between gateways but the key): a response's top Via tag, or the Contact tag
    // in the Request-URI of a request from inside. One call site for both: inlined
    // twice, the check's frame and its outcomes would cost the program stack it lacks.
    let tagged = match msg.kind {
        Kind::Request => inside && scan.found & found::RURI_TAG != 0,
        Kind::Response => scan.found & found::TAG != 0,
    };
    if tagged {
        return by_tag(msg, h, scan, inside, maps);
    }
    match msg.kind {
        Kind::Request => request(msg, h, scan, iface, at, maps),
        Kind::Response => response(msg, h, scan, iface, maps),
    }
}

/// The outcome of a message that carries a tag (see [`decide`]). Its MAC covers the
/// target and the server, so only the server the client's message went to is ever sent
/// where rport observed the client.
#[inline(always)]
fn by_tag<L: Lookups>(msg: Msg, h: &Headers, scan: &Scan, inside: bool, maps: &L) -> Outcome {
    match maps.tag(h, scan) {
        TagResult::Valid { addr, port } => {
            if h.dst == addr && h.dport == port {
                match msg.kind {
                    Kind::Request => Outcome::RequestAlreadyCorrect(msg),
                    Kind::Response => Outcome::ResponseAlreadyCorrect { msg, tagged: true },
                }
            } else if !inside {
                // Only a response can get here (a request from outside is not tagged).
                Outcome::ResponseNotFromInside { msg, tagged: true }
            } else {
                Outcome::Steer {
                    msg,
                    addr,
                    port,
                    by_tag: true,
                }
            }
        }
        TagResult::Invalid => Outcome::TagInvalid(msg),
        TagResult::Expired => Outcome::TagExpired(msg),
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
        // A server's request toward a client without a Contact tag (those are steered by
        // it, `by_tag`): not what rport rewrites.
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
    // An `rptag` in a request is never the client's to give: the daemon replaces it. A
    // Contact gets the client's tag (and loses any the client put there).
    let wants_rewrite = fl & (flags::RPORT_EMPTY | flags::RPORT_VALUE | flags::FORCE_RPORT) != 0
        || differs
        || v6_literal
        || scan.found & (found::TAG | found::CONTACT) != 0;
    let then = if !wants_rewrite {
        Then::Pass
    } else {
        to_daemon(h, iface, at)
    };
    Outcome::Record {
        msg,
        key,
        binding,
        new: requests == 0,
        then,
    }
}

/// Where a message the daemon must rewrite goes: its AF_XDP socket, unless the frame is
/// a first fragment or shorter than its UDP length (the rewrite needs the whole datagram,
/// and the daemon drops a short frame as a bad one, where the kernel's own checks should
/// decide: a router forwards it, a receiver drops it) or came in on a queue beyond the
/// XSKMAP's.
#[inline(always)]
fn to_daemon(h: &Headers, iface: IfaceConf, at: Ingress) -> Then {
    if h.first_fragment || h.short {
        Then::Pass
    } else if at.rx_queue >= MAX_QUEUES {
        Then::QueueOutOfRange
    } else {
        Then::ToUserspace(iface.slot * MAX_QUEUES + at.rx_queue)
    }
}

#[inline(always)]
fn response<L: Lookups>(msg: Msg, h: &Headers, scan: &Scan, iface: IfaceConf, maps: &L) -> Outcome {
    let Some(b) = maps.binding(scan.key()) else {
        return Outcome::ResponseNoBinding(msg);
    };
    if h.dst == b.src_addr && h.dport == b.src_port {
        return Outcome::ResponseAlreadyCorrect { msg, tagged: false };
    }
    if iface.role != role::INSIDE {
        return Outcome::ResponseNotFromInside { msg, tagged: false };
    }
    if h.src != b.dst_addr || h.sport != b.dst_port {
        return Outcome::ResponseSourceMismatch(msg);
    }
    Outcome::Steer {
        msg,
        addr: b.src_addr,
        port: b.src_port,
        by_tag: false,
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use super::*;
    use crate::{model::frames::*, parse::headers};
    use Counter::*;
    use rport_common::hash::transaction_key;

    /// Lookups with fixed answers that record which were asked.
    #[derive(Default)]
    struct Fake {
        iface: Option<IfaceConf>,
        force: bool,
        binding: Option<Binding>,
        now: u64,
        asked: Cell<u32>,
    }
    const IFACE: u32 = 1;
    const FORCE: u32 = 2;
    const BINDING: u32 = 4;
    const NOW: u32 = 8;

    impl Fake {
        fn role(role: u32) -> Fake {
            Fake {
                iface: Some(IfaceConf { slot: 3, role }),
                now: 1000,
                ..Fake::default()
            }
        }
        fn ask(&self, what: u32) {
            self.asked.set(self.asked.get() | what);
        }
    }

    impl Lookups for Fake {
        fn iface(&self) -> Option<IfaceConf> {
            self.ask(IFACE);
            self.iface
        }
        fn force_rport(&self, _src: &[u8; 16]) -> bool {
            self.ask(FORCE);
            self.force
        }
        fn binding(&self, _key: u64) -> Option<&Binding> {
            self.ask(BINDING);
            self.binding.as_ref()
        }
        fn now(&self) -> u64 {
            self.ask(NOW);
            self.now
        }
        fn tag(&self, _h: &Headers, _scan: &Scan) -> TagResult {
            TagResult::Invalid
        }
    }

    /// A slice that counts the reads made through it.
    struct Counted<'a>(&'a [u8], Cell<u32>);

    impl Packet for Counted<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read<T: crate::pkt::Plain>(&self, off: usize) -> Option<T> {
            self.1.set(self.1.get() + 1);
            self.0.read(off)
        }
    }

    const SIP: u16 = 5060;
    const AT: Ingress = Ingress {
        ifindex: 7,
        rx_queue: 5,
    };
    const NAT_VIA: &str = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport";

    fn classify_frame(f: &[u8], sip: &[u16]) -> (Result<Msg, Outcome>, u32) {
        let h = headers(f).unwrap();
        let p = Counted(f, Cell::new(0));
        let r = classify(
            &p,
            &h,
            h.payload as usize,
            sip.contains(&h.dport),
            sip.contains(&h.sport),
        );
        (r, p.1.get())
    }

    #[test]
    fn classify_by_ports_and_first_bytes() {
        let req = Ok(Kind::Request);
        let resp = Ok(Kind::Response);
        let ka = |k| Err(Outcome::Keepalive(k));
        let other = Err(Outcome::NotSipOnSipPort);
        let mut stun = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        stun.resize(20, 7);
        for (name, sport, dport, payload, want) in [
            (
                "request to a SIP port",
                40000,
                SIP,
                &b"OPTIONS sip:x SIP/2.0\r\n"[..],
                req,
            ),
            (
                "response from a SIP port",
                SIP,
                40000,
                b"SIP/2.0 200 OK\r\n",
                resp,
            ),
            (
                "response between SIP ports",
                SIP,
                SIP,
                b"SIP/2.0 200 OK\r\n",
                resp,
            ),
            // Either port makes it SIP: a phone behind NAT answers from its mapping's
            // port, a server may send a request to the mapping's port.
            (
                "status line to a SIP port",
                40000,
                SIP,
                b"SIP/2.0 200 OK\r\n",
                resp,
            ),
            (
                "request from a SIP port only",
                SIP,
                40000,
                b"OPTIONS sip:x SIP/2.0\r\n",
                req,
            ),
            (
                "lower case",
                40000,
                SIP,
                b"options sip:x SIP/2.0\r\n",
                other,
            ),
            ("7 bytes of a method", 40000, SIP, b"OPTIONS", other),
            ("CRLF", 40000, SIP, b"\r\n", ka(Keepalive::Crlf)),
            ("CRLFCRLF", 40000, SIP, b"\r\n\r\n", ka(Keepalive::Crlf)),
            ("four zeros", 40000, SIP, &[0, 0, 0, 0], ka(Keepalive::Zero)),
            ("STUN", 40000, SIP, &stun, ka(Keepalive::Stun)),
            ("STUN cut to 19 bytes", 40000, SIP, &stun[..19], other),
            ("LF CR", 40000, SIP, b"\n\r", other),
            ("three CRLFs", 40000, SIP, b"\r\n\r\n\r\n", other),
            ("empty", 40000, SIP, b"", other),
        ] {
            let f = udp4(NAT_V4, sport, SERVER_V4, dport, payload);
            let (r, reads) = classify_frame(&f, &[SIP]);
            assert_eq!(r.map(|m| m.kind), want, "{name}");
            assert!(reads <= 1, "{name}: {reads} reads");
        }
    }

    #[test]
    fn classify_reads_no_payload_off_sip_ports() {
        let f = udp4(NAT_V4, 40000, SERVER_V4, 53, b"OPTIONS sip:x SIP/2.0\r\n");
        assert_eq!(classify_frame(&f, &[SIP]), (Err(Outcome::NotSip), 0));
        // The same frame with 53 as a SIP port.
        assert!(classify_frame(&f, &[53]).0.is_ok());
    }

    #[test]
    fn msg_carries_the_frame_facts() {
        let f = udp6(CLIENT_V6, 5060, SERVER_V6, SIP, &register(NAT_VIA));
        let (r, _) = classify_frame(&f, &[SIP]);
        let m = r.unwrap();
        assert_eq!(
            (m.ipv6, m.vlan, m.short, m.first_fragment),
            (true, false, false, false)
        );
        let mut f = udp4(NAT_V4, 5060, SERVER_V4, SIP, &register(NAT_VIA));
        f.truncate(f.len() - 10);
        let m = classify_frame(&f, &[SIP]).0.unwrap();
        assert!(m.short && !m.ipv6);
    }

    /// Parse, classify, scan and decide, as the program does.
    fn outcome(f: &[u8], maps: &Fake, at: Ingress) -> Outcome {
        let h = headers(f).unwrap();
        let p: &[u8] = f;
        let msg = classify(&p, &h, h.payload as usize, true, h.sport == SIP).unwrap();
        let payload = &f[h.payload as usize..][..h.payload_len as usize];
        decide(msg, &h, &Scan::run_chunked(payload), at, maps)
    }

    fn nat_req(via: &str) -> Vec<u8> {
        udp4(NAT_V4, NAT_PORT, SERVER_V4, SIP, &register(via))
    }

    fn msg4() -> Msg {
        Msg {
            kind: Kind::Request,
            short: false,
            first_fragment: false,
            ipv6: false,
            vlan: false,
        }
    }

    #[test]
    fn no_usable_via_needs_no_lookup() {
        let maps = Fake::role(role::INSIDE);
        let m = msg4();
        assert_eq!(
            outcome(&nat_req("X-Nothing: here"), &maps, AT),
            Outcome::NoVia(m)
        );
        let pad = format!("X-Pad: {}\r\n{NAT_VIA}", "a".repeat(1600));
        assert_eq!(
            outcome(&nat_req(&pad), &maps, AT),
            Outcome::ViaBeyondWindow(m)
        );
        // Past the window, but the headers ended inside it: simply no Via.
        let mut long = b"OPTIONS sip:x SIP/2.0\r\nX-A: b\r\n\r\n".to_vec();
        long.resize(1700, b'x');
        let f = udp4(NAT_V4, NAT_PORT, SERVER_V4, SIP, &long);
        assert_eq!(outcome(&f, &maps, AT), Outcome::NoVia(m));
        let bad = "Via: SIP/2.0/UDP 192.168.1.50:50x60;branch=z9hG4bK-1";
        assert_eq!(outcome(&nat_req(bad), &maps, AT), Outcome::MalformedVia(m));
        assert_eq!(maps.asked.get(), 0);
    }

    #[test]
    fn request_from_inside_is_counted_not_recorded() {
        let maps = Fake::role(role::INSIDE);
        let o = outcome(&nat_req(NAT_VIA), &maps, AT);
        let fl = flags::RPORT_EMPTY
            | flags::MAGIC_COOKIE
            | flags::SENT_BY_PRIVATE
            | flags::SENT_BY_DIFFERS
            | flags::PORT_DIFFERS;
        assert_eq!(
            o,
            Outcome::RequestFromInside {
                msg: msg4(),
                flags: fl
            }
        );
        // Neither the bindings nor the clock.
        assert_eq!(maps.asked.get(), IFACE | FORCE);
    }

    fn record(o: Outcome) -> (u64, Binding, bool, Then) {
        match o {
            Outcome::Record {
                key,
                binding,
                new,
                then,
                ..
            } => (key, binding, new, then),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn new_request_from_outside() {
        let maps = Fake::role(role::OUTSIDE);
        let (key, b, new, then) = record(outcome(&nat_req(NAT_VIA), &maps, AT));
        assert_eq!(key, transaction_key(b"z9hG4bK-1", b"", 0, b""));
        assert!(new);
        assert_eq!(then, Then::ToUserspace(3 * MAX_QUEUES + 5));
        assert_eq!(
            b,
            Binding {
                src_addr: v4m(NAT_V4),
                dst_addr: v4m(SERVER_V4),
                first_seen_ns: 1000,
                last_seen_ns: 1000,
                src_port: NAT_PORT,
                dst_port: SIP,
                sent_by_port: 5060,
                ifindex: 7,
                flags: flags::RPORT_EMPTY
                    | flags::MAGIC_COOKIE
                    | flags::SENT_BY_PRIVATE
                    | flags::SENT_BY_DIFFERS
                    | flags::PORT_DIFFERS,
                requests: 1,
                sent_by_v4: PHONE_V4,
                ..Binding::default()
            }
        );
        assert_eq!(maps.asked.get(), IFACE | FORCE | BINDING | NOW);
    }

    #[test]
    fn retransmission_keeps_first_seen_and_counts_requests() {
        let old = Binding {
            first_seen_ns: 5,
            last_seen_ns: 6,
            requests: 3,
            ..Binding::default()
        };
        let mut maps = Fake {
            binding: Some(old),
            ..Fake::role(role::OUTSIDE)
        };
        let (_, b, new, _) = record(outcome(&nat_req(NAT_VIA), &maps, AT));
        assert_eq!(
            (b.first_seen_ns, b.last_seen_ns, b.requests, new),
            (5, 1000, 4, false)
        );
        maps.binding = Some(Binding {
            requests: u32::MAX,
            ..old
        });
        let (_, b, new, _) = record(outcome(&nat_req(NAT_VIA), &maps, AT));
        assert_eq!((b.requests, new), (u32::MAX, false));
    }

    #[test]
    fn what_a_request_needs() {
        let outside = Fake::role(role::OUTSIDE);
        let then = |f: &[u8], maps: &Fake, at| record(outcome(f, maps, at)).3;
        let to_daemon = Then::ToUserspace(3 * MAX_QUEUES + 5);
        // Sent-by is the source and no rport: nothing to add.
        let exact = "Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-e";
        assert_eq!(then(&nat_req(exact), &outside, AT), Then::Pass);
        // ... unless the source is in a force-rport network.
        let forced = Fake {
            force: true,
            ..Fake::role(role::OUTSIDE)
        };
        let (_, b, _, t) = record(outcome(&nat_req(exact), &forced, AT));
        assert_eq!(
            (t, b.flags & flags::FORCE_RPORT),
            (to_daemon, flags::FORCE_RPORT)
        );
        // rport=N or received= already there: the values are still rewritten.
        let valued = "Via: SIP/2.0/UDP 203.0.113.1:32415;rport=1;branch=z9hG4bK-e";
        assert_eq!(then(&nat_req(valued), &outside, AT), to_daemon);
        // Sent-by differs, no rport: `received` is due.
        let differs = "Via: SIP/2.0/UDP 192.168.1.50:32415;branch=z9hG4bK-e";
        assert_eq!(then(&nat_req(differs), &outside, AT), to_daemon);
        // A first fragment is recorded but never rewritten.
        let mut frag = nat_req(NAT_VIA);
        frag[20] = 0x20;
        let (_, b, _, t) = record(outcome(&frag, &outside, AT));
        assert_eq!(
            (t, b.flags & flags::FRAGMENT),
            (Then::Pass, flags::FRAGMENT)
        );
        // A frame shorter than its UDP length: recorded, never handed over (the daemon
        // would count it a bad frame and drop it; hostile corpus, issue 13).
        let mut short = nat_req(NAT_VIA);
        short.truncate(short.len() - 4);
        let (_, _, _, t) = record(outcome(&short, &outside, AT));
        assert_eq!(t, Then::Pass);
        // No AF_XDP socket for an rx queue beyond the XSKMAP's.
        let at = Ingress {
            rx_queue: MAX_QUEUES,
            ..AT
        };
        assert_eq!(then(&nat_req(NAT_VIA), &outside, at), Then::QueueOutOfRange);
        // An interface rport was not told about: outside, slot 0.
        let unknown = Fake {
            now: 1,
            ..Fake::default()
        };
        assert_eq!(then(&nat_req(NAT_VIA), &unknown, AT), Then::ToUserspace(5));
    }

    #[test]
    fn ipv6_sent_by_is_left_to_userspace() {
        let maps = Fake::role(role::OUTSIDE);
        // An IPv6 literal: not compared here (text forms vary), but always rewritten.
        let via = "Via: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-6";
        let f = udp6(CLIENT_V6, SIP, SERVER_V6, SIP, &register(via));
        let (_, b, _, t) = record(outcome(&f, &maps, AT));
        assert_eq!(
            b.flags & (flags::SENT_BY_DIFFERS | flags::IPV6),
            flags::IPV6
        );
        assert_eq!(t, Then::ToUserspace(3 * MAX_QUEUES + 5));
        assert_eq!(b.sent_by_v4, [0; 4]);
        // An IPv4 sent-by over IPv6 always differs from the source.
        let f = udp6(CLIENT_V6, SIP, SERVER_V6, SIP, &register(NAT_VIA));
        let (_, b, _, _) = record(outcome(&f, &maps, AT));
        assert_ne!(b.flags & flags::SENT_BY_DIFFERS, 0);
    }

    fn recorded() -> Binding {
        Binding {
            src_addr: v4m(NAT_V4),
            src_port: NAT_PORT,
            dst_addr: v4m(SERVER_V4),
            dst_port: SIP,
            ..Binding::default()
        }
    }

    #[test]
    fn responses() {
        const V: &str =
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;received=203.0.113.1;rport=32415";
        let resp = |src, sport, dst, dport| udp4(src, sport, dst, dport, &ok_response(V));
        let m = Msg {
            kind: Kind::Response,
            ..msg4()
        };
        let inside = Fake {
            binding: Some(recorded()),
            ..Fake::role(role::INSIDE)
        };
        let legacy = resp(SERVER_V4, SIP, PHONE_V4, SIP);
        assert_eq!(
            outcome(&legacy, &inside, AT),
            Outcome::Steer {
                msg: m,
                addr: v4m(NAT_V4),
                port: NAT_PORT,
                by_tag: false,
            }
        );
        // Never the force-rport networks, nor the clock.
        assert_eq!(inside.asked.get(), IFACE | BINDING);
        // The NAT's address but another port: not the mapping, steered.
        let half = resp(SERVER_V4, SIP, NAT_V4, SIP);
        assert!(matches!(outcome(&half, &inside, AT), Outcome::Steer { .. }));
        let aware = resp(SERVER_V4, SIP, NAT_V4, NAT_PORT);
        assert_eq!(
            outcome(&aware, &inside, AT),
            Outcome::ResponseAlreadyCorrect {
                msg: m,
                tagged: false
            }
        );
        // Already correct is checked before the interface: also on an outside one.
        let outside = Fake {
            binding: Some(recorded()),
            ..Fake::role(role::OUTSIDE)
        };
        assert_eq!(
            outcome(&aware, &outside, AT),
            Outcome::ResponseAlreadyCorrect {
                msg: m,
                tagged: false
            }
        );
        assert_eq!(
            outcome(&legacy, &outside, AT),
            Outcome::ResponseNotFromInside {
                msg: m,
                tagged: false
            }
        );
        for other in [
            resp([198, 51, 100, 99], SIP, PHONE_V4, SIP),
            resp(SERVER_V4, 5080, PHONE_V4, SIP),
        ] {
            // 5080 as a SIP port too, so the frame is still a response.
            let h = headers(&other).unwrap();
            let p: &[u8] = &other;
            let msg = classify(&p, &h, h.payload as usize, false, true).unwrap();
            let payload = &other[h.payload as usize..][..h.payload_len as usize];
            let o = decide(msg, &h, &Scan::run_chunked(payload), AT, &inside);
            assert_eq!(o, Outcome::ResponseSourceMismatch(m));
        }
        let none = Fake::role(role::INSIDE);
        assert_eq!(outcome(&legacy, &none, AT), Outcome::ResponseNoBinding(m));
    }

    fn set(c: &[Counter]) -> Counters {
        let mut s = Counters::new();
        for c in c {
            s.add(*c);
        }
        s
    }

    #[test]
    fn counters_of_each_outcome() {
        let ok = Done {
            stored: true,
            delivered: true,
            in_xdp: false,
            ..Done::default()
        };
        let none = Done::default();
        let req = msg4();
        let resp = Msg {
            kind: Kind::Response,
            ..req
        };
        let every = Msg {
            short: true,
            first_fragment: true,
            ipv6: true,
            vlan: true,
            ..req
        };
        let nat = flags::RPORT_EMPTY
            | flags::SENT_BY_PRIVATE
            | flags::SENT_BY_DIFFERS
            | flags::PORT_DIFFERS;
        let rec = |msg, fl, new, then| Outcome::Record {
            msg,
            key: 1,
            binding: Binding {
                flags: fl,
                ..Binding::default()
            },
            new,
            then,
        };
        let steer = Outcome::Steer {
            msg: resp,
            addr: [0; 16],
            port: 1,
            by_tag: false,
        };
        for (o, done, want) in [
            (
                Outcome::Parse(ParseError::NotUdp),
                none,
                &[Packets, NonSip][..],
            ),
            (Outcome::NotSip, none, &[Packets, NonSip]),
            (
                Outcome::Parse(ParseError::Truncated),
                none,
                &[Packets, Truncated],
            ),
            (
                Outcome::Parse(ParseError::LaterFragment),
                none,
                &[Packets, IpFragment],
            ),
            (
                Outcome::Parse(ParseError::Ipv6Fragment),
                none,
                &[Packets, IpFragment],
            ),
            (
                Outcome::Keepalive(Keepalive::Crlf),
                none,
                &[Packets, KeepaliveCrlf],
            ),
            (
                Outcome::Keepalive(Keepalive::Zero),
                none,
                &[Packets, KeepaliveZero],
            ),
            (
                Outcome::Keepalive(Keepalive::Stun),
                none,
                &[Packets, KeepaliveStun],
            ),
            (Outcome::NotSipOnSipPort, none, &[Packets, NonSipOnSipPort]),
            (Outcome::NoVia(req), none, &[Packets, SipRequests, NoVia]),
            (
                Outcome::ViaBeyondWindow(resp),
                none,
                &[Packets, SipResponses, ViaBeyondWindow],
            ),
            (
                Outcome::MalformedVia(every),
                none,
                &[
                    Packets,
                    SipRequests,
                    Truncated,
                    IpFragment,
                    Ipv6,
                    Vlan,
                    MalformedVia,
                ],
            ),
            (
                Outcome::RequestFromInside {
                    msg: req,
                    flags: nat | flags::FORCE_RPORT,
                },
                none,
                &[
                    Packets,
                    SipRequests,
                    RportEmpty,
                    SentByDiffers,
                    SourcePortDiffers,
                    SentByPrivate,
                    ForceRport,
                    RequestFromInside,
                ],
            ),
            (
                rec(req, nat, true, Then::ToUserspace(0)),
                Done {
                    stored: true,
                    delivered: false,
                    in_xdp: false,
                    ..Done::default()
                },
                &[
                    Packets,
                    SipRequests,
                    RportEmpty,
                    SentByDiffers,
                    SourcePortDiffers,
                    SentByPrivate,
                    BindingRecorded,
                    BindingNew,
                    UserspaceUnavailable,
                ],
            ),
            (
                rec(req, 0, false, Then::ToUserspace(0)),
                ok,
                &[Packets, SipRequests, NoRport, BindingRecorded, ToUserspace],
            ),
            (
                rec(req, flags::RPORT_VALUE | flags::RECEIVED, false, Then::Pass),
                ok,
                &[
                    Packets,
                    SipRequests,
                    RportWithValue,
                    ReceivedPresent,
                    BindingRecorded,
                    RequestUnchanged,
                ],
            ),
            (
                rec(req, flags::SENT_BY_CGNAT, true, Then::QueueOutOfRange),
                ok,
                &[
                    Packets,
                    SipRequests,
                    NoRport,
                    SentByCgnat,
                    BindingRecorded,
                    BindingNew,
                    UserspaceUnavailable,
                ],
            ),
            // A refused write: neither recorded nor new.
            (
                rec(req, flags::SENT_BY_NAME, true, Then::Pass),
                none,
                &[
                    Packets,
                    SipRequests,
                    NoRport,
                    SentByName,
                    BindingUpdateFailed,
                    RequestUnchanged,
                ],
            ),
            (
                Outcome::ResponseNoBinding(resp),
                none,
                &[Packets, SipResponses, ResponseNoBinding, ResponseUntagged],
            ),
            (
                Outcome::ResponseAlreadyCorrect {
                    msg: resp,
                    tagged: false,
                },
                none,
                &[
                    Packets,
                    SipResponses,
                    ResponseAlreadyCorrect,
                    ResponseUntagged,
                ],
            ),
            (
                Outcome::ResponseNotFromInside {
                    msg: resp,
                    tagged: true,
                },
                none,
                &[Packets, SipResponses, ResponseNotFromInside],
            ),
            (
                Outcome::ResponseSourceMismatch(resp),
                none,
                &[
                    Packets,
                    SipResponses,
                    ResponseSourceMismatch,
                    ResponseUntagged,
                ],
            ),
            (
                steer,
                ok,
                &[
                    Packets,
                    SipResponses,
                    ResponseSteered,
                    BindingSteered,
                    ResponseUntagged,
                ],
            ),
            (
                steer,
                none,
                &[Packets, SipResponses, Truncated, ResponseUntagged],
            ),
        ] {
            assert_eq!(o.counters(done), set(want), "{o:?} {done:?}");
        }
    }

    #[test]
    fn lowest_slot_is_trailing_zeros() {
        for i in 0..64 {
            for above in [0, u64::MAX, 0x5555_5555_5555_5555] {
                let m = (1u64 << i) | (above << i);
                assert_eq!(Counters::lowest_slot(m), m.trailing_zeros(), "{m:#x}");
            }
        }
    }

    #[test]
    fn counters_set_basics() {
        let mut c = Counters::new();
        c.add_if(false, Vlan);
        assert_eq!(c, Counters::default());
        c.add_if(true, Vlan);
        c.add(Packets);
        c.add(ResponseSourceMismatch);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [Packets, Vlan, ResponseSourceMismatch]
        );
        assert_eq!(
            c.bits(),
            1 | 1 << Vlan as u32 | 1 << ResponseSourceMismatch as u32
        );
        assert!(c.contains(Vlan) && !c.contains(Ipv6));
    }
}
