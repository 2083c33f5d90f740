//! Steering-tag keys on the userspace side: made, stored in a file, rotated. Never logged.
//!
//! The XDP program checks tags against the `TAG_KEYS` map ([`TagKeys`], see
//! `rport_common::tag`); this module makes the keys and decides what goes in it. A key
//! file holds one key as 32 hex digits and a newline, readable by its owner only:
//! gateways that share a key file (and synchronized TAI clocks) accept each other's tags.
//! Rotation is pure: [`rotate`] turns the map value into the next one, where the new key
//! makes the tags and the previous one is still accepted, so no live tag breaks.
use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

use std::{
    cell::Cell,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};
use rport_common::tag::{KEY_SLOTS, TagKey, TagKeys};

/// A tag key. Its Debug shows no byte of it; it is never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 16]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A new random key from the kernel's CSPRNG (`getrandom(2)`).
    pub fn generate() -> Result<Key> {
        let mut k = [0u8; 16];
        let mut done = 0;
        while done < k.len() {
            // SAFETY: writes at most `k.len() - done` bytes into `k` from `done` on.
            let n = unsafe {
                libc::getrandom(
                    k[done..].as_mut_ptr() as *mut libc::c_void,
                    k.len() - done,
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("getrandom for a tag key");
            }
            done += n as usize;
        }
        Ok(Key(k))
    }

    /// A key from its bytes.
    pub fn from_bytes(b: [u8; 16]) -> Key {
        Key(b)
    }

    /// The key's bytes (for the map and for signing).
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The key file's text: 32 lowercase hex digits and a newline.
    fn file_text(&self) -> String {
        let mut s = String::with_capacity(33);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    /// Parses a key file's text: 32 hex digits, then an optional newline. The error never
    /// quotes the text (it may be a key).
    fn parse(text: &[u8]) -> Option<Key> {
        let t = text.strip_suffix(b"\n").unwrap_or(text);
        if t.len() != 32 {
            return None;
        }
        let mut k = [0u8; 16];
        for (i, pair) in t.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            k[i] = (hi << 4 | lo) as u8;
        }
        Some(Key(k))
    }
}

/// Reads a key file. Refuses one that group or others may access (the key would let them
/// forge tags, or replace it), one that is not a regular file, and bad contents.
pub fn load(path: &Path) -> Result<Key> {
    let f = File::open(path).with_context(|| format!("tag key file {}", path.display()))?;
    // The mode of the file opened, not of whatever the path names a moment later.
    let meta = f
        .metadata()
        .with_context(|| format!("tag key file {}", path.display()))?;
    if !meta.is_file() {
        bail!("tag key file {} is not a regular file", path.display());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "tag key file {} has mode {mode:04o}: group or others can access it (chmod 600 {})",
            path.display(),
            path.display()
        );
    }
    let mut text = Vec::with_capacity(34);
    // One byte more than a valid file has, to tell "too long" without reading a huge one.
    f.take(34)
        .read_to_end(&mut text)
        .with_context(|| format!("tag key file {}", path.display()))?;
    Key::parse(&text).with_context(|| {
        format!(
            "tag key file {}: expected 32 hex digits and a newline",
            path.display()
        )
    })
}

/// Writes a key file with mode 0600, replacing any old one at once (a new file renamed
/// over it: a reader never sees half a key).
pub fn store(path: &Path, key: &Key) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    // A leftover from an interrupted store: ours to remove.
    let _ = fs::remove_file(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        f.write_all(key.file_text().as_bytes())?;
        f.sync_all()?;
        fs::rename(tmp, path)
    };
    write().with_context(|| format!("tag key file {}", path.display()))
}

/// Reads the key file, or makes a new key and stores it there when there is none.
pub fn load_or_generate(path: &Path) -> Result<Key> {
    if path.exists() {
        return load(path);
    }
    let k = Key::generate()?;
    store(path, &k)?;
    Ok(k)
}

/// The key id a rotation gives the next key: the one after the current id.
pub fn next_id(keys: &TagKeys) -> u8 {
    ((keys.current + 1) % KEY_SLOTS as u32) as u8
}

