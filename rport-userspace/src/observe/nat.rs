//! NAT diagnostics: what the clients' NATs are doing, seen from the requests the daemon
//! rewrites (those from clients behind NAT, or asking for rport).
//!
//! - Refresh gap: for each client (its Call-ID: RFC 3261 §10.2 has a UA keep one Call-ID
//!   for all its REGISTERs), the time between consecutive requests, in the buckets that
//!   matter: a NAT forgets an idle UDP mapping after 30–120 s (RFC 4787 asks for ≥ 120 s,
//!   many do less; RFC 3581 §3 assumes ~60 s), and RFC 5626 keep-alives come every 24–29 s.
//! - Rebinding: the same client seen from a new public address or port, which means its
//!   NAT dropped the old mapping (incoming calls to the old one were lost). Counted, and the
//!   latest examples kept.
//! - Reachability: the clients whose Contact the daemon tagged (`;rptag=`, issue 11), so
//!   a server can send them requests: the NAT mapping the tag names, the server it was
//!   made for, when it was last made. The tag is stateless and valid
//!   [`MAX_AGE_CONTACT_S`] after it was made; a client listed here is one the daemon saw
//!   tagged, not a registry (a full table forgets it when idle like any other client).
//!
//! Bounded against any outside sender (issue 12): every request the daemon rewrites can
//! bring a new Call-ID, so the table is what an attacker fills.
//! - Sharded: [`SHARDS`] tables, each behind its own mutex, chosen by the Call-ID's hash
//!   (keyed per process, so a sender cannot aim at one shard or at a known client's
//!   key); the forwarding threads rarely meet on one. Each is allocated once with room
//!   for [`SHARD_CLIENTS`] and never grows past it: nothing allocates per packet.
//! - A share per source: one source IP (an IPv6 /64) holds at most [`SOURCE_PER_SHARD`]
//!   clients of a shard, [`SOURCE_SHARE`] of the table. A new Call-ID of a source at
//!   its share takes the place of that source's least recently refreshed client if it
//!   was silent for [`STALE_S`]; otherwise it is not tracked (`nat_source_capped`).
//! - Fair eviction: each shard keeps its clients in refresh order, so the one a full
//!   shard forgets for a newcomer is its least recently refreshed, and only if it was
//!   silent for [`STALE_S`] (`nat_full_evicted`; [`IDLE_S`]: `nat_idle_expired`). A
//!   client refreshing more often than that is never forgotten; a shard full of such
//!   clients leaves newcomers untracked (`nat.untracked`).
//! - No sweep: the oldest client is at the tail of its shard's list, so a lookup, a
//!   refresh and an eviction are O(1).
use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    net::{IpAddr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use rport_common::tag::defaults::MAX_AGE_CONTACT_S;
use serde::{Deserialize, Serialize};

use crate::observe::dstats::DaemonStats;

/// Bucket bounds (seconds): the NAT timeouts that matter (RFC 5626 keep-alives 24–29 s,
/// RFC 3581 §3 ~60 s, RFC 4787 ≥ 120 s). The refresh gaps here and the binding ages of the
/// Prometheus exporter both measure how long a mapping must live, so they share them.
pub const TIMEOUT_BUCKETS: [f64; 5] = [20.0, 30.0, 60.0, 120.0, 300.0];
/// Clients tracked at most.
pub const CLIENTS: usize = 65_536;
/// Shards of the table, each behind its own lock: more than the forwarding threads of a
/// usual gateway (one per rx queue), so that two rarely wait for each other.
pub const SHARDS: usize = 32;
/// Clients one shard tracks at most.
pub const SHARD_CLIENTS: usize = CLIENTS / SHARDS;
/// Clients of one source IP (an IPv6 /64) one shard tracks at most.
pub const SOURCE_PER_SHARD: usize = 32;
/// Clients of one source IP the table tracks at most: 1/64 of it, so that no fewer than
/// 64 sources can fill it. Room for an office behind one NAT (each phone's registration
/// and its dialogs: a Call-ID each); a carrier-grade NAT's address shared by more
/// clients has the rest untracked (counted, `nat_source_capped`): the tracker is
/// diagnostics, steering does not depend on it.
pub const SOURCE_SHARE: usize = SOURCE_PER_SHARD * SHARDS;
/// A client silent this long (s) may give its place to a new one: past the last refresh
/// gap bucket, when every NAT has forgotten its mapping. One that refreshes (a REGISTER
/// every 30–60 s, RFC 5626 flows) is never forgotten.
pub const STALE_S: u64 = 300;
/// A client silent this long (s) is counted as expired, not evicted, when it makes room:
/// longer than any registration refresh interval in use (3600 s is the RFC 3261 default
/// Expires).
pub const IDLE_S: u64 = 3600;
/// Rebinding examples kept.
pub const EXAMPLES: usize = 16;
/// Bytes of a reachable client's Call-ID kept to show it.
pub const CLIENT_SHOWN: usize = 32;

/// JSON names of the refresh-gap buckets (upper bounds [`TIMEOUT_BUCKETS`]): `le_20s` …
/// `le_300s`, then `more` for the rest.
pub const GAP_BUCKET_NAMES: [&str; TIMEOUT_BUCKETS.len() + 1] =
    ["le_20s", "le_30s", "le_60s", "le_120s", "le_300s", "more"];

/// Refresh gaps per bucket (up to each of [`TIMEOUT_BUCKETS`], then the rest): in JSON
/// `{"le_20s": n, …, "more": n}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshGaps(pub [u64; TIMEOUT_BUCKETS.len() + 1]);

impl RefreshGaps {
    /// (JSON name, count) of every bucket, in bound order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        GAP_BUCKET_NAMES.into_iter().zip(self.0)
    }

    /// Gaps longer than `bound`, one of [`TIMEOUT_BUCKETS`].
    pub fn above(&self, bound: f64) -> u64 {
        let first = TIMEOUT_BUCKETS
            .iter()
            .position(|&b| b > bound)
            .unwrap_or(TIMEOUT_BUCKETS.len());
        self.0[first..].iter().sum()
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

crate::observe::named::serde_named!(RefreshGaps, GAP_BUCKET_NAMES);

/// The tracker's figures: the `nat` object of `rport stats --json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatState {
    /// Clients tracked now.
    pub clients: u64,
    /// Requests of new clients not tracked because the table was full.
    pub untracked: u64,
    /// Clients tracked now whose latest Contact tag is still within its age limit.
    pub reachable_clients: u64,
    pub rebindings: u64,
    pub refresh_gaps: RefreshGaps,
    /// The latest [`EXAMPLES`] rebindings, newest first.
    pub recent_rebindings: Vec<RecentRebinding>,
}

/// One rebinding, as `rport stats --json` and `rport stats --nat` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentRebinding {
    /// Unix time of the request that showed it.
    pub at_unix: f64,
    /// Start of the client's Call-ID.
    pub client: String,
    pub old: SocketAddr,
    pub new: SocketAddr,
    /// How long the old mapping had been idle when the new one appeared.
    pub old_age_s: f64,
}

