//! TFTP packets (RFC 1350) with option extension (RFC 2347) and the options of RFC 2348
//! (blksize), 2349 (timeout, tsize) and 7440 (windowsize).
//!
//! ```text
//!  RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | opt1 | 0 | value1 | 0 | ... |
//!  DATA     | 03 | block # | data (0..blksize bytes) |
//!  ACK      | 04 | block # |
//!  ERROR    | 05 | error code | message | 0 |
//!  OACK     | 06 | opt1 | 0 | value1 | 0 | ... |
//! ```
//!
//! [`Repr::parse`] validates a datagram once and borrows from it; [`Repr::emit`] writes one into
//! a caller's buffer. Every string must be NUL-terminated inside the datagram; a request without
//! its NULs, with an unknown mode or with a malformed option value is an error value. Unknown
//! option names are skipped (RFC 2347: the server ignores what it does not know).

use crate::{Error, Result, get_u16};

/// Opcodes.
pub mod opcode {
    pub const RRQ: u16 = 1;
    pub const WRQ: u16 = 2;
    pub const DATA: u16 = 3;
    pub const ACK: u16 = 4;
    pub const ERROR: u16 = 5;
    pub const OACK: u16 = 6;
}

/// The smallest and largest block sizes RFC 2348 allows.
pub const BLKSIZE_MIN: u16 = 8;
/// See [`BLKSIZE_MIN`].
pub const BLKSIZE_MAX: u16 = 65464;
/// The block size without the blksize option.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Bytes before the data of a DATA packet.
pub const DATA_HEADER_LEN: usize = 4;
/// The longest file name a request may carry. RFC 1350 sets no limit; 255 bytes is more than any
/// boot loader path, and refusing longer names early bounds the work a hostile request causes.
pub const MAX_FILENAME: usize = 255;

/// Transfer mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bytes as they are.
    Octet,
    /// Text with CR LF line ends (RFC 764 NVT ASCII).
    Netascii,
}

/// Error codes (RFC 1350 and RFC 2347).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: see the message.
    NotDefined,
    /// 1.
    FileNotFound,
    /// 2.
    AccessViolation,
    /// 3.
    DiskFull,
    /// 4.
    IllegalOperation,
    /// 5.
    UnknownTid,
    /// 6.
    FileExists,
    /// 7.
    NoSuchUser,
    /// 8: option negotiation refused (RFC 2347).
    OptionRefused,
    /// Anything else.
    Other(u16),
}

impl From<u16> for ErrorCode {
    fn from(v: u16) -> ErrorCode {
        match v {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            x => ErrorCode::Other(x),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        match c {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTid => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionRefused => 8,
            ErrorCode::Other(x) => x,
        }
    }
}

/// The options a request asked for (or an OACK granted). `None`: not asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// blksize (RFC 2348), 8..=65464.
    pub blksize: Option<u16>,
    /// timeout in seconds (RFC 2349), 1..=255.
    pub timeout: Option<u8>,
    /// tsize (RFC 2349): 0 in a request, the file size in an OACK.
    pub tsize: Option<u64>,
    /// windowsize (RFC 7440), 1..=65535.
    pub windowsize: Option<u16>,
}

impl Options {
    /// True if no option is set.
    pub fn is_empty(&self) -> bool {
        *self == Options::default()
    }
}

/// A TFTP packet, validated, borrowing from its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    /// RRQ (`write` false) or WRQ (`write` true).
    Request {
        /// WRQ if true.
        write: bool,
        /// The file name as sent (not yet checked against any root).
        filename: &'a [u8],
        /// Transfer mode.
        mode: Mode,
        /// Options the client asked for.
        options: Options,
        /// Options left out because their value was invalid (blksize 7, timeout 0, windowsize
        /// 65536, "abc"): RFC 2347 lets the server leave such an option out of its OACK, and
        /// firmware with odd values still boots with the defaults.
        ignored: u8,
    },
    /// DATA.
    Data {
        /// Block number.
        block: u16,
        /// The data.
        data: &'a [u8],
    },
    /// ACK.
    Ack {
        /// Block number.
        block: u16,
    },
    /// ERROR.
    Error {
        /// Error code.
        code: ErrorCode,
        /// Message.
        message: &'a [u8],
    },
    /// OACK.
    OAck {
        /// Options granted.
        options: Options,
    },
}

