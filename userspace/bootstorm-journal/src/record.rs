//! The on-disk record: `len: u32 LE | crc32: u32 LE | body`, the CRC (IEEE) over the body.
//!
//! Body, version 1, little endian:
//! `kind u8 | at_ms u64 | addr u32 | state u8 | expires_ms u64 | until_ms u64 | subnet u32 |
//! flags u8 | key_len u8 key | hw_len u8 hw | name_len u8 name`, times in milliseconds since the
//! UNIX epoch (`until_ms`: end of a decline quarantine, else 0; flags bit 0: reserved address).
//! A snapshot ends with a `SnapshotEnd` body: `kind u8 | count u64`.

use bootstorm_lease::LeaseState;
use std::net::Ipv4Addr;

/// Frame header: length and CRC.
pub const HEADER_LEN: usize = 8;
/// Largest body: three length-prefixed fields of at most 255 bytes and the fixed part.
pub const MAX_BODY: usize = 64 + 3 * 255;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A lease granted or renewed.
    Bind = 1,
    /// A lease given back.
    Release = 2,
    /// An address declined (quarantined until `until_ms`).
    Decline = 3,
    /// A lease lapsed.
    Expire = 4,
    /// A client's record in a snapshot (any state).
    Snapshot = 16,
    /// The end of a snapshot, with the number of records before it.
    SnapshotEnd = 17,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Bind,
            2 => Kind::Release,
            3 => Kind::Decline,
            4 => Kind::Expire,
            16 => Kind::Snapshot,
            17 => Kind::SnapshotEnd,
            _ => return None,
        })
    }
}

fn state_code(s: LeaseState) -> u8 {
    match s {
        LeaseState::Offered => 1,
        LeaseState::Bound => 2,
        LeaseState::Released => 3,
        LeaseState::Expired => 4,
        LeaseState::Declined => 5,
    }
}

fn state_from(v: u8) -> Option<LeaseState> {
    Some(match v {
        1 => LeaseState::Offered,
        2 => LeaseState::Bound,
        3 => LeaseState::Released,
        4 => LeaseState::Expired,
        5 => LeaseState::Declined,
        _ => return None,
    })
}

/// A client's record with wall-clock times: what the journal stores and replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub kind: Kind,
    /// When it was written (ms since the UNIX epoch).
    pub at_ms: u64,
    /// Client key (option 61, or htype + chaddr).
    pub key: Box<[u8]>,
    /// Hardware address.
    pub hwaddr: Box<[u8]>,
    /// Address.
    pub addr: Ipv4Addr,
    /// State after the change.
    pub state: LeaseState,
    /// End of the lease (ms since the UNIX epoch).
    pub expires_ms: u64,
    /// End of a decline quarantine (ms since the UNIX epoch), 0 if none.
    pub until_ms: u64,
    /// Host name.
    pub hostname: Option<Box<str>>,
    /// Subnet index.
    pub subnet: u32,
    /// From a reservation.
    pub reserved: bool,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its fields say.
    #[error("record body truncated")]
    Truncated,
    /// An unknown kind or state.
    #[error("unknown record kind or state")]
    Unknown,
    /// Bytes left over after the last field.
    #[error("trailing bytes after the record")]
    Trailing,
}

/// What a frame holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A lease record.
    Lease(Record),
    /// The end of a snapshot of `count` records.
    SnapshotEnd {
        /// Records in the snapshot.
        count: u64,
    },
}

fn clip(b: &[u8]) -> &[u8] {
    &b[..b.len().min(255)]
}

impl Record {
    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&u32::from(self.addr).to_le_bytes());
        out.push(state_code(self.state));
        out.extend_from_slice(&self.expires_ms.to_le_bytes());
        out.extend_from_slice(&self.until_ms.to_le_bytes());
        out.extend_from_slice(&self.subnet.to_le_bytes());
        out.push(u8::from(self.reserved));
        for field in [
            clip(&self.key),
            clip(&self.hwaddr),
            clip(self.hostname.as_deref().unwrap_or("").as_bytes()),
        ] {
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        seal(out, start);
    }
}

/// Appends a snapshot's end marker to `out`.
pub fn encode_snapshot_end(count: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(Kind::SnapshotEnd as u8);
    out.extend_from_slice(&count.to_le_bytes());
    seal(out, start);
}

