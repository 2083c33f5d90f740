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
                self.host_byte(c);
                if c == b']' {
                    self.host_end();
                    self.state = V_AFTER_HOST;
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
            self.v4_octet = self.v4_octet * 10 + (c - b'0') as u32;
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
            V_HOST | V_HOST6 => {
                self.host_end();
                self.found |= found::VIA_DONE;
            }
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
