//! Key rotation on a running gateway: `rport run --tag-key FILE` re-reads FILE on SIGHUP.
//! A changed key makes the tags of new requests (a new key id), and a tag made under the
//! previous key still steers its response.
use std::time::{Duration, Instant};

use rport_common::Counter;
use rport_tests::{
    ns::{Bpffs, can_run, recv_udp, send_udp},
    packets::{ok_response, register},
    topo::{NatTopology, PHONE, SERVER, write_tag_key},
};

/// The top Via line of a SIP message.
fn top_via(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg)
        .lines()
        .find(|l| l.starts_with("Via:"))
        .expect("a Via")
        .to_string()
}

/// The `rptag` value of a Via line.
fn rptag(via: &str) -> String {
    let v = via
        .split(";rptag=")
        .nth(1)
        .expect("an rptag in the rewritten Via");
    v.split(';').next().unwrap().trim().to_string()
}

/// A REGISTER from the phone through its NAT and rport; the top Via the server got.
fn request(t: &NatTopology, branch: &str) -> String {
    let phone = format!("{PHONE}:5060");
    let server = format!("{SERVER}:5060");
    let got = recv_udp(&t.server, &server, Duration::from_secs(5)).unwrap();
    let via = format!("Via: SIP/2.0/UDP {PHONE}:5060;branch={branch};rport");
    send_udp(&t.phone, &phone, &server, register(&via), 1).unwrap();
    top_via(&got.join().unwrap().expect("the request reached the server"))
}

#[test]
fn sighup_rotates_the_tag_key_and_old_tags_still_steer() {
    if !can_run("key_rotation", &["ip", "nft"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    let key = t.path("tag.key");
    write_tag_key(&key).unwrap();
    let mut r = t
        .rport(&pins, &["--tag-key", key.to_str().unwrap()])
        .unwrap();
    let via1 = request(&t, "z9hG4bK-rot-1");
    let tag1 = rptag(&via1);

    // A new key in the file, then SIGHUP.
    std::fs::remove_file(&key).unwrap();
    write_tag_key(&key).unwrap();
    let pid = r.proc.child.as_ref().unwrap().id() as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let t0 = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&r.log).unwrap_or_default();
        if log.contains("SIGHUP") || t0.elapsed() > Duration::from_secs(5) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("tag key rotated"), "{log}");
    let tag2 = rptag(&request(&t, "z9hG4bK-rot-2"));
    // The key id is the tag's first hex digit (low 3 bits; bit 3 is the family).
    let id = |tag: &str| u8::from_str_radix(&tag[..1], 16).unwrap() & 7;
    assert_ne!(id(&tag1), id(&tag2), "{tag1} then {tag2}");
    assert_eq!(id(&tag2), (id(&tag1) + 1) % 8);

    // A legacy server's answer to the first request, to the private sent-by, carrying the
    // tag of the old key: steered by it (the tag decides before any binding).
    let steered = || r.counter("xdp", Counter::TagSteered.name()).unwrap();
    let before = steered();
    let got = recv_udp(&t.phone, &format!("{PHONE}:5060"), Duration::from_secs(5)).unwrap();
    send_udp(
        &t.server,
        &format!("{SERVER}:5060"),
        &format!("{PHONE}:5060"),
        ok_response(&via1),
        1,
    )
    .unwrap();
    let answer = got.join().unwrap().expect("the answer reached the phone");
    assert!(answer.starts_with(b"SIP/2.0 200 OK"));
    assert_eq!(steered() - before, 1, "steered by the old key's tag");
    r.proc.stop().unwrap();
}
