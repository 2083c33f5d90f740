//! One typed snapshot of everything `rport stats` shows: the XDP program's counters and
//! bindings (pinned maps), the daemon's counters (with the kernel's AF_XDP socket
//! statistics) and its NAT tracker (memory).
//!
//! [`Snapshot::read`] builds it, for the daemon (with its [`Live`] parts) and for `rport
//! stats --pin-path` (without: those parts read as zero). Every view reads the typed
//! fields: the control socket serialises them (serde; the `stats` reply and `rport stats
//! --json`, field names in docs/STATS.md), the Prometheus exporter, the table and the NAT
//! diagnosis (observe/table.rs).
use std::{
    net::{Ipv4Addr, SocketAddr},
    ops::Index,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use rport_common::{Binding, Counter, counters::COUNT, flags};
use serde::{Deserialize, Serialize};

use crate::observe::{
    dstats::{DaemonCounters, DaemonStats},
    nat::{NatState, NatTracker, ReachableClient},
};

/// The groups `rport stats` shows the counters under, in this order (docs/STATS.md has
/// one section each). Every counter's group is one of them.
pub const GROUPS: [&str; 5] = ["traffic", "rewrite", "steering", "nat", "errors"];

/// One counter `rport stats` shows: the XDP program's, or the daemon's (index into
/// [`DaemonStats::FIELDS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Xdp(Counter),
    Daemon(usize),
}

impl Stat {
    /// Every counter: the XDP program's in slot order, then the daemon's in field order.
    pub fn all() -> impl Iterator<Item = Stat> {
        Counter::ALL
            .iter()
            .map(|c| Stat::Xdp(*c))
            .chain((0..DaemonStats::FIELDS.len()).map(Stat::Daemon))
    }

    /// The counters of one of [`GROUPS`], in [`Stat::all`] order.
    pub fn in_group(group: &str) -> impl Iterator<Item = Stat> + '_ {
        Self::all().filter(move |s| s.group() == group)
    }

    /// Who keeps it: the JSON object it is in, the middle of its Prometheus name.
    pub fn source(self) -> &'static str {
        match self {
            Stat::Xdp(_) => "xdp",
            Stat::Daemon(_) => "daemon",
        }
    }

    /// Its name within [`Stat::source`].
    pub fn name(self) -> &'static str {
        match self {
            Stat::Xdp(c) => c.name(),
            Stat::Daemon(i) => DaemonStats::FIELDS[i].0,
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Stat::Xdp(c) => c.group(),
            Stat::Daemon(i) => DaemonStats::FIELDS[i].1,
        }
    }

    /// Its meaning (the doc comment of its definition; may have surrounding blanks).
    pub fn help(self) -> &'static str {
        match self {
            Stat::Xdp(c) => c.help(),
            Stat::Daemon(i) => DaemonStats::FIELDS[i].2,
        }
    }
}

/// The XDP program's counters summed over the CPUs, indexed by [`Counter`]: the `xdp`
/// object of `rport stats --json` (`{name: value}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpCounters(pub [u64; COUNT as usize]);

impl Default for XdpCounters {
    fn default() -> Self {
        XdpCounters([0; COUNT as usize])
    }
}

impl Index<Counter> for XdpCounters {
    type Output = u64;
    fn index(&self, c: Counter) -> &u64 {
        &self.0[c as usize]
    }
}

/// [`Counter::name`] of every slot.
const XDP_NAMES: [&str; COUNT as usize] = {
    let mut names = [""; COUNT as usize];
    let mut i = 0;
    while i < names.len() {
        names[i] = Counter::ALL[i].name();
        i += 1;
    }
    names
};

crate::observe::named::serde_named!(XdpCounters, XDP_NAMES);

/// The names `rport bindings` gives the binding flags.
const FLAG_NAMES: [(u32, &str); 11] = [
    (flags::IPV6, "ipv6"),
    (flags::RPORT_EMPTY, "rport"),
    (flags::RPORT_VALUE, "rport=N"),
    (flags::RECEIVED, "received"),
    (flags::SENT_BY_DIFFERS, "nat"),
    (flags::PORT_DIFFERS, "port-changed"),
    (flags::SENT_BY_PRIVATE, "private"),
    (flags::SENT_BY_CGNAT, "cgnat"),
    (flags::SENT_BY_NAME, "name"),
    (flags::FORCE_RPORT, "force-rport"),
    (flags::FRAGMENT, "fragment"),
];

