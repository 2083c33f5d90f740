//! The XDP program under BPF_PROG_TEST_RUN (the harness lives in rport-userspace, where
//! `rport replay` uses it too), and the bed the fixture table and the bench run it on: one
//! device per interface role in a namespace of the test's own, so that each frame
//! arrives on a real ingress device and rx queue (the test run's `xdp_md` context).
pub use rport_common::xdp_action::*;
pub use rport_userspace::datapath::testrun::*;

use anyhow::{Context as _, Result};
use rport_common::{Binding, role};
use rport_userspace::datapath::loader::{Iface, ifindex};

use crate::{
    fixtures::{Datapath, Prior},
    ns::Ns,
};

/// True when this process may load BPF programs; otherwise prints why a test skips.
pub fn can_load_bpf(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {test}: needs root (CAP_BPF + CAP_NET_ADMIN) to load the XDP program");
        return false;
    }
    true
}

/// Rx queues of each bed device (the kernel accepts a test run's rx queue only below the
/// device's real count).
pub const BED_RX_QUEUES: u32 = 4;

/// The program, loaded, with one declared device per role: used on a thread that is in
/// the bed's namespace (see [`with_bed`]).
pub struct Bed {
    pub h: XdpHarness,
    /// Ifindex of the outside device (IFACES slot 0).
    pub outside: u32,
    /// Ifindex of the inside device (IFACES slot 1).
    pub inside: u32,
}

impl Bed {
    /// Where a frame arriving on the interface of `role`, rx queue `rx_queue`, comes in.
    pub fn ingress(&self, role: u32, rx_queue: u32) -> Ingress {
        Ingress {
            ifindex: if role == role::INSIDE {
                self.inside
            } else {
                self.outside
            },
            rx_queue,
        }
    }
}

/// Runs `f` on a bed: a fresh namespace with the devices `rpout` (outside) and `rpin`
/// (inside), each with [`BED_RX_QUEUES`] rx queues, the program loaded and both
/// devices declared in IFACES, all on a thread that entered the namespace. The namespace
/// (devices included) is deleted when this returns, also on failure or panic.
pub fn with_bed<T: Send + 'static>(
    f: impl FnOnce(&mut Bed) -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = Ns::new("rpfx")?;
    let q = BED_RX_QUEUES.to_string();
    // A veth pair: two devices in one command, and veth is built into kernels that lack
    // the dummy module. Nothing is sent on it, so it stays down.
    ns.ip(&[
        "link",
        "add",
        "rpout",
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        "rpin",
        "numrxqueues",
        &q,
    ])?;
    ns.within(move || -> Result<T> {
        let (outside, inside) = (ifindex("rpout")?, ifindex("rpin")?);
        let mut h = XdpHarness::load()?;
        h.set_ifaces(&[
            Iface {
                name: "rpout".into(),
                index: outside,
                role: role::OUTSIDE,
                slot: 0,
            },
            Iface {
                name: "rpin".into(),
                index: inside,
                role: role::INSIDE,
                slot: 1,
            },
        ])?;
        f(&mut Bed { h, outside, inside })
    })
    .context("on the test-run bed")?
}

impl Datapath for Bed {
    fn reset(&mut self, prior: &Prior) -> Result<()> {
        self.h.clear_bindings()?;
        self.h.clear_force_rport()?;
        self.h.remove_sockets()?;
        self.h.add_force_rport(&prior.force_rport)?;
        self.h.set_tag_keys(&prior.tag_keys.unwrap_or_default())?;
        for q in &prior.sockets {
            self.h.add_socket(self.outside, *q)?;
        }
        Ok(())
    }

    fn run(&mut self, frame: &[u8], role: u32, rx_queue: u32) -> Result<(u32, Vec<u8>)> {
        let r = self.h.run_on(frame, self.ingress(role, rx_queue))?;
        Ok((r.verdict, r.out))
    }

    fn counters(&mut self) -> Result<Vec<u64>> {
        self.h.counters()
    }

    fn bindings(&mut self) -> Result<Vec<(u64, Binding)>> {
        self.h.bindings()
    }
}

/// The object's trivial `rport_pass` program (XDP_PASS), attached to an interface for as
/// long as this lives (the link goes with the loaded object).
///
/// Why: a frame XDP redirects into a veth (`rport run --egress bypass`, the ceiling row of
/// `bench gateways`) is transmitted only when the veth's peer runs an XDP program; without
/// one the kernel drops it. Real NICs need nothing.
pub struct PassProg {
    _ebpf: aya::Ebpf,
}

/// Attaches `rport_pass` to `iface` in `ns` (the peer of the veth XDP redirects into).
pub fn attach_pass(ns: &Ns, iface: &str) -> Result<PassProg> {
    attach_prog(ns, iface, rport_common::PASS_PROGRAM_NAME)
}

/// Loads the object's XDP program `name` (its maps at their smallest where that is
/// allowed) and attaches it to `iface` in `ns`, in the kernel's default mode.
pub fn attach_prog(ns: &Ns, iface: &str, name: &'static str) -> Result<PassProg> {
    let iface = iface.to_string();
    ns.within(move || -> Result<PassProg> {
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(rport_common::maps::BINDINGS, 1)
            .load(rport_userspace::XDP_OBJECT)
            .context("loading the XDP object")?;
        let prog: &mut aya::programs::Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        prog.attach(&iface, aya::programs::XdpMode::Default)
            .with_context(|| format!("attaching {name} to {iface}"))?;
        Ok(PassProg { _ebpf: ebpf })
    })?
}
