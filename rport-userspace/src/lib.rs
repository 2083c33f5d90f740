//! rport's userspace: the loader daemon (`rport run`) and the operator's commands.
//!
//! The packet's path (see docs/ARCHITECTURE.md), room by room:
//! - [`datapath`]: [`datapath::loader`] loads the XDP object embedded below, fills its
//!   config maps and attaches it; requests that need a Via rewrite arrive over AF_XDP in
//!   [`datapath::afxdp`], [`datapath::forward`] runs one worker per queue, and
//!   [`datapath::inject`] fixes the IP/UDP headers and gives the frame back to the
//!   kernel on the interface it arrived on (AF_PACKET, then a TC redirect to ingress), in
//!   batches, for the kernel to forward; [`datapath::testrun`] runs the
//!   same object through BPF_PROG_TEST_RUN (tests, `rport replay`, the bench);
//! - [`sip`]: the SIP message rewrite itself ([`sip::rewrite`], RFC 3581 / RFC 3261 §18.2.1);
//! - responses are steered by the XDP program itself (see rport-ebpf);
//! - [`observe`]: counters, the NAT tracker, one typed snapshot of them all
//!   ([`observe::snapshot`]) and its views: the control socket, the Prometheus exporter,
//!   the table;
//! - [`cli`]: one module per subcommand that needs more than a line in main.rs.

pub mod capture;

pub mod cli {
    //! The subcommands: `rport run` (the daemon), `rport stats`, `rport bindings`,
    //! `rport check` and `rport replay`.
    pub mod assets;
    pub mod bindings;
    pub mod check;
    pub mod config;
    pub mod out;
    pub mod replay;
    pub mod run;
    pub mod stats;
}

pub mod datapath {
    //! The packet's path through userspace: load and attach, AF_XDP in, AF_PACKET
    //! back into the receive path.
    pub mod afxdp;
    pub mod egress;
    pub mod forward;
    pub mod ifwatch;
    pub mod inject;
    pub mod keys;
    pub mod loader;
    pub mod mmsg;
    pub mod probe;
    pub mod testrun;
    pub mod workers;
}

pub mod privileges;

pub mod sip {
    //! SIP message handling: the headers ([`headers`]: framing, lookup, Call-ID), the top
    //! Via ([`via`]: the parser, the same grammar as the XDP scanner's), the RFC 3581
    //! edit of it ([`rewrite`]) and the steering tag in the Contact URIs ([`contact`]).
    pub mod contact;
    pub mod headers;
    pub mod message;
    pub mod props;
    pub mod rewrite;
    pub mod via;
}

pub mod observe {
    //! What an operator sees. The sources: the daemon's counters ([`dstats`]) and NAT
    //! tracker ([`nat`]) beside the XDP program's pinned maps, read together into one
    //! [`snapshot::Snapshot`]. Its views: the control socket ([`control`], JSON), the
    //! Prometheus exporter ([`metrics`]), the table and NAT diagnosis ([`table`]), and the
    //! reference of its fields, docs/STATS.md ([`reference`]).
    pub mod control;
    pub mod dstats;
    pub mod fwdrules;
    pub mod hostcheck;
    pub mod logging;
    pub mod metrics;
    mod named;
    pub mod nat;
    pub mod notify;
    pub mod reference;
    pub mod snapshot;
    pub mod table;
}

/// The XDP object, built by build.rs from rport-ebpf with the nightly toolchain.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rport-xdp"));
