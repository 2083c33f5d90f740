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
//!   address, not as text.
//!
//! Only the first value of the first Via header is touched, whether the next value is on
//! the same line or on another Via line. Folded lines and whitespace around `/ : ; =` are
//! legal SIP and accepted. Nothing here allocates: edits are computed first (so a message
//! that would not fit is left untouched), then applied right to left with `copy_within`.
use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    ops::Range,
    process::ExitCode,
};

/// The packet's source as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub addr: IpAddr,
    pub port: u16,
}

/// Operator policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Behave as if the client had sent `;rport` (Asterisk force_rport, Kamailio force_rport()).
    pub force_rport: bool,
}

/// Why a message was not rewritten. In every case the buffer is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// Not a SIP message: no request or status line, or no end of headers.
    NotSip,
    /// A SIP message without a Via header.
    NoVia,
    /// The top Via has no usable sent-protocol or sent-by.
    MalformedVia,
    /// The rewritten message would not fit in the buffer.
    NoRoom,
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RewriteError::NotSip => {
                "not a SIP message (no request or status line, or no empty line ending the headers)"
            }
            RewriteError::NoVia => "SIP message without a Via header",
            RewriteError::MalformedVia => {
                "the top Via header is malformed (no sent-protocol or sent-by)"
            }
            RewriteError::NoRoom => "the rewritten message does not fit in the buffer",
        })
    }
}

impl std::error::Error for RewriteError {}

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

/// The top Via, as byte ranges into the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    /// The first value of the header (sent-protocol to the last parameter).
    pub value: Range<usize>,
    /// Sent-by host as written (brackets of an IPv6 reference included).
    pub host: Range<usize>,
    /// Sent-by port, if written.
    pub port: Option<u16>,
    pub port_span: Option<Range<usize>>,
    /// Value of the `branch` parameter.
    pub branch: Option<Range<usize>>,
    /// `None`: no rport; `Some(None)`: `rport` without a value; `Some(Some(n))`: `rport=n`.
    pub rport: Option<Option<u16>>,
    /// Whole `;rport[=N]` parameter, from its `;`.
    pub rport_param: Option<Range<usize>>,
    /// Value of `received`.
    pub received: Option<Range<usize>>,
    /// Whole `;received=…` parameter, from its `;`.
    pub received_param: Option<Range<usize>>,
    /// Where new parameters go: right after the last one (or the sent-by).
    pub insert_at: usize,
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// RFC 3261 `token` characters, as a table: this test runs on nearly every byte of the Via.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
};

#[inline]
fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Skips linear whitespace, folds (CRLF or LF followed by SP/HTAB) included, up to `end`.
fn skip_lws(m: &[u8], mut i: usize, end: usize) -> usize {
    loop {
        while i < end && is_ws(m[i]) {
            i += 1;
        }
        let fold = if i + 2 < end && m[i] == b'\r' && m[i + 1] == b'\n' && is_ws(m[i + 2]) {
            2
        } else if i + 1 < end && m[i] == b'\n' && is_ws(m[i + 1]) {
            1
        } else {
            0
        };
        if fold == 0 {
            return i;
        }
        i += fold;
    }
}

/// End of the line starting at or after `i`: index of its `\n`, or `m.len()`.
fn line_end(m: &[u8], i: usize) -> usize {
    memchr::memchr(b'\n', &m[i..]).map_or(m.len(), |p| i + p)
}

