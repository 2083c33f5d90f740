//! The top Via of a SIP message, parsed zero-copy over `&[u8]` into ranges of the message.
//!
//! The grammar is the one in [`rport_ebpf::scan`] (its module doc), which the XDP scanner
//! implements byte by byte; this is the same grammar as a recursive-descent parser. The
//! differential test rport-userspace/tests/via_grammar.rs holds the two to it: top Via
//! found or not, malformed or not, the value's range, the sent-by, rport, received,
//! branch and the transaction key.
use std::{net::IpAddr, ops::Range};

use rport_common::{flags, hash};

use super::headers::{self, Headers, TOKEN, is_ws};

/// Why there is no usable top Via.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaError {
    /// Not a SIP message: no request or status line, or no end of headers.
    NotSip,
    /// A SIP message without a Via header.
    NoVia,
    /// The top Via does not follow the grammar: it must not be edited.
    Malformed,
}

/// What the sent-by host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// An IPv4 literal (four 1-3 digit groups, each at most 255).
    V4([u8; 4]),
    /// An IPv6 reference, brackets included (its text is not checked beyond its bytes).
    V6,
    /// Anything else: a name.
    Name,
}

/// An `rport` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rport {
    /// The whole parameter, from its `;` to the end of its value.
    pub span: Range<usize>,
    /// Its port; `None` when it has no value or one that is not a port (1 to 5 digits, at
    /// most 65535): the client asks for one.
    pub port: Option<u16>,
}

/// The top Via: the first value of the first Via header, as ranges into the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    /// From the sent-protocol to the end of the last parameter (or of the sent-by),
    /// whitespace excluded: new parameters go at `value.end`.
    pub value: Range<usize>,
    /// Sent-by host as written (brackets of an IPv6 reference included).
    pub host: Range<usize>,
    pub host_kind: HostKind,
    /// Sent-by port, if written.
    pub port: Option<u16>,
    /// Value of `branch` (empty when it has none).
    pub branch: Option<Range<usize>>,
    pub rport: Option<Rport>,
    /// The whole `received` parameter, from its `;`.
    pub received: Option<Range<usize>>,
    /// A second `received` follows the first.
    pub received_twice: bool,
    /// The whole `rptag` parameter (rport's steering tag, `rport_common::tag`), from its
    /// `;`: never the client's to give, so the rewrite replaces it.
    pub tag: Option<Range<usize>>,
}

/// A byte set as a table (one lookup per byte).
type Class = [bool; 256];

/// The bytes a class starts from.
#[derive(Clone, Copy)]
enum Base {
    Digit,
    Hex,
    Alnum,
}

const fn class(base: Base, extra: &[u8]) -> Class {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match base {
            Base::Digit => b.is_ascii_digit(),
            Base::Hex => b.is_ascii_hexdigit(),
            Base::Alnum => b.is_ascii_alphanumeric(),
        };
        let mut k = 0;
        while k < extra.len() {
            t[c] |= extra[k] == b;
            k += 1;
        }
        c += 1;
    }
    t
}

const DIGITS: Class = class(Base::Digit, b"");
/// A host name or IPv4 literal.
const HOST: Class = class(Base::Alnum, b"-.");
/// Inside the brackets of an IPv6 reference.
const HOST6: Class = class(Base::Hex, b":.");
/// An unquoted parameter value: `tchar`, `:`, `[`, `]`.
const VALUE: Class = class(Base::Alnum, b"-.!%*_+`'~:[]");

