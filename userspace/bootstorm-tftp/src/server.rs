//! The TFTP server core, sans-IO, in the quinn-proto manner: it owns request policy and every
//! transfer of one worker, with one timer structure ([`Timers`]); the I/O around it only moves
//! datagrams and provides files.
//!
//! - [`Server::handle_request`]: a datagram to the listening port. Policy lives here: only
//!   requests are answered; a malformed one gets ERROR 4; invalid option values are left out and
//!   counted (RFC 2347); a client whose transfer runs starts no second one; when
//!   `max_transfers` run (counted across every worker that shares the [`Counters`]) the request
//!   gets silence, so the client asks again later rather than failing its boot; files and
//!   uploads come from the [`Host`], whose refusals become ERRORs sent from a fresh port.
//!   An accepted request is a transfer with a [`TransferId`]; the I/O gives it its own port (its
//!   TID) and calls [`Server::handle_datagram`] with what arrives there.
//! - [`Server::poll_transmit`] yields the datagrams due, each naming the port it leaves from:
//!   a transfer's own, or a fresh one (refusals). Consecutive datagrams of one transfer come
//!   together, so the I/O can send a window as one segmented write.
//! - [`Server::poll_timeout`] / [`Server::handle_timeout`]: retransmission deadlines, one heap
//!   entry per transfer.
//! - [`Server::poll_event`]: transfers that ended, for the I/O to release their ports and log.
//!
//! How a TID is realised (a UDP socket per transfer today, a port on an AF_XDP queue later) is
//! the I/O's business; the core only names transfers.

use crate::{Limits, Negotiated, ReadTransfer, State, WriteTransfer, negotiate};
use bootstorm_time::{Instant, Timers};
use bootstorm_wire::tftp::{ErrorCode, Mode, Repr};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A transfer of this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u32);

/// Why the host refused a request: the ERROR the client gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: ErrorCode,
    /// The message (and the log's reason).
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Where an upload's bytes go (the host's file); the core calls it before the ACK that
/// acknowledges them leaves.
pub trait UploadSink: Send {
    /// Keeps `bytes` (the next part of the file).
    fn write(&mut self, bytes: &[u8]) -> Result<(), Refusal>;
    /// The upload is whole: put it in place (before the final ACK leaves).
    fn commit(&mut self) -> Result<(), Refusal>;
    /// The upload failed: leave nothing behind (before the ERROR leaves).
    fn discard(&mut self);
}

/// What the core needs of its host: files to send and places for uploads.
pub trait Host {
    /// The bytes of `name` for `client` (its own root first, where the host has per-client
    /// roots), converted to netascii if asked, or why not.
    fn read_file(
        &mut self,
        client: SocketAddrV4,
        name: &[u8],
        netascii: bool,
    ) -> Result<Arc<[u8]>, Refusal>;
    /// A place for an upload of `name` (`size` if the client announced it with tsize), or why
    /// not (uploads off, too large, exists, bad name).
    fn open_upload(
        &mut self,
        client: SocketAddrV4,
        name: &[u8],
        size: Option<u64>,
    ) -> Result<(Box<dyn UploadSink>, u64), Refusal>;
}

/// Counters, shared by every worker's core (and read by the control socket).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests accepted.
    pub started: AtomicU64,
    /// Transfers completed.
    pub completed: AtomicU64,
    /// Transfers abandoned (timeout or client error).
    pub failed: AtomicU64,
    /// Requests answered with an ERROR.
    pub refused: AtomicU64,
    /// DATA packets sent, and of those retransmitted.
    pub data_sent: AtomicU64,
    /// See `data_sent`.
    pub data_resent: AtomicU64,
    /// Transfers running now, on every worker: the `max_transfers` budget.
    pub active: AtomicU64,
    /// Repeated requests from a client whose transfer runs.
    pub duplicates: AtomicU64,
    /// Requests left unanswered because `max_transfers` were running.
    pub deferred: AtomicU64,
    /// Datagrams from a wrong TID answered with ERROR 5.
    pub wrong_tid: AtomicU64,
    /// Request options left out of the OACK because their value was invalid.
    pub bad_options: AtomicU64,
    /// Uploads stored, and their bytes.
    pub uploaded: AtomicU64,
    /// See `uploaded`.
    pub upload_bytes: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The core's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Negotiation limits and retransmission.
    pub limits: Limits,
    /// Most transfers at once, across every core sharing the counters.
    pub max_transfers: usize,
}

