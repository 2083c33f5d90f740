//! rport's userspace: the loader daemon (`rport run`) and the operator's commands.
//!
//! The packet's path (see docs/ARCHITECTURE.md):
//! - [`loader`] loads the XDP object embedded below, fills its config maps and attaches it;
//! - requests that need a Via rewrite arrive over AF_XDP in [`afxdp`];
//! - [`rewrite`] rewrites the top Via in place (RFC 3581 / RFC 3261 §18.2.1);
//! - [`inject`] fixes the IP/UDP headers and sends the result on with the client's
//!   addresses through a raw socket, in batches;
//! - responses are steered by the XDP program itself (see rport-ebpf);
//! - [`control`] answers `rport stats` / `rport bindings` over a unix socket.

pub mod afxdp;
pub mod control;
pub mod daemon;
pub mod dstats;
pub mod forward;
pub mod inject;
pub mod loader;
pub mod metrics;
pub mod nat;
pub mod replay;
pub mod rewrite;
pub mod testrun;

/// The XDP object, built by build.rs from rport-ebpf with the nightly toolchain.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rport-xdp"));
