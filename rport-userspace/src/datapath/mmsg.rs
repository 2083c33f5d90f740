//! A batch of datagrams for one `sendmmsg(2)` or `recvmmsg(2)`: the `mmsghdr`, `iovec`
//! and address arrays, allocated once and wired to each other, so that a batch costs one
//! syscall and no allocation. The frame sender ([`super::inject`]) sends with it; the
//! benchmark's load generator and responder (rport-tests) send and receive with it.
//!
//! The batch never owns the datagrams: [`MsgBatch::push`] keeps only their address, so it
//! is an `unsafe fn` whose contract says for how long they must stay put;
//! [`MsgBatch::send_all`] and [`MsgBatch::recv`] borrow theirs for the call, and are safe.
use std::{
    io,
    mem::size_of,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// What to do when the kernel refuses the datagram at the head of what is left to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Try it again (`EINTR`: nothing was sent).
    Retry,
    /// Count it as skipped and go on with the next one (no route, `EMSGSIZE`…).
    Skip,
    /// Give up on the batch: [`MsgBatch::send`] returns the error.
    Stop,
}

/// What one send did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams it refused and the caller chose to skip.
    pub skipped: u64,
}

/// Up to `capacity` datagrams, each with its peer address (IPv4 or IPv6).
///
/// The `mmsghdr`s point into `iovs` and `addrs`, boxed slices allocated once: they never
/// move (moving the batch moves only the boxes' pointers), so those pointers stay valid.
pub struct MsgBatch {
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    /// One slot per datagram, large enough for either family.
    addrs: Box<[libc::sockaddr_in6]>,
    /// Datagrams queued by `push` since the last send or clear.
    n: usize,
}

// SAFETY: the batch's own pointers point into its boxed arrays, which move with it; the
// datagram pointers `push` stores are covered by its contract (valid and unchanged until
// the next send or clear, wherever the batch is by then).
unsafe impl Send for MsgBatch {}

impl MsgBatch {
    /// A batch of at most `capacity` datagrams.
    pub fn new(capacity: usize) -> MsgBatch {
        // SAFETY: all-zero is a valid value of these C structs.
        let mut b = unsafe {
            MsgBatch {
                msgs: zeroed(capacity),
                iovs: zeroed(capacity),
                addrs: zeroed(capacity),
                n: 0,
            }
        };
        for i in 0..capacity {
            b.msgs[i].msg_hdr.msg_iov = &mut b.iovs[i];
            b.msgs[i].msg_hdr.msg_iovlen = 1;
            b.msgs[i].msg_hdr.msg_name = &mut b.addrs[i] as *mut _ as *mut libc::c_void;
        }
        b
    }

    /// Most datagrams one batch holds.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Datagrams queued since the last send or clear.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Forgets what is queued, unsent.
    pub fn clear(&mut self) {
        self.n = 0;
    }

    /// Queues the datagram `pkt` for `to`; false (and nothing queued) when the batch is full.
    ///
    /// # Safety
    ///
    /// The batch keeps only `pkt`'s address and length: the caller keeps `pkt` alive and
    /// unchanged until the next [`MsgBatch::send`] or [`MsgBatch::clear`] on this batch has
    /// returned (the kernel reads it during `send`).
    pub unsafe fn push(&mut self, pkt: &[u8], to: SocketAddr) -> bool {
        let i = self.n;
        if i == self.capacity() {
            return false;
        }
        self.iovs[i] = libc::iovec {
            iov_base: pkt.as_ptr() as *mut libc::c_void,
            iov_len: pkt.len(),
        };
        self.msgs[i].msg_hdr.msg_namelen = write_sockaddr(&mut self.addrs[i], to);
        self.n += 1;
        true
    }

