//! `rport replay` on a capture written here: a NATed REGISTER, the legacy server's answer
//! to the private sent-by, a DNS query and a CRLF keep-alive.
use rport_tests::{ns::rport_bin, packets::*, xdp::can_load_bpf};

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
    assert!(err.starts_with("rport: not a pcap file"), "{err}");
    assert_eq!(err.lines().count(), 1);
}
