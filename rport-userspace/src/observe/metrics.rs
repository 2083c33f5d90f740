//! `rport run --metrics [ADDR:]PORT`: the Prometheus text exposition at `/metrics`.
//!
//! Each scrape reads the same [`Snapshot`](crate::observe::snapshot::Snapshot) as `rport
//! stats` (the pinned XDP maps and the forwarding threads' counters) and encodes its typed
//! figures with rust-prometheus's TextEncoder.
//! Scrapes are rare (seconds apart), so building a registry per scrape costs nothing on
//! the data path.
//!
//! The listener is hyper's HTTP/1 server on a current-thread tokio runtime of its own
//! thread, bounded against whoever can reach the port (docs/OPERATIONS.md `## Metrics`):
//! a request head of at most [`MAX_HEAD_BYTES`], read within [`HEAD_TIMEOUT`], a
//! connection closed after its one answer or [`CONNECTION_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] at once (one more is closed at accept). `GET /metrics` only.
use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr, TcpListener},
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

/// The longest request head (request line and headers) read: a longer one is answered
/// 431 and closed, so a client cannot make the daemon buffer more. (hyper's minimum is
/// 8 KiB; a scraper's GET is a few hundred bytes.)
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The time a client has to send its whole request head from connecting.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection is kept, answer included (a client that does not read it).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; Prometheus needs one per scrape.
pub const MAX_CONNECTIONS: usize = 16;

const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `--metrics`: `PORT` alone is 127.0.0.1:PORT (this host only: exposing the figures is a
/// choice, see docs/OPERATIONS.md); `ADDR:PORT` binds that address.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse()
        .map_err(|_| format!("expected PORT or ADDR:PORT (e.g. 9464, 0.0.0.0:9464), not {s:?}"))
}

/// Binds the metrics listener (an error here stops `rport run` before it attaches).
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics listener on {addr}"))?;
    // tokio takes it over in `serve`.
    l.set_nonblocking(true)?;
    Ok(l)
}

type Body = http_body_util::Full<hyper::body::Bytes>;

fn answer(status: hyper::StatusCode, ctype: &str, body: String) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Body::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(ctype).expect("a valid content type"),
    );
    r
}

/// The one match from a request to its answer.
async fn respond<B>(sources: Arc<Sources>, req: hyper::Request<B>) -> hyper::Response<Body> {
    use hyper::{Method, StatusCode};
    if req.method() != Method::GET {
        let mut r = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET"),
        );
        return r;
    }
    if req.uri().path() != "/metrics" {
        return answer(StatusCode::NOT_FOUND, "text/plain", "try /metrics\n".into());
    }
    // Reading the maps blocks (a full BINDINGS map takes a while): off the accept loop.
    match tokio::task::spawn_blocking(move || render(&sources)).await {
        Ok(Ok(body)) => answer(StatusCode::OK, EXPOSITION, body),
        Ok(Err(e)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e:#}\n"),
        ),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e}\n"),
        ),
    }
}

/// Serves `GET /metrics` until the process exits (on the calling thread).
pub fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rport: the metrics listener: {e}");
            return;
        }
    };
    if let Err(e) = rt.block_on(serve_async(listener, sources)) {
        eprintln!("rport: the metrics listener: {e:#}");
    }
}

async fn serve_async(listener: TcpListener, sources: Arc<Sources>) -> Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of descriptors or the like: wait instead of spinning on it.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // All slots taken: close at once (the scraper tries again at its next interval)
        // rather than queue connections without bound.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(respond(sources, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                // One answer per connection, as before: nothing idles in a slot.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_port_alone_is_loopback() {
        assert_eq!(parse_listen("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(
            parse_listen("0.0.0.0:9464").unwrap().to_string(),
            "0.0.0.0:9464"
        );
        assert_eq!(
            parse_listen("[::1]:9464").unwrap().to_string(),
            "[::1]:9464"
        );
        assert!(parse_listen("70000").is_err());
        assert!(parse_listen("localhost").is_err());
    }
}