/// Checks the start line and finds the end of the headers: (first header offset, offset
/// of the empty line).
fn frame(m: &[u8]) -> Result<(usize, usize), RewriteError> {
    let first_end = line_end(m, 0);
    if first_end == m.len() {
        return Err(RewriteError::NotSip);
    }
    let line = m[..first_end]
        .strip_suffix(b"\r")
        .unwrap_or(&m[..first_end]);
    let ok = if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        rest.len() >= 3
            && rest[..3].iter().all(u8::is_ascii_digit)
            && rest.get(3).is_none_or(|&c| c == b' ')
    } else {
        // Method SP Request-URI SP SIP/2.0
        let mut parts = line.split(|&c| c == b' ');
        let method = parts.next().unwrap_or_default();
        let uri = parts.next().unwrap_or_default();
        let ver = parts.next().unwrap_or_default();
        !method.is_empty()
            && method.iter().all(|&c| is_token(c))
            && !uri.is_empty()
            && ver.eq_ignore_ascii_case(b"SIP/2.0")
            && parts.next().is_none()
    };
    if !ok {
        return Err(RewriteError::NotSip);
    }
    let start = first_end + 1;
    // The empty line: a line start (right after an LF) holding LF or CRLF. Jumping from LF
    // to LF (SIMD search) instead of walking the bytes.
    for p in memchr::memchr_iter(b'\n', &m[first_end..]) {
        let i = first_end + p + 1;
        match m.get(i) {
            Some(b'\n') => return Ok((start, i)),
            Some(b'\r') if m.get(i + 1) == Some(&b'\n') => return Ok((start, i)),
            _ => {}
        }
    }
    Err(RewriteError::NotSip)
}

/// Finds the first header named `long` or `short` (case-insensitive) in `m[start..end]`:
/// returns the range of its value (after the colon, to the end of its last folded line,
/// line break excluded).
fn find_header(
    m: &[u8],
    start: usize,
    end: usize,
    long: &[u8],
    short: &[u8],
) -> Option<Range<usize>> {
    let mut i = start;
    while i < end {
        let le = line_end(m, i).min(end);
        if !is_ws(m[i]) {
            if let Some(colon) = m[i..le].iter().position(|&c| c == b':') {
                let name = m[i..i + colon].trim_ascii_end();
                if name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short) {
                    // The header goes on while the next line starts with SP/HTAB.
                    let mut e = le;
                    while e + 1 < end && is_ws(m[e + 1]) {
                        e = line_end(m, e + 1).min(end);
                    }
                    let mut ve = e;
                    if ve > 0 && m[ve - 1] == b'\r' {
                        ve -= 1;
                    }
                    return Some(i + colon + 1..ve.max(i + colon + 1));
                }
            }
        }
        i = le + 1;
    }
    None
}

/// Parses the top Via of a SIP message.
pub fn parse_top_via(m: &[u8]) -> Result<TopVia, RewriteError> {
    let (start, end) = frame(m)?;
    parse_top_via_in(m, start, end)
}

