//! The integration suite: every test starts a real server on port 0 with its own temp
//! data directory and talks to it over real sockets. One test binary, so the suite links
//! once instead of once per file (`tick_rate.rs` stays alone: it measures the tick).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod backpressure;
mod backup;
mod cli;
mod cluster;
mod cluster_crash;
mod comms;
mod facts;
mod faults;
mod game;
mod game_binary;
mod garp;
mod garp_crash;
mod garp_module;
mod guide_mod;
mod lifecycle;
mod listeners;
mod loadgen;
mod mods;
mod ops;
mod ownership;
mod process;
mod raos;
mod replication;
mod scripts;
mod store_failure;
mod store_lobby;
mod tls;
mod ts_client;
mod upload_crash;
mod wallet;
mod web;
