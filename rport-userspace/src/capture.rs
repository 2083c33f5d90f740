//! Capture files, for `rport replay`: classic pcap and pcapng, with the link types a
//! capture on a gateway has (Ethernet, Linux cooked v1 and v2 from `tcpdump -i any`, raw
//! IP), every frame handed back as an Ethernet frame, which is what the XDP program sees.
//!
//! Zero-copy where it can be: records borrow from the file, and an Ethernet frame is the
//! record itself; only the other link types get a new 14-byte header in front. Every
//! length in the file is checked against what is there before it is used: a truncated or
//! lying file is an error naming the byte offset, never a panic (fuzzed: fuzz/ `pcap`).
use std::borrow::Cow;

use anyhow::{Result, bail};

/// LINKTYPE_ETHERNET.
pub const ETHERNET: u16 = 1;
/// LINKTYPE_RAW: an IPv4 or IPv6 packet, no link header.
pub const RAW: u16 = 101;
/// LINKTYPE_LINUX_SLL: Linux cooked capture v1 (16-byte header).
pub const SLL: u16 = 113;
/// LINKTYPE_IPV4.
pub const IPV4: u16 = 228;
/// LINKTYPE_IPV6.
pub const IPV6: u16 = 229;
/// LINKTYPE_LINUX_SLL2: Linux cooked capture v2 (20-byte header, libpcap ≥ 1.10).
pub const SLL2: u16 = 276;

/// One captured packet as the file has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time, nanoseconds since the epoch (whatever resolution the file had).
    pub time_ns: u64,
    /// Link type of the interface it was captured on.
    pub linktype: u16,
    /// The captured bytes (possibly fewer than were on the wire: a snap length).
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
}

impl Record<'_> {
    /// The record as an Ethernet frame: itself for Ethernet; for the others a 14-byte
    /// header (zero MACs, the source MAC where the cooked header has one) carrying the
    /// protocol in front of the network-layer packet.
    pub fn ethernet(&self) -> Result<Cow<'_, [u8]>, &'static str> {
        let d = self.data;
        let (src, proto, l3) = match self.linktype {
            ETHERNET => return Ok(Cow::Borrowed(d)),
            SLL => {
                if d.len() < 16 {
                    return Err("shorter than its Linux cooked header");
                }
                (mac(be16(&d[4..]), &d[6..14]), be16(&d[14..]), &d[16..])
            }
            SLL2 => {
                if d.len() < 20 {
                    return Err("shorter than its Linux cooked v2 header");
                }
                (mac(d[11].into(), &d[12..20]), be16(d), &d[20..])
            }
            RAW | IPV4 | IPV6 => match d.first().map(|b| b >> 4) {
                Some(4) => ([0; 6], 0x0800, d),
                Some(6) => ([0; 6], 0x86dd, d),
                _ => return Err("raw IP record that is neither IPv4 nor IPv6"),
            },
            _ => return Err("link type not supported (Ethernet, Linux cooked, raw IP are)"),
        };
        let mut f = Vec::with_capacity(14 + l3.len());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&proto.to_be_bytes());
        f.extend_from_slice(l3);
        Ok(Cow::Owned(f))
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A cooked header's link-layer address as a MAC, when it is one (6 bytes).
fn mac(len: u16, addr: &[u8]) -> [u8; 6] {
    if len == 6 {
        addr[..6].try_into().unwrap()
    } else {
        [0; 6]
    }
}

/// Reads a capture file: classic pcap (µs or ns, either byte order) or pcapng (every
/// section and interface, either byte order; blocks other than packets are skipped).
pub fn read(buf: &[u8]) -> Result<Vec<Record<'_>>> {
    if buf.len() < 4 {
        bail!("not a capture file: {} bytes", buf.len());
    }
    match u32::from_le_bytes(buf[0..4].try_into().unwrap()) {
        PCAPNG_SHB => read_pcapng(buf),
        _ => read_pcap(buf),
    }
}

