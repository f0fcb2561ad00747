//! Copy-on-write overlays of a golden image, one per machine: the disk of a diskless machine is
//! the golden image (shared, opened read-only) under its own overlay, which holds what that
//! machine wrote.
//!
//! An overlay is two files in the target's overlay directory, named by the machine's key (its
//! initiator IQN or its MAC address):
//!
//! - `KEY.data`: sparse, the size of the golden image; chunk `i` (4 KiB) lives at offset
//!   `i * 4096` once the machine has written it. Until then it is a hole: an overlay costs
//!   nothing until written.
//! - `KEY.map`: a 4 KiB header (magic, chunk size, the golden image's size and fingerprint, the
//!   key, a checksum) and a bitmap, one bit per chunk, set once the chunk is in `KEY.data`.
//!
//! A write of part of a chunk not yet in the overlay copies the rest of the chunk from the
//! golden image first (copy-up), so a set bit always means "the whole chunk is here". The data
//! reaches `KEY.data` before its bit reaches `KEY.map`, and both before the write is
//! acknowledged: a crash of the server process (even SIGKILL) loses nothing acknowledged, the
//! page cache holding both. SYNCHRONIZE CACHE and FUA make it durable across a power loss: the
//! data file is synced before the map. What a machine wrote after its last flush may after a
//! power loss read as its new data, its old data, or (for a chunk's first write, whose bit
//! reached the disk before its data) zeros: the initiator asked for no more by not flushing.
//!
//! An overlay is created at the machine's first login (the map is written aside and renamed
//! into place, so a half-made overlay is never taken for one), kept across reconnects and
//! restarts, and locked (`flock`) while a session uses it, so that `bootstorm overlay reset`
//! and `delete` refuse to pull it from under a running machine. An overlay made from another
//! golden image (its size or fingerprint differ) is refused, not mixed with the new one.
//!
//! The format is written by hand because it is the product's own on-disk format (as the lease
//! journal is); there is no crate for "a bitmap of written chunks beside a sparse file".

use bootstorm_blockio::{Segment, Source};
use bootstorm_iscsi::scsi::fnv64;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The unit of copy-on-write.
pub const CHUNK: u64 = 4096;
/// Bytes before the bitmap in `KEY.map`.
const HEADER_LEN: u64 = 4096;
const MAGIC: &[u8; 8] = b"BSOVL\x00\x00\x01";
/// Bytes of the golden image at its start and at its end that its fingerprint covers.
const FINGERPRINT_SPAN: u64 = 1 << 20;

/// What identifies the golden image an overlay was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Golden {
    /// The bytes served (a multiple of the block size).
    pub size: u64,
    /// FNV-1a over its size and its first and last MiB: a changed partition table, boot
    /// loader or last blocks are noticed; a change only in the middle is not.
    pub fingerprint: u64,
}

impl Golden {
    /// Reads the fingerprint of `file`, of which `size` bytes are served.
    pub fn of(file: &File, size: u64) -> io::Result<Golden> {
        let mut buf = vec![0u8; FINGERPRINT_SPAN.min(size) as usize];
        let mut h = Vec::with_capacity(16 + 2 * buf.len());
        h.extend_from_slice(&size.to_le_bytes());
        file.read_exact_at(&mut buf, 0)?;
        h.extend_from_slice(&buf);
        let tail = size - buf.len() as u64;
        file.read_exact_at(&mut buf, tail)?;
        h.extend_from_slice(&buf);
        Ok(Golden {
            size,
            fingerprint: fnv64(&h),
        })
    }
}