/// [`parse_top_via`] with the headers already framed (`frame`).
fn parse_top_via_in(m: &[u8], start: usize, end: usize) -> Result<TopVia, RewriteError> {
    let hv = find_header(m, start, end, b"via", b"v").ok_or(RewriteError::NoVia)?;
    let e = hv.end;
    let mut i = skip_lws(m, hv.start, e);
    let vstart = i;
    // sent-protocol: name / version / transport, LWS allowed around the slashes.
    for k in 0..3 {
        let t = i;
        while i < e && is_token(m[i]) {
            i += 1;
        }
        if i == t {
            return Err(RewriteError::MalformedVia);
        }
        i = skip_lws(m, i, e);
        if k < 2 {
            if i >= e || m[i] != b'/' {
                return Err(RewriteError::MalformedVia);
            }
            i = skip_lws(m, i + 1, e);
        }
    }
    // sent-by
    let hs = i;
    if i < e && m[i] == b'[' {
        let close = m[i..e]
            .iter()
            .position(|&c| c == b']')
            .ok_or(RewriteError::MalformedVia)?;
        i += close + 1;
    } else {
        while i < e && (is_token(m[i]) || m[i] == b'.') {
            i += 1;
        }
    }
    if i == hs {
        return Err(RewriteError::MalformedVia);
    }
    let host = hs..i;
    let mut v = TopVia {
        value: vstart..i,
        host,
        port: None,
        port_span: None,
        branch: None,
        rport: None,
        rport_param: None,
        received: None,
        received_param: None,
        insert_at: i,
    };
    let mut j = skip_lws(m, i, e);
    if j < e && m[j] == b':' {
        let p = skip_lws(m, j + 1, e);
        let mut q = p;
        while q < e && m[q].is_ascii_digit() {
            q += 1;
        }
        let port = std::str::from_utf8(&m[p..q])
            .ok()
            .and_then(|s| s.parse::<u16>().ok());
        if port.is_none() {
            return Err(RewriteError::MalformedVia);
        }
        v.port = port;
        v.port_span = Some(p..q);
        v.insert_at = q;
        j = skip_lws(m, q, e);
    }
    // Parameters, up to a comma (next value) or the end of the header.
    while j < e && m[j] == b';' {
        let ps = j;
        let n = skip_lws(m, j + 1, e);
        let mut ne = n;
        while ne < e && is_token(m[ne]) {
            ne += 1;
        }
        let name = &m[n..ne];
        let mut k = skip_lws(m, ne, e);
        let mut val = None;
        if k < e && m[k] == b'=' {
            let vs = skip_lws(m, k + 1, e);
            let mut ve = vs;
            if vs < e && m[vs] == b'"' {
                // quoted-string: up to the closing quote, backslash escapes honoured.
                ve += 1;
                while ve < e && m[ve] != b'"' {
                    ve += if m[ve] == b'\\' { 2 } else { 1 };
                }
                ve = (ve + 1).min(e);
            } else if vs < e && m[vs] == b'[' {
                ve = vs
                    + m[vs..e]
                        .iter()
                        .position(|&c| c == b']')
                        .map_or(e - vs, |p| p + 1);
            } else {
                while ve < e && (is_token(m[ve]) || m[ve] == b':') {
                    ve += 1;
                }
            }
            val = Some(vs..ve);
            k = ve;
        }
        let pend = k;
        if name.eq_ignore_ascii_case(b"branch") {
            v.branch = val.clone();
        } else if name.eq_ignore_ascii_case(b"rport") {
            if v.rport_param.is_some() {
                // Twice in one Via: which one would the server read? Refuse to guess.
                return Err(RewriteError::MalformedVia);
            }
            let n = val
                .as_ref()
                .and_then(|r| std::str::from_utf8(&m[r.clone()]).ok()?.parse::<u16>().ok());
            v.rport = Some(n);
            v.rport_param = Some(ps..pend);
        } else if name.eq_ignore_ascii_case(b"received") {
            if v.received_param.is_some() {
                return Err(RewriteError::MalformedVia);
            }
            v.received = val.clone();
            v.received_param = Some(ps..pend);
        }
        if name.is_empty() && val.is_none() && pend == n {
            // A lone ';' (or junk): stop rather than loop.
            break;
        }
        v.insert_at = pend;
        j = skip_lws(m, pend, e);
    }
    v.value = vstart..v.insert_at;
    Ok(v)
}

/// Value of the Call-ID header (`i` in compact form), trimmed.
pub fn call_id(m: &[u8]) -> Option<&[u8]> {
    let (start, end) = frame(m).ok()?;
    call_id_in(m, start, end).map(|r| &m[r])
}

/// Range of the trimmed Call-ID value within framed headers.
fn call_id_in(m: &[u8], start: usize, end: usize) -> Option<Range<usize>> {
    let r = find_header(m, start, end, b"call-id", b"i")?;
    let v = &m[r.clone()];
    let lead = v.len() - v.trim_ascii_start().len();
    let trail = v.len() - v.trim_ascii_end().len();
    Some(r.start + lead..(r.end - trail).max(r.start + lead))
}

/// The transaction key the XDP program computes for this message.
pub fn transaction_key(m: &[u8]) -> Option<u64> {
    let v = parse_top_via(m).ok()?;
    let branch = v.branch.map(|r| &m[r]).unwrap_or_default();
    Some(rport_common::hash::transaction_key(
        branch,
        &m[v.host.clone()],
        v.port.unwrap_or(0),
        call_id(m).unwrap_or_default(),
    ))
}

