//! What a load generator takes from the network, which may be any server (or none): any bytes
//! as a DHCP reply to a waiting client, a TFTP packet to a download, an HTTP response in any
//! pieces, an ARP packet and a frame seen in L2 mode (with and without the UDP checksum check).
//! None of them may panic, and every download must end with a result once the input runs out.
#![no_main]

use bootstorm_loadgen::body::Expect;
use bootstorm_loadgen::dhcp::Client;
use bootstorm_loadgen::http::{Get, target};
use bootstorm_loadgen::profile::Profile;
use bootstorm_loadgen::tftp::Download;
use bootstorm_wire::{arp, frame};
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};

fuzz_target!(|data: &[u8]| {
    let _ = arp::Arp::parse(data);
    let _ = frame::parse_udp_with(data, false);
    let _ = frame::parse_udp_with(data, true);

    let p = Profile::named("uefi-x64").unwrap();
    let mut buf = [0u8; 2048];
    // DHCP: the reply goes to a client in SELECTING; the bytes' first 4 are used as its xid so
    // the fuzzer can reach the state machine.
    let xid = data.get(4..8).map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
    let mac = data.get(28..34).map_or([0; 6], |m| [m[0], m[1], m[2], m[3], m[4], m[5]]);
    let mut c = Client::new(mac, xid, Ipv4Addr::UNSPECIFIED);
    let _ = c.start(0, &p, &mut buf);
    let _ = c.on_reply(1, &p, data, &mut buf);
    let _ = c.on_reply(2, &p, data, &mut buf);
    let _ = c.lease();

    // TFTP: the same bytes twice, from the server and from another port.
    let server = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 69);
    let tid = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);
    let mut dl = Download::new("boot.efi", server, &p, Expect { size: Some(1000), sha256: Some([0; 32]) });
    let _ = dl.start(0, &p, &mut buf);
    let _ = dl.on_packet(1, tid, data, &mut buf);
    let _ = dl.on_packet(2, server, data, &mut buf);
    for t in 0..10u64 {
        let _ = dl.on_timer(10_000_000 * (t + 1), &mut buf);
    }
    assert!(dl.result().is_some(), "a download that times out has a result");

    // HTTP: the bytes as a response, cut where the first byte says.
    let t = target("http://198.18.0.1:8080/x", Ipv4Addr::UNSPECIFIED, 80).unwrap();
    let mut g = Get::new(t, Expect { size: None, sha256: None }, 0, 1_000_000);
    let cut = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    g.on_data(1, &data[..cut]);
    g.on_data(2, &data[cut..]);
    g.on_eof();
    assert!(g.result().is_some(), "an ended response has a result");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = target(s, Ipv4Addr::LOCALHOST, 80);
    }
});