/// One rebinding as the tracker keeps it (no allocation on the request's path).
#[derive(Clone, Copy, Debug)]
struct Rebind {
    /// Unix time of the request that showed it.
    pub at_unix: f64,
    /// Start of the client's Call-ID.
    pub client: [u8; 48],
    pub client_len: u8,
    pub old: SocketAddr,
    pub new: SocketAddr,
    /// How long the old mapping had been idle when the new one appeared.
    pub old_age_s: f64,
}

/// One client a server can reach through its Contact tag, as `rport bindings --clients
/// --json` shows it (fields in docs/STATS.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReachableClient {
    /// Start of the client's Call-ID (at most [`CLIENT_SHOWN`] bytes).
    pub client: String,
    /// The NAT mapping the tag names: where the server's requests are steered.
    pub mapping: SocketAddr,
    /// The server address the tag was made for (only its requests carry a valid tag).
    pub server: IpAddr,
    /// Seconds since the daemon last tagged one of its Contacts.
    pub tagged_s_ago: f64,
    /// Seconds until that tag is past its age limit (to the tag's 16 s clock steps).
    pub expires_in_s: f64,
}

/// The latest Contact tag the daemon gave a client (copied, no allocation).
#[derive(Clone, Copy, Debug)]
struct Reach {
    mapping: SocketAddr,
    server: IpAddr,
    tagged: Instant,
    client: [u8; CLIENT_SHOWN],
    client_len: u8,
}

impl Reach {
    /// Seconds left before its tag is past [`MAX_AGE_CONTACT_S`]; `None` once it is.
    fn expires_in(&self, now: Instant) -> Option<f64> {
        let left =
            MAX_AGE_CONTACT_S as f64 - now.saturating_duration_since(self.tagged).as_secs_f64();
        (left > 0.0).then_some(left)
    }
}

/// Why a client was forgotten to make room for a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgot {
    /// Its source was at its share: its least recently refreshed client, silent for
    /// [`STALE_S`], gave its place.
    SourceShare,
    /// The shard was full: its least recently refreshed client, silent for [`STALE_S`].
    Full,
    /// The shard was full and that client silent for [`IDLE_S`].
    Idle,
}

/// What [`NatTracker::observe`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    /// No Call-ID (or a poisoned lock): nothing recorded.
    Ignored,
    /// A known client, from the mapping it had.
    Refreshed,
    /// A known client from a new mapping: a rebinding.
    Rebound,
    /// A new client, tracked; `Some` when another was forgotten to make room.
    Tracked(Option<Forgot>),
    /// A new client not tracked: its source holds its share, all of it active.
    SourceCapped,
    /// A new client not tracked: its shard is full of active clients (`nat.untracked`).
    Full,
}

