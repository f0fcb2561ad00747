//! Login negotiation (RFC 7143 6.2, 13): the operational keys a target answers, the values it
//! takes, and CHAP (RFC 1994 with MD5, as RFC 7143 12.1.3 profiles it, and mutual CHAP).

use md5::{Digest, Md5};

/// What this target is willing to do: offered in answers and bounding what is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most data this target takes in one PDU (declared as MaxRecvDataSegmentLength).
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength this target allows.
    pub max_burst_length: u32,
    /// FirstBurstLength this target allows.
    pub first_burst_length: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
        }
    }
}

/// The session's parameters once negotiated (RFC 7143 13; the defaults are the RFC's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The most data the *initiator* takes per PDU (its declared MaxRecvDataSegmentLength):
    /// what this target may send in one Data-In.
    pub max_xmit_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub header_digest: bool,
    pub data_digest: bool,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            max_xmit_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            header_digest: false,
            data_digest: false,
            default_time2wait: 2,
            default_time2retain: 0,
        }
    }
}

/// The answer to one operational key, or why the login fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send `key=value` back.
    Reply(String),
    /// Declarative or informational: nothing to send back.
    Silent,
    /// The value breaks the rules (a number out of range, a list with nothing we take): the
    /// login fails with an initiator error.
    Reject(&'static str),
}

fn parse_num(v: &str, lo: u32, hi: u32) -> Option<u32> {
    let n: u32 = v.parse().ok()?;
    (lo..=hi).contains(&n).then_some(n)
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yn(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// Answers operational key `key=value` (RFC 7143 13), updating `p`.
pub fn answer(key: &str, value: &str, p: &mut Params, lim: &Limits) -> Answer {
    let reply = |v: &str| Answer::Reply(format!("{key}={v}"));
    match key {
        // RFC 7143 13.1, 6.2.1: the answer is the first value of the initiator's list that the
        // target supports (CRC32C or None). Digests apply from the full feature phase on.
        "HeaderDigest" | "DataDigest" => {
            match value.split(',').find(|v| *v == "CRC32C" || *v == "None") {
                Some(v) => {
                    let on = v == "CRC32C";
                    if key == "HeaderDigest" {
                        p.header_digest = on;
                    } else {
                        p.data_digest = on;
                    }
                    reply(v)
                }
                None => Answer::Reject("digest: neither CRC32C nor None offered"),
            }
        }
        "MaxConnections" => match parse_num(value, 1, 65535) {
            Some(_) => reply("1"),
            None => Answer::Reject("MaxConnections"),
        },
        // RFC 7143 13.10: InitialR2T is OR: Yes if either side says Yes. This target asks for
        // R2T before unsolicited data beyond immediate data.
        "InitialR2T" => match yes_no(value) {
            Some(_) => {
                p.initial_r2t = true;
                reply("Yes")
            }
            None => Answer::Reject("InitialR2T"),
        },
        // 13.11: ImmediateData is AND.
        "ImmediateData" => match yes_no(value) {
            Some(b) => {
                p.immediate_data = b;
                reply(yn(b))
            }
            None => Answer::Reject("ImmediateData"),
        },
        // 13.12: declarative; what the initiator can receive.
        "MaxRecvDataSegmentLength" => match parse_num(value, 512, 16_777_215) {
            Some(n) => {
                p.max_xmit_data_segment_length = n;
                Answer::Silent
            }
            None => Answer::Reject("MaxRecvDataSegmentLength"),
        },
        // 13.13, 13.14: minimum of the two.
        "MaxBurstLength" => match parse_num(value, 512, 16_777_215) {
            Some(n) => {
                p.max_burst_length = n.min(lim.max_burst_length);
                reply(&p.max_burst_length.to_string())
            }
            None => Answer::Reject("MaxBurstLength"),
        },
        "FirstBurstLength" => match parse_num(value, 512, 16_777_215) {
            Some(n) => {
                p.first_burst_length = n.min(lim.first_burst_length);
                reply(&p.first_burst_length.to_string())
            }
            None => Answer::Reject("FirstBurstLength"),
        },
        // 13.15: maximum; 13.16: minimum.
        "DefaultTime2Wait" => match parse_num(value, 0, 3600) {
            Some(n) => {
                p.default_time2wait = n.max(2) as u16;
                reply(&p.default_time2wait.to_string())
            }
            None => Answer::Reject("DefaultTime2Wait"),
        },
        "DefaultTime2Retain" => match parse_num(value, 0, 3600) {
            Some(_) => {
                p.default_time2retain = 0;
                reply("0")
            }
            None => Answer::Reject("DefaultTime2Retain"),
        },
        // 13.17: minimum; one R2T at a time here.
        "MaxOutstandingR2T" => match parse_num(value, 1, 65535) {
            Some(_) => reply("1"),
            None => Answer::Reject("MaxOutstandingR2T"),
        },
        // 13.18, 13.19: OR; data in order is what this target does.
        "DataPDUInOrder" | "DataSequenceInOrder" => match yes_no(value) {
            Some(_) => reply("Yes"),
            None => Answer::Reject("in-order key"),
        },
        // 13.20: minimum; recovery within a connection is not offered.
        "ErrorRecoveryLevel" => match parse_num(value, 0, 2) {
            Some(_) => reply("0"),
            None => Answer::Reject("ErrorRecoveryLevel"),
        },
        // Keys of RFC 3720 that RFC 7143 dropped (markers), and the extension keys: not
        // taken, said so.
        "IFMarker" | "OFMarker" => reply("No"),
        "OFMarkInt" | "IFMarkInt" => reply("Irrelevant"),
        // Declared by the initiator, read by the caller (names, session type, alias).
        "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType" => Answer::Silent,
        _ => reply("NotUnderstood"),
    }
}

/// Hex-encodes with the `0x` prefix CHAP values carry.
pub fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Decodes a CHAP value: `0x` hex or `0b` base64 (RFC 7143 6.1: binary values), None if it is
/// neither.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.len() % 2 != 0 || h.is_empty() {
            return None;
        }
        return (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect();
    }
    if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        return from_base64(b);
    }
    None
}

