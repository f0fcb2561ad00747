//! Diskless iSCSI: qemu-io (qemu's own libiscsi driver, packages qemu-utils and
//! qemu-block-extra) writes patterns through a golden image's target as two machines and reads
//! them back: each machine sees its own writes over the golden image and never the other's;
//! after a restart and after a SIGKILL under writes every acknowledged write reads back; the
//! golden image is never written; `bootstorm overlay list|reset|delete` see and change them.

use bootstorm_tests::{Lab, Proc, ServerProc, TempDir, bin, need_root, output_within, tool};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DISKLESS: &str = "iqn.2026-12.test.bootstorm:golden";
const PLAIN: &str = "iqn.2026-12.test.bootstorm:plain";
const MACHINE_A: &str = "iqn.2026-12.test.machine:a";
const MACHINE_B: &str = "iqn.2026-12.test.machine:b";
const MACHINE_C: &str = "iqn.2026-12.test.machine:c";
/// 8 MiB disks; the golden image is all 0x5a.
const SIZE: usize = 8 << 20;
const GOLDEN: u8 = 0x5a;

fn config(dir: &TempDir) -> String {
    format!(
        r#"[server]
control_socket = "@CONTROL@"

[iscsi]
address = "198.18.0.1:3260"

[[iscsi.target]]
name = "{DISKLESS}"
file = "{golden}"
overlays = "{ov}"

[[iscsi.target]]
name = "{PLAIN}"
file = "{plain}"
"#,
        golden = dir.join("golden.img").display(),
        ov = dir.join("overlays").display(),
        plain = dir.join("plain.img").display(),
    )
}

/// The image options of `target` as `initiator`.
fn image(target: &str, initiator: &str) -> String {
    format!(
        "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=198.18.0.1,file.target={target},file.lun=0,file.initiator-name={initiator}"
    )
}

