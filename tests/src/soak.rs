//! The soak's figures (`cargo xtask bench --soak MINUTES`, driven by tests/src/bin/bench.rs):
//! samples of the daemon's memory and of its bounded tables under a steady load, and the
//! verdict on each series (flat or growing).
use anyhow::{Context as _, Result};

/// One sample, taken while the load runs.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Resident set of the daemon (VmRSS), KiB.
    pub rss_kib: u64,
    /// `bindings_live` of `rport stats --json`.
    pub bindings_live: u64,
    /// The NAT tracker's size: `nat.clients`, and the requests it left untracked (full).
    pub nat_clients: u64,
    pub nat_untracked: u64,
    /// `daemon.rx_frames`: the daemon is still taking requests.
    pub rx_frames: u64,
}

impl Sample {
    /// The figures of `rport stats --json` (`stats`) and the daemon's VmRSS.
    pub fn from_stats(t_s: f64, rss_kib: u64, stats: &serde_json::Value) -> Sample {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        Sample {
            t_s,
            rss_kib,
            bindings_live: n(&stats["bindings_live"]),
            nat_clients: n(&stats["nat"]["clients"]),
            nat_untracked: n(&stats["nat"]["untracked"]),
            rx_frames: n(&stats["daemon"]["rx_frames"]),
        }
    }
}

/// VmRSS of a process, KiB.
pub fn process_rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

/// What a series did once warmed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trend {
    Flat,
    Growing,
}

/// The trend of `v` (samples in time order): the first quarter is warm-up (tables filling,
/// allocator pools growing); the series is growing when the median of its last quarter is
/// above the median of its second quarter by more than `abs` and more than `rel` of it.
/// Medians, because one sample can be off: `bindings_live` is counted by walking an LRU
/// map that evicts as it is walked (a walk whose key was just evicted starts over), and
/// was seen at 100,708 in a 65,536-entry map once. Too few samples to tell (under 8): flat
/// only if nothing rose at all after the first.
pub fn trend(v: &[u64], abs: f64, rel: f64) -> Trend {
    let median = |s: &[u64]| {
        let mut s = s.to_vec();
        s.sort_unstable();
        s.get(s.len() / 2).copied().unwrap_or(0) as f64
    };
    let n = v.len();
    if n < 8 {
        let first = v.first().copied().unwrap_or(0);
        return if v.iter().all(|x| *x <= first) {
            Trend::Flat
        } else {
            Trend::Growing
        };
    }
    let q = n / 4;
    let (early, late) = (median(&v[q..2 * q]), median(&v[n - q..]));
    let rise = late - early;
    if rise > abs && rise > rel * early {
        Trend::Growing
    } else {
        Trend::Flat
    }
}

/// The table of samples (Markdown) and a verdict line per series.
pub fn report(samples: &[Sample], rate: u64, minutes: f64, sent: u64, received: u64) -> String {
    let mut s = format!(
        "\n### Soak: {minutes} min at {rate} REGISTER/s (half the max rate)\n\n| t (s) | daemon RSS (MiB) | bindings_live | NAT tracker clients | untracked | daemon rx_frames |\n|---:|---:|---:|---:|---:|---:|\n"
    );
    for x in samples {
        s += &format!(
            "| {:.0} | {:.1} | {} | {} | {} | {} |\n",
            x.t_s,
            x.rss_kib as f64 / 1024.0,
            x.bindings_live,
            x.nat_clients,
            x.nat_untracked,
            x.rx_frames
        );
    }
    let col = |f: fn(&Sample) -> u64| samples.iter().map(f).collect::<Vec<u64>>();
    // RSS: growth beyond 4 MiB and 5% is a leak to look into; the tables are bounded, so
    // anything beyond 1% after the warm-up is growth.
    let rss = trend(&col(|x| x.rss_kib), 4096.0, 0.05);
    let bind = trend(&col(|x| x.bindings_live), 0.0, 0.01);
    let nat = trend(&col(|x| x.nat_clients), 0.0, 0.01);
    let lost = sent.saturating_sub(received);
    s += &format!(
        "\nverdict: RSS {rss:?} ({:.1} → {:.1} MiB), bindings_live {bind:?}, NAT tracker {nat:?}; sent {sent}, answered {received}, lost {lost} ({:.3}%)\n",
        samples.first().map_or(0.0, |x| x.rss_kib as f64 / 1024.0),
        samples.last().map_or(0.0, |x| x.rss_kib as f64 / 1024.0),
        100.0 * lost as f64 / sent.max(1) as f64
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends() {
        // Filling, then flat with noise: flat.
        let mut v: Vec<u64> = (0..10).map(|i| i * 100).collect();
        v.extend([
            1000, 1003, 998, 1001, 1000, 999, 1002, 1000, 1001, 1000, 999, 1000, 1002, 998, 1000,
            1001, 1000, 999, 1001, 1000, 1000, 1001, 999, 1000, 1002, 1000, 999, 1001, 1000, 1000,
        ]);
        assert_eq!(trend(&v, 0.0, 0.01), Trend::Flat);
        // A steady climb: growing.
        let v: Vec<u64> = (0..40).map(|i| 1000 + i * 20).collect();
        assert_eq!(trend(&v, 0.0, 0.01), Trend::Growing);
        // The same climb under the absolute tolerance: flat.
        assert_eq!(trend(&v, 10_000.0, 0.01), Trend::Flat);
        // One sample off in a flat series (a map walk during evictions): flat.
        let mut v = vec![65_400u64; 24];
        v[20] = 100_708;
        assert_eq!(trend(&v, 0.0, 0.01), Trend::Flat);
        // Few samples: flat only if nothing rose.
        assert_eq!(trend(&[5, 5, 4], 0.0, 0.0), Trend::Flat);
        assert_eq!(trend(&[5, 6], 0.0, 0.0), Trend::Growing);
    }

    #[test]
    fn sample_reads_the_stats_fields() {
        let v = serde_json::json!({"bindings_live": 7, "nat": {"clients": 3, "untracked": 2}, "daemon": {"rx_frames": 9}});
        let s = Sample::from_stats(1.0, 2048, &v);
        assert_eq!(
            (s.bindings_live, s.nat_clients, s.nat_untracked, s.rx_frames),
            (7, 3, 2, 9)
        );
        let r = report(&[s.clone(), s], 100, 0.1, 10, 9);
        assert!(r.contains("lost 1 (10.000%)"), "{r}");
        assert!(r.contains("RSS Flat (2.0 → 2.0 MiB)"), "{r}");
    }
}
