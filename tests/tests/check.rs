//! `rport check --outside … --inside …`: a namespace whose interfaces fail each check (one
//! missing, one down, one with another XDP program attached, one without native XDP, a
//! 1280 MTU, rp_filter strict, IPv4 forwarding off), then the test topology's gateway, all
//! green. Each asserts the line, the JSON field and the exit status.
use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    process::Output,
};

use anyhow::{Result, bail};
use rport_tests::{
    ns::{Ns, can_run, rport_bin, sh},
    topo::{GW_INSIDE, GW_OUTSIDE, NatTopology},
};
use serde_json::Value;

/// A trivial XDP program (`return XDP_PASS`) loaded with the bpf syscall and attached to
/// `ifname` of `ns` through a bpf_link: attached while the returned fd lives (a panic
/// closes it too). Returns the fd and the program's id.
fn attach_pass_program(ns: &Ns, ifname: &str) -> Result<(OwnedFd, u32)> {
    let ifname = ifname.to_string();
    ns.within(move || -> Result<(OwnedFd, u32)> {
        // mov64 r0, XDP_PASS (2); exit
        let insns: [u8; 16] = [0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        let license = c"GPL";
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&6u32.to_ne_bytes()); // BPF_PROG_TYPE_XDP
        attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        attr[48..48 + 9].copy_from_slice(b"rpck_pass");
        attr[68..72].copy_from_slice(&37u32.to_ne_bytes()); // expected BPF_XDP
        // SAFETY: BPF_PROG_LOAD with a bpf_attr of ours pointing at live buffers.
        let prog = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
        if prog < 0 {
            bail!("BPF_PROG_LOAD: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a new fd of ours.
        let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
        let index = rport_userspace::datapath::loader::ifindex(&ifname)?;
        let mut link = [0u8; 64];
        link[0..4].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(&prog) as u32).to_ne_bytes());
        link[4..8].copy_from_slice(&index.to_ne_bytes());
        link[8..12].copy_from_slice(&37u32.to_ne_bytes()); // BPF_XDP
        // SAFETY: BPF_LINK_CREATE with a bpf_attr of ours.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 28, link.as_ptr(), link.len()) };
        if fd < 0 {
            bail!("BPF_LINK_CREATE: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a new fd of ours; the link holds the program.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // The program's id: BPF_OBJ_GET_INFO_BY_FD (bpf_prog_info.id is its second u32).
        let mut info = [0u8; 256];
        let mut a = [0u8; 16];
        a[0..4].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(&prog) as u32).to_ne_bytes());
        a[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        a[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
        // SAFETY: BPF_OBJ_GET_INFO_BY_FD into our buffer of the size we declare.
        if unsafe { libc::syscall(libc::SYS_bpf, 15, a.as_ptr(), a.len()) } < 0 {
            bail!(
                "BPF_OBJ_GET_INFO_BY_FD: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok((fd, u32::from_ne_bytes(info[4..8].try_into().unwrap())))
    })?
}

fn check(ns: &Ns, args: &str) -> Output {
    ns.cmd(rport_bin().unwrap())
        .arg("check")
        .args(args.split_whitespace())
        .output()
        .unwrap()
}

/// The JSON verdict of `check` about `iface` (None: the host's).
fn verdict<'a>(j: &'a Value, check: &str, iface: Option<&str>) -> &'a Value {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["check"] == check && l["interface"].as_str() == iface)
        .unwrap_or_else(|| panic!("no {check} verdict for {iface:?} in {j}"))
}

fn iface<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap()
}

#[test]
fn each_failing_interface_and_setting_gets_its_line() {
    if !can_run("each_failing_interface_and_setting_gets_its_line", &["ip"]) {
        return;
    }
    let ns = Ns::new("rpchk").unwrap();
    let veth = |a: &str, b: &str| {
        ns.ip(&[
            "link",
            "add",
            a,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            b,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
        ])
        .unwrap();
    };
    veth("ck-a", "ck-b");
    veth("ck-d", "ck-e");
    for i in ["ck-a", "ck-b", "ck-e"] {
        ns.ip(&["link", "set", i, "up"]).unwrap();
    }
    ns.ip(&["link", "set", "ck-a", "mtu", "1280"]).unwrap();
    // A bridge: no native XDP.
    ns.ip(&["link", "add", "ck-br", "type", "bridge"]).unwrap();
    ns.ip(&["link", "set", "ck-br", "up"]).unwrap();
    sh(ns
        .cmd("sysctl")
        .args(["-qw", "net.ipv4.conf.ck-a.rp_filter=1"]))
    .unwrap();
    sh(ns.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=0"])).unwrap();
    let (link, prog_id) = attach_pass_program(&ns, "ck-b").unwrap();

    let args = "--outside ck-a nope0 ck-d ck-br --inside ck-b";
    let o = check(&ns, args);
    let text = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{text}{err}");
    assert!(err.contains("rport cannot run like this"), "{err}");
    let has = |l: &str| {
        assert!(
            text.lines()
                .any(|x| x.starts_with(l.split('|').next().unwrap())
                    && l.split('|').skip(1).all(|p| x.contains(p))),
            "no line {l:?} in\n{text}"
        )
    };
    has("FAIL IPv4 forwarding is off|fix: sysctl -w net.ipv4.ip_forward=1");
    has("FAIL nope0 (outside): no such interface");
    has("FAIL ck-d (outside): is down|fix: ip link set dev ck-d up");
    has("ok   ck-a: MTU 1280");
    has("warn ck-a: rp_filter strict (1)|net.ipv4.conf.ck-a.rp_filter=2");
    has("ok   ck-a: native XDP works");
    has("ok   ck-a: AF_XDP binds on queue 0 in copy mode");
    has(
        "warn ck-br: no native XDP|--xdp-mode auto falls back to generic (skb) mode|fix: --xdp-mode skb",
    );
    has(&format!(
        "FAIL ck-b: XDP program id {prog_id} \"rpck_pass\" (native mode) already attached|fix: ip link set dev ck-b xdpdrv off"
    ));
    // Nothing of the check's own stays attached (the other program is still there).
    let links = ns.ip(&["-d", "link", "show"]).unwrap();
    assert_eq!(links.matches("prog/xdp").count(), 1, "{links}");

    let o = check(&ns, &format!("{args} --json"));
    assert_eq!(o.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["host"]["ip_forward"], false);
    assert_eq!(verdict(&j, "ip_forward", None)["status"], "fail");
    assert_eq!(verdict(&j, "interface", Some("nope0"))["status"], "fail");
    assert_eq!(iface(&j, "nope0")["exists"], false);
    assert_eq!(verdict(&j, "interface", Some("ck-d"))["status"], "fail");
    assert_eq!(iface(&j, "ck-d")["up"], false);
    assert_eq!(iface(&j, "ck-a")["mtu"], 1280);
    assert_eq!(iface(&j, "ck-a")["rx_queues"], 1);
    assert_eq!(iface(&j, "ck-a")["rp_filter"], 1);
    assert_eq!(verdict(&j, "rp_filter", Some("ck-a"))["status"], "warn");
    assert_eq!(iface(&j, "ck-a")["af_xdp"]["mode"], "copy");
    assert_eq!(iface(&j, "ck-a")["native_xdp"]["result"], "ok");
    assert_eq!(iface(&j, "ck-br")["native_xdp"]["result"], "failed");
    assert_eq!(verdict(&j, "native_xdp", Some("ck-br"))["status"], "warn");
    assert_eq!(iface(&j, "ck-b")["xdp_attached"]["id"], prog_id);
    assert_eq!(iface(&j, "ck-b")["xdp_attached"]["name"], "rpck_pass");
    assert_eq!(iface(&j, "ck-b")["xdp_attached"]["mode"], "native");
    assert_eq!(verdict(&j, "xdp_attached", Some("ck-b"))["status"], "fail");
    assert_eq!(iface(&j, "ck-b")["role"], "inside");

    // The SIP ALG: here if the kernel has it (built in or loaded); loading it for the test
    // would change the host for every other test, so the row only runs where it is.
    let sip = std::path::Path::new("/sys/module/nf_conntrack_sip").exists();
    if sip {
        has("warn the kernel's SIP ALG (nf_conntrack_sip)");
        assert_eq!(verdict(&j, "sip_alg", None)["status"], "warn");
        assert_eq!(j["host"]["sip_alg"][0]["module"], "nf_conntrack_sip");
    } else {
        eprintln!(
            "SKIP the SIP ALG row: nf_conntrack_sip is not in this kernel (and the test does not modprobe a host-wide module)"
        );
        assert_eq!(verdict(&j, "sip_alg", None)["status"], "ok");
    }

    // Each fix turns its line green: the other program gone, the interface up, forwarding
    // on, rp_filter loose.
    drop(link);
    ns.ip(&["link", "set", "ck-d", "up"]).unwrap();
    sh(ns.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"])).unwrap();
    sh(ns
        .cmd("sysctl")
        .args(["-qw", "net.ipv4.conf.ck-a.rp_filter=2"]))
    .unwrap();
    let o = check(&ns, "--outside ck-a ck-d ck-br --inside ck-b --json");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    for (c, i) in [
        ("ip_forward", None),
        ("interface", Some("ck-d")),
        ("xdp_attached", Some("ck-b")),
        ("native_xdp", Some("ck-b")),
        ("rp_filter", Some("ck-a")),
    ] {
        assert_eq!(verdict(&j, c, i)["status"], "ok", "{c} {i:?}: {j}");
    }
    assert_eq!(o.status.code(), Some(0), "{j}");
    assert_eq!(j["ok"], true);
    assert!(!ns.ip(&["-o", "link"]).unwrap().contains("xdp"));
}

#[test]
fn the_test_topology_is_green() {
    if !can_run("the_test_topology_is_green", &["ip", "nft", "sysctl"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let o = check(
        &t.gw,
        &format!("--outside {GW_OUTSIDE} --inside {GW_INSIDE}"),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}");
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    for l in [
        "ok   IPv4 forwarding is on",
        "ok   the XDP program loads",
        "ok   gw-out (outside): exists and is up",
        "ok   gw-in (inside): exists and is up",
        "ok   gw-out: native XDP works",
        "ok   gw-in: AF_XDP binds on queue 0 in copy mode",
    ] {
        assert!(
            text.lines().any(|x| x.starts_with(l)),
            "no {l:?} in\n{text}"
        );
    }
    let o = check(
        &t.gw,
        &format!("--outside {GW_OUTSIDE} --inside {GW_INSIDE} --json"),
    );
    assert_eq!(o.status.code(), Some(0));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ok"], true);
    assert_eq!(iface(&j, GW_OUTSIDE)["af_xdp"]["mode"], "copy");
    assert!(iface(&j, GW_INSIDE)["xdp_attached"].is_null());
    assert!(!t.gw.ip(&["-o", "link"]).unwrap().contains("xdp"));
}

/// The `forward_rules` line: a gateway with a forward filter and a masquerade lists both;
/// green with the default egress (the kernel applies them to rport's output), yellow when
/// asked about `--egress bypass` (which skips them); an empty ruleset skips nothing.
#[test]
fn forward_rules_that_bypass_would_skip() {
    if !can_run("forward_rules_that_bypass_would_skip", &["ip", "nft"]) {
        return;
    }
    let ns = Ns::new("rpckf").unwrap();
    let rules = "table inet filter { chain forward { type filter hook forward priority 0; policy drop; udp dport 5060 accept; ct state established accept; }; }\n\
                 table ip nat { chain postrouting { type nat hook postrouting priority 100; masquerade; }; }\n\
                 table inet local { chain input { type filter hook input priority 0; tcp dport 22 accept; }; }\n";
    let mut c = ns.cmd("nft");
    c.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let line = |args: &str| -> (Value, Value) {
        let o = check(&ns, &format!("{args} --json"));
        let j: Value = serde_json::from_slice(&o.stdout).unwrap();
        (verdict(&j, "forward_rules", None).clone(), j)
    };
    let (l, j) = line("");
    assert_eq!(l["status"], "ok", "{l}");
    let m = l["message"].as_str().unwrap();
    assert!(
        m.contains("inet filter forward (policy drop, 2 rules)")
            && m.contains("ip nat postrouting (policy accept, 1 rule)")
            && !m.contains("input"),
        "{m}"
    );
    let chains = &j["host"]["forward_rules"]["nft"]["chains"];
    assert_eq!(chains.as_array().unwrap().len(), 2, "{chains}");
    assert_eq!(j["host"]["egress_bypass"], false);

    let (l, j) = line("--egress bypass");
    assert_eq!(l["status"], "warn", "{l}");
    assert!(
        l["message"]
            .as_str()
            .unwrap()
            .contains("--egress bypass skips"),
        "{l}"
    );
    assert!(
        l["fix"].as_str().unwrap().contains("--egress kernel"),
        "{l}"
    );
    assert_eq!(j["host"]["egress_bypass"], true);
    // Text output: the same line, yellow.
    let o = check(&ns, "--egress bypass");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines()
            .any(|x| x.starts_with("warn --egress bypass skips the gateway's rules")),
        "{text}"
    );

    // A veth under bypass: its peer needs an XDP program (yellow), only when asked.
    ns.ip(&[
        "link", "add", "ckf-a", "type", "veth", "peer", "name", "ckf-b",
    ])
    .unwrap();
    let o = check(&ns, "--inside ckf-a --egress bypass --json");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(iface(&j, "ckf-a")["kind"], "veth");
    assert_eq!(verdict(&j, "bypass_veth", Some("ckf-a"))["status"], "warn");
    let o = check(&ns, "--inside ckf-a --json");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["check"] == "bypass_veth"),
        "{j}"
    );

    sh(ns.cmd("nft").args(["flush", "ruleset"])).unwrap();
    let (l, _) = line("--egress bypass");
    assert_eq!(l["status"], "ok", "{l}");
    assert!(
        l["message"].as_str().unwrap().contains("would skip none"),
        "{l}"
    );
}