/// Where a datagram leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The transfer's own port (its TID).
    Transfer(TransferId),
    /// A port of its own, opened for this datagram (an ERROR answering a request: RFC 1350 has
    /// servers answer from a new TID), from this local address.
    Fresh(std::net::Ipv4Addr),
}

/// A datagram to send: `len` bytes at the start of the buffer given to
/// [`Server::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The port it leaves from.
    pub from: Source,
    /// Its destination.
    pub to: SocketAddrV4,
    /// Its length.
    pub len: usize,
}

/// What a request led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// A transfer: give it a port (its TID) on `local`, or call [`Server::abandon`] if none can
    /// be had. `params` are what was negotiated (the I/O may segment windows of full blocks).
    Transfer {
        /// The transfer.
        id: TransferId,
        /// The local address the request was sent to: the transfer answers from it.
        local: std::net::Ipv4Addr,
        /// Negotiated parameters.
        params: Negotiated,
        /// True for a download (windows of DATA), false for an upload.
        read: bool,
    },
    /// Nothing to start (refused with an ERROR now queued, a duplicate, deferred, not a request).
    Nothing,
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The transfer.
    pub id: TransferId,
    /// Its client.
    pub peer: SocketAddrV4,
    /// The file name as requested.
    pub file: String,
    /// True for a download.
    pub read: bool,
    /// `Done`, or `Failed` and why.
    pub state: State,
    /// Bytes acknowledged (downloads) or received (uploads).
    pub bytes: u64,
    /// DATA packets retransmitted (downloads).
    pub resent: u64,
    /// Negotiated parameters.
    pub params: Negotiated,
    /// For an upload: it was stored.
    pub stored: bool,
    /// When it started.
    pub started: Instant,
}

/// An upload and where it goes.
struct Upload {
    t: WriteTransfer,
    sink: Box<dyn UploadSink>,
    committed: bool,
    discarded: bool,
}

impl Upload {
    /// Hands what arrived to the sink; commits once whole; discards once failed, so a client
    /// never sees an ACK for bytes not kept, nor a half file after an ERROR.
    fn store(&mut self) {
        if !self.t.pending().is_empty() {
            let r = self.sink.write(self.t.pending());
            self.t.clear_pending();
            if r.is_err() {
                self.t.abort(ErrorCode::DiskFull, "cannot write the file");
            }
        }
        if self.t.is_complete()
            && !self.committed
            && matches!(self.t.state(), State::Running | State::Done)
        {
            match self.sink.commit() {
                Ok(()) => self.committed = true,
                Err(r) if r.code == ErrorCode::FileExists => {
                    self.t.abort(ErrorCode::FileExists, "file already exists")
                }
                Err(_) => self
                    .t
                    .abort(ErrorCode::AccessViolation, "cannot store the file"),
            }
        }
        if matches!(self.t.state(), State::Failed(_)) && !self.committed && !self.discarded {
            self.discarded = true;
            self.sink.discard();
        }
    }
}

enum Job {
    Read(ReadTransfer),
    Write(Box<Upload>),
}

struct Transfer {
    job: Job,
    peer: SocketAddrV4,
    file: String,
    started: Instant,
}

