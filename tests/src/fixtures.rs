//! The XDP contract as one table, in the style of Katran's lib/testing fixtures: each row
//! is a crafted frame, where it arrives (interface role, rx queue), the state before it
//! (bindings left by earlier requests, force-rport networks, daemon sockets), and what must
//! come of it: the verdict, the output frame, the exact counter deltas, the binding it
//! leaves (or none).
//!
//! One table, several runners, so that they cannot drift apart:
//! - kernel: tests/tests/xdp_fixtures.rs, every row through the real program
//!   (BPF_PROG_TEST_RUN) on devices of a namespace of its own ([`run_table`] over
//!   [`crate::xdp::Bed`]);
//! - pcap: tests/tests/replay.rs writes the rows' frames to captures and checks what
//!   `rport replay --json` says of each row;
//! - host: the same file, every row through `rport_ebpf::model` ([`crate::host::Host`]),
//!   no root; [`observe`] also puts both datapaths through the table side by side and
//!   compares what they did row by row, binding fields included;
//! - perf: `bench xdp` times the rows that carry a [`Fixture::bench`] label.
//!
//! A runner of another datapath implements [`Datapath`] and calls [`run_table`] then
//! [`report`].
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;
use rport_common::{
    Binding, Counter, flags as F,
    hash::transaction_key,
    role,
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};

use crate::packets::*;
use Counter::*;
use rport_common::tag::TagKeys;

/// `frame` (an untagged UDP frame of [`udp4`] or [`udp6`]) as its source would have sent
/// it to `to`:`port`: built anew by etherparse, checksums computed in full, so the steer
/// rewrite (incremental checksum updates) is checked against an independent computation.
fn resent_to(frame: &[u8], to: IpAddr, port: u16) -> Vec<u8> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).expect("a fixture's UDP frame");
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("a steered fixture frame is UDP")
    };
    match (p.net.expect("an IP frame"), to) {
        (NetSlice::Ipv4(ip), IpAddr::V4(to)) => udp4(
            ip.header().source(),
            u.source_port(),
            to.octets(),
            port,
            u.payload(),
        ),
        (NetSlice::Ipv6(ip), IpAddr::V6(to)) => udp6(
            ip.header().source(),
            u.source_port(),
            to.octets(),
            port,
            u.payload(),
        ),
        _ => panic!("steered to another family"),
    }
}

/// One row.
pub struct Fixture {
    /// What the row shows (unique in the table).
    pub name: String,
    /// The frame under test.
    pub frame: Vec<u8>,
    /// Role of the interface it arrives on ([`role::OUTSIDE`] or [`role::INSIDE`]).
    pub role: u32,
    /// The rx queue it arrives on (the devices of the kernel runner have 4).
    pub rx_queue: u32,
    /// The state before the frame.
    pub prior: Prior,
    /// Expected verdict.
    pub verdict: u32,
    /// Expected output frame.
    pub out: Out,
    /// Expected counter deltas over the frame (not its prior requests), exactly: a counter
    /// listed n times moves by n, every other one stays.
    pub counters: Vec<Counter>,
    /// The binding the frame must leave; `None`: it must leave no new key.
    pub binding: Option<ExpectBinding>,
    /// The row's name in `bench xdp`'s table, if it is timed there.
    pub bench: Option<&'static str>,
}

/// The state a row starts from: nothing but what is listed here (a runner clears the rest).
#[derive(Clone, Debug, Default)]
pub struct Prior {
    /// Requests run first, on the outside interface, rx queue 0: the bindings they leave
    /// are what a response looks up.
    pub requests: Vec<Vec<u8>>,
    /// `--force-rport` networks.
    pub force_rport: Vec<(IpAddr, u8)>,
    /// Rx queues of the outside interface with a daemon (AF_XDP) socket in XSKS.
    pub sockets: Vec<u32>,
    /// `TAG_KEYS` (keys and age limits); `None`: as loaded, no key (every tag invalid).
    /// The runners check tags against their real TAI clock (`keys::tai_now_s`), so rows
    /// make their tags relative to it when the table is built.
    pub tag_keys: Option<TagKeys>,
}

/// Expected output frame.
#[derive(Clone, Debug)]
pub enum Out {
    /// The frame leaves exactly as it came.
    Same,
    /// Exactly this frame (e.g. a response steered: new destination, checksums valid).
    Frame(Vec<u8>),
    /// A steered response. The kernel program hands the decision to TC: the frame leaves
    /// XDP unchanged behind its [`rport_common::SteerMeta`] (`with_meta`: metadata bytes,
    /// then the frame). A datapath without metadata room (a driver without it, and the
    /// host model, which has no TC program) steers in XDP instead: `in_xdp` is the frame
    /// with the new destination and valid checksums, and the frame also counts
    /// `steer_in_xdp` ([`Datapath::steers_in_xdp`]). Both are the same decision; that TC
    /// applies it right is proven on the wire by tests/tests/steer_csum.rs.
    HandedToTc { with_meta: Vec<u8>, in_xdp: Vec<u8> },
}

/// Expected binding.
#[derive(Clone, Debug)]
pub struct ExpectBinding {
    pub key: u64,
    pub src: [u8; 16],
    pub sport: u16,
    pub flags: u32,
    pub vlan: (u16, u16),
    pub requests: u32,
}

/// What a runner saw of one row's frame.
pub struct Seen<'a> {
    pub verdict: u32,
    pub out: &'a [u8],
    /// Counter deltas over the frame, in `Counter::ALL` order.
    pub counters: &'a [u64],
    /// Binding keys before the frame (after the prior requests).
    pub keys_before: &'a [u64],
    /// Every binding after it.
    pub bindings: &'a [(u64, Binding)],
    /// The datapath steers in XDP what the kernel program hands to TC
    /// ([`Datapath::steers_in_xdp`]).
    pub steers_in_xdp: bool,
}