/// The header of `KEY.map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub golden: Golden,
    /// Seconds since the epoch.
    pub created: u64,
    pub key: String,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN as usize);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(CHUNK as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.golden.size.to_le_bytes());
        b.extend_from_slice(&self.golden.fingerprint.to_le_bytes());
        b.extend_from_slice(&self.created.to_le_bytes());
        b.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        b.extend_from_slice(self.key.as_bytes());
        let sum = fnv64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b.resize(HEADER_LEN as usize, 0);
        b
    }

    fn decode(b: &[u8]) -> Result<Header, String> {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        if b.len() < HEADER_LEN as usize || &b[..8] != MAGIC {
            return Err("not a bootstorm overlay map (bad magic)".into());
        }
        if u64::from(u32_at(8)) != CHUNK {
            return Err(format!(
                "chunk size {} (this version uses {CHUNK})",
                u32_at(8)
            ));
        }
        let key_len = usize::from(u16::from_le_bytes([b[40], b[41]]));
        let end = 42 + key_len;
        if end + 8 > b.len() || fnv64(&b[..end]) != u64_at(end) {
            return Err("header checksum mismatch".into());
        }
        let key = std::str::from_utf8(&b[42..end])
            .map_err(|_| "key is not UTF-8".to_string())?
            .to_string();
        Ok(Header {
            golden: Golden {
                size: u64_at(16),
                fingerprint: u64_at(24),
            },
            created: u64_at(32),
            key,
        })
    }
}

/// The file name stem of a key: the key itself where it is made of letters, digits and
/// `.:-_`, other bytes as `%XX` (an IQN or a MAC needs none).
pub fn file_stem(key: &str) -> String {
    let mut s = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b"-_:".contains(&b) || (b == b'.' && i > 0) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The key of a machine known by its MAC: lowercase hex, hyphenated (`52-54-00-12-34-56`).
pub fn mac_key(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("-")
}

fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let stem = file_stem(key);
    (
        dir.join(format!("{stem}.map")),
        dir.join(format!("{stem}.data")),
    )
}

fn bitmap_words(size: u64) -> usize {
    size.div_ceil(CHUNK).div_ceil(64) as usize
}

/// One machine's overlay, open (and locked) while a session uses it.
pub struct Overlay {
    golden: Arc<Source>,
    size: u64,
    data: Arc<Source>,
    map: File,
    bits: Vec<AtomicU64>,
    /// Taken by writes that set bits (copy-up and the map's update).
    setting: Mutex<()>,
    key: String,
    /// The directory, and whether the files and their names were synced since opening.
    dir: PathBuf,
    durable: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("key", &self.key).finish()
    }
}

/// Why an overlay could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("overlay {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("overlay {path} is in use by another process")]
    Busy { path: PathBuf },
    #[error("overlay {path}: {why}")]
    Bad { path: PathBuf, why: String },
    #[error(
        "overlay {path} was made from another golden image (size {was_size}, fingerprint {was_fp:016x}; now {now_size}, {now_fp:016x}): reset or delete it (`bootstorm overlay reset`)"
    )]
    OtherGolden {
        path: PathBuf,
        was_size: u64,
        was_fp: u64,
        now_size: u64,
        now_fp: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |err| OpenError::Io {
        path: path.to_path_buf(),
        err,
    }
}

