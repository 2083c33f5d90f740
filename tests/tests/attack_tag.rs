//! Attacks on tag steering, on the wire: a gateway running rport, a phone behind a real
//! NAT (the victim), a legacy server (played by the test: it answers the private sent-by
//! of the Via it is given), and an attacker on the gateway's outside (203.0.113.66, a
//! namespace of its own, an outside interface of rport). In every case the victim's answer
//! still reaches the victim, nothing reaches the attacker (a capture on its interface sees
//! no UDP), and what rport refused is counted.
//!
//! Each case would fail without its check: a forged or foreign tag whose check were gone
//! would steer to the target it names, the attacker's own address (so its capture would
//! see the datagram); a replayed tag steered by `received` or a reused branch steered by
//! the binding (which the attacker's request overwrote) would go to the attacker too.
use std::{io::Read as _, time::Duration};

use rport_common::{Counter, tag};
use rport_tests::{
    capture::Capture,
    ns::{Bpffs, Ns, can_run, recv_udp, send_udp},
    packets::{ok_response, register},
    topo::{ATTACKER, GW_ATTACKER_IF, NatTopology, PHONE, Rport, SERVER},
};

/// How many datagrams each attack sends.
const N: usize = 20;

fn top_via(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg)
        .lines()
        .find(|l| l.starts_with("Via:"))
        .expect("a Via")
        .to_string()
}

fn rptag(via: &str) -> String {
    let v = via
        .split(";rptag=")
        .nth(1)
        .expect("an rptag in the rewritten Via");
    v.split(';').next().unwrap().trim().to_string()
}

fn random<const L: usize>() -> [u8; L] {
    let mut b = [0u8; L];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}

/// A request from `ns` (`from`) to the server with the top Via `via`; the top Via the
/// server got (after rport's rewrite).
fn request(t: &NatTopology, ns: &Ns, from: &str, via: &str) -> String {
    let server = format!("{SERVER}:5060");
    let got = recv_udp(&t.server, &server, Duration::from_secs(5)).unwrap();
    send_udp(ns, from, &server, register(via), 1).unwrap();
    top_via(&got.join().unwrap().expect("the request reached the server"))
}

/// The legacy server's answer carrying `via`, to the private sent-by, `n` times.
fn answer(t: &NatTopology, via: &str, n: usize) {
    send_udp(
        &t.server,
        &format!("{SERVER}:5060"),
        &format!("{PHONE}:5060"),
        ok_response(via),
        n,
    )
    .unwrap();
}

/// The answer reaches the victim.
fn victim_gets(t: &NatTopology, via: &str) {
    let got = recv_udp(&t.phone, &format!("{PHONE}:5060"), Duration::from_secs(5)).unwrap();
    answer(t, via, 1);
    let m = got
        .join()
        .unwrap()
        .expect("the victim's answer reached the victim");
    assert!(m.starts_with(b"SIP/2.0 200 OK"));
}

/// Counter deltas of `names` over `f`.
fn deltas(r: &Rport, names: &[Counter], f: impl FnOnce()) -> Vec<u64> {
    let read = || -> Vec<u64> {
        names
            .iter()
            .map(|c| r.counter("xdp", c.name()).unwrap())
            .collect()
    };
    let before = read();
    f();
    // The counters are read from the maps: the last datagram may still be on its way.
    std::thread::sleep(Duration::from_millis(200));
    read().iter().zip(&before).map(|(a, b)| a - b).collect()
}

/// A Via tag toward the attacker (203.0.113.66:5060) for responses of the server, signed
/// with `key` under key id 1 (what a stolen-format, wrong-key forgery looks like).
fn tag_for_attacker(key: &[u8; 16]) -> String {
    let target = rport_common::addr_to_16(ATTACKER.parse().unwrap());
    let server = rport_common::addr_to_16(SERVER.parse().unwrap());
    let now = rport_userspace::datapath::keys::tai_now_s();
    let t = tag::Tag::new(1, tag::KIND_VIA, target, 5060, now).sign(key, &server, 5060, 0);
    String::from_utf8(tag::encode(&t).as_bytes().to_vec()).unwrap()
}

/// UDP datagrams that arrived at the attacker.
fn udp_at(c: &Capture) -> usize {
    use etherparse::{SlicedPacket, TransportSlice};
    c.frames()
        .iter()
        .filter(|f| {
            matches!(
                SlicedPacket::from_ethernet(f).map(|p| p.transport),
                Ok(Some(TransportSlice::Udp(_)))
            )
        })
        .count()
}

