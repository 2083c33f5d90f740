//! The RFC 3581 rewrite of the top Via, in place, over `&mut [u8]`.
//!
//! Rules (RFC 3581 §4, RFC 3261 §18.2.1, RFC 5118 §4.5):
//! - `rport` without a value (or `force_rport`): set it to the observed source port and add
//!   `received=<source address>`, even when that equals the sent-by;
//! - no `rport`, and the sent-by host is a name or another address than the source: add
//!   `received` only;
//! - no `rport`, sent-by is the source: leave the message byte for byte;
//! - an existing `received` or `rport=N` of the top Via is replaced where it stands, never
//!   duplicated; the sent-by, every other header and the body are left alone, so
//!   Content-Length stays right;
//! - IPv6: `received` is written without brackets; a sent-by `[v6]:port` is compared as an
//!   address, not as text;
//! - a top Via that does not follow the grammar ([`super::via`], the one the XDP scanner
//!   shares) is never edited: the request goes on as it came.
//!
//! Only the first value of the first Via header is touched, whether the next value is on
//! the same line or on another Via line. Nothing here allocates: the edits are ranges of
//! the message and the parameter that replaces each, measured first (so a message that
//! would not fit is left untouched), then applied right to left, each parameter written
//! straight into its place.
use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    ops::Range,
    process::ExitCode,
};

/// The Call-ID lookup the daemon uses for messages the rewrite refused; it lives with the
/// header framing, and is here too so that callers of the rewrite need one module only.
pub use super::headers::call_id;
use super::{
    headers,
    via::{self, ViaError},
};

/// The packet's source as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub addr: IpAddr,
    pub port: u16,
}

/// Operator policy.
#[derive(Clone, Copy, Default)]
pub struct Policy {
    /// Behave as if the client had sent `;rport` (Asterisk force_rport, Kamailio force_rport()).
    pub force_rport: bool,
    /// The steering tag (`rport_common::tag`, the value of `;rptag=`) to put in the
    /// rewritten Via, made by the caller for this observed source and server. A tag the
    /// message already has is replaced by it, or removed when there is none.
    pub tag: Option<rport_common::tag::TagBuf>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("force_rport", &self.force_rport)
            .field("tag", &self.tag.is_some())
            .finish()
    }
}

/// Why a message was not rewritten. In every case the buffer is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// Not a SIP message: no request or status line, or no end of headers.
    NotSip,
    /// A SIP message without a Via header.
    NoVia,
    /// The top Via does not follow the Via grammar.
    MalformedVia,
    /// The rewritten message would not fit in the buffer.
    NoRoom,
    /// A Contact header value does not follow the Contact grammar
    /// ([`super::contact`]): no Contact of the message is aliased.
    MalformedContact,
    /// The Contact aliasing would take more edits than it does in one message
    /// ([`super::contact::MAX_EDITS`]): no Contact of the message is aliased.
    TooManyContacts,
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RewriteError::NotSip => {
                "not a SIP message (no request or status line, or no empty line ending the headers)"
            }
            RewriteError::NoVia => "SIP message without a Via header",
            RewriteError::MalformedVia => {
                "the top Via header is malformed (it does not follow the Via grammar)"
            }
            RewriteError::NoRoom => "the rewritten message does not fit in the buffer",
            RewriteError::MalformedContact => {
                "a Contact header is malformed (it does not follow the Contact grammar)"
            }
            RewriteError::TooManyContacts => {
                "too many Contact URIs or rptag parameters to alias in one message"
            }
        })
    }
}

impl std::error::Error for RewriteError {}

impl From<ViaError> for RewriteError {
    fn from(e: ViaError) -> Self {
        match e {
            ViaError::NotSip => RewriteError::NotSip,
            ViaError::NoVia => RewriteError::NoVia,
            ViaError::Malformed => RewriteError::MalformedVia,
        }
    }
}

/// Outcome of a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// New length of the message.
    pub len: usize,
    /// Whether any byte changed.
    pub changed: bool,
    /// A `received` parameter was added or replaced.
    pub received_set: bool,
    /// An `rport` value was filled in or replaced.
    pub rport_set: bool,
    /// The Call-ID value (trimmed) in the message as it is now, found on the same pass
    /// over the headers (the daemon's NAT diagnostics key clients by it).
    pub call_id: Option<Range<usize>>,
}

