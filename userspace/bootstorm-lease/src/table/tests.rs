use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

fn table(n: u8) -> LeaseTable {
    LeaseTable::new(
        &[PoolConfig {
            subnet: 0,
            start: ip(1),
            end: ip(n),
        }],
        &[],
        8,
    )
    .unwrap()
}

fn key(n: u8) -> [u8; 7] {
    [1, 0x52, 0x54, 0, 0, 0, n]
}

fn client(k: &[u8; 7]) -> Client<'_> {
    Client {
        key: k,
        hwaddr: &k[1..],
        hostname: None,
    }
}

const HOLD: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(3600);

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

#[test]
fn fresh_pool_hands_out_addresses_in_order_then_is_exhausted() {
    let tb = table(4);
    let keys: Vec<_> = (1..=5).map(key).collect();
    for (n, k) in keys.iter().take(4).enumerate() {
        assert_eq!(
            tb.offer(t(0), 0, &client(k), None, HOLD).unwrap().addr,
            ip(n as u8 + 1)
        );
        tb.bind(t(0), &client(k), ip(n as u8 + 1), LEASE).unwrap();
    }
    // Every address bound: exhausted (a bound lease is never taken).
    assert_eq!(
        tb.offer(t(0), 0, &client(&keys[4]), None, HOLD),
        Err(AllocError::Exhausted)
    );
    // Asking again gives the same answer (and the remembered verdict does not hide a release).
    assert_eq!(
        tb.offer(t(1), 0, &client(&keys[4]), None, HOLD),
        Err(AllocError::Exhausted)
    );
    assert!(tb.release(t(1), &keys[2], ip(3)).is_some());
    assert_eq!(
        tb.offer(t(1), 0, &client(&keys[4]), None, HOLD)
            .unwrap()
            .addr,
        ip(3)
    );
}

/// Regression: about 1,000 DISCOVERs from random MACs (no REQUEST ever) held every address of a
/// /24 for `offer_hold`, and a real client got no OFFER at all. An offer is a soft hold: a full
/// pool gives the oldest unconfirmed offer to the newcomer; a bound lease is never taken.
#[test]
fn full_pool_reclaims_the_oldest_unconfirmed_offer() {
    let tb = table(4);
    let keys: Vec<_> = (1..=8).map(key).collect();
    // .1 bound; .2, .3, .4 offered at t1, t2, t3.
    tb.offer(t(0), 0, &client(&keys[0]), None, HOLD).unwrap();
    tb.bind(t(0), &client(&keys[0]), ip(1), LEASE).unwrap();
    for n in 1..4u64 {
        let b = tb
            .offer(t(n), 0, &client(&keys[n as usize]), None, HOLD)
            .unwrap();
        assert!(!b.reclaimed);
    }
    // A newcomer at t4 gets the oldest offer (.2, made at t1), counted as reclaimed.
    let b = tb.offer(t(4), 0, &client(&keys[4]), None, HOLD).unwrap();
    assert_eq!((b.addr, b.reclaimed), (ip(2), true));
    // The next newcomer gets the next oldest, .3; then .4; then .2 again (now the oldest).
    let got: Vec<_> = (5..8)
        .map(|k| {
            tb.offer(t(5), 0, &client(&keys[k]), None, HOLD)
                .unwrap()
                .addr
        })
        .collect();
    assert_eq!(got, [ip(3), ip(4), ip(2)]);
    // The first client of .2 lost it: its REQUEST is refused, its record says so.
    assert_eq!(
        tb.bind(t(6), &client(&keys[1]), ip(2), LEASE),
        Err(BindError::Taken)
    );
    assert_eq!(
        tb.binding_of(t(6), &keys[1]).unwrap().state,
        LeaseState::Expired
    );
    // The bound lease was never taken; the listing has each held address once.
    assert_eq!(tb.holder(t(6), &keys[0], ip(1)), Holder::Me);
    assert_eq!(tb.unnamed(t(6)), Vec::<Ipv4Addr>::new());
    // A repeated DISCOVER of the current holder keeps its offer (no reclaim from itself).
    let again = tb.offer(t(7), 0, &client(&keys[7]), None, HOLD).unwrap();
    assert_eq!((again.addr, again.reclaimed), (ip(2), false));
}

