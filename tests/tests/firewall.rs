//! rport never forwards what the gateway itself would drop (issue 12).
//!
//! The gateway's forward chain drops everything from outside but SIP from the phone's NAT
//! (203.0.113.1) and established traffic, and reverse-path filtering is on (rp_filter=1).
//! An attacker on its own outside interface (203.0.113.66) sends requests with `;rport`,
//! and requests forged from an inside address (198.51.100.66) from that same outside
//! interface. Without rport the gateway stops both; with rport it must too: the daemon
//! hands each rewritten request back to the kernel on the interface it arrived on, where
//! the forward chain and rp_filter decide as for any forwarded packet. The phone's requests
//! still reach the server rewritten (`received`, `rport`) and its answers reach the phone.
//!
//! Each case counts what reaches the server (a UDP socket there, every datagram with its
//! source) out of N. Before this change the daemon sent the rewritten requests from a raw
//! socket, through the OUTPUT path: the attacker's and the forged requests reached the
//! server, which the assertions below catch.
use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rport_tests::{
    capture::{Capture, udp_checksums, udp_csum_errors},
    ns::{Bpffs, Ns, can_run, recv_udp, send_udp, sh},
    packets::{ok_response, register},
    topo::{
        ATTACKER, GW_ATTACKER_IF, GW_INSIDE, GW_OUTSIDE, NAT_PUBLIC, NatTopology, PHONE, SERVER,
    },
};

/// Requests per case.
const N: usize = 10;
/// An inside address (the servers' segment), forged by the attacker from outside.
const FORGED: &str = "198.51.100.66";
/// How long the server listens after the last request of a phase.
const SETTLE: Duration = Duration::from_millis(800);

/// The gateway's filter: SIP in from the phone's NAT only, established traffic, anything
/// from the servers' side; the rest dropped (policy). rp_filter=1 everywhere.
fn firewall(t: &NatTopology) -> Result<()> {
    let rules = t.path("fw.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet rportfw {{\n chain forward_in {{\n  type filter hook forward priority filter; policy drop;\n  ct state established,related accept\n  iifname \"{GW_OUTSIDE}\" ip saddr {NAT_PUBLIC} udp dport 5060 accept\n  iifname \"{GW_INSIDE}\" accept\n }}\n}}\n"
        ),
    )?;
    sh(t.gw.cmd("nft").arg("-f").arg(&rules))?;
    for k in ["all", "default", GW_OUTSIDE, GW_ATTACKER_IF, GW_INSIDE] {
        sh(t.gw
            .cmd("sysctl")
            .args(["-qw", &format!("net.ipv4.conf.{k}.rp_filter=1")]))?;
    }
    Ok(())
}

/// Every datagram the server receives on 198.51.100.10:5060 while `f` runs and for
/// [`SETTLE`] after, with its source.
fn at_server(t: &NatTopology, f: impl FnOnce()) -> Vec<(SocketAddr, Vec<u8>)> {
    let file = std::fs::File::open(format!("/var/run/netns/{}", t.server.name)).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<Instant>();
    let h = std::thread::spawn(move || -> Result<Vec<(SocketAddr, Vec<u8>)>> {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let s = UdpSocket::bind(format!("{SERVER}:5060"));
        let _ = ready_tx.send(());
        let s = s?;
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 65536]);
        let mut until: Option<Instant> = None;
        // Bounded: at most 30 s whatever happens.
        let hard = Instant::now() + Duration::from_secs(30);
        while Instant::now() < hard && until.is_none_or(|u| Instant::now() < u) {
            if until.is_none() {
                until = stop_rx.try_recv().ok();
            }
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                got.push((from, buf[..n].to_vec()));
            }
        }
        Ok(got)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    f();
    stop_tx.send(Instant::now() + SETTLE).unwrap();
    h.join().unwrap().unwrap()
}

fn from(got: &[(SocketAddr, Vec<u8>)], addr: &str) -> Vec<Vec<u8>> {
    got.iter()
        .filter(|(a, _)| a.ip().to_string() == addr)
        .map(|(_, m)| m.clone())
        .collect()
}

fn via(i: usize, sent_by: &str) -> String {
    format!("Via: SIP/2.0/UDP {sent_by}:5060;branch=z9hG4bK-fw-{i};rport")
}

