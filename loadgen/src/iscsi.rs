//! One machine's iSCSI phase, sans-IO, as iPXE's initiator does it: one session on one
//! connection, a login (security stage with AuthMethod None, then the operational keys), then
//! READ (10) commands one at a time through the first N bytes of the disk, optionally a write of
//! a pattern of its own and a read back of it (its overlay must hold it), then a Logout. The
//! caller owns the TCP connection: it writes [`Session::output`], reports what went with
//! [`Session::sent`], feeds what it reads to [`Session::on_data`] and the end of the stream to
//! [`Session::on_eof`]. Time is microseconds from the start of the run.
//!
//! Written by hand: it is the load generator's side of the product's own protocol, and it
//! speaks to any target (tgt as well as bootstorm). It uses the wire crate's header view.

use bootstorm_wire::iscsi::{BHS_LEN, Bhs, Opcode, push_text, text_pairs};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Why an iSCSI phase failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The root path is not `iscsi:SERVER:PROTO:PORT:LUN:IQN` and no target was given.
    NoTarget,
    /// The connection could not be made or broke.
    Connect,
    /// The target refused the login.
    LoginRefused,
    /// A PDU that makes no sense here.
    BadResponse,
    /// A SCSI command ended with a status other than GOOD.
    CheckCondition,
    /// The connection closed before the phase ended.
    Closed,
    /// Nothing came for too long.
    Timeout,
    /// What was written did not read back.
    Mismatch,
}

impl Failure {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Failure::NoTarget => "iscsi: no target (root path)",
            Failure::Connect => "iscsi: cannot connect",
            Failure::LoginRefused => "iscsi: login refused",
            Failure::BadResponse => "iscsi: bad response",
            Failure::CheckCondition => "iscsi: command failed",
            Failure::Closed => "iscsi: connection closed early",
            Failure::Timeout => "iscsi: timeout",
            Failure::Mismatch => "iscsi: write did not read back",
        }
    }
}

/// What the phase does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Bytes read from the start of the disk.
    pub read: u64,
    /// Bytes written (then read back) at `write_at`; 0: none.
    pub write: u64,
    pub write_at: u64,
    /// Bytes per READ (10).
    pub chunk: u32,
    /// Without a reply for this long the phase fails.
    pub timeout_us: u64,
}

/// Where a disk is: portal, target and LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub portal: SocketAddrV4,
    pub target: String,
    pub lun: u64,
}

