//! Block I/O for the iSCSI target: a few I/O threads (one per core by default), each with one
//! io_uring and a pool of registered buffers, serving the reads, writes and syncs of every
//! connection assigned to it, many in flight at once. A connection hands its requests to its
//! thread through a [`Submitter`] (one wake-up per batch) and gets the completions back in its
//! [`Mailbox`], which wakes its `mio::Poll`.
//!
//! - Registered buffers (`IORING_REGISTER_BUFFERS`, `READ_FIXED`/`WRITE_FIXED`): 4 KiB-aligned,
//!   so the same buffers serve `O_DIRECT`. An I/O larger than a buffer is split into pieces; a
//!   request waits (in order) for a free buffer, so memory is bounded per thread, not per
//!   connection: a hall of a thousand diskless machines does not pin a thousand pools.
//! - `O_DIRECT` where the [`Source`] has a direct descriptor and the piece is 4 KiB-aligned
//!   (else, and if the file system refuses it, the buffered descriptor; logged once).
//! - Short reads and writes are resubmitted for the rest; a read past the end fails.
//! - Reads (and buffered writes) the page cache can serve without waiting are done on the
//!   caller's thread first ([`Source::read_nowait`], [`Source::write_nowait`]: `preadv2` and
//!   `pwritev2` with `RWF_NOWAIT`), which costs no hand-off at all; only what would block (a
//!   cold golden image, writeback pressure) goes to the ring. A golden image that a hall of
//!   machines reads stays hot, so a storm's reads are mostly served inline.
//! - Where io_uring is not available (an old kernel, a seccomp filter, `io_uring_disabled`)
//!   the same threads run `pread`/`pwrite`/`fdatasync` one at a time instead, and
//!   [`Engine::kind`] says so (the daemon logs it).
//!
//! Unsafe code is confined to the ring's buffer registration and the SQEs that point into
//! those buffers, and to the eventfd; each block says why it holds.

use io_uring::{IoUring, opcode, types};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Alignment of the registered buffers and of `O_DIRECT` pieces.
pub const ALIGN: usize = 4096;

/// A backing file: its buffered descriptor, and an `O_DIRECT` one where asked for and allowed.
#[derive(Debug)]
pub struct Source {
    buffered: File,
    direct: Option<File>,
    /// The file system refused an `O_DIRECT` piece: use the buffered descriptor from now on.
    direct_failed: AtomicBool,
    /// The file system does not take `RWF_NOWAIT` writes: do not try again.
    no_nowait_writes: AtomicBool,
}

/// What a non-blocking attempt did.
#[derive(Debug)]
pub enum Nowait {
    /// Done, all of it.
    Done,
    /// It would have waited (or done only part): hand it to the I/O threads.
    WouldBlock,
    Failed(io::Error),
}

impl Source {
    /// A source of `file` alone (buffered I/O).
    pub fn buffered(file: File) -> Source {
        Source {
            buffered: file,
            direct: None,
            direct_failed: AtomicBool::new(false),
            no_nowait_writes: AtomicBool::new(false),
        }
    }