/// Splits NUL-terminated strings off the front of `b`.
struct Strings<'a> {
    rest: &'a [u8],
}

impl<'a> Strings<'a> {
    fn next_str(&mut self) -> Result<Option<&'a [u8]>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = self
            .rest
            .iter()
            .position(|&c| c == 0)
            .ok_or(Error::Malformed("string without NUL"))?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(Some(s))
    }
}

fn decimal(v: &[u8]) -> Result<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed("option value is not a decimal number"));
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Parses option pairs; unknown names are skipped. A known option with an invalid value (not
/// a number, or out of its RFC's range) is an error when `strict` (an OACK: the server must not
/// grant what cannot be), and otherwise left out and counted (a request: RFC 2347 lets the
/// server omit an option it does not accept). Returns the options and how many were left out.
fn parse_options(s: &mut Strings<'_>, strict: bool) -> Result<(Options, u8)> {
    let mut o = Options::default();
    let mut ignored = 0u8;
    while let Some(name) = s.next_str()? {
        let value = s
            .next_str()?
            .ok_or(Error::Malformed("option without value"))?;
        let in_range = |lo: u64, hi: u64, what: &'static str| -> Result<Option<u64>> {
            match decimal(value) {
                Ok(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
                _ if strict => Err(Error::Malformed(what)),
                _ => Ok(None),
            }
        };
        let known = if name.eq_ignore_ascii_case(b"blksize") {
            let v = in_range(
                u64::from(BLKSIZE_MIN),
                u64::from(BLKSIZE_MAX),
                "blksize out of range 8-65464",
            )?;
            o.blksize = v.map(|v| v as u16);
            Some(v.is_some())
        } else if name.eq_ignore_ascii_case(b"timeout") {
            let v = in_range(1, 255, "timeout out of range 1-255")?;
            o.timeout = v.map(|v| v as u8);
            Some(v.is_some())
        } else if name.eq_ignore_ascii_case(b"tsize") {
            let v = in_range(0, u64::MAX, "tsize is not a decimal number")?;
            o.tsize = v;
            Some(v.is_some())
        } else if name.eq_ignore_ascii_case(b"windowsize") {
            let v = in_range(1, 65535, "windowsize out of range 1-65535")?;
            o.windowsize = v.map(|v| v as u16);
            Some(v.is_some())
        } else {
            None
        };
        if known == Some(false) {
            ignored = ignored.saturating_add(1);
        }
    }
    Ok((o, ignored))
}

impl<'a> Repr<'a> {
    /// Parses one datagram.
    pub fn parse(b: &'a [u8]) -> Result<Repr<'a>> {
        if b.len() < 2 {
            return Err(Error::Truncated);
        }
        let op = get_u16(b, 0);
        let body = &b[2..];
        match op {
            opcode::RRQ | opcode::WRQ => {
                let mut s = Strings { rest: body };
                let filename = s.next_str()?.ok_or(Error::Malformed("no file name"))?;
                if filename.is_empty() {
                    return Err(Error::Malformed("empty file name"));
                }
                if filename.len() > MAX_FILENAME {
                    return Err(Error::Malformed("file name too long"));
                }
                let mode = s.next_str()?.ok_or(Error::Malformed("no mode"))?;
                let mode = if mode.eq_ignore_ascii_case(b"octet") {
                    Mode::Octet
                } else if mode.eq_ignore_ascii_case(b"netascii") {
                    Mode::Netascii
                } else {
                    return Err(Error::Malformed("mode is not octet or netascii"));
                };
                let (options, ignored) = parse_options(&mut s, false)?;
                Ok(Repr::Request {
                    write: op == opcode::WRQ,
                    filename,
                    mode,
                    options,
                    ignored,
                })
            }
            opcode::DATA => {
                if body.len() < 2 {
                    return Err(Error::Truncated);
                }
                Ok(Repr::Data {
                    block: get_u16(body, 0),
                    data: &body[2..],
                })
            }
            opcode::ACK => {
                if body.len() < 2 {
                    return Err(Error::Truncated);
                }
                Ok(Repr::Ack {
                    block: get_u16(body, 0),
                })
            }
            opcode::ERROR => {
                if body.len() < 2 {
                    return Err(Error::Truncated);
                }
                let mut s = Strings { rest: &body[2..] };
                // Some implementations omit the final NUL; accept the message without it.
                let message = match s.next_str() {
                    Ok(m) => m.unwrap_or(&[]),
                    Err(_) => &body[2..],
                };
                Ok(Repr::Error {
                    code: ErrorCode::from(get_u16(body, 0)),
                    message,
                })
            }
            opcode::OACK => {
                let mut s = Strings { rest: body };
                Ok(Repr::OAck {
                    options: parse_options(&mut s, true)?.0,
                })
            }
            _ => Err(Error::Malformed("unknown opcode")),
        }
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Request {
                filename,
                mode,
                options,
                ..
            } => 2 + filename.len() + 1 + mode_str(*mode).len() + 1 + options_len(options),
            Repr::Data { data, .. } => DATA_HEADER_LEN + data.len(),
            Repr::Ack { .. } => 4,
            Repr::Error { message, .. } => 4 + message.len() + 1,
            Repr::OAck { options } => 2 + options_len(options),
        }
    }

    /// Writes the packet at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        if buf.len() < n {
            return Err(Error::NoSpace);
        }
        let mut w = Writer { buf, pos: 0 };
        match self {
            Repr::Request {
                write,
                filename,
                mode,
                options,
                ..
            } => {
                w.u16(if *write { opcode::WRQ } else { opcode::RRQ });
                w.cstr(filename);
                w.cstr(mode_str(*mode));
                w.options(options);
            }
            Repr::Data { block, data } => {
                w.u16(opcode::DATA);
                w.u16(*block);
                w.bytes(data);
            }
            Repr::Ack { block } => {
                w.u16(opcode::ACK);
                w.u16(*block);
            }
            Repr::Error { code, message } => {
                w.u16(opcode::ERROR);
                w.u16((*code).into());
                w.cstr(message);
            }
            Repr::OAck { options } => {
                w.u16(opcode::OACK);
                w.options(options);
            }
        }
        Ok(w.pos)
    }
}

