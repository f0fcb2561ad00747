//! One read transfer: OACK, then DATA blocks in windows, until the last block is acknowledged.

use bootstorm_time::{Duration, Instant};
use bootstorm_wire::tftp::{self, DATA_HEADER_LEN, ErrorCode, Options, Repr};
use std::sync::Arc;

/// The longest wait between retransmissions of one window.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The wait before the next retransmission after `retries` of them: `timeout` doubled for each
/// (RFC 1123 4.2.3.2), up to [`MAX_BACKOFF`] or `timeout` itself if that is longer. Shared by
/// reads and writes.
pub(crate) fn backoff(timeout: Duration, retries: u8) -> Duration {
    let t = timeout.as_millis();
    let grown = t.saturating_mul(1 << retries.min(8));
    Duration::from_millis(grown.min(MAX_BACKOFF.as_millis().max(t)))
}

/// Server-side limits for option negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest block size granted; also capped by the path MTU the daemon passes in.
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440). 64 keeps a window within typical socket buffers.
    pub max_windowsize: u16,
    /// Retransmission timeout when the client asks for none.
    pub default_timeout: Duration,
    /// Retransmissions of one window before the transfer is abandoned.
    pub max_retries: u8,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_blksize: 1468,
            max_windowsize: 64,
            default_timeout: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}

/// What a transfer runs with, and the OACK (if any) that announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Block size.
    pub blksize: u16,
    /// Window size.
    pub windowsize: u16,
    /// Retransmission timeout.
    pub timeout: Duration,
    /// The OACK to send first; `None` for a client that asked for no option (RFC 1350 exchange).
    pub oack: Option<Options>,
}

/// Decides a transfer's parameters from a request's options (RFC 2347): each option the client
/// asked for and the server supports is answered in the OACK, with the value granted; options it
/// did not ask for are never added. `file_size` answers tsize.
pub fn negotiate(req: &Options, file_size: u64, limits: &Limits) -> Negotiated {
    let mut oack = Options::default();
    // RFC 2348: the server may answer a smaller block size, never a larger one.
    let blksize = match req.blksize {
        Some(b) => {
            let g = b.min(limits.max_blksize).max(tftp::BLKSIZE_MIN);
            oack.blksize = Some(g);
            g
        }
        None => tftp::DEFAULT_BLKSIZE,
    };
    // RFC 7440: likewise for the window.
    let windowsize = match req.windowsize {
        Some(w) => {
            let g = w.min(limits.max_windowsize).max(1);
            oack.windowsize = Some(g);
            g
        }
        None => 1,
    };
    // RFC 2349: the server echoes the timeout it accepts, unchanged.
    let timeout = match req.timeout {
        Some(t) => {
            oack.timeout = Some(t);
            Duration::from_secs(u64::from(t))
        }
        None => limits.default_timeout,
    };
    // RFC 2349: tsize 0 in a read request asks for the size.
    if req.tsize.is_some() {
        oack.tsize = Some(file_size);
    }
    Negotiated {
        blksize,
        windowsize,
        timeout,
        oack: (!oack.is_empty()).then_some(oack),
    }
}

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Sending or waiting for acknowledgements.
    Running,
    /// The last block was acknowledged.
    Done,
    /// Abandoned: the client stopped answering, or sent an ERROR.
    Failed(Failure),
}

/// Why a transfer was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No acknowledgement after the last retransmission.
    Timeout,
    /// The client sent an ERROR.
    ClientError(ErrorCode),
    /// The client refused our OACK (ERROR 8, RFC 2347).
    OptionsRefused,
    /// The client broke the protocol (e.g. a DATA block longer than the block size).
    Protocol,
    /// An upload went over the size limit.
    TooLarge,
    /// The server could not go on (e.g. the upload could not be written); the code was sent.
    Local(ErrorCode),
}

/// A read transfer. Block numbers are tracked as absolute indices (0 = the OACK, 1.. = DATA) and
/// sent modulo 65536, so files of any size work: after block 65535 comes block 0 (as tftp-hpa,
/// curl and atftp expect).
#[derive(Debug)]
pub struct ReadTransfer {
    data: Arc<[u8]>,
    params: Negotiated,
    max_retries: u8,
    /// Index of the last DATA block.
    last: u64,
    /// Highest index acknowledged; `None` until the OACK (or, without one, nothing) is.
    acked: Option<u64>,
    /// Next index to send.
    next: u64,
    deadline: Option<Instant>,
    retries: u8,
    state: State,
    /// An ERROR still to send (on timeout).
    pending_error: bool,
    /// Counters: DATA packets sent, of which retransmissions.
    sent: u64,
    resent: u64,
}

impl ReadTransfer {
    /// A transfer of `data` with negotiated `params`. Call [`ReadTransfer::poll_transmit`] next.
    pub fn new(data: Arc<[u8]>, params: Negotiated, limits: &Limits) -> ReadTransfer {
        let blocks = data.len() as u64 / u64::from(params.blksize) + 1;
        let (acked, next) = if params.oack.is_some() {
            (None, 0)
        } else {
            (Some(0), 1)
        };
        ReadTransfer {
            data,
            params,
            max_retries: limits.max_retries,
            last: blocks,
            acked,
            next,
            deadline: None,
            retries: 0,
            state: State::Running,
            pending_error: false,
            sent: 0,
            resent: 0,
        }
    }

