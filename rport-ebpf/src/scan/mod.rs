//! The top-Via scanner: a byte-at-a-time state machine over the SIP headers.
//!
//! Why a state machine fed one byte per step: the XDP side drives it from `bpf_loop`, whose
//! callback the verifier checks once, whatever the number of iterations. A plain loop with
//! this much branching would be unrolled state by state and blow the 1M-instruction limit.
//! Everything the step needs lives in [`Scan`], which the XDP program keeps in its per-CPU
//! `SCRATCH` map value, not on the stack (why: the comment on `Work` in main.rs). Nothing
//! after the loop may use an offset it produced to touch the packet: the results are flags,
//! numbers and hashes only.
//!
//! The files: this one is the driver (lines, header names, folds, the Call-ID, [`Scan`]
//! and its runs), `via.rs` the Via value grammar, `swar.rs` the word-at-a-time paths over
//! the lines the scanner skips, `run.rs` the runs of one character class inside a value
//! (taken without a step per byte), `tests.rs` the host tests.
//!
//! # The grammar
//!
//! One grammar, implemented twice: here, and in userspace by the rewrite's parser
//! (rport-userspace/src/sip/{headers,via}.rs). The differential property test
//! rport-userspace/tests/via_grammar.rs feeds both the same generated messages and
//! compares every field below. Where this text and an implementation disagree, the
//! implementation is wrong.
//!
//! **Lines.** A line ends at LF. A CR right before an LF belongs to that line break; any
//! other (bare) CR is an ordinary byte of no character class below: in a Via value it is
//! malformed, in a header name it makes the name match nothing, in a Call-ID it is skipped
//! (as the transaction key skips CR).
//!
//! **Headers.** The first line (request or status line) is skipped, except in a request
//! from inside ([`look::RURI_TAG`]): there the Request-URI's first `rptag` parameter is
//! read (see `ruri.rs`). Header lines follow,
//! up to the first empty line (LF or CR LF alone). A line that starts with SP or HTAB
//! continues the header before it (a fold): a header's value is the rest of its line after
//! the colon plus its folded lines. A header's name is what its line holds before the
//! first `:`, trailing SP/HTAB removed, compared ASCII-case-insensitively: `via` or `v` is
//! a Via, `call-id` or `i` the Call-ID. Only the first of each counts. A `contact` or `m` header is
//! only noted ([`found::CONTACT`]), when the glue asks for it ([`look`]).
//!
//! **The top Via** is the first value of the first Via header (after RFC 3261 §25.1 and
//! RFC 3581 §3, ABNF):
//!
//! ```text
//! via-value     = SWS sent-protocol LWS sent-by *( SWS ";" SWS param ) SWS
//!                 ( "," *OCTET / <end of the header value> )  ; later values: not read
//! sent-protocol = token SWS "/" SWS token SWS "/" SWS token
//! sent-by       = host [ SWS ":" SWS port ]
//! host          = "[" 1*( HEXDIG / ":" / "." ) "]"          ; IPv6 reference
//!               / 1*( ALPHA / DIGIT / "-" / "." )            ; IPv4 literal or name
//! port          = 1*5DIGIT                                  ; at most 65535
//! param         = token [ SWS "=" SWS value ]
//! value         = 1*( tchar / ":" / "[" / "]" ) / quoted-string
//! quoted-string = DQUOTE *( qdtext / "\" qchar ) DQUOTE
//! qdtext        = SP / HTAB / fold / %x21 / %x23-5B / %x5D-7E / %x80-FF
//! qchar         = %x00-09 / %x0B-0C / %x0E-7F
//! token         = 1*tchar
//! tchar         = ALPHA / DIGIT / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
//! LWS           = 1*( SP / HTAB / fold )    ; fold = [CR] LF, then SP or HTAB
//! SWS           = [ LWS ]
//! ```
//!
//! Anything else is a *malformed* top Via, and so is a header value (or, on the XDP side,
//! the scanned bytes) that ends before the via-value does: inside the sent-protocol, before
//! or inside the host, right after `:`, `;` or `=`, inside a quoted string. A malformed top
//! Via is never edited: the XDP program counts it (`malformed_via`) and passes the packet,
//! the rewrite refuses it and the daemon forwards the request unchanged.
//!
//! What the parts mean:
//! - the value *ends* after its last parameter (or the sent-by), whitespace excluded: the
//!   rewrite appends there;
//! - host: an IPv4 literal when it is four groups of 1 to 3 digits, each at most 255 (leading
//!   zeros allowed, read as decimal), separated by dots; a name otherwise, unless
//!   bracketed (IPv6). Labels are not checked against RFC 1035: a host like `-.1` is a
//!   name, which only means it is never "the source" (received is added). Private: 10/8,
//!   172.16/12, 192.168/16, and `[fc`/`[fd` (RFC 4193). Carrier-grade NAT: 100.64/10;
//! - port: 0 in the transaction key when absent;
//! - parameter names are ASCII-case-insensitive. `branch`, `rport` and `received` may each
//!   appear once: a second one is malformed (which one would the server read?);
//! - branch: its value's bytes (none: empty) go into the key; it starts with the RFC 3261
//!   magic cookie `z9hG4bK` or not. A quoted branch is malformed (RFC 3261 via-branch is a
//!   token, and a quoted one could hold a fold the two sides would hash differently);
//! - rport: without a value, *empty* (the client asks for RFC 3581); a value of 1 to 5
//!   digits, at most 65535: that port; any other value counts as empty (present but
//!   unusable: the rewrite fills it in);
//! - received: present, whatever its value;
//! - Call-ID: its value's bytes, SP, HTAB, CR and LF skipped.
//!
//! The XDP side reads at most [`rport_common::SCAN_WINDOW`] bytes: a Via that starts beyond
//! them is not found, one cut by them is malformed, a Call-ID beyond them is not read.