/// A datapath a runner puts the table through.
pub trait Datapath {
    /// Forgets the previous row (bindings, force-rport networks, sockets) and sets up the
    /// force-rport networks and sockets of `prior` (its requests are run by [`run_table`]).
    fn reset(&mut self, prior: &Prior) -> Result<()>;
    /// Runs `frame` arriving on an interface of `role`, rx queue `rx_queue`: the verdict
    /// and the frame as it leaves.
    fn run(&mut self, frame: &[u8], role: u32, rx_queue: u32) -> Result<(u32, Vec<u8>)>;
    /// Every counter so far, in `Counter::ALL` order.
    fn counters(&mut self) -> Result<Vec<u64>>;
    /// Every binding, with its key.
    fn bindings(&mut self) -> Result<Vec<(u64, Binding)>>;
    /// True for a datapath that steers a response in XDP itself, where the kernel program
    /// hands it to TC ([`Out::HandedToTc`]): the host model.
    fn steers_in_xdp(&self) -> bool {
        false
    }
}

/// Runs every row of `table` on `dp`: one failure text per failed row.
pub fn run_table(dp: &mut impl Datapath, table: &[Fixture]) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    for f in table {
        dp.reset(&f.prior)?;
        for r in &f.prior.requests {
            dp.run(r, role::OUTSIDE, 0)?;
        }
        let keys_before: Vec<u64> = dp.bindings()?.iter().map(|(k, _)| *k).collect();
        let before = dp.counters()?;
        let (verdict, out) = dp.run(&f.frame, f.role, f.rx_queue)?;
        let after = dp.counters()?;
        let deltas: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let errs = f.check(&Seen {
            verdict,
            out: &out,
            counters: &deltas,
            keys_before: &keys_before,
            bindings: &dp.bindings()?,
            steers_in_xdp: dp.steers_in_xdp(),
        });
        if !errs.is_empty() {
            failures.push(format!("{}:\n    {}", f.name, errs.join("\n    ")));
        }
    }
    Ok(failures)
}

/// What one row's frame did on a datapath, for comparing two datapaths directly: the
/// verdict, the output frame, the counter deltas, and the bindings it left new or changed
/// (timestamps and ingress ifindex zeroed: those are the runner's clock and devices).
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    pub verdict: u32,
    pub out: Vec<u8>,
    pub counters: Vec<u64>,
    pub bindings: Vec<(u64, Binding)>,
}

/// Runs every row of `table` on `dp` as [`run_table`] does, and returns what each did.
pub fn observe(dp: &mut impl Datapath, table: &[Fixture]) -> Result<Vec<Observed>> {
    let norm = |mut b: Binding| {
        b.first_seen_ns = 0;
        b.last_seen_ns = 0;
        b.ifindex = 0;
        b
    };
    let mut all = Vec::new();
    for f in table {
        dp.reset(&f.prior)?;
        for r in &f.prior.requests {
            dp.run(r, role::OUTSIDE, 0)?;
        }
        let before: Vec<(u64, Binding)> = dp
            .bindings()?
            .into_iter()
            .map(|(k, b)| (k, norm(b)))
            .collect();
        let c0 = dp.counters()?;
        let (verdict, out) = dp.run(&f.frame, f.role, f.rx_queue)?;
        let c1 = dp.counters()?;
        let mut bindings: Vec<(u64, Binding)> = dp
            .bindings()?
            .into_iter()
            .map(|(k, b)| (k, norm(b)))
            .filter(|kb| !before.contains(kb))
            .collect();
        bindings.sort_by_key(|(k, _)| *k);
        all.push(Observed {
            verdict,
            out,
            counters: c1.iter().zip(&c0).map(|(a, b)| a - b).collect(),
            bindings,
        });
    }
    Ok(all)
}

/// Every difference between what two datapaths did with `table`'s rows, one line each,
/// beyond the one by construction: a row handed to TC by `a` (the kernel) and steered in
/// XDP by `b` (the host model) differs in its output frame (each checked against the row
/// by [`run_table`]) and in `steer_in_xdp`.
pub fn differences(table: &[Fixture], a: &[Observed], b: &[Observed]) -> Vec<String> {
    let mut d = Vec::new();
    for ((f, x), y) in table.iter().zip(a).zip(b) {
        let mut yc = y.counters.clone();
        let tc = matches!(f.out, Out::HandedToTc { .. });
        if tc {
            yc[Counter::SteerInXdp as usize] = yc[Counter::SteerInXdp as usize].saturating_sub(1);
        }
        if x.verdict != y.verdict {
            d.push(format!(
                "{}: verdict {} vs {}",
                f.name, x.verdict, y.verdict
            ));
        }
        if x.counters != yc {
            d.push(format!("{}: counters {:?} vs {:?}", f.name, x.counters, yc));
        }
        if !tc && x.out != y.out {
            d.push(format!("{}: output frames differ", f.name));
        }
        if x.bindings != y.bindings {
            d.push(format!(
                "{}: bindings {:?} vs {:?}",
                f.name, x.bindings, y.bindings
            ));
        }
    }
    d
}

/// Panics with every failure, or prints the row count.
pub fn report(runner: &str, table: &[Fixture], failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{runner}: {} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    println!("{runner}: {} fixture rows passed", table.len());
}

/// Counter deltas of a list of counters (each occurrence counts one), in `Counter::ALL`
/// order.
pub fn tally(counters: &[Counter]) -> Vec<u64> {
    let mut v = vec![0u64; Counter::ALL.len()];
    for c in counters {
        v[*c as usize] += 1;
    }
    v
}

