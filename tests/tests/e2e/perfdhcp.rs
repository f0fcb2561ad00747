//! perfdhcp load.
