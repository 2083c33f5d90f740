//! Loading the XDP program, filling its config maps, pinning its state, attaching it.
use std::{
    ffi::CString,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use rport_common::{
    IfaceConf, PROGRAM_NAME, TC_PROGRAM_NAME, TC_REINJECT_PROGRAM_NAME, addr_to_16, maps, role,
};

/// What `rport run` attaches, and how.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub outside: Vec<String>,
    pub inside: Vec<String>,
    pub sip_ports: Vec<u16>,
    pub mode: XdpMode,
    /// Directory (on a bpffs) where BINDINGS and COUNTERS are pinned, so that bindings and
    /// counters survive a restart of the daemon.
    pub pin_dir: PathBuf,
    /// Networks whose clients are treated as if they had sent `;rport`.
    pub force_rport: Vec<(IpAddr, u8)>,
    /// Highest aya-log level the XDP program may log at (0: none; see [`XdpLog`]).
    pub xdp_log: XdpLog,
    /// File with the steering-tag key (shared by the gateways of one deployment); without
    /// it, the key pinned by an earlier run, or a new one.
    pub tag_key: Option<PathBuf>,
    /// Put the client's steering tag in the Contacts of its requests and 1xx/2xx
    /// responses (`--contact alias`, the default), so that a server's requests toward the
    /// client are steered to its NAT mapping.
    pub contact_alias: bool,
    /// Entries of the BINDINGS map (`--max-bindings`), checked by [`check_max_bindings`].
    pub max_bindings: u32,
    /// How steered responses and rewritten requests leave the gateway (`--egress`).
    pub egress: Egress,
}

/// How rport's packets leave the gateway (`rport run --egress`; docs/OPERATIONS.md,
/// "Egress").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Egress {
    /// Through the kernel's forwarding: routing, the nftables forward and postrouting
    /// chains, conntrack and rp_filter apply to every packet rport sends on.
    #[default]
    Kernel,
    /// Past it: XDP looks up the route and neighbour (`bpf_fib_lookup`) and redirects
    /// steered responses out of the egress interface itself, and the daemon sends
    /// rewritten requests out by AF_XDP TX (datapath/egress.rs); what neither can send (no
    /// neighbour yet, too big, TTL expiring) still goes the kernel's way.
    Bypass,
}

impl Egress {
    /// The value of the XDP program's `RPORT_EGRESS_BYPASS` global.
    pub fn global(self) -> u8 {
        u8::from(self == Egress::Bypass)
    }
}

/// Largest `--max-bindings`: 2^24 entries, about 3.4 GB of kernel memory (see
/// docs/ARCHITECTURE.md, "Memory"); past it a typo (an extra zero) would pin gigabytes.
pub const MAX_BINDINGS_LIMIT: u32 = 1 << 24;

/// `n` as a BINDINGS size, or why not.
pub fn check_max_bindings(n: u32) -> Result<u32> {
    if n == 0 || n > MAX_BINDINGS_LIMIT {
        bail!("--max-bindings must be 1..={MAX_BINDINGS_LIMIT}, not {n}");
    }
    Ok(n)
}

/// A BINDINGS map pinned by an earlier run keeps its size (aya reuses the pin as it is): a
/// run that asks for another size is refused rather than left with the old one unsaid.
fn check_pinned_size(pin: &Path, want: u32) -> Result<()> {
    let Ok(info) = aya::maps::MapInfo::from_pin(pin) else {
        return Ok(());
    };
    let have = info.max_entries();
    if have != want {
        bail!(
            "the pinned BINDINGS map {} holds {have} entries, --max-bindings asks for {want}: \
             run with --max-bindings {have}, or remove the pin (rm {}; its bindings are lost, \
             responses with a valid tag are still steered) and start again",
            pin.display(),
            pin.display()
        );
    }
    Ok(())
}

/// The XDP program's log level (aya-log). Levels below the chosen one are dead code to the
/// verifier, so the default, `off`, costs nothing per packet; `debug` logs every steered
/// response and every malformed Via, for troubleshooting only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum XdpLog {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl XdpLog {
    /// The value of aya-log's `AYA_LOG_LEVEL` global.
    pub fn level(self) -> u8 {
        match self {
            XdpLog::Off => 0,
            XdpLog::Error => aya_log::Level::Error as u8,
            XdpLog::Warn => aya_log::Level::Warn as u8,
            XdpLog::Info => aya_log::Level::Info as u8,
            XdpLog::Debug => aya_log::Level::Debug as u8,
            XdpLog::Trace => aya_log::Level::Trace as u8,
        }
    }
}

