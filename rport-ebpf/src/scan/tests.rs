use super::*;
use rport_common::hash::{FNV_OFFSET, bytes, transaction_key};

const CLASS: u32 =
    flags::SENT_BY_PRIVATE | flags::SENT_BY_CGNAT | flags::SENT_BY_NAME | flags::SENT_BY_V6;
const RPORT_BITS: u32 = flags::RPORT_EMPTY | flags::RPORT_VALUE;
const CALL_ID: &str = "a84b4c76e66710@pc33.example.com";

/// Feeds `msg` one byte at a time until `step` says stop, then `finish()`es, as the XDP
/// side does. Returns the scanner and how many bytes were fed (the stopping one included).
fn feed(msg: &[u8]) -> (Scan, usize) {
    let mut s = Scan::new();
    let mut n = 0;
    for &c in msg {
        n += 1;
        if !s.step(c) {
            break;
        }
    }
    s.finish();
    // Whatever the caller (bpf_loop here, `run` on the host), the result is the same.
    if msg.len() <= rport_common::SCAN_WINDOW as usize {
        assert_eq!(s, Scan::run(msg), "feed and run disagree");
        assert_eq!(s, Scan::run_chunked(msg), "feed and run_chunked disagree");
    }
    (s, n)
}

#[test]
fn first_lf_finds_the_first_line_feed_in_a_word() {
    assert_eq!(first_lf(u64::from_le_bytes(*b"abcdefgh")), None);
    for k in 0..8 {
        let mut b = *b"abcdefgh";
        b[k] = b'\n';
        assert_eq!(first_lf(u64::from_le_bytes(b)), Some(k as u32), "{b:?}");
        // A second LF and bytes that differ from LF by one bit do not confuse it.
        b[7] = b'\n';
        assert_eq!(first_lf(u64::from_le_bytes(b)), Some(k as u32));
        let mut c = [0x0b_u8, 0x0a ^ 0x80, 0x09, 0x8a, 0x00, 0xff, 0x0e, 0x1a];
        assert_eq!(first_lf(u64::from_le_bytes(c)), None, "{c:?}");
        c[k] = b'\n';
        assert_eq!(first_lf(u64::from_le_bytes(c)), Some(k as u32), "{c:?}");
    }
}

fn scan(msg: &str) -> Scan {
    feed(msg.as_bytes()).0
}

/// An INVITE with `via` (one or more full header lines, no trailing CRLF) first.
fn invite(via: &str) -> String {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n{via}\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: {CALL_ID}\r\n\
         CSeq: 314159 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn h(s: &str) -> u64 {
    bytes(FNV_OFFSET, s.as_bytes())
}

fn ok(s: &Scan) {
    assert_eq!(s.found & found::VIA, found::VIA, "{s:?}");
    assert_eq!(s.found & found::VIA_DONE, found::VIA_DONE, "{s:?}");
    assert_eq!(s.found & found::MALFORMED, 0, "{s:?}");
}

/// The scan without the byte positions (for comparing differently spaced messages).
fn results(s: &Scan) -> Scan {
    Scan {
        fed: 0,
        via_start: 0,
        via_end: 0,
        ..*s
    }
}

fn malformed(s: &Scan) {
    assert_eq!(
        s.found & (found::VIA | found::VIA_DONE | found::MALFORMED),
        found::VIA | found::VIA_DONE | found::MALFORMED,
        "{s:?}"
    );
}

#[test]
fn new_starts_from_fnv_offset() {
    let s = Scan::new();
    assert_eq!(s.state, State::FIRST_LINE);
    assert_eq!(s.branch_hash, FNV_OFFSET);
    assert_eq!(s.host_hash, FNV_OFFSET);
    assert_eq!(s.callid_hash, FNV_OFFSET);
    assert_eq!(s.v4_ok, 1);
    assert_eq!(s.found, 0);
    assert_eq!(s.flags, 0);
    assert_eq!(s.sent_by_v4(), None);
}

#[test]
fn via_first_with_cookie_stops_after_the_via() {
    let msg = invite("Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds");
    let (s, n) = feed(msg.as_bytes());
    // Stops on the first byte of the next header: nothing more is needed.
    let next = msg.find("Max-Forwards").unwrap();
    assert_eq!(n, next + 1);
    assert_eq!(s.state, State::DONE);
    assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
    assert_eq!(s.flags, flags::MAGIC_COOKIE);
    assert_eq!(s.port, 5060);
    assert_eq!(s.rport, 0);
    assert_eq!(s.host_len, 12);
    assert_eq!(s.branch_len, 16);
    assert_eq!(s.host_hash, h("203.0.113.10"));
    assert_eq!(s.branch_hash, h("z9hG4bK776asdhds"));
    assert_eq!(s.callid_hash, FNV_OFFSET);
    assert_eq!(s.sent_by_v4(), Some([203, 0, 113, 10]));
    assert_eq!(s.key(), h("z9hG4bK776asdhds"));
    assert_eq!(
        s.key(),
        transaction_key(b"z9hG4bK776asdhds", b"203.0.113.10", 5060, b"")
    );
}

#[test]
fn status_line_response_is_scanned_too() {
    let msg = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKr;rport=41234;received=198.51.100.7\r\n\r\n";
    let s = scan(msg);
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::HEADERS_END
    );
    assert_eq!(
        s.flags,
        flags::MAGIC_COOKIE | flags::RPORT_VALUE | flags::RECEIVED
    );
    assert_eq!(s.rport, 41234);
    assert_eq!(s.port, 5060);
}

#[test]
fn via_after_other_headers() {
    let msg = "REGISTER sip:registrar.example.com SIP/2.0\r\n\
               To: <sip:alice@example.com>\r\n\
               From: <sip:alice@example.com>;tag=456248\r\n\
               Call-ID: 843817637684230@998sdasdh09\r\n\
               CSeq: 1826 REGISTER\r\n\
               Via: SIP/2.0/UDP 192.168.1.50:5070;branch=z9hG4bKnashds7\r\n\r\n";
    let s = scan(msg);
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
    );
    assert_eq!(s.flags, flags::MAGIC_COOKIE | flags::SENT_BY_PRIVATE);
    assert_eq!(s.port, 5070);
    assert_eq!(s.host_hash, h("192.168.1.50"));
    assert_eq!(s.callid_hash, h("843817637684230@998sdasdh09"));
    assert_eq!(s.sent_by_v4(), Some([192, 168, 1, 50]));
}

#[test]
fn request_line_and_body_are_not_headers() {
    // "Via:" in the request line and in the body after the empty line are ignored.
    let msg = "MESSAGE sip:Via:x@example.com SIP/2.0\r\n\
               Call-ID: c1\r\n\
               Content-Length: 40\r\n\r\n\
               Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbody\r\n";
    let (s, n) = feed(msg.as_bytes());
    assert_eq!(s.found, found::CALL_ID | found::HEADERS_END);
    assert_eq!(n, msg.find("\r\n\r\n").unwrap() + 4);
    assert_eq!(s.flags, 0);
    assert_eq!(s.host_len, 0);
}

#[test]
fn compact_forms() {
    let msg = "BYE sip:bob@example.com SIP/2.0\r\n\
               v: SIP/2.0/UDP 198.51.100.2:5062;branch=legacy1\r\n\
               i: compact-call-id\r\n\r\n";
    let s = scan(msg);
    ok(&s);
    assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
    assert_eq!(s.flags, 0);
    assert_eq!(s.port, 5062);
    assert_eq!(s.branch_hash, h("legacy1"));
    assert_eq!(s.callid_hash, h("compact-call-id"));
    assert_eq!(
        s.key(),
        transaction_key(b"legacy1", b"198.51.100.2", 5062, b"compact-call-id")
    );
    // Uppercase compact forms too.
    let s2 = scan(&msg.replace("v:", "V:").replace("i:", "I:"));
    assert_eq!(s2, s);
}

