//! The Contact alias: rport's steering tag as a URI parameter of every Contact URI of a
//! message from a phone, in place, over `&mut [u8]`.
//!
//! # Why
//!
//! A registrar (or PBX) that knows nothing of NAT stores the Contact of a REGISTER as it
//! came and later sends INVITE, ACK and BYE toward the phone with that URI as the
//! Request-URI; the phone's private `192.168.1.50:5060` is unreachable. Kamailio's
//! nathelper solves it with `add_contact_alias()` (a `;alias=ip~port~proto` URI
//! parameter holding the observed source) and `handle_ruri_alias()` (the proxy reads it
//! back from the Request-URI and sends there). rport does the same with its steering tag
//! (`rport_common::tag`, kind [`rport_common::tag::KIND_CONTACT`]): `;rptag=TAG` holds the
//! observed source sealed with a MAC, so the XDP program steers the incoming request to the
//! phone's NAT mapping without any state, and nobody but rport can make a tag that steers.
//!
//! It must be a *URI* parameter (inside the `<>`), not a Contact header parameter: a
//! registrar stores and hands back the URI, the header parameters (`expires`, `q`, ...)
//! are its own business. And it must not break the phone: a UA looks for its own Contact in
//! the 200 OK of its REGISTER to learn its expiry, and RFC 3261 §19.1.4 says that a URI
//! parameter present in only one of two URIs is ignored when they are compared (`user`,
//! `ttl`, `method`, `maddr` and `transport` excepted), so the aliased URI still matches the
//! one the phone sent.
//!
//! A URI whose host:port is the observed source is not aliased: the phone is not behind a
//! NAT (or it already wrote its public mapping), the server reaches it at its Contact, and
//! there is nothing to steer. The comparison is of addresses, not text (`[2001:db8::1]` is
//! `[2001:0db8:0:0::1]`), with the scheme's default port (5060 for `sip`, 5061 for `sips`)
//! when none is written; a host name always differs.
//!
//! # Rules
//!
//! For every value of every Contact header (`Contact` or `m`, any case) of the header
//! section (the body is never looked at):
//! - `*` and URIs of other schemes (`tel:`, `mailto:`, `urn:`...) are left alone;
//! - a `sip:`/`sips:` URI loses every URI parameter named `rptag` (any case, escaped or
//!   not, with or without a value: only rport gives tags); the first one is replaced where
//!   it stands when the URI gets ours, so a URI that already carries exactly our tag is
//!   left byte for byte;
//! - with a tag to give and a host:port that is not the source, `;rptag=TAG` goes at the end
//!   of the URI parameters: before `?headers` or before the `>`. An addr-spec Contact
//!   (`Contact: sip:a@192.168.1.50;expires=60`) has no URI parameters (what follows it are
//!   header parameters, RFC 3261 §20), so it becomes a name-addr:
//!   `<sip:a@192.168.1.50;rptag=TAG>;expires=60`;
//! - nothing is edited inside a display name, a quoted string or a header parameter (an
//!   `rptag` header parameter is not a URI parameter, and not ours to remove).
//!
//! Anything that does not follow the grammar below (an unbalanced quote or `<`, an empty
//! value, a bad IPv6 reference, a URI byte that no rule allows, an `@` twice, an `rptag`
//! hidden in the user part) is [`RewriteError::MalformedContact`] and the message is left as
//! it came: an edit of what was not understood could land anywhere.
//!
//! # Grammar (RFC 3261 §20.10, §25.1, as implemented)
//!
//! ```text
//! Contact        = ("Contact" / "m") HCOLON ( STAR / (contact-param *(COMMA contact-param)) )
//! contact-param  = (name-addr / addr-spec) *(SEMI contact-params)
//! name-addr      = [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name   = *(token LWS) / quoted-string
//! addr-spec      = SIP-URI / SIPS-URI / absoluteURI
//! contact-params = generic-param          ; q, expires and extensions alike
//! generic-param  = token [ EQUAL gen-value ]
//! gen-value      = token / host / quoted-string
//!
//! SIP-URI        = "sip:" [ userinfo ] hostport uri-parameters [ headers ]  ; "sips:" alike
//! userinfo       = ( user / telephone-subscriber ) [ ":" password ] "@"
//! user           = 1*( unreserved / escaped / user-unreserved )
//! user-unreserved= "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
//! password       = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
//! hostport       = host [ ":" port ]
//! host           = hostname / IPv4address / IPv6reference
//! uri-parameters = *( ";" uri-parameter )
//! uri-parameter  = pname [ "=" pvalue ]       ; transport-param, lr-param... alike
//! pname / pvalue = 1*paramchar                ; an empty pvalue is accepted
//! paramchar      = param-unreserved / unreserved / escaped
//! param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
//! headers        = "?" header *( "&" header )
//! header         = hname "=" hvalue           ; hnv-unreserved / unreserved / escaped
//! hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
//! unreserved     = alphanum / "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
//! escaped        = "%" HEXDIG HEXDIG
//! ```
//!
//! What this needs to be certain of, and how:
//! - where a name-addr's URI ends: at the first `>` (no URI byte may be one); a `<` or `,`
//!   inside a quoted display name is text (quoted strings are walked with their escapes);
//! - where an addr-spec's URI ends: at the first `;`, `,` or blank (RFC 3261 §20: a URI with
//!   a comma, semicolon or question mark MUST be a name-addr, so a `?` in a SIP addr-spec
//!   is malformed);
//! - where the host starts: the user part may hold `;`, `?`, `,` and `=`
//!   (`<sip:100;phone-context=x@host;p>`), but no URI byte other than the end of the
//!   userinfo is an `@`: so the host follows the URI's only `@`, or the scheme when there
//!   is none, and two `@` are malformed. A user part that holds `rptag` is refused too:
//!   a parser that ends the user part at a `;` would read it as a URI parameter.
//!
//! Zero allocation: the edits (ranges of the message and what replaces each) go into a
//! fixed array of [`MAX_EDITS`], are measured (a message that would not fit is left
//! untouched, [`RewriteError::NoRoom`]), then applied right to left, each written straight
//! into its place. A message that needs more edits (more than 16 name-addr URIs or 8
//! addr-specs to alias, or a flood of `rptag` parameters) is refused whole with [`RewriteError::TooManyContacts`]
//! rather than aliased in part: a Contact left unaliased with the others done would look
//! like success.
use std::{
    net::{IpAddr, Ipv6Addr},
    ops::Range,
};

use rport_common::tag::{self, TagBuf};

use super::{
    headers::{self, TOKEN, is_ws},
    rewrite::{Observed, RewriteError},
    via::v4_literal,
};