fn rd32(le: bool, b: &[u8]) -> u32 {
    let a: [u8; 4] = b[..4].try_into().unwrap();
    if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    }
}

fn rd16(le: bool, b: &[u8]) -> u16 {
    let a: [u8; 2] = b[..2].try_into().unwrap();
    if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    }
}

/// Classic pcap.
pub fn read_pcap(buf: &[u8]) -> Result<Vec<Record<'_>>> {
    if buf.len() < 24 {
        bail!(
            "not a pcap file: {} bytes, shorter than the 24-byte header",
            buf.len()
        );
    }
    let (le, ns) = match u32::from_le_bytes(buf[0..4].try_into().unwrap()) {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        m => bail!("not a pcap or pcapng file (magic {m:#010x})"),
    };
    // The upper bits may carry FCS information (pcap-savefile(5)).
    let linktype = rd32(le, &buf[20..24]) & 0x0fff_ffff;
    let Ok(linktype) = u16::try_from(linktype) else {
        bail!("link type {linktype} is out of range");
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off < buf.len() {
        if buf.len() - off < 16 {
            bail!("truncated record header at byte {off}");
        }
        let r = &buf[off..];
        let caplen = rd32(le, &r[8..]) as usize;
        let start = off + 16;
        if caplen > buf.len() - start {
            bail!("truncated packet at byte {off} ({caplen} bytes announced)");
        }
        let frac = rd32(le, &r[4..]) as u64;
        out.push(Record {
            time_ns: rd32(le, r) as u64 * 1_000_000_000 + if ns { frac } else { frac * 1000 },
            linktype,
            data: &buf[start..start + caplen],
            orig_len: rd32(le, &r[12..]),
        });
        off = start + caplen;
    }
    Ok(out)
}

/// Section Header Block type (a palindrome: the same in either byte order).
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

/// An interface of a pcapng section: its link type and the length of one timestamp unit.
#[derive(Clone, Copy)]
struct Interface {
    linktype: u16,
    /// Nanoseconds per unit as (multiply, divide): 10^-6 s is (1000, 1).
    unit: (u64, u64),
}

/// pcapng (draft-ietf-opsawg-pcapng): SHB, IDB, EPB and SPB; other blocks skipped.
pub fn read_pcapng(buf: &[u8]) -> Result<Vec<Record<'_>>> {
    let mut out = Vec::new();
    let mut le = true;
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        if buf.len() - off < 12 {
            bail!("truncated block header at byte {off}");
        }
        let b = &buf[off..];
        let btype = rd32(le, b);
        if btype == PCAPNG_SHB {
            // The byte order of this section is that of its byte-order magic.
            if b.len() < 28 {
                bail!("truncated section header at byte {off}");
            }
            le = match u32::from_le_bytes(b[8..12].try_into().unwrap()) {
                PCAPNG_BOM => true,
                m if m == PCAPNG_BOM.swap_bytes() => false,
                m => bail!("section header at byte {off}: bad byte-order magic {m:#010x}"),
            };
            ifaces.clear();
        }
        let len = rd32(le, &b[4..]) as usize;
        if len < 12 || !len.is_multiple_of(4) || len > b.len() {
            bail!("block at byte {off}: length {len} is not a whole block in the file");
        }
        if rd32(le, &b[len - 4..]) as usize != len {
            bail!("block at byte {off}: trailing length differs from {len}");
        }
        let body = &b[8..len - 4];
        match btype {
            PCAPNG_IDB => {
                if body.len() < 8 {
                    bail!("interface block at byte {off} is too short");
                }
                ifaces.push(Interface {
                    linktype: rd16(le, body),
                    unit: tsresol(le, &body[8..]),
                });
            }
            PCAPNG_EPB => {
                if body.len() < 20 {
                    bail!("packet block at byte {off} is too short");
                }
                let id = rd32(le, body) as usize;
                let Some(i) = ifaces.get(id) else {
                    bail!("packet block at byte {off} names interface {id}, not described");
                };
                let ts = ((rd32(le, &body[4..]) as u64) << 32) | rd32(le, &body[8..]) as u64;
                let caplen = rd32(le, &body[12..]) as usize;
                if caplen > body.len() - 20 {
                    bail!("packet block at byte {off}: {caplen} bytes announced, fewer there");
                }
                out.push(Record {
                    time_ns: (ts as u128 * i.unit.0 as u128 / i.unit.1 as u128) as u64,
                    linktype: i.linktype,
                    data: &body[20..20 + caplen],
                    orig_len: rd32(le, &body[16..]),
                });
            }
            PCAPNG_SPB => {
                if body.len() < 4 {
                    bail!("simple packet block at byte {off} is too short");
                }
                let Some(i) = ifaces.first() else {
                    bail!("simple packet block at byte {off} before any interface block");
                };
                let orig = rd32(le, body);
                let caplen = (orig as usize).min(body.len() - 4);
                out.push(Record {
                    time_ns: 0,
                    linktype: i.linktype,
                    data: &body[4..4 + caplen],
                    orig_len: orig,
                });
            }
            _ => {}
        }
        off += len;
    }
    Ok(out)
}

