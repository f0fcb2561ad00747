//! Lease files in and out, for `bootstorm leases export` and `import`: bootstorm's own JSON and
//! CSV, a Kea memfile (`kea-leases4.csv`) and a dnsmasq leases file.
//!
//! Parsing is strict: a line that cannot be read stops the import with its line number and the
//! reason, before anything is changed (a half-imported lease database is worse than none).
//! Lines that are well formed but cannot be carried over (a Kea address declined by nobody in
//! particular, a DHCPv6 lease in a dnsmasq file) are skipped and counted with the reason.
//!
//! A crate of its own, without the daemon's command line, runtime or sockets: the fuzz target
//! and the daemon's `leases import`/`export` link the same parsers. Written by hand because
//! the formats are other servers' files (Kea's and dnsmasq's are not specified beyond their
//! sources) and every odd line has to be refused with its number.
#![forbid(unsafe_code)]

use bootstorm_lease::LeaseState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Expiry of a lease that never ends (dnsmasq's 0, DHCP's infinite time): 2106, as u32 seconds.
pub const NEVER_UNIX: u64 = u32::MAX as u64;

/// One lease as bootstorm reports it (the control socket, `bootstorm leases --json`, the JSON
/// and CSV lease files).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseJson {
    /// Address.
    pub ip: String,
    /// MAC (chaddr).
    pub mac: String,
    /// Client key: option 61 or htype+chaddr, hex.
    pub client_id: String,
    /// offered, bound, released, expired, declined.
    pub state: String,
    /// When the lease ends or ended (a declined address: when its quarantine ends), in seconds
    /// since the UNIX epoch.
    pub expires: u64,
    /// Seconds until then (0 if it has passed).
    #[serde(default)]
    pub expires_in: u64,
    /// Host name the client sent.
    pub hostname: Option<String>,
    /// Subnet, as network/prefix.
    #[serde(default)]
    pub subnet: String,
    /// From a reservation.
    #[serde(default)]
    pub reserved: bool,
}

/// A lease file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// bootstorm's JSON (an array of leases, as `bootstorm leases --json` prints).
    Json,
    /// bootstorm's CSV (a header line, then a lease per line).
    Csv,
    /// Kea's memfile CSV (`kea-leases4.csv`), import only.
    Kea,
    /// dnsmasq's leases file (`dnsmasq.leases`), import only.
    Dnsmasq,
}

impl Format {
    /// Every format, by its name.
    pub const ALL: [(&'static str, Format); 4] = [
        ("json", Format::Json),
        ("csv", Format::Csv),
        ("kea", Format::Kea),
        ("dnsmasq", Format::Dnsmasq),
    ];
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, f)| *f)
            .ok_or_else(|| format!("unknown lease file format '{s}' (json, csv, kea or dnsmasq)"))
    }
}

/// One lease read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// Line (or record) number it came from, from 1.
    pub line: usize,
    /// Address.
    pub ip: Ipv4Addr,
    /// Hardware address.
    pub hwaddr: Vec<u8>,
    /// Client key: the client identifier (option 61) if there was one, else htype + MAC, as
    /// bootstorm keys clients.
    pub key: Vec<u8>,
    /// State.
    pub state: LeaseState,
    /// End of the lease (or of a decline quarantine), seconds since the UNIX epoch.
    pub expires: u64,
    /// Host name.
    pub hostname: Option<String>,
}

/// What was read: the leases, and what was skipped with why.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Leases to import, one per address, in file order of their last line.
    pub leases: Vec<Imported>,
    /// Well-formed lines that cannot be carried over: (line, reason).
    pub skipped: Vec<(usize, String)>,
}

/// A line that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// Line (or, for JSON, record) number, from 1.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

