//! `bootstorm leases import` and the offline side of `export`: the lease directory of a stopped
//! server, read and written under its lock.
//!
//! An import goes through the same door as a restart: the journal is replayed into a lease table
//! built from the config, each imported lease is restored into it (so the table's own rules
//! decide conflicts), and the result is written as one snapshot, durably, before the command
//! says it is done. Nothing is written if any file cannot be read.

use crate::config::Settings;
use crate::control::{LeaseJson, leases_json};
use crate::leasefile::{Format, Imported, parse};
use crate::serve::fmt_hw;
use anyhow::{Context, bail};
use bootstorm_dhcp::Server;
use bootstorm_journal::{DirLock, Journal, Record, WallClock};
use bootstorm_lease::{Lease, LeaseState, LeaseTable};
use bootstorm_time::Clock;
use std::path::{Path, PathBuf};

/// Restores replayed journal records into `table`; returns (live bound leases, conflicts).
pub fn restore_records(table: &LeaseTable, wall: &WallClock, records: &[Record]) -> (usize, usize) {
    let now = wall.clock().now();
    let (mut bound, mut conflicts) = (0usize, 0usize);
    for r in records {
        let lease = Lease {
            key: r.key.clone(),
            hwaddr: r.hwaddr.clone(),
            addr: r.addr,
            state: r.state,
            expires: wall.from_unix_ms(r.expires_ms),
            hostname: r.hostname.clone(),
            // Subnet indices follow the config's order, which may have changed since.
            subnet: table.subnet_of(r.addr).unwrap_or(r.subnet),
            reserved: r.reserved,
        };
        let until = (r.until_ms > 0).then(|| wall.from_unix_ms(r.until_ms));
        let live = lease.state == LeaseState::Bound && lease.expires > now;
        match table.restore(now, lease, until) {
            Ok(()) => bound += usize::from(live),
            Err(e) => {
                conflicts += 1;
                tracing::warn!(ip = %r.addr, mac = %fmt_hw(&r.hwaddr), error = %e, "lease not restored");
            }
        }
    }
    (bound, conflicts)
}

/// The config's `[leases]` settings, which an offline command cannot do without.
fn journal_settings<'s>(
    settings: &'s Settings,
    config: &Path,
) -> anyhow::Result<&'s bootstorm_journal::Settings> {
    match &settings.leases {
        Some(l) => Ok(l),
        None => bail!(
            "{}: no [leases] dir: leases are kept in memory only, so there is nothing to read or write",
            config.display()
        ),
    }
}

/// A table from the config with the stopped server's leases in it, and the directory's lock.
struct Offline {
    server: Server,
    wall: WallClock,
    next_segment: u64,
    _lock: Option<DirLock>,
}

/// What an [`open`] is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Reading only; the directory must exist.
    Export,
    /// Reading only; a directory not made yet is an empty one.
    DryRun,
    /// Writing; the directory is made if need be.
    Import,
}

fn open(settings: &Settings, config: &Path, purpose: Use) -> anyhow::Result<Offline> {
    let dir = &journal_settings(settings, config)?.dir;
    let server = Server::new(settings.dhcp.clone()).context("building the lease table")?;
    let wall = WallClock::new(Clock::new());
    match purpose {
        Use::Import => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the lease directory {}", dir.display()))?,
        Use::Export if !dir.is_dir() => bail!("{}: no such lease directory", dir.display()),
        Use::DryRun if !dir.is_dir() => {
            return Ok(Offline {
                server,
                wall,
                next_segment: 1,
                _lock: None,
            });
        }
        _ => {}
    }
    let lock = bootstorm_journal::lock_dir(dir)?;
    let replayed = if purpose == Use::Import {
        // As a start-up would: a torn tail is cut off.
        bootstorm_journal::replay(dir, false)?
    } else {
        bootstorm_journal::read_only(dir)?
    };
    let (_, conflicts) = restore_records(server.leases(), &wall, &replayed.records);
    if conflicts > 0 {
        tracing::warn!(conflicts, "some journal records conflict with others");
    }
    Ok(Offline {
        server,
        wall,
        next_segment: replayed.next_segment,
        _lock: Some(lock),
    })
}