use rport_common::{flags, hash};

#[cfg(not(target_arch = "bpf"))]
mod check;
mod run;
mod ruri;
mod swar;
#[cfg(test)]
mod tests;
mod via;

pub use swar::first_lf;

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
const N_CONTACT: u64 = pack(b"contact");
const N_M: u64 = pack(b"m");

/// What a scan looks for besides the top Via and the Call-ID ([`Scan::with`]), chosen by
/// the glue from the message's kind and the interface's role before the scan
/// (`decide::look`). Only what decides the frame is read: a scan stops as early as the
/// decision allows.
pub mod look {
    /// The top Via and the Call-ID only (a response from inside: steering).
    pub const VIA: u32 = 0;
    /// Also whether a Contact header is present, unless the top Via already sends the
    /// request to the daemon (`rport` or `rptag` in it): a request from outside. The
    /// daemon puts the client's tag into Contacts and removes any a client brought, so a
    /// request with a Contact must reach it even when its Via needs nothing.
    pub const CONTACT_UNLESS_REWRITE: u32 = 1;
    /// Also whether a Contact header is present: a response from outside (a client's
    /// 1xx/2xx to a server's request), which goes to the daemon only for its Contact.
    pub const CONTACT: u32 = 2;
    /// Also the Request-URI's `rptag` ([`super::found::RURI_TAG`]): a request from inside,
    /// which is steered to the client by the tag rport put in the client's Contact.
    pub const RURI_TAG: u32 = 3;
}

/// A scanner state. A plain `u32` in memory (`#[repr(transparent)]`): the XDP program
/// keeps [`Scan`] in a per-CPU map value, and a `u32` loaded from there is a scalar the
/// verifier does not track, so the `bpf_loop` callback verifies once for every state.
/// The named constants below are the only values; matching on them compiles to the same
/// compare-and-branch sequence as matching on bare integers.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct State(pub u32);

impl State {
    // Outside any header value (`line_byte`); the two skipping ones take the word paths.
    /// The request or status line: skipped up to its LF.
    pub const FIRST_LINE: State = State(0);
    /// At the first byte of a header line.
    pub const LINE_START: State = State(1);
    /// Reading a header name.
    pub const NAME: State = State(2);
    /// Whitespace after a header name: only a `:` may follow.
    pub const NAME_WS: State = State(3);
    /// A header (or the rest of a Via line) the scanner does not read: skipped up to LF.
    pub const SKIP_LINE: State = State(4);