#[test]
fn header_names_are_case_insensitive() {
    let lower = scan(&invite("via: SIP/2.0/UDP 198.51.100.2:5060;branch=b1"));
    let upper =
        scan(&invite("VIA: SIP/2.0/UDP 198.51.100.2:5060;branch=b1").replace("Call-ID", "CALL-ID"));
    let mixed =
        scan(&invite("vIA: SIP/2.0/UDP 198.51.100.2:5060;branch=b1").replace("Call-ID", "call-id"));
    ok(&lower);
    assert_eq!(lower.found & found::CALL_ID, found::CALL_ID);
    assert_eq!(lower.port, 5060);
    assert_eq!(lower.callid_hash, h(CALL_ID));
    assert_eq!(upper, lower);
    assert_eq!(mixed, lower);
    // Parameter names too; values (the branch) are case-sensitive.
    let p = scan(&invite(
        "Via: SIP/2.0/UDP 198.51.100.2;RPort;BRANCH=z9hG4bKX;Received=1.2.3.4",
    ));
    assert_eq!(
        p.flags,
        flags::RPORT_EMPTY | flags::MAGIC_COOKIE | flags::RECEIVED
    );
    assert_eq!(p.branch_hash, h("z9hG4bKX"));
}

#[test]
fn not_via_lookalike_names() {
    let msg = "INVITE sip:x SIP/2.0\r\n\
               Viaduct: SIP/2.0/UDP 10.0.0.1:1;branch=z9hG4bKno\r\n\
               X-Via: SIP/2.0/UDP 10.0.0.1:1;branch=z9hG4bKno\r\n\
               Vi: SIP/2.0/UDP 10.0.0.1:1;branch=z9hG4bKno\r\n\
               VeryLongHeaderNameVia: x\r\n\r\n";
    let s = scan(msg);
    assert_eq!(s.found, found::HEADERS_END);
    assert_eq!(s.flags, 0);
}

#[test]
fn whitespace_everywhere_it_is_allowed() {
    let tight = scan(&invite(
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKabc;received=1.2.3.4",
    ));
    let loose = scan(&invite(
        "Via \t : SIP / 2.0 /  UDP \t 10.0.0.1 : 5060 ; rport ; branch = z9hG4bKabc ;\treceived =  1.2.3.4 ",
    ));
    for s in [&tight, &loose] {
        assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
        assert_eq!(
            s.flags,
            flags::RPORT_EMPTY | flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE | flags::RECEIVED
        );
        assert_eq!(s.port, 5060);
        assert_eq!(s.rport, 0);
        assert_eq!(s.host_len, 8);
        assert_eq!(s.host_hash, h("10.0.0.1"));
        assert_eq!(s.branch_hash, h("z9hG4bKabc"));
        assert_eq!(s.sent_by_v4(), Some([10, 0, 0, 1]));
    }
    assert_eq!(tight.key(), loose.key());
    // No whitespace at all between the parts that may have it, and a value for rport.
    let s = scan(&invite(
        "Via:SIP/2.0/UDP 10.0.0.1:5060;rport = 7 ;branch=z9hG4bKabc",
    ));
    ok(&s);
    assert_eq!(s.rport, 7);
    assert_eq!(
        s.flags,
        flags::RPORT_VALUE | flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE
    );
}

#[test]
fn folded_via() {
    let straight = scan(&invite(
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKfold",
    ));
    for via in [
        "Via: SIP/2.0/UDP 10.0.0.1:5060\r\n ;rport\r\n\t;branch=z9hG4bKfold",
        "Via: SIP/2.0/UDP\r\n 10.0.0.1:5060;rport;branch=z9hG4bKfold",
        "Via:\r\n SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKfold",
        "Via: SIP/2.0/UDP 10.0.0.1\r\n :5060;rport;branch=z9hG4bKfold",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport\r\n  ;  branch=z9hG4bKfold",
    ] {
        let s = scan(&invite(via));
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH,
            "{via:?}"
        );
        assert_eq!(
            s.flags,
            flags::RPORT_EMPTY | flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE,
            "{via:?}"
        );
        assert_eq!(s.port, 5060, "{via:?}");
        assert_eq!(s.host_hash, h("10.0.0.1"), "{via:?}");
        assert_eq!(s.branch_hash, h("z9hG4bKfold"), "{via:?}");
        assert_eq!(s.key(), straight.key(), "{via:?}");
    }
}

#[test]
fn folded_call_id_is_hashed_without_whitespace() {
    let msg = "INVITE sip:x SIP/2.0\r\n\
               Via: SIP/2.0/UDP 198.51.100.9:5060;branch=old\r\n\
               Call-ID: abc\r\n def \r\n\r\n";
    let s = scan(msg);
    assert_eq!(s.callid_hash, h("abcdef"));
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
    );
    assert_eq!(
        s.key(),
        transaction_key(b"old", b"198.51.100.9", 5060, b"abc\r\n def ")
    );
}

#[test]
fn only_the_first_value_on_the_line_counts() {
    let msg = invite(
        "Via: SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bKfirst, SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKsecond;rport=1",
    );
    let (s, n) = feed(msg.as_bytes());
    // Cookie branch: done at the comma.
    assert_eq!(n, msg.find(',').unwrap() + 1);
    assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
    assert_eq!(s.flags, flags::MAGIC_COOKIE);
    assert_eq!(s.port, 5070);
    assert_eq!(s.rport, 0);
    assert_eq!(s.host_hash, h("198.51.100.1"));
    assert_eq!(s.branch_hash, h("z9hG4bKfirst"));

    // Legacy branch: the rest of the line is skipped and the Call-ID still read.
    let s = scan(&invite(
        "Via: SIP/2.0/UDP 198.51.100.1:5070;branch=abc , SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKx;rport=1;received=q",
    ));
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID
    );
    assert_eq!(s.flags, 0);
    assert_eq!(s.port, 5070);
    assert_eq!(s.branch_hash, h("abc"));
    assert_eq!(
        s.key(),
        transaction_key(b"abc", b"198.51.100.1", 5070, CALL_ID.as_bytes())
    );

    // Comma right after the host or the port, or after a valueless parameter.
    for via in [
        "Via: SIP/2.0/UDP 198.51.100.1,SIP/2.0/UDP 10.0.0.2:1;rport",
        "Via: SIP/2.0/UDP 198.51.100.1 ,SIP/2.0/UDP 10.0.0.2:1;rport",
        "Via: SIP/2.0/UDP 198.51.100.1:5070,SIP/2.0/UDP 10.0.0.2:1;rport",
        "Via: SIP/2.0/UDP 198.51.100.1:5070;lr,SIP/2.0/UDP 10.0.0.2:1;rport",
    ] {
        let s = scan(&invite(via));
        ok(&s);
        assert_eq!(s.flags, 0, "{via:?}");
        assert_eq!(s.host_hash, h("198.51.100.1"), "{via:?}");
    }
}

#[test]
fn second_via_header_is_ignored() {
    let msg = "INVITE sip:x SIP/2.0\r\n\
               Via: SIP/2.0/UDP 198.51.100.1:5070;branch=1\r\n\
               Via: SIP/2.0/TCP 10.0.0.9:5999;rport=7;branch=z9hG4bKsecond;received=x\r\n\
               v: SIP/2.0/UDP [fd00::1];rport\r\n\
               Call-ID: id1\r\n\r\n";
    let s = scan(msg);
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
    );
    assert_eq!(s.flags, 0);
    assert_eq!(s.port, 5070);
    assert_eq!(s.rport, 0);
    assert_eq!(s.host_hash, h("198.51.100.1"));
    assert_eq!(s.branch_hash, h("1"));
    assert_eq!(s.sent_by_v4(), Some([198, 51, 100, 1]));
    assert_eq!(
        s.key(),
        transaction_key(b"1", b"198.51.100.1", 5070, b"id1")
    );
}

#[test]
fn second_call_id_header_is_ignored() {
    let s = scan(
        "INVITE sip:x SIP/2.0\r\nCall-ID: one\r\nVia: SIP/2.0/UDP h;branch=x\r\ni: two\r\nCall-ID: three\r\n\r\n",
    );
    assert_eq!(s.callid_hash, h("one"));
}

