//! `cargo xtask bench [all|xdp|gateways] [--quick]`: figures printed as Markdown tables
//! and written as JSON under target/bench/. Nothing here asserts a speed: the machines are
//! shared, so every comparison is made side by side in one run.
//!
//! xdp: ns/packet of the XDP program through BPF_PROG_TEST_RUN (the kernel's own mean over
//! `repeat` runs), for the packets that matter.
//!
//! gateways: the same SIP load through five gateways, interleaved step by step: plain
//! kernel forwarding, a bare XDP forwarder (`bpf_fib_lookup` + `bpf_redirect`, no SIP work:
//! the ceiling of this path), rport (`--egress kernel` and `--egress bypass`), and
//! Kamailio as a stateless edge proxy with `force_rport()`. See `gateways` below and
//! docs/BENCHMARKS.md.
//!
//! `bench gen …` and `bench respond …` are the load generator and the legacy responder
//! (rport_tests::load), run by `gateways` inside the namespaces; `bench probe RATE…` runs
//! the rport bed alone and prints rport's counters after each step (for profiling).
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rport_common::role;
use rport_tests::{
    fixtures::{self, Datapath as _},
    load::{self, GenReport},
    ns::{Bpffs, Ns, Proc, can_run, unique},
    sip::{KAMAILIO_MODULES, kamailio_command, run_bounded},
    topo::{GW_INSIDE, GW_OUTSIDE, Rport, forwarding, server_leg, wire},
    xdp::*,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let what = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    match what {
        "all" => {
            xdp(quick)?;
            bindings()?;
            gateways(quick)?;
            queues(quick)
        }
        "xdp" => xdp(quick),
        "bindings" => bindings(),
        "gateways" => gateways(quick),
        "gen" => gen_cmd(&args),
        "probe" => probe(&args[1..]),
        "tail" => tail(&args[1..]),
        "queues" => queues(quick),
        "soak" => soak(&args[1..]),
        "respond" => {
            let listen: SocketAddrV4 = args.get(1).context("respond LISTEN")?.parse()?;
            load::respond(listen, false)
        }
        other => {
            bail!("unknown benchmark {other:?} (all, xdp, bindings, gateways, queues, tail, soak)")
        }
    }
}

/// `bench gen TARGET SENT_BY|- RATE SECS [PORT,PORT…]`: one load step (one flow per local
/// port, 0 the kernel's choice; one flow by default); prints its report as JSON.
fn gen_cmd(a: &[String]) -> Result<()> {
    let (target, sent_by, rate, secs, ports) = match a {
        [_, target, sent_by, rate, secs] => (target, sent_by, rate, secs, vec![0]),
        [_, target, sent_by, rate, secs, ports] => (
            target,
            sent_by,
            rate,
            secs,
            ports
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<u16>, _>>()
                .context("PORT,PORT…")?,
        ),
        _ => bail!("usage: bench gen TARGET SENT_BY|- RATE SECS [PORT,PORT…]"),
    };
    let sent_by = (sent_by != "-").then_some(sent_by.as_str());
    let r = load::generate_flows(
        Ipv4Addr::UNSPECIFIED,
        target.parse()?,
        sent_by,
        rate.parse()?,
        secs.parse()?,
        Duration::from_millis(300),
        &ports,
    )?;
    println!("{}", r.to_json());
    Ok(())
}

/// VmRSS of this process, in KiB.
fn rss_kib() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/self/status")
}