/// A position in the Via header's value (`i` up to `end`, the value's end).
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

    /// SWS: SP, HTAB and folds (`[CR] LF` then SP/HTAB). Returns whether it skipped any.
    #[inline]
    fn sws(&mut self) -> bool {
        // Most calls stand on a byte that starts no whitespace: one test.
        match self.peek() {
            Some(b' ' | b'\t' | b'\r' | b'\n') => self.sws_slow(),
            _ => false,
        }
    }

    #[inline(never)]
    fn sws_slow(&mut self) -> bool {
        let start = self.i;
        loop {
            match (self.peek(), self.at(1), self.at(2)) {
                (Some(c), _, _) if is_ws(c) => self.i += 1,
                (Some(b'\r'), Some(b'\n'), Some(c)) if is_ws(c) => self.i += 3,
                (Some(b'\n'), Some(c), _) if is_ws(c) => self.i += 2,
                _ => return self.i > start,
            }
        }
    }

    /// The bytes of `class` from here on (possibly none).
    #[inline]
    fn run(&mut self, class: &Class) -> Range<usize> {
        let start = self.i;
        let rest = self.m.get(start..self.end).unwrap_or_default();
        self.i += rest
            .iter()
            .position(|&c| !class[c as usize])
            .unwrap_or(rest.len());
        start..self.i
    }

    fn eat(&mut self, c: u8) -> bool {
        let yes = self.peek() == Some(c);
        self.i += yes as usize;
        yes
    }

    /// A token (one or more `tchar`), else malformed.
    fn token(&mut self) -> Result<Range<usize>, ViaError> {
        let r = self.run(&TOKEN);
        if r.is_empty() {
            Err(ViaError::Malformed)
        } else {
            Ok(r)
        }
    }

    /// A quoted string, the cursor on its opening quote.
    fn quoted(&mut self) -> Result<(), ViaError> {
        self.i += 1;
        loop {
            match self.peek().ok_or(ViaError::Malformed)? {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => match self.at(1) {
                    Some(q) if q < 0x80 && q != b'\r' && q != b'\n' => self.i += 2,
                    _ => return Err(ViaError::Malformed),
                },
                b' ' | b'\t' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => self.i += 1,
                // A fold is LWS, so qdtext; a bare CR is not.
                b'\r' | b'\n' if self.sws() => {}
                _ => return Err(ViaError::Malformed),
            }
        }
    }
}

