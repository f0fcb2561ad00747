//! The boot-session registry: which machine holds which address now, as the DHCP workers saw it
//! happen (each offer, bind, release, decline and expiry). TFTP and HTTP ask it who a request
//! comes from (per-MAC roots), instead of walking every shard of the lease table. It also holds
//! each machine's boot session ([`crate::boots`]): DHCP events go there by MAC, and what TFTP,
//! HTTP and iSCSI see goes there by the client's address ([`Sessions::note`]).
//!
//! Memory is bounded by the address space served: one entry per address (an offer or lease
//! replaces the one before it), and addresses come only from the configured pools and
//! reservations.

use crate::boots::{Boots, Mac, Step};
use crate::tftpd::{BootNote, MacLookup};
use bootstorm_dhcp::{Event, EventKind};
use bootstorm_time::{Clock, Instant};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// What is known of the machine at one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its hardware address (a fixed-size key: recording an event allocates nothing).
    pub mac: Mac,
    /// Until when it holds the address (the offer's hold, or the lease's end).
    pub until: Instant,
    /// Bound (true) or only offered.
    pub bound: bool,
}

/// The registry. Shared by the DHCP workers (who write), TFTP and HTTP (who read).
#[derive(Debug)]
pub struct Sessions {
    /// foldhash, not SipHash: every DHCP event writes here, and the keys are addresses this
    /// server handed out, not a client's choice.
    by_addr: Mutex<HashMap<Ipv4Addr, Session, foldhash::fast::RandomState>>,
    /// Each machine's boot, by MAC.
    pub boots: Boots,
    /// Boot sessions are recorded (`[sessions] enabled`).
    pub recording: bool,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::with(crate::config::SessionSettings::default())
    }
}

