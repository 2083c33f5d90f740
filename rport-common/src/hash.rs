//! The transaction key shared by the XDP program and userspace.
//!
//! RFC 3261 §8.1.1.7: a branch that starts with the magic cookie `z9hG4bK` is unique per
//! transaction, so the branch alone is the key. Older (RFC 2543) clients make no such
//! promise, so for them the sent-by and the Call-ID are hashed in too. A response carries
//! the request's top Via (and Call-ID) unchanged, so it finds the same key.
//!
//! FNV-1a, 64 bit: one multiply per byte, no tables, trivially the same on both sides.

/// FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One FNV-1a step.
#[inline(always)]
pub const fn step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(FNV_PRIME)
}

/// FNV-1a over a slice, continuing from `h`.
pub const fn bytes(mut h: u64, s: &[u8]) -> u64 {
    let mut i = 0;
    while i < s.len() {
        h = step(h, s[i]);
        i += 1;
    }
    h
}

/// Combines the per-field hashes into the transaction key.
///
/// The fields are hashed separately (each from [`FNV_OFFSET`]) because the XDP scanner
/// meets them in wire order (sent-by, then branch, Call-ID anywhere) and cannot chain them;
/// they are then mixed position-dependently, so swapping fields changes the key.
#[inline(always)]
pub fn combine(branch: u64, magic_cookie: bool, host: u64, port: u16, call_id: u64) -> u64 {
    if magic_cookie {
        return branch;
    }
    let mut h = branch;
    h = (h ^ host.rotate_left(21)).wrapping_mul(FNV_PRIME);
    h = (h ^ (port as u64).rotate_left(42)).wrapping_mul(FNV_PRIME);
    (h ^ call_id.rotate_left(13)).wrapping_mul(FNV_PRIME)
}

/// The key of a transaction. `sent_by_host` is the host text as written (brackets of an
/// IPv6 reference included), `sent_by_port` the port number (0 when absent), `call_id`
/// the Call-ID value (whitespace in it is skipped, as the XDP scanner does). The last
/// three only count when the branch lacks the magic cookie.
pub fn transaction_key(
    branch: &[u8],
    sent_by_host: &[u8],
    sent_by_port: u16,
    call_id: &[u8],
) -> u64 {
    let mut c = FNV_OFFSET;
    let mut i = 0;
    while i < call_id.len() {
        let b = call_id[i];
        if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            c = step(c, b);
        }
        i += 1;
    }
    combine(
        bytes(FNV_OFFSET, branch),
        branch.starts_with(b"z9hG4bK"),
        bytes(FNV_OFFSET, sent_by_host),
        sent_by_port,
        c,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(bytes(FNV_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(bytes(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(bytes(FNV_OFFSET, b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn cookie_branch_ignores_the_rest() {
        let a = transaction_key(b"z9hG4bK-1", b"192.168.1.50", 5060, b"abc");
        let b = transaction_key(b"z9hG4bK-1", b"10.0.0.1", 0, b"");
        assert_eq!(a, b);
        assert_ne!(
            a,
            transaction_key(b"z9hG4bK-2", b"192.168.1.50", 5060, b"abc")
        );
    }

    #[test]
    fn legacy_branch_mixes_sent_by_and_call_id() {
        let a = transaction_key(b"1234", b"192.168.1.50", 5060, b"abc");
        assert_ne!(a, transaction_key(b"1234", b"192.168.1.51", 5060, b"abc"));
        assert_ne!(a, transaction_key(b"1234", b"192.168.1.50", 5061, b"abc"));
        assert_ne!(a, transaction_key(b"1234", b"192.168.1.50", 5060, b"abd"));
        assert_ne!(
            transaction_key(b"ab", b"c", 0, b""),
            transaction_key(b"a", b"bc", 0, b"")
        );
    }
}
