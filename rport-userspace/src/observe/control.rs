//! The control socket (`rport run` serves it) and the commands that read it (`rport stats`,
//! `rport bindings`).
//!
//! Why a socket and not the pinned maps: `ip netns exec` gives every command a fresh /sys,
//! so a second command does not see the daemon's bpffs. An abstract unix socket is scoped
//! by network namespace instead, exactly like the daemon's interfaces: `rport stats` run in
//! the same namespace (by any means) reaches it, another namespace's daemon does not.
//! Access is limited to root and the daemon's own user (SO_PEERCRED).
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::{
        fd::AsRawFd as _,
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use clap::Args;
use rport_common::{Binding, Counter, flags};
use serde_json::{Value, json};

use crate::observe::dstats::DaemonStats;

/// Abstract socket name (per network namespace).
pub const SOCKET_NAME: &str = "rport/control";

/// `rport stats` flags.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Machine-readable output (field names documented in docs/STATS.md).
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds, with per-second rates.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
    /// A short diagnosis of the clients' NATs, in plain language.
    #[arg(long, conflicts_with = "json")]
    pub nat: bool,
    /// Read the pinned XDP maps in DIR directly instead of asking the daemon (works while
    /// no daemon runs, where DIR's bpffs is visible; daemon counters are then absent).
    #[arg(long, value_name = "DIR")]
    pub pin_path: Option<PathBuf>,
}

/// `rport bindings` flags.
#[derive(Args, Debug)]
pub struct BindingsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Show at most N bindings, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// What the control server (and the metrics endpoint) read from.
pub struct Sources {
    pub pin_dir: PathBuf,
    pub workers: Vec<Arc<DaemonStats>>,
    pub started: Instant,
    /// Per-batch processing time of the forwarding threads.
    pub batch_time: prometheus::Histogram,
    /// NAT diagnostics of the forwarding threads.
    pub nat: Arc<crate::observe::nat::NatTracker>,
}

fn open_map(sources: &Sources, name: &str) -> Result<Map> {
    let data = MapData::from_pin(sources.pin_dir.join(name))
        .with_context(|| format!("opening pinned map {name}"))?;
    Ok(Map::from_map_data(data)?)
}

/// CLOCK_BOOTTIME in ns: the clock of `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) fn stats_json(s: &Sources) -> Result<Value> {
    let m = open_map(s, rport_common::maps::COUNTERS)?;
    let counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(m)?;
    let mut xdp = serde_json::Map::new();
    for c in Counter::ALL {
        let v: u64 = counters.get(&(*c as u32), 0)?.iter().sum();
        xdp.insert(c.name().into(), v.into());
    }
    let mut daemon = serde_json::Map::new();
    for (i, (name, _, _)) in DaemonStats::FIELDS.iter().enumerate() {
        let v: u64 = s.workers.iter().map(|w| w.values()[i]).sum();
        daemon.insert((*name).into(), v.into());
    }
    let bm = open_map(s, rport_common::maps::BINDINGS)?;
    let bindings: HashMap<MapData, u64, Binding> = HashMap::try_from(bm)?;
    let live = bindings.keys().filter(|k| k.is_ok()).count();
    Ok(json!({
        "uptime_s": s.started.elapsed().as_secs(),
        "bindings_live": live,
        // LRU evictions: bindings created minus those still there (the map and the
        // counters are pinned together, so this holds across restarts).
        "bindings_evicted": xdp
            .get(Counter::BindingNew.name())
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .saturating_sub(live as u64),
        "xdp": xdp,
        "daemon": daemon,
        "nat": s.nat.json(),
    }))
}