impl Fixture {
    /// Everything `seen` gets wrong, one line each.
    pub fn check(&self, seen: &Seen<'_>) -> Vec<String> {
        let mut errs = Vec::new();
        if seen.verdict != self.verdict {
            errs.push(format!("verdict {} want {}", seen.verdict, self.verdict));
        }
        let mut want = tally(&self.counters);
        let tc = matches!(self.out, Out::HandedToTc { .. });
        if tc && seen.steers_in_xdp {
            want[Counter::SteerInXdp as usize] += 1;
        }
        for (i, c) in Counter::ALL.iter().enumerate() {
            let d = seen.counters.get(i).copied().unwrap_or(0);
            if d != want[i] {
                errs.push(format!(
                    "counter {} moved by {d}, want {}",
                    c.name(),
                    want[i]
                ));
            }
        }
        match &self.binding {
            None => {
                let new: Vec<_> = seen
                    .bindings
                    .iter()
                    .filter(|(k, _)| !seen.keys_before.contains(k))
                    .collect();
                if !new.is_empty() {
                    errs.push(format!("unexpected binding {new:?}"));
                }
            }
            Some(e) => match seen.bindings.iter().find(|(k, _)| *k == e.key) {
                None => errs.push(format!(
                    "no binding under key {:#x}; have {:?}",
                    e.key, seen.bindings
                )),
                Some((_, b)) => e.check(b, &mut errs),
            },
        }
        let want = match &self.out {
            Out::Same => &self.frame,
            Out::Frame(f) => f,
            Out::HandedToTc { in_xdp, .. } if seen.steers_in_xdp => in_xdp,
            Out::HandedToTc { with_meta, .. } => with_meta,
        };
        if seen.out != want.as_slice() {
            let at = seen
                .out
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(seen.out.len().min(want.len()));
            errs.push(format!(
                "output frame ({} bytes) differs from the {} ({} bytes) from byte {at} on",
                seen.out.len(),
                match self.out {
                    Out::Same => "input",
                    Out::Frame(_) => "expected frame",
                    Out::HandedToTc { .. } if seen.steers_in_xdp => "frame steered in XDP",
                    Out::HandedToTc { .. } => "frame with TC metadata",
                },
                want.len()
            ));
        }
        errs
    }
}

impl ExpectBinding {
    fn check(&self, b: &Binding, errs: &mut Vec<String>) {
        if b.src_addr != self.src || b.src_port != self.sport {
            errs.push(format!(
                "binding source {:?}:{} want {:?}:{}",
                b.src_addr, b.src_port, self.src, self.sport
            ));
        }
        if b.flags != self.flags {
            errs.push(format!(
                "binding flags {:#x} want {:#x}",
                b.flags, self.flags
            ));
        }
        if (b.vlan, b.vlan_inner) != self.vlan {
            errs.push(format!(
                "binding vlan {:?} want {:?}",
                (b.vlan, b.vlan_inner),
                self.vlan
            ));
        }
        if b.requests != self.requests {
            errs.push(format!(
                "binding requests {} want {}",
                b.requests, self.requests
            ));
        }
        if b.last_seen_ns < b.first_seen_ns || b.first_seen_ns == 0 {
            errs.push("binding timestamps not set".into());
        }
    }
}

/// A row with the defaults: outside interface, rx queue 0, no prior state, passed
/// unchanged.
fn row(
    name: &str,
    frame: Vec<u8>,
    counters: &[Counter],
    binding: Option<ExpectBinding>,
) -> Fixture {
    Fixture {
        name: name.into(),
        frame,
        role: role::OUTSIDE,
        rx_queue: 0,
        prior: Prior::default(),
        verdict: XDP_PASS,
        out: Out::Same,
        counters: counters.to_vec(),
        binding,
        bench: None,
    }
}

impl Fixture {
    fn inside(mut self) -> Self {
        self.role = role::INSIDE;
        self
    }
    fn queue(mut self, q: u32) -> Self {
        self.rx_queue = q;
        self
    }
    fn after(mut self, requests: Vec<Vec<u8>>) -> Self {
        self.prior.requests = requests;
        self
    }
    fn force_rport(mut self, net: (IpAddr, u8)) -> Self {
        self.prior.force_rport.push(net);
        self
    }
    fn socket(mut self, q: u32) -> Self {
        self.prior.sockets.push(q);
        self
    }
    fn verdict(mut self, v: u32) -> Self {
        self.verdict = v;
        self
    }
    /// Steered: the frame leaves unchanged, with the decision for the TC program in its
    /// XDP metadata ([`rport_common::SteerMeta`]; TC rewrites with the kernel's checksum
    /// helpers, proven on the wire by tests/tests/steer_csum.rs).
    fn handed_to_tc(mut self, to: IpAddr, port: u16) -> Self {
        let ipv6 = to.is_ipv6();
        let m = rport_common::SteerMeta {
            magic: rport_common::SteerMeta::MAGIC,
            l3: 14,
            l4: if ipv6 { 54 } else { 34 },
            addr: rport_common::addr_to_16(to),
            port_be: port.to_be(),
            ipv6: ipv6 as u16,
        };
        // SAFETY: SteerMeta is repr(C) plain data without padding (layout test in
        // rport-common); its bytes are what XDP writes into the metadata area.
        let meta: [u8; std::mem::size_of::<rport_common::SteerMeta>()] =
            unsafe { std::mem::transmute(m) };
        let mut with_meta = meta.to_vec();
        with_meta.extend_from_slice(&self.frame);
        let in_xdp = resent_to(&self.frame, to, port);
        self.out = Out::HandedToTc { with_meta, in_xdp };
        self
    }
    fn keys(mut self, k: TagKeys) -> Self {
        self.prior.tag_keys = Some(k);
        self
    }
    fn bench(mut self, label: &'static str) -> Self {
        self.bench = Some(label);
        self
    }
}

const V: &str = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport";
/// Counters of a REGISTER with `;rport` and a private sent-by, from a NAT, with no daemon,
/// under a key not seen before.
const REQ_NAT: &[Counter] = &[
    Packets,
    SipRequests,
    RportEmpty,
    SentByDiffers,
    SourcePortDiffers,
    SentByPrivate,
    BindingRecorded,
    BindingNew,
    UserspaceUnavailable,
];
const NAT_FLAGS: u32 =
    F::RPORT_EMPTY | F::SENT_BY_PRIVATE | F::MAGIC_COOKIE | F::SENT_BY_DIFFERS | F::PORT_DIFFERS;

