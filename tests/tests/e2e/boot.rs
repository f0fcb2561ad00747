//! A real machine boots: qemu with its iPXE network ROM, on a tap bridged to the client veth,
//! does DHCP against bootstorm, fetches an iPXE script (over TFTP, and in a second case over HTTP
//! through the iPXE user-class rule), and the script prints a marker on the serial console.
//! Software emulation is slow: each run is bounded (two minutes) and the VM is always stopped.
//! A third case boots from a disk: iPXE `sanboot`s, from bootstorm's iSCSI target, the root path
//! bootstorm's DHCP gave it, and the disk's boot sector prints its own marker.

use bootstorm_tests::{Lab, Proc, ServerProc, need_root, tool, wait_until};
use std::process::Stdio;
use std::time::Duration;

const ROM: &str = "/usr/lib/ipxe/qemu/pxe-e1000.rom";

/// qemu-system-x86_64 with the iPXE ROM on `tap`, its serial console written to `serial`.
fn vm(lab: &Lab, tap: &str, serial: &std::path::Path) -> Proc {
    let qemu = tool("qemu-system-x86_64", "qemu-system-x86");
    assert!(
        std::path::Path::new(ROM).exists(),
        "{ROM} is missing: apt-get install -y ipxe-qemu"
    );
    let mut cmd = lab.client_cmd(&qemu);
    cmd.args([
        "-machine",
        "accel=tcg",
        "-m",
        "256",
        "-nographic",
        "-vga",
        "none",
        "-no-reboot",
    ])
    .args([
        "-netdev",
        &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
    ])
    .args(["-device", "e1000,netdev=n0,bootindex=1"])
    // -vga none makes SeaBIOS mirror the text console (iPXE's output) to the serial port,
    // which -nographic puts on stdout.
    .stdout(std::fs::File::create(serial).unwrap())
    .stderr(Stdio::null());
    Proc::spawn("qemu", &mut cmd)
}

fn boot(case: &str, script_url: &str, http: bool, io: &str) {
    if !need_root(case) {
        return;
    }
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    let tap = lab.client_tap();
    let marker = format!("BOOTSTORM-MARKER-{case}");
    let script = format!("#!ipxe\necho {marker}\nsleep 1\n");
    // Over TFTP the script is in the machine's own directory (per-client root by MAC, its MAC
    // learnt from its DHCP lease), and the shared root holds a decoy; HTTP serves the root.
    let (tftp_extra, http_section) = if http {
        std::fs::write(root.join("boot.ipxe"), &script).unwrap();
        ("", "[http]\nport = 8080\n")
    } else {
        std::fs::create_dir(root.join("52-54-00-12-34-56")).unwrap();
        std::fs::write(root.join("52-54-00-12-34-56/boot.ipxe"), &script).unwrap();
        std::fs::write(root.join("boot.ipxe"), "#!ipxe\necho WRONG-ROOT\nsleep 1\n").unwrap();
        ("unique_root = \"mac\"\n", "")
    };
    let config = format!(
        r#"
[server]
interfaces = ["@IF@"]
control_socket = "@CONTROL@"
io = "{io}"

[[subnet]]
network = "198.18.0.0/16"
interface = "@IF@"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]
routers = ["198.18.0.1"]

# iPXE (the ROM itself sends user class "iPXE") gets the script: no chainload loop.
[[boot]]
match = {{ user_class = "iPXE" }}
file = "{script_url}"

[[boot]]
match = {{ arch = ["bios"] }}
file = "undionly.kpxe"

[tftp]
root = "{root}"
{tftp_extra}
{http_section}"#,
        root = root.display()
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    assert_eq!(
        srv.stats()["dhcp_path"],
        if io == "xdp" { "xdp" } else { "socket" }
    );
    let serial = dir.join("serial.log");
    let mut vm = vm(&lab, &tap, &serial);
    let read = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let booted = wait_until(Duration::from_secs(120), || read().contains(&marker));
    vm.stop();
    let text = read();
    assert!(
        booted,
        "no marker on the serial console:\n{}\nserver:\n{}",
        text,
        srv.log_text()
    );
    assert!(text.contains("Next server: 198.18.0.1"), "{text}");
    assert!(text.contains(&format!("Filename: {script_url}")), "{text}");
    let leases = srv.leases_json().unwrap();
    assert!(
        leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["mac"] == "52:54:00:12:34:56" && l["state"] == "bound"),
        "{leases}"
    );
}

#[test]
fn qemu_ipxe_boots_a_script_over_tftp() {
    boot(
        "qemu_ipxe_boots_a_script_over_tftp",
        "boot.ipxe",
        false,
        "socket",
    );
}

/// The same machine with DHCP on the XDP fast path: its ROM's DISCOVER (broadcast, no
/// address) and iPXE's are answered from AF_XDP frames.
#[test]
fn qemu_ipxe_boots_a_script_with_dhcp_on_the_xdp_path() {
    boot(
        "qemu_ipxe_boots_a_script_with_dhcp_on_the_xdp_path",
        "boot.ipxe",
        false,
        "xdp",
    );
}