/// The `if_tsresol` option (code 9) of an interface block's options, as (mul, div) to
/// nanoseconds; 10^-6 s when absent. Malformed options end the search (the default holds).
fn tsresol(le: bool, mut opts: &[u8]) -> (u64, u64) {
    while opts.len() >= 4 {
        let (code, len) = (rd16(le, opts), rd16(le, &opts[2..]) as usize);
        if code == 0 {
            break;
        }
        let padded = len.div_ceil(4) * 4;
        if opts.len() - 4 < padded {
            break;
        }
        if code == 9 && len >= 1 {
            let v = opts[4];
            let e = (v & 0x7f) as u32;
            return if v & 0x80 == 0 {
                // 10^-e seconds.
                if e <= 9 {
                    (10u64.pow(9 - e), 1)
                } else {
                    (1, 10u64.pow((e - 9).min(19)))
                }
            } else if e <= 30 {
                // 2^-e seconds.
                (1_000_000_000, 1u64 << e)
            } else {
                (1, 1)
            };
        }
        opts = &opts[4 + padded..];
    }
    (1000, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic pcap (µs, little-endian) of `frames` with link type `lt`.
    pub fn pcap(lt: u32, frames: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 0xffff, lt] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for (i, f) in frames.iter().enumerate() {
            for x in [i as u32, 7, f.len() as u32, f.len() as u32] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(f);
        }
        v
    }

    fn block(le: bool, t: u32, body: &[u8]) -> Vec<u8> {
        let w = |x: u32| if le { x.to_le_bytes() } else { x.to_be_bytes() };
        let mut b = body.to_vec();
        b.resize(body.len().div_ceil(4) * 4, 0);
        let len = 12 + b.len() as u32;
        [&w(t)[..], &w(len), &b, &w(len)].concat()
    }

    /// A pcapng of `frames` on one interface, nanosecond timestamps (if_tsresol 9).
    fn pcapng(le: bool, lt: u16, frames: &[&[u8]]) -> Vec<u8> {
        let w32 = |x: u32| if le { x.to_le_bytes() } else { x.to_be_bytes() };
        let w16 = |x: u16| if le { x.to_le_bytes() } else { x.to_be_bytes() };
        let mut shb = w32(PCAPNG_BOM).to_vec();
        shb.extend_from_slice(&w16(1));
        shb.extend_from_slice(&w16(0));
        shb.extend_from_slice(&[0xff; 8]);
        let mut v = block(le, PCAPNG_SHB, &shb);
        let mut idb = [&w16(lt)[..], &[0, 0], &w32(0)].concat();
        idb.extend_from_slice(&[&w16(9)[..], &w16(1), &[9, 0, 0, 0], &[0; 4]].concat());
        v.extend(block(le, PCAPNG_IDB, &idb));
        v.extend(block(le, 5, &[0; 12])); // an interface statistics block: skipped
        for (i, f) in frames.iter().enumerate() {
            let ts = 1_700_000_000_123_456_789u64 + i as u64;
            let hdr = [
                w32(0),
                w32((ts >> 32) as u32),
                w32(ts as u32),
                w32(f.len() as u32),
                w32(f.len() as u32 + 4),
            ]
            .concat();
            v.extend(block(le, PCAPNG_EPB, &[&hdr[..], f].concat()));
        }
        v
    }

    #[test]
    fn classic_records_and_times() {
        let b = pcap(1, &[b"abc", b"defgh"]);
        let p = read(&b).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].data, b"defgh");
        assert_eq!(p[1].time_ns, 1_000_007_000);
        assert_eq!(p[1].ethernet().unwrap(), &b"defgh"[..]);
    }

    #[test]
    fn pcapng_either_byte_order() {
        for le in [true, false] {
            let b = pcapng(le, ETHERNET, &[b"abcde", b"xyz"]);
            let p = read(&b).unwrap();
            assert_eq!(p.len(), 2, "le={le}");
            assert_eq!((p[0].data, p[1].data), (&b"abcde"[..], &b"xyz"[..]));
            assert_eq!(p[0].time_ns, 1_700_000_000_123_456_789);
            assert_eq!(p[1].orig_len, 7);
        }
    }

    #[test]
    fn cooked_and_raw_become_ethernet() {
        let ip = [0x45u8, 0, 0, 20];
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        let want = [&[0u8; 6][..], &[1, 2, 3, 4, 5, 6], &[0x08, 0x00], &ip].concat();
        for (lt, rec) in [(SLL, &sll), (SLL2, &sll2)] {
            let r = Record {
                time_ns: 0,
                linktype: lt,
                data: rec,
                orig_len: 0,
            };
            assert_eq!(r.ethernet().unwrap(), &want[..], "link type {lt}");
        }
        let r = Record {
            time_ns: 0,
            linktype: RAW,
            data: &[0x60, 0, 0, 0],
            orig_len: 0,
        };
        assert_eq!(r.ethernet().unwrap()[12..14], [0x86, 0xdd]);
        let r = Record {
            time_ns: 0,
            linktype: SLL,
            data: &sll[..15],
            orig_len: 0,
        };
        assert!(r.ethernet().is_err());
        let r = Record {
            time_ns: 0,
            linktype: 0,
            data: &ip,
            orig_len: 0,
        };
        assert!(r.ethernet().unwrap_err().contains("not supported"));
    }

    #[test]
    fn bad_files_are_errors_never_panics() {
        assert!(read(b"sh").is_err());
        let mut b = pcap(1, &[b"abcdef"]);
        b.truncate(b.len() - 2);
        assert!(
            read(&b)
                .unwrap_err()
                .to_string()
                .contains("truncated packet")
        );
        for f in [
            pcap(1, &[b"0123456789"]),
            pcapng(true, 1, &[b"0123456789", b"ab"]),
        ] {
            for n in 0..f.len() {
                let _ = read(&f[..n]);
                let mut g = f.clone();
                g[n] ^= 0xff;
                let _ = read(&g);
            }
        }
        let mut g = pcapng(true, 1, &[b"0123"]);
        let n = g.len();
        g[n - 4] ^= 1;
        assert!(
            read(&g)
                .unwrap_err()
                .to_string()
                .contains("trailing length")
        );
    }

    #[test]
    fn timestamp_resolutions() {
        let opt = |v: u8| [9u8, 0, 1, 0, v, 0, 0, 0];
        assert_eq!(tsresol(true, &opt(6)), (1000, 1));
        assert_eq!(tsresol(true, &opt(9)), (1, 1));
        assert_eq!(tsresol(true, &opt(12)), (1, 1000));
        assert_eq!(tsresol(true, &opt(0x80 | 10)), (1_000_000_000, 1024));
        assert_eq!(tsresol(true, &[]), (1000, 1));
    }
}
