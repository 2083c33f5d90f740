//! Stateless steering tags: a message carries, authenticated, where its answer must go.
//!
//! # Why stateless
//!
//! Steering a response by the `BINDINGS` map forgets: an LRU evicts under load, a restart
//! or a second gateway has no entry, and a flood of requests with fresh branches pushes
//! out the bindings of real clients. SYN cookies (RFC 4987 §3.6) and QUIC Retry tokens
//! (RFC 9000 §8.1.4) solve the same problem the same way: the state is handed to the
//! peer, sealed with a MAC under a key only we have, and checked when it comes back.
//! Here the peer is the SIP server: when rport rewrites a request's top Via it appends
//! `;rport-tag=VALUE`, and the server copies the Via into its responses verbatim
//! (RFC 3261 §8.2.6.2), so the XDP program finds the target in the response itself.
//! Kind [`KIND_CONTACT`] is the same format in a Contact URI parameter, for requests
//! toward the phone (longer lifetime, no transaction).
//!
//! # Format
//!
//! `VALUE` is lowercase hex with a fixed layout (38 characters for IPv4, 62 for IPv6):
//!
//! | digits | field |
//! |---|---|
//! | 1 | `K`: bits 0-2 key id (0..7), bit 3 set for IPv6 |
//! | 1 | `T`: kind, [`KIND_VIA`] or [`KIND_CONTACT`] |
//! | 8 | TS: TAI seconds >> 4 (u32: 16-second steps, good until year 4147) |
//! | 8 / 32 | ADDR: the target address (IPv4 / IPv6) |
//! | 4 | PORT: the target port |
//! | 16 | MAC: SipHash-2-4 of the message below (u64) |
//!
//! # What is authenticated
//!
//! The MAC is SipHash-2-4 (a PRF with a 128-bit key, built for short inputs) over a
//! 48-byte message, six little-endian words, so it costs exactly 6 + 1 compressions:
//!
//! | bytes | content |
//! |---|---|
//! | 0..16 | target address (IPv4-mapped for IPv4) |
//! | 16..32 | server address (the request's destination = the response's source) |
//! | 32..34 | target port, big-endian |
//! | 34..36 | server port, big-endian |
//! | 36..40 | TS, little-endian |
//! | 40..47 | transaction key ([`crate::hash`]), its low 56 bits, little-endian |
//! | 47 | the head byte `K << 4 \| T` (key id, family, kind) |
//!
//! So every tag field is covered: where to steer, when it was made, which key, which
//! family and which kind (a short-lived Via tag cannot be passed off as a long-lived
//! Contact tag). The server is not in the tag: the verifier takes it from the packet
//! (the response's source), so a tag made for one server fails the MAC in a response from
//! any other (anti-reflection: only the server the request went to can be steered).
//! The top byte of the transaction key gives way to the head byte to keep the message at
//! six words; this costs no strength: the key is FNV-1a, which someone who picks the
//! branch can match on 56 or 64 bits alike, so it binds a tag to its transaction against
//! pasting and accidents (a 2^-56 chance), not against a determined peer, and the MAC
//! never depended on it. For kind [`KIND_CONTACT`] the caller passes 0 (or its own
//! context value).
//!
//! # What an attacker can and cannot do
//!
//! - Forge: a tag that steers toward a victim of their choosing needs the key (a 64-bit
//!   MAC: one chance in 2^64 per try, and every miss is counted).
//! - Change a field (target, age, kind, key id, family) of a real tag: the MAC fails.
//! - Reuse a tag with another server, or from an outside interface: the MAC fails / the
//!   caller refuses (as today).
//! - Replay a tag they saw, with another `received` (the rewrite sets `received` from the
//!   real source, the tag stays): it still steers to the address it was made for, so only
//!   toward the client that made the request, only from the same server, only with the
//!   same transaction key, only until it is `max_age` old. That is what a binding allows
//!   today. The rewrite must drop any `rport-tag` already in a request's top Via before it
//!   appends its own: only the tag it just made may come back.
//! - Reuse a branch: the same transaction key, so a tag of the first transaction is good
//!   for the second within its age. RFC 3261 branches are unique per transaction; a client
//!   that breaks this only steers its own responses to itself.
//! - Read the tag: it is not secret (the target is what `received`/`rport` say anyway).
//!
//! # Clock and keys
//!
//! TS is TAI (no leap-second steps): `CLOCK_TAI` in userspace, `bpf_ktime_get_tai_ns`
//! (Linux 6.1) in XDP. Gateways that share the keys (same key file) must have
//! synchronized clocks and the same TAI offset: when chrony or ntpd has not set the
//! kernel's offset, `CLOCK_TAI` reads as UTC, 37 s behind a host where it is set. A tag
//! from a gateway whose clock is ahead is accepted up to `max_future_s` in the future; the
//! age is checked in 16-second steps, so a tag is refused between `max_age - 15` and
//! `max_age` seconds after it was made. Keys live in [`TagKeys`]: eight slots indexed by
//! key id, at most two valid (the current one, which makes tags, and the previous one,
//! still accepted after a rotation).
//!
//! # Fit for the BPF verifier
//!
//! No heap, no recursion, no u128, no division, only loops of constant count (they
//! unroll), no index that is not a constant or masked. The hex decoder has no branch per
//! digit: SWAR over eight characters with 32-bit constants (BPF immediates), validity as a
//! mask, one check per tag, and 8-byte loads from an aligned [`TagText`].
//!
//! The stack is what binds (512 bytes for the whole call chain): fully inlined, LLVM
//! interleaves the eight words of the decoder and the SipHash rounds and spills them all,
//! over 300 bytes in one frame. So on BPF (and only there) four functions are
//! subprograms of their own, called one after the other, with frames measured on the
//! verified object: `decode_into` 64 bytes (it calls `hex8`, 0 bytes, once per word),
//! [`mac`] 72 bytes (it calls [`siphash24_words`], 8 bytes). Below its own frame, which
//! holds the [`TagText`] (64) and the [`Tag`] (40), a caller needs 128 bytes more as the
//! verifier counts (each frame rounded up to 32). [`verify`] is
//! `#[inline(always)]` (it has more arguments than a BPF call can pass) and small. Code:
//! about 680 instructions in all (`decode_into` 170, `hex8` 63, `mac` 134, SipHash 309).
//!
//! Two traps for the caller, both met while verifying this code from the XDP program:
//! - No BPF subprogram may return `Option<Tag>` (or any enum with a niche-filled payload):
//!   its BTF is a union with a member at a nonzero offset, the kernel refuses the object's
//!   BTF, aya loads the program without it, and the `bpf_loop` callback then fails with
//!   "missing btf func_info". Hence [`decode_text`] is inline and writes through a pointer.
//! - A mask the verifier needs can vanish when LLVM proves it redundant: had `decode_into`
//!   been inlined into [`verify`], LLVM would know `key_id < 8` from the family check and
//!   drop the `& 7` of [`TagKeys::accepted`], and the verifier, which cannot follow that
//!   proof, would see an index up to 15 ("invalid access to map value").

