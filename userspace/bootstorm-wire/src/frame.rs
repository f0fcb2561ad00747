//! Whole Ethernet/IPv4/UDP frames around a payload: what a frame-level driver (AF_XDP, AF_PACKET,
//! a capture file) sends, so a reply can go to a MAC and an address without ARP (RFC 2131 4.1).

use crate::ethernet::{
    self, Address, ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN, VLAN_TAG_LEN,
};
use crate::{Error, Result, ipv4, udp};
use core::net::SocketAddrV4;

/// Bytes of headers before the UDP payload: Ethernet 14 + IPv4 20 + UDP 8.
pub const HEADERS_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

/// Where the payload of a frame starts in the buffer.
pub const PAYLOAD_OFFSET: usize = HEADERS_LEN;

/// Writes Ethernet, IPv4 (checksummed) and UDP (checksummed) headers in front of a payload that is
/// already at `buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload_len]`; returns the frame length.
pub fn emit_udp_headers(
    buf: &mut [u8],
    src_mac: Address,
    dst_mac: Address,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
) -> Result<usize> {
    emit_udp_headers_tagged(buf, src_mac, dst_mac, None, src, dst, payload_len)
}

/// Where the payload of a frame with `vlan` (or none) starts.
pub const fn payload_offset(vlan: Option<u16>) -> usize {
    match vlan {
        Some(_) => PAYLOAD_OFFSET + VLAN_TAG_LEN,
        None => PAYLOAD_OFFSET,
    }
}

/// [`emit_udp_headers`] with an 802.1Q tag (its TCI: priority and VLAN id) when `vlan` is set;
/// the payload is then at [`payload_offset`]`(vlan)`.
pub fn emit_udp_headers_tagged(
    buf: &mut [u8],
    src_mac: Address,
    dst_mac: Address,
    vlan: Option<u16>,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload_len: usize,
) -> Result<usize> {
    let l3 = payload_offset(vlan) - ipv4::HEADER_LEN - udp::HEADER_LEN;
    let total = payload_offset(vlan) + payload_len;
    if buf.len() < total {
        return Err(Error::NoSpace);
    }
    let mut eth = ethernet::Frame::new_unchecked(&mut buf[..total]);
    eth.set_dst_addr(dst_mac);
    eth.set_src_addr(src_mac);
    match vlan {
        Some(tci) => {
            eth.set_ethertype(ETHERTYPE_VLAN);
            let h = ethernet::HEADER_LEN;
            buf[h..h + 2].copy_from_slice(&tci.to_be_bytes());
            buf[h + 2..h + 4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        }
        None => eth.set_ethertype(ETHERTYPE_IPV4),
    }
    let ip_part = &mut buf[l3..total];
    udp::emit(
        &mut ip_part[ipv4::HEADER_LEN..],
        (*src.ip(), src.port()),
        (*dst.ip(), dst.port()),
        payload_len,
    )?;
    let repr = ipv4::Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        protocol: ipv4::PROTO_UDP,
        payload_len: udp::HEADER_LEN + payload_len,
        ttl: 64,
    };
    repr.emit(ip_part)?;
    Ok(total)
}

/// A UDP datagram found in a frame: addresses and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpInFrame<'a> {
    /// Source MAC.
    pub src_mac: Address,
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// UDP payload.
    pub payload: &'a [u8],
    /// The 802.1Q (or 802.1ad) tag's TCI, if the frame had one.
    pub vlan: Option<u16>,
}

/// Parses an Ethernet frame down to a UDP payload, checking both checksums. Anything else (ARP,
/// IPv6, fragments, TCP) is an error value.
pub fn parse_udp(frame: &[u8]) -> Result<UdpInFrame<'_>> {
    parse_udp_with(frame, true)
}

