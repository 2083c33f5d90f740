//! The XDP program attached natively to a veth in a network namespace, driven by real
//! packets from the peer namespace; counters and bindings read back both through the
//! pinned maps and through `rport stats` / `rport bindings` run by a separate
//! `ip netns exec`, as an operator would.
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use rport_common::{Binding, Counter, maps};
use rport_tests::{ns::*, packets::register};

fn stats(gw: &Ns, rport: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let out = sh(gw.cmd(rport).args(["stats", "--json"]))?;
    Ok(serde_json::from_str(&out)?)
}

#[test]
fn native_attach_records_bindings_and_counts() {
    if !can_run("native_attach_records_bindings_and_counts", &["ip"]) {
        return;
    }
    let rport = rport_bin().unwrap();
    let gw = Ns::new("rpgw").unwrap();
    let peer = Ns::new("rppeer").unwrap();
    veth(&gw, "out0", &peer, "cli0").unwrap();
    // The inside interface: a veth with both ends in the gateway namespace.
    veth(&gw, "in0", &gw, "in0p").unwrap();
    gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "out0"])
        .unwrap();
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "cli0"])
        .unwrap();
    let pins = Bpffs::new().unwrap();
    let pin_dir = pins.dir.join("rport");
    let log = std::env::temp_dir().join(unique("rport-run-log-"));
    let mut c = gw.cmd(&rport);
    c.args([
        "run",
        "--outside",
        "out0",
        "--inside",
        "in0",
        "--xdp-mode",
        "native",
        "--metrics",
        "127.0.0.1:9464",
        "--pin-path",
    ])
    .arg(&pin_dir);
    let mut daemon = Proc::spawn(c, "rport run", &log).unwrap();

    // Ready when `rport stats` answers (a separate `ip netns exec`).
    let t = Instant::now();
    while stats(&gw, &rport).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "daemon not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let link = gw.ip(&["link", "show", "out0"]).unwrap();
    assert!(link.contains(" xdp "), "native XDP not attached: {link}");

    let msg = register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-ns1;rport");
    send_udp(&peer, "192.0.2.2:40000", "192.0.2.1:5060", msg, 3).unwrap();
    send_udp(
        &peer,
        "192.0.2.2:40001",
        "192.0.2.1:53",
        b"not sip".to_vec(),
        2,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // Through the pinned maps.
    let counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
        Map::from_map_data(MapData::from_pin(pin_dir.join(maps::COUNTERS)).unwrap()).unwrap(),
    )
    .unwrap();
    let get = |c: Counter| -> u64 { counters.get(&(c as u32), 0).unwrap().iter().sum() };
    assert_eq!(get(Counter::SipRequests), 3);
    assert_eq!(get(Counter::RportEmpty), 3);
    assert_eq!(get(Counter::SentByPrivate), 3);
    assert_eq!(get(Counter::BindingRecorded), 3);
    // Handed to the daemon, or passed on when no AF_XDP socket took it: never lost.
    assert_eq!(
        get(Counter::ToUserspace) + get(Counter::UserspaceUnavailable),
        3
    );
    assert!(
        get(Counter::NonSip) >= 2,
        "the two datagrams to port 53 are not SIP"
    );
    let bindings: HashMap<MapData, u64, Binding> = HashMap::try_from(
        Map::from_map_data(MapData::from_pin(pin_dir.join(maps::BINDINGS)).unwrap()).unwrap(),
    )
    .unwrap();
    let all: Vec<(u64, Binding)> = bindings.iter().map(|r| r.unwrap()).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    let (key, b) = all[0];
    assert_eq!(
        key,
        rport_common::hash::transaction_key(b"z9hG4bK-ns1", b"", 0, b"")
    );
    assert_eq!(b.source().to_string(), "192.0.2.2:40000");
    assert_eq!(b.destination().to_string(), "192.0.2.1:5060");
    assert_eq!(b.requests, 3);

    // Through the daemon's control socket, from another `ip netns exec`.
    let s = stats(&gw, &rport).unwrap();
    assert_eq!(s["xdp"]["sip_requests"], 3);
    assert_eq!(s["bindings_live"], 1);
    let bl: serde_json::Value =
        serde_json::from_str(&sh(gw.cmd(&rport).args(["bindings", "--json"])).unwrap()).unwrap();
    assert_eq!(bl[0]["source"], "192.0.2.2:40000");
    assert_eq!(bl[0]["sent_by"], "192.168.1.50:5060");

    // A real HTTP scrape of the Prometheus endpoint, inside the gateway's namespace.
    let body = gw
        .within(|| -> anyhow::Result<String> {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9464")?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        })
        .unwrap()
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for line in [
        "rport_xdp_sip_requests_total 3",
        "rport_xdp_rport_empty_total 3",
        "rport_bindings_live 1",
        "rport_binding_age_seconds_count 1",
        "rport_binding_age_seconds_bucket{le=\"20\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in:\n{body}"
        );
    }
    if let Some(promtool) = which("promtool") {
        let text = body.split("\r\n\r\n").nth(1).unwrap().to_string();
        let mut c = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "promtool check metrics failed");
    } else {
        eprintln!(
            "promtool not installed (Debian package prometheus): exposition checked by the assertions above only"
        );
    }

    // SIGTERM detaches.
    let st = daemon.stop().unwrap();
    assert!(
        st.success(),
        "rport run exited with {st}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let link = gw.ip(&["link", "show", "out0"]).unwrap();
    assert!(
        !link.contains(" xdp"),
        "still attached after SIGTERM: {link}"
    );
    let _ = std::fs::remove_file(&log);
}

fn which(tool: &str) -> Option<String> {
    sh(std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn no_daemon_gives_one_clear_line() {
    if !can_run("no_daemon_gives_one_clear_line", &["ip"]) {
        return;
    }
    let rport = rport_bin().unwrap();
    let ns = Ns::new("rpnone").unwrap();
    let o = ns.cmd(&rport).arg("stats").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no rport daemon is running"), "{err}");
    let o = ns
        .cmd(&rport)
        .args(["run", "--outside", "nope0", "--inside", "nope1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no interface named \"nope0\""), "{err}");
}
