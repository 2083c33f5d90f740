//! The properties of the SIP code, written once and checked twice: by the property tests
//! (tests/rewrite_props.rs, tests/via_grammar.rs, the Contact unit tests) over generated
//! messages, and by the fuzz targets (fuzz/fuzz_targets) over whatever libFuzzer makes.
//!
//! Each check returns `Err(why)` rather than panicking, so a proptest reports it as a
//! failing case (and shrinks it) and a fuzz target panics with it.
use std::{net::IpAddr, ops::Range};

use rport_common::{SCAN_WINDOW, flags, hash, tag::TagBuf};
use rport_ebpf::scan::{Scan, found, look};

use super::{
    contact::{ContactPolicy, ContactRewritten, MAX_EDITS, rewrite_contacts},
    headers,
    rewrite::{Observed, Policy, RewriteError, Rewritten, rewrite_message, rewrite_top_via},
    via::{self, HostKind, TopVia, ViaError},
};

/// A failed property: what broke, with the message.
pub type Fail = String;

macro_rules! ensure {
    ($ok:expr, $($why:tt)+) => {
        if !$ok {
            return Err(format!($($why)+));
        }
    };
}

macro_rules! ensure_eq {
    ($a:expr, $b:expr $(,)?) => {
        ensure_eq!($a, $b, "")
    };
    ($a:expr, $b:expr, $($why:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!(
                "{} != {}: {:?} != {:?} {}",
                stringify!($a),
                stringify!($b),
                a,
                b,
                format!($($why)+)
            ));
        }
    }};
}

/// `m` through [`rewrite_top_via`] with 256 bytes of room: the message after, and the
/// outcome.
pub fn rewrite(m: &[u8], src: Observed, p: Policy) -> (Vec<u8>, Result<Rewritten, RewriteError>) {
    let mut b = m.to_vec();
    b.resize(m.len() + 256, 0);
    let r = rewrite_top_via(&mut b, m.len(), src, p);
    b.truncate(r.as_ref().map_or(m.len(), |r| r.len));
    (b, r)
}

/// The value of a parameter whose whole text (`;name=value`, SWS allowed) is `span`.
fn param_value(m: &[u8], span: Range<usize>) -> &[u8] {
    let p = &m[span];
    let eq = p.iter().position(|&c| c == b'=').unwrap_or(p.len() - 1);
    p[eq + 1..].trim_ascii()
}

/// The top-Via rewrite of `m`: an error leaves the message as it came, for the reason the
/// parser gives; a change keeps the grammar, changes no byte outside the top Via value,
/// keeps the sent-by, branch and transaction key (on the XDP side too), sets `received`
/// and `rport` as observed, and is idempotent.
pub fn check_rewrite(m: &[u8], src: Observed, policy: Policy) -> Result<(), Fail> {
    let (out, r) = rewrite(m, src, policy);
    let parsed = via::parse_top_via(m);
    let r = match r {
        Err(e) => {
            // Whatever the reason, the message goes on as it came.
            ensure!(out == m, "an error changed the message");
            let want = match parsed {
                Err(ViaError::NotSip) => RewriteError::NotSip,
                Err(ViaError::NoVia) => RewriteError::NoVia,
                Err(ViaError::Malformed) => RewriteError::MalformedVia,
                // Two `received`: a good Via, but not one to rewrite.
                Ok(v) if v.received_twice => RewriteError::MalformedVia,
                Ok(_) => RewriteError::NoRoom,
            };
            ensure_eq!(e, want);
            return Ok(());
        }
        Ok(r) => r,
    };
    ensure_eq!(r.changed, out != m);
    // The Call-ID it reports is the result's.
    ensure_eq!(r.call_id.clone().map(|c| &out[c]), headers::call_id(&out));
    if !r.changed {
        return Ok(());
    }
    let before: TopVia = parsed.map_err(|e| format!("changed, but the Via is {e:?}"))?;
    // The output follows the grammar (so no parameter is there twice) ...
    let after = via::parse_top_via(&out)
        .map_err(|e| format!("{e:?}: {:?}", String::from_utf8_lossy(&out)))?;
    // ... and changed nothing outside the top Via value.
    ensure_eq!(after.value.start, before.value.start);
    ensure!(
        out[..after.value.start] == m[..before.value.start],
        "bytes before the Via value changed"
    );
    ensure!(
        out[after.value.end..] == m[before.value.end..],
        "bytes after the Via value changed"
    );
    // The same sent-by and branch, so the same key ...
    ensure_eq!(&out[after.host.clone()], &m[before.host.clone()]);
    ensure_eq!(after.host_kind, before.host_kind);
    ensure_eq!(after.port, before.port);
    ensure_eq!(
        after.branch.clone().map(|b| &out[b]),
        before.branch.clone().map(|b| &m[b])
    );
    ensure_eq!(via::transaction_key(&out), via::transaction_key(m));
    // ... on the XDP side too: the response echoes this Via, and must find the binding
    // the request was recorded under.
    // (What the scanner reads is the first SCAN_WINDOW bytes: a header section that the
    // rewrite pushes past them ends another way there; found by the fuzzer.)
    if out.len() <= SCAN_WINDOW as usize {
        let (s_req, s_out) = (Scan::run_chunked(m), Scan::run_chunked(&out));
        ensure_eq!(s_out.found & found::MALFORMED, 0);
        ensure_eq!(s_out.key(), s_req.key());
    }
    // received and rport as observed.
    let received = after.received.clone().ok_or("no received after a change")?;
    let addr = src.addr.to_string();
    ensure_eq!(param_value(&out, received), addr.as_bytes());
    let wants_rport = before.rport.is_some() || policy.force_rport;
    ensure_eq!(r.rport_set, wants_rport);
    if wants_rport {
        ensure_eq!(after.rport.map(|r| r.port), Some(Some(src.port)));
    } else {
        // No rport asked for and none written.
        ensure!(after.rport.is_none(), "an rport nobody asked for");
    }
    // Idempotent: a second pass finds nothing to do.
    let (twice, r2) = rewrite(&out, src, policy);
    ensure!(twice == out, "a second pass changed the message");
    ensure!(
        r2.as_ref().is_ok_and(|r| !r.changed),
        "a second pass: {r2:?}"
    );
    Ok(())
}

