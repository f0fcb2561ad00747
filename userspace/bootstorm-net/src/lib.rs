//! The portable I/O path: IPv4 UDP sockets that receive and send in batches.
//!
//! [`UdpSocket4`] wraps `recvmmsg(2)` and `sendmmsg(2)` so a worker moves up to [`BATCH`]
//! datagrams per system call, and `IP_PKTINFO` so it learns which interface a broadcast came in
//! on and can send a broadcast reply out of that same interface with the right source address
//! (as dnsmasq does). `SO_REUSEPORT` lets several workers bind the same port; the kernel spreads
//! datagrams over them by a hash of the source address and port.
//!
//! This is the only crate on the socket path with `unsafe`: socket set-up and the two batch
//! system calls (control messages are read and written in safe code). Each unsafe block says
//! why it is sound; buffers handed to the kernel are owned by
//! [`RecvBatch`] / [`SendBatch`] and outlive the call. What it deliberately is not: a protocol
//! handler (it knows nothing of DHCP) or an async runtime (workers block with a timeout).

mod batch;
mod cmsg;
pub mod packet;
pub mod wake;

pub use batch::{RecvBatch, RxInfo, SendBatch};
use cmsg::*;

use std::ffi::CString;
use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Datagrams per system call. 32 covers a burst of broadcasts from a rack powering on while
/// keeping a worker's latency per wake-up bounded (32 DHCP replies take ~0.3 ms to build).
pub const BATCH: usize = 32;
/// Bytes per buffer: a full Ethernet MTU payload.
pub const BUF_LEN: usize = 1500;

/// How a socket is set up.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// Address and port to bind.
    pub bind: SocketAddrV4,
    /// Bind to this interface only (`SO_BINDTODEVICE`).
    pub interface: Option<String>,
    /// Let several sockets bind the same port (`SO_REUSEPORT`; on port 0, the first of a group
    /// takes a port the others then bind). `SO_REUSEADDR` is set on fixed ports only: on port 0
    /// the kernel may hand one ephemeral port to two sockets that both allow sharing, and each
    /// would get the other's datagrams; so leave this off for a socket of its own.
    pub reuse_port: bool,
    /// How long a receive blocks before returning empty-handed, so workers can notice shutdown.
    pub recv_timeout: Duration,
}

/// An IPv4 UDP socket with batched receive and send.
#[derive(Debug)]
pub struct UdpSocket4 {
    fd: OwnedFd,
}

