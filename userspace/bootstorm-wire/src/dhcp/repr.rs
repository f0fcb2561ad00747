//! [`Repr`]: what a request says, lifted from the [`Packet`] view into validated fields that
//! borrow from the buffer (option 52's overflow into `file` and `sname` included).

use super::*;

/// What a DHCP request says, validated and borrowed from its buffer. Only the options a server
/// acts on get fields; the packet keeps all others for whoever needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repr<'a> {
    /// `op` as a byte (1 request, 2 reply).
    pub op: u8,
    /// `htype`.
    pub htype: u8,
    /// `hlen`.
    pub hlen: u8,
    /// `hops`.
    pub hops: u8,
    /// `xid`.
    pub xid: u32,
    /// `secs`.
    pub secs: u16,
    /// `flags`.
    pub flags: u16,
    /// `ciaddr`.
    pub ciaddr: Option<Ipv4Addr>,
    /// `yiaddr`.
    pub yiaddr: Option<Ipv4Addr>,
    /// `siaddr`.
    pub siaddr: Option<Ipv4Addr>,
    /// `giaddr`.
    pub giaddr: Option<Ipv4Addr>,
    /// All 16 bytes of `chaddr`.
    pub chaddr: [u8; 16],
    /// Option 53.
    pub message_type: Option<MessageType>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51, seconds.
    pub lease_time: Option<u32>,
    /// Option 61, raw (type byte included).
    pub client_id: Option<&'a [u8]>,
    /// Option 12.
    pub hostname: Option<&'a [u8]>,
    /// Option 60.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77, raw: RFC 3004 (length-prefixed instances) or a plain string as iPXE sends it.
    pub user_class: Option<&'a [u8]>,
    /// Option 55.
    pub parameter_request_list: Option<&'a [u8]>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 93, raw: a list of 16-bit architecture types (RFC 4578 2.1).
    pub client_arch: Option<&'a [u8]>,
    /// Option 94, raw.
    pub client_ndi: Option<&'a [u8]>,
    /// Option 97, raw (type byte 0 then 16 bytes of UUID).
    pub client_uuid: Option<&'a [u8]>,
    /// Option 82, raw sub-options.
    pub relay_agent_info: Option<&'a [u8]>,
    /// Option 52.
    pub overload: u8,
    /// Informational options left out because their value was invalid (an empty host name,
    /// vendor or user class, an odd architecture list): counted, and the client served.
    pub bad_options: u8,
    /// `file` up to its NUL, unless overloaded with options.
    pub file: &'a [u8],
    /// `sname` up to its NUL, unless overloaded with options.
    pub sname: &'a [u8],
}

fn nonzero(a: Ipv4Addr) -> Option<Ipv4Addr> {
    if a.is_unspecified() { None } else { Some(a) }
}

fn exact<const N: usize>(data: &[u8], what: &'static str) -> Result<[u8; N]> {
    <[u8; N]>::try_from(data).map_err(|_| Error::Malformed(what))
}

/// Options a client may send longer than 255 bytes, and so split into several instances that a
/// receiver must concatenate (RFC 3396 section 6). Fixed-size options (50, 51, 53, 54, 57) are
/// never split: a second instance of those is ignored.
const CONCATENATED: [u8; 9] = [
    opt::CLIENT_ID,
    opt::HOSTNAME,
    opt::VENDOR_CLASS_ID,
    opt::USER_CLASS,
    opt::PARAMETER_REQUEST_LIST,
    opt::CLIENT_ARCH,
    opt::CLIENT_NDI,
    opt::CLIENT_UUID,
    opt::RELAY_AGENT_INFO,
];

/// Bytes of scratch space [`Repr::parse_with`] may need: concatenated options never hold more
/// than the message, and a message never exceeds a UDP datagram on an Ethernet path.
pub const SCRATCH_LEN: usize = 1500;

