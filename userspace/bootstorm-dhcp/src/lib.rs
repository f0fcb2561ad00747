//! The DHCPv4 server core of bootstorm (RFC 2131, options RFC 2132, PXE RFC 4578), sans-IO.
//!
//! [`Server::handle`] takes the time, where a datagram came from and its bytes, and writes the
//! reply (if any) into a caller-provided buffer, returning where it must go ([`Destination`]) and
//! what happened to the lease ([`Event`]). It never touches a socket, a clock or a thread, so the
//! same core runs behind UDP sockets, AF_XDP, and inside the load generator and tests, where whole
//! DORA exchanges run against a made-up clock in microseconds.
//!
//! Bad or unwanted input is not an error: it is dropped and counted by [`DropReason`] in the
//! caller's [`Stats`] (one per worker, so counting never contends).
//!
//! What it deliberately is not: a parser (that is `bootstorm-wire`), a lease store (that is
//! `bootstorm-lease`), or a config-file reader (the daemon turns TOML into [`ServerConfig`], which
//! holds only validated values with options already encoded to bytes).
#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
mod server;
pub mod shard;
mod stats;

pub use admission::{AdmissionConfig, Rate};
pub use config::*;
pub use server::*;
pub use stats::*;
