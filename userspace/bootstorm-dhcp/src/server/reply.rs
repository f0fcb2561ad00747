//! Building replies: where one goes (RFC 2131 4.1), NAKs, and the OFFER, ACK or NAK itself,
//! its options in the client's order and within the size it allows (RFC 3396 overflow into
//! file and sname, optional options dropped last).

use super::*;

impl Server {
    /// RFC 2131 4.1: relays get the reply at giaddr:67; with giaddr zero a NAK is broadcast "in
    /// all cases"; a client with an address at ciaddr:68; otherwise the broadcast bit decides
    /// between broadcast and link unicast. A request from loopback with giaddr and ciaddr zero
    /// (a test client or tool on this host: nothing else can send from 127/8) is answered at its
    /// source; on a real interface the source address of such a request is never used.
    pub(super) fn destination(
        req: &Repr<'_>,
        meta: &RxMeta,
        mt: MessageType,
        yiaddr: Ipv4Addr,
        mac: [u8; 6],
    ) -> Destination {
        if let Some(g) = req.giaddr {
            return Destination::Unicast(SocketAddrV4::new(g, dhcp::SERVER_PORT));
        }
        if req.ciaddr.is_none() && meta.src.ip().is_loopback() {
            return Destination::Unicast(meta.src);
        }
        if mt == MessageType::Nak {
            return Destination::Broadcast;
        }
        if let Some(c) = req.ciaddr {
            return Destination::Unicast(SocketAddrV4::new(c, dhcp::CLIENT_PORT));
        }
        if req.broadcast() || yiaddr.is_unspecified() || req.hlen != 6 {
            return Destination::Broadcast;
        }
        Destination::Link {
            addr: yiaddr,
            hwaddr: mac,
        }
    }

    /// A NAK saying why.
    pub(super) fn nak(
        &self,
        meta: &RxMeta,
        ctx: &Ctx<'_, '_, '_>,
        why: NakReason,
        addr: Ipv4Addr,
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        let mut o = self.reply(
            meta,
            ctx,
            MessageType::Nak,
            Ipv4Addr::UNSPECIFIED,
            None,
            Some(why),
            out,
            stats,
        );
        if o.reply.is_some() {
            stats.naks[why.index()] += 1;
        }
        let mut ev = self.event(ctx, EventKind::Nak, None, addr);
        ev.nak = Some(why);
        o.event = Some(ev);
        o
    }

