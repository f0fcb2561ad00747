//! Moving over from Kea and dnsmasq: a real kea-dhcp4 and a real dnsmasq lease addresses to
//! dhclient; their lease files are imported with `bootstorm leases import`; bootstorm then gives
//! every client the address it had. bootstorm's own pool starts at .1, and the old servers
//! handed out .50-.99 (Kea) and .150-.199 (dnsmasq), so a client only gets its old address back
//! if the import worked.

use bootstorm_tests::{Lab, Proc, ServerProc, TempDir, bin, need_root, run, tool, wait_until};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIG: &str = r#"
[server]
interfaces = ["@IF@"]
workers = 2
control_socket = "@CONTROL@"

[leases]
dir = "@LEASES@"

[[subnet]]
network = "198.18.0.0/16"
interface = "@IF@"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]
lease_time = "1h"
"#;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Clients on macvlan interfaces of the client veth, each with its own MAC.
struct Clients<'a> {
    lab: &'a Lab,
    dir: &'a TempDir,
    names: Vec<String>,
}

impl<'a> Clients<'a> {
    fn new(lab: &'a Lab, dir: &'a TempDir, count: u8) -> Clients<'a> {
        let base = lab.client_if.trim_end_matches('c');
        let mut names = Vec::new();
        for n in 1..=count {
            let name = format!("{base}m{n}");
            let mac = format!("52:54:00:bb:00:{n:02x}");
            for args in [
                vec![
                    "-n",
                    &lab.client_ns,
                    "link",
                    "add",
                    &name,
                    "link",
                    &lab.client_if,
                    "address",
                    &mac,
                    "type",
                    "macvlan",
                    "mode",
                    "bridge",
                ],
                vec!["-n", &lab.client_ns, "link", "set", &name, "up"],
            ] {
                run(Command::new("ip").args(&args), Duration::from_secs(10));
            }
            names.push(name);
        }
        Clients { lab, dir, names }
    }

    /// Runs dhclient with a fresh lease file on each of `which` at once (so each starts with a
    /// DISCOVER); returns interface -> address bound.
    fn lease(&self, which: &[usize], round: &str) -> BTreeMap<String, String> {
        let dhclient = tool("dhclient", "isc-dhcp-client");
        let log = self.dir.join(&format!("{round}.log"));
        let script = self.dir.join("client-script.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$reason $interface $new_ip_address\" >> {}\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        run(
            Command::new("chmod").arg("+x").arg(&script),
            Duration::from_secs(5),
        );
        let mut procs = Vec::new();
        for &i in which {
            let name = &self.names[i];
            let f = |ext: &str| self.dir.join(&format!("{round}-{name}.{ext}"));
            let mut cmd = self.lab.client_cmd(&dhclient);
            cmd.args(["-d", "-v", "-1", "-sf"])
                .arg(&script)
                .arg("-lf")
                .arg(f("leases"))
                .arg("-pf")
                .arg(f("pid"))
                .arg(name)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(f("err")).unwrap());
            procs.push(Proc::spawn("dhclient", &mut cmd));
        }
        let bound = |t: &str| -> BTreeMap<String, String> {
            t.lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    if w.next() != Some("BOUND") {
                        return None;
                    }
                    Some((w.next()?.to_string(), w.next()?.to_string()))
                })
                .collect()
        };
        let ok = wait_until(Duration::from_secs(30), || {
            bound(&read(&log)).len() == which.len()
        });
        let errs: String = which
            .iter()
            .map(|&i| read(&self.dir.join(&format!("{round}-{}.err", self.names[i]))))
            .collect();
        assert!(
            ok,
            "{round}: not every client bound: {}\n{errs}",
            read(&log)
        );
        // Stopped without a release: the old server keeps the leases as bound.
        drop(procs);
        bound(&read(&log))
    }
}