/// What the scanner and the parser concluded about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not SIP to the rewrite (bad start line, no end of headers): not compared.
    NotSip,
    NoVia,
    Malformed,
    Ok,
}

/// The XDP scanner (`Scan::run_chunked`, as the XDP program's `bpf_loop` runs it, and
/// `Scan::run`, byte by byte) and the rewrite's parser agree on `m` (at most
/// [`SCAN_WINDOW`] bytes) on every field the grammar defines: top Via found or not,
/// malformed or not, the value's range, the sent-by (host class, IPv4 literal, port),
/// rport empty or valued, received, branch, and so the transaction key. Returns their
/// common verdict.
pub fn agree(m: &[u8]) -> Result<Verdict, Fail> {
    ensure!(
        m.len() <= SCAN_WINDOW as usize,
        "keep messages in the window"
    );
    let s = Scan::run_chunked(m);
    // The XDP loop's dispatch is the byte-step machine.
    ensure_eq!(s, Scan::run(m), "run_chunked and run disagree");
    let Some(h) = headers::frame(m) else {
        return Ok(Verdict::NotSip);
    };
    let v = match via::parse_top_via_in(m, &h) {
        Err(ViaError::NotSip) => return Err("framed, yet not SIP".into()),
        Err(ViaError::NoVia) => {
            ensure_eq!(s.found & found::VIA, 0, "the scanner found a Via: {:?}", s);
            return Ok(Verdict::NoVia);
        }
        Err(ViaError::Malformed) => {
            ensure_eq!(
                s.found & (found::VIA | found::MALFORMED),
                found::VIA | found::MALFORMED,
                "the scanner took the Via for a good one: {:?}",
                s
            );
            return Ok(Verdict::Malformed);
        }
        Ok(v) => v,
    };
    ensure_eq!(
        s.found & (found::VIA | found::VIA_DONE | found::MALFORMED),
        found::VIA | found::VIA_DONE,
        "the scanner found no good Via: {:?}",
        s
    );
    ensure_eq!(
        (s.via_start as usize, s.via_end as usize),
        (v.value.start, v.value.end),
        "where the top Via value is"
    );
    ensure_eq!(s.flags, v.flags(m), "flags: scanner {:#x}", s.flags);
    ensure_eq!(s.host_len as usize, v.host.len());
    ensure_eq!(
        s.host_hash,
        hash::bytes(hash::FNV_OFFSET, &m[v.host.clone()])
    );
    ensure_eq!(s.port, v.port.unwrap_or(0) as u32);
    let v4 = match v.host_kind {
        HostKind::V4(a) => Some(a),
        _ => None,
    };
    ensure_eq!(s.sent_by_v4(), v4);
    ensure_eq!(
        s.rport,
        v.rport.as_ref().and_then(|r| r.port).unwrap_or(0) as u32
    );
    ensure_eq!(s.found & found::BRANCH != 0, v.branch.is_some());
    let branch = v.branch.clone().map(|r| &m[r]).unwrap_or_default();
    ensure_eq!(s.branch_hash, hash::bytes(hash::FNV_OFFSET, branch));
    ensure_eq!(Some(s.key()), via::transaction_key(m), "transaction key");
    Ok(Verdict::Ok)
}

