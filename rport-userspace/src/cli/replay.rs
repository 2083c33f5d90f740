//! `rport replay FILE`: every frame of a capture through the XDP program and, for what
//! the program hands to the daemon, through the daemon's own rewrite; one line each (the
//! verdict, what moved, the top Via and Contacts before → after, where a response is
//! steered), then totals like `rport stats`.
//!
//! For an operator: "what would rport do with this traffic?", on a capture taken anywhere,
//! without attaching anything. Frames run in order against one program instance, so a
//! response finds the binding its request left.
//!
//! The XDP verdicts come from the real program through BPF_PROG_TEST_RUN, with a daemon
//! socket in its XSKMAP (as under `rport run`: requests are redirected, not "unavailable").
//! Where the program cannot be loaded (no root or CAP_BPF), one line says so and the
//! verdicts come from the program's host build (`rport_ebpf::model`: the same decision
//! code, checked row by row against the kernel by the tests). In replay the daemon is its
//! rewrite library itself ([`crate::sip::message`], what the forwarding threads call).
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result};
use rport_common::{
    Counter, SteerMeta, role,
    tag::TagKeys,
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};
use rport_ebpf::model::{self, HostMaps};
use serde_json::{Value, json};

use crate::{
    capture,
    cli::out::outln,
    datapath::{
        forward::Rules,
        inject,
        keys::{self, CurrentKey, Signer},
        loader::Iface,
        testrun::{TEST_RUN_IFINDEX, XdpHarness},
    },
    observe::dstats::DaemonStats,
    sip::{headers, message},
};

/// What replay reports a packet came to, from the program's verdict and the counters the
/// packet moved: a request the program hands to the daemon (redirected, or passed only
/// because no daemon socket was there) is `to-daemon`; a response it rewrote is `steered`.
pub fn verdict(xdp: u32, moved: &[Counter]) -> &'static str {
    match xdp {
        XDP_PASS if moved.contains(&Counter::ResponseSteered) => "steered",
        XDP_PASS if moved.contains(&Counter::UserspaceUnavailable) => "to-daemon",
        XDP_PASS => "pass",
        XDP_REDIRECT => "to-daemon",
        _ => "other",
    }
}

/// The role replay gives a frame. A capture has no interfaces: packets from a server
/// address count as arriving on an inside interface, all others on an outside one.
pub fn from_inside(frame: &[u8], servers: &[IpAddr]) -> bool {
    rport_ebpf::parse::headers(frame)
        .is_ok_and(|h| servers.contains(&rport_common::addr_from_16(&h.src)))
}

/// What the XDP program did with one frame.
struct Step {
    verdict: u32,
    /// Counters it moved, `packets` left out.
    moved: Vec<Counter>,
    /// A steered response's new destination.
    steered_to: Option<SocketAddr>,
}

/// Where the XDP verdicts come from.
enum Engine {
    /// The program in the kernel, through BPF_PROG_TEST_RUN.
    Kernel(XdpHarness),
    /// Its host build; the capture's own clock (nanoseconds since its first packet, plus
    /// one second) is the program's boot clock.
    Host(Box<HostMaps>),
}

impl Engine {
    fn name(&self) -> &'static str {
        match self {
            Engine::Kernel(_) => "kernel",
            Engine::Host(_) => "host",
        }
    }

    fn step(&mut self, frame: &[u8], inside: bool, clock_ns: u64) -> Result<Step> {
        let role = if inside { role::INSIDE } else { role::OUTSIDE };
        match self {
            Engine::Kernel(h) => {
                h.set_role(role)?;
                let before = h.counters()?;
                let r = h.run(frame)?;
                let after = h.counters()?;
                let moved = Counter::ALL
                    .iter()
                    .enumerate()
                    .filter(|(j, c)| after[*j] > before[*j] && **c != Counter::Packets)
                    .map(|(_, c)| *c)
                    .collect();
                Ok(Step {
                    verdict: r.verdict,
                    moved,
                    steered_to: steer_meta(&r.out, frame.len()),
                })
            }
            Engine::Host(maps) => {
                let mut f = frame.to_vec();
                let (verdict, counters) = model::run(&mut f, role, 0, maps, clock_ns);
                let moved: Vec<Counter> = counters
                    .into_iter()
                    .filter(|c| *c != Counter::Packets)
                    .collect();
                // The host build steers in XDP: the frame's new destination is where.
                let steered_to = moved
                    .contains(&Counter::ResponseSteered)
                    .then(|| rport_ebpf::parse::headers(&f).ok())
                    .flatten()
                    .map(|h| SocketAddr::new(rport_common::addr_from_16(&h.dst), h.dport));
                Ok(Step {
                    verdict,
                    moved,
                    steered_to,
                })
            }
        }
    }
}

