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
//!
//! One mutex, taken once per request the daemon rewrites; the table is allocated once with
//! room for [`CLIENTS`] clients and never grows past it, so nothing allocates per packet.
//! A full table forgets the clients idle for more than [`IDLE_S`] (at most once per
//! [`SWEEP_S`]: a sweep walks the whole table); if that frees nothing, new clients are
//! counted as untracked.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

/// Upper bounds (seconds) of the refresh-gap buckets; one more bucket counts the rest.
pub const GAP_BUCKETS: [f64; 5] = [20.0, 30.0, 60.0, 120.0, 300.0];
/// Clients tracked at most.
pub const CLIENTS: usize = 65_536;
/// A client silent this long (s) is forgotten when the table is full: longer than any
/// registration refresh interval in use (3600 s is the RFC 3261 default Expires).
pub const IDLE_S: u64 = 3600;
/// Minimum time (s) between two sweeps of a full table.
pub const SWEEP_S: u64 = 60;
/// Rebinding examples kept.
pub const EXAMPLES: usize = 16;

/// JSON names of the refresh-gap buckets: `le_20s` … `le_300s`, then `more`.
pub fn gap_bucket_names() -> [&'static str; GAP_BUCKETS.len() + 1] {
    ["le_20s", "le_30s", "le_60s", "le_120s", "le_300s", "more"]
}

/// One rebinding, as shown by `rport stats --nat`.
#[derive(Clone, Copy, Debug)]
pub struct Rebind {
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

struct Entry {
    src: SocketAddr,
    last: Instant,
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
    /// Refresh gaps per bucket (GAP_BUCKETS, then "more").
    pub gaps: [AtomicU64; GAP_BUCKETS.len() + 1],
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
                .buckets(GAP_BUCKETS.to_vec()),
            )
            .expect("valid histogram options"),
        }
    }
}