    /// Reads `buf.len()` bytes at `offset` from the page cache, if it holds them all, without
    /// waiting (`preadv2(RWF_NOWAIT)`). Never for an `O_DIRECT` source (its reads bypass the
    /// cache by design).
    pub fn read_nowait(&self, buf: &mut [u8], offset: u64) -> Nowait {
        if self.is_direct() || buf.is_empty() {
            return Nowait::WouldBlock;
        }
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: one iovec over `buf`, which is live and exclusively borrowed for the call.
        let n = unsafe { libc::preadv2(self.buffered.as_raw_fd(), &iov, 1, offset as i64, NOWAIT) };
        match nowait_result(n, buf.len()) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Nowait::WouldBlock,
            Err(e) => Nowait::Failed(e),
            Ok(r) => r,
        }
    }

    /// Writes `data` at `offset` through the page cache on the caller's thread: without
    /// waiting (`pwritev2(RWF_NOWAIT)`) where the file system takes that ([`Nowait::WouldBlock`]
    /// if it would wait), else with a plain `pwrite` (a copy into the page cache, which waits
    /// only under writeback throttling; ext4 has no RWF_NOWAIT for buffered writes). Never for
    /// an `O_DIRECT` source.
    pub fn write_nowait(&self, data: &[u8], offset: u64) -> Nowait {
        if self.is_direct() || data.is_empty() {
            return Nowait::WouldBlock;
        }
        if self.no_nowait_writes.load(Ordering::Relaxed) {
            return match self.buffered.write_all_at(data, offset) {
                Ok(()) => Nowait::Done,
                Err(e) => Nowait::Failed(e),
            };
        }
        let iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: one iovec over `data`, live for the call; pwritev2 only reads through it.
        let n =
            unsafe { libc::pwritev2(self.buffered.as_raw_fd(), &iov, 1, offset as i64, NOWAIT) };
        // A part that went is written again (the same bytes) by the ring.
        match nowait_result(n, data.len()) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                self.no_nowait_writes.store(true, Ordering::Relaxed);
                self.write_nowait(data, offset)
            }
            Err(e) => Nowait::Failed(e),
            Ok(r) => r,
        }
    }

    /// `file`, and `path` opened again with `O_DIRECT` if `direct`; the reason when the second
    /// open fails (tmpfs, some network file systems), in which case I/O stays buffered.
    pub fn open(
        file: File,
        path: &std::path::Path,
        write: bool,
        direct: bool,
    ) -> (Source, Option<String>) {
        use std::os::unix::fs::OpenOptionsExt;
        let mut s = Source::buffered(file);
        if direct {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(f) => s.direct = Some(f),
                Err(e) => return (s, Some(format!("O_DIRECT refused ({e}); buffered I/O"))),
            }
        }
        (s, None)
    }

    /// Hands `len` bytes at `offset` back to the file system (`fallocate` with PUNCH_HOLE and
    /// KEEP_SIZE): they read as zeros and take no space (UNMAP).
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate takes no memory; the descriptor is ours and open.
        let r = unsafe {
            libc::fallocate(
                self.buffered.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The run of bytes from `offset` that is all data or all hole (`lseek` SEEK_DATA and
    /// SEEK_HOLE): its length, and whether it is data. A file system without holes reports
    /// everything as data.
    pub fn extent(&self, offset: u64) -> io::Result<(u64, bool)> {
        let fd = self.buffered.as_raw_fd();
        let seek = |whence| {
            // SAFETY: lseek takes no memory; the descriptor is ours and open.
            let r = unsafe { libc::lseek(fd, offset as i64, whence) };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as u64)
            }
        };
        let size = self.buffered.metadata()?.len();
        match seek(libc::SEEK_DATA) {
            // No data from here to the end.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                Ok((size.saturating_sub(offset), false))
            }
            Err(e) => Err(e),
            Ok(d) if d > offset => Ok((d - offset, false)),
            Ok(_) => Ok((seek(libc::SEEK_HOLE)?.saturating_sub(offset), true)),
        }
    }

    /// The buffered descriptor.
    pub fn file(&self) -> &File {
        &self.buffered
    }

    /// True if pieces may go through `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some() && !self.direct_failed.load(Ordering::Relaxed)
    }

    fn fd_for(&self, offset: u64, len: usize) -> RawFd {
        match &self.direct {
            Some(d)
                if !self.direct_failed.load(Ordering::Relaxed)
                    && offset.is_multiple_of(ALIGN as u64)
                    && len.is_multiple_of(ALIGN) =>
            {
                d.as_raw_fd()
            }
            _ => self.buffered.as_raw_fd(),
        }
    }
}

const NOWAIT: libc::c_int = libc::RWF_NOWAIT;

/// What a `preadv2`/`pwritev2` with `RWF_NOWAIT` of `want` bytes that returned `n` means: all
/// of it done, or (a part, or EAGAIN) not here; other errors as they are.
fn nowait_result(n: isize, want: usize) -> io::Result<Nowait> {
    match n {
        n if n >= 0 && n as usize == want => Ok(Nowait::Done),
        n if n >= 0 => Ok(Nowait::WouldBlock),
        _ => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EAGAIN) => Ok(Nowait::WouldBlock),
            e => Err(e),
        },
    }
}

/// A run of bytes of a source.
#[derive(Clone, Debug)]
pub struct Segment {
    pub src: Arc<Source>,
    pub offset: u64,
    pub len: usize,
}

/// What to do.
#[derive(Debug)]
pub enum Op {
    /// Read these runs, one after the other, into one buffer (an overlay's read takes runs
    /// from two files).
    Read(Vec<Segment>),
    Write {
        src: Arc<Source>,
        offset: u64,
        data: Vec<u8>,
    },
    /// `fdatasync`.
    Sync(Arc<Source>),
}

