//! The host runner's datapath: the fixture table through `rport_ebpf::model` (the XDP
//! program's own parser, scanner, decision and steer rewrite over plain maps), no kernel
//! and no root. The kernel runner (BPF_PROG_TEST_RUN) checks the same rows, so the two
//! agree on every row's verdict, output bytes, counters and binding; the one place they
//! differ by construction is a steered response, which the kernel program hands to TC
//! and the model steers in XDP (see [`crate::fixtures::Out::HandedToTc`]).
use anyhow::Result;
use rport_common::{Binding, Counter, IfaceConf, MAX_QUEUES, role};
use rport_ebpf::{
    decide::Ingress,
    model::{self, HostMaps},
};

use crate::fixtures::{Datapath, Prior};

/// Ifindexes the host runner gives its two interfaces (any distinct numbers: the model
/// reads roles and XSKMAP slots from its `ifaces`, as the program reads `IFACES`).
const OUTSIDE: u32 = 11;
const INSIDE: u32 = 12;

/// The model with the fixture bed's two interfaces: outside at XSKMAP slot 0, inside at
/// slot 1, as `xdp::with_bed` declares them.
pub struct Host {
    maps: HostMaps,
    /// Counters so far, in `Counter::ALL` order.
    counters: Vec<u64>,
    /// XSKMAP indexes with a daemon socket (`Prior::sockets`, on the outside slot).
    sockets: Vec<u32>,
    /// The boot clock the model is given: starts at 1 and ticks per frame, so a binding's
    /// timestamps are set and ordered as the kernel's are.
    now_ns: u64,
}

impl Default for Host {
    fn default() -> Self {
        let mut maps = HostMaps::default();
        maps.ifaces.insert(
            OUTSIDE,
            IfaceConf {
                slot: 0,
                role: role::OUTSIDE,
            },
        );
        maps.ifaces.insert(
            INSIDE,
            IfaceConf {
                slot: 1,
                role: role::INSIDE,
            },
        );
        Host {
            maps,
            counters: vec![0; Counter::ALL.len()],
            sockets: Vec::new(),
            now_ns: 0,
        }
    }
}

impl Datapath for Host {
    fn reset(&mut self, prior: &Prior) -> Result<()> {
        self.maps.bindings.clear();
        // IPv4 networks in the 16-byte map encoding are IPv4-mapped: 96 bits more.
        self.maps.force_rport = prior
            .force_rport
            .iter()
            .map(|(net, len)| {
                let bits = if net.is_ipv4() { 96 } else { 0 } + *len as u32;
                (rport_common::addr_to_16(*net), bits)
            })
            .collect();
        self.sockets = prior.sockets.clone();
        self.maps.tag_keys = prior.tag_keys.unwrap_or_default();
        Ok(())
    }

    fn run(&mut self, frame: &[u8], role: u32, rx_queue: u32) -> Result<(u32, Vec<u8>)> {
        let ifindex = if role == role::INSIDE {
            INSIDE
        } else {
            OUTSIDE
        };
        // The model has one switch for every XSKMAP entry: set it to whether this frame's
        // entry (slot * MAX_QUEUES + rx queue) holds a socket, as the kernel's lookup would.
        let slot = self.maps.ifaces[&ifindex].slot;
        self.maps.xsk_bound =
            slot == 0 && rx_queue < MAX_QUEUES && self.sockets.contains(&rx_queue);
        self.maps.tai_now_s = rport_userspace::datapath::keys::tai_now_s();
        self.now_ns += 1;
        let mut out = frame.to_vec();
        let r = model::run_at(
            &mut out,
            Ingress { ifindex, rx_queue },
            &mut self.maps,
            self.now_ns,
        );
        for c in r.counters.iter() {
            self.counters[c as usize] += 1;
        }
        Ok((r.verdict, out))
    }

    fn counters(&mut self) -> Result<Vec<u64>> {
        Ok(self.counters.clone())
    }

    fn bindings(&mut self) -> Result<Vec<(u64, Binding)>> {
        Ok(self.maps.bindings.iter().map(|(k, b)| (*k, *b)).collect())
    }

    fn steers_in_xdp(&self) -> bool {
        true
    }
}
