//! Bad invocations: a non-zero exit and one clear line on stderr, never a usage block, a
//! backtrace or a panic; and nothing attached or left behind (they run in a namespace of
//! their own, which is gone afterwards).
use std::{
    io::Write as _,
    os::fd::{FromRawFd as _, OwnedFd},
    process::{Command, Stdio},
};

use rport_tests::{
    ns::{Bpffs, Ns, can_run, rport_bin},
    packets::{NAT_PORT, NAT_V4, SERVER_V4, register, udp4},
    topo::NatTopology,
};

#[test]
fn bad_flags_and_config_give_one_clear_line() {
    if !can_run("bad_flags_and_config_give_one_clear_line", &["ip"]) {
        return;
    }
    let rport = rport_bin().unwrap();
    let ns = Ns::new("rpcli").unwrap();
    // (arguments, split at spaces; exit code; what the line must say)
    let table: &[(&str, i32, &str)] = &[
        ("frobnicate", 2, "unrecognized subcommand 'frobnicate'"),
        (
            "run --outside lo",
            2,
            "required arguments were not provided: --inside",
        ),
        (
            "run --outside lo --inside lo",
            1,
            "interface lo given twice",
        ),
        (
            "run --outside nope0 --inside lo",
            1,
            "no interface named \"nope0\"",
        ),
        (
            "run --outside lo --inside x --sip-port 0",
            1,
            "--sip-port must be 1..65535",
        ),
        (
            "run --outside lo --inside x --sip-port 70000",
            2,
            "invalid value '70000' for '--sip-port <N>'",
        ),
        (
            "run --outside lo --inside x --xdp-mode bogus",
            2,
            "[possible values: auto, native, skb]",
        ),
        (
            "run --outside lo --inside x --force-rport 10.0.0.0/33",
            1,
            "prefix length 33 too long",
        ),
        (
            "run --outside lo --inside x --force-rport not-a-net",
            1,
            "\"not-a-net\" is not an address or CIDR",
        ),
        (
            "run --outside lo --inside x --xdp-log loud",
            2,
            "invalid value 'loud' for '--xdp-log",
        ),
        (
            "run --outside lo --inside x --max-bindings 0",
            2,
            "invalid value '0' for '--max-bindings <N>': --max-bindings must be 1..=16777216, not 0",
        ),
        (
            "run --outside lo --inside x --max-bindings 16777217",
            2,
            "--max-bindings must be 1..=16777216, not 16777217",
        ),
        (
            "run --outside lo --inside x --max-bindings lots",
            2,
            "invalid value 'lots' for '--max-bindings <N>': expected a number 1..=16777216",
        ),
        (
            "stats --watch 0",
            1,
            "--watch needs a period of at least 1 second",
        ),
        ("stats", 1, "no rport daemon is running"),
        ("bindings --limit x", 2, "invalid value 'x' for '--limit"),
        (
            "rewrite --source nonsense",
            2,
            "invalid value 'nonsense' for '--source",
        ),
        ("replay /nonexistent.pcap", 1, "/nonexistent.pcap"),
        (
            "run --outside lo --inside x --metrics 9464x",
            2,
            "expected PORT or ADDR:PORT (e.g. 9464, 0.0.0.0:9464), not \"9464x\"",
        ),
        (
            "--log-format yaml stats",
            2,
            "invalid value 'yaml' for '--log-format <LOG_FORMAT>'",
        ),
        (
            "stats --log-level loud",
            2,
            "invalid value 'loud' for '--log-level <LEVEL>'",
        ),
        // A global flag after the subcommand; still the one line, nothing logged with it.
        ("stats --log-level trace", 1, "no rport daemon is running"),
    ];
    let mut failures = Vec::new();
    for (args, code, says) in table {
        let o = ns
            .cmd(&rport)
            .args(args.split_whitespace())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let ok = o.status.code() == Some(*code)
            && err.lines().count() == 1
            && err.contains(says)
            && !err.contains("panicked");
        if !ok {
            failures.push(format!(
                "{args:?}: exit {:?}, stderr {err:?}",
                o.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // `rport` alone shows the help and fails as a usage error.
    let o = ns.cmd(&rport).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage: rport [OPTIONS] <COMMAND>"));
    // Nothing was attached in the namespace.
    assert!(!ns.ip(&["-o", "link"]).unwrap().contains("xdp"));
}

/// `rport run --config FILE --check-config`: the file and the flags checked together, one
/// line and exit 0 when valid, the key and line of a bad one otherwise; nothing loaded.
#[test]
fn check_config_validates_file_and_flags() {
    if !can_run("check_config_validates_file_and_flags", &["ip"]) {
        return;
    }
    let rport = rport_bin().unwrap();
    let ns = Ns::new("rpcfg").unwrap();
    let dir = std::env::temp_dir().join(rport_tests::ns::unique("rport-cfg-"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(dir.clone());
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = file(
        "good.toml",
        "outside = [\"eth0\"]\ninside = [\"eth1\"]\nsip-port = [5060, 5080]\nxdp-mode = \"skb\"\n",
    );
    let typo = file("typo.toml", "outside = [\"eth0\"]\nsip-prot = 5060\n");
    let bad = file(
        "bad.toml",
        "outside = [\"eth0\"]\ninside = [\"eth1\"]\n\nxdp-mode = \"fast\"\n",
    );
    let zero = file(
        "zero.toml",
        "outside = [\"eth0\"]\ninside = [\"eth1\"]\nsip_port = [0]\n",
    );
    let twice = file("twice.toml", "outside = [\"eth0\"]\ninside = [\"eth0\"]\n");
    // (arguments; exit code; what stdout or stderr must say)
    let table: Vec<(String, i32, String)> = vec![
        (
            format!("run --config {good} --check-config"),
            0,
            format!("the configuration is valid (file {good} and the command line)"),
        ),
        (
            format!("run --config {typo} --inside x --check-config"),
            2,
            format!("{typo} line 2: unknown key `sip-prot`"),
        ),
        (
            format!("run --config {bad} --check-config"),
            2,
            format!(
                "{bad} line 4: key `xdp-mode`: invalid value 'fast' for '--xdp-mode <XDP_MODE>'"
            ),
        ),
        // A value only `run` itself rejects, then the command line's value overriding it.
        (
            format!("run --config {zero} --check-config"),
            1,
            "--sip-port must be 1..65535".into(),
        ),
        (
            format!("run --config {zero} --sip-port 5060 --check-config"),
            0,
            "the configuration is valid".into(),
        ),
        (
            format!("run --config {twice} --check-config"),
            1,
            "interface eth0 given twice".into(),
        ),
        (
            format!("run --config {twice} --inside eth1 --check-config"),
            0,
            "the configuration is valid".into(),
        ),
        (
            "run --config /nonexistent/rport.toml --check-config".into(),
            2,
            "reading the config file /nonexistent/rport.toml".into(),
        ),
        (
            "run --outside a --inside b --check-config".into(),
            0,
            "the configuration is valid (the command line; no config file)".into(),
        ),
    ];
    let mut failures = Vec::new();
    for (args, code, says) in &table {
        let o = ns
            .cmd(&rport)
            .args(args.split_whitespace())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(if *code == 0 { &o.stdout } else { &o.stderr });
        let ok = o.status.code() == Some(*code)
            && out.lines().count() == 1
            && out.contains(says.as_str())
            && !out.contains("panicked");
        if !ok {
            failures.push(format!(
                "{args:?}: exit {:?}, stdout {:?}, stderr {:?}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // --check-config loaded and attached nothing.
    assert!(!ns.ip(&["-o", "link"]).unwrap().contains("xdp"));
}

/// A pipe whose reader is already gone: the write end, as a child's stdout.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are open descriptors of ours, each wrapped once.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    Stdio::from(w)
}

/// A pcap file of one Ethernet frame.
fn one_frame_pcap(frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&[
        2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ]);
    for x in [0, 0, frame.len() as u32, frame.len() as u32] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(frame);
    v
}

/// `rport stats --json | head -c1`, made certain: every printing subcommand with its
/// stdout's reader already gone ends quietly (exit 0, nothing on stderr, no panic); and
/// `rport stats` as nobody says "permission denied" in one line.
#[test]
fn a_closed_stdout_ends_quietly_and_non_root_gets_one_line() {
    if !can_run(
        "a_closed_stdout_ends_quietly_and_non_root_gets_one_line",
        &["ip", "nft", "setpriv"],
    ) {
        return;
    }
    let rport = rport_bin().unwrap();
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    let r = t.rport(&pins, &[]).unwrap();
    let pcap = t.path("one.pcap");
    let via = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-pipe;rport";
    std::fs::write(
        &pcap,
        one_frame_pcap(&udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via))),
    )
    .unwrap();
    let pcap = pcap.to_str().unwrap();
    let replay = format!("replay {pcap}");
    let replay_json = format!("replay --json {pcap}");
    let rows: &[&str] = &[
        "stats",
        "stats --json",
        "stats --nat",
        "bindings",
        "bindings --json",
        "bindings --clients",
        "check",
        "rewrite --source 203.0.113.1:32415",
        &replay,
        &replay_json,
    ];
    let mut failures = Vec::new();
    for args in rows {
        let mut c = t.gw.cmd(&rport);
        c.args(args.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(closed_pipe())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        // The rewrite reads a message; the others get an empty stdin.
        let mut stdin = child.stdin.take().unwrap();
        if args.starts_with("rewrite") {
            stdin.write_all(&register(via)).unwrap();
        }
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(0) || !err.is_empty() {
            failures.push(format!(
                "{args:?} to a closed pipe: exit {:?}, stderr {err:?}",
                o.status.code()
            ));
        }
    }
    // Not root: the socket's directory is root's only. With DAC override (a user that
    // can reach the socket anyway), the daemon's own refusal. One line each.
    let nobody = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];
    let dac = [
        "--inh-caps",
        "+dac_override,+dac_read_search",
        "--ambient-caps",
        "+dac_override,+dac_read_search",
    ];
    for (extra, says) in [
        (
            &[][..],
            "permission denied (the control socket is root's only",
        ),
        (&dac[..], "rport: daemon: permission denied"),
    ] {
        let o = Command::new("ip")
            .args(["netns", "exec", &t.gw.name, "setpriv"])
            .args(nobody)
            .args(extra)
            .arg(&rport)
            .arg("stats")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(1)
            || err.lines().count() != 1
            || !err.starts_with("rport: ")
            || !err.contains(says)
        {
            failures.push(format!(
                "non-root stats {extra:?}: exit {:?}, stderr {err:?}",
                o.status.code()
            ));
        }
    }
    drop(r);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
