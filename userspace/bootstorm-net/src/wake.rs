//! Waking a thread that waits on a socket: an `eventfd(2)` counter and a `poll(2)` over a few
//! descriptors. A worker blocked on its socket must also return when another thread hands it a
//! datagram or when the journal made its held replies durable; both ring its [`EventFd`].

use crate::cvt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A counter other threads bump to wake a poll on it (level-triggered until drained).
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl EventFd {
    /// A new, non-blocking eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain system call with constant arguments; the result is checked.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `raw` is a descriptor we just created and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Wakes whoever polls this (or the next poll). Cannot fail in a way worth reporting: the
    /// counter saturating means a wake-up is pending already.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor we own.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                size_of::<u64>(),
            )
        };
    }

    /// Waits until `fd` is readable, this eventfd rang (which clears it) or `timeout` passed;
    /// true if `fd` is readable: the wait of a receive queue with a doorbell.
    pub fn wait_with(&self, fd: RawFd, timeout: Duration) -> io::Result<bool> {
        let [ready, rang] = poll_readable([fd, self.as_raw_fd()], timeout)?;
        if rang {
            self.drain();
        }
        Ok(ready)
    }

    /// Clears pending wake-ups.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from a descriptor we own (non-blocking).
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                size_of::<u64>(),
            )
        };
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are readable (all
/// false on a timeout or an interrupted wait). At most 4 descriptors.
pub fn poll_readable<const N: usize>(fds: [RawFd; N], timeout: Duration) -> io::Result<[bool; N]> {
    const { assert!(N <= 4) };
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; N];
    for (slot, fd) in p.iter_mut().zip(fds) {
        slot.fd = fd;
        slot.events = libc::POLLIN;
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `p` is a live array of N pollfd structs, and N is passed as its length.
    let r = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok([false; N]);
        }
        return Err(e);
    }
    let mut out = [false; N];
    for (o, slot) in out.iter_mut().zip(p) {
        *o = slot.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eventfd_wakes_a_poll_until_drained() {
        let e = EventFd::new().unwrap();
        assert_eq!(
            poll_readable([e.as_raw_fd()], Duration::ZERO).unwrap(),
            [false]
        );
        e.notify();
        e.notify();
        assert_eq!(
            poll_readable([e.as_raw_fd()], Duration::from_secs(5)).unwrap(),
            [true]
        );
        e.drain();
        assert_eq!(
            poll_readable([e.as_raw_fd()], Duration::ZERO).unwrap(),
            [false]
        );
    }
}