#[test]
fn repeated_discover_gets_the_same_offer() {
    let tb = table(4);
    let a = key(1);
    let first = tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap().addr;
    let again = tb.offer(t(2), 0, &client(&a), None, HOLD).unwrap().addr;
    assert_eq!(first, again);
    assert_eq!(tb.usage(t(2)).offered, 1);
}

#[test]
fn offer_holds_the_address_until_it_lapses() {
    let tb = table(1);
    let (a, b) = (key(1), key(2));
    assert_eq!(
        tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap().addr,
        ip(1)
    );
    // Another client cannot bind an address offered to a, and a repeated DISCOVER of a keeps it.
    assert_eq!(
        tb.bind(t(29), &client(&b), ip(1), LEASE),
        Err(BindError::Taken)
    );
    assert_eq!(
        tb.offer(t(29), 0, &client(&a), None, HOLD).unwrap().addr,
        ip(1)
    );
    // After the hold lapses the address is free for another client.
    assert_eq!(
        tb.offer(t(31), 0, &client(&b), None, HOLD).unwrap().addr,
        ip(1)
    );
    assert_eq!(
        tb.bind(t(31), &client(&a), ip(1), LEASE),
        Err(BindError::Taken)
    );
}

#[test]
fn bind_and_renew_extend_the_lease() {
    let tb = table(4);
    let a = key(1);
    tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap();
    let l = tb.bind(t(1), &client(&a), ip(1), LEASE).unwrap();
    assert_eq!(l.state, LeaseState::Bound);
    assert_eq!(l.expires, t(3601));
    let l = tb.bind(t(1800), &client(&a), ip(1), LEASE).unwrap();
    assert_eq!(l.expires, t(5400));
    assert_eq!(tb.holder(t(1800), &a, ip(1)), Holder::Me);
    assert_eq!(tb.holder(t(1800), &key(2), ip(1)), Holder::Other);
    assert_eq!(tb.holder(t(5401), &key(2), ip(1)), Holder::Free);
    assert_eq!(
        tb.holder(t(0), &a, Ipv4Addr::new(10, 0, 0, 1)),
        Holder::NotInPool
    );
}

#[test]
fn hwaddr_of_names_the_current_holder_only() {
    let tb = table(4);
    let (a, b) = (key(1), key(2));
    assert_eq!(tb.hwaddr_of(t(0), ip(1)), None);
    tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap();
    assert_eq!(tb.hwaddr_of(t(0), ip(1)).as_deref(), Some(&a[1..]));
    tb.bind(t(1), &client(&a), ip(1), LEASE).unwrap();
    assert_eq!(tb.hwaddr_of(t(2), ip(1)).as_deref(), Some(&a[1..]));
    // Released: nobody holds it; then another client takes it after expiry.
    tb.release(t(3), &a, ip(1)).unwrap();
    assert_eq!(tb.hwaddr_of(t(3), ip(1)), None);
    tb.offer(t(4), 0, &client(&b), Some(ip(1)), HOLD).unwrap();
    assert_eq!(tb.hwaddr_of(t(4), ip(1)).as_deref(), Some(&b[1..]));
    // Lapsed offers name nobody.
    assert_eq!(tb.hwaddr_of(t(4) + HOLD, ip(1)), None);
}

#[test]
fn released_address_comes_back_to_its_client_and_others_get_fresh_ones() {
    let tb = table(4);
    let (a, b) = (key(1), key(2));
    tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap();
    tb.bind(t(0), &client(&a), ip(1), LEASE).unwrap();
    let r = tb.release(t(5), &a, ip(1)).unwrap();
    assert_eq!(r.state, LeaseState::Released);
    assert_eq!(
        tb.offer(t(6), 0, &client(&b), None, HOLD).unwrap().addr,
        ip(2)
    );
    assert_eq!(
        tb.offer(t(7), 0, &client(&a), None, HOLD).unwrap().addr,
        ip(1)
    );
}