/// The destination in the [`SteerMeta`] a test run's output starts with (it gives back
/// the metadata area and the frame), if the program wrote one.
fn steer_meta(out: &[u8], frame_len: usize) -> Option<SocketAddr> {
    let n = std::mem::size_of::<SteerMeta>();
    if out.len() < frame_len + n {
        return None;
    }
    let meta = &out[out.len() - frame_len - n..out.len() - frame_len];
    // SAFETY: SteerMeta is repr(C) plain data, any bits valid; `meta` holds its size.
    let m = unsafe { std::ptr::read_unaligned(meta.as_ptr() as *const SteerMeta) };
    (m.magic == SteerMeta::MAGIC)
        .then(|| SocketAddr::new(rport_common::addr_from_16(&m.addr), u16::from_be(m.port_be)))
}

/// The daemon's side: its rules and its counters, summed over the capture.
struct Daemon {
    rules: Rules,
    stats: DaemonStats,
}

impl Daemon {
    /// Runs one frame the program handed over through the daemon's rewrite: the top Via
    /// and Contacts before → after, and the daemon counters it moved.
    fn rewrite(&self, frame: &[u8]) -> Value {
        let Ok(h) = inject::locate(frame) else {
            DaemonStats::add(&self.stats.bad_frames, 1);
            return json!({"error": "not a whole UDP datagram (bad_frames)"});
        };
        let (p0, plen) = (h.payload as usize, h.payload_len as usize);
        let Some(before) = frame.get(p0..p0 + plen) else {
            return json!({"error": "not a whole UDP datagram (bad_frames)"});
        };
        let mut msg = before.to_vec();
        msg.resize(
            plen + 256 + crate::sip::contact::MAX_EDITS * (rport_common::tag::BUF_LEN + 16),
            0,
        );
        let was = self.stats.load().values();
        let r = message::rewrite(
            &mut msg,
            plen,
            (inject::source(&h), h.sport),
            (inject::destination(&h), h.dport),
            &self.rules,
            &self.stats,
            Instant::now(),
        );
        msg.truncate(r.len);
        let now = self.stats.load().values();
        let moved: Vec<&str> = DaemonStats::FIELDS
            .iter()
            .zip(was.iter().zip(now))
            .filter(|(_, (a, b))| b > *a)
            .map(|((name, _, _), _)| *name)
            .collect();
        let (vb, va) = (
            headers_of(before, b"via", b"v"),
            headers_of(&msg, b"via", b"v"),
        );
        let (cb, ca) = (
            headers_of(before, b"contact", b"m"),
            headers_of(&msg, b"contact", b"m"),
        );
        json!({
            "changed": r.changed,
            "via": vb.first().map(|b| json!({"before": b, "after": va.first()})),
            "contacts": cb.iter().zip(ca.iter()).map(|(b, a)| json!({"before": b, "after": a}))
                .collect::<Vec<_>>(),
            "daemon": moved,
        })
    }
}

/// Values of every header `long`/`short` of a message, as text (lossy), folds kept.
fn headers_of(m: &[u8], long: &[u8], short: &[u8]) -> Vec<String> {
    let Some(h) = headers::frame(m) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = h.start;
    while let Some((v, next)) = headers::find_from(m, &h, at, long, short) {
        out.push(String::from_utf8_lossy(&m[v]).trim().to_string());
        at = next;
    }
    out
}

/// The key steering tags are checked and made with: the deployment's key file, or a key
/// of this run's own (tags in the capture are then all invalid, as they would be for a
/// gateway with another key).
fn tag_keys(file: Option<&Path>) -> Result<(TagKeys, keys::Key)> {
    let key = match file {
        Some(p) => keys::load(p)?,
        None => keys::Key::generate()?,
    };
    Ok((
        keys::rotate(&TagKeys::default(), &key, keys::tai_now_s()),
        key,
    ))
}

