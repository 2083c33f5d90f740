//! The XDP program under BPF_PROG_TEST_RUN: load the embedded object, set its config maps,
//! run frames, read verdicts, output frames, counters and bindings back.
//!
//! Used by `rport replay` (a pcap through the real program), by the fixture table and by
//! `cargo xtask bench xdp`.
use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use rport_common::{Binding, Counter, IfaceConf, PROGRAM_NAME, maps};

/// `xdp_action` values.
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// The loaded program and handles on its maps.
pub struct XdpHarness {
    ebpf: Ebpf,
    /// Ports set in SIP_PORTS, to clear them on the next `set_sip_ports`.
    ports: Vec<u16>,
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

impl XdpHarness {
    /// Loads the program (verifier included) with SIP port 5060, logging off (as
    /// `rport run` does by default).
    pub fn load() -> Result<Self> {
        Self::load_with_log(crate::datapath::loader::XdpLog::Off)
    }

    /// Loads the program with the given aya-log level.
    pub fn load_with_log(log: crate::datapath::loader::XdpLog) -> Result<Self> {
        let level = log.level();
        let mut ebpf = aya::EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .load(crate::XDP_OBJECT)
            .context("loading the XDP object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .context("program missing")?
            .try_into()?;
        prog.load().context("verifier rejected the XDP program")?;
        let mut h = XdpHarness {
            ebpf,
            ports: Vec::new(),
        };
        h.set_sip_ports(&[5060])?;
        Ok(h)
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
        let mut m: Array<&mut MapData, u8> = Array::try_from(self.map_mut(maps::SIP_PORTS)?)?;
        for k in old {
            m.set(k as u32, 0, 0)?;
        }
        for p in ports {
            m.set(*p as u32, 1, 0)?;
        }
        self.ports = ports.to_vec();
        Ok(())
    }

    /// Declares the role of the ingress interface used by test runs.
    pub fn set_role(&mut self, role: u32) -> Result<()> {
        let mut m: HashMap<&mut MapData, u32, IfaceConf> =
            HashMap::try_from(self.map_mut(maps::IFACES)?)?;
        m.insert(TEST_RUN_IFINDEX, IfaceConf { slot: 0, role }, 0)?;
        Ok(())
    }

    /// Adds a force-rport network (address given in the 16-byte map encoding).
    pub fn add_force_rport(&mut self, addr: [u8; 16], prefix_bits: u32) -> Result<()> {
        let mut m: aya::maps::LpmTrie<&mut MapData, [u8; 16], u8> =
            aya::maps::LpmTrie::try_from(self.map_mut(maps::FORCE_RPORT)?)?;
        m.insert(&aya::maps::lpm_trie::Key::new(prefix_bits, addr), 1, 0)?;
        Ok(())
    }

    /// Runs one frame once.
    pub fn run(&self, frame: &[u8]) -> Result<RunResult> {
        self.run_repeat(frame, 1)
    }

    /// Runs one frame `repeat` times; `duration_ns` is the kernel's mean per run.
    pub fn run_repeat(&self, frame: &[u8], repeat: u32) -> Result<RunResult> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .context("program missing")?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
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
