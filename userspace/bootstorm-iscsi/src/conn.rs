//! One iSCSI connection and its session (MaxConnections is 1) as a state machine: login with
//! security and operational negotiation, then the full feature phase (SCSI commands, R2T and
//! Data-Out for writes, Data-In for reads, NOP, Text, Task Management, Logout).
//!
//! Call order, for the driver that owns the TCP connection:
//! 1. read a 48-byte header; [`Connection::data_limit`] says how much data a PDU may carry
//!    now (a PDU declaring more is handed to [`Connection::handle_oversize`], which rejects
//!    it and closes); read its additional headers, data and padding;
//! 2. [`Connection::handle_pdu`] with the header and the data;
//! 3. drain [`Connection::poll_io`] (reads, writes, flushes to do on the backing store) and
//!    answer each with [`Connection::complete_io`], in any order and at any later time;
//! 4. drain [`Connection::poll_transmit`] (whole PDUs to write to the socket, in order) and
//!    [`Connection::poll_event`];
//! 5. when [`Connection::is_closed`], write what is left and close the socket.

use crate::login::{self, Answer, Limits, Params};
use crate::scsi::{self, Action, Disk, Sense};
use bootstorm_wire::iscsi::{BHS_LEN, Bhs, Opcode, RESERVED_TAG, pad4, push_text, text_pairs};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Commands the initiator may have outstanding (the CmdSN window: MaxCmdSN - ExpCmdSN + 1).
pub const QUEUE_DEPTH: u32 = 128;
/// The most data a login or text PDU may carry (RFC 7143 13.12: 8192 until negotiated).
pub const LOGIN_DATA_LIMIT: usize = 8192;

/// CHAP credentials: what the initiator must prove, and for mutual CHAP what the target
/// proves back.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    pub user: String,
    pub secret: Vec<u8>,
    /// Mutual CHAP: the target's own name and secret.
    pub mutual: Option<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Chap {
    // Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap")
            .field("user", &self.user)
            .field("mutual", &self.mutual.as_ref().map(|m| &m.0))
            .finish_non_exhaustive()
    }
}

/// A target: its name, logical units and who may log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its IQN.
    pub name: String,
    /// LUN number -> unit.
    pub luns: Vec<(u64, Disk)>,
    /// CHAP required, if set.
    pub chap: Option<Chap>,
    /// Initiator names allowed (empty: any).
    pub initiators: Vec<String>,
}

/// What the target core serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub targets: Vec<Target>,
    /// The portal SendTargets names (`ADDR:PORT`); its portal group tag is 1.
    pub portal: String,
    /// CHAP for discovery sessions, if required.
    pub discovery_chap: Option<Chap>,
    pub limits: Limits,
}

/// A backing-store operation for the driver to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRequest {
    /// Names this request in [`Connection::complete_io`].
    pub id: u64,
    /// The target (its index in [`Config::targets`]) and LUN number.
    pub target: usize,
    pub lun: u64,
    pub kind: IoKind,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoKind {
    Read {
        offset: u64,
        len: u64,
    },
    /// With `fua`, durable before it completes.
    Write {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
    },
    Flush,
    /// Hand these byte ranges back (UNMAP): afterwards they read as zeros.
    Unmap {
        ranges: Vec<(u64, u64)>,
    },
    /// How the unit's bytes from `offset` are provisioned (GET LBA STATUS): answered with
    /// [`IoResult::Extent`].
    Extent {
        offset: u64,
    },
}

/// How an [`IoRequest`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoResult {
    /// A read's data (exactly the length asked for).
    Read(Vec<u8>),
    /// A write or flush is done (durable after a flush).
    Done,
    /// It failed (the initiator gets a MEDIUM ERROR).
    Failed,
    /// An [`IoKind::Extent`]: the next `len` bytes are all mapped (data) or all holes.
    Extent { len: u64, mapped: bool },
}

/// Something worth telling the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    LoggedIn {
        initiator: String,
        /// None for a discovery session.
        target: Option<String>,
        isid: [u8; 6],
    },
    LoginFailed {
        initiator: Option<String>,
        reason: &'static str,
    },
    LoggedOut,
    /// The connection is closed for a protocol error.
    ProtocolError(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Login,
    FullFeature,
    /// Closed once what is queued is written.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    /// Not begun.
    Start,
    /// CHAP chosen: waiting for CHAP_A.
    ChapAlgorithm,
    /// Challenge sent: waiting for CHAP_N and CHAP_R.
    ChapResponse { id: u8, challenge: [u8; 16] },
    /// Authenticated, or none required.
    Done,
}

/// A command waiting for data or for its I/O.
struct Task {
    lun: u64,
    /// Write (or VERIFY with BYTCHK): where, how much, and what came so far.
    write: Option<WriteTask>,
    /// Read: how much the initiator expects (Data-In is cut to it).
    expected: u32,
    /// VERIFY with BYTCHK: the initiator's data, compared with what the read returns.
    compare: Option<Vec<u8>>,
    /// The SCSI Response's residual flags and count.
    residual: (u8, u32),
    /// GET LBA STATUS: from where.
    extent_at: Option<u64>,
}

struct WriteTask {
    offset: u64,
    /// Bytes to take: the CDB's length, or less if the initiator expects to send less.
    len: u64,
    data: Vec<u8>,
    ttt: u32,
    r2t_sn: u32,
    r2t_end: u64,
    /// The DataSN the next Data-Out of the current R2T's sequence carries (from 0).
    data_sn: u32,
    fua: bool,
    /// What the data is for.
    then: Then,
}

