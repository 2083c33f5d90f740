//! `rport check`'s probes: the facts of the host and of each named interface, found by
//! asking the kernel (sysfs, procfs, netlink) and by trying what `rport run` would do (load
//! the program, attach it in native mode and detach, bind an AF_XDP socket). Nothing stays
//! attached or bound. [`observe::hostcheck`](crate::observe::hostcheck) judges the facts.
use std::{num::NonZeroU32, path::Path, ptr::NonNull};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use rport_common::PROGRAM_NAME;
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

use crate::{
    datapath::loader::{ifindex, is_bpffs},
    observe::hostcheck::{Attached, Host, Iface, Probe, Report, SipAlg, XskMode},
};

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn sysctl_u32(path: &str) -> Option<u32> {
    read(path)?.parse().ok()
}

/// Everything `rport check` looks at: the host, then each interface in order.
pub fn report(outside: &[String], inside: &[String], egress_bypass: bool) -> Report {
    let mut ebpf = None;
    let program = match load_program() {
        Ok(e) => {
            ebpf = Some(e);
            Probe::Ok
        }
        Err(e) => Probe::Failed(format!("{e:#}")),
    };
    let mut host = host(program);
    host.egress_bypass = egress_bypass;
    let mut prog: Option<&mut Xdp> = ebpf
        .as_mut()
        .and_then(|e| e.program_mut(PROGRAM_NAME))
        .and_then(|p| p.try_into().ok());
    let mut ifaces = Vec::new();
    for (names, role) in [(outside, "outside"), (inside, "inside")] {
        for n in names {
            ifaces.push(iface(n, role, prog.as_deref_mut()));
        }
    }
    Report::new(host, ifaces)
}

/// rport's XDP program, loaded (verified) and not attached.
fn load_program() -> Result<Ebpf> {
    let mut e = Ebpf::load(crate::XDP_OBJECT)?;
    let p: &mut Xdp = e
        .program_mut(PROGRAM_NAME)
        .context("program missing")?
        .try_into()?;
    p.load()?;
    Ok(e)
}

/// Capabilities rport needs, by bit number (linux/capability.h).
const CAPS: &[(u32, &str)] = &[(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW")];
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The capabilities of `CAPS` (and CAP_BPF or CAP_SYS_ADMIN) missing from a CapEff mask.
pub fn missing_caps(eff: u64) -> Vec<String> {
    let has = |b: u32| eff & (1 << b) != 0;
    let mut out: Vec<String> = CAPS
        .iter()
        .filter(|(b, _)| !has(*b))
        .map(|(_, n)| n.to_string())
        .collect();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_BPF".into());
    }
    out
}

fn host(program: Probe) -> Host {
    let eff = read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let modules = read("/proc/modules").unwrap_or_default();
    let sip_alg = ["nf_conntrack_sip", "nf_nat_sip"]
        .into_iter()
        .filter_map(|m| {
            let loaded = modules.lines().any(|l| l.split(' ').next() == Some(m));
            let in_sys = Path::new("/sys/module").join(m).exists();
            // A loadable module has an initstate; a built-in one only its parameters.
            let builtin =
                in_sys && !loaded && !Path::new("/sys/module").join(m).join("initstate").exists();
            (loaded || in_sys).then(|| SipAlg {
                module: m.into(),
                builtin,
            })
        })
        .collect();
    Host {
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        bpffs: is_bpffs(Path::new("/sys/fs/bpf")),
        // SAFETY: no preconditions.
        euid: unsafe { libc::geteuid() },
        missing_caps: missing_caps(eff),
        program,
        ip_forward: sysctl_u32("/proc/sys/net/ipv4/ip_forward").map(|v| v != 0),
        ipv6_forwarding: sysctl_u32("/proc/sys/net/ipv6/conf/all/forwarding").map(|v| v != 0),
        sip_alg,
        forward_rules: crate::observe::fwdrules::ForwardRules::read(),
        egress_bypass: false,
    }
}

fn iface(name: &str, role: &'static str, prog: Option<&mut Xdp>) -> Iface {
    let Ok(index) = ifindex(name) else {
        return Iface {
            name: name.into(),
            role,
            exists: false,
            up: None,
            mtu: None,
            rx_queues: None,
            xdp_attached: None,
            native_xdp: Probe::Skipped("no such interface".into()),
            af_xdp: Err("no such interface".into()),
            rp_filter: None,
            kind: None,
        };
    };
    let sys = |f: &str| read(&format!("/sys/class/net/{name}/{f}"));
    let up = sys("flags")
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .map(|f| f & libc::IFF_UP as u32 != 0);
    let rx_queues = std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .ok()
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        });
    let rp = |c: &str| sysctl_u32(&format!("/proc/sys/net/ipv4/conf/{c}/rp_filter"));
    let rp_filter = match (rp("all"), rp(name)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let xdp_attached = match xdp_prog(index) {
        Ok(a) => a,
        // Unknown is not "none": say so through the name, and do not probe over it.
        Err(e) => Some(Attached {
            id: 0,
            name: Some(format!("unknown ({e:#})")),
            mode: "?".into(),
        }),
    };
    let native_xdp = match (&xdp_attached, prog) {
        (Some(a), _) => Probe::Skipped(format!("program id {} is attached", a.id)),
        (None, None) => Probe::Skipped("rport's program did not load".into()),
        (None, Some(p)) => match p.attach(name, XdpMode::Driver) {
            Ok(link) => match p.detach(link) {
                Ok(()) => Probe::Ok,
                Err(e) => Probe::Failed(format!("detaching after the probe: {e}")),
            },
            Err(e) => {
                let mut why = error_chain(&e);
                // The kernel's own reason goes to the extended ack, which the bpf_link
                // path drops; veth's one common refusal, spelled out.
                if why.contains("os error 28") {
                    why.push_str(
                        " (on veth: native XDP needs as many rx queues as the peer has tx queues)",
                    );
                }
                Probe::Failed(why)
            }
        },
    };
    Iface {
        name: name.into(),
        role,
        exists: true,
        up,
        mtu: sys("mtu").and_then(|m| m.parse().ok()),
        rx_queues,
        xdp_attached,
        native_xdp,
        af_xdp: xsk_probe(index).map_err(|e| format!("{e:#}")),
        rp_filter,
        kind: link_kind(name),
    }
}