/// Starts a thread that drains the XDP program's log ring buffer into the daemon's log
/// (target `rport::xdp`, at most `logging::PER_SECOND` lines a second per call site).
pub fn spawn_xdp_logger(ebpf: &mut Ebpf) -> Result<()> {
    use crate::observe::logging;
    let mut logger =
        aya_log::EbpfLogger::init_with_logger(ebpf, logging::XdpLog::new(logging::Global))
            .context("opening the XDP program's log buffer")?;
    std::thread::Builder::new()
        .name("rport-xdp-log".into())
        .spawn(move || {
            use std::os::fd::AsRawFd as _;
            // Started before the main thread drops its capabilities (they are per thread).
            if let Err(e) = crate::privileges::drop_to_kept() {
                eprintln!("rport: the XDP log thread: {e:#}");
                return;
            }
            loop {
                let mut p = libc::pollfd {
                    fd: logger.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
                logger.flush();
            }
        })?;
    Ok(())
}

/// An interface rport is attached to.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub role: u32,
    pub slot: u32,
}

/// The loaded, attached program. Dropping it detaches from every interface.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub ifaces: Vec<Iface>,
    /// What is attached to each interface (index: its slot).
    pub links: Vec<Vec<Attached>>,
    /// The XDP attach mode, for a reattach.
    pub mode: XdpMode,
    /// The key that signs the steering tags the rewrite adds (never logged).
    pub tag_key: std::sync::Arc<crate::datapath::keys::CurrentKey>,
}

/// Interface index, or a clear error.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).context("interface name")?;
    // SAFETY: valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface named {name:?} in this network namespace");
    }
    Ok(i)
}

/// Default pin directory: one per network namespace, so daemons in different namespaces of
/// one host never share maps, and a restart in the same namespace finds its own.
pub fn default_pin_dir() -> PathBuf {
    let ino = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    PathBuf::from(format!("/sys/fs/bpf/rport/net-{ino}"))
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub(crate) fn is_bpffs(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Makes sure `dir` is on a bpffs, mounting one on /sys/fs/bpf if that is where it goes and
/// none is there (a fresh `ip netns exec` or container has none), then creates `dir`.
pub fn ensure_pin_dir(dir: &Path) -> Result<()> {
    let sysbpf = Path::new("/sys/fs/bpf");
    if dir.starts_with(sysbpf) && !is_bpffs(sysbpf) {
        std::fs::create_dir_all(sysbpf).ok();
        let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        // SAFETY: valid C strings; mounting a fresh bpffs instance.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            bail!(
                "mounting bpffs on /sys/fs/bpf: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating pin directory {}", dir.display()))?;
    let mut p = dir.to_path_buf();
    while !is_bpffs(&p) {
        if !p.pop() {
            bail!(
                "{} is not on a bpffs (mount -t bpf bpf <dir>)",
                dir.display()
            );
        }
    }
    Ok(())
}

fn need_root() -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (CAP_BPF and CAP_NET_ADMIN) to load and attach the XDP program");
    }
    Ok(())
}

/// The checks of a configuration that need nothing from the kernel (`rport run
/// --check-config` runs them alone): interfaces given, once each; SIP ports; map size.
pub fn check_config(cfg: &LoadConfig) -> Result<()> {
    if cfg.outside.is_empty() || cfg.inside.is_empty() {
        bail!("give at least one --outside and one --inside interface");
    }
    if cfg.sip_ports.is_empty() || cfg.sip_ports.contains(&0) {
        bail!("--sip-port must be 1..65535");
    }
    let all: Vec<&String> = cfg.outside.iter().chain(&cfg.inside).collect();
    if let Some((_, n)) = all.iter().enumerate().find(|(i, n)| all[..*i].contains(n)) {
        bail!("interface {n} given twice");
    }
    check_max_bindings(cfg.max_bindings)?;
    Ok(())
}