/// Parses an RFC 4173 root path: `iscsi:SERVER:PROTOCOL:PORT:LUN:TARGET` (empty port 3260,
/// empty LUN 0; the target name may hold colons).
pub fn parse_root_path(rp: &str) -> Option<Disk> {
    let rest = rp.strip_prefix("iscsi:")?;
    let mut f = rest.splitn(5, ':');
    let server: Ipv4Addr = f.next()?.parse().ok()?;
    let _proto = f.next()?;
    let port = match f.next()? {
        "" => 3260,
        p => p.parse().ok()?,
    };
    let lun = match f.next()? {
        "" => 0,
        l => l.parse().ok()?,
    };
    let target = f.next()?.to_string();
    (!target.is_empty()).then(|| Disk {
        portal: SocketAddrV4::new(server, port),
        target,
        lun,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Security,
    Operational,
    Reading,
    Writing,
    Verifying,
    LoggingOut,
    Done,
}

/// The iSCSI phase of one machine.
pub struct Session {
    disk: Disk,
    initiator: String,
    plan: Plan,
    pattern: [u8; 8],
    state: State,
    /// Bytes to send, and how many went already.
    out: Vec<u8>,
    rx: Vec<u8>,
    cmd_sn: u32,
    exp_stat_sn: u32,
    itt: u32,
    /// The target's MaxRecvDataSegmentLength (what one Data-Out may carry).
    target_mrdsl: usize,
    /// ImmediateData and FirstBurstLength as negotiated.
    immediate: bool,
    first_burst: usize,
    /// The command in flight: its tag, offset and length, and the bytes read so far.
    cmd: Option<(u32, u64, u32)>,
    got: Vec<u8>,
    /// Read so far.
    read_done: u64,
    /// UNIT ATTENTIONs retried.
    unit_attentions: u32,
    result: Option<Result<(), Failure>>,
    last_io: u64,
    login_done: Option<u64>,
    started: u64,
}

const ISID: [u8; 6] = [0x80, 0x42, 0x53, 0x54, 0x00, 0x01];
const READ_10: u8 = 0x28;
const WRITE_10: u8 = 0x2a;
const BLOCK: u64 = 512;
/// Sense key UNIT ATTENTION.
const UNIT_ATTENTION: u8 = 0x6;

impl Session {
    /// A session to `disk` as `initiator`, whose writes are `pattern` repeated. It starts with
    /// its first login request queued.
    pub fn new(disk: Disk, initiator: String, plan: Plan, pattern: [u8; 8], now: u64) -> Session {
        let mut s = Session {
            disk,
            initiator,
            plan,
            pattern,
            state: State::Security,
            out: Vec::new(),
            rx: Vec::new(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 1,
            target_mrdsl: 8192,
            immediate: false,
            first_burst: 0,
            cmd: None,
            got: Vec::new(),
            read_done: 0,
            unit_attentions: 0,
            result: None,
            last_io: now,
            login_done: None,
            started: now,
        };
        let keys = [
            ("InitiatorName", s.initiator.clone()),
            ("TargetName", s.disk.target.clone()),
            ("SessionType", "Normal".to_string()),
            ("AuthMethod", "None".to_string()),
        ];
        s.login(0, 1, &keys);
        s
    }

    /// The portal to connect to.
    pub fn portal(&self) -> SocketAddrV4 {
        self.disk.portal
    }

    /// Bytes waiting to be written to the connection.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Session::output`] were written.
    pub fn sent(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Done: Ok, or why not.
    pub fn result(&self) -> Option<Result<(), Failure>> {
        self.result
    }

    /// When the login completed (microseconds from its start), once it did.
    pub fn login_latency(&self) -> Option<u64> {
        self.login_done.map(|t| t - self.started)
    }

    /// When to give up waiting.
    pub fn deadline(&self) -> Option<u64> {
        self.result
            .is_none()
            .then_some(self.last_io + self.plan.timeout_us)
    }

    /// The deadline passed.
    pub fn on_timer(&mut self, now: u64) {
        if self.result.is_none() && now >= self.last_io + self.plan.timeout_us {
            self.fail(Failure::Timeout);
        }
    }

    /// The connection failed.
    pub fn on_error(&mut self) {
        if self.result.is_none() {
            self.fail(Failure::Connect);
        }
    }

    /// The target closed the connection.
    pub fn on_eof(&mut self) {
        if self.result.is_none() {
            // After a Logout response the target may close first.
            if self.state == State::Done {
                self.result = Some(Ok(()));
            } else {
                self.fail(Failure::Closed);
            }
        }
    }

    fn fail(&mut self, f: Failure) {
        self.result = Some(Err(f));
        self.state = State::Done;
        self.out.clear();
    }

    /// Bytes from the target.
    pub fn on_data(&mut self, now: u64, data: &[u8]) {
        self.last_io = now;
        self.rx.extend_from_slice(data);
        while self.result.is_none() {
            if self.rx.len() < BHS_LEN {
                return;
            }
            let Ok(h) = Bhs::new_checked(&self.rx[..BHS_LEN]) else {
                return self.fail(Failure::BadResponse);
            };
            // No digests are negotiated.
            let total = h.total_len(false, false);
            if total > 16 << 20 {
                return self.fail(Failure::BadResponse);
            }
            if self.rx.len() < total {
                return;
            }
            let pdu: Vec<u8> = self.rx.drain(..total).collect();
            let data_start = BHS_LEN + Bhs::new_checked(&pdu[..BHS_LEN]).unwrap().total_ahs_len();
            let data_len = Bhs::new_checked(&pdu[..BHS_LEN]).unwrap().data_len();
            self.on_pdu(
                now,
                &pdu[..BHS_LEN],
                &pdu[data_start..data_start + data_len],
            );
        }
    }

    fn on_pdu(&mut self, now: u64, bhs: &[u8], data: &[u8]) {
        let h = Bhs::new_checked(bhs).unwrap();
        match h.opcode() {
            Opcode::LoginResponse => self.on_login(now, &h, data),
            Opcode::DataIn => {
                let Some((itt, _, len)) = self.cmd else {
                    return self.fail(Failure::BadResponse);
                };
                let off = h.buffer_offset() as usize;
                if h.itt() != itt || off + data.len() > len as usize {
                    return self.fail(Failure::BadResponse);
                }
                if self.state == State::Verifying {
                    if self.got.len() < off + data.len() {
                        self.got.resize(off + data.len(), 0);
                    }
                    self.got[off..off + data.len()].copy_from_slice(data);
                }
                if h.flags() & 0x01 != 0 {
                    // Status in the last Data-In.
                    self.exp_stat_sn = h.stat_sn().wrapping_add(1);
                    self.command_done(now, h.byte3());
                }
            }
            Opcode::ScsiResponse => {
                if self.cmd.is_none_or(|(itt, _, _)| itt != h.itt()) {
                    return self.fail(Failure::BadResponse);
                }
                self.exp_stat_sn = h.stat_sn().wrapping_add(1);
                // A response byte other than "command completed" is a failure too.
                let status = if h.byte2() != 0 { 0xff } else { h.byte3() };
                // A UNIT ATTENTION (a target's first command after its start, tgt's "power on
                // or reset occurred") is retried, as every initiator does.
                let key = (data.len() >= 2 + 3).then(|| data[2 + 2] & 0x0f);
                if status == 0x02 && key == Some(UNIT_ATTENTION) && self.unit_attentions < 8 {
                    self.unit_attentions += 1;
                    if let Some((_, off, len)) = self.cmd.take() {
                        let op = if self.state == State::Writing {
                            WRITE_10
                        } else {
                            READ_10
                        };
                        return self.command(op, off, len);
                    }
                }
                self.command_done(now, status);
            }
            Opcode::ReadyToTransfer => self.on_r2t(&h),
            Opcode::LogoutResponse => {
                self.state = State::Done;
                self.result = Some(Ok(()));
            }
            Opcode::NopIn => {
                // A ping with a target tag wants an answer.
                if h.ttt() != 0xffff_ffff {
                    let mut p = pdu(Opcode::NopOut, true, 0x80);
                    {
                        let mut b = Bhs::new_checked(&mut p[..]).unwrap();
                        b.set_lun(h.lun());
                        b.set_itt(0xffff_ffff);
                        b.set_word20(h.ttt());
                        b.set_word24(self.cmd_sn);
                        b.set_word28(self.exp_stat_sn);
                    }
                    self.out.extend_from_slice(&p);
                }
            }
            Opcode::AsyncMessage => {}
            _ => self.fail(Failure::BadResponse),
        }
    }

    fn on_login(&mut self, now: u64, h: &Bhs<&[u8]>, data: &[u8]) {
        if h.login_status() != 0 {
            return self.fail(Failure::LoginRefused);
        }
        self.exp_stat_sn = h.stat_sn().wrapping_add(1);
        for (k, v) in text_pairs(data).filter_map(Result::ok) {
            match k {
                "MaxRecvDataSegmentLength" => {
                    self.target_mrdsl = v.parse().unwrap_or(8192).clamp(512, 16 << 20)
                }
                "ImmediateData" => self.immediate = v == "Yes",
                "FirstBurstLength" => self.first_burst = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        let transit = h.flags() & 0x80 != 0;
        let nsg = h.flags() & 0x03;
        match (self.state, transit, nsg) {
            (State::Security, true, 1) => {
                self.state = State::Operational;
                let keys = [
                    ("HeaderDigest", "None".to_string()),
                    ("DataDigest", "None".to_string()),
                    ("MaxRecvDataSegmentLength", "262144".to_string()),
                    ("MaxBurstLength", "1048576".to_string()),
                    ("FirstBurstLength", "262144".to_string()),
                    ("InitialR2T", "Yes".to_string()),
                    ("ImmediateData", "Yes".to_string()),
                    ("MaxConnections", "1".to_string()),
                    ("ErrorRecoveryLevel", "0".to_string()),
                    ("DefaultTime2Wait", "0".to_string()),
                    ("DefaultTime2Retain", "0".to_string()),
                    ("MaxOutstandingR2T", "1".to_string()),
                    ("DataPDUInOrder", "Yes".to_string()),
                    ("DataSequenceInOrder", "Yes".to_string()),
                ];
                self.login(1, 3, &keys);
            }
            (State::Operational, true, 3) => {
                // The login's CmdSN is not consumed: the first command carries the same.
                self.login_done = Some(now);
                self.state = State::Reading;
                self.next(now);
            }
            // A target that answers without transit wants another round of the same stage.
            (State::Security, false, _) | (State::Operational, false, _) => {
                let (c, n) = if self.state == State::Security {
                    (0, 1)
                } else {
                    (1, 3)
                };
                self.login(c, n, &[]);
            }
            _ => self.fail(Failure::BadResponse),
        }
    }

    fn login(&mut self, csg: u8, nsg: u8, keys: &[(&str, String)]) {
        let mut text = Vec::new();
        for (k, v) in keys {
            push_text(&mut text, k, v);
        }
        let mut p = pdu(Opcode::LoginRequest, true, 0x80 | (csg << 2) | nsg);
        {
            let mut b = Bhs::new_checked(&mut p[..]).unwrap();
            b.set_data_len(text.len());
            b.set_isid_tsih(ISID, 0);
            b.set_itt(0);
            b.set_word24(self.cmd_sn);
            b.set_word28(self.exp_stat_sn);
        }
        self.out.extend_from_slice(&p);
        push_padded(&mut self.out, &text);
    }

    fn command_done(&mut self, now: u64, status: u8) {
        let Some((_, off, len)) = self.cmd.take() else {
            return;
        };
        if status != 0 {
            return self.fail(Failure::CheckCondition);
        }
        match self.state {
            State::Reading => self.read_done = off + u64::from(len),
            State::Writing => self.state = State::Verifying,
            State::Verifying => {
                if !self
                    .got
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == self.pattern[i % 8])
                {
                    return self.fail(Failure::Mismatch);
                }
                self.state = State::LoggingOut;
            }
            _ => return self.fail(Failure::BadResponse),
        }
        self.next(now);
    }

    /// The next command, or the logout.
    fn next(&mut self, _now: u64) {
        if self.state == State::Reading {
            if self.read_done < self.plan.read {
                let len = (self.plan.read - self.read_done).min(u64::from(self.plan.chunk)) as u32;
                return self.command(READ_10, self.read_done, len);
            }
            self.state = if self.plan.write > 0 {
                State::Writing
            } else {
                State::LoggingOut
            };
        }
        match self.state {
            State::Writing => self.command(WRITE_10, self.plan.write_at, self.plan.write as u32),
            State::Verifying => {
                self.got.clear();
                self.command(READ_10, self.plan.write_at, self.plan.write as u32)
            }
            State::LoggingOut => {
                let mut p = pdu(Opcode::LogoutRequest, true, 0x80);
                {
                    let mut b = Bhs::new_checked(&mut p[..]).unwrap();
                    b.set_itt(self.itt);
                    b.set_word24(self.cmd_sn);
                    b.set_word28(self.exp_stat_sn);
                }
                self.out.extend_from_slice(&p);
                self.state = State::Done;
            }
            _ => {}
        }
    }

    fn command(&mut self, op: u8, offset: u64, len: u32) {
        self.itt = self.itt.wrapping_add(1);
        let write = op == WRITE_10;
        let lba = (offset / BLOCK) as u32;
        let blocks = (u64::from(len) / BLOCK) as u16;
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        // F, R or W, simple task attribute.
        let flags = 0x80 | if write { 0x20 } else { 0x40 } | 0x01;
        let immediate = if write && self.immediate {
            (len as usize).min(self.first_burst).min(self.target_mrdsl)
        } else {
            0
        };
        let mut p = pdu(Opcode::ScsiCommand, false, flags);
        {
            let mut b = Bhs::new_checked(&mut p[..]).unwrap();
            b.set_lun(lun_field(self.disk.lun));
            b.set_itt(self.itt);
            b.set_word20(len);
            b.set_word24(self.cmd_sn);
            b.set_word28(self.exp_stat_sn);
            b.set_data_len(immediate);
            b.set_cdb(&cdb);
        }
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.out.extend_from_slice(&p);
        if immediate > 0 {
            let data = self.data(0, immediate);
            push_padded(&mut self.out, &data);
        }
        self.cmd = Some((self.itt, offset, len));
    }

    /// `len` bytes of this machine's pattern from `offset` of the write.
    fn data(&self, offset: usize, len: usize) -> Vec<u8> {
        (offset..offset + len)
            .map(|i| self.pattern[i % 8])
            .collect()
    }

    fn on_r2t(&mut self, h: &Bhs<&[u8]>) {
        let Some((itt, _, len)) = self.cmd else {
            return self.fail(Failure::BadResponse);
        };
        let (off, want) = (h.buffer_offset() as usize, h.word44() as usize);
        if h.itt() != itt || self.state != State::Writing || off + want > len as usize {
            return self.fail(Failure::BadResponse);
        }
        let mut sent = 0;
        let mut data_sn = 0;
        while sent < want {
            let n = (want - sent).min(self.target_mrdsl);
            let last = sent + n == want;
            let mut p = pdu(Opcode::DataOut, false, if last { 0x80 } else { 0 });
            {
                let mut b = Bhs::new_checked(&mut p[..]).unwrap();
                b.set_lun(lun_field(self.disk.lun));
                b.set_itt(itt);
                b.set_word20(h.ttt());
                b.set_word28(self.exp_stat_sn);
                b.set_word36(data_sn);
                b.set_word40((off + sent) as u32);
                b.set_data_len(n);
            }
            self.out.extend_from_slice(&p);
            let d = self.data(off + sent, n);
            push_padded(&mut self.out, &d);
            sent += n;
            data_sn += 1;
        }
    }
}

/// An empty 48-byte header of `op`.
fn pdu(op: Opcode, immediate: bool, flags: u8) -> [u8; BHS_LEN] {
    let mut p = [0u8; BHS_LEN];
    let mut b = Bhs::new_checked(&mut p[..]).unwrap();
    b.clear(op, immediate);
    b.set_flags(flags);
    p
}

/// A LUN number in the flat or peripheral form SAM uses for LUNs under 256.
fn lun_field(lun: u64) -> u64 {
    (lun & 0xff) << 48
}

fn push_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
}

#[cfg(test)]
mod tests;
