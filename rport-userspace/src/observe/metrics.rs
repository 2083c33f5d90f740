//! `rport run --metrics ADDR:PORT`: the Prometheus text exposition at `/metrics`.
//!
//! Each scrape reads the same figures as `rport stats` (the pinned XDP maps and the
//! forwarding threads' counters) and encodes them with rust-prometheus's TextEncoder.
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
use rport_common::Counter as XdpCounter;

use crate::observe::{control::Sources, dstats::DaemonStats};

/// Binding age buckets (seconds): the NAT timeouts that matter (RFC 5626 keep-alives
/// 24–29 s, RFC 3581 §3 ~60 s, RFC 4787 ≥ 120 s).
pub const AGE_BUCKETS: [f64; 5] = [20.0, 30.0, 60.0, 120.0, 300.0];

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
    let stats = crate::observe::control::stats_json(sources)?;
    let reg = Registry::new();
    for c in XdpCounter::ALL {
        let v = stats["xdp"][c.name()].as_u64().unwrap_or(0);
        counter(&reg, &format!("rport_xdp_{}_total", c.name()), c.help(), v)?;
    }
    for (name, _, help) in DaemonStats::FIELDS {
        let v = stats["daemon"][*name].as_u64().unwrap_or(0);
        // Base units: the daemon keeps nanoseconds, Prometheus wants seconds.
        if let Some(stem) = name.strip_suffix("_ns") {
            let c = prometheus::Counter::new(
                format!("rport_daemon_{stem}_seconds_total"),
                help.trim(),
            )?;
            c.inc_by(v as f64 / 1e9);
            reg.register(Box::new(c))?;
        } else {
            counter(&reg, &format!("rport_daemon_{name}_total"), help, v)?;
        }
    }
    let live = IntGauge::new("rport_bindings_live", "Bindings in the XDP map now")?;
    live.set(stats["bindings_live"].as_i64().unwrap_or(0));
    reg.register(Box::new(live))?;
    let evicted = IntGauge::new(
        "rport_bindings_evicted",
        "Bindings the LRU map dropped to make room (created minus live)",
    )?;
    evicted.set(stats["bindings_evicted"].as_i64().unwrap_or(0));
    reg.register(Box::new(evicted))?;
    let ages = Histogram::with_opts(
        HistogramOpts::new(
            "rport_binding_age_seconds",
            "Time since each live binding's latest request",
        )
        .buckets(AGE_BUCKETS.to_vec()),
    )?;
    for a in crate::observe::control::binding_ages(sources)? {
        ages.observe(a);
    }
    reg.register(Box::new(ages))?;
    reg.register(Box::new(sources.batch_time.clone()))?;
    reg.register(Box::new(sources.nat.gap_histogram.clone()))?;
    counter(
        &reg,
        "rport_nat_rebindings_total",
        "Clients seen from a new public address or port (their NAT dropped the old mapping)",
        sources
            .nat
            .rebindings
            .load(std::sync::atomic::Ordering::Relaxed),
    )?;
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