/// Name of the Via (and Contact URI) parameter that carries a tag.
pub const PARAM: &[u8] = b"rptag";
/// Kind of a tag in a Via: steers the response of a request back to its source.
pub const KIND_VIA: u8 = 0;
/// Kind of a tag in a Contact URI: steers requests toward the phone (issue 11).
pub const KIND_CONTACT: u8 = 1;
/// Key id slots (3 bits of the tag).
pub const KEY_SLOTS: usize = 8;
/// Length of an IPv4 tag value, in characters.
pub const V4_LEN: usize = 2 + 8 + 8 + 4 + 16;
/// Length of an IPv6 tag value, in characters.
pub const V6_LEN: usize = 2 + 8 + 32 + 4 + 16;
/// Size of the buffer [`encode`] writes into.
pub const BUF_LEN: usize = 64;
/// Bytes of the MAC message.
pub const MESSAGE_LEN: usize = 48;
/// TS counts 16-second steps.
pub const TS_SHIFT: u32 = 4;

/// Defaults for [`TagConf`].
pub mod defaults {
    /// A Via tag must outlive its transaction: an INVITE rings for minutes (Timer C is
    /// over 3 minutes, RFC 3261 §16.6), its 2xx is retransmitted for 32 s more.
    pub const MAX_AGE_VIA_S: u32 = 300;
    /// A Contact tag must outlive a registration (refreshed with it, commonly an hour)
    /// and a dialog: it is the remote target of every call the phone makes or answers,
    /// refreshed only by a re-INVITE or UPDATE, so the far end's BYE of a long call carries
    /// the tag made when the call started. A day covers both; what a stale tag allows is
    /// only what the registrar itself would do with a stale Contact (send to a mapping
    /// rport observed as that client's source).
    pub const MAX_AGE_CONTACT_S: u32 = 86_400;
    /// Clock skew between gateways that share the keys.
    pub const MAX_FUTURE_S: u32 = 60;
}

/// One key slot of [`TagKeys`].
///
/// Debug never shows the key bytes (nor does anything else here): keys are never logged.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct TagKey {
    /// The SipHash key.
    pub key: [u8; 16],
    /// When the key was made (TAI seconds).
    pub created_tai_s: u64,
    /// Key id (0..7): the slot it is stored in, and the `K` digit of its tags.
    pub id: u8,
    /// 1 when tags under this key are accepted.
    pub valid: u8,
    /// Explicit tail padding, always 0.
    pub _pad: [u8; 6],
}

impl core::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TagKey")
            .field("id", &self.id)
            .field("valid", &self.valid)
            .field("created_tai_s", &self.created_tai_s)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// How old (or how far in the future) a tag may be, per kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagConf {
    /// Largest age of a [`KIND_VIA`] tag, seconds.
    pub max_age_via_s: u32,
    /// Largest age of a [`KIND_CONTACT`] tag, seconds.
    pub max_age_contact_s: u32,
    /// How far a tag's time may be ahead of ours (clock skew), seconds.
    pub max_future_s: u32,
    /// Explicit tail padding, always 0.
    pub _pad: u32,
}

impl TagConf {
    /// The defaults of [`defaults`].
    pub const DEFAULT: TagConf = TagConf {
        max_age_via_s: defaults::MAX_AGE_VIA_S,
        max_age_contact_s: defaults::MAX_AGE_CONTACT_S,
        max_future_s: defaults::MAX_FUTURE_S,
        _pad: 0,
    };

    /// Largest age for a kind (0 for an unknown kind, which [`verify`] refuses anyway).
    #[inline(always)]
    pub fn max_age(&self, kind: u8) -> u32 {
        match kind {
            KIND_VIA => self.max_age_via_s,
            KIND_CONTACT => self.max_age_contact_s,
            _ => 0,
        }
    }
}

/// Value of the `TAG_KEYS` map (an `Array` with one entry, index 0): the limits and the
/// keys, one lookup per response.
///
/// The slots are indexed by key id, so the XDP program picks one with a masked index, no
/// search. A rotation writes the whole value, but only two slots change: the new key's
/// (no live tag names it) and the retired one's. Array map updates are a plain copy, not
/// atomic against a reader on another CPU, and this is why that is harmless: the slots in
/// use are written with the bytes they already hold.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagKeys {
    /// Age limits.
    pub conf: TagConf,
    /// Id of the key that makes new tags (meaningful when its slot is valid).
    pub current: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
    /// Key slots, by key id.
    pub slots: [TagKey; KEY_SLOTS],
}

impl TagKeys {
    /// The key that makes new tags, if there is one.
    pub fn current_key(&self) -> Option<&TagKey> {
        let k = &self.slots[self.current as usize & (KEY_SLOTS - 1)];
        (k.valid == 1 && k.id as u32 == self.current).then_some(k)
    }

    /// The key a tag names, if it is accepted. The index is masked for the verifier (see
    /// "Fit for the BPF verifier" on why that mask must reach it).
    #[inline(always)]
    pub fn accepted(&self, key_id: u8) -> Option<&TagKey> {
        let k = &self.slots[key_id as usize & (KEY_SLOTS - 1)];
        if k.valid == 1 && k.id == key_id {
            Some(k)
        } else {
            None
        }
    }
}

/// A tag, decoded (or about to be encoded).
///
/// `repr(C)` with the address first: 8-aligned, so the MAC message loads it as two words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Target address (IPv4-mapped for IPv4).
    pub addr: [u8; 16],
    /// SipHash-2-4 of [`message`].
    pub mac: u64,
    /// TAI seconds >> [`TS_SHIFT`].
    pub ts: u32,
    /// Target port.
    pub port: u16,
    /// Key id (0..7).
    pub key_id: u8,
    /// [`KIND_VIA`] or [`KIND_CONTACT`].
    pub kind: u8,
    /// The `K` digit's IPv6 bit.
    pub v6: bool,
}

