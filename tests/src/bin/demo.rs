//! `cargo xtask demo`: a phone behind NAT registers through rport to a server that ignores
//! rport. Everything runs in network namespaces this program creates and removes.
use anyhow::{Result, bail};
use rport_tests::{
    ns::{Bpffs, can_run, sh},
    sip::{Kamailio, Server, register_scenario, sipp_client},
    topo::{GW_INSIDE, GW_OUTSIDE, NatTopology, PHONE, Rport},
};

const N: u32 = 5;

fn main() -> std::process::ExitCode {
    match demo() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<()> {
    if !can_run("demo", &["ip", "nft", "kamailio", "sipp"]) {
        bail!("the demo needs root and the tools `cargo xtask setup` installs");
    }
    println!("rport demo\n==========\n");
    println!(
        "  phone {PHONE} ─ NAT 203.0.113.1 (nftables masquerade random) ─ gateway ─ Kamailio 198.51.100.10"
    );
    println!(
        "  The phone's top Via says `192.168.1.50:5060;rport`. Kamailio runs with reply_to_via=1:"
    );
    println!("  it answers the Via's sent-by, a private address the gateway cannot reach.\n");
    let t = NatTopology::new()?;
    let k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir)?;

    println!("1. Without rport: {N} REGISTERs (SIPp)");
    let r = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )?;
    println!("   {} succeeded, {} timed out", r.successful, r.failed);
    if let Some(v) = k.seen_vias().last() {
        println!("   top Via as Kamailio received it:\n     Via: {v}");
    }

    println!(
        "\n2. With rport on the gateway (rport run --outside {GW_OUTSIDE} --inside {GW_INSIDE})"
    );
    let pins = Bpffs::new()?;
    let rport = Rport::start(
        &t.gw,
        GW_OUTSIDE,
        GW_INSIDE,
        &pins,
        &t.path("rport.log"),
        &[],
    )?;
    let seen = k.seen_vias().len();
    let r2 = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        N,
        10,
    )?;
    println!("   {} succeeded, {} timed out", r2.successful, r2.failed);
    if let Some(v) = k.seen_vias().get(seen) {
        println!("   top Via as Kamailio received it:\n     Via: {v}");
    }
    println!("\n3. rport stats\n");
    let stats = sh(t.gw.cmd(&rport.bin).arg("stats"))?;
    for l in stats.lines().filter(|l| !l.trim_end().ends_with(" 0")) {
        println!("   {l}");
    }
    println!("\n4. rport bindings\n");
    for l in sh(t.gw.cmd(&rport.bin).arg("bindings"))?.lines() {
        println!("   {l}");
    }
    drop(rport);
    drop(k);
    drop(t);
    println!("\nCleaned up: namespaces, XDP attachments and processes removed.");
    if r.successful != 0 || r2.successful != N as u64 {
        bail!("unexpected outcome: without rport {r:?}, with rport {r2:?}");
    }
    Ok(())
}
