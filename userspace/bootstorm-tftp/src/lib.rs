//! The TFTP core of bootstorm (RFC 1350, options RFC 2347/2348/2349, windowsize RFC 7440),
//! sans-IO: no sockets, no clock, no threads, no file system.
//!
//! - [`negotiate`] turns a request's options into the transfer's parameters and the OACK to send,
//!   which carries only options the client asked for (some UEFI clients reject anything else); a
//!   client that asks for none gets plain RFC 1350.
//! - [`ReadTransfer`] sends one file from memory (the shared cache hands it an `Arc<[u8]>`, so
//!   thousands of transfers share one copy): `poll_transmit(now, buf)` writes the next packet,
//!   `handle_ack(now, block)` moves the window, `poll_timeout()` / `handle_timeout(now)` drive
//!   retransmission. Call order: after creating it and after every `handle_*`, call
//!   `poll_transmit` until it returns `None`, then wait for a datagram or `poll_timeout()`.
//! - [`WriteTransfer`] receives an upload (WRQ) into memory a window at a time; the daemon drains
//!   it into a file and commits the file before the final ACK leaves.
//! - [`normalize`] maps a requested file name to a path inside the root, or refuses it.
//! - [`server::Server`] is the server core of one worker: request policy (errors, option
//!   checks, duplicates, deferral when full) and every transfer with one timer structure
//!   (`bootstorm_time::Timers`), driven by `handle_request` / `handle_datagram` / `poll_transmit` /
//!   `poll_timeout` / `handle_timeout` / `poll_event`; files and upload storage come from its
//!   `Host`.
//!
//! What it deliberately is not: a socket loop or a file cache (the daemon owns those).
#![forbid(unsafe_code)]

mod path;
pub mod server;
mod transfer;
mod write;

pub use path::*;
pub use transfer::*;
pub use write::*;
