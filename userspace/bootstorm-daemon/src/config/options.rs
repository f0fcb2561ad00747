//! DHCP options and matchers as the file writes them, encoded for the core.

use super::*;

/// A table's extra options (`[[...options]]`), each encoded by its declared type.
pub(super) fn option_set(
    src: &Source<'_>,
    options: &[Spanned<OptionSection>],
) -> Result<OptionSet, ConfigError> {
    let mut set = OptionSet::new();
    for o in options {
        let data = encode_option(o.get_ref()).map_err(|e| src.error(Some(o.span()), e))?;
        set.set(o.get_ref().code, data, o.get_ref().always);
    }
    Ok(set)
}

/// Encodes an extra option's value by its declared type.
pub fn encode_option(o: &OptionSection) -> Result<Vec<u8>, String> {
    let code = o.code;
    match code {
        opt::PAD | opt::END => return Err(format!("option {code} is not an option")),
        opt::MESSAGE_TYPE
        | opt::SERVER_ID
        | opt::LEASE_TIME
        | opt::OVERLOAD
        | opt::MAX_MESSAGE_SIZE
        | opt::RELAY_AGENT_INFO
        | opt::CLIENT_ID
        | opt::RENEWAL_TIME
        | opt::REBINDING_TIME => {
            return Err(format!(
                "option {code} is managed by the server and cannot be set"
            ));
        }
        _ => {}
    }
    let v = &o.value;
    let bad = |want: &str| format!("option {code} of type {}: value must be {want}", o.kind);
    let int = |min: i64, max: i64| -> Result<i64, String> {
        v.as_integer()
            .filter(|i| (min..=max).contains(i))
            .ok_or_else(|| bad(&format!("an integer {min}..={max}")))
    };
    let ip = |v: &toml::Value| -> Result<Ipv4Addr, String> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("an IPv4 address string"))
    };
    let data = match o.kind.as_str() {
        "ip" => ip(v)?.octets().to_vec(),
        "ips" => {
            let arr = v
                .as_array()
                .ok_or_else(|| bad("an array of IPv4 address strings"))?;
            encode_ips(&arr.iter().map(ip).collect::<Result<Vec<_>, _>>()?)
        }
        "u8" => vec![int(0, 255)? as u8],
        "u16" => (int(0, 65535)? as u16).to_be_bytes().to_vec(),
        "u32" => (int(0, u32::MAX.into())? as u32).to_be_bytes().to_vec(),
        "i32" => (int(i32::MIN.into(), i32::MAX.into())? as i32)
            .to_be_bytes()
            .to_vec(),
        "bool" => vec![u8::from(v.as_bool().ok_or_else(|| bad("true or false"))?)],
        "string" => v
            .as_str()
            .ok_or_else(|| bad("a string"))?
            .as_bytes()
            .to_vec(),
        "hex" => {
            v.as_str()
                .ok_or_else(|| bad("a hex string"))?
                .parse::<Hex>()?
                .0
        }
        k => {
            return Err(format!(
                "option {code}: unknown type '{k}' (use ip, ips, u8, u16, u32, i32, bool, string or hex)"
            ));
        }
    };
    if data.len() > 1200 {
        return Err(format!(
            "option {code}: value of {} bytes cannot fit in any DHCP message",
            data.len()
        ));
    }
    Ok(data)
}

/// A `match` table against the configured subnets.
pub(super) fn matcher(m: &MatchSection, subnets: &[core::Subnet]) -> Result<core::Match, String> {
    let subnet = match m.subnet {
        Some(c) => Some(
            subnets
                .iter()
                .position(|s| s.network == c.network && s.prefix == c.prefix)
                .ok_or_else(|| format!("match.subnet {c} is not a configured subnet"))?
                as u32,
        ),
        None => None,
    };
    Ok(core::Match {
        arch: m.arch.iter().flat_map(|a| a.0.iter().copied()).collect(),
        user_class: m.user_class.as_ref().map(|s| s.as_bytes().into()),
        vendor_class_prefix: m.vendor_class_prefix.as_ref().map(|s| s.as_bytes().into()),
        mac_prefix: m.mac_prefix.as_ref().map(|h| h.0.clone().into()),
        reserved: m.reserved,
        subnet,
    })
}

/// A boot file name fits option 67 and the `file` field.
pub(super) fn check_boot_file(file: &str) -> Result<(), String> {
    if file.is_empty() {
        return Err("boot file must not be empty".into());
    }
    if file.len() > 255 {
        return Err(format!(
            "boot file of {} bytes is longer than option 67 allows (255)",
            file.len()
        ));
    }
    Ok(())
}
