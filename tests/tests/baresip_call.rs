//! A real phone (issue 11): Debian's baresip, not SIPp, is the phone behind the NAT. It
//! registers through rport to the PBX that ignores NAT ([`Server::Pbx`]), answers the calls
//! a SIPp caller on the servers' side places to it (auto-answer), and takes the caller's
//! BYE: the INVITE, ACK and BYE the PBX sends to the Contact baresip registered reach it
//! only because rport tagged that Contact and the XDP program steers them by the tag.
//! Without rport, and with rport leaving Contacts alone (`--contact off`, where baresip
//! shows "registered"), the same call never reaches baresip.
//!
//! baresip runs headless: its own config directory, no UI module, no sound card (the
//! `aubridge` module is both player and source, in memory), PCMU only, IP addresses only
//! (no DNS query leaves the phone's namespace: its DNS server is its own address). No RTP
//! flows back to it (the caller's SDP names a port nobody listens on) and no RTP timeout is
//! set, so the call lasts until the caller hangs up.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use rport_tests::{
    ns::{Bpffs, Ns, Proc, can_run},
    sip::{Kamailio, Server, Sipp, SippResult, caller_scenario},
    topo::{NatTopology, PHONE, SERVER},
};

/// Debian's module directory for baresip.
const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

fn tools() -> bool {
    if !can_run(
        "baresip_call",
        &["ip", "nft", "kamailio", "sipp", "baresip", "stdbuf"],
    ) {
        return false;
    }
    for m in ["account.so", "g711.so", "aubridge.so", "menu.so"] {
        if !Path::new(BARESIP_MODULES).join(m).is_file() {
            eprintln!("SKIP baresip_call: no {BARESIP_MODULES}/{m} (Debian's baresip-core has it)");
            return false;
        }
    }
    true
}

/// baresip as the phone: AOR `user` at the PBX, listening on 192.168.1.50:5060, answering
/// every call at once. Stopped on Drop (the process guard).
struct Baresip {
    _proc: Proc,
    log: PathBuf,
}