/// `rport replay`.
pub fn run(
    file: &Path,
    as_json: bool,
    sip_ports: &[u16],
    inside_from: &[IpAddr],
    tag_key: Option<&Path>,
) -> Result<()> {
    let buf = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let records = capture::read(&buf)?;
    let (keys, _) = tag_keys(tag_key)?;
    let mut engine = match XdpHarness::load() {
        Ok(mut h) => {
            h.set_sip_ports(sip_ports)?;
            h.set_ifaces(&[Iface {
                name: "lo".into(),
                index: TEST_RUN_IFINDEX,
                role: role::OUTSIDE,
                slot: 0,
            }])?;
            h.add_socket(TEST_RUN_IFINDEX, 0)?;
            if tag_key.is_some() {
                h.set_tag_keys(&keys)?;
            }
            Engine::Kernel(h)
        }
        Err(e) => {
            eprintln!(
                "rport: the XDP program cannot be loaded here ({e:#}): verdicts from its host build"
            );
            let mut m = HostMaps {
                sip_ports: sip_ports.iter().copied().collect(),
                xsk_bound: true,
                tai_now_s: keys::tai_now_s(),
                ..HostMaps::default()
            };
            if tag_key.is_some() {
                m.tag_keys = keys;
            }
            Engine::Host(Box::new(m))
        }
    };
    let current = *keys.current_key().context("a fresh key is current")?;
    let daemon = Daemon {
        rules: Rules {
            force_rport: Vec::new(),
            signer: Signer::new(CurrentKey::new(current)),
            contact_alias: true,
        },
        stats: DaemonStats::default(),
    };
    let mut rows = Vec::new();
    let mut total = vec![0u64; Counter::ALL.len()];
    let t0 = records.first().map_or(0, |r| r.time_ns);
    for (i, rec) in records.iter().enumerate() {
        let n = i + 1;
        let frame = match rec.ethernet() {
            Ok(f) if f.len() >= 14 => f,
            Ok(_) => {
                rows.push(json!({"n": n, "error": "shorter than an Ethernet header"}));
                continue;
            }
            Err(e) => {
                rows.push(json!({"n": n, "error": e}));
                continue;
            }
        };
        let clock = rec.time_ns.saturating_sub(t0) + 1_000_000_000;
        let s = engine.step(&frame, from_inside(&frame, inside_from), clock)?;
        for c in &s.moved {
            total[*c as usize] += 1;
        }
        let v = verdict(s.verdict, &s.moved);
        let mut row = json!({
            "n": n,
            "time": format!("{}.{:06}", rec.time_ns / 1_000_000_000, rec.time_ns % 1_000_000_000 / 1000),
            "bytes": frame.len(),
            "verdict": v,
            "counters": s.moved.iter().map(|c| c.name()).collect::<Vec<_>>(),
        });
        if let Some(to) = s.steered_to {
            row["steered_to"] = to.to_string().into();
        }
        if v == "to-daemon" {
            row["rewrite"] = daemon.rewrite(&frame);
        }
        rows.push(row);
    }
    let totals: serde_json::Map<String, Value> = Counter::ALL
        .iter()
        .enumerate()
        .filter(|(j, _)| total[*j] > 0)
        .map(|(j, c)| (c.name().to_string(), total[j].into()))
        .collect();
    let d = daemon.stats.load().values();
    let dtotals: serde_json::Map<String, Value> = DaemonStats::FIELDS
        .iter()
        .zip(d)
        .filter(|(_, v)| *v > 0)
        .map(|((name, _, _), v)| (name.to_string(), v.into()))
        .collect();
    if as_json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "xdp": engine.name(),
                "packets": rows,
                "totals": totals,
                "daemon": dtotals,
            }))?
        );
    } else {
        print_text(&rows, records.len(), engine.name(), &totals, &dtotals)?;
    }
    Ok(())
}

