//! The kernel-bypass fast path: an XDP program steers DHCP and TFTP frames to AF_XDP sockets,
//! one per receive queue, and everything else (ARP, TCP for HTTP and iSCSI, SSH) passes to the
//! kernel untouched.
//!
//! - [`program`]: the XDP program (`ebpf/steer.c`, built by `build.rs` or taken as committed),
//!   loaded and attached with aya as a BPF link (it goes away with the process, also on
//!   SIGKILL), native mode first and generic (SKB) mode when the driver refuses; its maps (the
//!   steered ports, our addresses, the storm limits, the per-CPU counters) behind a small safe
//!   API, and the retransmission filter's slots mapped into this process.
//! - [`xsk`]: AF_XDP sockets through xsk-rs (libxdp's own program loading inhibited; each
//!   socket goes into our XSKMAP at its queue) as an [`bootstorm_io::RxQueue`] and
//!   [`bootstorm_io::TxQueue`], so the same DHCP worker that runs on sockets runs here. Frames
//!   in are parsed to their UDP payload (the received UDP checksum need not be complete: veth
//!   peers leave it partial); replies leave as whole frames with full IPv4 and UDP checksums
//!   (copy mode has no transmit offload).
//!
//! Why xsk-rs: it is the AF_XDP binding the project's design names, and it works here (its C
//! part, libxdp, builds from the crate with clang, make, m4, libelf and zlib). aya is pinned to
//! 0.14.0: later versions need a newer rustc than this toolchain's.
//!
//! This crate holds unsafe code where the kernel interface needs it (the rings and frames of a
//! UMEM, the mmapped map, `getifaddrs`), each block with a `// SAFETY:` note.

pub mod program;
pub mod xsk;

pub use program::{Counters, Mode, Pending, Steer, SteerConfig, XdpError};
pub use xsk::{
    KernelStats, LinkInfo, QueueStats, RX_FRAMES, VlanLink, XdpRx, XdpTx, open, subnet_broadcast,
};

/// Sets the calling thread's nice value (lower runs sooner; below 0 needs CAP_SYS_NICE).
pub fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on PRIO_PROCESS with a thread id changes only that thread's nice
    // value and reads no memory of ours.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to CPU `cpu` (a fast-path worker stays with its queue's interrupts).
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set` (the index is taken modulo its size).
    unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set) };
    // SAFETY: reads the set we pass, of the size we pass, for the calling thread (0).
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