impl Tag {
    /// An unsigned tag toward `addr:port` made at `now_tai_s` (family from the address).
    pub fn new(key_id: u8, kind: u8, addr: [u8; 16], port: u16, now_tai_s: u64) -> Tag {
        Tag {
            key_id: key_id & 7,
            v6: !is_v4_mapped(&addr),
            kind: kind & 0xf,
            ts: (now_tai_s >> TS_SHIFT) as u32,
            addr,
            port,
            mac: 0,
        }
    }

    /// The tag with its MAC for responses from `server_addr:server_port` in the
    /// transaction `tkey`.
    pub fn sign(
        mut self,
        key: &[u8; 16],
        server_addr: &[u8; 16],
        server_port: u16,
        tkey: u64,
    ) -> Tag {
        self.mac = mac(key, &self, server_addr, server_port, tkey);
        self
    }

    /// `K << 4 | T`: key id, IPv6 bit, kind.
    #[inline(always)]
    pub fn head(&self) -> u8 {
        ((self.key_id & 7) | (self.v6 as u8) << 3) << 4 | (self.kind & 0xf)
    }

    /// When the tag was made, TAI seconds (rounded down to 16).
    #[inline(always)]
    pub fn made_tai_s(&self) -> u64 {
        (self.ts as u64) << TS_SHIFT
    }
}

/// What [`verify`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagCheck {
    /// Made by us, for this server, fresh: steer to `tag.addr:tag.port`.
    Valid,
    /// The MAC does not match: forged, altered, or for another server or transaction.
    BadMac,
    /// The key id names no accepted key (retired, or never ours).
    UnknownKey,
    /// Older than the kind's age limit, or further in the future than the skew allows.
    /// Says nothing about authenticity: the MAC is not computed for it.
    Expired,
    /// Well-formed hex, but nothing we make: unknown kind, port 0, or an IPv6 tag that
    /// carries an IPv4-mapped address (each target has exactly one encoding).
    Malformed,
}

const TKEY_MASK: u64 = 0x00ff_ffff_ffff_ffff;

/// The MAC of `tag` (its `mac` field aside) for messages from `server_addr:server_port`
/// in transaction `tkey`.
///
/// A BPF subprogram of its own (see "Fit for the BPF verifier" above); inlined elsewhere.
#[cfg_attr(target_arch = "bpf", inline(never))]
#[cfg_attr(not(target_arch = "bpf"), inline)]
pub fn mac(key: &[u8; 16], tag: &Tag, server_addr: &[u8; 16], server_port: u16, tkey: u64) -> u64 {
    siphash24_words(key, &message(tag, server_addr, server_port, tkey))
}

/// The 48-byte MAC message as six little-endian words (layout in the module doc).
#[inline(always)]
pub fn message(tag: &Tag, server_addr: &[u8; 16], server_port: u16, tkey: u64) -> [u64; 6] {
    let (t0, t1) = words(&tag.addr);
    let (s0, s1) = words(server_addr);
    let tp = tag.port.to_be_bytes();
    let sp = server_port.to_be_bytes();
    let ts = tag.ts.to_le_bytes();
    let w4 = u64::from_le_bytes([tp[0], tp[1], sp[0], sp[1], ts[0], ts[1], ts[2], ts[3]]);
    let w5 = (tkey & TKEY_MASK) | (tag.head() as u64) << 56;
    [t0, t1, s0, s1, w4, w5]
}

#[inline(always)]
fn words(a: &[u8; 16]) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// Whether a 16-byte address is IPv4-mapped (`::ffff:a.b.c.d`).
#[inline(always)]
pub fn is_v4_mapped(a: &[u8; 16]) -> bool {
    let (lo, hi) = words(a);
    lo == 0 && hi & 0xffff_ffff == 0xffff_0000
}

/// Checks a decoded tag for a message from `server_addr:server_port` with transaction key
/// `tkey`, at `now_tai_s`. The caller picks `max_age_s` by `tag.kind`
/// ([`TagConf::max_age`]). Cheap checks first: a stale or unknown-key tag costs no SipHash.
#[allow(clippy::too_many_arguments)] // the XDP call site has each as a loose value
#[inline(always)]
pub fn verify(
    keys: &TagKeys,
    tag: &Tag,
    server_addr: &[u8; 16],
    server_port: u16,
    tkey: u64,
    now_tai_s: u64,
    max_age_s: u32,
    max_future_s: u32,
) -> TagCheck {
    if tag.kind > KIND_CONTACT || tag.port == 0 || tag.v6 == is_v4_mapped(&tag.addr) {
        return TagCheck::Malformed;
    }
    let Some(k) = keys.accepted(tag.key_id) else {
        return TagCheck::UnknownKey;
    };
    // No overflow: made < 2^36, and the sums below stay far from 2^64 for any real clock.
    let made = tag.made_tai_s();
    if made > now_tai_s.saturating_add(max_future_s as u64) || now_tai_s > made + max_age_s as u64 {
        return TagCheck::Expired;
    }
    if mac(&k.key, tag, server_addr, server_port, tkey) != tag.mac {
        return TagCheck::BadMac;
    }
    TagCheck::Valid
}

// ---- SipHash-2-4 -------------------------------------------------------------------------

