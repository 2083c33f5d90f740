//! The deployment of the product in network namespaces:
//!
//! ```text
//! phone 192.168.1.50 ── NAT (nftables masquerade random) 203.0.113.1 ── 203.0.113.2 gateway 198.51.100.1 ── server 198.51.100.10
//!                        inside 192.168.1.1                              (rport on both sides)
//! ```
//!
//! The gateway has no route to 192.168.1.0/24: a server answering the phone's private
//! sent-by is lost there, unless rport steers the answer to the NAT mapping.
//! Everything is removed on Drop (namespaces take their veths and nftables rules along).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::ns::{Bpffs, Ns, Proc, rport_bin, sh, unique, veth};

pub const PHONE: &str = "192.168.1.50";
pub const NAT_PUBLIC: &str = "203.0.113.1";
pub const SERVER: &str = "198.51.100.10";

/// Gateway interfaces.
pub const GW_OUTSIDE: &str = "gw-out";
pub const GW_INSIDE: &str = "gw-in";

/// The gateway's address on the servers' side.
pub const GW_INSIDE_ADDR: &str = "198.51.100.1";

/// One link of a topology: a veth from `host` (`host_if`, `host_addr`) to the router it
/// sits behind (`router_if`, `router_addr`), both addressed on one subnet (/24 for IPv4,
/// /64 for IPv6, usable at once: no duplicate address detection wait), and the host's
/// default route through the router.
pub fn wire(
    host: &Ns,
    host_if: &str,
    host_addr: &str,
    router: &Ns,
    router_if: &str,
    router_addr: &str,
) -> Result<()> {
    veth(host, host_if, router, router_if)?;
    let v6 = host_addr.contains(':');
    let (family, prefix) = if v6 { ("-6", 64) } else { ("-4", 24) };
    for (ns, dev, a) in [(host, host_if, host_addr), (router, router_if, router_addr)] {
        let a = format!("{a}/{prefix}");
        let mut args = vec![family, "addr", "add", &a, "dev", dev];
        if v6 {
            args.push("nodad");
        }
        ns.ip(&args)?;
    }
    host.ip(&[family, "route", "add", "default", "via", router_addr])?;
    Ok(())
}

/// The servers' side of a gateway, the same in every IPv4 bed:
/// gateway GW_INSIDE 198.51.100.1 ── server 198.51.100.10 (`srv0`).
pub fn server_leg(gw: &Ns, server: &Ns) -> Result<()> {
    wire(server, "srv0", SERVER, gw, GW_INSIDE, GW_INSIDE_ADDR)
}

