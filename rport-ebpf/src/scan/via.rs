//! The top Via value, one byte per step: the `via-value` rule of the grammar in the
//! module doc of [`super`], from the sent-protocol to the `,` or the end of the header.
//!
//! Each state accepts exactly the bytes the grammar allows there; any other byte makes
//! the Via malformed at once ([`Scan::malformed`]), and the rest of the header is skipped.
//! Whitespace reaches these states as SP/HTAB only: the driver turns a fold into the
//! SP/HTAB that follows its line break, and a bare CR into [`Scan::malformed`] (via
//! `bare_cr`, from [`State::CR`]).

use rport_common::{flags, hash};

use super::{POSITIONS, Scan, State, found, is_ws, lower, pack};

const P_BRANCH: u64 = pack(b"branch");
const P_RPORT: u64 = pack(b"rport");
const P_RECEIVED: u64 = pack(b"received");
pub(super) const P_TAG: u64 = pack(rport_common::tag::PARAM);
/// RFC 3261 magic cookie `z9hG4bK`, first byte in the low bits.
pub(super) const COOKIE_WORD: u64 = u64::from_le_bytes(*b"z9hG4bK\0");

// Kind of the parameter being read (`Scan::pkind`).
/// Any parameter whose value does not matter (received's included: only its presence does).
pub const PK_OTHER: u32 = 0;
pub const PK_BRANCH: u32 = 1;
pub const PK_RPORT: u32 = 2;
/// rport's steering tag (`rptag`): its value is kept (`Scan::tag`).
pub const PK_TAG: u32 = 3;

/// A set of ASCII bytes as two 64-bit masks (bytes 0-63 and 64-127; no byte from 128 up).
/// Testing a byte is a compare and a shift: no table, which in BPF would be a map value
/// read with a bounds check per byte.
#[derive(Clone, Copy)]
pub(super) struct Class {
    lo: u64,
    hi: u64,
}

impl Class {
    const fn of(s: &[u8]) -> Class {
        let mut c = Class { lo: 0, hi: 0 };
        let mut i = 0;
        while i < s.len() {
            c = c.with(s[i]);
            i += 1;
        }
        c
    }
    const fn range(a: u8, b: u8) -> Class {
        let mut c = Class { lo: 0, hi: 0 };
        let mut x = a;
        while x <= b {
            c = c.with(x);
            x += 1;
        }
        c
    }
    const fn with(self, b: u8) -> Class {
        if b < 64 {
            Class {
                lo: self.lo | 1 << b,
                hi: self.hi,
            }
        } else {
            Class {
                lo: self.lo,
                hi: self.hi | 1 << (b - 64),
            }
        }
    }
    const fn or(self, o: Class) -> Class {
        Class {
            lo: self.lo | o.lo,
            hi: self.hi | o.hi,
        }
    }
    #[inline(always)]
    pub(super) fn has(self, c: u8) -> bool {
        if c < 64 {
            (self.lo >> c) & 1 != 0
        } else if c < 128 {
            (self.hi >> (c - 64)) & 1 != 0
        } else {
            false
        }
    }
}

const DIGIT: Class = Class::range(b'0', b'9');
const ALNUM: Class = DIGIT
    .or(Class::range(b'a', b'z'))
    .or(Class::range(b'A', b'Z'));
/// `tchar`.
pub(super) const TOKEN: Class = ALNUM.or(Class::of(b"-.!%*_+`'~"));
/// A host name or IPv4 literal.
pub(super) const HOST: Class = ALNUM.or(Class::of(b"-."));
/// Inside the brackets of an IPv6 reference.
const HOST6: Class = DIGIT
    .or(Class::range(b'a', b'f'))
    .or(Class::range(b'A', b'F'))
    .or(Class::of(b":."));
/// An unquoted parameter value: a token or a host (IPv6 with or without brackets).
pub(super) const VALUE: Class = TOKEN.or(Class::of(b":[]"));
/// `qdtext` below 128 (SP and HTAB included; folds arrive as their SP/HTAB).
const QDTEXT: Class = Class::of(b" \t!")
    .or(Class::range(0x23, 0x5b))
    .or(Class::range(0x5d, 0x7e));

