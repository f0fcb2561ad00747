//! The HTTP API (issue 16) of a running `bootstorm serve` on loopback: every endpoint of the
//! OpenAPI document it serves answers as the document says (statuses, JSON bodies); reads are
//! open on the control socket and need the token on TCP; a release needs the token, is durable
//! (still released after a restart on the same lease directory) and a reload applies a good file
//! and refuses a broken one, keeping the running config. curl is the client where it can be.

use bootstorm_daemon::api::call_unix;
use bootstorm_tests::{Proc, TempDir, bin, output_within, tool};
use bootstorm_wire::dhcp::MessageType;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "0123456789abcdef-test-token";

struct Api {
    proc: Proc,
    sock: PathBuf,
    config: PathBuf,
    dhcp_port: u16,
    tcp_port: u16,
}

fn config_text(dir: &TempDir, dhcp_port: u16, tcp_port: u16, extra: &str) -> String {
    format!(
        r#"
[server]
address = "127.0.0.1"
port = {dhcp_port}
workers = 1
control_socket = "{sock}"

[api]
address = "127.0.0.1:{tcp_port}"
token_file = "{token}"

[leases]
dir = "{leases}"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.100"]
{extra}
"#,
        sock = dir.join("c.sock").display(),
        token = dir.join("token").display(),
        leases = dir.join("leases").display(),
    )
}

fn start(dir: &TempDir, ports: Option<(u16, u16)>) -> Api {
    use std::os::unix::fs::PermissionsExt;
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (dhcp_port, tcp_port) = ports.unwrap_or_else(|| {
        (
            bootstorm_tests::free_port(false),
            bootstorm_tests::free_port(true),
        )
    });
    let config = dir.join("bootstorm.toml");
    std::fs::write(&config, config_text(dir, dhcp_port, tcp_port, "")).unwrap();
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args(["serve", "--for", "120s", "--config"])
        .arg(&config);
    let log = dir.join(if ports.is_some() {
        "server-again.log"
    } else {
        "server.log"
    });
    let p = bootstorm_tests::spawn_ready(&mut cmd, &log);
    Api {
        proc: p,
        sock: dir.join("c.sock"),
        config,
        dhcp_port,
        tcp_port,
    }
}

/// DISCOVER + REQUEST for client `n`; its address.
fn lease(port: u16, n: u8) -> Ipv4Addr {
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1500];
    let mut m = crate::msg::Msg::new(MessageType::Discover, n);
    c.send_to(&m.bytes(), ("127.0.0.1", port)).unwrap();
    let (k, _) = c.recv_from(&mut buf).expect("OFFER");
    let o = crate::msg::parse(&buf[..k]);
    m.mt = MessageType::Request.into();
    m.requested = Some(o.yiaddr);
    m.server_id = o.server_id;
    c.send_to(&m.bytes(), ("127.0.0.1", port)).unwrap();
    c.recv_from(&mut buf).expect("ACK");
    o.yiaddr
}

fn unix(sock: &Path, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    unix_body(sock, method, path, token, None)
}

fn unix_body(
    sock: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let (code, text) = call_unix(sock, method, path, token, body).unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (code, v)
}

