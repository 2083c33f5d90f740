//! Bad invocations: a non-zero exit and one clear line on stderr, never a usage block, a
//! backtrace or a panic; and nothing attached or left behind (they run in a namespace of
//! their own, which is gone afterwards).
use rport_tests::ns::{Ns, can_run, rport_bin};

#[test]
fn bad_flags_and_config_give_one_clear_line() {
    if !can_run("bad_flags_and_config_give_one_clear_line", &["ip"]) {
        return;
    }
    let rport = rport_bin().unwrap();
    let ns = Ns::new("rpcli").unwrap();
    // (arguments, split at spaces; exit code; what the line must say)
    let table: &[(&str, i32, &str)] = &[
        ("frobnicate", 2, "unrecognized subcommand 'frobnicate'"),
        (
            "run --outside lo",
            2,
            "required arguments were not provided: --inside",
        ),
        (
            "run --outside lo --inside lo",
            1,
            "interface lo given twice",
        ),
        (
            "run --outside nope0 --inside lo",
            1,
            "no interface named \"nope0\"",
        ),
        (
            "run --outside lo --inside x --sip-port 0",
            1,
            "--sip-port must be 1..65535",
        ),
        (
            "run --outside lo --inside x --sip-port 70000",
            2,
            "invalid value '70000' for '--sip-port <N>'",
        ),
        (
            "run --outside lo --inside x --xdp-mode bogus",
            2,
            "[possible values: auto, native, skb]",
        ),
        (
            "run --outside lo --inside x --force-rport 10.0.0.0/33",
            1,
            "prefix length 33 too long",
        ),
        (
            "run --outside lo --inside x --force-rport not-a-net",
            1,
            "\"not-a-net\" is not an address or CIDR",
        ),
        (
            "run --outside lo --inside x --xdp-log loud",
            2,
            "invalid value 'loud' for '--xdp-log",
        ),
        (
            "run --outside lo --inside x --max-bindings 0",
            2,
            "invalid value '0' for '--max-bindings <N>': --max-bindings must be 1..=16777216, not 0",
        ),
        (
            "run --outside lo --inside x --max-bindings 16777217",
            2,
            "--max-bindings must be 1..=16777216, not 16777217",
        ),
        (
            "run --outside lo --inside x --max-bindings lots",
            2,
            "invalid value 'lots' for '--max-bindings <N>': expected a number 1..=16777216",
        ),
        (
            "stats --watch 0",
            1,
            "--watch needs a period of at least 1 second",
        ),
        ("stats", 1, "no rport daemon is running"),
        ("bindings --limit x", 2, "invalid value 'x' for '--limit"),
        (
            "rewrite --source nonsense",
            2,
            "invalid value 'nonsense' for '--source",
        ),
        ("replay /nonexistent.pcap", 1, "/nonexistent.pcap"),
        (
            "--log-format yaml stats",
            2,
            "invalid value 'yaml' for '--log-format <LOG_FORMAT>'",
        ),
        (
            "stats --log-level loud",
            2,
            "invalid value 'loud' for '--log-level <LEVEL>'",
        ),
        // A global flag after the subcommand; still the one line, nothing logged with it.
        ("stats --log-level trace", 1, "no rport daemon is running"),
    ];
    let mut failures = Vec::new();
    for (args, code, says) in table {
        let o = ns
            .cmd(&rport)
            .args(args.split_whitespace())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let ok = o.status.code() == Some(*code)
            && err.lines().count() == 1
            && err.contains(says)
            && !err.contains("panicked");
        if !ok {
            failures.push(format!(
                "{args:?}: exit {:?}, stderr {err:?}",
                o.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // `rport` alone shows the help and fails as a usage error.
    let o = ns.cmd(&rport).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage: rport [OPTIONS] <COMMAND>"));
    // Nothing was attached in the namespace.
    assert!(!ns.ip(&["-o", "link"]).unwrap().contains("xdp"));
}