/// `bindings`: what a BINDINGS map of `--max-bindings` entries costs. Loads the program with
/// the default size and with 1,000,000 entries (as `rport run --max-bindings` sizes it),
/// fills every entry from userspace (map updates, as many requests with fresh branches
/// would), and prints the map's `memlock:` (the kernel memory charged for it, from
/// /proc/self/fdinfo) and the RSS of the process that holds it. The map is kernel memory
/// and an LRU hash preallocates every entry, so memlock is the same empty or full, and the
/// RSS (userspace) does not grow with it. About 3 s in all, so `--quick` runs it whole.
fn bindings() -> Result<()> {
    if !can_load_bpf("bench bindings") {
        return Ok(());
    }
    let b = rport_common::Binding {
        src_addr: rport_common::addr_to_16(Ipv4Addr::new(203, 0, 113, 1).into()),
        dst_addr: rport_common::addr_to_16(Ipv4Addr::new(198, 51, 100, 10).into()),
        first_seen_ns: 1,
        last_seen_ns: 1,
        src_port: 32415,
        dst_port: 5060,
        sent_by_port: 5060,
        requests: 1,
        ..Default::default()
    };
    let mut rows = Vec::new();
    for size in [rport_common::MAX_BINDINGS, 1_000_000] {
        let fill = size;
        let mut h = XdpHarness::load_sized(rport_userspace::datapath::loader::XdpLog::Off, size)?;
        let rss_before = rss_kib()?;
        let (memlock_empty, entries) = h.bindings_memlock()?;
        anyhow::ensure!(
            entries == size,
            "BINDINGS has {entries} entries, asked {size}"
        );
        let t = Instant::now();
        h.fill_bindings(fill, &b)?;
        let fill_s = t.elapsed().as_secs_f64();
        let (memlock, _) = h.bindings_memlock()?;
        let rss_after = rss_kib()?;
        rows.push((
            size,
            fill,
            memlock_empty,
            memlock,
            rss_before,
            rss_after,
            fill_s,
        ));
    }
    println!("\n### BINDINGS map size (`rport run --max-bindings`)\n");
    println!(
        "| --max-bindings | filled | map memlock empty (MiB) | memlock full (MiB) | bytes per binding | process RSS loaded / filled (MiB) | fill time (s) |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for (size, fill, empty, full, before, after, s) in &rows {
        println!(
            "| {size} | {fill} | {:.1} | {:.1} | {} | {:.1} / {:.1} | {s:.2} |",
            mib(*empty),
            mib(*full),
            full / *size as u64,
            *before as f64 / 1024.0,
            *after as f64 / 1024.0
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "rows": rows.iter().map(|(size, fill, empty, full, before, after, s)| serde_json::json!({
            "max_bindings": size, "filled": fill, "memlock_empty_bytes": empty,
            "memlock_full_bytes": full, "bytes_per_binding": full / *size as u64,
            "rss_before_kib": before, "rss_after_kib": after, "fill_s": s,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("bindings.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}

fn xdp(quick: bool) -> Result<()> {
    if !can_load_bpf("bench xdp") {
        return Ok(());
    }
    let repeat = if quick { 20_000 } else { 1_000_000 };
    let singles = if quick { 200 } else { 2000 };
    // The rows of the fixture table that carry a bench label, each from its own prior
    // state (a response after the request that leaves its binding), arriving where the
    // table says (a device of its role, its rx queue).
    let rows = with_bed(move |bed| {
        let table = fixtures::table();
        let noise = table
            .iter()
            .find(|f| f.name == fixtures::NON_SIP_1400)
            .context("the 1,400-byte non-SIP row")?;
        let noise_at = bed.ingress(noise.role, noise.rx_queue);
        let mut rows = Vec::new();
        for f in &table {
            let Some(label) = f.bench else { continue };
            bed.reset(&f.prior)?;
            for r in &f.prior.requests {
                bed.run(r, role::OUTSIDE, 0)?;
            }
            let at = bed.ingress(f.role, f.rx_queue);
            // Best of three runs: the figure least disturbed by the other tenants.
            let ns = (0..3)
                .map(|_| {
                    bed.h
                        .run_repeat(&f.frame, Some(at), repeat)
                        .map(|x| x.duration_ns)
                })
                .collect::<Result<Vec<_>>>()?;
            // The same packet once per syscall, with a 1,400-byte non-SIP packet run in
            // between: closer to a gateway, where the program rarely sees the same packet
            // twice in a row (caches and branch predictors not trained on it). Median.
            let mut single = Vec::new();
            for _ in 0..singles {
                bed.h.run_on(&noise.frame, noise_at)?;
                single.push(bed.h.run_on(&f.frame, at)?.duration_ns);
            }
            single.sort_unstable();
            rows.push((
                label,
                f.frame.len(),
                *ns.iter().min().unwrap(),
                single[single.len() / 2],
            ));
        }
        Ok(rows)
    })?;
    println!("\n### XDP program, BPF_PROG_TEST_RUN\n");
    println!(
        "| packet | bytes | ns/packet, {repeat} runs in a row (best of 3) | ns/packet, one run at a time between others (median) |\n|---|---:|---:|---:|"
    );
    for (n, len, ns, single) in &rows {
        println!("| {n} | {len} | {ns} | {single} |");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "repeat": repeat,
        "rows": rows.iter().map(|(n, l, ns, single)| serde_json::json!({"packet": n, "bytes": l, "ns_per_packet": ns, "ns_single_run_median": single})).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("xdp.json"), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

/// `bench probe RATE…`: the rport bed only, one 1-second step per rate, with rport's own
/// counters after each (for looking into a figure of `gateways`).
fn probe(rates: &[String]) -> Result<()> {
    let bench = std::env::current_exe()?;
    let _stats = load::BpfStats::enable()?;
    let mut b = Bed::new(Kind::Rport, &bench)?;
    for r in rates.iter().filter(|r| !r.starts_with("--")) {
        let s = b.step(&bench, r.parse()?, 1.0)?;
        let st = b.rport.as_ref().unwrap().stats()?;
        println!(
            "{r}/s: sent {} received {} loss {:.2}% xdp {:.0} ns/run\n  xdp {}\n  daemon {}",
            s.load.sent,
            s.load.received,
            s.load.loss() * 100.0,
            s.xdp_ns as f64 / s.xdp_runs.max(1) as f64,
            st["xdp"],
            st["daemon"]
        );
    }
    Ok(())
}

/// The load average (1, 5, 15 min), for the record next to a figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `bench tail RATE ROUNDS [VARIANT…]`: the latency tail, A/B. Plain forwarding and one
/// rport bed per VARIANT (`-`: as `gateways` runs it; else `rport run` flags, and
/// `bin=PATH` for another build of rport) at the same RATE, ROUNDS 2-s steps each,
/// interleaved, so every variant meets the same moments of a shared machine. Prints each
/// step's p50/p99/p99.9 and the median of each over the rounds.
fn tail(a: &[String]) -> Result<()> {
    if !can_run("bench tail", &["ip"]) {
        return Ok(());
    }
    let a: Vec<&String> = a.iter().filter(|x| !x.starts_with("--quick")).collect();
    let (Some(rate), Some(rounds)) = (a.first(), a.get(1)) else {
        bail!("usage: bench tail RATE ROUNDS [VARIANT…]");
    };
    let (rate, rounds): (u64, usize) = (rate.parse()?, rounds.parse()?);
    let bench = std::env::current_exe()?;
    let mut variants: Vec<String> = a[2..].iter().map(|s| s.to_string()).collect();
    if variants.is_empty() {
        variants.push("-".into());
    }
    let mut beds = vec![Bed::new(Kind::Plain, &bench)?];
    for v in &variants {
        beds.push(Bed::with(Kind::Rport, &bench, Setup::parse(v))?);
    }
    let load_before = loadavg();
    let mut lat: Vec<Vec<GenReport>> = vec![Vec::new(); beds.len()];
    // The forwarding threads' run-queue wait and runs over the steps.
    let mut sched = vec![(0u64, 0u64); beds.len()];
    for round in 0..rounds {
        for (i, b) in beds.iter_mut().enumerate() {
            let w0 = b.worker_sched();
            let s = b.step(&bench, rate, 2.0)?;
            let w1 = b.worker_sched();
            sched[i].0 += w1.0 - w0.0;
            sched[i].1 += w1.1 - w0.1;
            eprintln!(
                "round {round} {:40} p50 {:6.0} p99 {:6.0} p99.9 {:6.0} µs loss {:.3}% worker runs {} wait/run {:.1} µs",
                b.name(),
                s.load.p50_us,
                s.load.p99_us,
                s.load.p999_us,
                s.load.loss() * 100.0,
                w1.1 - w0.1,
                (w1.0 - w0.0) as f64 / (w1.1 - w0.1).max(1) as f64 / 1000.0
            );
            lat[i].push(s.load);
        }
    }
    let median = |v: &[GenReport], f: fn(&GenReport) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!(
        "\n### Latency at {rate}/s, {rounds} interleaved 2-s steps (load average {load_before} → {})\n",
        loadavg()
    );
    println!(
        "| gateway | p50 (µs) | p99 (µs) | p99.9 (µs) | p99 of each step (µs) | loss | worker runs per request | worker wait per run (µs) |\n|---|---:|---:|---:|---|---:|---:|---:|"
    );
    for (i, b) in beds.iter().enumerate() {
        let l = &lat[i];
        let sent: u64 = l.iter().map(|r| r.sent).sum();
        let (wait, runs) = sched[i];
        let (per_req, per_run) = if b.kind == Kind::Rport {
            (
                format!("{:.3}", runs as f64 / sent.max(1) as f64),
                format!("{:.1}", wait as f64 / runs.max(1) as f64 / 1000.0),
            )
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.2}% | {per_req} | {per_run} |",
            b.name(),
            median(l, |r| r.p50_us),
            median(l, |r| r.p99_us),
            median(l, |r| r.p999_us),
            l.iter()
                .map(|r| format!("{:.0}", r.p99_us))
                .collect::<Vec<_>>()
                .join(" "),
            100.0 * median(l, GenReport::loss)
        );
    }
    Ok(())
}

/// `bench queues`: the outside link with 2 rx/tx queues, the load in two flows that
/// arrive one on each queue (`rport_tests::queues::wire`), and the max rate of plain forwarding, of
/// rport with one worker for both queues (`--workers 1`) and with one per queue (the
/// default), interleaved as in `gateways`; then each bed's split of the frames over the
/// queues (the XDP program's per-queue counts: the load did reach both).
fn queues(quick: bool) -> Result<()> {
    if !can_run("bench queues", &["ip", "tc", "ethtool"]) {
        return Ok(());
    }
    let bench = std::env::current_exe()?;
    let _stats = load::BpfStats::enable()?;
    let (secs, start, max_rate) = search_steps(quick);
    let two = |label: &str, args: &[&str]| Setup {
        queues: 2,
        ports: vec![40000, 40001],
        rport_args: args.iter().map(|s| s.to_string()).collect(),
        label: label.into(),
        ..Default::default()
    };
    let load_before = loadavg();
    let mut beds = vec![
        Bed::with(Kind::Plain, &bench, two("2 queues", &[]))?,
        Bed::with(
            Kind::Rport,
            &bench,
            two("2 queues, 1 worker", &["--workers", "1"]),
        )?,
        Bed::with(Kind::Rport, &bench, two("2 queues, 2 workers", &[]))?,
    ];
    let q0: Vec<Vec<u64>> = beds.iter().map(Bed::queue_packets).collect();
    search(&mut beds, &bench, secs, start, max_rate)?;
    let q1: Vec<Vec<u64>> = beds.iter().map(Bed::queue_packets).collect();
    println!(
        "\n### Two queues on the outside ({secs} s steps, loss ≤ {}%, load average {load_before} → {})\n",
        MAX_LOSS * 100.0,
        loadavg()
    );
    println!(
        "| gateway | max rate (REGISTER/s) | gateway CPU per transaction at max (µs) | frames per rx queue (XDP) |\n|---|---:|---:|---|"
    );
    for (i, b) in beds.iter().enumerate() {
        let per_q: Vec<String> = q1[i]
            .iter()
            .zip(q0[i].iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| (a - b).to_string())
            .collect();
        println!(
            "| {} | {}{} | {} | {} |",
            b.name(),
            if b.load_limited { "≥ " } else { "" },
            b.ok.as_ref().map(|o| o.load.target_rate).unwrap_or(0),
            match (&b.ok, b.kind) {
                (_, Kind::Plain) => "-".to_string(),
                (Some(o), _) => format!("{:.1}", o.per_txn_us()),
                (None, _) => "-".into(),
            },
            if per_q.is_empty() {
                "-".into()
            } else {
                per_q.join(" / ")
            }
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "quick": quick, "step_secs": secs, "max_loss": MAX_LOSS,
        "beds": beds.iter().enumerate().map(|(i, b)| serde_json::json!({
            "gateway": b.name(), "max_rate": b.ok.as_ref().map(|o| o.load.target_rate),
            "load_limited": b.load_limited, "at_max": b.ok.as_ref().map(Step::json),
            "queue_frames": q1[i].iter().zip(q0[i].iter().chain(std::iter::repeat(&0))).map(|(a, b)| a - b).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("queues.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}

/// `bench soak MINUTES [RATE]`: the rport bed under a steady load for MINUTES, at RATE or
/// at half the max rate found first (1-s steps, as `gateways --quick` searches), sampled
/// every 5 s: the daemon's RSS, `bindings_live`, the NAT tracker's size. Prints the table
/// and a verdict per series (`rport_tests::soak`), and target/bench/soak.json.
fn soak(a: &[String]) -> Result<()> {
    if !can_run("bench soak", &["ip"]) {
        return Ok(());
    }
    let minutes: f64 = a.first().context("bench soak MINUTES [RATE]")?.parse()?;
    let bench = std::env::current_exe()?;
    let mut b = Bed::new(Kind::Rport, &bench)?;
    let rate = match a.get(1) {
        Some(r) => r.parse()?,
        None => {
            let max_rate = 256_000;
            for _ in 0..16 {
                if b.done(max_rate) {
                    break;
                }
                let rate = b.next_rate(4_000);
                let s = b.step(&bench, rate, 1.0)?;
                let ok = s.load.loss() <= MAX_LOSS;
                eprintln!("search {rate:7}/s loss {:6.3}%", s.load.loss() * 100.0);
                if ok && s.load.sent_rate() < 0.9 * rate as f64 {
                    b.load_limited = true;
                }
                if ok {
                    b.ok = Some(s);
                } else {
                    b.failed = Some(rate);
                }
            }
            let max = b.ok.as_ref().map(|o| o.load.target_rate).unwrap_or(1000);
            eprintln!("max rate {max}/s; soaking at {}/s", max / 2);
            (max / 2).max(500)
        }
    };
    let secs = minutes * 60.0;
    let out_path = b.dir.join("soak-gen.json");
    let mut c = b.client.cmd(&bench);
    c.args([
        "gen",
        TARGET,
        "192.168.1.50:5060",
        &rate.to_string(),
        &secs.to_string(),
    ])
    .stdout(std::fs::File::create(&out_path)?)
    .stderr(std::fs::File::create(b.dir.join("soak-gen.err"))?);
    let mut generator = c.spawn().context("starting the generator")?;
    let r = b.rport.as_ref().unwrap();
    let pid = r.proc.child.as_ref().unwrap().id();
    let t0 = Instant::now();
    let mut samples = Vec::new();
    loop {
        let done = generator.try_wait()?.is_some();
        let st = r.stats()?;
        let x = rport_tests::soak::Sample::from_stats(
            t0.elapsed().as_secs_f64(),
            rport_tests::soak::process_rss_kib(pid)?,
            &st,
        );
        eprintln!(
            "{:5.0} s rss {:.1} MiB bindings_live {} nat clients {}",
            x.t_s,
            x.rss_kib as f64 / 1024.0,
            x.bindings_live,
            x.nat_clients
        );
        samples.push(x);
        if done {
            break;
        }
        if t0.elapsed().as_secs_f64() > secs + 60.0 {
            let _ = generator.kill();
            let _ = generator.wait();
            bail!("the generator did not finish");
        }
        let next = Duration::from_secs(5 * samples.len() as u64);
        std::thread::sleep(
            next.saturating_sub(t0.elapsed())
                .max(Duration::from_millis(200)),
        );
    }
    let out = std::fs::read_to_string(&out_path)?;
    let g = GenReport::from_json(&serde_json::from_str(out.trim()).context("generator report")?)?;
    print!(
        "{}",
        rport_tests::soak::report(&samples, rate, minutes, g.sent, g.received)
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "rate": rate, "minutes": minutes, "load": g.to_json(),
        "samples": samples.iter().map(|x| serde_json::json!({
            "t_s": x.t_s, "rss_kib": x.rss_kib, "bindings_live": x.bindings_live,
            "nat_clients": x.nat_clients, "nat_untracked": x.nat_untracked, "rx_frames": x.rx_frames,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("soak.json"), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

/// The gateways under comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Plain,
    Ceiling,
    Rport,
    RportBypass,
    Kamailio,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain forwarding",
            Kind::Ceiling => "XDP forwarder (ceiling)",
            Kind::Rport => "rport",
            Kind::RportBypass => "rport --egress bypass",
            Kind::Kamailio => "Kamailio stateless force_rport()",
        }
    }
    /// rport in either egress mode.
    fn is_rport(self) -> bool {
        matches!(self, Kind::Rport | Kind::RportBypass)
    }
    fn key(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Ceiling => "xdp_forwarder",
            Kind::Rport => "rport",
            Kind::RportBypass => "rport_bypass",
            Kind::Kamailio => "kamailio",
        }
    }
}

/// client 203.0.113.50 ── 203.0.113.1 gateway 198.51.100.1 ── server 198.51.100.10, with
/// the legacy responder on the server and the gateway under test in between. The load
/// claims the private sent-by 192.168.1.50:5060 (rport, Kamailio) or its own address
/// (plain forwarding, which rewrites nothing), so that in every case the responder's
/// answer to the Via reaches the client only if the gateway did its job.
///
/// In every row alike: the client's and the server's tx checksum offload off (a frame
/// XDP redirects reaches the receiver without the sender's CHECKSUM_PARTIAL state, so it
/// must carry a complete checksum, as from a real NIC), and `rport_pass` (XDP_PASS) on
/// both (a veth transmits a frame redirected into it only when its peer runs an XDP
/// program; it also moves the peer's receive to NAPI, so every row gets it).
struct Bed {
    kind: Kind,
    setup: Setup,
    client: Ns,
    gw: Ns,
    server: Ns,
    dir: PathBuf,
    // Field order = drop order: processes first, then the bpffs, then the namespaces.
    rport: Option<Rport>,
    kamailio: Option<Proc>,
    responder: Option<Proc>,
    /// `rport_pass` on the client's and server's ends, `rport_fwd` on the gateway's
    /// (ceiling row): detached when dropped.
    progs: Vec<PassProg>,
    _pins: Option<Bpffs>,
    /// Highest rate with ≤ 0.1% loss so far, lowest rate above it, steps run.
    ok: Option<Step>,
    failed: Option<u64>,
    load_limited: bool,
    steps: Vec<Step>,
}

#[derive(Clone, Debug)]
struct Step {
    load: GenReport,
    gateway_cpu_ns: u64,
    xdp_ns: u64,
    xdp_runs: u64,
    responder_cpu_ns: u64,
}

impl Step {
    fn per_txn_us(&self) -> f64 {
        (self.gateway_cpu_ns + self.xdp_ns) as f64 / self.load.sent.max(1) as f64 / 1000.0
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "load": self.load.to_json(), "gateway_cpu_ns": self.gateway_cpu_ns,
            "xdp_run_time_ns": self.xdp_ns, "xdp_runs": self.xdp_runs,
            "responder_cpu_ns": self.responder_cpu_ns,
            "gateway_cpu_us_per_transaction": self.per_txn_us(),
        })
    }
}

const TARGET: &str = "198.51.100.10:5060";

/// How a bed differs from the default one: rx/tx queues of the outside veth pair, the
/// generator's flows (local ports), and for rport its binary and extra `rport run` flags.
#[derive(Clone, Debug, Default)]
struct Setup {
    /// Queues of the client ↔ gateway-outside veth pair (0 or 1: one).
    queues: u32,
    /// The generator's local ports, one flow each (empty: one flow, the kernel's port).
    ports: Vec<u16>,
    /// Another rport binary (an A/B against an older build).
    rport_bin: Option<PathBuf>,
    rport_args: Vec<String>,
    /// Environment of `rport run` (`RPORT_…=V` in a VARIANT: the experiments' knobs).
    rport_env: Vec<(String, String)>,
    /// Shown in the tables.
    label: String,
}

impl Setup {
    /// `VARIANT` of `bench tail`: `[bin=PATH] [rport run flags…]`, or `-` for none.
    fn parse(v: &str) -> Setup {
        let mut s = Setup {
            label: v.to_string(),
            ..Default::default()
        };
        for w in v.split_whitespace().filter(|w| *w != "-") {
            if let Some(p) = w.strip_prefix("bin=") {
                s.rport_bin = Some(p.into());
            } else if let (true, Some((k, v))) = (w.starts_with("RPORT_"), w.split_once('=')) {
                s.rport_env.push((k.into(), v.into()));
            } else {
                s.rport_args.push(w.to_string());
            }
        }
        s
    }
}

/// Starts rport as `Rport::start` does, with the binary and environment of `setup`.
fn start_rport(gw: &Ns, pins: &Bpffs, log: &std::path::Path, setup: &Setup) -> Result<Rport> {
    let args: Vec<&str> = setup.rport_args.iter().map(String::as_str).collect();
    Rport::start_with(
        gw,
        GW_OUTSIDE,
        GW_INSIDE,
        pins,
        log,
        &args,
        setup.rport_bin.as_deref(),
        &setup.rport_env,
    )
}

impl Bed {
    fn new(kind: Kind, bench: &std::path::Path) -> Result<Bed> {
        Bed::with(kind, bench, Setup::default())
    }

    fn with(kind: Kind, bench: &std::path::Path, setup: Setup) -> Result<Bed> {
        let dir = std::env::temp_dir().join(unique("rport-bench-"));
        std::fs::create_dir_all(&dir)?;
        let mut b = Bed {
            kind,
            setup,
            client: Ns::new("rpbc")?,
            gw: Ns::new("rpbg")?,
            server: Ns::new("rpbs")?,
            dir,
            rport: None,
            kamailio: None,
            responder: None,
            progs: Vec::new(),
            _pins: None,
            ok: None,
            failed: None,
            load_limited: false,
            steps: Vec::new(),
        };
        if b.setup.queues > 1 {
            rport_tests::queues::wire(&b.client, "c0", &b.gw, GW_OUTSIDE, b.setup.queues)?;
        } else {
            wire(
                &b.client,
                "c0",
                "203.0.113.50",
                &b.gw,
                GW_OUTSIDE,
                "203.0.113.1",
            )?;
        }
        server_leg(&b.gw, &b.server)?;
        forwarding(&b.gw)?;
        for (ns, dev) in [(&b.client, "c0"), (&b.server, "srv0")] {
            rport_tests::ns::sh(ns.cmd("ethtool").args(["-K", dev, "tx", "off"]))?;
            b.progs.push(attach_pass(ns, dev)?);
        }
        let mut c = b.server.cmd(bench);
        c.args(["respond", TARGET]);
        b.responder = Some(Proc::spawn(c, "responder", &b.dir.join("responder.log"))?);
        match kind {
            Kind::Plain => {}
            Kind::Ceiling => {
                for dev in [GW_OUTSIDE, GW_INSIDE] {
                    b.progs
                        .push(attach_prog(&b.gw, dev, rport_common::FWD_PROGRAM_NAME)?);
                }
            }
            Kind::Rport | Kind::RportBypass => {
                let pins = Bpffs::new()?;
                // The row's own flags, then any given for an A/B of one option.
                let mut setup = b.setup.clone();
                if kind == Kind::RportBypass {
                    setup
                        .rport_args
                        .extend(["--egress".into(), "bypass".into()]);
                }
                let env = std::env::var("RPORT_BENCH_RPORT_ARGS").unwrap_or_default();
                setup
                    .rport_args
                    .extend(env.split_whitespace().map(String::from));
                b.rport = Some(start_rport(&b.gw, &pins, &b.dir.join("rport.log"), &setup)?);
                b._pins = Some(pins);
            }
            Kind::Kamailio => {
                let cfg = b.dir.join("edge.cfg");
                std::fs::write(
                    &cfg,
                    format!(
                        "#!KAMAILIO\ndebug=1\nlog_stderror=yes\nchildren=2\ndisable_tcp=yes\n\
                         auto_aliases=no\nlisten=udp:203.0.113.1:5060\nlisten=udp:198.51.100.1:5060\n\
                         mpath=\"{KAMAILIO_MODULES}\"\n\
                         request_route {{\n    force_rport();\n    forward(\"198.51.100.10\", 5060);\n}}\n"
                    ),
                )?;
                let c = kamailio_command(&b.gw, &cfg, &b.dir.join("kamailio.run"), 64)?;
                b.kamailio = Some(Proc::spawn(c, "kamailio", &b.dir.join("kamailio.log"))?);
            }
        }
        // Ready when one request makes the round trip.
        let t = Instant::now();
        loop {
            if let Ok(r) = b.step_gen(bench, 100, 0.05) {
                if r.received > 0 {
                    break;
                }
            }
            if t.elapsed() > Duration::from_secs(15) {
                bail!("{}: no answer through the gateway", kind.name());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(b)
    }

    /// The gateway's name and, when it differs from the default, its setup.
    fn name(&self) -> String {
        if self.setup.label.is_empty() || self.setup.label == "-" {
            self.kind.name().to_string()
        } else {
            format!("{} {}", self.kind.name(), self.setup.label)
        }
    }

    /// Frames the XDP program saw on each rx queue of the gateway's outside interface.
    fn queue_packets(&self) -> Vec<u64> {
        rport_tests::queues::xdp_packets(&self.gw, GW_OUTSIDE).unwrap_or_default()
    }

    /// The forwarding threads' scheduler figures so far, summed: (run-queue wait ns,
    /// times run) from /proc/PID/task/TID/schedstat; the wait per run is how long a woken
    /// worker waited for a CPU.
    fn worker_sched(&self) -> (u64, u64) {
        let Some(r) = &self.rport else {
            return (0, 0);
        };
        let pid = r.proc.child.as_ref().unwrap().id();
        let mut sum = (0, 0);
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
        {
            let Ok(t) = t else { continue };
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("rport-gw-out") {
                continue;
            }
            let st = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            let f: Vec<u64> = st
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let [_, wait, runs] = f[..] {
                sum.0 += wait;
                sum.1 += runs;
            }
        }
        sum
    }

    fn gateway_pids(&self) -> Vec<u32> {
        match self.kind {
            Kind::Plain | Kind::Ceiling => vec![],
            Kind::Rport | Kind::RportBypass => vec![
                self.rport
                    .as_ref()
                    .unwrap()
                    .proc
                    .child
                    .as_ref()
                    .unwrap()
                    .id(),
            ],
            Kind::Kamailio => {
                load::process_tree(self.kamailio.as_ref().unwrap().child.as_ref().unwrap().id())
            }
        }
    }

    fn gateway_cpu(&self) -> u64 {
        self.gateway_pids()
            .iter()
            .map(|p| load::process_cpu_ns(*p).unwrap_or(0))
            .sum()
    }

    fn xdp(&self) -> load::BpfUsage {
        match &self.rport {
            Some(r) => load::bpf_usage(r.proc.child.as_ref().unwrap().id()).unwrap_or_default(),
            None => load::BpfUsage::default(),
        }
    }

    fn responder_cpu(&self) -> u64 {
        let pid = self
            .responder
            .as_ref()
            .unwrap()
            .child
            .as_ref()
            .unwrap()
            .id();
        load::process_cpu_ns(pid).unwrap_or(0)
    }

    /// Memory of the gateway: proportional set size of its processes, plus what its BPF
    /// maps and programs lock in the kernel.
    fn memory(&self) -> u64 {
        let pss: u64 = self
            .gateway_pids()
            .iter()
            .map(|p| load::process_pss(*p).unwrap_or(0))
            .sum();
        pss + self.xdp().memlock
    }

    fn step_gen(&self, bench: &std::path::Path, rate: u64, secs: f64) -> Result<GenReport> {
        let (target, sent_by) = match self.kind {
            Kind::Plain | Kind::Ceiling => (TARGET, "-"),
            Kind::Rport | Kind::RportBypass => (TARGET, "192.168.1.50:5060"),
            Kind::Kamailio => ("203.0.113.1:5060", "192.168.1.50:5060"),
        };
        let out_path = self.dir.join("gen.json");
        let mut c = self.client.cmd(bench);
        c.args(["gen", target, sent_by, &rate.to_string(), &secs.to_string()]);
        if !self.setup.ports.is_empty() {
            let p: Vec<String> = self.setup.ports.iter().map(u16::to_string).collect();
            c.arg(p.join(","));
        }
        c.stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(self.dir.join("gen.err"))?);
        let st = run_bounded(&mut c, Duration::from_secs_f64(secs + 30.0))?;
        let out = std::fs::read_to_string(&out_path)?;
        let v: serde_json::Value = serde_json::from_str(out.trim()).with_context(|| {
            format!(
                "generator ({st}): {out} {}",
                std::fs::read_to_string(self.dir.join("gen.err")).unwrap_or_default()
            )
        })?;
        GenReport::from_json(&v)
    }

    /// One measured load step.
    fn step(&mut self, bench: &std::path::Path, rate: u64, secs: f64) -> Result<Step> {
        std::thread::sleep(Duration::from_millis(200));
        let (g0, x0, r0) = (self.gateway_cpu(), self.xdp(), self.responder_cpu());
        let load = self.step_gen(bench, rate, secs)?;
        let (g1, x1, r1) = (self.gateway_cpu(), self.xdp(), self.responder_cpu());
        let s = Step {
            load,
            gateway_cpu_ns: g1.saturating_sub(g0),
            xdp_ns: x1.run_time_ns.saturating_sub(x0.run_time_ns),
            xdp_runs: x1.run_cnt.saturating_sub(x0.run_cnt),
            responder_cpu_ns: r1.saturating_sub(r0),
        };
        self.steps.push(s.clone());
        Ok(s)
    }

    fn done(&self, max_rate: u64) -> bool {
        if self.load_limited {
            return true;
        }
        match (&self.ok, self.failed) {
            (_, None) => self
                .ok
                .as_ref()
                .is_some_and(|o| o.load.target_rate >= max_rate),
            (None, Some(_)) => false,
            (Some(o), Some(f)) => f as f64 / o.load.target_rate as f64 <= 1.2,
        }
    }

    fn next_rate(&self, start: u64) -> u64 {
        match (&self.ok, self.failed) {
            (None, None) => start,
            (Some(o), None) => o.load.target_rate * 2,
            (None, Some(f)) => (f / 2).max(500),
            (Some(o), Some(f)) => ((o.load.target_rate as f64 * f as f64).sqrt()) as u64,
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Processes before the namespaces they run in (field order does the rest).
        self.rport.take();
        self.kamailio.take();
        self.responder.take();
        self.progs.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stepped search for each bed's max rate, interleaved: one step per gateway per round,
/// so that a noisy moment on the shared machine hits all of them alike.
fn search(
    beds: &mut [Bed],
    bench: &std::path::Path,
    secs: f64,
    start: u64,
    max_rate: u64,
) -> Result<()> {
    for round in 0..24 {
        let mut any = false;
        for b in beds.iter_mut() {
            if b.done(max_rate) {
                continue;
            }
            any = true;
            let rate = b.next_rate(start);
            let s = b.step(bench, rate, secs)?;
            let ok = s.load.loss() <= MAX_LOSS;
            eprintln!(
                "round {round:2} {:34} {:7}/s sent {:9.0}/s loss {:6.3}% gateway {:6.1} µs/txn",
                b.name(),
                rate,
                s.load.sent_rate(),
                s.load.loss() * 100.0,
                s.per_txn_us()
            );
            if ok && s.load.sent_rate() < 0.9 * rate as f64 {
                // The generator could not send this fast, and the gateway kept up with all
                // it got: the gateway's limit is above what this machine can offer it.
                b.load_limited = true;
            }
            if ok {
                b.ok = Some(s);
            } else {
                b.failed = Some(rate);
            }
        }
        if !any {
            break;
        }
    }
    Ok(())
}

/// Maximum loss for a rate to count as sustained.
const MAX_LOSS: f64 = 0.001;

/// The stepped search's step length (s), first rate and highest rate (REGISTER/s):
/// short under `--quick`.
fn search_steps(quick: bool) -> (f64, u64, u64) {
    if quick {
        (1.0, 4_000, 256_000)
    } else {
        (3.0, 2_000, 512_000)
    }
}

fn gateways(quick: bool) -> Result<()> {
    if !can_run("bench gateways", &["ip", "kamailio", "ethtool"]) {
        return Ok(());
    }
    let bench = std::env::current_exe()?;
    let _stats = load::BpfStats::enable()?;
    let (secs, start, max_rate) = search_steps(quick);
    let t0 = Instant::now();
    let mut beds = Vec::new();
    for k in [
        Kind::Plain,
        Kind::Ceiling,
        Kind::Rport,
        Kind::RportBypass,
        Kind::Kamailio,
    ] {
        beds.push(Bed::new(k, &bench).with_context(|| format!("setting up {}", k.name()))?);
    }
    search(&mut beds, &bench, secs, start, max_rate)?;
    let at = |k: Kind| beds.iter().position(|b| b.kind == k).unwrap();
    let (i_plain, i_ceiling, i_rport, i_kamailio) = (
        at(Kind::Plain),
        at(Kind::Ceiling),
        at(Kind::Rport),
        at(Kind::Kamailio),
    );
    // Latency at half of rport's sustained rate, for all of them.
    let rport_max = beds[i_rport]
        .ok
        .as_ref()
        .map(|o| o.load.target_rate)
        .unwrap_or(1000);
    let half = (rport_max / 2).max(500);
    let mut lat = Vec::new();
    for b in beds.iter_mut() {
        lat.push(b.step(&bench, half, secs)?);
    }
    let mem: Vec<u64> = beds.iter().map(Bed::memory).collect();

    // Report.
    let max = |b: &Bed| b.ok.as_ref().map(|o| o.load.target_rate).unwrap_or(0);
    println!(
        "\n### Gateways, same load, interleaved ({} s steps, loss ≤ {}%)\n",
        secs,
        MAX_LOSS * 100.0
    );
    println!(
        "| gateway | max rate (REGISTER/s) | gateway CPU per transaction at max (µs) | of which XDP (µs) | latency p50 / p99 / p99.9 at {half}/s (µs) | loss at {half}/s | memory (MiB) |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|");
    for (i, b) in beds.iter().enumerate() {
        let m = max(b);
        let (cpu, xdp) = match (&b.ok, b.kind) {
            (_, Kind::Plain | Kind::Ceiling) => {
                ("kernel softirq, not attributable".to_string(), "-".into())
            }
            (Some(o), _) => (
                format!("{:.1}", o.per_txn_us()),
                format!(
                    "{:.2}",
                    o.xdp_ns as f64 / o.load.sent.max(1) as f64 / 1000.0
                ),
            ),
            (None, _) => ("-".into(), "-".into()),
        };
        let l = &lat[i];
        println!(
            "| {} | {}{} | {} | {} | {:.0} / {:.0} / {:.0} | {:.2}% | {:.1} |",
            b.kind.name(),
            if b.load_limited { "≥ " } else { "" },
            m,
            cpu,
            xdp,
            l.load.p50_us,
            l.load.p99_us,
            l.load.p999_us,
            l.load.loss() * 100.0,
            mem[i] as f64 / (1 << 20) as f64
        );
    }
    let (p, c, r, k) = (
        max(&beds[i_plain]) as f64,
        max(&beds[i_ceiling]) as f64,
        max(&beds[i_rport]) as f64,
        max(&beds[i_kamailio]) as f64,
    );
    let cpu = |b: &Bed| b.ok.as_ref().map(Step::per_txn_us).unwrap_or(f64::NAN);
    println!(
        "\nrport / Kamailio max rate: {:.2}×; rport / plain forwarding: {:.0}%; Kamailio CPU per transaction / rport's: {:.2}×; p99 added by rport over plain forwarding: {:.0} µs, by Kamailio: {:.0} µs",
        r / k.max(1.0),
        100.0 * r / p.max(1.0),
        cpu(&beds[i_kamailio]) / cpu(&beds[i_rport]),
        lat[i_rport].load.p99_us - lat[i_plain].load.p99_us,
        lat[i_kamailio].load.p99_us - lat[i_plain].load.p99_us,
    );
    println!(
        "XDP forwarder (ceiling) / plain forwarding: {:.0}%",
        100.0 * c / p.max(1.0)
    );
    // Issue 15's targets, for each rport row (ratios of this one run).
    for (i, b) in beds.iter().enumerate().filter(|(_, b)| b.kind.is_rport()) {
        let m = max(b) as f64;
        let added = lat[i].load.p99_us - lat[i_plain].load.p99_us;
        println!(
            "\n{}: / plain forwarding {:.0}%, / Kamailio {:.2}×, / XDP forwarder (ceiling) {:.0}%, p99 added over plain forwarding at {half}/s {:.0} µs",
            b.kind.name(),
            100.0 * m / p.max(1.0),
            m / k.max(1.0),
            100.0 * m / c.max(1.0),
            added
        );
        let met = |ok: bool| if ok { "met" } else { "not met" };
        println!(
            "- target max rate ≥ 100% of plain forwarding: {} ({:.0}%)",
            met(m >= p),
            100.0 * m / p.max(1.0)
        );
        println!(
            "- target max rate ≥ 10× Kamailio's: {} ({:.2}×)",
            met(m >= 10.0 * k),
            m / k.max(1.0)
        );
        println!(
            "- target p99 added over plain forwarding at half load ≤ 50 µs: {} ({:.0} µs)",
            met(added <= 50.0),
            added
        );
    }
    // The load tools' own cost, to show they were not the limit.
    let tool = |s: &Step| {
        (
            s.load.cpu_ns as f64 / s.load.sent.max(1) as f64 / 1000.0,
            s.responder_cpu_ns as f64 / s.load.received.max(1) as f64 / 1000.0,
        )
    };
    for (i, b) in beds.iter().enumerate() {
        let (g, r) = tool(&lat[i]);
        println!(
            "load tools with {}: generator {:.1} µs/request, responder {:.1} µs/request",
            b.kind.name(),
            g,
            r
        );
    }
    println!(
        "({} load steps in {:.0} s on {} CPUs)",
        beds.iter().map(|b| b.steps.len()).sum::<usize>(),
        t0.elapsed().as_secs_f64(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "quick": quick, "step_secs": secs, "max_loss": MAX_LOSS, "half_rate": half,
        "gateways": beds.iter().enumerate().map(|(i, b)| serde_json::json!({
            "gateway": b.kind.key(), "max_rate": max(b), "load_limited": b.load_limited,
            "at_max": b.ok.as_ref().map(Step::json), "at_half": lat[i].json(),
            "memory_bytes": mem[i], "steps": b.steps.iter().map(Step::json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("gateways.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}
