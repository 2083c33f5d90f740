use rport_tests::xdp::*;

#[test]
fn loads_and_passes_garbage() {
    if !can_load_bpf("loads_and_passes_garbage") {
        return;
    }
    let h = XdpHarness::load().unwrap();
    let r = h.run(&[0u8; 64]).unwrap();
    assert_eq!(r.verdict, XDP_PASS);
}
