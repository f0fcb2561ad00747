//! One write transfer (an upload, WRQ): ACK 0 or an OACK, then DATA blocks from the client,
//! acknowledged once per window (RFC 7440), until a short block ends the file.

use crate::transfer::{Failure, Limits, Negotiated, State, backoff};
use bootstorm_time::{Duration, Instant};
use bootstorm_wire::tftp::{ErrorCode, Repr};

/// The shortest time between two ACKs sent because of repeated or out-of-order DATA: a resent
/// window arrives as a burst of up to `windowsize` packets and needs one answer, not one per
/// packet (which would be the Sorcerer's Apprentice bug in the other direction).
pub const DUP_ACK_INTERVAL: Duration = Duration::from_millis(100);

/// Netascii to local text (RFC 764 as RFC 1350 uses it), across block boundaries: CR LF becomes
/// LF, CR NUL becomes CR, and a CR at the end of one block waits for the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetasciiDecoder {
    pending_cr: bool,
}

impl NetasciiDecoder {
    /// Decodes `input`, appending to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                match b {
                    b'\n' => out.push(b'\n'),
                    0 => out.push(b'\r'),
                    b'\r' => {
                        out.push(b'\r');
                        self.pending_cr = true;
                        continue;
                    }
                    other => {
                        // Not valid netascii; keep both bytes rather than lose data.
                        out.push(b'\r');
                        out.push(other);
                    }
                }
            } else if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// The end of the file: a trailing lone CR is kept.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// A write transfer. The daemon drains [`WriteTransfer::pending`] into its file after every
/// `handle_*` call and commits the file when [`WriteTransfer::is_complete`] turns true, before
/// calling `poll_transmit` (so the final ACK leaves only once the file is in place). The transfer
/// then lingers ("dallies", RFC 1350 section 6) for one timeout to answer a repeated last block,
/// in case its ACK was lost, and ends as [`State::Done`].
#[derive(Debug)]
pub struct WriteTransfer {
    params: Negotiated,
    max_size: u64,
    max_retries: u8,
    /// Absolute index of the last in-order DATA block received (0: none yet).
    received: u64,
    /// Blocks received since the last ACK was scheduled.
    since_ack: u16,
    /// An ACK (absolute index; 0 = ACK 0 or the OACK) to send.
    ack_due: Option<u64>,
    deadline: Option<Instant>,
    retries: u8,
    state: State,
    /// The last block arrived: data complete, dallying.
    complete: bool,
    /// Bytes received and not yet taken by the daemon.
    pending: Vec<u8>,
    /// Bytes of file received in total (after netascii decoding).
    size: u64,
    netascii: Option<NetasciiDecoder>,
    pending_error: Option<(ErrorCode, &'static str)>,
    /// When an ACK for repeated or out-of-order data was last sent.
    last_dup_ack: Option<Instant>,
}

impl WriteTransfer {
    /// An upload with negotiated `params` (its OACK, if any, is sent first instead of ACK 0),
    /// refusing files over `max_size` bytes. Call [`WriteTransfer::poll_transmit`] next.
    pub fn new(params: Negotiated, netascii: bool, max_size: u64, limits: &Limits) -> Self {
        WriteTransfer {
            params,
            max_size,
            max_retries: limits.max_retries,
            received: 0,
            since_ack: 0,
            ack_due: Some(0),
            deadline: None,
            retries: 0,
            state: State::Running,
            complete: false,
            pending: Vec::new(),
            size: 0,
            netascii: netascii.then(NetasciiDecoder::default),
            pending_error: None,
            last_dup_ack: None,
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

    /// Whether the whole file has arrived (the daemon commits it now).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// File bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Received bytes the daemon has not written yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The daemon wrote [`WriteTransfer::pending`].
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }

    /// The daemon could not store the file: the transfer ends with an ERROR to the client.
    pub fn abort(&mut self, code: ErrorCode, message: &'static str) {
        if self.state == State::Running {
            self.fail(Failure::Local(code), code, message);
        }
    }

    fn fail(&mut self, why: Failure, code: ErrorCode, message: &'static str) {
        self.state = State::Failed(why);
        self.pending_error = Some((code, message));
        self.ack_due = None;
        self.deadline = None;
        self.pending.clear();
    }

    fn backoff(&self) -> Duration {
        backoff(self.params.timeout, self.retries)
    }

    /// Writes the next packet (an ACK, the OACK or an ERROR) into `buf` and returns its length,
    /// or `None` if nothing is due.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some((code, message)) = self.pending_error.take() {
            let e = Repr::Error {
                code,
                message: message.as_bytes(),
            };
            return e.emit(buf).ok();
        }
        if self.state != State::Running {
            return None;
        }
        let idx = self.ack_due.take()?;
        let n = match (idx, self.params.oack) {
            (0, Some(options)) => Repr::OAck { options }.emit(buf).ok()?,
            _ => Repr::Ack { block: idx as u16 }.emit(buf).ok()?,
        };
        // After the last ACK: dally for one timeout. Otherwise: wait for the next DATA, backing
        // off on repeated silence.
        self.deadline = Some(
            now + if self.complete {
                self.params.timeout
            } else {
                self.backoff()
            },
        );
        Some(n)
    }

