//! Reservations added through the API (`/api/v1/reservations`), beside the config file's.
//!
//! They are kept in `reservations.json` in the `[leases] dir` (written to a temporary file,
//! synced, renamed: a crash leaves the old list or the new one), read at start and merged into
//! the DHCP core after the config's own, at start and at every reload. One the config file
//! later contradicts (the same address or MAC reserved there too) is left out with a warning:
//! the file wins. Without a lease directory there is nowhere to keep them, and adding one is
//! refused.

use bootstorm_dhcp::{Reservation, ServerConfig};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A reservation as the API takes and shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiReservation {
    /// The address.
    pub address: Ipv4Addr,
    /// The MAC it is for (`52:54:00:12:34:56`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Or the client identifier (option 61, hex, its type byte first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Host name handed out (option 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// The file's name in the lease directory.
pub const FILE: &str = "reservations.json";

impl ApiReservation {
    /// As the DHCP core holds it, checked on its own (a MAC is 6 bytes, an id parses).
    pub fn to_core(&self) -> Result<Reservation, String> {
        let hwaddr = match &self.mac {
            Some(m) => {
                let b = crate::control::parse_mac(m)?;
                Some(<[u8; 6]>::try_from(b.as_slice()).map_err(|_| {
                    format!("'{m}' is not a 6-byte MAC (use client_id for other hardware)")
                })?)
            }
            None => None,
        };
        let client_id = match &self.client_id {
            Some(c) => Some(
                c.parse::<crate::config::Hex>()
                    .map_err(|_| format!("client_id '{c}' is not hex"))?
                    .0
                    .into_boxed_slice(),
            ),
            None => None,
        };
        if hwaddr.is_none() && client_id.is_none() {
            return Err(format!(
                "reservation {} needs mac or client_id",
                self.address
            ));
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 63 || h.contains(|c: char| c.is_whitespace()))
        {
            return Err(format!(
                "hostname '{h}': expected 1-63 characters, no spaces"
            ));
        }
        Ok(Reservation {
            hwaddr,
            client_id,
            addr: self.address,
            hostname: self.hostname.clone(),
            options: Default::default(),
            boot: None,
        })
    }
}

/// Why `r` cannot join `existing` under `cfg`'s subnets, if it cannot.
fn conflict(cfg: &ServerConfig, existing: &[Reservation], r: &Reservation) -> Option<String> {
    if !cfg.subnets.iter().any(|s| s.contains(r.addr)) {
        return Some(format!("{} is in no configured subnet", r.addr));
    }
    if existing.iter().any(|o| o.addr == r.addr) {
        return Some(format!("{} is reserved already", r.addr));
    }
    if let Some(m) = r.hwaddr
        && existing.iter().any(|o| o.hwaddr == Some(m))
    {
        return Some(format!(
            "MAC {} has a reservation already",
            crate::serve::fmt_hw(&m)
        ));
    }
    if let Some(c) = &r.client_id
        && existing.iter().any(|o| o.client_id.as_ref() == Some(c))
    {
        return Some("that client_id has a reservation already".into());
    }
    None
}

/// The API's reservations, and where they are kept.
#[derive(Debug, Default)]
pub struct Store {
    path: Option<PathBuf>,
    list: Mutex<Vec<ApiReservation>>,
}

impl Store {
    /// Reads `dir/reservations.json` (none yet is an empty list); `dir` none: nothing is kept.
    pub fn open(dir: Option<&Path>) -> anyhow::Result<Store> {
        use anyhow::Context;
        let Some(dir) = dir else {
            return Ok(Store::default());
        };
        let path = dir.join(FILE);
        let list = match std::fs::read_to_string(&path) {
            Ok(t) => {
                serde_json::from_str(&t).with_context(|| format!("reading {}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Store {
            path: Some(path),
            list: Mutex::new(list),
        })
    }

    /// The API's reservations now.
    pub fn list(&self) -> Vec<ApiReservation> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `cfg` (the config file's) with the API's reservations after its own; those it
    /// contradicts are left out, each with a warning.
    pub fn merged(&self, cfg: &ServerConfig) -> (ServerConfig, Vec<String>) {
        let mut out = cfg.clone();
        let mut warnings = Vec::new();
        for a in self.list() {
            match a.to_core() {
                Ok(r) => match conflict(&out, &out.reservations, &r) {
                    None => out.reservations.push(r),
                    Some(why) => warnings.push(format!(
                        "API reservation of {} left out: {why} (the config file wins)",
                        a.address
                    )),
                },
                Err(e) => warnings.push(format!("API reservation left out: {e}")),
            }
        }
        (out, warnings)
    }

    /// Adds `r` if it fits `running` (the merged config serving now), and keeps the list.
    pub fn add(&self, running: &ServerConfig, r: ApiReservation) -> Result<(), String> {
        let core = r.to_core()?;
        if let Some(why) = conflict(running, &running.reservations, &core) {
            return Err(why);
        }
        self.change(|l| {
            l.push(r);
            Ok(())
        })
    }

    /// Removes the API's reservation of `addr` and keeps the list.
    pub fn remove(&self, addr: Ipv4Addr) -> Result<ApiReservation, String> {
        let mut gone = None;
        self.change(|l| match l.iter().position(|r| r.address == addr) {
            Some(i) => {
                gone = Some(l.remove(i));
                Ok(())
            }
            None => Err(format!(
                "no reservation of {addr} was added through the API"
            )),
        })?;
        gone.ok_or_else(|| "lost".into())
    }

    /// Applies `f` to the list and writes it; on any failure the list stays as it was.
    fn change(
        &self,
        f: impl FnOnce(&mut Vec<ApiReservation>) -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Err(
                "no [leases] dir to keep reservations in: add them to the config file".into(),
            );
        };
        let mut l = self.list.lock().map_err(|_| "poisoned".to_string())?;
        let mut new = l.clone();
        f(&mut new)?;
        write_atomically(path, &new).map_err(|e| format!("writing {}: {e}", path.display()))?;
        *l = new;
        Ok(())
    }
}

fn write_atomically(path: &Path, list: &[ApiReservation]) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(list)?;
    text.push('\n');
    bootstorm_journal::write_file_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ServerConfig {
        let text = "[[subnet]]\nnetwork = \"198.18.0.0/16\"\nserver_id = \"198.18.0.1\"\npools = [\"198.18.1.1-198.18.1.9\"]\n\n[[reservation]]\nmac = \"52:54:00:00:00:01\"\naddress = \"198.18.2.1\"\n";
        crate::config::parse(Path::new("t.toml"), text)
            .unwrap()
            .dhcp
    }

    fn r(addr: &str, mac: &str) -> ApiReservation {
        ApiReservation {
            address: addr.parse().unwrap(),
            mac: Some(mac.into()),
            client_id: None,
            hostname: None,
        }
    }

    #[test]
    fn kept_checked_and_merged_after_the_config_file() {
        let dir = std::env::temp_dir().join(format!("bootstorm-resv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = Store::open(Some(&dir)).unwrap();
        let c = cfg();
        s.add(&c, r("198.18.2.2", "52:54:00:00:00:02")).unwrap();
        let (m, w) = s.merged(&c);
        assert!(w.is_empty());
        assert_eq!(m.reservations.len(), 2);
        // Refused: taken address, taken MAC, outside every subnet, not a MAC, neither key.
        assert!(
            s.add(&m, r("198.18.2.1", "52:54:00:00:00:09"))
                .unwrap_err()
                .contains("reserved already")
        );
        assert!(
            s.add(&m, r("198.18.2.9", "52:54:00:00:00:01"))
                .unwrap_err()
                .contains("MAC")
        );
        assert!(
            s.add(&m, r("10.0.0.1", "52:54:00:00:00:03"))
                .unwrap_err()
                .contains("no configured subnet")
        );
        assert!(s.add(&m, r("198.18.2.9", "zz")).is_err());
        let mut none = r("198.18.2.9", "x");
        none.mac = None;
        assert!(
            s.add(&m, none)
                .unwrap_err()
                .contains("needs mac or client_id")
        );
        // Kept across a restart; a later config reserving the same address wins.
        let again = Store::open(Some(&dir)).unwrap();
        assert_eq!(again.list(), [r("198.18.2.2", "52:54:00:00:00:02")]);
        let mut c2 = c.clone();
        let mut taken = c2.reservations[0].clone();
        taken.addr = "198.18.2.2".parse().unwrap();
        taken.hwaddr = Some([2, 0, 0, 0, 0, 7]);
        c2.reservations.push(taken);
        let (m2, w2) = again.merged(&c2);
        assert_eq!(m2.reservations.len(), 2);
        assert!(w2[0].contains("the config file wins"), "{w2:?}");
        assert_eq!(
            again
                .remove("198.18.2.2".parse().unwrap())
                .unwrap()
                .address
                .to_string(),
            "198.18.2.2"
        );
        assert!(
            again
                .remove("198.18.2.1".parse().unwrap())
                .unwrap_err()
                .contains("through the API")
        );
        assert!(Store::open(Some(&dir)).unwrap().list().is_empty());
        // No lease directory: nothing can be kept.
        assert!(
            Store::default()
                .add(&c, r("198.18.2.3", "52:54:00:00:00:03"))
                .unwrap_err()
                .contains("[leases] dir")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
