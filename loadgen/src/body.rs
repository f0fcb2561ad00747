//! A boot file as it arrives, over TFTP or HTTP: counted, hashed if asked, and checked against
//! what it must be once complete.

use sha2::Digest;

/// What is checked at the end.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// Size in bytes.
    pub size: Option<u64>,
    /// sha256.
    pub sha256: Option<[u8; 32]>,
}

/// How a complete file differs from what was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Not the size expected.
    Size,
    /// Not the sha256 expected.
    Hash,
}

/// The bytes received so far.
pub struct Body {
    bytes: u64,
    hash: Option<sha2::Sha256>,
    expect: Expect,
}

impl Body {
    /// Nothing yet.
    pub fn new(expect: Expect) -> Body {
        Body {
            bytes: 0,
            hash: expect.sha256.map(|_| sha2::Sha256::new()),
            expect,
        }
    }

    /// More of the file, in order.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(h) = &mut self.hash {
            h.update(data);
        }
    }

    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The size expected, if any.
    pub fn expected_size(&self) -> Option<u64> {
        self.expect.size
    }

    /// The file is complete: its size, or how it is not what was expected.
    pub fn finish(&mut self) -> Result<u64, Mismatch> {
        let hash_ok = match (self.hash.take(), self.expect.sha256) {
            (Some(h), Some(want)) => h.finalize()[..] == want[..],
            _ => true,
        };
        if self.expect.size.is_some_and(|s| s != self.bytes) {
            Err(Mismatch::Size)
        } else if !hash_ok {
            Err(Mismatch::Hash)
        } else {
            Ok(self.bytes)
        }
    }
}
