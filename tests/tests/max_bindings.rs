//! `rport run --max-bindings N` sizes the BINDINGS map, and a pinned map of another size
//! (left by an earlier run) is refused with one clear line rather than kept silently.
use rport_tests::{
    ns::{Bpffs, can_run},
    topo::NatTopology,
};

fn entries(pin: &std::path::Path) -> u32 {
    aya::maps::MapInfo::from_pin(pin)
        .expect("pinned BINDINGS")
        .max_entries()
}

#[test]
fn max_bindings_sizes_the_map_and_a_pinned_size_is_kept() {
    if !can_run("max_bindings", &["ip", "nft"]) {
        return;
    }
    let t = NatTopology::new().unwrap();
    let pins = Bpffs::new().unwrap();
    let mut r = t.rport(&pins, &["--max-bindings", "1000"]).unwrap();
    let pin = r.bindings_pin();
    assert_eq!(entries(&pin), 1000);
    r.proc.stop().unwrap();
    drop(r);
    // The pin outlives the daemon; a run with the default size must not take it as it is.
    let e = t
        .rport(&pins, &[])
        .err()
        .expect("a size mismatch is refused");
    let e = format!("{e:#}");
    assert!(
        e.contains("holds 1000 entries, --max-bindings asks for 65536"),
        "{e}"
    );
    assert_eq!(entries(&pin), 1000, "the refused run left the pin alone");
    // The same size again: the pin (and its bindings) are taken over.
    let r = t.rport(&pins, &["--max-bindings", "1000"]).unwrap();
    assert_eq!(entries(&r.bindings_pin()), 1000);
    drop(r);
    // Without the pin, the default size.
    std::fs::remove_file(&pin).unwrap();
    let r = t.rport(&pins, &[]).unwrap();
    assert_eq!(entries(&r.bindings_pin()), rport_common::MAX_BINDINGS);
}
