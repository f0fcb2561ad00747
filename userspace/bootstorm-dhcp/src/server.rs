//! The server: RFC 2131 message handling, PXE boot selection and reply building.

use crate::config::{
    Boot, BootRule, Class, Match, OptionSet, Reservation, ServerConfig, Subnet, arch,
};
use crate::stats::{DropReason, Stats};
use bootstorm_lease::{AllocError, Binding, BuildError, Client, LeaseTable, PoolConfig};
use bootstorm_time::{Duration, Instant};
use bootstorm_wire::dhcp::{
    self, HEADER_LEN, MIN_MESSAGE, MessageType, OptionWriter, OverloadWriter, Packet, Repr,
    emit_reply_header, opt, user_classes,
};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The DHCP server core. Shared by all workers (`&self` everywhere); each worker passes its own
/// [`Stats`].
pub struct Server {
    cfg: ServerConfig,
    table: LeaseTable,
    by_mac: HashMap<[u8; 6], usize>,
    by_client_id: HashMap<Box<[u8]>, usize>,
    reserved_addrs: HashMap<Ipv4Addr, usize>,
    default_subnet: Option<u32>,
    admission: crate::admission::Admission,
}

/// Vendor class prefixes (option 60) of PXE and HTTP boot clients.
const PXE_CLIENT: &[u8] = b"PXEClient";
const HTTP_CLIENT: &[u8] = b"HTTPClient";
/// Option 43 for PXE clients: sub-option 6 (PXE_DISCOVERY_CONTROL) = 8, "boot from the file in
/// this offer, skip boot server discovery" (PXE 2.1 spec, table 2-1), then End.
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];
/// Shortest lease granted when a client asks for less than the subnet's lease time.
const MIN_LEASE: Duration = Duration::from_secs(60);

/// The key a client is known by: option 61 if sent, else htype + chaddr. A client that sends
/// option 61 as type 1 + its MAC therefore has the same key as when it sends none.
struct Key {
    buf: [u8; 17],
    len: usize,
}

impl Key {
    fn of<'k>(req: &'k Repr<'_>, buf: &'k mut Key) -> &'k [u8] {
        if let Some(id) = req.client_id {
            return id;
        }
        let hw = req.chaddr();
        buf.buf[0] = req.htype;
        buf.buf[1..1 + hw.len()].copy_from_slice(hw);
        buf.len = 1 + hw.len();
        &buf.buf[..buf.len]
    }
}

/// Everything decided about one request before the reply is built.
struct Ctx<'s, 'r, 'a> {
    req: &'r Repr<'a>,
    subnet_id: u32,
    subnet: &'s Subnet,
    key: &'r [u8],
    reservation: Option<&'s Reservation>,
    boot: Option<&'s Boot>,
    rule: Option<&'s BootRule>,
    /// What chose `boot`.
    boot_from: Option<BootFrom>,
    /// PXE or HTTP boot firmware (vendor class or option 93): expects a boot file.
    firmware: bool,
    mac: [u8; 6],
}

