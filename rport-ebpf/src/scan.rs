//! The top-Via scanner: a byte-at-a-time state machine over the SIP headers.
//!
//! Why a state machine fed one byte per step: the XDP side drives it from `bpf_loop`, whose
//! callback the verifier checks once, whatever the number of iterations. A plain loop with
//! this much branching would be unrolled state by state and blow the 1M-instruction limit.
//! Everything the step needs lives in [`Scan`] (a `#[repr(C)]` stack struct on the XDP
//! side), and nothing after the loop may use an offset it produced to touch the packet:
//! the results are flags, numbers and hashes only.
//!
//! What it finds (RFC 3261 §7.3.1, §20.42; RFC 3581): the first `Via`/`v` header (any case,
//! whitespace before the colon, folded lines), the first value of its comma list, its
//! sent-by host and port, `branch`, `rport` (and value) and `received`; and the `Call-ID`
//! (`i`), which older clients' transaction keys need. Quoted-string parameter values are
//! not special-cased: a `;` or `,` inside quotes in a Via parameter ends it early, which
//! at worst makes the transaction key miss (the packet still passes).

use rport_common::{flags, hash};

/// Header names packed as lowercase bytes into a u64 (up to 8 characters).
const fn pack(s: &[u8]) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < s.len() {
        v = (v << 8) | s[i] as u64;
        i += 1;
    }
    v
}
const N_VIA: u64 = pack(b"via");
const N_V: u64 = pack(b"v");
const N_CALL_ID: u64 = pack(b"call-id");
const N_I: u64 = pack(b"i");
const P_BRANCH: u64 = pack(b"branch");
const P_RPORT: u64 = pack(b"rport");
const P_RECEIVED: u64 = pack(b"received");
/// RFC 3261 magic cookie `z9hG4bK`, first byte in the low bits.
const COOKIE_WORD: u64 = u64::from_le_bytes(*b"z9hG4bK\0");

// States. Plain u32 constants (not an enum) so the struct stays Pod and the match compiles
// to a compact jump sequence the verifier walks once.
const FIRST_LINE: u32 = 0;
const LINE_START: u32 = 1;
const NAME: u32 = 2;
const NAME_WS: u32 = 3;
const SKIP_LINE: u32 = 4;
const V_PROTO: u32 = 5;
const V_TRANSPORT_WS: u32 = 6;
const V_TRANSPORT: u32 = 7;
const V_HOST_WS: u32 = 8;
const V_HOST: u32 = 9;
const V_HOST6: u32 = 10;
const V_AFTER_HOST: u32 = 11;
const V_PORT_WS: u32 = 12;
const V_PORT: u32 = 13;
const V_PARAMS: u32 = 14;
const V_PNAME_WS: u32 = 15;
const V_PNAME: u32 = 16;
const V_PNAME_END: u32 = 17;
const V_PVAL_WS: u32 = 18;
const V_PVAL: u32 = 19;
const CALLID_WS: u32 = 20;
const CALLID: u32 = 21;
const FOLD: u32 = 22;
/// Nothing more to learn: stop the loop.
pub const DONE: u32 = 23;

// Which parameter value is being read.
const PK_OTHER: u32 = 0;
const PK_BRANCH: u32 = 1;
const PK_RPORT: u32 = 2;
const PK_RECEIVED: u32 = 3;

/// `Scan::found` bits.
pub mod found {
    /// A Via header was found (its value is being or was parsed).
    pub const VIA: u32 = 1;
    /// The first Via value has been read to its end.
    pub const VIA_DONE: u32 = 2;
    /// The Call-ID value has been read.
    pub const CALL_ID: u32 = 4;
    /// The empty line that ends the headers was reached.
    pub const HEADERS_END: u32 = 8;
    /// The top Via is unusable (no host, bad port, junk where a separator belongs).
    pub const MALFORMED: u32 = 16;
    /// The Via value has a branch parameter.
    pub const BRANCH: u32 = 32;
}

/// Scanner state and results. `#[repr(C)]`, integers only: it lives on the BPF stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub state: u32,
    /// State to resume if a line break turns out to be a fold (CRLF + SP/HTAB).
    pub saved: u32,
    /// Header or parameter name being read, packed lowercase.
    pub name: u64,
    pub name_len: u32,
    pub slashes: u32,
    /// [`found`] bits.
    pub found: u32,
    /// [`rport_common::flags`] bits learnt from the Via (RPORT_*, RECEIVED, MAGIC_COOKIE,
    /// SENT_BY_NAME, SENT_BY_V6, SENT_BY_PRIVATE, SENT_BY_CGNAT).
    pub flags: u32,
    pub branch_hash: u64,
    pub host_hash: u64,
    pub callid_hash: u64,
    pub branch_len: u32,
    pub host_len: u32,
    /// Sent-by port (0 when absent), `rport=` value (0 when empty or absent).
    pub port: u32,
    pub rport: u32,
    /// IPv4 literal parse of the sent-by host: address so far, current octet, digits in
    /// it, dots seen, 1 while it still looks like dotted-quad.
    pub v4: u32,
    pub v4_octet: u32,
    pub v4_digits: u32,
    pub v4_dots: u32,
    pub v4_ok: u32,
    /// Kind of the parameter whose value is being read.
    pub pkind: u32,
    /// Bytes of the magic cookie matched at the start of the branch.
    pub cookie: u32,
    /// Digits of a port or rport value read so far.
    pub digits: u32,
}