/// The most edits one message gets: one per URI that gets our tag (two for an addr-spec,
/// which is wrapped in `<>`) and one per client `rptag` removed.
pub const MAX_EDITS: usize = 16;

/// What the Contact aliasing puts in.
#[derive(Clone, Copy, Default)]
pub struct ContactPolicy {
    /// The steering tag (kind `KIND_CONTACT`, made for the observed source) for every
    /// Contact URI that is not the source; `None`: only remove the clients' tags.
    pub tag: Option<TagBuf>,
}

impl std::fmt::Debug for ContactPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactPolicy")
            .field("tag", &self.tag.is_some())
            .finish()
    }
}

/// Outcome of the Contact aliasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactRewritten {
    /// New length of the message.
    pub len: usize,
    /// Whether any byte changed.
    pub changed: bool,
    /// `sip`/`sips` Contact URIs that carry our tag now (given it now, or already carrying
    /// exactly it).
    pub aliased: u32,
    /// Client `rptag` URI parameters removed (a client's tag that ours replaced where it
    /// stood is not counted).
    pub removed: u32,
    /// `sip`/`sips` Contact URIs seen.
    pub contacts: u32,
}

/// What replaces an edit's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum New {
    /// Nothing: a client's `rptag` removed.
    Nothing,
    /// `;rptag=TAG`.
    Tag,
    /// `<`, opening an addr-spec made a name-addr.
    Open,
    /// `;rptag=TAG>`, closing it.
    TagClose,
}

impl New {
    /// The bytes, in pieces (no copy to join them).
    fn parts(self, t: &[u8]) -> [&[u8]; 5] {
        match self {
            New::Nothing => [b""; 5],
            New::Tag => [b";", tag::PARAM, b"=", t, b""],
            New::Open => [b"<", b"", b"", b"", b""],
            New::TagClose => [b";", tag::PARAM, b"=", t, b">"],
        }
    }

    fn len(self, t: &[u8]) -> usize {
        self.parts(t).iter().map(|p| p.len()).sum()
    }

    /// Whether `old` is already exactly this.
    fn is(self, t: &[u8], old: &[u8]) -> bool {
        let mut rest = old;
        for p in self.parts(t) {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }

    /// Writes it into `out`, exactly [`New::len`] bytes long.
    fn fill(self, t: &[u8], out: &mut [u8]) {
        let mut at = 0;
        for p in self.parts(t) {
            out[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
    }
}

/// One change: `start..end` of the message (empty: an insertion) becomes `new`.
#[derive(Clone, Copy, Debug)]
struct Edit {
    start: usize,
    end: usize,
    new: New,
}

/// The edits of one message, in message order, and what they amount to.
struct Plan<'t> {
    edits: [Edit; MAX_EDITS],
    n: usize,
    /// Our tag's text, when there is one to give.
    tag: Option<&'t [u8]>,
    observed: Observed,
    aliased: u32,
    removed: u32,
    contacts: u32,
}

impl Plan<'_> {
    fn push(&mut self, old: Range<usize>, new: New) -> Result<(), RewriteError> {
        let e = self
            .edits
            .get_mut(self.n)
            .ok_or(RewriteError::TooManyContacts)?;
        *e = Edit {
            start: old.start,
            end: old.end,
            new,
        };
        self.n += 1;
        Ok(())
    }
}

const BAD: RewriteError = RewriteError::MalformedContact;

/// A byte set as a table (one lookup per byte).
type Class = [bool; 256];

const fn class(extra: &[u8]) -> Class {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        let mut k = 0;
        while k < extra.len() {
            t[c] |= extra[k] == b;
            k += 1;
        }
        c += 1;
    }
    t
}

/// `unreserved` without the alphanumerics, the base of the URI classes below.
macro_rules! mark {
    ($($extra:literal)*) => { concat!("-_.!~*'()" $(, $extra)*).as_bytes() };
}
/// `user` and `password` bytes (`escaped` apart): unreserved, user-unreserved, `:`.
const USERINFO: Class = class(mark!("&=+$,;?/:"));
/// `paramchar` (`escaped` apart).
const PARAMCHAR: Class = class(mark!("[]/:&+$"));
/// `headers` bytes (`escaped` apart): hnv-unreserved, unreserved, `=` and `&`.
const HEADERS: Class = class(mark!("[]/?:+$=&"));
/// A host name or IPv4 literal.
const HOST: Class = class(b"-.");
/// Inside the brackets of an IPv6 reference.
const HOST6: Class = class(b":.");
/// A header parameter's unquoted value: token or host (an IPv6 reference included).
const GEN_VALUE: Class = {
    let mut t = TOKEN;
    t[b':' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// A position in a header value (`i` up to `end`, the value's end).
struct Cursor<'a> {
    m: &'a [u8],
    i: usize,
    end: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        (self.i < self.end).then(|| self.m[self.i])
    }

    fn at(&self, k: usize) -> Option<u8> {
        (self.i + k < self.end).then(|| self.m[self.i + k])
    }

    fn eat(&mut self, c: u8) -> bool {
        let yes = self.peek() == Some(c);
        self.i += yes as usize;
        yes
    }

    /// SWS: SP, HTAB and folds (`[CR] LF` then SP/HTAB), as the Via parser reads them.
    fn sws(&mut self) {
        loop {
            match (self.peek(), self.at(1), self.at(2)) {
                (Some(c), _, _) if is_ws(c) => self.i += 1,
                (Some(b'\r'), Some(b'\n'), Some(c)) if is_ws(c) => self.i += 3,
                (Some(b'\n'), Some(c), _) if is_ws(c) => self.i += 2,
                _ => return,
            }
        }
    }

    /// The bytes of `class` from here on (possibly none).
    fn run(&mut self, class: &Class) -> Range<usize> {
        let start = self.i;
        while self.peek().is_some_and(|c| class[c as usize]) {
            self.i += 1;
        }
        start..self.i
    }

    /// A quoted string, the cursor on its opening quote (the Via parser's rules).
    fn quoted(&mut self) -> Result<(), RewriteError> {
        self.i += 1;
        loop {
            match self.peek().ok_or(BAD)? {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => match self.at(1) {
                    Some(q) if q < 0x80 && q != b'\r' && q != b'\n' => self.i += 2,
                    _ => return Err(BAD),
                },
                b' ' | b'\t' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => self.i += 1,
                b'\r' | b'\n' => {
                    // A fold is LWS, so qdtext; a bare CR or LF is not.
                    let before = self.i;
                    self.sws();
                    if self.i == before {
                        return Err(BAD);
                    }
                }
                _ => return Err(BAD),
            }
        }
    }
}

