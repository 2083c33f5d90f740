//! Runs: the bytes of one word that leave the scanner's state as it is, taken in one tight
//! loop per state instead of one [`Scan::step`] each.
//!
//! Why: most bytes of a Via value (its protocol, transport, host, parameter names and
//! values) and of a Call-ID are runs of one character class in one state, where a step
//! does nothing but its per-byte work (a hash, a name byte, an IPv4 digit). `step` pays
//! for the dispatch every time: the Via range test, the match over the Via states, the
//! end-of-line and DONE checks, each a load or store of map memory in the XDP program.
//! Measured (BPF_PROG_TEST_RUN, interleaved with the step-only build): see
//! docs/BENCHMARKS.md "XDP program cost". A run stops at the first byte outside the class;
//! [`Scan::step`] takes that one, so every state change stays where it was.
//!
//! Equivalence: for a byte of the class of its state, `step(c)` does exactly the work
//! below and nothing else (no CR or LF is in any of these classes; the state does not
//! change, so neither the SKIP_LINE/DONE checks after `via_byte` nor `step_word`'s
//! `skipping` test can fire). `Scan::run_chunked` uses this path; every host test
//! compares it with `Scan::run` (one step per byte).

use rport_common::hash;

use super::{
    POSITIONS, Scan, State, is_ws, lower,
    via::{HOST, PK_BRANCH, PK_OTHER, PK_TAG, TOKEN, VALUE},
};

impl Scan {
    /// Consumes the leading bytes of `w` (8 bytes, little-endian: byte 0 in the low bits)
    /// that are a run in the current state, as that many [`Scan::step`]s would. Returns
    /// how many (0 when the state has no run, or the first byte ends it).
    #[inline(always)]
    pub fn run_word(&mut self, w: u64) -> u32 {
        let st = self.state;
        let mut k = 0u32;
        if st == State::PVAL {
            let pk = self.pkind;
            if pk == PK_BRANCH {
                let (mut h, mut len, mut cookie) = (self.branch_hash, self.branch_len, self.cookie);
                while k < 8 {
                    let c = (w >> (8 * k)) as u8;
                    if !VALUE.has(c) {
                        break;
                    }
                    h = hash::step(h, c);
                    if cookie == len
                        && len < 7
                        && c as u64 == (super::via::COOKIE_WORD >> (8 * len)) & 0xff
                    {
                        cookie += 1;
                    }
                    len += 1;
                    k += 1;
                }
                self.branch_hash = h;
                self.branch_len = len;
                self.cookie = cookie;
            } else if pk == PK_TAG {
                while k < 8 {
                    let c = (w >> (8 * k)) as u8;
                    if !VALUE.has(c) {
                        break;
                    }
                    self.tag_byte(c);
                    k += 1;
                }
            } else if pk == PK_OTHER {
                while k < 8 && VALUE.has((w >> (8 * k)) as u8) {
                    k += 1;
                }
            }
            // PK_RPORT: a few digits, stepped.
        } else if st == State::HOST {
            while k < 8 {
                let c = (w >> (8 * k)) as u8;
                if !HOST.has(c) {
                    break;
                }
                self.host_byte(c);
                k += 1;
            }
        } else if st == State::PNAME {
            let (mut name, mut len) = (self.name, self.name_len);
            while k < 8 {
                let c = (w >> (8 * k)) as u8;
                if !TOKEN.has(c) {
                    break;
                }
                if len < 8 {
                    name = (name << 8) | lower(c) as u64;
                    len += 1;
                } else {
                    name = 0;
                    len = 9;
                }
                k += 1;
            }
            self.name = name;
            self.name_len = len;
        } else if st == State::PROTO || st == State::TRANSPORT {
            while k < 8 && TOKEN.has((w >> (8 * k)) as u8) {
                k += 1;
            }
        } else if st == State::CALLID {
            // Every byte but CR and LF: SP and HTAB skipped, the rest hashed.
            let mut h = self.callid_hash;
            while k < 8 {
                let c = (w >> (8 * k)) as u8;
                if c == b'\r' || c == b'\n' {
                    break;
                }
                if !is_ws(c) {
                    h = hash::step(h, c);
                }
                k += 1;
            }
            self.callid_hash = h;
        }
        if POSITIONS && k > 0 {
            self.fed += k;
            if st.in_via() {
                self.via_end = self.fed;
            }
        }
        k
    }
}