/// SipHash state (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012).
#[derive(Clone, Copy)]
struct Sip {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl Sip {
    #[inline(always)]
    fn new(key: &[u8; 16]) -> Sip {
        let (k0, k1) = words(key);
        Sip {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// One message word: two compression rounds (the "2" of 2-4).
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    /// The last block (length byte and tail), then four finalization rounds.
    #[inline(always)]
    fn finish(mut self, last: u64) -> u64 {
        self.compress(last);
        self.v2 ^= 0xff;
        let mut i = 0;
        while i < 4 {
            self.round();
            i += 1;
        }
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// SipHash-2-4 of a 48-byte message given as six little-endian words: the tag's MAC.
/// Equal to [`siphash24`] over the 48 bytes.
///
/// A BPF subprogram of its own (see "Fit for the BPF verifier" above); inlined elsewhere.
#[cfg_attr(target_arch = "bpf", inline(never))]
#[cfg_attr(not(target_arch = "bpf"), inline)]
pub fn siphash24_words(key: &[u8; 16], m: &[u64; 6]) -> u64 {
    let mut s = Sip::new(key);
    let mut i = 0;
    while i < 6 {
        s.compress(m[i]);
        i += 1;
    }
    s.finish((MESSAGE_LEN as u64) << 56)
}

/// SipHash-2-4 of any byte string (host side and tests; the XDP path uses
/// [`siphash24_words`]).
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let mut s = Sip::new(key);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        s.compress(u64::from_le_bytes(w));
    }
    let mut last = (data.len() as u64) << 56;
    for (i, b) in chunks.remainder().iter().enumerate() {
        last |= (*b as u64) << (8 * i);
    }
    s.finish(last)
}

// ---- hex ---------------------------------------------------------------------------------

/// Four lowercase hex digits at once (SWAR: one byte lane per digit, the first digit in
/// the top lane): their value, and a mask that is 0 only if all four are digits. No
/// branch, no table; 32-bit constants, which BPF instructions carry as immediates, where
/// 64-bit ones would each hold a register and push the decoder's values onto the stack.
///
/// Each test adds a per-lane constant below 0x80 to lanes below 0x80, so no carry crosses
/// a lane, and bit 7 of a lane says "at least k". A lane with bit 7 set makes the mask
/// nonzero by itself; its carries can spoil other lanes, which no longer matter.
#[inline(always)]
fn hex4(x: u32) -> (u32, u32) {
    const L01: u32 = 0x0101_0101;
    const L80: u32 = 0x8080_8080;
    let ge_0 = x.wrapping_add(L01 * (0x80 - 0x30)); // c >= '0'
    let gt_9 = x.wrapping_add(L01 * (0x80 - 0x3a)); // c > '9'
    let ge_a = x.wrapping_add(L01 * (0x80 - 0x61)); // c >= 'a'
    let gt_f = x.wrapping_add(L01 * (0x80 - 0x67)); // c > 'f'
    let digit = ge_0 & !gt_9;
    let alpha = ge_a & !gt_f & L80;
    let bad = (x & L80) | ((digit | alpha) & L80 ^ L80);
    // '0'..'9' are 0x30..0x39, 'a'..'f' 0x61..0x66: the low nibble, plus 9 for a letter.
    let mut v = (x & (L01 * 0x0f)) + (alpha >> 7) * 9;
    // Pack the four nibbles, top lane first: pairs into bytes, bytes into a u16.
    v = (v | v >> 4) & 0x00ff_00ff;
    v = (v | v >> 8) & 0x0000_ffff;
    (v, bad)
}

/// Eight digits (a big-endian word of characters): their value in the low 32 bits, and in
/// the high 32 a mask that is 0 only if all eight are digits (one register: what a BPF
/// call returns).
///
/// A BPF subprogram: called once per word, it keeps LLVM from interleaving the eight
/// words' arithmetic, which needs more than BPF's ten registers and spills 200 bytes.
#[cfg_attr(target_arch = "bpf", inline(never))]
#[cfg_attr(not(target_arch = "bpf"), inline(always))]
fn hex8(x: u64) -> u64 {
    let (hi, bad_hi) = hex4((x >> 32) as u32);
    let (lo, bad_lo) = hex4(x as u32);
    ((bad_hi | bad_lo) as u64) << 32 | (hi << 16 | lo) as u64
}

/// A tag value as the XDP program reads it from the packet: up to 64 characters in an
/// 8-aligned buffer, so [`decode_text`] loads whole words (one load and one byte swap per
/// eight digits) instead of single bytes. Bytes past the value's length are ignored.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct TagText {
    words: [u64; BUF_LEN / 8],
}

impl TagText {
    /// The words the XDP scanner fills (`rport_ebpf::scan::Scan::tag`), seen as a
    /// `TagText` in place: no 64-byte copy on a BPF stack that has 512 bytes in all.
    #[inline(always)]
    pub fn from_words(words: &[u64; BUF_LEN / 8]) -> &TagText {
        // SAFETY: TagText is repr(C) with `[u64; 8]` as its only field: same size,
        // alignment and validity.
        unsafe { &*(words as *const [u64; BUF_LEN / 8] as *const TagText) }
    }

    /// The characters, to fill (from the packet, or from a slice).
    #[inline(always)]
    pub fn bytes_mut(&mut self) -> &mut [u8; BUF_LEN] {
        // SAFETY: [u64; 8] and [u8; 64] have the same size, every bit pattern is valid for
        // both, and u8's alignment is 1.
        unsafe { &mut *(self.words.as_mut_ptr() as *mut [u8; BUF_LEN]) }
    }
}

/// Parses a tag value: exactly [`V4_LEN`] or [`V6_LEN`] lowercase hex digits, the `K`
/// digit's family matching the length. Anything else is `None`. For the host side; the
/// XDP program fills a [`TagText`] and calls [`decode_text`].
pub fn decode(s: &[u8]) -> Option<Tag> {
    let mut t = TagText::default();
    t.bytes_mut().get_mut(..s.len())?.copy_from_slice(s);
    decode_text(&t, s.len())
}

/// Two pad characters that are hex, in place of the last two of a big-endian word: the 38
/// and 62 digits of a tag both end six digits into their last word.
#[inline(always)]
fn pad_last(w: u64) -> u64 {
    (w & !0xffff) | 0x3030
}

/// [`decode`] of the first `len` characters of `t`.
#[inline(always)]
pub fn decode_text(t: &TagText, len: usize) -> Option<Tag> {
    let mut tag = Tag {
        addr: [0; 16],
        mac: 0,
        ts: 0,
        port: 0,
        key_id: 0,
        kind: 0,
        v6: false,
    };
    if decode_into(t, len, &mut tag) {
        Some(tag)
    } else {
        None
    }
}

/// [`decode_text`] into `out`, true if it is a tag.
///
/// One path for both families: the words are decoded eight digits at a time, validity
/// is a mask, and the family only picks which words hold the port and the MAC. In bytes
/// (two digits each), word `i` holds bytes `4i..4i+4`: the head is byte 0, TS bytes 1..5,
/// the address 5..9 or 5..21, then PORT (2) and MAC (8).
///
/// A BPF subprogram of its own (see "Fit for the BPF verifier" above); inlined elsewhere.
/// It writes through a pointer rather than returning `Option<Tag>`: the BTF of that
/// niche-filled enum is a union with a member at a nonzero offset, which the kernel
/// refuses, and a program whose BTF is refused loads without it, losing the func_info
/// that `bpf_loop` callbacks need ("missing btf func_info").
#[cfg_attr(target_arch = "bpf", inline(never))]
#[cfg_attr(not(target_arch = "bpf"), inline)]
pub fn decode_into(t: &TagText, len: usize, out: &mut Tag) -> bool {
    let v6 = len == V6_LEN;
    if !v6 && len != V4_LEN {
        return false;
    }
    let w = &t.words;
    let w4 = u64::from_be(w[4]);
    let w4 = if v6 { w4 } else { pad_last(w4) };
    // Each: the value in the low half, a nonzero high half for a non-digit.
    let d0 = hex8(u64::from_be(w[0]));
    let d1 = hex8(u64::from_be(w[1]));
    let d2 = hex8(u64::from_be(w[2]));
    let d3 = hex8(u64::from_be(w[3]));
    let d4 = hex8(w4);
    let (d5, d6, d7) = if v6 {
        (
            hex8(u64::from_be(w[5])),
            hex8(u64::from_be(w[6])),
            hex8(pad_last(u64::from_be(w[7]))),
        )
    } else {
        (0, 0, 0)
    };
    let bad = (d0 | d1 | d2 | d3 | d4 | d5 | d6 | d7) >> 32;
    let (c0, c1, c2, c3) = (d0 as u32, d1 as u32, d2 as u32, d3 as u32);
    let (c4, c5, c6, c7) = (d4 as u32, d5 as u32, d6 as u32, d7 as u32);
    let head = (c0 >> 24) as u8;
    if bad != 0 || (head & 0x80 != 0) != v6 {
        return false;
    }
    // Bytes 4i+1..4i+5: straddle words i and i+1.
    let mid = |a: u32, b: u32| (a << 8 | b >> 24).to_be_bytes();
    let mut addr = [0u8; 16];
    let (p, m1, m2) = if v6 {
        addr[..4].copy_from_slice(&mid(c1, c2));
        addr[4..8].copy_from_slice(&mid(c2, c3));
        addr[8..12].copy_from_slice(&mid(c3, c4));
        addr[12..].copy_from_slice(&mid(c4, c5));
        (c5, c6, c7)
    } else {
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&mid(c1, c2));
        (c2, c3, c4)
    };
    *out = Tag {
        key_id: (head >> 4) & 7,
        v6,
        kind: head & 0xf,
        ts: c0 << 8 | c1 >> 24,
        addr,
        port: (p >> 8) as u16,
        mac: ((p & 0xff) as u64) << 56 | (m1 as u64) << 24 | (m2 >> 8) as u64,
    };
    true
}

/// A tag value in a fixed buffer.
#[derive(Clone, Copy)]
pub struct TagBuf {
    buf: [u8; BUF_LEN],
    len: usize,
}

impl TagBuf {
    /// A value from its text (at most 64 bytes kept): for tests and tools; the daemon
    /// gets its values from [`encode`].
    pub fn from_text(t: &[u8]) -> TagBuf {
        let n = t.len().min(BUF_LEN);
        let mut b = TagBuf {
            buf: [0; BUF_LEN],
            len: n,
        };
        b.buf[..n].copy_from_slice(&t[..n]);
        b
    }

