//! `rport replay` on captures written here: a NATed REGISTER, the legacy server's answer
//! to the private sent-by, a DNS query and a CRLF keep-alive; then the pcap runner of the
//! XDP contract table (tests/src/fixtures.rs): the rows' frames as captures, and what
//! replay says of each row.
use std::{net::IpAddr, path::PathBuf};

use etherparse::{NetSlice, SlicedPacket};
use rport_common::{Counter, role};
use rport_tests::{
    fixtures::{Fixture, table},
    ns::rport_bin,
    packets::*,
    xdp::can_load_bpf,
};
use rport_userspace::cli::replay;

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&[
        2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ]);
    for (i, f) in frames.iter().enumerate() {
        for x in [i as u32, 0, f.len() as u32, f.len() as u32] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(f);
    }
    v
}

#[test]
fn replay_reports_what_the_program_does() {
    if !can_load_bpf("replay_reports_what_the_program_does") {
        return;
    }
    let via = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-r1;rport";
    let resp =
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-r1;received=203.0.113.1;rport=32415";
    let file = std::env::temp_dir().join(format!("rport-replay-{}.pcap", std::process::id()));
    std::fs::write(
        &file,
        pcap(&[
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(via)),
            udp4(SERVER_V4, 5060, PHONE_V4, 5060, &ok_response(resp)),
            udp4(NAT_V4, 40000, SERVER_V4, 53, b"\x12\x34\x01\x00\x00\x01"),
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, b"\r\n\r\n"),
        ]),
    )
    .unwrap();
    let o = std::process::Command::new(rport_bin().unwrap())
        .args(["replay", "--json", "--server", "198.51.100.10"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdicts: Vec<&str> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["to-daemon", "steered", "pass", "pass"]);
    assert_eq!(v["totals"]["sip_requests"], 1);
    assert_eq!(v["totals"]["response_steered"], 1);
    assert_eq!(v["totals"]["keepalive_crlf"], 1);
    assert_eq!(v["totals"]["non_sip"], 1);

    // Not a pcap: one clear line, failure.
    let o = std::process::Command::new(rport_bin().unwrap())
        .args(["replay", "/proc/self/status"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("rport: not a pcap or pcapng file"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

/// A file removed on Drop, also when the test fails.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `rport replay --json --server …` on `frames`: its per-packet rows.
fn replay_json(frames: &[Vec<u8>], servers: &[IpAddr], tag: usize) -> Vec<serde_json::Value> {
    let file = TempFile(std::env::temp_dir().join(format!(
        "rport-replay-table-{}-{tag}.pcap",
        std::process::id()
    )));
    std::fs::write(&file.0, pcap(frames)).unwrap();
    let mut c = std::process::Command::new(rport_bin().unwrap());
    c.args(["replay", "--json"]);
    for s in servers {
        c.arg("--server").arg(s.to_string());
    }
    let o = c.arg(&file.0).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["packets"].as_array().unwrap().clone()
}

fn source(frame: &[u8]) -> Option<IpAddr> {
    match SlicedPacket::from_ethernet(frame).ok()?.net? {
        NetSlice::Ipv4(ip) => Some(ip.header().source_addr().into()),
        NetSlice::Ipv6(ip) => Some(ip.header().source_addr().into()),
    }
}

/// The frames a row puts in a capture, with the role each must get: its prior requests
/// (outside), then its own frame.
fn frames(f: &Fixture) -> Vec<(&[u8], u32)> {
    let mut v: Vec<(&[u8], u32)> = f
        .prior
        .requests
        .iter()
        .map(|r| (r.as_slice(), role::OUTSIDE))
        .collect();
    v.push((&f.frame, f.role));
    v
}

/// One capture replayed in one run: rows in order, and the servers (`--server`) that give
/// every frame in it its role.
#[derive(Default)]
struct Group<'a> {
    rows: Vec<&'a Fixture>,
    servers: Vec<IpAddr>,
}

impl<'a> Group<'a> {
    /// Takes `f` if replay's one role rule (a server's packets are inside, all others
    /// outside) still gives every frame of the group, and of `f`, its role.
    fn take(&mut self, f: &'a Fixture) -> bool {
        let mut servers = self.servers.clone();
        for (frame, r) in frames(f) {
            if r == role::INSIDE {
                match source(frame) {
                    Some(a) if !servers.contains(&a) => servers.push(a),
                    Some(_) => {}
                    None => panic!("{}: an inside frame without a source address", f.name),
                }
            }
        }
        let fits = self
            .rows
            .iter()
            .copied()
            .chain([f])
            .flat_map(frames)
            .all(|(frame, r)| replay::from_inside(frame, &servers) == (r == role::INSIDE));
        if fits {
            self.rows.push(f);
            self.servers = servers;
        }
        fits
    }
}

/// The pcap runner: every row replay can set up (replay runs one daemon socket, no
/// `--force-rport` and no tag keys), grouped into as few captures as replay's role rule allows, each
/// replayed once. Per row: the verdict replay reports for the row's frame, and the
/// counters it says moved. Rows share one program instance per capture, so whether a key
/// is new (`binding_new`) depends on the rows before: that one counter is left out here
/// (the kernel runner checks it). Everything else a row's frame does depends only on its
/// own prior requests, which come right before it.
#[test]
fn replay_agrees_with_the_fixture_table() {
    if !can_load_bpf("replay_agrees_with_the_fixture_table") {
        return;
    }
    let t = table();
    let (rows, skipped): (Vec<&Fixture>, Vec<&Fixture>) = t
        .iter()
        .partition(|f| f.prior.force_rport.is_empty() && f.prior.tag_keys.is_none());
    let mut groups: Vec<Group> = Vec::new();
    for f in rows.iter().copied() {
        if !groups.iter_mut().any(|g| g.take(f)) {
            let mut g = Group::default();
            assert!(
                g.take(f),
                "{}: replay cannot give its frames their roles",
                f.name
            );
            groups.push(g);
        }
    }
    let mut failures = Vec::new();
    for (n, g) in groups.iter().enumerate() {
        let all: Vec<Vec<u8>> = g
            .rows
            .iter()
            .flat_map(|f| frames(f))
            .map(|(frame, _)| frame.to_vec())
            .collect();
        let out = replay_json(&all, &g.servers, n);
        assert_eq!(out.len(), all.len(), "one replay row per packet");
        let mut i = 0;
        for f in &g.rows {
            i += f.prior.requests.len();
            let got = &out[i];
            i += 1;
            // Replay runs with a daemon socket on the one queue its frames arrive on: what
            // a row without one counts as `userspace_unavailable` is handed over there,
            // counted `to_userspace` for a request; a client's response with Contacts
            // handed over counts nothing more (rport-ebpf/src/decide.rs, `counters`).
            let request = f.counters.contains(&Counter::SipRequests);
            let moved: Vec<Counter> = f
                .counters
                .iter()
                .copied()
                .filter(|c| *c != Counter::Packets)
                .filter_map(|c| match c {
                    Counter::UserspaceUnavailable => request.then_some(Counter::ToUserspace),
                    c => Some(c),
                })
                .collect();
            let mut errs = Vec::new();
            // The verdict from what the row counts without a socket: to-daemon either way.
            let want = replay::verdict(f.verdict, &f.counters);
            if got["verdict"] != want {
                errs.push(format!("verdict {} want {want}", got["verdict"]));
            }
            let want: Vec<&str> = Counter::ALL
                .iter()
                .filter(|c| moved.contains(c) && **c != Counter::BindingNew)
                .map(|c| c.name())
                .collect();
            let got: Vec<&str> = got["counters"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c.as_str())
                .filter(|c| *c != Counter::BindingNew.name())
                .collect();
            if got != want {
                errs.push(format!("counters {got:?} want {want:?}"));
            }
            if !errs.is_empty() {
                failures.push(format!("{}:\n    {}", f.name, errs.join("\n    ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "pcap: {} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert!(rows.len() >= 40, "most of the table goes through replay");
    println!(
        "pcap: {} fixture rows passed in {} captures; not replayable (force-rport, tag keys): {}",
        rows.len(),
        groups.len(),
        skipped
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
}

/// `rport replay --json ARGS… FILE`: the whole report.
fn replay_file(file: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = std::process::Command::new(rport_bin().unwrap())
        .arg("replay")
        .arg("--json")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// What a capture of the legacy registrar's failure must replay to: each REGISTER handed
/// to the daemon, whose rewrite fills `rport` with the NAT's port and adds `received`; each
/// answer to the private sent-by steered to exactly that mapping. Returns how many of each.
fn check_register_replay(v: &serde_json::Value) -> (usize, usize) {
    let rows = v["packets"].as_array().unwrap();
    let mut mappings = Vec::new();
    for r in rows.iter().filter(|r| r["verdict"] == "to-daemon") {
        let w = &r["rewrite"];
        let before = w["via"]["before"].as_str().unwrap();
        let after = w["via"]["after"].as_str().unwrap();
        assert!(
            before.starts_with("SIP/2.0/UDP 192.168.1.50:5060;branch="),
            "{r:#}"
        );
        assert!(after.contains(";received=203.0.113.1"), "{r:#}");
        let port: u16 = after
            .split(";rport=")
            .nth(1)
            .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("rport not filled: {r:#}"));
        assert_ne!(port, 5060, "the NAT's port, not the phone's: {r:#}");
        assert_eq!(w["changed"], true);
        assert!(
            w["daemon"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "rewritten"),
            "{r:#}"
        );
        // The Contact gets the client's steering tag (--contact alias, the default).
        assert!(
            w["contacts"][0]["after"]
                .as_str()
                .unwrap()
                .contains(";rptag="),
            "{r:#}"
        );
        mappings.push(format!("203.0.113.1:{port}"));
    }
    let steered: Vec<&str> = rows
        .iter()
        .filter(|r| r["verdict"] == "steered")
        .map(|r| r["steered_to"].as_str().unwrap())
        .collect();
    for s in &steered {
        assert!(
            mappings.iter().any(|m| m == s),
            "steered to {s}, not a mapping {mappings:?}"
        );
    }
    assert!(
        rows.iter().all(|r| r["counters"]
            .as_array()
            .is_some_and(|c| !c.iter().any(|c| c == "userspace_unavailable"))),
        "replay runs with a daemon socket: no userspace_unavailable"
    );
    (mappings.len(), steered.len())
}

/// The capture an operator with the article's problem takes on the gateway, before rport:
/// `tcpdump -i any -Q in` (Linux cooked v2 frames) while a phone behind the NAT registers
/// with a legacy registrar that answers the private sent-by. Replayed, every REGISTER is
/// rewritten and every answer steered to the NAT mapping. With RPORT_WRITE_CAPTURES=1 the
/// capture replaces the one shipped in tests/captures/, which is replayed too.
#[test]
fn a_capture_of_the_problem_replays_to_the_fix() {
    use rport_tests::{
        ns::{Proc, can_run},
        sip::{Kamailio, Server, register_scenario, sipp_client},
        topo::{NatTopology, PHONE},
    };
    if !can_run(
        "a_capture_of_the_problem_replays_to_the_fix",
        &["ip", "nft", "kamailio", "sipp", "tcpdump"],
    ) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let _k = Kamailio::start(&t.server, "198.51.100.10", Server::LegacyRegistrar, &t.dir).unwrap();
    let file = t.path("gw.pcap");
    let mut c = t.gw.cmd("tcpdump");
    c.args(["-i", "any", "-Q", "in", "-U", "-n", "-w"])
        .arg(&file)
        .args(["udp", "port", "5060"]);
    let log = t.path("tcpdump.log");
    let mut dump = Proc::spawn(c, "tcpdump", &log).unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(t0.elapsed().as_secs() < 10, "tcpdump did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = sipp_client(
        &t.phone,
        &register_scenario(true),
        &t.dir,
        PHONE,
        5060,
        "198.51.100.10:5060",
        2,
        10,
    )
    .unwrap();
    assert_eq!(
        r.successful, 0,
        "without rport the registrar's answers are lost"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    dump.stop().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let recs = rport_userspace::capture::read(&bytes).unwrap();
    assert!(
        recs.iter()
            .all(|r| r.linktype == rport_userspace::capture::SLL2),
        "tcpdump -i any writes Linux cooked v2"
    );
    let v = replay_file(&file, &["--server", "198.51.100.10"]);
    let (requests, steered) = check_register_replay(&v);
    assert!(
        requests >= 2 && steered >= 2,
        "{requests} requests, {steered} steered: {v:#}"
    );
    if std::env::var_os("RPORT_WRITE_CAPTURES").is_some() {
        let to =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/register-legacy.pcap");
        std::fs::copy(&file, to).unwrap();
    }
    // The capture shipped with the project, made by this test.
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/register-legacy.pcap");
    let (requests, steered) =
        check_register_replay(&replay_file(&shipped, &["--server", "198.51.100.10"]));
    assert!(
        requests >= 2 && steered >= 2,
        "shipped capture: {requests} requests, {steered} steered"
    );
}

/// Without the privileges BPF_PROG_TEST_RUN needs, replay says so in one line and still
/// shows everything: verdicts from the program's host build, the rewrite, the steering.
#[test]
fn replay_without_privileges_uses_the_host_build() {
    use rport_tests::ns::can_run;
    if !can_run(
        "replay_without_privileges_uses_the_host_build",
        &["setpriv"],
    ) {
        return;
    }
    // A copy nobody can read, as an unprivileged operator's own file would be.
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/register-legacy.pcap");
    let file = TempFile(
        std::env::temp_dir().join(format!("rport-replay-nobody-{}.pcap", std::process::id())),
    );
    std::fs::copy(&shipped, &file.0).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(rport_bin().unwrap())
        .args(["replay", "--json", "--server", "198.51.100.10"])
        .arg(&file.0)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("verdicts from its host build"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["xdp"], "host");
    let (requests, steered) = check_register_replay(&v);
    assert!(
        requests >= 2 && steered >= 2,
        "{requests} requests, {steered} steered"
    );
}

/// A capture with hostile packets, made here (deterministically) and shipped as
/// tests/captures/hostile.pcap (RPORT_WRITE_CAPTURES=1 writes it): each frame with what
/// replay must say of it. None is steered, none crashes replay, and a frame cut shorter
/// than its UDP length never reaches the daemon.
fn hostile_frames() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-h1;rport";
    let mut truncated = udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(good));
    truncated.truncate(truncated.len() - 40);
    let many_vias: String = (0..1000)
        .map(|i| {
            format!(
                "Via: SIP/2.0/UDP 10.0.0.{}:5060;branch=z9hG4bK-{i}\r\n",
                i % 250
            )
        })
        .collect();
    let params: String = (0..2000).map(|i| format!(";p{i}")).collect();
    vec![
        (
            "good REGISTER",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(good)),
            "to-daemon",
        ),
        ("cut short of its UDP length", truncated, "pass"),
        (
            "NUL bytes in the sent-by",
            udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                &register("Via: SIP/2.0/UDP 192.168.1.50\0:5060;branch=z9hG4bK-h2;rport"),
            ),
            "pass",
        ),
        (
            "rport with a junk value",
            udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                &register("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-h3;rport=abc"),
            ),
            // A junk value is replaced by the observed port (docs/ARCHITECTURE.md).
            "to-daemon",
        ),
        (
            "1,000 Via headers",
            udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                &register(many_vias.trim_end()),
            ),
            "any",
        ),
        (
            "thousands of parameters",
            udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                &register(&format!("{good}{params}")),
            ),
            "any",
        ),
        (
            "a response without Via, from the server",
            udp4(
                SERVER_V4,
                5060,
                PHONE_V4,
                5060,
                b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n",
            ),
            "pass",
        ),
        (
            "invalid UTF-8 and bare CR line ends",
            udp4(
                NAT_V4,
                NAT_PORT,
                SERVER_V4,
                5060,
                b"REGISTER sip:x SIP/2.0\rVia: SIP/2.0/UDP \xff\xfe:5060;rport\r\r\n",
            ),
            "any",
        ),
        (
            "good REGISTER again",
            udp4(NAT_V4, NAT_PORT, SERVER_V4, 5060, &register(good)),
            "to-daemon",
        ),
    ]
}

#[test]
fn a_hostile_capture_replays_without_harm() {
    let frames: Vec<Vec<u8>> = hostile_frames().into_iter().map(|(_, f, _)| f).collect();
    let made = pcap(&frames);
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/hostile.pcap");
    if std::env::var_os("RPORT_WRITE_CAPTURES").is_some() {
        std::fs::write(&shipped, &made).unwrap();
    }
    assert!(
        std::fs::read(&shipped).unwrap() == made,
        "tests/captures/hostile.pcap is not what this test makes: RPORT_WRITE_CAPTURES=1"
    );
    if !can_load_bpf("a_hostile_capture_replays_without_harm") {
        return;
    }
    let v = replay_file(&shipped, &["--server", "198.51.100.10"]);
    let rows = v["packets"].as_array().unwrap();
    assert_eq!(rows.len(), frames.len());
    for ((what, _, want), r) in hostile_frames().iter().zip(rows) {
        assert_ne!(r["verdict"], "steered", "{what}: {r:#}");
        if *want != "any" {
            assert_eq!(r["verdict"], *want, "{what}: {r:#}");
        }
        if let Some(w) = r.get("rewrite") {
            // What the daemon gets is rewritten or left alone, and counted either way.
            assert!(
                !w["daemon"].as_array().unwrap().is_empty() || w.get("error").is_some(),
                "{what}: {r:#}"
            );
        }
    }
    let after = rows.last().unwrap();
    assert!(
        after["rewrite"]["via"]["after"]
            .as_str()
            .unwrap()
            .contains(";received=203.0.113.1"),
        "{after:#}"
    );
}
