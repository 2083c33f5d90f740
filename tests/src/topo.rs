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

/// An attacker on the outside ([`NatTopology::attacker`]), and the gateway's interface
/// toward it.
pub const ATTACKER: &str = "203.0.113.66";
pub const GW_ATTACKER_IF: &str = "gw-atk";

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

/// The home router's NAT in `ns`: source addresses and ports rewritten on `nat-out`,
/// ports randomised, as a home router or CGNAT does (so a phone's 5060 becomes some other
/// public port). `rules`: where the nftables file is written.
pub fn masquerade(ns: &Ns, rules: &Path) -> Result<()> {
    std::fs::write(
        rules,
        "table ip rportnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"nat-out\" masquerade random\n }\n}\n",
    )?;
    sh(ns.cmd("nft").arg("-f").arg(rules)).map(|_| ())
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
        masquerade(&t.nat, &t.dir.join("nat.nft"))?;
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

    /// An attacker on the gateway's outside, in a namespace of its own: [`ATTACKER`] on
    /// `atk0`, wired to the gateway's [`GW_ATTACKER_IF`] (give it to rport as a second
    /// `--outside`). Host routes both ways (the address is inside the outside segment's
    /// /24, so the gateway needs the more specific route to reach it on its own link).
    pub fn attacker(&self) -> Result<Ns> {
        let a = Ns::new("rpatk")?;
        veth(&a, "atk0", &self.gw, GW_ATTACKER_IF)?;
        a.ip(&["addr", "add", &format!("{ATTACKER}/32"), "dev", "atk0"])?;
        a.ip(&["route", "add", "203.0.113.65/32", "dev", "atk0"])?;
        a.ip(&[
            "route",
            "add",
            "default",
            "via",
            "203.0.113.65",
            "dev",
            "atk0",
        ])?;
        self.gw
            .ip(&["addr", "add", "203.0.113.65/32", "dev", GW_ATTACKER_IF])?;
        self.gw.ip(&[
            "route",
            "add",
            &format!("{ATTACKER}/32"),
            "dev",
            GW_ATTACKER_IF,
        ])?;
        Ok(a)
    }

    /// Flushes the NAT's connection tracking: the next packet gets a new public port, as
    /// when a home router reboots or forgets an idle mapping.
    pub fn forget_nat_mappings(&self) -> Result<()> {
        sh(self.nat.cmd("conntrack").arg("-F")).map(|_| ())
    }
}

/// A second home behind its own NAT, on a second outside interface of the gateway, with
/// the same private addresses as the first (many home LANs are alike):
///
/// ```text
/// phone 192.168.1.50 ── NAT 192.168.1.1 | 192.0.2.1 ── 192.0.2.2 gw-out2 (gateway of NatTopology)
/// ```
pub struct SecondHome {
    pub phone: Ns,
    pub nat: Ns,
}

/// The gateway's second outside interface ([`SecondHome`]).
pub const GW_OUTSIDE2: &str = "gw-out2";

impl NatTopology {
    /// Adds a [`SecondHome`] on [`GW_OUTSIDE2`] (run rport with `--outside gw-out2` too).
    pub fn second_home(&self) -> Result<SecondHome> {
        let h = SecondHome {
            phone: Ns::new("rpph2")?,
            nat: Ns::new("rpnat2")?,
        };
        wire(&h.phone, "ph0", PHONE, &h.nat, "nat-in", "192.168.1.1")?;
        wire(
            &h.nat,
            "nat-out",
            "192.0.2.1",
            &self.gw,
            GW_OUTSIDE2,
            "192.0.2.2",
        )?;
        forwarding(&h.nat)?;
        masquerade(&h.nat, &self.dir.join("nat2.nft"))?;
        Ok(h)
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
        Rport::start_with(gw, outside, inside, pins, log, extra, None, &[])
    }

    /// [`Rport::start`] with another build of rport (`bin`; None: this one) and extra
    /// environment for it (the bench's A/B variants).
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        gw: &Ns,
        outside: &str,
        inside: &str,
        pins: &Bpffs,
        log: &Path,
        extra: &[&str],
        bin: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Rport> {
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => rport_bin()?,
        };
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
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)));
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

    /// `rport bindings --clients --json`: the clients a server can reach through their
    /// Contact tag.
    pub fn clients(&self) -> Result<serde_json::Value> {
        let out = sh(std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name])
            .arg(&self.bin)
            .args(["bindings", "--clients", "--json"]))?;
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