/// What the XDP program's choice rests on agrees with what the rewrite does: a request it
/// would pass on without handing it over (a good Via, no rport, the sent-by an IPv4
/// literal that is the source `src`) is one the rewrite leaves alone; a malformed one is
/// never edited.
pub fn decisions_agree(m: &[u8], verdict: Verdict, src: Observed) -> Result<(), Fail> {
    if m.starts_with(b"SIP/2.0 ") {
        return Ok(());
    }
    let mut b = m.to_vec();
    b.resize(m.len() + 256, 0);
    let r = rewrite_top_via(&mut b, m.len(), src, Policy::default());
    if verdict == Verdict::Malformed {
        ensure!(r.is_err(), "a malformed Via rewritten");
        ensure!(b[..m.len()] == *m, "a malformed Via edited");
    }
    let s = Scan::run_chunked(m);
    let src_v4 = match src.addr {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(_) => None,
    };
    // decide.rs `wants_rewrite`: an rport, a sent-by that is not the source, or an
    // `rptag` in the Via (never the client's to give: the rewrite removes it; the
    // fuzzer's first finding was this model without it).
    let xdp_hands_over = s.flags & (flags::RPORT_EMPTY | flags::RPORT_VALUE) != 0
        || s.sent_by_v4().is_none()
        || s.sent_by_v4() != src_v4
        || s.found & found::TAG != 0;
    if r.is_ok_and(|r| r.changed) {
        ensure_eq!(verdict, Verdict::Ok);
        ensure!(
            xdp_hands_over,
            "XDP would pass a request the rewrite changes"
        );
    }
    Ok(())
}

/// The scanner on any bytes: its own invariants hold (offsets in range, numbers within
/// their limits) whatever it looks for, and looking for a Contact or the Request-URI tag
/// never changes what it finds of the Via.
pub fn check_scan(m: &[u8]) -> Result<(), Fail> {
    let base = Scan::run_chunked(m);
    base.check_invariants()
        .map_err(|e| format!("{e}: {base:?}"))?;
    let n = m.len().min(SCAN_WINDOW as usize) as u32;
    ensure!(base.fed <= n, "fed {} of {n} bytes", base.fed);
    for l in [look::CONTACT_UNLESS_REWRITE, look::CONTACT, look::RURI_TAG] {
        let s = Scan::run_as(l, m);
        s.check_invariants()
            .map_err(|e| format!("look {l}: {e}: {s:?}"))?;
        ensure_eq!(
            s,
            Scan::run_chunked_as(l, m),
            "look {l}: run and run_chunked"
        );
        let via = found::VIA | found::MALFORMED | found::BRANCH | found::VIA_DONE;
        ensure_eq!(s.found & via, base.found & via, "look {l}");
        ensure_eq!(s.flags, base.flags, "look {l}");
        ensure_eq!(
            (s.branch_hash, s.host_hash, s.port, s.rport),
            (base.branch_hash, base.host_hash, base.port, base.rport),
            "look {l}"
        );
        ensure_eq!((s.via_start, s.via_end), (base.via_start, base.via_end));
    }
    Ok(())
}

/// `m` through [`rewrite_contacts`] with 1500 bytes of room (filled with 0xaa): on an
/// error the buffer, room included, is checked to be exactly as it was.
pub fn contacts(
    m: &[u8],
    src: Observed,
    p: ContactPolicy,
) -> Result<(Vec<u8>, Result<ContactRewritten, RewriteError>), Fail> {
    let mut b = m.to_vec();
    b.resize(m.len() + 1500, 0xaa);
    let r = rewrite_contacts(&mut b, m.len(), src, p);
    if r.is_err() {
        ensure!(b[..m.len()] == *m, "an error changed the message");
        ensure!(
            b[m.len()..].iter().all(|&c| c == 0xaa),
            "an error wrote past the message"
        );
    }
    b.truncate(r.as_ref().map_or(m.len(), |r| r.len));
    Ok((b, r))
}

/// The stretches of `m` between Contact header values, and the values.
pub fn split_contacts(m: &[u8]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let Some(h) = headers::frame(m) else {
        return (vec![m], vec![]);
    };
    let (mut outside, mut values, mut at, mut prev) = (Vec::new(), Vec::new(), h.start, 0);
    while let Some((v, next)) = headers::find_from(m, &h, at, b"contact", b"m") {
        outside.push(&m[prev..v.start]);
        values.push(&m[v.clone()]);
        prev = v.end;
        at = next;
    }
    outside.push(&m[prev..]);
    (outside, values)
}