/// How a request ended: the data read (empty for writes and syncs), or the error.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub result: io::Result<Vec<u8>>,
}

/// Where a connection's completions arrive; wakes the connection's `mio::Poll`.
pub struct Mailbox {
    done: Mutex<Vec<Completion>>,
    waker: mio::Waker,
}

impl Mailbox {
    /// A mailbox that wakes `waker`'s poll.
    pub fn new(waker: mio::Waker) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            done: Mutex::new(Vec::new()),
            waker,
        })
    }

    /// The completions so far.
    pub fn take(&self) -> Vec<Completion> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Wakes the poll (something other than a completion wants the connection's attention).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    fn deliver(&self, c: Completion) {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        let _ = self.waker.wake();
    }
}

struct Request {
    tag: u64,
    op: Op,
    mailbox: Arc<Mailbox>,
}

/// An eventfd: how submitters wake an I/O thread.
struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd has no memory arguments; a negative return is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nothing else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to our own descriptor.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Blocks until signalled (the pread fallback's sleep), and clears it.
    fn wait(&self) {
        let mut v = [0u8; 8];
        // SAFETY: reads 8 bytes into a live local array from our own descriptor.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
    }
}

struct Shard {
    queue: Mutex<VecDeque<Request>>,
    wake: EventFd,
}

/// Sizes of the engine.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// I/O threads.
    pub threads: usize,
    /// Registered buffers per thread.
    pub buffers: usize,
    /// Bytes per buffer (a multiple of [`ALIGN`]).
    pub buffer_size: usize,
    /// Use pread/pwrite even where io_uring works (for comparisons and tests).
    pub force_pread: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            buffers: 256,
            buffer_size: 128 << 10,
            force_pread: false,
        }
    }
}

/// The I/O threads.
pub struct Engine {
    shards: Vec<Arc<Shard>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    kind: &'static str,
    why_pread: Option<String>,
}

