//! The metrics listener against clients that do not play by the rules: one sending a
//! byte a second, one streaming a 64 MiB request line, more connections than it serves
//! at once. Scrapes keep being answered meanwhile, the daemon's RSS stays bounded, and
//! `--metrics PORT` alone binds 127.0.0.1 only.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use rport_tests::{
    ns::{Bpffs, Ns, can_run, sh},
    topo::NatTopology,
};
use rport_userspace::observe::metrics::{HEAD_TIMEOUT, MAX_CONNECTIONS};

const ADDR: &str = "127.0.0.1:9464";

/// A TCP connection from inside `ns` (a socket keeps its namespace on any thread).
fn connect(ns: &Ns, addr: &'static str) -> std::io::Result<TcpStream> {
    ns.within(move || TcpStream::connect(addr)).unwrap()
}

/// One request, the whole answer (read to the server's close), and how long it took.
fn ask(ns: &Ns, request: &'static [u8]) -> (String, Duration) {
    let t0 = Instant::now();
    let mut s = connect(ns, ADDR).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    let _ = s
        .write_all(request)
        .and_then(|()| s.read_to_string(&mut out));
    (out, t0.elapsed())
}

fn scrape(ns: &Ns) -> (String, Duration) {
    ask(ns, b"GET /metrics HTTP/1.1\r\nHost: gw\r\n\r\n")
}

fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn slow_and_huge_clients_do_not_stall_scrapes_or_grow_the_daemon() {
    if !can_run("metrics_limits", &["ip", "nft", "ss"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    // The port alone: loopback only.
    let r = t.rport(&pins, &["--metrics", "9464"]).unwrap();
    let pid = r.proc.child.as_ref().unwrap().id();
    let listening = sh(t.gw.cmd("ss").args(["-Hltn", "sport", "= :9464"])).unwrap();
    assert!(
        listening.contains("127.0.0.1:9464") && listening.lines().count() == 1,
        "{listening}"
    );
    assert!(connect(&t.gw, "203.0.113.2:9464").is_err());

    let (body, _) = scrape(&t.gw);
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(body.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(body.contains("\r\n\r\n# HELP rport_"), "{body}");
    let (other, _) = ask(&t.gw, b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let (post, _) = ask(&t.gw, b"POST /metrics HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let rss_before = vm_rss_kib(pid);

    // A byte a second: the server gives up on it after HEAD_TIMEOUT (bounded here by
    // 3 × HEAD_TIMEOUT of writing).
    let mut slow = connect(&t.gw, ADDR).unwrap();
    let slow = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut reply = Vec::new();
        for b in b"GET /metrics HTTP/1.1\r\nHost: gw\r\n".iter().cycle() {
            if t0.elapsed() > HEAD_TIMEOUT * 3 || slow.write_all(&[*b]).is_err() {
                break;
            }
            // The server's close (after its 408, if any) shows as a readable EOF.
            slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0; 512];
            match slow.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        t0.elapsed()
    });
    // 64 MiB of request line, streamed: refused once past the head limit.
    let mut huge = connect(&t.gw, ADDR).unwrap();
    let huge = std::thread::spawn(move || {
        huge.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        if huge.write_all(b"GET /").is_ok() {
            while sent < 64 << 20 && huge.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
        }
        sent
    });
    // Meanwhile, scrapes answered, each within a second.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..5 {
        let (body, took) = scrape(&t.gw);
        assert!(body.starts_with("HTTP/1.1 200 OK"), "scrape {i}: {body:?}");
        assert!(took < Duration::from_secs(1), "scrape {i} took {took:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let sent = huge.join().unwrap();
    assert!(sent < 64 << 20, "the server read the whole 64 MiB line");
    let slow_for = slow.join().unwrap();
    assert!(
        slow_for < HEAD_TIMEOUT + Duration::from_secs(2),
        "the slow client was kept {slow_for:?}"
    );
    let rss_after = vm_rss_kib(pid);
    assert!(
        rss_after < rss_before + 32 * 1024,
        "VmRSS {rss_before} kB before, {rss_after} kB after"
    );
    eprintln!(
        "VmRSS {rss_before} kB before, {rss_after} kB after; {sent} B of the huge line sent; slow client closed after {slow_for:?}"
    );

    // More idle connections than served at once: the extra ones are closed at accept,
    // and once the held ones time out a scrape is answered again.
    let held: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|_| connect(&t.gw, ADDR).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (refused, _) = scrape(&t.gw);
    assert!(refused.is_empty(), "{refused}");
    std::thread::sleep(HEAD_TIMEOUT + Duration::from_secs(1));
    let (body, took) = scrape(&t.gw);
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    drop(held);
    drop(r);
}