/// A parameter the rewrite writes, as text: made once per message, then compared with
/// the old bytes, measured and copied from here (making it once instead of once for each
/// of those, as before, was a fifth of the rewrite's time).
#[derive(Clone, Copy)]
struct Text {
    buf: [u8; Text::CAP],
    len: usize,
}

impl Text {
    /// `;rptag=` and the longest tag value: the longest parameter.
    const CAP: usize = 1 + rport_common::tag::PARAM.len() + 1 + rport_common::tag::BUF_LEN;

    const EMPTY: Text = Text {
        buf: [0; Text::CAP],
        len: 0,
    };

    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// `;received=<addr>`. IPv4 written by hand (the common case); IPv6 through `Display`,
    /// which compresses zeros as RFC 5952 says, without brackets (RFC 5118 §4.5).
    #[inline(always)]
    fn received(addr: IpAddr) -> Text {
        let mut t = Text::EMPTY;
        t.put(b";received=");
        match addr {
            IpAddr::V4(a) => {
                for (k, o) in a.octets().iter().enumerate() {
                    if k > 0 {
                        t.put(b".");
                    }
                    t.decimal(*o as u16);
                }
            }
            IpAddr::V6(a) => {
                let _ = std::fmt::Write::write_fmt(&mut t, format_args!("{a}"));
            }
        }
        t
    }

    /// `;rport=<port>`.
    #[inline(always)]
    fn rport(port: u16) -> Text {
        let mut t = Text::EMPTY;
        t.put(b";rport=");
        t.decimal(port);
        t
    }

    /// `;rptag=<tag>`, or nothing (a client's tag removed).
    #[inline(always)]
    fn tag(tag: Option<&rport_common::tag::TagBuf>) -> Text {
        let mut t = Text::EMPTY;
        if let Some(tag) = tag {
            t.put(b";");
            t.put(rport_common::tag::PARAM);
            t.put(b"=");
            t.put(tag.as_bytes());
        }
        t
    }

    #[inline(always)]
    fn decimal(&mut self, v: u16) {
        let mut d = [0u8; 5];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&d[i..]);
    }
}

/// For `Display` (an IPv6 address: at most 45 characters, well within [`Text::CAP`]).
impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() > Text::CAP {
            return Err(std::fmt::Error);
        }
        self.put(s.as_bytes());
        Ok(())
    }
}

/// One change: the bytes `old` of the message (empty: an insertion) become `new`.
#[derive(Clone, Copy)]
struct Edit<'t> {
    old: (usize, usize),
    new: &'t [u8],
}

impl Edit<'_> {
    fn old_len(&self) -> usize {
        self.old.1 - self.old.0
    }
}

/// The edits of one message, in the order found.
struct Plan<'t> {
    edits: [Edit<'t>; 4],
    n: usize,
}

impl<'t> Plan<'t> {
    fn push(&mut self, old: (usize, usize), new: &'t [u8]) {
        self.edits[self.n] = Edit { old, new };
        self.n += 1;
    }
}

/// Applies `edits` (in message order, not overlapping) to the message in `buf[..len]`;
/// the caller checked the room. The new length.
///
/// When no edit shrinks (a rewrite adds or lengthens parameters: nearly always), the
/// stretches between and after the edits move right to left, each once, to where they
/// end up: the message's tail (everything after the Via, the body included) is moved
/// once per message, not once per parameter. Otherwise the edits are applied one by one,
/// right to left, each moving what follows it. Either way the same bytes end up in
/// `buf[..new length]`, and `buf` beyond the largest length the message goes through is
/// untouched.
fn apply(buf: &mut [u8], len: usize, edits: &[Edit]) -> usize {
    if edits.iter().all(|e| e.new.len() >= e.old_len()) {
        // Stretch k (after edit k) moves by what edits 0..=k add together.
        let grow: usize = edits.iter().map(|e| e.new.len() - e.old_len()).sum();
        let (mut shift, mut end) = (grow, len);
        for e in edits.iter().rev() {
            buf.copy_within(e.old.1..end, e.old.1 + shift);
            shift -= e.new.len() - e.old_len();
            let at = e.old.0 + shift;
            buf[at..at + e.new.len()].copy_from_slice(e.new);
            end = e.old.0;
        }
        return len + grow;
    }
    let mut cur = len;
    for e in edits.iter().rev() {
        let end = e.old.0 + e.new.len();
        buf.copy_within(e.old.1..cur, end);
        buf[e.old.0..end].copy_from_slice(e.new);
        cur = cur - e.old_len() + e.new.len();
    }
    cur
}

