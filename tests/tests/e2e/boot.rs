//! A real machine boots: qemu with its iPXE network ROM, on a tap bridged to the client veth,
//! does DHCP against bootstorm, fetches an iPXE script (over TFTP, and in a second case over HTTP
//! through the iPXE user-class rule), and the script prints a marker on the serial console.
//! Software emulation is slow: each run is bounded (two minutes) and the VM is always stopped.

use bootstorm_tests::{Lab, Proc, ServerProc, TempDir, need_root, tool, wait_until};
use std::process::Stdio;
use std::time::Duration;

const ROM: &str = "/usr/lib/ipxe/qemu/pxe-e1000.rom";

fn boot(case: &str, script_url: &str, http: bool, io: &str) {
    if !need_root(case) {
        return;
    }
    let qemu = tool("qemu-system-x86_64", "qemu-system-x86");
    assert!(
        std::path::Path::new(ROM).exists(),
        "{ROM} is missing: apt-get install -y ipxe-qemu"
    );
    let lab = Lab::new();
    let tap = lab.client_tap();
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
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
    .stdout(std::fs::File::create(&serial).unwrap())
    .stderr(Stdio::null());
    let mut vm = Proc::spawn("qemu", &mut cmd);
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
