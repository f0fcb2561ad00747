//! The `bootstorm` daemon as a library: configuration, the worker runtime on the socket path,
//! the control socket, and quick mode. The binary (`main.rs`) is only the command line over it,
//! and tests start the same runtime in-process.
//!
//! What it deliberately is not: protocol logic (the cores decide every reply) or I/O primitives
//! (`bootstorm-net`). It wires them together and owns threads, signals and logs.
#![forbid(unsafe_code)]

pub mod api;
pub mod boots;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dashboard;
pub mod dhcp_worker;
pub mod files;
pub mod httpd;
pub mod iscsid;
/// Lease files in and out (a crate of its own: bootstorm-leasefile).
pub use bootstorm_leasefile as leasefile;
pub mod leaseio;
pub mod logbuf;
pub mod metrics;
pub mod overlay;
pub mod quick;
pub mod reservations;
pub mod serve;
pub mod sessions;
pub mod storm;
pub mod tftpd;
pub mod xdp_path;