/// Rewrites the top Via of the SIP message in `buf[..len]` (see the module doc); `buf[len..]`
/// is free room for the message to grow into.
pub fn rewrite_top_via(
    buf: &mut [u8],
    len: usize,
    observed: Observed,
    policy: Policy,
) -> Result<Rewritten, RewriteError> {
    let len = len.min(buf.len());
    let m = &buf[..len];
    // Framing, the Via and the Call-ID in one walk over the header lines.
    let f = headers::frame_via_call_id(m).ok_or(RewriteError::NotSip)?;
    let call_id = f.call_id;
    let unchanged = Rewritten {
        len,
        changed: false,
        received_set: false,
        rport_set: false,
        call_id: call_id.clone(),
    };
    if m.starts_with(b"SIP/2.0 ") {
        // Responses are never rewritten (framing them said whether they are SIP at all).
        return Ok(unchanged);
    }
    let v = via::parse_value(m, f.via.ok_or(RewriteError::NoVia)?)?;
    if v.received_twice {
        return Err(RewriteError::MalformedVia);
    }
    let wants_rport = v.rport.is_some() || policy.force_rport;
    if !wants_rport && v.tag.is_none() && v.sent_by_is(m, observed.addr) {
        return Ok(unchanged);
    }
    // At most three edits, in message order: received and rport replaced where they stand
    // (in either order), then what was missing appended at the end of the value, received
    // before rport.
    let received = Text::received(observed.addr);
    let rport = Text::rport(observed.port);
    let tag = Text::tag(policy.tag.as_ref());
    let rport_span = v.rport.as_ref().map(|r| (r.span.start, r.span.end));
    let mut plan = Plan {
        edits: [Edit {
            old: (0, 0),
            new: &[],
        }; 4],
        n: 0,
    };
    let mut push = |old, new| plan.push(old, new);
    if let Some(r) = &v.received {
        push((r.start, r.end), received.bytes());
    }
    if let (true, Some(r)) = (wants_rport, rport_span) {
        push(r, rport.bytes());
    }
    let at = v.value.end;
    if v.received.is_none() {
        push((at, at), received.bytes());
    }
    if wants_rport && rport_span.is_none() {
        push((at, at), rport.bytes());
    }
    // The tag: the old one (anyone's) replaced where it stands, else appended last.
    match &v.tag {
        // Removed (no tag of ours to put there): the whitespace before its `;` goes with
        // it, folds included (a line break inside a header value is one), or a tag that was
        // the last parameter would leave that whitespace trailing the value, outside of it
        // once the value ends earlier (two fuzz findings).
        Some(r) if policy.tag.is_none() => {
            let mut start = r.start;
            while start > v.value.start && matches!(m[start - 1], b' ' | b'\t' | b'\r' | b'\n') {
                start -= 1;
            }
            push((start, r.end), tag.bytes())
        }
        Some(r) => push((r.start, r.end), tag.bytes()),
        None if policy.tag.is_some() => push((at, at), tag.bytes()),
        None => {}
    }
    // In message order (the in-place ones may stand in any order, the appended ones are
    // last and in the order pushed): a stable insertion sort by start.
    let n = plan.n;
    let edits = &mut plan.edits[..n];
    for i in 1..n {
        let mut j = i;
        while j > 0 && edits[j - 1].old.0 > edits[j].old.0 {
            edits.swap(j - 1, j);
            j -= 1;
        }
    }
    let edits = &*edits;
    if edits.iter().all(|e| &m[e.old.0..e.old.1] == e.new) {
        // Already in the form rport would write (a retransmission through rport, say).
        return Ok(unchanged);
    }
    // Applied right to left, the message goes through these lengths: the edits still to
    // do keep their offsets, and the longest one must fit.
    let (mut new_len, mut peak) = (len, len);
    for e in edits.iter().rev() {
        new_len = new_len - e.old_len() + e.new.len();
        peak = peak.max(new_len);
    }
    if peak > buf.len() {
        return Err(RewriteError::NoRoom);
    }
    let applied = apply(buf, len, edits);
    debug_assert_eq!(applied, new_len);
    // Every edit is inside the top Via value: a Call-ID after it moved as the message's
    // end did (added first, so no step goes below zero: the bytes removed are before it).
    let call_id = call_id.map(|r| {
        if r.start >= at {
            r.start + new_len - len..r.end + new_len - len
        } else {
            r
        }
    });
    Ok(Rewritten {
        len: new_len,
        changed: true,
        received_set: true,
        rport_set: wants_rport,
        call_id,
    })
}

