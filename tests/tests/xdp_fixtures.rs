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
    fixtures::{differences, observe, report, run_table, table},
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

/// Kernel and host side by side, row by row: the same verdicts, counters, output frames
/// and bindings (every field but the timestamps and the ingress ifindex).
#[test]
fn kernel_and_host_agree_row_by_row() {
    if !can_load_bpf("kernel_and_host_agree_row_by_row") {
        return;
    }
    let t = table();
    let (t, kernel) = with_bed(move |bed| {
        let k = observe(bed, &t)?;
        Ok((t, k))
    })
    .expect("bed");
    let host = observe(&mut Host::default(), &t).expect("host");
    // Not a comparison of nothing: most rows leave a binding, every row moves counters.
    let with_binding = kernel.iter().filter(|o| !o.bindings.is_empty()).count();
    assert!(with_binding >= 20, "{with_binding} rows leave a binding");
    assert!(kernel.iter().all(|o| o.counters.iter().any(|c| *c > 0)));
    let d = differences(&t, &kernel, &host);
    assert!(d.is_empty(), "{} differences:\n{}", d.len(), d.join("\n"));
    println!("kernel and host agree on {} rows", t.len());
}