/// Aliases the Contacts of the SIP message (request or response) in `buf[..len]` (see the
/// module doc); `buf[len..]` is free room for the message to grow into. On any error the
/// buffer is left exactly as it was.
pub fn rewrite_contacts(
    buf: &mut [u8],
    len: usize,
    observed: Observed,
    policy: ContactPolicy,
) -> Result<ContactRewritten, RewriteError> {
    let len = len.min(buf.len());
    let m = &buf[..len];
    let h = headers::frame(m).ok_or(RewriteError::NotSip)?;
    let mut plan = Plan {
        edits: [Edit {
            start: 0,
            end: 0,
            new: New::Nothing,
        }; MAX_EDITS],
        n: 0,
        tag: policy.tag.as_ref().map(TagBuf::as_bytes),
        observed: Observed {
            addr: observed.addr.to_canonical(),
            port: observed.port,
        },
        aliased: 0,
        removed: 0,
        contacts: 0,
    };
    let mut from = h.start;
    while let Some((v, next)) = headers::find_from(m, &h, from, b"contact", b"m") {
        header_value(m, v, &mut plan)?;
        from = next;
    }
    let t = plan.tag.unwrap_or_default();
    let edits = &plan.edits[..plan.n];
    debug_assert!(edits.windows(2).all(|w| w[0].end <= w[1].start));
    // Applied right to left, the message goes through these lengths: the edits still to
    // do keep their offsets, and the longest one must fit.
    let (mut new_len, mut peak) = (len, len);
    for e in edits.iter().rev() {
        new_len = new_len - (e.end - e.start) + e.new.len(t);
        peak = peak.max(new_len);
    }
    if peak > buf.len() {
        return Err(RewriteError::NoRoom);
    }
    let mut cur = len;
    for e in edits.iter().rev() {
        let n = e.new.len(t);
        buf.copy_within(e.end..cur, e.start + n);
        e.new.fill(t, &mut buf[e.start..e.start + n]);
        cur = cur - (e.end - e.start) + n;
    }
    debug_assert_eq!(cur, new_len);
    Ok(ContactRewritten {
        len: new_len,
        changed: !edits.is_empty(),
        aliased: plan.aliased,
        removed: plan.removed,
        contacts: plan.contacts,
    })
}

/// One Contact header's value, `m[v]`: `*`, or contact-params separated by commas.
fn header_value(m: &[u8], v: Range<usize>, plan: &mut Plan) -> Result<(), RewriteError> {
    let mut c = Cursor {
        m,
        i: v.start,
        end: v.end,
    };
    c.sws();
    if c.peek() == Some(b'*') {
        let star = c.i;
        c.i += 1;
        c.sws();
        if c.peek().is_none() {
            return Ok(());
        }
        // Not alone: read as a display-name token below (and refused there).
        c.i = star;
    }
    loop {
        c.sws();
        if c.peek().is_none() {
            // An empty value, or nothing after a comma.
            return Err(BAD);
        }
        contact_param(&mut c, plan)?;
        // Header parameters, up to a comma (the next value) or the end of the header.
        loop {
            c.sws();
            match c.peek() {
                None => return Ok(()),
                Some(b',') => {
                    c.i += 1;
                    break;
                }
                Some(b';') => {
                    c.i += 1;
                    c.sws();
                    if c.run(&TOKEN).is_empty() {
                        return Err(BAD);
                    }
                    c.sws();
                    if c.eat(b'=') {
                        c.sws();
                        if c.peek() == Some(b'"') {
                            c.quoted()?;
                        } else if c.run(&GEN_VALUE).is_empty() {
                            return Err(BAD);
                        }
                    }
                }
                Some(_) => return Err(BAD),
            }
        }
    }
}

/// A name-addr or addr-spec, the cursor on its first byte; leaves it after the URI (after
/// the `>` of a name-addr).
fn contact_param(c: &mut Cursor, plan: &mut Plan) -> Result<(), RewriteError> {
    match c.peek() {
        Some(b'"') => {
            c.quoted()?;
            c.sws();
            if !c.eat(b'<') {
                return Err(BAD);
            }
        }
        Some(b'<') => c.i += 1,
        _ => {
            let t = c.run(&TOKEN);
            if t.is_empty() {
                return Err(BAD);
            }
            if c.peek() == Some(b':') {
                // No display-name token holds a colon: a scheme, so an addr-spec.
                c.i = t.start;
                let u = c.i;
                while let Some(b) = c.peek() {
                    if matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    if !uri_byte(b) {
                        return Err(BAD);
                    }
                    c.i += 1;
                }
                return uri(c.m, u..c.i, false, plan);
            }
            // Display-name tokens, then the `<`.
            loop {
                c.sws();
                if c.eat(b'<') {
                    break;
                }
                if c.run(&TOKEN).is_empty() {
                    return Err(BAD);
                }
            }
        }
    }
    // Inside the angle brackets: the URI, up to the first `>`.
    let u = c.i;
    loop {
        match c.peek() {
            None => return Err(BAD),
            Some(b'>') => break,
            Some(b) if uri_byte(b) => c.i += 1,
            Some(_) => return Err(BAD),
        }
    }
    let r = u..c.i;
    c.i += 1;
    uri(c.m, r, true, plan)
}

/// A byte a URI may hold at all (the classes of its parts are checked later): visible
/// ASCII but the delimiters around it.
fn uri_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !matches!(b, b'<' | b'>' | b'"')
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
fn is_scheme(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_alphabetic)
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// The bytes of `class` or escapes (`%` HEXDIG HEXDIG) from `i` on, up to `end`: where they
/// stop, or malformed for a bad escape.
fn run_escaped(m: &[u8], mut i: usize, end: usize, class: &Class) -> Result<usize, RewriteError> {
    while i < end {
        match m[i] {
            b'%' => {
                let hex = |k: usize| k < end && m[k].is_ascii_hexdigit();
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(BAD);
                }
                i += 3;
            }
            b if class[b as usize] => i += 1,
            _ => break,
        }
    }
    Ok(i)
}

/// The bytes of an escaped run, unescaped, lowercased (the run was checked).
fn unescaped(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *s.get(i)?;
        if b == b'%' {
            let d = |k: usize| {
                s.get(k)
                    .and_then(|&c| (c as char).to_digit(16))
                    .unwrap_or(0) as u8
            };
            i += 3;
            Some((d(i - 2) << 4 | d(i - 1)).to_ascii_lowercase())
        } else {
            i += 1;
            Some(b.to_ascii_lowercase())
        }
    })
}