/// IPv4 forwarding on (a router's namespace).
pub fn forwarding(ns: &Ns) -> Result<()> {
    sh(ns.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"])).map(|_| ())
}

pub struct NatTopology {
    pub phone: Ns,
    pub nat: Ns,
    pub gw: Ns,
    pub server: Ns,
    /// Scratch directory (configs, logs), removed on Drop.
    pub dir: PathBuf,
}

impl NatTopology {
    pub fn new() -> Result<NatTopology> {
        let dir = std::env::temp_dir().join(unique("rport-topo-"));
        std::fs::create_dir_all(&dir)?;
        let t = NatTopology {
            phone: Ns::new("rpph")?,
            nat: Ns::new("rpnat")?,
            gw: Ns::new("rpgw")?,
            server: Ns::new("rpsrv")?,
            dir,
        };
        wire(&t.phone, "ph0", PHONE, &t.nat, "nat-in", "192.168.1.1")?;
        wire(
            &t.nat,
            "nat-out",
            NAT_PUBLIC,
            &t.gw,
            GW_OUTSIDE,
            "203.0.113.2",
        )?;
        server_leg(&t.gw, &t.server)?;
        forwarding(&t.nat)?;
        forwarding(&t.gw)?;
        // The NAT: source addresses and ports rewritten, ports randomised, as a home router
        // or CGNAT does (so the phone's 5060 becomes some other public port).
        let rules = t.dir.join("nat.nft");
        std::fs::write(
            &rules,
            "table ip rportnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"nat-out\" masquerade random\n }\n}\n",
        )?;
        sh(t.nat.cmd("nft").arg("-f").arg(&rules))?;
        Ok(t)
    }

    /// A file in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `rport run` on the gateway (both interfaces), logging to `rport.log` here.
    pub fn rport(&self, pins: &Bpffs, extra: &[&str]) -> Result<Rport> {
        Rport::start(
            &self.gw,
            GW_OUTSIDE,
            GW_INSIDE,
            pins,
            &self.path("rport.log"),
            extra,
        )
    }

    /// Flushes the NAT's connection tracking: the next packet gets a new public port, as
    /// when a home router reboots or forgets an idle mapping.
    pub fn forget_nat_mappings(&self) -> Result<()> {
        sh(self.nat.cmd("conntrack").arg("-F")).map(|_| ())
    }
}

impl Drop for NatTopology {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The IPv6 case (no NAT: the sent-by simply is not the source):
/// client 2001:db8:1::50 ── 2001:db8:1::1 gateway 2001:db8:2::1 ── server 2001:db8:2::10.
/// IPv6 documentation prefix (RFC 3849), inside namespaces of ours only.
pub struct V6Topology {
    pub client: Ns,
    pub gw: Ns,
    pub server: Ns,
    pub dir: PathBuf,
}

impl V6Topology {
    pub fn new() -> Result<V6Topology> {
        let dir = std::env::temp_dir().join(unique("rport-topo6-"));
        std::fs::create_dir_all(&dir)?;
        let t = V6Topology {
            client: Ns::new("rp6c")?,
            gw: Ns::new("rp6g")?,
            server: Ns::new("rp6s")?,
            dir,
        };
        wire(
            &t.client,
            "c0",
            "2001:db8:1::50",
            &t.gw,
            GW_OUTSIDE,
            "2001:db8:1::1",
        )?;
        wire(
            &t.server,
            "s0",
            "2001:db8:2::10",
            &t.gw,
            GW_INSIDE,
            "2001:db8:2::1",
        )?;
        sh(t.gw
            .cmd("sysctl")
            .args(["-qw", "net.ipv6.conf.all.forwarding=1"]))?;
        Ok(t)
    }
}

impl Drop for V6Topology {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `rport run` on a gateway namespace, stopped (and so detached) on Drop.
pub struct Rport {
    pub proc: Proc,
    pub bin: PathBuf,
    pub ns_name: String,
    pub log: PathBuf,
    /// Pin directory on a bpffs of ours, so pinned maps outlive a restart.
    pub pins: PathBuf,
}

impl Rport {
    /// Starts rport on `gw` and waits until it answers `rport stats`.
    pub fn start(
        gw: &Ns,
        outside: &str,
        inside: &str,
        pins: &Bpffs,
        log: &Path,
        extra: &[&str],
    ) -> Result<Rport> {
        let bin = rport_bin()?;
        let pin_dir = pins.dir.join("rport");
        let mut c = gw.cmd(&bin);
        c.args([
            "run",
            "--outside",
            outside,
            "--inside",
            inside,
            "--pin-path",
        ])
        .arg(&pin_dir)
        .args(extra);
        let proc = Proc::spawn(c, "rport run", log)?;
        let r = Rport {
            proc,
            bin,
            ns_name: gw.name.clone(),
            log: log.to_path_buf(),
            pins: pin_dir,
        };
        let t = Instant::now();
        while r.stats().is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!(
                    "rport run did not come up: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(r)
    }

    /// `rport stats --json`, through a separate `ip netns exec`.
    pub fn stats(&self) -> Result<serde_json::Value> {
        let out = sh(std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name])
            .arg(&self.bin)
            .args(["stats", "--json"]))?;
        Ok(serde_json::from_str(&out)?)
    }

    /// `rport bindings --json`.
    pub fn bindings(&self) -> Result<serde_json::Value> {
        let out = sh(std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name])
            .arg(&self.bin)
            .args(["bindings", "--json"]))?;
        Ok(serde_json::from_str(&out)?)
    }

    /// One counter, `group` "xdp" or "daemon".
    pub fn counter(&self, group: &str, name: &str) -> Result<u64> {
        let v = self.stats()?;
        v[group][name]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no counter {group}.{name}"))
    }
}