/// The map value after a rotation to `key` at `now_tai_s`: `key` gets [`next_id`] and
/// becomes the current key, the current one stays accepted as the previous, every other
/// slot is emptied (key bytes zeroed). Rotating to the key already current changes
/// nothing, so reloading an unchanged key file keeps the previous key.
pub fn rotate(keys: &TagKeys, key: &Key, now_tai_s: u64) -> TagKeys {
    let current = keys.current_key().copied();
    if current.is_some_and(|c| c.key == key.0) {
        return *keys;
    }
    let id = next_id(keys);
    let mut out = *keys;
    for (i, slot) in out.slots.iter_mut().enumerate() {
        let keep = current.is_some_and(|c| c.id as usize == i);
        if !keep {
            *slot = TagKey {
                id: i as u8,
                ..TagKey::default()
            };
        }
    }
    out.slots[id as usize] = TagKey {
        key: key.0,
        created_tai_s: now_tai_s,
        id,
        valid: 1,
        _pad: [0; 6],
    };
    out.current = id as u32;
    out
}

/// The map value without the previous key: once every tag it made is past its age limit
/// (the longest of the kinds), keeping it only widens what a stolen old key could do.
pub fn retire_previous(keys: &TagKeys) -> TagKeys {
    let mut out = *keys;
    for (i, slot) in out.slots.iter_mut().enumerate() {
        if i as u32 != keys.current {
            *slot = TagKey {
                id: i as u8,
                ..TagKey::default()
            };
        }
    }
    out
}

/// Puts the tag key into the program's pinned `TAG_KEYS` map and returns the key that makes
/// new tags. The key is the one in `file` when given (gateways that share the file accept
/// each other's tags), else the one already pinned (a restart keeps it, so tags made before
/// stay valid), else a new random one. A new key is rotated in: the one it replaces stays
/// accepted for the life of its tags.
pub fn install(ebpf: &mut aya::Ebpf, file: Option<&Path>) -> Result<TagKey> {
    use rport_common::{maps, tag::TagConf};
    let mut m: aya::maps::Array<&mut aya::maps::MapData, TagKeys> =
        aya::maps::Array::try_from(ebpf.map_mut(maps::TAG_KEYS).context("TAG_KEYS")?)?;
    let old = m.get(&0, 0)?;
    let key = match (file, old.current_key()) {
        (Some(f), _) => load(f)?,
        (None, Some(k)) => Key(k.key),
        (None, None) => Key::generate()?,
    };
    let mut new = rotate(&old, &key, tai_now_s());
    if new.conf == TagConf::default() {
        new.conf = TagConf::DEFAULT;
    }
    if new != old {
        m.set(0, new, 0)?;
    }
    new.current_key()
        .copied()
        .context("no current tag key after install")
}

/// The key that makes new tags, shared by the control thread (which rotates it on SIGHUP)
/// and the forwarding threads (which read it): a generation number they check once per
/// request (one atomic load) and the key behind a lock taken only when it changed.
#[derive(Debug)]
pub struct CurrentKey {
    generation: AtomicU64,
    key: Mutex<TagKey>,
}

impl CurrentKey {
    pub fn new(key: TagKey) -> Arc<CurrentKey> {
        Arc::new(CurrentKey {
            generation: AtomicU64::new(0),
            key: Mutex::new(key),
        })
    }