/// Name of the 1,400-byte non-SIP row: `bench xdp` runs it between two single runs.
pub const NON_SIP_1400: &str = "1,400 bytes of UDP to port 443 (not SIP)";

fn v4m(a: [u8; 4]) -> [u8; 16] {
    rport_common::addr_to_16(Ipv4Addr::from(a).into())
}

fn key(branch: &str) -> u64 {
    transaction_key(branch.as_bytes(), b"", 0, b"")
}

fn nat_req(via: &str) -> Vec<u8> {
    udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via))
}

fn bind(branch: &str, flags: u32) -> Option<ExpectBinding> {
    Some(ExpectBinding {
        key: key(branch),
        src: v4m(NAT_V4),
        sport: NAT_PORT,
        flags,
        vlan: (0, 0),
        requests: 1,
    })
}

fn with(c: &[Counter], extra: &[Counter]) -> Vec<Counter> {
    [c, extra].concat()
}

fn without(c: &[Counter], gone: &[Counter]) -> Vec<Counter> {
    c.iter().copied().filter(|x| !gone.contains(x)).collect()
}

/// The table.
pub fn table() -> Vec<Fixture> {
    let mut t = vec![
        row("REGISTER over IPv4 with ;rport and a private sent-by", nat_req(V), REQ_NAT, bind("z9hG4bK-1", NAT_FLAGS))
            .bench("REGISTER, Via first (;rport, private sent-by)"),
        row(
            "Via 1,100 bytes in, after a long header (inside the scan window)",
            nat_req(&format!("X-Pad: {}\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-far;rport", "p".repeat(1060))),
            REQ_NAT,
            bind("z9hG4bK-far", NAT_FLAGS),
        )
        .bench("REGISTER, Via 1,100 bytes in"),
        row(
            "compact form `v:` in lower case",
            nat_req("v: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-2;rport"),
            REQ_NAT,
            bind("z9hG4bK-2", NAT_FLAGS),
        ),
        row(
            "upper-case name, whitespace before the colon and around / : ; =",
            nat_req("VIA  : SIP / 2.0 / UDP 192.168.1.50 : 5060 ; branch = z9hG4bK-3 ; RPORT"),
            REQ_NAT,
            bind("z9hG4bK-3", NAT_FLAGS),
        ),
        row(
            "Via folded over three lines",
            nat_req("Via: SIP/2.0/UDP\r\n 192.168.1.50:5060\r\n\t;branch=z9hG4bK-4;rport"),
            REQ_NAT,
            bind("z9hG4bK-4", NAT_FLAGS),
        ),
        row(
            "two Via values on one line: only the first counts (no rport there)",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-5, SIP/2.0/UDP 198.51.100.99;branch=z9hG4bK-x;rport"),
            &[Packets, SipRequests, NoRport, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, BindingNew, UserspaceUnavailable],
            bind("z9hG4bK-5", NAT_FLAGS & !F::RPORT_EMPTY),
        ),
        row(
            "sent-by without a port (5060 implied)",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-6;rport"),
            REQ_NAT,
            bind("z9hG4bK-6", NAT_FLAGS),
        ),
        row(
            "sent-by is the source, no rport, no Contact: nothing to do",
            udp4(NAT_V4, 5060, SERVER_V4, 5060, &message("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-7")),
            &[Packets, SipRequests, NoRport, BindingRecorded, BindingNew, RequestUnchanged],
            Some(ExpectBinding { key: key("z9hG4bK-7"), src: v4m(NAT_V4), sport: 5060, flags: F::MAGIC_COOKIE, vlan: (0, 0), requests: 1 }),
        ),
        row(
            "sent-by is the source, no rport, a Contact: to the daemon, which tags Contacts",
            udp4(NAT_V4, 5060, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-7c")),
            &[Packets, SipRequests, NoRport, BindingRecorded, BindingNew, UserspaceUnavailable],
            Some(ExpectBinding { key: key("z9hG4bK-7c"), src: v4m(NAT_V4), sport: 5060, flags: F::MAGIC_COOKIE, vlan: (0, 0), requests: 1 }),
        ),
        row(
            "sent-by is the source, with rport: the rport still gets its value",
            udp4(NAT_V4, 5060, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-8;rport")),
            &[Packets, SipRequests, RportEmpty, BindingRecorded, BindingNew, UserspaceUnavailable],
            Some(ExpectBinding { key: key("z9hG4bK-8"), src: v4m(NAT_V4), sport: 5060, flags: F::MAGIC_COOKIE | F::RPORT_EMPTY, vlan: (0, 0), requests: 1 }),
        ),
        row(
            "received and rport=N already present",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;received=203.0.113.1;rport=32415;branch=z9hG4bK-9"),
            &[Packets, SipRequests, RportWithValue, ReceivedPresent, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, BindingNew, UserspaceUnavailable],
            bind("z9hG4bK-9", (NAT_FLAGS & !F::RPORT_EMPTY) | F::RPORT_VALUE | F::RECEIVED),
        ),
        row(
            "carrier-grade NAT (RFC 6598) sent-by",
            nat_req("Via: SIP/2.0/UDP 100.64.1.2:5060;branch=z9hG4bK-10;rport"),
            &[Packets, SipRequests, RportEmpty, SentByDiffers, SourcePortDiffers, SentByCgnat, BindingRecorded, BindingNew, UserspaceUnavailable],
            bind("z9hG4bK-10", (NAT_FLAGS & !F::SENT_BY_PRIVATE) | F::SENT_BY_CGNAT),
        ),
        row(
            "domain-name sent-by",
            nat_req("Via: SIP/2.0/UDP phone.invalid:5060;branch=z9hG4bK-11;rport"),
            &[Packets, SipRequests, RportEmpty, SentByDiffers, SourcePortDiffers, SentByName, BindingRecorded, BindingNew, UserspaceUnavailable],
            bind("z9hG4bK-11", (NAT_FLAGS & !F::SENT_BY_PRIVATE) | F::SENT_BY_NAME),
        ),
        row(
            "RFC 2543 branch (no magic cookie): the key adds sent-by and Call-ID",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=1234;rport"),
            REQ_NAT,
            Some(ExpectBinding {
                key: transaction_key(b"1234", b"192.168.1.50", 5060, b"call-1@192.168.1.50"),
                src: v4m(NAT_V4),
                sport: NAT_PORT,
                flags: NAT_FLAGS & !F::MAGIC_COOKIE,
                vlan: (0, 0),
                requests: 1,
            }),
        ),
        row(
            "IPv6 with a bracketed sent-by",
            udp6(CLIENT_V6, 5060, SERVER_V6, 5060, &register("Via: SIP/2.0/UDP [2001:db8:1::50]:5060;branch=z9hG4bK-13;rport")),
            &[Packets, Ipv6, SipRequests, RportEmpty, BindingRecorded, BindingNew, UserspaceUnavailable],
            Some(ExpectBinding { key: key("z9hG4bK-13"), src: CLIENT_V6, sport: 5060, flags: F::IPV6 | F::SENT_BY_V6 | F::RPORT_EMPTY | F::MAGIC_COOKIE, vlan: (0, 0), requests: 1 }),
        ),
        row(
            "one 802.1Q tag",
            udp4_vlan(&[100], NAT_V4, NAT_PORT, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-14;rport")),
            &with(REQ_NAT, &[Vlan]),
            Some(ExpectBinding { key: key("z9hG4bK-14"), src: v4m(NAT_V4), sport: NAT_PORT, flags: NAT_FLAGS, vlan: (100, 0), requests: 1 }),
        ),
        row(
            "two tags (QinQ)",
            udp4_vlan(&[100, 200], NAT_V4, NAT_PORT, SERVER_V4, 5060, &register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-15;rport")),
            &with(REQ_NAT, &[Vlan]),
            Some(ExpectBinding { key: key("z9hG4bK-15"), src: v4m(NAT_V4), sport: NAT_PORT, flags: NAT_FLAGS, vlan: (100, 200), requests: 1 }),
        ),
        row(
            "IPv4 header with 8 bytes of options",
            with_ipv4_options(&nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-16;rport"), 8),
            REQ_NAT,
            bind("z9hG4bK-16", NAT_FLAGS),
        ),
        row(
            "first IPv4 fragment: recorded, counted, passed (no rewrite of a fragment)",
            as_fragment(&nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-17;rport"), true, 0),
            &[Packets, IpFragment, SipRequests, RportEmpty, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, BindingNew, RequestUnchanged],
            bind("z9hG4bK-17", NAT_FLAGS | F::FRAGMENT),
        ),
        row("later IPv4 fragment", as_fragment(&nat_req(V), false, 100), &[Packets, IpFragment], None),
        row("DNS: UDP to port 53", udp4(NAT_V4, 40000, SERVER_V4, 53, b"\x12\x34\x01\x00\x00\x01"), &[Packets, NonSip], None)
            .bench("non-SIP UDP (DNS)"),
        row(NON_SIP_1400, udp4(NAT_V4, 40001, SERVER_V4, 443, &[0x17; 1400]), &[Packets, NonSip], None),
        row("TCP to 5060", tcp4(NAT_V4, 40000, SERVER_V4, 5060, &register(V)), &[Packets, NonSip], None),
        row("ARP", { let mut f = vec![0xffu8; 6]; f.extend_from_slice(&CLIENT_MAC); f.extend_from_slice(&[0x08, 0x06]); f.extend_from_slice(&[0u8; 28]); f }, &[Packets, NonSip], None),
        row("CRLF keep-alive", udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"\r\n\r\n"), &[Packets, KeepaliveCrlf], None),
        row("four-zero-byte keep-alive", udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &[0, 0, 0, 0]), &[Packets, KeepaliveZero], None),
        row(
            "STUN binding request on 5060",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            &[Packets, KeepaliveStun],
            None,
        ),
        row("lower-case text on 5060 is not SIP", udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"hello, this is not sip"), &[Packets, NonSipOnSipPort], None),
        row("no Via at all", nat_req("X-Nothing: here"), &[Packets, SipRequests, NoVia], None),
        row(
            "Via after other headers",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"OPTIONS sip:198.51.100.10 SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:a@198.51.100.10>;tag=1\r\nTo: <sip:a@198.51.100.10>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-27;rport\r\nContent-Length: 0\r\n\r\n"),
            REQ_NAT,
            bind("z9hG4bK-27", NAT_FLAGS),
        ),
        row(
            "Via beyond the scan window",
            nat_req(&format!("X-Pad: {}\r\n{V}", "a".repeat(1600))),
            &[Packets, SipRequests, ViaBeyondWindow],
            None,
        ),
        row(
            "a 1500-byte packet",
            {
                let via = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-29;rport";
                let base = nat_req(via).len();
                nat_req(&format!("{via}\r\nX-Pad: {}", "b".repeat(1514 - base - 9)))
            },
            REQ_NAT,
            bind("z9hG4bK-29", NAT_FLAGS),
        ),
        row(
            "request with truncated payload (UDP length says more)",
            { let mut f = nat_req(V); f.truncate(14 + 20 + 8 + 20); f },
            &[Packets, SipRequests, Truncated, NoVia],
            None,
        ),
        // Its Via whole, but the frame 4 bytes shorter than the UDP length: recorded and
        // passed, never handed to the daemon (which would drop it as a bad frame, where
        // a router forwards it and the receiver's UDP drops it). Found by the hostile
        // corpus (tests/tests/hostile_corpus.rs), issue 13.
        row(
            "request with ;rport cut 4 bytes short of its UDP length: passed, not to the daemon",
            { let mut f = nat_req(V); f.truncate(f.len() - 4); f },
            &[Packets, SipRequests, Truncated, RportEmpty, SentByDiffers, SourcePortDiffers, SentByPrivate, BindingRecorded, BindingNew, RequestUnchanged],
            bind("z9hG4bK-1", NAT_FLAGS),
        )
        .socket(0),
    ];
    // Truncation at every header boundary: inside Ethernet, VLAN, IPv4, IPv6, UDP.
    let full = nat_req(V);
    // (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, as a NIC never
    // delivers them, so the first cut is right after it.)
    for (cut, what) in [
        (14, "IPv4 (Ethernet header only)"),
        (14 + 19, "IPv4"),
        (14 + 20 + 7, "UDP"),
    ] {
        t.push(row(
            &format!("cut before the end of the {what} header"),
            full[..cut].to_vec(),
            &[Packets, Truncated],
            None,
        ));
    }
    let tagged = udp4_vlan(&[7], NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(V));
    t.push(row(
        "cut inside the VLAN tag",
        tagged[..16].to_vec(),
        &[Packets, Truncated],
        None,
    ));
    let v6 = udp6(CLIENT_V6, 5060, SERVER_V6, 5060, &register(V));
    t.push(row(
        "cut inside the IPv6 header",
        v6[..14 + 39].to_vec(),
        &[Packets, Truncated],
        None,
    ));

    // A request from an inside interface (server toward client) is not recorded.
    t.push(
        row(
            "request arriving on an inside interface",
            nat_req(V),
            &[
                Packets,
                SipRequests,
                RportEmpty,
                SentByDiffers,
                SourcePortDiffers,
                SentByPrivate,
                RequestFromInside,
            ],
            None,
        )
        .inside(),
    );

    // Retransmission: same branch twice, one binding counting two requests.
    t.push(
        row(
            "retransmission refreshes the same binding",
            nat_req(V),
            &without(REQ_NAT, &[BindingNew]),
            Some(ExpectBinding {
                requests: 2,
                ..bind("z9hG4bK-1", NAT_FLAGS).unwrap()
            }),
        )
        .after(vec![nat_req(V)]),
    );

    // The daemon: its socket for the queue the request came in on takes it.
    t.push(
        row(
            "daemon socket on the request's rx queue: redirected to it",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-32;rport"),
            &with(&without(REQ_NAT, &[UserspaceUnavailable]), &[ToUserspace]),
            bind("z9hG4bK-32", NAT_FLAGS),
        )
        .queue(2)
        .socket(2)
        .verdict(XDP_REDIRECT),
    );
    t.push(
        row(
            "daemon socket on another rx queue only: passed, unrewritten",
            nat_req("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-33;rport"),
            REQ_NAT,
            bind("z9hG4bK-33", NAT_FLAGS),
        )
        .queue(1)
        .socket(2),
    );
    // --force-rport: a client in the network is treated as if it had sent ;rport.
    t.push(
        row(
            "force-rport network, sent-by is the source, no rport: to the daemon all the same",
            udp4(
                NAT_V4,
                5060,
                SERVER_V4,
                5060,
                &register("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-34"),
            ),
            &[
                Packets,
                SipRequests,
                NoRport,
                ForceRport,
                BindingRecorded,
                BindingNew,
                UserspaceUnavailable,
            ],
            Some(ExpectBinding {
                key: key("z9hG4bK-34"),
                src: v4m(NAT_V4),
                sport: 5060,
                flags: F::MAGIC_COOKIE | F::FORCE_RPORT,
                vlan: (0, 0),
                requests: 1,
            }),
        )
        .force_rport((IpAddr::V4(Ipv4Addr::new(203, 0, 113, 0)), 24)),
    );

    // Responses: the request (run first) leaves the binding they are matched against.
    let resp_via =
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;received=203.0.113.1;rport=32415";
    t.push(
        row(
            "response from an rport-aware server, already to the NAT mapping: untouched",
            udp4(SERVER_V4, 5060, NAT_V4, NAT_PORT, &ok_response(resp_via)),
            &[
                Packets,
                SipResponses,
                ResponseAlreadyCorrect,
                ResponseUntagged,
            ],
            None,
        )
        .inside()
        .after(vec![nat_req(V)])
        .bench("200 OK to the NAT mapping (already correct)"),
    );
    t.push(
        row(
            "response from a legacy server to the private sent-by: steered to the NAT mapping",
            udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp_via)),
            &[
                Packets,
                SipResponses,
                ResponseSteered,
                BindingSteered,
                ResponseUntagged,
            ],
            None,
        )
        .inside()
        .after(vec![nat_req(V)])
        .handed_to_tc(IpAddr::V4(NAT_V4.into()), NAT_PORT)
        .bench("200 OK to the private sent-by (steered)"),
    );
    let v6_via = "Via: SIP/2.0/UDP [2001:db8:ff::50]:5060;branch=z9hG4bK-35;rport";
    let v6_resp_via = "Via: SIP/2.0/UDP [2001:db8:ff::50]:5060;branch=z9hG4bK-35;received=2001:db8:1::50;rport=32415";
    t.push(
        row(
            "IPv6 response from a legacy server to the phone's own address: steered to the translated one",
            udp6(SERVER_V6, 5060, PHONE_V6, 5060, &ok_response(v6_resp_via)),
            &[Packets, Ipv6, SipResponses, ResponseSteered, BindingSteered, ResponseUntagged],
            None,
        )
        .inside()
        .after(vec![udp6(CLIENT_V6, NAT_PORT, SERVER_V6, 5060, &register(v6_via))])
        .handed_to_tc(IpAddr::V6(CLIENT_V6.into()), NAT_PORT),
    );
    t.push(
        row(
            "legacy response on an outside interface: never steered (anti-reflection)",
            udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp_via)),
            &[
                Packets,
                SipResponses,
                ResponseNotFromInside,
                ResponseUntagged,
            ],
            None,
        )
        .after(vec![nat_req(V)]),
    );
    t.push(
        row(
            "legacy response from another host than the request went to: never steered",
            udp4(
                [198, 51, 100, 99],
                5060,
                PHONE_V4,
                5060,
                &ok_response(resp_via),
            ),
            &[
                Packets,
                SipResponses,
                ResponseSourceMismatch,
                ResponseUntagged,
            ],
            None,
        )
        .inside()
        .after(vec![nat_req(V)]),
    );
    t.push(
        row(
            "response without a binding",
            udp4(
                SERVER_V4,
                5060,
                PHONE_V4,
                5060,
                &ok_response("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-none"),
            ),
            &[Packets, SipResponses, ResponseNoBinding, ResponseUntagged],
            None,
        )
        .inside()
        .bench("200 OK to the private sent-by, no binding, no tag (not steered)"),
    );
    tag_rows(&mut t);
    contact_rows(&mut t);
    t
}