impl Sessions {
    /// An empty registry with the default caps.
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// An empty registry with these caps.
    pub fn with(s: crate::config::SessionSettings) -> Sessions {
        Sessions {
            by_addr: Mutex::default(),
            boots: if s.enabled {
                Boots::new(s.live, s.recent, s.idle)
            } else {
                Boots::unused(s.live, s.recent, s.idle)
            },
            recording: s.enabled,
        }
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Ipv4Addr, Session, foldhash::fast::RandomState>> {
        self.by_addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what a DHCP event says: an offer or a bind gives the address to the event's
    /// client; a release, decline or withdrawn offer ends that client's hold on it.
    pub fn seen(&self, now: Instant, ev: &Event) {
        let mac = ev.hwaddr();
        let step = match ev.kind {
            _ if !self.recording => None,
            EventKind::Offer => Some(Step::Offer {
                addr: ev.addr,
                round: 0,
                uuid: ev.uuid,
            }),
            EventKind::Bind => Some(Step::Ack { addr: ev.addr }),
            EventKind::Nak => Some(Step::Nak {
                reason: ev.nak.map_or("refused", |r| r.name()),
            }),
            EventKind::Release => Some(Step::Release),
            EventKind::Decline => Some(Step::Decline),
            EventKind::OfferWithdrawn | EventKind::Inform => None,
        };
        if let Some(step) = step {
            self.boots.step(now, mac, step);
        }
        if self.recording
            && ev.no_boot_rule
            && matches!(ev.kind, EventKind::Offer | EventKind::Bind)
        {
            self.boots.step(now, mac, Step::NoBootRule);
        }
        match ev.kind {
            EventKind::Offer | EventKind::Bind => {
                let Some(until) = ev.expires else { return };
                self.map().insert(
                    ev.addr,
                    Session {
                        mac: Mac::new(ev.hwaddr()),
                        until,
                        bound: ev.kind == EventKind::Bind,
                    },
                );
            }
            EventKind::Release | EventKind::Decline | EventKind::OfferWithdrawn => {
                self.forget(ev.addr, ev.hwaddr())
            }
            EventKind::Nak | EventKind::Inform => {}
        }
    }

    /// Puts back a lease known before this process ran (the journal's), or after a reload.
    pub fn restore(&self, addr: Ipv4Addr, mac: &[u8], until: Instant) {
        self.map().insert(
            addr,
            Session {
                mac: Mac::new(mac),
                until,
                bound: true,
            },
        );
    }

    /// Ends `mac`'s hold on `addr` (a lease that expired, was released or declined).
    pub fn forget(&self, addr: Ipv4Addr, mac: &[u8]) {
        let mut m = self.map();
        if m.get(&addr).is_some_and(|s| &*s.mac == mac) {
            m.remove(&addr);
        }
    }

    /// [`Sessions::mac_of`] at `clock`'s now, as TFTP's per-MAC roots and diskless iSCSI
    /// targets ask it.
    pub fn lookup(self: &Arc<Self>, clock: Clock) -> MacLookup {
        let s = self.clone();
        Arc::new(move |ip| s.mac_of(clock.now(), ip).map(|m| m.to_vec()))
    }

    /// [`Sessions::note`] at `clock`'s now, as TFTP, HTTP and iSCSI report their steps.
    pub fn notes(self: &Arc<Self>, clock: Clock) -> BootNote {
        let s = self.clone();
        Arc::new(move |ip, step| s.note(clock.now(), ip, step))
    }

    /// Records what TFTP, HTTP or iSCSI saw of the machine at `addr` (if one holds it).
    pub fn note(&self, now: Instant, addr: Ipv4Addr, step: Step) {
        if !self.recording {
            return;
        }
        if let Some(mac) = self.mac_of(now, addr) {
            self.boots.step(now, &mac, step);
        }
    }

    /// The hardware address of the machine holding `addr` at `now`, if any.
    pub fn mac_of(&self, now: Instant, addr: Ipv4Addr) -> Option<Box<[u8]>> {
        self.map()
            .get(&addr)
            .filter(|s| s.until > now)
            .map(|s| Box::from(&*s.mac))
    }

    /// Sessions held now (for the counters).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootstorm_time::Duration;

    fn ev(kind: EventKind, last: u8, mac: u8, until: Option<u64>) -> Event {
        let mut hwaddr = [0u8; 16];
        hwaddr[..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, mac]);
        Event {
            kind,
            addr: Ipv4Addr::new(198, 18, 1, last),
            expires: until.map(Instant::from_secs),
            hwaddr,
            hlen: 6,
            xid: 1,
            subnet: 0,
            nak: None,
            reclaimed: false,
            boot: None,
            no_boot_rule: false,
            uuid: None,
        }
    }

    #[test]
    fn the_current_holder_of_an_address_is_named() {
        let s = Sessions::new();
        let ip = Ipv4Addr::new(198, 18, 1, 5);
        let t = Instant::from_secs;
        assert_eq!(s.mac_of(t(0), ip), None);
        s.seen(t(0), &ev(EventKind::Offer, 5, 1, Some(30)));
        assert_eq!(
            s.mac_of(t(1), ip).as_deref(),
            Some(&[0x52, 0x54, 0, 0, 0, 1][..])
        );
        // The offer lapses.
        assert_eq!(s.mac_of(t(30), ip), None);
        // Another machine takes the address (a reclaimed offer); then binds.
        s.seen(t(0), &ev(EventKind::Offer, 5, 2, Some(40)));
        s.seen(t(0), &ev(EventKind::Bind, 5, 2, Some(3600)));
        assert_eq!(s.mac_of(t(100), ip).unwrap()[5], 2);
        // The first machine's late release does not end the second's lease.
        s.seen(t(0), &ev(EventKind::Release, 5, 1, None));
        assert_eq!(s.mac_of(t(100), ip).unwrap()[5], 2);
        s.seen(t(0), &ev(EventKind::Release, 5, 2, None));
        assert_eq!(s.mac_of(t(100), ip), None);
        assert!(s.is_empty());
        // A machine's UUID (option 97) is its session's; not recording, nothing is kept.
        let mut with_uuid = ev(EventKind::Offer, 6, 3, Some(30));
        with_uuid.uuid = Some([0xab; 16]);
        s.seen(t(0), &with_uuid);
        let b = s.boots.get(&[0x52, 0x54, 0, 0, 0, 3]).unwrap();
        assert_eq!(b.uuid, Some([0xab; 16]));
        assert_eq!(
            serde_json::to_value(b.view(&|_| 0, false)).unwrap()["uuid"],
            "abababab-abab-abab-abab-abababababab"
        );
        let off = Sessions::with(crate::config::SessionSettings {
            enabled: false,
            ..Default::default()
        });
        off.seen(t(0), &with_uuid);
        assert!(off.boots.get(&[0x52, 0x54, 0, 0, 0, 3]).is_none());
        assert!(
            off.mac_of(t(1), with_uuid.addr).is_some(),
            "addresses still known"
        );
        // Restored from before a restart.
        s.restore(ip, &[1, 2, 3, 4, 5, 6], t(0) + Duration::from_secs(60));
        assert_eq!(
            s.mac_of(t(10), ip).as_deref(),
            Some(&[1, 2, 3, 4, 5, 6][..])
        );
    }
}