    /// Makes `key` the one new tags are made with.
    pub fn set(&self, key: TagKey) {
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = key;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The key and its generation.
    fn get(&self) -> (u64, TagKey) {
        let g = self.generation.load(Ordering::Acquire);
        (g, *self.key.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Makes the Via tags of one forwarding thread: the current key (followed through
/// [`CurrentKey`]), and the TAI clock read once at start and advanced by the batch's
/// `Instant` (no clock read per packet).
pub struct Signer {
    shared: Arc<CurrentKey>,
    /// This thread's copy of the key and the generation it was read at.
    key: Cell<(u64, TagKey)>,
    base: std::time::Instant,
    base_tai_s: u64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key.get().1)
            .finish()
    }
}

impl Signer {
    pub fn new(shared: Arc<CurrentKey>) -> Signer {
        let key = Cell::new(shared.get());
        Signer {
            shared,
            key,
            base: std::time::Instant::now(),
            base_tai_s: tai_now_s(),
        }
    }

    /// The current key: this thread's copy, read again when a rotation changed it.
    fn key(&self) -> TagKey {
        let (g, k) = self.key.get();
        if self.shared.generation.load(Ordering::Acquire) == g {
            return k;
        }
        let now = self.shared.get();
        self.key.set(now);
        now.1
    }

    /// The `rptag` value that steers the responses of `server` back to `target` (the
    /// request's observed source), stamped `now`.
    pub fn via_tag(
        &self,
        target: (std::net::IpAddr, u16),
        server: (std::net::IpAddr, u16),
        now: std::time::Instant,
    ) -> rport_common::tag::TagBuf {
        use rport_common::{addr_to_16, tag};
        let key = self.key();
        let tai = self.base_tai_s + now.saturating_duration_since(self.base).as_secs();
        let t = tag::Tag::new(key.id, tag::KIND_VIA, addr_to_16(target.0), target.1, tai).sign(
            &key.key,
            &addr_to_16(server.0),
            server.1,
            0,
        );
        tag::encode(&t)
    }

    /// The `rptag` value for the Contact URIs of a message from `target` (its observed
    /// source) to `server`, stamped `now`: the requests the server later sends to that
    /// Contact are steered to `target`. Kind `KIND_CONTACT`, and server port 0: a
    /// registrar may send its INVITE from another socket than the one the REGISTER
    /// reached, so only the server's address is bound by the MAC (the verifier passes 0
    /// as well), and no transaction key (the requests it steers are other transactions).
    pub fn contact_tag(
        &self,
        target: (std::net::IpAddr, u16),
        server: std::net::IpAddr,
        now: std::time::Instant,
    ) -> rport_common::tag::TagBuf {
        use rport_common::{addr_to_16, tag};
        let key = self.key();
        let tai = self.base_tai_s + now.saturating_duration_since(self.base).as_secs();
        let t = tag::Tag::new(
            key.id,
            tag::KIND_CONTACT,
            addr_to_16(target.0),
            target.1,
            tai,
        )
        .sign(&key.key, &addr_to_16(server), 0, 0);
        tag::encode(&t)
    }
}

/// How long a previous key stays accepted after a rotation: as long as the longest-lived
/// tag it made (a Contact tag's age limit) may still be in use, and the clock skew a
/// gateway that shares the key may have.
pub fn overlap_s(keys: &TagKeys) -> u64 {
    keys.conf.max_age_via_s.max(keys.conf.max_age_contact_s) as u64 + keys.conf.max_future_s as u64
}

/// When (TAI seconds) the previous key may go ([`retire_previous`]): [`overlap_s`] after
/// the current key was made. `None` when there is no previous key.
pub fn retire_at(keys: &TagKeys) -> Option<u64> {
    let cur = keys.current_key()?;
    let others = keys
        .slots
        .iter()
        .any(|k| k.valid == 1 && k.id as u32 != keys.current);
    others.then(|| cur.created_tai_s + overlap_s(keys))
}

/// The pinned `TAG_KEYS` map's value, read and written.
fn tag_keys_map(
    ebpf: &mut aya::Ebpf,
) -> Result<aya::maps::Array<&mut aya::maps::MapData, TagKeys>> {
    Ok(aya::maps::Array::try_from(
        ebpf.map_mut(rport_common::maps::TAG_KEYS)
            .context("TAG_KEYS")?,
    )?)
}

/// `rport run`'s SIGHUP: reads the key file again; a changed key is rotated in (the
/// previous one stays accepted, see [`retire_at`]) and made current for new tags. Returns
/// the key that makes new tags, whether it changed, and the map value now. A file that
/// cannot be read changes nothing (the error says why).
pub fn reload(
    ebpf: &mut aya::Ebpf,
    file: &Path,
    current: &CurrentKey,
) -> Result<(TagKey, bool, TagKeys)> {
    let key = load(file)?;
    let mut m = tag_keys_map(ebpf)?;
    let old = m.get(&0, 0)?;
    let new = rotate(&old, &key, tai_now_s());
    let changed = new != old;
    if changed {
        m.set(0, new, 0)?;
    }
    let k = *new
        .current_key()
        .context("no current tag key after the reload")?;
    current.set(k);
    Ok((k, changed, new))
}

/// Drops the previous key from the pinned map once [`retire_at`] has passed; returns the
/// next time to look again (`None`: no previous key left).
pub fn retire_if_due(ebpf: &mut aya::Ebpf) -> Result<Option<u64>> {
    let mut m = tag_keys_map(ebpf)?;
    let keys = m.get(&0, 0)?;
    match retire_at(&keys) {
        Some(t) if t <= tai_now_s() => {
            m.set(0, retire_previous(&keys), 0)?;
            Ok(None)
        }
        other => Ok(other),
    }
}

/// TAI seconds now (`CLOCK_TAI`), the clock tags are stamped with.
pub fn tai_now_s() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec; CLOCK_TAI exists since Linux 3.10.
    unsafe { libc::clock_gettime(libc::CLOCK_TAI, &mut ts) };
    ts.tv_sec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rport_common::tag::{self, TagCheck, TagConf};
    use std::{os::unix::fs::PermissionsExt as _, path::PathBuf};

    /// A directory of its own, removed on drop (also when the test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("rport-keys-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir(&p).unwrap();
            TempDir(p)
        }
        fn file(&self, name: &str, text: &[u8], mode: u32) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const K1: [u8; 16] = [0x11; 16];
    const K2: [u8; 16] = [0x22; 16];
    const K3: [u8; 16] = [0x33; 16];

    #[test]
    fn generated_keys_are_random() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.bytes(), &[0; 16]);
        // Not a short read left as zeros: 16 random bytes have a zero tail of 4 bytes
        // one time in 2^32.
        assert_ne!(&a.bytes()[12..], &[0; 4]);
    }

    #[test]
    fn store_then_load_gives_the_key_back_with_mode_0600() {
        let d = TempDir::new("roundtrip");
        let p = d.0.join("tag.key");
        let k = Key::generate().unwrap();
        store(&p, &k).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.len(), 33);
        assert!(text.ends_with('\n'));
        assert!(
            text[..32]
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_eq!(load(&p).unwrap(), k);
        // Replacing it.
        let k2 = Key::from_bytes(K2);
        store(&p, &k2).unwrap();
        assert_eq!(load(&p).unwrap(), k2);
        assert!(!d.0.join("tag.key.tmp").exists());
    }

    #[test]
    fn load_reads_the_documented_format() {
        let d = TempDir::new("format");
        let hex = b"000102030405060708090a0b0c0d0e0f\n";
        let want: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(load(&d.file("a", hex, 0o600)).unwrap().bytes(), &want);
        // Without the newline, in capitals, read-only: all fine.
        assert_eq!(
            load(&d.file("b", &hex[..32], 0o400)).unwrap().bytes(),
            &want
        );
        let upper = b"000102030405060708090A0B0C0D0E0F\n";
        assert_eq!(load(&d.file("c", upper, 0o600)).unwrap().bytes(), &want);
    }

    #[test]
    fn load_refuses_bad_contents_without_quoting_them() {
        let d = TempDir::new("contents");
        let good = "00112233445566778899aabbccddeeff";
        for (name, text) in [
            ("short", &good[..31]),
            ("long", &(good.to_owned() + "0")[..]),
            ("nonhex", &good.replace('f', "g")[..]),
            ("empty", ""),
            ("twolines", &(good.to_owned() + "\n\n")[..]),
            ("space", &(" ".to_owned() + &good[1..])[..]),
            ("huge", &good.repeat(100)[..]),
        ] {
            let p = d.file(name, text.as_bytes(), 0o600);
            let e = format!("{:#}", load(&p).unwrap_err());
            assert!(e.contains(&p.display().to_string()), "{name}: {e}");
            assert!(e.contains("expected 32 hex digits"), "{name}: {e}");
            assert!(!e.contains("aabbcc"), "{name}: {e}");
            assert!(!e.contains('\n'), "{name}: {e}");
        }
    }

    #[test]
    fn load_refuses_a_file_others_can_read() {
        let d = TempDir::new("mode");
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o700 | 0o004, 0o620] {
            let p = d.file("k", b"00112233445566778899aabbccddeeff\n", mode);
            let e = format!("{:#}", load(&p).unwrap_err());
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains(&format!("{mode:04o}")), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.contains("aabbcc"), "{e}");
        }
        let p = d.file("k", b"00112233445566778899aabbccddeeff\n", 0o600);
        assert!(load(&p).is_ok());
    }

    #[test]
    fn load_refuses_what_is_not_a_file() {
        let d = TempDir::new("notfile");
        let e = format!("{:#}", load(&d.0).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let missing = d.0.join("missing");
        let e = format!("{:#}", load(&missing).unwrap_err());
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn load_or_generate_makes_the_file_once() {
        let d = TempDir::new("lazy");
        let p = d.0.join("tag.key");
        let a = load_or_generate(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let b = load_or_generate(&p).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = Key::from_bytes([0xab; 16]);
        let s = format!("{k:?} {k:#?}");
        assert!(s.contains("redacted"));
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab"),
            "{s}"
        );
        let keys = rotate(&TagKeys::default(), &k, 1);
        let s = format!("{keys:?}");
        assert!(!s.contains("171"), "{s}");
    }

    fn valid_ids(k: &TagKeys) -> Vec<u8> {
        k.slots
            .iter()
            .filter(|s| s.valid == 1)
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn rotation_keeps_the_previous_key_and_retires_the_one_before() {
        let k0 = TagKeys {
            conf: TagConf::DEFAULT,
            ..TagKeys::default()
        };
        let a = rotate(&k0, &Key::from_bytes(K1), 100);
        assert_eq!(a.current, 1);
        assert_eq!(valid_ids(&a), [1]);
        assert_eq!(a.current_key().unwrap().key, K1);
        assert_eq!(a.current_key().unwrap().created_tai_s, 100);
        assert_eq!(a.conf, TagConf::DEFAULT);

        let b = rotate(&a, &Key::from_bytes(K2), 200);
        assert_eq!(b.current, 2);
        assert_eq!(valid_ids(&b), [1, 2]);
        assert_eq!(b.accepted(1).unwrap().key, K1);
        assert_eq!(b.accepted(1).unwrap().created_tai_s, 100);

        let c = rotate(&b, &Key::from_bytes(K3), 300);
        assert_eq!(valid_ids(&c), [2, 3]);
        // The retired slot keeps no key bytes.
        assert_eq!(c.slots[1].key, [0; 16]);
        assert_eq!(c.slots[1].id, 1);
    }

    #[test]
    fn rotating_to_the_current_key_changes_nothing() {
        let a = rotate(&TagKeys::default(), &Key::from_bytes(K1), 100);
        let b = rotate(&a, &Key::from_bytes(K2), 200);
        assert_eq!(rotate(&b, &Key::from_bytes(K2), 300), b);
    }

    #[test]
    fn key_ids_wrap_after_seven() {
        let mut k = TagKeys::default();
        let mut ids = Vec::new();
        for i in 0..10u8 {
            k = rotate(&k, &Key::from_bytes([i + 1; 16]), i as u64);
            ids.push(k.current as u8);
            assert!(valid_ids(&k).len() <= 2);
        }
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]);
        assert_eq!(next_id(&k), 3);
    }

    #[test]
    fn retire_previous_leaves_the_current_key_only() {
        let a = rotate(&TagKeys::default(), &Key::from_bytes(K1), 100);
        let b = rotate(&a, &Key::from_bytes(K2), 200);
        let c = retire_previous(&b);
        assert_eq!(valid_ids(&c), [2]);
        assert_eq!(c.slots[1].key, [0; 16]);
        assert_eq!(c.current_key(), b.current_key());
    }

    #[test]
    fn tags_of_the_previous_key_verify_after_a_rotation() {
        let server = rport_common::addr_to_16("198.51.100.10".parse().unwrap());
        let target = rport_common::addr_to_16("203.0.113.7".parse().unwrap());
        let now = 1_700_000_000;
        let a = rotate(
            &TagKeys {
                conf: TagConf::DEFAULT,
                ..TagKeys::default()
            },
            &Key::from_bytes(K1),
            now,
        );
        let cur = *a.current_key().unwrap();
        let t = tag::Tag::new(cur.id, tag::KIND_VIA, target, 32415, now)
            .sign(&cur.key, &server, 5060, 9);
        let check = |k: &TagKeys| {
            tag::verify(
                k,
                &t,
                &server,
                5060,
                9,
                now,
                k.conf.max_age_via_s,
                k.conf.max_future_s,
            )
        };
        assert_eq!(check(&a), TagCheck::Valid);
        let b = rotate(&a, &Key::from_bytes(K2), now);
        assert_eq!(check(&b), TagCheck::Valid);
        let c = rotate(&b, &Key::from_bytes(K3), now);
        assert_eq!(check(&c), TagCheck::UnknownKey);
        assert_eq!(check(&retire_previous(&b)), TagCheck::UnknownKey);
    }

    /// A forwarding thread's signer follows a rotation: its next tag names the new key id
    /// (and verifies under the new map value), while a tag it made before still verifies.
    #[test]
    fn signer_follows_a_rotation_and_old_tags_stay_valid() {
        let server = ("198.51.100.10".parse().unwrap(), 5060);
        let target = ("203.0.113.7".parse().unwrap(), 32415);
        let keys_a = rotate(
            &TagKeys {
                conf: TagConf::DEFAULT,
                ..TagKeys::default()
            },
            &Key::from_bytes(K1),
            tai_now_s(),
        );
        let shared = CurrentKey::new(*keys_a.current_key().unwrap());
        let signer = Signer::new(shared.clone());
        let now = std::time::Instant::now();
        let decode = |b: &rport_common::tag::TagBuf| tag::decode(b.as_bytes()).unwrap();
        let old = decode(&signer.via_tag(target, server, now));
        // The rotation `reload` makes on SIGHUP after the key file changed.
        let keys_b = rotate(&keys_a, &Key::from_bytes(K2), tai_now_s());
        shared.set(*keys_b.current_key().unwrap());
        let new = decode(&signer.via_tag(target, server, now));
        assert_eq!(old.key_id, keys_a.current as u8);
        assert_eq!(new.key_id, keys_b.current as u8);
        assert_ne!(old.key_id, new.key_id);
        let check = |k: &TagKeys, t: &tag::Tag| {
            tag::verify(
                k,
                t,
                &rport_common::addr_to_16(server.0),
                server.1,
                0,
                tai_now_s(),
                k.conf.max_age_via_s,
                k.conf.max_future_s,
            )
        };
        assert_eq!(
            check(&keys_b, &old),
            TagCheck::Valid,
            "old tag after rotation"
        );
        assert_eq!(check(&keys_b, &new), TagCheck::Valid);
        assert_eq!(check(&keys_a, &new), TagCheck::UnknownKey);
        // Once retired, only the new key's tags steer.
        let keys_c = retire_previous(&keys_b);
        assert_eq!(check(&keys_c, &old), TagCheck::UnknownKey);
        assert_eq!(check(&keys_c, &new), TagCheck::Valid);
    }

    #[test]
    fn the_previous_key_retires_after_the_longest_tag_life() {
        let a = rotate(
            &TagKeys {
                conf: TagConf::DEFAULT,
                ..TagKeys::default()
            },
            &Key::from_bytes(K1),
            1000,
        );
        assert_eq!(retire_at(&a), None, "one key: nothing to retire");
        let b = rotate(&a, &Key::from_bytes(K2), 5000);
        // Contact tags live longest (a day), plus the clock skew allowed (60 s).
        assert_eq!(overlap_s(&b), 86_460);
        assert_eq!(retire_at(&b), Some(5000 + 86_460));
        assert_eq!(retire_at(&retire_previous(&b)), None);
    }

    #[test]
    fn contact_tags_verify_for_their_server_address_only_and_as_contact_tags() {
        let keys = rotate(
            &TagKeys {
                conf: TagConf::DEFAULT,
                ..TagKeys::default()
            },
            &Key::from_bytes(K1),
            100,
        );
        let signer = Signer::new(CurrentKey::new(*keys.current_key().unwrap()));
        let server: std::net::IpAddr = "198.51.100.10".parse().unwrap();
        for target in ["203.0.113.7:32415", "[2001:db8:1::60]:5062"] {
            let target: std::net::SocketAddr = target.parse().unwrap();
            let buf = signer.contact_tag(
                (target.ip(), target.port()),
                server,
                std::time::Instant::now(),
            );
            let t = tag::decode(buf.as_bytes()).unwrap();
            assert_eq!(t.kind, tag::KIND_CONTACT);
            assert_eq!(t.port, target.port());
            assert_eq!(t.addr, rport_common::addr_to_16(target.ip()));
            let check = |t: &tag::Tag, server: std::net::IpAddr, port: u16| {
                tag::verify(
                    &keys,
                    t,
                    &rport_common::addr_to_16(server),
                    port,
                    0,
                    tai_now_s(),
                    keys.conf.max_age(t.kind),
                    keys.conf.max_future_s,
                )
            };
            assert_eq!(check(&t, server, 0), TagCheck::Valid);
            // Bound to the server's address; its port is not in it (0), so one given fails.
            assert_eq!(
                check(&t, "198.51.100.11".parse().unwrap(), 0),
                TagCheck::BadMac
            );
            assert_eq!(check(&t, server, 5060), TagCheck::BadMac);
            // Not a Via tag.
            let via = tag::Tag {
                kind: tag::KIND_VIA,
                ..t
            };
            assert_eq!(check(&via, server, 0), TagCheck::BadMac);
        }
    }

    #[test]
    fn tai_clock_is_utc_plus_the_leap_seconds_offset() {
        let utc = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let tai = tai_now_s();
        // 0 when no time daemon set the kernel's TAI offset, 37 s since 2017 when one did.
        assert!(tai + 1 >= utc && tai <= utc + 38, "tai {tai} utc {utc}");
    }
}
