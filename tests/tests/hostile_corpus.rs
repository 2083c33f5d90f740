//! The hostile corpus (tests/src/hostile.rs) live: every case sent through the namespace
//! deployment (phone → NAT (nftables masquerade) → gateway with `rport run` → server; the
//! short frames from a host of their own on the gateway's outside, with a raw socket), in
//! batches of one family and one expectation, a good REGISTER after each batch.
//!
//! For each batch: the counters its expectation names moved by exactly one per frame of
//! each case (those it says must stay, stayed), the good packet's own share taken off (it
//! is measured alone first); the daemon is still running; the good REGISTER reached the
//! server with `received` and `rport` as the NAT mapped it, and the server's 200 OK, sent
//! to the phone's private sent-by, reached the phone. For each case, what the server got
//! is byte for byte what was sent, or (a case the daemon rewrites) exactly what the Via
//! rewrite makes of it with the tag the daemon chose; nothing is lost but the short
//! frames, which the server's UDP must drop (and which the daemon must never see).
use std::{
    collections::{BTreeMap, HashMap},
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use rport_tests::{
    hostile::{Case, Expect, Send, corpus, families},
    ns::{Bpffs, can_run},
    packets::{ok_response, register},
    topo::{ATTACKER, GW_ATTACKER_IF, NAT_PUBLIC, NatTopology, PHONE, Rport, SERVER},
};
use rport_userspace::sip::{
    props,
    rewrite::{Observed, Policy},
    via,
};

/// Every counter of `rport stats --json`, as `group.name`.
fn counters(r: &Rport) -> HashMap<String, u64> {
    let v = r.stats().expect("rport stats answers");
    let mut m = HashMap::new();
    for g in ["xdp", "daemon"] {
        for (k, x) in v[g].as_object().expect("a counter group") {
            if let Some(n) = x.as_u64() {
                m.insert(format!("{g}.{k}"), n);
            }
        }
    }
    m
}

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>) -> HashMap<String, i64> {
    after
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                *a as i64 - before.get(k).copied().unwrap_or(0) as i64,
            )
        })
        .collect()
}

/// The top Via line of a message (for the server's answer).
fn top_via_line(m: &[u8]) -> String {
    let s = String::from_utf8_lossy(m);
    s.lines()
        .find(|l| l.starts_with("Via:"))
        .expect("a Via")
        .to_string()
}

fn param<'a>(via: &'a str, name: &str) -> Option<&'a str> {
    via.split(';')
        .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim())
}

/// What the server got of a case, judged against what was sent: `Ok(true)` for the Via
/// rewrite's exact edit (with the tag the daemon put in), `Ok(false)` for the bytes as
/// sent, `Err` for anything else.
fn judge(sent: &[u8], got: &[u8], from: SocketAddr) -> Result<bool, String> {
    if got == sent {
        return Ok(false);
    }
    let src = Observed {
        addr: from.ip(),
        port: from.port(),
    };
    let v = via::parse_top_via(got).map_err(|e| format!("changed, and its Via is {e:?}"))?;
    let tag = v.tag.ok_or("changed, but no rptag in its top Via")?;
    let tag = &got[tag];
    let value = &tag[tag
        .iter()
        .position(|&c| c == b'=')
        .ok_or("rptag without '='")?
        + 1..];
    let policy = Policy {
        force_rport: false,
        tag: Some(rport_common::tag::TagBuf::from_text(value.trim_ascii())),
    };
    props::check_rewrite(sent, src, policy)?;
    let (want, r) = props::rewrite(sent, src, policy);
    if r.is_ok_and(|r| r.changed) && want == got {
        Ok(true)
    } else {
        Err(format!(
            "not the rewrite's edit:\n got  {:?}\n want {:?}",
            String::from_utf8_lossy(&got[..got.len().min(400)]),
            String::from_utf8_lossy(&want[..want.len().min(400)])
        ))
    }
}

/// A raw IPv4 socket (header included) in the attacker's namespace.
fn raw_socket(t: &rport_tests::ns::Ns) -> OwnedFd {
    t.within(|| {
        // SAFETY: plain socket call; the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd of ours.
        unsafe { OwnedFd::from_raw_fd(fd) }
    })
    .unwrap()
}