fn strs(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn print_text(
    rows: &[Value],
    records: usize,
    engine: &str,
    totals: &serde_json::Map<String, Value>,
    dtotals: &serde_json::Map<String, Value>,
) -> Result<()> {
    for r in rows {
        if let Some(e) = r.get("error") {
            outln!(
                "{:>6}  error: {}",
                r["n"].as_u64().unwrap_or(0),
                e.as_str().unwrap_or("")
            );
            continue;
        }
        let to = r
            .get("steered_to")
            .and_then(|t| t.as_str())
            .map(|t| format!("  → {t}"))
            .unwrap_or_default();
        outln!(
            "{:>6}  {:<10} {:>5} B  {}{to}",
            r["n"].as_u64().unwrap_or(0),
            r["verdict"].as_str().unwrap_or(""),
            r["bytes"].as_u64().unwrap_or(0),
            strs(&r["counters"]),
        );
        let Some(w) = r.get("rewrite") else { continue };
        if let Some(e) = w.get("error").and_then(|e| e.as_str()) {
            outln!("{:>8}daemon: {e}", "");
            continue;
        }
        let pairs = w["via"].as_object().map(|v| ("Via", v)).into_iter().chain(
            w["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_object())
                .map(|c| ("Contact", c)),
        );
        for (name, p) in pairs {
            let (b, a) = (
                p["before"].as_str().unwrap_or(""),
                p["after"].as_str().unwrap_or(""),
            );
            outln!("{:>8}{name:<8} {b}", "");
            if a != b {
                outln!("{:>8}{:<8} {a}", "", "  →");
            }
        }
        outln!("{:>8}daemon: {}", "", strs(&w["daemon"]));
    }
    outln!("\n{records} packets (XDP verdicts: {engine})");
    for (k, v) in totals {
        outln!("  {k:<28} {v}");
    }
    if !dtotals.is_empty() {
        outln!("daemon (its rewrite library)");
        for (k, v) in dtotals {
            outln!("  {k:<28} {v}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names() {
        use Counter::*;
        use rport_common::xdp_action::XDP_DROP;
        for (xdp, moved, want) in [
            (XDP_PASS, &[SipResponses, ResponseSteered][..], "steered"),
            (XDP_PASS, &[SipRequests, UserspaceUnavailable], "to-daemon"),
            (XDP_REDIRECT, &[SipRequests, ToUserspace], "to-daemon"),
            (XDP_PASS, &[SipResponses, ResponseAlreadyCorrect], "pass"),
            (XDP_PASS, &[], "pass"),
            (XDP_DROP, &[], "other"),
        ] {
            assert_eq!(verdict(xdp, moved), want, "{xdp} {moved:?}");
        }
    }

    #[test]
    fn steer_meta_is_read_from_in_front_of_the_frame() {
        let m = SteerMeta {
            magic: SteerMeta::MAGIC,
            l3: 14,
            l4: 34,
            addr: rport_common::addr_to_16("203.0.113.1".parse().unwrap()),
            port_be: 32415u16.to_be(),
            ipv6: 0,
        };
        // SAFETY: plain data of its own size.
        let bytes: [u8; std::mem::size_of::<SteerMeta>()] = unsafe { std::mem::transmute(m) };
        let out = [&bytes[..], &[7u8; 60]].concat();
        assert_eq!(
            steer_meta(&out, 60),
            Some("203.0.113.1:32415".parse().unwrap())
        );
        assert_eq!(steer_meta(&out[1..], 60), None, "no magic, no steering");
        assert_eq!(steer_meta(&[7u8; 60], 60), None);
    }

    #[test]
    fn daemon_rewrite_shows_via_and_contact() {
        let (keys, _) = tag_keys(None).unwrap();
        let d = Daemon {
            rules: Rules {
                force_rport: Vec::new(),
                signer: Signer::new(CurrentKey::new(*keys.current_key().unwrap())),
                contact_alias: true,
            },
            stats: DaemonStats::default(),
        };
        let sip = b"REGISTER sip:example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport\r\n\
            Contact: <sip:alice@192.168.1.50:5060>\r\n\
            Call-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([203, 0, 113, 1], [198, 51, 100, 10], 64)
            .udp(32415, 5060)
            .write(&mut f, sip)
            .unwrap();
        let w = d.rewrite(&f);
        assert_eq!(w["changed"], true);
        let after = w["via"]["after"].as_str().unwrap();
        assert!(
            after.contains("rport=32415") && after.contains("received=203.0.113.1"),
            "{after}"
        );
        assert!(
            w["contacts"][0]["after"]
                .as_str()
                .unwrap()
                .contains("rptag="),
            "{w}"
        );
        assert!(strs(&w["daemon"]).contains("rewritten"), "{w}");
        // Not UDP at all: counted, no panic.
        assert!(d.rewrite(&[0u8; 20]).get("error").is_some());
    }

    #[test]
    fn headers_of_lists_every_value() {
        let m = b"INVITE sip:b@x SIP/2.0\r\nm: <sip:a@1>\r\nVia: a\r\nContact: <sip:a@2>\r\n\r\n";
        assert_eq!(headers_of(m, b"contact", b"m"), ["<sip:a@1>", "<sip:a@2>"]);
        assert_eq!(headers_of(m, b"via", b"v"), ["a"]);
        assert!(headers_of(b"junk", b"via", b"v").is_empty());
    }
}
