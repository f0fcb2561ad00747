//! PXE replies for option 93 = 0, 7, 9, 11, 16 and for user class "iPXE" in both encodings carry
//! the right file, next-server and options: checked by our parser and by tshark's DHCP dissector
//! (the replies, as sent, are written into a capture file with Ethernet/IP/UDP headers).

use crate::msg::{Client, Msg, parse};
use bootstorm_daemon::{config, serve};
use bootstorm_tests::{TempDir, run, tool};
use bootstorm_wire::dhcp::{MessageType, opt};
use bootstorm_wire::ethernet::Address;
use bootstorm_wire::frame::{PAYLOAD_OFFSET, emit_udp_headers};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
[server]
address = "127.0.0.1"
port = 0
workers = 1

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]
routers = ["198.18.0.1"]

[[boot]]
name = "ipxe"
match = { user_class = "iPXE" }
file = "http://198.18.0.1/boot.ipxe"

[[boot]]
name = "http"
match = { arch = ["efi-x64-http"] }
file = "http://198.18.0.1/efi/ipxe.efi"

[[boot]]
name = "bios"
match = { arch = ["bios"] }
file = "undionly.kpxe"

[[boot]]
name = "uefi"
match = { arch = ["efi-x64"] }
file = "ipxe.efi"
next_server = "198.18.0.2"

[[boot]]
name = "arm64"
match = { arch = ["efi-arm64"] }
file = "ipxe-arm64.efi"
"#;

struct Case {
    name: &'static str,
    arch: u16,
    user_class: Option<&'static [u8]>,
    vendor: &'static str,
    file: &'static str,
    next_server: Ipv4Addr,
    vendor_reply: &'static str,
}

const NS1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const NS2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