#[test]
fn expired_lease_is_sticky_but_taken_when_needed() {
    let tb = table(2);
    let (a, b, c) = (key(1), key(2), key(3));
    tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap();
    tb.bind(t(0), &client(&a), ip(1), Duration::from_secs(10))
        .unwrap();
    tb.offer(t(0), 0, &client(&b), None, HOLD).unwrap();
    tb.bind(t(0), &client(&b), ip(2), Duration::from_secs(10))
        .unwrap();
    // Both expired; a new client takes one (nothing virgin left), the returning one gets its own.
    let got_c = tb.offer(t(20), 0, &client(&c), None, HOLD).unwrap().addr;
    let other = if got_c == ip(1) {
        (b, ip(2))
    } else {
        (a, ip(1))
    };
    assert_eq!(
        tb.offer(t(20), 0, &client(&other.0), None, HOLD)
            .unwrap()
            .addr,
        other.1
    );
    // The lease whose address c took is reported as expired, once.
    let mut seen = Vec::new();
    assert_eq!(tb.sweep(t(20), |l| seen.push((l.addr, l.state))), 1);
    assert_eq!(seen, [(got_c, LeaseState::Expired)]);
    assert_eq!(tb.sweep(t(20), |_| panic!("nothing changed")), 0);
}

#[test]
fn requested_address_is_offered_when_free() {
    let tb = table(8);
    let a = key(1);
    assert_eq!(
        tb.offer(t(0), 0, &client(&a), Some(ip(5)), HOLD)
            .unwrap()
            .addr,
        ip(5)
    );
    // The sequential path skips the slot taken out of order.
    let got: Vec<_> = (2..=8)
        .map(|n| {
            tb.offer(t(0), 0, &client(&key(n)), None, HOLD)
                .unwrap()
                .addr
        })
        .collect();
    assert_eq!(got, [ip(1), ip(2), ip(3), ip(4), ip(6), ip(7), ip(8)]);
}

#[test]
fn requested_address_in_another_subnet_is_ignored() {
    let tb = LeaseTable::new(
        &[
            PoolConfig {
                subnet: 0,
                start: ip(1),
                end: ip(4),
            },
            PoolConfig {
                subnet: 1,
                start: Ipv4Addr::new(198, 19, 0, 10),
                end: Ipv4Addr::new(198, 19, 0, 20),
            },
        ],
        &[],
        4,
    )
    .unwrap();
    let a = key(1);
    assert_eq!(
        tb.offer(t(0), 1, &client(&a), Some(ip(2)), HOLD)
            .unwrap()
            .addr,
        Ipv4Addr::new(198, 19, 0, 10)
    );
    assert_eq!(tb.subnet_of(ip(2)), Some(0));
}

#[test]
fn declined_address_is_quarantined() {
    let tb = table(2);
    let (a, b) = (key(1), key(2));
    tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap();
    tb.bind(t(0), &client(&a), ip(1), LEASE).unwrap();
    assert_eq!(
        tb.decline(t(1), &a, ip(1), Duration::from_secs(100))
            .unwrap()
            .state,
        LeaseState::Declined
    );
    assert_eq!(
        tb.offer(t(2), 0, &client(&a), None, HOLD).unwrap().addr,
        ip(2)
    );
    tb.bind(t(2), &client(&a), ip(2), LEASE).unwrap();
    // The quarantine is not an offer: it is never reclaimed.
    assert_eq!(
        tb.offer(t(2), 0, &client(&b), None, HOLD),
        Err(AllocError::Exhausted)
    );
    assert!(tb.release(t(3), &a, ip(2)).is_some());
    assert_eq!(
        tb.offer(t(3), 0, &client(&b), None, HOLD).unwrap().addr,
        ip(2)
    );
    tb.bind(t(3), &client(&b), ip(2), LEASE).unwrap();
    assert_eq!(
        tb.offer(t(102), 0, &client(&key(3)), None, HOLD)
            .unwrap()
            .addr,
        ip(1)
    );
}

