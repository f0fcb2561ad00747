//! ARP for IPv4 over Ethernet (RFC 826): the 28-byte request and reply, and whole frames of them.
//! A frame-level client (the load generator's L2 mode) answers "who has" for its machines'
//! addresses and asks for its server's MAC with these.

use crate::ethernet::{self, Address, ETHERTYPE_ARP};
use crate::{Error, Result};
use core::net::Ipv4Addr;

/// Bytes of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;
/// Operation: request.
pub const REQUEST: u16 = 1;
/// Operation: reply.
pub const REPLY: u16 = 2;

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// [`REQUEST`] or [`REPLY`].
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: Address,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_mac: Address,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl Arp {
    /// Parses the ARP packet (the Ethernet payload).
    pub fn parse(b: &[u8]) -> Result<Arp> {
        if b.len() < LEN {
            return Err(Error::Truncated);
        }
        if b[0..2] != [0, 1] || b[2..4] != [0x08, 0x00] || b[4] != 6 || b[5] != 4 {
            return Err(Error::Malformed("not Ethernet/IPv4 ARP"));
        }
        let op = u16::from_be_bytes([b[6], b[7]]);
        if op != REQUEST && op != REPLY {
            return Err(Error::Malformed("ARP operation"));
        }
        Ok(Arp {
            op,
            sender_mac: Address::from_bytes(&b[8..14]).ok_or(Error::Truncated)?,
            sender_ip: ip(&b[14..18]),
            target_mac: Address::from_bytes(&b[18..24]).ok_or(Error::Truncated)?,
            target_ip: ip(&b[24..28]),
        })
    }

    /// Writes the packet into `b`; returns [`LEN`].
    pub fn emit(&self, b: &mut [u8]) -> Result<usize> {
        if b.len() < LEN {
            return Err(Error::NoSpace);
        }
        b[0..2].copy_from_slice(&[0, 1]);
        b[2..4].copy_from_slice(&[0x08, 0x00]);
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        Ok(LEN)
    }

    /// Writes a whole frame: to the target's MAC for a reply, to broadcast for a request;
    /// padded to Ethernet's 60-byte minimum. Returns its length.
    pub fn emit_frame(&self, buf: &mut [u8]) -> Result<usize> {
        const MIN_FRAME: usize = 60;
        if buf.len() < MIN_FRAME {
            return Err(Error::NoSpace);
        }
        let mut eth = ethernet::Frame::new_unchecked(&mut buf[..MIN_FRAME]);
        eth.set_dst_addr(if self.op == REQUEST {
            Address::BROADCAST
        } else {
            self.target_mac
        });
        eth.set_src_addr(self.sender_mac);
        eth.set_ethertype(ETHERTYPE_ARP);
        let n = self.emit(&mut buf[ethernet::HEADER_LEN..])?;
        buf[ethernet::HEADER_LEN + n..MIN_FRAME].fill(0);
        Ok(MIN_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip_in_frames() {
        let a = Arp {
            op: REQUEST,
            sender_mac: Address([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(198, 18, 0, 1),
            target_mac: Address([0; 6]),
            target_ip: Ipv4Addr::new(198, 18, 1, 7),
        };
        let mut buf = [0xaau8; 64];
        assert_eq!(a.emit_frame(&mut buf).unwrap(), 60);
        let eth = ethernet::Frame::new_checked(&buf[..60]).unwrap();
        assert_eq!(eth.dst_addr(), Address::BROADCAST);
        assert_eq!(eth.ethertype(), ETHERTYPE_ARP);
        assert_eq!(Arp::parse(eth.payload()).unwrap(), a);
        assert!(buf[42..60].iter().all(|&b| b == 0), "padding");
        let r = Arp {
            op: REPLY,
            target_mac: a.sender_mac,
            ..a
        };
        r.emit_frame(&mut buf).unwrap();
        assert_eq!(
            ethernet::Frame::new_checked(&buf[..60]).unwrap().dst_addr(),
            a.sender_mac
        );
    }

    #[test]
    fn refuses_what_is_not_ipv4_arp() {
        let mut b = [0u8; LEN];
        Arp {
            op: REPLY,
            sender_mac: Address([1; 6]),
            sender_ip: Ipv4Addr::LOCALHOST,
            target_mac: Address([2; 6]),
            target_ip: Ipv4Addr::LOCALHOST,
        }
        .emit(&mut b)
        .unwrap();
        assert!(Arp::parse(&b[..27]).is_err());
        let mut v6 = b;
        v6[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert!(Arp::parse(&v6).is_err());
        let mut op = b;
        op[7] = 9;
        assert!(Arp::parse(&op).is_err());
        assert!(Arp::parse(&b).is_ok());
    }
}
