//! Reading and changing packet bytes: the only unsafe pointer work of the packet logic.

mod sealed {
    pub trait Sealed {}
}

/// Types read from and written to packet bytes: integers and byte arrays, for which every
/// bit pattern is a valid value and which hold no pointer.
///
/// Why a trait of its own, sealed: [`Packet::read`] turns arbitrary bytes into a `T`; for
/// `bool`, `char`, an enum or a reference most bit patterns are undefined behaviour, and
/// `Copy` alone would let them in. Only this module implements it:
///
/// ```
/// use rport_ebpf::pkt::Packet;
/// let p: &[u8] = &[0x12, 0x34];
/// assert_eq!(p.read::<[u8; 2]>(0), Some([0x12, 0x34]));
/// ```
///
/// ```compile_fail
/// use rport_ebpf::pkt::Packet;
/// let p: &[u8] = &[2];
/// let _ = p.read::<bool>(0); // 2 is no bool: refused at compile time
/// ```
pub trait Plain: Copy + sealed::Sealed {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Plain for $t {}
    )*};
}
plain!(u8, u16, u32, u64);
impl<const N: usize> sealed::Sealed for [u8; N] {}
impl<const N: usize> Plain for [u8; N] {}

/// Something packet bytes can be read from. Offsets are from the start of the frame.
///
/// Implemented for the XDP context (with the `data + off + size <= data_end` check the
/// verifier needs before every access) and for `&[u8]` on the host.
pub trait Packet {
    /// Length of the frame in bytes.
    fn len(&self) -> usize;
    /// No bytes at all.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads a `T` at `off`, or `None` if it does not fit in the frame.
    fn read<T: Plain>(&self, off: usize) -> Option<T>;

    /// Reads a big-endian (network order) u16.
    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        self.read::<[u8; 2]>(off).map(u16::from_be_bytes)
    }
}

/// A [`Packet`] whose bytes can be changed in place (the steered response's destination).
pub trait PacketMut: Packet {
    /// The `N` bytes at `off`, or `None` if they do not all fit in the frame.
    ///
    /// A whole header at a time, not a field: every access then is a constant offset into
    /// one bounds-checked pointer, which the verifier follows whatever the compiler
    /// merges (it can prove one field's check from another's; the verifier cannot when
    /// the two pointers were computed apart).
    fn bytes_mut<const N: usize>(&mut self, off: usize) -> Option<&mut [u8; N]>;
}

impl Packet for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read<T: Plain>(&self, off: usize) -> Option<T> {
        let end = off.checked_add(core::mem::size_of::<T>())?;
        if end > <[u8]>::len(self) {
            return None;
        }
        // SAFETY: in bounds (checked above); read_unaligned because packet fields have no
        // alignment guarantee; `T: Plain` is valid for any bytes.
        Some(unsafe { core::ptr::read_unaligned(self.as_ptr().add(off) as *const T) })
    }
}

impl Packet for &mut [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read<T: Plain>(&self, off: usize) -> Option<T> {
        (&**self).read(off)
    }
}

impl PacketMut for &mut [u8] {
    fn bytes_mut<const N: usize>(&mut self, off: usize) -> Option<&mut [u8; N]> {
        let end = off.checked_add(N)?;
        self.get_mut(off..end)?.try_into().ok()
    }
}

/// Largest frame offset the XDP side will ever read. Bounding offsets keeps the verifier's
/// view of every variable packet offset finite.
pub const MAX_OFFSET: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_bounds() {
        let b: &[u8] = &[1, 2, 3, 4];
        assert_eq!(Packet::len(&b), 4);
        assert_eq!(b.read::<u8>(3), Some(4));
        assert_eq!(b.read::<u8>(4), None);
        assert_eq!(b.be16(2), Some(0x0304));
        assert_eq!(b.be16(3), None);
        assert_eq!(b.read::<[u8; 4]>(0), Some([1, 2, 3, 4]));
        assert_eq!(b.read::<[u8; 4]>(1), None);
        assert_eq!(b.read::<u32>(0), Some(u32::from_ne_bytes([1, 2, 3, 4])));
        assert_eq!(b.read::<u8>(usize::MAX), None);
        assert_eq!(b.read::<[u8; 2]>(usize::MAX - 1), None);
    }

    #[test]
    fn bytes_mut_in_bounds_only() {
        let mut buf = [0u8; 6];
        let mut b: &mut [u8] = &mut buf;
        *b.bytes_mut::<2>(4).unwrap() = [7, 8];
        assert_eq!(b.read::<[u8; 2]>(4), Some([7, 8]));
        // One byte past the end, or an offset that overflows: nothing.
        assert!(b.bytes_mut::<2>(5).is_none());
        assert!(b.bytes_mut::<1>(usize::MAX).is_none());
        assert_eq!(buf, [0, 0, 0, 0, 7, 8]);
    }
}
