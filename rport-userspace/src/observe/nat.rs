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
//! One mutex, taken once per request the daemon rewrites; the table is allocated once with
//! room for [`CLIENTS`] clients and never grows past it, so nothing allocates per packet.
//! A full table forgets the clients idle for more than [`IDLE_S`] (at most once per
//! [`SWEEP_S`]: a sweep walks the whole table); if that frees nothing, new clients are
//! counted as untracked.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use rport_common::tag::defaults::MAX_AGE_CONTACT_S;
use serde::{Deserialize, Serialize};

/// Bucket bounds (seconds): the NAT timeouts that matter (RFC 5626 keep-alives 24–29 s,
/// RFC 3581 §3 ~60 s, RFC 4787 ≥ 120 s). The refresh gaps here and the binding ages of the
/// Prometheus exporter both measure how long a mapping must live, so they share them.
pub const TIMEOUT_BUCKETS: [f64; 5] = [20.0, 30.0, 60.0, 120.0, 300.0];
/// Clients tracked at most.
pub const CLIENTS: usize = 65_536;
/// A client silent this long (s) is forgotten when the table is full: longer than any
/// registration refresh interval in use (3600 s is the RFC 3261 default Expires).
pub const IDLE_S: u64 = 3600;
/// Minimum time (s) between two sweeps of a full table.
pub const SWEEP_S: u64 = 60;
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

struct Entry {
    src: SocketAddr,
    last: Instant,
    /// Set once a message of the client had a Contact tagged.
    reach: Option<Reach>,
}

struct Table {
    clients: HashMap<u64, Entry>,
    examples: [Option<Rebind>; EXAMPLES],
    next: usize,
    last_sweep: Option<Instant>,
}

/// The tracker shared by the forwarding threads.
pub struct NatTracker {
    table: Mutex<Table>,
    pub rebindings: AtomicU64,
    /// Refresh gaps per bucket (TIMEOUT_BUCKETS, then "more").
    pub gaps: [AtomicU64; TIMEOUT_BUCKETS.len() + 1],
    /// Clients not tracked because the table was full.
    pub untracked: AtomicU64,
    /// The same gaps, for Prometheus.
    pub gap_histogram: prometheus::Histogram,
}

impl Default for NatTracker {
    fn default() -> Self {
        NatTracker {
            table: Mutex::new(Table {
                clients: HashMap::with_capacity(CLIENTS),
                examples: [None; EXAMPLES],
                next: 0,
                last_sweep: None,
            }),
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
    /// Records a message from `src` carrying `call_id`; `tagged_for` is the server address
    /// when the daemon tagged at least one of its Contacts (the tag names `src`).
    pub fn observe(
        &self,
        call_id: &[u8],
        src: SocketAddr,
        now: Instant,
        tagged_for: Option<IpAddr>,
    ) {
        if call_id.is_empty() {
            return;
        }
        let key = rport_common::hash::bytes(rport_common::hash::FNV_OFFSET, call_id);
        let Ok(mut t) = self.table.lock() else { return };
        let t = &mut *t;
        let mut room = t.clients.len() < CLIENTS;
        if !room
            && t.last_sweep
                .is_none_or(|l| now.saturating_duration_since(l).as_secs() >= SWEEP_S)
            && !t.clients.contains_key(&key)
        {
            t.last_sweep = Some(now);
            t.clients
                .retain(|_, e| now.saturating_duration_since(e.last).as_secs() < IDLE_S);
            room = t.clients.len() < CLIENTS;
        }
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
        match t.clients.get_mut(&key) {
            Some(e) => {
                let gap = now.saturating_duration_since(e.last).as_secs_f64();
                let b = TIMEOUT_BUCKETS
                    .iter()
                    .position(|&u| gap <= u)
                    .unwrap_or(TIMEOUT_BUCKETS.len());
                self.gaps[b].fetch_add(1, Ordering::Relaxed);
                self.gap_histogram.observe(gap);
                if e.src != src {
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
                        old: e.src,
                        new: src,
                        old_age_s: gap,
                    });
                    t.next += 1;
                }
                e.src = src;
                e.last = now;
                // An untagged message (a BYE, a 4xx) leaves the latest tag as it was.
                if reach.is_some() {
                    e.reach = reach;
                }
            }
            None if room => {
                t.clients.insert(
                    key,
                    Entry {
                        src,
                        last: now,
                        reach,
                    },
                );
            }
            None => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The figures now.
    pub fn state(&self) -> NatState {
        self.state_at(Instant::now())
    }

    /// The figures at `now` (counting the Contact tags still valid then).
    pub fn state_at(&self, now: Instant) -> NatState {
        let (clients, reachable, mut ex) = match self.table.lock() {
            Ok(t) => (
                t.clients.len(),
                t.clients
                    .values()
                    .filter(|e| e.reach.is_some_and(|r| r.expires_in(now).is_some()))
                    .count(),
                t.examples.iter().flatten().copied().collect::<Vec<_>>(),
            ),
            Err(_) => (0, 0, Vec::new()),
        };
        ex.sort_by(|a, b| b.at_unix.total_cmp(&a.at_unix));
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
        // Copied out under the lock, formatted after it.
        let mut all: Vec<(Reach, f64)> = match self.table.lock() {
            Ok(t) => t
                .clients
                .values()
                .filter_map(|e| e.reach)
                .filter_map(|r| Some((r, r.expires_in(now)?)))
                .collect(),
            Err(_) => Vec::new(),
        };
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

    #[test]
    fn bucket_names_follow_the_bounds() {
        let names = GAP_BUCKET_NAMES;
        for (b, n) in TIMEOUT_BUCKETS.iter().zip(names) {
            assert_eq!(n, format!("le_{b}s"));
        }
        assert_eq!(names[TIMEOUT_BUCKETS.len()], "more");
    }

    #[test]
    fn a_full_table_forgets_idle_clients_not_active_ones() {
        let t = NatTracker::default();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..CLIENTS as u32 {
            t.observe(&i.to_be_bytes(), a, t0, None);
        }
        let late = t0 + std::time::Duration::from_secs(IDLE_S + 1);
        // Client 0 is active again, so it is not idle when the table is swept.
        t.observe(&0u32.to_be_bytes(), a, late, None);
        t.observe(b"newcomer", a, late, None);
        assert_eq!(t.untracked.load(Ordering::Relaxed), 0);
        let tab = t.table.lock().unwrap();
        assert_eq!(
            tab.clients.len(),
            2,
            "only the active client and the newcomer remain"
        );
        drop(tab);
        // A full table of active clients: newcomers are counted, not tracked, and no
        // second sweep runs within SWEEP_S.
        let t = NatTracker::default();
        for i in 0..CLIENTS as u32 {
            t.observe(&i.to_be_bytes(), a, t0, None);
        }
        t.observe(b"newcomer", a, t0 + std::time::Duration::from_secs(5), None);
        t.observe(b"another", a, t0 + std::time::Duration::from_secs(6), None);
        assert_eq!(t.untracked.load(Ordering::Relaxed), 2);
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