impl Scan {
    /// One byte of the top Via value.
    #[inline(always)]
    pub(super) fn via_byte(&mut self, c: u8) {
        // `is_ws(c)` where it is needed, not once up front: computed up front, the BPF
        // build spends five instructions per byte on a flag most bytes never read (a
        // token byte in a state that takes tokens): 7% of the Via scan of a REGISTER.
        // Every byte but whitespace and the `,` that ends the value is part of it (a `,` in
        // a quoted string is too, but its closing quote comes later).
        if POSITIONS && !is_ws(c) && c != b',' {
            self.via_end = self.fed;
        }
        match self.state {
            State::PROTO_WS => {
                if TOKEN.has(c) {
                    if POSITIONS && self.slashes == 0 {
                        self.via_start = self.fed - 1;
                    }
                    self.state = State::PROTO;
                } else if !is_ws(c) {
                    self.malformed();
                }
            }
            State::PROTO => {
                if c == b'/' {
                    self.slash();
                } else if is_ws(c) {
                    self.state = State::PROTO_SLASH;
                } else if !TOKEN.has(c) {
                    self.malformed();
                }
            }
            State::PROTO_SLASH => {
                if c == b'/' {
                    self.slash();
                } else if !is_ws(c) {
                    self.malformed();
                }
            }
            State::TRANSPORT_WS => {
                if TOKEN.has(c) {
                    self.state = State::TRANSPORT;
                } else if !is_ws(c) {
                    self.malformed();
                }
            }
            State::TRANSPORT => {
                if is_ws(c) {
                    self.state = State::HOST_WS;
                } else if !TOKEN.has(c) {
                    self.malformed();
                }
            }
            State::HOST_WS => {
                if c == b'[' {
                    self.flags |= flags::SENT_BY_V6;
                    self.host_byte(c);
                    self.state = State::HOST6;
                } else if HOST.has(c) {
                    self.host_byte(c);
                    self.state = State::HOST;
                } else if !is_ws(c) {
                    self.malformed();
                }
            }
            State::HOST => {
                if HOST.has(c) {
                    self.host_byte(c);
                } else {
                    self.host_end();
                    self.after_host(c, is_ws(c));
                }
            }
            State::HOST6 => {
                if HOST6.has(c) {
                    self.host_byte(c);
                } else if c == b']' && self.host_len > 1 {
                    self.host_byte(c);
                    self.host_end();
                    self.state = State::AFTER_HOST;
                } else {
                    // `[]`, or a byte no IPv6 reference holds (its `]` is missing).
                    self.malformed();
                }
            }
            State::AFTER_HOST => self.after_host(c, is_ws(c)),
            State::PORT_WS => {
                if DIGIT.has(c) {
                    self.port = (c - b'0') as u32;
                    self.digits = 1;
                    self.state = State::PORT;
                } else if !is_ws(c) {
                    self.malformed();
                }
            }
            State::PORT => {
                if DIGIT.has(c) {
                    self.port = self.port * 10 + (c - b'0') as u32;
                    self.digits += 1;
                    if self.digits > 5 || self.port > 65535 {
                        self.malformed();
                    }
                } else {
                    self.params(c, is_ws(c));
                }
            }
            State::PARAMS => self.params(c, is_ws(c)),
            State::PNAME_WS => {
                if TOKEN.has(c) {
                    self.name = lower(c) as u64;
                    self.name_len = 1;
                    self.state = State::PNAME;
                } else if !is_ws(c) {
                    // `;` with no name after it.
                    self.malformed();
                }
            }
            State::PNAME => {
                if TOKEN.has(c) {
                    if self.name_len < 8 {
                        self.name = (self.name << 8) | lower(c) as u64;
                        self.name_len += 1;
                    } else {
                        // Longer than any name we look for.
                        self.name = 0;
                        self.name_len = 9;
                    }
                } else {
                    self.pname_end(c, is_ws(c));
                    self.param_named();
                }
            }
            State::PNAME_END => self.pname_end(c, is_ws(c)),
            State::PVAL_WS => {
                if c == b'"' {
                    if self.pkind == PK_BRANCH {
                        self.malformed();
                    } else {
                        // Never a port.
                        self.digits = 6;
                        self.state = State::QUOTED;
                    }
                } else if VALUE.has(c) {
                    self.param_value_byte(c);
                    self.state = State::PVAL;
                } else if !is_ws(c) {
                    // `=` with no value after it.
                    self.malformed();
                }
            }
            State::PVAL => {
                if VALUE.has(c) {
                    self.param_value_byte(c);
                } else {
                    self.param_value_end();
                    self.params(c, is_ws(c));
                }
            }
            State::QUOTED => {
                if c == b'"' {
                    self.param_value_end();
                    self.state = State::PARAMS;
                } else if c == b'\\' {
                    self.state = State::QUOTED_ESC;
                } else if !(QDTEXT.has(c) || c >= 0x80) {
                    self.malformed();
                }
            }
            State::QUOTED_ESC => {
                // qchar: CR and LF never get here (bare CR is malformed, LF ends the line).
                if c < 0x80 {
                    self.state = State::QUOTED;
                } else {
                    self.malformed();
                }
            }
            _ => {}
        }
    }

    #[inline(always)]
    fn slash(&mut self) {
        self.slashes += 1;
        self.state = if self.slashes == 2 {
            State::TRANSPORT_WS
        } else {
            State::PROTO_WS
        };
    }

    /// After the host: whitespace, `:` port, `;` parameter, `,` next value.
    #[inline(always)]
    fn after_host(&mut self, c: u8, ws: bool) {
        if c == b':' {
            self.state = State::PORT_WS;
        } else if c == b';' {
            self.state = State::PNAME_WS;
        } else if c == b',' {
            self.via_done();
        } else if ws {
            self.state = State::AFTER_HOST;
        } else {
            self.malformed();
        }
    }