/// curl on TCP: (status, JSON body).
fn curl(args: &[&str]) -> (u16, Value) {
    let o = output_within(
        Command::new(tool("curl", "curl"))
            .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
            .args(args),
        Duration::from_secs(30),
    );
    assert!(
        o.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn every_endpoint_answers_as_its_openapi_document_says() {
    let dir = TempDir::new();
    let api = start(&dir, None);
    let kept = lease(api.dhcp_port, 1);
    let gone = lease(api.dhcp_port, 2);
    let mac = "52:54:00:be:ef:01";
    let (code, doc) = unix(&api.sock, "GET", "/api/v1/openapi.json", None);
    assert_eq!(code, 200);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "{paths:?}");
    let mut walked = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let ip = if path.starts_with("/api/v1/reservations/") {
                "198.18.1.150".to_string()
            } else if method == "delete" {
                gone.to_string()
            } else {
                kept.to_string()
            };
            let concrete = path.replace("{ip}", &ip).replace("{mac}", mac);
            let write = op.get("security").is_some();
            let body = match (method.as_str(), path.as_str()) {
                ("post", "/api/v1/reservations") => {
                    Some(r#"{"address": "198.18.1.150", "mac": "52:54:00:be:ef:30"}"#.to_string())
                }
                ("post", _) => Some(std::fs::read_to_string(&api.config).unwrap()),
                _ => None,
            };
            let documented = op["responses"].as_object().unwrap();
            if documented["200"]["content"]
                .get("application/json")
                .is_none()
            {
                // Not JSON (/metrics): the status only here; its text is checked below.
                let (code, _) =
                    call_unix(&api.sock, &method.to_uppercase(), &concrete, None, None).unwrap();
                assert_eq!(code, 200, "{method} {concrete}");
                walked += 1;
                continue;
            }
            let (code, v) = unix_body(
                &api.sock,
                &method.to_uppercase(),
                &concrete,
                write.then_some(TOKEN),
                body,
            );
            assert!(
                documented.contains_key(&code.to_string()),
                "{method} {concrete}: {code} is not among {:?}: {v}",
                documented.keys().collect::<Vec<_>>()
            );
            assert_eq!(code, 200, "{method} {concrete}: {v}");
            if write {
                // Without the token: refused, as documented.
                let (code, v) = unix(&api.sock, &method.to_uppercase(), &concrete, None);
                assert_eq!(code, 401, "{method} {concrete} without a token: {v}");
                assert!(documented.contains_key("401"));
            }
            walked += 1;
        }
    }
    assert!(walked >= 17, "{walked} operations");
    // What the endpoints said, in detail.
    let (_, leases) = unix(&api.sock, "GET", "/api/v1/leases?state=bound", None);
    let ips: Vec<&str> = leases
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, [kept.to_string()], "the other was released by DELETE");
    let (_, one) = unix(&api.sock, "GET", &format!("/api/v1/leases?mac={mac}"), None);
    assert_eq!(one[0]["ip"], kept.to_string());
    let (_, pools) = unix(&api.sock, "GET", "/api/v1/pools", None);
    assert_eq!(pools[0]["subnet"], "198.18.0.0/16");
    assert_eq!(pools[0]["size"], 100);
    assert_eq!(pools[0]["bound"], 1);
    assert_eq!(pools[0]["free"], 99);
    let (_, s) = unix(&api.sock, "GET", &format!("/api/v1/sessions/{mac}"), None);
    assert_eq!(s["address"], kept.to_string(), "{s}");
    assert_eq!(s["phase"], "bound", "{s}");
    // Errors: a clear status and reason.
    let (code, v) = unix(&api.sock, "GET", "/api/v1/leases/198.18.9.9", None);
    assert_eq!(
        (code, v["error"].as_str().unwrap()),
        (404, "no lease of 198.18.9.9")
    );
    let (code, v) = unix(&api.sock, "GET", "/api/v1/leases?colour=red", None);
    assert_eq!(code, 400, "{v}");
    let (code, _) = unix(&api.sock, "GET", "/api/v1/sessions?phase=flying", None);
    assert_eq!(code, 400);
    let (code, _) = unix(&api.sock, "GET", "/api/v1/sessions/52:54:00:00:00:99", None);
    assert_eq!(code, 404);
    let (code, v) = unix(&api.sock, "GET", "/api/v2/nothing", None);
    assert_eq!(code, 404);
    assert!(v["error"].as_str().unwrap().contains("openapi.json"), "{v}");
    let (code, v) = unix_body(
        &api.sock,
        "POST",
        "/api/v1/config/validate",
        None,
        Some("[server]\nport = \"sixty-seven\"\n".into()),
    );
    assert_eq!(code, 422);
    assert_eq!(v["valid"], false);
    assert!(
        v["error"].as_str().unwrap().contains("bootstorm.toml:2"),
        "{v}"
    );

    // curl over the Unix socket (no token needed) and over TCP (the token is).
    let base = format!("http://127.0.0.1:{}", api.tcp_port);
    let (code, v) = curl(&[
        "--unix-socket",
        api.sock.to_str().unwrap(),
        "http://bootstorm/api/v1/health",
    ]);
    assert_eq!((code, v["status"].as_str()), (200, Some("ok")));
    let (code, _) = curl(&[&format!("{base}/api/v1/stats")]);
    assert_eq!(code, 401, "reads on TCP need the token unless read_open");
    let (code, _) = curl(&[
        "-H",
        "Authorization: Bearer wrong-token-wrong-token",
        &format!("{base}/api/v1/stats"),
    ]);
    assert_eq!(code, 401);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, v) = curl(&["-H", &auth, &format!("{base}/api/v1/stats")]);
    assert_eq!(code, 200);
    assert_eq!(v["sent"]["ack"], 2, "{v}");
    let (code, v) = curl(&["-H", &auth, &format!("{base}/api/v1/leases/{kept}")]);
    assert_eq!((code, v["state"].as_str()), (200, Some("bound")));

    // A session search by a part of the MAC or the address.
    let (_, v) = unix(&api.sock, "GET", "/api/v1/sessions?q=BE:EF:01", None);
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["sessions"][0]["mac"], mac, "{v}");
    let (_, v) = unix(
        &api.sock,
        "GET",
        &format!("/api/v1/sessions?q={kept}"),
        None,
    );
    assert_eq!(v["sessions"][0]["address"], kept.to_string(), "{v}");
    let (_, v) = unix(&api.sock, "GET", "/api/v1/sessions?q=no-such-machine", None);
    assert_eq!(v["total"], 0, "{v}");
    // The storm view's history: one sample a second, two machines bound.
    assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
        let (_, v) = unix(&api.sock, "GET", "/api/v1/storm", None);
        v["at_ms"].as_array().is_some_and(|a| a.len() >= 2)
    }));
    let (_, v) = unix(&api.sock, "GET", "/api/v1/storm", None);
    let last = v["at_ms"].as_array().unwrap().len() - 1;
    assert_eq!(v["started"][last], 2, "{v}");
    assert_eq!(v["phases"]["bound"][last], 1, "{v}: one kept, one released");
    let t = v["at_ms"][last].as_u64().unwrap();
    let (_, newer) = unix(&api.sock, "GET", &format!("/api/v1/storm?since={t}"), None);
    assert!(
        newer["at_ms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.as_u64().unwrap() > t)
    );
    let (code, _) = unix(&api.sock, "GET", "/api/v1/storm?since=yesterday", None);
    assert_eq!(code, 400);
    // The dashboard's files need no token, even on TCP; its reads do (above).
    let page = |path: &str| {
        let o = output_within(
            Command::new(tool("curl", "curl"))
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{content_type}",
                ])
                .arg(format!("{base}{path}")),
            Duration::from_secs(30),
        );
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(page("/"), "302 ", "/ sends the browser to /ui/");
    assert!(
        page("/ui/").starts_with("200 text/html"),
        "{}",
        page("/ui/")
    );
    assert!(page("/ui/app.js").starts_with("200 text/javascript"));
    assert!(page("/ui/app.css").starts_with("200 text/css"));
    assert!(page("/ui/secret.txt").starts_with("404"));
    assert!(page("/ui/..%2Fapi%2Fv1%2Fstats").starts_with("404"));
}