/// The Contact aliasing of `m`: an error changes nothing (checked in [`contacts`]); a
/// second run changes nothing; nothing outside the Contact values moves; every rptag URI
/// parameter left is exactly ours, one per aliased URI: no client's tag survives.
pub fn check_contacts(m: &[u8], src: Observed, p: ContactPolicy) -> Result<(), Fail> {
    let (once, r) = contacts(m, src, p)?;
    let Ok(r) = r else { return Ok(()) };
    ensure_eq!(r.changed, once != m);
    let (twice, r2) = contacts(&once, src, p)?;
    let r2 = r2.map_err(|e| format!("the second run: {e}"))?;
    ensure!(twice == once, "the second run changed the message");
    ensure!(!r2.changed, "the second run says it changed");
    ensure_eq!(
        (r2.aliased, r2.removed, r2.contacts),
        (r.aliased, 0, r.contacts)
    );
    ensure_eq!(
        split_contacts(m).0,
        split_contacts(&once).0,
        "outside the values"
    );
    // Without a tag to give, every rptag URI parameter goes: exactly one per URI that got
    // ours, none of a client's.
    let (bare, r3) = contacts(&once, src, ContactPolicy::default())?;
    let r3 = match r3 {
        // One removal per tag of ours: past MAX_EDITS of them, too many for one pass
        // (found by the fuzzer: more than 16 URIs, one of them carrying our tag already).
        Err(RewriteError::TooManyContacts) => {
            ensure!(
                r.aliased as usize > MAX_EDITS,
                "too many edits to remove {} tags",
                r.aliased
            );
            return Ok(());
        }
        r3 => r3.map_err(|e| format!("the run without a tag: {e}"))?,
    };
    ensure_eq!((r3.removed, r3.aliased), (r.aliased, 0));
    if p.tag.is_none() {
        ensure_eq!(r.aliased, 0);
    }
    ensure_eq!(
        split_contacts(&bare).0,
        split_contacts(m).0,
        "outside the values"
    );
    Ok(())
}

/// `rport rewrite` end to end ([`rewrite_message`]): only a message that is not SIP is
/// refused; what comes out keeps the transaction key, its top Via is the one the Via
/// rewrite alone gives, and a second pass changes nothing.
pub fn check_message(m: &[u8], src: Observed, force_rport: bool, t: TagBuf) -> Result<(), Fail> {
    let out = match rewrite_message(m, src, force_rport, t) {
        Err(RewriteError::NotSip) => {
            ensure!(
                headers::frame(m).is_none(),
                "a framed message refused as not SIP"
            );
            return Ok(());
        }
        Err(e) => return Err(format!("refused: {e}")),
        Ok(out) => out,
    };
    ensure_eq!(via::transaction_key(&out), via::transaction_key(m));
    let (via_only, _) = rewrite(
        m,
        src,
        Policy {
            force_rport,
            tag: None,
        },
    );
    match (via::parse_top_via(&out), via::parse_top_via(&via_only)) {
        (Ok(a), Ok(b)) => ensure_eq!(&out[a.value], &via_only[b.value], "the top Via"),
        (a, b) => ensure_eq!(a.err(), b.err(), "the top Via"),
    }
    let again =
        rewrite_message(&out, src, force_rport, t).map_err(|e| format!("the second pass: {e}"))?;
    ensure!(again == out, "the second pass changed the message");
    Ok(())
}

/// The header framing on any bytes: the header section lies inside the message, after the
/// start line, and every header value found (Via, Call-ID, Contact, long or compact) lies
/// inside the header section, each search moving forward.
pub fn check_headers(m: &[u8]) -> Result<(), Fail> {
    let framed = headers::frame_via_call_id(m);
    let Some(h) = headers::frame(m) else {
        ensure!(framed.is_none(), "framed in one walk only: {framed:?}");
        return Ok(());
    };
    // The rewrite's one walk finds what the three searches find.
    ensure_eq!(
        framed,
        Some(headers::Framed {
            h,
            via: headers::find(m, &h, b"via", b"v"),
            call_id: headers::call_id_in(m, &h),
        }),
        "the one walk and the three searches"
    );
    ensure!(
        0 < h.start && h.start <= h.end && h.end <= m.len(),
        "framing {h:?} of {}",
        m.len()
    );
    ensure_eq!(
        m[h.start - 1],
        b'\n',
        "the header section starts after a line"
    );
    for (long, short) in [
        (&b"via"[..], &b"v"[..]),
        (b"call-id", b"i"),
        (b"contact", b"m"),
    ] {
        let mut at = h.start;
        while let Some((v, next)) = headers::find_from(m, &h, at, long, short) {
            ensure!(
                h.start <= v.start && v.start <= v.end && v.end <= h.end,
                "value {v:?} outside {h:?}"
            );
            ensure!(
                next > at && next > v.start,
                "the search did not move: {at} -> {next}"
            );
            at = next;
        }
    }
    if let Some(c) = headers::call_id_in(m, &h) {
        ensure!(
            h.start <= c.start && c.start <= c.end && c.end <= h.end,
            "Call-ID {c:?}"
        );
    }
    Ok(())
}