fn flag_names(f: u32) -> Vec<&'static str> {
    let all = [
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
    all.iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Seconds since each live binding's latest request.
pub(crate) fn binding_ages(s: &Sources) -> Result<Vec<f64>> {
    let bm = open_map(s, rport_common::maps::BINDINGS)?;
    let bindings: HashMap<MapData, u64, Binding> = HashMap::try_from(bm)?;
    let now = boot_ns();
    Ok(bindings
        .iter()
        .filter_map(|r| r.ok())
        .map(|(_, b)| now.saturating_sub(b.last_seen_ns) as f64 / 1e9)
        .collect())
}

fn bindings_json(s: &Sources) -> Result<Value> {
    let bm = open_map(s, rport_common::maps::BINDINGS)?;
    let bindings: HashMap<MapData, u64, Binding> = HashMap::try_from(bm)?;
    let now = boot_ns();
    let mut v: Vec<(u64, Binding)> = bindings.iter().filter_map(|r| r.ok()).collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1.last_seen_ns));
    Ok(Value::Array(
        v.iter()
            .map(|(k, b)| {
                let sent_by = if b.flags & (flags::SENT_BY_NAME | flags::SENT_BY_V6) == 0 {
                    format!(
                        "{}:{}",
                        std::net::Ipv4Addr::from(b.sent_by_v4),
                        b.sent_by_port
                    )
                } else {
                    format!("(name or IPv6):{}", b.sent_by_port)
                };
                json!({
                    "key": format!("{k:016x}"),
                    "source": b.source().to_string(),
                    "server": b.destination().to_string(),
                    "sent_by": sent_by,
                    "age_s": now.saturating_sub(b.last_seen_ns) as f64 / 1e9,
                    "first_seen_s_ago": now.saturating_sub(b.first_seen_ns) as f64 / 1e9,
                    "requests": b.requests,
                    "ifindex": b.ifindex,
                    "vlan": b.vlan,
                    "flags": flag_names(b.flags),
                })
            })
            .collect(),
    ))
}

fn peer_allowed(stream: &UnixStream) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    // SAFETY: no preconditions.
    r == 0 && (cred.uid == 0 || cred.uid == unsafe { libc::geteuid() })
}

/// Binds the control socket; fails clearly if another daemon in this namespace has it.
pub fn bind() -> Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(SOCKET_NAME)?;
    UnixListener::bind_addr(&addr).context(
        "binding the control socket: is another `rport run` already running in this network namespace?",
    )
}

/// Serves requests until the listener is closed (the daemon exits).
pub fn serve(listener: UnixListener, sources: Arc<Sources>) {
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        if !peer_allowed(&stream) {
            let _ = stream.write_all(b"{\"error\":\"permission denied\"}\n");
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            continue;
        }
        let reply = match line.trim() {
            "stats" => stats_json(&sources),
            "bindings" => bindings_json(&sources),
            other => Err(anyhow::anyhow!("unknown request {other:?}")),
        }
        .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        let _ = writeln!(stream, "{reply}");
    }
}

fn request(what: &str) -> Result<Value> {
    let addr = SocketAddr::from_abstract_name(SOCKET_NAME)?;
    let mut s = UnixStream::connect_addr(&addr)
        .context("no rport daemon is running in this network namespace (start `rport run`)")?;
    writeln!(s, "{what}")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let v: Value = serde_json::from_str(&buf).context("malformed reply from the daemon")?;
    if let Some(e) = v.get("error") {
        bail!("daemon: {}", e.as_str().unwrap_or_default());
    }
    Ok(v)
}