#[test]
fn no_via() {
    let msg = "OPTIONS sip:x@example.com SIP/2.0\r\nTo: <sip:x@example.com>\r\n\r\nbody";
    let (s, n) = feed(msg.as_bytes());
    assert_eq!(s.found, found::HEADERS_END);
    // Stops on the LF of the empty line.
    assert_eq!(n, msg.len() - 4);
    assert_eq!(n, 62);
    assert_eq!(s.state, State::DONE);
    assert_eq!(s.flags, 0);
    assert_eq!(s.sent_by_v4(), None);

    let s = scan("OPTIONS sip:x SIP/2.0\r\nCall-ID: q\r\n\r\n");
    assert_eq!(s.found, found::CALL_ID | found::HEADERS_END);

    // LF-only line ends work the same.
    let s = scan("OPTIONS sip:x SIP/2.0\nCall-ID: q\n\n");
    assert_eq!(s.found, found::CALL_ID | found::HEADERS_END);

    // Headers never end within the bytes: neither flag.
    let s = scan("OPTIONS sip:x SIP/2.0\r\nTo: <sip:x>\r\nFrom: <sip:y>");
    assert_eq!(s.found, 0);

    let s = scan("");
    assert_eq!(s.found, 0);
    assert_eq!(s, Scan::new());
}

#[test]
fn lf_only_line_ends() {
    let s = scan(
        "INVITE sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=old\n ;rport=5\nCall-ID: c\n\n",
    );
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
    );
    assert_eq!(s.flags, flags::SENT_BY_PRIVATE | flags::RPORT_VALUE);
    assert_eq!(s.rport, 5);
    assert_eq!(s.key(), transaction_key(b"old", b"10.0.0.1", 5060, b"c"));
}

fn via(params: &str) -> Scan {
    scan(&invite(&format!(
        "Via: SIP/2.0/UDP 198.51.100.1:5060{params}"
    )))
}

#[test]
fn rport_absent_empty_value() {
    // (params, flags & RPORT_BITS, rport)
    let cases: &[(&str, u32, u32)] = &[
        (";branch=z9hG4bK1", 0, 0),
        (";branch=z9hG4bK1;rport", flags::RPORT_EMPTY, 0),
        (";rport;branch=z9hG4bK1", flags::RPORT_EMPTY, 0),
        (";rport", flags::RPORT_EMPTY, 0),
        (";rport ", flags::RPORT_EMPTY, 0),
        (";rport=1234", flags::RPORT_VALUE, 1234),
        (";rport=1234;branch=z9hG4bK1", flags::RPORT_VALUE, 1234),
        (";branch=z9hG4bK1;rport=1234", flags::RPORT_VALUE, 1234),
        (";rport = 1234 ;branch=z9hG4bK1", flags::RPORT_VALUE, 1234),
        (";rport=0", flags::RPORT_VALUE, 0),
        (";rport=65535", flags::RPORT_VALUE, 65535),
        (";rport=00080", flags::RPORT_VALUE, 80),
        // Present but unusable: treated as empty, value cleared.
        (";rport=65536", flags::RPORT_EMPTY, 0),
        (";rport=99999", flags::RPORT_EMPTY, 0),
        (";rport=123456", flags::RPORT_EMPTY, 0),
        (";rport=abc", flags::RPORT_EMPTY, 0),
        (";rport=12a", flags::RPORT_EMPTY, 0),
        // Not rport.
        (";rports=1", 0, 0),
        (";xrport", 0, 0),
    ];
    for &(params, want, rport) in cases {
        let s = via(params);
        ok(&s);
        assert_eq!(s.flags & RPORT_BITS, want, "{params:?}");
        assert_eq!(s.rport, rport, "{params:?}");
        assert_eq!(s.port, 5060, "{params:?}");
    }
    // `=` and no value is not `rport` without a value: it breaks the grammar.
    for params in [
        ";rport=",
        ";rport=;branch=z9hG4bK1",
        ";rport = ",
        ";rport= ,x",
    ] {
        malformed(&via(params));
    }
}

#[test]
fn received_present_or_not() {
    for (params, want) in [
        (";branch=z9hG4bK1", 0),
        (";received=203.0.113.5;branch=z9hG4bK1", flags::RECEIVED),
        (";branch=z9hG4bK1;received=203.0.113.5", flags::RECEIVED),
        (";received;branch=z9hG4bK1", flags::RECEIVED),
        (";branch=z9hG4bK1;received", flags::RECEIVED),
        (";receive=1.2.3.4", 0),
        (";receivedx=1.2.3.4", 0),
    ] {
        let s = via(params);
        ok(&s);
        assert_eq!(s.flags & flags::RECEIVED, want, "{params:?}");
    }
    malformed(&via(";received="));
    malformed(&via(";received=;rport"));
}

#[test]
fn magic_cookie_detection() {
    for (branch, cookie) in [
        ("z9hG4bK", true),
        ("z9hG4bK74bf9", true),
        ("z9hG4bK-d8754z-1", true),
        ("z9hG4b", false),
        ("z9hg4bK74bf9", false),
        ("Z9hG4bK74bf9", false),
        ("xz9hG4bK74bf9", false),
        ("74bf9", false),
    ] {
        let s = via(&format!(";branch={branch}"));
        ok(&s);
        assert_eq!(s.found & found::BRANCH, found::BRANCH, "{branch:?}");
        assert_eq!(s.flags & flags::MAGIC_COOKIE != 0, cookie, "{branch:?}");
        assert_eq!(s.branch_hash, h(branch), "{branch:?}");
        assert_eq!(s.branch_len as usize, branch.len(), "{branch:?}");
    }
    // `=` and no value: malformed. A branch without `=`, and none at all.
    malformed(&via(";branch="));
    malformed(&via(";branch= ;lr"));
    let s = via(";branch");
    assert_eq!(s.found & found::BRANCH, found::BRANCH);
    assert_eq!(s.branch_hash, FNV_OFFSET);
    let s = via(";lr");
    assert_eq!(s.found & found::BRANCH, 0);
    assert_eq!(s.branch_hash, FNV_OFFSET);
    assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
}

#[test]
fn key_with_and_without_cookie() {
    let with_call_id = |via: &str, call_id: &str| scan(&invite(via).replace(CALL_ID, call_id));
    // Legacy branch: the Call-ID is part of the key.
    let legacy = "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=1234";
    let a = with_call_id(legacy, "call-a@host");
    let b = with_call_id(legacy, "call-b@host");
    assert_eq!(a.found & found::CALL_ID, found::CALL_ID);
    assert_eq!(a.flags & flags::MAGIC_COOKIE, 0);
    assert_ne!(a.callid_hash, b.callid_hash);
    assert_ne!(a.key(), b.key());
    assert_eq!(
        a.key(),
        transaction_key(b"1234", b"198.51.100.1", 5060, b"call-a@host")
    );
    assert_eq!(
        b.key(),
        transaction_key(b"1234", b"198.51.100.1", 5060, b"call-b@host")
    );
    // Same Call-ID, other sent-by host or port: other key.
    let c = with_call_id(
        "Via: SIP/2.0/UDP 198.51.100.2:5060;branch=1234",
        "call-a@host",
    );
    let d = with_call_id(
        "Via: SIP/2.0/UDP 198.51.100.1:5061;branch=1234",
        "call-a@host",
    );
    let e = with_call_id("Via: SIP/2.0/UDP 198.51.100.1;branch=1234", "call-a@host");
    assert_ne!(a.key(), c.key());
    assert_ne!(a.key(), d.key());
    assert_ne!(a.key(), e.key());

    // Cookie branch: the Call-ID (never even read) does not matter.
    let cookie = "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK1234";
    let a = with_call_id(cookie, "call-a@host");
    let b = with_call_id(cookie, "call-b@host");
    assert_eq!(a.found & found::CALL_ID, 0);
    assert_eq!(a.key(), b.key());
    assert_eq!(a.key(), h("z9hG4bK1234"));
    // Nor does the sent-by.
    let c = with_call_id(
        "Via: SIP/2.0/TCP [2001:db8::9]:7000;branch=z9hG4bK1234",
        "x",
    );
    assert_eq!(a.key(), c.key());
    // Call-ID before the Via, with a cookie: read anyway, key unchanged.
    let s = scan(
        "INVITE sip:x SIP/2.0\r\nCall-ID: early\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK1234\r\n\r\n",
    );
    assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
    assert_eq!(s.key(), a.key());
}

