//! The TFTP runtime's file source and upload storage: what the TFTP core's `Host` asks for.
//! Reads come from the shared file cache, from the client's own subdirectory first when
//! per-client roots are on (its IP, or the MAC its DHCP lease names, else the kernel's
//! neighbour table); uploads go to a temporary file next to their destination, linked (or,
//! with overwrite, renamed) into place when whole.

use super::{UniqueRoot, UploadSettings};
use crate::boots::Step;
use crate::files::{FileCache, FileError};
use bootstorm_tftp::server::{Host, Refusal, UploadSink};
use bootstorm_wire::tftp::{ErrorCode, Mode};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Finds the hardware address the DHCP server leased `addr` to.
pub type MacLookup = Arc<dyn Fn(Ipv4Addr) -> Option<Vec<u8>> + Send + Sync>;

/// Tells the boot-session registry a step of the machine at an address.
pub type BootNote = Arc<dyn Fn(Ipv4Addr, Step) + Send + Sync>;

/// The hardware address of `addr` from the kernel's neighbour table (`/proc/net/arp`): a client
/// on the local link that just sent us a request has asked for our address, which left an entry.
pub fn neighbour_mac(addr: Ipv4Addr) -> Option<Vec<u8>> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    parse_arp_table(&table, addr)
}

pub(super) fn parse_arp_table(table: &str, addr: Ipv4Addr) -> Option<Vec<u8>> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device; flags 0x0 is an incomplete entry.
        if f.len() < 4 || f[0].parse::<Ipv4Addr>().ok()? != addr || f[2] == "0x0" {
            return None;
        }
        let mac: Option<Vec<u8>> = f[3]
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        mac.filter(|m| m.len() == 6 && m.iter().any(|&b| b != 0))
    })
}

/// The subdirectory name for a client, dnsmasq style.
pub(super) fn client_dir(
    kind: UniqueRoot,
    ip: Ipv4Addr,
    mac_of: Option<&MacLookup>,
) -> Option<String> {
    match kind {
        UniqueRoot::Ip => Some(ip.to_string()),
        UniqueRoot::Mac => {
            let mac = mac_of.and_then(|f| f(ip)).or_else(|| neighbour_mac(ip))?;
            Some(
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join("-"),
            )
        }
    }
}

/// The file source and upload storage the TFTP core asks for.
pub(super) struct FileHost {
    pub(super) cache: Arc<FileCache>,
    pub(super) max_file_size: u64,
    pub(super) unique_root: Option<UniqueRoot>,
    pub(super) mac_of: Option<MacLookup>,
    /// Tells the boot-session registry what each client asked for.
    pub(super) note: Option<BootNote>,
    pub(super) upload: Option<UploadSettings>,
    /// Makes temporary upload names unique across workers.
    pub(super) upload_seq: Arc<AtomicU64>,
}

impl FileHost {
    /// The source `[tftp]` settings `s` describe, over `cache`.
    pub(super) fn new(
        s: &super::TftpSettings,
        cache: Arc<FileCache>,
        mac_of: Option<MacLookup>,
        note: Option<BootNote>,
        upload_seq: Arc<AtomicU64>,
    ) -> FileHost {
        FileHost {
            cache,
            max_file_size: s.max_file_size,
            unique_root: s.unique_root,
            mac_of,
            note,
            upload: s.upload.clone(),
            upload_seq,
        }
    }
}

impl Host for FileHost {
    fn read_file(
        &mut self,
        client: SocketAddrV4,
        name: &[u8],
        netascii: bool,
    ) -> Result<Arc<[u8]>, Refusal> {
        let mode = if netascii {
            Mode::Netascii
        } else {
            Mode::Octet
        };
        let found = lookup(
            &self.cache,
            self.max_file_size,
            self.unique_root,
            SocketAddr::V4(client),
            self.mac_of.as_ref(),
            name,
            mode,
        )
        .map_err(|e| {
            let code = match e {
                FileError::NotFound | FileError::NotAFile => ErrorCode::FileNotFound,
                FileError::TooLarge(_) => ErrorCode::NotDefined,
                FileError::BadName(_) | FileError::OutsideRoot => ErrorCode::AccessViolation,
            };
            Refusal::new(code, format!("{}: {e}", String::from_utf8_lossy(name)))
        });
        if let Some(note) = &self.note {
            let name: Box<str> = String::from_utf8_lossy(name).into();
            note(
                *client.ip(),
                match &found {
                    Ok(_) => Step::File {
                        proto: "tftp",
                        name,
                    },
                    Err(r) => Step::FileFailed {
                        proto: "tftp",
                        name,
                        reason: r.message.as_str().into(),
                    },
                },
            );
        }
        found
    }

