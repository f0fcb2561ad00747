//! Any bytes: the DHCP view, option iterator and Repr (with and without RFC 3396 scratch) never
//! panic; a reply header emitted from a parsed request (a long client id split by the writer)
//! parses back to the same fields; whole frames parse or fail cleanly.
#![no_main]

use bootstorm_wire::dhcp::{self, OptionWriter, Packet, Repr};
use bootstorm_wire::frame;
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let _ = frame::parse_udp(data);
    let Ok(p) = Packet::new_checked(data) else { return };
    for o in p.all_options().take(2000) {
        let _ = o;
    }
    let _ = (p.chaddr(), p.sname(), p.file(), p.xid(), p.flags());
    let _ = Repr::parse(&p);
    // The server's parse: split options joined (RFC 3396) into scratch space.
    let mut scratch = [0u8; dhcp::SCRATCH_LEN];
    let Ok(r) = Repr::parse_with(&p, &mut scratch) else { return };
    let _ = r.client_arches().count();
    if let Some(u) = r.user_class {
        let _ = dhcp::user_classes(u).count();
    }
    // Emit a reply header and options from what was parsed, then parse it again.
    let mut out = [0u8; 1500];
    let yiaddr = Ipv4Addr::new(198, 18, 1, 1);
    let mut q = dhcp::emit_reply_header(&mut out, &r, yiaddr, Ipv4Addr::UNSPECIFIED).unwrap();
    let mut w = OptionWriter::new(q.options_mut(), 1000);
    w.push(dhcp::opt::MESSAGE_TYPE, &[2]).unwrap();
    if let Some(id) = r.client_id {
        // A joined id may be longer than the room here; then there is nothing to compare.
        if w.push(dhcp::opt::CLIENT_ID, id).is_err() {
            return;
        }
    }
    let n = dhcp::HEADER_LEN + w.finish(dhcp::MIN_MESSAGE - dhcp::HEADER_LEN);
    let back = Packet::new_checked(&out[..n]).expect("our reply is a valid packet");
    let mut scratch2 = [0u8; dhcp::SCRATCH_LEN];
    let b = Repr::parse_with(&back, &mut scratch2).expect("our reply parses");
    assert_eq!(b.xid, r.xid);
    assert_eq!(b.chaddr, r.chaddr);
    assert_eq!(b.hlen, r.hlen);
    assert_eq!(b.yiaddr, Some(yiaddr));
    assert_eq!(b.client_id, r.client_id);
    assert_eq!(b.message_type, Some(dhcp::MessageType::Offer));
});