/// The fixture tables' tag key (id 1), and a key some other gateway has (the same id).
pub const TAG_KEY: [u8; 16] = [0x5a; 16];
const OTHER_KEY: [u8; 16] = [0xa5; 16];

/// `TAG_KEYS` with [`TAG_KEY`] current (id 1) and the default age limits.
pub fn tag_keys() -> TagKeys {
    use rport_common::tag::{TagConf, TagKey};
    let mut k = TagKeys {
        conf: TagConf::DEFAULT,
        current: 1,
        ..TagKeys::default()
    };
    k.slots[1] = TagKey {
        key: TAG_KEY,
        created_tai_s: 0,
        id: 1,
        valid: 1,
        _pad: [0; 6],
    };
    k
}

/// The `rptag` value rport's daemon would put in a request to `server` from the NAT
/// mapping, under `key` (id 1), of `kind`, made `age_s` seconds before now (TAI, the
/// clock both the kernel and the host runner check against).
pub fn tag(key: &[u8; 16], kind: u8, server: ([u8; 4], u16), age_s: u64) -> String {
    use rport_common::tag::{self, Tag};
    let made = rport_userspace::datapath::keys::tai_now_s() - age_s;
    let t = Tag::new(1, kind, v4m(NAT_V4), NAT_PORT, made).sign(key, &v4m(server.0), server.1, 0);
    String::from_utf8(tag::encode(&t).as_bytes().to_vec()).expect("hex")
}