/// Renders the stats as a grouped table; with `prev` and `secs`, adds per-second rates.
pub fn render_table(v: &Value, prev: Option<&Value>, secs: f64) -> String {
    let mut out = format!(
        "rport: up {} s, {} live bindings, {} evicted\n",
        v["uptime_s"].as_u64().unwrap_or(0),
        v["bindings_live"].as_u64().unwrap_or(0),
        v["bindings_evicted"].as_u64().unwrap_or(0)
    );
    let rows: Vec<(&str, &str, &str, &str)> = Counter::ALL
        .iter()
        .map(|c| ("xdp", c.group(), c.name(), c.help()))
        .chain(
            DaemonStats::FIELDS
                .iter()
                .map(|(n, g, h)| ("daemon", *g, *n, *h)),
        )
        .collect();
    for group in ["traffic", "rewrite", "steering", "nat", "errors"] {
        out.push_str(&format!("\n{}\n", group.to_uppercase()));
        for (src, g, name, _help) in rows.iter().filter(|r| r.1 == group) {
            let _ = g;
            let val = v[*src][*name].as_u64().unwrap_or(0);
            let rate = prev.map(|p| {
                let old = p[*src][*name].as_u64().unwrap_or(0);
                format!("{:>10.1}/s", val.saturating_sub(old) as f64 / secs)
            });
            out.push_str(&format!(
                "  {:<28} {:>14}{}\n",
                format!("{src}.{name}"),
                val,
                rate.unwrap_or_default()
            ));
        }
        if group == "nat" {
            // The daemon's NAT diagnostics (see `rport stats --nat` for the reading).
            let mut paths: Vec<(String, Vec<&str>)> = ["clients", "untracked", "rebindings"]
                .iter()
                .map(|k| (format!("nat.{k}"), vec!["nat", *k]))
                .collect();
            for k in crate::observe::nat::gap_bucket_names() {
                paths.push((
                    format!("nat.refresh_gaps.{k}"),
                    vec!["nat", "refresh_gaps", k],
                ));
            }
            for (label, path) in paths {
                let get = |root: &Value| path.iter().fold(root, |v, k| &v[*k]).as_u64();
                let val = get(v).unwrap_or(0);
                let rate = prev.map(|p| {
                    let old = get(p).unwrap_or(0);
                    format!("{:>10.1}/s", val.saturating_sub(old) as f64 / secs)
                });
                out.push_str(&format!(
                    "  {label:<28} {val:>14}{}\n",
                    rate.unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// `rport stats`.
pub fn stats_cmd(args: StatsArgs) -> Result<()> {
    match args.watch {
        None => {
            let v = match &args.pin_path {
                Some(dir) => stats_json(&Sources {
                    pin_dir: dir.clone(),
                    workers: Vec::new(),
                    started: Instant::now(),
                    batch_time: crate::observe::metrics::batch_histogram(),
                    nat: Arc::new(crate::observe::nat::NatTracker::default()),
                })?,
                None => request("stats")?,
            };
            if args.nat {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64();
                print!("{}", crate::observe::nat::diagnose(&v, now));
                return Ok(());
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", render_table(&v, None, 1.0));
            }
        }
        Some(0) => bail!("--watch needs a period of at least 1 second"),
        Some(secs) => {
            let mut prev = request("stats")?;
            loop {
                std::thread::sleep(Duration::from_secs(secs));
                let v = request("stats")?;
                if args.json {
                    println!("{v}");
                } else {
                    print!(
                        "\x1b[2J\x1b[H{}",
                        render_table(&v, Some(&prev), secs as f64)
                    );
                }
                prev = v;
            }
        }
    }
    Ok(())
}

/// `rport bindings`.
pub fn bindings_cmd(args: BindingsArgs) -> Result<()> {
    let v = request("bindings")?;
    let list: Vec<Value> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .take(args.limit)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<22} {:>8} {:>5}  FLAGS",
        "SOURCE (NAT MAPPING)", "SENT-BY", "SERVER", "AGE s", "REQS"
    );
    for b in &list {
        println!(
            "{:<24} {:<22} {:<22} {:>8.1} {:>5}  {}",
            b["source"].as_str().unwrap_or(""),
            b["sent_by"].as_str().unwrap_or(""),
            b["server"].as_str().unwrap_or(""),
            b["age_s"].as_f64().unwrap_or(0.0),
            b["requests"].as_u64().unwrap_or(0),
            b["flags"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The counters reference (docs/STATS.md), generated from the definitions so it cannot go
/// stale: a test compares it with the file.
pub fn stats_reference() -> String {
    let mut s = String::from(
        "# rport statistics\n\n\
         `rport stats` shows these, grouped; `rport stats --json` gives them as\n\
         `{\"uptime_s\", \"bindings_live\", \"bindings_evicted\", \"xdp\": {name: value}, \"daemon\": {name: value}, \"nat\": {…}}`\n\
         (`bindings_evicted`: bindings the LRU map dropped to make room, `xdp.binding_new` − `bindings_live`);\n\
         `rport run --metrics ADDR:PORT` exports them as `rport_xdp_<name>_total` and\n\
         `rport_daemon_<name>_total` (`*_ns` counters as `*_seconds_total`), plus\n\
         `rport_bindings_live`, `rport_bindings_evicted`, `rport_binding_age_seconds` and `rport_userspace_batch_seconds`.\n\
         Where Kamailio has a close statistic, the description names it.\n\n\
         This file is generated from `rport-common/src/counters.rs` and\n\
         `rport-userspace/src/observe/dstats.rs` (`cargo test -p rport-userspace stats_reference` checks it).\n",
    );
    for group in ["traffic", "rewrite", "steering", "nat", "errors"] {
        s.push_str(&format!("\n## {group}\n\n| field | meaning |\n|---|---|\n"));
        for c in Counter::ALL.iter().filter(|c| c.group() == group) {
            s.push_str(&format!("| `xdp.{}` | {} |\n", c.name(), c.help().trim()));
        }
        for (n, g, h) in DaemonStats::FIELDS.iter().filter(|f| f.1 == group) {
            let _ = g;
            s.push_str(&format!("| `daemon.{n}` | {} |\n", h.trim()));
        }
        if group == "nat" {
            s.push_str(NAT_FIELDS);
            for k in crate::observe::nat::gap_bucket_names() {
                s.push_str(&format!(
                    "| `nat.refresh_gaps.{k}` | Consecutive requests of one client (Call-ID) {} apart (Prometheus: `rport_client_refresh_gap_seconds`). |\n",
                    match k.strip_prefix("le_").and_then(|b| b.strip_suffix('s')) {
                        Some(b) => format!("at most {b} s"),
                        None => "more than the last bucket".into(),
                    }
                ));
            }
        }
    }
    s.push_str(BINDINGS_FIELDS);
    s
}

/// The `nat` object of `rport stats --json` (the daemon's NAT diagnostics, rport-userspace/src/observe/nat.rs).
const NAT_FIELDS: &str = "\
| `nat.clients` | Clients (Call-IDs of rewritten requests) tracked now; at most 65,536, idle ones forgotten after an hour when full. |
| `nat.untracked` | Requests of new clients not tracked because the table was full of active ones. |
| `nat.rebindings` | A client seen from a new public address or port: its NAT dropped the old mapping, and calls to it were lost meanwhile (Prometheus: `rport_nat_rebindings_total`). |
| `nat.recent_rebindings[]` | The latest 16, newest first: `at_unix`, `client` (Call-ID), `old` and `new` mapping, `old_age_s` (how long the old mapping had been idle). |
";

/// The fields of `rport bindings --json`.
const BINDINGS_FIELDS: &str = "
## bindings

`rport bindings --json [--limit N]`: the live bindings (BPF map BINDINGS, one per client
transaction), newest first.

| field | meaning |
|---|---|
| `key` | Transaction key (hex): hash of the branch, plus sent-by and Call-ID for branches without the RFC 3261 magic cookie. |
| `source` | Observed source address:port of the request: the client's NAT mapping, where responses are steered. |
| `server` | Destination address:port of the request. |
| `sent_by` | Sent-by of the top Via as the client wrote it (`(name or IPv6):port` when not an IPv4 literal). |
| `age_s` | Seconds since the latest request of the transaction. |
| `first_seen_s_ago` | Seconds since its first request. |
| `requests` | Requests seen (retransmissions included). |
| `ifindex`, `vlan` | Ingress interface and outer VLAN id (0: untagged). |
| `flags` | `rport`, `rport=N`, `received`, `nat` (sent-by is not the source), `port-changed`, `private`, `cgnat`, `name`, `ipv6`, `force-rport`, `fragment`. |
";

#[cfg(test)]
mod tests {
    /// The human table, against a committed snapshot (tests/snapshots/stats_table.txt):
    /// one value per row, known rates, every group. RPORT_WRITE_DOCS=1 rewrites it.
    #[test]
    fn stats_table_snapshot() {
        use rport_common::Counter;
        use serde_json::json;
        let mut xdp = serde_json::Map::new();
        let mut prev_xdp = serde_json::Map::new();
        for (i, c) in Counter::ALL.iter().enumerate() {
            xdp.insert(c.name().into(), (1000 + 10 * i as u64).into());
            prev_xdp.insert(c.name().into(), (1000 + 5 * i as u64).into());
        }
        let mut daemon = serde_json::Map::new();
        for (i, (n, _, _)) in crate::observe::dstats::DaemonStats::FIELDS
            .iter()
            .enumerate()
        {
            daemon.insert((*n).into(), (2 * i as u64).into());
        }
        let nat = json!({"clients": 37, "untracked": 0, "rebindings": 4,
            "refresh_gaps": {"le_20s": 1, "le_30s": 2, "le_60s": 3, "le_120s": 4, "le_300s": 5, "more": 6}});
        let now = json!({"uptime_s": 3600, "bindings_live": 42, "bindings_evicted": 7, "xdp": xdp, "daemon": daemon.clone(), "nat": nat});
        let prev = json!({"uptime_s": 3598, "bindings_live": 40, "xdp": prev_xdp, "daemon": daemon,
            "nat": {"clients": 30, "rebindings": 2, "refresh_gaps": {}}});
        let got = format!(
            "{}\n--- with --watch 2\n{}",
            super::render_table(&now, None, 1.0),
            super::render_table(&now, Some(&prev), 2.0)
        );
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/stats_table.txt"
        );
        if std::env::var_os("RPORT_WRITE_DOCS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            got == want,
            "stats table changed: review, then RPORT_WRITE_DOCS=1 cargo test -p rport-userspace stats_table\n{got}"
        );
    }

    #[test]
    fn stats_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/STATS.md");
        let want = super::stats_reference();
        if std::env::var_os("RPORT_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/STATS.md is stale: run RPORT_WRITE_DOCS=1 cargo test -p rport-userspace stats_reference"
        );
    }
}