/// Sends `payload` from the attacker to the server's 5060 in one IPv4 datagram whose UDP
/// length says `extra` bytes more than it holds (the kernel fills in the IP length and
/// header checksum from what is there, so only UDP lies).
fn send_short(raw: &OwnedFd, payload: &[u8], extra: u16) {
    let src: std::net::Ipv4Addr = ATTACKER.parse().unwrap();
    let dst: std::net::Ipv4Addr = SERVER.parse().unwrap();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let udp_len = (8 + payload.len() as u32 + extra as u32).min(65535) as u16;
    p.extend_from_slice(&5060u16.to_be_bytes());
    p.extend_from_slice(&5060u16.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4 allows it)
    p.extend_from_slice(payload);
    // SAFETY: zeroed sockaddr_in is valid; filled below.
    let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    to.sin_family = libc::AF_INET as u16;
    to.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
    // SAFETY: our buffer and address, sizes given.
    let n = unsafe {
        libc::sendto(
            raw.as_raw_fd(),
            p.as_ptr() as *const libc::c_void,
            p.len(),
            0,
            &to as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(n, p.len() as isize, "{}", std::io::Error::last_os_error());
}

struct Bed {
    phone: UdpSocket,
    server: UdpSocket,
    /// Everything the server got that was not a good packet: (payload, source).
    got: Vec<(Vec<u8>, SocketAddr)>,
    goods: usize,
}

impl Bed {
    /// The good packet: a REGISTER through the NAT, which must reach the server with
    /// `received`/`rport` as the NAT mapped it; the server's 200 OK, sent to the phone's
    /// private sent-by as a legacy server does, must reach the phone. Whatever else the
    /// server gets meanwhile is kept in `got`.
    fn good(&mut self) {
        self.goods += 1;
        let branch = format!("z9hG4bK-good{}", self.goods);
        let m = register(&format!(
            "Via: SIP/2.0/UDP {PHONE}:5060;branch={branch};rport"
        ));
        self.phone.send_to(&m, format!("{SERVER}:5060")).unwrap();
        let t = Instant::now();
        let mut buf = vec![0u8; 65536];
        let (req, from) = loop {
            let (n, from) = self.server.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("good packet {} never reached the server: {e}", self.goods)
            });
            let d = buf[..n].to_vec();
            if d.windows(branch.len()).any(|w| w == branch.as_bytes()) {
                break (d, from);
            }
            self.got.push((d, from));
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "good packet {} lost",
                self.goods
            );
        };
        let top = top_via_line(&req);
        assert_eq!(param(&top, "received"), Some(NAT_PUBLIC), "{top}");
        assert_eq!(from.ip().to_string(), NAT_PUBLIC);
        assert_eq!(
            param(&top, "rport"),
            Some(from.port().to_string().as_str()),
            "{top}"
        );
        self.server
            .send_to(&ok_response(&top), format!("{PHONE}:5060"))
            .unwrap();
        let (n, _) = self.phone.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "the 200 OK of good packet {} never reached the phone: {e}",
                self.goods
            )
        });
        let ans = String::from_utf8_lossy(&buf[..n]);
        assert!(
            ans.starts_with("SIP/2.0 200 OK") && ans.contains(&branch),
            "{ans}"
        );
    }

    /// Whatever else is still on its way to the server, for `wait`.
    fn drain(&mut self, wait: Duration) {
        self.server.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = self.server.recv_from(&mut buf) {
            self.got.push((buf[..n].to_vec(), from));
        }
        self.server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
}

/// The cases in batches: consecutive cases of one family and one expectation.
fn batches(cases: &[Case]) -> Vec<&[Case]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=cases.len() {
        if i == cases.len()
            || (cases[i].family, cases[i].expect) != (cases[start].family, cases[start].expect)
        {
            out.push(&cases[start..i]);
            start = i;
        }
    }
    out
}

