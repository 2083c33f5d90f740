//! The gateway benchmark's load: a SIP request generator and a legacy responder.
//!
//! Both are batched (sendmmsg/recvmmsg, 64 messages per syscall) and allocate nothing per
//! message after start-up, so that they stay much cheaper per message than any gateway
//! under test; the benchmark reports their CPU next to the gateways' so a reader can check.
//!
//! The generator sends REGISTERs with a unique branch and Call-ID per request (a sequence
//! number written in place into a pre-built message), `;rport` and the sent-by it is told
//! to claim, at a paced rate; a second thread receives the answers and matches them to
//! their send time by the sequence number in the branch. The responder answers every
//! request with a 200 carrying the request's headers, sent to the top Via's sent-by
//! (`reply_to_via`, the legacy behaviour), or to the source if the Via has no usable IPv4
//! sent-by.
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use rport_userspace::datapath::mmsg::{MsgBatch, Refused};

/// Messages per sendmmsg/recvmmsg call.
pub const BATCH: usize = 64;
/// Largest datagram handled.
const MTU: usize = 2048;
/// Digits of the sequence number written into each request.
const SEQ_DIGITS: usize = 10;

/// What one generator run measured.
#[derive(Debug, Clone, Default)]
pub struct GenReport {
    pub target_rate: u64,
    pub sent: u64,
    pub received: u64,
    /// Seconds from first to last send.
    pub send_secs: f64,
    /// Round-trip latency percentiles (µs) of the answered requests.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// CPU (user + system) of the generator process, ns.
    pub cpu_ns: u64,
}

impl GenReport {
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }
    /// The rate actually sent (the generator may fall short of the target).
    pub fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.send_secs.max(1e-9)
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target_rate": self.target_rate, "sent": self.sent, "received": self.received,
            "send_secs": self.send_secs, "p50_us": self.p50_us, "p99_us": self.p99_us,
            "p999_us": self.p999_us, "cpu_ns": self.cpu_ns,
        })
    }
    pub fn from_json(v: &serde_json::Value) -> Result<GenReport> {
        let u = |k: &str| v[k].as_u64().with_context(|| format!("no {k} in {v}"));
        // Percentiles are null when nothing was answered.
        let f = |k: &str| -> Result<f64> { Ok(v[k].as_f64().unwrap_or(f64::NAN)) };
        Ok(GenReport {
            target_rate: u("target_rate")?,
            sent: u("sent")?,
            received: u("received")?,
            send_secs: f("send_secs")?,
            p50_us: f("p50_us")?,
            p99_us: f("p99_us")?,
            p999_us: f("p999_us")?,
            cpu_ns: u("cpu_ns")?,
        })
    }
}

/// The request every generated message is made from. `{sent_by}` is the claimed sent-by;
/// the two runs of `#` are where the sequence number goes (branch and Call-ID).
fn template(sent_by: &str, target: &SocketAddrV4) -> (Vec<u8>, [usize; 2]) {
    let hashes = "#".repeat(SEQ_DIGITS);
    let host = target.ip();
    let text = format!(
        "REGISTER sip:{host} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sent_by};branch=z9hG4bK-load-{hashes};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:load@{host}>;tag=4711\r\n\
         To: <sip:load@{host}>\r\n\
         Call-ID: {hashes}@load.example\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:load@{sent_by}>\r\n\
         User-Agent: rport-bench\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let b = text.into_bytes();
    let first = find(&b, hashes.as_bytes()).expect("branch placeholder");
    let second = first + SEQ_DIGITS + find(&b[first + SEQ_DIGITS..], hashes.as_bytes()).unwrap();
    (b, [first, second])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn write_seq(buf: &mut [u8], at: usize, mut seq: u64) {
    for i in (0..SEQ_DIGITS).rev() {
        buf[at + i] = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
}

/// The sequence number in an answer's branch, if it is one of ours.
fn read_seq(msg: &[u8]) -> Option<u64> {
    let at = find(msg, b"branch=z9hG4bK-load-")? + 20;
    let digits = msg.get(at..at + SEQ_DIGITS)?;
    let mut v = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (d - b'0') as u64;
    }
    Some(v)
}

fn big_buffers(s: &UdpSocket) {
    let fd = s.as_raw_fd();
    let size: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt with a valid fd and an int option. Failure (no CAP_NET_ADMIN)
        // leaves the default buffers, which only makes loss at high rates more likely.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                4,
            )
        };
    }
}

