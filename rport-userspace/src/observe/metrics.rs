//! `rport run --metrics ADDR:PORT`: the Prometheus text exposition at `/metrics`.
//!
//! Each scrape reads the same [`Snapshot`](crate::observe::snapshot::Snapshot) as `rport
//! stats` (the pinned XDP maps and the forwarding threads' counters) and encodes its typed
//! figures with rust-prometheus's TextEncoder.
//! Scrapes are rare (seconds apart), so building a registry per scrape costs nothing on
//! the data path.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder,
};

use crate::observe::{
    nat::TIMEOUT_BUCKETS,
    snapshot::{Sources, Stat},
};

/// The histogram the forwarding threads observe once per batch (a handle: clones share it).
pub fn batch_histogram() -> Histogram {
    Histogram::with_opts(
        HistogramOpts::new(
            "rport_userspace_batch_seconds",
            "Time the daemon spent on one received batch (rewrite and send)",
        )
        .buckets(vec![1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 1e-3]),
    )
    .expect("valid histogram options")
}

fn counter(reg: &Registry, name: &str, help: &str, v: u64) -> Result<()> {
    let c = IntCounter::new(name, help.trim())?;
    c.inc_by(v);
    reg.register(Box::new(c))?;
    Ok(())
}

/// Renders the exposition text.
pub fn render(sources: &Sources) -> Result<String> {
    let snap = sources.snapshot()?;
    let reg = Registry::new();
    for stat in Stat::all() {
        let (source, name, v) = (stat.source(), stat.name(), snap.get(stat));
        // Base units: the daemon keeps nanoseconds, Prometheus wants seconds.
        if let Some(stem) = name.strip_suffix("_ns") {
            let c = prometheus::Counter::new(
                format!("rport_{source}_{stem}_seconds_total"),
                stat.help().trim(),
            )?;
            c.inc_by(v as f64 / 1e9);
            reg.register(Box::new(c))?;
        } else {
            counter(
                &reg,
                &format!("rport_{source}_{name}_total"),
                stat.help(),
                v,
            )?;
        }
    }
    let live = IntGauge::new("rport_bindings_live", "Bindings in the XDP map now")?;
    live.set(snap.bindings_live as i64);
    reg.register(Box::new(live))?;
    let evicted = IntGauge::new(
        "rport_bindings_evicted",
        "Bindings the LRU map dropped to make room (created minus live)",
    )?;
    evicted.set(snap.bindings_evicted as i64);
    reg.register(Box::new(evicted))?;
    let ages = Histogram::with_opts(
        HistogramOpts::new(
            "rport_binding_age_seconds",
            "Time since each live binding's latest request",
        )
        .buckets(TIMEOUT_BUCKETS.to_vec()),
    )?;
    for b in &snap.bindings {
        ages.observe(b.age_s);
    }
    reg.register(Box::new(ages))?;
    reg.register(Box::new(sources.live.batch_time.clone()))?;
    reg.register(Box::new(sources.live.nat.gap_histogram.clone()))?;
    counter(
        &reg,
        "rport_nat_rebindings_total",
        "Clients seen from a new public address or port (their NAT dropped the old mapping)",
        snap.nat.rebindings,
    )?;
    let clients = IntGauge::new(
        "rport_nat_clients",
        "Clients (Call-IDs) the NAT tracker holds now (what it forgot: rport_daemon_nat_*)",
    )?;
    clients.set(snap.nat.clients as i64);
    reg.register(Box::new(clients))?;
    let reachable = IntGauge::new(
        "rport_nat_reachable_clients",
        "Clients whose Contact the daemon tagged, the tag still valid: a server can reach them",
    )?;
    reachable.set(snap.nat.reachable_clients as i64);
    reg.register(Box::new(reachable))?;
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .context("encoding metrics")?;
    Ok(String::from_utf8(out)?)
}

/// Binds the metrics listener (an error here stops `rport run` before it attaches).
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("binding the metrics listener on {addr}"))
}

/// Serves `GET /metrics` until the process exits.
pub fn serve(listener: TcpListener, sources: Arc<Sources>) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(&s).read_line(&mut line).is_err() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let (status, ctype, body) = if !line.starts_with("GET ") {
            (
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n".to_string(),
            )
        } else if path == "/metrics" {
            match render(&sources) {
                Ok(b) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", b),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain",
                    format!("{e:#}\n"),
                ),
            }
        } else {
            ("404 Not Found", "text/plain", "try /metrics\n".to_string())
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
