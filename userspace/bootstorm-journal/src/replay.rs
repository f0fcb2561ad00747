//! Start-up: the newest complete snapshot, then every journal segment after it, folded into the
//! latest record per client.

use crate::record::{Entry, Record, Tail, frames};
use bootstorm_lease::LeaseState;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Magic at the start of a journal segment, then its number (u64 LE).
pub const SEGMENT_MAGIC: &[u8; 8] = b"BSJRNL01";
/// Magic at the start of a snapshot, then the number of the first segment after it.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"BSSNAP01";
/// Bytes of a file header.
pub const FILE_HEADER_LEN: usize = 16;

/// The name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("journal-{n:08}.log")
}

/// The name of the snapshot taken before segment `n`.
pub fn snapshot_name(n: u64) -> String {
    format!("snapshot-{n:08}.snap")
}

fn number_of(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// Numbered files of one kind, ascending.
pub type Numbered = Vec<(u64, PathBuf)>;

/// The journal files in `dir`: segments and snapshots by number, ascending.
pub fn list(dir: &Path) -> std::io::Result<(Numbered, Numbered)> {
    let (mut segs, mut snaps) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = number_of(&name, "journal-", ".log") {
            segs.push((n, e.path()));
        } else if let Some(n) = number_of(&name, "snapshot-", ".snap") {
            snaps.push((n, e.path()));
        }
    }
    segs.sort();
    snaps.sort();
    Ok((segs, snaps))
}

/// Why start-up cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the directory or a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Damage that is not a torn last write.
    #[error(
        "{path}: damaged at byte offset {offset}: {reason} (start with --repair-journal to keep \
         everything before the damage and set the rest aside)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
}

/// What repair set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The damaged file.
    pub path: PathBuf,
    /// Where the damage starts (the file now ends there).
    pub offset: u64,
    /// Bytes cut from that file (kept next to it as `<name>.damaged`).
    pub bytes_cut: u64,
    /// Later segments set aside (renamed to `<name>.damaged`).
    pub segments_set_aside: Vec<PathBuf>,
    /// Records in the set-aside parts that were still readable (lost to this start).
    pub records_lost: usize,
}

/// The outcome of a replay.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The latest record of every client, in no particular order.
    pub records: Vec<Record>,
    /// The number the next segment gets.
    pub next_segment: u64,
    /// Records read (snapshot and segments).
    pub read: usize,
    /// A torn last record that was dropped: file and offset.
    pub torn: Option<(PathBuf, u64)>,
    /// What repair did, if it had to.
    pub repaired: Option<Repaired>,
}

/// The latest state per client, and who holds each address, built record by record.
#[derive(Default)]
struct Fold {
    clients: HashMap<Box<[u8]>, Record>,
    owner: HashMap<Ipv4Addr, Box<[u8]>>,
}

