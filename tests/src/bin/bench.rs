//! `cargo xtask bench [all|xdp] [--quick]`: figures printed as a Markdown table and written
//! as JSON under target/bench/. Nothing here asserts a speed: the machines are shared.
//!
//! xdp: ns/packet of the XDP program through BPF_PROG_TEST_RUN (the kernel's own mean over
//! `repeat` runs), for the packets that matter, side by side in one run.
use anyhow::{Result, bail};
use rport_common::role;
use rport_tests::{packets::*, xdp::*};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let what = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    match what {
        "all" | "xdp" => xdp(quick),
        other => bail!("unknown benchmark {other:?} (all, xdp)"),
    }
}

fn xdp(quick: bool) -> Result<()> {
    if !can_load_bpf("bench xdp") {
        return Ok(());
    }
    let _ns = aya::test_helpers::NetNsGuard::new()?;
    let mut h = XdpHarness::load()?;
    let repeat = if quick { 20_000 } else { 1_000_000 };
    let via = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-bench;rport";
    let register = udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via));
    let far = udp4(
        NAT_V4,
        NAT_PORT,
        SERVER_V4,
        5060,
        &rport_tests::packets::register(&format!("X-Pad: {}\r\n{via}", "p".repeat(1060))),
    );
    let resp_via =
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-bench;received=203.0.113.1;rport=32415";
    let resp_ok = udp4(SERVER_V4, 5060, NAT_V4, NAT_PORT, &ok_response(resp_via));
    let resp_legacy = udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp_via));
    let dns = udp4(
        NAT_V4,
        40000,
        SERVER_V4,
        53,
        &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    );
    h.set_role(role::OUTSIDE)?;
    h.run(&register)?; // the binding the responses find
    let mut rows = Vec::new();
    for (name, frame, r) in [
        (
            "REGISTER, Via first (;rport, private sent-by)",
            &register,
            role::OUTSIDE,
        ),
        ("REGISTER, Via 1,100 bytes in", &far, role::OUTSIDE),
        (
            "200 OK to the NAT mapping (already correct)",
            &resp_ok,
            role::INSIDE,
        ),
        (
            "200 OK to the private sent-by (steered)",
            &resp_legacy,
            role::INSIDE,
        ),
        ("non-SIP UDP (DNS)", &dns, role::OUTSIDE),
    ] {
        h.set_role(r)?;
        // Best of three runs: the figure least disturbed by the other tenants.
        let ns = (0..3)
            .map(|_| h.run_repeat(frame, repeat).map(|x| x.duration_ns))
            .collect::<Result<Vec<_>>>()?;
        rows.push((name, frame.len(), *ns.iter().min().unwrap()));
    }
    println!("\n### XDP program, BPF_PROG_TEST_RUN ({repeat} runs each, best of 3)\n");
    println!("| packet | bytes | ns/packet |\n|---|---:|---:|");
    for (n, len, ns) in &rows {
        println!("| {n} | {len} | {ns} |");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "repeat": repeat,
        "rows": rows.iter().map(|(n, l, ns)| serde_json::json!({"packet": n, "bytes": l, "ns_per_packet": ns})).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("xdp.json"), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}
