//! Writing DHCP messages: the fixed header of a reply (fields echoed as RFC 2131 table 3 says)
//! or of a request, and the options, within a size limit (option 57), overflowing into `file`
//! and `sname` when allowed (option 52) and splitting long ones (RFC 3396).

use super::*;

/// Writes a reply's fixed header (op = BOOTREPLY, cookie, fields echoed from the request as RFC
/// 2131 table 3 says) into `buf` and returns the view; `buf` must hold at least [`HEADER_LEN`].
pub fn emit_reply_header<'b>(
    buf: &'b mut [u8],
    req: &Repr<'_>,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
) -> Result<Packet<&'b mut [u8]>> {
    if buf.len() < HEADER_LEN {
        return Err(Error::NoSpace);
    }
    buf[..HEADER_LEN].fill(0);
    let mut p = Packet::new_unchecked(buf);
    p.set_op(Op::Reply);
    p.set_htype(req.htype);
    p.set_hlen(req.hlen);
    p.set_hops(0);
    p.set_xid(req.xid);
    p.set_secs(0);
    p.set_flags(req.flags & FLAG_BROADCAST);
    p.set_yiaddr(yiaddr);
    p.set_siaddr(siaddr);
    p.set_giaddr(req.giaddr.unwrap_or(Ipv4Addr::UNSPECIFIED));
    p.set_chaddr(&req.chaddr);
    p.set_magic_cookie();
    Ok(p)
}

/// Writes a client request's fixed header (op = BOOTREQUEST, htype Ethernet, cookie) into `buf`
/// and returns the view, for clients, load generators and tests. `buf` must hold [`HEADER_LEN`].
pub fn emit_request_header<'b>(
    buf: &'b mut [u8],
    xid: u32,
    chaddr: &[u8],
    flags: u16,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
) -> Result<Packet<&'b mut [u8]>> {
    if buf.len() < HEADER_LEN {
        return Err(Error::NoSpace);
    }
    buf[..HEADER_LEN].fill(0);
    let mut p = Packet::new_unchecked(buf);
    p.set_op(Op::Request);
    p.set_htype(1);
    p.set_hlen(chaddr.len().min(16) as u8);
    p.set_xid(xid);
    p.set_flags(flags);
    p.set_ciaddr(ciaddr);
    p.set_giaddr(giaddr);
    p.set_chaddr(chaddr);
    p.set_magic_cookie();
    Ok(p)
}

/// Writes options into a buffer up to a limit, keeping room for the End option.
///
/// Required options are written with [`OptionWriter::push`], which fails when they do not fit;
/// optional ones with [`OptionWriter::push_optional`], which skips what does not fit and counts it.
#[derive(Debug)]
pub struct OptionWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
    limit: usize,
    dropped: u16,
}