/// Loads the program, fills its maps and attaches it to every interface.
pub fn load_and_attach(cfg: &LoadConfig) -> Result<Loaded> {
    need_root()?;
    check_config(cfg)?;
    let mut ifaces = Vec::new();
    for (names, r) in [(&cfg.outside, role::OUTSIDE), (&cfg.inside, role::INSIDE)] {
        for n in names {
            let slot = ifaces.len() as u32;
            ifaces.push(Iface {
                name: n.clone(),
                index: ifindex(n)?,
                role: r,
                slot,
            });
        }
    }
    let max_bindings = check_max_bindings(cfg.max_bindings)?;
    ensure_pin_dir(&cfg.pin_dir)?;
    let bindings_pin = cfg.pin_dir.join(maps::BINDINGS);
    check_pinned_size(&bindings_pin, max_bindings)?;
    let counters_pin = cfg.pin_dir.join(maps::COUNTERS);
    let keys_pin = cfg.pin_dir.join(maps::TAG_KEYS);
    let level = cfg.xdp_log.level();
    // Native (driver) or offloaded XDP never sees a re-injected frame: no lookup for them.
    let may_be_generic = u8::from(!matches!(cfg.mode, XdpMode::Driver | XdpMode::Hardware));
    let egress_bypass = cfg.egress.global();
    let mut ebpf = EbpfLoader::new()
        .override_global(aya_log::LEVEL, &level, false)
        .override_global(rport_common::MAY_BE_GENERIC_GLOBAL, &may_be_generic, true)
        .override_global(rport_common::EGRESS_BYPASS_GLOBAL, &egress_bypass, true)
        .map_max_entries(maps::BINDINGS, max_bindings)
        .map_pin_path(maps::BINDINGS, bindings_pin.as_path())
        .map_pin_path(maps::COUNTERS, counters_pin.as_path())
        .map_pin_path(maps::TAG_KEYS, keys_pin.as_path())
        .load(crate::XDP_OBJECT)
        .context("loading the XDP object (is the kernel built with BPF?)")?;
    fill_config(&mut ebpf, &cfg.sip_ports, &ifaces, &cfg.force_rport)?;
    // The pins are root's only: TAG_KEYS holds the secret that authenticates steering.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cfg.pin_dir, std::fs::Permissions::from_mode(0o700))?;
        for p in [&bindings_pin, &counters_pin, &keys_pin] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let tag_key = crate::datapath::keys::install(&mut ebpf, cfg.tag_key.as_deref())?;
    // Both programs loaded once; `attach_iface` attaches them per interface, now and again
    // when an interface comes back under its name (datapath/ifwatch.rs): no reload then.
    let tc: &mut SchedClassifier = ebpf
        .program_mut(TC_PROGRAM_NAME)
        .context("TC program missing")?
        .try_into()?;
    tc.load()
        .context("the kernel's verifier rejected the TC program")?;
    // The daemon's rewritten frames go back into the receive path of the interface they
    // came in on, from TC egress (datapath/inject.rs): attached (by `attach_iface`) before
    // the daemon sends.
    let reinject: &mut SchedClassifier = ebpf
        .program_mut(TC_REINJECT_PROGRAM_NAME)
        .context("TC re-injection program missing")?
        .try_into()?;
    reinject
        .load()
        .context("the kernel's verifier rejected the TC re-injection program")?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .context("program missing")?
        .try_into()?;
    prog.load()
        .context("the kernel's verifier rejected the XDP program")?;
    let mut links = Vec::new();
    for i in &ifaces {
        links.push(attach_iface(&mut ebpf, i, cfg.mode)?);
    }
    if cfg.xdp_log != XdpLog::Off {
        spawn_xdp_logger(&mut ebpf)?;
    }
    Ok(Loaded {
        ebpf,
        ifaces,
        links,
        mode: cfg.mode,
        tag_key: crate::datapath::keys::CurrentKey::new(tag_key),
    })
}

