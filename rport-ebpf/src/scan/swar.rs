//! Word-at-a-time paths for the XDP loop: skipping the lines the scanner ignores 8 or 32
//! bytes per `bpf_loop` iteration (an SWAR search for the LF), and up to 8 bytes on one
//! 8-byte load elsewhere (a run, `run.rs`, then byte steps).
//!
//! Why: one `bpf_loop` iteration costs about as much as a whole scanner step, and most
//! bytes before the top Via (and every byte before a Call-ID) are skipped bytes. Each path
//! gives exactly what feeding the same bytes one by one to [`Scan::step`] gives; the host
//! tests check `Scan::run_chunked` (these paths) against `Scan::run` (byte steps).

use super::{Scan, State};

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

impl Scan {
    /// Consumes up to 8 bytes (`w`, loaded little-endian) while [`Scan::skipping`]: all of
    /// them if there is no LF, else up to and including the first LF, which starts a line,
    /// exactly as feeding them one by one to [`Scan::step`] would. Returns the count.
    #[inline(always)]
    pub fn skip_word(&mut self, w: u64) -> u32 {
        let adv = match first_lf(w) {
            None => 8,
            Some(k) => {
                self.state = State::LINE_START;
                k + 1
            }
        };
        if super::POSITIONS {
            self.fed += adv;
        }
        adv
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

    /// One word outside the skipped lines (`w`, loaded little-endian): first a run of the
    /// current state ([`Scan::run_word`]), then [`Scan::step_rest`] over the rest. Returns
    /// the bytes consumed and whether to go on.
    #[inline(always)]
    pub fn step_word(&mut self, w: u64) -> (u32, bool) {
        let run = self.run_word(w);
        if run >= 8 {
            return (8, true);
        }
        self.step_rest(w, run)
    }

    /// [`Scan::step`]s over the bytes of `w` from byte `from` (< 8) on, stopping early when
    /// the scan is over or the scanner starts skipping (the word paths are faster there).
    /// Returns the bytes of the word consumed (`from` included) and whether to go on.
    #[inline(always)]
    pub fn step_rest(&mut self, w: u64, from: u32) -> (u32, bool) {
        let from = from & 7;
        let rest = w >> (8 * from);
        let mut k = 0;
        while k < 8 {
            if from + k >= 8 {
                break;
            }
            if !self.step((rest >> (8 * k)) as u8) {
                return (from + k + 1, false);
            }
            if self.skipping() {
                return (from + k + 1, true);
            }
            k += 1;
        }
        (8, true)
    }
}