#[test]
fn a_release_needs_the_token_and_survives_a_restart() {
    let dir = TempDir::new();
    let api = start(&dir, None);
    let ip = lease(api.dhcp_port, 7);
    let base = format!("http://127.0.0.1:{}/api/v1/leases/{ip}", api.tcp_port);
    let (code, v) = curl(&["-X", "DELETE", &base]);
    assert_eq!(code, 401, "{v}");
    let (code, _) = unix(
        &api.sock,
        "DELETE",
        &format!("/api/v1/leases/{ip}"),
        Some("not-the-token"),
    );
    assert_eq!(code, 401);
    let (_, v) = unix(&api.sock, "GET", &format!("/api/v1/leases/{ip}"), None);
    assert_eq!(v["state"], "bound", "nothing changed: {v}");
    let (code, v) = curl(&[
        "-X",
        "DELETE",
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        &base,
    ]);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["released"], ip.to_string());
    let (code, _) = curl(&[
        "-X",
        "DELETE",
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        &base,
    ]);
    assert_eq!(code, 404, "released already");
    // SIGKILL: the answer came after the journal held the release.
    let ports = (api.dhcp_port, api.tcp_port);
    let mut api = api;
    api.proc.signal("KILL");
    assert!(api.proc.wait(Duration::from_secs(10)).is_some(), "killed");
    drop(api);
    let api = start(&dir, Some(ports));
    let (_, v) = unix(&api.sock, "GET", &format!("/api/v1/leases/{ip}"), None);
    assert_eq!(v["state"], "released", "{v}");
}