    /// Queues the datagram `pkt` with no address, for a socket bound to where it goes (the
    /// AF_PACKET sender: [`super::inject`]); false (and nothing queued) when the batch is
    /// full.
    ///
    /// # Safety
    ///
    /// As [`MsgBatch::push`]: `pkt` stays alive and unchanged until the next send or clear.
    pub unsafe fn push_bound(&mut self, pkt: &[u8]) -> bool {
        let i = self.n;
        if i == self.capacity() {
            return false;
        }
        self.iovs[i] = libc::iovec {
            iov_base: pkt.as_ptr() as *mut libc::c_void,
            iov_len: pkt.len(),
        };
        // A zero length: the kernel takes no address (msg_name is ignored).
        self.msgs[i].msg_hdr.msg_namelen = 0;
        self.n += 1;
        true
    }

    /// Sends what is queued, in as few `sendmmsg` calls as the kernel allows, then clears
    /// the batch. `refused` decides about each datagram the kernel refuses.
    pub fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        mut refused: impl FnMut(&io::Error) -> Refused,
    ) -> io::Result<Sent> {
        let mut out = Sent::default();
        let mut at = 0;
        let n = std::mem::take(&mut self.n);
        while at < n {
            // SAFETY: msgs[at..n] were filled by `push`, whose contract keeps their datagrams
            // alive until this returns; the headers point into our own arrays.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.msgs[at..].as_mut_ptr(),
                    (n - at) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                out.sent += r as u64;
                at += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match refused(&e) {
                Refused::Retry => {}
                Refused::Skip => {
                    out.skipped += 1;
                    at += 1;
                }
                Refused::Stop => return Err(e),
            }
        }
        Ok(out)
    }

    /// Queues and sends `msgs` (datagram, peer), a batch at a time; the datagrams are
    /// borrowed only for the call. Whatever was queued before goes first.
    pub fn send_all<'a>(
        &mut self,
        fd: BorrowedFd<'_>,
        msgs: impl IntoIterator<Item = (&'a [u8], SocketAddr)>,
        mut refused: impl FnMut(&io::Error) -> Refused,
    ) -> io::Result<Sent> {
        let mut out = Sent::default();
        let mut add = |s: Sent| {
            out.sent += s.sent;
            out.skipped += s.skipped;
        };
        for (pkt, to) in msgs {
            if self.n == self.capacity() {
                add(self.send(fd, &mut refused)?);
            }
            // SAFETY: `pkt` is borrowed for this whole call, and the batch is sent before
            // it returns, on every path (an error clears it: `send` takes the count first).
            unsafe { self.push(pkt, to) };
        }
        add(self.send(fd, &mut refused)?);
        Ok(out)
    }

    /// Receives up to `bufs.len()` datagrams (at most the capacity) into `bufs`, one each,
    /// with `recvmmsg` `flags`; their lengths and sources are then [`MsgBatch::received`].
    /// Clears whatever was queued for sending.
    pub fn recv<B: AsMut<[u8]>>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &mut [B],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        self.n = 0;
        let k = bufs.len().min(self.capacity());
        for (i, b) in bufs[..k].iter_mut().enumerate() {
            let b = b.as_mut();
            self.iovs[i] = libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
            self.msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: entries 0..k point to `bufs`, borrowed mutably for this call, and to our
        // own address slots. The pointers stay behind when it returns but are never read
        // again: a send only uses entries refilled by `push`.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                k as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Length and source of datagram `i` of the last [`MsgBatch::recv`] (`i` below what it
    /// returned); no source if the kernel gave none of either family.
    pub fn received(&self, i: usize) -> (usize, Option<SocketAddr>) {
        let h = &self.msgs[i];
        let from = (h.msg_hdr.msg_namelen > 0)
            .then(|| read_sockaddr(&self.addrs[i]))
            .flatten();
        (h.msg_len as usize, from)
    }
}