    /// Builds an OFFER, ACK or NAK (saying `why`) into `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
        &self,
        meta: &RxMeta,
        ctx: &Ctx<'_, '_, '_>,
        mt: MessageType,
        yiaddr: Ipv4Addr,
        lease: Option<Duration>,
        why: Option<NakReason>,
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        match self.build(ctx, mt, yiaddr, lease, why, out, stats) {
            Some(len) => Outcome {
                reply: Some(Reply {
                    len,
                    dest: Self::destination(ctx.req, meta, mt, yiaddr, ctx.mac),
                    message_type: mt,
                    server_id: ctx.subnet.server_id,
                }),
                ..Outcome::default()
            },
            None => Outcome::drop(DropReason::NoSpace),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        ctx: &Ctx<'_, '_, '_>,
        mt: MessageType,
        yiaddr: Ipv4Addr,
        lease: Option<Duration>,
        why: Option<NakReason>,
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Option<usize> {
        let req = ctx.req;
        let subnet = ctx.subnet;
        let nak = mt == MessageType::Nak;
        let boot = if nak { None } else { ctx.boot };
        let siaddr = match boot {
            Some(b) => b
                .next_server
                .or(subnet.next_server)
                .unwrap_or(subnet.server_id),
            None if nak => Ipv4Addr::UNSPECIFIED,
            None => subnet.next_server.unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        // RFC 2131 4.1: the maximum message size counts the IP and UDP headers; 576 is the least
        // any client may announce.
        let max = ctx
            .req
            .max_message_size
            .map_or(dhcp::DEFAULT_MAX_MESSAGE, |m| usize::from(m.max(576)) - 28);
        let max = max.min(out.len());
        if max < HEADER_LEN + 16 {
            return None;
        }
        let mut p = emit_reply_header(out, req, yiaddr, siaddr).ok()?;
        if mt == MessageType::Ack && !nak {
            p.set_ciaddr(req.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED));
        }
        if nak && req.giaddr.is_some() {
            // RFC 2131 4.3.2: a NAK through a relay asks it to broadcast.
            p.set_flags(dhcp::FLAG_BROADCAST);
        }
        if let Some(b) = boot {
            if b.file.len() < 128 {
                p.set_file(b.file.as_bytes());
            }
            if let Some(n) = &b.server_name {
                p.set_sname(n.as_bytes());
            }
        }
        // RFC 3046 2.2: option 82 is echoed, and last.
        let relay_info = req.relay_agent_info.filter(|_| req.giaddr.is_some());
        let reserve = relay_info.map_or(0, |r| OptionWriter::encoded_len(r.len()));
        // Optional options that do not fit spill into `file` and `sname` where those are free
        // (option overload, RFC 2131 4.1). Never for PXE or HTTP boot firmware: some ROMs read
        // those fields literally and do not know option 52.
        let file_free = !ctx.firmware && boot.is_none_or(|b| b.file.len() >= 128);
        let sname_free = !ctx.firmware && boot.is_none_or(|b| b.server_name.is_none());
        let mut w = OverloadWriter::new(
            p.into_inner(),
            max - HEADER_LEN - reserve,
            file_free,
            sname_free,
        )
        .ok()?;
        let mut written = CodeSet::default();
        let mut pending_times = None;
        w.push(opt::MESSAGE_TYPE, &[mt.into()]).ok()?;
        written.insert(opt::MESSAGE_TYPE);
        w.push(opt::SERVER_ID, &subnet.server_id.octets()).ok()?;
        written.insert(opt::SERVER_ID);
        if let Some(l) = lease {
            let secs = u32::try_from(l.as_secs()).unwrap_or(u32::MAX);
            let t1 = subnet.renewal_time.map_or(secs / 2, |d| {
                u32::try_from(d.as_secs()).unwrap_or(u32::MAX).min(secs)
            });
            let t2 = subnet.rebinding_time.map_or(secs / 8 * 7, |d| {
                u32::try_from(d.as_secs()).unwrap_or(u32::MAX).min(secs)
            });
            w.push(opt::LEASE_TIME, &secs.to_be_bytes()).ok()?;
            written.insert(opt::LEASE_TIME);
            // RFC 2131 table 3: T1 and T2 are "MAY": without them a client takes 1/2 and 7/8
            // of the lease (RFC 2131 4.4.5). They give way when room is short.
            pending_times = Some((t1, t2));
        }
        // RFC 6842: the client identifier is echoed in every reply. It may travel in `file` or
        // `sname` (option overload) when the options field is short; nowhere at all is a reply
        // that cannot be sent.
        if let Some(id) = req.client_id {
            if w.push(opt::CLIENT_ID, id).is_err() && !w.push_overflow(opt::CLIENT_ID, id) {
                return None;
            }
            written.insert(opt::CLIENT_ID);
        }
        if let Some((t1, t2)) = pending_times {
            w.push_optional(opt::RENEWAL_TIME, &t1.to_be_bytes());
            w.push_optional(opt::REBINDING_TIME, &t2.to_be_bytes());
            written.insert(opt::RENEWAL_TIME);
            written.insert(opt::REBINDING_TIME);
        }
        if nak {
            let text = why.unwrap_or(NakReason::Taken).text();
            w.push_optional(opt::MESSAGE, text.as_bytes());
        } else {
            let vendor = req.vendor_class.unwrap_or(&[]);
            let http = vendor.starts_with(HTTP_CLIENT) || req.client_arches().any(arch::is_http);
            if boot.is_some() && http {
                // UEFI HTTP boot only accepts an offer that says HTTPClient (UEFI spec 24.7.2).
                w.push(opt::VENDOR_CLASS_ID, HTTP_CLIENT).ok()?;
                written.insert(opt::VENDOR_CLASS_ID);
            } else if vendor.starts_with(PXE_CLIENT) {
                // PXE 2.1: a ROM ignores offers without "PXEClient" in option 60.
                w.push(opt::VENDOR_CLASS_ID, PXE_CLIENT).ok()?;
                written.insert(opt::VENDOR_CLASS_ID);
                if boot.is_some() && self.lookup(ctx, opt::VENDOR_SPECIFIC).is_none() {
                    w.push(opt::VENDOR_SPECIFIC, &PXE_VENDOR_OPTIONS).ok()?;
                    written.insert(opt::VENDOR_SPECIFIC);
                }
            }
            if let Some(uuid) = req
                .client_uuid
                .filter(|_| boot.is_some() || vendor.starts_with(PXE_CLIENT))
            {
                w.push_optional(opt::CLIENT_UUID, uuid);
                written.insert(opt::CLIENT_UUID);
            }
            if let Some(b) = boot {
                // A file name that does not fit the `file` field only travels in option 67.
                if b.file.len() >= 128 {
                    w.push(opt::BOOTFILE_NAME, b.file.as_bytes()).ok()?;
                    written.insert(opt::BOOTFILE_NAME);
                }
            }
            let mut tmp = [0u8; SCRATCH];
            // RFC 2131 4.3.1: requested options in the order the client listed them.
            for &code in req.parameter_request_list.unwrap_or(&[]) {
                if written.contains(code) || code == opt::PAD || code == opt::END {
                    continue;
                }
                if let Some(data) = self.value(ctx, boot, code, &mut tmp) {
                    w.push_optional(code, data);
                }
                written.insert(code);
            }
            // Then what is sent unasked: the essentials, boot options for boot clients, and any
            // option configured with `always`.
            let pxe_or_http = http || vendor.starts_with(PXE_CLIENT);
            let mut unasked = |code: u8, w: &mut OverloadWriter<'_>, tmp: &mut [u8; SCRATCH]| {
                if !written.contains(code) {
                    if let Some(data) = self.value(ctx, boot, code, tmp) {
                        w.push_optional(code, data);
                    }
                    written.insert(code);
                }
            };
            for code in [
                opt::SUBNET_MASK,
                opt::ROUTER,
                opt::DNS_SERVERS,
                opt::DOMAIN_NAME,
            ] {
                unasked(code, &mut w, &mut tmp);
            }
            if pxe_or_http {
                for code in [
                    opt::TFTP_SERVER_NAME,
                    opt::BOOTFILE_NAME,
                    opt::ROOT_PATH,
                    opt::ISCSI_PRIMARY_TARGET_IQN,
                    opt::ISCSI_INITIATOR_IQN,
                ] {
                    unasked(code, &mut w, &mut tmp);
                }
            }
            if ctx.reservation.and_then(|r| r.hostname.as_ref()).is_some() {
                unasked(opt::HOSTNAME, &mut w, &mut tmp);
            }
            for set in self.option_sets(ctx) {
                for o in set.iter().filter(|o| o.always) {
                    unasked(o.code, &mut w, &mut tmp);
                }
            }
        }
        stats.options_dropped += u64::from(w.dropped());
        if let Some(r) = relay_info {
            w.seal();
            w.extend_limit(reserve);
            w.push(opt::RELAY_AGENT_INFO, r).ok()?;
        }
        Some(HEADER_LEN + w.finish(MIN_MESSAGE - HEADER_LEN))
    }

