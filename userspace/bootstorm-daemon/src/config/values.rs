//! The values a configuration field holds, each parsed (and so checked) where toml reads it:
//! networks, address ranges, durations, hex strings, MACs, architectures, port ranges.

use super::*;

/// A network in CIDR notation with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("'{s}' has no /prefix"))?;
        let network: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("'/{p}' is not a prefix length 0-32"))?;
        let m = core::prefix_mask(prefix);
        if u32::from(network) & !m != 0 {
            let fixed = Ipv4Addr::from(u32::from(network) & m);
            return Err(format!(
                "'{s}' has host bits set; did you mean {fixed}/{prefix}?"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}
from_str_deserialize!(Cidr, "a network like \"198.18.0.0/16\"");

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An inclusive address range "first-last".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<IpRange, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("'{s}' is not a range"))?;
        let start: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("'{}' is not an IPv4 address", a.trim()))?;
        let end: Ipv4Addr = b
            .trim()
            .parse()
            .map_err(|_| format!("'{}' is not an IPv4 address", b.trim()))?;
        if u32::from(end) < u32::from(start) {
            return Err(format!("range '{s}' ends before it starts"));
        }
        Ok(IpRange { start, end })
    }
}
from_str_deserialize!(IpRange, "a range like \"198.18.1.1-198.18.1.254\"");

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A duration: seconds as an integer, or a string with a unit ("90s", "10m", "12h", "7d").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(n)));
        }
        // A sequence of number+unit pairs: "90s", "10m", "10h30m", "1d12h".
        let mut total: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (num, tail) = rest.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("'{s}' is not a duration"))?;
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            // Milliseconds per unit.
            let mult = match unit.trim() {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                u => {
                    return Err(format!(
                        "unknown unit '{u}' in '{s}' (use ms, s, m, h or d)"
                    ));
                }
            };
            total = total.saturating_add(n.saturating_mul(mult));
            rest = tail;
        }
        Ok(Dur(Duration::from_millis(total)))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds, or a string like \"30s\", \"10m\", \"12h\", \"7d\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|v| Dur(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes written as hex pairs, separated by ':' or '-' or nothing ("52:54:00:12:34:56").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl FromStr for Hex {
    type Err = String;
    fn from_str(s: &str) -> Result<Hex, String> {
        let t = s.trim().trim_start_matches("0x");
        let digits: String = t.chars().filter(|c| *c != ':' && *c != '-').collect();
        if digits.is_empty()
            || !digits.len().is_multiple_of(2)
            || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(format!("'{s}' is not hex bytes"));
        }
        Ok(Hex((0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap_or(0))
            .collect()))
    }
}
from_str_deserialize!(Hex, "hex bytes like \"01:52:54:00:12:34:56\"");

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let h: Hex = s.parse()?;
        <[u8; 6]>::try_from(h.0)
            .map(Mac)
            .map_err(|_| format!("'{s}' is not a MAC address (6 bytes)"))
    }
}
from_str_deserialize!(Mac, "a MAC like \"52:54:00:12:34:56\"");

/// An architecture in a match: a number (option 93 value) or a name such as "efi-x64".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchItem(pub Vec<u16>);

impl FromStr for ArchItem {
    type Err = String;
    fn from_str(s: &str) -> Result<ArchItem, String> {
        if let Ok(n) = s.parse::<u16>() {
            return Ok(ArchItem(vec![n]));
        }
        arch::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| ArchItem(v.to_vec()))
            .ok_or_else(|| {
                let names: Vec<&str> = arch::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown architecture '{s}' (use a number or one of {})",
                    names.join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for ArchItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ArchItem, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ArchItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an architecture number or name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ArchItem, E> {
                u16::try_from(v)
                    .map(|v| ArchItem(vec![v]))
                    .map_err(|_| E::custom("architecture must be 0-65535"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ArchItem, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ArchItem, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An inclusive UDP port range "first-last".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("'{s}' is not a port range"))?;
        let p = |x: &str| {
            x.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{}' is not a port 1-65535", x.trim()))
        };
        let (lo, hi) = (p(a)?, p(b)?);
        if hi < lo {
            return Err(format!("port range '{s}' ends before it starts"));
        }
        Ok(PortRange(lo, hi))
    }
}
from_str_deserialize!(PortRange, "a port range like \"30000-30999\"");

/// A short duration with microseconds: "100us", "1ms", or "0".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Micros(pub std::time::Duration);

impl FromStr for Micros {
    type Err = String;
    fn from_str(s: &str) -> Result<Micros, String> {
        let t = s.trim();
        let (num, mult) = if let Some(n) = t.strip_suffix("us") {
            (n, 1)
        } else if let Some(n) = t.strip_suffix("ms") {
            (n, 1000)
        } else if t == "0" {
            (t, 0)
        } else {
            return Err(format!(
                "'{s}': use microseconds (\"100us\"), milliseconds (\"1ms\") or \"0\""
            ));
        };
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a duration"))?;
        Ok(Micros(std::time::Duration::from_micros(
            n.saturating_mul(mult),
        )))
    }
}

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(de::Error::custom),
            Raw::Number(0) => Ok(Micros(std::time::Duration::ZERO)),
            Raw::Number(n) => Err(de::Error::custom(format!(
                "{n}: give a unit, \"{n}us\" or \"{n}ms\""
            ))),
        }
    }
}