/// One live binding, as `rport bindings --json` shows it (fields in docs/STATS.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BindingRow {
    /// Transaction key: 16 hex digits in JSON.
    #[serde(with = "hex_key")]
    pub key: u64,
    pub source: SocketAddr,
    pub server: SocketAddr,
    pub sent_by: String,
    pub age_s: f64,
    pub first_seen_s_ago: f64,
    pub requests: u32,
    pub ifindex: u32,
    pub vlan: u16,
    /// [`flags`] bits: their names in JSON.
    #[serde(with = "flag_names")]
    pub flags: u32,
}

impl BindingRow {
    /// A binding of the map, `now_ns` being CLOCK_BOOTTIME.
    fn new(key: u64, b: &Binding, now_ns: u64) -> BindingRow {
        let sent_by = if b.flags & (flags::SENT_BY_NAME | flags::SENT_BY_V6) == 0 {
            format!("{}:{}", Ipv4Addr::from(b.sent_by_v4), b.sent_by_port)
        } else {
            format!("(name or IPv6):{}", b.sent_by_port)
        };
        BindingRow {
            key,
            source: b.source(),
            server: b.destination(),
            sent_by,
            age_s: now_ns.saturating_sub(b.last_seen_ns) as f64 / 1e9,
            first_seen_s_ago: now_ns.saturating_sub(b.first_seen_ns) as f64 / 1e9,
            requests: b.requests,
            ifindex: b.ifindex,
            vlan: b.vlan,
            flags: b.flags,
        }
    }

    /// The names of its flags.
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
    }
}

mod hex_key {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(k: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{k:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(|e| D::Error::custom(format!("key {s:?}: {e}")))
    }
}

mod flag_names {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            super::FLAG_NAMES
                .iter()
                .filter(|(bit, _)| f & bit != 0)
                .map(|(_, n)| n),
        )
    }

    /// Names it does not know (a newer daemon's) are left out.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        Ok(super::FLAG_NAMES
            .iter()
            .filter(|(_, n)| names.iter().any(|x| x == n))
            .fold(0, |f, (bit, _)| f | bit))
    }
}

/// What only the running daemon has.
pub struct Live {
    pub started: Instant,
    /// The forwarding threads' counters.
    pub workers: Vec<Arc<DaemonStats>>,
    /// NAT diagnostics of the forwarding threads.
    pub nat: Arc<NatTracker>,
    /// Per-batch processing time of the forwarding threads (a Prometheus histogram, not
    /// part of the snapshot).
    pub batch_time: prometheus::Histogram,
}

/// What the daemon's control socket and metrics endpoint read from.
pub struct Sources {
    /// Where the XDP program's maps are pinned.
    pub pin_dir: PathBuf,
    pub live: Live,
}

impl Sources {
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::read(&self.pin_dir, Some(&self.live))
    }

    /// The clients a server can reach through their Contact tag, most recently tagged
    /// first: the `clients` request, read from the NAT tracker alone (no map to walk).
    pub fn clients(&self) -> Vec<ReachableClient> {
        self.live.nat.reachable(Instant::now())
    }
}

/// Everything `rport stats` shows. Serialised (through a `serde_json::Value`, whose maps
/// sort their keys as the replies always have) it is the `stats` reply of the control
/// socket and the output of `rport stats --json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// Seconds since the daemon started (0 without one).
    pub uptime_s: u64,
    /// Bindings in the map now.
    pub bindings_live: u64,
    /// LRU evictions: bindings created minus those still there (the map and the counters
    /// are pinned together, so this holds across restarts).
    pub bindings_evicted: u64,
    pub xdp: XdpCounters,
    /// The daemon's counters summed over its threads (0 without a daemon).
    pub daemon: DaemonCounters,
    /// The daemon's NAT tracker (empty without a daemon).
    pub nat: NatState,
    /// The live bindings, newest first. Not part of the `stats` reply: the `bindings`
    /// request sends them alone.
    #[serde(skip)]
    pub bindings: Vec<BindingRow>,
}

fn open_map(pin_dir: &Path, name: &str) -> Result<Map> {
    let data = MapData::from_pin(pin_dir.join(name))
        .with_context(|| format!("opening pinned map {name}"))?;
    Ok(Map::from_map_data(data)?)
}