impl Overlay {
    /// Opens `key`'s overlay in `dir`, creating it (and `dir`) if it does not exist.
    pub fn open(
        dir: &Path,
        key: &str,
        golden: Arc<Source>,
        id: Golden,
    ) -> Result<Overlay, OpenError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (map_path, data_path) = paths(dir, key);
        // A reset or delete may unlink the files between our open and our lock: then the
        // locked inode is not the one the name points at, and we look again.
        for _ in 0..8 {
            if !map_path.exists() {
                create(&map_path, &data_path, key, id)?;
            }
            let map = match OpenOptions::new().read(true).write(true).open(&map_path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&map_path)(e)),
            };
            match map.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(OpenError::Busy { path: map_path });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&map_path)(e)),
            }
            let same = match (map.metadata(), std::fs::metadata(&map_path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            if never_flushed(&map) {
                tracing::warn!(overlay = %map_path.display(),
                    "overlay map without a header (created, never flushed, then a power loss): made again");
                let _ = std::fs::remove_file(&map_path);
                let _ = std::fs::remove_file(&data_path);
                continue;
            }
            return Overlay::load(map, &map_path, &data_path, key, golden, id);
        }
        Err(OpenError::Busy { path: map_path })
    }

    fn load(
        map: File,
        map_path: &Path,
        data_path: &Path,
        key: &str,
        golden: Arc<Source>,
        id: Golden,
    ) -> Result<Overlay, OpenError> {
        let header = read_header(&map, map_path)?;
        if header.golden != id {
            return Err(OpenError::OtherGolden {
                path: map_path.to_path_buf(),
                was_size: header.golden.size,
                was_fp: header.golden.fingerprint,
                now_size: id.size,
                now_fp: id.fingerprint,
            });
        }
        let words = bitmap_words(id.size);
        let mut raw = vec![0u8; words * 8];
        map.read_exact_at(&mut raw, HEADER_LEN)
            .map_err(io_err(map_path))?;
        let bits = raw
            .chunks_exact(8)
            .map(|w| AtomicU64::new(u64::from_le_bytes(w.try_into().unwrap())))
            .collect();
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .open(data_path)
            .map_err(io_err(data_path))?;
        Ok(Overlay {
            golden,
            size: id.size,
            data: Arc::new(Source::buffered(data)),
            map,
            bits,
            setting: Mutex::new(()),
            key: key.to_string(),
            dir: map_path.parent().map(Path::to_path_buf).unwrap_or_default(),
            durable: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The machine's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn is_set(&self, chunk: u64) -> bool {
        self.bits[(chunk / 64) as usize].load(Ordering::Acquire) & (1 << (chunk % 64)) != 0
    }

    /// Chunks in the overlay.
    pub fn written_chunks(&self) -> u64 {
        self.bits
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }

    /// Where the `len` bytes at `offset` are: runs of the overlay's data file (chunks the
    /// machine wrote) and of the golden image (the others), in order, for the block I/O engine.
    pub fn read_segments(&self, offset: u64, len: u64) -> io::Result<Vec<Segment>> {
        check_range(offset, len, self.size)?;
        let mut out = Vec::new();
        let stop = offset + len;
        let mut pos = offset;
        while pos < stop {
            let here = self.is_set(pos / CHUNK);
            let mut end = (pos / CHUNK + 1) * CHUNK;
            while end < stop && self.is_set(end / CHUNK) == here {
                end += CHUNK;
            }
            let end = end.min(stop);
            out.push(Segment {
                src: if here { &self.data } else { &self.golden }.clone(),
                offset: pos,
                len: (end - pos) as usize,
            });
            pos = end;
        }
        Ok(out)
    }

    /// True if every chunk the range touches is in the overlay already: a write there goes
    /// straight to the data file (no copy-up, no map update).
    pub fn all_written(&self, offset: u64, len: u64) -> bool {
        len > 0
            && offset.checked_add(len).is_some_and(|e| e <= self.size)
            && (offset / CHUNK..=(offset + len - 1) / CHUNK).all(|c| self.is_set(c))
    }

    /// The overlay's data file.
    pub fn data_source(&self) -> &Arc<Source> {
        &self.data
    }

    /// Reads `buf.len()` bytes at `offset`: each chunk from the overlay if the machine wrote
    /// it, else from the golden image.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        for seg in self.read_segments(offset, buf.len() as u64)? {
            seg.src
                .file()
                .read_exact_at(&mut buf[done..done + seg.len], seg.offset)?;
            done += seg.len;
        }
        Ok(())
    }

    /// Writes `data` at `offset` into the overlay (copying up the rest of partly written
    /// chunks new to it), and marks its chunks written. Both are in the page cache on return.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let len = data.len() as u64;
        check_range(offset, len, self.size)?;
        if len == 0 {
            return Ok(());
        }
        let (first, last) = (offset / CHUNK, (offset + len - 1) / CHUNK);
        if (first..=last).all(|c| self.is_set(c)) {
            return self.data.file().write_all_at(data, offset);
        }
        let _g = self.setting.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = (first * CHUNK, ((last + 1) * CHUNK).min(self.size));
        let (end, head_new, tail_new) = (
            offset + len,
            offset > a && !self.is_set(first),
            offset + len < b && !self.is_set(last),
        );
        if head_new || tail_new {
            // Whole chunks: the head and tail around the data from where they are now.
            let mut buf = vec![0u8; (b - a) as usize];
            let (h, t) = ((offset - a) as usize, (end - a) as usize);
            self.read_at(&mut buf[..h], a)?;
            self.read_at(&mut buf[t..], end)?;
            buf[h..t].copy_from_slice(data);
            self.data.file().write_all_at(&buf, a)?;
        } else {
            self.data.file().write_all_at(data, offset)?;
        }
        for c in first..=last {
            self.bits[(c / 64) as usize].fetch_or(1 << (c % 64), Ordering::Release);
        }
        let (w0, w1) = ((first / 64) as usize, (last / 64) as usize);
        let raw: Vec<u8> = self.bits[w0..=w1]
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        self.map.write_all_at(&raw, HEADER_LEN + w0 as u64 * 8)
    }

    /// Makes every write so far durable: the data, then the map that points at it.
    /// The first time, the files whole (their sizes) and the directory (their names) too.
    pub fn sync(&self) -> io::Result<()> {
        if self.durable.load(Ordering::Acquire) {
            self.data.file().sync_data()?;
            return self.map.sync_data();
        }
        self.data.file().sync_all()?;
        self.map.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        self.durable.store(true, Ordering::Release);
        Ok(())
    }
}

