//! What holds of every scan result, whatever the bytes (host only): the unit tests and the
//! fuzzer (fuzz/fuzz_targets/scan.rs) check it after every run.
use super::{Scan, State, flags, found};

impl Scan {
    /// The scan's own consistency: flags only with a Via, numbers within their limits,
    /// the Via value's range inside what was fed. `Err` says which rule broke.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let s = self;
        let rule = |ok: bool, what: &'static str| if ok { Ok(()) } else { Err(what) };
        if s.found & found::MALFORMED != 0 {
            rule(s.found & found::VIA_DONE != 0, "malformed but not done")?;
        }
        if s.found & found::VIA == 0 {
            rule(s.flags == 0, "flags without a Via")?;
            rule(s.host_len == 0, "a host without a Via")?;
        }
        // A malformed Via stops the scan where the grammar broke, the number it was reading
        // left as it was (a sixth port digit: up to 999_999); the program passes such a
        // packet before looking at any number (decide: `Outcome::MalformedVia`).
        if s.found & found::MALFORMED == 0 {
            rule(s.port <= 99_999, "port past five digits")?;
            rule(s.rport <= 99_999, "rport past five digits")?;
        }
        if s.found & found::MALFORMED == 0 && s.state == State::DONE {
            if s.flags & flags::RPORT_VALUE == 0 {
                rule(s.rport == 0, "an rport value without the flag")?;
            }
            rule(s.port <= 65_535, "a good Via with a port past 65535")?;
        }
        if s.found & (found::VIA_DONE | found::MALFORMED) == found::VIA_DONE {
            // A complete value holds at least a sent-protocol and a host: `a/b/c d`.
            rule(
                s.via_start + 7 <= s.via_end,
                "a Via value shorter than `a/b/c d`",
            )?;
            rule(s.via_end <= s.fed, "the Via value ends past what was fed")?;
        }
        if s.sent_by_v4().is_some() {
            rule(
                s.flags & (flags::SENT_BY_NAME | flags::SENT_BY_V6) == 0,
                "an IPv4 sent-by flagged as a name or IPv6",
            )?;
            rule(s.host_len != 0, "an IPv4 sent-by without a host")?;
        }
        rule(s.tag_len <= s.fed, "a tag longer than what was fed")?;
        let _ = s.key();
        Ok(())
    }
}