impl Baresip {
    fn start(ns: &Ns, dir: &Path, user: &str) -> Result<Baresip> {
        let conf = dir.join(format!("baresip-{user}"));
        std::fs::create_dir_all(&conf)?;
        // Only what a headless phone needs: the account loader, PCMU, an in-memory audio
        // device, the menu (its commands are where 1.0 handles answermode=auto).
        std::fs::write(
            conf.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen {PHONE}:5060\n\
                 net_interface ph0\n\
                 dns_server {PHONE}:53\n\
                 call_local_timeout 120\n\
                 call_max_calls 4\n\
                 audio_player aubridge,phone\n\
                 audio_source aubridge,phone\n\
                 audio_alert aubridge,alert\n\
                 rtp_ports 10000-10100\n\
                 rtp_timeout 0\n\
                 module_path {BARESIP_MODULES}\n\
                 module g711.so\n\
                 module aubridge.so\n\
                 module_tmp account.so\n\
                 module_app menu.so\n"
            ),
        )?;
        std::fs::write(
            conf.join("accounts"),
            format!(
                "<sip:{user}@{SERVER};transport=udp>;regint=300;answermode=auto;audio_codecs=PCMU;mwi=no;pubint=0\n"
            ),
        )?;
        let log = dir.join(format!("baresip-{user}.log"));
        // stdout line-buffered: the test reads the log while baresip runs. -s: SIP trace.
        let mut c = ns.cmd("stdbuf");
        c.args(["-oL", "-eL", "baresip", "-s", "-f"]).arg(&conf);
        let proc = Proc::spawn(c, "baresip", &log)?;
        Ok(Baresip { _proc: proc, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for `pat` in the log.
    fn wait_for(&self, pat: &str, limit: Duration) -> bool {
        self.wait_count(pat, 1, limit) >= 1
    }

    /// Waits up to `limit` for `n` occurrences of `pat` in the log (baresip prints its
    /// events a moment after the message that caused them); returns how many there are.
    fn wait_count(&self, pat: &str, n: usize, limit: Duration) -> usize {
        let t = Instant::now();
        loop {
            let got = self.log().matches(pat).count();
            if got >= n || t.elapsed() > limit {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `n` calls from the servers' side (`198.51.100.10:5070`) to AOR `user` through the PBX.
fn call(t: &NatTopology, user: &str, n: u32) -> Result<SippResult> {
    let mut caller = Sipp::uac(
        &t.server,
        &caller_scenario(user, 300),
        &t.dir,
        SERVER,
        5070,
        "198.51.100.10:5060",
        n,
        Duration::from_secs(20),
        &[],
    )?;
    caller.wait(Duration::from_secs(30))
}

/// Waits until the PBX got `n` REGISTERs (its `REQ` log lines; the Request-URI names the
/// registrar only).
fn registers_seen(k: &Kamailio, n: usize, limit: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&k.log).unwrap_or_default();
        let seen = text.lines().filter(|l| l.contains("REQ REGISTER")).count();
        if seen >= n {
            return Ok(());
        }
        if t.elapsed() > limit {
            bail!("the PBX saw {seen} REGISTER:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rport_log(t: &NatTopology) -> String {
    std::fs::read_to_string(t.path("rport.log")).unwrap_or_default()
}

#[test]
fn baresip_behind_nat_answers_calls_through_a_pbx_that_ignores_nat() {
    if !tools() {
        return;
    }
    const N: u32 = 3;
    let t = NatTopology::new().unwrap();
    let k = Kamailio::start(&t.server, SERVER, Server::Pbx, &t.dir).unwrap();

    // Without rport: the PBX stores the private Contact baresip wrote, and the call to it
    // is lost at the gateway (no route to 192.168.1.0/24): baresip never sees an INVITE.
    {
        let bob = Baresip::start(&t.phone, &t.dir, "bob").unwrap();
        registers_seen(&k, 1, Duration::from_secs(10)).unwrap();
        let c = call(&t, "bob", 1).unwrap();
        assert_eq!((c.successful, c.failed), (0, 1), "call without rport");
        assert!(
            !bob.log().contains("INVITE sip:"),
            "baresip got an INVITE without rport:\n{}",
            bob.log()
        );
    }

    let pins = Bpffs::new().unwrap();
    // rport steering responses only (Contacts left alone): baresip shows "registered",
    // and still no call reaches it. The state issue 11 was filed in.
    {
        let rport = t.rport(&pins, &["--contact", "off"]).unwrap();
        let carol = Baresip::start(&t.phone, &t.dir, "carol").unwrap();
        assert!(
            carol.wait_for("[1 binding]", Duration::from_secs(10)),
            "baresip did not register through rport --contact off:\n{}",
            carol.log()
        );
        let c = call(&t, "carol", 1).unwrap();
        assert_eq!((c.successful, c.failed), (0, 1), "call, Contact not tagged");
        assert!(!carol.log().contains("INVITE sip:"), "{}", carol.log());
        assert_eq!(rport.counter("xdp", "request_steered").unwrap(), 0);
    }

    let rport = t.rport(&pins, &[]).unwrap();
    let alice = Baresip::start(&t.phone, &t.dir, "alice").unwrap();
    assert!(
        alice.wait_for("[1 binding]", Duration::from_secs(10)),
        "baresip did not register through rport:\n{}\nrport log:\n{}",
        alice.log(),
        rport_log(&t)
    );
    assert!(rport.counter("daemon", "contacts_aliased").unwrap() >= 1);

    let c = call(&t, "alice", N).unwrap();
    let diag = format!(
        "caller {c:?}\nbaresip:\n{}\nrport stats: {}\nrport log:\n{}\nPBX:\n{}",
        alice.log(),
        rport.stats().map(|s| s.to_string()).unwrap_or_default(),
        rport_log(&t),
        std::fs::read_to_string(&k.log).unwrap_or_default()
    );
    // Each call: INVITE, 200 (baresip answered), ACK, BYE and baresip's 200 to it.
    assert_eq!((c.successful, c.failed), (N as u64, 0), "calls: {diag}");
    // What the PBX called: the private Contact baresip registered, with rport's tag.
    let targets = k.targets("alice");
    assert_eq!(targets.len(), N as usize, "{diag}");
    for to in &targets {
        assert!(
            to.contains("@192.168.1.50:5060") && to.contains(";rptag="),
            "the PBX called {to}: {diag}"
        );
    }
    // baresip took the INVITE, the ACK and the BYE of each call (its SIP trace; it sends
    // none of these itself), and says so: established on the ACK, session closed by the
    // BYE.
    let log = alice.log();
    for method in ["INVITE", "ACK", "BYE"] {
        let got = log.matches(&format!("{method} sip:alice")).count();
        assert!(got >= N as usize, "{method} seen {got} times: {diag}");
    }
    for event in [
        "Call established: sip:caller@",
        "sip:caller@198.51.100.10: session closed",
    ] {
        let got = alice.wait_count(event, N as usize, Duration::from_secs(2));
        assert_eq!(got, N as usize, "{event:?} {got} times: {diag}");
    }
    let steered = rport.counter("xdp", "request_steered").unwrap();
    assert!(steered >= 3 * N as u64, "request_steered {steered}: {diag}");
    assert_eq!(rport.counter("xdp", "request_tag_invalid").unwrap(), 0);
    assert_eq!(rport.counter("xdp", "steer_failed").unwrap(), 0);
}
