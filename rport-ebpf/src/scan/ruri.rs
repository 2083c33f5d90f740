//! The Request-URI of a request from inside: its first `rptag` URI parameter.
//!
//! A server sends a request toward a client (an INVITE to a registered phone, the ACK or
//! BYE of a dialog) to the client's Contact, and rport put its steering tag in that
//! Contact as a URI parameter (`sip:100@192.168.1.50:5060;rptag=…`, userspace
//! `sip/contact.rs`). RFC 3261 §12.1.1/§16.12 make that Contact the Request-URI of those
//! requests, so the tag comes back in the request line, which the scanner otherwise skips.
//!
//! The request line is `Method SP Request-URI SP SIP-Version`; no method or version holds
//! a `;`, so every `;` of the line is in the Request-URI. After each `;` a parameter name
//! is read, packed like a header name; the value of the first one named `rptag`
//! (case-insensitive) is kept, up to the first byte that is not a `tchar`: the tag is hex,
//! and the decoder refuses anything else. A `;` in the user part (`sip:1;x=y@host`) reads
//! as a parameter too: only a value that passes the MAC steers, so a name that merely looks
//! like one costs nothing but a refused tag. Then the rest of the line is skipped on the
//! word path, like any request line.

use super::{
    Scan, State, found, lower,
    via::{P_TAG, TOKEN},
};

impl Scan {
    /// One byte of the request line, in a [`State::in_ruri`] state.
    #[inline(always)]
    pub(super) fn ruri_byte(&mut self, c: u8) {
        match self.state {
            State::RURI => {
                if c == b';' {
                    self.ruri_param();
                }
            }
            State::RURI_PNAME => {
                if c == b'=' {
                    self.state = if self.name == P_TAG && self.name_len == 5 {
                        State::RURI_TAG
                    } else {
                        State::RURI
                    };
                } else if c == b';' {
                    self.ruri_param();
                } else if TOKEN.has(c) {
                    if self.name_len < 8 {
                        self.name = (self.name << 8) | lower(c) as u64;
                    }
                    self.name_len += 1;
                } else {
                    self.state = State::RURI;
                }
            }
            _ => {
                // RURI_TAG
                if TOKEN.has(c) {
                    self.tag_byte(c);
                } else {
                    self.ruri_end();
                }
            }
        }
    }

    #[inline(always)]
    fn ruri_param(&mut self) {
        self.name = 0;
        self.name_len = 0;
        self.state = State::RURI_PNAME;
    }

    /// The request line's Request-URI part is over for the scanner (the tag's value
    /// ended, or the line did): a tag being read is complete, the rest of the line skipped.
    #[inline(always)]
    pub(super) fn ruri_end(&mut self) {
        if self.state == State::RURI_TAG {
            self.found |= found::RURI_TAG;
        }
        self.state = State::FIRST_LINE;
    }
}
