//! Control messages (`IP_PKTINFO` in and out, `UDP_GRO`'s segment size), read and written in
//! safe code over our own buffers.

use std::mem::size_of;
use std::net::Ipv4Addr;

pub(crate) const CMSG_LEN: usize = 64;

// Control messages are read and written here in safe code, over our own buffers: on Linux a
// `struct cmsghdr` is { size_t cmsg_len; int cmsg_level; int cmsg_type; } followed by data
// aligned to size_t (<bits/socket.h>, CMSG_ALIGN), and `struct in_pktinfo` is { int ipi_ifindex;
// struct in_addr ipi_spec_dst; struct in_addr ipi_addr; } (<netinet/in.h>).
pub(crate) const CMSG_HDR: usize = size_of::<libc::cmsghdr>();
pub(crate) const PKTINFO_LEN: usize = 12;

pub(crate) const fn cmsg_align(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// The data of the first control message of `level`/`kind` with at least `min` bytes of data in
/// a received control buffer.
pub(crate) fn find_cmsg(
    buf: &[u8],
    level: libc::c_int,
    kind: libc::c_int,
    min: usize,
) -> Option<&[u8]> {
    const W: usize = size_of::<usize>();
    let mut off = 0;
    while off + CMSG_HDR <= buf.len() {
        let len = usize::from_ne_bytes(buf[off..off + W].try_into().ok()?);
        let l = i32::from_ne_bytes(buf[off + W..off + W + 4].try_into().ok()?);
        let k = i32::from_ne_bytes(buf[off + W + 4..off + W + 8].try_into().ok()?);
        if len < CMSG_HDR || off + len > buf.len() {
            return None;
        }
        if l == level && k == kind && len >= CMSG_HDR + min {
            return Some(&buf[off + CMSG_HDR..off + len]);
        }
        off += cmsg_align(len);
    }
    None
}

/// What IP_PKTINFO says of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PktInfo {
    pub(crate) ifindex: u32,
    /// `ipi_spec_dst`: the local address the kernel would answer from.
    pub(crate) spec_dst: Ipv4Addr,
    /// `ipi_addr`: the header destination.
    pub(crate) dst: Ipv4Addr,
}

/// Finds IP_PKTINFO in a received control buffer.
pub(crate) fn parse_pktinfo(buf: &[u8]) -> Option<PktInfo> {
    let d = find_cmsg(buf, libc::IPPROTO_IP, libc::IP_PKTINFO, PKTINFO_LEN)?;
    let ifindex = i32::from_ne_bytes(d[0..4].try_into().ok()?);
    Some(PktInfo {
        ifindex: u32::try_from(ifindex).unwrap_or(0),
        spec_dst: Ipv4Addr::new(d[4], d[5], d[6], d[7]),
        dst: Ipv4Addr::new(d[8], d[9], d[10], d[11]),
    })
}

/// Writes one IP_PKTINFO control message (send out of `ifindex`, from `src`); returns its space.
pub(crate) fn write_pktinfo(buf: &mut [u8; CMSG_LEN], ifindex: u32, src: Ipv4Addr) -> usize {
    const W: usize = size_of::<usize>();
    let len = CMSG_HDR + PKTINFO_LEN;
    buf.fill(0);
    buf[..W].copy_from_slice(&len.to_ne_bytes());
    buf[W..W + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
    buf[W + 4..W + 8].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
    let d = CMSG_HDR;
    buf[d..d + 4].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    buf[d + 4..d + 8].copy_from_slice(&src.octets());
    cmsg_align(len)
}

#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct CmsgBuf(pub(crate) [u8; CMSG_LEN]);