#[test]
fn cancelled_offer_frees_the_address() {
    let tb = table(1);
    let (a, b) = (key(1), key(2));
    tb.offer(t(0), 0, &client(&a), None, HOLD).unwrap();
    assert_eq!(tb.cancel_offer(t(1), &a), Some(ip(1)));
    assert_eq!(
        tb.offer(t(1), 0, &client(&b), None, HOLD).unwrap().addr,
        ip(1)
    );
    assert_eq!(tb.cancel_offer(t(1), &a), None);
}

#[test]
fn reserved_slots_are_never_allocated() {
    let tb = LeaseTable::new(
        &[PoolConfig {
            subnet: 0,
            start: ip(1),
            end: ip(3),
        }],
        &[ip(2)],
        4,
    )
    .unwrap();
    let got: Vec<_> = (1..=2)
        .map(|n| {
            tb.offer(t(0), 0, &client(&key(n)), None, HOLD)
                .unwrap()
                .addr
        })
        .collect();
    assert_eq!(got, [ip(1), ip(3)]);
    for (n, a) in [(1, ip(1)), (2, ip(3))] {
        tb.bind(t(0), &client(&key(n)), a, LEASE).unwrap();
    }
    assert_eq!(
        tb.offer(t(0), 0, &client(&key(3)), Some(ip(2)), HOLD)
            .unwrap_err(),
        AllocError::Exhausted
    );
    assert_eq!(
        tb.bind(t(0), &client(&key(3)), ip(2), LEASE),
        Err(BindError::Taken)
    );
    let r = tb.bind_reserved(t(0), 0, &client(&key(9)), ip(2), LEASE);
    assert!(r.reserved);
}

#[test]
fn overlapping_or_empty_ranges_are_refused() {
    let p = |s, e| PoolConfig {
        subnet: 0,
        start: ip(s),
        end: ip(e),
    };
    assert!(matches!(
        LeaseTable::new(&[p(1, 10), p(10, 20)], &[], 1),
        Err(BuildError::Overlap { .. })
    ));
    assert!(matches!(
        LeaseTable::new(&[p(5, 4)], &[], 1),
        Err(BuildError::EmptyRange { .. })
    ));
}

#[test]
fn concurrent_offers_from_many_threads_never_share_an_address() {
    let tb = std::sync::Arc::new(table(200));
    let handles: Vec<_> = (0..4u8)
        .map(|th| {
            let tb = tb.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for n in 0..60u8 {
                    let k = [1, 0x52, 0x54, 0, 0, th, n];
                    if let Ok(l) = tb.offer(t(0), 0, &client(&k), None, HOLD) {
                        got.push((l.addr, l.reclaimed));
                    }
                }
                got
            })
        })
        .collect();
    let all: Vec<(Ipv4Addr, bool)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    // 240 clients, 200 addresses: each address is handed out fresh once, the later clients take
    // older offers (a thread that keeps losing that race to the others gets nothing, and its
    // client retransmits), and in the end each address is offered to exactly one client.
    let fresh: Vec<_> = all.iter().filter(|(_, r)| !r).map(|(a, _)| *a).collect();
    assert_eq!(fresh.len(), 200);
    assert!(all.len() > 200, "no offer was reclaimed: {}", all.len());
    let mut current: Vec<Ipv4Addr> = tb
        .leases(t(0))
        .into_iter()
        .filter(|l| l.state == LeaseState::Offered)
        .map(|l| l.addr)
        .collect();
    assert_eq!(current.len(), 200);
    current.sort();
    current.dedup();
    assert_eq!(current.len(), 200);
    assert_eq!(tb.unnamed(t(0)), Vec::<Ipv4Addr>::new());
}