/// [`parse_udp`], with the UDP checksum checked only if `verify_udp`: a frame captured before
/// checksum offload finished it (a veth peer's, flagged by the kernel) carries a partial one.
/// The IPv4 header checksum is always checked.
pub fn parse_udp_with(frame: &[u8], verify_udp: bool) -> Result<UdpInFrame<'_>> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let (ethertype, l3, vlan) = match eth.ethertype() {
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => {
            let h = ethernet::HEADER_LEN;
            let tag = frame.get(h..h + VLAN_TAG_LEN).ok_or(Error::Truncated)?;
            (
                u16::from_be_bytes([tag[2], tag[3]]),
                h + VLAN_TAG_LEN,
                Some(u16::from_be_bytes([tag[0], tag[1]])),
            )
        }
        t => (t, ethernet::HEADER_LEN, None),
    };
    if ethertype != ETHERTYPE_IPV4 {
        return Err(Error::Malformed("not IPv4"));
    }
    let src_mac = eth.src_addr();
    let ip_bytes = &frame[l3..];
    let ip = ipv4::Packet::new_checked(ip_bytes)?;
    let repr = ipv4::Repr::parse(&ip)?;
    if repr.protocol != ipv4::PROTO_UDP {
        return Err(Error::Malformed("not UDP"));
    }
    let hl = ip.header_len();
    let udp_bytes = &ip_bytes[hl..hl + repr.payload_len];
    let u = udp::Packet::new_checked(udp_bytes)?;
    if verify_udp && !u.verify_checksum(repr.src_addr, repr.dst_addr) {
        return Err(Error::Checksum);
    }
    let len = usize::from(u.len());
    Ok(UdpInFrame {
        src_mac,
        src: SocketAddrV4::new(repr.src_addr, u.src_port()),
        dst: SocketAddrV4::new(repr.dst_addr, u.dst_port()),
        payload: &udp_bytes[udp::HEADER_LEN..len],
        vlan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn a_tagged_frame_round_trips_with_its_tag() {
        let mut buf = [0u8; 400];
        let at = payload_offset(Some(42));
        buf[at..at + 5].copy_from_slice(b"hello");
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 67);
        let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
        let mac = Address([2, 0, 0, 0, 0, 1]);
        let n = emit_udp_headers_tagged(&mut buf, mac, Address::BROADCAST, Some(42), src, dst, 5)
            .unwrap();
        assert_eq!(n, 51);
        assert_eq!(&buf[12..16], &[0x81, 0x00, 0x00, 42]);
        let f = parse_udp(&buf[..n]).unwrap();
        assert_eq!(
            (f.vlan, f.src, f.dst, f.payload),
            (Some(42), src, dst, &b"hello"[..])
        );
        // Cut inside the tag: an error, not a panic.
        assert!(parse_udp(&buf[..16]).is_err());
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let mut buf = [0u8; 400];
        buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 5].copy_from_slice(b"hello");
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 67);
        let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
        let mac = Address([2, 0, 0, 0, 0, 1]);
        let n = emit_udp_headers(&mut buf, mac, Address::BROADCAST, src, dst, 5).unwrap();
        assert_eq!(n, 47);
        let f = parse_udp(&buf[..n]).unwrap();
        assert_eq!(
            (f.src_mac, f.src, f.dst, f.payload),
            (mac, src, dst, &b"hello"[..])
        );
        // A flipped payload bit fails the UDP checksum; a flipped header bit the IP checksum.
        buf[PAYLOAD_OFFSET] ^= 1;
        assert_eq!(parse_udp(&buf[..n]).unwrap_err(), Error::Checksum);
        buf[PAYLOAD_OFFSET] ^= 1;
        buf[ethernet::HEADER_LEN + 8] ^= 1;
        assert_eq!(parse_udp(&buf[..n]).unwrap_err(), Error::Checksum);
        assert_eq!(
            emit_udp_headers(&mut buf[..40], mac, mac, src, dst, 5).unwrap_err(),
            Error::NoSpace
        );
    }

    #[test]
    fn frames_that_are_not_udp_are_errors() {
        let mut buf = [0u8; 60];
        buf[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(parse_udp(&buf).is_err());
        assert!(parse_udp(&buf[..10]).is_err());
    }
}
