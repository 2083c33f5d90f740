//! Integration test support: crafted packets, the XDP contract table, the XDP program under
//! BPF_PROG_TEST_RUN, network namespaces.
pub mod capture;
pub mod fixtures;
pub mod host;
pub mod hostile;
pub mod load;
pub mod ns;
pub mod packets;
pub mod queues;
pub mod sip;
pub mod soak;
pub mod topo;
pub mod xdp;
