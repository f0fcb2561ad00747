//! The socket driver: a batched UDP socket (`recvmmsg`/`sendmmsg` with IP_PKTINFO, from
//! `bootstorm-net`) as a receive and a transmit queue.
//!
//! Several sockets may share a port (`SO_REUSEPORT`): the kernel spreads unicasts over them but
//! hands every broadcast to every one. So exactly one socket of such a group is told to take
//! broadcasts ([`UdpRx::new`]); the others have the kernel drop their copies (a socket filter on
//! the frame's packet type, so they do not even wake) and drop what still comes here, before any
//! worker sees it; the worker that takes one passes it to the client's owner
//! (`bootstorm_dhcp::shard`).
//!
//! The receive waits in `poll(2)` on the socket and an eventfd (the [`Doorbell`]); under load
//! it never waits: a non-blocking `recvmmsg` comes first.

use crate::{BATCH, Doorbell, MAX_DATAGRAM, Ring, RxMeta, RxQueue, Sent, TxMeta, TxQueue};
use bootstorm_net::wake::EventFd;
use bootstorm_net::{RecvBatch, SendBatch, UdpSocket4};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

impl Ring for EventFd {
    fn ring(&self) {
        self.notify();
    }
}

/// The receive half.
pub struct UdpRx {
    sock: Arc<UdpSocket4>,
    port: u16,
    takes_broadcasts: bool,
    bell: Arc<EventFd>,
    batch: RecvBatch,
    /// Indices into `batch` of the datagrams given out, and their metadata.
    kept: Vec<(usize, RxMeta)>,
}

impl UdpRx {
    /// Receives from `sock` (its receives never block: they ask not to wait, and the wait is a
    /// `poll`; sends may block on a full send buffer, as they should). With `takes_broadcasts`
    /// false, broadcast datagrams are dropped (another socket of the group takes them).
    pub fn new(sock: Arc<UdpSocket4>, takes_broadcasts: bool) -> std::io::Result<UdpRx> {
        if !takes_broadcasts {
            // In the kernel, so this socket does not even wake for them. (Loopback frames carry
            // no broadcast MAC: those copies are dropped below, by the kernel's IP verdict.)
            sock.drop_link_broadcasts()?;
        }
        let port = sock.local_addr()?.port();
        Ok(UdpRx {
            sock,
            port,
            takes_broadcasts,
            bell: Arc::new(EventFd::new()?),
            batch: RecvBatch::default(),
            kept: Vec::with_capacity(BATCH),
        })
    }

    fn take(&mut self) -> std::io::Result<usize> {
        let n = self.sock.recv_batch_nowait(&mut self.batch)?;
        self.kept.clear();
        for i in 0..n {
            let (_, info) = self.batch.get(i);
            let broadcast = info.is_broadcast();
            if broadcast && !self.takes_broadcasts {
                continue;
            }
            self.kept.push((
                i,
                RxMeta {
                    src: info.src,
                    dst: SocketAddrV4::new(info.dst, self.port),
                    ifindex: info.ifindex,
                    local: if broadcast { info.local } else { info.dst },
                    broadcast,
                    l2_src: None,
                    truncated: info.truncated,
                    vlan: None,
                },
            ));
        }
        Ok(n)
    }
}

impl RxQueue for UdpRx {
    fn recv(&mut self, timeout: Duration) -> std::io::Result<usize> {
        if self.take()? > 0 || timeout.is_zero() {
            return Ok(self.kept.len());
        }
        if self.bell.wait_with(self.sock.as_raw_fd(), timeout)? {
            self.take()?;
        }
        Ok(self.kept.len())
    }

    fn get(&self, i: usize) -> (&[u8], &RxMeta) {
        let (k, meta) = &self.kept[i];
        (self.batch.get(*k).0, meta)
    }

    fn doorbell(&self) -> Doorbell {
        Doorbell::new(self.bell.clone())
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.sock.as_raw_fd())
    }
}

/// The transmit half.
pub struct UdpTx {
    sock: Arc<UdpSocket4>,
    batch: SendBatch,
}

impl UdpTx {
    /// Sends through `sock`.
    pub fn new(sock: Arc<UdpSocket4>) -> UdpTx {
        UdpTx {
            sock,
            batch: SendBatch::default(),
        }
    }
}

impl TxQueue for UdpTx {
    fn push(&mut self, payload: &[u8], meta: &TxMeta) -> bool {
        if self.batch.is_full() {
            return false;
        }
        let len = payload.len().min(MAX_DATAGRAM);
        self.batch.next_buf()[..len].copy_from_slice(&payload[..len]);
        // A socket cannot address a frame to a MAC: link unicast becomes broadcast, out of the
        // interface it was meant for.
        let dst = match meta.l2_dst {
            Some(_) => SocketAddrV4::new(Ipv4Addr::BROADCAST, meta.dst.port()),
            None => meta.dst,
        };
        self.batch.commit(len, dst, meta.ifindex, meta.src);
        true
    }

    fn len(&self) -> usize {
        self.batch.len()
    }

    fn flush(&mut self) -> std::io::Result<Sent> {
        if self.batch.is_empty() {
            return Ok(Sent::default());
        }
        let r = self.sock.send_batch(&mut self.batch);
        self.batch.clear();
        let r = r?;
        Ok(Sent {
            sent: r.sent,
            failed: r.failed,
            last_error: r.last_error,
        })
    }
}