#[test]
fn hostile_corpus_through_the_nat() {
    if !can_run("hostile_corpus", &["ip", "nft"]) {
        return;
    }
    let started = Instant::now();
    let t = NatTopology::new().unwrap();
    let atk = t.attacker().unwrap();
    let pins = Bpffs::new().unwrap();
    let mut r = t.rport(&pins, &["--outside", GW_ATTACKER_IF]).unwrap();
    let bind = |ns: &rport_tests::ns::Ns, at: String| {
        ns.within(move || UdpSocket::bind(at)).unwrap().unwrap()
    };
    let mut bed = Bed {
        phone: bind(&t.phone, format!("{PHONE}:5060")),
        server: bind(&t.server, format!("{SERVER}:5060")),
        got: Vec::new(),
        goods: 0,
    };
    for s in [&bed.phone, &bed.server] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let buf: libc::c_int = 16 << 20;
        // SAFETY: setsockopt reads an int.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &buf as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
    }
    let raw = raw_socket(&atk);

    // The good packet's own share of every counter, measured alone (twice: the first
    // also creates the NAT mapping).
    bed.good();
    let before = counters(&r);
    bed.good();
    let own = delta(&counters(&r), &before);
    assert!(bed.got.is_empty(), "the server got something unasked");

    let cases = corpus();
    let mut moved: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut failures = Vec::new();
    for batch in batches(&cases) {
        let before = counters(&r);
        for c in batch {
            match c.send {
                Send::Phone => {
                    bed.phone
                        .send_to(&c.payload, format!("{SERVER}:5060"))
                        .unwrap();
                }
                Send::ShortUdp { extra } => send_short(&raw, &c.payload, extra),
            }
        }
        if batch[0].send != Send::Phone {
            // Another path than the good packet's: give it time to be done.
            std::thread::sleep(Duration::from_millis(300));
        }
        bed.good();
        let d = delta(&counters(&r), &before);
        assert!(
            r.proc.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "rport died in the batch of {}",
            batch[0].name
        );
        let expect = batch[0].expect;
        let frames: u64 = batch.iter().map(|c| c.frames(1500)).sum();
        for (group, name, per) in expect.counters() {
            let k = format!("{group}.{name}");
            let got = d.get(&k).copied().unwrap_or(0) - own.get(&k).copied().unwrap_or(0);
            if got != (*per * frames) as i64 {
                let mut nonzero: Vec<String> = d
                    .iter()
                    .filter(|(k, v)| **v != own.get(*k).copied().unwrap_or(0))
                    .map(|(k, v)| format!("{k}+{}", v - own.get(k).copied().unwrap_or(0)))
                    .collect();
                nonzero.sort();
                failures.push(format!(
                    "{} ({} cases, {frames} frames, {expect:?}, first {:?}): {k} moved {got}, not {}; moved: {nonzero:?}",
                    batch[0].family,
                    batch.len(),
                    batch[0].name,
                    per * frames
                ));
            }
        }
        let e = moved.entry(batch[0].family).or_default();
        let label = format!("{}×{:?}", batch.len(), expect);
        e.push(label);
    }
    // Anything still on its way (a reassembly), then judge what the server got.
    bed.good();
    bed.drain(Duration::from_millis(300));
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut rewritten = 0;
    for (m, from) in &bed.got {
        let Some(c) = cases
            .iter()
            .find(|c| m.windows(7).any(|w| w == c.token().as_bytes()))
        else {
            failures.push(format!(
                "the server got an unknown datagram: {:?}",
                String::from_utf8_lossy(&m[..m.len().min(200)])
            ));
            continue;
        };
        *seen.entry(c.id).or_default() += 1;
        match judge(&c.payload, m, *from) {
            Ok(edited) if edited == (c.expect == Expect::Rewritten) => rewritten += edited as usize,
            Ok(edited) => failures.push(format!(
                "{} #{} {}: {} but expected {:?}",
                c.family,
                c.id,
                c.name,
                if edited { "rewritten" } else { "unchanged" },
                c.expect
            )),
            Err(e) => failures.push(format!("{} #{} {}: {e}", c.family, c.id, c.name)),
        }
    }
    for c in &cases {
        let n = seen.get(&c.id).copied().unwrap_or(0);
        let want = c.expect.reaches_server() as usize;
        if n != want {
            failures.push(format!(
                "{} #{} {}: the server got it {n} times, not {want}",
                c.family, c.id, c.name
            ));
        }
    }
    let end = counters(&r);
    for k in ["daemon.bad_frames", "daemon.send_errors"] {
        if end[k] != 0 {
            failures.push(format!("{k} = {}", end[k]));
        }
    }
    eprintln!(
        "hostile corpus: {} cases in {} families, {} batches, {rewritten} rewritten, {:.1} s",
        cases.len(),
        families(&cases).len(),
        batches(&cases).len(),
        started.elapsed().as_secs_f64()
    );
    for (f, b) in &moved {
        eprintln!(
            "  {f:20} {:3} cases: {}",
            cases.iter().filter(|c| c.family == *f).count(),
            b.join(", ")
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    r.proc.stop().unwrap();
}