    /// A DATA packet arrived.
    pub fn handle_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        if self.state != State::Running {
            return;
        }
        let expected = self.received + 1;
        // Block numbers wrap at 65536; a window is far smaller, so the signed distance tells
        // old from new.
        let diff = block.wrapping_sub(expected as u16) as i16;
        if diff != 0 || self.complete {
            // Old (our ACK was lost and the client resent) or ahead of a lost block: tell the
            // client where we are, at most once per burst.
            if self
                .last_dup_ack
                .is_none_or(|t| now.saturating_since(t) >= DUP_ACK_INTERVAL)
            {
                self.last_dup_ack = Some(now);
                self.ack_due = Some(self.received);
                self.since_ack = 0;
            }
            return;
        }
        let blksize = usize::from(self.params.blksize);
        if data.len() > blksize {
            self.fail(
                Failure::Protocol,
                ErrorCode::IllegalOperation,
                "DATA longer than the block size",
            );
            return;
        }
        let before = self.pending.len();
        match &mut self.netascii {
            Some(d) => d.decode(data, &mut self.pending),
            None => self.pending.extend_from_slice(data),
        }
        let last = data.len() < blksize;
        if last && let Some(d) = &mut self.netascii {
            d.finish(&mut self.pending);
        }
        self.size += (self.pending.len() - before) as u64;
        if self.size > self.max_size {
            self.fail(
                Failure::TooLarge,
                ErrorCode::DiskFull,
                "file is over the upload size limit",
            );
            return;
        }
        self.received = expected;
        self.retries = 0;
        self.last_dup_ack = None;
        self.since_ack += 1;
        if last {
            self.complete = true;
            self.ack_due = Some(self.received);
        } else if self.since_ack >= self.params.windowsize {
            self.since_ack = 0;
            self.ack_due = Some(self.received);
        } else {
            self.deadline = Some(now + self.backoff());
        }
    }

    /// The client sent an ERROR: the transfer ends.
    pub fn handle_error(&mut self, code: ErrorCode) {
        if self.state == State::Running {
            self.state = State::Failed(if code == ErrorCode::OptionRefused && self.received == 0 {
                Failure::OptionsRefused
            } else {
                Failure::ClientError(code)
            });
            self.deadline = None;
            self.ack_due = None;
        }
    }

    /// When [`WriteTransfer::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Running {
            self.deadline
        } else {
            None
        }
    }

    /// Time passed: the dally ends the transfer; otherwise the last ACK (or the OACK) is sent
    /// again, or the transfer is abandoned after `max_retries`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(d) = self.deadline else { return };
        if now < d || self.state != State::Running {
            return;
        }
        self.deadline = None;
        if self.complete {
            self.state = State::Done;
            return;
        }
        if self.retries >= self.max_retries {
            self.fail(Failure::Timeout, ErrorCode::NotDefined, "timed out");
            return;
        }
        self.retries += 1;
        self.since_ack = 0;
        self.ack_due = Some(self.received);
    }
}

#[cfg(test)]
mod tests;