    /// Where the transfer stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its parameters.
    pub fn params(&self) -> &Negotiated {
        &self.params
    }

    /// DATA packets sent so far, and how many of those were retransmissions.
    pub fn counters(&self) -> (u64, u64) {
        (self.sent, self.resent)
    }

    /// Bytes of file acknowledged so far.
    pub fn bytes_acked(&self) -> u64 {
        let blocks = self.acked.unwrap_or(0);
        (blocks * u64::from(self.params.blksize)).min(self.data.len() as u64)
    }

    /// The end of the window: the highest index that may be in flight.
    fn window_end(&self) -> u64 {
        match self.acked {
            None => 0, // only the OACK until it is acknowledged
            Some(a) => (a + u64::from(self.params.windowsize)).min(self.last),
        }
    }

    /// Writes the next packet to send into `buf` (at least `blksize + 4` bytes) and returns its
    /// length, or `None` if nothing is due now.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.pending_error {
            self.pending_error = false;
            let e = Repr::Error {
                code: ErrorCode::NotDefined,
                message: b"timed out",
            };
            return e.emit(buf).ok();
        }
        if self.state != State::Running || self.next > self.window_end() {
            return None;
        }
        let n = if self.next == 0 {
            let oack = self.params.oack.unwrap_or_default();
            Repr::OAck { options: oack }.emit(buf).ok()?
        } else {
            let bs = usize::from(self.params.blksize);
            let start = ((self.next - 1) as usize)
                .saturating_mul(bs)
                .min(self.data.len());
            let end = (start + bs).min(self.data.len());
            let len = end - start;
            if buf.len() < DATA_HEADER_LEN + len {
                return None;
            }
            tftp::emit_data_header(buf, self.next as u16).ok()?;
            buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len].copy_from_slice(&self.data[start..end]);
            self.sent += 1;
            DATA_HEADER_LEN + len
        };
        self.next += 1;
        if self.deadline.is_none() {
            self.deadline = Some(now + self.backoff());
        }
        Some(n)
    }

    /// An ACK arrived. A duplicate or stale ACK changes nothing and, in particular, triggers no
    /// retransmission (the Sorcerer's Apprentice bug, RFC 1123 4.2.3.1); an ACK inside the window
    /// moves it (RFC 7440: a client may acknowledge part of a window to ask for the rest again).
    pub fn handle_ack(&mut self, now: Instant, block: u16) {
        if self.state != State::Running {
            return;
        }
        // The absolute index this ACK names: the first index after `acked` whose low 16 bits
        // are `block`. Windows are far smaller than 65536 blocks, so this is unambiguous.
        let base = self.acked.map_or(0, |a| a + 1);
        let offset = u64::from(block.wrapping_sub(base as u16));
        let idx = base + offset;
        let highest_sent = self.next.saturating_sub(1);
        if idx > highest_sent || self.next == base {
            return; // stale (before the window) or for a block never sent
        }
        self.acked = Some(idx);
        self.retries = 0;
        if idx >= self.last {
            self.state = State::Done;
            self.deadline = None;
            return;
        }
        // Go on from what was acknowledged: blocks after it that were in flight and are now
        // outside the new window's start get sent again only if the client asked (partial ACK).
        self.next = idx + 1;
        self.deadline = Some(now + self.backoff());
    }

    /// The client sent an ERROR: the transfer ends.
    pub fn handle_error(&mut self, code: ErrorCode) {
        if self.state == State::Running {
            self.state = State::Failed(
                if code == ErrorCode::OptionRefused && self.acked.is_none() {
                    Failure::OptionsRefused
                } else {
                    Failure::ClientError(code)
                },
            );
            self.deadline = None;
        }
    }

    /// The wait before the next retransmission: the timeout, doubled for each retransmission of
    /// the same window (RFC 1123 4.2.3.2: TFTP MUST back off exponentially), up to
    /// [`MAX_BACKOFF`] (or the timeout itself if the client asked for a longer one). Besides
    /// sparing a congested path, this lets clients that ignore repeated blocks without
    /// acknowledging them (atftp does) reach their own timer (atftp's is 5 s) and send their lost
    /// ACK again; retransmitting at a fixed short interval starves that timer forever (seen with
    /// atftp at 5% loss: a 40 MiB transfer stalled until the server gave up).
    fn backoff(&self) -> Duration {
        backoff(self.params.timeout, self.retries)
    }

    /// When [`ReadTransfer::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time passed: if the deadline is reached, resend the window from the first unacknowledged
    /// block, or abandon the transfer after `max_retries`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(d) = self.deadline else { return };
        if now < d || self.state != State::Running {
            return;
        }
        if self.retries >= self.max_retries {
            self.state = State::Failed(Failure::Timeout);
            self.deadline = None;
            self.pending_error = true;
            return;
        }
        self.retries += 1;
        let from = self.acked.map_or(0, |a| a + 1);
        self.resent += self.next.saturating_sub(from.max(1));
        self.next = from;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests;
