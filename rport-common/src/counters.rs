//! Every outcome the XDP program counts, named once for both sides.
//!
//! The XDP program bumps `COUNTERS[c as u32]` (a per-CPU array); userspace sums the CPUs
//! and shows each counter under its [`Counter::name`]. The kamailio column names the
//! closest statistic Kamailio has (see docs/STATS.md).

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $group:literal; )*) => {
        /// One XDP counter: the index of its slot in the `COUNTERS` map.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: &'static [Counter] = &[ $( Counter::$variant, )* ];

            /// Stable name (JSON field, Prometheus `rport_xdp_<name>_total`).
            pub const fn name(self) -> &'static str {
                match self { $( Counter::$variant => $name, )* }
            }

            /// Group it is shown under in `rport stats`.
            pub const fn group(self) -> &'static str {
                match self { $( Counter::$variant => $group, )* }
            }

            /// One-line meaning, from the doc comment.
            pub const fn help(self) -> &'static str {
                match self { $( Counter::$variant => concat!($($doc),*), )* }
            }
        }
    };
}

counters! {
    /// Frames the XDP program ran on.
    Packets = "packets", "traffic";
    /// Frames that are not UDP to or from a SIP port (passed untouched).
    NonSip = "non_sip", "traffic";
    /// SIP requests (UDP to a SIP port) (Kamailio: rcv_requests).
    SipRequests = "sip_requests", "traffic";
    /// SIP responses (UDP from a SIP port, payload starts with `SIP/2.0 `) (Kamailio: rcv_replies).
    SipResponses = "sip_responses", "traffic";
    /// UDP on a SIP port whose payload is neither a request nor a response.
    NonSipOnSipPort = "non_sip_on_sip_port", "traffic";
    /// Keep-alives: CRLF or CRLFCRLF (RFC 5626).
    KeepaliveCrlf = "keepalive_crlf", "traffic";
    /// Keep-alives: four zero bytes.
    KeepaliveZero = "keepalive_zero", "traffic";
    /// STUN messages on a SIP port (RFC 5389 magic cookie).
    KeepaliveStun = "keepalive_stun", "traffic";
    /// IPv6 SIP packets.
    Ipv6 = "ipv6", "traffic";
    /// SIP packets with one or two VLAN tags.
    Vlan = "vlan", "traffic";
    /// IP fragments on a SIP port (the first one is parsed, all pass).
    IpFragment = "ip_fragment", "errors";
    /// Frames cut short inside the Ethernet, VLAN, IP or UDP header, or shorter than the UDP length says (Kamailio: bad_msg_hdr).
    Truncated = "truncated", "errors";
    /// SIP requests or responses without a Via in their headers (Kamailio: bad_msg_hdr).
    NoVia = "no_via", "errors";
    /// SIP messages whose headers go past the scan window without a Via.
    ViaBeyondWindow = "via_beyond_window", "errors";
    /// Top Via present but unusable (no sent-by host, a port that is not a number up to 65535, junk where a separator belongs, or cut off by the end of the payload or of the scan window).
    MalformedVia = "malformed_via", "errors";
    /// Bindings written (new or refreshed) for a request.
    BindingRecorded = "binding_recorded", "nat";
    /// Bindings created (a request of a transaction not in the map): with `bindings_live`,
    /// the evictions (`bindings_evicted` = this − live).
    BindingNew = "binding_new", "nat";
    /// Binding updates the kernel refused.
    BindingUpdateFailed = "binding_update_failed", "errors";
    /// Requests whose top Via has an empty `rport`.
    RportEmpty = "rport_empty", "rewrite";
    /// Requests whose top Via has `rport=N` already.
    RportWithValue = "rport_with_value", "rewrite";
    /// Requests whose top Via has no `rport`.
    NoRport = "no_rport", "rewrite";
    /// Requests whose top Via has `received=` already.
    ReceivedPresent = "received_present", "rewrite";
    /// Requests whose sent-by host is not the source address.
    SentByDiffers = "sent_by_differs", "nat";
    /// Requests whose sent-by port is not the source port.
    SourcePortDiffers = "source_port_differs", "nat";
    /// Requests with an RFC 1918 (or IPv6 ULA) sent-by.
    SentByPrivate = "sent_by_private", "nat";
    /// Requests with an RFC 6598 (carrier-grade NAT) sent-by.
    SentByCgnat = "sent_by_cgnat", "nat";
    /// Requests whose sent-by is a domain name.
    SentByName = "sent_by_name", "nat";
    /// Requests from a `--force-rport` network.
    ForceRport = "force_rport", "rewrite";
    /// Requests arriving on an inside interface (server toward client): passed, not recorded.
    RequestFromInside = "request_from_inside", "steering";
    /// Requests that need no rewrite (no rport, sent-by is the source): passed byte for byte.
    RequestUnchanged = "request_unchanged", "rewrite";
    /// Requests handed to the daemon over AF_XDP for the Via rewrite.
    ToUserspace = "to_userspace", "steering";
    /// Requests that needed a rewrite but found no AF_XDP socket (daemon gone): passed unrewritten.
    UserspaceUnavailable = "userspace_unavailable", "errors";
    /// Responses with no binding for their top Via (passed untouched).
    ResponseNoBinding = "response_no_binding", "steering";
    /// Responses already sent to the recorded address and port (rport-aware server): passed.
    ResponseAlreadyCorrect = "response_already_correct", "steering";
    /// Responses redirected to the recorded address and port (legacy server).
    ResponseSteered = "response_steered", "steering";
    /// Responses not steered because they came in on an outside interface (anti-reflection).
    ResponseNotFromInside = "response_not_from_inside", "steering";
    /// Responses not steered because they came from another host than the request went to (anti-reflection).
    ResponseSourceMismatch = "response_source_mismatch", "steering";
    /// Steering decisions the TC program applied (destination address and port rewritten with the kernel's checksum helpers, right for partial and complete checksums alike).
    SteerApplied = "steer_applied", "steering";
    /// Steered in XDP itself because the driver offers no XDP metadata to hand the decision to TC (checksums updated as complete ones: right for packets from a NIC, not for a partial checksum from a local veth sender).
    SteerInXdp = "steer_in_xdp", "steering";
    /// Steering decisions the TC program could not apply (a checksum or store helper failed): the packet went on unchanged.
    SteerFailed = "steer_failed", "errors";
    /// Responses steered by their own `rptag` (stateless: the tag rport put in the request's Via names the client's observed source, under a key only rport has).
    TagSteered = "tag_steered", "steering";
    /// Responses steered by a binding (no tag: the request bypassed the rewrite, e.g. it needed none).
    BindingSteered = "binding_steered", "steering";
    /// Responses with an `rptag` that is not rport's (forged, altered, another key's or another server's): passed, never steered.
    TagInvalid = "tag_invalid", "steering";
    /// Responses with an rport tag older than its age limit (300 s for a Via by default): passed.
    TagExpired = "tag_expired", "steering";
    /// Requests from inside (a server toward a client) steered to the client's NAT mapping by the `rptag` rport put in the client's Contact, found in the Request-URI (stateless, like `tag_steered`).
    RequestSteered = "request_steered", "steering";
    /// Requests from inside whose Request-URI `rptag` is not rport's (forged, altered, another key's, a Via tag, or made for another server): passed, never steered.
    RequestTagInvalid = "request_tag_invalid", "steering";
    /// Requests from inside whose Request-URI tag is rport's but older than its age limit (a day for a Contact by default): passed.
    RequestTagExpired = "request_tag_expired", "steering";
    /// Requests from inside with a valid Contact tag, already sent to the client's mapping (a server that handles NAT itself): passed.
    RequestAlreadyCorrect = "request_already_correct", "steering";
    /// Responses from outside (a client answering a server) with a Contact: handed to the daemon, which puts the client's tag in the Contact so that the server's requests in the dialog (ACK, BYE) find the client.
    ResponseContact = "response_contact", "steering";
    /// Responses decided without a tag (the request bypassed the rewrite: it needed none, it was a fragment, the daemon was down; or a server that drops Via parameters): by a binding, or passed (each also counts its outcome: `binding_steered`, `response_no_binding`…).
    ResponseUntagged = "response_untagged", "steering";
    /// Messages the daemon rewrote and gave back to the kernel that generic (skb-mode) XDP saw again on their way in: passed on, never handed to the daemon twice (0 in native mode, where XDP does not run on them).
    Reinjected = "reinjected", "traffic";
    /// Steered messages sent out by XDP itself (`--egress bypass`: route and neighbour from `bpf_fib_lookup`, TTL decremented, `bpf_redirect` to the egress interface), past the kernel's forwarding.
    SteerRedirected = "steer_redirected", "steering";
    /// Steered messages `--egress bypass` handed to the kernel because the next hop had no resolved neighbour entry (the kernel resolves it; the next ones go by redirect).
    SteerFallbackNoNeigh = "steer_fallback_no_neigh", "steering";
    /// Steered messages `--egress bypass` handed to the kernel for another reason: no route or one that drops, forwarding off, bigger than the route's MTU, TTL expiring here, a VLAN tag, or an egress interface rport is not attached to.
    SteerFallbackOther = "steer_fallback_other", "steering";
}

/// Number of counter slots.
pub const COUNT: u32 = Counter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_and_names_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert!(!c.help().is_empty(), "{c:?} has no help");
            for d in &Counter::ALL[..i] {
                assert_ne!(c.name(), d.name());
            }
            // Valid as JSON keys and Prometheus metric names.
            assert!(
                c.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                c.name()
            );
        }
    }
}