/// Parses hex bytes separated by `:` (or `-`); empty is no bytes.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    let out: Option<Vec<u8>> = s
        .split([':', '-'])
        .map(|b| {
            (1..=2)
                .contains(&b.len())
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect();
    out.filter(|v| v.len() <= 255)
}

/// bootstorm's key of a client without a client identifier: htype + chaddr.
pub fn key_of_mac(mac: &[u8]) -> Vec<u8> {
    // RFC 1700 hardware types: Ethernet for 6-byte addresses, InfiniBand for 20-byte ones.
    let htype = if mac.len() == 20 { 32 } else { 1 };
    let mut k = Vec::with_capacity(mac.len() + 1);
    k.push(htype);
    k.extend_from_slice(mac);
    k
}

fn state_named(name: &str) -> Option<LeaseState> {
    Some(match name {
        "offered" => LeaseState::Offered,
        "bound" => LeaseState::Bound,
        "released" => LeaseState::Released,
        "expired" => LeaseState::Expired,
        "declined" => LeaseState::Declined,
        _ => return None,
    })
}

fn ip(line: usize, s: &str) -> Result<Ipv4Addr, ParseError> {
    s.trim()
        .parse()
        .map_err(|_| err(line, format!("{s:?} is not an IPv4 address")))
}

fn hex(line: usize, what: &str, s: &str) -> Result<Vec<u8>, ParseError> {
    parse_hex(s).ok_or_else(|| {
        err(
            line,
            format!("{what} {s:?} is not hex bytes like 52:54:00:12:34:56"),
        )
    })
}

fn number(line: usize, what: &str, s: &str) -> Result<u64, ParseError> {
    s.trim()
        .parse()
        .map_err(|_| err(line, format!("{what} {s:?} is not a number")))
}

fn name(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The last lease of each address, in the order of those last lines; a later line for an
/// address replaces the earlier one in constant time (a Kea memfile is a log of every change).
#[derive(Default)]
struct LastPerAddress {
    leases: Vec<Option<Imported>>,
    at: HashMap<Ipv4Addr, usize>,
}

impl LastPerAddress {
    /// Drops what an earlier line said of `ip`.
    fn forget(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.at.remove(&ip) {
            self.leases[i] = None;
        }
    }

    fn put(&mut self, l: Imported) {
        self.forget(l.ip);
        self.at.insert(l.ip, self.leases.len());
        self.leases.push(Some(l));
    }

    fn into_vec(self) -> Vec<Imported> {
        self.leases.into_iter().flatten().collect()
    }
}

/// Reads `text` in `format`.
pub fn parse(format: Format, text: &str) -> Result<Parsed, ParseError> {
    match format {
        Format::Json => {
            let leases: Vec<LeaseJson> = serde_json::from_str(text)
                .map_err(|e| err(e.line(), format!("not a bootstorm lease list: {e}")))?;
            own(leases.into_iter().enumerate().map(|(i, l)| (i + 1, l)))
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let mut rows = Vec::new();
            for row in r.deserialize::<LeaseJson>() {
                let row = row.map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    err(line, format!("not a bootstorm lease line: {e}"))
                })?;
                rows.push((rows.len() + 2, row));
            }
            own(rows.into_iter())
        }
        Format::Kea => kea(text),
        Format::Dnsmasq => dnsmasq(text),
    }
}

fn own(rows: impl Iterator<Item = (usize, LeaseJson)>) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut all = LastPerAddress::default();
    for (line, l) in rows {
        if l.reserved {
            out.skipped.push((
                line,
                format!(
                    "{} comes from a reservation (reservations come from the config)",
                    l.ip
                ),
            ));
            continue;
        }
        let state = state_named(&l.state)
            .ok_or_else(|| err(line, format!("unknown state {:?}", l.state)))?;
        let hwaddr = hex(line, "mac", &l.mac)?;
        let key = hex(line, "client_id", &l.client_id)?;
        if key.is_empty() {
            return Err(err(line, "empty client_id"));
        }
        all.put(Imported {
            line,
            ip: ip(line, &l.ip)?,
            hwaddr,
            key,
            state,
            expires: l.expires,
            hostname: l.hostname.and_then(|h| name(&h)),
        });
    }
    out.leases = all.into_vec();
    Ok(out)
}