fn import(config: &Path, format: &str, file: &Path, dry: bool) -> std::process::Output {
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args(["leases", "import", "--config"])
        .arg(config)
        .args(["--format", format])
        .arg(file);
    if dry {
        cmd.arg("--dry-run");
    }
    cmd.output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn leases_from_kea_and_dnsmasq_keep_their_addresses() {
    if !need_root("leases_from_kea_and_dnsmasq_keep_their_addresses") {
        return;
    }
    let kea = tool("kea-dhcp4", "kea-dhcp4-server");
    let dnsmasq = tool("dnsmasq", "dnsmasq-base");
    let lab = Lab::new();
    let dir = TempDir::new();
    let clients = Clients::new(&lab, &dir, 6);

    // Kea, memfile with persistence, raw sockets (clients without an address), for clients 0-2.
    let kea_leases = dir.join("kea-leases4.csv");
    let kea_conf = dir.join("kea.json");
    std::fs::write(
        &kea_conf,
        format!(
            r#"{{ "Dhcp4": {{
  "interfaces-config": {{ "interfaces": [ "{ifname}" ] }},
  "lease-database": {{ "type": "memfile", "persist": true, "name": "{leases}", "lfc-interval": 0 }},
  "valid-lifetime": 3600,
  "subnet4": [ {{ "id": 1, "subnet": "198.18.0.0/16", "pools": [ {{ "pool": "198.18.1.50 - 198.18.1.99" }} ] }} ],
  "loggers": [ {{ "name": "kea-dhcp4", "output_options": [ {{ "output": "{log}" }} ], "severity": "INFO" }} ]
}} }}"#,
            ifname = lab.server_if,
            leases = kea_leases.display(),
            log = dir.join("kea.log").display()
        ),
    )
    .unwrap();
    let mut cmd = lab.server_cmd(&kea);
    cmd.arg("-c")
        .arg(&kea_conf)
        .env("KEA_LOCKFILE_DIR", dir.path())
        .env("KEA_PIDFILE_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("kea.err")).unwrap());
    let mut server = Proc::spawn("kea-dhcp4", &mut cmd);
    assert!(
        wait_until(Duration::from_secs(10), || read(&dir.join("kea.log"))
            .contains("DHCP4_STARTED")),
        "kea-dhcp4 did not start: {}{}",
        read(&dir.join("kea.log")),
        read(&dir.join("kea.err"))
    );
    let from_kea = clients.lease(&[0, 1, 2], "kea");
    server.stop();

    // dnsmasq, for clients 3-5.
    let dnsmasq_leases = dir.join("dnsmasq.leases");
    let mut cmd = lab.server_cmd(&dnsmasq);
    cmd.args([
        "--no-daemon",
        "--port=0",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        "--no-ping",
        "--dhcp-range=198.18.1.150,198.18.1.199,255.255.0.0,1h",
    ])
    .arg(format!("--interface={}", lab.server_if))
    .arg(format!("--dhcp-leasefile={}", dnsmasq_leases.display()))
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
    .arg(format!(
        "--log-facility={}",
        dir.join("dnsmasq.log").display()
    ))
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("dnsmasq.err")).unwrap());
    let mut server = Proc::spawn("dnsmasq", &mut cmd);
    let from_dnsmasq = clients.lease(&[3, 4, 5], "dnsmasq");
    server.stop();

    for ip in from_kea.values() {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            ip.starts_with("198.18.1.") && (50..100).contains(&last),
            "Kea gave {ip}"
        );
    }
    for ip in from_dnsmasq.values() {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            ip.starts_with("198.18.1.") && (150..200).contains(&last),
            "dnsmasq gave {ip}"
        );
    }

    // Import both files into a lease directory bootstorm has never used.
    let config = dir.join("bootstorm.toml");
    let control = dir.join("control.sock");
    let body = CONFIG.replace("@LEASES@", &dir.join("leases").display().to_string());
    std::fs::write(
        &config,
        body.replace("@IF@", &lab.server_if)
            .replace("@CONTROL@", &control.display().to_string()),
    )
    .unwrap();
    let dry = import(&config, "kea", &kea_leases, true);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("would import 3 leases (3 bound"),
        "{}",
        text(&dry)
    );
    assert!(!dir.join("leases").exists(), "a dry run writes nothing");
    for (format, file) in [("kea", &kea_leases), ("dnsmasq", &dnsmasq_leases)] {
        let o = import(&config, format, file, false);
        assert!(o.status.success(), "{format}: {}", text(&o));
        assert!(
            text(&o).contains("imported 3 leases (3 bound"),
            "{format}: {}\n{}",
            text(&o),
            read(file)
        );
    }
    // Importing the same file again changes nothing and is not an error.
    let again = import(&config, "kea", &kea_leases, false);
    assert!(
        text(&again).contains("imported 3 leases"),
        "{}",
        text(&again)
    );

    let srv = ServerProc::start(&lab, &dir, &body);
    // While the server runs, its lease directory is its own.
    let busy = import(&config, "dnsmasq", &dnsmasq_leases, false);
    assert!(!busy.status.success());
    assert!(text(&busy).contains("in use"), "{}", text(&busy));

    let now = clients.lease(&[0, 1, 2, 3, 4, 5], "bootstorm");
    let mut before = from_kea.clone();
    before.extend(from_dnsmasq.clone());
    assert_eq!(
        now,
        before,
        "every client keeps its address\n{}",
        srv.log_text()
    );

    // And the export shows them bound, in both formats.
    let out = run(
        Command::new(bin("bootstorm"))
            .args(["leases", "export", "--format", "csv", "--socket"])
            .arg(&srv.control),
        Duration::from_secs(10),
    );
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    for ip in before.values() {
        assert!(
            csv.lines()
                .any(|l| l.starts_with(&format!("{ip},")) && l.contains(",bound,")),
            "{ip} in\n{csv}"
        );
    }
}
