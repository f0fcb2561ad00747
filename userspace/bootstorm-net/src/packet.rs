//! A raw Ethernet socket on one interface (`AF_PACKET`), for programs that must send and receive
//! whole frames as a machine without an address does: the load generator's L2 mode sends DHCP
//! from 0.0.0.0:68 with its simulated machines' MACs and answers ARP for their leases.
//!
//! The socket is promiscuous (frames to the simulated MACs are not the interface's own), skips
//! the frames it sent itself, and uses `PACKET_VNET_HDR`: the kernel then says, per frame, whether
//! its checksum is only partial (a veth passes on a peer's checksum offload unfinished) and
//! whether it is a UDP GSO burst (one "frame" holding several datagrams of `gso_size` each),
//! which a receiver must split.

use crate::{bind_to, cvt, set_storm_recv_buffer, setsockopt};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct virtio_net_hdr` (10 bytes), in front of every frame on a `PACKET_VNET_HDR` socket.
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;

/// What the kernel said of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Bytes of the frame, at the start of the buffer.
    pub len: usize,
    /// The transport checksum was left for hardware to fill: do not verify it.
    pub partial_checksum: bool,
    /// A UDP GSO burst: the UDP payload is several datagrams of this many bytes (the last
    /// shorter). 0: a single datagram.
    pub udp_segment: usize,
}

/// The socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    mac: [u8; 6],
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl PacketSocket {
    /// Opens a non-blocking, promiscuous raw socket on `interface` (needs CAP_NET_RAW).
    pub fn open(interface: &str) -> io::Result<PacketSocket> {
        let index = crate::interface_index(interface)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such interface"))?;
        let mac = interface_mac(interface)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain system call with constant arguments; the result is checked.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one)?;
        // Frames this socket sends are not handed back to it (Linux 4.20+; older kernels show
        // them, and a receiver ignores them as not addressed to it).
        let _ = setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one);
        set_storm_recv_buffer(raw)?;
        // SAFETY: an all-zero sockaddr_ll is a valid value of the plain C struct.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        bind_to(raw, &sll)?;
        // SAFETY: an all-zero packet_mreq is a valid value of the plain C struct.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = index as i32;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)?;
        Ok(PacketSocket { fd, mac })
    }

    /// The interface's own MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one whole Ethernet frame (checksums already filled in).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let hdr = [0u8; VNET_HDR_LEN]; // no offload asked for
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point to live buffers of the given lengths, which the kernel only
        // reads; the socket is bound, so no address is needed.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame into `buf` (which should hold 64 KiB: a GSO burst is one frame);
    /// `None` if nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<FrameInfo>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point to live, writable buffers of the given lengths that nothing
        // else uses during the call.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let n = n as usize;
        if n < VNET_HDR_LEN {
            return Ok(Some(FrameInfo {
                len: 0,
                partial_checksum: false,
                udp_segment: 0,
            }));
        }
        Ok(Some(parse_vnet(&hdr, (n - VNET_HDR_LEN).min(buf.len()))))
    }
}

/// Reads the `virtio_net_hdr` the kernel put in front of a frame of `len` bytes.
fn parse_vnet(hdr: &[u8; VNET_HDR_LEN], len: usize) -> FrameInfo {
    let flags = hdr[0];
    let gso_type = hdr[1] & 0x7f; // the top bit is ECN
    let gso_size = usize::from(u16::from_ne_bytes([hdr[4], hdr[5]]));
    FrameInfo {
        len,
        partial_checksum: flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
            || gso_type != VIRTIO_NET_HDR_GSO_NONE,
        udp_segment: if gso_type == VIRTIO_NET_HDR_GSO_UDP_L4 {
            gso_size
        } else {
            0
        },
    }
}

/// The MAC of an interface, from sysfs.
pub fn interface_mac(interface: &str) -> io::Result<[u8; 6]> {
    if CString::new(interface).is_err() || interface.contains('/') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let s = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))?;
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    v.try_into()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_flags() {
        let plain = parse_vnet(&[0; VNET_HDR_LEN], 60);
        assert_eq!(
            (plain.len, plain.partial_checksum, plain.udp_segment),
            (60, false, 0)
        );
        let mut h = [0u8; VNET_HDR_LEN];
        h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        assert!(parse_vnet(&h, 60).partial_checksum);
        h[1] = VIRTIO_NET_HDR_GSO_UDP_L4;
        h[4..6].copy_from_slice(&1472u16.to_ne_bytes());
        let g = parse_vnet(&h, 5000);
        assert_eq!((g.partial_checksum, g.udp_segment), (true, 1472));
    }

    #[test]
    fn loopback_mac_and_bad_names() {
        assert_eq!(interface_mac("lo").unwrap(), [0; 6]);
        assert!(interface_mac("../etc").is_err());
        assert!(interface_mac("no-such-if0").is_err());
    }
}
