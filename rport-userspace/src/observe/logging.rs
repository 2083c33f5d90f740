//! The daemon's logs: one `tracing` subscriber on stderr (human lines or JSON lines, for
//! the journal or a log shipper), the `log` records of the libraries and of the XDP
//! program (aya-log) bridged into it, and the rate limit that keeps a flood of bad
//! packets from becoming a flood of log lines.
//!
//! The limit is per call site: at most [`PER_SECOND`] lines a second each, then silence
//! until the next second, whose first line says how many were suppressed. The packets
//! themselves are all counted anyway (`rport stats`): a log line is an example, not the
//! count.
use std::{
    collections::HashMap,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

use clap::ValueEnum;

/// Lines a second one call site logs at most.
pub const PER_SECOND: u32 = 10;
/// The target the XDP program's events carry (`RUST_LOG=rport::xdp=…`).
pub const XDP_TARGET: &str = "rport::xdp";

/// `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per event, for people (and the journal).
    Human,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// The filter: `--log-level` when given, else `RUST_LOG`, else `info`. The XDP program's
/// events always pass it: whether the program emits them is `--xdp-log`, decided in the
/// kernel, and asking for them is asking to see them.
pub fn directives(level: Option<Level>, rust_log: Option<&str>) -> String {
    let base = match (level, rust_log) {
        (Some(l), _) => format!("{l:?}").to_lowercase(),
        (None, Some(env)) if !env.trim().is_empty() => env.trim().to_string(),
        _ => "info".to_string(),
    };
    // A later directive for the same target wins: an explicit rport::xdp in RUST_LOG stays.
    if base.contains(XDP_TARGET) {
        base
    } else {
        format!("{XDP_TARGET}=trace,{base}")
    }
}

/// Installs the subscriber (once; a second call changes nothing) and the `log` bridge.
pub fn init(level: Option<Level>, format: Format) {
    let spec = directives(level, std::env::var("RUST_LOG").ok().as_deref());
    // Under systemd the journal stamps every line itself (JOURNAL_STREAM names it).
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if let Err(e) = install(&spec, format, journal, std::io::stderr) {
        eprintln!("rport: ignoring the log filter {spec:?}: {e}");
        let _ = install(&directives(level, None), format, journal, std::io::stderr);
    }
}

/// The subscriber of [`init`], writing to `w`; `Err` for a filter that does not parse.
fn install<W>(spec: &str, format: Format, journal: bool, w: W) -> Result<(), String>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
    let layer = fmt::layer().with_writer(w).with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` also installs tracing-log's LogTracer: `log` records become events.
    let _ = match (format, journal) {
        (Format::Json, _) => registry.with(layer.json()).try_init(),
        (Format::Human, true) => registry.with(layer.without_time()).try_init(),
        (Format::Human, false) => registry.with(layer).try_init(),
    };
    Ok(())
}

/// Milliseconds on the process's monotonic clock (the limiters' time base).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The limit of one call site: lock-free, so the forwarding threads share it without a
/// lock and a suppressed line costs a few atomic operations.
pub struct RateLimit {
    per_window: u32,
    /// Start of the current one-second window, ms (`now_ms`), plus one (0: none yet).
    window: AtomicU64,
    /// Lines asked for in the current window.
    count: AtomicU32,
    /// Lines suppressed since the last one logged.
    suppressed: AtomicU64,
}

/// What a call site may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Log the line; `suppressed` lines of this site were dropped since the last one.
    Log { suppressed: u64 },
    /// Over the limit: say nothing (counted, reported with the next line logged).
    Suppress,
}

impl RateLimit {
    pub const fn new(per_window: u32) -> RateLimit {
        RateLimit {
            per_window,
            window: AtomicU64::new(0),
            count: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may go out at `now` (ms, any monotonic base). Two threads racing at
    /// a window's turn may both get in: the bound is approximate by a line or two, never
    /// a flood.
    pub fn check(&self, now: u64) -> Allow {
        let w = self.window.load(Ordering::Relaxed);
        if w == 0 || now.saturating_sub(w - 1) >= 1000 {
            // A new window: whoever swaps it in resets the count.
            if self
                .window
                .compare_exchange(w, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.count.store(0, Ordering::Relaxed);
            }
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < self.per_window {
            Allow::Log {
                suppressed: self.suppressed.swap(0, Ordering::Relaxed),
            }
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            Allow::Suppress
        }
    }
}

/// A `tracing` warning at most [`PER_SECOND`] times a second from this call site, with
/// the count of the ones suppressed before it (`suppressed = K`). For the packet path:
/// nothing is formatted unless the line goes out.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::observe::logging::RateLimit =
            $crate::observe::logging::RateLimit::new($crate::observe::logging::PER_SECOND);
        if let $crate::observe::logging::Allow::Log { suppressed } =
            LIMIT.check($crate::observe::logging::now_ms())
        {
            if suppressed > 0 {
                ::tracing::warn!(suppressed, $($arg)+);
            } else {
                ::tracing::warn!($($arg)+);
            }
        }
    }};
}

/// A call site of the XDP program: its source file and line, as aya-log reports them.
type Site = (Option<String>, Option<u32>);

/// The XDP program's records (aya-log), limited per call site of the program (its file
/// and line), and handed on to `inner` with the target [`XDP_TARGET`]. The log drain is
/// one thread: the map of sites is locked once per record, never on the packet path.
pub struct XdpLog<L> {
    inner: L,
    sites: Mutex<HashMap<Site, RateLimit>>,
    clock: fn() -> u64,
}

impl<L: log::Log> XdpLog<L> {
    pub fn new(inner: L) -> XdpLog<L> {
        XdpLog::with_clock(inner, now_ms)
    }

    /// With its own clock (ms), for tests.
    pub fn with_clock(inner: L, clock: fn() -> u64) -> XdpLog<L> {
        XdpLog {
            inner,
            sites: Mutex::new(HashMap::new()),
            clock,
        }
    }
}

impl<L: log::Log> log::Log for XdpLog<L> {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.inner.enabled(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        let allow = {
            let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
            sites
                .entry((r.file().map(str::to_owned), r.line()))
                .or_insert_with(|| RateLimit::new(PER_SECOND))
                .check((self.clock)())
        };
        let Allow::Log { suppressed } = allow else {
            return;
        };
        let with_count;
        let args = if suppressed > 0 {
            with_count = format!("{} ({suppressed} suppressed)", r.args());
            format_args!("{with_count}")
        } else {
            *r.args()
        };
        self.inner.log(
            &log::Record::builder()
                .args(args)
                .level(r.level())
                .target(XDP_TARGET)
                .module_path(r.module_path())
                .file(r.file())
                .line(r.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// The process's `log` logger (tracing-log's bridge once [`init`] ran).
pub struct Global;

impl log::Log for Global {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        log::logger().enabled(m)
    }
    fn log(&self, r: &log::Record<'_>) {
        log::logger().log(r)
    }
    fn flush(&self) {
        log::logger().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_per_second_then_the_suppressed_count() {
        let l = RateLimit::new(3);
        let logged = |t: u64| (0..100).filter(|_| l.check(t) != Allow::Suppress).count();
        assert_eq!(logged(5), 3);
        // Same window, later: still nothing.
        assert_eq!(l.check(900), Allow::Suppress);
        // The next window: the first line carries the 97 + 1 dropped ones.
        assert_eq!(l.check(1005), Allow::Log { suppressed: 98 });
        assert_eq!(l.check(1006), Allow::Log { suppressed: 0 });
        assert_eq!(l.check(1007), Allow::Log { suppressed: 0 });
        assert_eq!(l.check(1008), Allow::Suppress);
        // A quiet site logs again after a long pause, with what it had dropped.
        assert_eq!(l.check(60_000), Allow::Log { suppressed: 1 });
    }

    #[test]
    fn window_at_time_zero() {
        // now = 0 is a real time, not "no window yet".
        let l = RateLimit::new(1);
        assert_eq!(l.check(0), Allow::Log { suppressed: 0 });
        assert_eq!(l.check(999), Allow::Suppress);
        assert_eq!(l.check(1000), Allow::Log { suppressed: 1 });
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);
    impl log::Log for &Lines {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {} {}", r.target(), r.level(), r.args()));
        }
        fn flush(&self) {}
    }

    static T: AtomicU64 = AtomicU64::new(0);
    fn clock() -> u64 {
        T.load(Ordering::Relaxed)
    }

    #[test]
    fn xdp_records_limited_per_site() {
        let lines = Lines::default();
        let x = XdpLog::with_clock(&lines, clock);
        let rec = |line: u32| {
            log::Record::builder()
                .args(format_args!("malformed top Via"))
                .level(log::Level::Debug)
                .target("rport")
                .file(Some("src/main.rs"))
                .line(Some(line))
                .build()
        };
        use log::Log as _;
        for _ in 0..1000 {
            x.log(&rec(395));
        }
        // Another site has a budget of its own.
        x.log(&rec(122));
        T.store(1500, Ordering::Relaxed);
        x.log(&rec(395));
        let got = lines.0.lock().unwrap().clone();
        assert_eq!(got.len(), PER_SECOND as usize + 2, "{got:?}");
        assert_eq!(got[0], "rport::xdp DEBUG malformed top Via");
        assert_eq!(
            got.last().unwrap(),
            &format!(
                "rport::xdp DEBUG malformed top Via ({} suppressed)",
                1000 - PER_SECOND
            )
        );
    }

    /// The one test that installs the global subscriber (tests share the process).
    #[test]
    fn xdp_debug_events_pass_an_info_filter_as_json() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        install(&directives(None, None), Format::Json, false, move || {
            w.clone()
        })
        .unwrap();
        assert!(install("rport=nonsense", Format::Json, false, std::io::stderr).is_err());
        use log::Log as _;
        let bridge = XdpLog::new(Global);
        let rec = |level, target| {
            bridge.log(
                &log::Record::builder()
                    .args(format_args!("malformed top Via from 203.0.113.1:40000"))
                    .level(level)
                    .target(target)
                    .file(Some("src/main.rs"))
                    .line(Some(395))
                    .build(),
            )
        };
        // The XDP program's debug event (the bridge gives it the rport::xdp target).
        rec(log::Level::Debug, "rport");
        // A library's debug record: below info, filtered out.
        log::logger().log(
            &log::Record::builder()
                .args(format_args!("a library's detail"))
                .level(log::Level::Debug)
                .target("aya::bpf")
                .build(),
        );
        tracing::info!("attached to out0");
        tracing::debug!("not shown");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "DEBUG");
        assert_eq!(lines[0]["target"], XDP_TARGET);
        assert_eq!(
            lines[0]["fields"]["message"],
            "malformed top Via from 203.0.113.1:40000"
        );
        assert_eq!(lines[1]["level"], "INFO");
        assert_eq!(lines[1]["fields"]["message"], "attached to out0");
    }

    #[test]
    fn filter_directives() {
        assert_eq!(directives(None, None), "rport::xdp=trace,info");
        assert_eq!(
            directives(None, Some("rport_userspace=debug")),
            "rport::xdp=trace,rport_userspace=debug"
        );
        // --log-level wins over RUST_LOG.
        assert_eq!(
            directives(Some(Level::Warn), Some("debug")),
            "rport::xdp=trace,warn"
        );
        // RUST_LOG may silence the XDP events itself.
        assert_eq!(directives(None, Some("rport::xdp=off")), "rport::xdp=off");
        assert_eq!(directives(None, Some("  ")), "rport::xdp=trace,info");
    }
}