    /// After the port or a parameter: whitespace, `;` parameter, `,` next value.
    #[inline(always)]
    fn params(&mut self, c: u8, ws: bool) {
        if c == b';' {
            self.state = State::PNAME_WS;
        } else if c == b',' {
            self.via_done();
        } else if ws {
            self.state = State::PARAMS;
        } else {
            self.malformed();
        }
    }

    /// After a parameter name: whitespace, `=` value, `;` parameter, `,` next value.
    #[inline(always)]
    fn pname_end(&mut self, c: u8, ws: bool) {
        if c == b'=' {
            self.state = State::PVAL_WS;
        } else if c == b';' {
            self.state = State::PNAME_WS;
        } else if c == b',' {
            self.via_done();
        } else if ws {
            self.state = State::PNAME_END;
        } else {
            self.malformed();
        }
    }

    #[inline(always)]
    pub(super) fn host_byte(&mut self, c: u8) {
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

    /// The parameter name is complete: note a known one, refuse a second of it. Called
    /// after the state for the byte that ended the name is set (this may override it).
    #[inline(always)]
    fn param_named(&mut self) {
        let n = self.name;
        self.pkind = PK_OTHER;
        if n == P_BRANCH {
            if self.found & found::BRANCH != 0 {
                self.malformed();
            }
            self.found |= found::BRANCH;
            self.pkind = PK_BRANCH;
        } else if n == P_RPORT {
            if self.flags & (flags::RPORT_EMPTY | flags::RPORT_VALUE) != 0 {
                self.malformed();
            }
            // Empty unless a usable value follows (`param_value_end`).
            self.flags |= flags::RPORT_EMPTY;
            self.rport = 0;
            self.digits = 0;
            self.pkind = PK_RPORT;
        } else if n == P_RECEIVED {
            // Twice is not malformed: a server that adds its own `received` after ours
            // (Kamailio's replies do) sends exactly that back. The rewrite refuses a
            // request with two (`TopVia::received_twice`).
            self.flags |= flags::RECEIVED;
        } else if n == P_TAG {
            if self.found & found::TAG != 0 {
                self.malformed();
            }
            self.found |= found::TAG;
            // A request from inside keeps the Request-URI's tag (the one that decides it).
            if self.found & found::RURI_TAG == 0 {
                self.pkind = PK_TAG;
            }
        }
    }

    #[inline(always)]
    fn param_value_byte(&mut self, c: u8) {
        if self.pkind == PK_BRANCH {
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
        } else if self.pkind == PK_TAG {
            self.tag_byte(c);
        } else if self.pkind == PK_RPORT {
            if c.is_ascii_digit() && self.digits < 5 {
                self.rport = self.rport * 10 + (c - b'0') as u32;
                self.digits += 1;
            } else {
                self.digits = 6; // not a port: present but unusable
            }
        }
    }

    /// Appends `c` to [`Scan::tag`]: byte `tag_len` of the words, little-endian; a compare
    /// per word rather than an index (see `param_value_byte` on why state fields do not
    /// index arrays). Past 64 bytes only the length grows (too long: not a tag).
    #[inline(always)]
    pub(super) fn tag_byte(&mut self, c: u8) {
        let i = self.tag_len;
        if i < 64 {
            let v = (c as u64) << ((i & 7) * 8);
            let w = i >> 3;
            let mut k = 0;
            while k < 8 {
                if w == k as u32 {
                    self.tag[k] |= v;
                }
                k += 1;
            }
        }
        self.tag_len += 1;
    }

    #[inline(always)]
    fn param_value_end(&mut self) {
        if self.pkind == PK_BRANCH {
            if self.cookie == 7 {
                self.flags |= flags::MAGIC_COOKIE;
            }
        } else if self.pkind == PK_RPORT {
            if self.digits > 0 && self.digits <= 5 && self.rport <= 65535 {
                self.flags = (self.flags & !flags::RPORT_EMPTY) | flags::RPORT_VALUE;
            } else {
                self.rport = 0;
            }
        }
        self.pkind = PK_OTHER;
    }

    /// The first Via value ended at a comma: skip the rest of the line (other values).
    #[inline(always)]
    fn via_done(&mut self) {
        self.found |= found::VIA_DONE;
        self.state = State::SKIP_LINE;
    }

    #[inline(always)]
    pub(super) fn malformed(&mut self) {
        self.found |= found::MALFORMED | found::VIA_DONE;
        self.state = State::SKIP_LINE;
    }

    /// The header ended (a line break not followed by SP/HTAB) in a Via state: the value
    /// is complete if the grammar allows it to end here, else malformed.
    #[inline(always)]
    pub(super) fn via_value_cut(&mut self) {
        match self.state {
            State::HOST => {
                self.host_end();
                self.found |= found::VIA_DONE;
            }
            State::PNAME => {
                self.found |= found::VIA_DONE;
                self.param_named();
            }
            State::PVAL => {
                self.param_value_end();
                self.found |= found::VIA_DONE;
            }
            State::PORT | State::AFTER_HOST | State::PARAMS | State::PNAME_END => {
                self.found |= found::VIA_DONE;
            }
            // Before the host is complete, in `[…]`, after `:`, `;` or `=`, in quotes.
            _ => self.malformed(),
        }
    }
}
