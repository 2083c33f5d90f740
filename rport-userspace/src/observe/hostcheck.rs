//! `rport check`'s verdicts: what was found on the host and its interfaces
//! ([`datapath::probe`](crate::datapath::probe) finds it) judged into green, yellow and red
//! lines, each with a one-line fix. Pure: the facts in, the lines out (unit-tested on
//! made-up hosts).
use serde::Serialize;

/// A line's colour: `ok` (green), `warn` (yellow: rport runs, but look), `fail` (red: rport
/// cannot run, or cannot work, like this).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One verdict. `check` is a stable name (the JSON's, and the tests'), `interface` the
/// interface it is about (none for the host's).
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub check: &'static str,
    pub interface: Option<String>,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

/// An attempt whose outcome is a fact: it worked, it failed (the kernel's reason), or it
/// was not tried (why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "reason")]
pub enum Probe {
    Ok,
    Failed(String),
    Skipped(String),
}

/// An AF_XDP bind mode that worked on queue 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XskMode {
    /// Zero-copy (the driver supports it; rport itself binds in copy mode).
    Zerocopy,
    /// Copy mode only (veth, generic XDP, most virtual devices).
    Copy,
}

/// A SIP ALG (the kernel's conntrack SIP helper) present on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SipAlg {
    /// `nf_conntrack_sip`, `nf_nat_sip`.
    pub module: String,
    /// Built into the kernel (cannot be unloaded) rather than a loaded module.
    pub builtin: bool,
}

/// The host's facts.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// `uname -r`.
    pub kernel: String,
    /// /sys/kernel/btf/vmlinux exists.
    pub btf: bool,
    /// /sys/fs/bpf is a bpffs.
    pub bpffs: bool,
    pub euid: u32,
    /// Capabilities rport needs that the effective set lacks (`CAP_NET_ADMIN`, …).
    pub missing_caps: Vec<String>,
    /// rport's XDP program loaded and passed the verifier.
    pub program: Probe,
    /// net.ipv4.ip_forward.
    pub ip_forward: Option<bool>,
    /// net.ipv6.conf.all.forwarding.
    pub ipv6_forwarding: Option<bool>,
    pub sip_alg: Vec<SipAlg>,
    /// The gateway's rules on the forwarding path (what `--egress bypass` skips).
    pub forward_rules: crate::observe::fwdrules::ForwardRules,
    /// The check was asked about `--egress bypass`.
    pub egress_bypass: bool,
}

/// The program attached to an interface already.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attached {
    pub id: u32,
    /// Its name, if it is still listed.
    pub name: Option<String>,
    /// `native`, `skb`, `hw` or `multi`.
    pub mode: String,
}

/// One named interface's facts; `None`s where it does not exist.
#[derive(Clone, Debug, Serialize)]
pub struct Iface {
    pub name: String,
    /// `outside` or `inside`.
    pub role: &'static str,
    pub exists: bool,
    /// Administratively up.
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub rx_queues: Option<u32>,
    /// An XDP program attached before rport (an error text when it could not be asked).
    pub xdp_attached: Option<Attached>,
    /// A native (driver-mode) attach of rport's program, detached at once.
    pub native_xdp: Probe,
    /// AF_XDP bind on queue 0: the best mode that worked, or the error (JSON:
    /// `{"mode": "copy"}` or `{"error": "…"}`).
    #[serde(serialize_with = "xsk_json")]
    pub af_xdp: Result<XskMode, String>,
    /// Effective reverse-path filter: the larger of conf/all and conf/IF (0 off, 1 strict,
    /// 2 loose).
    pub rp_filter: Option<u32>,
    /// The link's kind (`ip -d link`: `veth`, `vlan`, …; none for a plain NIC).
    pub kind: Option<String>,
}

fn xsk_json<S: serde::Serializer>(r: &Result<XskMode, String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = s.serialize_map(Some(1))?;
    match r {
        Ok(mode) => m.serialize_entry("mode", mode)?,
        Err(e) => m.serialize_entry("error", e)?,
    }
    m.end()
}

