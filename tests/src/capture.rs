//! A packet capture on one interface of a test namespace (AF_PACKET), to check what
//! arrived byte for byte: the checksums a receiver would verify, as they were on the wire.
//!
//! Why not the receiver's `UdpInCsumErrors` alone: a veth receiver may mark a packet whose
//! checksum was computed in software as CHECKSUM_UNNECESSARY and never look at it.
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Result, bail};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::ns::Ns;

/// Incoming frames of one interface, captured from creation until [`Capture::frames`].
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Starts capturing frames that arrive on `ifname` in `ns`.
    pub fn start(ns: &Ns, ifname: &str) -> Result<Capture> {
        let ifname = std::ffi::CString::new(ifname)?;
        let fd = ns.within(move || -> Result<OwnedFd> {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket call; the fd is owned below.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    proto as i32,
                )
            };
            if raw < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: a fresh fd of ours.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
            if index == 0 {
                bail!("no interface {ifname:?}");
            }
            let buf: libc::c_int = 8 << 20;
            // SAFETY: setsockopt reads an int.
            unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &buf as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            // SAFETY: zeroed sockaddr_ll is valid; filled below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: binds our socket to a sockaddr_ll of the right size.
            let r = unsafe {
                libc::bind(
                    raw,
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r != 0 {
                bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
            }
            Ok(fd)
        })??;
        Ok(Capture { fd })
    }

    /// Every incoming frame captured so far (outgoing ones are left out: their checksums
    /// may still be partial, to be completed by the device).
    pub fn frames(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: zeroed sockaddr_ll is valid for recvfrom to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: buf and from are ours, sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n <= 0 {
                return out;
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                out.push(buf[..n as usize].to_vec());
            }
        }
    }
}

/// UDP datagrams from `sport` among `frames`: (valid checksum, invalid checksum). An IPv4
/// checksum of 0 (none) counts as invalid here: rport never makes one, and a sender's
/// datagram that had a checksum must keep one.
pub fn udp_checksums(frames: &[Vec<u8>], sport: u16) -> (u64, u64) {
    let (mut good, mut bad) = (0, 0);
    for f in frames {
        let Ok(p) = SlicedPacket::from_ethernet(f) else {
            continue;
        };
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            continue;
        };
        if u.source_port() != sport {
            continue;
        }
        let h = u.to_header();
        let payload = u.payload();
        let want = match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let ok_ip =
                    ip.header().to_header().calc_header_checksum() == ip.header().header_checksum();
                if !ok_ip {
                    bad += 1;
                    continue;
                }
                h.calc_checksum_ipv4(&ip.header().to_header(), payload).ok()
            }
            Some(NetSlice::Ipv6(ip)) => {
                h.calc_checksum_ipv6(&ip.header().to_header(), payload).ok()
            }
            _ => continue,
        };
        if want == Some(h.checksum) && h.checksum != 0 {
            good += 1;
        } else {
            bad += 1;
        }
    }
    (good, bad)
}

/// A kernel SNMP counter of a namespace (nstat, absolute value; 0 when absent).
pub fn snmp(ns: &Ns, name: &str) -> u64 {
    let out = crate::ns::sh(ns.cmd("nstat").args(["-az", name])).unwrap_or_default();
    out.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// UDP datagrams a namespace received with a bad checksum (`UdpInCsumErrors`).
pub fn udp_csum_errors(ns: &Ns) -> u64 {
    snmp(ns, "UdpInCsumErrors")
}