    /// The value's characters.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// How many characters.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Never true for an encoded tag.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for TagBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Only hex digits go in, so this is always UTF-8.
        f.write_str(core::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

/// Writes `digits` hex digits of `v` at `at`, most significant first.
fn put_hex(b: &mut TagBuf, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // One bounds check for the digits, not one per digit (a tag's 38 or 62 digits were a
    // third of the tag's cost); every tag fits, the loop below is for what would not.
    if let Some(out) = b.buf.get_mut(b.len..b.len + digits) {
        for (i, c) in out.iter_mut().enumerate() {
            *c = HEX[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
        b.len += digits;
        return;
    }
    let mut i = 0;
    while i < digits {
        let d = (v >> (4 * (digits - 1 - i))) & 0xf;
        if let Some(c) = b.buf.get_mut(b.len) {
            *c = HEX[d as usize];
            b.len += 1;
        }
        i += 1;
    }
}

/// The tag's value (the family from `tag.v6`: an IPv4 tag writes the last 4 address
/// bytes).
pub fn encode(tag: &Tag) -> TagBuf {
    let mut b = TagBuf {
        buf: [0; BUF_LEN],
        len: 0,
    };
    put_hex(&mut b, tag.head() as u64, 2);
    put_hex(&mut b, tag.ts as u64, 8);
    let (hi, lo) = (
        u64::from_be_bytes(tag.addr[..8].try_into().unwrap_or([0; 8])),
        u64::from_be_bytes(tag.addr[8..].try_into().unwrap_or([0; 8])),
    );
    if tag.v6 {
        put_hex(&mut b, hi, 16);
        put_hex(&mut b, lo, 16);
    } else {
        put_hex(&mut b, lo & 0xffff_ffff, 8);
    }
    put_hex(&mut b, tag.port as u64, 4);
    put_hex(&mut b, tag.mac, 16);
    b
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::{format, string::String, vec::Vec};

    /// `vectors_sip64` of the SipHash reference implementation (github.com/veorq/SipHash,
    /// vectors.h): key 00..0f, message 00..n-1, for n = 0..63, read as little-endian u64.
    /// n = 15 is the worked example of the paper's appendix A (0xa129ca6149be45e5).
    const REFERENCE: [u64; 64] = [
        0x726fdb47dd0e0e31,
        0x74f839c593dc67fd,
        0x0d6c8009d9a94f5a,
        0x85676696d7fb7e2d,
        0xcf2794e0277187b7,
        0x18765564cd99a68d,
        0xcbc9466e58fee3ce,
        0xab0200f58b01d137,
        0x93f5f5799a932462,
        0x9e0082df0ba9e4b0,
        0x7a5dbbc594ddb9f3,
        0xf4b32f46226bada7,
        0x751e8fbc860ee5fb,
        0x14ea5627c0843d90,
        0xf723ca908e7af2ee,
        0xa129ca6149be45e5,
        0x3f2acc7f57c29bdb,
        0x699ae9f52cbe4794,
        0x4bc1b3f0968dd39c,
        0xbb6dc91da77961bd,
        0xbed65cf21aa2ee98,
        0xd0f2cbb02e3b67c7,
        0x93536795e3a33e88,
        0xa80c038ccd5ccec8,
        0xb8ad50c6f649af94,
        0xbce192de8a85b8ea,
        0x17d835b85bbb15f3,
        0x2f2e6163076bcfad,
        0xde4daaaca71dc9a5,
        0xa6a2506687956571,
        0xad87a3535c49ef28,
        0x32d892fad841c342,
        0x7127512f72f27cce,
        0xa7f32346f95978e3,
        0x12e0b01abb051238,
        0x15e034d40fa197ae,
        0x314dffbe0815a3b4,
        0x027990f029623981,
        0xcadcd4e59ef40c4d,
        0x9abfd8766a33735c,
        0x0e3ea96b5304a7d0,
        0xad0c42d6fc585992,
        0x187306c89bc215a9,
        0xd4a60abcf3792b95,
        0xf935451de4f21df2,
        0xa9538f0419755787,
        0xdb9acddff56ca510,
        0xd06c98cd5c0975eb,
        0xe612a3cb9ecba951,
        0xc766e62cfcadaf96,
        0xee64435a9752fe72,
        0xa192d576b245165a,
        0x0a8787bf8ecb74b2,
        0x81b3e73d20b49b6f,
        0x7fa8220ba3b2ecea,
        0x245731c13ca42499,
        0xb78dbfaf3a8d83bd,
        0xea1ad565322a1a0b,
        0x60e61c23a3795013,
        0x6606d7e446282b93,
        0x6ca4ecb15c5f91e1,
        0x9f626da15c9625f3,
        0xe51b38608ef25f57,
        0x958a324ceb064572,
    ];

    fn ref_key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn siphash_reference_vectors() {
        let key = ref_key();
        let msg: Vec<u8> = (0..64u8).collect();
        for (n, want) in REFERENCE.iter().enumerate() {
            assert_eq!(siphash24(&key, &msg[..n]), *want, "length {n}");
        }
        // The lengths the brief names, spelled out.
        for n in [0, 1, 7, 8, 15, 48, 63] {
            assert_eq!(siphash24(&key, &msg[..n]), REFERENCE[n]);
        }
    }

    #[test]
    fn word_path_matches_reference_vector_48() {
        let m: [u64; 6] = core::array::from_fn(|i| {
            u64::from_le_bytes(core::array::from_fn(|j| (8 * i + j) as u8))
        });
        assert_eq!(siphash24_words(&ref_key(), &m), REFERENCE[48]);
    }

    fn sample_tag(v6: bool) -> Tag {
        let addr = if v6 {
            [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef,
            ]
        } else {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7]
        };
        Tag::new(3, KIND_VIA, addr, 32415, 1_700_000_000)
    }

    const SERVER: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 10];
    const TKEY: u64 = 0x1122_3344_5566_7788;
    const KEY: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn message_is_the_documented_48_bytes() {
        let t = Tag {
            mac: 0,
            ..sample_tag(false)
        };
        // Written out from the table in the module doc, not from `message`.
        let mut b = [0u8; 48];
        b[..16].copy_from_slice(&t.addr);
        b[16..32].copy_from_slice(&SERVER);
        b[32..34].copy_from_slice(&32415u16.to_be_bytes());
        b[34..36].copy_from_slice(&5060u16.to_be_bytes());
        b[36..40].copy_from_slice(&(1_700_000_000u32 >> 4).to_le_bytes());
        b[40..47].copy_from_slice(&TKEY.to_le_bytes()[..7]);
        b[47] = 0x30; // key id 3, IPv4, kind 0
        let m = message(&t, &SERVER, 5060, TKEY);
        let words: [u64; 6] =
            core::array::from_fn(|i| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap()));
        assert_eq!(m, words);
        assert_eq!(siphash24_words(&KEY, &m), siphash24(&KEY, &b));
    }

    proptest! {
        #[test]
        fn siphash_matches_siphasher(key: [u8; 16], data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let want = siphasher::sip::SipHasher24::new_with_key(&key).hash(&data);
            prop_assert_eq!(siphash24(&key, &data), want);
        }

        #[test]
        fn word_path_matches_siphasher(key: [u8; 16], m: [u64; 6]) {
            let mut bytes = [0u8; 48];
            for (i, w) in m.iter().enumerate() {
                bytes[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
            }
            let want = siphasher::sip::SipHasher24::new_with_key(&key).hash(&bytes);
            prop_assert_eq!(siphash24_words(&key, &m), want);
        }
    }

    /// One digit the slow way: the reference for [`hex8`].
    fn digit(c: u8) -> Option<u32> {
        match c {
            b'0'..=b'9' => Some((c - b'0') as u32),
            b'a'..=b'f' => Some((c - b'a' + 10) as u32),
            _ => None,
        }
    }

    fn split(d: u64) -> (u32, u32) {
        (d as u32, (d >> 32) as u32)
    }

    fn hex8_reference(w: [u8; 8]) -> (u32, bool) {
        let mut v = 0;
        for c in w {
            match digit(c) {
                Some(d) => v = v << 4 | d,
                None => return (0, false),
            }
        }
        (v, true)
    }

    #[test]
    fn hex8_accepts_exactly_lowercase_hex_in_every_lane() {
        let base = *b"0123abcd";
        for lane in 0..8 {
            for c in 0..=255u8 {
                let mut w = base;
                w[lane] = c;
                let (v, bad) = split(hex8(u64::from_be_bytes(w)));
                let (want, want_ok) = hex8_reference(w);
                assert_eq!(bad == 0, want_ok, "lane {lane} byte {c:#04x}");
                let ok = bad == 0;
                if ok {
                    assert_eq!(v, want, "lane {lane} byte {c:#04x}");
                }
            }
        }
        assert_eq!(
            split(hex8(u64::from_be_bytes(*b"0123abcd"))),
            (0x0123_abcd, 0)
        );
        assert_eq!(
            split(hex8(u64::from_be_bytes(*b"ffffffff"))),
            (0xffff_ffff, 0)
        );
        assert_eq!(split(hex8(u64::from_be_bytes(*b"00000000"))), (0, 0));
        // Two bad lanes whose carries could cancel out, and all-0xff.
        assert_ne!(split(hex8(u64::from_be_bytes(*b"\xff\x7f01abcd"))).1, 0);
        assert_ne!(split(hex8(u64::MAX)).1, 0);
    }

    proptest! {
        #[test]
        fn hex8_matches_the_slow_way(w: [u8; 8], pick in proptest::collection::vec(0usize..22, 8)) {
            // Half the lanes from the hex alphabet (plus neighbours), so valid words occur.
            const NEAR: &[u8; 22] = b"0123456789abcdef/:`gAF";
            let mut w = w;
            for (i, p) in pick.iter().enumerate() {
                if i % 2 == 0 || w[i] & 1 == 0 {
                    w[i] = NEAR[*p];
                }
            }
            let (v, bad) = split(hex8(u64::from_be_bytes(w)));
            let (want, want_ok) = hex8_reference(w);
            let ok = bad == 0;
            prop_assert_eq!(ok, want_ok);
            if ok {
                prop_assert_eq!(v, want);
            }
        }
    }

    fn text(b: &TagBuf) -> String {
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn encodes_the_documented_layout() {
        let t = Tag {
            key_id: 5,
            v6: false,
            kind: KIND_CONTACT,
            ts: 0x0123_abcd,
            addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7],
            port: 5060,
            mac: 0x0011_2233_4455_6677,
        };
        // 5 | 1: K, T; then TS, ADDR (cb.00.71.07), PORT (0x13c4), MAC.
        assert_eq!(
            text(&encode(&t)),
            concat!("51", "0123abcd", "cb007107", "13c4", "0011223344556677")
        );
        let t6 = Tag {
            key_id: 2,
            v6: true,
            kind: KIND_VIA,
            addr: [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef,
            ],
            ..t
        };
        // K = 2 | 8 (IPv6) = a.
        assert_eq!(
            text(&encode(&t6)),
            concat!(
                "a0",
                "0123abcd",
                "20010db8",
                "0000000000000000",
                "deadbeef",
                "13c4",
                "0011223344556677"
            )
        );
        assert_eq!(decode(encode(&t).as_bytes()), Some(t));
        assert_eq!(decode(encode(&t6).as_bytes()), Some(t6));
    }

    fn arb_tag() -> impl Strategy<Value = Tag> {
        (
            0u8..8,
            0u8..2,
            any::<u32>(),
            any::<[u8; 16]>(),
            any::<bool>(),
            any::<u16>(),
            any::<u64>(),
        )
            .prop_map(|(key_id, kind, ts, mut addr, v4, port, mac)| {
                if v4 {
                    addr[..10].fill(0);
                    addr[10] = 0xff;
                    addr[11] = 0xff;
                }
                Tag {
                    key_id,
                    v6: !is_v4_mapped(&addr),
                    kind,
                    ts,
                    addr,
                    port,
                    mac,
                }
            })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(t in arb_tag()) {
            let e = encode(&t);
            prop_assert_eq!(e.len(), if t.v6 { V6_LEN } else { V4_LEN });
            prop_assert!(e.as_bytes().iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            prop_assert_eq!(decode(e.as_bytes()), Some(t));
        }

        #[test]
        fn decode_never_panics(s in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(t) = decode(&s) {
                // Whatever it accepts, it gives back exactly.
                let e = encode(&t);
                prop_assert_eq!(e.as_bytes(), &s[..]);
            }
        }

        #[test]
        fn one_bad_character_is_refused(t in arb_tag(), pos in 0usize..62, c in any::<u8>()) {
            let mut s = encode(&t).as_bytes().to_vec();
            let pos = pos % s.len();
            prop_assume!(!matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            s[pos] = c;
            prop_assert_eq!(decode(&s), None);
        }
    }

    #[test]
    fn decode_text_reads_only_len_characters() {
        for v6 in [false, true] {
            let t = sample_tag(v6).sign(&KEY, &SERVER, 5060, TKEY);
            let e = encode(&t);
            let mut text = TagText::default();
            text.bytes_mut().fill(b'Z'); // not hex: must never be looked at
            text.bytes_mut()[..e.len()].copy_from_slice(e.as_bytes());
            assert_eq!(decode_text(&text, e.len()), Some(t));
            // The same characters under any other length are refused.
            for len in 0..=BUF_LEN {
                if len != e.len() {
                    assert_eq!(decode_text(&text, len), None, "v6 {v6} len {len}");
                }
            }
            assert_eq!(decode_text(&text, usize::MAX), None);
        }
        // Longer than the buffer: refused, not a panic.
        assert_eq!(decode(&[b'0'; BUF_LEN + 1]), None);
        assert_eq!(decode(&[b'0'; 1000]), None);
    }

    #[test]
    fn decode_is_strict() {
        let v4 = text(&encode(&sample_tag(false)));
        let v6 = text(&encode(&sample_tag(true)));
        assert!(decode(v4.as_bytes()).is_some());
        assert!(decode(v6.as_bytes()).is_some());
        assert_eq!(decode(b""), None);
        assert_eq!(decode(v4.to_uppercase().as_bytes()), None);
        assert_eq!(decode(v6.to_uppercase().as_bytes()), None);
        // One character short or long.
        assert_eq!(decode(&v4.as_bytes()[1..]), None);
        assert_eq!(decode((v4.clone() + "0").as_bytes()), None);
        assert_eq!(decode(&v6.as_bytes()[1..]), None);
        assert_eq!(decode((v6.clone() + "0").as_bytes()), None);
        // The family bit must match the length: an IPv4-length value with K = 8..f, and
        // an IPv6-length value with K = 0..7.
        let mut s = v4.into_bytes();
        s[0] = b'b';
        assert_eq!(decode(&s), None);
        let mut s = v6.into_bytes();
        s[0] = b'3';
        assert_eq!(decode(&s), None);
    }

    fn keys_with(slots: &[(u8, [u8; 16])]) -> TagKeys {
        let mut k = TagKeys {
            conf: TagConf::DEFAULT,
            ..TagKeys::default()
        };
        for (id, key) in slots {
            k.slots[*id as usize] = TagKey {
                key: *key,
                created_tai_s: 1,
                id: *id,
                valid: 1,
                _pad: [0; 6],
            };
            k.current = *id as u32;
        }
        k
    }

    const NOW: u64 = 1_700_000_000;

    fn check(keys: &TagKeys, t: &Tag, now: u64) -> TagCheck {
        let c = keys.conf;
        verify(
            keys,
            t,
            &SERVER,
            5060,
            TKEY,
            now,
            c.max_age(t.kind),
            c.max_future_s,
        )
    }

    #[test]
    fn a_signed_tag_verifies_through_its_text() {
        let keys = keys_with(&[(3, KEY)]);
        for v6 in [false, true] {
            let t = sample_tag(v6).sign(&KEY, &SERVER, 5060, TKEY);
            let back = decode(encode(&t).as_bytes()).unwrap();
            assert_eq!(check(&keys, &back, NOW), TagCheck::Valid);
        }
    }

    #[test]
    fn every_authenticated_field_is_checked() {
        let mut keys = keys_with(&[(3, KEY)]);
        // A second valid key, so a changed key id is a MAC failure, not an unknown key.
        keys.slots[4] = TagKey {
            id: 4,
            ..keys.slots[3]
        };
        let t = sample_tag(false).sign(&KEY, &SERVER, 5060, TKEY);
        let bad = |m: &dyn Fn(&mut Tag)| {
            let mut u = t;
            m(&mut u);
            check(&keys, &u, NOW)
        };
        assert_eq!(bad(&|u| u.addr[15] ^= 1), TagCheck::BadMac);
        assert_eq!(bad(&|u| u.port ^= 1), TagCheck::BadMac);
        assert_eq!(bad(&|u| u.ts -= 1), TagCheck::BadMac);
        assert_eq!(bad(&|u| u.kind = KIND_CONTACT), TagCheck::BadMac);
        assert_eq!(bad(&|u| u.key_id = 4), TagCheck::BadMac);
        assert_eq!(bad(&|u| u.mac ^= 1 << 63), TagCheck::BadMac);
        let c = keys.conf;
        let with = |addr: &[u8; 16], port, tkey| {
            verify(
                &keys,
                &t,
                addr,
                port,
                tkey,
                NOW,
                c.max_age_via_s,
                c.max_future_s,
            )
        };
        assert_eq!(with(&SERVER, 5060, TKEY), TagCheck::Valid);
        let mut other = SERVER;
        other[15] ^= 1;
        assert_eq!(with(&other, 5060, TKEY), TagCheck::BadMac);
        assert_eq!(with(&SERVER, 5061, TKEY), TagCheck::BadMac);
        assert_eq!(with(&SERVER, 5060, TKEY ^ 1), TagCheck::BadMac);
        assert_eq!(with(&SERVER, 5060, TKEY ^ 1 << 55), TagCheck::BadMac);
        // Documented: the top byte of the transaction key is not in the message.
        assert_eq!(with(&SERVER, 5060, TKEY ^ 1 << 56), TagCheck::Valid);
        // Another key in the same slot.
        let mut k2 = keys;
        k2.slots[3].key[0] ^= 1;
        assert_eq!(check(&k2, &t, NOW), TagCheck::BadMac);
    }

    #[test]
    fn unknown_keys() {
        let t = sample_tag(false).sign(&KEY, &SERVER, 5060, TKEY);
        assert_eq!(check(&keys_with(&[]), &t, NOW), TagCheck::UnknownKey);
        assert_eq!(
            check(&keys_with(&[(2, KEY)]), &t, NOW),
            TagCheck::UnknownKey
        );
        let mut keys = keys_with(&[(3, KEY)]);
        keys.slots[3].valid = 0;
        assert_eq!(check(&keys, &t, NOW), TagCheck::UnknownKey);
        // A slot whose id does not match its index is never used.
        let mut keys = keys_with(&[(3, KEY)]);
        keys.slots[3].id = 7;
        assert_eq!(check(&keys, &t, NOW), TagCheck::UnknownKey);
        assert!(keys.accepted(3).is_none());
    }

    #[test]
    fn age_limits_and_their_boundaries() {
        let keys = keys_with(&[(3, KEY)]);
        let t = sample_tag(false).sign(&KEY, &SERVER, 5060, TKEY);
        let made = t.made_tai_s();
        assert!(made <= NOW && NOW - made < 16);
        let max = defaults::MAX_AGE_VIA_S as u64;
        assert_eq!(check(&keys, &t, made + max), TagCheck::Valid);
        assert_eq!(check(&keys, &t, made + max + 1), TagCheck::Expired);
        let fut = defaults::MAX_FUTURE_S as u64;
        assert_eq!(check(&keys, &t, made - fut), TagCheck::Valid);
        assert_eq!(check(&keys, &t, made - fut - 1), TagCheck::Expired);
        assert_eq!(check(&keys, &t, 0), TagCheck::Expired);
        assert_eq!(check(&keys, &t, u64::MAX), TagCheck::Expired);
        // The kind picks the limit: a Contact tag of the same age is still good.
        let c = Tag {
            kind: KIND_CONTACT,
            ..sample_tag(false)
        }
        .sign(&KEY, &SERVER, 5060, TKEY);
        assert_eq!(check(&keys, &c, made + max + 1), TagCheck::Valid);
        let cmax = defaults::MAX_AGE_CONTACT_S as u64;
        assert_eq!(check(&keys, &c, made + cmax + 1), TagCheck::Expired);
        // An expired tag is refused before its MAC is looked at.
        let forged = Tag { mac: 0, ..t };
        assert_eq!(check(&keys, &forged, made + max + 1), TagCheck::Expired);
        assert_eq!(check(&keys, &forged, NOW), TagCheck::BadMac);
    }

    #[test]
    fn malformed_tags() {
        let keys = keys_with(&[(3, KEY)]);
        let t = sample_tag(false).sign(&KEY, &SERVER, 5060, TKEY);
        assert_eq!(
            check(&keys, &Tag { kind: 2, ..t }, NOW),
            TagCheck::Malformed
        );
        assert_eq!(
            check(&keys, &Tag { kind: 0xf, ..t }, NOW),
            TagCheck::Malformed
        );
        assert_eq!(
            check(&keys, &Tag { port: 0, ..t }, NOW),
            TagCheck::Malformed
        );
        // An IPv6 tag with an IPv4-mapped address, and the other way round.
        assert_eq!(
            check(&keys, &Tag { v6: true, ..t }, NOW),
            TagCheck::Malformed
        );
        let t6 = sample_tag(true).sign(&KEY, &SERVER, 5060, TKEY);
        assert_eq!(
            check(&keys, &Tag { v6: false, ..t6 }, NOW),
            TagCheck::Malformed
        );
        // What decode hands over for such a text: a 62-digit tag of a mapped address.
        let mut s = encode(&t6).into_owned_text();
        s.replace_range(10..42, "00000000000000000000ffffcb007107");
        let d = decode(s.as_bytes()).unwrap();
        assert_eq!(check(&keys, &d, NOW), TagCheck::Malformed);
    }

    impl TagBuf {
        fn into_owned_text(self) -> String {
            text(&self)
        }
    }

    #[test]
    fn current_and_accepted_keys() {
        let keys = keys_with(&[(1, KEY), (2, *b"fedcba9876543210")]);
        assert_eq!(keys.current_key().map(|k| k.id), Some(2));
        assert!(keys.accepted(1).is_some());
        assert!(keys.accepted(0).is_none());
        assert!(keys_with(&[]).current_key().is_none());
        // Ids beyond the slots are masked, never out of bounds.
        assert!(keys.accepted(9).is_none());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let keys = keys_with(&[(3, [0xab; 16])]);
        for s in [
            format!("{:?}", keys.slots[3]),
            format!("{keys:?}"),
            format!("{keys:#?}"),
        ] {
            assert!(s.contains("redacted"), "{s}");
            assert!(!s.contains("171"), "{s}"); // 0xab
            assert!(!s.to_lowercase().contains("ab, "), "{s}");
        }
    }
}