#[test]
fn a_reload_applies_a_good_config_and_refuses_a_bad_one() {
    let dir = TempDir::new();
    let api = start(&dir, None);
    let reservation =
        "\n[[reservation]]\nmac = \"52:54:00:be:ef:09\"\naddress = \"198.18.1.200\"\n";
    std::fs::write(
        &api.config,
        config_text(&dir, api.dhcp_port, api.tcp_port, reservation),
    )
    .unwrap();
    let (code, v) = unix(&api.sock, "POST", "/api/v1/config/reload", None);
    assert_eq!(code, 401, "a reload needs the token: {v}");
    let (code, v) = unix(&api.sock, "POST", "/api/v1/config/reload", Some(TOKEN));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["reloaded"], true);
    assert_eq!(
        lease(api.dhcp_port, 9),
        Ipv4Addr::new(198, 18, 1, 200),
        "the reservation serves"
    );
    let (_, c) = unix(&api.sock, "GET", "/api/v1/config", None);
    assert_eq!(c["running"]["reservations"], 1);
    assert!(c["text"].as_str().unwrap().contains("198.18.1.200"));
    // A broken file: refused with its line, and the running config stays.
    std::fs::write(&api.config, "[server]\nworkers = \"many\"\n").unwrap();
    let (code, v) = unix(&api.sock, "POST", "/api/v1/config/reload", Some(TOKEN));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["reloaded"], false);
    assert!(
        v["error"].as_str().unwrap().contains("bootstorm.toml:2"),
        "{v}"
    );
    let (_, c) = unix(&api.sock, "GET", "/api/v1/config", None);
    assert_eq!(c["running"]["reservations"], 1, "the running config stays");
    assert!(c["text"].as_str().unwrap().contains("198.18.1.200"));
    assert_eq!(lease(api.dhcp_port, 9), Ipv4Addr::new(198, 18, 1, 200));
}

#[test]
fn the_cli_releases_and_reloads_through_the_api() {
    let dir = TempDir::new();
    let api = start(&dir, None);
    let ip = lease(api.dhcp_port, 5);
    let cli = |args: &[&str]| {
        output_within(
            Command::new(bin("bootstorm")).args(args),
            Duration::from_secs(20),
        )
    };
    let config = api.config.to_str().unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "not-the-token-at-all\n").unwrap();
    let o = cli(&[
        "leases",
        "release",
        &ip.to_string(),
        "--config",
        config,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("wrong bearer token"),
        "{o:?}"
    );
    // The token comes from the config's [api] token_file.
    let o = cli(&["leases", "release", &ip.to_string(), "--config", config]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("released {ip} (was 52:54:00:be:ef:05)\n")
    );
    let (_, v) = unix(&api.sock, "GET", &format!("/api/v1/leases/{ip}"), None);
    assert_eq!(v["state"], "released");
    let o = cli(&["reload", "--config", config]);
    assert!(o.status.success(), "{o:?}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reloaded"], true);
    assert_eq!(v["records"], 1);
}

