//! `cargo xtask demo`: a phone behind NAT registers through rport to a PBX that ignores
//! NAT, and a call to the phone rings. Everything runs in network namespaces this program
//! creates and removes.
use anyhow::{Result, bail};
use rport_tests::{
    ns::{Bpffs, can_run, sh},
    sip::{Kamailio, Server, incoming_calls_via, register_user_scenario, sipp_client},
    topo::{GW_INSIDE, GW_OUTSIDE, NatTopology, PHONE, Rport},
};

const N: u32 = 3;

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
        "  phone {PHONE} ─ NAT 203.0.113.1 (nftables masquerade random) ─ gateway ─ Kamailio PBX 198.51.100.10"
    );
    println!(
        "  The phone's top Via says `192.168.1.50:5060;rport`, its Contact `sip:phone@192.168.1.50:5060`."
    );
    println!(
        "  The PBX (registrar, tm, rr, reply_to_via=1, no nathelper) answers the Via's sent-by and"
    );
    println!(
        "  calls the Contact: private addresses the gateway cannot reach. A caller on the PBX's"
    );
    println!("  side (SIPp, 198.51.100.10:5070) calls the phone, which answers (SIPp).\n");
    let t = NatTopology::new()?;
    let k = Kamailio::start(&t.server, "198.51.100.10", Server::Pbx, &t.dir)?;
    let register = |user: &str| {
        sipp_client(
            &t.phone,
            &register_user_scenario(user, "sip:phone@192.168.1.50:5060"),
            &t.dir,
            PHONE,
            5060,
            "198.51.100.10:5060",
            1,
            10,
        )
    };

    println!("1. Without rport: the phone registers (SIPp), then {N} calls to it");
    let r = register("alice")?;
    println!(
        "   REGISTER: {} answered, {} timed out",
        r.successful, r.failed
    );
    if let Some(v) = k.seen_vias().last() {
        println!("   top Via as Kamailio received it:\n     Via: {v}");
    }
    let (c, _) = incoming_calls_via(&t.phone, &t.server, &t.dir, "alice", N)?;
    println!(
        "   calls: {} rang, {} failed (the PBX sends the INVITE to the private Contact)",
        c.successful, c.failed
    );

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
    let r2 = register("bob")?;
    println!(
        "   REGISTER: {} answered, {} timed out",
        r2.successful, r2.failed
    );
    if let Some(v) = k.seen_vias().get(seen) {
        println!("   top Via as Kamailio received it:\n     Via: {v}");
    }
    let (c2, p2) = incoming_calls_via(&t.phone, &t.server, &t.dir, "bob", N)?;
    println!(
        "   calls: {} rang and completed (INVITE, 180, 200, ACK, BYE, 200), {} failed; the phone answered {}",
        c2.successful,
        c2.failed,
        p2.map_or(0, |p| p.successful)
    );
    if let Some(to) = k.targets("bob").last() {
        println!("   the Contact the PBX stored and called:\n     {to}");
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
    if r.successful != 0 || c.successful != 0 || r2.successful != 1 || c2.successful != N as u64 {
        bail!(
            "unexpected outcome: without rport REGISTER {r:?} calls {c:?}, with rport REGISTER {r2:?} calls {c2:?}"
        );
    }
    Ok(())
}
