//! The kernel runner of the XDP contract table (tests/src/fixtures.rs): every row through
//! the real program (BPF_PROG_TEST_RUN), arriving on a real device of its role and on its
//! rx queue (the test run's `xdp_md` context), in a namespace of this test's own.
use rport_tests::{
    fixtures::{report, run_table, table},
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
