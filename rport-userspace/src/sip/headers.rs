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

/// The LFs of a message from an offset on, in order, found 64 bytes at a time (a bit mask
/// per block). A SIP header line is 30 to 80 bytes long, so one `memchr` call per line
/// paid its setup on every line: a third of the rewrite's time went to finding line ends.
struct Lfs<'a> {
    m: &'a [u8],
    /// Offset of the block `mask` covers.
    base: usize,
    /// Bit `k`: `m[base + k]` is an LF not yet returned.
    mask: u64,
}

impl<'a> Lfs<'a> {
    fn new(m: &'a [u8], from: usize) -> Lfs<'a> {
        Lfs {
            m,
            base: from,
            mask: lf_mask(m, from),
        }
    }
}

impl Iterator for Lfs<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 64;
            if self.base >= self.m.len() {
                return None;
            }
            self.mask = lf_mask(self.m, self.base);
        }
        let k = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.base + k)
    }
}

/// Bit `k` set where `m[base + k]` is an LF, for the 64 bytes from `base` (fewer at the
/// end of `m`: the bits past it are clear).
#[inline]
fn lf_mask(m: &[u8], base: usize) -> u64 {
    match m.get(base..base + 64) {
        Some(b) => block_lfs(b.try_into().unwrap_or(&[0; 64])),
        None => {
            // The last block: the bytes past the end read as zeros (no LF).
            let rest = m.get(base..).unwrap_or_default();
            let mut b = [0u8; 64];
            b[..rest.len()].copy_from_slice(rest);
            block_lfs(&b)
        }
    }
}

/// Bit `k` set where `b[k]` is an LF: four SSE2 compares (every x86_64 CPU has SSE2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn block_lfs(b: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut mask = 0u64;
    for (k, chunk) in b.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is enabled (the cfg above); the unaligned load reads the 16 bytes
        // of `chunk`, which are `b`'s.
        let bits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)))
        };
        mask |= (bits as u16 as u64) << (16 * k);
    }
    mask
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn block_lfs(b: &[u8; 64]) -> u64 {
    block_lfs_swar(b)
}

/// Bit `k` set where `b[k]` is an LF: eight bytes at a time (SWAR), where there is no
/// SSE2 (and in the tests, against it).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline]
fn block_lfs_swar(b: &[u8; 64]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut mask = 0u64;
    for (k, chunk) in b.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // x is zero where the byte is an LF. A lane's high bit of (x & 0x7f) + 0x7f is set
        // for any nonzero low seven bits, OR x adds its own: no carry crosses lanes, so
        // the clear high bits are exactly the LFs.
        let x = w ^ 0x0a0a_0a0a_0a0a_0a0a;
        let hi = !(((x & LOW7) + LOW7) | x) & !LOW7;
        // The eight high bits gathered into one byte (bit j from lane j).
        let byte = (hi >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= byte << (8 * k);
    }
    mask
}

/// Whether `m[i..]` starts with the empty line (LF or CRLF).
#[inline]
fn empty_line(m: &[u8], i: usize) -> bool {
    match m.get(i) {
        Some(b'\n') => true,
        Some(b'\r') => m.get(i + 1) == Some(&b'\n'),
        _ => false,
    }
}

/// Whether `line` (the first line, its line break excluded) is a request or status line.
fn start_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        return rest.len() >= 3
            && rest[..3].iter().all(u8::is_ascii_digit)
            && rest.get(3).is_none_or(|&c| c == b' ');
    }
    // Method SP Request-URI SP SIP/2.0: two spaces exactly (a third would be in what
    // stands for the version, which then is not "SIP/2.0").
    let space = |b: &[u8]| b.iter().position(|&c| c == b' ');
    let Some(sp1) = space(line) else {
        return false;
    };
    let (method, after) = (&line[..sp1], &line[sp1 + 1..]);
    let Some(sp2) = space(after) else {
        return false;
    };
    let (uri, ver) = (&after[..sp2], &after[sp2 + 1..]);
    !method.is_empty()
        && method.iter().all(|&c| TOKEN[c as usize])
        && !uri.is_empty()
        && ver.eq_ignore_ascii_case(b"SIP/2.0")
}

