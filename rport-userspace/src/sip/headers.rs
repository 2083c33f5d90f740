//! The header part of a SIP message, zero-copy over `&[u8]`: the start line, where the
//! headers end, a header's value by name, the Call-ID.
//!
//! Lines, folds, bare CRs and header names follow the grammar in [`rport_ebpf::scan`]
//! (its module doc), which the XDP scanner implements too. Beyond it, the rewrite wants a
//! proper start line and the empty line that ends the headers (the scanner needs neither).
use std::ops::Range;

/// Where the headers of a framed message are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Offset of the first header line (right after the start line's LF).
    pub start: usize,
    /// Offset of the empty line that ends the headers.
    pub end: usize,
}

pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// RFC 3261 `token` characters: the method of a request line here, and `tchar` of the
/// Via grammar. A table: this test runs on nearly every byte of the Via.
pub(crate) const TOKEN: [bool; 256] = {
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

/// End of the line starting at or after `i`: index of its `\n`, or `m.len()`.
fn line_end(m: &[u8], i: usize) -> usize {
    memchr::memchr(b'\n', &m[i..]).map_or(m.len(), |p| i + p)
}

/// Checks the start line and finds the end of the headers; `None` for anything that is
/// not a SIP message (no request or status line, or no empty line ending the headers).
pub fn frame(m: &[u8]) -> Option<Headers> {
    let first_end = line_end(m, 0);
    if first_end == m.len() {
        return None;
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
            && method.iter().all(|&c| TOKEN[c as usize])
            && !uri.is_empty()
            && ver.eq_ignore_ascii_case(b"SIP/2.0")
            && parts.next().is_none()
    };
    if !ok {
        return None;
    }
    let start = first_end + 1;
    // The empty line: a line start (right after an LF) holding LF or CRLF. Jumping from LF
    // to LF (SIMD search) instead of walking the bytes.
    for p in memchr::memchr_iter(b'\n', &m[first_end..]) {
        let i = first_end + p + 1;
        match m.get(i) {
            Some(b'\n') => return Some(Headers { start, end: i }),
            Some(b'\r') if m.get(i + 1) == Some(&b'\n') => return Some(Headers { start, end: i }),
            _ => {}
        }
    }
    None
}

/// The value of the first header named `long` or `short` (ASCII case-insensitive): from
/// after the colon to the end of its last folded line, that line's break excluded. Inside
/// the range every LF is a fold's (an SP or HTAB follows it).
pub fn find(m: &[u8], h: &Headers, long: &[u8], short: &[u8]) -> Option<Range<usize>> {
    find_from(m, h, h.start, long, short).map(|(v, _)| v)
}

/// [`find`] from the line starting at `from` on (a line start inside the headers, such as
/// `h.start` or what a call before returned): the value of the next such header, and the
/// start of the line after it, to go on from (the Contact rewrite walks every Contact).
pub fn find_from(
    m: &[u8],
    h: &Headers,
    from: usize,
    long: &[u8],
    short: &[u8],
) -> Option<(Range<usize>, usize)> {
    let end = h.end;
    let mut i = from;
    while i < end {
        let le = line_end(m, i).min(end);
        if !is_ws(m[i]) {
            if let Some(colon) = m[i..le].iter().position(|&c| c == b':') {
                // Trailing SP/HTAB only: any other byte (a CR, say) is part of the name.
                let mut n = i + colon;
                while n > i && is_ws(m[n - 1]) {
                    n -= 1;
                }
                let name = &m[i..n];
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
                    return Some((i + colon + 1..ve.max(i + colon + 1), e + 1));
                }
            }
        }
        i = le + 1;
    }
    None
}

/// Value of the Call-ID header (`i` in compact form), trimmed.
pub fn call_id(m: &[u8]) -> Option<&[u8]> {
    let h = frame(m)?;
    call_id_in(m, &h).map(|r| &m[r])
}

/// Range of the Call-ID value within framed headers, without the SP, HTAB, CR and LF
/// around it (the transaction key skips those bytes anyway).
pub fn call_id_in(m: &[u8], h: &Headers) -> Option<Range<usize>> {
    let r = find(m, h, b"call-id", b"i")?;
    let blank = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let v = &m[r.clone()];
    let lead = v.iter().take_while(|c| blank(c)).count();
    let trail = v[lead..].iter().rev().take_while(|c| blank(c)).count();
    Some(r.start + lead..r.end - trail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_requests_and_responses() {
        for (m, start, end) in [
            ("INVITE sip:x SIP/2.0\r\nA: 1\r\n\r\nbody", 22, 28),
            ("SIP/2.0 200 OK\nA: 1\n\n", 15, 20),
            ("OPTIONS sip:x sip/2.0\r\n\r\n", 23, 23),
            ("SIP/2.0 100\r\nA: 1\r\n\r\n", 13, 19),
        ] {
            assert_eq!(frame(m.as_bytes()), Some(Headers { start, end }), "{m:?}");
        }
        for m in [
            "",
            "hello world\r\n\r\n",
            "INVITE sip:x SIP/2.0\r\nA: 1\r\n",
            "INVITE  sip:x SIP/2.0\r\n\r\n",
            "INVITE sip:x SIP/2.0 x\r\n\r\n",
            "INV@TE sip:x SIP/2.0\r\n\r\n",
            "SIP/2.0 20 OK\r\n\r\n",
            "SIP/2.0 200OK\r\n\r\n",
            // CR CR LF is not an empty line.
            "INVITE sip:x SIP/2.0\r\nA: 1\r\n\r\r\n",
        ] {
            assert_eq!(frame(m.as_bytes()), None, "{m:?}");
        }
    }

    #[test]
    fn finds_headers_by_name() {
        let m =
            b"INVITE sip:x SIP/2.0\r\nViaduct: 1\r\n X: 2\r\nVia\r: 3\r\nvIa \t: 4\r\n 5\r\n\r\n";
        let h = frame(m).unwrap();
        let r = find(m, &h, b"via", b"v").unwrap();
        assert_eq!(&m[r], b" 4\r\n 5");
        assert_eq!(find(m, &h, b"call-id", b"i"), None);
        // Every one of them, in order, folds included; the body is not headers.
        let m = b"SIP/2.0 200 OK\r\nm: 1\r\nX: 2\r\nContact: 3\r\n 4\r\nM:5\r\n\r\nm: 6\r\n";
        let h = frame(m).unwrap();
        let mut at = h.start;
        let mut seen = Vec::new();
        while let Some((r, next)) = find_from(m, &h, at, b"contact", b"m") {
            seen.push(&m[r]);
            at = next;
        }
        assert_eq!(seen, [&b" 1"[..], b" 3\r\n 4", b"5"]);
    }

    #[test]
    fn call_id_is_trimmed_of_blanks_only() {
        for (m, want) in [
            (
                "INVITE sip:x SIP/2.0\r\nCall-ID:  a b \t\r\n\r\n",
                &b"a b"[..],
            ),
            ("INVITE sip:x SIP/2.0\r\ni: a\r\n \r\n\r\n", b"a"),
            ("INVITE sip:x SIP/2.0\r\ni:\x0ca\x0c\r\n\r\n", b"\x0ca\x0c"),
            ("INVITE sip:x SIP/2.0\r\ni: \r\n\r\n", b""),
        ] {
            assert_eq!(call_id(m.as_bytes()), Some(want), "{m:?}");
        }
    }
}