/// What a command that takes data does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Write,
    /// VERIFY with BYTCHK: compare with the unit.
    Compare,
    /// WRITE SAME: one block, written over `len` bytes (or unmapped).
    Same {
        len: u64,
        unmap: bool,
    },
    /// UNMAP: a parameter list.
    Unmap,
}

impl Task {
    fn new(lun: u64, expected: u32) -> Task {
        Task {
            lun,
            write: None,
            expected,
            compare: None,
            residual: (0, 0),
            extent_at: None,
        }
    }
}

/// Login status classes and details (RFC 7143 11.13.5).
mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const INITIATOR_ERROR: u16 = 0x0200;
    pub const AUTH_FAILURE: u16 = 0x0201;
    pub const AUTHORIZATION_FAILURE: u16 = 0x0202;
    pub const NOT_FOUND: u16 = 0x0203;
    pub const UNSUPPORTED_VERSION: u16 = 0x0205;
    pub const MISSING_PARAMETER: u16 = 0x0207;
}

/// Reject reasons (RFC 7143 11.17.1).
mod reject {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
}

/// One connection.
pub struct Connection {
    cfg: Arc<Config>,
    state: State,
    initiator: Option<String>,
    target: Option<usize>,
    discovery: bool,
    /// The current login stage (0 security, 1 operational).
    csg: u8,
    auth: Auth,
    isid: [u8; 6],
    tsih: u16,
    params: Params,
    first_response: bool,
    stat_sn: u32,
    exp_cmd_sn: u32,
    tasks: HashMap<u32, Task>,
    /// I/O id -> the task (ITT) it serves.
    ios: HashMap<u64, u32>,
    next_io: u64,
    next_ttt: u32,
    /// Seeds CHAP challenges (from the driver: the core has no randomness of its own).
    seed: [u8; 16],
    challenges: u32,
    out: VecDeque<Vec<u8>>,
    io_out: VecDeque<IoRequest>,
    events: VecDeque<Event>,
}

/// Serial number arithmetic (RFC 1982) on 32-bit sequence numbers: `a` is within `n` after
/// `b`.
fn within(a: u32, b: u32, n: u32) -> bool {
    a.wrapping_sub(b) < n
}

