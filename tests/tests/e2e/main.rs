//! End-to-end tests, one module per area. Loopback tests run anywhere; namespace tests need root
//! (they print why they skip otherwise; CI runs them as root).

mod api;
mod boot;
mod cli;
mod clients;
mod conformance;
mod course;
mod dashboard;
mod durable;
mod http;
mod iscsi;
mod iscsi_overlay;
mod lab;
mod layers;
mod loadgen;
mod migrate;
mod msg;
mod perfdhcp;
mod pxe;
mod services;
mod sessions;
mod tftp;
mod tftp_upload;
mod xdp;
mod xdp_path;