fn check_range(offset: u64, len: u64, size: u64) -> io::Result<()> {
    if offset.checked_add(len).is_none_or(|e| e > size) {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "past the end of the disk",
        ));
    }
    Ok(())
}

fn read_header(map: &File, path: &Path) -> Result<Header, OpenError> {
    let mut raw = vec![0u8; HEADER_LEN as usize];
    map.read_exact_at(&mut raw, 0).map_err(|e| OpenError::Bad {
        path: path.to_path_buf(),
        why: format!("short header: {e}"),
    })?;
    Header::decode(&raw).map_err(|why| OpenError::Bad {
        path: path.to_path_buf(),
        why,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Makes an empty overlay: the sparse data file, then the map written aside and renamed into
/// place (the map's existence is the overlay's). Nothing is synced here: a storm of first
/// logins would queue on a thousand fsyncs, and an overlay nobody flushed promises nothing.
/// The machine's first SYNCHRONIZE CACHE (or FUA write) makes the files and their names
/// durable ([`Overlay::sync`]); a map a power loss left empty or short was never flushed, and
/// is made again at the next login.
fn create(map_path: &Path, data_path: &Path, key: &str, id: Golden) -> Result<(), OpenError> {
    let data = File::create(data_path).map_err(io_err(data_path))?;
    data.set_len(id.size).map_err(io_err(data_path))?;
    let tmp = map_path.with_extension("map.new");
    let map = File::create(&tmp).map_err(io_err(&tmp))?;
    let header = Header {
        golden: id,
        created: now_secs(),
        key: key.to_string(),
    };
    map.write_all_at(&header.encode(), 0)
        .and_then(|()| map.set_len(HEADER_LEN + bitmap_words(id.size) as u64 * 8))
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, map_path).map_err(io_err(map_path))?;
    Ok(())
}

/// True if `map` holds no header at all (shorter than one, or all zeros): what a power loss
/// leaves of an overlay created and never flushed.
fn never_flushed(map: &File) -> bool {
    let mut raw = vec![0u8; HEADER_LEN as usize];
    match map.metadata() {
        Ok(m) if m.len() < HEADER_LEN => true,
        Ok(_) => map.read_exact_at(&mut raw, 0).is_ok() && raw.iter().all(|&b| b == 0),
        Err(_) => false,
    }
}

/// The overlays of one diskless target: its golden image and the overlays open now, shared by
/// the sessions of one machine.
pub struct Overlays {
    dir: PathBuf,
    golden: Arc<Source>,
    id: Golden,
    open: Mutex<HashMap<String, Weak<Overlay>>>,
}

impl Overlays {
    /// Overlays in `dir` of `golden`, of which `size` bytes are served.
    pub fn new(dir: PathBuf, golden: Arc<Source>, size: u64) -> io::Result<Overlays> {
        let id = Golden::of(golden.file(), size)?;
        Ok(Overlays {
            dir,
            golden,
            id,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The overlay directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `key`'s overlay: the one open already, or opened (and created) now.
    pub fn get(&self, key: &str) -> Result<Arc<Overlay>, OpenError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = open.get(key).and_then(Weak::upgrade) {
            return Ok(o);
        }
        open.retain(|_, w| w.strong_count() > 0);
        let o = Arc::new(Overlay::open(&self.dir, key, self.golden.clone(), self.id)?);
        open.insert(key.to_string(), Arc::downgrade(&o));
        Ok(o)
    }
}

/// What `bootstorm overlay list` shows of one overlay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listed {
    pub key: String,
    /// Bytes the machine wrote (chunks in the overlay).
    pub written: u64,
    /// Bytes the data file takes on disk.
    pub allocated: u64,
    /// Seconds since the epoch.
    pub created: u64,
    pub modified: u64,
    /// In use by a running server now.
    pub in_use: bool,
    /// Set when the map cannot be read.
    pub error: Option<String>,
}

/// Every overlay in `dir`.
pub fn list(dir: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "map") {
            continue;
        }
        let data_path = path.with_extension("data");
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut l = Listed {
            key: stem,
            written: 0,
            allocated: 0,
            created: 0,
            modified: 0,
            in_use: false,
            error: None,
        };
        match describe(&path, &data_path, &mut l) {
            Ok(()) => {}
            Err(e) => l.error = Some(e.to_string()),
        }
        out.push(l);
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn describe(map_path: &Path, data_path: &Path, l: &mut Listed) -> Result<(), OpenError> {
    let map = File::open(map_path).map_err(io_err(map_path))?;
    let header = read_header(&map, map_path)?;
    l.key = header.key;
    l.created = header.created;
    let mut raw = vec![0u8; bitmap_words(header.golden.size) * 8];
    map.read_exact_at(&mut raw, HEADER_LEN)
        .map_err(io_err(map_path))?;
    l.written = raw.iter().map(|b| u64::from(b.count_ones())).sum::<u64>() * CHUNK;
    let meta = std::fs::metadata(data_path).map_err(io_err(data_path))?;
    l.allocated = meta.blocks() * 512;
    l.modified = meta.mtime().max(0) as u64;
    l.in_use = match map.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(map_path)(e)),
    };
    Ok(())
}

/// What `reset` and `delete` do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Empty the overlay (the machine sees the golden image again); keep it.
    Reset,
    /// Remove it.
    Delete,
}