/// Fills in the length and CRC of the frame that starts at `start`.
fn seal(out: &mut [u8], start: usize) {
    let body = &out[start + HEADER_LEN..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn field(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
}

/// Decodes a frame's body (its CRC already checked).
pub fn decode(body: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader(body);
    let kind = Kind::from_u8(r.u8()?).ok_or(DecodeError::Unknown)?;
    let e = if kind == Kind::SnapshotEnd {
        Entry::SnapshotEnd { count: r.u64()? }
    } else {
        let at_ms = r.u64()?;
        let addr = Ipv4Addr::from(r.u32()?);
        let state = state_from(r.u8()?).ok_or(DecodeError::Unknown)?;
        let expires_ms = r.u64()?;
        let until_ms = r.u64()?;
        let subnet = r.u32()?;
        let flags = r.u8()?;
        let key = r.field()?.into();
        let hwaddr = r.field()?.into();
        let name = r.field()?;
        Entry::Lease(Record {
            kind,
            at_ms,
            key,
            hwaddr,
            addr,
            state,
            expires_ms,
            until_ms,
            hostname: (!name.is_empty())
                .then(|| String::from_utf8_lossy(name).into_owned().into_boxed_str()),
            subnet,
            reserved: flags & 1 != 0,
        })
    };
    if !r.0.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(e)
}

/// How a byte stream of frames ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// At a frame boundary.
    Clean,
    /// A partial last frame from `offset` to the end: a write cut short (power loss). Only the
    /// last frame of a file can be torn: a bad frame with more frames after it is damage.
    Torn {
        /// Where the partial frame starts.
        offset: usize,
    },
    /// Damage at `offset`: a frame that is complete but wrong, with data after it.
    Corrupt {
        /// Where the bad frame starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Splits `bytes` into frames: each good entry with its offset, and how the stream ended.
pub fn frames(bytes: &[u8]) -> (Vec<(usize, Entry)>, Tail) {
    let mut out = Vec::new();
    let mut o = 0;
    loop {
        let rest = &bytes[o..];
        if rest.is_empty() {
            return (out, Tail::Clean);
        }
        // A file system may leave zeros after a crash where an append had extended the file.
        if rest.iter().all(|&b| b == 0) {
            return (out, Tail::Torn { offset: o });
        }
        if rest.len() < HEADER_LEN {
            return (out, Tail::Torn { offset: o });
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        if len == 0 || len > MAX_BODY {
            return (
                out,
                Tail::Corrupt {
                    offset: o,
                    reason: "impossible record length",
                },
            );
        }
        if rest.len() < HEADER_LEN + len {
            return (out, Tail::Torn { offset: o });
        }
        let body = &rest[HEADER_LEN..HEADER_LEN + len];
        let last = rest.len() == HEADER_LEN + len;
        if crc32fast::hash(body) != crc {
            return if last {
                (out, Tail::Torn { offset: o })
            } else {
                (
                    out,
                    Tail::Corrupt {
                        offset: o,
                        reason: "checksum mismatch",
                    },
                )
            };
        }
        match decode(body) {
            Ok(e) => out.push((o, e)),
            Err(_) => {
                return (
                    out,
                    Tail::Corrupt {
                        offset: o,
                        reason: "checksum matches but the record does not parse",
                    },
                );
            }
        }
        o += HEADER_LEN + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(n: u8) -> Record {
        Record {
            kind: Kind::Bind,
            at_ms: 1_700_000_000_000 + u64::from(n),
            key: vec![1, 0x52, 0x54, 0, 0, 0, n].into(),
            hwaddr: vec![0x52, 0x54, 0, 0, 0, n].into(),
            addr: Ipv4Addr::new(198, 18, 1, n),
            state: LeaseState::Bound,
            expires_ms: 1_700_000_360_000,
            until_ms: 0,
            hostname: n
                .is_multiple_of(2)
                .then(|| format!("node{n}").into_boxed_str()),
            subnet: 3,
            reserved: n.is_multiple_of(3),
        }
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_told_from_damage() {
        let mut buf = Vec::new();
        for n in 0..5 {
            rec(n).encode(&mut buf);
        }
        encode_snapshot_end(5, &mut buf);
        let (all, tail) = frames(&buf);
        assert_eq!(tail, Tail::Clean);
        assert_eq!(all.len(), 6);
        for (n, (_, e)) in all.iter().take(5).enumerate() {
            assert_eq!(*e, Entry::Lease(rec(n as u8)));
        }
        assert_eq!(all[5].1, Entry::SnapshotEnd { count: 5 });
        let last_start = all[5].0;
        // Cut anywhere inside the last frame: torn, everything before it kept.
        for cut in last_start + 1..buf.len() {
            let (got, tail) = frames(&buf[..cut]);
            assert_eq!(got.len(), 5, "cut {cut}");
            assert_eq!(tail, Tail::Torn { offset: last_start });
        }
        // A flipped byte in the middle: damage at that frame.
        let third = all[2].0;
        let mut bad = buf.clone();
        bad[third + HEADER_LEN + 5] ^= 0x40;
        let (got, tail) = frames(&bad);
        assert_eq!(got.len(), 2);
        assert_eq!(
            tail,
            Tail::Corrupt {
                offset: third,
                reason: "checksum mismatch"
            }
        );
        // A flipped length byte in the middle.
        let mut bad = buf.clone();
        bad[third + 1] ^= 0x10;
        assert!(matches!(frames(&bad).1, Tail::Corrupt { offset, .. } if offset == third));
        // Zeros after the last frame (an extended file after a crash): torn, nothing lost.
        let mut z = buf.clone();
        z.extend_from_slice(&[0; 100]);
        let (got, tail) = frames(&z);
        assert_eq!(got.len(), 6);
        assert_eq!(tail, Tail::Torn { offset: buf.len() });
    }

    proptest! {
        #[test]
        fn any_bytes_are_split_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (got, tail) = frames(&bytes);
            // Whatever came out parses back to itself.
            for (_, e) in &got {
                if let Entry::Lease(r) = e {
                    let mut b = Vec::new();
                    r.encode(&mut b);
                    prop_assert_eq!(&frames(&b).0[0].1, e);
                }
            }
            if let Tail::Torn { offset } | Tail::Corrupt { offset, .. } = tail {
                prop_assert!(offset <= bytes.len());
            }
        }

        #[test]
        fn any_record_round_trips(n in any::<u8>(), key in proptest::collection::vec(any::<u8>(), 0..300),
                                  name in "[a-z0-9-]{0,300}") {
            let mut r = rec(n);
            r.key = key.into();
            r.hostname = (!name.is_empty()).then(|| name.clone().into_boxed_str());
            let mut b = Vec::new();
            r.encode(&mut b);
            let (got, tail) = frames(&b);
            prop_assert_eq!(tail, Tail::Clean);
            let Entry::Lease(back) = &got[0].1 else { panic!() };
            // Fields over 255 bytes are clipped, never corrupted.
            prop_assert_eq!(&back.key[..], &r.key[..r.key.len().min(255)]);
            prop_assert_eq!(back.addr, r.addr);
        }
    }
}
