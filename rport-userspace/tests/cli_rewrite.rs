//! `rport rewrite`: one message through the binary, stdin to stdout, as the daemon would
//! forward it: the top Via rewritten and the Contact aliased with a steering tag.
use std::{
    io::Write as _,
    process::{Command, Stdio},
};

fn rewrite(args: &[&str], msg: &str) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rport"))
        .arg("rewrite")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

const REGISTER: &str = "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport\r\nContact: <sip:alice@192.168.1.50:5060;rptag=forged>;expires=60\r\nCall-ID: c1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

#[test]
fn via_rewritten_and_contact_aliased_with_a_tag_for_the_source() {
    for args in [
        &["--source", "203.0.113.1:32415"][..],
        &["--source", "203.0.113.1:32415", "--server", "198.51.100.10"],
    ] {
        let (code, out, err) = rewrite(args, REGISTER);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        let (before, after) = out.split_once(";rptag=").unwrap();
        assert_eq!(
            before,
            "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport=32415;received=203.0.113.1\r\nContact: <sip:alice@192.168.1.50:5060"
        );
        let (value, rest) = after.split_once('>').unwrap();
        assert_eq!(
            rest,
            ";expires=60\r\nCall-ID: c1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
        // The client's tag is gone; ours is a Contact tag toward the source.
        assert_eq!(out.matches("rptag").count(), 1);
        let t = rport_common::tag::decode(value.as_bytes()).unwrap();
        assert_eq!(t.kind, rport_common::tag::KIND_CONTACT);
        assert_eq!(
            (t.addr, t.port),
            (
                rport_common::addr_to_16("203.0.113.1".parse().unwrap()),
                32415
            )
        );
    }
}

#[test]
fn a_contact_at_the_source_or_malformed_goes_on_as_it_came() {
    let m = REGISTER.replace(
        "<sip:alice@192.168.1.50:5060;rptag=forged>",
        "<sip:alice@203.0.113.1:32415>",
    );
    let (code, out, _) = rewrite(&["--source", "203.0.113.1:32415"], &m);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        m.replace(";rport\r\n", ";rport=32415;received=203.0.113.1\r\n")
    );
    let m = REGISTER.replace(";expires=60", " junk");
    let (code, out, _) = rewrite(&["--source", "203.0.113.1:32415"], &m);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        m.replace(";rport\r\n", ";rport=32415;received=203.0.113.1\r\n")
    );
    // Not SIP: refused, one line.
    let (code, out, err) = rewrite(&["--source", "203.0.113.1:32415"], "hello\r\n\r\n");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.lines().count(), 1, "{err}");
}