const CASES: &[Case] = &[
    Case {
        name: "bios",
        arch: 0,
        user_class: None,
        vendor: "PXEClient:Arch:00000:UNDI:002001",
        file: "undionly.kpxe",
        next_server: NS1,
        vendor_reply: "PXEClient",
    },
    Case {
        name: "efi-bc",
        arch: 7,
        user_class: None,
        vendor: "PXEClient:Arch:00007:UNDI:003016",
        file: "ipxe.efi",
        next_server: NS2,
        vendor_reply: "PXEClient",
    },
    Case {
        name: "efi-x64",
        arch: 9,
        user_class: None,
        vendor: "PXEClient:Arch:00009:UNDI:003016",
        file: "ipxe.efi",
        next_server: NS2,
        vendor_reply: "PXEClient",
    },
    Case {
        name: "arm64",
        arch: 11,
        user_class: None,
        vendor: "PXEClient:Arch:00011:UNDI:003000",
        file: "ipxe-arm64.efi",
        next_server: NS1,
        vendor_reply: "PXEClient",
    },
    Case {
        name: "http",
        arch: 16,
        user_class: None,
        vendor: "HTTPClient:Arch:00016:UNDI:003001",
        file: "http://198.18.0.1/efi/ipxe.efi",
        next_server: NS1,
        vendor_reply: "HTTPClient",
    },
    Case {
        name: "ipxe-raw",
        arch: 7,
        user_class: Some(b"iPXE"),
        vendor: "PXEClient:Arch:00007:UNDI:003010",
        file: "http://198.18.0.1/boot.ipxe",
        next_server: NS1,
        vendor_reply: "PXEClient",
    },
    Case {
        name: "ipxe-rfc3004",
        arch: 7,
        user_class: Some(b"\x04iPXE"),
        vendor: "PXEClient:Arch:00007:UNDI:003010",
        file: "http://198.18.0.1/boot.ipxe",
        next_server: NS1,
        vendor_reply: "PXEClient",
    },
];

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    // pcap global header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_ETHERNET.
    for v in [
        0xa1b2_c3d4u32.to_le_bytes(),
        [2, 0, 4, 0],
        [0; 4],
        [0; 4],
        65535u32.to_le_bytes(),
        1u32.to_le_bytes(),
    ] {
        out.extend_from_slice(&v);
    }
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn pxe_replies_by_architecture_and_user_class_checked_by_tshark() {
    let tshark = tool("tshark", "tshark");
    let s = config::parse(Path::new("pxe.toml"), CONFIG).unwrap();
    let srv = serve::start(&s).unwrap();
    let mut frames = Vec::new();
    for (n, c) in CASES.iter().enumerate() {
        let client = Client::new(&srv);
        let mut m = Msg::new(MessageType::Discover, n as u8 + 1);
        m.extra
            .push((opt::CLIENT_ARCH, c.arch.to_be_bytes().to_vec()));
        m.extra
            .push((opt::VENDOR_CLASS_ID, c.vendor.as_bytes().to_vec()));
        m.extra
            .push((opt::CLIENT_UUID, [&[0u8][..], &[n as u8; 16]].concat()));
        m.extra
            .push((opt::PARAMETER_REQUEST_LIST, vec![1, 3, 43, 60, 66, 67, 97]));
        if let Some(uc) = c.user_class {
            m.extra.push((opt::USER_CLASS, uc.to_vec()));
        }
        client.send(&m);
        let raw = client
            .recv_raw()
            .unwrap_or_else(|| panic!("{}: no OFFER", c.name));
        let r = parse(&raw);
        assert_eq!(r.mt, MessageType::Offer, "{}", c.name);
        assert_eq!(r.file, c.file.as_bytes(), "{}", c.name);
        assert_eq!(r.siaddr, c.next_server, "{}", c.name);
        assert_eq!(
            r.option(opt::VENDOR_CLASS_ID),
            Some(c.vendor_reply.as_bytes()),
            "{}",
            c.name
        );
        assert_eq!(
            r.option(opt::BOOTFILE_NAME),
            Some(c.file.as_bytes()),
            "{}",
            c.name
        );
        assert_eq!(
            r.option(opt::CLIENT_UUID).map(<[u8]>::len),
            Some(17),
            "{}",
            c.name
        );
        if c.vendor_reply == "PXEClient" {
            assert_eq!(
                r.option(opt::VENDOR_SPECIFIC),
                Some(&[6, 1, 8, 255][..]),
                "{}",
                c.name
            );
            assert_eq!(
                r.option(opt::TFTP_SERVER_NAME),
                Some(c.next_server.to_string().as_bytes()),
                "{}",
                c.name
            );
        } else {
            assert_eq!(r.option(opt::VENDOR_SPECIFIC), None, "{}", c.name);
        }
        let mut frame = vec![0u8; PAYLOAD_OFFSET + raw.len()];
        frame[PAYLOAD_OFFSET..].copy_from_slice(&raw);
        let len = emit_udp_headers(
            &mut frame,
            Address([2, 0, 0, 0, 0, 1]),
            Address::BROADCAST,
            SocketAddrV4::new(NS1, 67),
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
            raw.len(),
        )
        .unwrap();
        frame.truncate(len);
        frames.push(frame);
    }
    srv.stop();
    let dir = TempDir::new();
    let pcap = dir.join("pxe.pcap");
    write_pcap(&pcap, &frames);
    let out = run(
        Command::new(&tshark).arg("-r").arg(&pcap).args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "dhcp.option.dhcp",
            "-e",
            "dhcp.file",
            "-e",
            "dhcp.ip.server",
            "-e",
            "dhcp.option.vendor_class_id",
            "-e",
            "dhcp.option.tftp_server_name",
            "-e",
            "dhcp.option.bootfile_name",
            "-e",
            "dhcp.option.vendor.pxeclient.discovery_control",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ]),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        CASES.len(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (c, line) in CASES.iter().zip(&lines) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[0], "2", "{}: tshark sees an OFFER: {line}", c.name);
        assert_eq!(f[1], c.file, "{}: {line}", c.name);
        assert_eq!(f[2], c.next_server.to_string(), "{}: {line}", c.name);
        assert_eq!(f[3], c.vendor_reply, "{}: {line}", c.name);
        assert_eq!(f[5], c.file, "{}: {line}", c.name);
        if c.vendor_reply == "PXEClient" {
            assert_eq!(f[4], c.next_server.to_string(), "{}: {line}", c.name);
            assert_eq!(f[6], "0x08", "{}: discovery control {line}", c.name);
        }
        assert_eq!(
            f[7], "",
            "{}: tshark reports the packet malformed: {line}",
            c.name
        );
    }
}