impl Noted {
    /// The daemon counter this outcome adds to, if any.
    pub fn counter(self, stats: &DaemonStats) -> Option<&AtomicU64> {
        match self {
            Noted::Tracked(Some(Forgot::SourceShare)) => Some(&stats.nat_source_evicted),
            Noted::Tracked(Some(Forgot::Full)) => Some(&stats.nat_full_evicted),
            Noted::Tracked(Some(Forgot::Idle)) => Some(&stats.nat_idle_expired),
            Noted::SourceCapped => Some(&stats.nat_source_capped),
            // `Full` is the tracker's own `untracked`, as before the counters.
            Noted::Ignored
            | Noted::Refreshed
            | Noted::Rebound
            | Noted::Tracked(None)
            | Noted::Full => None,
        }
    }

    /// Counts the outcome in `stats`.
    #[inline]
    pub fn count(self, stats: &DaemonStats) {
        if let Some(c) = self.counter(stats) {
            DaemonStats::add(c, 1);
        }
    }
}

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

/// One client, in its shard's refresh-order list and in its source's.
struct Slot {
    /// Its Call-ID's hash.
    key: u64,
    /// Its source's hash ([`NatTracker::source_key`]).
    source: u64,
    src: SocketAddr,
    last: Instant,
    /// Set once a message of the client had a Contact tagged.
    reach: Option<Reach>,
    /// Neighbours in the shard's list (toward the most, the least recently refreshed).
    prev: u32,
    next: u32,
    /// The same in its source's list.
    sprev: u32,
    snext: u32,
}

/// The clients of one source in a shard: how many, newest and oldest.
#[derive(Clone, Copy)]
struct Source {
    count: u32,
    head: u32,
    tail: u32,
}

/// The keys are hashes already (SipHash with the tracker's key): used as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        // Only u64 keys are hashed; bytes are folded in for completeness.
        for &x in b {
            self.0 = (self.0 << 8) | x as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// One shard: its clients in slots allocated once, in refresh order (head: the most
/// recent), each also in its source's list.
struct Shard {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: KeyMap<u32>,
    sources: KeyMap<Source>,
    head: u32,
    tail: u32,
    examples: [Option<Rebind>; EXAMPLES],
    next: usize,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            slots: Vec::with_capacity(SHARD_CLIENTS),
            free: Vec::with_capacity(SHARD_CLIENTS),
            index: KeyMap::with_capacity_and_hasher(SHARD_CLIENTS, Default::default()),
            // Every source has a client here: never more sources than clients.
            sources: KeyMap::with_capacity_and_hasher(SHARD_CLIENTS, Default::default()),
            head: NIL,
            tail: NIL,
            examples: [None; EXAMPLES],
            next: 0,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn slot(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.slots[i as usize]
    }

    /// Takes `i` out of the shard's list.
    fn unlink(&mut self, i: u32) {
        let (p, n) = (self.slot(i).prev, self.slot(i).next);
        match p {
            NIL => self.head = n,
            p => self.slot_mut(p).next = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.slot_mut(n).prev = p,
        }
    }

    /// Puts `i` at the head of the shard's list.
    fn link_front(&mut self, i: u32) {
        let old = self.head;
        let s = self.slot_mut(i);
        (s.prev, s.next) = (NIL, old);
        match old {
            NIL => self.tail = i,
            o => self.slot_mut(o).prev = i,
        }
        self.head = i;
    }

    /// Takes `i` out of its source's list, and the source out when it was its last.
    fn unlink_source(&mut self, i: u32) {
        let (key, p, n) = {
            let s = self.slot(i);
            (s.source, s.sprev, s.snext)
        };
        if p != NIL {
            self.slot_mut(p).snext = n;
        }
        if n != NIL {
            self.slot_mut(n).sprev = p;
        }
        if let Some(src) = self.sources.get_mut(&key) {
            if p == NIL {
                src.head = n;
            }
            if n == NIL {
                src.tail = p;
            }
            src.count -= 1;
            if src.count == 0 {
                self.sources.remove(&key);
            }
        }
    }

    /// Puts `i` at the head of its source's list (the source added when new).
    fn link_source_front(&mut self, i: u32) {
        let key = self.slot(i).source;
        let src = self.sources.entry(key).or_insert(Source {
            count: 0,
            head: NIL,
            tail: NIL,
        });
        let old = src.head;
        src.head = i;
        if old == NIL {
            src.tail = i;
        }
        src.count += 1;
        if old != NIL {
            self.slots[old as usize].sprev = i;
        }
        let s = self.slot_mut(i);
        (s.sprev, s.snext) = (NIL, old);
    }

    /// Forgets the client in slot `i`.
    fn remove(&mut self, i: u32) {
        self.unlink(i);
        self.unlink_source(i);
        let key = self.slot(i).key;
        self.index.remove(&key);
        self.free.push(i);
    }

    /// Tracks a new client (there is room: the caller made it).
    fn insert(
        &mut self,
        key: u64,
        source: u64,
        src: SocketAddr,
        now: Instant,
        reach: Option<Reach>,
    ) {
        let slot = Slot {
            key,
            source,
            src,
            last: now,
            reach,
            prev: NIL,
            next: NIL,
            sprev: NIL,
            snext: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.link_front(i);
        self.link_source_front(i);
    }

    /// How long the client in slot `i` has been silent, in whole seconds.
    fn silent_s(&self, i: u32, now: Instant) -> u64 {
        now.saturating_duration_since(self.slot(i).last).as_secs()
    }

    /// The clients tracked now.
    fn clients(&self) -> impl Iterator<Item = &Slot> + '_ {
        self.index.values().map(|&i| self.slot(i))
    }
}

/// The tracker shared by the forwarding threads.
pub struct NatTracker {
    shards: Box<[Mutex<Shard>]>,
    /// Keys the hashes of Call-IDs and sources: a sender cannot choose its shard.
    hasher: RandomState,
    pub rebindings: AtomicU64,
    /// Refresh gaps per bucket (TIMEOUT_BUCKETS, then "more").
    pub gaps: [AtomicU64; TIMEOUT_BUCKETS.len() + 1],
    /// Clients not tracked because their shard was full of active ones.
    pub untracked: AtomicU64,
    /// The same gaps, for Prometheus.
    pub gap_histogram: prometheus::Histogram,
}

impl Default for NatTracker {
    fn default() -> Self {
        NatTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            rebindings: AtomicU64::new(0),
            gaps: Default::default(),
            untracked: AtomicU64::new(0),
            gap_histogram: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "rport_client_refresh_gap_seconds",
                    "Time between consecutive requests of one client (Call-ID): how long its NAT binding must live",
                )
                .buckets(TIMEOUT_BUCKETS.to_vec()),
            )
            .expect("valid histogram options"),
        }
    }
}

