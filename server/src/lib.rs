//! The cartd server as a library: the binary `cartd` (main.rs) is a thin start-up around it, and
//! the benchmarks in `benches/` drive the store directly through it.

pub mod acl;
pub mod cart;
pub mod catalog;
pub mod clients;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod dispatch;
pub mod durability;
pub mod failover;
pub mod fault;
pub mod fuzzing;
pub mod handoff;
pub mod info;
pub mod latency;
pub mod limits;
pub mod membership;
pub mod memory;
pub mod migration;
pub mod pause;
pub mod peers;
pub mod postgres;
pub mod pricing;
pub mod pubsub;
pub mod replication;
pub mod role_record;
pub mod runtime;
pub mod server;
pub mod slot_cards;
pub mod slowlog;
pub mod stats;
pub mod store;
pub mod tls;
pub mod transaction;
pub mod upstream;