/// Checks the start line and finds the end of the headers; `None` for anything that is
/// not a SIP message (no request or status line, or no empty line ending the headers).
pub fn frame(m: &[u8]) -> Option<Headers> {
    let mut lfs = Lfs::new(m, 0);
    let first_end = lfs.next()?;
    if !start_line(&m[..first_end]) {
        return None;
    }
    let start = first_end + 1;
    // The empty line: a line start (right after an LF) holding LF or CRLF.
    std::iter::once(start)
        .chain(lfs.map(|p| p + 1))
        .find(|&i| empty_line(m, i))
        .map(|end| Headers { start, end })
}

/// A message framed ([`frame`]) with the first Via and the Call-ID found on the same walk
/// over its lines: what `frame`, then `find(.., b"via", b"v")` and [`call_id_in`] return,
/// for one pass instead of three (the rewrite needs all three for every message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub h: Headers,
    /// The value of the first Via header, as [`find`] gives it.
    pub via: Option<Range<usize>>,
    /// The Call-ID value, trimmed as [`call_id_in`] trims it.
    pub call_id: Option<Range<usize>>,
}

/// Whether the line `m[..end]` goes on from `at` with `rest` (ASCII case-insensitive),
/// SP/HTAB, then a colon: that colon's index. With the name's first letter before `at`,
/// this is "the name before the line's first colon, trailing SP/HTAB trimmed, is the
/// name" (neither the name nor SP/HTAB holds a colon), without searching for the colon.
#[inline]
fn name_then_colon(m: &[u8], at: usize, end: usize, rest: &[u8]) -> Option<usize> {
    let mut i = at + rest.len();
    if i > end || !m[at..i].eq_ignore_ascii_case(rest) {
        return None;
    }
    while i < end && is_ws(m[i]) {
        i += 1;
    }
    (i < end && m[i] == b':').then_some(i)
}

