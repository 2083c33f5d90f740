//! What the daemon does to one SIP message the XDP program handed over: a request's top
//! Via (RFC 3581, with the client's steering tag), then, for a request or a client's
//! 1xx/2xx, its Contacts (the client's tag in each URI, [`super::contact`]). Anything
//! that cannot be rewritten stays as it is, and is counted.
//!
//! One function for the daemon's forwarding threads (datapath/forward.rs) and for
//! `rport replay`, so that replay shows exactly what the daemon would send.
use std::{net::IpAddr, ops::Range, time::Instant};

use crate::{
    datapath::forward::{Rules, in_net},
    observe::dstats::DaemonStats,
    sip::{
        contact::{ContactPolicy, rewrite_contacts},
        rewrite::{Observed, Policy, RewriteError, rewrite_top_via},
    },
};

/// A response whose Contacts are the client's own: 1xx and 2xx (RFC 3261 §12.1.1: they
/// set the remote target of the dialog). A 3xx's Contacts are where to go instead, a
/// 4xx-6xx's are no target: neither is where the client can be reached.
pub fn contact_is_target(m: &[u8]) -> bool {
    m.get(8).is_some_and(|c| *c == b'1' || *c == b'2')
}

/// The message after [`rewrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// Its new length.
    pub len: usize,
    /// Anything changed.
    pub changed: bool,
    /// Where the Call-ID is, when the rewrite found it on its way (else search for it).
    pub call_id: Option<Range<usize>>,
    /// A Contact got the client's tag: the server can now reach the client.
    pub tagged: bool,
}

/// Rewrites the message in `buf[..len]` in place (`buf` beyond `len` is the room it may
/// grow into), sent by the client at `from` to the server at `to`, counting on `stats`.
pub fn rewrite(
    buf: &mut [u8],
    len: usize,
    from: (IpAddr, u16),
    to: (IpAddr, u16),
    rules: &Rules,
    stats: &DaemonStats,
    now: Instant,
) -> Rewritten {
    let observed = Observed {
        addr: from.0,
        port: from.1,
    };
    let response = buf[..len].starts_with(b"SIP/2.0 ");
    let mut out = Rewritten {
        len,
        changed: false,
        call_id: None,
        tagged: false,
    };
    if !response {
        let policy = Policy {
            force_rport: rules.force_rport.iter().any(|n| in_net(from.0, *n)),
            tag: Some(rules.signer.via_tag(from, to, now)),
        };
        match rewrite_top_via(buf, len, observed, policy) {
            Ok(r) => {
                if r.changed {
                    out.changed = true;
                    DaemonStats::add(&stats.rewritten, 1);
                    DaemonStats::add(&stats.received_added, r.received_set as u64);
                    DaemonStats::add(&stats.rport_filled, r.rport_set as u64);
                }
                out.call_id = r.call_id;
                out.len = r.len;
            }
            Err(RewriteError::NoRoom) => {
                DaemonStats::add(&stats.no_room, 1);
                crate::warn_limited!(src = %from.0, "no room to rewrite the Via: forwarded unchanged");
            }
            Err(e) => {
                DaemonStats::add(&stats.rewrite_errors, 1);
                crate::warn_limited!(src = %from.0, "Via not rewritten ({e}): forwarded unchanged");
            }
        }
    }
    // Contacts after the Via: each edit is measured against the message as it is now.
    if rules.contact_alias && (!response || contact_is_target(&buf[..out.len])) {
        let policy = ContactPolicy {
            tag: Some(rules.signer.contact_tag(from, to.0, now)),
        };
        match rewrite_contacts(buf, out.len, observed, policy) {
            Ok(r) => {
                DaemonStats::add(&stats.contacts_aliased, r.aliased as u64);
                DaemonStats::add(&stats.contact_tags_removed, r.removed as u64);
                out.tagged = r.aliased > 0;
                if r.changed {
                    out.changed = true;
                    // The Call-ID may have moved (a Contact before it changed length).
                    out.call_id = None;
                    out.len = r.len;
                }
            }
            Err(RewriteError::NoRoom) => {
                DaemonStats::add(&stats.no_room, 1);
                crate::warn_limited!(src = %from.0, "no room to tag the Contact: forwarded unchanged");
            }
            Err(e) => {
                DaemonStats::add(&stats.contact_errors, 1);
                crate::warn_limited!(src = %from.0, "Contact not tagged ({e}): forwarded unchanged");
            }
        }
    }
    if !out.changed {
        DaemonStats::add(&stats.unchanged, 1);
    }
    out
}