    /// The option sets that apply to a client, most specific first: reservation, boot rule,
    /// classes, subnet.
    fn option_sets<'s>(
        &'s self,
        ctx: &'s Ctx<'s, '_, '_>,
    ) -> impl Iterator<Item = &'s OptionSet> + 's {
        let reserved = ctx.reservation.is_some();
        ctx.reservation
            .map(|r| &r.options)
            .into_iter()
            .chain(ctx.rule.map(|r| &r.options))
            .chain(
                self.classes(ctx.req, ctx.subnet_id, reserved)
                    .map(|c| &c.options),
            )
            .chain(std::iter::once(&ctx.subnet.options))
    }

    fn lookup<'s>(&'s self, ctx: &'s Ctx<'s, '_, '_>, code: u8) -> Option<&'s [u8]> {
        self.option_sets(ctx)
            .find_map(|s| s.get(code))
            .map(|o| &o.data[..])
    }

    /// The value of option `code` for this client: configured values first (most specific set
    /// wins), then the values the server derives (mask, broadcast, boot options, host name).
    fn value<'s>(
        &'s self,
        ctx: &'s Ctx<'s, '_, '_>,
        boot: Option<&'s Boot>,
        code: u8,
        tmp: &'s mut [u8; SCRATCH],
    ) -> Option<&'s [u8]> {
        if let Some(v) = self.lookup(ctx, code) {
            return Some(v);
        }
        let subnet = ctx.subnet;
        match code {
            opt::SUBNET_MASK => {
                tmp[..4].copy_from_slice(&subnet.mask().octets());
                Some(&tmp[..4])
            }
            opt::BROADCAST_ADDR => {
                let b = u32::from(subnet.network) | !crate::config::prefix_mask(subnet.prefix);
                tmp[..4].copy_from_slice(&b.to_be_bytes());
                Some(&tmp[..4])
            }
            opt::HOSTNAME => ctx
                .reservation
                .and_then(|r| r.hostname.as_deref())
                .map(str::as_bytes),
            opt::BOOTFILE_NAME => boot.map(|b| b.file.as_bytes()),
            opt::ROOT_PATH | opt::ISCSI_INITIATOR_IQN => {
                let b = boot?;
                let t = if code == opt::ROOT_PATH {
                    b.root_path.as_deref()?
                } else {
                    b.initiator_iqn.as_deref()?
                };
                if !t.contains('{') {
                    return Some(t.as_bytes());
                }
                let server = b
                    .next_server
                    .or(subnet.next_server)
                    .unwrap_or(subnet.server_id);
                let n = expand(t, &ctx.mac, server, tmp)?;
                Some(&tmp[..n])
            }
            opt::ISCSI_PRIMARY_TARGET_IQN => boot
                .and_then(|b| b.iscsi_target.as_deref())
                .map(str::as_bytes),
            opt::TFTP_SERVER_NAME => {
                let b = boot?;
                if let Some(n) = &b.server_name {
                    return Some(n.as_bytes());
                }
                let ns = b
                    .next_server
                    .or(subnet.next_server)
                    .unwrap_or(subnet.server_id);
                let mut ip = [0u8; 16];
                let n = write_ip(ns, &mut ip);
                tmp[..n].copy_from_slice(&ip[..n]);
                Some(&tmp[..n])
            }
            _ => None,
        }
    }
}