/// The link's kind from `ip -d -j link show` (`linkinfo.info_kind`): none for a NIC.
fn link_kind(name: &str) -> Option<String> {
    let o = std::process::Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", name])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    v.get(0)?
        .get("linkinfo")?
        .get("info_kind")?
        .as_str()
        .map(String::from)
}

/// An error and its sources on one line (aya's errors keep the errno in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// XDP_COPY and XDP_ZEROCOPY bind flags (linux/if_xdp.h).
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;

/// The AF_XDP mode that binds on queue 0: zero-copy if the driver has it, else copy.
fn xsk_probe(ifindex: u32) -> Result<XskMode> {
    match xsk_bind(ifindex, XDP_ZEROCOPY) {
        Ok(()) => Ok(XskMode::Zerocopy),
        Err(zc) => xsk_bind(ifindex, XDP_COPY)
            .map(|()| XskMode::Copy)
            .map_err(|e| anyhow!("copy mode: {e:#} (zero-copy: {zc:#})")),
    }
}

/// Binds a small AF_XDP socket to (ifindex, 0) with `flags`, then closes it.
fn xsk_bind(ifindex: u32, flags: u16) -> Result<()> {
    const FRAMES: u32 = 8;
    const FRAME: u32 = 4096;
    let layout = std::alloc::Layout::from_size_align((FRAMES * FRAME) as usize, 4096)?;
    // SAFETY: a non-zero size; freed below, after the socket and UMEM are gone.
    let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).context("allocation")?;
    let result = (|| -> Result<()> {
        let mem = NonNull::slice_from_raw_parts(ptr, layout.size());
        let cfg = UmemConfig {
            fill_size: FRAMES,
            complete_size: FRAMES,
            frame_size: FRAME,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: page-aligned memory of ours that outlives the UMEM (freed after this
        // closure, which drops the UMEM and socket).
        let umem = unsafe { Umem::new(cfg, mem) }.map_err(|e| anyhow!("UMEM: {e}"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(|e| anyhow!("interface: {e}"))?;
        info.set_queue(0);
        let sock = Socket::with_shared(&info, &umem).map_err(|e| anyhow!("socket: {e}"))?;
        let _device = umem
            .fq_cq(&sock)
            .map_err(|e| anyhow!("fill/completion rings: {e}"))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES),
                    tx_size: None,
                    bind_flags: flags,
                },
            )
            .map_err(|e| anyhow!("rx ring: {e}"))?;
        umem.bind(&user).map_err(|e| anyhow!("bind: {e}"))?;
        Ok(())
    })();
    // SAFETY: allocated above with this layout; nothing uses it any more.
    unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
    result
}

/// The XDP program attached to `ifindex`, if any (netlink RTM_GETLINK, IFLA_XDP), with
/// its name from the kernel's list of programs.
fn xdp_prog(ifindex: u32) -> Result<Option<Attached>> {
    let Some((id, mode)) = rtm_getlink_xdp(ifindex)? else {
        return Ok(None);
    };
    let name = aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string));
    let mode = match mode {
        1 => "native",
        2 => "skb",
        3 => "hw",
        4 => "multi",
        _ => "?",
    };
    Ok(Some(Attached {
        id,
        name,
        mode: mode.into(),
    }))
}