impl NatTracker {
    /// Records a request from `src` carrying `call_id`.
    pub fn observe(&self, call_id: &[u8], src: SocketAddr, now: Instant) {
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
        match t.clients.get_mut(&key) {
            Some(e) => {
                let gap = now.saturating_duration_since(e.last).as_secs_f64();
                let b = GAP_BUCKETS
                    .iter()
                    .position(|&u| gap <= u)
                    .unwrap_or(GAP_BUCKETS.len());
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
            }
            None if room => {
                t.clients.insert(key, Entry { src, last: now });
            }
            None => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The figures, for `rport stats --json` (field `nat`).
    pub fn json(&self) -> Value {
        let (clients, mut ex) = match self.table.lock() {
            Ok(t) => (
                t.clients.len(),
                t.examples.iter().flatten().copied().collect::<Vec<_>>(),
            ),
            Err(_) => (0, Vec::new()),
        };
        ex.sort_by(|a, b| b.at_unix.total_cmp(&a.at_unix));
        let mut gaps = serde_json::Map::new();
        for (c, k) in self.gaps.iter().zip(gap_bucket_names()) {
            gaps.insert(k.into(), c.load(Ordering::Relaxed).into());
        }
        json!({
            "clients": clients,
            "untracked": self.untracked.load(Ordering::Relaxed),
            "rebindings": self.rebindings.load(Ordering::Relaxed),
            "refresh_gaps": gaps,
            "recent_rebindings": ex.iter().map(|r| json!({
                "at_unix": r.at_unix,
                "client": String::from_utf8_lossy(&r.client[..r.client_len as usize]),
                "old": r.old.to_string(),
                "new": r.new.to_string(),
                "old_age_s": r.old_age_s,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `rport stats --nat`: a short diagnosis in plain language from `rport stats --json`.
pub fn diagnose(stats: &Value, now_unix: f64) -> String {
    let x = &stats["xdp"];
    let n = &stats["nat"];
    let req = x["sip_requests"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    if req == 0 {
        return "No SIP requests seen yet: nothing to diagnose.\n".into();
    }
    let natted = x["sent_by_differs"].as_u64().unwrap_or(0);
    out.push(format!(
        "{:.0}% of {req} requests came from behind NAT (sent-by is not the source address); {} asked for rport.",
        100.0 * natted as f64 / req as f64,
        x["rport_empty"].as_u64().unwrap_or(0) + x["rport_with_value"].as_u64().unwrap_or(0),
    ));
    let recent: Vec<&Value> = n["recent_rebindings"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let last_hour = recent
        .iter()
        .filter(|r| now_unix - r["at_unix"].as_f64().unwrap_or(0.0) <= 3600.0)
        .count();
    let total = n["rebindings"].as_u64().unwrap_or(0);
    let mut ages: Vec<f64> = recent
        .iter()
        .filter_map(|r| r["old_age_s"].as_f64())
        .collect();
    ages.sort_by(f64::total_cmp);
    if total > 0 {
        let median = ages.get(ages.len() / 2).copied().unwrap_or(0.0);
        let every = (median / 2.0).clamp(10.0, 25.0);
        out.push(format!(
            "{total} rebindings (a client seen from a new public port: its NAT forgot the old mapping), {last_hour} of the latest {} in the last hour; median age of the old mapping {median:.0} s: clients should re-register or send keep-alives every {every:.0} s.",
            recent.len()
        ));
        for r in recent.iter().take(3) {
            out.push(format!(
                "  e.g. {}: {} -> {} after {:.0} s",
                r["client"].as_str().unwrap_or(""),
                r["old"].as_str().unwrap_or(""),
                r["new"].as_str().unwrap_or(""),
                r["old_age_s"].as_f64().unwrap_or(0.0)
            ));
        }
    } else {
        out.push("No rebindings seen: clients' NAT mappings stayed put.".into());
    }
    let gaps = &n["refresh_gaps"];
    let slow: u64 = ["le_120s", "le_300s", "more"]
        .iter()
        .map(|k| gaps[*k].as_u64().unwrap_or(0))
        .sum();
    let all: u64 = gaps
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    if all > 0 {
        out.push(format!(
            "{:.0}% of client refreshes came more than 60 s apart: NATs that forget idle UDP mappings after 30–60 s drop those clients' incoming calls (RFC 5626 keep-alives: every 24–29 s).",
            100.0 * slow as f64 / all as f64
        ));
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_names_follow_the_bounds() {
        let names = gap_bucket_names();
        for (b, n) in GAP_BUCKETS.iter().zip(names) {
            assert_eq!(n, format!("le_{b}s"));
        }
        assert_eq!(names[GAP_BUCKETS.len()], "more");
    }

    #[test]
    fn a_full_table_forgets_idle_clients_not_active_ones() {
        let t = NatTracker::default();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..CLIENTS as u32 {
            t.observe(&i.to_be_bytes(), a, t0);
        }
        let late = t0 + std::time::Duration::from_secs(IDLE_S + 1);
        // Client 0 is active again, so it is not idle when the table is swept.
        t.observe(&0u32.to_be_bytes(), a, late);
        t.observe(b"newcomer", a, late);
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
            t.observe(&i.to_be_bytes(), a, t0);
        }
        t.observe(b"newcomer", a, t0 + std::time::Duration::from_secs(5));
        t.observe(b"another", a, t0 + std::time::Duration::from_secs(6));
        assert_eq!(t.untracked.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn rebinding_and_gaps() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        let a: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        let b: SocketAddr = "203.0.113.1:40001".parse().unwrap();
        t.observe(b"c1", a, t0);
        t.observe(b"c1", a, t0 + Duration::from_secs(10));
        t.observe(b"c1", b, t0 + Duration::from_secs(75));
        t.observe(b"c2", b, t0);
        t.observe(b"", b, t0);
        let j = t.json();
        assert_eq!(j["clients"], 2);
        assert_eq!(j["rebindings"], 1);
        assert_eq!(j["refresh_gaps"]["le_20s"], 1);
        assert_eq!(j["refresh_gaps"]["le_120s"], 1);
        let r = &j["recent_rebindings"][0];
        assert_eq!(r["client"], "c1");
        assert_eq!(r["old"], "203.0.113.1:40000");
        assert_eq!(r["new"], "203.0.113.1:40001");
        assert!((r["old_age_s"].as_f64().unwrap() - 65.0).abs() < 0.01);
    }

    #[test]
    fn diagnosis_in_plain_language() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        t.observe(b"c1", "203.0.113.1:1".parse().unwrap(), t0);
        t.observe(
            b"c1",
            "203.0.113.1:2".parse().unwrap(),
            t0 + Duration::from_secs(58),
        );
        let nat = t.json();
        let now = nat["recent_rebindings"][0]["at_unix"].as_f64().unwrap();
        let stats =
            json!({"xdp": {"sip_requests": 8, "sent_by_differs": 3, "rport_empty": 2}, "nat": nat});
        let d = diagnose(&stats, now);
        assert!(d.contains("38% of 8 requests came from behind NAT"), "{d}");
        assert!(d.contains("1 rebindings"), "{d}");
        assert!(d.contains("1 of the latest 1 in the last hour"), "{d}");
        assert!(d.contains("median age of the old mapping 58 s"), "{d}");
        assert!(d.contains("every 25 s"), "{d}");
        assert!(
            d.contains("0% of client refreshes came more than 60 s apart"),
            "{d}"
        );
        assert_eq!(
            diagnose(&json!({"xdp": {"sip_requests": 0}}), 0.0),
            "No SIP requests seen yet: nothing to diagnose.\n"
        );
    }
}
