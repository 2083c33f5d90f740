//! The XDP program under BPF_PROG_TEST_RUN (the harness lives in rport-userspace, where
//! `rport replay` uses it too).
pub use rport_userspace::datapath::testrun::*;

/// True when this process may load BPF programs; otherwise prints why a test skips.
pub fn can_load_bpf(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {test}: needs root (CAP_BPF + CAP_NET_ADMIN) to load the XDP program");
        return false;
    }
    true
}