/// The kernel rport needs: bpf_loop (5.17).
pub const MIN_KERNEL: (u32, u32) = (5, 17);
/// The largest MTU whose frames fit an AF_XDP frame (4096 bytes, 256 of XDP headroom,
/// 14 of Ethernet header): longer requests cannot reach the rewrite.
pub const MAX_MTU: u32 = 4096 - 256 - 14;

/// (major, minor) of a kernel release string.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut v = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    (v.next().unwrap_or(0), v.next().unwrap_or(0))
}

fn line(
    check: &'static str,
    iface: Option<&str>,
    status: Status,
    message: String,
    fix: Option<String>,
) -> Line {
    Line {
        check,
        interface: iface.map(str::to_string),
        status,
        message,
        fix,
    }
}

/// The host's lines.
pub fn judge_host(h: &Host) -> Vec<Line> {
    use Status::*;
    let mut out = Vec::new();
    let mut add =
        |c, s, m: String, f: Option<&str>| out.push(line(c, None, s, m, f.map(str::to_string)));
    if h.euid == 0 && h.missing_caps.is_empty() {
        add(
            "privileges",
            Ok,
            "running as root with CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW".into(),
            None,
        );
    } else {
        let what = if h.euid != 0 {
            format!("not root (euid {})", h.euid)
        } else {
            format!("root without {}", h.missing_caps.join(", "))
        };
        add(
            "privileges",
            Fail,
            format!("{what}: rport loads and attaches XDP programs"),
            Some("run as root (sudo rport …), with CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW"),
        );
    }
    let v = kernel_version(&h.kernel);
    if v >= MIN_KERNEL {
        add(
            "kernel",
            Ok,
            format!("kernel {} (5.17+ for bpf_loop)", h.kernel),
            None,
        );
    } else {
        add(
            "kernel",
            Fail,
            format!("kernel {} is older than 5.17 (bpf_loop)", h.kernel),
            Some("run rport on Linux 5.17 or later"),
        );
    }
    if h.btf {
        add(
            "btf",
            Ok,
            "kernel BTF at /sys/kernel/btf/vmlinux".into(),
            None,
        );
    } else {
        add(
            "btf",
            Warn,
            "no kernel BTF (/sys/kernel/btf/vmlinux): program checks rely on the verifier alone"
                .into(),
            Some("a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        );
    }
    if h.bpffs {
        add("bpffs", Ok, "/sys/fs/bpf is a bpffs".into(), None);
    } else {
        add("bpffs", Warn, "/sys/fs/bpf is not a bpffs: rport run mounts one (pinned state is lost at reboot anyway)".into(), Some("mount -t bpf bpf /sys/fs/bpf"));
    }
    match &h.program {
        Probe::Ok => add(
            "program",
            Ok,
            "the XDP program loads and passes the verifier".into(),
            None,
        ),
        Probe::Failed(e) => add(
            "program",
            Fail,
            format!("the XDP program does not load: {e}"),
            Some("a kernel with BPF and XDP (CONFIG_BPF_SYSCALL, CONFIG_XDP_SOCKETS), run as root"),
        ),
        Probe::Skipped(e) => add(
            "program",
            Fail,
            format!("the XDP program was not loaded: {e}"),
            Some("run as root"),
        ),
    }
    match h.ip_forward {
        Some(true) => add("ip_forward", Ok, "IPv4 forwarding is on".into(), None),
        None => add("ip_forward", Warn, "IPv4 forwarding: unknown (/proc/sys/net/ipv4/ip_forward unreadable)".into(), Some("sysctl net.ipv4.ip_forward (must be 1)")),
        Some(false) => add("ip_forward", Fail, "IPv4 forwarding is off: the gateway forwards nothing (rport's rewritten requests neither)".into(), Some("sysctl -w net.ipv4.ip_forward=1")),
    }
    match h.ipv6_forwarding {
        Some(true) => add("ipv6_forwarding", Ok, "IPv6 forwarding is on".into(), None),
        _ => add(
            "ipv6_forwarding",
            Warn,
            "IPv6 forwarding is off: IPv6 SIP is not forwarded".into(),
            Some("sysctl -w net.ipv6.conf.all.forwarding=1 (if clients use IPv6)"),
        ),
    }
    if h.sip_alg.is_empty() {
        add(
            "sip_alg",
            Ok,
            "no SIP ALG (nf_conntrack_sip) in the kernel".into(),
            None,
        );
    } else {
        let names: Vec<&str> = h.sip_alg.iter().map(|a| a.module.as_str()).collect();
        if h.sip_alg.iter().all(|a| a.builtin) {
            add(
                "sip_alg",
                Warn,
                format!(
                    "the kernel's SIP ALG ({}) is built in: it rewrites SIP too, on flows a `ct helper` rule assigns to it",
                    names.join(", ")
                ),
                Some(
                    "no nftables/iptables rule assigning the \"sip\" conntrack helper (nft list ruleset | grep -i helper)",
                ),
            );
        } else {
            add(
                "sip_alg",
                Warn,
                format!(
                    "a SIP ALG is loaded ({}): it rewrites SIP too, on flows a `ct helper` rule assigns to it",
                    names.join(", ")
                ),
                Some("modprobe -r nf_nat_sip nf_conntrack_sip"),
            );
        }
    }
    forward_rules(h, &mut add);
    out
}

/// The `forward_rules` line: which of the gateway's rules `--egress bypass` would skip.
/// With the default egress they all apply, so finding some is green; asked about bypass,
/// it is yellow (rport would forward what these rules may drop, or not NAT it).
fn forward_rules(h: &Host, add: &mut impl FnMut(&'static str, Status, String, Option<&str>)) {
    use Status::*;
    let skipped = h.forward_rules.skipped();
    let c = "forward_rules";
    match (&h.forward_rules.nft, skipped.is_empty(), h.egress_bypass) {
        (Err(e), true, _) => add(
            c,
            Warn,
            format!("the forwarding rules could not be read ({e}): whether --egress bypass would skip some is unknown"),
            Some("install nftables (nft) and run as root"),
        ),
        (_, true, _) => add(
            c,
            Ok,
            "no rules on the forwarding hooks: --egress bypass would skip none (it still skips conntrack and rp_filter)".into(),
            None,
        ),
        (_, false, false) => add(
            c,
            Ok,
            format!(
                "rules on the forwarding path, applied to rport's output by --egress kernel (the default); --egress bypass would skip them: {}",
                skipped.join("; ")
            ),
            None,
        ),
        (_, false, true) => add(
            c,
            Warn,
            format!(
                "--egress bypass skips the gateway's rules on the forwarding path: {}",
                skipped.join("; ")
            ),
            Some("run with --egress kernel (the default), or have none of these rules matter for SIP"),
        ),
    }
}

/// One interface's lines.
pub fn judge_iface(i: &Iface) -> Vec<Line> {
    use Status::*;
    let n = i.name.as_str();
    let mut out = Vec::new();
    let mut add = |c, s, m: String, f: Option<String>| out.push(line(c, Some(n), s, m, f));
    if !i.exists {
        add(
            "interface",
            Fail,
            format!(
                "{n} ({}): no such interface in this network namespace",
                i.role
            ),
            Some("ip -br link (name an interface listed there)".into()),
        );
        return out;
    }
    if i.up == Some(true) {
        add(
            "interface",
            Ok,
            format!("{n} ({}): exists and is up", i.role),
            None,
        );
    } else {
        add(
            "interface",
            Fail,
            format!("{n} ({}): is down", i.role),
            Some(format!("ip link set dev {n} up")),
        );
    }
    match i.mtu {
        Some(m) if m > MAX_MTU => add(
            "mtu",
            Warn,
            format!(
                "{n}: MTU {m}: frames over {MAX_MTU} bytes do not fit an AF_XDP frame and miss the rewrite"
            ),
            Some(format!("ip link set dev {n} mtu {MAX_MTU}")),
        ),
        Some(m) => add("mtu", Ok, format!("{n}: MTU {m}"), None),
        None => add("mtu", Warn, format!("{n}: MTU unknown"), None),
    }
    match i.rx_queues {
        Some(q) => add(
            "rx_queues",
            Ok,
            format!(
                "{n}: {q} rx queue{} (one AF_XDP socket and worker each)",
                if q == 1 { "" } else { "s" }
            ),
            None,
        ),
        None => add(
            "rx_queues",
            Warn,
            format!("{n}: rx queue count unknown (no /sys/class/net/{n}/queues)"),
            None,
        ),
    }
    match &i.xdp_attached {
        None => add(
            "xdp_attached",
            Ok,
            format!("{n}: no XDP program attached"),
            None,
        ),
        Some(a) => {
            let name = a.name.as_deref().unwrap_or("?");
            let off = match a.mode.as_str() {
                "native" => "xdpdrv",
                "skb" => "xdpgeneric",
                "hw" => "xdpoffload",
                _ => "xdp",
            };
            let (what, fix) = if name == rport_common::PROGRAM_NAME {
                (
                    "rport's own: is a daemon running? (rport stats)".to_string(),
                    "stop the running rport daemon".to_string(),
                )
            } else {
                (
                    "rport cannot attach beside it".to_string(),
                    format!("ip link set dev {n} {off} off (if nothing needs it)"),
                )
            };
            add(
                "xdp_attached",
                Fail,
                format!(
                    "{n}: XDP program id {} \"{name}\" ({} mode) already attached: {what}",
                    a.id, a.mode
                ),
                Some(fix),
            );
        }
    }
    match &i.native_xdp {
        Probe::Ok => add(
            "native_xdp",
            Ok,
            format!("{n}: native XDP works (attach tried and detached)"),
            None,
        ),
        Probe::Failed(e) => add(
            "native_xdp",
            Warn,
            format!(
                "{n}: no native XDP ({e}): --xdp-mode auto falls back to generic (skb) mode, slower"
            ),
            Some("--xdp-mode skb, or a NIC driver with XDP support".into()),
        ),
        Probe::Skipped(why) => add(
            "native_xdp",
            Warn,
            format!("{n}: native XDP not tried: {why}"),
            None,
        ),
    }
    match &i.af_xdp {
        Result::Ok(XskMode::Zerocopy) => add(
            "af_xdp",
            Ok,
            format!(
                "{n}: AF_XDP binds on queue 0, zero-copy supported (rport receives in copy mode; --egress bypass sends in zero-copy)"
            ),
            None,
        ),
        Result::Ok(XskMode::Copy) => add(
            "af_xdp",
            Ok,
            format!("{n}: AF_XDP binds on queue 0 in copy mode (no zero-copy here)"),
            None,
        ),
        Err(e) => add(
            "af_xdp",
            Fail,
            format!("{n}: AF_XDP does not bind on queue 0: {e}"),
            Some(
                "a kernel with CONFIG_XDP_SOCKETS; queue 0 not taken by another AF_XDP program"
                    .into(),
            ),
        ),
    }
    match i.rp_filter {
        Some(1) => add(
            "rp_filter",
            Warn,
            format!(
                "{n}: rp_filter strict (1): rport's re-injected requests are checked like any forwarded packet, so routes must be symmetric"
            ),
            Some(format!(
                "sysctl -w net.ipv4.conf.{n}.rp_filter=2 (loose), or keep strict with symmetric routes"
            )),
        ),
        Some(m) => add(
            "rp_filter",
            Ok,
            format!(
                "{n}: rp_filter {}",
                if m == 0 {
                    "off (0)".to_string()
                } else {
                    format!("loose ({m})")
                }
            ),
            None,
        ),
        None => add("rp_filter", Warn, format!("{n}: rp_filter unknown"), None),
    }
    out
}

/// `--egress bypass` on a veth: a frame XDP redirects into a veth is dropped unless the
/// veth's peer has an XDP program of its own (the kernel's veth_xdp_xmit), so rport's
/// redirected responses out of this interface reach nobody without one there.
fn bypass_veth(n: &str) -> Line {
    line(
        "bypass_veth",
        Some(n),
        Status::Warn,
        format!("{n}: a veth: --egress bypass redirects out of it only if its peer has an XDP program (else the kernel drops them)"),
        Some("attach an XDP program that passes everything to the peer (rport's rport_pass), or --egress kernel".into()),
    )
}

/// The whole report: the facts and their lines; `ok` is false when rport cannot run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub host: Host,
    pub interfaces: Vec<Iface>,
    pub checks: Vec<Line>,
}

impl Report {
    pub fn new(host: Host, interfaces: Vec<Iface>) -> Report {
        let mut checks = judge_host(&host);
        for i in &interfaces {
            checks.extend(judge_iface(i));
            if host.egress_bypass && i.kind.as_deref() == Some("veth") {
                checks.push(bypass_veth(&i.name));
            }
        }
        Report {
            ok: checks.iter().all(|l| l.status != Status::Fail),
            host,
            interfaces,
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            kernel: "6.1.0-18-amd64".into(),
            btf: true,
            bpffs: true,
            euid: 0,
            missing_caps: vec![],
            program: Probe::Ok,
            ip_forward: Some(true),
            ipv6_forwarding: Some(true),
            sip_alg: vec![],
            forward_rules: crate::observe::fwdrules::ForwardRules::none(),
            egress_bypass: false,
        }
    }

    fn iface() -> Iface {
        Iface {
            name: "eth0".into(),
            role: "outside",
            exists: true,
            up: Some(true),
            mtu: Some(1500),
            rx_queues: Some(4),
            xdp_attached: None,
            native_xdp: Probe::Ok,
            af_xdp: Ok(XskMode::Zerocopy),
            rp_filter: Some(0),
            kind: None,
        }
    }

    /// A forward chain that drops by default.
    fn forward_filter() -> crate::observe::fwdrules::ForwardRules {
        crate::observe::fwdrules::ForwardRules {
            nft: Ok(vec![crate::observe::fwdrules::HookChain {
                family: "inet".into(),
                table: "filter".into(),
                chain: "forward".into(),
                hook: "forward".into(),
                policy: Some("drop".into()),
                rules: 1,
            }]),
            legacy_tables: vec![],
        }
    }

    fn status(r: &Report, check: &str) -> Status {
        r.checks.iter().find(|l| l.check == check).unwrap().status
    }

    #[test]
    fn a_good_host_is_all_green() {
        let r = Report::new(host(), vec![iface()]);
        assert!(r.ok);
        assert!(
            r.checks.iter().all(|l| l.status == Status::Ok),
            "{:?}",
            r.checks
        );
    }

    #[test]
    fn each_fact_gets_its_colour() {
        type Edit = Box<dyn Fn(&mut Host, &mut Iface)>;
        let cases: Vec<(&str, Edit, Status)> = vec![
            ("privileges", Box::new(|h, _| h.euid = 1000), Status::Fail),
            (
                "privileges",
                Box::new(|h, _| h.missing_caps = vec!["CAP_BPF".into()]),
                Status::Fail,
            ),
            (
                "kernel",
                Box::new(|h, _| h.kernel = "5.15.0".into()),
                Status::Fail,
            ),
            ("btf", Box::new(|h, _| h.btf = false), Status::Warn),
            (
                "program",
                Box::new(|h, _| h.program = Probe::Failed("EPERM".into())),
                Status::Fail,
            ),
            (
                "ip_forward",
                Box::new(|h, _| h.ip_forward = Some(false)),
                Status::Fail,
            ),
            (
                "ipv6_forwarding",
                Box::new(|h, _| h.ipv6_forwarding = Some(false)),
                Status::Warn,
            ),
            (
                "sip_alg",
                Box::new(|h, _| {
                    h.sip_alg = vec![SipAlg {
                        module: "nf_conntrack_sip".into(),
                        builtin: false,
                    }]
                }),
                Status::Warn,
            ),
            (
                "forward_rules",
                Box::new(|h, _| h.forward_rules = forward_filter()),
                Status::Ok,
            ),
            (
                "forward_rules",
                Box::new(|h, _| {
                    h.forward_rules = forward_filter();
                    h.egress_bypass = true
                }),
                Status::Warn,
            ),
            (
                "forward_rules",
                Box::new(|h, _| h.egress_bypass = true),
                Status::Ok,
            ),
            (
                "forward_rules",
                Box::new(|h, _| h.forward_rules.nft = Err("nft: not found".into())),
                Status::Warn,
            ),
            (
                "interface",
                Box::new(|_, i| i.up = Some(false)),
                Status::Fail,
            ),
            ("mtu", Box::new(|_, i| i.mtu = Some(9000)), Status::Warn),
            (
                "xdp_attached",
                Box::new(|_, i| {
                    i.xdp_attached = Some(Attached {
                        id: 7,
                        name: Some("xdp_pass".into()),
                        mode: "native".into(),
                    })
                }),
                Status::Fail,
            ),
            (
                "native_xdp",
                Box::new(|_, i| i.native_xdp = Probe::Failed("EOPNOTSUPP".into())),
                Status::Warn,
            ),
            (
                "af_xdp",
                Box::new(|_, i| i.af_xdp = Err("EBUSY".into())),
                Status::Fail,
            ),
            (
                "af_xdp",
                Box::new(|_, i| i.af_xdp = Ok(XskMode::Copy)),
                Status::Ok,
            ),
            (
                "rp_filter",
                Box::new(|_, i| i.rp_filter = Some(1)),
                Status::Warn,
            ),
            (
                "rp_filter",
                Box::new(|_, i| i.rp_filter = Some(2)),
                Status::Ok,
            ),
        ];
        for (check, f, want) in cases {
            let (mut h, mut i) = (host(), iface());
            f(&mut h, &mut i);
            let r = Report::new(h, vec![i]);
            assert_eq!(status(&r, check), want, "{check}: {:?}", r.checks);
            assert_eq!(r.ok, want != Status::Fail, "{check}");
            // Every line that is not green says how to fix it (or why not tried).
            for l in r.checks.iter().filter(|l| l.status == Status::Fail) {
                assert!(l.fix.is_some(), "{l:?}");
            }
        }
    }

    #[test]
    fn bypass_on_a_veth_is_a_yellow_line() {
        let veth = Iface {
            kind: Some("veth".into()),
            ..iface()
        };
        let r = Report::new(host(), vec![veth.clone()]);
        assert!(r.checks.iter().all(|l| l.check != "bypass_veth"));
        let h = Host {
            egress_bypass: true,
            ..host()
        };
        let r = Report::new(h.clone(), vec![veth]);
        assert_eq!(status(&r, "bypass_veth"), Status::Warn);
        assert!(r.ok);
        let r = Report::new(h, vec![iface()]);
        assert!(r.checks.iter().all(|l| l.check != "bypass_veth"));
    }

    #[test]
    fn a_missing_interface_is_one_red_line() {
        let i = Iface {
            exists: false,
            ..iface()
        };
        let r = Report::new(host(), vec![i]);
        let lines: Vec<_> = r.checks.iter().filter(|l| l.interface.is_some()).collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].check, lines[0].status),
            ("interface", Status::Fail)
        );
        assert!(!r.ok);
    }

    #[test]
    fn json_field_names_are_stable() {
        let r = Report::new(
            host(),
            vec![Iface {
                native_xdp: Probe::Failed("x".into()),
                ..iface()
            }],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["interfaces"][0]["native_xdp"]["result"], "failed");
        assert_eq!(v["interfaces"][0]["af_xdp"]["mode"], "zerocopy");
        assert_eq!(v["checks"][0]["check"], "privileges");
        assert_eq!(v["checks"][0]["status"], "ok");
        assert!(v["checks"][0]["fix"].is_null());
    }
}