/// Kea's memfile (CSV version 2.0 and later): `address,hwaddr,client_id,valid_lifetime,expire,
/// subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context[,pool_id]`. It is a log: a later
/// line for an address replaces an earlier one, and a line with valid_lifetime 0 deletes it.
/// Commas inside values are written as `&#x2c`.
fn kea(text: &str) -> Result<Parsed, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (hline, header) = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty())
        .ok_or_else(|| err(1, "empty file: a Kea memfile starts with a header line"))?;
    let cols: Vec<&str> = header.trim().split(',').collect();
    let col = |name: &str| {
        cols.iter().position(|c| *c == name).ok_or_else(|| {
            err(
                hline,
                format!("no {name:?} column: not a Kea DHCPv4 memfile header"),
            )
        })
    };
    let (c_addr, c_hw, c_cid, c_valid, c_exp, c_host, c_state) = (
        col("address")?,
        col("hwaddr")?,
        col("client_id")?,
        col("valid_lifetime")?,
        col("expire")?,
        col("hostname")?,
        col("state")?,
    );
    let mut out = Parsed::default();
    let mut all = LastPerAddress::default();
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        let f: Vec<String> = text.split(',').map(|v| v.replace("&#x2c", ",")).collect();
        if f.len() < cols.len() {
            return Err(err(
                line,
                format!("{} fields, the header has {}", f.len(), cols.len()),
            ));
        }
        let addr = ip(line, &f[c_addr])?;
        let valid = number(line, "valid_lifetime", &f[c_valid])?;
        if valid == 0 {
            // Kea writes a deleted lease as one with no lifetime.
            all.forget(addr);
            continue;
        }
        let expires = number(line, "expire", &f[c_exp])?;
        let hwaddr = hex(line, "hwaddr", &f[c_hw])?;
        let cid = hex(line, "client_id", &f[c_cid])?;
        let state = match number(line, "state", &f[c_state])? {
            0 => LeaseState::Bound,
            1 => LeaseState::Declined,
            2 => LeaseState::Expired, // expired and reclaimed
            3 => LeaseState::Released,
            s => return Err(err(line, format!("unknown lease state {s}"))),
        };
        all.forget(addr);
        let key = if !cid.is_empty() {
            cid
        } else if !hwaddr.is_empty() {
            key_of_mac(&hwaddr)
        } else {
            out.skipped.push((
                line,
                format!("{addr}: no hardware address or client id (a declined address?)"),
            ));
            continue;
        };
        all.put(Imported {
            line,
            ip: addr,
            hwaddr,
            key,
            state,
            expires,
            hostname: name(&f[c_host]),
        });
    }
    out.leases = all.into_vec();
    Ok(out)
}

/// dnsmasq's leases file: `expiry mac ip hostname client-id` per line (`*` for none; expiry 0
/// for a lease that never ends; a MAC of another hardware type carries it as a `TT-` prefix),
/// then, after a `duid` line, DHCPv6 leases, which are skipped.
fn dnsmasq(text: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut all = LastPerAddress::default();
    let mut v6 = false;
    for (i, text) in text.lines().enumerate() {
        let line = i + 1;
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f[0] == "duid" {
            v6 = true;
            continue;
        }
        if f.len() < 4 {
            return Err(err(
                line,
                format!(
                    "{} fields: expected expiry, MAC, address, host name and client id",
                    f.len()
                ),
            ));
        }
        if v6 || f[2].contains(':') {
            out.skipped
                .push((line, format!("{}: a DHCPv6 lease", f[2])));
            continue;
        }
        let expiry = number(line, "expiry", f[0])?;
        let (hw, htype) = match f[1].split_once('-') {
            // "TT-aa:bb:..": the hardware type, then the address.
            Some((t, rest)) if t.len() == 2 && !rest.contains('-') => {
                (rest, u8::from_str_radix(t, 16).ok())
            }
            _ => (f[1], None),
        };
        let hwaddr = hex(line, "MAC", hw)?;
        let cid = match f.get(4) {
            None | Some(&"*") => Vec::new(),
            Some(c) => hex(line, "client id", c)?,
        };
        let key = match (cid.is_empty(), htype) {
            (false, _) => cid,
            (true, Some(t)) => [&[t][..], &hwaddr].concat(),
            (true, None) => key_of_mac(&hwaddr),
        };
        if hwaddr.is_empty() && key.len() <= 1 {
            out.skipped
                .push((line, format!("{}: no hardware address or client id", f[2])));
            continue;
        }
        all.put(Imported {
            line,
            ip: ip(line, f[2])?,
            hwaddr,
            key,
            state: LeaseState::Bound,
            expires: if expiry == 0 { NEVER_UNIX } else { expiry },
            hostname: (f[3] != "*").then(|| f[3].to_string()),
        });
    }
    out.leases = all.into_vec();
    Ok(out)
}

/// Writes `leases` as bootstorm CSV.
pub fn to_csv(leases: &[LeaseJson]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for l in leases {
        w.serialize(l)?;
    }
    // A header even when there is nothing to write, so the file says what it is.
    if leases.is_empty() {
        return Ok("ip,mac,client_id,state,expires,expires_in,hostname,subnet,reserved\n".into());
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    // Everything written was UTF-8 text.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