/// CPUs online (at least 1).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn cpu_self_ns() -> u64 {
    // SAFETY: getrusage fills the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One batch of datagrams and their buffers, allocated once; the syscalls are the daemon's
/// own batch ([`MsgBatch`]).
struct Batch {
    bufs: Vec<[u8; MTU]>,
    /// Length and peer of each datagram to send.
    out: Vec<(usize, SocketAddrV4)>,
    msgs: MsgBatch,
}

impl Batch {
    fn new() -> Box<Batch> {
        Box::new(Batch {
            bufs: vec![[0u8; MTU]; BATCH],
            out: vec![(0, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH],
            msgs: MsgBatch::new(BATCH),
        })
    }
    fn set(&mut self, i: usize, len: usize, to: SocketAddrV4) {
        self.out[i] = (len, to);
    }
    /// Sends entries `0..n`, retrying the rest after a partial send.
    fn send(&mut self, fd: BorrowedFd<'_>, n: usize) -> Result<()> {
        let msgs = self.bufs[..n]
            .iter()
            .zip(&self.out)
            .map(|(b, &(len, to))| (&b[..len], SocketAddr::V4(to)));
        self.msgs
            .send_all(fd, msgs, |e| match e.raw_os_error() {
                Some(libc::EINTR) => Refused::Retry,
                // Unreachable/refused/no buffer: count the message as sent and lost.
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                | Some(libc::ENOBUFS | libc::EAGAIN) => Refused::Skip,
                _ => Refused::Stop,
            })
            .context("sendmmsg")?;
        Ok(())
    }
    /// Receives up to BATCH datagrams (blocking for the first, at most the socket timeout).
    fn recv(&mut self, fd: BorrowedFd<'_>) -> usize {
        self.msgs
            .recv(fd, &mut self.bufs, libc::MSG_WAITFORONE)
            .unwrap_or(0)
    }
    fn len(&self, i: usize) -> usize {
        self.msgs.received(i).0
    }
    fn from(&self, i: usize) -> SocketAddrV4 {
        match self.msgs.received(i).1 {
            Some(SocketAddr::V4(a)) => a,
            _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        }
    }
}

/// Sends `rate` requests/s for `secs` seconds to `target` from `local` (port chosen by the
/// kernel), claiming `sent_by` (None: the socket's own address), and waits `drain` for the
/// last answers.
pub fn generate(
    local: Ipv4Addr,
    target: SocketAddrV4,
    sent_by: Option<&str>,
    rate: u64,
    secs: f64,
    drain: Duration,
) -> Result<GenReport> {
    generate_flows(local, target, sent_by, rate, secs, drain, &[0])
}

/// [`generate`] from one socket per entry of `ports` (its local port, 0: the kernel's
/// choice), each with a sender and a receiver thread of its own and `rate / ports.len()`
/// of the load: several flows, flow i's sender pinned to CPU i (mod the CPUs online), so
/// that a multi-queue bed's XPS puts each on a queue of its own (`queues::wire`). One
/// report for all.
pub fn generate_flows(
    local: Ipv4Addr,
    target: SocketAddrV4,
    sent_by: Option<&str>,
    rate: u64,
    secs: f64,
    drain: Duration,
    ports: &[u16],
) -> Result<GenReport> {
    anyhow::ensure!(!ports.is_empty(), "no flow to send");
    // The address the route to the target leaves from: what an answer must come back to.
    let local = if local.is_unspecified() {
        let probe = UdpSocket::bind((local, 0))?;
        probe.connect(target)?;
        match probe.local_addr()?.ip() {
            std::net::IpAddr::V4(a) => a,
            _ => local,
        }
    } else {
        local
    };
    let flows = ports.len() as u64;
    let total = ((rate as f64) * secs).round().max(flows as f64) as u64;
    // Send time of each request (ns since start, +1 so that 0 means "not outstanding");
    // flow i sends the sequence numbers i, i + flows, i + 2 flows, …
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let sock = UdpSocket::bind((local, port)).context("binding the generator socket")?;
        big_buffers(&sock);
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let own = sock.local_addr()?.to_string();
        let (tpl, at) = template(sent_by.unwrap_or(&own), &target);
        receivers.push({
            let sock = sock.try_clone()?;
            let (sent_at, stop) = (sent_at.clone(), stop.clone());
            std::thread::spawn(move || receive(&sock, &sent_at, &stop, start, total))
        });
        let flow = Flow {
            first: i as u64,
            step: flows,
            total,
            ns_per_msg: 1e9 * flows as f64 / rate as f64,
        };
        let sent_at = sent_at.clone();
        let cpu = (flows > 1).then_some(i % online_cpus());
        senders.push(std::thread::spawn(move || {
            if let Some(c) = cpu {
                // Flow i leaves by CPU i's tx queue (XPS: `queues::wire`).
                rport_userspace::datapath::workers::pin_current(c)
                    .context("pinning a flow's sender")?;
            }
            flow.send(&sock, &tpl, at, target, &sent_at, start)
        }));
    }
    let (mut sent, mut last_send) = (0, 0);
    for s in senders {
        let (n, last) = s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        sent += n;
        last_send = last_send.max(last);
    }
    std::thread::sleep(drain);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::with_capacity(total as usize);
    for r in receivers {
        lat.extend(r.join().map_err(|_| anyhow::anyhow!("receiver panicked"))?);
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    Ok(GenReport {
        target_rate: rate,
        sent,
        received: lat.len() as u64,
        send_secs: last_send as f64 / 1e9,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        cpu_ns: cpu_self_ns(),
    })
}

/// The answers of one flow, matched to their send time; returns the round trips (ns).
fn receive(
    sock: &UdpSocket,
    sent_at: &[AtomicU64],
    stop: &AtomicBool,
    start: Instant,
    total: u64,
) -> Vec<u64> {
    let mut lat = Vec::with_capacity(total as usize);
    let mut b = Batch::new();
    let fd = sock.as_fd();
    while !stop.load(Ordering::Relaxed) {
        let n = b.recv(fd);
        let now = start.elapsed().as_nanos() as u64 + 1;
        for i in 0..n {
            let len = b.len(i).min(MTU);
            if let Some(seq) = read_seq(&b.bufs[i][..len]) {
                if let Some(slot) = sent_at.get(seq as usize) {
                    // Taking the send time makes a duplicate answer count once.
                    let t = slot.swap(0, Ordering::Relaxed);
                    if t != 0 {
                        lat.push(now - t);
                    }
                }
            }
        }
    }
    lat
}

/// The sequence numbers one flow sends (`first`, `first + step`, … below `total`) and its
/// pace.
struct Flow {
    first: u64,
    step: u64,
    total: u64,
    ns_per_msg: f64,
}

impl Flow {
    /// Sends the flow at its pace; returns how many it sent and when the last went (ns
    /// since `start`).
    fn send(
        &self,
        sock: &UdpSocket,
        tpl: &[u8],
        at: [usize; 2],
        target: SocketAddrV4,
        sent_at: &[AtomicU64],
        start: Instant,
    ) -> Result<(u64, u64)> {
        let mut b = Batch::new();
        for i in 0..BATCH {
            b.bufs[i][..tpl.len()].copy_from_slice(tpl);
            b.set(i, tpl.len(), target);
        }
        let fd = sock.as_fd();
        // This flow's share of the sequence numbers.
        let mine = (self.total + self.step - 1 - self.first) / self.step;
        let mut k = 0u64;
        let mut last_send = 0u64;
        while k < mine {
            let elapsed = start.elapsed().as_nanos() as u64;
            let due = ((elapsed as f64 / self.ns_per_msg) as u64 + 1).min(mine);
            if due <= k {
                // Ahead of schedule: sleep until about one batch is due (bounded), so the
                // generator does not spin on the cores the gateway needs.
                let wait = (((k + 1) as f64 * self.ns_per_msg) as u64).saturating_sub(elapsed);
                let wait = wait.clamp(20_000, 1_000_000);
                std::thread::sleep(Duration::from_nanos(wait));
                continue;
            }
            let n = ((due - k) as usize).min(BATCH);
            let now = start.elapsed().as_nanos() as u64 + 1;
            for i in 0..n {
                let seq = self.first + (k + i as u64) * self.step;
                write_seq(&mut b.bufs[i], at[0], seq);
                write_seq(&mut b.bufs[i], at[1], seq);
                sent_at[seq as usize].store(now, Ordering::Relaxed);
            }
            b.send(fd, n)?;
            k += n as u64;
            last_send = start.elapsed().as_nanos() as u64;
        }
        Ok((k, last_send))
    }
}

/// Where a legacy server sends its answer: the top Via's sent-by (port 5060 if absent), if
/// it is an IPv4 literal.
pub fn via_sent_by(msg: &[u8]) -> Option<SocketAddrV4> {
    let at = find(msg, b"\nVia:").or_else(|| find(msg, b"\nv:"))?;
    let rest = &msg[at..];
    let proto = find(rest, b"UDP")? + 3;
    let rest = &rest[proto..];
    let start = rest.iter().position(|c| *c != b' ' && *c != b'\t')?;
    let rest = &rest[start..];
    let end = rest
        .iter()
        .position(|c| matches!(c, b';' | b'\r' | b'\n' | b',' | b' '))
        .unwrap_or(rest.len());
    let sent_by = std::str::from_utf8(&rest[..end]).ok()?;
    match sent_by.split_once(':') {
        Some((h, p)) => Some(SocketAddrV4::new(h.parse().ok()?, p.parse().ok()?)),
        None => Some(SocketAddrV4::new(sent_by.parse().ok()?, 5060)),
    }
}

/// Builds the 200 for `req` into `out`: status line, then the request's header lines and
/// body as they came (Via, From, To, Call-ID and CSeq included, as RFC 3261 §8.2.6.2 asks).
/// Returns the length, or None if `req` is not a request.
pub fn answer(req: &[u8], out: &mut [u8]) -> Option<usize> {
    const STATUS: &[u8] = b"SIP/2.0 200 OK\r\n";
    if req.starts_with(b"SIP/2.0") {
        return None;
    }
    let eol = find(req, b"\r\n")? + 2;
    let rest = &req[eol..];
    let len = STATUS.len() + rest.len();
    if len > out.len() {
        return None;
    }
    out[..STATUS.len()].copy_from_slice(STATUS);
    out[STATUS.len()..len].copy_from_slice(rest);
    Some(len)
}

/// Answers every request on `listen` until killed. `to_source`: answer the source address
/// instead of the Via (what an rport-aware server does).
pub fn respond(listen: SocketAddrV4, to_source: bool) -> Result<()> {
    let sock = UdpSocket::bind(listen).with_context(|| format!("binding {listen}"))?;
    big_buffers(&sock);
    let fd = sock.as_fd();
    let mut rx = Batch::new();
    let mut tx = Batch::new();
    loop {
        let n = rx.recv(fd);
        let mut m = 0;
        for i in 0..n {
            let len = rx.len(i).min(MTU);
            let req = &rx.bufs[i][..len];
            let Some(out_len) = answer(req, &mut tx.bufs[m]) else {
                continue;
            };
            let to = if to_source {
                rx.from(i)
            } else {
                via_sent_by(req).unwrap_or_else(|| rx.from(i))
            };
            tx.set(m, out_len, to);
            m += 1;
        }
        if m > 0 {
            tx.send(fd, m)?;
        }
    }
}

/// CPU time (ns) used so far by a process and all its threads, from
/// /proc/<pid>/task/*/schedstat (ns resolution).
pub fn process_cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let p = t?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Proportional set size (bytes) of a process: its fair share of shared pages.
pub fn process_pss(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let kb = s
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no Pss in smaps_rollup")?;
    Ok(kb * 1024)
}

/// A process and all its descendants (Kamailio forks its workers).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                }
            }
        }
        i += 1;
    }
    out
}

