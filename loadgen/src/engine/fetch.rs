//! The boot-file phase of a machine: the download its ACK names (TFTP over a socket of its
//! own, TFTP as frames in L2 mode, or HTTP), driven by readiness and the machine's deadline;
//! and after it, for a diskless machine, its iSCSI session (a TCP connection of its own).

use super::*;

/// A download in progress: TFTP over a UDP socket of its own, or HTTP over a TCP connection.
pub(super) enum Fetcher {
    Tftp(Download, UdpSocket4),
    /// TFTP in L2 mode: frames from the machine's leased address and this port.
    TftpL2(Download, SocketAddrV4),
    Http {
        get: http::Get,
        conn: mio::net::TcpStream,
        /// Bytes of the request written so far.
        sent: usize,
    },
    Iscsi {
        sess: crate::iscsi::Session,
        conn: mio::net::TcpStream,
    },
}

impl Fetcher {
    pub(super) fn deadline(&self) -> Option<u64> {
        match self {
            Fetcher::Tftp(d, _) | Fetcher::TftpL2(d, _) => d.deadline(),
            Fetcher::Http { get, .. } => get.deadline(),
            Fetcher::Iscsi { sess, .. } => sess.deadline(),
        }
    }

    /// Done: Ok, or the failure's name.
    pub(super) fn result(&self) -> Option<Result<(), &'static str>> {
        match self {
            Fetcher::Tftp(d, _) | Fetcher::TftpL2(d, _) => {
                d.result().map(|r| r.map(|_| ()).map_err(|f| f.name()))
            }
            Fetcher::Http { get, .. } => get.result().map(|r| r.map(|_| ()).map_err(|f| f.name())),
            Fetcher::Iscsi { sess, .. } => sess.result().map(|r| r.map_err(|f| f.name())),
        }
    }

    pub(super) fn register(&mut self, r: &mio::Registry, t: Token) -> std::io::Result<()> {
        match self {
            Fetcher::Tftp(_, sock) => {
                r.register(&mut SourceFd(&sock.as_raw_fd()), t, Interest::READABLE)
            }
            Fetcher::Http { conn, .. } | Fetcher::Iscsi { conn, .. } => {
                r.register(conn, t, Interest::READABLE | Interest::WRITABLE)
            }
            Fetcher::TftpL2(..) => Ok(()),
        }
    }

    pub(super) fn deregister(&mut self, r: &mio::Registry) {
        let _ = match self {
            Fetcher::Tftp(_, sock) => r.deregister(&mut SourceFd(&sock.as_raw_fd())),
            Fetcher::Http { conn, .. } | Fetcher::Iscsi { conn, .. } => r.deregister(conn),
            Fetcher::TftpL2(..) => Ok(()),
        };
    }
}

/// A client state machine over a TCP connection of its own (HTTP's GET, iSCSI's session): what
/// [`pump`] feeds it.
trait TcpClient {
    fn done(&self) -> bool;
    fn on_data(&mut self, now: u64, data: &[u8]);
    fn on_eof(&mut self);
    fn on_error(&mut self);
}

impl TcpClient for http::Get {
    fn done(&self) -> bool {
        self.result().is_some()
    }
    fn on_data(&mut self, now: u64, data: &[u8]) {
        http::Get::on_data(self, now, data)
    }
    fn on_eof(&mut self) {
        http::Get::on_eof(self)
    }
    fn on_error(&mut self) {
        http::Get::on_error(self)
    }
}

impl TcpClient for crate::iscsi::Session {
    fn done(&self) -> bool {
        self.result().is_some()
    }
    fn on_data(&mut self, now: u64, data: &[u8]) {
        crate::iscsi::Session::on_data(self, now, data)
    }
    fn on_eof(&mut self) {
        crate::iscsi::Session::on_eof(self)
    }
    fn on_error(&mut self) {
        crate::iscsi::Session::on_error(self)
    }
}

