//! `bootstorm-lab`: the demo behind `bootstorm lab` (which execs this program). See
//! [`lab`] for what it does.

mod lab;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// bootstorm lab: build a two-namespace lab here, serve a sample boot file, run a storm of
/// simulated machines against it with the load generator, print the report, and remove
/// everything it made (also on Ctrl-C). Needs root.
#[derive(Parser)]
#[command(name = "bootstorm lab", bin_name = "bootstorm lab", version)]
struct LabArgs {
    /// Machines in the storm.
    #[arg(long, default_value_t = 300)]
    clients: usize,
    /// Their profile: pxe-bios, uefi-x64, uefi-arm64, uefi-http, ipxe.
    #[arg(long, default_value = "uefi-x64")]
    profile: String,
    /// When they power on: storm, ramp:SECONDS, poisson:PER_SECOND.
    #[arg(long, default_value = "storm")]
    arrival: bootstorm_loadgen::engine::Arrival,
    /// Size of the sample boot file, in KiB.
    #[arg(long, default_value_t = 1024)]
    boot_file_kib: usize,
    /// Stop after the boot file: no chainload to iPXE (by default each machine then does iPXE's
    /// DHCP and fetches its script over HTTP).
    #[arg(long)]
    no_chainload: bool,
    /// Bound on the storm, in seconds.
    #[arg(long, default_value_t = 120)]
    limit: u64,
    /// Also write the HTML report (latency plots, completions over time) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Server worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn main() -> ExitCode {
    let a = LabArgs::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("bootstorm: installing signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    let opts = lab::LabOptions {
        clients: a.clients,
        profile: a.profile,
        arrival: a.arrival,
        boot_file_size: a.boot_file_kib * 1024,
        chainload: !a.no_chainload,
        limit: Duration::from_secs(a.limit),
        html: a.html,
        json: a.json,
        workers: a.workers,
    };
    match lab::run(&opts, stop) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bootstorm: lab: {e:#}");
            ExitCode::from(2)
        }
    }
}
