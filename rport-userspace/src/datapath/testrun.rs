//! The XDP program under BPF_PROG_TEST_RUN: load the embedded object, set its config maps,
//! run frames, read verdicts, output frames, counters and bindings back.
//!
//! Used by `rport replay` (a pcap through the real program), by the fixture table and by
//! `cargo xtask bench xdp`.
//!
//! A frame runs either without a context (the kernel then has it arrive on the loopback
//! device, rx queue 0: what `rport replay` does, mapping roles onto that one device) or on
//! an [`Ingress`]: a real device and rx queue, handed to the kernel as the `xdp_md` context
//! (`ctx_in`), as a NIC would deliver it.
use std::{
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, XskMap, lpm_trie::Key},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use rport_common::{Binding, Counter, MAX_QUEUES, PROGRAM_NAME, maps};

use crate::datapath::loader::{self, Iface};

/// The loaded program and handles on its maps.
pub struct XdpHarness {
    ebpf: Ebpf,
    /// Ports set in SIP_PORTS, to clear them on the next `set_sip_ports`.
    ports: Vec<u16>,
    /// Interfaces declared with `set_ifaces` (their XSKMAP slots).
    ifaces: Vec<Iface>,
    /// AF_XDP sockets placed in XSKS, by XSKMAP index: kept open while they are there.
    sockets: Vec<(u32, OwnedFd)>,
}

/// Where a frame arrives: a device of the calling thread's network namespace and one of
/// its rx queues. The kernel refuses (ENODEV, EINVAL) an ifindex that is not a device
/// there, or a queue at or past its real rx queue count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    pub ifindex: u32,
    pub rx_queue: u32,
}

/// `struct xdp_md` (uapi linux/bpf.h), the context of an XDP test run. `data` and
/// `data_meta` must be 0 and `data_end` the frame's length; `egress_ifindex` must be 0.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