impl Engine {
    /// Starts the threads: io_uring if it can be set up, else the pread fallback.
    pub fn start(s: Settings) -> io::Result<Engine> {
        let s = Settings {
            threads: s.threads.clamp(1, 64),
            buffers: s.buffers.clamp(1, 16384),
            buffer_size: s.buffer_size.max(ALIGN).next_multiple_of(ALIGN),
            ..s
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut shards = Vec::new();
        let mut rings = Vec::new();
        let mut why_pread = s.force_pread.then(|| "asked for".to_string());
        for _ in 0..s.threads {
            shards.push(Arc::new(Shard {
                queue: Mutex::new(VecDeque::new()),
                wake: EventFd::new()?,
            }));
            if why_pread.is_none() {
                match Uring::new(s.buffers, s.buffer_size) {
                    Ok(r) => rings.push(r),
                    Err(e) => why_pread = Some(format!("io_uring unavailable: {e}")),
                }
            }
        }
        if why_pread.is_some() {
            rings.clear();
        }
        let kind = if why_pread.is_some() {
            "pread"
        } else {
            "io_uring"
        };
        let mut threads = Vec::new();
        let mut rings = rings.into_iter();
        for (i, shard) in shards.iter().enumerate() {
            let (shard, stop) = (shard.clone(), stop.clone());
            let ring = rings.next();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("blockio-{i}"))
                    .spawn(move || match ring {
                        Some(r) => r.run(&shard, &stop),
                        None => run_pread(&shard, &stop),
                    })?,
            );
        }
        Ok(Engine {
            shards,
            threads,
            stop,
            kind,
            why_pread,
        })
    }

    /// "io_uring" or "pread".
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Why the pread fallback runs, if it does.
    pub fn why_pread(&self) -> Option<&str> {
        self.why_pread.as_deref()
    }

    /// A submitter for a connection (`key` picks its thread), delivering to `mailbox`.
    pub fn submitter(&self, key: usize, mailbox: Arc<Mailbox>) -> Submitter {
        Submitter {
            shard: self.shards[key % self.shards.len()].clone(),
            pending: Vec::new(),
            mailbox,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in &self.shards {
            s.wake.signal();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A connection's way to its I/O thread.
pub struct Submitter {
    shard: Arc<Shard>,
    pending: Vec<Request>,
    mailbox: Arc<Mailbox>,
}

impl Submitter {
    /// Queues `op` (sent at the next [`Submitter::flush`]).
    pub fn submit(&mut self, tag: u64, op: Op) {
        self.pending.push(Request {
            tag,
            op,
            mailbox: self.mailbox.clone(),
        });
    }

    /// Hands what is queued to the thread, with one wake-up.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.shard
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(self.pending.drain(..));
        self.shard.wake.signal();
    }
}

/// The fallback: one request at a time with pread/pwrite/fdatasync.
fn run_pread(shard: &Shard, stop: &AtomicBool) {
    loop {
        let next = shard
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        let Some(r) = next else {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            shard.wake.wait();
            continue;
        };
        let result = match r.op {
            Op::Read(segs) => {
                let total = segs.iter().map(|s| s.len).sum();
                let mut data = vec![0u8; total];
                let mut at = 0;
                segs.iter()
                    .try_for_each(|s| {
                        let r = s
                            .src
                            .buffered
                            .read_exact_at(&mut data[at..at + s.len], s.offset);
                        at += s.len;
                        r
                    })
                    .map(|()| data)
            }
            Op::Write { src, offset, data } => src
                .buffered
                .write_all_at(&data, offset)
                .map(|()| Vec::new()),
            Op::Sync(src) => src.buffered.sync_data().map(|()| Vec::new()),
        };
        r.mailbox.deliver(Completion { tag: r.tag, result });
    }
}

/// The registered buffers of a ring: one aligned allocation, cut into equal buffers.
struct Buffers {
    base: *mut u8,
    layout: std::alloc::Layout,
    size: usize,
    free: Vec<u16>,
}

// SAFETY: the allocation is owned by this struct and touched only by the thread that owns the
// ring (the struct moves to that thread once, before any I/O).
unsafe impl Send for Buffers {}

impl Buffers {
    fn new(n: usize, size: usize) -> io::Result<Buffers> {
        let layout = std::alloc::Layout::from_size_align(n * size, ALIGN)
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a nonzero size (n and size are at least 1 and ALIGN).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        if base.is_null() {
            return Err(io::Error::new(ErrorKind::OutOfMemory, "registered buffers"));
        }
        Ok(Buffers {
            base,
            layout,
            size,
            free: (0..n as u16).rev().collect(),
        })
    }

    fn ptr(&self, i: u16) -> *mut u8 {
        // SAFETY: i < n (it came from `free`), so the offset stays inside the allocation.
        unsafe { self.base.add(usize::from(i) * self.size) }
    }

    fn slice(&self, i: u16, len: usize) -> &[u8] {
        // SAFETY: buffer i is `size` bytes inside the allocation, len <= size, and no I/O on it
        // is in flight when this is called (its completion was reaped).
        unsafe { std::slice::from_raw_parts(self.ptr(i), len.min(self.size)) }
    }

    fn slice_mut(&mut self, i: u16, len: usize) -> &mut [u8] {
        // SAFETY: as `slice`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(i), len.min(self.size)) }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring (which references the buffers)
        // is dropped before them (field order in `Uring`).
        unsafe { std::alloc::dealloc(self.base, self.layout) }
    }
}

/// A piece of a request: at most one buffer's worth of one segment.
struct Piece {
    req: usize,
    src: Arc<Source>,
    offset: u64,
    len: usize,
    /// Where in the request's data.
    at: usize,
    write: bool,
    /// Bytes done so far (short transfers are resubmitted for the rest).
    done: usize,
    buf: Option<u16>,
}

struct Pending {
    tag: u64,
    mailbox: Arc<Mailbox>,
    data: Vec<u8>,
    left: usize,
    err: Option<io::Error>,
    read: bool,
}

/// Piece slot for the wake-up poll.
const WAKE: u64 = u64::MAX;
/// Piece slots above this are syncs (no buffer).
const SYNC_BIT: u64 = 1 << 62;

struct Uring {
    // Dropped first: unregisters the buffers before they are freed.
    ring: IoUring,
    bufs: Buffers,
}

impl Uring {
    fn new(buffers: usize, size: usize) -> io::Result<Uring> {
        let entries = (buffers as u32 + 16).next_power_of_two().min(32768);
        let ring = IoUring::new(entries)?;
        let bufs = Buffers::new(buffers, size)?;
        let iov: Vec<libc::iovec> = (0..buffers as u16)
            .map(|i| libc::iovec {
                iov_base: bufs.ptr(i).cast(),
                iov_len: size,
            })
            .collect();
        // SAFETY: every iovec points into `bufs`, which lives as long as the ring (it is the
        // later field of the same struct and is freed after the ring is dropped).
        unsafe { ring.submitter().register_buffers(&iov)? };
        Ok(Uring { ring, bufs })
    }

    fn run(mut self, shard: &Shard, stop: &AtomicBool) {
        let mut reqs: Vec<Option<Pending>> = Vec::new();
        let mut free_reqs: Vec<usize> = Vec::new();
        let mut pieces: Vec<Option<Piece>> = Vec::new();
        let mut free_pieces: Vec<usize> = Vec::new();
        let mut waiting: VecDeque<usize> = VecDeque::new();
        let mut syncs: Vec<Option<(usize, Arc<Source>)>> = Vec::new();
        let mut inflight = 0usize;
        let mut armed = false;
        loop {
            if !armed {
                let e =
                    opcode::PollAdd::new(types::Fd(shard.wake.0.as_raw_fd()), libc::POLLIN as u32)
                        .build()
                        .user_data(WAKE);
                if self.push(&e) {
                    armed = true;
                }
            }
            // New requests: cut into pieces, which wait (in order) for buffers.
            let new: Vec<Request> = shard
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            for r in new {
                let (read, segs, data) = match r.op {
                    Op::Read(segs) => {
                        let total = segs.iter().map(|s| s.len).sum();
                        (true, segs, vec![0u8; total])
                    }
                    Op::Write { src, offset, data } => {
                        let len = data.len();
                        (false, vec![Segment { src, offset, len }], data)
                    }
                    Op::Sync(src) => {
                        let slot = put(
                            &mut reqs,
                            &mut free_reqs,
                            Pending {
                                tag: r.tag,
                                mailbox: r.mailbox,
                                data: Vec::new(),
                                left: 1,
                                err: None,
                                read: false,
                            },
                        );
                        let fd = types::Fd(src.buffered.as_raw_fd());
                        let s = syncs.iter().position(Option::is_none).unwrap_or_else(|| {
                            syncs.push(None);
                            syncs.len() - 1
                        });
                        syncs[s] = Some((slot, src));
                        let e = opcode::Fsync::new(fd)
                            .flags(types::FsyncFlags::DATASYNC)
                            .build()
                            .user_data(SYNC_BIT | s as u64);
                        while !self.push(&e) {
                            let _ = self.ring.submit();
                        }
                        inflight += 1;
                        continue;
                    }
                };
                let slot = put(
                    &mut reqs,
                    &mut free_reqs,
                    Pending {
                        tag: r.tag,
                        mailbox: r.mailbox,
                        data,
                        left: 0,
                        err: None,
                        read,
                    },
                );
                let mut at = 0;
                for s in segs {
                    let mut off = 0;
                    while off < s.len {
                        let len = (s.len - off).min(self.bufs.size);
                        let p = put(
                            &mut pieces,
                            &mut free_pieces,
                            Piece {
                                req: slot,
                                src: s.src.clone(),
                                offset: s.offset + off as u64,
                                len,
                                at,
                                write: !read,
                                done: 0,
                                buf: None,
                            },
                        );
                        reqs[slot].as_mut().unwrap().left += 1;
                        waiting.push_back(p);
                        off += len;
                        at += len;
                    }
                }
                if reqs[slot].as_ref().unwrap().left == 0 {
                    // Nothing to transfer.
                    let r = reqs[slot].take().unwrap();
                    free_reqs.push(slot);
                    r.mailbox.deliver(Completion {
                        tag: r.tag,
                        result: Ok(r.data),
                    });
                }
            }
            // Start what buffers allow.
            while let Some(&p) = waiting.front() {
                let Some(b) = self.bufs.free.pop() else { break };
                waiting.pop_front();
                let piece = pieces[p].as_mut().unwrap();
                piece.buf = Some(b);
                if piece.write {
                    let src =
                        &reqs[piece.req].as_ref().unwrap().data[piece.at..piece.at + piece.len];
                    self.bufs.slice_mut(b, piece.len).copy_from_slice(src);
                }
                let e = self.piece_sqe(p, pieces[p].as_ref().unwrap());
                while !self.push(&e) {
                    let _ = self.ring.submit();
                }
                inflight += 1;
            }
            if stop.load(Ordering::SeqCst) && inflight == 0 && waiting.is_empty() {
                return;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "io_uring wait failed");
                }
                continue;
            }
            let cqes: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (ud, res) in cqes {
                if ud == WAKE {
                    shard.wake.wait();
                    armed = false;
                    continue;
                }
                inflight -= 1;
                if ud & SYNC_BIT != 0 {
                    let (slot, _) = syncs[(ud & !SYNC_BIT) as usize].take().unwrap();
                    let r = reqs[slot].take().unwrap();
                    free_reqs.push(slot);
                    let result = if res < 0 {
                        Err(io::Error::from_raw_os_error(-res))
                    } else {
                        Ok(Vec::new())
                    };
                    r.mailbox.deliver(Completion { tag: r.tag, result });
                    continue;
                }
                let p = ud as usize;
                let piece = pieces[p].as_mut().unwrap();
                let b = piece.buf.unwrap();
                let outcome = if res < 0 {
                    let err = io::Error::from_raw_os_error(-res);
                    if res == -libc::EINVAL && piece.src.is_direct() {
                        // The file system refused O_DIRECT for this: buffered from now on.
                        piece.src.direct_failed.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            "O_DIRECT refused by the file system; buffered I/O for this file"
                        );
                        None
                    } else {
                        Some(Err(err))
                    }
                } else if res == 0 && piece.done < piece.len {
                    Some(Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "past the end of the file",
                    )))
                } else {
                    piece.done += res as usize;
                    (piece.done >= piece.len).then_some(Ok(()))
                };
                match outcome {
                    None => {
                        // The rest of the piece (a short transfer, or the buffered retry).
                        let e = self.piece_sqe(p, pieces[p].as_ref().unwrap());
                        while !self.push(&e) {
                            let _ = self.ring.submit();
                        }
                        inflight += 1;
                    }
                    Some(r) => {
                        let piece = pieces[p].take().unwrap();
                        free_pieces.push(p);
                        let req = reqs[piece.req].as_mut().unwrap();
                        match r {
                            Ok(()) if req.read => req.data[piece.at..piece.at + piece.len]
                                .copy_from_slice(self.bufs.slice(b, piece.len)),
                            Ok(()) => {}
                            Err(e) => {
                                req.err.get_or_insert(e);
                            }
                        }
                        self.bufs.free.push(b);
                        req.left -= 1;
                        if req.left == 0 {
                            let r = reqs[piece.req].take().unwrap();
                            free_reqs.push(piece.req);
                            let result = match r.err {
                                Some(e) => Err(e),
                                None if r.read => Ok(r.data),
                                None => Ok(Vec::new()),
                            };
                            r.mailbox.deliver(Completion { tag: r.tag, result });
                        }
                    }
                }
            }
        }
    }

    /// The SQE that moves the rest of piece `p`.
    fn piece_sqe(&self, p: usize, piece: &Piece) -> io_uring::squeue::Entry {
        let b = piece.buf.unwrap();
        let rest = piece.len - piece.done;
        let fd = types::Fd(piece.src.fd_for(piece.offset + piece.done as u64, rest));
        let ptr = self.bufs.ptr(b).wrapping_add(piece.done);
        let off = piece.offset + piece.done as u64;
        if piece.write {
            opcode::WriteFixed::new(fd, ptr, rest as u32, b)
                .offset(off)
                .build()
                .user_data(p as u64)
        } else {
            opcode::ReadFixed::new(fd, ptr, rest as u32, b)
                .offset(off)
                .build()
                .user_data(p as u64)
        }
    }

    /// Pushes `e` on the submission queue; false if it is full.
    fn push(&mut self, e: &io_uring::squeue::Entry) -> bool {
        // SAFETY: every SQE built here points into the registered buffers (which outlive the
        // ring), at a buffer reserved for that piece until its completion is reaped; the poll
        // and fsync entries point at no memory.
        unsafe { self.ring.submission().push(e).is_ok() }
    }
}

fn put<T>(v: &mut Vec<Option<T>>, free: &mut Vec<usize>, x: T) -> usize {
    match free.pop() {
        Some(i) => {
            v[i] = Some(x);
            i
        }
        None => {
            v.push(Some(x));
            v.len() - 1
        }
    }
}

#[cfg(test)]
mod tests;