/// `rport rewrite` without its input, output and key: `input` as rport would forward it,
/// the top Via rewritten (no tag in it), then the Contact URIs aliased with `tag`. A
/// message whose Via or Contacts rport forwards untouched comes out with those untouched;
/// `Err` is a message rport would not forward as SIP (or one that outgrew its room).
pub fn rewrite_message(
    input: &[u8],
    observed: Observed,
    force_rport: bool,
    tag: rport_common::tag::TagBuf,
) -> Result<Vec<u8>, RewriteError> {
    let len = input.len();
    let mut buf = input.to_vec();
    // Room for the Via's parameters and for the most Contact edits, each with a tag.
    buf.resize(
        len + 256 + super::contact::MAX_EDITS * (rport_common::tag::BUF_LEN + 16),
        0,
    );
    let len = match rewrite_top_via(
        &mut buf,
        len,
        observed,
        Policy {
            force_rport,
            tag: None,
        },
    ) {
        Ok(r) => r.len,
        // A SIP message rport would forward with its Via untouched.
        Err(RewriteError::NoVia | RewriteError::MalformedVia) => len,
        Err(e) => return Err(e),
    };
    let len = match super::contact::rewrite_contacts(
        &mut buf,
        len,
        observed,
        super::contact::ContactPolicy { tag: Some(tag) },
    ) {
        Ok(r) => r.len,
        // Forwarded with its Contacts as they came.
        Err(RewriteError::MalformedContact | RewriteError::TooManyContacts) => len,
        Err(e) => return Err(e),
    };
    buf.truncate(len);
    Ok(buf)
}

