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

/// The test run's context: the kernel takes an ingress device of the caller's namespace and
/// a queue below its rx queue count, and refuses anything else; the harness says which.
#[test]
fn ingress_must_be_a_device_and_queue_of_the_namespace() {
    if !can_load_bpf("ingress_must_be_a_device_and_queue_of_the_namespace") {
        return;
    }
    let errs = with_bed(|bed| {
        let frame = [0u8; 64];
        let last = Ingress {
            ifindex: bed.inside,
            rx_queue: BED_RX_QUEUES - 1,
        };
        assert_eq!(bed.h.run_on(&frame, last)?.verdict, XDP_PASS);
        let past = Ingress {
            rx_queue: BED_RX_QUEUES,
            ..last
        };
        let absent = Ingress {
            ifindex: 0x7fff_fff0,
            rx_queue: 0,
        };
        Ok([past, absent].map(|at| match bed.h.run_on(&frame, at) {
            Ok(r) => format!("ran, verdict {}", r.verdict),
            Err(e) => format!("{e:#}"),
        }))
    })
    .unwrap();
    assert!(
        errs[0].contains(&format!("rx queue {BED_RX_QUEUES}"))
            && errs[0].contains("Invalid argument"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].contains("ifindex 2147483632") && errs[1].contains("No such device"),
        "{}",
        errs[1]
    );
}