#[test]
fn metrics_parse_as_openmetrics_and_count_what_happened() {
    let dir = TempDir::new();
    let api = start(&dir, None);
    for n in 1..=3 {
        lease(api.dhcp_port, n);
    }
    let (code, text) = call_unix(&api.sock, "GET", "/metrics", None, None).unwrap();
    assert_eq!(code, 200);
    let file = dir.join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    // Python's prometheus_client (its strict OpenMetrics parser) reads every family; the values
    // it prints are checked here.
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{f.type} {s.name}{{{labels}}} {s.value}")
"#;
    let o = output_within(
        Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(
        o.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = String::from_utf8(o.stdout).unwrap();
    for want in [
        "counter bootstorm_dhcp_sent_total{type=ack} 3",
        "counter bootstorm_dhcp_received_total{type=discover} 3",
        "gauge bootstorm_pool_addresses{state=bound,subnet=198.18.0.0/16} 3",
        "gauge bootstorm_pool_addresses{state=free,subnet=198.18.0.0/16} 97",
        "gauge bootstorm_boot_sessions{phase=bound} 3",
        "counter bootstorm_boot_sessions_started_total{} 3",
        "histogram bootstorm_boot_lap_seconds_count{lap=dhcp} 3",
        "histogram bootstorm_boot_lap_seconds_bucket{lap=dhcp,le=+Inf} 3",
    ] {
        assert!(got.lines().any(|l| l == want), "no '{want}' in:\n{got}");
    }
    // The journal's group commits: every record it took was in one write's group, and each
    // write's wait was timed.
    let value = |name: &str| -> f64 {
        got.lines()
            .find_map(|l| l.split_once(' ').and_then(|(_, r)| r.strip_prefix(name)))
            .and_then(|r| r.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{got}"))
    };
    let records = value("bootstorm_journal_records{}");
    assert!(records >= 3.0, "{got}");
    assert_eq!(
        value("bootstorm_journal_group_records_sum{}"),
        records,
        "{got}"
    );
    let writes = value("bootstorm_journal_commit_seconds_count{}");
    assert!(writes >= 1.0 && writes <= records, "{got}");
    assert_eq!(value("bootstorm_journal_group_records_count{}"), writes);
    assert_eq!(
        value("bootstorm_journal_commit_seconds_bucket{le=+Inf}"),
        writes
    );
    assert!(
        value("bootstorm_journal_commit_seconds_sum{}") > 0.0,
        "{got}"
    );
    // TCP: a scraper needs the token (read_open is off).
    let base = format!("http://127.0.0.1:{}/metrics", api.tcp_port);
    let (code, _) = curl(&[&base]);
    assert_eq!(code, 401);
    let o = output_within(
        Command::new(tool("curl", "curl")).args([
            "-sS",
            "-f",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            &base,
        ]),
        Duration::from_secs(30),
    );
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).ends_with("# EOF\n"));
}

#[test]
fn reservations_added_through_the_api_serve_and_are_kept() {
    let dir = TempDir::new();
    let api = start(&dir, None);
    let add = |sock: &Path, body: &str| {
        unix_body(
            sock,
            "POST",
            "/api/v1/reservations",
            Some(TOKEN),
            Some(body.into()),
        )
    };
    let (code, v) = add(
        &api.sock,
        r#"{"address": "198.18.1.77", "mac": "52:54:00:be:ef:0c", "hostname": "node12"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        lease(api.dhcp_port, 12),
        Ipv4Addr::new(198, 18, 1, 77),
        "served at once"
    );
    // Refused, and nothing changes: the address or MAC taken, outside every subnet, no key,
    // not a reservation.
    for (body, want) in [
        (
            r#"{"address": "198.18.1.77", "mac": "52:54:00:be:ef:0d"}"#,
            409,
        ),
        (
            r#"{"address": "198.18.1.78", "mac": "52:54:00:be:ef:0c"}"#,
            409,
        ),
        (
            r#"{"address": "10.1.1.1", "mac": "52:54:00:be:ef:0e"}"#,
            409,
        ),
        (r#"{"address": "198.18.1.79"}"#, 409),
        (r#"{"addr": "198.18.1.79"}"#, 400),
    ] {
        let (code, v) = add(&api.sock, body);
        assert_eq!(code, want, "{body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (_, list) = unix(&api.sock, "GET", "/api/v1/reservations", None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["source"], "api");
    assert_eq!(list[0]["hostname"], "node12");
    // Kept across a restart.
    let ports = (api.dhcp_port, api.tcp_port);
    drop(api);
    let api = start(&dir, Some(ports));
    let (_, list) = unix(&api.sock, "GET", "/api/v1/reservations", None);
    assert_eq!(list[0]["address"], "198.18.1.77", "{list}");
    let gone = "/api/v1/reservations/198.18.1.77";
    let (code, v) = unix(&api.sock, "DELETE", gone, Some(TOKEN));
    assert_eq!(code, 200, "{v}");
    let (code, _) = unix(&api.sock, "DELETE", gone, Some(TOKEN));
    assert_eq!(code, 404);
    let (_, list) = unix(&api.sock, "GET", "/api/v1/reservations", None);
    assert_eq!(list, serde_json::json!([]));
    // The config file's own cannot be removed here.
    let extra = "[[reservation]]\nmac = \"52:54:00:be:ef:0f\"\naddress = \"198.18.1.90\"\n";
    std::fs::write(
        &api.config,
        config_text(&dir, api.dhcp_port, api.tcp_port, extra),
    )
    .unwrap();
    let (code, _) = unix(&api.sock, "POST", "/api/v1/config/reload", Some(TOKEN));
    assert_eq!(code, 200);
    let (code, v) = unix(
        &api.sock,
        "DELETE",
        "/api/v1/reservations/198.18.1.90",
        Some(TOKEN),
    );
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("config file"), "{v}");
}
