//! The TFTP runtime's tests: the file source's helpers, and a whole PXE flow on the in-memory
//! network.

use super::source::{client_dir, parse_arp_table};
use super::*;

/// Issue 13: a whole PXE flow through the in-memory packet queues, in milliseconds: DORA
/// with the DHCP worker the daemon runs (its boot rule for UEFI x64 names `boot.efi`), then
/// that file over TFTP from the server core the daemon's TFTP workers run, with the
/// daemon's file source over a real root: windowsize 8, every 9th datagram after the
/// request lost in each direction, on made-up time (the retransmission timeouts pass in no
/// real time at all).
#[test]
fn a_pxe_flow_through_memory_queues_with_loss_both_ways() {
    use crate::dhcp_worker::tests::{Net, SERVER, message_with};
    use bootstorm_io::mem::{self, Side};
    use bootstorm_io::{RxQueue, TxMeta, TxQueue};
    use bootstorm_wire::dhcp::MessageType;
    let root = std::env::temp_dir().join(format!("bs-pxe-flow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 977) as u8).collect();
    std::fs::write(root.join("boot.efi"), &image).unwrap();
    let text = format!(
        r#"
[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]

[[boot]]
name = "uefi-x64"
match = {{ arch = [7] }}
file = "boot.efi"

[tftp]
root = "{}"
"#,
        root.display()
    );
    let settings = crate::config::parse(std::path::Path::new("pxe.toml"), &text).unwrap();
    let dhcp = Arc::new(bootstorm_dhcp::Server::new(settings.dhcp.clone()).unwrap());

    // DHCP: DISCOVER and REQUEST as EDK2 sends them (arch 7, PXEClient).
    let mut net = Net::start(2, None, dhcp);
    let pxe: [(u8, &[u8]); 2] = [(93, &[0, 7]), (60, b"PXEClient:Arch:00007:UNDI:003016")];
    net.send(&[message_with(MessageType::Discover, 1, None, &pxe)]);
    let offer = net.replies(1).remove(0);
    assert_eq!(
        (offer.mt, offer.file.as_str()),
        (MessageType::Offer, "boot.efi")
    );
    net.send(&[message_with(
        MessageType::Request,
        1,
        Some(offer.yiaddr),
        &pxe,
    )]);
    let ack = net.replies(1).remove(0);
    assert_eq!(ack.mt, MessageType::Ack);
    assert_eq!((ack.file.as_str(), ack.siaddr), ("boot.efi", SERVER));
    net.stop();

    // TFTP: the machine at its leased address fetches the file from siaddr.
    let (mut server_side, mut client_side) = mem::wire(
        Side {
            addr: SERVER,
            port: 69,
            queues: 1,
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 1],
        },
        Side {
            addr: ack.yiaddr,
            port: 3001,
            queues: 1,
            ifindex: 3,
            mac: [0x52, 0x54, 0, 0, 0, 1],
        },
    );
    let (mut srx, mut stx) = server_side.remove(0);
    let (mut crx, mut ctx) = client_side.remove(0);
    let lossy = || {
        let mut n = 0u64;
        Box::new(move |_: &[u8], _: &bootstorm_io::RxMeta| {
            n += 1;
            n == 1 || !n.is_multiple_of(9)
        }) as bootstorm_io::mem::Filter
    };
    stx.set_filter(lossy());
    ctx.set_filter(lossy());
    let t = settings.tftp.clone().unwrap();
    let mut core = Server::new(
        Config {
            limits: t.limits,
            max_transfers: 10,
        },
        Arc::new(Counters::default()),
    );
    let mut host = FileHost {
        cache: Arc::new(FileCache::new(&t.root, t.max_file_size).unwrap()),
        max_file_size: t.max_file_size,
        unique_root: None,
        mac_of: None,
        note: None,
        upload: None,
        upload_seq: Arc::default(),
    };
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(b"boot.efi\x00octet\x00blksize\x001468\x00windowsize\x008\x00");
    let to_server = |port: u16| TxMeta::to(SocketAddrV4::new(ack.siaddr, port));
    ctx.push(&rrq, &to_server(69));
    ctx.flush().unwrap();
    let mut now = Instant::from_millis(1_000);
    let (mut got, mut expected, mut in_window) = (Vec::new(), 1u16, 0u16);
    let mut buf = vec![0u8; 2048];
    let mut finished = None;
    for _ in 0..200_000 {
        let mut moved = false;
        // The server side: requests to port 69, the rest to a transfer's port (40000+id).
        let n = srx.recv(Duration::ZERO).unwrap();
        for i in 0..n {
            let (d, m) = srx.get(i);
            moved = true;
            if m.dst.port() == 69 {
                let a = core.handle_request(now, m.src, *m.dst.ip(), d, &mut host);
                assert!(matches!(a, Accepted::Transfer { read: true, .. }), "{a:?}");
            } else {
                let id = TransferId(u32::from(m.dst.port() - 40_000));
                core.handle_datagram(now, id, m.src, d);
            }
        }
        while let Some(tx) = core.poll_transmit(now, &mut buf) {
            let Source::Transfer(id) = tx.from else {
                panic!("a refusal: {:?}", Repr::parse(&buf[..tx.len]))
            };
            let meta = TxMeta {
                sport: 40_000 + id.0 as u16,
                ..TxMeta::to(tx.to)
            };
            stx.push(&buf[..tx.len], &meta);
        }
        stx.flush().unwrap();
        if let Some(f) = core.poll_event() {
            finished = Some(f);
            break;
        }
        // The client: ACK the end of each window, or the last block in order after a gap.
        let n = crx.recv(Duration::ZERO).unwrap();
        for i in 0..n {
            let (d, m) = crx.get(i);
            let tid_port = m.src.port();
            let block = match Repr::parse(d).unwrap() {
                Repr::OAck { .. } => Some(0),
                Repr::Data { block, data } if block == expected => {
                    got.extend_from_slice(data);
                    in_window += 1;
                    expected = expected.wrapping_add(1);
                    (data.len() < 1468 || in_window == 8).then(|| {
                        in_window = 0;
                        block
                    })
                }
                Repr::Data { .. } => {
                    in_window = 0;
                    Some(expected.wrapping_sub(1))
                }
                other => panic!("{other:?}"),
            };
            if let Some(b) = block {
                let mut a = vec![0, 4];
                a.extend_from_slice(&b.to_be_bytes());
                ctx.push(&a, &to_server(tid_port));
                moved = true;
            }
        }
        ctx.flush().unwrap();
        if !moved {
            // Nothing in flight either way: time jumps to the server's next deadline.
            now = core.poll_timeout().expect("the transfer has a deadline");
            core.handle_timeout(now);
        }
    }
    let f = finished.expect("the transfer ended");
    assert_eq!(f.state, State::Done, "{f:?}");
    assert!(got == image, "the boot file arrived byte-exact");
    assert!(
        stx.lost > 5 && ctx.lost > 2,
        "lost {} / {}",
        stx.lost,
        ctx.lost
    );
    assert!(f.resent > 0);
    let simulated = now.saturating_since(Instant::from_millis(1_000));
    assert!(
        simulated.as_millis() >= 1_000,
        "timeouts passed: {simulated:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn neighbour_table_lines_give_macs() {
    let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
        198.18.1.7       0x1         0x2         52:54:00:12:34:56     *        veth-s\n\
        198.18.1.8       0x1         0x0         00:00:00:00:00:00     *        veth-s\n";
    assert_eq!(
        parse_arp_table(table, Ipv4Addr::new(198, 18, 1, 7)),
        Some(vec![0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(
        parse_arp_table(table, Ipv4Addr::new(198, 18, 1, 8)),
        None,
        "incomplete"
    );
    assert_eq!(parse_arp_table(table, Ipv4Addr::new(198, 18, 1, 9)), None);
    assert_eq!(parse_arp_table("", Ipv4Addr::new(198, 18, 1, 7)), None);
}

#[test]
fn client_directories_are_named_like_dnsmasq() {
    let ip = Ipv4Addr::new(198, 18, 1, 7);
    assert_eq!(client_dir(UniqueRoot::Ip, ip, None).unwrap(), "198.18.1.7");
    let f: MacLookup = Arc::new(|_| Some(vec![0x52, 0x54, 0, 0xab, 0x04, 0xff]));
    assert_eq!(
        client_dir(UniqueRoot::Mac, ip, Some(&f)).unwrap(),
        "52-54-00-ab-04-ff"
    );
}