fn rtm_getlink_xdp(ifindex: u32) -> Result<Option<(u32, u8)>> {
    // SAFETY: plain socket call; the fd is closed by OwnedFd.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        bail!("netlink socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd of ours.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    use std::os::fd::AsRawFd as _;
    // nlmsghdr (16) + ifinfomsg (16).
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_UNSPEC as u8;
    req[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    // SAFETY: sending our buffer on our socket (to the kernel: no address needed).
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        bail!("netlink send: {}", std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 65536];
    // SAFETY: receiving into our buffer.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        bail!("netlink recv: {}", std::io::Error::last_os_error());
    }
    parse_newlink_xdp(&buf[..n as usize])
}

const NLA_TYPE_MASK: u16 = 0x3fff;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;

/// The attributes in `b` (rtattr/nlattr: length, type, value, 4-aligned).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, v))
    })
}

/// (program id, attach mode) from an RTM_NEWLINK answer; `None` when nothing is attached.
pub fn parse_newlink_xdp(msg: &[u8]) -> Result<Option<(u32, u8)>> {
    if msg.len() < 16 {
        bail!("short netlink answer");
    }
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    if ty == libc::NLMSG_ERROR as u16 {
        let errno = msg
            .get(16..20)
            .map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        bail!("netlink: {}", std::io::Error::from_raw_os_error(errno));
    }
    if ty != libc::RTM_NEWLINK {
        bail!("netlink: unexpected answer type {ty}");
    }
    let len = (u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize).min(msg.len());
    let Some(body) = msg.get(32..len) else {
        bail!("short RTM_NEWLINK");
    };
    let Some((_, xdp)) = attrs(body).find(|(t, _)| *t == libc::IFLA_XDP) else {
        return Ok(None);
    };
    let (mut id, mut mode) = (0u32, 0u8);
    for (t, v) in attrs(xdp) {
        match (t, v) {
            (IFLA_XDP_ATTACHED, [m, ..]) => mode = *m,
            (IFLA_XDP_PROG_ID, [a, b, c, d, ..]) => id = u32::from_ne_bytes([*a, *b, *c, *d]),
            _ => {}
        }
    }
    Ok((mode != 0).then_some((id, mode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        a.extend(ty.to_ne_bytes());
        a.extend(v);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
        a
    }

    fn newlink(attrs: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 32];
        m[0..4].copy_from_slice(&((32 + attrs.len()) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        m.extend(attrs);
        m
    }

    #[test]
    fn finds_the_attached_program_among_the_attributes() {
        let mut xdp = attr(IFLA_XDP_ATTACHED, &[1]);
        xdp.extend(attr(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()));
        let mut a = attr(3, b"eth0\0"); // IFLA_IFNAME, unaligned length
        a.extend(attr(libc::IFLA_XDP | 0x8000, &xdp)); // NLA_F_NESTED set
        assert_eq!(parse_newlink_xdp(&newlink(&a)).unwrap(), Some((42, 1)));
        // Attached: none.
        let a = attr(libc::IFLA_XDP, &attr(IFLA_XDP_ATTACHED, &[0]));
        assert_eq!(parse_newlink_xdp(&newlink(&a)).unwrap(), None);
        // No IFLA_XDP at all, a truncated attribute, an error answer: no panic.
        assert_eq!(parse_newlink_xdp(&newlink(&attr(3, b"x\0"))).unwrap(), None);
        let mut cut = newlink(&attr(libc::IFLA_XDP, &xdp));
        cut.truncate(cut.len() - 3);
        let n = cut.len() as u32;
        cut[0..4].copy_from_slice(&n.to_ne_bytes());
        assert!(parse_newlink_xdp(&cut).is_ok());
        let mut err = vec![0u8; 36];
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[16..20].copy_from_slice(&(-19i32).to_ne_bytes());
        assert!(
            parse_newlink_xdp(&err)
                .unwrap_err()
                .to_string()
                .contains("No such device")
        );
        assert!(parse_newlink_xdp(&[1, 2]).is_err());
    }

    #[test]
    fn capabilities_needed() {
        assert!(missing_caps(u64::MAX).is_empty());
        // CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8).
        assert!(missing_caps((1 << 12) | (1 << 13) | (1 << 21)).is_empty());
        assert_eq!(missing_caps(1 << 12), ["CAP_NET_RAW", "CAP_BPF"]);
    }
}