/// The leases of a stopped server, from its lease directory (changing nothing).
pub fn export_offline(settings: &Settings, config: &Path) -> anyhow::Result<Vec<LeaseJson>> {
    let o = open(settings, config, Use::Export)?;
    Ok(leases_json(&o.server, &o.wall.clock()))
}

/// What an import did (or, dry, would do).
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Leases taken over.
    pub imported: usize,
    /// Of those, bound and not yet expired.
    pub bound: usize,
    /// Leases left out: where (file:line) and why.
    pub skipped: Vec<(String, String)>,
}

/// Imports `files` into the lease directory of the server configured by `settings` (which must
/// be stopped). With `dry_run`, checks everything and writes nothing.
pub fn import(
    settings: &Settings,
    config: &Path,
    format: Format,
    files: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<ImportReport> {
    // Every file is read before anything is touched.
    let mut parsed = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let p = parse(format, &text).map_err(|e| anyhow::anyhow!("{}:{e}", f.display()))?;
        parsed.push((f.display().to_string(), p));
    }
    let o = open(
        settings,
        config,
        if dry_run { Use::DryRun } else { Use::Import },
    )?;
    let table = o.server.leases();
    let cfg = o.server.config();
    let now = o.wall.clock().now();
    let mut report = ImportReport::default();
    for (file, p) in parsed {
        for (line, why) in p.skipped {
            report.skipped.push((format!("{file}:{line}"), why));
        }
        for l in p.leases {
            match take(table, cfg, &o.wall, &l) {
                Ok(live) => {
                    report.imported += 1;
                    report.bound += usize::from(live);
                }
                Err(why) => report.skipped.push((format!("{file}:{}", l.line), why)),
            }
        }
    }
    if !dry_run {
        let l = journal_settings(settings, config)?;
        let records = bootstorm_journal::snapshot_records(&o.wall, &table.leases(now));
        // Starting the journal writes the table as a snapshot (fsync, rename, directory fsync)
        // and drops the files it replaces; shutting it down at once leaves exactly that.
        let j = Journal::start(l, o.wall, o.next_segment, &records, Box::new(Vec::new))
            .with_context(|| format!("writing the leases to {}", l.dir.display()))?;
        j.shutdown();
    }
    Ok(report)
}

/// Restores one imported lease into `table`, unless something here says no; returns whether it
/// is a live bound lease.
fn take(
    table: &LeaseTable,
    cfg: &bootstorm_dhcp::ServerConfig,
    wall: &WallClock,
    l: &Imported,
) -> Result<bool, String> {
    let now = wall.clock().now();
    let subnet = cfg
        .subnets
        .iter()
        .position(|s| s.contains(l.ip))
        .ok_or_else(|| format!("{} is in no configured subnet", l.ip))?;
    if let Some(r) = cfg.reservations.iter().find(|r| r.addr == l.ip) {
        let mine = r.hwaddr.is_some_and(|h| h[..] == l.hwaddr[..])
            || r.client_id.as_deref() == Some(&l.key[..]);
        return Err(if mine {
            format!(
                "{} is this client's reservation in the config already",
                l.ip
            )
        } else {
            format!("{} is reserved in the config for another client", l.ip)
        });
    }
    if let Some(held) = table.lease_of(now, &l.key)
        && held.addr != l.ip
        && held.state == LeaseState::Bound
    {
        return Err(format!(
            "{} already holds {} here",
            fmt_hw(&l.hwaddr),
            held.addr
        ));
    }
    let expires = wall.from_unix_ms(l.expires.saturating_mul(1000));
    let lease = Lease {
        key: l.key.clone().into(),
        hwaddr: l.hwaddr.clone().into(),
        addr: l.ip,
        state: l.state,
        expires,
        hostname: l.hostname.clone().map(Into::into),
        subnet: subnet as u32,
        reserved: false,
    };
    let until = (l.state == LeaseState::Declined).then_some(expires);
    table
        .restore(now, lease, until)
        .map_err(|e| format!("{e} here"))?;
    Ok(l.state == LeaseState::Bound && expires > now)
}
