//! The runners of the XDP contract table (tests/src/fixtures.rs):
//! - kernel: every row through the real program (BPF_PROG_TEST_RUN), arriving on a real
//!   device of its role and on its rx queue (the test run's `xdp_md` context), in a
//!   namespace of this test's own (root);
//! - host: every row through `rport_ebpf::model`, the program's logic over plain maps (no
//!   root, no kernel).
//!
//! Both check each row exactly (verdict, output bytes, counter deltas, binding), so they
//! agree with each other on every row; the one difference by construction, a steered
//! response handed to TC by the kernel and steered in XDP by the model, is spelled out in
//! each such row (`Out::HandedToTc`).
use rport_tests::{
    fixtures::{report, run_table, table},
    host::Host,
    xdp::{can_load_bpf, with_bed},
};

#[test]
fn fixture_table() {
    if !can_load_bpf("fixture_table") {
        return;
    }
    let t = table();
    assert!(t.len() >= 30, "the contract has at least 30 rows");
    let (t, failures) = with_bed(move |bed| {
        let failures = run_table(bed, &t)?;
        Ok((t, failures))
    })
    .expect("bed");
    report("kernel", &t, &failures);
}

#[test]
fn fixture_table_on_the_host() {
    let t = table();
    assert!(t.len() >= 30, "the contract has at least 30 rows");
    let failures = run_table(&mut Host::default(), &t).expect("host runner");
    report("host", &t, &failures);
}