impl Server {
    /// Builds the server and its lease table.
    pub fn new(cfg: ServerConfig) -> Result<Server, BuildError> {
        let mut pools = Vec::new();
        for (id, s) in cfg.subnets.iter().enumerate() {
            for &(start, end) in &s.ranges {
                pools.push(PoolConfig {
                    subnet: id as u32,
                    start,
                    end,
                });
            }
        }
        let reserved: Vec<Ipv4Addr> = cfg.reservations.iter().map(|r| r.addr).collect();
        let table = LeaseTable::new(&pools, &reserved, cfg.shards)?;
        let mut by_mac = HashMap::new();
        let mut by_client_id = HashMap::new();
        let mut reserved_addrs = HashMap::new();
        for (i, r) in cfg.reservations.iter().enumerate() {
            if let Some(m) = r.hwaddr {
                by_mac.insert(m, i);
            }
            if let Some(id) = &r.client_id {
                by_client_id.insert(id.clone(), i);
            }
            reserved_addrs.insert(r.addr, i);
        }
        let default_subnet = cfg
            .subnets
            .iter()
            .position(|s| s.interface.is_none())
            .map(|i| i as u32);
        let admission = crate::admission::Admission::new(cfg.admission);
        Ok(Server {
            admission,
            cfg,
            table,
            by_mac,
            by_client_id,
            reserved_addrs,
            default_subnet,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// The lease table (for listings, metrics and sweeps).
    pub fn leases(&self) -> &LeaseTable {
        &self.table
    }

    /// The index of the subnet served directly on interface `name`, if any.
    pub fn subnet_for_interface(&self, name: &str) -> Option<u32> {
        self.cfg
            .subnets
            .iter()
            .position(|s| s.interface.as_deref() == Some(name))
            .map(|i| i as u32)
    }

    fn is_our_id(&self, a: Ipv4Addr) -> bool {
        self.cfg.subnets.iter().any(|s| s.server_id == a)
    }

    fn subnet_containing(&self, a: Ipv4Addr) -> Option<u32> {
        self.cfg
            .subnets
            .iter()
            .position(|s| s.contains(a))
            .map(|i| i as u32)
    }

    /// RFC 2131 4.3.1: a relayed message is served from the subnet of giaddr; otherwise the subnet
    /// of ciaddr, of the receiving interface, or the default (first subnet not tied to an
    /// interface).
    fn select_subnet(&self, req: &Repr<'_>, meta: &RxMeta) -> Option<u32> {
        if let Some(g) = req.giaddr {
            return self.subnet_containing(g);
        }
        if let Some(s) = req.ciaddr.and_then(|c| self.subnet_containing(c)) {
            return Some(s);
        }
        meta.subnet_hint.or(self.default_subnet)
    }

    fn reservation_for(
        &self,
        req: &Repr<'_>,
        mac: &[u8; 6],
        subnet: &Subnet,
    ) -> Option<(usize, &Reservation)> {
        let by_id = req.client_id.and_then(|id| self.by_client_id.get(id));
        let by_mac = || {
            if req.hlen == 6 {
                self.by_mac.get(mac)
            } else {
                None
            }
        };
        let i = *by_id.or_else(by_mac)?;
        let r = &self.cfg.reservations[i];
        subnet.contains(r.addr).then_some((i, r))
    }

    fn matches(&self, m: &Match, ctx_req: &Repr<'_>, subnet_id: u32, reserved: bool) -> bool {
        if !m.arch.is_empty() && !ctx_req.client_arches().any(|a| m.arch.contains(&a)) {
            return false;
        }
        if let Some(uc) = &m.user_class {
            let Some(sent) = ctx_req.user_class else {
                return false;
            };
            if !user_classes(sent).any(|c| c == &uc[..]) {
                return false;
            }
        }
        if let Some(p) = &m.vendor_class_prefix
            && !ctx_req.vendor_class.is_some_and(|v| v.starts_with(p))
        {
            return false;
        }
        if let Some(p) = &m.mac_prefix
            && !ctx_req.chaddr().starts_with(p)
        {
            return false;
        }
        if m.reserved.is_some_and(|r| r != reserved) {
            return false;
        }
        if m.subnet.is_some_and(|s| s != subnet_id) {
            return false;
        }
        true
    }

    fn classes<'s>(
        &'s self,
        req: &'s Repr<'_>,
        subnet_id: u32,
        reserved: bool,
    ) -> impl Iterator<Item = &'s Class> + 's {
        self.cfg
            .classes
            .iter()
            .filter(move |c| self.matches(&c.matcher, req, subnet_id, reserved))
    }

    /// Handles one datagram (the UDP payload) received at `now`. A reply, if any, is written to
    /// the start of `out`; `out` should hold at least 1500 bytes (replies never exceed the
    /// client's maximum message size, 548 bytes when it gives none).
    pub fn handle(
        &self,
        now: Instant,
        meta: &RxMeta,
        input: &[u8],
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        let mut outcome = self.handle_inner(now, meta, input, out, stats);
        if let Some(r) = outcome.dropped {
            stats.count_drop(r);
            // Only on the drop path: who it was, from the fixed header, for the log line.
            if let Ok(p) = Packet::new_checked(input) {
                let mut hwaddr = [0u8; 16];
                hwaddr.copy_from_slice(p.chaddr_raw());
                let g = p.giaddr();
                outcome.who = Some(Who {
                    hwaddr,
                    hlen: p.hlen(),
                    xid: p.xid(),
                    giaddr: (!g.is_unspecified()).then_some(g),
                });
            }
        }
        if let Some(reply) = &outcome.reply {
            stats.count_tx(reply.message_type);
        }
        if let Some(ev) = &outcome.event {
            stats.no_boot_rule += u64::from(ev.no_boot_rule && ev.kind == EventKind::Offer);
        }
        outcome
    }

    fn handle_inner(
        &self,
        now: Instant,
        meta: &RxMeta,
        input: &[u8],
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        let Ok(packet) = Packet::new_checked(input) else {
            return Outcome::drop(DropReason::Malformed);
        };
        // RFC 3396: options sent in pieces are concatenated here.
        let mut scratch = [0u8; dhcp::SCRATCH_LEN];
        let Ok(req) = Repr::parse_with(&packet, &mut scratch) else {
            return Outcome::drop(DropReason::Malformed);
        };
        stats.bad_options += u64::from(req.bad_options);
        if req.op != 1 {
            return Outcome::drop(DropReason::NotRequest);
        }
        let Some(mt) = req.message_type else {
            return Outcome::drop(DropReason::NotDhcp);
        };
        stats.count_rx(mt);
        if req.hlen == 0 && req.client_id.is_none() {
            return Outcome::drop(DropReason::Malformed);
        }
        let Some(subnet_id) = self.select_subnet(&req, meta) else {
            return Outcome::drop(DropReason::NoSubnet);
        };
        if mt == MessageType::Discover {
            let source = match req.giaddr {
                Some(g) => crate::admission::Source::Relay(g),
                None => crate::admission::Source::Interface(meta.ifindex),
            };
            if !self.admission.admit(now, source) {
                return Outcome::drop(DropReason::RateLimited);
            }
        }
        let subnet = &self.cfg.subnets[subnet_id as usize];
        let mut keybuf = Key {
            buf: [0; 17],
            len: 0,
        };
        let key = Key::of(&req, &mut keybuf);
        let mut mac = [0u8; 6];
        if req.hlen == 6 {
            mac.copy_from_slice(&req.chaddr[..6]);
        }
        let found = self.reservation_for(&req, &mac, subnet);
        let reservation = found.map(|(_, r)| r);
        let reserved = reservation.is_some();
        // A reserved address belongs to the reservation, so a reserved client has one record
        // whatever it sends: the reservation's client id, else htype + its MAC. (Firmware and the
        // OS of one machine, one with option 61 and one without, both matched by MAC, made two
        // records holding one address; the fuzzer found it.)
        let mut reskey = Key {
            buf: [0; 17],
            len: 0,
        };
        let key: &[u8] = match reservation {
            Some(r) => match &r.client_id {
                Some(id) => id,
                None => {
                    reskey.buf[0] = req.htype;
                    reskey.buf[1..7].copy_from_slice(&mac);
                    &reskey.buf[..7]
                }
            },
            None => key,
        };
        let rule_index = self
            .cfg
            .boot_rules
            .iter()
            .position(|r| self.matches(&r.matcher, &req, subnet_id, reserved));
        let rule = rule_index.map(|i| &self.cfg.boot_rules[i]);
        let index = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
        // The boot file: the reservation's if it has one, else the first matching rule's.
        let (boot, boot_from) = match found {
            Some((i, r)) if r.boot.is_some() => {
                (r.boot.as_ref(), Some(BootFrom::Reservation(index(i))))
            }
            _ => (
                rule.map(|r| &r.boot),
                rule_index.map(|i| BootFrom::Rule(index(i))),
            ),
        };
        let vendor = req.vendor_class.unwrap_or(&[]);
        let firmware = vendor.starts_with(PXE_CLIENT)
            || vendor.starts_with(HTTP_CLIENT)
            || req.client_arch.is_some();
        let ctx = Ctx {
            req: &req,
            subnet_id,
            subnet,
            key,
            reservation,
            boot,
            rule,
            boot_from,
            firmware,
            mac,
        };
        let client = Client {
            key,
            hwaddr: req.chaddr(),
            hostname: req.hostname,
        };
        match mt {
            MessageType::Discover => self.discover(now, meta, &ctx, &client, out, stats),
            MessageType::Request => self.request(now, meta, &ctx, &client, out, stats),
            MessageType::Decline => self.decline(now, &ctx),
            MessageType::Release => self.release(now, &ctx),
            MessageType::Inform => self.inform(meta, &ctx, out, stats),
            _ => Outcome::drop(DropReason::UnexpectedType),
        }
    }

    fn event(
        &self,
        ctx: &Ctx<'_, '_, '_>,
        kind: EventKind,
        b: Option<Binding>,
        addr: Ipv4Addr,
    ) -> Event {
        Event {
            kind,
            addr,
            expires: b.map(|b| b.expires),
            hwaddr: ctx.req.chaddr,
            hlen: ctx.req.hlen,
            xid: ctx.req.xid,
            subnet: ctx.subnet_id,
            nak: None,
            reclaimed: b.is_some_and(|b| b.reclaimed),
            boot: ctx.boot_from,
            no_boot_rule: ctx.boot.is_none() && ctx.firmware,
            uuid: ctx.req.client_uuid.and_then(|u| match u {
                [0, rest @ ..] | rest => rest.try_into().ok(),
            }),
        }
    }

    fn discover(
        &self,
        now: Instant,
        meta: &RxMeta,
        ctx: &Ctx<'_, '_, '_>,
        client: &Client<'_>,
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        let hold = self.cfg.offer_hold;
        let binding = match ctx.reservation {
            Some(r) => self
                .table
                .offer_reserved(now, ctx.subnet_id, client, r.addr, hold),
            None => match self
                .table
                .offer(now, ctx.subnet_id, client, ctx.req.requested_ip, hold)
            {
                Ok(b) => b,
                Err(AllocError::Exhausted) => {
                    if self.cfg.compat_nak {
                        let mut o = self.nak(
                            meta,
                            ctx,
                            NakReason::Exhausted,
                            Ipv4Addr::UNSPECIFIED,
                            out,
                            stats,
                        );
                        o.event = None;
                        o.dropped = o
                            .dropped
                            .or(Some(DropReason::PoolExhausted))
                            .filter(|_| o.reply.is_none());
                        return o;
                    }
                    return Outcome::drop(DropReason::PoolExhausted);
                }
            },
        };
        let mut o = self.reply(
            meta,
            ctx,
            MessageType::Offer,
            binding.addr,
            Some(self.lease_time(ctx, now, None)),
            None,
            out,
            stats,
        );
        if o.reply.is_some() {
            stats.offers_reclaimed += u64::from(binding.reclaimed);
            o.event = Some(self.event(ctx, EventKind::Offer, Some(binding), binding.addr));
        }
        o.commit = binding.commit;
        o
    }

    /// The lease time to grant: the subnet's, or less if the client asks for less (option 51),
    /// never below [`MIN_LEASE`]. With `bound_until`, what remains of an existing binding.
    fn lease_time(
        &self,
        ctx: &Ctx<'_, '_, '_>,
        now: Instant,
        bound_until: Option<Instant>,
    ) -> Duration {
        if let Some(until) = bound_until {
            return until.saturating_since(now);
        }
        let full = ctx.subnet.lease_time;
        match ctx.req.lease_time {
            Some(s) => Duration::from_secs(u64::from(s)).max(MIN_LEASE).min(full),
            None => full,
        }
    }

    fn request(
        &self,
        now: Instant,
        meta: &RxMeta,
        ctx: &Ctx<'_, '_, '_>,
        client: &Client<'_>,
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        let req = ctx.req;
        let nak = |stats: &mut Stats, out: &mut [u8], addr: Ipv4Addr, why: NakReason| {
            self.nak(meta, ctx, why, addr, out, stats)
        };
        // The client's record now, and the address it holds bound (not expired), if any.
        let record = || self.table.binding_of(now, ctx.key);
        let bound_at = |b: Option<Binding>| {
            b.filter(|b| b.state == bootstorm_lease::LeaseState::Bound)
                .map(|b| b.addr)
        };
        let addr;
        if let Some(sid) = req.server_id {
            // RFC 2131 4.3.2, SELECTING: the client names the server it chose.
            if !self.is_our_id(sid) {
                // It chose another server: our offer is freed at once. RFC 2131 wants silence
                // here (a NAK would break networks with two servers); compatibility mode NAKs.
                let freed = self.table.cancel_offer(now, ctx.key);
                if self.cfg.compat_nak {
                    return nak(
                        stats,
                        out,
                        freed.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        NakReason::OtherServer,
                    );
                }
                let mut o = Outcome::drop(DropReason::NotForUs);
                o.event = freed.map(|a| self.event(ctx, EventKind::OfferWithdrawn, None, a));
                return o;
            }
            let Some(a) = req.requested_ip.or(req.ciaddr) else {
                return Outcome::drop(DropReason::Malformed);
            };
            addr = a;
        } else if let Some(ci) = req.ciaddr {
            // RENEWING (unicast) or REBINDING (broadcast): ciaddr is the address to extend.
            let b = record();
            if bound_at(b).is_some_and(|h| h != ci) {
                // RFC 2131 4.3.2: the client's lease is another address; it may not move by
                // renewing one it does not hold.
                return nak(stats, out, ci, NakReason::NotItsAddress);
            }
            let known = b.is_some_and(|b| b.addr == ci);
            if !known && !self.cfg.authoritative && ctx.reservation.is_none() {
                return Outcome::drop(DropReason::NoRecord);
            }
            addr = ci;
        } else if let Some(r) = req.requested_ip {
            // INIT-REBOOT: the client asks to keep an address it had.
            if !ctx.subnet.contains(r) {
                // RFC 2131 4.3.2: on the wrong network, NAK.
                return nak(stats, out, r, NakReason::WrongNetwork);
            }
            let b = record();
            if bound_at(b).is_some_and(|h| h != r) {
                // RFC 2131 4.3.2: "DHCPNAK if the requested IP address is incorrect". The
                // client has a lease on another address: it keeps that one (its next DISCOVER
                // is offered it again), and the table never holds an address no record names.
                return nak(stats, out, r, NakReason::NotItsAddress);
            }
            let known = b.is_some();
            if !known && !self.cfg.authoritative && ctx.reservation.is_none() {
                // RFC 2131 4.3.2: no record of this client: remain silent.
                return Outcome::drop(DropReason::NoRecord);
            }
            addr = r;
        } else {
            return Outcome::drop(DropReason::Malformed);
        }
        let lease = self.lease_time(ctx, now, None);
        let binding = if let Some(res) = ctx.reservation {
            if res.addr != addr {
                return nak(stats, out, addr, NakReason::Reserved);
            }
            self.table
                .bind_reserved(now, ctx.subnet_id, client, addr, lease)
        } else {
            if self.reserved_addrs.contains_key(&addr) {
                return nak(stats, out, addr, NakReason::Reserved);
            }
            if !ctx.subnet.contains(addr) {
                return nak(stats, out, addr, NakReason::WrongNetwork);
            }
            match self.table.bind(now, client, addr, lease) {
                Ok(b) => b,
                Err(bootstorm_lease::BindError::NotInPool) => {
                    return nak(stats, out, addr, NakReason::NotInPool);
                }
                Err(bootstorm_lease::BindError::Taken) => {
                    return nak(stats, out, addr, NakReason::Taken);
                }
            }
        };
        let granted = self.lease_time(ctx, now, Some(binding.expires));
        let mut o = self.reply(
            meta,
            ctx,
            MessageType::Ack,
            addr,
            Some(granted),
            None,
            out,
            stats,
        );
        if o.reply.is_some() {
            o.event = Some(self.event(ctx, EventKind::Bind, Some(binding), addr));
        }
        o.commit = binding.commit;
        o
    }

    fn decline(&self, now: Instant, ctx: &Ctx<'_, '_, '_>) -> Outcome {
        let req = ctx.req;
        // RFC 2131 4.3.3: the server identifier must be ours; the address is in option 50.
        if !req.server_id.is_some_and(|s| self.is_our_id(s)) {
            return Outcome::drop(DropReason::NotForUs);
        }
        let Some(addr) = req.requested_ip else {
            return Outcome::drop(DropReason::Malformed);
        };
        let b = self
            .table
            .decline(now, ctx.key, addr, self.cfg.decline_quarantine);
        let mut o = Outcome::drop(DropReason::NoReplyExpected);
        o.event = b.map(|b| self.event(ctx, EventKind::Decline, Some(b), addr));
        o.commit = b.map_or(0, |b| b.commit);
        o
    }

    fn release(&self, now: Instant, ctx: &Ctx<'_, '_, '_>) -> Outcome {
        let req = ctx.req;
        if req.server_id.is_some_and(|s| !self.is_our_id(s)) {
            return Outcome::drop(DropReason::NotForUs);
        }
        let Some(addr) = req.ciaddr else {
            return Outcome::drop(DropReason::Malformed);
        };
        // RFC 2131 4.3.4: no reply. The address keeps its last client (sticky re-offer).
        let b = self.table.release(now, ctx.key, addr);
        let mut o = Outcome::drop(DropReason::NoReplyExpected);
        o.event = b.map(|_| self.event(ctx, EventKind::Release, None, addr));
        o.commit = b.map_or(0, |b| b.commit);
        o
    }

    fn inform(
        &self,
        meta: &RxMeta,
        ctx: &Ctx<'_, '_, '_>,
        out: &mut [u8],
        stats: &mut Stats,
    ) -> Outcome {
        // RFC 2131 4.3.5: ACK with configuration, no lease, no yiaddr.
        let mut o = self.reply(
            meta,
            ctx,
            MessageType::Ack,
            Ipv4Addr::UNSPECIFIED,
            None,
            None,
            out,
            stats,
        );
        if o.reply.is_some() {
            o.event = Some(self.event(
                ctx,
                EventKind::Inform,
                None,
                ctx.req.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
            ));
        }
        o
    }
}

mod outcome;
mod reply;

pub use outcome::*;
#[cfg(test)]
use reply::write_ip;

#[cfg(test)]
mod tests;
