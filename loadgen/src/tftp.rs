//! One machine's TFTP download, sans-IO: RRQ with the profile's options; an OACK is answered
//! with ACK 0; DATA in order is kept (counted and, if asked, hashed), a whole window or the last
//! block is acknowledged (RFC 7440), a gap is answered with an ACK of the last block in order so
//! the server resends from there; on a timeout the last packet goes again, a bounded number of
//! times. Block numbers roll over past 65535. Written by hand for the same reasons as the DHCP
//! client; time is microseconds from the start of the run.

pub use crate::body::Expect;
use crate::body::{Body, Mismatch};
use crate::profile::Profile;
use bootstorm_wire::tftp::{Mode, Options, Repr};
use std::net::SocketAddrV4;

/// Why a download failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The ACK named no boot file.
    NoBootFile,
    /// The server sent an ERROR.
    ServerError,
    /// Nothing came back after every retransmission.
    Timeout,
    /// The file is not the size expected.
    WrongSize,
    /// The file's sha256 is not the one expected.
    WrongHash,
    /// The OACK holds an option not asked for, or a value out of what was asked.
    BadOack,
    /// The socket could not be set up.
    Socket,
}

impl Failure {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Failure::NoBootFile => "tftp: no boot file in the ack",
            Failure::ServerError => "tftp: server error",
            Failure::Timeout => "tftp: timeout",
            Failure::WrongSize => "tftp: wrong size",
            Failure::WrongHash => "tftp: wrong sha256",
            Failure::BadOack => "tftp: bad oack",
            Failure::Socket => "tftp: socket",
        }
    }
}

/// The download.
pub struct Download {
    file: String,
    server: SocketAddrV4,
    /// The server's transfer port, once it answered.
    peer: Option<SocketAddrV4>,
    blksize: usize,
    window: u16,
    /// Next block expected (block numbers of the transfer, not wrapped).
    next: u64,
    /// Blocks received in order since the last ACK.
    in_window: u16,
    /// An ACK went out for the current gap; quiet until the expected block comes.
    gap_acked: bool,
    body: Body,
    /// The last packet sent, for retransmission: an RRQ or an ACK.
    last: Vec<u8>,
    deadline: u64,
    timeout: u64,
    retries: u32,
    tries: u32,
    result: Option<Result<u64, Failure>>,
}

/// What to do after feeding the download a datagram or a timer.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Send `len` bytes of the buffer to this address.
    Send(SocketAddrV4, usize),
}

impl Download {
    /// A download of `file` from `server` (port 69) for a client of profile `p`.
    pub fn new(file: &str, server: SocketAddrV4, p: &Profile, expect: Expect) -> Download {
        Download {
            file: file.to_string(),
            server,
            peer: None,
            blksize: 512,
            window: 1,
            next: 1,
            in_window: 0,
            gap_acked: false,
            body: Body::new(expect),
            last: Vec::new(),
            deadline: 0,
            timeout: p.tftp_timeout.as_micros() as u64,
            retries: p.tftp_retries,
            tries: 0,
            result: None,
        }
    }

    /// Done: the bytes received, or why it failed.
    pub fn result(&self) -> Option<Result<u64, Failure>> {
        self.result
    }

    /// When it next needs [`Download::on_timer`].
    pub fn deadline(&self) -> Option<u64> {
        self.result.is_none().then_some(self.deadline)
    }

    /// Block size and window in use (after negotiation).
    pub fn negotiated(&self) -> (usize, u16) {
        (self.blksize, self.window)
    }

    /// Writes the RRQ into `buf`.
    pub fn start(&mut self, now: u64, p: &Profile, buf: &mut [u8]) -> Action {
        let options = Options {
            blksize: p.tftp.blksize,
            timeout: None,
            tsize: p.tftp.tsize.then_some(0),
            windowsize: p.tftp.windowsize,
        };
        let rrq = Repr::Request {
            write: false,
            filename: self.file.as_bytes(),
            mode: Mode::Octet,
            options,
            ignored: 0,
        };
        match rrq.emit(buf) {
            Ok(n) => {
                self.last = buf[..n].to_vec();
                self.deadline = now + self.timeout;
                Action::Send(self.server, n)
            }
            Err(_) => {
                self.result = Some(Err(Failure::NoBootFile));
                Action::None
            }
        }
    }