/// `msgs` over UDP from `from` to `to` inside `ns`, from one socket.
fn send_all(ns: &Ns, from: &str, to: &str, msgs: Vec<Vec<u8>>) {
    let (from, to) = (from.to_string(), to.to_string());
    ns.within(move || -> Result<()> {
        // The port of a socket closed a moment ago may still be held: a bounded retry.
        let mut tries = 0;
        let s = loop {
            match UdpSocket::bind(&from) {
                Ok(s) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).with_context(|| format!("binding {from}")),
            }
        };
        for m in &msgs {
            s.send_to(m, &to)?;
        }
        Ok(())
    })
    .unwrap()
    .unwrap();
}

/// N requests with `;rport` from the attacker's own address.
fn attack_direct(a: &Ns) {
    let msgs = (0..N).map(|i| register(&via(i, ATTACKER))).collect();
    send_all(
        a,
        &format!("{ATTACKER}:5060"),
        &format!("{SERVER}:5060"),
        msgs,
    );
}

/// N requests with `;rport` from [`FORGED`], an inside address, sent from the attacker's
/// outside interface (a raw socket: the address is not the attacker's).
fn attack_forged(a: &Ns) {
    let pkts: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let b = etherparse::PacketBuilder::ipv4(
                FORGED.parse::<std::net::Ipv4Addr>().unwrap().octets(),
                SERVER.parse::<std::net::Ipv4Addr>().unwrap().octets(),
                64,
            )
            .udp(5060, 5060);
            let mut v = Vec::new();
            b.write(&mut v, &register(&via(i, FORGED))).unwrap();
            v
        })
        .collect();
    a.within(move || -> Result<()> {
        // SAFETY: plain socket(2); closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            bail!("raw socket: {}", std::io::Error::last_os_error());
        }
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(SERVER.parse::<std::net::Ipv4Addr>()?.octets()),
            },
            sin_zero: [0; 8],
        };
        let mut err = None;
        for p in &pkts {
            // SAFETY: a valid buffer and address of their own sizes.
            let r = unsafe {
                libc::sendto(
                    fd,
                    p.as_ptr() as *const libc::c_void,
                    p.len(),
                    0,
                    &to as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if r < 0 {
                err = Some(std::io::Error::last_os_error());
            }
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        match err {
            Some(e) => Err(e).context("sending the forged requests"),
            None => Ok(()),
        }
    })
    .unwrap()
    .unwrap();
}

/// N requests from the phone behind its NAT.
fn phone_requests(t: &NatTopology) {
    let msgs = (0..N).map(|i| register(&via(i, PHONE))).collect();
    send_all(
        &t.phone,
        &format!("{PHONE}:5060"),
        &format!("{SERVER}:5060"),
        msgs,
    );
}

fn top_via(m: &[u8]) -> String {
    String::from_utf8_lossy(m)
        .lines()
        .find(|l| l.starts_with("Via:"))
        .unwrap_or_default()
        .to_string()
}

/// (phone, attacker, forged): requests of each that reached the server.
fn run_cases(t: &NatTopology, a: &Ns) -> (Vec<Vec<u8>>, usize, usize) {
    let got = at_server(t, || {
        phone_requests(t);
        attack_direct(a);
        attack_forged(a);
    });
    let (phone, atk, forged) = (
        from(&got, NAT_PUBLIC),
        from(&got, ATTACKER).len(),
        from(&got, FORGED).len(),
    );
    eprintln!(
        "at the server: phone {}/{N}, attacker {atk}/{N}, forged {forged}/{N}",
        phone.len()
    );
    (phone, atk, forged)
}

