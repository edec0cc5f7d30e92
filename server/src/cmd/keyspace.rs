//! Keyspace commands over carts: EXISTS, DEL, TYPE, TTL, PTTL, SCAN, DBSIZE. Only CART.GET and
//! mutations count as access; these leave TTLs alone, as in Redis.

use bytes::Bytes;
use protocol::{Command, Reply};

use crate::server::Server;

/// Runs a keyspace command.
pub fn run(command: Command, server: &Server, now: u64) -> Reply {
    let store = &server.store;
    match command {
        Command::Exists(keys) => Reply::Integer(
            keys.iter()
                .filter(|key| store.ttl_left_ms(key, now).is_some())
                .count() as i64,
        ),
        Command::Del(keys) => {
            Reply::Integer(keys.iter().filter(|key| store.delete(key, now)).count() as i64)
        }
        Command::Type(key) => Reply::Simple(
            if store.ttl_left_ms(&key, now).is_some() {
                "cart"
            } else {
                "none"
            }
            .into(),
        ),
        Command::Ttl(key) => Reply::Integer(
            store
                .ttl_left_ms(&key, now)
                .map_or(-2, |ms| ms.div_ceil(1000) as i64),
        ),
        Command::Pttl(key) => {
            Reply::Integer(store.ttl_left_ms(&key, now).map_or(-2, |ms| ms as i64))
        }
        Command::DbSize => Reply::Integer(store.len() as i64),
        Command::Scan(scan) => {
            let only_other_types = scan
                .kind
                .as_ref()
                .is_some_and(|kind| !kind.eq_ignore_ascii_case(b"cart"));
            let (next, keys) = if only_other_types {
                (0, Vec::new())
            } else {
                let pattern = scan.pattern.as_deref().map(protocol::glob::Pattern::new);
                store.scan(scan.cursor, scan.count, pattern.as_ref(), now)
            };
            Reply::Array(vec![
                Reply::Bulk(Bytes::from(next.to_string())),
                Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
            ])
        }
        _ => unreachable!("only keyspace commands are routed here"),
    }
}