#[derive(Debug, Clone)]
enum Op {
    Offer(u8, Option<u8>),
    Bind(u8, u8),
    Release(u8),
    Decline(u8),
    Cancel(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, proptest::option::of(1u8..=6)).prop_map(|(c, r)| Op::Offer(c, r)),
        (0u8..8, 1u8..=7).prop_map(|(c, a)| Op::Bind(c, a)),
        (0u8..8).prop_map(Op::Release),
        (0u8..8).prop_map(Op::Decline),
        (0u8..8).prop_map(Op::Cancel),
        (0u16..200).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Random operation sequences against the table and a model (a map from address to the client
    /// holding it and until when). After every step: no address is held by two clients, every
    /// success the table reports is one the model allows, and the table's own listing agrees.
    #[test]
    fn no_address_is_ever_held_by_two_clients(ops in proptest::collection::vec(op(), 1..120)) {
        let tb = table(6);
        let mut now = 0u64;
        // Model: address -> (client, expiry secs, bound or quarantined: never reclaimed).
        let mut held: BTreeMap<u8, (u8, u64, bool)> = BTreeMap::new();
        let keys: Vec<[u8; 7]> = (0..8).map(key).collect();
        for op in ops {
            let nowi = t(now);
            held.retain(|_, (_, exp, _)| *exp > now);
            match op {
                Op::Offer(c, req) => {
                    if let Ok(l) = tb.offer(nowi, 0, &client(&keys[c as usize]), req.map(ip), Duration::from_secs(30)) {
                        let a = l.addr.octets()[3];
                        match held.get(&a) {
                            // Only an offer to another client is ever taken, and only when full.
                            Some((owner, _, bound)) if l.reclaimed => {
                                prop_assert!(*owner != c && !*bound, "reclaimed {} from {} (bound {})", a, owner, bound);
                                prop_assert_eq!(held.len(), 6, "reclaimed {} with addresses free", a);
                            }
                            Some((owner, _, _)) => prop_assert_eq!(*owner, c, "offered {} held by another client", a),
                            None => prop_assert!(!l.reclaimed),
                        }
                        // A client holds one address: moving on gives the old one back.
                        held.retain(|_, (o, _, _)| *o != c);
                        let bound = l.state == LeaseState::Bound;
                        let exp = if bound { l.expires.as_secs() } else { now + 30 };
                        held.insert(a, (c, exp, bound));
                    }
                }
                Op::Bind(c, a) => {
                    if let Ok(l) = tb.bind(nowi, &client(&keys[c as usize]), ip(a), Duration::from_secs(100)) {
                        prop_assert!(a <= 6);
                        if let Some((owner, _, _)) = held.get(&a) {
                            prop_assert_eq!(*owner, c, "bound {} held by another client", a);
                        }
                        held.retain(|_, (o, _, _)| *o != c);
                        held.insert(a, (c, l.expires.as_secs(), true));
                    }
                }
                Op::Release(c) => {
                    if let Some(l) = tb.lease_of(nowi, &keys[c as usize])
                        && tb.release(nowi, &keys[c as usize], l.addr).is_some() {
                            held.remove(&l.addr.octets()[3]);
                        }
                }
                Op::Decline(c) => {
                    if let Some(l) = tb.lease_of(nowi, &keys[c as usize])
                        && tb.decline(nowi, &keys[c as usize], l.addr, Duration::from_secs(50)).is_some() {
                            held.insert(l.addr.octets()[3], (255, now + 50, true));
                        }
                }
                Op::Cancel(c) => {
                    if let Some(a) = tb.cancel_offer(nowi, &keys[c as usize]) {
                        held.remove(&a.octets()[3]);
                    }
                }
                Op::Advance(s) => now += u64::from(s),
            }
            // The table's view: active leases and offers, one client per address, and no address
            // held that no record names (an INIT-REBOOT to another address left one behind).
            let nowi = t(now);
            prop_assert_eq!(tb.unnamed(nowi), Vec::<Ipv4Addr>::new());
            // Walking the records without copying them sees what the listing lists.
            let mut walked = Vec::new();
            tb.each_record(nowi, |l, state| walked.push((l.addr, l.key.clone(), state)));
            walked.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let mut listed: Vec<_> = tb.leases(nowi).into_iter().map(|l| (l.addr, l.key, l.state)).collect();
            listed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            prop_assert_eq!(walked, listed);
            for a in 1..=7 {
                let at: Vec<_> = tb.records_at(nowi, ip(a)).into_iter().map(|l| (l.key, l.state)).collect();
                let listed: Vec<_> = tb.leases(nowi).into_iter().filter(|l| l.addr == ip(a)).map(|l| (l.key, l.state)).collect();
                prop_assert_eq!(at, listed, "records at {}", a);
            }
            let mut seen = BTreeMap::new();
            for l in tb.leases(nowi) {
                if matches!(l.state, LeaseState::Offered | LeaseState::Bound) {
                    prop_assert!(seen.insert(l.addr, l.key.clone()).is_none(), "{} listed twice", l.addr);
                    prop_assert_eq!(tb.holder(nowi, &l.key, l.addr), Holder::Me);
                }
            }
        }
    }
}

#[test]
fn restored_records_hold_their_addresses_and_stay_sticky() {
    let tb = table(4);
    let (a, b, c) = (key(1), key(2), key(3));
    let lease = |k: &[u8; 7], addr, state, expires| Lease {
        key: k.to_vec().into(),
        hwaddr: k[1..].to_vec().into(),
        addr,
        state,
        expires,
        hostname: None,
        subnet: 0,
        reserved: false,
    };
    // a: bound until t(3600) at .3; b: released .1 (remembered); c: its lease at .2 expired.
    tb.restore(t(10), lease(&a, ip(3), LeaseState::Bound, t(3600)), None)
        .unwrap();
    tb.restore(t(10), lease(&b, ip(1), LeaseState::Released, t(5)), None)
        .unwrap();
    tb.restore(t(10), lease(&c, ip(2), LeaseState::Bound, t(9)), None)
        .unwrap();
    assert_eq!(tb.holder(t(11), &a, ip(3)), Holder::Me);
    assert_eq!(tb.holder(t(11), &b, ip(3)), Holder::Other);
    assert_eq!(tb.lease_of(t(11), &c).unwrap().state, LeaseState::Expired);
    // Renewal of the restored lease works; a stranger cannot bind it.
    assert!(tb.bind(t(12), &client(&a), ip(3), LEASE).is_ok());
    assert_eq!(
        tb.bind(t(12), &client(&key(9)), ip(3), LEASE),
        Err(BindError::Taken)
    );
    // Sticky: b and c get their old addresses back; a newcomer gets the one nobody remembers.
    assert_eq!(
        tb.offer(t(13), 0, &client(&key(8)), None, HOLD)
            .unwrap()
            .addr,
        ip(4)
    );
    assert_eq!(
        tb.offer(t(13), 0, &client(&b), None, HOLD).unwrap().addr,
        ip(1)
    );
    assert_eq!(
        tb.offer(t(13), 0, &client(&c), None, HOLD).unwrap().addr,
        ip(2)
    );
    // A second bound claim on a held address is refused.
    assert_eq!(
        tb.restore(
            t(14),
            lease(&key(7), ip(3), LeaseState::Bound, t(3600)),
            None
        ),
        Err(RestoreError::Conflict(ip(3)))
    );
    // A quarantine comes back too.
    let tb = table(2);
    tb.restore(
        t(0),
        lease(&a, ip(1), LeaseState::Declined, t(0)),
        Some(t(600)),
    )
    .unwrap();
    assert_eq!(
        tb.offer(t(1), 0, &client(&b), Some(ip(1)), HOLD)
            .unwrap()
            .addr,
        ip(2)
    );
}