/// The XDP program's run time and run count, as the kernel counts them with
/// `kernel.bpf_stats_enabled=1`, summed over the BPF programs `pid` holds open
/// (from /proc/<pid>/fdinfo), and the memory locked by its BPF maps and programs.
#[derive(Debug, Default, Clone, Copy)]
pub struct BpfUsage {
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub memlock: u64,
}

pub fn bpf_usage(pid: u32) -> Result<BpfUsage> {
    let mut u = BpfUsage::default();
    let mut seen = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(s) = std::fs::read_to_string(e?.path()) else {
            continue;
        };
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // The same map or program may be open on several fds: count each id once.
        let id = field("prog_id:")
            .map(|i| ("p", i))
            .or(field("map_id:").map(|i| ("m", i)));
        let Some(id) = id else { continue };
        if !seen.insert(id) {
            continue;
        }
        u.memlock += field("memlock:").unwrap_or(0);
        u.run_time_ns += field("run_time_ns:").unwrap_or(0);
        u.run_cnt += field("run_cnt:").unwrap_or(0);
    }
    Ok(u)
}

/// Turns the kernel's BPF run-time accounting on for as long as the guard lives.
pub struct BpfStats(String);

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let p = "/proc/sys/kernel/bpf_stats_enabled";
        let old = std::fs::read_to_string(p)?.trim().to_string();
        std::fs::write(p, "1")?;
        Ok(BpfStats(old))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_sequence_round_trip() {
        let t: SocketAddrV4 = "198.51.100.10:5060".parse().unwrap();
        let (mut b, at) = template("192.168.1.50:5060", &t);
        write_seq(&mut b, at[0], 1234567);
        write_seq(&mut b, at[1], 1234567);
        let s = std::str::from_utf8(&b).unwrap();
        assert!(
            s.contains("branch=z9hG4bK-load-0001234567;rport\r\n"),
            "{s}"
        );
        assert!(s.contains("Call-ID: 0001234567@load.example\r\n"), "{s}");
        assert_eq!(read_seq(&b), Some(1234567));
        assert_eq!(
            read_seq(b"SIP/2.0 200 OK\r\nVia: x;branch=z9hG4bK-load-12x"),
            None
        );
    }

    #[test]
    fn answers_to_the_via_sent_by() {
        let t: SocketAddrV4 = "198.51.100.10:5060".parse().unwrap();
        let (req, _) = template("192.168.1.50:5062", &t);
        assert_eq!(
            via_sent_by(&req),
            Some("192.168.1.50:5062".parse().unwrap())
        );
        let mut out = [0u8; MTU];
        let n = answer(&req, &mut out).unwrap();
        let a = std::str::from_utf8(&out[..n]).unwrap();
        assert!(a.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;"));
        assert!(a.ends_with("Content-Length: 0\r\n\r\n"));
        assert_eq!(
            answer(&out[..n], &mut [0u8; MTU]),
            None,
            "answers are not answered"
        );
        // Kamailio's own Via has no port: 5060.
        assert_eq!(
            via_sent_by(b"INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1\r\n"),
            Some("198.51.100.1:5060".parse().unwrap())
        );
        assert_eq!(
            via_sent_by(b"INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP host.example:5060\r\n"),
            None
        );
    }
}
