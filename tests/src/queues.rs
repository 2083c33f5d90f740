//! A multi-queue veth link, with the sender's flows spread over its queues: the bed of
//! `bench queues` and `tests/tests/workers.rs`.
//!
//! veth delivers a frame on the peer's rx queue numbered as the sender's tx queue, and the
//! sender's queue is the flow hash's choice unless XPS says otherwise: here tx queue i is
//! the queue of CPU i (mod the CPUs online; `xps_cpus`), and the generator pins flow i's
//! sender to CPU i (`load::generate_flows`), so two flows arrive one on each of two
//! queues. (Not a tc `skbedit queue_mapping`: kernels built without act_skbedit exist.)
use anyhow::{Result, ensure};

use crate::ns::{Ns, sh};

/// Client `client_if` 203.0.113.50/24 (default route via the gateway) ── `gw_if`
/// 203.0.113.1/24, `queues` rx and tx queues each side, and the client's tx queue i
/// taken by CPU i (XPS).
pub fn wire(client: &Ns, client_if: &str, gw: &Ns, gw_if: &str, queues: u32) -> Result<()> {
    ensure!((1..=64).contains(&queues), "{queues} queues: 1 to 64");
    let q = queues.to_string();
    sh(std::process::Command::new("ip").args([
        "link",
        "add",
        client_if,
        "netns",
        &client.name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        gw_if,
        "netns",
        &gw.name,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ]))?;
    client.ip(&["link", "set", client_if, "up"])?;
    gw.ip(&["link", "set", gw_if, "up"])?;
    client.ip(&["addr", "add", "203.0.113.50/24", "dev", client_if])?;
    gw.ip(&["addr", "add", "203.0.113.1/24", "dev", gw_if])?;
    client.ip(&["route", "add", "default", "via", "203.0.113.1"])?;
    let cpus = crate::load::online_cpus();
    for i in 0..queues {
        let mask = format!("{:x}", 1u64 << (i as usize % cpus));
        let path = format!("/sys/class/net/{client_if}/queues/tx-{i}/xps_cpus");
        // /sys of the client's namespace: `ip netns exec` mounts it.
        sh(client
            .cmd("sh")
            .args(["-c", &format!("echo {mask} > {path}")]))?;
    }
    Ok(())
}

/// Frames the XDP program ran on, per rx queue of `dev` (veth's `rx_queue_N_xdp_packets`
/// of `ethtool -S`; counted while an XDP program is attached).
pub fn xdp_packets(ns: &Ns, dev: &str) -> Result<Vec<u64>> {
    let out = sh(ns.cmd("ethtool").args(["-S", dev]))?;
    Ok(parse_xdp_packets(&out))
}

fn parse_xdp_packets(ethtool: &str) -> Vec<u64> {
    ethtool
        .lines()
        .filter_map(|l| {
            let (_, n) = l
                .trim()
                .strip_prefix("rx_queue_")?
                .split_once("_xdp_packets: ")?;
            n.trim().parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn per_queue_counters() {
        let s = "NIC statistics:\n     peer_ifindex: 2\n     rx_queue_0_xdp_packets: 7\n     rx_queue_0_xdp_bytes: 700\n     rx_queue_1_xdp_packets: 9\n     tx_queue_0_xdp_xmit: 0\n";
        assert_eq!(super::parse_xdp_packets(s), vec![7, 9]);
    }
}