impl XdpMd {
    fn bytes(&self) -> [u8; 24] {
        let f = [
            self.data,
            self.data_end,
            self.data_meta,
            self.ingress_ifindex,
            self.rx_queue_index,
            self.egress_ifindex,
        ];
        let mut b = [0u8; 24];
        for (c, v) in b.chunks_exact_mut(4).zip(f) {
            c.copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// What one run gave back.
#[derive(Debug)]
pub struct RunResult {
    pub verdict: u32,
    pub out: Vec<u8>,
    pub duration_ns: u128,
}

/// Ingress ifindex of BPF_PROG_TEST_RUN without a context: the loopback device.
pub const TEST_RUN_IFINDEX: u32 = 1;

/// An AF_XDP socket, not bound to any device: enough for XSKS to hold it, so that the
/// program's redirect finds an entry and returns XDP_REDIRECT (a test run returns the
/// verdict without delivering the frame).
fn xdp_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd at once.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("AF_XDP socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl XdpHarness {
    /// Loads the program (verifier included) with SIP port 5060, logging off (as
    /// `rport run` does by default).
    pub fn load() -> Result<Self> {
        Self::load_with_log(crate::datapath::loader::XdpLog::Off)
    }

    /// Loads the program with the given aya-log level.
    pub fn load_with_log(log: crate::datapath::loader::XdpLog) -> Result<Self> {
        Self::load_sized(log, rport_common::MAX_BINDINGS)
    }

    /// Loads the program with the given aya-log level and a BINDINGS map of
    /// `max_bindings` entries (`rport run --max-bindings`).
    pub fn load_sized(log: crate::datapath::loader::XdpLog, max_bindings: u32) -> Result<Self> {
        Self::load_full(log, max_bindings, loader::Egress::Kernel)
    }

    /// Loads the program as `rport run --egress EGRESS` does (the `RPORT_EGRESS_BYPASS`
    /// global), with the given aya-log level and BINDINGS size.
    pub fn load_full(
        log: crate::datapath::loader::XdpLog,
        max_bindings: u32,
        egress: loader::Egress,
    ) -> Result<Self> {
        let level = log.level();
        let bypass = egress.global();
        let max_bindings = loader::check_max_bindings(max_bindings)?;
        let mut ebpf = aya::EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .override_global(rport_common::EGRESS_BYPASS_GLOBAL, &bypass, true)
            .map_max_entries(maps::BINDINGS, max_bindings)
            .load(crate::XDP_OBJECT)
            .context("loading the XDP object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .context("program missing")?
            .try_into()?;
        prog.load().context("verifier rejected the XDP program")?;
        loader::fill_config(&mut ebpf, &[rport_common::SIP_PORT], &[], &[])?;
        Ok(XdpHarness {
            ebpf,
            ports: vec![rport_common::SIP_PORT],
            ifaces: Vec::new(),
            sockets: Vec::new(),
        })
    }

    /// The program's log records (aya-log), read into `logger`.
    pub fn logger<T: log::Log>(&mut self, logger: T) -> Result<aya_log::EbpfLogger<T>> {
        aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, logger)
            .context("opening the log buffer")
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("map {name} missing"))
    }

    /// Replaces the SIP port set.
    pub fn set_sip_ports(&mut self, ports: &[u16]) -> Result<()> {
        let old = std::mem::take(&mut self.ports);
        loader::set_sip_ports(&mut self.ebpf, &old, false)?;
        loader::set_sip_ports(&mut self.ebpf, ports, true)?;
        self.ports = ports.to_vec();
        Ok(())
    }

    /// Declares the role of the device frames run without a context arrive on (loopback):
    /// `rport replay`'s one device, given the role of each packet in turn.
    pub fn set_role(&mut self, role: u32) -> Result<()> {
        loader::set_ifaces(
            &mut self.ebpf,
            &[Iface {
                name: "lo".into(),
                index: TEST_RUN_IFINDEX,
                role,
                slot: 0,
            }],
        )
    }

    /// Declares interfaces (role, XSKMAP slot), as `rport run` does for those it attaches to.
    pub fn set_ifaces(&mut self, ifaces: &[Iface]) -> Result<()> {
        loader::set_ifaces(&mut self.ebpf, ifaces)?;
        self.ifaces.extend_from_slice(ifaces);
        Ok(())
    }

    /// Adds force-rport networks.
    pub fn add_force_rport(&mut self, nets: &[(IpAddr, u8)]) -> Result<()> {
        loader::add_force_rport(&mut self.ebpf, nets)
    }

    /// Removes every force-rport network.
    pub fn clear_force_rport(&mut self) -> Result<()> {
        let mut m: LpmTrie<&mut MapData, [u8; 16], u8> =
            LpmTrie::try_from(self.map_mut(maps::FORCE_RPORT)?)?;
        let keys: Vec<Key<[u8; 16]>> = m.keys().collect::<Result<_, _>>()?;
        for k in keys {
            m.remove(&k)?;
        }
        Ok(())
    }

    /// Puts an AF_XDP socket in XSKS for rx queue `rx_queue` of the declared interface
    /// `ifindex`, where the daemon's socket for that queue would be.
    pub fn add_socket(&mut self, ifindex: u32, rx_queue: u32) -> Result<()> {
        let slot = self
            .ifaces
            .iter()
            .find(|i| i.index == ifindex)
            .with_context(|| format!("ifindex {ifindex} not declared with set_ifaces"))?
            .slot;
        if rx_queue >= MAX_QUEUES {
            bail!("rx queue {rx_queue} has no XSKMAP entry (at most {MAX_QUEUES} per interface)");
        }
        let index = slot * MAX_QUEUES + rx_queue;
        let fd = xdp_socket()?;
        let mut m: XskMap<&mut MapData> = XskMap::try_from(self.map_mut(maps::XSKS)?)?;
        m.set(index, fd.as_raw_fd(), 0)
            .context("placing an AF_XDP socket in XSKS")?;
        self.sockets.push((index, fd));
        Ok(())
    }

    /// Takes every socket out of XSKS again.
    pub fn remove_sockets(&mut self) -> Result<()> {
        let mut m: XskMap<&mut MapData> =
            XskMap::try_from(self.ebpf.map_mut(maps::XSKS).context("map XSKS missing")?)?;
        for (index, _fd) in self.sockets.drain(..) {
            m.unset(index)?;
        }
        Ok(())
    }

    /// Runs one frame once, without a context (it arrives on loopback, rx queue 0).
    pub fn run(&self, frame: &[u8]) -> Result<RunResult> {
        self.run_repeat(frame, None, 1)
    }

    /// Runs one frame once, arriving on `at`.
    pub fn run_on(&self, frame: &[u8], at: Ingress) -> Result<RunResult> {
        self.run_repeat(frame, Some(at), 1)
    }

    /// Runs one frame `repeat` times, arriving on `at` (loopback, queue 0, if `None`);
    /// `duration_ns` is the kernel's mean per run. The kernel runs the program on one
    /// buffer `repeat` times: a frame the program rewrites is seen rewritten from the
    /// second run on.
    pub fn run_repeat(&self, frame: &[u8], at: Option<Ingress>, repeat: u32) -> Result<RunResult> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .context("program missing")?
            .try_into()?;
        let ctx = at.map(|i| {
            XdpMd {
                data_end: frame.len() as u32,
                ingress_ifindex: i.ifindex,
                rx_queue_index: i.rx_queue,
                ..Default::default()
            }
            .bytes()
        });
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: ctx.as_ref().map(|c| &c[..]),
                repeat,
                ..Default::default()
            })
            .with_context(|| match at {
                None => "BPF_PROG_TEST_RUN".to_string(),
                Some(i) => format!(
                    "BPF_PROG_TEST_RUN on ifindex {} rx queue {} (a device of this thread's network namespace, with that many rx queues?)",
                    i.ifindex, i.rx_queue
                ),
            })?;
        out.truncate(r.data_size_out as usize);
        Ok(RunResult {
            verdict: r.return_value,
            out,
            duration_ns: r.duration.as_nanos(),
        })
    }

    /// Every counter, summed over CPUs, in `Counter::ALL` order.
    pub fn counters(&self) -> Result<Vec<u64>> {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(maps::COUNTERS).context("COUNTERS missing")?)?;
        Counter::ALL
            .iter()
            .map(|c| Ok(m.get(&(*c as u32), 0)?.iter().sum()))
            .collect()
    }

    /// All bindings.
    pub fn bindings(&self) -> Result<Vec<(u64, Binding)>> {
        let m: HashMap<&MapData, u64, Binding> =
            HashMap::try_from(self.ebpf.map(maps::BINDINGS).context("BINDINGS missing")?)?;
        Ok(m.iter().collect::<Result<_, _>>()?)
    }

    /// Replaces the `TAG_KEYS` value (the keys and age limits tags are checked against).
    pub fn set_tag_keys(&mut self, keys: &rport_common::tag::TagKeys) -> Result<()> {
        let mut m: aya::maps::Array<&mut MapData, rport_common::tag::TagKeys> =
            aya::maps::Array::try_from(self.map_mut(maps::TAG_KEYS)?)?;
        m.set(0, *keys, 0).context("setting TAG_KEYS")?;
        Ok(())
    }

    /// Writes `n` bindings from userspace (keys 1..=n, each a copy of `b`), as many
    /// requests with distinct branches would: to measure a full map.
    pub fn fill_bindings(&mut self, n: u32, b: &Binding) -> Result<()> {
        let mut m: HashMap<&mut MapData, u64, Binding> =
            HashMap::try_from(self.map_mut(maps::BINDINGS)?)?;
        for k in 1..=n as u64 {
            m.insert(k, b, 0)
                .with_context(|| format!("binding {k} of {n}"))?;
        }
        Ok(())
    }

    /// The BINDINGS map's `memlock:` in /proc/self/fdinfo (bytes of kernel memory the
    /// kernel charges for it) and its entry count (`max_entries:`).
    pub fn bindings_memlock(&self) -> Result<(u64, u32)> {
        let Some(aya::maps::Map::LruHashMap(m)) = self.ebpf.map(maps::BINDINGS) else {
            bail!("BINDINGS missing, or not an LRU hash map");
        };
        let fd = m.fd();
        let text =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .with_context(|| format!("no {name} in the map's fdinfo"))
        };
        Ok((field("memlock:")?, field("max_entries:")? as u32))
    }

    /// Removes every binding.
    pub fn clear_bindings(&mut self) -> Result<()> {
        let mut m: HashMap<&mut MapData, u64, Binding> =
            HashMap::try_from(self.map_mut(maps::BINDINGS)?)?;
        let keys: Vec<u64> = m.keys().collect::<Result<_, _>>()?;
        for k in keys {
            m.remove(&k)?;
        }
        Ok(())
    }
}