/// The sent-by as an IPv4 literal: four groups of 1 to 3 digits separated by dots, each
/// at most 255 (leading zeros allowed, decimal).
pub fn v4_literal(host: &[u8]) -> Option<[u8; 4]> {
    // One pass: `n` groups done, `v` and `digits` of the one being read.
    let mut out = [0u8; 4];
    let (mut n, mut v, mut digits) = (0, 0u32, 0);
    for &c in host {
        match c {
            b'0'..=b'9' if digits < 3 => {
                v = v * 10 + (c - b'0') as u32;
                digits += 1;
            }
            b'.' if digits > 0 && n < 3 => {
                out[n] = u8::try_from(v).ok()?;
                (n, v, digits) = (n + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if n != 3 || digits == 0 {
        return None;
    }
    out[3] = u8::try_from(v).ok()?;
    Some(out)
}

/// A port: 1 to 5 digits, at most 65535.
fn port_number(d: &[u8]) -> Option<u16> {
    if d.is_empty() || d.len() > 5 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u16::try_from(d.iter().fold(0u32, |v, &c| v * 10 + (c - b'0') as u32)).ok()
}

/// Parses the top Via of a SIP message.
pub fn parse_top_via(m: &[u8]) -> Result<TopVia, ViaError> {
    let h = headers::frame(m).ok_or(ViaError::NotSip)?;
    parse_top_via_in(m, &h)
}

/// [`parse_top_via`] with the headers already framed.
pub fn parse_top_via_in(m: &[u8], h: &Headers) -> Result<TopVia, ViaError> {
    let hv = headers::find(m, h, b"via", b"v").ok_or(ViaError::NoVia)?;
    parse_value(m, hv)
}

/// Parses the first value of a Via header whose value is `m[hv]`.
pub fn parse_value(m: &[u8], hv: Range<usize>) -> Result<TopVia, ViaError> {
    let mut c = Cursor {
        m,
        i: hv.start,
        end: hv.end,
    };
    c.sws();
    let start = c.i;
    // sent-protocol: name / version / transport.
    c.token()?;
    for _ in 0..2 {
        c.sws();
        if !c.eat(b'/') {
            return Err(ViaError::Malformed);
        }
        c.sws();
        c.token()?;
    }
    if !c.sws() {
        return Err(ViaError::Malformed);
    }
    // sent-by host.
    let hs = c.i;
    let host_kind = if c.eat(b'[') {
        if c.run(&HOST6).is_empty() || !c.eat(b']') {
            return Err(ViaError::Malformed);
        }
        HostKind::V6
    } else {
        let r = c.run(&HOST);
        if r.is_empty() {
            return Err(ViaError::Malformed);
        }
        v4_literal(&m[r]).map_or(HostKind::Name, HostKind::V4)
    };
    let mut v = TopVia {
        value: start..c.i,
        host: hs..c.i,
        host_kind,
        port: None,
        branch: None,
        rport: None,
        received: None,
        received_twice: false,
        tag: None,
    };
    c.sws();
    if c.eat(b':') {
        c.sws();
        let d = c.run(&DIGITS);
        v.port = Some(port_number(&m[d]).ok_or(ViaError::Malformed)?);
        v.value.end = c.i;
    }
    // Parameters, up to a comma (the next value) or the end of the header.
    loop {
        c.sws();
        match c.peek() {
            None | Some(b',') => return Ok(v),
            Some(b';') => {}
            Some(_) => return Err(ViaError::Malformed),
        }
        let ps = c.i;
        c.i += 1;
        c.sws();
        let name = c.token()?;
        let mut end = c.i;
        c.sws();
        let value = if c.eat(b'=') {
            c.sws();
            let vs = c.i;
            if c.peek() == Some(b'"') {
                c.quoted()?;
            } else if c.run(&VALUE).is_empty() {
                return Err(ViaError::Malformed);
            }
            end = c.i;
            Some(vs..end)
        } else {
            None
        };
        let name = &m[name];
        // Known parameters once each: which one would the server read?
        if name.eq_ignore_ascii_case(b"branch") {
            let quoted = value.as_ref().is_some_and(|r| m[r.start] == b'"');
            if v.branch.is_some() || quoted {
                return Err(ViaError::Malformed);
            }
            v.branch = Some(value.unwrap_or(end..end));
        } else if name.eq_ignore_ascii_case(b"rport") {
            if v.rport.is_some() {
                return Err(ViaError::Malformed);
            }
            v.rport = Some(Rport {
                span: ps..end,
                port: value.and_then(|r| port_number(&m[r])),
            });
        } else if name.eq_ignore_ascii_case(b"received") {
            // Twice is a good Via (a server appends its own to ours in replies), but not
            // one to rewrite: which would the next hop read?
            if v.received.is_some() {
                v.received_twice = true;
            } else {
                v.received = Some(ps..end);
            }
        } else if name.eq_ignore_ascii_case(rport_common::tag::PARAM) {
            if v.tag.is_some() {
                return Err(ViaError::Malformed);
            }
            v.tag = Some(ps..end);
        }
        v.value.end = end;
    }
}

impl TopVia {
    /// The [`rport_common::flags`] bits the XDP scanner learns from this Via: RPORT_EMPTY
    /// or RPORT_VALUE, RECEIVED, MAGIC_COOKIE, and the sent-by's SENT_BY_* class.
    pub fn flags(&self, m: &[u8]) -> u32 {
        let mut f = match &self.rport {
            None => 0,
            Some(Rport { port: None, .. }) => flags::RPORT_EMPTY,
            Some(Rport { port: Some(_), .. }) => flags::RPORT_VALUE,
        };
        if self.received.is_some() {
            f |= flags::RECEIVED;
        }
        if self
            .branch
            .as_ref()
            .is_some_and(|b| m[b.clone()].starts_with(b"z9hG4bK"))
        {
            f |= flags::MAGIC_COOKIE;
        }
        f | match self.host_kind {
            HostKind::V4([a, b, ..]) => {
                // RFC 1918: 10/8, 172.16/12, 192.168/16. RFC 6598: 100.64/10.
                if a == 10 || (a == 172 && b & 0xf0 == 16) || (a == 192 && b == 168) {
                    flags::SENT_BY_PRIVATE
                } else if a == 100 && b & 0xc0 == 64 {
                    flags::SENT_BY_CGNAT
                } else {
                    0
                }
            }
            HostKind::V6 => {
                // RFC 4193 unique local addresses: fc00::/7.
                let h = &m[self.host.clone()];
                let ula = h.len() > 2
                    && h[1].eq_ignore_ascii_case(&b'f')
                    && matches!(h[2].to_ascii_lowercase(), b'c' | b'd');
                flags::SENT_BY_V6 | if ula { flags::SENT_BY_PRIVATE } else { 0 }
            }
            HostKind::Name => flags::SENT_BY_NAME,
        }
    }

    /// Whether the sent-by host is the observed address (RFC 3261 §18.2.1 compares
    /// addresses; a name never matches). An IPv6 reference is compared as an address
    /// (so `[2001:db8::0:1]` is `2001:db8::1`), an IPv4-mapped one with an IPv4 source.
    pub fn sent_by_is(&self, m: &[u8], addr: IpAddr) -> bool {
        match (self.host_kind, addr) {
            (HostKind::V4(a), IpAddr::V4(b)) => a == b.octets(),
            (HostKind::V6, _) => {
                let h = &m[self.host.start + 1..self.host.end - 1];
                let Some(a) = std::str::from_utf8(h)
                    .ok()
                    .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
                else {
                    return false;
                };
                match addr {
                    IpAddr::V6(b) => a == b,
                    IpAddr::V4(b) => a.to_ipv4_mapped() == Some(b),
                }
            }
            _ => false,
        }
    }

    /// The transaction key the XDP program computes for this Via with this Call-ID.
    pub fn key(&self, m: &[u8], call_id: &[u8]) -> u64 {
        let branch = self.branch.clone().map(|r| &m[r]).unwrap_or_default();
        hash::transaction_key(
            branch,
            &m[self.host.clone()],
            self.port.unwrap_or(0),
            call_id,
        )
    }
}

/// The transaction key the XDP program computes for this message.
pub fn transaction_key(m: &[u8]) -> Option<u64> {
    let h = headers::frame(m)?;
    let v = parse_top_via_in(m, &h).ok()?;
    let call_id = headers::call_id_in(m, &h).map(|r| &m[r]);
    Some(v.key(m, call_id.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(via: &str) -> String {
        format!(
            "REGISTER sip:198.51.100.10 SIP/2.0\r\n{via}\r\nCall-ID: c1@192.168.1.50\r\nCSeq: 1 REGISTER\r\n\r\n"
        )
    }

    #[test]
    fn parse_and_key() {
        let m = msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport");
        let v = parse_top_via(m.as_bytes()).unwrap();
        assert_eq!(&m[v.host.clone()], "192.168.1.50");
        assert_eq!(v.host_kind, HostKind::V4([192, 168, 1, 50]));
        assert_eq!(v.port, Some(5060));
        assert_eq!(&m[v.branch.clone().unwrap()], "z9hG4bK-1");
        assert_eq!(&m[v.rport.clone().unwrap().span], ";rport");
        assert_eq!(v.rport.unwrap().port, None);
        assert_eq!(v.received, None);
        assert_eq!(
            &m[v.value.clone()],
            "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport"
        );
        assert_eq!(
            transaction_key(m.as_bytes()),
            Some(hash::transaction_key(b"z9hG4bK-1", b"", 0, b""))
        );
        let legacy = msg("Via: SIP/2.0/UDP 192.168.1.50;branch=77");
        assert_eq!(
            transaction_key(legacy.as_bytes()),
            Some(hash::transaction_key(
                b"77",
                b"192.168.1.50",
                0,
                b"c1@192.168.1.50"
            ))
        );
    }

    #[test]
    fn parameters_as_ranges() {
        let m = msg(
            "v : SIP / 2.0 / UDP [2001:db8::1] : 5062 ; RPORT = 7 ;x=\"a;b\";received\r\n ;branch , SIP/2.0/UDP x",
        );
        let v = parse_top_via(m.as_bytes()).unwrap();
        assert_eq!(v.host_kind, HostKind::V6);
        assert_eq!(&m[v.host.clone()], "[2001:db8::1]");
        assert_eq!(v.port, Some(5062));
        let r = v.rport.clone().unwrap();
        assert_eq!((&m[r.span], r.port), ("; RPORT = 7", Some(7)));
        assert_eq!(&m[v.received.clone().unwrap()], ";received");
        // A branch without a value: present, empty, where its name ends.
        let b = v.branch.clone().unwrap();
        assert!(b.is_empty());
        assert_eq!(&m[..b.start], &m[..m.find("branch").unwrap() + 6]);
        assert!(m[v.value.clone()].ends_with(";branch"));
        assert_eq!(
            v.flags(m.as_bytes()),
            flags::RPORT_VALUE | flags::RECEIVED | flags::SENT_BY_V6
        );
    }

    #[test]
    fn rport_values() {
        for (p, want) in [
            (";rport", None),
            (";rport=0", Some(0)),
            (";rport=00080", Some(80)),
            (";rport=65535", Some(65535)),
            (";rport=65536", None),
            (";rport=000080", None),
            (";rport=12a", None),
            (";rport=\"7\"", None),
        ] {
            let m = msg(&format!("Via: SIP/2.0/UDP h{p}"));
            let v = parse_top_via(m.as_bytes()).unwrap();
            assert_eq!(v.rport.unwrap().port, want, "{p:?}");
        }
    }

    #[test]
    fn ipv4_literals() {
        for (h, want) in [
            ("192.168.1.50", Some([192, 168, 1, 50])),
            ("010.000.000.001", Some([10, 0, 0, 1])),
            ("0.0.0.0", Some([0, 0, 0, 0])),
            ("255.255.255.255", Some([255; 4])),
            ("256.1.1.1", None),
            ("1.2.3", None),
            ("1.2.3.4.", None),
            (".1.2.3", None),
            ("1..2.3", None),
            ("1.2.3.0004", None),
            ("1.2.3.4.5", None),
            ("a.b.c.d", None),
            ("", None),
        ] {
            assert_eq!(v4_literal(h.as_bytes()), want, "{h:?}");
        }
    }

    /// The one-pass [`v4_literal`] against the definition it replaced (split at the
    /// dots, four groups of 1 to 3 digits, each at most 255), on strings of digits, dots
    /// and a letter: every grouping, every length.
    #[test]
    fn ipv4_literal_is_the_split_definition() {
        fn by_split(host: &[u8]) -> Option<[u8; 4]> {
            let mut out = [0u8; 4];
            let mut n = 0;
            for part in host.split(|&c| c == b'.') {
                if n == 4
                    || part.is_empty()
                    || part.len() > 3
                    || !part.iter().all(u8::is_ascii_digit)
                {
                    return None;
                }
                let v = part.iter().fold(0u32, |v, &d| v * 10 + (d - b'0') as u32);
                out[n] = u8::try_from(v).ok()?;
                n += 1;
            }
            (n == 4).then_some(out)
        }
        // Every string over this alphabet up to 7 bytes, and longer ones in steps.
        let alphabet = b"0129.5a";
        let mut count = 0;
        for len in 0..=7u32 {
            for code in 0..alphabet.len().pow(len) {
                let mut c = code;
                let h: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % alphabet.len()];
                        c /= alphabet.len();
                        b
                    })
                    .collect();
                assert_eq!(
                    v4_literal(&h),
                    by_split(&h),
                    "{:?}",
                    h.escape_ascii().to_string()
                );
                count += 1;
            }
        }
        assert!(count > 900_000);
        for h in [
            "255.255.255.255",
            "256.0.0.0",
            "1.22.333.4",
            "1.2.3.444",
            "99.99.99.999",
            "00.0.00.000",
        ] {
            assert_eq!(v4_literal(h.as_bytes()), by_split(h.as_bytes()), "{h}");
        }
    }

    #[test]
    fn sent_by_compared_as_an_address() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for (host, addr, want) in [
            ("10.0.0.1", v4, true),
            ("010.0.0.001", v4, true),
            ("10.0.0.2", v4, false),
            ("10.0.0.1", v6, false),
            ("[2001:db8::1]", v6, true),
            ("[2001:0db8:0:0::0:1]", v6, true),
            ("[2001:db8::2]", v6, false),
            ("[::ffff:10.0.0.1]", v4, true),
            ("[::ffff:10.0.0.1]", v6, false),
            ("[2001:db8::1::]", v6, false),
            ("localhost", v4, false),
        ] {
            let m = msg(&format!("Via: SIP/2.0/UDP {host}"));
            let v = parse_top_via(m.as_bytes()).unwrap();
            assert_eq!(v.sent_by_is(m.as_bytes(), addr), want, "{host} {addr}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(parse_top_via(b"hello\r\n\r\n"), Err(ViaError::NotSip));
        assert_eq!(
            parse_top_via(msg("X-Via: SIP/2.0/UDP h").as_bytes()),
            Err(ViaError::NoVia)
        );
        for via in [
            "Via: SIP/2.0/UDP",
            "Via: SIP/2.0/UDP h;rport;x:",
            "Via: SIP/2.0/UDP h;branch=\"z9hG4bK\"",
            "Via: SIP/2.0/UDP h;x=\"a\\\r\n b\"",
        ] {
            assert_eq!(
                parse_top_via(msg(via).as_bytes()),
                Err(ViaError::Malformed),
                "{via:?}"
            );
        }
    }
}