impl<'a> Repr<'a> {
    /// [`Repr::parse_with`] without scratch space: an option sent as several instances counts
    /// with its first instance only. For tools and tests; a server uses `parse_with`.
    pub fn parse(p: &Packet<&'a [u8]>) -> Result<Repr<'a>> {
        Self::parse_with(p, &mut [])
    }

    /// Validates a checked packet and lifts its fields. Fixed-size options with a wrong length and
    /// truncated options are errors; unknown options are skipped. A variable-length option sent
    /// as several instances is concatenated into `scratch` (RFC 3396 section 7: "the
    /// concatenation of all instances"); with too little scratch its first instance counts.
    /// A scratch of [`SCRATCH_LEN`] bytes, or the packet's length, always suffices. An
    /// informational option whose value is invalid (an empty host name or vendor class, an odd
    /// architecture list) is left out and counted in `bad_options`: the client is still served.
    pub fn parse_with(p: &Packet<&'a [u8]>, scratch: &'a mut [u8]) -> Result<Repr<'a>> {
        let b: &'a [u8] = p.buffer;
        let mut r = Repr {
            op: b[field::OP],
            htype: p.htype(),
            hlen: p.hlen(),
            hops: p.hops(),
            xid: p.xid(),
            secs: p.secs(),
            flags: p.flags(),
            ciaddr: nonzero(p.ciaddr()),
            yiaddr: nonzero(p.yiaddr()),
            siaddr: nonzero(p.siaddr()),
            giaddr: nonzero(p.giaddr()),
            ..Repr::default()
        };
        r.chaddr.copy_from_slice(&b[field::CHADDR]);
        // First pass: fixed-size options, and the first instance of each variable-length one;
        // `seen` and `split` note which of those came more than once.
        let mut first: [Option<&'a [u8]>; CONCATENATED.len()] = [None; CONCATENATED.len()];
        let mut split = 0u16;
        for o in all_options_in(b) {
            let o = o?;
            let d = o.data;
            if let Some(k) = CONCATENATED.iter().position(|c| *c == o.code) {
                if first[k].is_some() {
                    split |= 1 << k;
                } else {
                    first[k] = Some(d);
                }
                continue;
            }
            match o.code {
                opt::MESSAGE_TYPE if r.message_type.is_none() => {
                    r.message_type = Some(MessageType::from(exact::<1>(d, "option 53 length")?[0]));
                }
                opt::REQUESTED_IP if r.requested_ip.is_none() => {
                    r.requested_ip = Some(Ipv4Addr::from(exact::<4>(d, "option 50 length")?));
                }
                opt::SERVER_ID if r.server_id.is_none() => {
                    r.server_id = Some(Ipv4Addr::from(exact::<4>(d, "option 54 length")?));
                }
                opt::LEASE_TIME if r.lease_time.is_none() => {
                    r.lease_time = Some(u32::from_be_bytes(exact::<4>(d, "option 51 length")?));
                }
                opt::MAX_MESSAGE_SIZE if r.max_message_size.is_none() => {
                    r.max_message_size =
                        Some(u16::from_be_bytes(exact::<2>(d, "option 57 length")?));
                }
                opt::OVERLOAD => {
                    let v = exact::<1>(d, "option 52 length")?[0];
                    if !(1..=3).contains(&v) {
                        return Err(Error::Malformed("option 52 value"));
                    }
                    r.overload = v;
                }
                _ => {}
            }
        }
        // Second pass, only for options that came split (rare: a long client id or request
        // list): each is the concatenation of its instances, in order (RFC 3396 section 7).
        let mut scratch = scratch;
        if split != 0 {
            for (k, code) in CONCATENATED.iter().enumerate() {
                if split & (1 << k) == 0 {
                    continue;
                }
                let total: usize = all_options_in(b)
                    .filter_map(|o| o.ok())
                    .filter(|o| o.code == *code)
                    .map(|o| o.data.len())
                    .sum();
                if total > scratch.len() {
                    continue; // too little scratch: the first instance counts
                }
                let (joined, rest) = core::mem::take(&mut scratch).split_at_mut(total);
                let mut at = 0;
                for o in all_options_in(b).filter_map(|o| o.ok()) {
                    if o.code == *code {
                        joined[at..at + o.data.len()].copy_from_slice(o.data);
                        at += o.data.len();
                    }
                }
                first[k] = Some(joined);
                scratch = rest;
            }
        }
        let [
            client_id,
            hostname,
            vendor_class,
            user_class,
            prl,
            arch,
            ndi,
            uuid,
            relay,
        ] = first;
        // RFC 2132 9.14: a client identifier has at least two octets (type and something). It
        // names the client, so a bad one is not silently replaced by chaddr: the message is bad.
        if let Some(d) = client_id {
            if d.len() < 2 {
                return Err(Error::Malformed("option 61 length"));
            }
            r.client_id = Some(d);
        }
        // RFC 2132 3.14, 9.13, RFC 3004: host name, vendor class and user class have a minimum
        // length of 1. An empty one says nothing: ignore it and serve the client.
        let mut keep = |d: Option<&'a [u8]>, valid: fn(&[u8]) -> bool| match d {
            Some(d) if valid(d) => Some(d),
            Some(_) => {
                r.bad_options = r.bad_options.saturating_add(1);
                None
            }
            None => None,
        };
        let nonempty = |d: &[u8]| !d.is_empty();
        let hostname = keep(hostname, nonempty);
        let vendor_class = keep(vendor_class, nonempty);
        let user_class = keep(user_class, nonempty);
        // RFC 4578 2.1: a list of 16-bit types.
        let arch = keep(arch, |d| !d.is_empty() && d.len() % 2 == 0);
        r.hostname = hostname;
        r.vendor_class = vendor_class;
        r.user_class = user_class;
        r.client_arch = arch;
        r.parameter_request_list = prl;
        r.client_ndi = ndi;
        r.client_uuid = uuid;
        r.relay_agent_info = relay;
        if r.overload & 1 == 0 {
            r.file = c_str(&b[field::FILE]);
        }
        if r.overload & 2 == 0 {
            r.sname = c_str(&b[field::SNAME]);
        }
        Ok(r)
    }

    /// The hardware address: the first `hlen` bytes of `chaddr`.
    pub fn chaddr(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen).min(16)]
    }

    /// True if the broadcast bit is set.
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// The architecture types of option 93, in the client's order.
    pub fn client_arches(&self) -> impl Iterator<Item = u16> + 'a {
        self.client_arch
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    /// True if the client asked for `code` in option 55.
    pub fn requested(&self, code: u8) -> bool {
        self.parameter_request_list
            .is_some_and(|l| l.contains(&code))
    }
}

/// Iterates the classes of option 77. RFC 3004 encodes each as a length byte and data; iPXE and
/// some firmware send a plain string instead. If the option does not parse as RFC 3004 exactly,
/// the whole option is one class.
pub fn user_classes(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rfc3004 = true;
    let mut pos = 0;
    while pos < data.len() {
        let len = usize::from(data[pos]);
        if len == 0 || pos + 1 + len > data.len() {
            rfc3004 = false;
            break;
        }
        pos += 1 + len;
    }
    let (mut rest, whole) = if rfc3004 {
        (data, None)
    } else {
        (&[][..], Some(data))
    };
    whole.into_iter().chain(core::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let (class, tail) = tail.split_at(usize::from(len));
        rest = tail;
        Some(class)
    }))
}
