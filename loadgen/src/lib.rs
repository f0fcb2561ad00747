//! `bootstorm-loadgen`: simulates machines powering on at once (DHCP, then the boot file over
//! TFTP or HTTP, and when asked iPXE's second round after a chainload) against any standard
//! server, and reports per-phase latency.
//!
//! The client state machines ([`dhcp`], [`tftp`]) are sans-IO and hand-written: they are the
//! protocol itself, and a load generator must control every byte and timer. The [`engine`]
//! drives them in relay mode: each worker thread is a DHCP relay agent with its own address
//! (giaddr), so no privilege is needed and replies come back by unicast, as in a datacenter.
#![forbid(unsafe_code)]

pub mod body;
pub mod dhcp;
pub mod engine;
pub mod http;
pub mod iscsi;
pub mod profile;
pub mod report;
pub mod tftp;
