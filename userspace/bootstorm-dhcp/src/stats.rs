//! Counters of what the server did, one set per worker.

use bootstorm_wire::dhcp::MessageType;

/// Why a datagram got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid DHCP message (bad lengths, options, cookie).
    Malformed,
    /// A BOOTREPLY or unknown op: servers only answer requests.
    NotRequest,
    /// BOOTP without option 53: not served.
    NotDhcp,
    /// A message type a server does not take (OFFER, ACK, ...).
    UnexpectedType,
    /// No configured subnet for the client's network or relay.
    NoSubnet,
    /// Addressed to another server (server identifier), or the client chose another server.
    NotForUs,
    /// No free address in the subnet's pools.
    PoolExhausted,
    /// A REQUEST from a client we have no record of, answered with silence (RFC 2131 4.3.2).
    NoRecord,
    /// RELEASE or DECLINE: these never get a reply.
    NoReplyExpected,
    /// The reply did not fit in the output buffer or the client's maximum message size.
    NoSpace,
    /// A DISCOVER over its source's admission limit (see [`crate::admission`]).
    RateLimited,
}

impl DropReason {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::NotRequest,
        DropReason::NotDhcp,
        DropReason::UnexpectedType,
        DropReason::NoSubnet,
        DropReason::NotForUs,
        DropReason::PoolExhausted,
        DropReason::NoRecord,
        DropReason::NoReplyExpected,
        DropReason::NoSpace,
        DropReason::RateLimited,
    ];

    /// Snake-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotRequest => "not_request",
            DropReason::NotDhcp => "not_dhcp",
            DropReason::UnexpectedType => "unexpected_type",
            DropReason::NoSubnet => "no_subnet",
            DropReason::NotForUs => "not_for_us",
            DropReason::PoolExhausted => "pool_exhausted",
            DropReason::NoRecord => "no_record",
            DropReason::NoReplyExpected => "no_reply_expected",
            DropReason::NoSpace => "no_space",
            DropReason::RateLimited => "rate_limited",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Message types counted separately (the DHCPv4 types 1..=8); others count as index 0.
fn type_index(t: MessageType) -> usize {
    match u8::from(t) {
        x @ 1..=8 => usize::from(x),
        _ => 0,
    }
}

/// Counters of one worker. Plain integers: each worker owns its own and the daemon adds them up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Received, by message type (index = option 53 value, 0 = other).
    pub rx: [u64; 9],
    /// Sent, by message type.
    pub tx: [u64; 9],
    /// Dropped, by [`DropReason`] in the order of [`DropReason::ALL`].
    pub dropped: [u64; 11],
    /// Optional options left out of replies because they did not fit.
    pub options_dropped: u64,
    /// Options in requests left out because their value was invalid (an empty host name or
    /// vendor class, ...): the requests were served without them.
    pub bad_options: u64,
    /// Offers that took the oldest unconfirmed offer of another client (the pool was full).
    pub offers_reclaimed: u64,
    /// NAKs sent, by reason, in the order of [`crate::NakReason::ALL`].
    pub naks: [u64; 7],
    /// Offers to boot firmware that no boot rule or reservation gave a boot file.
    pub no_boot_rule: u64,
}

impl Stats {
    pub(crate) fn count_rx(&mut self, t: MessageType) {
        self.rx[type_index(t)] += 1;
    }

    pub(crate) fn count_tx(&mut self, t: MessageType) {
        self.tx[type_index(t)] += 1;
    }

    pub(crate) fn count_drop(&mut self, r: DropReason) {
        self.dropped[r.index()] += 1;
    }

    /// Dropped count for one reason.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.dropped[r.index()]
    }

    /// Received count for one type.
    pub fn received(&self, t: MessageType) -> u64 {
        self.rx[type_index(t)]
    }

    /// Sent count for one type.
    pub fn sent(&self, t: MessageType) -> u64 {
        self.tx[type_index(t)]
    }

    /// Adds another worker's counters to these.
    pub fn add(&mut self, o: &Stats) {
        for (a, b) in self.rx.iter_mut().zip(o.rx) {
            *a += b;
        }
        for (a, b) in self.tx.iter_mut().zip(o.tx) {
            *a += b;
        }
        for (a, b) in self.dropped.iter_mut().zip(o.dropped) {
            *a += b;
        }
        self.options_dropped += o.options_dropped;
        self.bad_options += o.bad_options;
        self.offers_reclaimed += o.offers_reclaimed;
        for (a, b) in self.naks.iter_mut().zip(o.naks) {
            *a += b;
        }
        self.no_boot_rule += o.no_boot_rule;
    }
}