#[test]
fn key_matches_transaction_key() {
    // (Via line, branch, host, port, Call-ID line, Call-ID value)
    let cases: &[(&str, &str, &str, u16, &str, &str)] = &[
        (
            "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKa",
            "z9hG4bKa",
            "198.51.100.1",
            5060,
            "Call-ID: x",
            "x",
        ),
        (
            "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=legacy",
            "legacy",
            "198.51.100.1",
            5060,
            "Call-ID: x",
            "x",
        ),
        (
            "Via: SIP/2.0/UDP pbx.example.com;branch=legacy;rport",
            "legacy",
            "pbx.example.com",
            0,
            "i: 12@host",
            "12@host",
        ),
        (
            "v: SIP/2.0/TLS [2001:db8::1]:5062;received=1.2.3.4",
            "",
            "[2001:db8::1]",
            5062,
            "Call-ID:  spaced id \t",
            "spaced id",
        ),
        (
            "Via: SIP/2.0/UDP 10.0.0.1 : 5060 ; branch = old ; rport = 9",
            "old",
            "10.0.0.1",
            5060,
            "Call-ID: a\r\n b",
            "ab",
        ),
        (
            "Via: SIP/2.0/UDP h:1;branch=z9hG4bK",
            "z9hG4bK",
            "h",
            1,
            "Call-ID: c",
            "c",
        ),
    ];
    for &(via, branch, host, port, cid_line, cid) in cases {
        let msg = format!(
            "INVITE sip:x SIP/2.0\r\n{via}\r\nTo: <sip:x>\r\n{cid_line}\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        let s = scan(&msg);
        ok(&s);
        assert_eq!(s.port, port as u32, "{via:?}");
        assert_eq!(s.host_hash, h(host), "{via:?}");
        assert_eq!(s.host_len as usize, host.len(), "{via:?}");
        assert_eq!(s.branch_hash, h(branch), "{via:?}");
        assert_eq!(
            s.key(),
            transaction_key(branch.as_bytes(), host.as_bytes(), port, cid.as_bytes()),
            "{via:?}"
        );
    }
}

#[test]
fn sent_by_classification() {
    // (host, class flags, sent_by_v4)
    let cases: &[(&str, u32, Option<[u8; 4]>)] = &[
        ("203.0.113.7", 0, Some([203, 0, 113, 7])),
        ("8.8.8.8", 0, Some([8, 8, 8, 8])),
        ("0.0.0.0", 0, Some([0, 0, 0, 0])),
        ("255.255.255.255", 0, Some([255, 255, 255, 255])),
        ("10.0.0.1", flags::SENT_BY_PRIVATE, Some([10, 0, 0, 1])),
        (
            "10.255.255.254",
            flags::SENT_BY_PRIVATE,
            Some([10, 255, 255, 254]),
        ),
        ("11.0.0.1", 0, Some([11, 0, 0, 1])),
        ("9.255.255.255", 0, Some([9, 255, 255, 255])),
        ("172.16.0.1", flags::SENT_BY_PRIVATE, Some([172, 16, 0, 1])),
        (
            "172.31.255.255",
            flags::SENT_BY_PRIVATE,
            Some([172, 31, 255, 255]),
        ),
        ("172.15.0.1", 0, Some([172, 15, 0, 1])),
        ("172.32.0.1", 0, Some([172, 32, 0, 1])),
        (
            "192.168.0.1",
            flags::SENT_BY_PRIVATE,
            Some([192, 168, 0, 1]),
        ),
        (
            "192.168.255.255",
            flags::SENT_BY_PRIVATE,
            Some([192, 168, 255, 255]),
        ),
        ("192.169.0.1", 0, Some([192, 169, 0, 1])),
        ("192.167.0.1", 0, Some([192, 167, 0, 1])),
        ("100.64.0.1", flags::SENT_BY_CGNAT, Some([100, 64, 0, 1])),
        (
            "100.127.255.254",
            flags::SENT_BY_CGNAT,
            Some([100, 127, 255, 254]),
        ),
        ("100.63.255.255", 0, Some([100, 63, 255, 255])),
        ("100.128.0.1", 0, Some([100, 128, 0, 1])),
        ("pbx.example.com", flags::SENT_BY_NAME, None),
        ("localhost", flags::SENT_BY_NAME, None),
        ("1.2.3", flags::SENT_BY_NAME, None),
        ("1.2.3.4.5", flags::SENT_BY_NAME, None),
        ("256.1.1.1", flags::SENT_BY_NAME, None),
        ("1.2.3.1000", flags::SENT_BY_NAME, None),
        ("1..2.3", flags::SENT_BY_NAME, None),
        ("1.2.3.", flags::SENT_BY_NAME, None),
        (".1.2.3", flags::SENT_BY_NAME, None),
        ("10.0.0.1a", flags::SENT_BY_NAME, None),
        ("[2001:db8::1]", flags::SENT_BY_V6, None),
        ("[::1]", flags::SENT_BY_V6, None),
        ("[fe80::1]", flags::SENT_BY_V6, None),
        (
            "[fd00::1]",
            flags::SENT_BY_V6 | flags::SENT_BY_PRIVATE,
            None,
        ),
        (
            "[fc12:3456::1]",
            flags::SENT_BY_V6 | flags::SENT_BY_PRIVATE,
            None,
        ),
        (
            "[FD00::1]",
            flags::SENT_BY_V6 | flags::SENT_BY_PRIVATE,
            None,
        ),
        ("[f::1]", flags::SENT_BY_V6, None),
        ("[fe::1]", flags::SENT_BY_V6, None),
    ];
    for &(host, class, v4) in cases {
        for port in ["", ":5062"] {
            for end in [";branch=z9hG4bK1", "", " ;rport"] {
                let via = format!("Via: SIP/2.0/UDP {host}{port}{end}");
                let s = scan(&invite(&via));
                ok(&s);
                assert_eq!(s.flags & CLASS, class, "{via:?}");
                assert_eq!(s.sent_by_v4(), v4, "{via:?}");
                assert_eq!(s.host_len as usize, host.len(), "{via:?}");
                assert_eq!(s.host_hash, h(host), "{via:?}");
                assert_eq!(s.port, if port.is_empty() { 0 } else { 5062 }, "{via:?}");
            }
        }
    }
}

#[test]
fn ipv6_sent_by_with_port() {
    let s = scan(&invite(
        "Via: SIP/2.0/UDP [2001:db8::1]:5062;rport;branch=z9hG4bKv6",
    ));
    assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
    assert_eq!(
        s.flags,
        flags::SENT_BY_V6 | flags::RPORT_EMPTY | flags::MAGIC_COOKIE
    );
    assert_eq!(s.port, 5062);
    assert_eq!(s.host_len, 13);
    assert_eq!(s.host_hash, h("[2001:db8::1]"));
    assert_eq!(s.v4, 0);
    assert_eq!(s.sent_by_v4(), None);
    // Whitespace after the closing bracket.
    let t = scan(&invite(
        "Via: SIP/2.0/UDP [2001:db8::1] : 5062 ; rport ; branch=z9hG4bKv6",
    ));
    assert_eq!(results(&t), results(&s));
}

#[test]
fn missing_port_is_zero() {
    for via in [
        "Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1 ;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1",
        "Via: SIP/2.0/UDP pbx.example.com",
        "Via: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1",
        "Via: SIP/2.0/UDP [2001:db8::1]",
    ] {
        let s = scan(&invite(via));
        ok(&s);
        assert_eq!(s.port, 0, "{via:?}");
    }
    // A second ":port" after the port is junk.
    malformed(&via(":0;branch=z9hG4bK1"));
    let s = scan(&invite("Via: SIP/2.0/UDP 198.51.100.1:0;branch=z9hG4bK1"));
    ok(&s);
    assert_eq!(s.port, 0);
    let s = scan(&invite("Via: SIP/2.0/UDP 198.51.100.1:65535"));
    ok(&s);
    assert_eq!(s.port, 65535);
}

#[test]
fn malformed_vias() {
    for via in [
        // Bad ports.
        "Via: SIP/2.0/UDP 198.51.100.1:99999;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1:65536;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1:123456;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1:abc;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1:50a0;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1:;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 198.51.100.1:",
        "Via: SIP/2.0/UDP 198.51.100.1: ",
        "Via: SIP/2.0/UDP [2001:db8::1]:x",
        // Empty host.
        "Via: SIP/2.0/UDP ;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP :5060;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP ,SIP/2.0/UDP 10.0.0.1",
        "Via: SIP/2.0/UDP",
        "Via: SIP/2.0/UDP   ",
        "Via: SIP/2.0/",
        "Via: SIP/2.0",
        "Via:",
        // Junk where a separator belongs.
        "Via: SIP/2.0;branch=z9hG4bK1",
        "Via: SIP/2.0,UDP 10.0.0.1",
        "Via: SIP/2.0/UDP 10.0.0.1 junk;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP [2001:db8::1]x;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP 10.0.0.1:5060 junk",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1 junk",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;lr junk",
    ] {
        let s = scan(&invite(via));
        malformed(&s);
        if s.flags & flags::MAGIC_COOKIE == 0 {
            // Without a cookie seen first, the scan goes on for the Call-ID.
            assert_eq!(s.found & found::CALL_ID, found::CALL_ID, "{via:?}");
            assert_eq!(s.callid_hash, h(CALL_ID), "{via:?}");
        } else {
            assert_eq!(s.found & found::CALL_ID, 0, "{via:?}");
        }
    }
}

#[test]
fn cut_off_values() {
    // The scanned bytes end inside the Via value (window end): incomplete, so malformed.
    for msg in [
        "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
        "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport",
        "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060",
        "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1",
        "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8",
        "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP",
        "INVITE sip:x SIP/2.0\r\nVia:",
    ] {
        let s = scan(msg);
        malformed(&s);
        assert_eq!(s.found & found::HEADERS_END, 0, "{msg:?}");
    }
    // Ending on the line break after the Via value: complete.
    let s = scan("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport=12\r\n");
    assert_eq!(s.found, found::VIA | found::VIA_DONE);
    assert_eq!(s.flags, flags::RPORT_VALUE | flags::SENT_BY_PRIVATE);
    assert_eq!(s.rport, 12);
    let s = scan("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n");
    assert_eq!(s.found, found::VIA | found::VIA_DONE);
    assert_eq!(s.sent_by_v4(), Some([10, 0, 0, 1]));
    // A Call-ID cut short counts as read (what was there is hashed).
    let s = scan("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=1\r\nCall-ID: abc");
    assert_eq!(
        s.found,
        found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID
    );
    assert_eq!(s.callid_hash, h("abc"));
}

#[test]
fn run_stops_at_the_scan_window() {
    let filler = "x".repeat(rport_common::SCAN_WINDOW as usize);
    let msg = format!(
        "INVITE sip:x SIP/2.0\r\nX-Pad: {filler}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\r\n"
    );
    let s = Scan::run(msg.as_bytes());
    assert_eq!(s.found, 0);
    // Fed everything, the Via is found.
    let (s, _) = feed(msg.as_bytes());
    ok(&s);
    assert_eq!(s.flags, flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE);
}

#[test]
fn long_names_and_values() {
    // A parameter name longer than 8 bytes is not mistaken for a known one.
    let s = via(";branchbranch=z9hG4bK1;rportrport;receivedx");
    ok(&s);
    assert_eq!(s.flags, 0);
    assert_eq!(s.found & found::BRANCH, 0);
    // A long branch is hashed whole.
    let long = format!("z9hG4bK{}", "0123456789".repeat(30));
    let s = via(&format!(";branch={long}"));
    ok(&s);
    assert_eq!(s.branch_hash, h(&long));
    assert_eq!(s.branch_len as usize, long.len());
    assert_eq!(s.flags, flags::MAGIC_COOKIE);
    // A long host name (letters) too.
    let host = format!("{}.example.com", "a".repeat(200));
    let s = scan(&invite(&format!("Via: SIP/2.0/UDP {host}:5060")));
    ok(&s);
    assert_eq!(s.host_hash, h(&host));
    assert_eq!(s.host_len as usize, host.len());
    assert_eq!(s.flags, flags::SENT_BY_NAME);
}

/// Regression: the IPv4-literal octet accumulator used to overflow (a debug panic) on
/// host names with 10 or more digits.
#[test]
fn digit_heavy_host_name_does_not_overflow() {
    for host in [
        "sip-gw-20240115-0001.example.net",
        "a1b2c3d4e5f6g7h8i9j0.invalid",
        "9999999999",
    ] {
        let s = scan(&invite(&format!("Via: SIP/2.0/UDP {host};branch=z9hG4bK1")));
        ok(&s);
        assert_eq!(s.flags, flags::SENT_BY_NAME | flags::MAGIC_COOKIE);
        assert_eq!(s.host_hash, h(host));
    }
}

fn invariants(s: &Scan, what: &dyn core::fmt::Debug) {
    if let Err(rule) = s.check_invariants() {
        panic!("{rule}: {s:?}: {what:?}");
    }
}

#[test]
fn every_prefix_is_safe() {
    let samples = [
        invite("Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bK776asdhds;received=1.2.3.4"),
        invite(
            "v : SIP / 2.0 / UDP [fd00::1] : 5062\r\n ; rport = 41 ; branch = legacy , SIP/2.0/UDP x",
        ),
        invite("Via: SIP/2.0/UDP 100.64.0.1:99999;branch=x"),
        "SIP/2.0 200 OK\nCall-ID: a\n b\nVIA: SIP/2.0/TCP pbx.example.com;branch=1\n\nbody"
            .to_string(),
    ];
    for msg in &samples {
        let m = msg.as_bytes();
        for len in 0..=m.len() {
            let (s, n) = feed(&m[..len]);
            assert!(n <= len);
            invariants(&s, &String::from_utf8_lossy(&m[..len]));
        }
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `count` pseudo-random messages: even ones any bytes, odd ones made of the bytes a Via
/// is made of (so the deep states get visited); two thirds start inside a Via value.
/// With `max_digits`, digits past that many in one message are replaced by `x`.
fn sweep(seed: u64, count: usize, max_digits: Option<usize>) -> u32 {
    let mut r = XorShift(seed);
    let alphabet = b"Via:v SIP/2.0UDP;,=[]:\r\n\r\n \t\t0123456789.abcdefz9hG4bKrportreceivedbranchCall-IDi\"\\";
    let mut hits = 0u32;
    for i in 0..count {
        let len = (r.next() % 300) as usize;
        let mut m = Vec::with_capacity(len + 40);
        if i % 3 != 0 {
            m.extend_from_slice(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP ");
        }
        let mut digits = 0;
        for _ in 0..len {
            let x = r.next();
            let mut c = if i % 2 == 0 {
                x as u8
            } else {
                alphabet[(x % alphabet.len() as u64) as usize]
            };
            if c.is_ascii_digit() {
                digits += 1;
                if max_digits.is_some_and(|d| digits > d) {
                    c = b'x';
                }
            }
            m.push(c);
        }
        let (s, _) = feed(&m);
        invariants(&s, &String::from_utf8_lossy(&m));
        if s.found & found::VIA != 0 {
            hits += 1;
        }
    }
    hits
}

#[test]
fn random_bytes_do_not_panic() {
    // At most 9 digits per message: most messages reach a Via; the unrestricted sweep
    // is below.
    for seed in [0x9e37_79b9_7f4a_7c15, 1, 0xdead_beef] {
        let hits = sweep(seed, 4000, Some(9));
        // The prefixed two thirds all reach a Via.
        assert!(hits >= 2666, "{hits}");
    }
}

#[test]
fn random_bytes_do_not_panic_unrestricted() {
    // Used to panic at message 61: host "f55eb0\r4/f02i0roDvr4UV94" (10 digits).
    sweep(0x9e37_79b9_7f4a_7c15, 6000, None);
}

#[test]
fn unclosed_or_empty_ipv6_reference_is_malformed() {
    for via in [
        "Via: SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1",
        "Via: SIP/2.0/UDP [2001:db8::1,SIP/2.0/UDP 192.0.2.1",
        "Via: SIP/2.0/UDP [];branch=z9hG4bK1",
        "Via: SIP/2.0/UDP [2001:db8::1",
    ] {
        let s = scan(&invite(via));
        assert_eq!(s.found & found::MALFORMED, found::MALFORMED, "{via}: {s:?}");
    }
    let s = scan(&invite(
        "Via: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1",
    ));
    ok(&s);
    assert_eq!(s.port, 5062);
}

#[test]
fn states_are_named_in_order() {
    let all = [
        State::FIRST_LINE,
        State::LINE_START,
        State::NAME,
        State::NAME_WS,
        State::SKIP_LINE,
        State::PROTO_WS,
        State::PROTO,
        State::PROTO_SLASH,
        State::TRANSPORT_WS,
        State::TRANSPORT,
        State::HOST_WS,
        State::HOST,
        State::HOST6,
        State::AFTER_HOST,
        State::PORT_WS,
        State::PORT,
        State::PARAMS,
        State::PNAME_WS,
        State::PNAME,
        State::PNAME_END,
        State::PVAL_WS,
        State::PVAL,
        State::QUOTED,
        State::QUOTED_ESC,
        State::CALLID_WS,
        State::CALLID,
        State::FOLD,
        State::CR,
        State::DONE,
        State::RURI,
        State::RURI_PNAME,
        State::RURI_TAG,
    ];
    let mut names = std::collections::HashSet::new();
    for (i, st) in all.iter().enumerate() {
        assert_eq!(st.0, i as u32, "{st:?}");
        assert!(names.insert(st.name()), "{st:?}");
        assert_eq!(
            st.in_via(),
            (State::PROTO_WS.0..=State::QUOTED_ESC.0).contains(&st.0)
        );
        assert_eq!(st.in_ruri(), st.0 >= State::RURI.0);
    }
    assert_eq!(State(32).name(), "?");
    assert_eq!(format!("{:?}", State::HOST6), "HOST6(12)");
    // Plain u32 in memory: what the per-CPU map value holds.
    assert_eq!(core::mem::size_of::<State>(), 4);
}

/// `Via: SIP/2.0/UDP 192.0.2.1` + `rest`, scanned inside an INVITE.
fn v(rest: &str) -> Scan {
    scan(&invite(&format!("Via: SIP/2.0/UDP 192.0.2.1{rest}")))
}

#[test]
fn grammar_accepts() {
    // (after the sent-by host, flags & (RPORT_BITS | RECEIVED))
    for (rest, want) in [
        (";x=\"a;b,c\";rport", flags::RPORT_EMPTY),
        (";x=\"esc\\\"q\";rport", flags::RPORT_EMPTY),
        (";x=\"a\\\\\";rport", flags::RPORT_EMPTY),
        (";x=\"fold\r\n ed\";rport", flags::RPORT_EMPTY),
        (";x=\"\r\n\t\";rport", flags::RPORT_EMPTY),
        (";x=\"é ~!#[]\";rport", flags::RPORT_EMPTY),
        (";x=\"\";rport=9", flags::RPORT_VALUE),
        (";x=\"\\\x01\"", 0),
        (";x=\"a\" ;rport", flags::RPORT_EMPTY),
        (";rport=\"7\"", flags::RPORT_EMPTY),
        (";maddr=[2001:db8::1];rport", flags::RPORT_EMPTY),
        (";received=2001:db8::9", flags::RECEIVED),
        (";received=\"x\"", flags::RECEIVED),
        (";x = y ;ttl=1", 0),
        (";x_y.z~!%*+`'=a-b", 0),
        ("\t;rport", flags::RPORT_EMPTY),
        (":5060\r\n ;rport\r\n\t", flags::RPORT_EMPTY),
        (";rport=1,", flags::RPORT_VALUE),
        (";rport=1 , junk ;rport", flags::RPORT_VALUE),
    ] {
        let s = v(rest);
        ok(&s);
        assert_eq!(s.flags & (RPORT_BITS | flags::RECEIVED), want, "{rest:?}");
    }
    for via in [
        "Via: sip/2.0/udp h",
        "Via: SIP/2.0\r\n /UDP h",
        "Via: x!/y~/z* h",
        "Via: SIP/2.0/UDP PBX-1.example.com.",
        "Via: SIP/2.0/UDP [::1]",
    ] {
        ok(&scan(&invite(via)));
    }
}

#[test]
fn grammar_refuses() {
    for via in [
        // sent-protocol: three tokens, two slashes, then LWS.
        "Via: SIP 2.0/UDP h",
        "Via: SIP//UDP h",
        "Via: SIP/2.0/UDP/X h",
        "Via: S\"P/2.0/UDP h",
        "Via: /2.0/UDP h",
        "Via: SIP/2.0/UDP[::1]",
        "Via: SIP/2.0/UDP;h",
        "Via: SIP/2.0/ UDP",
        "Via: SIP/2.0/UDP@ h",
        // host.
        "Via: SIP/2.0/UDP a_b.invalid",
        "Via: SIP/2.0/UDP h@x",
        "Via: SIP/2.0/UDP 1.2.3.4x!",
        "Via: SIP/2.0/UDP [g::1]",
        "Via: SIP/2.0/UDP [::1 ]",
        "Via: SIP/2.0/UDP [::1]]",
        "Via: SIP/2.0/UDP é.example",
    ] {
        malformed(&scan(&invite(via)));
    }
    for rest in [
        // port: 1 to 5 digits, at most 65535.
        ":000080",
        ":5060x",
        ":5060:1",
        // Parameters: a token name after every `;`, a value after every `=`.
        ";",
        ";;rport",
        "; ;rport",
        ";rport;",
        ";=1",
        ";x:",
        ";x:y;rport",
        ";x=a\"b",
        ";x=a b",
        ";a\x7fb",
        ";x=\u{e9}",
        // Quoted strings: closed, qdtext or an escaped qchar only.
        ";x=\"open",
        ";x=\"open;rport",
        ";x=\"a\"b",
        ";x=\"\x01\"",
        ";x=\"\x7f\"",
        ";x=\"\\\u{e9}\"",
        ";x=\"bad\\\r\n x\"",
        ";x=\"cut\r\nMax-Forwards: 1",
        // RFC 3261 via-branch is a token.
        ";branch=\"z9hG4bK1\"",
        // Known parameters once each.
        ";rport;rport",
        ";rport=1;RPORT",
        ";branch=a;branch=b",
        ";branch;branch=z9hG4bK1",
        ";rptag=1;rptag=2",
        // Junk where a separator belongs.
        " junk",
        ";rport junk",
        ";rport=1 2",
        // Bare CR: no character class holds it.
        "\r;rport",
        ";rp\rort",
        ";rport\r",
        ";x=\"a\rb\"",
        ":50\r60",
    ] {
        let s = v(rest);
        malformed(&s);
        // The line still ends where it does: the Call-ID on a later line is read.
        if s.flags & flags::MAGIC_COOKIE == 0 {
            assert_eq!(s.callid_hash, h(CALL_ID), "{rest:?}");
        }
    }
    // A bare CR before the sent-by, and one in the whitespace after the colon.
    malformed(&scan(&invite("Via: SIP/2.0/UDP\r 192.0.2.1")));
    malformed(&scan(&invite("Via: \rSIP/2.0/UDP 192.0.2.1")));
}

#[test]
fn value_range_excludes_whitespace_and_later_values() {
    for (via, value) in [
        ("Via: SIP/2.0/UDP 10.0.0.1", "SIP/2.0/UDP 10.0.0.1"),
        (
            "Via:  SIP / 2.0 / UDP 10.0.0.1 : 5060 ; rport \t",
            "SIP / 2.0 / UDP 10.0.0.1 : 5060 ; rport",
        ),
        (
            "v:SIP/2.0/UDP h;x=\"a, b\" , SIP/2.0/UDP k",
            "SIP/2.0/UDP h;x=\"a, b\"",
        ),
        ("Via:\r\n SIP/2.0/UDP h;rport\r\n ", "SIP/2.0/UDP h;rport"),
        ("Via: SIP/2.0/UDP [::1]:5060,x", "SIP/2.0/UDP [::1]:5060"),
        ("Via: SIP/2.0/UDP h:1;lr=\"\"", "SIP/2.0/UDP h:1;lr=\"\""),
    ] {
        let m = invite(via);
        let s = scan(&m);
        ok(&s);
        let start = m.find(value).unwrap();
        assert_eq!(
            (s.via_start as usize, s.via_end as usize),
            (start, start + value.len()),
            "{via:?}"
        );
    }
}

#[test]
fn carriage_returns_outside_the_via() {
    // A CR in a header name: not a Via (nor a Call-ID).
    let s = scan("INVITE x SIP/2.0\r\nVia\r: SIP/2.0/UDP h\r\nV\ria: SIP/2.0/UDP h\r\n\r\n");
    assert_eq!(s.found, found::HEADERS_END);
    let s = scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nCall-ID\r: a\r\n\r\n");
    assert_eq!(s.found & found::CALL_ID, 0);
    // A line holding CR CR is not the empty line; a line starting with a bare CR is junk.
    let s =
        scan("INVITE x SIP/2.0\r\nTo: a\r\n\r\r\n\rVia: x\r\nVia: SIP/2.0/UDP h;branch=1\r\n\r\n");
    ok(&s);
    assert_eq!(s.host_hash, h("h"));
    // A bare CR right after the Via line's break ends the Via and starts a junk line.
    let s = scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\n\rCall-ID: c\r\n\r\n");
    ok(&s);
    assert_eq!(s.found & found::CALL_ID, 0);
    assert_eq!(s.found & found::HEADERS_END, found::HEADERS_END);
    // In the Call-ID a bare CR is skipped, as the transaction key skips it.
    let s = scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nCall-ID: a\rb\r\n\r\n");
    assert_eq!(s.callid_hash, h("ab"));
    assert_eq!(s.key(), transaction_key(b"1", b"h", 0, b"a\rb"));
    // CR CR LF after the Via value: the first CR is bare.
    malformed(&scan(
        "INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\r\nCall-ID: c\r\n\r\n",
    ));
}

/// The cases a fuzz campaign found through the live gateway (the request as the client
/// sent it): each one the XDP program took for a good Via, or one the rewrite edited.
#[test]
fn fuzz_found_vias_are_malformed() {
    for via in [
        // The rewrite inserted its edit before the `:`, in the middle of the Via.
        "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport;x:",
        // An unterminated quote swallowed the edit (and a second pass added another).
        "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;x=\"open",
        // The rewrite stopped at `:` and never saw the rport after it.
        "Via: SIP/2.0/UDP 192.168.1.50:5060;x:y;rport",
        // Two rport parameters in the result.
        "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;b2.168.1.50:5060;rport",
        // Junk after the port.
        "Via: SIP/2.0/UDP 192.168.1.50:5060x;rport",
        // A bare CR in the sent-by: the scanner skipped it, the rewrite stopped there.
        "Via: SIP/2.0/UDP 192.168.1.50\r:5060;branch=legacy;rport",
    ] {
        malformed(&scan(&invite(via)));
    }
}

/// Two `received` are a good Via: Kamailio's replies append their own after rport's, and
/// the response must still be steered. (The rewrite refuses such a request.)
#[test]
fn received_twice_is_not_malformed() {
    let s = Scan::run_chunked(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport=8803;received=203.0.113.1;rptag=10;received=203.0.113.1\r\nCall-ID: a\r\n\r\n",
    );
    assert_eq!(
        s.found & (found::VIA | found::MALFORMED | found::TAG),
        found::VIA | found::TAG
    );
    assert_eq!(s.tag_len, 2);
    assert_eq!(s.tag[0] & 0xffff, u16::from_le_bytes(*b"10") as u64);
}

#[test]
fn scan_ending_on_a_carriage_return() {
    // The scanned bytes end right after a CR (a window cut): the value it was in is
    // closed as if the CR were not there.
    let s = scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nCall-ID: abc\r");
    assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
    assert_eq!(s.callid_hash, h("abc"));
    // In a Via value: cut off, so malformed.
    malformed(&scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;rport\r"));
    // After the Via's line break: the Via is complete.
    let s = scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;rport\r\n\r");
    ok(&s);
    assert_eq!(s.found & found::HEADERS_END, 0);
    // CR CR LF in a Call-ID: the first CR is bare and skipped.
    let s = scan("INVITE x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nCall-ID: a\r\r\n\r\n");
    assert_eq!(s.callid_hash, h("a"));
    assert_eq!(s.found & found::HEADERS_END, found::HEADERS_END);
}

/// [`feed`] for a [`Scan::with`]`(look)`, checked against both host drivers.
fn feed_as(look: u32, msg: &[u8]) -> Scan {
    let mut s = Scan::with(look);
    for &c in msg {
        if !s.step(c) {
            break;
        }
    }
    s.finish();
    assert_eq!(s, Scan::run_as(look, msg), "feed and run disagree");
    assert_eq!(
        s,
        Scan::run_chunked_as(look, msg),
        "feed and run_chunked disagree"
    );
    s
}

/// The bytes [`Scan::tag`] holds.
fn tag_text(s: &Scan) -> Vec<u8> {
    let n = (s.tag_len as usize).min(64);
    s.tag.iter().flat_map(|w| w.to_le_bytes()).take(n).collect()
}

/// A request from a server to a phone, Request-URI `uri`, with a top Via of its own.
fn server_request(line: &str) -> Vec<u8> {
    format!(
        "{line}\r\nVia: SIP/2.0/UDP 198.51.100.10;branch=z9hG4bK-s1\r\n\
         Max-Forwards: 70\r\nCall-ID: {CALL_ID}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@198.51.100.10>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn request_uri_tag_is_read_only_when_asked() {
    const T: &str = "1101234567c0a801320fa1deadbeef01234567";
    let line = format!("INVITE sip:100@192.168.1.50:5060;rptag={T} SIP/2.0");
    let m = server_request(&line);
    let s = feed_as(look::RURI_TAG, &m);
    ok(&s);
    assert_ne!(s.found & found::RURI_TAG, 0);
    assert_eq!(tag_text(&s), T.as_bytes());
    // The rest of the message is scanned as always: same Via results as without look.
    let plain = feed_as(look::VIA, &m);
    assert_eq!(plain.found & (found::RURI_TAG | found::TAG), 0);
    assert_eq!(plain.tag_len, 0);
    assert_eq!(results(&s).key(), results(&plain).key());
    assert_eq!(s.flags, plain.flags);
}

#[test]
fn request_uri_tag_forms() {
    const T: &str = "0123abcd";
    let cases: &[(&str, Option<&str>)] = &[
        // Where the value ends: SP, `;`, `?`, `>`-less URIs, CR, LF.
        ("INVITE sip:a@h;rptag=0123abcd SIP/2.0", Some(T)),
        (
            "INVITE sip:a@h;rptag=0123abcd;transport=udp SIP/2.0",
            Some(T),
        ),
        (
            "INVITE sip:a@h;transport=udp;rptag=0123abcd SIP/2.0",
            Some(T),
        ),
        ("INVITE sip:a@h;rptag=0123abcd?X-Y=z SIP/2.0", Some(T)),
        ("INVITE sip:a@h;RpTaG=0123abcd SIP/2.0", Some(T)),
        // The first one counts.
        ("INVITE sip:a@h;rptag=0123abcd;rptag=ffff SIP/2.0", Some(T)),
        // Not the name: longer, shorter, no value sign.
        ("INVITE sip:a@h;rptagx=0123abcd SIP/2.0", None),
        ("INVITE sip:a@h;xrptag=0123abcd SIP/2.0", None),
        ("INVITE sip:a@h;rpta=0123abcd SIP/2.0", None),
        ("INVITE sip:a@h;rptag SIP/2.0", None),
        (
            "INVITE sip:a@h;verylongparametername=1;rptag=0123abcd SIP/2.0",
            Some(T),
        ),
        // An empty value is a (bad) tag: the check refuses it.
        ("INVITE sip:a@h;rptag= SIP/2.0", Some("")),
        ("INVITE sip:a@h SIP/2.0", None),
        // A `;` in the user part reads as parameters too (only the MAC decides).
        ("INVITE sip:1;rptag=0123abcd@h SIP/2.0", Some(T)),
    ];
    for (line, want) in cases {
        for end in ["\r\n", "\n"] {
            let m = server_request(line);
            let m = if end == "\n" {
                String::from_utf8(m)
                    .unwrap()
                    .replacen("SIP/2.0\r\n", "SIP/2.0\n", 1)
            } else {
                String::from_utf8(m).unwrap()
            };
            let s = feed_as(look::RURI_TAG, m.as_bytes());
            ok(&s);
            match want {
                Some(t) => {
                    assert_ne!(s.found & found::RURI_TAG, 0, "{line:?}");
                    assert_eq!(tag_text(&s), t.as_bytes(), "{line:?}");
                }
                None => assert_eq!(s.found & found::RURI_TAG, 0, "{line:?}"),
            }
        }
    }
    // A tag that ends the line, LF only and cut by a bare CR.
    let s = feed_as(
        look::RURI_TAG,
        b"INVITE sip:a@h;rptag=0123abcd\nVia: SIP/2.0/UDP h\n\n",
    );
    assert_eq!(tag_text(&s), T.as_bytes());
    assert_ne!(s.found & found::VIA, 0);
    let s = feed_as(
        look::RURI_TAG,
        b"INVITE sip:a@h;rptag=0123\rabcd SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
    );
    assert_eq!(tag_text(&s), b"0123");
    assert_ne!(s.found & found::VIA, 0);
}

#[test]
fn request_uri_tag_is_not_overwritten_by_a_via_tag() {
    let m =
        b"BYE sip:a@h;rptag=aaaa SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1;rptag=bbbb\r\n\r\n";
    let s = feed_as(look::RURI_TAG, m);
    ok(&s);
    assert_eq!(tag_text(&s), b"aaaa");
    assert_ne!(s.found & found::TAG, 0);
    // Without a Request-URI tag, the Via's is kept as always.
    let m = b"BYE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1;rptag=bbbb\r\n\r\n";
    let s = feed_as(look::RURI_TAG, m);
    assert_eq!(s.found & found::RURI_TAG, 0);
    assert_eq!(tag_text(&s), b"bbbb");
}

#[test]
fn contact_is_noted_only_when_asked_and_only_until_it_decides() {
    let reg = |via: &str, contact: &str| {
        format!(
            "REGISTER sip:198.51.100.10 SIP/2.0\r\n{via}\r\nFrom: <sip:100@x>;tag=1\r\n\
             Call-ID: {CALL_ID}\r\nCSeq: 1 REGISTER\r\n{contact}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    const NO_RPORT: &str = "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-1";
    const RPORT: &str = "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport";
    for contact in [
        "Contact: <sip:100@203.0.113.1>\r\n",
        "m: sip:100@203.0.113.1\r\n",
        "CONTACT : <sip:x@y>\r\n",
    ] {
        let m = reg(NO_RPORT, contact);
        // A request from outside whose Via needs nothing: read on to the Contact.
        let s = feed_as(look::CONTACT_UNLESS_REWRITE, &m);
        ok(&s);
        assert_ne!(s.found & found::CONTACT, 0, "{contact:?}");
        assert_eq!(s.found & found::HEADERS_END, 0, "stops at the Contact");
        // A response from outside: the same.
        assert_ne!(feed_as(look::CONTACT, &m).found & found::CONTACT, 0);
        // The Via alone (a response from inside) or a request from inside: not read.
        assert_eq!(feed_as(look::VIA, &m).found & found::CONTACT, 0);
        assert_eq!(feed_as(look::RURI_TAG, &m).found & found::CONTACT, 0);
        // rport in the Via: the daemon gets the request anyway, the scan stops early.
        let s = feed_as(look::CONTACT_UNLESS_REWRITE, &reg(RPORT, contact));
        assert_eq!(s.found & found::CONTACT, 0);
        let mut plain = feed_as(look::VIA, &reg(RPORT, contact));
        plain.look = look::CONTACT_UNLESS_REWRITE;
        assert_eq!(s, plain, "the same scan as without look");
        // But a response from outside reads on.
        assert_ne!(
            feed_as(look::CONTACT, &reg(RPORT, contact)).found & found::CONTACT,
            0
        );
    }
    // No Contact: to the end of the headers.
    let s = feed_as(look::CONTACT_UNLESS_REWRITE, &reg(NO_RPORT, ""));
    assert_eq!(
        s.found & (found::CONTACT | found::HEADERS_END),
        found::HEADERS_END
    );
    // Names that are not Contact.
    for h in [
        "Contacts: <sip:x@y>\r\n",
        "mm: sip:x@y\r\n",
        "X-Contact: <sip:x@y>\r\n",
    ] {
        let s = feed_as(look::CONTACT, &reg(NO_RPORT, h));
        assert_eq!(s.found & found::CONTACT, 0, "{h:?}");
    }
}

/// Looking for more than the Via (a Contact, the Request-URI's tag) never changes what the
/// scan says of the Via, whatever the bytes, and each driver agrees (`feed_as`).
#[test]
fn looking_for_more_never_changes_the_via() {
    let mut r = XorShift(0x0005_eed0_fc04_7ac7);
    let alphabet = b"Via:v SIP/2.0UDP;,=[]:\r\n\r\n \t0123456789.abz9hG4bKrportbranchCall-IDiContact:m<sip:@>;rptag=0f\"\\";
    for i in 0..6000 {
        let len = (r.next() % 260) as usize;
        let mut m = Vec::with_capacity(len + 80);
        match i % 3 {
            0 => m.extend_from_slice(b"INVITE sip:a@h;rptag=0f0f SIP/2.0\r\nVia: SIP/2.0/UDP "),
            1 => m.extend_from_slice(b"SIP/2.0 200 OK\r\nContact: <sip:a@b>\r\nVia: SIP/2.0/UDP h"),
            _ => {}
        }
        for _ in 0..len {
            let x = r.next();
            m.push(if i % 2 == 0 {
                x as u8
            } else {
                alphabet[(x % alphabet.len() as u64) as usize]
            });
        }
        let base = feed_as(look::VIA, &m);
        for l in [look::CONTACT_UNLESS_REWRITE, look::CONTACT, look::RURI_TAG] {
            let s = feed_as(l, &m);
            let what = String::from_utf8_lossy(&m);
            invariants(&s, &what);
            let via = found::VIA | found::MALFORMED | found::BRANCH | found::VIA_DONE;
            assert_eq!(s.found & via, base.found & via, "look {l}: {what:?}");
            assert_eq!(s.flags, base.flags, "look {l}: {what:?}");
            assert_eq!(
                (s.branch_hash, s.host_hash, s.port, s.rport),
                (base.branch_hash, base.host_hash, base.port, base.rport),
                "look {l}: {what:?}"
            );
            if s.flags & flags::MAGIC_COOKIE != 0 {
                assert_eq!(s.key(), base.key(), "look {l}: {what:?}");
            }
            if l != look::RURI_TAG {
                assert_eq!(s.found & found::RURI_TAG, 0);
                assert_eq!(
                    (s.tag, s.tag_len),
                    (base.tag, base.tag_len),
                    "look {l}: {what:?}"
                );
            } else if s.found & found::RURI_TAG == 0 {
                assert_eq!(
                    (s.tag, s.tag_len),
                    (base.tag, base.tag_len),
                    "look {l}: {what:?}"
                );
            }
        }
    }
}

/// Found by the fuzzer (fuzz/fuzz_targets/scan.rs): a port of six or more digits whose
/// first six are past 99999 makes the Via malformed, the port field left at the six
/// digits read (not a number anything reads then); the invariants allow it.
#[test]
fn a_port_of_six_digits_is_malformed_and_its_value_unused() {
    let m = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:50605060;branch=z9hG4bK-9;rport\r\nCall-ID: c\r\n\r\n";
    let s = Scan::run_chunked(m);
    assert_eq!(s.found & found::MALFORMED, found::MALFORMED);
    assert_eq!(s.port, 506_050);
    invariants(&s, &"six-digit port");
}