#[test]
fn qemu_ipxe_boots_a_script_over_http() {
    boot(
        "qemu_ipxe_boots_a_script_over_http",
        "http://198.18.0.1:8080/boot.ipxe",
        true,
        "socket",
    );
}

/// A boot sector (real mode, loaded at 0x7c00) that writes `MARKER` to COM1 and halts.
fn boot_sector(marker: &[u8]) -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 34] = [
        0xfa,                   // cli
        0x31, 0xc0,             // xor ax, ax
        0x8e, 0xd8,             // mov ds, ax
        0xbe, 0x22, 0x7c,       // mov si, 0x7c22 (the text, after this code)
        0xac,                   // next: lodsb
        0x84, 0xc0,             // test al, al
        0x74, 0x12,             // jz done
        0x88, 0xc4,             // mov ah, al
        0xba, 0xfd, 0x03,       // wait: mov dx, 0x3fd (line status)
        0xec,                   // in al, dx
        0xa8, 0x20,             // test al, 0x20 (transmitter empty)
        0x74, 0xf8,             // jz wait
        0xba, 0xf8, 0x03,       // mov dx, 0x3f8 (COM1 data)
        0x88, 0xe0,             // mov al, ah
        0xee,                   // out dx, al
        0xeb, 0xe9,             // jmp next
        0xf4,                   // done: hlt
        0xeb, 0xfd,             // jmp done
    ];
    let mut s = code.to_vec();
    s.extend_from_slice(marker);
    s.extend_from_slice(b"\r\n\0");
    assert!(s.len() <= 446);
    s.resize(510, 0);
    s.extend_from_slice(&[0x55, 0xaa]);
    s
}

/// A diskless machine: its DHCP lease names the script and the root path of a golden image's
/// target (option 17 built from `iscsi_target`, option 203 an initiator IQN of its MAC), iPXE
/// `sanboot`s it, and the disk's boot sector prints its marker. Its overlay, keyed by the MAC
/// of its lease, was made at its login.
#[test]
fn qemu_ipxe_sanboots_a_diskless_disk_from_the_iscsi_target() {
    if !need_root("qemu_ipxe_sanboots_a_diskless_disk_from_the_iscsi_target") {
        return;
    }
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    let tap = lab.client_tap();
    let marker = "BOOTSTORM-SANBOOT-FROM-ISCSI";
    // 64 MiB (sparse): iPXE's INT 13 guesses 255 heads and 63 sectors for a disk without a
    // partition table, and a disk under 8 MiB would have no cylinder at all.
    std::fs::write(dir.join("golden.img"), boot_sector(marker.as_bytes())).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("golden.img"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    std::fs::write(
        root.join("boot.ipxe"),
        "#!ipxe\necho initiator ${initiator-iqn} root ${root-path}\nsanboot\n",
    )
    .unwrap();
    let config = format!(
        r#"
[server]
interfaces = ["@IF@"]
control_socket = "@CONTROL@"

[[subnet]]
network = "198.18.0.0/16"
interface = "@IF@"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]

[[boot]]
match = {{ user_class = "iPXE" }}
file = "boot.ipxe"
iscsi_target = "iqn.2026-12.test.bootstorm:diskless"
initiator_iqn = "iqn.2026-12.test.machine:{{mac}}"

[tftp]
root = "{root}"

[iscsi]
address = "198.18.0.1:3260"

[[iscsi.target]]
name = "iqn.2026-12.test.bootstorm:diskless"
file = "{golden}"
overlays = "{overlays}"
overlay_key = "mac"
"#,
        root = root.display(),
        golden = dir.join("golden.img").display(),
        overlays = dir.join("overlays").display(),
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    let serial = dir.join("serial.log");
    let mut vm = vm(&lab, &tap, &serial);
    let read = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let booted = wait_until(Duration::from_secs(120), || read().contains(marker));
    vm.stop();
    let text = read();
    assert!(
        booted,
        "no marker from the disk's boot sector:\n{text}\nserver:\n{}",
        srv.log_text()
    );
    // What DHCP said reached iPXE (its echo, which the console wraps at 80 columns), and the
    // login was the machine's.
    let unwrapped: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    assert!(
        unwrapped.contains("initiator iqn.2026-12.test.machine:52-54-00-12-34-56 root iscsi:198.18.0.1::::iqn.2026-12.test.bootstorm:diskless"),
        "{text}"
    );
    let log = srv.log_text();
    assert!(
        log.contains("\"initiator\":\"iqn.2026-12.test.machine:52-54-00-12-34-56\""),
        "{log}"
    );
    assert!(
        dir.join("overlays/52-54-00-12-34-56.map").exists(),
        "no overlay for the machine's MAC:\n{log}"
    );
    assert!(srv.stats()["iscsi"]["read_bytes"].as_u64().unwrap() >= 512);
}
