//! rport's XDP packet logic, written once for two targets.
//!
//! On `bpfel-unknown-none` this is the library behind the XDP program in `main.rs`; on the
//! host the same code is unit-tested over plain byte slices. Nothing here allocates, and
//! every loop is bounded, because the verifier demands both.
//!
//! - [`pkt`]: the one place that reads and writes packet bytes, with bounds checks the
//!   verifier accepts;
//! - [`parse`]: Ethernet, VLAN, IPv4/IPv6, UDP → [`parse::Headers`];
//! - [`scan`]: the top-Via state machine, driven byte by byte inside the Via and 8 or 32
//!   bytes at a time over the lines it skips;
//! - [`decide`]: from headers, scan result and map contents to one [`decide::Outcome`] per
//!   frame, and from an outcome to its counters;
//! - [`csum`]: incremental checksum updates and the steer rewrite of responses;
//! - [`fib`]: the forwarding step in XDP (route and neighbour lookup, TTL, MACs);
//! - [`egress`]: what `--egress bypass` tells the daemon about a request's way out;
//! - [`model`] (host only): the whole program over a byte slice and plain maps.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod csum;
pub mod decide;
pub mod egress;
pub mod fib;
#[cfg(not(target_arch = "bpf"))]
pub mod model;
pub mod parse;
pub mod pkt;
pub mod scan;