    /// A timer fired: resend the last packet, or give up.
    pub fn on_timer(&mut self, now: u64, buf: &mut [u8]) -> Action {
        if self.deadline().is_none_or(|d| now < d) {
            return Action::None;
        }
        self.tries += 1;
        if self.tries > self.retries {
            self.result = Some(Err(Failure::Timeout));
            return Action::None;
        }
        self.deadline = now + self.timeout;
        buf[..self.last.len()].copy_from_slice(&self.last);
        Action::Send(self.peer.unwrap_or(self.server), self.last.len())
    }

    fn ack(&mut self, now: u64, block: u64, to: SocketAddrV4, buf: &mut [u8]) -> Action {
        let n = Repr::Ack {
            block: block as u16,
        }
        .emit(buf)
        .unwrap_or(0);
        self.last.clear();
        self.last.extend_from_slice(&buf[..n]);
        self.in_window = 0;
        self.tries = 0;
        self.deadline = now + self.timeout;
        Action::Send(to, n)
    }

    /// A datagram from `from` arrived on the download's socket.
    pub fn on_packet(
        &mut self,
        now: u64,
        from: SocketAddrV4,
        data: &[u8],
        buf: &mut [u8],
    ) -> Action {
        if self.result.is_some() {
            return Action::None;
        }
        match self.peer {
            // Another TID: RFC 1350 says to answer it with an ERROR and go on; ignoring it is as
            // good for a load generator.
            Some(p) if p != from => return Action::None,
            _ => {}
        }
        let Ok(r) = Repr::parse(data) else {
            return Action::None;
        };
        match r {
            Repr::OAck { options } if self.peer.is_none() && self.next == 1 => {
                self.peer = Some(from);
                if let Some(b) = options.blksize {
                    self.blksize = usize::from(b);
                }
                if let Some(w) = options.windowsize {
                    self.window = w.max(1);
                }
                if let (Some(t), Some(e)) = (options.tsize, self.body.expected_size())
                    && t != e
                {
                    self.result = Some(Err(Failure::WrongSize));
                    return Action::None;
                }
                self.ack(now, 0, from, buf)
            }
            Repr::Data { block, data } => {
                if self.peer.is_none() {
                    // No OACK: plain RFC 1350 (the server ignored the options).
                    self.peer = Some(from);
                }
                let expected = self.next as u16;
                if block != expected {
                    // A gap (a block was lost) or a repeat (our ACK was lost): acknowledge what
                    // we have, once, so the server resends from there; the rest of its burst
                    // draws nothing until the expected block comes (one ACK per gap, not one
                    // per out-of-order block).
                    if self.gap_acked {
                        return Action::None;
                    }
                    self.gap_acked = true;
                    return self.ack(now, self.next - 1, from, buf);
                }
                self.gap_acked = false;
                if data.len() > self.blksize {
                    return Action::None;
                }
                self.body.update(data);
                self.next += 1;
                self.in_window += 1;
                self.tries = 0;
                self.deadline = now + self.timeout;
                if data.len() < self.blksize {
                    let a = self.ack(now, self.next - 1, from, buf);
                    self.finish();
                    return a;
                }
                if self.in_window >= self.window {
                    return self.ack(now, self.next - 1, from, buf);
                }
                Action::None
            }
            Repr::Error { .. } => {
                self.result = Some(Err(Failure::ServerError));
                Action::None
            }
            _ => Action::None,
        }
    }

    fn finish(&mut self) {
        self.result = Some(self.body.finish().map_err(|m| match m {
            Mismatch::Size => Failure::WrongSize,
            Mismatch::Hash => Failure::WrongHash,
        }));
    }
}

#[cfg(test)]
mod tests;
