//! The daemon's own counters (the XDP program's are in `rport_common::Counter`).
//!
//! Each forwarding thread owns one [`DaemonStats`] and bumps it with relaxed atomic adds
//! on its own cache lines; `rport stats` sums them into one [`DaemonCounters`]. No locks on
//! the hot path. The `xsk_*` fields are the kernel's statistics of the AF_XDP sockets,
//! copied in by each thread (datapath/afxdp.rs).
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

macro_rules! daemon_counters {
    ($( $(#[doc = $doc:literal])* $field:ident = $group:literal; )*) => {
        /// Counters of one forwarding thread.
        #[derive(Default, Debug)]
        #[repr(align(64))]
        pub struct DaemonStats {
            $( $(#[doc = $doc])* pub $field: AtomicU64, )*
        }

        impl DaemonStats {
            /// (name, group, help) of every field, in order.
            pub const FIELDS: &'static [(&'static str, &'static str, &'static str)] = &[
                $( (stringify!($field), $group, concat!($($doc),*)), )*
            ];

            /// Current values.
            pub fn load(&self) -> DaemonCounters {
                DaemonCounters { $( $field: self.$field.load(Ordering::Relaxed), )* }
            }
        }

        /// Values of the daemon's counters (one thread's, or all summed): the `daemon`
        /// object of `rport stats --json`, field for field.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct DaemonCounters {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl DaemonCounters {
            /// The values, in [`DaemonStats::FIELDS`] order.
            pub fn values(&self) -> [u64; DaemonStats::FIELDS.len()] {
                [ $( self.$field, )* ]
            }

            /// The counters with these values, in [`DaemonStats::FIELDS`] order.
            pub fn from_values(v: [u64; DaemonStats::FIELDS.len()]) -> DaemonCounters {
                let [ $( $field, )* ] = v;
                DaemonCounters { $( $field, )* }
            }

            /// Adds `other` field by field (the sum over the forwarding threads).
            pub fn add(&mut self, other: &DaemonCounters) {
                $( self.$field += other.$field; )*
            }
        }
    };
}

daemon_counters! {
    /// Frames received over AF_XDP.
    rx_frames = "traffic";
    /// Requests whose top Via was rewritten (Kamailio: fwd_requests).
    rewritten = "rewrite";
    /// `received=` parameters added or replaced.
    received_added = "rewrite";
    /// `rport` values filled in or replaced.
    rport_filled = "rewrite";
    /// Requests handed over that needed no change, forwarded byte for byte.
    unchanged = "rewrite";
    /// Packets sent on toward the server (Kamailio: fwd_requests).
    forwarded = "traffic";
    /// Rewritten requests larger than the egress MTU, sent as fragments.
    fragmented = "traffic";
    /// Contact URIs given the client's steering tag (`;rptag=` as a URI parameter), so that the server's requests to that Contact are steered to the client's NAT mapping (Kamailio: add_contact_alias).
    contacts_aliased = "rewrite";
    /// `rptag` URI parameters a client put in its own Contacts, removed (only rport's tag may come back).
    contact_tags_removed = "rewrite";
    /// Messages whose Contact header could not be parsed with certainty; forwarded with their Contacts unchanged.
    contact_errors = "errors";
    /// Frames that are not a SIP message the rewrite accepts; forwarded unchanged (Kamailio: bad_msg_hdr).
    rewrite_errors = "errors";
    /// Rewritten requests that no longer fit the frame; forwarded unchanged.
    no_room = "errors";
    /// Frames that could not be parsed down to UDP (dropped: the XDP program vetted them, so this should stay 0) (Kamailio: drop_requests).
    bad_frames = "errors";
    /// sendmmsg failures (packets lost) (Kamailio: err_requests).
    send_errors = "errors";
    /// Times the fill ring had no free frame to give back to the kernel.
    fill_starved = "errors";
    /// Frames the kernel dropped on their way to rport's AF_XDP sockets because the rx ring was full: rport fell behind (socket statistic rx_ring_full) (Kamailio: drop_requests).
    xsk_ring_full = "errors";
    /// Frames the kernel dropped on their way to rport's AF_XDP sockets, for any reason (socket statistic rx_dropped).
    xsk_rx_dropped = "errors";
    /// Times the kernel found an AF_XDP fill ring empty (socket statistic rx_fill_ring_empty_descs).
    xsk_fill_empty = "errors";
    /// Receive batches processed.
    batches = "steering";
    /// Nanoseconds spent processing received batches.
    busy_ns = "steering";
    /// Interfaces rport was attached to that went away (deleted, or replaced under their name): their XDP and TC programs and AF_XDP sockets went with them.
    iface_lost = "errors";
    /// Interfaces that came back under their name (a new ifindex) and were attached again: programs, IFACES entry, AF_XDP sockets.
    iface_reattached = "errors";
    /// New clients (Call-IDs) the NAT tracker did not track because their source IP (an IPv6 /64) already holds its share of the table (1,024 clients), all of them active within 300 s: what one sender flooding Call-IDs gets.
    nat_source_capped = "nat";
    /// Clients the NAT tracker forgot to make room for a newer one of the same source IP at its share: that source's least recently refreshed, silent for at least 300 s.
    nat_source_evicted = "nat";
    /// Clients the NAT tracker forgot to make room in a full table: the least recently refreshed, silent for 300 s to an hour (one that refreshes more often is never forgotten).
    nat_full_evicted = "nat";
    /// Clients the NAT tracker forgot to make room in a full table, silent for more than an hour.
    nat_idle_expired = "nat";
    /// Messages rewritten but never handed to the kernel (lost): more fragments than a batch has room for at the interface's MTU, or no room left in the batch (Kamailio: err_requests).
    unsent = "errors";
    /// Requests sent out by AF_XDP TX on the inside interface (`--egress bypass`), past the kernel's forwarding (also in `forwarded`).
    bypass_sent = "traffic";
    /// Requests sent the kernel's way under `--egress bypass` because the route lookup found no neighbour entry for the next hop yet (the kernel resolves it; later ones go by AF_XDP TX).
    bypass_no_neigh = "traffic";
    /// Requests sent the kernel's way under `--egress bypass` because they are larger than the egress MTU (the kernel fragments them or sends the ICMP).
    bypass_mtu = "traffic";
    /// Requests sent the kernel's way under `--egress bypass` for any other reason: no route lookup result, no route, an egress interface rport has no TX socket on, a TTL that runs out here.
    bypass_other = "traffic";
    /// Requests admitted for AF_XDP TX that found no free TX frame or ring slot: sent the kernel's way instead.
    bypass_tx_full = "errors";
    /// AF_XDP TX sockets bound in zero-copy mode (`--egress bypass`; the driver reads the frames from rport's memory).
    egress_tx_zerocopy = "traffic";
    /// AF_XDP TX sockets bound in copy mode (`--egress bypass`; veth and drivers without zero-copy AF_XDP).
    egress_tx_copy = "traffic";
}

impl DaemonStats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
