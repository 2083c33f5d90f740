//! rport's XDP packet logic, written once for two targets.
//!
//! On `bpfel-unknown-none` this is the library behind the XDP program in `main.rs`; on the
//! host the same code is unit-tested over plain byte slices. Nothing here allocates, and
//! every loop is bounded, because the verifier demands both.
//!
//! - [`pkt`]: the one place that reads packet bytes, with bounds checks the verifier accepts;
//! - [`parse`]: Ethernet, VLAN, IPv4/IPv6, UDP → [`parse::Headers`];
//! - [`scan`]: the top-Via state machine, one byte per step;
//! - [`csum`]: incremental checksum updates for steered responses.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod csum;
pub mod parse;
pub mod pkt;
pub mod scan;
