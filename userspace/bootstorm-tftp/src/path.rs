//! File names as clients send them, mapped into the TFTP root.

use std::fmt;

/// Why a file name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A `..` component: nothing outside the root is ever read.
    ParentDirectory,
    /// A control character (NUL cannot occur: it ends the name on the wire).
    ControlCharacter,
    /// Nothing left after normalising (e.g. "/" or ".").
    Empty,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::ParentDirectory => "'..' is not allowed",
            PathError::ControlCharacter => "control character in file name",
            PathError::Empty => "empty file name",
        })
    }
}

/// Normalises a requested name into a relative path inside the root: backslashes become slashes
/// (Windows boot loaders ask for `boot\x64\wdsmgfw.efi`), a leading slash is dropped (an absolute
/// name is taken relative to the root, as tftpd-hpa's secure mode does), empty and `.` components
/// disappear, and any `..` refuses the request outright rather than being resolved. The result
/// joins components with `/` and never starts with `/`. Symlinks and device files are the file
/// layer's to check, since only it sees the file system.
pub fn normalize(name: &[u8]) -> Result<String, PathError> {
    if name.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlCharacter);
    }
    let text = String::from_utf8_lossy(name);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::ParentDirectory),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

/// Converts bytes to netascii (RFC 764 as RFC 1350 uses it): LF becomes CR LF, a bare CR becomes
/// CR NUL.
pub fn to_netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_into_the_root() {
        assert_eq!(normalize(b"ipxe.efi").unwrap(), "ipxe.efi");
        assert_eq!(normalize(b"/ipxe.efi").unwrap(), "ipxe.efi");
        assert_eq!(
            normalize(b"//efi/./x64//ipxe.efi").unwrap(),
            "efi/x64/ipxe.efi"
        );
        assert_eq!(
            normalize(b"boot\\x64\\wdsmgfw.efi").unwrap(),
            "boot/x64/wdsmgfw.efi"
        );
        assert_eq!(normalize(b"/etc/passwd").unwrap(), "etc/passwd");
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            &b"../etc/passwd"[..],
            b"a/../../b",
            b"..",
            b"a/..",
            b"..\\windows",
            b"efi/x64/..\\..\\x",
        ] {
            assert_eq!(
                normalize(bad),
                Err(PathError::ParentDirectory),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(normalize(b"/"), Err(PathError::Empty));
        assert_eq!(normalize(b"./."), Err(PathError::Empty));
        assert_eq!(normalize(b"a\nb"), Err(PathError::ControlCharacter));
        // A name merely containing dots is fine.
        assert_eq!(normalize(b"a..b/..c").unwrap(), "a..b/..c");
    }

    #[test]
    fn netascii_conversion() {
        assert_eq!(to_netascii(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n");
    }
}