    fn open_upload(
        &mut self,
        _client: SocketAddrV4,
        name: &[u8],
        size: Option<u64>,
    ) -> Result<(Box<dyn UploadSink>, u64), Refusal> {
        let Some(up) = &self.upload else {
            return Err(Refusal::new(
                ErrorCode::AccessViolation,
                "uploads are not enabled",
            ));
        };
        let shown = String::from_utf8_lossy(name);
        // RFC 2349: a WRQ's tsize states the size; refuse what will not fit before any data.
        if size.is_some_and(|n| n > up.max_size) {
            return Err(Refusal::new(
                ErrorCode::DiskFull,
                format!("{shown}: over the upload size limit"),
            ));
        }
        let seq = self.upload_seq.fetch_add(1, Ordering::Relaxed);
        let (file, tmp, dest) =
            open_upload(up, name, seq).map_err(|(code, msg)| Refusal::new(code, msg))?;
        let sink = FileSink {
            file: Some(file),
            tmp,
            dest,
            overwrite: up.overwrite,
            committed: false,
        };
        Ok((Box::new(sink), up.max_size))
    }
}

/// An upload's temporary file and where it goes once whole.
struct FileSink {
    file: Option<std::fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl UploadSink for FileSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        let ok = self
            .file
            .as_mut()
            .is_some_and(|f| f.write_all(bytes).is_ok());
        if !ok {
            tracing::warn!(file = %self.tmp.display(), "cannot write an upload");
            return Err(Refusal::new(ErrorCode::DiskFull, "cannot write the file"));
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Refusal> {
        self.file = None; // closed
        let placed = if self.overwrite {
            std::fs::rename(&self.tmp, &self.dest)
        } else {
            // link() never replaces: a file created meanwhile is not overwritten.
            std::fs::hard_link(&self.tmp, &self.dest).and_then(|()| std::fs::remove_file(&self.tmp))
        };
        match placed {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Refusal::new(ErrorCode::FileExists, "file already exists"))
            }
            Err(e) => {
                tracing::warn!(file = %self.dest.display(), error = %e, "cannot store an upload");
                Err(Refusal::new(
                    ErrorCode::AccessViolation,
                    "cannot store the file",
                ))
            }
        }
    }

    fn discard(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Opens the temporary file for an upload of `name` into `up.dir`; the ERROR to send if not.
pub(super) fn open_upload(
    up: &UploadSettings,
    name: &[u8],
    seq: u64,
) -> Result<(std::fs::File, PathBuf, PathBuf), (ErrorCode, String)> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let rel = bootstorm_tftp::normalize(name)
        .map_err(|e| (ErrorCode::AccessViolation, format!("{shown}: {e}")))?;
    let dir = up.dir.canonicalize().map_err(|_| {
        (
            ErrorCode::AccessViolation,
            "upload directory missing".into(),
        )
    })?;
    let dest = dir.join(&rel);
    let parent = dest.parent().unwrap_or(&dir);
    // The parent, symlinks resolved, must be inside the upload directory (no escape through a
    // linked subdirectory); the name itself must not be a symlink or anything but a file.
    let real_parent = parent.canonicalize().map_err(|_| {
        (
            ErrorCode::FileNotFound,
            format!("{shown}: no such directory"),
        )
    })?;
    if !real_parent.starts_with(&dir) || !real_parent.is_dir() {
        return Err((
            ErrorCode::AccessViolation,
            format!("{shown}: path leaves the upload directory"),
        ));
    }
    let file_name = dest.file_name().unwrap_or_default().to_owned();
    let dest = real_parent.join(&file_name);
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if !m.file_type().is_file() => {
            return Err((
                ErrorCode::AccessViolation,
                format!("{shown}: not a regular file"),
            ));
        }
        Ok(_) if !up.overwrite => {
            return Err((
                ErrorCode::FileExists,
                format!("{shown}: file already exists"),
            ));
        }
        _ => {}
    }
    let tmp = real_parent.join(format!(
        ".{}.{}-{seq}.upload",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| {
            (
                ErrorCode::AccessViolation,
                format!("{shown}: cannot create: {e}"),
            )
        })?;
    Ok((file, tmp, dest))
}

/// A file for a read request: from the client's own subdirectory if there is one and it holds
/// the file, else from the root.
pub(super) fn lookup(
    cache: &FileCache,
    limit: u64,
    unique: Option<UniqueRoot>,
    peer: SocketAddr,
    mac_of: Option<&MacLookup>,
    filename: &[u8],
    mode: Mode,
) -> Result<Arc<[u8]>, FileError> {
    let netascii = mode == Mode::Netascii;
    if let (Some(kind), SocketAddr::V4(p)) = (unique, peer)
        && let Some(dir) = client_dir(kind, *p.ip(), mac_of)
        && cache.has_dir(&dir)
    {
        // Check the name first, so a refused name is refused as such.
        bootstorm_tftp::normalize(filename).map_err(FileError::BadName)?;
        let mut own = dir.into_bytes();
        own.push(b'/');
        own.extend_from_slice(filename);
        match cache.get_within(&own, netascii, limit) {
            Err(FileError::NotFound) => {}
            other => return other,
        }
    }
    cache.get_within(filename, netascii, limit)
}