/// Index of the first LF among the 8 bytes of `w` (little-endian: byte 0 in the low bits).
///
/// SWAR: `x - 0x01…` borrows out of exactly the zero bytes of `x = w ^ 0x0a…` (and, by
/// borrow propagation, possibly some bytes above one), so the lowest flagged byte is exact.
/// The position is found by halving, not `trailing_zeros`: BPF has no such instruction.
#[inline(always)]
pub fn first_lf(w: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = w ^ (ONES * b'\n' as u64);
    let m = x.wrapping_sub(ONES) & !x & HIGHS;
    if m == 0 {
        return None;
    }
    let mut low = m & m.wrapping_neg();
    let mut k = 0;
    if low > 0xffff_ffff {
        k += 4;
        low >>= 32;
    }
    if low > 0xffff {
        k += 2;
        low >>= 16;
    }
    if low > 0xff {
        k += 1;
    }
    Some(k)
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

#[inline(always)]
fn lower(c: u8) -> u8 {
    if c.is_ascii_uppercase() { c | 0x20 } else { c }
}

impl Scan {
    /// A scanner positioned at the start of a SIP message (request or status line).
    pub fn new() -> Self {
        Scan {
            branch_hash: hash::FNV_OFFSET,
            host_hash: hash::FNV_OFFSET,
            callid_hash: hash::FNV_OFFSET,
            v4_ok: 1,
            ..Default::default()
        }
    }

    /// The sent-by host as an IPv4 literal (network byte order), if it is one.
    pub fn sent_by_v4(&self) -> Option<[u8; 4]> {
        if self.flags & (flags::SENT_BY_NAME | flags::SENT_BY_V6) == 0 && self.host_len > 0 {
            Some(self.v4.to_be_bytes())
        } else {
            None
        }
    }

    /// The transaction key (same as `rport_common::hash::transaction_key`).
    pub fn key(&self) -> u64 {
        hash::combine(
            self.branch_hash,
            self.flags & flags::MAGIC_COOKIE != 0,
            self.host_hash,
            self.port as u16,
            self.callid_hash,
        )
    }

    /// True once nothing more is to be learnt: the top Via is read and either its branch
    /// is an RFC 3261 one (the key needs nothing else) or the Call-ID was read too.
    #[inline(always)]
    fn complete(&self) -> bool {
        self.found & found::VIA_DONE != 0
            && (self.flags & flags::MAGIC_COOKIE != 0 || self.found & found::CALL_ID != 0)
    }

    /// Feeds one byte. Returns false when the scan is over.
    #[inline(always)]
    pub fn step(&mut self, c: u8) -> bool {
        if c == b'\r' {
            // CR is only ever part of a line break here; LF does the work.
            return true;
        }
        let st = self.state;
        if c == b'\n' {
            match st {
                FIRST_LINE | SKIP_LINE | NAME | NAME_WS => self.state = LINE_START,
                LINE_START => {
                    // Empty line: end of the headers.
                    self.end_header_value();
                    self.found |= found::HEADERS_END;
                    self.state = DONE;
                }
                FOLD => {
                    // A second line break: the header ended, and so did the headers.
                    self.state = self.saved;
                    self.end_header_value();
                    self.found |= found::HEADERS_END;
                    self.state = DONE;
                }
                _ => {
                    // Inside a Via or Call-ID value: a fold or the end of the header.
                    self.saved = st;
                    self.state = FOLD;
                }
            }
            return self.state != DONE;
        }
        if st == FOLD {
            if is_ws(c) {
                self.state = self.saved;
                return self.value_byte(c);
            }
            // The header ended; `c` starts the next one.
            self.state = self.saved;
            self.end_header_value();
            if self.complete() {
                self.state = DONE;
                return false;
            }
            self.state = LINE_START;
            return self.line_byte(c);
        }
        if st <= SKIP_LINE {
            return self.line_byte(c);
        }
        self.value_byte(c)
    }

    /// Bytes outside a Via or Call-ID value: the request line, header names, other headers.
    #[inline(always)]
    fn line_byte(&mut self, c: u8) -> bool {
        match self.state {
            LINE_START => {
                if is_ws(c) {
                    // Continuation of a header we skip.
                    self.state = SKIP_LINE;
                } else {
                    self.name = lower(c) as u64;
                    self.name_len = 1;
                    self.state = NAME;
                }
            }
            NAME => {
                if c == b':' {
                    self.header_colon();
                } else if is_ws(c) {
                    self.state = NAME_WS;
                } else if self.name_len < 8 {
                    self.name = (self.name << 8) | lower(c) as u64;
                    self.name_len += 1;
                } else {
                    // Longer than any name we look for.
                    self.name = 0;
                    self.state = SKIP_LINE;
                }
            }
            NAME_WS => {
                if c == b':' {
                    self.header_colon();
                } else if !is_ws(c) {
                    self.state = SKIP_LINE;
                }
            }
            _ => {} // FIRST_LINE, SKIP_LINE: wait for LF.
        }
        true
    }

    #[inline(always)]
    fn header_colon(&mut self) {
        let n = self.name;
        if (n == N_VIA || n == N_V) && self.found & found::VIA == 0 {
            self.found |= found::VIA;
            self.slashes = 0;
            self.state = V_PROTO;
        } else if (n == N_CALL_ID || n == N_I) && self.found & found::CALL_ID == 0 {
            self.state = CALLID_WS;
        } else {
            self.state = SKIP_LINE;
        }
    }

    /// Bytes of a Via or Call-ID value.
    #[inline(always)]
    fn value_byte(&mut self, c: u8) -> bool {
        let ws = is_ws(c);
        match self.state {
            V_PROTO => {
                if c == b'/' {
                    self.slashes += 1;
                    if self.slashes == 2 {
                        self.state = V_TRANSPORT_WS;
                    }
                } else if c == b',' || c == b';' {
                    self.malformed();
                }
            }
            V_TRANSPORT_WS => {
                if !ws {
                    self.state = V_TRANSPORT;
                }
            }
            V_TRANSPORT => {
                if ws {
                    self.state = V_HOST_WS;
                }
            }
            V_HOST_WS => {
                if ws {
                } else if c == b';' || c == b',' || c == b':' {
                    self.malformed();
                } else {
                    if c == b'[' {
                        self.flags |= flags::SENT_BY_V6;
                        self.state = V_HOST6;
                    } else {
                        self.state = V_HOST;
                    }
                    self.host_byte(c);
                }
            }
            V_HOST => {
                if c == b':' {
                    self.host_end();
                    self.state = V_PORT_WS;
                } else if c == b';' {
                    self.host_end();
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.host_end();
                    self.via_done();
                } else if ws {
                    self.host_end();
                    self.state = V_AFTER_HOST;
                } else {
                    self.host_byte(c);
                }
            }
            V_HOST6 => {
                // Only what an IPv6 reference holds (RFC 3261 §25.1: hex, `:`, and `.` for
                // an embedded IPv4): a `;` or `,` means the `]` is missing, and the
                // parameters would otherwise be swallowed as host.
                if !(c.is_ascii_hexdigit() || c == b':' || c == b'.' || c == b']') {
                    self.malformed();
                } else if c == b']' && self.host_len <= 1 {
                    // `[]`: no address.
                    self.malformed();
                } else {
                    self.host_byte(c);
                    if c == b']' {
                        self.host_end();
                        self.state = V_AFTER_HOST;
                    }
                }
            }
            V_AFTER_HOST => {
                if c == b':' {
                    self.state = V_PORT_WS;
                } else if c == b';' {
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.via_done();
                } else if !ws {
                    self.malformed();
                }
            }
            V_PORT_WS => {
                if c.is_ascii_digit() {
                    self.port = (c - b'0') as u32;
                    self.digits = 1;
                    self.state = V_PORT;
                } else if !ws {
                    self.malformed();
                }
            }
            V_PORT => {
                if c.is_ascii_digit() && self.digits < 5 {
                    self.port = self.port * 10 + (c - b'0') as u32;
                    self.digits += 1;
                } else if c == b';' {
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.via_done();
                } else if ws {
                    self.state = V_PARAMS;
                } else {
                    self.malformed();
                }
                if self.port > 65535 {
                    self.malformed();
                }
            }
            V_PARAMS => {
                if c == b';' {
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.via_done();
                } else if !ws {
                    self.malformed();
                }
            }
            V_PNAME_WS => {
                if c == b',' {
                    self.via_done();
                } else if !ws && c != b';' {
                    self.name = lower(c) as u64;
                    self.name_len = 1;
                    self.state = V_PNAME;
                }
            }
            V_PNAME => {
                if c == b'=' {
                    self.param_value_start();
                } else if c == b';' {
                    self.param_without_value();
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.param_without_value();
                    self.via_done();
                } else if ws {
                    self.state = V_PNAME_END;
                } else if self.name_len < 8 {
                    self.name = (self.name << 8) | lower(c) as u64;
                    self.name_len += 1;
                } else {
                    self.name = 0;
                    self.name_len = 9;
                }
            }
            V_PNAME_END => {
                if c == b'=' {
                    self.param_value_start();
                } else if c == b';' {
                    self.param_without_value();
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.param_without_value();
                    self.via_done();
                } else if !ws {
                    self.malformed();
                }
            }
            V_PVAL_WS => {
                if c == b';' {
                    self.param_value_end();
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.param_value_end();
                    self.via_done();
                } else if !ws {
                    self.param_value_byte(c);
                    self.state = V_PVAL;
                }
            }
            V_PVAL => {
                if c == b';' {
                    self.param_value_end();
                    self.state = V_PNAME_WS;
                } else if c == b',' {
                    self.param_value_end();
                    self.via_done();
                } else if ws {
                    self.param_value_end();
                    self.state = V_PARAMS;
                } else {
                    self.param_value_byte(c);
                }
            }
            CALLID_WS => {
                if !ws {
                    self.callid_hash = hash::step(self.callid_hash, c);
                    self.state = CALLID;
                }
            }
            CALLID => {
                // Call-ID is a single word; whitespace is only ever trailing.
                if !ws {
                    self.callid_hash = hash::step(self.callid_hash, c);
                }
            }
            _ => {}
        }
        if self.state == SKIP_LINE && self.complete() {
            self.state = DONE;
        }
        self.state != DONE
    }

    #[inline(always)]
    fn host_byte(&mut self, c: u8) {
        self.host_hash = hash::step(self.host_hash, c);
        self.host_len += 1;
        if self.flags & flags::SENT_BY_V6 != 0 {
            // "[fc" / "[fd": an RFC 4193 unique local address, the IPv6 private range.
            // `v4` is free scratch while the host is an IPv6 reference.
            if self.host_len == 2 {
                self.v4 = lower(c) as u32;
            } else if self.host_len == 3
                && self.v4 == b'f' as u32
                && (lower(c) == b'c' || lower(c) == b'd')
            {
                self.flags |= flags::SENT_BY_PRIVATE;
            }
            return;
        }
        if c.is_ascii_digit() {
            // Wrapping: a host name may hold any number of digits; once it is not an IPv4
            // literal (`v4_ok` 0, sticky) the octet value no longer matters.
            self.v4_octet = self
                .v4_octet
                .wrapping_mul(10)
                .wrapping_add((c - b'0') as u32);
            self.v4_digits += 1;
            if self.v4_digits > 3 || self.v4_octet > 255 {
                self.v4_ok = 0;
            }
        } else if c == b'.' && self.v4_digits > 0 {
            self.v4 = (self.v4 << 8) | self.v4_octet;
            self.v4_dots += 1;
            self.v4_octet = 0;
            self.v4_digits = 0;
        } else {
            self.v4_ok = 0;
        }
    }

    #[inline(always)]
    fn host_end(&mut self) {
        if self.flags & flags::SENT_BY_V6 != 0 {
            self.v4 = 0;
            return;
        }
        if self.v4_ok == 1 && self.v4_dots == 3 && self.v4_digits > 0 {
            let a = (self.v4 << 8) | self.v4_octet;
            self.v4 = a;
            let b0 = a >> 24;
            let b1 = (a >> 16) & 0xff;
            // RFC 1918: 10/8, 172.16/12, 192.168/16. RFC 6598: 100.64/10.
            if b0 == 10 || (b0 == 172 && b1 & 0xf0 == 16) || (b0 == 192 && b1 == 168) {
                self.flags |= flags::SENT_BY_PRIVATE;
            } else if b0 == 100 && b1 & 0xc0 == 64 {
                self.flags |= flags::SENT_BY_CGNAT;
            }
        } else {
            self.v4 = 0;
            self.flags |= flags::SENT_BY_NAME;
        }
    }

    #[inline(always)]
    fn param_value_start(&mut self) {
        let n = self.name;
        self.pkind = if n == P_BRANCH {
            self.found |= found::BRANCH;
            self.branch_hash = hash::FNV_OFFSET;
            self.branch_len = 0;
            self.cookie = 0;
            PK_BRANCH
        } else if n == P_RPORT {
            self.rport = 0;
            self.digits = 0;
            PK_RPORT
        } else if n == P_RECEIVED {
            self.flags |= flags::RECEIVED;
            PK_RECEIVED
        } else {
            PK_OTHER
        };
        self.state = V_PVAL_WS;
    }

    #[inline(always)]
    fn param_without_value(&mut self) {
        let n = self.name;
        if n == P_RPORT {
            self.flags |= flags::RPORT_EMPTY;
        } else if n == P_RECEIVED {
            self.flags |= flags::RECEIVED;
        } else if n == P_BRANCH {
            self.found |= found::BRANCH;
        }
    }

    #[inline(always)]
    fn param_value_byte(&mut self, c: u8) {
        match self.pkind {
            PK_BRANCH => {
                self.branch_hash = hash::step(self.branch_hash, c);
                // Shift, not index: indexing a constant array with a state field would be
                // pointer arithmetic, which makes the verifier track that field exactly and
                // then it cannot prune the bpf_loop iterations.
                if self.cookie == self.branch_len
                    && self.branch_len < 7
                    && c as u64 == (COOKIE_WORD >> (8 * self.branch_len)) & 0xff
                {
                    self.cookie += 1;
                }
                self.branch_len += 1;
            }
            PK_RPORT => {
                if c.is_ascii_digit() && self.digits < 5 {
                    self.rport = self.rport * 10 + (c - b'0') as u32;
                    self.digits += 1;
                } else {
                    self.digits = 6; // not a port: treated as present but unusable
                }
            }
            _ => {}
        }
    }

    #[inline(always)]
    fn param_value_end(&mut self) {
        match self.pkind {
            PK_BRANCH => {
                if self.cookie == 7 {
                    self.flags |= flags::MAGIC_COOKIE;
                }
            }
            PK_RPORT => {
                if self.digits > 0 && self.digits <= 5 && self.rport <= 65535 {
                    self.flags |= flags::RPORT_VALUE;
                } else {
                    self.rport = 0;
                    self.flags |= flags::RPORT_EMPTY;
                }
            }
            _ => {}
        }
        self.pkind = PK_OTHER;
    }

    /// The first Via value ended at a comma: skip the rest of the line (other values).
    #[inline(always)]
    fn via_done(&mut self) {
        self.found |= found::VIA_DONE;
        self.state = SKIP_LINE;
    }

    #[inline(always)]
    fn malformed(&mut self) {
        self.found |= found::MALFORMED | found::VIA_DONE;
        self.state = SKIP_LINE;
    }

    /// The header whose value was being read ended (line break not followed by SP/HTAB).
    #[inline(always)]
    fn end_header_value(&mut self) {
        match self.state {
            CALLID_WS | CALLID => self.found |= found::CALL_ID,
            V_HOST => {
                self.host_end();
                self.found |= found::VIA_DONE;
            }
            // The line ended inside `[…]`.
            V_HOST6 => self.malformed(),
            V_PNAME | V_PNAME_END => {
                self.param_without_value();
                self.found |= found::VIA_DONE;
            }
            V_PVAL => {
                self.param_value_end();
                self.found |= found::VIA_DONE;
            }
            V_PVAL_WS => {
                self.param_value_end();
                self.found |= found::VIA_DONE;
            }
            V_PORT | V_PARAMS | V_PNAME_WS | V_AFTER_HOST => self.found |= found::VIA_DONE,
            V_PROTO | V_TRANSPORT_WS | V_TRANSPORT | V_HOST_WS | V_PORT_WS => self.malformed(),
            _ => {}
        }
    }

    /// Call at the end of the scanned bytes (packet or window end) to close a value cut short.
    pub fn finish(&mut self) {
        if self.state == FOLD {
            self.state = self.saved;
            self.end_header_value();
        } else if self.state >= V_PROTO && self.state <= CALLID {
            // Cut off mid-value: the Via (or Call-ID) is incomplete.
            if self.state == CALLID {
                self.found |= found::CALL_ID;
            } else if self.found & found::VIA_DONE == 0 {
                self.found |= found::MALFORMED | found::VIA_DONE;
            }
        }
    }

    /// True in the states that ignore everything up to the next LF (the start line, a
    /// header rport does not read, the rest of a Via line after its first value). There the
    /// driver may hand over 8 bytes at once to [`Scan::skip_word`].
    #[inline(always)]
    pub fn skipping(&self) -> bool {
        self.state == FIRST_LINE || self.state == SKIP_LINE
    }

    /// Consumes up to 8 bytes (`w`, loaded little-endian) while [`Scan::skipping`]: all of
    /// them if there is no LF, else up to and including the first LF, which starts a line,
    /// exactly as feeding them one by one to [`Scan::step`] would. Returns the count.
    ///
    /// Why: one `bpf_loop` iteration costs about as much as a whole scanner step, and
    /// most bytes before the top Via (and every byte before a Call-ID) are skipped bytes.
    #[inline(always)]
    pub fn skip_word(&mut self, w: u64) -> u32 {
        match first_lf(w) {
            None => 8,
            Some(k) => {
                self.state = LINE_START;
                k + 1
            }
        }
    }

    /// [`Scan::skip_word`] over up to four words (a long line: Contact, Route, padding
    /// before a late Via), stopping where a line starts. Returns the bytes consumed.
    #[inline(always)]
    pub fn skip_words(&mut self, words: &[u64; 4]) -> u32 {
        let mut adv = 0;
        let mut k = 0;
        while k < 4 {
            adv += self.skip_word(words[k]);
            if !self.skipping() {
                break;
            }
            k += 1;
        }
        adv
    }

    /// Up to eight [`Scan::step`]s over the bytes of one word, stopping early when the
    /// scan is over or the scanner starts skipping (the word paths are faster there).
    /// Returns the bytes consumed and whether to go on.
    #[inline(always)]
    pub fn step_word(&mut self, b: &[u8; 8]) -> (u32, bool) {
        let mut k = 0;
        while k < 8 {
            if !self.step(b[k]) {
                return (k as u32 + 1, false);
            }
            if self.skipping() {
                return (k as u32 + 1, true);
            }
            k += 1;
        }
        (8, true)
    }

    /// [`Scan::run`] driven exactly as the XDP program's `bpf_loop` callback drives it
    /// (32 or 8 bytes at a time while skipping, 8 steps on one load otherwise, single
    /// steps near the end). Gives the same result as `run` (every host test checks it).
    pub fn run_chunked(bytes: &[u8]) -> Scan {
        let mut s = Scan::new();
        let n = bytes.len().min(rport_common::SCAN_WINDOW as usize);
        let word = |p: usize| u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap());
        let mut pos = 0;
        while pos < n {
            if s.skipping() && pos + 32 <= n {
                let w = [word(pos), word(pos + 8), word(pos + 16), word(pos + 24)];
                pos += s.skip_words(&w) as usize;
            } else if s.skipping() && pos + 8 <= n {
                pos += s.skip_word(word(pos)) as usize;
            } else if pos + 8 <= n {
                let (adv, go_on) = s.step_word(bytes[pos..pos + 8].try_into().unwrap());
                if !go_on {
                    return s;
                }
                pos += adv as usize;
            } else {
                if !s.step(bytes[pos]) {
                    return s;
                }
                pos += 1;
            }
        }
        s.finish();
        s
    }

    /// Runs the scanner over a whole byte slice (host use: tests, replay, userspace checks).
    pub fn run(bytes: &[u8]) -> Scan {
        let mut s = Scan::new();
        for &c in bytes.iter().take(rport_common::SCAN_WINDOW as usize) {
            if !s.step(c) {
                return s;
            }
        }
        s.finish();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rport_common::hash::{FNV_OFFSET, bytes, transaction_key};

    const CLASS: u32 =
        flags::SENT_BY_PRIVATE | flags::SENT_BY_CGNAT | flags::SENT_BY_NAME | flags::SENT_BY_V6;
    const RPORT_BITS: u32 = flags::RPORT_EMPTY | flags::RPORT_VALUE;
    const CALL_ID: &str = "a84b4c76e66710@pc33.example.com";

    /// Feeds `msg` one byte at a time until `step` says stop, then `finish()`es, as the XDP
    /// side does. Returns the scanner and how many bytes were fed (the stopping one included).
    fn feed(msg: &[u8]) -> (Scan, usize) {
        let mut s = Scan::new();
        let mut n = 0;
        for &c in msg {
            n += 1;
            if !s.step(c) {
                break;
            }
        }
        s.finish();
        // Whatever the caller (bpf_loop here, `run` on the host), the result is the same.
        if msg.len() <= rport_common::SCAN_WINDOW as usize {
            assert_eq!(s, Scan::run(msg), "feed and run disagree");
            assert_eq!(s, Scan::run_chunked(msg), "feed and run_chunked disagree");
        }
        (s, n)
    }

    #[test]
    fn first_lf_finds_the_first_line_feed_in_a_word() {
        assert_eq!(first_lf(u64::from_le_bytes(*b"abcdefgh")), None);
        for k in 0..8 {
            let mut b = *b"abcdefgh";
            b[k] = b'\n';
            assert_eq!(first_lf(u64::from_le_bytes(b)), Some(k as u32), "{b:?}");
            // A second LF and bytes that differ from LF by one bit do not confuse it.
            b[7] = b'\n';
            assert_eq!(first_lf(u64::from_le_bytes(b)), Some(k as u32));
            let mut c = [0x0b_u8, 0x0a ^ 0x80, 0x09, 0x8a, 0x00, 0xff, 0x0e, 0x1a];
            assert_eq!(first_lf(u64::from_le_bytes(c)), None, "{c:?}");
            c[k] = b'\n';
            assert_eq!(first_lf(u64::from_le_bytes(c)), Some(k as u32), "{c:?}");
        }
    }

    fn scan(msg: &str) -> Scan {
        feed(msg.as_bytes()).0
    }

    /// An INVITE with `via` (one or more full header lines, no trailing CRLF) first.
    fn invite(via: &str) -> String {
        format!(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n{via}\r\n\
             Max-Forwards: 70\r\n\
             To: Bob <sip:bob@biloxi.example.com>\r\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
             Call-ID: {CALL_ID}\r\n\
             CSeq: 314159 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    fn h(s: &str) -> u64 {
        bytes(FNV_OFFSET, s.as_bytes())
    }

    fn ok(s: &Scan) {
        assert_eq!(s.found & found::VIA, found::VIA, "{s:?}");
        assert_eq!(s.found & found::VIA_DONE, found::VIA_DONE, "{s:?}");
        assert_eq!(s.found & found::MALFORMED, 0, "{s:?}");
    }

    fn malformed(s: &Scan) {
        assert_eq!(
            s.found & (found::VIA | found::VIA_DONE | found::MALFORMED),
            found::VIA | found::VIA_DONE | found::MALFORMED,
            "{s:?}"
        );
    }

    #[test]
    fn new_starts_from_fnv_offset() {
        let s = Scan::new();
        assert_eq!(s.state, FIRST_LINE);
        assert_eq!(s.branch_hash, FNV_OFFSET);
        assert_eq!(s.host_hash, FNV_OFFSET);
        assert_eq!(s.callid_hash, FNV_OFFSET);
        assert_eq!(s.v4_ok, 1);
        assert_eq!(s.found, 0);
        assert_eq!(s.flags, 0);
        assert_eq!(s.sent_by_v4(), None);
    }

    #[test]
    fn via_first_with_cookie_stops_after_the_via() {
        let msg = invite("Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK776asdhds");
        let (s, n) = feed(msg.as_bytes());
        // Stops on the first byte of the next header: nothing more is needed.
        let next = msg.find("Max-Forwards").unwrap();
        assert_eq!(n, next + 1);
        assert_eq!(s.state, DONE);
        assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
        assert_eq!(s.flags, flags::MAGIC_COOKIE);
        assert_eq!(s.port, 5060);
        assert_eq!(s.rport, 0);
        assert_eq!(s.host_len, 12);
        assert_eq!(s.branch_len, 16);
        assert_eq!(s.host_hash, h("203.0.113.10"));
        assert_eq!(s.branch_hash, h("z9hG4bK776asdhds"));
        assert_eq!(s.callid_hash, FNV_OFFSET);
        assert_eq!(s.sent_by_v4(), Some([203, 0, 113, 10]));
        assert_eq!(s.key(), h("z9hG4bK776asdhds"));
        assert_eq!(
            s.key(),
            transaction_key(b"z9hG4bK776asdhds", b"203.0.113.10", 5060, b"")
        );
    }

    #[test]
    fn status_line_response_is_scanned_too() {
        let msg = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKr;rport=41234;received=198.51.100.7\r\n\r\n";
        let s = scan(msg);
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::HEADERS_END
        );
        assert_eq!(
            s.flags,
            flags::MAGIC_COOKIE | flags::RPORT_VALUE | flags::RECEIVED
        );
        assert_eq!(s.rport, 41234);
        assert_eq!(s.port, 5060);
    }

    #[test]
    fn via_after_other_headers() {
        let msg = "REGISTER sip:registrar.example.com SIP/2.0\r\n\
                   To: <sip:alice@example.com>\r\n\
                   From: <sip:alice@example.com>;tag=456248\r\n\
                   Call-ID: 843817637684230@998sdasdh09\r\n\
                   CSeq: 1826 REGISTER\r\n\
                   Via: SIP/2.0/UDP 192.168.1.50:5070;branch=z9hG4bKnashds7\r\n\r\n";
        let s = scan(msg);
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
        );
        assert_eq!(s.flags, flags::MAGIC_COOKIE | flags::SENT_BY_PRIVATE);
        assert_eq!(s.port, 5070);
        assert_eq!(s.host_hash, h("192.168.1.50"));
        assert_eq!(s.callid_hash, h("843817637684230@998sdasdh09"));
        assert_eq!(s.sent_by_v4(), Some([192, 168, 1, 50]));
    }

    #[test]
    fn request_line_and_body_are_not_headers() {
        // "Via:" in the request line and in the body after the empty line are ignored.
        let msg = "MESSAGE sip:Via:x@example.com SIP/2.0\r\n\
                   Call-ID: c1\r\n\
                   Content-Length: 40\r\n\r\n\
                   Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbody\r\n";
        let (s, n) = feed(msg.as_bytes());
        assert_eq!(s.found, found::CALL_ID | found::HEADERS_END);
        assert_eq!(n, msg.find("\r\n\r\n").unwrap() + 4);
        assert_eq!(s.flags, 0);
        assert_eq!(s.host_len, 0);
    }

    #[test]
    fn compact_forms() {
        let msg = "BYE sip:bob@example.com SIP/2.0\r\n\
                   v: SIP/2.0/UDP 198.51.100.2:5062;branch=legacy1\r\n\
                   i: compact-call-id\r\n\r\n";
        let s = scan(msg);
        ok(&s);
        assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
        assert_eq!(s.flags, 0);
        assert_eq!(s.port, 5062);
        assert_eq!(s.branch_hash, h("legacy1"));
        assert_eq!(s.callid_hash, h("compact-call-id"));
        assert_eq!(
            s.key(),
            transaction_key(b"legacy1", b"198.51.100.2", 5062, b"compact-call-id")
        );
        // Uppercase compact forms too.
        let s2 = scan(&msg.replace("v:", "V:").replace("i:", "I:"));
        assert_eq!(s2, s);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let lower = scan(&invite("via: SIP/2.0/UDP 198.51.100.2:5060;branch=b1"));
        let upper = scan(
            &invite("VIA: SIP/2.0/UDP 198.51.100.2:5060;branch=b1").replace("Call-ID", "CALL-ID"),
        );
        let mixed = scan(
            &invite("vIA: SIP/2.0/UDP 198.51.100.2:5060;branch=b1").replace("Call-ID", "call-id"),
        );
        ok(&lower);
        assert_eq!(lower.found & found::CALL_ID, found::CALL_ID);
        assert_eq!(lower.port, 5060);
        assert_eq!(lower.callid_hash, h(CALL_ID));
        assert_eq!(upper, lower);
        assert_eq!(mixed, lower);
        // Parameter names too; values (the branch) are case-sensitive.
        let p = scan(&invite(
            "Via: SIP/2.0/UDP 198.51.100.2;RPort;BRANCH=z9hG4bKX;Received=1.2.3.4",
        ));
        assert_eq!(
            p.flags,
            flags::RPORT_EMPTY | flags::MAGIC_COOKIE | flags::RECEIVED
        );
        assert_eq!(p.branch_hash, h("z9hG4bKX"));
    }

    #[test]
    fn not_via_lookalike_names() {
        let msg = "INVITE sip:x SIP/2.0\r\n\
                   Viaduct: SIP/2.0/UDP 10.0.0.1:1;branch=z9hG4bKno\r\n\
                   X-Via: SIP/2.0/UDP 10.0.0.1:1;branch=z9hG4bKno\r\n\
                   Vi: SIP/2.0/UDP 10.0.0.1:1;branch=z9hG4bKno\r\n\
                   VeryLongHeaderNameVia: x\r\n\r\n";
        let s = scan(msg);
        assert_eq!(s.found, found::HEADERS_END);
        assert_eq!(s.flags, 0);
    }

    #[test]
    fn whitespace_everywhere_it_is_allowed() {
        let tight = scan(&invite(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKabc;received=1.2.3.4",
        ));
        let loose = scan(&invite(
            "Via \t : SIP / 2.0 /  UDP \t 10.0.0.1 : 5060 ; rport ; branch = z9hG4bKabc ;\treceived =  1.2.3.4 ",
        ));
        for s in [&tight, &loose] {
            assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
            assert_eq!(
                s.flags,
                flags::RPORT_EMPTY | flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE | flags::RECEIVED
            );
            assert_eq!(s.port, 5060);
            assert_eq!(s.rport, 0);
            assert_eq!(s.host_len, 8);
            assert_eq!(s.host_hash, h("10.0.0.1"));
            assert_eq!(s.branch_hash, h("z9hG4bKabc"));
            assert_eq!(s.sent_by_v4(), Some([10, 0, 0, 1]));
        }
        assert_eq!(tight.key(), loose.key());
        // No whitespace at all between the parts that may have it, and a value for rport.
        let s = scan(&invite(
            "Via:SIP/2.0/UDP 10.0.0.1:5060;rport = 7 ;branch=z9hG4bKabc",
        ));
        ok(&s);
        assert_eq!(s.rport, 7);
        assert_eq!(
            s.flags,
            flags::RPORT_VALUE | flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE
        );
    }

    #[test]
    fn folded_via() {
        let straight = scan(&invite(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKfold",
        ));
        for via in [
            "Via: SIP/2.0/UDP 10.0.0.1:5060\r\n ;rport\r\n\t;branch=z9hG4bKfold",
            "Via: SIP/2.0/UDP\r\n 10.0.0.1:5060;rport;branch=z9hG4bKfold",
            "Via:\r\n SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKfold",
            "Via: SIP/2.0/UDP 10.0.0.1\r\n :5060;rport;branch=z9hG4bKfold",
            "Via: SIP/2.0/UDP 10.0.0.1:5060;rport\r\n  ;  branch=z9hG4bKfold",
        ] {
            let s = scan(&invite(via));
            assert_eq!(
                s.found,
                found::VIA | found::VIA_DONE | found::BRANCH,
                "{via:?}"
            );
            assert_eq!(
                s.flags,
                flags::RPORT_EMPTY | flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE,
                "{via:?}"
            );
            assert_eq!(s.port, 5060, "{via:?}");
            assert_eq!(s.host_hash, h("10.0.0.1"), "{via:?}");
            assert_eq!(s.branch_hash, h("z9hG4bKfold"), "{via:?}");
            assert_eq!(s.key(), straight.key(), "{via:?}");
        }
    }

    #[test]
    fn folded_call_id_is_hashed_without_whitespace() {
        let msg = "INVITE sip:x SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 198.51.100.9:5060;branch=old\r\n\
                   Call-ID: abc\r\n def \r\n\r\n";
        let s = scan(msg);
        assert_eq!(s.callid_hash, h("abcdef"));
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
        );
        assert_eq!(
            s.key(),
            transaction_key(b"old", b"198.51.100.9", 5060, b"abc\r\n def ")
        );
    }

    #[test]
    fn only_the_first_value_on_the_line_counts() {
        let msg = invite(
            "Via: SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bKfirst, SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKsecond;rport=1",
        );
        let (s, n) = feed(msg.as_bytes());
        // Cookie branch: done at the comma.
        assert_eq!(n, msg.find(',').unwrap() + 1);
        assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
        assert_eq!(s.flags, flags::MAGIC_COOKIE);
        assert_eq!(s.port, 5070);
        assert_eq!(s.rport, 0);
        assert_eq!(s.host_hash, h("198.51.100.1"));
        assert_eq!(s.branch_hash, h("z9hG4bKfirst"));

        // Legacy branch: the rest of the line is skipped and the Call-ID still read.
        let s = scan(&invite(
            "Via: SIP/2.0/UDP 198.51.100.1:5070;branch=abc , SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKx;rport=1;received=q",
        ));
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID
        );
        assert_eq!(s.flags, 0);
        assert_eq!(s.port, 5070);
        assert_eq!(s.branch_hash, h("abc"));
        assert_eq!(
            s.key(),
            transaction_key(b"abc", b"198.51.100.1", 5070, CALL_ID.as_bytes())
        );

        // Comma right after the host or the port, or after a valueless parameter.
        for via in [
            "Via: SIP/2.0/UDP 198.51.100.1,SIP/2.0/UDP 10.0.0.2:1;rport",
            "Via: SIP/2.0/UDP 198.51.100.1 ,SIP/2.0/UDP 10.0.0.2:1;rport",
            "Via: SIP/2.0/UDP 198.51.100.1:5070,SIP/2.0/UDP 10.0.0.2:1;rport",
            "Via: SIP/2.0/UDP 198.51.100.1:5070;lr,SIP/2.0/UDP 10.0.0.2:1;rport",
        ] {
            let s = scan(&invite(via));
            ok(&s);
            assert_eq!(s.flags, 0, "{via:?}");
            assert_eq!(s.host_hash, h("198.51.100.1"), "{via:?}");
        }
    }

    #[test]
    fn second_via_header_is_ignored() {
        let msg = "INVITE sip:x SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 198.51.100.1:5070;branch=1\r\n\
                   Via: SIP/2.0/TCP 10.0.0.9:5999;rport=7;branch=z9hG4bKsecond;received=x\r\n\
                   v: SIP/2.0/UDP [fd00::1];rport\r\n\
                   Call-ID: id1\r\n\r\n";
        let s = scan(msg);
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
        );
        assert_eq!(s.flags, 0);
        assert_eq!(s.port, 5070);
        assert_eq!(s.rport, 0);
        assert_eq!(s.host_hash, h("198.51.100.1"));
        assert_eq!(s.branch_hash, h("1"));
        assert_eq!(s.sent_by_v4(), Some([198, 51, 100, 1]));
        assert_eq!(
            s.key(),
            transaction_key(b"1", b"198.51.100.1", 5070, b"id1")
        );
    }

    #[test]
    fn second_call_id_header_is_ignored() {
        let s = scan(
            "INVITE sip:x SIP/2.0\r\nCall-ID: one\r\nVia: SIP/2.0/UDP h;branch=x\r\ni: two\r\nCall-ID: three\r\n\r\n",
        );
        assert_eq!(s.callid_hash, h("one"));
    }

    #[test]
    fn no_via() {
        let msg = "OPTIONS sip:x@example.com SIP/2.0\r\nTo: <sip:x@example.com>\r\n\r\nbody";
        let (s, n) = feed(msg.as_bytes());
        assert_eq!(s.found, found::HEADERS_END);
        // Stops on the LF of the empty line.
        assert_eq!(n, msg.len() - 4);
        assert_eq!(n, 62);
        assert_eq!(s.state, DONE);
        assert_eq!(s.flags, 0);
        assert_eq!(s.sent_by_v4(), None);

        let s = scan("OPTIONS sip:x SIP/2.0\r\nCall-ID: q\r\n\r\n");
        assert_eq!(s.found, found::CALL_ID | found::HEADERS_END);

        // LF-only line ends work the same.
        let s = scan("OPTIONS sip:x SIP/2.0\nCall-ID: q\n\n");
        assert_eq!(s.found, found::CALL_ID | found::HEADERS_END);

        // Headers never end within the bytes: neither flag.
        let s = scan("OPTIONS sip:x SIP/2.0\r\nTo: <sip:x>\r\nFrom: <sip:y>");
        assert_eq!(s.found, 0);

        let s = scan("");
        assert_eq!(s.found, 0);
        assert_eq!(s, Scan::new());
    }

    #[test]
    fn lf_only_line_ends() {
        let s = scan(
            "INVITE sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=old\n ;rport=5\nCall-ID: c\n\n",
        );
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID | found::HEADERS_END
        );
        assert_eq!(s.flags, flags::SENT_BY_PRIVATE | flags::RPORT_VALUE);
        assert_eq!(s.rport, 5);
        assert_eq!(s.key(), transaction_key(b"old", b"10.0.0.1", 5060, b"c"));
    }

    fn via(params: &str) -> Scan {
        scan(&invite(&format!(
            "Via: SIP/2.0/UDP 198.51.100.1:5060{params}"
        )))
    }

    #[test]
    fn rport_absent_empty_value() {
        // (params, flags & RPORT_BITS, rport)
        let cases: &[(&str, u32, u32)] = &[
            (";branch=z9hG4bK1", 0, 0),
            (";branch=z9hG4bK1;rport", flags::RPORT_EMPTY, 0),
            (";rport;branch=z9hG4bK1", flags::RPORT_EMPTY, 0),
            (";rport", flags::RPORT_EMPTY, 0),
            (";rport ", flags::RPORT_EMPTY, 0),
            (";rport=", flags::RPORT_EMPTY, 0),
            (";rport=;branch=z9hG4bK1", flags::RPORT_EMPTY, 0),
            (";rport=1234", flags::RPORT_VALUE, 1234),
            (";rport=1234;branch=z9hG4bK1", flags::RPORT_VALUE, 1234),
            (";branch=z9hG4bK1;rport=1234", flags::RPORT_VALUE, 1234),
            (";rport = 1234 ;branch=z9hG4bK1", flags::RPORT_VALUE, 1234),
            (";rport=0", flags::RPORT_VALUE, 0),
            (";rport=65535", flags::RPORT_VALUE, 65535),
            (";rport=00080", flags::RPORT_VALUE, 80),
            // Present but unusable: treated as empty, value cleared.
            (";rport=65536", flags::RPORT_EMPTY, 0),
            (";rport=99999", flags::RPORT_EMPTY, 0),
            (";rport=123456", flags::RPORT_EMPTY, 0),
            (";rport=abc", flags::RPORT_EMPTY, 0),
            (";rport=12a", flags::RPORT_EMPTY, 0),
            // Not rport.
            (";rports=1", 0, 0),
            (";xrport", 0, 0),
        ];
        for &(params, want, rport) in cases {
            let s = via(params);
            ok(&s);
            assert_eq!(s.flags & RPORT_BITS, want, "{params:?}");
            assert_eq!(s.rport, rport, "{params:?}");
            assert_eq!(s.port, 5060, "{params:?}");
        }
    }

    #[test]
    fn received_present_or_not() {
        for (params, want) in [
            (";branch=z9hG4bK1", 0),
            (";received=203.0.113.5;branch=z9hG4bK1", flags::RECEIVED),
            (";branch=z9hG4bK1;received=203.0.113.5", flags::RECEIVED),
            (";received;branch=z9hG4bK1", flags::RECEIVED),
            (";branch=z9hG4bK1;received", flags::RECEIVED),
            (";received=", flags::RECEIVED),
            (";receive=1.2.3.4", 0),
            (";receivedx=1.2.3.4", 0),
        ] {
            let s = via(params);
            ok(&s);
            assert_eq!(s.flags & flags::RECEIVED, want, "{params:?}");
        }
    }

    #[test]
    fn magic_cookie_detection() {
        for (branch, cookie) in [
            ("z9hG4bK", true),
            ("z9hG4bK74bf9", true),
            ("z9hG4bK-d8754z-1", true),
            ("z9hG4b", false),
            ("z9hg4bK74bf9", false),
            ("Z9hG4bK74bf9", false),
            ("xz9hG4bK74bf9", false),
            ("74bf9", false),
            ("", false),
        ] {
            let s = via(&format!(";branch={branch}"));
            ok(&s);
            assert_eq!(s.found & found::BRANCH, found::BRANCH, "{branch:?}");
            assert_eq!(s.flags & flags::MAGIC_COOKIE != 0, cookie, "{branch:?}");
            assert_eq!(s.branch_hash, h(branch), "{branch:?}");
            assert_eq!(s.branch_len as usize, branch.len(), "{branch:?}");
        }
        // A branch without a value, and none at all.
        let s = via(";branch");
        assert_eq!(s.found & found::BRANCH, found::BRANCH);
        assert_eq!(s.branch_hash, FNV_OFFSET);
        let s = via(";lr");
        assert_eq!(s.found & found::BRANCH, 0);
        assert_eq!(s.branch_hash, FNV_OFFSET);
        assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
    }

    #[test]
    fn key_with_and_without_cookie() {
        let with_call_id = |via: &str, call_id: &str| scan(&invite(via).replace(CALL_ID, call_id));
        // Legacy branch: the Call-ID is part of the key.
        let legacy = "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=1234";
        let a = with_call_id(legacy, "call-a@host");
        let b = with_call_id(legacy, "call-b@host");
        assert_eq!(a.found & found::CALL_ID, found::CALL_ID);
        assert_eq!(a.flags & flags::MAGIC_COOKIE, 0);
        assert_ne!(a.callid_hash, b.callid_hash);
        assert_ne!(a.key(), b.key());
        assert_eq!(
            a.key(),
            transaction_key(b"1234", b"198.51.100.1", 5060, b"call-a@host")
        );
        assert_eq!(
            b.key(),
            transaction_key(b"1234", b"198.51.100.1", 5060, b"call-b@host")
        );
        // Same Call-ID, other sent-by host or port: other key.
        let c = with_call_id(
            "Via: SIP/2.0/UDP 198.51.100.2:5060;branch=1234",
            "call-a@host",
        );
        let d = with_call_id(
            "Via: SIP/2.0/UDP 198.51.100.1:5061;branch=1234",
            "call-a@host",
        );
        let e = with_call_id("Via: SIP/2.0/UDP 198.51.100.1;branch=1234", "call-a@host");
        assert_ne!(a.key(), c.key());
        assert_ne!(a.key(), d.key());
        assert_ne!(a.key(), e.key());

        // Cookie branch: the Call-ID (never even read) does not matter.
        let cookie = "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK1234";
        let a = with_call_id(cookie, "call-a@host");
        let b = with_call_id(cookie, "call-b@host");
        assert_eq!(a.found & found::CALL_ID, 0);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), h("z9hG4bK1234"));
        // Nor does the sent-by.
        let c = with_call_id(
            "Via: SIP/2.0/TCP [2001:db8::9]:7000;branch=z9hG4bK1234",
            "x",
        );
        assert_eq!(a.key(), c.key());
        // Call-ID before the Via, with a cookie: read anyway, key unchanged.
        let s = scan(
            "INVITE sip:x SIP/2.0\r\nCall-ID: early\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK1234\r\n\r\n",
        );
        assert_eq!(s.found & found::CALL_ID, found::CALL_ID);
        assert_eq!(s.key(), a.key());
    }

    #[test]
    fn key_matches_transaction_key() {
        // (Via line, branch, host, port, Call-ID line, Call-ID value)
        let cases: &[(&str, &str, &str, u16, &str, &str)] = &[
            (
                "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKa",
                "z9hG4bKa",
                "198.51.100.1",
                5060,
                "Call-ID: x",
                "x",
            ),
            (
                "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=legacy",
                "legacy",
                "198.51.100.1",
                5060,
                "Call-ID: x",
                "x",
            ),
            (
                "Via: SIP/2.0/UDP pbx.example.com;branch=legacy;rport",
                "legacy",
                "pbx.example.com",
                0,
                "i: 12@host",
                "12@host",
            ),
            (
                "v: SIP/2.0/TLS [2001:db8::1]:5062;received=1.2.3.4",
                "",
                "[2001:db8::1]",
                5062,
                "Call-ID:  spaced id \t",
                "spaced id",
            ),
            (
                "Via: SIP/2.0/UDP 10.0.0.1 : 5060 ; branch = old ; rport = 9",
                "old",
                "10.0.0.1",
                5060,
                "Call-ID: a\r\n b",
                "ab",
            ),
            (
                "Via: SIP/2.0/UDP h:1;branch=z9hG4bK",
                "z9hG4bK",
                "h",
                1,
                "Call-ID: c",
                "c",
            ),
        ];
        for &(via, branch, host, port, cid_line, cid) in cases {
            let msg = format!(
                "INVITE sip:x SIP/2.0\r\n{via}\r\nTo: <sip:x>\r\n{cid_line}\r\nCSeq: 1 INVITE\r\n\r\n"
            );
            let s = scan(&msg);
            ok(&s);
            assert_eq!(s.port, port as u32, "{via:?}");
            assert_eq!(s.host_hash, h(host), "{via:?}");
            assert_eq!(s.host_len as usize, host.len(), "{via:?}");
            assert_eq!(s.branch_hash, h(branch), "{via:?}");
            assert_eq!(
                s.key(),
                transaction_key(branch.as_bytes(), host.as_bytes(), port, cid.as_bytes()),
                "{via:?}"
            );
        }
    }

    #[test]
    fn sent_by_classification() {
        // (host, class flags, sent_by_v4)
        let cases: &[(&str, u32, Option<[u8; 4]>)] = &[
            ("203.0.113.7", 0, Some([203, 0, 113, 7])),
            ("8.8.8.8", 0, Some([8, 8, 8, 8])),
            ("0.0.0.0", 0, Some([0, 0, 0, 0])),
            ("255.255.255.255", 0, Some([255, 255, 255, 255])),
            ("10.0.0.1", flags::SENT_BY_PRIVATE, Some([10, 0, 0, 1])),
            (
                "10.255.255.254",
                flags::SENT_BY_PRIVATE,
                Some([10, 255, 255, 254]),
            ),
            ("11.0.0.1", 0, Some([11, 0, 0, 1])),
            ("9.255.255.255", 0, Some([9, 255, 255, 255])),
            ("172.16.0.1", flags::SENT_BY_PRIVATE, Some([172, 16, 0, 1])),
            (
                "172.31.255.255",
                flags::SENT_BY_PRIVATE,
                Some([172, 31, 255, 255]),
            ),
            ("172.15.0.1", 0, Some([172, 15, 0, 1])),
            ("172.32.0.1", 0, Some([172, 32, 0, 1])),
            (
                "192.168.0.1",
                flags::SENT_BY_PRIVATE,
                Some([192, 168, 0, 1]),
            ),
            (
                "192.168.255.255",
                flags::SENT_BY_PRIVATE,
                Some([192, 168, 255, 255]),
            ),
            ("192.169.0.1", 0, Some([192, 169, 0, 1])),
            ("192.167.0.1", 0, Some([192, 167, 0, 1])),
            ("100.64.0.1", flags::SENT_BY_CGNAT, Some([100, 64, 0, 1])),
            (
                "100.127.255.254",
                flags::SENT_BY_CGNAT,
                Some([100, 127, 255, 254]),
            ),
            ("100.63.255.255", 0, Some([100, 63, 255, 255])),
            ("100.128.0.1", 0, Some([100, 128, 0, 1])),
            ("pbx.example.com", flags::SENT_BY_NAME, None),
            ("localhost", flags::SENT_BY_NAME, None),
            ("1.2.3", flags::SENT_BY_NAME, None),
            ("1.2.3.4.5", flags::SENT_BY_NAME, None),
            ("256.1.1.1", flags::SENT_BY_NAME, None),
            ("1.2.3.1000", flags::SENT_BY_NAME, None),
            ("1..2.3", flags::SENT_BY_NAME, None),
            ("1.2.3.", flags::SENT_BY_NAME, None),
            (".1.2.3", flags::SENT_BY_NAME, None),
            ("10.0.0.1a", flags::SENT_BY_NAME, None),
            ("[2001:db8::1]", flags::SENT_BY_V6, None),
            ("[::1]", flags::SENT_BY_V6, None),
            ("[fe80::1]", flags::SENT_BY_V6, None),
            (
                "[fd00::1]",
                flags::SENT_BY_V6 | flags::SENT_BY_PRIVATE,
                None,
            ),
            (
                "[fc12:3456::1]",
                flags::SENT_BY_V6 | flags::SENT_BY_PRIVATE,
                None,
            ),
            (
                "[FD00::1]",
                flags::SENT_BY_V6 | flags::SENT_BY_PRIVATE,
                None,
            ),
            ("[f::1]", flags::SENT_BY_V6, None),
            ("[fe::1]", flags::SENT_BY_V6, None),
        ];
        for &(host, class, v4) in cases {
            for port in ["", ":5062"] {
                for end in [";branch=z9hG4bK1", "", " ;rport"] {
                    let via = format!("Via: SIP/2.0/UDP {host}{port}{end}");
                    let s = scan(&invite(&via));
                    ok(&s);
                    assert_eq!(s.flags & CLASS, class, "{via:?}");
                    assert_eq!(s.sent_by_v4(), v4, "{via:?}");
                    assert_eq!(s.host_len as usize, host.len(), "{via:?}");
                    assert_eq!(s.host_hash, h(host), "{via:?}");
                    assert_eq!(s.port, if port.is_empty() { 0 } else { 5062 }, "{via:?}");
                }
            }
        }
    }

    #[test]
    fn ipv6_sent_by_with_port() {
        let s = scan(&invite(
            "Via: SIP/2.0/UDP [2001:db8::1]:5062;rport;branch=z9hG4bKv6",
        ));
        assert_eq!(s.found, found::VIA | found::VIA_DONE | found::BRANCH);
        assert_eq!(
            s.flags,
            flags::SENT_BY_V6 | flags::RPORT_EMPTY | flags::MAGIC_COOKIE
        );
        assert_eq!(s.port, 5062);
        assert_eq!(s.host_len, 13);
        assert_eq!(s.host_hash, h("[2001:db8::1]"));
        assert_eq!(s.v4, 0);
        assert_eq!(s.sent_by_v4(), None);
        // Whitespace after the closing bracket.
        let t = scan(&invite(
            "Via: SIP/2.0/UDP [2001:db8::1] : 5062 ; rport ; branch=z9hG4bKv6",
        ));
        assert_eq!(t, s);
    }

    #[test]
    fn missing_port_is_zero() {
        for via in [
            "Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1 ;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1",
            "Via: SIP/2.0/UDP pbx.example.com",
            "Via: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [2001:db8::1]",
        ] {
            let s = scan(&invite(via));
            ok(&s);
            assert_eq!(s.port, 0, "{via:?}");
        }
        // A second ":port" after the port is junk.
        malformed(&via(":0;branch=z9hG4bK1"));
        let s = scan(&invite("Via: SIP/2.0/UDP 198.51.100.1:0;branch=z9hG4bK1"));
        ok(&s);
        assert_eq!(s.port, 0);
        let s = scan(&invite("Via: SIP/2.0/UDP 198.51.100.1:65535"));
        ok(&s);
        assert_eq!(s.port, 65535);
    }

    #[test]
    fn malformed_vias() {
        for via in [
            // Bad ports.
            "Via: SIP/2.0/UDP 198.51.100.1:99999;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1:65536;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1:123456;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1:abc;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1:50a0;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1:;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 198.51.100.1:",
            "Via: SIP/2.0/UDP 198.51.100.1: ",
            "Via: SIP/2.0/UDP [2001:db8::1]:x",
            // Empty host.
            "Via: SIP/2.0/UDP ;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP :5060;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP ,SIP/2.0/UDP 10.0.0.1",
            "Via: SIP/2.0/UDP",
            "Via: SIP/2.0/UDP   ",
            "Via: SIP/2.0/",
            "Via: SIP/2.0",
            "Via:",
            // Junk where a separator belongs.
            "Via: SIP/2.0;branch=z9hG4bK1",
            "Via: SIP/2.0,UDP 10.0.0.1",
            "Via: SIP/2.0/UDP 10.0.0.1 junk;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [2001:db8::1]x;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP 10.0.0.1:5060 junk",
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1 junk",
            "Via: SIP/2.0/UDP 10.0.0.1:5060;lr junk",
        ] {
            let s = scan(&invite(via));
            malformed(&s);
            if s.flags & flags::MAGIC_COOKIE == 0 {
                // Without a cookie seen first, the scan goes on for the Call-ID.
                assert_eq!(s.found & found::CALL_ID, found::CALL_ID, "{via:?}");
                assert_eq!(s.callid_hash, h(CALL_ID), "{via:?}");
            } else {
                assert_eq!(s.found & found::CALL_ID, 0, "{via:?}");
            }
        }
    }

    #[test]
    fn cut_off_values() {
        // The scanned bytes end inside the Via value (window end): incomplete, so malformed.
        for msg in [
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport",
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060",
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1",
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8",
            "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP",
            "INVITE sip:x SIP/2.0\r\nVia:",
        ] {
            let s = scan(msg);
            malformed(&s);
            assert_eq!(s.found & found::HEADERS_END, 0, "{msg:?}");
        }
        // Ending on the line break after the Via value: complete.
        let s = scan("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport=12\r\n");
        assert_eq!(s.found, found::VIA | found::VIA_DONE);
        assert_eq!(s.flags, flags::RPORT_VALUE | flags::SENT_BY_PRIVATE);
        assert_eq!(s.rport, 12);
        let s = scan("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n");
        assert_eq!(s.found, found::VIA | found::VIA_DONE);
        assert_eq!(s.sent_by_v4(), Some([10, 0, 0, 1]));
        // A Call-ID cut short counts as read (what was there is hashed).
        let s = scan("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=1\r\nCall-ID: abc");
        assert_eq!(
            s.found,
            found::VIA | found::VIA_DONE | found::BRANCH | found::CALL_ID
        );
        assert_eq!(s.callid_hash, h("abc"));
    }

    #[test]
    fn run_stops_at_the_scan_window() {
        let filler = "x".repeat(rport_common::SCAN_WINDOW as usize);
        let msg = format!(
            "INVITE sip:x SIP/2.0\r\nX-Pad: {filler}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\r\n"
        );
        let s = Scan::run(msg.as_bytes());
        assert_eq!(s.found, 0);
        // Fed everything, the Via is found.
        let (s, _) = feed(msg.as_bytes());
        ok(&s);
        assert_eq!(s.flags, flags::SENT_BY_PRIVATE | flags::MAGIC_COOKIE);
    }

    #[test]
    fn long_names_and_values() {
        // A parameter name longer than 8 bytes is not mistaken for a known one.
        let s = via(";branchbranch=z9hG4bK1;rportrport;receivedx");
        ok(&s);
        assert_eq!(s.flags, 0);
        assert_eq!(s.found & found::BRANCH, 0);
        // A long branch is hashed whole.
        let long = format!("z9hG4bK{}", "0123456789".repeat(30));
        let s = via(&format!(";branch={long}"));
        ok(&s);
        assert_eq!(s.branch_hash, h(&long));
        assert_eq!(s.branch_len as usize, long.len());
        assert_eq!(s.flags, flags::MAGIC_COOKIE);
        // A long host name (letters) too.
        let host = format!("{}.example.com", "a".repeat(200));
        let s = scan(&invite(&format!("Via: SIP/2.0/UDP {host}:5060")));
        ok(&s);
        assert_eq!(s.host_hash, h(&host));
        assert_eq!(s.host_len as usize, host.len());
        assert_eq!(s.flags, flags::SENT_BY_NAME);
    }

    /// Regression: the IPv4-literal octet accumulator used to overflow (a debug panic) on
    /// host names with 10 or more digits.
    #[test]
    fn digit_heavy_host_name_does_not_overflow() {
        for host in [
            "sip-gw-20240115-0001.example.net",
            "a1b2c3d4e5f6g7h8i9j0.invalid",
            "9999999999",
        ] {
            let s = scan(&invite(&format!("Via: SIP/2.0/UDP {host};branch=z9hG4bK1")));
            ok(&s);
            assert_eq!(s.flags, flags::SENT_BY_NAME | flags::MAGIC_COOKIE);
            assert_eq!(s.host_hash, h(host));
        }
    }

    fn invariants(s: &Scan, what: &dyn core::fmt::Debug) {
        if s.found & found::MALFORMED != 0 {
            assert_ne!(s.found & found::VIA_DONE, 0, "{what:?}");
        }
        if s.found & found::VIA == 0 {
            assert_eq!(s.flags, 0, "{what:?}");
            assert_eq!(s.host_len, 0, "{what:?}");
        }
        assert!(s.port <= 99_999, "{what:?}");
        assert!(s.rport <= 99_999, "{what:?}");
        if s.found & found::MALFORMED == 0 && s.state == DONE {
            if s.flags & flags::RPORT_VALUE == 0 {
                assert_eq!(s.rport, 0, "{what:?}");
            }
            assert!(s.port <= 65_535, "{what:?}");
        }
        if s.sent_by_v4().is_some() {
            assert_eq!(s.flags & (flags::SENT_BY_NAME | flags::SENT_BY_V6), 0);
            assert_ne!(s.host_len, 0);
        }
        let _ = s.key();
    }

    #[test]
    fn every_prefix_is_safe() {
        let samples = [
            invite(
                "Via: SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bK776asdhds;received=1.2.3.4",
            ),
            invite(
                "v : SIP / 2.0 / UDP [fd00::1] : 5062\r\n ; rport = 41 ; branch = legacy , SIP/2.0/UDP x",
            ),
            invite("Via: SIP/2.0/UDP 100.64.0.1:99999;branch=x"),
            "SIP/2.0 200 OK\nCall-ID: a\n b\nVIA: SIP/2.0/TCP pbx.example.com;branch=1\n\nbody"
                .to_string(),
        ];
        for msg in &samples {
            let m = msg.as_bytes();
            for len in 0..=m.len() {
                let (s, n) = feed(&m[..len]);
                assert!(n <= len);
                invariants(&s, &String::from_utf8_lossy(&m[..len]));
            }
        }
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    /// `count` pseudo-random messages: even ones any bytes, odd ones made of the bytes a Via
    /// is made of (so the deep states get visited); two thirds start inside a Via value.
    /// With `max_digits`, digits past that many in one message are replaced by `x`.
    fn sweep(seed: u64, count: usize, max_digits: Option<usize>) -> u32 {
        let mut r = XorShift(seed);
        let alphabet = b"Via:v SIP/2.0UDP;,=[]:\r\n\r\n \t\t0123456789.abcdefz9hG4bKrportreceivedbranchCall-IDi";
        let mut hits = 0u32;
        for i in 0..count {
            let len = (r.next() % 300) as usize;
            let mut m = Vec::with_capacity(len + 40);
            if i % 3 != 0 {
                m.extend_from_slice(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP ");
            }
            let mut digits = 0;
            for _ in 0..len {
                let x = r.next();
                let mut c = if i % 2 == 0 {
                    x as u8
                } else {
                    alphabet[(x % alphabet.len() as u64) as usize]
                };
                if c.is_ascii_digit() {
                    digits += 1;
                    if max_digits.is_some_and(|d| digits > d) {
                        c = b'x';
                    }
                }
                m.push(c);
            }
            let (s, _) = feed(&m);
            invariants(&s, &String::from_utf8_lossy(&m));
            if s.found & found::VIA != 0 {
                hits += 1;
            }
        }
        hits
    }

    #[test]
    fn random_bytes_do_not_panic() {
        // At most 9 digits per message: most messages reach a Via; the unrestricted sweep
        // is below.
        for seed in [0x9e37_79b9_7f4a_7c15, 1, 0xdead_beef] {
            let hits = sweep(seed, 4000, Some(9));
            // The prefixed two thirds all reach a Via.
            assert!(hits >= 2666, "{hits}");
        }
    }

    #[test]
    fn random_bytes_do_not_panic_unrestricted() {
        // Used to panic at message 61: host "f55eb0\r4/f02i0roDvr4UV94" (10 digits).
        sweep(0x9e37_79b9_7f4a_7c15, 6000, None);
    }

    #[test]
    fn unclosed_or_empty_ipv6_reference_is_malformed() {
        for via in [
            "Via: SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [2001:db8::1,SIP/2.0/UDP 192.0.2.1",
            "Via: SIP/2.0/UDP [];branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [2001:db8::1",
        ] {
            let s = scan(&invite(via));
            assert_eq!(s.found & found::MALFORMED, found::MALFORMED, "{via}: {s:?}");
        }
        let s = scan(&invite(
            "Via: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1",
        ));
        ok(&s);
        assert_eq!(s.port, 5062);
    }
}
