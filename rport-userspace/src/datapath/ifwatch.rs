//! Interfaces that go away and come back under their name while rport runs.
//!
//! Deleting an interface takes everything rport had on it along: its XDP and TC
//! attachments, the binding of its AF_XDP sockets, and its ifindex, by which IFACES knows
//! it. A veth or VLAN recreated under the same name (a container restart, `ifdown`/`ifup`
//! of a virtual link, a NIC reset that re-registers the device) is a new device with a new
//! ifindex and nothing attached: before this module rport stayed up, said nothing, and
//! no request was rewritten again.
//!
//! The kernel announces every link change on the rtnetlink multicast group RTMGRP_LINK
//! (RTM_NEWLINK, RTM_DELLINK). [`LinkEvents`] is a plain NETLINK_ROUTE socket on that
//! group: two message types and no attribute are all it reads, which a hundred lines of
//! libc do without a netlink crate (and its dependency tree) in the daemon. On any link
//! event (or a lost one: ENOBUFS) [`IfWatch::resync`] looks every interface up by name
//! again; one whose ifindex is gone or changed is *lost* (one line on stderr, counted
//! `iface_lost`), and when the name resolves again it is attached again with the programs
//! and maps loaded at start (one line, `iface_reattached`): its IFACES entry under the
//! new ifindex, the AF_XDP sockets of its queues with their threads, its TC and XDP
//! programs (`loader::attach_iface`, the same list the first attach used). No program is
//! loaded again, so a daemon that dropped to CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW (and
//! CAP_IPC_LOCK for the UMEM) can still do it.
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};

use anyhow::{Result, bail};
use aya::maps::{HashMap, MapData};
use rport_common::{IfaceConf, maps, role};

use crate::{
    datapath::{
        forward::Workers,
        loader::{self, Iface, Loaded},
    },
    observe::dstats::DaemonStats,
};

/// rtnetlink message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
/// Length of a netlink message header (linux/netlink.h).
const NLMSG_HDRLEN: usize = 16;

/// A NETLINK_ROUTE socket subscribed to link changes (non-blocking).
pub struct LinkEvents {
    fd: OwnedFd,
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl LinkEvents {
    pub fn open() -> Result<LinkEvents> {
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            bail!(
                "opening a netlink socket for link changes: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zero is its "any" value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: `sa` is a valid sockaddr_nl of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r != 0 {
            bail!(
                "subscribing to link changes (RTMGRP_LINK): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(LinkEvents { fd })
    }

    /// Reads every pending datagram: whether any told of a link added, changed or removed,
    /// or some were lost (ENOBUFS: the socket overflowed), either way a reason to look.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut seen = false;
        loop {
            // SAFETY: `buf` is ours and as long as said.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n > 0 {
                seen |= has_link_event(&buf[..n as usize]);
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) if n < 0 => continue,
                Some(libc::ENOBUFS) if n < 0 => seen = true,
                _ => return seen,
            }
        }
    }
}

/// Whether a netlink datagram holds an RTM_NEWLINK or RTM_DELLINK message. A truncated
/// or malformed one ends the walk (nothing read past its end).
pub fn has_link_event(mut b: &[u8]) -> bool {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < NLMSG_HDRLEN || len > b.len() {
            return false;
        }
        if ty == RTM_NEWLINK || ty == RTM_DELLINK {
            return true;
        }
        let step = (len + 3) & !3;
        b = &b[step.min(b.len())..];
    }
    false
}

/// Which of rport's interfaces are lost (by slot).
pub struct IfWatch {
    lost: Vec<bool>,
}

impl IfWatch {
    pub fn new(loaded: &Loaded) -> IfWatch {
        IfWatch {
            lost: vec![false; loaded.ifaces.len()],
        }
    }

    /// Looks every interface up by name again, and handles the ones that went or came back.
    pub fn resync(&mut self, loaded: &mut Loaded, workers: &mut Workers) {
        for slot in 0..loaded.ifaces.len() {
            self.check(loaded, workers, slot);
        }
    }