    // The top Via value (via.rs), in the order of the grammar.
    /// Before a sent-protocol token (after the colon or a `/`).
    pub const PROTO_WS: State = State(5);
    /// In the protocol name or version.
    pub const PROTO: State = State(6);
    /// Whitespace after the protocol name or version: a `/` is due.
    pub const PROTO_SLASH: State = State(7);
    /// After the second `/`, before the transport.
    pub const TRANSPORT_WS: State = State(8);
    /// In the transport.
    pub const TRANSPORT: State = State(9);
    /// The whitespace between the transport and the sent-by host.
    pub const HOST_WS: State = State(10);
    /// In a host name or IPv4 literal.
    pub const HOST: State = State(11);
    /// Inside the brackets of an IPv6 reference.
    pub const HOST6: State = State(12);
    /// After the host: `:` port, `;` parameter, `,` or the end.
    pub const AFTER_HOST: State = State(13);
    /// After the port's `:`.
    pub const PORT_WS: State = State(14);
    /// In the port.
    pub const PORT: State = State(15);
    /// After the port or a parameter: `;`, `,` or the end.
    pub const PARAMS: State = State(16);
    /// After a `;`: a parameter name is due.
    pub const PNAME_WS: State = State(17);
    /// In a parameter name.
    pub const PNAME: State = State(18);
    /// Whitespace after a parameter name: `=`, `;`, `,` or the end.
    pub const PNAME_END: State = State(19);
    /// After a `=`: a value is due.
    pub const PVAL_WS: State = State(20);
    /// In an unquoted parameter value.
    pub const PVAL: State = State(21);
    /// Inside a quoted-string parameter value.
    pub const QUOTED: State = State(22);
    /// Right after a backslash inside a quoted string.
    pub const QUOTED_ESC: State = State(23);

    // The Call-ID value.
    /// Before the first byte of the Call-ID.
    pub const CALLID_WS: State = State(24);
    /// In the Call-ID.
    pub const CALLID: State = State(25);

    /// Right after an LF inside a header value: a fold if SP/HTAB follows, else the end
    /// of the header ([`Scan::saved`] holds the state to resume or to end).
    pub const FOLD: State = State(26);
    /// Right after a CR outside a skipped line: an LF next makes it a line break, any
    /// other byte a bare CR ([`Scan::before_cr`] holds the state the CR came in).
    pub const CR: State = State(27);
    /// Nothing more to learn: stop the loop.
    pub const DONE: State = State(28);

    // The Request-URI of a request from inside (ruri.rs): after DONE, so that the states
    // above keep their numbers and their range tests.
    /// In the request line, looking for a `;`.
    pub const RURI: State = State(29);
    /// After a `;` of the request line: a URI parameter name.
    pub const RURI_PNAME: State = State(30);
    /// In the value of the Request-URI's `rptag` parameter.
    pub const RURI_TAG: State = State(31);

    /// A state of the top Via value.
    #[inline(always)]
    pub fn in_via(self) -> bool {
        self.0 >= State::PROTO_WS.0 && self.0 <= State::QUOTED_ESC.0
    }

    /// A state of the request line's Request-URI (ruri.rs).
    #[inline(always)]
    pub fn in_ruri(self) -> bool {
        self.0 >= State::RURI.0
    }

    /// The state's name (test failures, logs).
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 32] = [
            "FIRST_LINE",
            "LINE_START",
            "NAME",
            "NAME_WS",
            "SKIP_LINE",
            "PROTO_WS",
            "PROTO",
            "PROTO_SLASH",
            "TRANSPORT_WS",
            "TRANSPORT",
            "HOST_WS",
            "HOST",
            "HOST6",
            "AFTER_HOST",
            "PORT_WS",
            "PORT",
            "PARAMS",
            "PNAME_WS",
            "PNAME",
            "PNAME_END",
            "PVAL_WS",
            "PVAL",
            "QUOTED",
            "QUOTED_ESC",
            "CALLID_WS",
            "CALLID",
            "FOLD",
            "CR",
            "DONE",
            "RURI",
            "RURI_PNAME",
            "RURI_TAG",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("?")
    }
}

impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

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
    /// The top Via does not follow the grammar (see the module doc).
    pub const MALFORMED: u32 = 16;
    /// The Via value has a branch parameter.
    pub const BRANCH: u32 = 32;
    /// The top Via has an `rptag` parameter (rport's steering tag, `rport_common::tag`):
    /// its value is in [`super::Scan::tag`].
    pub const TAG: u32 = 64;
    /// A Contact header was seen (asked for by [`super::look`] only).
    pub const CONTACT: u32 = 128;
    /// The Request-URI has an `rptag` parameter ([`super::look::RURI_TAG`] only): its
    /// value is in [`super::Scan::tag`], and a Via `rptag` does not overwrite it.
    pub const RURI_TAG: u32 = 256;
}