/// Whether the sent-by host is the observed address (RFC 3261 §18.2.1 compares addresses;
/// a domain name never matches).
fn sent_by_is(host: &[u8], addr: IpAddr) -> bool {
    let h = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    std::str::from_utf8(h)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .is_some_and(|a| a == addr || matches!((a, addr), (IpAddr::V6(x), IpAddr::V4(y)) if x.to_ipv4_mapped() == Some(y)))
}

/// A small stack buffer for one parameter's text (`;received=<IPv6>` fits in 60 bytes).
struct Param {
    buf: [u8; 64],
    len: usize,
}

impl Param {
    fn new(args: std::fmt::Arguments<'_>) -> Param {
        let mut p = Param {
            buf: [0; 64],
            len: 0,
        };
        let mut w = &mut p.buf[..];
        let _ = w.write_fmt(args);
        p.len = 64 - w.len();
        p
    }
    fn push(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
    fn push_decimal(&mut self, v: u16) {
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
        self.push(&d[i..]);
    }
    /// `;received=<addr>`. IPv4 written by hand (the common case, and `Display` through
    /// `fmt` costs more than the rest of the rewrite); IPv6 through `Display`, which
    /// compresses zeros as RFC 5952 says, without brackets (RFC 5118 §4.5).
    fn received(addr: IpAddr) -> Param {
        match addr {
            IpAddr::V4(a) => {
                let mut p = Param {
                    buf: [0; 64],
                    len: 0,
                };
                p.push(b";received=");
                for (k, o) in a.octets().iter().enumerate() {
                    if k > 0 {
                        p.push(b".");
                    }
                    p.push_decimal(*o as u16);
                }
                p
            }
            IpAddr::V6(_) => Param::new(format_args!(";received={addr}")),
        }
    }
    fn rport(port: u16) -> Param {
        let mut p = Param {
            buf: [0; 64],
            len: 0,
        };
        p.push(b";rport=");
        p.push_decimal(port);
        p
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
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
    let (start, end) = frame(m)?;
    let call_id = call_id_in(m, start, end);
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
    let v = parse_top_via_in(m, start, end)?;
    let wants_rport = v.rport.is_some() || policy.force_rport;
    let wants_received = wants_rport || !sent_by_is(&m[v.host.clone()], observed.addr);
    if !wants_received {
        return Ok(unchanged);
    }
    let received = Param::received(observed.addr);
    let rport = Param::rport(observed.port);
    // Up to three edits: replace received where it is, replace rport where it is, append
    // what was missing at the end of the value. Sorted by position, applied right to left.
    let mut edits: [(Range<usize>, &[u8]); 3] = [(0..0, &[]), (0..0, &[]), (0..0, &[])];
    let mut n = 0;
    let mut append = Param {
        buf: [0; 64],
        len: 0,
    };
    let mut push_append = |p: &Param| {
        append.buf[append.len..append.len + p.len].copy_from_slice(p.bytes());
        append.len += p.len;
    };
    match &v.received_param {
        Some(r) => {
            edits[n] = (r.clone(), received.bytes());
            n += 1;
        }
        None => push_append(&received),
    }
    if wants_rport {
        match &v.rport_param {
            Some(r) => {
                edits[n] = (r.clone(), rport.bytes());
                n += 1;
            }
            None => push_append(&rport),
        }
    }
    let appended = append.len;
    let at = v.insert_at;
    let mut all = edits;
    if appended > 0 {
        all[n] = (at..at, &append.buf[..appended]);
        n += 1;
    }
    let edits = &mut all[..n];
    edits.sort_by_key(|e| e.0.start);
    let grow: isize = edits
        .iter()
        .map(|(r, t)| t.len() as isize - r.len() as isize)
        .sum();
    let new_len = (len as isize + grow) as usize;
    // Applied right to left, the message is at its longest after the growing edits.
    let peak = len
        + edits
            .iter()
            .map(|(r, t)| t.len().saturating_sub(r.len()))
            .sum::<usize>();
    if peak > buf.len() {
        return Err(RewriteError::NoRoom);
    }
    if edits.iter().all(|(r, t)| &buf[r.clone()] == *t) {
        // Already in the form rport would write (a retransmission through rport, say).
        return Ok(unchanged);
    }
    // Right to left: the offsets of the edits still to do do not move.
    let mut cur = len;
    for (r, t) in edits.iter().rev() {
        let end = r.start + t.len();
        buf.copy_within(r.end..cur, end);
        buf[r.start..end].copy_from_slice(t);
        cur = cur + t.len() - r.len();
    }
    debug_assert_eq!(cur, new_len);
    // Every edit is inside the top Via value: a Call-ID after it moved by the growth.
    let call_id = call_id.map(|r| {
        if r.start > at {
            (r.start as isize + grow) as usize..(r.end as isize + grow) as usize
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

/// `rport rewrite --source ADDR:PORT [--force-rport]`: one SIP message on stdin, the message
/// rport would forward on stdout. Exit 0 for any SIP message (changed or not), 1 with a
/// one-line reason for input that is not one.
pub fn run_cli(source: SocketAddr, force_rport: bool) -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("rport: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let len = input.len();
    input.resize(len + 256, 0);
    let observed = Observed {
        addr: source.ip(),
        port: source.port(),
    };
    match rewrite_top_via(&mut input, len, observed, Policy { force_rport }) {
        Ok(r) => {
            let _ = std::io::stdout().write_all(&input[..r.len]);
            ExitCode::SUCCESS
        }
        Err(RewriteError::NoVia | RewriteError::MalformedVia) => {
            // A SIP message rport would forward untouched.
            let _ = std::io::stdout().write_all(&input[..len]);
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
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(
                Param::received(ip).bytes(),
                format!(";received={ip}").as_bytes()
            );
        }
        for port in [0u16, 7, 10, 99, 100, 5060, 9999, 10000, 65535] {
            assert_eq!(
                Param::rport(port).bytes(),
                format!(";rport={port}").as_bytes()
            );
        }
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

    #[test]
    fn force_rport_behaves_as_if_rport_was_sent() {
        let m = msg("Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-1");
        let (out, r) = rw_with(&m, SRC, Policy { force_rport: true }).unwrap();
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

    #[test]
    fn parse_and_key() {
        let m = msg("Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK-1;rport");
        let v = parse_top_via(m.as_bytes()).unwrap();
        assert_eq!(&m[v.host.clone()], "192.168.1.50");
        assert_eq!(v.port, Some(5060));
        assert_eq!(&m[v.branch.clone().unwrap()], "z9hG4bK-1");
        assert_eq!(v.rport, Some(None));
        assert_eq!(call_id(m.as_bytes()), Some(&b"c1@192.168.1.50"[..]));
        assert_eq!(
            transaction_key(m.as_bytes()),
            Some(rport_common::hash::transaction_key(
                b"z9hG4bK-1",
                b"",
                0,
                b""
            ))
        );
        let legacy = msg("Via: SIP/2.0/UDP 192.168.1.50;branch=77");
        assert_eq!(
            transaction_key(legacy.as_bytes()),
            Some(rport_common::hash::transaction_key(
                b"77",
                b"192.168.1.50",
                0,
                b"c1@192.168.1.50"
            ))
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
            let _ = rewrite_top_via(&mut b, data.len(), SRC, Policy { force_rport: force });
            let _ = parse_top_via(&data);
            let _ = call_id(&data);
        }

        #[test]
        fn reported_call_id_is_the_call_id_of_the_result(m in valid_message(), force in any::<bool>()) {
            let mut b = m.clone().into_bytes();
            b.resize(m.len() + 256, 0);
            if let Ok(r) = rewrite_top_via(&mut b, m.len(), SRC, Policy { force_rport: force }) {
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
            let p = Policy { force_rport: force };
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
