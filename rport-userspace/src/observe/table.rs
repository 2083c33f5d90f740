//! What an operator reads in a terminal, from a [`Snapshot`]: the grouped table of `rport
//! stats` (with per-second rates under `--watch`) and the NAT diagnosis of `rport stats
//! --nat`.
use rport_common::Counter;

use crate::observe::snapshot::{GROUPS, Snapshot, Stat};

/// One row: the label, the value and, with the previous value, its rate over `secs`.
fn row(out: &mut String, label: &str, val: u64, old: Option<u64>, secs: f64) {
    let rate = old.map(|o| format!("{:>10.1}/s", val.saturating_sub(o) as f64 / secs));
    out.push_str(&format!(
        "  {label:<28} {val:>14}{}\n",
        rate.unwrap_or_default()
    ));
}

/// The NAT tracker's rows, shown under the nat group: (label, value).
fn nat_rows(s: &Snapshot) -> impl Iterator<Item = (String, u64)> + '_ {
    let n = &s.nat;
    [
        ("clients", n.clients),
        ("untracked", n.untracked),
        ("reachable_clients", n.reachable_clients),
        ("rebindings", n.rebindings),
    ]
    .into_iter()
    .map(|(k, v)| (format!("nat.{k}"), v))
    .chain(
        n.refresh_gaps
            .iter()
            .map(|(k, v)| (format!("nat.refresh_gaps.{k}"), v)),
    )
}

/// Renders the stats as a grouped table; with `prev` and `secs`, adds per-second rates.
pub fn render_table(s: &Snapshot, prev: Option<&Snapshot>, secs: f64) -> String {
    let mut out = format!(
        "rport: up {} s, {} live bindings, {} evicted\n",
        s.uptime_s, s.bindings_live, s.bindings_evicted
    );
    for group in GROUPS {
        out.push_str(&format!("\n{}\n", group.to_uppercase()));
        for stat in Stat::in_group(group) {
            let label = format!("{}.{}", stat.source(), stat.name());
            row(
                &mut out,
                &label,
                s.get(stat),
                prev.map(|p| p.get(stat)),
                secs,
            );
        }
        if group == "nat" {
            // The daemon's NAT diagnostics (see `rport stats --nat` for the reading).
            let mut old = prev.map(nat_rows);
            for (label, val) in nat_rows(s) {
                let o = old.as_mut().and_then(|o| o.next()).map(|(_, v)| v);
                row(&mut out, &label, val, o, secs);
            }
        }
    }
    out
}

/// `rport stats --nat`: a short diagnosis in plain language.
pub fn diagnose(s: &Snapshot, now_unix: f64) -> String {
    let (x, n) = (&s.xdp, &s.nat);
    let req = x[Counter::SipRequests];
    let mut out = Vec::new();
    if req == 0 {
        return "No SIP requests seen yet: nothing to diagnose.\n".into();
    }
    let natted = x[Counter::SentByDiffers];
    out.push(format!(
        "{:.0}% of {req} requests came from behind NAT (sent-by is not the source address); {} asked for rport.",
        100.0 * natted as f64 / req as f64,
        x[Counter::RportEmpty] + x[Counter::RportWithValue],
    ));
    let recent = &n.recent_rebindings;
    let last_hour = recent
        .iter()
        .filter(|r| now_unix - r.at_unix <= 3600.0)
        .count();
    let total = n.rebindings;
    let mut ages: Vec<f64> = recent.iter().map(|r| r.old_age_s).collect();
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
                r.client, r.old, r.new, r.old_age_s
            ));
        }
    } else {
        out.push("No rebindings seen: clients' NAT mappings stayed put.".into());
    }
    let gaps = &n.refresh_gaps;
    let (slow, all) = (gaps.above(60.0), gaps.total());
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
    use std::time::{Duration, Instant};

    use rport_common::Counter;

    use super::*;
    use crate::observe::{
        dstats::DaemonCounters,
        nat::{NatTracker, RefreshGaps},
        snapshot::XdpCounters,
    };

    /// The human table, against a committed snapshot
    /// (rport-userspace/tests/snapshots/stats_table.txt): one value per row, known rates,
    /// every group. RPORT_WRITE_DOCS=1 rewrites it.
    #[test]
    fn stats_table_snapshot() {
        let mut now = Snapshot {
            uptime_s: 3600,
            bindings_live: 42,
            bindings_evicted: 7,
            ..Snapshot::default()
        };
        let mut prev = Snapshot {
            uptime_s: 3598,
            bindings_live: 40,
            ..Snapshot::default()
        };
        for (i, c) in Counter::ALL.iter().enumerate() {
            now.xdp.0[*c as usize] = 1000 + 10 * i as u64;
            prev.xdp.0[*c as usize] = 1000 + 5 * i as u64;
        }
        // Every daemon counter 2 × its index, unchanged since `prev`.
        now.daemon = DaemonCounters::from_values(std::array::from_fn(|i| 2 * i as u64));
        prev.daemon = now.daemon;
        (now.nat.clients, now.nat.untracked, now.nat.rebindings) = (37, 0, 4);
        (now.nat.reachable_clients, prev.nat.reachable_clients) = (12, 10);
        now.nat.refresh_gaps = RefreshGaps([1, 2, 3, 4, 5, 6]);
        (prev.nat.clients, prev.nat.rebindings) = (30, 2);
        let got = format!(
            "{}\n--- with --watch 2\n{}",
            render_table(&now, None, 1.0),
            render_table(&now, Some(&prev), 2.0)
        );
        crate::observe::reference::assert_current(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/snapshots/stats_table.txt"
            ),
            &got,
            "stats_table",
        );
    }

    #[test]
    fn diagnosis_in_plain_language() {
        let t = NatTracker::default();
        let t0 = Instant::now();
        t.observe(b"c1", "203.0.113.1:1".parse().unwrap(), t0, None);
        t.observe(
            b"c1",
            "203.0.113.1:2".parse().unwrap(),
            t0 + Duration::from_secs(58),
            None,
        );
        let mut s = Snapshot {
            nat: t.state(),
            ..Snapshot::default()
        };
        for (c, v) in [
            (Counter::SipRequests, 8),
            (Counter::SentByDiffers, 3),
            (Counter::RportEmpty, 2),
        ] {
            s.xdp.0[c as usize] = v;
        }
        let now = s.nat.recent_rebindings[0].at_unix;
        let d = diagnose(&s, now);
        assert!(d.contains("38% of 8 requests came from behind NAT"), "{d}");
        assert!(d.contains("1 rebindings"), "{d}");
        assert!(d.contains("1 of the latest 1 in the last hour"), "{d}");
        assert!(d.contains("median age of the old mapping 58 s"), "{d}");
        assert!(d.contains("every 25 s"), "{d}");
        assert!(
            d.contains("  e.g. c1: 203.0.113.1:1 -> 203.0.113.1:2 after 58 s"),
            "{d}"
        );
        assert!(
            d.contains("0% of client refreshes came more than 60 s apart"),
            "{d}"
        );
        let quiet = Snapshot {
            xdp: XdpCounters::default(),
            ..s
        };
        assert_eq!(
            diagnose(&quiet, 0.0),
            "No SIP requests seen yet: nothing to diagnose.\n"
        );
    }
}