/// Writes a DATA header in front of data already at `buf[DATA_HEADER_LEN..]` (the hot path:
/// file bytes are copied once, straight from the cache into the send buffer).
pub fn emit_data_header(buf: &mut [u8], block: u16) -> Result<()> {
    if buf.len() < DATA_HEADER_LEN {
        return Err(Error::NoSpace);
    }
    buf[..2].copy_from_slice(&opcode::DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
    Ok(())
}

fn mode_str(m: Mode) -> &'static [u8] {
    match m {
        Mode::Octet => b"octet",
        Mode::Netascii => b"netascii",
    }
}

fn digits(mut v: u64, out: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = tmp[n - 1 - i];
    }
    n
}

fn option_list(o: &Options) -> [(&'static [u8], Option<u64>); 4] {
    // Written in a fixed order; RFC 2347 sets none.
    [
        (b"blksize", o.blksize.map(u64::from)),
        (b"timeout", o.timeout.map(u64::from)),
        (b"tsize", o.tsize),
        (b"windowsize", o.windowsize.map(u64::from)),
    ]
}

fn options_len(o: &Options) -> usize {
    let mut d = [0u8; 20];
    option_list(o)
        .iter()
        .filter_map(|(n, v)| v.map(|v| n.len() + 1 + digits(v, &mut d) + 1))
        .sum()
}

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn cstr(&mut self, s: &[u8]) {
        self.bytes(s);
        self.bytes(&[0]);
    }
    fn options(&mut self, o: &Options) {
        let mut d = [0u8; 20];
        for (name, v) in option_list(o) {
            if let Some(v) = v {
                self.cstr(name);
                let n = digits(v, &mut d);
                self.cstr(&d[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
