//! The end-to-end test harness: starts the real `cartd` binary on 127.0.0.1 with a port the OS
//! picks, and talks to it over real sockets, with the `redis` crate (RESP2 and RESP3), with raw
//! bytes, and with `redis-cli`. Every wait has a timeout, so a broken server fails a test
//! instead of hanging it.
//!
//! - [`process`]: [`Cartd`], one cartd process (start, log, SIGTERM, SIGKILL, restart).
//! - [`client`]: `redis` crate connections, [`cmd`]/[`query`] to send a command, and [`text`],
//!   [`array`], [`pairs`] to read replies.
//! - [`raw`]: [`RawConn`], byte-exact RESP over TCP.
//! - [`mod@view`]: cart views as JSON and as the typed [`CartView`], from RESP2 or RESP3.
//! - [`cli`]: [`redis_cli`], running `redis-cli` against cartd.
//! - [`cluster`]: [`cluster::LocalCluster`], a local cluster by `scripts/cluster`.
//! - [`chaos`]: [`chaos::ChaosCluster`], faults under a write load, and the checks after them.
//! - [`netns`]: [`netns::Network`], test hosts in network namespaces to partition, with
//!   PostgreSQL ([`netns::NetnsPostgres`]) and a cartd cluster ([`netns::NetnsCluster`]) in them.
//! - [`exporter`]: [`Exporter`], the Prometheus exporter scraping cartd.
//! - [`cart`]: shorthand for the cart-command suites ([`w`], [`mutate`], [`cart_add`], [`lines`]).
//! - [`mod@info`]: [`fn@info`] and the `name:value` fields of its text.
//! - [`pg`]: [`TestDb`], a PostgreSQL database of a test's own.
//! - [`disk`]: [`SmallDisk`], a small file system to fill up.
//! - [`mod@upstream`]: [`FakeUpstream`], the HTTP catalog and inventory services `[upstream]`
//!   points at.
//! - [`scripts`]: client-library scripts ([`run_script`], [`run_json`]) and where
//!   `scripts/test` installed the libraries ([`client_libs`]).
//! - [`matrix`]: the client matrix, each client library and how its script runs.
//! - [`redis_server`]: [`RedisServer`], a real redis-server to check a script against.

#![warn(missing_docs)]

use std::time::Duration;

pub mod cart;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod exporter;
pub mod info;
pub mod matrix;
pub mod netns;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod redis_server;
pub mod scripts;
pub mod upstream;
pub mod view;

pub use cart::{
    cart_add, cart_add_version, exists, expect, item, lines, mutate, stored, w, without_ttl, SMALL,
};
pub use cli::{redis_cli, run_redis_cli, CliOutput};
pub use client::{array, cmd, fails, field, int, ok, pairs, query, text};
pub use disk::SmallDisk;
pub use exporter::{metric, redis_exporter, Exporter};
pub use info::{info, info_field, info_number, wait_for_sink};
pub use pg::{PgCluster, TestDb};
pub use process::{cartd_bin, Cartd, START_TIMEOUT};
pub use raw::{encode_command, parse_reply, reply_length, RawConn, CLOSE_WAIT, RAW_WAIT};
pub use redis_server::RedisServer;
pub use scripts::{client_libs, run_json, run_script};
pub use upstream::{Behaviour, FakeUpstream, Service};
pub use view::{
    cart_view, json_reply, resp2_view_to_json, resp3_to_json, view, view_json, CartLine, CartView,
    SavedLine, Totals,
};

/// How long any single wait in a test may take (a reply, a connect, an exit).
pub const WAIT: Duration = Duration::from_secs(10);