#[test]
fn attacks_on_tags_steer_nothing_to_the_attacker() {
    if !can_run("attack_tag", &["ip", "nft"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let atk = t.attacker().unwrap();
    let pins = Bpffs::new().unwrap();
    let r = t.rport(&pins, &["--outside", GW_ATTACKER_IF]).unwrap();
    let cap = Capture::start(&atk, "atk0").unwrap();
    let me = format!("{ATTACKER}:5060");
    let base = format!("Via: SIP/2.0/UDP {PHONE}:5060");
    use Counter::*;

    // The victim's transaction, through its NAT and rport: the server has its tagged Via.
    let victim = request(
        &t,
        &t.phone,
        &format!("{PHONE}:5060"),
        &format!("{base};branch=z9hG4bK-victim;rport"),
    );
    let victim_tag = rptag(&victim);

    // 1. A forged tag (random hex) smuggled in a request under the victim's sent-by: the
    // rewrite replaces it with a tag of its own, toward the attacker's observed source.
    let hex: String = random::<19>().iter().map(|b| format!("{b:02x}")).collect();
    let smuggled = request(
        &t,
        &atk,
        &me,
        &format!("{base};branch=z9hG4bK-atk-1;rport;rptag={hex}"),
    );
    let theirs = rptag(&smuggled);
    assert_ne!(theirs, hex, "a client's rptag never reaches the server");
    assert_eq!(smuggled.matches(";rptag=").count(), 1, "{smuggled}");
    // The target in the tag (after K, T and 8 digits of time) is the attacker itself.
    assert_eq!(&theirs[10..18], "cb007142", "{theirs}");

    // 2. Forged tags in responses, from the server's side (as if the attacker reached it
    // another way): random hex, and tags toward the attacker under another key.
    let forged = format!("{base};branch=z9hG4bK-f;received={ATTACKER};rport=5060;rptag={hex}");
    let other_key = format!(
        "{base};branch=z9hG4bK-k;received={ATTACKER};rport=5060;rptag={}",
        tag_for_attacker(&random::<16>())
    );
    let d = deltas(&r, &[TagInvalid, TagSteered], || {
        answer(&t, &forged, N);
        answer(&t, &other_key, N);
    });
    assert_eq!(d, [2 * N as u64, 0], "tag_invalid, tag_steered");

    // 3. The forgery sent as a response by the attacker itself, from the outside: refused
    // by the MAC (checked before the interface's role).
    let d = deltas(&r, &[TagInvalid, TagSteered], || {
        send_udp(
            &atk,
            &me,
            &format!("{PHONE}:5060"),
            ok_response(&other_key),
            N,
        )
        .unwrap();
    });
    assert_eq!(d, [N as u64, 0], "tag_invalid, tag_steered");

    // 4. The victim's real tag replayed with the attacker's `received`/`rport`: the tag
    // alone decides, toward the address it was made for, the victim's NAT mapping.
    let (nat, port) = {
        let p = |k: &str| {
            victim
                .split(&format!(";{k}="))
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        };
        (p("received"), p("rport"))
    };
    let replayed = victim
        .replace(&format!("received={nat}"), &format!("received={ATTACKER}"))
        .replace(&format!("rport={port}"), "rport=5060");
    assert!(replayed.contains(&victim_tag) && replayed.contains(ATTACKER));
    let d = deltas(&r, &[TagSteered, TagInvalid], || victim_gets(&t, &replayed));
    assert_eq!(d, [1, 0], "tag_steered, tag_invalid");

    // 5. The attacker reuses the victim's branch (same sent-by, same Call-ID: the same
    // transaction key), overwriting the victim's binding with its own source. The answer
    // to the victim carries the victim's tag, which decides before any binding.
    let reused = request(
        &t,
        &atk,
        &me,
        &format!("{base};branch=z9hG4bK-victim;rport"),
    );
    assert_ne!(rptag(&reused), victim_tag);
    let d = deltas(&r, &[TagSteered, BindingSteered], || {
        victim_gets(&t, &victim)
    });
    assert_eq!(d, [1, 0], "tag_steered, binding_steered");

    assert_eq!(udp_at(&cap), 0, "nothing reached the attacker");
    // The capture sees what does reach the attacker: the answer to its own request of 1,
    // steered by the tag rport made for it.
    let d = deltas(&r, &[TagSteered], || answer(&t, &smuggled, 1));
    assert_eq!(d, [1]);
    assert_eq!(udp_at(&cap), 1, "the attacker's own answer reached it");
}