impl Rport {
    /// SIGKILL, as a crash or an OOM kill: no clean detach, no chance to save anything.
    /// The kernel drops the attachments with the process's link fds; the pins stay.
    pub fn kill(&mut self) -> Result<()> {
        let mut c = self
            .proc
            .child
            .take()
            .ok_or_else(|| anyhow::anyhow!("rport already stopped"))?;
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// Where the BINDINGS map is pinned.
    pub fn bindings_pin(&self) -> PathBuf {
        self.pins.join(rport_common::maps::BINDINGS)
    }
}

/// Writes a steering tag key file as `rport run --tag-key` reads it: 32 lowercase hex
/// digits (16 random bytes) and a newline, mode 0600 (readable by root only).
pub fn write_tag_key(path: &Path) -> Result<()> {
    use std::{io::Read as _, io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{hex}")?;
    Ok(())
}

/// Two gateways in front of one server, each on both segments (bridges), so that a request
/// can go in through one and its answer come back through the other:
///
/// ```text
///                                                  ┌─ 203.0.113.2 gw1 198.51.100.1 ─┐
/// phone 192.168.1.50 ── NAT 192.168.1.1 | 203.0.113.1 (bridge)                     (bridge) server 198.51.100.10
///                                                  └─ 203.0.113.3 gw2 198.51.100.2 ─┘
/// ```
///
/// The NAT sends everything through gw1 (its default route); the server's default route
/// is gw1 too, but 192.168.1.0/24 (the phones' private sent-bys, where a legacy server
/// answers) goes through gw2: gw2 sees answers to requests it never saw. Neither gateway
/// routes 192.168.1.0/24 itself. The bridges keep the names of [`NatTopology`]'s
/// interfaces (`nat-out` for the NAT rule and captures, `srv0`).
pub struct TwoGatewayTopology {
    pub phone: Ns,
    pub nat: Ns,
    pub gw1: Ns,
    pub gw2: Ns,
    pub server: Ns,
    pub dir: PathBuf,
}

pub const GW1_INSIDE_ADDR: &str = "198.51.100.1";
pub const GW2_INSIDE_ADDR: &str = "198.51.100.2";

impl TwoGatewayTopology {
    pub fn new() -> Result<TwoGatewayTopology> {
        let dir = std::env::temp_dir().join(unique("rport-topo2-"));
        std::fs::create_dir_all(&dir)?;
        let t = TwoGatewayTopology {
            phone: Ns::new("rp2ph")?,
            nat: Ns::new("rp2nat")?,
            gw1: Ns::new("rp2g1")?,
            gw2: Ns::new("rp2g2")?,
            server: Ns::new("rp2srv")?,
            dir,
        };
        veth(&t.phone, "ph0", &t.nat, "nat-in")?;
        // Outside segment: a bridge in the NAT's namespace, one port per gateway.
        t.nat
            .ip(&["link", "add", "nat-out", "type", "bridge", "stp_state", "0"])?;
        veth(&t.nat, "nat-g1", &t.gw1, GW_OUTSIDE)?;
        veth(&t.nat, "nat-g2", &t.gw2, GW_OUTSIDE)?;
        // Inside segment: a bridge in the server's namespace.
        t.server
            .ip(&["link", "add", "srv0", "type", "bridge", "stp_state", "0"])?;
        veth(&t.gw1, GW_INSIDE, &t.server, "srv-g1")?;
        veth(&t.gw2, GW_INSIDE, &t.server, "srv-g2")?;
        for (ns, bridge, ports) in [
            (&t.nat, "nat-out", ["nat-g1", "nat-g2"]),
            (&t.server, "srv0", ["srv-g1", "srv-g2"]),
        ] {
            for p in ports {
                ns.ip(&["link", "set", p, "master", bridge])?;
            }
            ns.ip(&["link", "set", bridge, "up"])?;
        }
        t.phone
            .ip(&["addr", "add", "192.168.1.50/24", "dev", "ph0"])?;
        t.phone
            .ip(&["route", "add", "default", "via", "192.168.1.1"])?;
        t.nat
            .ip(&["addr", "add", "192.168.1.1/24", "dev", "nat-in"])?;
        t.nat
            .ip(&["addr", "add", "203.0.113.1/24", "dev", "nat-out"])?;
        t.nat
            .ip(&["route", "add", "default", "via", "203.0.113.2"])?;
        for (gw, out, inside) in [
            (&t.gw1, "203.0.113.2/24", "198.51.100.1/24"),
            (&t.gw2, "203.0.113.3/24", "198.51.100.2/24"),
        ] {
            gw.ip(&["addr", "add", out, "dev", GW_OUTSIDE])?;
            gw.ip(&["addr", "add", inside, "dev", GW_INSIDE])?;
        }
        t.server
            .ip(&["addr", "add", "198.51.100.10/24", "dev", "srv0"])?;
        t.server
            .ip(&["route", "add", "default", "via", GW1_INSIDE_ADDR])?;
        t.server
            .ip(&["route", "add", "192.168.1.0/24", "via", GW2_INSIDE_ADDR])?;
        for ns in [&t.nat, &t.gw1, &t.gw2] {
            sh(ns.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
        }
        masquerade(&t.nat, &t.dir.join("nat.nft"))?;
        Ok(t)
    }

    /// A file in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TwoGatewayTopology {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl NatTopology {
    /// Makes the NAT keep an idle UDP mapping `secs` seconds, as home routers commonly do
    /// (2 minutes and more). Linux's own default for a flow whose packets all went within
    /// its first 2 s (an INVITE and its 100 and 180) is 30 s (nf_conntrack_udp_timeout),
    /// shorter than a phone that rings longer: its answer would be lost at the NAT,
    /// whatever the gateway did.
    pub fn keep_udp_mappings(&self, secs: u32) -> Result<()> {
        for k in ["udp_timeout", "udp_timeout_stream"] {
            sh(self
                .nat
                .cmd("sysctl")
                .arg("-qw")
                .arg(format!("net.netfilter.nf_conntrack_{k}={secs}")))?;
        }
        Ok(())
    }
}

impl Rport {
    /// Every live binding (`rport bindings --json` with no limit), newest first.
    pub fn all_bindings(&self) -> Result<serde_json::Value> {
        let out = sh(std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns_name])
            .arg(&self.bin)
            .args(["bindings", "--json", "--limit", &u32::MAX.to_string()]))?;
        Ok(serde_json::from_str(&out)?)
    }
}