/// `n` all-zero values.
///
/// # Safety
///
/// All-zero must be a valid `T` (a plain C struct).
unsafe fn zeroed<T>(n: usize) -> Box<[T]> {
    // SAFETY: the caller's promise.
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

/// Writes `to` into an address slot; returns its length.
fn write_sockaddr(slot: &mut libc::sockaddr_in6, to: SocketAddr) -> libc::socklen_t {
    match to {
        SocketAddr::V4(a) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            // SAFETY: a sockaddr_in (16 bytes, align 4) fits in the sockaddr_in6 slot (28
            // bytes, align 4); the kernel reads `namelen` bytes of it.
            unsafe { (slot as *mut libc::sockaddr_in6 as *mut libc::sockaddr_in).write(sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // Every field written: the slot may have held an IPv4 address before.
            *slot = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The address the kernel wrote into a slot, if of a family we know.
fn read_sockaddr(slot: &libc::sockaddr_in6) -> Option<SocketAddr> {
    match slot.sin6_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in here (its family says so), which fits.
            let sin = unsafe { &*(slot as *const libc::sockaddr_in6 as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(slot.sin6_addr.s6_addr),
            u16::from_be(slot.sin6_port),
            slot.sin6_flowinfo,
            slot.sin6_scope_id,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsFd as _, time::Duration};

    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (UdpSocket::bind("127.0.0.1:0").unwrap(), rx)
    }

    #[test]
    fn sends_and_receives_a_batch_with_addresses() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        let msgs: [&[u8]; 3] = [b"one", b"second", b"third one"];
        let mut b = MsgBatch::new(2);
        // Three datagrams through a batch of two: two sendmmsg calls.
        let s = b
            .send_all(tx.as_fd(), msgs.iter().map(|m| (*m, to)), |_| Refused::Stop)
            .unwrap();
        assert_eq!(
            s,
            Sent {
                sent: 3,
                skipped: 0
            }
        );
        let mut bufs = [[0u8; 64]; 4];
        let mut r = MsgBatch::new(4);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = r.recv(rx.as_fd(), &mut bufs, libc::MSG_WAITFORONE).unwrap();
            for (i, buf) in bufs.iter().enumerate().take(n) {
                let (len, from) = r.received(i);
                assert_eq!(from, Some(tx.local_addr().unwrap()));
                got.push(buf[..len].to_vec());
            }
        }
        assert_eq!(got, msgs.map(<[u8]>::to_vec));
    }

    #[test]
    fn a_refused_datagram_is_skipped_or_stops_the_batch() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        // An IPv6 peer on an IPv4 socket: refused at once, whatever the network.
        let bad: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        let msgs = [(&b"a"[..], to), (&b"b"[..], bad), (&b"c"[..], to)];
        let mut b = MsgBatch::new(8);
        let mut errors = 0;
        let s = b
            .send_all(tx.as_fd(), msgs, |_| {
                errors += 1;
                Refused::Skip
            })
            .unwrap();
        assert_eq!(
            (s, errors),
            (
                Sent {
                    sent: 2,
                    skipped: 1
                },
                1
            )
        );
        assert!(b.is_empty());
        let mut buf = [0u8; 8];
        for want in [b"a", b"c"] {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
        assert!(b.send_all(tx.as_fd(), msgs, |_| Refused::Stop).is_err());
        assert!(b.is_empty(), "an error leaves nothing queued");
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a", "what went before the refusal was sent");
    }

    #[test]
    fn a_full_batch_takes_no_more() {
        let mut b = MsgBatch::new(1);
        let to: SocketAddr = "192.0.2.1:9".parse().unwrap();
        let pkt = [0u8; 4];
        // SAFETY: `pkt` outlives the batch, which is never sent.
        unsafe {
            assert!(b.push(&pkt, to));
            assert!(!b.push(&pkt, to));
        }
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn addresses_round_trip_through_a_slot() {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut slot: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        for a in [
            "[2001:db8::5]:5062",
            "203.0.113.7:32415",
            "[2001:db8::6]:5060",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let len = write_sockaddr(&mut slot, a);
            assert_eq!(len as usize, if a.is_ipv4() { 16 } else { 28 });
            assert_eq!(read_sockaddr(&slot), Some(a));
        }
        // An IPv6 address written over an IPv4 one leaves nothing of it behind.
        assert_eq!(slot.sin6_flowinfo, 0);
    }
}