impl AsRawFd for UdpSocket4 {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` for the duration of the call and its size is passed;
    // the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Binds `fd` to `addr`, a plain C socket address (`sockaddr_in`, `sockaddr_ll`).
fn bind_to<T>(fd: RawFd, addr: &T) -> io::Result<()> {
    // SAFETY: `addr` points to a live socket address of type `T` for the duration of the call
    // and its size is passed; the kernel only reads it.
    cvt(unsafe {
        libc::bind(
            fd,
            (addr as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A receive buffer for a boot storm. It arrives in bursts: 20,000 DISCOVERs at once
/// overflowed a 4 MiB buffer 9,598 times (each queued datagram is charged ~1.3 KB). With
/// CAP_NET_ADMIN the buffer may pass net.core.rmem_max (SO_RCVBUFFORCE, 32 MiB); otherwise it
/// asks 4 MiB and the kernel caps it there. Only what is queued is charged, so an idle socket
/// costs nothing for it.
fn set_storm_recv_buffer(fd: RawFd) -> io::Result<()> {
    let force: libc::c_int = 32 << 20;
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &force).is_err() {
        let size: libc::c_int = 4 << 20;
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
    }
    Ok(())
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
        u16::from_be(s.sin_port),
    )
}

/// `UDP_SEGMENT` from `linux/udp.h` (not in every libc target's constants).
const UDP_SEGMENT: libc::c_int = 103;

/// Most segments the kernel accepts in one segmented send (`UDP_MAX_SEGMENTS` was 64 before
/// Linux 6.9; 64 is safe everywhere).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes of UDP payload in one segmented send over IPv4 (the IP length field is 16 bits).
pub const GSO_MAX_BYTES: usize = 65_507;

/// Turns on UDP generic segmentation offload for `sock` (Linux 4.18+): a send longer than
/// `segment` bytes leaves as datagrams of `segment` bytes, the last one possibly shorter, built
/// once by the stack instead of once per datagram; a send of at most `segment` bytes is one
/// datagram as before. 0 turns it off. A device without checksum offload makes segmented sends
/// fail with EIO, so callers keep a per-datagram fallback.
pub fn set_udp_segment(sock: &impl AsRawFd, segment: u16) -> io::Result<()> {
    let v = libc::c_int::from(segment);
    setsockopt(sock.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, &v)
}

const UDP_GRO: libc::c_int = 104;

/// A failed receive that only means nothing came: non-blocking and empty, the receive timeout
/// passed, or a signal.
fn nothing_queued(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Turns on UDP generic receive offload for `sock` (Linux 5.0+): datagrams of one flow may be
/// handed over together as one buffer of equal-sized segments (the last possibly shorter), with
/// the segment size in a control message; see [`UdpSocket4::recv_gro`]. Over a veth the
/// segmented sends of a GSO sender arrive this way whole.
pub fn set_udp_gro(sock: &impl AsRawFd, on: bool) -> io::Result<()> {
    let v = libc::c_int::from(on);
    setsockopt(sock.as_raw_fd(), libc::SOL_UDP, UDP_GRO, &v)
}

/// A buffer for [`UdpSocket4::recv_gro`]: room for the largest coalesced receive.
pub struct GroBuf {
    data: Box<[u8; 65_536]>,
    cmsg: CmsgBuf,
}

impl Default for GroBuf {
    fn default() -> GroBuf {
        GroBuf {
            data: Box::new([0; 65_536]),
            cmsg: CmsgBuf([0; CMSG_LEN]),
        }
    }
}

/// What [`UdpSocket4::recv_gro`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroRecv {
    /// Bytes in the buffer.
    pub len: usize,
    /// Size of each datagram in it (the last may be shorter); `len` if it is one datagram.
    pub segment: usize,
    /// Where they came from.
    pub src: SocketAddrV4,
}

impl GroBuf {
    /// The datagrams of a receive, in order.
    pub fn datagrams(&self, r: &GroRecv) -> impl Iterator<Item = &[u8]> {
        self.data[..r.len.min(self.data.len())].chunks(r.segment.max(1))
    }
}

fn parse_gro(buf: &[u8]) -> Option<usize> {
    let d = find_cmsg(buf, libc::SOL_UDP, UDP_GRO, 4)?;
    let v = i32::from_ne_bytes(d[..4].try_into().ok()?);
    usize::try_from(v).ok().filter(|v| *v > 0)
}

/// Whether a failed segmented send means the device cannot segment (EIO), so the caller should
/// fall back to one datagram per send.
pub fn gso_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

/// The index of interface `name`, if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that lives through the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl UdpSocket4 {
    /// Creates and binds a socket.
    pub fn bind(opts: &SocketOptions) -> io::Result<UdpSocket4> {
        // SAFETY: plain system call with constant arguments; the result is checked.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        if opts.bind.port() != 0 {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
        }
        if opts.reuse_port {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one)?;
        }
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_BROADCAST, &one)?;
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, &one)?;
        set_storm_recv_buffer(raw)?;
        let tv = libc::timeval {
            tv_sec: opts.recv_timeout.as_secs() as libc::time_t,
            tv_usec: opts.recv_timeout.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        if let Some(name) = &opts.interface {
            let c = CString::new(name.as_str())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: `c` is NUL-terminated and outlives the call; the length includes the NUL.
            cvt(unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    c.as_ptr().cast(),
                    c.as_bytes_with_nul().len() as libc::socklen_t,
                )
            })?;
        }
        bind_to(raw, &sockaddr(opts.bind))?;
        Ok(UdpSocket4 { fd })
    }

    /// Has the kernel drop every datagram that came in a link-layer broadcast or multicast frame
    /// before it reaches this socket (a classic BPF socket filter on the frame's packet type), so
    /// the socket neither queues nor wakes for it. For all but one socket of a `SO_REUSEPORT`
    /// group: Linux hands every broadcast to every socket of the group. A datagram to one of our
    /// addresses in a link broadcast frame (no DHCP client or relay sends one) is dropped too if
    /// the kernel's hash picks this socket for it.
    pub fn drop_link_broadcasts(&self) -> io::Result<()> {
        // ld [SKF_AD_OFF + SKF_AD_PKTTYPE]; jeq PACKET_BROADCAST -> drop; jeq PACKET_MULTICAST
        // -> drop; ret all; drop: ret 0.
        const SKF_AD_PKTTYPE: u32 = (-0x1000i32) as u32 + 4;
        let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        let prog = [
            insn(0x20, 0, 0, SKF_AD_PKTTYPE), // BPF_LD | BPF_W | BPF_ABS
            insn(0x15, 2, 0, libc::PACKET_BROADCAST as u32), // BPF_JMP | BPF_JEQ | BPF_K
            insn(0x15, 1, 0, libc::PACKET_MULTICAST as u32), // BPF_JMP | BPF_JEQ | BPF_K
            insn(0x06, 0, 0, u32::MAX),       // BPF_RET | BPF_K: keep
            insn(0x06, 0, 0, 0),              // BPF_RET | BPF_K: drop
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr().cast_mut(),
        };
        // The kernel copies the program during the call; `prog` outlives it.
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog,
        )
    }

    /// Switches non-blocking mode: a receive with nothing queued returns 0 at once (for
    /// callers that poll many sockets, such as the load generator).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let flags = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL) })?;
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, flags) })?;
        Ok(())
    }

    /// The bound address (with the port the kernel chose, if 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `sa` and `len` are valid for writes and `len` holds the buffer size.
        cvt(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        })?;
        Ok(from_sockaddr(&sa))
    }

    /// Receives up to [`BATCH`] datagrams into `batch`, blocking until at least one arrives or the
    /// receive timeout passes (then returns 0).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.recv_batch_flags(batch, libc::MSG_WAITFORONE)
    }

    /// Like [`UdpSocket4::recv_batch`], but returns 0 at once if nothing is queued, while the
    /// socket stays blocking for sends (a full send buffer then waits instead of dropping a
    /// reply).
    pub fn recv_batch_nowait(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.recv_batch_flags(batch, libc::MSG_DONTWAIT)
    }

    fn recv_batch_flags(&self, batch: &mut RecvBatch, flags: libc::c_int) -> io::Result<usize> {
        batch.len = 0;
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
        for i in 0..BATCH {
            iovs[i].write(libc::iovec {
                iov_base: batch.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF_LEN,
            });
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iovs[i].as_mut_ptr();
            h.msg_iovlen = 1;
            h.msg_control = batch.cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_LEN as _;
        }
        // SAFETY: every pointer in `hdrs` refers to `batch`'s buffers or `iovs`, all of which
        // live until this function returns and are not otherwise borrowed; lengths match.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if nothing_queued(&e) { Ok(0) } else { Err(e) };
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            let mut meta = RxInfo {
                src: from_sockaddr(&batch.addrs[i]),
                len: (h.msg_len as usize).min(BUF_LEN),
                ifindex: 0,
                dst: Ipv4Addr::UNSPECIFIED,
                local: Ipv4Addr::UNSPECIFIED,
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
            let clen = h.msg_hdr.msg_controllen.min(CMSG_LEN);
            if let Some(p) = parse_pktinfo(&batch.cmsgs[i].0[..clen]) {
                meta.ifindex = p.ifindex;
                meta.dst = p.dst;
                meta.local = p.spec_dst;
            }
            batch.info[i] = meta;
        }
        batch.len = n;
        Ok(n)
    }

    /// Receives one buffer, which with [`set_udp_gro`] on may hold several datagrams of one
    /// sender (see [`GroBuf::datagrams`]). `None` if nothing is queued (non-blocking) or the
    /// receive timed out.
    pub fn recv_gro(&self, b: &mut GroBuf) -> io::Result<Option<GroRecv>> {
        // SAFETY: all-zero is a valid sockaddr_in and msghdr.
        let mut addr: libc::sockaddr_in = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: b.data.as_mut_ptr().cast(),
            iov_len: b.data.len(),
        };
        // SAFETY: as above.
        let mut h: libc::msghdr = unsafe { zeroed() };
        h.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        h.msg_control = b.cmsg.0.as_mut_ptr().cast();
        h.msg_controllen = CMSG_LEN as _;
        // SAFETY: every pointer in `h` refers to `addr`, `iov` or `b`'s buffers, which live
        // until this function returns and are not otherwise borrowed; lengths match.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut h, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if nothing_queued(&e) { Ok(None) } else { Err(e) };
        }
        let len = n as usize;
        let clen = (h.msg_controllen as usize).min(CMSG_LEN);
        let segment = parse_gro(&b.cmsg.0[..clen]).unwrap_or(len);
        Ok(Some(GroRecv {
            len,
            segment,
            src: from_sockaddr(&addr),
        }))
    }

    /// Sends every datagram queued in `batch` (as many system calls as needed) and empties it.
    /// Returns how many were sent; a datagram the kernel refuses (e.g. no route) is skipped and
    /// counted in `failed`.
    pub fn send_batch(&self, batch: &mut SendBatch) -> io::Result<SendResult> {
        let mut result = SendResult::default();
        let total = batch.len;
        let mut start = 0;
        while start < total {
            let count = total - start;
            // SAFETY: all-zero is a valid value for these plain C structs.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
            let mut names: [MaybeUninit<libc::sockaddr_in>; BATCH] = [MaybeUninit::uninit(); BATCH];
            for k in 0..count {
                let i = start + k;
                let e = batch.entries[i];
                iovs[k].write(libc::iovec {
                    iov_base: batch.bufs[i].as_mut_ptr().cast(),
                    iov_len: e.len,
                });
                names[k].write(sockaddr(e.dst));
                let h = &mut hdrs[k].msg_hdr;
                h.msg_name = names[k].as_mut_ptr().cast();
                h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = iovs[k].as_mut_ptr();
                h.msg_iovlen = 1;
                if e.ifindex != 0 || !e.src.is_unspecified() {
                    let cm = &mut batch.cmsgs[i];
                    let n = write_pktinfo(&mut cm.0, e.ifindex, e.src);
                    h.msg_control = cm.0.as_mut_ptr().cast();
                    h.msg_controllen = n as _;
                }
            }
            // SAFETY: the first `count` headers point to `iovs`, `names` (initialised above) and
            // `batch`'s buffers, all alive and unborrowed for the duration of the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram failed (e.g. ENETUNREACH): skip it and go on with the rest.
                result.failed += 1;
                result.last_error = Some(e);
                start += 1;
                continue;
            }
            result.sent += n as usize;
            start += (n as usize).max(1);
        }
        batch.len = 0;
        Ok(result)
    }
}

/// What a send did.
#[derive(Debug, Default)]
pub struct SendResult {
    /// Datagrams sent.
    pub sent: usize,
    /// Datagrams the kernel refused.
    pub failed: usize,
    /// The last refusal.
    pub last_error: Option<io::Error>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(port: u16) -> UdpSocket4 {
        UdpSocket4::bind(&SocketOptions {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            interface: None,
            reuse_port: true,
            recv_timeout: Duration::from_millis(200),
        })
        .unwrap()
    }

    #[test]
    fn ephemeral_ports_are_never_shared() {
        // With SO_REUSEADDR on port 0 the kernel handed the same port to two of a few hundred
        // sockets (a load generator's downloads then got each other's data). 900: under the
        // usual limit of 1,024 open files; with the old options 7-17 of them shared a port.
        let socks: Vec<UdpSocket4> = (0..900)
            .map(|_| {
                UdpSocket4::bind(&SocketOptions {
                    bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
                    interface: None,
                    reuse_port: false,
                    recv_timeout: Duration::ZERO,
                })
                .unwrap()
            })
            .collect();
        let mut ports: Vec<u16> = socks
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), socks.len());
    }

    #[test]
    fn batch_round_trip_over_loopback_with_pktinfo() {
        let a = sock(0);
        let b = sock(0);
        let b_addr = b.local_addr().unwrap();
        let mut tx = SendBatch::default();
        for i in 0..40u8 {
            if tx.is_full() {
                assert_eq!(a.send_batch(&mut tx).unwrap().sent, BATCH);
            }
            tx.next_buf()[..3].copy_from_slice(&[i, i, i]);
            tx.commit(3, b_addr, 0, Ipv4Addr::UNSPECIFIED);
        }
        assert_eq!(a.send_batch(&mut tx).unwrap().sent, 8);
        let mut rx = RecvBatch::default();
        let mut got = Vec::new();
        for _ in 0..10 {
            let n = b.recv_batch(&mut rx).unwrap();
            for i in 0..n {
                let (data, info) = rx.get(i);
                assert_eq!(info.src, a.local_addr().unwrap());
                assert_eq!(info.dst, Ipv4Addr::LOCALHOST);
                assert_ne!(info.ifindex, 0);
                got.push(data[0]);
            }
            if got.len() == 40 {
                break;
            }
        }
        assert_eq!(got, (0..40).collect::<Vec<u8>>());
    }

    #[test]
    fn gro_receives_a_segmented_send_whole_and_splits_it() {
        let (a, b) = (sock(0), sock(0));
        let b_addr = b.local_addr().unwrap();
        set_udp_segment(&a, 100).unwrap();
        let send = |tx: &mut SendBatch| {
            for (i, chunk) in tx.next_buf()[..250].chunks_mut(100).enumerate() {
                chunk.fill(i as u8);
            }
            tx.commit(250, b_addr, 0, Ipv4Addr::UNSPECIFIED);
            assert_eq!(a.send_batch(tx).unwrap().sent, 1);
        };
        let mut tx = SendBatch::default();
        let mut g = GroBuf::default();
        // Without GRO: three datagrams, one per receive.
        send(&mut tx);
        for (i, want) in [100, 100, 50].into_iter().enumerate() {
            let r = b.recv_gro(&mut g).unwrap().unwrap();
            assert_eq!((r.len, r.segment), (want, want));
            assert!(
                g.datagrams(&r)
                    .next()
                    .unwrap()
                    .iter()
                    .all(|&x| x == i as u8)
            );
        }
        // With GRO: the send arrives as one buffer of 100-byte segments.
        set_udp_gro(&b, true).unwrap();
        send(&mut tx);
        let r = b.recv_gro(&mut g).unwrap().unwrap();
        assert_eq!(
            (r.len, r.segment, r.src),
            (250, 100, a.local_addr().unwrap())
        );
        let parts: Vec<&[u8]> = g.datagrams(&r).collect();
        assert_eq!(parts.len(), 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.iter().all(|&x| x == i as u8));
        }
        assert_eq!(parts[2].len(), 50);
        b.set_nonblocking(true).unwrap();
        assert_eq!(b.recv_gro(&mut g).unwrap(), None, "nothing left");
    }

    #[test]
    fn pktinfo_control_messages_round_trip() {
        let mut buf = [0u8; CMSG_LEN];
        let n = write_pktinfo(&mut buf, 7, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(n, 32);
        // What we write has the spec_dst in the middle; a received one carries ipi_addr last.
        buf[CMSG_HDR + 8..CMSG_HDR + 12].copy_from_slice(&[255, 255, 255, 255]);
        assert_eq!(
            parse_pktinfo(&buf[..n]),
            Some(PktInfo {
                ifindex: 7,
                spec_dst: Ipv4Addr::new(198, 18, 0, 1),
                dst: Ipv4Addr::BROADCAST
            })
        );
        assert_eq!(parse_pktinfo(&buf[..10]), None);
        buf[0] = 200; // a length past the buffer
        assert_eq!(parse_pktinfo(&buf[..n]), None);
    }

    #[test]
    fn receive_times_out_empty() {
        let a = sock(0);
        let mut rx = RecvBatch::default();
        assert_eq!(a.recv_batch(&mut rx).unwrap(), 0);
    }

    #[test]
    fn reuse_port_lets_workers_share_a_port() {
        // The first of a group on port 0 (as workers start on `port = 0` in tests), the next on
        // the port it got.
        let a = sock(0);
        let port = a.local_addr().unwrap().port();
        let b = sock(port);
        assert_eq!(b.local_addr().unwrap().port(), port);
    }

    #[test]
    fn loopback_interface_has_an_index() {
        assert!(interface_index("lo").is_some());
        assert!(interface_index("no-such-if0").is_none());
    }
}
