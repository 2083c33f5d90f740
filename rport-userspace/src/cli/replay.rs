//! `rport replay FILE.pcap`: every frame of a capture through the real XDP program
//! (BPF_PROG_TEST_RUN), one line each (what it is, the verdict, what moved), then totals.
//!
//! For an operator: "what would rport do with this traffic?", on a capture taken anywhere,
//! without attaching anything. Frames run in order against one program instance, so a
//! response finds the binding its request left.
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use rport_common::{
    Counter, role,
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};
use serde_json::json;

use crate::cli::out::outln;
use crate::datapath::testrun::XdpHarness;

/// One packet of a classic pcap file.
#[derive(Debug)]
pub struct PcapPacket<'a> {
    pub ts_s: u32,
    pub ts_frac: u32,
    pub data: &'a [u8],
}

/// Parses a classic pcap (µs or ns timestamps, either byte order) with Ethernet frames.
/// Zero-copy: packets borrow from `buf`.
pub fn parse_pcap(buf: &[u8]) -> Result<Vec<PcapPacket<'_>>> {
    if buf.len() < 24 {
        bail!(
            "not a pcap file: {} bytes, shorter than the 24-byte header",
            buf.len()
        );
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        0x0a0d0d0a => {
            bail!("pcapng is not supported: convert with `editcap -F pcap in.pcapng out.pcap`")
        }
        _ => bail!("not a pcap file (magic {magic:#010x})"),
    };
    let rd = |b: &[u8]| -> u32 {
        let a: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = rd(&buf[20..24]) & 0x0fff_ffff;
    if linktype != 1 {
        bail!("link type {linktype} is not Ethernet (1): capture on an Ethernet interface");
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off < buf.len() {
        if buf.len() - off < 16 {
            bail!("truncated record header at byte {off}");
        }
        let caplen = rd(&buf[off + 8..off + 12]) as usize;
        let start = off + 16;
        if caplen > buf.len() - start {
            bail!("truncated packet at byte {off} ({caplen} bytes announced)");
        }
        out.push(PcapPacket {
            ts_s: rd(&buf[off..off + 4]),
            ts_frac: rd(&buf[off + 4..off + 8]),
            data: &buf[start..start + caplen],
        });
        off = start + caplen;
    }
    Ok(out)
}

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
pub fn from_inside(frame: &[u8], servers: &[std::net::IpAddr]) -> bool {
    rport_ebpf::parse::headers(frame)
        .is_ok_and(|h| servers.contains(&rport_common::addr_from_16(&h.src)))
}

/// `rport replay`.
pub fn run(
    file: &Path,
    as_json: bool,
    sip_ports: &[u16],
    inside_from: &[std::net::IpAddr],
) -> Result<()> {
    let buf = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let packets = parse_pcap(&buf)?;
    let mut h = XdpHarness::load()?;
    h.set_sip_ports(sip_ports)?;
    let mut rows = Vec::new();
    let mut total = vec![0u64; Counter::ALL.len()];
    for (i, p) in packets.iter().enumerate() {
        if p.data.len() < 14 {
            rows.push(json!({"n": i + 1, "error": "shorter than an Ethernet header"}));
            continue;
        }
        h.set_role(if from_inside(p.data, inside_from) {
            role::INSIDE
        } else {
            role::OUTSIDE
        })?;
        let before = h.counters()?;
        let r = h.run(p.data)?;
        let after = h.counters()?;
        let moved: Vec<Counter> = Counter::ALL
            .iter()
            .enumerate()
            .filter(|(j, c)| after[*j] > before[*j] && **c != Counter::Packets)
            .map(|(j, c)| {
                total[j] += after[j] - before[j];
                *c
            })
            .collect();
        rows.push(json!({
            "n": i + 1,
            "time": format!("{}.{:06}", p.ts_s, p.ts_frac),
            "bytes": p.data.len(),
            "verdict": verdict(r.verdict, &moved),
            "counters": moved.iter().map(|c| c.name()).collect::<Vec<_>>(),
        }));
    }
    let totals: serde_json::Map<String, serde_json::Value> = Counter::ALL
        .iter()
        .enumerate()
        .filter(|(j, _)| total[*j] > 0)
        .map(|(j, c)| (c.name().to_string(), total[j].into()))
        .collect();
    if as_json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"packets": rows, "totals": totals}))?
        );
    } else {
        for r in &rows {
            match r.get("error") {
                Some(e) => outln!("{:>6}  error: {}", r["n"], e.as_str().unwrap_or("")),
                None => outln!(
                    "{:>6}  {:<10} {:>5} B  {}",
                    r["n"],
                    r["verdict"].as_str().unwrap_or(""),
                    r["bytes"],
                    r["counters"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(" "))
                        .unwrap_or_default()
                ),
            }
        }
        outln!("\n{} packets", packets.len());
        for (k, v) in &totals {
            outln!("  {k:<28} {v}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(frames: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        v.extend_from_slice(&[
            2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
        ]);
        for (i, f) in frames.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&7u32.to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(f);
        }
        v
    }

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
    fn reads_records() {
        let b = pcap(&[b"abc", b"defgh"]);
        let p = parse_pcap(&b).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].data, b"defgh");
        assert_eq!((p[1].ts_s, p[1].ts_frac), (1, 7));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert!(parse_pcap(b"short").is_err());
        let mut b = pcap(&[b"abcdef"]);
        b.truncate(b.len() - 2);
        assert!(
            parse_pcap(&b)
                .unwrap_err()
                .to_string()
                .contains("truncated packet")
        );
        let mut b = pcap(&[]);
        b[20] = 113; // Linux cooked capture
        assert!(
            parse_pcap(&b)
                .unwrap_err()
                .to_string()
                .contains("not Ethernet")
        );
        assert!(
            parse_pcap(&[
                0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ])
            .unwrap_err()
            .to_string()
            .contains("pcapng")
        );
        for n in 0..b.len() {
            let _ = parse_pcap(&pcap(&[b"0123456789"])[..n]);
        }
    }
}