    fn check(&mut self, loaded: &mut Loaded, workers: &mut Workers, slot: usize) {
        let i = loaded.ifaces[slot].clone();
        let now = loader::ifindex(&i.name).unwrap_or(0);
        if !self.lost[slot] {
            if now == i.index {
                return;
            }
            self.lost[slot] = true;
            DaemonStats::add(&workers.watch_stats.iface_lost, 1);
            eprintln!(
                "rport: interface {} (ifindex {}) is gone: rport is no longer attached to it; it attaches again when {} is back",
                i.name, i.index, i.name
            );
            // What is left of the attachments, the IFACES entry and the sockets go.
            let links = std::mem::take(&mut loaded.links[slot]);
            loader::detach_iface(&mut loaded.ebpf, links);
            let _ = remove_iface(loaded, i.index);
            if i.role == role::OUTSIDE {
                workers.stop_iface(i.slot);
            }
        }
        if now == 0 {
            return;
        }
        let back = Iface { index: now, ..i };
        match reattach(loaded, workers, &back) {
            Ok(what) => {
                self.lost[slot] = false;
                loaded.ifaces[slot].index = now;
                DaemonStats::add(&workers.watch_stats.iface_reattached, 1);
                eprintln!(
                    "rport: interface {} is back (ifindex {now}): attached again ({what})",
                    back.name
                );
            }
            Err(e) => eprintln!(
                "rport: interface {} is back (ifindex {now}) but attaching to it failed: {e:#}; trying again at its next change",
                back.name
            ),
        }
    }
}

/// Attaches everything rport has on an interface to `back` (its new ifindex): sockets
/// before programs, so that the first request the XDP program hands over finds its socket.
/// Returns what it attached, for the log line.
fn reattach(loaded: &mut Loaded, workers: &mut Workers, back: &Iface) -> Result<String> {
    loader::set_ifaces(&mut loaded.ebpf, std::slice::from_ref(back))?;
    let mut sockets = 0;
    if back.role == role::OUTSIDE {
        match workers.start_iface(&mut loaded.ebpf, back) {
            Ok(n) => sockets = n,
            Err(e) => {
                workers.stop_iface(back.slot);
                let _ = remove_iface(loaded, back.index);
                return Err(e);
            }
        }
    }
    if back.role == role::INSIDE {
        let ifaces: Vec<Iface> = loaded
            .ifaces
            .iter()
            .map(|i| {
                if i.slot == back.slot {
                    back.clone()
                } else {
                    i.clone()
                }
            })
            .collect();
        if let Err(e) = workers.inside_back(&mut loaded.ebpf, &ifaces) {
            let _ = remove_iface(loaded, back.index);
            return Err(e);
        }
    }
    match loader::attach_iface(&mut loaded.ebpf, back, loaded.mode) {
        Ok(links) => {
            let n = links.len();
            loaded.links[back.slot as usize] = links;
            Ok(format!("{n} programs, {sockets} AF_XDP sockets"))
        }
        Err(e) => {
            workers.stop_iface(back.slot);
            let _ = remove_iface(loaded, back.index);
            Err(e)
        }
    }
}

fn remove_iface(loaded: &mut Loaded, index: u32) -> Result<()> {
    let mut m: HashMap<&mut MapData, u32, IfaceConf> = HashMap::try_from(
        loaded
            .ebpf
            .map_mut(maps::IFACES)
            .ok_or_else(|| anyhow::anyhow!("IFACES"))?,
    )?;
    m.remove(&index)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, body: usize) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body;
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.resize(len, 0xaa);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn link_messages_are_found_in_a_datagram() {
        assert!(has_link_event(&msg(RTM_NEWLINK, 16)));
        assert!(has_link_event(&msg(RTM_DELLINK, 16)));
        // RTM_NEWADDR (20), then a DELLINK after an unaligned body.
        let two = [msg(20, 13), msg(RTM_DELLINK, 16)].concat();
        assert!(has_link_event(&two));
        assert!(!has_link_event(&msg(20, 13)));
    }

    #[test]
    fn malformed_datagrams_end_the_walk() {
        assert!(!has_link_event(&[]));
        assert!(!has_link_event(&msg(RTM_NEWLINK, 16)[..15]));
        // A length past the end, a length shorter than a header.
        let mut m = msg(RTM_NEWLINK, 16);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(!has_link_event(&m));
        m[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(!has_link_event(&m));
    }
}