/// [`frame`], the first Via and the Call-ID, in one walk (see [`Framed`]).
pub fn frame_via_call_id(m: &[u8]) -> Option<Framed> {
    let mut lfs = Lfs::new(m, 0);
    let first_end = lfs.next()?;
    if !start_line(&m[..first_end]) {
        return None;
    }
    let start = first_end + 1;
    if empty_line(m, start) {
        return Some(Framed {
            h: Headers { start, end: start },
            via: None,
            call_id: None,
        });
    }
    let (mut via, mut call_id) = (None, None);
    // The header line being read: its start, and (when it is a Via or Call-ID not seen
    // yet) which, with the value's start and the end of its last line so far.
    let mut line = start;
    let mut open: Option<(bool, usize, usize)> = None;
    let close = |open: Option<(bool, usize, usize)>,
                 via: &mut Option<Range<usize>>,
                 call_id: &mut Option<Range<usize>>| {
        if let Some((is_via, vs, e)) = open {
            let mut ve = e;
            if m[ve - 1] == b'\r' {
                ve -= 1;
            }
            let r = vs..ve.max(vs);
            if is_via {
                *via = Some(r);
            } else {
                *call_id = Some(trim_blank(m, r));
            }
        }
    };
    while let Some(lf) = lfs.next() {
        // The line `m[line..lf]`: a fold goes on with the header before it.
        if is_ws(m[line]) {
            if let Some(o) = &mut open {
                o.2 = lf;
            }
        } else {
            close(open.take(), &mut via, &mut call_id);
            // Only a name starting with one of these letters can be either header.
            let next = line + 1;
            let colon = match m[line] | 0x20 {
                b'v' if via.is_none() => name_then_colon(m, next, lf, b"ia")
                    .or_else(|| name_then_colon(m, next, lf, b""))
                    .map(|c| (true, c)),
                b'c' if call_id.is_none() => {
                    name_then_colon(m, next, lf, b"all-id").map(|c| (false, c))
                }
                b'i' if call_id.is_none() => name_then_colon(m, next, lf, b"").map(|c| (false, c)),
                _ => None,
            };
            open = colon.map(|(is_via, c)| (is_via, c + 1, lf));
        }
        line = lf + 1;
        if empty_line(m, line) {
            close(open.take(), &mut via, &mut call_id);
            return Some(Framed {
                h: Headers { start, end: line },
                via,
                call_id,
            });
        }
        if line >= m.len() {
            return None;
        }
        if via.is_some() && call_id.is_some() && open.is_none() {
            // Both found: what is left is the end of the headers, which `frame` finds.
            let end = lfs.map(|p| p + 1).find(|&i| empty_line(m, i))?;
            return Some(Framed {
                h: Headers { start, end },
                via,
                call_id,
            });
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
    if from >= end {
        return None;
    }
    // A name that matches starts with the first letter of one of the two: any other line
    // is passed over on its first byte.
    let first = |c: u8, name: &[u8]| name.first().is_none_or(|f| c.eq_ignore_ascii_case(f));
    // Names without a colon or SP/HTAB (header names) are matched in place
    // ([`name_then_colon`]); any other is compared with what stands before the colon.
    let plain = |name: &[u8]| !name.iter().any(|&c| c == b':' || is_ws(c));
    let in_place = plain(long) && plain(short);
    let mut lfs = Lfs::new(m, from);
    let mut i = from;
    while i < end {
        let le = lfs.next().unwrap_or(m.len()).min(end);
        if !is_ws(m[i]) && (first(m[i], long) || first(m[i], short)) {
            let colon = if in_place {
                name_then_colon(m, i, le, long).or_else(|| name_then_colon(m, i, le, short))
            } else {
                memchr::memchr(b':', &m[i..le]).map(|c| i + c).filter(|&c| {
                    // Trailing SP/HTAB only: any other byte (a CR, say) is part of the
                    // name.
                    let mut n = c;
                    while n > i && is_ws(m[n - 1]) {
                        n -= 1;
                    }
                    let name = &m[i..n];
                    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
                })
            };
            if let Some(colon) = colon {
                // The header goes on while the next line starts with SP/HTAB.
                let mut e = le;
                while e + 1 < end && is_ws(m[e + 1]) {
                    e = lfs.next().unwrap_or(m.len()).min(end);
                }
                let mut ve = e;
                if ve > 0 && m[ve - 1] == b'\r' {
                    ve -= 1;
                }
                return Some((colon + 1..ve.max(colon + 1), e + 1));
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
    find(m, h, b"call-id", b"i").map(|r| trim_blank(m, r))
}

/// `m[r]` without the SP, HTAB, CR and LF around it.
fn trim_blank(m: &[u8], r: Range<usize>) -> Range<usize> {
    let blank = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let v = &m[r.clone()];
    let lead = v.iter().take_while(|c| blank(c)).count();
    let trail = v[lead..].iter().rev().take_while(|c| blank(c)).count();
    r.start + lead..r.end - trail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every LF and nothing else, at every alignment and length, next to every byte.
    #[test]
    fn lfs_finds_exactly_the_line_feeds() {
        for other in 0..=255u8 {
            for len in 0..20 {
                for lf in 0..len {
                    let mut m = vec![other; len];
                    m[lf] = b'\n';
                    for from in 0..=len {
                        let want: Vec<usize> = (from..len).filter(|&i| m[i] == b'\n').collect();
                        assert_eq!(Lfs::new(&m, from).collect::<Vec<_>>(), want, "{m:?} {from}");
                    }
                }
            }
        }
    }

    /// Both block masks, on blocks of LFs among bytes near it (0x0a ± 1, 0x8a) and any.
    #[test]
    fn block_masks_agree() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..20_000 {
            let mut b = [0u8; 64];
            for c in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = match (round % 2, x % 5) {
                    (0, 0) => b'\n',
                    (0, 1) => 0x0b,
                    (0, 2) => 0x09,
                    (0, 3) => 0x8a,
                    _ => (x >> 8) as u8,
                };
            }
            let want = b
                .iter()
                .enumerate()
                .fold(0u64, |m, (k, &c)| m | ((c == b'\n') as u64) << k);
            assert_eq!(block_lfs(&b), want, "{b:?}");
            assert_eq!(block_lfs_swar(&b), want, "{b:?}");
        }
    }

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