/// Whether a URI parameter name is `rptag`, in any case, escaped or not (RFC 3261 §19.1.4:
/// `%72ptag` is the same name to whoever compares URIs).
fn is_tag_name(name: &[u8]) -> bool {
    unescaped(name).eq(tag::PARAM.iter().copied())
}

/// Whether an escaped run holds `rptag` anywhere, in any case, escaped or not.
fn holds_tag_name(s: &[u8]) -> bool {
    let p = tag::PARAM;
    let mut window = [0u8; 8];
    let mut n = 0;
    for b in unescaped(s) {
        if n == p.len() {
            window.copy_within(1..n, 0);
            n -= 1;
        }
        window[n] = b;
        n += 1;
        if &window[..n] == p {
            return true;
        }
    }
    false
}

/// One Contact URI, `m[u]`, inside angle brackets or not: the edits it needs.
fn uri(m: &[u8], u: Range<usize>, angled: bool, plan: &mut Plan) -> Result<(), RewriteError> {
    let end = u.end;
    let colon = m[u.clone()].iter().position(|&b| b == b':').ok_or(BAD)?;
    let scheme = &m[u.start..u.start + colon];
    if !is_scheme(scheme) {
        return Err(BAD);
    }
    let default_port = if scheme.eq_ignore_ascii_case(b"sip") {
        5060
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        5061
    } else {
        // tel:, mailto:, urn:...: not ours to alias, nothing of rport in them.
        return Ok(());
    };
    plan.contacts += 1;
    let after = u.start + colon + 1;
    // The userinfo ends at the URI's only `@` (no other URI byte is one).
    let mut ats = m[after..end]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'@');
    let mut i = match (ats.next(), ats.next()) {
        (None, _) => after,
        (Some((k, _)), None) => {
            let at = after + k;
            if run_escaped(m, after, at, &USERINFO)? != at || holds_tag_name(&m[after..at]) {
                return Err(BAD);
            }
            at + 1
        }
        (Some(_), Some(_)) => return Err(BAD),
    };
    // hostport.
    let host = if m.get(i) == Some(&b'[') && i < end {
        let s = i + 1;
        let mut e = s;
        while e < end && HOST6[m[e] as usize] {
            e += 1;
        }
        if e == s || e >= end || m[e] != b']' {
            return Err(BAD);
        }
        let a: Ipv6Addr = std::str::from_utf8(&m[s..e])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(BAD)?;
        i = e + 1;
        Some(IpAddr::V6(a).to_canonical())
    } else {
        let s = i;
        while i < end && HOST[m[i] as usize] {
            i += 1;
        }
        if i == s {
            return Err(BAD);
        }
        v4_literal(&m[s..i]).map(IpAddr::from)
    };
    let port = if i < end && m[i] == b':' {
        let s = i + 1;
        i = s;
        while i < end && m[i].is_ascii_digit() {
            i += 1;
        }
        let d = &m[s..i];
        if d.is_empty() || d.len() > 5 {
            return Err(BAD);
        }
        u16::try_from(d.iter().fold(0u32, |v, &c| v * 10 + (c - b'0') as u32)).map_err(|_| BAD)?
    } else {
        default_port
    };
    let want =
        plan.tag.is_some() && !(host == Some(plan.observed.addr) && port == plan.observed.port);
    if !angled {
        // No URI parameters can be here (they would be header parameters), nor headers.
        if i != end {
            return Err(BAD);
        }
        if want {
            plan.push(u.start..u.start, New::Open)?;
            plan.push(end..end, New::TagClose)?;
            plan.aliased += 1;
        }
        return Ok(());
    }
    // URI parameters: every rptag removed, the first one ours when we give one.
    let mut tagged = false;
    while i < end && m[i] == b';' {
        let ps = i;
        let ne = run_escaped(m, i + 1, end, &PARAMCHAR)?;
        if ne == i + 1 {
            return Err(BAD);
        }
        i = ne;
        if i < end && m[i] == b'=' {
            i = run_escaped(m, i + 1, end, &PARAMCHAR)?;
        }
        if is_tag_name(&m[ps + 1..ne]) {
            if want && !tagged {
                tagged = true;
                if !New::Tag.is(plan.tag.unwrap_or_default(), &m[ps..i]) {
                    plan.push(ps..i, New::Tag)?;
                }
            } else {
                plan.push(ps..i, New::Nothing)?;
                plan.removed += 1;
            }
        }
    }
    let params_end = i;
    if i < end && (m[i] != b'?' || run_escaped(m, i + 1, end, &HEADERS)? != end) {
        return Err(BAD);
    }
    if want {
        if !tagged {
            plan.push(params_end..params_end, New::Tag)?;
        }
        plan.aliased += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Observed = Observed {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 1)),
        port: 32415,
    };
    const SRC6: Observed = Observed {
        addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x60)),
        port: 5062,
    };
    const T: &str = "0a1b";

    fn ours() -> ContactPolicy {
        ContactPolicy {
            tag: Some(TagBuf::from_text(T.as_bytes())),
        }
    }

    /// A REGISTER with these header lines between the usual ones, and a body that looks
    /// like headers (it must never be touched).
    fn msg(lines: &str) -> String {
        format!(
            "REGISTER sip:198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1\r\nTo: <sip:a@198.51.100.10;rptag=x>\r\n{lines}\r\nCall-ID: c1@192.168.1.50\r\nContent-Length: 36\r\n\r\nContact: <sip:b@192.168.1.50;rptag=1>"
        )
    }

    fn run(
        m: &str,
        src: Observed,
        p: ContactPolicy,
    ) -> Result<(String, ContactRewritten), RewriteError> {
        let mut b = m.as_bytes().to_vec();
        b.resize(m.len() + 512, 0);
        let before = b.clone();
        match rewrite_contacts(&mut b, m.len(), src, p) {
            Ok(r) => Ok((String::from_utf8(b[..r.len].to_vec()).unwrap(), r)),
            Err(e) => {
                assert_eq!(b, before, "an error left the buffer changed");
                Err(e)
            }
        }
    }

    /// The Contact lines (as given to [`msg`]) after aliasing with our tag from [`SRC`].
    fn alias(lines: &str) -> String {
        alias_from(lines, SRC)
    }

    fn alias_from(lines: &str, src: Observed) -> String {
        let (out, r) = run(&msg(lines), src, ours()).unwrap_or_else(|e| panic!("{lines:?}: {e}"));
        // Idempotent, whatever the case.
        let (again, r2) = run(&out, src, ours()).unwrap();
        assert_eq!(again, out);
        assert!(!r2.changed);
        assert_eq!(r2.aliased, r.aliased);
        let head = msg("");
        let (pre, post) = head.split_once("\r\n\r\nCall-ID").unwrap();
        let out = out
            .strip_prefix(pre)
            .and_then(|o| o.strip_prefix("\r\n"))
            .and_then(|o| o.strip_suffix(&format!("\r\nCall-ID{post}")))
            .unwrap_or_else(|| panic!("edited outside the Contact lines: {out:?}"));
        out.to_owned()
    }

    fn malformed(lines: &str) {
        assert_eq!(
            run(&msg(lines), SRC, ours()).unwrap_err(),
            RewriteError::MalformedContact,
            "{lines:?}"
        );
    }

    #[test]
    fn name_addr_gets_the_tag_last_among_uri_parameters() {
        assert_eq!(
            alias("Contact: <sip:alice@192.168.1.50:5060;rinstance=6f8e>"),
            "Contact: <sip:alice@192.168.1.50:5060;rinstance=6f8e;rptag=0a1b>"
        );
        assert_eq!(
            alias("Contact: <sip:alice@192.168.1.50>;expires=3600;+sip.instance=\"<urn:uuid:1>\""),
            "Contact: <sip:alice@192.168.1.50;rptag=0a1b>;expires=3600;+sip.instance=\"<urn:uuid:1>\""
        );
        // Before the URI headers.
        assert_eq!(
            alias("Contact: <sip:alice@192.168.1.50;lr?Subject=x&Priority=y>"),
            "Contact: <sip:alice@192.168.1.50;lr;rptag=0a1b?Subject=x&Priority=y>"
        );
        // No user part.
        assert_eq!(
            alias("Contact: <sip:192.168.1.50:5070>"),
            "Contact: <sip:192.168.1.50:5070;rptag=0a1b>"
        );
    }

    #[test]
    fn display_names_quoted_or_tokens_are_never_edited() {
        assert_eq!(
            alias("Contact: \"Al <ice>, \\\"the\\\" ; one\" <sip:alice@192.168.1.50>"),
            "Contact: \"Al <ice>, \\\"the\\\" ; one\" <sip:alice@192.168.1.50;rptag=0a1b>"
        );
        assert_eq!(
            alias("Contact: Alice  Smith\t<sip:alice@192.168.1.50>"),
            "Contact: Alice  Smith\t<sip:alice@192.168.1.50;rptag=0a1b>"
        );
        assert_eq!(
            alias("Contact: \"rptag\" <sip:rp@192.168.1.50>;x=\";rptag=1,<sip:a@b>\""),
            "Contact: \"rptag\" <sip:rp@192.168.1.50;rptag=0a1b>;x=\";rptag=1,<sip:a@b>\""
        );
    }

    #[test]
    fn addr_spec_is_wrapped_its_parameters_stay_header_parameters() {
        assert_eq!(
            alias("Contact: sip:a@192.168.1.50:5060;expires=60"),
            "Contact: <sip:a@192.168.1.50:5060;rptag=0a1b>;expires=60"
        );
        assert_eq!(
            alias("Contact: SIP:a@192.168.1.50 ; q=0.5"),
            "Contact: <SIP:a@192.168.1.50;rptag=0a1b> ; q=0.5"
        );
        // An rptag after an addr-spec is a header parameter: not ours to touch.
        assert_eq!(
            alias("Contact: sip:a@192.168.1.50;rptag=ffff"),
            "Contact: <sip:a@192.168.1.50;rptag=0a1b>;rptag=ffff"
        );
        assert_eq!(
            alias("Contact: <sip:a@192.168.1.50>;rptag=ffff"),
            "Contact: <sip:a@192.168.1.50;rptag=0a1b>;rptag=ffff"
        );
        // A `?` in an addr-spec: it MUST have been a name-addr.
        malformed("Contact: sip:a@192.168.1.50?x=y");
    }

    #[test]
    fn several_values_and_headers_compact_and_folded() {
        assert_eq!(
            alias(
                "Contact: <sip:a@192.168.1.50>;q=1, \"B, b\" <sip:b@192.168.1.51>,sip:c@h.invalid\r\nX-Other: <sip:x@192.168.1.52>\r\nm : <sip:d@[2001:db8::5]>\r\nCONTACT: <tel:+15551234>,\r\n\t<sip:e@192.168.1.53;RPTAG=bad>"
            ),
            "Contact: <sip:a@192.168.1.50;rptag=0a1b>;q=1, \"B, b\" <sip:b@192.168.1.51;rptag=0a1b>,<sip:c@h.invalid;rptag=0a1b>\r\nX-Other: <sip:x@192.168.1.52>\r\nm : <sip:d@[2001:db8::5];rptag=0a1b>\r\nCONTACT: <tel:+15551234>,\r\n\t<sip:e@192.168.1.53;rptag=0a1b>"
        );
        let (_, r) = run(
            &msg("Contact: <sip:a@192.168.1.50>, <sip:b@192.168.1.50;rptag=1;rptag=2>\r\nm: <mailto:a@b>, <urn:x:y>"),
            SRC,
            ours(),
        )
        .unwrap();
        assert_eq!((r.contacts, r.aliased, r.removed), (2, 2, 1));
    }

    #[test]
    fn star_and_other_schemes_are_left_alone() {
        for lines in [
            "Contact: *",
            "Contact:  *  ",
            "Contact: <tel:+1-201-555-0123;ext=1>",
            "Contact: urn:service:sos",
            "Contact: \"x\" <mailto:a@b.invalid;rptag=1>",
        ] {
            let m = msg(lines);
            let (out, r) = run(&m, SRC, ours()).unwrap();
            assert_eq!(out, m);
            assert!(!r.changed);
            assert_eq!(r.contacts, 0);
        }
        malformed("Contact: *, <sip:a@192.168.1.50>");
    }

    #[test]
    fn the_source_itself_is_not_aliased_compared_as_addresses() {
        for lines in [
            "Contact: <sip:a@203.0.113.1:32415>",
            "Contact: sip:a@203.0.113.1:32415;expires=60",
            "Contact: <sip:a@203.0.113.001:32415;lr>",
        ] {
            let m = msg(lines);
            let (out, r) = run(&m, SRC, ours()).unwrap();
            assert_eq!(out, m, "{lines}");
            assert_eq!((r.changed, r.contacts, r.aliased), (false, 1, 0));
        }
        // Another port of the source is another mapping: aliased.
        assert_eq!(
            alias("Contact: <sip:a@203.0.113.1:5060>"),
            "Contact: <sip:a@203.0.113.1:5060;rptag=0a1b>"
        );
        // The default ports: 5060 for sip, 5061 for sips.
        let at_5060 = Observed { port: 5060, ..SRC };
        let at_5061 = Observed { port: 5061, ..SRC };
        assert_eq!(
            alias_from("Contact: <sip:a@203.0.113.1>", at_5060),
            "Contact: <sip:a@203.0.113.1>"
        );
        assert_eq!(
            alias_from("Contact: <sips:a@203.0.113.1>", at_5060),
            "Contact: <sips:a@203.0.113.1;rptag=0a1b>"
        );
        assert_eq!(
            alias_from("Contact: <sips:a@203.0.113.1>", at_5061),
            "Contact: <sips:a@203.0.113.1>"
        );
        // A client's tag on the source's own URI is removed all the same.
        let (out, r) = run(
            &msg("Contact: <sip:a@203.0.113.1:32415;rptag=ffff>"),
            SRC,
            ours(),
        )
        .unwrap();
        assert!(out.contains("Contact: <sip:a@203.0.113.1:32415>\r\n"));
        assert_eq!((r.aliased, r.removed), (0, 1));
    }

    #[test]
    fn ipv6_references() {
        assert_eq!(
            alias_from("Contact: <sip:a@[2001:0db8:1:0::60]:5062>", SRC6),
            "Contact: <sip:a@[2001:0db8:1:0::60]:5062>"
        );
        assert_eq!(
            alias_from("Contact: <sip:a@[2001:db8:1::60]:5060;transport=udp>", SRC6),
            "Contact: <sip:a@[2001:db8:1::60]:5060;transport=udp;rptag=0a1b>"
        );
        assert_eq!(
            alias_from("Contact: sip:a@[2001:db8::1]", SRC6),
            "Contact: <sip:a@[2001:db8::1];rptag=0a1b>"
        );
        // An IPv4-mapped reference is the IPv4 source.
        assert_eq!(
            alias("Contact: <sip:a@[::ffff:203.0.113.1]:32415>"),
            "Contact: <sip:a@[::ffff:203.0.113.1]:32415>"
        );
        for bad in [
            "Contact: <sip:a@[2001:db8::1>",
            "Contact: <sip:a@[2001:db8:::1]>",
            "Contact: <sip:a@[]>",
            "Contact: <sip:a@[g::1]>",
            "Contact: <sip:a@[2001:db8::1]x>",
        ] {
            malformed(bad);
        }
    }

    #[test]
    fn a_clients_tags_go_and_ours_replaces_the_first_where_it_stands() {
        assert_eq!(
            alias("Contact: <sip:a@192.168.1.50;rptag=ffff;lr;RpTaG;%72PTAG=1;rptagx=1>"),
            "Contact: <sip:a@192.168.1.50;rptag=0a1b;lr;rptagx=1>"
        );
        let (_, r) = run(
            &msg("Contact: <sip:a@192.168.1.50;rptag=ffff;lr;RpTaG;%72PTAG=1>"),
            SRC,
            ours(),
        )
        .unwrap();
        assert_eq!((r.aliased, r.removed), (1, 2));
        // Already ours, where it stands: byte for byte.
        let m = msg("Contact: <sip:a@192.168.1.50;rptag=0a1b;lr>");
        let (out, r) = run(&m, SRC, ours()).unwrap();
        assert_eq!(out, m);
        assert_eq!((r.changed, r.aliased, r.removed), (false, 1, 0));
        // No tag to give: every one removed, nothing added.
        let (out, r) = run(
            &msg("Contact: <sip:a@192.168.1.50;rptag=0a1b;lr;rptag>"),
            SRC,
            ContactPolicy::default(),
        )
        .unwrap();
        assert!(
            out.contains("Contact: <sip:a@192.168.1.50;lr>\r\n"),
            "{out}"
        );
        assert_eq!((r.changed, r.aliased, r.removed), (true, 0, 2));
        let m = msg("Contact: <sip:a@192.168.1.50;lr>");
        let (out, r) = run(&m, SRC, ContactPolicy::default()).unwrap();
        assert_eq!((out, r.changed), (m, false));
    }

    #[test]
    fn user_parts_with_separators() {
        assert_eq!(
            alias("Contact: <sip:100;phone-context=x@192.168.1.50;p>"),
            "Contact: <sip:100;phone-context=x@192.168.1.50;p;rptag=0a1b>"
        );
        assert_eq!(
            alias("Contact: <sip:a,b?c=d&e:pw@192.168.1.50>"),
            "Contact: <sip:a,b?c=d&e:pw@192.168.1.50;rptag=0a1b>"
        );
        // The user part holds the source's address, the host does not: aliased.
        assert_eq!(
            alias("Contact: <sips:203.0.113.1;x=1@192.168.1.50:32415>"),
            "Contact: <sips:203.0.113.1;x=1@192.168.1.50:32415;rptag=0a1b>"
        );
        // An rptag in the user part: a parser that stops at the `;` reads it as a URI
        // parameter; and two `@`: which one ends the userinfo?
        malformed("Contact: <sip:host;rptag=ffff;x=a@192.168.1.50>");
        malformed("Contact: <sip:a;%52ptag=1@192.168.1.50>");
        malformed("Contact: <sip:a@b@192.168.1.50>");
    }

    #[test]
    fn what_is_not_understood_is_left_alone() {
        for bad in [
            "Contact:",
            "Contact:  ",
            "Contact: <sip:a@192.168.1.50>,",
            "Contact: ,<sip:a@192.168.1.50>",
            "Contact: \"open <sip:a@192.168.1.50>",
            "Contact: <sip:a@192.168.1.50",
            "Contact: sip:a@192.168.1.50>",
            "Contact: Alice <sip:a@192.168.1.50",
            "Contact: Al\"ice\" <sip:a@192.168.1.50>",
            "Contact: <sip:a@192.168.1.50> junk",
            "Contact: <sip:a@192.168.1.50>;",
            "Contact: <sip:a@192.168.1.50>;x=",
            "Contact: <sip:a@192.168.1.50>;x=a@b",
            "Contact: <sip:a@192.168.1.50 >",
            "Contact: <sip:a@192.168.1.50;x=\"y\">",
            "Contact: <sip:a@192.168.1.50:>",
            "Contact: <sip:a@192.168.1.50:99999>",
            "Contact: <sip:a@192.168.1.50:123456>",
            "Contact: <sip:a@host_name>",
            "Contact: <sip:>",
            "Contact: <sip:a@>",
            "Contact: <sip:a@192.168.1.50;;lr>",
            "Contact: <sip:a@192.168.1.50;x%4>",
            "Contact: <sip:a@192.168.1.50?a;b>",
            "Contact: <1sip:a@192.168.1.50>",
            "Contact: <>",
            "Contact: <sipa@192.168.1.50>",
            "Contact: <sip:a\u{e9}@192.168.1.50>",
            // A good Contact first: nothing of the message is aliased either.
            "Contact: <sip:a@192.168.1.50>\r\nContact: <sip:b@192.168.1.50",
        ] {
            malformed(bad);
        }
    }

    #[test]
    fn responses_too_and_bad_messages() {
        let m = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.10\r\nContact: <sip:a@192.168.1.50>\r\n\r\n";
        let (out, r) = run(m, SRC, ours()).unwrap();
        assert_eq!(
            out,
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.10\r\nContact: <sip:a@192.168.1.50;rptag=0a1b>\r\n\r\n"
        );
        assert_eq!(r.len, out.len());
        assert_eq!(
            run("hello\r\n\r\n", SRC, ours()).unwrap_err(),
            RewriteError::NotSip
        );
        // No Contact at all.
        let m = "OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n";
        let (out, r) = run(m, SRC, ours()).unwrap();
        assert_eq!((out.as_str(), r.changed, r.contacts), (m, false, 0));
    }

    #[test]
    fn no_room_and_too_many_edits_leave_the_buffer_as_it_was() {
        let m = msg("Contact: sip:a@192.168.1.50");
        let grow = "<;rptag=0a1b>".len();
        let mut b = m.clone().into_bytes();
        b.resize(m.len() + grow, 0);
        assert!(rewrite_contacts(&mut b, m.len(), SRC, ours()).is_ok());
        let mut b = m.clone().into_bytes();
        b.resize(m.len() + grow - 1, 0);
        let before = b.clone();
        assert_eq!(
            rewrite_contacts(&mut b, m.len(), SRC, ours()),
            Err(RewriteError::NoRoom)
        );
        assert_eq!(b, before);
        // Sixteen URIs are fine, seventeen are too many; and so are client tags.
        let many = |n: usize| {
            let v: Vec<String> = (0..n).map(|k| format!("<sip:u{k}@192.168.1.50>")).collect();
            msg(&format!("Contact: {}", v.join(",")))
        };
        assert_eq!(run(&many(16), SRC, ours()).unwrap().1.aliased, 16);
        assert_eq!(
            run(&many(17), SRC, ours()).unwrap_err(),
            RewriteError::TooManyContacts
        );
        let tags = msg(&format!(
            "Contact: <sip:a@192.168.1.50{}>",
            ";rptag".repeat(17)
        ));
        assert_eq!(
            run(&tags, SRC, ours()).unwrap_err(),
            RewriteError::TooManyContacts
        );
    }

    #[test]
    fn a_tag_in_a_folded_contact_and_shrinking_messages() {
        let (out, r) = run(
            &msg("Contact:\r\n <sip:a@192.168.1.50;rptag=0123456789abcdef0123456789>"),
            SRC,
            ours(),
        )
        .unwrap();
        assert!(
            out.contains("Contact:\r\n <sip:a@192.168.1.50;rptag=0a1b>\r\n"),
            "{out}"
        );
        assert!(
            r.len < msg("Contact:\r\n <sip:a@192.168.1.50;rptag=0123456789abcdef0123456789>").len()
        );
        // The body is as it was, to the last byte, so Content-Length is still right.
        assert!(out.ends_with("\r\n\r\nContact: <sip:b@192.168.1.50;rptag=1>"));
    }

    // ---- properties ---------------------------------------------------------------------

    /// One generated Contact value, as parts (the model renders what the result must be).
    #[derive(Clone, Debug)]
    struct Gen {
        display: &'static str,
        angled: bool,
        scheme: &'static str,
        user: &'static str,
        host: &'static str,
        port: Option<u16>,
        params: Vec<&'static str>,
        headers: &'static str,
        hparams: Vec<&'static str>,
    }

    fn is_tag_param(p: &str) -> bool {
        let name = p.split('=').next().unwrap().to_ascii_lowercase();
        name == "rptag" || name == "%72ptag"
    }

    impl Gen {
        fn sip(&self) -> bool {
            self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
        }

        /// Whether the host:port is `src` (the generator's hosts, by hand).
        fn is(&self, src: Observed) -> bool {
            let addr: Option<IpAddr> = match self.host {
                "203.0.113.1" | "203.000.113.001" | "[::ffff:203.0.113.1]" => {
                    Some("203.0.113.1".parse().unwrap())
                }
                "[2001:db8:1::60]" | "[2001:0db8:0001::0060]" => {
                    Some("2001:db8:1::60".parse().unwrap())
                }
                _ => None,
            };
            let default = if self.scheme.eq_ignore_ascii_case("sips") {
                5061
            } else {
                5060
            };
            addr == Some(src.addr) && self.port.unwrap_or(default) == src.port
        }

        fn uri(&self, params: &[&str], tail: &str) -> String {
            if !self.sip() {
                return format!("{}:+15551234{}", self.scheme, tail);
            }
            let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
            let params: String = params.iter().map(|p| format!(";{p}")).collect();
            format!(
                "{}:{}{}{port}{params}{tail}{}",
                self.scheme, self.user, self.host, self.headers
            )
        }

        fn render(&self) -> String {
            let hp = self.hparams.concat();
            if self.angled {
                format!("{}<{}>{hp}", self.display, self.uri(&self.params, ""))
            } else {
                format!("{}{hp}", self.uri(&[], ""))
            }
        }

        /// What the aliasing must make of it, and (aliased, removed).
        fn model(&self, tag: Option<&str>, src: Observed) -> (String, u32, u32) {
            if !self.sip() {
                return (self.render(), 0, 0);
            }
            let want = tag.is_some() && !self.is(src);
            let ours = format!("rptag={}", tag.unwrap_or_default());
            let hp = self.hparams.concat();
            let (mut removed, mut tagged, mut ps) = (0, false, Vec::new());
            for p in &self.params {
                if !is_tag_param(p) {
                    ps.push(p.to_string());
                } else if want && !tagged {
                    tagged = true;
                    ps.push(ours.clone());
                } else {
                    removed += 1;
                }
            }
            if want && !tagged {
                ps.push(ours.clone());
            }
            let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
            let out = if self.angled {
                format!("{}<{}>{hp}", self.display, self.uri(&ps, ""))
            } else if want {
                format!("<{}>{hp}", self.uri(&[], &format!(";{ours}")))
            } else {
                self.render()
            };
            (out, want as u32, removed)
        }
    }

    fn gen_contact() -> impl Strategy<Value = Gen> {
        let display = prop::sample::select(vec![
            "",
            "Alice ",
            "A b\t",
            "\"Al <ice>, ;rptag=1 \\\" x\" ",
            "\"\"",
        ]);
        let scheme = prop::sample::select(vec!["sip", "SIP", "sips", "Sips", "tel", "urn"]);
        let user = prop::sample::select(vec![
            "",
            "alice@",
            "100;phone-context=x@",
            "a,b?c=d&e:pw@",
            "%41b@",
        ]);
        let host = prop::sample::select(vec![
            "192.168.1.50",
            "203.0.113.1",
            "203.000.113.001",
            "[::ffff:203.0.113.1]",
            "[2001:db8:1::60]",
            "[2001:0db8:0001::0060]",
            "[2001:db8::1]",
            "phone.invalid",
        ]);
        let port = prop::option::of(prop::sample::select(vec![5060u16, 5061, 5062, 32415]));
        let params = prop::collection::vec(
            prop::sample::select(vec![
                "lr",
                "transport=udp",
                "rptag=forged",
                "RPTAG",
                "rpTag=0a1b",
                "rptag=0a1b",
                "%72ptag=x",
                "rptagx=1",
                "rinstance=6f8e",
            ]),
            0..4,
        );
        let headers = prop::sample::select(vec!["", "", "?x=y", "?Subject=a&b=%20c"]);
        let hparams = prop::collection::vec(
            prop::sample::select(vec![
                ";expires=60",
                " ; q=0.5",
                ";rptag=keep",
                ";x=\"a,b;<sip:c@d;rptag=1>\"",
                ";+sip.instance=\"<urn:uuid:1>\"",
                ";maddr=[2001:db8::9]",
            ]),
            0..3,
        );
        (
            display,
            any::<bool>(),
            scheme,
            user,
            host,
            port,
            params,
            headers,
            hparams,
        )
            .prop_map(
                |(display, angled, scheme, user, host, port, params, headers, hparams)| {
                    // An addr-spec has no display name, no URI parameters or headers, and no
                    // `;`, `?` or `,` in its user part.
                    let addr_spec_ok = display.is_empty()
                        && params.is_empty()
                        && headers.is_empty()
                        && !user.contains([';', '?', ',']);
                    Gen {
                        display,
                        angled: angled || !addr_spec_ok,
                        scheme,
                        user,
                        host,
                        port,
                        params,
                        headers,
                        hparams,
                    }
                },
            )
    }

    /// Contact headers (name, values, separators) among other headers.
    #[derive(Clone, Debug)]
    struct GenMsg {
        response: bool,
        headers: Vec<(&'static str, Vec<(Gen, &'static str)>)>,
    }

    impl GenMsg {
        fn render(&self, value: &dyn Fn(&Gen) -> String) -> String {
            let mut m = String::from(if self.response {
                "SIP/2.0 200 OK\r\n"
            } else {
                "REGISTER sip:198.51.100.10 SIP/2.0\r\n"
            });
            m.push_str("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rptag=1\r\n");
            for (name, values) in &self.headers {
                m.push_str(name);
                for (k, (g, sep)) in values.iter().enumerate() {
                    if k > 0 {
                        m.push_str(sep);
                    }
                    m.push_str(&value(g));
                }
                m.push_str("\r\nTo: <sip:a@192.168.1.50;rptag=1>\r\n");
            }
            m.push_str("Content-Length: 27\r\n\r\nm: <sip:a@192.168.1.50;lr>");
            m
        }
    }

    fn gen_msg() -> impl Strategy<Value = GenMsg> {
        let name = prop::sample::select(vec!["Contact: ", "m:", "CONTACT :  ", "M: "]);
        let sep = prop::sample::select(vec![",", " , ", ",\r\n ", "\r\n\t,\t"]);
        let values = prop::collection::vec((gen_contact(), sep), 1..4);
        (any::<bool>(), prop::collection::vec((name, values), 0..4))
            .prop_map(|(response, headers)| GenMsg { response, headers })
    }

    fn tag_choice() -> impl Strategy<Value = Option<&'static str>> {
        prop::sample::select(vec![None, Some("0a1b"), Some("ffee0123456789")])
    }

    fn source() -> impl Strategy<Value = Observed> {
        prop::sample::select(vec![SRC, SRC6, Observed { port: 5060, ..SRC }])
    }

    fn policy(t: Option<&str>) -> ContactPolicy {
        ContactPolicy {
            tag: t.map(|t| TagBuf::from_text(t.as_bytes())),
        }
    }

    fn apply(
        m: &[u8],
        src: Observed,
        p: ContactPolicy,
    ) -> (Vec<u8>, Result<ContactRewritten, RewriteError>) {
        crate::sip::props::contacts(m, src, p).unwrap()
    }

    /// The properties (crate::sip::props, shared with the fuzzer) as a test case.
    fn invariants(m: &[u8], src: Observed, t: Option<&str>) -> Result<(), TestCaseError> {
        crate::sip::props::check_contacts(m, src, policy(t)).map_err(TestCaseError::fail)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn result_is_the_models(g in gen_msg(), t in tag_choice(), src in source()) {
            let m = g.render(&|c| c.render());
            let want = g.render(&|c| c.model(t, src).0);
            let (out, r) = apply(m.as_bytes(), src, policy(t));
            let r = r.map_err(|e| TestCaseError::fail(format!("{e}: {m:?}")))?;
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);
            let all = || g.headers.iter().flat_map(|(_, v)| v.iter().map(|(c, _)| c));
            prop_assert_eq!(r.contacts, all().filter(|c| c.sip()).count() as u32);
            prop_assert_eq!(r.aliased, all().map(|c| c.model(t, src).1).sum::<u32>());
            prop_assert_eq!(r.removed, all().map(|c| c.model(t, src).2).sum::<u32>());
            invariants(m.as_bytes(), src, t)?;
        }

        #[test]
        fn mutations_never_break_the_invariants(
            g in gen_msg(),
            t in tag_choice(),
            src in source(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b";,<>\"@?%:[] \r\n\\=*xAm".to_vec()),
            insert in any::<bool>(),
        ) {
            let mut m = g.render(&|c| c.render()).into_bytes();
            let i = at.index(m.len());
            if insert {
                m.insert(i, byte);
            } else {
                m[i] = byte;
            }
            invariants(&m, src, t)?;
        }

        #[test]
        fn never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..400), t in tag_choice()) {
            let mut m = b"INVITE sip:x SIP/2.0\r\nContact: ".to_vec();
            m.extend_from_slice(&data);
            m.extend_from_slice(b"\r\n\r\n");
            invariants(&m, SRC, t)?;
            let mut b = data.clone();
            b.resize(data.len() + 64, 0);
            let _ = rewrite_contacts(&mut b, data.len(), SRC, policy(t));
        }
    }
}