/// A legacy server's 200 OK toward the phone's private sent-by, whose top Via carries
/// `rptag`: steered by the tag alone when it is good (no row here leaves a binding, so
/// without the tag check every one of them would count `response_no_binding`).
pub fn tagged_resp(from: [u8; 4], rptag: &str) -> Vec<u8> {
    let via = format!(
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-t;received=203.0.113.1;rport=32415;rptag={rptag}"
    );
    udp4(from, 5060, PHONE_V4, 5060, &ok_response(&via))
}

/// Every outcome of a response's tag. Each row but the first would be steered (toward
/// the NAT mapping its tag names) if the check that refuses it were gone, and the first
/// would count `response_no_binding` (no request ran before it) without the tag path: so
/// a row fails when its check is removed.
fn tag_rows(t: &mut Vec<Fixture>) {
    use rport_common::tag::{KIND_CONTACT, KIND_VIA};
    let server = (SERVER_V4, 5060);
    let good = tag(&TAG_KEY, KIND_VIA, server, 10);
    let refused = |c: Counter| vec![Packets, SipResponses, c];
    t.push(
        row(
            "tag steers a response with no binding (stateless)",
            tagged_resp(SERVER_V4, &good),
            &[Packets, SipResponses, ResponseSteered, TagSteered],
            None,
        )
        .inside()
        .keys(tag_keys())
        .handed_to_tc(IpAddr::V4(NAT_V4.into()), NAT_PORT)
        .bench("200 OK to the private sent-by (steered by its tag, no binding)"),
    );
    // One MAC digit changed (the last: the MAC is the tag's tail).
    let mut forged = good.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    t.push(
        row(
            "tag with a forged MAC: refused",
            tagged_resp(SERVER_V4, &forged),
            &refused(TagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys())
        .bench("200 OK with a forged tag (MAC checked, refused)"),
    );
    t.push(
        row(
            "tag made under another gateway's key (same key id): refused",
            tagged_resp(SERVER_V4, &tag(&OTHER_KEY, KIND_VIA, server, 10)),
            &refused(TagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    // 400 s: past the Via limit (300 s) by more than one 16-second step.
    t.push(
        row(
            "tag older than its age limit: refused as expired",
            tagged_resp(SERVER_V4, &tag(&TAG_KEY, KIND_VIA, server, 400)),
            &refused(TagExpired),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    t.push(
        row(
            "tag made for another server than the response's source: refused",
            tagged_resp([198, 51, 100, 99], &good),
            &refused(TagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    t.push(
        row(
            "good tag in a response on an outside interface: never steered (anti-reflection)",
            tagged_resp(SERVER_V4, &good),
            &refused(ResponseNotFromInside),
            None,
        )
        .keys(tag_keys()),
    );
    t.push(
        row(
            "Contact-kind tag in a Via: refused",
            tagged_resp(SERVER_V4, &tag(&TAG_KEY, KIND_CONTACT, server, 10)),
            &refused(TagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
}

/// A Contact tag toward the NAT mapping for requests from `server` (any of its ports:
/// port 0 in the MAC), of `kind`, made `age_s` seconds ago.
fn contact_tag(key: &[u8; 16], kind: u8, server: [u8; 4], age_s: u64) -> String {
    tag(key, kind, (server, 0), age_s)
}

/// A PBX's INVITE to the Contact a phone registered through rport (its tag in the
/// Request-URI), from `from`:5080 (not the port the REGISTER went to: a Contact tag binds
/// the server's address only) to `to`.
fn tagged_invite(from: [u8; 4], to: ([u8; 4], u16), rptag: &str) -> Vec<u8> {
    tagged_invite_from(from, 5080, to, rptag)
}

/// [`tagged_invite`] from port `sport`.
fn tagged_invite_from(from: [u8; 4], sport: u16, to: ([u8; 4], u16), rptag: &str) -> Vec<u8> {
    let m = format!(
        "INVITE sip:100@192.168.1.50:5060;rptag={rptag} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5080;branch=z9hG4bK-pbx1\r\nMax-Forwards: 70\r\nFrom: <sip:caller@198.51.100.10>;tag=9\r\nTo: <sip:100@198.51.100.10>\r\nCall-ID: in-1@198.51.100.10\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@198.51.100.10:5080>\r\nContent-Length: 0\r\n\r\n"
    );
    udp4(from, sport, to.0, to.1, m.as_bytes())
}

/// Requests toward a client (issue 11): every outcome of a Request-URI's Contact tag, and
/// a client's answer with a Contact. Each refused row would be steered if its check were
/// gone; the steered one would count `request_from_inside` without the Contact tag path.
fn contact_rows(t: &mut Vec<Fixture>) {
    use rport_common::tag::{KIND_CONTACT, KIND_VIA};
    let good = contact_tag(&TAG_KEY, KIND_CONTACT, SERVER_V4, 3000);
    let phone = (PHONE_V4, 5060);
    let refused = |c: Counter| vec![Packets, SipRequests, c];
    t.push(
        row(
            "INVITE from inside to a Contact rport tagged: steered to the NAT mapping (stateless)",
            tagged_invite(SERVER_V4, phone, &good),
            &[Packets, SipRequests, RequestSteered],
            None,
        )
        .inside()
        .keys(tag_keys())
        .handed_to_tc(IpAddr::V4(NAT_V4.into()), NAT_PORT)
        .bench("INVITE from inside to a tagged Contact (steered by its Contact tag)"),
    );
    let mut forged = good.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    t.push(
        row(
            "INVITE from inside with a forged Contact tag: refused",
            tagged_invite(SERVER_V4, phone, &forged),
            &refused(RequestTagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys())
        .bench("INVITE from inside with a forged Contact tag (MAC checked, refused)"),
    );
    t.push(
        row(
            "INVITE from inside with a Contact tag of another gateway's key: refused",
            tagged_invite(
                SERVER_V4,
                phone,
                &contact_tag(&OTHER_KEY, KIND_CONTACT, SERVER_V4, 10),
            ),
            &refused(RequestTagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    // 90,000 s: past the Contact limit (a day).
    t.push(
        row(
            "INVITE from inside with a Contact tag older than a day: refused as expired",
            tagged_invite(
                SERVER_V4,
                phone,
                &contact_tag(&TAG_KEY, KIND_CONTACT, SERVER_V4, 90_000),
            ),
            &refused(RequestTagExpired),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    t.push(
        row(
            "INVITE from another server than the Contact tag was made for: refused",
            tagged_invite([198, 51, 100, 99], phone, &good),
            &refused(RequestTagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    t.push(
        row(
            "a Via tag in a Request-URI: refused (a Via tag steers only its responses)",
            tagged_invite(
                SERVER_V4,
                phone,
                &tag(&TAG_KEY, KIND_VIA, (SERVER_V4, 5080), 10),
            ),
            &refused(RequestTagInvalid),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    t.push(
        row(
            "INVITE from inside already sent to the NAT mapping (server handles NAT): passed",
            // From the PBX's SIP port: to the mapping's port, only the source says SIP.
            tagged_invite_from(SERVER_V4, 5060, (NAT_V4, NAT_PORT), &good),
            &refused(RequestAlreadyCorrect),
            None,
        )
        .inside()
        .keys(tag_keys()),
    );
    // A Contact tag on an outside interface: a request toward a server, whose Request-URI
    // rport never reads (the client's Contact goes to the daemon, which tags it anew).
    t.push(
        row(
            "Contact tag in a request from outside: not steered, to the daemon for its Contact",
            tagged_invite(NAT_V4, (SERVER_V4, 5060), &good),
            &[
                Packets,
                SipRequests,
                NoRport,
                SentByDiffers,
                BindingRecorded,
                BindingNew,
                UserspaceUnavailable,
            ],
            Some(ExpectBinding {
                key: key("z9hG4bK-pbx1"),
                src: v4m(NAT_V4),
                sport: 5080,
                flags: F::MAGIC_COOKIE | F::SENT_BY_DIFFERS,
                vlan: (0, 0),
                requests: 1,
            }),
        )
        .keys(tag_keys()),
    );
    // The phone's 200 to the PBX's INVITE, from its NAT mapping's port: its Contact goes
    // to the daemon (then the ACK and BYE come back with the tag).
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bK-pbx1\r\nFrom: <sip:caller@198.51.100.10>;tag=9\r\nTo: <sip:100@198.51.100.10>;tag=p1\r\nCall-ID: in-1@198.51.100.10\r\nCSeq: 1 INVITE\r\nContact: <sip:100@192.168.1.50:5060>\r\nContent-Length: 0\r\n\r\n";
    t.push(
        row(
            "a phone's 200 with its Contact, from outside: to the daemon",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, ok.as_bytes()),
            &[Packets, SipResponses, ResponseContact],
            None,
        )
        .socket(0)
        .verdict(XDP_REDIRECT),
    );
    t.push(row(
        "a phone's 200 with its Contact, no daemon: passed unchanged, counted",
        udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, ok.as_bytes()),
        &[Packets, SipResponses, ResponseContact, UserspaceUnavailable],
        None,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row names are how failures, the pcap runner and the bench refer to rows.
    #[test]
    fn names_are_unique() {
        let t = table();
        let mut names: Vec<&str> = t.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate row names");
        let mut bench: Vec<_> = t.iter().filter_map(|f| f.bench).collect();
        let n = bench.len();
        bench.sort_unstable();
        bench.dedup();
        assert_eq!(bench.len(), n, "duplicate bench labels");
    }
}