/// CLOCK_BOOTTIME in ns: the clock of `bpf_ktime_get_boot_ns`.
fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Snapshot {
    /// Reads the maps pinned in `pin_dir` and, when a daemon runs, its `live` parts.
    pub fn read(pin_dir: &Path, live: Option<&Live>) -> Result<Snapshot> {
        let counters: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(open_map(pin_dir, rport_common::maps::COUNTERS)?)?;
        let mut xdp = XdpCounters::default();
        for c in Counter::ALL {
            xdp.0[*c as usize] = counters.get(&(*c as u32), 0)?.iter().sum();
        }
        let map: HashMap<MapData, u64, Binding> =
            HashMap::try_from(open_map(pin_dir, rport_common::maps::BINDINGS)?)?;
        let now = boot_ns();
        let mut all: Vec<(u64, Binding)> = map.iter().filter_map(|r| r.ok()).collect();
        all.sort_by_key(|b| std::cmp::Reverse(b.1.last_seen_ns));
        let bindings: Vec<BindingRow> = all
            .iter()
            .map(|(k, b)| BindingRow::new(*k, b, now))
            .collect();
        let live_n = bindings.len() as u64;
        let mut snap = Snapshot {
            bindings_live: live_n,
            bindings_evicted: xdp[Counter::BindingNew].saturating_sub(live_n),
            xdp,
            bindings,
            ..Snapshot::default()
        };
        if let Some(l) = live {
            snap.uptime_s = l.started.elapsed().as_secs();
            for w in &l.workers {
                snap.daemon.add(&w.load());
            }
            snap.nat = l.nat.state();
        }
        Ok(snap)
    }

    /// The value of one counter.
    pub fn get(&self, s: Stat) -> u64 {
        match s {
            Stat::Xdp(c) => self.xdp[c],
            Stat::Daemon(i) => self.daemon.values()[i],
        }
    }

    /// The `stats` reply and `rport stats --json`.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stats` reply of the daemon before the snapshot was typed (the JSON built by hand
    /// with `json!`), captured from a real run: its field names and order.
    const STATS_REPLY: &str = r#"{"bindings_evicted":0,"bindings_live":4,"daemon":{"bad_frames":0,"batches":4,"busy_ns":522189,"fill_starved":0,"forwarded":4,"fragmented":0,"no_room":0,"received_added":4,"rewrite_errors":0,"rewritten":4,"rport_filled":4,"rx_frames":4,"send_errors":0,"unchanged":0,"xsk_fill_empty":0,"xsk_ring_full":0,"xsk_rx_dropped":0},"nat":{"clients":2,"rebindings":1,"recent_rebindings":[{"at_unix":1796118803.181473,"client":"phone-1@192.168.1.50","new":"192.0.2.2:40001","old":"192.0.2.2:40000","old_age_s":0.300244951}],"refresh_gaps":{"le_120s":0,"le_20s":2,"le_300s":0,"le_30s":0,"le_60s":0,"more":0},"untracked":0},"uptime_s":2,"xdp":{"binding_new":4,"binding_recorded":4,"binding_update_failed":0,"force_rport":0,"ip_fragment":0,"ipv6":0,"keepalive_crlf":0,"keepalive_stun":0,"keepalive_zero":0,"malformed_via":0,"no_rport":0,"no_via":0,"non_sip":4,"non_sip_on_sip_port":0,"packets":8,"received_present":0,"request_from_inside":0,"request_unchanged":0,"response_already_correct":0,"response_no_binding":0,"response_not_from_inside":0,"response_source_mismatch":0,"response_steered":0,"rport_empty":4,"rport_with_value":0,"sent_by_cgnat":0,"sent_by_differs":4,"sent_by_name":0,"sent_by_private":4,"sip_requests":4,"sip_responses":0,"source_port_differs":4,"to_userspace":4,"truncated":0,"userspace_unavailable":0,"via_beyond_window":0,"vlan":0}}"#;

    /// Two rows of a `bindings` reply of the same run.
    const BINDINGS_REPLY: &str = r#"[{"age_s":1.062888724,"first_seen_s_ago":1.062888724,"flags":["rport","nat","port-changed","private"],"ifindex":2,"key":"bad0288896ba853e","requests":1,"sent_by":"192.168.1.50:5060","server":"192.0.2.1:5060","source":"192.0.2.2:40002","vlan":0},{"age_s":1.363127033,"first_seen_s_ago":1.363127033,"flags":["rport","nat","port-changed","private"],"ifindex":2,"key":"bad3ae8896bd9ec7","requests":1,"sent_by":"192.168.1.50:5060","server":"192.0.2.1:5060","source":"192.0.2.2:40001","vlan":0}]"#;

    #[test]
    fn stats_reply_keeps_its_bytes() {
        let v: serde_json::Value = serde_json::from_str(STATS_REPLY).unwrap();
        let s: Snapshot = serde_json::from_value(v).unwrap();
        // Every field lands in its typed place...
        assert_eq!((s.uptime_s, s.bindings_live, s.bindings_evicted), (2, 4, 0));
        assert_eq!(s.xdp[Counter::Packets], 8);
        assert_eq!(s.xdp[Counter::ToUserspace], 4);
        assert_eq!(s.daemon.busy_ns, 522189);
        assert_eq!(s.nat.clients, 2);
        assert_eq!(s.nat.refresh_gaps.0[0], 2);
        assert_eq!(s.nat.recent_rebindings[0].old.port(), 40000);
        // ...and serialises back to the very same bytes, apart from counters added since
        // the capture (which read 0 from it).
        let mut back = s.to_json().unwrap();
        let old: serde_json::Value = serde_json::from_str(STATS_REPLY).unwrap();
        for group in ["xdp", "daemon", "nat"] {
            let g = back[group].as_object_mut().unwrap();
            g.retain(|k, v| old[group].get(k).is_some() || v.as_u64() != Some(0));
        }
        assert_eq!(back.to_string(), STATS_REPLY);
    }

    #[test]
    fn bindings_reply_keeps_its_bytes() {
        let rows: Vec<BindingRow> = serde_json::from_str(BINDINGS_REPLY).unwrap();
        assert_eq!(rows[0].key, 0xbad0288896ba853e);
        assert_eq!(
            rows[0].flags,
            flags::RPORT_EMPTY
                | flags::SENT_BY_DIFFERS
                | flags::PORT_DIFFERS
                | flags::SENT_BY_PRIVATE
        );
        assert_eq!(rows[1].source.to_string(), "192.0.2.2:40001");
        let back = serde_json::to_value(&rows).unwrap().to_string();
        assert_eq!(back, BINDINGS_REPLY);
    }

    #[test]
    fn a_binding_as_the_map_holds_it() {
        let mut b = Binding {
            src_addr: rport_common::addr_to_16("203.0.113.7".parse().unwrap()),
            dst_addr: rport_common::addr_to_16("198.51.100.10".parse().unwrap()),
            first_seen_ns: 1_000_000_000,
            last_seen_ns: 3_500_000_000,
            src_port: 40000,
            dst_port: 5060,
            sent_by_port: 5062,
            vlan: 7,
            ifindex: 3,
            flags: flags::RPORT_EMPTY | flags::FRAGMENT,
            requests: 2,
            sent_by_v4: [192, 168, 1, 50],
            ..Binding::default()
        };
        let r = BindingRow::new(0xab, &b, 4_000_000_000);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["key"], "00000000000000ab");
        assert_eq!(j["source"], "203.0.113.7:40000");
        assert_eq!(j["server"], "198.51.100.10:5060");
        assert_eq!(j["sent_by"], "192.168.1.50:5062");
        assert_eq!(j["age_s"], 0.5);
        assert_eq!(j["first_seen_s_ago"], 3.0);
        assert_eq!(
            (
                j["requests"].clone(),
                j["ifindex"].clone(),
                j["vlan"].clone()
            ),
            (2.into(), 3.into(), 7.into())
        );
        assert_eq!(j["flags"], serde_json::json!(["rport", "fragment"]));
        b.flags |= flags::SENT_BY_NAME;
        assert_eq!(BindingRow::new(0, &b, 0).sent_by, "(name or IPv6):5062");
    }

    #[test]
    fn every_counter_is_in_a_shown_group() {
        for s in Stat::all() {
            assert!(
                GROUPS.contains(&s.group()),
                "{}.{}: group {:?}",
                s.source(),
                s.name(),
                s.group()
            );
        }
    }

    #[test]
    fn a_snapshot_without_a_daemon_shows_zeros_and_an_empty_tracker() {
        // The figures `rport stats --pin-path` shows for the daemon's parts.
        let j = Snapshot::default().to_json().unwrap();
        assert_eq!(
            j["daemon"].as_object().unwrap().len(),
            DaemonStats::FIELDS.len()
        );
        assert!(j["daemon"].as_object().unwrap().values().all(|v| v == 0));
        assert_eq!(
            j["nat"],
            serde_json::json!({"clients": 0, "untracked": 0, "reachable_clients": 0, "rebindings": 0, "recent_rebindings": [],
                "refresh_gaps": {"le_20s": 0, "le_30s": 0, "le_60s": 0, "le_120s": 0, "le_300s": 0, "more": 0}})
        );
        assert_eq!(j["xdp"].as_object().unwrap().len(), Counter::ALL.len());
    }
}