impl<'b> OptionWriter<'b> {
    /// A writer over `buf`, allowed to use at most `limit` bytes of it (End included).
    pub fn new(buf: &'b mut [u8], limit: usize) -> OptionWriter<'b> {
        let limit = limit.min(buf.len());
        OptionWriter {
            buf,
            pos: 0,
            limit,
            dropped: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// True if nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// How many optional options did not fit.
    pub fn dropped(&self) -> u16 {
        self.dropped
    }

    /// Bytes an option of `len` data bytes takes, split into 255-byte pieces (RFC 3396).
    pub fn encoded_len(len: usize) -> usize {
        if len == 0 {
            2
        } else {
            len + 2 * len.div_ceil(255)
        }
    }

    /// Writes an option; data over 255 bytes is split into several instances (RFC 3396).
    pub fn push(&mut self, code: u8, data: &[u8]) -> Result<()> {
        let need = Self::encoded_len(data.len());
        // One byte stays free for End.
        if self.pos + need + 1 > self.limit {
            return Err(Error::NoSpace);
        }
        if data.is_empty() {
            self.buf[self.pos] = code;
            self.buf[self.pos + 1] = 0;
            self.pos += 2;
            return Ok(());
        }
        for chunk in data.chunks(255) {
            self.buf[self.pos] = code;
            self.buf[self.pos + 1] = chunk.len() as u8;
            self.buf[self.pos + 2..self.pos + 2 + chunk.len()].copy_from_slice(chunk);
            self.pos += 2 + chunk.len();
        }
        Ok(())
    }

    /// Writes an option if it fits; otherwise counts it as dropped. Returns whether it was written.
    pub fn push_optional(&mut self, code: u8, data: &[u8]) -> bool {
        match self.push(code, data) {
            Ok(()) => true,
            Err(_) => {
                self.dropped += 1;
                false
            }
        }
    }

    /// Allows `n` more bytes than the limit given at creation: for an option that must come last
    /// (82) and whose room was kept back.
    pub fn extend_limit(&mut self, n: usize) {
        self.limit = (self.limit + n).min(self.buf.len());
    }

    /// Writes End and zero padding up to `min_len` bytes; returns the length written.
    pub fn finish(self, min_len: usize) -> usize {
        let mut pos = self.pos;
        if pos < self.buf.len() {
            self.buf[pos] = opt::END;
            pos += 1;
        }
        let end = min_len.min(self.buf.len()).max(pos);
        self.buf[pos..end].fill(0);
        end
    }
}

/// Writes options into the options field and, once that is full, optional ones into `file` and
/// then `sname` with option overload (RFC 2131 4.1, RFC 2132 9.3), so that a client with a small
/// maximum message size still gets them. Only fields the caller says are free are used (never
/// `file` when it carries a boot file name). Required options always go in the options field.
#[derive(Debug)]
pub struct OverloadWriter<'b> {
    main: OptionWriter<'b>,
    file: Option<OptionWriter<'b>>,
    sname: Option<OptionWriter<'b>>,
    used: u8,
    dropped: u16,
}

/// Bytes option 52 takes in the options field.
const OVERLOAD_OPTION_LEN: usize = 3;

impl<'b> OverloadWriter<'b> {
    /// A writer over a whole DHCP message buffer (at least [`HEADER_LEN`] bytes) whose options
    /// field may use `limit` bytes (End included). `file` and `sname` say which fields are free.
    pub fn new(
        message: &'b mut [u8],
        limit: usize,
        file: bool,
        sname: bool,
    ) -> Result<OverloadWriter<'b>> {
        if message.len() < HEADER_LEN {
            return Err(Error::NoSpace);
        }
        let (head, options) = message.split_at_mut(field::OPTIONS);
        let (before_file, rest) = head.split_at_mut(field::FILE.start);
        let file_area = &mut rest[..field::FILE.len()];
        let sname_area = &mut before_file[field::SNAME];
        let overflow = file || sname;
        // Room for option 52 is kept back in the options field while overflow is possible.
        let main_limit = if overflow {
            limit.saturating_sub(OVERLOAD_OPTION_LEN)
        } else {
            limit
        };
        let area = |on: bool, a: &'b mut [u8]| {
            on.then(|| {
                let n = a.len();
                OptionWriter::new(a, n)
            })
        };
        Ok(OverloadWriter {
            main: OptionWriter::new(options, main_limit),
            file: area(file, file_area),
            sname: area(sname, sname_area),
            used: 0,
            dropped: 0,
        })
    }

    /// Writes a required option into the options field.
    pub fn push(&mut self, code: u8, data: &[u8]) -> Result<()> {
        self.main.push(code, data)
    }

    /// Writes an optional option where it fits: options field, then `file`, then `sname`.
    /// Returns whether it was written.
    pub fn push_optional(&mut self, code: u8, data: &[u8]) -> bool {
        if self.main.push(code, data).is_ok() {
            return true;
        }
        for (bit, area) in [(1u8, &mut self.file), (2, &mut self.sname)] {
            if let Some(w) = area
                && w.push(code, data).is_ok()
            {
                self.used |= bit;
                return true;
            }
        }
        self.dropped += 1;
        false
    }

    /// Writes an option into `file` or `sname` (not the options field), where free and where it
    /// fits: for a required option that found no room in the options field. Not counted as
    /// dropped when it fits nowhere; returns whether it was written.
    pub fn push_overflow(&mut self, code: u8, data: &[u8]) -> bool {
        for (bit, area) in [(1u8, &mut self.file), (2, &mut self.sname)] {
            if let Some(w) = area
                && w.push(code, data).is_ok()
            {
                self.used |= bit;
                return true;
            }
        }
        false
    }

    /// How many optional options fit nowhere.
    pub fn dropped(&self) -> u16 {
        self.dropped
    }

    /// Bytes written into the options field so far.
    pub fn len(&self) -> usize {
        self.main.len()
    }

    /// True if nothing was written into the options field yet.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }

    /// Ends overflow: writes option 52 if `file` or `sname` were used, gives its unused room back
    /// to the options field, and ends the used fields with End. Call before an option that must
    /// come last (82) and before [`OverloadWriter::finish`].
    pub fn seal(&mut self) {
        let had_room = self.file.is_some() || self.sname.is_some();
        if self.used & 1 != 0
            && let Some(w) = self.file.take()
        {
            w.finish(field::FILE.len());
        }
        if self.used & 2 != 0
            && let Some(w) = self.sname.take()
        {
            w.finish(field::SNAME.len());
        }
        self.file = None;
        self.sname = None;
        if had_room {
            self.main.extend_limit(OVERLOAD_OPTION_LEN);
            if self.used != 0 {
                // The room was kept back at creation, so this cannot fail.
                let _ = self.main.push(opt::OVERLOAD, &[self.used]);
            }
        }
    }

    /// See [`OptionWriter::extend_limit`].
    pub fn extend_limit(&mut self, n: usize) {
        self.main.extend_limit(n);
    }

    /// Seals, writes End and padding into the options field; returns the options field's length.
    pub fn finish(mut self, min_len: usize) -> usize {
        self.seal();
        self.main.finish(min_len)
    }
}