impl Connection {
    /// A new connection; `tsih` is the session handle it gets if it logs in, `seed` random
    /// bytes for its CHAP challenges.
    pub fn new(cfg: Arc<Config>, tsih: u16, seed: [u8; 16]) -> Connection {
        Connection {
            cfg,
            state: State::Login,
            initiator: None,
            target: None,
            discovery: false,
            csg: 0,
            auth: Auth::Start,
            isid: [0; 6],
            tsih: tsih.max(1),
            params: Params::default(),
            first_response: true,
            stat_sn: 1,
            exp_cmd_sn: 0,
            tasks: HashMap::new(),
            ios: HashMap::new(),
            next_io: 1,
            next_ttt: 1,
            seed,
            challenges: 0,
            out: VecDeque::new(),
            io_out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The most data the next PDU may carry.
    pub fn data_limit(&self) -> usize {
        match self.state {
            State::FullFeature => self.cfg.limits.max_recv_data_segment_length as usize,
            _ => LOGIN_DATA_LIMIT,
        }
    }

    /// True once the login is done (a normal or a discovery session).
    pub fn logged_in(&self) -> bool {
        self.state == State::FullFeature
    }

    /// The initiator's name, once it said it.
    pub fn initiator(&self) -> Option<&str> {
        self.initiator.as_deref()
    }

    /// The session's ISID and the target it is logged in to (full feature phase only).
    pub fn session(&self) -> Option<([u8; 6], usize)> {
        match self.state {
            State::FullFeature => self.target.map(|t| (self.isid, t)),
            _ => None,
        }
    }

    /// The digests the PDUs carry now (header, data): what was negotiated, from the full
    /// feature phase on (RFC 7143 13.1). The driver reads PDUs of
    /// [`Bhs::total_len`]`(header, data)` bytes and hands them to [`Connection::handle_wire`].
    pub fn digests(&self) -> (bool, bool) {
        if self.state == State::FullFeature {
            (self.params.header_digest, self.params.data_digest)
        } else {
            (false, false)
        }
    }

    /// One whole PDU as it came off the wire (header, additional headers, header digest, data,
    /// padding, data digest, as [`Connection::digests`] says): the digests are checked (CRC32C,
    /// RFC 7143 12.1; sent least significant byte first), then the PDU is handled. A wrong
    /// header digest closes the connection (its lengths cannot be trusted); a wrong data digest
    /// rejects the PDU (reason 0x02) and fails its command.
    pub fn handle_wire(&mut self, pdu: &[u8]) {
        let Ok(h) = Bhs::new_checked(pdu) else {
            return self.fail("short header");
        };
        let (hd, dd) = self.digests();
        if pdu.len() != h.total_len(hd, dd) {
            return self.fail("PDU length differs from its header's");
        }
        let mut at = BHS_LEN + 4 * h.total_ahs_len();
        if hd {
            let want = crc32c::crc32c(&pdu[..at]).to_le_bytes();
            if pdu[at..at + 4] != want {
                return self.fail("header digest error");
            }
            at += 4;
        }
        let n = h.data_len();
        let padded = pad4(n);
        if dd && n > 0 {
            let want = crc32c::crc32c(&pdu[at..at + padded]).to_le_bytes();
            if pdu[at + padded..at + padded + 4] != want {
                let what = "data digest error";
                return self.fail_data_pdu(&pdu[..BHS_LEN], reject::DATA_DIGEST_ERROR, what);
            }
        }
        self.handle_pdu(&pdu[..BHS_LEN], &pdu[at..at + n]);
    }

    /// True once the connection is to be closed (after writing what is queued).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The next PDU to write.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next backing-store operation to perform.
    pub fn poll_io(&mut self) -> Option<IoRequest> {
        self.io_out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A PDU whose header declares more data than [`Connection::data_limit`]: rejected, and the
    /// connection closes (its data is not read, so the stream cannot be followed further).
    pub fn handle_oversize(&mut self, bhs: &[u8]) {
        if self.state == State::FullFeature {
            self.reject(bhs, reject::PROTOCOL_ERROR);
        }
        self.fail("data segment longer than MaxRecvDataSegmentLength");
    }

    /// One PDU: its 48-byte header and its data (without padding or digests).
    pub fn handle_pdu(&mut self, bhs: &[u8], data: &[u8]) {
        let Ok(h) = Bhs::new_checked(bhs) else {
            return self.fail("short header");
        };
        if self.state == State::Closed {
            return;
        }
        if data.len() != h.data_len() {
            return self.fail("data length differs from the header's");
        }
        match (self.state, h.opcode()) {
            (State::Login, Opcode::LoginRequest) => self.on_login(&h, data),
            (State::Login, _) => {
                // RFC 7143 6.1: only Login Requests before the full feature phase.
                self.fail("a PDU other than Login during login")
            }
            (State::FullFeature, Opcode::ScsiCommand) if !self.discovery => {
                if self.accept_cmd_sn(&h) {
                    self.on_command(&h, data);
                }
            }
            (State::FullFeature, Opcode::DataOut) if !self.discovery => self.on_data_out(&h, data),
            (State::FullFeature, Opcode::NopOut) => {
                if self.accept_cmd_sn(&h) {
                    self.on_nop(&h, data);
                }
            }
            (State::FullFeature, Opcode::TextRequest) => {
                if self.accept_cmd_sn(&h) {
                    self.on_text(&h, data);
                }
            }
            (State::FullFeature, Opcode::LogoutRequest) => {
                if self.accept_cmd_sn(&h) {
                    self.on_logout(&h);
                }
            }
            (State::FullFeature, Opcode::TaskManagementRequest) if !self.discovery => {
                if self.accept_cmd_sn(&h) {
                    self.on_task_management(&h);
                }
            }
            (State::FullFeature, Opcode::LoginRequest) => {
                self.reject(bhs, reject::PROTOCOL_ERROR);
                self.fail("Login Request in the full feature phase");
            }
            (State::FullFeature, _) => self.reject(bhs, reject::COMMAND_NOT_SUPPORTED),
            (State::Closed, _) => {}
        }
    }

    /// An [`IoRequest`] ended.
    pub fn complete_io(&mut self, id: u64, result: IoResult) {
        let Some(itt) = self.ios.remove(&id) else {
            return;
        };
        // A task aborted meanwhile is gone: its I/O ends unanswered.
        let Some(task) = self.tasks.remove(&itt) else {
            return;
        };
        match result {
            IoResult::Read(data) => match task.compare {
                // SBC-3 5.31: MISCOMPARE DURING VERIFY OPERATION if any byte differs.
                Some(theirs) if theirs != data => {
                    let sense = Sense::MISCOMPARE;
                    self.send_status(itt, scsi::status::CHECK_CONDITION, Some(sense), 0, 0);
                }
                Some(_) => self.send_status(itt, scsi::status::GOOD, None, 0, 0),
                None => self.send_data_in(itt, task.lun, &data, task.expected),
            },
            IoResult::Done => {
                let (flags, count) = task.residual;
                self.send_status(itt, scsi::status::GOOD, None, flags, count)
            }
            IoResult::Extent { len, mapped } => {
                let disk = self.disk(task.lun).cloned();
                match (task.extent_at, disk) {
                    (Some(offset), Some(disk)) => {
                        let d = scsi::lba_status(&disk, offset, len, mapped);
                        let d = &d[..d.len().min(task.expected as usize)];
                        self.send_data_in(itt, task.lun, d, task.expected);
                    }
                    _ => {
                        let sense = Sense::READ_ERROR;
                        self.send_status(itt, scsi::status::CHECK_CONDITION, Some(sense), 0, 0);
                    }
                }
            }
            IoResult::Failed => {
                let sense = if task.write.is_some() {
                    Sense::WRITE_ERROR
                } else {
                    Sense::READ_ERROR
                };
                self.send_status(itt, scsi::status::CHECK_CONDITION, Some(sense), 0, 0);
            }
        }
    }

    fn fail(&mut self, why: &'static str) {
        if self.state != State::Closed {
            self.events.push_back(Event::ProtocolError(why));
        }
        self.state = State::Closed;
    }

    /// RFC 7143 3.2.2.1: a non-immediate command takes the next CmdSN; one outside the window
    /// is ignored.
    fn accept_cmd_sn(&mut self, h: &Bhs<&[u8]>) -> bool {
        let sn = h.cmd_sn();
        if h.immediate() {
            return true;
        }
        if !within(sn, self.exp_cmd_sn, QUEUE_DEPTH) {
            return false;
        }
        if sn == self.exp_cmd_sn {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        }
        true
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(QUEUE_DEPTH - 1)
    }

    fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    /// Queues a PDU: `fill` sets the header (opcode first), `data` follows, padded.
    /// Queues a PDU: `fill` sets the header (opcode first), `data` follows, padded, with the
    /// digests the connection carries now.
    fn push(&mut self, fill: impl FnOnce(&mut Bhs<&mut [u8]>), data: &[u8]) {
        let (hd, dd) = self.digests();
        let padded = pad4(data.len());
        let mut pdu = Vec::with_capacity(BHS_LEN + 8 + padded);
        pdu.resize(BHS_LEN, 0);
        {
            let mut h = Bhs::new_checked(&mut pdu[..]).expect("48 bytes");
            fill(&mut h);
            h.set_data_len(data.len());
        }
        if hd {
            let c = crc32c::crc32c(&pdu[..BHS_LEN]);
            pdu.extend_from_slice(&c.to_le_bytes());
        }
        let at = pdu.len();
        pdu.extend_from_slice(data);
        pdu.resize(at + padded, 0);
        if dd && !data.is_empty() {
            let c = crc32c::crc32c(&pdu[at..]);
            pdu.extend_from_slice(&c.to_le_bytes());
        }
        self.out.push_back(pdu);
    }

    /// Queues a response that carries status: it takes the next StatSN and tells ExpCmdSN and
    /// MaxCmdSN; `fill` sets the opcode's own fields.
    fn respond(
        &mut self,
        op: Opcode,
        flags: u8,
        itt: u32,
        fill: impl FnOnce(&mut Bhs<&mut [u8]>),
        data: &[u8],
    ) {
        let stat = self.next_stat_sn();
        let (exp, max) = (self.exp_cmd_sn, self.max_cmd_sn());
        self.push(
            |h| {
                h.clear(op, false);
                h.set_flags(flags);
                h.set_itt(itt);
                fill(h);
                h.set_word24(stat);
                h.set_word28(exp);
                h.set_word32(max);
            },
            data,
        );
    }

    /// A data-carrying PDU that cannot be taken (a digest error, a Data-Out out of order): it
    /// is rejected for `reason`, and the command it belongs to, if one is running, fails with
    /// CHECK CONDITION; the connection goes on.
    fn fail_data_pdu(&mut self, bhs: &[u8], reason: u8, what: &'static str) {
        let itt = Bhs::new_checked(bhs).map_or(RESERVED_TAG, |h| h.itt());
        self.reject(bhs, reason);
        self.events.push_back(Event::ProtocolError(what));
        if self.tasks.remove(&itt).is_some() {
            let sense = Sense::DATA_PHASE_ERROR;
            self.send_status(itt, scsi::status::CHECK_CONDITION, Some(sense), 0, 0);
        }
    }

    fn reject(&mut self, bhs: &[u8], reason: u8) {
        let header: Vec<u8> = bhs.iter().take(48).copied().collect();
        self.respond(
            Opcode::Reject,
            0x80,
            RESERVED_TAG,
            |h| h.set_byte2(reason),
            &header,
        );
    }

    // ---- login ----

    fn login_response(&mut self, itt: u32, transit: bool, nsg: u8, status: u16, keys: &[u8]) {
        let (csg, isid, tsih) = (self.csg, self.isid, self.tsih);
        let tsih = if status == status::SUCCESS { tsih } else { 0 };
        let mut flags = csg << 2;
        if transit {
            flags |= 0x80 | (nsg & 3);
        }
        self.respond(
            Opcode::LoginResponse,
            flags,
            itt,
            |h| {
                h.set_isid_tsih(isid, tsih);
                h.set_word36(u32::from(status) << 16);
            },
            keys,
        );
    }

    fn login_fail(&mut self, itt: u32, code: u16, reason: &'static str) {
        self.login_response(itt, false, 0, code, &[]);
        self.events.push_back(Event::LoginFailed {
            initiator: self.initiator.clone(),
            reason,
        });
        self.state = State::Closed;
    }

    fn on_login(&mut self, h: &Bhs<&[u8]>, data: &[u8]) {
        let itt = h.itt();
        let flags = h.flags();
        let transit = flags & 0x80 != 0;
        let cont = flags & 0x40 != 0;
        let csg = (flags >> 2) & 3;
        let nsg = flags & 3;
        if self.first_response {
            self.isid = h.isid();
            self.exp_cmd_sn = h.cmd_sn();
            // RFC 7143 11.12.4: Version-min above what we speak (0).
            if h.byte3() > 0 {
                return self.login_fail(itt, status::UNSUPPORTED_VERSION, "unsupported version");
            }
            // Adding a connection to an existing session: MaxConnections is 1 here.
            if h.tsih() != 0 {
                return self.login_fail(itt, status::INITIATOR_ERROR, "TSIH of another session");
            }
        } else if h.isid() != self.isid {
            return self.login_fail(itt, status::INITIATOR_ERROR, "ISID changed during login");
        }
        if cont {
            // Text spread over several Login PDUs: the 8 KiB one PDU holds is plenty here.
            return self.login_fail(itt, status::INITIATOR_ERROR, "continued login text");
        }
        if transit && (nsg == 2 || nsg <= csg) || csg == 2 || csg == 3 {
            return self.login_fail(itt, status::INITIATOR_ERROR, "bad stage transition");
        }
        let mut pairs = Vec::new();
        for p in text_pairs(data) {
            match p {
                Ok(kv) => pairs.push(kv),
                Err(_) => {
                    return self.login_fail(itt, status::INITIATOR_ERROR, "malformed login text");
                }
            }
        }
        let value = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let mut keys = Vec::new();
        if self.first_response {
            let Some(name) = value("InitiatorName") else {
                return self.login_fail(itt, status::MISSING_PARAMETER, "no InitiatorName");
            };
            self.initiator = Some(name.to_string());
            match value("SessionType").unwrap_or("Normal") {
                "Discovery" => self.discovery = true,
                "Normal" => {
                    let Some(t) = value("TargetName") else {
                        return self.login_fail(itt, status::MISSING_PARAMETER, "no TargetName");
                    };
                    let Some(i) = self.cfg.targets.iter().position(|x| x.name == t) else {
                        return self.login_fail(itt, status::NOT_FOUND, "no such target");
                    };
                    let allowed = &self.cfg.targets[i].initiators;
                    if !allowed.is_empty() && !allowed.iter().any(|a| a == name) {
                        return self.login_fail(
                            itt,
                            status::AUTHORIZATION_FAILURE,
                            "initiator not allowed",
                        );
                    }
                    self.target = Some(i);
                }
                _ => return self.login_fail(itt, status::INITIATOR_ERROR, "bad SessionType"),
            }
            if !self.discovery {
                // RFC 7143 13.9: the target returns its portal group tag in the first Login
                // Response of a normal session.
                push_text(&mut keys, "TargetPortalGroupTag", "1");
            }
            if csg == 1 {
                // Straight to operational negotiation: only if nothing must be proven.
                if self.chap().is_some() {
                    return self.login_fail(itt, status::AUTH_FAILURE, "authentication required");
                }
                self.auth = Auth::Done;
                self.csg = 1;
            }
        }
        if csg != self.csg {
            return self.login_fail(itt, status::INITIATOR_ERROR, "wrong login stage");
        }
        if csg == 0
            && let Err((code, why)) = self.security(&pairs, &mut keys)
        {
            return self.login_fail(itt, code, why);
        }
        for (k, v) in &pairs {
            if k.starts_with("CHAP_") || *k == "AuthMethod" {
                continue;
            }
            match login::answer(k, v, &mut self.params, &self.cfg.limits) {
                Answer::Reply(kv) => {
                    keys.extend_from_slice(kv.as_bytes());
                    keys.push(0);
                }
                Answer::Silent => {}
                Answer::Reject(why) => return self.login_fail(itt, status::INITIATOR_ERROR, why),
            }
            // The target declares what it receives when the initiator declared its own.
            if *k == "MaxRecvDataSegmentLength" {
                let ours = self.cfg.limits.max_recv_data_segment_length.to_string();
                push_text(&mut keys, "MaxRecvDataSegmentLength", &ours);
            }
        }
        let can_leave = self.auth == Auth::Done || csg == 1;
        let go = transit && can_leave;
        self.first_response = false;
        self.login_response(itt, go, nsg, status::SUCCESS, &keys);
        if go {
            self.csg = nsg;
            if nsg == 3 {
                self.state = State::FullFeature;
                self.events.push_back(Event::LoggedIn {
                    initiator: self.initiator.clone().unwrap_or_default(),
                    target: self.target.map(|t| self.cfg.targets[t].name.clone()),
                    isid: self.isid,
                });
            }
        }
    }

    fn chap(&self) -> Option<&Chap> {
        if self.discovery {
            self.cfg.discovery_chap.as_ref()
        } else {
            self.target.and_then(|t| self.cfg.targets[t].chap.as_ref())
        }
    }

    fn challenge(&mut self) -> (u8, [u8; 16]) {
        use md5::{Digest, Md5};
        self.challenges += 1;
        let mut h = Md5::new();
        h.update(self.seed);
        h.update(self.challenges.to_be_bytes());
        let c: [u8; 16] = h.finalize().into();
        (c[0] ^ c[15], c)
    }

    /// The security stage's keys (RFC 7143 6.3, 12.1.3).
    fn security(
        &mut self,
        pairs: &[(&str, &str)],
        keys: &mut Vec<u8>,
    ) -> Result<(), (u16, &'static str)> {
        let value = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let need_chap = self.chap().is_some();
        if let Some(methods) = value("AuthMethod") {
            let offered: Vec<&str> = methods.split(',').collect();
            let pick = if need_chap {
                offered.contains(&"CHAP").then_some("CHAP")
            } else if offered.contains(&"None") {
                Some("None")
            } else {
                None
            };
            match pick {
                Some("CHAP") => self.auth = Auth::ChapAlgorithm,
                Some(_) => self.auth = Auth::Done,
                None => return Err((status::AUTH_FAILURE, "no acceptable AuthMethod")),
            }
            push_text(keys, "AuthMethod", pick.unwrap_or("Reject"));
        }
        if let Some(algs) = value("CHAP_A") {
            if self.auth != Auth::ChapAlgorithm {
                return Err((status::INITIATOR_ERROR, "CHAP_A out of order"));
            }
            // MD5 (5) is the one RFC 7143 requires.
            if !algs.split(',').any(|a| a == "5") {
                return Err((status::AUTH_FAILURE, "no CHAP algorithm in common"));
            }
            let (id, challenge) = self.challenge();
            push_text(keys, "CHAP_A", "5");
            push_text(keys, "CHAP_I", &id.to_string());
            push_text(keys, "CHAP_C", &login::to_hex(&challenge));
            self.auth = Auth::ChapResponse { id, challenge };
        }
        if let (Some(user), Some(resp)) = (value("CHAP_N"), value("CHAP_R")) {
            let Auth::ChapResponse { id, challenge } = self.auth else {
                return Err((status::INITIATOR_ERROR, "CHAP_R out of order"));
            };
            let Some(chap) = self.chap().cloned() else {
                return Err((status::INITIATOR_ERROR, "CHAP not chosen"));
            };
            let got = login::from_hex(resp).ok_or((status::AUTH_FAILURE, "bad CHAP_R"))?;
            let want = login::chap_response(id, &chap.secret, &challenge);
            if user != chap.user || got != want {
                return Err((status::AUTH_FAILURE, "CHAP response does not match"));
            }
            // Mutual CHAP: the initiator challenges the target in the same PDU.
            if let (Some(i), Some(c)) = (value("CHAP_I"), value("CHAP_C")) {
                let Some((tuser, tsecret)) = chap.mutual.as_ref() else {
                    return Err((status::AUTH_FAILURE, "mutual CHAP not configured"));
                };
                let id: u8 = i
                    .parse()
                    .map_err(|_| (status::AUTH_FAILURE, "bad CHAP_I"))?;
                let c = login::from_hex(c).ok_or((status::AUTH_FAILURE, "bad CHAP_C"))?;
                // RFC 7143 12.1.3: a challenge equal to ours is a reflection attack.
                if c == challenge {
                    return Err((status::AUTH_FAILURE, "reflected CHAP challenge"));
                }
                push_text(keys, "CHAP_N", tuser);
                push_text(
                    keys,
                    "CHAP_R",
                    &login::to_hex(&login::chap_response(id, tsecret, &c)),
                );
            } else if chap.mutual.is_some() {
                // Configured mutual: the initiator must ask for it.
                return Err((status::AUTH_FAILURE, "mutual CHAP required"));
            }
            self.auth = Auth::Done;
        }
        Ok(())
    }

    // ---- full feature phase ----

    fn disk(&self, lun: u64) -> Option<&Disk> {
        let t = &self.cfg.targets[self.target?];
        t.luns.iter().find(|(n, _)| *n == lun).map(|(_, d)| d)
    }

    fn luns(&self) -> Vec<u64> {
        self.target
            .map(|t| self.cfg.targets[t].luns.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default()
    }

    fn io(&mut self, itt: u32, lun: u64, kind: IoKind) {
        let id = self.next_io;
        self.next_io += 1;
        self.ios.insert(id, itt);
        self.io_out.push_back(IoRequest {
            id,
            target: self.target.unwrap_or(0),
            lun,
            kind,
        });
    }

    fn on_command(&mut self, h: &Bhs<&[u8]>, data: &[u8]) {
        let itt = h.itt();
        let lun = scsi::decode_lun(h.lun());
        let expected = h.expected_data_len();
        if self.tasks.contains_key(&itt) {
            // RFC 7143 11.17.1: a tag already in use.
            return self.reject(h.as_bytes(), 0x07);
        }
        let luns = self.luns();
        let action = scsi::decode(h.cdb(), self.disk(lun), &luns);
        match action {
            Action::Data(d) => self.send_data_in(itt, lun, &d, expected),
            Action::Good => self.send_status(itt, scsi::status::GOOD, None, 0, 0),
            Action::Fail(sense) => {
                self.send_status(itt, scsi::status::CHECK_CONDITION, Some(sense), 0, 0)
            }
            Action::Flush => {
                self.tasks.insert(itt, Task::new(lun, 0));
                self.io(itt, lun, IoKind::Flush);
            }
            Action::Read { offset, len } => {
                self.tasks.insert(itt, Task::new(lun, expected));
                self.io(itt, lun, IoKind::Read { offset, len });
            }
            Action::Write { offset, len, fua } => {
                self.start_write(h, data, offset, len, fua, Then::Write);
            }
            Action::Compare { offset, len } => {
                self.start_write(h, data, offset, len, false, Then::Compare);
            }
            Action::WriteSame { offset, len, unmap } => {
                let block = self.disk(lun).map_or(512, |d| u64::from(d.block_size));
                self.start_write(h, data, offset, block, false, Then::Same { len, unmap });
            }
            Action::Unmap { len } => self.start_write(h, data, 0, len, false, Then::Unmap),
            Action::LbaStatus { offset, alloc } => {
                let mut task = Task::new(lun, alloc.min(expected));
                task.extent_at = Some(offset);
                self.tasks.insert(itt, task);
                self.io(itt, lun, IoKind::Extent { offset });
            }
        }
    }

    /// A command that takes data (WRITE, VERIFY with BYTCHK): immediate data first, then R2Ts.
    fn start_write(
        &mut self,
        h: &Bhs<&[u8]>,
        data: &[u8],
        offset: u64,
        len: u64,
        fua: bool,
        then: Then,
    ) {
        let (itt, lun) = (h.itt(), scsi::decode_lun(h.lun()));
        let expected = if h.flags() & 0x20 != 0 {
            u64::from(h.expected_data_len())
        } else {
            0
        };
        // RFC 7143 11.4.5.2: the target takes what both the CDB and the initiator mean to
        // move, and reports the difference as a residual (underflow if the initiator expected
        // to send more, overflow if the CDB asked for more than it will send).
        let take = len.min(expected);
        let residual = if expected > len {
            (0x02, (expected - len) as u32)
        } else if expected < len {
            (0x04, (len - expected) as u32)
        } else {
            (0, 0)
        };
        if data.len() as u64 > expected.min(u64::from(self.params.first_burst_length)) {
            self.reject(h.as_bytes(), reject::PROTOCOL_ERROR);
            return self.fail("immediate data past FirstBurstLength or the expected length");
        }
        if take == 0 {
            return self.send_status(itt, scsi::status::GOOD, None, residual.0, residual.1);
        }
        // Immediate data past what the CDB takes (the initiator expected to send more) is
        // not the command's: it is dropped.
        let data = &data[..data.len().min(take as usize)];
        let mut buf = Vec::with_capacity(take as usize);
        buf.extend_from_slice(data);
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
        let mut task = Task::new(lun, 0);
        task.residual = residual;
        task.write = Some(WriteTask {
            offset,
            len: take,
            data: buf,
            ttt,
            r2t_sn: 0,
            r2t_end: data.len() as u64,
            data_sn: 0,
            fua,
            then,
        });
        self.tasks.insert(itt, task);
        self.advance_write(itt);
    }

    /// A write task with data so far: the next R2T, or its I/O once all is there.
    fn advance_write(&mut self, itt: u32) {
        let max_burst = u64::from(self.params.max_burst_length);
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        let lun = task.lun;
        let Some(w) = task.write.as_mut() else {
            return;
        };
        let got = w.data.len() as u64;
        if got == w.len {
            let data = std::mem::take(&mut w.data);
            let (offset, len, fua, then) = (w.offset, w.len, w.fua, w.then);
            let kind = match then {
                Then::Compare => {
                    task.compare = Some(data);
                    IoKind::Read { offset, len }
                }
                Then::Write => IoKind::Write { offset, data, fua },
                Then::Same { len, unmap } => {
                    let zeroes = self
                        .disk(lun)
                        .is_some_and(|d| d.unmap == scsi::Unmap::Zeroes);
                    // SBC-3 5.42: with UNMAP the range may be unmapped if it then reads as
                    // the block given (zeros on a unit whose holes read as zeros; an overlay
                    // writes, since its unmapped chunks read as the golden image).
                    if unmap && zeroes && data.iter().all(|&b| b == 0) {
                        IoKind::Unmap {
                            ranges: vec![(offset, len)],
                        }
                    } else {
                        let n = (len / data.len().max(1) as u64) as usize;
                        IoKind::Write {
                            offset,
                            data: data.repeat(n),
                            fua: false,
                        }
                    }
                }
                Then::Unmap => {
                    let Some(disk) = self.disk(lun) else {
                        return;
                    };
                    match scsi::unmap_ranges(&data, disk) {
                        Ok(r) if r.is_empty() => {
                            self.tasks.remove(&itt);
                            return self.send_status(itt, scsi::status::GOOD, None, 0, 0);
                        }
                        Ok(ranges) => IoKind::Unmap { ranges },
                        Err(sense) => {
                            self.tasks.remove(&itt);
                            let status = scsi::status::CHECK_CONDITION;
                            return self.send_status(itt, status, Some(sense), 0, 0);
                        }
                    }
                }
            };
            return self.io(itt, lun, kind);
        }
        if got < w.r2t_end {
            return; // The current R2T's data is still coming.
        }
        let want = (w.len - got).min(max_burst);
        w.r2t_end = got + want;
        w.data_sn = 0;
        let (ttt, sn) = (w.ttt, w.r2t_sn);
        w.r2t_sn += 1;
        let (stat, exp, max) = (self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn());
        self.push(
            |h| {
                h.clear(Opcode::ReadyToTransfer, false);
                h.set_flags(0x80);
                h.set_lun(scsi::encode_lun(lun));
                h.set_itt(itt);
                h.set_word20(ttt);
                h.set_word24(stat);
                h.set_word28(exp);
                h.set_word32(max);
                h.set_word36(sn);
                h.set_word40(got as u32);
                h.set_word44(want as u32);
            },
            &[],
        );
    }

    fn on_data_out(&mut self, h: &Bhs<&[u8]>, data: &[u8]) {
        let itt = h.itt();
        let Some(w) = self.tasks.get_mut(&itt).and_then(|t| t.write.as_mut()) else {
            // Data for a task that is gone (aborted): dropped, as RFC 7143 11.7 allows.
            return;
        };
        let got = w.data.len() as u64;
        // RFC 7143 11.7.5: DataSN counts the Data-Out PDUs of a sequence from 0, and the data
        // comes in order at the offsets the R2T asked for. At ERL 0 a Data-Out that breaks
        // this is rejected and its command fails (the connection stays: the initiator's other
        // commands go on, and its late Data-Out for the failed one is dropped).
        let why = if h.ttt() != w.ttt || u64::from(h.buffer_offset()) != got {
            Some((
                reject::INVALID_PDU_FIELD,
                "Data-Out out of order or for another transfer",
            ))
        } else if got + data.len() as u64 > w.r2t_end {
            Some((reject::PROTOCOL_ERROR, "Data-Out past the R2T's length"))
        } else if h.data_sn() != w.data_sn {
            Some((reject::PROTOCOL_ERROR, "Data-Out with the wrong DataSN"))
        } else {
            None
        };
        if let Some((reason, what)) = why {
            return self.fail_data_pdu(h.as_bytes(), reason, what);
        }
        w.data_sn += 1;
        w.data.extend_from_slice(data);
        self.advance_write(itt);
    }

    /// Data-In PDUs for `data`, cut to what the initiator expects, the last carrying GOOD status
    /// and the residual.
    fn send_data_in(&mut self, itt: u32, lun: u64, data: &[u8], expected: u32) {
        let n = data.len().min(expected as usize);
        let (over, under) = (data.len() > n, (expected as usize) > data.len());
        let residual = if over {
            (data.len() - n) as u32
        } else {
            (expected as usize - n) as u32
        };
        if n == 0 {
            return self.send_status(
                itt,
                scsi::status::GOOD,
                None,
                (u8::from(over) * 0x04) | (u8::from(under) * 0x02),
                residual,
            );
        }
        let chunk = self.params.max_xmit_data_segment_length.max(512) as usize;
        let burst = self.params.max_burst_length.max(512) as usize;
        let mut off = 0;
        let mut data_sn = 0u32;
        while off < n {
            // A Data-In PDU never crosses a MaxBurstLength boundary: each sequence ends with F.
            let burst_end = (off / burst + 1) * burst;
            let len = chunk.min(n - off).min(burst_end - off);
            let last = off + len == n;
            let seq_end = last || off + len == burst_end;
            let (exp, max) = (self.exp_cmd_sn, self.max_cmd_sn());
            let stat = if last { self.next_stat_sn() } else { 0 };
            let mut flags = if seq_end { 0x80 } else { 0 };
            if last {
                flags |= 0x01; // S: status follows in this PDU
                if over {
                    flags |= 0x04;
                } else if under {
                    flags |= 0x02;
                }
            }
            let piece = &data[off..off + len];
            self.push(
                |h| {
                    h.clear(Opcode::DataIn, false);
                    h.set_flags(flags);
                    h.set_lun(scsi::encode_lun(lun));
                    h.set_itt(itt);
                    h.set_word20(RESERVED_TAG);
                    h.set_word24(stat);
                    h.set_word28(exp);
                    h.set_word32(max);
                    h.set_word36(data_sn);
                    h.set_word40(off as u32);
                    if last {
                        h.set_word44(if over || under { residual } else { 0 });
                    }
                },
                piece,
            );
            data_sn += 1;
            off += len;
        }
    }

    /// A SCSI Response: status, sense data if any, residual flags (0x04 overflow, 0x02
    /// underflow) and count.
    fn send_status(
        &mut self,
        itt: u32,
        status: u8,
        sense: Option<Sense>,
        residual_flags: u8,
        residual: u32,
    ) {
        let mut data = Vec::new();
        if let Some(s) = sense {
            let fixed = s.fixed();
            data.extend_from_slice(&(fixed.len() as u16).to_be_bytes());
            data.extend_from_slice(&fixed);
        }
        self.respond(
            Opcode::ScsiResponse,
            0x80 | residual_flags,
            itt,
            |h| {
                h.set_byte2(0x00); // command completed at target
                h.set_byte3(status);
                h.set_word44(residual);
            },
            &data,
        );
    }

    fn on_nop(&mut self, h: &Bhs<&[u8]>, data: &[u8]) {
        // An answer to a NOP-In of ours (ITT reserved) needs none.
        if h.itt() == RESERVED_TAG {
            return;
        }
        let lun = h.lun();
        self.respond(
            Opcode::NopIn,
            0x80,
            h.itt(),
            |o| {
                o.set_lun(lun);
                o.set_word20(RESERVED_TAG);
            },
            data,
        );
    }

    fn on_text(&mut self, h: &Bhs<&[u8]>, data: &[u8]) {
        let mut keys = Vec::new();
        for p in text_pairs(data) {
            let Ok((k, v)) = p else {
                self.reject(h.as_bytes(), reject::PROTOCOL_ERROR);
                return;
            };
            if k == "SendTargets" {
                // RFC 7143 Appendix C: All in a discovery session; in a normal session only
                // the session's own target (or the one named).
                for (i, t) in self.cfg.targets.iter().enumerate() {
                    let wanted = match v {
                        "All" => self.discovery || self.target == Some(i),
                        "" => self.target == Some(i),
                        name => name == t.name,
                    };
                    let allowed = t.initiators.is_empty()
                        || self
                            .initiator
                            .as_deref()
                            .is_some_and(|n| t.initiators.iter().any(|a| a == n));
                    if wanted && allowed {
                        push_text(&mut keys, "TargetName", &t.name);
                        push_text(
                            &mut keys,
                            "TargetAddress",
                            &format!("{},1", self.cfg.portal),
                        );
                    }
                }
            } else {
                push_text(&mut keys, k, "NotUnderstood");
            }
        }
        let lun = h.lun();
        self.respond(
            Opcode::TextResponse,
            0x80,
            h.itt(),
            |o| {
                o.set_lun(lun);
                o.set_word20(RESERVED_TAG);
            },
            &keys,
        );
    }

    fn on_logout(&mut self, h: &Bhs<&[u8]>) {
        // Response 0: connection or session closed successfully.
        self.respond(
            Opcode::LogoutResponse,
            0x80,
            h.itt(),
            |o| o.set_byte2(0),
            &[],
        );
        self.tasks.clear();
        self.events.push_back(Event::LoggedOut);
        self.state = State::Closed;
    }

    fn on_task_management(&mut self, h: &Bhs<&[u8]>) {
        let function = h.flags() & 0x7f;
        let lun = scsi::decode_lun(h.lun());
        let response = match function {
            // ABORT TASK: the referenced task, if it is still here.
            1 => {
                if self.tasks.remove(&h.word20()).is_some() {
                    0
                } else {
                    1 // task does not exist
                }
            }
            // ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET: every task of the LUN.
            2 | 4 | 5 => {
                self.tasks.retain(|_, t| t.lun != lun);
                0
            }
            // TARGET WARM RESET: every task.
            6 => {
                self.tasks.clear();
                0
            }
            _ => 5, // task management function not supported
        };
        self.respond(
            Opcode::TaskManagementResponse,
            0x80,
            h.itt(),
            |o| o.set_byte2(response),
            &[],
        );
    }
}