fn nothing_the_gateway_drops_is_forwarded(mode: &[&str]) {
    if !can_run("firewall", &["ip", "nft", "sysctl", "ethtool", "nstat"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let a = t.attacker().unwrap();
    firewall(&t).unwrap();
    // Checksums computed in software on the way to the server, as a NIC would.
    sh(t.gw.cmd("ethtool").args(["-K", GW_INSIDE, "tx", "off"])).unwrap();

    // Without rport: the gateway's own rules at work (so what follows tests rport).
    let (phone, atk, forged) = run_cases(&t, &a);
    assert_eq!((phone.len(), atk, forged), (N, 0, 0), "without rport");
    assert!(
        phone.iter().all(|m| !top_via(m).contains("received=")),
        "without rport nothing is rewritten"
    );

    let pins = Bpffs::new().unwrap();
    let mut args = vec!["--outside", GW_ATTACKER_IF];
    args.extend_from_slice(mode);
    let rport = t.rport(&pins, &args).unwrap();
    let csum0 = udp_csum_errors(&t.server);
    let cap = Capture::start(&t.server, "srv0").unwrap();
    let outside = Capture::start(&t.gw, GW_OUTSIDE).unwrap();
    let (phone, atk, forged) = run_cases(&t, &a);
    let frames = cap.frames();
    // What tcpdump on the outside interface shows (docs/OPERATIONS.md): each request
    // once, as received, already rewritten; never the original (XDP took it), never an
    // outgoing copy (the redirect happens before the taps of the transmit path).
    let to_server: Vec<String> = outside
        .frames()
        .iter()
        .filter_map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
            match p.transport? {
                etherparse::TransportSlice::Udp(u) if u.destination_port() == 5060 => {
                    Some(String::from_utf8_lossy(u.payload()).into_owned())
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        (
            to_server.len(),
            to_server
                .iter()
                .filter(|m| m.contains(";received="))
                .count()
        ),
        (N, N),
        "requests to the server seen on the outside interface (all, rewritten)"
    );
    assert_eq!(
        atk, 0,
        "the attacker's requests reached the server through rport"
    );
    assert_eq!(
        forged, 0,
        "requests forged from an inside address reached the server through rport"
    );
    assert_eq!(
        phone.len(),
        N,
        "the phone's requests through rport: {}",
        rport.stats().unwrap()
    );
    let mut nat_port = 0;
    for m in &phone {
        let v = top_via(m);
        assert!(v.contains(&format!(";received={NAT_PUBLIC}")), "{v}");
        let port: u16 = v
            .split(";rport=")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no rport value in {v}"));
        assert_ne!(port, 0);
        nat_port = port;
    }
    // Checksums of the rewritten requests, as they arrived at the server.
    let (good, bad) = udp_checksums(&frames, nat_port);
    assert_eq!(
        (good, bad),
        (N as u64, 0),
        "checksums (good, bad) at the server"
    );
    assert_eq!(udp_csum_errors(&t.server) - csum0, 0, "UdpInCsumErrors");

    // The server answers the private sent-by (it ignores rport): steered to the phone.
    let v = top_via(&phone[0]);
    let rx = recv_udp(&t.phone, &format!("{PHONE}:5060"), Duration::from_secs(5)).unwrap();
    send_udp(
        &t.server,
        &format!("{SERVER}:5060"),
        &format!("{PHONE}:5060"),
        ok_response(&v),
        1,
    )
    .unwrap();
    let got = rx.join().unwrap().expect("the answer reached the phone");
    assert!(got.starts_with(b"SIP/2.0 200 OK"));

    // Every request was handed over once, rewritten, handed back: none seen twice (a
    // re-injected frame that came back to the daemon would count again), none lost.
    let d = &rport.stats().unwrap()["daemon"];
    assert_eq!(d["rx_frames"], 3 * N as u64, "{d}");
    assert_eq!(d["rewritten"], 3 * N as u64, "{d}");
    assert_eq!(d["forwarded"], 3 * N as u64, "{d}");
    assert_eq!(d["send_errors"], 0, "{d}");
    assert_eq!(d["unsent"], 0, "{d}");
    // Generic XDP saw each re-injected frame again and passed it by (native XDP never
    // sees them).
    let skb = mode.contains(&"skb");
    assert_eq!(
        rport.counter("xdp", "reinjected").unwrap(),
        if skb { 3 * N as u64 } else { 0 }
    );
}

#[test]
fn nothing_the_gateway_drops_is_forwarded_native() {
    nothing_the_gateway_drops_is_forwarded(&[]);
}

/// Generic XDP runs on every received skb, the re-injected ones too unless the kernel
/// skips them as redirected: `rx_frames` shows each request reached the daemon once.
#[test]
fn nothing_the_gateway_drops_is_forwarded_skb_mode() {
    nothing_the_gateway_drops_is_forwarded(&["--xdp-mode", "skb"]);
}