/// Resets or deletes `key`'s overlay in `dir`; refused while a session uses it.
pub fn act(dir: &Path, key: &str, action: Action) -> Result<(), OpenError> {
    let (map_path, data_path) = paths(dir, key);
    let map = match OpenOptions::new().read(true).write(true).open(&map_path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(OpenError::Bad {
                path: map_path,
                why: "no such overlay".into(),
            });
        }
        Err(e) => return Err(io_err(&map_path)(e)),
    };
    match map.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Busy { path: map_path }),
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&map_path)(e)),
    }
    let header = read_header(&map, &map_path)?;
    match action {
        Action::Delete => {
            // The map first: without it the data file is no overlay.
            std::fs::remove_file(&map_path).map_err(io_err(&map_path))?;
            match std::fs::remove_file(&data_path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&data_path)(e)),
            }
        }
        Action::Reset => {
            // Bits first (a cleared bit reads the golden image whatever the data file holds),
            // then the data's blocks handed back.
            let len = bitmap_words(header.golden.size) as u64 * 8;
            map.set_len(HEADER_LEN)
                .and_then(|()| map.set_len(HEADER_LEN + len))
                .and_then(|()| map.sync_all())
                .map_err(io_err(&map_path))?;
            let data = OpenOptions::new()
                .write(true)
                .open(&data_path)
                .map_err(io_err(&data_path))?;
            data.set_len(0)
                .and_then(|()| data.set_len(header.golden.size))
                .and_then(|()| data.sync_all())
                .map_err(io_err(&data_path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(dir: &Path, size: usize) -> (Arc<Source>, u64) {
        let p = dir.join("golden.img");
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        (open_golden(dir), size as u64)
    }

    fn open_golden(dir: &Path) -> Arc<Source> {
        Arc::new(Source::buffered(
            File::open(dir.join("golden.img")).unwrap(),
        ))
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bootstorm-ovl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn expect(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn reads_golden_until_written_and_copies_up_partial_chunks() {
        let d = tmpdir("cow");
        let (g, size) = golden(&d, 64 * 1024);
        let ovs = Overlays::new(d.join("ov"), g, size).unwrap();
        let o = ovs.get("iqn.2026-12.test:a").unwrap();
        let mut want = expect(size as usize);
        let mut got = vec![0u8; size as usize];
        o.read_at(&mut got, 0).unwrap();
        assert_eq!(got, want);
        // 512 bytes in the middle of chunk 2, and a run across chunks 5-7 unaligned.
        o.write_at(&[0xaa; 512], 2 * CHUNK + 1024).unwrap();
        want[2 * 4096 + 1024..2 * 4096 + 1536].fill(0xaa);
        o.write_at(&[0xbb; 9000], 5 * CHUNK + 100).unwrap();
        want[5 * 4096 + 100..5 * 4096 + 9100].fill(0xbb);
        o.read_at(&mut got, 0).unwrap();
        assert_eq!(got, want);
        assert_eq!(o.written_chunks(), 1 + 3);
        // Past the end is refused.
        assert!(o.write_at(&[0; 512], size - 256).is_err());
        drop(o);
        // Reopened (a restart): the same bytes.
        let ovs = Overlays::new(d.join("ov"), open_golden(&d), size).unwrap();
        let o = ovs.get("iqn.2026-12.test:a").unwrap();
        o.read_at(&mut got, 0).unwrap();
        assert_eq!(got, want);
        // Another machine sees the golden image.
        let other = ovs.get("52-54-00-00-00-01").unwrap();
        other.read_at(&mut got, 0).unwrap();
        assert_eq!(got, expect(size as usize));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_session_holds_its_overlay_and_reset_and_delete_wait_for_it() {
        let d = tmpdir("lock");
        let (g, size) = golden(&d, 16 * 1024);
        let dir = d.join("ov");
        let ovs = Overlays::new(dir.clone(), g, size).unwrap();
        let o = ovs.get("m1").unwrap();
        o.write_at(&[1; 4096], 0).unwrap();
        // A second session of the same machine shares it.
        assert!(Arc::ptr_eq(&o, &ovs.get("m1").unwrap()));
        assert!(matches!(
            act(&dir, "m1", Action::Reset),
            Err(OpenError::Busy { .. })
        ));
        let l = list(&dir).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].key.as_str(), l[0].written, l[0].in_use),
            ("m1", 4096, true)
        );
        drop(o);
        act(&dir, "m1", Action::Reset).unwrap();
        let l = list(&dir).unwrap();
        assert_eq!((l[0].written, l[0].in_use), (0, false));
        let o = ovs.get("m1").unwrap();
        let mut got = vec![0u8; 4096];
        o.read_at(&mut got, 0).unwrap();
        assert_eq!(got, expect(4096));
        drop(o);
        act(&dir, "m1", Action::Delete).unwrap();
        assert!(list(&dir).unwrap().is_empty());
        assert!(act(&dir, "m1", Action::Delete).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_overlay_of_another_golden_image_is_refused() {
        let d = tmpdir("other");
        let (g, size) = golden(&d, 16 * 1024);
        let dir = d.join("ov");
        drop(
            Overlays::new(dir.clone(), g, size)
                .unwrap()
                .get("m")
                .unwrap(),
        );
        std::fs::write(d.join("golden.img"), vec![7u8; 16 * 1024]).unwrap();
        let err = Overlays::new(dir.clone(), open_golden(&d), size)
            .unwrap()
            .get("m")
            .unwrap_err();
        assert!(matches!(err, OpenError::OtherGolden { .. }), "{err}");
        // A damaged map is refused with its reason.
        let map = dir.join("m.map");
        let mut raw = std::fs::read(&map).unwrap();
        raw[45] ^= 1;
        std::fs::write(&map, raw).unwrap();
        let err = act(&dir, "m", Action::Reset).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any writes, at any offsets and lengths, with reopenings between them, read back as
        /// a plain disk would hold them; the golden image is never touched.
        #[test]
        fn overlay_reads_back_as_a_plain_disk(
            ops in proptest::collection::vec((0u64..40_000, 1usize..12_000, proptest::prelude::any::<u8>(), proptest::prelude::any::<bool>()), 1..24),
        ) {
            let d = tmpdir(&format!("prop{}", ops.len() * 7919 + ops[0].1));
            let size = 38 * 1024 + 512; // not a multiple of the chunk
            let (g, size) = golden(&d, size);
            let mut model = expect(size as usize);
            let mut ovs = Overlays::new(d.join("ov"), g.clone(), size).unwrap();
            let mut o = ovs.get("k").unwrap();
            for (off, len, byte, reopen) in ops {
                let off = off.min(size - 1);
                let len = len.min((size - off) as usize);
                o.write_at(&vec![byte; len], off).unwrap();
                model[off as usize..off as usize + len].fill(byte);
                if reopen {
                    drop(o);
                    ovs = Overlays::new(d.join("ov"), g.clone(), size).unwrap();
                    o = ovs.get("k").unwrap();
                }
            }
            let mut got = vec![0u8; size as usize];
            o.read_at(&mut got, 0).unwrap();
            proptest::prop_assert_eq!(&got, &model);
            // The block I/O engine's view: the runs it reads hold the same bytes.
            let mut runs = Vec::new();
            for seg in o.read_segments(0, size).unwrap() {
                let mut b = vec![0u8; seg.len];
                seg.src.file().read_exact_at(&mut b, seg.offset).unwrap();
                runs.extend_from_slice(&b);
            }
            proptest::prop_assert_eq!(&runs, &model);
            let mut gold = vec![0u8; size as usize];
            g.file().read_exact_at(&mut gold, 0).unwrap();
            proptest::prop_assert_eq!(gold, expect(size as usize));
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    /// A map a power loss left empty (created, never flushed) is made again at the next open;
    /// one with a damaged header is refused.
    #[test]
    fn a_never_flushed_overlay_is_made_again() {
        let d = tmpdir("unflushed");
        let (g, size) = golden(&d, 16 * 1024);
        let dir = d.join("ov");
        let ovs = Overlays::new(dir.clone(), g, size).unwrap();
        drop(ovs.get("m").unwrap());
        std::fs::write(dir.join("m.map"), b"").unwrap();
        let o = ovs.get("m").unwrap();
        assert_eq!(o.written_chunks(), 0);
        o.write_at(&[1; 4096], 0).unwrap();
        o.sync().unwrap();
        o.sync().unwrap();
        drop(o);
        assert_eq!(list(&dir).unwrap()[0].written, 4096);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn keys_become_safe_file_names() {
        assert_eq!(
            file_stem("iqn.2026-12.io.x:node-1"),
            "iqn.2026-12.io.x:node-1"
        );
        assert_eq!(file_stem("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_eq!(mac_key(&[0x52, 0x54, 0, 0xab, 1, 2]), "52-54-00-ab-01-02");
    }
}