/// Scanner state and results. `#[repr(C)]`, integers only: it lives in the XDP program's
/// per-CPU map value (`Work` in main.rs), where the verifier treats every field as an
/// unknown scalar.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub state: State,
    /// State to resume if a line break turns out to be a fold (LF + SP/HTAB).
    pub saved: State,
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
    /// Kind of the parameter whose name or value is being read (`via::PK_*`).
    pub pkind: u32,
    /// Bytes of the magic cookie matched at the start of the branch.
    pub cookie: u32,
    /// Digits of a port or rport value read so far.
    pub digits: u32,
    /// State a CR came in (while the state is [`State::CR`]).
    pub before_cr: State,
    /// Bytes consumed so far (the offset of the next byte).
    pub fed: u32,
    /// Offset of the top Via value's first byte and one past its last (whitespace
    /// excluded): where the rewrite would append. Results for the host tests, which
    /// compare them with the userspace parser's. These three are kept up to date on host
    /// builds only ([`POSITIONS`]); in the XDP program they stay 0.
    pub via_start: u32,
    pub via_end: u32,
    /// The `rptag` value's first 64 bytes, little-endian in words (the layout of
    /// `rport_common::tag::TagText`), and its length in bytes (more than 64: not a tag).
    pub tag: [u64; 8],
    pub tag_len: u32,
    /// What else the scan looks for: a [`look`] value.
    pub look: u32,
}

