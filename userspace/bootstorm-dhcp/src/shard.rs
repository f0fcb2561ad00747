//! Which of several workers serves a client: one rule for every I/O path.
//!
//! A client's messages must reach one worker: its retransmissions are then answered in order,
//! its lease-table shard stays warm in one cache, and a reply that waits for the journal is never
//! overtaken by a later one sent from another thread. Neither path delivers that by itself: the
//! kernel hands every broadcast to every socket of a `SO_REUSEPORT` group and hashes a relay's
//! unicasts (all from giaddr:67) to one socket; a NIC's RSS puts every DISCOVER (all from
//! 0.0.0.0:68) on one receive queue. So the receiving worker parses the header and passes the
//! datagram to the owner named here (through the owner's hand-off queue).

use bootstorm_wire::dhcp::Packet;

/// The worker of `workers` that owns the client who sent `datagram`: by its hardware type and
/// address (chaddr), which every message of a client carries, relayed or not. A datagram too
/// short to be DHCP goes to worker 0, which counts it malformed once.
pub fn owner(datagram: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let Ok(p) = Packet::new_checked(datagram) else {
        return 0;
    };
    // FNV-1a: a few nanoseconds, and good enough to spread MACs that differ in any byte.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(p.htype()).chain(p.chaddr_raw().iter().copied()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_shared_out_by_chaddr_and_stay_put() {
        let mut counts = [0usize; 4];
        for n in 0..4000u32 {
            let mut d = [0u8; 300];
            d[0] = 1;
            d[1] = 1;
            d[2] = 6;
            d[236..240].copy_from_slice(&[99, 130, 83, 99]);
            d[28..34].copy_from_slice(&[0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            let o = owner(&d, 4);
            assert_eq!(o, owner(&d, 4), "stable");
            // The same client relayed (giaddr, hops set) has the same owner.
            let mut relayed = d;
            relayed[3] = 1;
            relayed[24..28].copy_from_slice(&[198, 18, 0, 1]);
            assert_eq!(owner(&relayed, 4), o);
            counts[o] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
        assert_eq!(owner(&[1, 2, 3], 4), 0);
        assert_eq!(owner(&[0; 300], 1), 0);
    }
}