/// A set of option codes, on the stack.
#[derive(Default)]
pub(super) struct CodeSet([u64; 4]);

impl CodeSet {
    fn insert(&mut self, code: u8) {
        self.0[usize::from(code >> 6)] |= 1 << (code & 63);
    }

    fn contains(&self, code: u8) -> bool {
        self.0[usize::from(code >> 6)] & (1 << (code & 63)) != 0
    }
}

/// Writes an address in dotted-quad text into `buf` without allocating; returns the length.
/// The scratch space an option value derived per reply is built in (an option holds at most
/// 255 bytes).
const SCRATCH: usize = 256;

/// `template` with `{mac}` replaced by the client's MAC (`52-54-00-12-34-56`) and `{server}` by
/// `server`'s address, into `buf`; None if it does not fit in an option.
pub(super) fn expand(
    template: &str,
    mac: &[u8; 6],
    server: Ipv4Addr,
    buf: &mut [u8; SCRATCH],
) -> Option<usize> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    let mut rest = template.as_bytes();
    let mut put = |bytes: &[u8], n: &mut usize| -> Option<()> {
        let end = *n + bytes.len();
        (end < SCRATCH).then(|| {
            buf[*n..end].copy_from_slice(bytes);
            *n = end;
        })
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(b"{mac}") {
            let mut m = [0u8; 17];
            for (i, b) in mac.iter().enumerate() {
                m[i * 3] = HEX[usize::from(b >> 4)];
                m[i * 3 + 1] = HEX[usize::from(b & 15)];
                if i < 5 {
                    m[i * 3 + 2] = b'-';
                }
            }
            put(&m, &mut n)?;
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"{server}") {
            let mut ip = [0u8; 16];
            let k = write_ip(server, &mut ip);
            put(&ip[..k], &mut n)?;
            rest = r;
        } else {
            put(&rest[..1], &mut n)?;
            rest = &rest[1..];
        }
    }
    Some(n)
}

pub(super) fn write_ip(ip: Ipv4Addr, buf: &mut [u8; 16]) -> usize {
    let mut n = 0;
    for (i, o) in ip.octets().iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        let mut digits = [0u8; 3];
        let mut v = *o;
        let mut k = 0;
        loop {
            digits[k] = b'0' + v % 10;
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for d in digits[..k].iter().rev() {
            buf[n] = *d;
            n += 1;
        }
    }
    n
}