fn from_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The CHAP response to challenge `challenge` with identifier `id` and `secret` (RFC 1994 4.1:
/// MD5 over the identifier, the secret and the challenge).
pub fn chap_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_the_rfc_functions() {
        let lim = Limits::default();
        let mut p = Params::default();
        assert_eq!(
            answer("MaxBurstLength", "16776192", &mut p, &lim),
            Answer::Reply("MaxBurstLength=1048576".into())
        );
        assert_eq!(p.max_burst_length, 1 << 20);
        assert_eq!(
            answer("FirstBurstLength", "1024", &mut p, &lim),
            Answer::Reply("FirstBurstLength=1024".into())
        );
        assert_eq!(
            answer("MaxRecvDataSegmentLength", "262144", &mut p, &lim),
            Answer::Silent
        );
        assert_eq!(p.max_xmit_data_segment_length, 262_144);
        assert_eq!(
            answer("InitialR2T", "No", &mut p, &lim),
            Answer::Reply("InitialR2T=Yes".into())
        );
        assert_eq!(
            answer("ImmediateData", "No", &mut p, &lim),
            Answer::Reply("ImmediateData=No".into())
        );
        assert!(!p.immediate_data);
        assert_eq!(
            answer("HeaderDigest", "None,CRC32C", &mut p, &lim),
            Answer::Reply("HeaderDigest=None".into())
        );
        assert!(!p.header_digest);
        assert_eq!(
            answer("HeaderDigest", "CRC32C,None", &mut p, &lim),
            Answer::Reply("HeaderDigest=CRC32C".into())
        );
        assert!(p.header_digest);
        assert!(matches!(
            answer("DataDigest", "MD5", &mut p, &lim),
            Answer::Reject(_)
        ));
        assert!(matches!(
            answer("MaxBurstLength", "12", &mut p, &lim),
            Answer::Reject(_)
        ));
        assert!(matches!(
            answer("MaxBurstLength", "x", &mut p, &lim),
            Answer::Reject(_)
        ));
        assert_eq!(
            answer("X-com.example.Key", "1", &mut p, &lim),
            Answer::Reply("X-com.example.Key=NotUnderstood".into())
        );
        assert_eq!(
            answer("ErrorRecoveryLevel", "2", &mut p, &lim),
            Answer::Reply("ErrorRecoveryLevel=0".into())
        );
    }

    /// RFC 1994's MD5 CHAP against a value computed elsewhere over the bytes
    /// 0x01 "secret" 0x00 0x11 0x22 (Python's hashlib.md5 over the same bytes).
    #[test]
    fn chap_md5_and_hex() {
        let r = chap_response(1, b"secret", &[0x00, 0x11, 0x22]);
        assert_eq!(to_hex(&r), "0x2c87fea1cd6b5fc997230761efdc087b");
        assert_eq!(from_hex("0x0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(from_hex("0x0a0"), None);
        assert_eq!(from_hex("0a0b"), None);
        assert_eq!(from_hex("0bAQID"), Some(vec![1, 2, 3]));
    }
}