/// Feeds `c` what `conn` holds, until it would block, ends, or `c` is done.
fn pump(c: &mut impl TcpClient, conn: &mut mio::net::TcpStream, rbuf: &mut [u8], epoch: &Instant) {
    while !c.done() {
        match conn.read(rbuf) {
            Ok(0) => {
                c.on_eof();
                break;
            }
            Ok(n) => c.on_data(epoch.elapsed().as_micros() as u64, &rbuf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => c.on_error(),
        }
    }
}

impl Worker<'_> {
    /// The DHCP round of machine `k` ended with an ACK: fetch what it names.
    pub(super) fn start_fetch(&mut self, k: usize, now: u64) {
        let stage = self.machines[k].stage;
        let (file, next_server) = match &self.cfg.tftp_only {
            Some(file) => (Some(file.clone()), self.cfg.server),
            None => {
                let Some(lease) = self.machines[k].dhcp.lease().cloned() else {
                    return;
                };
                let phase = [Phase::Dhcp, Phase::IpxeDhcp][stage];
                self.result
                    .record(phase, now.saturating_sub(self.machines[k].mark), now);
                (lease.boot_file, lease.next_server)
            }
        };
        self.machines[k].mark = now;
        let p = &self.profiles[stage];
        if p.fetch == Fetch::None {
            return self.start_iscsi(k, now);
        }
        let Some(file) = file.filter(|f| !f.is_empty()) else {
            return self.fail(k, now, tftp::Failure::NoBootFile.name());
        };
        // The first file is checked against what the run expects; iPXE's script or kernel only
        // has to arrive whole.
        let expect = if stage == 0 {
            self.cfg.expect.clone()
        } else {
            Expect::default()
        };
        let l2 = self.net.link.is_some();
        let fetcher = if p.fetch == Fetch::Http || http::is_url(&file) {
            if l2 {
                Err("http: not in L2 mode (no TCP stack here)")
            } else {
                self.http_fetcher(&file, next_server, expect, stage, now)
            }
        } else if l2 {
            Ok(self.tftp_l2_fetcher(k, &file, next_server, expect, stage, now))
        } else {
            self.tftp_fetcher(&file, next_server, expect, stage, now)
        };
        let mut fetcher = match fetcher {
            Ok(f) => f,
            Err(why) => return self.fail(k, now, why),
        };
        if fetcher.register(self.poll.registry(), Token(k)).is_err() {
            return self.fail(k, now, tftp::Failure::Socket.name());
        }
        let m = &mut self.machines[k];
        m.step = Step::Fetch;
        m.fetch = Some(fetcher);
        self.after_fetch(k);
    }

    pub(super) fn tftp_fetcher(
        &mut self,
        file: &str,
        next_server: Ipv4Addr,
        expect: Expect,
        stage: usize,
        now: u64,
    ) -> Result<Fetcher, &'static str> {
        let sock = UdpSocket4::bind(&SocketOptions {
            bind: SocketAddrV4::new(self.relay, 0),
            interface: None,
            reuse_port: false,
            recv_timeout: Duration::ZERO,
        })
        .ok()
        .filter(|s| s.set_nonblocking(true).is_ok())
        .ok_or(tftp::Failure::Socket.name())?;
        // Optional: without it (kernels before 5.0) datagrams come one by one.
        let _ = bootstorm_net::set_udp_gro(&sock, true);
        let p = &self.profiles[stage];
        let server = SocketAddrV4::new(next_server, self.cfg.tftp_port);
        let mut dl = Download::new(file, server, p, expect);
        let a = dl.start(now, p, &mut self.buf);
        send_one(&sock, &mut self.tx, &self.buf, a);
        Ok(Fetcher::Tftp(dl, sock))
    }

    /// A TFTP download in L2 mode: from the machine's leased address, a port that changes per
    /// boot, so a late datagram of an earlier attempt does not match, and that names this
    /// worker (see [`xdp::tftp_port`]).
    pub(super) fn tftp_l2_fetcher(
        &mut self,
        k: usize,
        file: &str,
        next_server: Ipv4Addr,
        expect: Expect,
        stage: usize,
        now: u64,
    ) -> Fetcher {
        let m = &self.machines[k];
        let addr = m.dhcp.lease().map_or(Ipv4Addr::UNSPECIFIED, |l| l.addr);
        let port = xdp::tftp_port(self.w, self.workers, m.attempts * 2 + stage as u32);
        let local = SocketAddrV4::new(addr, port);
        let mac = m.dhcp.mac();
        let p = &self.profiles[stage];
        let server = SocketAddrV4::new(next_server, self.cfg.tftp_port);
        let mut dl = Download::new(file, server, p, expect);
        let a = dl.start(now, p, &mut self.buf);
        if let Some(link) = &self.net.link {
            link.claim(addr, mac);
            self.net.claimed.insert(addr, k);
            if let Action::Send(to, n) = a {
                self.net.send_udp(mac, local, to, &self.buf[..n]);
            }
        }
        Fetcher::TftpL2(dl, local)
    }

    pub(super) fn http_fetcher(
        &mut self,
        file: &str,
        next_server: Ipv4Addr,
        expect: Expect,
        stage: usize,
        now: u64,
    ) -> Result<Fetcher, &'static str> {
        let target =
            http::target(file, next_server, self.cfg.http_port).map_err(http::Failure::name)?;
        let timeout = self.profiles[stage].http_timeout.as_micros() as u64;
        let get = http::Get::new(target, expect, now, timeout);
        let conn = mio::net::TcpStream::connect(get.addr().into())
            .map_err(|_| http::Failure::Connect.name())?;
        Ok(Fetcher::Http { get, conn, sent: 0 })
    }

    pub(super) fn on_fetch_event(&mut self, k: usize, writable: bool) {
        let Worker {
            machines,
            buf,
            rbuf,
            tx,
            gro,
            epoch,
            ..
        } = self;
        match machines[k].fetch.as_mut() {
            Some(Fetcher::Tftp(dl, sock)) => {
                // With UDP GRO a whole window sent as one GSO burst arrives in one receive.
                while let Ok(Some(r)) = sock.recv_gro(gro) {
                    let now = epoch.elapsed().as_micros() as u64;
                    for d in gro.datagrams(&r) {
                        let a = dl.on_packet(now, r.src, d, buf);
                        send_one(sock, tx, buf, a);
                    }
                    if dl.result().is_some() {
                        break;
                    }
                }
            }
            Some(Fetcher::Http { get, conn, sent }) => {
                if let Ok(Some(_)) | Err(_) = conn.take_error() {
                    get.on_error();
                }
                if writable && *sent < get.request().len() {
                    match conn.write(&get.request()[*sent..]) {
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
                        Err(_) => get.on_error(),
                    }
                }
                pump(get, conn, rbuf, epoch);
            }
            Some(Fetcher::Iscsi { sess, conn }) => {
                if let Ok(Some(_)) | Err(_) = conn.take_error() {
                    sess.on_error();
                }
                pump(sess, conn, rbuf, epoch);
                // What the session has to say (a login, a command, Data-Out), as far as the
                // socket takes it; the rest when it is writable again.
                while !sess.output().is_empty() && sess.result().is_none() {
                    match conn.write(sess.output()) {
                        Ok(n) => sess.sent(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => sess.on_error(),
                    }
                }
            }
            Some(Fetcher::TftpL2(..)) | None => return,
        }
        self.after_fetch(k);
    }

    /// Machine `k` booted its last file: with a diskless phase, it logs in to its disk (the
    /// root path its lease names, as iPXE's `sanboot`), else it is done.
    fn start_iscsi(&mut self, k: usize, now: u64) {
        let Some(phase) = &self.cfg.iscsi else {
            return self.finish(k, now, Outcome::Ok);
        };
        let lease = self.machines[k].dhcp.lease().cloned();
        let from_lease = lease
            .as_ref()
            .and_then(|l| l.root_path.as_deref())
            .and_then(crate::iscsi::parse_root_path);
        let disk = if phase.override_root_path {
            phase.disk.clone()
        } else {
            from_lease.or_else(|| phase.disk.clone())
        };
        let Some(disk) = disk else {
            return self.fail(k, now, crate::iscsi::Failure::NoTarget.name());
        };
        let mac = self.machines[k].dhcp.mac();
        let initiator = lease.and_then(|l| l.initiator_iqn).unwrap_or_else(|| {
            let m: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            format!("iqn.2026-12.io.bootstorm.loadgen:{}", m.join("-"))
        });
        // Each machine writes a pattern of its own: its MAC and a byte of its index.
        let mut pattern = [0u8; 8];
        pattern[..6].copy_from_slice(&mac);
        pattern[6] = 0xa5;
        pattern[7] = self.machines[k].index as u8;
        let sess = crate::iscsi::Session::new(disk, initiator, phase.plan.clone(), pattern, now);
        let conn = match mio::net::TcpStream::connect(sess.portal().into()) {
            Ok(c) => c,
            Err(_) => return self.fail(k, now, crate::iscsi::Failure::Connect.name()),
        };
        let mut f = Fetcher::Iscsi { sess, conn };
        if f.register(self.poll.registry(), Token(k)).is_err() {
            return self.fail(k, now, crate::iscsi::Failure::Connect.name());
        }
        let m = &mut self.machines[k];
        m.step = Step::Fetch;
        m.mark = now;
        m.fetch = Some(f);
        self.schedule(k);
    }

    /// After anything happened to machine `k`'s download: the next round, the end, or its
    /// next deadline.
    pub(super) fn after_fetch(&mut self, k: usize) {
        let now = self.now();
        let m = &self.machines[k];
        let Some(r) = m.fetch.as_ref().and_then(Fetcher::result) else {
            return self.schedule(k);
        };
        if let Some(Fetcher::Iscsi { sess, .. }) = &m.fetch {
            return match r {
                Ok(()) => {
                    let login = sess.login_latency().unwrap_or(0);
                    let total = now.saturating_sub(m.mark);
                    self.result.record(Phase::IscsiLogin, login, m.mark + login);
                    self.result
                        .record(Phase::IscsiIo, total.saturating_sub(login), now);
                    self.end_fetch(k);
                    self.finish(k, now, Outcome::Ok)
                }
                Err(why) => self.fail(k, now, why),
            };
        }
        match r {
            Ok(()) => {
                let http = matches!(m.fetch, Some(Fetcher::Http { .. }));
                let phase = match (m.stage, http) {
                    (0, false) => Phase::Tftp,
                    (0, true) => Phase::Http,
                    (_, false) => Phase::IpxeTftp,
                    (_, true) => Phase::IpxeHttp,
                };
                self.result.record(phase, now.saturating_sub(m.mark), now);
                self.end_fetch(k);
                if self.machines[k].stage == 0 && self.cfg.chainload {
                    self.start_dhcp(k, 1, now);
                } else {
                    self.start_iscsi(k, now);
                }
            }
            Err(why) => self.fail(k, now, why),
        }
    }
}