/// qemu-io in the client namespace running `commands` on `target` as `initiator`.
fn qemu_io(lab: &Lab, target: &str, initiator: &str, commands: &[String]) -> Output {
    let mut c = lab.client_cmd(tool("qemu-io", "qemu-utils"));
    for cmd in commands {
        c.arg("-c").arg(cmd);
    }
    c.arg("--image-opts").arg(image(target, initiator));
    output_within(&mut c, Duration::from_secs(120))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `commands` and asserts that each ran and every pattern check passed.
fn check(lab: &Lab, srv: &ServerProc, target: &str, initiator: &str, commands: &[String]) {
    let o = qemu_io(lab, target, initiator, commands);
    let out = text(&o);
    let done = out
        .lines()
        .filter(|l| l.starts_with("read ") || l.starts_with("wrote "))
        .count();
    assert!(
        o.status.success() && !out.contains("failed") && done == commands.len(),
        "{initiator} on {target}: {done} of {} commands ran:\n{out}\n{}",
        commands.len(),
        srv.log_text()
    );
}

fn overlay_cli(dir: &TempDir, args: &[&str]) -> Output {
    let cfg = dir.join("bootstorm.toml");
    output_within(
        Command::new(bin("bootstorm"))
            .arg("overlay")
            .args(args)
            .arg("--config")
            .arg(&cfg),
        Duration::from_secs(30),
    )
}

#[test]
fn qemu_io_machines_write_to_their_own_overlays_which_survive_restart_and_sigkill() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("qemu_io_machines_write_to_their_own_overlays_which_survive_restart_and_sigkill")
    {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new();
    lab.add_client_address("198.18.0.2/16");
    std::fs::write(dir.join("golden.img"), vec![GOLDEN; SIZE]).unwrap();
    std::fs::File::create(dir.join("plain.img"))
        .unwrap()
        .set_len(SIZE as u64)
        .unwrap();
    let cfg = config(&dir);
    let mut srv = ServerProc::start(&lab, &dir, &cfg);

    // A plain target: patterns written read back, as on any disk.
    let c = |s: &str| s.to_string();
    check(
        &lab,
        &srv,
        PLAIN,
        MACHINE_A,
        &[
            c("write -P 0x11 0 1M"),
            c("write -P 0x22 4M 64k"),
            c("read -P 0x11 0 1M"),
            c("read -P 0x22 4M 64k"),
            c("read -P 0 1M 3M"),
        ],
    );

    // CRC32C header digests (qemu's libiscsi driver offers them when asked; libiscsi has no
    // data digests): the same patterns through them.
    let digest = format!("{},file.header-digest=crc32c", image(PLAIN, MACHINE_B));
    let mut cmd = lab.client_cmd(tool("qemu-io", "qemu-utils"));
    for c in [
        "write -P 0x44 2M 256k",
        "read -P 0x44 2M 256k",
        "read -P 0x11 0 1M",
    ] {
        cmd.arg("-c").arg(c);
    }
    let o = output_within(
        cmd.arg("--image-opts").arg(&digest),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success() && !text(&o).contains("failed"),
        "{}",
        text(&o)
    );
    assert!(
        srv.log_text().contains(&format!(
            "\"initiator\":\"{MACHINE_B}\",\"target\":\"{PLAIN}\",\"header_digest\":\"CRC32C\""
        )),
        "{}",
        srv.log_text()
    );

    // Two machines on the golden image: A writes [0, 1M); B writes [512k, 1.5M) and 512 bytes
    // in the middle of a chunk at 3M+512 (the rest of that chunk comes from the golden image).
    check(&lab, &srv, DISKLESS, MACHINE_A, &[c("write -P 0xa1 0 1M")]);
    check(
        &lab,
        &srv,
        DISKLESS,
        MACHINE_B,
        &[c("write -P 0xb2 512k 1M"), c("write -P 0xc3 3146240 512")],
    );
    let a_reads = [c("read -P 0xa1 0 1M"), c("read -P 0x5a 1M 7M")];
    let b_reads = [
        c("read -P 0x5a 0 512k"),
        c("read -P 0xb2 512k 1M"),
        c("read -P 0x5a 1536k 1536k"),
        c("read -P 0x5a 3M 512"),
        c("read -P 0xc3 3146240 512"),
        c("read -P 0x5a 3146752 3584"),
        c("read -P 0x5a 3148800 5239808"),
    ];
    check(&lab, &srv, DISKLESS, MACHINE_A, &a_reads);
    check(&lab, &srv, DISKLESS, MACHINE_B, &b_reads);
    // A machine that never wrote reads the golden image.
    check(&lab, &srv, DISKLESS, MACHINE_C, &[c("read -P 0x5a 0 8M")]);

    // The operator's view: three overlays, holding what each machine wrote.
    let o = overlay_cli(&dir, &["list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let written = |key: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["key"] == key)
            .unwrap_or_else(|| panic!("{key} not listed: {listed}"))["written"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(written(MACHINE_A), 1 << 20);
    assert_eq!(written(MACHINE_B), (1 << 20) + 4096);
    assert_eq!(written(MACHINE_C), 0);

    // A restart (SIGTERM): every write reads back.
    srv.proc.stop();
    let mut srv = ServerProc::start(&lab, &dir, &cfg);
    check(&lab, &srv, DISKLESS, MACHINE_A, &a_reads);
    check(&lab, &srv, DISKLESS, MACHINE_B, &b_reads);

    // SIGKILL under writes: machine C writes 2,048 distinct 4 KiB blocks, one command each,
    // and the server is killed once a few hundred are acknowledged. qemu-io prints a line per
    // write the target acknowledged (line-buffered by stdbuf), and each of them must read back.
    let writes: Vec<String> = (0..2048)
        .map(|i| {
            format!(
                "write -P {} {} 4k",
                pattern(i),
                4096 * (i as u64 * 5 % 2048)
            )
        })
        .collect();
    let out_path = dir.join("writes.out");
    let mut cmd = lab.client_cmd("stdbuf");
    cmd.args(["-oL"]).arg(tool("qemu-io", "qemu-utils"));
    for w in &writes {
        cmd.arg("-c").arg(w);
    }
    cmd.arg("--image-opts")
        .arg(image(DISKLESS, MACHINE_C))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null());
    let mut writer = Proc::spawn("qemu-io", &mut cmd);
    let acked = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("wrote "))
            .count()
    };
    let end = Instant::now() + Duration::from_secs(60);
    while acked(&out_path) < 300 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.proc.signal("KILL");
    let killed_at = acked(&out_path);
    assert!(killed_at >= 300, "only {killed_at} writes in 60 s");
    srv.proc.wait(Duration::from_secs(10));
    writer.stop();
    let acknowledged = acked(&out_path);
    assert!(
        acknowledged < writes.len(),
        "every write finished before the kill: the test proves nothing"
    );
    let srv = ServerProc::start(&lab, &dir, &cfg);
    let reads: Vec<String> = writes[..acknowledged]
        .iter()
        .map(|w| w.replacen("write", "read", 1))
        .collect();
    check(&lab, &srv, DISKLESS, MACHINE_C, &reads);
    // And the others' overlays are untouched by it.
    check(&lab, &srv, DISKLESS, MACHINE_A, &a_reads);

    // Reset: A reads the golden image again; delete: B's overlay is gone, and B too reads the
    // golden image at its next login (a new, empty overlay).
    let o = overlay_cli(&dir, &["reset", MACHINE_A]);
    assert!(o.status.success(), "{}", text(&o));
    check(&lab, &srv, DISKLESS, MACHINE_A, &[c("read -P 0x5a 0 8M")]);
    let o = overlay_cli(&dir, &["delete", MACHINE_B]);
    assert!(o.status.success(), "{}", text(&o));
    let o = overlay_cli(&dir, &["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["key"] == MACHINE_B),
        "{listed}"
    );
    check(&lab, &srv, DISKLESS, MACHINE_B, &[c("read -P 0x5a 0 8M")]);

    // The golden image was never written.
    let golden = std::fs::read(dir.join("golden.img")).unwrap();
    assert!(
        golden.iter().all(|&b| b == GOLDEN),
        "the golden image changed"
    );
    assert_eq!(srv.stats()["iscsi"]["overlay_errors"], 0);
}

/// The pattern of write `i` (qemu-io patterns are one byte; never the golden image's).
fn pattern(i: usize) -> u8 {
    let p = (i % 250 + 1) as u8;
    if p == GOLDEN { 0xff } else { p }
}