/// One attachment of a loaded program to an interface, to detach it by.
#[derive(Debug)]
pub enum Attached {
    Xdp(XdpLinkId),
    /// A TC program (by name) and its link.
    Tc(&'static str, SchedClassifierLinkId),
}

/// Attaches the loaded programs to `i`, everything rport needs on it: on an inside
/// interface the TC steering program first (the XDP program hands steering decisions to
/// it, see SteerMeta, and a decision with no TC program to apply it leaves the packet as it
/// was), on every interface the TC re-injection program (egress), then XDP. Also how an interface that came back is reattached
/// (datapath/ifwatch.rs): the programs are not loaded again, so this needs only
/// CAP_NET_ADMIN and CAP_BPF. On an error, what it attached is detached again.
pub fn attach_iface(ebpf: &mut Ebpf, i: &Iface, mode: XdpMode) -> Result<Vec<Attached>> {
    let mut links = Vec::new();
    let r = attach_each(ebpf, i, mode, &mut links);
    if r.is_err() {
        detach_iface(ebpf, links);
        return r.map(|_| Vec::new());
    }
    Ok(links)
}

fn attach_each(ebpf: &mut Ebpf, i: &Iface, mode: XdpMode, links: &mut Vec<Attached>) -> Result<()> {
    if i.role == role::INSIDE {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(TC_PROGRAM_NAME)
            .context("TC program missing")?
            .try_into()?;
        // tcx (kernel 6.6+) needs no clsact qdisc; older kernels attach through netlink
        // and need one (adding it again is harmless).
        let _ = aya::programs::tc::qdisc_add_clsact(&i.name);
        let id = tc
            .attach(&i.name, TcAttachType::Ingress)
            .with_context(|| format!("attaching the TC steering program to {}", i.name))?;
        links.push(Attached::Tc(TC_PROGRAM_NAME, id));
    }
    // Every interface: its TC egress re-injects the daemon's frames into its own receive
    // path (datapath/inject.rs).
    let reinject: &mut SchedClassifier = ebpf
        .program_mut(TC_REINJECT_PROGRAM_NAME)
        .context("TC re-injection program missing")?
        .try_into()?;
    let _ = aya::programs::tc::qdisc_add_clsact(&i.name);
    let id = reinject
        .attach(&i.name, TcAttachType::Egress)
        .with_context(|| format!("attaching the TC re-injection program to {}", i.name))?;
    links.push(Attached::Tc(TC_REINJECT_PROGRAM_NAME, id));
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .context("program missing")?
        .try_into()?;
    let id = prog.attach(&i.name, mode).with_context(|| {
        format!(
            "attaching XDP to {} ({:?} mode; try --xdp-mode skb)",
            i.name, mode
        )
    })?;
    links.push(Attached::Xdp(id));
    Ok(())
}

/// Detaches `links` (last attached first). Errors are ignored: an interface that is gone
/// took its attachments with it, and this only releases what is left of them.
pub fn detach_iface(ebpf: &mut Ebpf, links: Vec<Attached>) {
    for l in links.into_iter().rev() {
        match l {
            Attached::Xdp(id) => {
                if let Some(Ok(p)) = ebpf.program_mut(PROGRAM_NAME).map(<&mut Xdp>::try_from) {
                    let _ = p.detach(id);
                }
            }
            Attached::Tc(name, id) => {
                if let Some(Ok(p)) = ebpf.program_mut(name).map(<&mut SchedClassifier>::try_from) {
                    let _ = p.detach(id);
                }
            }
        }
    }
}

/// Fills the program's config maps: its SIP ports, its interfaces (role and XSKMAP slot),
/// its force-rport networks. `rport run` calls it once on fresh maps; the test-run harness
/// (`rport replay`, the fixture table, the bench) calls it and the pieces below, so both
/// write the maps the same way.
pub fn fill_config(
    ebpf: &mut Ebpf,
    sip_ports: &[u16],
    ifaces: &[Iface],
    force_rport: &[(IpAddr, u8)],
) -> Result<()> {
    set_sip_ports(ebpf, sip_ports, true)?;
    set_ifaces(ebpf, ifaces)?;
    add_force_rport(ebpf, force_rport)
}

/// Marks `ports` as SIP ports (`on`) or not in SIP_PORTS.
pub fn set_sip_ports(ebpf: &mut Ebpf, ports: &[u16], on: bool) -> Result<()> {
    let mut m: Array<&mut MapData, u8> =
        Array::try_from(ebpf.map_mut(maps::SIP_PORTS).context("SIP_PORTS")?)?;
    for p in ports {
        m.set(*p as u32, on as u8, 0)?;
    }
    Ok(())
}

/// Declares each interface's role and XSKMAP slot in IFACES, by ifindex.
pub fn set_ifaces(ebpf: &mut Ebpf, ifaces: &[Iface]) -> Result<()> {
    let mut m: HashMap<&mut MapData, u32, IfaceConf> =
        HashMap::try_from(ebpf.map_mut(maps::IFACES).context("IFACES")?)?;
    for i in ifaces {
        m.insert(
            i.index,
            IfaceConf {
                slot: i.slot,
                role: i.role,
            },
            0,
        )?;
    }
    Ok(())
}

/// Adds force-rport networks (`ADDR/LEN`, IPv4 or IPv6) to FORCE_RPORT.
pub fn add_force_rport(ebpf: &mut Ebpf, nets: &[(IpAddr, u8)]) -> Result<()> {
    let mut m: LpmTrie<&mut MapData, [u8; 16], u8> =
        LpmTrie::try_from(ebpf.map_mut(maps::FORCE_RPORT).context("FORCE_RPORT")?)?;
    for (addr, len) in nets {
        m.insert(&force_rport_key(*addr, *len), 1, 0)?;
    }
    Ok(())
}

/// The FORCE_RPORT key of a network: its prefix over the 16-byte map encoding of addresses
/// (IPv4-mapped for IPv4, so an IPv4 /N is a /96+N).
fn force_rport_key(addr: IpAddr, len: u8) -> Key<[u8; 16]> {
    let bits = match addr {
        IpAddr::V4(_) => rport_common::V4_MAPPED_PREFIX_BITS + len as u32,
        IpAddr::V6(_) => len as u32,
    };
    Key::new(bits, addr_to_16(addr))
}

/// Parses `ADDR/LEN` (or a bare address) into a network.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8)> {
    let (a, l) = s.split_once('/').unwrap_or((s, ""));
    let addr: IpAddr = a
        .parse()
        .with_context(|| format!("{s:?} is not an address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = if l.is_empty() {
        max
    } else {
        l.parse()
            .with_context(|| format!("bad prefix length in {s:?}"))?
    };
    if len > max {
        bail!("prefix length {len} too long for {addr}");
    }
    Ok((addr, len))
}
