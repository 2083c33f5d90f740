//! Reading packet bytes: the only unsafe pointer work of the packet logic.

/// Something packet bytes can be read from. Offsets are from the start of the frame.
///
/// Implemented for the XDP context (with the `data + off + size <= data_end` check the
/// verifier needs before every access) and for `&[u8]` on the host.
pub trait Packet {
    /// Length of the frame in bytes.
    fn len(&self) -> usize;
    /// Reads a `T` at `off`, or `None` if it does not fit in the frame.
    fn read<T: Copy>(&self, off: usize) -> Option<T>;

    /// Reads one byte.
    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.read::<u8>(off)
    }
    /// Reads a big-endian (network order) u16.
    #[inline(always)]
    fn be16(&self, off: usize) -> Option<u16> {
        self.read::<[u8; 2]>(off).map(u16::from_be_bytes)
    }
}

impl Packet for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        let end = off.checked_add(core::mem::size_of::<T>())?;
        if end > <[u8]>::len(self) {
            return None;
        }
        // SAFETY: in bounds (checked above); read_unaligned because packet fields have no
        // alignment guarantee; T is only ever plain integer/byte-array data here.
        Some(unsafe { core::ptr::read_unaligned(self.as_ptr().add(off) as *const T) })
    }
}

/// Largest frame offset the XDP side will ever read. Bounding offsets keeps the verifier's
/// view of every variable packet offset finite.
pub const MAX_OFFSET: usize = 4096;