/// Whether [`Scan::fed`], [`Scan::via_start`] and [`Scan::via_end`] are kept: not in the
/// XDP program, which never reads them. There every field update is a map-value store
/// on the per-byte path, and these cost about 7% of the scan time of a REGISTER (measured
/// interleaved through BPF_PROG_TEST_RUN). Every decision and every other field is the
/// same code on both targets, and the layout is the same.
pub const POSITIONS: bool = cfg!(not(target_arch = "bpf"));

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

    /// A scanner for a message of which the glue needs more than the top Via: `look`, a
    /// [`look`] value (`Scan::new()` is `Scan::with(look::VIA)`).
    #[inline(always)]
    pub fn with(look: u32) -> Self {
        let mut s = Scan::new();
        s.look_for(look);
        s
    }

    /// Makes a fresh scanner (`Scan::new()`) a [`Scan::with`]`(look)`. A method on the
    /// value in place because the XDP program's lives in map memory (reset there word by
    /// word, `verifier::reset` in main.rs): a whole `Scan` made with a run-time field
    /// would be built on the stack first (200 bytes of the 512 the program has).
    #[inline(always)]
    pub fn look_for(&mut self, look: u32) {
        self.look = look;
        if look == look::RURI_TAG {
            self.state = State::RURI;
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
    /// is an RFC 3261 one (the key needs nothing else) or the Call-ID was read too; and,
    /// when the glue asked for a Contact ([`look`]), one was seen or the Via already
    /// decides (a request the daemon rewrites anyway).
    #[inline(always)]
    fn complete(&self) -> bool {
        self.found & found::VIA_DONE != 0
            && (self.flags & flags::MAGIC_COOKIE != 0 || self.found & found::CALL_ID != 0)
            && (self.look == look::VIA
                || self.look == look::RURI_TAG
                || self.found & found::CONTACT != 0
                || (self.look == look::CONTACT_UNLESS_REWRITE
                    && (self.flags & (flags::RPORT_EMPTY | flags::RPORT_VALUE) != 0
                        || self.found & found::TAG != 0)))
    }

    /// Feeds one byte. Returns false when the scan is over.
    #[inline(always)]
    pub fn step(&mut self, c: u8) -> bool {
        if POSITIONS {
            self.fed += 1;
        }
        let mut st = self.state;
        // Most stepped bytes are inside the top Via value: one range check and two byte
        // compares take them straight to the Via grammar, where the full sequence below
        // would test CR, FOLD, the line states and the Call-ID first (none of which is a
        // Via state, so the result is the same).
        if st.in_via() && c != b'\r' && c != b'\n' {
            self.via_byte(c);
            if self.state == State::SKIP_LINE && self.complete() {
                self.state = State::DONE;
            }
            return self.state != State::DONE;
        }
        if st == State::CR {
            // The CR before `c` came in `before_cr`: a line break if `c` is LF.
            self.state = self.before_cr;
            if c != b'\n' {
                self.bare_cr();
                if self.state == State::DONE {
                    return false;
                }
            }
            st = self.state;
        }
        if c == b'\r' {
            // A skipped line ignores a bare CR and ends at the LF all the same; elsewhere
            // the next byte decides. A state, not a flag: no per-byte cost when no CR came.
            if st != State::SKIP_LINE && st != State::FIRST_LINE {
                self.before_cr = st;
                self.state = State::CR;
            }
            return true;
        }
        if c == b'\n' {
            return self.line_feed(st);
        }
        if st == State::FOLD {
            self.state = self.saved;
            if is_ws(c) {
                return self.value_byte(c);
            }
            // The header ended; `c` starts the next one.
            self.end_header_value();
            if self.complete() {
                self.state = State::DONE;
                return false;
            }
            self.state = State::LINE_START;
            return self.line_byte(c);
        }
        if st.0 <= State::SKIP_LINE.0 {
            return self.line_byte(c);
        }
        self.value_byte(c)
    }

    /// An LF (the CR before it, if any, already taken): a line ends.
    #[inline(always)]
    fn line_feed(&mut self, st: State) -> bool {
        if st.0 <= State::SKIP_LINE.0 && st != State::LINE_START {
            self.state = State::LINE_START;
        } else if st.in_ruri() {
            // The request line ended (no CR before the LF).
            self.ruri_end();
            self.state = State::LINE_START;
        } else if st == State::LINE_START {
            // Empty line: end of the headers.
            self.found |= found::HEADERS_END;
            self.state = State::DONE;
        } else if st == State::FOLD {
            // A second line break: the header ended, and so did the headers.
            self.state = self.saved;
            self.end_header_value();
            self.found |= found::HEADERS_END;
            self.state = State::DONE;
        } else if st == State::QUOTED_ESC {
            // An escaped line break: no qchar. The line ended all the same.
            self.malformed();
            self.state = if self.complete() {
                State::DONE
            } else {
                State::LINE_START
            };
        } else {
            // Inside a Via or Call-ID value: a fold or the end of the header.
            self.saved = st;
            self.state = State::FOLD;
        }
        self.state != State::DONE
    }

    /// The byte after a CR was not an LF: that CR was a bare one, in the current state.
    #[inline(always)]
    fn bare_cr(&mut self) {
        let st = self.state;
        if st == State::FOLD {
            // The header ended (no SP/HTAB); the CR starts a line no name can match.
            self.state = self.saved;
            self.end_header_value();
            self.state = State::SKIP_LINE;
        } else if st == State::LINE_START || st == State::NAME || st == State::NAME_WS {
            // A header name with a CR in it: not one the scanner reads.
            self.state = State::SKIP_LINE;
        } else if st.in_via() {
            self.malformed();
        } else if st.in_ruri() {
            // Ends the Request-URI parameter being read; the rest of the line is skipped.
            self.ruri_end();
        }
        // FIRST_LINE, SKIP_LINE: ignored. CALLID_WS, CALLID: skipped, as the key skips CR.
        if self.state == State::SKIP_LINE && self.complete() {
            self.state = State::DONE;
        }
    }

    /// Bytes outside a Via or Call-ID value: the request line, header names, other headers.
    #[inline(always)]
    fn line_byte(&mut self, c: u8) -> bool {
        match self.state {
            State::LINE_START => {
                if is_ws(c) {
                    // Continuation of a header we skip.
                    self.state = State::SKIP_LINE;
                } else {
                    self.name = lower(c) as u64;
                    self.name_len = 1;
                    self.state = State::NAME;
                }
            }
            State::NAME => {
                if c == b':' {
                    self.header_colon();
                } else if is_ws(c) {
                    self.state = State::NAME_WS;
                } else if self.name_len < 8 {
                    self.name = (self.name << 8) | lower(c) as u64;
                    self.name_len += 1;
                } else {
                    // Longer than any name we look for.
                    self.name = 0;
                    self.state = State::SKIP_LINE;
                }
            }
            State::NAME_WS => {
                if c == b':' {
                    self.header_colon();
                } else if !is_ws(c) {
                    self.state = State::SKIP_LINE;
                }
            }
            _ => {} // FIRST_LINE, SKIP_LINE: wait for LF.
        }
        self.state != State::DONE
    }

    #[inline(always)]
    fn header_colon(&mut self) {
        let (n, l) = (self.name, self.name_len);
        // The length too: a name byte 0 would pack to the same number as no byte.
        let via = (n == N_VIA && l == 3) || (n == N_V && l == 1);
        let call_id = (n == N_CALL_ID && l == 7) || (n == N_I && l == 1);
        if via && self.found & found::VIA == 0 {
            self.found |= found::VIA;
            self.slashes = 0;
            self.state = State::PROTO_WS;
        } else if call_id && self.found & found::CALL_ID == 0 {
            self.state = State::CALLID_WS;
        } else {
            let contact = (n == N_CONTACT && l == 7) || (n == N_M && l == 1);
            self.state = State::SKIP_LINE;
            if contact && self.look != look::VIA {
                self.found |= found::CONTACT;
                if self.complete() {
                    self.state = State::DONE;
                }
            }
        }
    }

    /// Bytes of a Via or Call-ID value.
    #[inline(always)]
    fn value_byte(&mut self, c: u8) -> bool {
        let st = self.state;
        if st.in_ruri() {
            self.ruri_byte(c);
            return true;
        }
        if st == State::CALLID_WS || st == State::CALLID {
            // Call-ID is a single word; whitespace is only ever around it or in folds.
            if !is_ws(c) {
                self.callid_hash = hash::step(self.callid_hash, c);
                self.state = State::CALLID;
            }
        } else {
            self.via_byte(c);
            if self.state == State::SKIP_LINE && self.complete() {
                self.state = State::DONE;
            }
        }
        self.state != State::DONE
    }

    /// The header whose value was being read ended (line break not followed by SP/HTAB).
    #[inline(always)]
    fn end_header_value(&mut self) {
        let st = self.state;
        if st == State::CALLID_WS || st == State::CALLID {
            self.found |= found::CALL_ID;
        } else if st.in_via() {
            self.via_value_cut();
        }
    }

    /// Call at the end of the scanned bytes (packet or window end) to close a value cut short.
    pub fn finish(&mut self) {
        // A CR as the very last byte: no line break follows it, but the value it would be
        // in is cut off anyway.
        if self.state == State::CR {
            self.state = self.before_cr;
        }
        let st = self.state;
        if st == State::FOLD {
            self.state = self.saved;
            self.end_header_value();
        } else if st.in_via() {
            // Cut off mid-value: the Via is incomplete.
            self.malformed();
        } else if st == State::CALLID_WS || st == State::CALLID {
            // A Call-ID cut short counts as read (what was there is hashed).
            self.found |= found::CALL_ID;
        } else if st.in_ruri() {
            self.ruri_end();
        }
    }

    /// True in the states that ignore everything up to the next LF (the start line, a
    /// header rport does not read, the rest of a Via line after its first value). There the
    /// driver may hand over 8 bytes at once to [`Scan::skip_word`].
    #[inline(always)]
    pub fn skipping(&self) -> bool {
        self.state == State::FIRST_LINE || self.state == State::SKIP_LINE
    }

    /// [`Scan::run`] driven exactly as the XDP program's `bpf_loop` callback drives it
    /// (32 or 8 bytes at a time while skipping, a run and steps on one 8-byte load
    /// otherwise, single
    /// steps near the end). Gives the same result as `run` (every host test checks it).
    pub fn run_chunked(bytes: &[u8]) -> Scan {
        Scan::run_chunked_as(look::VIA, bytes)
    }

    /// [`Scan::run_chunked`] of a [`Scan::with`]`(look)`.
    pub fn run_chunked_as(look: u32, bytes: &[u8]) -> Scan {
        let mut s = Scan::with(look);
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
                let (adv, go_on) = s.step_word(word(pos));
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
        Scan::run_as(look::VIA, bytes)
    }

    /// [`Scan::run`] of a [`Scan::with`]`(look)`.
    pub fn run_as(look: u32, bytes: &[u8]) -> Scan {
        let mut s = Scan::with(look);
        for &c in bytes.iter().take(rport_common::SCAN_WINDOW as usize) {
            if !s.step(c) {
                return s;
            }
        }
        s.finish();
        s
    }
}