impl Fold {
    /// Applies a record. Records are whole states, so applying them in journal order gives the
    /// final state: a bind (or a bound snapshot record) takes the address from whoever had it
    /// (their record is then only a memory, for sticky re-offers); any other record changes only
    /// its own client. Journal order between two clients of one address can differ from the
    /// order of the changes by a release racing the next bind; this rule makes that harmless.
    fn apply(&mut self, r: Record) {
        if let Some(old) = self.clients.get(&r.key)
            && old.addr != r.addr
            && self.owner.get(&old.addr) == Some(&r.key)
        {
            self.owner.remove(&old.addr);
        }
        let holds = r.state == LeaseState::Bound && !r.reserved;
        if holds {
            if let Some(prev) = self.owner.insert(r.addr, r.key.clone())
                && prev != r.key
                && let Some(p) = self.clients.get_mut(&prev)
                && p.addr == r.addr
                && p.state == LeaseState::Bound
            {
                p.state = LeaseState::Expired;
            }
        } else if self.owner.get(&r.addr) == Some(&r.key) {
            self.owner.remove(&r.addr);
        }
        self.clients.insert(r.key.clone(), r);
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ReplayError> {
    std::fs::read(path).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a snapshot; `None` if it is incomplete (no end marker: a crash while writing it, before
/// the rename that publishes it, cannot produce that, but a copied or truncated file can).
fn read_snapshot(path: &Path) -> Result<Option<Vec<Record>>, ReplayError> {
    let bytes = read(path)?;
    if bytes.len() < FILE_HEADER_LEN || &bytes[..8] != SNAPSHOT_MAGIC {
        return Ok(None);
    }
    let (entries, tail) = frames(&bytes[FILE_HEADER_LEN..]);
    if let Tail::Corrupt { offset, reason } = tail {
        return Err(ReplayError::Corrupt {
            path: path.to_path_buf(),
            offset: (offset + FILE_HEADER_LEN) as u64,
            reason: reason.into(),
        });
    }
    let mut out = Vec::new();
    for (_, e) in entries {
        match e {
            Entry::Lease(r) => out.push(r),
            Entry::SnapshotEnd { count } => {
                return Ok((count == out.len() as u64).then_some(out));
            }
        }
    }
    Ok(None)
}

/// Replays `dir`. With `repair`, damage does not stop start-up: the damaged file is cut at the
/// damage (the rest kept beside it as `.damaged`), later segments are set aside the same way,
/// and [`Replayed::repaired`] says what was lost. A torn last record of the last segment is cut
/// off in every case (it was never acknowledged: its sync never finished).
pub fn replay(dir: &Path, repair: bool) -> Result<Replayed, ReplayError> {
    replay_with(dir, repair, true)
}

/// Reads `dir` as [`replay`] does, changing nothing: a torn last record is dropped from the
/// result but left in the file, and damage is an error (for exports of a stopped server's
/// leases). Hold the directory's [`DirLock`] while calling it, or a running server may be
/// writing.
pub fn read_only(dir: &Path) -> Result<Replayed, ReplayError> {
    replay_with(dir, false, false)
}

fn replay_with(dir: &Path, repair: bool, write: bool) -> Result<Replayed, ReplayError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReplayError::Io { path, source }
    };
    let (segs, snaps) = list(dir).map_err(io(dir))?;
    let mut out = Replayed::default();
    let mut fold = Fold::default();
    // The newest complete snapshot.
    let mut from = 0;
    for (n, path) in snaps.iter().rev() {
        if let Some(records) = read_snapshot(path)? {
            out.read += records.len();
            for r in records {
                fold.apply(r);
            }
            from = *n;
            break;
        }
        tracing::warn!(file = %path.display(), "incomplete snapshot ignored");
    }
    let segs: Vec<&(u64, PathBuf)> = segs.iter().filter(|(n, _)| *n >= from).collect();
    out.next_segment = segs
        .last()
        .map(|(n, _)| n + 1)
        .unwrap_or(from.max(1))
        .max(snaps.last().map_or(1, |s| s.0));
    for (k, (_, path)) in segs.iter().enumerate() {
        let is_last = k + 1 == segs.len();
        let bytes = read(path)?;
        // Where this segment is damaged, if it is: offset in the file and what is wrong.
        let damage = if bytes.len() < FILE_HEADER_LEN {
            // Created but its header never reached the disk: an empty segment if it is the last.
            (!is_last).then_some((0, "file shorter than its header"))
        } else if &bytes[..8] != SEGMENT_MAGIC {
            Some((0, "not a journal segment"))
        } else {
            let (entries, tail) = frames(&bytes[FILE_HEADER_LEN..]);
            for (_, e) in entries {
                if let Entry::Lease(r) = e {
                    out.read += 1;
                    fold.apply(r);
                }
            }
            match tail {
                Tail::Clean => None,
                Tail::Torn { offset } if is_last => {
                    let at = (offset + FILE_HEADER_LEN) as u64;
                    tracing::warn!(file = %path.display(), offset = at, bytes = bytes.len() as u64 - at,
                        "torn last record dropped (a write cut short; it was never acknowledged)");
                    if write {
                        truncate(path, at)?;
                    }
                    out.torn = Some((path.to_path_buf(), at));
                    None
                }
                Tail::Torn { offset } => Some((
                    offset + FILE_HEADER_LEN,
                    "record cut short in a segment that is not the last",
                )),
                Tail::Corrupt { offset, reason } => Some((offset + FILE_HEADER_LEN, reason)),
            }
        };
        if let Some((offset, reason)) = damage {
            corrupt_or_repair(
                path,
                offset as u64,
                reason,
                &segs[k + 1..],
                repair,
                &mut out,
            )?;
            break;
        }
    }
    Ok(finish(fold, out))
}

fn finish(fold: Fold, mut out: Replayed) -> Replayed {
    out.records = fold.clients.into_values().collect();
    out
}

fn truncate(path: &Path, len: u64) -> Result<(), ReplayError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_len(len)?;
            f.sync_all()?;
            Ok(f)
        });
    f.map(drop).map_err(|source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn damaged_name(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".damaged");
    PathBuf::from(p)
}

fn corrupt_or_repair(
    path: &Path,
    offset: u64,
    reason: &str,
    later: &[&(u64, PathBuf)],
    repair: bool,
    out: &mut Replayed,
) -> Result<(), ReplayError> {
    if !repair {
        return Err(ReplayError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        });
    }
    let io = |source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let cut = &bytes[(offset as usize).min(bytes.len())..];
    let count = |b: &[u8]| {
        // Readable records in what is set aside: look for frames at every offset is too
        // generous; count those that follow one another from the first good one after the damage.
        (1..b.len())
            .find_map(|s| {
                let (f, _) = frames(&b[s..]);
                (!f.is_empty()).then_some(f.len())
            })
            .unwrap_or(0)
    };
    let mut lost = count(cut);
    std::fs::write(damaged_name(path), cut).map_err(io)?;
    truncate(path, offset)?;
    let mut set_aside = Vec::new();
    for (_, p) in later {
        if let Ok(b) = std::fs::read(p)
            && b.len() > FILE_HEADER_LEN
        {
            lost += frames(&b[FILE_HEADER_LEN..]).0.len();
        }
        std::fs::rename(p, damaged_name(p)).map_err(|source| ReplayError::Io {
            path: p.clone(),
            source,
        })?;
        set_aside.push(p.clone());
    }
    tracing::error!(file = %path.display(), offset, reason, bytes_cut = cut.len(), records_lost = lost,
        segments_set_aside = set_aside.len(), "journal repaired: kept everything before the damage");
    out.repaired = Some(Repaired {
        path: path.to_path_buf(),
        offset,
        bytes_cut: cut.len() as u64,
        segments_set_aside: set_aside,
        records_lost: lost,
    });
    Ok(())
}

/// The name of the lock file in a lease directory.
pub const LOCK_NAME: &str = "lock";

/// An exclusive lock on a lease directory, held while one process owns its journal (a running
/// server, an import): two writers would interleave segments and delete each other's files.
/// Released when dropped (or when the process dies: it is a `flock`).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Why a lease directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{0}: the lease directory is in use by another bootstorm process (a running server?); stop it first"
    )]
    Busy(PathBuf),
    /// Opening the lock file failed.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Takes the lock of `dir` without waiting.
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Busy(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests;