/// `rport rewrite`: one message from stdin, to stdout as rport would forward it
/// ([`rewrite_message`]), the Contacts aliased with a tag made for `source` and `server`
/// under a throwaway random key (a tag no gateway accepts: it shows where the tag goes and
/// its length, not a value to reuse). The Via gets no tag here.
pub fn run_cli(source: SocketAddr, server: IpAddr, force_rport: bool) -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("rport: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let observed = Observed {
        addr: source.ip(),
        port: source.port(),
    };
    let key = match crate::datapath::keys::Key::generate() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("rport: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let signer = crate::datapath::keys::Signer::new(crate::datapath::keys::CurrentKey::new(
        rport_common::tag::TagKey {
            key: *key.bytes(),
            valid: 1,
            ..Default::default()
        },
    ));
    let tag = signer.contact_tag(
        (source.ip(), source.port()),
        server,
        std::time::Instant::now(),
    );
    match rewrite_message(&input, observed, force_rport, tag) {
        Ok(out) => {
            let _ = std::io::stdout().write_all(&out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rport: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::via::{parse_top_via, transaction_key};
    use proptest::prelude::*;

    const SRC: Observed = Observed {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1)),
        port: 32415,
    };

    #[test]
    fn parameters_are_written_like_display() {
        for a in [
            "0.0.0.0",
            "203.0.113.1",
            "255.255.255.255",
            "10.0.10.100",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            // The longest an IPv6 address is written: it fits the text's room.
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(
                Text::received(ip).bytes(),
                format!(";received={ip}").as_bytes()
            );
        }
        for port in [0u16, 7, 10, 99, 100, 5060, 9999, 10000, 65535] {
            assert_eq!(
                Text::rport(port).bytes(),
                format!(";rport={port}").as_bytes()
            );
        }
        let t = rport_common::tag::TagBuf::from_text(&[b'f'; 64]);
        assert_eq!(
            Text::tag(Some(&t)).bytes(),
            [&b";rptag="[..], &[b'f'; 64]].concat()
        );
        assert_eq!(Text::tag(None).bytes(), b"");
    }

    #[test]
    fn call_id_found_before_and_after_the_via() {
        for m in [
            msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1;rport"),
            "INVITE sip:b@x SIP/2.0\r\ni:  c2@h \r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2;rport\r\n\r\n".into(),
        ] {
            let mut b = m.clone().into_bytes();
            b.resize(m.len() + 256, 0);
            let r = rewrite_top_via(&mut b, m.len(), SRC, Policy::default()).unwrap();
            assert!(r.changed);
            let want = call_id(&b[..r.len]).unwrap();
            assert_eq!(&b[r.call_id.unwrap()], want);
            assert!(want == b"c1@192.168.1.50" || want == b"c2@h", "{want:?}");
        }
    }

    fn msg(via: &str) -> String {
        format!(
            "REGISTER sip:198.51.100.10 SIP/2.0\r\n{via}\r\nFrom: <sip:a@198.51.100.10>;tag=1\r\nTo: <sip:a@198.51.100.10>\r\nCall-ID: c1@192.168.1.50\r\nCSeq: 1 REGISTER\r\nContent-Length: 4\r\n\r\nbody"
        )
    }

    fn rw_with(
        m: &str,
        src: Observed,
        policy: Policy,
    ) -> Result<(String, Rewritten), RewriteError> {
        let mut b = m.as_bytes().to_vec();
        b.resize(m.len() + 128, 0);
        let r = rewrite_top_via(&mut b, m.len(), src, policy)?;
        Ok((String::from_utf8(b[..r.len].to_vec()).unwrap(), r))
    }

    fn rw(m: &str) -> String {
        rw_with(m, SRC, Policy::default()).unwrap().0
    }

    #[test]
    fn empty_rport_gets_port_and_received() {
        let out = rw(&msg(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport=32415;received=203.0.113.1"
            )
        );
    }

    #[test]
    fn rport_in_the_middle_is_filled_where_it_stands() {
        let out = rw(&msg(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bK-1",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;rport=32415;branch=z9hG4bK-1;received=203.0.113.1"
            )
        );
    }

    #[test]
    fn received_is_added_even_when_equal_to_sent_by_if_rport() {
        let out = rw(&msg(
            "Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-1;rport",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-1;rport=32415;received=203.0.113.1"
            )
        );
    }

    #[test]
    fn no_rport_private_sent_by_gets_received_only() {
        let out = rw(&msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1"));
        assert_eq!(
            out,
            msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;received=203.0.113.1")
        );
    }

    #[test]
    fn no_rport_name_sent_by_gets_received() {
        let out = rw(&msg("Via: SIP/2.0/UDP phone.invalid;branch=z9hG4bK-1"));
        assert_eq!(
            out,
            msg("Via: SIP/2.0/UDP phone.invalid;branch=z9hG4bK-1;received=203.0.113.1")
        );
    }

    #[test]
    fn no_rport_sent_by_is_source_is_byte_for_byte() {
        let m = msg("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-1");
        let (out, r) = rw_with(&m, SRC, Policy::default()).unwrap();
        assert_eq!(out, m);
        assert!(!r.changed);
    }

    fn tagged(value: &str) -> Policy {
        Policy {
            force_rport: false,
            tag: Some(rport_common::tag::TagBuf::from_text(value.as_bytes())),
        }
    }

    #[test]
    fn the_tag_goes_last_and_a_clients_tag_is_replaced_or_removed() {
        let t = tagged("0a1b");
        // Appended after received and rport.
        let (out, _) = rw_with(
            &msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport"),
            SRC,
            t,
        )
        .unwrap();
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport=32415;received=203.0.113.1;rptag=0a1b"
            )
        );
        // A client's own (forged or copied) tag, before rport: replaced where it stands.
        let (out, _) = rw_with(
            &msg("Via: SIP/2.0/UDP 192.168.1.50:5060;RPTAG=ffff;branch=z9hG4bK-1;rport"),
            SRC,
            t,
        )
        .unwrap();
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;rptag=0a1b;branch=z9hG4bK-1;rport=32415;received=203.0.113.1"
            )
        );
        // Nothing else to do, but a tag there: still removed (no tag of ours to give).
        let (out, r) = rw_with(
            &msg("Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-1;rptag=ffff"),
            SRC,
            Policy::default(),
        )
        .unwrap();
        assert!(r.changed);
        assert_eq!(
            out,
            msg("Via: SIP/2.0/UDP 203.0.113.1:32415;branch=z9hG4bK-1;received=203.0.113.1")
        );
        // Two tags: malformed, untouched.
        assert_eq!(
            rw_with(
                &msg("Via: SIP/2.0/UDP 192.168.1.50:5060;rptag=1;rptag=2;rport"),
                SRC,
                t
            )
            .unwrap_err(),
            RewriteError::MalformedVia
        );
    }

    #[test]
    fn force_rport_behaves_as_if_rport_was_sent() {
        let m = msg("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-1");
        let (out, r) = rw_with(
            &m,
            SRC,
            Policy {
                force_rport: true,
                tag: None,
            },
        )
        .unwrap();
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-1;received=203.0.113.1;rport=32415"
            )
        );
        assert!(r.rport_set && r.received_set);
    }

    #[test]
    fn existing_received_and_rport_are_replaced_not_duplicated() {
        let out = rw(&msg(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;received=198.51.100.99;rport=1111;branch=z9hG4bK-1",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;received=203.0.113.1;rport=32415;branch=z9hG4bK-1"
            )
        );
        assert_eq!(out.matches("received").count(), 1);
        assert_eq!(out.matches("rport").count(), 1);
    }

    #[test]
    fn compact_form_any_case_and_whitespace() {
        let out = rw(&msg(
            "v : SIP / 2.0 / UDP 192.168.1.50 : 5060 ; branch = z9hG4bK-1 ; RPORT",
        ));
        assert_eq!(
            out,
            msg(
                "v : SIP / 2.0 / UDP 192.168.1.50 : 5060 ; branch = z9hG4bK-1 ;rport=32415;received=203.0.113.1"
            )
        );
        let out = rw(&msg(
            "VIA: SIP/2.0/UDP 192.168.1.50:5060;BRANCH=z9hG4bK-1;Rport",
        ));
        assert!(
            out.contains(";rport=32415;received=203.0.113.1\r\n"),
            "{out}"
        );
    }

    #[test]
    fn folded_via() {
        let out = rw(&msg(
            "Via: SIP/2.0/UDP\r\n 192.168.1.50:5060\r\n\t;branch=z9hG4bK-1;rport",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP\r\n 192.168.1.50:5060\r\n\t;branch=z9hG4bK-1;rport=32415;received=203.0.113.1"
            )
        );
    }

    #[test]
    fn only_the_first_value_is_touched() {
        let out = rw(&msg(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-2;rport",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport=32415;received=203.0.113.1, SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-2;rport"
            )
        );
        let out = rw(&msg(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-2;rport",
        ));
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;received=203.0.113.1\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK-2;rport"
            )
        );
    }

    #[test]
    fn via_after_other_headers() {
        let m = "OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\nVia: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-1;rport\r\n\r\n";
        assert_eq!(
            rw(m),
            "OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\nVia: SIP/2.0/UDP 192.168.1.50;branch=z9hG4bK-1;rport=32415;received=203.0.113.1\r\n\r\n"
        );
    }

    #[test]
    fn ipv6() {
        let src = Observed {
            addr: "2001:db8:1::50".parse().unwrap(),
            port: 5062,
        };
        let m = msg("Via: SIP/2.0/UDP [2001:db8:1::50]:5062;branch=z9hG4bK-1");
        let (out, r) = rw_with(&m, src, Policy::default()).unwrap();
        assert!(!r.changed, "[2001:db8:1::50] is the source: {out}");
        let m = msg("Via: SIP/2.0/UDP [2001:0db8:0001:0:0:0:0:50]:5062;branch=z9hG4bK-1");
        assert!(
            !rw_with(&m, src, Policy::default()).unwrap().1.changed,
            "compared as addresses"
        );
        let m = msg("Via: SIP/2.0/UDP [2001:db8:9::1]:5060;branch=z9hG4bK-1;rport");
        let (out, _) = rw_with(&m, src, Policy::default()).unwrap();
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP [2001:db8:9::1]:5060;branch=z9hG4bK-1;rport=5062;received=2001:db8:1::50"
            )
        );
    }

    #[test]
    fn responses_and_bad_input() {
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.168.1.50;rport\r\n\r\n";
        let (out, r) = rw_with(resp, SRC, Policy::default()).unwrap();
        assert_eq!(out, resp);
        assert!(!r.changed);
        assert_eq!(
            rw_with("hello world\r\n\r\n", SRC, Policy::default()).unwrap_err(),
            RewriteError::NotSip
        );
        assert_eq!(
            rw_with("", SRC, Policy::default()).unwrap_err(),
            RewriteError::NotSip
        );
        assert_eq!(
            rw_with(
                "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4",
                SRC,
                Policy::default()
            )
            .unwrap_err(),
            RewriteError::NotSip
        );
        assert_eq!(
            rw_with(
                "REGISTER sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n",
                SRC,
                Policy::default()
            )
            .unwrap_err(),
            RewriteError::NoVia
        );
        assert_eq!(
            rw_with(&msg("Via: garbage"), SRC, Policy::default()).unwrap_err(),
            RewriteError::MalformedVia
        );
        assert_eq!(
            rw_with(
                &msg("Via: SIP/2.0/UDP 1.2.3.4:99999"),
                SRC,
                Policy::default()
            )
            .unwrap_err(),
            RewriteError::MalformedVia
        );
        assert_eq!(
            rw_with(
                &msg("Via: SIP/2.0/UDP 1.2.3.4;rport;rport=7"),
                SRC,
                Policy::default()
            )
            .unwrap_err(),
            RewriteError::MalformedVia
        );
        // No room: untouched.
        let m = msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport");
        let mut b = m.as_bytes().to_vec();
        b.resize(m.len() + 5, 0);
        let before = b.clone();
        assert_eq!(
            rewrite_top_via(&mut b, m.len(), SRC, Policy::default()).unwrap_err(),
            RewriteError::NoRoom
        );
        assert_eq!(b, before);
    }

    /// The cases a fuzz campaign found through the live gateway, as the client sent them.
    /// With the old parser each one was edited (the server got the result in the comment);
    /// none follows the Via grammar, so each must go on exactly as it came.
    #[test]
    fn fuzz_found_vias_are_left_alone() {
        for via in [
            // -> ;branch=z9hG4bK-1;rport=17890;x;received=203.0.113.1:  (edit before junk)
            "Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport;x:",
            // -> ;rport=53217;x="open;received=203.0.113.1 (swallowed by the quote; a
            // second pass appended received again)
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;x=\"open",
            // -> ;x;received=203.0.113.1:y;rport (the client's rport not filled)
            "Via: SIP/2.0/UDP 192.168.1.50:5060;x:y;rport",
            // -> ;rport=61706;b2.168.1.50;received=203.0.113.1:5060;rport (two rport)
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;b2.168.1.50:5060;rport",
            // -> 192.168.1.50:5060;received=203.0.113.1x (`rport rewrite`)
            "Via: SIP/2.0/UDP 192.168.1.50:5060x",
            // -> received inserted before the bare CR, the port and rport after it: the
            // response's Via then scanned to another transaction key.
            "Via: SIP/2.0/UDP 192.168.1.50\r:5060;branch=legacy;rport",
        ] {
            let m = msg(via);
            for force_rport in [false, true] {
                let mut b = m.clone().into_bytes();
                b.resize(m.len() + 128, 0);
                let before = b.clone();
                assert_eq!(
                    rewrite_top_via(
                        &mut b,
                        m.len(),
                        SRC,
                        Policy {
                            force_rport,
                            tag: None
                        }
                    ),
                    Err(RewriteError::MalformedVia),
                    "{via:?}"
                );
                assert_eq!(b, before, "{via:?}");
            }
        }
    }

    /// The seed proptest kept in proptest-regressions/rewrite.txt (from before the file
    /// moved under sip/), as a plain test: two rport parameters are malformed.
    #[test]
    fn two_rport_parameters_are_malformed() {
        let m = msg("Via: SIP/2.0/UDP 192.168.1.50 ; rport ;rport");
        assert_eq!(
            rw_with(&m, SRC, Policy::default()).unwrap_err(),
            RewriteError::MalformedVia
        );
    }

    #[test]
    fn replacements_in_either_order_and_shrinking() {
        // rport before received, both replaced; the new received is shorter, so the
        // message shrinks, and the Call-ID after the Via moves back.
        let m = msg(
            "Via: SIP/2.0/UDP 192.168.1.50:5060;rport=11111;received=198.51.100.199;branch=z9hG4bK-1",
        );
        let (out, r) = rw_with(&m, SRC, Policy::default()).unwrap();
        assert_eq!(
            out,
            msg(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;rport=32415;received=203.0.113.1;branch=z9hG4bK-1"
            )
        );
        assert!(r.len < m.len());
        assert_eq!(&out.as_bytes()[r.call_id.unwrap()], b"c1@192.168.1.50");
        // Exactly the room it needs at its longest, and one byte less.
        let m = msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport");
        let grow = ";rport=32415;received=203.0.113.1".len() - ";rport".len();
        let mut b = m.clone().into_bytes();
        b.resize(m.len() + grow, 0);
        assert!(rewrite_top_via(&mut b, m.len(), SRC, Policy::default()).is_ok());
        let mut b = m.clone().into_bytes();
        b.resize(m.len() + grow - 1, 0);
        assert_eq!(
            rewrite_top_via(&mut b, m.len(), SRC, Policy::default()),
            Err(RewriteError::NoRoom)
        );
    }

    fn valid_message() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec!["Via", "v", "VIA", "via "]);
        let host = prop::sample::select(vec![
            "192.168.1.50",
            "203.0.113.1",
            "phone.invalid",
            "[2001:db8::1]",
            "100.64.0.9",
        ]);
        let port = prop::option::of(1u16..);
        let params = prop::collection::vec(
            prop::sample::select(vec![
                ";rport",
                ";rport=5",
                ";received=192.0.2.9",
                ";branch=z9hG4bK-x",
                ";lr",
                " ; rport ",
                ";maddr=198.51.100.1",
            ]),
            0..4,
        );
        let second = prop::option::of(prop::sample::select(vec![
            ", SIP/2.0/UDP 198.51.100.7;rport",
            "\r\nVia: SIP/2.0/TCP 198.51.100.8;rport",
        ]));
        (name, host, port, params, second).prop_map(|(n, h, p, ps, sec)| {
            let port = p.map(|p| format!(":{p}")).unwrap_or_default();
            msg(&format!(
                "{n}: SIP/2.0/UDP {h}{port}{}{}",
                ps.concat(),
                sec.unwrap_or_default()
            ))
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..600), force in any::<bool>()) {
            let mut b = data.clone();
            b.resize(data.len() + 64, 0);
            let _ = rewrite_top_via(&mut b, data.len(), SRC, Policy { force_rport: force, tag: None });
            let _ = parse_top_via(&data);
            let _ = call_id(&data);
        }

        #[test]
        fn reported_call_id_is_the_call_id_of_the_result(m in valid_message(), force in any::<bool>()) {
            let mut b = m.clone().into_bytes();
            b.resize(m.len() + 256, 0);
            if let Ok(r) = rewrite_top_via(&mut b, m.len(), SRC, Policy { force_rport: force, tag: None }) {
                let out = &b[..r.len];
                prop_assert_eq!(r.call_id.map(|c| &out[c]), call_id(out));
            }
        }

        #[test]
        fn never_panics_on_mutations(m in valid_message(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut d = m.into_bytes();
            let i = at.index(d.len());
            d[i] = byte;
            d.truncate(cut.index(d.len() + 1));
            let mut b = d.clone();
            b.resize(d.len() + 64, 0);
            let _ = rewrite_top_via(&mut b, d.len(), SRC, Policy::default());
        }

        #[test]
        fn idempotent_and_preserves_outside_the_top_via(m in valid_message(), force in any::<bool>()) {
            let p = Policy { force_rport: force, tag: None };
            let Ok((once, _)) = rw_with(&m, SRC, p) else { return Ok(()) };
            let (twice, r2) = rw_with(&once, SRC, p).unwrap();
            prop_assert_eq!(&twice, &once);
            prop_assert!(!r2.changed);
            // Outside the first Via value nothing moved.
            let v = parse_top_via(m.as_bytes()).unwrap();
            let v1 = parse_top_via(once.as_bytes()).unwrap();
            prop_assert_eq!(&m[..v.value.start], &once[..v1.value.start]);
            prop_assert_eq!(&m[v.value.end..], &once[v1.value.end..]);
            // The sent-by and branch are intact, so the key is too.
            prop_assert_eq!(&m[v.host.clone()], &once[v1.host.clone()]);
            prop_assert_eq!(transaction_key(m.as_bytes()), transaction_key(once.as_bytes()));
            // Never duplicated.
            let top = &once[v1.value.clone()];
            prop_assert!(top.matches(";received=").count() <= 1);
            prop_assert!(top.to_ascii_lowercase().matches("rport").count() <= 1);
        }
    }
}
