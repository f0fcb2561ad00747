//! The boot-file cache: each file is read from disk once and shared by every transfer as an
//! `Arc<[u8]>`; a file that changes on disk (size, mtime or inode) is read again on the next
//! request. Nothing outside the root is ever opened: names come normalised by
//! `bootstorm_tftp::normalize` (no `..`), and the resolved path, symlinks followed, must still be
//! inside the root and be a regular file (no directories, devices or FIFOs).
//!
//! TFTP and HTTP serving one root share one cache (`main` builds it once): a file read for one
//! is there for the other, and there is one copy in memory. Each service keeps its own size
//! limit ([`FileCache::get_within`]).

use bootstorm_tftp::{PathError, normalize, to_netascii};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a file cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// The name was refused before touching the disk.
    BadName(PathError),
    /// The path leaves the root (a symlink pointing out of it).
    OutsideRoot,
    /// Not a regular file.
    NotAFile,
    /// Not there (or not readable).
    NotFound,
    /// Larger than the configured limit.
    TooLarge(u64),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::BadName(e) => write!(f, "{e}"),
            FileError::OutsideRoot => f.write_str("path leaves the root"),
            FileError::NotAFile => f.write_str("not a regular file"),
            FileError::NotFound => f.write_str("file not found"),
            FileError::TooLarge(n) => write!(f, "file of {n} bytes is over the size limit"),
        }
    }
}

#[derive(Clone)]
struct Entry {
    octet: Arc<[u8]>,
    netascii: Option<Arc<[u8]>>,
    stamp: (u64, i64, i64, u64),
}

/// A root directory and the files read from it.
pub struct FileCache {
    root: PathBuf,
    max_size: u64,
    entries: Mutex<HashMap<String, Entry>>,
    /// Files read from disk (a first request or a change), for the counters.
    reads: std::sync::atomic::AtomicU64,
}

impl FileCache {
    /// A cache over `root`, which must exist; files over `max_size` bytes are refused.
    pub fn new(root: &Path, max_size: u64) -> std::io::Result<FileCache> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(FileCache {
            root,
            max_size,
            entries: Mutex::new(HashMap::new()),
            reads: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Files read from disk so far, and files held now.
    pub fn counters(&self) -> (u64, usize) {
        let held = self.entries.lock().map_or(0, |e| e.len());
        (self.reads.load(std::sync::atomic::Ordering::Relaxed), held)
    }

    /// The largest file this cache serves to anyone.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// The root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `rel` (a name made by the server, not a client) is a directory inside the root.
    pub fn has_dir(&self, rel: &str) -> bool {
        self.root
            .join(rel)
            .canonicalize()
            .is_ok_and(|p| p.starts_with(&self.root) && p.is_dir())
    }

    /// The contents of `name` (as a client sent it), in netascii form if asked.
    pub fn get(&self, name: &[u8], netascii: bool) -> Result<Arc<[u8]>, FileError> {
        self.get_within(name, netascii, self.max_size)
    }

    /// [`FileCache::get`] for a service whose own limit is `limit` bytes (at most the cache's).
    pub fn get_within(
        &self,
        name: &[u8],
        netascii: bool,
        limit: u64,
    ) -> Result<Arc<[u8]>, FileError> {
        let rel = normalize(name).map_err(FileError::BadName)?;
        let path = self.root.join(&rel);
        let real = path.canonicalize().map_err(|_| FileError::NotFound)?;
        if !real.starts_with(&self.root) {
            return Err(FileError::OutsideRoot);
        }
        let meta = std::fs::metadata(&real).map_err(|_| FileError::NotFound)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile);
        }
        if meta.len() > self.max_size.min(limit) {
            return Err(FileError::TooLarge(meta.len()));
        }
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match entries.get(&rel) {
            Some(e) if e.stamp == stamp => e.clone(),
            _ => {
                // Read outside no lock would be nicer for huge files; boot files are small and
                // reads are rare (once per change), so the simple way wins here.
                let bytes = std::fs::read(&real).map_err(|_| FileError::NotFound)?;
                self.reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let e = Entry {
                    octet: bytes.into(),
                    netascii: None,
                    stamp,
                };
                entries.insert(rel.clone(), e.clone());
                e
            }
        };
        if !netascii {
            return Ok(entry.octet);
        }
        if let Some(n) = entry.netascii {
            return Ok(n);
        }
        let n: Arc<[u8]> = to_netascii(&entry.octet).into();
        if let Some(e) = entries.get_mut(&rel) {
            e.netascii = Some(n.clone());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "bs-files-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/efi")).unwrap();
        d
    }

    /// One cache shared by TFTP and HTTP: one read from disk for both, each with its own limit.
    #[test]
    fn a_shared_cache_reads_once_and_keeps_each_services_limit() {
        let d = dir();
        std::fs::write(d.join("root/f.bin"), vec![7u8; 2000]).unwrap();
        let c = FileCache::new(&d.join("root"), 4000).unwrap();
        assert_eq!(
            c.get_within(b"f.bin", false, 1000),
            Err(FileError::TooLarge(2000))
        );
        let a = c.get_within(b"f.bin", false, 3000).unwrap();
        let b = c.get_within(b"f.bin", false, 1 << 30).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(c.counters(), (1, 1));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn serves_files_once_and_reloads_changes() {
        let d = dir();
        std::fs::write(d.join("root/efi/ipxe.efi"), b"v1").unwrap();
        let c = FileCache::new(&d.join("root"), 1 << 20).unwrap();
        let a = c.get(b"/efi/ipxe.efi", false).unwrap();
        let b = c.get(b"efi\\ipxe.efi", false).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one copy shared");
        std::fs::write(d.join("root/efi/ipxe.efi"), b"version 2").unwrap();
        assert_eq!(&c.get(b"efi/ipxe.efi", false).unwrap()[..], b"version 2");
        std::fs::write(d.join("root/t.txt"), b"a\nb").unwrap();
        assert_eq!(&c.get(b"t.txt", true).unwrap()[..], b"a\r\nb");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn nothing_outside_the_root() {
        let d = dir();
        std::fs::write(d.join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(d.join("secret"), d.join("root/link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("root/zero")).unwrap();
        let c = FileCache::new(&d.join("root"), 1 << 20).unwrap();
        assert_eq!(
            c.get(b"../secret", false),
            Err(FileError::BadName(PathError::ParentDirectory))
        );
        assert_eq!(c.get(b"link", false), Err(FileError::OutsideRoot));
        assert_eq!(c.get(b"zero", false), Err(FileError::OutsideRoot));
        assert_eq!(c.get(b"efi", false), Err(FileError::NotAFile));
        assert_eq!(c.get(b"/etc/passwd", false), Err(FileError::NotFound));
        std::fs::write(d.join("root/big"), vec![0u8; 2000]).unwrap();
        let small = FileCache::new(&d.join("root"), 1000).unwrap();
        assert_eq!(small.get(b"big", false), Err(FileError::TooLarge(2000)));
        let _ = std::fs::remove_dir_all(&d);
    }
}