impl Transfer {
    fn state(&self) -> State {
        match &self.job {
            Job::Read(t) => t.state(),
            Job::Write(u) => u.t.state(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.job {
            Job::Read(t) => t.poll_timeout(),
            Job::Write(u) => u.t.poll_timeout(),
        }
    }
}

/// The TFTP server core of one worker.
pub struct Server {
    cfg: Config,
    counters: Arc<Counters>,
    transfers: HashMap<TransferId, Transfer>,
    by_peer: HashMap<SocketAddrV4, TransferId>,
    next_id: u32,
    timers: Timers<Instant, TransferId>,
    /// Transfers that may have something to send, in the order they became so.
    touched: VecDeque<TransferId>,
    /// The transfer whose datagrams are being handed out.
    current: Option<TransferId>,
    /// ERRORs to send from fresh ports: (from, to, bytes).
    refusals: VecDeque<(std::net::Ipv4Addr, SocketAddrV4, Vec<u8>)>,
    /// ERROR 5 to strangers, from a transfer's port.
    strangers: VecDeque<(TransferId, SocketAddrV4)>,
    finished: VecDeque<Finished>,
}

impl Server {
    /// A core with `cfg`, counting into `counters` (shared with the other workers' cores).
    pub fn new(cfg: Config, counters: Arc<Counters>) -> Server {
        Server {
            cfg,
            counters,
            transfers: HashMap::new(),
            by_peer: HashMap::new(),
            next_id: 0,
            timers: Timers::default(),
            touched: VecDeque::new(),
            current: None,
            refusals: VecDeque::new(),
            strangers: VecDeque::new(),
            finished: VecDeque::new(),
        }
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Transfers running on this core.
    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    /// True if no transfer runs here.
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    fn refuse(&mut self, local: std::net::Ipv4Addr, peer: SocketAddrV4, r: &Refusal) {
        bump(&self.counters.refused, 1);
        let mut buf = vec![0u8; 4 + r.message.len() + 1];
        if let Ok(n) = (Repr::Error {
            code: r.code,
            message: r.message.as_bytes(),
        })
        .emit(&mut buf)
        {
            buf.truncate(n);
            self.refusals.push_back((local, peer, buf));
        }
    }

    /// A datagram from `peer` to the listening port, sent to our address `local`.
    pub fn handle_request(
        &mut self,
        now: Instant,
        peer: SocketAddrV4,
        local: std::net::Ipv4Addr,
        datagram: &[u8],
        host: &mut dyn Host,
    ) -> Accepted {
        let (write, filename, mode, options) = match Repr::parse(datagram) {
            Ok(Repr::Request {
                write,
                filename,
                mode,
                options,
                ignored,
            }) => {
                // RFC 2347: an option the server does not accept is left out of the OACK; the
                // transfer runs with the default, and the client boots.
                bump(&self.counters.bad_options, u64::from(ignored));
                (write, filename, mode, options)
            }
            // DATA/ACK/ERROR to the listening port belong to no transfer: dropped.
            Ok(_) => return Accepted::Nothing,
            Err(e) => {
                // Only requests get an answer.
                if datagram.len() >= 2
                    && matches!(u16::from_be_bytes([datagram[0], datagram[1]]), 1 | 2)
                {
                    let r = Refusal::new(ErrorCode::IllegalOperation, format!("bad request: {e}"));
                    self.refuse(local, peer, &r);
                }
                return Accepted::Nothing;
            }
        };
        if self.by_peer.contains_key(&peer) {
            // Its OACK or first block was lost; the transfer's own retransmission answers.
            bump(&self.counters.duplicates, 1);
            return Accepted::Nothing;
        }
        if self.counters.active.load(Ordering::Relaxed) as usize >= self.cfg.max_transfers {
            // Full: no ERROR, which would end the client's boot; silence, so it asks again
            // after its timeout and gets a transfer once one has ended.
            bump(&self.counters.deferred, 1);
            return Accepted::Nothing;
        }
        let name = String::from_utf8_lossy(filename).into_owned();
        let netascii = mode == Mode::Netascii;
        let limits = self.cfg.limits;
        let (job, params) = if write {
            let (sink, max_size) = match host.open_upload(peer, filename, options.tsize) {
                Ok(x) => x,
                Err(r) => {
                    self.refuse(local, peer, &r);
                    return Accepted::Nothing;
                }
            };
            let params = negotiate(&options, options.tsize.unwrap_or(0), &limits);
            let t = WriteTransfer::new(params, netascii, max_size, &limits);
            let up = Upload {
                t,
                sink,
                committed: false,
                discarded: false,
            };
            (Job::Write(Box::new(up)), params)
        } else {
            let data = match host.read_file(peer, filename, netascii) {
                Ok(d) => d,
                Err(r) => {
                    self.refuse(local, peer, &r);
                    return Accepted::Nothing;
                }
            };
            let params = negotiate(&options, data.len() as u64, &limits);
            (Job::Read(ReadTransfer::new(data, params, &limits)), params)
        };
        let id = TransferId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        bump(&self.counters.started, 1);
        bump(&self.counters.active, 1);
        self.transfers.insert(
            id,
            Transfer {
                job,
                peer,
                file: name,
                started: now,
            },
        );
        self.by_peer.insert(peer, id);
        self.touched.push_back(id);
        Accepted::Transfer {
            id,
            local,
            params,
            read: !write,
        }
    }

    /// The I/O could not give transfer `id` a port: it ends at once, and the client gets
    /// `refusal` from a fresh port.
    pub fn abandon(&mut self, id: TransferId, local: std::net::Ipv4Addr, refusal: &Refusal) {
        if let Some(t) = self.transfers.remove(&id) {
            self.by_peer.remove(&t.peer);
            self.timers.cancel(id);
            // Never started, as far as the counters go: it is a refusal.
            self.counters.active.fetch_sub(1, Ordering::Relaxed);
            self.counters.started.fetch_sub(1, Ordering::Relaxed);
            self.refuse(local, t.peer, refusal);
        }
    }

    /// A datagram from `from` to transfer `id`'s own port.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        id: TransferId,
        from: SocketAddrV4,
        data: &[u8],
    ) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        if from != t.peer {
            // RFC 1350 4: a packet from a wrong TID gets ERROR 5, "without disturbing the
            // source of the transfer". An ERROR is never answered.
            if !data.starts_with(&[0, 5]) {
                bump(&self.counters.wrong_tid, 1);
                self.strangers.push_back((id, from));
            }
            return;
        }
        let Ok(p) = Repr::parse(data) else {
            return;
        };
        match (&mut t.job, p) {
            (Job::Read(r), Repr::Ack { block }) => r.handle_ack(now, block),
            (Job::Write(u), Repr::Data { block, data }) => u.t.handle_data(now, block, data),
            (Job::Read(r), Repr::Error { code, .. }) => r.handle_error(code),
            (Job::Write(u), Repr::Error { code, .. }) => u.t.handle_error(code),
            _ => return,
        }
        self.touched.push_back(id);
    }

    /// The earliest retransmission deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs the retransmission deadlines that have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(id) = self.timers.expired(now) {
            if let Some(t) = self.transfers.get_mut(&id) {
                match &mut t.job {
                    Job::Read(r) => r.handle_timeout(now),
                    Job::Write(u) => u.t.handle_timeout(now),
                }
                // Nothing due yet (the deadline moved later): re-armed below.
                self.touched.push_back(id);
            }
        }
    }

    /// The next datagram to send, written into `buf`; `None` when nothing is due. Call until
    /// `None` after every `handle_*`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((local, to, bytes)) = self.refusals.pop_front() {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            return Some(Transmit {
                from: Source::Fresh(local),
                to,
                len: n,
            });
        }
        if let Some((id, to)) = self.strangers.pop_front() {
            let n = (Repr::Error {
                code: ErrorCode::UnknownTid,
                message: b"unknown transfer ID",
            })
            .emit(buf)
            .unwrap_or(0);
            return Some(Transmit {
                from: Source::Transfer(id),
                to,
                len: n,
            });
        }
        loop {
            let id = match self.current {
                Some(id) => id,
                None => {
                    let id = self.touched.pop_front()?;
                    self.current = Some(id);
                    id
                }
            };
            let Some(t) = self.transfers.get_mut(&id) else {
                self.current = None;
                continue;
            };
            let n = match &mut t.job {
                Job::Read(r) => r.poll_transmit(now, buf),
                Job::Write(u) => {
                    u.store();
                    u.t.poll_transmit(now, buf)
                }
            };
            if let Some(n) = n {
                return Some(Transmit {
                    from: Source::Transfer(id),
                    to: t.peer,
                    len: n,
                });
            }
            // Drained: the transfer ends, or waits for its client or its deadline.
            self.current = None;
            let state = t.state();
            if state != State::Running {
                self.finish(id, state);
            } else if let Some(d) = t.poll_timeout() {
                self.timers.schedule(id, d);
            }
        }
    }

    fn finish(&mut self, id: TransferId, state: State) {
        let Some(t) = self.transfers.remove(&id) else {
            return;
        };
        self.by_peer.remove(&t.peer);
        self.timers.cancel(id);
        let c = &self.counters;
        c.active.fetch_sub(1, Ordering::Relaxed);
        let (read, bytes, resent, params, stored) = match &t.job {
            Job::Read(r) => {
                let (sent, resent) = r.counters();
                bump(&c.data_sent, sent);
                bump(&c.data_resent, resent);
                (true, r.bytes_acked(), resent, *r.params(), false)
            }
            Job::Write(u) => (false, u.t.size(), 0, *u.t.params(), u.committed),
        };
        // A stored upload is done, whatever the client said while the server dallied.
        let ok = if read { state == State::Done } else { stored };
        if ok {
            bump(&c.completed, 1);
            if stored {
                bump(&c.uploaded, 1);
                bump(&c.upload_bytes, bytes);
            }
        } else {
            bump(&c.failed, 1);
        }
        self.finished.push_back(Finished {
            id,
            peer: t.peer,
            file: t.file,
            read,
            state,
            bytes,
            resent,
            params,
            stored,
            started: t.started,
        });
    }

    /// A transfer that ended (its port can go).
    pub fn poll_event(&mut self) -> Option<Finished> {
        self.finished.pop_front()
    }
}

#[cfg(test)]
mod tests;
