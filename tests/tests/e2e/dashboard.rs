//! The web dashboard (issue 16) in headless Chromium during a storm: Playwright (playwright-core
//! from `dashboard/node_modules`, driving Debian's chromium) loads the page the daemon serves,
//! watches the storm view update and the session list show machines moving through their
//! phases, opens one machine's timeline, searches for it, releases a bound lease through the
//! leases tab, and keeps screenshots (under the target directory's tmp/). The test judges what
//! the browser saw against the API: the sessions are the storm's, the released lease is gone.

use crate::loadgen::{SERVER, run_loadgen};
use bootstorm_daemon::api::call_unix;
use bootstorm_tests::{ServerProc, need_root, output_within, tool};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "dashboard-test-token-0123456789";

/// The dashboard's directory (its packages, the Playwright script).
fn dashboard_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard")
}

#[test]
fn the_dashboard_follows_a_storm_and_releases_a_lease() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("the_dashboard_follows_a_storm_and_releases_a_lease") {
        return;
    }
    let node = tool("node", "nodejs");
    let chromium = tool("chromium", "chromium");
    let dash = dashboard_dir();
    assert!(
        dash.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in dashboard/ (scripts/test.sh does)"
    );
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 13) as u8).collect();
    std::fs::write(root.join("boot.efi"), &data).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = bootstorm_tests::free_port(true);
    let config = format!(
        "{SERVER}\n[[boot]]\nfile = \"boot.efi\"\n\n[tftp]\nroot = \"{}\"\n\n[api]\naddress = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\n[leases]\ndir = \"{}\"\n",
        root.display(),
        token.display(),
        dir.join("leases").display()
    );
    // The server's side of the link shaped to 8 Mbit/s (tbf; this kernel has no netem): the
    // storm's 40 x 256 KiB take about 10 s whatever the machine's speed, so the page, which
    // refreshes once a second, sees every machine mid-transfer and then loaded.
    let tc = tool("tc", "iproute2");
    let shaped = bootstorm_tests::run(
        lab.server_cmd(&tc)
            .args(["qdisc", "add", "dev", &lab.server_if, "root", "tbf"])
            .args(["rate", "8mbit", "burst", "16kb", "latency", "2s"]),
        Duration::from_secs(10),
    );
    assert!(
        shaped.status.success(),
        "tc: {}",
        String::from_utf8_lossy(&shaped.stderr)
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    const MACHINES: u64 = 40;
    let ready = dir.join("browser-ready");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let (storm, seen) = std::thread::scope(|s| {
        let browser = s.spawn(|| {
            output_within(
                lab.server_cmd(&node)
                    .arg(dash.join("tests/storm.e2e.mjs"))
                    .arg(format!("http://127.0.0.1:{port}"))
                    .arg(TOKEN)
                    .arg(&shot)
                    .arg(&ready)
                    .arg(MACHINES.to_string())
                    .env("CHROMIUM", &chromium),
                Duration::from_secs(180),
            )
        });
        // The storm starts once the page shows the (empty) session list.
        let up = bootstorm_tests::wait_until(Duration::from_secs(90), || {
            ready.exists() || browser.is_finished()
        });
        let storm = (up && ready.exists()).then(|| {
            run_loadgen(
                &lab,
                &[
                    "--interface",
                    &lab.client_if,
                    "--clients",
                    &MACHINES.to_string(),
                    "--limit",
                    "80",
                ],
            )
        });
        let out = browser.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && storm.is_some(),
            "the browser script failed: {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("screenshots: {}", shot.display());
        let seen: Value = serde_json::from_str(text.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        (storm.unwrap(), seen)
    });
    let (code, report) = storm;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["completed"], MACHINES, "{report:#}");
    assert_eq!(
        seen["errors"],
        serde_json::json!([]),
        "page errors: {seen:#}"
    );
    // Without the token the page said why it shows nothing.
    assert!(
        seen["before_token"].as_str().unwrap().contains("Bearer"),
        "{seen:#}"
    );
    // The storm view kept updating while the storm ran.
    let updates = seen["updates"].as_array().unwrap();
    assert!(
        updates.len() >= 3,
        "the storm view did not update: {seen:#}"
    );
    // Sessions appeared, every one a storm machine's, and machines moved on through their phases
    // in boot order while the page watched.
    let order = ["dhcp", "bound", "tftp", "loaded"];
    let phases = seen["phases"].as_object().unwrap();
    assert!(
        phases.len() >= 30,
        "{} sessions seen: {seen:#}",
        phases.len()
    );
    let mut moved = 0;
    for (mac, p) in phases {
        assert!(mac.starts_with("52:54:00:"), "{mac}");
        let idx: Vec<usize> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                order
                    .iter()
                    .position(|o| o == x)
                    .unwrap_or_else(|| panic!("{mac}: {p}"))
            })
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{mac} went back: {p}");
        moved += usize::from(idx.len() >= 2);
    }
    eprintln!("{} sessions seen, {moved} seen moving on", phases.len());
    assert!(
        moved as u64 >= MACHINES / 2,
        "only {moved} machines were seen moving from one phase to the next: {seen:#}"
    );
    // The timeline and the search.
    let timeline: Vec<&str> = seen["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(&timeline[..2], ["offer", "ack"], "{seen:#}");
    assert!(!seen["searched"].as_array().unwrap().is_empty(), "{seen:#}");
    // The released lease is gone from the API (not bound to its machine any more).
    let ip = seen["released"].as_str().unwrap();
    assert!(
        seen["release_message"]
            .as_str()
            .unwrap()
            .contains(&format!("released {ip}")),
        "{seen:#}"
    );
    let (status, body) = call_unix(
        &srv.control,
        "GET",
        &format!("/api/v1/leases/{ip}"),
        None,
        None,
    )
    .unwrap();
    let lease: Value = serde_json::from_str(&body).unwrap();
    let mac = seen["released_mac"].as_str().unwrap();
    assert!(
        status == 404 || lease["state"] != "bound" || lease["mac"] != mac,
        "{ip} is still bound to {mac} after the UI released it: {lease}"
    );
    let (_, s) = call_unix(
        &srv.control,
        "GET",
        &format!("/api/v1/sessions/{mac}"),
        None,
        None,
    )
    .unwrap();
    assert!(
        s.contains("\"release\""),
        "the release is in {mac}'s timeline: {s}"
    );
    // The pools tab showed the subnet.
    assert!(
        seen["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "198.18.0.0/16"),
        "{seen:#}"
    );
}

/// The bundle the daemon embeds (`dashboard/dist`, committed) is byte for byte what its sources
/// build now (Vite's output is deterministic), so nobody serves a dashboard older than its code.
#[test]
fn the_committed_dashboard_bundle_is_what_its_sources_build() {
    let dash = dashboard_dir();
    if !dash.join("node_modules/.bin/vite").exists() {
        assert!(
            !bootstorm_tests::is_root(),
            "the dashboard's packages are missing: run `npm ci` in dashboard/ (scripts/test.sh does)"
        );
        eprintln!("skipped: no dashboard/node_modules (npm ci in dashboard/)");
        return;
    }
    let node = tool("node", "nodejs");
    let out = bootstorm_tests::TempDir::new();
    let built = output_within(
        std::process::Command::new(&node)
            .arg(dash.join("node_modules/vite/bin/vite.js"))
            .args(["build", "--emptyOutDir", "--logLevel", "warn", "--outDir"])
            .arg(out.path())
            .current_dir(&dash),
        Duration::from_secs(120),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let stamped = output_within(
        std::process::Command::new(&node)
            .arg(dash.join("stamp.mjs"))
            .arg(out.path())
            .current_dir(&dash),
        Duration::from_secs(30),
    );
    assert!(stamped.status.success());
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let committed = dash.join("dist");
    assert_eq!(names(out.path()), names(&committed));
    for n in names(&committed) {
        assert!(
            std::fs::read(out.path().join(&n)).unwrap()
                == std::fs::read(committed.join(&n)).unwrap(),
            "dashboard/dist/{n} differs from what its sources build: run `npm run build` in dashboard/ and commit dist/"
        );
    }
}
