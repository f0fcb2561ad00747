//! The XDP program and its maps.
//!
//! [`Steer::load`] loads the object and sets its configuration; [`Steer::attach`] attaches it
//! to an interface (native, else generic mode) as a BPF link owned by this process. The maps
//! (names as in `ebpf/steer.c`): `xsks` (queue -> AF_XDP socket), `ports` (destination ports
//! to steer), `addrs` (our addresses, when the destination is checked), `config` (flags and the
//! storm limits), `stats` (per-CPU counters), `buckets` (the per-source token buckets) and
//! `pending` (the retransmission filter's slots, mmapped here as [`Pending`]).

use aya::Ebpf;
use aya::maps::{Array, HashMap, Map, PerCpuArray, XskMap};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The compiled program (see `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.o"));

/// The program's section name in the object.
const PROGRAM: &str = "bootstorm_steer";

const CFG_CHECK_DST: u32 = 1;
const CFG_LIMIT: u32 = 2;
const CFG_RETRANS: u32 = 4;
const CFG_VLAN: u32 = 8;

/// Slots of the retransmission filter (`PENDING_SLOTS` in the program).
pub const PENDING_SLOTS: usize = 65536;

/// `struct config` of the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawConfig {
    flags: u32,
    mac_rate: u32,
    mac_burst: u32,
    relay_rate: u32,
    relay_burst: u32,
    pad: u32,
    retrans_ns: u64,
}

// SAFETY: `repr(C)` of plain integers laid out without implicit padding (6 x 4 + 8), as the
// program's `struct config`; any bit pattern is a valid value.
unsafe impl aya::Pod for RawConfig {}

/// `struct pending` of the program: one slot of the retransmission filter, shared with it (every
/// field an atomic of the C field's size and alignment, so both sides may touch it at once).
#[repr(C)]
struct RawPending {
    mac: [AtomicU8; 6],
    used: AtomicU16,
    xid: AtomicU32,
    at_ns: AtomicU64,
}

/// What the program does beyond steering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SteerConfig {
    /// Steer only frames to these addresses or the limited broadcast (None: any destination).
    pub addresses: Option<Vec<Ipv4Addr>>,
    /// DISCOVERs per second per client MAC (sent directly, giaddr 0); 0: no limit.
    pub mac_rate: u32,
    /// That bucket's depth.
    pub mac_burst: u32,
    /// DISCOVERs per second per relay (giaddr); 0: no limit.
    pub relay_rate: u32,
    /// That bucket's depth.
    pub relay_burst: u32,
    /// A DISCOVER repeating one still being answered (same client, same xid) within this is
    /// dropped in the program; None: off.
    pub retransmit_window: Option<Duration>,
    /// Steer VLAN-tagged frames too (the daemon sets it when the interface has VLAN devices,
    /// whose subnets and addresses then answer them, with the tag); off: tagged frames go to
    /// the kernel.
    pub vlan: bool,
}

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (veth, most server NICs).
    Native,
    /// In the generic receive path (any interface, slower).
    Generic,
}

impl Mode {
    /// As `bootstorm stats` names it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Generic => "generic",
        }
    }
}

/// Why the fast path could not start, for the log of `io = "auto"`.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The kernel refused to load the program or create its maps (no CAP_BPF / CAP_SYS_ADMIN,
    /// or a kernel without BPF).
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    /// Neither native nor generic attachment worked on this interface.
    #[error("cannot attach the XDP program: {0}")]
    Attach(String),
    /// A map operation failed.
    #[error("XDP map: {0}")]
    Map(String),
    /// The AF_XDP socket or its UMEM could not be made (no CAP_NET_RAW, RLIMIT_MEMLOCK, a
    /// driver without AF_XDP).
    #[error("AF_XDP socket: {0}")]
    Socket(String),
}

/// The program's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Frames passed to the kernel (not ours).
    pub passed: u64,
    /// Frames with truncated or inconsistent headers (passed to the kernel).
    pub malformed: u64,
    /// DISCOVERs over their source's rate (dropped).
    pub rate_limited: u64,
    /// DISCOVER retransmissions dropped while the first was being answered.
    pub retransmits: u64,
    /// Frames to steer with no socket on their queue (passed to the kernel).
    pub no_socket: u64,
}

/// The retransmission filter's slots, shared with the program (an mmapped array map): a worker
/// that answers a client clears its slot, so the client's next DISCOVER is heard at once.
pub struct Pending {
    base: *mut RawPending,
    len: usize,
}

// SAFETY: the region is shared memory of a BPF array map, written concurrently by the program
// anyway; this side only reads bytes and stores the `used` flag atomically, so sharing the
// pointer between threads adds no race the program does not already tolerate.
unsafe impl Send for Pending {}
// SAFETY: as for Send: every access through `&Pending` is an atomic store or a byte read.
unsafe impl Sync for Pending {}

impl Pending {
    fn map(fd: RawFd) -> std::io::Result<Pending> {
        let len = PENDING_SLOTS * size_of::<RawPending>();
        // SAFETY: maps `len` bytes of an mmapable BPF array map (BPF_F_MMAPABLE, 65536 slots of
        // 16 bytes) read-write and shared; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Pending {
            base: p.cast(),
            len,
        })
    }

    /// The program's slot of a client (FNV-1a of its MAC, as `mac_slot` in the program).
    pub fn slot_of(mac: &[u8; 6]) -> usize {
        let mut h: u32 = 2166136261;
        for b in mac {
            h ^= u32::from(*b);
            h = h.wrapping_mul(16777619);
        }
        h as usize % PENDING_SLOTS
    }

    fn slot(&self, mac: &[u8; 6]) -> &RawPending {
        let i = Self::slot_of(mac);
        // SAFETY: `i < PENDING_SLOTS`, so the slot lies inside the mapping, which lives as long
        // as `self`; slots are 16-byte aligned (page-aligned base, 16-byte stride), and every
        // field is an atomic, so shared references are sound while the program writes too.
        unsafe { &*self.base.wrapping_add(i) }
    }

    /// Userspace holds a DISCOVER of the client with `mac` (its `xid`): until it is answered,
    /// or `retransmit_window` after now, the program drops that client's repeats of it. Marked
    /// when the frame is taken from the ring, so a DISCOVER the ring had no room for is not.
    pub fn holding(&self, mac: &[u8; 6], xid: u32) {
        let slot = self.slot(mac);
        slot.used.store(0, Ordering::Relaxed);
        for (a, b) in slot.mac.iter().zip(mac) {
            a.store(*b, Ordering::Relaxed);
        }
        // The program compares the xid as the 4 bytes on the wire (host order of those bytes).
        slot.xid
            .store(u32::from_ne_bytes(xid.to_be_bytes()), Ordering::Relaxed);
        slot.at_ns.store(monotonic_ns(), Ordering::Relaxed);
        slot.used.store(1, Ordering::Release);
    }

    /// The client with `mac` was answered: its next DISCOVER goes through.
    pub fn answered(&self, mac: &[u8; 6]) {
        let slot = self.slot(mac);
        // A slot another client took since (a collision) is left alone.
        if slot
            .mac
            .iter()
            .zip(mac)
            .all(|(a, b)| a.load(Ordering::Relaxed) == *b)
        {
            slot.used.store(0, Ordering::Relaxed);
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the program's `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Drop for Pending {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The loaded program, its maps and (once attached) its link to an interface.
pub struct Steer {
    ebpf: Ebpf,
    mode: Option<Mode>,
    pending: Option<Arc<Pending>>,
}

fn map_err(e: impl std::fmt::Display) -> XdpError {
    XdpError::Map(e.to_string())
}

impl Steer {
    /// Loads the program and sets its configuration; nothing is attached yet.
    pub fn load(cfg: &SteerConfig) -> Result<Steer, XdpError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| XdpError::Load(chain(&e)))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| XdpError::Load(format!("no program {PROGRAM} in the object")))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(chain(&e)))?;
        prog.load().map_err(|e| XdpError::Load(chain(&e)))?;
        let mut s = Steer {
            ebpf,
            mode: None,
            pending: None,
        };
        s.configure(cfg)?;
        if cfg.retransmit_window.is_some() {
            let fd = match s.ebpf.map("pending") {
                Some(Map::Array(d)) => d.fd().as_fd().as_raw_fd(),
                _ => return Err(XdpError::Map("no array map 'pending'".into())),
            };
            s.pending = Some(Arc::new(
                Pending::map(fd).map_err(|e| XdpError::Map(format!("mmap pending: {e}")))?,
            ));
        }
        Ok(s)
    }

    fn configure(&mut self, cfg: &SteerConfig) -> Result<(), XdpError> {
        let mut flags = 0;
        if let Some(addrs) = &cfg.addresses {
            flags |= CFG_CHECK_DST;
            let mut m: HashMap<_, u32, u32> =
                HashMap::try_from(self.ebpf.map_mut("addrs").ok_or_else(|| map_err("addrs"))?)
                    .map_err(map_err)?;
            for a in addrs {
                m.insert(u32::from_ne_bytes(a.octets()), 1, 0)
                    .map_err(map_err)?;
            }
        }
        if cfg.mac_rate > 0 || cfg.relay_rate > 0 {
            flags |= CFG_LIMIT;
        }
        if cfg.retransmit_window.is_some() {
            flags |= CFG_RETRANS;
        }
        if cfg.vlan {
            flags |= CFG_VLAN;
        }
        let raw = RawConfig {
            flags,
            mac_rate: cfg.mac_rate,
            mac_burst: cfg.mac_burst.max(1),
            relay_rate: cfg.relay_rate,
            relay_burst: cfg.relay_burst.max(1),
            pad: 0,
            retrans_ns: cfg
                .retransmit_window
                .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64),
        };
        let mut c: Array<_, RawConfig> = Array::try_from(
            self.ebpf
                .map_mut("config")
                .ok_or_else(|| map_err("config"))?,
        )
        .map_err(map_err)?;
        c.set(0, raw, 0).map_err(map_err)
    }

    /// Attaches to `interface`: native mode, else generic. The attachment is a BPF link held by
    /// this process: it goes when the process does.
    pub fn attach(&mut self, interface: &str) -> Result<Mode, XdpError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| XdpError::Attach("program gone".into()))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Attach(chain(&e)))?;
        let mode = match prog.attach(interface, XdpMode::Driver) {
            Ok(_) => Mode::Native,
            Err(native) => match prog.attach(interface, XdpMode::Skb) {
                Ok(_) => Mode::Generic,
                Err(generic) => {
                    return Err(XdpError::Attach(format!(
                        "{interface}: native: {}; generic: {}",
                        chain(&native),
                        chain(&generic)
                    )));
                }
            },
        };
        self.mode = Some(mode);
        Ok(mode)
    }

    /// How the program is attached, if it is.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// Steers (or stops steering) frames to UDP `port`.
    pub fn set_port(&mut self, port: u16, on: bool) -> Result<(), XdpError> {
        let mut m: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("ports").ok_or_else(|| map_err("ports"))?)
                .map_err(map_err)?;
        m.set(u32::from(port), u32::from(on), 0).map_err(map_err)
    }

    /// Sends what arrives on receive queue `queue` to the AF_XDP socket `fd`.
    pub fn set_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        let mut m = XskMap::try_from(self.ebpf.map_mut("xsks").ok_or_else(|| map_err("xsks"))?)
            .map_err(map_err)?;
        m.set(queue, fd, 0).map_err(map_err)
    }

    /// The retransmission filter's slots (None when it is off).
    pub fn pending(&self) -> Option<Arc<Pending>> {
        self.pending.clone()
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Counters {
        let Some(m) = self.ebpf.map("stats") else {
            return Counters::default();
        };
        let Ok(m) = PerCpuArray::<_, u64>::try_from(m) else {
            return Counters::default();
        };
        let at = |i: u32| m.get(&i, 0).map_or(0, |v| v.iter().sum::<u64>());
        Counters {
            redirected: at(0),
            passed: at(1),
            malformed: at(2),
            rate_limited: at(3),
            retransmits: at(4),
            no_socket: at(5),
        }
    }

    /// Runs the program once over `frame` (`BPF_PROG_TEST_RUN`) and returns its verdict
    /// (`XDP_DROP` 1, `XDP_PASS` 2, `XDP_REDIRECT` 4), for tests of the program itself.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, XdpError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM)
            .ok_or_else(|| XdpError::Load("program gone".into()))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(chain(&e)))?;
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        };
        let r = prog.test_run(opts).map_err(|e| XdpError::Load(chain(&e)))?;
        Ok(r.return_value)
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