impl NatTracker {
    /// The key a source is counted under: its IPv4 address, or its IPv6 /64 (what one
    /// subscriber gets).
    fn source_key(&self, ip: IpAddr) -> u64 {
        match ip {
            IpAddr::V4(a) => self.hasher.hash_one((4u8, a.octets())),
            IpAddr::V6(a) => self.hasher.hash_one((6u8, u128::from(a) >> 64)),
        }
    }

    /// The shard of a Call-ID's hash: bits the shard's own map does not index by (its
    /// bucket from the low bits, its tag from the top 7).
    fn shard(&self, key: u64) -> &Mutex<Shard> {
        &self.shards[(key >> 32) as usize % SHARDS]
    }

    /// Records a message from `src` carrying `call_id`; `tagged_for` is the server address
    /// when the daemon tagged at least one of its Contacts (the tag names `src`). One
    /// shard's lock, O(1) work.
    pub fn observe(
        &self,
        call_id: &[u8],
        src: SocketAddr,
        now: Instant,
        tagged_for: Option<IpAddr>,
    ) -> Noted {
        if call_id.is_empty() {
            return Noted::Ignored;
        }
        let key = self.hasher.hash_one(call_id);
        let reach = tagged_for.map(|server| {
            let mut client = [0u8; CLIENT_SHOWN];
            let n = call_id.len().min(client.len());
            client[..n].copy_from_slice(&call_id[..n]);
            Reach {
                mapping: src,
                server,
                tagged: now,
                client,
                client_len: n as u8,
            }
        });
        let Ok(mut t) = self.shard(key).lock() else {
            return Noted::Ignored;
        };
        let t = &mut *t;
        if let Some(&i) = t.index.get(&key) {
            return self.refresh(t, i, call_id, src, now, reach);
        }
        let source = self.source_key(src.ip());
        let mut forgot = None;
        if let Some(s) = t.sources.get(&source)
            && s.count as usize >= SOURCE_PER_SHARD
        {
            let oldest = s.tail;
            if t.silent_s(oldest, now) < STALE_S {
                return Noted::SourceCapped;
            }
            t.remove(oldest);
            forgot = Some(Forgot::SourceShare);
        }
        if t.len() >= SHARD_CLIENTS {
            let oldest = t.tail;
            forgot = match t.silent_s(oldest, now) {
                s if s >= IDLE_S => Some(Forgot::Idle),
                s if s >= STALE_S => Some(Forgot::Full),
                _ => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                    return Noted::Full;
                }
            };
            t.remove(oldest);
        }
        t.insert(key, source, src, now, reach);
        Noted::Tracked(forgot)
    }

    /// A known client's new message: its gap, a rebinding if its mapping changed, and it
    /// becomes the most recently refreshed of its shard and its source.
    fn refresh(
        &self,
        t: &mut Shard,
        i: u32,
        call_id: &[u8],
        src: SocketAddr,
        now: Instant,
        reach: Option<Reach>,
    ) -> Noted {
        let (old, last) = (t.slot(i).src, t.slot(i).last);
        let gap = now.saturating_duration_since(last).as_secs_f64();
        let b = TIMEOUT_BUCKETS
            .iter()
            .position(|&u| gap <= u)
            .unwrap_or(TIMEOUT_BUCKETS.len());
        self.gaps[b].fetch_add(1, Ordering::Relaxed);
        self.gap_histogram.observe(gap);
        let rebound = old != src;
        if rebound {
            self.rebindings.fetch_add(1, Ordering::Relaxed);
            let mut client = [0u8; 48];
            let n = call_id.len().min(client.len());
            client[..n].copy_from_slice(&call_id[..n]);
            let at_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            t.examples[t.next % EXAMPLES] = Some(Rebind {
                at_unix,
                client,
                client_len: n as u8,
                old,
                new: src,
                old_age_s: gap,
            });
            t.next += 1;
        }
        t.unlink(i);
        t.link_front(i);
        // Its source's newest now; another source's when its address changed (counted
        // there from now on; a source past its share by a rebinding stays so until it
        // forgets one).
        t.unlink_source(i);
        if old.ip() != src.ip() {
            t.slot_mut(i).source = self.source_key(src.ip());
        }
        t.link_source_front(i);
        let e = t.slot_mut(i);
        e.src = src;
        e.last = now;
        // An untagged message (a BYE, a 4xx) leaves the latest tag as it was.
        if reach.is_some() {
            e.reach = reach;
        }
        if rebound {
            Noted::Rebound
        } else {
            Noted::Refreshed
        }
    }

    /// The figures now.
    pub fn state(&self) -> NatState {
        self.state_at(Instant::now())
    }

    /// The figures at `now` (counting the Contact tags still valid then).
    pub fn state_at(&self, now: Instant) -> NatState {
        let (mut clients, mut reachable, mut ex) = (0, 0, Vec::new());
        // One shard at a time: the forwarding threads wait for one shard's walk at most.
        for s in self.shards.iter() {
            let Ok(t) = s.lock() else { continue };
            clients += t.len();
            reachable += t
                .clients()
                .filter(|e| e.reach.is_some_and(|r| r.expires_in(now).is_some()))
                .count();
            ex.extend(t.examples.iter().flatten().copied());
        }
        ex.sort_by(|a, b| b.at_unix.total_cmp(&a.at_unix));
        ex.truncate(EXAMPLES);
        NatState {
            clients: clients as u64,
            untracked: self.untracked.load(Ordering::Relaxed),
            reachable_clients: reachable as u64,
            rebindings: self.rebindings.load(Ordering::Relaxed),
            refresh_gaps: RefreshGaps(self.gaps.each_ref().map(|c| c.load(Ordering::Relaxed))),
            recent_rebindings: ex
                .iter()
                .map(|r| RecentRebinding {
                    at_unix: r.at_unix,
                    client: String::from_utf8_lossy(&r.client[..r.client_len as usize])
                        .into_owned(),
                    old: r.old,
                    new: r.new,
                    old_age_s: r.old_age_s,
                })
                .collect(),
        }
    }

    /// The clients a server can reach through their Contact tag at `now`, most recently
    /// tagged first (those past the tag's age limit left out).
    pub fn reachable(&self, now: Instant) -> Vec<ReachableClient> {
        // Copied out under each shard's lock, formatted after.
        let mut all: Vec<(Reach, f64)> = Vec::new();
        for s in self.shards.iter() {
            let Ok(t) = s.lock() else { continue };
            all.extend(
                t.clients()
                    .filter_map(|e| e.reach)
                    .filter_map(|r| Some((r, r.expires_in(now)?))),
            );
        }
        all.sort_by_key(|(r, _)| std::cmp::Reverse(r.tagged));
        all.iter()
            .map(|(r, left)| ReachableClient {
                client: String::from_utf8_lossy(&r.client[..r.client_len as usize]).into_owned(),
                mapping: r.mapping,
                server: r.server,
                tagged_s_ago: now.saturating_duration_since(r.tagged).as_secs_f64(),
                expires_in_s: *left,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::observe::dstats::DaemonStats;

    #[test]
    fn bucket_names_follow_the_bounds() {
        let names = GAP_BUCKET_NAMES;
        for (b, n) in TIMEOUT_BUCKETS.iter().zip(names) {
            assert_eq!(n, format!("le_{b}s"));
        }
        assert_eq!(names[TIMEOUT_BUCKETS.len()], "more");
    }

    /// Client `i` of many: a source IP of its own each (192.168.0.0/16 wraps after 65,536).
    fn many(i: u32) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::new(192, 168, (i >> 8) as u8, i as u8)),
            40000,
        )
    }

    /// Fills the table at `t0` with clients of their own sources; their Call-IDs.
    fn fill(t: &NatTracker, t0: Instant) -> Vec<Vec<u8>> {
        let mut ids = Vec::new();
        let mut i = 0u32;
        while t.state().clients < CLIENTS as u64 {
            for _ in 0..1024 {
                let id = format!("fill-{i}").into_bytes();
                if t.observe(&id, many(i), t0, None) == Noted::Tracked(None) {
                    ids.push(id);
                }
                i += 1;
            }
        }
        ids
    }

    /// Every shard's lists hold exactly its clients, in refresh order, and no source more
    /// than its share.
    fn check_lists(t: &NatTracker) {
        for s in t.shards.iter() {
            let s = s.lock().unwrap();
            let (mut n, mut i, mut prev, mut newer) = (0, s.head, NIL, None::<Instant>);
            while i != NIL {
                let e = s.slot(i);
                assert_eq!(e.prev, prev);
                assert_eq!(s.index.get(&e.key), Some(&i));
                assert!(newer.is_none_or(|l| l >= e.last), "refresh order");
                (newer, prev, i) = (Some(e.last), i, e.next);
                n += 1;
            }
            assert_eq!((n, s.tail), (s.len(), prev));
            let mut per_source = 0;
            for (k, src) in &s.sources {
                let (mut c, mut i) = (0, src.head);
                while i != NIL {
                    assert_eq!(s.slot(i).source, *k);
                    (c, i) = (c + 1, s.slot(i).snext);
                }
                assert_eq!(c, src.count);
                assert!(c as usize <= SOURCE_PER_SHARD, "{c}");
                per_source += c as usize;
            }
            assert_eq!(per_source, s.len());
        }
    }

    #[test]
    fn a_full_table_forgets_idle_clients_not_active_ones() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        let ids = fill(&t, t0);
        assert_eq!(ids.len(), CLIENTS);
        // Filling took more Call-IDs than the table holds (the shards fill unevenly).
        let u0 = t.untracked.load(Ordering::Relaxed);
        let late = t0 + Duration::from_secs(IDLE_S + 1);
        // Client 0 is active again; then as many newcomers as a shard holds: each takes an
        // idle client's place, never client 0's.
        assert_eq!(t.observe(&ids[0], many(0), late, None), Noted::Refreshed);
        for i in 0..SHARD_CLIENTS as u32 {
            let got = t.observe(format!("new-{i}").as_bytes(), many(i), late, None);
            assert_eq!(got, Noted::Tracked(Some(Forgot::Idle)));
            assert_eq!(t.observe(&ids[0], many(0), late, None), Noted::Refreshed);
        }
        assert_eq!(t.untracked.load(Ordering::Relaxed), u0);
        assert_eq!(t.state().clients, CLIENTS as u64);
        check_lists(&t);
        // A full table of active clients: newcomers are counted, not tracked...
        let t = NatTracker::default();
        let ids = fill(&t, t0);
        let u0 = t.untracked.load(Ordering::Relaxed);
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(t.observe(b"newcomer", many(1), soon, None), Noted::Full);
        assert_eq!(t.observe(b"another", many(2), soon, None), Noted::Full);
        assert_eq!(t.untracked.load(Ordering::Relaxed), u0 + 2);
        // ...until the least recently refreshed has been silent for STALE_S: it makes room,
        // but the one that refreshed meanwhile stays.
        let stale = t0 + Duration::from_secs(STALE_S);
        assert_eq!(t.observe(&ids[7], many(7), stale, None), Noted::Refreshed);
        for i in 0..SHARD_CLIENTS as u32 {
            let got = t.observe(format!("late-{i}").as_bytes(), many(i), stale, None);
            assert_eq!(got, Noted::Tracked(Some(Forgot::Full)));
        }
        assert_eq!(t.observe(&ids[7], many(7), stale, None), Noted::Refreshed);
        check_lists(&t);
    }

    /// One source's flood of new Call-IDs, for two hours, while a victim refreshes every
    /// 60 s: the victim is never forgotten, its rebinding is seen, the flood holds no more
    /// than its share, and clients arriving after it are still tracked.
    #[test]
    fn a_flood_from_one_source_does_not_evict_a_refreshing_victim() {
        let t = NatTracker::default();
        let stats = DaemonStats::default();
        let t0 = Instant::now();
        let victim: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let attacker: IpAddr = "198.51.100.66".parse().unwrap();
        assert_eq!(t.observe(b"victim", victim, t0, None), Noted::Tracked(None));
        let mut n = 0u32;
        for minute in 1..=120u64 {
            let now = t0 + Duration::from_secs(60 * minute);
            // 2,000 Call-IDs a minute from one address, from any port.
            for _ in 0..2_000 {
                let src = SocketAddr::new(attacker, 1024 + (n % 60_000) as u16);
                t.observe(format!("flood-{n}").as_bytes(), src, now, None)
                    .count(&stats);
                n += 1;
            }
            assert_eq!(t.observe(b"victim", victim, now, None), Noted::Refreshed);
            assert!(t.state_at(now).clients <= SOURCE_SHARE as u64 + 1);
        }
        let end = t0 + Duration::from_secs(60 * 121);
        let moved: SocketAddr = "203.0.113.1:40001".parse().unwrap();
        assert_eq!(t.observe(b"victim", moved, end, None), Noted::Rebound);
        let s = t.state_at(end);
        assert_eq!(s.rebindings, 1);
        assert_eq!(s.recent_rebindings[0].client, "victim");
        // A newcomer after the flood is tracked.
        assert_eq!(
            t.observe(b"newcomer", "203.0.113.9:5060".parse().unwrap(), end, None),
            Noted::Tracked(None)
        );
        // The flood's Call-IDs: tracked (and still there, or forgotten for newer ones of
        // the same source) or refused, each counted once.
        let c = stats.load();
        let held = t.state_at(end).clients - 2;
        assert!(held <= SOURCE_SHARE as u64, "{held}");
        assert!(c.nat_source_capped > 0 && c.nat_source_evicted > 0, "{c:?}");
        assert_eq!(
            held + c.nat_source_evicted + c.nat_source_capped,
            n as u64,
            "{c:?}"
        );
        assert_eq!((c.nat_full_evicted, c.nat_idle_expired), (0, 0));
        check_lists(&t);
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let t = NatTracker::default();
        let stats = DaemonStats::default();
        let t0 = Instant::now();
        let one: SocketAddr = "198.51.100.66:5060".parse().unwrap();
        for i in 0..10 * SOURCE_SHARE {
            t.observe(format!("c-{i}").as_bytes(), one, t0, None)
                .count(&stats);
        }
        let held = t.state().clients;
        // SOURCE_PER_SHARD in every shard (10 × the share spreads over all of them).
        assert_eq!(held, SOURCE_SHARE as u64);
        assert_eq!(
            held + stats.load().nat_source_capped,
            10 * SOURCE_SHARE as u64
        );
        // Another source is not held back by it.
        let other: SocketAddr = "198.51.100.67:5060".parse().unwrap();
        assert_eq!(t.observe(b"x", other, t0, None), Noted::Tracked(None));
        // An IPv6 source is one /64: its other addresses share its share...
        let v6 = |host: u16, net: u16| {
            SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001, 0xdb8, 0, net, 0, 0, 0, host,
                )),
                5060,
            )
        };
        let mut tracked = 0;
        for i in 0..10 * SOURCE_SHARE {
            let got = t.observe(format!("v6-{i}").as_bytes(), v6(i as u16, 1), t0, None);
            tracked += (got == Noted::Tracked(None)) as usize;
        }
        assert_eq!(tracked, SOURCE_SHARE);
        // ...another /64 has its own.
        assert_eq!(t.observe(b"v6-x", v6(1, 2), t0, None), Noted::Tracked(None));
        // Once its clients are stale, a source's new Call-IDs take their places.
        let later = t0 + Duration::from_secs(STALE_S);
        assert_eq!(
            t.observe(b"c-new", one, later, None),
            Noted::Tracked(Some(Forgot::SourceShare))
        );
        assert_eq!(t.state().clients, held + 1 + SOURCE_SHARE as u64 + 1);
        check_lists(&t);
    }

    #[test]
    fn a_rebinding_to_another_address_moves_the_client_to_that_source() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let b: SocketAddr = "203.0.113.2:40000".parse().unwrap();
        t.observe(b"c1", a, t0, None);
        assert_eq!(
            t.observe(b"c1", b, t0 + Duration::from_secs(1), None),
            Noted::Rebound
        );
        check_lists(&t);
        let key = t.source_key(b.ip());
        let n: u32 = t
            .shards
            .iter()
            .filter_map(|s| s.lock().unwrap().sources.get(&key).map(|s| s.count))
            .sum();
        assert_eq!(n, 1);
        assert_eq!(t.state().clients, 1);
    }

    proptest::proptest! {
        /// Any sequence of messages (a few sources, Call-IDs old and new, time going on):
        /// the lists stay whole, the outcomes add up to the clients held, and no source
        /// holds more than its share.
        #[test]
        fn outcomes_add_up(ops in proptest::collection::vec((0u8..4, 0u16..3000, 0u16..400), 1..3000)) {
            let t = NatTracker::default();
            let stats = DaemonStats::default();
            let mut now = Instant::now();
            let (mut tracked, mut forgot) = (0u64, 0u64);
            for (src, id, dt) in ops {
                now += Duration::from_millis(dt as u64 * 100);
                let s = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, src)), 5060);
                let got = t.observe(format!("{src}-{id}").as_bytes(), s, now, None);
                got.count(&stats);
                if let Noted::Tracked(f) = got {
                    tracked += 1;
                    forgot += f.is_some() as u64;
                }
            }
            let c = stats.load();
            proptest::prop_assert_eq!(t.state().clients, tracked - forgot);
            proptest::prop_assert_eq!(
                forgot,
                c.nat_source_evicted + c.nat_full_evicted + c.nat_idle_expired
            );
            check_lists(&t);
        }
    }

    /// Memory of the table, full (printed with --nocapture; the figure in
    /// docs/ARCHITECTURE.md).
    #[test]
    fn memory_of_a_full_table() {
        let slot = std::mem::size_of::<Slot>();
        // hashbrown: a power of two of buckets ≥ 8/7 of the capacity, 1 control byte each.
        let buckets = (SHARD_CLIENTS * 8 / 7).next_power_of_two();
        let index = buckets * (std::mem::size_of::<(u64, u32)>() + 1);
        let sources = buckets * (std::mem::size_of::<(u64, Source)>() + 1);
        let per_shard = SHARD_CLIENTS * (slot + 4) + index + sources;
        eprintln!(
            "slot {slot} B; per shard {per_shard} B; table {} KiB",
            per_shard * SHARDS / 1024
        );
        // The figure docs/ARCHITECTURE.md gives.
        assert!(per_shard * SHARDS <= 20 << 20, "{per_shard}");
    }

    #[test]
    fn rebinding_and_gaps() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let b: SocketAddr = "203.0.113.1:40001".parse().unwrap();
        t.observe(b"c1", a, t0, None);
        t.observe(b"c1", a, t0 + Duration::from_secs(10), None);
        t.observe(b"c1", b, t0 + Duration::from_secs(75), None);
        t.observe(b"c2", b, t0, None);
        t.observe(b"", b, t0, None);
        // The `nat` object of `rport stats --json`, as serde writes it.
        let j = serde_json::to_value(t.state()).unwrap();
        assert_eq!(j["clients"], 2);
        assert_eq!(j["rebindings"], 1);
        assert_eq!(j["refresh_gaps"]["le_20s"], 1);
        assert_eq!(j["refresh_gaps"]["le_120s"], 1);
        let r = &j["recent_rebindings"][0];
        assert_eq!(r["client"], "c1");
        assert_eq!(r["old"], "203.0.113.1:40000");
        assert_eq!(r["new"], "203.0.113.1:40001");
        assert!((r["old_age_s"].as_f64().unwrap() - 65.0).abs() < 0.01);
        // The 10 s gap and the 65 s one.
        let gaps = t.state().refresh_gaps;
        assert_eq!(
            (gaps.total(), gaps.above(20.0), gaps.above(60.0)),
            (2, 1, 1)
        );
        assert_eq!((gaps.above(120.0), gaps.above(300.0)), (0, 0));
    }

    #[test]
    fn tagged_clients_are_listed_with_their_mapping_and_server() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        let pbx: IpAddr = "198.51.100.10".parse().unwrap();
        let other: IpAddr = "2001:db8::10".parse().unwrap();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let b: SocketAddr = "203.0.113.1:40001".parse().unwrap();
        let c: SocketAddr = "203.0.113.2:5060".parse().unwrap();
        // Seen, never tagged (`--contact off`, a message without Contact): not listed.
        t.observe(b"untagged@192.168.1.51", c, t0, None);
        assert!(t.reachable(t0).is_empty());
        assert_eq!(t.state_at(t0).reachable_clients, 0);
        let long = [b'x'; 2 * CLIENT_SHOWN];
        t.observe(&long, c, t0, Some(other));
        t.observe(
            b"reg-1@192.168.1.50",
            a,
            t0 + Duration::from_secs(1),
            Some(pbx),
        );
        // Its NAT rebinds, and its next message has no Contact to tag (a BYE): the tag
        // the server holds still names the old mapping.
        t.observe(b"reg-1@192.168.1.50", b, t0 + Duration::from_secs(5), None);
        let now = t0 + Duration::from_secs(10);
        let l = t.reachable(now);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0].client, "reg-1@192.168.1.50");
        assert_eq!((l[0].mapping, l[0].server), (a, pbx));
        assert!((l[0].tagged_s_ago - 9.0).abs() < 1e-6);
        assert!((l[0].expires_in_s - (MAX_AGE_CONTACT_S as f64 - 9.0)).abs() < 1e-6);
        assert_eq!(l[1].client, "x".repeat(CLIENT_SHOWN));
        assert_eq!((l[1].mapping, l[1].server), (c, other));
        assert_eq!(t.state_at(now).clients, 3);
        assert_eq!(t.state_at(now).reachable_clients, 2);
        // A re-REGISTER from the new mapping: the new tag names it.
        t.observe(b"reg-1@192.168.1.50", b, now, Some(pbx));
        let l = t.reachable(now);
        assert_eq!((l[0].mapping, l[0].tagged_s_ago), (b, 0.0));
        // As `rport bindings --clients --json` shows it.
        let j = serde_json::to_value(&l[0]).unwrap();
        assert_eq!(j["mapping"], "203.0.113.1:40001");
        assert_eq!(j["server"], "198.51.100.10");
        assert_eq!(j["client"], "reg-1@192.168.1.50");
    }

    #[test]
    fn a_tag_past_its_age_limit_is_no_longer_listed() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        let pbx: IpAddr = "198.51.100.10".parse().unwrap();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        t.observe(b"old", a, t0, Some(pbx));
        t.observe(b"new", a, t0 + Duration::from_secs(100), Some(pbx));
        let max = Duration::from_secs(MAX_AGE_CONTACT_S as u64);
        let before = t0 + max - Duration::from_secs(10);
        let l = t.reachable(before);
        assert_eq!(
            l.iter().map(|c| c.client.as_str()).collect::<Vec<_>>(),
            ["new", "old"],
            "most recently tagged first"
        );
        assert!((l[1].expires_in_s - 10.0).abs() < 1e-6);
        let after = t0 + max + Duration::from_secs(1);
        let l = t.reachable(after);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].client, "new");
        assert_eq!(t.state_at(after).reachable_clients, 1);
        // Still a client of the tracker, only no longer reachable.
        assert_eq!(t.state_at(after).clients, 2);
        // An untagged message does not renew the tag.
        t.observe(b"new", a, after, None);
        assert!(t.reachable(t0 + Duration::from_secs(101) + max).is_empty());
    }
}
